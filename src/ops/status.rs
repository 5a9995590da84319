//! The operator's status page (`/` on the metrics listener, as HAProxy's
//! stats page): namespaces with their backend and mirror, backends with
//! their health and upstream connections, and commands, errors and latency
//! per namespace over the last ten minutes, updated live. The page is one
//! HTML file with its script inline (no build step, no external assets);
//! it reads `/status.json`, which this module writes from samples taken
//! every few seconds.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::config::Config;
use crate::server::shared::Shared;
use crate::wire::metrics::metrics;

/// The page itself.
pub const PAGE: &str = include_str!("status.html");

/// How often a sample is taken, and how many are kept (ten minutes).
const EVERY: Duration = Duration::from_secs(5);
const KEPT: usize = 120;

/// One sample: Unix seconds, then per namespace (commands, batches timed,
/// their microseconds) as running totals, and error replies so far.
#[derive(Clone)]
struct Sample {
    at: u64,
    namespaces: Vec<(String, u64, u64, u64)>,
    errors: u64,
}

/// The samples kept, oldest first.
#[derive(Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    fn take(&self, shared: &Shared) {
        let router = shared.router.load();
        let sample = Sample {
            at: crate::wire::util::now_ms() / 1000,
            namespaces: router
                .namespaces
                .iter()
                .map(|ns| {
                    let (n, us) = ns.metrics.timed();
                    (ns.name.clone(), ns.metrics.commands_total(), n, us)
                })
                .collect(),
            errors: metrics().errors_total(),
        };
        if let Ok(mut h) = self.0.lock() {
            if h.len() == KEPT {
                h.pop_front();
            }
            h.push_back(sample);
        }
    }

    /// Samples until keyway stops.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        let mut stop = shared.stopping();
        loop {
            self.take(&shared);
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// A JSON string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the page shows, as JSON.
pub fn json(shared: &Shared, config: &Config, history: &History) -> String {
    let router = shared.router.load();
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"version\":{},\"redis_version\":{},\"uptime_s\":{},\"clients\":{},\"commands\":{},",
        quote(env!("CARGO_PKG_VERSION")),
        quote(&router.redis_version()),
        (crate::wire::util::now_ms() / 1000).saturating_sub(shared.started_unix),
        shared
            .stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed),
        shared
            .stats
            .commands
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    out.push_str("\"namespaces\":[");
    for (i, ns) in router.namespaces.iter().enumerate() {
        let mirror = config
            .namespaces
            .iter()
            .find(|c| c.name == ns.name)
            .and_then(|c| c.mirror.clone());
        // The move's phase and progress, for a mirrored namespace.
        let migration = ns.mirrored.as_ref().map_or("null".to_string(), |m| {
            let s = m.status();
            format!(
                "{{\"phase\":{},\"running\":{},\"keys_done\":{},\"keys_total\":{},\"differences\":{}}}",
                quote(s.phase),
                quote(s.running.unwrap_or("")),
                s.keys_done,
                s.keys_total,
                s.differences
            )
        });
        let _ = write!(
            out,
            "{}{{\"name\":{},\"prefix\":{},\"backend\":{},\"kind\":{},\"mirror\":{},\"migration\":{migration},\"read_only\":{}}}",
            if i > 0 { "," } else { "" },
            quote(&ns.name),
            quote(&String::from_utf8_lossy(&ns.prefix)),
            quote(&ns.backend_name),
            quote(ns.backend.kind()),
            mirror.map_or("null".to_string(), |m| quote(&m)),
            ns.read_only,
        );
    }
    out.push_str("],\"backends\":[");
    for (i, (name, kind, health)) in router.backends_health().into_iter().enumerate() {
        let upstream = metrics().upstream(name).get();
        let _ = write!(
            out,
            "{}{{\"name\":{},\"kind\":{},\"health\":{},\"upstream_connections\":{upstream}}}",
            if i > 0 { "," } else { "" },
            quote(name),
            quote(kind),
            quote(&health),
        );
    }
    let _ = write!(out, "],\"every_s\":{},\"samples\":[", EVERY.as_secs());
    if let Ok(h) = history.0.lock() {
        for (i, s) in h.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"at\":{},\"errors\":{},\"namespaces\":{{",
                if i > 0 { "," } else { "" },
                s.at,
                s.errors
            );
            for (j, (name, commands, batches, micros)) in s.namespaces.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}{}:[{commands},{batches},{micros}]",
                    if j > 0 { "," } else { "" },
                    quote(name)
                );
            }
            out.push_str("}}");
        }
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_quoted_for_json_inside_html() {
        assert_eq!(super::quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(super::quote("</script>"), "\"\\u003c/script\\u003e\"");
        assert_eq!(super::quote("x\ny"), "\"x\\u000ay\"");
    }
}
