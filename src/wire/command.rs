//! The command table: for every command keyway knows, its arity, which
//! arguments are keys, and flags. Routing, fan-out, key rewriting and the
//! backends' "supported" lists all read this one table.
//!
//! A command missing from the table gets Redis's unknown-command error; a
//! command in the table that a namespace's backend cannot run gets an error
//! naming the backend and the namespace.

// Key positions are computed from client arguments before anything else
// reads them: no indexing that can panic and no arithmetic that can
// overflow, and the lints keep it so.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::wire::error::CmdError;
use crate::wire::protocol::parse_i64;

/// The Redis version keyway is compatible with; clients read it from INFO
/// and HELLO (scripts from `redis.REDIS_VERSION`) to decide which commands
/// exist.
pub const REDIS_VERSION: &str = "7.2.4";
/// The same as Redis's `redis.REDIS_VERSION_NUM`: 0x00MMmmpp.
pub const REDIS_VERSION_NUM: u32 = 0x0007_0204;

/// Writes data.
pub const WRITE: u16 = 1;
/// Only reads data.
pub const READ: u16 = 1 << 1;
/// Answered by keyway itself, never sent to a backend.
pub const LOCAL: u16 = 1 << 2;
/// Whole-keyspace: fanned out to every namespace (or backend) and merged.
pub const KEYSPACE: u16 = 1 << 3;
/// May block the client (BLPOP, XREAD BLOCK, WAIT).
pub const BLOCKING: u16 = 1 << 4;
/// Pub/Sub.
pub const PUBSUB: u16 = 1 << 5;
/// Transaction control (MULTI, EXEC, WATCH...).
pub const TX: u16 = 1 << 6;
/// Sets, clears or reads a key's TTL itself: the namespace's default TTL
/// is not applied after it.
pub const TTL: u16 = 1 << 7;
/// Arguments beyond the key positions can name keys or another keyspace
/// (SORT's BY/GET patterns, COPY's DB): `proxy::confine` checks them.
pub const REACHES: u16 = 1 << 8;
/// Runs a script (EVAL, EVALSHA, FCALL and their _RO forms), whose calls
/// the backend runs: the namespace's bounds go with it.
pub const SCRIPT: u16 = 1 << 9;

/// Which arguments of a command are keys.
#[derive(Clone, Copy)]
pub enum Keys {
    None,
    /// Redis's first/last/step; a negative `last` counts from the end
    /// (-1 is the last argument).
    Range {
        first: usize,
        last: i32,
        step: usize,
    },
    /// Commands whose keys depend on their arguments (numkeys and the like).
    Custom(fn(&[Bytes]) -> Vec<usize>),
}

pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: N means exactly N arguments including the name, -N at least N.
    pub arity: i32,
    pub flags: u16,
    pub keys: Keys,
    /// Position in [`TABLE`], for O(1) per-backend dispatch tables.
    pub id: usize,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl CommandSpec {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let n = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == n
        } else {
            argc >= n
        }
    }

    /// Positions of the key arguments in `args` (args[0] is the name).
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        match self.keys {
            Keys::None => Vec::new(),
            Keys::Range { first, last, step } => {
                // A negative `last` counts back from the end (-1: the last).
                let last = if last < 0 {
                    args.len().checked_sub(last.unsigned_abs() as usize)
                } else {
                    Some(last as usize)
                };
                match last {
                    Some(last) if last >= first => (first..=last)
                        .step_by(step.max(1))
                        .filter(|&i| i < args.len())
                        .collect(),
                    _ => Vec::new(),
                }
            }
            Keys::Custom(f) => f(args).into_iter().filter(|&i| i < args.len()).collect(),
        }
    }

    /// The position of the only key, for commands that always have exactly
    /// one (GET, SET, HSET...): the same as `key_positions` without a list.
    pub fn single_key(&self, argc: usize) -> Option<usize> {
        match self.keys {
            Keys::Range { first, last, .. }
                if last >= 0 && first == last as usize && first < argc =>
            {
                Some(first)
            }
            _ => None,
        }
    }

    pub fn arity_error(&self) -> CmdError {
        CmdError::WrongArity(self.name.to_string())
    }
}

/// Keys counted by a numkeys argument at `at`, following it. A count
/// larger than the arguments that follow is cut to them (the command's own
/// check then answers it): a client's number never sizes an allocation.
fn numkeys(args: &[Bytes], at: usize) -> Vec<usize> {
    let first = at.saturating_add(1);
    let available = args.len().saturating_sub(first);
    match args.get(at).and_then(|n| parse_i64(n)) {
        Some(n) if n > 0 => {
            let n = usize::try_from(n).map_or(available, |n| n.min(available));
            (first..first.saturating_add(n)).collect()
        }
        _ => Vec::new(),
    }
}

fn numkeys_at1(a: &[Bytes]) -> Vec<usize> {
    numkeys(a, 1)
}
fn numkeys_at2(a: &[Bytes]) -> Vec<usize> {
    numkeys(a, 2)
}
/// ZUNIONSTORE dest numkeys key...: the destination, then the sources.
fn dest_then_numkeys(a: &[Bytes]) -> Vec<usize> {
    let mut v = vec![1];
    v.extend(numkeys(a, 2));
    v
}
/// XREAD [COUNT n] [BLOCK ms] STREAMS k1 k2 id1 id2 (and XREADGROUP's
/// GROUP g c, NOACK): the first half after STREAMS, found as Redis's own
/// scan finds it, so a group or consumer named "streams" is not taken for
/// the keyword. An odd count after STREAMS names no key (Redis refuses it).
fn streams_keys(a: &[Bytes]) -> Vec<usize> {
    let mut i = 1usize;
    while let Some(o) = a.get(i) {
        let skip = if o.eq_ignore_ascii_case(b"block") || o.eq_ignore_ascii_case(b"count") {
            1
        } else if o.eq_ignore_ascii_case(b"group") {
            2
        } else if o.eq_ignore_ascii_case(b"noack") {
            0
        } else if o.eq_ignore_ascii_case(b"streams") {
            let first = i.saturating_add(1);
            let after = a.len().saturating_sub(first);
            if after % 2 != 0 {
                return Vec::new();
            }
            return (first..first.saturating_add(after / 2)).collect();
        } else {
            return Vec::new();
        };
        i = i.saturating_add(skip).saturating_add(1);
    }
    Vec::new()
}
/// SORT key ... [STORE dest]: the *last* STORE counts, as in Redis, whose
/// scan skips the arguments of LIMIT, GET and BY.
fn sort_keys(a: &[Bytes]) -> Vec<usize> {
    let mut store = None;
    let mut i = 2;
    while let Some(o) = a.get(i) {
        let skip = if o.eq_ignore_ascii_case(b"limit") {
            2
        } else if o.eq_ignore_ascii_case(b"get") || o.eq_ignore_ascii_case(b"by") {
            1
        } else {
            if o.eq_ignore_ascii_case(b"store") && a.len() > i.saturating_add(1) {
                store = Some(i.saturating_add(1));
            }
            0
        };
        i = i.saturating_add(skip).saturating_add(1);
    }
    std::iter::once(1).chain(store).collect()
}
/// GEORADIUS[BYMEMBER] key ... [STORE key] [STOREDIST key]: options
/// start at index 5 for both forms (as in Redis's scan) and the last STORE
/// or STOREDIST is the one written.
fn georadius_keys(a: &[Bytes]) -> Vec<usize> {
    let mut store = None;
    let mut i = 5usize;
    while let Some(o) = a.get(i) {
        let next = i.saturating_add(1);
        if (o.eq_ignore_ascii_case(b"store") || o.eq_ignore_ascii_case(b"storedist"))
            && next < a.len()
        {
            store = Some(next);
        }
        i = next;
    }
    std::iter::once(1).chain(store).collect()
}

/// OBJECT ENCODING key, MEMORY USAGE key, XINFO STREAM key: key after a subcommand.
fn key_at2(a: &[Bytes]) -> Vec<usize> {
    if a.len() > 2 { vec![2] } else { Vec::new() }
}

/// MEMORY USAGE names a key; the other MEMORY subcommands do not.
fn usage_key(a: &[Bytes]) -> Vec<usize> {
    if a.len() > 2 && a.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"usage")) {
        vec![2]
    } else {
        Vec::new()
    }
}

const fn r(first: usize, last: i32, step: usize) -> Keys {
    Keys::Range { first, last, step }
}
const K1: Keys = r(1, 1, 1);
const KALL: Keys = r(1, -1, 1);
const K12: Keys = r(1, 2, 1);
const N: Keys = Keys::None;

macro_rules! table {
    ($( ($name:literal, $arity:expr, $flags:expr, $keys:expr) ),* $(,)?) => {
        const RAW: &[(&str, i32, u16, Keys)] = &[ $( ($name, $arity, $flags, $keys) ),* ];
    };
}

table![
    // Connection and server: answered by keyway.
    ("ping", -1, LOCAL, N),
    ("echo", 2, LOCAL, N),
    ("quit", -1, LOCAL, N),
    ("reset", 1, LOCAL, N),
    ("select", 2, LOCAL, N),
    ("hello", -1, LOCAL, N),
    ("auth", -2, LOCAL, N),
    ("acl", -2, LOCAL, N),
    ("client", -2, LOCAL, N),
    ("command", -1, LOCAL, N),
    ("config", -2, LOCAL, N),
    ("slowlog", -2, LOCAL, N),
    ("info", -1, LOCAL, N),
    ("time", 1, LOCAL, N),
    ("lastsave", 1, LOCAL, N),
    // Snapshots of the backends keyway keeps (the memory backend's).
    ("save", 1, KEYSPACE, N),
    ("bgsave", -1, KEYSPACE, N),
    ("role", 1, LOCAL, N),
    ("module", -2, LOCAL, N),
    // keyway is never a replica: only NO ONE is accepted.
    ("replicaof", 3, LOCAL, N),
    ("slaveof", 3, LOCAL, N),
    ("latency", -2, LOCAL, N),
    ("lolwut", -1, LOCAL, N),
    // keyway's own: moving a namespace (server::admin::migration).
    ("keyway", -2, LOCAL, N),
    ("monitor", 1, LOCAL, N),
    ("readonly", 1, LOCAL, N),
    ("readwrite", 1, LOCAL, N),
    ("debug", -2, LOCAL, N),
    // Whole keyspace: fanned out to every namespace.
    ("dbsize", 1, KEYSPACE | READ, N),
    ("swapdb", 3, KEYSPACE | WRITE, N),
    ("keys", 2, KEYSPACE | READ, N),
    ("scan", -2, KEYSPACE | READ, N),
    ("randomkey", 1, KEYSPACE | READ, N),
    ("flushdb", -1, KEYSPACE | WRITE, N),
    ("flushall", -1, KEYSPACE | WRITE, N),
    // Sent to every backend that runs scripts.
    ("script", -2, KEYSPACE, N),
    ("function", -2, KEYSPACE, N),
    // Strings.
    ("get", 2, READ, K1),
    ("set", -3, WRITE, K1),
    ("setnx", 3, WRITE, K1),
    ("setex", 4, WRITE | TTL, K1),
    ("psetex", 4, WRITE | TTL, K1),
    ("getset", 3, WRITE, K1),
    ("getdel", 2, WRITE, K1),
    ("getex", -2, WRITE | TTL, K1),
    ("mget", -2, READ, KALL),
    ("mset", -3, WRITE, r(1, -1, 2)),
    ("msetnx", -3, WRITE, r(1, -1, 2)),
    ("append", 3, WRITE, K1),
    ("strlen", 2, READ, K1),
    ("incr", 2, WRITE, K1),
    ("decr", 2, WRITE, K1),
    ("incrby", 3, WRITE, K1),
    ("decrby", 3, WRITE, K1),
    ("incrbyfloat", 3, WRITE, K1),
    ("getrange", 4, READ, K1),
    ("substr", 4, READ, K1),
    ("setrange", 4, WRITE, K1),
    ("lcs", -3, READ, K12),
    // Generic key commands.
    ("del", -2, WRITE | TTL, KALL),
    ("unlink", -2, WRITE | TTL, KALL),
    ("exists", -2, READ, KALL),
    ("touch", -2, READ, KALL),
    ("type", 2, READ, K1),
    ("expire", -3, WRITE | TTL, K1),
    ("pexpire", -3, WRITE | TTL, K1),
    ("expireat", -3, WRITE | TTL, K1),
    ("pexpireat", -3, WRITE | TTL, K1),
    ("ttl", 2, READ | TTL, K1),
    ("pttl", 2, READ | TTL, K1),
    ("expiretime", 2, READ | TTL, K1),
    ("pexpiretime", 2, READ | TTL, K1),
    ("persist", 2, WRITE | TTL, K1),
    ("rename", 3, WRITE, K12),
    ("renamenx", 3, WRITE, K12),
    ("copy", -3, WRITE | REACHES, K12),
    ("move", 3, WRITE, K1),
    ("dump", 2, READ, K1),
    ("restore", -4, WRITE, K1),
    ("object", -2, READ, Keys::Custom(key_at2)),
    ("memory", -2, READ, Keys::Custom(usage_key)),
    ("sort", -2, WRITE | REACHES, Keys::Custom(sort_keys)),
    ("sort_ro", -2, READ | REACHES, K1),
    ("wait", 3, BLOCKING, N),
    // Hashes.
    ("hset", -4, WRITE, K1),
    ("hmset", -4, WRITE, K1),
    ("hsetnx", 4, WRITE, K1),
    ("hget", 3, READ, K1),
    ("hmget", -3, READ, K1),
    ("hgetall", 2, READ, K1),
    ("hdel", -3, WRITE, K1),
    ("hexists", 3, READ, K1),
    ("hlen", 2, READ, K1),
    ("hkeys", 2, READ, K1),
    ("hvals", 2, READ, K1),
    ("hstrlen", 3, READ, K1),
    ("hincrby", 4, WRITE, K1),
    ("hincrbyfloat", 4, WRITE, K1),
    ("hrandfield", -2, READ, K1),
    ("hscan", -3, READ, K1),
    // Lists.
    ("lpush", -3, WRITE, K1),
    ("rpush", -3, WRITE, K1),
    ("lpushx", -3, WRITE, K1),
    ("rpushx", -3, WRITE, K1),
    ("lpop", -2, WRITE, K1),
    ("rpop", -2, WRITE, K1),
    ("llen", 2, READ, K1),
    ("lrange", 4, READ, K1),
    ("lindex", 3, READ, K1),
    ("lset", 4, WRITE, K1),
    ("lrem", 4, WRITE, K1),
    ("ltrim", 4, WRITE, K1),
    ("linsert", 5, WRITE, K1),
    ("lpos", -3, READ, K1),
    ("lmove", 5, WRITE, K12),
    ("rpoplpush", 3, WRITE, K12),
    ("lmpop", -4, WRITE, Keys::Custom(numkeys_at1)),
    ("blpop", -3, WRITE | BLOCKING, r(1, -2, 1)),
    ("brpop", -3, WRITE | BLOCKING, r(1, -2, 1)),
    ("blmove", 6, WRITE | BLOCKING, K12),
    ("brpoplpush", 4, WRITE | BLOCKING, K12),
    ("blmpop", -5, WRITE | BLOCKING, Keys::Custom(numkeys_at2)),
    // Sets.
    ("sadd", -3, WRITE, K1),
    ("srem", -3, WRITE, K1),
    ("smembers", 2, READ, K1),
    ("sismember", 3, READ, K1),
    ("smismember", -3, READ, K1),
    ("scard", 2, READ, K1),
    ("spop", -2, WRITE, K1),
    ("srandmember", -2, READ, K1),
    ("smove", 4, WRITE, K12),
    ("sinter", -2, READ, KALL),
    ("sintercard", -3, READ, Keys::Custom(numkeys_at1)),
    ("sinterstore", -3, WRITE, KALL),
    ("sunion", -2, READ, KALL),
    ("sunionstore", -3, WRITE, KALL),
    ("sdiff", -2, READ, KALL),
    ("sdiffstore", -3, WRITE, KALL),
    ("sscan", -3, READ, K1),
    // Sorted sets.
    ("zadd", -4, WRITE, K1),
    ("zrem", -3, WRITE, K1),
    ("zscore", 3, READ, K1),
    ("zmscore", -3, READ, K1),
    ("zincrby", 4, WRITE, K1),
    ("zcard", 2, READ, K1),
    ("zcount", 4, READ, K1),
    ("zlexcount", 4, READ, K1),
    ("zrange", -4, READ, K1),
    ("zrangestore", -5, WRITE, K12),
    ("zrangebyscore", -4, READ, K1),
    ("zrevrangebyscore", -4, READ, K1),
    ("zrangebylex", -4, READ, K1),
    ("zrevrangebylex", -4, READ, K1),
    ("zrevrange", -4, READ, K1),
    ("zrank", -3, READ, K1),
    ("zrevrank", -3, READ, K1),
    ("zpopmin", -2, WRITE, K1),
    ("zpopmax", -2, WRITE, K1),
    ("bzpopmin", -3, WRITE | BLOCKING, r(1, -2, 1)),
    ("bzpopmax", -3, WRITE | BLOCKING, r(1, -2, 1)),
    ("zmpop", -4, WRITE, Keys::Custom(numkeys_at1)),
    ("bzmpop", -5, WRITE | BLOCKING, Keys::Custom(numkeys_at2)),
    ("zremrangebyrank", 4, WRITE, K1),
    ("zremrangebyscore", 4, WRITE, K1),
    ("zremrangebylex", 4, WRITE, K1),
    ("zunionstore", -4, WRITE, Keys::Custom(dest_then_numkeys)),
    ("zinterstore", -4, WRITE, Keys::Custom(dest_then_numkeys)),
    ("zdiffstore", -4, WRITE, Keys::Custom(dest_then_numkeys)),
    ("zunion", -3, READ, Keys::Custom(numkeys_at1)),
    ("zinter", -3, READ, Keys::Custom(numkeys_at1)),
    ("zdiff", -3, READ, Keys::Custom(numkeys_at1)),
    ("zintercard", -3, READ, Keys::Custom(numkeys_at1)),
    ("zrandmember", -2, READ, K1),
    ("zscan", -3, READ, K1),
    // Bits and HyperLogLog.
    ("setbit", 4, WRITE, K1),
    ("getbit", 3, READ, K1),
    ("bitcount", -2, READ, K1),
    ("bitpos", -3, READ, K1),
    ("bitop", -4, WRITE, r(2, -1, 1)),
    ("bitfield", -2, WRITE, K1),
    ("bitfield_ro", -2, READ, K1),
    ("pfadd", -2, WRITE, K1),
    ("pfcount", -2, READ, KALL),
    ("pfmerge", -2, WRITE, KALL),
    // Streams.
    ("xadd", -5, WRITE, K1),
    ("xlen", 2, READ, K1),
    ("xrange", -4, READ, K1),
    ("xrevrange", -4, READ, K1),
    ("xdel", -3, WRITE, K1),
    ("xtrim", -4, WRITE, K1),
    ("xsetid", -3, WRITE, K1),
    ("xack", -4, WRITE, K1),
    ("xpending", -3, READ, K1),
    ("xclaim", -6, WRITE, K1),
    ("xautoclaim", -6, WRITE, K1),
    ("xgroup", -2, WRITE, Keys::Custom(key_at2)),
    ("xinfo", -2, READ, Keys::Custom(key_at2)),
    ("xread", -4, READ | BLOCKING, Keys::Custom(streams_keys)),
    (
        "xreadgroup",
        -7,
        WRITE | BLOCKING,
        Keys::Custom(streams_keys)
    ),
    // Geo.
    ("geoadd", -5, WRITE, K1),
    ("geopos", -2, READ, K1),
    ("geodist", -4, READ, K1),
    ("geohash", -2, READ, K1),
    ("geosearch", -7, READ, K1),
    ("geosearchstore", -8, WRITE, K12),
    // Deprecated in Redis 6.2 for GEOSEARCH, still sent by older clients.
    ("georadius", -6, WRITE, Keys::Custom(georadius_keys)),
    ("georadius_ro", -6, READ, K1),
    ("georadiusbymember", -5, WRITE, Keys::Custom(georadius_keys)),
    ("georadiusbymember_ro", -5, READ, K1),
    // Pub/Sub: channels route like keys.
    ("subscribe", -2, PUBSUB, KALL),
    ("unsubscribe", -1, PUBSUB, KALL),
    ("psubscribe", -2, PUBSUB, KALL),
    ("punsubscribe", -1, PUBSUB, KALL),
    ("publish", 3, PUBSUB, K1),
    // Shard channels (Redis 7): a namespace of channels apart from the
    // others, kept on the server that owns the channel's slot.
    ("ssubscribe", -2, PUBSUB, KALL),
    ("sunsubscribe", -1, PUBSUB, KALL),
    ("spublish", 3, PUBSUB, K1),
    // Listed per namespace, like KEYS.
    ("pubsub", -2, KEYSPACE | PUBSUB, N),
    // Transactions.
    ("multi", 1, TX, N),
    ("exec", 1, TX, N),
    ("discard", 1, TX, N),
    ("watch", -2, TX, KALL),
    ("unwatch", 1, TX, N),
    // Scripting.
    ("eval", -3, WRITE | SCRIPT, Keys::Custom(numkeys_at2)),
    ("evalsha", -3, WRITE | SCRIPT, Keys::Custom(numkeys_at2)),
    ("eval_ro", -3, READ | SCRIPT, Keys::Custom(numkeys_at2)),
    ("evalsha_ro", -3, READ | SCRIPT, Keys::Custom(numkeys_at2)),
    ("fcall", -3, WRITE | SCRIPT, Keys::Custom(numkeys_at2)),
    ("fcall_ro", -3, READ | SCRIPT, Keys::Custom(numkeys_at2)),
];

/// Every command keyway knows, in table order (`spec.id` indexes it).
pub fn table() -> &'static [CommandSpec] {
    static TABLE: OnceLock<Vec<CommandSpec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RAW.iter()
            .enumerate()
            .map(|(id, &(name, arity, flags, keys))| CommandSpec {
                name,
                arity,
                flags,
                keys,
                id,
            })
            .collect()
    })
}

/// FNV-1a for the name index. SipHash guards tables whose keys clients
/// choose; this one holds only the command table's names, and hashing
/// each command's name with SipHash was a visible share of the hot path.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type Index = HashMap<&'static [u8], usize, std::hash::BuildHasherDefault<Fnv>>;

/// Looks a command up by name, in any case.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    static INDEX: OnceLock<Index> = OnceLock::new();
    let index = INDEX.get_or_init(|| table().iter().map(|c| (c.name.as_bytes(), c.id)).collect());
    let mut lower = [0u8; 24];
    if name.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    index
        .get(lower.get(..name.len())?)
        .and_then(|&id| table().get(id))
}

/// A command keyway itself sends (EXPIRE for default TTLs, SCAN for
/// fan-out). The table holds every such name; a test checks them.
// The names are keyway's own, and `every_internal_command_is_known` checks
// them: a miss is a bug found by the tests, never by a client.
#[allow(clippy::panic)]
pub fn known(name: &str) -> &'static CommandSpec {
    match lookup(name.as_bytes()) {
        Some(spec) => spec,
        None => panic!("command table lacks internal command '{name}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|c| c.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(b"a-command-name-longer-than-the-buffer").is_none());
    }

    #[test]
    fn every_internal_command_is_known() {
        // The names keyway sends itself (keyspace fan-out, default TTLs,
        // transactions, subscriptions, scripts): `known` must never miss.
        for name in [
            "dbsize",
            "del",
            "flushdb",
            "info",
            "keys",
            "randomkey",
            "scan",
            "script",
            "expire",
            "eval",
            "multi",
            "exec",
            "subscribe",
            "unsubscribe",
            "psubscribe",
            "punsubscribe",
            "ssubscribe",
            "sunsubscribe",
        ] {
            assert_eq!(known(name).name, name);
        }
    }

    #[test]
    fn names_are_unique_and_lower_case() {
        let mut seen = std::collections::HashSet::new();
        for c in table() {
            assert!(seen.insert(c.name), "duplicate {}", c.name);
            assert_eq!(c.name, c.name.to_lowercase());
        }
    }

    #[test]
    fn key_positions() {
        let pos = |s: &str| {
            let a = args(s);
            lookup(&a[0]).unwrap().key_positions(&a)
        };
        assert_eq!(pos("MSET a 1 b 2"), vec![1, 3]);
        assert_eq!(pos("BLPOP a b 0"), vec![1, 2]);
        assert_eq!(pos("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), vec![1, 3, 4]);
        assert_eq!(pos("EVAL s 1 k arg"), vec![3]);
        assert_eq!(pos("XREAD COUNT 2 STREAMS s1 s2 0 0"), vec![4, 5]);
        assert_eq!(pos("SORT k BY x STORE d"), vec![1, 5]);
        // The last STORE counts; GET's, BY's and LIMIT's arguments are not
        // options, as in Redis's own scan.
        assert_eq!(
            pos("SORT abc STORE invalid STORE stillbad STORE def"),
            vec![1, 7]
        );
        assert_eq!(pos("SORT k GET store STORE d"), vec![1, 5]);
        assert_eq!(pos("SORT k LIMIT store store"), vec![1]);
        assert_eq!(pos("SORT k STORE"), vec![1]);
        assert_eq!(pos("GEORADIUS k 1 2 3 km STORE d"), vec![1, 7]);
        assert_eq!(
            pos("GEORADIUSBYMEMBER k m 3 km STOREDIST d ASC"),
            vec![1, 6]
        );
        assert_eq!(pos("GEORADIUS k 1 2 3 km WITHDIST STORE"), vec![1]);
        // A member named "store" is not an option; the last STORE counts.
        assert_eq!(pos("GEORADIUSBYMEMBER k store 3 km"), vec![1]);
        assert_eq!(pos("GEORADIUS k 1 2 3 km STORE a STOREDIST b"), vec![1, 9]);
        // XREAD's options are skipped as Redis skips them.
        assert_eq!(pos("XREADGROUP GROUP streams c STREAMS k 0"), vec![5]);
        assert_eq!(pos("XREAD COUNT streams STREAMS k 0"), vec![4]);
        assert_eq!(pos("XREAD BLOCK 0 NOACK STREAMS a b 0 0"), vec![5, 6]);
        assert_eq!(pos("XREAD STREAMS a b 0"), Vec::<usize>::new());
        assert_eq!(pos("XREAD FOO STREAMS a 0"), Vec::<usize>::new());
        assert_eq!(pos("GET k"), vec![1]);
        // A key count beyond the arguments never sizes the list.
        assert_eq!(pos("EVAL s 4294967296 k"), vec![3]);
        assert_eq!(pos("ZUNION 100000000 k"), vec![2]);
        assert_eq!(pos("ZUNION 9223372036854775807 k"), vec![2]);
        assert_eq!(pos("ZUNIONSTORE d 9223372036854775807 a b"), vec![1, 3, 4]);
        assert_eq!(
            pos("LMPOP 18446744073709551615 a LEFT"),
            Vec::<usize>::new()
        );
        assert_eq!(pos("BLMPOP 0 -1 a LEFT"), Vec::<usize>::new());
        assert_eq!(pos("PING"), Vec::<usize>::new());
    }

    #[test]
    fn single_key_agrees_with_key_positions() {
        for c in table() {
            for argc in 1..8 {
                let a: Vec<Bytes> = (0..argc).map(|i| Bytes::from(i.to_string())).collect();
                if let Some(p) = c.single_key(argc) {
                    assert_eq!(c.key_positions(&a), vec![p], "{} with {argc} args", c.name);
                }
            }
        }
        assert_eq!(lookup(b"get").and_then(|c| c.single_key(2)), Some(1));
        assert_eq!(lookup(b"mset").and_then(|c| c.single_key(3)), None);
    }
}
