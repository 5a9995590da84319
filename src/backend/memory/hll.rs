//! HyperLogLog: PFADD, PFCOUNT, PFMERGE in Redis's own format, so that an
//! HLL's bytes (GET, STRLEN, DUMP) and counts are Redis's exactly.
//!
//! A value is a 16-byte header ("HYLL", the encoding, three unused bytes,
//! the cached cardinality in little-endian with its top bit marking it
//! stale) followed by the registers: *sparse* (run-length opcodes ZERO,
//! XZERO and VAL, for small sets) or *dense* (16384 six-bit registers).
//! A new HLL starts sparse and turns dense when a register passes 32 or the
//! value passes 3000 bytes (Redis's hll-sparse-max-bytes). A string that is
//! not a valid header is refused with WRONGTYPE, and a corrupt sparse body
//! with INVALIDOBJ, as in Redis, however it was written (SETRANGE, APPEND).

use bytes::Bytes;

use super::store::{Entry, Store, Value, ValueRef};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const MAGIC: &[u8] = b"HYLL";
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
/// Redis's hll-sparse-max-bytes default.
const SPARSE_MAX_BYTES: usize = 3000;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;

fn not_hll() -> CmdError {
    CmdError::msg("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

fn corrupt() -> CmdError {
    CmdError::msg("INVALIDOBJ Corrupted HLL object detected")
}

fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    for (i, &b) in rest.iter().enumerate().rev() {
        h ^= u64::from(b) << (8 * i);
    }
    if !rest.is_empty() {
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element updates and the value it offers.
fn position(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, (rest.trailing_zeros() + 1) as u8)
}

/// A sparse opcode at the start of `ops`: (registers covered, value,
/// bytes taken). An XZERO cut by the end of the value reads a zero byte
/// there, as Redis reads the string's terminator.
fn opcode(ops: &[u8]) -> Option<(usize, u8, usize)> {
    let b = *ops.first()?;
    Some(if b & 0x80 != 0 {
        (usize::from(b & 0x3) + 1, ((b >> 2) & 0x1f) + 1, 1)
    } else if b & 0xc0 == 0x40 {
        let low = ops.get(1).copied().unwrap_or(0);
        ((usize::from(b & 0x3f) << 8 | usize::from(low)) + 1, 0, 2)
    } else {
        (usize::from(b & 0x3f) + 1, 0, 1)
    })
}

fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len as u8 - 1)
}

/// ZERO or XZERO opcodes for a run of `len` zero registers.
fn zeros_op(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let l = len - 1;
        out.push(0x40 | (l >> 8) as u8);
        out.push((l & 0xff) as u8);
    } else {
        out.push(len as u8 - 1);
    }
}

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = u16::from(regs.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) as u8) & REGISTER_MAX
}

fn dense_set(regs: &mut [u8], i: usize, v: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = u16::from(v);
    if let Some(b) = regs.get_mut(byte) {
        *b &= !((u16::from(REGISTER_MAX) << fb) as u8);
        *b |= (v << fb) as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((u16::from(REGISTER_MAX) >> (8 - fb)) as u8);
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// An HLL value being read or changed.
struct Hll(Vec<u8>);

impl Hll {
    /// A new, empty HLL: sparse, one XZERO over every register, its cached
    /// cardinality valid (zero).
    fn new() -> Hll {
        let mut v = Vec::with_capacity(HEADER + 2);
        v.extend_from_slice(MAGIC);
        v.push(SPARSE);
        v.extend_from_slice(&[0; 11]);
        zeros_op(&mut v, XZERO_MAX_LEN);
        Hll(v)
    }

    /// Checks a string as Redis's isHLLObjectOrReply does: only the header
    /// and, for dense, the size.
    fn check(v: &[u8]) -> CmdResult<()> {
        let valid = v.len() >= HEADER
            && v.starts_with(MAGIC)
            && v[4] <= SPARSE
            && (v[4] != DENSE || v.len() == DENSE_SIZE);
        if valid { Ok(()) } else { Err(not_hll()) }
    }

    fn dense(&self) -> bool {
        self.0[4] == DENSE
    }

    fn invalidate(&mut self) {
        self.0[15] |= 0x80;
    }

    fn cached(&self) -> Option<u64> {
        (self.0[15] & 0x80 == 0).then(|| {
            let mut card = [0u8; 8];
            card.copy_from_slice(&self.0[8..16]);
            u64::from_le_bytes(card)
        })
    }

    fn cache(&mut self, card: u64) {
        self.0[8..16].copy_from_slice(&card.to_le_bytes());
    }

    /// Raises registers to the values in `max` wherever lower, as one
    /// merge: Err when the sparse body is corrupt.
    fn merge_into(&self, max: &mut [u8]) -> CmdResult<()> {
        if self.dense() {
            for (i, m) in max.iter_mut().enumerate() {
                *m = (*m).max(dense_get(&self.0[HEADER..], i));
            }
            return Ok(());
        }
        let mut ops = &self.0[HEADER..];
        let mut i = 0;
        while let Some((run, value, len)) = opcode(ops) {
            if value > 0 {
                if i + run > REGISTERS {
                    return Err(corrupt());
                }
                for m in &mut max[i..i + run] {
                    *m = (*m).max(value);
                }
            }
            i += run;
            ops = ops.get(len..).unwrap_or_default();
        }
        if i == REGISTERS {
            Ok(())
        } else {
            Err(corrupt())
        }
    }

    /// The registers' histogram; Err when a sparse body does not cover
    /// exactly every register.
    fn histogram(&self) -> CmdResult<[u32; 64]> {
        let mut histo = [0u32; 64];
        if self.dense() {
            for i in 0..REGISTERS {
                histo[usize::from(dense_get(&self.0[HEADER..], i))] += 1;
            }
            return Ok(histo);
        }
        let mut ops = &self.0[HEADER..];
        let mut i = 0usize;
        while let Some((run, value, len)) = opcode(ops) {
            i = i.saturating_add(run);
            histo[usize::from(value)] = histo[usize::from(value)].saturating_add(run as u32);
            ops = ops.get(len..).unwrap_or_default();
        }
        if i == REGISTERS {
            Ok(histo)
        } else {
            Err(corrupt())
        }
    }

    /// Turns a sparse HLL dense, keeping the header.
    fn make_dense(&mut self) -> CmdResult<()> {
        if self.dense() {
            return Ok(());
        }
        let mut dense = vec![0u8; DENSE_SIZE];
        dense[..HEADER].copy_from_slice(&self.0[..HEADER]);
        dense[4] = DENSE;
        let mut ops = &self.0[HEADER..];
        let mut i = 0;
        while let Some((run, value, len)) = opcode(ops) {
            if value > 0 {
                if i + run > REGISTERS {
                    return Err(corrupt());
                }
                for r in i..i + run {
                    dense_set(&mut dense[HEADER..], r, value);
                }
            }
            i += run;
            ops = ops.get(len..).unwrap_or_default();
        }
        if i != REGISTERS {
            return Err(corrupt());
        }
        self.0 = dense;
        Ok(())
    }

    /// Raises register `index` to `count`; whether it changed. Follows
    /// Redis's hllSparseSet step by step, so the bytes come out the same.
    fn set(&mut self, index: usize, count: u8) -> CmdResult<bool> {
        if self.dense() {
            let regs = &mut self.0[HEADER..];
            if dense_get(regs, index) >= count {
                return Ok(false);
            }
            dense_set(regs, index, count);
            return Ok(true);
        }
        if count > VAL_MAX_VALUE {
            return self.promote(index, count);
        }
        // Find the opcode covering the register.
        let end = self.0.len();
        let (mut p, mut first, mut prev) = (HEADER, 0usize, None);
        let (run, value, len) = loop {
            let Some((run, value, len)) = opcode(&self.0[p..]) else {
                return Err(corrupt());
            };
            if index < first + run {
                break (run, value, len);
            }
            prev = Some(p);
            p += len;
            first += run;
        };
        let is_val = self.0[p] & 0x80 != 0;
        if is_val && value >= count {
            return Ok(false);
        }
        if (is_val || len == 1) && run == 1 {
            self.0[p] = val_op(count, 1);
        } else {
            // Split the opcode around the register.
            let last = first + run - 1;
            let mut seq = Vec::with_capacity(5);
            if is_val {
                if index != first {
                    seq.push(val_op(value, index - first));
                }
                seq.push(val_op(count, 1));
                if index != last {
                    seq.push(val_op(value, last - index));
                }
            } else {
                if index != first {
                    zeros_op(&mut seq, index - first);
                }
                seq.push(val_op(count, 1));
                if index != last {
                    zeros_op(&mut seq, last - index);
                }
            }
            if seq.len() > len && end + seq.len() - len > SPARSE_MAX_BYTES {
                return self.promote(index, count);
            }
            // An XZERO cut by the end counts its missing byte, as Redis's
            // length arithmetic does.
            let cut = (p + len).saturating_sub(end);
            self.0.splice(p..(p + len).min(end), seq);
            self.0.truncate(self.0.len() - cut);
        }
        // Merge adjacent VAL opcodes of one value, from the previous opcode.
        let mut p = prev.unwrap_or(HEADER);
        let mut scan = 5;
        while p < self.0.len() && scan > 0 {
            scan -= 1;
            let b = self.0[p];
            if b & 0xc0 == 0x40 {
                p += 2;
                continue;
            }
            if b & 0x80 == 0 {
                p += 1;
                continue;
            }
            if let Some(&next) = self.0.get(p + 1) {
                if next & 0x80 != 0 {
                    let (r1, v1, _) = opcode(&[b]).unwrap_or((0, 0, 1));
                    let (r2, v2, _) = opcode(&[next]).unwrap_or((0, 0, 1));
                    if v1 == v2 && r1 + r2 <= VAL_MAX_LEN {
                        self.0[p + 1] = val_op(v1, r1 + r2);
                        self.0.remove(p);
                        continue;
                    }
                }
            }
            p += 1;
        }
        self.invalidate();
        Ok(true)
    }

    fn promote(&mut self, index: usize, count: u8) -> CmdResult<bool> {
        self.make_dense()?;
        let regs = &mut self.0[HEADER..];
        let changed = dense_get(regs, index) < count;
        dense_set(regs, index, count);
        Ok(changed)
    }
}

/// The HLL at a key (None when missing); WRONGTYPE for anything else.
fn load(s: &Store, key: &[u8]) -> CmdResult<Option<Hll>> {
    s.read(key, |e| match e.map(|e| e.value) {
        None => Ok(None),
        Some(ValueRef::Str(v)) => {
            Hll::check(v)?;
            Ok(Some(Hll(v.to_vec())))
        }
        Some(_) => Err(CmdError::WrongType),
    })
}

/// Stores an HLL, keeping the key's TTL.
fn save(s: &Store, key: &[u8], hll: Hll) {
    let value = Value::Str(Bytes::from(hll.0));
    s.write(key, |slot| match slot.as_mut() {
        Some(e) => e.value = value,
        None => *slot = Some(Entry::new(value)),
    });
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Redis's estimator (Ertl's improved raw estimate) over a histogram.
fn estimate(histo: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histo[Q as usize + 1])) / m);
    for j in (1..=Q as usize).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn histogram_of(regs: &[u8]) -> [u32; 64] {
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[usize::from(r & REGISTER_MAX)] += 1;
    }
    histo
}

pub fn pfadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let (mut hll, mut changed) = match load(s, &a[1])? {
        Some(h) => (h, false),
        None => (Hll::new(), true),
    };
    for e in &a[2..] {
        let (i, v) = position(e);
        match hll.set(i, v) {
            Ok(c) => changed |= c,
            Err(e) => {
                // Redis changes the value in place: what was added before
                // the corrupt part stays.
                if changed {
                    save(s, &a[1], hll);
                }
                return Err(e);
            }
        }
    }
    if changed {
        hll.invalidate();
        save(s, &a[1], hll);
    }
    Ok(Reply::Int(i64::from(changed)))
}

pub fn pfcount(s: &Store, a: &[Bytes]) -> CmdResult {
    if a.len() > 2 {
        let mut max = vec![0u8; REGISTERS];
        for k in &a[1..] {
            if let Some(h) = load(s, k)? {
                h.merge_into(&mut max)?;
            }
        }
        return Ok(Reply::Int(estimate(&histogram_of(&max)) as i64));
    }
    let Some(mut hll) = load(s, &a[1])? else {
        return Ok(Reply::Int(0));
    };
    if let Some(card) = hll.cached() {
        return Ok(Reply::Int(card as i64));
    }
    // Counting caches the result in the value, as Redis does.
    let card = estimate(&hll.histogram()?);
    hll.cache(card);
    save(s, &a[1], hll);
    Ok(Reply::Int(card as i64))
}

pub fn pfmerge(s: &Store, a: &[Bytes]) -> CmdResult {
    let mut max = vec![0u8; REGISTERS];
    let mut dense = false;
    // The destination takes part in the union, as in Redis.
    for k in &a[1..] {
        if let Some(h) = load(s, k)? {
            dense |= h.dense();
            h.merge_into(&mut max)?;
        }
    }
    let mut target = load(s, &a[1])?.unwrap_or_else(Hll::new);
    if dense {
        target.make_dense()?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m > 0 {
            // A corrupt target was refused by the merge above.
            let _ = target.set(i, m);
        }
    }
    target.invalidate();
    save(s, &a[1], target);
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(h: &Hll) -> u64 {
        estimate(&h.histogram().unwrap())
    }

    #[test]
    fn estimates_within_the_error_bound_sparse_then_dense() {
        let mut h = Hll::new();
        assert_eq!(count(&h), 0);
        for i in 0..100_000u32 {
            let (idx, v) = position(format!("element:{i}").as_bytes());
            h.set(idx, v).unwrap();
        }
        assert!(h.dense());
        let n = count(&h) as f64;
        assert!((n - 100_000.0).abs() / 100_000.0 < 0.02, "{n}");
    }

    #[test]
    fn a_new_hll_is_redis_empty_sparse_value() {
        assert_eq!(
            Hll::new().0,
            b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xff".to_vec()
        );
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut regs = vec![0u8; DENSE_SIZE - HEADER];
        for i in (0..REGISTERS).step_by(7) {
            dense_set(&mut regs, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            let want = if i % 7 == 0 { (i % 64) as u8 } else { 0 };
            assert_eq!(dense_get(&regs, i), want, "register {i}");
        }
    }

    #[test]
    fn corrupt_values_are_refused_not_panicked_on() {
        // SETRANGE over the encoding byte: not an HLL.
        let mut v = Hll::new().0;
        v[4] = b'x';
        assert_eq!(Hll::check(&v), Err(not_hll()));
        // A sparse body that covers too few registers.
        let mut h = Hll::new();
        h.0.truncate(HEADER + 1);
        assert_eq!(h.histogram(), Err(corrupt()));
        assert!(h.merge_into(&mut [0u8; REGISTERS]).is_err());
        assert!(h.make_dense().is_err());
        // No opcode at all covers the register.
        h.0.truncate(HEADER);
        assert_eq!(h.set(5, 3), Err(corrupt()));
        // Dense registers can hold any six bits: counted, never indexed out.
        let mut d = Hll::new();
        d.make_dense().unwrap();
        for b in &mut d.0[HEADER..] {
            *b = 0xff;
        }
        let _ = count(&d);
    }
}
