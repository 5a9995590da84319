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
use crate::backend::scope::KeyScope;
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
    /// The fraction of single-key reads (0 to 1) also run on the mirror
    /// and compared, to see whether it can be trusted before a cut-over.
    #[serde(default)]
    pub shadow_reads: Option<f64>,
    /// Scripts (on the memory backend) may touch only the keys they
    /// declare, not any key of the namespace.
    #[serde(default)]
    pub strict_scripts: bool,
    /// A login of the namespace's own on its Redis servers (Redis ACL
    /// user), for its own connections: on a server shared with other
    /// namespaces, Redis's ACL then bounds what its scripts touch. Without
    /// one, scripts are refused on a shared server.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
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
    /// Where other namespaces on the same backend keep their keys, inside
    /// what this one's names map to (a catch-all kept as is, beside
    /// namespaces with a `key_prefix`): (backend key prefix, namespace).
    /// Keys there are theirs, never this one's.
    pub foreign: Vec<(Bytes, String)>,
    /// Why its scripts are refused (a shared Redis server, no login of its
    /// own), when they are.
    pub scripts_refused: Option<String>,
    /// What the namespace's scripts may touch, for backends that run them
    /// (see `backend::scope`); None when they may touch the whole backend.
    pub script_scope: Option<Arc<KeyScope>>,
    pub metrics: Arc<NamespaceMetrics>,
    /// The backend's wrapper when the namespace has a mirror: where a
    /// migration (`proxy::migrate`) runs and keeps its status.
    pub mirrored: Option<Arc<crate::backend::mirror::Mirrored>>,
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
            shadow_reads: None,
            strict_scripts: false,
            username: None,
            password: None,
        }
    }

    /// The name its backend is built under: its own, with a login of its
    /// own ("backend@namespace"), or the shared one.
    pub fn backend_key(&self) -> String {
        if self.password.is_some() {
            format!("{}@{}", self.backend, self.name)
        } else {
            self.backend.clone()
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

    /// The namespace whose key `backend_key` is, when it lies where another
    /// namespace on the same backend keeps its keys (see `foreign`).
    pub fn foreign_owner(&self, backend_key: &[u8]) -> Option<&str> {
        self.foreign
            .iter()
            .find(|(p, _)| backend_key.starts_with(p))
            .map(|(_, n)| n.as_str())
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
    /// The Redis version keyway reports (INFO, HELLO, CLIENT LIST's
    /// fields): its own, or the lowest of its Redis servers' once known,
    /// since client libraries pick commands by it.
    pub fn redis_version(&self) -> String {
        let parse =
            |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
        let own = crate::wire::command::REDIS_VERSION.to_string();
        self.namespaces
            .iter()
            .filter_map(|ns| ns.backend.server_version())
            .chain(std::iter::once(own))
            .min_by_key(|v| parse(v))
            .unwrap_or_default()
    }

    /// Whether the reported version is 7.2 or later, whose CLIENT LIST has
    /// `watch`, `lib-name` and `lib-ver`.
    pub fn reports_7_2(&self) -> bool {
        let v: Vec<u32> = self
            .redis_version()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        v >= vec![7, 2]
    }

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
        Router::build(config, backend, &HashMap::new())
    }

    /// As [`Router::with_backends`], with the namespaces whose scripts are
    /// refused and why (see `ops::security`).
    pub fn build(
        config: &[NamespaceConfig],
        backend: impl Fn(&str) -> Option<Arc<dyn Backend>>,
        scripts_refused: &HashMap<String, String>,
    ) -> Router {
        let mut users: HashMap<&str, usize> = HashMap::new();
        for ns in config {
            *users.entry(ns.backend.as_str()).or_default() += 1;
        }
        let mut namespaces = Vec::new();
        for (index, ns) in config.iter().enumerate() {
            let Some(mut b) = backend(&ns.backend_key()) else {
                continue;
            };
            let mut mirrored = None;
            if let Some(m) = ns.mirror.as_deref().and_then(&backend) {
                let shadow = ns.shadow_reads.unwrap_or(0.0);
                let m = crate::backend::mirror::Mirrored::shared(b, m, &ns.name, shadow);
                b = m.clone();
                mirrored = Some(m);
            }
            let owns_backend = users.get(ns.backend.as_str()) == Some(&1)
                && ns.key_prefix.is_empty()
                && (ns.prefix.is_empty() || ns.strip_prefix);
            let longer = config
                .iter()
                .filter(|o| o.prefix.len() > ns.prefix.len() && o.prefix.starts_with(&ns.prefix))
                .map(|o| Bytes::copy_from_slice(o.prefix.as_bytes()))
                .collect();
            let image = |n: &NamespaceConfig| {
                let mut img = n.key_prefix.clone();
                if !n.strip_prefix {
                    img.push_str(&n.prefix);
                }
                img
            };
            let foreign: Vec<(Bytes, String)> = config
                .iter()
                .filter(|o| o.name != ns.name && o.backend == ns.backend)
                .filter(|o| {
                    let (mine, theirs) = (image(ns), image(o));
                    theirs.len() > mine.len() && theirs.starts_with(&mine)
                })
                .map(|o| (Bytes::from(image(o)), o.name.clone()))
                .collect();
            let script_scope = (!owns_backend || ns.strict_scripts).then(|| {
                Arc::new(KeyScope {
                    namespace: ns.name.clone(),
                    all: owns_backend,
                    key_prefix: Bytes::copy_from_slice(ns.key_prefix.as_bytes()),
                    prefix: Bytes::copy_from_slice(ns.prefix.as_bytes()),
                    strip_prefix: ns.strip_prefix,
                    longer,
                    foreign: foreign.iter().map(|(p, _)| p.clone()).collect(),
                    read_only: ns.read_only,
                    max_value_size: ns.max_value_size.map(|m| m.0),
                    strict: ns.strict_scripts,
                })
            });
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
                owns_backend,
                foreign,
                scripts_refused: scripts_refused.get(&ns.name).cloned(),
                script_scope,
                metrics: {
                    crate::wire::metrics::metrics().declare(&ns.name, &ns.backend);
                    NamespaceMetrics::new(&ns.name, &ns.backend)
                },
                mirrored,
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
