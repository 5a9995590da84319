//! What `--check-config` prints for a good file: one line per namespace
//! with its policy, what its backend cannot serve, whether its scripts are
//! refused and why; then warnings about what the config exposes.

use std::net::SocketAddr;

use crate::ops::config::Config;
use crate::ops::security;
use crate::proxy::router::NamespaceConfig;
use crate::server::acl::Users;

/// One line per namespace: what `--check-config` prints for a good file.
pub fn summary(config: &Config) -> String {
    let mut out = format!(
        "{}: OK, listening on {}, {} namespace(s)\n",
        config.source,
        config.server.listen,
        config.namespaces.len()
    );
    let mut sorted: Vec<&NamespaceConfig> = config.namespaces.iter().collect();
    sorted.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(a.prefix.cmp(&b.prefix))
    });
    let refused = security::script_refusals(config);
    for ns in sorted {
        let kind = config.backends.get(&ns.backend).map_or("?", |b| b.kind());
        let prefix = if ns.prefix.is_empty() {
            "(catch-all)".to_string()
        } else {
            format!("'{}'", ns.prefix)
        };
        let mut policy = Vec::new();
        if let Some(t) = ns.default_ttl {
            policy.push(format!("default_ttl={t}s"));
        }
        if ns.strip_prefix {
            policy.push("strip_prefix".to_string());
        }
        if !ns.key_prefix.is_empty() {
            policy.push(format!("key_prefix='{}'", ns.key_prefix));
        }
        if ns.read_only {
            policy.push("read_only".to_string());
        }
        if let Some(m) = ns.max_value_size {
            policy.push(format!("max_value_size={}", m.0));
        }
        if let Some(m) = &ns.mirror {
            let kind = config.backends.get(m).map_or("?", |b| b.kind());
            policy.push(format!("writes mirrored to {m} ({kind})"));
        }
        if ns.password.is_some() {
            let user = ns.username.as_deref().unwrap_or("default");
            policy.push(format!("logs in as '{user}'"));
        }
        if ns.strict_scripts {
            policy.push("strict_scripts".to_string());
        }
        let policy = if policy.is_empty() {
            String::new()
        } else {
            format!(" [{}]", policy.join(", "))
        };
        out.push_str(&format!(
            "  {} {} -> {} ({kind}){policy}\n",
            ns.name, prefix, ns.backend
        ));
        if let Some(limits) = config.backends.get(&ns.backend).and_then(|b| b.limits()) {
            out.push_str(&format!("    cannot serve: {limits}\n"));
        }
        if let Some(why) = refused.get(&ns.name) {
            let why = why.strip_prefix("ERR ").unwrap_or(why);
            out.push_str(&format!("    {why}\n"));
        }
    }
    out
}

/// What the config exposes that an operator should know: listeners open
/// to other hosts, secrets written in clear in the file (`text`, before
/// `${VAR}` substitution; None for the built-in config), a metrics listener
/// beyond loopback. One line each, for `--check-config`.
pub fn warnings(config: &Config, text: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let open = Users::build(&config.users, config.server.password.as_deref()).open();
    let beyond = |addr: &str| {
        addr.parse::<SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback())
    };
    let listeners = [
        ("server.listen", Some(&config.server.listen)),
        ("server.tls_listen", config.server.tls_listen.as_ref()),
    ];
    for (field, addr) in listeners {
        let Some(addr) = addr.filter(|a| beyond(a)) else {
            continue;
        };
        if !open {
            continue;
        }
        out.push(if config.server.protected_mode {
            format!(
                "{field} {addr} is reachable from other hosts and the default user has no password: \
                 protected mode refuses their clients (give server.password or [[users]])"
            )
        } else {
            format!(
                "{field} {addr} is reachable from other hosts, the default user has no password \
                 and protected_mode = false: anyone who reaches it may use every key"
            )
        });
    }
    if let Some(m) = config
        .server
        .metrics_listen
        .as_deref()
        .filter(|m| beyond(m))
    {
        out.push(format!(
            "server.metrics_listen {m} serves metrics and probes to other hosts, without authentication"
        ));
    }
    if !config.namespaces.iter().any(|ns| ns.prefix.is_empty()) {
        out.push(
            "no namespace has prefix \"\": a key outside every prefix gets \
             `-ERR no namespace owns key` (add a catch-all namespace if that is not meant)"
                .into(),
        );
    }
    let table = text.and_then(|t| t.parse::<toml::Table>().ok());
    // rediss:// checked against the system's CAs, on a machine with none.
    let mut roots: Option<bool> = None;
    let backends = table
        .as_ref()
        .and_then(|t| t.get("backends")?.as_table().cloned())
        .unwrap_or_default();
    for (name, b) in &backends {
        let urls = ["url", "nodes", "servers"].iter().filter_map(|f| b.get(*f));
        let tls = urls.into_iter().any(|v| match v {
            toml::Value::String(u) => u.starts_with("rediss://"),
            toml::Value::Array(a) => a
                .iter()
                .any(|u| u.as_str().is_some_and(|u| u.starts_with("rediss://"))),
            _ => false,
        });
        if tls && b.get("tls_ca_file").is_none() {
            let present = *roots
                .get_or_insert_with(|| !rustls_native_certs::load_native_certs().certs.is_empty());
            if !present {
                out.push(format!(
                    "backends.{name}: rediss:// servers are checked against the system's CA \
                     certificates, and this machine has none (install ca-certificates, or give tls_ca_file)"
                ));
            }
        }
    }
    if let Some(table) = table {
        in_clear(&toml::Value::Table(table), "", &mut out);
    }
    out
}

/// Secrets written in the file itself rather than taken from the
/// environment (`${VAR}`).
fn in_clear(v: &toml::Value, path: &str, out: &mut Vec<String>) {
    let from_env = |s: &str| s.contains("${");
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (k.as_str(), v) {
                    ("password" | "sentinel_password", toml::Value::String(s))
                        if !s.is_empty() && !from_env(s) =>
                    {
                        out.push(format!(
                            "{here} is written in the file in clear: give it as ${{VAR}} from the environment{}",
                            if path.starts_with("users") { " (or as password_sha256)" } else { "" }
                        ));
                    }
                    _ => in_clear(v, &here, out),
                }
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                in_clear(item, &format!("{path}[{i}]"), out);
            }
        }
        toml::Value::String(s) if s.contains("://") => {
            // A url's password: scheme://[user]:password@host.
            let login = s
                .split_once("://")
                .and_then(|(_, r)| r.rsplit_once('@'))
                .map(|(l, _)| l);
            if let Some((_, pw)) = login.and_then(|l| l.split_once(':')) {
                if !pw.is_empty() && !from_env(pw) {
                    out.push(format!(
                        "{path} holds a password in clear: give it as ${{VAR}} from the environment"
                    ));
                }
            }
        }
        _ => {}
    }
}

/// `--check-config --connect`: each backend the namespaces use is asked
/// something that needs its servers (PING; a GET on memcached), with its
/// TLS and login, within `timeout`. One line per backend; true when all
/// answered.
pub async fn connect(config: &Config, timeout: std::time::Duration) -> (bool, String) {
    use crate::backend::Command;
    use crate::wire::command::known;
    use crate::wire::reply::Reply;
    let (router, _) = crate::ops::reload::build(config, &Default::default());
    let mut out = String::new();
    let mut ok = true;
    let mut seen: Vec<&str> = Vec::new();
    for ns in &router.namespaces {
        if seen.contains(&ns.backend_name.as_str()) {
            continue;
        }
        seen.push(&ns.backend_name);
        let kind = ns.backend.kind();
        if kind == "memory" {
            out.push_str(&format!(
                "backend '{}' (memory): OK (in the process: nothing to connect to)\n",
                ns.backend_name
            ));
            continue;
        }
        let ask = if kind == "memcached" {
            Command::internal(
                known("get"),
                vec![
                    bytes::Bytes::from_static(b"GET"),
                    bytes::Bytes::from_static(b"keyway:check-config"),
                ],
            )
        } else {
            Command::internal(known("ping"), vec![bytes::Bytes::from_static(b"PING")])
        };
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(timeout, ns.backend.execute(vec![ask])).await;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let line = match answer {
            Err(_) => {
                ok = false;
                format!("FAILED: no answer within {} ms", timeout.as_millis())
            }
            Ok(replies) => match replies.into_iter().next() {
                Some(Reply::Error(e)) => {
                    ok = false;
                    format!("FAILED: {}", String::from_utf8_lossy(&e))
                }
                Some(_) => format!("OK, answered in {took:.1} ms"),
                None => {
                    ok = false;
                    "FAILED: no reply".into()
                }
            },
        };
        out.push_str(&format!("backend '{}' ({kind}): {line}\n", ns.backend_name));
    }
    (ok, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_per_line_with_what_it_cannot_do() {
        let ok = Config::parse(
            "[backends.m]\ntype = \"memcached\"\nservers = [\"h:1\"]\n[[namespaces]]\nname = \"s\"\nprefix = \"\"\nbackend = \"m\"\n",
            "k.toml",
        )
        .unwrap();
        assert_eq!(
            summary(&ok),
            "k.toml: OK, listening on 127.0.0.1:6380, 1 namespace(s)\n  \
             s (catch-all) -> m (memcached)\n    \
             cannot serve: hashes, lists, sets, sorted sets, streams, bitmaps, HyperLogLog, geo, KEYS/SCAN/DBSIZE/RANDOMKEY, transactions, scripting, pub/sub\n"
        );
    }

    #[test]
    fn warns_of_open_listeners_secrets_in_clear_and_open_metrics() {
        let text = "[server]\nlisten = \"0.0.0.0:6380\"\nmetrics_listen = \"0.0.0.0:9121\"\n\
             [backends.r]\ntype = \"redis\"\nurl = \"redis://app:hunter2@h:6379\"\n\
             [backends.s]\ntype = \"redis\"\nurl = \"redis://app:${PW:x}@h:6380\"\n\
             [[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"r\"\npassword = \"inclear\"\n\
             [[namespaces]]\nname = \"b\"\nprefix = \"b:\"\nbackend = \"s\"\n";
        let config = Config::parse(text, "k.toml").unwrap();
        let w = warnings(&config, Some(text));
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("server.listen 0.0.0.0:6380 is reachable from other hosts"));
        assert!(w[0].contains("protected mode refuses their clients"));
        assert!(w[1].starts_with("server.metrics_listen 0.0.0.0:9121"));
        assert!(w[2].starts_with("backends.r.url holds a password in clear"));
        assert!(w[3].starts_with("namespaces[0].password is written in the file in clear"));
        // A password for the default user: the listener is not open.
        let text = "[server]\nlisten = \"0.0.0.0:6380\"\npassword = \"${KW_PW:x}\"\n\
             [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"m\"\n";
        let config = Config::parse(text, "k.toml").unwrap();
        assert!(warnings(&config, Some(text)).is_empty());
    }

    #[test]
    fn scripts_on_a_shared_server_are_refused_without_a_login() {
        let ok = Config::parse(
            "[backends.r]\ntype = \"redis\"\nurl = \"redis://h:7000\"\n\
             [backends.r2]\ntype = \"redis\"\nurl = \"redis://u:p@h:7000/1\"\n\
             [backends.solo]\ntype = \"redis\"\nurl = \"redis://other:7000\"\n\
             [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nbackend = \"r\"\n\
             [[namespaces]]\nname = \"B\"\nprefix = \"b:\"\nbackend = \"r2\"\nusername = \"tenantB\"\npassword = \"pw\"\n\
             [[namespaces]]\nname = \"C\"\nprefix = \"c:\"\nbackend = \"solo\"\n",
            "k.toml",
        )
        .unwrap();
        let refused = security::script_refusals(&ok);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused["A"].contains("shares Redis server h:7000 with namespace 'B'"));
        let text = summary(&ok);
        assert!(
            text.contains("B 'b:' -> r2 (redis) [logs in as 'tenantB']"),
            "{text}"
        );
        assert!(
            text.contains("    scripts are refused in namespace 'A'"),
            "{text}"
        );
    }
}
