//! One user: its login (passwords, on/off) and what it may run, as Redis 7
//! keeps it: a root selector and any further selectors (`(+set ~app*)`);
//! a request passes when one selector allows all of it. ACL LIST and
//! GETUSER describe it in Redis's words.

use bytes::Bytes;

use super::{Denial, Reach};
use crate::proxy::confine;
use crate::proxy::keyspace::Visible;
use crate::proxy::router::{Namespace, Router};
use crate::wire::command::{CommandSpec, KEYSPACE, PUBSUB, REACHES, SCRIPT, WRITE};
use crate::wire::error::lossy;
use crate::wire::metrics::metrics;
use crate::wire::reply::Reply;
use crate::wire::util::glob_match;

use super::rules::{Commands, RuleError};

/// What one selector allows: commands, keys and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub(super) commands: Commands,
    /// The command rules as given, each once, in the order last applied
    /// (Redis 7.2's `command_rules`): what ACL LIST writes back.
    rules: Vec<String>,
    /// `commands.all()`, kept: most users may run everything.
    pub(super) all_commands: bool,
    /// Namespaces and `~pattern`s: keys read and written.
    pub keys: Reach,
    /// `%R~pattern`s: keys only read.
    pub(super) read_keys: Vec<Bytes>,
    /// `%W~pattern`s: keys only written.
    pub(super) write_keys: Vec<Bytes>,
    pub channels: Reach,
}

/// Commands that write their keys without reading them: a `%W~` pattern
/// is enough for these, as Redis's key specs say (`OW`, `RM`); any other
/// write needs the key readable too.
fn only_writes(spec: &CommandSpec, args: &[Bytes]) -> bool {
    match spec.name {
        "del" | "unlink" | "mset" | "setex" | "psetex" => true,
        "set" => !args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET")),
        _ => false,
    }
}

impl Selector {
    pub(super) fn new(commands: Commands, keys: Reach, channels: Reach) -> Selector {
        Selector {
            all_commands: commands.all(),
            rules: Vec::new(),
            commands,
            keys,
            read_keys: Vec::new(),
            write_keys: Vec::new(),
            channels,
        }
    }

    /// `-@all`, no keys, no channels: where a new user or selector starts.
    pub(super) fn empty() -> Selector {
        Selector::new(Commands::none(), Reach::none(), Reach::none())
    }

    /// Applies a command rule (`+get`, `-@write`, `allcommands`...): a
    /// rule given again replaces its older self, as does a command its
    /// subcommands' rules; `+@all` and `-@all` start the list anew.
    pub(super) fn command_rule(&mut self, rule: &str) -> Result<(), RuleError> {
        self.commands.apply(rule)?;
        self.all_commands = self.commands.all();
        let lower = rule.to_ascii_lowercase();
        let name = match lower.as_str() {
            "allcommands" | "nocommands" | "+@all" | "-@all" => {
                self.rules.clear();
                return Ok(());
            }
            r => &r[1..],
        };
        self.rules.retain(|r| {
            let old = &r[1..];
            old != name && !old.strip_prefix(name).is_some_and(|s| s.starts_with('|'))
        });
        self.rules.push(lower);
        Ok(())
    }

    /// The command rules as Redis writes them back.
    fn describe_commands(&self) -> String {
        let mut out = String::from(if self.commands.future() {
            "+@all"
        } else {
            "-@all"
        });
        for r in &self.rules {
            out.push(' ');
            out.push_str(r);
        }
        out
    }

    /// Whether `spec` may touch `key` (which `ns` owns) for what it does.
    fn key_ok(
        &self,
        spec: &CommandSpec,
        args: &[Bytes],
        ns: Option<&Namespace>,
        key: &[u8],
    ) -> bool {
        if self.keys.allows(ns, key) {
            return true;
        }
        let read = || self.read_keys.iter().any(|p| glob_match(p, key));
        if !spec.has(WRITE) {
            return read();
        }
        self.write_keys.iter().any(|p| glob_match(p, key)) && (only_writes(spec, args) || read())
    }

    fn check(&self, spec: &CommandSpec, args: &[Bytes], router: &Router) -> Result<(), Denial> {
        // Commands Redis flags no-auth are never refused by a user's
        // rules: a client may always log in as someone else, or leave.
        if matches!(spec.name, "auth" | "hello" | "quit" | "reset") {
            return Ok(());
        }
        if !self.all_commands {
            self.commands
                .allows(spec.name, args.get(1).map(|a| &a[..]))
                .map_err(Denial::Command)?;
        }
        if !self.keys.all && !spec.has(KEYSPACE) && !spec.has(PUBSUB) {
            self.check_keys(spec, args, router)?;
        }
        if !self.channels.all && spec.has(PUBSUB) {
            let named: &[Bytes] = match spec.name {
                "subscribe" | "ssubscribe" => args.get(1..).unwrap_or_default(),
                "publish" | "spublish" => args.get(1..2).unwrap_or_default(),
                _ => &[],
            };
            for ch in named {
                if !self.channels.allows(router.route(ch).map(|n| &**n), ch) {
                    return Err(Denial::Channel(lossy(ch, 128)));
                }
            }
            if spec.name == "psubscribe" {
                for p in args.get(1..).unwrap_or_default() {
                    if !self.channels.allows_pattern(router, p) {
                        return Err(Denial::Channel(lossy(p, 128)));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_keys(
        &self,
        spec: &CommandSpec,
        args: &[Bytes],
        router: &Router,
    ) -> Result<(), Denial> {
        let positions = spec.key_positions(args);
        let script = spec.has(SCRIPT);
        for &p in &positions {
            let Some(k) = args.get(p) else { continue };
            let ns = router.route(k);
            // A script may touch any key of its keys' namespaces: only a
            // user with the whole namespace may run it.
            let ok = if script {
                ns.is_some_and(|n| self.keys.namespace(n))
            } else {
                self.key_ok(spec, args, ns.map(|n| &**n), k)
            };
            if !ok {
                return Err(Denial::Key(lossy(k, 128)));
            }
        }
        if script
            && positions.is_empty()
            && !router.route(b"").is_some_and(|n| self.keys.namespace(n))
        {
            return Err(Denial::Key(String::new()));
        }
        if spec.has(REACHES) {
            if let Some(owner) = positions
                .first()
                .and_then(|&p| args.get(p))
                .and_then(|k| router.route(k))
            {
                // A refused pattern is answered by dispatch, as for anyone.
                if let Ok(reached) = confine::reach(router, spec, args, owner) {
                    for (i, ns) in reached {
                        if !self.keys.namespace(ns) {
                            let k = args.get(i).map(|k| lossy(k, 128)).unwrap_or_default();
                            return Err(Denial::Key(k));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Keys as Redis lists them: `~*`, or each pattern with its sigil.
    fn describe_keys(&self, router: Option<&Router>) -> Vec<String> {
        let mut out = self.keys.describe(router, "~");
        if !self.keys.all {
            let partial = |sigil: &str, ps: &[Bytes]| {
                ps.iter()
                    .map(|p| format!("{sigil}{}", String::from_utf8_lossy(p)))
                    .collect::<Vec<_>>()
            };
            out.extend(partial("%R~", &self.read_keys));
            out.extend(partial("%W~", &self.write_keys));
        }
        out
    }

    /// The selector as ACL LIST writes it.
    fn describe(&self, router: Option<&Router>) -> String {
        let mut parts = self.describe_keys(router);
        if !self.channels.all {
            parts.push("resetchannels".into());
        }
        parts.extend(self.channels.describe(router, "&"));
        parts.push(self.describe_commands());
        parts.join(" ")
    }

    /// commands, keys, channels: a selector in ACL GETUSER.
    fn fields(&self, router: Option<&Router>) -> Vec<(Reply, Reply)> {
        let s = |v: &str| Reply::bulk_str(v);
        vec![
            (s("commands"), s(&self.describe_commands())),
            (s("keys"), s(&self.describe_keys(router).join(" "))),
            (
                s("channels"),
                s(&self.channels.describe(router, "&").join(" ")),
            ),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub(super) nopass: bool,
    /// SHA-256 of each password.
    pub(super) passwords: Vec<[u8; 32]>,
    /// `sanitize-payload` or `skip-sanitize-payload`, once set.
    pub(super) sanitize: Option<bool>,
    pub(super) root: Selector,
    pub(super) selectors: Vec<Selector>,
    counted: Counted,
}

/// The user's command counter (`keyway_user_commands_total`); not part of
/// what makes two users the same.
#[derive(Debug, Clone)]
struct Counted(prometheus_client::metrics::counter::Counter);

impl PartialEq for Counted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Counted {}

pub(super) fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(super) fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(b.get(2 * i..2 * i + 2)?).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl User {
    /// A user with its login and root selector.
    pub(super) fn new(
        name: &str,
        enabled: bool,
        passwords: Vec<[u8; 32]>,
        nopass: bool,
        root: Selector,
    ) -> User {
        User {
            name: name.to_string(),
            enabled,
            nopass,
            passwords,
            sanitize: None,
            root,
            selectors: Vec::new(),
            counted: Counted(metrics().user_commands(name)),
        }
    }

    /// Counts `n` commands run as the user.
    pub fn ran(&self, n: usize) {
        self.counted.0.inc_by(n as u64);
    }

    /// Whether `password` is one of the user's (any, with nopass).
    pub(super) fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = sha256(password);
        // Every hash is compared, found or not.
        self.passwords
            .iter()
            .fold(false, |ok, p| same(p, &given) | ok)
    }

    /// Whether the user may run `args` (of `spec`) as `router` routes it:
    /// the root selector's answer, unless another selector allows it.
    pub fn check(&self, spec: &CommandSpec, args: &[Bytes], router: &Router) -> Result<(), Denial> {
        let denied = match self.root.check(spec, args, router) {
            Ok(()) => return Ok(()),
            Err(d) => d,
        };
        if self
            .selectors
            .iter()
            .any(|s| s.check(spec, args, router).is_ok())
        {
            return Ok(());
        }
        Err(denied)
    }

    fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize {
            Some(true) => flags.push("sanitize-payload"),
            Some(false) => flags.push("skip-sanitize-payload"),
            None => {}
        }
        flags
    }

    /// The user's line in ACL LIST.
    pub fn describe(&self, router: Option<&Router>) -> String {
        let mut parts = vec![format!("user {}", self.name)];
        parts.extend(self.flags().into_iter().map(String::from));
        parts.extend(self.passwords.iter().map(|p| format!("#{}", hex(p))));
        parts.push(self.root.describe(router));
        parts.extend(
            self.selectors
                .iter()
                .map(|s| format!("({})", s.describe(router))),
        );
        parts.join(" ")
    }

    /// What ACL GETUSER answers: flags, passwords, commands, keys,
    /// channels, selectors.
    pub fn getuser(&self, router: Option<&Router>) -> Reply {
        let s = |v: &str| Reply::bulk_str(v);
        let mut fields = vec![
            (
                s("flags"),
                Reply::Array(self.flags().into_iter().map(s).collect()),
            ),
            (
                s("passwords"),
                Reply::Array(self.passwords.iter().map(|p| s(&hex(p))).collect()),
            ),
        ];
        fields.extend(self.root.fields(router));
        fields.push((
            s("selectors"),
            Reply::Array(
                self.selectors
                    .iter()
                    .map(|sel| Reply::Map(sel.fields(router)))
                    .collect(),
            ),
        ));
        Reply::Map(fields)
    }
}

impl Visible for User {
    fn namespace(&self, ns: &Namespace, channels: bool) -> bool {
        let sel = &self.root;
        let r = if channels { &sel.channels } else { &sel.keys };
        r.namespace(ns) || !r.patterns.is_empty() || (!channels && !sel.read_keys.is_empty())
    }

    fn whole(&self, ns: &Namespace, channels: bool) -> bool {
        let r = if channels {
            &self.root.channels
        } else {
            &self.root.keys
        };
        r.namespace(ns)
    }

    fn name(&self, ns: &Namespace, name: &[u8], channels: bool) -> bool {
        let sel = &self.root;
        if channels {
            return sel.channels.allows(Some(ns), name);
        }
        sel.keys.allows(Some(ns), name) || sel.read_keys.iter().any(|p| glob_match(p, name))
    }
}
