//! The stage's skip of the balancer for routed flows it passed
//! ([`crate::lb::stage`]'s clearance) against the stage that always asks
//! the balancer: the same frames leave, in the same order, whatever the
//! sequence of packets, services added and removed (on a routed flow's
//! destination, fwmark services, services on the director's own address,
//! real servers whose ports routed flows use), connections made and time
//! passing.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::PacketBuilder;
use proptest::prelude::*;

use crate::buf::{PacketBuf, TestBuf};
use crate::config::{ConfigOp, ConfigStore};
use crate::lb::LbStage;
use crate::model::{DestConfig, Family, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::net::{Counter, Forwarding, Interface, Io, L3Config, NetCounters, Stack, Stage};
use crate::rules::{Neg, Net, NoNames, Program, Rule, RuleOp, RuleTables, Table, Target};
use crate::snat::NatRules;
use crate::wire::ethernet::MacAddr;

const OUTSIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const INSIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];

const SERVERS: [[u8; 4]; 2] = [[198, 18, 1, 7], [198, 18, 1, 8]];
/// Beyond the gateway, the gateway itself, the director's own outside
/// address, a virtual address.
const DESTS: [[u8; 4]; 5] = [
    [198, 19, 0, 5],
    [198, 19, 0, 6],
    [198, 18, 0, 2],
    [198, 18, 0, 1],
    [198, 18, 0, 100],
];
const PORTS: [u16; 3] = [40000, 80, 53];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn l3() -> L3Config {
    L3Config {
        interfaces: vec![
            Interface {
                port: 0,
                mac: MacAddr(OUTSIDE_MAC),
                addrs: vec!["198.18.0.1/24".parse().unwrap()],
                mtu: 1500,
                kernel: false,
            },
            Interface {
                port: 1,
                mac: MacAddr(INSIDE_MAC),
                addrs: vec!["198.18.1.1/24".parse().unwrap()],
                mtu: 1500,
                kernel: false,
            },
        ],
        routes: vec![("198.19.0.0/16".parse().unwrap(), ip("198.18.0.2"))],
        neighbors: vec![
            (ip("198.18.0.2"), MacAddr(PEER_MAC)),
            (ip("198.18.1.7"), MacAddr(SERVER_MAC)),
            (ip("198.18.1.8"), MacAddr(SERVER_MAC)),
        ],
        forwarding: Forwarding { v4: true, v6: true },
    }
}

fn append(t: &mut RuleTables, table: Table, chain: &str, rule: Rule) {
    let op = RuleOp::Append {
        chain: chain.into(),
        rule,
        counters: None,
    };
    t.apply(Family::V4, table, &op).unwrap();
}

fn service(st: &mut ConfigStore, key: ServiceKey, real: &str, port: u16, method: ForwardMethod) {
    st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
        .unwrap();
    let d = DestConfig {
        addr: ip(real),
        port,
        method,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    st.apply(&ConfigOp::AddDest(key, d)).unwrap();
}

/// `proto` `vip`:`port` to `real`:`rport` (NAT for TCP, direct routing
/// for UDP: a direct-routing real server is no NAT real server, so its
/// routed flows are passed and masqueraded until a connection claims
/// their tuple).
fn addr_service(
    st: &mut ConfigStore,
    proto: Protocol,
    vip: &str,
    port: u16,
    real: &str,
    rport: u16,
) {
    let key = ServiceKey::Addr {
        protocol: proto,
        addr: ip(vip),
        port,
    };
    let method = match proto {
        Protocol::Udp => ForwardMethod::Route,
        _ => ForwardMethod::Masq,
    };
    service(st, key, real, rport, method);
}

/// `nat POSTROUTING -s 198.18.1.0/24 -j MASQUERADE`, and what the bits of
/// `v` add: 1, a service on a routed flow's destination
/// (198.19.0.5:80); 2, a service on the virtual address whose real server
/// is 198.18.1.7:80 (TCP: its packets from port 80 are the service's;
/// UDP: its connections' replies are); 4, `mangle PREROUTING -d 198.19.0.6 -j MARK
/// 1` and a fwmark service 1; 8, a service on the director's own address
/// at a port masquerading may hand out (a NodePort).
fn store(v: u8) -> ConfigStore {
    let mut st = ConfigStore::new();
    let mut nat = RuleTables::default();
    append(
        &mut nat,
        Table::Nat,
        "POSTROUTING",
        Rule {
            src: Some(Neg {
                neg: false,
                v: Net::new(ip("198.18.1.0"), 24),
            }),
            target: Target::Masquerade {
                to_ports: None,
                random: false,
                random_fully: false,
            },
            ..Rule::default()
        },
    );
    st.set_nat(Arc::new(NatRules::compile(&nat.v4, &nat.v6, &NoNames)));
    for proto in [Protocol::Tcp, Protocol::Udp] {
        if v & 1 != 0 {
            addr_service(&mut st, proto, "198.19.0.5", 80, "198.18.1.8", 8080);
        }
        if v & 2 != 0 {
            addr_service(&mut st, proto, "198.18.0.100", 80, "198.18.1.7", 80);
        }
        if v & 8 != 0 {
            addr_service(&mut st, proto, "198.18.0.1", 40000, "198.18.1.8", 8080);
        }
    }
    if v & 4 != 0 {
        let mut mangle = RuleTables::default();
        append(
            &mut mangle,
            Table::Mangle,
            "PREROUTING",
            Rule {
                dst: Some(Neg {
                    neg: false,
                    v: Net::new(ip("198.19.0.6"), 32),
                }),
                target: Target::Mark {
                    value: 1,
                    mask: u32::MAX,
                },
                ..Rule::default()
            },
        );
        st.set_rules(Arc::new(Program::compile(&mangle.v4, &mangle.v6, &NoNames)));
        let key = ServiceKey::Fwmark {
            mark: 1,
            family: Family::V4,
        };
        service(&mut st, key, "198.18.1.8", 0, ForwardMethod::Masq);
    }
    st
}

#[derive(Default)]
struct Sent(Vec<(u16, Vec<u8>)>);

impl Io<TestBuf> for Sent {
    fn alloc(&mut self) -> Option<TestBuf> {
        Some(TestBuf::new(&[]))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.0.push((port, buf.data().to_vec()));
    }
}

#[allow(clippy::too_many_arguments)]
fn frame(
    from: [u8; 6],
    to: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    udp: bool,
    syn: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(from, to).ipv4(src, dst, 64);
    let mut v = Vec::new();
    if udp {
        b.udp(sport, dport).write(&mut v, b"x").unwrap();
    } else {
        let t = b.tcp(sport, dport, 1000, 64240);
        let t = if syn { t.syn() } else { t.ack(1) };
        t.write(&mut v, &[]).unwrap();
    }
    v
}

#[derive(Debug, Clone)]
enum Op {
    /// A server's packet toward `DESTS[to]`, received inside.
    Out {
        server: usize,
        sport: usize,
        to: usize,
        dport: usize,
        udp: bool,
        syn: bool,
    },
    /// The peer's packet to `DESTS[to]` (a client of a service, or a
    /// packet to route inside), received outside.
    In {
        sport: usize,
        to: usize,
        dport: usize,
        udp: bool,
        syn: bool,
    },
    /// A server's flow from port 40000 to 198.19.0.5:80 (a service when
    /// configuration bit 1 is on) or 198.19.0.6:80 (marked for a fwmark
    /// service when bit 4 is).
    ToFar {
        server: usize,
        marked: bool,
        udp: bool,
    },
    /// 198.18.1.7:80 (a real server when configuration bit 2 is on)
    /// toward the peer's port `PORTS[dport]`, received inside.
    FromReal { dport: usize, udp: bool },
    /// The peer as a client of the virtual address's port 80, from
    /// `PORTS[sport]`: its connection's reply has the tuple of
    /// [`Op::FromReal`]'s flow.
    Claim { sport: usize, udp: bool },
    /// The peer answers the last frame that left outside.
    Answer,
    /// Another configuration ([`store`]).
    Config(u8),
    /// Time passes (seconds).
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..3usize, 0..5usize, 0..3usize, any::<bool>(), any::<bool>()).prop_map(
            |(server, sport, to, dport, udp, syn)| Op::Out { server, sport, to, dport, udp, syn }
        ),
        2 => (0..3usize, 0..5usize, 0..3usize, any::<bool>(), any::<bool>())
            .prop_map(|(sport, to, dport, udp, syn)| Op::In { sport, to, dport, udp, syn }),
        2 => (0..2usize, any::<bool>(), any::<bool>())
            .prop_map(|(server, marked, udp)| Op::ToFar { server, marked, udp }),
        2 => (0..3usize, any::<bool>()).prop_map(|(dport, udp)| Op::FromReal { dport, udp }),
        1 => (0..3usize, any::<bool>()).prop_map(|(sport, udp)| Op::Claim { sport, udp }),
        2 => Just(Op::Answer),
        1 => (0..16u8).prop_map(Op::Config),
        1 => (1..200u16).prop_map(Op::Wait),
    ]
}

/// A router with the balancer's stage, over configuration 0.
struct Director {
    stack: Stack<TestBuf>,
    stage: LbStage,
}

impl Director {
    fn new(skips: bool) -> Director {
        let cfg = l3();
        let stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        let stage = LbStage::for_tests(&cfg, &store(0));
        let stage = if skips {
            stage
        } else {
            stage.without_clearance()
        };
        Director { stack, stage }
    }

    fn input(&mut self, port: u16, f: &[u8], now: u64) -> Vec<(u16, Vec<u8>)> {
        let mut io = Sent::default();
        self.stack
            .input(port, TestBuf::new(f), now, &mut io, &mut self.stage);
        io.0
    }

    fn config(&mut self, v: u8, now: u64) {
        self.stage.publish_for_tests(&store(v));
        Stage::<TestBuf>::tick(&mut self.stage, now);
    }

    fn wait(&mut self, now: u64) {
        Stage::<TestBuf>::tick(&mut self.stage, now);
    }
}

/// The frame answering `f` (addresses and ports swapped), from outside.
fn answer(f: &[u8]) -> Option<Vec<u8>> {
    let m = crate::wire::parse_packet(f).ok()?;
    let (IpAddr::V4(s), IpAddr::V4(d)) = (m.src, m.dst) else {
        return None;
    };
    let udp = m.protocol == crate::wire::ipv4::protocol::UDP;
    Some(frame(
        PEER_MAC,
        OUTSIDE_MAC,
        d.octets(),
        m.dport,
        s.octets(),
        m.sport,
        udp,
        false,
    ))
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut fast = Director::new(true);
    let mut slow = Director::new(false);
    let mut now = 0u64;
    let mut last_out: Option<Vec<u8>> = None;
    for (i, op) in ops.iter().enumerate() {
        now += 1;
        let (port, f) = match *op {
            Op::Out {
                server,
                sport,
                to,
                dport,
                udp,
                syn,
            } => (
                1,
                frame(
                    SERVER_MAC,
                    INSIDE_MAC,
                    SERVERS[server],
                    PORTS[sport],
                    DESTS[to],
                    PORTS[dport],
                    udp,
                    syn,
                ),
            ),
            Op::In {
                sport,
                to,
                dport,
                udp,
                syn,
            } => (
                0,
                frame(
                    PEER_MAC,
                    OUTSIDE_MAC,
                    [198, 18, 0, 2],
                    PORTS[sport],
                    DESTS[to],
                    PORTS[dport],
                    udp,
                    syn,
                ),
            ),
            Op::ToFar {
                server,
                marked,
                udp,
            } => (
                1,
                frame(
                    SERVER_MAC,
                    INSIDE_MAC,
                    SERVERS[server],
                    40000,
                    DESTS[usize::from(marked)],
                    80,
                    udp,
                    false,
                ),
            ),
            Op::FromReal { dport, udp } => (
                1,
                frame(
                    SERVER_MAC,
                    INSIDE_MAC,
                    SERVERS[0],
                    80,
                    [198, 18, 0, 2],
                    PORTS[dport],
                    udp,
                    false,
                ),
            ),
            Op::Claim { sport, udp } => (
                0,
                frame(
                    PEER_MAC,
                    OUTSIDE_MAC,
                    [198, 18, 0, 2],
                    PORTS[sport],
                    [198, 18, 0, 100],
                    80,
                    udp,
                    true,
                ),
            ),
            Op::Answer => match last_out.as_deref().and_then(answer) {
                Some(f) => (0, f),
                None => continue,
            },
            Op::Config(v) => {
                fast.config(v, now);
                slow.config(v, now);
                continue;
            }
            Op::Wait(s) => {
                now += u64::from(s) * 1000;
                fast.wait(now);
                slow.wait(now);
                continue;
            }
        };
        let a = fast.input(port, &f, now);
        let b = slow.input(port, &f, now);
        prop_assert_eq!(&a, &b, "step {}: {:?}", i, op);
        if let Some((_, out)) = a.iter().rev().find(|(p, _)| *p == 0) {
            last_out = Some(out.clone());
        }
    }
    prop_assert_eq!(
        fast.stack.counters().nonzero(),
        slow.stack.counters().nonzero()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn skipping_the_balancer_for_a_passed_flow_changes_no_frame(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(&ops)?;
    }
}

/// The cases the property rests on, spelled out: a masqueraded flow's
/// packets skip the balancer once it passed them, and a service on its
/// destination, a connection whose reply has its tuple, and a fwmark
/// service marking it each take it back at once.
#[test]
fn a_passed_flow_goes_back_to_the_balancer_when_a_service_or_connection_claims_it() {
    let out = |syn| {
        frame(
            SERVER_MAC,
            INSIDE_MAC,
            [198, 18, 1, 7],
            80,
            [198, 19, 0, 5],
            80,
            false,
            syn,
        )
    };
    let src = |f: &[u8]| crate::wire::parse_packet(f).unwrap().src;
    let dst = |f: &[u8]| crate::wire::parse_packet(f).unwrap().dst;
    for v in [1u8, 4] {
        let mut d = Director::new(true);
        for now in 0..3 {
            let sent = d.input(1, &out(now == 0), now);
            assert_eq!(sent.len(), 1);
            assert_eq!(src(&sent[0].1), ip("198.18.0.1"), "masqueraded");
        }
        // 1: a service on the flow's destination; 4: a fwmark service
        // whose rule marks packets to 198.19.0.6 (not this flow's).
        d.config(v, 3);
        let sent = d.input(1, &out(true), 4);
        if v == 1 {
            // The service's now (its masquerading connection finds no
            // local port in this test: dropped by the balancer).
            assert!(sent.is_empty(), "{sent:?}");
            assert_eq!(d.stack.counters().get(Counter::Routed), 3, "not routed");
            assert_eq!(d.stack.counters().get(Counter::SnatTranslated), 3);
        } else {
            assert_eq!(sent.len(), 1);
            assert_eq!(src(&sent[0].1), ip("198.18.0.1"), "still masqueraded");
        }
    }
    // A flow of 198.18.1.7:80, the direct-routing real server of the
    // virtual address for UDP, is masqueraded until a client's connection
    // has its tuple as its reply: then the connection's.
    let mut d = Director::new(true);
    d.config(2, 0);
    let from_real = || {
        frame(
            SERVER_MAC,
            INSIDE_MAC,
            [198, 18, 1, 7],
            80,
            [198, 18, 0, 2],
            53,
            true,
            false,
        )
    };
    for now in 1..4 {
        let sent = d.input(1, &from_real(), now);
        assert_eq!(src(&sent[0].1), ip("198.18.0.1"), "masqueraded");
    }
    let client = frame(
        PEER_MAC,
        OUTSIDE_MAC,
        [198, 18, 0, 2],
        53,
        [198, 18, 0, 100],
        80,
        true,
        false,
    );
    let sent = d.input(0, &client, 5);
    assert_eq!(sent.len(), 1);
    assert_eq!(dst(&sent[0].1), ip("198.18.0.100"), "direct routing");
    let sent = d.input(1, &from_real(), 6);
    assert_eq!(src(&sent[0].1), ip("198.18.0.100"), "the connection's");
}
