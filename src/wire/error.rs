//! Errors at keyway's boundaries. Command errors carry Redis's exact texts;
//! `From<CmdError> for Reply` is where they become RESP error replies.

use bytes::Bytes;
use thiserror::Error;

use crate::wire::reply::Reply;

/// A command that fails with a reply, as Redis would answer it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CmdError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{sub}'. Try {cmd} HELP.")]
    UnknownSubcommand { cmd: String, sub: String },
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error(
        "ERR this key's namespace is on a {backend} backend, which has only database 0 (the client selected {db})"
    )]
    NoDatabases { db: u8, backend: String },
    /// A subcommand's own argument check (Redis's
    /// addReplySubcommandSyntaxError): `sub` as the client typed it.
    #[error("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {cmd} HELP.")]
    SubcommandSyntax { cmd: String, sub: String },
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR no namespace owns key '{0}'")]
    NoNamespace(String),
    #[error("ERR '{command}' is not supported by namespace '{namespace}' ({backend} backend)")]
    Unsupported {
        command: String,
        namespace: String,
        backend: String,
    },
    #[error(
        "ERR '{command}' spans namespaces {namespaces} on different backends; keyway cannot run it atomically"
    )]
    CrossBackend { command: String, namespaces: String },
    /// An argument that names keys by pattern (SORT BY/GET) could reach
    /// keys of another namespace, or of none.
    #[error("ERR {command} pattern '{pattern}' {why}")]
    PatternReach {
        command: String,
        pattern: String,
        why: String,
    },
    /// A key of one namespace that lands among another's on their shared
    /// backend.
    #[error(
        "ERR key '{key}' of namespace '{namespace}' is where namespace '{owner}' keeps its keys on their shared backend"
    )]
    Foreign {
        key: String,
        namespace: String,
        owner: String,
    },
    /// A write to a namespace configured `read_only`.
    #[error("READONLY namespace '{0}' is read-only (read_only = true)")]
    ReadOnly(String),
    #[error(
        "ERR value of {size} bytes is over namespace '{namespace}' limit of {max} bytes (max_value_size)"
    )]
    ValueTooLarge {
        size: usize,
        namespace: String,
        max: u64,
    },
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// Any other error; the text starts with its code (`ERR ...`).
    #[error("{0}")]
    Msg(String),
}

impl CmdError {
    pub fn msg(s: impl Into<String>) -> Self {
        CmdError::Msg(s.into())
    }

    /// Redis's reply to a command it does not know: the name and the first
    /// arguments, each quoted and followed by a space, bounded to ~128 bytes.
    pub fn unknown_command(args: &[Bytes]) -> Self {
        let name = args.first().map(|n| lossy(n, 128)).unwrap_or_default();
        let mut list = String::new();
        for a in args.iter().skip(1) {
            if list.len() >= 128 {
                break;
            }
            let room = 128 - list.len();
            list.push('\'');
            list.push_str(&lossy(a, room));
            list.push_str("' ");
        }
        CmdError::UnknownCommand { name, args: list }
    }
}

/// Text of a client-supplied argument for an error message, cut to `max`
/// bytes, and at a NUL byte, as Redis's `%s` prints it.
pub fn lossy(b: &[u8], max: usize) -> String {
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

impl From<CmdError> for Reply {
    fn from(e: CmdError) -> Reply {
        Reply::error(e.to_string())
    }
}

pub type CmdResult<T = Reply> = Result<T, CmdError>;

/// A problem in the configuration: the file, the field and what is wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{file}: {field}: {problem}")]
pub struct ConfigProblem {
    pub file: String,
    pub field: String,
    pub problem: String,
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_text_matches_redis() {
        let args: Vec<Bytes> = vec!["foo".into(), "a".into(), "b c".into()];
        assert_eq!(
            CmdError::unknown_command(&args).to_string(),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b c' "
        );
        assert_eq!(
            CmdError::unknown_command(&["x".into()]).to_string(),
            "ERR unknown command 'x', with args beginning with: "
        );
    }
}
