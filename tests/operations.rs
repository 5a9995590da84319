//! Operations: config reload, the metrics endpoint, INFO, logs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Keyway, RedisServer};
use keyway::ops::reload::Outcome;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config file in its own directory, both removed when the test ends.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl std::ops::Deref for TempConfig {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempConfig {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_config(name: &str, text: &str) -> TempConfig {
    let dir = std::env::temp_dir().join(format!("keyway-ops-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    std::fs::write(&path, text).unwrap();
    TempConfig { dir, path }
}

fn memory_config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"
[backends.local]
type = "memory"
[[namespaces]]
name = "app"
prefix = ""
backend = "local"
"#
    .to_string()
}

fn redis_config(port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.local]
type = "memory"
[backends.main]
type = "redis"
url = "redis://127.0.0.1:{port}"
[[namespaces]]
name = "app"
prefix = ""
backend = "main"
[[namespaces]]
name = "scratch"
prefix = "tmp:"
backend = "local"
"#
    )
}

#[tokio::test]
async fn reload_moves_a_namespace_under_a_connected_client() {
    let redis = RedisServer::start();
    let path = temp_config("move", &memory_config());
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    let _: () = c.set("tmp:kept", "x").await.unwrap();

    // One connection keeps writing and reading back while the config moves.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = kw.client().await;
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 50 {
                let key = format!("k{i}");
                let set: redis::RedisResult<()> = c.set(&key, i).await;
                set.unwrap_or_else(|e| panic!("SET {key} failed during reload: {e}"));
                // A read right after the swap may go to the new, empty
                // backend (no data is migrated); it must never fail.
                let got: redis::RedisResult<Option<u64>> = c.get(&key).await;
                got.unwrap_or_else(|e| panic!("GET {key} failed during reload: {e}"));
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&path, redis_config(redis.port)).unwrap();
    assert_eq!(kw.ops.reload(), Outcome::Applied);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written >= 50);

    // After the swap, writes land in redis.
    let _: () = c.set("after", "in redis").await.unwrap();
    let mut direct = redis.direct().await;
    let v: String = direct.get("after").await.unwrap();
    assert_eq!(v, "in redis");
    let last = format!("k{}", written - 1);
    let v: u64 = direct.get(&last).await.unwrap();
    assert_eq!(v, written - 1);
    // The memory backend's settings did not change, so it kept its data.
    let v: String = c.get("tmp:kept").await.unwrap();
    assert_eq!(v, "x");
}

#[tokio::test]
async fn reload_keeps_unchanged_backends_and_refuses_bad_files() {
    let redis = RedisServer::start();
    let path = temp_config("keep", &redis_config(redis.port));
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    let _: () = c.set("tmp:kept", "still here").await.unwrap();
    let _: () = c.set("r", "1").await.unwrap();
    let before = kw.ops.backends.lock().unwrap().clone();

    // A new namespace; the backends' settings are unchanged.
    let mut text = redis_config(redis.port);
    text.push_str("[[namespaces]]\nname = \"extra\"\nprefix = \"x:\"\nbackend = \"local\"\n");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(kw.ops.reload(), Outcome::Applied);
    let after = kw.ops.backends.lock().unwrap().clone();
    for name in ["local", "main"] {
        assert!(
            Arc::ptr_eq(&before[name].1, &after[name].1),
            "{name} was rebuilt"
        );
    }
    let v: String = c.get("tmp:kept").await.unwrap();
    assert_eq!(v, "still here");
    assert_eq!(kw.shared.router.load().namespaces.len(), 3);

    // A bad file: every problem reported, the running config kept.
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n[[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"nope\"\n",
    )
    .unwrap();
    let Outcome::Rejected(problems) = kw.ops.reload() else {
        panic!("a bad config was applied");
    };
    let file = path.display();
    assert_eq!(
        problems,
        format!(
            "{file}: server.bogus: unknown field; expected one of `listen`, `max_clients`, `max_bulk_len`, `password`, `metrics_listen`, `slowlog_log_slower_than`, `slowlog_max_len`, `timeout`, `client_output_buffer_limit`, `max_memory_clients`, `unauthenticated_max_args`, `unauthenticated_max_bulk`, `enable_debug_command`, `tls_listen`, `tls`, `protected_mode`, `databases`, `migration_state`\n\
             {file}: namespaces[0].backend: no backend named 'nope' (defined: none)"
        )
    );
    let v: String = c.get("r").await.unwrap();
    assert_eq!(v, "1");
    assert_eq!(kw.shared.router.load().namespaces.len(), 3);

    // The listen address cannot change: the rest applies, listen stays.
    std::fs::write(&path, text.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    assert_eq!(kw.ops.reload(), Outcome::Applied);
    assert_eq!(kw.shared.settings.load().server.listen, "127.0.0.1:0");
    let v: String = c.get("r").await.unwrap();
    assert_eq!(v, "1");
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    http_get(addr, "/metrics").await
}

/// The whole HTTP response to `GET path`.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

/// Liveness and readiness probes (Kubernetes, load balancers): ready while
/// no backend a namespace uses is down.
#[tokio::test]
async fn probes_say_when_a_backend_is_down() {
    let mut redis = RedisServer::start();
    let config = redis_config(redis.port)
        .replace("[server]\n", "[server]\nmetrics_listen = \"127.0.0.1:0\"\n");
    let kw = Keyway::with_toml(&config).await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let live = http_get(addr, "/healthz").await;
    assert!(
        live.starts_with("HTTP/1.1 200 OK\r\n") && live.ends_with("\r\n\r\nok\n"),
        "{live}"
    );
    // Not yet connected: ready, or no client would ever make it connect.
    let ready = http_get(addr, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200 OK\r\n")
            && ready.ends_with(
                "\r\n\r\nbackend 'main' (redis): idle (connects on first use)\nbackend 'local' (memory): up\n"
            ),
        "{ready}"
    );
    let mut raw = kw.raw().await;
    raw.check("SET k v", "+OK\r\n").await;
    let ready = http_get(addr, "/readyz").await;
    assert!(
        ready.contains("backend 'main' (redis): up (1/1 connections)\n"),
        "{ready}"
    );

    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = http_get(addr, "/readyz").await;
    assert!(
        down.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && down.contains("backend 'main' (redis): down (connection refused)\n"),
        "{down}"
    );
    assert!(
        http_get(addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
    );

    redis.restart();
    let mut back = false;
    for _ in 0..50 {
        if http_get(addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "not ready again after the server came back");
}

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_endpoint_counts() {
    let kw = Keyway::with_toml(
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\n[backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"metered\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let before = scrape(addr).await;
    assert!(before.starts_with("HTTP/1.1 200 OK\r\n"), "{before}");
    let set = "keyway_commands_total{command=\"set\",namespace=\"metered\"}";
    let errors = "keyway_errors_total{kind=\"WRONGTYPE\"}";
    let mut raw = kw.raw().await;
    for _ in 0..3 {
        raw.check("SET k v", "+OK\r\n").await;
    }
    raw.check(
        "HGET k f",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
    let after = scrape(addr).await;
    assert!(sample(&after, set) >= sample(&before, set) + 3.0, "{after}");
    assert!(
        sample(&after, errors) >= sample(&before, errors) + 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "keyway_client_connections ") >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "keyway_client_read_bytes_total") > 0.0,
        "{after}"
    );
    assert!(
        after.contains("keyway_backend_batch_seconds_count{namespace=\"metered\",backend=\"m\"}"),
        "{after}"
    );
    assert!(
        after.contains("keyway_config_reloads_total{result=\"failure\"}"),
        "{after}"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 404 Not Found\r\n"), "{body}");
}

#[tokio::test]
async fn info_has_the_sections_dashboards_read() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&redis_config(redis.port)).await;
    let mut c = kw.client().await;
    let _: () = c.set("a", 1).await.unwrap();
    let info: redis::InfoDict = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    let get = |k: &str| {
        info.get::<String>(k)
            .unwrap_or_else(|| panic!("INFO lacks {k}"))
    };
    // The server's version, which keyway learns as it starts.
    let direct: redis::InfoDict = redis::cmd("INFO")
        .query_async(&mut redis.direct().await)
        .await
        .unwrap();
    let version: String = direct.get("redis_version").unwrap();
    let c2 = kw.client().await;
    common::until("keyway to report the server's version", 10, || {
        let mut c2 = c2.clone();
        let version = version.clone();
        async move {
            let info: redis::InfoDict = redis::cmd("INFO").query_async(&mut c2).await.unwrap();
            info.get::<String>("redis_version") == Some(version)
        }
    })
    .await;
    assert!(get("connected_clients").parse::<u64>().unwrap() >= 1);
    assert!(get("used_memory").parse::<u64>().unwrap() > 0);
    assert!(get("total_commands_processed").parse::<u64>().unwrap() >= 1);
    assert_eq!(get("namespaces"), "2");
    assert_eq!(
        get("namespace_app"),
        "prefix=,backend=main,type=redis,listed=yes"
    );
    assert!(
        get("backend_main").starts_with("type=redis,health=up ("),
        "{}",
        get("backend_main")
    );
    assert_eq!(get("backend_local"), "type=memory,health=up");
    let section: String = redis::cmd("INFO")
        .arg("keyway")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        section.starts_with("# Keyway\r\nnamespaces:2\r\n"),
        "{section}"
    );
    // As Redis lays sections out: a blank line between two, none at the end.
    let two: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("cluster")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(two.starts_with("# CPU\r\nused_cpu_sys:"), "{two}");
    assert!(
        two.ends_with("used_cpu_user_children:0.000000\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n"),
        "{two}"
    );
    drop(redis);
    // A dead backend shows in its health line.
    let mut down = String::new();
    for _ in 0..50 {
        let _: redis::RedisResult<()> = c.set("a", 2).await;
        let info: redis::InfoDict = redis::cmd("INFO")
            .arg("keyway")
            .query_async(&mut c)
            .await
            .unwrap();
        down = info.get::<String>("backend_main").unwrap_or_default();
        if down.contains("health=down") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(down.starts_with("type=redis,health=down ("), "{down}");
}

/// The `db0` field of INFO keyspace.
async fn db0(c: &mut redis::aio::MultiplexedConnection) -> String {
    let info: redis::InfoDict = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(c)
        .await
        .unwrap();
    info.get::<String>("db0").unwrap_or_default()
}

/// Exporters read `db0` only with `expires` and `avg_ttl`: keyway gives
/// them when every namespace's backend can count its expiring keys.
#[tokio::test]
async fn info_keyspace_counts_expiring_keys_where_it_can() {
    let kw = Keyway::start().await;
    let mut c = kw.client().await;
    let _: () = c.set("a", 1).await.unwrap();
    let _: () = c.set_ex("b", 2, 100).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("c")
        .arg(3)
        .arg("PX")
        .arg(50_000)
        .query_async(&mut c)
        .await
        .unwrap();
    let line = db0(&mut c).await;
    let avg: u64 = line
        .strip_prefix("keys=3,expires=2,avg_ttl=")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // (100 s + 50 s) / 2, less the moments since.
    assert!((70_000..=75_000).contains(&avg), "{line}");

    // A redis backend owning its server reports what Redis counts; a
    // namespace sharing a memory backend under a prefix cannot tell, and
    // then db0 has the key count alone.
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&redis_config(redis.port)).await;
    let mut c = kw.client().await;
    let _: () = c.set("a", 1).await.unwrap();
    let _: () = c.set_ex("b", 2, 100).await.unwrap();
    let _: () = c.set_ex("tmp:x", 1, 50).await.unwrap();
    assert_eq!(db0(&mut c).await, "keys=3");
    let _: () = c.del("tmp:x").await.unwrap();
    let line = db0(&mut c).await;
    assert!(line.starts_with("keys=2,expires=1,avg_ttl="), "{line}");
}

/// SLOWLOG lists requests slower than the threshold (0 here: all), newest
/// first, with Redis's entry layout and error texts.
#[tokio::test]
async fn slowlog_lists_slow_requests() {
    let kw = Keyway::with_toml(
        "[server]\nslowlog_log_slower_than = 0\nslowlog_max_len = 3\n\
         [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    let mut raw = kw.raw().await;
    raw.check("CLIENT SETNAME probe", "+OK\r\n").await;
    raw.check("SET a 1", "+OK\r\n").await;
    raw.check("KEYS *", "*1\r\n$1\r\na\r\n").await;
    // A pipeline is one entry, under its first command.
    let mut pipeline = common::resp(&["INCR", "n"]);
    pipeline.extend(common::resp(&["INCR", "n"]));
    pipeline.extend(common::resp(&["GET", "n"]));
    raw.send(&pipeline).await;
    raw.expect(":1\r\n:2\r\n$1\r\n2\r\n").await;
    // keyway's own commands are logged too, after they ran, as in Redis:
    // CLIENT 0, SET 1, KEYS 2, the pipeline 3; three are kept.
    raw.check("SLOWLOG LEN", ":3\r\n").await;
    raw.send(&common::resp(&["SLOWLOG", "GET", "2"])).await;
    let entries = String::from_utf8(raw.reply().await).unwrap();
    let all: Vec<&str> = entries.split("\r\n").collect();
    assert_eq!(all[0], "*2");
    // The newest: SLOWLOG LEN itself, id 4, in 13 lines.
    assert_eq!(&all[1..3], ["*6", ":4"], "{entries}");
    assert_eq!(&all[5..10], ["*2", "$7", "SLOWLOG", "$3", "LEN"]);
    // The pipeline's entry follows, laid out as lines[1..] here.
    let lines = &all[13..];
    assert_eq!(lines[1], "*6");
    assert_eq!(
        lines[2], ":3",
        "ids count up: CLIENT 0, SET 1, KEYS 2, the pipeline 3"
    );
    assert!(lines[3].starts_with(':') && lines[4].starts_with(':'));
    assert_eq!(
        &lines[5..12],
        [
            "*3",
            "$4",
            "INCR",
            "$1",
            "n",
            "$37",
            "... (2 more commands in the pipeline)"
        ]
    );
    assert!(lines[13].starts_with("127.0.0.1:"), "{entries}");
    assert_eq!(&lines[14..16], ["$5", "probe"]);
    raw.check(
        "CONFIG GET slowlog-*",
        "*4\r\n$23\r\nslowlog-log-slower-than\r\n$1\r\n0\r\n$15\r\nslowlog-max-len\r\n$1\r\n3\r\n",
    )
    .await;
    raw.check(
        "SLOWLOG GET abc",
        "-ERR count should be greater than or equal to -1\r\n",
    )
    .await;
    raw.check(
        "SLOWLOG GET 1 2",
        "-ERR unknown subcommand or wrong number of arguments for 'get'. Try SLOWLOG HELP.\r\n",
    )
    .await;
    raw.check(
        "SLOWLOG LEN x",
        "-ERR wrong number of arguments for 'slowlog|len' command\r\n",
    )
    .await;
    raw.check(
        "SLOWLOG FOO",
        "-ERR unknown subcommand 'FOO'. Try SLOWLOG HELP.\r\n",
    )
    .await;
    // RESET empties the log, and is then logged itself, as in Redis.
    raw.check("SLOWLOG RESET", "+OK\r\n").await;
    raw.check("SLOWLOG LEN", ":1\r\n").await;
}

/// CLIENT REPLY OFF/SKIP/ON drop replies as Redis drops them, the
/// command's own included; tracking is reported off.
#[tokio::test]
async fn client_reply_modes_and_tracking_state_as_in_redis() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let commands = [
        "CLIENT REPLY SKIP",
        "SET a 1",
        "GET a",
        "CLIENT REPLY OFF",
        "SET b 2",
        "GET nosuchcommand-is-fine",
        "NOSUCH",
        "CLIENT REPLY ON",
        "GET b",
        "CLIENT REPLY foo",
        "CLIENT REPLY",
        "CLIENT GETREDIR",
        "CLIENT TRACKINGINFO",
        "PING",
    ];
    let mut transcripts = Vec::new();
    for mut c in [redis.raw().await, kw.raw().await] {
        // Pipelined, then one at a time.
        let all: Vec<u8> = commands
            .iter()
            .flat_map(|cmd| common::resp(&cmd.split(' ').collect::<Vec<_>>()))
            .collect();
        c.send(&all).await;
        let mut got = Vec::new();
        for _ in 0..8 {
            got.extend(c.reply().await);
        }
        for cmd in commands {
            c.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
                .await;
            if !matches!(cmd, "CLIENT REPLY SKIP" | "SET a 1" | "CLIENT REPLY OFF")
                && !matches!(cmd, "SET b 2" | "GET nosuchcommand-is-fine" | "NOSUCH")
            {
                got.extend(c.reply().await);
            }
        }
        transcripts.push(got.escape_ascii().to_string());
    }
    assert_eq!(transcripts[1], transcripts[0]);
    assert!(
        transcripts[0].ends_with("+PONG\\r\\n"),
        "{}",
        transcripts[0]
    );
}

/// MEMORY describes keyway: STATS with Redis's fields, HELP and errors
/// as Redis gives them; USAGE still reads the key on its backend.
#[tokio::test]
async fn memory_subcommands_as_in_redis() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "MEMORY HELP",
            "MEMORY STATS x",
            "MEMORY NOSUCH",
            "MEMORY PURGE",
            "MEMORY",
            "SET k v",
            "MEMORY USAGE nosuch",
        ],
    )
    .await;
    let names = |reply: redis::Value| -> Vec<String> {
        let redis::Value::Array(items) = reply else {
            panic!("{reply:?}")
        };
        items
            .into_iter()
            .step_by(2)
            .filter_map(|v| match v {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
            .filter(|n| !n.starts_with("db."))
            .collect()
    };
    let mut rc = redis.direct().await;
    let mut kc = kw.client().await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut kc)
        .await
        .unwrap();
    let theirs: redis::Value = redis::cmd("MEMORY")
        .arg("STATS")
        .query_async(&mut rc)
        .await
        .unwrap();
    let ours: redis::Value = redis::cmd("MEMORY")
        .arg("STATS")
        .query_async(&mut kc)
        .await
        .unwrap();
    let ours_text = format!("{ours:?}");
    assert_eq!(names(ours), names(theirs));
    assert!(ours_text.contains("keys.count\"'), int(1)"), "{ours_text}");
}

/// CONFIG SET requirepass sets the default user's password as in Redis
/// (empty: none); REPLICAOF NO ONE is accepted, replicating is not.
#[tokio::test]
async fn requirepass_and_replicaof() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "AUTH nosuch",
            "CONFIG SET requirepass s3cret",
            "AUTH wrong",
            "AUTH s3cret",
            "AUTH default s3cret",
            "REPLICAOF NO ONE",
            "SLAVEOF no one",
            "REPLICAOF NO",
        ],
    )
    .await;
    let (mut r2, mut k2) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(&mut r2, &mut k2, &["GET x", "AUTH s3cret", "GET x"]).await;
    common::same_replies(
        &mut r,
        &mut k,
        &[
            &[b"CONFIG", b"SET", b"requirepass"],
            &[b"CONFIG", b"SET", b"requirepass", b""],
        ],
    )
    .await;
    let (mut r3, mut k3) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(&mut r3, &mut k3, &["GET x"]).await;
    k.check(
        "REPLICAOF 127.0.0.1 1",
        "-ERR keyway does not replicate from a server: configure a backend (or a mirror) instead\r\n",
    )
    .await;
}

/// Scrapers and probes send HEAD and query strings: answered as GET is
/// (HEAD without the body); other methods get 405.
#[tokio::test]
async fn metrics_listener_takes_head_and_query_strings() {
    let kw = Keyway::with_toml(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\n[backends.local]\ntype = \"memory\"\n\n[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"local\"\n",
    )
    .await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let ask = |req: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let get = ask("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        get.starts_with("HTTP/1.1 200 OK\r\n") && get.contains("# EOF"),
        "{get}"
    );
    let head = ask("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(!head.contains("# EOF"), "{head}");
    let health = ask("HEAD /healthz?probe=1 HTTP/1.1\r\n\r\n").await;
    assert!(health.contains("Content-Length: 3\r\n"), "{health}");
    let post = ask("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let missing = ask("GET /nosuch HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
}

/// Every namespace and backend of the config has its series from the
/// start, at zero: a dashboard or an alert sees them before any command.
#[tokio::test]
async fn series_exist_from_the_start() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(
        // A backend name of this test's own: the registry is the process's.
        &redis_config(redis.port)
            .replace("[server]\n", "[server]\nmetrics_listen = \"127.0.0.1:0\"\n")
            .replace("main", "series_only"),
    )
    .await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let text = http_get(addr, "/metrics").await;
    for want in [
        "keyway_upstream_connections{backend=\"series_only\"} 0",
        "keyway_upstream_reconnects_total{backend=\"series_only\"} 0",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(
        text.lines().any(|l| l.contains("backend=\"series_only\"")
            && l.contains("_count")
            && l.ends_with(" 0")),
        "{text}"
    );
}

/// The status page at `/`: its data at /status.json, and the page itself
/// rendered by a real browser (Debian's headless Chromium, which
/// scripts/test.sh installs) from that data.
#[tokio::test]
async fn status_page_renders_in_a_browser() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(
        &redis_config(redis.port)
            .replace("[server]\n", "[server]\nmetrics_listen = \"127.0.0.1:0\"\n")
            .replace("name = \"app\"", "name = \"app\"\nmirror = \"local\"")
            // A backend name of this test's own: the metrics are the process's.
            .replace("main", "status_main"),
    )
    .await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let mut raw = kw.raw().await;
    raw.check("SET k v", "+OK\r\n").await;
    let json = http_get(addr, "/status.json").await;
    for want in [
        "\"name\":\"app\",\"prefix\":\"\",\"backend\":\"status_main\",\"kind\":\"redis\",\"mirror\":\"local\",\"migration\":{\"phase\":\"mirroring\",\"running\":\"\",",
        "\"name\":\"scratch\",\"prefix\":\"tmp:\"",
        "{\"name\":\"status_main\",\"kind\":\"redis\",\"health\":\"up (1/1 connections)\",\"upstream_connections\":1}",
        "\"samples\":[{\"at\":",
    ] {
        assert!(json.contains(want), "{want} in {json}");
    }
    let page = http_get(addr, "/").await;
    assert!(page.contains("Content-Type: text/html") && page.contains("<title>keyway</title>"));
    // The browser runs the page's script against the live JSON.
    let url = format!("http://{addr}/");
    let dom = tokio::task::spawn_blocking(move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=3000",
                "--dump-dom",
                &url,
            ])
            .output()
            .expect("chromium is installed by scripts/test.sh")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for want in [
        "<td>app</td><td>(catch-all)</td><td>status_main (redis)</td><td>local</td><td>mirroring</td>",
        "<td>scratch</td><td>tmp:</td><td>local (memory)</td>",
        "<td class=\"up\">up (1/1 connections)</td>",
        "Error replies/s",
    ] {
        assert!(dom.contains(want), "{want} in {dom}");
    }
}

/// Every metric the Grafana dashboard (deploy/grafana-dashboard.json)
/// queries is one keyway exports.
#[tokio::test]
async fn the_dashboard_queries_what_keyway_exports() {
    let dashboard = std::fs::read_to_string("deploy/grafana-dashboard.json").unwrap();
    let kw = Keyway::start().await;
    kw.raw().await.check("SET k v", "+OK\r\n").await;
    // One of each event, so that every family has a series to show.
    let m = keyway::wire::metrics::metrics();
    m.error(b"ERR x");
    m.acl_denied("u", "command");
    m.auth_failed("u");
    m.client_closed("timeout");
    m.internal_error("get");
    m.mirrored("ns", "ok", 1);
    m.reloads("success");
    m.reconnected("b");
    let text = m.encode();
    let mut queried: Vec<&str> = dashboard
        .match_indices("keyway_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "the dashboard queries {name}, which keyway does not export"
        );
    }
}

/// CLIENT KILL's filters are checked as Redis checks them (its
/// introspection unit): an unknown type or user is an error naming it, and
/// a type keyway has no client of kills none.
#[tokio::test]
async fn client_kill_filters_as_in_redis() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "CLIENT KILL",
            "CLIENT KILL ID 10 wrong_arg",
            "CLIENT KILL ID str",
            "CLIENT KILL ID 0",
            "CLIENT KILL TYPE wrong_type",
            "CLIENT KILL TYPE master",
            "CLIENT KILL TYPE replica SKIPME no",
            "CLIENT KILL TYPE pubsub",
            "CLIENT KILL USER wrong_user",
            "CLIENT KILL USER default TYPE bogus",
            "CLIENT KILL SKIPME yes_or_no",
            "CLIENT LIST TYPE bogus",
        ],
    )
    .await;
    // A client of the type asked for goes; the killer, skipped, stays.
    let mut other = kw.raw().await;
    other.check("PING", "+PONG\r\n").await;
    k.check("CLIENT KILL TYPE normal", ":1\r\n").await;
    k.check("PING", "+PONG\r\n").await;
}

/// The caller's own CLIENT LIST and CLIENT INFO line shows the command it
/// runs in `qbuf`, as Redis's query buffer holds it then (its
/// introspection unit matches `qbuf=26`); an idle client's shows 0.
#[tokio::test]
async fn the_callers_line_shows_its_request_in_qbuf() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let field = |line: &str, name: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let mut idle = kw.raw().await;
    idle.check("PING", "+PONG\r\n").await;
    for cmd in ["CLIENT INFO", "CLIENT LIST"] {
        let mut own = Vec::new();
        for mut c in [redis.raw().await, kw.raw().await] {
            c.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
                .await;
            let text = String::from_utf8_lossy(&c.reply().await).into_owned();
            let line = |cmd: &str| text.lines().find(|l| l.contains(cmd)).map(str::to_string);
            own.push(field(&line("cmd=client|").unwrap_or_default(), "qbuf"));
            if let Some(l) = line("cmd=ping") {
                assert_eq!(field(&l, "qbuf"), "0", "{text}");
            }
        }
        assert_eq!(own, ["26", "26"], "{cmd}");
    }
}

/// Commands keyway answers itself queue in MULTI and run only if EXEC
/// does, each reply at its place, as in Redis (whose slowlog and multi
/// units queue SLOWLOG and CONFIG); DISCARD, an aborted EXEC and a WATCH
/// that fails run none of them.
#[tokio::test]
async fn keyways_own_commands_run_with_exec() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let (mut r2, mut k2) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "MULTI",
            "SET k 1",
            "CONFIG SET slowlog-max-len 7",
            "CONFIG GET slowlog-max-len",
            "CLIENT SETNAME tx",
            "CLIENT GETNAME",
            "DBSIZE",
            "SLOWLOG RESET",
            "CONFIG SET no-such-parameter 1",
            "EXEC",
            "MULTI",
            "CLIENT SETNAME discarded",
            "DISCARD",
            "MULTI",
            "CLIENT SETNAME aborted",
            "NOSUCHCOMMAND",
            "EXEC",
            "CLIENT GETNAME",
            "WATCH w",
        ],
    )
    .await;
    common::same_replies_words(&mut r2, &mut k2, &["SET w changed"]).await;
    common::same_replies_words(
        &mut r,
        &mut k,
        &["MULTI", "CLIENT SETNAME watched", "EXEC", "CLIENT GETNAME"],
    )
    .await;
}
