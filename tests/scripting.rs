//! Lua scripting on the memory backend, with Redis's replies and error
//! texts (checked against redis-server 7.2 by hand); and SCRIPT KILL of a
//! runaway script on a redis backend.

mod common;
use std::time::Duration;

use common::Keyway;
use redis::AsyncCommands;

#[tokio::test]
async fn scripts_run_with_redis_conversions_and_errors() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    let eval = |script: &str, keys: &[&str], argv: &[&str]| {
        let n = keys.len().to_string();
        let mut words = vec!["EVAL", script, n.as_str()];
        words.extend(keys);
        words.extend(argv);
        common::resp(&words)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            eval(
                "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])",
                &["k"],
                &["v"],
            ),
            "$1\r\nv\r\n",
        ),
        // Numbers truncate, false is nil, true is 1, tables stop at nil.
        (eval("return 3.99", &[], &[]), ":3\r\n"),
        (eval("return false", &[], &[]), "$-1\r\n"),
        (eval("return true", &[], &[]), ":1\r\n"),
        (
            eval("return {1, 'two', {3}, nil, 5}", &[], &[]),
            "*3\r\n:1\r\n$3\r\ntwo\r\n*1\r\n:3\r\n",
        ),
        (eval("return {ok = 'fine'}", &[], &[]), "+fine\r\n"),
        (
            eval("return redis.status_reply('FINE')", &[], &[]),
            "+FINE\r\n",
        ),
        (
            eval("return redis.error_reply('MY failure')", &[], &[]),
            "-MY failure\r\n",
        ),
        // Replies come into Lua as Redis gives them: OK as {ok=...},
        // a missing key as false.
        (
            eval("return redis.call('set', 'x', 1)['ok']", &[], &[]),
            "$2\r\nOK\r\n",
        ),
        (
            eval("return redis.call('get', 'nosuch') == false", &[], &[]),
            ":1\r\n",
        ),
        (
            eval(
                "return {redis.call('ping'), redis.call('echo', 'e'), #redis.call('time')}",
                &[],
                &[],
            ),
            "*3\r\n+PONG\r\n$1\r\ne\r\n:2\r\n",
        ),
        (
            eval("return redis.sha1hex('')", &[], &[]),
            "$40\r\nda39a3ee5e6b4b0d3255bfef95601890afd80709\r\n",
        ),
        (eval("return #KEYS + #ARGV", &["a", "b"], &["c"]), ":3\r\n"),
        // Errors, as Redis words them.
        (
            eval("error('boom')", &[], &[]),
            "-ERR user_script:1: boom script: 82903a0434f1503e152f89c03c9acd881a0e8150, on @user_script:1.\r\n",
        ),
        (
            eval("return x +", &[], &[]),
            "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'\r\n",
        ),
        (
            eval("return foo", &[], &[]),
            "-ERR user_script:1: Script attempted to access nonexistent global variable 'foo' script: 47e30a5d10d5694f99208f9adc4fe3bf2450edbd, on @user_script:1.\r\n",
        ),
        (
            eval("return redis.call('nosuch')", &[], &[]),
            "-ERR Unknown Redis command called from script script: 206396248e12c6e742fd7296250433c8d7343b74, on @user_script:1.\r\n",
        ),
        (
            eval(
                "local x = 1\nreturn redis.call('incr', 'nokey', 'extra')",
                &[],
                &[],
            ),
            "-ERR Wrong number of args calling Redis command from script script: 525a9e9c2ceebe86d5f099bcf4013d24aa3137b1, on @user_script:2.\r\n",
        ),
        (
            eval("return redis.call('blpop','q',0)", &["q"], &[]),
            "-ERR This Redis command is not allowed from script script: b3b57e1129e2e8a9d445a143db4a8cba232ca67e, on @user_script:1.\r\n",
        ),
        (
            eval("return redis.call('get', {})", &[], &[]),
            "-ERR Lua redis lib command arguments must be strings or integers script: 4368e88f98d93af9caf358186e5fbf273374ee91, on @user_script:1.\r\n",
        ),
        (
            common::resp(&["EVAL", "return 1", "-1"]),
            "-ERR Number of keys can't be negative\r\n",
        ),
        (
            common::resp(&["EVAL", "return 1", "3", "a"]),
            "-ERR Number of keys can't be greater than number of args\r\n",
        ),
        (
            common::resp(&["EVAL_RO", "return redis.call('set','a','1')", "1", "a"]),
            "-ERR Write commands are not allowed from read-only scripts. script: 67ed14c1cb086d8c2fcf91ebe13410ba087fd0f8, on @user_script:1.\r\n",
        ),
        (
            common::resp(&["EVALSHA", "abcdef", "0"]),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ),
    ];
    for (request, reply) in cases {
        c.send(&request).await;
        c.expect(reply).await;
    }
    // A command error: raised by redis.call with Redis's suffix, returned
    // as a table by redis.pcall.
    c.check("HSET h f v", ":1\r\n").await;
    c.send(&eval("return redis.call('incr', KEYS[1])", &["h"], &[]))
        .await;
    c.expect("-WRONGTYPE Operation against a key holding the wrong kind of value script: 2bab3b661081db58bd2341920e0ba7cf5dc77b25, on @user_script:1.\r\n")
        .await;
    c.send(&eval(
        "return redis.pcall('incr', KEYS[1])['err']",
        &["h"],
        &[],
    ))
    .await;
    c.expect("$65\r\nWRONGTYPE Operation against a key holding the wrong kind of value\r\n")
        .await;
}

#[tokio::test]
async fn script_cache_and_a_real_clients_script_helper() {
    let kw = Keyway::start().await;
    let mut raw = kw.raw().await;
    raw.send(&common::resp(&["SCRIPT", "LOAD", "return x +"]))
        .await;
    raw.expect(
        "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'\r\n",
    )
    .await;
    raw.send(&common::resp(&["SCRIPT", "LOAD", "return 'hi'"]))
        .await;
    raw.expect("$40\r\n2f31ba2bb6d6a0f42cc159d2e2dad55440778de3\r\n")
        .await;
    raw.check(
        "EVALSHA 2F31BA2BB6D6A0F42CC159D2E2DAD55440778DE3 0",
        "$2\r\nhi\r\n",
    )
    .await;
    raw.check(
        "SCRIPT EXISTS 2f31ba2bb6d6a0f42cc159d2e2dad55440778de3 ffff",
        "*2\r\n:1\r\n:0\r\n",
    )
    .await;
    raw.check(
        "SCRIPT FLUSH BAD",
        "-ERR SCRIPT FLUSH only support SYNC|ASYNC option\r\n",
    )
    .await;
    raw.check("SCRIPT FLUSH", "+OK\r\n").await;
    raw.check(
        "SCRIPT EXISTS 2f31ba2bb6d6a0f42cc159d2e2dad55440778de3",
        "*1\r\n:0\r\n",
    )
    .await;
    raw.check(
        "SCRIPT KILL",
        "-NOTBUSY No scripts in execution right now.\r\n",
    )
    .await;

    // The redis crate's Script: EVALSHA, then EVAL on NOSCRIPT. A lock
    // release as lock libraries write it.
    let mut c = kw.client().await;
    let release = redis::Script::new(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
    );
    let _: () = c.set("lock", "me").await.unwrap();
    let n: i64 = release
        .key("lock")
        .arg("you")
        .invoke_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 = release
        .key("lock")
        .arg("me")
        .invoke_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let gone: bool = c.exists("lock").await.unwrap();
    assert!(!gone);
}

#[tokio::test]
async fn a_scripts_push_serves_a_blocked_client() {
    let kw = Keyway::start().await;
    let mut waiter = kw.raw().await;
    waiter.send(&common::resp(&["BLPOP", "jobs", "5"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = kw.raw().await;
    c.send(&common::resp(&[
        "EVAL",
        "return redis.call('rpush', KEYS[1], ARGV[1])",
        "1",
        "jobs",
        "job-1",
    ]))
    .await;
    c.expect(":1\r\n").await;
    waiter.expect("*2\r\n$4\r\njobs\r\n$5\r\njob-1\r\n").await;
}

/// A script holds the store while it runs, so one that never ends would
/// stop every client: keyway stops it after 5 s, and serves on.
#[tokio::test]
async fn a_script_that_never_ends_is_stopped() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.send(&common::resp(&["EVAL", "while true do end", "0"]))
        .await;
    let line = c.line_within(Duration::from_secs(8)).await;
    assert_eq!(
        line,
        "-ERR user_script:1: Script ran longer than 5000 ms and was stopped; writes it made stay script: 694a5fe1ddb97a4c6a1bf299d9537c7d3d0f84e7, on @user_script:1.\r\n"
    );
    c.check("PING", "+PONG\r\n").await;
}

/// cjson as Redis gives it to scripts (compared with redis-server 7.2).
#[tokio::test]
async fn cjson_encodes_and_decodes_as_redis_does() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    let cases = [
        (
            vec![
                "EVAL",
                "return cjson.encode({1, 'a/b', true, {x = 0.1}})",
                "0",
            ],
            "$25\r\n[1,\"a\\/b\",true,{\"x\":0.1}]\r\n",
        ),
        (
            vec!["EVAL", "return cjson.encode(123456789012345)", "0"],
            "$19\r\n1.2345678901234e+14\r\n",
        ),
        // Numbers as %.14g.
        (
            vec![
                "EVAL",
                "return cjson.encode({1, 1.5, 0.1, 1e20, -0.000001, -0.00125, 100, 99999999999999, 0.0001})",
                "0",
            ],
            "$59\r\n[1,1.5,0.1,1e+20,-1e-06,-0.00125,100,99999999999999,0.0001]\r\n",
        ),
        (
            vec![
                "EVAL",
                "local t = cjson.decode(ARGV[1]) return {t.a, t.b[3], t.c == cjson.null}",
                "0",
                "{\"a\":\"x\",\"b\":[1,2,3],\"c\":null}",
            ],
            "*3\r\n$1\r\nx\r\n:3\r\n:1\r\n",
        ),
        (
            vec!["EVAL", "return cjson.encode({[1] = 1, [30] = 3})", "0"],
            "-ERR user_script:1: Cannot serialise table: excessively sparse array script: 02441f2145ef4cb7bdeb1a14c0004fcf5c9bfaad, on @user_script:1.\r\n",
        ),
        (
            vec!["EVAL", "return cjson.decode(ARGV[1])", "0", "[1,2"],
            "-ERR user_script:1: Expected comma or array end but found T_END at character 5 script: 3684ed04c5bb8f36046ee1478f879f8d73dc1bd2, on @user_script:1.\r\n",
        ),
    ];
    for (words, reply) in cases {
        c.send(&common::resp(&words)).await;
        c.expect(reply).await;
    }
}

/// bit (LuaBitOp) as Redis gives it to scripts (compared with redis-server
/// 7.2).
#[tokio::test]
async fn bit_operates_on_32_bits_as_luabitop_does() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.send(&common::resp(&[
        "EVAL",
        "return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.lshift(1, 31), bit.rshift(-1, 28), \
         bit.arshift(-256, 4), bit.tobit(2^32 + 5), bit.band(1.9, 3), bit.tohex(255, -4)}",
        "0",
    ]))
    .await;
    c.expect("*8\r\n:15\r\n:7\r\n:-2147483648\r\n:15\r\n:-16\r\n:5\r\n:2\r\n$4\r\n00FF\r\n")
        .await;
    c.send(&common::resp(&["EVAL", "return bit.band({}, 1)", "0"]))
        .await;
    c.expect("-ERR user_script:1: bad argument #1 to 'band' (number expected, got table) script: 18d3f14e4f0e7997fb804d02f496cc9bd239b58d, on @user_script:1.\r\n")
        .await;
}

/// cmsgpack as Redis gives it to scripts (compared with redis-server 7.2).
#[tokio::test]
async fn cmsgpack_packs_and_unpacks_as_redis_does() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.send(&common::resp(&[
        "EVAL",
        "return cmsgpack.pack(1, -200, 70000, 1.5, 'abc', {1, 2}, {a = true}, nil)",
        "0",
    ]))
    .await;
    let mut want = b"$26\r\n".to_vec();
    want.extend_from_slice(
        b"\x01\xd1\xff\x38\xce\x00\x01\x11\x70\xca\x3f\xc0\x00\x00\xa3abc\x92\x01\x02\x81\xa1a\xc3\xc0",
    );
    want.extend_from_slice(b"\r\n");
    let got = c.reply().await;
    assert_eq!(got, want);
    c.send(&common::resp(&[
        "EVAL",
        "local n, v = cmsgpack.unpack_one(cmsgpack.pack('x', {k = 2})) \
         local t = select(2, cmsgpack.unpack(cmsgpack.pack('x', {k = 2}))) return {n, v, t.k}",
        "0",
    ]))
    .await;
    c.expect("*3\r\n:2\r\n$1\r\nx\r\n:2\r\n").await;
}

/// A script that runs away on a Redis server behind keyway can be stopped:
/// SCRIPT KILL reaches the server past the shared connection, which waits
/// behind the script itself, and then every client is served again.
#[tokio::test]
async fn script_kill_stops_a_runaway_script_on_a_redis_backend() {
    let redis = common::RedisServer::with_args(&["--busy-reply-threshold", "100"]);
    let kw = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\ncommand_timeout_ms = 3000\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n",
        redis.port
    ))
    .await;
    let mut runner = kw.raw().await;
    runner
        .send(&common::resp(&["EVAL", "while true do end", "0"]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut killer = kw.raw().await;
    killer.check("SCRIPT KILL", "+OK\r\n").await;
    let ended = String::from_utf8_lossy(&runner.reply().await).into_owned();
    assert!(ended.contains("Script killed by user"), "{ended}");
    killer.check("PING", "+PONG\r\n").await;
    runner.check("SET k v", "+OK\r\n").await;
}
