//! kube-proxy's rule set on the director, end to end: the ipset, iptables
//! and ipvsadm files kube-proxy's IPVS mode writes for one ClusterIP
//! service and one NodePort (tests/data/kube-proxy, written by hand from
//! its documented rules) load unchanged through `ipset restore`,
//! `iptables-restore` and `ipvsadm -R` (uvsset, uvstables, uvsadm under
//! those names), and real traffic goes where they say:
//! * a ClusterIP request from inside the cluster CIDR (198.18.0.0/23, the
//!   client's segment and the pods') reaches a pod that sees the client;
//! * the same service from outside the cluster CIDR (a host beyond the
//!   client, 198.19.0.2, scripts/topo.sh `outside`) and the NodePort are masqueraded:
//!   the pod sees the node's address toward it and answers the node;
//! * a port of the ClusterIP that is no service is refused (kube-proxy's
//!   KUBE-IPVS-FILTER REJECT);
//! * the counters a user lists (`ipvsadm -L -n --stats`, `iptables -t nat
//!   -L -v -n`) moved as they would on a node.
//!
//! uvsd runs two workers, so replies to masqueraded connections are
//! handed to the worker that owns the node's port they come back to.
//! The "pods" are the lab's real servers, each running a service on TCP
//! port 8080 that answers with its name and the address it sees.
//!
//! Needs root; runs alone (uvsd polls a core) and removes its namespaces
//! even when it fails.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::lab::{lock, run, Lab, TOPO};
use common::{in_ns, wait_listening, Procs};

const UVSTABLES: &str = env!("CARGO_BIN_EXE_uvstables");
const UVSSET: &str = env!("CARGO_BIN_EXE_uvsset");
const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kube-proxy");

const CLUSTER_IP: &str = "198.18.0.100";
const NODE: &str = "198.18.0.1";
/// The node's address on the pods' segment: what a masqueraded pod sees.
const NODE_TO_PODS: &str = "198.18.1.1";
const CLIENT: &str = "198.18.0.2";

/// A pod's service: each connection gets "NAME PEER-ADDRESS".
const WHOAMI: &str = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 8080))
l.listen(16)
while True:
    c, a = l.accept()
    c.sendall(("%s %s\n" % (sys.argv[1], a[0])).encode())
    c.close()
"#;

/// uvsd's config beyond the lab's ports: the outside network behind the
/// client namespace; forwarding on, as kube-proxy sets it.
const NODE_CONFIG: &str = r#"[[route]]
to = "198.19.0.0/24"
via = "198.18.0.2"
[sysctl]
"net.ipv4.ip_forward" = 1
"#;

/// `bin` run as `prog` against the lab's daemon with `file` (of the data
/// directory) on standard input; must succeed.
fn load(lab: &Lab, bin: &str, prog: &str, args: &[&str], file: &str) {
    let text = std::fs::read_to_string(format!("{DATA}/{file}")).unwrap();
    let mut child = Command::new(bin)
        .arg0(prog)
        .args(["--socket", &lab.sock()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?} < {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `iptables` (uvstables under that name) with these words: its stdout.
fn iptables(lab: &Lab, line: &str) -> String {
    let out = Command::new(UVSTABLES)
        .arg0("iptables")
        .args(["--socket", &lab.sock()])
        .args(line.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iptables {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One TCP connection from namespace `ns` to `addr:port`: the first line
/// it gets, or the error bash reports.
fn ask(lab: &Lab, ns: &str, addr: &str, port: u16) -> String {
    let out = in_ns(
        &format!("{}-{ns}", lab.p),
        &[
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/{port} && timeout 5 head -1 <&3"),
        ],
    )
    .output()
    .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string()
}

/// Asks until an answer names a pod (the first packets of a path may wait
/// for neighbour resolution), up to 20 tries: (pod, address it saw).
fn pod_answer(lab: &Lab, ns: &str, addr: &str, port: u16) -> (String, String) {
    let mut last = String::new();
    for _ in 0..20 {
        last = ask(lab, ns, addr, port);
        if let Some((pod, peer)) = last.split_once(' ') {
            if pod.starts_with("rs") {
                return (pod.to_string(), peer.to_string());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("{ns} -> {addr}:{port}: no pod answered; last: {last}");
}

/// The packet counter of the first line of a `-L -v -n -x` listing that
/// contains every one of `words`.
fn packets(listing: &str, words: &[&str]) -> u64 {
    listing
        .lines()
        .find(|l| words.iter().all(|w| l.contains(w)))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule with {words:?} in\n{listing}"))
}

/// The connection count of virtual service `svc` in `ipvsadm -L -n
/// --stats` output.
fn service_conns(stats: &str, svc: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with("TCP") && l.split_whitespace().nth(1) == Some(svc))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no service {svc} in\n{stats}"))
}

#[test]
fn kube_proxy_rules_load_unchanged_and_traffic_goes_where_they_say() {
    common::require_root();
    let _g = lock();
    let lab = Lab::with_config("kp", "nat", 2, 1, 2, None, NODE_CONFIG);
    run(&[TOPO, "outside", &lab.p]);
    let mut pods = Procs(Vec::new());
    for rs in ["rs1", "rs2"] {
        let ns = format!("{}-{rs}", lab.p);
        pods.0
            .push(in_ns(&ns, &["python3", "-c", WHOAMI, rs]).spawn().unwrap());
        wait_listening(&ns, 8080);
    }

    // kube-proxy's three files, unchanged, through the tools it calls.
    load(&lab, UVSSET, "ipset", &["restore"], "ipset.save");
    load(&lab, UVSTABLES, "iptables-restore", &[], "iptables.save");
    load(&lab, UVSADM, "ipvsadm", &["-R"], "ipvs.rules");
    let listing = lab.ok("-L -n");
    assert!(
        listing.contains(&format!("{CLUSTER_IP}:80 rr"))
            && listing.contains(&format!("{NODE}:30080 rr"))
            && listing.contains("198.18.1.11:8080"),
        "{listing}"
    );

    // ClusterIP from inside the cluster CIDR: not masqueraded; both pods
    // answer (round robin per worker: a few connections reach both).
    let mut seen = Vec::new();
    for _ in 0..12 {
        let (pod, peer) = pod_answer(&lab, "cli", CLUSTER_IP, 80);
        assert_eq!(peer, CLIENT, "{pod} sees the in-cluster client");
        if !seen.contains(&pod) {
            seen.push(pod);
        }
        if seen.len() == 2 {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["rs1", "rs2"], "both pods answer the ClusterIP");

    // ClusterIP from outside the cluster CIDR: masqueraded (KUBE-MARK-MASQ
    // in nat PREROUTING, MASQUERADE in KUBE-POSTROUTING).
    let (pod, peer) = pod_answer(&lab, "out", CLUSTER_IP, 80);
    assert_eq!(
        peer, NODE_TO_PODS,
        "{pod} sees the node for an outside client"
    );

    // NodePort from the client, on the node's address: masqueraded.
    for _ in 0..2 {
        let (pod, peer) = pod_answer(&lab, "cli", NODE, 30080);
        assert_eq!(peer, NODE_TO_PODS, "{pod} sees the node for a NodePort");
    }

    // A port of the ClusterIP that is no service: refused at once by
    // KUBE-IPVS-FILTER (ICMP port unreachable), no pod answers.
    let refused = ask(&lab, "cli", CLUSTER_IP, 81);
    assert!(refused.contains("refused"), "{CLUSTER_IP}:81 -> {refused}");

    // What a user checks on the node.
    let stats = lab.ok("-L -n --stats");
    assert!(
        service_conns(&stats, &format!("{CLUSTER_IP}:80")) >= 3,
        "{stats}"
    );
    assert!(
        service_conns(&stats, &format!("{NODE}:30080")) >= 2,
        "{stats}"
    );
    let nat = iptables(&lab, "-t nat -L -v -n -x");
    assert!(
        packets(&nat, &["MARK", "MARK or 0x4000"]) >= 3,
        "KUBE-MARK-MASQ: the outside ClusterIP client and the NodePorts\n{nat}"
    );
    assert!(
        packets(&nat, &["MASQUERADE", "random-fully"]) >= 3,
        "the masqueraded connections\n{nat}"
    );
    assert!(
        packets(&nat, &["RETURN", "mark match ! 0x4000/0x4000"]) >= 2,
        "the in-cluster ClusterIP connections leave KUBE-POSTROUTING unmarked\n{nat}"
    );
    let filter = iptables(&lab, "-L KUBE-IPVS-FILTER -v -n -x");
    assert!(
        packets(&filter, &["REJECT", "KUBE-IPVS-IPS"]) >= 1,
        "the refused port\n{filter}"
    );
}
