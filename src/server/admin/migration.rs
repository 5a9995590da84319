//! `KEYWAY MIGRATE`, the operator's handle on moving a namespace (see
//! `proxy::migrate`): start a backfill or a verification, follow it, stop
//! it. `keyway migrate` on the command line speaks this over RESP.
//!
//! KEYWAY MIGRATE <namespace> BACKFILL [RATE keys/s] [BATCH n] [RESUME]
//! KEYWAY MIGRATE <namespace> VERIFY [SAMPLE fraction] [TOLERANCE ms] [BATCH n]
//! KEYWAY MIGRATE <namespace> STOP | STATUS
//! KEYWAY MIGRATIONS: the status of every mirrored namespace.

use bytes::Bytes;

use crate::backend::mirror::MigrationStatus;
use crate::proxy::migrate::{self, Task};
use crate::server::shared::Shared;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{is, now_ms, upper};

/// Keys a SCAN step asks for, unless BATCH says otherwise.
const BATCH: usize = 500;
/// The largest BATCH: bounds what one step holds in memory.
const MAX_BATCH: usize = 100_000;

pub fn keyway(shared: &Shared, args: &[Bytes]) -> CmdResult {
    let router = shared.router.load_full();
    let sub = upper(&args[1]);
    match sub.as_str() {
        "MIGRATIONS" if args.len() == 2 => Ok(Reply::Array(
            router
                .namespaces
                .iter()
                .filter_map(|ns| ns.mirrored.as_ref().map(|m| (ns, m)))
                .map(|(ns, m)| {
                    Reply::Array(vec![
                        Reply::Bulk(Bytes::from(ns.name.clone())),
                        status_reply(&m.status()),
                    ])
                })
                .collect(),
        )),
        "MIGRATE" if args.len() >= 4 => {
            let ns = String::from_utf8_lossy(&args[2]).into_owned();
            let action = upper(&args[3]);
            let opts = &args[4..];
            match action.as_str() {
                "BACKFILL" => {
                    let (mut rate, mut batch, mut resume) = (0, BATCH, false);
                    let mut i = 0;
                    while i < opts.len() {
                        if is(&opts[i], "RESUME") {
                            resume = true;
                            i += 1;
                            continue;
                        }
                        let value = opts.get(i + 1).ok_or(CmdError::Syntax)?;
                        if is(&opts[i], "RATE") {
                            rate = number(value, "RATE", u64::MAX)?;
                        } else if is(&opts[i], "BATCH") {
                            batch = number(value, "BATCH", MAX_BATCH as u64)? as usize;
                        } else {
                            return Err(CmdError::Syntax);
                        }
                        i += 2;
                    }
                    migrate::start(
                        router,
                        &ns,
                        Task::Backfill {
                            rate,
                            batch: batch.max(1),
                            resume,
                        },
                    )?;
                    Ok(Reply::ok())
                }
                "VERIFY" => {
                    let (mut sample, mut tolerance, mut batch) = (1.0, 1000, BATCH);
                    for pair in opts.chunks(2) {
                        let [name, value] = pair else {
                            return Err(CmdError::Syntax);
                        };
                        if is(name, "SAMPLE") {
                            sample = crate::wire::util::float_arg(value)?;
                            if !(sample > 0.0 && sample <= 1.0) {
                                return Err(CmdError::msg(
                                    "ERR SAMPLE must be more than 0 and at most 1",
                                ));
                            }
                        } else if is(name, "TOLERANCE") {
                            tolerance = number(value, "TOLERANCE", u64::MAX)?;
                        } else if is(name, "BATCH") {
                            batch = number(value, "BATCH", MAX_BATCH as u64)? as usize;
                        } else {
                            return Err(CmdError::Syntax);
                        }
                    }
                    migrate::start(
                        router,
                        &ns,
                        Task::Verify {
                            sample,
                            tolerance,
                            batch: batch.max(1),
                        },
                    )?;
                    Ok(Reply::ok())
                }
                "STOP" if opts.is_empty() => Ok(Reply::Int(migrate::stop(&router, &ns)? as i64)),
                "STATUS" if opts.is_empty() => Ok(status_reply(&migrate::status(&router, &ns)?)),
                _ => Err(CmdError::Syntax),
            }
        }
        "HELP" => Ok(Reply::Array(
            [
                "KEYWAY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "MIGRATE <namespace> BACKFILL [RATE <keys/s>] [BATCH <n>] [RESUME]",
                "    Copy every key of a mirrored namespace to its mirror, live.",
                "MIGRATE <namespace> VERIFY [SAMPLE <fraction>] [TOLERANCE <ms>] [BATCH <n>]",
                "    Compare the namespace on its backend and its mirror.",
                "MIGRATE <namespace> STOP",
                "    Stop the running backfill or verification after its batch.",
                "MIGRATE <namespace> STATUS",
                "    Where the namespace's move stands.",
                "MIGRATIONS",
                "    The status of every mirrored namespace.",
            ]
            .iter()
            .map(|l| Reply::status(l))
            .collect(),
        )),
        _ => Err(CmdError::msg(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try KEYWAY HELP.",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

fn number(v: &Bytes, name: &str, max: u64) -> Result<u64, CmdError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n <= max)
        .ok_or_else(|| CmdError::msg(format!("ERR {name} must be an integer from 0 to {max}")))
}

/// A status as field/value pairs (a map in RESP3).
pub fn status_reply(s: &MigrationStatus) -> Reply {
    let text = |v: &str| Reply::Bulk(Bytes::copy_from_slice(v.as_bytes()));
    let int = |n: u64| Reply::Int(n.min(i64::MAX as u64) as i64);
    let end = if s.running.is_some() {
        now_ms()
    } else {
        s.finished_ms
    };
    let elapsed = end.saturating_sub(s.started_ms);
    let rate = if elapsed > 0 && s.started_ms > 0 {
        s.keys_done.saturating_mul(1000) / elapsed
    } else {
        0
    };
    let pairs = vec![
        ("phase", text(s.phase)),
        ("running", text(s.running.unwrap_or(""))),
        ("keys_done", int(s.keys_done)),
        ("keys_total", int(s.keys_total)),
        ("bytes_done", int(s.bytes_done)),
        ("keys_per_sec", int(rate)),
        (
            "elapsed_ms",
            int(if s.started_ms > 0 { elapsed } else { 0 }),
        ),
        ("retried", int(s.retried)),
        ("skipped", int(s.skipped)),
        ("errors", int(s.errors)),
        ("differences", int(s.differences)),
        ("mirror_dropped", int(s.dropped)),
        (
            "differing",
            Reply::Array(s.differing.iter().map(|d| text(d)).collect()),
        ),
        ("cursor", text(&s.cursor)),
        ("error", text(s.error.as_deref().unwrap_or(""))),
    ];
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::status(k), v))
            .collect(),
    )
}
