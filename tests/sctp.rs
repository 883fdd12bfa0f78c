//! SCTP through the real worker, byte for byte: this machine's kernel has
//! no SCTP module (no socket could speak SCTP, and no namespace peer could
//! answer), so the associations are written here as exact frames (INIT,
//! INIT ACK, COOKIE ECHO, COOKIE ACK, DATA, SHUTDOWN, SHUTDOWN ACK,
//! SHUTDOWN COMPLETE, ABORT) from clients and real servers, replayed through a
//! net_pcap port into uvsd, and what uvsd sends is read back from the tx
//! capture. Checked as an operator would: every forwarded packet is the
//! expected one (NAT: addresses and ports rewritten and the CRC32c
//! recomputed, by a CRC32c written here; DR: only the TTL and the header
//! checksum changed; TUN: the client's packet inside IPIP / IPv6-in-IPv6),
//! a packet that may not start an association goes nowhere, and
//! `uvsadm -L -n -c` shows each association in its SCTP state while uvsd
//! runs. IPv4 and IPv6, NAT, DR and IPIP tunnels.

mod common;

use common::pcap::{read_pcap, write_pcap};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{leftovers, Daemon, Scratch};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];
const VTAG: u32 = 0x5eed_0001;

/// CRC32c by its bit-at-a-time definition (RFC 9260 appendix A),
/// independent of the crate uvsd uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The Internet checksum (RFC 1071).
fn csum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An SCTP packet with its CRC32c (stored little-endian).
fn sctp(sport: u16, dport: u16, chunks: &[u8]) -> Vec<u8> {
    let mut p = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &VTAG.to_be_bytes(),
        &[0; 4],
        chunks,
    ]
    .concat();
    let c = crc32c(&p);
    p[8..12].copy_from_slice(&c.to_le_bytes());
    p
}

#[derive(Clone, Copy)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// An IP packet (IPv4: id 0x1234, DF, header checksum filled).
fn ip(src: Ip, dst: Ip, ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => {
            let len = (20 + payload.len()) as u16;
            let mut h = [
                &[0x45, 0][..],
                &len.to_be_bytes(),
                &[0x12, 0x34, 0x40, 0, ttl, proto, 0, 0],
                &s,
                &d,
            ]
            .concat();
            let c = csum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            [h, payload.to_vec()].concat()
        }
        (Ip::V6(s), Ip::V6(d)) => {
            let plen = (payload.len() as u16).to_be_bytes();
            [&[0x60, 0, 0, 0][..], &plen, &[proto, ttl], &s, &d, payload].concat()
        }
        _ => unreachable!("one family per packet"),
    }
}

fn eth(dst: [u8; 6], src: [u8; 6], l3: &[u8]) -> Vec<u8> {
    let ethertype: [u8; 2] = if l3[0] >> 4 == 4 {
        [0x08, 0x00]
    } else {
        [0x86, 0xdd]
    };
    [&dst[..], &src, &ethertype, l3].concat()
}

/// Chunks (RFC 9260 3.3), well-formed.
mod chunk {
    pub const INIT: &[u8] = &[
        1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 0, 0xff, 0xff, 0, 10, 0, 10, 0, 0, 0, 1,
    ];
    pub const INIT_ACK: &[u8] = &[
        2, 0, 0, 28, 0x55, 0x66, 0x77, 0x88, 0, 0, 0xff, 0xff, 0, 10, 0, 10, 0, 0, 0, 1, 0, 7, 0,
        8, 0xc0, 0x0c, 0x1e, 0x00,
    ];
    pub const COOKIE_ECHO: &[u8] = &[10, 0, 0, 8, 0xc0, 0x0c, 0x1e, 0x00];
    pub const COOKIE_ACK: &[u8] = &[11, 0, 0, 4];
    pub const DATA: &[u8] = &[
        0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b'u', b'v', b's', b'!',
    ];
    pub const SHUTDOWN: &[u8] = &[7, 0, 0, 8, 0, 0, 0, 1];
    pub const SHUTDOWN_ACK: &[u8] = &[8, 0, 0, 4];
    pub const SHUTDOWN_COMPLETE: &[u8] = &[14, 0, 0, 4];
    /// ABORT with the T bit clear and no error cause.
    pub const ABORT: &[u8] = &[6, 0, 0, 4];
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Nat,
    Dr,
    Tun,
}

/// One association: a client port to a virtual service, and its real
/// server.
struct Assoc {
    method: Method,
    client: Ip,
    cport: u16,
    vip: Ip,
    rs: Ip,
    rs_mac: [u8; 6],
    /// (from the client?, chunk)
    steps: &'static [(bool, &'static [u8])],
    /// Its state in `uvsadm -L -n -c` at the end.
    state: &'static str,
}

const RPORT_NAT: u16 = 8080;

fn v4(d: u8) -> Ip {
    Ip::V4([198, 18, 0, d])
}

/// 2001:db8::`d` (`d` in hex, as written in the rules).
fn v6(d: u16) -> Ip {
    let [hi, lo] = d.to_be_bytes();
    Ip::V6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, hi, lo])
}

fn text(a: Ip) -> String {
    match a {
        Ip::V4(b) => std::net::Ipv4Addr::from(b).to_string(),
        Ip::V6(b) => format!("[{}]", std::net::Ipv6Addr::from(b)),
    }
}

use chunk::*;

const FULL_NAT: &[(bool, &[u8])] = &[
    (true, INIT),
    (false, INIT_ACK),
    (true, COOKIE_ECHO),
    (false, COOKIE_ACK),
    (true, DATA),
    (false, DATA),
    (true, SHUTDOWN),
    (false, SHUTDOWN_ACK),
    (true, SHUTDOWN_COMPLETE),
];
const UP_NAT: &[(bool, &[u8])] = &[
    (true, INIT),
    (false, INIT_ACK),
    (true, COOKIE_ECHO),
    (false, COOKIE_ACK),
    (true, DATA),
];
const CLOSING_NAT: &[(bool, &[u8])] = &[
    (true, INIT),
    (false, INIT_ACK),
    (true, COOKIE_ECHO),
    (false, COOKIE_ACK),
    (true, SHUTDOWN),
    (false, SHUTDOWN_ACK),
];
/// Established, then aborted by the real server or by the client.
const ABORTED_BY_SERVER: &[(bool, &[u8])] = &[
    (true, INIT),
    (false, INIT_ACK),
    (true, COOKIE_ECHO),
    (false, COOKIE_ACK),
    (true, DATA),
    (false, ABORT),
];
const ABORTED_BY_CLIENT: &[(bool, &[u8])] = &[
    (true, INIT),
    (false, INIT_ACK),
    (true, COOKIE_ECHO),
    (false, COOKIE_ACK),
    (true, ABORT),
];
/// DR and TUN: the director sees the client's side only.
const UP_CLIENT_SIDE: &[(bool, &[u8])] = &[(true, INIT), (true, COOKIE_ECHO), (true, DATA)];

fn associations() -> Vec<Assoc> {
    let a = |method, client, cport, vip, rs, rs_mac, steps, state| Assoc {
        method,
        client,
        cport,
        vip,
        rs,
        rs_mac,
        steps,
        state,
    };
    let m = |x: u8| [0x02, 0, 0, 0, 0x01, x];
    vec![
        a(
            Method::Nat,
            v4(2),
            5001,
            v4(100),
            v4(11),
            m(0x11),
            FULL_NAT,
            "CLOSED",
        ),
        a(
            Method::Nat,
            v4(2),
            5002,
            v4(100),
            v4(11),
            m(0x11),
            UP_NAT,
            "ESTABLISHED",
        ),
        a(
            Method::Dr,
            v4(2),
            5003,
            v4(101),
            v4(12),
            m(0x12),
            UP_CLIENT_SIDE,
            "ESTABLISHED",
        ),
        a(
            Method::Tun,
            v4(2),
            5004,
            v4(102),
            v4(13),
            m(0x13),
            UP_CLIENT_SIDE,
            "ESTABLISHED",
        ),
        a(
            Method::Nat,
            v6(2),
            5005,
            v6(0x100),
            v6(0x11),
            m(0x61),
            CLOSING_NAT,
            "S-ACK-SENT",
        ),
        a(
            Method::Nat,
            v6(2),
            5006,
            v6(0x100),
            v6(0x11),
            m(0x61),
            FULL_NAT,
            "CLOSED",
        ),
        a(
            Method::Dr,
            v6(2),
            5007,
            v6(0x101),
            v6(0x12),
            m(0x62),
            UP_CLIENT_SIDE,
            "ESTABLISHED",
        ),
        a(
            Method::Tun,
            v6(2),
            5008,
            v6(0x102),
            v6(0x13),
            m(0x63),
            UP_CLIENT_SIDE,
            "ESTABLISHED",
        ),
        a(
            Method::Nat,
            v4(2),
            5009,
            v4(100),
            v4(11),
            m(0x11),
            ABORTED_BY_SERVER,
            "CLOSED",
        ),
        a(
            Method::Nat,
            v6(2),
            5010,
            v6(0x100),
            v6(0x11),
            m(0x61),
            ABORTED_BY_CLIENT,
            "CLOSED",
        ),
    ]
}

const RULES: &str = "\
-A --sctp-service 198.18.0.100:80 -s rr
-a --sctp-service 198.18.0.100:80 -r 198.18.0.11:8080 -m -w 1
-A --sctp-service 198.18.0.101:80 -s rr
-a --sctp-service 198.18.0.101:80 -r 198.18.0.12:80 -g -w 1
-A --sctp-service 198.18.0.102:80 -s rr
-a --sctp-service 198.18.0.102:80 -r 198.18.0.13:80 -i -w 1
-A --sctp-service [2001:db8::100]:80 -s rr
-a --sctp-service [2001:db8::100]:80 -r [2001:db8::11]:8080 -m -w 1
-A --sctp-service [2001:db8::101]:80 -s rr
-a --sctp-service [2001:db8::101]:80 -r [2001:db8::12]:80 -g -w 1
-A --sctp-service [2001:db8::102]:80 -s rr
-a --sctp-service [2001:db8::102]:80 -r [2001:db8::13]:80 -i -w 1
";

/// A frame that must leave uvsd, and which step of which association it is.
struct Expected {
    what: String,
    frame: Vec<u8>,
}

/// What the capture sends in, and what must come out, in order.
fn traffic() -> (Vec<Vec<u8>>, Vec<Expected>) {
    let mut rx = vec![];
    let mut want = vec![];
    for a in associations() {
        let vport = 80;
        let rport = if a.method == Method::Nat {
            RPORT_NAT
        } else {
            80
        };
        for (i, &(from_client, chunk)) in a.steps.iter().enumerate() {
            let what = format!("port {} step {i} (chunk {})", a.cport, chunk[0]);
            if from_client {
                let p = ip(a.client, a.vip, 64, 132, &sctp(a.cport, vport, chunk));
                rx.push(eth(DIRECTOR_MAC, CLIENT_MAC, &p));
                let out = match a.method {
                    Method::Nat => ip(a.client, a.rs, 63, 132, &sctp(a.cport, rport, chunk)),
                    Method::Dr => ip(a.client, a.vip, 63, 132, &sctp(a.cport, vport, chunk)),
                    // The inner packet; the outer header is checked apart.
                    Method::Tun => ip(a.client, a.vip, 63, 132, &sctp(a.cport, vport, chunk)),
                };
                want.push(Expected {
                    what,
                    frame: eth(a.rs_mac, DIRECTOR_MAC, &out),
                });
            } else {
                let p = ip(a.rs, a.client, 64, 132, &sctp(rport, a.cport, chunk));
                rx.push(eth(DIRECTOR_MAC, a.rs_mac, &p));
                let out = ip(a.vip, a.client, 63, 132, &sctp(vport, a.cport, chunk));
                want.push(Expected {
                    what,
                    frame: eth(CLIENT_MAC, DIRECTOR_MAC, &out),
                });
            }
        }
        // Without an association, only an INIT may start one: a DATA
        // from a fresh port goes nowhere.
        let stray = ip(a.client, a.vip, 64, 132, &sctp(a.cport + 100, vport, DATA));
        rx.push(eth(DIRECTOR_MAC, CLIENT_MAC, &stray));
    }
    (rx, want)
}

/// A frame uvsd sent that carries SCTP.
struct Sent {
    /// The outer IP header, if tunnelled.
    outer: Option<Vec<u8>>,
    /// The IP packet carrying the SCTP.
    inner: Vec<u8>,
    frame: Vec<u8>,
}

/// The IP packet of a frame whose payload is SCTP, directly or inside an
/// IPIP / IPv6-in-IPv6 tunnel: (outer IP header if tunnelled, IP packet
/// carrying the SCTP).
fn sctp_packet(f: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let l3 = f.get(14..)?;
    let (proto, hl) = match f.get(12..14)? {
        [0x08, 0x00] => (l3[9], usize::from(l3[0] & 0x0f) * 4),
        [0x86, 0xdd] => (l3[6], 40),
        _ => return None,
    };
    match proto {
        132 => Some((None, l3.to_vec())),
        4 | 41 => {
            let inner = &l3[hl..];
            let ip = if proto == 4 { inner[9] } else { inner[6] };
            (ip == 132).then(|| (Some(l3[..hl].to_vec()), inner.to_vec()))
        }
        _ => None,
    }
}

/// `uvsadm -L -n -c` SCTP rows as (state, source, whole line).
fn conn_rows(sock: &Path) -> Vec<(String, String, String)> {
    let out = Command::new(UVSADM)
        .args(["--socket", &sock.display().to_string(), "-L", "-n", "-c"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("SCTP"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[3].to_string(), l.to_string())
        })
        .collect()
}

/// What one uvsd run over a capture showed.
struct Run {
    /// `uvsadm -L -n -c` SCTP rows, taken while uvsd ran.
    rows: Vec<(String, String, String)>,
    /// `uvsadm -L -n`, for failure messages.
    services: String,
    stderr: String,
    /// The frames uvsd sent that carry SCTP, in order.
    sent: Vec<Sent>,
}

/// Replays `frames` through a uvsd with the SCTP services of [`RULES`]
/// (and `extra` config lines) on a net_pcap port, lists the connections
/// until every `(state, source)` of `expect` shows (30 s at most), stops
/// uvsd and reads what it sent.
fn run_director(tag: &str, frames: &[Vec<u8>], expect: &[(String, String)], extra: &str) -> Run {
    // One uvsd of this file at a time: each busy-polls lcore 1.
    let _serial = common::lab::lock();
    let dir = Scratch::new(tag);
    let prefix = common::unique(tag);
    let (rx, tx) = (dir.path("rx.pcap"), dir.path("tx.pcap"));
    write_pcap(&rx, frames);
    let rules = dir.path("sctp.rules");
    std::fs::write(&rules, RULES).unwrap();
    let sock = dir.path("uvsadm.sock");

    let mut neighbors = format!(
        "[[neighbor]]\nip = \"198.18.0.2\"\nmac = \"{}\"\n\
         [[neighbor]]\nip = \"2001:db8::2\"\nmac = \"{}\"\n",
        mac_text(CLIENT_MAC),
        mac_text(CLIENT_MAC)
    );
    for a in associations() {
        neighbors.push_str(&format!(
            "[[neighbor]]\nip = \"{}\"\nmac = \"{}\"\n",
            text(a.rs).trim_matches(['[', ']']),
            mac_text(a.rs_mac)
        ));
    }
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [control]\nsocket = \"{}\"\nrules = \"{}\"\n\
             {extra}\
             [[port]]\nname = \"wire\"\ndevice = \"net_pcap_{prefix},rx_pcap={},tx_pcap={}\"\n\
             mac = \"02:00:00:00:00:01\"\naddresses = [\"198.18.0.1/24\", \"2001:db8::1/64\"]\n\
             {neighbors}",
            sock.display(),
            rules.display(),
            rx.display(),
            tx.display()
        ),
    )
    .unwrap();
    let mut uvsd = Daemon::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = conn_rows(&sock);
        let have: Vec<(String, String)> = rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
        if expect.iter().all(|e| have.contains(e)) || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let services = Command::new(UVSADM)
        .args(["--socket", &sock.display().to_string(), "-L", "-n"])
        .output()
        .unwrap();
    let services = String::from_utf8_lossy(&services.stdout).into_owned();
    let (status, stderr) = uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    let sent = read_pcap(&tx)
        .into_iter()
        .filter_map(|frame| {
            sctp_packet(&frame).map(|(outer, inner)| Sent {
                outer,
                inner,
                frame,
            })
        })
        .collect();
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    Run {
        rows,
        services,
        stderr,
        sent,
    }
}

/// Asserts that each `(state, source)` is listed.
fn assert_listed(run: &Run, expect: &[(String, String)]) {
    for (state, source) in expect {
        assert!(
            run.rows.iter().any(|r| &r.0 == state && &r.1 == source),
            "{source} in {state}: {:#?}\n{}\n{}",
            run.rows,
            run.services,
            run.stderr
        );
    }
}

#[test]
fn sctp_associations_through_nat_dr_and_tunnels_byte_for_byte() {
    common::require_root();
    let (frames, want) = traffic();
    // The listing, while uvsd runs: every association in its state (the
    // states checked live 61 s or more, so none can expire meanwhile).
    let expect: Vec<(String, String)> = associations()
        .iter()
        .map(|a| {
            (
                a.state.to_string(),
                format!("{}:{}", text(a.client), a.cport),
            )
        })
        .collect();
    let run = run_director("sctp", &frames, &expect, "");
    let rows = &run.rows;
    assert_listed(&run, &expect);
    assert_eq!(
        rows.len(),
        expect.len(),
        "one entry per association, none for the stray DATA: {rows:#?}"
    );
    // The virtual and real columns of a NAT entry.
    let nat = rows.iter().find(|r| r.1 == "198.18.0.2:5002").unwrap();
    assert!(
        nat.2.ends_with("198.18.0.100:80    198.18.0.11:8080"),
        "{:?}",
        nat.2
    );

    let out = &run.sent;
    assert_eq!(
        out.len(),
        want.len(),
        "every association packet forwarded once, the stray DATA packets not at all\n{}",
        run.stderr
    );
    for (Expected { what, frame: w }, sent) in want.iter().zip(out) {
        let (outer, inner, f) = (&sent.outer, &sent.inner, &sent.frame);
        assert_eq!(&f[..12], &w[..12], "{what}: MAC addresses");
        let want_ip = &w[14..];
        assert_eq!(inner, want_ip, "{what}: the IP packet, byte for byte");
        // The CRC32c the packet carries is right for its bytes.
        let hl = if inner[0] >> 4 == 4 { 20 } else { 40 };
        let mut z = inner[hl..].to_vec();
        z[8..12].fill(0);
        assert_eq!(inner[hl + 8..hl + 12], crc32c(&z).to_le_bytes(), "{what}");
        if let Some(o) = outer {
            // IPIP (4) from the director's address to the real server, or
            // IPv6-in-IPv6 (41).
            if o[0] >> 4 == 4 {
                assert_eq!((o[9], &o[12..16]), (4, &[198, 18, 0, 1][..]), "{what}");
                assert_eq!(&o[16..20], &[198, 18, 0, 13], "{what}");
                assert_eq!(csum(o), 0, "{what}: outer header checksum");
            } else {
                assert_eq!(o[6], 41, "{what}");
                assert_eq!(o[24..40], v6_bytes(0x13), "{what}");
            }
        }
    }
}

/// `sloppy_sctp = 1` (set in the config's `[sysctl]`, as `uvsadm --sysctl`
/// would): an association already under way (its DATA, from a client this
/// director never saw start it) is scheduled and listed ESTABLISHED; an
/// ABORT still starts nothing.
#[test]
fn sloppy_sctp_picks_up_associations_under_way_but_never_an_abort() {
    common::require_root();
    let data = ip(v4(2), v4(100), 64, 132, &sctp(6001, 80, DATA));
    let abort = ip(v4(2), v4(100), 64, 132, &sctp(6002, 80, ABORT));
    let frames = [
        eth(DIRECTOR_MAC, CLIENT_MAC, &data),
        eth(DIRECTOR_MAC, CLIENT_MAC, &abort),
    ];
    let expect = [("ESTABLISHED".to_string(), "198.18.0.2:6001".to_string())];
    let run = run_director("sctps", &frames, &expect, "[sysctl]\nsloppy_sctp = 1\n");
    assert_listed(&run, &expect);
    assert_eq!(run.rows.len(), 1, "no entry for the ABORT: {:#?}", run.rows);
    let want = ip(v4(2), v4(11), 63, 132, &sctp(6001, RPORT_NAT, DATA));
    assert_eq!(
        run.sent.len(),
        1,
        "only the DATA is forwarded\n{}",
        run.stderr
    );
    assert_eq!(run.sent[0].inner, want, "NATed, CRC32c recomputed");
}

fn v6_bytes(d: u16) -> [u8; 16] {
    match v6(d) {
        Ip::V6(b) => b,
        Ip::V4(_) => unreachable!(),
    }
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
