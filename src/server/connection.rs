//! One client connection: read every complete request in the buffer, run
//! them as a batch, write the replies in order.
//!
//! A connection that is waiting for its client holds no read or write
//! buffer: they are taken when data arrives and given back once the batch
//! is answered, so idle clients cost little. They come from a small pool
//! per thread ([`buffers`]), as Redis 7.4 reuses one query buffer.
//!
//! What a client can make keyway hold is bounded here, as Redis bounds it:
//! - Replies are written once they pass [`FLUSH_AT`] bytes, and a pipeline
//!   runs in segments sized by the replies it has been getting (see
//!   [`Segments`]), so a client that does not read its replies stops being
//!   served instead of making keyway hold them. What it leaves unwritten is
//!   held to `client_output_buffer_limit` (the pubsub class while it is
//!   subscribed).
//! - A client idle for `timeout` seconds is closed; a half-sent request
//!   keeps a buffer no larger than itself.
//! - Everything the client holds is counted as client memory (see
//!   [`crate::server::limits`]), bounded by `max_memory_clients`.
//!
//! A panic while running a batch (a bug in keyway) is caught: it is logged
//! with the command, counted, the client gets `-ERR internal error` and is
//! closed, and the rest of the process carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::watch;
use tokio_util::codec::Decoder;
use tracing::{debug, error};

use crate::proxy::dispatch;
use crate::proxy::keyspace;
use crate::proxy::pubsub::{PubSub, Push};
use crate::proxy::router::Router;
use crate::proxy::transaction::Transaction;
use crate::server::admin;
use crate::server::buffers;
use crate::server::clients::{Client, ClientState, Details, Replies};
use crate::server::limits::{self, Usage};
use crate::server::shared::Shared;
use crate::server::stream::ClientStream;
use crate::wire::command::{self, BLOCKING, CommandSpec, KEYSPACE, LOCAL, PUBSUB, TX};
use crate::wire::error::CmdError;
use crate::wire::limit::OutputLimit;
use crate::wire::metrics::{NamespaceMetrics, metrics};
use crate::wire::protocol::{ProtocolError, Request, RequestCodec};
use crate::wire::reply::Reply;
use crate::wire::util::CatchUnwind;

const READ_CHUNK: usize = 16 * 1024;

/// Replies are written to the client once this many bytes wait, before the
/// rest of the batch runs: a client that does not read then holds keyway
/// back instead of making it buffer every reply.
pub const FLUSH_AT: usize = 64 * 1024;

/// A half-sent request at most this long is moved to a buffer of its own
/// size while the connection waits for the rest.
const SHRINK_BELOW: usize = 1024;

/// How many routed commands of a pipeline run before their replies are
/// encoded (and, past [`FLUSH_AT`], written): as many as fit in
/// `SEGMENT_BYTES` of replies, judging by the last segment's replies. It
/// starts small and at most doubles, so a pipeline of GETs of large values
/// is run a few at a time, and one of small replies in large batches.
struct Segments {
    limit: usize,
}

const SEGMENT_BYTES: usize = 256 * 1024;
const SEGMENT_FIRST: usize = 8;
const SEGMENT_MAX: usize = 1024;

impl Segments {
    fn observe(&mut self, commands: usize, bytes: usize) {
        if commands == 0 {
            return;
        }
        let per_command = (bytes / commands).max(1);
        let fit = (SEGMENT_BYTES / per_command).clamp(1, SEGMENT_MAX);
        self.limit = fit.min(self.limit.saturating_mul(2));
    }
}

pub struct Connection {
    /// Taken by `run` for its lifetime.
    stream: Option<ClientStream>,
    shared: Arc<Shared>,
    state: ClientState,
    codec: RequestCodec,
    tx: Transaction,
    /// Created on first SUBSCRIBE: most clients never subscribe, and an idle
    /// connection should cost little.
    pubsub: Option<Box<PubSub>>,
    /// After MONITOR: the commands of every client, to write out.
    monitor: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    segments: Segments,
    /// This client's share of client memory.
    usage: Usage,
    /// Capacity of the read buffer, for `usage`.
    read_held: usize,
    /// The command being run, for the log line of a caught panic.
    running: &'static str,
    /// Becomes true when the server shuts down: a write to a client that
    /// does not read gives up then.
    stop: Option<watch::Receiver<bool>>,
}

/// Requests waiting to be answered together, in order: each place holds a
/// reply already known, or None for the next reply of the routed requests.
#[derive(Default)]
struct Segment {
    order: Vec<Option<Reply>>,
    routed: Vec<(Request, &'static CommandSpec)>,
}

/// Why a connection stops: its socket failed, or it broke a limit (logged
/// where it was found).
type Ended = std::io::Error;

fn limit_broken() -> Ended {
    std::io::Error::other("closed for a limit")
}

impl Connection {
    pub fn new(stream: ClientStream, peer: SocketAddr, id: u64, shared: Arc<Shared>) -> Self {
        let config = shared.settings.load();
        let server = &config.server;
        let codec = RequestCodec::new(server.max_bulk_len.0 as usize).unauthenticated_bounds(
            server.unauthenticated_max_args,
            server.unauthenticated_max_bulk.0 as usize,
        );
        let authenticated = config.users.open();
        let user = config.users.default_user().clone();
        let client = Arc::new(Client::new(id, peer, shared.script_monitor()));
        let usage = Usage::new(client.mem.clone());
        let details = Details {
            user: user.name.clone(),
            ..Details::default()
        };
        client.set_details(&details);
        let registered = shared.clients.register(client);
        Connection {
            stream: Some(stream),
            shared,
            state: ClientState {
                registered,
                details,
                authenticated,
                user,
                closing: false,
                replies: Replies::On,
                query_len: 0,
            },
            codec,
            tx: Transaction::default(),
            pubsub: None,
            monitor: None,
            segments: Segments {
                limit: SEGMENT_FIRST,
            },
            usage,
            read_held: 0,
            running: "(none)",
            stop: None,
        }
    }

    fn peer(&self) -> SocketAddr {
        self.state.registered.client.peer
    }

    fn subscribed(&self) -> bool {
        self.pubsub.as_ref().is_some_and(|p| p.active())
    }

    /// The output limit of the client's class.
    fn output_limit(&self) -> (OutputLimit, &'static str) {
        let limits = self
            .shared
            .settings
            .load()
            .server
            .client_output_buffer_limit;
        if self.subscribed() {
            (limits.pubsub, "client_output_buffer_limit pubsub")
        } else {
            (limits.normal, "client_output_buffer_limit normal")
        }
    }

    /// Records what the client holds besides its read buffer (`out`), and
    /// closes the largest clients if all of them together hold too much.
    fn account(&mut self, out: usize) {
        let held = limits::PER_SESSION + self.read_held + out + self.codec.held() + self.tx.held();
        if let Some(total) = self.usage.set(held) {
            let max = self.shared.settings.load().server.max_memory_clients.0 as usize;
            if max > 0 && total > max {
                limits::evict_clients(&self.shared.clients, max);
            }
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(());
        };
        self.stop = Some(stop.clone());
        let mut buf = BytesMut::new();
        // Whether `buf` grew past the pool's bound since it was taken: its
        // capacity after requests were split off no longer tells.
        let mut buf_large = false;
        let me = self.state.registered.client.clone();
        // Complete requests may wait in `buf`: decoding stops after an
        // unauthenticated client's AUTH, whose outcome changes the limits
        // on what follows.
        let mut more = false;
        let mut last_active = tokio::time::Instant::now();
        loop {
            if !more {
                let subscribed = self.subscribed();
                let timeout = self.shared.settings.load().server.timeout;
                // Subscribers are never idle, as in Redis.
                let idle = (timeout > 0 && !subscribed)
                    .then(|| last_active + std::time::Duration::from_secs(timeout));
                let overflow = self.pubsub.as_ref().map(|p| p.overflow());
                tokio::select! {
                    r = stream.readable() => r?,
                    // CLIENT KILL, or closed for a limit.
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
                        self.write_out(&mut stream, &out).await?;
                        if lost {
                            // The client must reconnect and resubscribe.
                            let _ = stream.shutdown().await;
                            return Ok(());
                        }
                        continue;
                    }
                    why = pubsub_overflow(overflow), if subscribed => {
                        limits::closing(self.peer(), "client_output_buffer_limit pubsub", &why);
                        return Ok(());
                    }
                    line = next_line(&mut self.monitor), if self.monitor.is_some() => {
                        let Some(line) = line else {
                            // It fell too far behind (see monitor::QUEUE).
                            limits::closing(self.peer(), "MONITOR", "too far behind");
                            return Ok(());
                        };
                        let mut out = BytesMut::with_capacity(line.len() + 3);
                        out.extend_from_slice(b"+");
                        out.extend_from_slice(&line);
                        out.extend_from_slice(b"\r\n");
                        self.write_out(&mut stream, &out).await?;
                        continue;
                    }
                    _ = stop.changed() => return Ok(()),
                    _ = sleep_until(idle), if idle.is_some() => {
                        limits::closing(
                            self.peer(),
                            "timeout",
                            &format!("idle for {timeout} s (timeout)"),
                        );
                        return Ok(());
                    }
                }
                if buf.is_empty() && buf.capacity() == 0 {
                    buf = buffers::take();
                }
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                buf_large |= buf.capacity() > buffers::LARGEST;
                match stream.try_read_buf(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => _ = metrics().bytes_in.inc_by(n as u64),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // A socket reads as ready once more after its data
                        // was read: an idle client keeps no buffer, and a
                        // half-sent request one of its own size.
                        shrink_partial(&mut buf, &mut buf_large);
                        buffers::give_read(&mut buf, &mut buf_large);
                        self.read_held = buf.capacity();
                        self.account(0);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                last_active = tokio::time::Instant::now();
                self.read_held = buf.capacity();
                self.account(0);
            }
            more = false;
            let mut requests = Vec::with_capacity(16);
            let mut protocol_error = None;
            self.codec.set_authenticated(self.state.authenticated);
            loop {
                match self.codec.decode(&mut buf) {
                    Ok(Some(r)) => {
                        let spec = command::lookup(&r.args[0]);
                        let authenticates = !self.state.authenticated
                            && spec.is_some_and(|s| matches!(s.name, "auth" | "hello"));
                        requests.push((r, spec));
                        if authenticates {
                            more = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            let mut out = buffers::take();
            if !self.run_requests(&mut stream, requests, &mut out).await? {
                return Ok(());
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
                self.write_out(&mut stream, &out).await?;
                out.clear();
            }
            let small = out.capacity() <= buffers::LARGEST;
            buffers::give(out, small);
            if protocol_error.is_some() || self.state.closing {
                let _ = stream.shutdown().await;
                return Ok(());
            }
            if !more {
                shrink_partial(&mut buf, &mut buf_large);
            }
            buffers::give_read(&mut buf, &mut buf_large);
            self.read_held = buf.capacity();
            self.account(0);
            if *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// Runs a batch under the panic net; false when the connection must
    /// close (a caught panic, or the client left while blocked).
    async fn run_requests(
        &mut self,
        stream: &mut ClientStream,
        requests: Vec<(Request, Option<&'static CommandSpec>)>,
        out: &mut BytesMut,
    ) -> Result<bool, Ended> {
        if requests.is_empty() {
            return Ok(true);
        }
        let me = self.state.registered.client.clone();
        let blocking = requests
            .iter()
            .any(|(_, spec)| spec.is_some_and(|s| s.has(BLOCKING)));
        let outcome = if blocking {
            // A client that goes away while blocked must not take an
            // element it will never read: the batch is dropped with it.
            me.blocked.store(true, Ordering::Relaxed);
            let _unblocked = Unblock(&me);
            let mut batch = CatchUnwind(Box::pin(self.run_batch(requests, out, None)));
            tokio::select! {
                r = &mut batch => r,
                gone = stream.gone() => {
                    if gone {
                        return Ok(false);
                    }
                    batch.await
                }
                _ = me.kill.notified() => return Ok(false),
            }
        } else {
            // Boxed: the batch's future is large, and an idle connection
            // should not carry it.
            CatchUnwind(Box::pin(self.run_batch(requests, out, Some(stream)))).await
        };
        match outcome {
            Ok(r) => r.map(|()| true),
            Err(panic) => {
                error!(
                    client = %self.peer(),
                    command = self.running,
                    "internal error (a bug in keyway): {panic}; closing the client"
                );
                metrics().internal_error(self.running);
                Reply::error("ERR internal error").encode(self.state.resp3(), out);
                let _ = stream.write_all(out).await;
                Ok(false)
            }
        }
    }

    /// Writes `out` to the client, holding it to its class's output limit
    /// while the client does not read: past the hard limit, or past the
    /// soft limit for its seconds, the client is closed, as Redis closes it.
    async fn write_out(&mut self, stream: &mut ClientStream, out: &[u8]) -> Result<(), Ended> {
        let (limit, name) = self.output_limit();
        let me = &self.state.registered.client;
        let mut written = 0;
        let mut over_soft: Option<Instant> = None;
        while written < out.len() {
            let pending = out.len() - written;
            if !limit.is_off() {
                if limit.soft > 0 && pending as u64 >= limit.soft {
                    over_soft.get_or_insert_with(Instant::now);
                } else {
                    over_soft = None;
                }
                if let Some(why) = limit.exceeded(pending, over_soft.map(|t| t.elapsed())) {
                    limits::closing(self.peer(), name, &why);
                    return Err(limit_broken());
                }
            }
            match stream.try_write(&out[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Wake to judge the soft limit again when its time is up.
            let soft_due = over_soft
                .map(|t| t + std::time::Duration::from_secs(limit.soft_seconds))
                .map(tokio::time::Instant::from_std);
            let overflow = self.pubsub.as_ref().map(|p| p.overflow());
            let mut stop = self.stop.clone();
            tokio::select! {
                r = stream.writable() => r?,
                _ = sleep_until(soft_due), if soft_due.is_some() => {}
                _ = me.kill.notified() => return Err(limit_broken()),
                _ = stopped(stop.as_mut()) => return Err(limit_broken()),
                why = pubsub_overflow(overflow), if self.subscribed() => {
                    limits::closing(self.peer(), "client_output_buffer_limit pubsub", &why);
                    return Err(limit_broken());
                }
            }
        }
        metrics().bytes_out.inc_by(out.len() as u64);
        Ok(())
    }

    /// After a segment: writes the replies so far if they passed
    /// [`FLUSH_AT`] (when the batch may write), and counts what is held.
    async fn written_if_large(
        &mut self,
        out: &mut BytesMut,
        writer: &mut Option<&mut ClientStream>,
    ) -> Result<(), Ended> {
        if out.len() >= FLUSH_AT {
            if let Some(stream) = writer.as_deref_mut() {
                self.account(out.capacity());
                self.write_out(stream, out).await?;
                out.clear();
                if out.capacity() > buffers::LARGEST {
                    *out = BytesMut::new();
                }
            }
        }
        self.account(out.capacity());
        Ok(())
    }

    /// Runs a batch of requests and encodes their replies in order. Requests
    /// for backends accumulate until a request keyway must answer itself
    /// (or that walks the keyspace), or until the segment is full, so that
    /// pipelines reach backends as batches while every reply keeps its place.
    /// Each request comes with its command, looked up once. With a
    /// `writer`, replies are written as they pass [`FLUSH_AT`].
    async fn run_batch(
        &mut self,
        requests: Vec<(Request, Option<&'static CommandSpec>)>,
        out: &mut BytesMut,
        writer: Option<&mut ClientStream>,
    ) -> Result<(), Ended> {
        let reply_command = |(req, spec): &(Request, Option<&'static CommandSpec>)| {
            let sub = req.args.get(1).map(|a| a.to_ascii_uppercase());
            spec.is_some_and(|s| s.name == "client") && sub.as_deref() == Some(b"REPLY")
        };
        if self.state.replies == Replies::On && !requests.iter().any(reply_command) {
            return self.run_all_replies(requests, out, writer).await;
        }
        // CLIENT REPLY OFF or SKIP in play: one request at a time, each
        // reply kept or dropped (the command's own too, as in Redis).
        for request in requests {
            let changes_mode = reply_command(&request);
            // (Un)subscribe pushes go out in any reply mode, as in Redis.
            let pushes = request.1.is_some_and(|s| s.name.ends_with("subscribe"));
            let mut silent = match self.state.replies {
                Replies::On => false,
                Replies::Off => true,
                Replies::SkipNext => {
                    self.state.replies = Replies::On;
                    true
                }
            };
            let mut own = BytesMut::new();
            let ran = self.run_all_replies(vec![request], &mut own, None).await;
            if changes_mode {
                // CLIENT REPLY ON is answered; OFF and SKIP are not.
                silent = self.state.replies != Replies::On;
            }
            if !silent || (pushes && own.first() != Some(&b'-')) {
                out.extend_from_slice(&own);
            }
            ran?;
        }
        Ok(())
    }

    /// [`Self::run_batch`] with every reply sent.
    async fn run_all_replies(
        &mut self,
        requests: Vec<(Request, Option<&'static CommandSpec>)>,
        out: &mut BytesMut,
        mut writer: Option<&mut ClientStream>,
    ) -> Result<(), Ended> {
        self.shared
            .stats
            .commands
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let last = requests.last().and_then(|(_, spec)| spec.map(|s| s.id));
        self.state.registered.client.ran(last);
        // ACL SETUSER applies to connections logged in already, as in Redis.
        if let Some(u) = self.shared.settings.load().users.get(&self.state.user.name) {
            if !Arc::ptr_eq(u, &self.state.user) {
                self.state.user = u.clone();
            }
        }
        self.state.user.ran(requests.len());
        // One router for the whole batch: a reload applies to later batches.
        let router = self.shared.router.load_full();
        // Sized for the batch (growing them cost reallocations per pipeline).
        let mut segment = Segment {
            order: Vec::with_capacity(requests.len()),
            routed: Vec::with_capacity(requests.len().min(self.segments.limit)),
        };
        for (req, spec) in requests {
            self.state.query_len = req.raw.len();
            let spec = match self.check(&req, spec, &router) {
                Ok(spec) => spec,
                Err(e) => {
                    self.tx.mark_dirty();
                    segment.order.push(Some(e.into()));
                    continue;
                }
            };
            self.running = spec.name;
            // MONITOR shows what runs, but not what may carry a password
            // nor the administrative commands Redis keeps from it.
            if self.shared.monitors.active()
                && !matches!(
                    spec.name,
                    "auth" | "hello" | "acl" | "config" | "monitor" | "debug" | "slowlog"
                )
            {
                self.shared
                    .monitors
                    .feed(self.state.details.db, self.peer(), &req.args);
            }
            if spec.name == "monitor" {
                self.flush(&router, &mut segment, out).await;
                self.monitor = Some(self.shared.monitors.add());
                emit(&Reply::ok(), self.state.resp3(), out);
                continue;
            }
            // CLIENT PAUSE: what came before goes out, then this waits.
            if self.shared.paused(spec).is_some() {
                self.flush(&router, &mut segment, out).await;
                while let Some(until) = self.shared.paused(spec) {
                    let left = until.saturating_duration_since(Instant::now());
                    // Short naps, so that UNPAUSE ends the wait at once.
                    tokio::time::sleep(left.min(Duration::from_millis(10))).await;
                }
            }
            if self.subscribed() && !self.state.resp3() {
                // RESP2 pub/sub mode allows only these, as in Redis.
                if !matches!(
                    spec.name,
                    "subscribe"
                        | "unsubscribe"
                        | "psubscribe"
                        | "punsubscribe"
                        | "ssubscribe"
                        | "sunsubscribe"
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
            let subscription =
                spec.has(PUBSUB) && !matches!(spec.name, "publish" | "spublish" | "pubsub");
            // MEMORY describes keyway, but for USAGE, which reads a key.
            let local =
                spec.has(LOCAL) || spec.name == "memory" && admin::memory::is_local(&req.args);
            if local || spec.has(KEYSPACE) || spec.has(TX) || subscription {
                keyway_commands().command(spec);
            }
            // keyway's own commands wait in a transaction for its EXEC,
            // but those that change how later ones are queued or checked.
            let own = local || spec.has(KEYSPACE) && !matches!(spec.name, "flushdb" | "flushall");
            if self.tx.in_multi()
                && own
                && !matches!(
                    spec.name,
                    "select" | "auth" | "hello" | "monitor" | "reset" | "quit"
                )
            {
                self.flush(&router, &mut segment, out).await;
                emit(&self.tx.queue_own(req, spec), self.state.resp3(), out);
            } else if (self.tx.in_multi() && !matches!(spec.name, "quit" | "reset")) || spec.has(TX)
            {
                self.flush(&router, &mut segment, out).await;
                let resp3 = self.state.resp3();
                let timing = self.timing(&req.raw, 0);
                let db = self.state.details.db;
                let mut reply = self.tx.execute(&router, req, spec, resp3, db).await;
                self.timed(timing);
                for own in self.tx.take_own() {
                    let r = self.own_reply(&router, &own.req, own.spec).await;
                    if let Reply::Array(items) = &mut reply {
                        if let Some(slot) = items.get_mut(own.at) {
                            *slot = r;
                        }
                    }
                }
                emit(&reply, resp3, out);
            } else if subscription {
                self.flush(&router, &mut segment, out).await;
                let pubsub = self.pubsub.get_or_insert_with(|| {
                    let config = self.shared.settings.load();
                    Box::new(PubSub::new(
                        self.state.registered.client.queued.clone(),
                        config.server.client_output_buffer_limit.pubsub,
                    ))
                });
                for reply in pubsub.execute(&router, spec, &req.args).await {
                    emit(&reply, self.state.resp3(), out);
                }
                self.state.details.pubsub = pubsub.active();
                self.state.publish();
            } else if local || spec.has(KEYSPACE) {
                self.flush(&router, &mut segment, out).await;
                let reply = self.own_reply(&router, &req, spec).await;
                emit(&reply, self.state.resp3(), out);
                if self.state.closing {
                    return Ok(());
                }
            } else {
                segment.order.push(None);
                segment.routed.push((req, spec));
                if segment.routed.len() < self.segments.limit {
                    continue;
                }
                self.flush(&router, &mut segment, out).await;
            }
            self.written_if_large(out, &mut writer).await?;
        }
        self.flush(&router, &mut segment, out).await;
        self.account(out.capacity());
        Ok(())
    }

    /// Runs a command keyway answers itself: an admin command, or one over
    /// the whole keyspace.
    async fn own_reply(&mut self, router: &Router, req: &Request, spec: &CommandSpec) -> Reply {
        if !(spec.has(LOCAL) || spec.name == "memory" && admin::memory::is_local(&req.args)) {
            let timing = self.timing(&req.raw, 0);
            let databases = self.shared.settings.load().server.databases;
            let (user, db) = (&*self.state.user, self.state.details.db);
            let r = keyspace::execute(router, spec, &req.args, user, db, databases).await;
            self.timed(timing);
            return r;
        }
        // SLOWLOG keeps keyway's own commands too, as Redis keeps every
        // command, but never one that may carry a password (Redis redacts
        // those; keyway leaves them out).
        let secret = matches!(spec.name, "auth" | "hello" | "acl" | "config");
        let timing = (!secret).then(|| self.timing(&req.raw, 0)).flatten();
        let r = admin::execute(&mut self.state, &self.shared, router, spec, &req.args).await;
        self.timed(timing);
        // The commands that change what CLIENT LIST shows.
        if matches!(spec.name, "hello" | "client" | "reset" | "auth") {
            self.state.publish();
        }
        r
    }

    /// Starts timing a request for SLOWLOG or LATENCY (when one is on): its bytes, the
    /// commands pipelined after it, and the clock.
    fn timing(&self, raw: &bytes::Bytes, more: usize) -> Option<(Instant, bytes::Bytes, usize)> {
        (self.shared.slowlog.on() || self.shared.latency.on())
            .then(|| (Instant::now(), raw.clone(), more))
    }

    /// Logs a timed request in SLOWLOG and LATENCY if it was slow.
    fn timed(&self, timing: Option<(Instant, bytes::Bytes, usize)>) {
        let Some((started, raw, more)) = timing else {
            return;
        };
        let took = started.elapsed();
        self.shared.latency.record("command", took);
        let client = &self.state.registered.client;
        let name = &self.state.details.name;
        self.shared.slowlog.record(took, &raw, more, || {
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
        router: &Router,
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
        let user = &self.state.user;
        if let Err(denial) = user.check(spec, &req.args, router) {
            let context = if self.tx.in_multi() {
                "multi"
            } else {
                "toplevel"
            };
            let info = self.state.registered.client.line(
                self.shared.local_addr,
                Some((spec.name, self.state.query_len)),
                router.reports_7_2(),
            );
            self.shared
                .acl_log
                .add(&denial, spec.name, context, &user.name, info);
            metrics().acl_denied(&user.name, denial.reason());
            return Err(CmdError::msg(denial.text()));
        }
        Ok(spec)
    }

    async fn flush(&mut self, router: &Router, segment: &mut Segment, out: &mut BytesMut) {
        let routed = std::mem::take(&mut segment.routed);
        let commands = routed.len();
        let mut replies = if routed.is_empty() {
            Vec::new().into_iter()
        } else {
            self.running = routed[0].1.name;
            let timing = self.timing(&routed[0].0.raw, routed.len() - 1);
            let unblock = Some(&self.state.registered.client.unblock);
            let replies = dispatch::execute(
                router,
                routed,
                self.state.resp3(),
                self.state.details.db,
                unblock,
            )
            .await;
            self.timed(timing);
            replies.into_iter()
        };
        let before = out.len();
        for place in segment.order.drain(..) {
            let reply = place
                .or_else(|| replies.next())
                .unwrap_or_else(|| Reply::error("ERR missing reply"));
            emit(&reply, self.state.resp3(), out);
        }
        self.segments.observe(commands, out.len() - before);
    }
}

/// Moves a short half-sent request out of a large buffer, so that a client
/// that stops mid-request holds about what it sent.
fn shrink_partial(buf: &mut BytesMut, large: &mut bool) {
    if buf.is_empty() || buf.len() > SHRINK_BELOW || buf.capacity() < 4 * SHRINK_BELOW {
        return;
    }
    let mut small = BytesMut::with_capacity(buf.len());
    small.extend_from_slice(buf);
    buf.clear();
    let old = std::mem::replace(buf, small);
    buffers::give(old, !*large);
    *large = false;
}

/// Completes when the server starts shutting down, or never.
async fn stopped(stop: Option<&mut watch::Receiver<bool>>) {
    match stop {
        Some(s) => {
            let _ = s.wait_for(|stopping| *stopping).await;
        }
        None => std::future::pending().await,
    }
}

/// Completes at `at`, or never.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Completes with the reason when a subscriber's queued messages broke its
/// output limit, or never.
async fn pubsub_overflow(overflow: Option<Arc<crate::backend::Queue>>) -> String {
    match overflow {
        Some(q) => q.overflowed().await,
        None => std::future::pending().await,
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

/// Clears a client's blocked mark however its blocking batch ends.
struct Unblock<'a>(&'a Client);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.blocked.store(false, Ordering::Relaxed);
    }
}

/// The next message of a subscribed client (only polled when subscribed).
async fn next_push(pubsub: &mut Option<Box<PubSub>>) -> Push {
    match pubsub {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}

/// The next line for a monitoring client; None once it fell behind.
async fn next_line(
    monitor: &mut Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
) -> Option<bytes::Bytes> {
    match monitor {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_shrink_for_large_replies_and_grow_back() {
        let mut s = Segments {
            limit: SEGMENT_FIRST,
        };
        // 32 GETs of 1 MB: one at a time from then on.
        s.observe(32, 32 << 20);
        assert_eq!(s.limit, 1);
        // Small replies again: doubling, up to the cap.
        let mut seen = vec![s.limit];
        for _ in 0..12 {
            s.observe(s.limit, s.limit * 10);
            seen.push(s.limit);
        }
        assert_eq!(&seen[..4], &[1, 2, 4, 8]);
        assert_eq!(s.limit, SEGMENT_MAX);
        // A segment with no routed command changes nothing.
        s.observe(0, 0);
        assert_eq!(s.limit, SEGMENT_MAX);
    }

    #[test]
    fn a_short_partial_request_gets_a_buffer_of_its_size() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
        let mut large = false;
        shrink_partial(&mut buf, &mut large);
        assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n");
        assert!(buf.capacity() < 64, "{}", buf.capacity());
        // A long one keeps its buffer (copying it on every read would cost
        // quadratic time for a large request arriving in pieces).
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(&[b'x'; SHRINK_BELOW + 1]);
        shrink_partial(&mut buf, &mut large);
        assert_eq!(buf.capacity(), READ_CHUNK);
    }
}
