//! Several workers, and configuration changes under traffic, end to end.
//!
//! Two workers poll two queues per tap port. The kernel spreads each tap's
//! packets over its queues by its own flow hash, unrelated to UVS's, so a
//! NAT connection's packets arrive at both workers; the worker that owns
//! the connection (chosen from the client endpoint) must get them all,
//! through the hand-over rings. The shutdown report's counters show how
//! many were handed over.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::lab::{conns_per_server, lock, sha, Lab, VIP};

#[test]
fn two_workers_hand_nat_replies_to_the_connection_owner() {
    let _g = lock();
    let mut lab = Lab::with_workers("m", "nat", 3, 2, 2);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    for i in 1..=3 {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m"));
    }
    // Many short connections from two client addresses: every one answered.
    for n in 0..40 {
        let from = if n % 2 == 0 {
            "198.18.0.2"
        } else {
            "198.18.0.3"
        };
        lab.who(from, VIP);
    }
    assert!(lab.blob_matches(VIP), "download across two workers differs");
    lab.ok(&format!("-A -u {VIP}:53 -s rr"));
    lab.ok(&format!("-a -u {VIP}:53 -r 198.18.1.11:53 -m"));
    for n in 0..10 {
        let q = format!("q{n}");
        assert_eq!(lab.udp(VIP, &q), Some(format!("rs1 {q}")));
    }
    let stats = lab.ok("-L -n --stats");
    let per = conns_per_server(&stats);
    let total: u64 = per
        .iter()
        .filter(|(a, _)| a.ends_with(":80"))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(total, 41, "{stats}");

    let (status, report) = lab.stop_daemon();
    assert!(status.is_some_and(|s| s.success()), "{report}");
    let handed: u64 = (0..2)
        .map(|w| common::shutdown_counter(&report, w, "handed_over"))
        .sum();
    let received: u64 = (0..2)
        .map(|w| common::shutdown_counter(&report, w, "handed_in"))
        .sum();
    assert!(handed > 0, "no packet was handed over: {report}");
    assert!(received >= handed, "hand-overs lost: {report}");
    // The rings also carry copies of neighbour answers; nothing else.
    let shared: u64 = (0..2)
        .map(|w| common::shutdown_counter(&report, w, "neighbor_shared"))
        .sum();
    assert!(
        received <= handed + shared,
        "more taken from the rings than put in: {report}"
    );
    assert_eq!(
        (0..2)
            .map(|w| common::shutdown_counter(&report, w, "drop_handover_full"))
            .sum::<u64>(),
        0
    );
}

#[test]
fn a_thousand_changes_to_other_services_lose_nothing_on_a_busy_one() {
    let _g = lock();
    let lab = Lab::with_workers("c", "nat", 2, 2, 2);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));

    // A slow download and a stream of short requests on the busy service
    // while the configuration changes 1000 times elsewhere.
    let done = Arc::new(AtomicBool::new(false));
    let p = lab.p.clone();
    let want = sha(&std::fs::read(format!("/tmp/{p}-www/blob")).unwrap());
    let slow = {
        let p = p.clone();
        std::thread::spawn(move || {
            let out = Command::new("ip")
                .args(["netns", "exec", &format!("{p}-cli")])
                .args(["curl", "-s", "-f", "-m", "120", "--limit-rate", "150k"])
                .arg(format!("http://{VIP}/blob"))
                .output()
                .unwrap();
            out.status.success() && sha(&out.stdout) == want
        })
    };
    let short = {
        let (p, done) = (p.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !done.load(Ordering::SeqCst) {
                let st = Command::new("ip")
                    .args(["netns", "exec", &format!("{p}-cli")])
                    .args(["curl", "-s", "-f", "-o", "/dev/null", "-m", "15"])
                    .args(["--interface", "198.18.0.3"])
                    .arg(format!("http://{VIP}/who"))
                    .status()
                    .unwrap();
                if st.success() {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        })
    };
    let mut changes = 0;
    let mut round = 0u32;
    while changes < 1000 {
        let port = 1000 + round % 50;
        let svc = format!("-t 198.18.0.101:{port}");
        for line in [
            format!("-A {svc} -s wlc"),
            format!("-a {svc} -r 198.18.1.11:80 -m -w 2"),
            format!("-a {svc} -r 198.18.1.12:80 -m"),
            format!("-e {svc} -r 198.18.1.12:80 -m -w 0"),
            format!("-E {svc} -s sh"),
            format!("-d {svc} -r 198.18.1.11:80"),
            format!("-D {svc}"),
            "--set 900 120 300".to_string(),
        ] {
            lab.ok(&line);
            changes += 1;
        }
        round += 1;
    }
    done.store(true, Ordering::SeqCst);
    let (ok, failed) = short.join().unwrap();
    assert!(
        slow.join().unwrap(),
        "the long download broke during the changes"
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} short requests failed",
        ok + failed
    );
    assert!(ok > 0);
    // Only the busy service is left, with its counters intact.
    let list = lab.ok("-S -n");
    assert_eq!(
        list.lines().filter(|l| l.starts_with("-A")).count(),
        1,
        "{list}"
    );
}

/// Template rows of `-L -n -c` (client port 0) for `client` (or network).
fn templates_of(listing: &str, client: &str) -> usize {
    listing
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some(&format!("{client}:0")))
        .count()
}

/// The PersistConn column of each real server of `-L -n --persistent-conn`.
fn persist_conns(listing: &str) -> Vec<u64> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

#[test]
fn persistence_and_locality_hold_across_two_workers() {
    let _g = lock();
    let lab = Lab::with_workers("p", "nat", 3, 3, 2);
    lab.ok(&format!("-A -t {VIP}:80 -s rr -p 300"));
    for i in 1..=3 {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m"));
    }
    // One connection of another client first: it lands on one worker, so
    // the two workers' rr cursors differ from here on, as they do on any
    // busy director.
    lab.who("198.18.0.4", VIP);
    // 30 connections per client, from as many source ports (curl's), so
    // spread over both workers: each client stays on one server.
    for client in ["198.18.0.2", "198.18.0.3"] {
        let mut servers: Vec<String> = (0..30).map(|_| lab.who(client, VIP)).collect();
        servers.sort();
        servers.dedup();
        assert_eq!(servers.len(), 1, "{client} reached {servers:?}");
    }
    let list = lab.ok("-L -n -c");
    for client in ["198.18.0.2", "198.18.0.3", "198.18.0.4"] {
        assert_eq!(templates_of(&list, client), 1, "{client}:\n{list}");
    }
    let pc = lab.ok("-L -n --persistent-conn");
    assert_eq!(persist_conns(&pc).iter().sum::<u64>(), 3, "{pc}");

    // -M: two clients of one /24 share one template and one server.
    lab.ok("-C");
    lab.ok(&format!("-A -t {VIP}:80 -s rr -p 300 -M 255.255.255.0"));
    for i in 1..=3 {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m"));
    }
    lab.who("198.18.0.4", VIP);
    let mut servers: Vec<String> = (0..20)
        .map(|n| lab.who(["198.18.0.2", "198.18.0.3"][n % 2], VIP))
        .collect();
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 1, "one /24 reached {servers:?}");
    let list = lab.ok("-L -n -c");
    assert_eq!(templates_of(&list, "198.18.0.0"), 1, "{list}");

    // lblc: one table for the director, so every connection to one
    // destination address (the VIP) lands on one server.
    lab.ok("-C");
    lab.ok(&format!("-A -t {VIP}:80 -s lblc"));
    for i in 1..=3 {
        lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.1{i}:80 -m"));
    }
    let mut servers: Vec<String> = (0..24)
        .map(|n| lab.who(["198.18.0.2", "198.18.0.3", "198.18.0.4"][n % 3], VIP))
        .collect();
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 1, "lblc sent one address to {servers:?}");
}
