//! Config reload (SIGHUP): re-read the file and, if it is valid, swap in
//! the new namespace table at once. Backends whose settings did not change
//! are kept, with their connections and (for memory) their data; commands
//! already running finish on the table they started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use tracing::{error, info, warn};

use crate::backend::{Backend, BackendConfig};
use crate::ops::config::Config;
use crate::ops::security;
use crate::proxy::router::Router;
use crate::server::acl::Users;
use crate::server::settings::Settings;
use crate::server::shared::Shared;
use crate::server::tls::Acceptor;
use crate::wire::metrics::metrics;

/// Built backends by name, with the settings they were built from.
pub type Built = HashMap<String, (BackendConfig, Arc<dyn Backend>)>;

/// Builds a router for `config`, reusing the backends of `old` whose
/// settings are unchanged.
pub fn build(config: &Config, old: &Built) -> (Router, Built) {
    // Mirrored namespaces read where their move stood as they are built.
    crate::backend::mirror::state::set_file(
        config
            .server
            .migration_state
            .as_ref()
            .map(std::path::PathBuf::from),
    );
    let mut built = Built::new();
    let mut keep = |key: String, c: &BackendConfig| {
        let backend = match old.get(&key) {
            Some((was, b)) if was == c => b.clone(),
            _ => c.build(&key),
        };
        built.insert(key, (c.clone(), backend));
    };
    for (name, c) in &config.backends {
        keep(name.clone(), c);
    }
    // A namespace with a login of its own has connections of its own.
    for ns in &config.namespaces {
        let Some(password) = &ns.password else {
            continue;
        };
        let own = config
            .backends
            .get(&ns.backend)
            .and_then(|b| b.with_credentials(ns.username.as_deref(), password));
        if let Some(c) = own {
            keep(ns.backend_key(), &c);
        }
    }
    let refused = security::script_refusals(config);
    let router = Router::build(
        &config.namespaces,
        |n| built.get(n).map(|(_, b)| b.clone()),
        &refused,
    );
    (router, built)
}

/// What reloads work on, beside the server's shared state.
pub struct Operations {
    pub shared: Arc<Shared>,
    /// The running config.
    pub config: ArcSwap<Config>,
    /// The backends behind the router, reused by reloads when unchanged.
    pub backends: Mutex<Built>,
    /// The config file, for reloads.
    pub source: Mutex<Source>,
}

impl Operations {
    /// Remembers the config file, so that reloads re-read it.
    pub fn set_source(&self, source: Source) {
        if let Ok(mut s) = self.source.lock() {
            *s = source;
        }
    }
}

/// The server's settings for a config.
pub fn settings_of(config: &Config) -> Settings {
    // The memory backend that sets max_memory: the bound is on the whole
    // process, whichever backend names it.
    let max_memory = config
        .backends
        .values()
        .find_map(|b| match b {
            BackendConfig::Memory(m) => m.max_memory.map(|max| (max.0, m.eviction.name())),
            _ => None,
        })
        .unwrap_or((0, "noeviction"));
    Settings {
        source: config.source.clone(),
        server: config.server.clone(),
        max_memory,
        users: Arc::new(Users::build(
            &config.users,
            config.server.password.as_deref(),
        )),
        tls: config.server.tls_listen.as_ref().and_then(|_| {
            config
                .server
                .tls
                .build()
                .map_err(|e| error!(problem = %e, "TLS for clients cannot start"))
                .ok()
                .map(Acceptor)
        }),
    }
}

/// Where the running config came from, for reloads.
#[derive(Default, Clone)]
pub struct Source {
    pub path: Option<PathBuf>,
    /// `--listen`, which also applies to reloaded configs.
    pub listen_override: Option<String>,
}

/// What a reload did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Applied,
    /// The file has problems; the running config is kept.
    Rejected(String),
}

impl Operations {
    /// Re-reads the config file and applies it if valid.
    pub fn reload(&self) -> Outcome {
        let source = self.source.lock().map(|s| s.clone()).unwrap_or_default();
        let Some(path) = source.path else {
            warn!("reload asked, but keyway runs without a config file");
            return Outcome::Rejected("no config file to reload".into());
        };
        let loaded = Config::load(&path).and_then(|mut c| {
            if let Some(l) = &source.listen_override {
                c.server.listen = l.clone();
            }
            c.validate().map(|_| c)
        });
        let mut config = match loaded {
            Ok(c) => c,
            Err(problems) => {
                for p in &problems.0 {
                    error!(file = %p.file, field = %p.field, problem = %p.problem, "config reload rejected");
                }
                metrics().reloads("failure");
                return Outcome::Rejected(problems.to_string());
            }
        };
        let current = self.config.load();
        if config.server.listen != current.server.listen {
            warn!(
                configured = %config.server.listen,
                listening = %current.server.listen,
                "the listen address cannot change on reload; keeping the current one"
            );
            config.server.listen = current.server.listen.clone();
        }
        let Ok(mut backends) = self.backends.lock() else {
            return Outcome::Rejected("reload state poisoned".into());
        };
        let (router, built) = build(&config, &backends);
        let kept = built
            .iter()
            .filter(|(n, (_, b))| backends.get(*n).is_some_and(|(_, o)| Arc::ptr_eq(o, b)))
            .count();
        info!(
            namespaces = config.namespaces.len(),
            backends = built.len(),
            kept,
            "config reloaded"
        );
        *backends = built;
        let shared = &self.shared;
        shared.slowlog.configure(
            config.server.slowlog_log_slower_than,
            config.server.slowlog_max_len,
        );
        let settings = settings_of(&config);
        // A user removed or changed loses its connections, as with Redis's
        // ACL DELUSER: they log in again under the new rules.
        let changed = shared.settings.load().users.changed(&settings.users);
        crate::backend::set_databases(settings.server.databases);
        // What CONFIG SET changed lasts until the file is read again.
        crate::backend::memory::tunables::reset();
        shared.settings.store(Arc::new(settings));
        self.config.store(Arc::new(config));
        shared.router.store(Arc::new(router));
        if !changed.is_empty() {
            let mut closed = 0;
            for c in shared.clients.all() {
                if changed.contains(&c.user()) {
                    c.kill.notify_one();
                    closed += 1;
                }
            }
            info!(users = ?changed, closed, "users changed: their connections closed");
        }
        metrics().reloads("success");
        Outcome::Applied
    }
}
