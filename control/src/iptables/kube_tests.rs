//! kube-proxy's rule set (tests/data/kube-proxy, written by hand from the
//! rules kube-proxy's IPVS mode installs) through the real restore
//! parsers, then its nat chains walked for the connections kube-proxy
//! cares about: who is masqueraded and who is not.

use std::net::IpAddr;

use dataplane::config::ConfigStore;
use dataplane::model::Family;
use dataplane::rules::{Interfaces, RuleTables, NO_PORT};
use dataplane::snat::{nat_packet, NatFacts, NatRules};

use super::{execute, CompileNames, Tool};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/kube-proxy");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The three files loaded as a user would (ipset restore, then
/// iptables-restore), and the nat chains compiled.
fn load() -> (ConfigStore, RuleTables, NatRules) {
    let mut store = ConfigStore::new();
    let sets = std::fs::read_to_string(format!("{DATA}/ipset.save")).unwrap();
    let (r, _) = crate::ipset::execute_at(&mut store, &["restore".to_string()], Some(&sets), 1);
    assert_eq!(r.code, 0, "ipset restore: {}", r.stderr);
    let rules = std::fs::read_to_string(format!("{DATA}/iptables.save")).unwrap();
    let mut tables = RuleTables::default();
    let out = execute(
        &mut tables,
        store.sets(),
        Tool::Restore,
        Family::V4,
        &[],
        Some(&rules),
        "Thu Dec  3 10:40:00 2026\n",
    );
    assert_eq!(out.response.code, 0, "restore: {}", out.response.stderr);
    let nat = NatRules::compile(
        &tables.v4,
        &tables.v6,
        &CompileNames(store.sets(), &Interfaces::default()),
    );
    (store, tables, nat)
}

/// The node's own addresses and the service addresses (`--dst-type LOCAL`).
fn local(a: &IpAddr) -> bool {
    ["198.18.0.1", "198.18.1.1", "198.18.0.100"].contains(&a.to_string().as_str())
}

/// Whether a TCP connection `client -> vip:vport`, sent by IPVS to
/// `pod:8080`, is masqueraded (nat PREROUTING, then POSTROUTING after the
/// rewrite, as [`dataplane`]'s balancer asks them).
fn masqueraded(
    store: &ConfigStore,
    nat: &NatRules,
    client: &str,
    vip: &str,
    vport: u16,
    pod: &str,
) -> bool {
    let sets = store.sets().table();
    let (pkt, set) = nat_packet(6, ip(client), 40000, ip(vip), vport, true, 60, NO_PORT);
    let facts = NatFacts {
        sets: &sets,
        pkt: set,
        local: &local,
    };
    let mark = nat.prerouting(&pkt, &facts, 0, 0);
    let (pkt, set) = nat_packet(6, ip(client), 40000, ip(pod), 8080, true, 60, NO_PORT);
    let facts = NatFacts {
        sets: &sets,
        pkt: set,
        local: &local,
    };
    match nat.postrouting(&pkt, &facts, mark, 0) {
        Some(t) => {
            assert_eq!(t.addrs, None, "kube-proxy masquerades, it never SNATs");
            true
        }
        None => false,
    }
}

#[test]
fn kube_proxy_files_load_unchanged_and_masquerade_whom_kube_proxy_masquerades() {
    let (store, tables, nat) = load();
    assert!(nat.has_postrouting(false) && !nat.has_postrouting(true));
    // ClusterIP from inside the cluster CIDR (198.18.0.0/23): the pod sees
    // the client; from outside it: the node.
    assert!(!masqueraded(
        &store,
        &nat,
        "198.18.0.2",
        "198.18.0.100",
        80,
        "198.18.1.11"
    ));
    assert!(masqueraded(
        &store,
        &nat,
        "198.19.0.2",
        "198.18.0.100",
        80,
        "198.18.1.12"
    ));
    // NodePort: always masqueraded (KUBE-NODE-PORT-TCP), on any node address.
    assert!(masqueraded(
        &store,
        &nat,
        "198.18.0.2",
        "198.18.0.1",
        30080,
        "198.18.1.11"
    ));
    assert!(masqueraded(
        &store,
        &nat,
        "198.19.0.2",
        "198.18.1.1",
        30080,
        "198.18.1.11"
    ));
    // A port the NodePort set does not hold, on the node: not marked.
    assert!(!masqueraded(
        &store,
        &nat,
        "198.19.0.2",
        "198.18.0.1",
        30081,
        "198.18.1.11"
    ));
    // A pod reaching itself through its service (KUBE-LOOP-BACK): the
    // node's address, or its own answer would never come back.
    assert!(masqueraded(
        &store,
        &nat,
        "198.18.1.11",
        "198.18.0.100",
        80,
        "198.18.1.11"
    ));
    assert!(!masqueraded(
        &store,
        &nat,
        "198.18.1.11",
        "198.18.0.100",
        80,
        "198.18.1.12"
    ));

    // Routed traffic (a pod to the world): KUBE-POSTROUTING returns for
    // packets without the mark.
    assert!(nat
        .lookup(6, ip("198.18.1.11"), ip("198.19.0.2"), 0)
        .is_none());

    // The counters a user lists moved: the mark rule once per masqueraded
    // connection of the PREROUTING walk (2 NodePorts, 1 ClusterIP from
    // outside), the final MASQUERADE for each marked one.
    let t = tables.v4.tables.get(&dataplane::rules::Table::Nat).unwrap();
    let chain = |n: &str| t.chains.iter().find(|c| c.name == n).unwrap();
    let packets = |n: &str, i: usize| chain(n).rules[i].counted.counters.total().0;
    assert_eq!(packets("KUBE-MARK-MASQ", 0), 3);
    assert_eq!(packets("KUBE-POSTROUTING", 0), 1, "the hairpin");
    assert_eq!(
        packets("KUBE-POSTROUTING", 3),
        3,
        "MASQUERADE --random-fully"
    );
}
