//! The `memory` backend: an in-process store, so that keyway alone is a
//! working Redis for development and tests.
//!
//! Commands run synchronously on the caller's task. Single-key commands run
//! concurrently with each other (the store locks per partition); a batch holding a
//! multi-key write (RENAME, MSET, ...) or a Lua script (see `scripting`)
//! takes the store's gate exclusively, so no other client's command
//! interleaves with it, as in Redis.
//!
//! Databases (SELECT) are separate stores, each with its own gate and
//! blocked clients, made on first use; scripts, functions and pub/sub
//! channels are shared by all, as in Redis. MOVE and SWAPDB take the
//! gates of both databases they touch, lower index first.

mod bitop;
mod bits;
mod blocking;
mod cjson;
mod cmsgpack;
mod databases;
mod dump;
mod functions;
mod geo;
mod groups;
mod hashes;
mod hll;
mod keys;
mod library;
mod lists;
mod luaargs;
mod luareply;
mod node;
mod packed;
mod pubsub;
mod rdb;
mod room;
mod scripting;
mod sets;
mod snapshot;
mod sort;
pub mod store;
mod stream;
mod streams;
mod strings;
pub mod tunables;
mod typed;
mod xinfo;
mod zset;
mod zsets;

use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use serde::Deserialize;

use super::{Backend, BackendSpec, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::wire::command::{self, CommandSpec};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use store::{Entry, EntryRef, Store, Value, ValueRef};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Bound on the process's allocated memory (bytes, or kb/mb/gb);
    /// writes beyond it evict keys or are refused with OOM.
    pub max_memory: Option<crate::wire::size::ByteSize>,
    #[serde(default)]
    pub eviction: Eviction,
    /// An RDB file (Redis's format) the backend is read from at start and
    /// written to by SAVE, BGSAVE and when keyway stops. Off by default.
    pub snapshot: Option<String>,
}

/// What a write does when `max_memory` is reached (Redis's maxmemory-policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eviction {
    /// Refuse the write with OOM.
    #[default]
    Noeviction,
    AllkeysLru,
    VolatileLru,
    AllkeysRandom,
    VolatileTtl,
}

impl BackendSpec for MemoryConfig {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn build(&self, _name: &str) -> Arc<dyn Backend> {
        Arc::new(MemoryBackend::new(self))
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_memory.is_some_and(|m| m.0 < 1024 * 1024) {
            out.push((
                "max_memory".into(),
                "must be at least 1mb (it bounds the whole process's memory)".into(),
            ));
        }
        if let Some(path) = &self.snapshot {
            if let Err(e) = snapshot::check(path) {
                out.push(("snapshot".into(), format!("cannot be read: {e}")));
            }
        }
        out
    }
}

type Handler = fn(&Store, &[Bytes]) -> CmdResult;

/// How a command runs with respect to other clients' commands.
#[derive(Clone, Copy, PartialEq)]
enum Gate {
    /// Touches one key (or reads several): runs alongside others.
    Shared,
    /// Writes several keys: runs alone.
    Exclusive,
    /// A Lua script (see `scripting`): runs alone, and is not one handler.
    Script,
}
use Gate::{Exclusive, Script, Shared};

/// The handler of a scripting command, never called: `Memory::one` sends
/// those to `scripting` first.
fn scripted(_: &Store, _: &[Bytes]) -> CmdResult {
    Err(CmdError::msg(
        "ERR scripting commands run in the scripting module",
    ))
}

/// Every command the memory backend runs. The README's command table is
/// checked against this list by a test.
const HANDLERS: &[(&str, Handler, Gate)] = &[
    // Strings.
    ("get", strings::get, Shared),
    ("set", strings::set, Shared),
    ("setnx", strings::setnx, Shared),
    ("setex", strings::setex, Shared),
    ("psetex", strings::psetex, Shared),
    ("getset", strings::getset, Shared),
    ("getdel", strings::getdel, Shared),
    ("getex", strings::getex, Shared),
    ("mget", strings::mget, Shared),
    ("mset", strings::mset, Exclusive),
    ("msetnx", strings::msetnx, Exclusive),
    ("append", strings::append, Shared),
    ("strlen", strings::strlen, Shared),
    ("incr", strings::incr, Shared),
    ("decr", strings::decr, Shared),
    ("incrby", strings::incrby, Shared),
    ("decrby", strings::decrby, Shared),
    ("incrbyfloat", strings::incrbyfloat, Shared),
    ("getrange", strings::getrange, Shared),
    ("substr", strings::getrange, Shared),
    ("setrange", strings::setrange, Shared),
    ("lcs", strings::lcs, Shared),
    // Keys.
    ("del", keys::del, Exclusive),
    ("unlink", keys::del, Exclusive),
    ("exists", keys::exists, Shared),
    ("touch", keys::exists, Shared),
    ("type", keys::type_, Shared),
    ("expire", keys::expire, Shared),
    ("pexpire", keys::pexpire, Shared),
    ("expireat", keys::expireat, Shared),
    ("pexpireat", keys::pexpireat, Shared),
    ("ttl", keys::ttl, Shared),
    ("pttl", keys::pttl, Shared),
    ("expiretime", keys::expiretime, Shared),
    ("pexpiretime", keys::pexpiretime, Shared),
    ("persist", keys::persist, Shared),
    ("rename", keys::rename, Exclusive),
    ("renamenx", keys::renamenx, Exclusive),
    ("copy", keys::copy, Exclusive),
    ("dump", dump::dump_cmd, Shared),
    ("restore", dump::restore_cmd, Exclusive),
    ("sort", sort::sort, Exclusive),
    ("sort_ro", sort::sort_ro, Exclusive),
    ("object", keys::object, Shared),
    ("memory", keys::memory, Shared),
    ("keys", keys::keys, Shared),
    ("scan", keys::scan, Shared),
    ("randomkey", keys::randomkey, Shared),
    ("dbsize", keys::dbsize, Shared),
    ("info", keys::info, Shared),
    ("eval", scripted, Script),
    ("evalsha", scripted, Script),
    ("eval_ro", scripted, Script),
    ("evalsha_ro", scripted, Script),
    ("script", scripted, Script),
    ("function", scripted, Script),
    ("fcall", scripted, Script),
    ("fcall_ro", scripted, Script),
    ("flushdb", keys::flushdb, Exclusive),
    ("flushall", keys::flushdb, Exclusive),
    // Hashes.
    ("hset", hashes::hset, Shared),
    ("hmset", hashes::hmset, Shared),
    ("hsetnx", hashes::hsetnx, Shared),
    ("hget", hashes::hget, Shared),
    ("hmget", hashes::hmget, Shared),
    ("hgetall", hashes::hgetall, Shared),
    ("hdel", hashes::hdel, Shared),
    ("hexists", hashes::hexists, Shared),
    ("hlen", hashes::hlen, Shared),
    ("hkeys", hashes::hkeys, Shared),
    ("hvals", hashes::hvals, Shared),
    ("hstrlen", hashes::hstrlen, Shared),
    ("hincrby", hashes::hincrby, Shared),
    ("hincrbyfloat", hashes::hincrbyfloat, Shared),
    ("hrandfield", hashes::hrandfield, Shared),
    ("hscan", hashes::hscan, Shared),
    // Lists.
    ("lpush", lists::lpush, Shared),
    ("rpush", lists::rpush, Shared),
    ("lpushx", lists::lpushx, Shared),
    ("rpushx", lists::rpushx, Shared),
    ("lpop", lists::lpop, Shared),
    ("rpop", lists::rpop, Shared),
    ("llen", lists::llen, Shared),
    ("lrange", lists::lrange, Shared),
    ("lindex", lists::lindex, Shared),
    ("lset", lists::lset, Shared),
    ("lrem", lists::lrem, Shared),
    ("ltrim", lists::ltrim, Shared),
    ("linsert", lists::linsert, Shared),
    ("lpos", lists::lpos, Shared),
    ("lmove", lists::lmove, Exclusive),
    ("rpoplpush", lists::rpoplpush, Exclusive),
    ("lmpop", lists::lmpop, Exclusive),
    ("blpop", lists::blpop, Exclusive),
    ("brpop", lists::brpop, Exclusive),
    ("blmove", lists::blmove, Exclusive),
    ("brpoplpush", lists::brpoplpush, Exclusive),
    ("blmpop", lists::blmpop, Exclusive),
    // Sets.
    ("sadd", sets::sadd, Shared),
    ("srem", sets::srem, Shared),
    ("smembers", sets::smembers, Shared),
    ("sismember", sets::sismember, Shared),
    ("smismember", sets::smismember, Shared),
    ("scard", sets::scard, Shared),
    ("spop", sets::spop, Shared),
    ("srandmember", sets::srandmember, Shared),
    ("smove", sets::smove, Exclusive),
    ("sinter", sets::sinter, Exclusive),
    ("sintercard", sets::sintercard, Exclusive),
    ("sunion", sets::sunion, Exclusive),
    ("sdiff", sets::sdiff, Exclusive),
    ("sinterstore", sets::sinterstore, Exclusive),
    ("sunionstore", sets::sunionstore, Exclusive),
    ("sdiffstore", sets::sdiffstore, Exclusive),
    ("sscan", sets::sscan, Shared),
    // Sorted sets.
    ("zadd", zsets::zadd, Shared),
    ("zincrby", zsets::zincrby, Shared),
    ("zrem", zsets::zrem, Shared),
    ("zscore", zsets::zscore, Shared),
    ("zmscore", zsets::zmscore, Shared),
    ("zcard", zsets::zcard, Shared),
    ("zcount", zsets::zcount, Shared),
    ("zlexcount", zsets::zlexcount, Shared),
    ("zrange", zsets::zrange, Shared),
    ("zrangebyscore", zsets::zrangebyscore, Shared),
    ("zrevrangebyscore", zsets::zrevrangebyscore, Shared),
    ("zrangebylex", zsets::zrangebylex, Shared),
    ("zrevrangebylex", zsets::zrevrangebylex, Shared),
    ("zrevrange", zsets::zrevrange, Shared),
    ("zrank", zsets::zrank, Shared),
    ("zrevrank", zsets::zrevrank, Shared),
    ("zpopmin", zsets::zpopmin, Shared),
    ("zpopmax", zsets::zpopmax, Shared),
    ("zremrangebyrank", zsets::zremrangebyrank, Shared),
    ("zremrangebyscore", zsets::zremrangebyscore, Shared),
    ("zremrangebylex", zsets::zremrangebylex, Shared),
    ("zrandmember", zsets::zrandmember, Shared),
    ("zscan", zsets::zscan, Shared),
    ("zrangestore", zsets::zrangestore, Exclusive),
    ("zmpop", zsets::zmpop, Exclusive),
    ("bzpopmin", zsets::bzpopmin, Exclusive),
    ("bzpopmax", zsets::bzpopmax, Exclusive),
    ("bzmpop", zsets::bzmpop, Exclusive),
    ("zunionstore", zsets::zunionstore, Exclusive),
    ("zinterstore", zsets::zinterstore, Exclusive),
    ("zdiffstore", zsets::zdiffstore, Exclusive),
    ("zunion", zsets::zunion, Exclusive),
    ("zinter", zsets::zinter, Exclusive),
    ("zdiff", zsets::zdiff, Exclusive),
    ("zintercard", zsets::zintercard, Exclusive),
    // Bitmaps and HyperLogLogs (both are strings).
    ("setbit", bits::setbit, Shared),
    ("getbit", bits::getbit, Shared),
    ("bitcount", bits::bitcount, Shared),
    ("bitpos", bits::bitpos, Shared),
    ("bitop", bits::bitop, Exclusive),
    ("bitfield", bits::bitfield, Shared),
    ("bitfield_ro", bits::bitfield_ro, Shared),
    ("pfadd", hll::pfadd, Exclusive),
    ("pfcount", hll::pfcount, Exclusive),
    ("pfmerge", hll::pfmerge, Exclusive),
    // Geo (on sorted sets).
    ("geoadd", geo::geoadd, Shared),
    ("geopos", geo::geopos, Shared),
    ("geodist", geo::geodist, Shared),
    ("geohash", geo::geohash, Shared),
    ("geosearch", geo::geosearch, Shared),
    ("geosearchstore", geo::geosearchstore, Exclusive),
    ("georadius", geo::georadius, Exclusive),
    ("georadius_ro", geo::georadius_ro, Shared),
    ("georadiusbymember", geo::georadiusbymember, Exclusive),
    ("georadiusbymember_ro", geo::georadiusbymember_ro, Shared),
    // Streams.
    ("xadd", streams::xadd, Shared),
    ("xlen", streams::xlen, Shared),
    ("xrange", streams::xrange, Shared),
    ("xrevrange", streams::xrevrange, Shared),
    ("xdel", streams::xdel, Shared),
    ("xtrim", streams::xtrim, Shared),
    ("xsetid", streams::xsetid, Shared),
    ("xread", streams::xread, Shared),
    ("xreadgroup", streams::xreadgroup, Exclusive),
    ("xgroup", groups::xgroup, Shared),
    ("xack", groups::xack, Shared),
    ("xpending", groups::xpending, Shared),
    ("xclaim", groups::xclaim, Shared),
    ("xautoclaim", groups::xautoclaim, Shared),
    ("xinfo", xinfo::xinfo, Shared),
    // Pub/sub (SUBSCRIBE and friends go through `Backend::subscriber`).
    ("publish", pubsub::publish, Shared),
    ("spublish", pubsub::spublish, Shared),
    ("pubsub", pubsub::pubsub, Shared),
];

/// Handlers indexed by command id.
fn dispatch() -> &'static [Option<(Handler, Gate)>] {
    static TABLE: OnceLock<Vec<Option<(Handler, Gate)>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![None; command::table().len()];
        for &(name, h, gate) in HANDLERS {
            // A name missing from the command table is a programming error
            // caught by the tests below.
            if let Some(spec) = command::lookup(name.as_bytes()) {
                t[spec.id] = Some((h, gate));
            }
        }
        t
    })
}

/// Names of the commands this backend runs (for docs and --check-config).
pub fn supported_commands() -> impl Iterator<Item = &'static str> {
    // INFO keyspace is keyway's own question to the backend; clients' INFO
    // is answered by keyway.
    HANDLERS
        .iter()
        .map(|h| h.0)
        .filter(|n| !command::known(n).has(command::LOCAL))
}

/// The backend's state, shared with its sessions (WATCH).
pub struct Memory {
    store: Arc<Store>,
    gate: RwLock<()>,
    waiters: Arc<blocking::Waiters>,
    max_memory: Option<usize>,
    eviction: Eviction,
    evicted: std::sync::atomic::AtomicU64,
    scripts: Arc<scripting::Scripts>,
    functions: Arc<functions::Libraries>,
}

/// A handle on the databases; clones share them.
#[derive(Clone)]
pub struct MemoryBackend {
    /// Database 0, which nearly every client uses, without a lookup.
    inner: Arc<Memory>,
    /// Databases 1 to 255, made on first use.
    others: Arc<[std::sync::OnceLock<Arc<Memory>>]>,
    /// Its snapshot file, when it has one.
    snapshot: Option<Arc<snapshot::Snapshot>>,
}

impl std::ops::Deref for MemoryBackend {
    type Target = Memory;
    fn deref(&self) -> &Memory {
        &self.inner
    }
}

/// Watched keys and the versions they had when watched.
type Watched = [(Bytes, Option<u64>)];

impl MemoryBackend {
    pub fn new(config: &MemoryConfig) -> MemoryBackend {
        let store = Arc::new(Store::default());
        store::spawn_sweeper(&store);
        let mut backend = MemoryBackend {
            inner: Arc::new(Memory {
                store,
                gate: RwLock::new(()),
                waiters: Default::default(),
                max_memory: config.max_memory.map(|m| m.0 as usize),
                eviction: config.eviction,
                evicted: Default::default(),
                scripts: Default::default(),
                functions: Default::default(),
            }),
            others: (1..=u8::MAX).map(|_| Default::default()).collect(),
            snapshot: config
                .snapshot
                .as_deref()
                .map(|p| Arc::new(snapshot::Snapshot::new(p))),
        };
        if let Some(snap) = &backend.snapshot {
            // The config's check read the file already; a failure now
            // (it changed since) starts empty and never overwrites it.
            match snapshot::restore_into(&backend, snap) {
                Ok(keys) => tracing::info!(path = %snap.path.display(), keys, "snapshot loaded"),
                Err(e) => {
                    tracing::error!("snapshot not loaded, and will not be overwritten: {e}");
                    backend.snapshot = None;
                }
            }
        }
        backend
    }

    /// SAVE or BGSAVE, when the backend has a snapshot file.
    pub fn save_snapshot(&self, background: bool) -> Option<Result<String, String>> {
        let snap = self.snapshot.as_ref()?;
        Some(if background {
            if snapshot::bgsave(self, snap) {
                Ok("Background saving started".into())
            } else {
                Err("ERR Background save already in progress".into())
            }
        } else {
            snapshot::save(self, snap)
                .map(|()| "OK".into())
                .map_err(|e| format!("ERR snapshot not written: {e}"))
        })
    }

    /// Unix seconds of the last snapshot written, when there is a file.
    pub fn last_save(&self) -> Option<u64> {
        self.snapshot
            .as_ref()
            .map(|s| s.last_save.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Database `n`, made now if it is new.
    fn db(&self, n: u8) -> &Arc<Memory> {
        match n.checked_sub(1) {
            None => &self.inner,
            Some(i) => self.others[usize::from(i)].get_or_init(|| Arc::new(self.inner.sibling())),
        }
    }

    /// Database `n` if a command has used it.
    fn existing(&self, n: u8) -> Option<&Arc<Memory>> {
        match n.checked_sub(1) {
            None => Some(&self.inner),
            Some(i) => self.others[usize::from(i)].get(),
        }
    }

    /// Runs a batch synchronously in its database (no blocking commands).
    pub fn run(&self, batch: &[Command]) -> Vec<Reply> {
        let db = batch.first().map_or(0, |c| c.db);
        self.db(db).run(batch)
    }
}

/// What a database nobody has written answers, so that FLUSHALL, DBSIZE
/// or SCAN over all sixteen does not make fifteen empty stores.
fn untouched(c: &Command) -> Option<Reply> {
    Some(match c.spec.name {
        "flushdb" | "flushall" => Reply::ok(),
        "dbsize" => Reply::Int(0),
        "keys" => Reply::Array(Vec::new()),
        "scan" => Reply::Array(vec![Reply::bulk_str("0"), Reply::Array(Vec::new())]),
        "randomkey" => Reply::Nil,
        _ => return None,
    })
}

impl Memory {
    /// Another database beside this one: its own keys, gate and blocked
    /// clients; the same scripts, functions, channels and memory bound.
    fn sibling(&self) -> Memory {
        let store = Arc::new(Store::with_hub(self.store.hub.clone()));
        store::spawn_sweeper(&store);
        Memory {
            store,
            gate: RwLock::new(()),
            waiters: Default::default(),
            max_memory: self.max_memory,
            eviction: self.eviction,
            evicted: Default::default(),
            scripts: self.scripts.clone(),
            functions: self.functions.clone(),
        }
    }

    /// Runs a batch synchronously; the [`Backend`] impl wraps this.
    pub fn run(&self, batch: &[Command]) -> Vec<Reply> {
        self.run_with(batch, &[])
    }

    /// Runs a batch; MULTI ... EXEC in it runs as Redis runs a transaction
    /// (QUEUED for each command, the results in EXEC's reply), aborted when
    /// a `watched` key changed. The gate is held for the whole batch, so no
    /// other client's command runs in between, and the batch runs at one
    /// instant of the clock, as Redis runs a transaction.
    fn run_with(&self, batch: &[Command], watched: &Watched) -> Vec<Reply> {
        crate::wire::util::at_one_instant(|| self.run_gated(batch, watched))
    }

    fn run_gated(&self, batch: &[Command], watched: &Watched) -> Vec<Reply> {
        let table = dispatch();
        let exclusive = batch.iter().any(|c| {
            matches!(table[c.spec.id], Some((_, Exclusive | Script))) || c.spec.has(command::TX)
        });
        // The gate guards no data, so a poisoned lock (a panic elsewhere) is harmless.
        let _guard = if exclusive {
            Err(self.gate.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Ok(self.gate.read().unwrap_or_else(|e| e.into_inner()))
        };
        self.prefetch(batch);
        let mut replies = Vec::with_capacity(batch.len());
        // Inside MULTI: the results so far, or None when a watched key changed.
        let mut tx: Option<Option<Vec<Reply>>> = None;
        // A transaction that would write past max_memory is refused whole at
        // EXEC, as Redis refuses it, before the watched keys are looked at.
        let mut full: Option<Reply> = None;
        for (i, c) in batch.iter().enumerate() {
            match (c.spec.name, tx.as_mut()) {
                ("multi", None) => {
                    full = batch[i + 1..]
                        .iter()
                        .take_while(|c| c.spec.name != "exec")
                        .find_map(|c| self.make_room(c.spec).err());
                    let unchanged = watched.iter().all(|(k, v)| self.store.version(k) == *v);
                    tx = Some((unchanged && full.is_none()).then(Vec::new));
                    replies.push(Reply::ok());
                }
                ("exec", Some(_)) => {
                    let results = tx.take().flatten();
                    replies.push(match full.take() {
                        Some(_) => Reply::error(format!(
                            "EXECABORT Transaction discarded because of: {}",
                            room::OOM
                        )),
                        None => results.map_or(Reply::NilArray, Reply::Array),
                    });
                }
                (_, Some(results)) => {
                    if let Some(results) = results {
                        results.push(self.one(table, c));
                    }
                    replies.push(Reply::status("QUEUED"));
                }
                (_, None) => replies.push(self.one(table, c)),
            }
        }
        replies
    }

    /// Starts loading a batch's keys before its first command runs, so that
    /// their cache misses overlap instead of following one another: a
    /// random key's table slot and node are rarely in cache, and waiting
    /// for them was a fifth of the CPU of GET at pipeline 16. All the slots
    /// first, then all the nodes they point to. One key alone gains nothing.
    fn prefetch(&self, batch: &[Command]) {
        if let [c] = batch {
            if c.spec.single_key(c.args.len()).is_some() {
                return;
            }
        }
        let keys = |each: &dyn Fn(&[u8])| {
            for c in batch {
                match c.spec.single_key(c.args.len()) {
                    Some(i) => each(&c.args[i]),
                    None => c
                        .spec
                        .key_positions(&c.args)
                        .into_iter()
                        .for_each(|i| each(&c.args[i])),
                }
            }
        };
        keys(&|k| self.store.prefetch_slot(k));
        keys(&|k| self.store.prefetch(k));
    }

    fn one(&self, table: &[Option<(Handler, Gate)>], c: &Command) -> Reply {
        guarded(c.spec.name, || {
            if let Some((_, Script)) = table[c.spec.id] {
                // Its commands check memory one by one.
                return scripting::run(self, c)
                    .or_else(|| functions::run(self, c))
                    .unwrap_or(Reply::Nil);
            }
            if let Err(oom) = self.make_room(c.spec) {
                return oom;
            }
            match table[c.spec.id] {
                Some((h, _)) => {
                    let r = h(&self.store, &c.args).unwrap_or_else(Reply::from);
                    streams::for_protocol(c, r)
                }
                None => Reply::from(CmdError::msg(format!(
                    "ERR '{}' is not supported by the memory backend",
                    c.spec.name
                ))),
            }
        })
    }
}

/// Runs one command under the panic net: a bug in a handler answers that
/// command with `-ERR internal error` (logged and counted) while the rest
/// of the batch, the client and the store carry on. The store's locks are
/// used poisoned or not (see `store::Partition`), and a write whose handler
/// panicked leaves its key as the handler left it: handlers check their
/// arguments before they change anything.
fn guarded(command: &'static str, run: impl FnOnce() -> Reply) -> Reply {
    crate::wire::util::catch_panic(run).unwrap_or_else(|panic| {
        tracing::error!(command, "internal error (a bug in keyway): {panic}");
        crate::wire::metrics::metrics().internal_error(command);
        Reply::error("ERR internal error")
    })
}

/// A client's WATCH: versions of its watched keys, each in its database,
/// checked at EXEC.
struct MemorySession {
    backend: MemoryBackend,
    watched: Vec<(u8, Bytes, Option<u64>)>,
}

impl Session for MemorySession {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        let n = batch.first().map_or(0, |c| c.db);
        let memory = self.backend.db(n).clone();
        let replies = if batch.iter().any(|c| c.spec.name == "multi") {
            // Keys watched in this database are checked under its gate,
            // with the transaction; those in others (rare: WATCH, then
            // SELECT) just before.
            let elsewhere_changed = self
                .watched
                .iter()
                .filter(|(db, ..)| *db != n)
                .any(|(db, k, v)| self.backend.db(*db).store.version(k) != *v);
            let here: Vec<(Bytes, Option<u64>)> = self
                .watched
                .iter()
                .filter(|(db, ..)| *db == n)
                .map(|(_, k, v)| {
                    (
                        k.clone(),
                        if elsewhere_changed {
                            Some(u64::MAX)
                        } else {
                            *v
                        },
                    )
                })
                .collect();
            let here = if elsewhere_changed && here.is_empty() {
                vec![(Bytes::new(), Some(u64::MAX))]
            } else {
                here
            };
            let r = memory.run_with(&batch, &here);
            // EXEC forgets what was watched, as in Redis.
            self.watched.clear();
            memory.serve_after(&batch);
            r
        } else {
            batch
                .iter()
                .map(|c| match c.spec.name {
                    "watch" => {
                        for k in &c.args[1..] {
                            let v = memory.store.version(k);
                            self.watched.push((n, k.clone(), v));
                        }
                        Reply::ok()
                    }
                    "unwatch" => {
                        self.watched.clear();
                        Reply::ok()
                    }
                    _ => {
                        let r = memory.run(std::slice::from_ref(c));
                        memory.serve_after(std::slice::from_ref(c));
                        r.into_iter().next().unwrap_or(Reply::Nil)
                    }
                })
                .collect()
        };
        Box::pin(std::future::ready(replies))
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn save(&self, background: bool) -> Option<Result<String, String>> {
        self.save_snapshot(background)
    }

    fn last_save(&self) -> Option<u64> {
        MemoryBackend::last_save(self)
    }

    fn saving(&self) -> bool {
        let s = self.snapshot.as_ref();
        s.is_some_and(|s| s.saving.load(std::sync::atomic::Ordering::Acquire))
    }

    fn cached_scripts(&self) -> Option<usize> {
        Some(self.scripts.len())
    }

    /// The snapshot is written as keyway stops, as Redis saves on SHUTDOWN.
    fn shutdown(&self) {
        if let Some(Err(e)) = self.save_snapshot(false) {
            tracing::error!("snapshot not written at shutdown: {e}");
        }
    }

    fn databases(&self) -> bool {
        true
    }

    fn make_room(&self, db: u8) -> Result<(), Reply> {
        self.db(db).room()
    }

    fn supports(&self, spec: &CommandSpec) -> bool {
        // SUBSCRIBE and friends go through `subscriber`, MULTI/EXEC through
        // `run_with` and WATCH through sessions, not the handlers.
        dispatch()[spec.id].is_some()
            || spec.has(command::PUBSUB)
            || spec.has(command::TX)
            || matches!(spec.name, "move" | "swapdb" | "wait")
    }

    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        let n = batch.first().map_or(0, |c| c.db);
        if n != 0 && self.existing(n).is_none() {
            if let Some(replies) = batch.iter().map(untouched).collect() {
                return Box::pin(std::future::ready(replies));
            }
        }
        if batch.iter().any(|c| {
            matches!(c.spec.name, "move" | "swapdb")
                || c.spec.name == "copy"
                    && c.args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"DB"))
        }) {
            return Box::pin(std::future::ready(self.across(&batch)));
        }
        let db = self.db(n);
        let blocks = batch.iter().any(|c| c.spec.has(command::BLOCKING))
            && !batch.iter().any(|c| c.spec.name == "multi");
        if !blocks {
            let replies = db.run(&batch);
            db.serve_after(&batch);
            if batch.iter().any(|c| c.spec.name == "flushall") {
                // Queued in MULTI, FLUSHALL reaches the batch's database
                // with the transaction; the others are emptied right after.
                self.clear_others(n);
            }
            return Box::pin(std::future::ready(replies));
        }
        Box::pin(async move {
            let mut replies = Vec::with_capacity(batch.len());
            let mut start = 0;
            for (i, cmd) in batch.iter().enumerate() {
                if cmd.spec.has(command::BLOCKING) {
                    let before = &batch[start..i];
                    replies.extend(db.run(before));
                    db.serve_after(before);
                    replies.push(streams::for_protocol(cmd, db.block(cmd).await));
                    db.serve_after(std::slice::from_ref(cmd));
                    start = i + 1;
                }
            }
            let rest = &batch[start..];
            replies.extend(db.run(rest));
            db.serve_after(rest);
            replies
        })
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        let session = MemorySession {
            backend: self.clone(),
            watched: Vec::new(),
        };
        Box::pin(std::future::ready(
            Ok(Box::new(session) as Box<dyn Session>),
        ))
    }

    fn subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        let sub = self.store.hub.subscribe(tag, pushes);
        Box::pin(std::future::ready(Ok(Box::new(sub) as Box<dyn Subscriber>)))
    }
}

/// Keys that commands of a batch may have written, for blocked clients.
fn written_keys(batch: &[Command]) -> Vec<Bytes> {
    batch
        .iter()
        .filter(|c| c.spec.has(command::WRITE))
        .flat_map(|c| {
            c.spec
                .key_positions(&c.args)
                .into_iter()
                .map(|p| c.args[p].clone())
        })
        .collect()
}

/// Copies an argument for storage, so that a stored value never pins the
/// client's whole read buffer.
fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// A copy of a stored string for a reply (the store's own bytes stay under
/// its lock). Short strings are cut from a per-thread buffer, so that a
/// GET costs a reference count rather than an allocation.
fn reply_bytes(v: &[u8]) -> Bytes {
    const CHUNK: usize = 16 * 1024;
    if v.len() > CHUNK / 16 {
        return Bytes::copy_from_slice(v);
    }
    thread_local! {
        static ARENA: std::cell::RefCell<bytes::BytesMut> = Default::default();
    }
    ARENA.with(|a| {
        let mut a = a.borrow_mut();
        if a.capacity() < v.len() {
            // The old buffer is freed when the last reply cut from it is.
            *a = bytes::BytesMut::with_capacity(CHUNK);
        }
        a.extend_from_slice(v);
        a.split().freeze()
    })
}

/// The string held by an entry being written, or WRONGTYPE.
fn as_str(e: &Entry) -> CmdResult<&Bytes> {
    match &e.value {
        Value::Str(s) => Ok(s),
        _ => Err(CmdError::WrongType),
    }
}

/// The string held by an entry being read, or WRONGTYPE.
fn str_of(e: EntryRef<'_>) -> CmdResult<&[u8]> {
    match e.value {
        ValueRef::Str(s) => Ok(s),
        _ => Err(CmdError::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_command_is_answered_and_counted() {
        let before = crate::wire::metrics::metrics().encode();
        let r = guarded("get", || panic!("injected"));
        assert_eq!(r, Reply::error("ERR internal error"));
        let after = crate::wire::metrics::metrics().encode();
        assert_ne!(before, after);
        assert!(after.contains("keyway_internal_errors_total{command=\"get\"}"));
        assert_eq!(guarded("get", Reply::ok), Reply::ok());
    }

    #[test]
    fn every_handler_is_in_the_command_table() {
        for (name, _, _) in HANDLERS {
            assert!(
                command::lookup(name.as_bytes()).is_some(),
                "{name} missing from the table"
            );
        }
    }
}
