//! Generic key commands: existence, TTLs, renames and keyspace walks.

use bytes::Bytes;

use super::store::{Entry, ORDER_BITS, Store, ValueRef, now_ms};
use crate::wire::args::{ExpireArgs, Unit};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::scan::{parse_scan, scan_reply};
use crate::wire::util::{glob_match, is};

pub fn del(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        a[1..].iter().filter(|k| s.delete(k)).count() as i64
    ))
}

/// EXISTS and TOUCH: each argument that names a live key counts.
pub fn exists(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        a[1..].iter().filter(|k| s.exists(k)).count() as i64
    ))
}

pub fn type_(s: &Store, a: &[Bytes]) -> CmdResult {
    let name = s.read(&a[1], |e| e.map_or("none", |e| e.value.type_name()));
    Ok(Reply::status(name))
}

/// EXPIRE family: `unit` of the argument, `absolute` for the *AT forms.
fn expire_generic(s: &Store, a: &[Bytes], unit: Unit, absolute: bool) -> CmdResult {
    let args = ExpireArgs::parse(a, unit, absolute)?;
    let done = s.write_expiry(&a[1], |at| {
        let current = (at != 0).then_some(at as i64);
        if !args.allows(current) {
            (Some(at), 0)
        } else if args.deletes() {
            (None, 1)
        } else {
            (Some(args.when as u64), 1)
        }
    });
    Ok(Reply::Int(done.unwrap_or(0)))
}

pub fn expire(s: &Store, a: &[Bytes]) -> CmdResult {
    expire_generic(s, a, Unit::Seconds, false)
}
pub fn pexpire(s: &Store, a: &[Bytes]) -> CmdResult {
    expire_generic(s, a, Unit::Millis, false)
}
pub fn expireat(s: &Store, a: &[Bytes]) -> CmdResult {
    expire_generic(s, a, Unit::Seconds, true)
}
pub fn pexpireat(s: &Store, a: &[Bytes]) -> CmdResult {
    expire_generic(s, a, Unit::Millis, true)
}

/// TTL family: -2 for a missing key, -1 for no TTL; seconds are rounded.
fn ttl_generic(s: &Store, key: &[u8], millis: bool, absolute: bool) -> CmdResult {
    let at = s.read(key, |e| e.map(|e| e.expires_at));
    Ok(Reply::Int(match at {
        None => -2,
        Some(0) => -1,
        Some(at) => {
            let v = if absolute {
                at as i64
            } else {
                (at as i64 - now_ms() as i64).max(0)
            };
            if millis { v } else { (v + 500) / 1000 }
        }
    }))
}

pub fn ttl(s: &Store, a: &[Bytes]) -> CmdResult {
    ttl_generic(s, &a[1], false, false)
}
pub fn pttl(s: &Store, a: &[Bytes]) -> CmdResult {
    ttl_generic(s, &a[1], true, false)
}
pub fn expiretime(s: &Store, a: &[Bytes]) -> CmdResult {
    ttl_generic(s, &a[1], false, true)
}
pub fn pexpiretime(s: &Store, a: &[Bytes]) -> CmdResult {
    ttl_generic(s, &a[1], true, true)
}

pub fn persist(s: &Store, a: &[Bytes]) -> CmdResult {
    let done = s.write_expiry(&a[1], |at| (Some(0), i64::from(at != 0)));
    Ok(Reply::Int(done.unwrap_or(0)))
}

/// Moves `src` to `dst` (keeping its TTL); `nx` refuses to overwrite.
fn rename_generic(s: &Store, a: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&a[1], &a[2]);
    if !s.exists(src) {
        return Err(CmdError::NoSuchKey);
    }
    if src == dst {
        return Ok(if nx { Reply::Int(0) } else { Reply::ok() });
    }
    if nx && s.exists(dst) {
        return Ok(Reply::Int(0));
    }
    // The batch holds the store's gate exclusively (see mod.rs), so no other
    // client sees the key missing in between.
    let Some(entry) = s.remove(src) else {
        return Err(CmdError::NoSuchKey);
    };
    s.write(dst, |slot| *slot = Some(entry));
    Ok(if nx { Reply::Int(1) } else { Reply::ok() })
}

pub fn rename(s: &Store, a: &[Bytes]) -> CmdResult {
    rename_generic(s, a, false)
}
pub fn renamenx(s: &Store, a: &[Bytes]) -> CmdResult {
    rename_generic(s, a, true)
}

/// COPY source destination [DB 0] [REPLACE]: the value and its expiry. There
/// is one database, so DB names it or is out of range, as SELECT says.
pub fn copy(s: &Store, a: &[Bytes]) -> CmdResult {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "REPLACE") {
            replace = true;
            i += 1;
        } else {
            // (With a DB option COPY runs in databases.rs.)
            return Err(CmdError::Syntax);
        }
    }
    let (src, dst) = (&a[1], &a[2]);
    if src == dst {
        return Err(CmdError::msg(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(entry) = s.read(src, |e| {
        e.map(|e| Entry {
            value: e.value.to_value(),
            expires_at: e.expires_at,
        })
    }) else {
        return Ok(Reply::Int(0));
    };
    // Exclusive (see mod.rs): no other client writes the source meanwhile.
    Ok(Reply::Int(s.write(dst, |slot| {
        if slot.is_some() && !replace {
            return 0;
        }
        *slot = Some(entry);
        1
    })))
}

pub fn keys(s: &Store, a: &[Bytes]) -> CmdResult {
    let mut out = Vec::new();
    let all = &a[1][..] == b"*";
    s.for_each_key(|k, _| {
        if all || glob_match(&a[1], k) {
            out.push(Reply::Bulk(Bytes::copy_from_slice(k)));
        }
    });
    Ok(Reply::Array(out))
}

pub fn scan(s: &Store, a: &[Bytes]) -> CmdResult {
    let sa = parse_scan(a, 1, true)?;
    if sa.cursor >= 1 << ORDER_BITS {
        return Ok(scan_reply(0, Vec::new()));
    }
    let (next, keys) = s.scan(sa.cursor, sa.count, |k, e| {
        sa.pattern.as_ref().is_none_or(|p| glob_match(p, k))
            && sa
                .type_
                .as_ref()
                .is_none_or(|t| t.eq_ignore_ascii_case(e.type_name().as_bytes()))
    });
    Ok(scan_reply(
        next,
        keys.into_iter().map(Reply::Bulk).collect(),
    ))
}

pub fn randomkey(s: &Store, _a: &[Bytes]) -> CmdResult {
    Ok(Reply::opt_bulk(s.random_key()))
}

pub fn dbsize(s: &Store, _a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(s.len() as i64))
}

/// INFO [keyspace]: only the keyspace section, which keyway asks for its
/// own INFO; the client's INFO is keyway's.
pub fn info(s: &Store, a: &[Bytes]) -> CmdResult {
    if a.len() > 2 || a.get(1).is_some_and(|x| !is(x, "keyspace")) {
        return Err(CmdError::msg(
            "ERR the memory backend reports only INFO keyspace",
        ));
    }
    let mut out = String::from("# Keyspace\r\n");
    let keys = s.len();
    if keys > 0 {
        let (expires, sum) = s.volatile();
        let avg = sum.checked_div(expires).unwrap_or(0);
        out.push_str(&format!(
            "db0:keys={keys},expires={expires},avg_ttl={avg}\r\n"
        ));
    }
    Ok(Reply::Bulk(Bytes::from(out)))
}

/// FLUSHDB / FLUSHALL [ASYNC|SYNC]
pub fn flushdb(s: &Store, a: &[Bytes]) -> CmdResult {
    match &a[1..] {
        [] => {}
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(CmdError::Syntax),
    }
    s.clear();
    Ok(Reply::ok())
}

/// Elements MEMORY USAGE samples by default, as Redis does.
const USAGE_SAMPLES: usize = 5;

/// MEMORY USAGE key [SAMPLES n]: the bytes a key takes, estimated as Redis
/// does: its node (header, key, inline string) and table slot exactly, a
/// collection's elements from `n` sampled ones (0 samples all) scaled to
/// the whole. keyway answers the other MEMORY subcommands itself.
pub fn memory(s: &Store, a: &[Bytes]) -> CmdResult {
    if !is(&a[1], "USAGE") {
        return Err(CmdError::UnknownSubcommand {
            cmd: "MEMORY".into(),
            sub: crate::wire::error::lossy(&a[1], 128),
        });
    }
    let samples = match &a[2..] {
        [_] => USAGE_SAMPLES,
        [_, opt, n] if is(opt, "SAMPLES") => match crate::wire::protocol::parse_i64(n) {
            Some(0) => usize::MAX,
            Some(n) => usize::try_from(n).map_err(|_| CmdError::Syntax)?,
            None => return Err(CmdError::NotInteger),
        },
        [] => return Err(CmdError::WrongArity("memory|usage".into())),
        _ => return Err(CmdError::Syntax),
    };
    let key = &a[2];
    s.read(key, |e| {
        let Some(e) = e else {
            return Ok(Reply::Nil);
        };
        // The table slot: a pointer and a control byte.
        let node = super::node::NODE_OVERHEAD + key.len() + size_of::<usize>() + 1;
        let b = size_of::<Bytes>();
        // A collection's own struct, boxed apart from the node.
        let (boxed, len, sampled): (usize, usize, Vec<usize>) = match e.value {
            ValueRef::Str(v) => (0, 0, vec![v.len()]),
            ValueRef::Stream(st) => (size_of_val(st), 0, vec![st.footprint()]),
            ValueRef::Hash(h) => (
                size_of_val(h),
                h.len(),
                h.iter()
                    .take(samples)
                    .map(|(f, v)| f.len() + v.len() + 2 * b + 1)
                    .collect(),
            ),
            ValueRef::List(l) => (
                size_of_val(l),
                l.len(),
                l.iter().take(samples).map(|v| v.len() + b).collect(),
            ),
            // An entry (hash and member) and its slot in the index.
            ValueRef::Set(set) => (
                size_of_val(set),
                set.len(),
                set.iter()
                    .take(samples)
                    .map(|m| m.len() + b + 2 * size_of::<usize>() + 1)
                    .collect(),
            ),
            ValueRef::ZSet(z) => (
                size_of_val(z),
                z.len(),
                z.members()
                    .take(samples)
                    .map(|(m, _)| m.len() + b + super::zset::ZSet::MEMBER_OVERHEAD)
                    .collect(),
            ),
        };
        let elements = match (len, sampled.len()) {
            (0, _) => sampled.iter().sum(),
            (_, 0) => 0,
            (len, n) => sampled.iter().sum::<usize>() * len / n,
        };
        Ok(Reply::Int(
            i64::try_from(node + boxed + elements).unwrap_or(i64::MAX),
        ))
    })
}

/// OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ key. Encodings are the ones
/// Redis would report for the value's size (listpack/intset while small).
pub fn object(s: &Store, a: &[Bytes]) -> CmdResult {
    let sub = &a[1];
    let Some(key) = a.get(2).filter(|_| a.len() == 3) else {
        return Err(CmdError::UnknownSubcommand {
            cmd: "OBJECT".into(),
            sub: crate::wire::error::lossy(sub, 128),
        });
    };
    s.read(key, |e| {
        let Some(e) = e else {
            return Ok(Reply::Nil);
        };
        if is(sub, "ENCODING") {
            // Redis's thresholds, as CONFIG SET last set them: entries, and
            // the longest element a compact encoding holds.
            let t = |name: &str| usize::try_from(super::tunables::get(name)).unwrap_or(0);
            let fits = |n: usize, entries: &str, longest: usize, value: &str| {
                n <= t(entries) && longest <= t(value)
            };
            let enc = match e.value {
                ValueRef::Str(v) if v.len() <= 20 && crate::wire::protocol::parse_i64(v).is_some() => "int",
                ValueRef::Str(v) if v.len() <= 44 => "embstr",
                ValueRef::Str(_) => "raw",
                ValueRef::Hash(h) => {
                    let longest = h.iter().map(|(f, v)| f.len().max(v.len())).max().unwrap_or(0);
                    if fits(h.len(), "hash-max-listpack-entries", longest, "hash-max-listpack-value") {
                        "listpack"
                    } else {
                        "hashtable"
                    }
                }
                ValueRef::List(l) if l.len() <= 128 => "listpack",
                ValueRef::List(_) => "quicklist",
                ValueRef::Set(set)
                    if set.len() <= t("set-max-intset-entries")
                        && set.iter().all(|m| crate::wire::protocol::parse_i64(m).is_some()) =>
                {
                    "intset"
                }
                ValueRef::Set(set) => {
                    let longest = set.iter().map(Bytes::len).max().unwrap_or(0);
                    if fits(set.len(), "set-max-listpack-entries", longest, "set-max-listpack-value") {
                        "listpack"
                    } else {
                        "hashtable"
                    }
                }
                ValueRef::ZSet(z) => {
                    let longest = z.members().map(|(m, _)| m.len()).max().unwrap_or(0);
                    if fits(z.len(), "zset-max-listpack-entries", longest, "zset-max-listpack-value") {
                        "listpack"
                    } else {
                        "skiplist"
                    }
                }
                ValueRef::Stream(_) => "stream",
            };
            Ok(Reply::bulk(Bytes::from_static(enc.as_bytes())))
        } else if is(sub, "REFCOUNT") {
            Ok(Reply::Int(1))
        } else if is(sub, "IDLETIME") {
            let idle = super::store::clock().saturating_sub(e.access);
            Ok(Reply::Int(i64::from(idle)))
        } else if is(sub, "FREQ") {
            Err(CmdError::msg(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ))
        } else {
            Err(CmdError::UnknownSubcommand {
                cmd: "OBJECT".into(),
                sub: crate::wire::error::lossy(sub, 128),
            })
        }
    })
}
