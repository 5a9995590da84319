//! The `cjson` library Redis gives scripts: `cjson.encode`, `cjson.decode`
//! and `cjson.null`, with lua-cjson's output and error texts (numbers as
//! `%.14g`, `/` escaped, sparse arrays refused, "Expected ... but found ...
//! at character N").

use mlua::{LightUserData, Lua, Table, Value};

/// Nesting lua-cjson allows, both ways.
const MAX_DEPTH: usize = 1000;

/// The `cjson` table.
pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            encode(lua, &v, 0, &mut out).map_err(|e| located(lua, e))?;
            lua.create_string(&out)
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, v: Value| {
            let s = super::luaargs::check_string(lua, &v, 1, "decode")?;
            let bytes = s.as_bytes();
            // lua-cjson's check: JSON text starts with ASCII, so a NUL in
            // the first two bytes means UTF-16 or UTF-32.
            if bytes.len() >= 2 && (bytes[0] == 0 || bytes[1] == 0) {
                return Err(located(
                    lua,
                    "JSON parser does not support UTF-16 or UTF-32".into(),
                ));
            }
            let mut p = Parser {
                s: &bytes,
                at: 0,
                lua,
            };
            p.document().map_err(|e| located(lua, e))
        })?,
    )?;
    // lua-cjson's switch for reusing its encode buffer: output is the
    // same either way, so only the setting is kept, and its argument
    // checked as lua-cjson checks it.
    let keep = std::cell::Cell::new(true);
    t.set(
        "encode_keep_buffer",
        lua.create_function(move |lua, v: Value| {
            match &v {
                Value::Nil => {}
                Value::Boolean(b) => keep.set(*b),
                other => {
                    let s = super::luaargs::check_string(lua, other, 1, "encode_keep_buffer")?;
                    match &s.as_bytes()[..] {
                        b"on" => keep.set(true),
                        b"off" => keep.set(false),
                        opt => {
                            return Err(located(
                                lua,
                                format!(
                                    "bad argument #1 to 'encode_keep_buffer' (invalid option '{}')",
                                    String::from_utf8_lossy(opt)
                                ),
                            ));
                        }
                    }
                }
            }
            Ok(keep.get())
        })?,
    )?;
    t.set("null", null())?;
    Ok(t)
}

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// An error raised where the script called the library, as Lua names
/// places ("user_script:LINE: ...").
fn located(lua: &Lua, msg: String) -> mlua::Error {
    let line = lua.inspect_stack(1, |d| d.current_line()).flatten();
    mlua::Error::RuntimeError(format!("user_script:{}: {msg}", line.unwrap_or(1)))
}

/// A number as lua-cjson prints it: `%.14g`, which is Lua's own tostring.
fn g14(lua: &Lua, n: f64) -> Result<String, String> {
    match lua.coerce_string(Value::Number(n)) {
        Ok(Some(s)) => Ok(s.to_string_lossy()),
        _ => Err("Cannot serialise number".into()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn number(lua: &Lua, n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(g14(lua, n)?.as_bytes());
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x20 || b == 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn encode(lua: &Lua, v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => number(lua, *n as f64, out)?,
        Value::Number(n) => number(lua, *n, out)?,
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                ));
            }
            table(lua, t, depth + 1, out)?;
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(other)
            ));
        }
    }
    Ok(())
}

/// The array length lua-cjson sees: Some(n) when every key is a positive
/// integer and the array is not too sparse, None for an object.
fn array_len(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let n = match k {
            Value::Integer(n) if n >= 1 => n as f64,
            Value::Number(n) if n >= 1.0 && n.floor() == n => n,
            _ => return Ok(None),
        };
        max = max.max(n as usize);
        items += 1;
    }
    if max > 10 && max > items * 2 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok((max > 0).then_some(max))
}

fn table(lua: &Lua, t: &Table, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(n) = array_len(t)? {
        out.push(b'[');
        for i in 1..=n {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            encode(lua, &v, depth, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        if !first {
            out.push(b',');
        }
        first = false;
        match &k {
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Integer(n) => string(g14(lua, *n as f64)?.as_bytes(), out),
            Value::Number(n) => string(g14(lua, *n)?.as_bytes(), out),
            other => {
                return Err(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    type_name(other)
                ));
            }
        }
        out.push(b':');
        encode(lua, &v, depth, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON token, named as lua-cjson names them in errors.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Number,
    Boolean,
    Null,
    Colon,
    Comma,
    End,
}

impl Token {
    fn name(self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str => "T_STRING",
            Token::Number => "T_NUMBER",
            Token::Boolean => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    lua: &'a Lua,
}

/// A token, where it starts, and its value when it has one.
type Lexed = (Token, usize, Value);
/// Input that is no token: what it is and where, for the caller to say
/// what it expected there.
type Bad = (&'static str, usize);

impl Parser<'_> {
    /// The next token, or the error naming what was `expected` instead.
    fn expect(&mut self, expected: &str) -> Result<Lexed, String> {
        self.next().map_err(|(what, at)| found(expected, what, at))
    }

    fn document(&mut self) -> Result<Value, String> {
        let first = self.expect("value")?;
        let v = self.value(first, 1)?;
        let (t, at, _) = self.expect("the end")?;
        if t != Token::End {
            return Err(found("the end", t.name(), at));
        }
        Ok(v)
    }

    fn value(&mut self, (t, at, v): Lexed, depth: usize) -> Result<Value, String> {
        match t {
            Token::Str | Token::Number | Token::Boolean | Token::Null => Ok(v),
            Token::ObjBegin | Token::ArrBegin if depth > MAX_DEPTH => Err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                at + 1
            )),
            Token::ObjBegin => self.object(depth),
            Token::ArrBegin => self.array(depth),
            other => Err(found("value", other.name(), at)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        let mut next = self.expect("object key string")?;
        if next.0 == Token::ObjEnd {
            return Ok(Value::Table(t));
        }
        loop {
            let (kt, kat, key) = next;
            if kt != Token::Str {
                return Err(found("object key string", kt.name(), kat));
            }
            let (ct, cat, _) = self.expect("colon")?;
            if ct != Token::Colon {
                return Err(found("colon", ct.name(), cat));
            }
            let first = self.expect("value")?;
            let v = self.value(first, depth + 1)?;
            t.raw_set(key, v).map_err(|e| e.to_string())?;
            let (st, sat, _) = self.expect("comma or object end")?;
            match st {
                Token::ObjEnd => return Ok(Value::Table(t)),
                Token::Comma => next = self.expect("object key string")?,
                other => return Err(found("comma or object end", other.name(), sat)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        let mut next = self.expect("value")?;
        if next.0 == Token::ArrEnd {
            return Ok(Value::Table(t));
        }
        for i in 1.. {
            let v = self.value(next, depth + 1)?;
            t.raw_set(i, v).map_err(|e| e.to_string())?;
            let (st, sat, _) = self.expect("comma or array end")?;
            match st {
                Token::ArrEnd => break,
                Token::Comma => next = self.expect("value")?,
                other => return Err(found("comma or array end", other.name(), sat)),
            }
        }
        Ok(Value::Table(t))
    }

    /// The next token; input that is none is an error naming what it is.
    fn next(&mut self) -> Result<Lexed, Bad> {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
        let at = self.at;
        let Some(&c) = self.s.get(at) else {
            return Ok((Token::End, at, Value::Nil));
        };
        let punctuation = match c {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b':' => Some(Token::Colon),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(t) = punctuation {
            self.at += 1;
            return Ok((t, at, Value::Nil));
        }
        match c {
            b'"' => self.string(at),
            // Numbers are read as lua-cjson reads them (strtod, so "2-0"
            // is 2 then -0), and with its invalid numbers allowed: a
            // leading '+', inf, nan.
            b'-' | b'0'..=b'9' => self.number(at),
            b'+' | b'i' | b'I' | b'n' | b'N'
                if c == b'+'
                    || self.s[at..].len() >= 3
                        && (self.s[at..at + 3].eq_ignore_ascii_case(b"inf")
                            || self.s[at..at + 3].eq_ignore_ascii_case(b"nan")) =>
            {
                self.number(at)
            }
            _ => {
                for (word, t, v) in [
                    (&b"true"[..], Token::Boolean, Value::Boolean(true)),
                    (b"false", Token::Boolean, Value::Boolean(false)),
                    (b"null", Token::Null, null()),
                ] {
                    if self.s[at..].starts_with(word) {
                        self.at += word.len();
                        return Ok((t, at, v));
                    }
                }
                Err(("invalid token", at))
            }
        }
    }

    fn number(&mut self, at: usize) -> Result<Lexed, Bad> {
        let (n, len) =
            crate::wire::util::strtod_prefix(&self.s[at..]).ok_or(("invalid number", at))?;
        self.at = at + len;
        Ok((Token::Number, at, Value::Number(n)))
    }

    fn string(&mut self, at: usize) -> Result<Lexed, Bad> {
        let mut out = Vec::new();
        let mut i = at + 1;
        loop {
            let Some(&b) = self.s.get(i) else {
                return Err(("unexpected end of string", i));
            };
            i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escape = i - 1;
                    let Some(&e) = self.s.get(i) else {
                        return Err(("invalid escape code", escape));
                    };
                    i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self
                                .hex4(i)
                                .ok_or(("invalid unicode escape code", escape))?;
                            i += 4;
                            // A surrogate pair: the low half follows as \uXXXX.
                            if (0xd800..0xdc00).contains(&code)
                                && self.s.get(i..i + 2) == Some(b"\\u")
                            {
                                if let Some(low) =
                                    self.hex4(i + 2).filter(|l| (0xdc00..0xe000).contains(l))
                                {
                                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                                    i += 6;
                                }
                            }
                            let ch = char::from_u32(code)
                                .ok_or(("invalid unicode escape code", escape))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(("invalid escape code", escape)),
                    }
                }
                b => out.push(b),
            }
        }
        self.at = i;
        let s = self
            .lua
            .create_string(&out)
            .map_err(|_| ("string too long", at))?;
        Ok((Token::Str, at, Value::String(s)))
    }

    fn hex4(&self, i: usize) -> Option<u32> {
        let h = self.s.get(i..i + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }
}

fn found(expected: &str, what: &str, at: usize) -> String {
    format!(
        "Expected {expected} but found {what} at character {}",
        at + 1
    )
}
