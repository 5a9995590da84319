//! Access to keys of one type (hash, list, set, sorted set) with Redis's
//! rules: WRONGTYPE for another type, created on first write, deleted when
//! left empty. Also the pieces the *SCAN and random-member commands share.

use std::collections::VecDeque;

use indexmap::IndexSet;

use bytes::Bytes;

use super::store::{Entry, Store, Value, ValueRef, scan_order};
use super::zset::ZSet;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::scan::ScanArgs;
use crate::wire::util::random_below;

/// A value type stored under a key.
pub trait Kind: Sized {
    fn of(v: ValueRef<'_>) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn new_value() -> Value;
    fn is_empty(&self) -> bool;
}

macro_rules! kind {
    ($t:ty, $variant:ident) => {
        impl Kind for $t {
            fn of(v: ValueRef<'_>) -> Option<&Self> {
                match v {
                    ValueRef::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(&mut **x),
                    _ => None,
                }
            }
            fn new_value() -> Value {
                Value::$variant(Default::default())
            }
            fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }
    };
}

kind!(super::store::HashValue, Hash);
kind!(VecDeque<Bytes>, List);
kind!(IndexSet<Bytes>, Set);
kind!(ZSet, ZSet);

/// Reads the value at `key` as a `T` (None when missing).
pub fn read<T: Kind, R>(s: &Store, key: &[u8], f: impl FnOnce(Option<&T>) -> R) -> CmdResult<R> {
    s.read(key, |e| match e {
        None => Ok(f(None)),
        Some(e) => T::of(e.value)
            .map(|v| f(Some(v)))
            .ok_or(CmdError::WrongType),
    })
}

/// Modifies the value at `key`, creating it if `create` (otherwise a
/// missing key answers `missing`); deletes the key if left empty.
pub fn modify<T: Kind, R>(
    s: &Store,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut T) -> CmdResult<R>,
    missing: R,
) -> CmdResult<R> {
    s.write(key, |slot| {
        if slot.is_none() {
            if !create {
                return Ok(missing);
            }
            *slot = Some(Entry::new(T::new_value()));
        }
        let Some(v) = slot.as_mut().and_then(|e| T::of_mut(&mut e.value)) else {
            return Err(CmdError::WrongType);
        };
        let r = f(v);
        if v.is_empty() {
            *slot = None;
        }
        r
    })
}

/// Replaces whatever `key` holds with `value` (deleting the key when it is
/// empty), as the *STORE commands do; keeps no TTL.
pub fn store<T: Kind>(s: &Store, key: &[u8], value: T, into: fn(Box<T>) -> Value) {
    s.write(key, |slot| {
        *slot = (!value.is_empty()).then(|| Entry::new(into(Box::new(value))));
    });
}

/// Collections up to this size are returned whole by *SCAN, as Redis does
/// for its compact encodings.
pub const SCAN_WHOLE: usize = 128;

/// One *SCAN step over a collection's members: small collections whole,
/// large ones in scan order from the cursor. Returns the next cursor and
/// the items of the step (before MATCH filtering).
pub fn scan_step<'a, T: 'a>(
    items: impl Iterator<Item = (&'a Bytes, T)>,
    len: usize,
    sa: &ScanArgs,
) -> (u64, Vec<(&'a Bytes, T)>) {
    if len <= SCAN_WHOLE {
        return (0, items.collect());
    }
    let mut v: Vec<(u64, &Bytes, T)> = items
        .map(|(m, x)| (scan_order(m), m, x))
        .filter(|x| x.0 >= sa.cursor)
        .collect();
    v.sort_unstable_by_key(|x| x.0);
    if v.len() > sa.count {
        let last = v[sa.count - 1].0;
        v.retain(|x| x.0 <= last);
        (last + 1, v.into_iter().map(|x| (x.1, x.2)).collect())
    } else {
        (0, v.into_iter().map(|x| (x.1, x.2)).collect())
    }
}

/// The largest reply a client-chosen count may ask the memory backend to
/// build: a repeated random pick (SRANDMEMBER s -N) is otherwise bounded
/// by nothing, and one 30-byte request could ask for gigabytes.
pub const MAX_REPLY_BYTES: usize = 512 << 20;

/// The count of SRANDMEMBER, HRANDFIELD and ZRANDMEMBER, checked as Redis 7
/// checks it: within ±LONG_MAX, and with values (which double the reply)
/// within half of that.
pub fn rand_count(arg: &[u8], with_values: bool) -> CmdResult<i64> {
    let n = crate::wire::util::int_arg(arg)?;
    if n == i64::MIN {
        return Err(CmdError::msg(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if with_values && n.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Err(CmdError::msg("ERR value is out of range"));
    }
    Ok(n)
}

/// Refuses a reply of `count` picks from `items` items of `bytes` bytes in
/// all when it would pass [`MAX_REPLY_BYTES`].
pub fn reply_fits(count: u64, items: usize, bytes: usize) -> CmdResult<()> {
    let each = bytes.checked_div(items).unwrap_or(0).saturating_add(16);
    let total = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .saturating_mul(each);
    if total > MAX_REPLY_BYTES {
        return Err(CmdError::msg(format!(
            "ERR a reply of {count} elements (about {total} bytes) is over the memory backend's limit of {MAX_REPLY_BYTES} bytes for one reply"
        )));
    }
    Ok(())
}

/// `count` random picks from `items`: distinct when `count` >= 0 (at most
/// all of them), possibly repeated when negative, as HRANDFIELD,
/// SRANDMEMBER and ZRANDMEMBER do. The caller has checked a negative count
/// with [`reply_fits`].
pub fn random_picks<T: Clone>(items: &[T], count: i64) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    if count < 0 {
        return (0..count.unsigned_abs())
            .map(|_| items[random_below(items.len() as u64) as usize].clone())
            .collect();
    }
    let mut all = items.to_vec();
    let n = usize::try_from(count).unwrap_or(usize::MAX).min(all.len());
    for i in 0..n {
        let j = i + random_below((all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
    all
}
