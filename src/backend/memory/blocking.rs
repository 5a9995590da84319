//! Blocking commands on the memory backend (BLPOP, BRPOP, BLMOVE,
//! BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP), as Redis serves them.
//!
//! A command that finds nothing registers a waiter on each of its keys, in
//! arrival order. After every batch that wrote keys, waiters on those keys
//! are served in the order they blocked, each getting what it would have
//! got had it been sent then, until the key has nothing more for them. A
//! waiter whose client went away is skipped and takes nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::Memory;
use crate::backend::Command;
use crate::wire::command::CommandSpec;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;

/// WAIT on the memory backend, which has no replicas: 0 at once when no
/// replica is asked for, else 0 after the timeout (0: never), as a Redis
/// without replicas answers.
async fn wait(cmd: &Command) -> Reply {
    let args = &cmd.args;
    let Some(n) = crate::wire::protocol::parse_i64(&args[1]) else {
        return CmdError::NotInteger.into();
    };
    let ms = match crate::wire::protocol::parse_i64(&args[2]) {
        None => return CmdError::msg("ERR timeout is not an integer or out of range").into(),
        Some(t) if t < 0 => return CmdError::msg("ERR timeout is negative").into(),
        Some(t) => t as u64,
    };
    if n > 0 {
        let sleep = async {
            if ms == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(ms)).await;
        };
        let _waiting = Waiting::new(cmd.unblock.as_deref());
        tokio::select! {
            _ = sleep => {}
            error = unblocked(cmd.unblock.as_deref()) => if error {
                return Reply::error(UNBLOCKED);
            },
        }
    }
    Reply::Int(0)
}

/// What a command unblocked with ERROR answers.
const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// Completes when CLIENT UNBLOCK asks (true: with the error); never
/// without a line to the client.
async fn unblocked(line: Option<&crate::backend::Unblock>) -> bool {
    match line {
        Some(u) => u.asked().await,
        None => std::future::pending().await,
    }
}

/// Says, while it lives, that the wait can be ended by CLIENT UNBLOCK.
struct Waiting<'a>(Option<&'a crate::backend::Unblock>);

impl<'a> Waiting<'a> {
    fn new(line: Option<&'a crate::backend::Unblock>) -> Waiting<'a> {
        if let Some(u) = line {
            u.asked.store(0, std::sync::atomic::Ordering::Release);
            u.waiting.store(true, std::sync::atomic::Ordering::Release);
        }
        Waiting(line)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(u) = self.0 {
            u.waiting.store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

struct Waiter {
    spec: &'static CommandSpec,
    args: Vec<Bytes>,
    keys: Vec<Bytes>,
    reply: Option<oneshot::Sender<Reply>>,
}

#[derive(Default)]
struct Queues {
    next_id: u64,
    by_key: HashMap<Bytes, VecDeque<u64>>,
    waiters: HashMap<u64, Waiter>,
}

#[derive(Default)]
pub struct Waiters {
    queues: Mutex<Queues>,
    /// Waiters registered; lets writers skip the lock when there are none.
    count: AtomicUsize,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unregister(&self, q: &mut Queues, id: u64) -> Option<Waiter> {
        let w = q.waiters.remove(&id)?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        for k in &w.keys {
            if let Some(ids) = q.by_key.get_mut(k) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    q.by_key.remove(k);
                }
            }
        }
        Some(w)
    }
}

/// Removes a waiter whose command was dropped (its client went away).
struct Registration {
    waiters: Arc<Waiters>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut q = self.waiters.lock();
        self.waiters.unregister(&mut q, self.id);
    }
}

/// The timeout argument of a blocking command, in seconds (0: forever).
pub fn timeout_arg(a: &[u8]) -> CmdResult<f64> {
    let t = std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .ok_or_else(|| CmdError::msg("ERR timeout is not a float or out of range"))?;
    if t < 0.0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    if t > 1e12 {
        return Err(CmdError::msg("ERR timeout is out of range"));
    }
    Ok(t)
}

/// Where a blocking command keeps its timeout (seconds) and keys; None for
/// an XREAD or XREADGROUP without BLOCK, which does not block.
fn timeout_and_keys(spec: &CommandSpec, a: &[Bytes]) -> CmdResult<Option<(f64, Vec<Bytes>)>> {
    if matches!(spec.name, "xread" | "xreadgroup") {
        let r = super::streams::parse_read(a, spec.name == "xreadgroup")?;
        return Ok(r.block.map(|ms| {
            let keys = a[r.streams..r.streams + r.n].to_vec();
            (ms as f64 / 1000.0, keys)
        }));
    }
    let (t, keys) = match spec.name {
        "blmove" | "brpoplpush" => (a.last(), vec![a[1].clone()]),
        "blmpop" | "bzmpop" => {
            let n = crate::wire::util::int_arg(&a[2])?.max(0) as usize;
            (
                a.get(1),
                a.get(3..3 + n).map(<[Bytes]>::to_vec).unwrap_or_default(),
            )
        }
        _ => (a.last(), a[1..a.len() - 1].to_vec()),
    };
    let t = t.ok_or(CmdError::Syntax)?;
    Ok(Some((timeout_arg(t)?, keys)))
}

/// Whether a reply means "nothing there": the command would block.
fn is_wrongtype(r: &Reply) -> bool {
    matches!(r, Reply::Error(e) if e.starts_with(b"WRONGTYPE"))
}

fn is_empty(r: &Reply) -> bool {
    matches!(r, Reply::Nil | Reply::NilArray)
}

impl Memory {
    /// Runs a blocking command: at once if it finds something, otherwise
    /// when a write serves it or its timeout passes.
    pub(super) async fn block(&self, cmd: &Command) -> Reply {
        if cmd.spec.name == "wait" {
            return wait(cmd).await;
        }
        let (t, keys) = match timeout_and_keys(cmd.spec, &cmd.args) {
            Ok(Some(x)) => x,
            // XREAD without BLOCK.
            Ok(None) => return self.attempt(cmd.spec, &cmd.args),
            Err(e) => return e.into(),
        };
        let rx = {
            let mut q = self.waiters.lock();
            // Tried under the waiters' lock, so no write can slip between
            // the attempt and the registration unseen.
            let r = self.attempt(cmd.spec, &cmd.args);
            if !is_empty(&r) {
                return r;
            }
            // XREAD's `$` is the last ID now, not when a write wakes it.
            let args = if cmd.spec.name == "xread" {
                super::streams::resolve_dollars(&self.store, &cmd.args)
            } else {
                cmd.args.clone()
            };
            let (tx, rx) = oneshot::channel();
            q.next_id += 1;
            let id = q.next_id;
            for k in &keys {
                q.by_key.entry(k.clone()).or_default().push_back(id);
            }
            q.waiters.insert(
                id,
                Waiter {
                    spec: cmd.spec,
                    args,
                    keys,
                    reply: Some(tx),
                },
            );
            self.waiters.count.fetch_add(1, Ordering::Relaxed);
            (rx, id)
        };
        let (mut rx, id) = rx;
        let registration = Registration {
            waiters: self.waiters.clone(),
            id,
        };
        let waiting = Waiting::new(cmd.unblock.as_deref());
        let wait = async {
            if t == 0.0 {
                (&mut rx).await.ok()
            } else {
                let d = Duration::from_secs_f64(t);
                tokio::time::timeout(d, &mut rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        // CLIENT UNBLOCK ends the wait as a timeout would, or with an error.
        let (served, error) = tokio::select! {
            s = wait => (s, false),
            e = unblocked(cmd.unblock.as_deref()) => (None, e),
        };
        drop(waiting);
        if let Some(r) = served {
            return r;
        }
        // Timed out or unblocked: unregister, unless a write served us in
        // the meantime (then the client gets what it was served).
        {
            let mut q = self.waiters.lock();
            self.waiters.unregister(&mut q, registration.id);
        }
        match rx.try_recv() {
            Ok(r) => r,
            Err(_) if error => Reply::error(UNBLOCKED),
            Err(_) => timeout_reply(),
        }
    }

    /// The command's non-blocking attempt, under the gate held exclusively.
    fn attempt(&self, spec: &'static CommandSpec, args: &[Bytes]) -> Reply {
        let cmd = Command::internal(spec, args.to_vec());
        self.run(std::slice::from_ref(&cmd))
            .pop()
            .unwrap_or(Reply::Nil)
    }

    /// Serves the waiters on keys a batch wrote, in the order they blocked.
    pub(super) fn serve_after(&self, batch: &[Command]) {
        if self.waiters.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut written = super::written_keys(batch);
        let mut q = self.waiters.lock();
        // A flush or swap touches every key: each waiter looks again.
        if batch
            .iter()
            .any(|c| matches!(c.spec.name, "flushdb" | "flushall" | "swapdb"))
        {
            written.extend(q.by_key.keys().cloned());
        }
        let mut work: VecDeque<Bytes> = written.into();
        while let Some(key) = work.pop_front() {
            while let Some(&id) = q.by_key.get(&key).and_then(|ids| ids.front()) {
                let Some(w) = q.waiters.get(&id) else {
                    break;
                };
                if w.reply.as_ref().is_none_or(|tx| tx.is_closed()) {
                    self.waiters.unregister(&mut q, id);
                    continue;
                }
                let (spec, args) = (w.spec, w.args.clone());
                let mut r = self.attempt(spec, &args);
                let gone = matches!(&r, Reply::Error(e) if e.starts_with(b"NOGROUP") || e.starts_with(b"WRONGTYPE"));
                if spec.name == "xreadgroup" && gone {
                    // Its stream or group went: Redis unblocks the reader.
                    let stream = self.store.read(&key, |e| {
                        e.is_some_and(|e| matches!(e.value, super::store::ValueRef::Stream(_)))
                    });
                    r = Reply::error(if stream {
                        "NOGROUP the consumer group this client was blocked on no longer exists"
                    } else {
                        "UNBLOCKED the stream key no longer exists"
                    });
                } else if matches!(spec.name, "blmove" | "brpoplpush")
                    && is_wrongtype(&r)
                    && self.store.read(&args[1], |e| {
                        e.is_some_and(|e| matches!(e.value, super::store::ValueRef::List(_)))
                    })
                {
                    // The source has an element but the destination holds
                    // another type: Redis answers WRONGTYPE and unblocks,
                    // the element staying where it was.
                } else if is_empty(&r) || is_wrongtype(&r) {
                    // A key that now holds another type (a transaction
                    // replaced it) leaves the client blocked, as in Redis,
                    // which serves only keys of the type waited for.
                    break;
                }
                if let Some(mut w) = self.waiters.unregister(&mut q, id) {
                    // A move pushed to its destination: serve that key too.
                    if matches!(spec.name, "blmove" | "brpoplpush") {
                        work.push_back(args[2].clone());
                    }
                    if let Some(tx) = w.reply.take() {
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }
}

/// The timeout reply: a null bulk for the moves, a null array otherwise.
/// What a blocking command answers when its wait ends without an
/// element: a null array for every kind, BLMOVE and BRPOPLPUSH included
/// (whose element would be a bulk string), as Redis's timeout reply is.
fn timeout_reply() -> Reply {
    Reply::NilArray
}
