//! The `cmsgpack` library Redis gives scripts (lua-cmsgpack 0.4):
//! `pack`, `unpack`, `unpack_one` and `unpack_limit`, with its choice of
//! encodings (the smallest integer form, float32 when exact, arrays only
//! for tables keyed 1..n without holes) and its error texts.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

/// Tables nested deeper than this are packed as nil, as lua-cmsgpack does.
const MAX_NESTING: usize = 16;

/// The `cmsgpack` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(mlua::Error::RuntimeError(
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)".into(),
                ));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                pack(v, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, v: Value| {
            let s = super::luaargs::check_string(lua, &v, 1, "unpack")?;
            unpack(lua, &s.as_bytes(), 0, 0)
        })?,
    )?;
    t.set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::LuaString, Option<i64>)| {
            unpack(lua, &s.as_bytes(), 1, offset.unwrap_or(0))
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
                unpack(lua, &s.as_bytes(), limit, offset.unwrap_or(0))
            },
        )?,
    )?;
    Ok(t)
}

fn int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        match n {
            0..=127 => out.push(n as u8),
            128..=0xff => out.extend([0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend((n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend((n as u64).to_be_bytes());
            }
        }
    } else {
        match n {
            -32..=-1 => out.push(n as i8 as u8),
            -128..=-33 => out.extend([0xd0, n as i8 as u8]),
            -32768..=-129 => {
                out.push(0xd1);
                out.extend((n as i16).to_be_bytes());
            }
            -2_147_483_648..=-32769 => {
                out.push(0xd2);
                out.extend((n as i32).to_be_bytes());
            }
            _ => {
                out.push(0xd3);
                out.extend(n.to_be_bytes());
            }
        }
    }
}

fn number(n: f64, out: &mut Vec<u8>) {
    // An integer in i64's range (2^63 is not: C's cast does not round-trip).
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) && n.trunc() == n {
        return int(n as i64, out);
    }
    let f = n as f32;
    if f as f64 == n || n.is_nan() {
        out.push(0xca);
        out.extend(f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend(n.to_be_bytes());
    }
}

fn sized(len: usize, fix: u8, fix_max: usize, wide: [u8; 3], out: &mut Vec<u8>) {
    // wide: the 8-, 16- and 32-bit length markers (0 where there is none).
    if len <= fix_max {
        out.push(fix | len as u8);
    } else if len <= 0xff && wide[0] != 0 {
        out.extend([wide[0], len as u8]);
    } else if len <= 0xffff {
        out.push(wide[1]);
        out.extend((len as u16).to_be_bytes());
    } else {
        out.push(wide[2]);
        out.extend((len as u32).to_be_bytes());
    }
}

fn pack(v: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => int(*n, out),
        Value::Number(n) => number(*n, out),
        Value::String(s) => {
            let b = s.as_bytes();
            sized(b.len(), 0xa0, 31, [0xd9, 0xda, 0xdb], out);
            out.extend_from_slice(&b);
        }
        Value::Table(t) if depth < MAX_NESTING => table(t, depth + 1, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

/// The array length lua-cmsgpack sees: the table's keys are exactly 1..n.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut count) = (0f64, 0f64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(n) => n as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if n <= 0.0 || n.floor() != n {
            return Ok(None);
        }
        max = f64::max(max, n);
        count += 1.0;
    }
    Ok((max == count).then_some(count as usize))
}

fn table(t: &Table, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if let Some(n) = array_len(t)? {
        sized(n, 0x90, 15, [0, 0xdc, 0xdd], out);
        for i in 1..=n {
            pack(&t.raw_get::<Value>(i)?, depth, out)?;
        }
        return Ok(());
    }
    let pairs: Vec<(Value, Value)> = t
        .clone()
        .pairs::<Value, Value>()
        .collect::<mlua::Result<_>>()?;
    sized(pairs.len(), 0x80, 15, [0, 0xde, 0xdf], out);
    for (k, v) in &pairs {
        pack(k, depth, out)?;
        pack(v, depth, out)?;
    }
    Ok(())
}

/// Why input could not be decoded.
enum Bad {
    Missing,
    Format,
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        let b = self.s.get(self.at..self.at + n).ok_or(Bad::Missing)?;
        self.at += n;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    fn value(&mut self, lua: &Lua) -> Result<Value, Bad> {
        let c = self.take(1)?[0];
        let string = |r: &mut Self, n: usize| -> Result<Value, Bad> {
            let b = r.take(n)?;
            lua.create_string(b)
                .map(Value::String)
                .map_err(|_| Bad::Format)
        };
        Ok(match c {
            0x00..=0x7f => Value::Number(c as f64),
            0x80..=0x8f => self.map(lua, (c & 0x0f) as usize)?,
            0x90..=0x9f => self.array(lua, (c & 0x0f) as usize)?,
            0xa0..=0xbf => string(self, (c & 0x1f) as usize)?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xd9 => {
                let n = self.be(1)? as usize;
                string(self, n)?
            }
            0xda => {
                let n = self.be(2)? as usize;
                string(self, n)?
            }
            0xdb => {
                let n = self.be(4)? as usize;
                string(self, n)?
            }
            0xca => Value::Number(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Value::Number(f64::from_bits(self.be(8)?)),
            0xcc => Value::Number(self.be(1)? as f64),
            0xcd => Value::Number(self.be(2)? as f64),
            0xce => Value::Number(self.be(4)? as f64),
            0xcf => Value::Number(self.be(8)? as f64),
            0xd0 => Value::Number(self.be(1)? as u8 as i8 as f64),
            0xd1 => Value::Number(self.be(2)? as u16 as i16 as f64),
            0xd2 => Value::Number(self.be(4)? as u32 as i32 as f64),
            0xd3 => Value::Number(self.be(8)? as i64 as f64),
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(lua, n)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(lua, n)?
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map(lua, n)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(lua, n)?
            }
            0xe0..=0xff => Value::Number(c as i8 as f64),
            _ => return Err(Bad::Format),
        })
    }

    fn array(&mut self, lua: &Lua, n: usize) -> Result<Value, Bad> {
        let t = lua.create_table().map_err(|_| Bad::Format)?;
        for i in 1..=n {
            let v = self.value(lua)?;
            t.raw_set(i, v).map_err(|_| Bad::Format)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize) -> Result<Value, Bad> {
        let t = lua.create_table().map_err(|_| Bad::Format)?;
        for _ in 0..n {
            let k = self.value(lua)?;
            let v = self.value(lua)?;
            // Lua tables take no nil key.
            if !k.is_nil() {
                t.raw_set(k, v).map_err(|_| Bad::Format)?;
            }
        }
        Ok(Value::Table(t))
    }
}

/// lua-cmsgpack's `mp_unpack_full`: up to `limit` values from `offset`
/// (all with both 0); unless asked for all from the start, the offset of
/// what is left (-1 when nothing is) comes first.
fn unpack(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    if offset < 0 || limit < 0 {
        // lua-cmsgpack prints the input's length as the limit.
        return Err(mlua::Error::RuntimeError(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            s.len()
        )));
    }
    let all = limit == 0 && offset == 0;
    if offset as usize > s.len() {
        return Err(mlua::Error::RuntimeError(format!(
            "Start offset {offset} greater than input length {}.",
            s.len()
        )));
    }
    let mut r = Reader {
        s,
        at: offset as usize,
    };
    let mut values = Vec::new();
    while r.at < s.len() && (all || (values.len() as i64) < limit) {
        match r.value(lua) {
            Ok(v) => values.push(v),
            Err(Bad::Missing) => {
                return Err(mlua::Error::RuntimeError("Missing bytes in input.".into()));
            }
            Err(Bad::Format) => {
                return Err(mlua::Error::RuntimeError(
                    "Bad data format in input.".into(),
                ));
            }
        }
    }
    if !all {
        let next = if r.at >= s.len() { -1 } else { r.at as i64 };
        values.insert(0, Value::Integer(next));
    }
    Ok(MultiValue::from_iter(values))
}
