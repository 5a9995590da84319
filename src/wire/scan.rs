//! SCAN's arguments and replies, shared by the keyspace fan-out and every
//! backend that scans (SCAN, HSCAN, SSCAN, ZSCAN).

use bytes::Bytes;

use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{bytes, int_arg, is};

/// Options shared by SCAN, HSCAN and friends.
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub type_: Option<Bytes>,
}

/// Parses `cursor [MATCH p] [COUNT n] [TYPE t]` from `a[at..]`; TYPE only
/// when `allow_type`.
pub fn parse_scan(a: &[Bytes], at: usize, allow_type: bool) -> CmdResult<ScanArgs> {
    let cursor = std::str::from_utf8(&a[at])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(CmdError::InvalidCursor)?;
    let mut args = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        type_: None,
    };
    let mut i = at + 1;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        if is(&a[i], "MATCH") {
            args.pattern = (&value[..] != b"*").then(|| value.clone());
        } else if is(&a[i], "COUNT") {
            let n = int_arg(value)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            args.count = n as usize;
        } else if allow_type && is(&a[i], "TYPE") {
            args.type_ = Some(value.clone());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(args)
}

/// A SCAN reply's next cursor and its items; None when it is not one.
pub fn scan_parts(reply: Reply) -> Option<(u64, Reply)> {
    let Reply::Array(parts) = reply else {
        return None;
    };
    let mut parts = parts.into_iter();
    let cursor = match parts.next()? {
        Reply::Bulk(c) => std::str::from_utf8(&c).ok()?.parse::<u64>().ok()?,
        _ => return None,
    };
    Some((cursor, parts.next()?))
}

pub fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(bytes(&cursor.to_string())),
        Reply::Array(items),
    ])
}
