//! The fast lane ([`Stack::input_lane`]) against the general path
//! ([`Stack::input`]): two directors with the same configuration, one fed
//! as the worker feeds it with the lane on, the other through the general
//! path, get the same random sequences of packets (client packets to NAT,
//! DR, tunnel and FULLNAT services, TCP with every flag mix and UDP, some
//! with a bad header checksum or a martian source, and the real servers'
//! answers to what left), with the clock moving and housekeeping between
//! them. The frames that leave, the stack's and the balancer's counters,
//! the services' and destinations' statistics and every live connection
//! (state, flags, expiry and wheel slot) must be the same.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::lb::LbStage;
use crate::model::{
    DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey, TunnelConfig, TunnelCsum,
    TunnelType,
};
use crate::wire::testutil::{frame, L4};
use crate::wire::{checksum, parse_packet, tcp};

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
/// Clients: two plain ones and a martian (loopback) source.
const CLIENTS: [&str; 3] = ["198.18.0.2", "198.18.0.3", "127.0.0.9"];
const LOCAL: &str = "198.18.1.200";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The services: (protocol, VIP, port, real server, real port, method).
fn services() -> Vec<(
    Protocol,
    &'static str,
    u16,
    &'static str,
    u16,
    ForwardMethod,
)> {
    let tun = |kind, port, csum| ForwardMethod::Tunnel(TunnelConfig { kind, port, csum });
    vec![
        (
            Protocol::Tcp,
            "198.18.0.100",
            80,
            "198.18.1.10",
            8080,
            ForwardMethod::Masq,
        ),
        (
            Protocol::Udp,
            "198.18.0.100",
            53,
            "198.18.1.10",
            5353,
            ForwardMethod::Masq,
        ),
        (
            Protocol::Tcp,
            "198.18.0.101",
            80,
            "198.18.1.11",
            80,
            ForwardMethod::Route,
        ),
        (
            Protocol::Udp,
            "198.18.0.101",
            53,
            "198.18.1.11",
            53,
            ForwardMethod::Route,
        ),
        (
            Protocol::Udp,
            "198.18.0.102",
            53,
            "198.18.1.12",
            53,
            tun(TunnelType::Ipip, 0, TunnelCsum::NoCsum),
        ),
        (
            Protocol::Tcp,
            "198.18.0.102",
            80,
            "198.18.1.13",
            80,
            tun(TunnelType::Gue, 6080, TunnelCsum::Csum),
        ),
        (
            Protocol::Udp,
            "198.18.0.102",
            54,
            "198.18.1.14",
            54,
            tun(TunnelType::Gre, 0, TunnelCsum::Csum),
        ),
        (
            Protocol::Tcp,
            "198.18.0.103",
            80,
            "198.18.1.15",
            8080,
            ForwardMethod::FullNat,
        ),
        (
            Protocol::Udp,
            "198.18.0.103",
            53,
            "198.18.1.15",
            5353,
            ForwardMethod::FullNat,
        ),
    ]
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
    /// One port, 198.18.0.1/24 (clients) and 198.18.1.1/24 (real
    /// servers), every neighbour static; `rules`: with a filter rule.
    fn new(rules: bool) -> Director {
        let cfg = L3Config {
            interfaces: vec![Interface {
                port: 0,
                mac: MacAddr(DIRECTOR_MAC),
                addrs: vec![
                    "198.18.0.1/24".parse().unwrap(),
                    "198.18.1.1/24".parse().unwrap(),
                ],
                mtu: 1500,
                kernel: false,
            }],
            routes: vec![],
            neighbors: CLIENTS
                .iter()
                .take(2)
                .map(|c| (ip(c), MacAddr(CLIENT_MAC)))
                .chain((10..16).map(|h| (IpAddr::from([198, 18, 1, h]), MacAddr(REAL_MAC))))
                .collect(),
            forwarding: Default::default(),
        };
        let mut store = ConfigStore::new();
        for (proto, vip, port, real, rport, method) in services() {
            let key = ServiceKey::Addr {
                protocol: proto,
                addr: ip(vip),
                port,
            };
            if store
                .apply(&ConfigOp::AddService(ServiceConfig::new(key)))
                .is_err()
            {
                continue;
            }
            let d = DestConfig {
                addr: ip(real),
                port: rport,
                method,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            };
            store.apply(&ConfigOp::AddDest(key, d)).unwrap();
            if method == ForwardMethod::FullNat {
                store.apply(&ConfigOp::AddLocal(key, ip(LOCAL))).unwrap();
            }
        }
        if rules {
            use crate::model::Family;
            use crate::rules::{NoNames, Program, Rule, RuleOp, RuleTables, Table, Target};
            let mut t = RuleTables::default();
            let op = RuleOp::Append {
                chain: "INPUT".into(),
                rule: Rule {
                    target: Target::Accept,
                    ..Rule::default()
                },
                counters: None,
            };
            t.apply(Family::V4, Table::Filter, &op).unwrap();
            store.set_rules(Arc::new(Program::compile(&t.v4, &t.v6, &NoNames)));
        }
        let stage = LbStage::for_tests(&cfg, &store).with_fixed_isn_key();
        let mut stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        stack.set_service_addrs(stage.lb().service_addrs());
        Director {
            stack,
            stage,
            store,
        }
    }

    /// One frame received on port 0, through the lane while the stage
    /// allows it (as the worker's `input_burst`), else the general path.
    fn input(&mut self, f: &[u8], now: u64, lane: bool) -> Vec<(u16, Vec<u8>)> {
        let mut io = Sent::default();
        let buf = TestBuf::new(f);
        if lane && Stage::<TestBuf>::lane_on(&self.stage) {
            let parsed = parse_packet(buf.data());
            if Stage::<TestBuf>::lane_fronted(&self.stage) {
                self.stack
                    .input_lane_fronted(0, buf, &parsed, now, &mut io, &mut self.stage);
            } else {
                self.stack
                    .input_lane(0, buf, &parsed, now, &mut io, &mut self.stage);
            }
        } else {
            self.stack.input(0, buf, now, &mut io, &mut self.stage);
        }
        Stage::<TestBuf>::end_burst(&mut self.stage, now);
        io.0
    }

    fn tick(&mut self, now: u64) {
        let mut io = Sent::default();
        self.stack.tick(now, &mut io);
        Stage::<TestBuf>::tick(&mut self.stage, now);
        Stage::<TestBuf>::acknowledge(&mut self.stage);
    }

    /// Everything the two paths must agree on besides the frames.
    fn state(&self, now: u64) -> Vec<String> {
        let lb = self.stage.lb();
        let mut out = lb.conns().live_for_tests();
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

/// A TCP or UDP frame to the director's MAC; TCP with flag byte `flags`.
fn packet(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    tcp_flags: Option<u8>,
    len: usize,
) -> Vec<u8> {
    let payload = vec![0x5a; len];
    let l4 = if tcp_flags.is_some() {
        L4::Tcp
    } else {
        L4::Udp
    };
    let mut f = frame(src, dst, l4, sport, dport, None, &payload);
    f[0..6].copy_from_slice(&DIRECTOR_MAC);
    if let Some(flags) = tcp_flags {
        let m = parse_packet(&f).unwrap();
        let off = usize::from(m.l4_offset);
        let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
        f[off + 13] = flags;
        let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
        let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
        let c = checksum::update16(t.checksum(), old, new);
        t.set_checksum(c);
    }
    f
}

/// TCP flag mixes: SYN, ACK, PSH|ACK, FIN|ACK, RST, SYN|ACK, RST|ACK, none.
const FLAGS: [u8; 8] = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12, 0x14, 0x00];

#[derive(Debug, Clone)]
enum Step {
    /// A client packet to service `svc` from client `client`, source port
    /// `1000 + sport`, TCP flags `FLAGS[flags]`, `len` bytes of payload,
    /// with a broken header checksum if `bad`.
    Client {
        svc: usize,
        client: usize,
        sport: u16,
        flags: usize,
        len: usize,
        bad: bool,
    },
    /// The answer to the `k`-th frame that left (modulo their number):
    /// its addresses and ports swapped, TCP flags `FLAGS[flags]`.
    Answer { k: usize, flags: usize, len: usize },
    /// The clock moves on by this many milliseconds, then housekeeping.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..9usize, 0..3usize, 0..4u16, 0..8usize, 0..64usize, proptest::bool::weighted(0.05))
            .prop_map(|(svc, client, sport, flags, len, bad)| Step::Client { svc, client, sport, flags, len, bad }),
        3 => (0..64usize, 0..8usize, 0..64usize).prop_map(|(k, flags, len)| Step::Answer { k, flags, len }),
        1 => prop_oneof![0..50u64, 1000..400_000u64].prop_map(Step::Wait),
    ]
}

/// Runs `steps` through a lane director and a general one; panics where
/// they differ.
fn agree(steps: &[Step], rules: bool) {
    let mut lane = Director::new(rules);
    let mut general = Director::new(rules);
    assert_eq!(
        Stage::<TestBuf>::lane_on(&lane.stage),
        !rules,
        "the lane steps aside for rules"
    );
    let svcs = services();
    let mut left: Vec<Vec<u8>> = Vec::new();
    let mut now = 1;
    for (i, s) in steps.iter().enumerate() {
        let f = match *s {
            Step::Client {
                svc,
                client,
                sport,
                flags,
                len,
                bad,
            } => {
                let (proto, vip, port, ..) = svcs[svc];
                let fl = (proto == Protocol::Tcp).then_some(FLAGS[flags]);
                let mut f = packet(ip(CLIENTS[client]), 1000 + sport, ip(vip), port, fl, len);
                if bad {
                    f[24] ^= 0x40;
                }
                f
            }
            Step::Answer { k, flags, len } => {
                if left.is_empty() {
                    continue;
                }
                let out = &left[k % left.len()];
                let Ok(m) = parse_packet(out) else { continue };
                let fl = match m.protocol {
                    crate::wire::ipv4::protocol::TCP => Some(FLAGS[flags]),
                    crate::wire::ipv4::protocol::UDP => None,
                    _ => continue,
                };
                if !m.is_ipv4() {
                    continue;
                }
                packet(m.dst, m.dport, m.src, m.sport, fl, len)
            }
            Step::Wait(ms) => {
                now += ms;
                lane.tick(now);
                general.tick(now);
                continue;
            }
        };
        let a = lane.input(&f, now, true);
        let b = general.input(&f, now, false);
        assert_eq!(a, b, "step {i}: {s:?}");
        left.extend(a.into_iter().map(|(_, f)| f));
        // The clock moves a little between packets.
        now += 1;
    }
    assert_eq!(lane.state(now), general.state(now));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_lane_and_the_general_path_send_count_and_keep_the_same(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        agree(&steps, false);
    }

    #[test]
    fn with_a_filter_rule_the_lane_steps_aside_and_nothing_changes(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        agree(&steps, true);
    }
}

#[test]
fn an_established_flow_of_every_method_goes_through_the_lane_both_ways() {
    // A handshake and data per TCP service, two datagrams per UDP one,
    // and the answers of the NAT and FULLNAT real servers.
    let mut steps = Vec::new();
    for svc in 0..9 {
        for flags in [0, 1, 2, 2, 3] {
            steps.push(Step::Client {
                svc,
                client: 0,
                sport: 1,
                flags,
                len: 10,
                bad: false,
            });
        }
    }
    for k in 0..60 {
        steps.push(Step::Answer {
            k,
            flags: 2,
            len: 20,
        });
    }
    agree(&steps, false);
}
