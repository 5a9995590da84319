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
use crate::server::stream::{ClientStream, TlsClient};
use crate::wire::metrics::metrics;

pub mod acl;
pub mod admin;
mod buffers;
pub mod clients;
pub mod connection;
pub mod latency;
pub mod limits;
pub mod monitor;
pub mod settings;
pub mod shared;
pub mod stream;
pub mod tls;

use shared::{Shared, Stats};
pub mod slowlog;

/// How long shutdown waits for connections to finish their commands.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Server {
    listener: TcpListener,
    /// `tls_listen`'s listener, when TLS is on.
    tls_listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// Redis's reply to a client from another host while protected mode is on.
const DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Binds `listen` (ip:port, or host:port resolved now).
pub async fn bind_addr(listen: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid listen address '{listen}'"),
            )
        })?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// The next client of an optional listener (never, without one).
async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
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
        let listener = bind_addr(&settings.server.listen).await?;
        let local_addr = listener.local_addr()?;
        let tls_listener = match &settings.server.tls_listen {
            Some(t) => Some(bind_addr(t).await?),
            None => None,
        };
        let tls_local_addr = match &tls_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let slowlog = slowlog::SlowLog::new(
            settings.server.slowlog_log_slower_than,
            settings.server.slowlog_max_len,
        );
        crate::backend::set_databases(settings.server.databases);
        let shared = Arc::new(Shared {
            router: ArcSwap::from_pointee(router),
            settings: ArcSwap::from_pointee(settings),
            stats: Stats::default(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            local_addr,
            tls_local_addr,
            metrics_addr,
            next_client_id: AtomicU64::new(1),
            clients: Default::default(),
            slowlog,
            latency: Default::default(),
            acl_log: Default::default(),
            pause: Default::default(),
            pausing: Default::default(),
            monitors: Default::default(),
            stop: watch::Sender::new(false),
        });
        Ok(Server {
            listener,
            tls_listener,
            shared,
        })
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
        // MEMORY STATS's startup figure.
        crate::wire::alloc::startup();
        info!(addr = %self.shared.local_addr, "keyway listening");
        if let Some(a) = self.shared.tls_local_addr {
            info!(addr = %a, "keyway listening for TLS clients");
        }
        self.warn_if_open();
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a.map(|(s, _)| (s, false)),
                a = accept(self.tls_listener.as_ref()) => a.map(|(s, _)| (s, true)),
            };
            match accepted {
                Ok((stream, tls)) => self.admit(stream, tls, &done_tx),
                Err(e) => {
                    // Typically out of file descriptors: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        drop(self.tls_listener);
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

    /// Says at start what protected mode does for this listener.
    fn warn_if_open(&self) {
        let settings = self.shared.settings.load();
        let local = self.shared.local_addr.ip().is_loopback();
        if !local && settings.users.open() {
            if settings.server.protected_mode {
                warn!(
                    "protected mode: the default user has no password, so clients from other hosts are refused; \
                     set server.password or [[users]], or protected_mode = false to let anyone in"
                );
            } else {
                warn!(
                    "protected_mode = false and the default user has no password: anyone who can reach keyway may use it"
                );
            }
        }
    }

    fn admit(&self, stream: TcpStream, tls: bool, done: &mpsc::Sender<()>) {
        let shared = self.shared.clone();
        let settings = shared.settings.load();
        let max = settings.server.max_clients;
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
        // Protected mode, after the client count as in Redis.
        let foreign = stream.peer_addr().is_ok_and(|p| !p.ip().is_loopback());
        if foreign && settings.server.protected_mode && settings.users.open() {
            shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            metrics().connections_rejected.inc();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(DENIED.as_bytes()).await;
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
        tokio::spawn(client(stream, tls, admitted, done.downgrade()));
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
async fn client(stream: TcpStream, tls: bool, admitted: Admitted, done: mpsc::WeakSender<()>) {
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
    if let Some(session) = first.and_then(|_| session(stream, tls, &admitted.0, done)) {
        session.await;
    }
    drop(admitted);
}

/// A client's session once it has sent something; None when the server is
/// stopping (or stopped) or the client already went away.
fn session(
    stream: TcpStream,
    tls: bool,
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
    let stream = if tls {
        // The configuration of the moment: a reload's new certificate is
        // for the clients that come after it.
        let config = shared.settings.load().tls.clone()?;
        let tls = rustls::ServerConnection::new(config.0)
            .map_err(|e| warn!(error = %e, "TLS session cannot start"))
            .ok()?;
        ClientStream::Tls(Box::new(TlsClient::new(stream, tls)))
    } else {
        ClientStream::Plain(stream)
    };
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
