//! Routes a run of a client's keyed commands to backends and merges the
//! replies back in request order.
//!
//! Commands for the same backend travel in one batch (so pipelines stay
//! pipelines); batches for different backends run concurrently. Multi-key
//! commands whose keys live on different backends are split per backend
//! when the command allows it (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH) and
//! refused with an error naming the namespaces otherwise.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::backend::scope::{KeyScope, Scope};
use crate::backend::{Backend, BoxFuture, Command};
use crate::proxy::confine;
use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{self, CommandSpec, REACHES, SCRIPT, TTL, WRITE};
use crate::wire::error::CmdError;
use crate::wire::merge::{Merge, join_all, merge_kind, merge_parts};
use crate::wire::metrics::NamespaceMetrics;
use crate::wire::protocol::Request;
use crate::wire::reply::Reply;
use crate::wire::util::bytes;

/// A command's name and its keys' namespaces, for mapping the keys in its
/// reply back to the client's names.
pub type KeysFrom = (&'static str, Vec<Arc<Namespace>>);

/// Where a request's reply comes from.
enum Plan {
    Done(Reply),
    /// Reply `at` of batch `group`; keys in it are mapped back through
    /// `keys_from` when the namespaces rewrite them.
    Single {
        group: usize,
        at: usize,
        keys_from: Option<KeysFrom>,
    },
    /// Several parts; each lists the original key indexes it carries.
    Split {
        merge: Merge,
        parts: Vec<(usize, usize, Vec<usize>)>,
    },
}

/// Batches per backend, built while planning; each remembers the metrics of
/// the namespace that opened it, for its latency.
struct Groups {
    groups: Vec<Group>,
    /// Commands in the run: a new batch is sized for all of them, as most
    /// runs go to one backend.
    commands: usize,
    /// The client's database, given to every command.
    db: u8,
    /// The client's CLIENT UNBLOCK line, given to its blocking commands.
    unblock: Option<Arc<crate::backend::Unblock>>,
}

type Group = (Arc<dyn Backend>, Vec<Command>, Arc<NamespaceMetrics>);

impl Groups {
    fn push(&mut self, ns: &Namespace, cmd: Command) -> (usize, usize) {
        let g = match self
            .groups
            .iter()
            .position(|(b, _, _)| Arc::ptr_eq(b, &ns.backend))
        {
            Some(g) => g,
            None => {
                self.groups.push((
                    ns.backend.clone(),
                    Vec::with_capacity(self.commands),
                    ns.metrics.clone(),
                ));
                self.groups.len() - 1
            }
        };
        let batch = &mut self.groups[g].1;
        let line = crate::wire::command::BLOCKING | crate::wire::command::SCRIPT;
        let unblock = if cmd.spec.flags & line != 0 {
            self.unblock.clone()
        } else {
            None
        };
        batch.push(Command {
            db: self.db,
            unblock,
            ..cmd
        });
        (g, batch.len() - 1)
    }
}

/// Executes requests that all go to backends (no LOCAL or KEYSPACE command)
/// and returns one reply per request, in order.
pub async fn execute(
    router: &Router,
    requests: Vec<(Request, &'static CommandSpec)>,
    resp3: bool,
    db: u8,
    unblock: Option<&Arc<crate::backend::Unblock>>,
) -> Vec<Reply> {
    let mut groups = Groups {
        groups: Vec::new(),
        commands: requests.len(),
        db,
        unblock: unblock.cloned(),
    };
    let plans: Vec<Plan> = requests
        .into_iter()
        .map(|(req, spec)| plan(router, &mut groups, req, spec, resp3))
        .collect();
    let mut results = join_all(
        groups
            .groups
            .into_iter()
            .map(|(b, cmds, m)| -> BoxFuture<'_, Vec<Reply>> {
                Box::pin(async move {
                    if db != 0 && !b.databases() {
                        return vec![no_databases(b.kind(), db); cmds.len()];
                    }
                    let started = Instant::now();
                    let replies = b.execute(cmds).await;
                    m.observe(started.elapsed());
                    replies
                })
            })
            .collect(),
    )
    .await;
    // Each reply is taken by exactly one plan: moved out, not cloned.
    let mut reply_at = |g: usize, at: usize| -> Reply {
        results
            .get_mut(g)
            .and_then(|r| r.get_mut(at))
            .map(|r| std::mem::replace(r, Reply::Nil))
            .unwrap_or_else(|| Reply::error("ERR backend returned too few replies"))
    };
    plans
        .into_iter()
        .map(|p| match p {
            Plan::Done(r) => r,
            Plan::Single {
                group,
                at,
                keys_from,
            } => match keys_from {
                None => reply_at(group, at),
                Some((name, owners)) => keys_back(name, reply_at(group, at), &owners),
            },
            Plan::Split { merge, parts } => {
                let parts = parts
                    .into_iter()
                    .map(|(g, at, idx)| (reply_at(g, at), idx))
                    .collect();
                merge_parts(merge, parts)
            }
        })
        .collect()
}

/// The key positions of a request and the namespace owning each key; a
/// keyless command (WAIT, SCRIPT, ...) belongs to the catch-all namespace.
pub fn owners<'r>(
    router: &'r Router,
    args: &[Bytes],
    spec: &CommandSpec,
) -> Result<(Vec<usize>, Vec<&'r Arc<Namespace>>), Reply> {
    let positions = spec.key_positions(args);
    if positions.is_empty() {
        return match router.route(b"") {
            Some(ns) => Ok((positions, vec![ns])),
            None => Err(Reply::error(format!(
                "ERR '{}' has no key and no catch-all namespace (prefix = \"\") is configured",
                spec.name.to_uppercase()
            ))),
        };
    }
    let mut owners = Vec::with_capacity(positions.len());
    for &p in &positions {
        match router.route(&args[p]) {
            Some(ns) => owners.push(ns),
            None => return Err(no_namespace(&args[p])),
        }
    }
    Ok((positions, owners))
}

/// Positions and owners of a request's keys, then of its patterns; and
/// how many of them are keys'.
pub type Reached<'r> = (Vec<usize>, Vec<&'r Arc<Namespace>>, usize);

/// [`owners`], followed by the arguments that reach keys beyond the key
/// positions (SORT's patterns; see [`confine`]): rewritten and checked with
/// the keys, though they are not keys (no default TTL, never written).
/// The count is of the owners [`owners`] found, before the patterns'.
pub fn owners_and_reach<'r>(
    router: &'r Router,
    args: &[Bytes],
    spec: &CommandSpec,
) -> Result<Reached<'r>, Reply> {
    let (mut positions, mut owners) = owners(router, args, spec)?;
    let keys = owners.len();
    if spec.has(REACHES) {
        for (i, ns) in confine::reach(router, spec, args, owners[0])? {
            positions.push(i);
            owners.push(ns);
        }
    }
    Ok((positions, owners, keys))
}

/// The error for a key no namespace owns.
fn no_namespace(key: &[u8]) -> Reply {
    CmdError::NoNamespace(crate::wire::error::lossy(key, 128)).into()
}

/// The error for a command whose keys live on different backends.
pub fn cross_backend(spec: &CommandSpec, owners: &[&Arc<Namespace>]) -> Reply {
    let mut names: Vec<&str> = owners.iter().map(|ns| ns.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let namespaces = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    CmdError::CrossBackend {
        command: spec.name.to_uppercase(),
        namespaces,
    }
    .into()
}

fn plan(
    router: &Router,
    groups: &mut Groups,
    req: Request,
    spec: &'static CommandSpec,
    resp3: bool,
) -> Plan {
    // Most commands name one key: routed without building lists.
    if let Some(p) = spec
        .single_key(req.args.len())
        .filter(|_| !spec.has(REACHES))
    {
        let Some(ns) = router.route(&req.args[p]) else {
            return Plan::Done(no_namespace(&req.args[p]));
        };
        return plan_one(groups, req, spec, resp3, (&[p], &[ns]), 1);
    }
    let (positions, owners, keys) = match owners_and_reach(router, &req.args, spec) {
        Ok(found) => found,
        Err(reply) => return Plan::Done(reply),
    };
    let first = owners[0];
    if owners
        .iter()
        .all(|ns| Arc::ptr_eq(&ns.backend, &first.backend))
    {
        return plan_one(groups, req, spec, resp3, (&positions, &owners), keys);
    }
    first.metrics.command(spec);
    if !first.backend.supports(spec) {
        return Plan::Done(unsupported(spec, first));
    }
    let Some(merge) = merge_kind(spec) else {
        return Plan::Done(cross_backend(spec, &owners));
    };
    if let Some(ns) = owners.iter().find(|ns| !ns.backend.supports(spec)) {
        return Plan::Done(unsupported(spec, ns));
    }
    if let Some(refused) = limits(spec, &req.args, &positions, &owners) {
        return Plan::Done(refused);
    }
    // One sub-command per backend, keys (and MSET values) in original order.
    let mut per_backend: Vec<(&Arc<Namespace>, Vec<usize>)> = Vec::new();
    for (i, ns) in owners.iter().enumerate() {
        match per_backend
            .iter_mut()
            .find(|(n, _)| Arc::ptr_eq(&n.backend, &ns.backend))
        {
            Some((_, idx)) => idx.push(i),
            None => per_backend.push((ns, vec![i])),
        }
    }
    let mut parts = Vec::with_capacity(per_backend.len());
    for (ns, idx) in per_backend {
        let mut args = vec![req.args[0].clone()];
        let mut sub_positions = Vec::with_capacity(idx.len());
        let mut sub_owners = Vec::with_capacity(idx.len());
        for &i in &idx {
            let p = positions[i];
            sub_positions.push(args.len());
            sub_owners.push(owners[i]);
            args.push(req.args[p].clone());
            if let Merge::AllOk = merge {
                args.push(req.args.get(p + 1).cloned().unwrap_or_default());
            }
        }
        let mut sub = rewrite(
            Request::from_args(args),
            spec,
            &sub_positions,
            &sub_owners,
            resp3,
        );
        sub.inspect = true;
        let expires = default_ttl(&sub.args, spec, &sub_positions, &sub_owners);
        let (g, at) = groups.push(ns, sub);
        expires
            .into_iter()
            .for_each(|(ns, e)| _ = groups.push(ns, e));
        parts.push((g, at, idx));
    }
    Plan::Split { merge, parts }
}

/// A request whose keys all live on one backend: one command, as it came
/// or with its keys rewritten. The first `keys` owners of `reached` are
/// its keys' (or, keyless, the catch-all), any others its patterns' (see
/// [`owners_and_reach`]).
fn plan_one(
    groups: &mut Groups,
    req: Request,
    spec: &'static CommandSpec,
    resp3: bool,
    reached: (&[usize], &[&Arc<Namespace>]),
    keys: usize,
) -> Plan {
    let (all_positions, all_owners) = reached;
    let positions = &all_positions[..keys.min(all_positions.len())];
    let owners = &all_owners[..keys.min(all_owners.len())];
    let first = all_owners[0];
    first.metrics.command(spec);
    if !first.backend.supports(spec) {
        return Plan::Done(unsupported(spec, first));
    }
    if let Some(refused) = limits(spec, &req.args, positions, owners) {
        return Plan::Done(refused);
    }
    let cmd = rewrite(req, spec, all_positions, all_owners, resp3);
    let keys_from = cmd
        .inspect
        .then(|| (spec.name, owners.iter().map(|ns| (*ns).clone()).collect()));
    let expires = default_ttl(&cmd.args, spec, positions, owners);
    let (group, at) = groups.push(first, cmd);
    expires
        .into_iter()
        .for_each(|(ns, e)| _ = groups.push(ns, e));
    Plan::Single {
        group,
        at,
        keys_from,
    }
}

/// A namespace's limits, checked before a command reaches its backend:
/// `read_only` refuses writes, and `max_value_size` bounds every argument
/// of a write that is not a key (values, fields, members; a script's text
/// is not a value). With keys in several namespaces the strictest applies.
pub fn limits(
    spec: &CommandSpec,
    args: &[Bytes],
    positions: &[usize],
    owners: &[&Arc<Namespace>],
) -> Option<Reply> {
    if let Some(refused) = foreign(args, positions, owners) {
        return Some(refused);
    }
    if spec.has(SCRIPT) {
        if let Some(why) = owners.iter().find_map(|ns| ns.scripts_refused.as_ref()) {
            return Some(CmdError::msg(why.clone()).into());
        }
    }
    if !spec.has(WRITE) {
        return None;
    }
    if let Some(ns) = owners.iter().find(|ns| ns.read_only) {
        return Some(read_only(ns));
    }
    let (max, ns) = owners
        .iter()
        .filter_map(|ns| ns.max_value_size.map(|m| (m, ns)))
        .min_by_key(|(m, _)| *m)?;
    let script = matches!(spec.name, "eval" | "evalsha" | "fcall");
    let body = if script { 2 } else { 1 };
    args.iter()
        .enumerate()
        .skip(body)
        .find(|(i, a)| a.len() as u64 > max && !positions.contains(i))
        .map(|(_, a)| {
            CmdError::ValueTooLarge {
                size: a.len(),
                namespace: ns.name.clone(),
                max,
            }
            .into()
        })
}

/// A key that lands where another namespace on the same backend keeps its
/// keys (a catch-all kept as is, beside a namespace with a `key_prefix`):
/// refused, read or write, so that no namespace reaches another's keys by
/// their backend names. Only namespaces with such neighbours pay for it.
fn foreign(args: &[Bytes], positions: &[usize], owners: &[&Arc<Namespace>]) -> Option<Reply> {
    for (&p, ns) in positions.iter().zip(owners) {
        if ns.foreign.is_empty() {
            continue;
        }
        let key = ns.to_backend(&args[p]);
        if let Some(owner) = ns.foreign_owner(&key) {
            return Some(
                CmdError::Foreign {
                    key: crate::wire::error::lossy(&args[p], 128),
                    namespace: ns.name.clone(),
                    owner: owner.to_string(),
                }
                .into(),
            );
        }
    }
    None
}

/// The error for a command in database `db` to a backend that has only
/// database 0 (redis-cluster, redis-shards, memcached).
pub fn no_databases(kind: &str, db: u8) -> Reply {
    CmdError::NoDatabases {
        db,
        backend: kind.to_string(),
    }
    .into()
}

/// The error for a write to a `read_only` namespace.
pub fn read_only(ns: &Namespace) -> Reply {
    CmdError::ReadOnly(ns.name.clone()).into()
}

fn unsupported(spec: &CommandSpec, ns: &Namespace) -> Reply {
    CmdError::Unsupported {
        command: spec.name.to_uppercase(),
        namespace: ns.name.clone(),
        backend: ns.backend.kind().to_string(),
    }
    .into()
}

/// Commands whose replies name keys, which must be mapped back to the
/// client's names when the namespace rewrites them.
fn reply_has_keys(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "blpop"
            | "brpop"
            | "bzpopmin"
            | "bzpopmax"
            | "blmpop"
            | "lmpop"
            | "zmpop"
            | "bzmpop"
            | "xread"
            | "xreadgroup"
    )
}

/// Maps the keys in a reply of `name` (see [`reply_has_keys`]) back to the
/// client's names.
pub fn keys_back(name: &str, reply: Reply, owners: &[Arc<Namespace>]) -> Reply {
    let back = |k: Reply| match k {
        Reply::Bulk(k) => Reply::Bulk(
            owners
                .iter()
                .find_map(|ns| ns.from_backend(&k))
                .unwrap_or(k),
        ),
        other => other,
    };
    let first_back = |r: Reply| match r {
        Reply::Array(mut items) if !items.is_empty() => {
            let k = std::mem::replace(&mut items[0], Reply::Nil);
            items[0] = back(k);
            Reply::Array(items)
        }
        other => other,
    };
    match (name, reply) {
        ("xread" | "xreadgroup", Reply::Array(streams)) => {
            Reply::Array(streams.into_iter().map(first_back).collect())
        }
        ("xread" | "xreadgroup", Reply::Map(streams)) => {
            Reply::Map(streams.into_iter().map(|(k, v)| (back(k), v)).collect())
        }
        (_, reply) => first_back(reply),
    }
}

/// The command as the backend must see it: keys rewritten where their
/// namespace asks for it, and otherwise the client's raw bytes kept.
pub fn rewrite(
    req: Request,
    spec: &'static CommandSpec,
    positions: &[usize],
    owners: &[&Arc<Namespace>],
    resp3: bool,
) -> Command {
    let scope = script_scope(spec, owners);
    if !owners.iter().any(|ns| ns.rewrites()) {
        return Command {
            spec,
            args: req.args,
            raw: Some(req.raw),
            resp3,
            inspect: false,
            scope,
            db: 0,
            unblock: None,
        };
    }
    let mut args = req.args;
    for (&p, ns) in positions.iter().zip(owners) {
        if ns.rewrites() {
            args[p] = ns.to_backend(&args[p]);
        }
    }
    Command {
        spec,
        args,
        raw: None,
        resp3,
        inspect: reply_has_keys(spec),
        scope,
        db: 0,
        unblock: None,
    }
}

/// For a script, the namespaces its keys belong to, whose bounds its calls
/// must keep (see `backend::scope`); None for other commands and when
/// every owner may touch its whole backend.
fn script_scope(spec: &CommandSpec, owners: &[&Arc<Namespace>]) -> Option<Arc<Scope>> {
    if !spec.has(SCRIPT) {
        return None;
    }
    let mut parts: Vec<Arc<KeyScope>> = Vec::new();
    for ns in owners {
        let s = ns.script_scope.as_ref()?;
        if !parts.iter().any(|p| Arc::ptr_eq(p, s)) {
            parts.push(s.clone());
        }
    }
    Some(Arc::new(Scope { parts }))
}

/// After a write to a namespace with a default TTL, gives each written key
/// that TTL unless it already has one (`EXPIRE key ttl NX`). The replies of
/// these extra commands are not shown to the client.
pub fn default_ttl<'r>(
    args: &[Bytes],
    spec: &CommandSpec,
    positions: &[usize],
    owners: &[&'r Arc<Namespace>],
) -> Vec<(&'r Arc<Namespace>, Command)> {
    if !spec.has(WRITE) || spec.has(TTL) {
        return Vec::new();
    }
    positions
        .iter()
        .zip(owners)
        .filter_map(|(&p, ns)| {
            let ttl = ns.default_ttl?;
            let expire = Command::internal(
                command::known("expire"),
                vec![
                    bytes("EXPIRE"),
                    args[p].clone(),
                    bytes(&ttl.to_string()),
                    bytes("NX"),
                ],
            );
            Some((*ns, expire))
        })
        .collect()
}
