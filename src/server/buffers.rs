//! Idle buffers kept per thread for client connections with data in
//! flight: a connection takes its read and write buffers from here when
//! data arrives and gives them back once its batch is answered (see
//! `connection`), because allocating 16 KB per batch made glibc
//! consolidate its free lists every time.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread: enough for the clients one thread serves
/// at once, 1 MB of read buffers at most.
const KEEP: usize = 64;
/// A buffer grown past this (a large request or reply) is freed.
pub const LARGEST: usize = 64 * 1024;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer, with the capacity it had when given back.
pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop()).unwrap_or_default()
}

/// Gives back an empty buffer; `small` says it never grew past LARGEST.
pub fn give(b: BytesMut, small: bool) {
    if !b.is_empty() || !small || b.capacity() == 0 {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(b);
        }
    });
}

/// Gives back a drained read buffer, leaving none; `large` is whether
/// it grew past LARGEST since it was taken, and is reset.
pub fn give_read(buf: &mut BytesMut, large: &mut bool) {
    if buf.is_empty() {
        give(std::mem::take(buf), !*large);
        *large = false;
    }
}
