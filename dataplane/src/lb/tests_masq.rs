//! kube-proxy's masquerading in the balancer: a NAT connection the nat
//! rules masquerade goes from the director's address toward the real
//! server (FULLNAT), one they do not is plain NAT, and a reply to a
//! masquerade address that is also a virtual service address (a NodePort
//! on it) is owned by its destination endpoint.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::model::{DestConfig, Family, Protocol, ServiceConfig, ServiceKey};
use crate::rules::{Neg, Net, NoNames, Rule, RuleOp, RuleTables, Table, Target};
use crate::snat::NatRules;
use crate::wire::testutil::{frame, L4};
use crate::wire::{checksum, parse_packet, tcp};

const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;
/// The director's address toward the real servers.
const NODE: &str = "198.18.1.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, _: IpAddr) -> Option<(IpAddr, u16)> {
        Some((ip(NODE), 1500))
    }
}

fn tcp_frame(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, b"");
    let m = parse_packet(&f).unwrap();
    let off = usize::from(m.l4_offset);
    let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    f[off + 13] = flags;
    let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
    let c = checksum::update16(t.checksum(), old, new);
    t.set_checksum(c);
    f
}

fn run(lb: &mut Lb, f: &[u8]) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process(&mut b, &m, 0, &Routes);
    (a, b.data().to_vec())
}

/// A ClusterIP-like service 198.18.0.100:80 and a NodePort-like one on the
/// node's address, NAT to one pod; `nat POSTROUTING ! -s 198.18.0.0/24 -j
/// MASQUERADE`; the node's address a local address (as the control plane
/// makes port addresses while a nat rule masquerades).
fn node() -> ConfigStore {
    let mut st = ConfigStore::new();
    for (vip, port) in [("198.18.0.100", 80), (NODE, 30080)] {
        let key = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: ip(vip),
            port,
        };
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = "rr".into();
        st.apply(&ConfigOp::AddService(cfg)).unwrap();
        let d = DestConfig {
            addr: ip("198.18.1.11"),
            port: 8080,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        st.apply(&ConfigOp::AddDest(key, d)).unwrap();
    }
    let mut t = RuleTables::default();
    t.apply(
        Family::V4,
        Table::Nat,
        &RuleOp::Append {
            chain: "POSTROUTING".into(),
            rule: Rule {
                src: Some(Neg {
                    neg: true,
                    v: Net::new(ip("198.18.0.0"), 24),
                }),
                target: Target::Masquerade {
                    to_ports: None,
                    random: false,
                    random_fully: true,
                },
                ..Rule::default()
            },
            counters: None,
        },
    )
    .unwrap();
    st.ensure_local(ip(NODE)).unwrap();
    st.set_nat(Arc::new(NatRules::compile(&t.v4, &t.v6, &NoNames)));
    st.set_rules(Arc::new(crate::rules::Program::default()));
    st
}

fn lb() -> Lb {
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 4096,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(node().snapshot());
    lb
}

#[test]
fn the_nat_rules_choose_masquerading_per_connection() {
    let mut lb = lb();
    // Not masqueraded: the pod sees the client.
    let (a, out) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
    );
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.sport, m.dport), (ip("198.18.0.2"), 40000, 8080));

    // Masqueraded: the pod sees the node's address and a port of its pool.
    let (a, out) = run(
        &mut lb,
        &tcp_frame("198.19.0.2", 40000, "198.18.0.100", 80, SYN),
    );
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.dport), (ip(NODE), 8080));
    let lport = m.sport;

    // The pod's answer goes to the node's address, which is also the
    // NodePort's address: owned by the connection's endpoint there, and
    // translated back to the client as the service.
    let reply = tcp_frame("198.18.1.11", 8080, NODE, lport, SYNACK);
    let rm = parse_packet(&reply).unwrap();
    assert_eq!(lb.client_endpoint(&reply, &rm), Some((ip(NODE), lport)));
    let (a, back) = run(&mut lb, &reply);
    assert_eq!(a, Action::Forward(ip("198.19.0.2")));
    let bm = parse_packet(&back).unwrap();
    assert_eq!(
        (bm.src, bm.sport, bm.dst, bm.dport),
        (ip("198.18.0.100"), 80, ip("198.19.0.2"), 40000)
    );

    // A client of the NodePort is still owned by its source.
    let syn = tcp_frame("198.19.0.2", 40001, NODE, 30080, SYN);
    let sm = parse_packet(&syn).unwrap();
    assert_eq!(
        lb.client_endpoint(&syn, &sm),
        Some((ip("198.19.0.2"), 40001))
    );
}
