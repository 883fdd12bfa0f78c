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
//!
//! The same with two workers: each packet arrives at either worker (as RSS
//! may deliver it); what one worker hands over is then fed to its owner as
//! the worker feeds the mesh's frames (the lane's
//! entries [`front::OWNER`] and [`front::HANDED_IN`] against
//! the general path's [`Stack::input`] on both), and the hand-overs, each
//! worker's frames, counters, connections and the shared statistics must be
//! the same. A persistent service's templates are shared by the workers.

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
        // Persistent (see `PERSISTENT_VIP`), two real servers.
        (
            Protocol::Udp,
            PERSISTENT_VIP,
            53,
            "198.18.1.10",
            5353,
            ForwardMethod::Masq,
        ),
    ]
}

/// The persistent service's address (300 s; a second real server,
/// 198.18.1.11:5353).
const PERSISTENT_VIP: &str = "198.18.0.104";

#[derive(Default)]
struct Sent {
    tx: Vec<(u16, Vec<u8>)>,
    /// Hand-overs: to worker, received on port, the frame.
    handed: Vec<(usize, u16, TestBuf)>,
}

impl Io<TestBuf> for Sent {
    fn alloc(&mut self) -> Option<TestBuf> {
        Some(TestBuf::new(&[]))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.tx.push((port, buf.data().to_vec()));
    }
    fn hand_over(&mut self, worker: usize, port: u16, buf: TestBuf) {
        self.handed.push((worker, port, buf));
    }
}

/// One worker's stack and stage.
struct Worker {
    stack: Stack<TestBuf>,
    stage: LbStage,
}

struct Director {
    workers: Vec<Worker>,
    store: ConfigStore,
}

/// What left a director for one received frame: (worker, port, frame)
/// sent, and the hand-overs (from worker, to worker).
type Left = (Vec<(usize, u16, Vec<u8>)>, Vec<(usize, usize)>);

impl Director {
    /// `n` workers, one port, 198.18.0.1/24 (clients) and 198.18.1.1/24
    /// (real servers), every neighbour static; `rules`: with a filter
    /// rule. Workers share the configuration, the statistics and the
    /// persistence templates, as the daemon's do.
    fn with_workers(n: usize, rules: bool) -> Director {
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
            let mut svc = ServiceConfig::new(key);
            if vip == PERSISTENT_VIP {
                svc.persistent = Some(300);
            }
            if store.apply(&ConfigOp::AddService(svc)).is_err() {
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
            store.apply(&ConfigOp::AddDest(key, d.clone())).unwrap();
            if vip == PERSISTENT_VIP {
                let d2 = DestConfig {
                    addr: ip("198.18.1.11"),
                    ..d
                };
                store.apply(&ConfigOp::AddDest(key, d2)).unwrap();
            }
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
        let stages = if n == 1 {
            vec![LbStage::for_tests(&cfg, &store)]
        } else {
            LbStage::workers_for_tests(&cfg, &store, n)
        };
        let workers = stages
            .into_iter()
            .map(|stage| {
                let stage = stage.with_fixed_isn_key();
                let mut stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
                stack.set_service_addrs(stage.lb().service_addrs());
                Worker { stack, stage }
            })
            .collect();
        Director { workers, store }
    }

    /// One frame received on port 0 by worker `at`, then what the workers
    /// hand over fed to its owner as from the mesh: through the lane while
    /// the stage allows it (the entry the worker's `input_burst` picks),
    /// else the general path.
    fn input(&mut self, f: &[u8], at: usize, now: u64, lane: bool) -> Left {
        let mut sent = Vec::new();
        let mut handed = Vec::new();
        let mut todo = vec![(at, 0, TestBuf::new(f), false)];
        while let Some((w, port, buf, handed_in)) = todo.pop() {
            assert!(handed.len() <= 2, "a packet handed over and over");
            let mut io = Sent::default();
            let Worker { stack, stage } = &mut self.workers[w];
            if lane && Stage::<TestBuf>::lane_on(stage) {
                let parsed = parse_packet(buf.data());
                if !Stage::<TestBuf>::lane_fronted(stage) {
                    stack.input_lane(port, buf, &parsed, now, &mut io, stage);
                } else if !Stage::<TestBuf>::lane_owned(stage) {
                    stack.input_lane_front::<{ front::SNAT }>(
                        port, buf, &parsed, now, &mut io, stage,
                    );
                } else if handed_in {
                    stack.input_lane_front::<{ front::HANDED_IN }>(
                        port, buf, &parsed, now, &mut io, stage,
                    );
                } else {
                    stack.input_lane_front::<{ front::OWNER }>(
                        port, buf, &parsed, now, &mut io, stage,
                    );
                }
            } else {
                stack.input(port, buf, now, &mut io, stage);
            }
            Stage::<TestBuf>::end_burst(stage, now);
            sent.extend(io.tx.into_iter().map(|(p, f)| (w, p, f)));
            for (to, port, buf) in io.handed {
                handed.push((w, to));
                todo.push((to, port, buf, true));
            }
        }
        (sent, handed)
    }

    fn tick(&mut self, now: u64) {
        for Worker { stack, stage } in &mut self.workers {
            let mut io = Sent::default();
            stack.tick(now, &mut io);
            Stage::<TestBuf>::tick(stage, now);
            Stage::<TestBuf>::acknowledge(stage);
        }
    }

    /// Everything the two paths must agree on besides the frames.
    fn state(&self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        for Worker { stack, stage } in &self.workers {
            let lb = stage.lb();
            out.extend(lb.conns().live_for_tests());
            out.push(format!("{:?}", stack.counters().nonzero()));
            out.push(format!("{:?}", lb.counters()));
            out.push(format!("{:?}", lb.connections(now).collect::<Vec<_>>()));
        }
        for s in self.store.snapshot().services.iter() {
            out.push(format!("{:?} {:?}", s.config.key, s.shared.stats));
            for d in &s.dests {
                out.push(format!("{:?}", d.shared));
            }
        }
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
    /// with a broken header checksum if `bad`, received by worker `at`
    /// (modulo the number of workers).
    Client {
        svc: usize,
        client: usize,
        sport: u16,
        flags: usize,
        len: usize,
        bad: bool,
        at: usize,
    },
    /// The answer to the `k`-th frame that left (modulo their number):
    /// its addresses and ports swapped, TCP flags `FLAGS[flags]`,
    /// received by worker `at`.
    Answer {
        k: usize,
        flags: usize,
        len: usize,
        at: usize,
    },
    /// The clock moves on by this many milliseconds, then housekeeping.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..10usize, 0..3usize, 0..6u16, 0..8usize, 0..64usize, proptest::bool::weighted(0.05), 0..2usize)
            .prop_map(|(svc, client, sport, flags, len, bad, at)| Step::Client { svc, client, sport, flags, len, bad, at }),
        3 => (0..64usize, 0..8usize, 0..64usize, 0..2usize).prop_map(|(k, flags, len, at)| Step::Answer { k, flags, len, at }),
        1 => prop_oneof![0..50u64, 1000..400_000u64].prop_map(Step::Wait),
    ]
}

/// Runs `steps` through a lane director and a general one of `workers`
/// workers; panics where they differ. Returns how many packets were
/// handed over.
fn agree(steps: &[Step], workers: usize, rules: bool) -> usize {
    let mut lane = Director::with_workers(workers, rules);
    let mut general = Director::with_workers(workers, rules);
    for w in &lane.workers {
        assert_eq!(
            Stage::<TestBuf>::lane_on(&w.stage),
            !rules,
            "the lane steps aside for rules"
        );
        assert_eq!(Stage::<TestBuf>::lane_owned(&w.stage), workers > 1);
    }
    let svcs = services();
    let mut left: Vec<Vec<u8>> = Vec::new();
    let mut now = 1;
    let mut handed = 0;
    for (i, s) in steps.iter().enumerate() {
        let (f, at) = match *s {
            Step::Client {
                svc,
                client,
                sport,
                flags,
                len,
                bad,
                at,
            } => {
                let (proto, vip, port, ..) = svcs[svc];
                let fl = (proto == Protocol::Tcp).then_some(FLAGS[flags]);
                let mut f = packet(ip(CLIENTS[client]), 1000 + sport, ip(vip), port, fl, len);
                if bad {
                    f[24] ^= 0x40;
                }
                (f, at)
            }
            Step::Answer { k, flags, len, at } => {
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
                (packet(m.dst, m.dport, m.src, m.sport, fl, len), at)
            }
            Step::Wait(ms) => {
                now += ms;
                lane.tick(now);
                general.tick(now);
                continue;
            }
        };
        let a = lane.input(&f, at % workers, now, true);
        let b = general.input(&f, at % workers, now, false);
        assert_eq!(a, b, "step {i}: {s:?}");
        handed += a.1.len();
        left.extend(a.0.into_iter().map(|(_, _, f)| f));
        // The clock moves a little between packets.
        now += 1;
    }
    assert_eq!(lane.state(now), general.state(now));
    handed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_lane_and_the_general_path_send_count_and_keep_the_same(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        agree(&steps, 1, false);
    }

    #[test]
    fn with_a_filter_rule_the_lane_steps_aside_and_nothing_changes(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        agree(&steps, 1, true);
    }

    #[test]
    fn with_two_workers_the_lane_hands_over_and_keeps_the_same_as_the_general_path(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        agree(&steps, 2, false);
    }

    #[test]
    fn with_two_workers_and_a_filter_rule_the_lane_steps_aside(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        agree(&steps, 2, true);
    }
}

/// A handshake and data per TCP service, two datagrams per UDP one, from
/// client 0 on sources ports `1000 + sports`, each arriving at worker
/// `at`, and the answers of the NAT and FULLNAT real servers at worker
/// `back`.
fn established(at: usize, back: usize, sports: [u16; 2]) -> Vec<Step> {
    let mut steps = Vec::new();
    for svc in 0..10 {
        for sport in sports {
            for flags in [0, 1, 2, 2, 3] {
                steps.push(Step::Client {
                    svc,
                    client: 0,
                    sport,
                    flags,
                    len: 10,
                    bad: false,
                    at,
                });
            }
        }
    }
    for k in 0..120 {
        steps.push(Step::Answer {
            k,
            flags: 2,
            len: 20,
            at: back,
        });
    }
    steps
}

#[test]
fn an_established_flow_of_every_method_goes_through_the_lane_both_ways() {
    agree(&established(0, 0, [1, 2]), 1, false);
}

#[test]
fn with_two_workers_established_flows_of_every_method_agree_wherever_they_arrive() {
    // Client 0's two source ports are owned by different workers, so each
    // arrival hands some packets over.
    let owners = crate::rss::Ownership::new(2);
    let owner = |sport: u16| owners.owner(ip(CLIENTS[0]), 1000 + sport);
    let other = (2..64).find(|&s| owner(s) != owner(1)).unwrap();
    for (at, back) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert!(agree(&established(at, back, [1, other]), 2, false) > 0);
    }
}

/// The first packet of a flow to every service, from every client, with
/// every TCP flag mix: the lane schedules those it may open a connection
/// for from its general step (`Stage::lane_new`), and answers the others
/// (a stray TCP segment, a martian source) as the general path does.
fn first_packets(at: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for svc in 0..10 {
        for client in 0..CLIENTS.len() {
            for flags in 0..FLAGS.len() {
                steps.push(Step::Client {
                    svc,
                    client,
                    sport: flags as u16,
                    flags,
                    len: 10,
                    bad: false,
                    at,
                });
            }
        }
    }
    steps
}

#[test]
fn new_connections_of_every_method_open_from_the_lane_as_in_the_general_path() {
    agree(&first_packets(0), 1, false);
    for at in [0, 1] {
        agree(&first_packets(at), 2, false);
    }
}
