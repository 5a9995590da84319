//! The keyway binary: --check-config, serving redis-cli, graceful shutdown.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn keyway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyway"))
}

fn write_config(text: &str) -> tempfile_path::Path {
    tempfile_path::Path::new(text)
}

/// A config file removed when dropped.
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new(text: &str) -> Path {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "keyway-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).expect("write config");
            Path(p)
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn check_config_summarises_a_good_file() {
    let out = keyway()
        .args(["--config", "config/mixed.toml", "--check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config/mixed.toml: OK, listening on 127.0.0.1:6380, 3 namespace(s)\n  \
         confirmation 'confirm:' -> cache (memory) [default_ttl=900s]\n  \
         sessions 'sess:' -> sessions (memory) [strip_prefix, key_prefix='web:']\n  \
         default (catch-all) -> cache (memory)\n"
    );
}

#[test]
fn every_example_config_is_valid() {
    for entry in std::fs::read_dir("config").unwrap() {
        let path = entry.unwrap().path();
        let out = keyway()
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_lists_every_problem() {
    let file = write_config(
        "[server]\nlisten = \"localhost\"\ncolour = \"blue\"\n\
         [backends.m]\ntype = \"memory\"\nsize = 1\n\
         [backends.x]\ntype = \"cassandra\"\n\
         [[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"nope\"\n\
         [[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"m\"\ndefault_ttl = 0\n",
    );
    let out = keyway()
        .arg("--config")
        .arg(&file.0)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let f = file.0.display().to_string();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{f}: backends.m.size: unknown field; expected one of `max_memory`, `eviction`, `snapshot`\n\
             {f}: backends.x.type: unknown backend type 'cassandra' (built in: memory, redis, redis-cluster, redis-shards, memcached)\n\
             {f}: server.colour: unknown field; expected one of `listen`, `max_clients`, `max_bulk_len`, `password`, `metrics_listen`, `slowlog_log_slower_than`, `slowlog_max_len`, `timeout`, `client_output_buffer_limit`, `max_memory_clients`, `unauthenticated_max_args`, `unauthenticated_max_bulk`, `enable_debug_command`, `tls_listen`, `tls`, `protected_mode`, `databases`, `migration_state`\n\
             {f}: namespaces[0].backend: no backend named 'nope' (defined: m, x)\n\
             {f}: namespaces[1].name: duplicate namespace name 'a' (also namespaces[0])\n\
             {f}: namespaces[1].prefix: duplicate prefix '' (also namespaces[0])\n\
             {f}: namespaces[1].default_ttl: must be at least 1 second (omit it for no TTL)\n"
        )
    );
}

#[test]
fn missing_config_file_is_reported() {
    let out = keyway()
        .args(["--config", "/nonexistent/k.toml", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("/nonexistent/k.toml: (file): cannot read:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// keyway serving on a free port; killed when dropped.
struct Running(Child, u16);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Running {
    let port = free_port();
    let child = keyway()
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keyway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child, port)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed by scripts/test.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_talks_to_keyway() {
    let kw = serve();
    assert_eq!(redis_cli(kw.1, &["PING"]), "PONG\n");
    assert_eq!(redis_cli(kw.1, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(redis_cli(kw.1, &["GET", "greeting"]), "hello world\n");
    assert_eq!(redis_cli(kw.1, &["HSET", "h", "a", "1", "b", "2"]), "2\n");
    assert_eq!(redis_cli(kw.1, &["HMGET", "h", "a", "zz"]), "1\n\n");
    // redis-cli prints an error reply followed by an empty line.
    assert_eq!(
        redis_cli(kw.1, &["GET", "h"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value\n\n"
    );
    assert_eq!(
        redis_cli(kw.1, &["-3", "HELLO", "3"])
            .lines()
            .take(3)
            .collect::<Vec<_>>(),
        ["server redis", "version 7.2.4", "proto 3"]
    );
    // Interactive mode reads commands from stdin, as a person types them.
    let mut child = Command::new("redis-cli")
        .args(["-p", &kw.1.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"INCR n\nINCRBY n 41\nTTL n\nNOSUCH\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n42\n-1\nERR unknown command 'NOSUCH', with args beginning with: \n\n"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut kw = serve();
    assert_eq!(redis_cli(kw.1, &["PING"]), "PONG\n");
    let status = Command::new("kill")
        .args(["-TERM", &kw.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = kw.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "keyway did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One row of the README's command table.
struct Row {
    /// The command names (and option words) of the first column, lower case.
    names: Vec<String>,
    memory: bool,
    redis: bool,
    /// "yes", "no", or the names of the row it serves.
    memcached: Vec<String>,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn readme_table() -> Vec<Row> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Command"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let [names, memory, redis, memcached] = cols[..] else {
                return None;
            };
            Some(Row {
                names: words(names),
                memory: memory == "yes",
                redis: redis == "yes",
                memcached: words(memcached),
            })
        })
        .collect()
}

#[test]
fn readme_lists_every_memcached_command() {
    use keyway::backend::memcached::SUPPORTED;
    let table = readme_table();
    for name in SUPPORTED {
        let listed = table.iter().any(|r| {
            r.names.iter().any(|n| n == name)
                && (r.memcached == ["yes"] || r.memcached.iter().any(|n| n == name))
        });
        assert!(listed, "README's command table lacks {name} for memcached");
    }
    // And claims nothing more.
    for r in &table {
        let claimed: Vec<&String> = if r.memcached == ["yes"] {
            r.names.iter().collect()
        } else if r.memcached == ["no"] {
            Vec::new()
        } else {
            r.memcached.iter().collect()
        };
        for n in claimed {
            if keyway::wire::command::lookup(n.as_bytes()).is_some() {
                assert!(
                    SUPPORTED.contains(&n.as_str()),
                    "README claims memcached runs {n}"
                );
            }
        }
    }
}

#[test]
fn readme_lists_every_memory_command() {
    let table = readme_table();
    for name in keyway::backend::memory::supported_commands() {
        let listed = table
            .iter()
            .any(|r| r.memory && r.names.iter().any(|n| n == name));
        assert!(listed, "README's command table lacks {name} for memory");
    }
}

#[test]
fn readme_lists_every_forwarded_command() {
    use keyway::wire::command::{KEYSPACE, LOCAL};
    let table = readme_table();
    for spec in keyway::wire::command::table() {
        if spec.has(LOCAL) || spec.has(KEYSPACE) && spec.name != "keys" && spec.name != "scan" {
            continue;
        }
        let listed = table
            .iter()
            .any(|r| r.redis && r.names.iter().any(|n| n == spec.name));
        assert!(
            listed,
            "README's command table lacks {} for redis",
            spec.name
        );
    }
}

#[test]
fn sighup_reloads_the_config_file_and_logs_json() {
    let port = free_port();
    let config = |extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[backends.m]\ntype = \"memory\"\n\
             [[namespaces]]\nname = \"users\"\nprefix = \"user:\"\nbackend = \"m\"\n{extra}"
        )
    };
    let file = write_config(&config(""));
    let log = std::env::temp_dir().join(format!("keyway-log-{}.jsonl", std::process::id()));
    let child = keyway()
        .args([
            "--config",
            &file.0.display().to_string(),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kw = Running(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keyway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        redis_cli(port, &["SET", "other", "1"]),
        "ERR no namespace owns key 'other'\n\n"
    );
    std::fs::write(
        &file.0,
        config("[[namespaces]]\nname = \"rest\"\nprefix = \"\"\nbackend = \"m\"\n"),
    )
    .unwrap();
    let ok = Command::new("kill")
        .args(["-HUP", &kw.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut reply = String::new();
    for _ in 0..100 {
        reply = redis_cli(port, &["SET", "other", "1"]);
        if reply == "OK\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reply, "OK\n", "the reload did not apply");
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(!lines.is_empty());
    for line in lines.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
    }
    assert!(lines.contains("\"message\":\"config reloaded\""), "{lines}");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn check_config_warns_about_what_the_file_exposes() {
    let path = write_config(
        "[server]\nlisten = \"0.0.0.0:6380\"\nmetrics_listen = \"0.0.0.0:9121\"\n\
         [backends.r]\ntype = \"redis\"\nurl = \"redis://app:hunter2@127.0.0.1:7000\"\n\
         [[namespaces]]\nname = \"a\"\nprefix = \"a:\"\nbackend = \"r\"\n\
         [[namespaces]]\nname = \"b\"\nprefix = \"b:\"\nbackend = \"r\"\n",
    );
    let out = keyway()
        .arg("--config")
        .arg(&path.0)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("    scripts are refused in namespace 'a': it shares Redis server 127.0.0.1:7000 with namespace 'b'"), "{text}");
    assert!(text.contains("warning: server.listen 0.0.0.0:6380 is reachable from other hosts and the default user has no password: protected mode refuses their clients"), "{text}");
    assert!(
        text.contains(
            "warning: server.metrics_listen 0.0.0.0:9121 serves metrics and probes to other hosts"
        ),
        "{text}"
    );
    assert!(
        text.contains("warning: backends.r.url holds a password in clear"),
        "{text}"
    );
}

/// What can be checked of the image without a container engine: pinned
/// bases, CA certificates, the dependency layer, the probe and the ports;
/// and the binary, run as the image runs it (its config file and its
/// environment), listening where the environment says and answering the
/// image's HEALTHCHECK command.
#[test]
fn the_image_is_what_its_dockerfile_says() {
    let df = std::fs::read_to_string("Dockerfile").unwrap();
    for from in df.lines().filter(|l| l.starts_with("FROM ")) {
        let image = from.split_whitespace().nth(1).unwrap_or_default();
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "unpinned base image: {from}"
        );
    }
    for want in [
        "ca-certificates",
        "cargo build --release --locked --bin keyway",
        "EXPOSE 6380 9121",
        "KEYWAY_LISTEN=0.0.0.0:6380",
        "KEYWAY_METRICS_LISTEN=0.0.0.0:9121",
        "HEALTHCHECK",
        "COPY config/memory.toml /etc/keyway/keyway.toml",
    ] {
        assert!(df.contains(want), "Dockerfile lacks {want}");
    }
    // Dependencies are built before keyway's source is copied in.
    let deps = df.find("echo 'fn main() {}'").expect("dependency layer");
    assert!(deps < df.find("COPY src ./src").expect("source copied"));
    let ignore = std::fs::read_to_string(".dockerignore").unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");
    // The binary with the image's config and environment (listening on
    // this host's loopback here, where the image says 0.0.0.0).
    let (port, metrics) = (free_port(), free_port());
    let mut child = keyway()
        .env("KEYWAY_CONFIG", "config/memory.toml")
        .env("KEYWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", metrics)).is_err() {
        assert!(Instant::now() < deadline, "keyway did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_cli(port, &["PING"]), "PONG\n");
    let probe = df
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD [\"bash\", \"-c\", \""))
        .and_then(|rest| rest.strip_suffix("\"]"))
        .expect("HEALTHCHECK runs bash -c")
        .replace("\\\\", "\\")
        .replace("/9121", &format!("/{metrics}"));
    let healthy = Command::new("bash").args(["-c", &probe]).status().unwrap();
    assert!(healthy.success(), "{probe}");
    let _ = child.kill();
    let _ = child.wait();
    // Debian's CA bundle, which the image installs, is what rustls reads.
    assert!(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists());
}

/// The deployment examples' configs pass --check-config.
#[test]
fn deployment_examples_are_valid() {
    let compose = std::fs::read_to_string("deploy/compose-keyway.toml")
        .unwrap()
        .replace(
            "/var/lib/keyway/",
            &format!("{}/", std::env::temp_dir().display()),
        );
    let kube = std::fs::read_to_string("deploy/kubernetes.yaml").unwrap();
    let embedded: String = kube
        .split("keyway.toml: |\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .expect("the ConfigMap's file")
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    for text in [compose, embedded] {
        let file = write_config(&text);
        let out = keyway()
            .env("KEYWAY_PASSWORD", "x")
            .arg("--config")
            .arg(&file.0)
            .arg("--check-config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// --check-config warns of what would only show in production: keys no
/// namespace catches, and rediss:// on a machine without CA certificates.
#[test]
fn check_config_warns_before_production_does() {
    let file = write_config(
        "[server]\nlisten = \"127.0.0.1:6380\"\n\
         [backends.managed]\ntype = \"redis\"\nurl = \"rediss://cache.example.com:6380\"\n\
         [[namespaces]]\nname = \"s\"\nprefix = \"sess:\"\nbackend = \"managed\"\n",
    );
    let out = keyway()
        .arg("--config")
        .arg(&file.0)
        .arg("--check-config")
        .env("SSL_CERT_FILE", "/dev/null")
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: no namespace has prefix \"\""),
        "{text}"
    );
    assert!(
        text.contains("warning: backends.managed: rediss:// servers are checked against the system's CA certificates, and this machine has none"),
        "{text}"
    );
    // With the machine's certificates, no such warning.
    let out = keyway()
        .arg("--config")
        .arg(&file.0)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("CA certificates"));
}

/// --check-config --connect asks every backend, with its TLS and login,
/// and says which answered; it fails when one does not.
#[test]
fn check_config_connect_reports_each_backend() {
    let (up, down) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("keyway-connect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &up.to_string(),
            "--save",
            "",
            "--requirepass",
            "pw",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", up)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = |url: &str| {
        format!(
            "[backends.main]\ntype = \"redis\"\nurl = \"{url}\"\ncommand_timeout_ms = 500\n\
             [backends.cache]\ntype = \"memcached\"\nservers = [\"127.0.0.1:{down}\"]\n\
             [backends.local]\ntype = \"memory\"\n\
             [[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"main\"\n\
             [[namespaces]]\nname = \"c\"\nprefix = \"c:\"\nbackend = \"cache\"\n\
             [[namespaces]]\nname = \"l\"\nprefix = \"l:\"\nbackend = \"local\"\n"
        )
    };
    let run = |text: &str| {
        let file = write_config(text);
        keyway()
            .arg("--config")
            .arg(&file.0)
            .args(["--check-config", "--connect"])
            .output()
            .unwrap()
    };
    let out = run(&config(&format!("redis://:pw@127.0.0.1:{up}")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backend 'main' (redis): OK, answered in"),
        "{text}"
    );
    assert!(
        text.contains("backend 'cache' (memcached): FAILED"),
        "{text}"
    );
    assert!(text.contains("backend 'local' (memory): OK"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    // A wrong password is what it says.
    let out = run(&config(&format!("redis://:wrong@127.0.0.1:{up}")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backend 'main' (redis): FAILED") && text.to_lowercase().contains("pass"),
        "{text}"
    );
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
