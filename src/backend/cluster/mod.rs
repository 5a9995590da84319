//! The `redis-cluster` backend: a Redis Cluster (or Valkey cluster), its
//! slot map learned from CLUSTER SLOTS on the seed nodes.
//!
//! Each command goes to the master serving its key's hash slot, on that
//! node's multiplexed pipe (see [`crate::backend::upstream`]); a client's batch is
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
//! The redis-shards backend ([`crate::backend::shards`]) is this one with a fixed
//! map: its servers stand for masters, a key's "slot" is its server's
//! index, nothing redirects and nothing is reread; and since standalone
//! servers cannot refuse keys of another server, keyway refuses them.

mod map;
mod route;
mod session;
mod topology;

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::redis::{
    RedisSubscriber, Url, connection_problems, default_command_timeout, default_connect_timeout,
    parse_url, unavailable_error, url_server, with_login,
};
use super::{Backend, BackendConfig, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::wire::command::CommandSpec;
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;
use map::{Fixed, Inner};
use session::ClusterSession;
pub use topology::{Ejection, Placement};
use topology::{Node, Topology};

pub(super) const SLOTS: usize = 16384;
/// A slot no master serves.
pub(super) const UNSERVED: u16 = u16::MAX;
/// Redirects followed for one command before giving up.
pub(super) const REDIRECTS: usize = 5;
/// Refreshes of the slot map that failures and redirects ask for are at
/// least this far apart: during a resharding every command may be moved.
pub(super) const REFRESH_GAP: Duration = Duration::from_millis(200);
/// The slot map is refreshed this often even when nothing asks.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// SCAN cursors carry the node's index above this many bits of the node's
/// own cursor.
pub(super) const NODE_SHIFT: u32 = 40;
/// Dedicated connections kept per node for blocking commands.
pub(super) const IDLE_DEDICATED: usize = 4;

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

    fn servers(&self) -> Vec<String> {
        self.nodes.iter().filter_map(|n| url_server(n)).collect()
    }

    fn with_credentials(&self, username: Option<&str>, password: &str) -> Option<BackendConfig> {
        Some(BackendConfig::RedisCluster(ClusterConfig {
            nodes: self
                .nodes
                .iter()
                .map(|n| with_login(n, username, password))
                .collect(),
            ..self.clone()
        }))
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

/// A Redis Cluster, or (built by `shards`) a fixed map of servers.
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

    /// A redis-shards backend: a fixed map of servers (`map.urls`, in
    /// config order) on which `map.placement` puts each key.
    pub fn fixed(name: &str, map: FixedMap) -> ClusterBackend {
        let mut inner = Inner::new(
            name,
            "redis-shards",
            map.tls_ca_file,
            map.connect_timeout_ms,
            map.command_timeout_ms,
        );
        let nodes: Vec<Arc<Node>> = map.urls.iter().map(|u| inner.node_for(u)).collect();
        let n = nodes.len();
        let t = Arc::new(Topology {
            slots: (0..n as u16).collect(),
            nodes,
            ring: Some(map.placement.clone()),
            out: Vec::new(),
            replicas: Vec::new(),
        });
        inner.topology = RwLock::new(Some(t));
        inner.fixed = Some(Fixed {
            ejection: map.ejection,
            placement: map.placement,
            failures: (0..n).map(|_| AtomicU32::new(0)).collect(),
            out: Mutex::new(vec![false; n]),
        });
        ClusterBackend {
            inner: Arc::new(inner),
        }
    }
}

/// A fixed map of standalone servers (the redis-shards backend).
pub struct FixedMap {
    pub urls: Vec<Url>,
    pub placement: Arc<dyn Placement>,
    pub ejection: Ejection,
    pub tls_ca_file: Option<String>,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
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

    /// Shard channels live on the master of their slot (or ring node).
    fn shard_of(&self, channel: &[u8]) -> usize {
        self.inner
            .current()
            .and_then(|t| {
                let node = t.node_of(t.slot(channel))?;
                t.nodes.iter().position(|n| Arc::ptr_eq(n, node))
            })
            .unwrap_or(0)
    }

    fn shard_subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
        channel: Bytes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let name = &inner.name;
            let t = inner
                .topology()
                .await
                .map_err(|reason| unavailable_error(name, &reason))?;
            let slot = t.slot(&channel);
            let node = t
                .node_of(slot)
                .ok_or_else(|| CmdError::msg(format!("CLUSTERDOWN Hash slot {slot} not served")))?;
            let conn = node
                .endpoint
                .connect(false)
                .await
                .map_err(|reason| unavailable_error(name, &reason))?;
            Ok(Box::new(RedisSubscriber::start(conn, tag, pushes, name)) as Box<dyn Subscriber>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::topology::redirect_of;
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
