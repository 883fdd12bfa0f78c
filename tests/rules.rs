//! Packet rules end to end: uvstables (as iptables) and uvsset (as ipset)
//! against a running uvsd, with real clients and servers in namespaces.
//!
//! * The classic fwmark case: ports 80 and 443 of an address are marked
//!   by mangle PREROUTING MARK rules into one persistent fwmark service,
//!   so a client stays on one real server across both ports.
//! * A blocklist: clients in a hash:net set (with a nomatch carve-out) get
//!   nothing through a filter INPUT rule; the others are served.
//! * `-i`: a rule names the port clients arrive on (by `+` wildcard) and
//!   stops them; the same rule naming the server port does not.
//! * `-o` in filter FORWARD: traffic routed out by the server port is
//!   dropped and counted; the service, whose replies leave by the client
//!   port, is not.
//!
//! The tests need root and run one at a time (each uvsd polls a core).

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::lab::{lock, Lab, VIP};
use common::{in_ns, Procs};

const UVSTABLES: &str = env!("CARGO_BIN_EXE_uvstables");
const UVSSET: &str = env!("CARGO_BIN_EXE_uvsset");
const HTTP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/http_server.py");

/// `prog` (invoked under that name) against the lab's daemon; returns
/// (status, stdout, stderr).
fn tool(lab: &Lab, bin: &str, prog: &str, line: &str) -> (i32, String, String) {
    let out = Command::new(bin)
        .arg0(prog)
        .args(["--socket", &lab.sock()])
        .args(line.split_whitespace())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn iptables(lab: &Lab, line: &str) -> String {
    let (code, out, err) = tool(lab, UVSTABLES, "iptables", line);
    assert_eq!(code, 0, "iptables {line}: {err}");
    out
}

fn ipset(lab: &Lab, line: &str) -> (i32, String, String) {
    tool(lab, UVSSET, "ipset", line)
}

/// The packet counter of the first rule line of a `-L -v -n -x` listing
/// whose target is `target`.
fn rule_packets(listing: &str, target: &str) -> u64 {
    listing
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(target))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {target} rule in\n{listing}"))
}

#[test]
fn fwmark_service_keeps_a_client_on_one_server_across_ports_80_and_443() {
    let _g = lock();
    let lab = Lab::new("fw", "nat", 2, 2);
    // The real servers also serve port 443 (plain HTTP, to tell who answers).
    let mut servers = Procs(Vec::new());
    for i in 1..=2 {
        let ns = format!("{}-rs{i}", lab.p);
        let dir = format!("/tmp/{}-www/rs{i}", lab.p);
        servers
            .0
            .push(in_ns(&ns, &["python3", HTTP, &dir, "443"]).spawn().unwrap());
        let ready = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            lab.ns(
                &format!("rs{i}"),
                &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/443"],
            )
            .is_some()
        });
        assert!(ready, "rs{i} does not listen on 443");
    }
    // The director's own client-side address is the "VIP", as on a Linux
    // director where the VIP is a local address.
    let vip = "198.18.0.1";
    iptables(
        &lab,
        &format!("-t mangle -A PREROUTING -d {vip}/32 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 1"),
    );
    lab.ok("-A -f 1 -s rr -p 300");
    lab.ok("-a -f 1 -r 198.18.1.11 -m");
    lab.ok("-a -f 1 -r 198.18.1.12 -m");
    assert!(
        lab.ok("-L -n").contains("\nFWM  1 rr persistent 300\n"),
        "{}",
        lab.ok("-L -n")
    );

    let who = |from: &str, port: u16| {
        lab.get(from, &format!("http://{vip}:{port}/who"))
            .unwrap_or_else(|| panic!("GET {vip}:{port} from {from} failed"))
            .trim()
            .to_string()
    };
    let mut chosen = Vec::new();
    for client in ["198.18.0.2", "198.18.0.3"] {
        let first = who(client, 80);
        for port in [443, 80, 443, 443, 80] {
            assert_eq!(who(client, port), first, "{client} moved on port {port}");
        }
        chosen.push(first);
    }
    // Round robin gave the two clients' templates different servers: the
    // service schedules, and persistence is what keeps each client.
    assert_ne!(chosen[0], chosen[1]);
    // The templates are fwmark templates ("IP", mark as address).
    let conns = lab.ok("-L -n -c");
    assert!(
        conns.contains("IP  ") && conns.contains("0.0.0.1:0"),
        "{conns}"
    );
    // The MARK rule counted every packet of those 12 connections.
    let listing = iptables(&lab, "-t mangle -L PREROUTING -v -n -x");
    assert!(rule_packets(&listing, "MARK") >= 12 * 3, "{listing}");
    // Without the mark the address is no service: the same request fails.
    iptables(&lab, "-t mangle -F PREROUTING");
    assert!(
        lab.get("198.18.0.2", &format!("http://{vip}:443/who"))
            .is_none(),
        "served without a mark"
    );
}

#[test]
fn blocklisted_clients_get_nothing_and_the_others_are_served() {
    let _g = lock();
    let lab = Lab::new("bl", "nat", 2, 3);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));
    // Clients are 198.18.0.2-4; block .0/30 (.0-.3) except .3.
    for line in [
        "create blocked hash:net",
        "add blocked 198.18.0.0/30",
        "add blocked 198.18.0.3 nomatch",
    ] {
        let (code, _, err) = ipset(&lab, line);
        assert_eq!(code, 0, "ipset {line}: {err}");
    }
    iptables(&lab, "-A INPUT -m set --match-set blocked src -j DROP");
    assert!(
        lab.get("198.18.0.2", &format!("http://{VIP}/who"))
            .is_none(),
        "a blocked client was served"
    );
    assert!(!lab.who("198.18.0.3", VIP).is_empty(), "nomatch carve-out");
    assert!(!lab.who("198.18.0.4", VIP).is_empty(), "outside the set");
    let listing = iptables(&lab, "-L INPUT -v -n -x");
    assert!(rule_packets(&listing, "DROP") > 0, "{listing}");
    // In use by the rule: ipset refuses to destroy it.
    let (code, _, err) = ipset(&lab, "destroy blocked");
    assert_ne!(code, 0);
    assert!(err.contains("in use"), "{err}");
    // Rule gone: the client is served again, and the set can go.
    iptables(&lab, "-D INPUT 1");
    assert!(!lab.who("198.18.0.2", VIP).is_empty());
    assert_eq!(ipset(&lab, "destroy blocked").0, 0);
}

#[test]
fn interface_rules_match_the_port_clients_arrive_on() {
    let _g = lock();
    let lab = Lab::new("ifr", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    // Clients come in on the port named "client".
    iptables(&lab, "-A INPUT -i cli+ -p tcp --dport 80 -j DROP");
    assert!(
        lab.get("198.18.0.2", &format!("http://{VIP}/who"))
            .is_none(),
        "a client arriving on the client port was served"
    );
    let listing = iptables(&lab, "-L INPUT -v -n -x");
    assert!(rule_packets(&listing, "DROP") > 0, "{listing}");
    assert!(listing.contains("cli+"), "{listing}");
    // The same rule for the server port leaves clients alone.
    iptables(&lab, "-R INPUT 1 -i server -p tcp --dport 80 -j DROP");
    assert!(!lab.who("198.18.0.2", VIP).is_empty());
}

#[test]
fn a_forward_rule_names_the_port_routed_traffic_leaves_by() {
    let _g = lock();
    let lab = Lab::with_config(
        "ofw",
        "nat",
        1,
        1,
        1,
        None,
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n",
    );
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    // The client reaches the real server's own address through the
    // director, routed (the first packets may wait for neighbours).
    let ping = |count: &str| {
        lab.ns("cli", &["ping", "-c", count, "-W", "2", "198.18.1.11"])
            .is_some()
    };
    let direct = "http://198.18.1.11/who";
    assert!((0..10).any(|_| ping("1")), "routed before the rule");
    assert!(lab.get("198.18.0.2", direct).is_some(), "routed TCP");

    // iptables refuses -o where no packet has a leaving interface yet.
    let (code, _, err) = tool(&lab, UVSTABLES, "iptables", "-A INPUT -o server -j DROP");
    assert_eq!(code, 2);
    assert!(err.contains("Can't use -o with INPUT"), "{err}");

    iptables(&lab, "-A FORWARD -o server -j DROP");
    assert!(!ping("2"), "ping leaving by the server port got through");
    assert!(
        lab.get("198.18.0.2", direct).is_none(),
        "TCP leaving by the server port got through"
    );
    let listing = iptables(&lab, "-L FORWARD -v -n -x");
    assert!(rule_packets(&listing, "DROP") > 0, "{listing}");
    assert!(listing.contains("server"), "{listing}");
    // The service's replies leave by the client port: still served.
    assert!(!lab.who("198.18.0.2", VIP).is_empty(), "the service");
    // Rule gone: routed again.
    iptables(&lab, "-D FORWARD 1");
    assert!((0..5).any(|_| ping("1")), "routed after the rule went");
}
