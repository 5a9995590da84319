//! Client libraries that applications use, run against keyway as they
//! would against Redis: BullMQ (Node.js, on ioredis), whose queue is Lua
//! scripts, sorted sets, lists, hashes and a stream read with XREAD BLOCK,
//! on the memory backend of a plain `cargo run`. The same script gives the
//! same line against a redis-server.
//!
//! Needs Node.js and npm (scripts/test.sh installs them if missing); the
//! packages pinned in tests/clients/package-lock.json are installed here
//! on first run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Keyway, RedisServer};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Installs the pinned packages once (`npm ci`), if they are not there.
fn install_packages() {
    let dir = clients_dir();
    if dir.join("node_modules/bullmq/package.json").exists() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .expect("npm runs (scripts/test.sh installs Node.js and npm)");
    assert!(
        out.status.success(),
        "npm ci failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` against the server at `port`; its one line of output.
async fn run_node(script: &str, port: u16) -> String {
    let dir = clients_dir();
    let name = script.to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&name)
            .arg(port.to_string())
            .current_dir(&dir)
            .output()
            .expect("node runs")
    });
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the script finishes within 60 s")
        .expect("the script's thread");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bullmq_runs_its_queue_on_the_memory_backend() {
    tokio::task::spawn_blocking(install_packages).await.unwrap();
    let expected = "result 8 seen 0,2,200,4,6,8,failed:boom,failed:boom \
        counts {\"completed\":6,\"failed\":1,\"delayed\":0,\"waiting\":0,\"active\":0,\"paused\":0}";
    let kw = Keyway::start().await;
    assert_eq!(run_node("bullmq.js", kw.addr.port()).await, expected);
    // What the line is against Redis itself.
    let redis = RedisServer::start();
    assert_eq!(run_node("bullmq.js", redis.port).await, expected);
}
