//! Replies of the memory backend that the differential fuzzer found
//! differing from Redis's (mostly which error comes first), each sent to
//! keyway and to a real redis-server and compared byte for byte.

mod common;

use common::{Keyway, RedisServer, same_replies, same_replies_words};

async fn compare(commands: &[&[&[u8]]]) {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut r = redis.raw().await;
    let mut k = kw.raw().await;
    same_replies(&mut r, &mut k, commands).await;
}

#[tokio::test]
async fn keys_and_types_are_checked_before_arguments_as_in_redis() {
    compare(&[
        &[b"SET", b"str", b"v"],
        // Streams: a missing key, or group, answers 0 before the IDs.
        &[b"XDEL", b"nostream", b"bad-id"],
        &[b"XACK", b"nostream", b"g", b"bad-id"],
        &[b"XDEL", b"str", b"bad-id"],
        // Lists: the key before the index.
        &[b"LINDEX", b"nolist", b"notanumber"],
        &[b"LSET", b"nolist", b"notanumber", b"v"],
        &[b"LINDEX", b"str", b"notanumber"],
        // Moves: a missing source answers before the destination's type.
        &[b"RPOPLPUSH", b"nolist", b"str"],
        &[b"LMOVE", b"nolist", b"str", b"LEFT", b"RIGHT"],
        &[b"SMOVE", b"noset", b"str", b"m"],
        // INCRBYFLOAT: the type, then the increment.
        &[b"HSET", b"h", b"f", b"1"],
        &[b"INCRBYFLOAT", b"h", b"notafloat"],
        &[b"HINCRBYFLOAT", b"h", b"f", b"inf"],
        // ZUNION family: source types before the options.
        &[b"ZUNION", b"2", b"str", b"z", b"BADOPTION"],
        &[b"ZINTERSTORE", b"d", b"1", b"str", b"WEIGHTS", b"x"],
        &[b"ZINTERCARD", b"2", b"str", b"z", b"BADOPTION"],
        &[b"ZINTERCARD", b"3", b"a", b"b"],
        &[b"ZINTERCARD", b"0", b"a"],
        &[b"ZINTERCARD", b"1", b"a", b"LIMIT", b"x"],
        // ZRANGESTORE: the range before the key.
        &[b"ZRANGESTORE", b"d", b"nozset", b"x", b"y"],
        &[b"ZRANGESTORE", b"d", b"str", b"0", b"y"],
        // GEORADIUSBYMEMBER of a missing key reads no radius.
        &[b"GEORADIUSBYMEMBER", b"nogeo", b"m", b"notanumber", b"km"],
        &[
            b"GEORADIUSBYMEMBER",
            b"nogeo",
            b"m",
            b"1",
            b"km",
            b"BADOPTION",
        ],
    ])
    .await;
}

#[tokio::test]
async fn options_are_read_before_their_values_as_in_redis() {
    compare(&[
        &[b"SET", b"k", b"v"],
        &[b"SET", b"k", b"v", b"EX", b"k2", b"0"],
        &[b"SET", b"k", b"v", b"EX", b"x"],
        &[b"GETEX", b"k", b"EX", b"x", b"PERSIST"],
        &[b"EXPIRE", b"k", b"notanumber", b"BAD"],
        &[b"EXPIREAT", b"k", b"1-4", b"4-2"],
        &[b"EXPIRE", b"k", b"1", b"NX", b"XX"],
        // An error's trailing newline is dropped; one inside becomes a space.
        &[b"EXPIRE", b"k", b"10", b"a\nb\n"],
        &[b"LMPOP", b"x", b"k", b"LEFT"],
        &[b"LMPOP", b"1", b"k", b"LEFT", b"COUNT", b"x"],
        &[b"ZMPOP", b"-1", b"k", b"MIN"],
        &[b"SINTERCARD", b"x", b"a"],
        &[b"SINTERCARD", b"1", b"a", b"LIMIT", b"x"],
        &[b"LPOP", b"k", b"x"],
        &[b"RPOP", b"k", b"-1"],
        &[b"ZPOPMIN", b"k", b"x"],
        &[b"BITPOS", b"k", b"x"],
        &[b"BITPOS", b"k", b"2"],
        &[b"RPUSH", b"l", b"a"],
        &[b"LPOS", b"l", b"a", b"MAXLEN", b"x"],
        &[b"LPOS", b"l", b"a", b"COUNT", b"-1"],
        &[b"ZINCRBY", b"z", b"NX", b"m"],
        &[b"ZREVRANGE", b"z", b"x", b"1", b"LIMIT", b"k3", b"0"],
        &[b"ZREVRANGEBYLEX", b"z", b"+", b"-", b"WITHSCORES"],
        &[b"ZRANGE", b"z", b"0", b"1", b"BYLEX", b"BYSCORE"],
        &[b"XGROUP", b"SETID", b"nostream", b"g", b"0", b"x"],
        &[
            b"XGROUP",
            b"SETID",
            b"nostream",
            b"g",
            b"0",
            b"ENTRIESREAD",
            b"x",
        ],
        &[b"XADD", b"s", b"LIMIT", b"0", b"1-1", b"f", b"v"],
        &[b"PUBSUB", b"HELP", b"x"],
        &[b"PUBSUB", b"NUMPAT", b"x"],
        &[b"PUBSUB", b"CHANNELS", b"a", b"b"],
        &[b"PUBSUB", b"NUMPAT"],
    ])
    .await;
}

#[tokio::test]
async fn numbers_and_strings_are_read_as_c_reads_them() {
    compare(&[
        &[b"ZADD", b"z", b"0x10", b"a", b"1", b"b"],
        &[b"ZSCORE", b"z", b"a"],
        &[b"ZCOUNT", b"z", b"", b""],
        &[b"ZCOUNT", b"z", b"\x0c\r", b"1"],
        &[b"ZCOUNT", b"z", b"  1", b"(0x11"],
        &[b"ZREMRANGEBYSCORE", b"z", b"\x00junk", b"0"],
        &[b"GEOADD", b"g", b"0x1", b"0x1", b"m"],
        &[b"GEORADIUS", b"g", b"0x1", b"0x1", b"0x10", b"km"],
        // Stream IDs, options and the XADD fast path end at a NUL.
        &[b"XADD", b"s", b"1-1", b"f", b"v"],
        &[b"XRANGE", b"s", b"1\x00junk", b"+", b"BAD"],
        &[b"XADD", b"s", b"*\x00junk", b"f"],
        &[b"XGROUP", b"ab\x00cd", b"x"],
        &[b"SET", b"k", b"v", b"NX\x00junk"],
    ])
    .await;
}

#[tokio::test]
async fn scripts_take_arguments_as_redis_lua_does() {
    let eval = |body: &'static [u8], arg: &'static [u8]| -> [&'static [u8]; 5] {
        [b"EVAL", body, b"1", b"k", arg]
    };
    compare(&[
        &[b"EVAL", b"return cjson.decode(ARGV[1])", b"0"],
        &[b"EVAL", b"return cmsgpack.unpack(ARGV[1])", b"0"],
        &[b"EVAL", b"return redis.sha1hex(ARGV[1])", b"0"],
        &eval(b"return tonumber(ARGV[1])", b"9223372036854775807"),
        &eval(b"return cjson.decode(ARGV[1])", b"2-0"),
        &eval(b"return cjson.decode(ARGV[1])", b"inf"),
        &eval(b"return cjson.decode(ARGV[1])", b"+1"),
        &eval(b"return cjson.decode(ARGV[1])", b"0x10"),
        &eval(b"return cjson.decode(ARGV[1])", b"a\x00"),
        &eval(b"return cmsgpack.unpack(ARGV[1])", b"\xc4\x01a"),
        &eval(b"return cmsgpack.unpack(ARGV[1])", b"\xc5\x00\x01a"),
    ])
    .await;
}

/// Redis's Lua sandbox: read-only globals and libraries, no bytecode, no
/// functions Redis removes; the redis library's extra functions.
#[tokio::test]
async fn the_lua_sandbox_refuses_what_redis_refuses() {
    let scripts: &[&str] = &[
        "return loadstring(string.dump(function() return 1 end))()",
        "return select('#', loadstring(string.dump(function() return 1 end)))",
        "local ok, e = loadstring(string.dump(function() return 1 end)) return e",
        "local s = string.dump(function() return 1 end) local i = 0 \
         local f, e = load(function() i = i + 1 if i == 1 then return s end end) return e",
        "return load('return 3')",
        "x = 5 return x",
        "redis.call = nil return 1",
        "string.rep = nil return 1",
        "_G.x = 1 return 1",
        "rawset(_G, 'x', 1) return 1",
        "setmetatable(_G, nil) return 1",
        "setmetatable(string, {}) return 1",
        "getmetatable(_G).__newindex = nil x = 1 return x",
        "local s = 'abc' getmetatable(s).__index = nil return 1",
        "return pcall(function() x = 1 end)",
        "return {pcall(rawset, _G, 'x', 1)}",
        "cjson.encode = nil return 1",
        "math.x = 1 return 1",
        "KEYS = {} return 1",
        "KEYS[1] = 'a' return KEYS[1]",
        "local f = loadstring('x=1') f() return 1",
        "return loadstring('return 7')()",
        "local t = {} rawset(t, 'a', 1) return t.a",
        "local t = setmetatable({}, {}) return 1",
        "return type(getmetatable('abc'))",
        "return type(getmetatable(string))",
        "return ('x'):rep(3)",
        "return type(getfenv)",
        "return type(setfenv)",
        "return type(print)",
        "return type(newproxy)",
        "return type(module)",
        "return type(require)",
        "return type(dofile)",
        "local r = {} for k, v in pairs(_G) do if k ~= 'struct' and k ~= '__redis__err__handler' \
         then r[#r+1] = k .. ':' .. type(v) end end table.sort(r) return r",
        "local t = {} for k in pairs(string) do t[#t+1] = k end table.sort(t) return t",
        "redis.set_repl(7)",
        "redis.set_repl()",
        "return redis.set_repl(redis.REPL_ALL)",
        "return redis.replicate_commands()",
        "return redis.breakpoint()",
        "return redis.acl_check_cmd('nosuch')",
        "return redis.acl_check_cmd('get', 'x')",
        "return redis.acl_check_cmd()",
        "return redis.REPL_ALL .. redis.REPL_AOF .. redis.REPL_NONE .. redis.REPL_REPLICA",
    ];
    let commands: Vec<[&[u8]; 3]> = scripts
        .iter()
        .map(|s| [&b"EVAL"[..], s.as_bytes(), &b"0"[..]])
        .collect();
    let commands: Vec<&[&[u8]]> = commands.iter().map(|c| &c[..]).collect();
    compare(&commands).await;
    // A script given as bytecode fails to compile, as text.
    compare(&[&[b"EVAL", b"\x1bLuaQ\x00\x01\x04", b"0"]]).await;
}

/// Found by the differential fuzzer's 1,000,000-command run: stream IDs
/// are read as Redis's string2ull reads them (white space and a sign
/// before the digits), and a geo score is turned into bits as C turns a
/// double into an unsigned integer.
#[tokio::test]
async fn ids_and_geo_scores_are_read_as_c_reads_them() {
    compare(&[
        &[b"XADD", b"st", b"\t2", b"0-0", b"a", b"b", b"c"],
        &[b"XADD", b"st", b"\t2", b"0-0", b"a", b"b"],
        &[b"XADD", b"st", b" +3-1", b"a", b"b"],
        &[b"XADD", b"st", b"-4-1", b"a", b"b"],
        &[b"XADD", b"st", b" -4-1", b"a", b"b"],
        &[b"XRANGE", b"st", b"-", b"+"],
        &[
            b"ZADD", b"g", b"-5", b"a", b"1e30", b"b", b"-1e30", b"c", b"3e15", b"d", b"9e18", b"e",
        ],
        &[b"GEOHASH", b"g", b"a", b"b", b"c", b"d", b"e"],
        &[b"GEOPOS", b"g", b"a", b"c", b"e"],
        &[b"GEODIST", b"g", b"a", b"d"],
    ])
    .await;
}

#[tokio::test]
async fn issue_19_error_texts_and_orders_as_in_redis() {
    compare(&[
        &[b"SET", b"bs", b"xxxx"],
        &[b"BITCOUNT", b"bs", b"-6", b"-7"],
        &[b"BITCOUNT", b"bs", b"-6", b"-5"],
        &[b"BITCOUNT", b"bs", b"-1", b"-2"],
        &[b"BITCOUNT", b"bs", b"5", b"3"],
        // XAUTOCLAIM reads its arguments before it looks for the group.
        &[b"XAUTOCLAIM", b"x", b"g", b"c", b"0", b"0", b"COUNT", b"0"],
        &[b"XAUTOCLAIM", b"x", b"g", b"c", b"x", b"0"],
        &[b"XAUTOCLAIM", b"x", b"g", b"c", b"0", b"0"],
        &[b"XAUTOCLAIM", b"bs", b"g", b"c", b"0", b"0", b"COUNT", b"0"],
        &[b"CLIENT", b"KILL"],
        &[b"CLIENT", b"KILL", b"1.2.3.4:5"],
        &[b"CLIENT", b"KILL", b"ID", b"x"],
        // FLUSHALL and CONFIG queue in MULTI and answer at their places.
        &[b"SET", b"a", b"1"],
        &[b"SELECT", b"2"],
        &[b"SET", b"z", b"1"],
        &[b"SELECT", b"0"],
        &[b"MULTI"],
        &[b"SET", b"b", b"1"],
        &[b"CONFIG", b"GET", b"databases"],
        &[b"FLUSHALL"],
        &[b"SET", b"c", b"1"],
        &[b"EXEC"],
        &[b"MGET", b"a", b"b", b"c"],
        &[b"SELECT", b"2"],
        &[b"DBSIZE"],
    ])
    .await;
}

#[tokio::test]
async fn time_queues_in_multi() {
    let kw = Keyway::start().await;
    let mut k = kw.raw().await;
    k.check("MULTI", "+OK\r\n").await;
    k.check("TIME", "+QUEUED\r\n").await;
    k.check("PING", "+QUEUED\r\n").await;
    k.send(b"EXEC\r\n").await;
    let r = String::from_utf8_lossy(&k.reply().await).into_owned();
    assert!(r.starts_with("*2\r\n*2\r\n$10\r\n"), "{r}");
    assert!(r.ends_with("+PONG\r\n"), "{r}");
}

#[tokio::test]
async fn streams_trim_by_whole_nodes_and_autoclaim_counts_deleted_entries() {
    // XAUTOCLAIM: deleted entries count toward COUNT, and the cursor is
    // the next pending entry.
    let mut commands: Vec<String> = [
        "XADD x 1-0 f v",
        "XADD x 2-0 f v",
        "XADD x 3-0 f v",
        "XGROUP CREATE x g 0",
        "XREADGROUP GROUP g c1 STREAMS x >",
        "XDEL x 1-0 2-0",
        "XAUTOCLAIM x g c2 0 0-0 COUNT 1",
        "XAUTOCLAIM x g c2 0 0-0 COUNT 2",
        "XAUTOCLAIM x g c2 0 0-0 COUNT 10",
        "XPENDING x g",
    ]
    .map(String::from)
    .to_vec();
    // `~` removes whole nodes of stream-node-max-entries (100) entries.
    commands.extend((1..=1000).map(|i| format!("XADD t {i}-0 f v")));
    commands.extend(
        [
            "XTRIM t MAXLEN ~ 444 LIMIT 250",
            "XTRIM t MAXLEN ~ 444 LIMIT 300",
            "XLEN t",
            "XTRIM t MAXLEN ~ 444",
            "XLEN t",
            "XTRIM t MAXLEN = 444",
            "XLEN t",
        ]
        .map(String::from),
    );
    commands.extend((1..=300).map(|i| format!("XADD u {i}-0 f v")));
    commands.extend(
        [
            "XDEL u 1-0 2-0 150-0",
            "XTRIM u MINID ~ 150-0",
            "XLEN u",
            "XTRIM u MINID ~ 201-0",
            "XLEN u",
            "XADD u MAXLEN ~ 10 301-0 f v",
            "XLEN u",
        ]
        .map(String::from),
    );
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    same_replies_words(&mut r, &mut k, &commands).await;
}

/// A client blocked on a list whose key a transaction turns into a string
/// stays blocked (and times out), as in Redis; it is not sent WRONGTYPE.
#[tokio::test]
async fn a_blocked_client_outlives_its_key_changing_type() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut got = Vec::new();
    for (mut a, mut b) in [
        (redis.raw().await, redis.raw().await),
        (kw.raw().await, kw.raw().await),
    ] {
        a.send(b"BLPOP bl 1\r\n").await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        b.send(b"MULTI\r\nLPUSH bl x\r\nDEL bl\r\nSET bl str\r\nEXEC\r\n")
            .await;
        for _ in 0..5 {
            b.reply().await;
        }
        got.push(a.reply().await);
    }
    assert_eq!(got[0], b"*-1\r\n");
    assert_eq!(got[1], got[0]);
}

/// A blocked XREADGROUP whose stream is deleted, retyped or flushed, or
/// whose group is destroyed, is released with Redis's errors at once.
#[tokio::test]
async fn a_blocked_xreadgroup_is_released_when_its_stream_or_group_goes() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let actions: [&[u8]; 4] = [
        b"DEL s\r\n",
        b"MULTI\r\nDEL s\r\nSET s x\r\nEXEC\r\n",
        b"FLUSHALL\r\n",
        b"XGROUP DESTROY s g\r\n",
    ];
    for action in actions {
        let mut got = Vec::new();
        for (mut a, mut b) in [
            (redis.raw().await, redis.raw().await),
            (kw.raw().await, kw.raw().await),
        ] {
            b.send(b"DEL s\r\nXADD s 1-0 f v\r\nXGROUP CREATE s g $\r\n")
                .await;
            for _ in 0..3 {
                b.reply().await;
            }
            a.send(b"XREADGROUP GROUP g c BLOCK 5000 STREAMS s >\r\n")
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            b.send(action).await;
            got.push(a.reply().await);
        }
        assert!(
            got[0].starts_with(b"-"),
            "{:?}",
            String::from_utf8_lossy(&got[0])
        );
        assert_eq!(
            String::from_utf8_lossy(&got[1]),
            String::from_utf8_lossy(&got[0]),
            "{}",
            String::from_utf8_lossy(action)
        );
    }
}

/// A key's contents, read the same way from either server: what DUMP and
/// RESTORE must carry across.
async fn contents(c: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(c).await.unwrap();
    let q = |cmd: &str| {
        let mut r = redis::cmd(cmd.split(' ').next().unwrap());
        for a in cmd.split(' ').skip(1) {
            r.arg(if a == "K" { key } else { a });
        }
        r
    };
    let v: redis::Value = match kind.as_str() {
        "string" => q("GET K").query_async(c).await.unwrap(),
        "list" => q("LRANGE K 0 -1").query_async(c).await.unwrap(),
        "set" => {
            let mut m: Vec<Vec<u8>> = q("SMEMBERS K").query_async(c).await.unwrap();
            m.sort();
            return format!("set {m:?}");
        }
        "zset" => q("ZRANGE K 0 -1 WITHSCORES").query_async(c).await.unwrap(),
        "hash" => {
            // A large hash is listed in Redis's hash order.
            let mut m: Vec<(Vec<u8>, Vec<u8>)> = q("HGETALL K").query_async(c).await.unwrap();
            m.sort();
            return format!("hash {m:?}");
        }
        "stream" => {
            let entries: redis::Value = q("XRANGE K - +").query_async(c).await.unwrap();
            let groups: redis::Value = q("XINFO GROUPS K").query_async(c).await.unwrap();
            let pending: Vec<(String, String, i64, i64)> =
                q("XPENDING K g - + 100").query_async(c).await.unwrap();
            // Idle times move between the two reads.
            let pending: Vec<_> = pending.into_iter().map(|(i, c, _, n)| (i, c, n)).collect();
            let consumers: redis::Value = q("XINFO CONSUMERS K g").query_async(c).await.unwrap();
            // Idle times move between the two reads.
            let consumers = format!("{consumers:?}")
                .split("idle")
                .next()
                .unwrap_or_default()
                .to_string();
            return format!("{entries:?} {groups:?} {pending:?} {consumers}");
        }
        other => panic!("type {other}"),
    };
    let ttl: i64 = q("PTTL K").query_async(c).await.unwrap();
    format!("{kind} {v:?} ttl>0:{}", ttl > 0)
}

#[tokio::test]
async fn dump_payloads_move_between_keyway_and_redis_both_ways() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut r = redis.direct().await;
    let mut k = kw.client().await;
    let big: String = "abcdefgh".repeat(2000);
    let setup = [
        "SET s:int 12345".to_string(),
        "SET s:neg -7".to_string(),
        format!("SET s:long {big}"),
        "SET s:ttl v EX 1000".to_string(),
        "RPUSH l:small a 1 -1000 b".to_string(),
        format!(
            "RPUSH l:big {}",
            (0..300)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "SADD set:ints 1 2 3 -70000".to_string(),
        "SADD set:strs a b c".to_string(),
        format!(
            "SADD set:big {}",
            (0..600)
                .map(|i| format!("m{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "ZADD z:small 1 a 2.5 b -inf c".to_string(),
        format!(
            "ZADD z:big {}",
            (0..200)
                .map(|i| format!("{i} m{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "HSET h:small f v n 5".to_string(),
        format!(
            "HSET h:big {}",
            (0..200)
                .map(|i| format!("f{i} v{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "HSET h:long f abcdefghabcdefghabcdefghabcdefghabcdefghabcdefghabcdefghabcdefgh"
            .to_string(),
        "XADD st 1-1 a 1 b 2".to_string(),
        "XADD st 1-2 a 3 b 4".to_string(),
        "XADD st 2-0 other 5".to_string(),
        "XADD st 3-0 a 6 b 7".to_string(),
        "XDEL st 1-2".to_string(),
        "XGROUP CREATE st g 0".to_string(),
        "XREADGROUP GROUP g alice COUNT 2 STREAMS st >".to_string(),
        "XREADGROUP GROUP g bob COUNT 1 STREAMS st >".to_string(),
        "XGROUP CREATECONSUMER st g carol".to_string(),
        "XGROUP CREATE st g2 $".to_string(),
    ];
    let keys = [
        "s:int", "s:neg", "s:long", "s:ttl", "l:small", "l:big", "set:ints", "set:strs", "set:big",
        "z:small", "z:big", "h:small", "h:big", "h:long", "st",
    ];
    for cmd in &setup {
        let mut c = redis::cmd(cmd.split(' ').next().unwrap());
        for a in cmd.split(' ').skip(1) {
            c.arg(a);
        }
        let _: redis::Value = c.query_async(&mut r).await.unwrap();
    }
    for key in keys {
        // Redis's payload into keyway.
        let payload: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut r)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut r)
            .await
            .unwrap();
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(ttl.max(0))
            .arg(&payload)
            .query_async(&mut k)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let (ours, theirs) = (contents(&mut k, key).await, contents(&mut r, key).await);
        let at = ours
            .bytes()
            .zip(theirs.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(0)
            .saturating_sub(80);
        assert!(
            ours == theirs,
            "{key}: {:.300} vs {:.300}",
            ours.get(at..).unwrap_or_default(),
            theirs.get(at..).unwrap_or_default()
        );
        // keyway's payload into Redis, under another name.
        let payload: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut k)
            .await
            .unwrap();
        let copy = format!("{key}:back");
        let _: () = redis::cmd("RESTORE")
            .arg(&copy)
            .arg(ttl.max(0))
            .arg(&payload)
            .query_async(&mut r)
            .await
            .unwrap_or_else(|e| panic!("{key} into redis: {e}"));
        let (back, original) = (contents(&mut r, &copy).await, contents(&mut r, key).await);
        assert!(
            back == original,
            "{key}: {:.300} vs {:.300}",
            back,
            original
        );
    }
    // Errors as Redis gives them.
    let mut rr = redis.raw().await;
    let mut kr = kw.raw().await;
    let good: Vec<u8> = redis::cmd("DUMP")
        .arg("s:int")
        .query_async(&mut r)
        .await
        .unwrap();
    let mut bad = good.clone();
    bad[1] ^= 1;
    common::same_replies(
        &mut rr,
        &mut kr,
        &[
            &[b"RESTORE", b"s:int", b"0", &good],
            &[b"RESTORE", b"new", b"-1", &good],
            &[b"RESTORE", b"new", b"x", &good],
            &[b"RESTORE", b"new", b"0", &bad],
            &[b"RESTORE", b"new", b"0", b"short"],
            &[b"RESTORE", b"new", b"0", &good, b"IDLETIME", b"-1"],
            &[b"RESTORE", b"new", b"0", &good, b"FREQ", b"256"],
            &[
                b"RESTORE",
                b"new",
                b"0",
                &good,
                b"FREQ",
                b"1",
                b"IDLETIME",
                b"1",
            ],
            &[b"RESTORE", b"new", b"0", &good, b"BOGUS"],
            &[
                b"RESTORE",
                b"s:int",
                b"0",
                &good,
                b"REPLACE",
                b"IDLETIME",
                b"100",
            ],
            &[b"OBJECT", b"IDLETIME", b"s:int"],
            &[b"RESTORE", b"past", b"1", &good, b"ABSTTL"],
            &[b"EXISTS", b"past"],
            &[b"DUMP", b"nosuch"],
        ],
    )
    .await;
}

fn snapshot_config(path: &std::path::Path) -> String {
    format!(
        "[backends.mem]\ntype = \"memory\"\nsnapshot = \"{}\"\n\n[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"mem\"\n",
        path.display()
    )
}

async fn run_words(c: &mut redis::aio::MultiplexedConnection, commands: &[&str]) {
    for cmd in commands {
        let mut r = redis::cmd(cmd.split(' ').next().unwrap());
        for a in cmd.split(' ').skip(1) {
            r.arg(a);
        }
        let _: redis::Value = r
            .query_async(c)
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
}

const SNAPSHOT_DATA: &[&str] = &[
    "SET s:int 12345",
    "SET s:ttl v EX 1000",
    "RPUSH l a 1 -1000 b",
    "SADD set 1 2 x",
    "ZADD z 1 a 2.5 b",
    "HSET h f v n 5",
    "XADD st 1-1 a 1",
    "XGROUP CREATE st g 0",
    "XREADGROUP GROUP g alice STREAMS st >",
];

const SNAPSHOT_LIBRARY: &str =
    "#!lua name=snaplib\nredis.register_function('snapfn', function() return 1 end)";

const SNAPSHOT_KEYS: &[&str] = &["s:int", "s:ttl", "l", "set", "z", "h", "st"];

/// SAVE writes the memory backend's snapshot in Redis's RDB format: a
/// redis-server loads it, keyway loads a redis-server's dump.rdb, and a
/// keyway that stops writes it and reads it back when it starts again.
#[tokio::test]
async fn snapshots_move_between_keyway_and_redis_both_ways() {
    let dir = std::env::temp_dir().join(format!("keyway-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("keyway.rdb");
    let kw = Keyway::with_toml(&snapshot_config(&ours)).await;
    let mut k = kw.client().await;
    run_words(&mut k, SNAPSHOT_DATA).await;
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(SNAPSHOT_LIBRARY)
        .query_async(&mut k)
        .await
        .unwrap();
    let mut raw = kw.raw().await;
    raw.check("SELECT 3", "+OK\r\n").await;
    raw.check("SET in3 three", "+OK\r\n").await;
    raw.check("SAVE", "+OK\r\n").await;
    raw.check("BGSAVE SCHEDULE x", "-ERR syntax error\r\n")
        .await;
    // keyway's file into redis-server.
    let redis =
        RedisServer::with_args(&["--dir", dir.to_str().unwrap(), "--dbfilename", "keyway.rdb"]);
    let mut r = redis.direct().await;
    for key in SNAPSHOT_KEYS {
        assert_eq!(
            contents(&mut r, key).await,
            contents(&mut k, key).await,
            "{key}"
        );
    }
    let f: i64 = redis::cmd("FCALL")
        .arg("snapfn")
        .arg(0)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(f, 1);
    let mut rr = redis.raw().await;
    rr.check("SELECT 3", "+OK\r\n").await;
    rr.check("GET in3", "$5\r\nthree\r\n").await;
    // A redis-server's own dump.rdb (its encodings: listpacks, intsets,
    // compressed strings) into keyway.
    let other =
        RedisServer::with_args(&["--dir", dir.to_str().unwrap(), "--dbfilename", "redis.rdb"]);
    let mut r = other.direct().await;
    run_words(&mut r, SNAPSHOT_DATA).await;
    let big = "abcdefgh".repeat(1000);
    run_words(&mut r, &[&format!("SET from:redis {big}")]).await;
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(SNAPSHOT_LIBRARY)
        .query_async(&mut r)
        .await
        .unwrap();
    other.raw().await.check("SAVE", "+OK\r\n").await;
    let theirs = dir.join("redis.rdb");
    let kw2 = Keyway::with_toml(&snapshot_config(&theirs)).await;
    let mut k2 = kw2.client().await;
    for key in SNAPSHOT_KEYS.iter().chain(&["from:redis"]) {
        assert_eq!(
            contents(&mut k2, key).await,
            contents(&mut r, key).await,
            "{key}"
        );
    }
    let f: i64 = redis::cmd("FCALL")
        .arg("snapfn")
        .arg(0)
        .query_async(&mut k2)
        .await
        .unwrap();
    assert_eq!(f, 1);
    // A keyway that stops writes its snapshot; the next one reads it.
    let fresh = dir.join("restart.rdb");
    let kw3 = Keyway::with_toml(&snapshot_config(&fresh)).await;
    let mut k3 = kw3.raw().await;
    k3.check("SET kept yes", "+OK\r\n").await;
    drop(k3);
    drop(kw3);
    common::until("the snapshot written at shutdown", 10, || {
        let fresh = fresh.clone();
        async move { fresh.exists() }
    })
    .await;
    let kw4 = Keyway::with_toml(&snapshot_config(&fresh)).await;
    kw4.raw().await.check("GET kept", "$3\r\nyes\r\n").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn save_without_a_snapshot_file_says_how_to_have_one() {
    let kw = Keyway::start().await;
    kw.raw()
        .await
        .check(
            "SAVE",
            "-ERR no backend here keeps a snapshot: give a memory backend `snapshot = \"path\"` (a Redis server shared by several namespaces saves by its own configuration)\r\n",
        )
        .await;
}

#[test]
fn a_damaged_snapshot_file_is_a_config_error() {
    let path = std::env::temp_dir().join(format!("keyway-bad-{}.rdb", std::process::id()));
    std::fs::write(&path, b"not a snapshot").unwrap();
    let Err(err) = keyway::ops::config::Config::parse(&snapshot_config(&path), "test.toml") else {
        panic!("a damaged snapshot is refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("test.toml") && text.contains("snapshot") && text.contains("not an RDB file"),
        "{text}"
    );
    let _ = std::fs::remove_file(&path);
}

/// CLIENT UNBLOCK ends a blocked command as a timeout would, or with
/// -UNBLOCKED, as Redis does; a client not blocked gives 0.
#[tokio::test]
async fn client_unblock_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let mut transcripts = Vec::new();
    for (mut a, mut b) in [
        (redis.raw().await, redis.raw().await),
        (kw.raw().await, kw.raw().await),
    ] {
        let mut out = Vec::new();
        a.send(&common::resp(&["CLIENT", "ID"])).await;
        let id_reply = a.reply().await;
        let id = String::from_utf8_lossy(&id_reply[1..id_reply.len() - 2]).into_owned();
        for (blocking, reason) in [
            ("BLPOP l 0", "TIMEOUT"),
            ("BLPOP l 0", "ERROR"),
            ("BLMOVE l m LEFT RIGHT 0", ""),
            ("BZPOPMIN z 0", "ERROR"),
            ("XREAD BLOCK 0 STREAMS s $", "TIMEOUT"),
            ("WAIT 1 0", "TIMEOUT"),
            ("WAIT 1 0", "ERROR"),
        ] {
            a.send(&common::resp(&blocking.split(' ').collect::<Vec<_>>()))
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut unblock = vec!["CLIENT", "UNBLOCK", id.as_str()];
            if !reason.is_empty() {
                unblock.push(reason);
            }
            b.send(&common::resp(&unblock)).await;
            out.extend(b.reply().await);
            out.extend(a.reply().await);
        }
        for cmd in [
            format!("CLIENT UNBLOCK {id}"),
            "CLIENT UNBLOCK 999999".to_string(),
            "CLIENT UNBLOCK x".to_string(),
            format!("CLIENT UNBLOCK {id} SOMETIMES"),
            "CLIENT UNBLOCK".to_string(),
        ] {
            b.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
                .await;
            out.extend(b.reply().await);
        }
        // Nothing was taken by the ended waits.
        b.send(&common::resp(&["RPUSH", "l", "x"])).await;
        out.extend(b.reply().await);
        a.send(&common::resp(&["BLPOP", "l", "1"])).await;
        out.extend(a.reply().await);
        transcripts.push(out.escape_ascii().to_string());
    }
    assert_eq!(transcripts[1], transcripts[0]);
    assert!(transcripts[0].contains("UNBLOCKED"), "{}", transcripts[0]);
}

/// INFO's persistence section and `number_of_cached_scripts`, which test
/// suites poll (`loading`, `rdb_bgsave_in_progress` after BGSAVE).
#[tokio::test]
async fn info_says_what_is_saved_and_cached_as_redis_does() {
    let dir = std::env::temp_dir().join(format!("keyway-info-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.m]\ntype = \"memory\"\nsnapshot = \"{}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
        dir.join("dump.rdb").display()
    );
    let kw = common::Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let field = |info: &str, name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} missing from {info}"))
    };
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(info.starts_with("# Persistence\r\n"), "{info}");
    assert_eq!(field(&info, "loading"), "0");
    assert_eq!(field(&info, "rdb_bgsave_in_progress"), "0");
    assert_eq!(field(&info, "aof_enabled"), "0");
    let _: String = redis::cmd("BGSAVE").query_async(&mut c).await.unwrap();
    common::until("the background save to end", 5, || {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut c)
                .await
                .unwrap();
            info.contains("rdb_bgsave_in_progress:0")
        }
    })
    .await;
    let last: i64 = redis::cmd("LASTSAVE").query_async(&mut c).await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(field(&info, "rdb_last_save_time"), last.to_string());

    let scripts = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut c)
                .await
                .unwrap();
            field(&info, "number_of_cached_scripts")
        }
    };
    assert_eq!(scripts(&mut c).await, "0");
    for body in ["return 1", "return 2", "return 1"] {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(body)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    assert_eq!(scripts(&mut c).await, "2");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(scripts(&mut c).await, "0");

    // Command stats only when asked for (or ALL), as Redis's info-command
    // unit checks; the replication offsets clients read.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let info = |args: &'static [&'static str]| {
        let mut c = c.clone();
        async move {
            let mut cmd = redis::cmd("INFO");
            cmd.arg(args);
            cmd.query_async::<String>(&mut c).await.unwrap()
        }
    };
    for args in [&[][..], &["default"], &["cpu"]] {
        assert!(!info(args).await.contains("rejected_calls"), "{args:?}");
    }
    for args in [
        &["all"][..],
        &["everything"],
        &["commandSTATS"],
        &["cpu", "all"],
    ] {
        let text = info(args).await;
        assert!(text.contains("cmdstat_set:calls=1,"), "{args:?}: {text}");
        // Commands keyway answers itself count too (the process's).
        assert!(text.contains("cmdstat_info:calls="), "{args:?}: {text}");
        assert!(text.contains("rejected_calls=0"), "{args:?}");
    }
    // Asked twice (CPU, then ALL), a section is written once.
    let text = info(&["cpu", "all"]).await;
    assert_eq!(text.matches("used_cpu_user_children").count(), 1);
    assert!(!info(&["commandstats"]).await.contains("used_memory"));
    assert!(
        info(&["replication"])
            .await
            .contains("master_repl_offset:0")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A blocked BRPOPLPUSH or BLMOVE whose destination holds another type
/// when an element arrives gets WRONGTYPE and is unblocked, the element
/// staying in its source, as with redis-server (Redis's list.tcl
/// "BRPOPLPUSH with wrong destination type" waited forever on keyway).
#[tokio::test]
async fn a_blocked_move_to_a_key_of_another_type_gets_wrongtype() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    for cmd in [
        &["BRPOPLPUSH", "blist", "target", "0"][..],
        &["BLMOVE", "blist", "target", "LEFT", "RIGHT", "0"][..],
    ] {
        let mut replies = Vec::new();
        for port in [redis.port, kw.addr.port()] {
            let connect = || async move {
                common::Raw(
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap(),
                )
            };
            let (mut blocked, mut other) = (connect().await, connect().await);
            other.line("DEL blist target").await;
            other.check("SET target nolist", "+OK\r\n").await;
            blocked.send(&common::resp(cmd)).await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            other.check("RPUSH blist foo", ":1\r\n").await;
            let got = blocked.line_within(std::time::Duration::from_secs(5)).await;
            other
                .check("LRANGE blist 0 -1", "*1\r\n$3\r\nfoo\r\n")
                .await;
            replies.push(got);
        }
        assert_eq!(
            replies[0],
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
        assert_eq!(replies[1], replies[0], "{cmd:?}");
    }
}
