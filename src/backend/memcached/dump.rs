//! Listing the keys memcached holds, for a migration's backfill (memcached
//! has no SCAN): `lru_crawler metadump all` on each server in turn, over a
//! connection of its own (the command cannot share one). Servers where the
//! LRU crawler is disabled answer an error, which is passed on.
//!
//! metadump writes one line per item, `key=<url-encoded> exp=... ...`,
//! then `END`. Keys keyway stored as a digest (longer than memcached
//! takes, see the parent module) cannot be turned back into the client's
//! key and are left out.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The largest line accepted from metadump (a key is 250 bytes, at most
/// 750 URL-encoded, plus the other fields).
const MAX_LINE: usize = 4096;

/// Every key on `server`.
pub async fn keys(server: &str, timeout: Duration) -> Result<Vec<Bytes>, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
        .await
        .map_err(|_| format!("{server}: connect timed out"))?
        .map_err(|e| format!("{server}: {e}"))?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"lru_crawler metadump all\r\n")
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(timeout, read_line(&mut stream, &mut line))
            .await
            .map_err(|_| format!("{server}: metadump timed out"))??;
        if n == 0 {
            return Err(format!("{server}: closed during metadump"));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text == b"END" {
            return Ok(out);
        }
        let Some(encoded) = text.strip_prefix(b"key=") else {
            return Err(format!(
                "{server}: lru_crawler metadump: {}",
                String::from_utf8_lossy(text)
            ));
        };
        let encoded = encoded.split(|&b| b == b' ').next().unwrap_or_default();
        let key = decode(encoded);
        if !key.starts_with(b"\x00keyway-sha256:") {
            out.push(Bytes::from(key));
        }
    }
}

/// One line, bounded: a longer one is an error, not a growing buffer.
async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> Result<usize, String> {
    loop {
        let buf = stream.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Ok(line.len());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        stream.consume(take);
        if line.len() > MAX_LINE {
            return Err("metadump line too long".into());
        }
        if done {
            return Ok(line.len());
        }
    }
}

/// %XX-decoding, as metadump encodes keys.
fn decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(decode(b"sp%25ace"), b"sp%ace");
        assert_eq!(decode(b"bin%00%01"), b"bin\x00\x01");
        assert_eq!(decode(b"odd%2"), b"odd%2");
        assert_eq!(decode(b"plain"), b"plain");
    }
}
