//! The stack as a router ([`super::forward`]): frames built with
//! etherparse, what leaves re-parsed with etherparse.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::stack_tests::{two_ports, DIRECTOR_MAC};
use super::*;
use crate::buf::TestBuf;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x02];

#[derive(Default)]
struct TestIo {
    sent: Vec<(u16, Vec<u8>)>,
}

impl Io<TestBuf> for TestIo {
    fn alloc(&mut self) -> Option<TestBuf> {
        Some(TestBuf::new(&[]))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.sent.push((port, buf.data().to_vec()));
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// [`two_ports`] (port 1 also 2001:db8:1::1/64) with 198.19.0.0/16 and
/// 2001:db8:2::/48 behind gateways on port 1, the neighbours known, and
/// forwarding as `fwd` says.
fn router(fwd: Forwarding) -> Stack<TestBuf> {
    let mut ifaces = two_ports();
    ifaces[1].addrs.push("2001:db8:1::1/64".parse().unwrap());
    let cfg = L3Config {
        interfaces: ifaces,
        routes: vec![
            ("198.19.0.0/16".parse().unwrap(), ip("198.18.1.2")),
            ("2001:db8:2::/48".parse().unwrap(), ip("2001:db8:1::2")),
        ],
        neighbors: vec![
            (ip("198.18.1.2"), MacAddr(GW_MAC)),
            (ip("2001:db8:1::2"), MacAddr(GW_MAC)),
            (ip("198.18.0.2"), MacAddr(CLIENT_MAC)),
            (ip("2001:db8::2"), MacAddr(CLIENT_MAC)),
            (ip("198.18.1.7"), MacAddr(SERVER_MAC)),
            (ip("198.18.1.8"), MacAddr(SERVER_MAC)),
            (ip("2001:db8:1::7"), MacAddr(SERVER_MAC)),
            (ip("2001:db8:1::8"), MacAddr(SERVER_MAC)),
        ],
        forwarding: fwd,
    };
    Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap()
}

const ON: Forwarding = Forwarding { v4: true, v6: true };

fn udp(src: &str, dst: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
    let b = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), ttl),
        _ => unreachable!(),
    };
    let mut v = Vec::new();
    b.udp(40000, 53).write(&mut v, payload).unwrap();
    v
}

fn input(st: &mut Stack<TestBuf>, frame: &[u8], now: u64) -> Vec<(u16, Vec<u8>)> {
    let mut io = TestIo::default();
    st.input(0, TestBuf::new(frame), now, &mut io, &mut NoStage);
    io.sent
}

/// (src, dst, ttl) of a frame, checksums checked.
fn ip_of(frame: &[u8]) -> (IpAddr, IpAddr, u8) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    match p.net.unwrap() {
        NetSlice::Ipv4(v) => {
            let h = v.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
            (h.source.into(), h.destination.into(), h.time_to_live)
        }
        NetSlice::Ipv6(v) => {
            let h = v.header().to_header();
            (h.source.into(), h.destination.into(), h.hop_limit)
        }
    }
}

#[test]
fn routed_packets_go_to_the_next_hop_with_ttl_decremented() {
    for (src, dst, gw_port) in [
        ("198.18.0.2", "198.19.4.4", 1),
        ("198.18.0.2", "198.18.1.7", 1),
        ("2001:db8::2", "2001:db8:2::9", 1),
    ] {
        let mut st = router(ON);
        let sent = input(&mut st, &udp(src, dst, 64, b"hello"), 0);
        assert_eq!(sent.len(), 1, "{dst}");
        let (port, f) = &sent[0];
        assert_eq!(*port, gw_port);
        assert_eq!(
            &f[6..12],
            &two_ports()[1].mac.0,
            "from the egress port's MAC"
        );
        let want_mac = if dst == "198.18.1.7" {
            SERVER_MAC
        } else {
            GW_MAC
        };
        assert_eq!(&f[0..6], &want_mac);
        assert_eq!(ip_of(f), (ip(src), ip(dst), 63), "only the TTL changed");
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(u.payload(), b"hello");
        assert_eq!(st.counters().get(Counter::Routed), 1);
    }
}

#[test]
fn with_forwarding_off_for_a_family_its_packets_are_dropped_as_before() {
    let mut st = router(Forwarding {
        v4: false,
        v6: true,
    });
    assert!(input(&mut st, &udp("198.18.0.2", "198.19.4.4", 64, b"x"), 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropNotLocal), 1);
    assert_eq!(
        input(&mut st, &udp("2001:db8::2", "2001:db8:2::9", 64, b"x"), 0).len(),
        1
    );
    let mut st = router(Forwarding::default());
    assert!(input(&mut st, &udp("2001:db8::2", "2001:db8:2::9", 64, b"x"), 0).is_empty());
    assert!(input(&mut st, &udp("198.18.0.2", "198.18.1.7", 64, b"x"), 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropNotLocal), 2);
    assert_eq!(st.counters().get(Counter::Routed), 0);
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_receiving_ports_address() {
    for (src, dst, from) in [
        ("198.18.0.2", "198.19.4.4", "198.18.0.1"),
        ("2001:db8::2", "2001:db8:2::9", "2001:db8::1"),
    ] {
        let mut st = router(ON);
        let sent = input(&mut st, &udp(src, dst, 1, b"probe"), 0);
        assert_eq!(sent.len(), 1);
        let (port, f) = &sent[0];
        assert_eq!(
            (*port, &f[0..6]),
            (0, &CLIENT_MAC[..]),
            "back where it came from"
        );
        let (s, d, _) = ip_of(f);
        assert_eq!((s, d), (ip(from), ip(src)));
        let p = SlicedPacket::from_ethernet(f).unwrap();
        match p.transport.unwrap() {
            TransportSlice::Icmpv4(i) => {
                assert!(matches!(i.icmp_type(), Icmpv4Type::TimeExceeded(_)));
                assert_eq!(i.code_u8(), 0);
            }
            TransportSlice::Icmpv6(i) => {
                assert!(matches!(i.icmp_type(), Icmpv6Type::TimeExceeded(_)));
                assert_eq!(i.code_u8(), 0);
            }
            _ => panic!("not ICMP"),
        }
        assert_eq!(st.counters().get(Counter::TimeExceededSent), 1);
        assert_eq!(st.counters().get(Counter::Routed), 0);
    }
}

#[test]
fn no_route_gets_network_unreachable() {
    for (src, dst, from, code) in [
        ("198.18.0.2", "198.20.1.1", "198.18.0.1", 0),
        ("2001:db8::2", "2001:db8:9::9", "2001:db8::1", 0),
    ] {
        let mut st = router(ON);
        let sent = input(&mut st, &udp(src, dst, 64, b"x"), 0);
        assert_eq!(sent.len(), 1);
        let (s, d, _) = ip_of(&sent[0].1);
        assert_eq!((s, d), (ip(from), ip(src)));
        let p = SlicedPacket::from_ethernet(&sent[0].1).unwrap();
        match p.transport.unwrap() {
            TransportSlice::Icmpv4(i) => {
                assert!(matches!(
                    i.icmp_type(),
                    Icmpv4Type::DestinationUnreachable(_)
                ));
                assert_eq!(i.code_u8(), code);
            }
            TransportSlice::Icmpv6(i) => {
                assert!(matches!(
                    i.icmp_type(),
                    Icmpv6Type::DestinationUnreachable(_)
                ));
                assert_eq!(i.code_u8(), code);
            }
            _ => panic!("not ICMP"),
        }
        assert_eq!(st.counters().get(Counter::NetUnreachableSent), 1);
    }
}

#[test]
fn errors_are_within_the_answer_budget() {
    let mut st = router(ON);
    let n = (0..200)
        .map(|_| input(&mut st, &udp("198.18.0.2", "198.20.1.1", 64, b"x"), 5).len())
        .sum::<usize>();
    assert_eq!(n, host::ANSWER_BURST as usize);
    assert_eq!(st.counters().get(Counter::DropRateLimited), 200 - n as u64);
}

#[test]
fn too_big_packets_get_too_big_or_are_fragmented_as_linux() {
    let mut st = router(ON);
    let big = vec![7u8; 1600];
    // IPv6: packet too big with the egress MTU.
    let sent = input(&mut st, &udp("2001:db8::2", "2001:db8:2::9", 64, &big), 0);
    assert_eq!(sent.len(), 1);
    let p = SlicedPacket::from_ethernet(&sent[0].1).unwrap();
    let Some(TransportSlice::Icmpv6(i)) = p.transport else {
        panic!("not ICMPv6")
    };
    assert_eq!(i.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1500 });
    // IPv4 without DF (etherparse sets DF): cleared, so fragmented.
    let mut f = udp("198.18.0.2", "198.19.4.4", 64, &big);
    f[14 + 6] &= !0x40;
    let sum = {
        let h = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        h.to_header().calc_header_checksum()
    };
    f[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    let sent = input(&mut st, &f, 0);
    assert_eq!(sent.len(), 2, "two fragments");
    for (port, piece) in &sent {
        assert_eq!(*port, 1);
        assert!(piece.len() - 14 <= 1500);
        assert_eq!(ip_of(piece).2, 63);
    }
    assert_eq!(st.counters().get(Counter::FragmentsSent), 2);
}

#[test]
fn broadcast_and_link_local_are_not_routed() {
    let mut st = router(ON);
    assert!(input(&mut st, &udp("198.18.0.2", "255.255.255.255", 64, b"x"), 0).is_empty());
    assert!(input(&mut st, &udp("fe80::2", "2001:db8:2::9", 64, b"x"), 0).is_empty());
    assert_eq!(st.counters().get(Counter::Routed), 0);
}

/// A router with the load balancer's stage and `nat POSTROUTING -s
/// 198.18.1.0/24 ! -d 198.18.1.0/24 -j MASQUERADE` (v4) and its IPv6 twin.
fn masquerading() -> (Stack<TestBuf>, crate::lb::LbStage) {
    use crate::model::Family;
    use crate::rules::{Neg, Net, NoNames, Rule, RuleOp, RuleTables, Table, Target};
    let st = router(ON);
    let mut cfg_ifaces = two_ports();
    cfg_ifaces[1]
        .addrs
        .push("2001:db8:1::1/64".parse().unwrap());
    let cfg = L3Config {
        interfaces: cfg_ifaces,
        routes: vec![],
        neighbors: vec![],
        forwarding: ON,
    };
    let mut t = RuleTables::default();
    for (f, net, len) in [
        (Family::V4, "198.18.1.0", 24),
        (Family::V6, "2001:db8:1::", 64),
    ] {
        let n = Net::new(ip(net), len);
        let rule = Rule {
            src: Some(Neg { neg: false, v: n }),
            dst: Some(Neg { neg: true, v: n }),
            target: Target::Masquerade {
                to_ports: None,
                random: false,
                random_fully: false,
            },
            ..Rule::default()
        };
        t.apply(
            f,
            Table::Nat,
            &RuleOp::Append {
                chain: "POSTROUTING".into(),
                rule,
                counters: None,
            },
        )
        .unwrap();
    }
    let mut store = crate::config::ConfigStore::new();
    store.set_nat(Arc::new(crate::snat::NatRules::compile(
        &t.v4, &t.v6, &NoNames,
    )));
    store.set_rules(Arc::default());
    (st, crate::lb::LbStage::for_tests(&cfg, &store))
}

fn tcp_from(src: &str, sport: u16, dst: &str, dport: u16, mac: [u8; 6], syn: bool) -> Vec<u8> {
    // Servers send to the server-side port's MAC.
    let to = if mac == SERVER_MAC {
        two_ports()[1].mac.0
    } else {
        DIRECTOR_MAC
    };
    let b = PacketBuilder::ethernet2(mac, to);
    let b = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    };
    let mut t = b.tcp(sport, dport, 1000, 64240);
    t = if syn { t.syn() } else { t.syn().ack(1001) };
    let mut v = Vec::new();
    t.write(&mut v, &[]).unwrap();
    v
}

/// (src, sport, dst, dport) of a TCP frame, its checksums checked.
fn tcp_of(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let (s, d, _) = ip_of(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    let h = t.to_header();
    let want = match (s, d) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            h.calc_checksum_ipv4_raw(a.octets(), b.octets(), t.payload())
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            h.calc_checksum_ipv6_raw(a.octets(), b.octets(), t.payload())
        }
        _ => unreachable!(),
    }
    .unwrap();
    assert_eq!(h.checksum, want, "TCP checksum");
    (s, h.source_port, d, h.destination_port)
}

#[test]
fn masquerade_rewrites_the_source_to_the_egress_port_and_replies_come_back() {
    for (server, peer, masq) in [
        ("198.18.1.7", "198.18.0.2", "198.18.0.1"),
        ("2001:db8:1::7", "2001:db8::2", "2001:db8::1"),
    ] {
        let (mut st, mut stage) = masquerading();
        let mut io = TestIo::default();
        let syn = tcp_from(server, 40000, peer, 80, SERVER_MAC, true);
        st.input(1, TestBuf::new(&syn), 0, &mut io, &mut stage);
        assert_eq!(io.sent.len(), 1, "{server}: {:?}", st.counters().nonzero());
        let (port, out) = io.sent.pop().unwrap();
        assert_eq!(port, 0);
        let (s, sport, d, dport) = tcp_of(&out);
        assert_eq!(
            (s, d, dport),
            (ip(masq), ip(peer), 80),
            "source is the egress port's"
        );
        assert_eq!(ip_of(&out).2, 63, "TTL decremented once");
        assert_eq!(st.counters().get(Counter::SnatTranslated), 1);
        // The peer answers the director's address; the server gets it.
        let back = tcp_from(peer, 80, masq, sport, CLIENT_MAC, false);
        st.input(0, TestBuf::new(&back), 1, &mut io, &mut stage);
        assert_eq!(io.sent.len(), 1, "{:?}", st.counters().nonzero());
        let (port, inb) = io.sent.pop().unwrap();
        assert_eq!(port, 1);
        assert_eq!(tcp_of(&inb), (ip(peer), 80, ip(server), 40000));
        // The next packet of the flow reuses the mapping.
        let ack = tcp_from(server, 40000, peer, 80, SERVER_MAC, false);
        st.input(1, TestBuf::new(&ack), 2, &mut io, &mut stage);
        assert_eq!(tcp_of(&io.sent.pop().unwrap().1).1, sport);
        // Inside the servers' segment: no rule maps it.
        let local = tcp_from(
            server,
            40001,
            if server.contains(':') {
                "2001:db8:1::8"
            } else {
                "198.18.1.8"
            },
            80,
            SERVER_MAC,
            true,
        );
        st.input(1, TestBuf::new(&local), 3, &mut io, &mut stage);
        let (s, _, _, _) = tcp_of(&io.sent.pop().unwrap().1);
        assert_eq!(s, ip(server), "not masqueraded");
    }
}

/// A router with the load balancer's stage and `filter FORWARD -o
/// server -j DROP` (port 1 is "server", port 0 "client").
fn forward_dropping(out: &str) -> (Stack<TestBuf>, crate::lb::LbStage, crate::rules::RuleTables) {
    use crate::model::Family;
    use crate::rules::{Interfaces, Neg, Rule, RuleOp, RuleTables, Table, Target};
    struct Ports(Interfaces);
    impl crate::rules::Names for Ports {
        fn set_id(&self, _: &str) -> Option<crate::sets::SetId> {
            None
        }
        fn ifaces(&self, name: &str) -> Vec<u16> {
            self.0.ids(name)
        }
    }
    let mut names = Interfaces::default();
    names.add_port(0, "client", None, &[]);
    names.add_port(1, "server", None, &[]);
    let st = router(ON);
    let cfg = L3Config {
        interfaces: two_ports(),
        routes: vec![],
        neighbors: vec![],
        forwarding: ON,
    };
    let mut t = RuleTables::default();
    let rule = Rule {
        out_if: Some(Neg {
            neg: false,
            v: out.into(),
        }),
        target: Target::Drop,
        ..Rule::default()
    };
    let op = RuleOp::Append {
        chain: "FORWARD".into(),
        rule,
        counters: None,
    };
    t.apply(Family::V4, Table::Filter, &op).unwrap();
    let mut store = crate::config::ConfigStore::new();
    store.set_rules(Arc::new(crate::rules::Program::compile(
        &t.v4,
        &t.v6,
        &Ports(names),
    )));
    (st, crate::lb::LbStage::for_tests(&cfg, &store), t)
}

/// `-o` in filter FORWARD matches the port the route leaves by: routed
/// traffic to the server side is dropped and counted, traffic the other
/// way is forwarded; every packet of a flow (through the flow cache).
#[test]
fn a_forward_rule_drops_what_leaves_by_the_named_port() {
    use crate::rules::Table;
    let (mut st, mut stage, t) = forward_dropping("server");
    let rule_packets = |t: &crate::rules::RuleTables| {
        let filter = t.v4.table(Table::Filter);
        let fwd = filter.chains.iter().find(|c| c.name == "FORWARD").unwrap();
        fwd.rules[0].counted.counters.total().0
    };
    for n in 0..3u64 {
        let mut io = TestIo::default();
        let to_server = tcp_from("198.18.0.2", 40000, "198.18.1.7", 80, CLIENT_MAC, n == 0);
        st.input(0, TestBuf::new(&to_server), n, &mut io, &mut stage);
        // The end of the burst, as a worker ends each (kept answers'
        // counts move then).
        Stage::<TestBuf>::end_burst(&mut stage, n);
        assert!(io.sent.is_empty(), "leaving by the server port: dropped");
        assert_eq!(rule_packets(&t), n + 1, "and counted, every packet");
        let to_client = tcp_from("198.18.1.7", 80, "198.18.0.2", 40000, SERVER_MAC, false);
        st.input(1, TestBuf::new(&to_client), n, &mut io, &mut stage);
        assert_eq!(io.sent.len(), 1, "leaving by the client port: routed");
        assert_eq!(io.sent[0].0, 0);
    }
    // The rule naming the client port: the other way round.
    let (mut st, mut stage, _) = forward_dropping("client");
    let mut io = TestIo::default();
    let to_server = tcp_from("198.18.0.2", 40000, "198.18.1.7", 80, CLIENT_MAC, true);
    st.input(0, TestBuf::new(&to_server), 0, &mut io, &mut stage);
    assert_eq!(io.sent.len(), 1, "{:?}", st.counters().nonzero());
    let to_client = tcp_from("198.18.1.7", 80, "198.18.0.2", 40000, SERVER_MAC, false);
    st.input(1, TestBuf::new(&to_client), 1, &mut io, &mut stage);
    assert_eq!(io.sent.len(), 1, "dropped leaving by the client port");
}
