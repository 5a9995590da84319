//! The proxy: from a client's commands to backends and back. The router
//! (prefix to namespace, key rewriting), dispatch (batches per backend,
//! split and merged multi-key commands, namespace limits), commands over
//! the whole keyspace, and the state a client keeps across backends
//! (transactions, subscriptions).

pub mod confine;
pub mod dispatch;
pub mod keyspace;
pub mod migrate;
pub mod pubsub;
pub mod router;
pub mod transaction;
