//! What a config exposes, as keyway judges it: which namespaces may run
//! scripts on a Redis server they share (keyway cannot see inside a
//! server-side script, so only a login of the namespace's own, bounded by
//! Redis's ACL, keeps a script in its keys), and what `--check-config`
//! warns about.

use std::collections::HashMap;

use crate::ops::config::Config;
use crate::proxy::router::NamespaceConfig;

/// Namespaces whose scripts (EVAL*, FCALL*) are refused, with the error
/// they get: those on a Redis server that another namespace also uses,
/// without a login of their own. (A namespace alone on a server is
/// trusted with it: keys there that are not keyway's are the operator's
/// to protect, with a login, as the README's Security section says.)
pub fn script_refusals(config: &Config) -> HashMap<String, String> {
    let servers = |ns: &NamespaceConfig| {
        config
            .backends
            .get(&ns.backend)
            .map(|b| b.servers())
            .unwrap_or_default()
    };
    let mut refused = HashMap::new();
    for ns in &config.namespaces {
        let mine = servers(ns);
        if mine.is_empty() || ns.password.is_some() {
            continue;
        }
        let neighbour = config
            .namespaces
            .iter()
            .find(|o| o.name != ns.name && servers(o).iter().any(|s| mine.contains(s)));
        let Some(o) = neighbour else {
            continue;
        };
        let why = format!(
            "it shares Redis server {} with namespace '{}'",
            servers(o)
                .iter()
                .find(|s| mine.contains(s))
                .map_or("?", String::as_str),
            o.name
        );
        refused.insert(
            ns.name.clone(),
            format!(
                "ERR scripts are refused in namespace '{}': {why}, and keyway cannot see which keys a script touches there; \
                 give the namespace a username and password of its own (a Redis ACL user limited to its keys)",
                ns.name
            ),
        );
    }
    refused
}
