//! The `redis` backend: a Redis or Valkey server, or a managed Redis over
//! TLS with AUTH.
//!
//! Commands from every client share `connections` multiplexed pipes (see
//! [`crate::backend::upstream`]); a client's batch travels as one job, so a pipeline
//! stays a pipeline and MULTI ... EXEC sent in one batch cannot interleave
//! with other clients' commands. Blocking commands run on a connection of
//! their own so they never hold up the pipes; WATCH pins a session, and
//! subscriptions get a connection per subscribed client.
//!
//! RESP3 clients get pipes that spoke HELLO 3, so a reply forwarded as the
//! server's bytes is already in the client's protocol.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::{Backend, BackendConfig, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::backend::upstream::{
    Conn, Endpoint, Feed, Pipe, Sentinel, Tls, is_readonly, unavailable,
};
use crate::wire::command::{BLOCKING, CommandSpec};
use crate::wire::error::CmdError;
use crate::wire::protocol::encode_multibulk;
use crate::wire::reply::Reply;
use crate::wire::util::{bytes, is};

/// Dedicated connections kept for reuse by blocking commands, per protocol.
const IDLE_DEDICATED: usize = 8;

/// One, as twemproxy and Envoy default to: every client's commands share
/// one pipe, so Redis reads them as one pipeline. With 4, keyway→Redis at
/// pipeline 1 served 73-94k req/s; with 1, 75-115k and mostly above 100k
/// (3 alternating rounds of SET and GET).
fn default_connections() -> usize {
    1
}
pub(super) fn default_connect_timeout() -> u64 {
    1000
}
pub(super) fn default_command_timeout() -> u64 {
    2000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_command_timeout")]
    pub command_timeout_ms: u64,
    /// PEM file of the CAs to trust; without it rediss:// uses the system's.
    pub tls_ca_file: Option<String>,
    /// Redis Sentinel: the master's name. keyway asks `sentinels` where it
    /// is on every connect, so it follows a failover; the url's host and
    /// port are then not dialled (its host is still what TLS checks).
    pub sentinel_master: Option<String>,
    /// host:port of each sentinel, asked in order.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// For sentinels that require AUTH.
    pub sentinel_password: Option<String>,
}

/// A parsed `url`.
#[derive(Debug, PartialEq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl BackendSpec for RedisConfig {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn servers(&self) -> Vec<String> {
        match &self.sentinel_master {
            // The master moves; the sentinels and its name say which it is.
            Some(m) => vec![format!("{m}@{}", self.sentinels.join(","))],
            None => url_server(&self.url).into_iter().collect(),
        }
    }

    fn with_credentials(&self, username: Option<&str>, password: &str) -> Option<BackendConfig> {
        Some(BackendConfig::Redis(RedisConfig {
            url: with_login(&self.url, username, password),
            ..self.clone()
        }))
    }

    fn build(&self, name: &str) -> Arc<dyn Backend> {
        Arc::new(RedisBackend::new(name, self))
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let url = match parse_url(&self.url) {
            Ok(u) => Some(u),
            Err(e) => {
                out.push(("url".into(), e));
                None
            }
        };
        if !(1..=256).contains(&self.connections) {
            out.push(("connections".into(), "must be between 1 and 256".into()));
        }
        match (&self.sentinel_master, self.sentinels.is_empty()) {
            (Some(_), true) => out.push((
                "sentinels".into(),
                "must list at least one host:port with sentinel_master".into(),
            )),
            (Some(m), false) if m.is_empty() => {
                out.push(("sentinel_master".into(), "must not be empty".into()))
            }
            (None, false) => out.push((
                "sentinel_master".into(),
                "must name the master the sentinels watch".into(),
            )),
            _ => {}
        }
        for (i, s) in self.sentinels.iter().enumerate() {
            if host_port(s).is_none() {
                out.push((format!("sentinels[{i}]"), format!("'{s}' is not host:port")));
            }
        }
        out.extend(connection_problems(
            self.connect_timeout_ms,
            self.command_timeout_ms,
            self.tls_ca_file.as_deref(),
            url.as_ref().is_some_and(|u| !u.tls).then_some("url is"),
        ));
        out
    }
}

/// Problems with the settings the redis and redis-cluster backends share;
/// `plain` names what is reached without TLS, if anything is.
pub(super) fn connection_problems(
    connect_timeout_ms: u64,
    command_timeout_ms: u64,
    tls_ca_file: Option<&str>,
    plain: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if connect_timeout_ms == 0 {
        out.push(("connect_timeout_ms".into(), "must be at least 1".into()));
    }
    if command_timeout_ms == 0 {
        out.push(("command_timeout_ms".into(), "must be at least 1".into()));
    }
    if let Some(ca) = tls_ca_file {
        if let Some(what) = plain {
            out.push((
                "tls_ca_file".into(),
                format!("is set but {what} not rediss:// (TLS)"),
            ));
        }
        if let Err(e) = load_roots(Some(ca)) {
            out.push(("tls_ca_file".into(), e));
        }
    }
    out
}

/// `host:port` (an IPv6 host in brackets).
fn host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let p = p.parse::<u16>().ok().filter(|&p| p != 0)?;
    (!h.is_empty()).then(|| (h.to_string(), p))
}

/// Parses `redis[s]://[user:password@]host[:port][/db]`; user and password
/// may be percent-encoded.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else {
        return Err(format!(
            "'{url}' must start with redis:// or rediss:// (TLS)"
        ));
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (hostport, db) = match rest.split_once('/') {
        Some((h, "")) => (h, 0),
        Some((h, d)) => (
            h,
            d.parse::<u32>()
                .map_err(|_| format!("database '{d}' in '{url}' is not a number"))?,
        ),
        None => (rest, 0),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("unclosed '[' in '{url}'")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port '{p}' in '{url}' is not a port number"))?,
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => {
            let (u, p) = match a.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => ("", Some(a)),
            };
            let u = (!u.is_empty()).then(|| percent_decode(u));
            (u, p.map(percent_decode))
        }
    };
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        username,
        password,
        db,
    })
}

/// `host:port` of a url, to compare servers.
pub fn url_server(url: &str) -> Option<String> {
    parse_url(url)
        .ok()
        .map(|u| format!("{}:{}", u.host, u.port))
}

/// The url with its login replaced: `username` (or none, Redis's
/// `default`) and `password`, percent-encoded.
pub fn with_login(url: &str, username: Option<&str>, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let user = username.map(percent_encode).unwrap_or_default();
    format!("{scheme}://{user}:{}@{rest}", percent_encode(password))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn load_roots(ca_file: Option<&str>) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read '{path}': {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("'{path}' is not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("'{path}' holds a bad certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("'{path}' holds no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found; set tls_ca_file".into());
            }
        }
    }
    Ok(roots)
}

pub(super) fn tls(host: &str, ca_file: Option<&str>) -> Result<Tls, String> {
    let roots = load_roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))?;
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

pub struct RedisBackend {
    endpoint: Arc<Endpoint>,
    connections: usize,
    /// Shared pipes for RESP2 and RESP3 clients, started on first use.
    pipes: [OnceLock<Vec<Pipe>>; 2],
    next: AtomicUsize,
    idle: Idle,
    /// What makes the backend of another database, for clients that
    /// SELECT one; None in such a backend itself.
    config: Option<(String, RedisConfig)>,
    /// Those backends, by database, made on first use. Each has connections
    /// of its own that SELECT their database when they connect, so that a
    /// command never runs in a database its client did not choose (a
    /// SELECT sent ahead of it could fail and leave it in another).
    others: Mutex<HashMap<u8, Arc<RedisBackend>>>,
}

impl RedisBackend {
    pub fn new(name: &str, c: &RedisConfig) -> RedisBackend {
        let mut b = RedisBackend::with_db(name, c, None);
        b.config = Some((name.to_string(), c.clone()));
        // One connection now, closed once it has answered INFO, so that the
        // server's version is known before clients ask (HELLO is their
        // first command).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let endpoint = b.endpoint.clone();
            rt.spawn(async move { endpoint.learn_version().await });
        }
        b
    }

    /// The backend for client database `db` (1 and up): the server's
    /// database of that number, over one connection per protocol.
    fn database(&self, db: u8) -> Option<Arc<RedisBackend>> {
        let (name, c) = self.config.as_ref()?;
        let mut others = self.others.lock().ok()?;
        let b = others.entry(db).or_insert_with(|| {
            let one = RedisConfig {
                connections: 1,
                ..c.clone()
            };
            Arc::new(RedisBackend::with_db(name, &one, Some(u32::from(db))))
        });
        Some(b.clone())
    }

    fn with_db(name: &str, c: &RedisConfig, db_override: Option<u32>) -> RedisBackend {
        // Validation has checked the url; a bad one fails every connect.
        let url = parse_url(&c.url);
        let (host, port, username, password, db, tls) = match url {
            Ok(u) => {
                let tls = u.tls.then(|| tls(&u.host, c.tls_ca_file.as_deref()));
                (u.host, u.port, u.username, u.password, u.db, tls)
            }
            Err(e) => (String::new(), 0, None, None, 0, Some(Err(e))),
        };
        let db = db_override.unwrap_or(db);
        RedisBackend {
            endpoint: Arc::new(Endpoint {
                name: name.to_string(),
                host,
                port,
                username,
                password,
                db,
                tls,
                connect_timeout: Duration::from_millis(c.connect_timeout_ms),
                command_timeout: Duration::from_millis(c.command_timeout_ms),
                sentinel: c.sentinel_master.as_ref().map(|m| Sentinel {
                    master: m.clone(),
                    nodes: c.sentinels.iter().filter_map(|s| host_port(s)).collect(),
                    password: c.sentinel_password.clone(),
                    last: Default::default(),
                }),
                readonly: false,
                up: Default::default(),
                last_error: Default::default(),
                version: Default::default(),
            }),
            connections: c.connections.max(1),
            pipes: [OnceLock::new(), OnceLock::new()],
            next: AtomicUsize::new(0),
            idle: Mutex::new([Vec::new(), Vec::new()]),
            config: None,
            others: Mutex::new(HashMap::new()),
        }
    }

    fn pipe(&self, resp3: bool) -> &Pipe {
        let pipes = self.pipes[resp3 as usize].get_or_init(|| {
            (0..self.connections)
                .map(|_| Pipe::start(self.endpoint.clone(), resp3))
                .collect()
        });
        &pipes[self.next.fetch_add(1, Ordering::Relaxed) % pipes.len()]
    }

    /// Runs a blocking command on a connection of its own.
    async fn blocking(&self, cmd: &Command) -> Reply {
        dedicated(&self.endpoint, &self.idle, IDLE_DEDICATED, cmd)
            .await
            .unwrap_or_else(|reason| unavailable(&self.endpoint.name, &reason))
    }
}

/// Redis's default busy-reply-threshold (lua-time-limit).
const BUSY_REPLY_THRESHOLD: Duration = Duration::from_secs(5);

/// SCRIPT KILL and FUNCTION KILL stop a script that holds its server: on a
/// shared pipe they would wait behind the very EVAL they stop (the server
/// reads nothing more from that connection until it ends), so they go on
/// a connection of their own, as a blocking command does.
pub(super) fn kills_a_script(cmd: &Command) -> bool {
    matches!(cmd.spec.name, "script" | "function")
        && cmd
            .args
            .get(1)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"KILL"))
}

/// Connections kept for blocking commands, for RESP2 and RESP3 clients.
pub(super) type Idle = Mutex<[Vec<Conn>; 2]>;

/// Runs a (blocking) command on a connection of its own, taken from `idle`
/// or opened, and kept there afterwards while fewer than `keep` are.
pub(super) async fn dedicated(
    endpoint: &Arc<Endpoint>,
    idle: &Idle,
    keep: usize,
    cmd: &Command,
) -> Result<Reply, String> {
    // An idle connection the server closed meanwhile (it restarted) is
    // dropped here, before the command is written on it.
    let reused = idle.lock().ok().and_then(|mut idle| {
        let pool = &mut idle[cmd.resp3 as usize];
        while let Some(mut c) = pool.pop() {
            if !c.is_stale() {
                return Some(c);
            }
        }
        None
    });
    let mut conn = match reused {
        Some(c) => c,
        None => endpoint.connect(cmd.resp3).await?,
    };
    // A server answers SCRIPT KILL only once the script has run past its
    // busy-reply-threshold (5 s by default): waited for on top of the
    // command timeout, and never for ever.
    let limit = match block_timeout(cmd.spec, &cmd.args) {
        Some(t) => Some(t + endpoint.command_timeout),
        None if kills_a_script(cmd) => Some(endpoint.command_timeout + BUSY_REPLY_THRESHOLD),
        None => None,
    };
    // CLIENT UNBLOCK of this client ends the wait on the server.
    let _remote = match &cmd.unblock {
        Some(line) => conn
            .server_id(endpoint.command_timeout)
            .await
            .map(|id| RemoteGuard::set(line, endpoint.clone(), id)),
        None => None,
    };
    let mut r = conn.call(&encode(cmd), &[cmd.inspect], limit).await?;
    // A connection to a server that became a replica is not kept: the next
    // one asks again where the master is.
    let demoted = match r.first() {
        Some(Reply::Raw(b)) => is_readonly(b),
        Some(Reply::Error(e)) => e.starts_with(b"READONLY "),
        _ => false,
    };
    if let (false, Ok(mut idle)) = (demoted, idle.lock()) {
        if idle[cmd.resp3 as usize].len() < keep {
            idle[cmd.resp3 as usize].push(conn);
        }
    }
    r.pop().ok_or_else(|| "no reply".to_string())
}

/// A blocking command's line to its server while it waits: CLIENT UNBLOCK
/// sent from a connection of its own. Cleared when the command ends.
struct RemoteGuard(Arc<crate::backend::Unblock>);

impl RemoteGuard {
    fn set(line: &Arc<crate::backend::Unblock>, endpoint: Arc<Endpoint>, id: i64) -> RemoteGuard {
        let end = crate::backend::RemoteUnblock(Arc::new(move |error| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mode = if error { "ERROR" } else { "TIMEOUT" };
                let ask = encode_multibulk(&[
                    bytes("CLIENT"),
                    bytes("UNBLOCK"),
                    Bytes::from(id.to_string()),
                    bytes(mode),
                ]);
                if let Ok(mut c) = endpoint.connect(false).await {
                    let _ = c.call(&ask, &[true], Some(endpoint.command_timeout)).await;
                }
            });
        }));
        if let Ok(mut r) = line.remote.lock() {
            *r = Some(end);
        }
        RemoteGuard(line.clone())
    }
}

impl Drop for RemoteGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.remote.lock() {
            *r = None;
        }
    }
}

pub(super) fn encode(cmd: &Command) -> Bytes {
    match &cmd.raw {
        Some(raw) => raw.clone(),
        None => encode_multibulk(&cmd.args),
    }
}

/// Appends the command as it goes to the server.
pub(super) fn append(out: &mut BytesMut, cmd: &Command) {
    match &cmd.raw {
        Some(raw) => out.extend_from_slice(raw),
        None => out.extend_from_slice(&encode_multibulk(&cmd.args)),
    }
}

/// How long a blocking command may block, from its arguments; None when it
/// may block forever (a timeout of 0).
fn block_timeout(spec: &CommandSpec, args: &[Bytes]) -> Option<Duration> {
    let secs = |a: Option<&Bytes>| {
        a.and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    let t = match spec.name {
        "blmpop" | "bzmpop" => secs(args.get(1)),
        "xread" | "xreadgroup" => match args.iter().position(|a| is(a, "BLOCK")) {
            Some(i) => secs(args.get(i + 1)).map(|ms| ms / 1000.0),
            None => Some(-1.0),
        },
        "wait" => secs(args.get(2)).map(|ms| ms / 1000.0),
        _ => secs(args.last()),
    };
    match t {
        // Not blocking at all, or an argument the server will refuse.
        None => Some(Duration::ZERO),
        Some(t) if t < 0.0 => Some(Duration::ZERO),
        Some(0.0) => None,
        Some(t) => Some(Duration::from_secs_f64(t.min(1e9))),
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn supports(&self, _spec: &CommandSpec) -> bool {
        true
    }

    fn databases(&self) -> bool {
        true
    }

    fn server_version(&self) -> Option<String> {
        self.endpoint.version.lock().ok()?.clone()
    }

    fn health(&self) -> String {
        let started = self
            .pipes
            .iter()
            .filter_map(|p| p.get())
            .map(Vec::len)
            .sum::<usize>();
        if started == 0 {
            return "idle (connects on first use)".into();
        }
        let up = self.endpoint.up.load(Ordering::Relaxed);
        if up > 0 {
            let master = self
                .endpoint
                .sentinel
                .as_ref()
                .and_then(|s| s.last.lock().ok().and_then(|l| l.clone()))
                .map(|(h, p)| format!("; master {h} port {p} from the sentinels"))
                .unwrap_or_default();
            return format!("up ({up}/{started} connections{master})");
        }
        let reason = self
            .endpoint
            .last_error
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        format!("down ({reason})")
    }

    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let db = batch.first().map_or(0, |c| c.db);
            if db != 0 {
                if let Some(other) = self.database(db) {
                    return other.execute(batch).await;
                }
            }
            let resp3 = batch.first().is_some_and(|c| c.resp3);
            // Inside MULTI a blocking command does not block, and the whole
            // transaction must stay on one connection.
            let in_multi = batch.iter().any(|c| c.spec.name == "multi");
            let alone = |c: &Command| (c.spec.has(BLOCKING) || kills_a_script(c)) && !in_multi;
            let blocking = batch.iter().any(alone);
            let size = batch
                .iter()
                .map(|c| c.raw.as_ref().map_or(64, Bytes::len))
                .sum();
            let mut out = BytesMut::with_capacity(size);
            let mut inspect = Vec::with_capacity(batch.len());
            if !blocking {
                // The usual batch: one call, its replies returned as they are.
                for cmd in &batch {
                    append(&mut out, cmd);
                    inspect.push(cmd.inspect);
                }
                return self.pipe(resp3).call(out.freeze(), inspect).await;
            }
            let mut replies = Vec::with_capacity(batch.len());
            for cmd in &batch {
                if alone(cmd) {
                    if !inspect.is_empty() {
                        let pipe = self.pipe(resp3);
                        replies.extend(
                            pipe.call(out.split().freeze(), std::mem::take(&mut inspect))
                                .await,
                        );
                    }
                    replies.push(self.blocking(cmd).await);
                } else {
                    append(&mut out, cmd);
                    inspect.push(cmd.inspect);
                }
            }
            if !inspect.is_empty() {
                replies.extend(self.pipe(resp3).call(out.freeze(), inspect).await);
            }
            replies
        })
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        Box::pin(async move {
            let conn = self
                .endpoint
                .connect(false)
                .await
                .map_err(|reason| unavailable_error(&self.endpoint.name, &reason))?;
            Ok(Box::new(RedisSession {
                conn: Some(conn),
                selected: self.endpoint.db,
                endpoint: self.endpoint.clone(),
            }) as Box<dyn Session>)
        })
    }

    fn subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        Box::pin(async move {
            let name = &self.endpoint.name;
            let conn = self
                .endpoint
                .connect(false)
                .await
                .map_err(|reason| unavailable_error(name, &reason))?;
            Ok(Box::new(RedisSubscriber::start(conn, tag, pushes, name)) as Box<dyn Subscriber>)
        })
    }
}

pub(super) fn unavailable_error(name: &str, reason: &str) -> CmdError {
    CmdError::msg(format!("ERR backend '{name}' unavailable: {reason}"))
}

/// A pinned connection (WATCH ... EXEC). Once it fails it stays failed: the
/// server has forgotten what was watched, so a reconnect would be a lie.
struct RedisSession {
    conn: Option<Conn>,
    endpoint: Arc<Endpoint>,
    /// The server database the connection has selected.
    selected: u32,
}

impl Session for RedisSession {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let name = &self.endpoint.name;
            let Some(conn) = self.conn.as_mut() else {
                return vec![unavailable(name, "pinned connection lost"); batch.len()];
            };
            // The client's database: 0 is the url's, any other the
            // server's of that number. Selected in a round trip of its own,
            // so that a refused SELECT never lets the batch run elsewhere.
            let db = match batch.first().map_or(0, |c| c.db) {
                0 => self.endpoint.db,
                n => u32::from(n),
            };
            if db != self.selected {
                let select = encode_multibulk(&[bytes("SELECT"), bytes(&db.to_string())]);
                match conn
                    .call(&select, &[true], Some(self.endpoint.command_timeout))
                    .await
                {
                    Ok(r) if matches!(r.first(), Some(Reply::Status(_))) => self.selected = db,
                    Ok(r) => {
                        let e = r.into_iter().next().unwrap_or(Reply::Nil);
                        let e = if e.is_error() {
                            e
                        } else {
                            unavailable(name, "SELECT failed")
                        };
                        return vec![e; batch.len()];
                    }
                    Err(reason) => {
                        self.conn = None;
                        return vec![unavailable(name, &reason); batch.len()];
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                return vec![unavailable(name, "pinned connection lost"); batch.len()];
            };
            match call_pinned(conn, &batch, self.endpoint.command_timeout).await {
                Ok(replies) => replies,
                Err(reason) => {
                    self.conn = None;
                    vec![unavailable(name, &reason); batch.len()]
                }
            }
        })
    }
}

/// Runs a client's batch on its pinned connection, switching the
/// connection's protocol first when the client's differs.
pub(super) async fn call_pinned(
    conn: &mut Conn,
    batch: &[Command],
    limit: Duration,
) -> Result<Vec<Reply>, String> {
    let resp3 = batch.first().is_some_and(|c| c.resp3);
    let mut out = BytesMut::new();
    let mut inspect = Vec::with_capacity(batch.len() + 1);
    if conn.resp3() != resp3 {
        out.extend_from_slice(&encode_multibulk(&[
            Bytes::from_static(b"HELLO"),
            Bytes::from_static(if resp3 { b"3" } else { b"2" }),
        ]));
        inspect.push(true);
    }
    let hello = inspect.len();
    for cmd in batch {
        append(&mut out, cmd);
        inspect.push(cmd.inspect);
    }
    conn.set_resp3(resp3);
    let mut replies = conn.call(&out, &inspect, Some(limit)).await?;
    Ok(replies.split_off(hello))
}

/// A client's subscriptions on one connection of its own.
pub(super) struct RedisSubscriber {
    feed: Feed,
    name: String,
}

impl RedisSubscriber {
    pub(super) fn start(conn: Conn, tag: usize, pushes: Pushes, name: &str) -> RedisSubscriber {
        RedisSubscriber {
            feed: Feed::start(conn, tag, pushes, name.to_string()),
            name: name.to_string(),
        }
    }
}

impl Subscriber for RedisSubscriber {
    fn send(&mut self, cmd: Command) -> BoxFuture<'_, Result<(), CmdError>> {
        Box::pin(async move {
            self.feed
                .send(&encode_multibulk(&cmd.args))
                .await
                .map_err(|reason| unavailable_error(&self.name, &reason))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::command;

    #[test]
    fn parses_urls() {
        let u = parse_url("rediss://app:p%40ss@cache.example.com:6380/2").unwrap();
        assert_eq!(
            u,
            Url {
                tls: true,
                host: "cache.example.com".into(),
                port: 6380,
                username: Some("app".into()),
                password: Some("p@ss".into()),
                db: 2,
            }
        );
        let u = parse_url("redis://:secret@[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6379));
        assert_eq!((u.username, u.password.as_deref()), (None, Some("secret")));
        assert_eq!(
            parse_url("http://x").unwrap_err(),
            "'http://x' must start with redis:// or rediss:// (TLS)"
        );
        assert_eq!(
            parse_url("redis://h:99999").unwrap_err(),
            "port '99999' in 'redis://h:99999' is not a port number"
        );
    }

    #[test]
    fn sentinel_settings_are_checked_together() {
        let problems = |toml: &str| -> Vec<String> {
            let c: RedisConfig = toml::from_str(toml).expect("config");
            c.problems()
                .into_iter()
                .map(|(f, p)| format!("{f}: {p}"))
                .collect()
        };
        assert_eq!(
            problems("url = \"redis://m\"\nsentinel_master = \"mymaster\""),
            ["sentinels: must list at least one host:port with sentinel_master"]
        );
        assert_eq!(
            problems("url = \"redis://m\"\nsentinels = [\"s1:26379\", \"s2\"]"),
            [
                "sentinel_master: must name the master the sentinels watch",
                "sentinels[1]: 's2' is not host:port",
            ]
        );
        assert!(
            problems("url = \"redis://m\"\nsentinel_master = \"m\"\nsentinels = [\"[::1]:26379\"]")
                .is_empty()
        );
    }

    #[test]
    fn blocking_timeouts() {
        let t = |args: &[&str]| {
            let spec = command::known(&args[0].to_lowercase());
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
            block_timeout(spec, &args)
        };
        assert_eq!(
            t(&["blpop", "a", "b", "1.5"]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(t(&["blpop", "a", "0"]), None);
        assert_eq!(
            t(&["blmpop", "2", "1", "a", "LEFT"]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            t(&["xread", "BLOCK", "250", "STREAMS", "s", "$"]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(t(&["xread", "STREAMS", "s", "0"]), Some(Duration::ZERO));
        assert_eq!(t(&["wait", "1", "0"]), None);
    }
}
