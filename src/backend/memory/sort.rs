//! SORT and SORT_RO, as Redis 7.0 runs them: numeric or ALPHA order, BY
//! and GET patterns (`*` replaced by the element, `->field` for a hash
//! field, `#` for the element itself), LIMIT, and STORE into a list.
//! Patterns name keys of this backend as given; a namespace's key prefix
//! is not applied to them.

use std::cmp::Ordering;
use std::collections::VecDeque;

use bytes::Bytes;

use super::store::{Store, Value, ValueRef};
use super::typed::store;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is};

/// What SORT was asked to do.
struct SortArgs {
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    by: Option<Bytes>,
    /// BY a pattern without `*`: keep the collection's own order.
    dont_sort: bool,
    gets: Vec<Bytes>,
    store: Option<Bytes>,
}

fn parse(a: &[Bytes], read_only: bool) -> CmdResult<SortArgs> {
    let mut r = SortArgs {
        desc: false,
        alpha: false,
        limit: None,
        by: None,
        dont_sort: false,
        gets: Vec::new(),
        store: None,
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let o = &a[j];
        if is(o, "ASC") {
            r.desc = false;
        } else if is(o, "DESC") {
            r.desc = true;
        } else if is(o, "ALPHA") {
            r.alpha = true;
        } else if is(o, "LIMIT") && left >= 2 {
            r.limit = Some((int_arg(&a[j + 1])?, int_arg(&a[j + 2])?));
            j += 2;
        } else if !read_only && is(o, "STORE") && left >= 1 {
            r.store = Some(a[j + 1].clone());
            j += 1;
        } else if is(o, "BY") && left >= 1 {
            r.dont_sort = !a[j + 1].contains(&b'*');
            r.by = Some(a[j + 1].clone());
            j += 1;
        } else if is(o, "GET") && left >= 1 {
            r.gets.push(a[j + 1].clone());
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(r)
}

/// The value a pattern names for `elem`: `#` is the element; otherwise the
/// first `*` is replaced by it, and `->field` reads a hash field. None
/// without a `*`, or when the key is missing or of another type.
fn lookup(s: &Store, pattern: &[u8], elem: &Bytes) -> Option<Bytes> {
    if pattern == b"#" {
        return Some(elem.clone());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let rest = &pattern[star + 1..];
    let (tail, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(i) if i + 2 < rest.len() => (&rest[..i], Some(&rest[i + 2..])),
        _ => (rest, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(tail);
    s.read(&key, |e| {
        let e = e?;
        match (e.value, field) {
            (ValueRef::Str(v), None) => Some(Bytes::copy_from_slice(v)),
            (ValueRef::Hash(h), Some(f)) => h.get(f).cloned(),
            _ => None,
        }
    })
}

/// A value as strtod reads it for a numeric sort; None when it is not a
/// whole number (trailing text, NaN, out of range).
fn score(v: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(v)
        .ok()?
        .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
    if t.is_empty() {
        return Some(0.0);
    }
    match crate::wire::util::strtod(t)? {
        (x, false) if !x.is_nan() => Some(x),
        _ => None,
    }
}

struct Item {
    elem: Bytes,
    score: f64,
    /// The BY value of an ALPHA sort by pattern.
    by: Option<Bytes>,
}

fn sort_generic(s: &Store, a: &[Bytes], read_only: bool) -> CmdResult {
    let args = parse(a, read_only)?;
    let mut dont_sort = args.dont_sort;
    let mut alpha = args.alpha;
    let mut by = args.by.clone();
    // Elements in the collection's order (a sorted set's by score), and
    // whether it is a set, whose order is its own.
    let (elems, is_set) = s.read(&a[1], |e| {
        let Some(e) = e else {
            return Ok((Vec::new(), false));
        };
        Ok(match e.value {
            ValueRef::List(l) => (l.iter().cloned().collect(), false),
            ValueRef::Set(set) => (set.iter().cloned().collect(), true),
            ValueRef::ZSet(z) => (
                z.range(0, z.len()).into_iter().map(|(m, _)| m).collect(),
                false,
            ),
            _ => return Err(CmdError::WrongType),
        })
    })?;
    // A set has no order of its own: stored results are sorted, as Redis
    // does so that replicas agree.
    if dont_sort && is_set && args.store.is_some() {
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let len = elems.len() as i64;
    let (mut start, mut end) = match args.limit {
        None => (0, len - 1),
        Some((offset, count)) => {
            let start = offset.max(0);
            let end = if count < 0 {
                len - 1
            } else {
                start.saturating_add(count) - 1
            };
            (start, end)
        }
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    let mut items: Vec<Item> = elems
        .into_iter()
        .map(|elem| Item {
            elem,
            score: 0.0,
            by: None,
        })
        .collect();
    if dont_sort {
        // The collection's own order, reversed by DESC.
        if args.desc && !is_set {
            items.reverse();
        }
    } else {
        for it in &mut items {
            let value = match &by {
                Some(p) => match lookup(s, p, &it.elem) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if by.is_some() {
                    it.by = Some(value);
                }
            } else {
                it.score = score(&value).ok_or_else(|| {
                    CmdError::msg("ERR One or more scores can't be converted into double")
                })?;
            }
        }
        let cmp = |x: &Item, y: &Item| -> Ordering {
            let o = if !alpha {
                x.score
                    .partial_cmp(&y.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| x.elem.cmp(&y.elem))
            } else if by.is_some() {
                match (&x.by, &y.by) {
                    (Some(a), Some(b)) => a.cmp(b),
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                }
            } else {
                x.elem.cmp(&y.elem)
            };
            if args.desc { o.reverse() } else { o }
        };
        items.sort_by(cmp);
    }
    let picked: Vec<&Item> = if end >= start {
        items[start as usize..=end as usize].iter().collect()
    } else {
        Vec::new()
    };
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for it in picked {
        if args.gets.is_empty() {
            out.push(Some(it.elem.clone()));
        }
        for g in &args.gets {
            out.push(lookup(s, g, &it.elem));
        }
    }
    match &args.store {
        None => Ok(Reply::Array(out.into_iter().map(Reply::opt_bulk).collect())),
        Some(dst) => {
            let n = out.len();
            let list: VecDeque<Bytes> = out.into_iter().map(Option::unwrap_or_default).collect();
            store(s, dst, list, Value::List);
            Ok(Reply::Int(n as i64))
        }
    }
}

pub fn sort(s: &Store, a: &[Bytes]) -> CmdResult {
    sort_generic(s, a, false)
}

pub fn sort_ro(s: &Store, a: &[Bytes]) -> CmdResult {
    sort_generic(s, a, true)
}
