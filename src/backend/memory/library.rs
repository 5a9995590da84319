//! What a library of functions is made of, shared by FUNCTION LOAD (which
//! checks it, `functions`) and FCALL (which runs it, `scripting`): the
//! flags a function may take, the code as Lua compiles it, and the API a
//! library sees while it registers its functions.

use mlua::{Lua, Table, Value, Variadic};

use crate::wire::command;

/// Flags `register_function` takes, as Redis names them.
pub(super) const FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// The code as Lua compiles it: the metadata line made a comment, so that
/// line numbers stay those of the code given.
pub(super) fn as_chunk(code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(code.len() + 2);
    out.extend_from_slice(b"--");
    out.extend_from_slice(code);
    out
}

/// What a library sees while it loads: `redis` with `register_function`,
/// `log`, the log levels and the versions, read-only; any other name is
/// an error, as in Redis.
pub(super) fn loading_api(
    lua: &Lua,
    register: mlua::Function,
    guard: &mlua::Function,
) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.set("register_function", register)?;
    r.set("log", lua.create_function(|_, _: Variadic<Value>| Ok(()))?)?;
    for (i, level) in ["LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"]
        .iter()
        .enumerate()
    {
        r.set(*level, i)?;
    }
    r.set("REDIS_VERSION", command::REDIS_VERSION)?;
    r.set("REDIS_VERSION_NUM", command::REDIS_VERSION_NUM)?;
    let strict: mlua::Function = lua
        .load(
            "local t = ... return function(_, k) local v = rawget(t, k) \
             if v == nil then error(\"Script attempted to access nonexistent global variable '\" .. tostring(k) .. \"'\", 2) end \
             return v end",
        )
        .set_name("=api")
        .call(r.clone())?;
    let redis: Table = guard.call((r, strict))?;
    let api = lua.create_table()?;
    api.set("redis", redis)?;
    Ok(api)
}

/// Runs a library's code with only the loading API in sight (`redis` with
/// `register_function`, `log` and the versions) and returns its functions
/// by name. FUNCTION LOAD checked the code; here it only runs again.
pub(super) fn load_library(
    lua: &Lua,
    code: &[u8],
    set_api: &mlua::Function,
    guard: &mlua::Function,
) -> mlua::Result<Table> {
    let registered = lua.create_table()?;
    let collected = registered.clone();
    let register = lua.create_function(move |_, args: Variadic<Value>| {
        let (name, callback) = match &args[..] {
            [Value::Table(t)] => (
                t.get::<Value>("function_name")?,
                t.get::<Value>("callback")?,
            ),
            [name, callback] => (name.clone(), callback.clone()),
            _ => return Ok(()),
        };
        collected.set(name, callback)
    })?;
    let api = loading_api(lua, register, guard)?;
    set_api.call::<()>(api)?;
    let f = lua
        .load(as_chunk(code))
        .set_name("@user_function")
        .set_environment(lua.globals().get::<Table>("_G")?)
        .into_function()?;
    f.call::<()>(())?;
    Ok(registered)
}
