//! Whole-keyspace commands, fanned out to every namespace and merged:
//! KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHDB, FLUSHALL and PUBSUB (channels
//! are named like keys); and SCRIPT, sent to every backend that runs
//! scripts.
//!
//! Each namespace is asked only about its own part of its backend (keys
//! starting with its scope), keys are mapped back to the client's names, and
//! a key is reported only by the namespace the router gives it to, so a key
//! is never listed twice when namespaces share a backend. Flushing deletes
//! only keys keyway owns.
//!
//! A SCAN cursor holds the namespace index in its top 16 bits and that
//! namespace backend's own cursor in the low 48.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::Command;
use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{self, CommandSpec};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::merge::exists_everywhere;
use crate::wire::reply::Reply;
use crate::wire::scan::{parse_scan, scan_parts, scan_reply};
use crate::wire::util::{bytes, glob_escape, glob_match, is, random_below};

const NS_SHIFT: u32 = 48;
const INNER_MASK: u64 = (1 << NS_SHIFT) - 1;
/// Keys asked for per SCAN step when keyway walks a namespace itself.
const WALK_COUNT: &str = "1000";

/// What of the keyspace a client may see: its user's keys and channels
/// (see `server::acl`). Whole-keyspace commands list, count and flush only
/// that.
pub trait Visible: Sync {
    /// Whether any of the namespace's keys (or channels) may be.
    fn namespace(&self, ns: &Namespace, channels: bool) -> bool;
    /// Whether every one is (then none is checked one by one).
    fn whole(&self, ns: &Namespace, channels: bool) -> bool;
    /// Whether `name`, of `ns`, is.
    fn name(&self, ns: &Namespace, name: &[u8], channels: bool) -> bool;
}

/// Everything is visible.
pub struct Everything;

impl Visible for Everything {
    fn namespace(&self, _: &Namespace, _: bool) -> bool {
        true
    }
    fn whole(&self, _: &Namespace, _: bool) -> bool {
        true
    }
    fn name(&self, _: &Namespace, _: &[u8], _: bool) -> bool {
        true
    }
}

/// Runs one whole-keyspace command, over what `view` shows.
/// `db` is the client's database; FLUSHALL empties databases
/// `0..databases`.
pub async fn execute(
    router: &Router,
    spec: &CommandSpec,
    args: &[Bytes],
    view: &dyn Visible,
    db: u8,
    databases: u16,
) -> Reply {
    let r = match spec.name {
        "keys" => keys(router, &args[1], view, db).await,
        "scan" => scan(router, args, view, db).await,
        "dbsize" => dbsize(router, view, db).await,
        "randomkey" => randomkey(router, view, db).await,
        "flushdb" => flush(router, args, view, db..=db).await,
        // Databases past 255 cannot be selected (Command::db is a u8).
        "flushall" => {
            flush(
                router,
                args,
                view,
                0..=u8::try_from(databases - 1).unwrap_or(u8::MAX),
            )
            .await
        }
        "swapdb" => swapdb(router, args, view, databases).await,
        "script" => script(router, args).await,
        "function" => function(router, args).await,
        "pubsub" => pubsub(router, args, view).await,
        "save" => save(router, args, view, false).await,
        "bgsave" => save(router, args, view, true).await,
        _ => Err(CmdError::msg(format!(
            "ERR '{}' is not a keyspace command",
            spec.name
        ))),
    };
    r.unwrap_or_else(Reply::from)
}

/// SAVE and BGSAVE [SCHEDULE]: a snapshot of each backend whose
/// namespaces the client sees whole: keyway's own for a memory backend
/// with `snapshot`, the server's for a Redis server a namespace has to
/// itself (a shared server is another application's to save).
async fn save(router: &Router, args: &[Bytes], view: &dyn Visible, background: bool) -> CmdResult {
    match &args[1..] {
        [] => {}
        [s] if background && is(s, "SCHEDULE") => {}
        _ => return Err(CmdError::Syntax),
    }
    let mut seen: Vec<&Arc<dyn crate::backend::Backend>> = Vec::new();
    let mut reply = None;
    for ns in router.namespaces.iter().filter(|ns| view.whole(ns, false)) {
        if seen.iter().any(|b| Arc::ptr_eq(b, &ns.backend)) {
            continue;
        }
        seen.push(&ns.backend);
        match ns.backend.save(background) {
            Some(Ok(text)) => reply = Some(text),
            Some(Err(e)) => return Err(CmdError::msg(e)),
            None if ns.owns_backend && ns.backend.kind() == "redis" => {
                let name = if background { "bgsave" } else { "save" };
                match call(ns, name, args.to_vec()).await? {
                    Reply::Status(s) => reply = Some(String::from_utf8_lossy(&s).into_owned()),
                    other => return Ok(other),
                }
            }
            None => {}
        }
    }
    let text = reply.ok_or_else(|| {
        CmdError::msg(
            "ERR no backend here keeps a snapshot: give a memory backend `snapshot = \"path\"` (a Redis server shared by several namespaces saves by its own configuration)",
        )
    })?;
    Ok(Reply::Status(Bytes::from(text)))
}

/// Sends one internal command to a namespace's backend.
async fn call(ns: &Namespace, name: &str, args: Vec<Bytes>) -> CmdResult {
    call_in(ns, name, args, 0).await
}

/// Sends one internal command to a namespace's backend, in database `db`.
async fn call_in(ns: &Namespace, name: &str, args: Vec<Bytes>, db: u8) -> CmdResult {
    let spec = command::known(name);
    if !ns.backend.supports(spec) {
        return Err(CmdError::Unsupported {
            command: name.to_uppercase(),
            namespace: ns.name.clone(),
            backend: ns.backend.kind().into(),
        });
    }
    if db != 0 && !ns.backend.databases() {
        return Err(CmdError::NoDatabases {
            db,
            backend: ns.backend.kind().into(),
        });
    }
    let reply = ns
        .backend
        .execute(vec![Command {
            db,
            ..Command::internal(spec, args)
        }])
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| Reply::error("ERR backend returned no reply"));
    match reply {
        Reply::Error(e) => Err(CmdError::msg(String::from_utf8_lossy(&e))),
        r => Ok(r),
    }
}

fn bulk_items(r: Reply) -> Vec<Bytes> {
    match r {
        Reply::Array(items) | Reply::Set(items) => items
            .into_iter()
            .filter_map(|i| {
                if let Reply::Bulk(b) = i {
                    Some(b)
                } else {
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Maps backend keys to client keys, keeping those the router gives to `ns`.
fn owned(router: &Router, ns: &Arc<Namespace>, keys: Vec<Bytes>) -> Vec<Bytes> {
    keys.into_iter()
        .filter(|k| ns.foreign_owner(k).is_none())
        .filter_map(|k| ns.from_backend(&k))
        .filter(|k| router.route(k).is_some_and(|o| Arc::ptr_eq(o, ns)))
        .collect()
}

/// The backend pattern selecting a namespace's keys, and whether it already
/// applies the client's pattern (only when keys are not rewritten).
pub(crate) fn backend_pattern(ns: &Namespace, client: Option<&Bytes>) -> (Bytes, bool) {
    let scope = ns.scope();
    match client {
        Some(p) if scope.is_empty() && !ns.rewrites() => (p.clone(), true),
        _ if scope.is_empty() => (bytes("*"), client.is_none()),
        _ => {
            let mut p = glob_escape(&scope);
            p.push(b'*');
            (Bytes::from(p), client.is_none())
        }
    }
}

async fn keys(router: &Router, pattern: &Bytes, view: &dyn Visible, db: u8) -> CmdResult {
    let client = (&pattern[..] != b"*").then_some(pattern);
    let mut out = Vec::new();
    for ns in router
        .namespaces
        .iter()
        .filter(|ns| view.namespace(ns, false) && listed(ns, db) && reachable(ns, client))
    {
        let (bp, applied) = backend_pattern(ns, client);
        let found = bulk_items(call_in(ns, "keys", vec![bytes("KEYS"), bp], db).await?);
        out.extend(
            owned(router, ns, found)
                .into_iter()
                .filter(|k| applied || glob_match(pattern, k))
                .filter(|k| view.name(ns, k, false))
                .map(Reply::Bulk),
        );
    }
    Ok(Reply::Array(out))
}

/// Whether SCAN, KEYS, DBSIZE and RANDOMKEY can list the namespace's keys:
/// a backend that cannot enumerate them (memcached) is left out, as
/// README's Limits says, rather than failing the whole keyspace.
pub fn enumerable(ns: &Namespace) -> bool {
    ns.backend.supports(command::known("scan"))
}

/// Whether the namespace's keys in database `db` can be listed: a backend
/// without databases has none past 0.
fn listed(ns: &Namespace, db: u8) -> bool {
    enumerable(ns) && (db == 0 || ns.backend.databases())
}

/// Whether a key matching `pattern` can belong to `ns`: the pattern's
/// literal start and the namespace's prefix must agree as far as both go.
fn reachable(ns: &Namespace, pattern: Option<&Bytes>) -> bool {
    let Some(p) = pattern else {
        return true;
    };
    let end = p
        .iter()
        .position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(p.len());
    let literal = &p[..end];
    let n = literal.len().min(ns.prefix.len());
    literal[..n] == ns.prefix[..n]
}

/// SCAN over the namespaces in turn: the cursor's top bits say which. A
/// namespace whose scan ends with room left in COUNT hands over to the
/// next in the same call; namespaces the client may not see, that cannot
/// be listed, or that MATCH cannot reach are stepped over.
async fn scan(router: &Router, args: &[Bytes], view: &dyn Visible, db: u8) -> CmdResult {
    let sa = parse_scan(args, 1, true)?;
    let pattern = sa.pattern.as_ref();
    let wanted =
        |ns: &Namespace| view.namespace(ns, false) && listed(ns, db) && reachable(ns, pattern);
    let mut index = (sa.cursor >> NS_SHIFT) as usize;
    let mut cursor = sa.cursor & INNER_MASK;
    let mut keys = Vec::new();
    loop {
        while router.namespaces.get(index).is_some_and(|ns| !wanted(ns)) {
            index += 1;
            cursor = 0;
        }
        let Some(ns) = router.namespaces.get(index) else {
            return Ok(scan_reply(0, keys));
        };
        let (bp, applied) = backend_pattern(ns, pattern);
        let mut sub = vec![
            bytes("SCAN"),
            bytes(&cursor.to_string()),
            bytes("MATCH"),
            bp,
            bytes("COUNT"),
            bytes(&sa.count.to_string()),
        ];
        if let Some(t) = &sa.type_ {
            sub.extend([bytes("TYPE"), t.clone()]);
        }
        let Some((inner, found)) = scan_parts(call_in(ns, "scan", sub, db).await?) else {
            return Err(CmdError::msg("ERR unexpected SCAN reply from backend"));
        };
        if inner > INNER_MASK {
            return Err(CmdError::msg(format!(
                "ERR backend of namespace '{}' returned a SCAN cursor keyway cannot encode",
                ns.name
            )));
        }
        keys.extend(
            owned(router, ns, bulk_items(found))
                .into_iter()
                .filter(|k| applied || pattern.is_none_or(|p| glob_match(p, k)))
                .filter(|k| view.name(ns, k, false))
                .map(Reply::Bulk),
        );
        if inner != 0 {
            return Ok(scan_reply(((index as u64) << NS_SHIFT) | inner, keys));
        }
        // This namespace is done: the next one, now if COUNT has room.
        index += 1;
        cursor = 0;
        if keys.len() >= sa.count {
            let more = router.namespaces[index..].iter().any(|ns| wanted(ns));
            let next = if more { (index as u64) << NS_SHIFT } else { 0 };
            return Ok(scan_reply(next, keys));
        }
    }
}

/// Every key of a namespace, as (client key, backend key), walking its
/// backend with SCAN so that a large backend is never blocked by KEYS.
async fn walk(router: &Router, ns: &Arc<Namespace>, db: u8) -> CmdResult<Vec<(Bytes, Bytes)>> {
    let (bp, _) = backend_pattern(ns, None);
    let mut cursor = bytes("0");
    let mut out = Vec::new();
    loop {
        let sub = vec![
            bytes("SCAN"),
            cursor,
            bytes("MATCH"),
            bp.clone(),
            bytes("COUNT"),
            bytes(WALK_COUNT),
        ];
        let Reply::Array(mut parts) = call_in(ns, "scan", sub, db).await? else {
            return Err(CmdError::msg("ERR unexpected SCAN reply from backend"));
        };
        let found = parts.pop().map(bulk_items).unwrap_or_default();
        for k in found {
            if ns.foreign_owner(&k).is_some() {
                continue;
            }
            if let Some(client) = ns.from_backend(&k) {
                if router.route(&client).is_some_and(|o| Arc::ptr_eq(o, ns)) {
                    out.push((client, k));
                }
            }
        }
        cursor = match parts.pop() {
            Some(Reply::Bulk(c)) if &c[..] != b"0" => c,
            _ => return Ok(out),
        };
    }
}

async fn dbsize(router: &Router, view: &dyn Visible, db: u8) -> CmdResult {
    let mut total = 0;
    for ns in router
        .namespaces
        .iter()
        .filter(|ns| view.namespace(ns, false) && listed(ns, db))
    {
        total += if view.whole(ns, false) {
            size_in(router, ns, db).await?
        } else {
            let keys = walk(router, ns, db).await?;
            keys.iter().filter(|(k, _)| view.name(ns, k, false)).count() as i64
        };
    }
    Ok(Reply::Int(total))
}

/// How many keys a namespace holds.
pub async fn namespace_size(router: &Router, ns: &Arc<Namespace>) -> CmdResult<i64> {
    size_in(router, ns, 0).await
}

async fn size_in(router: &Router, ns: &Arc<Namespace>, db: u8) -> CmdResult<i64> {
    if ns.owns_backend {
        return match call_in(ns, "dbsize", vec![bytes("DBSIZE")], db).await? {
            Reply::Int(n) => Ok(n),
            _ => Err(CmdError::msg("ERR unexpected DBSIZE reply from backend")),
        };
    }
    Ok(walk(router, ns, db).await?.len() as i64)
}

/// A namespace's keys with a TTL and their average remaining TTL in ms, as
/// INFO keyspace gives them, when its backend can tell: a namespace that
/// owns its backend, whose own INFO keyspace has a database line with
/// exactly the `keys` DBSIZE counted (on a Redis server, the database the
/// backend selected). None otherwise.
pub async fn namespace_expiry(ns: &Namespace, keys: i64) -> Option<(u64, u64)> {
    if keys == 0 {
        return Some((0, 0));
    }
    if !ns.owns_backend {
        return None;
    }
    let args = vec![bytes("INFO"), bytes("keyspace")];
    let text = match call(ns, "info", args).await.ok()? {
        Reply::Bulk(b) | Reply::Verbatim(b) => b,
        _ => return None,
    };
    let mut found = None;
    for line in String::from_utf8_lossy(&text).lines() {
        let Some((db, fields)) = line.split_once(':') else {
            continue;
        };
        if !db.starts_with("db") {
            continue;
        }
        let field = |name: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
        };
        if field("keys") != Some(keys as u64) {
            continue;
        }
        if found.is_some() {
            // Two databases with as many keys: which is ours is unknown.
            return None;
        }
        found = Some((field("expires")?, field("avg_ttl")?));
    }
    found
}

async fn randomkey(router: &Router, view: &dyn Visible, db: u8) -> CmdResult {
    let n = router.namespaces.len();
    if n == 0 {
        return Ok(Reply::Nil);
    }
    let start = random_below(n as u64) as usize;
    for i in 0..n {
        let ns = &router.namespaces[(start + i) % n];
        if !view.namespace(ns, false) || !listed(ns, db) {
            continue;
        }
        if !view.whole(ns, false) {
            let keys: Vec<_> = walk(router, ns, db)
                .await?
                .into_iter()
                .filter(|(k, _)| view.name(ns, k, false))
                .collect();
            if !keys.is_empty() {
                let pick = random_below(keys.len() as u64) as usize;
                return Ok(Reply::Bulk(keys[pick].0.clone()));
            }
        } else if ns.owns_backend {
            if let Reply::Bulk(k) = call_in(ns, "randomkey", vec![bytes("RANDOMKEY")], db).await? {
                if let Some(k) = owned(router, ns, vec![k]).pop() {
                    return Ok(Reply::Bulk(k));
                }
            }
        } else {
            let keys = walk(router, ns, db).await?;
            if !keys.is_empty() {
                let pick = random_below(keys.len() as u64) as usize;
                return Ok(Reply::Bulk(keys[pick].0.clone()));
            }
        }
    }
    Ok(Reply::Nil)
}

/// PUBSUB as each namespace sees its part of its backend's channels:
/// CHANNELS lists the channels keyway's namespaces own, under the client's
/// names (never another application's on a shared server), NUMSUB counts
/// the backend's subscribers of each channel a namespace owns (0 for
/// others), NUMPAT adds up the backends'. Anything else (HELP, wrong
/// arguments) is the first backend's answer.
async fn pubsub(router: &Router, args: &[Bytes], view: &dyn Visible) -> CmdResult {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let shard = sub.starts_with(b"SHARD");
    let name = || if shard { &sub[5..] } else { &sub[..] };
    let with_pubsub = || {
        router
            .namespaces
            .iter()
            .filter(|ns| ns.backend.supports(command::known("pubsub")))
    };
    let seen = |ns: &Namespace| view.namespace(ns, true);
    match (name(), args.len()) {
        (b"CHANNELS", 2 | 3) => {
            let client = args.get(2).filter(|p| &p[..] != b"*");
            let mut out = Vec::new();
            for ns in with_pubsub().filter(|ns| seen(ns)) {
                let (bp, applied) = backend_pattern(ns, client);
                let found = call(ns, "pubsub", vec![bytes("PUBSUB"), args[1].clone(), bp]).await?;
                out.extend(
                    owned(router, ns, bulk_items(found))
                        .into_iter()
                        .filter(|c| applied || client.is_none_or(|p| glob_match(p, c)))
                        .filter(|c| view.name(ns, c, true)),
                );
            }
            out.sort_unstable();
            out.dedup();
            Ok(Reply::Array(out.into_iter().map(Reply::Bulk).collect()))
        }
        (b"NUMSUB", _) => {
            let mut out = Vec::with_capacity(args.len().saturating_sub(2).saturating_mul(2));
            for ch in &args[2..] {
                let mut n = 0;
                if let Some(ns) = router.route(ch) {
                    let asked = vec![bytes("PUBSUB"), args[1].clone(), ns.to_backend(ch)];
                    if let Reply::Array(r) = call(ns, "pubsub", asked).await? {
                        if let Some(Reply::Int(c)) = r.get(1) {
                            n = *c;
                        }
                    }
                }
                out.push(Reply::Bulk(ch.clone()));
                out.push(Reply::Int(n));
            }
            Ok(Reply::Array(out))
        }
        (b"NUMPAT", 2) if !shard => {
            let mut seen: Vec<&Arc<dyn crate::backend::Backend>> = Vec::new();
            let mut total = 0i64;
            for ns in with_pubsub() {
                if seen.iter().any(|b| Arc::ptr_eq(b, &ns.backend)) {
                    continue;
                }
                seen.push(&ns.backend);
                if let Reply::Int(n) = call(ns, "pubsub", args.to_vec()).await? {
                    total = total.saturating_add(n);
                }
            }
            Ok(Reply::Int(total))
        }
        _ => match with_pubsub().next() {
            Some(ns) => call(ns, "pubsub", args.to_vec())
                .await
                .or_else(|e| Ok(e.into())),
            None => Err(CmdError::msg("ERR no namespace's backend has Pub/Sub")),
        },
    }
}

async fn flush(
    router: &Router,
    args: &[Bytes],
    view: &dyn Visible,
    dbs: std::ops::RangeInclusive<u8>,
) -> CmdResult {
    match &args[1..] {
        [] => {}
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(CmdError::Syntax),
    }
    let visible = || {
        router
            .namespaces
            .iter()
            .filter(|ns| view.namespace(ns, false))
    };
    // Nothing is flushed if any namespace may not be written.
    if let Some(ns) = visible().find(|ns| ns.read_only) {
        return Ok(crate::proxy::dispatch::read_only(ns));
    }
    for (ns, db) in visible().flat_map(|ns| dbs.clone().map(move |db| (ns, db))) {
        if db != 0 && !ns.backend.databases() {
            continue;
        }
        if ns.owns_backend && view.whole(ns, false) {
            call_in(ns, "flushdb", vec![bytes("FLUSHDB")], db).await?;
            continue;
        }
        if !ns.backend.supports(command::known("scan")) {
            return Err(CmdError::msg(format!(
                "ERR '{}' cannot flush namespace '{}': it shares its {} backend or rewrites its keys, and that backend cannot list keys",
                String::from_utf8_lossy(&args[0]).to_uppercase(),
                ns.name,
                ns.backend.kind()
            )));
        }
        let mut keys = walk(router, ns, db).await?;
        keys.retain(|(k, _)| view.name(ns, k, false));
        for chunk in keys.chunks(1000) {
            let mut del = vec![bytes("DEL")];
            del.extend(chunk.iter().map(|(_, backend_key)| backend_key.clone()));
            call_in(ns, "del", del, db).await?;
        }
    }
    Ok(Reply::ok())
}

/// SCRIPT goes to every backend that runs scripts, once each however many
/// namespaces share it, so that EVALSHA finds a loaded script whichever
/// backend its keys live on. LOAD answers the (same) digest, EXISTS a 1 only
/// where every backend has the script, KILL OK where any backend was
/// running one; other subcommands (FLUSH, HELP, unknown ones) answer as the
/// first backend does, after all have run them.
async fn script(router: &Router, args: &[Bytes]) -> CmdResult {
    let eval = command::known("eval");
    let mut targets: Vec<&Arc<Namespace>> = Vec::new();
    for ns in &router.namespaces {
        if ns.backend.supports(eval) && !targets.iter().any(|t| t.backend_name == ns.backend_name) {
            targets.push(ns);
        }
    }
    if targets.is_empty() {
        return Err(CmdError::msg(
            "ERR 'SCRIPT' needs a backend that runs scripts (memory, redis); no namespace has one",
        ));
    }
    let mut replies = Vec::with_capacity(targets.len());
    for ns in targets {
        replies.push(call(ns, "script", args.to_vec()).await);
    }
    let sub = &args[1];
    if is(sub, "KILL") {
        if replies.iter().any(Result::is_ok) {
            return Ok(Reply::ok());
        }
        return replies.swap_remove(0);
    }
    if is(sub, "EXISTS") {
        return exists_everywhere(replies);
    }
    // Any failure wins: a script that did not load everywhere must say so.
    let first_error = replies.iter().position(Result::is_err);
    replies.swap_remove(first_error.unwrap_or(0))
}

/// FUNCTION manages libraries on every backend that runs them, once per
/// backend, as SCRIPT does, so that FCALL finds a library whichever backend
/// its keys live on. A shared server where scripts are refused (namespaces
/// told apart only by key prefixes) is left alone: a library there would be
/// every tenant's. Reads (LIST, DUMP, STATS, HELP) answer as the first
/// backend does; KILL is OK where any backend was running a function;
/// changes (LOAD, DELETE, FLUSH, RESTORE) run everywhere and the first
/// failure wins.
async fn function(router: &Router, args: &[Bytes]) -> CmdResult {
    let fcall = command::known("fcall");
    let mut targets: Vec<&Arc<Namespace>> = Vec::new();
    for ns in &router.namespaces {
        if ns.backend.supports(fcall)
            && ns.scripts_refused.is_none()
            && !targets.iter().any(|t| t.backend_name == ns.backend_name)
        {
            targets.push(ns);
        }
    }
    if targets.is_empty() {
        return Err(CmdError::msg(
            "ERR 'FUNCTION' needs a backend that runs functions (memory, redis) with scripts allowed; no namespace has one",
        ));
    }
    let sub = &args[1];
    let reads = ["LIST", "DUMP", "STATS", "HELP"];
    if reads.iter().any(|r| is(sub, r)) {
        return call(targets[0], "function", args.to_vec()).await;
    }
    let mut replies = Vec::with_capacity(targets.len());
    for ns in targets {
        replies.push(call(ns, "function", args.to_vec()).await);
    }
    if is(sub, "KILL") {
        if replies.iter().any(Result::is_ok) {
            return Ok(Reply::ok());
        }
        return replies.swap_remove(0);
    }
    let first_error = replies.iter().position(Result::is_err);
    replies.swap_remove(first_error.unwrap_or(0))
}

/// SWAPDB exchanges two whole databases, which only a namespace alone on
/// its backend may do: on a shared backend it would move other
/// namespaces' keys too. It runs on every backend with databases that the
/// client's namespaces own whole.
async fn swapdb(router: &Router, args: &[Bytes], view: &dyn Visible, databases: u16) -> CmdResult {
    // Both read before either is checked against the range, as Redis.
    let read = |arg: &[u8], msg| {
        crate::wire::util::range_arg(arg, i64::from(i32::MIN), i64::from(i32::MAX), Some(msg))
    };
    let pair = [
        read(&args[1], "invalid first DB index")?,
        read(&args[2], "invalid second DB index")?,
    ];
    if pair.iter().any(|n| !(0..i64::from(databases)).contains(n)) {
        return Err(CmdError::msg("ERR DB index is out of range"));
    }
    let mut done: Vec<&str> = Vec::new();
    for ns in router
        .namespaces
        .iter()
        .filter(|ns| view.namespace(ns, true))
    {
        if !ns.backend.databases() || done.contains(&ns.backend_name.as_str()) {
            continue;
        }
        if !ns.owns_backend || ns.rewrites() || !view.whole(ns, true) {
            return Err(CmdError::msg(format!(
                "ERR SWAPDB would move other namespaces' keys: namespace '{}' shares its {} backend",
                ns.name,
                ns.backend.kind()
            )));
        }
        if ns.read_only {
            return Ok(crate::proxy::dispatch::read_only(ns));
        }
        done.push(&ns.backend_name);
    }
    for ns in &router.namespaces {
        if done.contains(&ns.backend_name.as_str()) {
            call(ns, "swapdb", args.to_vec()).await?;
            done.retain(|b| *b != ns.backend_name.as_str());
        }
    }
    Ok(Reply::ok())
}
