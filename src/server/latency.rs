//! LATENCY: Redis's latency monitor. With `latency-monitor-threshold` set
//! (CONFIG SET; 0, the default, turns it off), every request whose round
//! trip through keyway took at least that many milliseconds is a sample of
//! the `command` event: LATENCY LATEST, HISTORY, RESET, GRAPH and DOCTOR
//! read and clear them, as in Redis. Samples are kept per second (the
//! highest of a second), 160 per event, as Redis keeps them.
//!
//! keyway times requests as SLOWLOG does (see `slowlog`): a pipeline sent
//! to a backend together is one sample.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::wire::reply::Reply;

/// Samples kept per event, as Redis's LATENCY_TS_LEN.
const SAMPLES: usize = 160;

#[derive(Default)]
struct Event {
    /// (unix seconds, milliseconds), oldest first.
    samples: VecDeque<(u64, u64)>,
    /// The highest ever, kept across the samples' turnover.
    max: u64,
}

#[derive(Default)]
pub struct LatencyMonitor {
    /// Milliseconds; 0 is off.
    threshold: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Event>>,
}

impl LatencyMonitor {
    pub fn threshold(&self) -> u64 {
        self.threshold.load(Ordering::Relaxed)
    }

    pub fn set_threshold(&self, ms: u64) {
        self.threshold.store(ms, Ordering::Relaxed);
    }

    pub fn on(&self) -> bool {
        self.threshold() > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Event>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a sample of `event` if it reached the threshold.
    pub fn record(&self, event: &'static str, took: Duration) {
        let threshold = self.threshold();
        let ms = took.as_millis() as u64;
        if threshold == 0 || ms < threshold {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut events = self.lock();
        let e = events.entry(event).or_default();
        e.max = e.max.max(ms);
        match e.samples.back_mut() {
            Some((at, worst)) if *at == now => *worst = (*worst).max(ms),
            _ => {
                if e.samples.len() == SAMPLES {
                    e.samples.pop_front();
                }
                e.samples.push_back((now, ms));
            }
        }
    }

    /// LATENCY LATEST: per event, its name, the latest sample's time and
    /// milliseconds, and the highest ever.
    pub fn latest(&self) -> Reply {
        let events = self.lock();
        Reply::Array(
            events
                .iter()
                .filter_map(|(name, e)| {
                    let (at, ms) = *e.samples.back()?;
                    Some(Reply::Array(vec![
                        Reply::bulk_str(name),
                        Reply::Int(at as i64),
                        Reply::Int(ms as i64),
                        Reply::Int(e.max as i64),
                    ]))
                })
                .collect(),
        )
    }

    /// LATENCY HISTORY event: its samples, oldest first.
    pub fn history(&self, event: &[u8]) -> Reply {
        let events = self.lock();
        let samples = events
            .iter()
            .find(|(name, _)| name.as_bytes() == event)
            .map(|(_, e)| {
                e.samples
                    .iter()
                    .map(|&(at, ms)| {
                        Reply::Array(vec![Reply::Int(at as i64), Reply::Int(ms as i64)])
                    })
                    .collect()
            })
            .unwrap_or_default();
        Reply::Array(samples)
    }

    /// LATENCY RESET [event ...]: forgets the events named (every one with
    /// none), answering how many there were.
    pub fn reset(&self, names: &[Bytes]) -> Reply {
        let mut events = self.lock();
        if names.is_empty() {
            let n = events.len();
            events.clear();
            return Reply::Int(n as i64);
        }
        let before = events.len();
        events.retain(|name, _| !names.iter().any(|n| n.as_ref() == name.as_bytes()));
        Reply::Int((before - events.len()) as i64)
    }

    /// LATENCY GRAPH event: its samples as rows of text, newest last, or
    /// None when it has none.
    pub fn graph(&self, event: &[u8]) -> Option<String> {
        let events = self.lock();
        let (name, e) = events.iter().find(|(name, _)| name.as_bytes() == event)?;
        let high = e.samples.iter().map(|s| s.1).max()?;
        let low = e.samples.iter().map(|s| s.1).min().unwrap_or(high);
        let mut out = format!(
            "{name} - high {high} ms, low {low} ms (all time high {} ms)\n",
            e.max
        );
        out.push_str(&"-".repeat(80));
        out.push('\n');
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for &(at, ms) in &e.samples {
            let bar = (ms * 40).checked_div(high).unwrap_or(0).max(1) as usize;
            let _ = writeln!(
                out,
                "{:>6}s ago {:>6} ms {}",
                now.saturating_sub(at),
                ms,
                "#".repeat(bar)
            );
        }
        Some(out)
    }

    /// LATENCY DOCTOR: a report in Redis's voice.
    pub fn doctor(&self) -> String {
        if !self.on() {
            return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
                    Redis instance. You may use \"CONFIG SET latency-monitor-threshold \
                    <milliseconds>.\" in order to enable it. If we weren't in a deep space \
                    mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n"
                .into();
        }
        let events = self.lock();
        if events.values().all(|e| e.samples.is_empty()) {
            return "Dave, no latency spike was observed during the lifetime of this Redis \
                    instance, not in the slightest bit. I honestly think you ought to sleep \
                    tonight.\n"
                .into();
        }
        let mut out = String::from(
            "Dave, I have observed latency spikes in this Redis instance. You don't mind \
             talking about it, do you Dave?\n\n",
        );
        for (i, (name, e)) in events
            .iter()
            .filter(|(_, e)| !e.samples.is_empty())
            .enumerate()
        {
            let n = e.samples.len() as u64;
            let sum: u64 = e.samples.iter().map(|s| s.1).sum();
            let avg = sum / n;
            let dev = e.samples.iter().map(|s| s.1.abs_diff(avg)).sum::<u64>() / n;
            let span = e.samples.back().map_or(0, |b| b.0) - e.samples.front().map_or(0, |f| f.0);
            let _ = writeln!(
                out,
                "{}. {name}: {n} latency spikes (average {avg}ms, mean deviation {dev}ms, \
                 period {:.2} sec). Worst all time event {}ms.",
                i + 1,
                span as f64 / n as f64,
                e.max
            );
        }
        out.push_str(
            "\nI have a few advices for you:\n\n- keyway's `command` samples are whole \
             round trips through keyway, the backend included: compare them with the \
             backend's own LATENCY LATEST, and look at SLOWLOG GET for the requests.\n",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_below_the_threshold_or_with_it_off_are_not_kept() {
        let m = LatencyMonitor::default();
        m.record("command", Duration::from_millis(500));
        assert!(matches!(m.latest(), Reply::Array(v) if v.is_empty()));
        m.set_threshold(200);
        m.record("command", Duration::from_millis(199));
        assert!(matches!(m.latest(), Reply::Array(v) if v.is_empty()));
        m.record("command", Duration::from_millis(200));
        m.record("command", Duration::from_millis(300));
        // One sample per second: the highest.
        assert!(matches!(m.history(b"command"), Reply::Array(v) if v.len() == 1));
        assert!(
            m.graph(b"command")
                .is_some_and(|g| g.contains("high 300 ms"))
        );
        assert!(m.doctor().contains("1. command: 1 latency spikes"));
        assert!(matches!(
            m.reset(&[Bytes::from_static(b"nope")]),
            Reply::Int(0)
        ));
        assert!(matches!(m.reset(&[]), Reply::Int(1)));
        assert!(m.graph(b"command").is_none());
    }
}
