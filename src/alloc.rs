//! Counts the bytes the process has allocated, for `used_memory` and the
//! memory backend's `max_memory`, the way Redis reads its allocator's stats.
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

/// Threads with a counter of their own; later ones share `SHARED`. keyway
/// runs fewer runtime threads than the cores, plus a few blocking ones.
const OWNED: usize = 64;

/// A counter on its own cache line, so that threads do not contend.
#[repr(align(64))]
struct Counter(AtomicIsize);

static COUNTERS: [Counter; OWNED] = [const { Counter(AtomicIsize::new(0)) }; OWNED];
/// For threads past `OWNED`: written by many, so with atomic adds.
static SHARED: Counter = Counter(AtomicIsize::new(0));
/// How many counters have been handed out.
static HANDED: AtomicUsize = AtomicUsize::new(0);

const UNSET: usize = usize::MAX;

thread_local! {
    // A const initialiser and no destructor: reading it never allocates
    // (this runs inside the allocator) and works until the thread is gone.
    static MINE: Cell<usize> = const { Cell::new(UNSET) };
}

fn count(delta: isize) {
    let mine = MINE.with(|m| {
        if m.get() == UNSET {
            m.set(HANDED.fetch_add(1, Relaxed));
        }
        m.get()
    });
    match COUNTERS.get(mine) {
        // Only this thread writes its counter: a load and a store, no lock.
        Some(c) => c.0.store(c.0.load(Relaxed).wrapping_add(delta), Relaxed),
        None => {
            SHARED.0.fetch_add(delta, Relaxed);
        }
    }
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

/// Bytes allocated now by the whole process.
pub fn allocated() -> usize {
    let handed = HANDED.load(Relaxed).min(OWNED);
    let sum = COUNTERS[..handed]
        .iter()
        .chain([&SHARED])
        .fold(0isize, |sum, c| sum.wrapping_add(c.0.load(Relaxed)));
    sum.max(0) as usize
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
