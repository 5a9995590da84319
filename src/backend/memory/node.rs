//! One stored key: its metadata, the key's bytes and, for a string, the
//! value's bytes, in a single allocation behind a thin pointer.
//!
//! A million keys with short values is the common cache workload. Holding
//! each as a map slot (key + entry, 96 bytes) plus separate key and value
//! allocations cost twice Redis's memory; one allocation per key behind an
//! 8-byte table slot costs about what Redis's dictEntry + key + object do,
//! and a lookup touches one cache line for the key and value instead of
//! three.
//!
//! This module is the store's only `unsafe` code: a `Node` owns its
//! allocation exactly as a `Box` would, and every pointer it derives stays
//! within that allocation.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::collections::VecDeque;
use std::ptr::{self, NonNull};
use std::sync::atomic::AtomicU32;

use bytes::Bytes;
use indexmap::IndexSet;

use super::store::{Entry, Value, ValueRef};
use super::stream::Stream;
use super::zset::ZSet;

/// The fixed part of a node; the key's bytes follow it, then a string's.
pub struct Header {
    /// Unix time in milliseconds; 0 means no expiry.
    pub expires_at: u64,
    /// Set by the store on every write, for WATCH.
    pub version: u64,
    /// Seconds (of the store's clock) of the last access, for LRU eviction;
    /// atomic because reads update it under a shared lock.
    pub access: AtomicU32,
    key_len: u32,
    body: Body,
}

/// Where the value is: a string inline after the key, a collection boxed
/// (a pointer, not the collection's own 24 to 48 bytes, in every node).
#[allow(clippy::box_collection)]
enum Body {
    Str(usize),
    Hash(Box<super::store::HashValue>),
    List(Box<VecDeque<Bytes>>),
    Set(Box<IndexSet<Bytes>>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

pub struct Node {
    ptr: NonNull<Header>,
}

// SAFETY: a Node uniquely owns its allocation, like Box<Header>, and Header
// is Send + Sync (checked below), so Node may be too.
unsafe impl Send for Node {}
unsafe impl Sync for Node {}
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Header>();
};

const HEADER: usize = size_of::<Header>();

/// What a node takes besides its key and inline string, for MEMORY USAGE.
pub const NODE_OVERHEAD: usize = HEADER;

/// The allocation for a key of `key_len` bytes and `str_len` inline bytes.
#[allow(clippy::expect_used)]
fn layout(key_len: usize, str_len: usize) -> Layout {
    // Keys and values are bounded by the request size limit (at most a few
    // hundred MB), far below isize::MAX, so this cannot fail.
    Layout::from_size_align(HEADER + key_len + str_len, align_of::<Header>())
        .expect("key and value sizes are bounded by the request limit")
}

/// Asks the CPU to start loading the cache line holding `p`.
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect
    // on memory, whatever the address; SSE is in x86_64's baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Node {
    /// A node holding `entry` under `key`.
    // Keys come from request arguments (at most max_bulk_len, which the
    // config holds under 4 GB) or Lua strings (under its 256 MB limit).
    #[allow(clippy::expect_used)]
    pub fn new(key: &[u8], entry: Entry, version: u64, access: u32) -> Node {
        // Keys over 4 GB are refused long before (proto-max-bulk-len).
        let key_len = u32::try_from(key.len()).expect("keys are bounded by the request limit");
        let (body, inline): (Body, Bytes) = match entry.value {
            Value::Str(s) => (Body::Str(s.len()), s),
            Value::Hash(h) => (Body::Hash(h), Bytes::new()),
            Value::List(l) => (Body::List(l), Bytes::new()),
            Value::Set(s) => (Body::Set(s), Bytes::new()),
            Value::ZSet(z) => (Body::ZSet(z), Bytes::new()),
            Value::Stream(st) => (Body::Stream(st), Bytes::new()),
        };
        let layout = layout(key.len(), inline.len());
        // SAFETY: the layout is non-zero (it holds a Header). The header is
        // written at the allocation's start, aligned for it, and the key and
        // string bytes into the `key.len() + inline.len()` bytes after it.
        unsafe {
            let p = alloc(layout).cast::<Header>();
            let Some(ptr) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            p.write(Header {
                expires_at: entry.expires_at,
                version,
                access: AtomicU32::new(access),
                key_len,
                body,
            });
            let tail = p.cast::<u8>().add(HEADER);
            ptr::copy_nonoverlapping(key.as_ptr(), tail, key.len());
            ptr::copy_nonoverlapping(inline.as_ptr(), tail.add(key.len()), inline.len());
            Node { ptr }
        }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the header was initialised in `new` and lives as long as
        // the node; shared access follows from `&self`.
        unsafe { self.ptr.as_ref() }
    }

    pub fn header_mut(&mut self) -> &mut Header {
        // SAFETY: as in `header`; exclusive access follows from `&mut self`.
        // The body cannot be changed through Header's public fields, so the
        // layout computed from it stays right.
        unsafe { self.ptr.as_mut() }
    }

    /// Asks the CPU to start loading the node's first 128 bytes (header,
    /// key and a short value: three lines at most, as the allocation is
    /// 16-aligned), so that a batch's lookups wait for memory together
    /// rather than one after another.
    pub fn prefetch(&self) {
        let p = self.ptr.as_ptr().cast::<u8>();
        for at in [0, 64, 127] {
            prefetch(p.wrapping_add(at));
        }
    }

    fn str_len(&self) -> usize {
        match self.header().body {
            Body::Str(n) => n,
            _ => 0,
        }
    }

    fn tail(&self) -> *const u8 {
        // SAFETY: the allocation is at least HEADER bytes long.
        unsafe { self.ptr.as_ptr().cast::<u8>().add(HEADER) }
    }

    pub fn key(&self) -> &[u8] {
        let len = self.header().key_len as usize;
        // SAFETY: `new` copied `len` key bytes right after the header.
        unsafe { std::slice::from_raw_parts(self.tail(), len) }
    }

    pub fn expires_at(&self) -> u64 {
        self.header().expires_at
    }

    pub fn expired(&self, now: u64) -> bool {
        let at = self.expires_at();
        at != 0 && at <= now
    }

    pub fn value(&self) -> ValueRef<'_> {
        match &self.header().body {
            Body::Str(n) => {
                let key_len = self.header().key_len as usize;
                // SAFETY: `new` copied `n` string bytes after the key's.
                ValueRef::Str(unsafe { std::slice::from_raw_parts(self.tail().add(key_len), *n) })
            }
            Body::Hash(h) => ValueRef::Hash(h),
            Body::List(l) => ValueRef::List(l),
            Body::Set(s) => ValueRef::Set(s),
            Body::ZSet(z) => ValueRef::ZSet(z),
            Body::Stream(st) => ValueRef::Stream(st),
        }
    }

    /// The owned entry, consuming the node: a string is copied out, a
    /// collection moved out.
    pub fn into_entry(self) -> Entry {
        let layout = layout(self.header().key_len as usize, self.str_len());
        let string = match self.value() {
            ValueRef::Str(s) => Bytes::copy_from_slice(s),
            _ => Bytes::new(),
        };
        let node = std::mem::ManuallyDrop::new(self);
        // SAFETY: the header is read out once and the allocation freed once;
        // ManuallyDrop keeps Drop from doing either again. The body's box,
        // now owned by `header`, is moved into the entry.
        let header = unsafe {
            let header = node.ptr.as_ptr().read();
            dealloc(node.ptr.as_ptr().cast(), layout);
            header
        };
        let value = match header.body {
            Body::Str(_) => Value::Str(string),
            Body::Hash(h) => Value::Hash(h),
            Body::List(l) => Value::List(l),
            Body::Set(s) => Value::Set(s),
            Body::ZSet(z) => Value::ZSet(z),
            Body::Stream(st) => Value::Stream(st),
        };
        Entry {
            value,
            expires_at: header.expires_at,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let layout = layout(self.header().key_len as usize, self.str_len());
        // SAFETY: the header is initialised and dropped once (its body may
        // own a collection), then the allocation is freed with the layout it
        // was made with.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            dealloc(self.ptr.as_ptr().cast(), layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_node_keeps_key_value_and_metadata() {
        let e = Entry {
            value: Value::Str(Bytes::from_static(b"value")),
            expires_at: 42,
        };
        let mut n = Node::new(b"key:1", e, 7, 3);
        assert_eq!(n.key(), b"key:1");
        assert!(matches!(n.value(), ValueRef::Str(b"value")));
        assert_eq!(n.header().version, 7);
        assert_eq!(n.expires_at(), 42);
        n.header_mut().expires_at = 0;
        let back = n.into_entry();
        assert!(matches!(back.value, Value::Str(ref s) if &s[..] == b"value"));
        assert_eq!(back.expires_at, 0);
    }

    #[test]
    fn empty_keys_and_values_and_collections() {
        let n = Node::new(b"", Entry::new(Value::Str(Bytes::new())), 0, 0);
        assert_eq!(n.key(), b"");
        assert!(matches!(n.value(), ValueRef::Str(b"")));
        drop(n);

        let list: VecDeque<Bytes> = ["a", "b"].into_iter().map(Bytes::from).collect();
        let n = Node::new(b"list", Entry::new(Value::List(Box::new(list))), 1, 0);
        assert!(matches!(n.value(), ValueRef::List(l) if l.len() == 2));
        match n.into_entry().value {
            Value::List(l) => assert_eq!(l[1], "b"),
            _ => panic!("not a list"),
        }
        // Dropped with its collection.
        let mut h = crate::backend::memory::store::HashValue::default();
        h.insert(Bytes::from("f"), Bytes::from("v"));
        drop(Node::new(b"h", Entry::new(Value::Hash(Box::new(h))), 1, 0));
    }

    #[test]
    fn a_node_is_one_thin_pointer() {
        assert_eq!(size_of::<Node>(), size_of::<usize>());
        assert_eq!(size_of::<Option<Node>>(), size_of::<usize>());
    }
}
