//! The stream type: entries ordered by ID, and consumer groups with their
//! pending entries, kept as Redis 7.0 keeps them (the counters behind
//! XINFO's `entries-read` and `lag` included).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use bytes::Bytes;

/// A stream entry ID: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    pub ms: u64,
    pub seq: u64,
}

impl Id {
    pub const MIN: Id = Id { ms: 0, seq: 0 };
    pub const MAX: Id = Id {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The next ID in order; None after the last possible one.
    pub fn next(self) -> Option<Id> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(Id { ms: ms + 1, seq: 0 }),
            (ms, seq) => Some(Id { ms, seq: seq + 1 }),
        }
    }

    /// The previous ID in order; None before 0-0.
    pub fn prev(self) -> Option<Id> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(Id {
                ms: ms - 1,
                seq: u64::MAX,
            }),
            (ms, seq) => Some(Id { ms, seq: seq - 1 }),
        }
    }

    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An entry delivered to a consumer and not yet acknowledged.
#[derive(Clone, Debug)]
pub struct Pending {
    pub consumer: Bytes,
    /// Unix milliseconds of the last delivery.
    pub delivered_at: u64,
    pub deliveries: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Consumer {
    /// Unix milliseconds when the consumer last tried to read or claim.
    pub seen_at: u64,
    /// Unix milliseconds when it last got something (Redis 7.2's
    /// active-time); None before that.
    pub active_at: Option<u64>,
    pub pending: BTreeSet<Id>,
}

#[derive(Clone, Debug, Default)]
pub struct Group {
    pub last_id: Id,
    /// Entries the group has read, when known (Redis's -1 is None).
    pub entries_read: Option<u64>,
    pub pending: BTreeMap<Id, Pending>,
    /// In name order, as Redis lists them.
    pub consumers: BTreeMap<Bytes, Consumer>,
}

/// A run of consecutive entries that Redis would keep in one listpack
/// node: approximate trimming (`~`) removes whole nodes, so how many
/// entries it leaves depends on where they fall.
#[derive(Clone, Debug)]
pub struct Node {
    /// The first ID filed in the node; the next node's first ends it.
    pub first: Id,
    /// Entries still in it.
    pub live: u64,
    /// Entries ever filed in it (deleted ones stay in a listpack).
    pub added: u64,
    /// Its listpack's size, roughly: what `stream-node-max-bytes` bounds.
    pub bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Each entry's fields and values, alternating.
    pub entries: BTreeMap<Id, Vec<Bytes>>,
    /// Where Redis's nodes would start, oldest first.
    pub nodes: VecDeque<Node>,
    pub last_id: Id,
    pub max_deleted: Id,
    /// Entries ever added.
    pub entries_added: u64,
    /// In name order, as Redis lists them.
    pub groups: BTreeMap<Bytes, Group>,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A stream is kept when emptied, as in Redis.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn first_id(&self) -> Id {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    /// Whether an XDEL may have left a gap in `start..`: counting read
    /// entries from IDs is then unsafe.
    pub fn has_tombstones_from(&self, start: Id) -> bool {
        if self.entries.is_empty() || self.max_deleted == Id::MIN {
            return false;
        }
        start <= self.max_deleted
    }

    /// How many entries were ever added up to and including `id`, when
    /// that can be known without counting (Redis's estimate).
    pub fn entries_up_to(&self, id: Id) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.entries.is_empty() && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id();
        if self.max_deleted == Id::MIN || self.max_deleted < first {
            let before_first = self.entries_added.saturating_sub(self.len() as u64);
            if id < first {
                return Some(before_first);
            }
            if id == first {
                return Some(before_first + 1);
            }
        }
        None
    }

    /// A group's lag: entries added that it has not read, when known.
    /// Negative when XGROUP SETID claimed more read than were added, as
    /// Redis's signed arithmetic gives it.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        let lag = |read: u64| (self.entries_added as i64).wrapping_sub(read as i64);
        if let Some(read) = g.entries_read {
            if !self.has_tombstones_from(g.last_id) {
                return Some(lag(read));
            }
        }
        self.entries_up_to(g.last_id).map(lag)
    }

    /// Records that `group` has read up to `id`.
    pub fn advance(&mut self, group: &Bytes, id: Id) {
        let tombstones = self.has_tombstones_from(id);
        let estimate = self.entries_up_to(id);
        let added = self.entries_added;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if id <= g.last_id {
            return;
        }
        match g.entries_read {
            Some(n) if !tombstones => g.entries_read = Some(n + 1),
            _ if added > 0 => g.entries_read = estimate,
            _ => {}
        }
        g.last_id = id;
    }

    /// Adds the newest entry, filed in the tail node or, when that node is
    /// full (`stream-node-max-entries` filed, or `stream-node-max-bytes`),
    /// in a new one, as Redis fills its listpacks.
    pub fn append(&mut self, id: Id, fields: Vec<Bytes>) {
        let max_entries =
            u64::try_from(super::tunables::get("stream-node-max-entries")).unwrap_or(0);
        let max_bytes = usize::try_from(super::tunables::get("stream-node-max-bytes")).unwrap_or(0);
        // A listpack element costs its bytes and about two of header.
        let size = fields
            .iter()
            .map(|f| f.len().saturating_add(2))
            .sum::<usize>()
            + 4;
        let full = self.nodes.back().is_none_or(|n| {
            (max_bytes > 0 && n.bytes.saturating_add(size) >= max_bytes)
                || (max_entries > 0 && n.added >= max_entries)
        });
        if full {
            self.nodes.push_back(Node {
                first: id,
                live: 0,
                added: 0,
                bytes: size,
            });
        }
        if let Some(n) = self.nodes.back_mut() {
            n.live += 1;
            n.added += 1;
            n.bytes = n.bytes.saturating_add(size);
        }
        self.entries.insert(id, fields);
    }

    /// Removes one entry from its node; a node left empty goes, as Redis
    /// frees an emptied listpack.
    fn unfile(&mut self, id: Id) {
        let at = self.nodes.partition_point(|n| n.first <= id);
        let Some(i) = at.checked_sub(1) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(i) {
            n.live = n.live.saturating_sub(1);
            if n.live == 0 {
                self.nodes.remove(i);
            }
        }
    }

    /// Deletes the entries at `ids`; returns how many there were.
    pub fn delete(&mut self, ids: &[Id]) -> usize {
        let mut n = 0;
        for id in ids {
            if self.entries.remove(id).is_some() {
                n += 1;
                self.max_deleted = self.max_deleted.max(*id);
                self.unfile(*id);
            }
        }
        n
    }

    /// Trims from the oldest entry: to `maxlen` entries, or below `minid`;
    /// at most `limit` entries when not 0. Approximate trimming removes
    /// whole nodes only, and stops at the first it cannot remove whole.
    /// Returns how many went.
    pub fn trim(&mut self, trim: Trim, limit: u64, approx: bool) -> u64 {
        if approx {
            return self.trim_nodes(trim, limit);
        }
        let mut removed = 0;
        while limit == 0 || removed < limit {
            let Some((&first, _)) = self.entries.first_key_value() else {
                break;
            };
            let goes = match trim {
                Trim::MaxLen(n) => self.entries.len() as u64 > n,
                Trim::MinId(min) => first < min,
            };
            if !goes {
                break;
            }
            self.entries.remove(&first);
            self.unfile(first);
            removed += 1;
        }
        removed
    }

    fn trim_nodes(&mut self, trim: Trim, limit: u64) -> u64 {
        let mut removed = 0u64;
        while let Some(node) = self.nodes.front() {
            if limit != 0 && removed.saturating_add(node.live) > limit {
                break;
            }
            let end = self.nodes.get(1).map(|n| n.first);
            let goes = match trim {
                Trim::MaxLen(n) => (self.entries.len() as u64).saturating_sub(node.live) >= n,
                Trim::MinId(min) => {
                    let last = match end {
                        Some(e) => self.entries.range(..e).next_back(),
                        None => self.entries.iter().next_back(),
                    };
                    last.is_some_and(|(id, _)| *id < min)
                }
            };
            if !goes {
                break;
            }
            let kept = match end {
                Some(e) => self.entries.split_off(&e),
                None => BTreeMap::new(),
            };
            let gone = std::mem::replace(&mut self.entries, kept);
            removed += gone.len() as u64;
            self.nodes.pop_front();
        }
        removed
    }

    /// Bytes held, roughly, for MEMORY USAGE.
    pub fn footprint(&self) -> usize {
        self.entries
            .values()
            .map(|fv| 16 + fv.iter().map(|b| b.len() + 8).sum::<usize>())
            .sum::<usize>()
            + self
                .groups
                .values()
                .map(|g| 64 + g.pending.len() * 48 + g.consumers.len() * 64)
                .sum::<usize>()
    }
}

/// A trimming strategy.
#[derive(Clone, Copy, Debug)]
pub enum Trim {
    MaxLen(u64),
    MinId(Id),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> Id {
        Id { ms, seq }
    }

    #[test]
    fn ids_step_over_the_sequence_limit() {
        assert_eq!(id(1, u64::MAX).next(), Some(id(2, 0)));
        assert_eq!(Id::MAX.next(), None);
        assert_eq!(id(2, 0).prev(), Some(id(1, u64::MAX)));
        assert_eq!(Id::MIN.prev(), None);
        assert_eq!(id(5, 7).to_string(), "5-7");
    }

    #[test]
    fn lag_is_known_until_a_deletion_leaves_a_gap() {
        let mut s = Stream::default();
        for i in 1..=5 {
            s.entries.insert(id(i, 0), vec![]);
            s.last_id = id(i, 0);
            s.entries_added += 1;
        }
        let g = Group {
            last_id: id(2, 0),
            ..Group::default()
        };
        // No deletions: counted from the first entry.
        assert_eq!(s.entries_up_to(id(1, 0)), Some(1));
        assert_eq!(s.lag(&g), None);
        s.groups.insert(Bytes::from_static(b"g"), g);
        s.advance(&Bytes::from_static(b"g"), id(5, 0));
        assert_eq!(s.groups[&b"g"[..]].entries_read, Some(5));
        assert_eq!(s.lag(&s.groups[&b"g"[..]]), Some(0));
        assert_eq!(s.delete(&[id(3, 0)]), 1);
        assert_eq!(s.max_deleted, id(3, 0));
        assert_eq!(s.trim(Trim::MaxLen(2), 0, false), 2);
        assert_eq!(s.first_id(), id(4, 0));
    }
}
