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

use std::process::Command;

use common::lab::{lock, run, Lab, TOPO, VIP, VIP6};

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
}
