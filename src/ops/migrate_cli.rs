//! `keyway migrate NAMESPACE ACTION`: the operator's command line for a
//! namespace's move, against a running keyway over its own port (KEYWAY
//! MIGRATE, see `server::admin::migration`). It starts a backfill or a
//! verification and follows it to the end: a progress bar on a terminal
//! (keys and bytes done, rate, time left), a plain line every few seconds
//! otherwise; the exit status says how it ended.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::upstream::decode;
use crate::wire::protocol::encode_multibulk;
use crate::wire::reply::Reply;

/// What to do, from the command line.
pub struct Request {
    /// keyway's address (host:port).
    pub addr: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub namespace: String,
    /// backfill, verify, status or stop.
    pub action: String,
    /// Options passed on as they are (RATE 1000, SAMPLE 0.1, ...).
    pub options: Vec<String>,
    /// Start and return, without following.
    pub detach: bool,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn call(&mut self, words: &[&str]) -> Result<Reply, String> {
        let args: Vec<bytes::Bytes> = words
            .iter()
            .map(|w| bytes::Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let out = encode_multibulk(&args);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        loop {
            if let Some(r) = decode(&mut self.buf, false, true)? {
                return match r {
                    Reply::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
                    r => Ok(r),
                };
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("cannot read: {e}"))?;
            if n == 0 {
                return Err("keyway closed the connection".into());
            }
        }
    }
}

/// A status reply's fields as text.
fn fields(r: &Reply) -> Vec<(String, String)> {
    let text = |r: &Reply| match r {
        Reply::Bulk(b) | Reply::Status(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Int(n) => n.to_string(),
        Reply::Array(items) => items
            .iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("\n  "),
        other => format!("{other:?}"),
    };
    match r {
        Reply::Array(items) => items
            .chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (text(&kv[0]), text(&kv[1])))
            .collect(),
        Reply::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    }
}

fn get<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn num(f: &[(String, String)], name: &str) -> u64 {
    get(f, name).parse().unwrap_or(0)
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// One line of progress; with a bar when `width` is given.
pub fn progress_line(f: &[(String, String)], width: Option<usize>) -> String {
    let (done, total) = (num(f, "keys_done"), num(f, "keys_total"));
    let rate = num(f, "keys_per_sec");
    let mut line = String::new();
    if let Some(w) = width.filter(|_| total > 0) {
        let filled = ((done.min(total) as f64 / total as f64) * w as f64) as usize;
        line.push('[');
        line.push_str(&"#".repeat(filled));
        line.push_str(&" ".repeat(w.saturating_sub(filled)));
        line.push_str("] ");
    }
    // The task's name while it runs, then how it ended.
    let what = match get(f, "running") {
        "" => get(f, "phase"),
        running => running,
    };
    line.push_str(&format!("{what} {done}"));
    if total > 0 {
        line.push_str(&format!("/{total}"));
    }
    line.push_str(&format!(
        " keys, {}, {rate} keys/s",
        human_bytes(num(f, "bytes_done"))
    ));
    if total > done && rate > 0 {
        line.push_str(&format!(", ~{} s left", (total - done) / rate));
    }
    for name in ["retried", "skipped", "errors", "differences"] {
        let n = num(f, name);
        if n > 0 {
            line.push_str(&format!(", {n} {name}"));
        }
    }
    line
}

/// Runs the request; the process's exit status: 0 when the task ended as
/// hoped (backfilled, verified), 1 otherwise.
pub async fn run(req: Request) -> Result<bool, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&req.addr))
        .await
        .map_err(|_| format!("cannot connect to keyway at {}: timed out", req.addr))?
        .map_err(|e| format!("cannot connect to keyway at {}: {e}", req.addr))?;
    let mut c = Conn {
        stream,
        buf: BytesMut::new(),
    };
    if let Some(p) = &req.password {
        match &req.user {
            Some(u) => c.call(&["AUTH", u, p]).await?,
            None => c.call(&["AUTH", p]).await?,
        };
    }
    let ns = req.namespace.as_str();
    let action = req.action.to_ascii_uppercase();
    match action.as_str() {
        "STATUS" => {
            let f = fields(&c.call(&["KEYWAY", "MIGRATE", ns, "STATUS"]).await?);
            for (k, v) in &f {
                println!("{k}: {v}");
            }
            return Ok(true);
        }
        "STOP" => {
            let r = c.call(&["KEYWAY", "MIGRATE", ns, "STOP"]).await?;
            println!(
                "{}",
                if r == Reply::Int(1) {
                    "asked to stop after the current batch"
                } else {
                    "nothing is running"
                }
            );
            return Ok(true);
        }
        "BACKFILL" | "VERIFY" => {}
        other => {
            return Err(format!(
                "unknown action '{other}': backfill, verify, status or stop"
            ));
        }
    }
    let mut words = vec!["KEYWAY", "MIGRATE", ns, action.as_str()];
    words.extend(req.options.iter().map(String::as_str));
    c.call(&words).await?;
    println!("{} of namespace '{ns}' started", action.to_lowercase());
    if req.detach {
        return Ok(true);
    }
    let tty = std::io::stdout().is_terminal();
    let mut last_line = Instant::now();
    let f = loop {
        tokio::time::sleep(Duration::from_millis(if tty { 250 } else { 1000 })).await;
        let f = fields(&c.call(&["KEYWAY", "MIGRATE", ns, "STATUS"]).await?);
        let finished = get(&f, "running").is_empty();
        if tty {
            print!("\r\x1b[2K{}", progress_line(&f, Some(30)));
            let _ = std::io::stdout().flush();
        } else if finished || last_line.elapsed() >= Duration::from_secs(5) {
            println!("{}", progress_line(&f, None));
            last_line = Instant::now();
        }
        if finished {
            break f;
        }
    };
    if tty {
        println!();
    }
    let phase = get(&f, "phase");
    println!(
        "{ns}: {phase} in {:.1} s",
        num(&f, "elapsed_ms") as f64 / 1000.0
    );
    let differing = get(&f, "differing");
    if !differing.is_empty() {
        println!("differing keys (first ones):\n  {differing}");
    }
    let error = get(&f, "error");
    if !error.is_empty() {
        println!("last error: {error}");
    }
    Ok(matches!(phase, "backfilled" | "verified"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_keys_bytes_rate_and_time_left() {
        let f: Vec<(String, String)> = [
            ("running", "backfill"),
            ("keys_done", "250"),
            ("keys_total", "1000"),
            ("bytes_done", "2048"),
            ("keys_per_sec", "50"),
            ("retried", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            progress_line(&f, Some(8)),
            "[##      ] backfill 250/1000 keys, 2.0 KiB, 50 keys/s, ~15 s left, 3 retried"
        );
        assert_eq!(
            progress_line(&f, None),
            "backfill 250/1000 keys, 2.0 KiB, 50 keys/s, ~15 s left, 3 retried"
        );
        let mut ended = f.clone();
        ended[0].1 = String::new();
        ended.push(("phase".into(), "backfilled".into()));
        assert!(progress_line(&ended, None).starts_with("backfilled 250/1000 keys"));
    }
}
