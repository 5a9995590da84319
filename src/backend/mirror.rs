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
//!
//! A write whose outcome is chosen when it runs is replayed as its effect,
//! as Redis replicates it, so that the mirror holds the same data: SPOP as
//! SREM of the members it popped, XADD with an automatic ID with the ID it
//! got, XREADGROUP as the pending entries it created, and relative expiries (EXPIRE, SET EX, SETEX, GETEX PX...) as the
//! absolute time they stood for when the primary applied them.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use super::{Backend, BoxFuture, Command, Pushes, Session, Subscriber};
use crate::wire::command::{self, BLOCKING, CommandSpec, WRITE};
use crate::wire::error::CmdError;
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::util::is;

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
        let m = Arc::new(Mirrored::new(primary, mirror, namespace));
        live.push(Arc::downgrade(&m));
        m
    }

    fn new(primary: Arc<dyn Backend>, mirror: Arc<dyn Backend>, namespace: &str) -> Mirrored {
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
        // XREADGROUP is replayed as its effect, blocking or not.
        cmd.spec.has(WRITE)
            && (!cmd.spec.has(BLOCKING) || cmd.spec.name == "xreadgroup")
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
        if self.queue.try_send(out).is_err() {
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

/// Whether the command is replayed from its reply (see the module's doc).
fn needs_reply(c: &Command) -> bool {
    match c.spec.name {
        "spop" | "xreadgroup" => true,
        "xadd" => xadd_id(&c.args).is_some_and(|i| c.args[i].ends_with(b"*")),
        _ => false,
    }
}

/// Where XADD's ID is: after NOMKSTREAM, MAXLEN/MINID [=|~] n and LIMIT n.
fn xadd_id(a: &[Bytes]) -> Option<usize> {
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if is(o, "NOMKSTREAM") {
            i += 1;
        } else if is(o, "MAXLEN") || is(o, "MINID") {
            let exact = a
                .get(i + 1)
                .is_some_and(|x| &x[..] == b"=" || &x[..] == b"~");
            i += if exact { 3 } else { 2 };
        } else if is(o, "LIMIT") {
            i += 2;
        } else {
            return Some(i);
        }
    }
    None
}

/// A command built for the mirror from another's arguments.
fn rebuilt(name: &str, args: Vec<Bytes>) -> Option<Command> {
    command::lookup(name.as_bytes()).map(|spec| Command::internal(spec, args))
}

/// The commands to replay for `c`, which the primary applied with `reply`
/// (None: applied, reply not known) at Unix ms `now`; none when it changed
/// nothing worth replaying.
fn as_replayed(c: Command, reply: Option<&Reply>, now: u64) -> Vec<Command> {
    if c.spec.name == "xreadgroup" {
        return match reply {
            Some(r) => deliveries(&c.args, r, now),
            // Replaying the read itself would deliver other entries.
            None => Vec::new(),
        };
    }
    effect(c, reply, now).into_iter().collect()
}

/// XREADGROUP's effect on the group, as Redis replicates it: the new
/// entries it delivered become the consumer's pending entries (XCLAIM ...
/// FORCE), or with NOACK only move the group's last ID (XGROUP SETID).
/// Reading a consumer's history changes no owner and is not replayed.
fn deliveries(a: &[Bytes], reply: &Reply, now: u64) -> Vec<Command> {
    let Some(g) = a.iter().position(|x| is(x, "GROUP")) else {
        return Vec::new();
    };
    let (Some(group), Some(consumer)) = (a.get(g + 1), a.get(g + 2)) else {
        return Vec::new();
    };
    let noack = a.iter().any(|x| is(x, "NOACK"));
    let Some(s) = a.iter().position(|x| is(x, "STREAMS")) else {
        return Vec::new();
    };
    let n = (a.len() - s - 1) / 2;
    let streams: Vec<(&Reply, &Reply)> = match reply {
        Reply::Array(items) => items
            .iter()
            .filter_map(|kv| match kv {
                Reply::Array(kv) if kv.len() == 2 => Some((&kv[0], &kv[1])),
                _ => None,
            })
            .collect(),
        Reply::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (key, entries) in streams {
        let (Reply::Bulk(key), Reply::Array(entries)) = (key, entries) else {
            continue;
        };
        // Only keys read with `>` delivered new entries.
        let new = (0..n).any(|i| a[s + 1 + i] == *key && &a[s + 1 + n + i][..] == b">");
        let ids: Vec<Bytes> = entries
            .iter()
            .filter_map(|e| match e {
                Reply::Array(e) => match e.first() {
                    Some(Reply::Bulk(id)) => Some(id.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let Some(last) = ids.last().cloned().filter(|_| new) else {
            continue;
        };
        let cmd = if noack {
            rebuilt(
                "xgroup",
                vec![
                    Bytes::from_static(b"XGROUP"),
                    Bytes::from_static(b"SETID"),
                    key.clone(),
                    group.clone(),
                    last,
                ],
            )
        } else {
            let mut args = vec![
                Bytes::from_static(b"XCLAIM"),
                key.clone(),
                group.clone(),
                consumer.clone(),
                Bytes::from_static(b"0"),
            ];
            args.extend(ids);
            for word in [
                "TIME",
                &now.to_string(),
                "RETRYCOUNT",
                "1",
                "FORCE",
                "JUSTID",
                "LASTID",
            ] {
                args.push(Bytes::copy_from_slice(word.as_bytes()));
            }
            args.push(last);
            rebuilt("xclaim", args)
        };
        out.extend(cmd);
    }
    out
}

/// The one command to replay for `c` (see [`as_replayed`]).
fn effect(c: Command, reply: Option<&Reply>, now: u64) -> Option<Command> {
    let ms = |at: usize, unit: u64| {
        crate::wire::protocol::parse_i64(&c.args[at]).map(|n| {
            Bytes::from(
                (now as i64)
                    .saturating_add(n.saturating_mul(unit as i64))
                    .to_string(),
            )
        })
    };
    match c.spec.name {
        "spop" => {
            let members: Vec<Bytes> = match reply {
                None | Some(Reply::Raw(_)) => return Some(c),
                Some(Reply::Bulk(m)) => vec![m.clone()],
                Some(Reply::Array(items) | Reply::Set(items)) => items
                    .iter()
                    .filter_map(|r| match r {
                        Reply::Bulk(m) => Some(m.clone()),
                        _ => None,
                    })
                    .collect(),
                Some(_) => Vec::new(),
            };
            if members.is_empty() {
                return None;
            }
            let mut args = vec![Bytes::from_static(b"SREM"), c.args[1].clone()];
            args.extend(members);
            rebuilt("srem", args)
        }
        "xadd" => {
            let at = xadd_id(&c.args)?;
            if !c.args[at].ends_with(b"*") {
                return Some(c);
            }
            match reply {
                Some(Reply::Bulk(id)) => {
                    let mut args = c.args.clone();
                    args[at] = id.clone();
                    rebuilt("xadd", args)
                }
                // NOMKSTREAM on a missing stream: nothing added.
                Some(Reply::Nil) => None,
                _ => Some(c),
            }
        }
        "expire" | "pexpire" => {
            let unit = if c.spec.name == "expire" { 1000 } else { 1 };
            let Some(at) = ms(2, unit) else {
                return Some(c);
            };
            let mut args = vec![Bytes::from_static(b"PEXPIREAT"), c.args[1].clone(), at];
            args.extend(c.args[3..].iter().cloned());
            rebuilt("pexpireat", args)
        }
        "setex" | "psetex" if c.args.len() == 4 => {
            let unit = if c.spec.name == "setex" { 1000 } else { 1 };
            let Some(at) = ms(2, unit) else {
                return Some(c);
            };
            let args = vec![
                Bytes::from_static(b"SET"),
                c.args[1].clone(),
                c.args[3].clone(),
                Bytes::from_static(b"PXAT"),
                at,
            ];
            rebuilt("set", args)
        }
        "set" | "getex" => {
            let from = if c.spec.name == "set" { 3 } else { 2 };
            let Some(i) = (from..c.args.len().saturating_sub(1))
                .find(|&i| is(&c.args[i], "EX") || is(&c.args[i], "PX"))
            else {
                return Some(c);
            };
            let unit = if is(&c.args[i], "EX") { 1000 } else { 1 };
            let Some(at) = ms(i + 1, unit) else {
                return Some(c);
            };
            let mut args = c.args.clone();
            args[i] = Bytes::from_static(b"PXAT");
            args[i + 1] = at;
            rebuilt(c.spec.name, args)
        }
        _ => Some(c),
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
/// while the last batch ran; ends when the wrapper is dropped (a reload
/// that changes the namespace's backend or mirror builds a new one).
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
            let tap = self.tap();
            let taken = tap.copy(&mut batch);
            if taken.writes.is_empty() {
                return self.primary.execute(batch).await;
            }
            let replies = self.primary.execute(batch).await;
            tap.send(taken, &replies);
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

    fn save(&self, background: bool) -> Option<Result<String, String>> {
        self.primary.save(background)
    }

    fn last_save(&self) -> Option<u64> {
        self.primary.last_save()
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
    use bytes::Bytes;

    fn cmd(words: &str) -> Command {
        let args: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let spec = command::lookup(&args[0]).expect("known command");
        Command::internal(spec, args)
    }

    fn words(c: &Command) -> String {
        c.args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn replayed(words_in: &str, reply: Option<Reply>) -> Option<String> {
        let out: Vec<String> = as_replayed(cmd(words_in), reply.as_ref(), 1_000_000)
            .iter()
            .map(words)
            .collect();
        (!out.is_empty()).then(|| out.join(" | "))
    }

    #[test]
    fn random_and_relative_writes_become_their_effect() {
        let bulk = |s: &'static str| Reply::Bulk(Bytes::from_static(s.as_bytes()));
        assert_eq!(
            replayed("SPOP s", Some(bulk("m"))).as_deref(),
            Some("SREM s m")
        );
        assert_eq!(
            replayed("SPOP s 2", Some(Reply::Array(vec![bulk("a"), bulk("b")]))).as_deref(),
            Some("SREM s a b")
        );
        assert_eq!(replayed("SPOP s", Some(Reply::Nil)), None);
        // Its reply unknown, the command is replayed as it came.
        assert_eq!(replayed("SPOP s", None).as_deref(), Some("SPOP s"));
        assert_eq!(
            replayed("XADD x MAXLEN ~ 10 * f v", Some(bulk("7-1"))).as_deref(),
            Some("XADD x MAXLEN ~ 10 7-1 f v")
        );
        assert_eq!(replayed("XADD x NOMKSTREAM * f v", Some(Reply::Nil)), None);
        assert_eq!(
            replayed("XADD x 5-0 f v", None).as_deref(),
            Some("XADD x 5-0 f v")
        );
        assert_eq!(
            replayed("EXPIRE k 10 NX", None).as_deref(),
            Some("PEXPIREAT k 1010000 NX")
        );
        assert_eq!(
            replayed("PSETEX k 5 v", None).as_deref(),
            Some("SET k v PXAT 1000005")
        );
        assert_eq!(
            replayed("SET k v NX EX 2 GET", None).as_deref(),
            Some("SET k v NX PXAT 1002000 GET")
        );
        assert_eq!(
            replayed("GETEX k PX 7", None).as_deref(),
            Some("GETEX k PXAT 1000007")
        );
        assert_eq!(replayed("SET k v", None).as_deref(), Some("SET k v"));
        let read = |id: &'static str| {
            Reply::Array(vec![Reply::Array(vec![
                bulk("s"),
                Reply::Array(vec![Reply::Array(vec![bulk(id), Reply::Array(vec![])])]),
            ])])
        };
        assert_eq!(
            replayed(
                "XREADGROUP GROUP g c COUNT 5 STREAMS s >",
                Some(read("3-0"))
            )
            .as_deref(),
            Some("XCLAIM s g c 0 3-0 TIME 1000000 RETRYCOUNT 1 FORCE JUSTID LASTID 3-0")
        );
        assert_eq!(
            replayed("XREADGROUP GROUP g c NOACK STREAMS s >", Some(read("3-0"))).as_deref(),
            Some("XGROUP SETID s g 3-0")
        );
        assert_eq!(
            replayed("XREADGROUP GROUP g c STREAMS s 0", Some(read("3-0"))),
            None
        );
        assert_eq!(
            replayed("XREADGROUP GROUP g c STREAMS s >", Some(Reply::NilArray)),
            None
        );
    }

    #[test]
    fn a_transaction_s_commands_take_their_results_from_exec() {
        let ok = Reply::ok();
        let taken = Taken {
            writes: Vec::new(),
            blocks: vec![(1, 4), (5, 7)],
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
