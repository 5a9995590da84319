//! Redis string commands in memcached's terms: which commands are single
//! operations (sent in batches), which are read-modify-write loops with
//! compare-and-swap, and how operations' results become Redis's replies.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use memcache::exp::{Delete, Get, GetResult, Meta, MutationStatus, Op, OpResult, Set, Ttl};

use super::transport::flush_all;
use super::{CAS_ATTEMPTS, MAX_RELATIVE_SECS, MemcachedBackend, Step};
use crate::backend::Command;
use crate::backend::upstream::unavailable;
use crate::wire::args::{ExpireArgs, SetArgs, Unit, getex_change};
use crate::wire::error::CmdError;
use crate::wire::protocol::parse_i64;
use crate::wire::reply::Reply;
use crate::wire::util::{now_ms, parse_f64};

/// How the results of a command's operations become its reply.
#[derive(Clone, Copy)]
pub(super) enum Finish {
    /// GET, GETEX: the value or nil.
    Value,
    /// MGET: an array of values.
    Values,
    /// SET [NX|XX]: OK, or nil when the condition failed.
    SetOk,
    /// SETNX: 1 or 0.
    SetNx,
    /// SETEX, PSETEX, MSET: OK.
    Ok,
    /// DEL, UNLINK: how many were deleted.
    Deleted,
    /// EXISTS, TOUCH, EXPIRE (touch): how many were found.
    Found,
    /// STRLEN.
    Size,
    /// TTL (false) or PTTL (true).
    Ttl(bool),
}

/// A command as memcached operations, or one needing a read first.
pub(super) enum Plan {
    Ops(Vec<Op>, Finish),
    ReadModifyWrite,
}

impl MemcachedBackend {
    /// Translates a command into operations when it needs no read first.
    pub(super) fn plan(&self, cmd: &Command) -> Step<Plan> {
        let a = &cmd.args;
        let get = |k: &Bytes| Get::new(self.key(k));
        let probe = |k: &Bytes| get(k).without_value();
        Ok(match cmd.spec.name {
            "get" => Plan::Ops(vec![get(&a[1]).into()], Finish::Value),
            "mget" => Plan::Ops(
                a[1..].iter().map(|k| get(k).into()).collect(),
                Finish::Values,
            ),
            "set" => {
                let s = SetArgs::parse(a).map_err(Reply::from)?;
                let past = s.expires.is_some_and(|t| t <= now_ms());
                if s.get || s.keepttl || past {
                    return Ok(Plan::ReadModifyWrite);
                }
                let mut op = self.set_op(&a[1], &a[2], s.expires.map(ttl_until))?;
                if s.nx {
                    op = op.add();
                } else if s.xx {
                    op = op.replace();
                }
                Plan::Ops(vec![op.into()], Finish::SetOk)
            }
            "setnx" => Plan::Ops(
                vec![self.set_op(&a[1], &a[2], None)?.add().into()],
                Finish::SetNx,
            ),
            "setex" | "psetex" => {
                let unit = if cmd.spec.name == "setex" {
                    Unit::Seconds
                } else {
                    Unit::Millis
                };
                let at = crate::wire::args::expire_at(&a[2], unit, false, cmd.spec.name)
                    .map_err(Reply::from)?;
                Plan::Ops(
                    vec![self.set_op(&a[1], &a[3], Some(ttl_until(at)))?.into()],
                    Finish::Ok,
                )
            }
            "mset" => {
                if a.len() % 2 == 0 {
                    return Err(CmdError::WrongArity("mset".into()).into());
                }
                let mut ops = Vec::with_capacity(a.len() / 2);
                for pair in a[1..].chunks(2) {
                    ops.push(self.set_op(&pair[0], &pair[1], None)?.into());
                }
                Plan::Ops(ops, Finish::Ok)
            }
            "del" | "unlink" => Plan::Ops(
                a[1..]
                    .iter()
                    .map(|k| Delete::new(self.key(k)).into())
                    .collect(),
                Finish::Deleted,
            ),
            "exists" | "touch" => Plan::Ops(
                a[1..].iter().map(|k| probe(k).into()).collect(),
                Finish::Found,
            ),
            "strlen" => Plan::Ops(
                vec![probe(&a[1]).meta(Meta::NONE.size()).into()],
                Finish::Size,
            ),
            "ttl" | "pttl" => Plan::Ops(
                vec![probe(&a[1]).meta(Meta::NONE.ttl()).into()],
                Finish::Ttl(cmd.spec.name == "pttl"),
            ),
            "getex" => match getex_change(a) {
                Err(CmdError::Syntax) => return Err(CmdError::Syntax.into()),
                // A bad time: Redis looks the key up first (see getex_refused).
                Err(_) => Plan::ReadModifyWrite,
                Ok(None) => Plan::Ops(vec![get(&a[1]).into()], Finish::Value),
                Ok(Some(0)) => Plan::Ops(vec![get(&a[1]).touch(Ttl::NEVER).into()], Finish::Value),
                Ok(Some(t)) if t <= now_ms() => Plan::ReadModifyWrite,
                Ok(Some(t)) => {
                    Plan::Ops(vec![get(&a[1]).touch(ttl_until(t)).into()], Finish::Value)
                }
            },
            "expire" | "pexpire" | "expireat" | "pexpireat" => {
                let e = expire_args(cmd)?;
                if e.conditional() || e.deletes() {
                    return Ok(Plan::ReadModifyWrite);
                }
                let touch = probe(&a[1]).touch(ttl_until(e.when as u64));
                Plan::Ops(vec![touch.into()], Finish::Found)
            }
            _ => Plan::ReadModifyWrite,
        })
    }

    /// The value, CAS and remaining TTL of a key, or None when missing.
    pub(super) async fn read(&self, key: &[u8]) -> Step<Option<Item>> {
        let op = Get::new(self.key(key)).meta(Meta::NONE.cas().ttl());
        match self.one(op).await? {
            OpResult::Get(g) if g.hit() => Ok(Some(Item {
                value: g.value.clone().unwrap_or_default(),
                cas: g.item.cas.unwrap_or(0),
                ttl: g.item.ttl,
            })),
            _ => Ok(None),
        }
    }

    /// Writes `value` if the key is still as read (`cas`), or still missing
    /// (None); false when someone else got there first.
    pub(super) async fn write_if(
        &self,
        key: &[u8],
        value: &[u8],
        seen: Option<&Item>,
        ttl: Option<Ttl>,
    ) -> Step<bool> {
        let mut op = self.set_op(key, value, ttl)?;
        op = match seen {
            Some(item) => op.compare_cas(item.cas),
            None => op.add(),
        };
        Ok(matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied()))
    }

    pub(super) async fn delete_if(&self, key: &[u8], seen: &Item) -> Step<bool> {
        let op = Delete::new(self.key(key)).compare_cas(seen.cas);
        Ok(matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied()))
    }

    /// Commands that read the key before writing it.
    pub(super) async fn read_modify_write(&self, cmd: &Command) -> Reply {
        let r = match cmd.spec.name {
            "set" => self.set_rmw(cmd).await,
            "getset" => {
                let mut args = cmd.args.clone();
                args.push(Bytes::from_static(b"GET"));
                self.set_with(
                    &args,
                    SetArgs {
                        get: true,
                        ..SetArgs::default()
                    },
                )
                .await
            }
            "getdel" => self.getdel(&cmd.args[1]).await,
            // Planned here only with an expiry already past: get and delete.
            "getex" => match getex_change(&cmd.args) {
                Err(e) => self.getex_refused(&cmd.args[1], e).await,
                // An expire time in the past: the key goes, its value back.
                Ok(_) => self.getdel(&cmd.args[1]).await,
            },
            "expire" | "pexpire" | "expireat" | "pexpireat" => self.expire(cmd).await,
            "persist" => self.persist(&cmd.args[1]).await,
            "incr" => self.incr_by(&cmd.args[1], 1).await,
            "decr" => self.incr_by(&cmd.args[1], -1).await,
            "incrby" | "decrby" => match parse_i64(&cmd.args[2]) {
                None => Err(CmdError::NotInteger.into()),
                Some(n) if cmd.spec.name == "decrby" => match n.checked_neg() {
                    Some(n) => self.incr_by(&cmd.args[1], n).await,
                    None => Err(CmdError::msg("ERR decrement would overflow").into()),
                },
                Some(n) => self.incr_by(&cmd.args[1], n).await,
            },
            "incrbyfloat" => self.incr_by_float(&cmd.args[1], &cmd.args[2]).await,
            "append" => self.append(&cmd.args[1], &cmd.args[2]).await,
            "flushdb" | "flushall" => self.flush().await,
            name => Err(Reply::error(format!(
                "ERR '{}' is not supported by the memcached backend",
                name.to_uppercase()
            ))),
        };
        r.unwrap_or_else(|e| e)
    }

    /// GETEX with an expire time Redis refuses: Redis looks the key up
    /// before it reads the time, so a missing key is nil and only an
    /// existing one hears why.
    pub(super) async fn getex_refused(&self, key: &Bytes, e: CmdError) -> Step<Reply> {
        let probe = Get::new(self.key(key)).without_value();
        if found(&self.one(probe).await?) {
            Err(e.into())
        } else {
            Ok(Reply::Nil)
        }
    }

    pub(super) async fn set_rmw(&self, cmd: &Command) -> Step<Reply> {
        let s = SetArgs::parse(&cmd.args).map_err(Reply::from)?;
        self.set_with(&cmd.args, s).await
    }

    /// SET with GET, KEEPTTL or an expiry already past.
    pub(super) async fn set_with(&self, a: &[Bytes], s: SetArgs) -> Step<Reply> {
        let (key, value) = (&a[1], &a[2]);
        self.check_size(value)?;
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let reply = |did: bool| {
                if s.get {
                    Reply::opt_bulk(old.as_ref().map(|o| Bytes::from(o.value.clone())))
                } else if did {
                    Reply::ok()
                } else {
                    Reply::Nil
                }
            };
            if (s.nx && old.is_some()) || (s.xx && old.is_none()) {
                return Ok(reply(false));
            }
            if s.expires.is_some_and(|t| t <= now_ms()) {
                // Set and expired at once: the key is gone.
                let done = match &old {
                    Some(o) => self.delete_if(key, o).await?,
                    None => true,
                };
                if done {
                    return Ok(reply(true));
                }
                continue;
            }
            let ttl = match (s.keepttl, &old) {
                (true, Some(o)) => Some(keep_ttl(o.ttl)),
                _ => s.expires.map(ttl_until),
            };
            if self.write_if(key, value, old.as_ref(), ttl).await? {
                return Ok(reply(true));
            }
        }
        Err(contended())
    }

    /// GETDEL, and GETEX with an expiry already past.
    pub(super) async fn getdel(&self, key: &[u8]) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = self.read(key).await? else {
                return Ok(Reply::Nil);
            };
            if self.delete_if(key, &old).await? {
                return Ok(Reply::Bulk(Bytes::from(old.value)));
            }
        }
        Err(contended())
    }

    pub(super) async fn expire(&self, cmd: &Command) -> Step<Reply> {
        let e = expire_args(cmd)?;
        let key = &cmd.args[1];
        for _ in 0..CAS_ATTEMPTS {
            let Some(old) = self.read(key).await? else {
                return Ok(Reply::Int(0));
            };
            let current = old
                .ttl
                .filter(|t| *t >= 0)
                .map(|t| now_ms() as i64 + t * 1000);
            if !e.allows(current) {
                return Ok(Reply::Int(0));
            }
            if e.deletes() {
                if self.delete_if(key, &old).await? {
                    return Ok(Reply::Int(1));
                }
                continue;
            }
            let touch = Get::new(self.key(key))
                .without_value()
                .touch(ttl_until(e.when as u64));
            return Ok(Reply::Int(found(&self.one(touch).await?) as i64));
        }
        Err(contended())
    }

    pub(super) async fn persist(&self, key: &[u8]) -> Step<Reply> {
        let probe = Get::new(self.key(key))
            .without_value()
            .meta(Meta::NONE.ttl());
        match self.one(probe).await? {
            OpResult::Get(g) if g.hit() && g.item.ttl.is_some_and(|t| t >= 0) => {
                let touch = Get::new(self.key(key)).without_value().touch(Ttl::NEVER);
                Ok(Reply::Int(found(&self.one(touch).await?) as i64))
            }
            _ => Ok(Reply::Int(0)),
        }
    }

    /// INCR family over Redis's signed 64-bit range; the TTL is kept.
    pub(super) async fn incr_by(&self, key: &[u8], by: i64) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let current = match &old {
                None => 0,
                Some(o) => parse_i64(&o.value).ok_or(CmdError::NotInteger)?,
            };
            let n = current.checked_add(by).ok_or(CmdError::Overflow)?;
            let ttl = old.as_ref().map(|o| keep_ttl(o.ttl));
            if self
                .write_if(key, n.to_string().as_bytes(), old.as_ref(), ttl)
                .await?
            {
                return Ok(Reply::Int(n));
            }
        }
        Err(contended())
    }

    pub(super) async fn incr_by_float(&self, key: &[u8], by: &[u8]) -> Step<Reply> {
        let by = parse_f64(by).ok_or(CmdError::NotFloat)?;
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let current = match &old {
                None => 0.0,
                Some(o) => parse_f64(&o.value).ok_or(CmdError::NotFloat)?,
            };
            let n = current + by;
            if !n.is_finite() {
                return Err(CmdError::NanOrInfinity.into());
            }
            // As Redis writes INCRBYFLOAT results: no exponent.
            let text = format!("{n}");
            let ttl = old.as_ref().map(|o| keep_ttl(o.ttl));
            if self
                .write_if(key, text.as_bytes(), old.as_ref(), ttl)
                .await?
            {
                return Ok(Reply::Bulk(Bytes::from(text)));
            }
        }
        Err(contended())
    }

    /// APPEND: creates a missing key (memcached's append does not) and
    /// answers the new length, exact because the append is CAS-checked.
    pub(super) async fn append(&self, key: &[u8], tail: &[u8]) -> Step<Reply> {
        for _ in 0..CAS_ATTEMPTS {
            let old = self.read(key).await?;
            let len = old.as_ref().map_or(0, |o| o.value.len()) + tail.len();
            self.check_len(len)?;
            let done = match &old {
                None => self.write_if(key, tail, None, None).await?,
                Some(o) => {
                    let op = Set::new(self.key(key), tail).append().compare_cas(o.cas);
                    matches!(self.one(op).await?, OpResult::Mutation(m) if m.applied())
                }
            };
            if done {
                return Ok(Reply::Int(len as i64));
            }
        }
        Err(contended())
    }

    /// FLUSHDB / FLUSHALL: `flush_all` on every server. keyspace.rs only
    /// sends it when the namespace owns the servers outright.
    pub(super) async fn flush(&self) -> Step<Reply> {
        let limit = Duration::from_millis(self.config.command_timeout_ms);
        for server in &self.config.servers {
            let r = tokio::time::timeout(limit, flush_all(server)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(unavailable(&self.name, &format!("{server}: {reason}")));
                }
                Err(_) => {
                    return Err(unavailable(
                        &self.name,
                        &format!("{server}: no reply within {} ms", limit.as_millis()),
                    ));
                }
            }
        }
        Ok(Reply::ok())
    }
}

pub(super) struct Item {
    pub(super) value: Vec<u8>,
    pub(super) cas: u64,
    /// Remaining seconds; -1 for none.
    pub(super) ttl: Option<i64>,
}

pub(super) fn contended() -> Reply {
    Reply::error("ERR too many concurrent writers on this key; try again")
}

pub(super) fn found(r: &OpResult) -> bool {
    matches!(r, OpResult::Get(g) if g.hit())
}

pub(super) fn expire_args(cmd: &Command) -> Step<ExpireArgs> {
    let (unit, absolute) = match cmd.spec.name {
        "expire" => (Unit::Seconds, false),
        "pexpire" => (Unit::Millis, false),
        "expireat" => (Unit::Seconds, true),
        _ => (Unit::Millis, true),
    };
    ExpireArgs::parse(&cmd.args, unit, absolute).map_err(Reply::from)
}

/// A memcached TTL for a Unix time in ms still in the future: whole
/// seconds, rounded up; beyond memcached's 32-bit clock, its last second.
pub(super) fn ttl_until(at_ms: u64) -> Ttl {
    let secs = at_ms.saturating_sub(now_ms()).div_ceil(1000).max(1);
    if secs <= MAX_RELATIVE_SECS {
        return Ttl::secs(secs as u32);
    }
    // memcached counts whole seconds on its own clock: round to nearest.
    let at = (at_ms.saturating_add(500) / 1000).min(u64::from(u32::MAX));
    Ttl::at(UNIX_EPOCH + Duration::from_secs(at))
}

/// The TTL to write back for a key whose remaining TTL was read.
pub(super) fn keep_ttl(remaining: Option<i64>) -> Ttl {
    match remaining {
        Some(t) if t > 0 => ttl_until(now_ms() + t as u64 * 1000),
        Some(0) => Ttl::secs(1),
        _ => Ttl::NEVER,
    }
}

impl Finish {
    pub(super) fn reply(self, results: impl Iterator<Item = Result<OpResult, Reply>>) -> Reply {
        // Every result is taken, even after an error: `results` is this
        // command's share of a batch, and the next command reads on.
        let mut ok = Vec::with_capacity(results.size_hint().0);
        let mut failed = None;
        for r in results {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => _ = failed.get_or_insert(e),
            }
        }
        if let Some(e) = failed {
            return e;
        }
        // The value is moved out of the result, not copied.
        let value = |r: OpResult| {
            let hit = found(&r);
            match r {
                OpResult::Get(GetResult { value: Some(v), .. }) if hit => {
                    Reply::Bulk(Bytes::from(v))
                }
                _ => Reply::Nil,
            }
        };
        let applied = |r: &OpResult| match r {
            OpResult::Mutation(m) => m.status == MutationStatus::Applied,
            _ => false,
        };
        let first = ok.first();
        match self {
            Finish::Value => ok.into_iter().next().map_or(Reply::Nil, value),
            Finish::Values => Reply::Array(ok.into_iter().map(value).collect()),
            Finish::SetOk if first.is_some_and(applied) => Reply::ok(),
            Finish::SetOk => Reply::Nil,
            Finish::SetNx => Reply::Int(first.is_some_and(applied) as i64),
            Finish::Ok => Reply::ok(),
            Finish::Deleted => Reply::Int(ok.iter().filter(|r| applied(r)).count() as i64),
            Finish::Found => Reply::Int(ok.iter().filter(|r| found(r)).count() as i64),
            Finish::Size => match first {
                Some(OpResult::Get(g)) if g.hit() => Reply::Int(g.item.size.unwrap_or(0) as i64),
                _ => Reply::Int(0),
            },
            Finish::Ttl(millis) => match first {
                Some(OpResult::Get(g)) if g.hit() => match g.item.ttl {
                    Some(t) if t >= 0 => Reply::Int(if millis { t * 1000 } else { t }),
                    _ => Reply::Int(-1),
                },
                _ => Reply::Int(-2),
            },
        }
    }
}
