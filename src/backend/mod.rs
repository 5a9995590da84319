//! Backends: where a namespace's commands are executed.
//!
//! Adding a backend is one file (or folder) implementing [`Backend`], and
//! [`BackendSpec`] for its config table, plus its `mod` line and one line
//! in the `backends!` table below (its variant, `type = "..."` name and
//! config table).

pub mod cluster;
pub mod memcached;
pub mod memory;
pub mod mirror;
mod pushes;
pub mod redis;
pub mod scope;
pub mod shards;
pub mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::wire::command::CommandSpec;
use crate::wire::error::CmdError;
use crate::wire::reply::Reply;

pub use crate::wire::merge::BoxFuture;
pub use pushes::{PushReceiver, Pushes, Queue};

/// A command on its way to a backend, its keys already rewritten for the
/// namespace (prefix stripped or added).
#[derive(Debug, Clone)]
pub struct Command {
    pub spec: &'static CommandSpec,
    /// The name, then the arguments.
    pub args: Vec<Bytes>,
    /// The client's bytes for this command, when `args` are exactly what the
    /// client sent: a backend that speaks RESP may forward them as they are.
    pub raw: Option<Bytes>,
    /// The client speaks RESP3: a reply left as `Reply::Raw` must be in it.
    pub resp3: bool,
    /// keyway reads the reply (merges, keys to map back): it must be a
    /// structured reply, never `Reply::Raw`.
    pub inspect: bool,
    /// For a script: the namespaces whose keys its calls may touch, for a
    /// backend that runs scripts itself to check (see [`scope`]). None for
    /// every other command, and for a namespace alone on its backend.
    pub scope: Option<Arc<scope::Scope>>,
    /// The client's database (SELECT); 0 unless it chose another. A backend
    /// without databases refuses any other (see [`Backend::databases`]).
    pub db: u8,
    /// For a blocking command: how CLIENT UNBLOCK reaches it, for a
    /// backend that can end its wait (the memory backend).
    pub unblock: Option<Arc<Unblock>>,
}

/// One client's line to a backend running its command: CLIENT UNBLOCK's
/// to its blocking command, and MONITOR's to its scripts.
#[derive(Debug, Default)]
pub struct Unblock {
    /// 0: nothing asked; 1: end as if timed out; 2: end with -UNBLOCKED.
    pub asked: std::sync::atomic::AtomicU8,
    /// Set by a backend while it waits in a way it can end.
    pub waiting: std::sync::atomic::AtomicBool,
    pub notify: tokio::sync::Notify,
    /// Where a backend that runs scripts itself (memory) shows each
    /// command a script runs, as Redis's MONITOR does (`[0 lua] ...`).
    pub monitor: Option<ScriptMonitor>,
    /// Set by a backend whose server runs the blocking command (redis):
    /// ends the wait there (CLIENT UNBLOCK of its connection), with the
    /// error when true.
    pub remote: std::sync::Mutex<Option<RemoteUnblock>>,
}

/// See [`Unblock::remote`].
#[derive(Clone)]
pub struct RemoteUnblock(pub Arc<RemoteEnd>);

pub type RemoteEnd = dyn Fn(bool) + Send + Sync;

impl std::fmt::Debug for RemoteUnblock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteUnblock")
    }
}

/// See [`Unblock::monitor`]: called with the database and the command.
#[derive(Clone)]
pub struct ScriptMonitor(pub Arc<ScriptFeed>);

pub type ScriptFeed = dyn Fn(u8, &[Bytes]) + Send + Sync;

impl std::fmt::Debug for ScriptMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptMonitor")
    }
}

impl Unblock {
    /// Ends the wait, if one can be ended; false otherwise.
    pub fn ask(&self, error: bool) -> bool {
        use std::sync::atomic::Ordering;
        if !self.waiting.load(Ordering::Acquire) {
            let remote = self.remote.lock().ok().and_then(|r| r.clone());
            return match remote {
                Some(end) => {
                    (end.0)(error);
                    true
                }
                None => false,
            };
        }
        self.asked
            .store(if error { 2 } else { 1 }, Ordering::Release);
        self.notify.notify_waiters();
        true
    }

    /// Waits until asked; then whether to end with the error.
    pub async fn asked(&self) -> bool {
        use std::sync::atomic::Ordering;
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            match self.asked.swap(0, Ordering::AcqRel) {
                0 => n.await,
                mode => return mode == 2,
            }
        }
    }
}

impl Command {
    /// A command built by keyway itself (fan-out, policies).
    pub fn internal(spec: &'static CommandSpec, args: Vec<Bytes>) -> Command {
        Command {
            spec,
            args,
            raw: None,
            resp3: false,
            inspect: true,
            scope: None,
            db: 0,
            unblock: None,
        }
    }
}

/// A store that executes commands.
///
/// Invariants every implementation keeps:
/// - `execute` returns exactly one reply per command, in the order given.
/// - Commands of one batch are applied in order; a later command sees the
///   effect of an earlier one.
/// - A failure is a reply (`Reply::Error`) for the commands it affected, never
///   a panic and never a missing reply. A write is answered with success only
///   once the store has applied it.
/// - `execute` is only called with commands for which `supports` is true; the
///   router answers the others with an error naming the namespace and backend.
/// - The returned future never waits unboundedly on a remote peer: backends
///   bound every remote call with a timeout and answer with an error.
/// - Commands of one batch share one `db`; a backend whose `databases` is
///   false is only given database 0.
pub trait Backend: Send + Sync + 'static {
    /// The `type` name of this backend in the config ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Whether this backend can run the command.
    fn supports(&self, spec: &CommandSpec) -> bool;

    /// The `redis_version` of the server behind this backend, once known;
    /// None for backends that are not Redis servers.
    fn server_version(&self) -> Option<String> {
        None
    }

    /// Whether this backend keeps Redis's numbered databases (SELECT).
    fn databases(&self) -> bool {
        false
    }

    /// Called as a command is queued in MULTI: evicts, or refuses with
    /// Redis's OOM error, as a full Redis refuses every command queued then.
    /// Only the memory backend knows how full it is; a server behind the
    /// others answers for itself at EXEC.
    fn make_room(&self, _db: u8) -> Result<(), Reply> {
        Ok(())
    }

    /// Executes a batch of commands; see the trait's invariants.
    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>>;

    /// One word on whether the backend can serve now ("up", "down ...",
    /// "idle"), for INFO. Cheap: no round trip.
    fn health(&self) -> String {
        "up".into()
    }

    /// A connection of one client's own, kept across that client's batches,
    /// for commands that leave state on the server between commands (WATCH
    /// until EXEC).
    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>>;

    /// Subscribes on behalf of one client. Every message and confirmation
    /// (`subscribe`, `message`, `pmessage`, ... as arrays) goes to `pushes`
    /// tagged with `tag`; an error reply there means the subscription is
    /// lost. Dropping the subscriber unsubscribes.
    fn subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>>;

    /// SAVE (or BGSAVE when `background`): the reply's status text, or
    /// the error; None for a backend that keyway does not persist.
    fn save(&self, _background: bool) -> Option<Result<String, String>> {
        None
    }

    /// Unix seconds of the last snapshot (LASTSAVE), for those that save.
    fn last_save(&self) -> Option<u64> {
        None
    }

    /// Whether a BGSAVE of this backend is writing now.
    fn saving(&self) -> bool {
        false
    }

    /// Scripts this backend keeps (SCRIPT LOAD), for those that run them
    /// in keyway.
    fn cached_scripts(&self) -> Option<usize> {
        None
    }

    /// Called once as keyway stops, after the last client.
    fn shutdown(&self) {}

    /// Whether `list_keys` can list what a backend without SCAN holds.
    fn can_list_keys(&self) -> bool {
        false
    }

    /// For a migration's backfill from a backend without SCAN (memcached's
    /// LRU crawler): the keys of step `cursor` (0 first) and the next
    /// cursor, 0 at the end. Keys as the backend names them.
    fn list_keys(&self, _cursor: u64) -> BoxFuture<'_, Result<(u64, Vec<Bytes>), String>> {
        Box::pin(async { Err("this backend cannot list its keys".to_string()) })
    }

    /// Which of the backend's servers owns a shard channel (SSUBSCRIBE);
    /// channels of one shard share a subscriber. One server: always 0.
    fn shard_of(&self, _channel: &[u8]) -> usize {
        0
    }

    /// A subscriber on the server that owns `channel`, for shard channels;
    /// the same contract as `subscriber`.
    fn shard_subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
        _channel: Bytes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        self.subscriber(tag, pushes)
    }
}

/// See [`Backend::session`]. The same invariants as `Backend::execute`.
pub trait Session: Send {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>>;
}

/// See [`Backend::subscriber`].
pub trait Subscriber: Send {
    /// Sends SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE or PUNSUBSCRIBE; their
    /// confirmations arrive through the pushes, one per channel or pattern.
    fn send(&mut self, cmd: Command) -> BoxFuture<'_, Result<(), CmdError>>;
}

/// A `[backends.NAME]` table: what every backend's config says of itself.
pub trait BackendSpec {
    /// The `type` name of the backend in the config ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Every problem with the settings, as (field, problem).
    fn problems(&self) -> Vec<(String, String)>;

    /// Command families this kind of backend cannot serve, for
    /// `--check-config`.
    fn limits(&self) -> Option<&'static str> {
        None
    }

    /// The Redis servers (host:port) it sends commands to, to tell which
    /// namespaces share a server; empty for backends that run no scripts
    /// of their clients' on a server (memory, memcached).
    fn servers(&self) -> Vec<String> {
        Vec::new()
    }

    /// The same backend, logging in as `username` (None: Redis's
    /// `default`) with `password`: a namespace's own connections. None for
    /// kinds without logins.
    fn with_credentials(&self, _username: Option<&str>, _password: &str) -> Option<BackendConfig> {
        None
    }

    /// Builds the backend called `name`. Backends that connect to servers
    /// do so lazily, from inside the runtime, on first use.
    fn build(&self, name: &str) -> Arc<dyn Backend>;
}

/// Declares the kinds of backend: each line names its variant, its `type`
/// in the config and its config table, and gives the enum of
/// `[backends.NAME]` tables and the one match that dispatches on it.
macro_rules! backends {
    ($( $variant:ident = $name:literal => $config:ty ),* $(,)?) => {
        /// `[backends.NAME]` tables; `type` selects the variant.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(tag = "type")]
        pub enum BackendConfig {
            $( #[serde(rename = $name)] $variant($config), )*
        }

        impl BackendConfig {
            /// Every kind's `type` name.
            pub const KINDS: &[&str] = &[$($name),*];

            /// What every backend's config says of itself.
            pub fn spec(&self) -> &dyn BackendSpec {
                match self {
                    $( BackendConfig::$variant(c) => c, )*
                }
            }
        }
    };
}

// The one place that lists every kind of backend: adding one is its file
// (or folder), its `mod` line above and a line here.
backends! {
    Memory = "memory" => memory::MemoryConfig,
    Redis = "redis" => redis::RedisConfig,
    RedisCluster = "redis-cluster" => cluster::ClusterConfig,
    RedisShards = "redis-shards" => shards::ShardsConfig,
    Memcached = "memcached" => memcached::MemcachedConfig,
}

impl BackendConfig {
    pub fn default_memory() -> Self {
        BackendConfig::Memory(memory::MemoryConfig::default())
    }

    pub fn kind(&self) -> &'static str {
        self.spec().kind()
    }

    pub fn problems(&self) -> Vec<(String, String)> {
        self.spec().problems()
    }

    pub fn limits(&self) -> Option<&'static str> {
        self.spec().limits()
    }

    pub fn servers(&self) -> Vec<String> {
        self.spec().servers()
    }

    pub fn with_credentials(&self, username: Option<&str>, password: &str) -> Option<Self> {
        self.spec().with_credentials(username, password)
    }

    pub fn build(&self, name: &str) -> Arc<dyn Backend> {
        self.spec().build(name)
    }
}

/// Databases clients may use (`server.databases`), set from the config at
/// start and on reload: a backend that keeps databases checks the index
/// MOVE names against it, as Redis checks against its own.
static DATABASES: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(16);

pub fn databases() -> u16 {
    DATABASES.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_databases(n: u16) {
    DATABASES.store(n, std::sync::atomic::Ordering::Relaxed);
}
