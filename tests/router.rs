//! The director as its real servers' gateway, end to end in net_tap mode:
//! a NAT real server (default route via the director) reaches a host
//! "outside" (a namespace beyond the client side, scripts/topo.sh
//! `outside`) through uvsd routing like a Linux router, while the
//! virtual service keeps working through the same director.
//!
//! What a user of a Linux router checks: TCP (HTTP), UDP and ping go
//! through; `ping -t 1` gets time exceeded from the director's address on
//! the real servers' segment; a destination without a route gets
//! network unreachable; the counters say what was routed. IPv4 and IPv6.
//!
//! The tests need root, run one at a time, and remove their namespaces
//! even when they fail.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::lab::{lock, run, Lab, TOPO, VIP, VIP6};
use common::{in_ns, Procs};

const UVSTABLES: &str = env!("CARGO_BIN_EXE_uvstables");

/// The outside host's "who is asking" service: TCP and UDP port 7000, IPv4
/// and IPv6, answering each request with the address it came from.
const WHOAMI: &str = r#"
import socket, threading
def peer(a):
    a = a[0]
    return a[7:] if a.startswith("::ffff:") else a
def tcp():
    l = socket.socket(socket.AF_INET6)
    l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("::", 7000))
    l.listen(16)
    while True:
        c, a = l.accept()
        c.sendall(peer(a).encode() + b"\n")
        c.close()
def udp():
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", 7000))
    while True:
        _, a = u.recvfrom(2048)
        u.sendto(peer(a).encode() + b"\n", a)
threading.Thread(target=tcp, daemon=True).start()
udp()
"#;

/// A Python program sending one datagram to `addr:port` on a connected
/// socket and printing `refused` when an ICMP port unreachable comes back
/// (`timeout` when nothing does).
fn udp_probe(addr: &str, port: u16) -> String {
    let fam = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    format!(
        "import socket\ns = socket.socket(socket.{fam}, socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.connect(('{addr}', {port}))\ns.send(b'x')\ntry:\n    s.recv(100)\n    print('answer')\n\
         except ConnectionRefusedError:\n    print('refused')\nexcept socket.timeout:\n    print('timeout')\n"
    )
}

/// `iptables` / `ip6tables` (uvstables under that name) against the lab.
fn tables(lab: &Lab, prog: &str, line: &str) {
    let out = Command::new(UVSTABLES)
        .arg0(prog)
        .args(["--socket", &lab.sock()])
        .args(line.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{prog} {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// uvsd's config beyond the lab's ports: the outside network behind the
/// client namespace, and forwarding on for both families.
const ROUTER: &str = r#"[[route]]
to = "198.19.0.0/24"
via = "198.18.0.2"
[[route]]
to = "2001:db8:3::/64"
via = "2001:db8::2"
[sysctl]
"net.ipv4.ip_forward" = 1
"net.ipv6.conf.all.forwarding" = 1
"#;

/// A command in namespace `<p>-<ns>`: (succeeded, stdout and stderr).
fn in_lab(lab: &Lab, ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{}-{ns}", lab.p)])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `args` in `ns` up to `tries` times until its output holds `want`
/// (the first packets of a flow may wait for neighbour resolution on
/// every hop); the last output.
fn until(lab: &Lab, ns: &str, args: &[&str], want: &str, tries: u32) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        let (_, text) = in_lab(lab, ns, args);
        if text.contains(want) {
            return text;
        }
        last = text;
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    last
}

/// The totals of `uvsadm --counters --json`.
fn counter(lab: &Lab, name: &str) -> u64 {
    let text = lab.ok("--counters --json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["total"][name].as_u64().unwrap_or(0)
}

#[test]
fn a_nat_real_server_reaches_the_outside_through_the_director_as_through_a_linux_router() {
    let _g = lock();
    let lab = Lab::with_config("rt", "nat", 1, 1, 1, None, ROUTER);
    run(&[TOPO, "outside", &lab.p]);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-A -t [{VIP6}]:80 -s rr"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r [2001:db8:1::11]:80 -m"));

    for (out, far, unrouted, director) in [
        (
            "198.19.0.2",
            "http://198.19.0.2/who",
            "198.20.0.1",
            "198.18.1.1",
        ),
        (
            "2001:db8:3::2",
            "http://[2001:db8:3::2]/who",
            "2001:db8:9::1",
            "2001:db8:1::1",
        ),
    ] {
        // Ping, TCP and UDP from the real server to the outside host.
        let ping = until(
            &lab,
            "rs1",
            &["ping", "-c", "1", "-W", "2", out],
            " 0% packet loss",
            10,
        );
        assert!(ping.contains(" 0% packet loss"), "ping {out}: {ping}");
        let http = until(
            &lab,
            "rs1",
            &["curl", "-s", "-f", "-m", "5", far],
            "outside",
            5,
        );
        assert_eq!(http.trim(), "outside", "GET {far}");
        let udp = until(
            &lab,
            "rs1",
            &["bash", "-c", &format!("echo hello | nc -u -w 2 {out} 53")],
            "outside hello",
            5,
        );
        assert_eq!(udp.trim(), "outside hello", "UDP to {out}");

        // TTL 1: time exceeded from the director's address on the real
        // server's segment (where the packet came in).
        let ttl = until(
            &lab,
            "rs1",
            &["ping", "-c", "1", "-W", "2", "-t", "1", out],
            "exceeded",
            5,
        );
        assert!(
            ttl.contains(&format!("From {director} ")) && ttl.contains("exceeded"),
            "ping -t 1 {out}: {ttl}"
        );
        // No route: network unreachable, from the director.
        let unr = until(
            &lab,
            "rs1",
            &["ping", "-c", "1", "-W", "2", unrouted],
            "nreachable",
            5,
        );
        assert!(
            unr.contains(&format!("From {director} ")) && unr.contains("nreachable"),
            "ping {unrouted}: {unr}"
        );
    }
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1", "the service still works");
    assert_eq!(lab.who("2001:db8::2", VIP6), "rs1", "and over IPv6");
    assert!(counter(&lab, "routed") > 0);
    assert!(counter(&lab, "icmp_time_exceeded_sent") >= 2);
    assert!(counter(&lab, "icmp_net_unreachable_sent") >= 2);
    assert_eq!(counter(&lab, "snat_translated"), 0, "no nat rule yet");

    // MASQUERADE: the outside host sees the director's address, and needs
    // no route back to the real servers' segment.
    let _whoami = Procs(vec![in_ns(
        &format!("{}-out", lab.p),
        &["python3", "-c", WHOAMI],
    )
    .spawn()
    .unwrap()]);
    in_lab(&lab, "cli", &["ip", "route", "del", "198.18.1.0/24"]);
    in_lab(
        &lab,
        "cli",
        &["ip", "-6", "route", "del", "2001:db8:1::/64"],
    );
    tables(
        &lab,
        "iptables",
        "-t nat -A POSTROUTING -s 198.18.1.0/24 ! -d 198.18.1.0/24 -j MASQUERADE",
    );
    tables(
        &lab,
        "ip6tables",
        "-t nat -A POSTROUTING -s 2001:db8:1::/64 ! -d 2001:db8:1::/64 -j MASQUERADE",
    );
    for (out, director) in [
        ("198.19.0.2", "198.18.0.1"),
        ("2001:db8:3::2", "2001:db8::1"),
    ] {
        let tcp = until(
            &lab,
            "rs1",
            &[
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{out}/7000 && timeout 5 head -1 <&3"),
            ],
            director,
            10,
        );
        assert_eq!(tcp.trim(), director, "TCP to {out} leaves as the director");
        let udp = until(
            &lab,
            "rs1",
            &["bash", "-c", &format!("echo q | nc -u -w 2 {out} 7000")],
            director,
            5,
        );
        assert_eq!(udp.trim(), director, "UDP to {out} leaves as the director");
        let ping = until(
            &lab,
            "rs1",
            &["ping", "-c", "1", "-W", "2", out],
            " 0% packet loss",
            5,
        );
        assert!(
            ping.contains(" 0% packet loss"),
            "ping {out} masqueraded: {ping}"
        );
        let far = if out.contains(':') {
            format!("http://[{out}]/blob")
        } else {
            format!("http://{out}/blob")
        };
        let (ok, _) = in_lab(
            &lab,
            "rs1",
            &["curl", "-s", "-f", "-m", "20", "-o", "/dev/null", &far],
        );
        assert!(ok, "a 1 MiB download from {out} through the mapping");
        // A datagram to a closed port: the outside host's port unreachable
        // (about the masqueraded datagram) comes back translated, and the
        // sender's socket reports the refusal.
        let refused = until(
            &lab,
            "rs1",
            &["python3", "-c", &udp_probe(out, 7001)],
            "refused",
            10,
        );
        assert_eq!(refused.trim(), "refused", "UDP to a closed port of {out}");
    }
    assert!(counter(&lab, "snat_translated") > 0);
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1", "the service still works");
}
