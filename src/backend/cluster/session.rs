//! A client's pinned connection (WATCH ... EXEC) to one master.

use std::sync::Arc;

use super::map::Inner;
use super::route::unserved;
use super::topology::{Topology, slot_of};
use crate::backend::redis::call_pinned;
use crate::backend::upstream::Conn;
use crate::backend::upstream::unavailable;
use crate::backend::{BoxFuture, Command, Session};
use crate::wire::reply::Reply;

/// A pinned connection (WATCH ... EXEC), to the node of the first key the
/// client names. Once it fails it stays failed: the server has forgotten
/// what was watched.
pub(super) struct ClusterSession {
    pub(super) inner: Arc<Inner>,
    pub(super) conn: Option<Conn>,
    /// The slot (a server's index on a ring) whose node `conn` is to.
    pub(super) pinned: u16,
    pub(super) lost: bool,
}

impl ClusterSession {
    /// On a ring, the commands of `batch` whose keys are not all on the
    /// pinned server: the server would run them on the wrong keys. A
    /// cluster node answers MOVED or CROSSSLOT for them itself.
    pub(super) fn elsewhere(&self, t: &Topology, batch: &[Command]) -> Vec<bool> {
        if self.inner.fixed.is_none() {
            return vec![false; batch.len()];
        }
        batch
            .iter()
            .map(|c| {
                c.spec
                    .key_positions(&c.args)
                    .iter()
                    .any(|&p| t.slot(&c.args[p]) != self.pinned)
            })
            .collect()
    }
}

impl Session for ClusterSession {
    fn execute(&mut self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
        Box::pin(async move {
            let name = self.inner.name.clone();
            if self.lost {
                return vec![unavailable(&name, "pinned connection lost"); batch.len()];
            }
            if self.conn.is_none() {
                let t = match self.inner.topology().await {
                    Ok(t) => t,
                    Err(reason) => return vec![unavailable(&name, &reason); batch.len()],
                };
                let slot = batch.iter().find_map(|c| slot_of(&t, c)).unwrap_or(0);
                let Some(node) = t.node_of(slot) else {
                    return vec![unserved(slot); batch.len()];
                };
                self.pinned = slot;
                match node.endpoint.connect(false).await {
                    Ok(c) => self.conn = Some(c),
                    Err(reason) => {
                        self.lost = true;
                        return vec![unavailable(&name, &reason); batch.len()];
                    }
                }
            }
            let Some(t) = self.inner.current() else {
                return vec![unavailable(&name, "no slot map"); batch.len()];
            };
            let elsewhere = self.elsewhere(&t, &batch);
            let refused = elsewhere.contains(&true).then(|| t.cross(&name));
            if let Some(r) = &refused {
                // A transaction runs whole on one server, or not at all.
                if batch.iter().any(|c| c.spec.name == "multi") {
                    return vec![r.clone(); batch.len()];
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                return vec![unavailable(&name, "pinned connection lost"); batch.len()];
            };
            let sent: Vec<Command> = batch
                .into_iter()
                .zip(&elsewhere)
                .filter(|(_, e)| !**e)
                .map(|(c, _)| c)
                .collect();
            if sent.is_empty() {
                return elsewhere.iter().map(|_| t_refused(&refused)).collect();
            }
            match call_pinned(conn, &sent, self.inner.command_timeout).await {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    elsewhere
                        .iter()
                        .map(|&e| match (&refused, e) {
                            (Some(_), true) => t_refused(&refused),
                            _ => replies.next().unwrap_or_else(|| {
                                Reply::error("ERR backend returned too few replies")
                            }),
                        })
                        .collect()
                }
                Err(reason) => {
                    self.conn = None;
                    self.lost = true;
                    vec![unavailable(&name, &reason); elsewhere.len()]
                }
            }
        })
    }
}

/// The refusal given to a session's command on another server.
pub(super) fn t_refused(refused: &Option<Reply>) -> Reply {
    refused
        .clone()
        .unwrap_or_else(|| Reply::error("ERR backend returned too few replies"))
}
