//! Typed options shared by the backends that implement string and expiry
//! commands themselves (memory, memcached): SET's, GETEX's and the EXPIRE
//! family's, parsed once with Redis's errors.

use bytes::Bytes;

use crate::wire::error::{CmdError, CmdResult};
use crate::wire::util::{int_arg, is, now_ms};

/// An expiry option's unit.
#[derive(Clone, Copy)]
pub enum Unit {
    Seconds,
    Millis,
}

/// The Unix time in ms that `n` units from now (or, `absolute`, since the
/// epoch) stands for; "invalid expire time in '<cmd>'" on overflow.
pub fn deadline(n: i64, unit: Unit, absolute: bool, cmd: &str) -> CmdResult<i64> {
    let invalid = || CmdError::InvalidExpire(cmd.to_string());
    let ms = match unit {
        Unit::Seconds => n.checked_mul(1000).ok_or_else(invalid)?,
        Unit::Millis => n,
    };
    if absolute {
        Ok(ms)
    } else {
        ms.checked_add(now_ms() as i64).ok_or_else(invalid)
    }
}

/// An expiry option's argument (EX/PX relative, EXAT/PXAT absolute) as a
/// Unix time in ms; it must be positive, as SET, SETEX and GETEX require.
pub fn expire_at(value: &[u8], unit: Unit, absolute: bool, cmd: &str) -> CmdResult<u64> {
    let n = int_arg(value)?;
    if n <= 0 {
        return Err(CmdError::InvalidExpire(cmd.to_string()));
    }
    Ok(deadline(n, unit, absolute, cmd)? as u64)
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL]
#[derive(Debug, Default, Clone, Copy)]
pub struct SetArgs {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub keepttl: bool,
    /// Unix ms.
    pub expires: Option<u64>,
}

impl SetArgs {
    /// The options, then the expiry's value, as Redis reads them: a syntax
    /// error anywhere comes before a bad number.
    pub fn parse(a: &[Bytes]) -> CmdResult<SetArgs> {
        let mut s = SetArgs::default();
        let mut expiry: Option<(usize, Unit, bool)> = None;
        let mut i = 3;
        while i < a.len() {
            let o = &a[i];
            let named = [("EX", Unit::Seconds, false), ("PX", Unit::Millis, false)]
                .into_iter()
                .chain([("EXAT", Unit::Seconds, true), ("PXAT", Unit::Millis, true)])
                .find(|(name, _, _)| is(o, name));
            if is(o, "NX") && !s.xx {
                s.nx = true;
            } else if is(o, "XX") && !s.nx {
                s.xx = true;
            } else if is(o, "GET") {
                s.get = true;
            } else if is(o, "KEEPTTL") && expiry.is_none() {
                s.keepttl = true;
            } else if let Some((_, unit, abs)) = named {
                if s.keepttl || expiry.is_some() || i + 1 >= a.len() {
                    return Err(CmdError::Syntax);
                }
                expiry = Some((i + 1, unit, abs));
                i += 1;
            } else {
                return Err(CmdError::Syntax);
            }
            i += 1;
        }
        if let Some((at, unit, abs)) = expiry {
            s.expires = Some(expire_at(&a[at], unit, abs, "set")?);
        }
        Ok(s)
    }
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]: None leaves the TTL,
/// Some(0) removes it, Some(t) expires at Unix ms `t`. Options first, then
/// the expiry's value, as Redis reads them.
pub fn getex_change(a: &[Bytes]) -> CmdResult<Option<u64>> {
    let mut persist = false;
    let mut expiry: Option<(usize, Unit, bool)> = None;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        let unit = if is(o, "EX") || is(o, "EXAT") {
            Some(Unit::Seconds)
        } else if is(o, "PX") || is(o, "PXAT") {
            Some(Unit::Millis)
        } else {
            None
        };
        if is(o, "PERSIST") && expiry.is_none() && !persist {
            persist = true;
        } else if let (Some(unit), None, false, true) = (unit, expiry, persist, i + 1 < a.len()) {
            expiry = Some((i + 1, unit, o.len() == 4));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    match expiry {
        Some((at, unit, absolute)) => Ok(Some(expire_at(&a[at], unit, absolute, "getex")?)),
        None => Ok(persist.then_some(0)),
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n [NX|XX|GT|LT]
#[derive(Debug, Clone, Copy)]
pub struct ExpireArgs {
    /// Unix ms; at or before now, the key is deleted.
    pub when: i64,
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireArgs {
    /// `unit` of the argument, `absolute` for the *AT forms.
    pub fn parse(a: &[Bytes], unit: Unit, absolute: bool) -> CmdResult<ExpireArgs> {
        let cmd = String::from_utf8_lossy(&a[0]).to_lowercase();
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for o in &a[3..] {
            if is(o, "NX") {
                nx = true;
            } else if is(o, "XX") {
                xx = true;
            } else if is(o, "GT") {
                gt = true;
            } else if is(o, "LT") {
                lt = true;
            } else {
                return Err(CmdError::msg(format!(
                    "ERR Unsupported option {}",
                    crate::wire::error::lossy(o, usize::MAX)
                )));
            }
        }
        if nx && (xx || gt || lt) {
            return Err(CmdError::msg(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if gt && lt {
            return Err(CmdError::msg(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        // The options are read before the time, as Redis reads them.
        let n = int_arg(&a[2])?;
        let when = deadline(n, unit, absolute, &cmd)?;
        Ok(ExpireArgs {
            when,
            nx,
            xx,
            gt,
            lt,
        })
    }

    /// Whether the conditions need the key's current TTL.
    pub fn conditional(&self) -> bool {
        self.nx || self.xx || self.gt || self.lt
    }

    /// Whether the new expiry applies, given the current one (Unix ms; None
    /// for no TTL, which counts as infinite for GT and LT).
    pub fn allows(&self, current: Option<i64>) -> bool {
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|c| self.when <= c))
            || (self.lt && current.is_some_and(|c| self.when >= c)))
    }

    /// The new expiry deletes the key.
    pub fn deletes(&self) -> bool {
        self.when <= now_ms() as i64
    }
}
