//! The director's own answers and its drop counters, end to end: real
//! ping, curl and UDP sockets from a client namespace against a VIP, and
//! hand-made frames (a martian source, a bad IPv4 header checksum, link
//! padding) sent on the client's link with a raw socket, then every count
//! read back while uvsd runs with `uvsadm --counters` and its `--json`.
//!
//! Needs root; one lab at a time (see tests/common/lab.rs).

mod common;

use std::process::Command;

use common::lab::{lock, Lab, VIP, VIP6};

/// Sends Ethernet frames on the client's tap (in the client namespace)
/// toward the director's client port: `count` SYNs to VIP:80 of each kind.
/// Kinds: `martian` (from 255.255.255.255), `badsum` (a wrong IPv4 header
/// checksum), `padded` (a sound SYN from 198.18.0.9 with 10 bytes behind
/// the IP packet).
const RAW_SENDER: &str = r#"
import socket, struct, sys
iface, count = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def syn(src, sport, bad=False, pad=b""):
    src, dst = socket.inet_aton(src), socket.inet_aton("198.18.0.100")
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
    c = csum(ip) ^ (0x5555 if bad else 0)
    ip = ip[:10] + struct.pack("!H", c) + ip[12:]
    eth = bytes.fromhex("020000000001") + bytes.fromhex("02000000aa09") + b"\x08\x00"
    return eth + ip + tcp + pad
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for i in range(count):
    s.send(syn("255.255.255.255", 41000 + i))
    s.send(syn("198.18.0.2", 42000 + i, bad=True))
    s.send(syn("198.18.0.9", 43000 + i, pad=b"\xee" * 10))
"#;

/// A UDP datagram to `addr`:`port` from the client namespace: whether the
/// answer was ICMP port unreachable (the socket reports "refused").
const UDP_REFUSED: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((addr, port))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;

/// A UDP datagram to `addr`:`port` with TTL `ttl`, from the client
/// namespace: `icmp TYPE CODE FROM` for the ICMP error the socket got
/// (IP_RECVERR names the error's sender), `answered`, or `timeout`.
const UDP_WITH_TTL: &str = r#"
import socket, struct, sys
addr, port, ttl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
IP_RECVERR = 11
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
s.setsockopt(socket.SOL_IP, socket.IP_TTL, ttl)
s.settimeout(3)
s.connect((addr, port))
s.send(b"hello")
try:
    s.recv(100)
    print("answered")
except socket.timeout:
    print("timeout")
except OSError:
    _, anc, _, _ = s.recvmsg(100, 256, socket.MSG_ERRQUEUE)
    for _level, _kind, data in anc:
        _errno, _origin, kind, code = struct.unpack("=IBBB", data[:7])
        print("icmp", kind, code, socket.inet_ntoa(data[20:24]))
"#;

/// Runs `args` in the lab's client namespace; (exit code, stdout).
fn in_client(lab: &Lab, args: &[&str]) -> (i32, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{}-cli", lab.p)])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The totals of `uvsadm --counters --json`.
fn totals(lab: &Lab) -> serde_json::Value {
    let text = lab.ok("--counters --json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["workers"], 1, "{text}");
    assert_eq!(v["per_worker"][0], v["total"], "one worker: its counts");
    v["total"].clone()
}

fn n(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

#[test]
fn the_directors_own_answers_and_its_drops_read_back_while_running() {
    let _g = lock();
    let lab = Lab::new("h", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-A -t [{VIP6}]:80 -s rr"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r [2001:db8:1::11]:80 -m"));
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1", "the service works");
    let before = totals(&lab);

    // A ping to a VIP is answered, over IPv4 and IPv6.
    let (code, out) = in_client(&lab, &["ping", "-c", "2", "-W", "2", VIP]);
    assert_eq!(code, 0, "ping {VIP}: {out}");
    let (code, out) = in_client(&lab, &["ping", "-6", "-c", "2", "-W", "2", VIP6]);
    assert_eq!(code, 0, "ping {VIP6}: {out}");

    // A port without a service: refused at once (curl's exit 7 is
    // "failed to connect", 28 would be a timeout), TCP and UDP.
    for url in [format!("http://{VIP}:81/"), format!("http://[{VIP6}]:81/")] {
        let (code, _) = in_client(&lab, &["curl", "-s", "-m", "5", &url]);
        assert_eq!(code, 7, "curl {url}: connection refused");
    }
    for addr in [VIP, VIP6] {
        let (_, out) = in_client(&lab, &["python3", "-c", UDP_REFUSED, addr, "54"]);
        assert_eq!(out, "refused", "UDP to {addr}:54");
    }

    // Hand-made SYNs: martian source, bad header checksum, padding.
    let tap = format!("{}c", lab.p);
    let (code, _) = in_client(&lab, &["python3", "-c", RAW_SENDER, &tap, "3"]);
    assert_eq!(code, 0, "raw sender");
    // Read back while uvsd runs (the frames take a moment to arrive).
    let mut after = totals(&lab);
    for _ in 0..50 {
        if n(&after, "drop_martian_source") >= 3 && n(&after, "trimmed_behind_ip_length") >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        after = totals(&lab);
    }
    let grew = |name: &str| n(&after, name) - n(&before, name);
    assert!(grew("icmp_echo_replied") >= 2, "{after}");
    assert!(grew("icmp6_echo_replied") >= 2, "{after}");
    assert_eq!(grew("tcp_reset_sent"), 2, "{after}");
    assert_eq!(grew("icmp_port_unreachable_sent"), 2, "{after}");
    assert_eq!(grew("drop_martian_source"), 3, "{after}");
    assert_eq!(grew("drop_bad_checksum"), 3, "{after}");
    assert!(grew("trimmed_behind_ip_length") >= 3, "{after}");
    assert_eq!(grew("drop_rate_limited"), 0, "{after}");
    // The worker's turns are timed, and those that took the frames above
    // are a part of them.
    assert!(grew("poll_cycles") > 0, "{after}");
    assert!(grew("busy_cycles") > 0, "{after}");
    assert!(
        grew("busy_turns") > 0 && grew("busy_turns") <= grew("rx"),
        "{after}"
    );
    assert!(
        n(&after, "busy_cycles") <= n(&after, "poll_cycles"),
        "{after}"
    );
    // Every drop reason of the stack and the load balancer is listed.
    for name in [
        "drop_tx_full",
        "drop_martian_destination",
        "lb_drop_table_full",
        "lb_drop_no_connection",
        "malformed_truncated",
    ] {
        n(&after, name);
    }

    // No connection from the martian or damaged SYNs; the padded ones
    // made theirs (198.18.0.9 is a client like any other).
    let conns = lab.ok("-L -n -c");
    assert!(!conns.contains("255.255.255.255"), "{conns}");
    assert!(!conns.contains("198.18.0.2:42000"), "{conns}");
    assert!(conns.contains("198.18.0.9:43000"), "{conns}");

    // TTL: a client datagram whose TTL runs out at the director gets time
    // exceeded from the VIP, and counts in the service's packets; a NAT
    // reply whose TTL runs out gets time exceeded toward the real server
    // (counted as an ICMP error sent), and nothing reaches the client.
    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.11:53 -m"));
    let (_, out) = in_client(&lab, &["python3", "-c", UDP_WITH_TTL, VIP, "53", "64"]);
    assert_eq!(out, "answered", "the UDP service works");
    let (_, out) = in_client(&lab, &["python3", "-c", UDP_WITH_TTL, VIP, "53", "1"]);
    assert_eq!(
        out,
        format!("icmp 11 0 {VIP}"),
        "time exceeded from the VIP"
    );
    let stats = lab.ok(&format!("-L -n --stats -u {VIP}:53"));
    let inpkts = |stats: &str| -> u64 {
        let l = stats.lines().find(|l| l.starts_with("UDP ")).unwrap();
        l.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    assert_eq!(inpkts(&stats), 2, "both datagrams count: {stats}");
    let sent_before = n(&totals(&lab), "icmp_errors_sent");
    let rs1 = format!("{}-rs1", lab.p);
    let ttl = |v: &str| {
        let st = Command::new("ip")
            .args(["netns", "exec", &rs1, "sysctl", "-qw"])
            .arg(format!("net.ipv4.ip_default_ttl={v}"))
            .status()
            .unwrap();
        assert!(st.success());
    };
    ttl("1");
    let (_, out) = in_client(&lab, &["python3", "-c", UDP_WITH_TTL, VIP, "53", "64"]);
    ttl("64");
    assert_eq!(out, "timeout", "the reply ran out of TTL at the director");
    let t = totals(&lab);
    assert!(n(&t, "icmp_errors_sent") > sent_before, "{t}");
    assert_eq!(n(&t, "lb_drop_rewrite"), 0, "{t}");

    // The text form: a header, then name, total and the worker's count.
    let text = lab.ok("--counters");
    assert!(text.starts_with("Counter"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("drop_martian_source "))
        .unwrap_or_else(|| panic!("{text}"));
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{row}");
    assert_eq!(f[1], f[2], "{row}");
    assert!(f[1].parse::<u64>().unwrap() >= 3, "{row}");
}
