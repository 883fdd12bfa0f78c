//! Jumbo frames end to end: uvsd's ports on veths through `net_pcap`
//! (`iface=`), with `mtu = 9000`, between a real Linux client and a real
//! server in namespaces of their own.
//!
//! Why net_pcap: DPDK 22.11's net_tap receives at most 1,522-byte frames
//! and net_af_packet tells ethdev it does too (its MTU setter is refused
//! above 1500); net_pcap reads whole frames from the kernel interface. It
//! has no MTU setter, so uvsd sets the MTU on the kernel interface the port
//! works through (the test leaves it at 1500 and checks uvsd raised it).
//!
//! What a user checks: an 8,000-byte UDP datagram (IPv4 and IPv6) reaches
//! the NAT real server whole and its 8,000-byte answer comes back, both
//! sent with "do not fragment", so nobody on the way may fragment them (an
//! IPv4 router must refuse, an IPv6 one cannot); the client learned no
//! smaller path MTU; and a 1 MB upload over TCP with the client's MSS of a
//! 9,000-byte MTU arrives complete (same SHA-256 at the server).
//!
//! The namespaces' veths hand the director's ports finished packets:
//! checksum offload is off on the client's and the server's veth
//! (`ethtool -K tx off`), as it must be for any packet-socket port (a
//! kernel that offloads leaves the checksum to the wire, which a packet
//! socket never is).

mod common;

use std::process::{Command, Stdio};

use common::lab::{lock, UVSADM, VIP, VIP6};
use common::{in_ns, sh, unique, wait_listening, Daemon, Netns, Procs, Scratch};

/// The real server: on UDP port 7000 (IPv4 and IPv6, "do not fragment")
/// it answers a datagram with one as long, starting with the length it
/// got; on TCP port 9000 it reads until the client is done and answers
/// with the byte count and the SHA-256 of what it read.
const SERVER: &str = r#"
import hashlib, socket, threading
def udp(family, addr, level, opt, value):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(level, opt, value)
    if family == socket.AF_INET6:
        # Beside the IPv4 socket on the same port.
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, 7000))
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(str(len(d)).encode().ljust(len(d), b"a"), a)
# IP_MTU_DISCOVER = IP_PMTUDISC_DO; IPV6_DONTFRAG
threading.Thread(target=udp, args=(socket.AF_INET, "0.0.0.0", socket.IPPROTO_IP, 10, 2), daemon=True).start()
threading.Thread(target=udp, args=(socket.AF_INET6, "::", socket.IPPROTO_IPV6, 62, 1), daemon=True).start()
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 9000))
l.listen(8)
while True:
    c, _ = l.accept()
    n, h = 0, hashlib.sha256()
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
        h.update(b)
    c.sendall(f"{n} {h.hexdigest()}".encode())
    c.close()
"#;

/// The client: one 8,000-byte datagram with "do not fragment" to each
/// VIP (retried: the first may wait on neighbour resolution), printing
/// `udp4 <answer length> <length the server got>` (and udp6); then a 1 MB
/// upload, printing `mss <n>`, `sent <sha256>` and the server's answer.
const CLIENT: &str = r#"
import hashlib, os, socket, sys
def udp(tag, family, vip, level, opt, value):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(level, opt, value)
    s.settimeout(2)
    for _ in range(15):
        try:
            s.sendto(b"x" * 8000, (vip, 7000))
            d = s.recv(65535)
            print(tag, len(d), d[:8].rstrip(b"a").decode())
            return
        except socket.timeout:
            pass
    print(tag, "no answer")
udp("udp4", socket.AF_INET, sys.argv[1], socket.IPPROTO_IP, 10, 2)
udp("udp6", socket.AF_INET6, sys.argv[2], socket.IPPROTO_IPV6, 62, 1)
t = socket.create_connection((sys.argv[1], 9000), timeout=30)
print("mss", t.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
data = os.urandom(1000000)
t.sendall(data)
t.shutdown(socket.SHUT_WR)
print("sent", hashlib.sha256(data).hexdigest())
print("got", t.recv(200).decode())
"#;

#[test]
fn jumbo_frames_cross_net_pcap_ports_whole() {
    let _g = lock();
    common::require_root();
    let p = unique("jb");
    let (cli, dir, rs) = (format!("{p}-cli"), format!("{p}-dir"), format!("{p}-rs"));
    let _ns = Netns::create(&[&cli, &dir, &rs]);
    // Veths created in their namespaces: removing the namespaces removes
    // them, also when the test fails.
    let (c0, c1, s0, s1) = (
        format!("{p}c0"),
        format!("{p}c1"),
        format!("{p}s0"),
        format!("{p}s1"),
    );
    for (a, b, ns) in [(&c0, &c1, &cli), (&s0, &s1, &rs)] {
        sh(&[
            "ip", "link", "add", a, "netns", &dir, "type", "veth", "peer", "name", b, "netns", ns,
        ]);
    }
    // The director's ends stay at MTU 1500: uvsd sets them.
    for i in [&c0, &s0] {
        sh(&[
            "ip",
            "netns",
            "exec",
            &dir,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
        ]);
        sh(&["ip", "-n", &dir, "link", "set", i, "up"]);
    }
    for (ns, dev, a4, a6, gw4, gw6) in [
        (
            &cli,
            &c1,
            "198.18.0.2/24",
            "2001:db8::2/64",
            "198.18.0.1",
            "2001:db8::1",
        ),
        (
            &rs,
            &s1,
            "198.18.1.11/24",
            "2001:db8:1::11/64",
            "198.18.1.1",
            "2001:db8:1::1",
        ),
    ] {
        sh(&["ip", "-n", ns, "link", "set", dev, "mtu", "9000", "up"]);
        sh(&["ip", "-n", ns, "addr", "add", a4, "dev", dev]);
        sh(&["ip", "-n", ns, "-6", "addr", "add", a6, "dev", dev, "nodad"]);
        sh(&["ip", "-n", ns, "route", "add", "default", "via", gw4]);
        sh(&["ip", "-n", ns, "-6", "route", "add", "default", "via", gw6]);
        sh(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"]);
    }

    let scratch = Scratch::new(&p);
    let sock = scratch.path("ctl.sock").display().to_string();
    let cfg = scratch.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["--lcores", "0@0,1@1", "--no-pci", "--no-huge", "-m", "512", "--file-prefix={p}"]
[workers]
lcores = [1]
[control]
socket = "{sock}"
[[port]]
name = "client"
device = "net_pcap0,iface={c0}"
mtu = 9000
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
[[port]]
name = "server"
device = "net_pcap1,iface={s0}"
mtu = 9000
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
"#
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start_in(&dir, &cfg);
    for i in [&c0, &s0] {
        let link = sh(&["ip", "-n", &dir, "link", "show", i]);
        assert!(link.contains("mtu 9000"), "uvsd set the MTU of {i}: {link}");
    }

    let mut procs = Procs::default();
    procs.0.push(
        in_ns(&rs, &["python3", "-c", SERVER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&rs, 9000);
    let adm = |line: &str| {
        let out = Command::new(UVSADM)
            .args(["--socket", &sock])
            .args(line.split_whitespace())
            .output()
            .unwrap();
        assert!(out.status.success(), "uvsadm {line}: {out:?}");
    };
    adm(&format!("-A -u {VIP}:7000 -s rr"));
    adm(&format!("-a -u {VIP}:7000 -r 198.18.1.11 -m"));
    adm(&format!("-A -u [{VIP6}]:7000 -s rr"));
    adm(&format!("-a -u [{VIP6}]:7000 -r [2001:db8:1::11]:7000 -m"));
    adm(&format!("-A -t {VIP}:9000 -s rr"));
    adm(&format!("-a -t {VIP}:9000 -r 198.18.1.11 -m"));

    let out = in_ns(&cli, &["python3", "-c", CLIENT, VIP, VIP6])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (_, log) = daemon.stop();
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| {
                panic!(
                    "no {key} line: {text}{}\nuvsd: {log}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string()
    };
    // The answer is 8,000 bytes and says the server got 8,000.
    assert_eq!(line("udp4"), "8000 8000", "{text}\nuvsd: {log}");
    assert_eq!(line("udp6"), "8000 8000", "{text}\nuvsd: {log}");
    let mss: u32 = line("mss").parse().unwrap();
    assert!(mss > 8900, "the client's MSS for a 9,000-byte MTU: {mss}");
    assert_eq!(
        line("got"),
        format!("1000000 {}", line("sent")),
        "the upload arrives whole"
    );
    // No "fragmentation needed" came back: the client's route to the VIP
    // has no learned MTU.
    let route = sh(&["ip", "-n", &cli, "route", "get", VIP]);
    assert!(
        !route.contains(" mtu "),
        "client's route to the VIP: {route}"
    );
}
