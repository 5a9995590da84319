//! Mirroring (`mirror = "<backend>"` on a namespace): every write the
//! namespace's backend acknowledged is replayed, in order, on a second
//! backend. It fills the backend a namespace is moving to while clients
//! keep using the old one, so that the switch (`backend = "<new>"`) finds
//! the data there; reads never touch the mirror.
//!
//! The client's reply is the primary's alone and never waits for the
//! mirror: mirrored writes queue (up to [`QUEUE`] batches; past that they
//! are dropped and counted) and one task replays them in order, as few
//! large batches. Only what the primary applied is replayed: a write it
//! refused is not, and a transaction only if EXEC committed. Commands
//! without keys (FLUSHDB, SCRIPT FLUSH) are not mirrored, since the mirror
//! may hold other namespaces' keys; nor are blocking ones, nor commands
//! the mirror's kind of backend cannot run (counted as `unsupported`).

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tracing::debug;

use super::{Backend, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::command::{BLOCKING, CommandSpec, WRITE};
use crate::error::CmdError;
use crate::metrics::metrics;
use crate::reply::Reply;

/// Batches waiting for the mirror, at most; more are dropped.
const QUEUE: usize = 1024;
/// Commands the replaying task sends in one batch, at most.
const REPLAY_BATCH: usize = 4096;

/// A namespace's backend whose writes are replayed on a mirror.
pub struct Mirrored {
    primary: Arc<dyn Backend>,
    mirror: Arc<dyn Backend>,
    namespace: String,
    /// The replaying task's queue, started on first use (inside the runtime).
    tap: OnceLock<Tap>,
}

impl Mirrored {
    pub fn new(primary: Arc<dyn Backend>, mirror: Arc<dyn Backend>, namespace: &str) -> Mirrored {
        Mirrored {
            primary,
            mirror,
            namespace: namespace.to_string(),
            tap: OnceLock::new(),
        }
    }

    fn tap(&self) -> &Tap {
        self.tap.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(replay(self.mirror.clone(), rx, self.namespace.clone()));
            Tap {
                mirror: self.mirror.clone(),
                namespace: self.namespace.clone(),
                queue: tx,
            }
        })
    }
}

/// What a batch's primary and its sessions need to mirror their writes.
#[derive(Clone)]
struct Tap {
    mirror: Arc<dyn Backend>,
    namespace: String,
    queue: mpsc::Sender<Vec<Command>>,
}

impl Tap {
    /// Whether a command is a write to replay on the mirror.
    fn wants(cmd: &Command) -> bool {
        // Most writes name one key: told without building the key list.
        cmd.spec.has(WRITE)
            && !cmd.spec.has(BLOCKING)
            && (cmd.spec.single_key(cmd.args.len()).is_some()
                || !cmd.spec.key_positions(&cmd.args).is_empty())
    }

    /// The writes of `batch` worth replaying, taken before the primary
    /// runs it (commands are cheap to clone: their arguments are shared).
    fn copy(&self, batch: &[Command]) -> Vec<(usize, Command)> {
        batch
            .iter()
            .enumerate()
            .filter(|(_, c)| Tap::wants(c))
            .map(|(i, c)| (i, c.clone()))
            .collect()
    }

    /// Queues what the primary applied, given its replies to the batch.
    fn send(&self, writes: Vec<(usize, Command)>, batch_has_multi: bool, replies: &[Reply]) {
        if writes.is_empty() {
            return;
        }
        // In a transaction the queued commands answer QUEUED; EXEC's reply
        // says whether any of them ran.
        let committed = !batch_has_multi || replies.iter().any(committed);
        let mut out = Vec::with_capacity(writes.len());
        let mut unsupported = 0;
        for (i, c) in writes {
            let applied = if batch_has_multi {
                committed
            } else {
                replies.get(i).is_some_and(|r| !failed(r))
            };
            if !applied {
                continue;
            }
            if !self.mirror.supports(c.spec) {
                unsupported += 1;
                continue;
            }
            out.push(c);
        }
        let m = metrics();
        m.mirrored(&self.namespace, "unsupported", unsupported);
        if out.is_empty() {
            return;
        }
        let n = out.len() as u64;
        if self.queue.try_send(out).is_err() {
            m.mirrored(&self.namespace, "dropped", n);
        }
    }
}

/// A reply that says the command failed.
fn failed(r: &Reply) -> bool {
    match r {
        Reply::Error(_) => true,
        Reply::Raw(raw) => raw.starts_with(b"-"),
        _ => false,
    }
}

/// EXEC's reply when the transaction ran (not nil, not EXECABORT).
fn committed(r: &Reply) -> bool {
    match r {
        Reply::Array(_) => true,
        Reply::Raw(raw) => raw.starts_with(b"*") && !raw.starts_with(b"*-1"),
        _ => false,
    }
}

/// Replays queued writes on the mirror, in order, merging what queued
/// while the last batch ran; ends when the namespace's backend is dropped
/// (a reload builds a new one).
async fn replay(mirror: Arc<dyn Backend>, mut rx: mpsc::Receiver<Vec<Command>>, namespace: String) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < REPLAY_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let replies = mirror.execute(batch).await;
        let errors = replies.iter().filter(|r| failed(r)).count() as u64;
        if let Some(e) = replies.iter().find(|r| failed(r)) {
            debug!(namespace = namespace.as_str(), error = ?e, "mirror refused a write");
        }
        let m = metrics();
        m.mirrored(&namespace, "ok", n.saturating_sub(errors));
        m.mirrored(&namespace, "error", errors);
    }
}

fn has_multi(batch: &[Command]) -> bool {
    batch.iter().any(|c| c.spec.name == "multi")
}

impl Backend for Mirrored {
    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    fn supports(&self, spec: &CommandSpec) -> bool {
        self.primary.supports(spec)
    }

    fn health(&self) -> String {
        self.primary.health()
    }

    fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let tap = self.tap();
            let writes = tap.copy(&batch);
            if writes.is_empty() {
                return self.primary.execute(batch).await;
            }
            let multi = has_multi(&batch);
            let replies = self.primary.execute(batch).await;
            tap.send(writes, multi, &replies);
            replies
        })
    }

    fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
        Box::pin(async move {
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
}

/// A pinned session (WATCH ... EXEC) whose writes are mirrored too.
struct MirroredSession {
    inner: Box<dyn Session>,
    tap: Tap,
}

impl Session for MirroredSession {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let writes = self.tap.copy(&batch);
            let multi = has_multi(&batch);
            let replies = self.inner.execute(batch).await;
            self.tap.send(writes, multi, &replies);
            replies
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn reads_failures_and_commits_in_both_forms() {
        assert!(failed(&Reply::error("ERR no")));
        assert!(failed(&Reply::Raw(Bytes::from_static(b"-WRONGTYPE x\r\n"))));
        assert!(!failed(&Reply::Raw(Bytes::from_static(b"+OK\r\n"))));
        assert!(committed(&Reply::Array(vec![])));
        assert!(committed(&Reply::Raw(Bytes::from_static(b"*1\r\n+OK\r\n"))));
        assert!(!committed(&Reply::Raw(Bytes::from_static(b"*-1\r\n"))));
        assert!(!committed(&Reply::Nil));
        assert!(!committed(&Reply::error("EXECABORT Transaction discarded")));
    }
}
