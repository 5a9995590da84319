//! The listener: accepts clients, enforces `max_clients`, and shuts down
//! gracefully (stop accepting, let connections finish the commands they are
//! running, then return).

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::connection::Connection;
use crate::metrics::{self, metrics};
use crate::reload::{self, Built, Source};
use crate::router::Router;

/// How long shutdown waits for connections to finish their commands.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    pub config: ArcSwap<Config>,
    pub stats: Stats,
    pub started: Instant,
    pub started_unix: u64,
    pub local_addr: SocketAddr,
    /// Where `[server] metrics_listen` bound, if set.
    pub metrics_addr: Option<SocketAddr>,
    /// The backends behind `router`, reused by reloads when unchanged.
    pub backends: Mutex<Built>,
    /// The config file, for reloads.
    pub source: Mutex<Source>,
    next_client_id: AtomicU64,
    /// Clients that have sent something, for CLIENT LIST and CLIENT KILL.
    pub clients: Arc<crate::clients::Registry>,
    pub slowlog: crate::slowlog::SlowLog,
    /// Becomes true when the server starts shutting down.
    stop: watch::Sender<bool>,
}

impl Shared {
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}

pub struct Server {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the configured address (port 0 picks a free port) and builds
    /// the backends.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        let addr = config.listen_addr().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid listen address '{}'", config.server.listen),
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let metrics = match config
            .server
            .metrics_listen
            .as_deref()
            .map(str::parse::<SocketAddr>)
        {
            Some(Ok(a)) => Some(TcpListener::bind(a).await?),
            _ => None,
        };
        let metrics_addr = match &metrics {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (router, backends) = reload::build(&config, &Built::new());
        let config_slowlog = (
            config.server.slowlog_log_slower_than,
            config.server.slowlog_max_len,
        );
        let shared = Arc::new(Shared {
            router: ArcSwap::from_pointee(router),
            config: ArcSwap::from_pointee(config),
            stats: Stats::default(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            local_addr,
            metrics_addr,
            backends: Mutex::new(backends),
            source: Mutex::new(Source::default()),
            next_client_id: AtomicU64::new(1),
            clients: Default::default(),
            slowlog: crate::slowlog::SlowLog::new(config_slowlog.0, config_slowlog.1),
            stop: watch::Sender::new(false),
        });
        Ok(Server {
            listener,
            metrics,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Remembers the config file, so that reloads re-read it.
    pub fn set_source(&self, source: Source) {
        if let Ok(mut s) = self.shared.source.lock() {
            *s = source;
        }
    }

    /// Serves until `shutdown` completes, then waits for connections to
    /// finish their in-flight commands.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let stop_rx = self.shared.stop.subscribe();
        // Each connection holds a sender; recv() returns None once all are gone.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        info!(addr = %self.shared.local_addr, "keyway listening");
        if let Some(l) = self.metrics.take() {
            let shared = self.shared.clone();
            let ready: metrics::Readiness = Arc::new(move || readiness(&shared));
            tokio::spawn(metrics::serve(l, stop_rx.clone(), ready));
        }
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => self.admit(stream, &done_tx),
                Err(e) => {
                    // Typically out of file descriptors: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        info!("shutting down: finishing in-flight commands");
        self.shared.stop.send_replace(true);
        drop(done_tx);
        if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
            .await
            .is_err()
        {
            warn!("connections still busy after {SHUTDOWN_GRACE:?}; exiting anyway");
        }
    }

    fn admit(&self, stream: TcpStream, done: &mpsc::Sender<()>) {
        let shared = self.shared.clone();
        let max = shared.config.load().server.max_clients;
        if shared.stats.connected.load(Ordering::Relaxed) >= max {
            shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            metrics().connections_rejected.inc();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            return;
        }
        let _ = stream.set_nodelay(true);
        metrics().connections_total.inc();
        shared
            .stats
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted::new(shared);
        tokio::spawn(client(stream, admitted, done.downgrade()));
    }
}

/// A client counted as connected (and its fixed cost as client memory)
/// for as long as its task lives, however the task ends: a panic in it
/// must not leave its slot taken for good.
struct Admitted(Arc<Shared>);

impl Admitted {
    fn new(shared: Arc<Shared>) -> Admitted {
        shared.stats.connected.fetch_add(1, Ordering::Relaxed);
        metrics().connections.inc();
        crate::alloc::clients_add(crate::limits::PER_CLIENT as isize);
        Admitted(shared)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
        metrics().connections.dec();
        crate::alloc::clients_add(-(crate::limits::PER_CLIENT as isize));
    }
}

/// Ready unless a backend that a namespace uses is down (one that connects
/// on first use counts as ready, or no client would ever be sent to try
/// it). The text lists every backend's health.
fn readiness(shared: &Shared) -> (bool, String) {
    let router = shared.router.load();
    let mut ready = true;
    let mut text = String::new();
    for (name, kind, health) in router.backends_health() {
        ready &= !health.starts_with("down");
        text.push_str(&format!("backend '{name}' ({kind}): {health}\n"));
    }
    (ready, text)
}

/// One client's task. Until its first bytes arrive a client is only this
/// small future (no Connection, buffers, span or shutdown watch), because
/// many clients connect and then sit idle in a pool. Shutdown does not wait
/// for such a client; it ends with the process.
async fn client(stream: TcpStream, admitted: Admitted, done: mpsc::WeakSender<()>) {
    // Peek rather than readable(): a new socket reports ready once before
    // any data came. poll_peek keeps no waiter state in this future.
    let first = poll_fn(|cx| {
        let mut byte = [0u8; 1];
        stream.poll_peek(cx, &mut ReadBuf::new(&mut byte))
    });
    // With `timeout`, a client that never sends anything is closed too.
    let first = match admitted.0.config.load().server.timeout {
        0 => first.await.ok(),
        // Boxed: the timer is held only by clients that have one.
        secs => match Box::pin(tokio::time::timeout(Duration::from_secs(secs), first)).await {
            Ok(r) => r.ok(),
            Err(_) => {
                if let Ok(peer) = stream.peer_addr() {
                    crate::limits::closing(
                        peer,
                        "timeout",
                        &format!("idle for {secs} s (timeout)"),
                    );
                }
                None
            }
        },
    };
    // Only a box is kept across this await, so that the idle stage above
    // (one per idle client) holds little more than the socket.
    if let Some(session) = first.and_then(|_| session(stream, &admitted.0, done)) {
        session.await;
    }
    drop(admitted);
}

/// A client's session once it has sent something; None when the server is
/// stopping (or stopped) or the client already went away.
fn session(
    stream: TcpStream,
    shared: &Arc<Shared>,
    done: mpsc::WeakSender<()>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    // Gone when the server has stopped and its last busy client finished.
    let done = done.upgrade()?;
    let stop = shared.stop.subscribe();
    if *stop.borrow() {
        return None;
    }
    let peer = stream.peer_addr().ok()?;
    let id = shared.next_client_id();
    let span = info_span!("client", id, %peer);
    let conn = Connection::new(stream, peer, id, shared.clone());
    Some(Box::pin(
        async move {
            debug!("connected");
            if let Err(e) = conn.run(stop).await {
                debug!(error = %e, "connection ended with an error");
            }
            debug!("disconnected");
            drop(done);
        }
        .instrument(span),
    ))
}
