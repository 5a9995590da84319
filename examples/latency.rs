//! One client, one request in flight: the latency a service that talks to
//! its cache request by request sees, to the microsecond (redis-benchmark's
//! histogram rounds these to 8 µs steps, too coarse to tell two proxies
//! apart). Used by `scripts/bench.sh`.
//!
//!   cargo run --release --example latency -- HOST:PORT [REQUESTS] [CPU_PID]
//!
//! Runs SET then GET (64-byte values, 100,000 keys) and prints, per test,
//! one CSV line: `test,requests,p50_us,p90_us,p99_us,p999_us,cpu_us_per_req`
//! where the CPU is that of process CPU_PID (the proxy) during the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: latency HOST:PORT [REQUESTS] [CPU_PID]");
        std::process::exit(2);
    };
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let pid: Option<u32> = args.next().and_then(|p| p.parse().ok());
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| {
        eprintln!("cannot connect to {addr}: {e}");
        std::process::exit(1);
    });
    s.set_nodelay(true).ok();
    let value = [b'v'; 64];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_key = move || {
        // xorshift: cheap, and the same keys every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 100_000
    };
    let mut buf = vec![0u8; 4096];
    for test in ["set", "get"] {
        let mut times = Vec::with_capacity(requests);
        // A warm-up the figures leave out: connections, caches, the CPU's clock.
        let warm = requests / 10;
        let cpu_before = pid.map(cpu_ticks);
        let mut started = Instant::now();
        for i in 0..warm + requests {
            if i == warm {
                started = Instant::now();
            }
            let key = format!("key:{:06}", next_key());
            let mut req = Vec::with_capacity(128);
            if test == "set" {
                req.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$10\r\n");
                req.extend_from_slice(key.as_bytes());
                req.extend_from_slice(b"\r\n$64\r\n");
                req.extend_from_slice(&value);
                req.extend_from_slice(b"\r\n");
            } else {
                req.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$10\r\n");
                req.extend_from_slice(key.as_bytes());
                req.extend_from_slice(b"\r\n");
            }
            let t = Instant::now();
            if let Err(e) = s.write_all(&req) {
                eprintln!("write: {e}");
                std::process::exit(1);
            }
            read_reply(&mut s, &mut buf);
            if i >= warm {
                times.push(t.elapsed().as_nanos() as u64);
            }
        }
        let wall = started.elapsed();
        let cpu = match (pid, cpu_before) {
            (Some(p), Some(b)) => {
                let ticks = cpu_ticks(p).saturating_sub(b) as f64;
                format!("{:.2}", ticks * 1e6 / clock_ticks() / requests as f64)
            }
            _ => String::new(),
        };
        times.sort_unstable();
        let at =
            |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)] as f64 / 1e3;
        println!(
            "{test},{requests},{:.1},{:.1},{:.1},{:.1},{cpu},{:.0}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            requests as f64 / wall.as_secs_f64()
        );
    }
}

/// Reads one reply: a status, an error, an integer or a bulk string (all
/// that SET and GET answer).
fn read_reply(s: &mut TcpStream, buf: &mut [u8]) {
    let mut have = 0;
    loop {
        match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => {
                eprintln!("connection lost");
                std::process::exit(1);
            }
            Ok(n) => have += n,
        }
        let Some(eol) = buf[..have].windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        if buf[0] != b'$' {
            return;
        }
        let len: i64 = std::str::from_utf8(&buf[1..eol])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1);
        if len < 0 || have >= eol + 2 + len as usize + 2 {
            return;
        }
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime: fields 14 and 15, counted after the command's ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}
