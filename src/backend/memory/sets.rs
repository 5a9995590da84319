//! Set commands. A set left empty is deleted, as in Redis.

use indexmap::IndexSet;

use bytes::Bytes;

use super::own;
use super::store::{Store, Value};
use super::typed::{modify, rand_count, random_picks, read, reply_fits, scan_step, store};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::scan::{parse_scan, scan_reply};
use crate::wire::util::{glob_match, int_arg, is, random_below};

type Set = IndexSet<Bytes>;

fn members(set: impl IntoIterator<Item = Bytes>) -> Reply {
    Reply::Set(set.into_iter().map(Reply::Bulk).collect())
}

pub fn sadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let n = modify::<Set, _>(
        s,
        &a[1],
        true,
        |set| Ok(a[2..].iter().filter(|m| set.insert(own(m))).count() as i64),
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn srem(s: &Store, a: &[Bytes]) -> CmdResult {
    let n = modify::<Set, _>(
        s,
        &a[1],
        false,
        |set| Ok(a[2..].iter().filter(|m| set.swap_remove(&m[..])).count() as i64),
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn smembers(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<Set, _>(s, &a[1], |set| members(set.into_iter().flatten().cloned()))
}

pub fn sismember(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<Set, _>(s, &a[1], |set| {
        Reply::Int(set.is_some_and(|set| set.contains(&a[2][..])) as i64)
    })
}

pub fn smismember(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<Set, _>(s, &a[1], |set| {
        Reply::Array(
            a[2..]
                .iter()
                .map(|m| Reply::Int(set.is_some_and(|set| set.contains(&m[..])) as i64))
                .collect(),
        )
    })
}

pub fn scard(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<Set, _>(s, &a[1], |set| {
        Reply::Int(set.map_or(0, |s| s.len() as i64))
    })
}

fn count_arg(a: Option<&Bytes>) -> CmdResult<Option<i64>> {
    a.map(|c| int_arg(c)).transpose()
}

pub fn spop(s: &Store, a: &[Bytes]) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = count_arg(a.get(2))?;
    if count.is_some_and(|c| c < 0) {
        return Err(CmdError::msg("ERR value is out of range, must be positive"));
    }
    modify::<Set, _>(
        s,
        &a[1],
        false,
        |set| {
            Ok(match count {
                None => {
                    let i = random_below(set.len() as u64) as usize;
                    Reply::opt_bulk(set.swap_remove_index(i))
                }
                Some(n) => {
                    let n = (n as usize).min(set.len());
                    let picked: Vec<Bytes> = (0..n)
                        .filter_map(|_| {
                            let i = random_below(set.len() as u64) as usize;
                            set.swap_remove_index(i)
                        })
                        .collect();
                    members(picked)
                }
            })
        },
        if count.is_some() {
            Reply::Set(Vec::new())
        } else {
            Reply::Nil
        },
    )
}

pub fn srandmember(s: &Store, a: &[Bytes]) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = a.get(2).map(|c| rand_count(c, false)).transpose()?;
    read::<Set, _>(s, &a[1], |set| {
        let len = set.map_or(0, |s| s.len());
        let at = |i: usize| set.and_then(|s| s.get_index(i)).cloned();
        Ok(match count {
            None if len == 0 => Reply::Nil,
            None => Reply::opt_bulk(at(random_below(len as u64) as usize)),
            Some(n) if n < 0 => {
                if len == 0 {
                    return Ok(Reply::Array(Vec::new()));
                }
                let bytes = set.map_or(0, |s| s.iter().map(|m| m.len()).sum());
                reply_fits(n.unsigned_abs(), len, bytes)?;
                Reply::Array(
                    (0..n.unsigned_abs())
                        .filter_map(|_| at(random_below(len as u64) as usize))
                        .map(Reply::Bulk)
                        .collect(),
                )
            }
            Some(n) => {
                let all: Vec<Bytes> = set.into_iter().flatten().cloned().collect();
                Reply::Array(random_picks(&all, n).into_iter().map(Reply::Bulk).collect())
            }
        })
    })?
}

pub fn smove(s: &Store, a: &[Bytes]) -> CmdResult {
    // A missing source answers 0; then both types are checked before
    // anything moves, as Redis does.
    if !read::<Set, _>(s, &a[1], |set| set.is_some())? {
        return Ok(Reply::Int(0));
    }
    read::<Set, _>(s, &a[2], |_| ())?;
    let moved = modify::<Set, _>(s, &a[1], false, |set| Ok(set.swap_remove(&a[3][..])), false)?;
    if moved {
        modify::<Set, _>(
            s,
            &a[2],
            true,
            |set| {
                set.insert(own(&a[3]));
                Ok(())
            },
            (),
        )?;
    }
    Ok(Reply::Int(moved as i64))
}

/// The sets at `keys` (missing keys are empty), or WRONGTYPE.
fn load(s: &Store, keys: &[Bytes]) -> CmdResult<Vec<Set>> {
    keys.iter()
        .map(|k| read::<Set, _>(s, k, |set| set.cloned().unwrap_or_default()))
        .collect()
}

#[derive(Clone, Copy)]
enum Op {
    Inter,
    Union,
    Diff,
}

fn combine(sets: Vec<Set>, op: Op) -> Set {
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return Set::new();
    };
    match op {
        Op::Union => it.fold(first, |mut acc, s| {
            acc.extend(s);
            acc
        }),
        Op::Inter => {
            let rest: Vec<Set> = it.collect();
            first
                .into_iter()
                .filter(|m| rest.iter().all(|s| s.contains(m)))
                .collect()
        }
        Op::Diff => {
            let rest: Vec<Set> = it.collect();
            first
                .into_iter()
                .filter(|m| !rest.iter().any(|s| s.contains(m)))
                .collect()
        }
    }
}

/// SINTER without copying every set: the smallest is copied and each of
/// its members looked up in the others, O(N * M) as in Redis.
fn intersect(s: &Store, keys: &[Bytes]) -> CmdResult<Set> {
    let mut sizes = Vec::with_capacity(keys.len());
    for k in keys {
        sizes.push(read::<Set, _>(s, k, |set| set.map_or(0, |s| s.len()))?);
    }
    let Some((smallest, _)) = sizes.iter().enumerate().min_by_key(|x| x.1) else {
        return Ok(Set::new());
    };
    let base = read::<Set, _>(s, &keys[smallest], |set| set.cloned().unwrap_or_default())?;
    let mut out = Set::new();
    'members: for m in base {
        for (i, k) in keys.iter().enumerate() {
            if i != smallest
                && !read::<Set, _>(s, k, |set| set.is_some_and(|set| set.contains(&m)))?
            {
                continue 'members;
            }
        }
        out.insert(m);
    }
    Ok(out)
}

fn compute(s: &Store, keys: &[Bytes], op: Op) -> CmdResult<Set> {
    match op {
        Op::Inter => intersect(s, keys),
        _ => Ok(combine(load(s, keys)?, op)),
    }
}

fn op_reply(s: &Store, a: &[Bytes], op: Op) -> CmdResult {
    Ok(members(compute(s, &a[1..], op)?))
}

fn op_store(s: &Store, a: &[Bytes], op: Op) -> CmdResult {
    let result = compute(s, &a[2..], op)?;
    let n = result.len() as i64;
    store(s, &a[1], result, Value::Set);
    Ok(Reply::Int(n))
}

pub fn sinter(s: &Store, a: &[Bytes]) -> CmdResult {
    op_reply(s, a, Op::Inter)
}

pub fn sunion(s: &Store, a: &[Bytes]) -> CmdResult {
    op_reply(s, a, Op::Union)
}

pub fn sdiff(s: &Store, a: &[Bytes]) -> CmdResult {
    op_reply(s, a, Op::Diff)
}

pub fn sinterstore(s: &Store, a: &[Bytes]) -> CmdResult {
    op_store(s, a, Op::Inter)
}

pub fn sunionstore(s: &Store, a: &[Bytes]) -> CmdResult {
    op_store(s, a, Op::Union)
}

pub fn sdiffstore(s: &Store, a: &[Bytes]) -> CmdResult {
    op_store(s, a, Op::Diff)
}

/// The `numkeys key... [LIMIT n]` of SINTERCARD, checked as Redis checks it.
fn card_args(a: &[Bytes]) -> CmdResult<(Vec<Bytes>, usize)> {
    let n =
        crate::wire::util::range_arg(&a[1], 1, i64::MAX, Some("numkeys should be greater than 0"))?
            as usize;
    let Some(keys) = a.get(2..2 + n) else {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    };
    let mut limit = 0;
    let mut i = 2 + n;
    while i < a.len() {
        if is(&a[i], "LIMIT") && i + 1 < a.len() {
            limit = crate::wire::util::positive_arg(&a[i + 1], Some("LIMIT can't be negative"))?
                as usize;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((keys.to_vec(), limit))
}

pub fn sintercard(s: &Store, a: &[Bytes]) -> CmdResult {
    let (keys, limit) = card_args(a)?;
    let n = intersect(s, &keys)?.len();
    Ok(Reply::Int(if limit == 0 { n } else { n.min(limit) } as i64))
}

pub fn sscan(s: &Store, a: &[Bytes]) -> CmdResult {
    let sa = parse_scan(a, 2, false)?;
    read::<Set, _>(s, &a[1], |set| {
        let Some(set) = set else {
            return scan_reply(0, Vec::new());
        };
        let (next, found) = scan_step(set.iter().map(|m| (m, ())), set.len(), &sa);
        let items = found
            .into_iter()
            .filter(|(m, _)| sa.pattern.as_ref().is_none_or(|p| glob_match(p, m)))
            .map(|(m, _)| Reply::Bulk(m.clone()))
            .collect();
        scan_reply(next, items)
    })
}
