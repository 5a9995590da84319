//! Commands keyway answers itself, one family a file: the client's session
//! (HELLO, AUTH, CLIENT, RESET: `session`), COMMAND (`introspect`), CONFIG
//! (`config`), INFO (`info`), and here PING, SELECT, DEBUG, SLOWLOG and
//! server trivia. Replies follow Redis 7 so that clients' connect-time
//! probes succeed.

mod acl;
mod config;
mod docs;
mod info;
mod introspect;
pub mod memory;
pub mod migration;
mod session;
mod trivia;

use config::config;
use info::info;
use introspect::command_cmd;
use session::{auth, client, hello, reset};

use bytes::Bytes;

use crate::proxy::router::Router;
use crate::server::clients::ClientState;
use crate::server::shared::Shared;
use crate::wire::command::CommandSpec;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::reply::Reply;
use crate::wire::util::upper;

pub use crate::wire::command::REDIS_VERSION;

pub async fn execute(
    state: &mut ClientState,
    shared: &Shared,
    router: &Router,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Reply {
    crate::wire::metrics::metrics().local_call(spec.id);
    let r = match spec.name {
        "ping" => ping(args),
        "echo" => Ok(Reply::Bulk(args[1].clone())),
        "quit" => {
            state.closing = true;
            Ok(Reply::ok())
        }
        "reset" => {
            reset(state, shared);
            Ok(Reply::status("RESET"))
        }
        "select" => select(state, shared, args),
        "hello" => hello(state, shared, args),
        "auth" => auth(state, shared, args),
        "acl" => acl::acl(state, shared, router, args),
        "client" => client(state, shared, args),
        "command" => command_cmd(args),
        "config" => config(shared, args),
        "slowlog" => slowlog(shared, args),
        "info" => info(shared, router, args).await,
        "time" => Ok(crate::wire::util::time()),
        // The last snapshot of a backend keyway keeps, else its start.
        "lastsave" => Ok(Reply::Int(
            router
                .namespaces
                .iter()
                .filter_map(|ns| ns.backend.last_save())
                .max()
                .unwrap_or(shared.started_unix) as i64,
        )),
        "role" => Ok(Reply::Array(vec![
            Reply::bulk_str("master"),
            Reply::Int(0),
            Reply::Array(Vec::new()),
        ])),
        "debug" => debug(state, shared, args).await,
        "module" => trivia::module(args),
        "replicaof" | "slaveof" => trivia::replicaof(args),
        "latency" => latency(shared, args),
        "memory" => memory::memory(state, shared, router, args).await,
        "lolwut" => Ok(trivia::lolwut(&router.redis_version())),
        "keyway" => migration::keyway(shared, args),
        "readonly" | "readwrite" => Err(CmdError::msg(
            "ERR This instance has cluster support disabled",
        )),
        other => Err(CmdError::msg(format!(
            "ERR '{other}' is not answered by keyway"
        ))),
    };
    r.unwrap_or_else(Reply::from)
}

/// DEBUG SLEEP and DEBUG PANIC, when `enable_debug_command` allows the
/// client. DEBUG PANIC shows the net under commands: the panic is caught,
/// the client gets `-ERR internal error` and is closed, and keyway serves
/// on (Redis itself would crash).
async fn debug(state: &ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    use crate::server::settings::DebugCommand;
    let allowed = match shared.settings.load().server.enable_debug_command {
        DebugCommand::Yes => true,
        DebugCommand::No => false,
        DebugCommand::Local => state.registered.client.peer.ip().is_loopback(),
    };
    if !allowed {
        return Err(CmdError::msg(
            "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.",
        ));
    }
    let sub = upper(&args[1]);
    match (sub.as_str(), args.len()) {
        ("SLEEP", 3) => {
            let secs = crate::wire::util::float_arg(&args[2])?;
            if secs > 0.0 && secs.is_finite() {
                tokio::time::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0))).await;
            }
            Ok(Reply::ok())
        }
        // Read as C's atoi reads it, as Redis does: "x" is 0, so off.
        ("SET-ACTIVE-EXPIRE", 3) => {
            let digits = args[2]
                .strip_prefix(b"+")
                .or_else(|| args[2].strip_prefix(b"-"))
                .unwrap_or(&args[2]);
            let on = digits
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .any(|&b| b != b'0');
            crate::backend::memory::store::set_active_expire(on);
            Ok(Reply::ok())
        }
        // On purpose: what DEBUG PANIC is for.
        #[allow(clippy::panic)]
        ("PANIC", 2) => panic!("DEBUG PANIC"),
        ("HELP", 2) => Ok(Reply::help(&[
            "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "PANIC",
            "    Raise a panic inside keyway (it is caught: the client is closed).",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background when they are not",
            "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
            "    default.",
            "SLEEP <seconds>",
            "    Stop the client for <seconds>. Decimals allowed.",
            "HELP",
            "    Prints this help.",
        ])),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "DEBUG".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

fn ping(args: &[Bytes]) -> CmdResult {
    match args.len() {
        1 => Ok(Reply::status("PONG")),
        2 => Ok(Reply::Bulk(args[1].clone())),
        _ => Err(CmdError::WrongArity("ping".into())),
    }
}

/// SELECT: the database the client's later commands use, on every
/// namespace whose backend has databases (see `Backend::databases`).
fn select(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    let databases = shared.settings.load().server.databases;
    let n = crate::wire::util::range_arg(&args[1], i64::from(i32::MIN), i64::from(i32::MAX), None)?;
    match u8::try_from(n) {
        Ok(db) if u16::from(db) < databases => {
            state.details.db = db;
            state.publish();
            Ok(Reply::ok())
        }
        _ => Err(CmdError::msg("ERR DB index is out of range")),
    }
}

/// LATENCY LATEST | HISTORY | RESET | DOCTOR | GRAPH | HISTOGRAM | HELP,
/// over keyway's latency monitor (see [`crate::server::latency`]).
/// HISTOGRAM answers as a Redis with `latency-tracking no`: keyway keeps
/// no per-command histograms.
fn latency(shared: &Shared, args: &[Bytes]) -> CmdResult {
    let monitor = &shared.latency;
    match (upper(&args[1]).as_str(), args.len()) {
        ("LATEST", 2) => Ok(monitor.latest()),
        ("HISTORY", 3) => Ok(monitor.history(&args[2])),
        ("RESET", _) => Ok(monitor.reset(&args[2..])),
        ("GRAPH", 3) => match monitor.graph(&args[2]) {
            Some(text) => Ok(Reply::Verbatim(Bytes::from(text))),
            None => Err(CmdError::msg(format!(
                "ERR No samples available for event '{}'",
                lossy(&args[2], 128)
            ))),
        },
        ("HISTOGRAM", _) => Ok(Reply::Map(Vec::new())),
        ("DOCTOR", 2) => Ok(Reply::Verbatim(Bytes::from(monitor.doctor()))),
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

/// SLOWLOG GET [count] | LEN | RESET | HELP, over keyway's own log (see
/// [`crate::server::slowlog`]).
fn slowlog(shared: &Shared, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("get", 2) => Ok(shared.slowlog.get(Some(10))),
        // Redis gives this one text for a count that is not a number too.
        ("get", 3) => match crate::wire::protocol::parse_i64(&args[2]) {
            Some(-1) => Ok(shared.slowlog.get(None)),
            Some(n) if n >= 0 => Ok(shared.slowlog.get(Some(n as usize))),
            _ => Err(CmdError::msg(
                "ERR count should be greater than or equal to -1",
            )),
        },
        ("get", _) => Err(CmdError::msg(
            "ERR unknown subcommand or wrong number of arguments for 'get'. Try SLOWLOG HELP.",
        )),
        ("len", 2) => Ok(Reply::Int(shared.slowlog.len() as i64)),
        ("reset", 2) => {
            shared.slowlog.reset();
            Ok(Reply::ok())
        }
        ("help", 2) => Ok(Reply::help(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Prints this help.",
        ])),
        ("len" | "reset" | "help", _) => Err(CmdError::WrongArity(format!("slowlog|{sub}"))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "SLOWLOG".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}
