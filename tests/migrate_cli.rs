//! `keyway migrate` against a running keyway binary: a backfill followed
//! to its end, interrupted by a restart and resumed from the saved cursor
//! (`server.migration_state`), a verification, the status, and errors.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn keyway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyway"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path, port: u16) -> Running {
    let child = keyway()
        .args(["--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keyway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

fn stop(mut kw: Running) {
    let ok = Command::new("kill")
        .args(["-TERM", &kw.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while kw.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "keyway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `keyway migrate ...`: (success, stdout and stderr).
fn migrate(port: u16, args: &[&str]) -> (bool, String) {
    let out = keyway()
        .arg("migrate")
        .args(args)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_backfill_survives_a_restart_and_the_cli_follows_it() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("keyway-migrate-cli-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    let config = |mirror: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmigration_state = \"{}\"\n\
             [backends.old]\ntype = \"memory\"\nsnapshot = \"{}\"\n\
             [backends.new]\ntype = \"memory\"\nsnapshot = \"{}\"\n\
             [[namespaces]]\nname = \"app\"\nprefix = \"\"\nbackend = \"old\"\n{mirror}",
            dir.join("state").display(),
            dir.join("old.rdb").display(),
            dir.join("new.rdb").display(),
        )
    };
    // The data is there before the mirror.
    std::fs::write(&path, config("")).unwrap();
    let kw = start(&path, port);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.set(format!("k:{i}"), i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    stop(kw);

    std::fs::write(&path, config("mirror = \"new\"\n")).unwrap();
    let kw = start(&path, port);
    let (ok, out) = migrate(
        port,
        &[
            "app", "backfill", "RATE", "1000", "BATCH", "100", "--detach",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("backfill of namespace 'app' started"), "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    // keyway stops in the middle; the cursor was saved.
    stop(kw);
    let kw = start(&path, port);
    let (ok, status) = migrate(port, &["app", "status"]);
    assert!(ok, "{status}");
    assert_eq!(field(&status, "phase"), "stopped", "{status}");
    assert_ne!(field(&status, "cursor"), "", "{status}");

    let (ok, out) = migrate(port, &["app", "backfill", "RESUME", "BATCH", "500"]);
    assert!(ok, "{out}");
    assert!(out.contains("app: backfilled in"), "{out}");
    // Plain lines, not a bar, when the output is not a terminal.
    assert!(out.contains("backfill ") && !out.contains('\r'), "{out}");
    let (ok, status) = migrate(port, &["app", "status"]);
    assert!(ok);
    let resumed: u64 = field(&status, "keys_done").parse().unwrap();
    assert!(resumed < 3000, "resumed, not started over: {status}");

    let (ok, out) = migrate(port, &["app", "verify"]);
    assert!(ok, "{out}");
    assert!(out.contains("app: verified in"), "{out}");

    let (ok, out) = migrate(port, &["nope", "status"]);
    assert!(!ok);
    assert!(
        out.contains("keyway migrate: ERR no namespace named 'nope'"),
        "{out}"
    );
    let (ok, out) = migrate(port, &["app", "jump"]);
    assert!(!ok);
    assert!(out.contains("unknown action 'JUMP'"), "{out}");
    drop(kw);
    let _ = std::fs::remove_dir_all(&dir);
}
