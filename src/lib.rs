//! keyway: a Redis-wire-compatible proxy that routes each key, by prefix, to
//! the namespace that owns it, and each namespace to a backend.
//!
//! How a command flows, and where each step lives:
//! - [`server`]: accepts clients, caps their number, shuts down gracefully.
//! - [`connection`]: one client; reads every complete request, runs them as a
//!   batch and writes the replies in order with one write.
//! - [`protocol`]: the request codec (RESP multibulk and inline), keeping
//!   each request's raw bytes for passthrough.
//! - [`command`]: the command table (arity, key positions, flags) that every
//!   other module reads.
//! - [`admin`]: commands keyway answers itself (HELLO, AUTH, CLIENT, INFO, ...);
//!   [`clients`]: the clients CLIENT LIST and CLIENT KILL see.
//! - [`router`]: namespaces and longest-prefix routing, key rewriting.
//! - [`dispatch`]: sends keyed commands to backends in batches, splits
//!   multi-key commands across backends and merges the replies.
//! - [`keyspace`]: KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSH* fanned out to all
//!   namespaces.
//! - [`transaction`]: MULTI/EXEC queued by keyway, WATCH on a pinned
//!   connection; [`pubsub`]: a client's subscriptions across backends.
//! - [`backend`]: the `Backend` trait and its implementations (one file or
//!   folder each), built from `[backends.NAME]` config tables; `redis-shards`
//!   is the cluster backend's routing over a fixed map, and `mirror` wraps a
//!   namespace's backend to replay its writes on another.
//! - [`upstream`]: connections to RESP servers (TLS, AUTH, Sentinel) and
//!   the multiplexed pipes the `redis`, `redis-cluster` and `redis-shards`
//!   backends share between clients.
//! - [`reload`]: SIGHUP re-reads the config and swaps the router, keeping
//!   unchanged backends; [`metrics`]: Prometheus counters and the scrape
//!   endpoint.
//! - [`reply`]: replies and their RESP2/RESP3 encoding; [`error`]: error types
//!   with Redis's texts; [`config`]: TOML config, validation.

// Nothing a client sends may take the process down: no unwrap, expect or
// panic outside tests. The few places that state an invariant say why.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod alloc;
pub mod args;
pub mod backend;
pub mod clients;
pub mod command;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod error;
pub mod keyspace;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod pubsub;
pub mod reload;
pub mod reply;
pub mod router;
pub mod server;
pub mod slowlog;
pub mod transaction;
pub mod upstream;
pub mod util;
