//! DUMP and RESTORE on the memory backend, in Redis's own payload format
//! (an RDB value, the RDB version and a CRC64), so that a key moves
//! between keyway and redis-server in either direction.
//!
//! keyway writes RDB version 10 (what Redis 7.0 reads): strings (integers
//! encoded as Redis encodes them), lists as quicklists of listpacks, sets,
//! sorted sets and hashes in their plain encodings, streams as listpack
//! nodes with their consumer groups. It reads every encoding Redis 2.6 to
//! 7.2 writes, ziplists and intsets included. A payload is checked before
//! anything is allocated from it, and unpacks to at most `MAX_UNPACKED`.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use indexmap::IndexSet;

use super::packed::{self, Item, ListpackWriter};
use super::rdb::{self, Reader, put_len, put_string};
use super::store::{Entry, HashValue, Store, Value, ValueRef, now_ms};
use super::stream::{Consumer, Group, Id, Node, Pending, Stream};
use super::zset::ZSet;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;

const STRING: u8 = 0;
const LIST: u8 = 1;
const SET: u8 = 2;
const ZSET: u8 = 3;
const HASH: u8 = 4;
const ZSET_2: u8 = 5;
const LIST_ZIPLIST: u8 = 10;
const SET_INTSET: u8 = 11;
const ZSET_ZIPLIST: u8 = 12;
const HASH_ZIPLIST: u8 = 13;
const LIST_QUICKLIST: u8 = 14;
const STREAM_LISTPACKS: u8 = 15;
const HASH_LISTPACK: u8 = 16;
const ZSET_LISTPACK: u8 = 17;
const LIST_QUICKLIST_2: u8 = 18;
const STREAM_LISTPACKS_2: u8 = 19;
const SET_LISTPACK: u8 = 20;
const STREAM_LISTPACKS_3: u8 = 21;

/// A stream entry's flags in its listpack.
const ENTRY_DELETED: i64 = 1;
const ENTRY_SAMEFIELDS: i64 = 2;

/// A list's listpack nodes, as Redis's `list-max-listpack-size -2` fills
/// them: at most 8 KB, and 128 entries here.
const NODE_BYTES: usize = 8 << 10;
const NODE_ENTRIES: usize = 128;

/// What one payload may unpack to, its compressed strings included.
const MAX_UNPACKED: usize = 512 << 20;

/// The payload DUMP gives for a value.
pub fn dump(value: ValueRef<'_>) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[kind_of(value)]);
    write_body(&mut out, value);
    rdb::seal(out)
}

/// The RDB type keyway writes a value as.
pub fn kind_of(value: ValueRef<'_>) -> u8 {
    match value {
        ValueRef::Str(_) => STRING,
        ValueRef::List(_) => LIST_QUICKLIST_2,
        ValueRef::Set(_) => SET,
        ValueRef::ZSet(_) => ZSET_2,
        ValueRef::Hash(_) => HASH,
        ValueRef::Stream(_) => STREAM_LISTPACKS_2,
    }
}

/// A value's encoding after its type byte (`kind_of`).
pub fn write_body(out: &mut BytesMut, value: ValueRef<'_>) {
    let out = &mut *out;
    match value {
        ValueRef::Str(s) => put_string(out, s),
        ValueRef::List(l) => {
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let (mut w, mut n, mut size) = (ListpackWriter::default(), 0, 0);
            for e in l {
                if n > 0 && (n >= NODE_ENTRIES || size + e.len() > NODE_BYTES) {
                    nodes.push(std::mem::take(&mut w).finish());
                    (n, size) = (0, 0);
                }
                w.str(e);
                n += 1;
                size += e.len() + 2;
            }
            if n > 0 {
                nodes.push(w.finish());
            }
            put_len(out, nodes.len());
            for lp in nodes {
                // A packed node (a listpack), not a plain one.
                put_len(out, 2);
                put_len(out, lp.len());
                out.extend_from_slice(&lp);
            }
        }
        ValueRef::Set(set) => {
            put_len(out, set.len());
            for m in set {
                put_string(out, m);
            }
        }
        ValueRef::ZSet(z) => {
            put_len(out, z.len());
            // In rank order: the same set always gives the same payload.
            for (m, score) in z.range(0, z.len()) {
                put_string(out, &m);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        ValueRef::Hash(h) => {
            put_len(out, h.len());
            for (f, v) in h {
                put_string(out, f);
                put_string(out, v);
            }
        }
        ValueRef::Stream(st) => dump_stream(out, st),
    }
}

fn raw_id(out: &mut BytesMut, id: Id) {
    out.extend_from_slice(&id.ms.to_be_bytes());
    out.extend_from_slice(&id.seq.to_be_bytes());
}

fn put_u64(out: &mut BytesMut, n: u64) {
    put_len(out, usize::try_from(n).unwrap_or(usize::MAX));
}

/// A stream entry: its ID, and its fields and values alternating.
type StreamEntry<'a> = (&'a Id, &'a Vec<Bytes>);

fn dump_stream(out: &mut BytesMut, st: &Stream) {
    // Entries grouped by the node Redis would keep them in.
    let mut nodes: Vec<(Id, Vec<StreamEntry<'_>>)> = Vec::new();
    for (id, fields) in &st.entries {
        let at = st.nodes.partition_point(|n| n.first <= *id);
        let first = at
            .checked_sub(1)
            .and_then(|i| st.nodes.get(i))
            .map_or(*id, |n| n.first);
        match nodes.last_mut() {
            Some((f, entries)) if *f == first => entries.push((id, fields)),
            _ => nodes.push((first, vec![(id, fields)])),
        }
    }
    put_len(out, nodes.len());
    for (master, entries) in &nodes {
        let mut key = BytesMut::new();
        raw_id(&mut key, *master);
        put_len(out, 16);
        out.extend_from_slice(&key);
        let lp = node_listpack(*master, entries);
        put_len(out, lp.len());
        out.extend_from_slice(&lp);
    }
    put_u64(out, st.len() as u64);
    put_u64(out, st.last_id.ms);
    put_u64(out, st.last_id.seq);
    let first = st.first_id();
    put_u64(out, first.ms);
    put_u64(out, first.seq);
    put_u64(out, st.max_deleted.ms);
    put_u64(out, st.max_deleted.seq);
    put_u64(out, st.entries_added);
    put_len(out, st.groups.len());
    for (name, g) in &st.groups {
        put_string(out, name);
        put_u64(out, g.last_id.ms);
        put_u64(out, g.last_id.seq);
        // Unknown is Redis's -1, written as its unsigned 64 bits.
        put_u64(out, g.entries_read.unwrap_or(u64::MAX));
        put_len(out, g.pending.len());
        for (id, p) in &g.pending {
            raw_id(out, *id);
            out.extend_from_slice(&p.delivered_at.to_le_bytes());
            put_u64(out, p.deliveries);
        }
        put_len(out, g.consumers.len());
        for (cname, c) in &g.consumers {
            put_string(out, cname);
            out.extend_from_slice(&c.seen_at.to_le_bytes());
            put_len(out, c.pending.len());
            for id in &c.pending {
                raw_id(out, *id);
            }
        }
    }
}

/// One node's listpack: the master entry (count, deleted, the first
/// entry's fields), then each entry as a delta from the master ID, its
/// fields left out when they are the master's.
fn node_listpack(master: Id, entries: &[StreamEntry<'_>]) -> Vec<u8> {
    let mut w = ListpackWriter::default();
    let master_fields: Vec<&Bytes> = entries
        .first()
        .map(|(_, f)| f.iter().step_by(2).collect())
        .unwrap_or_default();
    w.int(entries.len() as i64);
    w.int(0);
    w.int(master_fields.len() as i64);
    for f in &master_fields {
        w.str(f);
    }
    w.int(0);
    for (id, fields) in entries {
        let names: Vec<&Bytes> = fields.iter().step_by(2).collect();
        let same = names == master_fields;
        w.int(if same { ENTRY_SAMEFIELDS } else { 0 });
        w.int(id.ms.wrapping_sub(master.ms) as i64);
        w.int(id.seq.wrapping_sub(master.seq) as i64);
        let n = names.len() as i64;
        if same {
            for v in fields.iter().skip(1).step_by(2) {
                w.str(v);
            }
            w.int(n + 3);
        } else {
            w.int(n);
            for x in fields.iter() {
                w.str(x);
            }
            w.int(2 * n + 4);
        }
    }
    w.finish()
}

/// Why a payload was refused, in Redis's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Checksum,
    BadData,
}

impl From<Refused> for CmdError {
    fn from(r: Refused) -> CmdError {
        CmdError::msg(match r {
            Refused::Checksum => "ERR DUMP payload version or checksum are wrong",
            Refused::BadData => "ERR Bad data format",
        })
    }
}

/// Counts what a payload unpacks to, against `MAX_UNPACKED`.
pub struct Loader<'a> {
    pub r: Reader<'a>,
    unpacked: usize,
}

impl<'a> Loader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Loader<'a> {
        Loader {
            r: Reader(bytes),
            unpacked: 0,
        }
    }

    /// Starts counting what is unpacked anew (for the next key of a file).
    pub fn reset_budget(&mut self) {
        self.unpacked = 0;
    }

    pub fn string(&mut self) -> Option<Bytes> {
        let s = self.r.string()?;
        self.unpacked = self.unpacked.checked_add(s.len())?;
        (self.unpacked <= MAX_UNPACKED).then_some(s)
    }

    pub fn count(&mut self) -> Option<usize> {
        self.r.count()
    }

    fn u64(&mut self) -> Option<u64> {
        u64::try_from(self.r.count()?).ok()
    }

    fn raw_id(&mut self) -> Option<Id> {
        let b = self.r.take(16)?;
        Some(Id {
            ms: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            seq: u64::from_be_bytes(b.get(8..)?.try_into().ok()?),
        })
    }

    fn millis(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.r.take(8)?.try_into().ok()?))
    }

    /// A score as type 3 writes it: a length byte, or 253..255 for NaN
    /// and the infinities, then its decimal text.
    fn text_score(&mut self) -> Option<f64> {
        match self.r.byte()? {
            253 => None,
            254 => Some(f64::INFINITY),
            255 => Some(f64::NEG_INFINITY),
            n => std::str::from_utf8(self.r.take(usize::from(n))?)
                .ok()?
                .parse()
                .ok(),
        }
    }
}

/// The value in a payload.
pub fn restore(payload: &[u8]) -> Result<Value, Refused> {
    let body = rdb::verified(payload, rdb::RDB_VERSION_READ).ok_or(Refused::Checksum)?;
    let mut l = Loader::new(body);
    let kind = l.r.byte().ok_or(Refused::BadData)?;
    let value = load(&mut l, kind).ok_or(Refused::BadData)?;
    // Anything left after the value is not a payload Redis wrote.
    if !l.r.0.is_empty() {
        return Err(Refused::BadData);
    }
    Ok(value)
}

fn items_to_list(items: Vec<Item>, list: &mut VecDeque<Bytes>) {
    list.extend(items.into_iter().map(Item::into_bytes));
}

fn pairs<T>(items: Vec<Item>, mut put: impl FnMut(Bytes, Item) -> Option<T>) -> Option<()> {
    if items.len() % 2 != 0 {
        return None;
    }
    let mut it = items.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        put(a.into_bytes(), b)?;
    }
    Some(())
}

fn item_score(i: &Item) -> Option<f64> {
    let f = match i {
        Item::Int(n) => *n as f64,
        Item::Str(s) => std::str::from_utf8(s).ok()?.parse().ok()?,
    };
    (!f.is_nan()).then_some(f)
}

/// A value of RDB type `kind` (read before it).
pub fn load(l: &mut Loader<'_>, kind: u8) -> Option<Value> {
    let value = match kind {
        STRING => Value::Str(l.string()?),
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => {
            let mut list = VecDeque::new();
            match kind {
                LIST => {
                    for _ in 0..l.count()? {
                        list.push_back(l.string()?);
                    }
                }
                LIST_ZIPLIST => items_to_list(packed::ziplist(&l.string()?)?, &mut list),
                LIST_QUICKLIST => {
                    for _ in 0..l.count()? {
                        items_to_list(packed::ziplist(&l.string()?)?, &mut list);
                    }
                }
                _ => {
                    for _ in 0..l.count()? {
                        match l.count()? {
                            1 => list.push_back(l.string()?),
                            2 => items_to_list(packed::listpack(&l.string()?)?, &mut list),
                            _ => return None,
                        }
                    }
                }
            }
            if list.is_empty() {
                return None;
            }
            Value::List(Box::new(list))
        }
        SET | SET_INTSET | SET_LISTPACK => {
            let mut set = IndexSet::new();
            let mut add = |m: Bytes| set.insert(m).then_some(());
            match kind {
                SET => {
                    for _ in 0..l.count()? {
                        add(l.string()?)?;
                    }
                }
                SET_INTSET => {
                    for n in packed::intset(&l.string()?)? {
                        add(Bytes::from(n.to_string()))?;
                    }
                }
                _ => {
                    for i in packed::listpack(&l.string()?)? {
                        add(i.into_bytes())?;
                    }
                }
            }
            if set.is_empty() {
                return None;
            }
            Value::Set(Box::new(set))
        }
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => {
            let mut z = ZSet::default();
            match kind {
                ZSET | ZSET_2 => {
                    for _ in 0..l.count()? {
                        let m = l.string()?;
                        let score = if kind == ZSET {
                            l.text_score()?
                        } else {
                            f64::from_le_bytes(l.r.take(8)?.try_into().ok()?)
                        };
                        if score.is_nan() || !z.insert(m, score) {
                            return None;
                        }
                    }
                }
                _ => {
                    let blob = l.string()?;
                    let items = if kind == ZSET_ZIPLIST {
                        packed::ziplist(&blob)?
                    } else {
                        packed::listpack(&blob)?
                    };
                    pairs(items, |m, s| z.insert(m, item_score(&s)?).then_some(()))?;
                }
            }
            if z.len() == 0 {
                return None;
            }
            Value::ZSet(Box::new(z))
        }
        HASH | HASH_ZIPLIST | HASH_LISTPACK => {
            let mut h = HashValue::default();
            if kind == HASH {
                for _ in 0..l.count()? {
                    let (f, v) = (l.string()?, l.string()?);
                    if h.insert(f, v).is_some() {
                        return None;
                    }
                }
            } else {
                let blob = l.string()?;
                let items = if kind == HASH_ZIPLIST {
                    packed::ziplist(&blob)?
                } else {
                    packed::listpack(&blob)?
                };
                pairs(items, |f, v| {
                    h.insert(f, v.into_bytes()).is_none().then_some(())
                })?;
            }
            if h.is_empty() {
                return None;
            }
            Value::Hash(Box::new(h))
        }
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(load_stream(l, kind)?))
        }
        // Module values and the zipmaps of Redis 2.4 are not kept.
        _ => return None,
    };
    Some(value)
}

fn load_stream(l: &mut Loader<'_>, kind: u8) -> Option<Stream> {
    let mut st = Stream::default();
    for _ in 0..l.count()? {
        let key = l.string()?;
        let master = Loader {
            r: Reader(&key),
            unpacked: 0,
        }
        .raw_id()?;
        let lp = l.string()?;
        let (live, deleted) = load_node(master, &packed::listpack(&lp)?, &mut st)?;
        st.nodes.push_back(Node {
            first: master,
            live,
            added: live.checked_add(deleted)?,
            bytes: lp.len(),
        });
    }
    // Nodes Redis kept with nothing live in them are not kept here.
    st.nodes.retain(|n| n.live > 0);
    let length = l.u64()?;
    st.last_id = Id {
        ms: l.u64()?,
        seq: l.u64()?,
    };
    if kind >= STREAM_LISTPACKS_2 {
        let _first = Id {
            ms: l.u64()?,
            seq: l.u64()?,
        };
        st.max_deleted = Id {
            ms: l.u64()?,
            seq: l.u64()?,
        };
        st.entries_added = l.u64()?;
    } else {
        st.entries_added = length;
    }
    if length != st.entries.len() as u64 {
        return None;
    }
    for _ in 0..l.count()? {
        let name = l.string()?;
        let mut g = Group {
            last_id: Id {
                ms: l.u64()?,
                seq: l.u64()?,
            },
            ..Group::default()
        };
        if kind >= STREAM_LISTPACKS_2 {
            g.entries_read = Some(l.u64()?).filter(|n| *n != u64::MAX);
        }
        for _ in 0..l.count()? {
            let id = l.raw_id()?;
            let delivered_at = l.millis()?;
            let deliveries = l.u64()?;
            let p = Pending {
                consumer: Bytes::new(),
                delivered_at,
                deliveries,
            };
            if g.pending.insert(id, p).is_some() {
                return None;
            }
        }
        for _ in 0..l.count()? {
            let cname = l.string()?;
            let seen_at = l.millis()?;
            // Before 7.2 payloads had no active time: Redis takes the seen
            // time for it, and -1 is "never".
            let active_at = if kind >= STREAM_LISTPACKS_3 {
                Some(l.millis()?).filter(|t| *t != u64::MAX)
            } else {
                Some(seen_at)
            };
            let mut c = Consumer {
                seen_at,
                active_at,
                ..Consumer::default()
            };
            for _ in 0..l.count()? {
                let id = l.raw_id()?;
                // Each of a consumer's entries is one of the group's.
                let p = g.pending.get_mut(&id)?;
                if !p.consumer.is_empty() {
                    return None;
                }
                p.consumer = cname.clone();
                c.pending.insert(id);
            }
            if g.consumers.insert(cname, c).is_some() {
                return None;
            }
        }
        if g.pending.values().any(|p| p.consumer.is_empty()) {
            return None;
        }
        if st.groups.insert(name, g).is_some() {
            return None;
        }
    }
    Some(st)
}

/// The entries of one node's listpack; (live, deleted) as its master
/// entry counts them, checked against what it holds.
fn load_node(master: Id, items: &[Item], st: &mut Stream) -> Option<(u64, u64)> {
    let header = |i: usize| items.get(i).and_then(Item::int);
    let count = u64::try_from(header(0)?).ok()?;
    let deleted = u64::try_from(header(1)?).ok()?;
    let nfields = usize::try_from(header(2)?).ok()?;
    let mut rest = items.get(3..)?;
    let master_fields = rest.get(..nfields)?.to_vec();
    rest = rest.get(nfields..)?;
    if rest.first()?.int()? != 0 {
        return None;
    }
    rest = &rest[1..];
    let (mut live, mut dead) = (0u64, 0u64);
    while !rest.is_empty() {
        let flags = rest.first()?.int()?;
        let ms = rest.get(1)?.int()? as u64;
        let seq = rest.get(2)?.int()? as u64;
        rest = rest.get(3..)?;
        let fields: Vec<Bytes> = if flags & ENTRY_SAMEFIELDS != 0 {
            let values = rest.get(..nfields)?;
            rest = rest.get(nfields..)?;
            master_fields
                .iter()
                .zip(values)
                .flat_map(|(f, v)| [f.clone().into_bytes(), v.clone().into_bytes()])
                .collect()
        } else {
            let n = usize::try_from(rest.first()?.int()?).ok()?;
            let end = n.checked_mul(2)?.checked_add(1)?;
            let pairs = rest.get(1..end)?;
            rest = rest.get(end..)?;
            pairs.iter().map(|i| i.clone().into_bytes()).collect()
        };
        // The entry's element count, which Redis reads backwards by.
        rest = rest.get(1..)?;
        let id = Id {
            ms: master.ms.wrapping_add(ms),
            seq: master.seq.wrapping_add(seq),
        };
        if flags & ENTRY_DELETED != 0 {
            dead += 1;
            continue;
        }
        if id < master || st.entries.insert(id, fields).is_some() {
            return None;
        }
        live += 1;
    }
    (live == count && dead == deleted).then_some((count, deleted))
}

/// DUMP key.
pub fn dump_cmd(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(s.read(&a[1], |e| match e {
        Some(e) => Reply::Bulk(dump(e.value)),
        None => Reply::Nil,
    }))
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], with
/// Redis's checks in Redis's order.
pub fn restore_cmd(s: &Store, a: &[Bytes]) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut i = 4;
    while let Some(o) = a.get(i) {
        let more = a.len() - i - 1;
        if o.eq_ignore_ascii_case(b"REPLACE") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"ABSTTL") {
            absttl = true;
        } else if o.eq_ignore_ascii_case(b"IDLETIME") && more >= 1 && freq.is_none() {
            let n = parse_i64(&a[i + 1]).ok_or(CmdError::NotInteger)?;
            if n < 0 {
                return Err(CmdError::msg("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(n);
            i += 1;
        } else if o.eq_ignore_ascii_case(b"FREQ") && more >= 1 && idle.is_none() {
            let n = parse_i64(&a[i + 1]).ok_or(CmdError::NotInteger)?;
            if !(0..=255).contains(&n) {
                return Err(CmdError::msg(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(n);
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let key = &a[1];
    if !replace && s.exists(key) {
        return Err(CmdError::msg("BUSYKEY Target key name already exists."));
    }
    let ttl = parse_i64(&a[2]).ok_or(CmdError::NotInteger)?;
    if ttl < 0 {
        return Err(CmdError::msg("ERR Invalid TTL value, must be >= 0"));
    }
    let value = restore(&a[3])?;
    let now = now_ms();
    let expires_at = match ttl {
        0 => 0,
        t if absttl => t as u64,
        t => now.saturating_add(t as u64),
    };
    s.write(key, |slot| {
        // Already expired: the key is only deleted (when replacing).
        *slot = (expires_at == 0 || expires_at > now).then(|| Entry { value, expires_at });
    });
    if let Some(secs) = idle {
        s.set_idle(key, u64::try_from(secs).unwrap_or(0));
    }
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let bytes = dump(match &v {
            Value::Str(s) => ValueRef::Str(s),
            Value::List(l) => ValueRef::List(l),
            Value::Set(s) => ValueRef::Set(s),
            Value::ZSet(z) => ValueRef::ZSet(z),
            Value::Hash(h) => ValueRef::Hash(h),
            Value::Stream(st) => ValueRef::Stream(st),
        });
        let back = restore(&bytes).expect("restores");
        let again = dump(match &back {
            Value::Str(s) => ValueRef::Str(s),
            Value::List(l) => ValueRef::List(l),
            Value::Set(s) => ValueRef::Set(s),
            Value::ZSet(z) => ValueRef::ZSet(z),
            Value::Hash(h) => ValueRef::Hash(h),
            Value::Stream(st) => ValueRef::Stream(st),
        });
        assert_eq!(again, bytes);
        // Any damage is caught by the checksum.
        let mut bad = bytes.to_vec();
        bad[1] ^= 0x40;
        assert_eq!(restore(&bad).err(), Some(Refused::Checksum));
    }

    #[test]
    fn values_round_trip() {
        for s in ["", "12", "-129", "70000", "4294967296", "012", "text"] {
            round_trip(Value::Str(Bytes::from(s)));
        }
        let list: VecDeque<Bytes> = (0..1000).map(|i| Bytes::from(format!("e{i}"))).collect();
        round_trip(Value::List(Box::new(list)));
        let set: IndexSet<Bytes> = (0..10).map(|i| Bytes::from(i.to_string())).collect();
        round_trip(Value::Set(Box::new(set)));
        let mut z = ZSet::default();
        z.insert(Bytes::from_static(b"a"), 1.5);
        z.insert(Bytes::from_static(b"b"), f64::NEG_INFINITY);
        round_trip(Value::ZSet(Box::new(z)));
        let mut h = HashValue::default();
        h.insert(Bytes::from_static(b"f"), Bytes::from_static(b"v"));
        round_trip(Value::Hash(Box::new(h)));
        let mut st = Stream::default();
        for i in 1..=5u64 {
            let fields = if i == 3 {
                vec![Bytes::from_static(b"other"), Bytes::from(i.to_string())]
            } else {
                vec![Bytes::from_static(b"f"), Bytes::from(i.to_string())]
            };
            st.append(Id { ms: i, seq: 0 }, fields);
            st.last_id = Id { ms: i, seq: 0 };
            st.entries_added += 1;
        }
        st.delete(&[Id { ms: 2, seq: 0 }]);
        round_trip(Value::Stream(Box::new(st)));
    }

    /// Every single-byte change of valid payloads, checksummed again so
    /// that the value decoder itself meets it: refused or read, never a
    /// panic.
    #[test]
    fn damaged_values_never_panic() {
        let mut st = Stream::default();
        st.append(
            Id { ms: 1, seq: 1 },
            vec![Bytes::from_static(b"f"), Bytes::from_static(b"v")],
        );
        st.last_id = Id { ms: 1, seq: 1 };
        st.entries_added = 1;
        let mut g = Group::default();
        g.pending.insert(
            Id { ms: 1, seq: 1 },
            Pending {
                consumer: Bytes::from_static(b"c"),
                delivered_at: 5,
                deliveries: 1,
            },
        );
        g.consumers
            .insert(Bytes::from_static(b"c"), Consumer::default());
        if let Some(c) = g.consumers.get_mut(&b"c"[..]) {
            c.pending.insert(Id { ms: 1, seq: 1 });
        }
        st.groups.insert(Bytes::from_static(b"g"), g);
        let list: VecDeque<Bytes> = ["a", "1", "-70000"].map(Bytes::from).into();
        let mut h = HashValue::default();
        h.insert(Bytes::from_static(b"f"), Bytes::from_static(b"v"));
        let payloads = [
            dump(ValueRef::Stream(&st)),
            dump(ValueRef::List(&list)),
            dump(ValueRef::Hash(&h)),
            dump(ValueRef::Str(b"12345")),
        ];
        for p in payloads {
            let body = &p[..p.len() - 10];
            for i in 0..body.len() {
                for delta in [1u8, 0x40, 0x80, 0xff] {
                    let mut b = body.to_vec();
                    b[i] = b[i].wrapping_add(delta);
                    let _ = restore(&rdb::seal(BytesMut::from(&b[..])));
                }
            }
        }
    }

    #[test]
    fn bad_payloads_are_refused_not_trusted() {
        // A list claiming 2^40 elements in a few bytes.
        let mut out = BytesMut::new();
        out.extend_from_slice(&[LIST]);
        put_len(&mut out, 1 << 40);
        out.extend_from_slice(b"\x01a");
        assert_eq!(restore(&rdb::seal(out)).err(), Some(Refused::BadData));
        // An empty set, a duplicate member, trailing bytes.
        for body in [
            &[SET, 0][..],
            &[SET, 2, 1, b'a', 1, b'a'],
            &[STRING, 1, b'a', 0],
        ] {
            let mut out = BytesMut::new();
            out.extend_from_slice(body);
            assert_eq!(restore(&rdb::seal(out)).err(), Some(Refused::BadData));
        }
        assert_eq!(restore(b"short").err(), Some(Refused::Checksum));
    }
}
