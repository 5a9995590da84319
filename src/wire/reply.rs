//! Replies, and their encoding as RESP2 or RESP3.
//!
//! A [`Reply`] says what Redis would answer, in terms that encode to either
//! protocol: RESP2 tells a null bulk string (`$-1`) from a null array (`*-1`)
//! and has no maps, sets, doubles or booleans, so those are mapped the way
//! Redis maps them for a RESP2 client.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`: a status reply such as OK or PONG.
    Status(Bytes),
    /// `-text`: built only through [`Reply::error`], which keeps it on one line.
    Error(Bytes),
    Int(i64),
    Bulk(Bytes),
    /// Null bulk string in RESP2 (`$-1`).
    Nil,
    /// Null array in RESP2 (`*-1`).
    NilArray,
    Array(Vec<Reply>),
    /// A flat array of pairs in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// An array in RESP2.
    Set(Vec<Reply>),
    /// Pairs such as HRANDFIELD's WITHVALUES: an array of two-element
    /// arrays in RESP3, one flat array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
    /// A bulk string in RESP2.
    Double(f64),
    /// An integer 1/0 in RESP2.
    Bool(bool),
    /// A `txt` verbatim string in RESP3, a bulk string in RESP2.
    Verbatim(Bytes),
    /// An out-of-band push (pub/sub) in RESP3, an array in RESP2.
    Push(Vec<Reply>),
    /// Bytes already encoded for the client's protocol, forwarded untouched.
    Raw(Bytes),
}

impl Reply {
    pub const fn ok() -> Reply {
        Reply::Status(Bytes::from_static(b"OK"))
    }

    /// A HELP reply: one status line each, as Redis writes them.
    pub fn help(lines: &[&'static str]) -> Reply {
        Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
    }

    pub fn status(s: &'static str) -> Reply {
        Reply::Status(Bytes::from_static(s.as_bytes()))
    }

    /// The one way to build an error reply: a RESP error must be one line, so
    /// CR and LF at its end go and those inside become spaces, as Redis
    /// makes them. `msg` starts with its code (`ERR`, `WRONGTYPE`).
    pub fn error(msg: impl AsRef<str>) -> Reply {
        let msg = msg.as_ref().trim_end_matches(['\r', '\n']);
        let clean: String = msg
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        Reply::Error(Bytes::from(clean))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn bulk_str(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn opt_bulk(b: Option<Bytes>) -> Reply {
        b.map_or(Reply::Nil, Reply::Bulk)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// About how many bytes the reply takes encoded (and held), for the
    /// limits on what a client makes keyway hold.
    pub fn size(&self) -> usize {
        const HEAD: usize = 16;
        match self {
            Reply::Status(b) | Reply::Error(b) | Reply::Bulk(b) | Reply::Verbatim(b) => {
                HEAD + b.len()
            }
            Reply::Raw(b) => b.len(),
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                HEAD + items.iter().map(Reply::size).sum::<usize>()
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => {
                HEAD + pairs
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
            Reply::Int(_) | Reply::Nil | Reply::NilArray | Reply::Double(_) | Reply::Bool(_) => {
                HEAD
            }
        }
    }

    /// Encodes the reply for a client speaking RESP3 (`resp3`) or RESP2.
    pub fn encode(&self, resp3: bool, out: &mut BytesMut) {
        match self {
            Reply::Status(s) => line(out, b'+', s),
            Reply::Error(s) => line(out, b'-', s),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b'$', b),
            Reply::Nil if resp3 => out.put_slice(b"_\r\n"),
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::NilArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NilArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                items.iter().for_each(|r| r.encode(resp3, out));
            }
            Reply::Set(items) => {
                int_line(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                items.iter().for_each(|r| r.encode(resp3, out));
            }
            Reply::Push(items) => {
                int_line(out, if resp3 { b'>' } else { b'*' }, items.len() as i64);
                items.iter().for_each(|r| r.encode(resp3, out));
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', pairs.len() as i64);
                } else {
                    int_line(out, b'*', pairs.len() as i64 * 2);
                }
                for (k, v) in pairs {
                    k.encode(resp3, out);
                    v.encode(resp3, out);
                }
            }
            Reply::Pairs(pairs) => {
                if resp3 {
                    int_line(out, b'*', pairs.len() as i64);
                } else {
                    int_line(out, b'*', pairs.len() as i64 * 2);
                }
                for (k, v) in pairs {
                    if resp3 {
                        out.put_slice(b"*2\r\n");
                    }
                    k.encode(resp3, out);
                    v.encode(resp3, out);
                }
            }
            Reply::Double(d) => {
                let s = format_double(*d);
                if resp3 {
                    line(out, b',', s.as_bytes());
                } else {
                    bulk(out, b'$', s.as_bytes());
                }
            }
            Reply::Bool(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Bool(b) => int_line(out, b':', *b as i64),
            Reply::Verbatim(b) if resp3 => {
                int_line(out, b'=', b.len() as i64 + 4);
                out.put_slice(b"txt:");
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Verbatim(b) => bulk(out, b'$', b),
            Reply::Raw(b) => out.put_slice(b),
        }
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Self {
        Reply::Int(n)
    }
}

fn line(out: &mut BytesMut, tag: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, tag: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    line(out, tag, buf.format(n).as_bytes());
}

fn bulk(out: &mut BytesMut, tag: u8, b: &[u8]) {
    int_line(out, tag, b.len() as i64);
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Formats a double as Redis 7.2+ does: the shortest text that reads back as
/// the same value, `inf`/`-inf`/`nan`, and C-style exponents for very large
/// or small magnitudes.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-5..1e17).contains(&abs) {
        // Rust writes 1e21 / 1.5e-7; C's %g writes 1e+21 / 1.5e-07.
        let s = format!("{d:e}");
        if let Some((mant, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mant}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, resp3: bool) -> String {
        let mut b = BytesMut::new();
        r.encode(resp3, &mut b);
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn encodes_both_protocols() {
        let m = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, false), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, true), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Nil, false), "$-1\r\n");
        assert_eq!(enc(&Reply::NilArray, false), "*-1\r\n");
        assert_eq!(enc(&Reply::Nil, true), "_\r\n");
        assert_eq!(enc(&Reply::Double(1.5), false), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), true), ",1.5\r\n");
        assert_eq!(enc(&Reply::error("ERR a\r\nb"), false), "-ERR a  b\r\n");
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(10.6), "10.6");
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(1.5e-7), "1.5e-07");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
    }
}
