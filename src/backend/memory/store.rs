//! The in-process keyspace.
//!
//! Keys live in 256 dashmaps ("partitions") chosen by the top bits of a
//! 48-bit hash of the key, the key's *scan order*. SCAN walks keys in scan
//! order and its cursor is the next order to visit, so a key present for a
//! whole iteration is returned exactly once however the maps grow or shrink
//! meanwhile (Redis gets the same guarantee from its reverse-binary cursor).
//! One call only reads the partitions it walks.
//!
//! Expired keys are removed when touched and, in the background, by a task
//! that sweeps a few partitions every 100 ms.

use std::collections::{HashMap, VecDeque};

use indexmap::IndexSet;

use super::zset::ZSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

const PARTITIONS: usize = 256;
/// Scan orders are 48 bits so that the router can put a namespace index in
/// the top 16 bits of a SCAN cursor.
pub const ORDER_BITS: u32 = 48;
const PART_SHIFT: u32 = ORDER_BITS - 8;

/// A key's value. Collections are boxed so that the common case, a
/// string, keeps entries small (a million keys cost what Redis's do).
pub enum Value {
    Str(Bytes),
    Hash(Box<HashMap<Bytes, Bytes>>),
    List(Box<VecDeque<Bytes>>),
    /// Indexable, so SPOP and SRANDMEMBER pick in O(1).
    Set(Box<IndexSet<Bytes>>),
    ZSet(Box<ZSet>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
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

pub struct Entry {
    pub value: Value,
    /// Unix time in milliseconds; 0 means no expiry.
    pub expires_at: u64,
    /// Set by the store on every write, for WATCH.
    pub version: u64,
    /// Seconds (of the store's clock) of the last access, for LRU eviction.
    pub access: AtomicU32,
}

impl Entry {
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expires_at: 0,
            version: 0,
            access: AtomicU32::new(clock()),
        }
    }

    pub fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

pub use crate::util::now_ms;

/// Whole seconds, for access times: coarse is enough for LRU.
pub fn clock() -> u32 {
    (now_ms() / 1000) as u32
}

/// The key's position in SCAN order: a well-mixed 48-bit hash.
pub fn scan_order(key: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h = h.rotate_left(29);
    }
    // murmur3's finalizer spreads every input bit over the top bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h >> (64 - ORDER_BITS)
}

pub struct Store {
    parts: Box<[DashMap<Bytes, Entry>]>,
    /// Set when a TTL is written; lets the sweeper skip stores without any.
    has_volatile: AtomicBool,
    /// The last version given to a write.
    versions: std::sync::atomic::AtomicU64,
    /// Pub/sub subscribers of this backend.
    pub hub: std::sync::Arc<super::pubsub::Hub>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            parts: (0..PARTITIONS)
                .map(|_| DashMap::with_shard_amount(2))
                .collect(),
            has_volatile: AtomicBool::new(false),
            versions: Default::default(),
            hub: Default::default(),
        }
    }
}

impl Store {
    fn part(&self, key: &[u8]) -> &DashMap<Bytes, Entry> {
        &self.parts[(scan_order(key) >> PART_SHIFT) as usize]
    }

    /// Reads a live entry.
    pub fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<&Entry>) -> R) -> R {
        let part = self.part(key);
        let now = now_ms();
        if let Some(e) = part.get(key) {
            if !e.expired(now) {
                e.access.store((now / 1000) as u32, Ordering::Relaxed);
                return f(Some(&e));
            }
            drop(e);
            part.remove_if(key, |_, e| e.expired(now));
        }
        f(None)
    }

    /// Reads and possibly replaces or deletes an entry, atomically for that
    /// key: `f` sees the live entry (None if missing or expired) and leaves
    /// in the slot what the key should hold afterwards.
    pub fn write<R>(&self, key: &[u8], f: impl FnOnce(&mut Option<Entry>) -> R) -> R {
        let now = now_ms();
        // The stored key is copied so it never pins a client's read buffer.
        match self.part(key).entry(Bytes::copy_from_slice(key)) {
            MapEntry::Occupied(mut o) => {
                let mut slot = if o.get().expired(now) {
                    None
                } else {
                    let placeholder = Entry::new(Value::Str(Bytes::new()));
                    Some(std::mem::replace(o.get_mut(), placeholder))
                };
                let r = f(&mut slot);
                match slot {
                    Some(mut e) => {
                        self.note_ttl(&e);
                        e.version = self.next_version();
                        *e.access.get_mut() = (now / 1000) as u32;
                        *o.get_mut() = e;
                    }
                    None => {
                        o.remove();
                    }
                }
                r
            }
            MapEntry::Vacant(v) => {
                let mut slot = None;
                let r = f(&mut slot);
                if let Some(mut e) = slot {
                    self.note_ttl(&e);
                    e.version = self.next_version();
                    v.insert(e);
                }
                r
            }
        }
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The version of a live key (None when missing or expired), for WATCH:
    /// any write, expiry or deletion changes it.
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        self.read(key, |e| e.map(|e| e.version))
    }

    fn note_ttl(&self, e: &Entry) {
        if e.expires_at != 0 && !self.has_volatile.load(Ordering::Relaxed) {
            self.has_volatile.store(true, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, key: &[u8]) -> Option<Entry> {
        let now = now_ms();
        self.part(key)
            .remove(key)
            .map(|(_, e)| e)
            .filter(|e| !e.expired(now))
    }

    pub fn exists(&self, key: &[u8]) -> bool {
        self.read(key, |e| e.is_some())
    }

    /// Number of keys, counting expired keys not yet swept (as Redis does).
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_empty())
    }

    pub fn clear(&self) {
        self.parts.iter().for_each(|p| p.clear());
    }

    /// Calls `f` for every live key.
    pub fn for_each_key(&self, mut f: impl FnMut(&Bytes, &Entry)) {
        let now = now_ms();
        for part in self.parts.iter() {
            for e in part.iter() {
                if !e.value().expired(now) {
                    f(e.key(), e.value());
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
        mut keep: impl FnMut(&Bytes, &Entry) -> bool,
    ) -> (u64, Vec<Bytes>) {
        let now = now_ms();
        let end = 1u64 << ORDER_BITS;
        let mut from = cursor;
        let mut found: Vec<(u64, Bytes)> = Vec::new();
        while from < end {
            let p = (from >> PART_SHIFT) as usize;
            let before = found.len();
            for e in self.parts[p].iter() {
                let order = scan_order(e.key());
                if order >= from && !e.value().expired(now) && keep(e.key(), e.value()) {
                    found.push((order, e.key().clone()));
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

    /// A random live key.
    /// Up to `n` keys to evict, chosen in one random partition: the least
    /// recently used (`lru`), the nearest to expire (`ttl`), or any; only
    /// keys with a TTL when `volatile`.
    pub fn victims(&self, n: usize, volatile: bool, by: Victims) -> Vec<Bytes> {
        let now = now_ms();
        let start = crate::util::random_below(PARTITIONS as u64) as usize;
        for i in 0..PARTITIONS {
            let part = &self.parts[(start + i) % PARTITIONS];
            let mut found: Vec<(u64, Bytes)> = part
                .iter()
                .filter(|e| !e.value().expired(now) && (!volatile || e.value().expires_at != 0))
                .map(|e| {
                    let rank = match by {
                        Victims::Lru => u64::from(e.value().access.load(Ordering::Relaxed)),
                        Victims::Ttl => e.value().expires_at,
                        Victims::Random => crate::util::random_below(u64::MAX),
                    };
                    (rank, e.key().clone())
                })
                .collect();
            if found.is_empty() {
                continue;
            }
            found.sort_unstable_by_key(|x| x.0);
            found.truncate(n);
            return found.into_iter().map(|x| x.1).collect();
        }
        Vec::new()
    }

    pub fn random_key(&self) -> Option<Bytes> {
        let now = now_ms();
        let start = crate::util::random_below(PARTITIONS as u64) as usize;
        for i in 0..PARTITIONS {
            let part = &self.parts[(start + i) % PARTITIONS];
            let live: Vec<Bytes> = part
                .iter()
                .filter(|e| !e.value().expired(now))
                .map(|e| e.key().clone())
                .collect();
            if !live.is_empty() {
                let pick = crate::util::random_below(live.len() as u64) as usize;
                return live.into_iter().nth(pick);
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
            self.parts[i % PARTITIONS].retain(|_, e| {
                volatile |= e.expires_at != 0;
                !e.expired(now)
            });
        }
        volatile
    }
}

/// Runs the background expiry sweep until the store is dropped.
pub fn spawn_sweeper(store: &Arc<Store>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return; // No runtime (a benchmark): expiry stays lazy.
    };
    let weak: Weak<Store> = Arc::downgrade(store);
    rt.spawn(async move {
        const PER_TICK: usize = 16;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut next = 0;
        let mut volatile_this_pass = false;
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
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
    fn scan_order_fits_the_cursor_bits() {
        for k in ["", "a", "hello world", "a-much-longer-key-than-eight-bytes"] {
            assert!(scan_order(k.as_bytes()) < 1 << ORDER_BITS);
        }
    }
}
