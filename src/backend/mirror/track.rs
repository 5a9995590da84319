//! Which keys live writes touch while a migration copies or compares a
//! namespace, so that a copy never overwrites a newer write and a
//! comparison never reports a write that was on its way.
//!
//! A copy of key K is read from the primary (DUMP, PTTL) and queued to the
//! mirror behind the writes already queued. Every write the primary
//! finished before the read began is queued before the copy and is in it,
//! so replaying it first is harmless (the copy replaces it). A write that
//! finishes after the copy is queued was applied after the read, so it
//! belongs after the copy. The one unsafe case is a write in flight while
//! the read runs: it may be in the copy and replayed after it again (an
//! INCR counted twice), or not in it and replayed before it (lost). So the
//! migration *watches* K before its read, and *settles* K after it: if a
//! write to K was in flight when the watch began, or began before the
//! settle, K is dirty and read again later; otherwise the copy is queued
//! under the same lock that writes take as they begin, so no write can
//! slip between the check and the queueing.
//!
//! Writes are tracked only while a migration runs (one atomic add and
//! subtract per batch otherwise). Turning tracking on waits until the
//! writes that began untracked have finished, the usual store-then-load
//! handshake on two sequentially consistent atomics.
//!
//! A blocking pop waiting on an empty key is no hazard (it changes K only
//! after a write that pushes to K, which the watch sees), and it may wait
//! forever: it is counted apart as a waiter, and the caller decides
//! (settling a key that does not exist is safe: popping nothing twice
//! changes nothing).
//!
//! A write to several keys (RENAME, SUNIONSTORE, LMOVE, a script) reads
//! keys the mirror may not have received yet: their keys are kept as
//! *touched*, for the migration to copy again once its pass is over. (A
//! write the mirror refused has its keys copied at once: see `repair` in
//! the parent module.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::super::Command;
use crate::wire::command::BLOCKING;

#[derive(Default)]
pub struct Tracker {
    /// Migrations that need writes tracked now.
    users: AtomicUsize,
    /// Write batches in flight that began while nothing was tracked.
    untracked: AtomicUsize,
    state: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    /// Keys of tracked writes in flight: (writes, blocking pops).
    inflight: HashMap<Bytes, (u32, u32)>,
    watched: HashMap<Bytes, Watch>,
    touched: HashSet<Bytes>,
}

/// What happened to a watched key between its watch and its settle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// A write was in flight or began: read the key again.
    pub dirty: bool,
    /// Only blocking pops were in flight (see the module's doc).
    pub waiters: bool,
}

/// One write batch in flight, tracked or not; ends when dropped (after the
/// batch's writes were queued for the mirror).
pub enum InFlight {
    None,
    Untracked(Arc<Tracker>),
    Tracked(Arc<Tracker>, Vec<(Bytes, bool)>),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        match self {
            InFlight::None => {}
            InFlight::Untracked(t) => {
                t.untracked.fetch_sub(1, SeqCst);
            }
            InFlight::Tracked(t, keys) => {
                let mut s = t.lock();
                for (k, blocking) in keys.drain(..) {
                    if let Some(n) = s.inflight.get_mut(&k) {
                        if blocking {
                            n.1 = n.1.saturating_sub(1);
                        } else {
                            n.0 = n.0.saturating_sub(1);
                        }
                        if *n == (0, 0) {
                            s.inflight.remove(&k);
                        }
                    }
                }
            }
        }
    }
}

/// Tracking on while it lives.
pub struct Tracking(Arc<Tracker>);

impl Drop for Tracking {
    fn drop(&mut self) {
        if self.0.users.fetch_sub(1, SeqCst) == 1 {
            let mut s = self.0.lock();
            s.watched.clear();
            s.touched.clear();
        }
    }
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns tracking on, once every write that began untracked is done.
    /// Blocking pops never count as untracked (see the module's doc), so
    /// this waits for a backend's reply at most.
    pub async fn enable(self: &Arc<Self>) -> Tracking {
        self.users.fetch_add(1, SeqCst);
        let on = Tracking(self.clone());
        while self.untracked.load(SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        on
    }

    /// Waits until no write is in flight, tracked or not (blocking pops
    /// aside): a wrapper that a reload replaced has then queued its last.
    pub async fn idle(&self) {
        for _ in 0..10_000 {
            if self.untracked.load(SeqCst) == 0
                && self.lock().inflight.values().all(|&(w, _)| w == 0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Turns tracking on at once, for shadow reads: keys are dirty until
    /// the writes that began untracked are done (see `watch`).
    pub fn hold(self: &Arc<Self>) -> Tracking {
        self.users.fetch_add(1, SeqCst);
        Tracking(self.clone())
    }

    pub fn active(&self) -> bool {
        self.users.load(SeqCst) > 0
    }

    /// Marks the start of a batch's writes (the commands the mirror takes).
    pub fn begin<'a>(self: &Arc<Self>, writes: impl Iterator<Item = &'a Command>) -> InFlight {
        let writes: Vec<&Command> = writes.collect();
        if writes.is_empty() {
            return InFlight::None;
        }
        // Counted first, then the flag read: see `enable`.
        self.untracked.fetch_add(1, SeqCst);
        if self.users.load(SeqCst) == 0 {
            if writes.iter().all(|c| c.spec.has(BLOCKING)) {
                self.untracked.fetch_sub(1, SeqCst);
                return InFlight::None;
            }
            return InFlight::Untracked(self.clone());
        }
        self.untracked.fetch_sub(1, SeqCst);
        let mut keys = Vec::new();
        let mut s = self.lock();
        for c in writes {
            let blocking = c.spec.has(BLOCKING);
            let at = c.spec.key_positions(&c.args);
            for &p in &at {
                let Some(k) = c.args.get(p) else { continue };
                let n = s.inflight.entry(k.clone()).or_default();
                if blocking {
                    n.1 += 1;
                } else {
                    n.0 += 1;
                }
                if let Some(w) = s.watched.get_mut(k) {
                    w.dirty = true;
                }
                if at.len() > 1 {
                    s.touched.insert(k.clone());
                }
                keys.push((k.clone(), blocking));
            }
        }
        InFlight::Tracked(self.clone(), keys)
    }

    /// Starts watching keys before they are read from the primary.
    pub fn watch(&self, keys: &[Bytes]) {
        let mut s = self.lock();
        for k in keys {
            let (writes, pops) = s.inflight.get(k).copied().unwrap_or_default();
            // A write that began untracked (tracking just turned on, for
            // shadow reads) may be on its way too.
            let w = Watch {
                dirty: writes > 0 || self.untracked.load(SeqCst) > 0,
                waiters: pops > 0,
            };
            s.watched.insert(k.clone(), w);
        }
    }

    /// Ends the watch of `keys` and calls `then` with what happened to
    /// each, under the lock that writes take as they begin.
    pub fn settle<R>(&self, keys: &[Bytes], then: impl FnOnce(Vec<Watch>) -> R) -> R {
        let mut s = self.lock();
        let seen = keys
            .iter()
            .map(|k| {
                s.watched.remove(k).unwrap_or(Watch {
                    dirty: true,
                    waiters: false,
                })
            })
            .collect();
        then(seen)
    }

    /// The touched keys (see the module's doc), emptied.
    pub fn take_touched(&self) -> Vec<Bytes> {
        self.lock().touched.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::command;

    fn cmd(words: &str) -> Command {
        let args: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        Command::internal(command::lookup(&args[0]).expect("known"), args)
    }

    fn key(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn a_write_in_flight_or_begun_during_the_watch_makes_the_key_dirty() {
        let t = Arc::new(Tracker::default());
        // Untracked while no migration runs; enabling waits for it.
        let before = t.begin([cmd("SET a 1")].iter());
        assert!(matches!(before, InFlight::Untracked(_)));
        let waiting = {
            let t = t.clone();
            tokio::spawn(async move { t.enable().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "enable waits for untracked writes");
        drop(before);
        let on = waiting.await.expect("joined");

        let a_in_flight = t.begin([cmd("INCR a")].iter());
        t.watch(&[key("a"), key("b"), key("c")]);
        drop(a_in_flight);
        let b_begun = t.begin([cmd("SET b 1")].iter());
        drop(b_begun);
        let seen = t.settle(&[key("a"), key("b"), key("c")], |w| w);
        assert_eq!(
            seen.iter().map(|w| w.dirty).collect::<Vec<_>>(),
            vec![true, true, false]
        );
        // Settled keys are no longer watched: a second settle is dirty.
        assert!(t.settle(&[key("c")], |w| w[0].dirty));

        // A blocking pop in flight is a waiter, not a write.
        let pop = t.begin([cmd("BLPOP q 0")].iter());
        t.watch(&[key("q")]);
        assert_eq!(
            t.settle(&[key("q")], |w| w[0]),
            Watch {
                dirty: false,
                waiters: true
            }
        );
        drop(pop);

        // Writes to several keys are kept to copy again.
        drop(t.begin([cmd("RENAME x y"), cmd("SET z 1")].iter()));
        let mut touched = t.take_touched();
        touched.sort();
        assert_eq!(touched, vec![key("x"), key("y")]);
        drop(on);
        assert!(!t.active());
        assert!(matches!(
            t.begin([cmd("SET a 1")].iter()),
            InFlight::Untracked(_)
        ));
    }
}
