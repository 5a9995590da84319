//! A running keyway, built from a config: the server floor given its
//! settings and router, the operator's HTTP listener, and the state
//! reloads need (the config, the backends built from it, the file).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::ops::config::Config;
use crate::ops::http::{self, Readiness};
use crate::ops::reload::{self, Built, Operations, Source, settings_of};
use crate::server::Server;
use crate::server::shared::Shared;

pub struct Instance {
    server: Server,
    http: Option<TcpListener>,
    ops: Arc<Operations>,
}

impl Instance {
    /// Builds the backends and the namespace table of `config` and binds
    /// its listeners (port 0 picks a free port).
    pub async fn bind(config: Config) -> std::io::Result<Instance> {
        let http = match config.server.metrics_listen.as_deref() {
            Some(a) => Some(crate::server::bind_addr(a).await?),
            None => None,
        };
        let http_addr = match &http {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (router, built) = reload::build(&config, &Built::new());
        let server = Server::bind(settings_of(&config), router, http_addr).await?;
        let ops = Arc::new(Operations {
            shared: server.shared(),
            config: ArcSwap::from_pointee(config),
            backends: Mutex::new(built),
            source: Mutex::new(Source::default()),
        });
        Ok(Instance { server, http, ops })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.server.shared()
    }

    pub fn operations(&self) -> Arc<Operations> {
        self.ops.clone()
    }

    /// Serves until `shutdown` completes (see [`Server::run`]).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        if let Some(l) = self.http.take() {
            let shared = self.server.shared();
            let ready: Readiness = Arc::new(move || readiness(&shared));
            let history = Arc::new(crate::ops::status::History::default());
            tokio::spawn(history.clone().run(self.server.shared()));
            let (shared, ops) = (self.server.shared(), self.ops.clone());
            let status: http::Status =
                Arc::new(move || crate::ops::status::json(&shared, &ops.config.load(), &history));
            tokio::spawn(http::serve(
                l,
                self.server.shared().stopping(),
                ready,
                status,
            ));
        }
        let shared = self.server.shared();
        self.server.run(shutdown).await;
        // After the last client: mirrors replay what is queued for them
        // (a few seconds at most), then every backend that keeps data
        // writes it out (the memory backend's snapshot), mirrors included.
        let router = shared.router.load();
        for m in router
            .namespaces
            .iter()
            .filter_map(|ns| ns.mirrored.as_ref())
        {
            let drained = m.probe(Vec::new());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drained).await;
        }
        let backends: Vec<Arc<dyn crate::backend::Backend>> = self
            .ops
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(_, b)| b.clone())
            .collect();
        for backend in backends {
            let _ = tokio::task::spawn_blocking(move || backend.shutdown()).await;
        }
    }
}

/// Ready unless a backend that a namespace uses is down (one that connects
/// on first use counts as ready, or no client would ever be sent to try
/// it). The text lists every backend's health.
fn readiness(shared: &Shared) -> (bool, String) {
    let router = shared.router.load();
    let mut ready = true;
    let mut text = String::new();
    for (name, kind, health) in router.backends_health() {
        ready &= !health.starts_with("down");
        text.push_str(&format!("backend '{name}' ({kind}): {health}\n"));
    }
    (ready, text)
}
