//! Commands keyway answers itself: connection state (HELLO, AUTH, SELECT,
//! CLIENT), introspection (COMMAND, CONFIG GET, INFO) and server trivia.
//! Replies follow Redis 7 so that clients' connect-time probes succeed.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::command::{self, BLOCKING, CommandSpec, Keys, READ, WRITE};
use crate::connection::ClientState;
use crate::error::{CmdError, CmdResult, lossy};
use crate::keyspace;
use crate::reply::Reply;
use crate::router::Router;
use crate::server::Shared;
use crate::util::{bytes, glob_match, int_arg, is, upper};

/// The Redis version keyway is compatible with; clients read it from INFO
/// and HELLO to decide which commands exist.
pub const REDIS_VERSION: &str = "7.2.4";

pub async fn execute(
    state: &mut ClientState,
    shared: &Shared,
    router: &Router,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Reply {
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
        "select" => select(args),
        "hello" => hello(state, shared, args),
        "auth" => auth(state, shared, args),
        "client" => client(state, shared, args),
        "command" => command_cmd(args),
        "config" => config(shared, args),
        "slowlog" => slowlog(shared, args),
        "info" => info(shared, router, args).await,
        "time" => Ok(time()),
        "lastsave" => Ok(Reply::Int(shared.started_unix as i64)),
        "role" => Ok(Reply::Array(vec![
            Reply::bulk_str("master"),
            Reply::Int(0),
            Reply::Array(Vec::new()),
        ])),
        "debug" => debug(state, shared, args).await,
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
    use crate::config::DebugCommand;
    let allowed = match shared.config.load().server.enable_debug_command {
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
            let secs = crate::util::float_arg(&args[2])?;
            if secs > 0.0 && secs.is_finite() {
                tokio::time::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0))).await;
            }
            Ok(Reply::ok())
        }
        // On purpose: what DEBUG PANIC is for.
        #[allow(clippy::panic)]
        ("PANIC", 2) => panic!("DEBUG PANIC"),
        ("HELP", 2) => Ok(Reply::Array(
            [
                "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "PANIC",
                "    Raise a panic inside keyway (it is caught: the client is closed).",
                "SLEEP <seconds>",
                "    Stop the client for <seconds>. Decimals allowed.",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Reply::status(l))
            .collect(),
        )),
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

fn select(args: &[Bytes]) -> CmdResult {
    match int_arg(&args[1]) {
        Ok(0) => Ok(Reply::ok()),
        Ok(_) => Err(CmdError::msg("ERR DB index is out of range")),
        Err(e) => Err(e),
    }
}

fn reset(state: &mut ClientState, shared: &Shared) {
    state.details.resp3 = false;
    state.details.name = None;
    state.authenticated = shared.config.load().server.password.is_none();
}

/// Checks a username/password pair against the configured password. With
/// none configured, the `default` user accepts any password, as in Redis.
fn check_password(shared: &Shared, user: &[u8], password: &[u8]) -> bool {
    let config = shared.config.load();
    user == b"default"
        && config
            .server
            .password
            .as_ref()
            .is_none_or(|p| p.as_bytes() == password)
}

fn wrongpass() -> CmdError {
    CmdError::msg("WRONGPASS invalid username-password pair or user is disabled.")
}

fn auth(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    let has_password = shared.config.load().server.password.is_some();
    let ok = match &args[1..] {
        [password] => {
            if !has_password {
                return Err(CmdError::msg(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            check_password(shared, b"default", password)
        }
        [user, password] => check_password(shared, user, password),
        _ => return Err(CmdError::Syntax),
    };
    if !ok {
        return Err(wrongpass());
    }
    state.authenticated = true;
    Ok(Reply::ok())
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]
fn hello(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    let mut resp3 = state.details.resp3;
    if let Some(v) = args.get(1) {
        let v = int_arg(v)
            .map_err(|_| CmdError::msg("ERR Protocol version is not an integer or out of range"))?;
        resp3 = match v {
            2 => false,
            3 => true,
            _ => return Err(CmdError::msg("NOPROTO unsupported protocol version")),
        };
    }
    let mut name = None;
    let mut creds = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "AUTH") && more >= 2 {
            creds = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if is(&args[i], "SETNAME") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Syntax error in HELLO option '{}'",
                lossy(&args[i], 128)
            )));
        }
    }
    if let Some((user, pass)) = creds {
        if !check_password(shared, user, pass) {
            return Err(wrongpass());
        }
        state.authenticated = true;
    }
    if !state.authenticated {
        return Err(CmdError::msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = name {
        validate_name(n, "Client names")?;
        state.details.name = (!n.is_empty()).then(|| n.clone());
    }
    state.details.resp3 = resp3;
    let s = |v: &str| Reply::bulk_str(v);
    Ok(Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(REDIS_VERSION)),
        (s("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (s("id"), Reply::Int(state.id() as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(Vec::new())),
    ]))
}

/// Redis accepts names of printable characters without spaces.
fn validate_name(n: &[u8], what: &str) -> CmdResult<()> {
    if n.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(CmdError::msg(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        )));
    }
    Ok(())
}

fn client(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    let arity = |n: usize| {
        if args.len() != n {
            Err(CmdError::WrongArity(format!("client|{sub}")))
        } else {
            Ok(())
        }
    };
    match sub.as_str() {
        "setname" => {
            arity(3)?;
            validate_name(&args[2], "Client names")?;
            state.details.name = (!args[2].is_empty()).then(|| args[2].clone());
            Ok(Reply::ok())
        }
        "getname" => {
            arity(2)?;
            Ok(Reply::opt_bulk(state.details.name.clone()))
        }
        "id" => {
            arity(2)?;
            Ok(Reply::Int(state.id() as i64))
        }
        "setinfo" => {
            arity(4)?;
            let value = &args[3];
            if is(&args[2], "LIB-NAME") {
                validate_name(value, "lib-name")?;
                state.details.lib_name = Some(value.clone());
            } else if is(&args[2], "LIB-VER") {
                validate_name(value, "lib-ver")?;
                state.details.lib_ver = Some(value.clone());
            } else {
                return Err(CmdError::msg(format!(
                    "ERR Unrecognized option '{}'",
                    lossy(&args[2], 128)
                )));
            }
            Ok(Reply::ok())
        }
        "info" => {
            arity(2)?;
            // The line must show what this command just changed.
            state.publish();
            let me = &state.registered.client;
            Ok(Reply::Verbatim(Bytes::from(
                me.line(shared.local_addr, Some("client|info")),
            )))
        }
        "list" => client_list(state, shared, args),
        "kill" => client_kill(state, shared, args),
        "no-evict" | "no-touch" => {
            arity(3)?;
            if is(&args[2], "ON") || is(&args[2], "OFF") {
                Ok(Reply::ok())
            } else {
                Err(CmdError::Syntax)
            }
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CLIENT".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// CLIENT LIST [TYPE type] [ID id ...]: clients that have sent a command.
fn client_list(state: &ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    // None: any type; Some(true): subscribed; Some(false): not subscribed.
    let mut pubsub: Option<bool> = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut none = false;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "TYPE") && i + 1 < args.len() {
            let t = &args[i + 1];
            if is(t, "NORMAL") {
                pubsub = Some(false);
            } else if is(t, "PUBSUB") {
                pubsub = Some(true);
            } else if is(t, "MASTER") || is(t, "REPLICA") || is(t, "SLAVE") {
                none = true;
            } else {
                return Err(CmdError::msg(format!(
                    "ERR Unknown client type '{}'",
                    lossy(t, 128)
                )));
            }
            i += 2;
        } else if is(&args[i], "ID") && i + 1 < args.len() {
            let mut wanted = Vec::new();
            for a in &args[i + 1..] {
                match crate::protocol::parse_i64(a) {
                    Some(n) if n > 0 => wanted.push(n as u64),
                    _ => return Err(CmdError::msg("ERR Invalid client ID")),
                }
            }
            ids = Some(wanted);
            i = args.len();
        } else {
            return Err(CmdError::Syntax);
        }
    }
    state.publish();
    let mut text = String::new();
    for c in shared.clients.all() {
        let listed = !none
            && ids.as_ref().is_none_or(|ids| ids.contains(&c.id))
            && pubsub.is_none_or(|p| p == c.subscribed());
        if listed {
            let current = (c.id == state.id()).then_some("client|list");
            text.push_str(&c.line(shared.local_addr, current));
        }
    }
    Ok(Reply::Verbatim(Bytes::from(text)))
}

/// CLIENT KILL addr, or CLIENT KILL [ID id] [ADDR addr] [LADDR addr]
/// [USER name] [SKIPME yes/no] [MAXAGE secs] (Redis 7's filters). A client
/// killed ends once its reply to the command in hand is written.
fn client_kill(state: &ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    if args.len() == 3 {
        let addr = lossy(&args[2], 128);
        let found = shared
            .clients
            .all()
            .into_iter()
            .find(|c| c.peer.to_string() == addr);
        return match found {
            Some(c) => {
                c.kill.notify_one();
                Ok(Reply::ok())
            }
            None => Err(CmdError::msg("ERR No such client")),
        };
    }
    if args.len() < 4 || args.len() % 2 != 0 {
        return Err(CmdError::Syntax);
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut user = None;
    let mut max_age = None;
    let mut skip_me = true;
    for pair in args[2..].chunks(2) {
        let (f, v) = (&pair[0], &pair[1]);
        if is(f, "ID") {
            match crate::protocol::parse_i64(v) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => {
                    return Err(CmdError::msg("ERR client-id should be greater than 0"));
                }
            }
        } else if is(f, "ADDR") {
            addr = Some(lossy(v, 128));
        } else if is(f, "LADDR") {
            laddr = Some(lossy(v, 128));
        } else if is(f, "USER") {
            user = Some(v.clone());
        } else if is(f, "MAXAGE") {
            max_age = Some(int_arg(v)?);
        } else if is(f, "SKIPME") {
            skip_me = if is(v, "YES") {
                true
            } else if is(v, "NO") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let local = shared.local_addr.to_string();
    let mut killed = 0;
    for c in shared.clients.all() {
        let matches = id.is_none_or(|id| c.id == id)
            && addr.as_ref().is_none_or(|a| *a == c.peer.to_string())
            && laddr.as_ref().is_none_or(|a| *a == local)
            // Every client is the default user.
            && user.as_ref().is_none_or(|u| &u[..] == b"default")
            && max_age.is_none_or(|age| c.since.elapsed().as_secs() as i64 >= age)
            && !(skip_me && c.id == state.id());
        if matches {
            c.kill.notify_one();
            killed += 1;
        }
    }
    Ok(Reply::Int(killed))
}

/// COMMAND, COMMAND COUNT / INFO / DOCS / LIST / GETKEYS
fn command_cmd(args: &[Bytes]) -> CmdResult {
    let table = command::table();
    let Some(sub) = args.get(1) else {
        return Ok(Reply::Array(table.iter().map(command_info).collect()));
    };
    let sub_name = String::from_utf8_lossy(sub).to_lowercase();
    match sub_name.as_str() {
        "count" => Ok(Reply::Int(table.len() as i64)),
        "list" => Ok(Reply::Array(
            table.iter().map(|c| Reply::bulk_str(c.name)).collect(),
        )),
        "info" => {
            if args.len() == 2 {
                return Ok(Reply::Array(table.iter().map(command_info).collect()));
            }
            Ok(Reply::Array(
                args[2..]
                    .iter()
                    .map(|n| command::lookup(n).map_or(Reply::NilArray, command_info))
                    .collect(),
            ))
        }
        // Clients use DOCS only for hints; an empty map is accepted.
        "docs" => Ok(Reply::Map(Vec::new())),
        "getkeys" => {
            let rest = &args[2..];
            let spec = rest
                .first()
                .and_then(|n| command::lookup(n))
                .ok_or_else(|| CmdError::msg("ERR Invalid command specified"))?;
            if !spec.arity_ok(rest.len()) {
                return Err(CmdError::msg(
                    "ERR Invalid number of arguments specified for command",
                ));
            }
            let keys = spec.key_positions(rest);
            if keys.is_empty() {
                return Err(CmdError::msg("ERR The command has no key arguments"));
            }
            Ok(Reply::Array(
                keys.into_iter()
                    .map(|p| Reply::Bulk(rest[p].clone()))
                    .collect(),
            ))
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "COMMAND".into(),
            sub: lossy(sub, 128),
        }),
    }
}

/// One COMMAND INFO entry, in Redis 7's ten-field shape.
fn command_info(spec: &CommandSpec) -> Reply {
    let mut flags = Vec::new();
    if spec.has(WRITE) {
        flags.push(Reply::status("write"));
    }
    if spec.has(READ) {
        flags.push(Reply::status("readonly"));
    }
    if spec.has(BLOCKING) {
        flags.push(Reply::status("blocking"));
    }
    let (first, last, step) = match spec.keys {
        Keys::None => (0, 0, 0),
        Keys::Range { first, last, step } => (first as i64, last as i64, step as i64),
        Keys::Custom(_) => {
            flags.push(Reply::status("movablekeys"));
            (0, 0, 0)
        }
    };
    Reply::Array(vec![
        Reply::bulk_str(spec.name),
        Reply::Int(spec.arity as i64),
        Reply::Set(flags),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// Parameters CONFIG GET answers, as clients and redis-benchmark ask.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let config = shared.config.load();
    let server = &config.server;
    vec![
        ("appendonly", "no".into()),
        ("bind", shared.local_addr.ip().to_string()),
        (
            "client-output-buffer-limit",
            server.client_output_buffer_limit.redis_text(),
        ),
        ("databases", "1".into()),
        (
            "enable-debug-command",
            format!("{:?}", server.enable_debug_command).to_lowercase(),
        ),
        ("maxclients", server.max_clients.to_string()),
        ("maxmemory", memory_limits(&config).0.to_string()),
        ("maxmemory-clients", server.max_memory_clients.0.to_string()),
        ("maxmemory-policy", memory_limits(&config).1.into()),
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
    ]
}

fn config(shared: &Shared, args: &[Bytes]) -> CmdResult {
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
        "resetstat" => Ok(Reply::ok()),
        "set" | "rewrite" => Err(CmdError::msg(format!(
            "ERR CONFIG {} is not supported by keyway: edit keyway's config file",
            sub.to_uppercase()
        ))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CONFIG".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

/// SLOWLOG GET [count] | LEN | RESET | HELP, over keyway's own log (see
/// [`crate::slowlog`]).
fn slowlog(shared: &Shared, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_lowercase();
    match (sub.as_str(), args.len()) {
        ("get", 2) => Ok(shared.slowlog.get(Some(10))),
        // Redis gives this one text for a count that is not a number too.
        ("get", 3) => match crate::protocol::parse_i64(&args[2]) {
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
        ("help", 2) => Ok(Reply::Array(
            [
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
            ]
            .iter()
            .map(|l| Reply::status(l))
            .collect(),
        )),
        ("len" | "reset" | "help", _) => Err(CmdError::WrongArity(format!("slowlog|{sub}"))),
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "SLOWLOG".into(),
            sub: lossy(&args[1], 128),
        }),
    }
}

pub(crate) fn time() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(bytes(&now.as_secs().to_string())),
        Reply::Bulk(bytes(&now.subsec_micros().to_string())),
    ])
}

/// Resident memory of this process, from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// INFO [section ...]: server, clients, memory, stats, replication,
/// cluster, keyspace.
async fn info(shared: &Shared, router: &Router, args: &[Bytes]) -> CmdResult {
    const DEFAULT: &[&str] = &[
        "server",
        "clients",
        "memory",
        "stats",
        "replication",
        "cluster",
        "keyspace",
        "keyway",
    ];
    let asked: Vec<String> = args[1..].iter().map(|a| upper(a).to_lowercase()).collect();
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let wants = |s: &str| all || asked.iter().any(|a| a == s);
    let config = shared.config.load();
    let uptime = shared.started.elapsed().as_secs();
    let stats = &shared.stats;
    let mut out = String::new();
    for section in DEFAULT.iter().filter(|s| wants(s)) {
        let lines: Vec<String> = match *section {
            "server" => vec![
                format!("redis_version:{REDIS_VERSION}"),
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
                let used = crate::alloc::allocated();
                let (max, policy) = memory_limits(&config);
                vec![
                    format!("used_memory:{used}"),
                    format!("used_memory_human:{:.2}M", used as f64 / (1024.0 * 1024.0)),
                    format!("used_memory_rss:{rss}"),
                    format!(
                        "used_memory_rss_human:{:.2}M",
                        rss as f64 / (1024.0 * 1024.0)
                    ),
                    format!("maxmemory:{max}"),
                    format!("maxmemory_policy:{policy}"),
                    format!("mem_clients_normal:{}", crate::alloc::clients()),
                    format!("maxmemory_clients:{}", config.server.max_memory_clients.0),
                ]
            }
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
                format!("evicted_clients:{}", crate::limits::closed_counts().1),
                format!(
                    "client_output_buffer_limit_disconnections:{}",
                    crate::limits::closed_counts().0
                ),
            ],
            "replication" => vec!["role:master".into(), "connected_slaves:0".into()],
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

/// `max_memory` and `eviction` of the memory backend that sets them (the
/// bound is on the whole process), for INFO and CONFIG GET.
fn memory_limits(config: &crate::config::Config) -> (u64, &'static str) {
    config
        .backends
        .values()
        .find_map(|b| match b {
            crate::backend::BackendConfig::Memory(m) => {
                m.max_memory.map(|max| (max.0, m.eviction.name()))
            }
            _ => None,
        })
        .unwrap_or((0, "noeviction"))
}

/// The `# Keyway` section: the namespace table and each backend's health.
fn keyway_lines(shared: &Shared, router: &Router) -> Vec<String> {
    let config = shared.config.load();
    let server = &config.server;
    let (_, _, idle) = crate::limits::closed_counts();
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
            crate::metrics::metrics().internal_errors()
        ),
    ];
    for ns in &router.namespaces {
        lines.push(format!(
            "namespace_{}:prefix={},backend={},type={}",
            ns.name,
            ns.prefix
                .escape_ascii()
                .to_string()
                .replace([',', ':'], "_"),
            ns.backend_name,
            ns.backend.kind()
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
async fn keyspace_lines(router: &Router) -> Vec<String> {
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
