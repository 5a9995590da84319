//! Hash commands. A hash whose last field is removed is deleted, as in Redis.

use bytes::Bytes;

use super::own;
use super::store::Store;
use super::typed::{self, random_picks, scan_step};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::scan::{parse_scan, scan_reply};
use crate::wire::util::{float_arg, glob_match, int_arg, is, parse_f64, random_below};

type Hash = super::store::HashValue;

fn read<R>(s: &Store, key: &[u8], f: impl FnOnce(Option<&Hash>) -> R) -> CmdResult<R> {
    typed::read::<Hash, R>(s, key, f)
}

fn modify<R>(
    s: &Store,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut Hash) -> CmdResult<R>,
    missing: R,
) -> CmdResult<R> {
    typed::modify::<Hash, R>(s, key, create, f, missing)
}

fn check_pairs(a: &[Bytes]) -> CmdResult<()> {
    if a.len() % 2 == 1 {
        return Err(CmdError::WrongArity(
            String::from_utf8_lossy(&a[0]).to_lowercase(),
        ));
    }
    Ok(())
}

fn set_fields(s: &Store, a: &[Bytes]) -> CmdResult<i64> {
    check_pairs(a)?;
    modify(
        s,
        &a[1],
        true,
        |h| {
            let mut added = 0;
            for fv in a[2..].chunks(2) {
                if h.insert(own(&fv[0]), own(&fv[1])).is_none() {
                    added += 1;
                }
            }
            Ok(added)
        },
        0,
    )
}

pub fn hset(s: &Store, a: &[Bytes]) -> CmdResult {
    set_fields(s, a).map(Reply::Int)
}

pub fn hmset(s: &Store, a: &[Bytes]) -> CmdResult {
    set_fields(s, a).map(|_| Reply::ok())
}

pub fn hsetnx(s: &Store, a: &[Bytes]) -> CmdResult {
    modify(
        s,
        &a[1],
        true,
        |h| {
            if h.contains_key(&a[2]) {
                return Ok(Reply::Int(0));
            }
            h.insert(own(&a[2]), own(&a[3]));
            Ok(Reply::Int(1))
        },
        Reply::Int(0),
    )
}

pub fn hget(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::opt_bulk(h.and_then(|h| h.get(&a[2]).cloned()))
    })
}

pub fn hmget(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Array(
            a[2..]
                .iter()
                .map(|f| Reply::opt_bulk(h.and_then(|h| h.get(f).cloned())))
                .collect(),
        )
    })
}

pub fn hgetall(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Map(
            h.into_iter()
                .flatten()
                .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone())))
                .collect(),
        )
    })
}

pub fn hdel(s: &Store, a: &[Bytes]) -> CmdResult {
    modify(
        s,
        &a[1],
        false,
        |h| {
            Ok(Reply::Int(
                a[2..].iter().filter(|f| remove_field(h, f)).count() as i64,
            ))
        },
        Reply::Int(0),
    )
}

pub fn hexists(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Int(h.is_some_and(|h| h.contains_key(&a[2])) as i64)
    })
}

pub fn hlen(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| Reply::Int(h.map_or(0, |h| h.len()) as i64))
}

pub fn hkeys(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Array(
            h.into_iter()
                .flatten()
                .map(|(f, _)| Reply::Bulk(f.clone()))
                .collect(),
        )
    })
}

pub fn hvals(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Array(
            h.into_iter()
                .flatten()
                .map(|(_, v)| Reply::Bulk(v.clone()))
                .collect(),
        )
    })
}

pub fn hstrlen(s: &Store, a: &[Bytes]) -> CmdResult {
    read(s, &a[1], |h| {
        Reply::Int(h.and_then(|h| h.get(&a[2])).map_or(0, |v| v.len()) as i64)
    })
}

pub fn hincrby(s: &Store, a: &[Bytes]) -> CmdResult {
    let by = int_arg(&a[3])?;
    modify(
        s,
        &a[1],
        true,
        |h| {
            let current = match h.get(&a[2]) {
                None => 0,
                Some(v) => {
                    parse_i64(v).ok_or_else(|| CmdError::msg("ERR hash value is not an integer"))?
                }
            };
            let n = current.checked_add(by).ok_or(CmdError::Overflow)?;
            h.insert(own(&a[2]), Bytes::from(n.to_string()));
            Ok(Reply::Int(n))
        },
        Reply::Int(0),
    )
}

pub fn hincrbyfloat(s: &Store, a: &[Bytes]) -> CmdResult {
    let by = float_arg(&a[3])?;
    if !by.is_finite() {
        return Err(CmdError::msg("ERR value is NaN or Infinity"));
    }
    modify(
        s,
        &a[1],
        true,
        |h| {
            let current = match h.get(&a[2]) {
                None => 0.0,
                Some(v) => {
                    parse_f64(v).ok_or_else(|| CmdError::msg("ERR hash value is not a float"))?
                }
            };
            let n = current + by;
            if !n.is_finite() {
                return Err(CmdError::NanOrInfinity);
            }
            let text = Bytes::from(format!("{n}"));
            h.insert(own(&a[2]), text.clone());
            Ok(Reply::Bulk(text))
        },
        Reply::Nil,
    )
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(s: &Store, a: &[Bytes]) -> CmdResult {
    let with_values = match a.get(3) {
        None => false,
        Some(o) if is(o, "WITHVALUES") && a.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    let count = a
        .get(2)
        .map(|c| typed::rand_count(c, with_values))
        .transpose()?;
    read(s, &a[1], |h| {
        let fields: Vec<(&Bytes, &Bytes)> = h.map(|h| h.iter().collect()).unwrap_or_default();
        let Some(count) = count else {
            if fields.is_empty() {
                return Ok(Reply::Nil);
            }
            let (f, _) = fields[random_below(fields.len() as u64) as usize];
            return Ok(Reply::Bulk(f.clone()));
        };
        if count < 0 {
            let bytes = fields
                .iter()
                .map(|(f, v)| f.len() + if with_values { v.len() + 16 } else { 0 })
                .sum();
            typed::reply_fits(count.unsigned_abs(), fields.len(), bytes)?;
        }
        let picked = random_picks(&fields, count);
        Ok(if with_values {
            Reply::Pairs(
                picked
                    .into_iter()
                    .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone())))
                    .collect(),
            )
        } else {
            Reply::Array(
                picked
                    .into_iter()
                    .map(|(f, _)| Reply::Bulk(f.clone()))
                    .collect(),
            )
        })
    })?
}

/// HSCAN key cursor [MATCH p] [COUNT n] [NOVALUES]
pub fn hscan(s: &Store, a: &[Bytes]) -> CmdResult {
    let novalues = a.len() > 3 && is(&a[a.len() - 1], "NOVALUES") && (a.len() - 3) % 2 == 1;
    let args = if novalues { &a[..a.len() - 1] } else { a };
    let sa = parse_scan(args, 2, false)?;
    read(s, &a[1], |h| {
        let Some(h) = h else {
            return scan_reply(0, Vec::new());
        };
        let keep = |f: &Bytes| sa.pattern.as_ref().is_none_or(|p| glob_match(p, f));
        let (next, fields) = scan_step(h.iter(), h.len(), &sa);
        let mut items = Vec::new();
        for (f, v) in fields.into_iter().filter(|(f, _)| keep(f)) {
            items.push(Reply::Bulk(f.clone()));
            if !novalues {
                items.push(Reply::Bulk(v.clone()));
            }
        }
        scan_reply(next, items)
    })
}

/// Removes a field. A small hash keeps its fields in the order they were
/// added, as Redis's listpack does (HGETALL shows it); a large one, which
/// Redis keeps in a hash table in no order, removes in constant time.
pub(super) fn remove_field(h: &mut Hash, f: &[u8]) -> bool {
    let small = h.len() <= 2 * super::tunables::get("hash-max-listpack-entries").max(0) as usize;
    if small {
        h.shift_remove(f).is_some()
    } else {
        h.swap_remove(f).is_some()
    }
}
