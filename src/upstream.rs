//! Connections to a RESP server (Redis, Valkey, a managed Redis): where it
//! is, TLS and AUTH, and the multiplexed pipe that many clients share.
//!
//! A [`Pipe`] is one upstream connection owned by a task. Callers hand it
//! jobs (a client's batch, already encoded); the task writes every job that
//! is waiting with one write and routes replies back to each job in order.
//! When the connection fails, every job in flight gets an error (never a
//! silent retry) and the task reconnects with backoff, answering new jobs
//! at once with the reason while the server is down. The task also answers
//! every job by its deadline (the command timeout) wherever it waits: for a
//! connection, behind a write the server is slow to take, or for its
//! replies. So callers keep no timer of their own.
//!
//! A [`Conn`] is a connection of one client's own, for commands that hold
//! state on the server between commands (WATCH, SUBSCRIBE) or block.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode as resp2_decode;
use redis_protocol::resp2::types::RangeFrame as Range2;
use redis_protocol::resp3::decode::complete as resp3_decode;
use redis_protocol::resp3::types::RangeFrame as Range3;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tracing::{debug, info, warn};

use crate::metrics::metrics;
use crate::protocol::encode_multibulk;
use crate::reply::Reply;
use crate::util::bytes;

/// Jobs one pipe writes with a single write, at most.
const MAX_JOBS_PER_WRITE: usize = 256;
const READ_CHUNK: usize = 16 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a server is and how to open a session on it.
pub struct Endpoint {
    /// The backend's name, for error texts and logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// `Some` for rediss://; an error when the TLS settings cannot be used.
    pub tls: Option<Result<Tls, String>>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Sentinels to ask where the master is, on every connect; `host` and
    /// `port` are then not dialled.
    pub sentinel: Option<Sentinel>,
    /// Send READONLY after connecting: a cluster replica then serves reads
    /// of its master's slots (a master ignores it).
    pub readonly: bool,
    /// Shared pipes connected now, and the last reason one went down (for
    /// INFO's health line).
    pub up: AtomicUsize,
    pub last_error: std::sync::Mutex<String>,
}

/// Redis Sentinel: the master named `master` is wherever the sentinels say.
pub struct Sentinel {
    pub master: String,
    /// host:port of each sentinel, asked in order.
    pub nodes: Vec<(String, u16)>,
    /// For sentinels that require AUTH (their `requirepass`).
    pub password: Option<String>,
    /// The master last connected to, to log a change.
    pub last: std::sync::Mutex<Option<(String, u16)>>,
}

impl Sentinel {
    /// Asks the sentinels, in order, for the master's address; the first
    /// that knows it answers.
    async fn master(&self, limit: Duration) -> Result<(String, u16), String> {
        let mut reasons = Vec::new();
        for (host, port) in &self.nodes {
            match timeout(limit, self.ask(host, *port)).await {
                Ok(Ok(addr)) => return Ok(addr),
                Ok(Err(e)) => reasons.push(format!("{host}:{port}: {e}")),
                Err(_) => reasons.push(format!(
                    "{host}:{port}: no answer within {} ms",
                    limit.as_millis()
                )),
            }
        }
        Err(format!(
            "no sentinel gave master '{}' ({})",
            self.master,
            reasons.join("; ")
        ))
    }

    async fn ask(&self, host: &str, port: u16) -> Result<(String, u16), String> {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| io_reason(&e))?;
        let mut conn = Conn {
            io: Box::new(tcp),
            buf: BytesMut::new(),
            resp3: false,
        };
        let mut out = BytesMut::new();
        let mut inspect = Vec::new();
        if let Some(p) = &self.password {
            out.extend_from_slice(&encode_multibulk(&[bytes("AUTH"), bytes(p)]));
            inspect.push(true);
        }
        out.extend_from_slice(&encode_multibulk(&[
            bytes("SENTINEL"),
            bytes("get-master-addr-by-name"),
            bytes(&self.master),
        ]));
        inspect.push(true);
        let replies = conn.call(&out, &inspect, None).await?;
        match replies.last() {
            Some(Reply::Array(a)) => match (a.first(), a.get(1)) {
                (Some(Reply::Bulk(h)), Some(Reply::Bulk(p))) => {
                    let port = std::str::from_utf8(p)
                        .ok()
                        .and_then(|p| p.parse().ok())
                        .ok_or("unexpected sentinel reply")?;
                    Ok((String::from_utf8_lossy(h).into_owned(), port))
                }
                _ => Err("unexpected sentinel reply".into()),
            },
            Some(Reply::Nil) => Err(format!("does not know master '{}'", self.master)),
            Some(Reply::Error(e)) => Err(String::from_utf8_lossy(e).into_owned()),
            _ => Err("unexpected sentinel reply".into()),
        }
    }
}

pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

/// The error reply for commands a failure affected.
pub fn unavailable(name: &str, reason: &str) -> Reply {
    Reply::error(format!("ERR backend '{name}' unavailable: {reason}"))
}

/// A short, stable text for an I/O error.
pub fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "connection closed".into(),
        UnexpectedEof => "connection closed by server".into(),
        _ => e.to_string(),
    }
}

impl Endpoint {
    fn timed_out(&self, what: &str, d: Duration) -> String {
        format!("{what} timed out after {} ms", d.as_millis())
    }

    /// Opens a connection: TCP, TLS when configured, then HELLO/AUTH/SELECT,
    /// all within `connect_timeout`.
    pub async fn connect(&self, resp3: bool) -> Result<Conn, String> {
        let t = self.connect_timeout;
        let (host, port) = match &self.sentinel {
            None => (self.host.clone(), self.port),
            Some(s) => s.master(t).await?,
        };
        let conn = match timeout(t, self.open(&host, port, resp3)).await {
            Ok(r) => r?,
            Err(_) => return Err(self.timed_out("connect", t)),
        };
        if let Some(s) = &self.sentinel {
            let mut last = s.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Some((host.clone(), port));
            if *last != now {
                info!(backend = self.name.as_str(), master = %format!("{host}:{port}"), "sentinel master");
                *last = now;
            }
        }
        Ok(conn)
    }

    async fn open(&self, host: &str, port: u16, resp3: bool) -> Result<Conn, String> {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| io_reason(&e))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(tls)) => Box::new(
                tls.connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?,
            ),
        };
        let mut conn = Conn {
            io,
            buf: BytesMut::new(),
            resp3,
        };
        let mut hello: Vec<Vec<Bytes>> = Vec::new();
        let auth = self.password.as_ref().map(|p| {
            let user = self.username.as_deref().unwrap_or("default");
            (bytes(user), bytes(p))
        });
        if resp3 {
            let mut h = vec![bytes("HELLO"), bytes("3")];
            if let Some((u, p)) = &auth {
                h.extend([bytes("AUTH"), u.clone(), p.clone()]);
            }
            hello.push(h);
        } else if let Some((u, p)) = &auth {
            hello.push(vec![bytes("AUTH"), u.clone(), p.clone()]);
        }
        if self.db != 0 {
            hello.push(vec![bytes("SELECT"), bytes(&self.db.to_string())]);
        }
        if self.readonly {
            hello.push(vec![bytes("READONLY")]);
        }
        // A sentinel's answer can be a moment old: the server must say it
        // is the master before it gets writes.
        let check_role = self.sentinel.is_some();
        if check_role {
            hello.push(vec![bytes("ROLE")]);
        }
        if hello.is_empty() {
            return Ok(conn);
        }
        let mut out = BytesMut::new();
        for h in &hello {
            out.extend_from_slice(&encode_multibulk(h));
        }
        let inspect = vec![true; hello.len()];
        let replies = conn.call(&out, &inspect, None).await?;
        for r in &replies {
            if let Reply::Error(e) = r {
                return Err(String::from_utf8_lossy(e).into_owned());
            }
        }
        if check_role {
            let role = match replies.last() {
                Some(Reply::Array(a)) => match a.first() {
                    Some(Reply::Bulk(r)) | Some(Reply::Status(r)) => {
                        String::from_utf8_lossy(r).into_owned()
                    }
                    _ => String::new(),
                },
                _ => String::new(),
            };
            if role != "master" {
                return Err(format!(
                    "{host}:{port} is not the master yet (role {role}); asking the sentinels again"
                ));
            }
        }
        Ok(conn)
    }
}

/// One connection, used by one owner at a time.
pub struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
    resp3: bool,
}

impl Conn {
    /// Writes `out` (encoded commands) and reads one reply per entry of
    /// `inspect`, each waiting at most `limit` (None: as long as the
    /// connection lives, for blocking commands).
    pub async fn call(
        &mut self,
        out: &[u8],
        inspect: &[bool],
        limit: Option<Duration>,
    ) -> Result<Vec<Reply>, String> {
        self.io.write_all(out).await.map_err(|e| io_reason(&e))?;
        let mut replies = Vec::with_capacity(inspect.len());
        for &i in inspect {
            replies.push(self.read(i, limit).await?);
        }
        Ok(replies)
    }

    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// Records a protocol switch (HELLO) the caller is sending.
    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
    }

    /// Reads one reply; `inspect` asks for a structured reply rather than
    /// the raw bytes.
    pub async fn read(&mut self, inspect: bool, limit: Option<Duration>) -> Result<Reply, String> {
        loop {
            if let Some(r) = decode(&mut self.buf, self.resp3, inspect)? {
                return Ok(r);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let n = match limit {
                None => self.io.read_buf(&mut self.buf).await,
                Some(d) => match timeout(d, self.io.read_buf(&mut self.buf)).await {
                    Ok(r) => r,
                    Err(_) => return Err(format!("no reply within {} ms", d.as_millis())),
                },
            };
            match n {
                Ok(0) => return Err("connection closed by server".into()),
                Ok(_) => {}
                Err(e) => return Err(io_reason(&e)),
            }
        }
    }
}

/// A subscribed connection: a task reads every push and hands it on,
/// tagged; commands go out through [`Feed::send`]. Dropping the feed
/// closes the connection.
pub struct Feed {
    wr: tokio::io::WriteHalf<Box<dyn Io>>,
    task: tokio::task::AbortHandle,
}

impl Feed {
    pub fn start(conn: Conn, tag: usize, pushes: crate::backend::Pushes, name: String) -> Feed {
        let Conn { io, mut buf, resp3 } = conn;
        let (mut rd, wr) = tokio::io::split(io);
        let task = tokio::spawn(async move {
            let reason = loop {
                match decode(&mut buf, resp3, true) {
                    Ok(Some(r)) => {
                        if !pushes.send((tag, r)) {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => break e,
                }
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => break "connection closed by server".to_string(),
                    Ok(_) => {}
                    Err(e) => break io_reason(&e),
                }
            };
            warn!(backend = name.as_str(), %reason, "subscription connection lost");
            let _ = pushes.send((tag, unavailable(&name, &reason)));
        });
        Feed {
            wr,
            task: task.abort_handle(),
        }
    }

    pub async fn send(&mut self, out: &[u8]) -> Result<(), String> {
        self.wr.write_all(out).await.map_err(|e| io_reason(&e))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decodes one reply from the front of `buf`, or None when it is not all
/// there yet. Uninspected replies stay the server's bytes, forwarded as they
/// are; the connection speaks the client's protocol, so they fit.
pub fn decode(buf: &mut BytesMut, resp3: bool, inspect: bool) -> Result<Option<Reply>, String> {
    let bad = |e: redis_protocol::error::RedisProtocolError| format!("protocol error: {e}");
    if resp3 {
        let Some((frame, len)) = resp3_decode::decode_range(buf).map_err(bad)? else {
            return Ok(None);
        };
        let raw = buf.split_to(len).freeze();
        if !inspect {
            return Ok(Some(Reply::Raw(raw)));
        }
        Ok(Some(from_resp3(&raw, &frame)))
    } else {
        let Some((frame, len)) = resp2_decode::decode_range(buf).map_err(bad)? else {
            return Ok(None);
        };
        let raw = buf.split_to(len).freeze();
        if !inspect {
            return Ok(Some(Reply::Raw(raw)));
        }
        let mut nulls = null_kinds(&raw).into_iter();
        Ok(Some(from_resp2(&raw, &frame, &mut nulls)))
    }
}

fn sl(raw: &Bytes, r: &(usize, usize)) -> Bytes {
    raw.slice(r.0..r.1)
}

/// RESP2 has two nulls (`$-1` and `*-1`) that the decoded frame does not
/// tell apart: for each null in the reply, in order, whether it is `*-1`.
fn null_kinds(raw: &[u8]) -> Vec<bool> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let Some(end) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let line = &raw[at..at + end];
        at += end + 2;
        match line {
            b"*-1" => kinds.push(true),
            b"$-1" => kinds.push(false),
            [b'$', len @ ..] => {
                let n = std::str::from_utf8(len)
                    .ok()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                at += n + 2;
            }
            _ => {}
        }
    }
    kinds
}

fn from_resp2(raw: &Bytes, f: &Range2, nulls: &mut std::vec::IntoIter<bool>) -> Reply {
    match f {
        Range2::SimpleString(r) => Reply::Status(sl(raw, r)),
        // Already one line: it came as a RESP error.
        Range2::Error(r) => Reply::Error(sl(raw, r)),
        Range2::Integer(n) => Reply::Int(*n),
        Range2::BulkString(r) => Reply::Bulk(sl(raw, r)),
        Range2::Array(items) => {
            Reply::Array(items.iter().map(|i| from_resp2(raw, i, nulls)).collect())
        }
        Range2::Null if nulls.next() == Some(true) => Reply::NilArray,
        Range2::Null => Reply::Nil,
    }
}

fn from_resp3(raw: &Bytes, f: &Range3) -> Reply {
    let all = |items: &[Range3]| items.iter().map(|i| from_resp3(raw, i)).collect();
    match f {
        Range3::BlobString { data, .. } => Reply::Bulk(sl(raw, data)),
        Range3::BlobError { data, .. } | Range3::SimpleError { data, .. } => {
            Reply::Error(sl(raw, data))
        }
        Range3::SimpleString { data, .. } => Reply::Status(sl(raw, data)),
        Range3::Boolean { data, .. } => Reply::Bool(*data),
        Range3::Null => Reply::Nil,
        Range3::Number { data, .. } => Reply::Int(*data),
        Range3::Double { data, .. } => Reply::Double(*data),
        Range3::BigNumber { data, .. } => {
            let mut b = BytesMut::from(&b"("[..]);
            b.extend_from_slice(&sl(raw, data));
            b.extend_from_slice(b"\r\n");
            Reply::Raw(b.freeze())
        }
        Range3::VerbatimString { data, .. } => Reply::Verbatim(sl(raw, data)),
        Range3::Array { data, .. } => Reply::Array(all(data)),
        Range3::Set { data, .. } => Reply::Set(data.iter().map(|i| from_resp3(raw, i)).collect()),
        Range3::Push { data, .. } => Reply::Push(all(data)),
        Range3::Map { data, .. } => Reply::Map(
            data.iter()
                .map(|(k, v)| (from_resp3(raw, k), from_resp3(raw, v)))
                .collect(),
        ),
        _ => Reply::error("ERR unsupported RESP3 frame from backend"),
    }
}

/// Commands for one pipe, from one caller.
struct Job {
    out: Bytes,
    inspect: Vec<bool>,
    reply: oneshot::Sender<Vec<Reply>>,
    /// When the caller must have an answer: the pipe's task answers every
    /// job by then, so that callers need no timer of their own (one per
    /// call cost a timer-wheel insertion and often a driver wake-up).
    deadline: Instant,
}

impl Job {
    fn fail(self, name: &str, reason: &str) {
        let _ = self
            .reply
            .send(vec![unavailable(name, reason); self.inspect.len()]);
    }
}

/// A job written and waiting for its replies.
struct Pending {
    inspect: Vec<bool>,
    got: Vec<Reply>,
    /// None once the caller was answered with a timeout: the replies still
    /// come, and are read and dropped to keep the connection in step.
    reply: Option<oneshot::Sender<Vec<Reply>>>,
    deadline: Instant,
}

impl Pending {
    /// Answers the caller now: the replies already read (their commands
    /// ran), then an error for each of the rest.
    fn answer(&mut self, name: &str, reason: &str) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let mut replies = self.got.clone();
        replies.resize(self.inspect.len(), unavailable(name, reason));
        let _ = reply.send(replies);
    }
}

/// A shared, multiplexed upstream connection and the task that owns it.
pub struct Pipe {
    tx: mpsc::Sender<Job>,
    endpoint: Arc<Endpoint>,
}

impl Pipe {
    /// Starts the pipe's task; it connects at once and lives until the pipe
    /// is dropped. Must be called inside a tokio runtime.
    pub fn start(endpoint: Arc<Endpoint>, resp3: bool) -> Pipe {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run_pipe(endpoint.clone(), resp3, rx));
        Pipe { tx, endpoint }
    }

    /// Sends encoded commands and returns one reply per entry of `inspect`,
    /// within the command timeout.
    pub async fn call(&self, out: Bytes, inspect: Vec<bool>) -> Vec<Reply> {
        let n = inspect.len();
        let name = &self.endpoint.name;
        let limit = self.endpoint.command_timeout;
        let deadline = Instant::now() + limit;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            out,
            inspect,
            reply,
            deadline,
        };
        let fail = |reason: &str| vec![unavailable(name, reason); n];
        // The timer here is only armed when the queue is full.
        match timeout_at(deadline, self.tx.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return fail("connection task stopped"),
            Err(_) => return fail(&late(limit)),
        }
        rx.await.unwrap_or_else(|_| fail("connection closed"))
    }
}

fn late(limit: Duration) -> String {
    format!("no reply within {} ms", limit.as_millis())
}

async fn run_pipe(endpoint: Arc<Endpoint>, resp3: bool, mut rx: mpsc::Receiver<Job>) {
    let name = endpoint.name.as_str();
    let mut backoff = BACKOFF_MIN;
    // Logged once per outage, not once per attempt.
    let mut down: Option<String> = None;
    // Jobs that arrived while connecting, written first once connected.
    let mut backlog: VecDeque<Job> = VecDeque::new();
    // When a connection was last given up for answering READONLY.
    let mut demoted_at: Option<Instant> = None;
    loop {
        let connected = {
            let connecting = endpoint.connect(resp3);
            tokio::pin!(connecting);
            loop {
                let expiry = backlog.front().map(|j| j.deadline);
                tokio::select! {
                    r = &mut connecting => break r,
                    job = rx.recv() => match job {
                        Some(job) => backlog.push_back(job),
                        None => return,
                    },
                    _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                        let now = Instant::now();
                        while backlog.front().is_some_and(|j| j.deadline <= now) {
                            if let Some(job) = backlog.pop_front() {
                                job.fail(name, &late(endpoint.command_timeout));
                            }
                        }
                    }
                }
            }
        };
        let reason = match connected {
            Ok(conn) => {
                if down.take().is_some() {
                    info!(backend = name, "upstream reconnected");
                    metrics().reconnected(name);
                } else {
                    debug!(backend = name, "upstream connected");
                }
                backoff = BACKOFF_MIN;
                let open = metrics().upstream(name);
                open.inc();
                endpoint.up.fetch_add(1, Ordering::Relaxed);
                let recycle = demoted_at.is_none_or(|t| t.elapsed() >= RECYCLE_MIN);
                let ended = serve(conn, &mut backlog, &mut rx, &endpoint, recycle).await;
                open.dec();
                endpoint.up.fetch_sub(1, Ordering::Relaxed);
                match ended {
                    Ended::Failed(reason) => reason,
                    Ended::Dropped => return,
                    Ended::Demoted => {
                        // Every job written was answered; the backlog is
                        // written on the new connection, not failed.
                        warn!(
                            backend = name,
                            "server answered READONLY (no longer the master); reconnecting"
                        );
                        metrics().reconnected(name);
                        demoted_at = Some(Instant::now());
                        continue;
                    }
                }
            }
            Err(reason) => reason,
        };
        if down.as_ref() != Some(&reason) {
            warn!(backend = name, %reason, "upstream unavailable; reconnecting");
            down = Some(reason.clone());
        }
        if let Ok(mut last) = endpoint.last_error.lock() {
            last.clone_from(&reason);
        }
        for job in backlog.drain(..) {
            job.fail(name, &reason);
        }
        // Until the next attempt, jobs fail at once rather than wait.
        let until = Instant::now() + backoff;
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => job.fail(name, &reason),
                    None => return,
                },
                _ = sleep_until(until) => break,
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why [`serve`] gave up its connection.
enum Ended {
    /// The pipe was dropped.
    Dropped,
    /// The connection failed; jobs written but unanswered were failed.
    Failed(String),
    /// The server answered READONLY: after a failover it is a replica now
    /// (a DNS name such as a managed Redis's primary endpoint, or Sentinel,
    /// then leads to the new master). Every job written was answered.
    Demoted,
}

/// The shortest time between two reconnects for READONLY, so that a url
/// that names a replica (every write refused) does not reconnect for each.
const RECYCLE_MIN: Duration = Duration::from_secs(1);

/// Whether a reply is Redis's refusal of a write by a replica.
pub fn is_readonly(reply: &[u8]) -> bool {
    reply.starts_with(b"-READONLY ")
}

/// Runs jobs on a connection until it fails, the pipe is dropped, or (when
/// `recycle`) the server answers READONLY; see [`Ended`].
async fn serve(
    conn: Conn,
    backlog: &mut VecDeque<Job>,
    rx: &mut mpsc::Receiver<Job>,
    endpoint: &Endpoint,
    recycle: bool,
) -> Ended {
    let Conn { io, mut buf, resp3 } = conn;
    let (mut rd, mut wr) = tokio::io::split(io);
    let (ptx, mut prx) = mpsc::unbounded_channel::<Pending>();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let limit = endpoint.command_timeout;
    let name = endpoint.name.as_str();

    // Jobs taken but not yet written. They live outside the writer so that
    // when the connection fails they go back to the backlog, and are
    // answered with the reason, rather than dropped.
    let mut jobs: Vec<Job> = backlog.drain(..).collect();
    // Jobs that arrived while a write was in progress.
    let mut arrived: VecDeque<Job> = VecDeque::new();
    // Set by the reader on READONLY: the writer writes nothing more, and the
    // reader ends once every job written is answered.
    let demoted = AtomicBool::new(false);

    let writer = async {
        let mut out = BytesMut::new();
        loop {
            jobs.extend(arrived.drain(..));
            if jobs.is_empty() {
                if rx.recv_many(&mut jobs, MAX_JOBS_PER_WRITE).await == 0 {
                    return None;
                }
                if jobs.len() < MAX_JOBS_PER_WRITE {
                    // Let the runtime poll the sockets once more before
                    // writing, so that clients whose requests have already
                    // arrived join this write. Each write wakes the server,
                    // and on a busy machine that wake-up costs more than the
                    // write itself: at pipeline 1 this raised throughput by
                    // about a tenth.
                    tokio::task::yield_now().await;
                    while jobs.len() < MAX_JOBS_PER_WRITE {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                }
            }
            if demoted.load(Ordering::Relaxed) {
                // The jobs taken stay in `jobs`, for the next connection.
                std::future::pending::<()>().await;
            }
            let now = Instant::now();
            for job in jobs.drain(..) {
                if job.reply.is_closed() {
                    continue;
                }
                if job.deadline <= now {
                    job.fail(name, &late(limit));
                    continue;
                }
                out.extend_from_slice(&job.out);
                let _ = ptx.send(Pending {
                    got: Vec::with_capacity(job.inspect.len()),
                    inspect: job.inspect,
                    reply: Some(job.reply),
                    deadline: job.deadline,
                });
            }
            // A server slow to take the write must not keep the jobs
            // queued behind it past their deadline: they are taken in
            // meanwhile, and answered when it passes.
            let mut at = 0;
            while at < out.len() {
                let expiry = arrived.front().map(|j| j.deadline);
                tokio::select! {
                    biased;
                    n = wr.write(&out[at..]) => match n {
                        Ok(0) => return Some("connection closed".into()),
                        Ok(n) => at += n,
                        Err(e) => return Some(io_reason(&e)),
                    },
                    job = rx.recv(), if arrived.len() < MAX_JOBS_PER_WRITE => match job {
                        Some(job) => arrived.push_back(job),
                        None => return None,
                    },
                    _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                        let now = Instant::now();
                        while arrived.front().is_some_and(|j| j.deadline <= now) {
                            if let Some(job) = arrived.pop_front() {
                                job.fail(name, &late(limit));
                            }
                        }
                    }
                }
            }
            out.clear();
        }
    };

    let reader = async {
        // One timer, re-armed only when it fires: it watches both the
        // oldest job's deadline and a server that sends nothing at all.
        let watchdog = sleep_until(Instant::now() + limit);
        tokio::pin!(watchdog);
        // When the server last sent something, or replies started being
        // owed after none were.
        let mut progress = Instant::now();
        loop {
            while let Some(p) = queue.front_mut() {
                let inspect = p.reply.is_some() && p.inspect[p.got.len()];
                if recycle && buf.first() == Some(&b'-') && is_readonly(&buf) {
                    demoted.store(true, Ordering::Relaxed);
                }
                match decode(&mut buf, resp3, inspect) {
                    Ok(Some(r)) => {
                        p.got.push(r);
                        if p.got.len() == p.inspect.len() {
                            if let Some(p) = queue.pop_front() {
                                if let Some(reply) = p.reply {
                                    let _ = reply.send(p.got);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Some(e),
                }
            }
            if queue.is_empty() && !buf.is_empty() {
                return Some("unexpected data from server".into());
            }
            if demoted.load(Ordering::Relaxed) && queue.is_empty() {
                // Jobs the writer handed over before it stopped come first.
                match prx.try_recv() {
                    Ok(p) => {
                        queue.push_back(p);
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let waiting = !queue.is_empty();
            tokio::select! {
                biased;
                p = prx.recv() => match p {
                    Some(p) => {
                        if queue.is_empty() {
                            progress = Instant::now();
                        }
                        queue.push_back(p);
                    }
                    None => return None,
                },
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => return Some("connection closed by server".into()),
                    Ok(_) => progress = Instant::now(),
                    Err(e) => return Some(io_reason(&e)),
                },
                _ = &mut watchdog, if waiting => {
                    let now = Instant::now();
                    if now >= progress + limit {
                        return Some(late(limit));
                    }
                    // Callers past their deadline hear so now; their
                    // replies are dropped when they come.
                    for p in queue.iter_mut().take_while(|p| p.deadline <= now) {
                        p.answer(name, &late(limit));
                    }
                    let next = queue
                        .iter()
                        .find(|p| p.reply.is_some())
                        .map_or(progress + limit, |p| p.deadline.min(progress + limit));
                    watchdog.as_mut().reset(next);
                }
            }
        }
    };

    let reason = tokio::select! {
        r = writer => r,
        r = reader => r,
    };
    backlog.extend(jobs.drain(..).chain(arrived.drain(..)));
    let Some(reason) = reason else {
        return if demoted.load(Ordering::Relaxed) {
            Ended::Demoted
        } else {
            Ended::Dropped
        };
    };
    while let Ok(p) = prx.try_recv() {
        queue.push_back(p);
    }
    for mut p in queue.drain(..) {
        p.answer(name, &reason);
    }
    Ended::Failed(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str, resp3: bool) -> Option<Reply> {
        let mut b = BytesMut::from(s.as_bytes());
        decode(&mut b, resp3, true).unwrap()
    }

    #[test]
    fn decodes_replies() {
        assert_eq!(dec("*-1\r\n", false), Some(Reply::NilArray));
        assert_eq!(dec("$-1\r\n", false), Some(Reply::Nil));
        assert_eq!(
            dec("*2\r\n$1\r\na\r\n$-1\r\n", false),
            Some(Reply::Array(vec![Reply::bulk_str("a"), Reply::Nil]))
        );
        assert_eq!(dec("*2\r\n$1\r\na\r\n", false), None);
        assert_eq!(
            dec("*3\r\n*-1\r\n$2\r\n\r\n\r\n$-1\r\n", false),
            Some(Reply::Array(vec![
                Reply::NilArray,
                Reply::bulk_str("\r\n"),
                Reply::Nil
            ]))
        );
        assert_eq!(
            dec("-ERR x\r\n", false),
            Some(Reply::Error(Bytes::from("ERR x")))
        );
        assert_eq!(
            dec("%1\r\n+a\r\n,1.5\r\n", true),
            Some(Reply::Map(vec![(Reply::status("a"), Reply::Double(1.5))]))
        );
        let mut b = BytesMut::from(&b":1\r\n:2\r\n"[..]);
        assert_eq!(
            decode(&mut b, false, false).unwrap(),
            Some(Reply::Raw(Bytes::from(":1\r\n")))
        );
        assert_eq!(&b[..], b":2\r\n");
    }
}
