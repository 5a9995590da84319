//! The bounds of a namespace as a backend sees them, for what keyway cannot
//! check on the way in: the commands a script runs. keyway checks a
//! command's own keys before it reaches a backend, but a script's
//! `redis.call`s are only seen by the backend that runs them (the memory
//! backend), so the namespace's bounds travel with the script's command
//! (`Command::scope`) and are checked there, call by call.
//!
//! A backend key belongs to a namespace when the client's name for it
//! (its `key_prefix` removed, its prefix put back) routes to that
//! namespace: it starts with the namespace's prefix and with no longer
//! prefix of another namespace. The same rule lists keys for KEYS and SCAN
//! through keyway, so a script sees what its namespace's clients see.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::Command;
use crate::wire::command::{CommandSpec, KEYSPACE, REACHES, WRITE};
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;

/// One namespace's part of a backend, and its limits.
#[derive(Debug, Clone, Default)]
pub struct KeyScope {
    pub namespace: String,
    /// Every key of the backend is the namespace's (it is alone on it and
    /// maps names one to one).
    pub all: bool,
    pub key_prefix: Bytes,
    pub prefix: Bytes,
    pub strip_prefix: bool,
    /// Prefixes of other namespaces that extend this one's: keys under
    /// them are theirs.
    pub longer: Vec<Bytes>,
    /// Where other namespaces on the same backend keep their keys, inside
    /// this one's: never this one's.
    pub foreign: Vec<Bytes>,
    pub read_only: bool,
    pub max_value_size: Option<u64>,
    /// Scripts may touch only the keys they declare (KEYS).
    pub strict: bool,
}

impl KeyScope {
    /// Whether the backend key (or channel) `k` is this namespace's.
    pub fn owns(&self, k: &[u8]) -> bool {
        if self.all {
            return true;
        }
        if self.foreign.iter().any(|f| k.starts_with(f)) {
            return false;
        }
        let Some(rest) = k.strip_prefix(&self.key_prefix[..]) else {
            return false;
        };
        // The client's name is prefix + rest (stripped) or rest itself; a
        // longer prefix starts with this one's, so comparing the part
        // after it is enough.
        let after = if self.strip_prefix {
            rest
        } else {
            match rest.strip_prefix(&self.prefix[..]) {
                Some(after) => after,
                None => return false,
            }
        };
        !self
            .longer
            .iter()
            .any(|p| after.starts_with(p.get(self.prefix.len()..).unwrap_or_default()))
    }

    /// Whether every key `literal` + anything is this namespace's (a SORT
    /// pattern's start before its `*`).
    fn owns_all_after(&self, literal: &[u8]) -> bool {
        if self.all {
            return true;
        }
        if !self.owns(literal) || self.foreign.iter().any(|f| f.starts_with(literal)) {
            return false;
        }
        let rest = literal.get(self.key_prefix.len()..).unwrap_or_default();
        let after = if self.strip_prefix {
            rest
        } else {
            rest.get(self.prefix.len()..).unwrap_or_default()
        };
        !self.longer.iter().any(|p| {
            p.get(self.prefix.len()..)
                .unwrap_or_default()
                .starts_with(after)
        })
    }
}

/// The namespaces a script's keys belong to: what its calls may touch.
#[derive(Debug, Clone)]
pub struct Scope {
    pub parts: Vec<Arc<KeyScope>>,
}

/// Redis's texts for what a script's user may not do (Redis 7.0).
const NO_KEY: &str = "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments";
const NO_COMMAND: &str = "ERR The user executing the script can't run this command or subcommand";
const NO_CHANNEL: &str =
    "ERR The user executing the script can't publish to the channel mentioned in the command";

impl Scope {
    fn owner(&self, k: &[u8]) -> Option<&KeyScope> {
        self.parts.iter().map(|p| &**p).find(|p| p.owns(k))
    }

    /// Whether a key listed by KEYS, SCAN or RANDOMKEY may be shown.
    pub fn shows(&self, k: &[u8]) -> bool {
        self.owner(k).is_some()
    }

    fn strict(&self) -> bool {
        self.parts.iter().any(|p| p.strict)
    }

    /// Checks one command of a script that declared `declared` keys: its
    /// keys, SORT patterns and PUBLISH channel must be the namespaces', and
    /// their limits hold. The error is the command's reply.
    pub fn check(&self, cmd: &Command, declared: &[Bytes]) -> Result<(), Reply> {
        let (spec, args) = (cmd.spec, &cmd.args[..]);
        if matches!(spec.name, "publish" | "spublish") {
            return match args.get(1) {
                Some(ch) if self.shows(ch) => Ok(()),
                _ => Err(Reply::error(NO_CHANNEL)),
            };
        }
        if spec.has(KEYSPACE) {
            // Listing is filtered (see `shows`); wiping the backend is not
            // a namespace's to do.
            return if matches!(spec.name, "flushdb" | "flushall")
                && !self.parts.iter().all(|p| p.all)
            {
                Err(Reply::error(NO_COMMAND))
            } else {
                Ok(())
            };
        }
        let positions = spec.key_positions(args);
        let mut owners = Vec::with_capacity(positions.len());
        for &p in &positions {
            let k = args.get(p).map(|k| &k[..]).unwrap_or_default();
            let owner = self.owner(k).ok_or_else(|| Reply::error(NO_KEY))?;
            if owner.strict && !declared.iter().any(|d| &d[..] == k) {
                return Err(Reply::error(NO_KEY));
            }
            owners.push(owner);
        }
        if spec.has(REACHES) {
            self.patterns(spec, args)?;
        }
        if spec.has(WRITE) {
            limits(args, &positions, &owners)?;
        }
        Ok(())
    }

    /// SORT's BY and GET patterns: every key they can name is owned.
    fn patterns(&self, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Reply> {
        if !spec.name.starts_with("sort") {
            return Ok(());
        }
        let mut i = 2usize;
        while let Some(o) = args.get(i) {
            if o.eq_ignore_ascii_case(b"limit") {
                i = i.saturating_add(3);
                continue;
            }
            if o.eq_ignore_ascii_case(b"by") || o.eq_ignore_ascii_case(b"get") {
                if let Some(p) = args.get(i.saturating_add(1)) {
                    if let Some(star) = p.iter().position(|&c| c == b'*') {
                        let literal = p.get(..star).unwrap_or_default();
                        let ok =
                            !self.strict() && self.parts.iter().any(|s| s.owns_all_after(literal));
                        if &p[..] != b"#" && !ok {
                            return Err(Reply::error(NO_KEY));
                        }
                    }
                }
                i = i.saturating_add(2);
                continue;
            }
            i = i.saturating_add(1);
        }
        Ok(())
    }
}

/// `read_only` and `max_value_size` of the namespaces a write's keys
/// belong to, as keyway checks them for clients' commands.
fn limits(args: &[Bytes], positions: &[usize], owners: &[&KeyScope]) -> Result<(), Reply> {
    if let Some(ro) = owners.iter().find(|o| o.read_only) {
        return Err(CmdError::ReadOnly(ro.namespace.clone()).into());
    }
    let Some((max, ns)) = owners
        .iter()
        .filter_map(|o| o.max_value_size.map(|m| (m, o)))
        .min_by_key(|(m, _)| *m)
    else {
        return Ok(());
    };
    match args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, a)| a.len() as u64 > max && !positions.contains(i))
    {
        Some((_, a)) => Err(CmdError::ValueTooLarge {
            size: a.len(),
            namespace: ns.namespace.clone(),
            max,
        }
        .into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(key_prefix: &str, prefix: &str, strip: bool, longer: &[&str]) -> KeyScope {
        KeyScope {
            namespace: "A".into(),
            key_prefix: Bytes::copy_from_slice(key_prefix.as_bytes()),
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
            strip_prefix: strip,
            longer: longer
                .iter()
                .map(|l| Bytes::copy_from_slice(l.as_bytes()))
                .collect(),
            ..KeyScope::default()
        }
    }

    #[test]
    fn owns_what_routes_back_to_the_namespace() {
        // a: -> tenantA: (stripped); a:b belongs to another namespace.
        let s = scope("tenantA:", "a:", true, &["a:b"]);
        assert!(s.owns(b"tenantA:x"));
        assert!(!s.owns(b"tenantA:bx"));
        assert!(!s.owns(b"secret"));
        assert!(!s.owns(b"tenantB:x"));
        assert!(s.owns_all_after(b"tenantA:w_"));
        assert!(!s.owns_all_after(b"tenantA:"));
        // Names kept: a:x is a:x on the backend.
        let s = scope("", "a:", false, &[]);
        assert!(s.owns(b"a:x"));
        assert!(!s.owns(b"b:x"));
        assert!(s.owns_all_after(b"a:"));
        assert!(!s.owns_all_after(b"a"));
        // The catch-all kept as is, with other prefixes beside it.
        let s = scope("", "", false, &["a:", "b:"]);
        assert!(s.owns(b"secret"));
        assert!(!s.owns(b"a:x"));
        assert!(!s.owns_all_after(b""));
        assert!(s.owns_all_after(b"c"));
    }
}
