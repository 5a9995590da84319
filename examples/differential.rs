//! The differential fuzzer's long run (see `fuzz/differential.rs`):
//! `cargo run --release --example differential -- REDIS_PORT SEED COMMANDS`
//! sends COMMANDS random commands from SEED to keyway's memory backend
//! (started here, on a free port) and to the redis-server on REDIS_PORT,
//! prints what differed, and exits non-zero if anything did.
//! With CHECK_STATE set, the keys each write names are compared after it,
//! to find where two servers' data part.
//! `scripts/fuzz.sh` starts the redis-server and runs it.

#[path = "../fuzz/targets.rs"]
mod targets;

#[path = "../fuzz/differential.rs"]
mod differential;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(seed), Some(commands)) = (
        args.get(1).and_then(|a| a.parse::<u16>().ok()),
        args.get(2).and_then(|a| a.parse::<u64>().ok()),
        args.get(3).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: differential REDIS_PORT SEED COMMANDS");
        return ExitCode::from(2);
    };
    let mut config = keyway::ops::config::Config::default();
    config.server.listen = "127.0.0.1:0".into();
    let server = match keyway::ops::Instance::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start keyway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let keyway = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let redis = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = std::time::Instant::now();
    let report = match differential::run(
        redis,
        keyway,
        seed,
        commands,
        100000,
        std::env::var_os("CHECK_STATE").is_some(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("differential run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    for d in &report.diffs {
        println!("{d}");
    }
    let total: usize = report.by_command.values().sum();
    println!(
        "seed {seed}: {} commands in {:.1} s, {total} differences",
        report.sent,
        started.elapsed().as_secs_f64()
    );
    for (name, n) in &report.by_command {
        println!("  {name}: {n}");
    }
    if total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
