//! End to end on net_tap: uvsd owns two TAP ports whose kernel sides live
//! in two network namespaces; real Linux hosts ping the director over IPv4
//! and IPv6, and the director resolves their MACs (ARP and NDP) in turn.
//! After SIGTERM nothing is left: no taps, no hugepage files, no runtime
//! directory.

mod common;

use common::{leftovers, sh, Daemon, Netns, Scratch};

const CLIENT_MAC: &str = "02:00:00:00:aa:01";
const SERVER_MAC: &str = "02:00:00:00:aa:02";

/// Moves `ifname` into `ns` and gives it `mac` and addresses.
fn host(ns: &str, ifname: &str, mac: &str, addrs: &[&str]) {
    sh(&["ip", "link", "set", ifname, "netns", ns]);
    sh(&["ip", "-n", ns, "link", "set", ifname, "address", mac]);
    for a in addrs {
        if a.contains(':') {
            sh(&["ip", "-n", ns, "addr", "add", a, "dev", ifname, "nodad"]);
        } else {
            sh(&["ip", "-n", ns, "addr", "add", a, "dev", ifname]);
        }
    }
    sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
}

fn ping(ns: &str, args: &[&str]) -> String {
    let mut v = vec![
        "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "2",
    ];
    v.extend_from_slice(args);
    sh(&v)
}

#[test]
fn namespaces_ping_the_director_and_it_resolves_them() {
    common::require_root();
    let tag_c = common::unique("c");
    let tag_s = common::unique("s");
    let prefix = common::unique("tap");
    let dir = Scratch::new("bringup");
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[eal]
args = ["-l", "0-1", "--no-pci", "--file-prefix={prefix}", "--huge-unlink"]
[workers]
lcores = [1]
[control]
socket = "{sock}"
[[port]]
name = "client"
device = "net_tap_{tag_c},iface={tag_c}"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
[[port]]
name = "server"
device = "net_tap_{tag_s},iface={tag_s}"
mac = "02:00:00:00:00:02"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
# Networks behind the server-side host: replies to them go through it.
[[route]]
to = "198.19.100.0/24"
via = "198.18.1.2"
[[route]]
to = "2001:db8:100::/64"
via = "2001:db8:1::2"
"#,
            sock = dir.path("uvsadm.sock").display()
        ),
    )
    .unwrap();

    let mut uvsd = Daemon::start(&cfg);
    let ns_c = format!("uvs-{tag_c}");
    let ns_s = format!("uvs-{tag_s}");
    let netns = Netns::create(&[&ns_c, &ns_s]);
    host(
        &ns_c,
        &tag_c,
        CLIENT_MAC,
        &["198.18.0.2/24", "2001:db8::2/64"],
    );
    host(
        &ns_s,
        &tag_s,
        SERVER_MAC,
        &["198.18.1.2/24", "2001:db8:1::2/64"],
    );
    // The server-side host also has addresses on a network the director
    // reaches only through it (static routes above).
    sh(&[
        "ip",
        "-n",
        &ns_s,
        "addr",
        "add",
        "198.19.100.1/32",
        "dev",
        "lo",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns_s,
        "addr",
        "add",
        "2001:db8:100::1/128",
        "dev",
        "lo",
    ]);

    // Hosts resolve the director and get echo replies (v4 and v6); the
    // taps' links read DOWN in the director's namespace after the move.
    let out = ping(&ns_c, &["198.18.0.1"]);
    assert!(out.contains("3 received"), "{out}");
    let out = ping(&ns_c, &["-6", "2001:db8::1"]);
    assert!(out.contains("3 received"), "{out}");
    // From behind the gateway: the director must resolve 198.18.1.2 and
    // 2001:db8:1::2 itself to send the replies.
    let out = ping(&ns_s, &["-I", "198.19.100.1", "198.18.1.1"]);
    assert!(out.contains("3 received"), "{out}");
    let out = ping(&ns_s, &["-6", "-I", "2001:db8:100::1", "2001:db8:1::1"]);
    assert!(out.contains("3 received"), "{out}");

    // The hosts learned the director's configured MACs.
    let n = sh(&["ip", "-n", &ns_c, "neigh", "show", "198.18.0.1"]);
    assert!(n.contains("lladdr 02:00:00:00:00:01"), "{n}");
    let n = sh(&["ip", "-n", &ns_c, "-6", "neigh", "show", "2001:db8::1"]);
    assert!(n.contains("lladdr 02:00:00:00:00:01"), "{n}");
    let n = sh(&["ip", "-n", &ns_s, "neigh", "show", "198.18.1.1"]);
    assert!(n.contains("lladdr 02:00:00:00:00:02"), "{n}");

    let (status, stderr) = uvsd.stop();
    drop(netns);
    assert!(
        status.is_some_and(|s| s.success()),
        "uvsd exit {status:?}: {stderr}"
    );
    // The director resolved the hosts: its neighbour tables at shutdown.
    for want in [
        format!("ip=198.18.0.2 lladdr={CLIENT_MAC} port=client state=learned"),
        format!("ip=2001:db8::2 lladdr={CLIENT_MAC} port=client state=learned"),
        format!("ip=198.18.1.2 lladdr={SERVER_MAC} port=server state=learned"),
        format!("ip=2001:db8:1::2 lladdr={SERVER_MAC} port=server state=learned"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    // It asked for the gateway itself (Linux sends its ARP request from
    // 198.19.100.1, which is not on-link, so nothing was learned from it).
    let counter = |name: &str| -> u64 {
        stderr
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(counter("arp_requested") >= 1, "{stderr}");
    assert!(counter("icmp_echo_replied") >= 6, "{stderr}");
    assert!(counter("icmp6_echo_replied") >= 6, "{stderr}");
    assert!(counter("queued_for_resolution") >= 1, "{stderr}");

    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    assert!(
        !common::ok(&["ip", "link", "show", &tag_c]),
        "tap {tag_c} still exists"
    );
}
