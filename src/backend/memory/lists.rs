//! List commands. A list left empty is deleted, as in Redis.

use std::collections::VecDeque;

use bytes::Bytes;

use super::blocking::timeout_arg;
use super::own;
use super::store::Store;
use super::typed::{modify, read};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is};

type List = VecDeque<Bytes>;

#[derive(Clone, Copy, PartialEq)]
pub enum End {
    Left,
    Right,
}

pub fn end_arg(a: &[u8]) -> CmdResult<End> {
    if is(a, "LEFT") {
        Ok(End::Left)
    } else if is(a, "RIGHT") {
        Ok(End::Right)
    } else {
        Err(CmdError::Syntax)
    }
}

fn pop(l: &mut List, end: End) -> Option<Bytes> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

fn push(l: &mut List, end: End, v: Bytes) {
    match end {
        End::Left => l.push_front(v),
        End::Right => l.push_back(v),
    }
}

/// Start and stop indexes (inclusive, negatives from the end) clamped to a
/// list of `len`; None when the range is empty.
pub fn clamp_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}

fn push_generic(s: &Store, a: &[Bytes], end: End, create: bool) -> CmdResult {
    let n = modify::<List, _>(
        s,
        &a[1],
        create,
        |l| {
            for v in &a[2..] {
                push(l, end, own(v));
            }
            Ok(l.len() as i64)
        },
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn lpush(s: &Store, a: &[Bytes]) -> CmdResult {
    push_generic(s, a, End::Left, true)
}

pub fn rpush(s: &Store, a: &[Bytes]) -> CmdResult {
    push_generic(s, a, End::Right, true)
}

pub fn lpushx(s: &Store, a: &[Bytes]) -> CmdResult {
    push_generic(s, a, End::Left, false)
}

pub fn rpushx(s: &Store, a: &[Bytes]) -> CmdResult {
    push_generic(s, a, End::Right, false)
}

/// A COUNT argument that must be positive ("must be positive" text).
fn positive_count(a: &[u8]) -> CmdResult<usize> {
    Ok(crate::wire::util::positive_arg(a, None)? as usize)
}

fn pop_generic(s: &Store, a: &[Bytes], end: End) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::WrongArity(
            String::from_utf8_lossy(&a[0]).to_lowercase(),
        ));
    }
    let count = match a.get(2) {
        Some(c) => Some(positive_count(c)?),
        None => None,
    };
    modify::<List, _>(
        s,
        &a[1],
        false,
        |l| {
            Ok(match count {
                None => Reply::opt_bulk(pop(l, end)),
                Some(n) => {
                    Reply::Array((0..n).map_while(|_| pop(l, end)).map(Reply::Bulk).collect())
                }
            })
        },
        if count.is_some() {
            Reply::NilArray
        } else {
            Reply::Nil
        },
    )
}

pub fn lpop(s: &Store, a: &[Bytes]) -> CmdResult {
    pop_generic(s, a, End::Left)
}

pub fn rpop(s: &Store, a: &[Bytes]) -> CmdResult {
    pop_generic(s, a, End::Right)
}

pub fn llen(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<List, _>(s, &a[1], |l| Reply::Int(l.map_or(0, |l| l.len() as i64)))
}

pub fn lrange(s: &Store, a: &[Bytes]) -> CmdResult {
    let (start, stop) = (int_arg(&a[2])?, int_arg(&a[3])?);
    read::<List, _>(s, &a[1], |l| {
        let Some(l) = l else {
            return Reply::Array(Vec::new());
        };
        match clamp_range(start, stop, l.len()) {
            None => Reply::Array(Vec::new()),
            Some((i, j)) => Reply::Array(l.range(i..=j).cloned().map(Reply::Bulk).collect()),
        }
    })
}

fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

/// LINDEX: the key, then the index, as Redis checks them.
pub fn lindex(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<List, _>(s, &a[1], |l| {
        let Some(l) = l else {
            return Ok(Reply::Nil);
        };
        let i = int_arg(&a[2])?;
        Ok(Reply::opt_bulk(index(i, l.len()).map(|i| l[i].clone())))
    })?
}

/// LSET: the key, then the index, as Redis checks them.
pub fn lset(s: &Store, a: &[Bytes]) -> CmdResult {
    let found = modify::<List, _>(
        s,
        &a[1],
        false,
        |l| {
            let i = int_arg(&a[2])?;
            let Some(i) = index(i, l.len()) else {
                return Err(CmdError::msg("ERR index out of range"));
            };
            l[i] = own(&a[3]);
            Ok(true)
        },
        false,
    )?;
    if found {
        Ok(Reply::ok())
    } else {
        Err(CmdError::NoSuchKey)
    }
}

pub fn lrem(s: &Store, a: &[Bytes]) -> CmdResult {
    let count = int_arg(&a[2])?;
    let target = &a[3];
    let n = modify::<List, _>(
        s,
        &a[1],
        false,
        |l| {
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let mut removed = 0;
            if count >= 0 {
                let mut i = 0;
                while i < l.len() && removed < limit {
                    if l[i] == target {
                        l.remove(i);
                        removed += 1;
                    } else {
                        i += 1;
                    }
                }
            } else {
                let mut i = l.len();
                while i > 0 && removed < limit {
                    i -= 1;
                    if l[i] == target {
                        l.remove(i);
                        removed += 1;
                    }
                }
            }
            Ok(removed as i64)
        },
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn ltrim(s: &Store, a: &[Bytes]) -> CmdResult {
    let (start, stop) = (int_arg(&a[2])?, int_arg(&a[3])?);
    modify::<List, _>(
        s,
        &a[1],
        false,
        |l| {
            match clamp_range(start, stop, l.len()) {
                None => l.clear(),
                Some((i, j)) => {
                    l.truncate(j + 1);
                    l.drain(..i);
                }
            }
            Ok(())
        },
        (),
    )?;
    Ok(Reply::ok())
}

pub fn linsert(s: &Store, a: &[Bytes]) -> CmdResult {
    let after = if is(&a[2], "AFTER") {
        true
    } else if is(&a[2], "BEFORE") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let n = modify::<List, _>(
        s,
        &a[1],
        false,
        |l| {
            Ok(match l.iter().position(|v| v == &a[3]) {
                None => -1,
                Some(i) => {
                    l.insert(if after { i + 1 } else { i }, own(&a[4]));
                    l.len() as i64
                }
            })
        },
        0,
    )?;
    Ok(Reply::Int(n))
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
pub fn lpos(s: &Store, a: &[Bytes]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < a.len() {
        let Some(v) = a.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        if is(&a[i], "RANK") {
            rank = crate::wire::util::range_arg(v, -i64::MAX, i64::MAX, None)?;
            if rank == 0 {
                return Err(CmdError::msg(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&a[i], "COUNT") {
            count =
                Some(crate::wire::util::positive_arg(v, Some("COUNT can't be negative"))? as usize);
        } else if is(&a[i], "MAXLEN") {
            maxlen = crate::wire::util::positive_arg(v, Some("MAXLEN can't be negative"))? as usize;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    read::<List, _>(s, &a[1], |l| {
        let empty = || match count {
            Some(_) => Reply::Array(Vec::new()),
            None => Reply::Nil,
        };
        let Some(l) = l else {
            return empty();
        };
        let want = match count {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => 1,
        };
        let limit = if maxlen == 0 {
            l.len()
        } else {
            maxlen.min(l.len())
        };
        let mut skip = rank.unsigned_abs() - 1;
        let mut found = Vec::new();
        let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
            Box::new(0..limit)
        } else {
            Box::new((l.len() - limit..l.len()).rev())
        };
        for p in positions {
            if l[p] == a[2] {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                found.push(p);
                if found.len() >= want {
                    break;
                }
            }
        }
        match count {
            Some(_) => Reply::Array(found.into_iter().map(|p| Reply::Int(p as i64)).collect()),
            None => found.first().map_or(Reply::Nil, |&p| Reply::Int(p as i64)),
        }
    })
}

/// Pops from `src` and pushes to `dst` atomically (the caller holds the
/// store's gate exclusively); None when `src` is empty.
pub fn move_one(s: &Store, src: &[u8], dst: &[u8], from: End, to: End) -> CmdResult<Option<Bytes>> {
    // The source first (missing: nothing to do), then the destination's
    // type, as Redis checks them, so that nothing is popped and lost.
    if !read::<List, _>(s, src, |l| l.is_some())? {
        return Ok(None);
    }
    read::<List, _>(s, dst, |_| ())?;
    let v = modify::<List, _>(s, src, false, |l| Ok(pop(l, from)), None)?;
    if let Some(v) = &v {
        modify::<List, _>(
            s,
            dst,
            true,
            |l| {
                push(l, to, v.clone());
                Ok(())
            },
            (),
        )?;
    }
    Ok(v)
}

pub fn lmove(s: &Store, a: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&a[3])?, end_arg(&a[4])?);
    Ok(Reply::opt_bulk(move_one(s, &a[1], &a[2], from, to)?))
}

pub fn rpoplpush(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::opt_bulk(move_one(
        s,
        &a[1],
        &a[2],
        End::Right,
        End::Left,
    )?))
}

/// `numkeys key... LEFT|RIGHT [COUNT n]` from `a[at..]`, as LMPOP and
/// BLMPOP (after its timeout) take them.
pub struct MpopArgs {
    pub keys: Vec<Bytes>,
    pub end: End,
    pub count: usize,
}

pub fn parse_mpop(a: &[Bytes], at: usize) -> CmdResult<MpopArgs> {
    let n = crate::wire::util::range_arg(
        &a[at],
        1,
        i64::MAX,
        Some("numkeys should be greater than 0"),
    )? as usize;
    let Some(keys) = a.get(at + 1..at + 1 + n) else {
        return Err(CmdError::Syntax);
    };
    let Some(end) = a.get(at + 1 + n) else {
        return Err(CmdError::Syntax);
    };
    let end = end_arg(end)?;
    let count = match &a[at + 2 + n..] {
        [] => 1,
        [c, v] if is(c, "COUNT") => {
            crate::wire::util::range_arg(v, 1, i64::MAX, Some("count should be greater than 0"))?
                as usize
        }
        _ => return Err(CmdError::Syntax),
    };
    Ok(MpopArgs {
        keys: keys.to_vec(),
        end,
        count,
    })
}

/// Pops up to `count` from the first non-empty list: `[key, [elements]]`,
/// or None when all are empty.
pub fn mpop(s: &Store, m: &MpopArgs) -> CmdResult<Option<Reply>> {
    for k in &m.keys {
        let got = modify::<List, _>(
            s,
            k,
            false,
            |l| {
                Ok((0..m.count)
                    .map_while(|_| pop(l, m.end))
                    .collect::<Vec<_>>())
            },
            Vec::new(),
        )?;
        if !got.is_empty() {
            return Ok(Some(Reply::Array(vec![
                Reply::Bulk(k.clone()),
                Reply::Array(got.into_iter().map(Reply::Bulk).collect()),
            ])));
        }
    }
    Ok(None)
}

pub fn lmpop(s: &Store, a: &[Bytes]) -> CmdResult {
    let m = parse_mpop(a, 1)?;
    Ok(mpop(s, &m)?.unwrap_or(Reply::NilArray))
}

/// Pops one element from the first non-empty list: `[key, element]`.
pub fn pop_first(s: &Store, keys: &[Bytes], end: End) -> CmdResult<Option<Reply>> {
    for k in keys {
        if let Some(v) = modify::<List, _>(s, k, false, |l| Ok(pop(l, end)), None)? {
            return Ok(Some(Reply::Array(vec![
                Reply::Bulk(k.clone()),
                Reply::Bulk(v),
            ])));
        }
    }
    Ok(None)
}

// Blocking forms, as they run when they do not block: inside MULTI, or
// when the data is already there (see `blocking`).

pub fn blpop(s: &Store, a: &[Bytes]) -> CmdResult {
    timeout_arg(&a[a.len() - 1])?;
    Ok(pop_first(s, &a[1..a.len() - 1], End::Left)?.unwrap_or(Reply::NilArray))
}

pub fn brpop(s: &Store, a: &[Bytes]) -> CmdResult {
    timeout_arg(&a[a.len() - 1])?;
    Ok(pop_first(s, &a[1..a.len() - 1], End::Right)?.unwrap_or(Reply::NilArray))
}

pub fn blmove(s: &Store, a: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&a[3])?, end_arg(&a[4])?);
    timeout_arg(&a[5])?;
    Ok(Reply::opt_bulk(move_one(s, &a[1], &a[2], from, to)?))
}

pub fn brpoplpush(s: &Store, a: &[Bytes]) -> CmdResult {
    timeout_arg(&a[3])?;
    Ok(Reply::opt_bulk(move_one(
        s,
        &a[1],
        &a[2],
        End::Right,
        End::Left,
    )?))
}

pub fn blmpop(s: &Store, a: &[Bytes]) -> CmdResult {
    timeout_arg(&a[1])?;
    let m = parse_mpop(a, 2)?;
    Ok(mpop(s, &m)?.unwrap_or(Reply::NilArray))
}
