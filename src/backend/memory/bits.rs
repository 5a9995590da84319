//! Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, with Redis's ranges (BYTE or BIT units, negative indexes).

use bytes::{Bytes, BytesMut};

use super::store::{Entry, Store, Value};
use super::{as_str, str_of};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::util::{int_arg, is};

/// Redis's proto-max-bulk-len: bit offsets stay below 2^32.
const MAX_BIT_OFFSET: u64 = 4 * 1024 * 1024 * 1024 - 1;

fn offset_arg(a: &[u8]) -> CmdResult<u64> {
    let bad = || CmdError::msg("ERR bit offset is not an integer or out of range");
    let n = int_arg(a).map_err(|_| bad())?;
    if n < 0 || n as u64 > MAX_BIT_OFFSET {
        return Err(bad());
    }
    Ok(n as u64)
}

fn get_bit(v: &[u8], offset: u64) -> u8 {
    let byte = (offset / 8) as usize;
    v.get(byte).map_or(0, |b| (b >> (7 - offset % 8)) & 1)
}

pub fn setbit(s: &Store, a: &[Bytes]) -> CmdResult {
    let offset = offset_arg(&a[2])?;
    let bit = match &a[3][..] {
        b"0" => 0u8,
        b"1" => 1u8,
        _ => return Err(CmdError::msg("ERR bit is not an integer or out of range")),
    };
    s.write(&a[1], |slot| {
        let mut v = match slot.as_ref() {
            None => BytesMut::new(),
            Some(e) => BytesMut::from(&as_str(e)?[..]),
        };
        let byte = (offset / 8) as usize;
        if v.len() <= byte {
            v.resize(byte + 1, 0);
        }
        let mask = 1u8 << (7 - offset % 8);
        let old = (v[byte] & mask != 0) as i64;
        if bit == 1 {
            v[byte] |= mask;
        } else {
            v[byte] &= !mask;
        }
        let value = Value::Str(v.freeze());
        match slot.as_mut() {
            Some(e) => e.value = value,
            None => *slot = Some(Entry::new(value)),
        }
        Ok(Reply::Int(old))
    })
}

pub fn getbit(s: &Store, a: &[Bytes]) -> CmdResult {
    let offset = offset_arg(&a[2])?;
    s.read(&a[1], |e| match e {
        None => Ok(Reply::Int(0)),
        Some(e) => Ok(Reply::Int(get_bit(str_of(e)?, offset) as i64)),
    })
}

/// `start end [BYTE|BIT]` as a bit range `[from, to]` over `len` bytes;
/// None when empty.
fn bit_range(start: i64, end: i64, bits: bool, len: usize) -> Option<(u64, u64)> {
    let total = if bits { len as i64 * 8 } else { len as i64 };
    let norm = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (norm(start), norm(end).min(total - 1));
    if start > end || total == 0 {
        return None;
    }
    Some(if bits {
        (start as u64, end as u64)
    } else {
        (start as u64 * 8, end as u64 * 8 + 7)
    })
}

/// Parses the optional `start end [BYTE|BIT]` at `a[at..]`.
fn range_args(a: &[Bytes], at: usize) -> CmdResult<Option<(i64, Option<i64>, bool)>> {
    match &a[at..] {
        [] => Ok(None),
        [start] => Ok(Some((int_arg(start)?, None, false))),
        [start, end] => Ok(Some((int_arg(start)?, Some(int_arg(end)?), false))),
        [start, end, unit] => {
            let bits = if is(unit, "BIT") {
                true
            } else if is(unit, "BYTE") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
            Ok(Some((int_arg(start)?, Some(int_arg(end)?), bits)))
        }
        _ => Err(CmdError::Syntax),
    }
}

/// Set bits in the bit range `[from, to]`: whole bytes by popcount, the
/// partial bytes at the edges bit by bit.
fn count_ones(v: &[u8], from: u64, to: u64) -> u64 {
    let (first, last) = ((from / 8) as usize, (to / 8) as usize);
    if first == last {
        return (from..=to).filter(|&i| get_bit(v, i) == 1).count() as u64;
    }
    let head = (from..(first as u64 + 1) * 8)
        .filter(|&i| get_bit(v, i) == 1)
        .count() as u64;
    let tail = (last as u64 * 8..=to)
        .filter(|&i| get_bit(v, i) == 1)
        .count() as u64;
    let middle: u64 = v[first + 1..last]
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    head + middle + tail
}

pub fn bitcount(s: &Store, a: &[Bytes]) -> CmdResult {
    let range = range_args(a, 2)?;
    if matches!(range, Some((_, None, _))) {
        return Err(CmdError::Syntax);
    }
    s.read(&a[1], |e| {
        let Some(e) = e else {
            return Ok(Reply::Int(0));
        };
        let v = str_of(e)?;
        let (from, to) = match range {
            None if v.is_empty() => return Ok(Reply::Int(0)),
            None => (0, v.len() as u64 * 8 - 1),
            Some((start, end, bits)) => match bit_range(start, end.unwrap_or(-1), bits, v.len()) {
                Some(r) => r,
                None => return Ok(Reply::Int(0)),
            },
        };
        Ok(Reply::Int(count_ones(v, from, to) as i64))
    })
}

pub fn bitpos(s: &Store, a: &[Bytes]) -> CmdResult {
    let bit = match &a[2][..] {
        b"0" => 0u8,
        b"1" => 1u8,
        _ => return Err(CmdError::msg("ERR The bit argument must be 1 or 0.")),
    };
    let range = range_args(a, 3)?;
    s.read(&a[1], |e| {
        let Some(e) = e else {
            return Ok(Reply::Int(if bit == 1 { -1 } else { 0 }));
        };
        let v = str_of(e)?;
        let end_given = matches!(range, Some((_, Some(_), _)));
        let (from, to) = match range {
            None => (0, (v.len() as u64 * 8).saturating_sub(1)),
            Some((start, end, bits)) => match bit_range(start, end.unwrap_or(-1), bits, v.len()) {
                Some(r) => r,
                None => return Ok(Reply::Int(-1)),
            },
        };
        if v.is_empty() {
            return Ok(Reply::Int(if bit == 1 { -1 } else { 0 }));
        }
        if let Some(i) = (from..=to).find(|&i| get_bit(v, i) == bit) {
            return Ok(Reply::Int(i as i64));
        }
        // Looking for a 0 with no end given: the string is padded with
        // zeros to the right, so the first 0 is just past it.
        Ok(Reply::Int(if bit == 0 && !end_given {
            to as i64 + 1
        } else {
            -1
        }))
    })
}

pub fn bitop(s: &Store, a: &[Bytes]) -> CmdResult {
    let op = &a[1];
    let not = is(op, "NOT");
    if !(not || is(op, "AND") || is(op, "OR") || is(op, "XOR")) {
        return Err(CmdError::Syntax);
    }
    if not && a.len() != 4 {
        return Err(CmdError::msg(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let sources: Vec<Bytes> = a[3..]
        .iter()
        .map(|k| {
            s.read(k, |e| match e {
                None => Ok(Bytes::new()),
                Some(e) => str_of(e).map(Bytes::copy_from_slice),
            })
        })
        .collect::<CmdResult<_>>()?;
    let len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().enumerate() {
        let at = |v: &Bytes| v.get(i).copied().unwrap_or(0);
        *byte = if not {
            !at(&sources[0])
        } else {
            let mut it = sources.iter().map(at);
            let first = it.next().unwrap_or(0);
            it.fold(first, |acc, b| {
                if is(op, "AND") {
                    acc & b
                } else if is(op, "OR") {
                    acc | b
                } else {
                    acc ^ b
                }
            })
        };
    }
    s.write(&a[2], |slot| {
        *slot = (len > 0).then(|| Entry::new(Value::Str(Bytes::from(out))));
    });
    Ok(Reply::Int(len as i64))
}
