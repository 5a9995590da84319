//! The map of a cluster: its masters (nodes with their pipes), which
//! master serves each slot, their replicas; the redirects a cluster answers
//! with; and, for the redis-shards backend, the fixed placement standing in
//! for slots.

use std::sync::{Arc, OnceLock};

use redis_protocol::redis_keyslot;

use super::UNSERVED;
use crate::backend::Command;
use crate::backend::redis::Idle;
use crate::backend::upstream::{Endpoint, Pipe};
use crate::wire::reply::Reply;

/// How a redis-shards backend places keys on its fixed servers: all that
/// the routing needs of it (`shards::Ring` implements it).
pub trait Placement: Send + Sync {
    /// The index of the server that holds `key`.
    fn shard(&self, key: &[u8]) -> u16;
    /// The hash tag's delimiters, for the CROSSSLOT hint.
    fn tag(&self) -> Option<(char, char)>;
    /// The same placement over only the servers still `live`.
    fn over(&self, live: &[bool]) -> Arc<dyn Placement>;
}

/// twemproxy's auto_eject_hosts, for a fixed map: a server failing
/// `failure_limit` times in a row leaves the ring for `retry_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub enabled: bool,
    pub failure_limit: u32,
    pub retry_timeout_ms: u64,
}

/// One master: its endpoint, its shared pipes (started on first use) and
/// connections kept for blocking commands.
pub(super) struct Node {
    pub(super) addr: String,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) pipes: [OnceLock<Pipe>; 2],
    pub(super) idle: Idle,
}

impl Node {
    pub(super) fn pipe(&self, resp3: bool) -> &Pipe {
        self.pipes[resp3 as usize].get_or_init(|| Pipe::start(self.endpoint.clone(), resp3))
    }
}

/// Which master serves each slot. Masters are in address order, so that a
/// SCAN cursor's node index means the same node across refreshes.
///
/// With a ring (the redis-shards backend) the map is fixed: a key's "slot"
/// is the index of its server, and `slots` maps each index to itself.
pub(super) struct Topology {
    pub(super) slots: Vec<u16>,
    pub(super) nodes: Vec<Arc<Node>>,
    pub(super) ring: Option<Arc<dyn Placement>>,
    /// Nodes ejected from a ring, by index (empty when none is).
    pub(super) out: Vec<bool>,
    /// Each master's replicas, by the master's index, with
    /// `read_from_replicas` (empty otherwise).
    pub(super) replicas: Vec<Vec<Arc<Node>>>,
}

impl Topology {
    /// The slot of a key: its hash slot in a cluster, its server's index
    /// on a ring.
    pub(super) fn slot(&self, key: &[u8]) -> u16 {
        match &self.ring {
            Some(r) => r.shard(key),
            None => redis_keyslot(key),
        }
    }

    /// Whether the keys of `cmds` (one command, or a transaction's
    /// commands together) are in more than one slot where keyway itself
    /// must refuse that: on a ring, whose servers do not know of each
    /// other. A cluster answers CROSSSLOT itself.
    pub(super) fn spread(&self, cmds: &[Command]) -> bool {
        if self.ring.is_none() {
            return false;
        }
        let mut slots = cmds.iter().flat_map(|c| {
            c.spec
                .key_positions(&c.args)
                .into_iter()
                .map(|p| self.slot(&c.args[p]))
        });
        let first = slots.next();
        slots.any(|s| Some(s) != first)
    }

    /// keyway's CROSSSLOT, for keys on different servers of a ring.
    pub(super) fn cross(&self, name: &str) -> Reply {
        let hint = match self.ring.as_ref().and_then(|r| r.tag()) {
            Some((a, b)) => format!("keys with the same {a}tag{b} stay together"),
            None => "set hash_tag to keep related keys together".to_string(),
        };
        Reply::error(format!(
            "CROSSSLOT Keys in request don't hash to the same server of backend '{name}' ({hint})"
        ))
    }

    /// Where a read of `slot` goes: one of its master's replicas, picked
    /// by `turn`, or the master when it has none.
    pub(super) fn reader_of(&self, slot: u16, turn: usize) -> Option<&Arc<Node>> {
        let i = *self.slots.get(slot as usize)? as usize;
        match self.replicas.get(i) {
            Some(r) if !r.is_empty() => r.get(turn % r.len()),
            _ => self.node_of(slot),
        }
    }

    pub(super) fn node_of(&self, slot: u16) -> Option<&Arc<Node>> {
        match self.slots.get(slot as usize) {
            Some(&i) if i != UNSERVED => self.nodes.get(i as usize),
            _ => None,
        }
    }

    /// The nodes whole-keyspace commands go to: every one not ejected.
    pub(super) fn serving(&self) -> impl Iterator<Item = (usize, &Arc<Node>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.out.get(*i).copied().unwrap_or(false))
    }

    pub(super) fn served(&self) -> usize {
        self.slots.iter().filter(|&&i| i != UNSERVED).count()
    }
}

/// A MOVED or ASK reply.
pub(super) struct Redirect {
    pub(super) ask: bool,
    pub(super) slot: u16,
    pub(super) host: String,
    pub(super) port: u16,
}

/// The redirect an error reply asks for, if it is one. Replies forwarded as
/// they came (`Reply::Raw`) still carry the `-` and line end.
pub(super) fn redirect_of(r: &Reply) -> Option<Redirect> {
    let text: &[u8] = match r {
        Reply::Error(e) => e,
        Reply::Raw(raw) => raw.strip_prefix(b"-")?,
        _ => return None,
    };
    let ask = if text.starts_with(b"MOVED ") {
        false
    } else if text.starts_with(b"ASK ") {
        true
    } else {
        return None;
    };
    let text = std::str::from_utf8(text).ok()?.trim_end();
    let mut words = text.split(' ').skip(1);
    let slot = words.next()?.parse().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    Some(Redirect {
        ask,
        slot,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: port.parse().ok()?,
    })
}

/// The slot of a command's first key, or None for a keyless command.
pub(super) fn slot_of(t: &Topology, cmd: &Command) -> Option<u16> {
    let p = *cmd.spec.key_positions(&cmd.args).first()?;
    Some(t.slot(&cmd.args[p]))
}

/// keyway's own error for a node it could not reach, given the node's
/// address so that the operator knows which one; true if `r` was one.
pub(super) fn name_unreachable(name: &str, r: &mut Reply, addr: &str) -> bool {
    if !unreachable(name, r) {
        return false;
    }
    if let Reply::Error(e) = r {
        *r = Reply::error(format!("{} (node {addr})", String::from_utf8_lossy(e)));
    }
    true
}

/// Whether `r` is keyway's own error for a node it could not reach.
pub(super) fn unreachable(name: &str, r: &Reply) -> bool {
    let prefix = format!("ERR backend '{name}' unavailable");
    matches!(r, Reply::Error(e) if e.starts_with(prefix.as_bytes()))
}
