//! One client connection: read every complete request in the buffer, run
//! them as a batch, write all replies in order with one write.
//!
//! A connection that is waiting for its client holds no read or write
//! buffer: they are taken when data arrives and given back once the batch
//! is answered, so idle clients cost little. They come from a small pool
//! per thread (as Redis 7.4 reuses one query buffer), because allocating
//! 16 KB per batch made glibc consolidate its free lists every time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::admin;
use crate::clients::{Client, Details, Registered};
use crate::command::{self, BLOCKING, CommandSpec, KEYSPACE, LOCAL, PUBSUB, TX};
use crate::dispatch;
use crate::error::CmdError;
use crate::keyspace;
use crate::metrics::{NamespaceMetrics, metrics};
use crate::protocol::{ProtocolError, Request, RequestCodec};
use crate::pubsub::{PubSub, Push};
use crate::reply::Reply;
use crate::router::Router;
use crate::server::Shared;
use crate::transaction::Transaction;

const READ_CHUNK: usize = 16 * 1024;

/// Idle buffers kept per thread for connections with data in flight.
mod pool {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Buffers kept per thread: enough for the clients one thread serves
    /// at once, 1 MB of read buffers at most.
    const KEEP: usize = 64;
    /// A buffer grown past this (a large request or reply) is freed.
    pub const LARGEST: usize = 64 * 1024;

    thread_local! {
        static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer, with the capacity it had when given back.
    pub fn take() -> BytesMut {
        FREE.with(|f| f.borrow_mut().pop()).unwrap_or_default()
    }

    /// Gives back an empty buffer; `small` says it never grew past LARGEST.
    pub fn give(b: BytesMut, small: bool) {
        if !b.is_empty() || !small || b.capacity() == 0 {
            return;
        }
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(b);
            }
        });
    }

    /// Gives back a drained read buffer, leaving none; `large` is whether
    /// it grew past LARGEST since it was taken, and is reset.
    pub fn give_read(buf: &mut BytesMut, large: &mut bool) {
        if buf.is_empty() {
            give(std::mem::take(buf), !*large);
            *large = false;
        }
    }
}

/// What keyway knows about a client, for HELLO, CLIENT and AUTH.
pub struct ClientState {
    /// The client in the registry (CLIENT LIST); it leaves on drop.
    pub registered: Registered,
    /// Name, library and protocol; published to the registry when a
    /// command changes them.
    pub details: Details,
    pub authenticated: bool,
    /// Set by QUIT: close after the replies are written.
    pub closing: bool,
}

impl ClientState {
    pub fn id(&self) -> u64 {
        self.registered.client.id
    }

    pub fn resp3(&self) -> bool {
        self.details.resp3
    }

    /// Shows the client's current details to CLIENT LIST.
    pub fn publish(&self) {
        self.registered.client.set_details(&self.details);
    }
}

pub struct Connection {
    /// Taken by `run` for its lifetime.
    stream: Option<TcpStream>,
    shared: Arc<Shared>,
    state: ClientState,
    codec: RequestCodec,
    tx: Transaction,
    /// Created on first SUBSCRIBE: most clients never subscribe, and an idle
    /// connection should cost little.
    pubsub: Option<Box<PubSub>>,
}

/// Requests waiting to be answered together, in order: each place holds a
/// reply already known, or None for the next reply of the routed requests.
#[derive(Default)]
struct Segment {
    order: Vec<Option<Reply>>,
    routed: Vec<(Request, &'static CommandSpec)>,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, id: u64, shared: Arc<Shared>) -> Self {
        let config = shared.config.load();
        let codec = RequestCodec::new(config.server.max_bulk_len.0 as usize);
        let authenticated = config.server.password.is_none();
        let registered = shared.clients.register(Arc::new(Client::new(id, peer)));
        Connection {
            stream: Some(stream),
            shared,
            state: ClientState {
                registered,
                details: Details::default(),
                authenticated,
                closing: false,
            },
            codec,
            tx: Transaction::default(),
            pubsub: None,
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(());
        };
        let mut buf = BytesMut::new();
        // Whether `buf` grew past the pool's bound since it was taken: its
        // capacity after requests were split off no longer tells.
        let mut buf_large = false;
        let me = self.state.registered.client.clone();
        loop {
            let subscribed = self.pubsub.as_ref().is_some_and(|p| p.active());
            tokio::select! {
                r = stream.readable() => r?,
                // CLIENT KILL.
                _ = me.kill.notified() => return Ok(()),
                push = next_push(&mut self.pubsub), if subscribed => {
                    let mut out = BytesMut::new();
                    let lost = match push {
                        Push::Deliver(r) => {
                            r.encode(self.state.resp3(), &mut out);
                            false
                        }
                        Push::Lost(r) => {
                            r.encode(self.state.resp3(), &mut out);
                            true
                        }
                    };
                    stream.write_all(&out).await?;
                    if lost {
                        // The client must reconnect and resubscribe.
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                    continue;
                }
                _ = stop.changed() => return Ok(()),
            }
            if buf.is_empty() && buf.capacity() == 0 {
                buf = pool::take();
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            buf_large |= buf.capacity() > pool::LARGEST;
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => _ = metrics().bytes_in.inc_by(n as u64),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // A new socket reads as ready once before any data
                    // came: an idle client keeps no buffer.
                    pool::give_read(&mut buf, &mut buf_large);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut requests = Vec::with_capacity(16);
            let mut protocol_error = None;
            loop {
                match self.codec.decode(&mut buf) {
                    Ok(Some(r)) => {
                        let spec = command::lookup(&r.args[0]);
                        requests.push((r, spec));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            let mut out = pool::take();
            let blocking = requests
                .iter()
                .any(|(_, spec)| spec.is_some_and(|s| s.has(BLOCKING)));
            if blocking {
                // A client that goes away while blocked must not take an
                // element it will never read: the batch is dropped with it.
                me.blocked.store(true, Ordering::Relaxed);
                let mut batch = Box::pin(self.run_batch(requests, &mut out));
                let _unblocked = Unblock(&me);
                tokio::select! {
                    _ = &mut batch => {}
                    gone = client_gone(&stream) => {
                        if gone {
                            return Ok(());
                        }
                        batch.await;
                    }
                    _ = me.kill.notified() => return Ok(()),
                }
            } else if !requests.is_empty() {
                // Boxed: the batch's future is large, and an idle connection
                // should not carry it.
                Box::pin(self.run_batch(requests, &mut out)).await;
            }
            if let Some(e) = &protocol_error {
                // As Redis: answer what came before, then the error, then close.
                debug!(error = %e, "protocol error");
                if !matches!(e, ProtocolError::Io(_)) {
                    Reply::error(format!("ERR Protocol error: {e}"))
                        .encode(self.state.resp3(), &mut out);
                }
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                metrics().bytes_out.inc_by(out.len() as u64);
                out.clear();
            }
            let small = out.capacity() <= pool::LARGEST;
            pool::give(out, small);
            if protocol_error.is_some() || self.state.closing {
                let _ = stream.shutdown().await;
                return Ok(());
            }
            pool::give_read(&mut buf, &mut buf_large);
            if *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// Runs a batch of requests and encodes their replies in order. Requests
    /// for backends accumulate until a request keyway must answer itself
    /// (or that walks the keyspace), so that pipelines reach backends as
    /// batches while every reply keeps its place.
    /// Each request comes with its command, looked up once.
    async fn run_batch(
        &mut self,
        requests: Vec<(Request, Option<&'static CommandSpec>)>,
        out: &mut BytesMut,
    ) {
        self.shared
            .stats
            .commands
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let last = requests.last().and_then(|(_, spec)| spec.map(|s| s.id));
        self.state.registered.client.ran(last);
        // One router for the whole batch: a reload applies to later batches.
        let router = self.shared.router.load_full();
        // Sized for the batch: growing them command by command cost a few
        // reallocations per pipeline.
        let mut segment = Segment {
            order: Vec::with_capacity(requests.len()),
            routed: Vec::with_capacity(requests.len()),
        };
        for (req, spec) in requests {
            let spec = match self.check(&req, spec) {
                Ok(spec) => spec,
                Err(e) => {
                    self.tx.mark_dirty();
                    segment.order.push(Some(e.into()));
                    continue;
                }
            };
            if self.pubsub.as_ref().is_some_and(|p| p.active()) && !self.state.resp3() {
                // RESP2 pub/sub mode allows only these, as in Redis.
                if !matches!(
                    spec.name,
                    "subscribe"
                        | "unsubscribe"
                        | "psubscribe"
                        | "punsubscribe"
                        | "ping"
                        | "quit"
                        | "reset"
                ) {
                    segment.order.push(Some(Reply::error(format!(
                        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                        spec.name
                    ))));
                    continue;
                }
                if spec.name == "ping" {
                    let msg = req.args.get(1).cloned().unwrap_or_default();
                    segment.order.push(Some(Reply::Array(vec![
                        Reply::bulk(bytes::Bytes::from_static(b"pong")),
                        Reply::Bulk(msg),
                    ])));
                    continue;
                }
            }
            if spec.name == "reset" {
                self.tx = Transaction::default();
                self.pubsub = None;
            }
            let subscription = spec.has(PUBSUB) && !matches!(spec.name, "publish" | "pubsub");
            if spec.has(LOCAL) || spec.has(KEYSPACE) || spec.has(TX) || subscription {
                keyway_commands().command(spec);
            }
            if (self.tx.in_multi() && !matches!(spec.name, "quit" | "reset")) || spec.has(TX) {
                self.flush(&router, &mut segment, out).await;
                let resp3 = self.state.resp3();
                let timing = self.timing(&req.raw, 0);
                let reply = self.tx.execute(&router, req, spec, resp3).await;
                self.timed(timing);
                emit(&reply, resp3, out);
            } else if subscription {
                self.flush(&router, &mut segment, out).await;
                let pubsub = self.pubsub.get_or_insert_with(Default::default);
                for reply in pubsub.execute(&router, spec, &req.args).await {
                    emit(&reply, self.state.resp3(), out);
                }
                self.state.details.pubsub = pubsub.active();
                self.state.publish();
            } else if spec.has(LOCAL) || spec.has(KEYSPACE) {
                self.flush(&router, &mut segment, out).await;
                let reply = if spec.has(LOCAL) {
                    let r = admin::execute(&mut self.state, &self.shared, &router, spec, &req.args)
                        .await;
                    // The commands that change what CLIENT LIST shows.
                    if matches!(spec.name, "hello" | "client" | "reset") {
                        self.state.publish();
                    }
                    r
                } else {
                    let timing = self.timing(&req.raw, 0);
                    let r = keyspace::execute(&router, spec, &req.args).await;
                    self.timed(timing);
                    r
                };
                emit(&reply, self.state.resp3(), out);
                if self.state.closing {
                    return;
                }
            } else {
                segment.order.push(None);
                segment.routed.push((req, spec));
            }
        }
        self.flush(&router, &mut segment, out).await;
    }

    /// Starts timing a request for SLOWLOG (when it is on): its bytes, the
    /// commands pipelined after it, and the clock.
    fn timing(&self, raw: &bytes::Bytes, more: usize) -> Option<(Instant, bytes::Bytes, usize)> {
        self.shared
            .slowlog
            .on()
            .then(|| (Instant::now(), raw.clone(), more))
    }

    /// Logs a timed request in SLOWLOG if it was slow.
    fn timed(&self, timing: Option<(Instant, bytes::Bytes, usize)>) {
        let Some((started, raw, more)) = timing else {
            return;
        };
        let client = &self.state.registered.client;
        let name = &self.state.details.name;
        self.shared
            .slowlog
            .record(started.elapsed(), &raw, more, || {
                (
                    client.peer.to_string(),
                    name.as_deref()
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default(),
                )
            });
    }

    /// Checks what keyway checks before routing; `spec` is the request's
    /// command, None when unknown.
    fn check(
        &self,
        req: &Request,
        spec: Option<&'static CommandSpec>,
    ) -> Result<&'static CommandSpec, CmdError> {
        let Some(spec) = spec else {
            return Err(CmdError::unknown_command(&req.args));
        };
        if !self.state.authenticated && !matches!(spec.name, "auth" | "hello" | "quit" | "reset") {
            return Err(CmdError::NoAuth);
        }
        if !spec.arity_ok(req.args.len()) {
            return Err(spec.arity_error());
        }
        Ok(spec)
    }

    async fn flush(&mut self, router: &Router, segment: &mut Segment, out: &mut BytesMut) {
        let routed = std::mem::take(&mut segment.routed);
        let mut replies = if routed.is_empty() {
            Vec::new().into_iter()
        } else {
            let timing = self.timing(&routed[0].0.raw, routed.len() - 1);
            let replies = dispatch::execute(router, routed, self.state.resp3()).await;
            self.timed(timing);
            replies.into_iter()
        };
        for place in segment.order.drain(..) {
            let reply = place
                .or_else(|| replies.next())
                .unwrap_or_else(|| Reply::error("ERR missing reply"));
            emit(&reply, self.state.resp3(), out);
        }
    }
}

/// Encodes a reply for the client, counting error replies by their code.
fn emit(reply: &Reply, resp3: bool, out: &mut BytesMut) {
    match reply {
        Reply::Error(text) => metrics().error(text),
        Reply::Raw(raw) if raw.first() == Some(&b'-') => {
            let line = raw[1..].split(|&b| b == b'\r').next().unwrap_or_default();
            metrics().error(line);
        }
        _ => {}
    }
    reply.encode(resp3, out);
}

/// Metrics of commands keyway answers itself (connection, keyspace,
/// transaction and subscription commands).
fn keyway_commands() -> &'static NamespaceMetrics {
    static M: std::sync::OnceLock<Arc<NamespaceMetrics>> = std::sync::OnceLock::new();
    M.get_or_init(|| NamespaceMetrics::new("(keyway)", "(keyway)"))
}

/// Completes with true when the client closed its connection, or false
/// when it sent more data (which stays unread for the next batch).
/// Clears a client's blocked mark however its blocking batch ends.
struct Unblock<'a>(&'a Client);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.blocked.store(false, Ordering::Relaxed);
    }
}

async fn client_gone(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(stream.peek(&mut b).await, Ok(n) if n > 0)
}

/// The next message of a subscribed client (only polled when subscribed).
async fn next_push(pubsub: &mut Option<Box<PubSub>>) -> Push {
    match pubsub {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}
