//! The load-balancing stage packet by packet, as a user would check it on
//! the wire: where each packet goes, what it looks like, and what the
//! counters say.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::model::{
    DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey, TunnelConfig, TunnelCsum,
    TunnelType,
};
use crate::wire::testutil::{checksums_ok, frame, L4};
use crate::wire::{checksum, parse_packet, tcp};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some(match dst {
            IpAddr::V4(_) => (ip("198.18.1.1"), 1500),
            IpAddr::V6(_) => (ip("2001:db8:1::1"), 1500),
        })
    }
}

fn svc_key(proto: Protocol, vip: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: proto,
        addr: ip(vip),
        port,
    }
}

fn dest(addr: &str, port: u16, method: ForwardMethod, weight: i32) -> DestConfig {
    DestConfig {
        addr: ip(addr),
        port,
        method,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// A store with one service on `key` and destinations added in order
/// (so the kernel list order is the reverse).
fn store(
    key: ServiceKey,
    sched: &str,
    persistent: Option<u32>,
    dests: &[DestConfig],
) -> ConfigStore {
    let mut st = ConfigStore::new();
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = sched.into();
    cfg.persistent = persistent;
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    for d in dests {
        st.apply(&ConfigOp::AddDest(key, d.clone())).unwrap();
    }
    st
}

fn lb_for(st: &ConfigStore) -> Lb {
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 4096,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    lb
}

/// A TCP frame with the given flags.
fn tcp_frame(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, b"");
    let m = parse_packet(&f).unwrap();
    let off = usize::from(m.l4_offset);
    let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    f[off + 13] = flags;
    let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    // Patch the TCP checksum for the changed word (RFC 1624).
    let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
    let c = checksum::update16(t.checksum(), old, new);
    t.set_checksum(c);
    f
}

fn run(lb: &mut Lb, f: &[u8], now: u64) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process(&mut b, &m, now, &Routes);
    (a, b.data().to_vec())
}

fn dst_of(f: &[u8]) -> (IpAddr, u16) {
    let m = parse_packet(f).unwrap();
    (m.dst, m.dport)
}

fn masq3(sched: &str) -> ConfigStore {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    store(
        k,
        sched,
        None,
        &[
            dest("198.18.1.11", 8080, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 8080, ForwardMethod::Masq, 1),
            dest("198.18.1.13", 8080, ForwardMethod::Masq, 1),
        ],
    )
}

#[test]
fn nat_connection_is_rewritten_both_ways_and_sticks_to_its_server() {
    let st = masq3("rr");
    let mut lb = lb_for(&st);
    let (a, out) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
        0,
    );
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    assert_eq!(dst_of(&out), (rs, 8080));
    assert!(checksums_ok(&out));
    let m = parse_packet(&out).unwrap();
    assert_eq!(m.src, ip("198.18.0.2"), "NAT keeps the client address");
    assert_eq!(m.ttl, 63);

    // The server's SYN-ACK goes back to the client from the VIP.
    let (a, back) = run(
        &mut lb,
        &tcp_frame(&rs.to_string(), 8080, "198.18.0.2", 40000, SYNACK),
        1,
    );
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let m = parse_packet(&back).unwrap();
    assert_eq!((m.src, m.sport), (ip("198.18.0.100"), 80));
    assert!(checksums_ok(&back));

    // Later packets of the flow reach the same server.
    for i in 0..5 {
        let (a, _) = run(
            &mut lb,
            &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
            2 + i,
        );
        assert_eq!(a, Action::Forward(rs));
    }
    assert_eq!(lb.conns().len(), 1);

    // Counters: 1 connection, 6 packets in, 1 out, on the service.
    let snap = st.snapshot();
    let t = snap.services[0].shared.stats.total();
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 6, 1));
}

#[test]
fn rr_spreads_thirty_connections_ten_each() {
    let st = masq3("rr");
    let mut lb = lb_for(&st);
    let mut per: std::collections::HashMap<IpAddr, u32> = Default::default();
    for p in 0..30u16 {
        let (a, _) = run(
            &mut lb,
            &tcp_frame("198.18.0.2", 41000 + p, "198.18.0.100", 80, SYN),
            0,
        );
        let Action::Forward(rs) = a else {
            panic!("{a:?}")
        };
        *per.entry(rs).or_default() += 1;
    }
    assert_eq!(per.len(), 3);
    assert!(per.values().all(|&n| n == 10), "{per:?}");
    // SYN_RECV counts as active (since Linux 4.8).
    for d in &st.snapshot().services[0].dests {
        assert_eq!(d.shared.active(), 10);
    }
}

#[test]
fn wrr_follows_weights_three_two_one() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let st = store(
        k,
        "wrr",
        None,
        &[
            dest("198.18.1.11", 80, ForwardMethod::Masq, 3),
            dest("198.18.1.12", 80, ForwardMethod::Masq, 2),
            dest("198.18.1.13", 80, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let mut per: std::collections::HashMap<IpAddr, u32> = Default::default();
    for p in 0..60u16 {
        let (a, _) = run(
            &mut lb,
            &tcp_frame("198.18.0.2", 1000 + p, "198.18.0.100", 80, SYN),
            0,
        );
        let Action::Forward(rs) = a else {
            panic!("{a:?}")
        };
        *per.entry(rs).or_default() += 1;
    }
    assert_eq!(per[&ip("198.18.1.11")], 30);
    assert_eq!(per[&ip("198.18.1.12")], 20);
    assert_eq!(per[&ip("198.18.1.13")], 10);
}

#[test]
fn direct_routing_changes_only_the_ttl() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let st = store(
        k,
        "rr",
        None,
        &[dest("198.18.1.11", 80, ForwardMethod::Route, 1)],
    );
    let mut lb = lb_for(&st);
    let f = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN);
    let (a, out) = run(&mut lb, &f, 0);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let (m0, m1) = (parse_packet(&f).unwrap(), parse_packet(&out).unwrap());
    assert_eq!((m1.dst, m1.dport), (ip("198.18.0.100"), 80));
    assert_eq!(m1.ttl, m0.ttl - 1);
    // Everything from the IP payload on is untouched.
    assert_eq!(
        &out[usize::from(m1.l4_offset)..],
        &f[usize::from(m0.l4_offset)..]
    );
    assert!(checksums_ok(&out));
}

/// TCP 198.18.0.100:80 under rr with one real server, 198.18.1.11:80,
/// reached through a `kind` tunnel (GUE on port 6080) without checksum.
fn tunnel_store(kind: TunnelType) -> ConfigStore {
    let tun = TunnelConfig {
        kind,
        port: if kind == TunnelType::Gue { 6080 } else { 0 },
        csum: TunnelCsum::NoCsum,
    };
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    store(
        k,
        "rr",
        None,
        &[dest("198.18.1.11", 80, ForwardMethod::Tunnel(tun), 1)],
    )
}

#[test]
fn tunnel_destinations_get_the_packet_encapsulated() {
    for (kind, outer_proto) in [
        (TunnelType::Ipip, 4u8),
        (TunnelType::Gre, 47),
        (TunnelType::Gue, 17),
    ] {
        let mut lb = lb_for(&tunnel_store(kind));
        let f = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN);
        let (a, out) = run(&mut lb, &f, 0);
        assert_eq!(a, Action::Forward(ip("198.18.1.11")));
        let m = parse_packet(&out).unwrap();
        assert_eq!((m.src, m.dst), (ip("198.18.1.1"), ip("198.18.1.11")));
        assert_eq!(m.protocol, outer_proto, "{kind:?}");
        // The inner packet (still to the VIP) is at the end of the frame.
        let inner_len = f.len() - 14;
        let inner = &out[out.len() - inner_len..];
        let mut framed = f[..14].to_vec();
        framed.extend_from_slice(inner);
        let im = parse_packet(&framed).unwrap();
        assert_eq!((im.dst, im.dport), (ip("198.18.0.100"), 80));
    }
}

#[test]
fn no_destination_gets_icmp_port_unreachable_not_a_reset() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let st = store(
        k,
        "wlc",
        None,
        &[dest("198.18.1.11", 80, ForwardMethod::Masq, 0)],
    );
    let mut lb = lb_for(&st);
    let (a, out) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
        0,
    );
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.dst), (ip("198.18.0.100"), ip("198.18.0.2")));
    assert_eq!((m.protocol, m.icmp_type, m.icmp_code), (1, 3, 3));
    assert!(checksums_ok(&out));
    assert_eq!(lb.counters().icmp_sent.load(Ordering::Relaxed), 1);
}

#[test]
fn stray_and_foreign_packets() {
    let st = masq3("rr");
    let mut lb = lb_for(&st);
    // A mid-flow ACK for no connection is passed back: the stack answers
    // it with a reset, as the kernel's local stack does.
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        0,
    );
    assert_eq!(a, Action::Pass);
    assert_eq!(lb.conns().len(), 0);
    // A reset for no connection is dropped and counted.
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x04),
        0,
    );
    assert_eq!(a, Action::Drop(LbDrop::NoConnection));
    assert_eq!(lb.counters().drops(LbDrop::NoConnection), 1);
    // Not a virtual service: not the load balancer's business.
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.1", 22, SYN),
        0,
    );
    assert_eq!(a, Action::Pass);
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 81, SYN),
        0,
    );
    assert_eq!(a, Action::Pass);
}

#[test]
fn persistence_keeps_a_client_on_one_server() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let st = store(
        k,
        "rr",
        Some(300),
        &[
            dest("198.18.1.11", 80, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 80, ForwardMethod::Masq, 1),
            dest("198.18.1.13", 80, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let mut seen = Vec::new();
    for c in ["198.18.0.2", "198.18.0.3", "198.18.0.4"] {
        let mut first = None;
        for p in 0..6u16 {
            let (a, _) = run(
                &mut lb,
                &tcp_frame(c, 42000 + p, "198.18.0.100", 80, SYN),
                0,
            );
            let Action::Forward(rs) = a else {
                panic!("{a:?}")
            };
            assert_eq!(*first.get_or_insert(rs), rs, "client {c} moved");
        }
        seen.push(first.unwrap());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "rr still spreads different clients");
    // 3 templates + 18 connections.
    assert_eq!(lb.conns().len(), 21);
}

#[test]
fn weight_zero_lets_existing_flows_finish_and_sends_new_ones_elsewhere() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let mut st = store(
        k,
        "rr",
        None,
        &[
            dest("198.18.1.11", 80, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 80, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
        0,
    );
    let Action::Forward(busy) = a else {
        panic!("{a:?}")
    };
    let mut quiesced = dest(&busy.to_string(), 80, ForwardMethod::Masq, 0);
    quiesced.weight = 0;
    st.apply(&ConfigOp::EditDest(k, quiesced)).unwrap();
    lb.set_snapshot(st.snapshot());
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        1,
    );
    assert_eq!(a, Action::Forward(busy), "the existing flow goes on");
    for p in 0..5u16 {
        let (a, _) = run(
            &mut lb,
            &tcp_frame("198.18.0.3", 50000 + p, "198.18.0.100", 80, SYN),
            2,
        );
        assert!(matches!(a, Action::Forward(rs) if rs != busy), "{a:?}");
    }
}

#[test]
fn deleted_destination_drops_its_connections_and_new_ones_go_elsewhere() {
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let mut st = store(
        k,
        "rr",
        None,
        &[
            dest("198.18.1.11", 80, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 80, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
        0,
    );
    let Action::Forward(gone) = a else {
        panic!("{a:?}")
    };
    st.apply(&ConfigOp::DeleteDest {
        service: k,
        addr: gone,
        port: 80,
    })
    .unwrap();
    lb.set_snapshot(st.snapshot());
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        1,
    );
    assert_eq!(a, Action::Drop(LbDrop::DestUnavailable));
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40001, "198.18.0.100", 80, SYN),
        1,
    );
    assert!(matches!(a, Action::Forward(rs) if rs != gone), "{a:?}");
}

#[test]
fn ipv6_nat_round_trip() {
    let k = svc_key(Protocol::Tcp, "2001:db8::100", 80);
    let st = store(
        k,
        "rr",
        None,
        &[dest("2001:db8:1::11", 8080, ForwardMethod::Masq, 1)],
    );
    let mut lb = lb_for(&st);
    let (a, out) = run(
        &mut lb,
        &tcp_frame("2001:db8::2", 40000, "2001:db8::100", 80, SYN),
        0,
    );
    assert_eq!(a, Action::Forward(ip("2001:db8:1::11")));
    assert_eq!(dst_of(&out), (ip("2001:db8:1::11"), 8080));
    assert!(checksums_ok(&out));
    let (a, back) = run(
        &mut lb,
        &tcp_frame("2001:db8:1::11", 8080, "2001:db8::2", 40000, SYNACK),
        1,
    );
    assert_eq!(a, Action::Forward(ip("2001:db8::2")));
    let m = parse_packet(&back).unwrap();
    assert_eq!((m.src, m.sport), (ip("2001:db8::100"), 80));
    assert!(checksums_ok(&back));
}

#[test]
fn one_packet_udp_schedules_every_datagram() {
    let k = svc_key(Protocol::Udp, "198.18.0.100", 53);
    let mut st = ConfigStore::new();
    let mut cfg = ServiceConfig::new(k);
    cfg.scheduler = "rr".into();
    cfg.one_packet = true;
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    for a in ["198.18.1.11", "198.18.1.12"] {
        st.apply(&ConfigOp::AddDest(k, dest(a, 53, ForwardMethod::Masq, 1)))
            .unwrap();
    }
    let mut lb = lb_for(&st);
    let mut got = Vec::new();
    for _ in 0..4 {
        let f = frame(
            ip("198.18.0.2"),
            ip("198.18.0.100"),
            L4::Udp,
            5353,
            53,
            None,
            b"q",
        );
        let (a, _) = run(&mut lb, &f, 0);
        let Action::Forward(rs) = a else {
            panic!("{a:?}")
        };
        got.push(rs);
    }
    assert_ne!(got[0], got[1], "the same flow alternates under -o");
    assert_eq!(got[0], got[2]);
    assert_eq!(
        lb.conns().len(),
        0,
        "one-packet connections are never inserted"
    );
}

#[test]
fn udp_flow_keeps_its_server_and_replies_come_back_from_the_vip() {
    let k = svc_key(Protocol::Udp, "198.18.0.100", 53);
    let st = store(
        k,
        "rr",
        None,
        &[
            dest("198.18.1.11", 53, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 53, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let q = frame(
        ip("198.18.0.2"),
        ip("198.18.0.100"),
        L4::Udp,
        5353,
        53,
        None,
        b"q",
    );
    let (a, _) = run(&mut lb, &q, 0);
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    let (a2, _) = run(&mut lb, &q, 1);
    assert_eq!(a2, Action::Forward(rs));
    let r = frame(rs, ip("198.18.0.2"), L4::Udp, 53, 5353, None, b"answer");
    let (a, back) = run(&mut lb, &r, 2);
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let m = parse_packet(&back).unwrap();
    assert_eq!((m.src, m.sport), (ip("198.18.0.100"), 53));
    assert!(checksums_ok(&back));
}

#[test]
fn expired_connections_are_freed_by_housekeeping() {
    let k = svc_key(Protocol::Udp, "198.18.0.100", 53);
    let st = store(
        k,
        "rr",
        None,
        &[dest("198.18.1.11", 53, ForwardMethod::Masq, 1)],
    );
    let mut lb = lb_for(&st);
    let q = frame(
        ip("198.18.0.2"),
        ip("198.18.0.100"),
        L4::Udp,
        5353,
        53,
        None,
        b"q",
    );
    run(&mut lb, &q, 0);
    assert_eq!(lb.conns().len(), 1);
    lb.housekeeping(299_000, 1000);
    assert_eq!(lb.conns().len(), 1, "UDP lives 300 s");
    lb.housekeeping(301_000, 1000);
    assert_eq!(lb.conns().len(), 0);
    assert_eq!(st.snapshot().services[0].dests[0].shared.inactive(), 0);
}

mod pipeline_props {
    use super::*;
    use proptest::prelude::*;

    /// Valid frames towards the fuzz pipeline's services, then mutated, so
    /// that the property reaches deep into the stage.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        let seeds = vec![
            tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
            tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
            tcp_frame("198.18.1.11", 80, "198.18.0.2", 40000, SYNACK),
            frame(
                ip("198.18.0.3"),
                ip("198.18.0.100"),
                L4::Udp,
                999,
                53,
                None,
                b"x",
            ),
            tcp_frame("198.18.0.4", 1, "198.18.0.100", 8443, SYN),
            sctp_seed(
                ip("198.18.0.5"),
                5000,
                ip("198.18.0.100"),
                80,
                sctp_chunk::INIT,
            ),
            sctp_seed(
                ip("198.18.1.14"),
                80,
                ip("198.18.0.5"),
                5000,
                sctp_chunk::INIT_ACK,
            ),
            sctp_seed(
                ip("198.18.0.5"),
                5000,
                ip("198.18.0.100"),
                80,
                sctp_chunk::DATA,
            ),
        ];
        (
            proptest::collection::vec((0usize..8, any::<u16>(), any::<u8>()), 1..12),
            Just(seeds),
        )
            .prop_map(|(picks, seeds)| {
                let mut out = Vec::new();
                for (i, at, v) in picks {
                    let mut f = seeds[i].clone();
                    if v % 3 != 0 {
                        let at = usize::from(at) % f.len();
                        f[at] = v;
                    }
                    out.push(f.len().min(255) as u8);
                    out.extend_from_slice(&f[..f.len().min(255)]);
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn pipeline_never_panics_on_mutated_traffic(data in frames()) {
            let _ = fuzz_pipeline(&data);
        }

        #[test]
        fn pipeline_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = fuzz_pipeline(&data);
        }
    }

    fn sctp_seed(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, chunk: &[u8]) -> Vec<u8> {
        crate::wire::testutil::sctp_frame(src, dst, sport, dport, 7, &[chunk])
    }
    use crate::wire::testutil::sctp_chunk;

    #[test]
    fn valid_traffic_is_forwarded_by_the_fuzz_pipeline() {
        let f = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN);
        let init = sctp_seed(
            ip("198.18.0.5"),
            5000,
            ip("198.18.0.100"),
            80,
            sctp_chunk::INIT,
        );
        let mut data = vec![f.len() as u8];
        data.extend_from_slice(&f);
        data.push(init.len() as u8);
        data.extend_from_slice(&init);
        assert_eq!(fuzz_pipeline(&data), 2);
    }

    /// Conversations the fuzz pipeline's services understand, frame by
    /// frame: the seeds of the `pipeline` corpus (and, frame by frame, of
    /// the `wire` one).
    fn seed_conversations() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let (c, vip) = ("198.18.0.2", "198.18.0.100");
        let sctp = |from: &str, sport, to: &str, dport, chunk| {
            sctp_seed(ip(from), sport, ip(to), dport, chunk)
        };
        let (sc, sr) = ("198.18.0.5", "198.18.1.14");
        vec![
            (
                "tcp-nat",
                vec![
                    tcp_frame(c, 40000, vip, 80, SYN),
                    tcp_frame("198.18.1.11", 80, c, 40000, SYNACK),
                    tcp_frame(c, 40000, vip, 80, ACK),
                    tcp_frame(c, 40000, vip, 80, 0x11),
                    tcp_frame("198.18.1.11", 80, c, 40000, 0x11),
                    tcp_frame(c, 40000, vip, 80, 0x04),
                ],
            ),
            (
                "tcp-tunnel-persistent",
                vec![
                    tcp_frame(c, 40001, vip, 8443, SYN),
                    tcp_frame(c, 40002, vip, 22, SYN),
                    tcp_frame(c, 40001, vip, 8443, ACK),
                ],
            ),
            (
                "udp-dr",
                vec![
                    frame(ip(c), ip(vip), L4::Udp, 999, 53, None, b"query"),
                    frame(ip(c), ip(vip), L4::UdpNoCsum, 999, 53, None, b"again"),
                ],
            ),
            (
                "udp-no-service",
                vec![frame(ip(c), ip(vip), L4::Udp, 999, 54, None, b"q")],
            ),
            (
                "icmp-echo",
                vec![
                    frame(ip(c), ip(vip), L4::IcmpEcho, 1, 0, None, b"ping"),
                    frame(
                        ip("2001:db8::2"),
                        ip("2001:db8::100"),
                        L4::IcmpEcho,
                        1,
                        0,
                        None,
                        b"ping",
                    ),
                ],
            ),
            (
                "vlan-and-v6",
                vec![
                    frame(ip(c), ip(vip), L4::Tcp, 40003, 80, Some(10), b""),
                    frame(
                        ip("2001:db8::2"),
                        ip("2001:db8::100"),
                        L4::Tcp,
                        40004,
                        80,
                        None,
                        b"GET /",
                    ),
                    frame(
                        ip("2001:db8::2"),
                        ip("2001:db8::100"),
                        L4::Udp,
                        999,
                        53,
                        Some(20),
                        b"q",
                    ),
                ],
            ),
            (
                "sctp-nat",
                vec![
                    sctp(sc, 5000, vip, 80, sctp_chunk::INIT),
                    sctp(sr, 80, sc, 5000, sctp_chunk::INIT_ACK),
                    sctp(sc, 5000, vip, 80, sctp_chunk::COOKIE_ECHO),
                    sctp(sr, 80, sc, 5000, sctp_chunk::COOKIE_ACK),
                    sctp(sc, 5000, vip, 80, sctp_chunk::DATA),
                    sctp(sc, 5000, vip, 80, sctp_chunk::SHUTDOWN),
                    sctp(sr, 80, sc, 5000, sctp_chunk::SHUTDOWN_ACK),
                    sctp(sc, 5000, vip, 80, sctp_chunk::SHUTDOWN_COMPLETE),
                ],
            ),
            (
                "sctp-abort",
                vec![
                    sctp(sc, 5001, vip, 80, sctp_chunk::INIT),
                    sctp(sc, 5001, vip, 80, sctp_chunk::ABORT),
                ],
            ),
        ]
    }

    /// Writes the seeds of the `wire` and `pipeline` fuzz corpora under
    /// `$UVS_FUZZ_SEEDS` (scripts/fuzz-seeds runs it): each conversation as
    /// one pipeline input, and for the wire target every frame of them and
    /// what the stage made of it (NAT-rewritten, encapsulated in GUE, an
    /// ICMP error quoting it).
    #[test]
    #[ignore = "writes files; run by scripts/fuzz-seeds"]
    fn write_fuzz_seeds() {
        let Some(dir) = std::env::var_os("UVS_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let (wire, pipeline) = (dir.join("wire"), dir.join("pipeline"));
        std::fs::create_dir_all(&wire).unwrap();
        std::fs::create_dir_all(&pipeline).unwrap();
        let st = crate::lb::fuzz_config();
        let mut lb = lb_for(&st);
        let mut now = 0;
        for (name, frames) in seed_conversations() {
            let mut input = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                assert!(
                    f.len() <= 255,
                    "{name}: the pipeline's frames are at most 255 bytes"
                );
                input.push(f.len() as u8);
                input.extend_from_slice(f);
                std::fs::write(wire.join(format!("{name}-{i}")), f).unwrap();
                now += 1000;
                if let (Action::Forward(_), out) = run(&mut lb, f, now) {
                    std::fs::write(wire.join(format!("{name}-{i}-out")), out).unwrap();
                }
            }
            std::fs::write(pipeline.join(name), input).unwrap();
        }
    }

    #[test]
    fn a_fuzz_input_starts_on_an_empty_stage_whatever_ran_before() {
        let one = |f: &[u8]| [&[f.len() as u8][..], f].concat();
        let syn = one(&tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN));
        let ack = one(&tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK));
        // Alone, an ACK belongs to no connection and is not forwarded...
        assert_eq!(fuzz_pipeline(&ack), 0);
        // ...nor after an input that opened its connection,
        assert_eq!(fuzz_pipeline(&syn), 1);
        assert_eq!(fuzz_pipeline(&ack), 0);
        // while within one input it follows its SYN.
        assert_eq!(fuzz_pipeline(&[syn.clone(), ack.clone()].concat()), 2);
        let all: Vec<Vec<u8>> = seed_conversations()
            .into_iter()
            .map(|(_, frames)| frames.iter().flat_map(|f| one(f)).collect())
            .collect();
        let alone: Vec<usize> = all.iter().map(|i| fuzz_pipeline(i)).collect();
        let again: Vec<usize> = all.iter().rev().map(|i| fuzz_pipeline(i)).collect();
        assert_eq!(alone, again.into_iter().rev().collect::<Vec<_>>());
    }

    #[test]
    fn the_seed_conversations_are_forwarded_by_the_fuzz_pipeline() {
        // Every conversation with one of the stage's services is forwarded
        // whole, frame by frame: the seeds reach deep into the stage. (The
        // others are for the stack around it: echo, VLANs, no service.)
        for (name, frames) in seed_conversations() {
            if !matches!(
                name,
                "tcp-nat" | "tcp-tunnel-persistent" | "udp-dr" | "sctp-nat" | "sctp-abort"
            ) {
                continue;
            }
            let mut input = Vec::new();
            for f in &frames {
                input.push(f.len() as u8);
                input.extend_from_slice(f);
            }
            assert_eq!(fuzz_pipeline(&input), frames.len(), "{name}");
        }
    }
}

#[test]
fn client_endpoint_names_the_client_in_both_directions_and_in_icmp_quotes() {
    let st = masq3("rr");
    let mut lb = lb_for(&st);
    let syn = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN);
    let m = parse_packet(&syn).unwrap();
    let client = Some((ip("198.18.0.2"), 40000));
    assert_eq!(lb.client_endpoint(&syn, &m), client);
    let (a, _) = run(&mut lb, &syn, 0);
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    let reply = tcp_frame(&rs.to_string(), 8080, "198.18.0.2", 40000, SYNACK);
    assert_eq!(
        lb.client_endpoint(&reply, &parse_packet(&reply).unwrap()),
        client
    );
    // The real server's port unreachable about the forwarded SYN (client
    // -> real server): built by the director's own ICMP builder.
    let (_, fwd) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        1,
    );
    let mut b = TestBuf::new(&fwd);
    let fm = parse_packet(b.data()).unwrap();
    crate::xmit::icmp::icmp_error_reply(
        &mut b,
        &fm,
        crate::xmit::icmp::IcmpErrorKind::PortUnreachable,
        rs,
    )
    .unwrap();
    let em = parse_packet(b.data()).unwrap();
    assert!(em.is_icmp_error());
    assert_eq!(lb.client_endpoint(b.data(), &em), client);
}

#[test]
fn warming_a_burst_changes_no_decision() {
    let st = masq3("rr");
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 80_000,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    // More connections than WARM_MIN_CONNS, so warm() does its batch.
    let n = super::WARM_MIN_CONNS as u32 + 100;
    let client = |i: u32| format!("198.18.{}.{}", 2 + (i >> 16), (i >> 8) & 0xff);
    let mut owner = Vec::new();
    for i in 0..n {
        let (a, _) = run(
            &mut lb,
            &tcp_frame(
                &client(i),
                1024 + (i & 0xff) as u16,
                "198.18.0.100",
                80,
                SYN,
            ),
            0,
        );
        let Action::Forward(rs) = a else {
            panic!("{a:?}")
        };
        if i % 997 == 0 {
            owner.push((i, rs));
        }
    }
    assert!(lb.conns().len() >= super::WARM_MIN_CONNS);
    let frames: Vec<Vec<u8>> = owner
        .iter()
        .map(|(i, _)| {
            tcp_frame(
                &client(*i),
                1024 + (i & 0xff) as u16,
                "198.18.0.100",
                80,
                ACK,
            )
        })
        .collect();
    for chunk in frames.chunks(32).zip(owner.chunks(32)) {
        let views: Vec<&[u8]> = chunk.0.iter().map(|f| f.as_slice()).collect();
        lb.warm(&views);
        for (f, (_, rs)) in chunk.0.iter().zip(chunk.1) {
            let (a, _) = run(&mut lb, f, 1);
            assert_eq!(a, Action::Forward(*rs));
        }
    }
    // As the worker warms: the burst started, then carried on before each
    // packet, with frames that look nothing up among them (too short to
    // parse) and bursts longer than the warm-up takes.
    let mut burst: Vec<(Vec<u8>, Option<IpAddr>)> = Vec::new();
    for (f, (_, rs)) in frames.iter().zip(&owner) {
        burst.push((f.clone(), Some(*rs)));
        if burst.len() % 7 == 3 {
            burst.push((vec![0u8; 9], None));
        }
    }
    for chunk in burst.chunks(40) {
        let metas: Vec<_> = chunk.iter().map(|(f, _)| parse_packet(f)).collect();
        lb.warm_parsed(&metas);
        for (i, (f, rs)) in chunk.iter().enumerate() {
            lb.warm_next(i);
            if let Some(rs) = rs {
                let (a, _) = run(&mut lb, f, 2);
                assert_eq!(a, Action::Forward(*rs));
            }
        }
    }
}

#[test]
fn tunnel_packet_too_big_for_the_path_gets_frag_needed_back_to_the_client() {
    let mut lb = lb_for(&tunnel_store(TunnelType::Ipip));
    run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN),
        0,
    );
    // A full-size segment with DF: 1500 bytes of IP, 20 more would not fit.
    let mut f = frame(
        ip("198.18.0.2"),
        ip("198.18.0.100"),
        L4::Tcp,
        40000,
        80,
        None,
        &[0x55; 1460],
    );
    let m = parse_packet(&f).unwrap();
    let l3 = usize::from(m.l3_offset);
    // Set DF and fix the IPv4 header checksum for the changed word.
    let old = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]);
    f[l3 + 6] |= 0x40;
    let new = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]);
    let c = checksum::update16(u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]), old, new);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    let (a, out) = run(&mut lb, &f, 1);
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let e = parse_packet(&out).unwrap();
    assert_eq!((e.protocol, e.icmp_type, e.icmp_code), (1, 3, 4));
    // The next-hop MTU field (bytes 6-7 of the ICMP header) says what fits.
    let l4 = usize::from(e.l4_offset);
    assert_eq!(u16::from_be_bytes([out[l4 + 6], out[l4 + 7]]), 1480);
    assert!(checksums_ok(&out));
    assert_eq!(lb.counters().icmp_sent.load(Ordering::Relaxed), 1);
}

#[path = "tests_tunables.rs"]
mod tunables;

#[path = "tests_sctp.rs"]
mod sctp;
/// A change to one service leaves the other services' scheduler state as it
/// was (the rr cursor goes on where it stood), and the changed service's
/// scheduler sees its new destination at its next connection.
#[test]
fn a_change_to_one_service_keeps_the_others_scheduler_state() {
    let mut st = masq3("rr");
    let other = svc_key(Protocol::Tcp, "198.18.0.101", 80);
    let mut cfg = ServiceConfig::new(other);
    cfg.scheduler = "rr".into();
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    st.apply(&ConfigOp::AddDest(
        other,
        dest("198.18.1.21", 80, ForwardMethod::Masq, 1),
    ))
    .unwrap();
    let mut lb = lb_for(&st);
    let mut port = 42000;
    let mut next = |lb: &mut Lb, vip: &str| {
        port += 1;
        match run(lb, &tcp_frame("198.18.0.2", port, vip, 80, SYN), 0).0 {
            Action::Forward(rs) => rs,
            a => panic!("{a:?}"),
        }
    };
    let first = next(&mut lb, "198.18.0.100");
    let second = next(&mut lb, "198.18.0.100");
    assert_ne!(first, second);
    // The other service gains a server.
    st.apply(&ConfigOp::AddDest(
        other,
        dest("198.18.1.22", 80, ForwardMethod::Masq, 1),
    ))
    .unwrap();
    lb.set_snapshot(st.snapshot());
    let third = next(&mut lb, "198.18.0.100");
    assert!(third != first && third != second, "the cursor went on");
    assert_eq!(next(&mut lb, "198.18.0.100"), first, "and wrapped round");
    let got: std::collections::HashSet<IpAddr> =
        (0..2).map(|_| next(&mut lb, "198.18.0.101")).collect();
    assert_eq!(got, [ip("198.18.1.21"), ip("198.18.1.22")].into());
    // Deleted and added again (the new service reuses the slot): a fresh
    // rr starts from the head of the list, as the kernel's new service does.
    let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    let head = st.snapshot().service(&k).unwrap().dests[0].config.addr;
    assert_ne!(
        next(&mut lb, "198.18.0.100"),
        head,
        "the cursor stands past the head"
    );
    st.apply(&ConfigOp::DeleteService(k)).unwrap();
    let mut cfg = ServiceConfig::new(k);
    cfg.scheduler = "rr".into();
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    for d in ["198.18.1.11", "198.18.1.12", "198.18.1.13"] {
        st.apply(&ConfigOp::AddDest(k, dest(d, 8080, ForwardMethod::Masq, 1)))
            .unwrap();
    }
    lb.set_snapshot(st.snapshot());
    assert_eq!(next(&mut lb, "198.18.0.100"), head);
}

/// A listing made a piece at a time (as a worker answers `-L -c`, between
/// bursts) has every row of the one-go listing, once.
#[test]
fn connection_listing_in_pieces_has_every_row() {
    let st = masq3("rr");
    let mut lb = lb_for(&st);
    for p in 0..3000u16 {
        let f = tcp_frame("198.18.0.2", 10000 + p, "198.18.0.100", 80, SYN);
        assert!(matches!(run(&mut lb, &f, 0).0, Action::Forward(_)));
    }
    let key = |e: &crate::model::ConnEntry| (e.client, e.cport, e.daddr);
    let mut whole: Vec<_> = lb.connections(1).map(|e| key(&e)).collect();
    let mut rows = Vec::new();
    let (mut at, mut pieces) = (Some(0), 0);
    while let Some(start) = at {
        let before = rows.len();
        at = lb.connections_piece(start, 700, 1, &mut rows);
        assert!(rows.len() - before <= 700);
        pieces += 1;
    }
    assert!(pieces >= 5, "{pieces} pieces");
    let mut got: Vec<_> = rows.iter().map(key).collect();
    whole.sort();
    got.sort();
    assert_eq!(whole.len(), 3000);
    assert_eq!(got, whole);
}

/// Several workers: each has its own stage and connection table, a
/// connection belongs to the worker its client endpoint hashes to (as
/// `LbStage` hands packets over), and all share the director-wide
/// templates.
mod workers {
    use super::*;
    use crate::conn::shared::{merge_template_rows, SharedTemplates};
    use crate::rss::Ownership;

    struct Director {
        lbs: Vec<Lb>,
        owners: Ownership,
    }

    impl Director {
        fn new(st: &ConfigStore, n: usize) -> Director {
            let shared = Arc::new(SharedTemplates::new(1024));
            let lbs = (0..n)
                .map(|w| {
                    let mut lb = Lb::new(
                        w,
                        LbSettings {
                            capacity: 4096,
                            ..LbSettings::default()
                        },
                        0,
                    );
                    lb.set_shared_templates(Arc::clone(&shared));
                    lb.set_snapshot(st.snapshot());
                    lb
                })
                .collect();
            Director {
                lbs,
                owners: Ownership::new(n),
            }
        }

        fn owner(&self, client: &str, sport: u16) -> usize {
            self.owners.owner(ip(client), sport)
        }

        /// A SYN from `client:sport` through its owner: the server it
        /// reached.
        fn connect(&mut self, client: &str, sport: u16, now: u64) -> IpAddr {
            let w = self.owner(client, sport);
            let (a, _) = run(
                &mut self.lbs[w],
                &tcp_frame(client, sport, "198.18.0.100", 80, SYN),
                now,
            );
            let Action::Forward(rs) = a else {
                panic!("{client}:{sport}: {a:?}")
            };
            rs
        }

        /// A port of `client` owned by worker `w`, from `from` up.
        fn port_on(&self, client: &str, w: usize, from: u16) -> u16 {
            (from..).find(|&p| self.owner(client, p) == w).unwrap()
        }

        fn set_snapshot(&mut self, st: &ConfigStore) {
            for lb in &mut self.lbs {
                lb.set_snapshot(st.snapshot());
            }
        }

        /// Housekeeping every second from `from` to `to` (ms), as workers
        /// run it (every 10 ms) compressed.
        fn housekeeping(&mut self, from: u64, to: u64) {
            for t in (from..=to).step_by(1000) {
                for lb in &mut self.lbs {
                    lb.housekeeping(t, 1 << 16);
                }
            }
        }

        /// `-L -c` as the daemon assembles it.
        fn listing(&self, now: u64) -> Vec<crate::model::ConnEntry> {
            merge_template_rows(self.lbs.iter().flat_map(|l| l.connections(now)).collect())
        }
    }

    fn persistent3(netmask: u32) -> ConfigStore {
        let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let mut st = ConfigStore::new();
        let mut cfg = ServiceConfig::new(k);
        cfg.scheduler = "rr".into();
        cfg.persistent = Some(300);
        cfg.netmask = netmask;
        st.apply(&ConfigOp::AddService(cfg)).unwrap();
        for a in ["198.18.1.11", "198.18.1.12", "198.18.1.13"] {
            st.apply(&ConfigOp::AddDest(k, dest(a, 80, ForwardMethod::Masq, 1)))
                .unwrap();
        }
        st
    }

    fn persist_conns(st: &ConfigStore) -> Vec<u32> {
        st.snapshot().services[0]
            .dests
            .iter()
            .map(|d| d.shared.persistconns.load(Ordering::Relaxed))
            .collect()
    }

    /// Worker 1 alone has scheduled once, so the two workers' rr cursors
    /// differ: without director-wide templates a client's connections on
    /// the two workers would go to different servers.
    fn desync_cursors(d: &mut Director) {
        let p = d.port_on("198.18.9.9", 1, 30000);
        d.connect("198.18.9.9", p, 0);
    }

    #[test]
    fn every_connection_of_a_client_reaches_one_server_whatever_its_worker() {
        let st = persistent3(0xffff_ffff);
        let mut d = Director::new(&st, 2);
        desync_cursors(&mut d);
        let mut per_worker = [0; 2];
        for c in ["198.18.0.2", "198.18.0.3"] {
            let mut servers: Vec<IpAddr> = (0..30u16)
                .map(|i| {
                    per_worker[d.owner(c, 40000 + i)] += 1;
                    d.connect(c, 40000 + i, 1000)
                })
                .collect();
            servers.dedup();
            assert_eq!(servers.len(), 1, "client {c}: {servers:?}");
        }
        assert!(per_worker.iter().all(|&n| n >= 5), "{per_worker:?}");
        // One template per client in the listing and in PersistConn (plus
        // the one of the client that desynchronised the cursors).
        let rows = d.listing(1000);
        for c in ["198.18.0.2", "198.18.0.3"] {
            let t = rows
                .iter()
                .filter(|r| r.client == ip(c) && r.cport == 0)
                .count();
            assert_eq!(t, 1, "templates of {c}");
        }
        assert_eq!(rows.len(), 3 + 60 + 1);
        assert_eq!(persist_conns(&st).iter().sum::<u32>(), 3);
    }

    #[test]
    fn clients_of_one_netmask_network_share_a_server_across_workers() {
        let st = persistent3(0xffff_ff00);
        let mut d = Director::new(&st, 2);
        desync_cursors(&mut d);
        let mut servers = vec![];
        for (k, c) in ["198.18.0.2", "198.18.0.77"].iter().enumerate() {
            for w in 0..2 {
                for i in 0..5u16 {
                    let p = d.port_on(c, w, 40000 + 1000 * (k as u16 * 2 + w as u16) + 50 * i);
                    servers.push(d.connect(c, p, 1000));
                }
            }
        }
        servers.dedup();
        assert_eq!(servers.len(), 1, "{servers:?}");
        let rows = d.listing(1000);
        let templates: Vec<_> = rows
            .iter()
            .filter(|r| r.cport == 0 && r.client == ip("198.18.0.0"))
            .collect();
        assert_eq!(templates.len(), 1, "{rows:?}");
    }

    #[test]
    fn a_deleted_server_is_replaced_by_one_new_server_on_every_worker() {
        let mut st = persistent3(0xffff_ffff);
        let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let mut d = Director::new(&st, 2);
        desync_cursors(&mut d);
        let c = "198.18.0.2";
        let (p0, p1) = (d.port_on(c, 0, 40000), d.port_on(c, 1, 40000));
        let gone = d.connect(c, p0, 1000);
        assert_eq!(d.connect(c, p1, 1000), gone);
        st.apply(&ConfigOp::DeleteDest {
            service: k,
            addr: gone,
            port: 80,
        })
        .unwrap();
        d.set_snapshot(&st);
        // New connections through either worker, in either order: one new
        // server for all.
        let mut servers = vec![];
        for i in 0..6u16 {
            let p = d.port_on(c, usize::from(i % 2 == 1), 41000 + 100 * i);
            servers.push(d.connect(c, p, 2000));
        }
        servers.dedup();
        assert_eq!(servers.len(), 1, "{servers:?}");
        assert_ne!(servers[0], gone);
    }

    #[test]
    fn the_template_lives_while_any_workers_copy_does() {
        let st = persistent3(0xffff_ffff);
        let mut d = Director::new(&st, 2);
        desync_cursors(&mut d);
        let c = "198.18.0.2";
        let s = |x: u64| x * 1000;
        // A connection through worker 0 at 0 s, through worker 1 at 200 s:
        // the kernel's template would expire at 200 + 300 s.
        let first = d.connect(c, d.port_on(c, 0, 40000), s(0));
        assert_eq!(d.connect(c, d.port_on(c, 1, 40000), s(200)), first);
        // At 330 s worker 0's own copy is gone (its connection too), but
        // the director-wide template is not: the client keeps its server.
        d.housekeeping(s(200), s(330));
        let rows0: Vec<_> = d.lbs[0].connections(s(330)).collect();
        assert!(rows0.iter().all(|r| r.client != ip(c)), "{rows0:?}");
        let again = d.connect(c, d.port_on(c, 0, 41000), s(330));
        assert_eq!(again, first);
        // Long after every copy expired, the client is scheduled anew (rr
        // moves on) and only that new template is listed.
        d.housekeeping(s(330), s(2000));
        assert!(d.listing(s(2000)).iter().all(|r| r.client != ip(c)));
        assert_eq!(persist_conns(&st).iter().sum::<u32>(), 0);
    }

    #[test]
    fn lblc_sends_one_destination_address_to_one_server_from_every_worker() {
        let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let st = store(
            k,
            "lblc",
            None,
            // Weights above the connection count: never overloaded in
            // lblc's sense, so one table keeps every connection on one
            // server while wlc alone would spread them.
            &[
                dest("198.18.1.11", 80, ForwardMethod::Masq, 100),
                dest("198.18.1.12", 80, ForwardMethod::Masq, 100),
                dest("198.18.1.13", 80, ForwardMethod::Masq, 100),
            ],
        );
        let mut d = Director::new(&st, 2);
        let mut per_worker = [0; 2];
        let mut servers: Vec<IpAddr> = (0..24u16)
            .map(|n| {
                let c = format!("198.18.0.{}", 2 + n % 8);
                per_worker[d.owner(&c, 40000 + n)] += 1;
                d.connect(&c, 40000 + n, 0)
            })
            .collect();
        assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
        servers.dedup();
        assert_eq!(servers.len(), 1, "{servers:?}");
    }
}

fn run_marked(lb: &mut Lb, f: &[u8], mark: u32, now: u64) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process_marked(&mut b, &m, mark, now, &Routes);
    (a, b.data().to_vec())
}

/// The classic fwmark case: ports 80 and 443 of a VIP carry mark 1, one
/// persistent fwmark service keeps a client on one real server across
/// both ports and keeps the packet's port; an unmarked packet (or one with
/// another mark) to the same VIP goes to the address service, as the
/// kernel's lookup order says.
#[test]
fn fwmark_service_is_looked_up_first_and_persists_across_ports() {
    let fw = ServiceKey::Fwmark {
        mark: 1,
        family: crate::model::Family::V4,
    };
    let mut st = store(
        fw,
        "rr",
        Some(300),
        &[
            dest("198.18.1.11", 0, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 0, ForwardMethod::Masq, 1),
        ],
    );
    let plain = svc_key(Protocol::Tcp, "198.18.0.100", 80);
    st.apply(&ConfigOp::AddService(ServiceConfig::new(plain)))
        .unwrap();
    st.apply(&ConfigOp::AddDest(
        plain,
        dest("198.18.1.13", 80, ForwardMethod::Masq, 1),
    ))
    .unwrap();
    let mut lb = lb_for(&st);
    let mut first = None;
    for (i, port) in [80u16, 443, 80, 443].into_iter().enumerate() {
        let f = tcp_frame("198.18.0.2", 40000 + i as u16, "198.18.0.100", port, SYN);
        let (a, out) = run_marked(&mut lb, &f, 1, 0);
        let Action::Forward(rs) = a else {
            panic!("{a:?}")
        };
        assert_ne!(
            rs,
            ip("198.18.1.13"),
            "marked traffic took the address service"
        );
        assert_eq!(dst_of(&out), (rs, port), "the packet's port is kept");
        assert_eq!(*first.get_or_insert(rs), rs, "persistence across ports");
    }
    // Another client is scheduled round robin to the other server.
    let f = tcp_frame("198.18.0.3", 40000, "198.18.0.100", 443, SYN);
    let (a, _) = run_marked(&mut lb, &f, 1, 0);
    assert_ne!(Some(a), first.map(Action::Forward));
    // Unmarked, and marked with a mark no service has: the address service.
    for mark in [0, 2] {
        let f = tcp_frame("198.18.0.4", 41000 + mark as u16, "198.18.0.100", 80, SYN);
        let (a, _) = run_marked(&mut lb, &f, mark, 0);
        assert_eq!(a, Action::Forward(ip("198.18.1.13")), "mark {mark}");
    }
    // An IPv6 packet with mark 1 finds no IPv4 fwmark service.
    let f = tcp_frame("2001:db8::2", 40000, "2001:db8::100", 80, SYN);
    assert_eq!(run_marked(&mut lb, &f, 1, 0).0, Action::Pass);
}

/// A non-persistent fwmark service schedules (port-0 address services do
/// not), and a destination with port 0 takes the packet's port.
#[test]
fn non_persistent_fwmark_service_schedules_with_the_packets_port() {
    let fw = ServiceKey::Fwmark {
        mark: 0x10,
        family: crate::model::Family::V4,
    };
    let st = store(
        fw,
        "rr",
        None,
        &[dest("198.18.1.11", 0, ForwardMethod::Masq, 1)],
    );
    let mut lb = lb_for(&st);
    let f = tcp_frame("198.18.0.2", 40000, "198.18.0.1", 8443, SYN);
    let (a, out) = run_marked(&mut lb, &f, 0x10, 0);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    assert_eq!(dst_of(&out), (ip("198.18.1.11"), 8443));
    // The reply comes back from the address the client used.
    let reply = tcp_frame("198.18.1.11", 8443, "198.18.0.2", 40000, SYNACK);
    let (a, out) = run(&mut lb, &reply, 0);
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.sport), (ip("198.18.0.1"), 8443));
}
