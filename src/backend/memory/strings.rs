//! String commands, with Redis 7's replies and errors.

use bytes::{Bytes, BytesMut};

use super::store::{Entry, Store, Value, ValueRef, now_ms};
use super::{as_str, reply_bytes, str_of};
use crate::wire::args::{SetArgs, Unit, expire_at, getex_change};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::util::{float_arg, int_arg, is, parse_f64};

/// Redis's proto-max-bulk-len default: the largest string a command may build.
const MAX_STRING: usize = 512 * 1024 * 1024;

fn too_big() -> CmdError {
    CmdError::msg("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

pub fn get(s: &Store, a: &[Bytes]) -> CmdResult {
    s.read(&a[1], |e| match e {
        None => Ok(Reply::Nil),
        Some(e) => str_of(e).map(|v| Reply::Bulk(reply_bytes(v))),
    })
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL]
pub fn set(s: &Store, a: &[Bytes]) -> CmdResult {
    let SetArgs {
        nx,
        xx,
        get,
        keepttl,
        expires,
    } = SetArgs::parse(a)?;
    let value = a[2].clone();
    s.write(&a[1], |slot| {
        let old = match slot.as_ref() {
            Some(e) if get => Some(as_str(e)?.clone()),
            _ => None,
        };
        let exists = slot.is_some();
        let reply = |did: bool| {
            if get {
                Reply::opt_bulk(old.clone())
            } else if did {
                Reply::ok()
            } else {
                Reply::Nil
            }
        };
        if (nx && exists) || (xx && !exists) {
            return Ok(reply(false));
        }
        let ttl = match (keepttl, slot.as_ref()) {
            (true, Some(e)) => e.expires_at,
            _ => expires.unwrap_or(0),
        };
        *slot = if ttl != 0 && ttl <= now_ms() {
            None // An expiry in the past: the key is set and gone at once.
        } else {
            Some(Entry {
                value: Value::Str(value),
                expires_at: ttl,
            })
        };
        Ok(reply(true))
    })
}

pub fn setnx(s: &Store, a: &[Bytes]) -> CmdResult {
    s.write(&a[1], |slot| {
        if slot.is_some() {
            return Ok(Reply::Int(0));
        }
        *slot = Some(Entry::new(Value::Str(a[2].clone())));
        Ok(Reply::Int(1))
    })
}

fn set_with_ttl(s: &Store, a: &[Bytes], unit: Unit, cmd: &str) -> CmdResult {
    let at = expire_at(&a[2], unit, false, cmd)?;
    let value = a[3].clone();
    s.write(&a[1], |slot| {
        *slot = Some(Entry {
            value: Value::Str(value),
            expires_at: at,
        })
    });
    Ok(Reply::ok())
}

pub fn setex(s: &Store, a: &[Bytes]) -> CmdResult {
    set_with_ttl(s, a, Unit::Seconds, "setex")
}

pub fn psetex(s: &Store, a: &[Bytes]) -> CmdResult {
    set_with_ttl(s, a, Unit::Millis, "psetex")
}

pub fn getset(s: &Store, a: &[Bytes]) -> CmdResult {
    s.write(&a[1], |slot| {
        let old = match slot.as_ref() {
            Some(e) => Some(as_str(e)?.clone()),
            None => None,
        };
        *slot = Some(Entry::new(Value::Str(a[2].clone())));
        Ok(Reply::opt_bulk(old))
    })
}

pub fn getdel(s: &Store, a: &[Bytes]) -> CmdResult {
    s.write(&a[1], |slot| match slot.as_ref() {
        None => Ok(Reply::Nil),
        Some(e) => {
            let v = as_str(e)?.clone();
            *slot = None;
            Ok(Reply::Bulk(v))
        }
    })
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]
pub fn getex(s: &Store, a: &[Bytes]) -> CmdResult {
    // As Redis: a syntax error first, then a missing key (nil) or the wrong
    // type, and only then a bad expire time.
    let change = getex_change(a);
    if let Err(CmdError::Syntax) = change {
        return Err(CmdError::Syntax);
    }
    s.write(&a[1], |slot| {
        let Some(e) = slot.as_mut() else {
            return Ok(Reply::Nil);
        };
        let v = as_str(e)?.clone();
        match change? {
            Some(t) if t != 0 && t <= now_ms() => *slot = None,
            Some(t) => e.expires_at = t,
            None => {}
        }
        Ok(Reply::Bulk(v))
    })
}

pub fn mget(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Array(
        a[1..]
            .iter()
            .map(|k| {
                s.read(k, |e| match e.map(|e| e.value) {
                    Some(ValueRef::Str(v)) => Reply::Bulk(reply_bytes(v)),
                    _ => Reply::Nil,
                })
            })
            .collect(),
    ))
}

fn check_pairs(a: &[Bytes]) -> CmdResult<()> {
    if a.len() % 2 == 0 {
        return Err(CmdError::WrongArity(
            String::from_utf8_lossy(&a[0]).to_lowercase(),
        ));
    }
    Ok(())
}

pub fn mset(s: &Store, a: &[Bytes]) -> CmdResult {
    check_pairs(a)?;
    for kv in a[1..].chunks(2) {
        s.write(&kv[0], |slot| {
            *slot = Some(Entry::new(Value::Str(kv[1].clone())))
        });
    }
    Ok(Reply::ok())
}

pub fn msetnx(s: &Store, a: &[Bytes]) -> CmdResult {
    check_pairs(a)?;
    if a[1..].chunks(2).any(|kv| s.exists(&kv[0])) {
        return Ok(Reply::Int(0));
    }
    mset(s, a)?;
    Ok(Reply::Int(1))
}

pub fn append(s: &Store, a: &[Bytes]) -> CmdResult {
    s.write(&a[1], |slot| {
        let Some(e) = slot.as_mut() else {
            *slot = Some(Entry::new(Value::Str(a[2].clone())));
            return Ok(Reply::Int(a[2].len() as i64));
        };
        let old = as_str(e)?;
        if old.len() + a[2].len() > MAX_STRING {
            return Err(too_big());
        }
        let mut v = BytesMut::with_capacity(old.len() + a[2].len());
        v.extend_from_slice(old);
        v.extend_from_slice(&a[2]);
        let len = v.len();
        e.value = Value::Str(v.freeze());
        Ok(Reply::Int(len as i64))
    })
}

pub fn strlen(s: &Store, a: &[Bytes]) -> CmdResult {
    s.read(&a[1], |e| match e {
        None => Ok(Reply::Int(0)),
        Some(e) => str_of(e).map(|v| Reply::Int(v.len() as i64)),
    })
}

/// Adds `by` to the integer at `key`, keeping its TTL.
fn incr_by(s: &Store, key: &[u8], by: i64) -> CmdResult {
    s.write(key, |slot| {
        let current = match slot.as_ref() {
            None => 0,
            Some(e) => parse_i64(as_str(e)?).ok_or(CmdError::NotInteger)?,
        };
        let n = current.checked_add(by).ok_or(CmdError::Overflow)?;
        let value = Value::Str(Bytes::from(n.to_string()));
        match slot.as_mut() {
            Some(e) => e.value = value,
            None => *slot = Some(Entry::new(value)),
        }
        Ok(Reply::Int(n))
    })
}

pub fn incr(s: &Store, a: &[Bytes]) -> CmdResult {
    incr_by(s, &a[1], 1)
}

pub fn decr(s: &Store, a: &[Bytes]) -> CmdResult {
    incr_by(s, &a[1], -1)
}

pub fn incrby(s: &Store, a: &[Bytes]) -> CmdResult {
    incr_by(s, &a[1], int_arg(&a[2])?)
}

pub fn decrby(s: &Store, a: &[Bytes]) -> CmdResult {
    let by = int_arg(&a[2])?;
    let neg = by
        .checked_neg()
        .ok_or_else(|| CmdError::msg("ERR decrement would overflow"))?;
    incr_by(s, &a[1], neg)
}

pub fn incrbyfloat(s: &Store, a: &[Bytes]) -> CmdResult {
    // The key's type, its value, then the increment, as Redis reads them.
    s.write(&a[1], |slot| {
        let current = match slot.as_ref() {
            None => 0.0,
            Some(e) => parse_f64(as_str(e)?).ok_or(CmdError::NotFloat)?,
        };
        let by = float_arg(&a[2])?;
        let n = current + by;
        if !n.is_finite() {
            return Err(CmdError::NanOrInfinity);
        }
        // Redis writes INCRBYFLOAT results without an exponent.
        let text = Bytes::from(format!("{n}"));
        match slot.as_mut() {
            Some(e) => e.value = Value::Str(text.clone()),
            None => *slot = Some(Entry::new(Value::Str(text.clone()))),
        }
        Ok(Reply::Bulk(text))
    })
}

pub fn getrange(s: &Store, a: &[Bytes]) -> CmdResult {
    let (start, end) = (int_arg(&a[2])?, int_arg(&a[3])?);
    s.read(&a[1], |e| {
        let Some(e) = e else {
            return Ok(Reply::Bulk(Bytes::new()));
        };
        let v = str_of(e)?;
        let len = v.len() as i64;
        if start < 0 && end < 0 && start > end {
            return Ok(Reply::Bulk(Bytes::new()));
        }
        let start = if start < 0 {
            (len + start).max(0)
        } else {
            start
        };
        let end = if end < 0 { (len + end).max(0) } else { end };
        let end = end.min(len - 1);
        if start > end || len == 0 {
            return Ok(Reply::Bulk(Bytes::new()));
        }
        Ok(Reply::Bulk(reply_bytes(&v[start as usize..=end as usize])))
    })
}

pub fn setrange(s: &Store, a: &[Bytes]) -> CmdResult {
    let offset = int_arg(&a[2])?;
    if offset < 0 {
        return Err(CmdError::msg("ERR offset is out of range"));
    }
    let offset = offset as usize;
    let patch = &a[3];
    s.write(&a[1], |slot| {
        let old: &[u8] = match slot.as_ref() {
            Some(e) => as_str(e)?,
            None => b"",
        };
        if patch.is_empty() {
            return Ok(Reply::Int(old.len() as i64));
        }
        if offset + patch.len() > MAX_STRING {
            return Err(too_big());
        }
        let mut v = BytesMut::from(old);
        if v.len() < offset + patch.len() {
            v.resize(offset + patch.len(), 0);
        }
        v[offset..offset + patch.len()].copy_from_slice(patch);
        let len = v.len();
        match slot.as_mut() {
            Some(e) => e.value = Value::Str(v.freeze()),
            None => *slot = Some(Entry::new(Value::Str(v.freeze()))),
        }
        Ok(Reply::Int(len as i64))
    })
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest
/// common subsequence, by Redis's dynamic programming and its walk back
/// through the table (which decides the string and ranges it reports when
/// several are as long). Missing keys are empty strings.
pub fn lcs(s: &Store, a: &[Bytes]) -> CmdResult {
    let not_strings = || CmdError::msg("ERR The specified keys must contain string values");
    let value = |key: &[u8]| {
        s.read(key, |e| match e {
            None => Ok(Vec::new()),
            Some(e) => str_of(e).map(<[u8]>::to_vec).map_err(|_| not_strings()),
        })
    };
    let (x, y) = (value(&a[1])?, value(&a[2])?);
    let (mut idx, mut len, mut withmatchlen, mut minmatchlen) = (false, false, false, 0usize);
    let mut j = 3;
    while j < a.len() {
        let o = &a[j];
        if is(o, "IDX") {
            idx = true;
        } else if is(o, "LEN") {
            len = true;
        } else if is(o, "WITHMATCHLEN") {
            withmatchlen = true;
        } else if is(o, "MINMATCHLEN") && j + 1 < a.len() {
            minmatchlen = int_arg(&a[j + 1])?.max(0) as usize;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if idx && len {
        return Err(CmdError::msg(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (n, m) = (x.len(), y.len());
    if (n + 1).saturating_mul(m + 1).saturating_mul(4) > MAX_STRING {
        return Err(CmdError::msg(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    // table[i * (m + 1) + j]: the LCS length of x[..i] and y[..j].
    let w = m + 1;
    let mut table = vec![0u32; (n + 1) * w];
    for i in 1..=n {
        for k in 1..=m {
            table[i * w + k] = if x[i - 1] == y[k - 1] {
                table[(i - 1) * w + k - 1] + 1
            } else {
                table[(i - 1) * w + k].max(table[i * w + k - 1])
            };
        }
    }
    let total = table[n * w + m] as usize;
    if len {
        return Ok(Reply::Int(total as i64));
    }
    let mut out = vec![0u8; total];
    let mut ranges = Vec::new();
    // The range being grown backwards: (x start, x end, y start, y end).
    let mut open: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut k, mut at) = (n, m, total);
    while i > 0 && k > 0 {
        let mut emit = false;
        if x[i - 1] == y[k - 1] {
            out[at - 1] = x[i - 1];
            open = Some(match open {
                None => (i - 1, i - 1, k - 1, k - 1),
                // Consecutive matches always extend the range.
                Some((_, xe, _, ye)) => (i - 1, xe, k - 1, ye),
            });
            if open.is_some_and(|(xs, _, ys, _)| xs == 0 || ys == 0) {
                emit = true;
            }
            at -= 1;
            i -= 1;
            k -= 1;
        } else {
            if table[(i - 1) * w + k] > table[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            emit = open.is_some();
        }
        if let (true, Some((xs, xe, ys, ye))) = (emit, open) {
            let match_len = xe - xs + 1;
            if minmatchlen == 0 || match_len >= minmatchlen {
                let mut r = vec![
                    Reply::Array(vec![Reply::Int(xs as i64), Reply::Int(xe as i64)]),
                    Reply::Array(vec![Reply::Int(ys as i64), Reply::Int(ye as i64)]),
                ];
                if withmatchlen {
                    r.push(Reply::Int(match_len as i64));
                }
                ranges.push(Reply::Array(r));
            }
            open = None;
        }
    }
    if !idx {
        return Ok(Reply::Bulk(Bytes::from(out)));
    }
    Ok(Reply::Map(vec![
        (Reply::bulk_str("matches"), Reply::Array(ranges)),
        (Reply::bulk_str("len"), Reply::Int(total as i64)),
    ]))
}
