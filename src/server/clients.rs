//! The clients keyway serves, as CLIENT LIST and CLIENT KILL see them.
//!
//! A connection registers once it has sent its first bytes (an idle client
//! is kept as small as possible, see `server`), and leaves when it ends. It
//! keeps its entry current cheaply: the time and command of its last batch
//! in atomics, the fields that change rarely (name, library, protocol)
//! under a lock only when a command changes them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::server::acl::User;
use crate::wire::command;
use crate::wire::error::lossy;

/// The fields of a client that commands change (HELLO, CLIENT SETNAME,
/// CLIENT SETINFO, RESET, SUBSCRIBE).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub resp3: bool,
    /// Subscribed to a channel or pattern.
    pub pubsub: bool,
    /// The user it is logged in as (`default` until AUTH).
    pub user: String,
    /// The database it selected (SELECT).
    pub db: u8,
}

pub struct Client {
    pub id: u64,
    pub peer: SocketAddr,
    pub since: Instant,
    /// Milliseconds from `since` to the client's last batch.
    last_ms: AtomicU64,
    /// The command table id of the last command run, plus one; 0 for none.
    last_cmd: AtomicUsize,
    details: Mutex<Details>,
    /// Notified by CLIENT KILL; the connection then closes.
    pub kill: Notify,
    /// Waiting in a blocking command (INFO's blocked_clients).
    pub blocked: AtomicBool,
    /// CLIENT UNBLOCK's line to its blocking command.
    pub unblock: Arc<crate::backend::Unblock>,
    /// Bytes the client holds (buffers, queued messages), kept by its
    /// connection; see `limits::Usage`.
    pub mem: Arc<AtomicUsize>,
    /// Bytes of messages queued for the client (pub/sub).
    pub queued: Arc<AtomicUsize>,
    /// Set once the client is being closed for a limit.
    limit_closed: AtomicBool,
}

impl Client {
    pub fn new(id: u64, peer: SocketAddr, monitor: crate::backend::ScriptMonitor) -> Client {
        Client {
            id,
            peer,
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(0),
            details: Mutex::new(Details::default()),
            kill: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock: Arc::new(crate::backend::Unblock {
                monitor: Some(monitor),
                ..Default::default()
            }),
            mem: Arc::new(AtomicUsize::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
            limit_closed: AtomicBool::new(false),
        }
    }

    /// Bytes the client holds now.
    pub fn memory(&self) -> usize {
        self.mem.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    /// Closes the client because of `limit`; false if it was already being
    /// closed for one.
    pub fn close_for_limit(&self, _limit: &str) -> bool {
        if self.limit_closed.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.kill.notify_one();
        true
    }

    /// Whether the client is subscribed (CLIENT LIST TYPE pubsub).
    pub fn subscribed(&self) -> bool {
        self.details().pubsub
    }

    /// Records a batch whose last command has table id `cmd`.
    pub fn ran(&self, cmd: Option<usize>) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        if let Some(id) = cmd {
            self.last_cmd.store(id + 1, Ordering::Relaxed);
        }
    }

    fn details(&self) -> MutexGuard<'_, Details> {
        self.details.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user it is logged in as.
    pub fn user(&self) -> String {
        self.details().user.clone()
    }

    /// Publishes the client's changed fields.
    pub fn set_details(&self, d: &Details) {
        let mut cur = self.details();
        if *cur != *d {
            cur.clone_from(d);
        }
    }

    /// The client's line in CLIENT LIST and CLIENT INFO, in Redis's field
    /// order; `current` names the command being run and its size, for the
    /// caller's own line. Fields keyway does not track have Redis's idle
    /// values.
    /// `v7_2`: with the fields Redis 7.2 added (see `Router::reports_7_2`).
    pub fn line(&self, local: SocketAddr, current: Option<(&str, usize)>, v7_2: bool) -> String {
        let d = self.details().clone();
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| lossy(b, 256)).unwrap_or_default();
        let idle_ms = (self.since.elapsed().as_millis() as u64)
            .saturating_sub(self.last_ms.load(Ordering::Relaxed));
        let qbuf = current.map_or(0, |(_, len)| len);
        let cmd = match current {
            Some((c, _)) => c.to_string(),
            None => match self.last_cmd.load(Ordering::Relaxed) {
                0 => "NULL".to_string(),
                n => command::table()
                    .get(n - 1)
                    .map_or_else(|| "NULL".to_string(), |c| c.name.to_string()),
            },
        };
        let (watch, libs) = if v7_2 {
            (
                " watch=0",
                format!(
                    " lib-name={} lib-ver={}",
                    text(&d.lib_name),
                    text(&d.lib_ver)
                ),
            )
        } else {
            ("", String::new())
        };
        format!(
            "id={} addr={} laddr={local} fd=0 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 \
             multi=-1{watch} qbuf={qbuf} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
             omem=0 tot-mem={} events=r cmd={cmd} user={} redir=-1 resp={}{libs}\n",
            self.id,
            self.peer,
            text(&d.name),
            self.since.elapsed().as_secs(),
            idle_ms / 1000,
            if d.pubsub { "P" } else { "N" },
            d.db,
            self.memory(),
            d.user,
            if d.resp3 { 3 } else { 2 },
        )
    }
}

/// Every registered client, by id.
#[derive(Default)]
pub struct Registry(Mutex<HashMap<u64, Arc<Client>>>);

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<Client>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client; it leaves when the guard is dropped.
    pub fn register(self: &Arc<Self>, client: Arc<Client>) -> Registered {
        self.map().insert(client.id, client.clone());
        Registered {
            registry: self.clone(),
            client,
        }
    }

    /// Clients waiting in a blocking command.
    pub fn blocked(&self) -> usize {
        self.map()
            .values()
            .filter(|c| c.blocked.load(Ordering::Relaxed))
            .count()
    }

    /// Every client, in id order (the order they connected).
    pub fn all(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<Arc<Client>> = self.map().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }
}

/// A client's place in the registry, held by its connection.
pub struct Registered {
    registry: Arc<Registry>,
    pub client: Arc<Client>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.map().remove(&self.client.id);
    }
}

/// What keyway knows about a client, for HELLO, CLIENT and AUTH.
pub struct ClientState {
    /// The client in the registry (CLIENT LIST); it leaves on drop.
    pub registered: Registered,
    /// Name, library and protocol; published to the registry when a
    /// command changes them.
    pub details: Details,
    pub authenticated: bool,
    /// The user whose rights apply: `default` until AUTH changes it.
    pub user: Arc<User>,
    /// Set by QUIT: close after the replies are written.
    pub closing: bool,
    /// CLIENT REPLY: which replies the client gets.
    pub replies: Replies,
    /// The size of the request being run: Redis's query buffer still holds
    /// it while it runs, so the caller's own CLIENT LIST line shows it as
    /// `qbuf`.
    pub query_len: usize,
}

/// CLIENT REPLY's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replies {
    On,
    Off,
    /// The next command's reply is skipped, then On.
    SkipNext,
}

impl ClientState {
    pub fn id(&self) -> u64 {
        self.registered.client.id
    }

    pub fn resp3(&self) -> bool {
        self.details.resp3
    }

    /// Shows the client's current details to CLIENT LIST.
    pub fn publish(&self) {
        self.registered.client.set_details(&self.details);
    }
}
