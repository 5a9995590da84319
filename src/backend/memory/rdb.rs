//! The bits of Redis's RDB format that DUMP-style payloads need: length
//! and string encodings (with LZF-compressed strings read, never written),
//! the version and CRC64 footer. Used by FUNCTION DUMP and RESTORE, and by
//! DUMP and RESTORE of keys (`dump.rs`), whose payloads move between
//! keyway and Redis in both directions.
//!
//! Everything here reads bytes a client sent: bounded and checked, never
//! indexed blindly.

use bytes::{Bytes, BytesMut};

/// The RDB version Redis 7.0 writes (and the highest it reads): what
/// keyway writes, so that 7.0 and later take its payloads.
pub const RDB_VERSION: u16 = 10;
/// The highest version keyway reads: Redis 7.2's (set listpacks, streams
/// with consumers' active time).
pub const RDB_VERSION_READ: u16 = 11;
/// The opcode before each library's code in a functions payload.
const OPCODE_FUNCTION2: u8 = 245;

/// Redis's CRC64 (Jones polynomial, reflected, as crc64.c computes it).
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    data.iter().fold(0u64, |crc, &b| {
        table[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

pub fn put_len(out: &mut BytesMut, n: usize) {
    if n < 1 << 6 {
        out.extend_from_slice(&[n as u8]);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, (n & 0xff) as u8]);
    } else if let Ok(n) = u32::try_from(n) {
        out.extend_from_slice(&[0x80]);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.extend_from_slice(&[0x81]);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

/// A string, as an integer when it is one Redis would store so (what
/// Redis writes for "123"), else as its bytes.
pub fn put_string(out: &mut BytesMut, s: &[u8]) {
    let int = (s.len() <= 11)
        .then(|| std::str::from_utf8(s).ok()?.parse::<i64>().ok())
        .flatten()
        .filter(|n| n.to_string().as_bytes() == s);
    match int {
        Some(n) if i8::try_from(n).is_ok() => out.extend_from_slice(&[0xc0, n as i8 as u8]),
        Some(n) if i16::try_from(n).is_ok() => {
            out.extend_from_slice(&[0xc1]);
            out.extend_from_slice(&(n as i16).to_le_bytes());
        }
        Some(n) if i32::try_from(n).is_ok() => {
            out.extend_from_slice(&[0xc2]);
            out.extend_from_slice(&(n as i32).to_le_bytes());
        }
        _ => {
            put_len(out, s.len());
            out.extend_from_slice(s);
        }
    }
}

/// Appends the version and CRC64 that end a payload.
pub fn seal(mut out: BytesMut) -> Bytes {
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.freeze()
}

/// FUNCTION DUMP's payload for libraries of `codes`.
pub fn dump_functions(codes: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for code in codes {
        out.extend_from_slice(&[OPCODE_FUNCTION2]);
        put_len(&mut out, code.len());
        out.extend_from_slice(code);
    }
    seal(out)
}

/// A reader over a payload's body.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// A length, or the special encoding that replaces it (Err).
    pub fn len(&mut self) -> Option<Result<usize, u8>> {
        let b = self.byte()?;
        Some(match b >> 6 {
            0 => Ok(usize::from(b & 0x3f)),
            1 => Ok((usize::from(b & 0x3f) << 8) | usize::from(self.byte()?)),
            2 if b == 0x80 => {
                let v = self.take(4)?;
                Ok(u32::from_be_bytes(v.try_into().ok()?) as usize)
            }
            2 if b == 0x81 => {
                let v = self.take(8)?;
                Ok(usize::try_from(u64::from_be_bytes(v.try_into().ok()?)).ok()?)
            }
            2 => return None,
            _ => Err(b & 0x3f),
        })
    }

    /// A plain length (not a special encoding).
    pub fn count(&mut self) -> Option<usize> {
        self.len()?.ok()
    }

    pub fn string(&mut self) -> Option<Bytes> {
        self.string_at_most(MAX_STRING)
    }

    /// A string; a compressed one unpacking past `max` bytes is refused
    /// before it is unpacked.
    pub fn string_at_most(&mut self, max: usize) -> Option<Bytes> {
        match self.len()? {
            Ok(n) => self.take(n).map(Bytes::copy_from_slice),
            Err(0) => Some(Bytes::from((self.byte()? as i8).to_string())),
            Err(1) => {
                let v = self.take(2)?;
                Some(Bytes::from(
                    i16::from_le_bytes(v.try_into().ok()?).to_string(),
                ))
            }
            Err(2) => {
                let v = self.take(4)?;
                Some(Bytes::from(
                    i32::from_le_bytes(v.try_into().ok()?).to_string(),
                ))
            }
            Err(3) => {
                let clen = self.len()?.ok()?;
                let len = self.len()?.ok()?;
                let data = self.take(clen)?;
                lzf_decompress(data, len, max).map(Bytes::from)
            }
            Err(_) => None,
        }
    }
}

/// The largest string a payload may unpack to: Redis's largest string.
const MAX_STRING: usize = 512 << 20;
/// The largest library code a payload may unpack to: a library's Lua
/// state may hold 64 MB, so a larger one could never load.
const MAX_CODE: usize = 64 << 20;

/// LZF's decompression, as Redis's lzf_d.c; None for corrupt input or a
/// result other than `len` bytes (which bounds what is allocated).
fn lzf_decompress(input: &[u8], len: usize, max: usize) -> Option<Vec<u8>> {
    // A compressed string expands at most about 264 times; a claimed length
    // beyond that is corrupt, whatever it asks to allocate.
    if len > input.len().saturating_mul(264).saturating_add(64) || len > max {
        return None;
    }
    // Grown as bytes come out, not reserved from the claimed length.
    let mut out = Vec::with_capacity(len.min(input.len().saturating_mul(2)));
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(*input.get(ip)?);
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(ip..ip.checked_add(run)?)?);
            ip += run;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += usize::from(*input.get(ip)?);
                ip += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(ip)?) + 1;
            ip += 1;
            let start = out.len().checked_sub(back)?;
            for i in 0..n + 2 {
                let b = *out.get(start + i)?;
                out.push(b);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// A payload's body, when its version (at most `max_version`) and
/// checksum are right, as Redis's verifyDumpPayload checks them.
pub fn verified(payload: &[u8], max_version: u16) -> Option<&[u8]> {
    let body_len = payload.len().checked_sub(10)?;
    let (body, footer) = payload.split_at(body_len);
    let version = u16::from_le_bytes(footer.get(..2)?.try_into().ok()?);
    let crc = u64::from_le_bytes(footer.get(2..10)?.try_into().ok()?);
    if version > max_version || crc64(payload.get(..body_len + 2)?) != crc {
        return None;
    }
    Some(body)
}

/// The libraries' code in a FUNCTION DUMP payload (Redis's or keyway's);
/// None when its version or checksum is wrong, or it is not one.
pub fn restore_functions(payload: &[u8]) -> Option<Vec<Bytes>> {
    let mut r = Reader(verified(payload, RDB_VERSION)?);
    let mut codes = Vec::new();
    while let Some(op) = r.byte() {
        if op != OPCODE_FUNCTION2 {
            return None;
        }
        codes.push(r.string_at_most(MAX_CODE)?);
    }
    Some(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_s() {
        // crc64.c's own test vector.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn payloads_round_trip_and_refuse_damage() {
        let codes = vec![
            Bytes::from_static(
                b"#!lua name=a\nredis.register_function('f', function() return 1 end)",
            ),
            Bytes::from(vec![b'x'; 20000]),
        ];
        let p = dump_functions(&codes);
        assert_eq!(restore_functions(&p), Some(codes));
        let mut bad = p.to_vec();
        bad[3] ^= 1;
        assert_eq!(restore_functions(&bad), None);
        assert_eq!(restore_functions(b"short"), None);
    }

    #[test]
    fn a_claimed_length_past_what_code_may_be_is_corrupt() {
        // A run of one literal byte, then back-references repeating it.
        let mut input = vec![0u8, b'x'];
        for _ in 0..100 {
            input.extend_from_slice(&[0xe0, 255, 0]);
        }
        let out = lzf_decompress(&input, 1 + 100 * 264, MAX_CODE).expect("as long as claimed");
        assert!(out.iter().all(|&b| b == b'x'));
        assert_eq!(lzf_decompress(&input, 1 + 100 * 264 + 1, MAX_CODE), None);
        assert_eq!(lzf_decompress(&input, MAX_CODE + 1, MAX_CODE), None);
        let big = vec![0u8; (MAX_CODE / 264) + 1];
        assert_eq!(lzf_decompress(&big, MAX_CODE + 1, MAX_CODE), None);
    }

    #[test]
    fn lzf_strings_as_redis_writes_them() {
        // "aaaaaaaaaa" compressed: a literal 'a', then a back-reference.
        assert_eq!(
            lzf_decompress(&[0x00, b'a', 0xe0, 0x01, 0x00], 10, MAX_CODE),
            None
        );
        assert_eq!(
            lzf_decompress(&[0x00, b'a', 0xc0, 0x00], 9, MAX_CODE).as_deref(),
            Some(&b"aaaaaaaaa"[..])
        );
        assert_eq!(lzf_decompress(&[0x20, 0x05], 4, MAX_CODE), None);
    }
}
