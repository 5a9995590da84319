//! A cluster's slot map over time: reading it from the nodes, refreshing
//! it (on MOVED, on failures, every few seconds), and for a fixed map
//! (redis-shards) ejecting failing servers and taking them back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::topology::{
    Ejection, Node, Placement, Redirect, Topology, redirect_of, slot_of, unreachable,
};
use super::{REFRESH_EVERY, REFRESH_GAP, SLOTS, UNSERVED};
use crate::backend::Command;
use crate::backend::redis::{Url, tls};
use crate::backend::upstream::Endpoint;
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::util::bytes;

/// A redis-shards backend's servers and their failures.
pub(super) struct Fixed {
    pub(super) ejection: Ejection,
    /// The placement over every server, rebuilt over the live ones.
    pub(super) placement: Arc<dyn Placement>,
    /// Each server's consecutive failures, in config order.
    pub(super) failures: Vec<AtomicU32>,
    /// Which servers are ejected now (with `auto_eject_hosts`).
    pub(super) out: Mutex<Vec<bool>>,
}

pub(super) struct Inner {
    pub(super) name: String,
    /// "redis-cluster", or "redis-shards" for a fixed map.
    pub(super) kind: &'static str,
    /// A redis-shards backend's settings: its map is never reread, only
    /// rebuilt when a server is ejected or comes back.
    pub(super) fixed: Option<Fixed>,
    pub(super) seeds: Vec<(String, u16)>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) tls: bool,
    pub(super) ca_file: Option<String>,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
    pub(super) topology: RwLock<Option<Arc<Topology>>>,
    /// Every node seen, by address: a node keeps its pipes across refreshes.
    pub(super) known: Mutex<HashMap<String, Arc<Node>>>,
    /// Held while refreshing; when the last refresh ended.
    pub(super) refreshed: tokio::sync::Mutex<Option<Instant>>,
    pub(super) last_error: Mutex<String>,
    /// The periodic refresh, started with the first map.
    pub(super) refresher: OnceLock<()>,
    /// A background refresh is on its way (see `refresh_soon`).
    pub(super) refresh_queued: AtomicBool,
    /// `read_from_replicas`, and the replica the next read goes to.
    pub(super) read_replicas: bool,
    pub(super) next_replica: AtomicUsize,
}

impl Inner {
    /// No seeds, credentials or map yet: the constructors fill them in.
    pub(super) fn new(
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

    pub(super) fn current(&self) -> Option<Arc<Topology>> {
        self.topology.read().ok().and_then(|t| t.clone())
    }

    /// The node at `host:port`, made on first sight, reached as the seeds
    /// are.
    pub(super) fn node(&self, host: &str, port: u16) -> Arc<Node> {
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
    pub(super) fn node_for(&self, u: &Url) -> Arc<Node> {
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
                        version: Default::default(),
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
    pub(super) fn observe(self: &Arc<Self>, node: &Node, failed: bool) {
        let Some(f) = self.fixed.as_ref().filter(|f| f.ejection.enabled) else {
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
        if n < f.ejection.failure_limit {
            return;
        }
        count.store(0, Ordering::Relaxed);
        let retry = Duration::from_millis(f.ejection.retry_timeout_ms);
        warn!(
            backend = self.name.as_str(),
            server = node.addr.as_str(),
            failures = n,
            retry_ms = f.ejection.retry_timeout_ms,
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
    pub(super) fn set_out(&self, i: usize, out: bool) {
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
            ring: Some(f.placement.over(&live)),
            out: flags.clone(),
            replicas: Vec::new(),
        };
        if let Ok(mut cur) = self.topology.write() {
            *cur = Some(Arc::new(next));
        }
    }

    /// The master to send a read to when `node`, a replica, could not be
    /// reached for it (`r` says so); None when `node` is a master.
    pub(super) fn master_of_read(
        &self,
        node: &Arc<Node>,
        c: &Command,
        r: &Reply,
    ) -> Option<Arc<Node>> {
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
    pub(super) fn redirect(&self, r: &Reply) -> Option<Redirect> {
        match self.fixed {
            Some(_) => None,
            None => redirect_of(r),
        }
    }

    /// The slot map, read from the cluster on first use.
    pub(super) async fn topology(self: &Arc<Self>) -> Result<Arc<Topology>, String> {
        match self.current() {
            Some(t) => Ok(t),
            None => self.refresh().await,
        }
    }

    /// Reads the slot map from the first node that answers: the known
    /// masters, then the seeds. A refresh that ended less than
    /// [`REFRESH_GAP`] ago stands in for a new one.
    pub(super) async fn refresh(self: &Arc<Self>) -> Result<Arc<Topology>, String> {
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

    pub(super) async fn read_slots(&self, host: &str, port: u16) -> Result<Topology, String> {
        let node = self.node(host, port);
        let mut conn = node.endpoint.connect(false).await?;
        let ask = crate::wire::protocol::encode_multibulk(&[bytes("CLUSTER"), bytes("SLOTS")]);
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
    pub(super) fn refresh_soon(self: &Arc<Self>) {
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
    pub(super) fn start_refresher(self: &Arc<Self>) {
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
    pub(super) fn moved(&self, slot: u16, node: &Arc<Node>) {
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
}
