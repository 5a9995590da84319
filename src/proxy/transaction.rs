//! MULTI/EXEC/DISCARD and WATCH/UNWATCH for one client.
//!
//! keyway queues a transaction's commands itself (answering QUEUED, as
//! Redis does) and sends MULTI, the commands and EXEC to the backend as one
//! batch, which a backend runs without interleaving other clients. All of a
//! transaction's keys must live on one backend. WATCH pins a connection of
//! the client's own (`Backend::session`) until EXEC, DISCARD or UNWATCH, so
//! the server sees the WATCH and the EXEC on the same connection.
//!
//! Commands keyway answers itself (SLOWLOG, CONFIG, CLIENT, TIME, KEYS...)
//! are queued too, as [`Own`]: they run, on the connection above, once the
//! backend's EXEC has succeeded, and their replies take their places in
//! its array. So they run only if the transaction does, after its backend
//! commands rather than between them.

use std::sync::Arc;

use crate::backend::{Backend, Command, Session};
use crate::proxy::dispatch;
use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{self, CommandSpec, KEYSPACE, LOCAL, PUBSUB};
use crate::wire::error::CmdError;
use crate::wire::protocol::Request;
use crate::wire::reply::Reply;
use crate::wire::util::bytes;

#[derive(Default)]
pub struct Transaction {
    /// Between MULTI and EXEC or DISCARD.
    multi: Option<Queued>,
    watching: Option<Watch>,
    /// The commands of keyway's own of the transaction EXEC just ran, for
    /// the connection to run (see [`Transaction::take_own`]).
    ran_own: Vec<Own>,
}

/// A queued command keyway answers itself, and its place in EXEC's reply.
pub struct Own {
    pub at: usize,
    pub req: Request,
    pub spec: &'static CommandSpec,
}

struct Watch {
    backend: Arc<dyn Backend>,
    namespace: Arc<Namespace>,
    session: Box<dyn Session>,
}

#[derive(Default)]
struct Queued {
    commands: Vec<Command>,
    /// For each command whose reply names keys the namespace rewrote: the
    /// command's name and namespaces, to map them back in EXEC's reply.
    keys_from: Vec<Option<dispatch::KeysFrom>>,
    /// Replies keyway gives itself (PING, ECHO), by their place in the
    /// transaction, spliced into EXEC's reply; a placeholder for each of
    /// `own`.
    local: Vec<(usize, Reply)>,
    own: Vec<Own>,
    /// Default-TTL EXPIREs for written keys, run after EXEC.
    after: Vec<Command>,
    target: Option<(Arc<dyn Backend>, Arc<Namespace>)>,
    /// An error while queuing: EXEC will refuse the transaction.
    dirty: bool,
    /// Bytes of the queued commands (client memory, as Redis's multi-mem).
    bytes: usize,
}

impl Transaction {
    /// Bytes the queued commands hold.
    pub fn held(&self) -> usize {
        self.multi.as_ref().map_or(0, |q| q.bytes)
    }

    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// Queues a command keyway answers itself; the connection runs it if
    /// EXEC succeeds (see [`Transaction::take_own`]).
    pub fn queue_own(&mut self, req: Request, spec: &'static CommandSpec) -> Reply {
        let Some(q) = self.multi.as_mut() else {
            return Reply::error("ERR EXEC without MULTI");
        };
        let at = q.commands.len() + q.local.len();
        q.bytes = q.bytes.saturating_add(req.raw.len() + 64);
        q.local.push((at, Reply::Nil));
        q.own.push(Own { at, req, spec });
        Reply::status("QUEUED")
    }

    /// The commands of keyway's own in the transaction EXEC just ran (none
    /// when it was aborted or refused): each one's reply replaces the
    /// element at its `at` in EXEC's array.
    pub fn take_own(&mut self) -> Vec<Own> {
        std::mem::take(&mut self.ran_own)
    }

    /// A command refused before it could be queued makes EXEC fail, as in Redis.
    pub fn mark_dirty(&mut self) {
        if let Some(q) = &mut self.multi {
            q.dirty = true;
        }
    }

    /// Runs a transaction command, or queues any command while in MULTI.
    pub async fn execute(
        &mut self,
        router: &Router,
        req: Request,
        spec: &'static CommandSpec,
        resp3: bool,
        db: u8,
    ) -> Reply {
        match (spec.name, self.multi.is_some()) {
            ("multi", true) => Reply::error("ERR MULTI calls can not be nested"),
            ("multi", false) => {
                self.multi = Some(Queued::default());
                Reply::ok()
            }
            ("exec", false) => Reply::error("ERR EXEC without MULTI"),
            ("exec", true) => self.exec(resp3, db).await,
            ("discard", false) => Reply::error("ERR DISCARD without MULTI"),
            ("discard", true) => {
                self.multi = None;
                self.watching = None;
                Reply::ok()
            }
            // Refused without discarding the transaction, as Redis does.
            ("watch", true) => Reply::error("ERR WATCH inside MULTI is not allowed"),
            ("watch", false) => self.watch(router, req, spec, db).await,
            ("unwatch", false) => {
                self.watching = None;
                Reply::ok()
            }
            (_, true) => self.queue(router, req, spec, resp3, db),
            (_, false) => Reply::error("ERR not a transaction command"),
        }
    }

    async fn watch(
        &mut self,
        router: &Router,
        req: Request,
        spec: &'static CommandSpec,
        db: u8,
    ) -> Reply {
        let (positions, owners) = match dispatch::owners(router, &req.args, spec) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let ns = owners[0].clone();
        let mut all: Vec<&Arc<Namespace>> = owners.clone();
        if let Some(w) = &self.watching {
            all.push(&w.namespace);
        }
        if all.iter().any(|o| !Arc::ptr_eq(&o.backend, &ns.backend)) {
            return dispatch::cross_backend(spec, &all);
        }
        if !ns.backend.supports(spec) {
            return CmdError::Unsupported {
                command: "WATCH".into(),
                namespace: ns.name.clone(),
                backend: ns.backend.kind().to_string(),
            }
            .into();
        }
        if db != 0 && !ns.backend.databases() {
            return dispatch::no_databases(ns.backend.kind(), db);
        }
        if self.watching.is_none() {
            match ns.backend.session().await {
                Ok(session) => {
                    self.watching = Some(Watch {
                        backend: ns.backend.clone(),
                        namespace: ns.clone(),
                        session,
                    })
                }
                Err(e) => return e.into(),
            }
        }
        let mut cmd = dispatch::rewrite(req, spec, &positions, &owners, false);
        cmd.db = db;
        let Some(w) = self.watching.as_mut() else {
            return Reply::error("ERR WATCH lost its connection");
        };
        let reply = w.session.execute(vec![cmd]).await.pop();
        let reply = reply.unwrap_or_else(|| Reply::error("ERR backend returned no reply"));
        if reply.is_error() {
            self.watching = None;
        }
        reply
    }

    fn queue(
        &mut self,
        router: &Router,
        req: Request,
        spec: &'static CommandSpec,
        resp3: bool,
        db: u8,
    ) -> Reply {
        let Some(q) = self.multi.as_mut() else {
            return Reply::error("ERR EXEC without MULTI");
        };
        let refuse = |q: &mut Queued, r: Reply| {
            q.dirty = true;
            r
        };
        let place = q.commands.len() + q.local.len();
        q.bytes = q.bytes.saturating_add(req.raw.len() + 64);
        match (spec.name, req.args.get(1)) {
            ("ping", None) => {
                q.local.push((place, Reply::status("PONG")));
                return Reply::status("QUEUED");
            }
            ("ping" | "echo", Some(msg)) => {
                q.local.push((place, Reply::Bulk(msg.clone())));
                return Reply::status("QUEUED");
            }
            _ => {}
        }
        // FLUSHDB and FLUSHALL go with the transaction to the one backend
        // that holds the whole keyspace, as they do in Redis.
        let flush = matches!(spec.name, "flushdb" | "flushall")
            && matches!(&router.namespaces[..], [ns] if ns.owns_backend && !ns.read_only);
        if !flush
            && (spec.has(LOCAL)
                || spec.has(KEYSPACE)
                || spec.has(PUBSUB) && !matches!(spec.name, "publish" | "spublish"))
        {
            return refuse(
                q,
                Reply::error(format!(
                    "ERR '{}' cannot be queued in a transaction by keyway",
                    spec.name.to_uppercase()
                )),
            );
        }
        let (all_positions, all_owners, keys) =
            match dispatch::owners_and_reach(router, &req.args, spec) {
                Ok(found) => found,
                Err(reply) => return refuse(q, reply),
            };
        // Keys first, then SORT's patterns (rewritten, never written).
        let owners = &all_owners[..keys];
        let positions = &all_positions[..keys.min(all_positions.len())];
        owners[0].metrics.command(spec);
        let mut all: Vec<&Arc<Namespace>> = all_owners.clone();
        if let Some((_, ns)) = &q.target {
            all.push(ns);
        }
        if let Some(w) = &self.watching {
            all.push(&w.namespace);
        }
        let backend = &all[0].backend;
        if all.iter().any(|o| !Arc::ptr_eq(&o.backend, backend)) {
            return refuse(q, dispatch::cross_backend(spec, &all));
        }
        for s in [command::known("multi"), spec] {
            if !backend.supports(s) {
                return refuse(
                    q,
                    CmdError::Unsupported {
                        command: s.name.to_uppercase(),
                        namespace: owners[0].name.clone(),
                        backend: backend.kind().to_string(),
                    }
                    .into(),
                );
            }
        }
        if let Some(refused) = dispatch::limits(spec, &req.args, positions, owners) {
            return refuse(q, refused);
        }
        if db != 0 && !backend.databases() {
            return refuse(q, dispatch::no_databases(backend.kind(), db));
        }
        if let Err(oom) = backend.make_room(db) {
            return refuse(q, oom);
        }
        if q.target.is_none() {
            q.target = Some((backend.clone(), owners[0].clone()));
        }
        let mut cmd = dispatch::rewrite(req, spec, &all_positions, &all_owners, resp3);
        cmd.db = db;
        q.keys_from.push(
            cmd.inspect
                .then(|| (spec.name, owners.iter().map(|ns| (*ns).clone()).collect())),
        );
        cmd.inspect = false;
        for (_, expire) in dispatch::default_ttl(&cmd.args, spec, positions, owners) {
            q.after.push(expire);
        }
        q.commands.push(cmd);
        Reply::status("QUEUED")
    }

    async fn exec(&mut self, resp3: bool, db: u8) -> Reply {
        let q = self.multi.take().unwrap_or_default();
        let watching = self.watching.take();
        if q.dirty {
            return Reply::error("EXECABORT Transaction discarded because of previous errors.");
        }
        let Some((backend, _)) = q.target else {
            // No backend command (empty, or only PING/ECHO): the watched
            // keys still decide.
            let reply = match watching {
                Some(mut w) => {
                    let splices = !q.local.is_empty();
                    exec_on_session(&mut *w.session, Vec::new(), resp3, db, splices).await
                }
                None => Reply::Array(Vec::new()),
            };
            if matches!(reply, Reply::Array(_)) {
                self.ran_own = q.own;
            }
            return splice(reply, q.local);
        };
        let mut batch = wrap(q.commands, resp3, db);
        let n = batch.len();
        let map_keys = q.keys_from.iter().any(Option::is_some);
        if let Some(exec) = batch.last_mut() {
            exec.inspect = map_keys || !q.local.is_empty();
        }
        batch.extend(q.after);
        let mut replies = match watching {
            Some(mut w) if Arc::ptr_eq(&w.backend, &backend) => w.session.execute(batch).await,
            _ => backend.execute(batch).await,
        };
        replies.truncate(n);
        let reply = replies
            .pop()
            .unwrap_or_else(|| Reply::error("ERR backend returned no reply"));
        let reply = match reply {
            Reply::Array(items) if map_keys => Reply::Array(
                items
                    .into_iter()
                    .zip(q.keys_from)
                    .map(|(r, keys)| match keys {
                        Some((name, owners)) => dispatch::keys_back(name, r, &owners),
                        None => r,
                    })
                    .collect(),
            ),
            other => other,
        };
        if matches!(reply, Reply::Array(_)) {
            self.ran_own = q.own;
        }
        splice(reply, q.local)
    }
}

/// Puts keyway's own replies back at their places in EXEC's array.
fn splice(reply: Reply, local: Vec<(usize, Reply)>) -> Reply {
    match reply {
        Reply::Array(mut items) if !local.is_empty() => {
            for (at, r) in local {
                items.insert(at.min(items.len()), r);
            }
            Reply::Array(items)
        }
        other => other,
    }
}

/// MULTI, the commands, EXEC.
fn wrap(commands: Vec<Command>, resp3: bool, db: u8) -> Vec<Command> {
    let tx = |name: &str| {
        let mut c = Command::internal(command::known(name), vec![bytes(&name.to_uppercase())]);
        c.resp3 = resp3;
        c.db = db;
        c.inspect = false;
        c
    };
    let mut batch = Vec::with_capacity(commands.len() + 2);
    batch.push(tx("multi"));
    batch.extend(commands);
    batch.push(tx("exec"));
    batch
}

/// Runs MULTI, `commands`, EXEC on a watching session; EXEC's reply is
/// structured (not passed through raw) when keyway must splice into it.
async fn exec_on_session(
    session: &mut dyn Session,
    commands: Vec<Command>,
    resp3: bool,
    db: u8,
    inspect: bool,
) -> Reply {
    let mut batch = wrap(commands, resp3, db);
    if let Some(exec) = batch.last_mut() {
        exec.inspect = inspect;
    }
    session
        .execute(batch)
        .await
        .pop()
        .unwrap_or_else(|| Reply::error("ERR backend returned no reply"))
}
