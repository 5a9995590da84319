//! Users and ACLs for keyway's clients (issue 18): logins in Redis's terms,
//! each user confined to its namespaces (or key patterns) and commands,
//! `-NOPERM` with Redis 7's texts, ACL introspection, reloads that close a
//! changed user's connections.

mod common;

use std::time::Duration;

use common::{Keyway, Raw, resp};

const NOPERM_KEY: &str =
    "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
const NOPERM_CHANNEL: &str =
    "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n";

fn config(alice_commands: &str) -> String {
    format!(
        "[server]\npassword = \"adminpw\"\n\
         [backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nbackend = \"m\"\n\
         [[namespaces]]\nname = \"B\"\nprefix = \"b:\"\nbackend = \"m\"\n\
         [[namespaces]]\nname = \"rest\"\nprefix = \"\"\nbackend = \"m\"\n\
         [[users]]\nname = \"alice\"\npassword = \"${{KEYWAY_TEST_UNSET_ALICE:alicepw}}\"\nnamespaces = [\"A\"]\ncommands = \"{alice_commands}\"\n\
         [[users]]\nname = \"bob\"\npassword_sha256 = \"{}\"\nkeys = [\"b:pub:*\"]\ncommands = \"-@all +@read +auth +client|id +acl|whoami\"\n",
        sha256_hex("bobpw")
    )
}

fn sha256_hex(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn login(kw: &Keyway, user: &str, pw: &str) -> Raw {
    let mut c = kw.raw().await;
    c.check(&format!("AUTH {user} {pw}"), "+OK\r\n").await;
    c
}

/// Every SCAN reply from cursor 0 until it comes back, concatenated.
async fn scan_all(c: &mut Raw) -> String {
    let mut cursor = "0".to_string();
    let mut all = String::new();
    loop {
        let r = reply(c, &["SCAN", &cursor, "COUNT", "1000"]).await;
        let next = r.lines().nth(2).unwrap_or("0").to_string();
        all.push_str(&r);
        if next == "0" {
            return all;
        }
        cursor = next;
    }
}

async fn reply(c: &mut Raw, words: &[&str]) -> String {
    c.send(&resp(words)).await;
    String::from_utf8_lossy(&c.reply().await).into_owned()
}

#[tokio::test]
async fn users_log_in_as_in_redis() {
    let kw = Keyway::with_toml(&config("+@all -@dangerous")).await;
    let mut c = kw.raw().await;
    c.check("GET a:x", "-NOAUTH Authentication required.\r\n")
        .await;
    c.check(
        "AUTH alice wrong",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    c.check(
        "AUTH nobody x",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    c.check("AUTH bob bobpw", "+OK\r\n").await;
    c.check("ACL WHOAMI", "$3\r\nbob\r\n").await;
    // The server's password is the default user's.
    c.check("AUTH adminpw", "+OK\r\n").await;
    c.check("ACL WHOAMI", "$7\r\ndefault\r\n").await;
    // HELLO 3 AUTH, as RESP3 clients log in.
    let mut h = kw.raw().await;
    let hello = reply(&mut h, &["HELLO", "3", "AUTH", "alice", "alicepw"]).await;
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    h.check("ACL WHOAMI", "$5\r\nalice\r\n").await;
    // RESET logs the client out, back to the default user.
    h.check("RESET", "+RESET\r\n").await;
    h.check("GET a:x", "-NOAUTH Authentication required.\r\n")
        .await;
    // CLIENT LIST shows who is who.
    let mut admin = login(&kw, "default", "adminpw").await;
    let list = reply(&mut admin, &["CLIENT", "LIST"]).await;
    assert!(
        list.contains("user=bob") || list.contains("user=default"),
        "{list}"
    );
    // A real client library logs in with a URL's user and password.
    let mut con = common::connect(&format!("redis://alice:alicepw@{}/", kw.addr))
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("a:lib")
        .arg("1")
        .query_async(&mut con)
        .await
        .unwrap();
    let denied: redis::RedisResult<String> =
        redis::cmd("GET").arg("b:lib").query_async(&mut con).await;
    let e = denied.unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e:?}");
}

#[tokio::test]
async fn an_empty_password_is_no_password() {
    let kw = Keyway::with_toml(
        "[server]\npassword = \"${KEYWAY_TEST_UNSET_PW:}\"\n[backends.m]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
    )
    .await;
    let mut c = kw.raw().await;
    c.check("PING", "+PONG\r\n").await;
    c.check(
        "AUTH x",
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    )
    .await;
}

/// One command per family of keyed commands: allowed on the user's
/// namespace, refused on another's.
#[tokio::test]
async fn a_user_is_confined_to_its_namespaces_in_every_command_family() {
    let kw = Keyway::with_toml(&config("+@all -keys -flushall")).await;
    let mut admin = login(&kw, "default", "adminpw").await;
    for setup in [
        "SET b:s v",
        "HSET b:h f v",
        "RPUSH b:l 1",
        "SADD b:set m",
        "ZADD b:z 1 m",
        "SETBIT b:bits 1 1",
        "PFADD b:hll x",
        "GEOADD b:geo 13.36 38.11 p",
        "XADD b:st 1-1 f v",
    ] {
        let r = reply(&mut admin, &setup.split(' ').collect::<Vec<_>>()).await;
        assert!(!r.starts_with('-'), "{setup}: {r}");
    }
    let mut c = login(&kw, "alice", "alicepw").await;
    let families: &[(&str, &str, &str)] = &[
        ("strings", "SET a:s v", "GET b:s"),
        ("strings (multi-key)", "MSET a:1 1 a:2 2", "MGET a:1 b:s"),
        ("hashes", "HSET a:h f v", "HGET b:h f"),
        ("lists", "RPUSH a:l 1", "LPOP b:l"),
        (
            "lists (two keys)",
            "LMOVE a:l a:l2 LEFT LEFT",
            "LMOVE a:l2 b:l LEFT LEFT",
        ),
        ("sets", "SADD a:set m", "SUNIONSTORE a:dst a:set b:set"),
        ("sorted sets", "ZADD a:z 1 m", "ZUNIONSTORE a:zd 2 a:z b:z"),
        (
            "bitmaps",
            "SETBIT a:bits 1 1",
            "BITOP OR a:bo a:bits b:bits",
        ),
        ("hyperloglog", "PFADD a:hll x", "PFMERGE a:hll b:hll"),
        (
            "geo",
            "GEOADD a:geo 13.36 38.11 p",
            "GEOSEARCH b:geo FROMLONLAT 13 38 BYRADIUS 500 km",
        ),
        (
            "streams",
            "XADD a:st 1-1 f v",
            "XREAD STREAMS a:st b:st 0 0",
        ),
        ("generic", "EXPIRE a:s 100", "RENAME a:s b:s"),
        ("sort", "SORT a:l", "SORT a:l BY b:w_*"),
        ("scripting", "EVAL return(1) 1 a:s", "EVAL return(1) 1 b:s"),
        ("blocking", "BLPOP a:l 0.01", "BLPOP a:empty b:l 0.01"),
    ];
    for (family, allowed, refused) in families {
        let ok = reply(&mut c, &allowed.split(' ').collect::<Vec<_>>()).await;
        assert!(!ok.starts_with('-'), "{family}: {allowed}: {ok}");
        let no = reply(&mut c, &refused.split(' ').collect::<Vec<_>>()).await;
        assert_eq!(no, NOPERM_KEY, "{family}: {refused}");
    }
    // Nothing of B's changed.
    admin.check("GET b:s", "$1\r\nv\r\n").await;
    admin.check("LLEN b:l", ":1\r\n").await;
    // Transactions: refused when queued, and EXEC aborts.
    c.check("MULTI", "+OK\r\n").await;
    c.check("GET b:s", NOPERM_KEY).await;
    c.check(
        "EXEC",
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    // Whole-keyspace commands see the user's namespaces only.
    c.check(
        "KEYS *",
        "-NOPERM this user has no permissions to run the 'keys' command\r\n",
    )
    .await;
    let scan = scan_all(&mut c).await;
    assert!(scan.contains("a:s") && !scan.contains("b:"), "{scan}");
    let n = reply(&mut c, &["DBSIZE"]).await;
    let all = reply(&mut admin, &["DBSIZE"]).await;
    assert!(n < all && n.starts_with(':'), "{n} of {all}");
    c.check(
        "FLUSHALL",
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n",
    )
    .await;
    // Pub/Sub: channels as keys.
    c.check("PUBLISH b:news x", NOPERM_CHANNEL).await;
    c.check("PUBLISH a:news x", ":0\r\n").await;
    c.check("PSUBSCRIBE *", NOPERM_CHANNEL).await;
    c.check("SUBSCRIBE b:news", NOPERM_CHANNEL).await;
    c.send(&resp(&["SUBSCRIBE", "a:news"])).await;
    c.expect("*3\r\n$9\r\nsubscribe\r\n$6\r\na:news\r\n:1\r\n")
        .await;
}

#[tokio::test]
async fn key_patterns_and_command_rules() {
    let kw = Keyway::with_toml(&config("+@all -@dangerous")).await;
    let mut admin = login(&kw, "default", "adminpw").await;
    admin.check("SET b:pub:1 open", "+OK\r\n").await;
    admin.check("SET b:priv closed", "+OK\r\n").await;
    let mut bob = login(&kw, "bob", "bobpw").await;
    bob.check("GET b:pub:1", "$4\r\nopen\r\n").await;
    bob.check("GET b:priv", NOPERM_KEY).await;
    bob.check(
        "SET b:pub:1 x",
        "-NOPERM this user has no permissions to run the 'set' command\r\n",
    )
    .await;
    // A script could touch any key of the namespace: not for a user with
    // only some of its keys.
    bob.check(
        "EVAL_RO return(1) 1 b:pub:1",
        "-NOPERM this user has no permissions to run the 'eval_ro' command\r\n",
    )
    .await;
    let scan = scan_all(&mut bob).await;
    assert!(
        scan.contains("b:pub:1") && !scan.contains("b:priv"),
        "{scan}"
    );
    // Subcommands are judged on their own.
    let id = reply(&mut bob, &["CLIENT", "ID"]).await;
    assert!(id.starts_with(':'), "{id}");
    bob.check(
        "CLIENT KILL ID 1",
        "-NOPERM this user has no permissions to run the 'client|kill' command\r\n",
    )
    .await;
}

#[tokio::test]
async fn acl_introspection_answers_as_redis() {
    let kw = Keyway::with_toml(&config("+@all -@dangerous")).await;
    let mut c = kw.raw().await;
    c.check(
        "AUTH alice bad",
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    let mut alice = login(&kw, "alice", "alicepw").await;
    alice.check("GET b:x", NOPERM_KEY).await;
    alice.check("GET b:x", NOPERM_KEY).await;
    let mut admin = login(&kw, "default", "adminpw").await;
    admin
        .check(
            "ACL USERS",
            "*3\r\n$5\r\nalice\r\n$3\r\nbob\r\n$7\r\ndefault\r\n",
        )
        .await;
    let list = reply(&mut admin, &["ACL", "LIST"]).await;
    assert!(list.contains("user alice on #"), "{list}");
    assert!(
        list.contains("~a:* resetchannels &a:* +@all -@dangerous"),
        "{list}"
    );
    assert!(
        list.contains(&format!("user bob on #{} ~b:pub:*", sha256_hex("bobpw"))),
        "{list}"
    );
    assert!(list.contains("user default on #"), "{list}");
    let cat = reply(&mut admin, &["ACL", "CAT"]).await;
    assert!(cat.starts_with("*21\r\n$8\r\nkeyspace\r\n"), "{cat}");
    let dangerous = reply(&mut admin, &["ACL", "CAT", "dangerous"]).await;
    assert!(
        dangerous.contains("flushall") && dangerous.contains("client|kill"),
        "{dangerous}"
    );
    admin
        .check("ACL CAT nosuch", "-ERR Unknown category 'nosuch'\r\n")
        .await;
    admin.check("ACL GETUSER nosuch", "$-1\r\n").await;
    let user = reply(&mut admin, &["ACL", "GETUSER", "alice"]).await;
    assert!(
        user.contains("flags") && user.contains("+@all -@dangerous"),
        "{user}"
    );
    admin.check("ACL DRYRUN alice GET a:1", "+OK\r\n").await;
    admin
        .check(
            "ACL DRYRUN alice GET b:1",
            "$52\r\nThis user has no permissions to access the 'b:1' key\r\n",
        )
        .await;
    admin
        .check(
            "ACL DRYRUN nosuch GET x",
            "-ERR User 'nosuch' not found\r\n",
        )
        .await;
    let genpass = reply(&mut admin, &["ACL", "GENPASS"]).await;
    assert!(genpass.starts_with("$64\r\n"), "{genpass}");
    admin.check("ACL GENPASS 5", "$2\r\n").await;
    admin.reply().await;
    let log = reply(&mut admin, &["ACL", "LOG"]).await;
    // Newest first: the key denials counted in one entry, then the login.
    assert!(log.starts_with("*2\r\n"), "{log}");
    let key = log.find("$3\r\nkey\r\n").unwrap_or(usize::MAX);
    let auth = log.find("$4\r\nauth\r\n").unwrap_or(0);
    assert!(key < auth, "{log}");
    assert!(log.contains("$5\r\ncount\r\n:2\r\n"), "{log}");
    admin.check("ACL LOG RESET", "+OK\r\n").await;
    admin.check("ACL LOG", "*0\r\n").await;
    admin
        .check(
            "ACL SAVE",
            "-ERR ACL SAVE: keyway's users are set in its config file ([[users]]); edit it and reload (SIGHUP)\r\n",
        )
        .await;
    // Per-user metrics.
    let text = keyway::wire::metrics::metrics().encode();
    assert!(
        text.contains("keyway_acl_denials_total{user=\"alice\",reason=\"key\"}"),
        "{text}"
    );
    assert!(
        text.contains("keyway_auth_failures_total{user=\"alice\"}"),
        "{text}"
    );
    assert!(
        text.contains("keyway_user_commands_total{user=\"alice\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_closes_the_connections_of_changed_users() {
    let dir = std::env::temp_dir().join(format!("keyway-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("users.toml");
    let listen = "[server]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(
        &path,
        format!("{listen}{}", config("+@all").replacen("[server]\n", "", 1)),
    )
    .unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut alice = login(&kw, "alice", "alicepw").await;
    let mut bob = login(&kw, "bob", "bobpw").await;
    // Alice loses the right to write; bob does not change.
    std::fs::write(
        &path,
        format!("{listen}{}", config("+@read").replacen("[server]\n", "", 1)),
    )
    .unwrap();
    assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    alice.expect_closed().await;
    bob.check("GET b:pub:1", "$-1\r\n").await;
    let mut again = login(&kw, "alice", "alicepw").await;
    again
        .check(
            "SET a:x 1",
            "-NOPERM this user has no permissions to run the 'set' command\r\n",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// ACL SETUSER and DELUSER at runtime, answered as redis-server answers
/// them, and applied at once to connections logged in as the user.
#[tokio::test]
async fn setuser_and_deluser_at_runtime_as_in_redis() {
    let redis = common::RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    let hash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "ACL SETUSER u1 reset on >pw ~cache:* %R~ro:* &chan:* -@all +@string +@hash",
            "ACL GETUSER u1",
            "ACL LIST",
            &format!("ACL SETUSER u1 <pw >pw2 #{hash} >pw2"),
            "ACL GETUSER u1",
            "ACL SETUSER u1 get",
            "ACL SETUSER u1 +nosuch",
            "ACL SETUSER u1 +@nosuch",
            "ACL SETUSER u1 #ABC",
            "ACL SETUSER u1 <nope",
            "ACL SETUSER u1 %X~a",
            "ACL SETUSER u1 allchannels &more",
            "ACL SETUSER u1 ~* ~more",
            "ACL GETUSER u1",
            "ACL SETUSER u2",
            "ACL GETUSER u2",
            "ACL DELUSER u2 nosuch",
            "ACL DELUSER u2",
            "ACL DELUSER default u1",
            "ACL GETUSER nosuch",
        ],
    )
    .await;
    // (redis-server 7.0 lists single commands in its hash order: one at
    // most per user above.)
    // Logged in as u1 on both.
    let (mut ur, mut uk) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut ur,
        &mut uk,
        &[
            "AUTH u1 pw",
            "AUTH u1 pw2",
            "SET cache:1 v",
            "GET cache:1",
            "GET other",
            "SET ro:1 v",
            "GET ro:1",
            "HSET cache:h f v",
            "HGETALL cache:h",
            "LPUSH cache:l v",
            "PUBLISH chan:x m",
        ],
    )
    .await;
    // AUTH is never refused by a user's rules, whatever they allow.
    common::same_replies_words(&mut r, &mut k, &["ACL SETUSER lim on >p -@all +get"]).await;
    let (mut lr, mut lk) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut lr,
        &mut lk,
        &["AUTH lim p", "SET x y", "AUTH lim p", "AUTH u1 pw2"],
    )
    .await;
    // A change applies to the logged-in connection from its next command.
    common::same_replies_words(&mut r, &mut k, &["ACL SETUSER u1 -hset +@list"]).await;
    common::same_replies_words(
        &mut ur,
        &mut uk,
        &["HSET cache:h f v", "LPUSH cache:l v", "ACL WHOAMI"],
    )
    .await;
    // Selectors: a second set of rights, either of which allows.
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "ACL SETUSER u1 (+incr ~count:*)",
            "ACL SETUSER u1 (+incr ~count:*",
            "ACL DRYRUN u1 incr count:1",
            "ACL DRYRUN u1 incr cache:1",
        ],
    )
    .await;
    common::same_replies_words(&mut ur, &mut uk, &["INCR count:1", "INCR cache:1"]).await;
    // The rules in the order given, as Redis 7.2 keeps them (7.0 lists
    // categories in an order of its own).
    let got = reply(&mut k, &["ACL", "GETUSER", "u1"]).await;
    assert!(
        got.contains("-@all +@string +@hash -hset +@list\r\n")
            && got.contains("$9\r\nselectors\r\n*1\r\n*6\r\n$8\r\ncommands\r\n$11\r\n-@all +incr\r\n$4\r\nkeys\r\n$8\r\n~count:*\r\n"),
        "{got}"
    );
    // Deleting the user closes its connections.
    common::same_replies_words(&mut r, &mut k, &["ACL DELUSER u1"]).await;
    ur.expect_closed().await;
    uk.expect_closed().await;
}
