//! Pub/sub inside the memory backend: a hub of subscribers, each fed
//! through its client's push channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Store;
use crate::backend::{BoxFuture, Command, Pushes, Subscriber};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::glob_match;

struct Sub {
    tag: usize,
    pushes: Pushes,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    /// Shard channels (SSUBSCRIBE): reached by SPUBLISH only.
    shard: HashSet<Bytes>,
}

#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    subs: RwLock<HashMap<u64, Sub>>,
}

fn push(kind: &'static str, items: impl IntoIterator<Item = Reply>) -> Reply {
    let mut v = vec![Reply::bulk(Bytes::from_static(kind.as_bytes()))];
    v.extend(items);
    Reply::Array(v)
}

impl Hub {
    /// Delivers a message; returns how many subscriptions received it.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for s in subs.values() {
            if s.channels.contains(channel) {
                n += 1;
                let m = push(
                    "message",
                    [Reply::Bulk(channel.clone()), Reply::Bulk(message.clone())],
                );
                let _ = s.pushes.send((s.tag, m));
            }
            for p in s.patterns.iter().filter(|p| glob_match(p, channel)) {
                n += 1;
                let m = push(
                    "pmessage",
                    [
                        Reply::Bulk(p.clone()),
                        Reply::Bulk(channel.clone()),
                        Reply::Bulk(message.clone()),
                    ],
                );
                let _ = s.pushes.send((s.tag, m));
            }
        }
        n
    }

    /// SPUBLISH: shard channels have no patterns.
    pub fn spublish(&self, channel: &Bytes, message: &Bytes) -> i64 {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for s in subs.values().filter(|s| s.shard.contains(channel)) {
            n += 1;
            let m = push(
                "smessage",
                [Reply::Bulk(channel.clone()), Reply::Bulk(message.clone())],
            );
            let _ = s.pushes.send((s.tag, m));
        }
        n
    }

    pub fn subscribe(self: &Arc<Hub>, tag: usize, pushes: Pushes) -> MemorySubscriber {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sub = Sub {
            tag,
            pushes,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard: HashSet::new(),
        };
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, sub);
        MemorySubscriber {
            hub: self.clone(),
            id,
        }
    }

    /// PUBSUB CHANNELS / NUMSUB / NUMPAT.
    pub fn pubsub(&self, a: &[Bytes]) -> CmdResult {
        let sub = crate::wire::util::subcommand(
            a,
            "PUBSUB",
            &[
                ("CHANNELS", 2, false),
                ("NUMSUB", 2, false),
                ("NUMPAT", 2, true),
                ("SHARDCHANNELS", 2, false),
                ("SHARDNUMSUB", 2, false),
                ("HELP", 2, true),
            ],
        )?;
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        match sub.as_str() {
            "CHANNELS" | "SHARDCHANNELS" if a.len() <= 3 => {
                let mut all: Vec<&Bytes> = if sub == "CHANNELS" {
                    subs.values().flat_map(|s| &s.channels).collect()
                } else {
                    subs.values().flat_map(|s| &s.shard).collect()
                };
                all.sort_unstable();
                all.dedup();
                let pattern = a.get(2);
                Ok(Reply::Array(
                    all.into_iter()
                        .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
                        .map(|c| Reply::Bulk(c.clone()))
                        .collect(),
                ))
            }
            "NUMSUB" | "SHARDNUMSUB" => {
                let mut out = Vec::new();
                for ch in &a[2..] {
                    let n = if sub == "NUMSUB" {
                        subs.values().filter(|s| s.channels.contains(ch)).count()
                    } else {
                        subs.values().filter(|s| s.shard.contains(ch)).count()
                    };
                    out.push(Reply::Bulk(ch.clone()));
                    out.push(Reply::Int(n as i64));
                }
                Ok(Reply::Array(out))
            }
            // Patterns, not subscriptions to them: one pattern subscribed
            // by two clients counts once, as in Redis.
            "NUMPAT" => {
                let patterns: HashSet<&Bytes> = subs.values().flat_map(|s| &s.patterns).collect();
                Ok(Reply::Int(patterns.len() as i64))
            }
            "HELP" => Ok(Reply::help(&[
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Prints this help.",
            ])),
            // CHANNELS with more than a pattern: Redis's own check.
            _ => Err(CmdError::SubcommandSyntax {
                cmd: "PUBSUB".into(),
                sub: crate::wire::error::lossy(&a[1], 128),
            }),
        }
    }
}

pub fn publish(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(s.hub.publish(&a[1], &a[2])))
}

pub fn spublish(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(s.hub.spublish(&a[1], &a[2])))
}

pub fn pubsub(s: &Store, a: &[Bytes]) -> CmdResult {
    s.hub.pubsub(a)
}

/// One client's subscriptions; dropping it unsubscribes from everything.
pub struct MemorySubscriber {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for MemorySubscriber {
    fn drop(&mut self) {
        self.hub
            .subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Subscriber for MemorySubscriber {
    fn send(&mut self, cmd: Command) -> BoxFuture<'_, Result<(), CmdError>> {
        let mut subs = self.hub.subs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = subs.get_mut(&self.id) {
            let name = cmd.spec.name;
            // Which set, and whether the command adds to it.
            let (kind, set, add) = match name {
                "subscribe" => ("subscribe", 0, true),
                "unsubscribe" => ("unsubscribe", 0, false),
                "psubscribe" => ("psubscribe", 1, true),
                "ssubscribe" => ("ssubscribe", 2, true),
                "sunsubscribe" => ("sunsubscribe", 2, false),
                _ => ("punsubscribe", 1, false),
            };
            for target in &cmd.args[1..] {
                let targets = match set {
                    0 => &mut s.channels,
                    1 => &mut s.patterns,
                    _ => &mut s.shard,
                };
                if add {
                    targets.insert(target.clone());
                } else {
                    targets.remove(target);
                }
                // Shard channels are counted apart, as in Redis.
                let count = if set == 2 {
                    s.shard.len()
                } else {
                    s.channels.len() + s.patterns.len()
                } as i64;
                let confirm = push(kind, [Reply::Bulk(target.clone()), Reply::Int(count)]);
                let _ = s.pushes.send((s.tag, confirm));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
