//! The redis-shards backend against three redis-servers of the test's own,
//! and against twemproxy (Debian's nutcracker) placing keys on the same
//! servers.

mod common;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::{Keyway, RedisServer, free_port};
use redis::AsyncCommands;

fn servers() -> Vec<RedisServer> {
    (0..3).map(|_| RedisServer::start()).collect()
}

/// A nutcracker of the test's own, killed on drop.
struct Twemproxy {
    port: u16,
    child: std::process::Child,
    _dir: TempDir,
}

impl Drop for Twemproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts nutcracker with one redis pool; `servers` are its YAML lines
/// ("127.0.0.1:port:weight [name]").
fn twemproxy(hash: &str, distribution: &str, servers: &[String]) -> Twemproxy {
    let dir = std::env::temp_dir().join(format!("keyway-twem-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let mut yml = format!(
        "pool:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: {hash}\n  \
         distribution: {distribution}\n  hash_tag: \"{{}}\"\n  timeout: 2000\n  servers:\n"
    );
    for s in servers {
        yml.push_str(&format!("   - {s}\n"));
    }
    let conf = dir.join("nutcracker.yml");
    std::fs::write(&conf, yml).expect("write nutcracker.yml");
    let child = std::process::Command::new("nutcracker")
        .arg("-c")
        .arg(&conf)
        .arg("-o")
        .arg(dir.join("nutcracker.log"))
        .args(["-a", "127.0.0.1", "-s", &free_port().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nutcracker is installed (scripts/test.sh installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nutcracker did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Twemproxy {
        port,
        child,
        _dir: TempDir(dir),
    }
}

/// Keys of every kind that decides a placement: empty, plain, hash-tagged,
/// and with bytes from 0x80 (which twemproxy's hashes sign-extend).
fn test_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    for i in 0..200 {
        keys.push(format!("user:{i}").into_bytes());
    }
    for i in 0..40 {
        keys.push(format!("cart:{{u{}}}:{i}", i % 7).into_bytes());
        keys.push(format!("caf\u{e9}:{i}:\u{263a}").into_bytes());
        keys.push(vec![0xff, 0x80, b'0' + (i % 10) as u8, i as u8 | 0x80]);
    }
    keys
}

fn multibulk(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// SETs every key to its own bytes through twemproxy, pipelined, and
/// checks each was stored.
fn set_through(port: u16, keys: &[Vec<u8>]) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut out = Vec::new();
    for k in keys {
        out.extend(multibulk(&[b"SET", k, k]));
    }
    s.write_all(&out).expect("write");
    let mut r = BufReader::new(s);
    for k in keys {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        assert_eq!(line, "+OK\r\n", "twemproxy SET {k:?}");
    }
}

/// keyway with one redis-shards backend, `s`, for every key; `settings`
/// are more lines of its table.
fn shards_toml(servers: &str, settings: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.s]
type = "redis-shards"
servers = [{servers}]
hash_tag = "{{}}"
{settings}
[[namespaces]]
name = "all"
prefix = ""
backend = "s"
"#
    )
}

async fn flush(servers: &[RedisServer]) {
    for s in servers {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut s.direct().await)
            .await
            .unwrap();
    }
}

/// Keys written through twemproxy are read back through keyway, which
/// reads each from the one server it computes: every hash, both
/// distributions, weights and names.
#[tokio::test]
async fn keys_are_where_twemproxy_puts_them() {
    let srv = servers();
    let ports: Vec<u16> = srv.iter().map(|s| s.port).collect();
    let keys = test_keys();
    let plain_twem: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}:1")).collect();
    let plain_kw = ports
        .iter()
        .map(|p| format!("\"redis://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let weighted_twem = vec![
        format!("127.0.0.1:{}:1 alpha", ports[0]),
        format!("127.0.0.1:{}:3 beta", ports[1]),
        format!("127.0.0.1:{}:2", ports[2]),
    ];
    let weighted_kw = format!(
        "{{ url = \"redis://127.0.0.1:{}\", name = \"alpha\" }}, \
         {{ url = \"redis://127.0.0.1:{}\", weight = 3, name = \"beta\" }}, \
         {{ url = \"redis://127.0.0.1:{}\", weight = 2 }}",
        ports[0], ports[1], ports[2]
    );
    let mut cases: Vec<(&str, &str, &[String], &str)> = [
        "fnv1a_64",
        "fnv1_64",
        "fnv1a_32",
        "fnv1_32",
        "md5",
        "crc16",
        "crc32",
        "crc32a",
        "murmur",
        "one_at_a_time",
    ]
    .iter()
    .map(|h| (*h, "ketama", plain_twem.as_slice(), plain_kw.as_str()))
    .collect();
    cases.push(("fnv1a_64", "modula", &plain_twem, &plain_kw));
    cases.push(("fnv1a_64", "ketama", &weighted_twem, &weighted_kw));
    cases.push(("murmur", "modula", &weighted_twem, &weighted_kw));
    for (hash, dist, twem_servers, kw_servers) in cases {
        flush(&srv).await;
        let tw = twemproxy(hash, dist, twem_servers);
        set_through(tw.port, &keys);
        let settings = format!("hash = \"{hash}\"\ndistribution = \"{dist}\"");
        let kw = Keyway::with_toml(&shards_toml(kw_servers, &settings)).await;
        let mut c = kw.client().await;
        let got: Vec<Option<Vec<u8>>> = c.mget(&keys).await.unwrap();
        let misplaced: Vec<String> = keys
            .iter()
            .zip(&got)
            .filter(|(k, v)| v.as_deref() != Some(k.as_slice()))
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert!(
            misplaced.is_empty(),
            "{hash}/{dist}: {} of {} keys not where twemproxy put them: {misplaced:?}",
            misplaced.len(),
            keys.len()
        );
        // And every server got some; twemproxy's crc32 is 15 bits, below
        // every point of the ring but a few, so it puts all on one.
        for s in srv.iter().filter(|_| hash != "crc32") {
            let n: i64 = redis::cmd("DBSIZE")
                .query_async(&mut s.direct().await)
                .await
                .unwrap();
            assert!(n > 0, "{hash}/{dist}: a server got no keys");
        }
    }
}

/// Which server (index) holds each key, read directly.
async fn holders(srv: &[RedisServer], keys: &[String]) -> HashMap<String, usize> {
    let mut at = HashMap::new();
    for (i, s) in srv.iter().enumerate() {
        let mut d = s.direct().await;
        for k in keys {
            let e: bool = d.exists(k).await.unwrap();
            if e {
                assert!(at.insert(k.clone(), i).is_none(), "{k} on two servers");
            }
        }
    }
    at
}

fn config(srv: &[RedisServer]) -> String {
    let list = srv
        .iter()
        .map(|s| format!("\"redis://127.0.0.1:{}\"", s.port))
        .collect::<Vec<_>>()
        .join(", ");
    // twemproxy's default, fnv1a_64, puts keys as short as these on one server.
    shards_toml(
        &list,
        "hash = \"murmur\"\ncommand_timeout_ms = 1000\nconnect_timeout_ms = 500",
    )
}

const CROSS: &str = "-CROSSSLOT Keys in request don't hash to the same server of backend 's' \
                     (keys with the same {tag} stay together)\r\n";

#[tokio::test]
async fn commands_are_split_fanned_out_or_refused() {
    let srv = servers();
    let kw = Keyway::with_toml(&config(&srv)).await;
    let mut c = kw.client().await;
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    let _: () = c.mset(&pairs).await.unwrap();
    let at = holders(&srv, &keys).await;
    assert_eq!(at.len(), 60, "each key on exactly one server");
    assert_eq!(
        at.values().collect::<HashSet<_>>().len(),
        3,
        "spread over all 3"
    );
    let got: Vec<String> = c.mget(&keys).await.unwrap();
    assert_eq!(got, pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>());

    // Whole-keyspace commands cover every server, each key once.
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 60);
    let mut all: Vec<String> = c.keys("*").await.unwrap();
    all.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(all, want);
    let mut seen = common::scan_all(&mut c, 7).await;
    seen.sort();
    assert_eq!(seen, want);

    // Two keys on different servers, and two sharing a hash tag.
    let a = &keys[0];
    let b = keys.iter().find(|k| at[*k] != at[a]).unwrap();
    let mut raw = kw.raw().await;
    raw.check(&format!("SUNION {a} {b}"), CROSS).await;
    raw.check(&format!("EVAL return#KEYS 2 {a} {b}"), CROSS)
        .await;
    raw.check(&format!("BLPOP {a} {b} 1"), CROSS).await;
    raw.check("SADD {t}x 1", ":1\r\n").await;
    raw.check("SADD {t}y 2", ":1\r\n").await;
    raw.send(&common::resp(&["SUNION", "{t}x", "{t}y"])).await;
    assert_eq!(
        raw.reply().await.len(),
        b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n".len()
    );
    // DEL over servers counts what each deleted.
    raw.check(&format!("DEL {a} {b} nosuch"), ":2\r\n").await;

    // A transaction runs on one server, or is refused whole.
    raw.check("MULTI", "+OK\r\n").await;
    raw.check(&format!("SET {a} 1"), "+QUEUED\r\n").await;
    raw.check(&format!("SET {b} 1"), "+QUEUED\r\n").await;
    raw.check("EXEC", CROSS).await;
    raw.check(&format!("EXISTS {a} {b}"), ":0\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("INCR {t}n", "+QUEUED\r\n").await;
    raw.check("INCR {t}n", "+QUEUED\r\n").await;
    raw.check("EXEC", "*2\r\n:1\r\n:2\r\n").await;

    // WATCH pins the first key's server; a key elsewhere is refused there.
    raw.check(&format!("WATCH {a}"), "+OK\r\n").await;
    raw.check(&format!("GET {b}"), "$-1\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check(&format!("SET {b} 1"), "+QUEUED\r\n").await;
    raw.check("EXEC", CROSS).await;
    raw.check(&format!("WATCH {a}"), "+OK\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check(&format!("SET {a} 2"), "+QUEUED\r\n").await;
    raw.check("EXEC", "*1\r\n+OK\r\n").await;

    // A blocking pop on one key is woken by a push from another client.
    let mut waiter = kw.raw().await;
    waiter.send(&common::resp(&["BLPOP", "q", "5"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.check("RPUSH q hello", ":1\r\n").await;
    waiter.expect("*2\r\n$1\r\nq\r\n$5\r\nhello\r\n").await;
}

#[tokio::test]
async fn a_server_down_fails_only_its_keys() {
    let mut srv = servers();
    let kw = Keyway::with_toml(&config(&srv)).await;
    let mut c = kw.client().await;
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let _: () = c.set(k, "v").await.unwrap();
    }
    let at = holders(&srv, &keys).await;
    srv[1].kill();
    let port = srv[1].port;
    let mut raw = kw.raw().await;
    for k in &keys {
        let cmd = format!("GET {k}");
        if at[k] == 1 {
            let line = raw.line(&cmd).await;
            assert!(
                line.starts_with("-ERR backend 's' unavailable: ")
                    && line.ends_with(&format!("(node 127.0.0.1:{port})\r\n")),
                "{line}"
            );
        } else {
            raw.check(&cmd, "$1\r\nv\r\n").await;
        }
    }
    // keyway reconnects by itself once the server is back (empty: it keeps
    // no data); keys never move to another server meanwhile.
    srv[1].restart();
    let k = keys.iter().find(|k| at[*k] == 1).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if raw.line(&format!("SET {k} back")).await == "+OK\r\n" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "no reconnect");
    let v: Option<String> = srv[1].direct().await.get(k).await.unwrap();
    assert_eq!(v.as_deref(), Some("back"));
}

/// twemproxy's auto_eject_hosts: after `server_failure_limit` failures in
/// a row a server's keys go to the others, and come back after
/// `server_retry_timeout_ms`.
#[tokio::test]
async fn an_ejected_servers_keys_move_and_come_back() {
    let mut srv = servers();
    let toml = config(&srv).replace(
        "command_timeout_ms = 1000",
        "command_timeout_ms = 1000\nauto_eject_hosts = true\nserver_failure_limit = 2\n\
         server_retry_timeout_ms = 1500",
    );
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let _: () = c.set(k, "v").await.unwrap();
    }
    let at = holders(&srv, &keys).await;
    let k = keys.iter().find(|k| at[*k] == 1).unwrap();
    srv[1].kill();
    let mut raw = kw.raw().await;
    // Two failures in a row eject it.
    for _ in 0..2 {
        let line = raw.line(&format!("GET {k}")).await;
        assert!(line.starts_with("-ERR backend 's' unavailable: "), "{line}");
    }
    // Its keys now live on the others: a cache miss, then a write that lands.
    raw.check(&format!("GET {k}"), "$-1\r\n").await;
    raw.check(&format!("SET {k} moved"), "+OK\r\n").await;
    let mut moved_to = None;
    for i in [0, 2] {
        let v: Option<String> = srv[i].direct().await.get(k).await.unwrap();
        if v.as_deref() == Some("moved") {
            moved_to = Some(i);
        }
    }
    assert!(moved_to.is_some(), "{k} not on a live server");
    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert!(
        info.contains("health=up (2/3 servers reachable; 1 ejected)"),
        "{info}"
    );
    // Whole-keyspace commands skip it.
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert!(n > 0);

    // Back after the retry timeout, with its keys.
    srv[1].restart();
    let mut back = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if raw.line(&format!("SET {k} home")).await != "+OK\r\n" {
            continue;
        }
        let v: Option<String> = srv[1].direct().await.get(k).await.unwrap();
        if v.as_deref() == Some("home") {
            back = true;
            break;
        }
    }
    assert!(back, "{k} never went back to its server");
}
