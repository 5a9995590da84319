//! XINFO STREAM (and FULL), GROUPS and CONSUMERS, laid out as Redis 7.0
//! lays them out.

use bytes::Bytes;

use super::groups::sub_syntax;
use super::store::Store;
use super::stream::{Id, Stream};
use super::streams::*;
use super::typed::read;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is, now_ms};

pub(super) const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

pub(super) fn field(name: &'static str, v: Reply) -> (Reply, Reply) {
    (Reply::bulk(Bytes::from_static(name.as_bytes())), v)
}

pub(super) fn name(b: &[u8]) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(b))
}

pub(super) fn opt_int(n: Option<u64>) -> Reply {
    n.map_or(Reply::Nil, |n| Reply::Int(n as i64))
}

/// XINFO STREAM FULL: the stream's entries, and each group's pending
/// entries and consumers, `count` of each at most.
pub(super) fn stream_full(st: &Stream, count: usize) -> Reply {
    let groups = st
        .groups
        .iter()
        .map(|(n, g)| {
            let pending = g
                .pending
                .iter()
                .take(count)
                .map(|(id, p)| {
                    Reply::Array(vec![
                        id_reply(*id),
                        Reply::Bulk(p.consumer.clone()),
                        Reply::Int(p.delivered_at as i64),
                        Reply::Int(p.deliveries as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cn, c)| {
                    let own = c
                        .pending
                        .iter()
                        .take(count)
                        .filter_map(|id| g.pending.get(id).map(|p| (id, p)))
                        .map(|(id, p)| {
                            Reply::Array(vec![
                                id_reply(*id),
                                Reply::Int(p.delivered_at as i64),
                                Reply::Int(p.deliveries as i64),
                            ])
                        })
                        .collect();
                    Reply::Map(vec![
                        field("name", name(cn)),
                        field("seen-time", Reply::Int(c.seen_at as i64)),
                        field(
                            "active-time",
                            c.active_at.map_or(Reply::Int(-1), |t| Reply::Int(t as i64)),
                        ),
                        field("pel-count", Reply::Int(c.pending.len() as i64)),
                        field("pending", Reply::Array(own)),
                    ])
                })
                .collect();
            Reply::Map(vec![
                field("name", name(n)),
                field("last-delivered-id", id_reply(g.last_id)),
                field("entries-read", opt_int(g.entries_read)),
                field("lag", st.lag(g).map_or(Reply::Nil, Reply::Int)),
                field("pel-count", Reply::Int(g.pending.len() as i64)),
                field("pending", Reply::Array(pending)),
                field("consumers", Reply::Array(consumers)),
            ])
        })
        .collect();
    let mut info = stream_head(st);
    info.extend([
        field(
            "entries",
            Reply::Array(
                st.entries
                    .iter()
                    .take(count)
                    .map(|(id, f)| entry_reply(*id, f))
                    .collect(),
            ),
        ),
        field("groups", Reply::Array(groups)),
    ]);
    Reply::Map(info)
}

/// The fields XINFO STREAM starts with, FULL or not.
pub(super) fn stream_head(st: &Stream) -> Vec<(Reply, Reply)> {
    // Redis keeps entries in radix-tree nodes of up to 100.
    let nodes = st.len().div_ceil(100) as i64;
    vec![
        field("length", Reply::Int(st.len() as i64)),
        field("radix-tree-keys", Reply::Int(nodes)),
        field("radix-tree-nodes", Reply::Int(nodes + 1)),
        field("last-generated-id", id_reply(st.last_id)),
        field("max-deleted-entry-id", id_reply(st.max_deleted)),
        field("entries-added", Reply::Int(st.entries_added as i64)),
        field("recorded-first-entry-id", id_reply(st.first_id())),
    ]
}

pub fn xinfo(s: &Store, a: &[Bytes]) -> CmdResult {
    let sub = crate::wire::util::subcommand(
        a,
        "XINFO",
        &[
            ("STREAM", 3, false),
            ("GROUPS", 3, true),
            ("CONSUMERS", 4, true),
            ("HELP", 2, true),
        ],
    )?;
    if sub == "HELP" {
        return Ok(Reply::help(XINFO_HELP));
    }
    let now = now_ms();
    read::<Stream, _>(s, &a[2], |st| {
        let st = st.ok_or_else(|| CmdError::msg("ERR no such key"))?;
        match sub.as_str() {
            "CONSUMERS" => {
                let g = st.groups.get(&a[3]).ok_or_else(|| {
                    CmdError::msg(format!(
                        "NOGROUP No such consumer group '{}' for key name '{}'",
                        String::from_utf8_lossy(&a[3]),
                        String::from_utf8_lossy(&a[2])
                    ))
                })?;
                Ok(Reply::Array(
                    g.consumers
                        .iter()
                        .map(|(n, c)| {
                            Reply::Map(vec![
                                field("name", name(n)),
                                field("pending", Reply::Int(c.pending.len() as i64)),
                                field("idle", Reply::Int(now.saturating_sub(c.seen_at) as i64)),
                                // Redis 7.2's: since it last got something.
                                field(
                                    "inactive",
                                    c.active_at.map_or(Reply::Int(-1), |t| {
                                        Reply::Int(now.saturating_sub(t) as i64)
                                    }),
                                ),
                            ])
                        })
                        .collect(),
                ))
            }
            "GROUPS" => Ok(Reply::Array(
                st.groups
                    .iter()
                    .map(|(n, g)| {
                        Reply::Map(vec![
                            field("name", name(n)),
                            field("consumers", Reply::Int(g.consumers.len() as i64)),
                            field("pending", Reply::Int(g.pending.len() as i64)),
                            field("last-delivered-id", id_reply(g.last_id)),
                            field("entries-read", opt_int(g.entries_read)),
                            field("lag", st.lag(g).map_or(Reply::Nil, Reply::Int)),
                        ])
                    })
                    .collect(),
            )),
            _ => {
                // [FULL [COUNT n]]: n entries and pending entries at most
                // (10 by default, 0 for all).
                let opts = &a[3..];
                let full = match opts {
                    [] => None,
                    [f] if is(f, "FULL") => Some(10),
                    [f, c, n] if is(f, "FULL") && is(c, "COUNT") => Some(int_arg(n)?.max(0)),
                    _ => return Err(sub_syntax("XINFO", &a[1])),
                };
                if let Some(count) = full {
                    let count = if count == 0 {
                        usize::MAX
                    } else {
                        count as usize
                    };
                    return Ok(stream_full(st, count));
                }
                let edge = |e: Option<(&Id, &Vec<Bytes>)>| {
                    e.map_or(Reply::Nil, |(id, f)| entry_reply(*id, f))
                };
                let mut info = stream_head(st);
                info.extend([
                    field("groups", Reply::Int(st.groups.len() as i64)),
                    field("first-entry", edge(st.entries.first_key_value())),
                    field("last-entry", edge(st.entries.last_key_value())),
                ]);
                Ok(Reply::Map(info))
            }
        }
    })?
}
