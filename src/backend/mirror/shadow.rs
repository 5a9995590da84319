//! Shadow reads (`shadow_reads = fraction` on a mirrored namespace): a
//! sample of live single-key reads also runs on the mirror, in order
//! behind the writes queued for it, and the two replies are compared. The
//! client gets the primary's reply, always, without waiting; differences
//! are counted (`keyway_shadow_reads_total{result}`) and logged with the
//! key, so an operator sees whether the mirror can be trusted before the
//! cut-over.
//!
//! A read is compared only when no write to its key was in flight or began
//! around it (the same watch as a migration's copies, see `track`), so a
//! write on its way is never taken for a difference; such reads, and those
//! that find the mirror's queue full, count as `skipped`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::super::Command;
use super::Mirrored;
use crate::wire::command::{BLOCKING, READ, WRITE};
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::util::random_below;

/// The sampled fraction, as f64 bits (0: off), changed by reloads.
#[derive(Default)]
pub struct Fraction(AtomicU64);

impl Fraction {
    pub fn set(&self, f: f64) {
        self.0.store(f.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Commands whose replies list members in no set order: compared sorted.
const UNORDERED: &[&str] = &["smembers", "sinter", "sunion", "sdiff", "hkeys", "hvals"];

/// The reads of `batch` to shadow (positions), chosen at random; asked
/// for structured replies.
pub fn pick(fraction: f64, batch: &mut [Command]) -> Vec<usize> {
    if fraction <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, c) in batch.iter_mut().enumerate() {
        let read = c.spec.has(READ) && !c.spec.has(WRITE) && !c.spec.has(BLOCKING);
        if read
            && c.spec.single_key(c.args.len()).is_some()
            && (random_below(1_000_000) as f64) < fraction * 1e6
        {
            c.inspect = true;
            out.push(i);
        }
    }
    out
}

fn key(c: &Command) -> Option<Bytes> {
    c.spec
        .single_key(c.args.len())
        .and_then(|p| c.args.get(p).cloned())
}

/// Watches the picked reads' keys before the primary runs them.
pub fn watch(m: &Mirrored, batch: &[Command], picked: &[usize]) {
    let keys: Vec<Bytes> = picked.iter().filter_map(|&i| key(&batch[i])).collect();
    m.tracker.watch(&keys);
}

/// Queues the picked reads for the mirror and compares, in the background.
pub fn compare(m: &Mirrored, cmds: Vec<Command>, replies: &[Reply]) -> Option<()> {
    let keys: Vec<Bytes> = cmds.iter().filter_map(key).collect();
    // Replayed writes come first: a shadow read takes room in the queue
    // only while more than half of it is free.
    let queue = &m.tap().queue;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut kept = Vec::new();
    let ns = m.namespace.clone();
    let skipped = |n: usize| metrics().shadow_read(&ns, "skipped", n as u64);
    if !queue.roomy() {
        m.tracker.settle(&keys, |_| ());
        skipped(keys.len());
        return None;
    }
    m.tracker.settle(&keys, |seen| {
        let mut probe = Vec::new();
        for ((c, w), r) in cmds.into_iter().zip(seen).zip(replies) {
            if w.dirty || w.waiters {
                continue;
            }
            kept.push((c.clone(), r.clone()));
            probe.push(c);
        }
        let _ = queue.probe(probe, tx);
    });
    skipped(keys.len() - kept.len());
    tokio::spawn(async move {
        let Ok(theirs) = rx.await else { return };
        for ((c, ours), theirs) in kept.into_iter().zip(theirs) {
            let same = alike(c.spec.name, &ours, &theirs);
            metrics().shadow_read(&ns, if same { "same" } else { "different" }, 1);
            if !same {
                tracing::warn!(
                    namespace = ns.as_str(),
                    command = c.spec.name,
                    key = %String::from_utf8_lossy(&key(&c).unwrap_or_default()),
                    primary = ?ours,
                    mirror = ?theirs,
                    "shadow read differs"
                );
            }
        }
    });
    Some(())
}

/// Whether two replies to `command` say the same.
fn alike(command: &str, a: &Reply, b: &Reply) -> bool {
    if !UNORDERED.contains(&command) && command != "hgetall" {
        return a == b;
    }
    let items = |r: &Reply| -> Option<Vec<Reply>> {
        match r {
            Reply::Array(v) | Reply::Set(v) => Some(v.clone()),
            Reply::Map(p) => Some(p.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()),
            _ => None,
        }
    };
    let (Some(x), Some(y)) = (items(a), items(b)) else {
        return a == b;
    };
    let text = |v: Vec<Reply>, pairs: bool| {
        let mut t: Vec<String> = if pairs {
            v.chunks(2).map(|p| format!("{p:?}")).collect()
        } else {
            v.iter().map(|r| format!("{r:?}")).collect()
        };
        t.sort();
        t
    };
    let pairs = command == "hgetall";
    text(x, pairs) == text(y, pairs)
}

/// Keeps tracking on while shadow reads are (see `track`).
pub fn hold(m: &Arc<Mirrored>) {
    let on = m.shadow.get() > 0.0;
    let mut held = m.shadow_tracking.lock().unwrap_or_else(|e| e.into_inner());
    if on && held.is_none() {
        *held = Some(m.tracker.hold());
    } else if !on {
        *held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn set_and_hash_replies_compare_in_any_order() {
        let ab = Reply::Array(vec![b("a"), b("1"), b("b"), b("2")]);
        let ba = Reply::Array(vec![b("b"), b("2"), b("a"), b("1")]);
        assert!(alike("hgetall", &ab, &ba));
        assert!(alike("smembers", &ab, &ba));
        assert!(!alike("lrange", &ab, &ba));
        let swapped = Reply::Array(vec![b("a"), b("2"), b("b"), b("1")]);
        assert!(!alike("hgetall", &ab, &swapped));
        assert!(alike("get", &b("x"), &b("x")));
        assert!(!alike("get", &b("x"), &Reply::Nil));
    }
}
