//! Commands about things keyway does not have, answered as a Redis without
//! them answers: MODULE (no modules are loaded) and LOLWUT (a drawing and
//! the version clients are told).

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
