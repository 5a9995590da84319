//! On a Redis server that namespaces share, keyway cannot see inside a
//! server-side script: a namespace with a login of its own (a Redis ACL
//! user limited to its keys) runs scripts that Redis bounds; one without a
//! login has its scripts refused (issue 18).

mod common;

use common::{Keyway, Raw, RedisServer};

#[tokio::test]
async fn scripts_run_under_the_namespace_login_or_not_at_all() {
    let redis = RedisServer::start();
    let mut direct = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("connect"));
    direct
        .check(
            "ACL SETUSER tenantA on >pwA ~tenantA:* &tenantA:* +@all",
            "+OK\r\n",
        )
        .await;
    direct.check("SET secret S3CRET", "+OK\r\n").await;
    let kw = Keyway::with_toml(&format!(
        "[backends.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nstrip_prefix = true\nkey_prefix = \"tenantA:\"\nbackend = \"shared\"\n\
         username = \"tenantA\"\npassword = \"${{KEYWAY_TEST_UNSET_TENANT_PW:pwA}}\"\n\
         [[namespaces]]\nname = \"B\"\nprefix = \"b:\"\nstrip_prefix = true\nkey_prefix = \"tenantB:\"\nbackend = \"shared\"\n",
        redis.port
    ))
    .await;
    let mut c = kw.raw().await;
    // A's commands travel over A's login, within its keys.
    c.check("SET a:x 1", "+OK\r\n").await;
    direct.check("GET tenantA:x", "$1\r\n1\r\n").await;
    c.send(&common::resp(&[
        "EVAL",
        "return redis.call('GET', KEYS[1])",
        "1",
        "a:x",
    ]))
    .await;
    c.expect("$1\r\n1\r\n").await;
    // Reaching outside is refused by Redis's ACL, in Redis's words.
    c.send(&common::resp(&[
        "EVAL",
        "return redis.call('GET','secret')",
        "1",
        "a:x",
    ]))
    .await;
    let e = c.line_within(std::time::Duration::from_secs(5)).await;
    assert!(
        e.starts_with("-ERR The user executing the script can't access at least one of the keys"),
        "{e}"
    );
    c.send(&common::resp(&[
        "EVAL",
        "return redis.call('SET','tenantB:v','x')",
        "1",
        "a:x",
    ]))
    .await;
    let e = c.line_within(std::time::Duration::from_secs(5)).await;
    assert!(e.contains("can't access"), "{e}");
    direct.check("EXISTS tenantB:v", ":0\r\n").await;
    // B has no login of its own on the shared server: no scripts.
    c.check("SET b:v 1", "+OK\r\n").await;
    for cmd in [
        vec!["EVAL", "return 1", "1", "b:v"],
        vec![
            "EVALSHA",
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
            "1",
            "b:v",
        ],
        vec!["EVAL_RO", "return 1", "1", "b:v"],
    ] {
        c.send(&common::resp(&cmd)).await;
        c.expect("-ERR scripts are refused in namespace 'B': it shares Redis server 127.0.0.1:")
            .await;
        let rest = c.line_within(std::time::Duration::from_secs(5)).await;
        assert!(
            rest.contains("with namespace 'A', and keyway cannot see which keys a script touches there; give the namespace a username and password of its own"),
            "{rest}"
        );
    }
}

#[tokio::test]
async fn a_namespace_alone_on_its_server_runs_scripts_freely() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n",
        redis.port
    ))
    .await;
    let mut c = kw.raw().await;
    c.check("SET k v", "+OK\r\n").await;
    c.send(&common::resp(&[
        "EVAL",
        "return redis.call('GET','k')",
        "0",
    ]))
    .await;
    c.expect("$1\r\nv\r\n").await;
}
