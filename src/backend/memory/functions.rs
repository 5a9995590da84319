//! Redis 7 functions on the memory backend: FUNCTION LOAD [REPLACE],
//! DELETE, FLUSH, LIST [WITHCODE] [LIBRARYNAME pattern], DUMP, RESTORE
//! [FLUSH|APPEND|REPLACE], STATS, KILL, HELP; and FCALL / FCALL_RO, run by
//! the scripting engine (see `scripting::run_lua`); what a library is made
//! of is `library`.
//!
//! A library is Lua code under a `#!lua name=<lib>` line that registers its
//! functions with `redis.register_function` when it loads, with only
//! `redis` in sight (as in Redis). FUNCTION LOAD runs it once to check it
//! and learn its functions; each FCALL runs it again in a fresh state and
//! calls the function, as a fresh state per EVAL does for scripts.
//! DUMP writes Redis's payload (RDB function entries, version, CRC64) with
//! the code uncompressed; RESTORE reads Redis's, compressed or not.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use mlua::{Lua, LuaOptions, StdLib, Table, Value, Variadic};

use super::Memory;
use super::library::{FLAGS, as_chunk, loading_api};
use super::rdb;
use super::scripting::{SANDBOX, Target, run_lua};
use crate::backend::Command;
use crate::wire::error::{CmdError, CmdResult, lossy};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::util::{glob_match, is, subcommand, upper};

/// How long a library's loading may run, as in Redis.
const LOAD_TIME_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Clone, Debug)]
struct Function {
    name: String,
    description: Option<Bytes>,
    flags: Vec<&'static str>,
}

#[derive(Clone, Debug)]
struct Library {
    code: Bytes,
    functions: Vec<Function>,
}

/// The loaded libraries, by name.
#[derive(Default)]
pub struct Libraries(Mutex<BTreeMap<String, Library>>);

fn err(s: impl Into<String>) -> CmdError {
    CmdError::msg(s.into())
}

/// A name Redis accepts for a library or a function.
fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The library's name from its `#!<engine> name=<lib>` line.
fn metadata(code: &[u8]) -> CmdResult<String> {
    let Some(rest) = code.strip_prefix(b"#!") else {
        return Err(err("ERR Missing library metadata"));
    };
    let line = rest.split(|&c| c == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or_default();
    if !engine.eq_ignore_ascii_case(b"lua") {
        return Err(err(format!(
            "ERR Engine '{}' not found",
            lossy(engine, 128)
        )));
    }
    let mut name = None;
    for p in parts {
        match p.strip_prefix(b"name=") {
            Some(_) if name.is_some() => {
                return Err(err(
                    "ERR Invalid metadata value, name argument was given multiple times",
                ));
            }
            Some(n) => name = Some(n),
            None => {
                return Err(err(format!(
                    "ERR Invalid metadata value given: {}",
                    lossy(p, 128)
                )));
            }
        }
    }
    let Some(name) = name else {
        return Err(err("ERR Library name was not given"));
    };
    if !valid_name(name) {
        return Err(err(format!("ERR {BAD_NAME}")));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// An error of `register_function`'s arguments, as Redis words it.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse(s: &str) -> mlua::Error {
    mlua::Error::external(Refused(format!("ERR {s}")))
}

/// One `register_function` call's function, checked as Redis checks it.
fn registration(args: &Variadic<Value>) -> mlua::Result<Function> {
    let (name, callback, flags, description) = match &args[..] {
        [Value::Table(t)] => {
            let mut name = None;
            let mut callback = None;
            let mut flags = None;
            let mut description = None;
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key = match &k {
                    Value::String(s) => s.to_str().map(|s| s.to_string()).unwrap_or_default(),
                    _ => String::new(),
                };
                match key.as_str() {
                    "function_name" => name = Some(v),
                    "callback" => callback = Some(v),
                    "flags" => flags = Some(v),
                    "description" => description = Some(v),
                    _ => return Err(refuse("unknown argument given to redis.register_function")),
                }
            }
            let Some(name) = name else {
                return Err(refuse(
                    "redis.register_function must get a function name argument",
                ));
            };
            let Some(callback) = callback else {
                return Err(refuse(
                    "redis.register_function must get a callback argument",
                ));
            };
            (name, callback, flags, description)
        }
        [_] => {
            return Err(refuse(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            ));
        }
        [name, callback] => (name.clone(), callback.clone(), None, None),
        _ => {
            return Err(refuse(
                "wrong number of arguments to redis.register_function",
            ));
        }
    };
    let Value::String(name) = name else {
        return Err(refuse(
            "first argument to redis.register_function must be a string",
        ));
    };
    if !matches!(callback, Value::Function(_)) {
        return Err(refuse(
            "second argument to redis.register_function must be a function",
        ));
    }
    let name = name.as_bytes().to_vec();
    if !valid_name(&name) {
        return Err(refuse(BAD_NAME));
    }
    let mut got = Vec::new();
    match flags {
        None | Some(Value::Nil) => {}
        Some(Value::Table(t)) => {
            for f in t.sequence_values::<Value>() {
                let flag = match f? {
                    Value::String(s) => s.as_bytes().to_vec(),
                    _ => return Err(refuse("unknown flag given")),
                };
                match FLAGS.iter().find(|k| k.as_bytes() == flag.as_slice()) {
                    Some(k) => got.push(*k),
                    None => return Err(refuse("unknown flag given")),
                }
            }
        }
        Some(_) => {
            return Err(refuse(
                "flags argument to redis.register_function must be a table representing function flags",
            ));
        }
    }
    let description = match description {
        None | Some(Value::Nil) => None,
        Some(Value::String(s)) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        Some(_) => {
            return Err(refuse(
                "description argument given to redis.register_function must be a string",
            ));
        }
    };
    Ok(Function {
        name: String::from_utf8_lossy(&name).into_owned(),
        description,
        flags: got,
    })
}

/// Loads a library's code once to learn its functions, with Redis's errors.
fn learn(code: &[u8]) -> CmdResult<Vec<Function>> {
    let fail = |e: mlua::Error| err(format!("ERR Error registering functions: {}", text_of(&e)));
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )
    .map_err(|e| err(format!("ERR cannot start Lua: {e}")))?;
    let _ = lua.set_memory_limit(64 * 1024 * 1024);
    let (env, set_api, guard): (Table, mlua::Function, mlua::Function) = lua
        .load(SANDBOX)
        .set_name("=sandbox")
        .call(())
        .map_err(|e| err(format!("ERR cannot start Lua: {e}")))?;
    let found = std::sync::Arc::new(Mutex::new(Vec::<Function>::new()));
    let collected = found.clone();
    let register = lua
        .create_function(move |_, args: Variadic<Value>| {
            let f = registration(&args)?;
            let mut list = collected.lock().map_err(|_| refuse("internal error"))?;
            if list.iter().any(|g| g.name == f.name) {
                return Err(refuse("Function already exists in the library"));
            }
            list.push(f);
            Ok(())
        })
        .map_err(fail)?;
    let api = loading_api(&lua, register, &guard).map_err(fail)?;
    set_api.call::<()>(api).map_err(fail)?;
    let chunk = lua
        .load(as_chunk(code))
        .set_name("@user_function")
        .set_environment(env)
        .into_function()
        .map_err(|e| {
            let msg = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            err(format!("ERR Error compiling function: {msg}"))
        })?;
    // A library's top level only registers; Redis stops it after 500 ms.
    let started = std::time::Instant::now();
    lua.set_hook(
        mlua::HookTriggers::new().every_nth_instruction(10_000),
        move |_, _| {
            if started.elapsed() > LOAD_TIME_LIMIT {
                return Err(mlua::Error::external(Refused(
                    "ERR FUNCTION LOAD timeout".into(),
                )));
            }
            Ok(mlua::VmState::Continue)
        },
    )
    .map_err(fail)?;
    chunk.call::<()>(()).map_err(fail)?;
    let functions = found.lock().map(|l| l.clone()).unwrap_or_default();
    if functions.is_empty() {
        return Err(err("ERR No functions registered"));
    }
    Ok(functions)
}

/// A Lua error's text as Redis quotes it inside its own: `ERR <message>`,
/// the message with its position.
fn text_of(e: &mlua::Error) -> String {
    if let Some(Refused(t)) = e.chain().find_map(|c| c.downcast_ref::<Refused>()) {
        return t.clone();
    }
    let msg = match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    let msg = msg.split("\nstack traceback:").next().unwrap_or_default();
    format!("ERR {msg}")
}

impl Libraries {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Library>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a library (replacing one of its name when `replace`).
    fn load(&self, code: Bytes, replace: bool) -> CmdResult<String> {
        let name = metadata(&code)?;
        let functions = learn(&code)?;
        let mut libs = self.lock();
        if libs.contains_key(&name) && !replace {
            return Err(err(format!("ERR Library '{name}' already exists")));
        }
        for f in &functions {
            let taken = libs.iter().any(|(l, lib)| {
                *l != name
                    && lib
                        .functions
                        .iter()
                        .any(|g| g.name.eq_ignore_ascii_case(&f.name))
            });
            if taken {
                return Err(err(format!("ERR Function {} already exists", f.name)));
            }
        }
        libs.insert(name.clone(), Library { code, functions });
        Ok(name)
    }

    /// Every library's code, for snapshots.
    pub(super) fn codes(&self) -> Vec<Bytes> {
        self.lock().values().map(|l| l.code.clone()).collect()
    }

    /// Loads a library from a snapshot (replacing one of its name).
    pub(super) fn load_code(&self, code: Bytes) -> CmdResult<String> {
        self.load(code, true)
    }

    /// The library holding function `name` (whatever its case, as Redis
    /// finds functions), with the function's name as registered and flags.
    fn find(&self, name: &[u8]) -> Option<(Bytes, String, Vec<&'static str>)> {
        self.lock().values().find_map(|lib| {
            lib.functions
                .iter()
                .find(|f| f.name.as_bytes().eq_ignore_ascii_case(name))
                .map(|f| (lib.code.clone(), f.name.clone(), f.flags.clone()))
        })
    }
}

/// FCALL and FCALL_RO.
pub fn fcall(mem: &Memory, c: &Command) -> Reply {
    let a = &c.args;
    // Redis looks the function up before it reads the key count.
    let Some((code, registered, flags)) = mem.functions.find(&a[1]) else {
        return Reply::error("ERR Function not found");
    };
    let n = match parse_i64(&a[2]) {
        None => return Reply::error("ERR Bad number of keys provided"),
        Some(n) if n < 0 => return Reply::error("ERR Number of keys can't be negative"),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= a.len() - 3 => n,
            _ => return Reply::error("ERR Number of keys can't be greater than number of args"),
        },
    };
    let no_writes = flags.contains(&"no-writes");
    if c.spec.name == "fcall_ro" && !no_writes {
        return Reply::error("ERR Can not execute a script with write flag using *_ro command.");
    }
    let name = registered;
    run_lua(
        mem,
        Target::Function {
            name: &name,
            code: &code,
        },
        c,
        n,
        no_writes,
    )
}

/// FUNCTION and its subcommands.
pub fn function(mem: &Memory, a: &[Bytes]) -> CmdResult {
    let sub = subcommand(
        a,
        "FUNCTION",
        &[
            ("LOAD", 3, false),
            ("DELETE", 3, true),
            ("FLUSH", 2, false),
            ("LIST", 2, false),
            ("DUMP", 2, true),
            ("RESTORE", 3, false),
            ("STATS", 2, true),
            ("KILL", 2, true),
            ("HELP", 2, true),
        ],
    )?;
    let libs = &mem.functions;
    match sub.as_str() {
        "LOAD" => {
            // Options, then the code last, as Redis reads them.
            let Some((code, options)) = a[2..].split_last() else {
                return Err(CmdError::WrongArity("function|load".into()));
            };
            let mut replace = false;
            for o in options {
                if !is(o, "REPLACE") {
                    return Err(err(format!("ERR Unknown option given: {}", lossy(o, 128))));
                }
                replace = true;
            }
            libs.load(code.clone(), replace)
                .map(|n| Reply::bulk_str(&n))
        }
        "DELETE" => match libs.lock().remove(&*String::from_utf8_lossy(&a[2])) {
            Some(_) => Ok(Reply::ok()),
            None => Err(err("ERR Library not found")),
        },
        "FLUSH" => match &a[2..] {
            [] => {
                libs.lock().clear();
                Ok(Reply::ok())
            }
            [m] if is(m, "ASYNC") || is(m, "SYNC") => {
                libs.lock().clear();
                Ok(Reply::ok())
            }
            [_] => Err(err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")),
            _ => Err(CmdError::SubcommandSyntax {
                cmd: "FUNCTION".into(),
                sub: lossy(&a[1], 128),
            }),
        },
        "LIST" => list(libs, &a[2..]),
        "DUMP" => {
            let code: Vec<Bytes> = libs.lock().values().map(|l| l.code.clone()).collect();
            Ok(Reply::Bulk(rdb::dump_functions(&code)))
        }
        "RESTORE" => restore(libs, &a[2..]),
        "STATS" => {
            let l = libs.lock();
            let s = |v: &str| Reply::bulk_str(v);
            let functions: usize = l.values().map(|lib| lib.functions.len()).sum();
            Ok(Reply::Map(vec![
                (s("running_script"), Reply::Nil),
                (
                    s("engines"),
                    Reply::Map(vec![(
                        s("LUA"),
                        Reply::Map(vec![
                            (s("libraries_count"), Reply::Int(l.len() as i64)),
                            (s("functions_count"), Reply::Int(functions as i64)),
                        ]),
                    )]),
                ),
            ]))
        }
        // A function holds the store until it ends: none runs while a
        // client can ask.
        "KILL" => Err(err("NOTBUSY No scripts in execution right now.")),
        _ => Ok(Reply::help(&[
            "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LOAD [REPLACE] <FUNCTION CODE>",
            "DELETE <LIBRARY NAME>",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "FLUSH [ASYNC|SYNC]",
            "DUMP",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "STATS",
            "KILL",
            "HELP",
        ])),
    }
}

fn list(libs: &Libraries, opts: &[Bytes]) -> CmdResult {
    let mut code = false;
    let mut pattern = None;
    let mut i = 0;
    while let Some(o) = opts.get(i) {
        if is(o, "WITHCODE") && !code {
            code = true;
        } else if is(o, "LIBRARYNAME") && pattern.is_none() {
            i += 1;
            pattern = Some(
                opts.get(i)
                    .ok_or_else(|| err("ERR library name argument was not given"))?,
            );
        } else {
            return Err(err(format!("ERR Unknown argument {}", lossy(o, 128))));
        }
        i += 1;
    }
    let s = |v: &str| Reply::bulk_str(v);
    let libs = libs.lock();
    let out = libs
        .iter()
        .filter(|(name, _)| pattern.is_none_or(|p| glob_match(p, name.as_bytes())))
        .map(|(name, lib)| {
            let functions = lib
                .functions
                .iter()
                .map(|f| {
                    Reply::Map(vec![
                        (s("name"), s(&f.name)),
                        (
                            s("description"),
                            f.description.clone().map_or(Reply::Nil, Reply::Bulk),
                        ),
                        (
                            s("flags"),
                            // Status replies, as Redis gives them.
                            Reply::Set(
                                f.flags
                                    .iter()
                                    .map(|f| Reply::Status(Bytes::from_static(f.as_bytes())))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (s("library_name"), s(name)),
                (s("engine"), s("LUA")),
                (s("functions"), Reply::Array(functions)),
            ];
            if code {
                fields.push((s("library_code"), Reply::Bulk(lib.code.clone())));
            }
            Reply::Map(fields)
        })
        .collect();
    Ok(Reply::Array(out))
}

fn restore(libs: &Libraries, a: &[Bytes]) -> CmdResult {
    let policy = match a.get(1) {
        None => "APPEND".to_string(),
        Some(p) if a.len() == 2 => upper(p),
        Some(_) => return Err(CmdError::WrongArity("function|restore".into())),
    };
    if !matches!(policy.as_str(), "APPEND" | "REPLACE" | "FLUSH") {
        return Err(err(
            "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
        ));
    }
    let codes = rdb::restore_functions(&a[0])
        .ok_or_else(|| err("ERR DUMP payload version or checksum are wrong"))?;
    // Every library is checked before any is kept, as Redis does.
    let mut staged = BTreeMap::new();
    for code in codes {
        let name = metadata(&code)?;
        let functions = learn(&code)?;
        staged.insert(name, Library { code, functions });
    }
    let mut current = libs.lock();
    let mut next = if policy == "FLUSH" {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for (name, lib) in staged {
        if next.contains_key(&name) && policy == "APPEND" {
            return Err(err(format!("ERR Library {name} already exists")));
        }
        for f in &lib.functions {
            let taken = next
                .iter()
                .any(|(l, other)| *l != name && other.functions.iter().any(|g| g.name == f.name));
            if taken {
                return Err(err(format!("ERR Function {} already exists", f.name)));
            }
        }
        next.insert(name, lib);
    }
    *current = next;
    Ok(Reply::ok())
}

/// The commands this module answers; None for any other.
pub fn run(mem: &Memory, c: &Command) -> Option<Reply> {
    match c.spec.name {
        "fcall" | "fcall_ro" => Some(fcall(mem, c)),
        "function" => Some(function(mem, &c.args).unwrap_or_else(Reply::from)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_as_redis_reads_it() {
        assert_eq!(metadata(b"#!lua name=mylib\nx").unwrap(), "mylib");
        assert_eq!(metadata(b"#!LUA name=a_1").unwrap(), "a_1");
        let e = |c: &[u8]| metadata(c).unwrap_err().to_string();
        assert_eq!(e(b"return 1"), "ERR Missing library metadata");
        assert_eq!(e(b"#!lua\nx"), "ERR Library name was not given");
        assert_eq!(e(b"#!js name=a\n"), "ERR Engine 'js' not found");
        assert_eq!(
            e(b"#!lua name=a foo=bar\n"),
            "ERR Invalid metadata value given: foo=bar"
        );
        assert!(e(b"#!lua name=a-b\n").starts_with("ERR Library names can only"));
    }
}
