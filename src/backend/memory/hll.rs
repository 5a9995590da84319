//! HyperLogLog: PFADD, PFCOUNT, PFMERGE, with Redis's hash (MurmurHash64A),
//! register layout (16384 registers, 50-bit run length) and estimator, so
//! counts match Redis's exactly. Values are strings starting "HYLL"; the
//! registers are kept one per byte rather than packed.

use bytes::Bytes;

use super::store::{Entry, Store, Value, ValueRef};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const MAGIC: &[u8] = b"HYLL";
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

fn not_hll() -> CmdError {
    CmdError::msg("WRONGTYPE Key is not a valid HyperLogLog string value.")
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

/// The registers of the string at a key (None when missing).
fn load(s: &Store, key: &[u8]) -> CmdResult<Option<Vec<u8>>> {
    s.read(key, |e| match e.map(|e| e.value) {
        None => Ok(None),
        Some(ValueRef::Str(v)) if v.starts_with(MAGIC) && v.len() == MAGIC.len() + REGISTERS => {
            Ok(Some(v[MAGIC.len()..].to_vec()))
        }
        Some(ValueRef::Str(_)) => Err(not_hll()),
        Some(_) => Err(CmdError::WrongType),
    })
}

fn save(regs: &[u8]) -> Value {
    let mut v = Vec::with_capacity(MAGIC.len() + REGISTERS);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(regs);
    Value::Str(Bytes::from(v))
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

/// Redis's estimator (Ertl's improved raw estimate) over the registers.
fn estimate(regs: &[u8]) -> u64 {
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[r as usize] += 1;
    }
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histo[Q as usize + 1])) / m);
    for j in (1..=Q as usize).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

pub fn pfadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let existing = load(s, &a[1])?;
    let created = existing.is_none();
    let mut regs = existing.unwrap_or_else(|| vec![0; REGISTERS]);
    let mut changed = created;
    for e in &a[2..] {
        let (i, v) = position(e);
        if regs[i] < v {
            regs[i] = v;
            changed = true;
        }
    }
    if changed {
        s.write(&a[1], |slot| match slot.as_mut() {
            Some(e) => e.value = save(&regs),
            None => *slot = Some(Entry::new(save(&regs))),
        });
    }
    Ok(Reply::Int(changed as i64))
}

fn union(s: &Store, keys: &[Bytes]) -> CmdResult<Vec<u8>> {
    let mut regs = vec![0u8; REGISTERS];
    for k in keys {
        if let Some(r) = load(s, k)? {
            for (a, b) in regs.iter_mut().zip(r) {
                *a = (*a).max(b);
            }
        }
    }
    Ok(regs)
}

pub fn pfcount(s: &Store, a: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(estimate(&union(s, &a[1..])?) as i64))
}

pub fn pfmerge(s: &Store, a: &[Bytes]) -> CmdResult {
    // The destination takes part in the union, as in Redis.
    let regs = union(s, &a[1..])?;
    s.write(&a[1], |slot| match slot.as_mut() {
        Some(e) => e.value = save(&regs),
        None => *slot = Some(Entry::new(save(&regs))),
    });
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_within_the_error_bound() {
        let mut regs = vec![0u8; REGISTERS];
        for i in 0..100_000u32 {
            let (idx, v) = position(format!("element:{i}").as_bytes());
            regs[idx] = regs[idx].max(v);
        }
        let n = estimate(&regs) as f64;
        assert!((n - 100_000.0).abs() / 100_000.0 < 0.02, "{n}");
        assert_eq!(estimate(&vec![0u8; REGISTERS]), 0);
    }
}
