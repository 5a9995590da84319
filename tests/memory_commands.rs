//! Every memory-backend command of the foundation, with Redis 7's exact replies.

mod common;
use common::Keyway;
use redis::AsyncCommands;

/// Runs (command, exact reply) pairs in order on one connection.
async fn script(steps: &[(&str, &str)]) {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    for (cmd, reply) in steps {
        c.check(cmd, reply).await;
    }
}

#[tokio::test]
async fn strings() {
    script(&[
        ("GET s", "$-1\r\n"),
        ("SET s hello", "+OK\r\n"),
        ("GET s", "$5\r\nhello\r\n"),
        ("SET s world NX", "$-1\r\n"),
        ("SET s world XX GET", "$5\r\nhello\r\n"),
        ("SET new v XX", "$-1\r\n"),
        ("SET s v NX XX", "-ERR syntax error\r\n"),
        ("SET s v EX 10 PX 100", "-ERR syntax error\r\n"),
        ("SET s v EX", "-ERR syntax error\r\n"),
        (
            "SET s v EX 0",
            "-ERR invalid expire time in 'set' command\r\n",
        ),
        (
            "SET s v EX x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "SET s v EX 9223372036854775807",
            "-ERR invalid expire time in 'set' command\r\n",
        ),
        ("SET s v KEEPTTL EX 5", "-ERR syntax error\r\n"),
        ("SETNX s x", ":0\r\n"),
        ("SETNX s2 x", ":1\r\n"),
        ("SETEX e 100 v", "+OK\r\n"),
        ("TTL e", ":100\r\n"),
        ("SET e v2 KEEPTTL", "+OK\r\n"),
        ("TTL e", ":100\r\n"),
        (
            "SETEX e -1 v",
            "-ERR invalid expire time in 'setex' command\r\n",
        ),
        ("PSETEX p 100000 v", "+OK\r\n"),
        ("TTL p", ":100\r\n"),
        ("GETSET s2 y", "$1\r\nx\r\n"),
        ("GETDEL s2", "$1\r\ny\r\n"),
        ("GETDEL s2", "$-1\r\n"),
        ("GETEX e PERSIST", "$2\r\nv2\r\n"),
        ("TTL e", ":-1\r\n"),
        ("GETEX e EX 50", "$2\r\nv2\r\n"),
        ("TTL e", ":50\r\n"),
        ("GETEX e EX 5 PX 5", "-ERR syntax error\r\n"),
        // A missing key is nil before the time is read, as in Redis.
        ("GETEX nosuch EX x", "$-1\r\n"),
        (
            "GETEX e EX x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("MSET a 1 b 2", "+OK\r\n"),
        (
            "MSET a 1 b",
            "-ERR wrong number of arguments for 'mset' command\r\n",
        ),
        ("MGET a nosuch b", "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"),
        ("MSETNX a 3 z 4", ":0\r\n"),
        ("MSETNX y 3 z 4", ":1\r\n"),
        ("APPEND y xx", ":3\r\n"),
        ("APPEND fresh abc", ":3\r\n"),
        ("STRLEN y", ":3\r\n"),
        ("STRLEN nosuch", ":0\r\n"),
        ("INCR n", ":1\r\n"),
        ("INCRBY n -11", ":-10\r\n"),
        ("DECR n", ":-11\r\n"),
        ("DECRBY n 4", ":-15\r\n"),
        ("INCR s", "-ERR value is not an integer or out of range\r\n"),
        (
            "INCRBY n x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("SET big 9223372036854775807", "+OK\r\n"),
        ("INCR big", "-ERR increment or decrement would overflow\r\n"),
        (
            "DECRBY n -9223372036854775808",
            "-ERR decrement would overflow\r\n",
        ),
        ("SET f 10.5", "+OK\r\n"),
        ("INCRBYFLOAT f 0.1", "$4\r\n10.6\r\n"),
        ("INCRBYFLOAT f 5.0e3", "$6\r\n5010.6\r\n"),
        ("INCRBYFLOAT f abc", "-ERR value is not a valid float\r\n"),
        (
            "INCRBYFLOAT f inf",
            "-ERR increment would produce NaN or Infinity\r\n",
        ),
        ("INCRBYFLOAT s 1", "-ERR value is not a valid float\r\n"),
        ("SET r Hello", "+OK\r\n"),
        ("GETRANGE r 0 3", "$4\r\nHell\r\n"),
        ("GETRANGE r -3 -1", "$3\r\nllo\r\n"),
        ("GETRANGE r 0 -100", "$1\r\nH\r\n"),
        ("GETRANGE r 10 20", "$0\r\n\r\n"),
        ("GETRANGE r -1 -5", "$0\r\n\r\n"),
        ("SETRANGE r 6 World", ":11\r\n"),
        ("GET r", "$11\r\nHello\0World\r\n"),
        ("SETRANGE pad 2 x", ":3\r\n"),
        ("GET pad", "$3\r\n\0\0x\r\n"),
        ("SETRANGE empty 5 ", ":0\r\n"),
        ("EXISTS empty", ":0\r\n"),
    ])
    .await;
}

#[tokio::test]
async fn wrong_type_and_arity() {
    script(&[
        ("HSET h f v", ":1\r\n"),
        (
            "GET h",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (
            "APPEND h x",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (
            "SET h x GET",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        ("HGET h f", "$1\r\nv\r\n"),
        ("SET s v", "+OK\r\n"),
        (
            "HGET s f",
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        ("MGET h s", "*2\r\n$-1\r\n$1\r\nv\r\n"),
        (
            "GET",
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            "GET a b",
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            "HSET h f",
            "-ERR wrong number of arguments for 'hset' command\r\n",
        ),
        (
            "HSET h f v g",
            "-ERR wrong number of arguments for 'hset' command\r\n",
        ),
        (
            "NOSUCH a b",
            "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n",
        ),
        // No replicas: none to wait for.
        ("WAIT 0 0", ":0\r\n"),
        ("WAIT 1 -1", "-ERR timeout is negative\r\n"),
        ("PING", "+PONG\r\n"),
    ])
    .await;
}

#[tokio::test]
async fn keys_and_ttls() {
    script(&[
        ("MSET a 1 b 2 c 3", "+OK\r\n"),
        ("EXISTS a a nosuch b", ":3\r\n"),
        ("TOUCH a nosuch", ":1\r\n"),
        ("DEL a a nosuch", ":1\r\n"),
        ("UNLINK b", ":1\r\n"),
        ("TYPE c", "+string\r\n"),
        ("TYPE nosuch", "+none\r\n"),
        ("TTL nosuch", ":-2\r\n"),
        ("TTL c", ":-1\r\n"),
        ("EXPIRE c 100 XX", ":0\r\n"),
        ("EXPIRE c 100 GT", ":0\r\n"),
        ("EXPIRE c 100 NX", ":1\r\n"),
        ("EXPIRE c 50 GT", ":0\r\n"),
        ("EXPIRE c 200 GT", ":1\r\n"),
        ("EXPIRE c 300 LT", ":0\r\n"),
        ("EXPIRE c 150 LT", ":1\r\n"),
        ("TTL c", ":150\r\n"),
        (
            "EXPIRE c 10 NX XX",
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
        ),
        (
            "EXPIRE c 10 GT LT",
            "-ERR GT and LT options at the same time are not compatible\r\n",
        ),
        ("EXPIRE c 10 FOO", "-ERR Unsupported option FOO\r\n"),
        (
            "EXPIRE c x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "EXPIRE c 9223372036854775807",
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        ("EXPIRE nosuch 10", ":0\r\n"),
        ("PEXPIRE c 100000", ":1\r\n"),
        ("TTL c", ":100\r\n"),
        ("PERSIST c", ":1\r\n"),
        ("PERSIST c", ":0\r\n"),
        ("EXPIREAT c 99999999999", ":1\r\n"),
        ("EXPIRETIME c", ":99999999999\r\n"),
        ("PEXPIRETIME c", ":99999999999000\r\n"),
        ("PEXPIREAT c 99999999999001", ":1\r\n"),
        ("EXPIRETIME nosuch", ":-2\r\n"),
        ("EXPIRE c -1", ":1\r\n"),
        ("EXISTS c", ":0\r\n"),
        ("SET x 1 EX 100", "+OK\r\n"),
        ("RENAME x y", "+OK\r\n"),
        ("TTL y", ":100\r\n"),
        ("GET x", "$-1\r\n"),
        ("RENAME x y", "-ERR no such key\r\n"),
        ("SET z 2", "+OK\r\n"),
        ("RENAMENX y z", ":0\r\n"),
        ("RENAMENX y w", ":1\r\n"),
        ("RENAME w w", "+OK\r\n"),
        ("DBSIZE", ":2\r\n"),
        ("RANDOMKEY", "$1\r\n"),
    ])
    .await;
}

#[tokio::test]
async fn keyspace_walks() {
    let kw = Keyway::start().await;
    let mut c = kw.client().await;
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("user:{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg("user:h")
        .arg("f")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("user:4?")
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        (40..50).map(|i| format!("user:{i}")).collect::<Vec<_>>()
    );

    // SCAN returns every key exactly once.
    let mut seen = std::collections::HashSet::new();
    for k in common::scan_all(&mut c, 50).await {
        assert!(seen.insert(k.clone()), "{k} returned twice");
    }
    assert_eq!(seen.len(), 501);
    let (_, hashes): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(10_000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(hashes, vec!["user:h".to_string()]);
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 501);
    let k: String = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
    assert!(k.starts_with("user:"));
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 0);

    let mut raw = kw.raw().await;
    raw.check("SCAN x", "-ERR invalid cursor\r\n").await;
    raw.check("SCAN 0 COUNT 0", "-ERR syntax error\r\n").await;
    raw.check("SCAN 0 BOGUS 1", "-ERR syntax error\r\n").await;
    raw.check("FLUSHDB LATER", "-ERR syntax error\r\n").await;
    raw.check("RANDOMKEY", "$-1\r\n").await;
    raw.check("KEYS *", "*0\r\n").await;
}

#[tokio::test]
async fn hashes() {
    script(&[
        ("HSET h a 1 b 2", ":2\r\n"),
        ("HSET h a 3 c 4", ":1\r\n"),
        ("HMSET h d 5", "+OK\r\n"),
        ("HSETNX h a x", ":0\r\n"),
        ("HSETNX h e x", ":1\r\n"),
        ("HGET h a", "$1\r\n3\r\n"),
        ("HGET h nosuch", "$-1\r\n"),
        ("HGET nosuch a", "$-1\r\n"),
        ("HMGET h a nosuch b", "*3\r\n$1\r\n3\r\n$-1\r\n$1\r\n2\r\n"),
        ("HLEN h", ":5\r\n"),
        ("HEXISTS h a", ":1\r\n"),
        ("HEXISTS h z", ":0\r\n"),
        ("HSTRLEN h e", ":1\r\n"),
        ("HDEL h a b nosuch", ":2\r\n"),
        ("HINCRBY h n 5", ":5\r\n"),
        ("HINCRBY h n -7", ":-2\r\n"),
        ("HINCRBY h e 1", "-ERR hash value is not an integer\r\n"),
        (
            "HINCRBY h n x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("HINCRBYFLOAT h fl 1.5", "$3\r\n1.5\r\n"),
        ("HINCRBYFLOAT h e 1", "-ERR hash value is not a float\r\n"),
        ("HSET one f v", ":1\r\n"),
        ("HGETALL one", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"),
        ("HKEYS one", "*1\r\n$1\r\nf\r\n"),
        ("HVALS one", "*1\r\n$1\r\nv\r\n"),
        ("HRANDFIELD one", "$1\r\nf\r\n"),
        ("HRANDFIELD one 5", "*1\r\n$1\r\nf\r\n"),
        (
            "HRANDFIELD one -3",
            "*3\r\n$1\r\nf\r\n$1\r\nf\r\n$1\r\nf\r\n",
        ),
        (
            "HRANDFIELD one 1 WITHVALUES",
            "*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
        ("HRANDFIELD nosuch", "$-1\r\n"),
        ("HRANDFIELD nosuch 2", "*0\r\n"),
        (
            "HSCAN one 0",
            "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
        ("HSCAN one 0 MATCH x*", "*2\r\n$1\r\n0\r\n*0\r\n"),
        ("HDEL one f", ":1\r\n"),
        ("EXISTS one", ":0\r\n"),
        ("HGETALL one", "*0\r\n"),
    ])
    .await;
}

#[tokio::test]
async fn large_hash_scans_every_field_once() {
    let kw = Keyway::start().await;
    let mut c = kw.client().await;
    let fields: Vec<(String, i32)> = (0..1000).map(|i| (format!("f{i}"), i)).collect();
    let _: () = redis::cmd("HSET")
        .arg("big")
        .arg(&fields)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(64)
            .query_async(&mut c)
            .await
            .unwrap();
        for pair in batch.chunks(2) {
            assert!(seen.insert(pair[0].clone()));
            assert_eq!(pair[1], pair[0][1..]);
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 1000);
}

#[tokio::test]
async fn pubsub() {
    let kw = Keyway::start().await;
    let mut sub = kw.raw().await;
    let mut c = kw.raw().await;
    sub.check(
        "SUBSCRIBE news",
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    sub.check(
        "PSUBSCRIBE n*",
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n",
    )
    .await;
    c.check("PUBLISH news hi", ":2\r\n").await;
    sub.expect("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n")
        .await;
    sub.expect("*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n")
        .await;
    c.check(
        "PUBSUB NUMSUB news other",
        "*4\r\n$4\r\nnews\r\n:1\r\n$5\r\nother\r\n:0\r\n",
    )
    .await;
    c.check("PUBSUB NUMPAT", ":1\r\n").await;
    c.check("PUBSUB CHANNELS", "*1\r\n$4\r\nnews\r\n").await;
    sub.check("RESET", "+RESET\r\n").await;
    c.check("PUBLISH news again", ":0\r\n").await;
}

/// MEMORY USAGE key SAMPLES n, as an integer.
async fn usage(c: &mut redis::aio::MultiplexedConnection, key: &str, samples: u32) -> i64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(samples)
        .query_async(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn memory_usage_counts_what_a_key_holds() {
    let kw = Keyway::start().await;
    let mut raw = kw.raw().await;
    for (cmd, reply) in [
        ("MEMORY USAGE nosuch", "$-1\r\n"),
        (
            "MEMORY USAGE",
            "-ERR wrong number of arguments for 'memory|usage' command\r\n",
        ),
        ("MEMORY USAGE a b", "-ERR syntax error\r\n"),
        ("MEMORY USAGE a SAMPLES -1", "-ERR syntax error\r\n"),
        (
            "MEMORY USAGE a SAMPLES x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "MEMORY NOSUCH",
            "-ERR unknown subcommand 'NOSUCH'. Try MEMORY HELP.\r\n",
        ),
    ] {
        raw.check(cmd, reply).await;
    }
    let mut c = kw.client().await;
    let _: () = c.set("short", "x".repeat(64)).await.unwrap();
    let _: () = c.set("longer", "x".repeat(164)).await.unwrap();
    // The string's bytes are counted exactly, and so is the key's.
    let diff = usage(&mut c, "longer", 5).await - usage(&mut c, "short", 5).await;
    assert_eq!(diff, 101);
    // A collection grows with its elements. Sampling 5 is exact here, as
    // every element is the same size.
    let items = |r: std::ops::Range<u32>| r.map(|i| format!("{i:08}")).collect::<Vec<_>>();
    let _: () = c.rpush("list", items(0..100)).await.unwrap();
    let hundred = usage(&mut c, "list", 0).await;
    let _: () = c.rpush("list", items(100..200)).await.unwrap();
    let two_hundred = usage(&mut c, "list", 0).await;
    assert!(two_hundred >= hundred + 100 * 8, "{hundred} {two_hundred}");
    assert_eq!(usage(&mut c, "list", 5).await, two_hundred);
}
