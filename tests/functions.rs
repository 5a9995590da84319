//! Redis 7 functions (FUNCTION, FCALL, FCALL_RO) and what scripts share
//! with them (`#!lua` shebangs, `redis.setresp`, replies that nest without
//! end), on the memory backend compared byte for byte with a real
//! redis-server, and on a redis backend, where libraries go to every
//! server as SCRIPT does.

mod common;

use common::{Keyway, RedisServer, request, same_replies};

const LIB: &[u8] = b"#!lua name=mylib
redis.register_function('echo', function(keys, args) return args[1] end)
redis.register_function{function_name='get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}, description='reads'}
redis.register_function{function_name='put', callback=function(keys, args) return redis.call('SET', keys[1], args[1]) end, flags={'no-writes'}}";

/// The catch-all on the memory backend, `r:` keys on `redis`.
async fn memory_and_redis(redis: &RedisServer) -> Keyway {
    Keyway::with_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.local]
type = "memory"
[backends.r]
type = "redis"
url = "redis://127.0.0.1:{}"
[[namespaces]]
name = "default"
prefix = ""
backend = "local"
[[namespaces]]
name = "rr"
prefix = "r:"
backend = "r"
"#,
        redis.port
    ))
    .await
}

#[tokio::test]
async fn functions_load_run_and_fail_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let one = b"#!lua name=one\nredis.register_function{function_name='f1', callback=function() return 1 end, description='d'}";
    same_replies(
        &mut r,
        &mut k,
        &[
            &[b"FUNCTION", b"FLUSH"],
            &[b"FUNCTION", b"LOAD", LIB],
            &[b"FUNCTION", b"LOAD", LIB],
            &[b"FUNCTION", b"LOAD", b"REPLACE", LIB],
            &[b"SET", b"k", b"v"],
            &[b"FCALL", b"echo", b"0", b"hello"],
            &[b"FCALL_RO", b"get", b"1", b"k"],
            &[b"FCALL_RO", b"echo", b"0", b"x"],
            &[b"FCALL", b"put", b"1", b"k", b"w"],
            &[b"FCALL", b"nosuch", b"0"],
            &[b"FCALL", b"echo", b"notanumber"],
            &[b"FCALL", b"echo", b"-1"],
            &[b"FCALL", b"echo", b"5", b"a"],
            &[b"FUNCTION", b"LOAD", one],
            &[b"FUNCTION", b"LIST", b"LIBRARYNAME", b"one"],
            &[b"FUNCTION", b"LIST", b"WITHCODE", b"LIBRARYNAME", b"one"],
            &[b"FUNCTION", b"STATS"],
            &[b"FUNCTION", b"DELETE", b"one"],
            &[b"FUNCTION", b"DELETE", b"one"],
            &[b"FUNCTION", b"KILL"],
            &[b"FUNCTION", b"NOPE"],
            &[b"FUNCTION", b"LOAD", b"k2", b"-1", b"k1"],
            &[b"FUNCTION", b"LOAD", b"REPLACE", b"REPLACE", LIB],
            &[b"FUNCTION", b"RESTORE", b"garbage"],
            // Libraries that do not load, each with Redis's words.
            &[b"FUNCTION", b"LOAD", b"#!lua name=bad\nreturn 1"],
            &[b"FUNCTION", b"LOAD", b"#!lua\nredis.register_function('x', function() end)"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x foo=bar\nredis.register_function('x', function() end)"],
            &[b"FUNCTION", b"LOAD", b"#!js name=x\nredis.register_function('x', function() end)"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.register_function('echo', function() end)"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.call('ping')"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.register_function('a b', function() end)"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.register_function{function_name='z', callback=function() end, flags={'bad'}}"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nerror('boom')"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nlocal f = function() return 1 end\nredis.register_function('f2', f)\nredis.register_function('f2', f)"],
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.register_function('f3', 'notafunction')"],
            // A library that never stops loading is stopped, as Redis
            // stops it after 500 ms, and the server goes on.
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.register_function('f', function() return 1 end)\nwhile true do end"],
            &[b"FUNCTION", b"LIST", b"LIBRARYNAME", b"x"],
            &[b"FUNCTION", b"FLUSH", b"LATER"],
            &[b"FUNCTION", b"flush", b"SYNC", b"SYNC"],
            &[b"FUNCTION", b"FLUSH", b"ASYNC"],
            &[b"FUNCTION", b"LIST"],
        ],
    )
    .await;
}

#[tokio::test]
async fn a_dump_of_redis_restores_into_keyway_and_back() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let lib = b"#!lua name=dl\nredis.register_function{function_name='df', callback=function(keys, args) return 'dumped' end, flags={'no-writes'}, description='desc'}";
    r.send(&request(&[b"FUNCTION", b"LOAD", lib])).await;
    assert_eq!(r.reply().await, b"$2\r\ndl\r\n");
    // Redis's payload: LZF-compressed code, RDB version, CRC64.
    r.send(&request(&[b"FUNCTION", b"DUMP"])).await;
    let dumped = r.reply().await;
    let head = dumped.iter().position(|&b| b == b'\n').unwrap() + 1;
    let payload = &dumped[head..dumped.len() - 2];
    same_replies(
        &mut r,
        &mut k,
        &[
            &[b"FUNCTION", b"RESTORE", payload, b"BAD"],
            &[b"FUNCTION", b"RESTORE", &payload[..payload.len() - 1]],
            &[b"FUNCTION", b"RESTORE", payload, b"FLUSH"],
            &[b"FUNCTION", b"RESTORE", payload],
            &[b"FUNCTION", b"RESTORE", payload, b"APPEND"],
            &[b"FUNCTION", b"RESTORE", payload, b"REPLACE"],
            &[b"FCALL_RO", b"df", b"0"],
            &[b"FUNCTION", b"LIST", b"WITHCODE"],
        ],
    )
    .await;
    // keyway's own dump loads into Redis.
    k.send(&request(&[b"FUNCTION", b"DUMP"])).await;
    let ours = k.reply().await;
    let head = ours.iter().position(|&b| b == b'\n').unwrap() + 1;
    r.send(&request(&[b"FUNCTION", b"FLUSH"])).await;
    r.reply().await;
    r.send(&request(&[
        b"FUNCTION",
        b"RESTORE",
        &ours[head..ours.len() - 2],
    ]))
    .await;
    assert_eq!(r.reply().await, b"+OK\r\n");
    r.send(&request(&[b"FCALL", b"df", b"0"])).await;
    assert_eq!(r.reply().await, b"$6\r\ndumped\r\n");
}

#[tokio::test]
async fn shebangs_setresp_and_cjson_switches_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    same_replies(
        &mut r,
        &mut k,
        &[
            &[b"HSET", b"h", b"a", b"1"],
            &[b"SADD", b"s", b"x"],
            &[b"ZADD", b"z", b"1.5", b"m"],
            &[b"EVAL", b"#!lua\nreturn 1", b"0"],
            &[
                b"EVAL",
                b"#!lua flags=no-writes\nreturn redis.call('set','a','b')",
                b"0",
            ],
            &[
                b"EVAL",
                b"#!lua flags=no-writes,allow-oom\nreturn redis.call('get','a')",
                b"0",
            ],
            &[b"EVAL", b"#!lua flags=\nreturn 5", b"0"],
            &[b"EVAL", b"#!lua name=x\nreturn 1", b"0"],
            &[b"EVAL", b"#!js\nreturn 1", b"0"],
            &[b"EVAL", b"#!lua flags=bad\nreturn 1", b"0"],
            &[b"EVAL", b"#!lua name=x", b"0"],
            &[b"EVAL_RO", b"#!lua\nreturn redis.call('set','a','b')", b"0"],
            &[b"EVAL_RO", b"#!lua flags=no-writes\nreturn 7", b"0"],
            &[b"EVAL", b"return false", b"0"],
            &[b"EVAL", b"return {map={a=1}}", b"0"],
            &[b"EVAL", b"return {set={a=true}}", b"0"],
            &[b"EVAL", b"return {double=3.5}", b"0"],
            &[
                b"EVAL",
                b"redis.setresp(3); return redis.call('HGETALL','h')",
                b"0",
            ],
            &[
                b"EVAL",
                b"redis.setresp(3); return redis.call('HGETALL','h').map.a",
                b"0",
            ],
            &[
                b"EVAL",
                b"redis.setresp(3); return type(redis.call('SMEMBERS','s').set)",
                b"0",
            ],
            &[
                b"EVAL",
                b"redis.setresp(3); return tostring(redis.call('ZSCORE','z','m').double)",
                b"0",
            ],
            &[
                b"EVAL",
                b"redis.setresp(3); return type(redis.call('GET','nokey'))",
                b"0",
            ],
            &[b"EVAL", b"redis.setresp(3); return false", b"0"],
            &[b"EVAL", b"redis.setresp(4)", b"0"],
            &[b"EVAL", b"redis.setresp()", b"0"],
            &[b"EVAL", b"return cjson.encode_keep_buffer({1,2})", b"0"],
            &[b"EVAL", b"return cjson.encode_keep_buffer('x')", b"0"],
            &[b"EVAL", b"return cjson.encode_keep_buffer('on')", b"0"],
        ],
    )
    .await;
}

/// A script returning a table that holds itself: Redis converts it until
/// its Lua stack runs out (7,995 levels) and ends with an error; keyway
/// must do the same without overflowing its own stack, on the memory
/// backend and when the reply comes from a redis backend.
#[tokio::test]
async fn a_reply_that_holds_itself_ends_as_in_redis() {
    let redis = RedisServer::start();
    let kw = memory_and_redis(&redis).await;
    let end: &[u8] = b"-ERR reached lua stack limit\r\n";
    let script: &[u8] = b"local t = {}; t[1] = t; return t";
    let mut r = redis.raw().await;
    r.send(&request(&[b"EVAL", script, b"0"])).await;
    let want = r.read_until(end).await;
    assert_eq!(want.len(), 7995 * 4 + end.len());
    for key in [&b"x"[..], b"r:x"] {
        let mut k = kw.raw().await;
        k.send(&request(&[b"EVAL", script, b"1", key])).await;
        assert_eq!(k.read_until(end).await, want, "key {key:?}");
        k.send(&request(&[b"PING"])).await;
        assert_eq!(k.reply().await, b"+PONG\r\n");
    }
}

#[tokio::test]
async fn libraries_go_to_every_backend_that_runs_them() {
    let redis = RedisServer::start();
    let kw = memory_and_redis(&redis).await;
    let mut k = kw.raw().await;
    let mut ask = async |args: &[&[u8]]| {
        k.send(&request(args)).await;
        String::from_utf8_lossy(&k.reply().await).into_owned()
    };
    assert_eq!(ask(&[b"FUNCTION", b"FLUSH"]).await, "+OK\r\n");
    assert_eq!(ask(&[b"FUNCTION", b"LOAD", LIB]).await, "$5\r\nmylib\r\n");
    assert_eq!(ask(&[b"SET", b"r:a", b"in-redis"]).await, "+OK\r\n");
    assert_eq!(ask(&[b"SET", b"a", b"in-memory"]).await, "+OK\r\n");
    assert_eq!(
        ask(&[b"FCALL_RO", b"get", b"1", b"r:a"]).await,
        "$8\r\nin-redis\r\n"
    );
    assert_eq!(
        ask(&[b"FCALL_RO", b"get", b"1", b"a"]).await,
        "$9\r\nin-memory\r\n"
    );
    // Loaded on the server itself, under its own name.
    let mut direct = redis.raw().await;
    direct
        .send(&request(&[b"FUNCTION", b"LIST", b"LIBRARYNAME", b"mylib"]))
        .await;
    assert!(direct.reply().await.windows(5).any(|w| w == b"mylib"));
    // A second LOAD fails on both, and says so once.
    assert_eq!(
        ask(&[b"FUNCTION", b"LOAD", LIB]).await,
        "-ERR Library 'mylib' already exists\r\n"
    );
    assert_eq!(ask(&[b"FUNCTION", b"DELETE", b"mylib"]).await, "+OK\r\n");
    assert_eq!(
        ask(&[b"FCALL", b"echo", b"1", b"r:a", b"x"]).await,
        "-ERR Function not found\r\n"
    );
    assert_eq!(
        ask(&[b"FCALL", b"echo", b"1", b"a", b"x"]).await,
        "-ERR Function not found\r\n"
    );
    assert_eq!(
        ask(&[b"FUNCTION", b"KILL"]).await,
        "-NOTBUSY No scripts in execution right now.\r\n"
    );
}

/// Function names are found whatever their case, as in Redis, and two
/// that differ only by case clash.
#[tokio::test]
async fn function_names_ignore_case() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    same_replies(
        &mut r,
        &mut k,
        &[
            &[
                b"FUNCTION",
                b"LOAD",
                b"#!lua name=lc\nredis.register_function('myfn', function(keys, args) return #keys end)",
            ],
            &[b"FCALL", b"MYFN", b"1", b"k"],
            &[b"FCALL_RO", b"MyFn", b"x"],
            &[
                b"FUNCTION",
                b"LOAD",
                b"#!lua name=uc\nredis.register_function('MYFN', function() return 2 end)",
            ],
        ],
    )
    .await;
}
