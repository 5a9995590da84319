//! ACL LOG: the most recent denials (refused commands, keys, channels and
//! failed logins), as Redis keeps them: a repeat of the same denial within
//! a minute counts in its entry instead of adding one; at most
//! `MAX_ENTRIES` are kept.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::reply::Reply;

/// Redis's default `acllog-max-len`.
const MAX_ENTRIES: usize = 128;
/// A denial repeated within this long counts in the same entry.
const GROUP_WITHIN: Duration = Duration::from_secs(60);

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The command or `command|subcommand`.
    Command(String),
    /// One of its keys (the first refused).
    Key(String),
    /// One of its channels.
    Channel(String),
    /// A failed AUTH or HELLO AUTH.
    Auth,
}

impl Denial {
    /// Redis's error text for the denial (for a command the client sent).
    pub fn text(&self) -> String {
        match self {
            Denial::Command(c) => {
                format!("NOPERM this user has no permissions to run the '{c}' command")
            }
            Denial::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denial::Channel(_) => {
                "NOPERM this user has no permissions to access one of the channels used as arguments"
                    .into()
            }
            Denial::Auth => "WRONGPASS invalid username-password pair or user is disabled.".into(),
        }
    }

    /// What ACL LOG and the metrics call it.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Command(_) => "command",
            Denial::Key(_) => "key",
            Denial::Channel(_) => "channel",
            Denial::Auth => "auth",
        }
    }

    fn object<'a>(&'a self, command: &'a str) -> &'a str {
        match self {
            Denial::Command(c) => c,
            Denial::Key(k) | Denial::Channel(k) => k,
            Denial::Auth => command,
        }
    }
}

struct Entry {
    count: u64,
    reason: &'static str,
    context: &'static str,
    object: String,
    username: String,
    client_info: String,
    created: Instant,
    updated: Instant,
}

#[derive(Default)]
pub struct AclLog(Mutex<VecDeque<Entry>>);

impl AclLog {
    /// Records a denial of `username`'s `command`, in `context`
    /// ("toplevel", "multi"); `client_info` is the client's CLIENT LIST line.
    pub fn add(
        &self,
        denial: &Denial,
        command: &str,
        context: &'static str,
        username: &str,
        client_info: String,
    ) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let object = denial.object(command);
        if let Some(e) = log.iter_mut().find(|e| {
            e.reason == denial.reason()
                && e.context == context
                && e.object == object
                && e.username == username
                && now.duration_since(e.updated) < GROUP_WITHIN
        }) {
            e.count = e.count.saturating_add(1);
            e.updated = now;
            e.client_info = client_info;
            return;
        }
        log.push_front(Entry {
            count: 1,
            reason: denial.reason(),
            context,
            object: object.to_string(),
            username: username.to_string(),
            client_info,
            created: now,
            updated: now,
        });
        log.truncate(MAX_ENTRIES);
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The newest `count` entries, as ACL LOG answers them.
    pub fn entries(&self, count: usize) -> Reply {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = |v: &str| Reply::bulk_str(v);
        Reply::Array(
            log.iter()
                .take(count)
                .map(|e| {
                    Reply::Map(vec![
                        (s("count"), Reply::Int(e.count as i64)),
                        (s("reason"), s(e.reason)),
                        (s("context"), s(e.context)),
                        (s("object"), s(&e.object)),
                        (s("username"), s(&e.username)),
                        (
                            s("age-seconds"),
                            Reply::Double(e.created.elapsed().as_secs_f64()),
                        ),
                        (s("client-info"), s(e.client_info.trim_end())),
                    ])
                })
                .collect(),
        )
    }
}
