//! Arguments of the Lua libraries keyway provides (cjson, cmsgpack),
//! checked as Lua's C API checks them, with Lua's own texts.

use mlua::{Lua, Value};

/// An argument as Lua's luaL_checklstring takes it: a string, or a number
/// turned into one; anything else fails with Lua's own text.
pub fn check_string(lua: &Lua, v: &Value, arg: usize, func: &str) -> mlua::Result<mlua::LuaString> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v.clone())?
            .ok_or_else(|| mlua::Error::RuntimeError("number not convertible".into())),
        other => {
            let got = match other {
                Value::Nil => "nil",
                Value::Boolean(_) => "boolean",
                Value::Table(_) => "table",
                Value::Function(_) => "function",
                Value::Thread(_) => "thread",
                _ => "userdata",
            };
            Err(mlua::Error::RuntimeError(format!(
                "bad argument #{arg} to '{func}' (string expected, got {got})"
            )))
        }
    }
}
