//! What redis-server 7.0.15 says of each command keyway knows, in
//! COMMAND INFO (flags, key specifications, tips, subcommands) and COMMAND
//! DOCS (summary, since, group, arguments), from `data/commands.resp`
//! (written by scripts/command-docs.py): clients read key positions and
//! flags from the first, and redis-cli's `help` from the second.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::wire::reply::Reply;

static DATA: &[u8] = include_bytes!("data/commands.resp");

pub struct Docs {
    /// COMMAND INFO's entry for each command, by name.
    pub info: HashMap<String, Reply>,
    /// COMMAND DOCS's entry (the map after the name), by name.
    pub docs: HashMap<String, Reply>,
}

fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) | Reply::Status(b) => Some(String::from_utf8_lossy(b).to_lowercase()),
        _ => None,
    }
}

/// The two replies, read once.
pub fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut at = 0;
        let mut next = || parse(DATA, &mut at);
        let mut info = HashMap::new();
        if let Some(Reply::Array(entries)) = next() {
            for e in entries {
                if let Some(name) = match &e {
                    Reply::Array(f) => f.first().and_then(text),
                    _ => None,
                } {
                    info.insert(name, e);
                }
            }
        }
        let mut docs = HashMap::new();
        if let Some(Reply::Map(pairs)) = next() {
            for (k, v) in pairs {
                if let Some(name) = text(&k) {
                    docs.insert(name, v);
                }
            }
        }
        let (i, d) = keyway_entry();
        info.insert("keyway".into(), i);
        docs.insert("keyway".into(), d);
        Docs { info, docs }
    })
}

/// COMMAND INFO and DOCS of KEYWAY, keyway's own command (see
/// `admin::migration`), in the shape redis-server gives its own.
fn keyway_entry() -> (Reply, Reply) {
    let s = |t: &str| Reply::Status(Bytes::copy_from_slice(t.as_bytes()));
    let b = |t: &str| Reply::Bulk(Bytes::copy_from_slice(t.as_bytes()));
    let info = Reply::Array(vec![
        b("keyway"),
        Reply::Int(-2),
        Reply::Set(vec![s("admin"), s("noscript")]),
        Reply::Int(0),
        Reply::Int(0),
        Reply::Int(0),
        Reply::Set(vec![s("@admin"), s("@slow"), s("@dangerous")]),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ]);
    let docs = Reply::Map(vec![
        (
            b("summary"),
            b("Moves a namespace with its data: backfill, verify, status, stop (keyway's own)"),
        ),
        (b("since"), b("0.1.0")),
        (b("group"), b("server")),
        (
            b("complexity"),
            b("O(1) to start; the task runs in the background"),
        ),
        (
            b("arguments"),
            Reply::Array(vec![Reply::Map(vec![
                (b("name"), b("subcommand")),
                (b("type"), b("string")),
            ])]),
        ),
    ]);
    (info, docs)
}

/// One RESP3 value of the data file at `*at` (the types Redis uses in
/// these two replies); None past its end or on anything else.
fn parse(data: &[u8], at: &mut usize) -> Option<Reply> {
    let rest = data.get(*at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let (kind, line) = (rest[0], std::str::from_utf8(&rest[1..end]).ok()?);
    *at += end + 2;
    let n = |line: &str| line.parse::<i64>().ok();
    let items = |count: i64, at: &mut usize| -> Option<Vec<Reply>> {
        (0..count).map(|_| parse(data, at)).collect()
    };
    Some(match kind {
        b'+' => Reply::Status(Bytes::copy_from_slice(line.as_bytes())),
        b':' => Reply::Int(n(line)?),
        b'_' => Reply::Nil,
        b'$' => {
            let len = usize::try_from(n(line)?).ok()?;
            let body = data.get(*at..*at + len)?;
            *at += len + 2;
            Reply::Bulk(Bytes::copy_from_slice(body))
        }
        b'*' => Reply::Array(items(n(line)?, at)?),
        b'~' => Reply::Set(items(n(line)?, at)?),
        b'%' => {
            let flat = items(n(line)? * 2, at)?;
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        _ => return None,
    })
}

/// The flags of the key specification the `i`th key (at `position` of
/// `args`) falls under: the spec that begins at its index, or after its
/// keyword (SORT's STORE), else the other specs in order, the last
/// covering the rest, as commands list their keys in their specs' order.
pub fn key_flags(name: &str, args: &[Bytes], position: usize, i: usize) -> Vec<Reply> {
    // Keys whose flags Redis's own key finders set: SORT's and
    // GEORADIUS's STORE keys, and the `variable_flags` of SET and
    // BITFIELD, which depend on their options.
    let flags = |f: &[&'static str]| -> Vec<Reply> {
        f.iter()
            .map(|s| Reply::Status(Bytes::from_static(s.as_bytes())))
            .collect()
    };
    let has = |word: &[u8]| args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(word));
    let before = position.checked_sub(1).and_then(|p| args.get(p));
    match name {
        "sort" | "georadius" | "georadiusbymember"
            if before.is_some_and(|b| {
                b.eq_ignore_ascii_case(b"STORE") || b.eq_ignore_ascii_case(b"STOREDIST")
            }) =>
        {
            return flags(&["OW", "update"]);
        }
        "set" if has(b"GET") => return flags(&["RW", "access", "update"]),
        "set" => return flags(&["OW", "update"]),
        "bitfield" if !has(b"SET") && !has(b"INCRBY") => return flags(&["RO", "access"]),
        "bitfield" => return flags(&["RW", "access", "update"]),
        _ => {}
    }
    let Some(Reply::Array(fields)) = docs().info.get(name) else {
        return Vec::new();
    };
    let Some(Reply::Array(specs) | Reply::Set(specs)) = fields.get(8) else {
        return Vec::new();
    };
    let field = |spec: &Reply, key: &str| -> Option<Reply> {
        let Reply::Map(pairs) = spec else { return None };
        pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .map(|(_, v)| v.clone())
    };
    // (type, spec) of a key spec's begin_search.
    let search = |spec: &Reply| -> Option<(String, Vec<(Reply, Reply)>)> {
        let Some(Reply::Map(search)) = field(spec, "begin_search") else {
            return None;
        };
        let get = |key: &str| search.iter().find(|(k, _)| text(k).as_deref() == Some(key));
        let kind = text(&get("type")?.1)?;
        match &get("spec")?.1 {
            Reply::Map(m) => Some((kind, m.clone())),
            _ => None,
        }
    };
    let value = |m: &[(Reply, Reply)], key: &str| {
        m.iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let begins_here = |spec: &Reply| match search(spec) {
        Some((kind, m)) if kind == "index" => {
            matches!(value(&m, "index"), Some(Reply::Int(n)) if usize::try_from(n).ok() == Some(position))
        }
        Some((kind, m)) if kind == "keyword" => {
            let word = value(&m, "keyword").as_ref().and_then(text);
            let before = position.checked_sub(1).and_then(|p| args.get(p));
            matches!((word, before), (Some(w), Some(b)) if b.eq_ignore_ascii_case(w.as_bytes()))
        }
        _ => false,
    };
    let ordered: Vec<&Reply> = specs
        .iter()
        .filter(|s| search(s).is_some_and(|(kind, _)| kind != "unknown"))
        .collect();
    let chosen = specs
        .iter()
        .find(|s| begins_here(s))
        .or_else(|| ordered.get(i.min(ordered.len().saturating_sub(1))).copied());
    match chosen.and_then(|s| field(s, "flags")) {
        Some(Reply::Set(f) | Reply::Array(f)) => f,
        _ => Vec::new(),
    }
}

/// A name as a reply, for DOCS's map.
pub fn name(n: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(n.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_keyway_knows_has_its_info_and_docs() {
        let d = docs();
        for c in crate::wire::command::table() {
            assert!(d.info.contains_key(c.name), "info of {}", c.name);
            assert!(d.docs.contains_key(c.name), "docs of {}", c.name);
        }
        let args = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let flags = |cmd: &str, p: usize, i: usize| -> Vec<String> {
            let a = args(cmd);
            let name = cmd.split(' ').next().unwrap_or_default().to_lowercase();
            key_flags(&name, &a, p, i).iter().filter_map(text).collect()
        };
        assert_eq!(
            flags("LMOVE a b left left", 1, 0),
            ["rw", "access", "delete"]
        );
        assert_eq!(flags("LMOVE a b left left", 2, 1), ["rw", "insert"]);
        assert_eq!(flags("SORT k STORE d", 3, 1), ["ow", "update"]);
    }
}
