//! The route cache against the lookups it saves. Two stacks are driven
//! through the same random sequence of changes and packets: one keeps its
//! route cache, the other forgets it before every packet and every
//! question, so that each of its answers is the uncached lookup's. After
//! each step both must have sent the same frames on the same ports,
//! counted the same, and hold the same neighbour table; the stage's
//! questions (source address and MTU towards a destination) must get the
//! same answers. The changes are those that happen while the daemon runs:
//! neighbours learned (on the right port or another), static neighbours
//! and routes replaced by a reload, path MTUs learned, time passing
//! (learned neighbours and path MTUs running out, resolutions retried and
//! given up). Interfaces, their addresses and their MTUs are fixed for
//! the daemon's life (a change restarts it), so a new stack stands for
//! them. The destinations include several of one cache set, so entries
//! are pushed out and refilled.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::routecache::ROUTE_CACHE_SETS;
use super::stack_tests::two_ports;
use super::*;
use crate::buf::TestBuf;
use crate::lb::{Egress, PathMtus};
use crate::wire::ethernet::HEADER_LEN;

#[derive(Default)]
struct SentIo {
    sent: Vec<(u16, Vec<u8>)>,
}

impl Io<TestBuf> for SentIo {
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

/// Port 0 is 198.18.0.1/24 and 2001:db8::1/64, port 1 198.18.1.1/24.
/// The route tables a reload picks from: 198.19.0.0/16 behind a gateway
/// on either port, a more specific /24 behind another, a 2001:db8:5::/48
/// behind an IPv6 gateway, or no static route at all.
fn routes(which: u8) -> RouteTable {
    let r = |p: &str, via: &str| (p.parse().unwrap(), ip(via));
    let routes = match which % 4 {
        0 => vec![r("198.19.0.0/16", "198.18.1.2")],
        1 => vec![r("198.19.0.0/16", "198.18.0.3")],
        2 => vec![
            r("198.19.0.0/16", "198.18.1.2"),
            r("198.19.3.0/24", "198.18.1.5"),
            r("2001:db8:5::/48", "2001:db8::7"),
        ],
        _ => vec![],
    };
    config(routes).route_table().unwrap()
}

fn config(routes: Vec<(Prefix, IpAddr)>) -> L3Config {
    L3Config {
        interfaces: two_ports(),
        routes,
        neighbors: vec![],
        forwarding: Default::default(),
    }
}

/// Next hops: the gateways of [`routes`] and some connected hosts.
const HOPS: [&str; 7] = [
    "198.18.1.2",
    "198.18.0.3",
    "198.18.1.5",
    "198.18.0.2",
    "198.18.1.9",
    "2001:db8::7",
    "2001:db8::2",
];

fn mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0xbb, i])
}

/// Destinations: the next hops themselves, addresses behind the
/// gateways (several of them in one cache set), unroutable ones.
fn destinations() -> Vec<IpAddr> {
    let mut d: Vec<IpAddr> = HOPS.iter().map(|h| ip(h)).collect();
    d.extend(["198.19.3.4", "198.19.9.9", "2001:db8:5::9", "2001:db8:6::1"].map(ip));
    let first = ip("198.19.0.1");
    let set = |a: IpAddr| super::addr_slot(a, ROUTE_CACHE_SETS);
    d.extend(
        (1u32..)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from((198u32 << 24 | 19 << 16) + i)))
            .filter(|&a| set(a) == set(first))
            .take(4),
    );
    d
}

#[derive(Debug, Clone)]
enum Step {
    /// Send a packet to destination `dst` (an index).
    Send { dst: usize },
    /// Learn next hop `hop` at MAC `mac` on `port`.
    Learn { hop: usize, mac: u8, port: u16 },
    /// Reload: route table `routes`, and static neighbours: the next
    /// hops whose bit is set in `statics`, at MAC `mac`.
    Reload { routes: u8, statics: u8, mac: u8 },
    /// A path MTU learned for destination `dst`.
    LearnMtu { dst: usize, mtu: u16 },
    /// The stage's questions about destination `dst`.
    Ask { dst: usize },
    /// Time passes by `ms`, then the stacks' timers run.
    Wait { ms: u64 },
}

fn step(n_dst: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..n_dst).prop_map(|dst| Step::Send { dst }),
        2 => (0..HOPS.len(), 0u8..3, 0u16..2).prop_map(|(hop, mac, port)| Step::Learn { hop, mac, port }),
        1 => (any::<u8>(), any::<u8>(), 0u8..3).prop_map(|(routes, statics, mac)| Step::Reload { routes, statics, mac }),
        1 => (0..n_dst, 1200u16..1500).prop_map(|(dst, mtu)| Step::LearnMtu { dst, mtu }),
        2 => (0..n_dst).prop_map(|dst| Step::Ask { dst }),
        2 => prop_oneof![
            Just(0u64), Just(1), Just(999), Just(1_000), Just(29_999),
            Just(30_000), Just(31_000), Just(600_000)
        ].prop_map(|ms| Step::Wait { ms }),
    ]
}

/// A stack and what it sent.
struct Side {
    st: Stack<TestBuf>,
    io: SentIo,
    /// Forgets its route cache before each packet and question.
    uncached: bool,
}

impl Side {
    fn new(uncached: bool, pmtu: &Arc<PathMtus>) -> Side {
        let mut st = Stack::new(
            &config(vec![("198.19.0.0/16".parse().unwrap(), ip("198.18.1.2"))]),
            Arc::new(NetCounters::default()),
        )
        .unwrap();
        st.share_path_mtus(Arc::clone(pmtu));
        Side {
            st,
            io: SentIo::default(),
            uncached,
        }
    }

    fn forget(&mut self) {
        if self.uncached {
            self.st.route_cache().clear();
        }
    }

    /// Runs `s` at `now`; the answers of the stage's questions, if asked.
    fn run(&mut self, s: &Step, dsts: &[IpAddr], now: u64) -> Option<(Option<(IpAddr, u16)>, u16)> {
        match *s {
            Step::Send { dst } => {
                self.forget();
                let mut frame = vec![0u8; HEADER_LEN + 20];
                frame[HEADER_LEN] = 0x45;
                frame[HEADER_LEN + 1] = dst as u8;
                self.st
                    .send_ip(TestBuf::new(&frame), dsts[dst], now, &mut self.io);
            }
            Step::Learn { hop, mac: m, port } => {
                self.st
                    .learn(ip(HOPS[hop]), port, mac(m), now, &mut self.io);
            }
            Step::Reload {
                routes: r,
                statics,
                mac: m,
            } => {
                let statics: Vec<(IpAddr, MacAddr)> = (0..HOPS.len())
                    .filter(|i| statics & (1 << i) != 0)
                    .map(|i| (ip(HOPS[i]), mac(m)))
                    .collect();
                self.st.reload(routes(r), &statics);
            }
            Step::LearnMtu { dst, mtu } => {
                // Shared: only one side learns it.
                if !self.uncached {
                    self.st.route_cache().learn_mtu(dsts[dst], mtu);
                }
            }
            Step::Ask { dst } => {
                self.forget();
                let c = self.st.route_cache();
                return Some((c.route(dsts[dst]), c.mtu(dsts[dst])));
            }
            Step::Wait { .. } => self.st.tick(now, &mut self.io),
        }
        None
    }

    /// The frames sent since the last call.
    fn sent(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.io.sent)
    }

    fn neighbours(&self) -> Vec<(IpAddr, neighbor::Neighbor)> {
        let mut v: Vec<_> = self.st.neighbors().iter().map(|(a, n)| (*a, *n)).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cached_answers_equal_uncached_lookups_after_any_changes(
        steps in proptest::collection::vec(step(destinations().len()), 1..80)
    ) {
        let dsts = destinations();
        let pmtu = Arc::new(PathMtus::default());
        let (mut cached, mut uncached) = (Side::new(false, &pmtu), Side::new(true, &pmtu));
        let mut now = 1u64;
        for (i, s) in steps.iter().enumerate() {
            if let Step::Wait { ms } = s {
                now += ms;
            }
            let a = cached.run(s, &dsts, now);
            let b = uncached.run(s, &dsts, now);
            prop_assert_eq!(a, b, "step {}: {:?}", i, s);
            // The frames each step sent, in any order: the neighbour
            // table's timers visit next hops in its hash map's order, which
            // differs between two maps.
            let (mut x, mut y) = (cached.sent(), uncached.sent());
            x.sort();
            y.sort();
            prop_assert_eq!(x, y, "step {}: {:?}", i, s);
            prop_assert_eq!(
                cached.st.counters().nonzero(),
                uncached.st.counters().nonzero(),
                "step {}: {:?}", i, s
            );
            prop_assert_eq!(cached.neighbours(), uncached.neighbours(), "step {}: {:?}", i, s);
            prop_assert_eq!(cached.st.neighbors().pending_len(), uncached.st.neighbors().pending_len());
        }
    }
}
