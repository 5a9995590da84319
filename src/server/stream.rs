//! A client's byte stream: plain TCP, or TLS on TCP. The connection loop is
//! written against TCP's readiness API (`readable`, `try_read_buf`,
//! `writable`, `try_write`), which keeps reads and writes in its own hands
//! (buffer reuse, output limits); TLS keeps that API by driving a rustls
//! connection over the socket's own non-blocking reads and writes, so a
//! plain client pays nothing for it.
//!
//! rustls holds at most one chunk of encrypted output: `try_write` takes
//! new bytes only once the previous ones reached the socket, so what a
//! client that does not read makes keyway hold is still what the
//! connection's output limits see.

use std::io::{self, Read, Write};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Plaintext taken per `try_write` on TLS.
const TLS_CHUNK: usize = 64 * 1024;

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsClient>),
}

pub struct TlsClient {
    tcp: TcpStream,
    tls: rustls::ServerConnection,
}

impl TlsClient {
    pub fn new(tcp: TcpStream, tls: rustls::ServerConnection) -> TlsClient {
        TlsClient { tcp, tls }
    }
}

/// `std::io` over the socket's non-blocking calls, for rustls.
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(b)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.try_write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl TlsClient {
    /// Sends what rustls holds (handshake, alerts, records) without
    /// waiting; WouldBlock when the socket is full.
    fn send(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut Sock(&self.tcp))?;
        }
        Ok(())
    }

    /// Sends what rustls holds, waiting for the socket.
    async fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.send() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        // The peer may wait for our half of the handshake.
        self.drain().await?;
        match self.tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => Ok(()),
            // An error is for `try_read_buf` to return.
            Err(_) => Ok(()),
            Ok(_) => self.tcp.readable().await,
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // A failed session stays failed (its alert is on its way).
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.send();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            match self.tls.reader().read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
            if self.tls.read_tls(&mut Sock(&self.tcp))? == 0 {
                return Ok(0);
            }
            // Handshake replies go out now if they can; what cannot waits
            // for the next `readable`. A failure is seen at the loop's top.
            let _ = self.tls.process_new_packets();
            match self.send() {
                Err(e) if !would_block(&e) => return Err(e),
                _ => {}
            }
        }
    }

    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send()?;
        let n = self
            .tls
            .writer()
            .write(data.get(..data.len().min(TLS_CHUNK)).unwrap_or_default())?;
        match self.send() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(n),
        }
    }
}

impl ClientStream {
    pub async fn readable(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.readable().await,
            ClientStream::Tls(t) => t.readable().await,
        }
    }

    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.try_read_buf(buf),
            ClientStream::Tls(t) => t.try_read_buf(buf),
        }
    }

    pub async fn writable(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.writable().await,
            ClientStream::Tls(t) => t.tcp.writable().await,
        }
    }

    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.try_write(data),
            ClientStream::Tls(t) => t.try_write(data),
        }
    }

    /// Writes everything, waiting as needed (the connection's last words).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.write_all(data).await,
            ClientStream::Tls(t) => {
                let mut at = 0;
                while at < data.len() {
                    match t.try_write(data.get(at..).unwrap_or_default()) {
                        Ok(n) => at += n,
                        Err(e) if would_block(&e) => t.tcp.writable().await?,
                        Err(e) => return Err(e),
                    }
                }
                t.drain().await
            }
        }
    }

    /// Ends the stream (TLS: with close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.shutdown().await,
            ClientStream::Tls(t) => {
                t.tls.send_close_notify();
                t.drain().await?;
                t.tcp.shutdown().await
            }
        }
    }

    /// Completes with true when the client closed its connection, or false
    /// when it sent more (which stays unread for later).
    pub async fn gone(&self) -> bool {
        let tcp = match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(t) => &t.tcp,
        };
        let mut b = [0u8; 1];
        !matches!(tcp.peek(&mut b).await, Ok(n) if n > 0)
    }
}
