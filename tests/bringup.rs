//! End to end on net_tap: uvsd owns two TAP ports whose kernel sides live
//! in two network namespaces; real Linux hosts ping the director over IPv4
//! and IPv6, and the director resolves their MACs (ARP and NDP) in turn.
//! After SIGTERM nothing is left: no taps, no hugepage files, no runtime
//! directory.

mod common;

use common::{leftovers, sh, Daemon, Netns, Scratch};

/// The MACs uvsd gives the kernel sides of its TAPs (the ports' MACs
/// below, made distinct: 02 -> 06 in the first octet).
const CLIENT_MAC: &str = "06:00:00:00:00:01";
const SERVER_MAC: &str = "06:00:00:00:00:02";

/// Moves `ifname` into `ns` and gives it addresses; it keeps the MAC uvsd
/// gave it, which is `mac`.
fn host(ns: &str, ifname: &str, mac: &str, addrs: &[&str]) {
    sh(&["ip", "link", "set", ifname, "netns", ns]);
    let link = sh(&["ip", "-n", ns, "link", "show", ifname]);
    assert!(link.contains(&format!("link/ether {mac} ")), "{link}");
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

/// The README's topology on one port: the TAP's kernel side in a Linux
/// bridge with a host behind it, and no `mac =` in the config. The bridge
/// must not take the director's MAC for its own, so the host reaches the
/// director (ARP, then ping) through the bridge. Nothing is changed by
/// hand on the TAP: uvsd gave its kernel side a MAC of its own, which its
/// start-up line names.
#[test]
fn a_bridged_tap_without_a_configured_mac_reaches_the_director() {
    common::require_root();
    let tag = common::unique("br");
    let prefix = common::unique("brp");
    let dir = Scratch::new("bridged");
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[eal]
args = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix={prefix}"]
[workers]
lcores = [1]
[control]
socket = "{sock}"
[[port]]
name = "lan"
device = "net_tap_{tag},iface={tag}"
addresses = ["198.18.5.1/24"]
"#,
            sock = dir.path("uvsadm.sock").display()
        ),
    )
    .unwrap();
    let mut uvsd = Daemon::start(&cfg);
    let line = uvsd
        .log
        .iter()
        .find(|l| l.starts_with("uvsd: port ") && l.contains(" name=lan "))
        .cloned()
        .unwrap_or_default();
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or_default()
            .to_string()
    };
    let port_mac = field("mac=");
    let kernel_mac = field("kernel_mac=");
    assert_eq!(field("kernel_side="), tag, "{line}");
    assert!(!port_mac.is_empty() && !kernel_mac.is_empty(), "{line}");
    assert_ne!(port_mac, kernel_mac, "{line}");

    let (ns_br, ns_h) = (format!("uvs-{tag}"), format!("uvs-{tag}h"));
    let netns = Netns::create(&[&ns_br, &ns_h]);
    sh(&["ip", "link", "set", &tag, "netns", &ns_br]);
    let link = sh(&["ip", "-n", &ns_br, "link", "show", &tag]);
    assert!(
        link.contains(&format!("link/ether {kernel_mac} ")),
        "{link}"
    );
    sh(&["ip", "-n", &ns_br, "link", "add", "br0", "type", "bridge"]);
    sh(&[
        "ip", "-n", &ns_br, "link", "set", &tag, "master", "br0", "up",
    ]);
    sh(&["ip", "-n", &ns_br, "link", "set", "br0", "up"]);
    sh(&[
        "ip", "-n", &ns_br, "link", "add", "vh0", "type", "veth", "peer", "name", "vh1", "netns",
        &ns_h,
    ]);
    sh(&[
        "ip", "-n", &ns_br, "link", "set", "vh0", "master", "br0", "up",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns_h,
        "addr",
        "add",
        "198.18.5.2/24",
        "dev",
        "vh1",
    ]);
    sh(&["ip", "-n", &ns_h, "link", "set", "vh1", "up"]);

    let out = ping(&ns_h, &["198.18.5.1"]);
    assert!(out.contains("3 received"), "{out}");
    let n = sh(&["ip", "-n", &ns_h, "neigh", "show", "198.18.5.1"]);
    assert!(n.contains(&format!("lladdr {port_mac}")), "{n}");

    let (status, stderr) = uvsd.stop();
    drop(netns);
    assert!(
        status.is_some_and(|s| s.success()),
        "uvsd exit {status:?}: {stderr}"
    );
}
