//! CONFIG GET, SET and RESETSTAT. keyway's own parameters (timeout,
//! maxclients, slowlog-*, client-output-buffer-limit, maxmemory-clients,
//! proto-max-bulk-len) and the memory backend's (maxmemory and its policy,
//! the encoding thresholds) change at runtime as in Redis, until the next
//! reload re-reads the file; nothing is written back. SET checks every
//! pair before it changes anything, with Redis's texts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::backend::memory::tunables;
use crate::server::settings::Settings;
use crate::server::shared::Shared;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::limit::OutputLimit;
use crate::wire::reply::Reply;
use crate::wire::size::ByteSize;
use crate::wire::util::glob_match;

/// Parameters CONFIG GET answers, as clients and redis-benchmark ask.
pub(super) fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let config = shared.settings.load();
    let server = &config.server;
    let (max_memory, policy) = max_memory(&config);
    let mut params = vec![
        ("appendonly", "no".into()),
        ("bind", shared.local_addr.ip().to_string()),
        (
            "client-output-buffer-limit",
            server.client_output_buffer_limit.redis_text(),
        ),
        ("databases", server.databases.to_string()),
        (
            "enable-debug-command",
            format!("{:?}", server.enable_debug_command).to_lowercase(),
        ),
        (
            "latency-monitor-threshold",
            shared.latency.threshold().to_string(),
        ),
        ("maxclients", server.max_clients.to_string()),
        ("maxmemory", max_memory.to_string()),
        ("maxmemory-clients", server.max_memory_clients.0.to_string()),
        ("maxmemory-policy", policy.into()),
        ("port", shared.local_addr.port().to_string()),
        ("proto-max-bulk-len", server.max_bulk_len.0.to_string()),
        ("save", String::new()),
        (
            "slowlog-log-slower-than",
            server.slowlog_log_slower_than.to_string(),
        ),
        ("slowlog-max-len", server.slowlog_max_len.to_string()),
        ("timeout", server.timeout.to_string()),
        // keyway's own bounds on unauthenticated clients (Redis fixes them).
        (
            "unauthenticated-max-args",
            server.unauthenticated_max_args.to_string(),
        ),
        (
            "unauthenticated-max-bulk-len",
            server.unauthenticated_max_bulk.0.to_string(),
        ),
    ];
    params.extend(tunables::all().into_iter().map(|(n, v)| (n, v.to_string())));
    params
}

/// The memory backend's bound and policy in force: CONFIG SET's, or the
/// file's.
fn max_memory(config: &Settings) -> (u64, &'static str) {
    let (bytes, policy) = tunables::overrides();
    (
        bytes.unwrap_or(config.max_memory.0),
        policy.map_or(config.max_memory.1, |p| p.name()),
    )
}

pub(super) fn config(shared: &Shared, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match sub.as_str() {
        "get" => {
            if args.len() < 3 {
                return Err(CmdError::WrongArity("config|get".into()));
            }
            let pairs: Vec<(Reply, Reply)> = config_params(shared)
                .into_iter()
                .filter(|(name, _)| {
                    args[2..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(n, v)| (Reply::bulk_str(n), Reply::Bulk(Bytes::from(v))))
                .collect();
            Ok(Reply::Map(pairs))
        }
        "set" => set(shared, args),
        "resetstat" if args.len() == 2 => {
            let stats = &shared.stats;
            for counter in [&stats.connections_total, &stats.rejected, &stats.commands] {
                counter.store(0, Ordering::Relaxed);
            }
            crate::wire::metrics::metrics().reset_error_stats();
            Ok(Reply::ok())
        }
        "resetstat" => Err(CmdError::WrongArity("config|resetstat".into())),
        "rewrite" => Err(CmdError::msg(
            "ERR CONFIG REWRITE is not supported by keyway: edit keyway's config file",
        )),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CONFIG".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// A change CONFIG SET will make once every pair has been checked.
enum Change {
    Server(Box<dyn FnOnce(&mut Settings)>),
    Threshold(String, i64),
    MaxMemory(u64),
    Policy(crate::backend::memory::Eviction),
    LatencyThreshold(u64),
    /// A parameter set to the one value keyway has (save "", appendonly no).
    Nothing,
}

/// Redis's parameters keyway does not have, named in the error rather than
/// called unknown.
const NOT_IN_KEYWAY: &[&str] = &[
    "notify-keyspace-events",
    "appendfsync",
    "appendfilename",
    "dir",
    "dbfilename",
    "rdbcompression",
    "activedefrag",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "replica-read-only",
    "replicaof",
    "masterauth",
    "lua-time-limit",
    "busy-reply-threshold",
    "latency-tracking",
    "tracking-table-max-keys",
    "hz",
    "io-threads",
    "maxmemory-samples",
    "lfu-log-factor",
    "lfu-decay-time",
    "active-expire-effort",
    "close-on-replica-write",
];

/// Parameters Redis refuses to change at runtime.
const IMMUTABLE: &[&str] = &["databases", "port", "bind", "unixsocket", "daemonize"];

fn set(shared: &Shared, args: &[Bytes]) -> CmdResult {
    if args.len() < 4 || args.len() % 2 != 0 {
        return Err(CmdError::WrongArity("config|set".into()));
    }
    let failed = |name: &str, why: &str| {
        CmdError::msg(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let mut seen: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    let mut unknown = None;
    let mut refused = None;
    for pair in args[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        match change(&name, &value) {
            Err(None) => {
                unknown.get_or_insert(name);
                continue;
            }
            Err(Some(why)) => {
                refused.get_or_insert((name.clone(), why));
            }
            Ok(c) => changes.push(c),
        }
        if seen.contains(&name) {
            refused.get_or_insert((name.clone(), "duplicate parameter".into()));
        }
        seen.push(name);
    }
    if let Some(name) = unknown {
        return Err(CmdError::msg(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
        )));
    }
    if let Some((name, why)) = refused {
        return Err(failed(&name, &why));
    }
    let mut settings = Settings::clone(&shared.settings.load());
    let mut server_changed = false;
    for c in changes {
        match c {
            Change::Server(f) => {
                f(&mut settings);
                server_changed = true;
            }
            Change::Threshold(name, v) => tunables::apply(&name, v),
            Change::MaxMemory(bytes) => tunables::set_max_memory(bytes),
            Change::Policy(p) => tunables::set_policy(p),
            Change::LatencyThreshold(ms) => shared.latency.set_threshold(ms),
            Change::Nothing => {}
        }
    }
    if server_changed {
        shared.slowlog.configure(
            settings.server.slowlog_log_slower_than,
            settings.server.slowlog_max_len,
        );
        shared.settings.store(Arc::new(settings));
    }
    Ok(Reply::ok())
}

/// What setting `name` to `value` would change: Err(None) for a name Redis
/// does not know, Err(Some(why)) for one keyway refuses or a bad value.
fn change(name: &str, value: &str) -> Result<Change, Option<String>> {
    let int = |min: i64, max: i64| -> Result<i64, Option<String>> {
        let n: i64 = value
            .parse()
            .map_err(|_| Some("argument couldn't be parsed into an integer".to_string()))?;
        if n < min || n > max {
            return Err(Some(format!(
                "argument must be between {min} and {max} inclusive"
            )));
        }
        Ok(n)
    };
    let memory = || -> Result<u64, Option<String>> {
        ByteSize::parse(value)
            .map(|b| b.0)
            .ok_or_else(|| Some("argument must be a memory value".to_string()))
    };
    let server = |f: Box<dyn FnOnce(&mut Settings)>| Ok(Change::Server(f));
    match name {
        // The default user's password, as Redis's requirepass sets it
        // (until the config is read again); never shown by CONFIG GET.
        "requirepass" => {
            let ops: Vec<Bytes> = if value.is_empty() {
                vec![Bytes::from_static(b"nopass")]
            } else {
                vec![
                    Bytes::from_static(b"resetpass"),
                    Bytes::from(format!(">{value}")),
                ]
            };
            server(Box::new(move |s| {
                if let Ok(users) = s.users.set_user("default", &ops) {
                    s.users = std::sync::Arc::new(users);
                }
            }))
        }
        "timeout" => {
            let n = int(0, i64::from(i32::MAX))? as u64;
            server(Box::new(move |s| s.server.timeout = n))
        }
        "maxclients" => {
            let n = int(1, i64::from(u32::MAX))? as usize;
            server(Box::new(move |s| s.server.max_clients = n))
        }
        "slowlog-log-slower-than" => {
            let n = int(-1, i64::MAX)?;
            server(Box::new(move |s| s.server.slowlog_log_slower_than = n))
        }
        "latency-monitor-threshold" => Ok(Change::LatencyThreshold(int(0, i64::MAX)? as u64)),
        "slowlog-max-len" => {
            let n = int(0, i64::MAX)? as usize;
            server(Box::new(move |s| s.server.slowlog_max_len = n))
        }
        "maxmemory-clients" => {
            let n = memory()?;
            server(Box::new(move |s| s.server.max_memory_clients = ByteSize(n)))
        }
        "proto-max-bulk-len" => {
            let n = memory()?;
            if !(1 << 20..4 << 30).contains(&n) {
                return Err(Some(
                    "argument must be between 1048576 and 4294967295 inclusive".into(),
                ));
            }
            server(Box::new(move |s| s.server.max_bulk_len = ByteSize(n)))
        }
        "client-output-buffer-limit" => {
            let limits = output_limits(value)?;
            server(Box::new(move |s| {
                for (pubsub, limit) in limits {
                    if pubsub {
                        s.server.client_output_buffer_limit.pubsub = limit;
                    } else {
                        s.server.client_output_buffer_limit.normal = limit;
                    }
                }
            }))
        }
        "maxmemory" => Ok(Change::MaxMemory(memory()?)),
        "maxmemory-policy" => match tunables::policy(&value.to_lowercase()) {
            Some(p) => Ok(Change::Policy(p)),
            None if REDIS_POLICIES.contains(&value.to_lowercase().as_str()) => Err(Some(format!(
                "the memory backend has no '{value}' policy (it has noeviction, allkeys-lru, volatile-lru, allkeys-random, volatile-ttl)"
            ))),
            None => Err(Some(format!(
                "argument(s) must be one of the following: {}",
                REDIS_POLICIES.join(", ")
            ))),
        },
        n if tunables::is_threshold(n) => {
            let v = int(i64::MIN, i64::MAX)?;
            tunables::check(n, v).map_err(Some)?;
            Ok(Change::Threshold(n.to_string(), v))
        }
        "save" if value.trim().is_empty() => Ok(Change::Nothing),
        "appendonly" if value.eq_ignore_ascii_case("no") => Ok(Change::Nothing),
        "save" | "appendonly" => Err(Some(
            "keyway does not persist data (the memory backend lives in the process)".into(),
        )),
        n if IMMUTABLE.contains(&n) => Err(Some("can't set immutable config".into())),
        n if NOT_IN_KEYWAY.contains(&n) => Err(Some(format!(
            "'{n}' is not supported by keyway; see the README's Known differences"
        ))),
        _ => Err(None),
    }
}

const REDIS_POLICIES: [&str; 8] = [
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

/// client-output-buffer-limit's value: `class hard soft seconds` repeated,
/// for the normal and pubsub classes (replica/slave accepted, unused).
fn output_limits(value: &str) -> Result<Vec<(bool, OutputLimit)>, Option<String>> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() || words.len() % 4 != 0 {
        return Err(Some(
            "Wrong number of arguments in buffer limit configuration.".into(),
        ));
    }
    let mut out = Vec::new();
    for w in words.chunks(4) {
        let pubsub = match w[0].to_lowercase().as_str() {
            "normal" => false,
            "pubsub" => true,
            "replica" | "slave" => continue,
            _ => {
                return Err(Some(
                    "Invalid client class specified in buffer limit configuration.".into(),
                ));
            }
        };
        let limit = OutputLimit::parse(&w[1..].join(" ")).ok_or_else(|| {
            Some(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string(),
            )
        })?;
        out.push((pubsub, limit));
    }
    Ok(out)
}
