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
//!
//! This file: where a server is (Endpoint, Sentinel, TLS, AUTH) and the
//! connections of one client (Conn, Feed); `pipe` the shared pipes;
//! `decode` the server's replies.

use std::io;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{info, warn};

use crate::wire::protocol::encode_multibulk;
use crate::wire::reply::Reply;
use crate::wire::util::bytes;

mod decode;
mod pipe;

pub use decode::decode;
pub use pipe::{Pipe, is_readonly};

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
    /// The server's `redis_version`, as its INFO said at the last connect:
    /// keyway reports the lowest of its servers' to clients, which pick
    /// commands by it.
    pub version: std::sync::Mutex<Option<String>>,
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
            server_id: None,
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
            server_id: None,
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

impl Endpoint {
    /// Asks the server its `redis_version` on a connection of its own,
    /// within the command timeout, and keeps it for INFO and HELLO. A
    /// server that does not answer leaves it unknown.
    pub async fn learn_version(&self) {
        let Ok(mut conn) = self.connect(false).await else {
            return;
        };
        let info = encode_multibulk(&[bytes("INFO"), bytes("server")]);
        let Ok(replies) = conn.call(&info, &[true], Some(self.command_timeout)).await else {
            return;
        };
        if let Some(Reply::Bulk(text) | Reply::Verbatim(text)) = replies.first() {
            let version = String::from_utf8_lossy(text).lines().find_map(|l| {
                l.strip_prefix("redis_version:")
                    .map(|v| v.trim().to_string())
            });
            if let (Some(v), Ok(mut known)) = (version, self.version.lock()) {
                *known = Some(v);
            }
        }
    }
}

/// One connection, used by one owner at a time.
pub struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
    resp3: bool,
    /// The server's CLIENT ID for this connection, once asked.
    server_id: Option<i64>,
}

impl Conn {
    /// The server's CLIENT ID for this connection (asked once), by which
    /// another connection can CLIENT UNBLOCK it.
    pub async fn server_id(&mut self, limit: Duration) -> Option<i64> {
        if self.server_id.is_none() {
            let ask = encode_multibulk(&[bytes("CLIENT"), bytes("ID")]);
            if let Ok(r) = self.call(&ask, &[true], Some(limit)).await {
                if let Some(Reply::Int(id)) = r.first() {
                    self.server_id = Some(*id);
                }
            }
        }
        self.server_id
    }

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

    /// Whether an idle connection is no longer usable: the server closed
    /// it (a restart, its `timeout`), or sent something no command asked
    /// for. Checked without waiting, before a command is written on it:
    /// a command written on a closed connection would fail although the
    /// server never saw it.
    pub fn is_stale(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut rb = tokio::io::ReadBuf::new(&mut byte);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        // Ready means end of stream, an error, or unasked-for bytes.
        std::pin::Pin::new(&mut *self.io)
            .poll_read(&mut cx, &mut rb)
            .is_ready()
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
        let Conn {
            io, mut buf, resp3, ..
        } = conn;
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
