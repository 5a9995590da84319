//! What a client may make keyway hold, as Redis bounds it: output buffer
//! limits per class of client (`client_output_buffer_limit`), the memory of
//! all clients together (`max_memory_clients`, Redis 7's maxmemory-clients)
//! and the bookkeeping behind both.
//!
//! A client's memory is its read and write buffers, the messages queued for
//! it, and a fixed amount for its connection. The total is counted apart
//! from the data (see [`crate::wire::alloc`]), so that client buffers never count
//! against the memory backend's `max_memory`: no client, authenticated or
//! not, can make another client's write fail by what it sends or fails to
//! read. `max_memory_clients` bounds the total instead: past it, the
//! clients holding the most are closed, as Redis evicts clients.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::warn;

use crate::server::clients::Registry;
use crate::wire::alloc;
use crate::wire::metrics::metrics;

/// What each connected client costs before it sends anything (its task and
/// socket registration), counted as client memory...
pub const PER_CLIENT: usize = 1024;
/// ...and what it costs more once it has (its connection state, registry
/// entry and session task). Both measured against the allocator's count
/// (about 650, and 3,200 to 5,300 bytes).
pub const PER_SESSION: usize = 4 * 1024;

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
