//! Commands between databases of the memory backend: MOVE, SWAPDB and
//! COPY with a DB option.
//! Each takes the gates of both databases, lower index first, so that no
//! command sees a key in both or neither, and two of them never wait on
//! each other in reverse.

use std::sync::{Arc, RwLockWriteGuard};

use super::store::Entry;
use super::{Memory, MemoryBackend};
use crate::backend::Command;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::range_arg;

impl MemoryBackend {
    /// Runs a batch holding MOVE or SWAPDB: one command at a time, each
    /// other command in the batch's database as usual.
    pub(super) fn across(&self, batch: &[Command]) -> Vec<Reply> {
        batch
            .iter()
            .map(|c| {
                let r = match c.spec.name {
                    "move" => self.move_key(c),
                    "swapdb" => self.swap(c),
                    "copy" => self.copy_to(c),
                    _ => {
                        let db = self.db(c.db);
                        let r = db.run(std::slice::from_ref(c)).pop();
                        db.serve_after(std::slice::from_ref(c));
                        return r.unwrap_or(Reply::Nil);
                    }
                };
                r.unwrap_or_else(Reply::from)
            })
            .collect()
    }

    /// Empties every database made so far but `keep`.
    pub(super) fn clear_others(&self, keep: u8) {
        for db in (0..=u8::MAX).filter(|&d| d != keep) {
            if let Some(m) = self.existing(db) {
                let _gate = m.gate.write().unwrap_or_else(|e| e.into_inner());
                m.store.clear();
            }
        }
    }

    /// MOVE key db, with Redis's checks in Redis's order.
    fn move_key(&self, c: &Command) -> CmdResult {
        let to = index(&c.args[2], None)?;
        if to == c.db {
            return Err(CmdError::msg(
                "ERR source and destination objects are the same",
            ));
        }
        let (from, dest) = (self.db(c.db).clone(), self.db(to).clone());
        let moved = {
            let _gates = both_gates(&from, c.db, &dest, to);
            let key = &c.args[1];
            let Some(entry) = from.store.read(key, |e| {
                e.map(|e| Entry {
                    value: e.value.to_value(),
                    expires_at: e.expires_at,
                })
            }) else {
                return Ok(Reply::Int(0));
            };
            if dest.store.read(key, |e| e.is_some()) {
                return Ok(Reply::Int(0));
            }
            dest.store.write(key, |slot| *slot = Some(entry));
            from.store.write(key, |slot| *slot = None);
            true
        };
        if moved {
            // Clients blocked on the key in the destination get it now.
            dest.serve_after(std::slice::from_ref(c));
        }
        Ok(Reply::Int(moved as i64))
    }

    /// COPY src dst [DB n] [REPLACE], with Redis's checks in its order.
    fn copy_to(&self, c: &Command) -> CmdResult {
        let (mut to, mut replace) = (c.db, false);
        let mut i = 3;
        while let Some(o) = c.args.get(i) {
            if o.eq_ignore_ascii_case(b"REPLACE") {
                replace = true;
                i += 1;
            } else if let (true, Some(n)) = (o.eq_ignore_ascii_case(b"DB"), c.args.get(i + 1)) {
                to = index(n, None)?;
                i += 2;
            } else {
                return Err(CmdError::Syntax);
            }
        }
        let (src, dst) = (&c.args[1], &c.args[2]);
        if to == c.db && src == dst {
            return Err(CmdError::msg(
                "ERR source and destination objects are the same",
            ));
        }
        let (from, dest) = (self.db(c.db).clone(), self.db(to).clone());
        let copied = {
            let _gates = (to != c.db).then(|| both_gates(&from, c.db, &dest, to));
            let _gate = (to == c.db).then(|| from.gate.write().unwrap_or_else(|e| e.into_inner()));
            let Some(entry) = from.store.read(src, |e| {
                e.map(|e| Entry {
                    value: e.value.to_value(),
                    expires_at: e.expires_at,
                })
            }) else {
                return Ok(Reply::Int(0));
            };
            dest.store.write(dst, |slot| {
                if slot.is_some() && !replace {
                    return false;
                }
                *slot = Some(entry);
                true
            })
        };
        if copied {
            dest.serve_after(std::slice::from_ref(c));
        }
        Ok(Reply::Int(copied as i64))
    }

    /// SWAPDB a b: every key of each database goes to the other.
    fn swap(&self, c: &Command) -> CmdResult {
        // Both read before either is checked against the range, as Redis.
        let a = range_arg(
            &c.args[1],
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            Some("invalid first DB index"),
        )?;
        let b = range_arg(
            &c.args[2],
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            Some("invalid second DB index"),
        )?;
        let (a, b) = (in_range(a)?, in_range(b)?);
        if a != b {
            let (da, db) = (self.db(a).clone(), self.db(b).clone());
            let _gates = both_gates(&da, a, &db, b);
            da.store.swap_with(&db.store);
        }
        Ok(Reply::ok())
    }
}

/// A database index argument, read as Redis's getIntFromObjectOrReply
/// reads it (with `msg` for any bad number when given), then checked
/// against `server.databases`.
fn index(arg: &[u8], msg: Option<&str>) -> CmdResult<u8> {
    in_range(range_arg(
        arg,
        i64::from(i32::MIN),
        i64::from(i32::MAX),
        msg,
    )?)
}

/// A database number checked against `server.databases`.
fn in_range(n: i64) -> CmdResult<u8> {
    let limit = i64::from(crate::backend::databases());
    match u8::try_from(n) {
        Ok(db) if n < limit => Ok(db),
        _ => Err(CmdError::msg("ERR DB index is out of range")),
    }
}

/// Both databases' gates, taken lower index first.
fn both_gates<'a>(
    a: &'a Arc<Memory>,
    ia: u8,
    b: &'a Arc<Memory>,
    ib: u8,
) -> (RwLockWriteGuard<'a, ()>, RwLockWriteGuard<'a, ()>) {
    let lock = |m: &'a Arc<Memory>| m.gate.write().unwrap_or_else(|e| e.into_inner());
    if ia < ib {
        let first = lock(a);
        (first, lock(b))
    } else {
        let first = lock(b);
        (lock(a), first)
    }
}
