//! Counts the bytes the process has allocated, for `used_memory` and the
//! memory backend's `max_memory`, the way Redis reads its allocator's stats;
//! and, apart, the bytes that clients make keyway hold (their buffers), so
//! that `max_memory` bounds the data alone and client buffers have a limit
//! of their own (`max_memory_clients`).
//!
//! Every allocation passes through here, so the count must cost next to
//! nothing: one global atomic counter (a locked add on a line every thread
//! writes) cost 6-12% of keyway's CPU proxying to memcached. Each thread
//! instead keeps its own counter, which only it writes (a plain add), and a
//! reader sums them. A thread frees memory another allocated, so single
//! counters go negative; the sum is right.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Threads with a counter of their own; later ones share `shared`. keyway
/// runs fewer runtime threads than the cores, plus a few blocking ones.
const OWNED: usize = 64;

/// A counter on its own cache line, so that threads do not contend.
#[repr(align(64))]
struct Counter(AtomicIsize);

/// One counter per thread, summed by readers.
struct PerThread {
    owned: [Counter; OWNED],
    /// For threads past `OWNED`: written by many, so with atomic adds.
    shared: Counter,
}

impl PerThread {
    const fn new() -> PerThread {
        PerThread {
            owned: [const { Counter(AtomicIsize::new(0)) }; OWNED],
            shared: Counter(AtomicIsize::new(0)),
        }
    }

    fn add(&self, delta: isize) {
        match self.owned.get(my_slot()) {
            // Only this thread writes its counter: a load and a store, no lock.
            Some(c) => c.0.store(c.0.load(Relaxed).wrapping_add(delta), Relaxed),
            None => {
                self.shared.0.fetch_add(delta, Relaxed);
            }
        }
    }

    fn sum(&self) -> usize {
        let handed = HANDED.load(Relaxed).min(OWNED);
        let sum = self.owned[..handed]
            .iter()
            .chain([&self.shared])
            .fold(0isize, |sum, c| sum.wrapping_add(c.0.load(Relaxed)));
        sum.max(0) as usize
    }
}

static ALLOCATED: PerThread = PerThread::new();
static CLIENTS: PerThread = PerThread::new();
/// How many thread slots have been handed out.
static HANDED: AtomicUsize = AtomicUsize::new(0);

const UNSET: usize = usize::MAX;

thread_local! {
    // A const initialiser and no destructor: reading it never allocates
    // (this runs inside the allocator) and works until the thread is gone.
    static MINE: Cell<usize> = const { Cell::new(UNSET) };
}

fn my_slot() -> usize {
    MINE.with(|m| {
        if m.get() == UNSET {
            m.set(HANDED.fetch_add(1, Relaxed));
        }
        m.get()
    })
}

fn count(delta: isize) {
    ALLOCATED.add(delta);
}

/// The system allocator, counting.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// GlobalAlloc contract; the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The most `allocated` has returned, and what it first returned (at
/// start-up, where the server calls it): MEMORY STATS's peak and
/// startup figures, sampled as Redis samples its peak.
static PEAK: AtomicUsize = AtomicUsize::new(0);
static STARTUP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Bytes allocated now by the whole process.
pub fn allocated() -> usize {
    let now = ALLOCATED.sum();
    PEAK.fetch_max(now, Relaxed);
    STARTUP.get_or_init(|| now);
    now
}

/// The most bytes seen allocated at once.
pub fn peak() -> usize {
    PEAK.load(Relaxed).max(allocated())
}

/// Bytes allocated when the server started (its first sample).
pub fn startup() -> usize {
    *STARTUP.get_or_init(|| ALLOCATED.sum())
}

/// Records that clients now hold `delta` more (or fewer) bytes: their read
/// and write buffers and queued messages, and a fixed amount per client.
pub fn clients_add(delta: isize) {
    CLIENTS.add(delta);
}

/// Bytes clients hold now (part of `allocated`).
pub fn clients() -> usize {
    CLIENTS.sum()
}

/// What the data uses: the process's allocations without the clients'.
/// `max_memory` bounds this, so that no client can starve the store.
pub fn data() -> usize {
    allocated().saturating_sub(clients())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_other_threads_allocate_and_free() {
        // Other tests allocate at the same time, so only a large block's
        // coming and going is told apart from the noise.
        const BIG: usize = 64 << 20;
        let before = allocated();
        let block = std::thread::spawn(|| vec![1u8; BIG]).join().unwrap();
        assert!(allocated() >= before + BIG / 2, "the block is counted");
        let during = allocated();
        std::thread::spawn(move || drop(block)).join().unwrap();
        assert!(allocated() + BIG / 2 <= during, "its freeing is counted");
    }
}
