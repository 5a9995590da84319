//! What CONFIG SET changes in the memory backend at runtime, for the whole
//! process (not written back to the file): the sizes up to which OBJECT
//! ENCODING reports Redis's compact encodings, and a `maxmemory` and
//! policy set by a client over the config file's, until the next reload.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

use super::Eviction;

/// One of Redis's encoding thresholds, with its default and bounds.
struct Threshold {
    names: &'static [&'static str],
    value: AtomicI64,
    default: i64,
    min: i64,
    max: i64,
}

macro_rules! threshold {
    ($names:expr, $default:expr, $min:expr, $max:expr) => {
        Threshold {
            names: $names,
            value: AtomicI64::new($default),
            default: $default,
            min: $min,
            max: $max,
        }
    };
}

/// Redis 7's names first; the ziplist names are its aliases.
static THRESHOLDS: [Threshold; 11] = [
    threshold!(
        &["hash-max-listpack-entries", "hash-max-ziplist-entries"],
        128,
        0,
        i64::MAX
    ),
    threshold!(
        &["hash-max-listpack-value", "hash-max-ziplist-value"],
        64,
        0,
        i64::MAX
    ),
    threshold!(&["set-max-intset-entries"], 512, 0, i64::MAX),
    threshold!(&["set-max-listpack-entries"], 128, 0, i64::MAX),
    threshold!(&["set-max-listpack-value"], 64, 0, i64::MAX),
    threshold!(
        &["zset-max-listpack-entries", "zset-max-ziplist-entries"],
        128,
        0,
        i64::MAX
    ),
    threshold!(
        &["zset-max-listpack-value", "zset-max-ziplist-value"],
        64,
        0,
        i64::MAX
    ),
    threshold!(
        &["list-max-listpack-size", "list-max-ziplist-size"],
        -2,
        -5,
        i32::MAX as i64
    ),
    threshold!(&["list-compress-depth"], 0, 0, i32::MAX as i64),
    threshold!(&["stream-node-max-bytes"], 4096, 0, i64::MAX),
    threshold!(&["stream-node-max-entries"], 100, 0, i64::MAX),
];

fn find(name: &str) -> Option<&'static Threshold> {
    THRESHOLDS.iter().find(|t| t.names.contains(&name))
}

/// The threshold's value; its default if the name is unknown.
pub fn get(name: &str) -> i64 {
    find(name).map_or(0, |t| t.value.load(Ordering::Relaxed))
}

/// Whether `name` is one of the thresholds (or an alias).
pub fn is_threshold(name: &str) -> bool {
    find(name).is_some()
}

/// Checks a new value for a threshold; Redis's words when it is out of
/// bounds. Nothing changes until [`apply`].
pub fn check(name: &str, value: i64) -> Result<(), String> {
    let Some(t) = find(name) else {
        return Err("unknown parameter".into());
    };
    if value < t.min || value > t.max {
        return Err(format!(
            "argument must be between {} and {} inclusive",
            t.min, t.max
        ));
    }
    Ok(())
}

pub fn apply(name: &str, value: i64) {
    if let Some(t) = find(name) {
        t.value.store(value, Ordering::Relaxed);
    }
}

/// Every threshold under each of its names, for CONFIG GET.
pub fn all() -> Vec<(&'static str, i64)> {
    THRESHOLDS
        .iter()
        .flat_map(|t| {
            let v = t.value.load(Ordering::Relaxed);
            t.names.iter().map(move |n| (*n, v))
        })
        .collect()
}

/// Back to the defaults (a reload: the file says nothing of them).
pub fn reset() {
    for t in &THRESHOLDS {
        t.value.store(t.default, Ordering::Relaxed);
    }
    MAX_MEMORY.store(FROM_CONFIG, Ordering::Relaxed);
    POLICY.store(u8::MAX, Ordering::Relaxed);
}

/// `maxmemory` set by CONFIG SET, or FROM_CONFIG; 0 turns the bound off.
static MAX_MEMORY: AtomicU64 = AtomicU64::new(FROM_CONFIG);
const FROM_CONFIG: u64 = u64::MAX;
/// `maxmemory-policy` set by CONFIG SET (an index in POLICIES), or MAX.
static POLICY: AtomicU8 = AtomicU8::new(u8::MAX);

const POLICIES: [Eviction; 5] = [
    Eviction::Noeviction,
    Eviction::AllkeysLru,
    Eviction::VolatileLru,
    Eviction::AllkeysRandom,
    Eviction::VolatileTtl,
];

pub fn set_max_memory(bytes: u64) {
    MAX_MEMORY.store(bytes.min(FROM_CONFIG - 1), Ordering::Relaxed);
}

/// The policy named `name`, if the memory backend has it.
pub fn policy(name: &str) -> Option<Eviction> {
    POLICIES.into_iter().find(|p| p.name() == name)
}

pub fn set_policy(p: Eviction) {
    let i = POLICIES.iter().position(|q| *q == p).unwrap_or(0);
    POLICY.store(i as u8, Ordering::Relaxed);
}

/// The bound in force: a client's, or the config's.
pub fn max_memory(configured: Option<usize>) -> Option<usize> {
    match MAX_MEMORY.load(Ordering::Relaxed) {
        FROM_CONFIG => configured,
        0 => None,
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// The policy in force: a client's, or the config's.
pub fn eviction(configured: Eviction) -> Eviction {
    POLICIES
        .get(usize::from(POLICY.load(Ordering::Relaxed)))
        .copied()
        .unwrap_or(configured)
}

/// What CONFIG SET maxmemory / maxmemory-policy set, if anything.
pub fn overrides() -> (Option<u64>, Option<Eviction>) {
    let m = MAX_MEMORY.load(Ordering::Relaxed);
    let p = POLICIES
        .get(usize::from(POLICY.load(Ordering::Relaxed)))
        .copied();
    ((m != FROM_CONFIG).then_some(m), p)
}
