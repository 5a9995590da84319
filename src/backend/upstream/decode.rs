//! Replies from a RESP2 or RESP3 server, decoded with redis-protocol: kept
//! as the server's bytes when keyway need not read them, structured when
//! it must.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode as resp2_decode;
use redis_protocol::resp2::types::RangeFrame as Range2;
use redis_protocol::resp3::decode::complete as resp3_decode;
use redis_protocol::resp3::types::RangeFrame as Range3;

use crate::wire::reply::Reply;

/// Decodes one reply from the front of `buf`, or None when it is not all
/// there yet. Uninspected replies stay the server's bytes, forwarded as they
/// are; the connection speaks the client's protocol, so they fit.
///
/// The reply's extent is found first by [`measure`], which keeps its own
/// stack: redis-protocol's decoder recurses once per nesting level, and a
/// script's reply may nest thousands deep (`local t = {} t[1] = t return
/// t` gives 7,995 levels), which would overflow the thread's stack. Such a
/// reply is forwarded as it came; one keyway must read is decoded only when
/// it is no deeper than [`INSPECT_DEPTH`].
pub fn decode(buf: &mut BytesMut, resp3: bool, inspect: bool) -> Result<Option<Reply>, String> {
    let Some((len, depth)) = measure(buf, resp3)? else {
        return Ok(None);
    };
    let raw = buf.split_to(len).freeze();
    if !inspect {
        return Ok(Some(Reply::Raw(raw)));
    }
    if depth > INSPECT_DEPTH {
        return Ok(Some(Reply::error(format!(
            "ERR backend reply nests {depth} levels deep, more than keyway reads ({INSPECT_DEPTH})"
        ))));
    }
    let bad = |e: redis_protocol::error::RedisProtocolError| format!("protocol error: {e}");
    if resp3 {
        let Some((frame, _)) = resp3_decode::decode_range(&raw).map_err(bad)? else {
            return Err("protocol error: reply measured whole but not decoded".into());
        };
        Ok(Some(from_resp3(&raw, &frame)))
    } else {
        let Some((frame, _)) = resp2_decode::decode_range(&raw).map_err(bad)? else {
            return Err("protocol error: reply measured whole but not decoded".into());
        };
        let mut nulls = null_kinds(&raw).into_iter();
        Ok(Some(from_resp2(&raw, &frame, &mut nulls)))
    }
}

/// How deep a reply keyway reads (to merge it or map keys back) may nest;
/// Redis's own replies nest a few levels.
pub const INSPECT_DEPTH: usize = 128;

/// The length of the reply at the front of `buf` and how deep it nests, or
/// None while it is not all there. Iterative, so any depth is safe.
pub fn measure(buf: &[u8], resp3: bool) -> Result<Option<(usize, usize)>, String> {
    // Elements still to come in each open aggregate, innermost last.
    let mut open: Vec<u64> = Vec::new();
    let mut deepest = 0;
    let mut at = 0;
    loop {
        let Some(kind) = buf.get(at).copied() else {
            return Ok(None);
        };
        let Some(eol) = memchr_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = &buf[at + 1..at + eol];
        at += eol + 2;
        let count = |line: &[u8]| -> Result<i64, String> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| "protocol error: bad length".to_string())
        };
        let resp3_only = matches!(
            kind,
            b'_' | b',' | b'#' | b'(' | b'=' | b'!' | b'%' | b'~' | b'>' | b'|'
        );
        if resp3_only && !resp3 {
            return Err(format!(
                "protocol error: RESP3 type '{}' on a RESP2 connection",
                kind as char
            ));
        }
        let elements: u64 = match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => 0,
            b'$' | b'=' | b'!' => {
                let n = count(line)?;
                if n >= 0 {
                    let n = usize::try_from(n).map_err(|_| "protocol error: bad length")?;
                    let end = at.checked_add(n).and_then(|e| e.checked_add(2));
                    let Some(end) = end else {
                        return Err("protocol error: bad length".into());
                    };
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err("protocol error: bulk string not ended by CRLF".into());
                    }
                    at = end;
                }
                0
            }
            b'*' | b'~' | b'>' => u64::try_from(count(line)?).unwrap_or(0),
            // A map's pairs; an attribute's pairs and the reply they
            // describe, which together are one element of their parent.
            b'%' => u64::try_from(count(line)?).unwrap_or(0).saturating_mul(2),
            b'|' => u64::try_from(count(line)?)
                .unwrap_or(0)
                .saturating_mul(2)
                .saturating_add(1),
            other => return Err(format!("protocol error: unknown type byte {other:#04x}")),
        };
        if elements > 0 {
            open.push(elements);
            deepest = deepest.max(open.len());
            continue;
        }
        // One element done: close every aggregate it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some((at, deepest))),
                Some(left) if *left > 1 => {
                    *left -= 1;
                    break;
                }
                Some(_) => {
                    open.pop();
                }
            }
        }
    }
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, b"\r\n")
}

fn sl(raw: &Bytes, r: &(usize, usize)) -> Bytes {
    raw.slice(r.0..r.1)
}

/// RESP2 has two nulls (`$-1` and `*-1`) that the decoded frame does not
/// tell apart: for each null in the reply, in order, whether it is `*-1`.
fn null_kinds(raw: &[u8]) -> Vec<bool> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let Some(end) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let line = &raw[at..at + end];
        at += end + 2;
        match line {
            b"*-1" => kinds.push(true),
            b"$-1" => kinds.push(false),
            [b'$', len @ ..] => {
                let n = std::str::from_utf8(len)
                    .ok()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                at += n + 2;
            }
            _ => {}
        }
    }
    kinds
}

fn from_resp2(raw: &Bytes, f: &Range2, nulls: &mut std::vec::IntoIter<bool>) -> Reply {
    match f {
        Range2::SimpleString(r) => Reply::Status(sl(raw, r)),
        // Already one line: it came as a RESP error.
        Range2::Error(r) => Reply::Error(sl(raw, r)),
        Range2::Integer(n) => Reply::Int(*n),
        Range2::BulkString(r) => Reply::Bulk(sl(raw, r)),
        Range2::Array(items) => {
            Reply::Array(items.iter().map(|i| from_resp2(raw, i, nulls)).collect())
        }
        Range2::Null if nulls.next() == Some(true) => Reply::NilArray,
        Range2::Null => Reply::Nil,
    }
}

fn from_resp3(raw: &Bytes, f: &Range3) -> Reply {
    let all = |items: &[Range3]| items.iter().map(|i| from_resp3(raw, i)).collect();
    match f {
        Range3::BlobString { data, .. } => Reply::Bulk(sl(raw, data)),
        Range3::BlobError { data, .. } | Range3::SimpleError { data, .. } => {
            Reply::Error(sl(raw, data))
        }
        Range3::SimpleString { data, .. } => Reply::Status(sl(raw, data)),
        Range3::Boolean { data, .. } => Reply::Bool(*data),
        Range3::Null => Reply::Nil,
        Range3::Number { data, .. } => Reply::Int(*data),
        Range3::Double { data, .. } => Reply::Double(*data),
        Range3::BigNumber { data, .. } => {
            let mut b = BytesMut::from(&b"("[..]);
            b.extend_from_slice(&sl(raw, data));
            b.extend_from_slice(b"\r\n");
            Reply::Raw(b.freeze())
        }
        Range3::VerbatimString { data, .. } => Reply::Verbatim(sl(raw, data)),
        Range3::Array { data, .. } => Reply::Array(all(data)),
        Range3::Set { data, .. } => Reply::Set(data.iter().map(|i| from_resp3(raw, i)).collect()),
        Range3::Push { data, .. } => Reply::Push(all(data)),
        Range3::Map { data, .. } => Reply::Map(
            data.iter()
                .map(|(k, v)| (from_resp3(raw, k), from_resp3(raw, v)))
                .collect(),
        ),
        _ => Reply::error("ERR unsupported RESP3 frame from backend"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str, resp3: bool) -> Option<Reply> {
        let mut b = BytesMut::from(s.as_bytes());
        decode(&mut b, resp3, true).unwrap()
    }

    #[test]
    fn decodes_replies() {
        assert_eq!(dec("*-1\r\n", false), Some(Reply::NilArray));
        assert_eq!(dec("$-1\r\n", false), Some(Reply::Nil));
        assert_eq!(
            dec("*2\r\n$1\r\na\r\n$-1\r\n", false),
            Some(Reply::Array(vec![Reply::bulk_str("a"), Reply::Nil]))
        );
        assert_eq!(dec("*2\r\n$1\r\na\r\n", false), None);
        assert_eq!(
            dec("*3\r\n*-1\r\n$2\r\n\r\n\r\n$-1\r\n", false),
            Some(Reply::Array(vec![
                Reply::NilArray,
                Reply::bulk_str("\r\n"),
                Reply::Nil
            ]))
        );
        assert_eq!(
            dec("-ERR x\r\n", false),
            Some(Reply::Error(Bytes::from("ERR x")))
        );
        assert_eq!(
            dec("%1\r\n+a\r\n,1.5\r\n", true),
            Some(Reply::Map(vec![(Reply::status("a"), Reply::Double(1.5))]))
        );
        let mut b = BytesMut::from(&b":1\r\n:2\r\n"[..]);
        assert_eq!(
            decode(&mut b, false, false).unwrap(),
            Some(Reply::Raw(Bytes::from(":1\r\n")))
        );
        assert_eq!(&b[..], b":2\r\n");
    }

    #[test]
    fn measures_every_shape_and_waits_for_the_rest() {
        let m = |s: &str, resp3| measure(s.as_bytes(), resp3).unwrap();
        assert_eq!(m("+OK\r\n", false), Some((5, 0)));
        assert_eq!(m("+OK\r", false), None);
        assert_eq!(m("$3\r\nab", false), None);
        assert_eq!(m("$2\r\n\r\n\r\n:1\r\n", false), Some((8, 0)));
        assert_eq!(m("*0\r\n", false), Some((4, 0)));
        assert_eq!(m("*-1\r\n", false), Some((5, 0)));
        assert_eq!(m("*2\r\n*1\r\n:1\r\n$-1\r\n", false), Some((17, 2)));
        assert_eq!(m("*2\r\n*1\r\n:1\r\n", false), None);
        // RESP3: a map counts pairs; an attribute and the reply it
        // describes are one element.
        assert_eq!(m("%1\r\n+a\r\n,1.5\r\n", true), Some((14, 1)));
        assert_eq!(
            m("*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n#t\r\n", true),
            Some((24, 2))
        );
        assert_eq!(m("=7\r\ntxt:abc\r\n_\r\n", true), Some((13, 0)));
        assert!(measure(b"%1\r\n", false).is_err());
        assert!(measure(b"?1\r\n", true).is_err());
        assert!(measure(b"$2\r\nabc\r\n", false).is_err());
        assert!(measure(b"$x\r\n", false).is_err());
    }

    /// A reply nested far deeper than any stack allows when decoded by
    /// recursion: measured, forwarded as it came, and refused where keyway
    /// would have to read it.
    #[test]
    fn deep_replies_are_forwarded_or_refused_never_recursed() {
        let depth = 200_000;
        let mut deep = "*1\r\n".repeat(depth);
        deep.push_str(":1\r\n");
        assert_eq!(
            measure(deep.as_bytes(), false).unwrap(),
            Some((deep.len(), depth))
        );
        let mut b = BytesMut::from(deep.as_bytes());
        assert!(
            matches!(decode(&mut b, false, false), Ok(Some(Reply::Raw(r))) if r.len() == deep.len())
        );
        let mut b = BytesMut::from(deep.as_bytes());
        match decode(&mut b, true, true) {
            Ok(Some(Reply::Error(e))) => {
                assert!(e.starts_with(b"ERR backend reply nests 200000 levels"))
            }
            other => panic!("{other:?}"),
        }
        assert!(b.is_empty());
    }
}
