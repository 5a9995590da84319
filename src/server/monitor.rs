//! MONITOR: every command keyway runs, as Redis writes it to its monitors
//! (`+<seconds.micros> [<db> <addr>] "<arg>" ...`), sent to the clients
//! that asked. Each monitor has a bounded queue; one that cannot keep up is
//! closed rather than let keyway hold its backlog.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Lines a monitor may have waiting before it is closed.
pub const QUEUE: usize = 10_000;

#[derive(Default)]
pub struct Monitors {
    /// Whether any client monitors: the one check every command pays.
    any: AtomicBool,
    senders: Mutex<Vec<mpsc::Sender<Bytes>>>,
}

impl Monitors {
    /// A new monitor's queue.
    pub fn add(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Ok(mut s) = self.senders.lock() {
            s.push(tx);
            self.any.store(true, Ordering::Relaxed);
        }
        rx
    }

    pub fn active(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Sends a command to every monitor; a monitor gone or full is
    /// dropped (its connection then closes).
    pub fn feed(&self, db: u8, peer: SocketAddr, args: &[Bytes]) {
        self.send(format_line(db, &peer.to_string(), args));
    }

    /// A command a script ran, shown as Redis shows it: `[0 lua] ...`.
    pub fn feed_script(&self, db: u8, args: &[Bytes]) {
        if self.active() {
            self.send(format_line(db, "lua", args));
        }
    }

    fn send(&self, line: Bytes) {
        if let Ok(mut s) = self.senders.lock() {
            s.retain(|tx| tx.try_send(line.clone()).is_ok());
            self.any.store(!s.is_empty(), Ordering::Relaxed);
        }
    }
}

/// Redis's monitor line, quoting each argument as sdscatrepr does.
fn format_line(db: u8, peer: &str, args: &[Bytes]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = format!("{}.{:06} [{db} {peer}]", now.as_secs(), now.subsec_micros());
    for a in args {
        out.push_str(" \"");
        for &b in a.iter() {
            match b {
                b'\\' => out.push_str("\\\\"),
                b'"' => out.push_str("\\\""),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                7 => out.push_str("\\a"),
                8 => out.push_str("\\b"),
                b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
                b => out.push_str(&format!("\\x{b:02x}")),
            }
        }
        out.push('"');
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_as_redis_does() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let line = format_line(
            2,
            &peer.to_string(),
            &[
                Bytes::from("SET"),
                Bytes::from("a \"b\"\n"),
                Bytes::from(vec![0u8, 0xff]),
            ],
        );
        let text = String::from_utf8(line.to_vec()).unwrap();
        let (_, rest) = text.split_once(' ').unwrap();
        assert_eq!(rest, r#"[2 127.0.0.1:5000] "SET" "a \"b\"\n" "\x00\xff""#);
    }
}
