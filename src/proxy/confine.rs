//! Arguments that reach keys from outside the command table's key
//! positions, kept inside the namespaces (flag `REACHES`): SORT's BY and
//! GET patterns, and COPY's DB option.
//!
//! A SORT pattern names a key per element: the text before its first `*`,
//! the element, and the rest up to `->`. Whatever the element, that key
//! belongs to the namespace owning the literal start, unless another
//! namespace's prefix extends that start (then an element could reach it):
//! such a pattern is refused, as is one whose start no namespace owns or
//! whose namespace lives on another backend than the sorted key (Redis
//! would look it up on the wrong server). A kept pattern is returned with
//! its namespace, so it is rewritten as a key is (`key_prefix`, stripped
//! prefix: the literal start carries the prefix) and its namespace is
//! checked as a key's would be.

use std::sync::Arc;

use bytes::Bytes;

use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{CommandSpec, REACHES};
use crate::wire::error::{CmdError, lossy};
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;

/// The patterns of a request (position and owning namespace) that must be
/// rewritten and checked with its keys; an error when an argument would
/// reach outside `owner`'s backend or outside every namespace.
pub fn reach<'r>(
    router: &'r Router,
    spec: &CommandSpec,
    args: &[Bytes],
    owner: &Arc<Namespace>,
) -> Result<Vec<(usize, &'r Arc<Namespace>)>, Reply> {
    if !spec.has(REACHES) {
        return Ok(Vec::new());
    }
    match spec.name {
        "copy" => copy_db(args, owner).map(|()| Vec::new()),
        _ => sort_patterns(args)
            .map(|i| pattern(router, spec, args, i, owner).map(|ns| ns.map(|ns| (i, ns))))
            .filter_map(Result::transpose)
            .collect(),
    }
}

/// Positions of SORT's BY and GET arguments, skipping LIMIT's two as
/// Redis's parser does.
fn sort_patterns(a: &[Bytes]) -> impl Iterator<Item = usize> + '_ {
    let mut i = 2usize;
    std::iter::from_fn(move || {
        while let Some(o) = a.get(i) {
            let at = i;
            if o.eq_ignore_ascii_case(b"limit") {
                i = i.saturating_add(3);
            } else if o.eq_ignore_ascii_case(b"get") || o.eq_ignore_ascii_case(b"by") {
                i = i.saturating_add(2);
                if at.saturating_add(1) < a.len() {
                    return Some(at.saturating_add(1));
                }
            } else {
                i = i.saturating_add(1);
            }
        }
        None
    })
}

/// The namespace a pattern's keys belong to; None when the pattern names
/// no key (`#`, or no `*`: Redis looks nothing up for it).
fn pattern<'r>(
    router: &'r Router,
    spec: &CommandSpec,
    args: &[Bytes],
    i: usize,
    owner: &Arc<Namespace>,
) -> Result<Option<&'r Arc<Namespace>>, Reply> {
    let Some(p) = args.get(i) else {
        return Ok(None);
    };
    if &p[..] == b"#" {
        return Ok(None);
    }
    let Some(star) = p.iter().position(|&c| c == b'*') else {
        return Ok(None);
    };
    let literal = &p[..star];
    let refuse = |why: String| -> Reply {
        CmdError::PatternReach {
            command: spec.name.to_uppercase(),
            pattern: lossy(p, 128),
            why,
        }
        .into()
    };
    let Some(ns) = router.route(literal) else {
        return Err(refuse("names keys no namespace owns".into()));
    };
    if let Some(other) = router
        .namespaces
        .iter()
        .find(|o| o.prefix.len() > literal.len() && o.prefix.starts_with(literal))
    {
        return Err(refuse(format!(
            "can reach namespace '{}' from namespace '{}': start it with the full prefix",
            other.name, ns.name
        )));
    }
    let backend_literal = ns.to_backend(literal);
    if let Some((_, other)) = ns
        .foreign
        .iter()
        .find(|(f, _)| f.starts_with(&backend_literal) || backend_literal.starts_with(f))
    {
        return Err(refuse(format!(
            "can reach namespace '{other}' from namespace '{}' on their shared backend",
            ns.name
        )));
    }
    if !Arc::ptr_eq(&ns.backend, &owner.backend) {
        return Err(refuse(format!(
            "names keys of namespace '{}', on another backend than namespace '{}'",
            ns.name, owner.name
        )));
    }
    Ok(Some(ns))
}

/// COPY's DB option writes into another database of the same backend:
/// allowed where the backend keeps databases (the key stays in its
/// namespace); elsewhere only database 0 is.
fn copy_db(a: &[Bytes], owner: &Namespace) -> Result<(), Reply> {
    if owner.backend.databases() {
        return Ok(());
    }
    let mut i = 3usize;
    while let Some(o) = a.get(i) {
        if o.eq_ignore_ascii_case(b"db") {
            if let Some(db) = a.get(i.saturating_add(1)) {
                if parse_i64(db).is_some_and(|n| n != 0) {
                    return Err(CmdError::msg(
                        "ERR COPY to another database: this namespace's backend has no databases",
                    )
                    .into());
                }
            }
            i = i.saturating_add(1);
        }
        i = i.saturating_add(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::proxy::router::NamespaceConfig;
    use crate::wire::command::lookup;

    fn router() -> Router {
        let config: Vec<NamespaceConfig> = [("a", "a:", "m"), ("ab", "a:b", "m"), ("c", "c:", "n")]
            .iter()
            .map(|&(name, prefix, backend)| NamespaceConfig::new(name, prefix, backend))
            .collect();
        let m: Arc<dyn Backend> = Arc::new(crate::backend::memory::MemoryBackend::new(
            &Default::default(),
        ));
        let n: Arc<dyn Backend> = Arc::new(crate::backend::memory::MemoryBackend::new(
            &Default::default(),
        ));
        Router::with_backends(&config, |name| {
            Some(if name == "m" { m.clone() } else { n.clone() })
        })
    }

    fn reach_of(r: &Router, line: &str) -> Result<Vec<(usize, String)>, String> {
        let a: Vec<Bytes> = line
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let spec = lookup(&a[0]).unwrap();
        let owner = r.route(&a[1]).unwrap();
        reach(r, spec, &a, owner)
            .map(|v| v.into_iter().map(|(i, ns)| (i, ns.name.clone())).collect())
            .map_err(|e| match e {
                Reply::Error(e) => String::from_utf8_lossy(&e).into_owned(),
                _ => String::new(),
            })
    }

    #[test]
    fn sort_patterns_stay_in_their_namespace() {
        let r = router();
        assert_eq!(
            reach_of(&r, "SORT a:l BY a:w_* GET # GET a:h_*->f GET nostar"),
            Ok(vec![(3, "a".into()), (7, "a".into())])
        );
        assert_eq!(
            reach_of(&r, "SORT a:l LIMIT by x BY a:w_*"),
            Ok(vec![(6, "a".into())])
        );
        assert_eq!(
            reach_of(&r, "SORT_RO a:l GET a:b*"),
            Ok(vec![(3, "ab".into())])
        );
        let e = reach_of(&r, "SORT a:l GET secre*").unwrap_err();
        assert_eq!(e, "ERR SORT pattern 'secre*' names keys no namespace owns");
        let e = reach_of(&r, "SORT a:l BY a:*").unwrap_err();
        assert!(e.contains("can reach namespace 'ab'"), "{e}");
        let e = reach_of(&r, "SORT a:l GET c:*").unwrap_err();
        assert!(e.contains("another backend"), "{e}");
    }

    #[test]
    fn copy_into_another_database_where_the_backend_has_them() {
        let r = router();
        assert_eq!(reach_of(&r, "COPY a:x a:y DB 0 REPLACE"), Ok(vec![]));
        assert_eq!(reach_of(&r, "COPY a:x a:y DB 1"), Ok(vec![]));
        assert_eq!(reach_of(&r, "COPY a:x a:y REPLACE DB 15"), Ok(vec![]));
    }
}
