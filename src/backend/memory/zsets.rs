//! Sorted-set commands, with Redis 7's ranges, options and errors. A sorted
//! set left empty is deleted.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::blocking::timeout_arg;
use super::own;
use super::store::{Store, Value, ValueRef};
use super::typed::{modify, rand_count, random_picks, read, reply_fits, scan_step, store};
use super::zset::ZSet;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::{Reply, format_double};
use crate::wire::scan::{parse_scan, scan_reply};
use crate::wire::util::{glob_match, int_arg, is, parse_f64};

fn score_arg(a: &[u8]) -> CmdResult<f64> {
    parse_f64(a)
        .filter(|f| !f.is_nan())
        .ok_or(CmdError::NotFloat)
}

/// One end of a score range: `(` makes it exclusive; `-inf`/`+inf`.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

fn score_bound(a: &[u8]) -> CmdResult<ScoreBound> {
    let bad = || CmdError::msg("ERR min or max is not a float");
    let (exclusive, rest) = match a.strip_prefix(b"(") {
        Some(r) => (true, r),
        None => (false, a),
    };
    let value = crate::wire::util::parse_range_f64(rest).ok_or_else(bad)?;
    Ok(ScoreBound { value, exclusive })
}

/// One end of a lex range: `[a` inclusive, `(a` exclusive, `-` and `+`.
#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    At(Bytes, bool),
}

fn lex_bound(a: &Bytes) -> CmdResult<LexBound> {
    match a.first() {
        Some(b'-') if a.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if a.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::At(a.slice(1..), false)),
        Some(b'(') => Ok(LexBound::At(a.slice(1..), true)),
        _ => Err(CmdError::msg("ERR min or max not valid string range item")),
    }
}

/// Index range `[from, to)` of elements within score bounds.
fn score_span(z: &ZSet, min: ScoreBound, max: ScoreBound) -> (usize, usize) {
    let from = z.count_before(|s, _| {
        if min.exclusive {
            s <= min.value
        } else {
            s < min.value
        }
    });
    let to = z.count_before(|s, _| {
        if max.exclusive {
            s < max.value
        } else {
            s <= max.value
        }
    });
    (from, to.max(from))
}

/// Index range of elements within lex bounds (all scores being equal, as
/// Redis requires for lex commands).
fn lex_span(z: &ZSet, min: &LexBound, max: &LexBound) -> (usize, usize) {
    let before = |b: &LexBound, upper: bool| -> usize {
        match b {
            LexBound::Min => 0,
            LexBound::Max => z.len(),
            LexBound::At(v, excl) => z.count_before(|_, m| {
                if upper != *excl {
                    m <= &v[..]
                } else {
                    m < &v[..]
                }
            }),
        }
    };
    let from = before(min, false);
    let to = before(max, true);
    (from, to.max(from))
}

fn score_reply(s: f64) -> Reply {
    Reply::Double(s)
}

/// Members with or without scores, as ZRANGE answers them.
fn with_scores(items: Vec<(Bytes, f64)>, scores: bool) -> Reply {
    if scores {
        Reply::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Reply::Bulk(m), score_reply(s)))
                .collect(),
        )
    } else {
        Reply::Array(items.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
    }
}

pub fn zadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if is(o, "NX") {
            nx = true;
        } else if is(o, "XX") {
            xx = true;
        } else if is(o, "GT") {
            gt = true;
        } else if is(o, "LT") {
            lt = true;
        } else if is(o, "CH") {
            ch = true;
        } else if is(o, "INCR") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &a[i..];
    if pairs.is_empty() || pairs.len() % 2 == 1 {
        return Err(CmdError::Syntax);
    }
    if nx && xx {
        return Err(CmdError::msg(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (gt || lt) && (nx || (gt && lt)) {
        return Err(CmdError::msg(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && pairs.len() > 2 {
        return Err(CmdError::msg(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let scores: Vec<f64> = pairs
        .chunks(2)
        .map(|p| score_arg(&p[0]))
        .collect::<CmdResult<_>>()?;
    let create = !xx;
    let nil = if incr { Reply::Nil } else { Reply::Int(0) };
    modify::<ZSet, _>(
        s,
        &a[1],
        create,
        |z| {
            let (mut added, mut changed) = (0, 0);
            let mut last = None;
            for (p, &score) in pairs.chunks(2).zip(&scores) {
                let member = &p[1];
                let old = z.score(member);
                if (nx && old.is_some()) || (xx && old.is_none()) {
                    continue;
                }
                let new = match (incr, old) {
                    (true, Some(o)) => o + score,
                    _ => score,
                };
                if new.is_nan() {
                    return Err(CmdError::msg("ERR resulting score is not a number (NaN)"));
                }
                if let Some(o) = old {
                    if (gt && new <= o) || (lt && new >= o) {
                        continue;
                    }
                    if o != new {
                        z.insert(member.clone(), new);
                        changed += 1;
                    }
                } else {
                    z.insert(own(member), new);
                    added += 1;
                }
                last = Some(new);
            }
            Ok(if incr {
                last.map_or(Reply::Nil, score_reply)
            } else {
                Reply::Int(if ch { added + changed } else { added })
            })
        },
        nil,
    )
}

pub fn zincrby(s: &Store, a: &[Bytes]) -> CmdResult {
    // Redis reads ZINCRBY as ZADD INCR: a flag where the increment goes
    // leaves no score-member pair.
    if ["NX", "XX", "GT", "LT", "CH", "INCR"]
        .iter()
        .any(|f| is(&a[2], f))
    {
        return Err(CmdError::Syntax);
    }
    let by = score_arg(&a[2])?;
    modify::<ZSet, _>(
        s,
        &a[1],
        true,
        |z| {
            let new = z.score(&a[3]).unwrap_or(0.0) + by;
            if new.is_nan() {
                return Err(CmdError::msg("ERR resulting score is not a number (NaN)"));
            }
            z.insert(own(&a[3]), new);
            Ok(score_reply(new))
        },
        Reply::Nil,
    )
}

pub fn zrem(s: &Store, a: &[Bytes]) -> CmdResult {
    let n = modify::<ZSet, _>(
        s,
        &a[1],
        false,
        |z| Ok(a[2..].iter().filter(|m| z.remove(m)).count() as i64),
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn zscore(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<ZSet, _>(s, &a[1], |z| {
        z.and_then(|z| z.score(&a[2]))
            .map_or(Reply::Nil, score_reply)
    })
}

pub fn zmscore(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<ZSet, _>(s, &a[1], |z| {
        Reply::Array(
            a[2..]
                .iter()
                .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Nil, score_reply))
                .collect(),
        )
    })
}

pub fn zcard(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<ZSet, _>(s, &a[1], |z| Reply::Int(z.map_or(0, |z| z.len() as i64)))
}

pub fn zcount(s: &Store, a: &[Bytes]) -> CmdResult {
    let (min, max) = (score_bound(&a[2])?, score_bound(&a[3])?);
    read::<ZSet, _>(s, &a[1], |z| {
        Reply::Int(z.map_or(0, |z| {
            let (f, t) = score_span(z, min, max);
            (t - f) as i64
        }))
    })
}

pub fn zlexcount(s: &Store, a: &[Bytes]) -> CmdResult {
    let (min, max) = (lex_bound(&a[2])?, lex_bound(&a[3])?);
    read::<ZSet, _>(s, &a[1], |z| {
        Reply::Int(z.map_or(0, |z| {
            let (f, t) = lex_span(z, &min, &max);
            (t - f) as i64
        }))
    })
}

#[derive(Clone, Copy, PartialEq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed ZRANGE-family request.
struct Range {
    by: By,
    rev: bool,
    start: Bytes,
    stop: Bytes,
    limit: Option<(i64, i64)>,
    scores: bool,
}

/// Parses `start stop [BYSCORE|BYLEX] [REV] [LIMIT o c] [WITHSCORES]` from
/// `a[at..]`; `store` (ZRANGESTORE) refuses WITHSCORES.
fn parse_range(a: &[Bytes], at: usize, store: bool) -> CmdResult<Range> {
    parse_range_as(a, at, store, None)
}

/// As `parse_range`, for ZRANGE's older forms too, whose kind and
/// direction are `fixed`: Redis parses them all alike, so their options
/// give the same errors in the same order.
fn parse_range_as(
    a: &[Bytes],
    at: usize,
    store: bool,
    fixed: Option<(By, bool)>,
) -> CmdResult<Range> {
    let (by, rev) = fixed.unwrap_or((By::Rank, false));
    let mut by_given = false;
    let mut r = Range {
        by,
        rev,
        start: a[at].clone(),
        stop: a[at + 1].clone(),
        limit: None,
        scores: false,
    };
    let mut i = at + 2;
    while i < a.len() {
        let o = &a[i];
        // BYSCORE, BYLEX and REV may each come once, and not both BY kinds,
        // as Redis parses them.
        if is(o, "BYSCORE") && fixed.is_none() && !by_given {
            r.by = By::Score;
            by_given = true;
        } else if is(o, "BYLEX") && fixed.is_none() && !by_given {
            r.by = By::Lex;
            by_given = true;
        } else if is(o, "REV") && fixed.is_none() && !r.rev {
            r.rev = true;
        } else if is(o, "WITHSCORES") && !store {
            r.scores = true;
        } else if is(o, "LIMIT") && i + 2 < a.len() {
            r.limit = Some((int_arg(&a[i + 1])?, int_arg(&a[i + 2])?));
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if r.limit.is_some() && r.by == By::Rank {
        return Err(CmdError::msg(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if r.scores && r.by == By::Lex {
        return Err(CmdError::msg(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // The range is read before the key is looked up, as in Redis.
    match r.by {
        By::Rank => {
            int_arg(&r.start)?;
            int_arg(&r.stop)?;
        }
        By::Score => {
            score_bound(&r.start)?;
            score_bound(&r.stop)?;
        }
        By::Lex => {
            lex_bound(&r.start)?;
            lex_bound(&r.stop)?;
        }
    }
    Ok(r)
}

/// The elements a range selects, in the order it returns them.
fn select(z: &ZSet, r: &Range) -> CmdResult<Vec<(Bytes, f64)>> {
    let len = z.len();
    let (from, to) = match r.by {
        By::Rank => {
            let (start, stop) = (int_arg(&r.start)?, int_arg(&r.stop)?);
            match super::lists::clamp_range(start, stop, len) {
                None => return Ok(Vec::new()),
                Some((i, j)) if r.rev => (len - 1 - j, len - i),
                Some((i, j)) => (i, j + 1),
            }
        }
        By::Score => {
            let (lo, hi) = if r.rev {
                (&r.stop, &r.start)
            } else {
                (&r.start, &r.stop)
            };
            score_span(z, score_bound(lo)?, score_bound(hi)?)
        }
        By::Lex => {
            let (lo, hi) = if r.rev {
                (&r.stop, &r.start)
            } else {
                (&r.start, &r.stop)
            };
            lex_span(z, &lex_bound(lo)?, &lex_bound(hi)?)
        }
    };
    let n = to - from;
    let (offset, count) = match r.limit {
        None => (0, n),
        Some((o, _)) if o < 0 => return Ok(Vec::new()),
        Some((o, c)) => (o as usize, if c < 0 { n } else { c as usize }),
    };
    if offset >= n {
        return Ok(Vec::new());
    }
    let take = count.min(n - offset);
    Ok(if r.rev {
        let hi = to - offset;
        let mut v = z.range(hi - take, hi);
        v.reverse();
        v
    } else {
        z.range(from + offset, from + offset + take)
    })
}

fn range_reply(s: &Store, key: &[u8], r: &Range) -> CmdResult {
    // Bounds are checked even when the key is missing, as Redis does.
    if r.by != By::Rank {
        let check = ZSet::default();
        select(&check, r)?;
    } else {
        int_arg(&r.start)?;
        int_arg(&r.stop)?;
    }
    let items = read::<ZSet, _>(s, key, |z| z.map(|z| select(z, r)))?;
    Ok(with_scores(
        items.transpose()?.unwrap_or_default(),
        r.scores,
    ))
}

pub fn zrange(s: &Store, a: &[Bytes]) -> CmdResult {
    let r = parse_range(a, 2, false)?;
    range_reply(s, &a[1], &r)
}

/// ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE:
/// the old forms, as ZRANGE with BY/REV set.
fn legacy(s: &Store, a: &[Bytes], by: By, rev: bool) -> CmdResult {
    let r = parse_range_as(a, 2, false, Some((by, rev)))?;
    range_reply(s, &a[1], &r)
}

pub fn zrangebyscore(s: &Store, a: &[Bytes]) -> CmdResult {
    legacy(s, a, By::Score, false)
}

pub fn zrevrangebyscore(s: &Store, a: &[Bytes]) -> CmdResult {
    legacy(s, a, By::Score, true)
}

pub fn zrangebylex(s: &Store, a: &[Bytes]) -> CmdResult {
    legacy(s, a, By::Lex, false)
}

pub fn zrevrangebylex(s: &Store, a: &[Bytes]) -> CmdResult {
    legacy(s, a, By::Lex, true)
}

pub fn zrevrange(s: &Store, a: &[Bytes]) -> CmdResult {
    legacy(s, a, By::Rank, true)
}

pub fn zrangestore(s: &Store, a: &[Bytes]) -> CmdResult {
    let r = parse_range(a, 3, true)?;
    let items = read::<ZSet, _>(s, &a[2], |z| z.map(|z| select(z, &r)))?
        .transpose()?
        .unwrap_or_default();
    let n = items.len() as i64;
    let mut z = ZSet::default();
    for (m, sc) in items {
        z.insert(m, sc);
    }
    store(s, &a[1], z, Value::ZSet);
    Ok(Reply::Int(n))
}

fn rank_generic(s: &Store, a: &[Bytes], rev: bool) -> CmdResult {
    let withscore = match a.get(3) {
        None => false,
        Some(o) if is(o, "WITHSCORE") && a.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    read::<ZSet, _>(s, &a[1], |z| {
        let found = z.and_then(|z| {
            let r = z.rank(&a[2])?;
            let r = if rev { z.len() - 1 - r } else { r };
            Some((r, z.score(&a[2]).unwrap_or(0.0)))
        });
        match (found, withscore) {
            (None, true) => Reply::NilArray,
            (None, false) => Reply::Nil,
            (Some((r, sc)), true) => Reply::Array(vec![Reply::Int(r as i64), score_reply(sc)]),
            (Some((r, _)), false) => Reply::Int(r as i64),
        }
    })
}

pub fn zrank(s: &Store, a: &[Bytes]) -> CmdResult {
    rank_generic(s, a, false)
}

pub fn zrevrank(s: &Store, a: &[Bytes]) -> CmdResult {
    rank_generic(s, a, true)
}

/// Removes and returns up to `count` lowest (or highest, `max`) elements.
fn pop(z: &mut ZSet, count: usize, max: bool) -> Vec<(Bytes, f64)> {
    let n = count.min(z.len());
    let picked = if max {
        let mut v = z.range(z.len() - n, z.len());
        v.reverse();
        v
    } else {
        z.range(0, n)
    };
    for (m, _) in &picked {
        z.remove(m);
    }
    picked
}

fn zpop_generic(s: &Store, a: &[Bytes], max: bool) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => Some(crate::wire::util::positive_arg(c, None)? as usize),
    };
    modify::<ZSet, _>(
        s,
        &a[1],
        false,
        |z| {
            let got = pop(z, count.unwrap_or(1), max);
            Ok(match count {
                // One element: a flat [member, score], in both protocols.
                None => Reply::Array(
                    got.into_iter()
                        .flat_map(|(m, sc)| [Reply::Bulk(m), score_reply(sc)])
                        .collect(),
                ),
                Some(_) => with_scores(got, true),
            })
        },
        Reply::Array(Vec::new()),
    )
}

pub fn zpopmin(s: &Store, a: &[Bytes]) -> CmdResult {
    zpop_generic(s, a, false)
}

pub fn zpopmax(s: &Store, a: &[Bytes]) -> CmdResult {
    zpop_generic(s, a, true)
}

/// `numkeys key... MIN|MAX [COUNT n]` from `a[at..]` (ZMPOP, BZMPOP).
fn parse_zmpop(a: &[Bytes], at: usize) -> CmdResult<(Vec<Bytes>, bool, usize)> {
    let n = crate::wire::util::range_arg(
        &a[at],
        1,
        i64::MAX,
        Some("numkeys should be greater than 0"),
    )? as usize;
    let (Some(keys), Some(dir)) = (a.get(at + 1..at + 1 + n), a.get(at + 1 + n)) else {
        return Err(CmdError::Syntax);
    };
    let max = if is(dir, "MAX") {
        true
    } else if is(dir, "MIN") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let count = match &a[at + 2 + n..] {
        [] => 1,
        [c, v] if is(c, "COUNT") => {
            let v = int_arg(v)?;
            if v <= 0 {
                return Err(CmdError::msg("ERR count should be greater than 0"));
            }
            v as usize
        }
        _ => return Err(CmdError::Syntax),
    };
    Ok((keys.to_vec(), max, count))
}

fn zmpop_from(s: &Store, keys: &[Bytes], max: bool, count: usize) -> CmdResult<Option<Reply>> {
    for k in keys {
        let got = modify::<ZSet, _>(s, k, false, |z| Ok(pop(z, count, max)), Vec::new())?;
        if !got.is_empty() {
            let items = got
                .into_iter()
                .map(|(m, sc)| Reply::Array(vec![Reply::Bulk(m), score_reply(sc)]))
                .collect();
            return Ok(Some(Reply::Array(vec![
                Reply::Bulk(k.clone()),
                Reply::Array(items),
            ])));
        }
    }
    Ok(None)
}

pub fn zmpop(s: &Store, a: &[Bytes]) -> CmdResult {
    let (keys, max, count) = parse_zmpop(a, 1)?;
    Ok(zmpop_from(s, &keys, max, count)?.unwrap_or(Reply::NilArray))
}

fn bzpop_generic(s: &Store, a: &[Bytes], max: bool) -> CmdResult {
    timeout_arg(&a[a.len() - 1])?;
    for k in &a[1..a.len() - 1] {
        let got = modify::<ZSet, _>(s, k, false, |z| Ok(pop(z, 1, max)), Vec::new())?;
        if let Some((m, sc)) = got.into_iter().next() {
            return Ok(Reply::Array(vec![
                Reply::Bulk(k.clone()),
                Reply::Bulk(m),
                score_reply(sc),
            ]));
        }
    }
    Ok(Reply::NilArray)
}

pub fn bzpopmin(s: &Store, a: &[Bytes]) -> CmdResult {
    bzpop_generic(s, a, false)
}

pub fn bzpopmax(s: &Store, a: &[Bytes]) -> CmdResult {
    bzpop_generic(s, a, true)
}

pub fn bzmpop(s: &Store, a: &[Bytes]) -> CmdResult {
    timeout_arg(&a[1])?;
    let (keys, max, count) = parse_zmpop(a, 2)?;
    Ok(zmpop_from(s, &keys, max, count)?.unwrap_or(Reply::NilArray))
}

fn remrange(s: &Store, a: &[Bytes], by: By) -> CmdResult {
    let r = Range {
        by,
        rev: false,
        start: a[2].clone(),
        stop: a[3].clone(),
        limit: None,
        scores: false,
    };
    if by == By::Rank {
        int_arg(&a[2])?;
        int_arg(&a[3])?;
    } else {
        select(&ZSet::default(), &r)?;
    }
    let n = modify::<ZSet, _>(
        s,
        &a[1],
        false,
        |z| {
            let gone = select(z, &r)?;
            for (m, _) in &gone {
                z.remove(m);
            }
            Ok(gone.len() as i64)
        },
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn zremrangebyrank(s: &Store, a: &[Bytes]) -> CmdResult {
    remrange(s, a, By::Rank)
}

pub fn zremrangebyscore(s: &Store, a: &[Bytes]) -> CmdResult {
    remrange(s, a, By::Score)
}

pub fn zremrangebylex(s: &Store, a: &[Bytes]) -> CmdResult {
    remrange(s, a, By::Lex)
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The members and scores of a sorted set, or of a plain set (score 1).
fn load(s: &Store, key: &[u8]) -> CmdResult<Option<HashMap<Bytes, f64>>> {
    s.read(key, |e| match e.map(|e| e.value) {
        None => Ok(None),
        Some(ValueRef::ZSet(z)) => Ok(Some(z.members().map(|(m, s)| (m.clone(), *s)).collect())),
        Some(ValueRef::Set(set)) => Ok(Some(set.iter().map(|m| (m.clone(), 1.0)).collect())),
        Some(_) => Err(CmdError::WrongType),
    })
}

/// A ZUNION-family result, sorted; whether scores were asked for; LIMIT.
type Combined = (Vec<(Bytes, f64)>, bool, usize);

/// What a ZUNION-family command does with its result.
#[derive(Clone, Copy, PartialEq)]
enum Combine {
    /// ZUNION, ZINTER, ZDIFF: WITHSCORES allowed.
    Reply,
    /// The STORE forms.
    Store,
    /// ZINTERCARD: LIMIT allowed, nothing else.
    Card,
}

/// Parses `numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX]
/// [WITHSCORES | LIMIT n]` from `a[at..]` and computes the result, sorted;
/// with whether scores were asked for and the LIMIT. As in Redis, the
/// source keys' types are checked before the options are read.
fn combine(s: &Store, a: &[Bytes], at: usize, op: SetOp, mode: Combine) -> CmdResult<Combined> {
    let name = String::from_utf8_lossy(&a[0]).to_lowercase();
    let n = int_arg(&a[at])?;
    if n <= 0 {
        return Err(CmdError::msg(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let n = n as usize;
    let Some(keys) = a.get(at + 1..at + 1 + n) else {
        return Err(CmdError::Syntax);
    };
    let sets: Vec<Option<HashMap<Bytes, f64>>> =
        keys.iter().map(|k| load(s, k)).collect::<CmdResult<_>>()?;
    let mut weights = vec![1.0; n];
    let mut agg = Aggregate::Sum;
    let mut scores = false;
    let mut limit = 0;
    let mut i = at + 1 + n;
    let full = op != SetOp::Diff && mode != Combine::Card;
    while i < a.len() {
        let remaining = a.len() - i;
        if full && remaining > n && is(&a[i], "WEIGHTS") {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = parse_f64(&a[i + 1 + j])
                    .ok_or_else(|| CmdError::msg("ERR weight value is not a float"))?;
            }
            i += n + 1;
        } else if full && remaining >= 2 && is(&a[i], "AGGREGATE") {
            agg = if is(&a[i + 1], "SUM") {
                Aggregate::Sum
            } else if is(&a[i + 1], "MIN") {
                Aggregate::Min
            } else if is(&a[i + 1], "MAX") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            i += 2;
        } else if mode == Combine::Reply && is(&a[i], "WITHSCORES") {
            scores = true;
            i += 1;
        } else if mode == Combine::Card && remaining >= 2 && is(&a[i], "LIMIT") {
            limit = crate::wire::util::positive_arg(&a[i + 1], Some("LIMIT can't be negative"))?
                as usize;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let weigh = |v: f64, w: f64| {
        let x = v * w;
        if x.is_nan() { 0.0 } else { x }
    };
    let fold = |acc: f64, v: f64| {
        let r = match agg {
            Aggregate::Sum => acc + v,
            Aggregate::Min => acc.min(v),
            Aggregate::Max => acc.max(v),
        };
        if r.is_nan() { 0.0 } else { r }
    };
    let mut result: HashMap<Bytes, f64> = HashMap::new();
    match op {
        SetOp::Union => {
            for (set, &w) in sets.iter().zip(&weights) {
                for (m, &v) in set.iter().flatten() {
                    let v = weigh(v, w);
                    result
                        .entry(m.clone())
                        .and_modify(|acc| *acc = fold(*acc, v))
                        .or_insert(v);
                }
            }
        }
        SetOp::Inter => {
            if let Some(Some(first)) = sets.first() {
                'members: for (m, &v) in first {
                    let mut acc = weigh(v, weights[0]);
                    for (set, &w) in sets.iter().zip(&weights).skip(1) {
                        match set.as_ref().and_then(|s| s.get(m)) {
                            Some(&x) => acc = fold(acc, weigh(x, w)),
                            None => continue 'members,
                        }
                    }
                    result.insert(m.clone(), acc);
                }
            }
        }
        SetOp::Diff => {
            if let Some(Some(first)) = sets.first() {
                let rest: Vec<HashSet<&Bytes>> = sets[1..]
                    .iter()
                    .map(|s| s.iter().flat_map(|s| s.keys()).collect())
                    .collect();
                for (m, &v) in first {
                    if !rest.iter().any(|r| r.contains(m)) {
                        result.insert(m.clone(), v);
                    }
                }
            }
        }
    }
    let mut z = ZSet::default();
    for (m, v) in result {
        z.insert(m, v);
    }
    Ok((z.range(0, z.len()), scores, limit))
}

fn combine_store(s: &Store, a: &[Bytes], op: SetOp) -> CmdResult {
    let (items, _, _) = combine(s, a, 2, op, Combine::Store)?;
    let n = items.len() as i64;
    let mut z = ZSet::default();
    for (m, v) in items {
        z.insert(m, v);
    }
    store(s, &a[1], z, Value::ZSet);
    Ok(Reply::Int(n))
}

fn combine_reply(s: &Store, a: &[Bytes], op: SetOp) -> CmdResult {
    let (items, scores, _) = combine(s, a, 1, op, Combine::Reply)?;
    Ok(with_scores(items, scores))
}

pub fn zunionstore(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_store(s, a, SetOp::Union)
}

pub fn zinterstore(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_store(s, a, SetOp::Inter)
}

pub fn zdiffstore(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_store(s, a, SetOp::Diff)
}

pub fn zunion(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_reply(s, a, SetOp::Union)
}

pub fn zinter(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_reply(s, a, SetOp::Inter)
}

pub fn zdiff(s: &Store, a: &[Bytes]) -> CmdResult {
    combine_reply(s, a, SetOp::Diff)
}

pub fn zintercard(s: &Store, a: &[Bytes]) -> CmdResult {
    let (items, _, limit) = combine(s, a, 1, SetOp::Inter, Combine::Card)?;
    let n = items.len();
    Ok(Reply::Int(if limit == 0 { n } else { n.min(limit) } as i64))
}

pub fn zrandmember(s: &Store, a: &[Bytes]) -> CmdResult {
    let scores = match a.get(3) {
        None => false,
        Some(o) if is(o, "WITHSCORES") && a.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    let count = a.get(2).map(|c| rand_count(c, scores)).transpose()?;
    read::<ZSet, _>(s, &a[1], |z| {
        let all: Vec<(Bytes, f64)> = z.map(|z| z.range(0, z.len())).unwrap_or_default();
        Ok(match count {
            None => random_picks(&all, 1)
                .pop()
                .map_or(Reply::Nil, |(m, _)| Reply::Bulk(m)),
            Some(n) => {
                if n < 0 {
                    let bytes = all
                        .iter()
                        .map(|(m, _)| m.len() + if scores { 24 } else { 0 });
                    reply_fits(n.unsigned_abs(), all.len(), bytes.sum())?;
                }
                with_scores(random_picks(&all, n), scores)
            }
        })
    })?
}

pub fn zscan(s: &Store, a: &[Bytes]) -> CmdResult {
    let sa = parse_scan(a, 2, false)?;
    read::<ZSet, _>(s, &a[1], |z| {
        let Some(z) = z else {
            return scan_reply(0, Vec::new());
        };
        let (next, found) = scan_step(z.members(), z.len(), &sa);
        let mut items = Vec::new();
        for (m, sc) in found {
            if sa.pattern.as_ref().is_none_or(|p| glob_match(p, m)) {
                items.push(Reply::Bulk(m.clone()));
                items.push(Reply::Bulk(Bytes::from(format_double(*sc))));
            }
        }
        scan_reply(next, items)
    })
}
