//! What a hostile or buggy client sends cannot crash, stall or balloon
//! keyway: each case found by hand and by fuzzing gets Redis's reply (often
//! compared with a real redis-server) and leaves keyway serving others.

mod common;

use std::time::Duration;

use common::{Keyway, Raw, RedisServer, resp};

/// Sends `words` to both servers and checks that the replies are the same
/// bytes; returns keyway's.
async fn same(redis: &mut Raw, keyway: &mut Raw, words: &[&str]) -> String {
    redis.send(&resp(words)).await;
    keyway.send(&resp(words)).await;
    let want = redis.reply().await;
    let got = keyway.reply().await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "{words:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

async fn alive(kw: &Keyway) {
    let mut c = kw.raw().await;
    c.check("PING", "+PONG\r\n").await;
}

#[tokio::test]
async fn an_inline_nul_byte_waits_as_in_redis() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    // Redis finds no end to the line (its strchr stops at the NUL): no
    // reply, no memory, and other clients go on.
    c.send(b"PING\x00\r\n").await;
    assert_eq!(c.read_for(Duration::from_millis(300)).await, "");
    alive(&kw).await;
    // Past 64 KB the client is refused, as by Redis.
    c.send(&vec![b'x'; 70_000]).await;
    c.expect("-ERR Protocol error: too big inline request\r\n")
        .await;
    c.expect_closed().await;

    // Before AUTH too.
    let kw = Keyway::with_toml(
        "[server]\npassword = \"pw\"\n[backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    let mut c = kw.raw().await;
    c.send(b"AUTH\x00\r\n").await;
    assert_eq!(c.read_for(Duration::from_millis(300)).await, "");
    let mut other = kw.raw().await;
    other.check("AUTH pw", "+OK\r\n").await;
    other.check("PING", "+PONG\r\n").await;
}

#[tokio::test]
async fn key_counts_never_size_an_allocation() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut r = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap());
    let mut k = kw.raw().await;
    let before = keyway::wire::alloc::allocated();
    for cmd in [
        "EVAL return 4294967296 k",
        "EVAL return 9223372036854775807 k",
        "EVALSHA 0000000000000000000000000000000000000000 4294967296 k",
        "EVAL_RO return 4294967296 k",
        "ZUNION 100000000 k",
        "ZUNION 9223372036854775807 k",
        "ZINTER 9223372036854775807 k",
        "ZDIFF 9223372036854775807 k",
        "ZUNIONSTORE d 9223372036854775807 k",
        "ZINTERSTORE d 100000000 k",
        "ZDIFFSTORE d 100000000 k",
        "SINTERCARD 9223372036854775807 k",
        "LMPOP 9223372036854775807 k LEFT",
        "ZMPOP 9223372036854775807 k MIN",
        "BLMPOP 0 9223372036854775807 k LEFT",
        "BZMPOP 0 9223372036854775807 k MIN",
        "ZUNION -9223372036854775808 k",
        "SINTERCARD -1 k",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        same(&mut r, &mut k, &words).await;
    }
    let grew = keyway::wire::alloc::allocated().saturating_sub(before);
    assert!(grew < 64 << 20, "allocated {grew} bytes");
    alive(&kw).await;
}

#[tokio::test]
async fn random_picks_check_counts_as_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut r = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap());
    let mut k = kw.raw().await;
    for setup in ["SADD s a b c", "HSET h a 1 b 2", "ZADD z 1 a 2 b"] {
        let words: Vec<&str> = setup.split(' ').collect();
        same(&mut r, &mut k, &words).await;
    }
    for cmd in [
        "SRANDMEMBER s -9223372036854775808",
        "SRANDMEMBER nokey -9223372036854775808",
        "HRANDFIELD h -9223372036854775808",
        "HRANDFIELD h -9223372036854775808 WITHVALUES",
        "HRANDFIELD h 4611686018427387904 WITHVALUES",
        "HRANDFIELD h -4611686018427387904 WITHVALUES",
        "HRANDFIELD h 9223372036854775807 WITHVALUES",
        "ZRANDMEMBER z -9223372036854775808",
        "ZRANDMEMBER z -9223372036854775807 WITHSCORES",
        "ZRANDMEMBER z 4611686018427387904 WITHSCORES",
        "SRANDMEMBER nokey -5",
        "HRANDFIELD nokey -5",
        "ZRANDMEMBER nokey -5 WITHSCORES",
        "SRANDMEMBER s x",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        same(&mut r, &mut k, &words).await;
    }
    // A repeated pick of hundreds of millions of elements would take
    // gigabytes: refused, where Redis would try (and can die of it).
    for cmd in [
        "SRANDMEMBER s -200000000",
        "HRANDFIELD h -200000000",
        "HRANDFIELD h -200000000 WITHVALUES",
        "ZRANDMEMBER z -200000000 WITHSCORES",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        k.send(&resp(&words)).await;
        let reply = String::from_utf8_lossy(&k.reply().await).into_owned();
        assert!(
            reply.starts_with("-ERR a reply of 200000000 elements"),
            "{cmd}: {reply}"
        );
    }
    // Below the bound they are served.
    k.send(&resp(&["SRANDMEMBER", "s", "-1000"])).await;
    assert!(k.reply().await.starts_with(b"*1000\r\n"));
    alive(&kw).await;
}

#[tokio::test]
async fn a_corrupt_hyperloglog_is_refused_as_by_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut r = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap());
    let mut k = kw.raw().await;
    for cmd in [
        "PFADD hll a b c",
        "GET hll",
        "PFCOUNT hll",
        "GET hll",
        "SETRANGE hll 4 x",
        "PFCOUNT hll",
        "PFADD hll d",
        "PFMERGE d hll",
        // A body that no longer covers the registers.
        "PFADD h2 a b c d e f g",
        "APPEND h2 xx",
        "PFCOUNT h2",
        "PFCOUNT h2 hll",
        "PFADD h2 zz",
        // Dense after many elements; a register byte rewritten.
        "SET s notanhll",
        "PFCOUNT s",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        same(&mut r, &mut k, &words).await;
    }
    let mut add = vec!["PFADD", "big"];
    let elements: Vec<String> = (0..3000).map(|i| format!("e{i}")).collect();
    add.extend(elements.iter().map(String::as_str));
    same(&mut r, &mut k, &add).await;
    for cmd in [
        "STRLEN big",
        "GET big",
        "PFCOUNT big",
        "SETRANGE big 100 ~~~~",
        "PFCOUNT big",
        "PFMERGE m big hll",
        "PFMERGE m big",
        "GET m",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        same(&mut r, &mut k, &words).await;
    }
    alive(&kw).await;
}

#[tokio::test]
async fn a_panic_fails_one_client_and_frees_its_slot() {
    let kw = Keyway::with_toml(
        "[server]\nmax_clients = 3\nenable_debug_command = \"yes\"\n\
         [backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    for _ in 0..10 {
        let mut c = kw.raw().await;
        c.send(&resp(&["DEBUG", "PANIC"])).await;
        c.expect("-ERR internal error\r\n").await;
        c.expect_closed().await;
    }
    // Every slot came back: no client is locked out, and INFO counts one.
    let mut c = kw.raw().await;
    c.send(&resp(&["SET", "k", "v"])).await;
    c.expect("+OK\r\n").await;
    common::until("the panicked clients to be gone", 5, || async {
        kw.shared
            .stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    c.send(&resp(&["INFO", "keyway"])).await;
    let info = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(info.contains("internal_errors:"), "{info}");
    let metrics = keyway::wire::metrics::metrics().encode();
    assert!(
        metrics.contains("keyway_internal_errors_total{command=\"debug\"} 10"),
        "{metrics}"
    );
    // DEBUG is refused unless enabled, with Redis's text.
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.send(&resp(&["DEBUG", "PANIC"])).await;
    let reply = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(
        reply.starts_with("-ERR DEBUG command not allowed."),
        "{reply}"
    );
}

#[tokio::test]
async fn unauthenticated_clients_are_held_to_redis_bounds() {
    let kw = Keyway::with_toml(
        "[server]\npassword = \"pw\"\n[backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    // A huge bulk announced before AUTH: refused at its header.
    let mut c = kw.raw().await;
    c.send(b"*2\r\n$4\r\nAUTH\r\n$535822336\r\n").await;
    c.expect("-ERR Protocol error: unauthenticated bulk length\r\n")
        .await;
    c.expect_closed().await;
    // Too many arguments.
    let mut c = kw.raw().await;
    c.send(b"*11\r\n").await;
    c.expect("-ERR Protocol error: unauthenticated multibulk length\r\n")
        .await;
    c.expect_closed().await;
    // At the bounds (10 arguments, 16 KB each) a request is answered.
    let mut c = kw.raw().await;
    let big = "p".repeat(16 * 1024);
    let mut words = vec!["AUTH"];
    words.extend(std::iter::repeat_n(big.as_str(), 9));
    c.send(&resp(&words)).await;
    c.expect("-ERR syntax error\r\n").await;
    // AUTH in the same write as a large command: the command is read
    // with the authenticated bounds, as Redis reads it after AUTH ran.
    let value = "v".repeat(100_000);
    let mut both = resp(&["AUTH", "pw"]);
    both.extend(resp(&["SET", "k", &value]));
    c.send(&both).await;
    c.expect("+OK\r\n+OK\r\n").await;
    c.send(&resp(&["STRLEN", "k"])).await;
    c.expect(":100000\r\n").await;
    // The limits are in the config, shown by CONFIG GET.
    c.send(&resp(&["CONFIG", "GET", "unauthenticated-*"])).await;
    c.expect(
        "*4\r\n$24\r\nunauthenticated-max-args\r\n$2\r\n10\r\n\
         $28\r\nunauthenticated-max-bulk-len\r\n$5\r\n16384\r\n",
    )
    .await;
}

#[tokio::test]
async fn idle_clients_are_closed_after_timeout() {
    let kw = Keyway::with_toml(
        "[server]\ntimeout = 1\n[backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    let mut silent = kw.raw().await;
    let mut talker = kw.raw().await;
    talker.check("PING", "+PONG\r\n").await;
    // A half-sent request does not count as activity.
    let mut half = kw.raw().await;
    half.send(b"*3\r\n$3\r\nSET\r\n").await;
    let mut sub = kw.raw().await;
    sub.send(&resp(&["SUBSCRIBE", "ch"])).await;
    sub.reply().await;
    for c in [&mut silent, &mut talker, &mut half] {
        c.expect_closed().await;
    }
    // Subscribers are never idle, as in Redis.
    sub.send(&resp(&["PING"])).await;
    sub.expect("*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    let mut c = kw.raw().await;
    c.check("CONFIG GET timeout", "*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n")
        .await;
}
