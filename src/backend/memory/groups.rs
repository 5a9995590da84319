//! Stream consumer groups, as Redis 7.0 answers them: XGROUP, XACK,
//! XPENDING, XCLAIM and XAUTOCLAIM (XREADGROUP reads through `streams`).

use bytes::Bytes;

use super::own;
use super::store::Store;
use super::stream::{Consumer, Group, Id, Pending, Stream};
use super::streams::*;
use super::typed::{modify, read};
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{int_arg, is, now_ms};

pub(super) fn no_group(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::msg(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

pub fn xack(s: &Store, a: &[Bytes]) -> CmdResult {
    // The type, then the key and group, are checked before the IDs, as
    // Redis does: nothing to acknowledge answers 0 whatever the IDs.
    if !read::<Stream, _>(s, &a[1], |st| {
        st.is_some_and(|st| st.groups.contains_key(&a[2]))
    })? {
        return Ok(Reply::Int(0));
    }
    let ids = a[3..]
        .iter()
        .map(|x| strict_id(x))
        .collect::<CmdResult<Vec<Id>>>()?;
    modify::<Stream, _>(
        s,
        &a[1],
        false,
        |st| {
            let Some(g) = st.groups.get_mut(&a[2]) else {
                return Ok(Reply::Int(0));
            };
            let mut acked = 0;
            for id in ids {
                if let Some(p) = g.pending.remove(&id) {
                    if let Some(c) = g.consumers.get_mut(&p.consumer) {
                        c.pending.remove(&id);
                    }
                    acked += 1;
                }
            }
            Ok(Reply::Int(acked))
        },
        Reply::Int(0),
    )
}

pub fn xpending(s: &Store, a: &[Bytes]) -> CmdResult {
    let summary = a.len() == 3;
    if !summary && (a.len() < 6 || a.len() > 9) {
        return Err(CmdError::Syntax);
    }
    let (mut min_idle, mut start, mut end, mut count, mut consumer) =
        (0i64, Id::MIN, Id::MAX, 0usize, None);
    if !summary {
        let mut at = 3;
        if is(&a[3], "IDLE") {
            min_idle = int_arg(&a[4])?;
            if a.len() < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        count = int_arg(&a[at + 2])?.max(0) as usize;
        start = bound(&a[at], 0, true)?;
        end = bound(&a[at + 1], u64::MAX, false)?;
        consumer = a.get(at + 3).cloned();
    }
    let now = now_ms();
    read::<Stream, _>(s, &a[1], |st| {
        let g = st
            .and_then(|st| st.groups.get(&a[2]))
            .ok_or_else(|| no_group(&a[1], &a[2]))?;
        if summary {
            let (Some((first, _)), Some((last, _))) =
                (g.pending.first_key_value(), g.pending.last_key_value())
            else {
                return Ok(Reply::Array(vec![
                    Reply::Int(0),
                    Reply::Nil,
                    Reply::Nil,
                    Reply::NilArray,
                ]));
            };
            let owners = g
                .consumers
                .iter()
                .filter(|(_, c)| !c.pending.is_empty())
                .map(|(name, c)| {
                    Reply::Array(vec![
                        Reply::Bulk(name.clone()),
                        Reply::bulk(Bytes::from(c.pending.len().to_string())),
                    ])
                })
                .collect();
            return Ok(Reply::Array(vec![
                Reply::Int(g.pending.len() as i64),
                id_reply(*first),
                id_reply(*last),
                Reply::Array(owners),
            ]));
        }
        if start > end {
            return Ok(Reply::Array(Vec::new()));
        }
        let ids: Vec<Id> = match &consumer {
            None => g.pending.range(start..=end).map(|(id, _)| *id).collect(),
            Some(c) => match g.consumers.get(c) {
                Some(c) => c.pending.range(start..=end).copied().collect(),
                None => Vec::new(),
            },
        };
        let items = ids
            .into_iter()
            .filter_map(|id| g.pending.get(&id).map(|p| (id, p)))
            .filter(|(_, p)| now.saturating_sub(p.delivered_at) as i64 >= min_idle)
            .take(count)
            .map(|(id, p)| {
                Reply::Array(vec![
                    id_reply(id),
                    Reply::Bulk(p.consumer.clone()),
                    Reply::Int(now.saturating_sub(p.delivered_at) as i64),
                    Reply::Int(p.deliveries as i64),
                ])
            })
            .collect();
        Ok(Reply::Array(items))
    })?
}

/// Gives the pending entry `id` to `consumer` (creating the consumer).
pub(super) fn transfer(g: &mut Group, id: Id, consumer: &Bytes) {
    let Some(p) = g.pending.get_mut(&id) else {
        return;
    };
    if p.consumer != *consumer {
        if let Some(old) = g.consumers.get_mut(&p.consumer) {
            old.pending.remove(&id);
        }
        p.consumer = consumer.clone();
    }
    let c = g.consumers.entry(consumer.clone()).or_default();
    c.pending.insert(id);
    c.active_at = Some(crate::wire::util::now_ms());
}

/// Drops the pending entry `id` (its entry was deleted).
pub(super) fn forget(g: &mut Group, id: Id) {
    if let Some(p) = g.pending.remove(&id) {
        if let Some(c) = g.consumers.get_mut(&p.consumer) {
            c.pending.remove(&id);
        }
    }
}

pub(super) fn claimed(st: &Stream, id: Id, justid: bool) -> Reply {
    match (justid, st.entries.get(&id)) {
        (false, Some(f)) => entry_reply(id, f),
        _ => id_reply(id),
    }
}

/// XCLAIM's and XAUTOCLAIM's first check, that the group exists, and
/// their min-idle-time.
pub(super) fn claim_start(s: &Store, a: &[Bytes], cmd: &str) -> CmdResult<u64> {
    let (key, group) = (&a[1], &a[2]);
    let exists = read::<Stream, _>(s, key, |st| {
        st.is_some_and(|st| st.groups.contains_key(group))
    })?;
    if !exists {
        return Err(no_group(key, group));
    }
    let min_idle = crate::wire::protocol::parse_i64(&a[4])
        .ok_or_else(|| CmdError::msg(format!("ERR Invalid min-idle-time argument for {cmd}")))?;
    Ok(min_idle.max(0) as u64)
}

pub fn xclaim(s: &Store, a: &[Bytes]) -> CmdResult {
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    let min_idle = claim_start(s, a, "XCLAIM")?;
    let mut j = 5;
    let mut ids = Vec::new();
    while j < a.len() {
        match strict_id(&a[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = now_ms();
    let (mut delivery, mut retry, mut force, mut justid, mut lastid) =
        (None::<i64>, None::<i64>, false, false, Id::MIN);
    while j < a.len() {
        let more = a.len() - 1 - j;
        let opt = &a[j];
        let num = |b: &[u8], what: &str| {
            crate::wire::protocol::parse_i64(b).ok_or_else(|| {
                CmdError::msg(format!("ERR Invalid {what} option argument for XCLAIM"))
            })
        };
        if is(opt, "FORCE") {
            force = true;
        } else if is(opt, "JUSTID") {
            justid = true;
        } else if is(opt, "IDLE") && more > 0 {
            j += 1;
            delivery = Some(now as i64 - num(&a[j], "IDLE")?);
        } else if is(opt, "TIME") && more > 0 {
            j += 1;
            delivery = Some(num(&a[j], "TIME")?);
        } else if is(opt, "RETRYCOUNT") && more > 0 {
            j += 1;
            retry = Some(num(&a[j], "RETRYCOUNT")?);
        } else if is(opt, "LASTID") && more > 0 {
            j += 1;
            lastid = strict_id(&a[j])?;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    let delivery = match delivery {
        Some(t) if t >= 0 && t <= now as i64 => t as u64,
        _ => now,
    };
    modify::<Stream, _>(
        s,
        key,
        false,
        |st| {
            let Some(g) = st.groups.get_mut(group) else {
                return Err(no_group(key, group));
            };
            if lastid > g.last_id {
                g.last_id = lastid;
            }
            g.consumers.entry(consumer.clone()).or_default().seen_at = now;
            let mut out = Vec::new();
            for id in ids {
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                if !st.entries.contains_key(&id) {
                    forget(g, id);
                    continue;
                }
                let fresh = !g.pending.contains_key(&id);
                if fresh {
                    if !force {
                        continue;
                    }
                    // As Redis creates it: delivered once, to no one yet.
                    g.pending.insert(
                        id,
                        Pending {
                            consumer: Bytes::new(),
                            delivered_at: now,
                            deliveries: 1,
                        },
                    );
                }
                let Some(p) = g.pending.get_mut(&id) else {
                    continue;
                };
                if !fresh && min_idle > 0 && now.saturating_sub(p.delivered_at) < min_idle {
                    continue;
                }
                p.delivered_at = delivery;
                match retry {
                    Some(n) if n >= 0 => p.deliveries = n as u64,
                    _ if !justid => p.deliveries += 1,
                    _ => {}
                }
                transfer(g, id, consumer);
                out.push(claimed(st, id, justid));
            }
            Ok(Reply::Array(out))
        },
        Reply::Array(Vec::new()),
    )
}

pub fn xautoclaim(s: &Store, a: &[Bytes]) -> CmdResult {
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    // Redis's order: the arguments, then the key's type and group.
    let exists = read::<Stream, _>(s, key, |st| {
        st.is_some_and(|st| st.groups.contains_key(group))
    });
    let min_idle = crate::wire::protocol::parse_i64(&a[4])
        .ok_or_else(|| CmdError::msg("ERR Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0) as u64;
    let start = parse_id(&a[5], 0, false, false)?.0;
    let (mut count, mut justid) = (100usize, false);
    let mut j = 6;
    while j < a.len() {
        if is(&a[j], "COUNT") && j + 1 < a.len() {
            count = crate::wire::protocol::parse_i64(&a[j + 1])
                .filter(|n| (1..=i64::MAX / 10).contains(n))
                .ok_or_else(|| CmdError::msg("ERR COUNT must be > 0"))?
                as usize;
            j += 2;
        } else if is(&a[j], "JUSTID") {
            justid = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if !exists? {
        return Err(no_group(key, group));
    }
    let now = now_ms();
    modify::<Stream, _>(
        s,
        key,
        false,
        |st| {
            let ids: Vec<Id> = {
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                g.consumers.entry(consumer.clone()).or_default().seen_at = now;
                g.pending.range(start..).map(|(id, _)| *id).collect()
            };
            let (mut claimed_ids, mut deleted, mut out) = (0, Vec::new(), Vec::new());
            let mut attempts = count.saturating_mul(10);
            let mut next = Id::MIN;
            let mut it = ids.into_iter().peekable();
            while attempts > 0 && claimed_ids < count {
                let Some(id) = it.next() else {
                    break;
                };
                attempts -= 1;
                let g = st
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| no_group(key, group))?;
                if !st.entries.contains_key(&id) {
                    forget(g, id);
                    deleted.push(id_reply(id));
                    // COUNT bounds the reply, deleted IDs included, as in
                    // Redis.
                    claimed_ids += 1;
                    continue;
                }
                let Some(p) = g.pending.get_mut(&id) else {
                    continue;
                };
                if min_idle > 0 && now.saturating_sub(p.delivered_at) < min_idle {
                    continue;
                }
                p.delivered_at = now;
                if !justid {
                    p.deliveries += 1;
                }
                transfer(g, id, consumer);
                out.push(claimed(st, id, justid));
                claimed_ids += 1;
            }
            if let Some(id) = it.peek() {
                next = *id;
            }
            Ok(Reply::Array(vec![
                id_reply(next),
                Reply::Array(out),
                Reply::Array(deleted),
            ]))
        },
        Reply::Nil,
    )
}

pub(super) fn sub_syntax(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::SubcommandSyntax {
        cmd: cmd.into(),
        sub: crate::wire::error::lossy(sub, 128),
    }
}

pub(super) fn entries_read_arg(a: &[u8]) -> CmdResult<Option<u64>> {
    let n = int_arg(a)?;
    if n < -1 {
        return Err(CmdError::msg(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok((n >= 0).then_some(n as u64))
}

pub(super) const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

pub fn xgroup(s: &Store, a: &[Bytes]) -> CmdResult {
    let sub = crate::wire::util::subcommand(
        a,
        "XGROUP",
        &[
            ("CREATE", 5, false),
            ("SETID", 5, false),
            ("DESTROY", 4, true),
            ("CREATECONSUMER", 5, true),
            ("DELCONSUMER", 5, true),
            ("HELP", 2, true),
        ],
    )?;
    if sub == "HELP" {
        return Ok(Reply::help(XGROUP_HELP));
    }
    let (key, group) = (&a[2], &a[3]);
    let mut mkstream = false;
    let mut entries_read = None;
    if sub == "CREATE" {
        let mut i = 5;
        while i < a.len() {
            if is(&a[i], "MKSTREAM") {
                mkstream = true;
                i += 1;
            } else if is(&a[i], "ENTRIESREAD") && i + 1 < a.len() {
                entries_read = entries_read_arg(&a[i + 1])?;
                i += 2;
            } else {
                return Err(sub_syntax("XGROUP", &a[1]));
            }
        }
    }
    if sub == "SETID" {
        // Its form is checked before the key, as in Redis.
        if a.len() != 5 && a.len() != 7 || a.len() == 7 && !is(&a[5], "ENTRIESREAD") {
            return Err(sub_syntax("XGROUP", &a[1]));
        }
        if a.len() == 7 {
            entries_read = entries_read_arg(&a[6])?;
        }
    }
    let exists = read::<Stream, _>(s, key, |st| st.map(|st| st.groups.contains_key(group)))?;
    if !mkstream {
        let Some(has_group) = exists else {
            return Err(CmdError::msg(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        };
        if !has_group && matches!(sub.as_str(), "SETID" | "CREATECONSUMER" | "DELCONSUMER") {
            return Err(CmdError::msg(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(group),
                String::from_utf8_lossy(key)
            )));
        }
    }
    match sub.as_str() {
        "CREATE" => {
            if a.len() > 8 {
                return Err(sub_syntax("XGROUP", &a[1]));
            }
            let id = if &a[4][..] == b"$" {
                None
            } else {
                Some(strict_id(&a[4])?)
            };
            modify::<Stream, _>(
                s,
                key,
                true,
                |st| {
                    if st.groups.contains_key(group) {
                        return Err(CmdError::msg(
                            "BUSYGROUP Consumer Group name already exists",
                        ));
                    }
                    let g = Group {
                        last_id: id.unwrap_or(st.last_id),
                        entries_read,
                        ..Group::default()
                    };
                    st.groups.insert(own(group), g);
                    Ok(Reply::ok())
                },
                Reply::ok(),
            )
        }
        "SETID" => {
            let id = if &a[4][..] == b"$" {
                None
            } else {
                Some(parse_id(&a[4], 0, false, false)?.0)
            };
            modify::<Stream, _>(
                s,
                key,
                false,
                |st| {
                    let last = st.last_id;
                    if let Some(g) = st.groups.get_mut(group) {
                        g.last_id = id.unwrap_or(last);
                        g.entries_read = entries_read;
                    }
                    Ok(Reply::ok())
                },
                Reply::ok(),
            )
        }
        "DESTROY" => modify::<Stream, _>(
            s,
            key,
            false,
            |st| Ok(Reply::Int(st.groups.remove(group).is_some() as i64)),
            Reply::Int(0),
        ),
        "CREATECONSUMER" => modify::<Stream, _>(
            s,
            key,
            false,
            |st| {
                let Some(g) = st.groups.get_mut(group) else {
                    return Ok(Reply::Int(0));
                };
                if g.consumers.contains_key(&a[4]) {
                    return Ok(Reply::Int(0));
                }
                g.consumers.insert(
                    own(&a[4]),
                    Consumer {
                        seen_at: now_ms(),
                        ..Consumer::default()
                    },
                );
                Ok(Reply::Int(1))
            },
            Reply::Int(0),
        ),
        _ => modify::<Stream, _>(
            s,
            key,
            false,
            |st| {
                let Some(g) = st.groups.get_mut(group) else {
                    return Ok(Reply::Int(0));
                };
                let Some(c) = g.consumers.remove(&a[4]) else {
                    return Ok(Reply::Int(0));
                };
                for id in &c.pending {
                    g.pending.remove(id);
                }
                Ok(Reply::Int(c.pending.len() as i64))
            },
            Reply::Int(0),
        ),
    }
}
