//! Stream commands, with Redis 7.0's replies and error texts: XADD, XLEN,
//! XRANGE, XREVRANGE, XDEL, XTRIM, XREAD, consumer groups (XGROUP,
//! XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM) and XINFO.
//!
//! One difference: Redis trims with `~` only whole nodes of its radix
//! tree, so it may keep more entries than asked; keyway trims to the exact
//! threshold (still at most LIMIT entries, 10000 by default with `~`), and
//! reports XINFO's radix-tree figures as if nodes held 100 entries.

use bytes::Bytes;

use super::own;
use super::store::Store;
use super::stream::{Consumer, Group, Id, Pending, Stream, Trim};
use super::typed::{Kind, modify, read};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::util::{int_arg, is, now_ms};

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

impl Kind for Stream {
    fn of(v: super::store::ValueRef<'_>) -> Option<&Self> {
        match v {
            super::store::ValueRef::Stream(s) => Some(s),
            _ => None,
        }
    }
    fn of_mut(v: &mut super::store::Value) -> Option<&mut Self> {
        match v {
            super::store::Value::Stream(s) => Some(&mut **s),
            _ => None,
        }
    }
    fn new_value() -> super::store::Value {
        super::store::Value::Stream(Box::default())
    }
    fn is_empty(&self) -> bool {
        Stream::is_empty(self)
    }
}

fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Parses `ms[-seq]`: a missing sequence is `missing_seq`; `-` and `+`
/// are the smallest and largest IDs unless `strict`. With `auto_seq`,
/// `ms-*` is accepted and gives `(ms-0, false)`; the flag says whether the
/// sequence was given.
fn parse_id(a: &[u8], missing_seq: u64, strict: bool, auto_seq: bool) -> CmdResult<(Id, bool)> {
    if a.len() > 127 {
        return Err(CmdError::msg(INVALID_ID));
    }
    // Redis reads the ID as a C string: a NUL ends it.
    let a = a.split(|&c| c == 0).next().unwrap_or_default();
    if !strict && a == b"-" {
        return Ok((Id::MIN, true));
    }
    if !strict && a == b"+" {
        return Ok((Id::MAX, true));
    }
    let parsed = match a.iter().position(|&c| c == b'-') {
        None => digits(a).map(|ms| {
            (
                Id {
                    ms,
                    seq: missing_seq,
                },
                true,
            )
        }),
        Some(dash) => {
            let ms = digits(&a[..dash]);
            let rest = &a[dash + 1..];
            if auto_seq && rest == b"*" {
                ms.map(|ms| (Id { ms, seq: 0 }, false))
            } else {
                ms.zip(digits(rest)).map(|(ms, seq)| (Id { ms, seq }, true))
            }
        }
    };
    parsed.ok_or_else(|| CmdError::msg(INVALID_ID))
}

fn strict_id(a: &[u8]) -> CmdResult<Id> {
    Ok(parse_id(a, 0, true, false)?.0)
}

/// A range bound: `(id` is exclusive (and then cannot be `-` or `+`).
fn bound(a: &[u8], missing_seq: u64, start: bool) -> CmdResult<Id> {
    if a.len() > 1 && a[0] == b'(' {
        let id = parse_id(&a[1..], missing_seq, true, false)?.0;
        let stepped = if start { id.next() } else { id.prev() };
        return stepped.ok_or_else(|| {
            CmdError::msg(if start {
                "ERR invalid start ID for the interval"
            } else {
                "ERR invalid end ID for the interval"
            })
        });
    }
    Ok(parse_id(a, missing_seq, false, false)?.0)
}

fn entry_reply(id: Id, fields: &[Bytes]) -> Reply {
    Reply::Array(vec![
        Reply::bulk(id.to_bytes()),
        Reply::Array(fields.iter().cloned().map(Reply::Bulk).collect()),
    ])
}

fn id_reply(id: Id) -> Reply {
    Reply::bulk(id.to_bytes())
}

/// XADD and XTRIM options.
#[derive(Default)]
struct AddArgs {
    trim: Option<Trim>,
    limit: u64,
    nomkstream: bool,
    /// The ID given, and whether its sequence was; None for `*`.
    id: Option<(Id, bool)>,
    /// Where the ID (XADD) or the end (XTRIM) is.
    at: usize,
}

fn parse_add(a: &[Bytes], xadd: bool) -> CmdResult<AddArgs> {
    let mut r = AddArgs::default();
    let (mut approx, mut limit_given) = (false, false);
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i][..];
        // Redis's fast path compares the C string: "*" then a NUL is "*".
        if xadd && opt.split(|&c| c == 0).next() == Some(&b"*"[..]) {
            break;
        } else if (is(opt, "MAXLEN") || is(opt, "MINID")) && more > 0 {
            if r.trim.is_some() {
                return Err(CmdError::msg(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            approx = false;
            let next = &a[i + 1][..];
            if more >= 2 && (next == b"~" || next == b"=") {
                approx = next == b"~";
                i += 1;
            }
            r.trim = Some(if is(opt, "MAXLEN") {
                let n = int_arg(&a[i + 1])?;
                if n < 0 {
                    return Err(CmdError::msg("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen(n as u64)
            } else {
                Trim::MinId(strict_id(&a[i + 1])?)
            });
            i += 1;
        } else if is(opt, "LIMIT") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(CmdError::msg("ERR The LIMIT argument must be >= 0."));
            }
            r.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "NOMKSTREAM") {
            r.nomkstream = true;
        } else if xadd {
            r.id = Some(parse_id(opt, 0, true, true)?);
            break;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    r.at = i;
    // Redis tests the LIMIT's value here (LIMIT 0 passes) and that one was
    // given below.
    if r.limit != 0 && r.trim.is_none() {
        return Err(CmdError::msg(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && r.trim.is_none() {
        return Err(CmdError::msg(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !approx {
            return Err(CmdError::msg(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else {
        r.limit = if approx { 10_000 } else { 0 };
    }
    Ok(r)
}

const TOP_ITEM: &str =
    "ERR The ID specified in XADD is equal or smaller than the target stream top item";

pub fn xadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let args = parse_add(a, true)?;
    let fields = a.get(args.at + 1..).unwrap_or_default();
    if fields.len() < 2 || fields.len() % 2 == 1 {
        return Err(CmdError::WrongArity("xadd".into()));
    }
    if let Some((Id::MIN, true)) = args.id {
        return Err(CmdError::msg(
            "ERR The ID specified in XADD must be greater than 0-0",
        ));
    }
    let fields: Vec<Bytes> = fields.iter().map(own).collect();
    modify::<Stream, _>(
        s,
        &a[1],
        !args.nomkstream,
        |st| {
            if st.last_id == Id::MAX {
                return Err(CmdError::msg(
                    "ERR The stream has exhausted the last possible ID, unable to add more items",
                ));
            }
            let last = st.last_id;
            let id = match args.id {
                Some((id, true)) => id,
                Some((Id { ms, .. }, false)) if ms == last.ms => match last.seq.checked_add(1) {
                    Some(seq) => Id { ms, seq },
                    None => return Err(CmdError::msg(TOP_ITEM)),
                },
                Some((id, false)) => id,
                None => {
                    let ms = now_ms();
                    if ms > last.ms {
                        Id { ms, seq: 0 }
                    } else {
                        last.next().ok_or_else(|| CmdError::msg(TOP_ITEM))?
                    }
                }
            };
            if id <= last {
                return Err(CmdError::msg(TOP_ITEM));
            }
            st.entries.insert(id, fields);
            st.last_id = id;
            st.entries_added += 1;
            if let Some(t) = args.trim {
                st.trim(t, args.limit);
            }
            Ok(id_reply(id))
        },
        Reply::Nil,
    )
}

pub fn xtrim(s: &Store, a: &[Bytes]) -> CmdResult {
    let args = parse_add(a, false)?;
    let Some(t) = args.trim else {
        return Err(CmdError::Syntax);
    };
    modify::<Stream, _>(
        s,
        &a[1],
        false,
        |st| Ok(Reply::Int(st.trim(t, args.limit) as i64)),
        Reply::Int(0),
    )
}

pub fn xlen(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<Stream, _>(s, &a[1], |st| {
        Reply::Int(st.map_or(0, |st| st.len() as i64))
    })
}

pub fn xdel(s: &Store, a: &[Bytes]) -> CmdResult {
    // A missing key answers 0 before the IDs are read, as in Redis.
    if !read::<Stream, _>(s, &a[1], |st| st.is_some())? {
        return Ok(Reply::Int(0));
    }
    let ids = a[2..]
        .iter()
        .map(|x| strict_id(x))
        .collect::<CmdResult<Vec<Id>>>()?;
    modify::<Stream, _>(
        s,
        &a[1],
        false,
        |st| Ok(Reply::Int(st.delete(&ids) as i64)),
        Reply::Int(0),
    )
}

fn range_generic(s: &Store, a: &[Bytes], rev: bool) -> CmdResult {
    let (sa, ea) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
    let start = bound(sa, 0, true)?;
    let end = bound(ea, u64::MAX, false)?;
    let mut count: Option<usize> = None;
    let mut j = 4;
    while j < a.len() {
        if is(&a[j], "COUNT") && j + 1 < a.len() {
            count = Some(int_arg(&a[j + 1])?.max(0) as usize);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if count == Some(0) {
        return Ok(Reply::NilArray);
    }
    let count = count.unwrap_or(usize::MAX);
    read::<Stream, _>(s, &a[1], |st| {
        let Some(st) = st.filter(|_| start <= end) else {
            return Reply::Array(Vec::new());
        };
        let it = st.entries.range(start..=end);
        let out: Vec<Reply> = if rev {
            it.rev()
                .take(count)
                .map(|(id, f)| entry_reply(*id, f))
                .collect()
        } else {
            it.take(count).map(|(id, f)| entry_reply(*id, f)).collect()
        };
        Reply::Array(out)
    })
}

pub fn xrange(s: &Store, a: &[Bytes]) -> CmdResult {
    range_generic(s, a, false)
}

pub fn xrevrange(s: &Store, a: &[Bytes]) -> CmdResult {
    range_generic(s, a, true)
}

/// XREAD and XREADGROUP options.
pub struct ReadArgs {
    pub block: Option<u64>,
    count: usize,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    /// Index of the first key.
    pub streams: usize,
    /// Keys (and IDs after them).
    pub n: usize,
}

fn timeout_ms(a: &[u8]) -> CmdResult<u64> {
    let t = crate::protocol::parse_i64(a)
        .ok_or_else(|| CmdError::msg("ERR timeout is not an integer or out of range"))?;
    if t < 0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    Ok(t as u64)
}

pub fn parse_read(a: &[Bytes], xreadgroup: bool) -> CmdResult<ReadArgs> {
    let mut r = ReadArgs {
        block: None,
        count: 0,
        group: None,
        noack: false,
        streams: 0,
        n: 0,
    };
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        let opt = &a[i];
        if is(opt, "BLOCK") && more > 0 {
            i += 1;
            r.block = Some(timeout_ms(&a[i])?);
        } else if is(opt, "COUNT") && more > 0 {
            i += 1;
            r.count = int_arg(&a[i])?.max(0) as usize;
        } else if is(opt, "STREAMS") && more > 0 {
            r.streams = i + 1;
            if more % 2 != 0 {
                // Redis 7.0 says XREAD and '$' for XREADGROUP too.
                return Err(CmdError::msg(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            r.n = more / 2;
            break;
        } else if is(opt, "GROUP") && more >= 2 {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.group = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 2;
        } else if is(opt, "NOACK") {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if r.streams == 0 {
        return Err(CmdError::Syntax);
    }
    if xreadgroup && r.group.is_none() {
        return Err(CmdError::msg("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(r)
}

/// What to read from one stream.
#[derive(Clone, Copy)]
enum ReadFrom {
    After(Id),
    /// XREADGROUP's `>`: entries never delivered to the group.
    New,
}

fn xread_generic(s: &Store, a: &[Bytes], xreadgroup: bool) -> CmdResult {
    let r = parse_read(a, xreadgroup)?;
    let keys = &a[r.streams..r.streams + r.n];
    let id_args = &a[r.streams + r.n..];
    // Every key and ID is checked before anything is read.
    let mut froms = Vec::with_capacity(r.n);
    for (key, ida) in keys.iter().zip(id_args) {
        let last = read::<Stream, _>(s, key, |st| {
            st.map(|st| {
                (
                    st.last_id,
                    r.group
                        .as_ref()
                        .is_some_and(|(g, _)| st.groups.contains_key(g)),
                )
            })
        })?;
        if let Some((g, _)) = &r.group {
            if !last.is_some_and(|(_, has)| has) {
                return Err(CmdError::msg(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(g)
                )));
            }
        }
        froms.push(if &ida[..] == b"$" {
            if xreadgroup {
                return Err(CmdError::msg(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            ReadFrom::After(last.map_or(Id::MIN, |l| l.0))
        } else if &ida[..] == b">" {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            ReadFrom::New
        } else {
            ReadFrom::After(strict_id(ida)?)
        });
    }
    let count = if r.count == 0 { usize::MAX } else { r.count };
    let mut out = Vec::new();
    for (key, from) in keys.iter().zip(froms) {
        let got = match &r.group {
            None => read::<Stream, _>(s, key, |st| {
                let st = st?;
                let ReadFrom::After(after) = from else {
                    return None;
                };
                let start = after.next()?;
                let items: Vec<Reply> = st
                    .entries
                    .range(start..)
                    .take(count)
                    .map(|(id, f)| entry_reply(*id, f))
                    .collect();
                (!items.is_empty()).then_some(items)
            })?,
            Some((g, c)) => modify::<Stream, _>(
                s,
                key,
                false,
                |st| Ok(group_read(st, g, c, from, count, r.noack)),
                None,
            )?,
        };
        if let Some(items) = got {
            out.push(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Array(items),
            ]));
        }
    }
    Ok(if out.is_empty() {
        Reply::NilArray
    } else {
        Reply::Array(out)
    })
}

/// XREADGROUP on one stream: None when there is nothing new (the client
/// may block); history reads always answer.
fn group_read(
    st: &mut Stream,
    group: &Bytes,
    consumer: &Bytes,
    from: ReadFrom,
    count: usize,
    noack: bool,
) -> Option<Vec<Reply>> {
    let now = now_ms();
    let g = st.groups.get_mut(group)?;
    // A consumer is created when it is served something (or its history).
    let newest = st.entries.last_key_value().map(|(id, _)| *id);
    if matches!(from, ReadFrom::New) && newest.is_none_or(|id| id <= g.last_id) {
        return None;
    }
    let c = g.consumers.entry(consumer.clone()).or_default();
    c.seen_at = now;
    match from {
        ReadFrom::After(after) => {
            // The consumer's own pending entries after `after`.
            let ids: Vec<Id> = c
                .pending
                .range(after.next().unwrap_or(Id::MAX)..)
                .take(count)
                .copied()
                .collect();
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                match st.entries.get(&id) {
                    Some(f) => {
                        items.push(entry_reply(id, f));
                        if let Some(p) = g.pending.get_mut(&id) {
                            p.delivered_at = now;
                            p.deliveries += 1;
                        }
                    }
                    None => items.push(Reply::Array(vec![id_reply(id), Reply::NilArray])),
                }
            }
            Some(items)
        }
        ReadFrom::New => {
            let start = g.last_id.next()?;
            let ids: Vec<Id> = st
                .entries
                .range(start..)
                .take(count)
                .map(|(id, _)| *id)
                .collect();
            if ids.is_empty() {
                return None;
            }
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(f) = st.entries.get(&id) {
                    items.push(entry_reply(id, f));
                }
                st.advance(group, id);
                if noack {
                    continue;
                }
                let Some(g) = st.groups.get_mut(group) else {
                    continue;
                };
                let previous = g.pending.insert(
                    id,
                    Pending {
                        consumer: consumer.clone(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                // An entry delivered again after XGROUP SETID moved back
                // changes hands.
                if let Some(p) = previous {
                    if let Some(old) = g.consumers.get_mut(&p.consumer) {
                        old.pending.remove(&id);
                    }
                }
                if let Some(c) = g.consumers.get_mut(consumer) {
                    c.pending.insert(id);
                }
            }
            Some(items)
        }
    }
}

/// XREAD's reply as Redis gives it to a RESP3 client: a map from each
/// key to its entries, where RESP2 has an array of pairs.
pub fn for_protocol(c: &crate::backend::Command, r: Reply) -> Reply {
    if !c.resp3 || !matches!(c.spec.name, "xread" | "xreadgroup") {
        return r;
    }
    match r {
        Reply::Array(streams) => Reply::Map(
            streams
                .into_iter()
                .filter_map(|s| match s {
                    Reply::Array(kv) => {
                        let mut kv = kv.into_iter();
                        kv.next().zip(kv.next())
                    }
                    _ => None,
                })
                .collect(),
        ),
        other => other,
    }
}

pub fn xread(s: &Store, a: &[Bytes]) -> CmdResult {
    xread_generic(s, a, false)
}

pub fn xreadgroup(s: &Store, a: &[Bytes]) -> CmdResult {
    xread_generic(s, a, true)
}

/// The IDs `$` stands for in a blocking XREAD, fixed when it blocks: new
/// entries are those after the stream's last ID at that moment.
pub fn resolve_dollars(s: &Store, a: &[Bytes]) -> Vec<Bytes> {
    let mut args = a.to_vec();
    let Ok(r) = parse_read(a, false) else {
        return args;
    };
    for i in 0..r.n {
        let at = r.streams + r.n + i;
        if &a[at][..] == b"$" {
            let last = read::<Stream, _>(s, &a[r.streams + i], |st| st.map(|st| st.last_id))
                .ok()
                .flatten()
                .unwrap_or(Id::MIN);
            args[at] = last.to_bytes();
        }
    }
    args
}

fn no_group(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::msg(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

pub fn xack(s: &Store, a: &[Bytes]) -> CmdResult {
    // The type, then the key and group, are checked before the IDs, as
    // Redis does: nothing to acknowledge answers 0 whatever the IDs.
    if !read::<Stream, _>(s, &a[1], |st| {
        st.is_some_and(|st| st.groups.contains_key(&a[2]))
    })? {
        return Ok(Reply::Int(0));
    }
    let ids = a[3..]
        .iter()
        .map(|x| strict_id(x))
        .collect::<CmdResult<Vec<Id>>>()?;
    modify::<Stream, _>(
        s,
        &a[1],
        false,
        |st| {
            let Some(g) = st.groups.get_mut(&a[2]) else {
                return Ok(Reply::Int(0));
            };
            let mut acked = 0;
            for id in ids {
                if let Some(p) = g.pending.remove(&id) {
                    if let Some(c) = g.consumers.get_mut(&p.consumer) {
                        c.pending.remove(&id);
                    }
                    acked += 1;
                }
            }
            Ok(Reply::Int(acked))
        },
        Reply::Int(0),
    )
}

pub fn xpending(s: &Store, a: &[Bytes]) -> CmdResult {
    let summary = a.len() == 3;
    if !summary && (a.len() < 6 || a.len() > 9) {
        return Err(CmdError::Syntax);
    }
    let (mut min_idle, mut start, mut end, mut count, mut consumer) =
        (0i64, Id::MIN, Id::MAX, 0usize, None);
    if !summary {
        let mut at = 3;
        if is(&a[3], "IDLE") {
            min_idle = int_arg(&a[4])?;
            if a.len() < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        count = int_arg(&a[at + 2])?.max(0) as usize;
        start = bound(&a[at], 0, true)?;
        end = bound(&a[at + 1], u64::MAX, false)?;
        consumer = a.get(at + 3).cloned();
    }
    let now = now_ms();
    read::<Stream, _>(s, &a[1], |st| {
        let g = st
            .and_then(|st| st.groups.get(&a[2]))
            .ok_or_else(|| no_group(&a[1], &a[2]))?;
        if summary {
            let (Some((first, _)), Some((last, _))) =
                (g.pending.first_key_value(), g.pending.last_key_value())
            else {
                return Ok(Reply::Array(vec![
                    Reply::Int(0),
                    Reply::Nil,
                    Reply::Nil,
                    Reply::NilArray,
                ]));
            };
            let owners = g
                .consumers
                .iter()
                .filter(|(_, c)| !c.pending.is_empty())
                .map(|(name, c)| {
                    Reply::Array(vec![
                        Reply::Bulk(name.clone()),
                        Reply::bulk(Bytes::from(c.pending.len().to_string())),
                    ])
                })
                .collect();
            return Ok(Reply::Array(vec![
                Reply::Int(g.pending.len() as i64),
                id_reply(*first),
                id_reply(*last),
                Reply::Array(owners),
            ]));
        }
        if start > end {
            return Ok(Reply::Array(Vec::new()));
        }
        let ids: Vec<Id> = match &consumer {
            None => g.pending.range(start..=end).map(|(id, _)| *id).collect(),
            Some(c) => match g.consumers.get(c) {
                Some(c) => c.pending.range(start..=end).copied().collect(),
                None => Vec::new(),
            },
        };
        let items = ids
            .into_iter()
            .filter_map(|id| g.pending.get(&id).map(|p| (id, p)))
            .filter(|(_, p)| now.saturating_sub(p.delivered_at) as i64 >= min_idle)
            .take(count)
            .map(|(id, p)| {
                Reply::Array(vec![
                    id_reply(id),
                    Reply::Bulk(p.consumer.clone()),
                    Reply::Int(now.saturating_sub(p.delivered_at) as i64),
                    Reply::Int(p.deliveries as i64),
                ])
            })
            .collect();
        Ok(Reply::Array(items))
    })?
}

/// Gives the pending entry `id` to `consumer` (creating the consumer).
fn transfer(g: &mut Group, id: Id, consumer: &Bytes) {
    let Some(p) = g.pending.get_mut(&id) else {
        return;
    };
    if p.consumer != *consumer {
        if let Some(old) = g.consumers.get_mut(&p.consumer) {
            old.pending.remove(&id);
        }
        p.consumer = consumer.clone();
    }
    g.consumers
        .entry(consumer.clone())
        .or_default()
        .pending
        .insert(id);
}

/// Drops the pending entry `id` (its entry was deleted).
fn forget(g: &mut Group, id: Id) {
    if let Some(p) = g.pending.remove(&id) {
        if let Some(c) = g.consumers.get_mut(&p.consumer) {
            c.pending.remove(&id);
        }
    }
}

fn claimed(st: &Stream, id: Id, justid: bool) -> Reply {
    match (justid, st.entries.get(&id)) {
        (false, Some(f)) => entry_reply(id, f),
        _ => id_reply(id),
    }
}

/// XCLAIM's and XAUTOCLAIM's first check, that the group exists, and
/// their min-idle-time.
fn claim_start(s: &Store, a: &[Bytes], cmd: &str) -> CmdResult<u64> {
    let (key, group) = (&a[1], &a[2]);
    let exists = read::<Stream, _>(s, key, |st| {
        st.is_some_and(|st| st.groups.contains_key(group))
    })?;
    if !exists {
        return Err(no_group(key, group));
    }
    let min_idle = crate::protocol::parse_i64(&a[4])
        .ok_or_else(|| CmdError::msg(format!("ERR Invalid min-idle-time argument for {cmd}")))?;
    Ok(min_idle.max(0) as u64)
}

pub fn xclaim(s: &Store, a: &[Bytes]) -> CmdResult {
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    let min_idle = claim_start(s, a, "XCLAIM")?;
    let mut j = 5;
    let mut ids = Vec::new();
    while j < a.len() {
        match strict_id(&a[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = now_ms();
    let (mut delivery, mut retry, mut force, mut justid, mut lastid) =
        (None::<i64>, None::<i64>, false, false, Id::MIN);
    while j < a.len() {
        let more = a.len() - 1 - j;
        let opt = &a[j];
        let num = |b: &[u8], what: &str| {
            crate::protocol::parse_i64(b).ok_or_else(|| {
                CmdError::msg(format!("ERR Invalid {what} option argument for XCLAIM"))
            })
        };
        if is(opt, "FORCE") {
            force = true;
        } else if is(opt, "JUSTID") {
            justid = true;
        } else if is(opt, "IDLE") && more > 0 {
            j += 1;
            delivery = Some(now as i64 - num(&a[j], "IDLE")?);
        } else if is(opt, "TIME") && more > 0 {
            j += 1;
            delivery = Some(num(&a[j], "TIME")?);
        } else if is(opt, "RETRYCOUNT") && more > 0 {
            j += 1;
            retry = Some(num(&a[j], "RETRYCOUNT")?);
        } else if is(opt, "LASTID") && more > 0 {
            j += 1;
            lastid = strict_id(&a[j])?;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    let delivery = match delivery {
        Some(t) if t >= 0 && t <= now as i64 => t as u64,
        _ => now,
    };
    modify::<Stream, _>(
        s,
        key,
        false,
        |st| {
            let Some(g) = st.groups.get_mut(group) else {
                return Err(no_group(key, group));
            };
            if lastid > g.last_id {
                g.last_id = lastid;
            }
            g.consumers.entry(consumer.clone()).or_default().seen_at = now;
            let mut out = Vec::new();
            for id in ids {
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                if !st.entries.contains_key(&id) {
                    forget(g, id);
                    continue;
                }
                let fresh = !g.pending.contains_key(&id);
                if fresh {
                    if !force {
                        continue;
                    }
                    // As Redis creates it: delivered once, to no one yet.
                    g.pending.insert(
                        id,
                        Pending {
                            consumer: Bytes::new(),
                            delivered_at: now,
                            deliveries: 1,
                        },
                    );
                }
                let Some(p) = g.pending.get_mut(&id) else {
                    continue;
                };
                if !fresh && min_idle > 0 && now.saturating_sub(p.delivered_at) < min_idle {
                    continue;
                }
                p.delivered_at = delivery;
                match retry {
                    Some(n) if n >= 0 => p.deliveries = n as u64,
                    _ if !justid => p.deliveries += 1,
                    _ => {}
                }
                transfer(g, id, consumer);
                out.push(claimed(st, id, justid));
            }
            Ok(Reply::Array(out))
        },
        Reply::Array(Vec::new()),
    )
}

pub fn xautoclaim(s: &Store, a: &[Bytes]) -> CmdResult {
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    let min_idle = claim_start(s, a, "XAUTOCLAIM")?;
    let start = parse_id(&a[5], 0, false, false)?.0;
    let (mut count, mut justid) = (100usize, false);
    let mut j = 6;
    while j < a.len() {
        if is(&a[j], "COUNT") && j + 1 < a.len() {
            count = crate::protocol::parse_i64(&a[j + 1])
                .filter(|n| (1..=i64::MAX / 10).contains(n))
                .ok_or_else(|| CmdError::msg("ERR COUNT must be > 0"))?
                as usize;
            j += 2;
        } else if is(&a[j], "JUSTID") {
            justid = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let now = now_ms();
    modify::<Stream, _>(
        s,
        key,
        false,
        |st| {
            let ids: Vec<Id> = {
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                g.consumers.entry(consumer.clone()).or_default().seen_at = now;
                g.pending.range(start..).map(|(id, _)| *id).collect()
            };
            let (mut claimed_ids, mut deleted, mut out) = (0, Vec::new(), Vec::new());
            let mut attempts = count.saturating_mul(10);
            let mut next = Id::MIN;
            let mut it = ids.into_iter().peekable();
            while attempts > 0 && claimed_ids < count {
                let Some(id) = it.next() else {
                    break;
                };
                attempts -= 1;
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                if !st.entries.contains_key(&id) {
                    forget(g, id);
                    deleted.push(id_reply(id));
                    continue;
                }
                let Some(p) = g.pending.get_mut(&id) else {
                    continue;
                };
                if min_idle > 0 && now.saturating_sub(p.delivered_at) < min_idle {
                    continue;
                }
                p.delivered_at = now;
                if !justid {
                    p.deliveries += 1;
                }
                transfer(g, id, consumer);
                out.push(claimed(st, id, justid));
                claimed_ids += 1;
            }
            if let Some(id) = it.peek() {
                next = *id;
            }
            Ok(Reply::Array(vec![
                id_reply(next),
                Reply::Array(out),
                Reply::Array(deleted),
            ]))
        },
        Reply::Nil,
    )
}

fn sub_syntax(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::msg(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {cmd} HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn entries_read_arg(a: &[u8]) -> CmdResult<Option<u64>> {
    let n = int_arg(a)?;
    if n < -1 {
        return Err(CmdError::msg(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok((n >= 0).then_some(n as u64))
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

fn help(lines: &[&str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Status(Bytes::copy_from_slice(l.as_bytes())))
            .collect(),
    )
}

pub fn xgroup(s: &Store, a: &[Bytes]) -> CmdResult {
    let sub = crate::util::subcommand(
        a,
        "XGROUP",
        &[
            ("CREATE", 5, false),
            ("SETID", 5, false),
            ("DESTROY", 4, true),
            ("CREATECONSUMER", 5, true),
            ("DELCONSUMER", 5, true),
            ("HELP", 2, true),
        ],
    )?;
    if sub == "HELP" {
        return Ok(help(XGROUP_HELP));
    }
    let (key, group) = (&a[2], &a[3]);
    let mut mkstream = false;
    let mut entries_read = None;
    if sub == "CREATE" {
        let mut i = 5;
        while i < a.len() {
            if is(&a[i], "MKSTREAM") {
                mkstream = true;
                i += 1;
            } else if is(&a[i], "ENTRIESREAD") && i + 1 < a.len() {
                entries_read = entries_read_arg(&a[i + 1])?;
                i += 2;
            } else {
                return Err(sub_syntax("XGROUP", &a[1]));
            }
        }
    }
    if sub == "SETID" {
        // Its form is checked before the key, as in Redis.
        if a.len() != 5 && a.len() != 7 || a.len() == 7 && !is(&a[5], "ENTRIESREAD") {
            return Err(sub_syntax("XGROUP", &a[1]));
        }
        if a.len() == 7 {
            entries_read = entries_read_arg(&a[6])?;
        }
    }
    let exists = read::<Stream, _>(s, key, |st| st.map(|st| st.groups.contains_key(group)))?;
    if !mkstream {
        let Some(has_group) = exists else {
            return Err(CmdError::msg(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        };
        if !has_group && matches!(sub.as_str(), "SETID" | "CREATECONSUMER" | "DELCONSUMER") {
            return Err(CmdError::msg(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(group),
                String::from_utf8_lossy(key)
            )));
        }
    }
    match sub.as_str() {
        "CREATE" => {
            if a.len() > 8 {
                return Err(sub_syntax("XGROUP", &a[1]));
            }
            let id = if &a[4][..] == b"$" {
                None
            } else {
                Some(strict_id(&a[4])?)
            };
            modify::<Stream, _>(
                s,
                key,
                true,
                |st| {
                    if st.groups.contains_key(group) {
                        return Err(CmdError::msg(
                            "BUSYGROUP Consumer Group name already exists",
                        ));
                    }
                    let g = Group {
                        last_id: id.unwrap_or(st.last_id),
                        entries_read,
                        ..Group::default()
                    };
                    st.groups.insert(own(group), g);
                    Ok(Reply::ok())
                },
                Reply::ok(),
            )
        }
        "SETID" => {
            let id = if &a[4][..] == b"$" {
                None
            } else {
                Some(parse_id(&a[4], 0, false, false)?.0)
            };
            modify::<Stream, _>(
                s,
                key,
                false,
                |st| {
                    let last = st.last_id;
                    if let Some(g) = st.groups.get_mut(group) {
                        g.last_id = id.unwrap_or(last);
                        g.entries_read = entries_read;
                    }
                    Ok(Reply::ok())
                },
                Reply::ok(),
            )
        }
        "DESTROY" => modify::<Stream, _>(
            s,
            key,
            false,
            |st| Ok(Reply::Int(st.groups.remove(group).is_some() as i64)),
            Reply::Int(0),
        ),
        "CREATECONSUMER" => modify::<Stream, _>(
            s,
            key,
            false,
            |st| {
                let Some(g) = st.groups.get_mut(group) else {
                    return Ok(Reply::Int(0));
                };
                if g.consumers.contains_key(&a[4]) {
                    return Ok(Reply::Int(0));
                }
                g.consumers.insert(
                    own(&a[4]),
                    Consumer {
                        seen_at: now_ms(),
                        ..Consumer::default()
                    },
                );
                Ok(Reply::Int(1))
            },
            Reply::Int(0),
        ),
        _ => modify::<Stream, _>(
            s,
            key,
            false,
            |st| {
                let Some(g) = st.groups.get_mut(group) else {
                    return Ok(Reply::Int(0));
                };
                let Some(c) = g.consumers.remove(&a[4]) else {
                    return Ok(Reply::Int(0));
                };
                for id in &c.pending {
                    g.pending.remove(id);
                }
                Ok(Reply::Int(c.pending.len() as i64))
            },
            Reply::Int(0),
        ),
    }
}

fn field(name: &'static str, v: Reply) -> (Reply, Reply) {
    (Reply::bulk(Bytes::from_static(name.as_bytes())), v)
}

fn name(b: &[u8]) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(b))
}

fn opt_int(n: Option<u64>) -> Reply {
    n.map_or(Reply::Nil, |n| Reply::Int(n as i64))
}

/// XINFO STREAM FULL: the stream's entries, and each group's pending
/// entries and consumers, `count` of each at most.
fn stream_full(st: &Stream, count: usize) -> Reply {
    let groups = st
        .groups
        .iter()
        .map(|(n, g)| {
            let pending = g
                .pending
                .iter()
                .take(count)
                .map(|(id, p)| {
                    Reply::Array(vec![
                        id_reply(*id),
                        Reply::Bulk(p.consumer.clone()),
                        Reply::Int(p.delivered_at as i64),
                        Reply::Int(p.deliveries as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cn, c)| {
                    let own = c
                        .pending
                        .iter()
                        .take(count)
                        .filter_map(|id| g.pending.get(id).map(|p| (id, p)))
                        .map(|(id, p)| {
                            Reply::Array(vec![
                                id_reply(*id),
                                Reply::Int(p.delivered_at as i64),
                                Reply::Int(p.deliveries as i64),
                            ])
                        })
                        .collect();
                    Reply::Map(vec![
                        field("name", name(cn)),
                        field("seen-time", Reply::Int(c.seen_at as i64)),
                        field("pel-count", Reply::Int(c.pending.len() as i64)),
                        field("pending", Reply::Array(own)),
                    ])
                })
                .collect();
            Reply::Map(vec![
                field("name", name(n)),
                field("last-delivered-id", id_reply(g.last_id)),
                field("entries-read", opt_int(g.entries_read)),
                field("lag", opt_int(st.lag(g))),
                field("pel-count", Reply::Int(g.pending.len() as i64)),
                field("pending", Reply::Array(pending)),
                field("consumers", Reply::Array(consumers)),
            ])
        })
        .collect();
    let mut info = stream_head(st);
    info.extend([
        field(
            "entries",
            Reply::Array(
                st.entries
                    .iter()
                    .take(count)
                    .map(|(id, f)| entry_reply(*id, f))
                    .collect(),
            ),
        ),
        field("groups", Reply::Array(groups)),
    ]);
    Reply::Map(info)
}

/// The fields XINFO STREAM starts with, FULL or not.
fn stream_head(st: &Stream) -> Vec<(Reply, Reply)> {
    // Redis keeps entries in radix-tree nodes of up to 100.
    let nodes = st.len().div_ceil(100) as i64;
    vec![
        field("length", Reply::Int(st.len() as i64)),
        field("radix-tree-keys", Reply::Int(nodes)),
        field("radix-tree-nodes", Reply::Int(nodes + 1)),
        field("last-generated-id", id_reply(st.last_id)),
        field("max-deleted-entry-id", id_reply(st.max_deleted)),
        field("entries-added", Reply::Int(st.entries_added as i64)),
        field("recorded-first-entry-id", id_reply(st.first_id())),
    ]
}

pub fn xinfo(s: &Store, a: &[Bytes]) -> CmdResult {
    let sub = crate::util::subcommand(
        a,
        "XINFO",
        &[
            ("STREAM", 3, false),
            ("GROUPS", 3, true),
            ("CONSUMERS", 4, true),
            ("HELP", 2, true),
        ],
    )?;
    if sub == "HELP" {
        return Ok(help(XINFO_HELP));
    }
    let now = now_ms();
    read::<Stream, _>(s, &a[2], |st| {
        let st = st.ok_or_else(|| CmdError::msg("ERR no such key"))?;
        match sub.as_str() {
            "CONSUMERS" => {
                let g = st.groups.get(&a[3]).ok_or_else(|| {
                    CmdError::msg(format!(
                        "NOGROUP No such consumer group '{}' for key name '{}'",
                        String::from_utf8_lossy(&a[3]),
                        String::from_utf8_lossy(&a[2])
                    ))
                })?;
                Ok(Reply::Array(
                    g.consumers
                        .iter()
                        .map(|(n, c)| {
                            Reply::Map(vec![
                                field("name", name(n)),
                                field("pending", Reply::Int(c.pending.len() as i64)),
                                field("idle", Reply::Int(now.saturating_sub(c.seen_at) as i64)),
                            ])
                        })
                        .collect(),
                ))
            }
            "GROUPS" => Ok(Reply::Array(
                st.groups
                    .iter()
                    .map(|(n, g)| {
                        Reply::Map(vec![
                            field("name", name(n)),
                            field("consumers", Reply::Int(g.consumers.len() as i64)),
                            field("pending", Reply::Int(g.pending.len() as i64)),
                            field("last-delivered-id", id_reply(g.last_id)),
                            field("entries-read", opt_int(g.entries_read)),
                            field("lag", opt_int(st.lag(g))),
                        ])
                    })
                    .collect(),
            )),
            _ => {
                // [FULL [COUNT n]]: n entries and pending entries at most
                // (10 by default, 0 for all).
                let opts = &a[3..];
                let full = match opts {
                    [] => None,
                    [f] if is(f, "FULL") => Some(10),
                    [f, c, n] if is(f, "FULL") && is(c, "COUNT") => Some(int_arg(n)?.max(0)),
                    _ => return Err(sub_syntax("XINFO", &a[1])),
                };
                if let Some(count) = full {
                    let count = if count == 0 {
                        usize::MAX
                    } else {
                        count as usize
                    };
                    return Ok(stream_full(st, count));
                }
                let edge = |e: Option<(&Id, &Vec<Bytes>)>| {
                    e.map_or(Reply::Nil, |(id, f)| entry_reply(*id, f))
                };
                let mut info = stream_head(st);
                info.extend([
                    field("groups", Reply::Int(st.groups.len() as i64)),
                    field("first-entry", edge(st.entries.first_key_value())),
                    field("last-entry", edge(st.entries.last_key_value())),
                ]);
                Ok(Reply::Map(info))
            }
        }
    })?
}
