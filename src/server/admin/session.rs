//! The client's session: AUTH, HELLO, RESET and CLIENT (names, library,
//! LIST, KILL).

use std::sync::Arc;

use bytes::Bytes;

use crate::server::acl::{Denial, User};
use crate::server::clients::{ClientState, Replies};
use crate::server::shared::Shared;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is};

pub(super) fn reset(state: &mut ClientState, shared: &Shared) {
    state.details.resp3 = false;
    state.details.name = None;
    state.details.db = 0;
    // RESET logs the client back in as `default`, as in Redis.
    let settings = shared.settings.load();
    state.authenticated = settings.users.open();
    login(state, settings.users.default_user().clone());
}

fn login(state: &mut ClientState, user: Arc<User>) {
    state.details.user = user.name.clone();
    state.user = user;
}

/// Logs the client in as `user` with `password`; WRONGPASS (logged in ACL
/// LOG and counted) when they do not match.
fn log_in(state: &mut ClientState, shared: &Shared, user: &[u8], password: &[u8]) -> CmdResult<()> {
    let settings = shared.settings.load();
    match settings.users.authenticate(user, password) {
        Some(u) => {
            login(state, u);
            state.authenticated = true;
            Ok(())
        }
        None => {
            let name = lossy(user, 128);
            let known = settings.users.get(&name).is_some();
            metrics().auth_failed(if known { &name } else { "(unknown)" });
            let info = state.registered.client.line(
                shared.local_addr,
                Some(("auth", state.query_len)),
                shared.router.load().reports_7_2(),
            );
            let context = "toplevel";
            shared
                .acl_log
                .add(&Denial::Auth, "AUTH", context, &name, info);
            Err(CmdError::msg(Denial::Auth.text()))
        }
    }
}

pub(super) fn auth(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    match &args[1..] {
        [password] => {
            let settings = shared.settings.load();
            let default = settings.users.default_user();
            if default.enabled && settings.users.open() {
                return Err(CmdError::msg(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            log_in(state, shared, b"default", password)?;
        }
        [user, password] => log_in(state, shared, user, password)?,
        _ => return Err(CmdError::Syntax),
    }
    Ok(Reply::ok())
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]
pub(super) fn hello(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
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
        log_in(state, shared, user, pass)?;
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
        (s("version"), s(&shared.router.load().redis_version())),
        (s("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (s("id"), Reply::Int(state.id() as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(Vec::new())),
    ]))
}

/// Redis accepts names of printable characters without spaces.
pub(super) fn validate_name(n: &[u8], what: &str) -> CmdResult<()> {
    if n.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(CmdError::msg(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        )));
    }
    Ok(())
}

pub(super) fn client(state: &mut ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
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
            Ok(Reply::Verbatim(Bytes::from(me.line(
                shared.local_addr,
                Some(("client|info", state.query_len)),
                shared.router.load().reports_7_2(),
            ))))
        }
        "list" => client_list(state, shared, args),
        "kill" => client_kill(state, shared, args),
        "pause" => {
            if !(3..=4).contains(&args.len()) {
                return Err(CmdError::WrongArity("client|pause".into()));
            }
            let ms = crate::wire::protocol::parse_i64(&args[2])
                .ok_or_else(|| CmdError::msg("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(CmdError::msg("ERR timeout is negative"));
            }
            let all = match args.get(3) {
                None => true,
                Some(m) if is(m, "ALL") => true,
                Some(m) if is(m, "WRITE") => false,
                Some(_) => {
                    return Err(CmdError::msg("ERR CLIENT PAUSE mode must be WRITE or ALL"));
                }
            };
            let until = std::time::Instant::now()
                + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0).min(1 << 40));
            if let Ok(mut p) = shared.pause.lock() {
                // A pause never shortens one in force, as in Redis.
                let keep = p.filter(|(u, a)| *u > until && (*a || !all));
                *p = Some(keep.unwrap_or((until, all)));
                shared
                    .pausing
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Reply::ok())
        }
        "unpause" => {
            arity(2)?;
            if let Ok(mut p) = shared.pause.lock() {
                *p = None;
            }
            Ok(Reply::ok())
        }
        // CLIENT UNBLOCK id [TIMEOUT|ERROR]: 1 when the client was blocked
        // and its wait is ended (memory backend), 0 when it was not.
        "unblock" => {
            if !(3..=4).contains(&args.len()) {
                return Err(CmdError::WrongArity("client|unblock".into()));
            }
            let id = crate::wire::protocol::parse_i64(&args[2]).ok_or(CmdError::NotInteger)?;
            let error = match args.get(3) {
                None => false,
                Some(m) if is(m, "TIMEOUT") => false,
                Some(m) if is(m, "ERROR") => true,
                Some(_) => {
                    return Err(CmdError::msg(
                        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                    ));
                }
            };
            let target = shared
                .clients
                .all()
                .into_iter()
                .find(|c| i64::try_from(c.id).is_ok_and(|c| c == id));
            match target {
                Some(c) if c.blocked.load(std::sync::atomic::Ordering::Acquire) => {
                    if c.unblock.ask(error) {
                        Ok(Reply::Int(1))
                    } else {
                        Err(CmdError::msg(
                            "ERR CLIENT UNBLOCK: that client's wait has not reached its server yet; try again",
                        ))
                    }
                }
                _ => Ok(Reply::Int(0)),
            }
        }
        "reply" => {
            arity(3)?;
            state.replies = if is(&args[2], "ON") {
                Replies::On
            } else if is(&args[2], "OFF") {
                Replies::Off
            } else if is(&args[2], "SKIP") {
                Replies::SkipNext
            } else {
                return Err(CmdError::Syntax);
            };
            Ok(Reply::ok())
        }
        // Client-side caching is not kept by keyway (yet): tracking is
        // always off, which these report as Redis does.
        "getredir" => {
            arity(2)?;
            Ok(Reply::Int(-1))
        }
        "trackinginfo" => {
            arity(2)?;
            let s = |v: &str| Reply::bulk_str(v);
            Ok(Reply::Map(vec![
                (s("flags"), Reply::Array(vec![s("off")])),
                (s("redirect"), Reply::Int(-1)),
                (s("prefixes"), Reply::Array(Vec::new())),
            ]))
        }
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
pub(super) fn client_list(state: &ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    // None: any type; Some(true): subscribed; Some(false): not subscribed.
    let mut pubsub: Option<bool> = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut none = false;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "TYPE") && i + 1 < args.len() {
            match client_type(&args[i + 1])? {
                Some(subscribed) => pubsub = Some(subscribed),
                None => none = true,
            }
            i += 2;
        } else if is(&args[i], "ID") && i + 1 < args.len() {
            let mut wanted = Vec::new();
            for a in &args[i + 1..] {
                match crate::wire::protocol::parse_i64(a) {
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
    let v7_2 = shared.router.load().reports_7_2();
    let mut text = String::new();
    for c in shared.clients.all() {
        let listed = !none
            && ids.as_ref().is_none_or(|ids| ids.contains(&c.id))
            && pubsub.is_none_or(|p| p == c.subscribed());
        if listed {
            let current = (c.id == state.id()).then_some(("client|list", state.query_len));
            text.push_str(&c.line(shared.local_addr, current, v7_2));
        }
    }
    Ok(Reply::Verbatim(Bytes::from(text)))
}

/// A TYPE filter of CLIENT LIST and KILL: whether a client of the type is
/// subscribed, or None for masters and replicas, which keyway never has.
fn client_type(t: &[u8]) -> Result<Option<bool>, CmdError> {
    if is(t, "NORMAL") {
        Ok(Some(false))
    } else if is(t, "PUBSUB") {
        Ok(Some(true))
    } else if is(t, "MASTER") || is(t, "REPLICA") || is(t, "SLAVE") {
        Ok(None)
    } else {
        Err(CmdError::msg(format!(
            "ERR Unknown client type '{}'",
            lossy(t, 128)
        )))
    }
}

/// CLIENT KILL addr, or CLIENT KILL [ID id] [ADDR addr] [LADDR addr]
/// [USER name] [TYPE type] [SKIPME yes/no] [MAXAGE secs] (Redis 7's filters). A client
/// killed ends once its reply to the command in hand is written.
pub(super) fn client_kill(state: &ClientState, shared: &Shared, args: &[Bytes]) -> CmdResult {
    // CLIENT KILL's arity in Redis is -3.
    if args.len() < 3 {
        return Err(CmdError::WrongArity("client|kill".into()));
    }
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
    // None: any type; Some(None): a type keyway has no client of.
    let mut kind: Option<Option<bool>> = None;
    let mut skip_me = true;
    for pair in args[2..].chunks(2) {
        let (f, v) = (&pair[0], &pair[1]);
        if is(f, "ID") {
            match crate::wire::protocol::parse_i64(v) {
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
            let name = lossy(v, 128);
            if shared.settings.load().users.get(&name).is_none() {
                return Err(CmdError::msg(format!("ERR No such user '{name}'")));
            }
            user = Some(name);
        } else if is(f, "TYPE") {
            kind = Some(client_type(v)?);
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
            && user.as_ref().is_none_or(|u| c.user() == *u)
            && kind.is_none_or(|k| k == Some(c.subscribed()))
            && max_age.is_none_or(|age| c.since.elapsed().as_secs() as i64 >= age)
            && !(skip_me && c.id == state.id());
        if matches {
            c.kill.notify_one();
            killed += 1;
        }
    }
    Ok(Reply::Int(killed))
}
