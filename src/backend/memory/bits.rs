//! Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, with Redis's ranges (BYTE or BIT units, negative indexes).

use bytes::{Bytes, BytesMut};

use super::store::{Entry, Store, Value};
use super::{as_str, str_of};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is};

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
    let byte = (offset / 8) as usize;
    edit_bits(s, &a[1], byte + 1, |v| {
        let mask = 1u8 << (7 - offset % 8);
        let old = (v[byte] & mask != 0) as i64;
        if bit == 1 {
            v[byte] |= mask;
        } else {
            v[byte] &= !mask;
        }
        Reply::Int(old)
    })
}

/// Edits the string at `key` (created if missing) grown with zero bytes to
/// at least `len`, as the bit-writing commands do.
fn edit_bits(s: &Store, key: &[u8], len: usize, f: impl FnOnce(&mut [u8]) -> Reply) -> CmdResult {
    s.write(key, |slot| {
        let mut v = match slot.as_ref() {
            None => BytesMut::new(),
            Some(e) => BytesMut::from(&as_str(e)?[..]),
        };
        if v.len() < len {
            v.resize(len, 0);
        }
        let reply = f(&mut v);
        let value = Value::Str(v.freeze());
        match slot.as_mut() {
            Some(e) => e.value = value,
            None => *slot = Some(Entry::new(value)),
        }
        Ok(reply)
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
/// `[start [end [BIT|BYTE]]]` from `a[at..]`, read in Redis 7.2's order:
/// BITCOUNT reads start, end, then the unit; BITPOS start, the unit, then
/// end (`unit_before_end`).
fn range_args(
    a: &[Bytes],
    at: usize,
    unit_before_end: bool,
) -> CmdResult<Option<(i64, Option<i64>, bool)>> {
    let unit_of = |u: &[u8]| {
        if is(u, "BIT") {
            Ok(true)
        } else if is(u, "BYTE") {
            Ok(false)
        } else {
            Err(CmdError::Syntax)
        }
    };
    match &a[at..] {
        [] => Ok(None),
        [start] => Ok(Some((int_arg(start)?, None, false))),
        [start, end] => Ok(Some((int_arg(start)?, Some(int_arg(end)?), false))),
        [start, end, unit] if unit_before_end => {
            let start = int_arg(start)?;
            let bits = unit_of(unit)?;
            Ok(Some((start, Some(int_arg(end)?), bits)))
        }
        [start, end, unit] => {
            let (start, end) = (int_arg(start)?, int_arg(end)?);
            Ok(Some((start, Some(end), unit_of(unit)?)))
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
    if a.len() == 3 {
        return Err(CmdError::Syntax);
    }
    let range = range_args(a, 2, false)?;
    s.read(&a[1], |e| {
        let Some(e) = e else {
            return Ok(Reply::Int(0));
        };
        let v = str_of(e)?;
        let (from, to) = match range {
            None if v.is_empty() => return Ok(Reply::Int(0)),
            None => (0, v.len() as u64 * 8 - 1),
            // Redis's own check before it clamps: both from the end, and
            // the start past the end, count nothing.
            Some((start, Some(end), _)) if start < 0 && end < 0 && start > end => {
                return Ok(Reply::Int(0));
            }
            Some((start, end, bits)) => match bit_range(start, end.unwrap_or(-1), bits, v.len()) {
                Some(r) => r,
                None => return Ok(Reply::Int(0)),
            },
        };
        Ok(Reply::Int(count_ones(v, from, to) as i64))
    })
}

pub fn bitpos(s: &Store, a: &[Bytes]) -> CmdResult {
    let bit = match crate::wire::util::int_arg(&a[2])? {
        0 => 0u8,
        1 => 1u8,
        _ => return Err(CmdError::msg("ERR The bit argument must be 1 or 0.")),
    };
    let range = range_args(a, 3, true)?;
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

/// One BITFIELD operation.
#[derive(Clone, Copy)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

fn field_type(a: &[u8]) -> CmdResult<(bool, u32)> {
    let bad = || {
        CmdError::msg(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match a.first() {
        Some(b'i' | b'I') => true,
        Some(b'u' | b'U') => false,
        _ => return Err(bad()),
    };
    let bits = crate::wire::protocol::parse_i64(&a[1..]).ok_or_else(bad)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(bad());
    }
    Ok((signed, bits as u32))
}

/// An offset, or `#n` for the n-th field of `bits` bits.
fn field_offset(a: &[u8], bits: u32) -> CmdResult<u64> {
    let bad = || CmdError::msg("ERR bit offset is not an integer or out of range");
    let (hash, digits) = match a.split_first() {
        Some((b'#', rest)) => (true, rest),
        _ => (false, a),
    };
    let mut n = crate::wire::protocol::parse_i64(digits).ok_or_else(bad)?;
    if hash {
        n = n.checked_mul(bits as i64).ok_or_else(bad)?;
    }
    if n < 0 || n as u64 > MAX_BIT_OFFSET {
        return Err(bad());
    }
    Ok(n as u64)
}

fn get_field(v: &[u8], offset: u64, bits: u32) -> u64 {
    (0..bits as u64).fold(0u64, |acc, i| (acc << 1) | get_bit(v, offset + i) as u64)
}

fn get_signed(v: &[u8], offset: u64, bits: u32) -> i64 {
    let mut value = get_field(v, offset, bits);
    if bits < 64 && value & (1 << (bits - 1)) != 0 {
        value |= u64::MAX << bits;
    }
    value as i64
}

fn set_field(v: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..bits as u64 {
        let bit = (value >> (bits as u64 - 1 - i)) & 1;
        let at = offset + i;
        let mask = 1u8 << (7 - at % 8);
        let byte = &mut v[(at / 8) as usize];
        if bit == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// Redis's unsigned overflow check: the value to store instead (wrapped or
/// saturated), or None when `value + incr` fits.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    if value > max || (incr > 0 && incr > max_incr) {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if incr < 0 && incr < min_incr {
        Some(if ow == Overflow::Wrap { wrap() } else { 0 })
    } else {
        None
    }
}

/// Redis's signed overflow check; see [`unsigned_overflow`].
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(if ow == Overflow::Wrap { wrap() } else { min })
    } else {
        None
    }
}

fn parse_fields(a: &[Bytes], read_only: bool) -> CmdResult<Vec<Field>> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let more = a.len() - j - 1;
        let sub = &a[j];
        let op = if is(sub, "GET") && more >= 2 {
            FieldOp::Get
        } else if is(sub, "SET") && more >= 3 {
            FieldOp::Set(0)
        } else if is(sub, "INCRBY") && more >= 3 {
            FieldOp::IncrBy(0)
        } else if is(sub, "OVERFLOW") && more >= 1 {
            overflow = if is(&a[j + 1], "WRAP") {
                Overflow::Wrap
            } else if is(&a[j + 1], "SAT") {
                Overflow::Sat
            } else if is(&a[j + 1], "FAIL") {
                Overflow::Fail
            } else {
                return Err(CmdError::msg("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, bits) = field_type(&a[j + 1])?;
        let offset = field_offset(&a[j + 2], bits)?;
        let op = match op {
            FieldOp::Get => FieldOp::Get,
            _ if read_only => {
                return Err(CmdError::msg(
                    "ERR BITFIELD_RO only supports the GET subcommand",
                ));
            }
            FieldOp::Set(_) => FieldOp::Set(int_arg(&a[j + 3])?),
            FieldOp::IncrBy(_) => FieldOp::IncrBy(int_arg(&a[j + 3])?),
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if matches!(op, FieldOp::Get) { 3 } else { 4 };
    }
    Ok(fields)
}

/// Runs the fields on `v` (grown to hold every written one), one reply each.
fn run_fields(v: &mut [u8], fields: &[Field]) -> Vec<Reply> {
    fields
        .iter()
        .map(|f| {
            let (incr, set) = match f.op {
                FieldOp::Get => {
                    return Reply::Int(if f.signed {
                        get_signed(v, f.offset, f.bits)
                    } else {
                        get_field(v, f.offset, f.bits) as i64
                    });
                }
                FieldOp::Set(x) => (0, Some(x)),
                FieldOp::IncrBy(x) => (x, None),
            };
            let (reply, new, over) = if f.signed {
                let old = get_signed(v, f.offset, f.bits);
                let (base, incr) = match set {
                    Some(x) => (x, 0),
                    None => (old, incr),
                };
                let over = signed_overflow(base, incr, f.bits, f.overflow);
                let new = over.unwrap_or(base.wrapping_add(incr));
                (
                    if set.is_some() { old } else { new },
                    new as u64,
                    over.is_some(),
                )
            } else {
                let old = get_field(v, f.offset, f.bits);
                let (base, incr) = match set {
                    Some(x) => (x as u64, 0),
                    None => (old, incr),
                };
                let over = unsigned_overflow(base, incr, f.bits, f.overflow);
                let new = over.unwrap_or(base.wrapping_add(incr as u64));
                let reply = if set.is_some() { old } else { new };
                (reply as i64, new, over.is_some())
            };
            if over && f.overflow == Overflow::Fail {
                return Reply::Nil;
            }
            set_field(v, f.offset, f.bits, new);
            Reply::Int(reply)
        })
        .collect()
}

fn bitfield_generic(s: &Store, a: &[Bytes], read_only: bool) -> CmdResult {
    let fields = parse_fields(a, read_only)?;
    let highest = fields
        .iter()
        .filter(|f| !matches!(f.op, FieldOp::Get))
        .map(|f| f.offset + f.bits as u64 - 1)
        .max();
    let Some(highest) = highest else {
        return s.read(&a[1], |e| {
            let v = match e {
                Some(e) => str_of(e)?.to_vec(),
                None => Vec::new(),
            };
            let mut v = v;
            Ok(Reply::Array(run_fields(&mut v, &fields)))
        });
    };
    // The string grows to the furthest field written, even if that write
    // then fails on overflow, as in Redis.
    edit_bits(s, &a[1], (highest / 8) as usize + 1, |v| {
        Reply::Array(run_fields(v, &fields))
    })
}

pub fn bitfield(s: &Store, a: &[Bytes]) -> CmdResult {
    bitfield_generic(s, a, false)
}

pub fn bitfield_ro(s: &Store, a: &[Bytes]) -> CmdResult {
    bitfield_generic(s, a, true)
}
