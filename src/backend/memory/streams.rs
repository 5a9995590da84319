//! Stream commands over entries, with Redis 7.0's replies and error texts:
//! XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD and XREADGROUP (whose
//! reads deliver to a group); IDs as Redis parses them. The groups' own
//! commands are in `groups`, XINFO in `xinfo`.
//!
//! One difference: Redis trims with `~` only whole nodes of its radix
//! tree, so it may keep more entries than asked; keyway trims to the exact
//! threshold (still at most LIMIT entries, 10000 by default with `~`), and
//! reports XINFO's radix-tree figures as if nodes held 100 entries.

use bytes::Bytes;

use super::own;
use super::store::Store;
use super::stream::{Id, Pending, Stream, Trim};
use super::typed::{Kind, modify, read};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is, now_ms};

pub(super) const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

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

/// A part of a stream ID as Redis's `string2ull` reads it: a plain
/// integer (negative refused), or else what C's `strtoull` takes whole
/// (leading white space, a sign; `-n` wraps), out of range refused.
pub(super) fn digits(b: &[u8]) -> Option<u64> {
    if let Some(n) = crate::wire::protocol::parse_i64(b) {
        return u64::try_from(n).ok();
    }
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))?;
    let mut rest = b.get(start..)?;
    let negative = rest.first() == Some(&b'-');
    if matches!(rest.first(), Some(b'+' | b'-')) {
        rest = rest.get(1..)?;
    }
    if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(rest).ok()?.parse().ok()?;
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Parses `ms[-seq]`: a missing sequence is `missing_seq`; `-` and `+`
/// are the smallest and largest IDs unless `strict`. With `auto_seq`,
/// `ms-*` is accepted and gives `(ms-0, false)`; the flag says whether the
/// sequence was given.
pub(super) fn parse_id(
    a: &[u8],
    missing_seq: u64,
    strict: bool,
    auto_seq: bool,
) -> CmdResult<(Id, bool)> {
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

pub(super) fn strict_id(a: &[u8]) -> CmdResult<Id> {
    Ok(parse_id(a, 0, true, false)?.0)
}

/// A range bound: `(id` is exclusive (and then cannot be `-` or `+`).
pub(super) fn bound(a: &[u8], missing_seq: u64, start: bool) -> CmdResult<Id> {
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

pub(super) fn entry_reply(id: Id, fields: &[Bytes]) -> Reply {
    Reply::Array(vec![
        Reply::bulk(id.to_bytes()),
        Reply::Array(fields.iter().cloned().map(Reply::Bulk).collect()),
    ])
}

pub(super) fn id_reply(id: Id) -> Reply {
    Reply::bulk(id.to_bytes())
}

/// XADD and XTRIM options.
#[derive(Default)]
struct AddArgs {
    trim: Option<Trim>,
    limit: u64,
    /// `~`: whole nodes only.
    approx: bool,
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
    } else if approx {
        // Redis's default work bound: a hundred nodes.
        let node = u64::try_from(super::tunables::get("stream-node-max-entries")).unwrap_or(0);
        r.limit = node.saturating_mul(100);
    }
    r.approx = approx;
    Ok(r)
}

pub(super) const TOP_ITEM: &str =
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
            st.append(id, fields);
            st.last_id = id;
            st.entries_added += 1;
            if let Some(t) = args.trim {
                st.trim(t, args.limit, args.approx);
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
        |st| Ok(Reply::Int(st.trim(t, args.limit, args.approx) as i64)),
        Reply::Int(0),
    )
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id], with Redis's
/// checks in Redis's order: the IDs and options, then the key.
pub fn xsetid(s: &Store, a: &[Bytes]) -> CmdResult {
    let id = strict_id(&a[2])?;
    let (mut added, mut max_deleted) = (None, Id::MIN);
    let mut i = 3;
    while let Some(opt) = a.get(i) {
        let value = a.get(i + 1);
        match value {
            Some(v) if opt.eq_ignore_ascii_case(b"ENTRIESADDED") => {
                let n = crate::wire::protocol::parse_i64(v).ok_or(CmdError::NotInteger)?;
                if n < 0 {
                    return Err(CmdError::msg("ERR entries_added must be positive"));
                }
                added = Some(n as u64);
            }
            Some(v) if opt.eq_ignore_ascii_case(b"MAXDELETEDID") => {
                max_deleted = strict_id(v)?;
                if id < max_deleted {
                    return Err(CmdError::msg(
                        "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                    ));
                }
            }
            _ => return Err(CmdError::Syntax),
        }
        i += 2;
    }
    if !read::<Stream, _>(s, &a[1], |st| st.is_some())? {
        return Err(CmdError::msg("ERR no such key"));
    }
    modify::<Stream, _>(
        s,
        &a[1],
        false,
        |st| {
            if id < st.max_deleted {
                return Err(CmdError::msg(
                    "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id",
                ));
            }
            if let Some((top, _)) = st.entries.last_key_value() {
                if id < *top {
                    return Err(CmdError::msg(
                        "ERR The ID specified in XSETID is smaller than the target stream top item",
                    ));
                }
                if added.is_some_and(|n| (st.len() as u64) > n) {
                    return Err(CmdError::msg(
                        "ERR The entries_added specified in XSETID is smaller than the target stream length",
                    ));
                }
            }
            st.last_id = id;
            if let Some(n) = added {
                st.entries_added = n;
            }
            if max_deleted != Id::MIN {
                st.max_deleted = max_deleted;
            }
            Ok(Reply::ok())
        },
        Reply::ok(),
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

pub(super) fn range_generic(s: &Store, a: &[Bytes], rev: bool) -> CmdResult {
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

pub(super) fn timeout_ms(a: &[u8]) -> CmdResult<u64> {
    let t = crate::wire::protocol::parse_i64(a)
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
pub(super) enum ReadFrom {
    After(Id),
    /// XREADGROUP's `>`: entries never delivered to the group.
    New,
}

pub(super) fn xread_generic(s: &Store, a: &[Bytes], xreadgroup: bool) -> CmdResult {
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
pub(super) fn group_read(
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
            if let Some(c) = g.consumers.get_mut(consumer) {
                c.active_at = Some(now);
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
