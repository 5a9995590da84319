//! The sorted-set value: a member → score map plus an order-statistics
//! treap over (score, member), so that rank and index queries are
//! O(log n), as Redis's skiplist makes them.

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::Bytes;

const NIL: u32 = u32::MAX;

#[derive(Clone)]
struct Node {
    score: f64,
    member: Bytes,
    prio: u32,
    left: u32,
    right: u32,
    size: u32,
}

/// (score, member) order: by score, then by member bytes.
fn cmp(a: (f64, &[u8]), b: (f64, &[u8])) -> Ordering {
    a.0.partial_cmp(&b.0)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.1.cmp(b.1))
}

#[derive(Default, Clone)]
pub struct ZSet {
    scores: HashMap<Bytes, f64>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: Option<u32>,
    seed: u64,
}

impl ZSet {
    /// What a member takes besides its bytes, for MEMORY USAGE: its entry
    /// in the score map (a `Bytes` sharing the member's bytes, the score,
    /// a control byte) and its tree node.
    pub const MEMBER_OVERHEAD: usize = size_of::<(Bytes, f64)>() + 1 + size_of::<Node>();

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    pub fn members(&self) -> impl Iterator<Item = (&Bytes, &f64)> {
        self.scores.iter()
    }

    fn size(&self, t: u32) -> u32 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size
        }
    }

    fn fix(&mut self, t: u32) {
        let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        self.nodes[t as usize].size = 1 + self.size(l) + self.size(r);
    }

    fn root(&self) -> u32 {
        self.root.unwrap_or(NIL)
    }

    /// Splits `t` into (< key, >= key), or (<= key, > key) when `after`.
    fn split(&mut self, t: u32, key: (f64, &[u8]), after: bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let n = &self.nodes[t as usize];
        let o = cmp((n.score, &n.member), key);
        let goes_left = o == Ordering::Less || (after && o == Ordering::Equal);
        if goes_left {
            let (a, b) = self.split(self.nodes[t as usize].right, key, after);
            self.nodes[t as usize].right = a;
            self.fix(t);
            (t, b)
        } else {
            let (a, b) = self.split(self.nodes[t as usize].left, key, after);
            self.nodes[t as usize].left = b;
            self.fix(t);
            (a, t)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.fix(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.fix(b);
            b
        }
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift: priorities need only be independent of the keys.
        if self.seed == 0 {
            self.seed = 0x9E37_79B9_7F4A_7C15;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 32) as u32
    }

    /// Adds or re-scores a member; true when it is new.
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        let new = match self.scores.get(&member) {
            Some(&old) if old == score => return false,
            Some(_) => {
                self.remove(&member);
                false
            }
            None => true,
        };
        let node = Node {
            score,
            member: member.clone(),
            prio: self.next_prio(),
            left: NIL,
            right: NIL,
            size: 1,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let root = self.root();
        let (a, b) = self.split(root, (score, &member), false);
        let a = self.merge(a, idx);
        let r = self.merge(a, b);
        self.root = Some(r);
        self.scores.insert(member, score);
        new
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        let Some(score) = self.scores.remove(member) else {
            return false;
        };
        let root = self.root();
        let (a, rest) = self.split(root, (score, member), false);
        let (mid, c) = self.split(rest, (score, member), true);
        if mid != NIL {
            self.free.push(mid);
        }
        let r = self.merge(a, c);
        self.root = (r != NIL).then_some(r);
        if self.scores.is_empty() {
            self.nodes.clear();
            self.free.clear();
            self.root = None;
        }
        true
    }

    /// 0-based rank of a member in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = *self.scores.get(member)?;
        Some(self.count_before(|s, m| cmp((s, m), (score, member)) == Ordering::Less))
    }

    /// How many elements satisfy `before`, which must hold for a prefix of
    /// the order (e.g. "score < x").
    pub fn count_before(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let mut t = self.root();
        let mut n = 0;
        while t != NIL {
            let node = &self.nodes[t as usize];
            if before(node.score, &node.member) {
                n += self.size(node.left) as usize + 1;
                t = node.right;
            } else {
                t = node.left;
            }
        }
        n
    }

    /// The element at 0-based index `i` in ascending order.
    pub fn nth(&self, mut i: usize) -> Option<(&Bytes, f64)> {
        let mut t = self.root();
        while t != NIL {
            let node = &self.nodes[t as usize];
            let l = self.size(node.left) as usize;
            match i.cmp(&l) {
                Ordering::Less => t = node.left,
                Ordering::Equal => return Some((&node.member, node.score)),
                Ordering::Greater => {
                    i -= l + 1;
                    t = node.right;
                }
            }
        }
        None
    }

    /// Elements at indexes `start..end` in ascending order, walked in order
    /// (O(log n + k)).
    pub fn range(&self, start: usize, end: usize) -> Vec<(Bytes, f64)> {
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        self.collect(self.root(), start, end, 0, &mut out);
        out
    }

    fn collect(
        &self,
        t: u32,
        start: usize,
        end: usize,
        offset: usize,
        out: &mut Vec<(Bytes, f64)>,
    ) {
        if t == NIL || start >= end {
            return;
        }
        let node = &self.nodes[t as usize];
        let l = self.size(node.left) as usize;
        let here = offset + l;
        if start < here {
            self.collect(node.left, start, end, offset, out);
        }
        if start <= here && here < end {
            out.push((node.member.clone(), node.score));
        }
        if here + 1 < end {
            self.collect(node.right, start, end, here + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_ranges_stay_ordered() {
        let mut z = ZSet::default();
        for i in 0..1000u32 {
            let m = Bytes::from(format!("m{i:04}"));
            z.insert(m, f64::from((i * 7919) % 1000));
        }
        assert_eq!(z.len(), 1000);
        let all = z.range(0, 1000);
        assert!(all.windows(2).all(|w| w[0].1 <= w[1].1));
        for (i, (m, _)) in all.iter().enumerate().step_by(97) {
            assert_eq!(z.rank(m), Some(i));
            assert_eq!(z.nth(i).map(|x| x.0.clone()), Some(m.clone()));
        }
        assert!(z.remove(b"m0001"));
        assert!(!z.remove(b"m0001"));
        assert!(!z.insert(Bytes::from("m0002"), -5.0));
        assert_eq!(z.rank(b"m0002"), Some(0));
        assert_eq!(z.len(), 999);
        assert_eq!(z.count_before(|s, _| s < 0.0), 1);
        assert_eq!(z.range(0, 2).len(), 2);
    }
}
