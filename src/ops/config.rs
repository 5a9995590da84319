//! Configuration: TOML with `${VAR}` / `${VAR:default}` substitution.
//!
//! Loading never stops at the first problem: each section, backend and
//! namespace is deserialized on its own and then [`Config::validate`] checks
//! how they fit together, so one run of `keyway --check-config` lists every
//! problem with its file and field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::backend::BackendConfig;
pub use crate::proxy::router::NamespaceConfig;
pub use crate::server::acl::UserConfig;
use crate::server::acl::Users;
pub use crate::server::settings::{DEFAULT_LISTEN, DebugCommand, ServerConfig};
use crate::wire::error::{ConfigError, ConfigProblem};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from, for messages; `<built-in>` for the default.
    pub source: String,
    pub server: ServerConfig,
    pub backends: BTreeMap<String, BackendConfig>,
    pub namespaces: Vec<NamespaceConfig>,
    /// `[[users]]`: logins besides `default` (see `server::acl`).
    pub users: Vec<UserConfig>,
}

impl Default for Config {
    /// No config file: one catch-all namespace on an in-process store.
    fn default() -> Self {
        let mut backends = BTreeMap::new();
        backends.insert("local".to_string(), BackendConfig::default_memory());
        Config {
            source: "<built-in>".into(),
            server: ServerConfig::default(),
            backends,
            namespaces: vec![NamespaceConfig::new("default", "", "local")],
            users: Vec::new(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![ConfigProblem {
                file: file.clone(),
                field: "(file)".into(),
                problem: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates `text`, which came from `file`.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems {
            file: file.to_string(),
            list: Vec::new(),
        };
        let text = substitute_env(text, &mut problems);
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let field = match e.span() {
                    Some(span) => {
                        let (line, col) = line_col(&text, span.start);
                        format!("line {line}, column {col}")
                    }
                    None => "(syntax)".into(),
                };
                problems.add(field, e.message().trim());
                return Err(ConfigError(problems.list));
            }
        };
        // Backends named in the file, even those with problems: a namespace
        // naming one of them is not reported a second time.
        let mut declared = Vec::new();
        // Each parsed namespace's place in the file: problems name the table
        // where it is, whichever tables before it failed to parse.
        let mut places = Vec::new();
        let mut config = Config {
            source: file.to_string(),
            server: ServerConfig::default(),
            backends: BTreeMap::new(),
            namespaces: Vec::new(),
            users: Vec::new(),
        };
        for (key, value) in table {
            match key.as_str() {
                "server" => {
                    if let Some(s) = problems.item::<ServerConfig>("server", value) {
                        config.server = s;
                    }
                }
                "backends" => match value {
                    toml::Value::Table(t) => {
                        for (name, v) in t {
                            declared.push(name.clone());
                            let field = format!("backends.{name}");
                            if let Some(b) = problems.item::<BackendConfig>(&field, v) {
                                config.backends.insert(name, b);
                            }
                        }
                    }
                    _ => problems.add("backends", "must be a table of [backends.NAME] sections"),
                },
                "namespaces" => match value {
                    toml::Value::Array(items) => {
                        for (i, v) in items.into_iter().enumerate() {
                            let field = format!("namespaces[{i}]");
                            if let Some(n) = problems.item::<NamespaceConfig>(&field, v) {
                                config.namespaces.push(n);
                                places.push(i);
                            }
                        }
                    }
                    _ => problems.add("namespaces", "must be an array of [[namespaces]] tables"),
                },
                "users" => match value {
                    toml::Value::Array(items) => {
                        for (i, v) in items.into_iter().enumerate() {
                            if let Some(u) = problems.item::<UserConfig>(&format!("users[{i}]"), v)
                            {
                                config.users.push(u);
                            }
                        }
                    }
                    _ => problems.add("users", "must be an array of [[users]] tables"),
                },
                other => problems.add(
                    other,
                    "unknown section (expected server, backends, namespaces or users)",
                ),
            }
        }
        // `password = "${PW:}"` with PW unset: no password, not "".
        if config.server.password.as_deref() == Some("") {
            config.server.password = None;
        }
        problems.list.extend(config.problems(&declared, &places));
        if problems.list.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems.list))
        }
    }

    /// Checks how the parts fit together; Ok when there is no problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.problems(&[], &[]);
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }

    /// `places` gives each namespace's position among the file's tables,
    /// when some failed to parse; empty, the positions are the indexes.
    fn problems(&self, declared: &[String], places: &[usize]) -> Vec<ConfigProblem> {
        let mut p = Problems {
            file: self.source.clone(),
            list: Vec::new(),
        };
        if !listen_address(&self.server.listen) {
            p.add(
                "server.listen",
                format!(
                    "'{}' is not an address (expected host:port, such as {DEFAULT_LISTEN} or localhost:6380)",
                    self.server.listen
                ),
            );
        }
        if let Some(m) = &self.server.metrics_listen {
            if !listen_address(m) {
                p.add(
                    "server.metrics_listen",
                    format!("'{m}' is not an address (expected host:port, such as 127.0.0.1:9121)"),
                );
            } else if *m == self.server.listen && !m.ends_with(":0") {
                // Port 0 picks a free port for each.
                p.add("server.metrics_listen", "must differ from server.listen");
            }
        }
        if let Some(t) = &self.server.tls_listen {
            if !listen_address(t) {
                p.add(
                    "server.tls_listen",
                    format!("'{t}' is not an address (expected host:port, such as 0.0.0.0:6390)"),
                );
            } else if *t == self.server.listen && !t.ends_with(":0") {
                p.add("server.tls_listen", "must differ from server.listen");
            }
            let problems = self.server.tls.problems();
            if problems.is_empty() {
                // The files are read now, so that a bad one is reported
                // (and a reload with it refused) before it is needed.
                if let Err(e) = self.server.tls.build() {
                    let (field, problem) = e.split_once(": ").unwrap_or(("tls", &e));
                    p.add(format!("server.{field}"), problem);
                }
            }
            for (field, problem) in problems {
                p.add(format!("server.{field}"), problem);
            }
        }
        if self.server.max_clients == 0 {
            p.add("server.max_clients", "must be at least 1");
        }
        if !(1..=256).contains(&self.server.databases) {
            p.add("server.databases", "must be from 1 to 256");
        }
        if self.server.max_bulk_len.0 == 0 {
            p.add("server.max_bulk_len", "must be at least 1 byte");
        } else if self.server.max_bulk_len.0 >= 4 << 30 {
            p.add(
                "server.max_bulk_len",
                "must be under 4gb (keys are stored with 32-bit lengths)",
            );
        }
        if self.server.unauthenticated_max_args < 2 {
            p.add(
                "server.unauthenticated_max_args",
                "must be at least 2 (AUTH and its password)",
            );
        }
        if self.server.unauthenticated_max_bulk.0 < 64 {
            p.add(
                "server.unauthenticated_max_bulk",
                "must be at least 64 bytes (a password must fit)",
            );
        }
        let mc = self.server.max_memory_clients.0;
        if mc != 0 && mc < 1 << 20 {
            p.add(
                "server.max_memory_clients",
                "must be at least 1mb, or 0 for no bound",
            );
        }
        if self.namespaces.is_empty() {
            p.add(
                "namespaces",
                "no namespace is defined; add a [[namespaces]] table (prefix = \"\" is the catch-all)",
            );
        }
        let mut names = BTreeMap::new();
        let mut prefixes = BTreeMap::new();
        for (k, ns) in self.namespaces.iter().enumerate() {
            let i = places.get(k).copied().unwrap_or(k);
            let field = |f: &str| format!("namespaces[{i}].{f}");
            if ns.name.is_empty() {
                p.add(field("name"), "must not be empty");
            } else if let Some(j) = names.insert(ns.name.as_str(), i) {
                p.add(
                    field("name"),
                    format!(
                        "duplicate namespace name '{}' (also namespaces[{j}])",
                        ns.name
                    ),
                );
            }
            if let Some(j) = prefixes.insert(ns.prefix.as_str(), i) {
                p.add(
                    field("prefix"),
                    format!("duplicate prefix '{}' (also namespaces[{j}])", ns.prefix),
                );
            }
            let unknown = |name: &str| {
                if self.backends.contains_key(name) || declared.iter().any(|d| d == name) {
                    return None;
                }
                let mut known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
                known.extend(declared.iter().map(String::as_str));
                known.sort_unstable();
                known.dedup();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                Some(format!("no backend named '{name}' (defined: {known})"))
            };
            if let Some(problem) = unknown(&ns.backend) {
                p.add(field("backend"), problem);
            }
            if let Some(m) = &ns.mirror {
                if *m == ns.backend {
                    p.add(
                        field("mirror"),
                        format!("'{m}' is the namespace's own backend; name another to fill"),
                    );
                } else if let Some(problem) = unknown(m) {
                    p.add(field("mirror"), problem);
                }
            }
            if let Some(f) = ns.shadow_reads {
                if !(f > 0.0 && f <= 1.0) {
                    p.add(
                        field("shadow_reads"),
                        format!("{f} is not a fraction more than 0 and at most 1"),
                    );
                } else if ns.mirror.is_none() {
                    p.add(
                        field("shadow_reads"),
                        "needs a `mirror` to read from; add one or remove this",
                    );
                }
            }
            if ns.default_ttl == Some(0) {
                p.add(
                    field("default_ttl"),
                    "must be at least 1 second (omit it for no TTL)",
                );
            }
            if ns.username.is_some() && ns.password.is_none() {
                p.add(
                    field("username"),
                    "needs a password (the login the namespace's connections use)",
                );
            }
            if ns.password.is_some() {
                let login = self
                    .backends
                    .get(&ns.backend)
                    .map(|b| b.with_credentials(None, "").is_some());
                if login == Some(false) {
                    p.add(
                        field("password"),
                        "only redis, redis-cluster and redis-shards backends take a login",
                    );
                }
            }
            if ns.max_value_size.is_some_and(|m| m.0 == 0) {
                p.add(
                    field("max_value_size"),
                    "must be at least 1 byte (omit it for no limit)",
                );
            }
        }
        for (name, b) in &self.backends {
            for problem in b.problems() {
                p.add(format!("backends.{name}.{}", problem.0), problem.1);
            }
        }
        let names: Vec<&str> = self.namespaces.iter().map(|n| n.name.as_str()).collect();
        for (field, problem) in Users::problems(&self.users, &names, self.server.password.is_some())
        {
            p.add(field, problem);
        }
        p.list
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.listen.parse().ok()
    }
}

struct Problems {
    file: String,
    list: Vec<ConfigProblem>,
}

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.list.push(ConfigProblem {
            file: self.file.clone(),
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// Deserializes one item, recording its problem (serde reports the first
    /// one per item) under the item's field path.
    fn item<T: serde::de::DeserializeOwned>(&mut self, field: &str, v: toml::Value) -> Option<T> {
        match v.try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                let (sub, problem) = describe_serde_error(e.message().trim());
                let field = if sub.is_empty() {
                    field.to_string()
                } else {
                    format!("{field}.{sub}")
                };
                self.add(field, problem);
                None
            }
        }
    }
}

/// Turns serde's "unknown field `x`, expected one of ..." into ("x", "unknown
/// field; expected one of ..."), so the field path names the culprit.
fn describe_serde_error(msg: &str) -> (String, String) {
    let quoted = |rest: &str| rest.split('`').next().unwrap_or("").to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = quoted(rest);
        let expected = rest.split_once(", ").map(|x| x.1).unwrap_or("");
        return (name, format!("unknown field; {expected}"));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return (quoted(rest), "missing (required)".into());
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let name = quoted(rest);
        let expected = rest.split_once(", expected ").map(|x| x.1).unwrap_or("");
        let choices = expected.replace("one of ", "").replace('`', "");
        // serde names the value, not the field: the backend enums are
        // told apart by their choices.
        if choices.contains("noeviction") {
            return (
                "eviction".into(),
                format!("unknown policy '{name}' (one of: {choices})"),
            );
        }
        return (
            "type".into(),
            format!("unknown backend type '{name}' (built in: {choices})"),
        );
    }
    (String::new(), msg.to_string())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

/// Replaces `${VAR}` and `${VAR:default}` outside comments.
fn substitute_env(text: &str, problems: &mut Problems) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                problems.add(
                    format!("line {}", n + 1),
                    "unclosed '${' (expected ${VAR} or ${VAR:default})",
                );
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(':') {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (std::env::var(name), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    problems.add(
                        format!("line {}", n + 1),
                        format!("environment variable '{name}' is not set and ${{{name}}} has no default (write ${{{name}:default}})"),
                    );
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    out
}

/// Where a `#` comment starts on a line, ignoring `#` inside strings.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_basic = false;
    let mut in_literal = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_basic => escaped = true,
            '"' if !in_literal => in_basic = !in_basic,
            '\'' if !in_basic => in_literal = !in_literal,
            '#' if !in_basic && !in_literal => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether `s` is an address to listen on: an IP and port, or a host name
/// and port (`localhost:6380`), resolved when keyway binds it.
pub fn listen_address(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok()
                && !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_addresses_take_ips_and_host_names() {
        for ok in [
            "127.0.0.1:6380",
            "[::1]:6380",
            "localhost:6380",
            "redis-proxy.internal:0",
        ] {
            assert!(super::listen_address(ok), "{ok}");
        }
        for bad in ["localhost", ":6380", "host:port", "a b:1", "host:70000", ""] {
            assert!(!super::listen_address(bad), "{bad}");
        }
    }

    use super::*;

    fn errors(text: &str) -> String {
        Config::parse(text, "k.toml").unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(
            r#"
            [server]
            listen = "127.0.0.1:7000"
            max_clients = 5
            [backends.local]
            type = "memory"
            [[namespaces]]
            name = "confirmation"
            prefix = "confirm:"
            backend = "local"
            default_ttl = 900
            strip_prefix = true
            key_prefix = "app:"
            [[namespaces]]
            name = "rest"
            prefix = ""
            backend = "local"
            "#,
            "k.toml",
        )
        .unwrap();
        assert_eq!(c.server.max_clients, 5);
        assert_eq!(c.namespaces[0].default_ttl, Some(900));
        assert!(c.namespaces[0].strip_prefix);
        assert_eq!(c.namespaces.len(), 2);
    }

    #[test]
    fn redis_backend_problems() {
        let text = r#"
            [backends.a]
            type = "redis"
            url = "redis//x"
            connections = 0
            connect_timeout_ms = 0
            [backends.b]
            type = "redis"
            url = "redis://cache:6379/x"
            tls_ca_file = "/nonexistent/ca.pem"
            [[namespaces]]
            name = "a"
            prefix = ""
            backend = "a"
        "#;
        let e = errors(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            vec![
                "k.toml: backends.a.url: 'redis//x' must start with redis:// or rediss:// (TLS)",
                "k.toml: backends.a.connections: must be between 1 and 256",
                "k.toml: backends.a.connect_timeout_ms: must be at least 1",
                "k.toml: backends.b.url: database 'x' in 'redis://cache:6379/x' is not a number",
                "k.toml: backends.b.tls_ca_file: cannot read '/nonexistent/ca.pem': I/O error: No such file or directory (os error 2)",
            ],
            "{e}"
        );
    }

    #[test]
    fn memcached_backend_problems_and_limits() {
        let text = r#"
            [backends.m]
            type = "memcached"
            servers = ["localhost", "h:0"]
            connections = 0
            [[namespaces]]
            name = "a"
            prefix = ""
            backend = "m"
        "#;
        let e = errors(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            vec![
                "k.toml: backends.m.servers[0]: 'localhost' is not host:port",
                "k.toml: backends.m.servers[1]: 'h:0' is not host:port",
                "k.toml: backends.m.connections: must be between 1 and 256",
            ],
            "{e}"
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
            [server]
            listen = "nowhere"
            bogus = 1
            [backends.local]
            type = "memory"
            [backends.other]
            type = "cassandra"
            [[namespaces]]
            name = "a"
            prefix = "a:"
            backend = "missing"
            mirror = "gone"
            shadow_reads = 2.0
            [[namespaces]]
            name = "a"
            prefix = "a:"
            backend = "local"
            mirror = "local"
            [[namespaces]]
            name = "c"
            prefx = "c:"
            backend = "local"
            [[namespaces]]
            name = "d"
            prefix = "d:"
            backend = "local"
            max_value_size = 0
            shadow_reads = 0.5
        "#;
        let e = errors(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            vec![
                "k.toml: backends.other.type: unknown backend type 'cassandra' (built in: memory, redis, redis-cluster, redis-shards, memcached)",
                "k.toml: namespaces[2].prefx: unknown field; expected one of `name`, `prefix`, `backend`, `default_ttl`, `strip_prefix`, `key_prefix`, `read_only`, `max_value_size`, `mirror`, `shadow_reads`, `strict_scripts`, `username`, `password`",
                "k.toml: server.bogus: unknown field; expected one of `listen`, `max_clients`, `max_bulk_len`, `password`, `metrics_listen`, `slowlog_log_slower_than`, `slowlog_max_len`, `timeout`, `client_output_buffer_limit`, `max_memory_clients`, `unauthenticated_max_args`, `unauthenticated_max_bulk`, `enable_debug_command`, `tls_listen`, `tls`, `protected_mode`, `databases`, `migration_state`",
                "k.toml: namespaces[0].backend: no backend named 'missing' (defined: local, other)",
                "k.toml: namespaces[0].mirror: no backend named 'gone' (defined: local, other)",
                "k.toml: namespaces[0].shadow_reads: 2 is not a fraction more than 0 and at most 1",
                "k.toml: namespaces[1].name: duplicate namespace name 'a' (also namespaces[0])",
                "k.toml: namespaces[1].prefix: duplicate prefix 'a:' (also namespaces[0])",
                "k.toml: namespaces[1].mirror: 'local' is the namespace's own backend; name another to fill",
                "k.toml: namespaces[3].shadow_reads: needs a `mirror` to read from; add one or remove this",
                "k.toml: namespaces[3].max_value_size: must be at least 1 byte (omit it for no limit)",
            ],
            "{e}"
        );
    }

    #[test]
    fn env_substitution() {
        // SAFETY of set_var: tests in this module use their own variable names.
        unsafe { std::env::set_var("KEYWAY_TEST_PORT", "7001") };
        let c = Config::parse(
            "[server]\nlisten = \"${KEYWAY_TEST_HOST:127.0.0.1}:${KEYWAY_TEST_PORT}\" # ${NOT_READ}\n\
             [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"n\"\nprefix = \"\"\nbackend = \"m\"\n",
            "k.toml",
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7001");
        assert_eq!(
            errors("[server]\nlisten = \"${KEYWAY_TEST_UNSET}\"\n"),
            "k.toml: line 2: environment variable 'KEYWAY_TEST_UNSET' is not set and ${KEYWAY_TEST_UNSET} has no default (write ${KEYWAY_TEST_UNSET:default})\n\
             k.toml: server.listen: '' is not an address (expected host:port, such as 127.0.0.1:6380 or localhost:6380)\n\
             k.toml: namespaces: no namespace is defined; add a [[namespaces]] table (prefix = \"\" is the catch-all)"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert!(errors("[server\n").starts_with("k.toml: line 1, column"));
    }
}
