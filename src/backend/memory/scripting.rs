//! Lua scripting on the memory backend: EVAL, EVALSHA, EVAL_RO,
//! EVALSHA_RO and SCRIPT LOAD / EXISTS / FLUSH / KILL, with Redis's Lua 5.1,
//! `redis.call` / `redis.pcall` / `redis.error_reply` / `redis.status_reply`
//! / `redis.sha1hex` / `redis.log`, Redis's conversions between Lua and
//! replies, and Redis's error texts.
//!
//! A script runs with the store's gate held exclusively (its commands are
//! registered as exclusive), so no other client's command runs during it,
//! as in Redis. Each run gets a fresh Lua state with the base, table,
//! string and math libraries, sandboxed as Redis sandboxes them (see
//! `sandbox.lua`: read-only globals and libraries, no bytecode).
//! `cjson`, `bit` and `cmsgpack` are there (see [`super::cjson`],
//! [`super::bitop`] and [`super::cmsgpack`]); `struct` is not.
//!
//! A script run for a namespace that shares the store carries its bounds
//! (`Command::scope`): each `redis.call` is checked against them, and KEYS,
//! SCAN, RANDOMKEY and DBSIZE see only the namespace's keys.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, Variadic, VmState};

use super::Memory;
use super::luareply::{from_lua, tagged, to_lua};
use crate::backend::Command;
use crate::backend::scope::Scope;
use crate::wire::command::{self, BLOCKING, CommandSpec, KEYSPACE, LOCAL, PUBSUB, TX, WRITE};
use crate::wire::error::CmdError;
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::util::{bytes, is};

/// How long a script may run. A script holds the store (and its worker
/// thread) until it ends, so one that loops would stop every client of the
/// backend: keyway stops it, where Redis would wait for SCRIPT KILL.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// Memory a script's Lua state may allocate.
const MEMORY_LIMIT: usize = 256 * 1024 * 1024;
/// Run before each script: Redis's sandbox (see the file).
pub(super) const SANDBOX: &str = include_str!("sandbox.lua");
/// What Redis says when a script writes a read-only table from C code
/// (rawset, setmetatable): no position.
const READONLY: &str = "Attempt to modify a readonly table";

/// Scripts loaded by SCRIPT LOAD or run by EVAL, by their SHA1 (hex).
#[derive(Default)]
pub struct Scripts(Mutex<HashMap<String, Bytes>>);

impl Scripts {
    /// Scripts cached (INFO's `number_of_cached_scripts`).
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn get(&self, sha: &str) -> Option<Bytes> {
        self.0.lock().ok()?.get(sha).cloned()
    }

    fn put(&self, body: &Bytes) -> String {
        let sha = sha1_hex(body);
        if let Ok(mut m) = self.0.lock() {
            m.entry(sha.clone()).or_insert_with(|| body.clone());
        }
        sha
    }
}

fn sha1_hex(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, body);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The commands this module answers; None for any other.
pub fn run(mem: &Memory, c: &Command) -> Option<Reply> {
    let r = match c.spec.name {
        "eval" | "eval_ro" => {
            let body = c.args[1].clone();
            let sha = mem.scripts.put(&body);
            eval(mem, &sha, &body, c, c.spec.name == "eval_ro")
        }
        "evalsha" | "evalsha_ro" => {
            let sha = String::from_utf8_lossy(&c.args[1]).to_ascii_lowercase();
            // Redis checks the key count before it looks the script up.
            if let Err(e) = key_count(&c.args) {
                return Some(e);
            }
            match mem.scripts.get(&sha) {
                Some(body) => eval(mem, &sha, &body, c, c.spec.name == "evalsha_ro"),
                None => Reply::error("NOSCRIPT No matching script. Please use EVAL."),
            }
        }
        "script" => script(mem, &c.args),
        _ => return None,
    };
    Some(r)
}

fn script(mem: &Memory, a: &[Bytes]) -> Reply {
    let sub = &a[1];
    if is(sub, "LOAD") && a.len() == 3 {
        let lua = match Lua::new_with(StdLib::NONE, LuaOptions::default()) {
            Ok(l) => l,
            Err(e) => return Reply::error(format!("ERR cannot start Lua: {e}")),
        };
        if let Err(e) = compile(&lua, &a[2], None, "@user_script") {
            return e;
        }
        return Reply::bulk_str(&mem.scripts.put(&a[2]));
    }
    if is(sub, "EXISTS") && a.len() >= 3 {
        return Reply::Array(
            a[2..]
                .iter()
                .map(|s| {
                    let sha = String::from_utf8_lossy(s).to_ascii_lowercase();
                    Reply::Int(mem.scripts.get(&sha).is_some() as i64)
                })
                .collect(),
        );
    }
    if is(sub, "FLUSH") && a.len() <= 3 {
        if a.get(2).is_some_and(|m| !is(m, "ASYNC") && !is(m, "SYNC")) {
            return Reply::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
        }
        if let Ok(mut m) = mem.scripts.0.lock() {
            m.clear();
        }
        return Reply::ok();
    }
    if is(sub, "KILL") && a.len() == 2 {
        // A script holds the gate until it ends, so none runs while a
        // client can ask.
        return Reply::error("NOTBUSY No scripts in execution right now.");
    }
    if ["LOAD", "EXISTS", "FLUSH", "KILL"]
        .iter()
        .any(|s| is(sub, s))
    {
        let name = String::from_utf8_lossy(sub).to_lowercase();
        return CmdError::WrongArity(format!("script|{name}")).into();
    }
    CmdError::UnknownSubcommand {
        cmd: "SCRIPT".into(),
        sub: crate::wire::error::lossy(sub, 128),
    }
    .into()
}

/// An error `redis.call` raises: the reply's text, already with the
/// script and line Redis appends, to be the script's reply if uncaught.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Compiles a script as text, in `env` when given. A binary chunk is parsed
/// as text too (after a space, so Lua does not see its signature), where
/// it fails, as in Redis, whose Lua refuses bytecode.
fn compile(
    lua: &Lua,
    body: &[u8],
    env: Option<Table>,
    name: &str,
) -> Result<mlua::Function, Reply> {
    shebang(body)?;
    let text: std::borrow::Cow<'_, [u8]> = if body.starts_with(b"#!") {
        // The shebang line becomes a comment, so lines keep their numbers.
        super::library::as_chunk(body).into()
    } else if body.first() == Some(&0x1b) {
        let mut spaced = Vec::with_capacity(body.len().saturating_add(1));
        spaced.push(b' ');
        spaced.extend_from_slice(body);
        spaced.into()
    } else {
        body.into()
    };
    let mut chunk = lua.load(&text[..]).set_name(name);
    if let Some(env) = env {
        chunk = chunk.set_environment(env);
    }
    chunk.into_function().map_err(|e| {
        let msg = match &e {
            mlua::Error::SyntaxError { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Reply::error(format!("ERR Error compiling script (new function): {msg}"))
    })
}

/// A script's `#!lua flags=...` line, checked with Redis's texts: None
/// without one (a script in EVAL's compatibility mode, which may write),
/// else the flags it names.
fn shebang(body: &[u8]) -> Result<Option<Vec<&'static str>>, Reply> {
    if !body.starts_with(b"#!") {
        return Ok(None);
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err(Reply::error("ERR Invalid script shebang"));
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    match parts.next() {
        Some("#!lua") => {}
        Some(engine) => {
            return Err(Reply::error(format!(
                "ERR Unexpected engine in script shebang: {engine}"
            )));
        }
        None => return Err(Reply::error("ERR Invalid engine in script shebang")),
    }
    let mut flags = Vec::new();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(Reply::error(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match super::library::FLAGS.iter().find(|f| **f == flag) {
                Some(known) => flags.push(*known),
                None => {
                    return Err(Reply::error(format!(
                        "ERR Unexpected flag in script shebang: {flag}"
                    )));
                }
            }
        }
    }
    Ok(Some(flags))
}

/// The key count of EVAL and EVALSHA, checked as Redis checks it.
fn key_count(a: &[Bytes]) -> Result<usize, Reply> {
    let Some(n) = parse_i64(&a[2]) else {
        return Err(CmdError::NotInteger.into());
    };
    if n < 0 {
        return Err(Reply::error("ERR Number of keys can't be negative"));
    }
    match usize::try_from(n) {
        Ok(n) if n <= a.len() - 3 => Ok(n),
        _ => Err(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        )),
    }
}

/// What a Lua run executes: a script, or a function of a library (whose
/// code is loaded first, with only `redis.register_function` in sight).
pub(super) enum Target<'a> {
    Script { sha: &'a str, body: &'a [u8] },
    Function { name: &'a str, code: &'a [u8] },
}

/// EVAL / EVALSHA (and their _RO forms), run as command `c`.
fn eval(mem: &Memory, sha: &str, body: &[u8], c: &Command, ro_command: bool) -> Reply {
    let n = match key_count(&c.args) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // A script that declares its flags writes only without `no-writes`,
    // and then not from EVAL_RO.
    let read_only = match shebang(body) {
        Err(e) => return e,
        Ok(None) => ro_command,
        Ok(Some(flags)) => {
            let no_writes = flags.contains(&"no-writes");
            if ro_command && !no_writes {
                return Reply::error(
                    "ERR Can not execute a script with write flag using *_ro command.",
                );
            }
            no_writes
        }
    };
    run_lua(mem, Target::Script { sha, body }, c, n, read_only)
}

/// Runs a script or a function for command `c`, whose key count (after
/// the script or function name) is `n`.
pub(super) fn run_lua(
    mem: &Memory,
    target: Target,
    c: &Command,
    n: usize,
    read_only: bool,
) -> Reply {
    let a = &c.args[..];
    let bounds = c.scope.as_deref();
    let monitor = c.unblock.as_ref().and_then(|u| u.monitor.as_ref());
    let (keys, argv) = a[3..].split_at(n.min(a.len().saturating_sub(3)));
    let (label, chunk) = match &target {
        Target::Script { sha, .. } => (*sha, "user_script"),
        Target::Function { name, .. } => (*name, "user_function"),
    };
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH;
    let lua = match Lua::new_with(libs, LuaOptions::default()) {
        Ok(l) => l,
        Err(e) => return Reply::error(format!("ERR cannot start Lua: {e}")),
    };
    let _ = lua.set_memory_limit(MEMORY_LIMIT);
    let started = Instant::now();
    let hooked = lua.set_hook(
        HookTriggers::new().every_nth_instruction(10_000),
        move |_, _| {
            if started.elapsed() > TIME_LIMIT {
                return Err(mlua::Error::RuntimeError(format!(
                    "Script ran longer than {} ms and was stopped; writes it made stay",
                    TIME_LIMIT.as_millis()
                )));
            }
            Ok(VmState::Continue)
        },
    );
    if let Err(e) = hooked {
        return Reply::error(format!("ERR cannot start Lua: {e}"));
    }
    let suffix =
        |line: Option<usize>| format!(" script: {label}, on @{chunk}:{}.", line.unwrap_or(1));
    // redis.setresp(3): replies reach the script in RESP3's shapes.
    let resp3 = &std::cell::Cell::new(false);
    let result = lua.scope(|scope| {
        let g = lua.globals();
        if let Target::Script { .. } = target {
            g.set("KEYS", strings(&lua, keys)?)?;
            g.set("ARGV", strings(&lua, argv)?)?;
        }
        let r = lua.create_table()?;
        let call = |lua: &Lua, args: Variadic<Value>, protected: bool| -> mlua::Result<Value> {
            let line = lua.inspect_stack(1, |d| d.current_line()).flatten();
            let reply = match command_of(lua, args, read_only) {
                Ok(cmd) => match bounds.map(|s| s.check(&cmd, keys)) {
                    Some(Err(refused)) => refused,
                    // Clients blocked on the script's keys are served once
                    // the batch ends and the gate is free.
                    _ => {
                        // MONITOR shows what a script runs, as Redis does.
                        if let Some(m) = monitor {
                            (m.0)(c.db, &cmd.args);
                        }
                        answered_here(&cmd).unwrap_or_else(|| scoped(mem, &cmd, bounds))
                    }
                },
                Err(e) => e,
            };
            match reply {
                Reply::Error(e) if !protected => Err(mlua::Error::external(Raised(format!(
                    "{}{}",
                    String::from_utf8_lossy(&e),
                    suffix(line)
                )))),
                reply => to_lua(lua, reply, resp3.get()),
            }
        };
        r.set(
            "call",
            scope.create_function(move |lua, args: Variadic<Value>| call(lua, args, false))?,
        )?;
        r.set(
            "pcall",
            scope.create_function(move |lua, args: Variadic<Value>| call(lua, args, true))?,
        )?;
        for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
            r.set(
                name,
                lua.create_function(move |lua, s: mlua::LuaString| {
                    tagged(lua, field, &s.as_bytes())
                })?,
            )?;
        }
        r.set(
            "sha1hex",
            lua.create_function(|lua, args: Variadic<Value>| {
                if args.len() != 1 {
                    return Err(mlua::Error::RuntimeError(
                        "wrong number of arguments".into(),
                    ));
                }
                // lua_tolstring: a string or number, anything else empty.
                let text = match &args[0] {
                    v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => lua
                        .coerce_string(v.clone())?
                        .map(|s| s.as_bytes().to_vec())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                Ok(sha1_hex(&text))
            })?,
        )?;
        // Errors of the redis library's own functions: Redis raises them
        // without a position.
        let raise = move |lua: &Lua, text: &str| {
            let line = lua.inspect_stack(1, |d| d.current_line()).flatten();
            mlua::Error::external(Raised(format!("{text}{}", suffix(line))))
        };
        r.set("log", lua.create_function(|_, _: Variadic<Value>| Ok(()))?)?;
        r.set(
            "setresp",
            scope.create_function(move |lua, args: Variadic<Value>| {
                let [v] = &args[..] else {
                    return Err(raise(lua, "ERR redis.setresp() requires one argument."));
                };
                match lua.coerce_number(v.clone())? {
                    Some(n) if n == 2.0 || n == 3.0 => {
                        resp3.set(n == 3.0);
                        Ok(())
                    }
                    _ => Err(raise(lua, "ERR RESP version must be 2 or 3.")),
                }
            })?,
        )?;
        r.set(
            "set_repl",
            scope.create_function(move |lua, args: Variadic<Value>| {
                let [flags] = &args[..] else {
                    return Err(raise(lua, "ERR redis.set_repl() requires two arguments."));
                };
                // lua_tonumber: a number, a numeric string, or 0.
                let n = match flags {
                    Value::Integer(n) => *n,
                    Value::Number(n) => *n as i64,
                    v => lua
                        .coerce_number(v.clone())
                        .ok()
                        .flatten()
                        .map_or(0, |n| n as i64),
                };
                if n & !3 != 0 {
                    return Err(raise(
                        lua,
                        "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                    ));
                }
                Ok(())
            })?,
        )?;
        r.set(
            "acl_check_cmd",
            scope.create_function(move |lua, args: Variadic<Value>| {
                if args.is_empty() {
                    return Err(raise(
                        lua,
                        "ERR Please specify at least one argument for this redis lib call",
                    ));
                }
                let mut words = Vec::with_capacity(args.len());
                for v in args {
                    match lua.coerce_string(v) {
                        Ok(Some(s)) => words.push(Bytes::copy_from_slice(&s.as_bytes())),
                        _ => return Err(raise(lua, &text(&bad_args()))),
                    }
                }
                let Some(spec) = command::lookup(&words[0]).filter(|_| {
                    // A number is not a command name, as in Redis.
                    !words[0].iter().all(u8::is_ascii_digit)
                }) else {
                    return Err(raise(lua, "ERR Invalid command passed to redis.acl_check_cmd()"));
                };
                let cmd = Command::internal(spec, words);
                Ok(bounds.is_none_or(|s| s.check(&cmd, keys).is_ok()))
            })?,
        )?;
        r.set(
            "replicate_commands",
            lua.create_function(|_, _: Variadic<Value>| Ok(true))?,
        )?;
        r.set(
            "breakpoint",
            lua.create_function(|_, _: Variadic<Value>| Ok(false))?,
        )?;
        r.set("debug", lua.create_function(|_, _: Variadic<Value>| Ok(()))?)?;
        for (name, flags) in [
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            r.set(name, flags)?;
        }
        r.set("REDIS_VERSION", command::REDIS_VERSION)?;
        r.set("REDIS_VERSION_NUM", command::REDIS_VERSION_NUM)?;
        for (i, level) in ["LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"]
            .iter()
            .enumerate()
        {
            r.set(*level, i)?;
        }
        g.set("redis", r)?;
        g.set("cjson", super::cjson::library(&lua)?)?;
        g.set("bit", super::bitop::library(&lua)?)?;
        g.set("cmsgpack", super::cmsgpack::library(&lua)?)?;
        let (env, set_api, guard): (Table, mlua::Function, mlua::Function) =
            lua.load(SANDBOX).set_name("=sandbox").call(())?;
        let ran = match target {
            Target::Script { body, .. } => match compile(&lua, body, Some(env), "@user_script") {
                Ok(f) => f.call::<Value>(()),
                Err(reply) => return Ok(reply),
            },
            Target::Function { name, code } => {
                let f = super::library::load_library(&lua, code, &set_api, &guard)?;
                let Some(f) = f.get::<Option<mlua::Function>>(name)? else {
                    return Ok(Reply::error("ERR Function not found"));
                };
                set_api.call::<()>(g.clone())?;
                f.call::<Value>((strings(&lua, keys)?, strings(&lua, argv)?))
            }
        };
        Ok(match ran {
            // Booleans go out as RESP3's only after redis.setresp(3).
            Ok(v) => from_lua(v, resp3.get(), c.resp3),
            Err(e) => error_reply(&e, &suffix, chunk),
        })
    });
    result.unwrap_or_else(|e| Reply::error(format!("ERR Error running script: {e}")))
}

/// The reply for a script that raised an error.
fn error_reply(e: &mlua::Error, suffix: &dyn Fn(Option<usize>) -> String, chunk: &str) -> Reply {
    if let Some(Raised(text)) = e.chain().find_map(|c| c.downcast_ref::<Raised>()) {
        return Reply::error(text.clone());
    }
    let msg = match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => match cause.as_ref() {
            mlua::Error::RuntimeError(m) => m.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    // mlua adds a traceback; Redis's reply has only the message.
    let msg = msg
        .split("\nstack traceback:")
        .next()
        .unwrap_or_default()
        .to_string();
    // A chunk the script loaded itself says where as `[string "SRC"]:LINE:`,
    // and Redis names it so in the trailer too.
    if let Some((source, rest)) = msg
        .strip_prefix("[string \"")
        .and_then(|r| r.split_once("\"]:"))
    {
        if let Some((line, _)) = rest.split_once(':') {
            let sha = suffix(None);
            let sha = sha.split(',').next().unwrap_or_default();
            return Reply::error(format!("ERR {msg}{sha}, on {source}:{line}."));
        }
    }
    // "user_script:LINE: ..." says where.
    let at = format!("{chunk}:");
    let line = msg
        .strip_prefix(at.as_str())
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.parse().ok());
    let msg = if msg.starts_with(at.as_str()) || msg == READONLY {
        msg
    } else {
        format!("{chunk}:{}: {msg}", line.unwrap_or(1))
    };
    Reply::error(format!("ERR {msg}{}", suffix(line)))
}

fn strings(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, b) in items.iter().enumerate() {
        t.set(i + 1, lua.create_string(&b[..])?)?;
    }
    Ok(t)
}

/// The command a `redis.call` asks for, or the error Redis gives instead.
fn command_of(lua: &Lua, args: Variadic<Value>, read_only: bool) -> Result<Command, Reply> {
    let mut words = Vec::with_capacity(args.len());
    for v in args {
        match v {
            Value::String(_) | Value::Integer(_) | Value::Number(_) => match lua.coerce_string(v) {
                Ok(Some(s)) => words.push(Bytes::copy_from_slice(&s.as_bytes())),
                _ => return Err(bad_args()),
            },
            _ => return Err(bad_args()),
        }
    }
    if words.is_empty() {
        return Err(Reply::error(
            "ERR Please specify at least one argument for this redis lib call",
        ));
    }
    let Some(spec) = command::lookup(&words[0]) else {
        return Err(Reply::error("ERR Unknown Redis command called from script"));
    };
    if !allowed(spec) {
        return Err(Reply::error(
            "ERR This Redis command is not allowed from script",
        ));
    }
    if !spec.arity_ok(words.len()) {
        return Err(Reply::error(
            "ERR Wrong number of args calling Redis command from script",
        ));
    }
    if read_only && spec.has(WRITE) {
        return Err(Reply::error(
            "ERR Write commands are not allowed from read-only scripts.",
        ));
    }
    let mut cmd = Command::internal(spec, words);
    cmd.inspect = true;
    Ok(cmd)
}

/// Runs a script's command; with a scope, the commands that list the
/// keyspace see only the scope's keys.
fn scoped(mem: &Memory, cmd: &Command, scope: Option<&Scope>) -> Reply {
    let Some(scope) =
        scope.filter(|_| matches!(cmd.spec.name, "keys" | "scan" | "randomkey" | "dbsize"))
    else {
        return mem.one(super::dispatch(), cmd);
    };
    let shown = |r: Reply| match r {
        Reply::Array(keys) => Reply::Array(
            keys.into_iter()
                .filter(|k| matches!(k, Reply::Bulk(k) if scope.shows(k)))
                .collect(),
        ),
        other => other,
    };
    match cmd.spec.name {
        "keys" => shown(mem.one(super::dispatch(), cmd)),
        "scan" => match mem.one(super::dispatch(), cmd) {
            Reply::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop().map(shown).unwrap_or(Reply::Array(Vec::new()));
                parts.push(keys);
                Reply::Array(parts)
            }
            other => other,
        },
        _ => {
            let all = Command::internal(command::known("keys"), vec![bytes("KEYS"), bytes("*")]);
            let Reply::Array(keys) = shown(mem.one(super::dispatch(), &all)) else {
                return Reply::error("ERR cannot list the namespace's keys");
            };
            if cmd.spec.name == "dbsize" {
                return Reply::Int(keys.len() as i64);
            }
            let n = keys.len() as u64;
            if n == 0 {
                return Reply::Nil;
            }
            let pick = crate::wire::util::random_below(n) as usize;
            keys.into_iter().nth(pick).unwrap_or(Reply::Nil)
        }
    }
}

/// PING, ECHO and TIME, which keyway answers itself for clients and
/// scripts may call too.
fn answered_here(cmd: &Command) -> Option<Reply> {
    let a = &cmd.args;
    Some(match cmd.spec.name {
        "ping" => match a.get(1) {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::status("PONG"),
        },
        "echo" => Reply::Bulk(a[1].clone()),
        "time" => crate::wire::util::time(),
        _ => return None,
    })
}

/// An error reply's text.
fn text(r: &Reply) -> String {
    match r {
        Reply::Error(e) => String::from_utf8_lossy(e).into_owned(),
        _ => String::new(),
    }
}

fn bad_args() -> Reply {
    Reply::error("ERR Lua redis lib command arguments must be strings or integers")
}

/// Commands a script may call: what the store runs itself, except
/// scripting, transactions, blocking and subscriptions.
fn allowed(spec: &CommandSpec) -> bool {
    if matches!(spec.name, "ping" | "echo" | "time") {
        return true;
    }
    if spec.has(LOCAL) || spec.has(TX) || spec.has(BLOCKING) {
        return false;
    }
    if spec.has(PUBSUB) {
        return matches!(spec.name, "publish" | "spublish");
    }
    if spec.has(KEYSPACE) {
        return matches!(
            spec.name,
            "keys" | "scan" | "dbsize" | "randomkey" | "flushdb" | "flushall"
        );
    }
    !matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}
