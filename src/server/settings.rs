//! The server's settings: its `[server]` table, and what else of the
//! running config the server shows (INFO, CONFIG GET). Operations builds
//! them from the config file and swaps them on reload.

use serde::Deserialize;

use crate::wire::size::ByteSize;

/// What the server reads of the running config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// The file the config came from, or `<built-in>`.
    pub source: String,
    pub server: ServerConfig,
    /// The memory backend's `max_memory` (0: none) and eviction policy: the
    /// bound is on the whole process, so INFO and CONFIG GET show it.
    pub max_memory: (u64, &'static str),
    /// The users (`[[users]]`, and `default` from `password`).
    pub users: std::sync::Arc<crate::server::acl::Users>,
    /// TLS for clients of `tls_listen`, from the files as they were read
    /// at start or last reload; None without TLS (or when they failed).
    pub tls: Option<crate::server::tls::Acceptor>,
}

/// Where keyway listens by default, and the default config's only namespace.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6380";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `host:port` to accept clients on.
    pub listen: String,
    /// Connections beyond this get `-ERR max number of clients reached`.
    pub max_clients: usize,
    /// Largest bulk string a client may send (Redis's proto-max-bulk-len).
    pub max_bulk_len: ByteSize,
    /// When set, clients must AUTH with it (user `default`) first.
    pub password: Option<String>,
    /// `host:port` for Prometheus scrapes (`GET /metrics`); off when unset.
    pub metrics_listen: Option<String>,
    /// SLOWLOG keeps requests slower than this many microseconds (Redis's
    /// slowlog-log-slower-than): negative turns it off, 0 keeps all.
    pub slowlog_log_slower_than: i64,
    /// Entries SLOWLOG keeps (Redis's slowlog-max-len).
    pub slowlog_max_len: usize,
    /// Seconds a client may stay idle before it is closed (Redis's
    /// timeout); 0 never closes one. Subscribers and clients waiting in a
    /// blocking command are not idle.
    pub timeout: u64,
    /// Output buffer limits per class of client (Redis's
    /// client-output-buffer-limit).
    pub client_output_buffer_limit: crate::wire::limit::OutputLimits,
    /// What all clients may hold together, buffers and queued messages
    /// (Redis 7's maxmemory-clients); past it the largest are closed. 0: no
    /// bound. Client memory never counts against a memory backend's
    /// `max_memory`.
    pub max_memory_clients: ByteSize,
    /// Until a client authenticates (when a password is set), a request may
    /// have this many arguments at most...
    pub unauthenticated_max_args: usize,
    /// ...each of this many bytes at most, as Redis bounds them.
    pub unauthenticated_max_bulk: ByteSize,
    /// Who may run DEBUG (Redis's enable-debug-command): no one, anyone,
    /// or clients connected over loopback.
    pub enable_debug_command: DebugCommand,
    /// `host:port` to accept TLS clients on, beside `listen`.
    pub tls_listen: Option<String>,
    /// Certificate, key and client CAs for `tls_listen`.
    pub tls: crate::server::tls::TlsSettings,
    /// As Redis's protected-mode: while the default user has no password,
    /// clients from other hosts get `-DENIED` and are closed.
    pub protected_mode: bool,
    /// Databases a client may SELECT (Redis's `databases`): 0 to this
    /// less one, on backends that have them (memory, redis).
    pub databases: u16,
    /// A file where each mirrored namespace's move (phase, backfill
    /// cursor) is kept across restarts; none by default.
    pub migration_state: Option<String>,
}

/// Redis's enable-debug-command values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DebugCommand {
    #[default]
    No,
    Yes,
    Local,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.into(),
            max_clients: 10_000,
            max_bulk_len: ByteSize(512 * 1024 * 1024),
            password: None,
            metrics_listen: None,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            timeout: 0,
            client_output_buffer_limit: crate::wire::limit::OutputLimits::default(),
            max_memory_clients: ByteSize(0),
            unauthenticated_max_args: crate::wire::protocol::UNAUTH_MAX_ARGS,
            unauthenticated_max_bulk: ByteSize(crate::wire::protocol::UNAUTH_MAX_BULK as u64),
            enable_debug_command: DebugCommand::No,
            tls_listen: None,
            tls: Default::default(),
            protected_mode: true,
            databases: 16,
            migration_state: None,
        }
    }
}
