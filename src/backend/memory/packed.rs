//! Redis's packed encodings as they appear in DUMP payloads and RDB files:
//! listpacks (read and written: streams are stored in them), and the
//! ziplists and intsets of payloads from older servers (read only).
//!
//! Everything read here came from a client or a file: every length is
//! checked against the bytes actually there, nothing is reserved from a
//! claimed count, and a malformed blob is None, never a panic.

use bytes::Bytes;

/// An element of a packed blob: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Str(Bytes),
    Int(i64),
}

impl Item {
    /// As Redis shows it: integers in decimal.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Item::Str(b) => b,
            Item::Int(n) => Bytes::from(n.to_string()),
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Item::Int(n) => Some(*n),
            Item::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        }
    }
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The bytes a listpack element's back-length takes for an element of
/// `len` bytes (encoding and data), with Redis's thresholds.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Every element of a listpack, in order.
pub fn listpack(lp: &[u8]) -> Option<Vec<Item>> {
    let total = usize::try_from(le(lp.get(..4)?)).ok()?;
    if total != lp.len() || lp.last() != Some(&0xff) {
        return None;
    }
    let mut at = 6usize;
    let mut out = Vec::new();
    loop {
        let b = *lp.get(at)?;
        if b == 0xff {
            return (at + 1 == lp.len()).then_some(out);
        }
        let (item, len) = match b {
            0x00..=0x7f => (Item::Int(i64::from(b)), 1),
            0x80..=0xbf => {
                let n = usize::from(b & 0x3f);
                (Item::Str(bytes_at(lp, at + 1, n)?), 1 + n)
            }
            0xc0..=0xdf => {
                let v = (u64::from(b & 0x1f) << 8) | u64::from(*lp.get(at + 1)?);
                (Item::Int(signed(v, 13)), 2)
            }
            0xe0..=0xef => {
                let n = (usize::from(b & 0x0f) << 8) | usize::from(*lp.get(at + 1)?);
                (Item::Str(bytes_at(lp, at + 2, n)?), 2 + n)
            }
            0xf0 => {
                let n = usize::try_from(le(lp.get(at + 1..at + 5)?)).ok()?;
                (Item::Str(bytes_at(lp, at + 5, n)?), 5 + n)
            }
            0xf1..=0xf4 => {
                let width = match b {
                    0xf1 => 2,
                    0xf2 => 3,
                    0xf3 => 4,
                    _ => 8,
                };
                let v = le(lp.get(at + 1..at + 1 + width)?);
                (Item::Int(signed(v, 8 * width as u32)), 1 + width)
            }
            _ => return None,
        };
        out.push(item);
        at = at.checked_add(len)?.checked_add(backlen_size(len))?;
    }
}

fn bytes_at(b: &[u8], at: usize, n: usize) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(b.get(at..at.checked_add(n)?)?))
}

/// Every element of a ziplist (payloads of Redis before 7.0), in order.
pub fn ziplist(zl: &[u8]) -> Option<Vec<Item>> {
    let total = usize::try_from(le(zl.get(..4)?)).ok()?;
    if total != zl.len() || zl.last() != Some(&0xff) {
        return None;
    }
    let mut at = 10usize;
    let mut out = Vec::new();
    loop {
        let first = *zl.get(at)?;
        if first == 0xff {
            return (at + 1 == zl.len()).then_some(out);
        }
        // The previous entry's length: 1 byte, or 0xfe and 4.
        at += if first == 0xfe { 5 } else { 1 };
        let b = *zl.get(at)?;
        let (item, len) = match b >> 6 {
            0 => {
                let n = usize::from(b & 0x3f);
                (Item::Str(bytes_at(zl, at + 1, n)?), 1 + n)
            }
            1 => {
                let n = (usize::from(b & 0x3f) << 8) | usize::from(*zl.get(at + 1)?);
                (Item::Str(bytes_at(zl, at + 2, n)?), 2 + n)
            }
            2 => {
                let raw = zl.get(at + 1..at + 5)?;
                let n = u32::from_be_bytes(raw.try_into().ok()?) as usize;
                (Item::Str(bytes_at(zl, at + 5, n)?), 5 + n)
            }
            _ => match b {
                0xc0 => (Item::Int(signed(le(zl.get(at + 1..at + 3)?), 16)), 3),
                0xd0 => (Item::Int(signed(le(zl.get(at + 1..at + 5)?), 32)), 5),
                0xe0 => (Item::Int(signed(le(zl.get(at + 1..at + 9)?), 64)), 9),
                0xf0 => (Item::Int(signed(le(zl.get(at + 1..at + 4)?), 24)), 4),
                0xfe => (Item::Int(signed(le(zl.get(at + 1..at + 2)?), 8)), 2),
                0xf1..=0xfd => (Item::Int(i64::from(b & 0x0f) - 1), 1),
                _ => return None,
            },
        };
        out.push(item);
        at = at.checked_add(len)?;
    }
}

/// The members of an intset.
pub fn intset(is: &[u8]) -> Option<Vec<i64>> {
    let width = usize::try_from(le(is.get(..4)?)).ok()?;
    let n = usize::try_from(le(is.get(4..8)?)).ok()?;
    if !matches!(width, 2 | 4 | 8) || n.checked_mul(width)?.checked_add(8)? != is.len() {
        return None;
    }
    Some(
        is[8..]
            .chunks_exact(width)
            .map(|c| signed(le(c), 8 * width as u32))
            .collect(),
    )
}

/// Builds a listpack.
pub struct ListpackWriter {
    buf: Vec<u8>,
    count: usize,
}

impl Default for ListpackWriter {
    fn default() -> Self {
        ListpackWriter {
            buf: vec![0; 6],
            count: 0,
        }
    }
}

impl ListpackWriter {
    fn backlen(&mut self, len: usize) {
        // Read right to left, 7 bits a byte: the byte nearest the element
        // holds the highest bits and no continuation bit, as Redis writes.
        let n = backlen_size(len);
        for i in 0..n {
            let group = ((len >> (7 * (n - 1 - i))) & 0x7f) as u8;
            self.buf.push(if i == 0 { group } else { group | 0x80 });
        }
    }

    pub fn int(&mut self, v: i64) {
        if (0..=127).contains(&v) {
            self.buf.push(v as u8);
            self.backlen(1);
        } else {
            self.buf.push(0xf4);
            self.buf.extend_from_slice(&v.to_le_bytes());
            self.backlen(9);
        }
        self.count += 1;
    }

    pub fn str(&mut self, s: &[u8]) {
        let header = match s.len() {
            n @ 0..=63 => vec![0x80 | n as u8],
            n @ 64..=4095 => vec![0xe0 | (n >> 8) as u8, (n & 0xff) as u8],
            n => {
                let mut h = vec![0xf0];
                h.extend_from_slice(&(n as u32).to_le_bytes());
                h
            }
        };
        let len = header.len() + s.len();
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(s);
        self.backlen(len);
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xff);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let n = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[4..6].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpacks_round_trip() {
        let mut w = ListpackWriter::default();
        let long = vec![b'x'; 16_380];
        let mid = vec![b'y'; 300];
        for v in [0, 127, 128, -1, i64::MIN, i64::MAX] {
            w.int(v);
        }
        w.str(b"");
        w.str(&mid);
        w.str(&long);
        let lp = w.finish();
        let items = listpack(&lp).unwrap();
        assert_eq!(
            items,
            vec![
                Item::Int(0),
                Item::Int(127),
                Item::Int(128),
                Item::Int(-1),
                Item::Int(i64::MIN),
                Item::Int(i64::MAX),
                Item::Str(Bytes::new()),
                Item::Str(Bytes::from(mid)),
                Item::Str(Bytes::from(long)),
            ]
        );
        assert_eq!(listpack(&lp[..lp.len() - 1]), None);
    }

    #[test]
    fn redis_encodings_are_read() {
        // A listpack redis-server 7.0 wrote for RPUSH l a 1 -1000 (13-bit
        // int, then a 6-bit string and a 7-bit uint).
        let lp = [
            0x11, 0, 0, 0, 3, 0, 0x81, b'a', 2, 0x01, 1, 0xdc, 0x18, 2, 0xff,
        ];
        let mut fixed = lp.to_vec();
        fixed[0] = fixed.len() as u8;
        assert_eq!(
            listpack(&fixed).unwrap(),
            vec![
                Item::Str(Bytes::from_static(b"a")),
                Item::Int(1),
                Item::Int(-1000)
            ]
        );
        // An intset of 16-bit members.
        let is = [2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 5, 0];
        assert_eq!(intset(&is), Some(vec![-1, 5]));
        assert_eq!(intset(&is[..10]), None);
        // A ziplist: "ab", 12 (immediate), -2 (int8).
        let zl = [
            0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0x02, b'a', b'b', 4, 0xfd, 2, 0xfe, 0xfe, 0xff,
        ];
        let mut fixed = zl.to_vec();
        fixed[0] = fixed.len() as u8;
        assert_eq!(
            ziplist(&fixed).unwrap(),
            vec![
                Item::Str(Bytes::from_static(b"ab")),
                Item::Int(12),
                Item::Int(-2)
            ]
        );
    }
}
