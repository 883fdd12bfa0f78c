//! The fast lane ([`Stack::input_lane`]) against the general path
//! ([`Stack::input`]) on a director that source-NATs routed traffic as
//! well as balancing: two directors with the same configuration, one fed
//! as the worker feeds it (the lane while the stage allows it), the other
//! through the general path, get the same random sequences of packets:
//! servers' routed flows that MASQUERADE maps (new and established, TCP
//! with every flag mix and UDP), the outside's replies to what left (to
//! live mappings, to expired ones, ICMP errors about them), stray packets
//! to the director's address at the ports mappings hand out, clients of
//! NAT and direct-routing services whose real servers also route flows of
//! their own, configuration changes (the nat rule removed, a service on a
//! routed flow's destination, a filter rule that turns the lane off) and
//! the clock moving on, with housekeeping, far enough for mappings and
//! connections to expire. The frames that leave, the stack's and the
//! balancer's counters, the services' statistics, every live connection
//! and every mapping (state, expiry, wheel slot, clearance stamp, free
//! ports) must be the same.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::PacketBuilder;
use proptest::prelude::*;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::lb::LbStage;
use crate::model::{DestConfig, Family, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::rules::{Neg, Net, NoNames, Program, Rule, RuleOp, RuleTables, Table, Target};
use crate::snat::NatRules;
use crate::wire::{checksum, parse_packet, tcp};

const OUTSIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const INSIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];

/// Inside: two plain servers and the services' real servers (NAT, then
/// direct routing), all masqueraded when they route flows of their own.
const SERVERS: [[u8; 4]; 4] = [
    [198, 18, 1, 7],
    [198, 18, 1, 8],
    [198, 18, 1, 10],
    [198, 18, 1, 11],
];
/// Beyond the gateway (twice), the gateway, the director's own outside
/// address, a virtual address, a server inside.
const DESTS: [[u8; 4]; 6] = [
    [198, 19, 0, 5],
    [198, 19, 0, 6],
    [198, 18, 0, 2],
    [198, 18, 0, 1],
    [198, 18, 0, 100],
    [198, 18, 1, 8],
];
const PORTS: [u16; 4] = [40000, 80, 53, 1024];
const VIP: &str = "198.18.0.100";

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
        neighbors: std::iter::once((ip("198.18.0.2"), MacAddr(PEER_MAC)))
            .chain(
                SERVERS
                    .iter()
                    .map(|s| (IpAddr::from(*s), MacAddr(SERVER_MAC))),
            )
            .collect(),
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

fn service(
    st: &mut ConfigStore,
    proto: Protocol,
    vip: &str,
    port: u16,
    real: [u8; 4],
    rport: u16,
    method: ForwardMethod,
) {
    let key = ServiceKey::Addr {
        protocol: proto,
        addr: ip(vip),
        port,
    };
    st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
        .unwrap();
    let d = DestConfig {
        addr: IpAddr::from(real),
        port: rport,
        method,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    st.apply(&ConfigOp::AddDest(key, d)).unwrap();
}

/// The configuration `v`: always the virtual address's services (TCP and
/// UDP port 80 by NAT to 198.18.1.10:8080, port 53 by direct routing to
/// 198.18.1.11), and what the bits add: 1, `nat POSTROUTING -s
/// 198.18.1.0/24 -j MASQUERADE`; 2, a service on a routed flow's
/// destination (198.19.0.5:80, NAT); 4, a filter rule (the lane steps
/// aside).
fn store(v: u8) -> ConfigStore {
    let mut st = ConfigStore::new();
    for proto in [Protocol::Tcp, Protocol::Udp] {
        service(
            &mut st,
            proto,
            VIP,
            80,
            SERVERS[2],
            8080,
            ForwardMethod::Masq,
        );
        service(
            &mut st,
            proto,
            VIP,
            53,
            SERVERS[3],
            53,
            ForwardMethod::Route,
        );
        if v & 2 != 0 {
            service(
                &mut st,
                proto,
                "198.19.0.5",
                80,
                SERVERS[1],
                8080,
                ForwardMethod::Masq,
            );
        }
    }
    if v & 1 != 0 {
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
    }
    if v & 4 != 0 {
        let mut t = RuleTables::default();
        append(
            &mut t,
            Table::Filter,
            "FORWARD",
            Rule {
                target: Target::Accept,
                ..Rule::default()
            },
        );
        st.set_rules(Arc::new(Program::compile(&t.v4, &t.v6, &NoNames)));
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

struct Director {
    stack: Stack<TestBuf>,
    stage: LbStage,
    store: ConfigStore,
}

impl Director {
    /// A director over configuration 1 (masquerading on).
    fn new() -> Director {
        let cfg = l3();
        let store = store(1);
        let stage = LbStage::for_tests(&cfg, &store);
        let mut stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        stack.set_service_addrs(stage.lb().service_addrs());
        Director {
            stack,
            stage,
            store,
        }
    }

    /// One frame received on `port`, through the lane while the stage
    /// allows it (as the worker's `input_burst`), else the general path.
    fn input(&mut self, port: u16, f: &[u8], now: u64, lane: bool) -> Vec<(u16, Vec<u8>)> {
        let mut io = Sent::default();
        let buf = TestBuf::new(f);
        if lane && Stage::<TestBuf>::lane_on(&self.stage) {
            let parsed = parse_packet(buf.data());
            if Stage::<TestBuf>::lane_fronted(&self.stage) {
                self.stack.input_lane_front::<{ front::SNAT }>(
                    port,
                    buf,
                    &parsed,
                    now,
                    &mut io,
                    &mut self.stage,
                );
            } else {
                self.stack
                    .input_lane(port, buf, &parsed, now, &mut io, &mut self.stage);
            }
        } else {
            self.stack.input(port, buf, now, &mut io, &mut self.stage);
        }
        Stage::<TestBuf>::end_burst(&mut self.stage, now);
        io.0
    }

    fn tick(&mut self, now: u64) {
        let mut io = Sent::default();
        self.stack.tick(now, &mut io);
        if Stage::<TestBuf>::tick(&mut self.stage, now) {
            self.stack
                .set_service_addrs(self.stage.lb().service_addrs());
        }
        Stage::<TestBuf>::acknowledge(&mut self.stage);
    }

    fn config(&mut self, v: u8, now: u64) {
        self.store = store(v);
        self.stage.publish_for_tests(&self.store);
        self.tick(now);
    }

    /// Everything the two paths must agree on besides the frames.
    fn state(&self, now: u64) -> Vec<String> {
        let lb = self.stage.lb();
        let mut out = lb.conns().live_for_tests();
        out.extend(self.stage.snat().live_for_tests());
        out.push(format!("{:?}", self.stack.counters().nonzero()));
        out.push(format!("{:?}", lb.counters()));
        for s in self.store.snapshot().services.iter() {
            out.push(format!("{:?} {:?}", s.config.key, s.shared.stats));
            for d in &s.dests {
                out.push(format!("{:?}", d.shared));
            }
        }
        out.push(format!("{:?}", lb.connections(now).collect::<Vec<_>>()));
        out
    }
}

/// TCP flag mixes: SYN, ACK, PSH|ACK, FIN|ACK, RST, SYN|ACK.
const FLAGS: [u8; 6] = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12];

/// A TCP (flag byte `flags`) or UDP frame from `from` to `to` (MACs).
#[allow(clippy::too_many_arguments)]
fn frame(
    from: [u8; 6],
    to: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    tcp_flags: Option<u8>,
    len: usize,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(from, to).ipv4(src, dst, 64);
    let payload = vec![0x5a; len];
    let mut f = Vec::new();
    match tcp_flags {
        None => b.udp(sport, dport).write(&mut f, &payload).unwrap(),
        Some(flags) => {
            b.tcp(sport, dport, 1000, 64240)
                .write(&mut f, &payload)
                .unwrap();
            let m = parse_packet(&f).unwrap();
            let off = usize::from(m.l4_offset);
            let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
            f[off + 13] = flags;
            let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
            let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
            let c = checksum::update16(t.checksum(), old, new);
            t.set_checksum(c);
        }
    }
    f
}

/// The neighbour's and the director's MACs on `port`.
fn macs(port: u16) -> ([u8; 6], [u8; 6]) {
    if port == 0 {
        (PEER_MAC, OUTSIDE_MAC)
    } else {
        (SERVER_MAC, INSIDE_MAC)
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Server `server`'s packet from `PORTS[sport]` to `DESTS[to]`:`PORTS[dport]`,
    /// received inside; TCP with `FLAGS[flags]`.
    Out {
        server: usize,
        sport: usize,
        to: usize,
        dport: usize,
        tcp: Option<usize>,
        len: usize,
    },
    /// The peer's packet from `PORTS[sport]` to `DESTS[to]`:`PORTS[dport]`
    /// (a client of a service, a packet to route inside, one for the
    /// director), received outside.
    In {
        sport: usize,
        to: usize,
        dport: usize,
        tcp: Option<usize>,
    },
    /// The answer to the `k`-th frame that left (modulo their number),
    /// from where it went: addresses and ports swapped, TCP with
    /// `FLAGS[flags]`.
    Answer { k: usize, flags: usize, len: usize },
    /// An ICMP port unreachable from the peer about the `k`-th frame that
    /// left outside.
    Unreachable { k: usize },
    /// The peer's packet to the director's outside address at a port
    /// masquerading hands out (`1024 + port`): no mapping's, or an old one's.
    Stray { port: u16, tcp: bool },
    /// Another configuration ([`store`]).
    Config(u8),
    /// The clock moves on by this many milliseconds, then housekeeping.
    Wait(u64),
    /// The clock moves on by this many milliseconds without housekeeping:
    /// packets of connections and mappings whose time is up but which are
    /// still in their tables.
    Jump(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let tcp = proptest::option::of(0..FLAGS.len());
    prop_oneof![
        6 => (0..4usize, 0..4usize, 0..6usize, 0..4usize, tcp.clone(), 0..32usize)
            .prop_map(|(server, sport, to, dport, tcp, len)| Step::Out { server, sport, to, dport, tcp, len }),
        2 => (0..4usize, 0..6usize, 0..4usize, tcp)
            .prop_map(|(sport, to, dport, tcp)| Step::In { sport, to, dport, tcp }),
        5 => (0..64usize, 0..FLAGS.len(), 0..32usize).prop_map(|(k, flags, len)| Step::Answer { k, flags, len }),
        1 => (0..64usize).prop_map(|k| Step::Unreachable { k }),
        1 => (0..8u16, any::<bool>()).prop_map(|(port, tcp)| Step::Stray { port, tcp }),
        1 => (0..8u8).prop_map(Step::Config),
        2 => prop_oneof![0..50u64, 1000..200_000u64].prop_map(Step::Wait),
        1 => (1000..1_000_000u64).prop_map(Step::Jump),
    ]
}

/// The frame answering `f` (which left on `port`): addresses and ports
/// swapped, from the neighbour there.
fn answer(port: u16, f: &[u8], flags: u8, len: usize) -> Option<Vec<u8>> {
    let m = parse_packet(f).ok()?;
    let (IpAddr::V4(s), IpAddr::V4(d)) = (m.src, m.dst) else {
        return None;
    };
    let tcp = match m.protocol {
        crate::wire::ipv4::protocol::TCP => Some(flags),
        crate::wire::ipv4::protocol::UDP => None,
        _ => return None,
    };
    let (from, to) = macs(port);
    Some(frame(
        from,
        to,
        d.octets(),
        m.dport,
        s.octets(),
        m.sport,
        tcp,
        len,
    ))
}

/// An ICMP port unreachable from the peer about `f` (which left outside).
fn unreachable(f: &[u8]) -> Option<Vec<u8>> {
    let m = parse_packet(f).ok()?;
    let IpAddr::V4(s) = m.src else { return None };
    let at = usize::from(m.l3_offset);
    let quote = f.get(at..usize::from(m.l4_offset) + 8)?;
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, OUTSIDE_MAC)
        .ipv4([198, 18, 0, 2], s.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, quote)
        .unwrap();
    Some(v)
}

/// Runs `steps` through a lane director and a general one; panics where
/// they differ. Returns how many packets the lane director took through
/// the lane while source NAT was on.
fn agree(steps: &[Step]) -> usize {
    let mut lane = Director::new();
    let mut general = Director::new();
    assert!(
        Stage::<TestBuf>::lane_on(&lane.stage),
        "the lane is on with source NAT"
    );
    // Frames that left, with their port.
    let mut left: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut now = 1;
    let mut laned = 0;
    for (i, s) in steps.iter().enumerate() {
        let (port, f) = match *s {
            Step::Out {
                server,
                sport,
                to,
                dport,
                tcp,
                len,
            } => (
                1,
                frame(
                    SERVER_MAC,
                    INSIDE_MAC,
                    SERVERS[server],
                    PORTS[sport],
                    DESTS[to],
                    PORTS[dport],
                    tcp.map(|t| FLAGS[t]),
                    len,
                ),
            ),
            Step::In {
                sport,
                to,
                dport,
                tcp,
            } => (
                0,
                frame(
                    PEER_MAC,
                    OUTSIDE_MAC,
                    [198, 18, 0, 2],
                    PORTS[sport],
                    DESTS[to],
                    PORTS[dport],
                    tcp.map(|t| FLAGS[t]),
                    4,
                ),
            ),
            Step::Answer { k, flags, len } => {
                if left.is_empty() {
                    continue;
                }
                let (p, out) = &left[k % left.len()];
                match answer(*p, out, FLAGS[flags], len) {
                    Some(f) => (*p, f),
                    None => continue,
                }
            }
            Step::Unreachable { k } => {
                let outside: Vec<_> = left.iter().filter(|(p, _)| *p == 0).collect();
                if outside.is_empty() {
                    continue;
                }
                match unreachable(&outside[k % outside.len()].1) {
                    Some(f) => (0, f),
                    None => continue,
                }
            }
            Step::Stray { port, tcp } => (
                0,
                frame(
                    PEER_MAC,
                    OUTSIDE_MAC,
                    [198, 19, 0, 5],
                    80,
                    [198, 18, 0, 1],
                    1024 + port,
                    tcp.then_some(0x10),
                    4,
                ),
            ),
            Step::Config(v) => {
                lane.config(v, now);
                general.config(v, now);
                continue;
            }
            Step::Wait(ms) => {
                now += ms;
                lane.tick(now);
                general.tick(now);
                continue;
            }
            Step::Jump(ms) => {
                now += ms;
                continue;
            }
        };
        let on = Stage::<TestBuf>::lane_on(&lane.stage) && !lane.stage.switches().no_snat;
        let a = lane.input(port, &f, now, true);
        let b = general.input(port, &f, now, false);
        assert_eq!(a, b, "step {i}: {s:?}");
        if on {
            laned += 1;
        }
        left.extend(a);
        // The clock moves a little between packets.
        now += 1;
    }
    assert_eq!(lane.state(now), general.state(now));
    laned
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn with_source_nat_the_lane_and_the_general_path_send_count_and_keep_the_same(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        agree(&steps);
    }
}

/// The cases spelled out: a masqueraded flow of each protocol, new then
/// established, its replies, an error about it, a stray packet, the
/// mapping expired and answered again; clients of both services and the
/// real servers' answers; then a service on the flow's destination.
#[test]
fn established_mappings_and_their_replies_go_through_the_lane() {
    let mut steps = Vec::new();
    for tcp in [Some(0), None] {
        for (server, flags) in [(0, 0), (0, 1), (0, 2), (1, 1)] {
            steps.push(Step::Out {
                server,
                sport: 0,
                to: 0,
                dport: 1,
                tcp: tcp.map(|_| flags),
                len: 8,
            });
        }
        for (sport, dport) in [(0, 1), (1, 2)] {
            steps.push(Step::In {
                sport,
                to: 4,
                dport,
                tcp: tcp.map(|_| 1),
            });
        }
    }
    for k in 0..12 {
        steps.push(Step::Answer {
            k,
            flags: 2,
            len: 4,
        });
    }
    steps.push(Step::Unreachable { k: 0 });
    steps.push(Step::Stray {
        port: 0,
        tcp: false,
    });
    steps.push(Step::Wait(150_000));
    for k in 0..4 {
        steps.push(Step::Answer {
            k,
            flags: 1,
            len: 4,
        });
    }
    steps.push(Step::Config(3));
    steps.push(Step::Out {
        server: 0,
        sport: 0,
        to: 0,
        dport: 1,
        tcp: Some(1),
        len: 8,
    });
    steps.push(Step::Config(5));
    steps.push(Step::Out {
        server: 0,
        sport: 0,
        to: 0,
        dport: 1,
        tcp: Some(1),
        len: 8,
    });
    steps.push(Step::Config(0));
    steps.push(Step::Wait(600_000));
    steps.push(Step::Out {
        server: 0,
        sport: 0,
        to: 0,
        dport: 1,
        tcp: None,
        len: 8,
    });
    let laned = agree(&steps);
    assert!(
        laned >= 30,
        "{laned} packets through the lane with source NAT"
    );
}

/// The switch itself: masquerading keeps the lane on (its steps are the
/// lane's own), a filter rule turns it off.
#[test]
fn source_nat_keeps_the_lane_on_and_a_filter_rule_turns_it_off() {
    let mut d = Director::new();
    assert!(Stage::<TestBuf>::lane_on(&d.stage));
    assert!(!d.stage.switches().no_snat);
    d.config(5, 1);
    assert!(!Stage::<TestBuf>::lane_on(&d.stage));
    d.config(0, 2);
    assert!(Stage::<TestBuf>::lane_on(&d.stage));
    assert!(d.stage.switches().no_snat, "no rule and no mapping");
}
