//! The operator's HTTP listener (`[server] metrics_listen`): Prometheus
//! scrapes on `/metrics`, and the probes `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::wire::metrics::metrics;

/// Whether keyway is ready for clients, and a text saying why (or why not).
pub type Readiness = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// Serves `GET /metrics`, and the probes `GET /healthz` (the process
/// answers) and `GET /readyz` (see [`Readiness`]), until `stop` turns true.
pub async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>, ready: Readiness) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics listening");
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            warn!("metrics accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            // A scrape is one small request; anything slower or bigger is dropped.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            const METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            const TEXT: &str = "text/plain; charset=utf-8";
            let (status, kind, body) =
                if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ") {
                    ("200 OK", METRICS, metrics().encode())
                } else if head.starts_with(b"GET /healthz ") {
                    ("200 OK", TEXT, "ok\n".to_string())
                } else if head.starts_with(b"GET /readyz ") {
                    match ready() {
                        (true, text) => ("200 OK", TEXT, text),
                        (false, text) => ("503 Service Unavailable", TEXT, text),
                    }
                } else {
                    (
                        "404 Not Found",
                        TEXT,
                        "not found: try /metrics, /healthz or /readyz\n".to_string(),
                    )
                };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics response not sent");
            }
        });
    }
}
