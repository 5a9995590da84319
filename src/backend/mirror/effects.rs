//! What the mirror replays for a write the primary applied: the write
//! itself, or its effect when its outcome was chosen as it ran (see the
//! parent module's doc), and how a reply says whether it was applied.

use bytes::Bytes;

use super::super::Command;
use crate::wire::command;
use crate::wire::reply::Reply;
use crate::wire::util::is;

/// Whether the command is replayed from its reply (see the module's doc).
pub(super) fn needs_reply(c: &Command) -> bool {
    match c.spec.name {
        "spop" | "xreadgroup" => true,
        n if popped(n).is_some() => true,
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
pub(super) fn as_replayed(c: Command, reply: Option<&Reply>, now: u64) -> Vec<Command> {
    if c.spec.name == "xreadgroup" {
        return match reply {
            Some(r) => deliveries(&c.args, r, now),
            // Replaying the read itself would deliver other entries.
            None => Vec::new(),
        };
    }
    if let Some(kind) = popped(c.spec.name) {
        // Replaying a blocking pop itself could block the replaying task,
        // and which key it served is in its reply alone: replayed as the
        // non-blocking pop of what it took, as Redis replicates it.
        return match reply {
            Some(r) => pop_effect(&c.args, kind, r).into_iter().collect(),
            None => Vec::new(),
        };
    }
    effect(c, reply, now).into_iter().collect()
}

/// How a blocking pop's reply says what it took.
#[derive(Clone, Copy)]
enum Pop {
    /// BLPOP, BRPOP: [key, element].
    One(&'static str),
    /// BLMOVE, BRPOPLPUSH: the element moved.
    Move,
    /// BLMPOP: [key, [elements]].
    Many,
    /// BZPOPMIN, BZPOPMAX: [key, member, score].
    Member,
    /// BZMPOP: [key, [[member, score]...]].
    Members,
}

fn popped(name: &str) -> Option<Pop> {
    Some(match name {
        "blpop" => Pop::One("LPOP"),
        "brpop" => Pop::One("RPOP"),
        "blmove" | "brpoplpush" => Pop::Move,
        "blmpop" => Pop::Many,
        "bzpopmin" | "bzpopmax" => Pop::Member,
        "bzmpop" => Pop::Members,
        _ => return None,
    })
}

/// The non-blocking command that does what a blocking pop did.
fn pop_effect(a: &[Bytes], kind: Pop, reply: &Reply) -> Option<Command> {
    let bulk = |r: &Reply| match r {
        Reply::Bulk(b) => Some(b.clone()),
        _ => None,
    };
    let items = |r: &Reply| match r {
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => Some(items.clone()),
        Reply::Map(pairs) => Some(
            pairs
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect(),
        ),
        _ => None,
    };
    let word = |w: &str| Bytes::copy_from_slice(w.as_bytes());
    match kind {
        Pop::Move => {
            bulk(reply)?;
            let (src, dst) = (a.get(1)?.clone(), a.get(2)?.clone());
            let (from, to) = if a[0].eq_ignore_ascii_case(b"brpoplpush") {
                (word("RIGHT"), word("LEFT"))
            } else {
                (a.get(3)?.clone(), a.get(4)?.clone())
            };
            rebuilt("lmove", vec![word("LMOVE"), src, dst, from, to])
        }
        Pop::One(pop) => {
            let r = items(reply)?;
            let key = bulk(r.first()?)?;
            rebuilt(&pop.to_lowercase(), vec![word(pop), key])
        }
        Pop::Many => {
            let r = items(reply)?;
            let key = bulk(r.first()?)?;
            let n = items(r.get(1)?)?.len();
            let left = a.iter().any(|x| is(x, "LEFT"));
            let pop = if left { "LPOP" } else { "RPOP" };
            rebuilt(
                &pop.to_lowercase(),
                vec![word(pop), key, word(&n.to_string())],
            )
        }
        Pop::Member | Pop::Members => {
            let r = items(reply)?;
            let key = bulk(r.first()?)?;
            let members: Vec<Bytes> = match kind {
                Pop::Member => vec![bulk(r.get(1)?)?],
                _ => items(r.get(1)?)?
                    .iter()
                    .filter_map(|p| items(p).and_then(|p| p.first().and_then(bulk)))
                    .collect(),
            };
            let mut args = vec![word("ZREM"), key];
            args.extend(members);
            rebuilt("zrem", args)
        }
    }
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
pub(super) fn failed(r: &Reply) -> bool {
    match r {
        Reply::Error(_) => true,
        Reply::Raw(raw) => raw.starts_with(b"-"),
        _ => false,
    }
}

/// EXEC's reply when the transaction ran (not nil, not EXECABORT).
pub(super) fn committed(r: &Reply) -> bool {
    match r {
        Reply::Array(_) => true,
        Reply::Raw(raw) => raw.starts_with(b"*") && !raw.starts_with(b"*-1"),
        _ => false,
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
        let arr = |v: Vec<Reply>| Reply::Array(v);
        assert_eq!(
            replayed("BLPOP a b 0", Some(arr(vec![bulk("b"), bulk("x")]))).as_deref(),
            Some("LPOP b")
        );
        assert_eq!(
            replayed("BRPOP a 1", Some(arr(vec![bulk("a"), bulk("x")]))).as_deref(),
            Some("RPOP a")
        );
        assert_eq!(replayed("BLPOP a 1", Some(Reply::Nil)), None);
        assert_eq!(replayed("BLPOP a 1", None), None);
        assert_eq!(
            replayed("BRPOPLPUSH s d 0", Some(bulk("x"))).as_deref(),
            Some("LMOVE s d RIGHT LEFT")
        );
        assert_eq!(
            replayed("BLMOVE s d LEFT RIGHT 0", Some(bulk("x"))).as_deref(),
            Some("LMOVE s d LEFT RIGHT")
        );
        assert_eq!(replayed("BLMOVE s d LEFT RIGHT 0", Some(Reply::Nil)), None);
        assert_eq!(
            replayed(
                "BLMPOP 0 2 a b RIGHT COUNT 5",
                Some(arr(vec![bulk("b"), arr(vec![bulk("x"), bulk("y")])]))
            )
            .as_deref(),
            Some("RPOP b 2")
        );
        assert_eq!(
            replayed(
                "BZPOPMIN z 0",
                Some(arr(vec![bulk("z"), bulk("m"), bulk("1")]))
            )
            .as_deref(),
            Some("ZREM z m")
        );
        assert_eq!(
            replayed(
                "BZMPOP 0 1 z MAX COUNT 2",
                Some(arr(vec![
                    bulk("z"),
                    arr(vec![
                        arr(vec![bulk("m"), bulk("2")]),
                        arr(vec![bulk("n"), bulk("1")])
                    ])
                ]))
            )
            .as_deref(),
            Some("ZREM z m n")
        );
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
