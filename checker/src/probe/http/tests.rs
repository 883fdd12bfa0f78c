use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::conf::Target;

/// A one-connection-at-a-time server answering every request with `reply`.
fn serve(reply: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
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

fn http(addr: SocketAddr, status: Vec<(u16, u16)>, digest: Option<&str>, tls: bool) -> Http {
    Http {
        target: Target {
            addr,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            connect_timeout: Duration::from_secs(2),
        },
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

/// MD5("hello") as `genhash` prints it.
const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

#[test]
fn keepalived_request_bytes() {
    let mut h = http(
        "198.18.1.11:80".parse().unwrap(),
        vec![(200, 299)],
        None,
        false,
    );
    assert_eq!(
        request(&h, &h.urls[0]),
        "GET /blob HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.18.1.11:80\r\n\r\n"
    );
    h.protocol = HttpProtocol::V11;
    assert!(request(&h, &h.urls[0])
        .starts_with("GET /blob HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"));
}

#[test]
fn status_and_digest_decide() {
    let ok = serve(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello");
    assert_eq!(
        check(&http(ok, vec![(200, 299)], Some(HELLO_MD5), false), 0),
        Outcome::Pass { dynamic: None }
    );
    let bad_digest = check(&http(ok, vec![(200, 299)], Some(&"0".repeat(32)), false), 0);
    assert!(
        matches!(&bad_digest, Outcome::Fail(m) if m.contains(HELLO_MD5)),
        "{bad_digest:?}"
    );
    let wrong_code = check(&http(ok, vec![(300, 399)], None, false), 0);
    assert!(
        matches!(&wrong_code, Outcome::Fail(m) if m.contains("status code 200")),
        "{wrong_code:?}"
    );
}

#[test]
fn content_length_bounds_the_hashed_body() {
    let a = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more");
    assert_eq!(
        check(&http(a, vec![(200, 200)], Some(HELLO_MD5), false), 0),
        Outcome::Pass { dynamic: None }
    );
}

#[test]
fn garbage_and_silence_are_failures() {
    for reply in [
        &b"\x00\x01garbage\r\n\r\n"[..],
        b"",
        b"HTTP/1.0 abc\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nno end",
    ] {
        let a = serve(reply);
        let out = check(&http(a, vec![(200, 299)], None, false), 0);
        assert!(matches!(out, Outcome::Fail(_)), "{reply:?} -> {out:?}");
    }
    // A server that accepts and never answers: failure after connect_timeout.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t0 = Instant::now();
    let out = check(&http(addr, vec![(200, 299)], None, false), 0);
    assert!(
        matches!(&out, Outcome::Fail(m) if m.contains("timed out")),
        "{out:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    drop(l);
}

proptest::proptest! {
    #[test]
    fn any_response_bytes_are_judged_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = read_response(&mut &bytes[..]);
    }
}

/// A real TLS server (openssl s_server) with a self-signed certificate:
/// SSL_GET passes without verifying it and checks the digest.
#[test]
fn ssl_get_against_openssl_s_server() {
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
        .expect("openssl is installed (Debian package openssl, pulled by ca-certificates)");
    assert!(st.success());
    std::fs::write(dir.join("blob"), "hello").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let good = check(&http(addr, vec![(200, 299)], Some(HELLO_MD5), true), 0);
    let bad = check(
        &http(addr, vec![(200, 299)], Some(&"1".repeat(32)), true),
        0,
    );
    // Plain HTTP to a TLS port is garbage to the checker.
    let plain = check(&http(addr, vec![(200, 299)], None, false), 0);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(good, Outcome::Pass { dynamic: None });
    assert!(matches!(bad, Outcome::Fail(_)), "{bad:?}");
    assert!(matches!(plain, Outcome::Fail(_)), "{plain:?}");
}
