//! Fragmented datagrams end to end in net_tap mode: a Linux client sends
//! a 4,000-byte UDP request to a VIP over a 1500-byte link (its kernel
//! sends it in three fragments), uvsd reassembles it, balances it as one
//! datagram and sends it on in fragments; the real server (a Linux kernel
//! in a namespace, scripts/udp_echo.py) answers with a 4,000-byte datagram
//! of its own, through uvsd again for NAT (reassembled, rewritten,
//! fragmented) and straight to the client for DR and TUN. IPv4 and IPv6.
//!
//! TUN: this kernel has no ipip/gre/fou modules, so the real server runs
//! scripts/tun_decap.py, a userspace decapsulator (the real server's
//! kernel reassembles the fragmented outer packets before it reads them).
//!
//! With two and three workers, the 4,000-byte requests come from 16 client
//! ports (the connections' owners differ: `owner(client, port)`), so a
//! datagram is often reassembled on a worker that does not own its
//! connection; each answer must still come back. The three workers are
//! three lcores sharing one CPU (`--lcores`; the machine has two).
//!
//! Overlapping fragments are crafted byte by byte (a raw socket in the
//! client namespace) and must be dropped and counted by reason.
//!
//! The tests need root, run one at a time, and remove their namespaces
//! even when they fail.

mod common;

use std::process::Command;

use common::lab::{lock, Lab, VIP, VIP6};

/// Sends crafted IPv4 fragments to VIP:53 through a raw socket: two
/// overlapping fragments of one datagram (id 0x4242), then the rest of it.
const OVERLAP: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def frag(off, more, data):
    flags = (0x2000 if more else 0) | (off // 8)
    # The kernel fills in the total length and the checksum.
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0x4242, flags, 64, 17, 0,
                      socket.inet_aton("198.18.0.2"), socket.inet_aton("198.18.0.100"))
    s.sendto(hdr + data, ("198.18.0.100", 0))
udp = struct.pack("!HHHH", 40000, 53, 8 + 40, 0)
frag(0, True, udp + b"a" * 16)      # bytes 0..24
frag(16, True, b"b" * 16)           # bytes 16..32: overlaps the first
frag(32, False, b"c" * 16)          # the rest of a discarded datagram
"#;

/// Sends 4,000 bytes to VIP:53 and prints the answer's length and whether
/// it is "<server> <the request>", from the client namespace.
const REQUEST: &str = r#"
import socket, sys
vip = sys.argv[1]
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
req = bytes((i * 7) % 251 for i in range(4000))
for _ in range(3):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(req, (vip, 53))
    try:
        ans = s.recv(65535)
    except socket.timeout:
        continue
    name, _, body = ans.partition(b" ")
    print(name.decode(), len(ans), body == req)
    break
"#;

fn request(lab: &Lab, vip: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{}-cli", lab.p)])
        .args(["python3", "-c", REQUEST, vip])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// From each of `n` client ports from `first` on: 4,000 bytes to VIP:53,
/// then a few bytes (a later whole datagram of the same flow), up to 3
/// tries each; prints per port whether both whole answers came back
/// ("<port> ok") or not ("<port> lost").
const FROM_PORTS: &str = r#"
import socket, sys
vip, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v6 = ":" in vip
def ask(s, req):
    for _ in range(3):
        s.sendto(req, (vip, 53))
        try:
            ans = s.recv(65535)
        except socket.timeout:
            continue
        return ans.partition(b" ")[2] == req
    return False
big = bytes((i * 7) % 251 for i in range(4000))
for port in range(first, first + n):
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("::" if v6 else "0.0.0.0", port))
    s.settimeout(2)
    ok = ask(s, big) and ask(s, b"small %d" % port)
    print(port, "ok" if ok else "lost")
    s.close()
"#;

fn both_families(kind: &str, opts: &str) {
    let lab = Lab::new(&kind[..1], kind, 1, 1);
    for (vip, rs) in [(VIP, "198.18.1.11"), (VIP6, "[2001:db8:1::11]")] {
        let svc = if vip.contains(':') {
            format!("[{vip}]:53")
        } else {
            format!("{vip}:53")
        };
        lab.ok(&format!("-A -u {svc} -s rr"));
        lab.ok(&format!("-a -u {svc} -r {rs}:53 {opts}"));
        assert_eq!(
            request(&lab, vip),
            "rs1 4004 True",
            "{kind} {vip}: the whole request reached the server and the whole answer came back"
        );
    }
    // Both requests were balanced as one datagram each (one connection,
    // 4,028 / 4,048 bytes in: whole datagrams, not fragments).
    let stats = lab.ok("-L -n --stats --exact");
    assert!(stats.contains("4028"), "{kind}: {stats}");
    assert!(stats.contains("4048"), "{kind}: {stats}");
}

#[test]
fn udp_4000_bytes_through_nat() {
    let _g = lock();
    both_families("nat", "-m");
}

/// Two workers on two-queue ports, two real servers: 16 client ports,
/// IPv4 and IPv6, each a 4,000-byte request through NAT and its 4,000-byte
/// answer, then a small request and answer of the same flow; every answer
/// arrives, each service counts one connection per client port (the small
/// request found the big one's) and whole datagrams, and some datagrams
/// crossed to their connection's owner to be balanced.
#[test]
fn udp_4000_bytes_through_nat_with_two_workers_from_many_client_ports() {
    let _g = lock();
    many_client_ports_through_nat("fw", 2);
}

/// The same with three workers (three lcores sharing the second CPU): a
/// datagram reassembled off its owner goes to one of two others.
#[test]
fn udp_4000_bytes_through_nat_with_three_workers_from_many_client_ports() {
    let _g = lock();
    many_client_ports_through_nat("fw3", 3);
}

fn many_client_ports_through_nat(tag: &str, workers: u32) {
    const PORTS: u16 = 16;
    let mut lab = Lab::with_workers(tag, "nat", 2, 1, workers);
    for (vip, rss, bytes) in [
        (VIP, ["198.18.1.11", "198.18.1.12"], 4028),
        (VIP6, ["[2001:db8:1::11]", "[2001:db8:1::12]"], 4048),
    ] {
        let svc = if vip.contains(':') {
            format!("[{vip}]:53")
        } else {
            format!("{vip}:53")
        };
        lab.ok(&format!("-A -u {svc} -s rr"));
        for rs in rss {
            lab.ok(&format!("-a -u {svc} -r {rs}:53 -m"));
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.p)])
            .args([
                "python3",
                "-c",
                FROM_PORTS,
                vip,
                "42000",
                &PORTS.to_string(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lost: Vec<&str> = text.lines().filter(|l| !l.ends_with(" ok")).collect();
        assert!(
            out.status.success() && text.lines().count() == usize::from(PORTS) && lost.is_empty(),
            "{vip}: answers lost from client ports {lost:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One connection per client port, whole datagrams in (the service
        // line reads Conns InPkts OutPkts InBytes OutBytes): 16 of 4,028 /
        // 4,048 bytes, 16 small ones, and any retry of either.
        let stats = lab.ok("-L -n --stats --exact");
        let line = stats
            .lines()
            .find(|l| l.starts_with("UDP") && l.contains(&svc))
            .unwrap_or_else(|| panic!("{svc} in {stats}"));
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(2)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(n[0], u64::from(PORTS), "{vip}: connections: {stats}");
        assert!(n[1] >= 2 * u64::from(PORTS), "{vip}: {stats}");
        assert!(
            n[3] >= u64::from(PORTS) * bytes,
            "{vip}: whole datagrams in: {stats}"
        );
        assert!(n[3] < n[1] * bytes, "{vip}: fragments counted: {stats}");
    }
    let (status, report) = lab.stop_daemon();
    assert!(status.is_some_and(|s| s.success()), "{report}");
    let workers = workers as usize;
    let sum = |name: &str| -> u64 {
        (0..workers)
            .map(|w| common::shutdown_counter(&report, w, name))
            .sum()
    };
    assert!(
        sum("datagrams_handed_over") > 0,
        "no datagram was reassembled off its owner: {report}"
    );
    assert_eq!(sum("frag_datagram_not_served"), 0, "{report}");
    // What the workers put on each other's rings, they took: per pair with
    // two workers; in total with more (the counters are per sender).
    let put = |o: usize| {
        common::shutdown_counter(&report, o, "handed_over")
            - common::shutdown_counter(&report, o, "drop_handover_full")
            + common::shutdown_counter(&report, o, "neighbor_shared")
            + common::shutdown_counter(&report, o, "fragments_handed_over")
    };
    if workers == 2 {
        for w in 0..2 {
            let o = 1 - w;
            assert_eq!(
                common::shutdown_counter(&report, w, "handed_in"),
                put(o),
                "worker {w} took from its ring what worker {o} put there: {report}"
            );
        }
    } else {
        assert_eq!(
            sum("handed_in"),
            (0..workers).map(put).sum::<u64>(),
            "the workers took from their rings what the others put there: {report}"
        );
    }
}

#[test]
fn udp_4000_bytes_through_dr() {
    let _g = lock();
    both_families("dr", "-g");
}

#[test]
fn udp_4000_bytes_through_ipip() {
    let _g = lock();
    both_families("ipip", "-i");
}

#[test]
fn overlapping_fragments_are_dropped_and_counted_and_hurt_nothing_else() {
    let _g = lock();
    let mut lab = Lab::new("o", "nat", 1, 1);
    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.11:53 -m"));
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{}-cli", lab.p)])
        .args(["python3", "-c", OVERLAP])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A good fragmented request still gets its whole answer.
    assert_eq!(request(&lab, VIP), "rs1 4004 True");
    let (_, stderr) = lab.stop_daemon();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("uvsd: counters level=info worker=0 "))
        .unwrap_or_else(|| panic!("no counters in {stderr}"));
    for want in ["frag_overlap=1", "frag_of_discarded=1"] {
        assert!(
            line.split_whitespace().any(|kv| kv == want),
            "{want}: {line}"
        );
    }
    // The bad datagram never reached the load balancer.
    assert!(!line.contains("lb_drop_"), "{line}");
}
