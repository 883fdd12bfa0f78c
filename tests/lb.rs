//! Load balancing end to end in net_tap mode: real Linux clients (curl,
//! nc) and real servers (python3's HTTP server, a UDP service) in network
//! namespaces built by scripts/topo.sh, uvsd in between, configured with
//! uvsadm exactly as an operator would, and checked as an operator would:
//! by content, by which server answered, and with `uvsadm -L -n --stats`
//! and `-L -n -c`.
//!
//! TUN: this kernel has no ipip/gre/fou modules, so each real server runs
//! scripts/tun_decap.py, a userspace decapsulator that hands the inner
//! packet to the server's own kernel TCP/IP stack through a tun device;
//! the server then answers the client directly, as with a kernel tunnel.
//!
//! The tests need root, run one at a time (each uvsd polls a core), and
//! remove their namespaces even when they fail.

mod common;

use std::process::Command;

use common::lab::{conns_per_server, lock, sha, Lab, UVSADM, VIP, VIP6};

#[test]
fn nat_tcp_and_udp_over_ipv4_and_ipv6() {
    let _g = lock();
    let lab = Lab::new("n", "nat", 3, 2);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    for i in 1..=3 {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m"));
    }
    // Content survives the rewrite both ways.
    assert!(lab.blob_matches(VIP), "1 MiB download through NAT differs");
    lab.ok("-Z");
    // rr over 3 servers, 30 connections: 10 each, as -L --stats shows.
    for _ in 0..30 {
        lab.who("198.18.0.2", VIP);
    }
    let stats = lab.ok("-L -n --stats");
    let per = conns_per_server(&stats);
    for i in 1..=3 {
        assert_eq!(per[&format!("198.18.1.1{i}:80")], 10, "{stats}");
    }
    // Replies pass the director under NAT: OutPkts counted.
    let svc = stats.lines().find(|l| l.starts_with("TCP  ")).unwrap();
    let outpkts: u64 = svc.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(outpkts > 0, "{stats}");

    // UDP request/response.
    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.12:53 -m"));
    assert_eq!(lab.udp(VIP, "hello").as_deref(), Some("rs2 hello"));

    // IPv6.
    lab.ok(&format!("-A -t [{VIP6}]:80 -s rr"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r [2001:db8:1::11]:80 -m"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r [2001:db8:1::13]:80 -m"));
    let mut seen: Vec<String> = (0..4).map(|_| lab.who("2001:db8::2", VIP6)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs3"]);
    assert!(lab.blob_matches(VIP6), "IPv6 download through NAT differs");
    lab.ok(&format!("-A -u [{VIP6}]:53 -s rr"));
    lab.ok(&format!("-a -u [{VIP6}]:53 -r [2001:db8:1::13]:53 -m"));
    assert_eq!(lab.udp(VIP6, "six").as_deref(), Some("rs3 six"));

    // The connection list shows real states.
    let conns = lab.ok("-L -n -c");
    assert!(conns.starts_with("IPVS connection entries\n"), "{conns}");
    assert!(conns.contains("TIME_WAIT"), "{conns}");
    assert!(conns.contains(&format!("{VIP}:80")), "{conns}");
    assert!(conns.contains("UDP "), "{conns}");
}

#[test]
fn direct_routing_over_ipv4_and_ipv6() {
    let _g = lock();
    let lab = Lab::new("d", "dr", 2, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11 -g"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12 -g"));
    assert!(lab.blob_matches(VIP), "download through DR differs");
    let mut seen: Vec<String> = (0..20).map(|_| lab.who("198.18.0.2", VIP)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"]);
    // Replies bypass the director: no OutPkts.
    let stats = lab.ok("-L -n --stats");
    let svc = stats.lines().find(|l| l.starts_with("TCP  ")).unwrap();
    assert_eq!(svc.split_whitespace().nth(4), Some("0"), "{stats}");

    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.11 -g"));
    assert_eq!(lab.udp(VIP, "dr").as_deref(), Some("rs1 dr"));

    lab.ok(&format!("-A -t [{VIP6}]:80 -s rr"));
    lab.ok(&format!("-a -t [{VIP6}]:80 -r 2001:db8:1::12 -g"));
    assert_eq!(lab.who("2001:db8::2", VIP6), "rs2");
    assert!(lab.blob_matches(VIP6), "IPv6 download through DR differs");
}

#[test]
fn tunnels_ipip_gue_and_gre() {
    let _g = lock();
    for (tag, kind, opts) in [
        ("i", "ipip", "-i"),
        ("u", "gue", "-i --tun-type gue --tun-port 6080 --tun-csum"),
        ("g", "gre", "-i --tun-type gre --tun-csum"),
    ] {
        let lab = Lab::new(tag, kind, 2, 1);
        lab.ok(&format!("-A -t {VIP}:80 -s rr"));
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11 {opts}"));
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12 {opts}"));
        assert!(lab.blob_matches(VIP), "{kind}: download differs");
        let mut seen: Vec<String> = (0..10).map(|_| lab.who("198.18.0.2", VIP)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, ["rs1", "rs2"], "{kind}");
        lab.ok(&format!("-A -u {VIP}:53 -s rr"));
        lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.12 {opts}"));
        assert_eq!(lab.udp(VIP, kind).as_deref(), Some(&*format!("rs2 {kind}")));
        let info = lab.ok("-L -n --tun-info");
        assert!(info.contains("Tunnel"), "{info}");
    }
}

#[test]
fn schedulers_and_persistence_as_operators_see_them() {
    let _g = lock();
    let lab = Lab::new("s", "nat", 3, 4);
    // wrr 3:2:1 over 60 connections.
    lab.ok(&format!("-A -t {VIP}:80 -s wrr"));
    for (i, w) in [(1, 3), (2, 2), (3, 1)] {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m -w {w}"));
    }
    for _ in 0..60 {
        lab.who("198.18.0.2", VIP);
    }
    let per = conns_per_server(&lab.ok("-L -n --stats"));
    assert_eq!(
        (
            per["198.18.1.11:80"],
            per["198.18.1.12:80"],
            per["198.18.1.13:80"]
        ),
        (30, 20, 10)
    );

    // sh: each client address stays on one server.
    lab.ok(&format!("-E -t {VIP}:80 -s sh"));
    for c in 2..=5 {
        let from = format!("198.18.0.{c}");
        let first = lab.who(&from, VIP);
        for _ in 0..5 {
            assert_eq!(lab.who(&from, VIP), first, "sh moved client {from}");
        }
    }

    // Persistence: rr would alternate, -p keeps a client on one server.
    lab.ok(&format!("-E -t {VIP}:80 -s rr -p 60"));
    let first = lab.who("198.18.0.3", VIP);
    for _ in 0..6 {
        assert_eq!(lab.who("198.18.0.3", VIP), first, "persistent client moved");
    }
    let pc = lab.ok("-L -n --persistent-conn");
    assert!(pc.contains("PersistConn"), "{pc}");
    let c = lab.ok("-L -n -c");
    assert!(
        c.contains("NONE") || c.contains("ASSURED"),
        "template listed: {c}"
    );
}

#[test]
fn weight_zero_deletion_timeouts_and_a_vanishing_server() {
    let _g = lock();
    let lab = Lab::new("w", "nat", 2, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));

    // A slow download to whichever server gets it first (rr starts with
    // the newest: rs2), then rs2 is quiesced while it runs.
    let p = lab.p.clone();
    let want = sha(&std::fs::read(format!("/tmp/{p}-www/blob")).unwrap());
    let slow = std::thread::spawn(move || {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{p}-cli")])
            .args(["curl", "-s", "-f", "-m", "60", "--limit-rate", "200k"])
            .arg(format!("http://{VIP}/blob"))
            .output()
            .unwrap();
        out.status.success() && sha(&out.stdout) == want
    });
    // Wait (at most 20 s on a busy machine) for the download's connection.
    let mut busy = String::new();
    let mut busy_rs = None;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        busy = lab.ok("-L -n");
        busy_rs = busy
            .lines()
            .filter_map(|l| l.strip_prefix("  -> "))
            .find(|l| l.split_whitespace().nth(3) == Some("1"))
            .map(|l| l.split_whitespace().next().unwrap().to_string());
        if busy_rs.is_some() {
            break;
        }
    }
    let busy_rs = busy_rs.unwrap_or_else(|| panic!("no active connection: {busy}"));
    lab.ok(&format!("-e -t {VIP}:80 -r {busy_rs} -m -w 0"));
    let busy_name = if busy_rs.starts_with("198.18.1.11") {
        "rs1"
    } else {
        "rs2"
    };
    for _ in 0..6 {
        assert_ne!(
            lab.who("198.18.0.2", VIP),
            busy_name,
            "quiesced server got a new connection"
        );
    }
    assert!(
        slow.join().unwrap(),
        "the existing download did not finish intact"
    );

    // Deleting a destination: new connections go to the other one.
    lab.ok(&format!("-e -t {VIP}:80 -r {busy_rs} -m -w 1"));
    lab.ok(&format!("-d -t {VIP}:80 -r {busy_rs}"));
    for _ in 0..4 {
        assert_ne!(lab.who("198.18.0.2", VIP), busy_name);
    }
    let list = lab.ok("-L -n");
    assert!(!list.contains(&busy_rs), "{list}");

    // --set timeouts show in -c.
    lab.ok("--set 600 60 42");
    assert_eq!(
        lab.ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 600 60 42\n"
    );
    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.11:53 -m"));
    assert!(lab.udp(VIP, "t").is_some());
    let c = lab.ok("-L -n -c");
    let udp = c
        .lines()
        .find(|l| l.starts_with("UDP"))
        .unwrap_or_else(|| panic!("{c}"));
    let expire = udp.split_whitespace().nth(1).unwrap();
    assert!(expire <= "00:42" && expire.starts_with("00:"), "{udp}");

    // A real server that vanishes: its clients fail cleanly (timeout, no
    // hang of the director); the director keeps serving and answering.
    lab.ok(&format!("-a -t {VIP}:80 -r {busy_rs} -m"));
    let gone_ns = if busy_name == "rs1" { "rs1" } else { "rs2" };
    lab.ns(gone_ns, &["ip", "link", "set", "eth0", "down"])
        .unwrap();
    let mut failures = 0;
    let mut successes = 0;
    for _ in 0..6 {
        match lab.get("198.18.0.2", &format!("http://{VIP}/who")) {
            Some(_) => successes += 1,
            None => failures += 1,
        }
    }
    assert!(
        failures > 0 && successes > 0,
        "{failures} failed, {successes} served"
    );
    assert!(lab
        .ns("cli", &["ping", "-c", "1", "-W", "2", "198.18.0.1"])
        .is_some());
    let (code, _, _) = lab.adm("-L -n");
    assert_eq!(code, 0);
}

#[test]
fn bad_commands_change_nothing_on_a_running_director() {
    let _g = lock();
    let lab = Lab::new("b", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    let before = lab.ok("-S -n");
    let (code, _, err) = lab.adm(&format!("-A -t {VIP}:80 -s rr"));
    assert_eq!((code, err.as_str()), (255, "Service already exists\n"));
    let (code, _, err) = lab.adm(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -w -3"));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = lab.adm("--frobnicate");
    assert_eq!(code, 255);
    assert_eq!(lab.ok("-S -n"), before);
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
    // Invoked as ipvsadm (a symlink), uvsadm behaves the same.
    let link = lab.scratch.path("ipvsadm");
    std::os::unix::fs::symlink(UVSADM, &link).unwrap();
    let out = Command::new(&link)
        .args(["--socket", &lab.sock(), "-S", "-n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), before);
}
