//! The fuzzers' short fixed-seed replay, run by `cargo test`: every input
//! committed under `fuzz/seeds/<target>/` (what the long runs of
//! `scripts/fuzz.sh` kept), then inputs from a fixed seed, through each
//! fuzz target; and the differential fuzzer for a few thousand commands
//! against a real redis-server.

#[path = "../fuzz/targets.rs"]
mod targets;

#[path = "../fuzz/differential.rs"]
mod differential;

mod common;

use differential::Rng;

/// Committed inputs of a target, then `n` random ones from a fixed seed.
fn inputs(target: &str, n: usize) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut all: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut rng = Rng::new(0x6b65_7977_6179);
    for _ in 0..n {
        let len = (rng.next() % 256) as usize;
        all.push((0..len).map(|_| rng.next() as u8).collect());
    }
    all
}

#[test]
fn codec_replay() {
    let inputs = inputs("codec", 3000);
    assert!(inputs.len() > 3000, "no committed seeds for codec");
    for data in inputs {
        targets::codec(&data);
    }
}

#[test]
fn command_table_replay() {
    let inputs = inputs("command_table", 3000);
    assert!(inputs.len() > 3000, "no committed seeds for command_table");
    for data in inputs {
        targets::command_table(&data);
    }
}

#[test]
fn memory_replay() {
    let inputs = inputs("memory", 1000);
    assert!(inputs.len() > 1000, "no committed seeds for memory");
    for data in inputs {
        targets::memory(&data);
    }
}

#[tokio::test]
async fn differential_replay() {
    let redis = common::RedisServer::start();
    let kw = common::Keyway::start().await;
    let redis_addr = std::net::SocketAddr::from(([127, 0, 0, 1], redis.port));
    for seed in [1, 2, 3] {
        let report = differential::run(redis_addr, kw.addr, seed, 2000, 20, true)
            .await
            .expect("both servers answer");
        let shown: Vec<String> = report.diffs.iter().map(|d| d.to_string()).collect();
        assert!(
            report.diffs.is_empty(),
            "seed {seed}: {} commands, differences:\n{}",
            report.sent,
            shown.join("\n")
        );
    }
}
