//! The `bit` library Redis gives scripts (LuaBitOp): 32-bit operations on
//! Lua numbers, with LuaBitOp's rounding and argument errors.

use mlua::{Lua, Table, Value, Variadic};

/// A number as LuaBitOp sees it: rounded to an integer (ties to even,
/// as adding 2^52 + 2^51 does), then its low 32 bits, signed.
fn tobit(n: f64) -> i32 {
    let r = n.round_ties_even();
    (r.rem_euclid(4_294_967_296.0) as u64 as u32) as i32
}

/// Argument `i` (from 1) of `name` as a number, or Lua's error for it.
fn arg(lua: &Lua, name: &str, i: usize, v: Option<&Value>) -> mlua::Result<i32> {
    let n = match v {
        Some(Value::Integer(n)) => Some(*n as f64),
        Some(Value::Number(n)) => Some(*n),
        Some(v @ Value::String(_)) => lua.coerce_number(v.clone()).ok().flatten(),
        _ => None,
    };
    n.map(tobit).ok_or_else(|| {
        let got = v.map_or("no value", |v| v.type_name());
        mlua::Error::RuntimeError(format!(
            "bad argument #{i} to '{name}' (number expected, got {got})"
        ))
    })
}

type Unary = fn(i32) -> i32;
type Fold = fn(i32, i32) -> i32;
type Shift = fn(i32, u32) -> i32;

/// The `bit` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    // Functions of one argument.
    let unary: [(&str, Unary); 3] = [
        ("tobit", |x| x),
        ("bnot", |x| !x),
        ("bswap", |x| x.swap_bytes()),
    ];
    for (name, f) in unary {
        t.set(
            name,
            lua.create_function(move |lua, a: Variadic<Value>| {
                Ok(f(arg(lua, name, 1, a.first())?) as f64)
            })?,
        )?;
    }
    // Functions of any number of arguments, folded.
    let folds: [(&str, Fold); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, f) in folds {
        t.set(
            name,
            lua.create_function(move |lua, a: Variadic<Value>| {
                let mut acc = arg(lua, name, 1, a.first())?;
                for (i, v) in a.iter().enumerate().skip(1) {
                    acc = f(acc, arg(lua, name, i + 1, Some(v))?);
                }
                Ok(acc as f64)
            })?,
        )?;
    }
    // Shifts and rotations: the count's low five bits.
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |x, n| ((x as u32) << n) as i32),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ];
    for (name, f) in shifts {
        t.set(
            name,
            lua.create_function(move |lua, a: Variadic<Value>| {
                let x = arg(lua, name, 1, a.first())?;
                let n = arg(lua, name, 2, a.get(1))? as u32 & 31;
                Ok(f(x, n) as f64)
            })?,
        )?;
    }
    t.set(
        "tohex",
        lua.create_function(|lua, a: Variadic<Value>| {
            let x = arg(lua, "tohex", 1, a.first())? as u32;
            // Only an absent count defaults; an explicit nil is an error.
            let n = match a.get(1) {
                None => 8,
                v => arg(lua, "tohex", 2, v)?,
            };
            let digits = n.unsigned_abs().min(8) as usize;
            let hex = if n < 0 {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(hex[8 - digits..].to_string())
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_32_bit_integers_as_luabitop_makes_them() {
        assert_eq!(tobit(4_294_967_295.0), -1);
        assert_eq!(tobit(4_294_967_301.0), 5);
        assert_eq!(tobit(1.9), 2);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(-256.0), -256);
    }
}
