//! Small helpers shared by the router and the backends: argument parsing
//! with Redis's error texts, glob patterns, random numbers, the net that
//! catches a panic.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;

use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;

/// An integer argument, or Redis's "value is not an integer" error.
pub fn int_arg(b: &[u8]) -> CmdResult<i64> {
    parse_i64(b).ok_or(CmdError::NotInteger)
}

/// Parses a float the way Redis's string2ld does: no spaces, no NaN,
/// `inf`/`-inf` accepted.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.bytes().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        l if l.contains("inf") || l.contains("nan") => return None,
        _ => s.parse().ok()?,
    };
    Some(v)
}

pub fn float_arg(b: &[u8]) -> CmdResult<f64> {
    parse_f64(b).ok_or(CmdError::NotFloat)
}

/// Case-insensitive comparison of an argument with an upper-case option.
pub fn is(arg: &[u8], option: &str) -> bool {
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
