//! The redis backend against real redis-server processes, each started by
//! the test on a free port: routing and rewriting, fan-out across backends,
//! transactions, blocking commands, pub/sub, RESP3, TLS with AUTH, and a
//! server killed under load.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Keyway, Raw, RedisServer, resp};
use redis::AsyncCommands;

/// users on r1 as they are; sessions on r2 as `app1:<id>`; the rest in memory.
fn config(r1: &RedisServer, r2: &RedisServer) -> String {
    format!(
        r#"
[backends.r1]
type = "redis"
url = "redis://127.0.0.1:{}"
connections = 2
command_timeout_ms = 1000

[backends.r2]
type = "redis"
url = "redis://127.0.0.1:{}"

[backends.mem]
type = "memory"

[[namespaces]]
name = "users"
prefix = "user:"
backend = "r1"

[[namespaces]]
name = "sessions"
prefix = "sess:"
backend = "r2"
strip_prefix = true
key_prefix = "app1:"

[[namespaces]]
name = "rest"
prefix = ""
backend = "mem"
"#,
        r1.port, r2.port
    )
}

struct Setup {
    r1: RedisServer,
    r2: RedisServer,
    kw: Keyway,
}

async fn setup() -> Setup {
    let r1 = RedisServer::start();
    let r2 = RedisServer::start();
    let kw = Keyway::with_toml(&config(&r1, &r2)).await;
    Setup { r1, r2, kw }
}

#[tokio::test]
async fn keys_land_on_their_servers_rewritten() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let _: () = c.set("user:1", "alice").await.unwrap();
    let _: () = c.set("sess:42", "token").await.unwrap();
    let _: () = c.set("misc", "local").await.unwrap();

    let mut r1 = s.r1.direct().await;
    let mut r2 = s.r2.direct().await;
    let on_r1: Vec<String> = r1.keys("*").await.unwrap();
    let on_r2: Vec<String> = r2.keys("*").await.unwrap();
    assert_eq!(on_r1, vec!["user:1"]);
    assert_eq!(on_r2, vec!["app1:42"]);
    let v: String = r2.get("app1:42").await.unwrap();
    assert_eq!(v, "token");

    // Keys come back under the client's names.
    let mut keys: Vec<String> = c.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["misc", "sess:42", "user:1"]);
    let v: String = c.get("sess:42").await.unwrap();
    assert_eq!(v, "token");
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 3);

    // A key a namespace rewrites comes back rewritten in BLPOP-style replies.
    let _: () = c.rpush("sess:jobs", "j1").await.unwrap();
    let popped: (String, String) = c.blpop("sess:jobs", 1.0).await.unwrap();
    assert_eq!(popped, ("sess:jobs".into(), "j1".into()));

    // FLUSHDB deletes only the namespace's own part of a shared server.
    let _: () = r2.set("foreign", "kept").await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await.unwrap();
    let left: Vec<String> = r2.keys("*").await.unwrap();
    assert_eq!(left, vec!["foreign"]);
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn multi_key_commands_span_three_backends() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let _: () = c
        .mset(&[
            ("user:a", "1"),
            ("sess:b", "2"),
            ("c", "3"),
            ("user:d", "4"),
        ])
        .await
        .unwrap();
    let got: Vec<Option<String>> = c
        .mget(&["c", "user:a", "nope", "sess:b", "user:d", "sess:none"])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some("3".into()),
            Some("1".into()),
            None,
            Some("2".into()),
            Some("4".into()),
            None
        ]
    );
    let n: i64 = redis::cmd("EXISTS")
        .arg(&["user:a", "sess:b", "c", "x"])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = c
        .del(&["user:a", "sess:b", "c", "x", "user:d"])
        .await
        .unwrap();
    assert_eq!(n, 4);

    // What cannot keep its meaning across backends is refused, by name.
    let mut raw = s.kw.raw().await;
    raw.check(
        "MSETNX user:x 1 sess:y 2",
        "-ERR 'MSETNX' spans namespaces 'sessions', 'users' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    raw.check(
        "RENAME user:x sess:y",
        "-ERR 'RENAME' spans namespaces 'sessions', 'users' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    raw.check(
        "SINTER user:s sess:s",
        "-ERR 'SINTER' spans namespaces 'sessions', 'users' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    // DUMP on either backend.
    raw.check("DUMP user:none", "$-1\r\n").await;
    raw.check("DUMP nosuch", "$-1\r\n").await;
    raw.check(
        "FOO bar",
        "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n",
    )
    .await;
}

#[tokio::test]
async fn scan_visits_every_key_once() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let mut expected = HashSet::new();
    for i in 0..150 {
        for k in [format!("user:{i}"), format!("sess:{i}"), format!("k{i}")] {
            let _: () = c.set(&k, i).await.unwrap();
            expected.insert(k);
        }
    }
    // Keys on r2 outside the sessions namespace are not keyway's.
    let mut r2 = s.r2.direct().await;
    for i in 0..50 {
        let _: () = r2.set(format!("other:{i}"), i).await.unwrap();
    }
    let seen = common::scan_all(&mut c, 25).await;
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "a key was returned twice");
    assert_eq!(unique, expected);

    let (_, matched): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(1u64 << 48)
        .arg("MATCH")
        .arg("sess:1?")
        .arg("COUNT")
        .arg(1000)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut matched = matched;
    matched.sort();
    let want: Vec<String> = (10..20).map(|i| format!("sess:{i}")).collect();
    assert_eq!(matched, want);
}

#[tokio::test]
async fn transactions_run_on_one_backend() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let (a, b): (String, i64) = redis::pipe()
        .atomic()
        .set("user:t", 5)
        .incr("user:t", 2)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((a.as_str(), b), ("OK", 7));

    let mut raw = s.kw.raw().await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET sess:t 1", "+QUEUED\r\n").await;
    raw.check("INCR sess:t", "+QUEUED\r\n").await;
    raw.check("EXEC", "*2\r\n+OK\r\n:2\r\n").await;
    // A blocking command inside MULTI runs in the transaction, without blocking.
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("RPUSH sess:l a", "+QUEUED\r\n").await;
    raw.check("BLPOP sess:l sess:m 0", "+QUEUED\r\n").await;
    raw.check("BLPOP sess:l 0", "+QUEUED\r\n").await;
    raw.check(
        "EXEC",
        "*3\r\n:1\r\n*2\r\n$6\r\nsess:l\r\n$1\r\na\r\n*-1\r\n",
    )
    .await;
    // Keys on two backends: refused at queue time, then EXECABORT.
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET sess:t 1", "+QUEUED\r\n").await;
    raw.check(
        "SET user:t 1",
        "-ERR 'SET' spans namespaces 'sessions', 'users' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    raw.check(
        "EXEC",
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    raw.check("EXEC", "-ERR EXEC without MULTI\r\n").await;
    raw.check("DISCARD", "-ERR DISCARD without MULTI\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("MULTI", "-ERR MULTI calls can not be nested\r\n")
        .await;
    raw.check("GET user:t", "+QUEUED\r\n").await;
    raw.check("DISCARD", "+OK\r\n").await;

    // WATCH: a change by another client aborts the transaction.
    raw.check("WATCH user:w", "+OK\r\n").await;
    let _: () = c.set("user:w", "changed").await.unwrap();
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET user:w mine", "+QUEUED\r\n").await;
    raw.check("EXEC", "*-1\r\n").await;
    raw.check("GET user:w", "$7\r\nchanged\r\n").await;
    // Untouched, it commits.
    raw.check("WATCH sess:w", "+OK\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET sess:w mine", "+QUEUED\r\n").await;
    raw.check("EXEC", "*1\r\n+OK\r\n").await;
    raw.check("GET sess:w", "$4\r\nmine\r\n").await;
}

#[tokio::test]
async fn blpop_is_woken_by_another_client_and_blocks_no_one() {
    let s = setup().await;
    let mut blocked = s.kw.raw().await;
    blocked
        .send(&resp(&["BLPOP", "sess:other", "sess:queue", "5"]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Other clients of the same backends are served meanwhile.
    let mut c = s.kw.client().await;
    for _ in 0..20 {
        let _: () = c.set("sess:x", 1).await.unwrap();
        let _: () = c.set("user:x", 1).await.unwrap();
    }
    let _: () = c.lpush("sess:queue", "job-1").await.unwrap();
    blocked
        .expect("*2\r\n$10\r\nsess:queue\r\n$5\r\njob-1\r\n")
        .await;
    // A timeout gives the null array.
    blocked.check("BRPOP user:none 0.1", "*-1\r\n").await;
}

#[tokio::test]
async fn pubsub_spans_backends() {
    let s = setup().await;
    let mut sub = s.kw.raw().await;
    sub.send(&resp(&["SUBSCRIBE", "user:news", "sess:news", "chat"]))
        .await;
    sub.expect(
        "*3\r\n$9\r\nsubscribe\r\n$9\r\nuser:news\r\n:1\r\n\
         *3\r\n$9\r\nsubscribe\r\n$9\r\nsess:news\r\n:2\r\n\
         *3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:3\r\n",
    )
    .await;
    sub.check(
        "PSUBSCRIBE sess:*",
        "*3\r\n$10\r\npsubscribe\r\n$6\r\nsess:*\r\n:4\r\n",
    )
    .await;
    sub.check(
        "GET x",
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    sub.check("PING", "*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;

    let mut c = s.kw.client().await;
    let n: i64 = c.publish("user:news", "u1").await.unwrap();
    assert_eq!(n, 1);
    sub.expect("*3\r\n$7\r\nmessage\r\n$9\r\nuser:news\r\n$2\r\nu1\r\n")
        .await;
    let n: i64 = c.publish("sess:news", "s1").await.unwrap();
    assert_eq!(n, 2);
    let got = sub.read_for(Duration::from_millis(300)).await;
    assert!(
        got.contains("*3\r\n$7\r\nmessage\r\n$9\r\nsess:news\r\n$2\r\ns1\r\n"),
        "{got:?}"
    );
    assert!(
        got.contains("*4\r\n$8\r\npmessage\r\n$6\r\nsess:*\r\n$9\r\nsess:news\r\n$2\r\ns1\r\n"),
        "{got:?}"
    );
    let n: i64 = c.publish("chat", "m1").await.unwrap();
    assert_eq!(n, 1);
    sub.expect("*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$2\r\nm1\r\n")
        .await;

    // The channel reached r2 under its rewritten name.
    let mut r2 = s.r2.direct().await;
    let chans: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut r2)
        .await
        .unwrap();
    assert_eq!(chans, vec!["app1:news"]);

    sub.check(
        "UNSUBSCRIBE user:news",
        "*3\r\n$11\r\nunsubscribe\r\n$9\r\nuser:news\r\n:3\r\n",
    )
    .await;
    let n: i64 = c.publish("user:news", "u2").await.unwrap();
    assert_eq!(n, 0);
    sub.check(
        "PUNSUBSCRIBE",
        "*3\r\n$12\r\npunsubscribe\r\n$6\r\nsess:*\r\n:2\r\n",
    )
    .await;
    sub.send(&resp(&["UNSUBSCRIBE"])).await;
    sub.expect(
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nchat\r\n:1\r\n\
         *3\r\n$11\r\nunsubscribe\r\n$9\r\nsess:news\r\n:0\r\n",
    )
    .await;
    // Out of pub/sub mode, commands work again.
    sub.check("GET user:none", "$-1\r\n").await;
}

#[tokio::test]
async fn resp3_clients_get_resp3_replies() {
    let s = setup().await;
    let mut raw = s.kw.raw().await;
    raw.send(&resp(&["HELLO", "3"])).await;
    let hello = raw.read_for(Duration::from_millis(200)).await;
    assert!(hello.starts_with('%'), "{hello:?}");
    for key in ["user:h", "sess:h"] {
        raw.check(&format!("HSET {key} f v"), ":1\r\n").await;
        raw.check(&format!("HGETALL {key}"), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
            .await;
        raw.check(&format!("GET {key}x"), "_\r\n").await;
    }
    raw.check("ZADD user:z 1.5 m", ":1\r\n").await;
    raw.check("ZSCORE user:z m", ",1.5\r\n").await;
    raw.check("MGET user:h sess:none", "*2\r\n_\r\n_\r\n").await;
}

#[tokio::test]
async fn a_dead_server_fails_fast_and_recovers() {
    let mut s = setup().await;
    let mut users = s.kw.raw().await;
    let mut sessions = s.kw.raw().await;
    assert_eq!(users.line("SET user:1 before").await, "+OK\r\n");

    // Load on both namespaces while r1 dies.
    let addr = s.kw.addr;
    let load = tokio::spawn(async move {
        let mut c = common::Raw(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut ok, mut failed) = (0, 0);
        for i in 0..400 {
            let r = c.line(&format!("SET user:load{i} {i}")).await;
            if r == "+OK\r\n" {
                ok += 1;
            } else {
                assert!(r.starts_with("-ERR backend 'r1' unavailable: "), "{r:?}");
                failed += 1;
            }
            assert_eq!(c.line(&format!("SET sess:load{i} {i}")).await, "+OK\r\n");
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.r1.kill();

    let r = users.line("GET user:1").await;
    assert!(r.starts_with("-ERR backend 'r1' unavailable: "), "{r:?}");
    // Refused connections are reported as such, at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        users.line("GET user:1").await,
        "-ERR backend 'r1' unavailable: connection refused\r\n"
    );
    assert_eq!(sessions.line("SET sess:during outage").await, "+OK\r\n");
    let (ok, failed) = load.await.unwrap();
    assert_eq!(ok + failed, 400);
    assert!(failed > 0, "the load never saw the outage");

    // Back on the same port: keyway reconnects by itself.
    s.r1.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if users.line("SET user:1 after").await == "+OK\r\n" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "namespace 'users' did not recover");
    let mut r1 = s.r1.direct().await;
    let v: String = r1.get("user:1").await.unwrap();
    assert_eq!(v, "after");
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let s = setup().await;
    let mut users = s.kw.raw().await;
    let mut sessions = s.kw.raw().await;
    assert_eq!(users.line("SET user:1 x").await, "+OK\r\n");
    s.r1.signal("STOP");
    // command_timeout_ms = 1000 for r1.
    assert_eq!(
        users.line("GET user:1").await,
        "-ERR backend 'r1' unavailable: no reply within 1000 ms\r\n"
    );
    assert_eq!(sessions.line("SET sess:1 y").await, "+OK\r\n");
    s.r1.signal("CONT");
    let mut recovered = false;
    for _ in 0..100 {
        if users.line("SET user:1 z").await == "+OK\r\n" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "namespace 'users' did not recover");
}

/// Connections `server` has accepted so far.
async fn accepted(direct: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(direct)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_connections_received in INFO")
}

/// After a failover the old master is a replica, and a connection to it
/// refuses writes with READONLY while its address (a DNS name, Sentinel)
/// already leads to the new master. keyway passes the error on, answers
/// what was in flight, and opens a new connection; at most once a second,
/// so a url that names a replica does not reconnect for every write.
#[tokio::test]
async fn a_master_turned_replica_is_left_for_a_new_connection() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let kw = Keyway::with_toml(&format!(
        r#"
[backends.r]
type = "redis"
url = "redis://127.0.0.1:{}"
[[namespaces]]
name = "all"
prefix = ""
backend = "r"
"#,
        old.port
    ))
    .await;
    let mut c = kw.raw().await;
    assert_eq!(c.line("SET k v").await, "+OK\r\n");
    let mut direct = old.direct().await;
    let before = accepted(&mut direct).await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .query_async(&mut direct)
        .await
        .unwrap();

    // One pipeline: every reply is the server's, none is keyway's error.
    const READONLY: &str = "-READONLY You can't write against a read only replica.\r\n";
    c.send(
        &[
            resp(&["SET", "a", "1"]),
            resp(&["EXISTS", "nothing"]),
            resp(&["SET", "b", "2"]),
        ]
        .concat(),
    )
    .await;
    c.expect(&format!("{READONLY}:0\r\n{READONLY}")).await;
    for i in 0..30 {
        assert_eq!(c.line(&format!("SET k{i} v")).await, READONLY);
    }
    let after = accepted(&mut direct).await;
    assert!(
        (before + 1..=before + 2).contains(&after),
        "reconnected {} times for 31 refused writes",
        after - before
    );

    // A blocking command's own connection is not kept for the next one.
    let before = accepted(&mut direct).await;
    for _ in 0..2 {
        assert_eq!(c.line("BLPOP list 1").await, READONLY);
    }
    assert_eq!(accepted(&mut direct).await, before + 2);

    // Once it is a master again, writes go through.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(c.line("SET k v2").await, "+OK\r\n");
    c.check("GET k", "$2\r\nv2\r\n").await;
}

/// A stand-in server on a free port that answers each command it reads
/// with `+OK`, one every `pace`, in order. With `slow_reads` it takes at
/// most 16 KB every 50 ms through a small receive buffer, so that a large
/// write to it blocks. Its task ends with the runtime.
async fn paced_server(pace: Duration, slow_reads: bool) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if slow_reads {
        socket.set_recv_buffer_size(16 * 1024).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (mut rd, mut wr) = sock.into_split();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    tokio::time::sleep(pace).await;
                    if wr.write_all(b"+OK\r\n").await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let mut b = vec![0u8; 16 * 1024];
                while let Ok(n) = rd.read(&mut b).await {
                    if n == 0 {
                        return;
                    }
                    if slow_reads {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // The commands here are multibulks of plain words:
                    // each starts a line with '*'.
                    let lines = b[..n].split(|&c| c == b'\n');
                    for _ in lines.filter(|l| l.first() == Some(&b'*')) {
                        let _ = tx.send(());
                    }
                }
            });
        }
    });
    port
}

fn paced_config(port: u16, extra: &str) -> String {
    format!(
        "[backends.slow]\ntype = \"redis\"\nurl = \"redis://{extra}127.0.0.1:{port}\"\n\
         connections = 1\ncommand_timeout_ms = 500\nconnect_timeout_ms = 5000\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"slow\"\n"
    )
}

#[tokio::test]
async fn a_slow_server_times_out_each_late_command_and_keeps_the_connection() {
    // Replies come every 300 ms: the server is alive, but the third and
    // fourth of a pipeline come after the 500 ms command timeout.
    let port = paced_server(Duration::from_millis(300), false).await;
    let kw = Keyway::with_toml(&paced_config(port, "")).await;
    let mut c = kw.raw().await;
    let mut pipeline = Vec::new();
    for k in ["a", "b", "c", "d"] {
        pipeline.extend(resp(&["SET", k, "1"]));
    }
    c.send(&pipeline).await;
    let late = "-ERR backend 'slow' unavailable: no reply within 500 ms\r\n";
    c.expect(&format!("+OK\r\n{late}{late}{late}")).await;
    // The late replies are read and dropped; the connection stays in step.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.line("SET e 1").await, "+OK\r\n");
}

#[tokio::test]
async fn a_command_queued_behind_a_slow_write_still_times_out() {
    // The server answers steadily (one reply every 100 ms) but reads
    // slowly, so an 8 MB SET fills the socket buffers and its write
    // blocks. A GET queued behind that write gets its timeout in time
    // instead of waiting for the write to end (about 25 s at this rate).
    let port = paced_server(Duration::from_millis(100), true).await;
    let kw = Keyway::with_toml(&paced_config(port, "")).await;
    let mut steady = kw.raw().await;
    let mut big = kw.raw().await;
    let mut waiting = kw.raw().await;
    let mut pipeline = Vec::new();
    for i in 0..100 {
        pipeline.extend(resp(&["SET", &format!("s{i}"), "1"]));
    }
    steady.send(&pipeline).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    big.send(&resp(&["SET", "big", &"x".repeat(8 << 20)])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    assert_eq!(
        waiting.line("GET g").await,
        "-ERR backend 'slow' unavailable: no reply within 500 ms\r\n"
    );
    assert!(started.elapsed() < Duration::from_millis(3000));
}

#[tokio::test]
async fn a_server_that_never_finishes_connecting_times_out_commands() {
    // The server accepts but never answers AUTH: commands wait no longer
    // than the command timeout, though connecting may take 5 s.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let kw = Keyway::with_toml(&paced_config(port, ":secret@")).await;
    let mut c = kw.raw().await;
    let started = std::time::Instant::now();
    assert_eq!(
        c.line("GET a").await,
        "-ERR backend 'slow' unavailable: no reply within 500 ms\r\n"
    );
    // Well before the connect timeout, however slow the machine.
    assert!(started.elapsed() < Duration::from_millis(4000));
    drop(silent);
}

#[tokio::test]
async fn tls_and_auth_upstream() {
    let dir = std::env::temp_dir().join(format!("keyway-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    common::test_certs(&dir);
    let p = |f: &str| dir.join(f).display().to_string();
    let mut args = common::tls_args(&dir);
    args.extend(
        [
            "--port",
            "0",
            "--tls-port",
            "{port}",
            "--user",
            "default",
            "off",
            "--user",
            "app",
            "on",
            ">s3cret",
            "~*",
            "&*",
            "+@all",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = RedisServer::with_args(&args);
    let toml = format!(
        r#"
[backends.managed]
type = "redis"
url = "rediss://app:s3cret@localhost:{port}"
tls_ca_file = "{ca}"

[backends.wrongpass]
type = "redis"
url = "rediss://app:nope@localhost:{port}"
tls_ca_file = "{ca}"

[backends.untrusted]
type = "redis"
url = "rediss://app:s3cret@localhost:{port}"

[[namespaces]]
name = "cache"
prefix = "cache:"
backend = "managed"

[[namespaces]]
name = "bad"
prefix = "bad:"
backend = "wrongpass"

[[namespaces]]
name = "nocert"
prefix = "nocert:"
backend = "untrusted"
"#,
        port = server.port,
        ca = p("ca.crt"),
    );
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let _: () = c.set("cache:k", "over tls").await.unwrap();
    let v: String = c.get("cache:k").await.unwrap();
    assert_eq!(v, "over tls");
    let mut raw = kw.raw().await;
    raw.send(&resp(&["HELLO", "3"])).await;
    raw.read_for(Duration::from_millis(200)).await;
    raw.check("HSET cache:h f v", ":1\r\n").await;
    raw.check("HGETALL cache:h", "%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
        .await;
    let mut raw = kw.raw().await;
    assert_eq!(
        raw.line("GET bad:k").await,
        "-ERR backend 'wrongpass' unavailable: WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let r = raw.line("GET nocert:k").await;
    // Refused by the system's roots (or there are none on this machine).
    assert!(
        r.starts_with("-ERR backend 'untrusted' unavailable: ") && r.contains("certificate"),
        "{r:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// SCRIPT LOAD reaches every redis backend, so EVALSHA works wherever the
/// keys live; EXISTS is 1 only where every backend has the script.
#[tokio::test]
async fn scripts_load_on_every_redis_backend() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let body = "return redis.call('SET', KEYS[1], ARGV[1])";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query_async(&mut c)
        .await
        .unwrap();
    // The digest is the script's SHA-1, as a server computes it.
    let mut r1 = s.r1.direct().await;
    let direct: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query_async(&mut r1)
        .await
        .unwrap();
    assert_eq!(sha, direct);
    assert_eq!(sha.len(), 40);
    for key in ["user:s", "sess:s"] {
        let ok: String = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(key)
            .arg("v")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ok, "OK");
        let v: String = c.get(key).await.unwrap();
        assert_eq!(v, "v");
    }
    let mut raw = s.kw.raw().await;
    raw.check(
        &format!("SCRIPT EXISTS {sha} 0000000000000000000000000000000000000000"),
        "*2\r\n:1\r\n:0\r\n",
    )
    .await;
    // Flushed on one server only: no longer loaded everywhere.
    let mut r2 = s.r2.direct().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut r2)
        .await
        .unwrap();
    raw.check(&format!("SCRIPT EXISTS {sha}"), "*1\r\n:0\r\n")
        .await;
    raw.check("SCRIPT FLUSH", "+OK\r\n").await;
    raw.check(
        "SCRIPT NOPE",
        "-ERR unknown subcommand 'NOPE'. Try SCRIPT HELP.\r\n",
    )
    .await;
    raw.check(
        "SCRIPT KILL",
        "-NOTBUSY No scripts in execution right now.\r\n",
    )
    .await;
    raw.check(
        "SCRIPT LOAD +",
        "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'\r\n",
    )
    .await;
}

/// A server restarted while keyway's connections to it sat idle: the
/// first commands after it is back succeed, on the shared pipe and on the
/// pooled connections of blocking commands (issue 19).
#[tokio::test]
async fn idle_connections_closed_by_a_restart_are_replaced_unseen() {
    let mut s = setup().await;
    let mut users = s.kw.raw().await;
    assert_eq!(users.line("SET user:1 a").await, "+OK\r\n");
    // Two pooled connections for blocking commands.
    for _ in 0..2 {
        users
            .send(&common::resp(&["BLPOP", "user:l", "0.01"]))
            .await;
        assert_eq!(users.reply().await, b"*-1\r\n");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.r1.kill();
    s.r1.restart();
    let mut direct = s.r1.direct().await;
    let _: () = redis::cmd("PING").query_async(&mut direct).await.unwrap();
    // Long enough for keyway to see its idle connections closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(users.line("SET user:1 b").await, "+OK\r\n");
    for _ in 0..2 {
        users
            .send(&common::resp(&["BLPOP", "user:l", "0.01"]))
            .await;
        assert_eq!(
            String::from_utf8_lossy(&users.reply().await),
            "*-1\r\n",
            "a pooled connection closed by the restart was used"
        );
    }
    users
        .send(&common::resp(&["XADD", "user:s", "1-1", "f", "v"]))
        .await;
    assert_eq!(users.reply().await, b"$3\r\n1-1\r\n");
}

/// WATCH, then a transaction of PING only: EXEC runs it (issue 19).
#[tokio::test]
async fn a_watched_transaction_of_local_commands_runs() {
    let s = setup().await;
    let mut c = s.kw.raw().await;
    for (cmd, want) in [
        ("WATCH user:k", "+OK\r\n"),
        ("MULTI", "+OK\r\n"),
        ("PING", "+QUEUED\r\n"),
        ("EXEC", "*1\r\n+PONG\r\n"),
        ("WATCH user:k", "+OK\r\n"),
        ("MULTI", "+OK\r\n"),
        ("PING", "+QUEUED\r\n"),
        ("ECHO hi", "+QUEUED\r\n"),
        ("EXEC", "*2\r\n+PONG\r\n$2\r\nhi\r\n"),
    ] {
        c.check(cmd, want).await;
    }
}

/// Clients pick commands by the version keyway reports: the lowest of its
/// servers' (learnt when keyway starts), its own with none, and CLIENT
/// LIST's fields as that version writes them.
#[tokio::test]
async fn the_reported_version_is_the_servers() {
    let s = setup().await;
    let mut direct = s.r1.raw().await;
    direct.send(b"INFO server\r\n").await;
    let info = String::from_utf8_lossy(&direct.reply().await).into_owned();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version")
        .trim()
        .to_string();
    let mut c = s.kw.raw().await;
    let wanted = format!("redis_version:{version}\r\n");
    let mut learned = false;
    for _ in 0..500 {
        c.send(b"INFO server\r\n").await;
        if String::from_utf8_lossy(&c.reply().await).contains(&wanted) {
            learned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(learned, "keyway never reported {wanted}");
    c.send(b"HELLO 3\r\n").await;
    let hello = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(
        hello.contains(&format!(
            "$7\r\nversion\r\n${}\r\n{version}\r\n",
            version.len()
        )),
        "{hello}"
    );
    c.send(b"HELLO 2\r\n").await;
    c.reply().await;
    c.send(b"CLIENT INFO\r\n").await;
    let line = String::from_utf8_lossy(&c.reply().await).into_owned();
    let modern = version.as_str() >= "7.2";
    assert_eq!(line.contains(" watch=0 "), modern, "{line}");
    assert_eq!(line.contains(" lib-name="), modern, "{line}");
    // Alone, keyway reports its own version.
    let kw = Keyway::start().await;
    let mut m = kw.raw().await;
    m.send(b"INFO server\r\n").await;
    let info = String::from_utf8_lossy(&m.reply().await).into_owned();
    assert!(
        info.contains(&format!(
            "redis_version:{}\r\n",
            keyway::wire::command::REDIS_VERSION
        )),
        "{info}"
    );
}

/// Shard channels (SSUBSCRIBE, SPUBLISH, PUBSUB SHARD*) through keyway,
/// over a redis backend, a rewritten one and the memory backend, read as
/// one redis-server answers them.
#[tokio::test]
async fn shard_channels_answer_as_redis_does() {
    async fn transcript(sub: &mut Raw, publ: &mut Raw) -> String {
        let mut out = Vec::new();
        let steps: &[(bool, &str, usize)] = &[
            (true, "SSUBSCRIBE user:n sess:n chat", 3),
            (true, "SUBSCRIBE user:n", 1),
            (true, "SSUBSCRIBE chat", 1),
            (false, "SPUBLISH user:n a", 1),
            (true, "", 1),
            (false, "PUBLISH user:n b", 1),
            (true, "", 1),
            (false, "SPUBLISH sess:n c", 1),
            (true, "", 1),
            (false, "SPUBLISH chat d", 1),
            (true, "", 1),
            // Redis lists in hash order: one channel per listing.
            (false, "PUBSUB SHARDCHANNELS u*", 1),
            (false, "PUBSUB SHARDCHANNELS s*", 1),
            (false, "PUBSUB SHARDNUMSUB user:n nosuch", 1),
            (false, "PUBSUB NUMSUB user:n sess:n", 1),
            (true, "GET x", 1),
            (true, "SUNSUBSCRIBE sess:n nosuch", 2),
            (true, "SUNSUBSCRIBE chat", 1),
            (true, "SUNSUBSCRIBE", 1),
            (true, "SUNSUBSCRIBE", 1),
            (false, "SPUBLISH user:n e", 1),
            (true, "UNSUBSCRIBE", 1),
            (true, "SPUBLISH user:n f", 1),
        ];
        for (on_sub, cmd, replies) in steps {
            let c = if *on_sub { &mut *sub } else { &mut *publ };
            if !cmd.is_empty() {
                let words: Vec<&str> = cmd.split(' ').collect();
                c.send(&resp(&words)).await;
            }
            for _ in 0..*replies {
                out.extend(c.reply().await);
            }
        }
        out.escape_ascii().to_string()
    }
    let redis = RedisServer::start();
    let want = transcript(&mut redis.raw().await, &mut redis.raw().await).await;
    let s = setup().await;
    let got = transcript(&mut s.kw.raw().await, &mut s.kw.raw().await).await;
    assert_eq!(got, want);
    assert!(want.contains("smessage"), "{want}");
    // The rewritten namespace's shard channel reached r2 under its name.
    let mut r2 = s.r2.raw().await;
    let mut sub = s.kw.raw().await;
    sub.check(
        "SSUBSCRIBE sess:x",
        "*3\r\n$10\r\nssubscribe\r\n$6\r\nsess:x\r\n:1\r\n",
    )
    .await;
    r2.check("PUBSUB SHARDCHANNELS", "*1\r\n$6\r\napp1:x\r\n")
        .await;
}

/// SAVE and BGSAVE reach a Redis server that a namespace has to itself,
/// and answer as it does.
#[tokio::test]
async fn save_reaches_a_redis_server_of_its_own() {
    let r = RedisServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n",
        r.port
    ))
    .await;
    let mut k = kw.raw().await;
    k.check("SET k v", "+OK\r\n").await;
    k.check("SAVE", "+OK\r\n").await;
    let mut direct = r.direct().await;
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert!(info.contains("rdb_changes_since_last_save:0"), "{info}");
    k.check("BGSAVE", "+Background saving started\r\n").await;
}

/// CLIENT UNBLOCK ends a wait that runs on a redis server, as a timeout or
/// with -UNBLOCKED, byte for byte as redis-server answers its own clients.
#[tokio::test]
async fn client_unblock_reaches_a_wait_on_the_server() {
    let s = setup().await;
    let direct = |port: u16| async move {
        Raw(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap())
    };
    for (mode, timeout_reply) in [
        ("TIMEOUT", "*-1\r\n"),
        (
            "ERROR",
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        let mut replies = Vec::new();
        for through_keyway in [false, true] {
            let (mut blocked, mut other) = if through_keyway {
                (s.kw.raw().await, s.kw.raw().await)
            } else {
                (direct(s.r1.port).await, direct(s.r1.port).await)
            };
            let id = blocked.line("CLIENT ID").await;
            let id = id.trim_start_matches(':').trim().to_string();
            blocked.send(&resp(&["BLPOP", "user:empty", "0"])).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            other
                .check(&format!("CLIENT UNBLOCK {id} {mode}"), ":1\r\n")
                .await;
            let got = blocked.line_within(Duration::from_secs(5)).await;
            replies.push(got.clone());
            // Not blocked any more: a second UNBLOCK finds nothing.
            other
                .check(&format!("CLIENT UNBLOCK {id} {mode}"), ":0\r\n")
                .await;
            // The connection serves on.
            blocked.check("PING", "+PONG\r\n").await;
        }
        assert_eq!(replies[0], timeout_reply, "redis-server, {mode}");
        assert_eq!(replies[1], replies[0], "keyway, {mode}");
    }
}
