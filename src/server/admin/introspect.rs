//! COMMAND (COUNT, INFO, DOCS, LIST, GETKEYS).

use bytes::Bytes;

use crate::wire::command::{self, BLOCKING, CommandSpec, Keys, READ, WRITE};
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::reply::Reply;
use crate::wire::util::upper;

/// COMMAND, COMMAND COUNT / INFO / DOCS / LIST / GETKEYS
pub(super) fn command_cmd(args: &[Bytes]) -> CmdResult {
    let table = command::table();
    let Some(sub) = args.get(1) else {
        return Ok(Reply::Array(table.iter().map(command_info).collect()));
    };
    let sub_name = String::from_utf8_lossy(sub).to_lowercase();
    match sub_name.as_str() {
        "count" => Ok(Reply::Int(table.len() as i64)),
        // Commands and, as Redis 7 lists them, the subcommands of those
        // keyway has (their names as Redis 7.0 gives them), FILTERBY a
        // module (keyway has none), an ACL category or a pattern.
        "list" => {
            let names = table.iter().map(|c| c.name).chain(
                crate::server::acl::categories::COMMANDS
                    .iter()
                    .map(|(n, _)| *n)
                    .filter(|n| {
                        n.split_once('|')
                            .is_some_and(|(parent, _)| table.iter().any(|c| c.name == parent))
                    }),
            );
            let keep: Box<dyn Fn(&str) -> bool> = match &args[2..] {
                [] => Box::new(|_| true),
                [f, by, v] if f.eq_ignore_ascii_case(b"FILTERBY") => {
                    match upper(by).as_str() {
                        "MODULE" => Box::new(|_| false),
                        "ACLCAT" => {
                            // An unknown category lists nothing, as in Redis.
                            let in_cat =
                                crate::server::acl::category_commands(&String::from_utf8_lossy(v))
                                    .unwrap_or_default();
                            Box::new(move |n| in_cat.contains(&n))
                        }
                        "PATTERN" => {
                            let p = v.to_ascii_lowercase();
                            Box::new(move |n| crate::wire::util::glob_match(&p, n.as_bytes()))
                        }
                        _ => return Err(CmdError::Syntax),
                    }
                }
                _ => return Err(CmdError::Syntax),
            };
            Ok(Reply::Array(
                names.filter(|n| keep(n)).map(Reply::bulk_str).collect(),
            ))
        }
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
