//! The state every connection shares: the namespace table and settings
//! (both swapped whole on reload), counters, the client registry, the
//! slow log, and the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::proxy::router::Router;
use crate::server::clients;
use crate::server::settings::Settings;
use crate::server::slowlog;

/// Counters shown by INFO.
#[derive(Default)]
pub struct Stats {
    pub connected: AtomicUsize,
    pub connections_total: AtomicU64,
    pub rejected: AtomicU64,
    pub commands: AtomicU64,
}

/// State shared by every connection.
pub struct Shared {
    /// The namespace table; replaced whole on reload.
    pub router: ArcSwap<Router>,
    /// What the server reads of the running config; replaced on reload.
    pub settings: ArcSwap<Settings>,
    pub stats: Stats,
    pub started: Instant,
    pub started_unix: u64,
    pub local_addr: SocketAddr,
    /// Where `tls_listen` bound, when TLS is on.
    pub tls_local_addr: Option<SocketAddr>,
    /// Where `[server] metrics_listen` bound, if set.
    pub metrics_addr: Option<SocketAddr>,
    pub(super) next_client_id: AtomicU64,
    /// Clients that have sent something, for CLIENT LIST and CLIENT KILL.
    pub clients: Arc<clients::Registry>,
    pub slowlog: slowlog::SlowLog,
    /// LATENCY's samples (off until CONFIG SET latency-monitor-threshold).
    pub latency: crate::server::latency::LatencyMonitor,
    /// Recent denials, for ACL LOG.
    pub acl_log: crate::server::acl::AclLog,
    /// CLIENT PAUSE: until when, and whether every command waits (ALL) or
    /// only those that may write (WRITE).
    pub pause: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Whether `pause` may hold anything: the one check every command pays.
    pub pausing: std::sync::atomic::AtomicBool,
    /// Clients in MONITOR mode.
    pub monitors: crate::server::monitor::Monitors,
    /// Becomes true when the server starts shutting down.
    pub(super) stop: watch::Sender<bool>,
}

impl Shared {
    /// What a client's scripts show MONITOR (see `backend::Unblock`).
    pub fn script_monitor(self: &Arc<Self>) -> crate::backend::ScriptMonitor {
        let shared = Arc::downgrade(self);
        crate::backend::ScriptMonitor(Arc::new(move |db, args| {
            if let Some(s) = shared.upgrade() {
                s.monitors.feed_script(db, args);
            }
        }))
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Turns true when the server starts shutting down.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// When a CLIENT PAUSE holds `spec` back: the instant it ends. Writes
    /// (and what may write: scripts, PUBLISH) wait in WRITE mode, every
    /// command in ALL mode; CLIENT itself never, so UNPAUSE gets through.
    pub fn paused(&self, spec: &crate::wire::command::CommandSpec) -> Option<std::time::Instant> {
        use crate::wire::command::{SCRIPT, WRITE};
        if !self.pausing.load(Ordering::Relaxed) || spec.name == "client" {
            return None;
        }
        let mut pause = self.pause.lock().ok()?;
        let (until, all) = (*pause)?;
        if until <= std::time::Instant::now() {
            *pause = None;
            self.pausing.store(false, Ordering::Relaxed);
            return None;
        }
        let writes = spec.has(WRITE)
            || spec.has(SCRIPT)
            || matches!(spec.name, "publish" | "spublish" | "pfcount");
        (all || writes).then_some(until)
    }
}
