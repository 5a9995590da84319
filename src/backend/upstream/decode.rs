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
pub fn decode(buf: &mut BytesMut, resp3: bool, inspect: bool) -> Result<Option<Reply>, String> {
    let bad = |e: redis_protocol::error::RedisProtocolError| format!("protocol error: {e}");
    if resp3 {
        let Some((frame, len)) = resp3_decode::decode_range(buf).map_err(bad)? else {
            return Ok(None);
        };
        let raw = buf.split_to(len).freeze();
        if !inspect {
            return Ok(Some(Reply::Raw(raw)));
        }
        Ok(Some(from_resp3(&raw, &frame)))
    } else {
        let Some((frame, len)) = resp2_decode::decode_range(buf).map_err(bad)? else {
            return Ok(None);
        };
        let raw = buf.split_to(len).freeze();
        if !inspect {
            return Ok(Some(Reply::Raw(raw)));
        }
        let mut nulls = null_kinds(&raw).into_iter();
        Ok(Some(from_resp2(&raw, &frame, &mut nulls)))
    }
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
}
