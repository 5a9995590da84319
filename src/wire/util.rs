//! Small helpers shared by the router and the backends: argument parsing
//! with Redis's error texts, glob patterns, random numbers, the net that
//! catches a panic.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;

use crate::wire::error::{CmdError, CmdResult};
use crate::wire::protocol::parse_i64;

/// An integer argument, or Redis's "value is not an integer" error.
pub fn int_arg(b: &[u8]) -> CmdResult<i64> {
    parse_i64(b).ok_or(CmdError::NotInteger)
}

/// An integer within `min..=max`, as Redis's getRangeLongFromObjectOrReply
/// reads it: with `msg`, that one text answers both a non-number and a
/// number out of range; without, Redis's two texts.
pub fn range_arg(b: &[u8], min: i64, max: i64, msg: Option<&str>) -> CmdResult<i64> {
    let fail = |default: String| CmdError::msg(msg.map_or(default, |m| format!("ERR {m}")));
    let n =
        parse_i64(b).ok_or_else(|| fail("ERR value is not an integer or out of range".into()))?;
    if n < min || n > max {
        return Err(fail(format!(
            "ERR value is out of range, value must between {min} and {max}"
        )));
    }
    Ok(n)
}

/// A count that must be 0 or more (getPositiveLongFromObjectOrReply).
pub fn positive_arg(b: &[u8], msg: Option<&str>) -> CmdResult<i64> {
    range_arg(
        b,
        0,
        i64::MAX,
        Some(msg.unwrap_or("value is out of range, must be positive")),
    )
}

/// Reads all of `t` as C's strtod does: decimal or hexadecimal (`0x1.8p3`)
/// digits, `inf`/`infinity`/`nan` in any case, an optional sign. Returns
/// the value and whether it is out of range (errno's ERANGE: a finite text
/// too large, or non-zero digits that round to zero); None unless every
/// byte was read.
pub fn strtod(t: &str) -> Option<(f64, bool)> {
    if let Some(x) = hex_float(t) {
        return Some((x, x.is_infinite()));
    }
    // Rust's float grammar is C's for decimal text, less the blanks (which
    // callers handle) and with "infinity"/"nan" read alike.
    let x: f64 = t.parse().ok()?;
    let lower = t.to_ascii_lowercase();
    let named = lower.contains("inf") || lower.contains("nan");
    let overflow = x.is_infinite() && !named;
    let underflow = x == 0.0
        && t.bytes()
            .take_while(|c| !matches!(c, b'e' | b'E'))
            .any(|c| (b'1'..=b'9').contains(&c));
    Some((x, overflow || underflow))
}

/// The longest start of `s` that C's strtod reads as a number, with its
/// value and length (blanks before it are not skipped); None when strtod
/// would read nothing.
pub fn strtod_prefix(s: &[u8]) -> Option<(f64, usize)> {
    let starts = |at: usize, word: &str| {
        s.len() >= at + word.len() && s[at..at + word.len()].eq_ignore_ascii_case(word.as_bytes())
    };
    let digits = |mut at: usize, hex: bool| {
        let from = at;
        while s.get(at).is_some_and(|c| {
            if hex {
                c.is_ascii_hexdigit()
            } else {
                c.is_ascii_digit()
            }
        }) {
            at += 1;
        }
        (at, at - from)
    };
    let sign = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let neg = s.first() == Some(&b'-');
    let signed = |x: f64| if neg { -x } else { x };
    if starts(sign, "infinity") {
        return Some((signed(f64::INFINITY), sign + 8));
    }
    if starts(sign, "inf") {
        return Some((signed(f64::INFINITY), sign + 3));
    }
    if starts(sign, "nan") {
        let mut end = sign + 3;
        if s.get(end) == Some(&b'(') {
            if let Some(close) = s[end..].iter().position(|&c| c == b')') {
                if s[end + 1..end + close]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    end += close + 1;
                }
            }
        }
        return Some((f64::NAN, end));
    }
    let hex = starts(sign, "0x");
    let base = if hex { sign + 2 } else { sign };
    let (mut at, int_digits) = digits(base, hex);
    let mut frac_digits = 0;
    if s.get(at) == Some(&b'.') {
        let (end, n) = digits(at + 1, hex);
        if int_digits + n > 0 {
            at = end;
            frac_digits = n;
        }
    }
    if int_digits + frac_digits == 0 {
        // "0x" with no hex digit reads as the "0".
        return hex.then_some((signed(0.0), sign + 1));
    }
    let exp = if hex { b'p' } else { b'e' };
    if s.get(at).is_some_and(|c| c.to_ascii_lowercase() == exp) {
        let esign = usize::from(matches!(s.get(at + 1), Some(b'+' | b'-')));
        let (end, n) = digits(at + 1 + esign, false);
        if n > 0 {
            at = end;
        }
    }
    let text = std::str::from_utf8(&s[..at]).ok()?;
    let x = if hex {
        hex_float(text)?
    } else {
        text.parse().ok()?
    };
    Some((x, at))
}

/// strtod's hexadecimal form: [sign] 0x digits [. digits] [p exponent].
fn hex_float(t: &str) -> Option<f64> {
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let rest = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))?;
    let (mantissa, exp) = match rest.find(['p', 'P']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut x = 0f64;
    for c in int.chars() {
        x = x * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        x += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let x = x * 2f64.powi(exp);
    Some(if neg { -x } else { x })
}

/// Parses a float the way Redis's getDoubleFromObject does: strtod over
/// the whole argument, which must not be empty or start with a blank, be
/// NaN, or be out of range. `inf`, `-inf` and hex floats are accepted.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.as_bytes()[0].is_ascii_whitespace() || s.as_bytes()[0] == 0x0b {
        return None;
    }
    match strtod(s)? {
        (x, false) if !x.is_nan() => Some(x),
        _ => None,
    }
}

/// One end of a score range as Redis's zslParseRangeItem reads it: strtod
/// over the whole text, leading blanks allowed, and an empty text is 0.
pub fn parse_range_f64(b: &[u8]) -> Option<f64> {
    // Redis reads the item as a C string: a NUL ends it.
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() {
        return Some(0.0);
    }
    // strtod skips blanks, but when nothing follows them it read nothing.
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
    strtod(t).map(|(x, _)| x).filter(|x| !x.is_nan())
}

pub fn float_arg(b: &[u8]) -> CmdResult<f64> {
    parse_f64(b).ok_or(CmdError::NotFloat)
}

/// Case-insensitive comparison of an argument with an upper-case option,
/// as Redis's strcasecmp makes it: the argument ends at a NUL byte.
pub fn is(arg: &[u8], option: &str) -> bool {
    let arg = match arg.iter().position(|&c| c == 0) {
        Some(end) => &arg[..end],
        None => arg,
    };
    arg.eq_ignore_ascii_case(option.as_bytes())
}

pub fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// A uniformly distributed number in `0..n` (n > 0); not cryptographic.
pub fn random_below(n: u64) -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((r as u128 * n as u128) >> 64) as u64
    })
}

/// Redis glob matching (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes), as KEYS,
/// SCAN MATCH and CONFIG GET use it.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[p] == '['`; returns
/// whether it matched and the index after the class.
fn class_match(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = pattern.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut matched = false;
    while j < pattern.len() && pattern[j] != b']' {
        if pattern[j] == b'\\' && j + 1 < pattern.len() {
            matched |= pattern[j + 1] == c;
            j += 2;
        } else if j + 2 < pattern.len() && pattern[j + 1] == b'-' && pattern[j + 2] != b']' {
            let (a, b) = (
                pattern[j].min(pattern[j + 2]),
                pattern[j].max(pattern[j + 2]),
            );
            matched |= (a..=b).contains(&c);
            j += 3;
        } else {
            matched |= pattern[j] == c;
            j += 1;
        }
    }
    // An unterminated class matches like Redis: up to the end of the pattern.
    let next = if j < pattern.len() { j + 1 } else { j };
    Some((matched != negate, next))
}

/// Escapes glob metacharacters so that `s` matches only itself.
pub fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    for &c in s {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

/// A container command's subcommand, upper case, once known and its
/// arity checked: (name, arguments, exactly that many or at least), with
/// Redis's texts for an unknown one and for a wrong count.
pub fn subcommand(a: &[Bytes], cmd: &str, arities: &[(&str, usize, bool)]) -> CmdResult<String> {
    let sub = upper(&a[1]);
    let Some(&(_, n, exact)) = arities.iter().find(|(name, ..)| *name == sub) else {
        return Err(CmdError::UnknownSubcommand {
            cmd: cmd.into(),
            sub: crate::wire::error::lossy(&a[1], 128),
        });
    };
    if a.len() < n || (exact && a.len() != n) {
        return Err(CmdError::WrongArity(format!(
            "{}|{}",
            cmd.to_lowercase(),
            sub.to_lowercase()
        )));
    }
    Ok(sub)
}

/// A future whose panic is caught and returned as its message: the net
/// under a client's commands, so that a bug in one command fails that
/// command (or that client) instead of the process's worker thread.
pub struct CatchUnwind<F>(pub F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        // The future is not polled again after a panic: it is dropped.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// Runs `f`, turning a panic into its message.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// TIME's reply: the Unix time in seconds and microseconds, as strings.
pub fn time() -> crate::wire::reply::Reply {
    use crate::wire::reply::Reply;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(bytes(&now.as_secs().to_string())),
        Reply::Bulk(bytes(&now.subsec_micros().to_string())),
    ])
}

pub fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

thread_local! {
    /// The time `now_ms` gives while `at_one_instant` runs on this thread.
    static FROZEN: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (which must not await) with `now_ms` fixed at the time it
/// starts, as Redis fixes the time for the length of a command: a pipelined
/// batch of the memory backend's commands reads the clock once, not once
/// per command (a clock read was 3% of the CPU of GET at pipeline 16).
pub fn at_one_instant<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FROZEN.set(self.0);
        }
    }
    let now = now_ms();
    let _restore = Restore(FROZEN.replace(Some(now)));
    f()
}

/// Milliseconds since the Unix epoch, read through tokio's clock so that
/// tests can pause and advance time.
pub fn now_ms() -> u64 {
    if let Some(now) = FROZEN.get() {
        return now;
    }
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};
    // Nanoseconds in i64 (enough until 2262): i128 arithmetic compiled to
    // a software division, a visible cost on every memory-backend read.
    static BASE: OnceLock<(i64, tokio::time::Instant)> = OnceLock::new();
    let (unix_ns, at) = BASE.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        (unix, tokio::time::Instant::now())
    });
    // Signed: a paused test runtime's clock may stand before the base.
    let now = tokio::time::Instant::now();
    let delta = if now >= *at {
        now.duration_since(*at).as_nanos() as i64
    } else {
        -(at.duration_since(now).as_nanos() as i64)
    };
    (unix_ns + delta).div_euclid(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_the_longest_number_it_can() {
        assert_eq!(strtod_prefix(b"2-0"), Some((2.0, 1)));
        assert_eq!(strtod_prefix(b"-0"), Some((-0.0, 2)));
        assert_eq!(strtod_prefix(b"1.5e3x"), Some((1500.0, 5)));
        assert_eq!(strtod_prefix(b"1e+"), Some((1.0, 1)));
        assert_eq!(strtod_prefix(b".5"), Some((0.5, 2)));
        assert_eq!(strtod_prefix(b"0x1p4"), Some((16.0, 5)));
        assert_eq!(strtod_prefix(b"0xg"), Some((0.0, 1)));
        assert_eq!(strtod_prefix(b"-Infinity!"), Some((f64::NEG_INFINITY, 9)));
        assert_eq!(strtod_prefix(b"+inf"), Some((f64::INFINITY, 4)));
        assert!(strtod_prefix(b"nan(x1)").is_some_and(|(x, n)| x.is_nan() && n == 7));
        for none in [&b""[..], b"-", b".", b"e5", b"+."] {
            assert_eq!(
                strtod_prefix(none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
    }

    #[test]
    fn floats_read_as_strtod_reads_them() {
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"-0x1.8p1"), Some(-3.0));
        assert_eq!(parse_f64(b"INF"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"1e308"), Some(1e308));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"1e400",
            b"1e-400",
            b"0x",
            b"1x",
            b"--1",
        ] {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_f64(b"0e-400"), Some(0.0));
        assert_eq!(parse_range_f64(b""), Some(0.0));
        assert_eq!(parse_range_f64(b"  2"), Some(2.0));
        assert_eq!(parse_range_f64(b"\x0c\r"), None);
        assert_eq!(parse_range_f64(b"\x00junk"), Some(0.0));
        assert_eq!(parse_range_f64(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_range_f64(b"2 "), None);
        assert_eq!(parse_range_f64(b"nan"), None);
    }

    #[test]
    fn the_clock_stands_still_at_one_instant_and_only_then() {
        let pause = || std::thread::sleep(std::time::Duration::from_millis(3));
        let (inside, later) = at_one_instant(|| {
            let first = now_ms();
            pause();
            (first, now_ms())
        });
        assert_eq!(inside, later);
        pause();
        assert!(now_ms() > later, "the clock runs again after");
        // A panic inside does not leave the clock stopped.
        let _ = std::panic::catch_unwind(|| at_one_instant(|| panic!("in a command")));
        let before = now_ms();
        pause();
        assert!(now_ms() > before);
    }

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("user:*:name", "user:42:name"));
        assert!(!m("user:*:name", "user:42:age"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("abc", "ab"));
        let esc = glob_escape(b"p*[x]:");
        assert!(glob_match(&[&esc[..], b"*"].concat(), b"p*[x]:key"));
        assert!(!glob_match(&[&esc[..], b"*"].concat(), b"pz[x]:key"));
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"abc"), None);
    }

    #[test]
    fn random_is_in_range() {
        for _ in 0..1000 {
            assert!(random_below(7) < 7);
        }
    }
}
