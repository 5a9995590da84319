//! The differential fuzzer: the same random command stream goes to
//! keyway's memory backend and to a redis-server, and every reply that
//! differs is reported. Shared by `fuzz/src/bin/differential.rs` (long runs,
//! `scripts/fuzz.sh`) and `tests/fuzz_replay.rs` (a fixed seed in `cargo
//! test`).
//!
//! Commands come from the memory fuzz target's generator (`targets.rs`),
//! minus what cannot agree between two servers run side by side: random
//! picks (SPOP, SRANDMEMBER, RANDOMKEY...), cursors and encodings, idle
//! times and the clock, blocking waits. Replies that are sets are compared
//! as sets. What is left must agree byte for byte, error texts included.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::targets::{Input, memory_command, memory_commands};

/// A reply, parsed far enough to compare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Line(u8, Vec<u8>),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Line(t, l) => write!(f, "{}{}", *t as char, String::from_utf8_lossy(l)),
            Value::Bulk(None) | Value::Array(None) => write!(f, "(nil)"),
            Value::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
        }
    }
}

pub struct Conn(BufReader<TcpStream>);

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn(BufReader::new(s)))
    }

    pub async fn send(&mut self, args: &[Bytes]) -> std::io::Result<()> {
        let raw = keyway::wire::protocol::encode_multibulk(args);
        self.0.get_mut().write_all(&raw).await
    }

    pub async fn read(&mut self) -> std::io::Result<Value> {
        let mut line = Vec::new();
        self.0.read_until(b'\n', &mut line).await?;
        if line.len() < 3 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let body = line[1..line.len() - 2].to_vec();
        let n = || -> i64 { String::from_utf8_lossy(&body).parse().unwrap_or(-1) };
        Ok(match line[0] {
            b'$' if n() < 0 => Value::Bulk(None),
            b'$' => {
                let mut b = vec![0u8; n() as usize + 2];
                self.0.read_exact(&mut b).await?;
                b.truncate(b.len() - 2);
                Value::Bulk(Some(b))
            }
            b'*' if n() < 0 => Value::Array(None),
            b'*' => {
                let mut items = Vec::new();
                for _ in 0..n() {
                    items.push(Box::pin(self.read()).await?);
                }
                Value::Array(Some(items))
            }
            t => Value::Line(t, body),
        })
    }
}

/// Commands left out: their replies differ between any two servers.
const SKIPPED: &[&str] = &[
    "spop",
    "srandmember",
    "hrandfield",
    "zrandmember",
    "randomkey",
    "scan",
    "sscan",
    "hscan",
    "zscan",
    "object",
    "memory",
    "info",
    "xclaim",
    "xautoclaim",
    "xpending",
    "xinfo",
    // The same value in two encodings: Redis's listpacks, keyway's plain
    // ones (tests/memory_compat.rs moves payloads both ways instead).
    "dump",
    // Milliseconds of TTL race between the two servers.
    "pexpire",
    "pexpireat",
    "psetex",
    "pttl",
    "pexpiretime",
    // Lazy and active expiry run at their own times on each server.
    "dbsize",
    // Lua's own randomness and the two servers' script caches.
    "script",
    "evalsha",
    "evalsha_ro",
];

/// Replies compared as sets: Redis's order comes from its hash tables.
const UNORDERED: &[&str] = &[
    "smembers", "sinter", "sunion", "sdiff", "hkeys", "hvals", "keys",
];

/// One difference found.
#[derive(Debug)]
pub struct Diff {
    pub command: Vec<Bytes>,
    pub redis: Value,
    pub keyway: Value,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cmd: Vec<String> = self
            .command
            .iter()
            .map(|a| a.escape_ascii().to_string())
            .collect();
        write!(
            f,
            "{}\n    redis:  {}\n    keyway: {}",
            cmd.join(" "),
            self.redis,
            self.keyway
        )
    }
}

pub struct Report {
    pub sent: usize,
    pub diffs: Vec<Diff>,
    /// Differences by command name.
    pub by_command: BTreeMap<String, usize>,
}

/// A small, fast generator (SplitMix64) so that a seed names a run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn normalize(name: &str, args: &[Bytes], v: Value) -> Value {
    match v {
        Value::Array(Some(mut items)) if UNORDERED.contains(&name) => {
            items.sort();
            Value::Array(Some(items))
        }
        // HGETALL's pairs, as pairs, in any order.
        Value::Array(Some(items)) if name == "hgetall" => {
            let mut pairs: Vec<Value> = items
                .chunks(2)
                .map(|p| Value::Array(Some(p.to_vec())))
                .collect();
            pairs.sort();
            Value::Array(Some(pairs))
        }
        // SORT BY a pattern without '*' (nosort) over a set: the set's
        // own order.
        Value::Array(Some(mut items))
            if (name == "sort" || name == "sort_ro")
                && args
                    .windows(2)
                    .any(|w| w[0].eq_ignore_ascii_case(b"BY") && !w[1].contains(&b'*')) =>
        {
            items.sort();
            Value::Array(Some(items))
        }
        other => other,
    }
}

/// Whether two replies that differ as bytes still agree: what keyway does
/// as Redis 7.2 does (the oracle here is the machine's redis-server, 7.0),
/// and what the README lists as a deliberate difference.
fn agree(name: &str, redis: &Value, keyway: &Value) -> bool {
    match (redis, keyway) {
        // 7.2 checks BITCOUNT's and BITPOS's arguments before the key; 7.0
        // answers a missing key, or one of another type, first.
        (Value::Line(b':', n), Value::Line(b'-', _)) if name == "bitcount" || name == "bitpos" => {
            matches!(&n[..], b"0" | b"-1")
        }
        (Value::Line(b'-', r), Value::Line(b'-', _)) if name == "bitcount" || name == "bitpos" => {
            r.starts_with(b"WRONGTYPE")
        }
        // Client bytes quoted in an error are sent as UTF-8 (a byte that is
        // not becomes U+FFFD); Redis echoes them raw.
        (Value::Line(b'-', r), Value::Line(b'-', k)) => {
            String::from_utf8_lossy(r) == String::from_utf8_lossy(k)
        }
        // Doubles printed shortest (7.2), and INCRBYFLOAT in 64 bits where
        // Redis computes in 80: the same number.
        (Value::Bulk(Some(r)), Value::Bulk(Some(k))) => {
            let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<f64>().ok();
            matches!((num(r), num(k)), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(Some(r)), Value::Array(Some(k))) => {
            r.len() == k.len() && r.iter().zip(k).all(|(r, k)| r == k || agree(name, r, k))
        }

        _ => false,
    }
}

/// Makes a generated command one whose reply two servers agree on, or
/// None to skip it.
fn agreeable(mut args: Vec<Bytes>) -> Option<Vec<Bytes>> {
    let name = String::from_utf8_lossy(&args[0]).to_lowercase();
    if SKIPPED.contains(&name.as_str()) {
        return None;
    }
    // ZRANK and ZREVRANK take WITHSCORE since 7.2.
    if (name == "zrank" || name == "zrevrank") && args.len() > 3 {
        return None;
    }
    for a in args.iter_mut().skip(1) {
        // Millisecond expiries race; so do stream IDs made of the clock.
        if a.eq_ignore_ascii_case(b"PX") {
            *a = Bytes::from_static(b"EX");
        } else if a.eq_ignore_ascii_case(b"PXAT") {
            *a = Bytes::from_static(b"EXAT");
        }
    }
    // INCRBYFLOAT computes in 80 bits in Redis, 64 in keyway: past 2^53
    // the results part (the README lists it).
    if name.ends_with("incrbyfloat") {
        let big = |a: &Bytes| {
            keyway::wire::util::parse_f64(a).is_some_and(|x| x.abs() >= 9_007_199_254_740_992.0)
        };
        if args.iter().skip(2).any(big) {
            return None;
        }
    }
    if name == "xadd" || name == "xgroup" || name == "xsetid" {
        for a in args.iter_mut().skip(1) {
            if &a[..] == b"*" || &a[..] == b"$" {
                *a = Bytes::from_static(b"9-*");
            }
        }
    }
    Some(args)
}

/// Reads a key's whole value from one server, in a form two servers agree
/// on (members of sets and hashes sorted).
async fn snapshot(c: &mut Conn, key: &Bytes) -> std::io::Result<Value> {
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    c.send(&[b("TYPE"), key.clone()]).await?;
    let kind = c.read().await?;
    let read = match &kind {
        Value::Line(_, t) if t == b"string" => vec![b("GET"), key.clone()],
        Value::Line(_, t) if t == b"list" => vec![b("LRANGE"), key.clone(), b("0"), b("-1")],
        Value::Line(_, t) if t == b"set" => vec![b("SMEMBERS"), key.clone()],
        Value::Line(_, t) if t == b"hash" => vec![b("HGETALL"), key.clone()],
        Value::Line(_, t) if t == b"zset" => {
            vec![b("ZRANGE"), key.clone(), b("0"), b("-1"), b("WITHSCORES")]
        }
        Value::Line(_, t) if t == b"stream" => vec![b("XRANGE"), key.clone(), b("-"), b("+")],
        _ => return Ok(kind),
    };
    c.send(&read).await?;
    let name = String::from_utf8_lossy(&read[0]).to_lowercase();
    let v = normalize(&name, &read, c.read().await?);
    Ok(Value::Array(Some(vec![kind, v])))
}

/// Sends `commands` generated from `seed` to both servers, one at a time,
/// and returns what differed (at most `keep` shown whole). With
/// `check_state`, the keys each write names are compared on both servers
/// after it, so that a difference is found where it starts.
pub async fn run(
    redis: SocketAddr,
    keyway: SocketAddr,
    seed: u64,
    commands: usize,
    keep: usize,
    check_state: bool,
) -> std::io::Result<Report> {
    let mut r = Conn::connect(redis).await?;
    let mut k = Conn::connect(keyway).await?;
    for c in [&mut r, &mut k] {
        c.send(&[Bytes::from_static(b"FLUSHALL")]).await?;
        c.read().await?;
    }
    let specs = memory_commands();
    let mut rng = Rng::new(seed);
    let mut report = Report {
        sent: 0,
        diffs: Vec::new(),
        by_command: BTreeMap::new(),
    };
    let mut bytes = vec![0u8; 96];
    while report.sent < commands {
        for b in bytes.iter_mut() {
            *b = rng.next() as u8;
        }
        let cmd = memory_command(&mut Input::new(&bytes), &specs);
        // A blocking command may wait for good on both servers.
        let blocks = match cmd.spec.name {
            "xread" | "xreadgroup" => cmd.args.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK")),
            _ => cmd.spec.has(keyway::wire::command::BLOCKING),
        };
        if blocks {
            continue;
        }
        let Some(args) = agreeable(cmd.args) else {
            continue;
        };
        let name = cmd.spec.name;
        r.send(&args).await?;
        k.send(&args).await?;
        let (want, got) = (r.read().await?, k.read().await?);
        report.sent += 1;
        let (want, got) = (normalize(name, &args, want), normalize(name, &args, got));
        let mut differ = want != got && !agree(name, &want, &got);
        let (mut want, mut got) = (want, got);
        if !differ && check_state && cmd.spec.has(keyway::wire::command::WRITE) {
            // A script writes keys its arguments name too.
            let positions: Vec<usize> = if name.starts_with("eval") {
                (3..args.len()).collect()
            } else {
                cmd.spec.key_positions(&args)
            };
            for p in positions {
                let (r_state, k_state) = (
                    snapshot(&mut r, &args[p]).await?,
                    snapshot(&mut k, &args[p]).await?,
                );
                if r_state != k_state && !agree(name, &r_state, &k_state) {
                    (want, got, differ) = (r_state, k_state, true);
                    break;
                }
            }
        }
        if differ {
            *report.by_command.entry(name.to_string()).or_default() += 1;
            if report.diffs.len() < keep {
                report.diffs.push(Diff {
                    command: args,
                    redis: want,
                    keyway: got,
                });
            }
        }
    }
    Ok(report)
}
