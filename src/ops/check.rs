//! What `--check-config` prints for a good file: one line per namespace
//! with its policy, what its backend cannot serve, whether its scripts are
//! refused and why; then warnings about what the config exposes.

use crate::ops::config::Config;
use crate::ops::security;
use crate::proxy::router::NamespaceConfig;

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
