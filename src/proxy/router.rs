//! Namespaces and the prefix router.
//!
//! The router maps a key to the namespace with the longest matching prefix.
//! It is built whole from a config and swapped atomically (see
//! `server::Shared`), so every command sees one consistent table.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use serde::Deserialize;

use crate::backend::Backend;
use crate::wire::metrics::NamespaceMetrics;
use crate::wire::size::ByteSize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    pub name: String,
    /// Keys starting with this belong to the namespace; the longest matching
    /// prefix wins and "" is the catch-all.
    pub prefix: String,
    /// Name of a `[backends.NAME]` table.
    pub backend: String,
    /// Seconds; given to keys written without a TTL of their own.
    #[serde(default)]
    pub default_ttl: Option<u64>,
    /// Remove the matched prefix before the key reaches the backend.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Prepended to keys on their way to the backend, removed from replies.
    #[serde(default)]
    pub key_prefix: String,
    /// Refuse every write (`-READONLY`): for data another application owns.
    #[serde(default)]
    pub read_only: bool,
    /// The largest argument a write may carry besides its keys (a value, a
    /// field, a member); larger ones are refused before reaching the backend.
    #[serde(default)]
    pub max_value_size: Option<ByteSize>,
    /// Another backend on which every write the namespace's backend
    /// acknowledged is replayed: to fill a backend before moving to it.
    #[serde(default)]
    pub mirror: Option<String>,
}

pub struct Namespace {
    pub name: String,
    /// Position in the config, used in SCAN cursors.
    pub index: usize,
    pub prefix: Bytes,
    pub backend_name: String,
    pub backend: Arc<dyn Backend>,
    pub default_ttl: Option<u64>,
    pub strip_prefix: bool,
    pub key_prefix: Bytes,
    /// Limits (see the config's `read_only` and `max_value_size`), checked
    /// by `dispatch::limits`.
    pub read_only: bool,
    pub max_value_size: Option<u64>,
    /// The namespace is alone on its backend and maps keys one to one, so
    /// whole-backend commands (DBSIZE, FLUSHDB) can act on it directly.
    pub owns_backend: bool,
    pub metrics: Arc<NamespaceMetrics>,
}

impl NamespaceConfig {
    /// A namespace of `prefix` on `backend`, with no policy.
    pub fn new(name: &str, prefix: &str, backend: &str) -> NamespaceConfig {
        NamespaceConfig {
            name: name.into(),
            prefix: prefix.into(),
            backend: backend.into(),
            default_ttl: None,
            strip_prefix: false,
            key_prefix: String::new(),
            read_only: false,
            max_value_size: None,
            mirror: None,
        }
    }
}

impl Namespace {
    /// Whether keys change on their way to the backend.
    pub fn rewrites(&self) -> bool {
        (self.strip_prefix && !self.prefix.is_empty()) || !self.key_prefix.is_empty()
    }

    /// The backend's name for a client key of this namespace.
    pub fn to_backend(&self, key: &[u8]) -> Bytes {
        let rest = if self.strip_prefix {
            &key[self.prefix.len().min(key.len())..]
        } else {
            key
        };
        let mut out = BytesMut::with_capacity(self.key_prefix.len() + rest.len());
        out.extend_from_slice(&self.key_prefix);
        out.extend_from_slice(rest);
        out.freeze()
    }

    /// The client's name for a backend key, or None when the key is outside
    /// this namespace's part of the backend.
    pub fn from_backend(&self, key: &Bytes) -> Option<Bytes> {
        let rest = key.strip_prefix(&self.key_prefix[..])?;
        if self.strip_prefix {
            let mut out = BytesMut::with_capacity(self.prefix.len() + rest.len());
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(rest);
            Some(out.freeze())
        } else if rest.starts_with(&self.prefix) {
            Some(key.slice(self.key_prefix.len()..))
        } else {
            None
        }
    }

    /// What every backend key of this namespace starts with.
    pub fn scope(&self) -> Bytes {
        if self.strip_prefix {
            self.key_prefix.clone()
        } else {
            let mut out = BytesMut::from(&self.key_prefix[..]);
            out.extend_from_slice(&self.prefix);
            out.freeze()
        }
    }
}

pub struct Router {
    /// In config order.
    pub namespaces: Vec<Arc<Namespace>>,
    /// Distinct non-empty prefix lengths, longest first.
    lengths: Vec<usize>,
    by_prefix: HashMap<Bytes, usize>,
    /// The namespace with the empty prefix, if any: found without hashing
    /// the key, since it is often the only one.
    catch_all: Option<usize>,
}

impl Router {
    /// Each backend a namespace uses, once, in config order, with its
    /// health (see [`crate::backend::Backend::health`]).
    pub fn backends_health(&self) -> Vec<(&str, &'static str, String)> {
        let mut seen: Vec<(&str, &'static str, String)> = Vec::new();
        for ns in &self.namespaces {
            if seen.iter().all(|(name, ..)| *name != ns.backend_name) {
                seen.push((&ns.backend_name, ns.backend.kind(), ns.backend.health()));
            }
        }
        seen
    }

    /// Builds the router for namespaces `config` (validated), with
    /// backends supplied by `backend` (by name); namespaces whose backend is
    /// unknown are left out.
    pub fn with_backends(
        config: &[NamespaceConfig],
        backend: impl Fn(&str) -> Option<Arc<dyn Backend>>,
    ) -> Router {
        let mut users: HashMap<&str, usize> = HashMap::new();
        for ns in config {
            *users.entry(ns.backend.as_str()).or_default() += 1;
        }
        let mut namespaces = Vec::new();
        for (index, ns) in config.iter().enumerate() {
            let Some(mut b) = backend(&ns.backend) else {
                continue;
            };
            if let Some(m) = ns.mirror.as_deref().and_then(&backend) {
                b = crate::backend::mirror::Mirrored::shared(b, m, &ns.name);
            }
            namespaces.push(Arc::new(Namespace {
                name: ns.name.clone(),
                index,
                prefix: Bytes::copy_from_slice(ns.prefix.as_bytes()),
                backend_name: ns.backend.clone(),
                backend: b,
                default_ttl: ns.default_ttl,
                strip_prefix: ns.strip_prefix,
                key_prefix: Bytes::copy_from_slice(ns.key_prefix.as_bytes()),
                read_only: ns.read_only,
                max_value_size: ns.max_value_size.map(|m| m.0),
                owns_backend: users.get(ns.backend.as_str()) == Some(&1)
                    && ns.key_prefix.is_empty()
                    && (ns.prefix.is_empty() || ns.strip_prefix),
                metrics: NamespaceMetrics::new(&ns.name, &ns.backend),
            }));
        }
        let by_prefix: HashMap<Bytes, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (ns.prefix.clone(), i))
            .collect();
        let mut lengths: Vec<usize> = by_prefix
            .keys()
            .map(|p| p.len())
            .filter(|&l| l > 0)
            .collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        let catch_all = by_prefix.get(&b""[..]).copied();
        Router {
            namespaces,
            lengths,
            by_prefix,
            catch_all,
        }
    }

    /// The namespace owning `key`: the longest prefix that matches.
    pub fn route(&self, key: &[u8]) -> Option<&Arc<Namespace>> {
        self.lengths
            .iter()
            .filter(|&&len| len <= key.len())
            .find_map(|&len| self.by_prefix.get(&key[..len]).copied())
            .or(self.catch_all)
            .map(|i| &self.namespaces[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(spec: &[(&str, &str, bool, &str)]) -> Router {
        let config: Vec<NamespaceConfig> = spec
            .iter()
            .map(
                |&(name, prefix, strip_prefix, key_prefix)| NamespaceConfig {
                    strip_prefix,
                    key_prefix: key_prefix.into(),
                    ..NamespaceConfig::new(name, prefix, "m")
                },
            )
            .collect();
        let memory: Arc<dyn Backend> = Arc::new(crate::backend::memory::MemoryBackend::new(
            &Default::default(),
        ));
        Router::with_backends(&config, |_| Some(memory.clone()))
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router(&[
            ("all", "", false, ""),
            ("u", "user:", false, ""),
            ("ua", "user:admin:", false, ""),
        ]);
        let name = |k: &str| r.route(k.as_bytes()).map(|n| n.name.clone());
        assert_eq!(name("user:admin:1").as_deref(), Some("ua"));
        assert_eq!(name("user:1").as_deref(), Some("u"));
        assert_eq!(name("other").as_deref(), Some("all"));
        assert_eq!(name("").as_deref(), Some("all"));
        let r = router(&[("u", "user:", false, "")]);
        assert!(r.route(b"nope").is_none());
    }

    #[test]
    fn rewriting_round_trips() {
        let r = router(&[("c", "confirm:", true, "app1:")]);
        let ns = r.route(b"confirm:42").unwrap();
        assert_eq!(&ns.to_backend(b"confirm:42")[..], b"app1:42");
        assert_eq!(
            ns.from_backend(&Bytes::from("app1:42")).as_deref(),
            Some(&b"confirm:42"[..])
        );
        assert_eq!(ns.from_backend(&Bytes::from("other:42")), None);
        assert_eq!(&ns.scope()[..], b"app1:");
        let r = router(&[("c", "confirm:", false, "app1:")]);
        let ns = r.route(b"confirm:42").unwrap();
        assert_eq!(&ns.to_backend(b"confirm:42")[..], b"app1:confirm:42");
        assert_eq!(&ns.scope()[..], b"app1:confirm:");
        assert!(!ns.owns_backend);
    }
}
