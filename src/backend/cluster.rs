//! The `redis-cluster` backend: a Redis Cluster (or Valkey cluster), its
//! slot map learned from CLUSTER SLOTS on the seed nodes.
//!
//! Each command goes to the master serving its key's hash slot, on that
//! node's multiplexed pipe (see [`crate::upstream`]); a client's batch is
//! split per node and the parts run concurrently. MGET, MSET, DEL, UNLINK,
//! EXISTS and TOUCH whose keys hash to different slots are split per slot
//! (a cluster refuses keys of two slots in one command, even on one node)
//! and merged, as they are across backends. Other multi-key commands go to
//! their first key's node, which answers CROSSSLOT when their keys span
//! slots, as a cluster client would hear. Whole-keyspace commands (DBSIZE,
//! KEYS, SCAN, FLUSHDB, RANDOMKEY, SCRIPT) go to every master.
//!
//! A MOVED reply points the slot at the node named, refreshes the map (at
//! most every [`REFRESH_GAP`]) and resends the command there; an ASK reply
//! resends it once, after ASKING, to the node importing the slot. Both mean
//! the command did not run, so resending is never a blind retry; inside a
//! transaction the redirect is not followed, and EXEC aborts. A node that
//! cannot be reached also refreshes the map (a replica may have taken
//! over), and the map is refreshed every [`REFRESH_EVERY`] regardless.
//!
//! The redis-shards backend ([`super::shards`]) is this one with a fixed
//! map: its servers stand for masters, a key's "slot" is its server's
//! index, nothing redirects and nothing is reread; and since standalone
//! servers cannot refuse keys of another server, keyway refuses them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::redis_keyslot;
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{info, warn};

use super::redis::{
    Idle, RedisSubscriber, Url, append, call_pinned, connection_problems, dedicated,
    default_command_timeout, default_connect_timeout, encode, parse_url, tls, unavailable_error,
};
use super::shards::{Ring, ShardsConfig};
use super::{Backend, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::command::{BLOCKING, CommandSpec, READ, WRITE};
use crate::dispatch::{Merge, join_all, merge_kind, merge_parts};
use crate::error::CmdError;
use crate::keyspace::{scan_parts, scan_reply};
use crate::metrics::metrics;
use crate::reply::Reply;
use crate::upstream::{Conn, Endpoint, Pipe, unavailable};
use crate::util::{bytes, is};

const SLOTS: usize = 16384;
/// A slot no master serves.
const UNSERVED: u16 = u16::MAX;
/// Redirects followed for one command before giving up.
const REDIRECTS: usize = 5;
/// Refreshes of the slot map that failures and redirects ask for are at
/// least this far apart: during a resharding every command may be moved.
const REFRESH_GAP: Duration = Duration::from_millis(200);
/// The slot map is refreshed this often even when nothing asks.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// SCAN cursors carry the node's index above this many bits of the node's
/// own cursor.
const NODE_SHIFT: u32 = 40;
/// Dedicated connections kept per node for blocking commands.
const IDLE_DEDICATED: usize = 4;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seed nodes, `redis://[user:password@]host:port` (`rediss://` for
    /// TLS); the other nodes are learned from the cluster. User, password
    /// and TLS apply to every node.
    pub nodes: Vec<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_command_timeout")]
    pub command_timeout_ms: u64,
    /// PEM file of the CAs to trust; without it rediss:// uses the system's.
    pub tls_ca_file: Option<String>,
    /// Serve reads (commands that only read) from the masters' replicas,
    /// round robin, falling back to the master when a replica cannot be
    /// reached. Replication is asynchronous: a read may miss a write made
    /// just before it.
    #[serde(default)]
    pub read_from_replicas: bool,
}

impl BackendSpec for ClusterConfig {
    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    fn build(&self, name: &str) -> Arc<dyn Backend> {
        Arc::new(ClusterBackend::new(name, self))
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.nodes.is_empty() {
            out.push((
                "nodes".into(),
                "must list at least one redis://host:port".into(),
            ));
        }
        let mut schemes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            match parse_url(n) {
                Ok(u) if u.db != 0 => out.push((
                    format!("nodes[{i}]"),
                    format!(
                        "'{n}' names database {}; a cluster has only database 0",
                        u.db
                    ),
                )),
                Ok(u) => schemes.push(u.tls),
                Err(e) => out.push((format!("nodes[{i}]"), e)),
            }
        }
        let tls = schemes.first().copied().unwrap_or(false);
        if schemes.iter().any(|t| *t != tls) {
            out.push((
                "nodes".into(),
                "mixes redis:// and rediss://; every node is reached the same way".into(),
            ));
        }
        out.extend(connection_problems(
            self.connect_timeout_ms,
            self.command_timeout_ms,
            self.tls_ca_file.as_deref(),
            (!schemes.is_empty() && !tls).then_some("the nodes are"),
        ));
        out
    }
}

/// One master: its endpoint, its shared pipes (started on first use) and
/// connections kept for blocking commands.
struct Node {
    addr: String,
    endpoint: Arc<Endpoint>,
    pipes: [OnceLock<Pipe>; 2],
    idle: Idle,
}

impl Node {
    fn pipe(&self, resp3: bool) -> &Pipe {
        self.pipes[resp3 as usize].get_or_init(|| Pipe::start(self.endpoint.clone(), resp3))
    }
}

/// Which master serves each slot. Masters are in address order, so that a
/// SCAN cursor's node index means the same node across refreshes.
///
/// With a ring (the redis-shards backend) the map is fixed: a key's "slot"
/// is the index of its server, and `slots` maps each index to itself.
struct Topology {
    slots: Vec<u16>,
    nodes: Vec<Arc<Node>>,
    ring: Option<Arc<Ring>>,
    /// Nodes ejected from a ring, by index (empty when none is).
    out: Vec<bool>,
    /// Each master's replicas, by the master's index, with
    /// `read_from_replicas` (empty otherwise).
    replicas: Vec<Vec<Arc<Node>>>,
}

impl Topology {
    /// The slot of a key: its hash slot in a cluster, its server's index
    /// on a ring.
    fn slot(&self, key: &[u8]) -> u16 {
        match &self.ring {
            Some(r) => r.shard(key),
            None => redis_keyslot(key),
        }
    }

    /// Whether the keys of `cmds` (one command, or a transaction's
    /// commands together) are in more than one slot where keyway itself
    /// must refuse that: on a ring, whose servers do not know of each
    /// other. A cluster answers CROSSSLOT itself.
    fn spread(&self, cmds: &[Command]) -> bool {
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
    fn cross(&self, name: &str) -> Reply {
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
    fn reader_of(&self, slot: u16, turn: usize) -> Option<&Arc<Node>> {
        let i = *self.slots.get(slot as usize)? as usize;
        match self.replicas.get(i) {
            Some(r) if !r.is_empty() => r.get(turn % r.len()),
            _ => self.node_of(slot),
        }
    }

    fn node_of(&self, slot: u16) -> Option<&Arc<Node>> {
        match self.slots.get(slot as usize) {
            Some(&i) if i != UNSERVED => self.nodes.get(i as usize),
            _ => None,
        }
    }

    /// The nodes whole-keyspace commands go to: every one not ejected.
    fn serving(&self) -> impl Iterator<Item = (usize, &Arc<Node>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.out.get(*i).copied().unwrap_or(false))
    }

    fn served(&self) -> usize {
        self.slots.iter().filter(|&&i| i != UNSERVED).count()
    }
}

/// A MOVED or ASK reply.
struct Redirect {
    ask: bool,
    slot: u16,
    host: String,
    port: u16,
}

/// The redirect an error reply asks for, if it is one. Replies forwarded as
/// they came (`Reply::Raw`) still carry the `-` and line end.
fn redirect_of(r: &Reply) -> Option<Redirect> {
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
fn slot_of(t: &Topology, cmd: &Command) -> Option<u16> {
    let p = *cmd.spec.key_positions(&cmd.args).first()?;
    Some(t.slot(&cmd.args[p]))
}

/// keyway's own error for a node it could not reach, given the node's
/// address so that the operator knows which one; true if `r` was one.
fn name_unreachable(name: &str, r: &mut Reply, addr: &str) -> bool {
    if !unreachable(name, r) {
        return false;
    }
    if let Reply::Error(e) = r {
        *r = Reply::error(format!("{} (node {addr})", String::from_utf8_lossy(e)));
    }
    true
}

/// Whether `r` is keyway's own error for a node it could not reach.
fn unreachable(name: &str, r: &Reply) -> bool {
    let prefix = format!("ERR backend '{name}' unavailable");
    matches!(r, Reply::Error(e) if e.starts_with(prefix.as_bytes()))
}

/// A redis-shards backend's servers and their failures.
struct Fixed {
    config: ShardsConfig,
    /// Each server's consecutive failures, in config order.
    failures: Vec<AtomicU32>,
    /// Which servers are ejected now (with `auto_eject_hosts`).
    out: Mutex<Vec<bool>>,
}

struct Inner {
    name: String,
    /// "redis-cluster", or "redis-shards" for a fixed map.
    kind: &'static str,
    /// A redis-shards backend's settings: its map is never reread, only
    /// rebuilt when a server is ejected or comes back.
    fixed: Option<Fixed>,
    seeds: Vec<(String, u16)>,
    username: Option<String>,
    password: Option<String>,
    tls: bool,
    ca_file: Option<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    topology: RwLock<Option<Arc<Topology>>>,
    /// Every node seen, by address: a node keeps its pipes across refreshes.
    known: Mutex<HashMap<String, Arc<Node>>>,
    /// Held while refreshing; when the last refresh ended.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
    last_error: Mutex<String>,
    /// The periodic refresh, started with the first map.
    refresher: OnceLock<()>,
    /// A background refresh is on its way (see `refresh_soon`).
    refresh_queued: AtomicBool,
    /// `read_from_replicas`, and the replica the next read goes to.
    read_replicas: bool,
    next_replica: AtomicUsize,
}

pub struct ClusterBackend {
    inner: Arc<Inner>,
}

impl ClusterBackend {
    pub fn new(name: &str, c: &ClusterConfig) -> ClusterBackend {
        // Validation has checked the urls; seeds that do not parse are left
        // out, and with none left every command says so.
        let urls: Vec<_> = c.nodes.iter().filter_map(|n| parse_url(n).ok()).collect();
        let first = urls.first();
        ClusterBackend {
            inner: Arc::new(Inner {
                seeds: urls.iter().map(|u| (u.host.clone(), u.port)).collect(),
                username: first.and_then(|u| u.username.clone()),
                password: first.and_then(|u| u.password.clone()),
                tls: first.is_some_and(|u| u.tls),
                read_replicas: c.read_from_replicas,
                ..Inner::new(
                    name,
                    "redis-cluster",
                    c.tls_ca_file.clone(),
                    c.connect_timeout_ms,
                    c.command_timeout_ms,
                )
            }),
        }
    }

    /// A redis-shards backend: `urls` are its servers, in config order, and
    /// `ring` says which one holds each key.
    pub fn fixed(name: &str, c: &ShardsConfig, urls: Vec<Url>, ring: Ring) -> ClusterBackend {
        let mut inner = Inner::new(
            name,
            "redis-shards",
            c.tls_ca_file.clone(),
            c.connect_timeout_ms,
            c.command_timeout_ms,
        );
        let nodes: Vec<Arc<Node>> = urls.iter().map(|u| inner.node_for(u)).collect();
        let n = nodes.len();
        let t = Arc::new(Topology {
            slots: (0..n as u16).collect(),
            nodes,
            ring: Some(Arc::new(ring)),
            out: Vec::new(),
            replicas: Vec::new(),
        });
        inner.topology = RwLock::new(Some(t));
        inner.fixed = Some(Fixed {
            config: c.clone(),
            failures: (0..n).map(|_| AtomicU32::new(0)).collect(),
            out: Mutex::new(vec![false; n]),
        });
        ClusterBackend {
            inner: Arc::new(inner),
        }
    }
}

impl Inner {
    /// No seeds, credentials or map yet: the constructors fill them in.
    fn new(
        name: &str,
        kind: &'static str,
        ca_file: Option<String>,
        connect_timeout_ms: u64,
        command_timeout_ms: u64,
    ) -> Inner {
        Inner {
            name: name.to_string(),
            kind,
            fixed: None,
            seeds: Vec::new(),
            username: None,
            password: None,
            tls: false,
            ca_file,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            command_timeout: Duration::from_millis(command_timeout_ms),
            topology: RwLock::new(None),
            known: Mutex::new(HashMap::new()),
            refreshed: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(String::new()),
            refresher: OnceLock::new(),
            refresh_queued: AtomicBool::new(false),
            read_replicas: false,
            next_replica: AtomicUsize::new(0),
        }
    }

    fn current(&self) -> Option<Arc<Topology>> {
        self.topology.read().ok().and_then(|t| t.clone())
    }

    /// The node at `host:port`, made on first sight, reached as the seeds
    /// are.
    fn node(&self, host: &str, port: u16) -> Arc<Node> {
        self.node_for(&Url {
            tls: self.tls,
            host: host.to_string(),
            port,
            username: self.username.clone(),
            password: self.password.clone(),
            db: 0,
        })
    }

    /// The node at `u`, made on first sight.
    fn node_for(&self, u: &Url) -> Arc<Node> {
        let addr = format!("{}:{}", u.host, u.port);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .entry(addr.clone())
            .or_insert_with(|| {
                Arc::new(Node {
                    endpoint: Arc::new(Endpoint {
                        name: self.name.clone(),
                        host: u.host.clone(),
                        port: u.port,
                        username: u.username.clone(),
                        password: u.password.clone(),
                        db: u.db,
                        tls: u.tls.then(|| tls(&u.host, self.ca_file.as_deref())),
                        connect_timeout: self.connect_timeout,
                        command_timeout: self.command_timeout,
                        sentinel: None,
                        readonly: self.read_replicas,
                        up: Default::default(),
                        last_error: Default::default(),
                    }),
                    addr,
                    pipes: [OnceLock::new(), OnceLock::new()],
                    idle: Mutex::new([Vec::new(), Vec::new()]),
                })
            })
            .clone()
    }

    /// Counts a ring server's failure (or success, which clears the count);
    /// with `auto_eject_hosts`, `server_failure_limit` failures in a row
    /// take it off the ring for `server_retry_timeout_ms`, as twemproxy
    /// does, and its keys go to the other servers meanwhile.
    fn observe(self: &Arc<Self>, node: &Node, failed: bool) {
        let Some(f) = self.fixed.as_ref().filter(|f| f.config.auto_eject_hosts) else {
            return;
        };
        let Some(i) = self.current().and_then(|t| {
            t.nodes
                .iter()
                .position(|n| std::ptr::eq(Arc::as_ptr(n), node))
        }) else {
            return;
        };
        let Some(count) = f.failures.get(i) else {
            return;
        };
        if !failed {
            if count.load(Ordering::Relaxed) != 0 {
                count.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        if n < f.config.server_failure_limit {
            return;
        }
        count.store(0, Ordering::Relaxed);
        let retry = Duration::from_millis(f.config.server_retry_timeout_ms);
        warn!(
            backend = self.name.as_str(),
            server = node.addr.as_str(),
            failures = n,
            retry_ms = f.config.server_retry_timeout_ms,
            "server ejected from the ring"
        );
        self.set_out(i, true);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(retry).await;
            if let Some(inner) = weak.upgrade() {
                info!(
                    backend = inner.name.as_str(),
                    "ejected server back on the ring"
                );
                inner.set_out(i, false);
            }
        });
    }

    /// Ejects server `i` of a ring, or takes it back, and rebuilds the map.
    fn set_out(&self, i: usize, out: bool) {
        let (Some(f), Some(t)) = (&self.fixed, self.current()) else {
            return;
        };
        let mut flags = f.out.lock().unwrap_or_else(|e| e.into_inner());
        if flags.get(i) == Some(&out) {
            return;
        }
        if let Some(flag) = flags.get_mut(i) {
            *flag = out;
        }
        let live: Vec<bool> = flags.iter().map(|o| !o).collect();
        let next = Topology {
            slots: t.slots.clone(),
            nodes: t.nodes.clone(),
            ring: Some(Arc::new(Ring::new(&f.config, &live))),
            out: flags.clone(),
            replicas: Vec::new(),
        };
        if let Ok(mut cur) = self.topology.write() {
            *cur = Some(Arc::new(next));
        }
    }

    /// The master to send a read to when `node`, a replica, could not be
    /// reached for it (`r` says so); None when `node` is a master.
    fn master_of_read(&self, node: &Arc<Node>, c: &Command, r: &Reply) -> Option<Arc<Node>> {
        if !self.read_replicas || !unreachable(&self.name, r) {
            return None;
        }
        let t = self.current()?;
        if t.nodes.iter().any(|m| Arc::ptr_eq(m, node)) {
            return None;
        }
        t.node_of(slot_of(&t, c)?).cloned()
    }

    /// The redirect a reply asks for; a fixed map has none to follow.
    fn redirect(&self, r: &Reply) -> Option<Redirect> {
        match self.fixed {
            Some(_) => None,
            None => redirect_of(r),
        }
    }

    /// The slot map, read from the cluster on first use.
    async fn topology(self: &Arc<Self>) -> Result<Arc<Topology>, String> {
        match self.current() {
            Some(t) => Ok(t),
            None => self.refresh().await,
        }
    }

    /// Reads the slot map from the first node that answers: the known
    /// masters, then the seeds. A refresh that ended less than
    /// [`REFRESH_GAP`] ago stands in for a new one.
    async fn refresh(self: &Arc<Self>) -> Result<Arc<Topology>, String> {
        if self.fixed.is_some() {
            return self.current().ok_or_else(|| "no servers".to_string());
        }
        let asked = Instant::now();
        let mut refreshed = self.refreshed.lock().await;
        // One that ended while this caller waited, or just before, answers
        // for it too: with seeds that do not answer, callers must not queue
        // up behind one connect timeout each.
        if let Some(at) = *refreshed {
            if at >= asked || at.elapsed() < REFRESH_GAP {
                return self.current().ok_or_else(|| {
                    self.last_error
                        .lock()
                        .map(|e| e.clone())
                        .unwrap_or_default()
                });
            }
        }
        let mut candidates: Vec<(String, u16)> = self
            .current()
            .map(|t| {
                t.nodes
                    .iter()
                    .map(|n| (n.endpoint.host.clone(), n.endpoint.port))
                    .collect()
            })
            .unwrap_or_default();
        for s in &self.seeds {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        let mut reasons = Vec::new();
        for (host, port) in candidates {
            let read = self.read_slots(&host, port).await;
            metrics().slot_map_read(&self.name, read.is_ok());
            match read {
                Ok(t) => {
                    let t = Arc::new(t);
                    if let Ok(mut cur) = self.topology.write() {
                        let was = cur.as_ref().map(|c| (c.nodes.len(), c.served()));
                        if was != Some((t.nodes.len(), t.served())) {
                            info!(
                                backend = self.name.as_str(),
                                masters = t.nodes.len(),
                                slots = t.served(),
                                "cluster slot map read"
                            );
                        }
                        *cur = Some(t.clone());
                    }
                    // Nodes that left the map are forgotten, and their pipes
                    // close once no batch in flight holds them.
                    if let Ok(mut known) = self.known.lock() {
                        known.retain(|_, n| {
                            t.nodes
                                .iter()
                                .chain(t.replicas.iter().flatten())
                                .any(|m| Arc::ptr_eq(m, n))
                        });
                    }
                    *refreshed = Some(Instant::now());
                    self.start_refresher();
                    return Ok(t);
                }
                Err(e) => reasons.push(format!("{host}:{port}: {e}")),
            }
        }
        *refreshed = Some(Instant::now());
        let reason = if reasons.is_empty() {
            "no seed nodes".to_string()
        } else {
            format!("no node gave the slot map ({})", reasons.join("; "))
        };
        warn!(backend = self.name.as_str(), %reason, "cluster slot map unavailable");
        if let Ok(mut last) = self.last_error.lock() {
            last.clone_from(&reason);
        }
        match self.current() {
            // An old map beats none: most of it is likely still right.
            Some(t) => Ok(t),
            None => Err(reason),
        }
    }

    async fn read_slots(&self, host: &str, port: u16) -> Result<Topology, String> {
        let node = self.node(host, port);
        let mut conn = node.endpoint.connect(false).await?;
        let ask = crate::protocol::encode_multibulk(&[bytes("CLUSTER"), bytes("SLOTS")]);
        let reply = conn
            .call(&ask, &[true], Some(self.command_timeout))
            .await?
            .pop();
        let ranges = match reply {
            Some(Reply::Array(ranges)) => ranges,
            Some(Reply::Error(e)) => {
                return Err(format!(
                    "not a cluster node: {}",
                    String::from_utf8_lossy(&e)
                ));
            }
            _ => return Err("unexpected CLUSTER SLOTS reply".into()),
        };
        let mut slots = vec![UNSERVED; SLOTS];
        let mut masters: Vec<(String, u16)> = Vec::new();
        let mut owned: Vec<(usize, usize, (String, u16))> = Vec::new();
        let mut replicas: Vec<((String, u16), (String, u16))> = Vec::new();
        for range in ranges {
            let Reply::Array(parts) = range else {
                return Err("unexpected CLUSTER SLOTS entry".into());
            };
            let (Some(Reply::Int(start)), Some(Reply::Int(end)), Some(Reply::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err("unexpected CLUSTER SLOTS entry".into());
            };
            let (Some(Reply::Bulk(h)), Some(Reply::Int(p))) = (master.first(), master.get(1))
            else {
                return Err("unexpected CLUSTER SLOTS node".into());
            };
            // An empty host is the node we asked, which does not know its
            // own address; "?" is a node with no address to give.
            let h = match &h[..] {
                b"" => host.to_string(),
                b"?" => continue,
                h => String::from_utf8_lossy(h).into_owned(),
            };
            let (Ok(start), Ok(end), Ok(p)) = (
                usize::try_from(*start),
                usize::try_from(*end),
                u16::try_from(*p),
            ) else {
                return Err("CLUSTER SLOTS range out of bounds".into());
            };
            if start > end || end >= SLOTS {
                return Err("CLUSTER SLOTS range out of bounds".into());
            }
            if !masters.contains(&(h.clone(), p)) {
                masters.push((h.clone(), p));
            }
            if self.read_replicas {
                for r in parts.iter().skip(3) {
                    let Reply::Array(r) = r else { continue };
                    let (Some(Reply::Bulk(rh)), Some(Reply::Int(rp))) = (r.first(), r.get(1))
                    else {
                        continue;
                    };
                    let rh = match &rh[..] {
                        b"" => host.to_string(),
                        b"?" => continue,
                        rh => String::from_utf8_lossy(rh).into_owned(),
                    };
                    let Ok(rp) = u16::try_from(*rp) else { continue };
                    let pair = ((h.clone(), p), (rh, rp));
                    if !replicas.contains(&pair) {
                        replicas.push(pair);
                    }
                }
            }
            owned.push((start, end, (h, p)));
        }
        masters.sort();
        for (start, end, m) in owned {
            if let Some(i) = masters.iter().position(|x| *x == m) {
                slots[start..=end].fill(i as u16);
            }
        }
        let replicas = masters
            .iter()
            .map(|m| {
                replicas
                    .iter()
                    .filter(|(of, _)| of == m)
                    .map(|(_, (h, p))| self.node(h, *p))
                    .collect()
            })
            .collect();
        Ok(Topology {
            slots,
            nodes: masters.iter().map(|(h, p)| self.node(h, *p)).collect(),
            ring: None,
            out: Vec::new(),
            replicas,
        })
    }

    /// Rereads the slot map in the background: the command that found the
    /// map wrong is answered without waiting for it, and a refresh already
    /// queued stands for this one.
    fn refresh_soon(self: &Arc<Self>) {
        if self.fixed.is_some() || self.refresh_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let _ = inner.refresh().await;
            inner.refresh_queued.store(false, Ordering::Release);
        });
    }

    /// Starts the periodic refresh once; it ends with the backend.
    fn start_refresher(self: &Arc<Self>) {
        if self.refresher.set(()).is_err() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let _ = inner.refresh().await;
            }
        });
    }

    /// Points `slot` at the node a MOVED named, at once, before the whole
    /// map is read again.
    fn moved(&self, slot: u16, node: &Arc<Node>) {
        let Ok(mut cur) = self.topology.write() else {
            return;
        };
        let Some(t) = cur.as_ref() else {
            return;
        };
        let mut nodes = t.nodes.clone();
        let i = match nodes.iter().position(|n| Arc::ptr_eq(n, node)) {
            Some(i) => i,
            None => {
                nodes.push(node.clone());
                nodes.len() - 1
            }
        };
        let mut slots = t.slots.clone();
        if let Some(s) = slots.get_mut(slot as usize) {
            *s = i as u16;
        }
        *cur = Some(Arc::new(Topology {
            slots,
            nodes,
            ring: t.ring.clone(),
            out: t.out.clone(),
            replicas: t.replicas.clone(),
        }));
    }

    /// Resends a redirected command where the cluster says, following up
    /// to [`REDIRECTS`] redirects.
    async fn follow(self: &Arc<Self>, cmd: &Command, mut to: Redirect) -> Reply {
        for _ in 0..REDIRECTS {
            metrics().redirected(&self.name, to.ask);
            let node = self.node(&to.host, to.port);
            let reply = if to.ask {
                // ASKING holds for the next command on the connection; both
                // travel in one job, so nothing comes between them.
                let mut out = BytesMut::from(&b"*1\r\n$6\r\nASKING\r\n"[..]);
                append(&mut out, cmd);
                node.pipe(cmd.resp3)
                    .call(out.freeze(), vec![true, cmd.inspect])
                    .await
                    .pop()
            } else {
                self.moved(to.slot, &node);
                self.refresh_soon();
                node.pipe(cmd.resp3)
                    .call(encode(cmd), vec![cmd.inspect])
                    .await
                    .pop()
            };
            let reply = reply.unwrap_or_else(|| unavailable(&self.name, "no reply"));
            match self.redirect(&reply) {
                Some(next) => to = next,
                None => return reply,
            }
        }
        Reply::error(format!(
            "ERR backend '{}': slot {} was redirected more than {REDIRECTS} times",
            self.name, to.slot
        ))
    }

    /// Runs each node's commands as one job on its pipe, the nodes
    /// concurrently, and follows redirects unless the commands are a
    /// transaction: a command redirected while queued must not run outside
    /// it, so its MOVED stands (EXEC answers EXECABORT) and only the map
    /// learns from it.
    async fn run_groups(
        self: &Arc<Self>,
        groups: Vec<(Arc<Node>, Vec<Command>)>,
        transaction: bool,
    ) -> Vec<Vec<Reply>> {
        let futures = groups
            .into_iter()
            .map(|(node, cmds)| -> BoxFuture<'_, Vec<Reply>> {
                Box::pin(async move {
                    let resp3 = cmds.first().is_some_and(|c| c.resp3);
                    let mut out = BytesMut::new();
                    let mut inspect = Vec::with_capacity(cmds.len());
                    for c in &cmds {
                        append(&mut out, c);
                        inspect.push(c.inspect);
                    }
                    let mut replies = node.pipe(resp3).call(out.freeze(), inspect).await;
                    let mut lost = false;
                    for (r, c) in replies.iter_mut().zip(&cmds) {
                        if let Some(to) = self.redirect(r) {
                            if !transaction {
                                *r = self.follow(c, to).await;
                            } else if !to.ask {
                                self.moved(to.slot, &self.node(&to.host, to.port));
                                self.refresh_soon();
                            }
                        } else if let Some(master) = self.master_of_read(&node, c, r) {
                            // A replica that cannot be reached: its master
                            // answers the read.
                            lost = true;
                            *r = master
                                .pipe(c.resp3)
                                .call(encode(c), vec![c.inspect])
                                .await
                                .pop()
                                .unwrap_or_else(|| unavailable(&self.name, "no reply"));
                            name_unreachable(&self.name, r, &master.addr);
                        } else {
                            lost |= name_unreachable(&self.name, r, &node.addr);
                        }
                    }
                    if lost {
                        // A replica may have taken over: the next batch
                        // goes where the cluster now says.
                        self.refresh_soon();
                    }
                    self.observe(&node, lost);
                    replies
                })
            })
            .collect();
        join_all(futures).await
    }

    /// A blocking command, on a connection of its own to its node.
    async fn blocking(self: &Arc<Self>, node: &Arc<Node>, cmd: &Command) -> Reply {
        match dedicated(&node.endpoint, &node.idle, IDLE_DEDICATED, cmd).await {
            Ok(r) => r,
            Err(reason) => {
                self.refresh_soon();
                unavailable(&self.name, &format!("{reason} (node {})", node.addr))
            }
        }
    }

    /// Sends one command to every master (every server not ejected) and
    /// returns their replies, in the map's node order.
    async fn everywhere(self: &Arc<Self>, t: &Topology, cmd: &Command) -> Vec<Reply> {
        let groups = t
            .serving()
            .map(|(_, n)| (n.clone(), vec![cmd.clone()]))
            .collect();
        self.run_groups(groups, false)
            .await
            .into_iter()
            .map(|mut r| {
                r.pop()
                    .unwrap_or_else(|| unavailable(&self.name, "no reply"))
            })
            .collect()
    }

    /// Whole-keyspace commands, over every master.
    async fn keyspace(self: &Arc<Self>, t: &Topology, cmd: &Command) -> Reply {
        let mut cmd = cmd.clone();
        cmd.inspect = true;
        cmd.raw = None;
        let name = cmd.spec.name;
        if name == "scan" {
            return self.scan(t, cmd).await;
        }
        if name == "randomkey" {
            // From a master picked at random, or the next that has keys.
            let nodes: Vec<&Arc<Node>> = t.serving().map(|(_, n)| n).collect();
            let n = nodes.len();
            if n == 0 {
                return unavailable(&self.name, "every server is ejected");
            }
            let start = crate::util::random_below(n as u64) as usize;
            for i in 0..n {
                let node = nodes[(start + i) % n];
                let r = self
                    .run_groups(vec![(node.clone(), vec![cmd.clone()])], false)
                    .await
                    .pop()
                    .and_then(|mut r| r.pop())
                    .unwrap_or_else(|| unavailable(&self.name, "no reply"));
                if !matches!(r, Reply::Nil) {
                    return r;
                }
            }
            return Reply::Nil;
        }
        let replies = self.everywhere(t, &cmd).await;
        let kill = name == "script" && cmd.args.get(1).is_some_and(|s| is(s, "KILL"));
        if kill && replies.iter().any(|r| !r.is_error()) {
            return Reply::ok();
        }
        if let Some(e) = replies.iter().find(|r| r.is_error()) {
            return e.clone();
        }
        match name {
            "dbsize" => Reply::Int(
                replies
                    .iter()
                    .map(|r| if let Reply::Int(n) = r { *n } else { 0 })
                    .sum(),
            ),
            "keys" => Reply::Array(
                replies
                    .into_iter()
                    .flat_map(|r| match r {
                        Reply::Array(items) => items,
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
            "script" if cmd.args.get(1).is_some_and(|s| is(s, "EXISTS")) => {
                crate::keyspace::exists_everywhere(replies.into_iter().map(Ok))
                    .unwrap_or_else(Reply::from)
            }
            // FLUSHDB, FLUSHALL, SCRIPT LOAD (the same digest everywhere),
            // SCRIPT FLUSH: every master answered alike.
            _ => replies
                .into_iter()
                .next()
                .unwrap_or_else(|| unavailable(&self.name, "no masters")),
        }
    }

    /// SCAN one master at a time; the cursor carries the master's index.
    async fn scan(self: &Arc<Self>, t: &Topology, mut cmd: Command) -> Reply {
        let cursor = cmd
            .args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        let asked = (cursor >> NODE_SHIFT) as usize;
        // An ejected server is skipped, from its start if the cursor was in it.
        let Some((index, node)) = t.serving().find(|(i, _)| *i >= asked) else {
            return scan_reply(0, Vec::new());
        };
        let within = if index == asked {
            cursor & ((1 << NODE_SHIFT) - 1)
        } else {
            0
        };
        cmd.args[1] = bytes(&within.to_string());
        let reply = self
            .run_groups(vec![(node.clone(), vec![cmd])], false)
            .await
            .pop()
            .and_then(|mut r| r.pop())
            .unwrap_or_else(|| unavailable(&self.name, "no reply"));
        if reply.is_error() {
            return reply;
        }
        let Some((inner, Reply::Array(keys))) = scan_parts(reply) else {
            return Reply::error("ERR unexpected SCAN reply from a cluster node");
        };
        if inner >> NODE_SHIFT != 0 {
            return Reply::error(format!(
                "ERR backend '{}': node {} returned a SCAN cursor keyway cannot encode",
                self.name, node.addr
            ));
        }
        let next = if inner != 0 {
            ((index as u64) << NODE_SHIFT) | inner
        } else {
            match t.serving().find(|(i, _)| *i > index) {
                Some((i, _)) => (i as u64) << NODE_SHIFT,
                None => 0,
            }
        };
        scan_reply(next, keys)
    }
}

/// Where one command's reply comes from once its segment has run.
enum Plan {
    Done(Reply),
    /// Reply `at` of node group `group`.
    Single(usize, usize),
    /// The parts of a command split across nodes, each with the indexes of
    /// the keys it carries.
    Split(Merge, Vec<(usize, usize, Vec<usize>)>),
}

/// Commands for each node in the segment being built.
#[derive(Default)]
struct Groups(Vec<(Arc<Node>, Vec<Command>)>);

impl Groups {
    fn push(&mut self, node: &Arc<Node>, cmd: Command) -> (usize, usize) {
        let g = match self.0.iter().position(|(n, _)| Arc::ptr_eq(n, node)) {
            Some(g) => g,
            None => {
                self.0.push((node.clone(), Vec::new()));
                self.0.len() - 1
            }
        };
        self.0[g].1.push(cmd);
        (g, self.0[g].1.len() - 1)
    }
}

fn unserved(slot: u16) -> Reply {
    Reply::error(format!("CLUSTERDOWN Hash slot {slot} not served"))
}

/// Plans one command into the segment's groups; `name` is the backend's,
/// and `replicas` (with `read_from_replicas`) turns the replica reads go to.
fn plan(
    t: &Topology,
    name: &str,
    replicas: Option<&AtomicUsize>,
    groups: &mut Groups,
    cmd: Command,
) -> Plan {
    let reads = replicas.filter(|_| cmd.spec.has(READ) && !cmd.spec.has(WRITE));
    let node_of = |slot: u16| match reads {
        Some(turn) => t.reader_of(slot, turn.fetch_add(1, Ordering::Relaxed)),
        None => t.node_of(slot),
    };
    // PUBLISH reaches every node's subscribers, but counts only its own:
    // keyway's subscribers are all on the first master (see `subscriber`),
    // so it is routed as keyless, there, to count them.
    let publish = cmd.spec.name == "publish";
    // Most commands name one key: routed without building lists.
    if let Some(p) = cmd.spec.single_key(cmd.args.len()).filter(|_| !publish) {
        let slot = t.slot(&cmd.args[p]);
        let Some(node) = node_of(slot) else {
            return Plan::Done(unserved(slot));
        };
        let (g, at) = groups.push(node, cmd);
        return Plan::Single(g, at);
    }
    let positions = if publish {
        Vec::new()
    } else {
        cmd.spec.key_positions(&cmd.args)
    };
    if positions.is_empty() {
        // Keyless (PING, INFO, EVAL with no keys, ...): any master will do.
        return match t.nodes.first() {
            Some(n) => {
                let (g, at) = groups.push(n, cmd);
                Plan::Single(g, at)
            }
            None => Plan::Done(unserved(0)),
        };
    }
    let slots: Vec<u16> = positions.iter().map(|&p| t.slot(&cmd.args[p])).collect();
    let Some(node) = node_of(slots[0]) else {
        return Plan::Done(unserved(slots[0]));
    };
    // A cluster refuses keys of different slots in one command (CROSSSLOT)
    // even on one node, so a splittable command is split per slot.
    let one_slot = slots.iter().all(|&s| s == slots[0]);
    match merge_kind(cmd.spec) {
        Some(merge) if !one_slot => {
            let mut per_slot: Vec<(u16, Vec<usize>)> = Vec::new();
            for (i, &s) in slots.iter().enumerate() {
                match per_slot.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, idx)) => idx.push(i),
                    None => per_slot.push((s, vec![i])),
                }
            }
            let mut parts = Vec::with_capacity(per_slot.len());
            for (slot, idx) in per_slot {
                let Some(node) = node_of(slot) else {
                    return Plan::Done(unserved(slot));
                };
                let mut args = vec![cmd.args[0].clone()];
                for &i in &idx {
                    let p = positions[i];
                    args.push(cmd.args[p].clone());
                    if let Merge::AllOk = merge {
                        args.push(cmd.args.get(p + 1).cloned().unwrap_or_default());
                    }
                }
                let sub = Command {
                    spec: cmd.spec,
                    args,
                    raw: None,
                    resp3: cmd.resp3,
                    inspect: true,
                };
                let (g, at) = groups.push(node, sub);
                parts.push((g, at, idx));
            }
            Plan::Split(merge, parts)
        }
        // Servers of a ring cannot run it together: keyway refuses it.
        _ if !one_slot && t.ring.is_some() => Plan::Done(t.cross(name)),
        _ => {
            let (g, at) = groups.push(node, cmd);
            Plan::Single(g, at)
        }
    }
}

/// Commands that are not sent to one node as they are.
fn whole_keyspace(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "dbsize" | "keys" | "scan" | "randomkey" | "flushdb" | "flushall" | "script"
    )
}

impl ClusterBackend {
    async fn run(&self, batch: Vec<Command>) -> Vec<Reply> {
        let inner = &self.inner;
        let n = batch.len();
        let t = match inner.topology().await {
            Ok(t) => t,
            Err(reason) => return vec![unavailable(&inner.name, &reason); n],
        };
        // A transaction stays whole, on the node of its first key: keys of
        // other nodes get MOVED or CROSSSLOT there, as a cluster answers.
        if batch.iter().any(|c| c.spec.name == "multi") {
            if t.spread(&batch) {
                return vec![t.cross(&inner.name); n];
            }
            let slot = batch.iter().find_map(|c| slot_of(&t, c)).unwrap_or(0);
            let Some(node) = t.node_of(slot) else {
                return vec![unserved(slot); n];
            };
            let mut replies = inner
                .run_groups(vec![(node.clone(), batch)], true)
                .await
                .pop()
                .unwrap_or_default();
            replies.resize(n, Reply::error("ERR backend returned too few replies"));
            return replies;
        }
        let mut replies = Vec::with_capacity(n);
        let mut groups = Groups::default();
        let mut plans: Vec<Plan> = Vec::new();
        for cmd in batch {
            let alone = whole_keyspace(cmd.spec) || cmd.spec.has(BLOCKING);
            if !alone {
                let replicas = inner.read_replicas.then_some(&inner.next_replica);
                plans.push(plan(&t, &inner.name, replicas, &mut groups, cmd));
                continue;
            }
            // Earlier commands run first: order within a batch holds.
            finish(inner, &mut groups, &mut plans, &mut replies).await;
            let reply = if whole_keyspace(cmd.spec) {
                inner.keyspace(&t, &cmd).await
            } else if t.spread(std::slice::from_ref(&cmd)) {
                t.cross(&inner.name)
            } else {
                let slot = slot_of(&t, &cmd).unwrap_or(0);
                match t.node_of(slot) {
                    Some(node) => {
                        let r = inner.blocking(node, &cmd).await;
                        match inner.redirect(&r) {
                            Some(to) if !to.ask => {
                                let node = inner.node(&to.host, to.port);
                                inner.moved(to.slot, &node);
                                inner.blocking(&node, &cmd).await
                            }
                            _ => r,
                        }
                    }
                    None => unserved(slot),
                }
            };
            replies.push(reply);
        }
        finish(inner, &mut groups, &mut plans, &mut replies).await;
        replies
    }
}

/// Runs the segment planned so far and appends its replies in order.
async fn finish(
    inner: &Arc<Inner>,
    groups: &mut Groups,
    plans: &mut Vec<Plan>,
    replies: &mut Vec<Reply>,
) {
    if plans.is_empty() {
        return;
    }
    let mut results = inner.run_groups(std::mem::take(&mut groups.0), false).await;
    let mut take = |g: usize, at: usize| -> Reply {
        results
            .get_mut(g)
            .and_then(|r| r.get_mut(at))
            .map(|r| std::mem::replace(r, Reply::Nil))
            .unwrap_or_else(|| Reply::error("ERR backend returned too few replies"))
    };
    for p in plans.drain(..) {
        replies.push(match p {
            Plan::Done(r) => r,
            Plan::Single(g, at) => take(g, at),
            Plan::Split(merge, parts) => merge_parts(
                merge,
                parts
                    .into_iter()
                    .map(|(g, at, idx)| (take(g, at), idx))
                    .collect(),
            ),
        });
    }
}

impl Backend for ClusterBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    fn supports(&self, _spec: &CommandSpec) -> bool {
        true
    }

    fn health(&self) -> String {
        let inner = &self.inner;
        let last = inner
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        match inner.current() {
            None if last.is_empty() => "idle (connects on first use)".into(),
            None => format!("down ({last})"),
            Some(t) => {
                let up = t
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.pipes.iter().all(|p| p.get().is_none())
                            || n.endpoint.up.load(std::sync::atomic::Ordering::Relaxed) > 0
                    })
                    .count();
                if inner.fixed.is_some() {
                    let n = t.nodes.len();
                    let word = if up == 0 { "down" } else { "up" };
                    let out = t.out.iter().filter(|o| **o).count();
                    let ejected = match out {
                        0 => String::new(),
                        k => format!("; {k} ejected"),
                    };
                    return format!("{word} ({up}/{n} servers reachable{ejected})");
                }
                format!(
                    "up ({up}/{} masters reachable, {}/{SLOTS} slots served)",
                    t.nodes.len(),
                    t.served()
                )
            }
        }
    }

    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(self.run(batch))
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner
                .topology()
                .await
                .map_err(|reason| unavailable_error(&inner.name, &reason))?;
            Ok(Box::new(ClusterSession {
                inner,
                conn: None,
                pinned: 0,
                lost: false,
            }) as Box<dyn Session>)
        })
    }

    fn subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let name = &inner.name;
            let t = inner
                .topology()
                .await
                .map_err(|reason| unavailable_error(name, &reason))?;
            // Messages published on any node reach every node's
            // subscribers, so one node serves all of a client's channels.
            let node = t
                .nodes
                .first()
                .ok_or_else(|| unavailable_error(name, "no masters"))?;
            let conn = node
                .endpoint
                .connect(false)
                .await
                .map_err(|reason| unavailable_error(name, &reason))?;
            Ok(Box::new(RedisSubscriber::start(conn, tag, pushes, name)) as Box<dyn Subscriber>)
        })
    }
}

/// A pinned connection (WATCH ... EXEC), to the node of the first key the
/// client names. Once it fails it stays failed: the server has forgotten
/// what was watched.
struct ClusterSession {
    inner: Arc<Inner>,
    conn: Option<Conn>,
    /// The slot (a server's index on a ring) whose node `conn` is to.
    pinned: u16,
    lost: bool,
}

impl ClusterSession {
    /// On a ring, the commands of `batch` whose keys are not all on the
    /// pinned server: the server would run them on the wrong keys. A
    /// cluster node answers MOVED or CROSSSLOT for them itself.
    fn elsewhere(&self, t: &Topology, batch: &[Command]) -> Vec<bool> {
        if self.inner.fixed.is_none() {
            return vec![false; batch.len()];
        }
        batch
            .iter()
            .map(|c| {
                c.spec
                    .key_positions(&c.args)
                    .iter()
                    .any(|&p| t.slot(&c.args[p]) != self.pinned)
            })
            .collect()
    }
}

impl Session for ClusterSession {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let name = self.inner.name.clone();
            if self.lost {
                return vec![unavailable(&name, "pinned connection lost"); batch.len()];
            }
            if self.conn.is_none() {
                let t = match self.inner.topology().await {
                    Ok(t) => t,
                    Err(reason) => return vec![unavailable(&name, &reason); batch.len()],
                };
                let slot = batch.iter().find_map(|c| slot_of(&t, c)).unwrap_or(0);
                let Some(node) = t.node_of(slot) else {
                    return vec![unserved(slot); batch.len()];
                };
                self.pinned = slot;
                match node.endpoint.connect(false).await {
                    Ok(c) => self.conn = Some(c),
                    Err(reason) => {
                        self.lost = true;
                        return vec![unavailable(&name, &reason); batch.len()];
                    }
                }
            }
            let Some(t) = self.inner.current() else {
                return vec![unavailable(&name, "no slot map"); batch.len()];
            };
            let elsewhere = self.elsewhere(&t, &batch);
            let refused = elsewhere.contains(&true).then(|| t.cross(&name));
            if let Some(r) = &refused {
                // A transaction runs whole on one server, or not at all.
                if batch.iter().any(|c| c.spec.name == "multi") {
                    return vec![r.clone(); batch.len()];
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                return vec![unavailable(&name, "pinned connection lost"); batch.len()];
            };
            let sent: Vec<Command> = batch
                .into_iter()
                .zip(&elsewhere)
                .filter(|(_, e)| !**e)
                .map(|(c, _)| c)
                .collect();
            if sent.is_empty() {
                return elsewhere.iter().map(|_| t_refused(&refused)).collect();
            }
            match call_pinned(conn, &sent, self.inner.command_timeout).await {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    elsewhere
                        .iter()
                        .map(|&e| match (&refused, e) {
                            (Some(_), true) => t_refused(&refused),
                            _ => replies.next().unwrap_or_else(|| {
                                Reply::error("ERR backend returned too few replies")
                            }),
                        })
                        .collect()
                }
                Err(reason) => {
                    self.conn = None;
                    self.lost = true;
                    vec![unavailable(&name, &reason); elsewhere.len()]
                }
            }
        })
    }
}

/// The refusal given to a session's command on another server.
fn t_refused(refused: &Option<Reply>) -> Reply {
    refused
        .clone()
        .unwrap_or_else(|| Reply::error("ERR backend returned too few replies"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn reads_redirects_in_both_forms() {
        let r = redirect_of(&Reply::Error(Bytes::from_static(
            b"MOVED 3999 127.0.0.1:6381",
        )))
        .unwrap();
        assert_eq!(
            (r.ask, r.slot, r.host.as_str(), r.port),
            (false, 3999, "127.0.0.1", 6381)
        );
        let r = redirect_of(&Reply::Raw(Bytes::from_static(b"-ASK 12 [::1]:7000\r\n"))).unwrap();
        assert_eq!(
            (r.ask, r.slot, r.host.as_str(), r.port),
            (true, 12, "::1", 7000)
        );
        assert!(redirect_of(&Reply::Error(Bytes::from_static(b"ERR MOVED"))).is_none());
        assert!(redirect_of(&Reply::Raw(Bytes::from_static(b"+MOVED 1 h:1\r\n"))).is_none());
    }

    #[test]
    fn config_problems_are_all_reported() {
        let c = ClusterConfig {
            nodes: vec![
                "redis://a:1/2".into(),
                "rediss://b:2".into(),
                "http://c".into(),
            ],
            connect_timeout_ms: 0,
            command_timeout_ms: 1,
            tls_ca_file: None,
            read_from_replicas: false,
        };
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["nodes[0]", "nodes[2]", "connect_timeout_ms"]);
        let c = ClusterConfig {
            nodes: vec!["redis://a:1".into(), "rediss://b:2".into()],
            connect_timeout_ms: 1,
            command_timeout_ms: 1,
            tls_ca_file: None,
            read_from_replicas: false,
        };
        assert_eq!(c.problems()[0].0, "nodes");
        assert!(
            ClusterConfig { nodes: vec![], ..c }.problems()[0]
                .1
                .contains("at least one")
        );
    }
}
