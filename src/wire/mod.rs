//! The wire: what every floor above stands on. The request codec, the
//! command table, replies and error texts, argument parsing, SCAN cursors
//! and the merging of replies split across backends; and the process-wide
//! counters every floor writes to (the allocator's byte counts, the
//! metrics registry), which only the operations floor reads out.
//!
//! Nothing here imports from a floor above it.

pub mod alloc;
pub mod args;
pub mod command;
pub mod error;
pub mod limit;
pub mod merge;
pub mod metrics;
pub mod protocol;
pub mod reply;
pub mod scan;
pub mod size;
pub mod util;
