//! Commands about things keyway does not have, answered as a Redis without
//! them answers: MODULE (no modules are loaded), LATENCY (no latency
//! events are tracked, as with Redis's latency-monitor-threshold at 0) and
//! LOLWUT (a drawing and the version clients are told).

use bytes::Bytes;

use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::reply::Reply;
use crate::wire::util::upper;

/// MODULE LIST | HELP, and LOAD / LOADEX / UNLOAD refused.
pub(super) fn module(args: &[Bytes]) -> CmdResult {
    match (upper(&args[1]).as_str(), args.len()) {
        ("LIST", 2) => Ok(Reply::Array(Vec::new())),
        ("HELP", 2) => Ok(Reply::help(&[
            "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LIST",
            "    Return a list of loaded modules.",
            "HELP",
            "    Prints this help.",
        ])),
        ("LOAD" | "LOADEX" | "UNLOAD", n) if n >= 3 => {
            Err(CmdError::msg("ERR keyway does not load Redis modules"))
        }
        (sub @ ("LIST" | "HELP" | "LOAD" | "LOADEX" | "UNLOAD"), _) => Err(CmdError::WrongArity(
            format!("module|{}", sub.to_lowercase()),
        )),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "MODULE".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// REPLICAOF / SLAVEOF: keyway is a primary for its clients and never
/// replicates, so NO ONE is the one thing to say.
pub(super) fn replicaof(args: &[Bytes]) -> CmdResult {
    if args[1].eq_ignore_ascii_case(b"NO") && args[2].eq_ignore_ascii_case(b"ONE") {
        return Ok(Reply::ok());
    }
    Err(CmdError::msg(
        "ERR keyway does not replicate from a server: configure a backend (or a mirror) instead",
    ))
}

/// LATENCY LATEST | HISTORY | RESET | DOCTOR | GRAPH | HISTOGRAM | HELP.
pub(super) fn latency(args: &[Bytes]) -> CmdResult {
    match (upper(&args[1]).as_str(), args.len()) {
        ("LATEST", 2) => Ok(Reply::Array(Vec::new())),
        ("HISTORY", 3) => Ok(Reply::Array(Vec::new())),
        ("RESET", _) => Ok(Reply::Int(0)),
        ("GRAPH", 3) => Err(CmdError::msg(format!(
            "ERR No samples available for event '{}'",
            lossy(&args[2], 128)
        ))),
        ("HISTOGRAM", _) => Ok(Reply::Map(Vec::new())),
        ("DOCTOR", 2) => Ok(Reply::Verbatim(Bytes::from_static(
            b"I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
              Redis instance. You may use \"CONFIG SET latency-monitor-threshold \
              <milliseconds>.\" in order to enable it. If we weren't in a deep space \
              mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n",
        ))),
        ("HELP", 2) => Ok(Reply::help(&[
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
            "HELP",
            "    Prints this help.",
        ])),
        (sub @ ("LATEST" | "HISTORY" | "GRAPH" | "DOCTOR" | "HELP"), _) => Err(
            CmdError::WrongArity(format!("latency|{}", sub.to_lowercase())),
        ),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "LATENCY".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// LOLWUT [VERSION v] [...]: a small drawing, then the version line clients
/// look for.
pub(super) fn lolwut(version: &str) -> Reply {
    let art = r"  _                                      
 | | _____ _   ___      ____ _ _   _ 
 | |/ / _ \ | | \ \ /\ / / _` | | | |
 |   <  __/ |_| |\ V  V / (_| | |_| |
 |_|\_\___|\__, | \_/\_/ \__,_|\__, |
            |___/               |___/ 
";
    Reply::Verbatim(Bytes::from(format!("{art}\nRedis ver. {version}\n")))
}
