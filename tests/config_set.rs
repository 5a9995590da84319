//! CONFIG SET and CONFIG GET as in Redis: keyway's own parameters and the
//! memory backend's (maxmemory, its policy, the encoding thresholds OBJECT
//! ENCODING follows), with Redis's errors, compared byte for byte with a
//! real redis-server. Its own test binary: the memory backend's settings
//! are the process's, and other tests must not see them change.

mod common;

use common::{Keyway, RedisServer, same_replies, same_replies_words};

#[tokio::test]
async fn config_set_and_get_answer_as_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    same_replies(
        &mut r,
        &mut k,
        &[
            &[b"CONFIG", b"SET", b"timeout", b"10"],
            &[b"CONFIG", b"GET", b"timeout"],
            &[b"CONFIG", b"SET", b"timeout", b"x"],
            &[b"CONFIG", b"SET", b"timeout", b"-1"],
            &[b"CONFIG", b"SET", b"timeout", b"0", b"timeout", b"1"],
            &[b"CONFIG", b"SET", b"foo", b"bar"],
            &[b"CONFIG", b"SET", b"timeout"],
            &[b"CONFIG", b"SET", b"timeout", b"0", b"foo", b"1"],
            &[b"CONFIG", b"SET", b"maxmemory", b"100mb"],
            &[b"CONFIG", b"GET", b"maxmemory"],
            &[b"CONFIG", b"SET", b"maxmemory", b"0"],
            &[b"CONFIG", b"SET", b"maxmemory", b"bad"],
            &[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"],
            &[b"CONFIG", b"GET", b"maxmemory-policy"],
            &[b"CONFIG", b"SET", b"maxmemory-policy", b"bogus"],
            &[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"],
            &[b"CONFIG", b"SET", b"hash-max-listpack-entries", b"2"],
            &[b"CONFIG", b"GET", b"hash-max-listpack-entries"],
            &[b"CONFIG", b"GET", b"hash-max-ziplist-entries"],
            &[b"DEL", b"h"],
            &[b"HSET", b"h", b"a", b"1", b"b", b"2"],
            &[b"OBJECT", b"ENCODING", b"h"],
            &[b"HSET", b"h", b"c", b"3"],
            &[b"OBJECT", b"ENCODING", b"h"],
            &[b"CONFIG", b"SET", b"hash-max-listpack-entries", b"128"],
            &[b"CONFIG", b"SET", b"hash-max-listpack-value", b"3"],
            &[b"HSET", b"h", b"d", b"1234"],
            &[b"OBJECT", b"ENCODING", b"h"],
            &[b"CONFIG", b"SET", b"hash-max-listpack-value", b"64"],
            &[b"CONFIG", b"SET", b"databases", b"4"],
            &[b"CONFIG", b"SET", b"slowlog-max-len", b"5"],
            &[b"CONFIG", b"GET", b"slowlog-max-len"],
            &[b"CONFIG", b"SET", b"slowlog-max-len", b"128"],
            &[
                b"CONFIG",
                b"SET",
                b"client-output-buffer-limit",
                b"normal 0 0 0 pubsub 32mb 8mb 60",
            ],
            &[b"CONFIG", b"GET", b"client-output-buffer-limit"],
            &[
                b"CONFIG",
                b"SET",
                b"client-output-buffer-limit",
                b"bogus 0 0 0",
            ],
            &[
                b"CONFIG",
                b"SET",
                b"client-output-buffer-limit",
                b"normal 0 0",
            ],
            &[b"CONFIG", b"SET", b"save", b""],
            &[b"CONFIG", b"SET", b"appendonly", b"no"],
            &[b"CONFIG", b"RESETSTAT"],
            &[b"CONFIG", b"RESETSTAT", b"x"],
            &[b"CONFIG", b"SET", b"timeout", b"0"],
            &[b"DEL", b"h"],
            &[b"HSET", b"h", b"z", b"1", b"a", b"2", b"m", b"3"],
            &[b"HDEL", b"h", b"a"],
            &[b"HSET", b"h", b"b", b"4"],
            &[b"HGETALL", b"h"],
        ],
    )
    .await;
    // Nodes of stream-node-max-entries entries are what `~` trims whole.
    let mut stream = vec!["CONFIG SET stream-node-max-entries 10".to_string()];
    stream.extend((1..=95).map(|i| format!("XADD v MAXLEN ~ 33 {i}-0 f v")));
    stream.push("XLEN v".into());
    stream.push("CONFIG SET stream-node-max-entries 100".into());
    same_replies_words(&mut r, &mut k, &stream).await;
    // The change is keyway's own: an idle client is now closed after 1 s.
    let mut c = kw.raw().await;
    c.check("CONFIG SET timeout 1", "+OK\r\n").await;
    let mut idle = kw.raw().await;
    idle.check("PING", "+PONG\r\n").await;
    idle.expect_closed().await;
    let mut c = kw.raw().await;
    c.check("CONFIG SET timeout 0", "+OK\r\n").await;
    c.check("CONFIG SET maxmemory 0", "+OK\r\n").await;
}

/// INFO errorstats counts error replies by their first word, and CONFIG
/// RESETSTAT forgets them; the CPU section is the process's own. (Here, as
/// the counts are the process's.)
#[tokio::test]
async fn errorstats_count_and_resetstat_forgets() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("CONFIG RESETSTAT", "+OK\r\n").await;
    c.send(b"NOSUCHCOMMAND\r\nSET s x\r\nLPUSH s y\r\nINFO errorstats\r\n")
        .await;
    c.reply().await;
    c.reply().await;
    c.reply().await;
    let info = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(info.contains("errorstat_ERR:count="), "{info}");
    assert!(info.contains("errorstat_WRONGTYPE:count="), "{info}");
    c.check("CONFIG RESETSTAT", "+OK\r\n").await;
    c.send(b"INFO errorstats\r\n").await;
    let info = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(!info.contains("errorstat_WRONGTYPE"), "{info}");
    c.send(b"INFO cpu\r\n").await;
    let info = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(info.contains("used_cpu_user:"), "{info}");
}
