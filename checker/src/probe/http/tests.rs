//! The request bytes and the response reader without a network; the
//! probes against real servers are in `checker/tests/probes.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::conf::Target;

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

/// MD5("hello") as `genhash` prints it.
const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

#[test]
fn responses_are_read_to_their_end_or_content_length() {
    let r = read_response(&mut &b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello"[..]).unwrap();
    assert_eq!((r.status, r.digest.as_str()), (200, HELLO_MD5));
    let r = read_response(&mut &b"HTTP/1.1 404 No\r\ncontent-length: 5\r\n\r\nhello and more"[..])
        .unwrap();
    assert_eq!((r.status, r.digest.as_str()), (404, HELLO_MD5));
    for garbage in [
        &b""[..],
        b"\x00\x01garbage\r\n\r\n",
        b"HTTP/1.0 abc\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nno end",
    ] {
        assert!(read_response(&mut &garbage[..]).is_err(), "{garbage:?}");
    }
}

#[test]
fn status_codes_and_digest_are_judged() {
    let h = http(
        "198.18.1.11:80".parse().unwrap(),
        vec![(200, 299), (304, 304)],
        Some(HELLO_MD5),
        false,
    );
    let url = &h.urls[0];
    let resp = |status, digest: &str| Response {
        status,
        digest: digest.to_string(),
    };
    assert_eq!(judge(url, &resp(204, HELLO_MD5)), Ok(()));
    assert_eq!(judge(url, &resp(304, HELLO_MD5)), Ok(()));
    assert_eq!(
        judge(url, &resp(301, HELLO_MD5)),
        Err("status code 301".into())
    );
    assert!(judge(url, &resp(200, &"0".repeat(32))).is_err());
}

proptest::proptest! {
    #[test]
    fn any_response_bytes_are_judged_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = read_response(&mut &bytes[..]);
    }
}
