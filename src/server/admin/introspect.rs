//! COMMAND (COUNT, INFO, DOCS, LIST, GETKEYS) and CONFIG (GET, RESETSTAT).

use bytes::Bytes;

use crate::server::shared::Shared;
use crate::wire::command::{self, BLOCKING, CommandSpec, Keys, READ, WRITE};
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::reply::Reply;
use crate::wire::util::glob_match;

/// COMMAND, COMMAND COUNT / INFO / DOCS / LIST / GETKEYS
pub(super) fn command_cmd(args: &[Bytes]) -> CmdResult {
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
pub(super) fn command_info(spec: &CommandSpec) -> Reply {
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
pub(super) fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let config = shared.settings.load();
    let server = &config.server;
    vec![
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
        ("maxclients", server.max_clients.to_string()),
        ("maxmemory", config.max_memory.0.to_string()),
        ("maxmemory-clients", server.max_memory_clients.0.to_string()),
        ("maxmemory-policy", config.max_memory.1.into()),
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
