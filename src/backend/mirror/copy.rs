//! Copying keys from a mirrored namespace's backend to its mirror, as a
//! backfill does for every key and the replaying task does for the keys of
//! a write the mirror refused (a RENAME across Redis Cluster slots): read
//! on the primary, queued for the mirror in order among the replayed
//! writes, read again when a live write raced it (see `track`).
//!
//! A copy is Redis's own serialized value (DUMP, then RESTORE ... REPLACE
//! ABSTTL) when both sides speak it; with memcached on either side, the
//! string a key holds and its expiry (GET, PTTL, then SET ... PXAT), other
//! types being left out and counted as skipped. A key gone from the
//! primary is deleted on the mirror.

use std::time::Duration;

use bytes::Bytes;

use super::Mirrored;
use crate::backend::Command;
use crate::wire::command;
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;
use crate::wire::util::{bytes, now_ms};

/// Times a key is read again when writes keep racing it.
const ATTEMPTS: u32 = 100;

/// What a copy did.
#[derive(Debug, Default)]
pub struct Copied {
    pub done: u64,
    pub bytes: u64,
    pub retried: u64,
    pub skipped: u64,
    pub errors: u64,
    /// The last error the mirror answered.
    pub error: Option<String>,
}

/// A command keyway sends itself, by name.
pub fn internal(name: &str, args: Vec<Bytes>) -> Command {
    Command::internal(command::known(name), args)
}

/// Whether copies go as DUMP/RESTORE (else as strings).
fn serialized(m: &Mirrored) -> bool {
    m.primary().supports(command::known("dump")) && m.target().supports(command::known("restore"))
}

/// Copies keys from the primary to the mirror, reading again those a write
/// raced; tracking must be on (see `track`).
pub async fn copy(m: &Mirrored, mut keys: Vec<Bytes>) -> Result<Copied, CmdError> {
    let dump = serialized(m);
    let mut c = Copied::default();
    for attempt in 0..ATTEMPTS {
        if keys.is_empty() {
            return Ok(c);
        }
        if attempt > 0 {
            c.retried += keys.len() as u64;
            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(20)))).await;
        }
        m.watch(&keys);
        let reads: Vec<Command> = keys
            .iter()
            .flat_map(|k| {
                let value = if dump {
                    internal("dump", vec![bytes("DUMP"), k.clone()])
                } else {
                    internal("get", vec![bytes("GET"), k.clone()])
                };
                [internal("pttl", vec![bytes("PTTL"), k.clone()]), value]
            })
            .collect();
        let replies = m.primary().execute(reads).await;
        let now = now_ms();
        let mut again = Vec::new();
        let mut skipped = 0;
        let mut size = 0;
        let copied = m
            .settle(&keys, |seen| {
                let mut out = Vec::new();
                for (i, (k, w)) in keys.iter().zip(seen).enumerate() {
                    let (ttl, value) = (replies.get(2 * i), replies.get(2 * i + 1));
                    let gone =
                        matches!(value, Some(Reply::Nil)) || matches!(ttl, Some(Reply::Int(-2)));
                    if w.dirty || (w.waiters && !gone) {
                        again.push(k.clone());
                        continue;
                    }
                    match (ttl, value) {
                        _ if gone => out.push(internal("del", vec![bytes("DEL"), k.clone()])),
                        (Some(Reply::Int(ttl)), Some(Reply::Bulk(v))) => {
                            size += v.len();
                            out.push(written(k, v, *ttl, now, dump));
                        }
                        // Not a string (memcached on one side), or unreadable.
                        _ => skipped += 1,
                    }
                }
                out
            })
            .await?
            .await
            .map_err(|_| CmdError::msg("ERR the mirror's queue is closed"))?;
        let errors = copied
            .iter()
            .filter(|r| matches!(r, Reply::Error(_)))
            .count();
        if let Some(Reply::Error(e)) = copied.iter().find(|r| matches!(r, Reply::Error(_))) {
            c.error = Some(String::from_utf8_lossy(e).into_owned());
        }
        c.done += (keys.len() - again.len()) as u64;
        c.bytes += size as u64;
        c.skipped += skipped;
        c.errors += errors as u64;
        keys = again;
    }
    // Written to all the time: left for the mirror alone, and counted.
    c.errors += keys.len() as u64;
    Ok(c)
}

/// The command that writes a copy on the mirror.
fn written(key: &Bytes, value: &Bytes, ttl: i64, now: u64, dump: bool) -> Command {
    let at = (ttl >= 0).then(|| Bytes::from(now.saturating_add(ttl as u64).to_string()));
    if dump {
        let mut args = vec![
            bytes("RESTORE"),
            key.clone(),
            at.clone().unwrap_or_else(|| bytes("0")),
            value.clone(),
            bytes("REPLACE"),
        ];
        if at.is_some() {
            args.push(bytes("ABSTTL"));
        }
        internal("restore", args)
    } else {
        let mut args = vec![bytes("SET"), key.clone(), value.clone()];
        if let Some(at) = at {
            args.push(bytes("PXAT"));
            args.push(at);
        }
        internal("set", args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_the_absolute_expiry() {
        let k = Bytes::from_static(b"k");
        let v = Bytes::from_static(b"v");
        let words = |c: Command| {
            c.args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            words(written(&k, &v, -1, 1000, true)),
            "RESTORE k 0 v REPLACE"
        );
        assert_eq!(
            words(written(&k, &v, 500, 1000, true)),
            "RESTORE k 1500 v REPLACE ABSTTL"
        );
        assert_eq!(words(written(&k, &v, -1, 1000, false)), "SET k v");
        assert_eq!(
            words(written(&k, &v, 500, 1000, false)),
            "SET k v PXAT 1500"
        );
    }
}
