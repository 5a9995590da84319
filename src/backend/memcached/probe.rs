//! Whether the memcached servers answer, for `/readyz` and INFO: the
//! memcache client keeps no per-server state, so a task of the backend's
//! own asks each server `version` every few seconds, started by the first
//! question about the backend's health (it needs the runtime) and ended
//! when the backend goes.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How often each server is asked.
const EVERY: Duration = Duration::from_secs(2);

/// Each server's last answer: None while not yet asked, Some(Ok) when it
/// answered, Some(Err(why)) when it did not.
type Answers = Arc<Mutex<Vec<Option<Result<(), String>>>>>;

type WeakAnswers = Weak<Mutex<Vec<Option<Result<(), String>>>>>;

pub struct Probe {
    state: Answers,
    started: std::sync::Once,
    servers: Vec<String>,
    timeout: Duration,
}

impl Probe {
    pub fn new(servers: &[String], timeout: Duration) -> Probe {
        Probe {
            state: Arc::new(Mutex::new(vec![None; servers.len()])),
            started: std::sync::Once::new(),
            servers: servers.to_vec(),
            timeout,
        }
    }

    /// The backend's health as `/readyz` reads it: down when no server
    /// answers, up when all do, else which do not.
    pub fn health(&self) -> String {
        self.start();
        let Ok(state) = self.state.lock() else {
            return "unknown".into();
        };
        if state.iter().all(Option::is_none) {
            return format!("checking {} server(s)", state.len());
        }
        let up = state.iter().filter(|s| matches!(s, Some(Ok(())))).count();
        let failing: Vec<String> = self
            .servers
            .iter()
            .zip(state.iter())
            .filter_map(|(addr, s)| match s {
                Some(Err(why)) => Some(format!("{addr}: {why}")),
                _ => None,
            })
            .collect();
        match (up, failing.is_empty()) {
            (_, true) => format!("up ({up}/{} servers answer)", state.len()),
            (0, false) => format!("down ({})", failing.join("; ")),
            _ => format!(
                "degraded ({up}/{} servers answer; {})",
                state.len(),
                failing.join("; ")
            ),
        }
    }

    fn start(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.started.call_once(|| {
            let state = Arc::downgrade(&self.state);
            rt.spawn(ask_forever(state, self.servers.clone(), self.timeout));
        });
    }
}

async fn ask_forever(state: WeakAnswers, servers: Vec<String>, timeout: Duration) {
    loop {
        let mut answers = Vec::with_capacity(servers.len());
        for s in &servers {
            answers.push(Some(ask(s, timeout).await));
        }
        // The backend is gone: so is the task.
        let Some(state) = state.upgrade() else { return };
        if let Ok(mut st) = state.lock() {
            *st = answers;
        }
        drop(state);
        tokio::time::sleep(EVERY).await;
    }
}

/// One server's answer to `version`.
async fn ask(server: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| e.kind().to_string())?;
        s.write_all(b"version\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if line.starts_with("VERSION") {
            Ok(())
        } else {
            Err(format!("answered {:?}", line.trim_end()))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()))
}
