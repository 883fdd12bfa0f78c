//! The SYN proxy end to end, as an operator switches it on (`-j enable`)
//! and a client sees it: real downloads through a proxied NAT service
//! arrive intact, spoofed SYNs whose handshake never completes leave no
//! connection entry, and a stray ACK gets the reset a Linux host sends.
//! Real clients and servers in namespaces (scripts/topo.sh), built as the
//! README tells a user to; spoofed segments come from python raw sockets
//! in the client namespace, with addresses of 198.18.0.0/15 only.
//!
//! The tests need root, run one at a time (each uvsd polls a core), and
//! remove their namespaces even when they fail.

mod common;

use common::lab::{lock, Lab, VIP, VIP6};

/// The totals of `uvsadm --counters --json`.
fn totals(lab: &Lab) -> serde_json::Value {
    let text = lab.ok("--counters --json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["total"].clone()
}

fn n(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

/// Python that builds an IPv4 TCP segment (no options) and sends it from
/// the client namespace with a raw socket; `IP_HDRINCL` lets it carry a
/// source address the namespace does not own (a spoofed SYN).
const RAW: &str = r#"
import socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def segment(src, dst, sport, dport, seq, ack, flags):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp
out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
"#;

/// Sends `count` SYNs to VIP:80 from spoofed sources 198.18.0.200 + i
/// (no host has them: the director's SYN-ACKs go nowhere, the handshakes
/// never complete).
fn spoofed_syns(lab: &Lab, count: u32) {
    let script = format!(
        r#"{RAW}
for i in range({count}):
    src = "198.18.0.%d" % (200 + i)
    out.sendto(segment(src, "{VIP}", 30000 + i, 80, 1000 + i, 0, 0x02), ("{VIP}", 0))
"#
    );
    lab.ns("cli", &["python3", "-c", &script])
        .expect("spoofed SYNs sent");
}

/// Sends a bare ACK from the client's own address and returns the flags,
/// sequence number and source of the first TCP segment back to that port
/// (`None` after a few seconds without one).
fn stray_ack(lab: &Lab, sport: u16) -> Option<String> {
    let script = format!(
        r#"{RAW}
inp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
inp.settimeout(0.5)
deadline = time.time() + 8
while time.time() < deadline:
    out.sendto(segment("198.18.0.2", "{VIP}", {sport}, 80, 1000, 777777, 0x10), ("{VIP}", 0))
    end = time.time() + 1
    while time.time() < end:
        try:
            pkt, addr = inp.recvfrom(2048)
        except socket.timeout:
            break
        hl = (pkt[0] & 15) * 4
        sp, dp, seq = struct.unpack("!HHI", pkt[hl:hl + 8])
        if dp == {sport} and sp == 80:
            print("%s flags=%#x seq=%d" % (addr[0], pkt[hl + 13], seq))
            sys.exit(0)
sys.exit(1)
"#
    );
    lab.ns("cli", &["python3", "-c", &script])
        .map(|s| s.trim().to_string())
}

#[test]
fn proxied_downloads_intact_and_no_entry_for_spoofed_syns() {
    let _g = lock();
    let lab = Lab::new("sp", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr -j enable"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));

    // The switch shows in listings and saves; DR is refused with why.
    assert!(
        lab.ok("-L -n")
            .contains(&format!("TCP  {VIP}:80 rr synproxy")),
        "{}",
        lab.ok("-L -n")
    );
    assert!(lab
        .ok("-S -n")
        .contains(&format!("-A -t {VIP}:80 -s rr -j enable")));
    let (code, _, err) = lab.adm(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -g"));
    assert_ne!(code, 0);
    assert!(err.contains("masquerading"), "{err}");

    // Real downloads through the proxy: the bytes the server has, over
    // IPv4 and IPv6.
    lab.ok(&format!("-A -t [{VIP6}]:80 -s rr -j enable"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r [2001:db8:1::11]:80 -m"));
    for i in 0..3 {
        assert!(lab.blob_matches(VIP), "download {i} through the SYN proxy");
    }
    assert!(
        lab.blob_matches(VIP6),
        "IPv6 download through the SYN proxy"
    );
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
    let t = totals(&lab);
    assert!(n(&t, "synproxy_opened") >= 5, "{t}");
    let created = n(&t, "connections_created");

    // Spoofed SYNs: answered with cookies, no entry, nothing created.
    spoofed_syns(&lab, 20);
    let mut sent = 0;
    for _ in 0..50 {
        sent = n(&totals(&lab), "synproxy_cookies_sent") - n(&t, "synproxy_cookies_sent");
        if sent >= 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sent, 20, "every spoofed SYN got a cookie");
    let conns = lab.ok("-L -n -c");
    for i in 0..20 {
        let spoofed = format!("198.18.0.{}:{} ", 200 + i, 30000 + i);
        assert!(!conns.contains(&spoofed), "{spoofed}in\n{conns}");
    }
    let after = totals(&lab);
    assert_eq!(n(&after, "connections_created"), created, "{after}");
    assert_eq!(
        n(&after, "synproxy_server_syns"),
        n(&t, "synproxy_server_syns")
    );

    // An ACK without a valid cookie gets a reset, as from a Linux host:
    // RST, its sequence number the ACK's acknowledgement, from the VIP.
    let reply = stray_ack(&lab, 40999).expect("a reset for a stray ACK");
    assert_eq!(reply, format!("{VIP} flags=0x4 seq=777777"));
    assert!(n(&totals(&lab), "synproxy_cookies_bad") >= 1);
    // And the service still works afterwards.
    assert!(lab.blob_matches(VIP));
}

#[test]
fn a_stray_ack_to_an_unproxied_service_gets_a_reset() {
    let _g = lock();
    let lab = Lab::new("sr", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    let before = n(&totals(&lab), "tcp_reset_sent");
    let reply = stray_ack(&lab, 40998).expect("a reset for a stray ACK");
    assert_eq!(reply, format!("{VIP} flags=0x4 seq=777777"));
    assert!(n(&totals(&lab), "tcp_reset_sent") > before);
    assert!(!lab.ok("-L -n -c").contains(":40998"), "no connection");
}
