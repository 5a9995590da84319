//! Replies crossing between Lua and RESP: what `redis.call` hands a
//! script (Redis's RESP2 conversion, or RESP3's after `redis.setresp(3)`)
//! and what a script's return value becomes. The second walks a table a
//! script built, which may be as deep as it likes or hold itself, so it
//! keeps its own stack instead of the thread's.

use bytes::{Bytes, BytesMut};
use mlua::{Lua, Table, Value};

use crate::wire::reply::Reply;

/// A status (`ok`) or error (`err`) as Lua holds it: a table with one field.
pub fn tagged(lua: &Lua, field: &str, text: &[u8]) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(field, lua.create_string(text)?)?;
    Ok(t)
}

/// A table with one field, as RESP3's types reach a script.
fn typed(lua: &Lua, field: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.set(field, v)?;
    Ok(Value::Table(t))
}

/// A reply as a script sees it: Redis's RESP2 conversion, or its RESP3
/// one after `redis.setresp(3)` (nil, booleans, and `map`, `set`, `double`
/// tables).
pub fn to_lua(lua: &Lua, r: Reply, resp3: bool) -> mlua::Result<Value> {
    if resp3 {
        match r {
            Reply::Nil | Reply::NilArray => return Ok(Value::Nil),
            Reply::Bool(b) => return Ok(Value::Boolean(b)),
            Reply::Double(d) => return typed(lua, "double", Value::Number(d)),
            Reply::Map(pairs) => {
                let t = lua.create_table_with_capacity(0, pairs.len())?;
                for (k, v) in pairs {
                    t.raw_set(to_lua(lua, k, true)?, to_lua(lua, v, true)?)?;
                }
                return typed(lua, "map", Value::Table(t));
            }
            Reply::Set(items) => {
                let t = lua.create_table_with_capacity(0, items.len())?;
                for m in items {
                    t.raw_set(to_lua(lua, m, true)?, true)?;
                }
                return typed(lua, "set", Value::Table(t));
            }
            Reply::Pairs(pairs) => {
                let t = lua.create_table_with_capacity(pairs.len(), 0)?;
                for (i, (k, v)) in pairs.into_iter().enumerate() {
                    let pair = lua.create_table_with_capacity(2, 0)?;
                    pair.raw_set(1, to_lua(lua, k, true)?)?;
                    pair.raw_set(2, to_lua(lua, v, true)?)?;
                    t.raw_set(i + 1, pair)?;
                }
                return Ok(Value::Table(t));
            }
            _ => {}
        }
    }
    Ok(match r {
        Reply::Int(n) => Value::Number(n as f64),
        Reply::Bulk(b) | Reply::Verbatim(b) => Value::String(lua.create_string(&b[..])?),
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Bool(b) => Value::Number(if b { 1.0 } else { 0.0 }),
        Reply::Double(d) => Value::String(lua.create_string(crate::wire::reply::format_double(d))?),
        Reply::Status(s) => Value::Table(tagged(lua, "ok", &s)?),
        Reply::Error(e) => Value::Table(tagged(lua, "err", &e)?),
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                t.set(i + 1, to_lua(lua, item, resp3)?)?;
            }
            Value::Table(t)
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (k, v)) in pairs.into_iter().enumerate() {
                t.set(2 * i + 1, to_lua(lua, k, resp3)?)?;
                t.set(2 * i + 2, to_lua(lua, v, resp3)?)?;
            }
            Value::Table(t)
        }
        Reply::Raw(b) => Value::String(lua.create_string(&b[..])?),
    })
}

/// How deep a script's reply may nest: where Redis's conversion runs out of
/// Lua stack, so that a table holding itself ends as Redis ends it.
const REPLY_DEPTH: usize = 7995;

/// Deeper than this, a reply is written out as RESP bytes as it is walked
/// rather than built as a tree, whose encoding and dropping recurse.
const TREE_DEPTH: usize = 64;

/// What a table becomes once its elements are converted.
#[derive(Clone, Copy)]
enum Shape {
    Array,
    Map,
    Set,
}

/// A value that is not a container, or the container it opens with its
/// elements (last first).
enum Step {
    Leaf(Reply),
    Open(Shape, Vec<Value>),
}

/// Where the walk puts what it finds.
trait Sink {
    fn leaf(&mut self, r: Reply);
    fn open(&mut self, shape: Shape, len: usize);
    fn close(&mut self);
}

/// Builds the reply as a tree.
#[derive(Default)]
struct Tree {
    open: Vec<(Shape, Vec<Reply>)>,
    done: Option<Reply>,
}

impl Sink for Tree {
    fn leaf(&mut self, r: Reply) {
        match self.open.last_mut() {
            Some((_, items)) => items.push(r),
            None => self.done = Some(r),
        }
    }
    fn open(&mut self, shape: Shape, len: usize) {
        self.open.push((shape, Vec::with_capacity(len)));
    }
    fn close(&mut self) {
        let Some((shape, items)) = self.open.pop() else {
            return;
        };
        let r = match shape {
            Shape::Array => Reply::Array(items),
            Shape::Set => Reply::Set(items),
            Shape::Map => {
                let mut it = items.into_iter();
                let mut pairs = Vec::with_capacity(it.len() / 2);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Reply::Map(pairs)
            }
        };
        self.leaf(r);
    }
}

/// Writes the reply in the client's protocol as it goes.
struct Wire {
    out: BytesMut,
    resp3: bool,
}

impl Sink for Wire {
    fn leaf(&mut self, r: Reply) {
        r.encode(self.resp3, &mut self.out);
    }
    fn open(&mut self, shape: Shape, len: usize) {
        let head = match (shape, self.resp3) {
            (Shape::Array, _) | (Shape::Set | Shape::Map, false) => '*',
            (Shape::Set, true) => '~',
            (Shape::Map, true) => '%',
        };
        // A map's elements are its keys and values, one after the other.
        let n = match (shape, self.resp3) {
            (Shape::Map, true) => len / 2,
            _ => len,
        };
        self.out
            .extend_from_slice(format!("{head}{n}\r\n").as_bytes());
    }
    fn close(&mut self) {}
}

/// A script's result as a reply (Redis's conversion): numbers truncate to
/// integers, false is nil (false after setresp(3)), true is 1 (true), a
/// table with `err` or `ok` is an error or status, with `map`, `set`,
/// `double` one of RESP3's types, any other table an array up to its first
/// nil. A reply nested deeper than [`TREE_DEPTH`] comes back as bytes in
/// the client's protocol (`client_resp3`).
pub fn from_lua(v: Value, resp3: bool, client_resp3: bool) -> Reply {
    let mut tree = Tree::default();
    if walk(v.clone(), resp3, &mut tree, TREE_DEPTH) {
        return tree.done.unwrap_or(Reply::Nil);
    }
    drop(tree);
    let mut wire = Wire {
        out: BytesMut::new(),
        resp3: client_resp3,
    };
    walk(v, resp3, &mut wire, REPLY_DEPTH);
    Reply::Raw(wire.out.freeze())
}

/// Walks `v` into `sink`, keeping its own stack; false if it nests deeper
/// than `limit` (then the sink holds part of it), unless the limit is
/// Redis's, where an error ends the branch as in Redis.
fn walk(v: Value, resp3: bool, sink: &mut dyn Sink, limit: usize) -> bool {
    let mut open: Vec<Vec<Value>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match step(v, resp3) {
                Step::Leaf(r) => sink.leaf(r),
                Step::Open(..) if open.len() >= REPLY_DEPTH => {
                    sink.leaf(Reply::error("ERR reached lua stack limit"));
                }
                Step::Open(..) if open.len() >= limit => return false,
                Step::Open(shape, pending) => {
                    sink.open(shape, pending.len());
                    open.push(pending);
                }
            }
        }
        loop {
            let Some(top) = open.last_mut() else {
                return true;
            };
            if let Some(v) = top.pop() {
                next = Some(v);
                break;
            }
            open.pop();
            sink.close();
        }
    }
}

fn step(v: Value, resp3: bool) -> Step {
    let leaf = match v {
        Value::Nil => Reply::Nil,
        Value::Boolean(b) if resp3 => Reply::Bool(b),
        Value::Boolean(false) => Reply::Nil,
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(n) => Reply::Int(n),
        // C's (long long) cast of a double, as Redis converts a number:
        // out of range (or NaN) it gives LLONG_MIN on the machines Redis
        // runs on, where Rust's cast would saturate.
        Value::Number(n)
            if n.is_nan()
                || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) =>
        {
            Reply::Int(i64::MIN)
        }
        Value::Number(n) => Reply::Int(n as i64),
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Table(t) => return table(t),
        _ => Reply::Nil,
    };
    Step::Leaf(leaf)
}

fn table(t: Table) -> Step {
    if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
        return Step::Leaf(Reply::error(e.to_string_lossy()));
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
        return Step::Leaf(Reply::Status(Bytes::copy_from_slice(&s.as_bytes())));
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return Step::Leaf(Reply::Double(d)),
        Ok(Value::Integer(d)) => return Step::Leaf(Reply::Double(d as f64)),
        _ => {}
    }
    let (shape, mut pending) = if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let flat = m
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .flat_map(|(k, v)| [k, v])
            .collect();
        (Shape::Map, flat)
    } else if let Ok(Value::Table(m)) = t.raw_get::<Value>("set") {
        let members = m
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        (Shape::Set, members)
    } else {
        let mut items = Vec::new();
        for i in 1.. {
            match t.raw_get::<Value>(i) {
                Ok(Value::Nil) | Err(_) => break,
                Ok(v) => items.push(v),
            }
        }
        (Shape::Array, items)
    };
    pending.reverse();
    Step::Open(shape, pending)
}
