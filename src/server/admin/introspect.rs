//! COMMAND (COUNT, INFO, DOCS, LIST, GETKEYS, GETKEYSANDFLAGS): key
//! positions are keyway's own (they route its commands); flags, key
//! specifications and documentation are Redis's (see `docs`).

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
    let docs = super::docs::docs();
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
                    .map(|n| command::lookup(n).map_or(Reply::Nil, command_info))
                    .collect(),
            ))
        }
        // Each command asked for that keyway has; all of them without names.
        "docs" => {
            let names: Vec<&str> = if args.len() == 2 {
                table.iter().map(|c| c.name).collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|n| command::lookup(n).map(|c| c.name))
                    .collect()
            };
            Ok(Reply::Map(
                names
                    .into_iter()
                    .filter_map(|n| Some((super::docs::name(n), docs.docs.get(n)?.clone())))
                    .collect(),
            ))
        }
        "getkeys" | "getkeysandflags" => {
            let with_flags = sub_name == "getkeysandflags";
            if args.len() < 4 {
                return Err(CmdError::WrongArity(format!("command|{sub_name}")));
            }
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
                    .enumerate()
                    .map(|(i, p)| {
                        let key = Reply::Bulk(rest[p].clone());
                        if with_flags {
                            let flags = super::docs::key_flags(spec.name, rest, p, i);
                            Reply::Array(vec![key, Reply::Set(flags)])
                        } else {
                            key
                        }
                    })
                    .collect(),
            ))
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "COMMAND".into(),
            sub: lossy(sub, 128),
        }),
    }
}

/// One COMMAND INFO entry: Redis's own for the command.
pub(super) fn command_info(spec: &CommandSpec) -> Reply {
    match super::docs::docs().info.get(spec.name) {
        Some(r) => r.clone(),
        None => synthesized_info(spec),
    }
}

/// A COMMAND INFO entry in Redis 7's ten-field shape, from keyway's own
/// table (for a command the data file lacks).
fn synthesized_info(spec: &CommandSpec) -> Reply {
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
