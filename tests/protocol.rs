//! The wire: pipelining, inline commands, malformed input, limits, and the
//! connection commands clients send at connect time.

mod common;
use std::time::Duration;

use common::{Keyway, resp};
use keyway::ops::config::Config;
use keyway::wire::size::ByteSize;
use redis::AsyncCommands;

#[tokio::test]
async fn pipeline_of_ten_thousand_commands_in_one_write() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    let mut batch = Vec::new();
    let mut expected = String::new();
    for i in 0..10_000 {
        batch.extend(resp(&["INCR", "counter"]));
        expected.push_str(&format!(":{}\r\n", i + 1));
    }
    c.send(&batch).await;
    c.expect(&expected).await;
}

#[tokio::test]
async fn inline_commands() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.send(b"SET greeting \"hello world\"\r\nGET greeting\r\n\r\nPING\n")
        .await;
    c.expect("+OK\r\n$11\r\nhello world\r\n+PONG\r\n").await;
    c.send(b"GET \"unbalanced\r\n").await;
    c.expect("-ERR Protocol error: unbalanced quotes in request\r\n")
        .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn malformed_resp_gets_protocol_error_then_close() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$4\r\nPING\r\n*x\r\n",
            "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n:5\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
    ];
    let kw = Keyway::start().await;
    for (input, reply) in cases {
        let mut c = kw.raw().await;
        c.send(input).await;
        c.expect(reply).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn oversized_bulk_is_refused_from_its_header() {
    let mut config = Config::default();
    config.server.max_bulk_len = ByteSize(1024);
    let kw = Keyway::with_config(config).await;
    let mut c = kw.raw().await;
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n").await;
    c.expect("-ERR Protocol error: invalid bulk length\r\n")
        .await;
    c.expect_closed().await;
    // Exactly at the limit is fine.
    let mut c = kw.raw().await;
    let v = "x".repeat(1024);
    c.check(&format!("SET k {v}"), "+OK\r\n").await;
}

#[tokio::test]
async fn errors_keep_the_connection() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check(
        "FOO",
        "-ERR unknown command 'FOO', with args beginning with: \r\n",
    )
    .await;
    c.check("SELECT 16", "-ERR DB index is out of range\r\n")
        .await;
    c.check(
        "SELECT x",
        "-ERR value is not an integer or out of range\r\n",
    )
    .await;
    c.check("SELECT 0", "+OK\r\n").await;
    c.check(
        "AUTH secret",
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    )
    .await;
    c.check("AUTH default anything", "+OK\r\n").await;
    c.check(
        "AUTH bob pw",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    c.check("PING hi", "$2\r\nhi\r\n").await;
    c.check("ECHO x", "$1\r\nx\r\n").await;
    c.check("QUIT", "+OK\r\n").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn password_gates_commands() {
    let mut config = Config::default();
    config.server.password = Some("s3cret".into());
    let kw = Keyway::with_config(config).await;
    let mut c = kw.raw().await;
    c.check("GET a", "-NOAUTH Authentication required.\r\n")
        .await;
    c.check(
        "AUTH wrong",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    c.check("AUTH s3cret", "+OK\r\n").await;
    c.check("GET a", "$-1\r\n").await;
    c.check("RESET", "+RESET\r\n").await;
    c.check("GET a", "-NOAUTH Authentication required.\r\n")
        .await;
    let mut con = common::connect(&format!("redis://:s3cret@{}/", kw.addr))
        .await
        .unwrap();
    let _: () = con.set("k", "v").await.unwrap();
    let v: String = con.get("k").await.unwrap();
    assert_eq!(v, "v");
}

#[tokio::test]
async fn max_clients() {
    let mut config = Config::default();
    config.server.max_clients = 1;
    let kw = Keyway::with_config(config).await;
    let mut first = kw.raw().await;
    first.check("PING", "+PONG\r\n").await;
    let mut second = kw.raw().await;
    second
        .expect("-ERR max number of clients reached\r\n")
        .await;
    second.expect_closed().await;
    first.check("PING", "+PONG\r\n").await;
}

#[tokio::test]
async fn hello_switches_protocol() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("HELLO 4", "-NOPROTO unsupported protocol version\r\n")
        .await;
    c.check(
        "HELLO x",
        "-ERR Protocol version is not an integer or out of range\r\n",
    )
    .await;
    c.check("HSET h f v", ":1\r\n").await;
    c.check("HGETALL h", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n").await;
    c.check(
        "HELLO 3 SETNAME app",
        "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:3\r\n\
         $2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
    )
    .await;
    c.check("HGETALL h", "%1\r\n$1\r\nf\r\n$1\r\nv\r\n").await;
    c.check("GET nosuch", "_\r\n").await;
    c.check("CLIENT GETNAME", "$3\r\napp\r\n").await;
    c.check(
        "HRANDFIELD h 1 WITHVALUES",
        "*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    )
    .await;
    c.check(
        "HELLO 2 SETNAME a\tb",
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    c.check(
        "HELLO 2 BOGUS",
        "-ERR Syntax error in HELLO option 'BOGUS'\r\n",
    )
    .await;
}

#[tokio::test]
async fn client_subcommands() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("CLIENT GETNAME", "$-1\r\n").await;
    c.check("CLIENT SETNAME worker-1", "+OK\r\n").await;
    c.check("CLIENT GETNAME", "$8\r\nworker-1\r\n").await;
    c.check(
        "CLIENT SETNAME",
        "-ERR wrong number of arguments for 'client|setname' command\r\n",
    )
    .await;
    c.check("CLIENT SETINFO LIB-NAME redis-py", "+OK\r\n").await;
    c.check("CLIENT SETINFO LIB-VER 5.0.1", "+OK\r\n").await;
    c.check(
        "CLIENT SETINFO BOGUS x",
        "-ERR Unrecognized option 'BOGUS'\r\n",
    )
    .await;
    c.check(
        "CLIENT NOPE",
        "-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n",
    )
    .await;
    c.check("CLIENT ID", ":1\r\n").await;
    let mut con = kw.client().await;
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(info.starts_with("id="), "{info}");
    assert!(info.contains(" resp=2 "), "{info}");
}

/// The lines of CLIENT LIST, as (id, name, flags, cmd).
async fn client_list(c: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> Vec<[String; 4]> {
    let text: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg(args)
        .query_async(c)
        .await
        .unwrap();
    text.lines()
        .map(|line| {
            let field = |k: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(&format!("{k}=")[..]))
                    .unwrap_or_else(|| panic!("no {k} in {line}"))
                    .to_string()
            };
            [field("id"), field("name"), field("flags"), field("cmd")]
        })
        .collect()
}

#[tokio::test]
async fn client_list_and_kill() {
    let kw = Keyway::start().await;
    let mut worker = kw.raw().await;
    worker.check("CLIENT SETNAME worker", "+OK\r\n").await;
    worker.check("SET k v", "+OK\r\n").await;
    let mut sub = kw.raw().await;
    sub.check(
        "SUBSCRIBE news",
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    let mut admin = kw.client().await;
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("admin")
        .query_async(&mut admin)
        .await
        .unwrap();
    let all = client_list(&mut admin, &[]).await;
    let view: Vec<[&str; 3]> = all
        .iter()
        .map(|l| [&l[1][..], &l[2][..], &l[3][..]])
        .collect();
    assert_eq!(
        view,
        [
            ["worker", "N", "set"],
            ["", "P", "subscribe"],
            ["admin", "N", "client|list"]
        ]
    );
    let worker_id = all[0][0].clone();
    assert_eq!(client_list(&mut admin, &["TYPE", "pubsub"]).await.len(), 1);
    assert_eq!(client_list(&mut admin, &["TYPE", "normal"]).await.len(), 2);
    assert_eq!(client_list(&mut admin, &["TYPE", "replica"]).await.len(), 0);
    let one = client_list(&mut admin, &["ID", &worker_id, "999"]).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0][1], "worker");

    // A client waiting in BLPOP counts as blocked until it is served.
    let blocked = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let info: redis::InfoDict = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut c)
                .await
                .unwrap();
            info.get::<u64>("blocked_clients").unwrap()
        }
    };
    let mut waiter = kw.raw().await;
    waiter.send(&common::resp(&["BLPOP", "q", "5"])).await;
    let mut seen = 0;
    for _ in 0..50 {
        seen = blocked(&mut admin).await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1);
    let _: () = redis::cmd("LPUSH")
        .arg("q")
        .arg("x")
        .query_async(&mut admin)
        .await
        .unwrap();
    waiter.expect("*2\r\n$1\r\nq\r\n$1\r\nx\r\n").await;
    assert_eq!(blocked(&mut admin).await, 0);

    let mut raw = kw.raw().await;
    for (cmd, reply) in [
        (
            "CLIENT LIST TYPE bogus",
            "-ERR Unknown client type 'bogus'\r\n",
        ),
        ("CLIENT LIST ID 0", "-ERR Invalid client ID\r\n"),
        ("CLIENT KILL 1.2.3.4:5", "-ERR No such client\r\n"),
        (
            "CLIENT KILL ID -1",
            "-ERR client-id should be greater than 0\r\n",
        ),
        // Three words are the old form: an address.
        ("CLIENT KILL ID", "-ERR No such client\r\n"),
        ("CLIENT KILL ID 1 ADDR", "-ERR syntax error\r\n"),
        ("CLIENT KILL BOGUS 1", "-ERR syntax error\r\n"),
        ("CLIENT KILL ID 999", ":0\r\n"),
    ] {
        raw.check(cmd, reply).await;
    }
    // Killed, the worker's connection closes; nobody else's does.
    raw.check(&format!("CLIENT KILL ID {worker_id}"), ":1\r\n")
        .await;
    worker.expect_closed().await;
    let left = client_list(&mut admin, &[]).await;
    assert_eq!(left.len(), 4, "{left:?}");
    // SKIPME no lets a client kill itself, after its reply.
    raw.check("CLIENT KILL USER default SKIPME no MAXAGE 0", ":4\r\n")
        .await;
    raw.expect_closed().await;
    sub.expect_closed().await;
}

#[tokio::test]
async fn introspection_for_tools() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    // What redis-benchmark asks at start-up.
    c.check("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n")
        .await;
    c.check(
        "CONFIG GET appendonly",
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    )
    .await;
    c.check("CONFIG GET no-such-param", "*0\r\n").await;
    c.check(
        "CONFIG SET save x",
        "-ERR CONFIG SET failed (possibly related to argument 'save') - keyway does not persist data (the memory backend lives in the process)\r\n",
    )
    .await;
    c.check(
        "COMMAND GETKEYS MSET a 1 b 2",
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    )
    .await;
    let mut con = kw.client().await;
    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(count as usize, keyway::wire::command::table().len());
    let _: () = con.set("a", 1).await.unwrap();
    let info: redis::InfoDict = redis::cmd("INFO").query_async(&mut con).await.unwrap();
    assert_eq!(
        info.get::<String>("redis_version").as_deref(),
        Some("7.2.4")
    );
    assert_eq!(info.get::<i64>("arch_bits"), Some(64));
    assert_eq!(info.get::<i64>("cluster_enabled"), Some(0));
    assert_eq!(
        info.get::<String>("db0").as_deref(),
        Some("keys=1,expires=0,avg_ttl=0")
    );
    assert!(info.get::<i64>("connected_clients").unwrap_or(0) >= 1);
    let time: (String, String) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    assert!(time.0.parse::<u64>().unwrap() > 1_700_000_000);
}

/// COMMAND LIST with subcommands and FILTERBY, MODULE LIST, LATENCY and
/// LOLWUT answer as a Redis without modules or latency events does; SLOWLOG
/// keeps keyway's own commands (not those that may carry a password).
#[tokio::test]
async fn introspection_answers_as_a_redis_without_modules() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies(
        &mut r,
        &mut k,
        &[
            &[b"COMMAND", b"LIST", b"FILTERBY", b"MODULE", b"x"],
            &[b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT", b"nope"],
            &[
                b"COMMAND",
                b"LIST",
                b"FILTERBY",
                b"ACLCAT",
                b"list",
                b"PATTERN",
                b"l*",
            ],
            &[b"COMMAND", b"LIST", b"FILTERBY", b"PATTERN", b"getd*"],
            &[b"MODULE", b"LIST"],
            &[b"MODULE", b"NOPE"],
            &[b"LATENCY", b"LATEST"],
            &[b"LATENCY", b"HISTORY", b"command"],
            &[b"LATENCY", b"RESET"],
            &[b"LATENCY", b"DOCTOR"],
        ],
    )
    .await;
    k.send(b"COMMAND LIST\r\n").await;
    let list = String::from_utf8_lossy(&k.reply().await).into_owned();
    assert!(list.contains("$10\r\nconfig|get\r\n"), "{list}");
    k.send(b"LOLWUT\r\n").await;
    let art = String::from_utf8_lossy(&k.reply().await).into_owned();
    assert!(art.contains("Redis ver. "), "{art}");
    k.check("CONFIG SET slowlog-log-slower-than 0", "+OK\r\n")
        .await;
    k.check("SLOWLOG RESET", "+OK\r\n").await;
    k.check("AUTH secret", "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n").await;
    k.send(b"SLOWLOG GET\r\n").await;
    let log = String::from_utf8_lossy(&k.reply().await).into_owned();
    assert!(log.contains("SLOWLOG") && log.contains("RESET"), "{log}");
    assert!(!log.contains("secret"), "{log}");
    k.check("CONFIG SET slowlog-log-slower-than 10000", "+OK\r\n")
        .await;
}

/// CLIENT PAUSE WRITE holds writes back until it ends or CLIENT UNPAUSE;
/// reads go on. Its errors are Redis's.
#[tokio::test]
async fn client_pause_holds_writes_until_unpause() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies(
        &mut r,
        &mut k,
        &[
            &[b"CLIENT", b"PAUSE", b"x"],
            &[b"CLIENT", b"PAUSE", b"-1"],
            &[b"CLIENT", b"PAUSE", b"1", b"BAD"],
            &[b"CLIENT", b"PAUSE"],
            &[b"CLIENT", b"PAUSE", b"1", b"WRITE"],
            &[b"CLIENT", b"UNPAUSE"],
            &[b"CLIENT", b"UNPAUSE", b"x"],
        ],
    )
    .await;
    let (mut a, mut b, mut c) = (kw.raw().await, kw.raw().await, kw.raw().await);
    a.check("CLIENT PAUSE 60000 WRITE", "+OK\r\n").await;
    b.send(b"SET k v\r\n").await;
    c.check("GET k", "$-1\r\n").await;
    assert_eq!(b.read_for(std::time::Duration::from_millis(300)).await, "");
    a.check("CLIENT UNPAUSE", "+OK\r\n").await;
    b.expect("+OK\r\n").await;
    c.check("GET k", "$1\r\nv\r\n").await;
}

/// MONITOR shows every client's commands in Redis's format (database,
/// address, quoted arguments), never AUTH; a monitor that does not read is
/// closed once its queue (10,000 lines) is full, one that reads is not.
#[tokio::test]
async fn monitor_shows_commands_and_drops_a_monitor_that_falls_behind() {
    let kw = Keyway::start().await;
    let mut m = kw.raw().await;
    m.check("MONITOR", "+OK\r\n").await;
    let mut c = kw.raw().await;
    c.check("SELECT 3", "+OK\r\n").await;
    c.send(&resp(&["SET", "k", "a \"b\"\n"])).await;
    c.expect("+OK\r\n").await;
    c.check("AUTH secret", "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n").await;
    c.check("PING", "+PONG\r\n").await;
    let seen = m.read_for(Duration::from_millis(300)).await;
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "{seen}");
    assert!(
        lines[0].starts_with('+') && lines[0].ends_with(r#"] "SELECT" "3""#),
        "{seen}"
    );
    assert!(lines[1].contains(r#"[3 127.0.0.1:"#), "{seen}");
    assert!(lines[1].ends_with(r#"] "SET" "k" "a \"b\"\n""#), "{seen}");
    assert!(lines[2].ends_with(r#"] "PING""#), "{seen}");
    assert!(!seen.contains("secret"), "{seen}");
    // A monitor that reads keeps up with 20,000 commands.
    let batch: Vec<u8> = b"PING\r\n".repeat(1000);
    let mut got = 0;
    for _ in 0..20 {
        c.send(&batch).await;
        c.expect(&"+PONG\r\n".repeat(1000)).await;
        got += m
            .read_for(Duration::from_millis(50))
            .await
            .matches("\"PING\"")
            .count();
    }
    got += m
        .read_for(Duration::from_millis(300))
        .await
        .matches("\"PING\"")
        .count();
    assert_eq!(got, 20_000);
    // One that never reads is closed once its queue is full; keyway goes on.
    let mut idle = kw.raw().await;
    idle.check("MONITOR", "+OK\r\n").await;
    for _ in 0..200 {
        c.send(&batch).await;
        c.expect(&"+PONG\r\n".repeat(1000)).await;
    }
    // What was already written drains, then the connection ends.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncReadExt;
        let mut b = vec![0u8; 1 << 16];
        while idle.0.read(&mut b).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(drained.is_ok(), "the idle monitor was never closed");
    c.check("PING", "+PONG\r\n").await;
}

/// COMMAND INFO, DOCS and GETKEYSANDFLAGS give Redis's own key
/// specifications, flags and documentation, byte for byte, in both
/// protocols; redis-cli's `help` reads them.
#[tokio::test]
async fn command_docs_and_key_flags_as_in_redis() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    for hello in ["HELLO 2", "HELLO 3"] {
        let (mut r, mut k) = (redis.raw().await, kw.raw().await);
        // (Their HELLO replies differ by version and client ID.)
        for c in [&mut r, &mut k] {
            c.send(&common::resp(&hello.split(' ').collect::<Vec<_>>()))
                .await;
            c.reply().await;
        }
        common::same_replies_words(
            &mut r,
            &mut k,
            &[
                "COMMAND INFO get set lmove xreadgroup nosuch",
                "COMMAND DOCS get lmove nosuch",
                "COMMAND DOCS nosuch",
                "COMMAND GETKEYSANDFLAGS LMOVE a b left left",
                "COMMAND GETKEYSANDFLAGS SET k v",
                "COMMAND GETKEYSANDFLAGS SET k v GET",
                "COMMAND GETKEYSANDFLAGS BITFIELD k GET u8 0",
                "COMMAND GETKEYSANDFLAGS BITFIELD k INCRBY u8 0 1",
                "COMMAND GETKEYSANDFLAGS GEORADIUS g 0 0 1 km STORE d",
                "COMMAND GETKEYS GET",
                "COMMAND GETKEYSANDFLAGS MSET a 1 b 2",
                "COMMAND GETKEYSANDFLAGS ZUNIONSTORE d 2 a b",
                "COMMAND GETKEYSANDFLAGS SORT k STORE d",
                "COMMAND GETKEYSANDFLAGS GET",
                "COMMAND GETKEYSANDFLAGS PING",
                "COMMAND GETKEYSANDFLAGS NOSUCH",
            ],
        )
        .await;
    }
    let port = kw.addr.port().to_string();
    // Off the runtime thread: keyway answers on it.
    let help = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "help", "set"])
            .output()
            .expect("redis-cli")
    })
    .await
    .expect("redis-cli ran");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Set the string value of a key"), "{text}");
}

/// A script's commands appear in MONITOR after the EVAL, from `lua`, as
/// Redis shows them (the memory backend runs scripts itself).
#[tokio::test]
async fn monitor_shows_what_a_script_runs() {
    let kw = Keyway::start().await;
    let mut m = kw.raw().await;
    m.check("MONITOR", "+OK\r\n").await;
    let mut c = kw.raw().await;
    c.check("SELECT 2", "+OK\r\n").await;
    c.send(&resp(&[
        "EVAL",
        "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])",
        "1",
        "foo",
        "bar",
    ]))
    .await;
    c.expect("$3\r\nbar\r\n").await;
    let seen = m.read_for(Duration::from_millis(300)).await;
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 4, "{seen}");
    assert!(lines[1].contains("\"EVAL\""), "{seen}");
    assert!(
        lines[2].ends_with(r#" [2 lua] "set" "foo" "bar""#),
        "{seen}"
    );
    assert!(lines[3].ends_with(r#" [2 lua] "get" "foo""#), "{seen}");
}

/// Subscribing and messages are pushes: Redis delivers them with CLIENT
/// REPLY OFF, in RESP2 as in RESP3, while other replies stay off.
#[tokio::test]
async fn pubsub_pushes_come_through_client_reply_off() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let mut transcripts = Vec::new();
    for (mut c, mut p) in [
        (redis.raw().await, redis.raw().await),
        (kw.raw().await, kw.raw().await),
    ] {
        let mut got = String::new();
        for hello in [false, true] {
            if hello {
                // Its reply names versions and ids, which differ.
                c.send(&common::resp(&["HELLO", "3"])).await;
                c.read_for(Duration::from_millis(200)).await;
            }
            for cmd in [
                "CLIENT REPLY OFF",
                "SUBSCRIBE ch",
                "PSUBSCRIBE c*",
                "SUBSCRIBE",
                "PING",
            ] {
                c.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
                    .await;
            }
            got += &c.read_for(Duration::from_millis(200)).await;
            assert_eq!(p.line("PUBLISH ch hi").await, ":2\r\n");
            got += &c.read_for(Duration::from_millis(200)).await;
            for cmd in ["UNSUBSCRIBE ch", "PUNSUBSCRIBE c*"] {
                c.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
                    .await;
            }
            got += &c.read_for(Duration::from_millis(200)).await;
            // Back on, in RESP2 outside subscribed mode: answered.
            c.send(&common::resp(&["CLIENT", "REPLY", "ON"])).await;
            got += &c.read_for(Duration::from_millis(200)).await;
            got += "|";
        }
        transcripts.push(got);
    }
    assert_eq!(transcripts[1], transcripts[0]);
    assert!(transcripts[0].contains("pmessage"), "{}", transcripts[0]);
}
