//! What a client may make keyway hold, as Redis bounds it: output buffer
//! limits per class of client (`client_output_buffer_limit`), the memory of
//! all clients together (`max_memory_clients`, Redis 7's maxmemory-clients)
//! and the bookkeeping behind both.
//!
//! A client's memory is its read and write buffers, the messages queued for
//! it, and a fixed amount for its connection. The total is counted apart
//! from the data (see [`crate::alloc`]), so that client buffers never count
//! against the memory backend's `max_memory`: no client, authenticated or
//! not, can make another client's write fail by what it sends or fails to
//! read. `max_memory_clients` bounds the total instead: past it, the
//! clients holding the most are closed, as Redis evicts clients.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use crate::alloc;
use crate::clients::Registry;
use crate::config::ByteSize;
use crate::metrics::metrics;

/// What each connected client costs before it sends anything (its task and
/// socket registration), counted as client memory...
pub const PER_CLIENT: usize = 1024;
/// ...and what it costs more once it has (its connection state, registry
/// entry and session task). Both measured against the allocator's count
/// (about 650, and 3,200 to 5,300 bytes).
pub const PER_SESSION: usize = 4 * 1024;

/// One class's limit: a client whose unwritten output reaches `hard`
/// bytes, or stays at `soft` bytes or more for `soft_seconds`, is closed.
/// Zero turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

impl OutputLimit {
    /// "hard soft seconds", as in Redis's client-output-buffer-limit
    /// (sizes may carry kb, mb or gb).
    pub fn parse(s: &str) -> Option<OutputLimit> {
        let mut words = s.split_whitespace();
        let hard = ByteSize::parse(words.next()?)?.0;
        let soft = ByteSize::parse(words.next()?)?.0;
        let soft_seconds = words.next()?.parse().ok()?;
        words.next().is_none().then_some(OutputLimit {
            hard,
            soft,
            soft_seconds,
        })
    }

    pub fn is_off(&self) -> bool {
        self.hard == 0 && self.soft == 0
    }

    /// Why `pending` unwritten bytes, over `soft` since `over_soft_for`,
    /// end the client; None while within bounds.
    pub fn exceeded(&self, pending: usize, over_soft_for: Option<Duration>) -> Option<String> {
        let pending = pending as u64;
        if self.hard > 0 && pending >= self.hard {
            return Some(format!(
                "{pending} bytes of output over the hard limit of {} bytes",
                self.hard
            ));
        }
        match over_soft_for {
            Some(d)
                if self.soft > 0 && pending >= self.soft && d.as_secs() >= self.soft_seconds =>
            {
                Some(format!(
                    "{pending} bytes of output over the soft limit of {} bytes for {} s",
                    self.soft,
                    d.as_secs()
                ))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for OutputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.hard, self.soft, self.soft_seconds)
    }
}

impl<'de> Deserialize<'de> for OutputLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutputLimit::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid limit '{s}' (expected \"hard soft seconds\", such as \"32mb 8mb 60\")"
            ))
        })
    }
}

/// `client_output_buffer_limit`: one limit per class of client, with
/// Redis's defaults (none for normal clients; 32 MB, or 8 MB for a minute,
/// for subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputLimits {
    pub normal: OutputLimit,
    pub pubsub: OutputLimit,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            normal: OutputLimit::default(),
            pubsub: OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60,
            },
        }
    }
}

impl OutputLimits {
    /// As CONFIG GET client-output-buffer-limit shows it (Redis's replica
    /// class with its defaults, since clients parse all three).
    pub fn redis_text(&self) -> String {
        format!(
            "normal {} slave 268435456 67108864 60 pubsub {}",
            self.normal, self.pubsub
        )
    }
}

/// One client's share of client memory: kept current by its connection,
/// read by eviction. Dropping it gives its bytes back.
pub struct Usage {
    counted: usize,
    /// The client's own figure, which eviction reads.
    mirror: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Usage {
    pub fn new(mirror: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Usage {
        Usage { counted: 0, mirror }
    }

    /// The client now holds `bytes`; returns the total of all clients when
    /// it grew (for the caller to check `max_memory_clients`).
    pub fn set(&mut self, bytes: usize) -> Option<usize> {
        if bytes == self.counted {
            return None;
        }
        let grew = bytes > self.counted;
        alloc::clients_add(bytes as isize - self.counted as isize);
        self.counted = bytes;
        self.mirror.store(bytes, Ordering::Relaxed);
        grew.then(alloc::clients)
    }
}

impl Drop for Usage {
    fn drop(&mut self) {
        alloc::clients_add(-(self.counted as isize));
        self.mirror.store(0, Ordering::Relaxed);
    }
}

/// Whether an eviction pass is running: one at a time is enough.
static EVICTING: AtomicBool = AtomicBool::new(false);
/// Clients closed for each kind of limit, for INFO.
static CLOSED_OUTPUT: AtomicU64 = AtomicU64::new(0);
static CLOSED_MEMORY: AtomicU64 = AtomicU64::new(0);
static CLOSED_IDLE: AtomicU64 = AtomicU64::new(0);

/// Clients closed so far: for their output buffer, to bound client memory
/// (Redis's evicted_clients), and for being idle.
pub fn closed_counts() -> (u64, u64, u64) {
    (
        CLOSED_OUTPUT.load(Ordering::Relaxed),
        CLOSED_MEMORY.load(Ordering::Relaxed),
        CLOSED_IDLE.load(Ordering::Relaxed),
    )
}

/// Logs, once, that a client is closed for a limit, and counts it.
pub fn closing(peer: std::net::SocketAddr, limit: &str, why: &str) {
    warn!(client = %peer, limit, "closing client: {why}");
    let counter = if limit.starts_with("client_output_buffer_limit") {
        &CLOSED_OUTPUT
    } else if limit == "max_memory_clients" {
        &CLOSED_MEMORY
    } else {
        &CLOSED_IDLE
    };
    counter.fetch_add(1, Ordering::Relaxed);
    metrics().client_closed(limit);
}

/// Closes the clients holding the most memory until the total is back
/// under `max` (counting what the closed ones hold as gone).
pub fn evict_clients(registry: &Registry, max: usize) {
    if EVICTING.swap(true, Ordering::Acquire) {
        return;
    }
    let mut total = alloc::clients();
    if total > max {
        let mut all = registry.all();
        all.sort_by_key(|c| std::cmp::Reverse(c.memory()));
        for c in all {
            if total <= max {
                break;
            }
            let held = c.memory();
            if held == 0 || !c.close_for_limit("max_memory_clients") {
                continue;
            }
            closing(
                c.peer,
                "max_memory_clients",
                &format!(
                    "clients hold {total} bytes, over max_memory_clients ({max}); this one {held}"
                ),
            );
            total = total.saturating_sub(held);
        }
    }
    EVICTING.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_redis_writes_them() {
        assert_eq!(
            OutputLimit::parse("32mb 8mb 60"),
            Some(OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60
            })
        );
        assert_eq!(OutputLimit::parse("0 0 0"), Some(OutputLimit::default()));
        for bad in ["", "1 2", "1 2 3 4", "x 1 1", "1 1 -1"] {
            assert_eq!(OutputLimit::parse(bad), None, "{bad}");
        }
        assert_eq!(
            OutputLimits::default().redis_text(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
    }

    #[test]
    fn hard_and_soft_bounds() {
        let l = OutputLimit {
            hard: 100,
            soft: 10,
            soft_seconds: 2,
        };
        assert!(l.exceeded(99, None).is_none());
        assert!(l.exceeded(100, None).is_some());
        assert!(l.exceeded(50, Some(Duration::from_secs(1))).is_none());
        assert!(l.exceeded(50, Some(Duration::from_secs(2))).is_some());
        assert!(l.exceeded(9, Some(Duration::from_secs(9))).is_none());
        assert!(OutputLimit::default().exceeded(usize::MAX, None).is_none());
    }
}
