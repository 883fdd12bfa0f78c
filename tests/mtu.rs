//! MTU and path MTU end to end in net_tap mode, with real Linux peers in
//! namespaces (scripts/topo.sh) and uvsd in between.
//!
//! * A tunnel real server (IPIP, then GUE) behind a router whose link to it has a smaller
//!   MTU (1400) than the director's ports (1500): the router answers the
//!   director's oversized tunnel packets with ICMP fragmentation needed;
//!   uvsd learns the path MTU and tells the client, whose kernel then sends
//!   smaller segments. Without that the client's upload is black-holed.
//! * A port's `mtu` (1400) is set on the tap's kernel side, and a client
//!   whose segments are larger gets fragmentation needed with it.
//! * `mtu = 9000` on net_tap stops uvsd with the range the device takes
//!   (DPDK 22.11's net_tap receives at most 1,522-byte frames). Jumbo
//!   frames end to end, over net_pcap ports: tests/jumbo.rs.
//!
//! TUN: this kernel has no ipip/gre/fou modules, so the real server runs
//! scripts/tun_decap.py, a userspace decapsulator that hands the inner
//! packet to its own kernel TCP/IP stack through a tun device; the router
//! in between is a real Linux router (the topology's bridge namespace).
//!
//! The tests need root, run one at a time, and remove their namespaces
//! even when they fail.

mod common;

use std::process::{Command, Stdio};

use common::lab::{lock, Lab, VIP};
use common::{in_ns, sh, wait_listening, Procs};

/// A TCP service on port 9000 that reads until the client is done and
/// answers with the number of bytes it got.
const SINK: &str = r#"
import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 9000))
l.listen(8)
while True:
    c, _ = l.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(str(n).encode())
    c.close()
"#;

/// Uploads 300,000 bytes to VIP:9000 and prints the sink's answer.
const UPLOAD: &str = r#"
import socket
s = socket.create_connection(("198.18.0.100", 9000), timeout=20)
s.sendall(b"u" * 300000)
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"#;

#[test]
fn tunnel_client_learns_the_path_mtu_a_router_reports() {
    let _g = lock();
    // The MTU the client learns: 1400 less the tunnel's headers.
    for (tag, kind, opts, mtu) in [
        ("m", "ipip", "-i", 1380),
        ("g", "gue", "-i --tun-type gue --tun-port 6080", 1368),
    ] {
        narrow_path_behind_a_router(tag, kind, opts, mtu);
    }
}

fn narrow_path_behind_a_router(tag: &str, kind: &str, opts: &str, client_mtu: u32) {
    let lab = Lab::with_config(
        tag,
        kind,
        1,
        1,
        1,
        None,
        "[[route]]\nto = \"198.19.5.0/24\"\nvia = \"198.18.1.254\"\n",
    );
    let p = lab.p.clone();
    // A real server on a network of its own, behind the router (the
    // bridge namespace), over a link of MTU 1400.
    let far = format!("{p}-far");
    sh(&["ip", "netns", "add", &far]);
    let (a, b) = (format!("{p}f0"), format!("{p}f1"));
    sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    sh(&["ip", "link", "set", &a, "netns", &format!("{p}-br")]);
    sh(&["ip", "link", "set", &b, "netns", &far]);
    let br = |args: &str| {
        let mut v = vec!["ip", "netns", "exec"];
        let ns = format!("{p}-br");
        v.push(&ns);
        v.extend(args.split_whitespace());
        sh(&v);
    };
    br(&format!("ip link set {a} mtu 1400 up"));
    br(&format!("ip addr add 198.19.5.1/24 dev {a}"));
    let f = |args: &str| {
        let mut v = vec!["ip", "netns", "exec", &far];
        v.extend(args.split_whitespace());
        sh(&v);
    };
    f("ip link set lo up");
    f(&format!("ip link set {b} mtu 1400 up"));
    f(&format!("ip addr add 198.19.5.2/24 dev {b}"));
    f("ip route add default via 198.19.5.1");
    f(&format!("ip addr add {VIP}/32 dev lo"));
    f("sysctl -qw net.ipv4.conf.all.rp_filter=0");
    f("sysctl -qw net.ipv4.conf.default.rp_filter=0");
    f(&format!("sysctl -qw net.ipv4.conf.{b}.rp_filter=0"));
    let mut procs = Procs::default();
    for args in [
        vec!["python3", "-c", SINK],
        vec![
            "python3",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tun_decap.py"),
            kind,
        ],
    ] {
        procs.0.push(
            in_ns(&far, &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    wait_listening(&far, 9000);

    lab.ok(&format!("-A -t {VIP}:9000 -s rr"));
    lab.ok(&format!("-a -t {VIP}:9000 -r 198.19.5.2 {opts}"));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{p}-cli"),
            "python3",
            "-c",
            UPLOAD,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "300000",
        "{kind}: the upload through the narrow path completes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client's kernel learned, from uvsd's fragmentation needed, the
    // path MTU less the tunnel's headers.
    let route = lab
        .ns("cli", &["ip", "route", "get", VIP])
        .unwrap_or_default();
    assert!(
        route.contains(&format!("mtu {client_mtu}")),
        "{kind}: client's route to the VIP: {route}"
    );
}

#[test]
fn a_port_mtu_is_set_on_the_tap_and_enforced_with_fragmentation_needed() {
    let _g = lock();
    // The server-side port is the last [[port]] of the lab's config.
    let lab = Lab::with_config("p", "nat", 1, 1, 1, None, "mtu = 1400\n");
    let link = lab
        .ns("br", &["ip", "link", "show", &format!("{}b", lab.p)])
        .unwrap_or_default();
    assert!(link.contains("mtu 1400"), "the tap's kernel side: {link}");
    // A NAT client uploads with 1500-byte segments (DF, as TCP sends
    // them): uvsd answers fragmentation needed with the server port's MTU,
    // the client's kernel learns it and the upload completes.
    let mut procs = Procs::default();
    procs.0.push(
        in_ns(&format!("{}-rs1", lab.p), &["python3", "-c", SINK])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&format!("{}-rs1", lab.p), 9000);
    lab.ok(&format!("-A -t {VIP}:9000 -s rr"));
    lab.ok(&format!("-a -t {VIP}:9000 -r 198.18.1.11 -m"));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-cli", lab.p),
            "python3",
            "-c",
            UPLOAD,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "300000",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let route = lab
        .ns("cli", &["ip", "route", "get", VIP])
        .unwrap_or_default();
    assert!(
        route.contains("mtu 1400"),
        "client's route to the VIP: {route}"
    );
}

#[test]
fn an_mtu_the_device_cannot_take_stops_uvsd_with_the_devices_range() {
    let _g = lock();
    // DPDK 22.11's net_tap receives at most 1,522-byte frames: no jumbo.
    let mut cmd = Command::new(common::UVSD);
    let scratch = common::Scratch::new("mtuj");
    let cfg = scratch.path("uvsd.toml");
    let p = common::unique("j");
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["--lcores", "0@0,1@1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix={p}"]
[workers]
lcores = [1]
[control]
socket = "{sock}"
[[port]]
name = "jumbo"
device = "net_tap0,iface={p}"
mtu = 9000
addresses = ["198.18.0.1/24"]
"#,
            sock = scratch.path("ctl.sock").display()
        ),
    )
    .unwrap();
    let out = cmd.arg("--config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let max: u32 = err
        .split_once("port jumbo: setting MTU 9000 (the device allows ")
        .and_then(|(_, r)| r.split_once("..="))
        .and_then(|(_, r)| r.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no range in {err}"));
    assert!((1500..9000).contains(&max), "{err}");
}
