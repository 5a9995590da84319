//! Mirroring: a namespace on the memory backend whose acknowledged writes
//! are replayed on a redis-server of the test's own.

mod common;

use common::{Keyway, RedisServer, until};
use redis::AsyncCommands;

fn config(ns: &str, redis_port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.old]
type = "memory"
[backends.new]
type = "redis"
url = "redis://127.0.0.1:{redis_port}"
command_timeout_ms = 500
connect_timeout_ms = 200
[[namespaces]]
name = "{ns}"
prefix = ""
backend = "old"
mirror = "new"
"#
    )
}

fn mirrored(ns: &str, result: &str) -> u64 {
    let want = format!("keyway_mirror_commands_total{{namespace=\"{ns}\",result=\"{result}\"}} ");
    keyway::wire::metrics::metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&want).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn acknowledged_writes_reach_the_mirror_in_order() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&config("mirrored", redis.port)).await;
    let mut raw = kw.raw().await;
    let mut direct = redis.direct().await;

    raw.check("SET a 1", "+OK\r\n").await;
    raw.check("INCR a", ":2\r\n").await;
    raw.check("HSET h f v", ":1\r\n").await;
    raw.check("MSET m1 x m2 y", "+OK\r\n").await;
    raw.check("EXPIRE m1 100", ":1\r\n").await;
    raw.check("RPUSH l 1 2 3", ":3\r\n").await;
    raw.check("LPOP l", "$1\r\n1\r\n").await;
    until("the mirror to show the writes", 5, || {
        let mut d = direct.clone();
        async move {
            let a: Option<String> = d.get("a").await.unwrap();
            let l: Vec<String> = d.lrange("l", 0, -1).await.unwrap();
            a.as_deref() == Some("2") && l == ["2", "3"]
        }
    })
    .await;
    let h: Option<String> = direct.hget("h", "f").await.unwrap();
    assert_eq!(h.as_deref(), Some("v"));
    let ttl: i64 = direct.ttl("m1").await.unwrap();
    assert!((90..=100).contains(&ttl), "{ttl}");
    let m2: Option<String> = direct.get("m2").await.unwrap();
    assert_eq!(m2.as_deref(), Some("y"));

    // A write the primary refuses is not replayed.
    raw.check(
        "SET h x XX GET",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
    raw.check(
        "INCR h",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;

    // A committed transaction is; a discarded or aborted one is not.
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET t1 yes", "+QUEUED\r\n").await;
    raw.check("EXEC", "*1\r\n+OK\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET t2 no", "+QUEUED\r\n").await;
    raw.check("DISCARD", "+OK\r\n").await;
    raw.check("WATCH w", "+OK\r\n").await;
    let mut other = kw.raw().await;
    other.check("SET w changed", "+OK\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET t3 no", "+QUEUED\r\n").await;
    raw.check("EXEC", "*-1\r\n").await;
    raw.check("SET last 1", "+OK\r\n").await;
    until("the mirror to show the last write", 5, || {
        let mut d = direct.clone();
        async move { d.exists::<_, bool>("last").await.unwrap() }
    })
    .await;
    // Replayed in order: everything before `last` is there already.
    let t1: Option<String> = direct.get("t1").await.unwrap();
    assert_eq!(t1.as_deref(), Some("yes"));
    let w: Option<String> = direct.get("w").await.unwrap();
    assert_eq!(w.as_deref(), Some("changed"));
    let none: bool = direct.exists(&["t2", "t3"]).await.unwrap();
    assert!(!none, "a discarded or aborted transaction was mirrored");
    let h: Option<String> = direct.hget("h", "f").await.unwrap();
    assert_eq!(h.as_deref(), Some("v"), "a refused write was mirrored");

    // Reads stay on the primary, and FLUSHDB does not reach the mirror,
    // which may hold other namespaces' keys.
    let _: () = direct.set("only-on-mirror", "x").await.unwrap();
    raw.check("GET only-on-mirror", "$-1\r\n").await;
    raw.check("FLUSHDB", "+OK\r\n").await;
    raw.check("SET after-flush 1", "+OK\r\n").await;
    until("the mirror to show the write after FLUSHDB", 5, || {
        let mut d = direct.clone();
        async move { d.exists::<_, bool>("after-flush").await.unwrap() }
    })
    .await;
    let kept: bool = direct.exists("a").await.unwrap();
    assert!(kept, "FLUSHDB was mirrored");
    assert_eq!(mirrored("mirrored", "error"), 0);
    // SET, INCR, HSET, MSET, EXPIRE, RPUSH, LPOP, the committed SET t1,
    // the other client's SET w, SET last, SET after-flush.
    assert_eq!(mirrored("mirrored", "ok"), 11);
}

#[tokio::test]
async fn a_frozen_mirror_holds_no_client_and_catches_up() {
    let redis = RedisServer::start();
    let toml = config("mirror-frozen", redis.port)
        .replace("command_timeout_ms = 500", "command_timeout_ms = 5000");
    let kw = Keyway::with_toml(&toml).await;
    let mut raw = kw.raw().await;
    raw.check("SET warm 1", "+OK\r\n").await;
    until("the mirror to show the first write", 5, || async {
        mirrored("mirror-frozen", "ok") == 1
    })
    .await;
    redis.signal("STOP");
    for i in 0..50 {
        raw.check(&format!("RPUSH q {i}"), &format!(":{}\r\n", i + 1))
            .await;
    }
    // Every write was answered while the mirror, frozen, had answered none
    // of them: no client waits for it.
    assert_eq!(mirrored("mirror-frozen", "ok"), 1);
    assert_eq!(mirrored("mirror-frozen", "error"), 0);
    redis.signal("CONT");
    until("the mirror to show the queued writes", 5, || async {
        mirrored("mirror-frozen", "ok") == 51
    })
    .await;
    let q: Vec<i64> = redis.direct().await.lrange("q", 0, -1).await.unwrap();
    assert_eq!(q, (0..50).collect::<Vec<i64>>(), "replayed in order");
}

#[tokio::test]
async fn a_mirror_that_is_down_only_counts_errors() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    redis.kill();
    let kw = Keyway::with_toml(&config("mirror-down", port)).await;
    let mut raw = kw.raw().await;
    for i in 0..20 {
        raw.check(&format!("SET k{i} v"), "+OK\r\n").await;
    }
    raw.check("GET k7", "$1\r\nv\r\n").await;
    until("the mirror to show the failures counted", 5, || async {
        mirrored("mirror-down", "error") == 20
    })
    .await;
    assert_eq!(mirrored("mirror-down", "ok"), 0);
}

/// The move a mirror is for: fill the new backend, then switch the
/// namespace to it with a reload; the clients see their data throughout.
#[tokio::test]
async fn a_namespace_moves_to_its_mirror_with_a_reload() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("keyway-mirror-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    let before = config("moving", redis.port);
    std::fs::write(&path, &before).unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    for i in 0..100 {
        let _: () = c.set(format!("user:{i}"), i).await.unwrap();
    }
    until("the mirror to show every key", 5, || async {
        mirrored("moving", "ok") == 100
    })
    .await;
    let after = before.replace("backend = \"old\"\nmirror = \"new\"", "backend = \"new\"");
    assert_ne!(after, before);
    std::fs::write(&path, after).unwrap();
    assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    let values: Vec<i64> = c
        .mget((0..100).map(|i| format!("user:{i}")).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(values, (0..100).collect::<Vec<i64>>());
    let _: () = c.set("user:new", "x").await.unwrap();
    let direct: Option<String> = redis.direct().await.get("user:new").await.unwrap();
    assert_eq!(
        direct.as_deref(),
        Some("x"),
        "writes now go to the new backend"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What is decided when a write runs (SPOP's members, XADD's automatic ID,
/// a relative expiry's deadline) reaches the mirror as its effect, so the
/// mirror holds the same data; even when the mirror replays it late.
#[tokio::test]
async fn random_and_relative_writes_are_replayed_as_their_effect() {
    let redis = RedisServer::start();
    let toml = config("mirror-effects", redis.port)
        .replace("command_timeout_ms = 500", "command_timeout_ms = 5000");
    let kw = Keyway::with_toml(&toml).await;
    let mut raw = kw.raw().await;
    let mut primary = kw.client().await;
    let mut mirror = redis.direct().await;

    raw.check("SADD s a b c d e f g h", ":8\r\n").await;
    raw.send(&common::resp(&["SPOP", "s"])).await;
    raw.reply().await;
    raw.send(&common::resp(&["SPOP", "s", "2"])).await;
    raw.reply().await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SPOP s", "+QUEUED\r\n").await;
    raw.check("XADD x * f 1", "+QUEUED\r\n").await;
    raw.send(&common::resp(&["EXEC"])).await;
    raw.reply().await;
    raw.send(&common::resp(&[
        "XADD", "x", "MAXLEN", "~", "10", "*", "f", "2",
    ]))
    .await;
    raw.reply().await;
    raw.check("SET a 1", "+OK\r\n").await;
    raw.check("SET t3 v", "+OK\r\n").await;
    until("the mirror to catch up", 5, || async {
        mirrored("mirror-effects", "ok") == 8
    })
    .await;

    // Replayed 1.2 s late, relative expiries must not move by as much.
    redis.signal("STOP");
    raw.check("SETEX t1 100 v", "+OK\r\n").await;
    raw.check("SET t2 v EX 100", "+OK\r\n").await;
    raw.check("GETEX t3 PX 100000", "$1\r\nv\r\n").await;
    raw.check("EXPIRE a 100", ":1\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    redis.signal("CONT");
    until("the mirror to replay the expiries", 5, || async {
        mirrored("mirror-effects", "ok") == 12
    })
    .await;
    assert_eq!(mirrored("mirror-effects", "error"), 0);

    let mut left: Vec<String> = primary.smembers("s").await.unwrap();
    let mut there: Vec<String> = mirror.smembers("s").await.unwrap();
    left.sort();
    there.sort();
    assert_eq!(left.len(), 4);
    assert_eq!(left, there, "SPOP's members removed on the mirror too");
    let stream = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let r: redis::Value = redis::cmd("XRANGE")
                .arg("x")
                .arg("-")
                .arg("+")
                .query_async(&mut c)
                .await
                .unwrap();
            r
        }
    };
    assert_eq!(stream(&mut primary).await, stream(&mut mirror).await);
    for key in ["t1", "t2", "t3", "a"] {
        let at = |c: &mut redis::aio::MultiplexedConnection| {
            let mut c = c.clone();
            async move {
                let t: i64 = redis::cmd("PEXPIRETIME")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                t
            }
        };
        let (p, m) = (at(&mut primary).await, at(&mut mirror).await);
        assert!(
            p > 0 && (p - m).abs() < 300,
            "{key}: primary {p}, mirror {m}"
        );
    }
}

/// A consumer group's deliveries reach the mirror as its pending entries,
/// so that consumers moved to it neither get the same entries again nor
/// lose what they have not acknowledged.
#[tokio::test]
async fn consumer_group_deliveries_reach_the_mirror() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&config("mirror-groups", redis.port)).await;
    let mut raw = kw.raw().await;
    raw.check("XGROUP CREATE s g $ MKSTREAM", "+OK\r\n").await;
    for i in 1..=4 {
        raw.check(&format!("XADD s {i}-0 f {i}"), &format!("$3\r\n{i}-0\r\n"))
            .await;
    }
    raw.send(&common::resp(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "w",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        ">",
    ]))
    .await;
    raw.reply().await;
    raw.check("XACK s g 1-0", ":1\r\n").await;
    raw.send(&common::resp(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "x",
        "COUNT",
        "1",
        "NOACK",
        "STREAMS",
        "s",
        ">",
    ]))
    .await;
    raw.reply().await;
    until("the mirror to replay the group's reads", 5, || async {
        mirrored("mirror-groups", "ok") == 8
    })
    .await;
    assert_eq!(mirrored("mirror-groups", "error"), 0);
    // 2-0 is pending for w; 3-0 went to x without an ACK to wait for.
    let mut on_mirror = common::Raw(
        tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
            .await
            .unwrap(),
    );
    on_mirror
        .check(
            "XPENDING s g",
            "*4\r\n:1\r\n$3\r\n2-0\r\n$3\r\n2-0\r\n*1\r\n*2\r\n$1\r\nw\r\n$1\r\n1\r\n",
        )
        .await;
    // A consumer reading on the mirror gets only what was never delivered.
    on_mirror
        .check(
            "XREADGROUP GROUP g w STREAMS s >",
            "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n4-0\r\n*2\r\n$1\r\nf\r\n$1\r\n4\r\n",
        )
        .await;
}

/// A reload that leaves the namespace's backends alone keeps its replaying
/// task: writes queued before it are not overtaken by writes after it.
#[tokio::test]
async fn a_reload_keeps_the_mirror_s_order() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("keyway-mirror-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    let before = config("reloaded", redis.port)
        .replace("command_timeout_ms = 500", "command_timeout_ms = 5000");
    std::fs::write(&path, &before).unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.raw().await;
    c.check("SET warm 1", "+OK\r\n").await;
    until("the mirror to show the first write", 5, || async {
        mirrored("reloaded", "ok") == 1
    })
    .await;
    // The replaying task is held by a frozen mirror on its first write,
    // with the second queued behind it.
    redis.signal("STOP");
    c.check("SET a x", "+OK\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.check("SET k 1", "+OK\r\n").await;
    let after = before.replace("[server]\n", "[server]\nslowlog_max_len = 64\n");
    assert_ne!(after, before);
    std::fs::write(&path, after).unwrap();
    assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    c.check("SET k 2", "+OK\r\n").await;
    redis.signal("CONT");
    until("the mirror to replay every write", 5, || async {
        mirrored("reloaded", "ok") == 4
    })
    .await;
    let k: String = redis.direct().await.get("k").await.unwrap();
    assert_eq!(k, "2", "the write after the reload was replayed last");
    let _ = std::fs::remove_dir_all(&dir);
}
