//! The memcached backend against two real memcached processes started by
//! the test: every translated command with Redis's exact replies, keys
//! checked in memcached itself, TTL and key edge cases, a server down, and
//! one application test run unchanged on memory, redis and memcached.

mod common;

use std::time::Duration;

use common::{Keyway, MemcachedServer, RedisServer, resp};
use redis::AsyncCommands;

struct Setup {
    m1: MemcachedServer,
    m2: MemcachedServer,
    kw: Keyway,
}

/// "cache" owns both memcached servers; "shared" uses them with a key
/// prefix, so it may not flush them.
async fn setup() -> Setup {
    let m1 = MemcachedServer::start();
    let m2 = MemcachedServer::start();
    let toml = format!(
        r#"
[backends.mc]
type = "memcached"
servers = ["{}", "{}"]
command_timeout_ms = 500

[backends.mc_shared]
type = "memcached"
servers = ["{}"]

[[namespaces]]
name = "cache"
prefix = ""
backend = "mc"

[[namespaces]]
name = "shared"
prefix = "shared:"
backend = "mc_shared"
key_prefix = "app:"
"#,
        m1.addr(),
        m2.addr(),
        m2.addr()
    );
    let kw = Keyway::with_toml(&toml).await;
    Setup { m1, m2, kw }
}

#[tokio::test]
async fn string_commands_answer_as_redis() {
    let s = setup().await;
    let mut c = s.kw.raw().await;
    for (cmd, reply) in [
        ("GET k", "$-1\r\n"),
        ("SET k hello", "+OK\r\n"),
        ("GET k", "$5\r\nhello\r\n"),
        ("SET k world NX", "$-1\r\n"),
        ("SET k world XX GET", "$5\r\nhello\r\n"),
        ("SET new v XX", "$-1\r\n"),
        ("SET k v NX XX", "-ERR syntax error\r\n"),
        (
            "SET k v EX 0",
            "-ERR invalid expire time in 'set' command\r\n",
        ),
        ("SETNX k x", ":0\r\n"),
        ("SETNX k2 x", ":1\r\n"),
        ("GETSET k2 y", "$1\r\nx\r\n"),
        ("GETDEL k2", "$1\r\ny\r\n"),
        ("GETDEL k2", "$-1\r\n"),
        ("MSET a 1 b 2 c 3", "+OK\r\n"),
        (
            "MGET a nope b c",
            "*4\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$1\r\n3\r\n",
        ),
        ("EXISTS a a nope b", ":3\r\n"),
        ("TOUCH a nope", ":1\r\n"),
        ("DEL a b nope", ":2\r\n"),
        ("UNLINK c", ":1\r\n"),
        ("APPEND log abc", ":3\r\n"),
        ("APPEND log def", ":6\r\n"),
        ("GET log", "$6\r\nabcdef\r\n"),
        ("STRLEN log", ":6\r\n"),
        ("STRLEN nope", ":0\r\n"),
        ("INCR n", ":1\r\n"),
        ("INCRBY n -5", ":-4\r\n"),
        ("DECRBY n 10", ":-14\r\n"),
        ("DECR n", ":-15\r\n"),
        ("GET n", "$3\r\n-15\r\n"),
        (
            "INCR log",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "INCRBY n x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("SET max 9223372036854775807", "+OK\r\n"),
        ("INCR max", "-ERR increment or decrement would overflow\r\n"),
        ("INCRBYFLOAT f 1.5", "$3\r\n1.5\r\n"),
        ("INCRBYFLOAT f 0.25", "$4\r\n1.75\r\n"),
        ("INCRBYFLOAT log 1", "-ERR value is not a valid float\r\n"),
        ("SET e v EX 100", "+OK\r\n"),
        ("TTL e", ":100\r\n"),
        ("PTTL e", ":100000\r\n"),
        ("TTL k", ":-1\r\n"),
        ("TTL nope", ":-2\r\n"),
        ("EXPIRE k 50", ":1\r\n"),
        ("TTL k", ":50\r\n"),
        ("EXPIRE k 60 NX", ":0\r\n"),
        ("EXPIRE k 40 GT", ":0\r\n"),
        ("EXPIRE k 70 GT", ":1\r\n"),
        ("TTL k", ":70\r\n"),
        ("EXPIRE nope 10", ":0\r\n"),
        ("PERSIST k", ":1\r\n"),
        ("PERSIST k", ":0\r\n"),
        ("TTL k", ":-1\r\n"),
        ("INCR e", "-ERR value is not an integer or out of range\r\n"),
        ("SET cnt 5 EX 100", "+OK\r\n"),
        ("INCR cnt", ":6\r\n"),
        ("TTL cnt", ":100\r\n"),
        ("SET cnt 7 KEEPTTL", "+OK\r\n"),
        ("TTL cnt", ":100\r\n"),
        ("SET cnt 8", "+OK\r\n"),
        ("TTL cnt", ":-1\r\n"),
        ("GETEX e PERSIST", "$1\r\nv\r\n"),
        ("TTL e", ":-1\r\n"),
        ("GETEX e EX 30", "$1\r\nv\r\n"),
        ("TTL e", ":30\r\n"),
        // A missing key is nil before the time is read, as in Redis.
        ("GETEX nosuch EX x", "$-1\r\n"),
        ("GETEX nosuch EX 0", "$-1\r\n"),
        (
            "GETEX e EX x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "GETEX e EX 0",
            "-ERR invalid expire time in 'getex' command\r\n",
        ),
        ("GETEX nosuch EX 5 PX 5", "-ERR syntax error\r\n"),
        ("TTL e", ":30\r\n"),
        ("SETEX sx 20 v", "+OK\r\n"),
        ("TTL sx", ":20\r\n"),
        ("PSETEX px 1500 v", "+OK\r\n"),
        // Sub-second TTLs round up to whole seconds.
        ("TTL px", ":2\r\n"),
        ("PEXPIRE px 10", ":1\r\n"),
        ("TTL px", ":1\r\n"),
        // An expiry in the past deletes, as in Redis.
        ("EXPIRE k -1", ":1\r\n"),
        ("GET k", "$-1\r\n"),
        ("SET k v EXAT 1", "+OK\r\n"),
        ("GET k", "$-1\r\n"),
        ("SET k v", "+OK\r\n"),
        ("EXPIREAT k 1", ":1\r\n"),
        ("EXISTS k", ":0\r\n"),
        ("SET k v", "+OK\r\n"),
        ("GETEX k PXAT 1", "$1\r\nv\r\n"),
        ("EXISTS k", ":0\r\n"),
    ] {
        c.check(cmd, reply).await;
    }
    // Empty values are values.
    c.send(&common::resp(&["SET", "empty", ""])).await;
    c.expect("+OK\r\n").await;
    c.check("GET empty", "$0\r\n\r\n").await;
    c.check("STRLEN empty", ":0\r\n").await;
}

#[tokio::test]
async fn ttls_beyond_thirty_days_are_kept() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    let forty_days = 40 * 24 * 3600;
    let _: () = c.set_ex("long", "v", forty_days).await.unwrap();
    let ttl: i64 = c.ttl("long").await.unwrap();
    assert!(
        (forty_days as i64 - 1..=forty_days as i64 + 1).contains(&ttl),
        "{ttl}"
    );
    let _: () = c.expire("long", 31 * 24 * 3600).await.unwrap();
    let ttl: i64 = c.ttl("long").await.unwrap();
    assert!(
        (31 * 24 * 3600 - 1..=31 * 24 * 3600 + 1).contains(&ttl),
        "{ttl}"
    );
    let v: String = c.get("long").await.unwrap();
    assert_eq!(v, "v");
}

#[tokio::test]
async fn keys_are_in_memcached_whatever_they_hold() {
    let s = setup().await;
    let mut c = s.kw.client().await;
    for i in 0..20 {
        let _: () = c.set(format!("user:{i}"), format!("v{i}")).await.unwrap();
    }
    // Each key is on exactly one of the two servers, and both hold some.
    let mut on = [0, 0];
    for i in 0..20 {
        let found: Vec<bool> = [&s.m1, &s.m2]
            .iter()
            .map(|m| m.ask(&format!("mg user:{i} v"), "\r\n").starts_with("VA"))
            .collect();
        assert_eq!(
            found.iter().filter(|f| **f).count(),
            1,
            "user:{i}: {found:?}"
        );
        on[found[1] as usize] += 1;
    }
    assert!(on[0] > 0 && on[1] > 0, "all keys on one server: {on:?}");
    let on_m1 = s.m1.ask("mg user:0 v", "\r\n").starts_with("VA");
    let m = if on_m1 { &s.m1 } else { &s.m2 };
    assert_eq!(m.ask("mg user:0 v", "v0\r\n"), "VA 2\r\nv0\r\n");

    // Keys memcached cannot take as text: spaces, newlines, binary, long.
    let odd: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"line\nbreak".to_vec(),
        vec![0, 159, 146, 150, 255],
        vec![b'x'; 200],
        vec![b'y'; 300],
        [vec![b'y'; 299], vec![b'z']].concat(),
        vec![7u8; 1000],
    ];
    for (i, k) in odd.iter().enumerate() {
        let _: () = c.set(k, i).await.unwrap();
    }
    for (i, k) in odd.iter().enumerate() {
        let v: i64 = c.get(k).await.unwrap();
        assert_eq!(v, i as i64, "key {i}");
    }
    let n: i64 = c.exists(&odd).await.unwrap();
    assert_eq!(n, odd.len() as i64);
    // "with space" travels as base64 (meta flag b) and is stored as itself.
    let hits = [&s.m1, &s.m2]
        .iter()
        .filter(|m| m.ask("mg d2l0aCBzcGFjZQ== b v", "\r\n").starts_with("VA 1"))
        .count();
    assert_eq!(hits, 1);

    // A namespace's key_prefix is what memcached sees.
    let _: () = c.set("shared:s1", "x").await.unwrap();
    assert_eq!(s.m2.ask("mg app:shared:s1 v", "x\r\n"), "VA 1\r\nx\r\n");
}

#[tokio::test]
async fn what_memcached_cannot_do_is_refused_by_name() {
    let s = setup().await;
    let mut c = s.kw.raw().await;
    for (cmd, reply) in [
        (
            "HSET h f v",
            "-ERR 'HSET' is not supported by namespace 'cache' (memcached backend)\r\n",
        ),
        (
            "LPUSH l a",
            "-ERR 'LPUSH' is not supported by namespace 'cache' (memcached backend)\r\n",
        ),
        // memcached cannot list its keys: the keyspace leaves it out.
        ("KEYS *", "*0\r\n"),
        ("SCAN 0", "*2\r\n$1\r\n0\r\n*0\r\n"),
        ("DBSIZE", ":0\r\n"),
        (
            "SUBSCRIBE ch",
            "-ERR 'SUBSCRIBE' is not supported by namespace 'cache' (memcached backend)\r\n",
        ),
        ("MULTI", "+OK\r\n"),
        (
            "SET a b",
            "-ERR 'MULTI' is not supported by namespace 'cache' (memcached backend)\r\n",
        ),
        ("DISCARD", "+OK\r\n"),
    ] {
        c.check(cmd, reply).await;
    }
    let big = "x".repeat(2 * 1024 * 1024);
    c.send(&common::resp(&["SET", "big", &big])).await;
    c.expect(
        "-ERR value of 2097152 bytes is over the item size limit of memcached backend 'mc' (1048576 bytes, max_item_size)\r\n",
    )
    .await;
    // "shared" shares its server and rewrites keys: it cannot be flushed.
    c.check(
        "FLUSHALL",
        "-ERR 'FLUSHALL' cannot flush namespace 'shared': it shares its memcached backend or rewrites its keys, and that backend cannot list keys\r\n",
    )
    .await;
}

#[tokio::test]
async fn flushdb_on_owned_servers() {
    let m = MemcachedServer::start();
    let toml = format!(
        "[backends.mc]\ntype = \"memcached\"\nservers = [\"{}\"]\n[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"mc\"\n",
        m.addr()
    );
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.raw().await;
    c.check("SET a 1", "+OK\r\n").await;
    let r = c.line("FLUSHDB").await;
    assert_eq!(r, "+OK\r\n");
    c.check("GET a", "$-1\r\n").await;
}

#[tokio::test]
async fn one_server_down_fails_only_its_keys() {
    let mut s = setup().await;
    let mut c = s.kw.raw().await;
    // Find a key on each server.
    let mut on = [None, None];
    for i in 0..50 {
        let k = format!("k{i}");
        c.check(&format!("SET {k} v"), "+OK\r\n").await;
        let idx = !s.m1.ask(&format!("mg {k} v"), "\r\n").starts_with("VA") as usize;
        on[idx].get_or_insert(k);
    }
    let (k1, k2) = (on[0].clone().unwrap(), on[1].clone().unwrap());
    // Stalled: an error within command_timeout_ms (500), never a hang.
    s.m1.signal("STOP");
    let r = c.line(&format!("GET {k1}")).await;
    assert!(
        r.starts_with("-ERR backend 'mc' unavailable: no reply within 500 ms"),
        "{r:?}"
    );
    c.check(&format!("GET {k2}"), "$1\r\nv\r\n").await;
    s.m1.signal("CONT");
    c.check(&format!("GET {k1}"), "$1\r\nv\r\n").await;
    s.m1.kill();
    let r = c.line(&format!("GET {k1}")).await;
    assert!(r.starts_with("-ERR backend 'mc' unavailable: "), "{r:?}");
    assert_eq!(
        c.line(&format!("SET {k1} w")).await,
        "-ERR backend 'mc' unavailable: connection refused\r\n"
    );
    // In one batch, a command that fails on the down server leaves the
    // next command's result in its place.
    let refused = "-ERR backend 'mc' unavailable: connection refused\r\n";
    c.send(&[resp(&["MGET", &k1, &k2]), resp(&["GET", &k1])].concat())
        .await;
    c.expect(&format!("{refused}{refused}")).await;
    s.m1.restart();
    let mut recovered = false;
    for _ in 0..50 {
        if c.line(&format!("SET {k1} back")).await == "+OK\r\n" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered);
    c.check(&format!("GET {k1}"), "$4\r\nback\r\n").await;
}

/// A session-cache style application, as written for Redis.
async fn session_app(c: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut log = Vec::new();
    let _: () = c.set_ex("sess:alice", "token-a", 1800).await.unwrap();
    let _: () = c.set_ex("sess:bob", "token-b", 1800).await.unwrap();
    let v: Option<String> = c.get("sess:alice").await.unwrap();
    log.push(format!("get {v:?}"));
    let ttl: i64 = c.ttl("sess:alice").await.unwrap();
    log.push(format!("ttl {ttl}"));
    let ok: bool = c.expire("sess:alice", 3600).await.unwrap();
    let ttl: i64 = c.ttl("sess:alice").await.unwrap();
    log.push(format!("expire {ok} ttl {ttl}"));
    for _ in 0..3 {
        let hits: i64 = c.incr("hits:alice", 1).await.unwrap();
        log.push(format!("hits {hits}"));
    }
    let left: i64 = c.decr("quota:alice", 2).await.unwrap();
    log.push(format!("quota {left}"));
    let all: Vec<Option<String>> = c
        .mget(&["sess:alice", "sess:carol", "sess:bob"])
        .await
        .unwrap();
    log.push(format!("mget {all:?}"));
    let n: i64 = c.del(&["sess:bob", "sess:carol"]).await.unwrap();
    log.push(format!("del {n}"));
    let gone: Option<String> = c.get("sess:bob").await.unwrap();
    log.push(format!("after del {gone:?}"));
    let set: Option<String> = redis::cmd("SET")
        .arg("lock:job")
        .arg("me")
        .arg("NX")
        .arg("EX")
        .arg(30)
        .query_async(c)
        .await
        .unwrap();
    let again: Option<String> = redis::cmd("SET")
        .arg("lock:job")
        .arg("you")
        .arg("NX")
        .arg("EX")
        .arg(30)
        .query_async(c)
        .await
        .unwrap();
    log.push(format!("lock {set:?} {again:?}"));
    log
}

#[tokio::test]
async fn the_same_application_runs_on_every_backend() {
    let redis = RedisServer::start();
    let mc = MemcachedServer::start();
    let backends = [
        "type = \"memory\"".to_string(),
        format!(
            "type = \"redis\"\nurl = \"redis://127.0.0.1:{}\"",
            redis.port
        ),
        format!("type = \"memcached\"\nservers = [\"{}\"]", mc.addr()),
    ];
    let mut logs = Vec::new();
    for b in &backends {
        let toml = format!(
            "[backends.b]\n{b}\n[[namespaces]]\nname = \"app\"\nprefix = \"\"\nbackend = \"b\"\n"
        );
        let kw = Keyway::with_toml(&toml).await;
        let mut c = kw.client().await;
        logs.push(session_app(&mut c).await);
    }
    assert_eq!(
        logs[0],
        vec![
            "get Some(\"token-a\")",
            "ttl 1800",
            "expire true ttl 3600",
            "hits 1",
            "hits 2",
            "hits 3",
            "quota -2",
            "mget [Some(\"token-a\"), None, Some(\"token-b\")]",
            "del 1",
            "after del None",
            "lock Some(\"OK\") None",
        ]
    );
    assert_eq!(logs[1], logs[0], "redis differs from memory");
    assert_eq!(logs[2], logs[0], "memcached differs from memory");
}

/// Concurrent clients' commands are merged into shared batches: each client
/// must still get its own replies, in its own order.
#[tokio::test]
async fn merged_batches_answer_each_client() {
    let s = setup().await;
    let mut tasks = Vec::new();
    for client in 0..20 {
        let mut c = s.kw.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let key = format!("merge:{client}:{i}");
                let value = format!("{client}-{i}");
                let _: () = c.set(&key, &value).await.unwrap();
                let got: String = c.get(&key).await.unwrap();
                assert_eq!(got, value);
                let n: i64 = c.incr(format!("merge:count:{client}"), 1).await.unwrap();
                assert_eq!(n, i + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A namespace on memcached cannot be listed: KEYS, SCAN, DBSIZE and
/// RANDOMKEY leave it out instead of failing for every client; a SCAN of a
/// small keyspace over several backends ends in one call (issue 19).
#[tokio::test]
async fn the_keyspace_leaves_out_what_memcached_cannot_list() {
    let mc = MemcachedServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.m]\ntype = \"memory\"\n[backends.m2]\ntype = \"memory\"\n\
         [backends.mc]\ntype = \"memcached\"\nservers = [\"{}\"]\n\
         [[namespaces]]\nname = \"rest\"\nprefix = \"\"\nbackend = \"m\"\n\
         [[namespaces]]\nname = \"mcsess\"\nprefix = \"sess:\"\nbackend = \"mc\"\n\
         [[namespaces]]\nname = \"other\"\nprefix = \"o:\"\nbackend = \"m2\"\n",
        mc.addr()
    ))
    .await;
    let mut c = kw.client().await;
    for k in ["a", "b", "o:c", "sess:x"] {
        let _: () = c.set(k, 1).await.unwrap();
    }
    let mut keys: Vec<String> = c.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "o:c"]);
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 3);
    let k: String = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
    assert!(["a", "b", "o:c"].contains(&k.as_str()), "{k}");
    // One SCAN call covers three keys over two listable backends.
    let (cursor, mut found): (u64, Vec<String>) =
        redis::cmd("SCAN").arg(0).query_async(&mut c).await.unwrap();
    found.sort();
    assert_eq!(
        (cursor, found),
        (0, vec!["a".into(), "b".into(), "o:c".into()])
    );
    // A pattern that only the memcached namespace could match.
    let (cursor, found): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("sess:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((cursor, found.len()), (0, 0));
    let keys: Vec<String> = c.keys("o:*").await.unwrap();
    assert_eq!(keys, ["o:c"]);
    let info: String = redis::cmd("INFO")
        .arg("keyway")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        info.contains("namespace_mcsess:prefix=sess:,backend=mc,type=memcached,listed=no"),
        "{info}"
    );
}

/// /readyz asks the memcached servers themselves: not ready when none
/// answers, ready again when one is back, with which one is down.
#[tokio::test]
async fn readiness_probes_the_memcached_servers() {
    let mut m = MemcachedServer::start();
    let kw = Keyway::with_toml(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         [backends.mc]\ntype = \"memcached\"\nservers = [\"{}\"]\ncommand_timeout_ms = 300\n\
         [[namespaces]]\nname = \"cache\"\nprefix = \"\"\nbackend = \"mc\"\n",
        m.addr()
    ))
    .await;
    let addr = kw.shared.metrics_addr.expect("metrics listener");
    let readyz = || async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    common::until("memcached up", 10, || async {
        readyz()
            .await
            .contains("backend 'mc' (memcached): up (1/1 servers answer)")
    })
    .await;
    m.kill();
    common::until("memcached down", 10, || async {
        let r = readyz().await;
        r.starts_with("HTTP/1.1 503") && r.contains("backend 'mc' (memcached): down (")
    })
    .await;
    m.restart();
    common::until("memcached back", 10, || async {
        readyz().await.starts_with("HTTP/1.1 200")
    })
    .await;
}
