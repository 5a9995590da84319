//! ACL: what clients and tools ask of keyway's users (see `server::acl`).
//! Users come from the config file; SETUSER and DELUSER change them at
//! runtime, until the config is read again (as a Redis without an ACL
//! file). LOAD and SAVE are refused with a pointer to the config.

use std::sync::Arc;

use bytes::Bytes;

use crate::proxy::router::Router;
use crate::server::acl::{
    Denial, Users, categories::CATEGORIES, category_commands, merge_selectors,
};
use crate::server::clients::ClientState;
use crate::server::settings::Settings;
use crate::server::shared::Shared;
use crate::wire::command;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::util::subcommand;

pub(super) fn acl(state: &ClientState, shared: &Shared, router: &Router, a: &[Bytes]) -> CmdResult {
    let sub = subcommand(
        a,
        "ACL",
        &[
            ("WHOAMI", 2, true),
            ("USERS", 2, true),
            ("LIST", 2, true),
            ("CAT", 2, false),
            ("GETUSER", 3, true),
            ("LOG", 2, false),
            ("DRYRUN", 4, false),
            ("GENPASS", 2, false),
            ("SETUSER", 3, false),
            ("DELUSER", 3, false),
            ("LOAD", 2, true),
            ("SAVE", 2, true),
            ("HELP", 2, true),
        ],
    )?;
    let settings = shared.settings.load();
    let users = &settings.users;
    match sub.as_str() {
        "WHOAMI" => Ok(Reply::bulk_str(&state.user.name)),
        "USERS" => Ok(Reply::Array(
            users.names().into_iter().map(Reply::bulk_str).collect(),
        )),
        "LIST" => Ok(Reply::Array(
            users
                .names()
                .into_iter()
                .filter_map(|n| users.get(n))
                .map(|u| Reply::bulk_str(&u.describe(Some(router))))
                .collect(),
        )),
        "CAT" => match a.get(2) {
            None => Ok(Reply::Array(
                CATEGORIES.iter().map(|c| Reply::bulk_str(c)).collect(),
            )),
            Some(cat) if a.len() == 3 => {
                let name = lossy(cat, 128);
                let commands = category_commands(&name)
                    .ok_or_else(|| CmdError::msg(format!("ERR Unknown category '{name}'")))?;
                Ok(Reply::Array(
                    commands.into_iter().map(Reply::bulk_str).collect(),
                ))
            }
            Some(_) => Err(CmdError::WrongArity("acl|cat".into())),
        },
        "GETUSER" => Ok(users
            .get(&lossy(&a[2], 128))
            .map_or(Reply::Nil, |u| u.getuser(Some(router)))),
        "SETUSER" => {
            let name = &a[2];
            if name.iter().any(|c| matches!(c, b' ' | b'\0')) {
                return Err(CmdError::msg(
                    "ERR Usernames can't contain spaces or null characters",
                ));
            }
            let name = lossy(name, usize::MAX);
            let ops = merge_selectors(&a[3..]).map_err(|at| {
                CmdError::msg(format!(
                    "ERR Unmatched parenthesis in acl selector starting at '{}'.",
                    lossy(&at, 128)
                ))
            })?;
            users.set_user(&name, &ops).map_err(|(op, why)| {
                CmdError::msg(format!(
                    "ERR Error in ACL SETUSER modifier '{}': {why}",
                    lossy(&op, 128)
                ))
            })?;
            // Applied again on what is current when stored, so that
            // concurrent changes all land.
            update_users(shared, |u| u.set_user(&name, &ops).ok());
            Ok(Reply::ok())
        }
        "DELUSER" => {
            let names: Vec<String> = a[2..].iter().map(|n| lossy(n, usize::MAX)).collect();
            if names.iter().any(|n| n == "default") {
                return Err(CmdError::msg("ERR The 'default' user cannot be removed"));
            }
            let (_, removed) = users.without(&names);
            if removed > 0 {
                update_users(shared, |u| Some(u.without(&names).0));
                // Their connections close, as in Redis.
                for c in shared.clients.all() {
                    if names.contains(&c.user()) {
                        c.kill.notify_one();
                    }
                }
            }
            Ok(Reply::Int(removed as i64))
        }
        "LOG" => match a.get(2) {
            None => Ok(shared.acl_log.entries(10)),
            Some(arg) if a.len() == 3 && arg.eq_ignore_ascii_case(b"RESET") => {
                shared.acl_log.reset();
                Ok(Reply::ok())
            }
            Some(arg) if a.len() == 3 => {
                let n = parse_i64(arg).ok_or(CmdError::NotInteger)?;
                Ok(shared.acl_log.entries(usize::try_from(n).unwrap_or(0)))
            }
            Some(_) => Err(CmdError::Syntax),
        },
        "DRYRUN" => {
            let name = lossy(&a[2], 128);
            let Some(u) = users.get(&name) else {
                return Err(CmdError::msg(format!("ERR User '{name}' not found")));
            };
            let args = &a[3..];
            let Some(spec) = command::lookup(&args[0]) else {
                return Err(CmdError::msg(format!(
                    "ERR Command '{}' not found",
                    lossy(&args[0], 128)
                )));
            };
            if !spec.arity_ok(args.len()) {
                return Err(spec.arity_error());
            }
            Ok(match u.check(spec, args, router) {
                Ok(()) => Reply::ok(),
                Err(Denial::Command(c)) => Reply::bulk_str(&format!(
                    "This user has no permissions to run the '{c}' command"
                )),
                Err(Denial::Key(k)) => Reply::bulk_str(&format!(
                    "This user has no permissions to access the '{k}' key"
                )),
                Err(Denial::Channel(c)) => Reply::bulk_str(&format!(
                    "This user has no permissions to access the '{c}' channel"
                )),
                Err(Denial::Auth) => Reply::ok(),
            })
        }
        "GENPASS" => {
            let bits = match a.get(2) {
                None => 256,
                Some(b) => match parse_i64(b) {
                    Some(n) if (1..=4096).contains(&n) => n as usize,
                    _ => {
                        return Err(CmdError::msg(
                            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                        ));
                    }
                },
            };
            genpass(bits)
        }
        "LOAD" | "SAVE" => Err(CmdError::msg(format!(
            "ERR ACL {sub}: keyway's users are set in its config file ([[users]]); edit it and reload (SIGHUP)"
        ))),
        _ => Ok(Reply::help(&[
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "(Users changed at runtime last until keyway reads its config file again;",
            "LOAD and SAVE are refused.)",
            "HELP",
            "    Print this help.",
        ])),
    }
}

/// Replaces the users with what `change` makes of the current ones; every
/// connection sees them from its next command.
fn update_users(shared: &Shared, change: impl Fn(&Users) -> Option<Users>) {
    shared.settings.rcu(|current| {
        let mut settings = Settings::clone(current);
        if let Some(users) = change(&current.users) {
            settings.users = Arc::new(users);
        }
        settings
    });
}

/// `bits` of randomness from the system's generator, as hex (rounded up to
/// whole hex digits, as Redis does).
fn genpass(bits: usize) -> CmdResult {
    use ring::rand::SecureRandom;
    let digits = bits.div_ceil(4);
    let mut bytes = vec![0u8; digits.div_ceil(2)];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CmdError::msg("ERR cannot read random bytes"))?;
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(digits);
    Ok(Reply::bulk_str(&hex))
}
