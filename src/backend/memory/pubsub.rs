//! Pub/sub inside the memory backend: a hub of subscribers, each fed
//! through its client's push channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Store;
use crate::backend::{BoxFuture, Command, Pushes, Subscriber};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::util::{glob_match, is};

struct Sub {
    tag: usize,
    pushes: Pushes,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
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

    pub fn subscribe(self: &Arc<Hub>, tag: usize, pushes: Pushes) -> MemorySubscriber {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sub = Sub {
            tag,
            pushes,
            channels: HashSet::new(),
            patterns: HashSet::new(),
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
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let sub = &a[1];
        if is(sub, "CHANNELS") && a.len() <= 3 {
            let mut all: Vec<&Bytes> = subs.values().flat_map(|s| &s.channels).collect();
            all.sort_unstable();
            all.dedup();
            let pattern = a.get(2);
            Ok(Reply::Array(
                all.into_iter()
                    .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
                    .map(|c| Reply::Bulk(c.clone()))
                    .collect(),
            ))
        } else if is(sub, "NUMSUB") {
            let mut out = Vec::new();
            for ch in &a[2..] {
                let n = subs.values().filter(|s| s.channels.contains(ch)).count();
                out.push(Reply::Bulk(ch.clone()));
                out.push(Reply::Int(n as i64));
            }
            Ok(Reply::Array(out))
        } else if is(sub, "NUMPAT") && a.len() == 2 {
            Ok(Reply::Int(
                subs.values().map(|s| s.patterns.len() as i64).sum(),
            ))
        } else {
            Err(CmdError::UnknownSubcommand {
                cmd: "PUBSUB".into(),
                sub: String::from_utf8_lossy(sub).into_owned(),
            })
        }
    }
}

pub fn publish(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(s.hub.publish(&a[1], &a[2])))
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
            let (kind, patterns, add) = match name {
                "subscribe" => ("subscribe", false, true),
                "unsubscribe" => ("unsubscribe", false, false),
                "psubscribe" => ("psubscribe", true, true),
                _ => ("punsubscribe", true, false),
            };
            for target in &cmd.args[1..] {
                let set = if patterns {
                    &mut s.patterns
                } else {
                    &mut s.channels
                };
                if add {
                    set.insert(target.clone());
                } else {
                    set.remove(target);
                }
                let count = (s.channels.len() + s.patterns.len()) as i64;
                let confirm = push(kind, [Reply::Bulk(target.clone()), Reply::Int(count)]);
                let _ = s.pushes.send((s.tag, confirm));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
