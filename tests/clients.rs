//! Job-queue libraries that applications use, run against keyway's memory
//! backend (a plain `cargo run`) and through keyway to a redis-server, as
//! they would against Redis: each script prints what it saw, compared with
//! the same script against the redis-server itself:
//! - BullMQ (Node.js, on ioredis): Lua scripts, sorted sets, lists, hashes
//!   and a stream read with XREAD BLOCK;
//! - RQ and Celery (Python, on redis-py 6): WATCH/MULTI, results in
//!   streams; lists, sorted sets, hashes and pub/sub.
//!
//! Needs Node.js with npm, and Python 3 with venv (scripts/test.sh
//! installs them if missing); the packages pinned in tests/clients
//! (package-lock.json, requirements.txt) are installed here on first run,
//! into tests/clients/node_modules and tests/clients/.venv.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Runs a client script to its end; the lines it printed, blank ones left
/// out. A script still running after `secs` is killed and the test fails.
async fn run_script(mut cmd: Command, secs: u64) -> String {
    let what = format!("{cmd:?}");
    let run = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the script starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while child.try_wait().expect("the script's status").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("the script's output")
    });
    let out = run.await.expect("the script's thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed (or ran over {secs} s):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.join("\n")
}

async fn run_node(script: &str, port: u16) -> String {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(port.to_string())
        .current_dir(clients_dir());
    run_script(cmd, 60).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bullmq_runs_its_queue_through_keyway() {
    tokio::task::spawn_blocking(install_packages).await.unwrap();
    let expected = "result 8 seen 0,2,200,4,6,8,failed:boom,failed:boom \
        counts {\"completed\":6,\"failed\":1,\"delayed\":0,\"waiting\":0,\"active\":0,\"paused\":0}";
    let kw = Keyway::start().await;
    assert_eq!(run_node("bullmq.js", kw.addr.port()).await, expected);
    // What the line is against Redis itself, and through keyway to it.
    let redis = RedisServer::start();
    assert_eq!(run_node("bullmq.js", redis.port).await, expected);
    let proxy = Keyway::with_toml(&redis_backend(redis.port)).await;
    assert_eq!(run_node("bullmq.js", proxy.addr.port()).await, expected);
}

/// One namespace for every key, on the redis-server at `port`.
fn redis_backend(port: u16) -> String {
    format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n"
    )
}

/// A virtualenv with the pinned Python packages, made once.
fn python_env() -> PathBuf {
    let dir = clients_dir();
    let python = dir.join(".venv/bin/python");
    let ready = dir.join(".venv/installed");
    if ready.exists() {
        return python;
    }
    let run = |cmd: &mut Command| {
        let out = cmd.current_dir(&dir).output().expect("python3 runs");
        assert!(
            out.status.success(),
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv", ".venv"]));
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        "requirements.txt",
    ]));
    std::fs::write(&ready, "").expect("venv marker");
    python
}

async fn run_python(python: &Path, port: u16) -> String {
    let mut cmd = Command::new(python);
    cmd.arg("python_queues.py")
        .arg(port.to_string())
        .env("PYTHONPATH", clients_dir())
        .current_dir(clients_dir());
    run_script(cmd, 90).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_and_celery_run_their_jobs_through_keyway() {
    let python = tokio::task::spawn_blocking(python_env).await.unwrap();
    let expected = "rq [0, 2, 4, 6] 100 failed failed=1 finished=5\n\
        celery [0, 2, 4, 6, 8] 7 2 [1, 2, 3]";
    let kw = Keyway::start().await;
    assert_eq!(run_python(&python, kw.addr.port()).await, expected);
    let redis = RedisServer::start();
    assert_eq!(run_python(&python, redis.port).await, expected);
    let proxy = Keyway::with_toml(&redis_backend(redis.port)).await;
    assert_eq!(run_python(&python, proxy.addr.port()).await, expected);
}
