//! Moving a namespace with its data: the backfill that copies every key of
//! a mirrored namespace from its backend to its mirror, and the
//! verification that compares both sides, while clients keep working.
//!
//! Both walk the source with SCAN (the namespace's part of it only) in
//! batches. Each batch is watched (`backend::mirror::track`) before it is
//! read and settled after: keys a live write raced are read again, the
//! rest is queued to the mirror in order among the replayed writes, so a
//! copy never overwrites a newer write and a comparison never reports a
//! write still on its way. Keys written together with others during the
//! pass (RENAME, SUNIONSTORE...) are copied again at its end.
//!
//! How a key is copied is `backend::mirror::copy`'s. A source without
//! SCAN (memcached) is listed with `Backend::list_keys`. The comparison
//! reads each key's type, a digest of its value and its TTL on both sides.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::Command;
use crate::backend::mirror::copy::{copy as mirror_copy, internal};
use crate::backend::mirror::{MigrationStatus, Mirrored};
use crate::proxy::keyspace::backend_pattern;
use crate::proxy::router::{Namespace, Router};
use crate::wire::command;
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;
use crate::wire::util::{bytes, now_ms, random_below};

/// Times a key is read again when writes keep racing it.
const ATTEMPTS: u32 = 100;
/// Passes over the keys written with others during a backfill.
const CATCH_UP_PASSES: usize = 10;
/// Listings again of a source without SCAN (see `backfill`), at most.
const LISTINGS: usize = 2;
/// Keys named in a verification's report, at most.
const REPORTED: usize = 20;

/// What an operator asked for.
#[derive(Clone, Debug)]
pub enum Task {
    Backfill {
        /// Keys per second, at most (0: as fast as it goes).
        rate: u64,
        batch: usize,
        /// Resume from the saved cursor instead of starting over.
        resume: bool,
    },
    Verify {
        /// The fraction of keys compared, in (0, 1].
        sample: f64,
        /// The TTL difference tolerated, in ms.
        tolerance: u64,
        batch: usize,
    },
}

/// Starts `task` on namespace `ns` in the background.
pub fn start(router: Arc<Router>, ns: &str, task: Task) -> Result<(), CmdError> {
    let (ns, m) = mirrored(&router, ns)?;
    let name = match task {
        Task::Backfill { .. } => "backfill",
        Task::Verify { .. } => "verify",
    };
    if !m.primary().supports(command::known("scan")) && !m.primary().can_list_keys() {
        return Err(CmdError::msg(format!(
            "ERR namespace '{}' is on a {} backend, which cannot list its keys: \
             nothing to copy or compare (its new writes are mirrored)",
            ns.name,
            m.primary().kind()
        )));
    }
    {
        let mut s = m.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = s.running {
            return Err(CmdError::msg(format!(
                "ERR a {r} is already running on namespace '{}'",
                ns.name
            )));
        }
        let cursor = match task {
            Task::Backfill { resume: true, .. } => std::mem::take(&mut s.cursor),
            _ => String::new(),
        };
        *s = MigrationStatus {
            phase: if name == "backfill" {
                "backfilling"
            } else {
                "verifying"
            },
            running: Some(name),
            started_ms: now_ms(),
            cursor,
            stop: false,
            ..MigrationStatus::default()
        };
    }
    tokio::spawn(async move {
        let outcome = match &task {
            Task::Backfill { rate, batch, .. } => backfill(&router, &ns, &m, *rate, *batch).await,
            Task::Verify {
                sample,
                tolerance,
                batch,
            } => verify(&router, &ns, &m, *sample, *tolerance, *batch).await,
        };
        m.update(|s| {
            s.running = None;
            s.finished_ms = now_ms();
            s.phase = match (&outcome, s.stop) {
                (Err(e), _) => {
                    s.error = Some(e.to_string());
                    "failed"
                }
                (Ok(()), true) => "stopped",
                (Ok(()), false) if name == "backfill" => "backfilled",
                (Ok(()), false) if s.differences == 0 => "verified",
                (Ok(()), false) => "differs",
            };
        });
    });
    Ok(())
}

/// Asks the task running on `ns` to stop after its current batch.
pub fn stop(router: &Router, ns: &str) -> Result<bool, CmdError> {
    let (_, m) = mirrored(router, ns)?;
    let mut s = m.status.lock().unwrap_or_else(|e| e.into_inner());
    s.stop = s.running.is_some();
    Ok(s.stop)
}

/// The namespace's move as INFO and `KEYWAY MIGRATE ... STATUS` show it.
pub fn status(router: &Router, ns: &str) -> Result<MigrationStatus, CmdError> {
    Ok(mirrored(router, ns)?.1.status())
}

fn mirrored(router: &Router, name: &str) -> Result<(Arc<Namespace>, Arc<Mirrored>), CmdError> {
    let ns = router
        .namespaces
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| CmdError::msg(format!("ERR no namespace named '{name}'")))?;
    let m = ns.mirrored.clone().ok_or_else(|| {
        CmdError::msg(format!(
            "ERR namespace '{name}' has no mirror: give it `mirror = \"<backend>\"` in the \
             config and reload first"
        ))
    })?;
    Ok((ns.clone(), m))
}

/// One SCAN step over the namespace's part of the source: the next cursor
/// ("0" at the end) and the keys, as the backend names them.
async fn scan_step(
    router: &Router,
    ns: &Arc<Namespace>,
    m: &Mirrored,
    cursor: &str,
    count: usize,
) -> Result<(String, Vec<Bytes>), CmdError> {
    let (pattern, _) = backend_pattern(ns, None);
    if !m.primary().supports(command::known("scan")) {
        let at = cursor.parse().unwrap_or(0);
        let (next, keys) = m
            .primary()
            .list_keys(at)
            .await
            .map_err(|e| CmdError::msg(format!("ERR cannot list the source's keys: {e}")))?;
        let scope = ns.scope();
        let keys = keys.into_iter().filter(|k| k.starts_with(&scope));
        return Ok((next.to_string(), owned(router, ns, keys.collect())));
    }
    let cmd = internal(
        "scan",
        vec![
            bytes("SCAN"),
            Bytes::copy_from_slice(cursor.as_bytes()),
            bytes("MATCH"),
            pattern,
            bytes("COUNT"),
            Bytes::from(count.to_string()),
        ],
    );
    let reply = m.primary().execute(vec![cmd]).await.into_iter().next();
    let Some(Reply::Array(mut parts)) = reply else {
        return Err(CmdError::msg(format!(
            "ERR SCAN on the source failed: {}",
            describe(reply.as_ref())
        )));
    };
    let keys = match parts.pop() {
        Some(Reply::Array(items) | Reply::Set(items)) => items
            .into_iter()
            .filter_map(|r| match r {
                Reply::Bulk(k) => Some(k),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let keys = owned(router, ns, keys);
    let next = match parts.pop() {
        Some(Reply::Bulk(c)) => String::from_utf8_lossy(&c).into_owned(),
        _ => "0".into(),
    };
    Ok((next, keys))
}

/// The namespace's own keys among a backend's (not a longer prefix's, nor
/// another namespace's on the same backend).
fn owned(router: &Router, ns: &Arc<Namespace>, keys: Vec<Bytes>) -> Vec<Bytes> {
    keys.into_iter()
        .filter(|k| ns.foreign_owner(k).is_none())
        .filter(|k| {
            ns.from_backend(k)
                .is_some_and(|c| router.route(&c).is_some_and(|o| Arc::ptr_eq(o, ns)))
        })
        .collect()
}

fn describe(r: Option<&Reply>) -> String {
    match r {
        Some(Reply::Error(e)) => String::from_utf8_lossy(e).into_owned(),
        Some(other) => format!("unexpected reply {other:?}"),
        None => "no reply".into(),
    }
}

async fn backfill(
    router: &Router,
    ns: &Arc<Namespace>,
    m: &Arc<Mirrored>,
    rate: u64,
    batch: usize,
) -> Result<(), CmdError> {
    let _tracking = m.tracking().await;
    if ns.owns_backend {
        if let Some(Reply::Int(n)) = m
            .primary()
            .execute(vec![internal("dbsize", vec![bytes("DBSIZE")])])
            .await
            .into_iter()
            .next()
        {
            m.update(|s| s.keys_total = n.max(0) as u64);
        }
    }
    let mut cursor = m.status().cursor;
    if cursor.is_empty() {
        cursor = "0".into();
    }
    let started = std::time::Instant::now();
    let pace = Pace { rate, started };
    // A listing (memcached's LRU crawler) may miss an item that memcached
    // moves between its LRU segments meanwhile: listed again until a
    // listing brings no key not yet copied. SCAN needs no second pass.
    let listed = !m.primary().supports(command::known("scan"));
    let mut seen = HashSet::new();
    if !walk(
        router,
        ns,
        m,
        cursor,
        batch,
        &pace,
        listed.then_some(&mut seen),
    )
    .await?
    {
        return Ok(());
    }
    if listed {
        for _ in 0..LISTINGS {
            let before = seen.len();
            if !walk(router, ns, m, "0".into(), batch, &pace, Some(&mut seen)).await? {
                return Ok(());
            }
            if seen.len() == before {
                break;
            }
        }
    }
    for _ in 0..CATCH_UP_PASSES {
        let again = m.take_touched();
        if again.is_empty() {
            break;
        }
        for chunk in again.chunks(batch.max(1)) {
            copy(m, chunk.to_vec()).await?;
        }
    }
    m.update(|s| s.cursor.clear());
    Ok(())
}

/// How fast a backfill may go.
struct Pace {
    /// Keys per second, at most (0: as fast as it goes).
    rate: u64,
    started: std::time::Instant,
}

/// One walk over the source from `cursor`, copying what it lists; with
/// `seen`, only keys not copied before (by their hash), which it records.
/// False when stopped.
async fn walk(
    router: &Router,
    ns: &Arc<Namespace>,
    m: &Arc<Mirrored>,
    mut cursor: String,
    batch: usize,
    pace: &Pace,
    mut seen: Option<&mut HashSet<u64>>,
) -> Result<bool, CmdError> {
    loop {
        if m.status().stop {
            return Ok(false);
        }
        let (next, mut keys) = scan_step(router, ns, m, &cursor, batch).await?;
        if let Some(seen) = seen.as_deref_mut() {
            keys.retain(|k| seen.insert(key_hash(k)));
        }
        // A step may list a whole server (memcached): copied in batches.
        for chunk in keys.chunks(batch.max(1)) {
            if m.status().stop {
                return Ok(false);
            }
            copy(m, chunk.to_vec()).await?;
            if pace.rate > 0 {
                // Ahead of the rate: wait until the keys done are due.
                let done = m.status().keys_done as f64;
                let due = Duration::from_secs_f64(done / pace.rate as f64);
                if let Some(wait) = due.checked_sub(pace.started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        cursor = next;
        m.update(|s| s.cursor = cursor.clone());
        if cursor == "0" {
            return Ok(true);
        }
    }
}

fn key_hash(k: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

/// Copies keys to the mirror (see `backend::mirror::copy`), counted in
/// the namespace's status.
async fn copy(m: &Mirrored, keys: Vec<Bytes>) -> Result<(), CmdError> {
    let c = mirror_copy(m, keys).await?;
    m.update(|s| {
        s.keys_done += c.done;
        s.bytes_done += c.bytes;
        s.skipped += c.skipped;
        s.errors += c.errors;
        s.retried += c.retried;
        if c.error.is_some() {
            s.error = c.error;
        }
    });
    Ok(())
}

/// The reads that give a key's value in a form both sides agree on.
fn value_reads(kind: &[u8], key: &Bytes) -> Vec<Command> {
    let k = key.clone();
    match kind {
        b"string" => vec![internal("get", vec![bytes("GET"), k])],
        b"list" => vec![internal(
            "lrange",
            vec![bytes("LRANGE"), k, bytes("0"), bytes("-1")],
        )],
        b"set" => vec![internal("smembers", vec![bytes("SMEMBERS"), k])],
        b"zset" => vec![internal(
            "zrange",
            vec![
                bytes("ZRANGE"),
                k,
                bytes("0"),
                bytes("-1"),
                bytes("WITHSCORES"),
            ],
        )],
        b"hash" => vec![internal("hgetall", vec![bytes("HGETALL"), k])],
        b"stream" => vec![internal(
            "xrange",
            vec![bytes("XRANGE"), k, bytes("-"), bytes("+")],
        )],
        _ => Vec::new(),
    }
}

/// A digest of a value read by `value_reads`, the same whatever order a
/// set's members or a hash's fields came in.
fn digest(kind: &[u8], r: Option<&Reply>) -> u64 {
    fn flat(r: &Reply, out: &mut Vec<Vec<u8>>) {
        match r {
            Reply::Bulk(b) => out.push(b.to_vec()),
            Reply::Int(n) => out.push(n.to_string().into_bytes()),
            Reply::Double(d) => out.push(d.to_string().into_bytes()),
            Reply::Nil => out.push(b"(nil)".to_vec()),
            Reply::Array(items) | Reply::Set(items) => items.iter().for_each(|i| flat(i, out)),
            Reply::Map(pairs) | Reply::Pairs(pairs) => pairs.iter().for_each(|(k, v)| {
                flat(k, out);
                flat(v, out)
            }),
            other => out.push(format!("{other:?}").into_bytes()),
        }
    }
    let mut items = Vec::new();
    if let Some(r) = r {
        flat(r, &mut items);
    }
    match kind {
        b"set" => items.sort(),
        b"hash" => {
            let mut pairs: Vec<Vec<Vec<u8>>> = items.chunks(2).map(|c| c.to_vec()).collect();
            pairs.sort();
            items = pairs.into_iter().flatten().collect();
        }
        _ => {}
    }
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    items.hash(&mut h);
    h.finish()
}

/// The reads that describe keys on one side: TYPE (when `typed`), PTTL
/// and the value as `kinds` says its type is; and how many value reads
/// each key has.
fn description_reads(keys: &[Bytes], kinds: &[Bytes], typed: bool) -> (Vec<Command>, Vec<usize>) {
    let mut asks = Vec::new();
    let mut reads = Vec::new();
    for (k, kind) in keys.iter().zip(kinds) {
        if typed {
            asks.push(internal("type", vec![bytes("TYPE"), k.clone()]));
        }
        asks.push(internal("pttl", vec![bytes("PTTL"), k.clone()]));
        let r = value_reads(kind, k);
        reads.push(r.len());
        asks.extend(r);
    }
    (asks, reads)
}

/// Each key's (type, TTL, digest) from the replies to `description_reads`;
/// without TYPE (memcached), a key that reads as nil is `none`.
fn described(replies: &[Reply], kinds: &[Bytes], typed: bool, reads: &[usize]) -> Vec<Described> {
    let mut out = Vec::new();
    let mut at = 0;
    for (kind, &n) in kinds.iter().zip(reads) {
        let mut kind = kind.clone();
        if typed {
            kind = match replies.get(at) {
                Some(Reply::Status(s) | Reply::Bulk(s)) => s.clone(),
                _ => bytes("none"),
            };
            at += 1;
        }
        let ttl = match replies.get(at) {
            Some(Reply::Int(t)) => *t,
            _ => -2,
        };
        let value = if n == 0 { None } else { replies.get(at + 1) };
        if ttl == -2 || (!typed && matches!(value, Some(Reply::Nil))) {
            kind = bytes("none");
        }
        let sum = digest(&kind, value);
        out.push((kind, ttl, sum));
        at += 1 + n;
    }
    out
}

type Described = (Bytes, i64, u64);

async fn verify(
    router: &Router,
    ns: &Arc<Namespace>,
    m: &Arc<Mirrored>,
    sample: f64,
    tolerance: u64,
    batch: usize,
) -> Result<(), CmdError> {
    let _tracking = m.tracking().await;
    let mut cursor = "0".to_string();
    loop {
        if m.status().stop {
            return Ok(());
        }
        let (next, keys) = scan_step(router, ns, m, &cursor, batch).await?;
        let keys: Vec<Bytes> = keys
            .into_iter()
            .filter(|_| sample >= 1.0 || (random_below(1_000_000) as f64) < sample * 1e6)
            .collect();
        for chunk in keys.chunks(batch.max(1)) {
            compare(m, chunk.to_vec(), tolerance).await?;
        }
        cursor = next;
        m.update(|s| s.cursor = cursor.clone());
        if cursor == "0" {
            return Ok(());
        }
    }
}

/// Compares keys on both sides, reading again those a write raced.
async fn compare(m: &Mirrored, mut keys: Vec<Bytes>, tolerance: u64) -> Result<(), CmdError> {
    for attempt in 0..ATTEMPTS {
        if keys.is_empty() {
            return Ok(());
        }
        if attempt > 0 {
            m.update(|s| s.retried += keys.len() as u64);
            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(20)))).await;
        }
        m.watch(&keys);
        let typed = m.primary().supports(command::known("type"));
        let kinds: Vec<Bytes> = if typed {
            let asks = keys
                .iter()
                .map(|k| internal("type", vec![bytes("TYPE"), k.clone()]))
                .collect();
            m.primary()
                .execute(asks)
                .await
                .into_iter()
                .map(|r| match r {
                    Reply::Status(s) | Reply::Bulk(s) => s,
                    _ => bytes("none"),
                })
                .collect()
        } else {
            keys.iter().map(|_| bytes("string")).collect()
        };
        let (asks, reads) = description_reads(&keys, &kinds, false);
        let here = described(&m.primary().execute(asks).await, &kinds, false, &reads);
        // The mirror is read in order behind the writes queued so far, as
        // the primary was read: a write raced neither read, or the key is
        // read again.
        let mirror_typed = m.target().supports(command::known("type"));
        let mut again = Vec::new();
        let mut clean = Vec::new();
        let mut layout = Vec::new();
        let replies = m
            .settle(&keys, |seen| {
                let mut asks = Vec::new();
                for (i, w) in seen.into_iter().enumerate() {
                    if w.dirty || w.waiters {
                        again.push(keys[i].clone());
                        continue;
                    }
                    clean.push(i);
                    let (a, r) = description_reads(
                        std::slice::from_ref(&keys[i]),
                        std::slice::from_ref(&here[i].0),
                        mirror_typed,
                    );
                    asks.extend(a);
                    layout.extend(r);
                }
                asks
            })
            .await?
            .await
            .map_err(|_| CmdError::msg("ERR the mirror's queue is closed"))?;
        let clean_keys: Vec<Bytes> = clean.iter().map(|&i| keys[i].clone()).collect();
        let clean_kinds: Vec<Bytes> = clean.iter().map(|&i| here[i].0.clone()).collect();
        let there = described(&replies, &clean_kinds, mirror_typed, &layout);
        let mut differing = Vec::new();
        for (j, &i) in clean.iter().enumerate() {
            let (kind, ttl, sum) = &here[i];
            let (kind2, ttl2, sum2) = &there[j];
            let why = if kind != kind2 {
                Some(format!(
                    "type {} here, {} on the mirror",
                    String::from_utf8_lossy(kind),
                    String::from_utf8_lossy(kind2)
                ))
            } else if sum != sum2 {
                Some("value".to_string())
            } else if (*ttl < 0) != (*ttl2 < 0) || ttl.abs_diff(*ttl2) > tolerance {
                Some(format!("ttl {ttl} ms here, {ttl2} ms on the mirror"))
            } else {
                None
            };
            if let Some(why) = why {
                differing.push(format!(
                    "{}: {why}",
                    String::from_utf8_lossy(&clean_keys[j])
                ));
            }
        }
        let n = differing.len() as u64;
        let done = clean.len() as u64;
        m.update(|s| {
            s.keys_done += done;
            s.differences += n;
            let room = REPORTED.saturating_sub(s.differing.len());
            s.differing.extend(differing.into_iter().take(room));
        });
        keys = again;
    }
    m.update(|s| s.errors += keys.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn digests_ignore_the_order_of_sets_and_hashes_only() {
        let ab = Reply::Array(vec![b("a"), b("1"), b("b"), b("2")]);
        let ba = Reply::Array(vec![b("b"), b("2"), b("a"), b("1")]);
        assert_eq!(digest(b"hash", Some(&ab)), digest(b"hash", Some(&ba)));
        assert_eq!(digest(b"set", Some(&ab)), digest(b"set", Some(&ba)));
        assert_ne!(digest(b"list", Some(&ab)), digest(b"list", Some(&ba)));
        // A field's value moving to another field is a difference.
        let swapped = Reply::Array(vec![b("a"), b("2"), b("b"), b("1")]);
        assert_ne!(digest(b"hash", Some(&ab)), digest(b"hash", Some(&swapped)));
        assert_ne!(
            digest(b"string", Some(&b("x"))),
            digest(b"list", Some(&b("x")))
        );
    }
}
