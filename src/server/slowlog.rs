//! SLOWLOG: the requests whose round trip through keyway (routing, the
//! backend, the merge) took longer than `[server] slowlog_log_slower_than`
//! microseconds, newest first, as Redis's SLOWLOG lists slow commands.
//!
//! keyway sends a client's pipelined commands to a backend together, so
//! their time is one: a slow pipeline is one entry, under its first
//! command, with a last argument saying how many more it carried.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::wire::protocol::RequestCodec;
use crate::wire::reply::Reply;

/// Arguments and argument bytes an entry keeps, as Redis keeps them.
const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

struct Entry {
    id: u64,
    unix: u64,
    micros: u64,
    /// The first command's bytes as the client sent them; decoded when
    /// SLOWLOG GET asks, not on the request's path.
    raw: Bytes,
    /// Commands of the pipeline after the first.
    more: usize,
    addr: String,
    name: String,
}

pub struct SlowLog {
    /// Microseconds; negative turns the log off, 0 logs every request.
    slower_than: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

impl SlowLog {
    pub fn new(slower_than: i64, max_len: usize) -> SlowLog {
        SlowLog {
            slower_than: AtomicI64::new(slower_than),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Applies reloaded settings.
    pub fn configure(&self, slower_than: i64, max_len: usize) {
        self.slower_than.store(slower_than, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
        let mut e = self.lock();
        e.truncate(max_len);
    }

    /// Whether requests are timed at all.
    pub fn on(&self) -> bool {
        self.slower_than.load(Ordering::Relaxed) >= 0
    }

    /// Records a request (and the `more` pipelined after it) that took
    /// `took`, if that is slow enough; `client` gives its address and name,
    /// asked only then.
    pub fn record(
        &self,
        took: Duration,
        raw: &Bytes,
        more: usize,
        client: impl FnOnce() -> (String, String),
    ) {
        let limit = self.slower_than.load(Ordering::Relaxed);
        let micros = took.as_micros() as u64;
        if limit < 0 || micros < limit as u64 {
            return;
        }
        let max_len = self.max_len.load(Ordering::Relaxed);
        let (addr, name) = client();
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            micros,
            raw: raw.clone(),
            more,
            addr,
            name,
        };
        let mut e = self.lock();
        e.push_front(entry);
        e.truncate(max_len);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// SLOWLOG GET's reply: the `count` newest entries (all when None).
    pub fn get(&self, count: Option<usize>) -> Reply {
        let e = self.lock();
        let n = count.unwrap_or(e.len()).min(e.len());
        Reply::Array(e.iter().take(n).map(entry_reply).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry_reply(e: &Entry) -> Reply {
    let args = RequestCodec::default()
        .decode(&mut BytesMut::from(&e.raw[..]))
        .ok()
        .flatten()
        .map(|r| r.args)
        .unwrap_or_default();
    let mut shown: Vec<Reply> = Vec::new();
    let keep = if args.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        args.len()
    };
    for a in &args[..keep] {
        shown.push(Reply::Bulk(if a.len() > MAX_ARG_BYTES {
            let mut s = a[..MAX_ARG_BYTES].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes());
            Bytes::from(s)
        } else {
            a.clone()
        }));
    }
    if args.len() > keep {
        shown.push(Reply::bulk_str(&format!(
            "... ({} more arguments)",
            args.len() - keep
        )));
    }
    if e.more > 0 {
        shown.push(Reply::bulk_str(&format!(
            "... ({} more commands in the pipeline)",
            e.more
        )));
    }
    Reply::Array(vec![
        Reply::Int(e.id as i64),
        Reply::Int(e.unix as i64),
        Reply::Int(e.micros as i64),
        Reply::Array(shown),
        Reply::bulk_str(&e.addr),
        Reply::bulk_str(&e.name),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protocol::encode_multibulk;
    use crate::wire::util::bytes;

    #[test]
    fn keeps_the_newest_and_truncates_as_redis_does() {
        let log = SlowLog::new(1000, 2);
        let raw = encode_multibulk(&[bytes("GET"), bytes("a")]);
        let client = || ("1.2.3.4:5".to_string(), "app".to_string());
        log.record(Duration::from_micros(999), &raw, 0, client);
        assert!(log.is_empty(), "under the threshold");
        for _ in 0..3 {
            log.record(Duration::from_millis(2), &raw, 0, client);
        }
        assert_eq!(log.len(), 2);
        let Reply::Array(entries) = log.get(None) else {
            panic!("array")
        };
        let Reply::Array(first) = &entries[0] else {
            panic!("entry")
        };
        assert_eq!(
            first[0],
            Reply::Int(2),
            "newest first; ids count what was kept"
        );
        assert_eq!(first[2], Reply::Int(2000));

        let mut long = vec![bytes("MSET")];
        long.extend((0..40).map(|i| Bytes::from(vec![b'x'; 100 + i])));
        let raw = encode_multibulk(&long);
        log.record(Duration::from_millis(5), &raw, 15, client);
        let Reply::Array(entries) = log.get(Some(1)) else {
            panic!("array")
        };
        let Reply::Array(e) = &entries[0] else {
            panic!("entry")
        };
        let Reply::Array(args) = &e[3] else {
            panic!("args")
        };
        assert_eq!(args.len(), 33);
        assert_eq!(args[0], Reply::bulk_str("MSET"));
        let Reply::Bulk(b) = &args[30] else {
            panic!("bulk")
        };
        assert!(b.ends_with(b"... (1 more bytes)"), "{b:?}");
        assert_eq!(args[31], Reply::bulk_str("... (10 more arguments)"));
        assert_eq!(
            args[32],
            Reply::bulk_str("... (15 more commands in the pipeline)")
        );
        log.reset();
        assert!(log.is_empty());
    }
}
