//! The IPVS tunables end to end, as an operator uses them: `uvsadm
//! --sysctl` against a running uvsd between real clients and real servers
//! in namespaces (scripts/topo.sh, built as the README tells a user to),
//! checked with `uvsadm -L -n -c` and by what the clients get.
//!
//! The tests need root, run one at a time (each uvsd polls a core), and
//! remove their namespaces even when they fail.

mod common;

use common::lab::{lock, Lab, VIP};

/// Connection-listing lines that name `server` as their destination.
fn conns_to(lab: &Lab, server: &str) -> usize {
    lab.ok("-L -n -c")
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(server))
        .count()
}

#[test]
fn sysctl_round_trip_and_expire_nodest_conn() {
    let _g = lock();
    let lab = Lab::new("te", "nat", 2, 1);

    // Listing, one, set, and a bad name or value that changes nothing.
    let all = lab.ok("--sysctl");
    assert_eq!(all.lines().count(), 17, "{all}");
    assert!(
        all.contains("net.ipv4.vs.expire_nodest_conn = 0\n"),
        "{all}"
    );
    assert!(all.contains("net.ipv4.vs.sloppy_tcp = 0\n"), "{all}");
    for (line, want) in [
        ("--sysctl expire_nodest_conn=2", "expected 0 or 1"),
        (
            "--sysctl expire_nodest=1",
            "unknown IPVS tunable `expire_nodest'",
        ),
    ] {
        let (code, out, err) = lab.adm(line);
        assert_eq!(code, 2, "{line}");
        assert!(out.is_empty() && err.contains(want), "{line}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(lab.ok("--sysctl"), all, "a refused set changed something");

    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));
    for _ in 0..4 {
        lab.who("198.18.0.2", VIP);
    }
    let rs2 = "198.18.1.12:80";
    assert_eq!(conns_to(&lab, rs2), 2, "{}", lab.ok("-L -n -c"));

    // Default (0): a deleted server's connections stay until they time out.
    lab.ok(&format!("-d -t {VIP}:80 -r {rs2}"));
    assert_eq!(conns_to(&lab, rs2), 2, "{}", lab.ok("-L -n -c"));
    lab.ok(&format!("-a -t {VIP}:80 -r {rs2} -m"));

    // 1: they go at once, and nothing else does.
    assert_eq!(
        lab.ok("--sysctl expire_nodest_conn=1"),
        "net.ipv4.vs.expire_nodest_conn = 1\n"
    );
    assert_eq!(
        lab.ok("--sysctl net.ipv4.vs.expire_nodest_conn"),
        "net.ipv4.vs.expire_nodest_conn = 1\n"
    );
    for _ in 0..2 {
        lab.who("198.18.0.2", VIP);
    }
    let before = conns_to(&lab, "198.18.1.11:80");
    assert!(conns_to(&lab, rs2) >= 2, "{}", lab.ok("-L -n -c"));
    lab.ok(&format!("-d -t {VIP}:80 -r {rs2}"));
    // The flush runs when the worker takes the snapshot (between bursts):
    // give it a moment, never more than a few seconds.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = conns_to(&lab, rs2);
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(left, 0, "{}", lab.ok("-L -n -c"));
    assert_eq!(conns_to(&lab, "198.18.1.11:80"), before);
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
}

/// A bare TCP ACK from the client namespace to the VIP, from `sport`, as
/// a connection that moved from another director would send it.
fn mid_stream_ack(lab: &Lab, sport: u16) {
    let script = format!(
        r#"
import socket, struct
src, dst, sport, dport = "198.18.0.2", "{VIP}", {sport}, 80
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
hdr = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, 0x10, 64240, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
hdr = hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.bind((src, 0))
s.sendto(hdr, (dst, 0))
"#
    );
    lab.ns("cli", &["python3", "-c", &script])
        .expect("raw ACK sent");
}

#[test]
fn sloppy_tcp_schedules_a_mid_stream_ack() {
    let _g = lock();
    let lab = Lab::new("ts", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    let has = |port: u16| {
        lab.ok("-L -n -c")
            .lines()
            .any(|l| l.contains(&format!("198.18.0.2:{port} ")))
    };

    // Default: the ACK matches no connection and gets a reset.
    mid_stream_ack(&lab, 40123);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!has(40123), "{}", lab.ok("-L -n -c"));

    // sloppy_tcp=1: it is scheduled (the real server answers a reset,
    // which comes back through the director).
    lab.ok("--sysctl sloppy_tcp=1");
    let mut seen = false;
    for _ in 0..20 {
        mid_stream_ack(&lab, 40124);
        std::thread::sleep(std::time::Duration::from_millis(200));
        if has(40124) {
            seen = true;
            break;
        }
    }
    assert!(seen, "{}", lab.ok("-L -n -c"));
    let stats = lab.ok("-L -n --stats");
    let conns: u64 = stats
        .lines()
        .find(|l| l.starts_with("TCP  "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(conns >= 1, "{stats}");
    // Ordinary connections still work.
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
}

/// The config file's `[sysctl]` table is in force from the start: uvsadm
/// shows its values, the others keep the kernel's defaults.
#[test]
fn config_sysctl_table_is_what_uvsadm_shows() {
    let _g = lock();
    let tag = common::unique("tc");
    let dir = common::Scratch::new("tunables-config");
    let sock = dir.path("ctl.sock");
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix={tag}"]
[workers]
lcores = [1]
[control]
socket = "{sock}"
[[port]]
name = "null"
device = "net_null_{tag}"
addresses = ["198.18.9.1/24"]
[sysctl]
expire_nodest_conn = 1
secure_tcp = 3
amemthresh = 4096
"#,
            sock = sock.display()
        ),
    )
    .unwrap();
    let mut uvsd = common::Daemon::start(&cfg);
    let out = std::process::Command::new(common::lab::UVSADM)
        .args(["--socket", &sock.display().to_string(), "--sysctl"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, stderr) = uvsd.stop();
    assert!(out.status.success(), "{text}");
    for want in [
        "net.ipv4.vs.expire_nodest_conn = 1\n",
        "net.ipv4.vs.secure_tcp = 3\n",
        "net.ipv4.vs.amemthresh = 4096\n",
        "net.ipv4.vs.conn_reuse_mode = 1\n",
        "net.ipv4.vs.sloppy_tcp = 0\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
}
