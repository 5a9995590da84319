//! How the replies of a command split across backends (or cluster nodes)
//! come back together, shared by dispatch and the redis-cluster backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::wire::command::CommandSpec;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;

/// A boxed future, as backends return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the parts of a split command combine.
#[derive(Clone, Copy)]
pub enum Merge {
    /// MGET: one array in the original key order.
    Values,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum.
    Sum,
    /// MSET: OK when every part is OK.
    AllOk,
}

pub fn merge_kind(spec: &CommandSpec) -> Option<Merge> {
    match spec.name {
        "mget" => Some(Merge::Values),
        "del" | "unlink" | "exists" | "touch" => Some(Merge::Sum),
        "mset" => Some(Merge::AllOk),
        _ => None,
    }
}

pub fn merge_parts(merge: Merge, parts: Vec<(Reply, Vec<usize>)>) -> Reply {
    if let Some((err, _)) = parts.iter().find(|(r, _)| r.is_error()) {
        return err.clone();
    }
    match merge {
        Merge::Sum => Reply::Int(
            parts
                .iter()
                .map(|(r, _)| if let Reply::Int(n) = r { *n } else { 0 })
                .sum(),
        ),
        Merge::AllOk => Reply::ok(),
        Merge::Values => {
            let total = parts.iter().map(|(_, idx)| idx.len()).sum();
            let mut out = vec![Reply::Nil; total];
            for (r, idx) in parts {
                if let Reply::Array(values) = r {
                    for (v, i) in values.into_iter().zip(idx) {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = v;
                        }
                    }
                }
            }
            Reply::Array(out)
        }
    }
}

/// SCRIPT EXISTS answered by several servers: 1 for a script only where
/// every one of them has it.
pub fn exists_everywhere(replies: impl IntoIterator<Item = CmdResult>) -> CmdResult {
    let mut all: Option<Vec<Reply>> = None;
    for r in replies {
        let Reply::Array(flags) = r? else {
            return Err(CmdError::msg(
                "ERR unexpected SCRIPT EXISTS reply from backend",
            ));
        };
        all = Some(match all {
            None => flags,
            Some(acc) => acc
                .into_iter()
                .zip(flags)
                .map(|(a, b)| match (a, b) {
                    (Reply::Int(1), Reply::Int(1)) => Reply::Int(1),
                    _ => Reply::Int(0),
                })
                .collect(),
        });
    }
    Ok(Reply::Array(all.unwrap_or_default()))
}

/// Polls futures concurrently and returns their outputs in order. Most
/// segments touch one backend, so this stays tiny rather than pulling in a
/// futures crate.
pub async fn join_all<'a, T>(futures: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    struct JoinAll<'a, T> {
        futures: Vec<Option<BoxFuture<'a, T>>>,
        outputs: Vec<Option<T>>,
    }
    // Nothing in JoinAll is pinned structurally: the futures are boxed.
    impl<T> Unpin for JoinAll<'_, T> {}
    impl<T> Future for JoinAll<'_, T> {
        type Output = Vec<T>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
            let this = self.get_mut();
            let mut pending = false;
            for (slot, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(v) => {
                            *out = Some(v);
                            *slot = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
            }
        }
    }
    let mut futures = futures;
    if futures.len() == 1 {
        if let Some(f) = futures.pop() {
            return vec![f.await];
        }
    }
    let n = futures.len();
    JoinAll {
        futures: futures.into_iter().map(Some).collect(),
        outputs: (0..n).map(|_| None).collect(),
    }
    .await
}
