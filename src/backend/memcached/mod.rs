//! The `memcached` backend: Redis string commands translated to memcached's
//! meta protocol, with Redis's semantics.
//!
//! The `memcache` crate's async meta client does the wire work: per-server
//! connection pools, rendezvous hashing of keys over the servers, one
//! deadline per exchange, base64 for keys memcached cannot take as text.
//! `translate` decides what each Redis command means in memcached terms,
//! `transport` merges clients' operations into batches:
//! - Commands that map onto single operations (GET, SET, MGET, DEL, TTL...)
//!   of consecutive requests are sent as one batch per server.
//! - Read-modify-write commands (INCR with negative values, APPEND, GETSET,
//!   SET ... GET/KEEPTTL, GETDEL, conditional EXPIRE) are compare-and-swap
//!   loops, because memcached's own counters are unsigned and its append
//!   does not create keys.
//! - Keys whose wire form would pass memcached's 250 bytes are replaced by
//!   a SHA-256 digest.
//! - TTLs are whole seconds: sub-second expiries round up; over 30 days the
//!   crate sends an absolute time, as memcached requires.

use std::sync::Arc;
use std::time::Duration;

use memcache::exp::{Error as McError, MetaClientBuilder, Op, OpResult, Set, Ttl};
use serde::Deserialize;
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::{Backend, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::backend::upstream::{io_reason, unavailable};
use crate::wire::command::CommandSpec;
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;
use crate::wire::size::ByteSize;

mod dump;
mod probe;
mod translate;
mod transport;

use translate::{Finish, Plan};
use transport::{Job, merge};

/// Every command this backend translates; everything else is refused with
/// the namespace named. The README's table is checked against this list.
pub const SUPPORTED: &[&str] = &[
    "get",
    "set",
    "setnx",
    "setex",
    "psetex",
    "getset",
    "getdel",
    "getex",
    "mget",
    "mset",
    "del",
    "unlink",
    "exists",
    "touch",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
    "append",
    "strlen",
    "flushdb",
    "flushall",
];

/// What `--check-config` says a memcached namespace cannot serve.
const LIMITS: &str = "hashes, lists, sets, sorted sets, streams, bitmaps, HyperLogLog, geo, \
     KEYS/SCAN/DBSIZE/RANDOMKEY, transactions, scripting, pub/sub";

/// Compare-and-swap attempts before a contended key gives up.
const CAS_ATTEMPTS: usize = 64;
/// Keys longer than this on the wire are replaced by their digest.
const MAX_WIRE_KEY: usize = 250;
/// Relative TTLs above this are absolute Unix times in memcached.
const MAX_RELATIVE_SECS: u64 = 30 * 24 * 3600;

fn default_connections() -> usize {
    16
}
fn default_timeout() -> u64 {
    1000
}
fn default_item_size() -> ByteSize {
    ByteSize(1024 * 1024)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemcachedConfig {
    /// `host:port` of each server; keys are spread over them by rendezvous
    /// (highest random weight) hashing.
    pub servers: Vec<String>,
    /// Connections kept open per server, and merged batches in flight: each
    /// batch checks out one connection per server it touches.
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default = "default_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout")]
    pub command_timeout_ms: u64,
    /// The servers' item size limit (memcached -I, 1mb by default).
    #[serde(default = "default_item_size")]
    pub max_item_size: ByteSize,
}

impl BackendSpec for MemcachedConfig {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn build(&self, name: &str) -> Arc<dyn Backend> {
        Arc::new(MemcachedBackend::new(name, self))
    }

    fn limits(&self) -> Option<&'static str> {
        Some(LIMITS)
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.servers.is_empty() {
            out.push(("servers".into(), "must list at least one host:port".into()));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok {
                out.push((format!("servers[{i}]"), format!("'{s}' is not host:port")));
            }
        }
        if !(1..=256).contains(&self.connections) {
            out.push(("connections".into(), "must be between 1 and 256".into()));
        }
        if self.connect_timeout_ms == 0 {
            out.push(("connect_timeout_ms".into(), "must be at least 1".into()));
        }
        if self.command_timeout_ms == 0 {
            out.push(("command_timeout_ms".into(), "must be at least 1".into()));
        }
        if self.max_item_size.0 == 0 {
            out.push(("max_item_size".into(), "must be at least 1 byte".into()));
        }
        out
    }
}

pub struct MemcachedBackend {
    name: String,
    config: MemcachedConfig,
    /// Where operations go to be merged with other clients' (see `merge`).
    jobs: OnceCell<mpsc::UnboundedSender<Job>>,
    /// Whether the servers answer (`/readyz`).
    probe: probe::Probe,
}

type Step<T> = Result<T, Reply>;

impl MemcachedBackend {
    pub fn new(name: &str, config: &MemcachedConfig) -> MemcachedBackend {
        MemcachedBackend {
            name: name.to_string(),
            config: config.clone(),
            jobs: OnceCell::new(),
            probe: probe::Probe::new(
                &config.servers,
                Duration::from_millis(config.connect_timeout_ms.max(config.command_timeout_ms)),
            ),
        }
    }

    /// The merging task's queue; connects and starts it on first use.
    async fn jobs(&self) -> Step<&mpsc::UnboundedSender<Job>> {
        self.jobs
            .get_or_try_init(|| async {
                let client = MetaClientBuilder::new()
                    .max_idle(self.config.connections)
                    .connect_timeout(Some(Duration::from_millis(self.config.connect_timeout_ms)))
                    .io_timeout(Some(Duration::from_millis(self.config.command_timeout_ms)))
                    .connect_multiple_async(self.config.servers.iter().cloned())
                    .await?;
                let (tx, rx) = mpsc::unbounded_channel();
                // validate() keeps connections within 1..=256.
                tokio::spawn(merge(client, rx, self.config.connections));
                Ok(tx)
            })
            .await
            .map_err(|e| self.fail(&e))
    }

    /// The reply for a failed operation.
    fn fail(&self, e: &McError) -> Reply {
        match e {
            McError::Io(io) => unavailable(&self.name, &io_reason(io)),
            McError::Timeout { .. } => unavailable(
                &self.name,
                &format!("no reply within {} ms", self.config.command_timeout_ms),
            ),
            McError::Ambiguous { source, .. } => {
                let Reply::Error(inner) = self.fail(source) else {
                    return unavailable(&self.name, "reply lost");
                };
                Reply::error(format!(
                    "{} (the command was sent; it may have been applied)",
                    String::from_utf8_lossy(&inner)
                ))
            }
            McError::Server(m) if m.contains("too large") => Reply::error(format!(
                "ERR value is over the item size limit of memcached backend '{}' (server said: {m})",
                self.name
            )),
            McError::Server(m) => {
                Reply::error(format!("ERR memcached backend '{}': {m}", self.name))
            }
            other => Reply::error(format!("ERR memcached backend '{}': {other}", self.name)),
        }
    }

    /// The memcached key for a client key: itself, or a digest when its
    /// wire form (base64 for keys with spaces or binary) would be too long.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let text = key.iter().all(|&b| b > 0x20 && b != 0x7f);
        let wire = if text {
            key.len()
        } else {
            key.len().div_ceil(3) * 4
        };
        if wire <= MAX_WIRE_KEY && !key.is_empty() {
            return key.to_vec();
        }
        // Binary, so it goes out base64 and cannot equal a text key; a
        // client would have to send these exact 40 bytes to collide.
        let digest = ring::digest::digest(&ring::digest::SHA256, key);
        let mut k = b"\x00keyway-sha256:".to_vec();
        k.extend_from_slice(digest.as_ref());
        k
    }

    fn check_size(&self, value: &[u8]) -> Step<()> {
        self.check_len(value.len())
    }

    fn check_len(&self, len: usize) -> Step<()> {
        if len as u64 > self.config.max_item_size.0 {
            return Err(Reply::error(format!(
                "ERR value of {} bytes is over the item size limit of memcached backend '{}' ({} bytes, max_item_size)",
                len, self.name, self.config.max_item_size.0
            )));
        }
        Ok(())
    }

    fn set_op(&self, key: &[u8], value: &[u8], ttl: Option<Ttl>) -> Step<Set> {
        self.check_size(value)?;
        let op = Set::new(self.key(key), value);
        Ok(match ttl {
            Some(t) => op.ttl(t),
            None => op,
        })
    }

    /// Runs operations in one batch (one exchange per server), merged with
    /// whatever other clients have queued meanwhile.
    async fn run(&self, ops: Vec<Op>) -> Vec<Result<OpResult, Reply>> {
        let n = ops.len();
        let jobs = match self.jobs().await {
            Ok(j) => j,
            Err(e) => return vec![Err(e); n],
        };
        let all = |reason: &str| vec![Err(unavailable(&self.name, reason)); n];
        let (done, results) = oneshot::channel();
        if jobs.send(Job { ops, done }).is_err() {
            return all("connection task stopped");
        }
        // A merged batch is bounded by the client's own timeouts; this bounds
        // the wait for a free connection behind a stalled server too.
        let limit = Duration::from_millis(self.config.command_timeout_ms);
        match tokio::time::timeout(limit, results).await {
            Ok(Ok(Ok(results))) => results
                .into_iter()
                .map(|r| r.map_err(|e| self.fail(&e)))
                .collect(),
            Ok(Ok(Err(e))) => vec![Err(self.fail(&e)); n],
            Ok(Err(_)) => all("connection task stopped"),
            Err(_) => all(&format!("no reply within {} ms", limit.as_millis())),
        }
    }

    async fn one(&self, op: impl Into<Op>) -> Step<OpResult> {
        self.run(vec![op.into()])
            .await
            .pop()
            .unwrap_or_else(|| Err(Reply::error("ERR memcached returned no result")))
    }
}

impl Backend for MemcachedBackend {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn can_list_keys(&self) -> bool {
        true
    }

    /// One server's keys per step, from its LRU crawler.
    fn list_keys(&self, cursor: u64) -> BoxFuture<'_, Result<(u64, Vec<bytes::Bytes>), String>> {
        Box::pin(async move {
            let servers = &self.config.servers;
            let Some(server) = usize::try_from(cursor).ok().and_then(|i| servers.get(i)) else {
                return Ok((0, Vec::new()));
            };
            // A dump of a large server takes a while: a generous deadline.
            let timeout = Duration::from_millis(self.config.command_timeout_ms.max(30_000));
            let keys = dump::keys(server, timeout).await?;
            let next = cursor + 1;
            Ok((
                if next as usize >= servers.len() {
                    0
                } else {
                    next
                },
                keys,
            ))
        })
    }

    fn supports(&self, spec: &CommandSpec) -> bool {
        SUPPORTED.contains(&spec.name)
    }

    fn health(&self) -> String {
        self.probe.health()
    }

    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let mut replies: Vec<Option<Reply>> = vec![None; batch.len()];
            // Operations of consecutive simple commands, sent together.
            let mut ops: Vec<Op> = Vec::with_capacity(batch.len());
            let mut waiting: Vec<(usize, usize, Finish)> = Vec::with_capacity(batch.len());
            for (i, cmd) in batch.iter().enumerate() {
                match self.plan(cmd) {
                    Err(e) => replies[i] = Some(e),
                    Ok(Plan::Ops(o, finish)) => {
                        waiting.push((i, o.len(), finish));
                        ops.extend(o);
                    }
                    Ok(Plan::ReadModifyWrite) => {
                        self.flush_ops(&mut ops, &mut waiting, &mut replies).await;
                        replies[i] = Some(self.read_modify_write(cmd).await);
                    }
                }
            }
            self.flush_ops(&mut ops, &mut waiting, &mut replies).await;
            replies
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Reply::error("ERR missing reply")))
                .collect()
        })
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        Box::pin(std::future::ready(Err(CmdError::msg(
            "ERR the memcached backend has no sessions",
        ))))
    }

    fn subscriber(
        &self,
        _tag: usize,
        _pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        Box::pin(std::future::ready(Err(CmdError::msg(
            "ERR the memcached backend has no pub/sub",
        ))))
    }
}

impl MemcachedBackend {
    async fn flush_ops(
        &self,
        ops: &mut Vec<Op>,
        waiting: &mut Vec<(usize, usize, Finish)>,
        replies: &mut [Option<Reply>],
    ) {
        if ops.is_empty() {
            return;
        }
        let mut results = self.run(std::mem::take(ops)).await.into_iter();
        for (i, n, finish) in waiting.drain(..) {
            replies[i] = Some(finish.reply(results.by_ref().take(n)));
        }
    }
}
