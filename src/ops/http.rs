//! The operator's HTTP listener (`[server] metrics_listen`): Prometheus
//! scrapes on `/metrics`, the probes `/healthz` and `/readyz`, and the
//! status page at `/` (see `status`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::wire::metrics::metrics;

/// Whether keyway is ready for clients, and a text saying why (or why not).
pub type Readiness = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// The status page's data, as JSON.
pub type Status = Arc<dyn Fn() -> String + Send + Sync>;

/// The method and path of a request's first line, the query string left
/// out (`/metrics?x=1` is `/metrics`, as scrapers may add parameters).
fn request_line(head: &[u8]) -> (&str, &str) {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    (method, path)
}

/// Serves `GET /metrics`, and the probes `GET /healthz` (the process
/// answers) and `GET /readyz` (see [`Readiness`]), until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    ready: Readiness,
    status: Status,
) {
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
        let status = status.clone();
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
            const HTML: &str = "text/html; charset=utf-8";
            const JSON: &str = "application/json";
            let (method, path) = request_line(&head);
            let (status, kind, body) = match (method, path) {
                ("GET" | "HEAD", "/metrics") => ("200 OK", METRICS, metrics().encode()),
                ("GET" | "HEAD", "/") => ("200 OK", HTML, crate::ops::status::PAGE.to_string()),
                ("GET" | "HEAD", "/status.json") => ("200 OK", JSON, status()),
                ("GET" | "HEAD", "/healthz") => ("200 OK", TEXT, "ok\n".to_string()),
                ("GET" | "HEAD", "/readyz") => match ready() {
                    (true, text) => ("200 OK", TEXT, text),
                    (false, text) => ("503 Service Unavailable", TEXT, text),
                },
                ("GET" | "HEAD", _) => (
                    "404 Not Found",
                    TEXT,
                    "not found: try /, /metrics, /healthz or /readyz\n".to_string(),
                ),
                _ => (
                    "405 Method Not Allowed",
                    TEXT,
                    "only GET and HEAD are answered\n".to_string(),
                ),
            };
            // HEAD: the headers GET would give, without the body.
            let shown = if method == "HEAD" { "" } else { body.as_str() };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{shown}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics response not sent");
            }
        });
    }
}
