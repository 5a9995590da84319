//! The memory backend's lists, sets, sorted sets, bitmaps and HyperLogLogs,
//! checked against a real redis-server: the same commands go to both and
//! the replies must be byte for byte the same.

mod common;

use common::{Keyway, Raw, RedisServer, resp};

/// Splits a command line on spaces; `''` is an empty argument.
fn words(cmd: &str) -> Vec<&str> {
    cmd.split(' ')
        .map(|w| if w == "''" { "" } else { w })
        .collect()
}

/// Sorts the elements of a flat array reply, for commands whose order is
/// unspecified (SMEMBERS, SUNION...).
fn sorted(reply: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let Some(head) = lines.next() else {
        return reply.to_vec();
    };
    let rest: Vec<&str> = lines.collect();
    let mut items: Vec<String> = rest.chunks(2).map(|c| c.join("\r\n")).collect();
    items.sort();
    format!("{head}\r\n{}", items.join("\r\n")).into_bytes()
}

struct Pair {
    redis: Raw,
    keyway: Raw,
    _server: RedisServer,
    _kw: Keyway,
}

async fn pair() -> Pair {
    let server = RedisServer::start();
    let kw = Keyway::start().await;
    let redis = Raw(tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap());
    let keyway = kw.raw().await;
    Pair {
        redis,
        keyway,
        _server: server,
        _kw: kw,
    }
}

/// A reply with XINFO's `seen-time` values (a server's clock, in ms)
/// blanked.
fn clockless(reply: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply);
    let mut out = String::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("seen-time\r\n:") {
        let (head, tail) = rest.split_at(at + "seen-time\r\n:".len());
        out.push_str(head);
        out.push('T');
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out.into_bytes()
}

/// keyway's memory backend answers as the Redis 7.2 it reports: its
/// consumers' `active-time` in XINFO STREAM FULL is left out to compare
/// with redis-server 7.0.
fn as_7_0(reply: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply);
    if !text.contains("active-time") {
        return reply.to_vec();
    }
    let mut out = String::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("$11\r\nactive-time\r\n:") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "$11\r\nactive-time\r\n:".len()..];
        let end = tail.find("\r\n").map_or(tail.len(), |e| e + 2);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out.replace("*10\r\n$4\r\nname\r\n", "*8\r\n$4\r\nname\r\n")
        .into_bytes()
}

/// Runs each command on both; a leading `~` compares the reply sorted, a
/// leading `!` does not compare it (HELLO, whose server fields differ).
async fn same(steps: &[&str]) {
    let mut p = pair().await;
    for step in steps {
        let (unordered, cmd) = match step.strip_prefix('~') {
            Some(c) => (true, c),
            None => (false, *step),
        };
        let (compare, cmd) = match cmd.strip_prefix('!') {
            Some(c) => (false, c),
            None => (true, cmd),
        };
        let req = resp(&words(cmd));
        p.redis.send(&req).await;
        p.keyway.send(&req).await;
        let (want, got) = (p.redis.reply().await, p.keyway.reply().await);
        if !compare {
            continue;
        }
        let (want, got) = if unordered {
            (sorted(&want), sorted(&got))
        } else {
            (want, got)
        };
        // A consumer's seen-time is each server's own clock.
        let (want, got) = (clockless(&want), clockless(&as_7_0(&got)));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{cmd}"
        );
    }
}

#[tokio::test]
async fn lists_answer_as_redis() {
    same(&[
        "LPUSH l a b c",
        "RPUSH l d e",
        "LRANGE l 0 -1",
        "LRANGE l -2 100",
        "LRANGE l 3 1",
        "LRANGE nope 0 -1",
        "LLEN l",
        "LLEN nope",
        "LINDEX l 0",
        "LINDEX l -1",
        "LINDEX l 99",
        "LPUSHX nope a",
        "RPUSHX l f",
        "LPOP l",
        "RPOP l",
        "LPOP l 2",
        "LPOP l 0",
        "LPOP nope 2",
        "LPOP nope",
        "LPOP l -1",
        "LPOP l 1 2",
        "RPUSH m x y x z x",
        "LREM m 2 x",
        "LRANGE m 0 -1",
        "RPUSH m x x",
        "LREM m -1 x",
        "LREM m 0 x",
        "LRANGE m 0 -1",
        "LSET m 0 Y",
        "LSET m 9 Y",
        "LSET nope 0 Y",
        "LINSERT m BEFORE Y w",
        "LINSERT m AFTER nothere w",
        "LINSERT nope AFTER a b",
        "LINSERT m MIDDLE Y w",
        "LRANGE m 0 -1",
        "RPUSH t 0 1 2 3 4 5 6",
        "LTRIM t 1 -2",
        "LRANGE t 0 -1",
        "LTRIM t 5 1",
        "EXISTS t",
        "RPUSH p a b c a b c a",
        "LPOS p a",
        "LPOS p a RANK 2",
        "LPOS p a RANK -1",
        "LPOS p a COUNT 0",
        "LPOS p a COUNT 2 RANK -1",
        "LPOS p a MAXLEN 3 COUNT 0",
        "LPOS p z",
        "LPOS p z COUNT 1",
        "LPOS p a RANK 0",
        "LPOS p a COUNT -1",
        "LPOS p a MAXLEN -1",
        "RPUSH src 1 2 3",
        "LMOVE src dst RIGHT LEFT",
        "LMOVE src dst LEFT RIGHT",
        "LMOVE src src LEFT RIGHT",
        "LRANGE src 0 -1",
        "LRANGE dst 0 -1",
        "RPOPLPUSH dst src",
        "RPOPLPUSH nope src",
        "LMOVE src dst UP LEFT",
        "LMPOP 2 nope src LEFT",
        "LMPOP 2 nope src RIGHT COUNT 10",
        "LMPOP 1 nope LEFT",
        "LMPOP 0 src LEFT",
        "LMPOP 1 src LEFT COUNT 0",
        "SET s v",
        "LPUSH s a",
        "LRANGE s 0 1",
        "LMOVE l s LEFT LEFT",
        "TYPE m",
    ])
    .await;
}

#[tokio::test]
async fn sets_answer_as_redis() {
    same(&[
        "SADD s a b c",
        "SADD s a d",
        "SCARD s",
        "SCARD nope",
        "SISMEMBER s a",
        "SISMEMBER s z",
        "SMISMEMBER s a z b",
        "~SMEMBERS s",
        "SMEMBERS nope",
        "SREM s a z",
        "SREM nope a",
        "SADD t c d e",
        "~SINTER s t",
        "~SUNION s t",
        "~SDIFF s t",
        "SINTER s nope",
        "~SDIFF s nope",
        "SINTERSTORE d s t",
        "~SMEMBERS d",
        "SUNIONSTORE d s t",
        "SDIFFSTORE d s t",
        "SINTERSTORE d s nope",
        "EXISTS d",
        "SINTERCARD 2 s t",
        "SINTERCARD 2 s t LIMIT 1",
        "SINTERCARD 0 s",
        "SINTERCARD 3 s t",
        "SINTERCARD 2 s t LIMIT -1",
        "SMOVE s t b",
        "SMOVE s t nothere",
        "SMOVE nope t a",
        "SRANDMEMBER nope",
        "SRANDMEMBER nope 3",
        "SRANDMEMBER s 0",
        "SPOP nope",
        "SPOP nope 2",
        "SPOP s -1",
        "SET str v",
        "SADD str a",
        "SINTER s str",
        "SMOVE s str c",
        "~KEYS *",
        "TYPE t",
        "SSCAN nope 0",
        "SADD one x",
        "SSCAN one 0",
        "SSCAN one 0 MATCH y*",
        "SPOP one",
        "EXISTS one",
    ])
    .await;
}

#[tokio::test]
async fn blocked_clients_are_served_in_order() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("BLPOP k -1", "-ERR timeout is negative\r\n").await;
    c.check(
        "BLPOP k abc",
        "-ERR timeout is not a float or out of range\r\n",
    )
    .await;
    c.check("BLPOP k 0.05", "*-1\r\n").await;
    // A null array, as redis-server 7.0 times BLMOVE out too.
    c.check("BLMOVE k d LEFT RIGHT 0.05", "*-1\r\n").await;
    c.check("RPUSH ready x", ":1\r\n").await;
    c.check("BRPOP nope ready 0", "*2\r\n$5\r\nready\r\n$1\r\nx\r\n")
        .await;

    // Three clients block on the same key, in order; a fourth goes away.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let mut w = kw.raw().await;
        w.send(&resp(&["BLPOP", "q", "0"])).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        waiting.push(w);
    }
    let mut gone = kw.raw().await;
    gone.send(&resp(&["BLPOP", "q", "0"])).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    drop(gone);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    c.check("RPUSH q 1 2 3 4", ":4\r\n").await;
    for (i, w) in waiting.iter_mut().enumerate() {
        w.expect(&format!("*2\r\n$1\r\nq\r\n$1\r\n{}\r\n", i + 1))
            .await;
    }
    // The client that left took nothing.
    c.check("LRANGE q 0 -1", "*1\r\n$1\r\n4\r\n").await;

    // A move wakes whoever waits on its destination.
    let mut on_dst = kw.raw().await;
    on_dst.send(&resp(&["BRPOP", "dst", "5"])).await;
    let mut mover = kw.raw().await;
    mover
        .send(&resp(&["BLMOVE", "src", "dst", "LEFT", "LEFT", "5"]))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    c.check("RPUSH src job", ":1\r\n").await;
    mover.expect("$3\r\njob\r\n").await;
    on_dst.expect("*2\r\n$3\r\ndst\r\n$3\r\njob\r\n").await;
    c.check("EXISTS src dst", ":0\r\n").await;

    // Sorted sets wake their waiters too.
    let mut z = kw.raw().await;
    z.send(&resp(&["BZPOPMAX", "zq", "5"])).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    c.check("ZADD zq 1 a 2 b", ":2\r\n").await;
    z.expect("*3\r\n$2\r\nzq\r\n$1\r\nb\r\n$1\r\n2\r\n").await;
}

#[tokio::test]
async fn sorted_sets_answer_as_redis() {
    same(&[
        "ZADD z 1 a 2 b 3 c",
        "ZADD z 1.5 a 4 d",
        "ZADD z NX 10 a 5 e",
        "ZADD z XX CH 2.5 b 9 f",
        "ZADD z GT CH 1 c 7 d",
        "ZADD z LT CH 0.5 c 9 d",
        "ZADD z INCR 2 a",
        "ZADD z NX INCR 1 a",
        "ZADD z XX NX 1 a",
        "ZADD z GT LT 1 a",
        "ZADD z INCR 1 a 2 b",
        "ZADD z 1 a 2",
        "ZADD z nan a",
        "ZADD z abc a",
        "ZADD z +inf top -inf bottom",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZRANGE z 1 3",
        "ZRANGE z -2 -1 REV",
        "ZRANGE z (1 3 BYSCORE WITHSCORES",
        "ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2",
        "ZRANGE z 0 -1 BYSCORE BYSCORE",
        "ZRANGE z [a [c BYSCORE BYLEX",
        "ZRANGE z 0 -1 REV REV",
        "ZRANGE z 0 -1 LIMIT 1 1",
        "ZRANGE z - + BYLEX WITHSCORES",
        "ZRANGEBYSCORE z -inf +inf LIMIT 2 3 WITHSCORES",
        "ZRANGEBYSCORE z (0.5 (4",
        "ZRANGEBYSCORE z x 1",
        "ZREVRANGEBYSCORE z 4 1",
        "ZREVRANGE z 0 1 WITHSCORES",
        "ZCOUNT z -inf +inf",
        "ZCOUNT z (1 2.5",
        "ZCARD z",
        "ZCARD nope",
        "ZSCORE z a",
        "ZSCORE z nope",
        "ZMSCORE z a nope top",
        "ZINCRBY z 1.25 b",
        "ZINCRBY z 1 newm",
        "ZRANK z b",
        "ZREVRANK z b",
        "ZRANK z nope",
        "ZREM z newm nope",
        "ZPOPMIN z",
        "ZPOPMAX z 2",
        "ZPOPMIN nope",
        "ZPOPMIN z -1",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZADD lex 0 a 0 b 0 c 0 d 0 e",
        "ZRANGEBYLEX lex [b (e",
        "ZRANGEBYLEX lex - + LIMIT 1 2",
        "ZREVRANGEBYLEX lex + [c",
        "ZRANGEBYLEX lex b c",
        "ZLEXCOUNT lex (a [d",
        "ZREMRANGEBYLEX lex [d +",
        "ZREMRANGEBYRANK lex 0 0",
        "ZRANGE lex 0 -1",
        "ZADD r 1 a 2 b 3 c 4 d",
        "ZREMRANGEBYSCORE r (1 3",
        "ZRANGE r 0 -1",
        "ZADD u1 1 a 2 b",
        "ZADD u2 3 b 4 c",
        "SADD plain b c z",
        "ZUNIONSTORE out 2 u1 u2",
        "ZRANGE out 0 -1 WITHSCORES",
        "ZUNIONSTORE out 2 u1 u2 WEIGHTS 2 0.5 AGGREGATE MAX",
        "ZRANGE out 0 -1 WITHSCORES",
        "ZINTERSTORE out 3 u1 u2 plain",
        "ZRANGE out 0 -1 WITHSCORES",
        "ZINTERSTORE out 2 u1 u2 AGGREGATE MIN",
        "ZRANGE out 0 -1 WITHSCORES",
        "ZDIFFSTORE out 2 u1 u2",
        "ZRANGE out 0 -1 WITHSCORES",
        "ZUNION 2 u1 plain WITHSCORES",
        "ZINTER 2 u1 u2",
        "ZDIFF 2 u2 u1 WITHSCORES",
        "ZINTERCARD 2 u1 u2",
        "ZUNIONSTORE out 0 u1",
        "ZUNIONSTORE out 2 u1 u2 WEIGHTS 1 x",
        "ZINTERSTORE out 2 u1 nope",
        "EXISTS out",
        "ZRANGESTORE dst u2 0 -1 REV",
        "ZRANGE dst 0 -1 WITHSCORES",
        "ZMPOP 2 nope u1 MIN COUNT 5",
        "ZMPOP 1 u2 MAX",
        "ZMPOP 1 nope MAX",
        "ZMPOP 0 u2 MAX",
        "BZPOPMIN nope u2 0.05",
        "BZPOPMAX nope 0.05",
        "ZRANDMEMBER nope",
        "ZRANDMEMBER nope 2",
        "ZADD one 2.5 only",
        "ZRANDMEMBER one 1 WITHSCORES",
        "ZSCAN one 0",
        "SET str v",
        "ZADD str 1 a",
        "ZRANGE str 0 -1",
        "ZUNIONSTORE out 1 str",
        "TYPE one",
    ])
    .await;
}

#[tokio::test]
async fn resp3_replies_match_redis() {
    same(&[
        "!HELLO 3",
        "ZADD z 1 a 2.5 b 3 c",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZRANGE z 0 -1",
        "ZSCORE z b",
        "ZMSCORE z a nope",
        "ZPOPMIN z",
        "ZADD z 1 a",
        "ZPOPMAX z 2",
        "ZADD z 1 a 2 b",
        "ZMPOP 1 z MIN COUNT 2",
        "ZINCRBY z 1.5 q",
        "ZUNION 1 z WITHSCORES",
        "SADD s x",
        "SMEMBERS s",
        "SPOP nope 1",
        "LPOP nope 1",
        "BLPOP nope 0.05",
        "RPUSH l a",
        "BLPOP l 1",
        "HSET h f v",
        "HGETALL h",
        // A map from each key to its entries.
        "XADD x 1-0 a 1",
        "XREAD STREAMS x nope 0 0",
        "XGROUP CREATE x g 0",
        "XREADGROUP GROUP g c STREAMS x >",
        "XINFO STREAM x",
        "XINFO GROUPS x",
    ])
    .await;
}

#[tokio::test]
async fn bitmaps_and_hyperloglogs_answer_as_redis() {
    same(&[
        "SETBIT b 7 1",
        "SETBIT b 7 0",
        "SETBIT b 100 1",
        "SETBIT b 3 1",
        "GETBIT b 100",
        "GETBIT b 101",
        "GETBIT nope 5",
        "SETBIT b -1 1",
        "SETBIT b 4294967296 1",
        "SETBIT b 1 2",
        "GET b",
        "STRLEN b",
        "SET s foobar",
        "BITCOUNT s",
        "BITCOUNT s 0 0",
        "BITCOUNT s 1 1",
        "BITCOUNT s -2 -1",
        "BITCOUNT s 5 30 BIT",
        "BITCOUNT s 0",
        "BITCOUNT s 0 1 NIBBLE",
        "BITCOUNT nope",
        "SET z \\xff\\xf0\\x00",
        "BITPOS s 1",
        "BITPOS s 0",
        "BITPOS s 1 2",
        "BITPOS s 1 2 -1 BYTE",
        "BITPOS s 0 8 15 BIT",
        "BITPOS nope 1",
        "BITPOS nope 0",
        "BITPOS s 2",
        "SET ones \\xff",
        "SETBIT full 0 1",
        "SETBIT full 1 1",
        "SETBIT full 2 1",
        "SETBIT full 3 1",
        "SETBIT full 4 1",
        "SETBIT full 5 1",
        "SETBIT full 6 1",
        "SETBIT full 7 1",
        "BITPOS full 0",
        "BITPOS full 0 0 0",
        "SET x abc",
        "SET y az",
        "BITOP AND d x y",
        "GET d",
        "BITOP OR d x y",
        "GET d",
        "BITOP XOR d x y nope",
        "GET d",
        "BITOP NOT d x",
        "GET d",
        "BITOP NOT d x y",
        "BITOP NAND d x y",
        "BITOP AND d nope1 nope2",
        "EXISTS d",
        "LPUSH l a",
        "BITCOUNT l",
        "PFADD h a b c d e f g",
        "PFADD h a b",
        "PFADD h",
        "PFADD new",
        "PFCOUNT h",
        "PFCOUNT nope",
        "PFADD h2 e f g h i j k l m n o p",
        "PFCOUNT h h2",
        "PFMERGE m h h2",
        "PFCOUNT m",
        "PFMERGE m",
        "PFCOUNT m",
        "PFADD s x",
        "PFCOUNT s",
        "PFCOUNT l",
        "TYPE h",
    ])
    .await;
    // Many elements: the same estimate as Redis, element for element.
    let mut p = pair().await;
    for chunk in 0..20 {
        let mut cmd = vec!["PFADD".to_string(), "big".to_string()];
        cmd.extend((0..500).map(|i| format!("user:{}", chunk * 500 + i)));
        let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
        p.redis.send(&resp(&words)).await;
        p.keyway.send(&resp(&words)).await;
        assert_eq!(p.redis.reply().await, p.keyway.reply().await);
    }
    p.redis.send(&resp(&["PFCOUNT", "big"])).await;
    p.keyway.send(&resp(&["PFCOUNT", "big"])).await;
    let (want, got) = (p.redis.reply().await, p.keyway.reply().await);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

/// Two clients on redis-server and the same two on keyway.
struct Two {
    a: Pair,
    b_redis: Raw,
    b_keyway: Raw,
}

impl Two {
    async fn new() -> Two {
        let a = pair().await;
        let b_redis = Raw(
            tokio::net::TcpStream::connect(("127.0.0.1", a._server.port))
                .await
                .unwrap(),
        );
        let b_keyway = a._kw.raw().await;
        Two {
            a,
            b_redis,
            b_keyway,
        }
    }

    /// `a:` or `b:` picks the client; the replies must match.
    async fn step(&mut self, step: &str) {
        let (on_b, cmd) = match step.strip_prefix("b:") {
            Some(c) => (true, c),
            None => (false, step.strip_prefix("a:").unwrap_or(step)),
        };
        let req = resp(&words(cmd));
        let (r, k) = if on_b {
            (&mut self.b_redis, &mut self.b_keyway)
        } else {
            (&mut self.a.redis, &mut self.a.keyway)
        };
        r.send(&req).await;
        k.send(&req).await;
        let (want, got) = (r.reply().await, k.reply().await);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{step}"
        );
    }
}

#[tokio::test]
async fn transactions_and_watch_answer_as_redis() {
    let mut t = Two::new().await;
    for step in [
        "MULTI",
        "SET k 1",
        "INCR k",
        "LPUSH k x",
        "GET k",
        "EXEC",
        "MULTI",
        "SET k 2",
        "DISCARD",
        "GET k",
        "EXEC",
        "DISCARD",
        "MULTI",
        "MULTI",
        "SET k 3",
        "NOSUCHCMD",
        "EXEC",
        "GET k",
        "MULTI",
        "EXEC",
        // WATCH inside MULTI is refused, and the transaction still runs.
        "MULTI",
        "WATCH k",
        "SET k 4",
        "EXEC",
        // WATCH: another client's write aborts.
        "WATCH w",
        "b:SET w changed",
        "MULTI",
        "SET w mine",
        "EXEC",
        "GET w",
        // Untouched, it commits; EXEC forgets the watch.
        "WATCH w",
        "MULTI",
        "SET w mine",
        "EXEC",
        "b:SET w other",
        "MULTI",
        "GET w",
        "EXEC",
        // UNWATCH forgets too.
        "WATCH w",
        "b:SET w again",
        "UNWATCH",
        "MULTI",
        "GET w",
        "EXEC",
        // A watched key that is deleted, or created, counts as changed.
        "WATCH w gone",
        "b:DEL w",
        "MULTI",
        "PING",
        "EXEC",
        "WATCH gone",
        "b:SET gone here",
        "MULTI",
        "GET gone",
        "EXEC",
        // Blocking commands inside MULTI do not block.
        "MULTI",
        "BLPOP nolist 0",
        "RPUSH q a",
        "BRPOP q 0",
        "EXEC",
        "WATCH k",
        "WATCH w",
        "MULTI",
        "WATCH k",
        "DISCARD",
    ] {
        t.step(step).await;
    }
}

#[tokio::test]
async fn watch_sees_expiry_as_a_change() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("SET t v PX 50", "+OK\r\n").await;
    c.check("WATCH t", "+OK\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    c.check("MULTI", "+OK\r\n").await;
    c.check("SET t new", "+QUEUED\r\n").await;
    c.check("EXEC", "*-1\r\n").await;
}

#[tokio::test]
async fn key_commands_work_on_every_type() {
    same(&[
        "RPUSH l a b",
        "SADD s 1 2",
        "SADD t x",
        "ZADD z 1 m",
        "HSET h f v",
        "SET n 123",
        "SET e hello",
        "TYPE l",
        "TYPE s",
        "TYPE z",
        "TYPE h",
        // (Small lists are "listpack" from Redis 7.2 on, as keyway reports;
        // the redis-server here may be older.)
        "!OBJECT ENCODING l",
        "OBJECT ENCODING s",
        "!OBJECT ENCODING t",
        "OBJECT ENCODING z",
        "OBJECT ENCODING h",
        "OBJECT ENCODING n",
        "OBJECT ENCODING e",
        "OBJECT ENCODING nope",
        "OBJECT REFCOUNT l",
        "RENAME l l2",
        "LRANGE l2 0 -1",
        "RENAME z z2",
        "ZRANGE z2 0 -1",
        "COPY z2 z3",
        "ZRANGE z3 0 -1 WITHSCORES",
        "COPY z2 z3",
        "ZADD z3 9 added",
        "ZCARD z2",
        "COPY z2 z3 REPLACE",
        "ZCARD z3",
        "COPY l2 l3 DB 0",
        "LRANGE l3 0 -1",
        "COPY nosuch x",
        "COPY z2 z2",
        "COPY z2 x BOGUS",
        "COPY z2 x DB x",
        "COPY z2 x REPLACE DB",
        "EXPIRE h 100",
        "COPY h h2",
        "TTL h2",
        "HGETALL h2",
        "DEL z3 l3 h2",
        "EXPIRE s 100",
        "TTL s",
        "PERSIST s",
        "~SCAN 0 TYPE zset",
        "~KEYS *",
        "DEL l2 s z2 h",
        "~KEYS *",
    ])
    .await;
}

/// Streams and consumer groups, with explicit IDs so that both servers
/// give the same ones; the errors of each command's options included.
#[tokio::test]
async fn streams_answer_as_redis() {
    same(&[
        "DEL s",
        "XADD s 1-0 a 1",
        "XADD s 2-0 b 2",
        "XADD s 3-0 c 3",
        "XINFO STREAM s FULL",
        "XGROUP CREATE s g 0",
        "XGROUP CREATE s h $",
        "XGROUP CREATECONSUMER s g idle",
        "XINFO STREAM s FULL COUNT 0",
        "XINFO STREAM s FULL COUNT 2",
        "XINFO STREAM s FULL COUNT x",
        "XINFO STREAM s FULL COUNT -1",
        "XINFO STREAM s FULL foo",
        "XINFO STREAM s FULL COUNT",
        "XINFO STREAM s foo",
        "XINFO STREAM nokey FULL",
        "XINFO STREAM nokey foo",
        "XADD s 1-1 a 1",
        "XADD s 1-2 b 2 c 3",
        "XADD s 1-* d 4",
        "XADD s 2 e 5",
        "XADD s 2-* f 6",
        "XADD s 0-0 a 1",
        "XADD s 0-1 a 1",
        "XADD s 1-1 a 1",
        "XADD s 1 a",
        "XADD s 1-x a 1",
        "XADD s x a 1",
        "XADD s -1 a 1",
        "XADD s MAXLEN -1 5-0 a 1",
        "XADD s MAXLEN 1 LIMIT 10 5-0 a 1",
        "XADD s MINID 1 MAXLEN 2 5-0 a 1",
        "XADD s LIMIT 5 5-0 a 1",
        "XADD s MAXLEN abc 5-0 a 1",
        "XADD s MINID bad 5-0 a 1",
        "XADD s LIMIT -1 MAXLEN ~ 5 5-0 a 1",
        "XADD nokey NOMKSTREAM 1-1 a 1",
        "EXISTS nokey",
        "XADD s",
        "XADD s 9-0",
        "XADD s 9-0 a",
        "XLEN s",
        "XLEN nokey",
        "XRANGE s - +",
        "XRANGE s - + COUNT 2",
        "XRANGE s - + COUNT 0",
        "XRANGE s - + COUNT -3",
        "XRANGE s (1-1 +",
        "XRANGE s (- +",
        "XRANGE s - (2",
        "XRANGE s 1 1",
        "XRANGE s 2 1",
        "XRANGE s - + COUNT",
        "XRANGE s - + FOO 1",
        "XRANGE s (18446744073709551615-18446744073709551615 +",
        "XRANGE s - (0-0",
        "XRANGE nokey - +",
        "XREVRANGE s + -",
        "XREVRANGE s + - COUNT 1",
        "XREVRANGE s (2-1 -",
        "XRANGE s 1-a +",
        "SET str x",
        "XADD str * a 1",
        "XLEN str",
        "XRANGE str - +",
        "XDEL s 1-2 9-9",
        "XDEL s bad",
        "XDEL nokey 1-1",
        "XLEN s",
        "XINFO STREAM s",
        "XTRIM s MAXLEN 2",
        "XRANGE s - +",
        "XTRIM s MINID 2-1",
        "XRANGE s - +",
        "XTRIM s",
        "XTRIM s LIMIT 1",
        "XTRIM s MAXLEN ~ 1 LIMIT 1",
        "XTRIM nokey MAXLEN 1",
        "XTRIM s FOO",
        "XINFO STREAM s",
        "XADD s MAXLEN 2 3-0 g 7",
        "XADD s MAXLEN = 2 3-1 g 7",
        "XADD s MINID 3-1 3-2 g 7",
        "XRANGE s - +",
        "XINFO STREAM s",
        "XADD s 18446744073709551615-18446744073709551615 a 1",
        "XADD s 18446744073709551615-* a 1",
        "XADD s * a 1",
        "DEL s",
        "XADD s 1-0 a 1",
        "XADD s 2-0 b 2",
        "XADD s 3-0 c 3",
        "XREAD STREAMS s 0",
        "XREAD COUNT 2 STREAMS s 0",
        "XREAD STREAMS s 3-0",
        "XREAD STREAMS s $",
        "XREAD STREAMS s nokey 1-0 0",
        "XREAD STREAMS s nokey 0 0",
        "XREAD STREAMS s",
        "XREAD STREAMS s 0 0",
        "XREAD COUNT -1 STREAMS s 0",
        "XREAD BLOCK -1 STREAMS s 0",
        "XREAD BLOCK x STREAMS s 0",
        "XREAD NOACK STREAMS s 0",
        "XREAD GROUP g c STREAMS s 0",
        "XREAD STREAMS s >",
        "XREAD STREAMS s bad",
        "XREAD COUNT 1",
        "XREAD FOO STREAMS s 0",
        "XREAD STREAMS str 0",
        "XREADGROUP GROUP g c STREAMS s >",
        "XREADGROUP STREAMS s >",
        "XGROUP CREATE s g $",
        "XGROUP CREATE s g $",
        "XGROUP CREATE s g2 0",
        "XGROUP CREATE s g3 1-0 ENTRIESREAD 1",
        "XGROUP CREATE s g4 0 ENTRIESREAD -2",
        "XGROUP CREATE s g5 0 FOO",
        "XGROUP CREATE nokey g 0",
        "XGROUP CREATE nokey g 0 MKSTREAM",
        "XLEN nokey",
        "XGROUP CREATE str g 0",
        "XGROUP CREATE s g6 bad",
        "XINFO GROUPS s",
        "XREADGROUP GROUP g c STREAMS s $",
        "XREADGROUP GROUP g c STREAMS s >",
        "XREADGROUP GROUP g2 c1 COUNT 2 STREAMS s >",
        "XREADGROUP GROUP g2 c2 STREAMS s >",
        "XREADGROUP GROUP g2 c2 STREAMS s >",
        "XREADGROUP GROUP g2 c1 STREAMS s 0",
        "XREADGROUP GROUP g2 c1 STREAMS s 1-0",
        "XREADGROUP GROUP g2 c3 STREAMS s 0",
        "XREADGROUP GROUP nog c STREAMS s >",
        "XREADGROUP GROUP g2 c STREAMS nokey2 >",
        "XREADGROUP GROUP g2 c STREAMS s",
        "XINFO GROUPS s",
        "XPENDING s g2",
        "XPENDING s g2 - + 10 c9",
        "XPENDING s g",
        "XPENDING s nog",
        "XPENDING nokey2 g",
        "XPENDING s g2 - +",
        "XPENDING s g2 IDLE 0 - +",
        "XPENDING s g2 - + x",
        "XPENDING s g2 bad + 10",
        "XPENDING s g2 (3-0 + 10",
        "XACK s g2 1-0 9-9",
        "XACK s g2 bad",
        "XACK s nog 1-0",
        "XACK nokey2 g 1-0",
        "XACK str g 1-0",
        "XPENDING s g2",
        "XREADGROUP GROUP g2 c1 STREAMS s 0",
        "XDEL s 2-0",
        "XREADGROUP GROUP g2 c1 STREAMS s 0",
        "XINFO GROUPS s",
        "XCLAIM s g2 c3 0 2-0 3-0 JUSTID",
        "XCLAIM s g2 c3 0 3-0",
        "XCLAIM s nog c 0 1-0",
        "XCLAIM s g2 c3 x 1-0",
        "XCLAIM s g2 c3 0 1-0 FOO",
        "XCLAIM s g2 c3 0 1-0 IDLE x",
        "XCLAIM s g2 c3 0 1-0 RETRYCOUNT x",
        "XCLAIM s g2 c3 0 1-0 TIME x",
        "XCLAIM s g2 c3 0 1-0 FORCE JUSTID",
        "XCLAIM s g2 c3 0 1-0 RETRYCOUNT 5 JUSTID LASTID 3-0",
        "XPENDING s g2",
        "XAUTOCLAIM s g2 c4 0 0 COUNT 1",
        "XAUTOCLAIM s g2 c4 0 0",
        "XAUTOCLAIM s g2 c4 0 0 COUNT 0",
        "XAUTOCLAIM s g2 c4 0 0 JUSTID",
        "XAUTOCLAIM s g2 c4 0 0 FOO",
        "XAUTOCLAIM s nog c4 0 0",
        "XAUTOCLAIM s g2 c4 x 0",
        "XAUTOCLAIM s g2 c4 0 bad",
        "XINFO GROUPS s",
        "XGROUP CREATECONSUMER s g2 c9",
        "XGROUP CREATECONSUMER s g2 c9",
        "XGROUP CREATECONSUMER s nog c9",
        "XGROUP DELCONSUMER s g2 c4",
        "XGROUP DELCONSUMER s g2 nobody",
        "XGROUP SETID s g2 0",
        "XGROUP SETID s g2 $ ENTRIESREAD 2",
        "XGROUP SETID s g2 0 FOO 2",
        "XGROUP SETID s nog 0",
        "XGROUP SETID nokey3 g 0",
        "XINFO GROUPS s",
        "XGROUP DESTROY s g3",
        "XGROUP DESTROY s g3",
        "XGROUP DESTROY s",
        "XGROUP FOO",
        "XGROUP HELP",
        "XGROUP HELP x",
        "XINFO HELP",
        "XINFO FOO s",
        "XINFO GROUPS nokey3",
        "XINFO GROUPS str",
        "XINFO CONSUMERS s nog",
        "XINFO STREAM s x",
        "XINFO STREAM s",
        "XINFO GROUPS",
        "TYPE s",
        "OBJECT ENCODING s",
        "XADD s 5-0 z 1",
        "XREADGROUP GROUP g2 c1 NOACK STREAMS s >",
        "XPENDING s g2",
        "XINFO GROUPS s",
    ])
    .await;
}

#[tokio::test]
async fn blocked_stream_readers_are_woken_by_xadd() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("XADD s 1-0 a 1", "$3\r\n1-0\r\n").await;
    c.check("XREAD BLOCK 50 STREAMS s $", "*-1\r\n").await;
    c.check("XGROUP CREATE s g $", "+OK\r\n").await;

    // `$` is the last ID when the client blocked: 1-0 is not new to it.
    let mut reader = kw.raw().await;
    reader
        .send(&resp(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]))
        .await;
    let mut worker = kw.raw().await;
    worker
        .send(&resp(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "w1",
            "BLOCK",
            "5000",
            "STREAMS",
            "s",
            ">",
        ]))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    c.check("XADD s 2-0 b 2", "$3\r\n2-0\r\n").await;
    let entry = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n";
    reader.expect(entry).await;
    worker.expect(entry).await;
    // The worker's read is pending until acknowledged.
    c.send(&resp(&["XPENDING", "s", "g", "-", "+", "10", "w1"]))
        .await;
    let pending = String::from_utf8(c.reply().await).unwrap();
    assert!(
        pending.starts_with("*1\r\n*4\r\n$3\r\n2-0\r\n$2\r\nw1\r\n:")
            && pending.ends_with("\r\n:1\r\n"),
        "{pending:?}"
    );
    c.check("XACK s g 2-0", ":1\r\n").await;
    // FORCE puts an entry in the PEL as delivered once, as Redis does.
    c.check("XCLAIM s g w2 0 1-0 FORCE JUSTID", "*1\r\n$3\r\n1-0\r\n")
        .await;
    c.send(&resp(&["XPENDING", "s", "g", "-", "+", "10"])).await;
    let forced = String::from_utf8(c.reply().await).unwrap();
    assert!(
        forced.starts_with("*1\r\n*4\r\n$3\r\n1-0\r\n$2\r\nw2\r\n:")
            && forced.ends_with("\r\n:1\r\n"),
        "{forced:?}"
    );
    c.check("XACK s g 1-0", ":1\r\n").await;
    c.check("XPENDING s g", "*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n")
        .await;
}

/// Geo commands: positions, distances, hashes and searches (the order of
/// unsorted results included) as Redis computes them.
#[tokio::test]
async fn geo_answers_as_redis() {
    same(&[
        "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        "GEOADD Sicily 12.758489 38.788135 edge1 17.241510 38.788135 edge2",
        "GEOADD Sicily NX 13.361389 38.115556 Palermo 13.5 38.2 new1",
        "GEOADD Sicily XX CH 13.361389 38.115556 Palermo 15.1 37.6 Catania 1 1 nope",
        "GEOADD Sicily CH 15.087269 37.502669 Catania",
        "GEOADD Sicily NX XX 1 1 a",
        "GEOADD Sicily 1 1",
        "GEOADD Sicily 181 1 a",
        "GEOADD Sicily 1 86 a",
        "GEOADD Sicily x 1 a",
        "GEOADD Sicily 1 y a",
        "ZSCORE Sicily Palermo",
        "ZSCORE Sicily Catania",
        "GEOPOS Sicily Palermo Catania NonExisting",
        "GEOPOS nokey a b",
        "GEODIST Sicily Palermo Catania",
        "GEODIST Sicily Palermo Catania km",
        "GEODIST Sicily Palermo Catania mi",
        "GEODIST Sicily Palermo Catania FT",
        "GEODIST Sicily Palermo Catania parsecs",
        "GEODIST Sicily Palermo Catania km x",
        "GEODIST Sicily Foo Bar",
        "GEODIST nokey a b",
        "GEOHASH Sicily Palermo Catania nope",
        "GEOHASH nokey a",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km DESC",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHCOORD WITHDIST WITHHASH",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 100 km",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 300 km WITHDIST",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 300 km COUNT 2",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 300 km COUNT 2 DESC",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 300 km COUNT 1 ANY",
        "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 300 km ANY",
        "GEOSEARCH Sicily FROMMEMBER nope BYRADIUS 300 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 FROMMEMBER Palermo BYRADIUS 300 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37",
        "GEOSEARCH Sicily BYRADIUS 300 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 300 km BYBOX 1 1 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS -1 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS x km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX x 1 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 1 y km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX -1 1 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 10 lightyears",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 10 km COUNT 0",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 10 km COUNT x",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 10 km STOREDIST",
        "GEOSEARCH Sicily FROMLONLAT 200 37 BYRADIUS 10 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 10 km FOO",
        "GEOSEARCH nokey FROMLONLAT 15 37 BYRADIUS 10 km",
        "GEOSEARCH nokey FROMMEMBER x BYRADIUS 10 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 0 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 50000 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 5000 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 20000 20000 km",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 500 mi WITHDIST",
        "GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km",
        "ZRANGE dst 0 -1 WITHSCORES",
        "GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST ASC",
        "ZRANGE dst 0 -1",
        "GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHDIST",
        "GEOSEARCHSTORE dst Sicily FROMLONLAT 15 37 BYRADIUS 1 m",
        "EXISTS dst",
        "GEOSEARCHSTORE dst nokey FROMLONLAT 15 37 BYRADIUS 1 m",
        "SET str x",
        "GEOADD str 1 1 a",
        "GEOPOS str a",
        "GEOSEARCH str FROMLONLAT 15 37 BYRADIUS 200 km",
        "GEOADD pts 0 0 o 0.5 0.5 a -0.5 0.5 b 0.5 -0.5 c -0.5 -0.5 d 1 0 e -1 0 f 0 1 g 0 -1 h 179.9 0 i -179.9 0 j",
        "GEOSEARCH pts FROMLONLAT 0 0 BYRADIUS 200 km",
        "GEOSEARCH pts FROMLONLAT 0 0 BYRADIUS 80 km",
        "GEOSEARCH pts FROMLONLAT 0 0 BYBOX 150 150 km",
        "GEOSEARCH pts FROMLONLAT 0.25 0.25 BYBOX 300 100 km WITHDIST",
        "GEOSEARCH pts FROMLONLAT 179.95 0 BYRADIUS 100 km",
        "GEOSEARCH pts FROMLONLAT -179.95 0 BYRADIUS 100 km",
        "GEOSEARCH pts FROMLONLAT 0 0 BYRADIUS 20000 km",
        "GEOPOS pts o a i j",
        "GEOHASH pts o a b c d i j",
        "GEOADD poles 0 85 n1 10 84.9 n2 -170 85.05 n3 0 -85 s1",
        "GEOSEARCH poles FROMLONLAT 0 85 BYRADIUS 500 km",
        "GEOSEARCH poles FROMLONLAT 0 85 BYRADIUS 3000 km WITHDIST",
        "GEOSEARCH poles FROMLONLAT 0 -85 BYBOX 1000 1000 km",
        "GEOPOS poles n1 n2 n3 s1",
        "GEOHASH poles n1 n2 n3 s1",
        "GEODIST poles n1 s1 km",
        "DEL Sicily dst dst2",
        "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 12.758489 38.788135 edge1 17.241510 38.788135 edge2",
        "GEORADIUS Sicily 15 37 200 km",
        "GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD ASC",
        "GEORADIUS Sicily 15 37 200 km COUNT 1",
        "GEORADIUS Sicily 15 37 200 km COUNT 1 ANY DESC",
        "GEORADIUS Sicily 15 37 200 km STORE dst",
        "ZRANGE dst 0 -1",
        "GEORADIUS Sicily 15 37 200 km STOREDIST dst2 DESC",
        "ZRANGE dst2 0 -1",
        "GEORADIUS Sicily 15 37 200 km STORE dst WITHDIST",
        "GEORADIUS Sicily 15 37 200 km FROMLONLAT 1 1",
        "GEORADIUS Sicily 15 37 200 km BYRADIUS 1 km",
        "GEORADIUS Sicily 15 37 x km",
        "GEORADIUS Sicily 15 37 -1 km",
        "GEORADIUS Sicily 15 37 1 parsec",
        "GEORADIUS Sicily 200 37 1 km",
        "GEORADIUS nokey 15 37 200 km",
        "GEORADIUS nokey 15 37 200 km STORE dst3",
        "EXISTS dst3",
        "GEORADIUS_RO Sicily 15 37 200 km WITHDIST",
        "GEORADIUS_RO Sicily 15 37 200 km STORE dst",
        "GEORADIUSBYMEMBER Sicily Palermo 200 km",
        "GEORADIUSBYMEMBER Sicily Palermo 200 km WITHDIST ASC",
        "GEORADIUSBYMEMBER Sicily nope 200 km",
        "GEORADIUSBYMEMBER nokey nope 200 km",
        "GEORADIUSBYMEMBER Sicily Palermo 200 km STORE dst4",
        "ZRANGE dst4 0 -1",
        "GEORADIUSBYMEMBER_RO Sicily Palermo 200 km COUNT 2",
        "GEORADIUSBYMEMBER_RO Sicily Palermo 200 km STOREDIST x",
        "GEORADIUS Sicily 15 37 200 km ANY",
    ])
    .await;
}

/// BITFIELD and BITFIELD_RO: field types, `#` offsets, the three overflow
/// behaviours and their errors.
#[tokio::test]
async fn bitfield_answers_as_redis() {
    same(&[
        "BITFIELD k",
        "BITFIELD k GET u8 0",
        "EXISTS k",
        "BITFIELD k SET u8 0 255 GET u8 0 GET i8 0 GET u4 4 GET i4 4",
        "GET k",
        "BITFIELD k INCRBY u8 0 10",
        "BITFIELD k OVERFLOW SAT INCRBY u8 0 10 INCRBY u8 0 -300",
        "BITFIELD k OVERFLOW FAIL INCRBY u8 0 300 GET u8 0",
        "BITFIELD k OVERFLOW WRAP INCRBY i8 0 200 INCRBY i8 0 -300",
        "BITFIELD k SET i8 #1 -100 GET i8 #1 GET u8 #1 INCRBY i8 #1 -100",
        "BITFIELD k OVERFLOW SAT SET i8 #1 -200 SET u8 #2 -1 GET u8 #2",
        "BITFIELD k OVERFLOW FAIL SET u8 #3 256 GET u8 #3",
        "BITFIELD k OVERFLOW WRAP SET u8 #3 257 GET u8 #3",
        "STRLEN k",
        "BITFIELD k OVERFLOW FAIL SET u8 100 300",
        "STRLEN k",
        "BITFIELD k SET i64 0 -1 GET i64 0 GET u63 0 INCRBY i64 0 1",
        "BITFIELD k SET i64 0 9223372036854775807 INCRBY i64 0 1",
        "BITFIELD k OVERFLOW SAT SET i64 0 9223372036854775807 INCRBY i64 0 1 INCRBY i64 0 -9223372036854775808",
        "BITFIELD k OVERFLOW SAT INCRBY u63 0 9223372036854775807 INCRBY u63 0 5",
        "BITFIELD k OVERFLOW WRAP INCRBY u63 0 9223372036854775807 INCRBY u63 0 5",
        "BITFIELD k GET u3 5 SET u3 5 7 GET u3 5 INCRBY i3 5 1 INCRBY i3 5 -9",
        "BITFIELD k GET u64 0",
        "BITFIELD k GET u0 0",
        "BITFIELD k GET i65 0",
        "BITFIELD k GET x8 0",
        "BITFIELD k GET u8 -1",
        "BITFIELD k GET u8 x",
        "BITFIELD k GET u8 #x",
        "BITFIELD k GET u8 4294967296",
        "BITFIELD k GET u8 4294967295",
        "BITFIELD k SET u8 0 x",
        "BITFIELD k OVERFLOW BAD",
        "BITFIELD k FOO",
        "BITFIELD k GET u8",
        "BITFIELD k SET u8 0",
        "BITFIELD k OVERFLOW",
        "BITFIELD_RO k GET u8 0 GET i16 3",
        "BITFIELD_RO k SET u8 0 1",
        "BITFIELD_RO k INCRBY u8 0 1",
        "BITFIELD_RO nokey GET u8 0",
        "SET s hello",
        "BITFIELD s GET u8 0 GET u8 8 SET u8 0 72",
        "GET s",
        "LPUSH l a",
        "BITFIELD l GET u8 0",
        "BITFIELD l SET u8 0 1",
        "BITFIELD_RO l GET u8 0",
        "BITFIELD n SET u16 #1000 65535 GET u16 #1000",
        "STRLEN n",
    ])
    .await;
}

/// LCS: the subsequence, its length and the matched ranges Redis reports.
#[tokio::test]
async fn lcs_answers_as_redis() {
    same(&[
        "MSET key1 ohmytext key2 mynewtext",
        "LCS key1 key2",
        "LCS key1 key2 LEN",
        "LCS key1 key2 IDX",
        "LCS key1 key2 IDX MINMATCHLEN 4",
        "LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN",
        "LCS key1 key2 IDX WITHMATCHLEN",
        "LCS key1 key2 IDX LEN",
        "LCS key1 key2 FOO",
        "LCS key1 key2 MINMATCHLEN x",
        "LCS key1 key2 IDX MINMATCHLEN -5",
        "LCS key1 nokey",
        "LCS nokey nokey2 IDX",
        "MSET a ABCBDAB b BDCABA",
        "LCS a b",
        "LCS a b IDX WITHMATCHLEN",
        "LCS b a IDX WITHMATCHLEN",
        "MSET c aaaa d aa",
        "LCS c d IDX",
        "LCS d c IDX WITHMATCHLEN",
        "MSET e abcdefghij f xxabcxxdefxxghij",
        "LCS e f IDX WITHMATCHLEN",
        "LCS f e IDX MINMATCHLEN 3",
        "LCS e f",
        "LPUSH l x",
        "LCS l a",
        "LCS a l",
        "LCS e f MINMATCHLEN",
    ])
    .await;
}

/// SORT and SORT_RO: numeric and ALPHA order, BY and GET patterns (hash
/// fields too), LIMIT, STORE, and the collections' own order with BY
/// nosort.
#[tokio::test]
async fn sort_answers_as_redis() {
    same(&[
        "RPUSH l 3 1 2 10 -5 2.5",
        "SORT l",
        "SORT l DESC",
        "SORT l LIMIT 1 2",
        "SORT l LIMIT 1 2 DESC",
        "SORT l LIMIT -1 2",
        "SORT l LIMIT 4 100",
        "SORT l LIMIT 10 2",
        "SORT l LIMIT 0 -1",
        "SORT l LIMIT 0 0",
        "SORT l ALPHA",
        "SORT l ALPHA DESC",
        "SORT nokey",
        "SORT nokey STORE dst",
        "EXISTS dst",
        "RPUSH w a b c10 c2 B",
        "SORT w",
        "SORT w ALPHA",
        "SORT w ALPHA LIMIT 1 3",
        "MSET weight_3 30 weight_1 10 weight_2 5 weight_10 1 weight_-5 100",
        "SORT l BY weight_*",
        "SORT l BY weight_* DESC",
        "SORT l BY weight_* LIMIT 0 3",
        "SORT l BY nosort",
        "SORT l BY nosort DESC",
        "SORT l BY nosort LIMIT 1 2",
        "SORT l BY nosort LIMIT 1 2 DESC",
        "MSET obj_3 three obj_1 one obj_2 two",
        "SORT l GET obj_*",
        "SORT l GET # GET obj_*",
        "SORT l BY nosort GET obj_* GET #",
        "HSET h_1 name alice age 30",
        "HSET h_2 name bob age 20",
        "HSET h_3 name carol age 25",
        "SORT l BY h_*->age GET h_*->name GET #",
        "SORT l BY h_*->age ALPHA GET h_*->name",
        "SORT l BY h_*->nofield",
        "SORT l GET h_*->",
        "SORT l GET nostar",
        "SORT l STORE dst",
        "LRANGE dst 0 -1",
        "SORT l BY weight_* GET obj_* STORE dst",
        "LRANGE dst 0 -1",
        "SORT l LIMIT 10 2 STORE dst",
        "EXISTS dst",
        "SORT_RO l DESC",
        "SORT_RO l STORE x",
        "SORT_RO l BY weight_* GET #",
        "ZADD z 3 c 1 a 2 b 2 bb",
        "SORT z ALPHA",
        "SORT z BY nosort",
        "SORT z BY nosort DESC",
        "SORT z BY nosort LIMIT 1 2",
        "SORT z ALPHA DESC LIMIT 0 2",
        "SORT z",
        "SADD s 5 3 9 1",
        "SORT s",
        "SORT s DESC",
        "SORT s LIMIT 1 2",
        "SADD t x y a",
        "SORT t ALPHA",
        "SORT t BY nosort STORE dst",
        "LRANGE dst 0 -1",
        "SET str x",
        "SORT str",
        "HSET hh a 1",
        "SORT hh",
        "SORT l LIMIT",
        "SORT l LIMIT 1",
        "SORT l LIMIT x 1",
        "SORT l FOO",
        "SORT l BY",
        "SORT l GET",
        "SORT l STORE",
        "RPUSH bad 1 x 2",
        "SORT bad",
        "SORT bad ALPHA",
        "SORT bad BY nosort",
        "SORT sp",
        "SORT sp2",
        "RPUSH ties b a c",
        "MSET wt_a 1 wt_b 1 wt_c 0",
        "SORT ties BY wt_*",
        "SORT ties BY wt_* DESC",
        "RPUSH sp4 nan",
        "SORT sp4",
        "RPUSH hx 0x1p4 -0X.8 0x1.8p1 0xg 1",
        "SORT hx",
        "RPUSH hx2 0x1p4 -0X.8 0x1.8p1 1 0x10 0X1P-1",
        "SORT hx2",
        "SORT hx2 DESC",
        "RPUSH big 3 1 2",
        "SORT big LIMIT 1 9223372036854775807",
        "SORT big LIMIT 9223372036854775807 9223372036854775807",
        "SORT big LIMIT -9223372036854775808 2",
        "SORT big BY nosort LIMIT 1 9223372036854775807",
        // Last: Redis leaves its errno set after an overflow, and later
        // numeric SORTs then fail on it.
        "RPUSH sp3 1e400",
        "SORT sp3",
    ])
    .await;
}

/// A group told it read more than was added lags by a negative count, as
/// in Redis; consumers say when they last got something (Redis 7.2's
/// `inactive`, -1 before anything), as the version keyway reports has it.
#[tokio::test]
async fn group_lag_and_consumer_activity() {
    same(&[
        "XADD st 1-0 foo bar",
        "XGROUP CREATE st g 0",
        "XGROUP SETID st g 1-0 ENTRIESREAD 2",
        "XINFO GROUPS st",
        "XGROUP CREATE st g2 1-0 ENTRIESREAD 5",
        "XINFO GROUPS st",
    ])
    .await;
    let kw = Keyway::start().await;
    let mut c = kw.client().await;
    let _: String = redis::cmd("XADD")
        .arg("s")
        .arg("1-0")
        .arg("f")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("s")
        .arg("g")
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("s")
        .arg("g")
        .arg("idle")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("busy")
        .arg("STREAMS")
        .arg("s")
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    let info: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("s")
        .arg("g")
        .query_async(&mut c)
        .await
        .unwrap();
    let inactive = |i: usize| match info[i].get("inactive") {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("{other:?}"),
    };
    assert!((0..5000).contains(&inactive(0)), "busy: {info:?}");
    assert_eq!(inactive(1), -1, "idle: {info:?}");
}

#[tokio::test]
async fn xsetid_as_in_redis() {
    same(&[
        "XSETID nokey 1-0",
        "XSETID nokey bad",
        "SET str v",
        "XSETID str 1-0",
        "XADD s 5-0 f v",
        "XSETID s 4-0",
        "XSETID s 6-0 ENTRIESADDED 0",
        "XSETID s 6-0 ENTRIESADDED -1",
        "XSETID s 6-0 ENTRIESADDED x",
        "XSETID s 6-0 MAXDELETEDID 7-0",
        "XSETID s 6-0 MAXDELETEDID bad",
        "XSETID s 6-0 BOGUS 1",
        "XSETID s 6-0 ENTRIESADDED",
        "XSETID s 6-0 ENTRIESADDED 10 MAXDELETEDID 3-0",
        "XINFO STREAM s",
        "XADD s 7-0 g w",
        "XDEL s 5-0",
        "XSETID s 5-0",
        "XINFO STREAM s",
        "XADD s 6-1 f v",
    ])
    .await;
}
