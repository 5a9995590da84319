//! MEMORY, but for USAGE (which reads a key, so its backend answers):
//! STATS with keyway's own figures as INFO memory gives them, DOCTOR,
//! MALLOC-STATS and PURGE as a Redis on the system allocator answers them.

use bytes::Bytes;

use super::info::rss_bytes;
use crate::proxy::keyspace;
use crate::proxy::router::Router;
use crate::server::clients::ClientState;
use crate::server::shared::Shared;
use crate::wire::command;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::reply::Reply;
use crate::wire::util::upper;

/// Whether keyway answers this MEMORY request itself.
pub fn is_local(args: &[Bytes]) -> bool {
    args.get(1)
        .is_some_and(|a| !a.eq_ignore_ascii_case(b"USAGE"))
}

pub(super) async fn memory(
    state: &ClientState,
    shared: &Shared,
    router: &Router,
    args: &[Bytes],
) -> CmdResult {
    match (upper(&args[1]).as_str(), args.len()) {
        ("STATS", 2) => stats(state, shared, router).await,
        ("DOCTOR", 2) => Ok(Reply::Verbatim(Bytes::from_static(
            b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.",
        ))),
        ("MALLOC-STATS", 2) => Ok(Reply::Verbatim(Bytes::from_static(
            b"Stats not supported for the current allocator",
        ))),
        ("PURGE", 2) => Ok(Reply::ok()),
        ("HELP", 2) => Ok(Reply::help(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        ])),
        (sub @ ("STATS" | "DOCTOR" | "MALLOC-STATS" | "PURGE" | "HELP"), _) => Err(
            CmdError::WrongArity(format!("memory|{}", sub.to_lowercase())),
        ),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "MEMORY".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// MEMORY STATS in Redis's fields, from keyway's allocation counter: the
/// dataset is what is allocated beyond start-up and the clients' share.
async fn stats(state: &ClientState, shared: &Shared, router: &Router) -> CmdResult {
    use crate::wire::alloc;
    let (total, clients) = (alloc::allocated(), alloc::clients());
    let (peak, startup) = (alloc::peak(), alloc::startup());
    let rss = usize::try_from(rss_bytes()).unwrap_or(usize::MAX);
    let databases = shared.settings.load().server.databases;
    let dbsize = command::known("dbsize");
    let keys = match keyspace::execute(
        router,
        dbsize,
        &[Bytes::from_static(b"DBSIZE")],
        &*state.user,
        state.details.db,
        databases,
    )
    .await
    {
        Reply::Int(n) => usize::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let overhead = startup.saturating_add(clients).min(total);
    let dataset = total.saturating_sub(overhead);
    let pct = |part: usize, whole: usize| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let n = |v: usize| Reply::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let f = Reply::Double;
    let s = |k: &str| Reply::bulk_str(k);
    Ok(Reply::Map(vec![
        (s("peak.allocated"), n(peak)),
        (s("total.allocated"), n(total)),
        (s("startup.allocated"), n(startup)),
        (s("replication.backlog"), n(0)),
        (s("clients.slaves"), n(0)),
        (s("clients.normal"), n(clients)),
        (s("cluster.links"), n(0)),
        (s("aof.buffer"), n(0)),
        (s("lua.caches"), n(0)),
        (s("functions.caches"), n(0)),
        (s("overhead.total"), n(overhead)),
        (s("keys.count"), n(keys)),
        (
            s("keys.bytes-per-key"),
            n(dataset.checked_div(keys).unwrap_or(0)),
        ),
        (s("dataset.bytes"), n(dataset)),
        (s("dataset.percentage"), f(pct(dataset, total))),
        (s("peak.percentage"), f(pct(total, peak))),
        (s("allocator.allocated"), n(total)),
        (s("allocator.active"), n(total)),
        (s("allocator.resident"), n(rss)),
        (s("allocator-fragmentation.ratio"), f(1.0)),
        (s("allocator-fragmentation.bytes"), n(0)),
        (s("allocator-rss.ratio"), f(ratio(rss, total))),
        (s("allocator-rss.bytes"), n(rss.saturating_sub(total))),
        (s("rss-overhead.ratio"), f(1.0)),
        (s("rss-overhead.bytes"), n(0)),
        (s("fragmentation"), f(ratio(rss, total))),
        (s("fragmentation.bytes"), n(rss.saturating_sub(total))),
    ]))
}
