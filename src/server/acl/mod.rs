//! Users and what each may do, in Redis's ACL terms so that clients work
//! unchanged: `AUTH user pass`, `HELLO 3 AUTH user pass`, `-NOPERM` with
//! Redis 7's texts, ACL WHOAMI / LIST / USERS / CAT / LOG / GETUSER /
//! DRYRUN.
//!
//! A user comes from a `[[users]]` table: its passwords (in clear, given
//! through `${VAR}`, or as SHA-256), the namespaces (or key patterns, as
//! Redis's `~pattern`) whose keys it may touch, its channels (by default
//! the same), and its commands in Redis's rule syntax (`+@read
//! -@dangerous`). The server's `password` is the `default` user's, with
//! every key and command, unless a `[[users]]` table names `default`.
//!
//! Users are checked before a command is routed (`Connection::check`);
//! whole-keyspace commands (KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSH*, PUBSUB
//! CHANNELS) see only what the user may touch (`Visible`).

pub mod categories;
mod log;
mod rules;
mod setuser;
mod user;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::proxy::router::{Namespace, Router};
use crate::wire::util::glob_match;

pub use log::{AclLog, Denial};
pub use rules::{Commands, category_commands};
pub use setuser::{SetUserError, merge_selectors};
pub use user::{Selector, User};
use user::{sha256, unhex};

fn all_commands() -> String {
    "+@all".into()
}
fn yes() -> bool {
    true
}

/// A `[[users]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// In clear: give it through `${VAR}`. Empty means no password.
    #[serde(default)]
    pub password: Option<String>,
    /// SHA-256 of the password, in hex (what `ACL LIST` shows after `#`).
    #[serde(default)]
    pub password_sha256: Option<String>,
    /// Namespaces whose keys the user may touch; "*" for every one.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Key patterns (Redis's `~pattern`) the user may touch, besides.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Channel patterns; by default the namespaces and key patterns apply.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Redis ACL command rules, such as `+@all -@dangerous`.
    #[serde(default = "all_commands")]
    pub commands: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// What names (keys or channels) a user may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub all: bool,
    pub namespaces: Vec<String>,
    pub patterns: Vec<Bytes>,
}

impl Reach {
    /// Nothing (`resetkeys`, `resetchannels`).
    fn none() -> Reach {
        Reach {
            all: false,
            namespaces: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// Everything (`allkeys`, `allchannels`).
    fn everything() -> Reach {
        Reach {
            all: true,
            ..Reach::none()
        }
    }

    fn new(namespaces: &[String], patterns: &[String]) -> Reach {
        Reach {
            all: namespaces.iter().any(|n| n == "*") || patterns.iter().any(|p| p == "*"),
            namespaces: namespaces.to_vec(),
            patterns: patterns
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect(),
        }
    }

    fn namespace(&self, ns: &Namespace) -> bool {
        self.all || self.namespaces.contains(&ns.name)
    }

    /// Whether `name`, which `ns` owns (None: no namespace), may be used.
    pub fn allows(&self, ns: Option<&Namespace>, name: &[u8]) -> bool {
        self.all
            || ns.is_some_and(|ns| self.namespaces.contains(&ns.name))
            || self.patterns.iter().any(|p| glob_match(p, name))
    }

    /// Whether every channel a PSUBSCRIBE pattern can match may be used:
    /// the pattern is one of the user's, or every namespace it can reach
    /// is.
    fn allows_pattern(&self, router: &Router, pattern: &[u8]) -> bool {
        if self.all || self.patterns.iter().any(|p| &p[..] == pattern) {
            return true;
        }
        let end = pattern
            .iter()
            .position(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
            .unwrap_or(pattern.len());
        let literal = pattern.get(..end).unwrap_or_default();
        let owner = router.route(literal);
        owner.is_some_and(|o| self.namespace(o))
            && router
                .namespaces
                .iter()
                .filter(|n| n.prefix.starts_with(literal))
                .all(|n| self.namespace(n))
    }

    /// For ACL LIST: the reach as Redis patterns.
    fn describe(&self, router: Option<&Router>, sigil: &str) -> Vec<String> {
        if self.all {
            return vec![format!("{sigil}*")];
        }
        let mut out = Vec::new();
        for name in &self.namespaces {
            let prefix = router
                .and_then(|r| r.namespaces.iter().find(|n| &n.name == name))
                .map(|n| String::from_utf8_lossy(&n.prefix).into_owned());
            match prefix {
                Some(p) => out.push(format!("{sigil}{p}*")),
                None => out.push(format!("{sigil}<namespace {name}>")),
            }
        }
        out.extend(
            self.patterns
                .iter()
                .map(|p| format!("{sigil}{}", String::from_utf8_lossy(p))),
        );
        out
    }
}

/// Every key, channel and command; no password unless one is given.
fn default_user(password: Option<&str>) -> User {
    let root = Selector::new(
        Commands::everything(),
        Reach::everything(),
        Reach::everything(),
    );
    let passwords: Vec<[u8; 32]> = password.map(|p| sha256(p.as_bytes())).into_iter().collect();
    User::new("default", true, passwords, password.is_none(), root)
}

fn from_config(c: &UserConfig) -> Result<User, String> {
    let mut passwords = Vec::new();
    if let Some(p) = c.password.as_deref().filter(|p| !p.is_empty()) {
        passwords.push(sha256(p.as_bytes()));
    }
    if let Some(h) = &c.password_sha256 {
        passwords
            .push(unhex(&h.to_ascii_lowercase()).ok_or("password_sha256 is not 64 hex digits")?);
    }
    let keys = Reach::new(&c.namespaces, &c.keys);
    let channels = match &c.channels {
        Some(ch) => Reach::new(&[], ch),
        None => keys.clone(),
    };
    let nopass = passwords.is_empty();
    let mut root = Selector::new(Commands::none(), keys, channels);
    for rule in c.commands.split_whitespace() {
        root.command_rule(rule)
            .map_err(|_| format!("'{rule}': not a command rule"))?;
    }
    Ok(User::new(&c.name, c.enabled, passwords, nopass, root))
}

/// Every user, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Users {
    by_name: HashMap<String, Arc<User>>,
    /// `by_name["default"]`, which is always there.
    default: Arc<User>,
}

impl Default for Users {
    fn default() -> Self {
        Users::build(&[], None)
    }
}

impl Users {
    /// The users of `[[users]]` (validated), with `default` made from the
    /// server's password unless a table names it.
    pub fn build(users: &[UserConfig], default_password: Option<&str>) -> Users {
        let mut by_name = HashMap::new();
        by_name.insert(
            "default".to_string(),
            Arc::new(default_user(default_password.filter(|p| !p.is_empty()))),
        );
        for c in users {
            if let Ok(u) = from_config(c) {
                by_name.insert(u.name.clone(), Arc::new(u));
            }
        }
        let default = by_name
            .get("default")
            .cloned()
            .unwrap_or_else(|| Arc::new(default_user(None)));
        Users { by_name, default }
    }

    /// `name` changed by ACL SETUSER's modifiers (created if missing),
    /// all or nothing: the users with it, or the modifier refused.
    pub fn set_user(&self, name: &str, ops: &[Bytes]) -> Result<Users, (Bytes, SetUserError)> {
        let mut user = match self.by_name.get(name) {
            Some(u) => User::clone(u),
            None => setuser::new_user(name),
        };
        for op in ops {
            setuser::apply(&mut user, op).map_err(|e| (op.clone(), e))?;
        }
        let mut next = self.clone();
        let user = Arc::new(user);
        if name == "default" {
            next.default = user.clone();
        }
        next.by_name.insert(name.to_string(), user);
        Ok(next)
    }

    /// The users without `names` (never `default`), and how many were.
    pub fn without(&self, names: &[String]) -> (Users, usize) {
        let mut next = self.clone();
        let removed = names
            .iter()
            .filter(|n| *n != "default" && next.by_name.remove(*n).is_some())
            .count();
        (next, removed)
    }

    /// The user a connection starts as.
    pub fn default_user(&self) -> &Arc<User> {
        &self.default
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.by_name.get(name)
    }

    /// Names in order, for ACL USERS.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether a new connection starts logged in (as `default`).
    pub fn open(&self) -> bool {
        self.default.enabled && self.default.nopass
    }

    /// The user `name` logs in as with `password`, if they match.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        let user = self.by_name.get(name)?;
        user.accepts(password).then(|| user.clone())
    }

    /// Users whose login changed or went away between `self` and `new`:
    /// their connections are closed, as Redis's ACL DELUSER does.
    pub fn changed(&self, new: &Users) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(name, u)| new.by_name.get(*name).is_none_or(|n| n != *u))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every problem of `[[users]]`, as (field, problem); `namespaces` are
    /// the configured namespace names.
    pub fn problems(
        users: &[UserConfig],
        namespaces: &[&str],
        server_password: bool,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let field = |f: &str| format!("users[{i}].{f}");
            if u.name.is_empty() || u.name.bytes().any(|c| !(b'!'..=b'~').contains(&c)) {
                out.push((field("name"), "must be printable, without spaces".into()));
            } else if let Some(j) = seen.insert(&u.name, i) {
                out.push((
                    field("name"),
                    format!("duplicate user '{}' (also users[{j}])", u.name),
                ));
            }
            if u.name == "default" && server_password {
                out.push((
                    field("name"),
                    "the default user's password is server.password: give it here or there, not both".into(),
                ));
            }
            if u.password.is_some() && u.password_sha256.is_some() {
                out.push((
                    field("password"),
                    "give password or password_sha256, not both".into(),
                ));
            }
            if let Some(h) = &u.password_sha256 {
                if unhex(&h.to_ascii_lowercase()).is_none() {
                    out.push((
                        field("password_sha256"),
                        "must be 64 hex digits (a SHA-256)".into(),
                    ));
                }
            }
            if u.namespaces.is_empty() && u.keys.is_empty() {
                out.push((
                    field("namespaces"),
                    "give the namespaces (or keys patterns) the user may touch; [\"*\"] for all"
                        .into(),
                ));
            }
            for (j, n) in u.namespaces.iter().enumerate() {
                if n != "*" && !namespaces.contains(&n.as_str()) {
                    out.push((
                        format!("users[{i}].namespaces[{j}]"),
                        format!(
                            "no namespace named '{n}' (defined: {})",
                            namespaces.join(", ")
                        ),
                    ));
                }
            }
            if let Err(e) = Commands::parse(&u.commands) {
                out.push((field("commands"), e));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::user::hex;
    use super::*;

    fn user(namespaces: &[&str], keys: &[&str], commands: &str) -> User {
        from_config(&UserConfig {
            name: "u".into(),
            password: Some("pw".into()),
            password_sha256: None,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            keys: keys.iter().map(|s| s.to_string()).collect(),
            channels: None,
            commands: commands.into(),
            enabled: true,
        })
        .unwrap()
    }

    #[test]
    fn passwords_in_clear_or_hashed_and_none() {
        let u = user(&["*"], &[], "+@all");
        assert!(u.accepts(b"pw"));
        assert!(!u.accepts(b"pw2"));
        let hashed = from_config(&UserConfig {
            password: None,
            password_sha256: Some(hex(&sha256(b"s3cret")).to_uppercase()),
            ..UserConfig::deserialize_default("h")
        })
        .unwrap();
        assert!(hashed.accepts(b"s3cret"));
        assert!(!hashed.accepts(b""));
        let open = from_config(&UserConfig {
            password: Some(String::new()),
            ..UserConfig::deserialize_default("o")
        })
        .unwrap();
        assert!(open.nopass && open.accepts(b"anything"));
        let users = Users::build(&[], Some(""));
        assert!(users.open(), "an empty server password is no password");
        assert!(!Users::build(&[], Some("x")).open());
    }

    impl UserConfig {
        fn deserialize_default(name: &str) -> UserConfig {
            UserConfig {
                name: name.into(),
                password: None,
                password_sha256: None,
                namespaces: vec!["*".into()],
                keys: Vec::new(),
                channels: None,
                commands: "+@all".into(),
                enabled: true,
            }
        }
    }

    #[test]
    fn problems_are_reported_together() {
        let bad = UserConfig {
            password: Some("a".into()),
            password_sha256: Some("zz".into()),
            namespaces: vec!["nosuch".into()],
            commands: "+@nosuch".into(),
            ..UserConfig::deserialize_default("default")
        };
        let p = Users::problems(&[bad.clone(), bad], &["A"], true);
        let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "users[0].name",
                "users[0].password",
                "users[0].password_sha256",
                "users[0].namespaces[0]",
                "users[0].commands",
                "users[1].name",
                "users[1].name",
                "users[1].password",
                "users[1].password_sha256",
                "users[1].namespaces[0]",
                "users[1].commands"
            ]
        );
    }
}
