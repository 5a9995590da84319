//! The `memcached` backend: Redis string commands translated to memcached's
//! meta protocol, with Redis's semantics.
//!
//! The `memcache` crate's async meta client does the wire work: per-server
//! connection pools, rendezvous hashing of keys over the servers, one
//! deadline per exchange, base64 for keys memcached cannot take as text.
//! This file decides what each Redis command means in memcached terms:
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
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use memcache::exp::{
    AsyncMetaClient, Delete, Error as McError, Get, GetResult, Meta, MetaClientBuilder,
    MutationStatus, Op, OpResult, Set, Ttl,
};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OnceCell, Semaphore, mpsc, oneshot};

use super::{Backend, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::args::{ExpireArgs, SetArgs, Unit, getex_change};
use crate::command::CommandSpec;
use crate::config::ByteSize;
use crate::error::CmdError;
use crate::protocol::parse_i64;
use crate::reply::Reply;
use crate::upstream::{io_reason, unavailable};
use crate::util::{now_ms, parse_f64};

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
}

type McResults = Result<Vec<Result<OpResult, McError>>, McError>;

/// One caller's operations, waiting to be merged into a batch.
struct Job {
    ops: Vec<Op>,
    done: oneshot::Sender<McResults>,
}

/// Merges the operations of concurrent clients into shared batches, so that
/// under load one write and one read to a server serve many clients, as the
/// redis backend's pipes do. Up to `limit` batches (the connections kept per
/// server) are in flight; what queues meanwhile goes out as the next batch,
/// in batches of about `MAX_BATCH_OPS` operations.
async fn merge(client: AsyncMetaClient, mut rx: mpsc::UnboundedReceiver<Job>, limit: usize) {
    let slots = Arc::new(Semaphore::new(limit));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut ops = first.ops.len();
        let mut jobs = vec![first];
        while ops < MAX_BATCH_OPS {
            let Ok(job) = rx.try_recv() else { break };
            ops += job.ops.len();
            jobs.push(job);
        }
        let client = client.clone();
        tokio::spawn(async move {
            run_merged(&client, jobs).await;
            drop(slot);
        });
    }
}

/// Operations merged into one batch, about (a job is never split). The
/// crate answers a batch only once all of it is read, so one batch of every
/// waiting client's commands would hold each client until the last reply;
/// smaller batches on several connections let the first clients go on
/// while memcached serves the rest. At pipeline 1 this still merges about
/// 100 clients per write; at pipeline 16, 8 (3 alternating rounds at
/// pipeline 16, against one batch of every waiting client: SET 380–472k →
/// 470–544k req/s, GET 417–449k → 484–494k).
const MAX_BATCH_OPS: usize = 128;

async fn run_merged(client: &AsyncMetaClient, jobs: Vec<Job>) {
    let mut sizes = Vec::with_capacity(jobs.len());
    let mut dones = Vec::with_capacity(jobs.len());
    let mut ops = Vec::with_capacity(jobs.iter().map(|j| j.ops.len()).sum());
    for job in jobs {
        sizes.push(job.ops.len());
        dones.push(job.done);
        ops.extend(job.ops);
    }
    match client.run_batch(ops).await {
        Ok(results) => {
            let mut results = results.into_iter();
            for (n, done) in sizes.into_iter().zip(dones) {
                let _ = done.send(Ok(results.by_ref().take(n).collect()));
            }
        }
        // The client validates a whole batch before writing any of it.
        // keyway builds only valid operations (keys encoded, sizes checked),
        // so this does not happen; if it did, nothing ran, and every caller
        // of the batch hears why.
        Err(e) => {
            let reason = e.to_string();
            for done in dones {
                let _ = done.send(Err(McError::Protocol(reason.clone())));
            }
        }
    }
}

/// How the results of a command's operations become its reply.
#[derive(Clone, Copy)]
enum Finish {
    /// GET, GETEX: the value or nil.
    Value,
    /// MGET: an array of values.
    Values,
    /// SET [NX|XX]: OK, or nil when the condition failed.
    SetOk,
    /// SETNX: 1 or 0.
    SetNx,
    /// SETEX, PSETEX, MSET: OK.
    Ok,
    /// DEL, UNLINK: how many were deleted.
    Deleted,
    /// EXISTS, TOUCH, EXPIRE (touch): how many were found.
    Found,
    /// STRLEN.
    Size,
    /// TTL (false) or PTTL (true).
    Ttl(bool),
}

/// A command as memcached operations, or one needing a read first.
enum Plan {
    Ops(Vec<Op>, Finish),
    ReadModifyWrite,
}

type Step<T> = Result<T, Reply>;

impl MemcachedBackend {
    pub fn new(name: &str, config: &MemcachedConfig) -> MemcachedBackend {
        MemcachedBackend {
            name: name.to_string(),
            config: config.clone(),
            jobs: OnceCell::new(),
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

    /// Translates a command into operations when it needs no read first.
    fn plan(&self, cmd: &Command) -> Step<Plan> {
        let a = &cmd.args;
        let get = |k: &Bytes| Get::new(self.key(k));
        let probe = |k: &Bytes| get(k).without_value();
        Ok(match cmd.spec.name {
            "get" => Plan::Ops(vec![get(&a[1]).into()], Finish::Value),
            "mget" => Plan::Ops(
                a[1..].iter().map(|k| get(k).into()).collect(),
                Finish::Values,
            ),
            "set" => {
                let s = SetArgs::parse(a).map_err(Reply::from)?;
                let past = s.expires.is_some_and(|t| t <= now_ms());
                if s.get || s.keepttl || past {
                    return Ok(Plan::ReadModifyWrite);
                }
                let mut op = self.set_op(&a[1], &a[2], s.expires.map(ttl_until))?;
                if s.nx {
                    op = op.add();
                } else if s.xx {
                    op = op.replace();
                }
                Plan::Ops(vec![op.into()], Finish::SetOk)
            }
            "setnx" => Plan::Ops(
                vec![self.set_op(&a[1], &a[2], None)?.add().into()],
                Finish::SetNx,
            ),
            "setex" | "psetex" => {
                let unit = if cmd.spec.name == "setex" {
                    Unit::Seconds
                } else {
                    Unit::Millis
                };
                let at = crate::args::expire_at(&a[2], unit, false, cmd.spec.name)
                    .map_err(Reply::from)?;
                Plan::Ops(
                    vec![self.set_op(&a[1], &a[3], Some(ttl_until(at)))?.into()],
                    Finish::Ok,
                )
            }
            "mset" => {
                if a.len() % 2 == 0 {
                    return Err(CmdError::WrongArity("mset".into()).into());
                }
                let mut ops = Vec::with_capacity(a.len() / 2);
                for pair in a[1..].chunks(2) {
                    ops.push(self.set_op(&pair[0], &pair[1], None)?.into());
                }
                Plan::Ops(ops, Finish::Ok)
            }
            "del" | "unlink" => Plan::Ops(
                a[1..]
                    .iter()
                    .map(|k| Delete::new(self.key(k)).into())
                    .collect(),
                Finish::Deleted,
            ),
            "exists" | "touch" => Plan::Ops(
                a[1..].iter().map(|k| probe(k).into()).collect(),
                Finish::Found,
            ),
            "strlen" => Plan::Ops(
                vec![probe(&a[1]).meta(Meta::NONE.size()).into()],
                Finish::Size,
            ),
            "ttl" | "pttl" => Plan::Ops(
                vec![probe(&a[1]).meta(Meta::NONE.ttl()).into()],
                Finish::Ttl(cmd.spec.name == "pttl"),
            ),
            "getex" => match getex_change(a) {
                Err(CmdError::Syntax) => return Err(CmdError::Syntax.into()),
                // A bad time: Redis looks the key up first (see getex_refused).
                Err(_) => Plan::ReadModifyWrite,
                Ok(None) => Plan::Ops(vec![get(&a[1]).into()], Finish::Value),
                Ok(Some(0)) => Plan::Ops(vec![get(&a[1]).touch(Ttl::NEVER).into()], Finish::Value),
                Ok(Some(t)) if t <= now_ms() => Plan::ReadModifyWrite,
                Ok(Some(t)) => {
                    Plan::Ops(vec![get(&a[1]).touch(ttl_until(t)).into()], Finish::Value)
                }
            },
            "expire" | "pexpire" | "expireat" | "pexpireat" => {
                let e = expire_args(cmd)?;
                if e.conditional() || e.deletes() {
                    return Ok(Plan::ReadModifyWrite);
                }
                let touch = probe(&a[1]).touch(ttl_until(e.when as u64));
                Plan::Ops(vec![touch.into()], Finish::Found)
            }
            _ => Plan::ReadModifyWrite,
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

    /// The value, CAS and remaining TTL of a key, or None when missing.
    async fn read(&self, key: &[u8]) -> Step<Option<Item>> {
        let op = Get::new(self.key(key)).meta(Meta::NONE.cas().ttl());
        match self.one(op).await? {
            OpResult::Get(g) if g.hit() => Ok(Some(Item {
                value: g.value.clone().unwrap_or_default(),
                cas: g.item.cas.unwrap_or(0),
                ttl: g.item.ttl,
            })),
            _ => Ok(None),
        }
    }

    /// Writes `value` if the key is still as read (`cas`), or still missing
    /// (None); false when someone else got there first.
    async fn write_if(
        &self,
        key: &[u8],
        value: &[u8],
        seen: Option<&Item>,
        ttl: Option<Ttl>,
    ) -> Step<bool> {
        let mut op = self.set_op(key, value, ttl)?;
        op = match seen {
            Some(item) => op.compare_cas(item.cas),
            None => op.add(),
        };
        Ok(matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied()))
    }

    async fn delete_if(&self, key: &[u8], seen: &Item) -> Step<bool> {
        let op = Delete::new(self.key(key)).compare_cas(seen.cas);
        Ok(matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied()))
    }

    /// Commands that read the key before writing it.
    async fn read_modify_write(&self, cmd: &Command) -> Reply {
        let r = match cmd.spec.name {
            "set" => self.set_rmw(cmd).await,
            "getset" => {
                let mut args = cmd.args.clone();
                args.push(Bytes::from_static(b"GET"));
                self.set_with(
                    &args,
                    SetArgs {
                        get: true,
                        ..SetArgs::default()
                    },
                )
                .await
            }
            "getdel" => self.getdel(&cmd.args[1]).await,
            // Planned here only with an expiry already past: get and delete.
            "getex" => match getex_change(&cmd.args) {
                Err(e) => self.getex_refused(&cmd.args[1], e).await,
                // An expire time in the past: the key goes, its value back.
                Ok(_) => self.getdel(&cmd.args[1]).await,
            },
            "expire" | "pexpire" | "expireat" | "pexpireat" => self.expire(cmd).await,
            "persist" => self.persist(&cmd.args[1]).await,
            "incr" => self.incr_by(&cmd.args[1], 1).await,
            "decr" => self.incr_by(&cmd.args[1], -1).await,
            "incrby" | "decrby" => match parse_i64(&cmd.args[2]) {
                None => Err(CmdError::NotInteger.into()),
                Some(n) if cmd.spec.name == "decrby" => match n.checked_neg() {
                    Some(n) => self.incr_by(&cmd.args[1], n).await,
                    None => Err(CmdError::msg("ERR decrement would overflow").into()),
                },
                Some(n) => self.incr_by(&cmd.args[1], n).await,
            },
            "incrbyfloat" => self.incr_by_float(&cmd.args[1], &cmd.args[2]).await,
            "append" => self.append(&cmd.args[1], &cmd.args[2]).await,
            "flushdb" | "flushall" => self.flush().await,
            name => Err(Reply::error(format!(
                "ERR '{}' is not supported by the memcached backend",
                name.to_uppercase()
            ))),
        };
        r.unwrap_or_else(|e| e)
    }

    /// GETEX with an expire time Redis refuses: Redis looks the key up
    /// before it reads the time, so a missing key is nil and only an
    /// existing one hears why.
    async fn getex_refused(&self, key: &Bytes, e: CmdError) -> Step<Reply> {
        let probe = Get::new(self.key(key)).without_value();
        if found(&self.one(probe).await?) {
            Err(e.into())
        } else {
            Ok(Reply::Nil)
        }
    }

    async fn set_rmw(&self, cmd: &Command) -> Step<Reply> {
        let s = SetArgs::parse(&cmd.args).map_err(Reply::from)?;
        self.set_with(&cmd.args, s).await
    }

    /// SET with GET, KEEPTTL or an expiry already past.
    async fn set_with(&self, a: &[Bytes], s: SetArgs) -> Step<Reply> {
        let (key, value) = (&a[1], &a[2]);
        self.check_size(value)?;
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let reply = |did: bool| {
                if s.get {
                    Reply::opt_bulk(old.as_ref().map(|o| Bytes::from(o.value.clone())))
                } else if did {
                    Reply::ok()
                } else {
                    Reply::Nil
                }
            };
            if (s.nx && old.is_some()) || (s.xx && old.is_none()) {
                return Ok(reply(false));
            }
            if s.expires.is_some_and(|t| t <= now_ms()) {
                // Set and expired at once: the key is gone.
                let done = match &old {
                    Some(o) => self.delete_if(key, o).await?,
                    None => true,
                };
                if done {
                    return Ok(reply(true));
                }
                continue;
            }
            let ttl = match (s.keepttl, &old) {
                (true, Some(o)) => Some(keep_ttl(o.ttl)),
                _ => s.expires.map(ttl_until),
            };
            if self.write_if(key, value, old.as_ref(), ttl).await? {
                return Ok(reply(true));
            }
        }
        Err(contended())
    }

    /// GETDEL, and GETEX with an expiry already past.
    async fn getdel(&self, key: &[u8]) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = self.read(key).await? else {
                return Ok(Reply::Nil);
            };
            if self.delete_if(key, &old).await? {
                return Ok(Reply::Bulk(Bytes::from(old.value)));
            }
        }
        Err(contended())
    }

    async fn expire(&self, cmd: &Command) -> Step<Reply> {
        let e = expire_args(cmd)?;
        let key = &cmd.args[1];
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = self.read(key).await? else {
                return Ok(Reply::Int(0));
            };
            let current = old
                .ttl
                .filter(|t| *t >= 0)
                .map(|t| now_ms() as i64 + t * 1000);
            if !e.allows(current) {
                return Ok(Reply::Int(0));
            }
            if e.deletes() {
                if self.delete_if(key, &old).await? {
                    return Ok(Reply::Int(1));
                }
                continue;
            }
            let touch = Get::new(self.key(key))
                .without_value()
                .touch(ttl_until(e.when as u64));
            return Ok(Reply::Int(found(&self.one(touch).await?) as i64));
        }
        Err(contended())
    }

    async fn persist(&self, key: &[u8]) -> Step<Reply> {
        let probe = Get::new(self.key(key))
            .without_value()
            .meta(Meta::NONE.ttl());
        match self.one(probe).await? {
            OpResult::Get(g) if g.hit() && g.item.ttl.is_some_and(|t| t >= 0) => {
                let touch = Get::new(self.key(key)).without_value().touch(Ttl::NEVER);
                Ok(Reply::Int(found(&self.one(touch).await?) as i64))
            }
            _ => Ok(Reply::Int(0)),
        }
    }

    /// INCR family over Redis's signed 64-bit range; the TTL is kept.
    async fn incr_by(&self, key: &[u8], by: i64) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let current = match &old {
                None => 0,
                Some(o) => parse_i64(&o.value).ok_or(CmdError::NotInteger)?,
            };
            let n = current.checked_add(by).ok_or(CmdError::Overflow)?;
            let ttl = old.as_ref().map(|o| keep_ttl(o.ttl));
            if self
                .write_if(key, n.to_string().as_bytes(), old.as_ref(), ttl)
                .await?
            {
                return Ok(Reply::Int(n));
            }
        }
        Err(contended())
    }

    async fn incr_by_float(&self, key: &[u8], by: &[u8]) -> Step<Reply> {
        let by = parse_f64(by).ok_or(CmdError::NotFloat)?;
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let current = match &old {
                None => 0.0,
                Some(o) => parse_f64(&o.value).ok_or(CmdError::NotFloat)?,
            };
            let n = current + by;
            if !n.is_finite() {
                return Err(CmdError::NanOrInfinity.into());
            }
            // As Redis writes INCRBYFLOAT results: no exponent.
            let text = format!("{n}");
            let ttl = old.as_ref().map(|o| keep_ttl(o.ttl));
            if self
                .write_if(key, text.as_bytes(), old.as_ref(), ttl)
                .await?
            {
                return Ok(Reply::Bulk(Bytes::from(text)));
            }
        }
        Err(contended())
    }

    /// APPEND: creates a missing key (memcached's append does not) and
    /// answers the new length, exact because the append is CAS-checked.
    async fn append(&self, key: &[u8], tail: &[u8]) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let len = old.as_ref().map_or(0, |o| o.value.len()) + tail.len();
            self.check_len(len)?;
            let done = match &old {
                None => self.write_if(key, tail, None, None).await?,
                Some(o) => {
                    let op = Set::new(self.key(key), tail).append().compare_cas(o.cas);
                    matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied())
                }
            };
            if done {
                return Ok(Reply::Int(len as i64));
            }
        }
        Err(contended())
    }

    /// FLUSHDB / FLUSHALL: `flush_all` on every server. keyspace.rs only
    /// sends it when the namespace owns the servers outright.
    async fn flush(&self) -> Step<Reply> {
        let limit = Duration::from_millis(self.config.command_timeout_ms);
        for server in &self.config.servers {
            let r = tokio::time::timeout(limit, flush_all(server)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(unavailable(&self.name, &format!("{server}: {reason}")));
                }
                Err(_) => {
                    return Err(unavailable(
                        &self.name,
                        &format!("{server}: no reply within {} ms", limit.as_millis()),
                    ));
                }
            }
        }
        Ok(Reply::ok())
    }
}

struct Item {
    value: Vec<u8>,
    cas: u64,
    /// Remaining seconds; -1 for none.
    ttl: Option<i64>,
}

fn contended() -> Reply {
    Reply::error("ERR too many concurrent writers on this key; try again")
}

fn found(r: &OpResult) -> bool {
    matches!(r, OpResult::Get(g) if g.hit())
}

fn expire_args(cmd: &Command) -> Step<ExpireArgs> {
    let (unit, absolute) = match cmd.spec.name {
        "expire" => (Unit::Seconds, false),
        "pexpire" => (Unit::Millis, false),
        "expireat" => (Unit::Seconds, true),
        _ => (Unit::Millis, true),
    };
    ExpireArgs::parse(&cmd.args, unit, absolute).map_err(Reply::from)
}

/// A memcached TTL for a Unix time in ms still in the future: whole
/// seconds, rounded up; beyond memcached's 32-bit clock, its last second.
fn ttl_until(at_ms: u64) -> Ttl {
    let secs = at_ms.saturating_sub(now_ms()).div_ceil(1000).max(1);
    if secs <= MAX_RELATIVE_SECS {
        return Ttl::secs(secs as u32);
    }
    // memcached counts whole seconds on its own clock: round to nearest.
    let at = (at_ms.saturating_add(500) / 1000).min(u64::from(u32::MAX));
    Ttl::at(UNIX_EPOCH + Duration::from_secs(at))
}

/// The TTL to write back for a key whose remaining TTL was read.
fn keep_ttl(remaining: Option<i64>) -> Ttl {
    match remaining {
        Some(t) if t > 0 => ttl_until(now_ms() + t as u64 * 1000),
        Some(0) => Ttl::secs(1),
        _ => Ttl::NEVER,
    }
}

async fn flush_all(server: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| io_reason(&e))?;
    s.write_all(b"flush_all\r\n")
        .await
        .map_err(|e| io_reason(&e))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.map_err(|e| io_reason(&e))?;
    if buf[..n].starts_with(b"OK\r\n") {
        Ok(())
    } else {
        Err(format!(
            "flush_all answered {:?}",
            String::from_utf8_lossy(&buf[..n]).trim_end()
        ))
    }
}

impl Finish {
    fn reply(self, results: impl Iterator<Item = Result<OpResult, Reply>>) -> Reply {
        // Every result is taken, even after an error: `results` is this
        // command's share of a batch, and the next command reads on.
        let mut ok = Vec::with_capacity(results.size_hint().0);
        let mut failed = None;
        for r in results {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => _ = failed.get_or_insert(e),
            }
        }
        if let Some(e) = failed {
            return e;
        }
        // The value is moved out of the result, not copied.
        let value = |r: OpResult| {
            let hit = found(&r);
            match r {
                OpResult::Get(GetResult { value: Some(v), .. }) if hit => {
                    Reply::Bulk(Bytes::from(v))
                }
                _ => Reply::Nil,
            }
        };
        let applied = |r: &OpResult| match r {
            OpResult::Mutation(m) => m.status == MutationStatus::Applied,
            _ => false,
        };
        let first = ok.first();
        match self {
            Finish::Value => ok.into_iter().next().map_or(Reply::Nil, value),
            Finish::Values => Reply::Array(ok.into_iter().map(value).collect()),
            Finish::SetOk if first.is_some_and(applied) => Reply::ok(),
            Finish::SetOk => Reply::Nil,
            Finish::SetNx => Reply::Int(first.is_some_and(applied) as i64),
            Finish::Ok => Reply::ok(),
            Finish::Deleted => Reply::Int(ok.iter().filter(|r| applied(r)).count() as i64),
            Finish::Found => Reply::Int(ok.iter().filter(|r| found(r)).count() as i64),
            Finish::Size => match first {
                Some(OpResult::Get(g)) if g.hit() => Reply::Int(g.item.size.unwrap_or(0) as i64),
                _ => Reply::Int(0),
            },
            Finish::Ttl(millis) => match first {
                Some(OpResult::Get(g)) if g.hit() => match g.item.ttl {
                    Some(t) if t >= 0 => Reply::Int(if millis { t * 1000 } else { t }),
                    _ => Reply::Int(-1),
                },
                _ => Reply::Int(-2),
            },
        }
    }
}

impl Backend for MemcachedBackend {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn supports(&self, spec: &CommandSpec) -> bool {
        SUPPORTED.contains(&spec.name)
    }

    fn health(&self) -> String {
        // The client keeps no per-server state to read without a round trip.
        format!(
            "{} server(s), checked per command",
            self.config.servers.len()
        )
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
