//! The probes against real servers: TCP listeners, HTTP servers that
//! answer well, wrongly or with garbage, and a real TLS server (openssl
//! s_server) for SSL_GET.
//!
//! Every test runs inside a network namespace of its own (the test binary
//! re-runs itself there with `ip netns exec`), on 198.18.0.1 on that
//! namespace's loopback: no traffic outside it. So these tests need root,
//! like the end-to-end tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checker::conf::{Http, HttpProtocol, Target, Url};
use checker::probe::{http, tcp, Outcome};

const INSIDE: &str = "UVS_PROBE_TEST_NETNS";
const ADDR: &str = "198.18.0.1";

/// Runs test `name` of this binary inside a fresh namespace (named with
/// `tag`, unique per test); true when this call was the outer one (the
/// caller then returns).
fn in_netns(name: &str, tag: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return false;
    }
    let ns = format!("uvsprobe{}{tag}", std::process::id() % 100_000);
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(Stdio::null())
        .status();
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{ADDR}/32"), "dev", "lo"]);
    let exe = std::env::current_exe().unwrap();
    // The inner run's output is kept apart: its "test result" line must
    // not be counted as a second test.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap();
    ip(&["netns", "del", &ns]);
    assert!(
        out.status.success(),
        "{name} failed inside its namespace:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn listener() -> TcpListener {
    TcpListener::bind(format!("{ADDR}:0")).unwrap()
}

/// A one-connection-at-a-time server answering every request with `reply`.
fn serve(reply: &'static [u8]) -> SocketAddr {
    let l = listener();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    addr
}

fn target(addr: SocketAddr) -> Target {
    Target {
        addr,
        bindto: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        connect_timeout: Duration::from_secs(2),
    }
}

fn get(addr: SocketAddr, status: Vec<(u16, u16)>, digest: Option<&str>, tls: bool) -> Http {
    Http {
        target: target(addr),
        tls,
        protocol: HttpProtocol::V10,
        sni: false,
        fast_recovery: false,
        urls: vec![Url {
            path: "/blob".into(),
            status,
            digest: digest.map(str::to_string),
            host: addr.to_string(),
        }],
    }
}

const PASS: Outcome = Outcome::Pass { dynamic: None };
/// MD5("hello") as `genhash` prints it.
const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

#[test]
fn tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one() {
    if in_netns(
        "tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one",
        "t",
    ) {
        return;
    }
    let l = listener();
    let addr = l.local_addr().unwrap();
    assert_eq!(tcp::check(&target(addr)), PASS);
    drop(l);
    let out = tcp::check(&target(addr));
    assert!(
        matches!(&out, Outcome::Fail(m) if m.contains("refused")),
        "{out:?}"
    );
    // A bind address that is not ours: the round is skipped, not counted.
    let l = listener();
    let mut t = target(l.local_addr().unwrap());
    t.bindto = Some("198.18.255.254".parse().unwrap());
    assert!(matches!(tcp::check(&t), Outcome::Skip(_)));
}

#[test]
fn http_get_judges_status_code_digest_and_content_length() {
    if in_netns("http_get_judges_status_code_digest_and_content_length", "h") {
        return;
    }
    let ok = serve(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello");
    assert_eq!(
        http::check(&get(ok, vec![(200, 299)], Some(HELLO_MD5), false), 0),
        PASS
    );
    let bad_digest = http::check(&get(ok, vec![(200, 299)], Some(&"0".repeat(32)), false), 0);
    assert!(
        matches!(&bad_digest, Outcome::Fail(m) if m.contains(HELLO_MD5)),
        "{bad_digest:?}"
    );
    let wrong_code = http::check(&get(ok, vec![(300, 399)], None, false), 0);
    assert!(
        matches!(&wrong_code, Outcome::Fail(m) if m.contains("status code 200")),
        "{wrong_code:?}"
    );
    let longer = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more");
    assert_eq!(
        http::check(&get(longer, vec![(200, 200)], Some(HELLO_MD5), false), 0),
        PASS
    );
}

#[test]
fn garbage_and_silence_are_failures() {
    if in_netns("garbage_and_silence_are_failures", "g") {
        return;
    }
    for reply in [
        &b"\x00\x01garbage\r\n\r\n"[..],
        b"",
        b"HTTP/1.0 abc\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nno end",
    ] {
        let a = serve(reply);
        let out = http::check(&get(a, vec![(200, 299)], None, false), 0);
        assert!(matches!(out, Outcome::Fail(_)), "{reply:?} -> {out:?}");
    }
    // A server that accepts and never answers: failure after connect_timeout.
    let l = listener();
    let out = http::check(
        &get(l.local_addr().unwrap(), vec![(200, 299)], None, false),
        0,
    );
    assert!(
        matches!(&out, Outcome::Fail(m) if m.contains("timed out")),
        "{out:?}"
    );
}

/// A real TLS server (openssl s_server) with a self-signed certificate:
/// SSL_GET passes without verifying it and checks the digest.
#[test]
fn ssl_get_against_openssl_s_server() {
    if in_netns("ssl_get_against_openssl_s_server", "s") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("uvs-ssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rs",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (Debian package openssl)");
    assert!(st.success());
    std::fs::write(dir.join("blob"), "hello").unwrap();
    let port = listener().local_addr().unwrap().port();
    let mut server = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &format!("{ADDR}:{port}")])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("{ADDR}:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let good = http::check(&get(addr, vec![(200, 299)], Some(HELLO_MD5), true), 0);
    let bad = http::check(&get(addr, vec![(200, 299)], Some(&"1".repeat(32)), true), 0);
    // Plain HTTP to a TLS port is garbage to the checker.
    let plain = http::check(&get(addr, vec![(200, 299)], None, false), 0);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(good, PASS);
    assert!(matches!(bad, Outcome::Fail(_)), "{bad:?}");
    assert!(matches!(plain, Outcome::Fail(_)), "{plain:?}");
}
