//! The server floor: the listener (accepts clients, enforces
//! `max_clients`, shuts down gracefully: stop accepting, let connections
//! finish the commands they are running, then return) and the state every
//! connection shares; a connection per client, the commands keyway answers
//! itself, the client registry and what clients may hold.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::proxy::router::Router;
use crate::server::connection::Connection;
use crate::server::settings::Settings;
use crate::wire::metrics::metrics;

pub mod acl;
pub mod admin;
pub mod clients;
pub mod connection;
pub mod limits;
pub mod settings;
pub mod shared;

use shared::{Shared, Stats};
pub mod slowlog;

/// How long shutdown waits for connections to finish their commands.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `settings.server.listen` (port 0 picks a free port) to serve
    /// the namespaces of `router`. `metrics_addr` is where operations'
    /// HTTP listener bound, for INFO.
    pub async fn bind(
        settings: Settings,
        router: Router,
        metrics_addr: Option<SocketAddr>,
    ) -> std::io::Result<Server> {
        let listen = &settings.server.listen;
        let addr = tokio::net::lookup_host(listen.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid listen address '{listen}'"),
                )
            })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let slowlog = slowlog::SlowLog::new(
            settings.server.slowlog_log_slower_than,
            settings.server.slowlog_max_len,
        );
        let shared = Arc::new(Shared {
            router: ArcSwap::from_pointee(router),
            settings: ArcSwap::from_pointee(settings),
            stats: Stats::default(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            local_addr,
            metrics_addr,
            next_client_id: AtomicU64::new(1),
            clients: Default::default(),
            slowlog,
            acl_log: Default::default(),
            stop: watch::Sender::new(false),
        });
        Ok(Server { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` completes, then waits for connections to
    /// finish their in-flight commands.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // Each connection holds a sender; recv() returns None once all are gone.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        info!(addr = %self.shared.local_addr, "keyway listening");
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
        let max = shared.settings.load().server.max_clients;
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
        crate::wire::alloc::clients_add(crate::server::limits::PER_CLIENT as isize);
        Admitted(shared)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
        metrics().connections.dec();
        crate::wire::alloc::clients_add(-(crate::server::limits::PER_CLIENT as isize));
    }
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
    let first = match admitted.0.settings.load().server.timeout {
        0 => first.await.ok(),
        // Boxed: the timer is held only by clients that have one.
        secs => match Box::pin(tokio::time::timeout(Duration::from_secs(secs), first)).await {
            Ok(r) => r.ok(),
            Err(_) => {
                if let Ok(peer) = stream.peer_addr() {
                    crate::server::limits::closing(
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
