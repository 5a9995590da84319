//! Client request codec: RESP multibulk and inline commands.
//!
//! Requests are parsed here rather than with redis-protocol's decoder for two
//! reasons: Redis bounds bulk and multibulk lengths as soon as their headers
//! arrive (so a hostile `$4000000000` never makes us buffer gigabytes), and it
//! answers each malformation with a specific `Protocol error: …` text that
//! clients and tests rely on. redis-protocol is for the replies of upstream
//! servers (the redis backend), where any RESP2/RESP3 frame can appear.
//!
//! Each [`Request`] keeps the raw bytes it was parsed from, and its arguments
//! are zero-copy slices of those bytes, so a backend can forward a request
//! unchanged without re-encoding it.

// Every byte a client sends is read here first: no indexing that can
// panic and no arithmetic that can overflow, and the lints keep it so.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

/// Redis's PROTO_INLINE_MAX_SIZE: the longest header or inline line accepted.
const INLINE_MAX: usize = 64 * 1024;
/// Redis 7 refuses multibulk counts above INT_MAX; we also refuse anything
/// above this, which no real client sends, so that a count never drives an
/// allocation.
pub const MAX_MULTIBULK: i64 = 1024 * 1024;

/// A malformed request. Redis replies `-ERR Protocol error: <text>` and closes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("too big mbulk count string")]
    BigMultibulkCount,
    #[error("too big bulk count string")]
    BigBulkCount,
    #[error("too big inline request")]
    BigInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("unauthenticated multibulk length")]
    UnauthMultibulk,
    #[error("unauthenticated bulk length")]
    UnauthBulk,
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e.to_string())
    }
}

/// One client command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The bytes the command arrived as (for inline commands, the RESP
    /// multibulk encoding of its arguments, so it can be forwarded as well).
    pub raw: Bytes,
    /// The command name followed by its arguments; never empty.
    pub args: Vec<Bytes>,
}

impl Request {
    /// Builds a request from arguments, encoding its raw form.
    pub fn from_args(args: Vec<Bytes>) -> Request {
        Request {
            raw: encode_multibulk(&args),
            args,
        }
    }
}

/// Encodes arguments as a RESP multibulk of bulk strings.
pub fn encode_multibulk(args: &[Bytes]) -> Bytes {
    let len = args
        .iter()
        .fold(16usize, |n, a| n.saturating_add(a.len()).saturating_add(16));
    let mut out = BytesMut::with_capacity(len);
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"*");
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.extend_from_slice(b"$");
        out.extend_from_slice(num.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// Redis's limits for a client that has not authenticated yet (when a
/// password is set): a few small arguments are all AUTH and HELLO need, so
/// such a client cannot make keyway buffer more than a few hundred KB.
pub const UNAUTH_MAX_ARGS: usize = 10;
pub const UNAUTH_MAX_BULK: usize = 16 * 1024;

/// While a bulk string is incomplete, the room reserved for it at a time:
/// a header announcing 500 MB reserves nothing until the bytes come, as
/// Redis grows its query buffer.
const GROW_STEP: usize = 64 * 1024;

/// Decodes client requests. Empty requests (`*0`, blank inline lines) are
/// skipped, as Redis skips them.
///
/// A request that arrives in pieces is parsed incrementally: the codec
/// remembers how far it got (the argument count, the spans found so far and
/// the offset to resume at), so each byte is looked at once however small
/// the pieces are.
#[derive(Debug, Clone)]
pub struct RequestCodec {
    max_bulk_len: usize,
    authenticated: bool,
    /// Bounds on an unauthenticated client's requests: arguments, and
    /// bytes per argument.
    unauth_args: usize,
    unauth_bulk: usize,
    /// The multibulk request being parsed, if it is incomplete.
    partial: Option<Partial>,
    /// Spans (start, end) of the current request's arguments; kept between
    /// requests so that parsing does not allocate.
    spans: Vec<(usize, usize)>,
    /// Bytes of an inline request already searched for its end.
    inline_scanned: usize,
}

/// `inline_scanned` once a NUL byte was seen: the line cannot end.
const NUL_SEEN: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Arguments announced by the header.
    count: usize,
    /// Where the next argument's header starts.
    pos: usize,
}

impl RequestCodec {
    pub fn new(max_bulk_len: usize) -> Self {
        RequestCodec {
            max_bulk_len,
            authenticated: true,
            unauth_args: UNAUTH_MAX_ARGS,
            unauth_bulk: UNAUTH_MAX_BULK,
            partial: None,
            spans: Vec::new(),
            inline_scanned: 0,
        }
    }

    /// Whether the client has authenticated: until it has, requests are
    /// held to [`UNAUTH_MAX_ARGS`] arguments of [`UNAUTH_MAX_BULK`] bytes
    /// (or the bounds given to [`RequestCodec::unauthenticated_bounds`]).
    pub fn set_authenticated(&mut self, yes: bool) {
        self.authenticated = yes;
    }

    /// Sets the bounds on unauthenticated requests.
    pub fn unauthenticated_bounds(mut self, args: usize, bulk: usize) -> Self {
        self.unauth_args = args;
        self.unauth_bulk = bulk;
        self
    }

    /// Bytes the codec keeps besides the read buffer (for client memory).
    pub fn held(&self) -> usize {
        self.spans
            .capacity()
            .saturating_mul(std::mem::size_of::<(usize, usize)>())
    }
}

impl Default for RequestCodec {
    fn default() -> Self {
        RequestCodec::new(512 * 1024 * 1024)
    }
}

impl Decoder for RequestCodec {
    type Item = Request;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            let parsed = if buf.first() == Some(&b'*') {
                self.parse_multibulk(buf)?
            } else {
                self.parse_inline(buf)?
            };
            match parsed {
                Parsed::Incomplete => return Ok(None),
                Parsed::Empty(n) => buf.advance(n),
                Parsed::Request(req) => return Ok(Some(req)),
            }
        }
    }
}

enum Parsed {
    Incomplete,
    /// A request with no arguments, `n` bytes long: skipped.
    Empty(usize),
    Request(Request),
}

/// Finds `\r\n` from `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let at = i.checked_add(memchr(b'\r', buf.get(i..)?)?)?;
        let next = at.checked_add(1)?;
        match buf.get(next) {
            Some(b'\n') => return Some(at),
            Some(_) => i = next,
            None => return None,
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a decimal integer the way Redis's string2ll does: no sign on zero
/// padding, no spaces, no plus sign.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0', _, ..] => return None,
        [b'0'] if neg => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d.checked_sub(b'0').filter(|d| *d <= 9)?);
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

impl RequestCodec {
    fn parse_multibulk(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        let Partial { count, mut pos } = match self.partial.take() {
            Some(p) => p,
            None => {
                let Some(eol) = find_crlf(buf, 1) else {
                    if buf.len() > INLINE_MAX {
                        return Err(ProtocolError::BigMultibulkCount);
                    }
                    return Ok(Parsed::Incomplete);
                };
                let header = buf.get(1..eol).unwrap_or_default();
                let count = match parse_i64(header) {
                    Some(n) if n <= MAX_MULTIBULK => n,
                    _ => return Err(ProtocolError::MultibulkLength),
                };
                let after = eol.saturating_add(2);
                // At most MAX_MULTIBULK, checked above; zero or less is an
                // empty request, skipped.
                let Some(count) = usize::try_from(count).ok().filter(|&c| c > 0) else {
                    return Ok(Parsed::Empty(after));
                };
                if !self.authenticated && count > self.unauth_args {
                    return Err(ProtocolError::UnauthMultibulk);
                }
                self.spans.clear();
                Partial { count, pos: after }
            }
        };
        while self.spans.len() < count {
            let Some(&tag) = buf.get(pos) else {
                self.partial = Some(Partial { count, pos });
                return Ok(Parsed::Incomplete);
            };
            if tag != b'$' {
                return Err(ProtocolError::ExpectedBulk(tag as char));
            }
            let Some(eol) = find_crlf(buf, pos.saturating_add(1)) else {
                if buf.len().saturating_sub(pos) > INLINE_MAX {
                    return Err(ProtocolError::BigBulkCount);
                }
                self.partial = Some(Partial { count, pos });
                return Ok(Parsed::Incomplete);
            };
            let header = buf.get(pos.saturating_add(1)..eol).unwrap_or_default();
            let len = match parse_i64(header).and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n <= self.max_bulk_len => n,
                _ => return Err(ProtocolError::BulkLength),
            };
            if !self.authenticated && len > self.unauth_bulk {
                return Err(ProtocolError::UnauthBulk);
            }
            let start = eol.saturating_add(2);
            let stop = start.saturating_add(len);
            // Like Redis, the two bytes after the payload are skipped unread.
            let end = stop.saturating_add(2);
            if buf.len() < end {
                // Room for what comes next, a step at a time (the buffer
                // doubles as it fills): a header alone never makes keyway
                // reserve the length it announces.
                let missing = end.saturating_sub(buf.len());
                if buf.capacity().saturating_sub(buf.len()) < missing {
                    buf.reserve(missing.min(GROW_STEP));
                }
                self.partial = Some(Partial { count, pos });
                return Ok(Parsed::Incomplete);
            }
            self.spans.push((start, stop));
            pos = end;
        }
        let raw = buf.split_to(pos).freeze();
        // Every span lies inside `raw`: each was checked against the buffer.
        let args = self
            .spans
            .iter()
            .map(|&(s, e)| raw.get(s..e).map(|b| raw.slice_ref(b)).unwrap_or_default())
            .collect();
        self.spans.clear();
        if self.spans.capacity() > 1024 {
            // A huge request's list is not kept for the next small one.
            self.spans = Vec::new();
        }
        Ok(Parsed::Request(Request { raw, args }))
    }

    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        // Redis finds the end of an inline request with strchr, which stops
        // at a NUL byte: a line with a NUL before its newline never ends,
        // and the client is refused once it has sent too much.
        if self.inline_scanned != NUL_SEEN {
            let from = self.inline_scanned.min(buf.len());
            let rest = buf.get(from..).unwrap_or_default();
            match rest.iter().position(|&b| b == b'\n' || b == 0) {
                Some(p) if rest.get(p) == Some(&b'\n') => {
                    return self.inline_line(buf, from.saturating_add(p));
                }
                Some(_) => self.inline_scanned = NUL_SEEN,
                None => self.inline_scanned = buf.len(),
            }
        }
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::BigInline);
        }
        Ok(Parsed::Incomplete)
    }

    fn inline_line(&mut self, buf: &mut BytesMut, nl: usize) -> Result<Parsed, ProtocolError> {
        self.inline_scanned = 0;
        let line = buf.split_to(nl.saturating_add(1).min(buf.len()));
        let text = line.get(..nl).unwrap_or_default();
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let args = split_args(text).ok_or(ProtocolError::UnbalancedQuotes)?;
        if args.is_empty() {
            return Ok(Parsed::Empty(0));
        }
        Ok(Parsed::Request(Request::from_args(args)))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline command line the way Redis's sdssplitargs does: words
/// separated by blanks, "double quotes" with C escapes (\n, \xHH, ...) and
/// 'single quotes'. Returns None on unbalanced quotes, or a closing quote
/// not followed by a blank.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        while rest.first().is_some_and(u8::is_ascii_whitespace) {
            rest = rest.get(1..)?;
        }
        // As in C, where sdssplitargs runs, a NUL ends the line.
        match rest.first() {
            None | Some(0) => return Some(out),
            Some(_) => {}
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                match rest {
                    [] => return None,
                    [b'\\', b'x', h, l, tail @ ..]
                        if hex_digit(*h).is_some() && hex_digit(*l).is_some() =>
                    {
                        let (h, l) = (hex_digit(*h)?, hex_digit(*l)?);
                        cur.push(h.wrapping_mul(16).wrapping_add(l));
                        rest = tail;
                    }
                    [b'\\', c, tail @ ..] => {
                        cur.push(match c {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => *other,
                        });
                        rest = tail;
                    }
                    [b'"', tail @ ..] => {
                        // A closing quote must be followed by a blank.
                        if tail.first().is_some_and(|c| !c.is_ascii_whitespace()) {
                            return None;
                        }
                        rest = tail;
                        break;
                    }
                    [c, tail @ ..] => {
                        cur.push(*c);
                        rest = tail;
                    }
                }
            } else if in_sq {
                match rest {
                    [] => return None,
                    [b'\\', b'\'', tail @ ..] => {
                        cur.push(b'\'');
                        rest = tail;
                    }
                    [b'\'', tail @ ..] => {
                        if tail.first().is_some_and(|c| !c.is_ascii_whitespace()) {
                            return None;
                        }
                        rest = tail;
                        break;
                    }
                    [c, tail @ ..] => {
                        cur.push(*c);
                        rest = tail;
                    }
                }
            } else {
                match rest {
                    [] | [b' ' | b'\n' | b'\r' | b'\t' | 0, ..] => break,
                    [b'"', tail @ ..] => {
                        in_dq = true;
                        rest = tail;
                    }
                    [b'\'', tail @ ..] => {
                        in_sq = true;
                        rest = tail;
                    }
                    [c, tail @ ..] => {
                        cur.push(*c);
                        rest = tail;
                    }
                }
            }
        }
        out.push(Bytes::from(cur));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut codec = RequestCodec::new(1024);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = codec.decode(&mut buf)? {
            out.push(r.args);
        }
        Ok(out)
    }

    #[test]
    fn multibulk_keeps_raw_bytes() {
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let r = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&r.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(r.args, vec![Bytes::from("GET"), Bytes::from("k")]);
        let r = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.args, vec![Bytes::from("PING")]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn requests_with_many_arguments_keep_them_in_order() {
        let args: Vec<Bytes> = (0..21).map(|i| Bytes::from(format!("a{i}"))).collect();
        let raw = encode_multibulk(&args);
        assert_eq!(decode_all(&raw).unwrap(), vec![args.clone()]);
        // Cut anywhere, the request waits for the rest, then decodes whole.
        for cut in 1..raw.len() {
            let mut codec = RequestCodec::default();
            let mut buf = BytesMut::from(&raw[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&raw[cut..]);
            let r = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(r.args, args);
            assert_eq!(r.raw, raw);
        }
    }

    #[test]
    fn partial_input_waits() {
        let full = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            let mut codec = RequestCodec::default();
            let mut buf = BytesMut::from(&full[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "cut {cut}");
            buf.extend_from_slice(&full[cut..]);
            assert!(codec.decode(&mut buf).unwrap().is_some(), "cut {cut}");
        }
    }

    #[test]
    fn inline_commands_and_quotes() {
        let got = decode_all(b"SET k \"a b\\x41\\n\" \r\nGET 'it\\'s'\n\r\n").unwrap();
        assert_eq!(
            got[0],
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("a bA\n")]
        );
        assert_eq!(got[1], vec![Bytes::from("GET"), Bytes::from("it's")]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            decode_all(b"GET \"abc\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            decode_all(b"GET \"a\"b\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn malformed_input_errors() {
        assert_eq!(decode_all(b"*x\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(
            decode_all(b"*2000000\r\n"),
            Err(ProtocolError::MultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n:1\r\n"),
            Err(ProtocolError::ExpectedBulk(':'))
        );
        assert_eq!(decode_all(b"*1\r\n$-1\r\n"), Err(ProtocolError::BulkLength));
        // Over the configured maximum: refused from the header alone.
        assert_eq!(
            decode_all(b"*1\r\n$2000\r\n"),
            Err(ProtocolError::BulkLength)
        );
        assert_eq!(
            decode_all(&[b'*'; 70000]),
            Err(ProtocolError::BigMultibulkCount)
        );
        assert_eq!(decode_all(&[b'x'; 70000]), Err(ProtocolError::BigInline));
        assert!(decode_all(b"*0\r\n*-1\r\n").unwrap().is_empty());
    }

    #[test]
    fn a_nul_byte_in_an_inline_request_waits_as_in_redis() {
        // Redis's strchr stops at the NUL: no newline is ever found, nothing
        // is answered, and past 64 KB the client is refused.
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::from(&b"PING\x00\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"PING\r\n");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&vec![b'x'; INLINE_MAX]);
        assert_eq!(codec.decode(&mut buf), Err(ProtocolError::BigInline));
        // The splitter itself ends a line at a NUL, as C does.
        assert_eq!(
            split_args(b"AUTH\x00 more"),
            Some(vec![Bytes::from("AUTH")])
        );
        assert_eq!(split_args(b"\x00"), Some(vec![]));
        assert_eq!(split_args(b"a \x00\x00 b"), Some(vec![Bytes::from("a")]));
    }

    #[test]
    fn a_bulk_header_reserves_only_what_has_arrived() {
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$535822336\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 1 << 20, "reserved {}", buf.capacity());
        // Then it grows with the data, at most doubling.
        for _ in 0..64 {
            buf.extend_from_slice(&[b'a'; 16 * 1024]);
            assert!(codec.decode(&mut buf).unwrap().is_none());
            assert!(
                buf.capacity() <= 2 * (buf.len() + GROW_STEP),
                "{}",
                buf.capacity()
            );
        }
    }

    #[test]
    fn a_request_in_pieces_is_parsed_where_it_stopped() {
        let args: Vec<Bytes> = (0..1000).map(|i| Bytes::from(format!("v{i}"))).collect();
        let raw = encode_multibulk(&args);
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::new();
        let mut resumed_at = 0;
        for chunk in raw.chunks(7) {
            buf.extend_from_slice(chunk);
            if let Some(r) = codec.decode(&mut buf).unwrap() {
                assert_eq!(r.args, args);
                assert_eq!(r.raw, raw);
                assert!(buf.is_empty());
                return;
            }
            // Progress is kept: the next call starts after the last
            // complete argument instead of at the request's start.
            let at = codec.partial.map_or(0, |p| p.pos);
            assert!(at >= resumed_at, "went back from {resumed_at} to {at}");
            resumed_at = at;
        }
        panic!("never decoded");
    }

    #[test]
    fn unauthenticated_clients_get_redis_bounds() {
        let mut codec = RequestCodec::default();
        codec.set_authenticated(false);
        let ok = encode_multibulk(&vec![Bytes::from("a"); UNAUTH_MAX_ARGS]);
        let mut buf = BytesMut::from(&ok[..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
        let many = encode_multibulk(&vec![Bytes::from("a"); UNAUTH_MAX_ARGS + 1]);
        let mut buf = BytesMut::from(&many[..]);
        assert_eq!(codec.decode(&mut buf), Err(ProtocolError::UnauthMultibulk));
        for (len, ok) in [
            (UNAUTH_MAX_BULK - 1, true),
            (UNAUTH_MAX_BULK, true),
            (UNAUTH_MAX_BULK + 1, false),
        ] {
            let mut codec = RequestCodec::default();
            codec.set_authenticated(false);
            let req = encode_multibulk(&[Bytes::from("AUTH"), Bytes::from(vec![b'p'; len])]);
            let mut buf = BytesMut::from(&req[..]);
            match codec.decode(&mut buf) {
                Ok(Some(r)) => assert!(ok, "{len}: {:?}", r.args.len()),
                Err(e) => {
                    assert!(!ok, "{len}");
                    assert_eq!(e, ProtocolError::UnauthBulk);
                    assert_eq!(e.to_string(), "unauthenticated bulk length");
                }
                Ok(None) => panic!("{len}: incomplete"),
            }
        }
        // Authenticated, the same request is fine.
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::from(&many[..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"01", b"-0", b"+1", b" 1", b"1x", b"-"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
