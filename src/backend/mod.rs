//! Backends: where a namespace's commands are executed.
//!
//! Adding a backend is one file implementing [`Backend`], and
//! [`BackendSpec`] for its config table, plus one variant in
//! [`BackendConfig`] (its `type = "..."` name) and one arm in
//! [`BackendConfig::spec`].

pub mod cluster;
pub mod memcached;
pub mod memory;
pub mod mirror;
pub mod redis;
pub mod shards;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use crate::command::CommandSpec;
use crate::error::CmdError;
use crate::limits::OutputLimit;
use crate::reply::Reply;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
        }
    }
}

/// Where a client's messages and subscription confirmations go, tagged
/// with the subscriber they came from. The queue counts the bytes waiting
/// in it (as client memory, and against the client's pubsub output limit):
/// a subscriber that does not read is closed rather than held forever.
#[derive(Clone)]
pub struct Pushes {
    tx: mpsc::UnboundedSender<(usize, Reply)>,
    queue: Arc<Queue>,
}

/// The bytes queued for one subscribed client, and whether they broke its
/// output limit.
pub struct Queue {
    /// Shared with the client's entry, for eviction by size.
    bytes: Arc<AtomicUsize>,
    limit: OutputLimit,
    /// When the queue went over the soft limit, while it stays over.
    over_soft: Mutex<Option<Instant>>,
    broken: Mutex<Option<String>>,
    notify: Notify,
}

impl Queue {
    /// Completes with the reason once the queue broke its limit.
    pub async fn overflowed(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(why) = self.lock_broken().clone() {
                return why;
            }
            notified.await;
        }
    }

    fn lock_broken(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn added(&self, n: usize) {
        crate::alloc::clients_add(n as isize);
        let queued = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.limit.is_off() {
            return;
        }
        let since = {
            let mut over = self.over_soft.lock().unwrap_or_else(|e| e.into_inner());
            if self.limit.soft > 0 && queued as u64 >= self.limit.soft {
                *over.get_or_insert_with(Instant::now)
            } else {
                *over = None;
                Instant::now()
            }
        };
        if let Some(why) = self.limit.exceeded(queued, Some(since.elapsed())) {
            let mut broken = self.lock_broken();
            if broken.is_none() {
                *broken = Some(format!("{why} (messages queued)"));
                self.notify.notify_waiters();
            }
        }
    }

    fn taken(&self, n: usize) {
        crate::alloc::clients_add(-(n as isize));
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The receiving end of [`Pushes`], held by the client's connection.
pub struct PushReceiver {
    rx: mpsc::UnboundedReceiver<(usize, Reply)>,
    queue: Arc<Queue>,
}

impl PushReceiver {
    pub async fn recv(&mut self) -> Option<(usize, Reply)> {
        let item = self.rx.recv().await?;
        self.queue.taken(item.1.size());
        Some(item)
    }

    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        // What is still queued is freed with the channel.
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            self.queue.taken(item.1.size());
        }
    }
}

impl Pushes {
    /// A queue for one client: `bytes` is the client's count of queued
    /// bytes, `limit` its pubsub output limit.
    pub fn channel(bytes: Arc<AtomicUsize>, limit: OutputLimit) -> (Pushes, PushReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            bytes,
            limit,
            over_soft: Mutex::new(None),
            broken: Mutex::new(None),
            notify: Notify::new(),
        });
        (
            Pushes {
                tx,
                queue: queue.clone(),
            },
            PushReceiver { rx, queue },
        )
    }

    /// Queues a message; false when the client is gone.
    pub fn send(&self, item: (usize, Reply)) -> bool {
        let n = item.1.size();
        if self.tx.send(item).is_err() {
            return false;
        }
        self.queue.added(n);
        true
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
pub trait Backend: Send + Sync + 'static {
    /// The `type` name of this backend in the config ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Whether this backend can run the command.
    fn supports(&self, spec: &CommandSpec) -> bool;

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

    /// Builds the backend called `name`. Backends that connect to servers
    /// do so lazily, from inside the runtime, on first use.
    fn build(&self, name: &str) -> Arc<dyn Backend>;
}

/// `[backends.NAME]` tables; `type` selects the variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    Memory(memory::MemoryConfig),
    Redis(redis::RedisConfig),
    #[serde(rename = "redis-cluster")]
    RedisCluster(cluster::ClusterConfig),
    #[serde(rename = "redis-shards")]
    RedisShards(shards::ShardsConfig),
    Memcached(memcached::MemcachedConfig),
}

impl BackendConfig {
    pub fn default_memory() -> Self {
        BackendConfig::Memory(memory::MemoryConfig::default())
    }

    /// The one place that knows every kind of backend.
    pub fn spec(&self) -> &dyn BackendSpec {
        match self {
            BackendConfig::Memory(c) => c,
            BackendConfig::Redis(c) => c,
            BackendConfig::RedisCluster(c) => c,
            BackendConfig::RedisShards(c) => c,
            BackendConfig::Memcached(c) => c,
        }
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

    pub fn build(&self, name: &str) -> Arc<dyn Backend> {
        self.spec().build(name)
    }
}
