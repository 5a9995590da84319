//! Test harness: keyway in-process on a free port, and a raw client that
//! asserts replies byte for byte.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use keyway::config::Config;
use keyway::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A running keyway; dropping it shuts the server down.
pub struct Keyway {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Keyway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Keyway {
    /// Starts keyway with the built-in default config (one memory namespace).
    pub async fn start() -> Keyway {
        Keyway::with_config(Config::default()).await
    }

    /// Starts keyway from config text; its listen address is replaced by port 0.
    pub async fn with_toml(text: &str) -> Keyway {
        let config = Config::parse(text, "test.toml").expect("test config is valid");
        Keyway::with_config(config).await
    }

    pub async fn with_config(mut config: Config) -> Keyway {
        config.server.listen = "127.0.0.1:0".into();
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Keyway {
            addr,
            stop: Some(tx),
        }
    }

    pub async fn raw(&self) -> Raw {
        Raw(TcpStream::connect(self.addr).await.expect("connect"))
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{}/", self.addr))
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis crate connects")
    }
}

/// A plain TCP client speaking RESP by hand.
pub struct Raw(pub TcpStream);

/// Encodes words as a RESP multibulk.
pub fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    out
}

impl Raw {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("write");
    }

    /// Reads exactly `expected.len()` bytes and compares them.
    pub async fn expect(&mut self, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), self.0.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
            .unwrap_or_else(|e| panic!("reading {expected:?}: {e}"));
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Sends a command (split on spaces) and checks the whole reply.
    pub async fn check(&mut self, cmd: &str, expected: &str) {
        let words: Vec<&str> = cmd.split(' ').collect();
        self.send(&resp(&words)).await;
        self.expect(expected).await;
    }

    /// Waits for the server to close the connection.
    pub async fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), self.0.read(&mut b))
            .await
            .expect("server closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection still open");
    }
}
