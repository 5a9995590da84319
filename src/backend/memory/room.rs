//! Room for writes under `max_memory`: which writes may grow the data,
//! eviction by the configured policy, and Redis's OOM refusal.

use super::{Eviction, Memory, store, tunables};
use crate::wire::command::{self, CommandSpec};
use crate::wire::reply::Reply;

impl Eviction {
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Noeviction => "noeviction",
            Eviction::AllkeysLru => "allkeys-lru",
            Eviction::VolatileLru => "volatile-lru",
            Eviction::AllkeysRandom => "allkeys-random",
            Eviction::VolatileTtl => "volatile-ttl",
        }
    }
}

/// Redis's refusal of a write past maxmemory.
pub(super) const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Writes that only shrink or keep the data, allowed over `max_memory`.
const SHRINKS: &[&str] = &[
    "del",
    "unlink",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "getdel",
    "getex",
    "lpop",
    "rpop",
    "lmpop",
    "blpop",
    "brpop",
    "blmpop",
    "ltrim",
    "lrem",
    "srem",
    "spop",
    "hdel",
    "zrem",
    "zpopmin",
    "zpopmax",
    "zmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "zremrangebyrank",
    "zremrangebyscore",
    "zremrangebylex",
    "flushdb",
    "flushall",
    "rename",
    "renamenx",
    "touch",
];

/// Keys evicted in one round at most, from one partition.
const EVICT_BATCH: usize = 16;

impl Memory {
    /// Below `max_memory` before a write that may grow the data: evicts as
    /// the policy says, or refuses with Redis's OOM error.
    pub(crate) fn make_room(&self, spec: &CommandSpec) -> Result<(), Reply> {
        if !spec.has(command::WRITE) || SHRINKS.contains(&spec.name) {
            return Ok(());
        }
        self.room()
    }

    /// Below `max_memory`, evicting as the policy says, or Redis's OOM
    /// error: what any command queued in MULTI needs, as in Redis (the
    /// queue itself takes memory).
    pub(crate) fn room(&self) -> Result<(), Reply> {
        let Some(max) = tunables::max_memory(self.max_memory) else {
            return Ok(());
        };
        let eviction = tunables::eviction(self.eviction);
        let oom = || Reply::error(OOM);
        let (volatile, by) = match eviction {
            Eviction::Noeviction => (false, store::Victims::Random),
            Eviction::AllkeysLru => (false, store::Victims::Lru),
            Eviction::VolatileLru => (true, store::Victims::Lru),
            Eviction::AllkeysRandom => (false, store::Victims::Random),
            Eviction::VolatileTtl => (true, store::Victims::Ttl),
        };
        while crate::wire::alloc::data() > max {
            if eviction == Eviction::Noeviction {
                return Err(oom());
            }
            let victims = self.store.victims(EVICT_BATCH, volatile, by);
            if victims.is_empty() {
                return Err(oom());
            }
            for k in victims {
                if self.store.delete(&k) {
                    self.evicted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if crate::wire::alloc::data() <= max {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Keys evicted so far, for INFO.
    pub fn evicted_keys(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }
}
