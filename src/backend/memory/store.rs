//! The in-process keyspace.
//!
//! Keys live in 256 hash tables ("partitions"), each behind its own
//! read-write lock, chosen by the top bits of a 48-bit hash of the key, the
//! key's *scan order*. A table slot is one pointer to the key's node (see
//! node.rs). SCAN walks keys in scan
//! order and its cursor is the next order to visit, so a key present for a
//! whole iteration is returned exactly once however the maps grow or shrink
//! meanwhile (Redis gets the same guarantee from its reverse-binary cursor).
//! One call only reads the partitions it walks.
//!
//! Expired keys are removed when touched and, in the background, by a task
//! that sweeps a few partitions every 100 ms.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use indexmap::IndexSet;

use super::node::{self, Node};
use super::stream::Stream;
use super::zset::ZSet;

const PARTITIONS: usize = 256;
/// Scan orders are 48 bits so that the router can put a namespace index in
/// the top 16 bits of a SCAN cursor.
pub const ORDER_BITS: u32 = 48;
const PART_SHIFT: u32 = ORDER_BITS - 8;

/// A key's value, owned: what writes take and leave. Collections are boxed
/// so that a node holding one stays small.
pub enum Value {
    Str(Bytes),
    Hash(Box<HashValue>),
    List(Box<VecDeque<Bytes>>),
    /// Indexable, so SPOP and SRANDMEMBER pick in O(1).
    Set(Box<IndexSet<Bytes>>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

/// A key's value as stored, borrowed: what reads see.
/// A hash's fields in the order they were added (see `hashes::remove_field`).
pub type HashValue = indexmap::IndexMap<Bytes, Bytes>;

#[derive(Clone, Copy)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    Hash(&'a HashValue),
    List(&'a VecDeque<Bytes>),
    Set(&'a IndexSet<Bytes>),
    ZSet(&'a ZSet),
    Stream(&'a Stream),
}

impl ValueRef<'_> {
    /// An owned copy, for COPY.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Str(v) => Value::Str(Bytes::copy_from_slice(v)),
            ValueRef::Hash(h) => Value::Hash(Box::new(h.clone())),
            ValueRef::List(l) => Value::List(Box::new(l.clone())),
            ValueRef::Set(set) => Value::Set(Box::new(set.clone())),
            ValueRef::ZSet(z) => Value::ZSet(Box::new(z.clone())),
            ValueRef::Stream(st) => Value::Stream(Box::new(st.clone())),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::List(_) => "list",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
            ValueRef::Stream(_) => "stream",
        }
    }
}

/// How eviction ranks keys.
#[derive(Clone, Copy)]
pub enum Victims {
    Lru,
    Ttl,
    Random,
}

/// A key's value and expiry, owned, as a write sees and leaves them.
pub struct Entry {
    pub value: Value,
    /// Unix time in milliseconds; 0 means no expiry.
    pub expires_at: u64,
}

impl Entry {
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expires_at: 0,
        }
    }
}

/// A live key as a read sees it.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    pub value: ValueRef<'a>,
    pub expires_at: u64,
    /// Seconds (of the store's clock) of the last access before this one.
    pub access: u32,
}

pub use crate::wire::util::now_ms;

/// Whole seconds, for access times: coarse is enough for LRU.
pub fn clock() -> u32 {
    (now_ms() / 1000) as u32
}

/// A well-mixed 64-bit hash of the key: its top 48 bits are the key's scan
/// order, the low bits index the partition's table.
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h = h.rotate_left(29);
    }
    // murmur3's finalizer spreads every input bit over every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

/// The key's position in SCAN order: the top 48 bits of its hash.
pub fn scan_order(key: &[u8]) -> u64 {
    hash(key) >> (64 - ORDER_BITS)
}

/// The hash a partition's table files a key under. The top byte picked the
/// partition, so it is rotated to the bottom of the word, out of the bits
/// the table uses.
fn table_hash(h: u64) -> u64 {
    h.rotate_right(8)
}

fn node_hash(n: &Node) -> u64 {
    table_hash(hash(n.key()))
}

fn is_key(key: &[u8]) -> impl Fn(&Node) -> bool + '_ {
    move |n| n.key() == key
}

/// One partition's table, on its own cache line so that writers to
/// neighbouring partitions do not contend.
#[repr(align(64))]
#[derive(Default)]
struct Partition(RwLock<HashTable<Node>>);

impl Partition {
    // A panic inside a command leaves the table itself consistent (nodes
    // are swapped in and out whole), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, HashTable<Node>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashTable<Node>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Store {
    parts: Box<[Partition]>,
    /// Set when a TTL is written; lets the sweeper skip stores without any.
    has_volatile: AtomicBool,
    /// The last version given to a write.
    versions: AtomicU64,
    /// Pub/sub subscribers of this backend.
    pub hub: Arc<super::pubsub::Hub>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            parts: (0..PARTITIONS).map(|_| Partition::default()).collect(),
            has_volatile: AtomicBool::new(false),
            versions: Default::default(),
            hub: Default::default(),
        }
    }
}

impl Store {
    /// The partition holding `key` and the hash its table files it under.
    fn locate(&self, key: &[u8]) -> (u64, &Partition) {
        let h = hash(key);
        (table_hash(h), &self.parts[(h >> (64 - 8)) as usize])
    }

    /// Starts loading the table slot that points to `key`'s node, for a
    /// `prefetch` of the node shortly after.
    pub fn prefetch_slot(&self, key: &[u8]) {
        let (h, part) = self.locate(key);
        // The first slot whose 7-bit tag matches is almost always the key's;
        // comparing keys would wait for the very load being started. A wrong
        // guess only fetches a line for nothing.
        if let Some(slot) = part.read().find(h, |_| true) {
            node::prefetch(slot);
        }
    }

    /// Starts loading `key`'s node into the cache, for a command that will
    /// look it up shortly.
    pub fn prefetch(&self, key: &[u8]) {
        let (h, part) = self.locate(key);
        // As in `prefetch_slot`; here the slot is read, but not the node.
        if let Some(n) = part.read().find(h, |_| true) {
            n.prefetch();
        }
    }

    /// Reads a live entry.
    pub fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
        let (h, part) = self.locate(key);
        let now = now_ms();
        let expired = {
            let t = part.read();
            match t.find(h, is_key(key)) {
                None => false,
                Some(n) if n.expired(now) => true,
                Some(n) => {
                    let header = n.header();
                    let access = header.access.load(Ordering::Relaxed);
                    let secs = (now / 1000) as u32;
                    // Written only when it changes: a store to a line other
                    // cores read is what costs.
                    if access != secs {
                        header.access.store(secs, Ordering::Relaxed);
                    }
                    return f(Some(EntryRef {
                        value: n.value(),
                        expires_at: header.expires_at,
                        access,
                    }));
                }
            }
        };
        if expired {
            self.remove_expired(h, part, key, now);
        }
        f(None)
    }

    fn remove_expired(&self, h: u64, part: &Partition, key: &[u8], now: u64) {
        let mut t = part.write();
        if let Ok(o) = t.find_entry(h, is_key(key)) {
            if o.get().expired(now) {
                o.remove();
            }
        }
    }

    /// Reads and possibly replaces or deletes an entry, atomically for that
    /// key: `f` sees the live entry (None if missing or expired) and leaves
    /// in the slot what the key should hold afterwards.
    pub fn write<R>(&self, key: &[u8], f: impl FnOnce(&mut Option<Entry>) -> R) -> R {
        let (h, part) = self.locate(key);
        let now = now_ms();
        let mut t = part.write();
        let (mut slot, vacant) = match t.entry(h, is_key(key), node_hash) {
            Slot::Occupied(o) => {
                let (node, vacant) = o.remove();
                let live = (!node.expired(now)).then(|| node.into_entry());
                (live, vacant)
            }
            Slot::Vacant(v) => (None, v),
        };
        let r = f(&mut slot);
        if let Some(e) = slot {
            self.note_ttl(e.expires_at);
            vacant.insert(Node::new(key, e, self.next_version(), (now / 1000) as u32));
        }
        r
    }

    /// Makes a live key look idle for `secs` seconds (RESTORE IDLETIME).
    pub fn set_idle(&self, key: &[u8], secs: u64) {
        let (h, part) = self.locate(key);
        let t = part.read();
        if let Some(n) = t.find(h, is_key(key)) {
            let at = (now_ms() / 1000).saturating_sub(secs);
            n.header()
                .access
                .store(u32::try_from(at).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Changes a live key's expiry in place (strings are not copied out and
    /// back, as `write` would): `f` gets the current expiry and returns the
    /// new one, or None to delete the key. None when the key is missing.
    pub fn write_expiry<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(u64) -> (Option<u64>, R),
    ) -> Option<R> {
        let (h, part) = self.locate(key);
        let now = now_ms();
        let mut t = part.write();
        let Ok(mut o) = t.find_entry(h, is_key(key)) else {
            return None;
        };
        if o.get().expired(now) {
            o.remove();
            return None;
        }
        let (at, r) = f(o.get().expires_at());
        match at {
            None => {
                o.remove();
            }
            Some(at) => {
                let version = self.next_version();
                let header = o.get_mut().header_mut();
                header.expires_at = at;
                header.version = version;
                self.note_ttl(at);
            }
        }
        Some(r)
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The version of a live key (None when missing or expired), for WATCH:
    /// any write, expiry or deletion changes it.
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        let (h, part) = self.locate(key);
        let now = now_ms();
        let t = part.read();
        t.find(h, is_key(key))
            .filter(|n| !n.expired(now))
            .map(|n| n.header().version)
    }

    fn note_ttl(&self, expires_at: u64) {
        if expires_at != 0 && !self.has_volatile.load(Ordering::Relaxed) {
            self.has_volatile.store(true, Ordering::Relaxed);
        }
    }

    /// Removes a key, returning its live entry.
    pub fn remove(&self, key: &[u8]) -> Option<Entry> {
        self.take(key).map(Node::into_entry)
    }

    /// Deletes a key; whether it was live.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.take(key).is_some()
    }

    fn take(&self, key: &[u8]) -> Option<Node> {
        let (h, part) = self.locate(key);
        let now = now_ms();
        let mut t = part.write();
        let o = t.find_entry(h, is_key(key)).ok()?;
        let (node, _) = o.remove();
        (!node.expired(now)).then_some(node)
    }

    pub fn exists(&self, key: &[u8]) -> bool {
        self.read(key, |e| e.is_some())
    }

    /// Number of keys, counting expired keys not yet swept (as Redis does).
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.read().is_empty())
    }

    /// A store whose pub/sub hub is `hub`: databases share one, as Redis's
    /// channels are not per database.
    pub fn with_hub(hub: Arc<super::pubsub::Hub>) -> Store {
        Store {
            hub,
            ..Store::default()
        }
    }

    /// Exchanges every key with `other` (SWAPDB), a partition at a time.
    /// The caller holds both databases' gates exclusively, so no command
    /// sees a half-swapped pair and no other swap locks in reverse.
    pub fn swap_with(&self, other: &Store) {
        for (a, b) in self.parts.iter().zip(other.parts.iter()) {
            std::mem::swap(&mut *a.write(), &mut *b.write());
        }
        self.has_volatile.store(true, Ordering::Relaxed);
        other.has_volatile.store(true, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        for p in self.parts.iter() {
            // Replaced, not cleared: a cleared table keeps its capacity.
            let old = std::mem::take(&mut *p.write());
            drop(old);
        }
    }

    /// Live keys with a TTL, and the sum of their remaining TTLs in ms:
    /// INFO keyspace's `expires` and `avg_ttl`. A walk of every partition,
    /// one at a time, as INFO is asked for seldom.
    pub fn volatile(&self) -> (u64, u64) {
        let now = now_ms();
        let (mut count, mut sum) = (0u64, 0u64);
        for part in self.parts.iter() {
            for n in part.read().iter() {
                let at = n.expires_at();
                if at != 0 && !n.expired(now) {
                    count += 1;
                    sum += at.saturating_sub(now);
                }
            }
        }
        (count, sum)
    }

    /// Calls `f` for every live key.
    /// Every live key with its value and expiry (Unix ms, 0: none).
    pub fn for_each_entry(&self, mut f: impl FnMut(&[u8], ValueRef<'_>, u64)) {
        let now = now_ms();
        for part in self.parts.iter() {
            for n in part.read().iter() {
                if !n.expired(now) {
                    f(n.key(), n.value(), n.header().expires_at);
                }
            }
        }
    }

    pub fn for_each_key(&self, mut f: impl FnMut(&[u8], ValueRef<'_>)) {
        let now = now_ms();
        for part in self.parts.iter() {
            for n in part.read().iter() {
                if !n.expired(now) {
                    f(n.key(), n.value());
                }
            }
        }
    }

    /// One SCAN step: up to about `count` live keys in scan order from
    /// `cursor`, with the cursor to continue from (0 when done). `keep`
    /// filters what is returned, after counting, as Redis's MATCH and TYPE do.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        mut keep: impl FnMut(&[u8], ValueRef<'_>) -> bool,
    ) -> (u64, Vec<Bytes>) {
        let now = now_ms();
        let end = 1u64 << ORDER_BITS;
        let mut from = cursor;
        let mut found: Vec<(u64, Bytes)> = Vec::new();
        while from < end {
            let p = (from >> PART_SHIFT) as usize;
            let before = found.len();
            for n in self.parts[p].read().iter() {
                let order = scan_order(n.key());
                if order >= from && !n.expired(now) && keep(n.key(), n.value()) {
                    found.push((order, Bytes::copy_from_slice(n.key())));
                }
            }
            found[before..].sort_unstable_by_key(|x| x.0);
            if found.len() >= count {
                // Stop after the count-th key, keeping keys of equal order
                // together so the next cursor skips none of them.
                let last = found[count - 1].0;
                found.retain(|x| x.0 <= last);
                let next = last + 1;
                let next = if next >= end { 0 } else { next };
                return (next, found.into_iter().map(|x| x.1).collect());
            }
            from = (p as u64 + 1) << PART_SHIFT;
        }
        (0, found.into_iter().map(|x| x.1).collect())
    }

    /// Up to `n` keys to evict, chosen in one random partition: the least
    /// recently used (`lru`), the nearest to expire (`ttl`), or any; only
    /// keys with a TTL when `volatile`.
    pub fn victims(&self, n: usize, volatile: bool, by: Victims) -> Vec<Bytes> {
        let now = now_ms();
        let start = crate::wire::util::random_below(PARTITIONS as u64) as usize;
        for i in 0..PARTITIONS {
            let part = self.parts[(start + i) % PARTITIONS].read();
            let mut found: Vec<(u64, &Node)> = part
                .iter()
                .filter(|e| !e.expired(now) && (!volatile || e.expires_at() != 0))
                .map(|e| {
                    let rank = match by {
                        Victims::Lru => u64::from(e.header().access.load(Ordering::Relaxed)),
                        Victims::Ttl => e.expires_at(),
                        Victims::Random => crate::wire::util::random_below(u64::MAX),
                    };
                    (rank, e)
                })
                .collect();
            if found.is_empty() {
                continue;
            }
            found.sort_unstable_by_key(|x| x.0);
            found.truncate(n);
            return found
                .into_iter()
                .map(|x| Bytes::copy_from_slice(x.1.key()))
                .collect();
        }
        Vec::new()
    }

    /// A random live key.
    pub fn random_key(&self) -> Option<Bytes> {
        let now = now_ms();
        let start = crate::wire::util::random_below(PARTITIONS as u64) as usize;
        for i in 0..PARTITIONS {
            let part = self.parts[(start + i) % PARTITIONS].read();
            let live: Vec<&Node> = part.iter().filter(|e| !e.expired(now)).collect();
            if !live.is_empty() {
                let pick = crate::wire::util::random_below(live.len() as u64) as usize;
                return Some(Bytes::copy_from_slice(live[pick].key()));
            }
        }
        None
    }

    /// Removes expired keys from `n` partitions starting at `from`; returns
    /// whether any key with a TTL remains in them.
    fn sweep(&self, from: usize, n: usize) -> bool {
        let now = now_ms();
        let mut volatile = false;
        for i in from..from + n {
            self.parts[i % PARTITIONS].write().retain(|e| {
                volatile |= e.expires_at() != 0;
                !e.expired(now)
            });
        }
        volatile
    }
}

/// Whether the background sweep deletes expired keys (Redis's
/// `DEBUG SET-ACTIVE-EXPIRE`); with it off, a key past its TTL stays
/// until a command reads it (it is dead to every command either way).
/// Process-wide, as the setting is server-wide in Redis.
static ACTIVE_EXPIRE: AtomicBool = AtomicBool::new(true);

/// Turns the background expiry sweep of every memory store on or off.
pub fn set_active_expire(on: bool) {
    ACTIVE_EXPIRE.store(on, Ordering::Relaxed);
}

/// Runs the background expiry sweep until the store is dropped.
pub fn spawn_sweeper(store: &Arc<Store>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return; // No runtime (a benchmark): expiry stays lazy.
    };
    let weak: Weak<Store> = Arc::downgrade(store);
    rt.spawn(async move {
        // A whole pass a second: a key is gone at most about a second after
        // its TTL, within the two seconds Redis's own suite allows (Redis
        // samples its keys with a TTL ten times a second). With 16 a
        // tick, a pass took 1.6 s, and a key could outlive its TTL by that.
        const PER_TICK: usize = PARTITIONS.div_ceil(10);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut next = 0;
        let mut volatile_this_pass = false;
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            if !ACTIVE_EXPIRE.load(Ordering::Relaxed) {
                continue;
            }
            if next == 0 {
                // A whole pass found no TTL and none was written since: idle.
                if !volatile_this_pass && !store.has_volatile.swap(false, Ordering::Relaxed) {
                    continue;
                }
                volatile_this_pass = false;
            }
            volatile_this_pass |= store.sweep(next, PER_TICK);
            next = (next + PER_TICK) % PARTITIONS;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &Store, k: &str) {
        s.write(k.as_bytes(), |slot| {
            *slot = Some(Entry::new(Value::Str(Bytes::from_static(b"v"))))
        });
    }

    #[test]
    fn scan_visits_every_key_once_while_the_map_changes() {
        let s = Store::default();
        for i in 0..5000 {
            put(&s, &format!("key:{i}"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            let (next, keys) = s.scan(cursor, 37, |_, _| true);
            for k in keys {
                assert!(seen.insert(k.clone()), "returned twice: {k:?}");
            }
            // Grow the map during the scan: existing keys must still be seen.
            round += 1;
            put(&s, &format!("new:{round}"));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for i in 0..5000 {
            assert!(
                seen.contains(format!("key:{i}").as_bytes()),
                "missed key:{i}"
            );
        }
    }

    #[test]
    fn prefetch_changes_nothing_whether_the_key_is_there_or_not() {
        let s = Store::default();
        put(&s, "here");
        for k in [&b"here"[..], b"missing"] {
            s.prefetch_slot(k);
            s.prefetch(k);
        }
        let read = |k: &[u8]| {
            s.read(k, |e| {
                e.map(|e| match e.value {
                    ValueRef::Str(v) => v.to_vec(),
                    _ => Vec::new(),
                })
            })
        };
        assert_eq!(read(b"here"), Some(b"v".to_vec()));
        assert_eq!(read(b"missing"), None);
    }

    #[test]
    fn scan_order_fits_the_cursor_bits() {
        for k in ["", "a", "hello world", "a-much-longer-key-than-eight-bytes"] {
            assert!(scan_order(k.as_bytes()) < 1 << ORDER_BITS);
        }
    }
}
