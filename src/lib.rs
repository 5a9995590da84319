//! keyway: a Redis-wire-compatible proxy that routes each key, by prefix, to
//! the namespace that owns it, and each namespace to a backend.
//!
//! The source is a house of five floors, bottom to top; a module imports
//! only from its own floor and the floors below (`tests/layers.rs` checks
//! it against [`FLOORS`]):
//!
//! 1. [`wire`]: what everything stands on. The request codec
//!    ([`wire::protocol`], keeping each request's raw bytes), the command
//!    table ([`wire::command`]: arity, key positions, flags), replies and
//!    error texts, argument parsing, SCAN cursors, the merging of split
//!    replies; and the process-wide counters (allocated bytes, metrics).
//! 2. [`backend`]: the `Backend` trait and one file or folder per kind of
//!    backend (memory, redis, redis-cluster, redis-shards, memcached, and
//!    `mirror`, which wraps one to replay its writes on another, tracks
//!    which keys live writes touch during a migration, and shadows reads),
//!    built
//!    from `[backends.NAME]` tables; `upstream`: connections to RESP
//!    servers and the pipes clients share.
//! 3. [`proxy`]: from a client's commands to backends. `router`
//!    (namespaces, prefix routing, key rewriting), `dispatch` (batches per
//!    backend, split and merged multi-key commands, namespace limits),
//!    `keyspace` (KEYS, SCAN, FLUSH* over every namespace), `transaction`
//!    and `pubsub` (a client's state across backends), `migrate` (a
//!    mirrored namespace's backfill and verification).
//! 4. [`server`]: the listener and the state connections share; one
//!    `connection` per client (read requests, run them as a batch, write
//!    the replies), `admin` (the commands keyway answers itself, a file per
//!    family), `clients` (CLIENT LIST, KILL), `limits` (what a client may
//!    make keyway hold), `settings` (its `[server]` table).
//! 5. [`ops`]: what an operator touches. `config` (the file: load,
//!    validate, summary), `reload` (SIGHUP), `http` (metrics and probes),
//!    `migrate_cli` (`keyway migrate`), and [`ops::Instance`], which
//!    builds a running keyway from a config.
//!
//! How a command flows: `server` accepts the client, its `connection`
//! decodes requests with `wire::protocol` and looks each up in
//! `wire::command`; commands keyway answers go to `server::admin`, the rest
//! to `proxy::dispatch`, which asks `proxy::router` for each key's
//! namespace and sends batches to `backend`s; replies come back in order.
//!
//! Where new things go: a new admin command is a file (or a function) in
//! `server/admin/` and an arm in its `execute`; a new backend is a file or
//! folder in `backend/` and a line in its `backends!` table; a new
//! per-namespace policy is a field of `proxy::router::NamespaceConfig`
//! (with its validation in `ops::config`), enforced in `proxy::dispatch`.
//! The config's data types live on the floor that uses them
//! (`NamespaceConfig` in the proxy, `ServerConfig` in the server, each
//! backend's table in its file); `ops::config` assembles the file.

// Nothing a client sends may take the process down: no unwrap, expect or
// panic outside tests. The few places that state an invariant say why.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The floors of `src/`, bottom to top: each module imports only from its
/// own floor and those below (`tests/layers.rs` checks every `crate::`
/// path against this order).
pub const FLOORS: [&str; 5] = ["wire", "backend", "proxy", "server", "ops"];

pub mod backend;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod wire;
