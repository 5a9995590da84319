//! Operations: what an operator touches. The config file (load, validate,
//! summary), reload on SIGHUP, the HTTP listener (metrics, probes), and
//! [`Instance`], which builds a running keyway from a config.

pub mod check;
pub mod config;
pub mod http;
pub mod instance;
pub mod migrate_cli;
pub mod reload;
pub mod security;
pub mod status;

pub use instance::Instance;
