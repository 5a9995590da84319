//! ACL SETUSER's rule language: Redis's modifiers (`on`, `>pass`, `#hash`,
//! `~pattern`, `%R~pattern`, `&channel`, `+@category`, `(selector)`,
//! `reset`...), applied in order to a copy of the user, with Redis's error
//! texts. A user changed this way lasts until keyway reads its config
//! again, as a Redis without an ACL file forgets its users on restart.

use bytes::Bytes;

use super::rules::RuleError;
use super::user::{Selector, User, sha256};
use super::{Reach, unhex};

/// Why a modifier was refused, in Redis's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetUserError {
    #[error("Syntax error")]
    Syntax,
    #[error("Unknown command or category name in ACL")]
    Unknown,
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    AfterAllKeys,
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    AfterAllChannels,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
    )]
    BadHash,
}

/// A user ACL SETUSER creates: off, no password, nothing allowed.
pub fn new_user(name: &str) -> User {
    User::new(name, false, Vec::new(), false, Selector::empty())
}

/// The modifiers with a selector split over several arguments (`(+get`
/// `~a*)`) joined into one, as Redis joins them; Err names the argument
/// whose parenthesis is never closed.
pub fn merge_selectors(args: &[Bytes]) -> Result<Vec<Bytes>, Bytes> {
    let mut out = Vec::with_capacity(args.len());
    let mut open: Option<Vec<u8>> = None;
    let mut opened_at = Bytes::new();
    for a in args {
        match &mut open {
            Some(sel) => {
                sel.push(b' ');
                sel.extend_from_slice(a);
                if a.ends_with(b")") {
                    out.push(Bytes::from(std::mem::take(sel)));
                    open = None;
                }
            }
            None if a.starts_with(b"(") && !a.ends_with(b")") => {
                open = Some(a.to_vec());
                opened_at = a.clone();
            }
            None => out.push(a.clone()),
        }
    }
    match open {
        Some(_) => Err(opened_at),
        None => Ok(out),
    }
}

/// A password hash as Redis takes it: 64 lowercase hex digits.
fn hash(h: &[u8]) -> Result<[u8; 32], SetUserError> {
    let text = std::str::from_utf8(h).map_err(|_| SetUserError::BadHash)?;
    if text.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(SetUserError::BadHash);
    }
    unhex(text).ok_or(SetUserError::BadHash)
}

/// Applies one modifier to `user`.
pub fn apply(user: &mut User, op: &[u8]) -> Result<(), SetUserError> {
    let lower = op.to_ascii_lowercase();
    match &lower[..] {
        b"on" => user.enabled = true,
        b"off" => user.enabled = false,
        b"nopass" => {
            user.passwords.clear();
            user.nopass = true;
        }
        b"resetpass" => {
            user.passwords.clear();
            user.nopass = false;
        }
        b"sanitize-payload" => user.sanitize = Some(true),
        b"skip-sanitize-payload" => user.sanitize = Some(false),
        b"clearselectors" => user.selectors.clear(),
        b"reset" => {
            user.passwords.clear();
            user.nopass = false;
            user.enabled = false;
            user.sanitize = Some(true);
            user.root = Selector::empty();
            user.selectors.clear();
        }
        _ => match op.first() {
            Some(b'>' | b'<' | b'#' | b'!') => password(user, op)?,
            Some(b'(') => {
                let inner = op
                    .strip_prefix(b"(")
                    .and_then(|o| o.strip_suffix(b")"))
                    .ok_or(SetUserError::Syntax)?;
                let mut sel = Selector::empty();
                for part in inner.split(|c| *c == b' ').filter(|p| !p.is_empty()) {
                    selector(&mut sel, part)?;
                }
                user.selectors.push(sel);
            }
            _ => selector(&mut user.root, op)?,
        },
    }
    Ok(())
}

fn password(user: &mut User, op: &[u8]) -> Result<(), SetUserError> {
    let (kind, rest) = op.split_first().ok_or(SetUserError::Syntax)?;
    let digest = match kind {
        b'>' | b'<' => sha256(rest),
        _ => hash(rest)?,
    };
    user.nopass = false;
    if matches!(kind, b'>' | b'#') {
        if !user.passwords.contains(&digest) {
            user.passwords.push(digest);
        }
        return Ok(());
    }
    let before = user.passwords.len();
    user.passwords.retain(|p| *p != digest);
    if user.passwords.len() == before {
        return Err(SetUserError::NoSuchPassword);
    }
    Ok(())
}

/// A modifier of keys, channels or commands, for the root selector or one
/// in parentheses.
fn selector(sel: &mut Selector, op: &[u8]) -> Result<(), SetUserError> {
    let lower = op.to_ascii_lowercase();
    match &lower[..] {
        b"allkeys" | b"~*" => {
            sel.keys = Reach::everything();
            sel.read_keys.clear();
            sel.write_keys.clear();
        }
        b"resetkeys" => {
            sel.keys = Reach::none();
            sel.read_keys.clear();
            sel.write_keys.clear();
        }
        b"allchannels" | b"&*" => sel.channels = Reach::everything(),
        b"resetchannels" => sel.channels = Reach::none(),
        _ => match op.first() {
            Some(b'~') => {
                if sel.keys.all {
                    return Err(SetUserError::AfterAllKeys);
                }
                push(&mut sel.keys.patterns, &op[1..]);
            }
            Some(b'%') => {
                let tilde = op
                    .iter()
                    .position(|c| *c == b'~')
                    .ok_or(SetUserError::Syntax)?;
                let perms = op[1..tilde].to_ascii_uppercase();
                let (read, write) = match &perms[..] {
                    b"R" => (true, false),
                    b"W" => (false, true),
                    b"RW" | b"WR" => (true, true),
                    _ => return Err(SetUserError::Syntax),
                };
                if sel.keys.all {
                    return Err(SetUserError::AfterAllKeys);
                }
                let pattern = &op[tilde + 1..];
                match (read, write) {
                    (true, true) if pattern == b"*" => {
                        sel.keys = Reach::everything();
                        sel.read_keys.clear();
                        sel.write_keys.clear();
                    }
                    (true, true) => push(&mut sel.keys.patterns, pattern),
                    (true, false) => push(&mut sel.read_keys, pattern),
                    _ => push(&mut sel.write_keys, pattern),
                }
            }
            Some(b'&') => {
                if sel.channels.all {
                    return Err(SetUserError::AfterAllChannels);
                }
                push(&mut sel.channels.patterns, &op[1..]);
            }
            _ => {
                let rule = std::str::from_utf8(op).map_err(|_| SetUserError::Syntax)?;
                sel.command_rule(rule).map_err(|e| match e {
                    RuleError::NotARule => SetUserError::Syntax,
                    RuleError::Unknown => SetUserError::Unknown,
                })?;
            }
        },
    }
    Ok(())
}

fn push(patterns: &mut Vec<Bytes>, pattern: &[u8]) {
    if !patterns.iter().any(|p| &p[..] == pattern) {
        patterns.push(Bytes::copy_from_slice(pattern));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(ops: &[&str]) -> Result<User, SetUserError> {
        let mut u = new_user("u");
        for op in ops {
            apply(&mut u, op.as_bytes())?;
        }
        Ok(u)
    }

    #[test]
    fn users_are_described_as_redis_describes_them() {
        // Each line as redis-server lists the same modifiers (command
        // rules in the order applied, as Redis 7.2 keeps them).
        let u = user(&[]).unwrap();
        assert_eq!(u.describe(None), "user u off resetchannels -@all");
        let u = user(&[
            "reset",
            "on",
            "nopass",
            "+@all",
            "-@geo",
            "+get",
            "-get",
            "~a*",
            "%R~b*",
            "&c*",
            "(+set ~x*)",
        ])
        .unwrap();
        assert_eq!(
            u.describe(None),
            "user u on nopass sanitize-payload ~a* %R~b* resetchannels &c* +@all -@geo -get (~x* resetchannels -@all +set)"
        );
        let u = user(&[
            "-@all",
            "+@hash",
            "+@set",
            "+set",
            "-hset",
            "+@hash",
            "+client|id",
        ])
        .unwrap();
        assert_eq!(
            u.describe(None),
            "user u off resetchannels -@all +@set +set -hset +@hash +client|id"
        );
        let u = user(&["+client|id", "-client", "+@all", "-get", "-GET"]).unwrap();
        assert_eq!(u.describe(None), "user u off resetchannels +@all -get");
        let u = user(&[">p1", ">p2", "<p1", "allkeys", "allchannels"]).unwrap();
        assert_eq!(
            u.describe(None),
            format!(
                "user u off #{} ~* &* -@all",
                super::super::user::hex(&sha256(b"p2"))
            )
        );
    }

    #[test]
    fn bad_modifiers_are_refused_as_in_redis() {
        assert_eq!(user(&["get"]).unwrap_err(), SetUserError::Syntax);
        assert_eq!(user(&["+@nosuch"]).unwrap_err(), SetUserError::Unknown);
        assert_eq!(user(&["+nosuch"]).unwrap_err(), SetUserError::Unknown);
        assert_eq!(user(&["#abc"]).unwrap_err(), SetUserError::BadHash);
        let upper = "5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8";
        assert_eq!(
            user(&[&format!("#{upper}")]).unwrap_err(),
            SetUserError::BadHash
        );
        assert_eq!(user(&["%X~a"]).unwrap_err(), SetUserError::Syntax);
        assert_eq!(user(&["<nope"]).unwrap_err(), SetUserError::NoSuchPassword);
        assert_eq!(
            user(&["allkeys", "~a"]).unwrap_err(),
            SetUserError::AfterAllKeys
        );
        assert_eq!(
            user(&["&*", "&a"]).unwrap_err(),
            SetUserError::AfterAllChannels
        );
        assert_eq!(user(&["(on)"]).unwrap_err(), SetUserError::Syntax);
        assert!(user(&["nopass", ">x"]).is_ok_and(|u| !u.nopass));
    }
}
