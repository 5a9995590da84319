//! INFO, section by section as Redis writes them, and keyway's own.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::proxy::keyspace;
use crate::proxy::router::Router;
use crate::server::shared::Shared;
use crate::wire::error::CmdResult;
use crate::wire::reply::Reply;
use crate::wire::util::upper;

/// Resident memory of this process, from /proc (0 where unavailable).
/// The process's user and system CPU seconds, from /proc/self/stat (in
/// USER_HZ ticks, 100 a second on Linux's ABI); zero elsewhere.
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the command name, which may hold spaces: state first,
    // so utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut f = rest.split_whitespace().skip(11);
    let tick = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / 100.0;
    let user = tick(f.next());
    let sys = tick(f.next());
    (user, sys)
}

pub(super) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// INFO [section ...]: server, clients, memory, stats, replication,
/// cluster, keyspace.
pub(super) async fn info(shared: &Shared, router: &Router, args: &[Bytes]) -> CmdResult {
    const DEFAULT: &[&str] = &[
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "commandstats",
        "errorstats",
        "cluster",
        "keyspace",
        "keyway",
    ];
    // What only ALL, EVERYTHING or its name brings, as in Redis.
    const MORE: &[&str] = &["commandstats"];
    let asked: Vec<String> = args[1..].iter().map(|a| upper(a).to_lowercase()).collect();
    let everything = asked
        .iter()
        .any(|s| matches!(s.as_str(), "all" | "everything"));
    let default = asked.is_empty() || asked.iter().any(|s| s == "default");
    let wants =
        |s: &str| everything || (default && !MORE.contains(&s)) || asked.iter().any(|a| a == s);
    let config = shared.settings.load();
    let uptime = shared.started.elapsed().as_secs();
    let stats = &shared.stats;
    let mut out = String::new();
    for section in DEFAULT.iter().filter(|s| wants(s)) {
        let lines: Vec<String> = match *section {
            "server" => vec![
                format!("redis_version:{}", router.redis_version()),
                "redis_mode:standalone".into(),
                format!("keyway_version:{}", env!("CARGO_PKG_VERSION")),
                format!("os:{} {}", std::env::consts::OS, std::env::consts::ARCH),
                format!("arch_bits:{}", usize::BITS),
                format!("process_id:{}", std::process::id()),
                format!("tcp_port:{}", shared.local_addr.port()),
                format!("uptime_in_seconds:{uptime}"),
                format!("uptime_in_days:{}", uptime / 86400),
                format!(
                    "executable:{}",
                    std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
                format!("config_file:{}", config.source),
            ],
            "clients" => vec![
                format!(
                    "connected_clients:{}",
                    stats.connected.load(Ordering::Relaxed)
                ),
                format!("maxclients:{}", config.server.max_clients),
                format!("blocked_clients:{}", shared.clients.blocked()),
            ],
            "memory" => {
                let rss = rss_bytes();
                let used = crate::wire::alloc::allocated();
                let (max, policy) = config.max_memory;
                vec![
                    format!("used_memory:{used}"),
                    format!("used_memory_human:{:.2}M", used as f64 / (1024.0 * 1024.0)),
                    format!("used_memory_rss:{rss}"),
                    format!(
                        "used_memory_rss_human:{:.2}M",
                        rss as f64 / (1024.0 * 1024.0)
                    ),
                    format!("maxmemory:{max}"),
                    // The system allocator, counted by keyway's wrapper.
                    "mem_allocator:libc".into(),
                    format!("maxmemory_policy:{policy}"),
                    format!("mem_clients_normal:{}", crate::wire::alloc::clients()),
                    format!("maxmemory_clients:{}", config.server.max_memory_clients.0),
                    format!("number_of_cached_scripts:{}", cached_scripts(router)),
                ]
            }
            // What keyway keeps (memory backends with a snapshot); it loads
            // before it listens, so never `loading`.
            "persistence" => vec![
                "loading:0".into(),
                "async_loading:0".into(),
                format!(
                    "rdb_bgsave_in_progress:{}",
                    router.namespaces.iter().any(|ns| ns.backend.saving()) as u8
                ),
                format!(
                    "rdb_last_save_time:{}",
                    router
                        .namespaces
                        .iter()
                        .filter_map(|ns| ns.backend.last_save())
                        .max()
                        .unwrap_or(shared.started_unix)
                ),
                "rdb_last_bgsave_status:ok".into(),
                "aof_enabled:0".into(),
                "aof_rewrite_in_progress:0".into(),
                "aof_rewrite_scheduled:0".into(),
            ],
            "stats" => vec![
                format!(
                    "total_connections_received:{}",
                    stats.connections_total.load(Ordering::Relaxed)
                ),
                format!(
                    "total_commands_processed:{}",
                    stats.commands.load(Ordering::Relaxed)
                ),
                format!(
                    "rejected_connections:{}",
                    stats.rejected.load(Ordering::Relaxed)
                ),
                format!(
                    "total_error_replies:{}",
                    crate::wire::metrics::metrics()
                        .error_stats()
                        .iter()
                        .map(|(_, n)| n)
                        .sum::<u64>()
                ),
                format!(
                    "evicted_clients:{}",
                    crate::server::limits::closed_counts().1
                ),
                format!(
                    "client_output_buffer_limit_disconnections:{}",
                    crate::server::limits::closed_counts().0
                ),
            ],
            "replication" => vec![
                "role:master".into(),
                "connected_slaves:0".into(),
                "master_failover_state:no-failover".into(),
                format!("master_replid:{}", "0".repeat(40)),
                format!("master_replid2:{}", "0".repeat(40)),
                "master_repl_offset:0".into(),
                "second_repl_offset:-1".into(),
                "repl_backlog_active:0".into(),
                "repl_backlog_size:1048576".into(),
                "repl_backlog_first_byte_offset:0".into(),
                "repl_backlog_histlen:0".into(),
            ],
            // Calls per command: those sent to backends and those keyway
            // answers (it does not time them one by one).
            "commandstats" => crate::wire::command::table()
                .iter()
                .filter_map(|spec| {
                    let calls: u64 = router
                        .namespaces
                        .iter()
                        .map(|ns| ns.metrics.command_count(spec.id))
                        .sum::<u64>()
                        + crate::wire::metrics::metrics().local_calls(spec.id);
                    (calls > 0).then(|| {
                        format!(
                            "cmdstat_{}:calls={calls},usec=0,usec_per_call=0.00,\
                             rejected_calls=0,failed_calls=0",
                            spec.name
                        )
                    })
                })
                .collect(),
            "cpu" => {
                let (user, sys) = cpu_seconds();
                vec![
                    format!("used_cpu_sys:{sys:.6}"),
                    format!("used_cpu_user:{user:.6}"),
                    "used_cpu_sys_children:0.000000".into(),
                    "used_cpu_user_children:0.000000".into(),
                ]
            }
            "errorstats" => crate::wire::metrics::metrics()
                .error_stats()
                .into_iter()
                .map(|(code, n)| format!("errorstat_{code}:count={n}"))
                .collect(),
            "cluster" => vec!["cluster_enabled:0".into()],
            "keyspace" => keyspace_lines(router).await,
            "keyway" => keyway_lines(shared, router),
            _ => Vec::new(),
        };
        let title = match *section {
            "cpu" => "CPU".to_string(),
            s => {
                let mut t = s.to_string();
                t[..1].make_ascii_uppercase();
                t
            }
        };
        // Like Redis: a blank line between sections, none after the last.
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!("# {title}\r\n"));
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    Ok(Reply::Verbatim(Bytes::from(out)))
}

/// A prefix as INFO shows it: as it is (`sess:` stays `sess:`, since
/// parsers split a line at its first colon), with `,`, `=`, `\` and
/// bytes that are not printable ASCII as `\xNN`, which would break a
/// field apart or the line.
fn info_value(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            b',' | b'=' | b'\\' => format!("\\x{c:02x}"),
            0x21..=0x7e => char::from(c).to_string(),
            _ => format!("\\x{c:02x}"),
        })
        .collect()
}

/// The `# Keyway` section: the namespace table and each backend's health.
/// Scripts cached by the backends that run scripts in keyway, each
/// counted once.
fn cached_scripts(router: &Router) -> usize {
    let mut seen: Vec<usize> = Vec::new();
    let mut n = 0;
    for ns in &router.namespaces {
        let at = std::sync::Arc::as_ptr(&ns.backend) as *const () as usize;
        if let Some(c) = ns.backend.cached_scripts().filter(|_| !seen.contains(&at)) {
            seen.push(at);
            n += c;
        }
    }
    n
}

pub(super) fn keyway_lines(shared: &Shared, router: &Router) -> Vec<String> {
    let config = shared.settings.load();
    let server = &config.server;
    let (_, _, idle) = crate::server::limits::closed_counts();
    let mut lines = vec![
        format!("namespaces:{}", router.namespaces.len()),
        format!("config_file:{}", config.source),
        format!("timeout:{}", server.timeout),
        format!(
            "client_output_buffer_limit:{}",
            server.client_output_buffer_limit.redis_text()
        ),
        format!("max_memory_clients:{}", server.max_memory_clients.0),
        format!(
            "unauthenticated_max_args:{}",
            server.unauthenticated_max_args
        ),
        format!(
            "unauthenticated_max_bulk:{}",
            server.unauthenticated_max_bulk.0
        ),
        format!("clients_closed_idle:{idle}"),
        format!(
            "internal_errors:{}",
            crate::wire::metrics::metrics().internal_errors()
        ),
    ];
    for ns in &router.namespaces {
        lines.push(format!(
            "namespace_{}:prefix={},backend={},type={},listed={}",
            ns.name,
            info_value(&ns.prefix),
            ns.backend_name,
            ns.backend.kind(),
            // Whether KEYS, SCAN, DBSIZE and RANDOMKEY include its keys.
            if crate::proxy::keyspace::enumerable(ns) {
                "yes"
            } else {
                "no"
            }
        ));
    }
    // A mirrored namespace's move (see `proxy::migrate`).
    for ns in &router.namespaces {
        let Some(m) = &ns.mirrored else { continue };
        let s = m.status();
        lines.push(format!(
            "migration_{}:mirror_type={},phase={},running={},keys_done={},keys_total={},\
             bytes_done={},retried={},skipped={},errors={},differences={},mirror_dropped={}",
            ns.name,
            m.target().kind(),
            s.phase.replace(' ', "_"),
            s.running.unwrap_or("none"),
            s.keys_done,
            s.keys_total,
            s.bytes_done,
            s.retried,
            s.skipped,
            s.errors,
            s.differences,
            s.dropped
        ));
    }
    for (name, kind, health) in router.backends_health() {
        lines.push(format!(
            "backend_{name}:type={kind},health={}",
            health.replace([',', ':', '\r', '\n'], " ")
        ));
    }
    lines
}

/// `db0` with the total, as clients expect, then one line per namespace.
pub(super) async fn keyspace_lines(router: &Router) -> Vec<String> {
    let mut total = 0;
    let mut lines = Vec::new();
    // Keys with a TTL and the sum of their TTLs, while every namespace's
    // backend can tell (see `keyspace::namespace_expiry`).
    let mut expiring = Some((0u64, 0u64));
    for ns in &router.namespaces {
        let size = keyspace::namespace_size(router, ns).await;
        let (keys, expiry) = match size {
            Ok(n) => (n.to_string(), keyspace::namespace_expiry(ns, n).await),
            Err(e) => (
                format!("unknown ({})", e.to_string().replace([',', ':'], " ")),
                None,
            ),
        };
        total += keys.parse::<i64>().unwrap_or(0);
        expiring = match (expiring, expiry) {
            (Some((count, sum)), Some((e, avg))) => Some((count + e, sum + e * avg)),
            _ => None,
        };
        let expires = expiry
            .map(|(e, avg)| format!(",expires={e},avg_ttl={avg}"))
            .unwrap_or_default();
        lines.push(format!(
            "namespace_{}:keys={keys}{expires},backend={},type={}",
            ns.name,
            ns.backend_name,
            ns.backend.kind()
        ));
    }
    // Like Redis, db0 is listed only when it holds keys. It has `expires`
    // and `avg_ttl` (which exporters need to read the line) only when every
    // namespace's backend could count its expiring keys.
    if total > 0 {
        let expires = expiring
            .map(|(e, sum)| format!(",expires={e},avg_ttl={}", sum.checked_div(e).unwrap_or(0)))
            .unwrap_or_default();
        lines.insert(0, format!("db0:keys={total}{expires}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_are_shown_as_they_are() {
        assert_eq!(super::info_value(b"sess:"), "sess:");
        assert_eq!(
            super::info_value(b"a,b=c\\ d\n"),
            "a\\x2cb\\x3dc\\x5c\\x20d\\x0a"
        );
    }
}
