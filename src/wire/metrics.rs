//! Prometheus metrics: the process-wide registry every floor counts in;
//! `ops::http` serves it on `[server] metrics_listen`.
//!
//! One process-wide set, like Prometheus's own default registry. The hot
//! path touches only atomics: per-command counters are resolved once per
//! (namespace, command) and cached in the namespace, and latency is
//! observed once per backend batch, not per command.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::wire::command::{self, CommandSpec};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub namespace: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedirectLabels {
    pub backend: String,
    /// "moved" or "ask".
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceResultLabels {
    pub namespace: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendResultLabels {
    pub backend: String,
    pub result: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Distinct error codes INFO errorstats keeps, as Redis bounds them.
const ERROR_CODES_MAX: usize = 128;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub connections_rejected: Counter,
    commands: Family<CommandLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    /// Error replies by their first word, as INFO errorstats lists them.
    error_codes: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    latency: HistogramFamily,
    upstream_connections: Family<BackendLabels, Gauge>,
    reconnects: Family<BackendLabels, Counter>,
    redirects: Family<RedirectLabels, Counter>,
    slot_map_reads: Family<BackendResultLabels, Counter>,
    mirrored: Family<NamespaceResultLabels, Counter>,
    migration_phase: Family<PhaseLabels, Gauge>,
    /// Calls of the commands keyway answers itself, by table id (INFO
    /// commandstats; those sent to backends are counted per namespace).
    local_calls: Vec<std::sync::atomic::AtomicU64>,
    shadow_reads: Family<NamespaceResultLabels, Counter>,
    migration_keys: Family<CountLabels, Gauge>,
    migration_bytes: Family<NamespaceLabels, Gauge>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    reloads: Family<ResultLabels, Counter>,
    limit_closed: Family<LimitLabels, Counter>,
    panics: Family<CommandOnlyLabels, Counter>,
    panics_total: std::sync::atomic::AtomicU64,
    user_commands: Family<UserLabels, Counter>,
    acl_denials: Family<DenialLabels, Counter>,
    auth_failures: Family<UserLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CountLabels {
    pub namespace: String,
    pub count: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// The phases a mirrored namespace goes through (see `backend::mirror`).
pub const MIGRATION_PHASES: &[&str] = &[
    "mirroring",
    "backfilling",
    "backfilled",
    "verifying",
    "verified",
    "differs",
    "stopped",
    "failed",
    "cut over",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserLabels {
    pub user: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub user: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandOnlyLabels {
    pub command: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("keyway"),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_rejected: Counter::default(),
            commands: Family::default(),
            errors: Family::default(),
            error_codes: Default::default(),
            latency: Family::new_with_constructor(latency_histogram),
            upstream_connections: Family::default(),
            reconnects: Family::default(),
            redirects: Family::default(),
            slot_map_reads: Family::default(),
            mirrored: Family::default(),
            migration_phase: Family::default(),
            local_calls: (0..crate::wire::command::table().len())
                .map(|_| Default::default())
                .collect(),
            shadow_reads: Family::default(),
            migration_keys: Family::default(),
            migration_bytes: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            reloads: Family::default(),
            limit_closed: Family::default(),
            panics: Family::default(),
            panics_total: Default::default(),
            user_commands: Family::default(),
            acl_denials: Family::default(),
            auth_failures: Family::default(),
        };
        m.registry.register(
            "user_commands",
            "Commands run, by the user that ran them",
            m.user_commands.clone(),
        );
        m.registry.register(
            "acl_denials",
            "Commands refused by a user's rights (NOPERM), by user and reason (command, key, channel)",
            m.acl_denials.clone(),
        );
        m.registry.register(
            "auth_failures",
            "Failed AUTH and HELLO AUTH, by the user named ((unknown) for a name no user has)",
            m.auth_failures.clone(),
        );
        let r = &mut m.registry;
        r.register(
            "client_connections",
            "Client connections open now",
            m.connections.clone(),
        );
        r.register(
            "client_connections_accepted",
            "Client connections accepted",
            m.connections_total.clone(),
        );
        r.register(
            "client_connections_rejected",
            "Client connections refused at max_clients",
            m.connections_rejected.clone(),
        );
        r.register(
            "commands",
            "Commands run, by command and namespace",
            m.commands.clone(),
        );
        r.register(
            "errors",
            "Error replies, by their code (ERR, WRONGTYPE, ...)",
            m.errors.clone(),
        );
        r.register(
            "backend_batch_seconds",
            "Time a backend took for a batch of one client's commands",
            m.latency.clone(),
        );
        r.register(
            "upstream_connections",
            "Upstream connections open, by backend",
            m.upstream_connections.clone(),
        );
        r.register(
            "upstream_reconnects",
            "Upstream connections re-established after a failure, by backend",
            m.reconnects.clone(),
        );
        r.register(
            "cluster_redirects",
            "MOVED and ASK replies followed, by redis-cluster backend",
            m.redirects.clone(),
        );
        r.register(
            "cluster_slot_map_reads",
            "Reads of a redis-cluster backend's slot map, by result",
            m.slot_map_reads.clone(),
        );
        r.register(
            "mirror_commands",
            "Writes a namespace's mirror was given, by result (ok, error, dropped when \
             its queue was full, unsupported by its kind of backend), and keys copied to it \
             because it refused a write (repaired)",
            m.mirrored.clone(),
        );
        r.register(
            "shadow_reads",
            "Live reads also run on a namespace's mirror (shadow_reads), by result: same, \
             different, skipped (a write raced it, or the mirror's queue was full)",
            m.shadow_reads.clone(),
        );
        r.register(
            "migration_phase",
            "1 for the phase a mirrored namespace is in (mirroring, backfilling, backfilled, \
             verifying, verified, differs, stopped, failed, cut over), 0 for the others",
            m.migration_phase.clone(),
        );
        r.register(
            "migration_keys",
            "Keys of the namespace's current or last backfill or verification, by count \
             (done, total, retried, skipped, errors, differences)",
            m.migration_keys.clone(),
        );
        r.register(
            "migration_bytes",
            "Bytes of values copied by the namespace's current or last backfill",
            m.migration_bytes.clone(),
        );
        r.register(
            "client_read_bytes",
            "Bytes read from clients",
            m.bytes_in.clone(),
        );
        r.register(
            "client_written_bytes",
            "Bytes written to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads, by result",
            m.reloads.clone(),
        );
        r.register(
            "clients_closed_for_limits",
            "Clients closed for a limit (client_output_buffer_limit, \
             max_memory_clients, timeout), by limit",
            m.limit_closed.clone(),
        );
        r.register(
            "internal_errors",
            "Commands that hit a bug in keyway (a panic, caught and answered \
             with -ERR internal error), by command",
            m.panics.clone(),
        );
        // Both results exist from the start, so a rate() sees the first one.
        for result in ["success", "failure"] {
            drop(m.reloads.get_or_create(&ResultLabels {
                result: result.into(),
            }));
        }
        m
    }

    /// The counter for a command in a namespace, to cache.
    pub fn command(&self, spec: &CommandSpec, namespace: &str) -> Counter {
        self.commands
            .get_or_create(&CommandLabels {
                command: spec.name.to_string(),
                namespace: namespace.to_string(),
            })
            .clone()
    }

    pub fn latency(&self, namespace: &str, backend: &str) -> Histogram {
        self.latency
            .get_or_create(&RouteLabels {
                namespace: namespace.to_string(),
                backend: backend.to_string(),
            })
            .clone()
    }

    /// Counts an error reply by its code, the text before the first space.
    /// Codes other than Redis's own are counted as `OTHER`: a script can
    /// answer any text, and each label would be kept for good.
    pub fn error(&self, text: &[u8]) {
        const CODES: &[&str] = &[
            "ERR",
            "WRONGTYPE",
            "NOAUTH",
            "WRONGPASS",
            "NOPERM",
            "NOSCRIPT",
            "BUSY",
            "BUSYKEY",
            "OOM",
            "READONLY",
            "EXECABORT",
            "MOVED",
            "ASK",
            "CROSSSLOT",
            "CLUSTERDOWN",
            "TRYAGAIN",
            "LOADING",
            "NOPROTO",
            "NOGROUP",
            "MASTERDOWN",
            "MISCONF",
            "NOREPLICAS",
            "UNBLOCKED",
            "DENIED",
        ];
        let code = text.split(|&b| b == b' ').next().unwrap_or_default();
        if let Ok(mut codes) = self.error_codes.lock() {
            // Redis's bound on distinct codes; past it, errors are not listed.
            let code = String::from_utf8_lossy(code);
            if codes.len() < ERROR_CODES_MAX || codes.contains_key(code.as_ref()) {
                *codes.entry(code.into_owned()).or_default() += 1;
            }
        }
        let kind = CODES
            .iter()
            .find(|c| c.as_bytes() == code)
            .copied()
            .unwrap_or("OTHER");
        self.errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Error replies counted so far, of every code.
    pub fn errors_total(&self) -> u64 {
        self.error_stats().iter().map(|(_, n)| n).sum()
    }

    /// Error replies by their first word, and their total (INFO
    /// errorstats and total_error_replies).
    pub fn error_stats(&self) -> Vec<(String, u64)> {
        self.error_codes
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// CONFIG RESETSTAT: forget the errors INFO lists (Prometheus
    /// counters keep counting, as counters must).
    pub fn reset_error_stats(&self) {
        if let Ok(mut c) = self.error_codes.lock() {
            c.clear();
        }
    }

    /// The counter of commands `user` ran: held by its connections, so
    /// that counting costs no lookup.
    pub fn user_commands(&self, user: &str) -> Counter {
        self.user_commands
            .get_or_create(&UserLabels { user: user.into() })
            .clone()
    }

    /// Counts a command of `user` refused for `reason`.
    pub fn acl_denied(&self, user: &str, reason: &str) {
        self.acl_denials
            .get_or_create(&DenialLabels {
                user: user.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a failed login as `user`.
    pub fn auth_failed(&self, user: &str) {
        self.auth_failures
            .get_or_create(&UserLabels { user: user.into() })
            .inc();
    }

    /// Counts a client closed for `limit`.
    pub fn client_closed(&self, limit: &str) {
        self.limit_closed
            .get_or_create(&LimitLabels {
                limit: limit.to_string(),
            })
            .inc();
    }

    /// Panics caught so far, for INFO.
    pub fn internal_errors(&self) -> u64 {
        self.panics_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a panic caught while running `command`.
    pub fn internal_error(&self, command: &str) {
        self.panics_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.panics
            .get_or_create(&CommandOnlyLabels {
                command: command.to_string(),
            })
            .inc();
    }

    /// Makes the series of a namespace and its backend exist from the
    /// start, at zero, so that dashboards and alerts see them before the
    /// first command or reconnection.
    pub fn declare(&self, namespace: &str, backend: &str) {
        let _ = self.latency(namespace, backend);
        let _ = self.upstream(backend);
        let _ = self.reconnects.get_or_create(&BackendLabels {
            backend: backend.to_string(),
        });
    }

    pub fn upstream(&self, backend: &str) -> Gauge {
        self.upstream_connections
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .clone()
    }

    pub fn reconnected(&self, backend: &str) {
        self.reconnects
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .inc();
    }

    pub fn redirected(&self, backend: &str, ask: bool) {
        self.redirects
            .get_or_create(&RedirectLabels {
                backend: backend.to_string(),
                kind: if ask { "ask" } else { "moved" }.to_string(),
            })
            .inc();
    }

    /// A mirrored namespace's move, as it stands: its phase and counts.
    pub fn migration(&self, namespace: &str, phase: &str, counts: &[(&str, u64)], bytes: u64) {
        for p in MIGRATION_PHASES {
            self.migration_phase
                .get_or_create(&PhaseLabels {
                    namespace: namespace.to_string(),
                    phase: p.to_string(),
                })
                .set(i64::from(*p == phase));
        }
        for (count, n) in counts {
            self.migration_keys
                .get_or_create(&CountLabels {
                    namespace: namespace.to_string(),
                    count: count.to_string(),
                })
                .set((*n).min(i64::MAX as u64) as i64);
        }
        self.migration_bytes
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_string(),
            })
            .set(bytes.min(i64::MAX as u64) as i64);
    }

    /// A command keyway answered itself (see `local_calls`).
    pub fn local_call(&self, id: usize) {
        if let Some(n) = self.local_calls.get(id) {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn local_calls(&self, id: usize) -> u64 {
        self.local_calls
            .get(id)
            .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn shadow_read(&self, namespace: &str, result: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.shadow_reads
            .get_or_create(&NamespaceResultLabels {
                namespace: namespace.to_string(),
                result: result.to_string(),
            })
            .inc_by(n);
    }

    pub fn mirrored(&self, namespace: &str, result: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.mirrored
            .get_or_create(&NamespaceResultLabels {
                namespace: namespace.to_string(),
                result: result.to_string(),
            })
            .inc_by(n);
    }

    pub fn slot_map_read(&self, backend: &str, ok: bool) {
        self.slot_map_reads
            .get_or_create(&BackendResultLabels {
                backend: backend.to_string(),
                result: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    pub fn reloads(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Per-namespace metric handles, resolved lazily and cached, so counting a
/// command is an atomic increment.
pub struct NamespaceMetrics {
    name: String,
    commands: Box<[OnceLock<Counter>]>,
    latency: OnceLock<Histogram>,
    backend: String,
    /// Backend batches timed and their total microseconds, for the status
    /// page's average latency (the histogram does not give its sum back).
    batches: std::sync::atomic::AtomicU64,
    batch_micros: std::sync::atomic::AtomicU64,
}

impl NamespaceMetrics {
    pub fn new(name: &str, backend: &str) -> Arc<NamespaceMetrics> {
        Arc::new(NamespaceMetrics {
            name: name.to_string(),
            commands: (0..command::table().len())
                .map(|_| OnceLock::new())
                .collect(),
            latency: OnceLock::new(),
            backend: backend.to_string(),
            batches: Default::default(),
            batch_micros: Default::default(),
        })
    }

    /// Commands counted so far, of every kind.
    pub fn commands_total(&self) -> u64 {
        self.commands
            .iter()
            .filter_map(|c| c.get())
            .map(|c| c.get())
            .sum()
    }

    /// Commands of one kind (by table id) counted so far.
    pub fn command_count(&self, id: usize) -> u64 {
        self.commands
            .get(id)
            .and_then(|c| c.get())
            .map_or(0, |c| c.get())
    }

    /// Batches timed so far and their total microseconds.
    pub fn timed(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.batches.load(Relaxed), self.batch_micros.load(Relaxed))
    }

    pub fn command(&self, spec: &CommandSpec) {
        if let Some(c) = self.commands.get(spec.id) {
            c.get_or_init(|| metrics().command(spec, &self.name)).inc();
        }
    }

    pub fn observe(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.batches.fetch_add(1, Relaxed);
        self.batch_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.latency
            .get_or_init(|| metrics().latency(&self.name, &self.backend))
            .observe(took.as_secs_f64());
    }
}
