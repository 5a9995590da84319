//! TLS for keyway's clients and protected mode (issue 18): a TLS listener
//! beside the plain one, client certificates, certificates reloaded
//! without dropping connections; clients from other hosts refused while the
//! default user has no password.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

use common::{Keyway, Raw, client_cert, outside_address, test_certs};
use keyway::ops::config::Config;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certs(name: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("keyway-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    test_certs(&dir);
    client_cert(&dir);
    Dir(dir)
}

fn tls_config(dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n\
         [server.tls]\ncert_file = \"{0}/server.crt\"\nkey_file = \"{0}/server.key\"\n{extra}\n\
         [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n",
        dir.display()
    )
}

/// redis-cli over TLS, trusting the test CA; its output. Run as a child
/// the test awaits, so that keyway (on the test's runtime) serves it.
async fn cli(dir: &Path, port: u16, cert: bool, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["--tls", "--cacert"])
        .arg(dir.join("ca.crt"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if cert {
        cmd.arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"));
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.args(args).output())
        .await
        .expect("redis-cli answers in time")
        .expect("redis-cli runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn tls_client(
    dir: &Path,
    port: u16,
    cert: bool,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let certs = redis::TlsCertificates {
        client_tls: cert.then(|| redis::ClientTlsConfig {
            client_cert: std::fs::read(dir.join("client.crt")).unwrap(),
            client_key: std::fs::read(dir.join("client.key")).unwrap(),
        }),
        root_cert: Some(std::fs::read(dir.join("ca.crt")).unwrap()),
    };
    let client = redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}/"), certs)?;
    client
        .get_multiplexed_async_connection_with_config(&common::patient())
        .await
}

#[tokio::test]
async fn tls_and_plain_clients_side_by_side() {
    let dir = certs("tls");
    let kw = Keyway::with_toml(&tls_config(&dir.0, "")).await;
    let port = kw.shared.tls_local_addr.expect("TLS listener").port();
    assert_eq!(
        cli(&dir.0, port, false, &["SET", "k", "over-tls"])
            .await
            .trim(),
        "OK"
    );
    let mut plain = kw.raw().await;
    plain.check("GET k", "$8\r\nover-tls\r\n").await;
    // The redis crate over TLS: a large value and a long pipeline.
    let mut c = tls_client(&dir.0, port, false).await.expect("TLS connect");
    let big = "x".repeat(3 << 20);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query_async(&mut c)
        .await
        .unwrap();
    let back: String = redis::cmd("GET")
        .arg("big")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(back.len(), big.len());
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("INCR").arg("n").ignore();
        if i == 1999 {
            pipe.cmd("GET").arg("n");
        }
    }
    let (n,): (i64,) = pipe.query_async(&mut c).await.unwrap();
    assert_eq!(n, 2000);
    // Plain RESP on the TLS port is no TLS handshake: a TLS alert (record
    // type 21), never a reply, and the connection closes.
    let mut wrong = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut wrong, b"PING\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut wrong, &mut got),
    )
    .await
    .expect("closed in time")
    .ok();
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    // The plain listener still serves.
    plain.check("PING", "+PONG\r\n").await;
}

#[tokio::test]
async fn client_certificates_when_asked_for() {
    let dir = certs("mtls");
    let ca = format!("ca_file = \"{}/ca.crt\"", dir.0.display());
    let kw = Keyway::with_toml(&tls_config(&dir.0, &ca)).await;
    let port = kw.shared.tls_local_addr.unwrap().port();
    // Without a certificate: refused in the handshake, or (TLS 1.3, where
    // the client's half ends first) at the first command.
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        match tls_client(&dir.0, port, false).await {
            Err(_) => true,
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_err(),
        }
    })
    .await
    .expect("refused in time");
    assert!(refused);
    let out = cli(&dir.0, port, false, &["PING"]).await;
    assert!(!out.contains("PONG"), "{out}");
    assert_eq!(cli(&dir.0, port, true, &["PING"]).await.trim(), "PONG");
    let mut c = tls_client(&dir.0, port, true)
        .await
        .expect("with a certificate");
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    // Optional: with or without.
    let optional = format!("{ca}\nauth_clients = \"optional\"");
    let kw = Keyway::with_toml(&tls_config(&dir.0, &optional)).await;
    let port = kw.shared.tls_local_addr.unwrap().port();
    assert_eq!(cli(&dir.0, port, false, &["PING"]).await.trim(), "PONG");
    assert_eq!(cli(&dir.0, port, true, &["PING"]).await.trim(), "PONG");
}

#[tokio::test]
async fn a_reload_takes_a_new_certificate_without_dropping_clients() {
    let dir = certs("tlsreload");
    let path = dir.0.join("keyway.toml");
    std::fs::write(&path, tls_config(&dir.0, "")).unwrap();
    let kw = Keyway::from_file(&path).await;
    let port = kw.shared.tls_local_addr.unwrap().port();
    let mut before = tls_client(&dir.0, port, false).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query_async(&mut before)
        .await
        .unwrap();
    // A new CA and certificate in the same files.
    let old_ca = std::fs::read(dir.0.join("ca.crt")).unwrap();
    test_certs(&dir.0);
    assert_ne!(old_ca, std::fs::read(dir.0.join("ca.crt")).unwrap());
    assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    // The open connection goes on; new ones get the new certificate.
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut before)
        .await
        .unwrap();
    assert_eq!(v, "1");
    assert_eq!(cli(&dir.0, port, false, &["GET", "k"]).await.trim(), "1");
    // A reload with a broken key is refused, and TLS goes on.
    std::fs::write(dir.0.join("server.key"), "not a key").unwrap();
    assert!(matches!(
        kw.ops.reload(),
        keyway::ops::reload::Outcome::Rejected(e) if e.contains("server.tls.key_file")
    ));
    assert_eq!(cli(&dir.0, port, false, &["GET", "k"]).await.trim(), "1");
}

#[test]
fn tls_settings_are_checked_with_the_config() {
    let e = Config::parse(
        "[server]\ntls_listen = \"nowhere\"\n[server.tls]\nca_file = \"/nonexistent/ca.crt\"\n\
         [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"m\"\n",
        "k.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("k.toml: server.tls_listen: 'nowhere' is not an address"),
        "{e}"
    );
    assert!(
        e.contains("k.toml: server.tls.cert_file: is required with tls_listen"),
        "{e}"
    );
    assert!(
        e.contains("k.toml: server.tls.key_file: is required with tls_listen"),
        "{e}"
    );
    let e = Config::parse(
        "[server]\ntls_listen = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"/nonexistent.crt\"\nkey_file = \"/nonexistent.key\"\n\
         [backends.m]\ntype = \"memory\"\n[[namespaces]]\nname = \"a\"\nprefix = \"\"\nbackend = \"m\"\n",
        "k.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("k.toml: server.tls.cert_file: cannot read '/nonexistent.crt'"),
        "{e}"
    );
}

const DENIED_START: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user.";

async fn from_outside(kw: &Keyway) -> Raw {
    let port = kw.addr.port();
    Raw(tokio::net::TcpStream::connect((outside_address(), port))
        .await
        .expect("connect from outside"))
}

fn open_config(server: &str) -> Config {
    Config::parse(
        &format!(
            "[server]\n{server}\n[backends.m]\ntype = \"memory\"\n\
             [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n"
        ),
        "t.toml",
    )
    .unwrap()
}

#[tokio::test]
async fn protected_mode_refuses_other_hosts_without_a_password() {
    let kw = Keyway::with_config_at(open_config(""), "0.0.0.0:0").await;
    let mut outside = from_outside(&kw).await;
    let line = outside.line_within(Duration::from_secs(5)).await;
    assert!(line.starts_with(DENIED_START), "{line}");
    assert!(
        line.ends_with("accepting connections from the outside.\r\n"),
        "{line}"
    );
    outside.expect_closed().await;
    // Loopback clients are served.
    let mut local = Raw(
        tokio::net::TcpStream::connect(("127.0.0.1", kw.addr.port()))
            .await
            .unwrap(),
    );
    local.check("PING", "+PONG\r\n").await;

    // With a password, other hosts may log in.
    let kw = Keyway::with_config_at(open_config("password = \"pw\""), "0.0.0.0:0").await;
    let mut outside = from_outside(&kw).await;
    outside
        .check("PING", "-NOAUTH Authentication required.\r\n")
        .await;
    outside.check("AUTH pw", "+OK\r\n").await;

    // protected_mode = false: anyone.
    let kw = Keyway::with_config_at(open_config("protected_mode = false"), "0.0.0.0:0").await;
    let mut outside = from_outside(&kw).await;
    outside.check("PING", "+PONG\r\n").await;
}
