//! Mirroring (`mirror = "<backend>"` on a namespace): every write the
//! namespace's backend acknowledged is replayed, in order, on a second
//! backend. It fills the backend a namespace is moving to while clients
//! keep using the old one, so that the switch (`backend = "<new>"`) finds
//! the data there; reads never touch the mirror.
//!
//! The client's reply is the primary's alone and never waits for the
//! mirror: mirrored writes queue (up to [`QUEUED`] commands, counted in
//! commands rather than batches since a client that does not pipeline
//! sends one write a batch; past that they are dropped and counted) and
//! one task replays them in order, as few large batches. Only what the primary applied is replayed: a write it
//! refused is not, and a transaction only if EXEC committed. Commands
//! without keys (FLUSHDB, SCRIPT FLUSH) are not mirrored, since the mirror
//! may hold other namespaces' keys; nor commands the mirror's kind of
//! backend cannot run (counted as `unsupported`).
//!
//! A write whose outcome is chosen when it runs is replayed as its effect,
//! as Redis replicates it, so that the mirror holds the same data: SPOP as
//! SREM of the members it popped, XADD with an automatic ID with the ID it
//! got, XREADGROUP as the pending entries it created, a blocking pop as
//! the plain pop of what it took (BLPOP as LPOP of the key it served), and
//! relative expiries (EXPIRE, SET EX, SETEX, GETEX PX...) as the absolute
//! time they stood for when the primary applied them.
//!
//! The queue also carries what a migration (`proxy::migrate`) sends to
//! the mirror, so that it lands in order among the replayed writes; see
//! `track` for how a copy never overwrites a newer write.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

pub mod copy;
mod effects;
pub mod shadow;
pub mod state;
pub mod track;

use super::{Backend, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::wire::command::{CommandSpec, WRITE};
use crate::wire::error::CmdError;
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use effects::{as_replayed, committed, failed, needs_reply};
use track::{InFlight, Tracker, Tracking, Watch};

/// Commands waiting for the mirror, at most; more writes are dropped.
const QUEUED: usize = 1_000_000;
/// Commands the replaying task sends in one batch, at most.
const REPLAY_BATCH: usize = 4096;

/// A namespace's backend whose writes are replayed on a mirror.
pub struct Mirrored {
    primary: Arc<dyn Backend>,
    mirror: Arc<dyn Backend>,
    namespace: String,
    /// The replaying task's queue, started on first use (inside the runtime).
    tap: OnceLock<Tap>,
    tracker: Arc<Tracker>,
    /// The wrapper with the roles the other way round that a reload
    /// replaced (a cut-over or a roll-back): until its queue has drained,
    /// this one serves nothing, or a write could overtake an older one.
    previous: tokio::sync::Mutex<Option<Arc<Mirrored>>>,
    waiting_previous: AtomicBool,
    /// What a migration reports (see `proxy::migrate`).
    pub status: Mutex<MigrationStatus>,
    /// When the status was last saved (see `state`).
    saved: Mutex<std::time::Instant>,
    /// Itself, for the repairing task (see `repair`).
    me: Weak<Mirrored>,
    /// The fraction of reads shadowed on the mirror (see `shadow`).
    shadow: shadow::Fraction,
    shadow_tracking: Mutex<Option<Tracking>>,
}

/// A namespace's place in its move, for INFO, metrics and `keyway migrate`.
#[derive(Clone, Debug, Default)]
pub struct MigrationStatus {
    /// mirroring, backfilling, backfilled, verifying, verified, differs,
    /// stopped, failed; "cut over" once the roles were swapped.
    pub phase: &'static str,
    /// The task running now ("backfill", "verify"), if any.
    pub running: Option<&'static str>,
    pub keys_done: u64,
    pub bytes_done: u64,
    /// Keys the namespace held when the task began (an estimate).
    pub keys_total: u64,
    /// Keys read again because a write raced the copy.
    pub retried: u64,
    /// Keys the target's kind of backend cannot hold, left out.
    pub skipped: u64,
    pub errors: u64,
    /// Keys that differ (verify), and the first few of them.
    pub differences: u64,
    pub differing: Vec<String>,
    pub started_ms: u64,
    pub finished_ms: u64,
    /// The source's SCAN cursor, to resume from.
    pub cursor: String,
    pub error: Option<String>,
    /// An operator asked the running task to stop.
    pub stop: bool,
    /// Replayed writes dropped since keyway started, the mirror's queue
    /// being full: the mirror missed them (filled in when asked).
    pub dropped: u64,
}

impl Mirrored {
    /// The wrapper for `namespace` over these two backends: the one an
    /// earlier config built, while it lives and both backends are the same
    /// (a reload keeps unchanged backends), so that writes queued before a
    /// reload and those after it are replayed by one task, in order. Two
    /// tasks would race: the newer could replay a write to a key before
    /// the older replayed an earlier one.
    pub fn shared(
        primary: Arc<dyn Backend>,
        mirror: Arc<dyn Backend>,
        namespace: &str,
        shadow_reads: f64,
    ) -> Arc<Mirrored> {
        let m = Mirrored::find_or_build(primary, mirror, namespace);
        m.shadow.set(shadow_reads);
        shadow::hold(&m);
        m
    }

    fn find_or_build(
        primary: Arc<dyn Backend>,
        mirror: Arc<dyn Backend>,
        namespace: &str,
    ) -> Arc<Mirrored> {
        // Wrappers alive in this process (several servers may run in it).
        static LIVE: Mutex<Vec<Weak<Mirrored>>> = Mutex::new(Vec::new());
        let same = |a: &Arc<dyn Backend>, b: &Arc<dyn Backend>| {
            std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
        };
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.strong_count() > 0);
        let found = live.iter().filter_map(Weak::upgrade).find(|m| {
            m.namespace == namespace && same(&m.primary, &primary) && same(&m.mirror, &mirror)
        });
        if let Some(m) = found {
            return m;
        }
        let swapped = live.iter().filter_map(Weak::upgrade).find(|m| {
            m.namespace == namespace && same(&m.primary, &mirror) && same(&m.mirror, &primary)
        });
        let cut_over = swapped.is_some();
        let m = Arc::new_cyclic(|me| {
            let mut m = Mirrored::new(primary, mirror, namespace, swapped);
            m.me = me.clone();
            m
        });
        m.update(|s| {
            if cut_over {
                s.phase = "cut over";
            }
        });
        live.push(Arc::downgrade(&m));
        m
    }

    fn new(
        primary: Arc<dyn Backend>,
        mirror: Arc<dyn Backend>,
        namespace: &str,
        previous: Option<Arc<Mirrored>>,
    ) -> Mirrored {
        Mirrored {
            primary,
            mirror,
            namespace: namespace.to_string(),
            tap: OnceLock::new(),
            tracker: Arc::default(),
            waiting_previous: AtomicBool::new(previous.is_some()),
            previous: tokio::sync::Mutex::new(previous),
            status: Mutex::new(state::load(namespace).unwrap_or(MigrationStatus {
                phase: "mirroring",
                ..MigrationStatus::default()
            })),
            saved: Mutex::new(std::time::Instant::now()),
            me: Weak::new(),
            shadow: shadow::Fraction::default(),
            shadow_tracking: Mutex::new(None),
        }
    }

    fn tap(&self) -> &Tap {
        self.tap.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let queue = Queue {
                tx,
                queued: Arc::default(),
                dropped: Arc::default(),
            };
            let (repairs, to_repair) = mpsc::unbounded_channel();
            tokio::spawn(repair(self.me.clone(), to_repair));
            tokio::spawn(replay(
                self.mirror.clone(),
                rx,
                self.namespace.clone(),
                repairs,
                queue.queued.clone(),
            ));
            Tap {
                mirror: self.mirror.clone(),
                namespace: self.namespace.clone(),
                queue,
                tracker: self.tracker.clone(),
            }
        })
    }

    /// Waits, once, for the wrapper this one replaced with the roles
    /// swapped: its writes in flight finished and its queue replayed.
    async fn after_previous(&self) {
        if !self.waiting_previous.load(Ordering::Acquire) {
            return;
        }
        let mut previous = self.previous.lock().await;
        if let Some(old) = previous.take() {
            old.tracker.idle().await;
            let _ = old.probe(Vec::new()).await;
        }
        self.waiting_previous.store(false, Ordering::Release);
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The backend clients are served by.
    pub fn primary(&self) -> &Arc<dyn Backend> {
        &self.primary
    }

    /// The backend writes are replayed on.
    pub fn target(&self) -> &Arc<dyn Backend> {
        &self.mirror
    }

    pub fn status(&self) -> MigrationStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.dropped = self.dropped();
        s
    }

    /// Changes the status in place, and the metrics that show it.
    pub fn update(&self, f: impl FnOnce(&mut MigrationStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let (phase, running) = (s.phase, s.running);
        f(&mut s);
        s.export(&self.namespace);
        // Saved when the phase changes, else once a second at most.
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if s.phase != phase || s.running != running || saved.elapsed().as_secs() >= 1 {
            state::save(&self.namespace, &s);
            *saved = std::time::Instant::now();
        }
    }

    /// Tracks live writes while it lives (see `track`).
    pub async fn tracking(&self) -> Tracking {
        self.tracker.enable().await
    }

    /// Starts watching keys before reading them from the primary.
    pub fn watch(&self, keys: &[Bytes]) {
        self.tracker.watch(keys);
    }

    /// Ends the watch of `keys`: `build` is told what happened to each and
    /// returns the commands to queue for the mirror, which are queued at
    /// once, in order among the writes; their replies come back later.
    pub async fn settle(
        &self,
        keys: &[Bytes],
        build: impl FnOnce(Vec<Watch>) -> Vec<Command>,
    ) -> Result<oneshot::Receiver<Vec<Reply>>, CmdError> {
        let queue = &self.tap().queue;
        let (tx, rx) = oneshot::channel();
        let sent = self
            .tracker
            .settle(keys, |seen| queue.probe(build(seen), tx));
        sent.map_err(|_| CmdError::msg("ERR the mirror's queue is closed"))?;
        Ok(rx)
    }

    /// Writes the mirror's queue was too full to take, since start.
    pub fn dropped(&self) -> u64 {
        self.tap().queue.dropped.load(Ordering::Relaxed)
    }

    /// Runs commands on the mirror after every write queued so far.
    pub async fn probe(&self, cmds: Vec<Command>) -> Result<Vec<Reply>, CmdError> {
        let closed = || CmdError::msg("ERR the mirror's queue is closed");
        let (tx, rx) = oneshot::channel();
        self.tap().queue.probe(cmds, tx).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// Keys to copy again (see `track`), emptied.
    pub fn take_touched(&self) -> Vec<Bytes> {
        self.tracker.take_touched()
    }
}

impl MigrationStatus {
    /// Sets the metrics that show it.
    fn export(&self, namespace: &str) {
        metrics().migration(
            namespace,
            self.phase,
            &[
                ("done", self.keys_done),
                ("total", self.keys_total),
                ("retried", self.retried),
                ("skipped", self.skipped),
                ("errors", self.errors),
                ("differences", self.differences),
            ],
            self.bytes_done,
        );
    }
}

/// The replaying task's queue: a channel bounded by the commands it holds.
#[derive(Clone)]
struct Queue {
    tx: mpsc::UnboundedSender<Item>,
    /// Commands queued and not yet taken by the replaying task.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    /// Queues replayed writes, unless that would pass [`QUEUED`]: false
    /// when they were dropped.
    fn writes(&self, cmds: Vec<Command>) -> bool {
        let n = cmds.len();
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > QUEUED {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(Item::Writes(cmds)).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues a probe; its sender waits for the reply, which bounds it.
    fn probe(&self, cmds: Vec<Command>, reply: oneshot::Sender<Vec<Reply>>) -> Result<(), ()> {
        let n = cmds.len();
        self.queued.fetch_add(n, Ordering::AcqRel);
        self.tx.send(Item::Probe(cmds, reply)).map_err(|_| {
            self.queued.fetch_sub(n, Ordering::AcqRel);
        })
    }

    /// Whether less than half of [`QUEUED`] is taken (shadow reads wait
    /// behind replayed writes, never crowd them out).
    fn roomy(&self) -> bool {
        self.queued.load(Ordering::Acquire) < QUEUED / 2
    }
}

/// What the replaying task is given, in order.
enum Item {
    /// Writes the primary applied.
    Writes(Vec<Command>),
    /// Commands whose replies are wanted (a migration's copies and reads).
    Probe(Vec<Command>, oneshot::Sender<Vec<Reply>>),
}

/// What a batch's primary and its sessions need to mirror their writes.
#[derive(Clone)]
struct Tap {
    mirror: Arc<dyn Backend>,
    namespace: String,
    queue: Queue,
    tracker: Arc<Tracker>,
}

impl Tap {
    /// Whether a command is a write to replay on the mirror.
    fn wants(cmd: &Command) -> bool {
        // Most writes name one key: told without building the key list.
        cmd.spec.has(WRITE)
            && (cmd.spec.single_key(cmd.args.len()).is_some()
                || !cmd.spec.key_positions(&cmd.args).is_empty())
    }

    /// The writes of `batch` worth replaying, taken before the primary
    /// runs it (commands are cheap to clone: their arguments are shared).
    /// Commands replayed as their effect are asked for a structured reply,
    /// and so is EXEC when such a command is in its transaction.
    fn copy(&self, batch: &mut [Command]) -> Taken {
        let mut taken = Taken::default();
        let mut multi = None;
        let mut effects_in_multi = false;
        for (i, c) in batch.iter_mut().enumerate() {
            match c.spec.name {
                "multi" => {
                    multi = Some(i);
                    effects_in_multi = false;
                }
                "exec" | "discard" => {
                    if let Some(m) = multi.take() {
                        taken.blocks.push((m, i));
                        c.inspect |= effects_in_multi;
                    }
                }
                _ => {}
            }
            if Tap::wants(c) {
                if needs_reply(c) {
                    c.inspect = true;
                    effects_in_multi |= multi.is_some();
                }
                taken.writes.push((i, c.clone()));
            }
        }
        taken.inflight = Some(self.tracker.begin(taken.writes.iter().map(|(_, c)| c)));
        taken
    }

    /// Queues what the primary applied, given its replies to the batch.
    fn send(&self, mut taken: Taken, replies: &[Reply]) {
        let writes = std::mem::take(&mut taken.writes);
        if writes.is_empty() {
            return;
        }
        let now = crate::wire::util::now_ms();
        let mut out = Vec::with_capacity(writes.len());
        let mut unsupported = 0;
        for (i, c) in writes {
            let Some(result) = taken.result(i, replies) else {
                continue;
            };
            for c in as_replayed(c, result, now) {
                if self.mirror.supports(c.spec) {
                    out.push(c);
                } else {
                    unsupported += 1;
                }
            }
        }
        let m = metrics();
        m.mirrored(&self.namespace, "unsupported", unsupported);
        if out.is_empty() {
            return;
        }
        let n = out.len() as u64;
        if !self.queue.writes(out) {
            m.mirrored(&self.namespace, "dropped", n);
        }
    }
}

/// The writes taken from a batch, and its transactions.
#[derive(Default)]
struct Taken {
    writes: Vec<(usize, Command)>,
    /// (MULTI, EXEC or DISCARD) positions of each transaction in the batch.
    blocks: Vec<(usize, usize)>,
    /// Ends when the writes were queued (dropped after them).
    inflight: Option<InFlight>,
}

impl Taken {
    /// Whether the command at `i` was applied: None if not; Some(None) if
    /// it was and its reply is not known apart (inside a transaction whose
    /// EXEC reply was forwarded as bytes); Some(Some(reply)) otherwise.
    fn result<'a>(&self, i: usize, replies: &'a [Reply]) -> Option<Option<&'a Reply>> {
        let Some(&(m, e)) = self.blocks.iter().find(|(m, e)| *m < i && i < *e) else {
            return replies.get(i).filter(|r| !failed(r)).map(Some);
        };
        // In a transaction the queued commands answer QUEUED; EXEC's reply
        // holds theirs, or says that none ran.
        match replies.get(e) {
            Some(Reply::Array(items)) => items.get(i - m - 1).filter(|r| !failed(r)).map(Some),
            Some(r) if committed(r) => Some(None),
            _ => None,
        }
    }
}

/// Replays queued writes on the mirror, in order, merging what queued
/// while the last batch ran; ends when the wrapper is dropped (a reload
/// that changes the namespace's backend or mirror builds a new one).
async fn replay(
    mirror: Arc<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<Item>,
    namespace: String,
    repairs: mpsc::UnboundedSender<Vec<Bytes>>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        // Everything queued meanwhile goes out as one batch, in order:
        // replayed writes and the commands of probes, whose replies are
        // handed back by position.
        let mut batch: Vec<Command> = Vec::new();
        let mut writes = Vec::new();
        let mut probes = Vec::new();
        let mut add = |item: Item, batch: &mut Vec<Command>| {
            let at = batch.len();
            let n = match &item {
                Item::Writes(c) | Item::Probe(c, _) => c.len(),
            };
            queued.fetch_sub(n, Ordering::AcqRel);
            match item {
                Item::Writes(cmds) => {
                    batch.extend(cmds);
                    writes.push(at..batch.len());
                }
                Item::Probe(cmds, tx) => {
                    batch.extend(cmds);
                    probes.push((at..batch.len(), tx));
                }
            }
        };
        add(first, &mut batch);
        while batch.len() < REPLAY_BATCH {
            match rx.try_recv() {
                Ok(item) => add(item, &mut batch),
                Err(_) => break,
            }
        }
        // The keys of a write the mirror refuses are copied (see `repair`).
        let sent = (!writes.is_empty()).then(|| batch.clone());
        let replies = if batch.is_empty() {
            Vec::new()
        } else {
            mirror.execute(batch).await
        };
        for (range, tx) in probes {
            let _ = tx.send(
                replies
                    .get(range)
                    .map(<[Reply]>::to_vec)
                    .unwrap_or_default(),
            );
        }
        let (mut n, mut errors) = (0u64, 0u64);
        for range in writes {
            n += range.len() as u64;
            for i in range {
                let Some(r) = replies.get(i).filter(|r| failed(r)) else {
                    continue;
                };
                errors += 1;
                debug!(namespace = namespace.as_str(), error = ?r, "mirror refused a write");
                let c = sent.as_ref().and_then(|s| s.get(i));
                if let Some(c) = c.filter(|_| !unreachable(r)) {
                    let keys = c.spec.key_positions(&c.args);
                    let _ = repairs.send(
                        keys.into_iter()
                            .filter_map(|p| c.args.get(p).cloned())
                            .collect(),
                    );
                }
            }
        }
        let m = metrics();
        m.mirrored(&namespace, "ok", n.saturating_sub(errors));
        m.mirrored(&namespace, "error", errors);
    }
}

/// Whether a refusal says the mirror could not be reached (nothing to
/// repair by copying: the copy would fail the same way).
fn unreachable(r: &Reply) -> bool {
    let text = match r {
        Reply::Error(e) | Reply::Raw(e) => String::from_utf8_lossy(e).to_lowercase(),
        _ => return false,
    };
    text.contains("unavailable") || text.contains("timed out") || text.contains("timeout")
}

/// Keys whose replayed write the mirror refused (a RENAME or SUNIONSTORE
/// across Redis Cluster slots, a write on a key the mirror never got) are
/// copied from the primary instead, as a backfill copies them, so the
/// mirror converges whatever it cannot replay. Ends with the wrapper.
async fn repair(me: Weak<Mirrored>, mut keys: mpsc::UnboundedReceiver<Vec<Bytes>>) {
    while let Some(first) = keys.recv().await {
        let mut todo: Vec<Bytes> = first;
        while todo.len() < 10_000 {
            match keys.try_recv() {
                Ok(more) => todo.extend(more),
                Err(_) => break,
            }
        }
        todo.sort();
        todo.dedup();
        let Some(m) = me.upgrade() else { return };
        let _on = m.tracking().await;
        let n = todo.len() as u64;
        match copy::copy(&m, todo).await {
            Ok(c) => {
                metrics().mirrored(&m.namespace, "repaired", c.done);
                if let Some(e) = c.error {
                    debug!(
                        namespace = m.namespace.as_str(),
                        error = e,
                        "a repair failed"
                    );
                }
            }
            Err(e) => {
                debug!(namespace = m.namespace.as_str(), error = %e, keys = n, "repair failed");
            }
        }
    }
}

impl Backend for Mirrored {
    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    fn supports(&self, spec: &CommandSpec) -> bool {
        self.primary.supports(spec)
    }

    /// Mirrored namespaces serve database 0 only: the replaying task sends
    /// one batch of many clients' writes, and a batch has one database.
    fn databases(&self) -> bool {
        false
    }

    fn server_version(&self) -> Option<String> {
        self.primary.server_version()
    }

    fn health(&self) -> String {
        self.primary.health()
    }

    fn execute(&self, mut batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            self.after_previous().await;
            let tap = self.tap();
            let taken = tap.copy(&mut batch);
            // Reads inside a transaction answer QUEUED: not shadowed. The
            // batch is looked at only when shadow reads are on.
            let fraction = self.shadow.get();
            let picked = if fraction <= 0.0 || batch.iter().any(|c| c.spec.name == "multi") {
                Vec::new()
            } else {
                shadow::pick(fraction, &mut batch)
            };
            let shadowed: Vec<Command> = picked.iter().map(|&i| batch[i].clone()).collect();
            if !picked.is_empty() {
                shadow::watch(self, &batch, &picked);
            }
            let replies = self.primary.execute(batch).await;
            if !taken.writes.is_empty() {
                tap.send(taken, &replies);
            }
            if !picked.is_empty() {
                let ours: Vec<Reply> = picked
                    .iter()
                    .map(|&i| replies.get(i).cloned().unwrap_or(Reply::Nil))
                    .collect();
                shadow::compare(self, shadowed, &ours);
            }
            replies
        })
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        Box::pin(async move {
            self.after_previous().await;
            let inner = self.primary.session().await?;
            Ok(Box::new(MirroredSession {
                inner,
                tap: self.tap().clone(),
            }) as Box<dyn Session>)
        })
    }

    fn subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        self.primary.subscriber(tag, pushes)
    }

    fn save(&self, background: bool) -> Option<Result<String, String>> {
        self.primary.save(background)
    }

    fn last_save(&self) -> Option<u64> {
        self.primary.last_save()
    }

    fn saving(&self) -> bool {
        self.primary.saving()
    }

    fn cached_scripts(&self) -> Option<usize> {
        self.primary.cached_scripts()
    }

    fn shutdown(&self) {
        self.primary.shutdown();
    }

    fn shard_of(&self, channel: &[u8]) -> usize {
        self.primary.shard_of(channel)
    }

    fn shard_subscriber(
        &self,
        tag: usize,
        pushes: Pushes,
        channel: Bytes,
    ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
        self.primary.shard_subscriber(tag, pushes, channel)
    }
}

/// A pinned session (WATCH ... EXEC) whose writes are mirrored too.
struct MirroredSession {
    inner: Box<dyn Session>,
    tap: Tap,
}

impl Session for MirroredSession {
    fn execute(&mut self, mut batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let taken = self.tap.copy(&mut batch);
            let replies = self.inner.execute(batch).await;
            self.tap.send(taken, &replies);
            replies
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_s_commands_take_their_results_from_exec() {
        let ok = Reply::ok();
        let taken = Taken {
            writes: Vec::new(),
            blocks: vec![(1, 4), (5, 7)],
            ..Taken::default()
        };
        let replies = vec![
            ok.clone(),
            ok.clone(),
            Reply::status("QUEUED"),
            Reply::status("QUEUED"),
            Reply::Array(vec![Reply::Int(1), Reply::error("WRONGTYPE x")]),
            ok.clone(),
            Reply::status("QUEUED"),
            Reply::Raw(Bytes::from_static(b"*-1\r\n")),
        ];
        assert_eq!(taken.result(0, &replies), Some(Some(&ok)));
        assert_eq!(taken.result(2, &replies), Some(Some(&Reply::Int(1))));
        assert_eq!(taken.result(3, &replies), None, "failed inside EXEC");
        assert_eq!(taken.result(6, &replies), None, "the transaction aborted");
    }
}
