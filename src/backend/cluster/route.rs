//! Routing a batch over a cluster's map: each command to its slot's
//! master (or a replica, for reads), split when its keys span slots and
//! merged back, redirects followed, blocking commands on connections of
//! their own, whole-keyspace commands sent to every master.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;

use super::map::Inner;
use super::topology::{Node, Redirect, Topology, name_unreachable, slot_of};
use super::{ClusterBackend, IDLE_DEDICATED, NODE_SHIFT, REDIRECTS};
use crate::backend::redis::{append, dedicated, encode, kills_a_script};
use crate::backend::upstream::unavailable;
use crate::backend::{BoxFuture, Command};
use crate::wire::command::{BLOCKING, CommandSpec, READ, WRITE};
use crate::wire::merge::{Merge, join_all, merge_kind, merge_parts};
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::scan::{scan_parts, scan_reply};
use crate::wire::util::{bytes, is};

impl Inner {
    /// Resends a redirected command where the cluster says, following up
    /// to [`REDIRECTS`] redirects.
    pub(super) async fn follow(self: &Arc<Self>, cmd: &Command, mut to: Redirect) -> Reply {
        for _ in 0..REDIRECTS {
            metrics().redirected(&self.name, to.ask);
            let node = self.node(&to.host, to.port);
            let reply = if to.ask {
                // ASKING holds for the next command on the connection; both
                // travel in one job, so nothing comes between them.
                let mut out = BytesMut::from(&b"*1\r\n$6\r\nASKING\r\n"[..]);
                append(&mut out, cmd);
                node.pipe(cmd.resp3)
                    .call(out.freeze(), vec![true, cmd.inspect])
                    .await
                    .pop()
            } else {
                self.moved(to.slot, &node);
                self.refresh_soon();
                node.pipe(cmd.resp3)
                    .call(encode(cmd), vec![cmd.inspect])
                    .await
                    .pop()
            };
            let reply = reply.unwrap_or_else(|| unavailable(&self.name, "no reply"));
            match self.redirect(&reply) {
                Some(next) => to = next,
                None => return reply,
            }
        }
        Reply::error(format!(
            "ERR backend '{}': slot {} was redirected more than {REDIRECTS} times",
            self.name, to.slot
        ))
    }

    /// Runs each node's commands as one job on its pipe, the nodes
    /// concurrently, and follows redirects unless the commands are a
    /// transaction: a command redirected while queued must not run outside
    /// it, so its MOVED stands (EXEC answers EXECABORT) and only the map
    /// learns from it.
    pub(super) async fn run_groups(
        self: &Arc<Self>,
        groups: Vec<(Arc<Node>, Vec<Command>)>,
        transaction: bool,
    ) -> Vec<Vec<Reply>> {
        let futures = groups
            .into_iter()
            .map(|(node, cmds)| -> BoxFuture<'_, Vec<Reply>> {
                Box::pin(async move {
                    let resp3 = cmds.first().is_some_and(|c| c.resp3);
                    let mut out = BytesMut::new();
                    let mut inspect = Vec::with_capacity(cmds.len());
                    for c in &cmds {
                        append(&mut out, c);
                        inspect.push(c.inspect);
                    }
                    let mut replies = node.pipe(resp3).call(out.freeze(), inspect).await;
                    let mut lost = false;
                    for (r, c) in replies.iter_mut().zip(&cmds) {
                        if let Some(to) = self.redirect(r) {
                            if !transaction {
                                *r = self.follow(c, to).await;
                            } else if !to.ask {
                                self.moved(to.slot, &self.node(&to.host, to.port));
                                self.refresh_soon();
                            }
                        } else if let Some(master) = self.master_of_read(&node, c, r) {
                            // A replica that cannot be reached: its master
                            // answers the read.
                            lost = true;
                            *r = master
                                .pipe(c.resp3)
                                .call(encode(c), vec![c.inspect])
                                .await
                                .pop()
                                .unwrap_or_else(|| unavailable(&self.name, "no reply"));
                            name_unreachable(&self.name, r, &master.addr);
                        } else {
                            lost |= name_unreachable(&self.name, r, &node.addr);
                        }
                    }
                    if lost {
                        // A replica may have taken over: the next batch
                        // goes where the cluster now says.
                        self.refresh_soon();
                    }
                    self.observe(&node, lost);
                    replies
                })
            })
            .collect();
        join_all(futures).await
    }

    /// A blocking command, on a connection of its own to its node.
    pub(super) async fn blocking(self: &Arc<Self>, node: &Arc<Node>, cmd: &Command) -> Reply {
        match dedicated(&node.endpoint, &node.idle, IDLE_DEDICATED, cmd).await {
            Ok(r) => r,
            Err(reason) => {
                self.refresh_soon();
                unavailable(&self.name, &format!("{reason} (node {})", node.addr))
            }
        }
    }

    /// Sends one command to every master (every server not ejected) and
    /// returns their replies, in the map's node order.
    pub(super) async fn everywhere(self: &Arc<Self>, t: &Topology, cmd: &Command) -> Vec<Reply> {
        let groups = t
            .serving()
            .map(|(_, n)| (n.clone(), vec![cmd.clone()]))
            .collect();
        self.run_groups(groups, false)
            .await
            .into_iter()
            .map(|mut r| {
                r.pop()
                    .unwrap_or_else(|| unavailable(&self.name, "no reply"))
            })
            .collect()
    }

    /// Whole-keyspace commands, over every master.
    pub(super) async fn keyspace(self: &Arc<Self>, t: &Topology, cmd: &Command) -> Reply {
        let mut cmd = cmd.clone();
        cmd.inspect = true;
        cmd.raw = None;
        let name = cmd.spec.name;
        if name == "scan" {
            return self.scan(t, cmd).await;
        }
        if name == "randomkey" {
            // From a master picked at random, or the next that has keys.
            let nodes: Vec<&Arc<Node>> = t.serving().map(|(_, n)| n).collect();
            let n = nodes.len();
            if n == 0 {
                return unavailable(&self.name, "every server is ejected");
            }
            let start = crate::wire::util::random_below(n as u64) as usize;
            for i in 0..n {
                let node = nodes[(start + i) % n];
                let r = self
                    .run_groups(vec![(node.clone(), vec![cmd.clone()])], false)
                    .await
                    .pop()
                    .and_then(|mut r| r.pop())
                    .unwrap_or_else(|| unavailable(&self.name, "no reply"));
                if !matches!(r, Reply::Nil) {
                    return r;
                }
            }
            return Reply::Nil;
        }
        let kill = kills_a_script(&cmd);
        let replies = if kill {
            // Past the pipes, which wait behind the script (see
            // `kills_a_script`).
            let mut replies = Vec::new();
            for (_, node) in t.serving() {
                replies.push(self.blocking(node, &cmd).await);
            }
            replies
        } else {
            self.everywhere(t, &cmd).await
        };
        if kill && replies.iter().any(|r| !r.is_error()) {
            return Reply::ok();
        }
        if let Some(e) = replies.iter().find(|r| r.is_error()) {
            return e.clone();
        }
        match name {
            "dbsize" => Reply::Int(
                replies
                    .iter()
                    .map(|r| if let Reply::Int(n) = r { *n } else { 0 })
                    .sum(),
            ),
            "keys" => Reply::Array(
                replies
                    .into_iter()
                    .flat_map(|r| match r {
                        Reply::Array(items) => items,
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
            "script" if cmd.args.get(1).is_some_and(|s| is(s, "EXISTS")) => {
                crate::wire::merge::exists_everywhere(replies.into_iter().map(Ok))
                    .unwrap_or_else(Reply::from)
            }
            // FLUSHDB, FLUSHALL, SCRIPT LOAD (the same digest everywhere),
            // SCRIPT FLUSH, FUNCTION LOAD/LIST/DUMP (libraries loaded
            // everywhere alike): every master answered alike.
            _ => replies
                .into_iter()
                .next()
                .unwrap_or_else(|| unavailable(&self.name, "no masters")),
        }
    }

    /// SCAN one master at a time; the cursor carries the master's index.
    pub(super) async fn scan(self: &Arc<Self>, t: &Topology, mut cmd: Command) -> Reply {
        let cursor = cmd
            .args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        let asked = (cursor >> NODE_SHIFT) as usize;
        // An ejected server is skipped, from its start if the cursor was in it.
        let Some((index, node)) = t.serving().find(|(i, _)| *i >= asked) else {
            return scan_reply(0, Vec::new());
        };
        let within = if index == asked {
            cursor & ((1 << NODE_SHIFT) - 1)
        } else {
            0
        };
        cmd.args[1] = bytes(&within.to_string());
        let reply = self
            .run_groups(vec![(node.clone(), vec![cmd])], false)
            .await
            .pop()
            .and_then(|mut r| r.pop())
            .unwrap_or_else(|| unavailable(&self.name, "no reply"));
        if reply.is_error() {
            return reply;
        }
        let Some((inner, Reply::Array(keys))) = scan_parts(reply) else {
            return Reply::error("ERR unexpected SCAN reply from a cluster node");
        };
        if inner >> NODE_SHIFT != 0 {
            return Reply::error(format!(
                "ERR backend '{}': node {} returned a SCAN cursor keyway cannot encode",
                self.name, node.addr
            ));
        }
        let next = if inner != 0 {
            ((index as u64) << NODE_SHIFT) | inner
        } else {
            match t.serving().find(|(i, _)| *i > index) {
                Some((i, _)) => (i as u64) << NODE_SHIFT,
                None => 0,
            }
        };
        scan_reply(next, keys)
    }
}

/// Where one command's reply comes from once its segment has run.
pub(super) enum Plan {
    Done(Reply),
    /// Reply `at` of node group `group`.
    Single(usize, usize),
    /// The parts of a command split across nodes, each with the indexes of
    /// the keys it carries.
    Split(Merge, Vec<(usize, usize, Vec<usize>)>),
}

/// Commands for each node in the segment being built.
#[derive(Default)]
pub(super) struct Groups(Vec<(Arc<Node>, Vec<Command>)>);

impl Groups {
    pub(super) fn push(&mut self, node: &Arc<Node>, cmd: Command) -> (usize, usize) {
        let g = match self.0.iter().position(|(n, _)| Arc::ptr_eq(n, node)) {
            Some(g) => g,
            None => {
                self.0.push((node.clone(), Vec::new()));
                self.0.len() - 1
            }
        };
        self.0[g].1.push(cmd);
        (g, self.0[g].1.len() - 1)
    }
}

pub(super) fn unserved(slot: u16) -> Reply {
    Reply::error(format!("CLUSTERDOWN Hash slot {slot} not served"))
}

/// Plans one command into the segment's groups; `name` is the backend's,
/// and `replicas` (with `read_from_replicas`) turns the replica reads go to.
pub(super) fn plan(
    t: &Topology,
    name: &str,
    replicas: Option<&AtomicUsize>,
    groups: &mut Groups,
    cmd: Command,
) -> Plan {
    let reads = replicas.filter(|_| cmd.spec.has(READ) && !cmd.spec.has(WRITE));
    let node_of = |slot: u16| match reads {
        Some(turn) => t.reader_of(slot, turn.fetch_add(1, Ordering::Relaxed)),
        None => t.node_of(slot),
    };
    // PUBLISH reaches every node's subscribers, but counts only its own:
    // keyway's subscribers are all on the first master (see `subscriber`),
    // so it is routed as keyless, there, to count them.
    let publish = cmd.spec.name == "publish";
    // Most commands name one key: routed without building lists.
    if let Some(p) = cmd.spec.single_key(cmd.args.len()).filter(|_| !publish) {
        let slot = t.slot(&cmd.args[p]);
        let Some(node) = node_of(slot) else {
            return Plan::Done(unserved(slot));
        };
        let (g, at) = groups.push(node, cmd);
        return Plan::Single(g, at);
    }
    let positions = if publish {
        Vec::new()
    } else {
        cmd.spec.key_positions(&cmd.args)
    };
    if positions.is_empty() {
        // Keyless (PING, INFO, EVAL with no keys, ...): any master will do.
        return match t.nodes.first() {
            Some(n) => {
                let (g, at) = groups.push(n, cmd);
                Plan::Single(g, at)
            }
            None => Plan::Done(unserved(0)),
        };
    }
    let slots: Vec<u16> = positions.iter().map(|&p| t.slot(&cmd.args[p])).collect();
    let Some(node) = node_of(slots[0]) else {
        return Plan::Done(unserved(slots[0]));
    };
    // A cluster refuses keys of different slots in one command (CROSSSLOT)
    // even on one node, so a splittable command is split per slot.
    let one_slot = slots.iter().all(|&s| s == slots[0]);
    match merge_kind(cmd.spec) {
        Some(merge) if !one_slot => {
            let mut per_slot: Vec<(u16, Vec<usize>)> = Vec::new();
            for (i, &s) in slots.iter().enumerate() {
                match per_slot.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, idx)) => idx.push(i),
                    None => per_slot.push((s, vec![i])),
                }
            }
            let mut parts = Vec::with_capacity(per_slot.len());
            for (slot, idx) in per_slot {
                let Some(node) = node_of(slot) else {
                    return Plan::Done(unserved(slot));
                };
                let mut args = vec![cmd.args[0].clone()];
                for &i in &idx {
                    let p = positions[i];
                    args.push(cmd.args[p].clone());
                    if let Merge::AllOk = merge {
                        args.push(cmd.args.get(p + 1).cloned().unwrap_or_default());
                    }
                }
                let sub = Command {
                    spec: cmd.spec,
                    args,
                    raw: None,
                    resp3: cmd.resp3,
                    inspect: true,
                    scope: None,
                    db: cmd.db,
                    unblock: None,
                };
                let (g, at) = groups.push(node, sub);
                parts.push((g, at, idx));
            }
            Plan::Split(merge, parts)
        }
        // Servers of a ring cannot run it together: keyway refuses it.
        _ if !one_slot && t.ring.is_some() => Plan::Done(t.cross(name)),
        _ => {
            let (g, at) = groups.push(node, cmd);
            Plan::Single(g, at)
        }
    }
}

/// Commands that are not sent to one node as they are.
pub(super) fn whole_keyspace(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "dbsize" | "keys" | "scan" | "randomkey" | "flushdb" | "flushall" | "script" | "function"
    )
}

impl ClusterBackend {
    pub(super) async fn run(&self, batch: Vec<Command>) -> Vec<Reply> {
        let inner = &self.inner;
        let n = batch.len();
        let t = match inner.topology().await {
            Ok(t) => t,
            Err(reason) => return vec![unavailable(&inner.name, &reason); n],
        };
        // A transaction stays whole, on the node of its first key: keys of
        // other nodes get MOVED or CROSSSLOT there, as a cluster answers.
        if batch.iter().any(|c| c.spec.name == "multi") {
            if t.spread(&batch) {
                return vec![t.cross(&inner.name); n];
            }
            let slot = batch.iter().find_map(|c| slot_of(&t, c)).unwrap_or(0);
            let Some(node) = t.node_of(slot) else {
                return vec![unserved(slot); n];
            };
            let mut replies = inner
                .run_groups(vec![(node.clone(), batch)], true)
                .await
                .pop()
                .unwrap_or_default();
            replies.resize(n, Reply::error("ERR backend returned too few replies"));
            return replies;
        }
        let mut replies = Vec::with_capacity(n);
        let mut groups = Groups::default();
        let mut plans: Vec<Plan> = Vec::new();
        for cmd in batch {
            let alone = whole_keyspace(cmd.spec) || cmd.spec.has(BLOCKING);
            if !alone {
                let replicas = inner.read_replicas.then_some(&inner.next_replica);
                plans.push(plan(&t, &inner.name, replicas, &mut groups, cmd));
                continue;
            }
            // Earlier commands run first: order within a batch holds.
            finish(inner, &mut groups, &mut plans, &mut replies).await;
            let reply = if whole_keyspace(cmd.spec) {
                inner.keyspace(&t, &cmd).await
            } else if t.spread(std::slice::from_ref(&cmd)) {
                t.cross(&inner.name)
            } else {
                let slot = slot_of(&t, &cmd).unwrap_or(0);
                match t.node_of(slot) {
                    Some(node) => {
                        let r = inner.blocking(node, &cmd).await;
                        match inner.redirect(&r) {
                            Some(to) if !to.ask => {
                                let node = inner.node(&to.host, to.port);
                                inner.moved(to.slot, &node);
                                inner.blocking(&node, &cmd).await
                            }
                            _ => r,
                        }
                    }
                    None => unserved(slot),
                }
            };
            replies.push(reply);
        }
        finish(inner, &mut groups, &mut plans, &mut replies).await;
        replies
    }
}

/// Runs the segment planned so far and appends its replies in order.
pub(super) async fn finish(
    inner: &Arc<Inner>,
    groups: &mut Groups,
    plans: &mut Vec<Plan>,
    replies: &mut Vec<Reply>,
) {
    if plans.is_empty() {
        return;
    }
    let mut results = inner.run_groups(std::mem::take(&mut groups.0), false).await;
    let mut take = |g: usize, at: usize| -> Reply {
        results
            .get_mut(g)
            .and_then(|r| r.get_mut(at))
            .map(|r| std::mem::replace(r, Reply::Nil))
            .unwrap_or_else(|| Reply::error("ERR backend returned too few replies"))
    };
    for p in plans.drain(..) {
        replies.push(match p {
            Plan::Done(r) => r,
            Plan::Single(g, at) => take(g, at),
            Plan::Split(merge, parts) => merge_parts(
                merge,
                parts
                    .into_iter()
                    .map(|(g, at, idx)| (take(g, at), idx))
                    .collect(),
            ),
        });
    }
}
