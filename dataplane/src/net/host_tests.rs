//! The stack with the real load-balancing stage in front, as a client sees
//! the director: pings to a VIP, packets to a VIP port without a service,
//! martian and damaged packets, byte for byte and by counter.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::host::ANSWER_BURST;
use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::lb::LbStage;
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::wire::testutil::checksums_ok;

use super::stack_tests::{two_ports, DIRECTOR_MAC};
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
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

/// Port 0 (clients): 198.18.0.1/24, 2001:db8::1/64; port 1 (servers):
/// 198.18.1.1/24. VIPs 198.18.0.100 and 2001:db8::100, TCP port 80 and UDP
/// port 53 through NAT to 198.18.1.10. Client and real server are static
/// neighbours.
struct Director {
    stack: Stack<TestBuf>,
    stage: LbStage,
}

impl Director {
    fn new() -> Director {
        let cfg = L3Config {
            interfaces: two_ports(),
            routes: vec![],
            neighbors: vec![
                (ip("198.18.0.2"), MacAddr(CLIENT_MAC)),
                (ip("2001:db8::2"), MacAddr(CLIENT_MAC)),
                (ip("198.18.1.10"), MacAddr(REAL_MAC)),
            ],
            forwarding: Default::default(),
        };
        let mut store = ConfigStore::new();
        for (proto, vip, port) in [
            (Protocol::Tcp, "198.18.0.100", 80),
            (Protocol::Udp, "198.18.0.100", 53),
            (Protocol::Tcp, "2001:db8::100", 80),
        ] {
            let key = ServiceKey::Addr {
                protocol: proto,
                addr: ip(vip),
                port,
            };
            store
                .apply(&ConfigOp::AddService(ServiceConfig::new(key)))
                .unwrap();
            if vip.contains('.') {
                let d = DestConfig {
                    addr: ip("198.18.1.10"),
                    port,
                    method: ForwardMethod::Masq,
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                };
                store.apply(&ConfigOp::AddDest(key, d)).unwrap();
            }
        }
        let stage = LbStage::for_tests(&cfg, &store);
        let mut stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        stack.set_service_addrs(stage.lb().service_addrs());
        Director { stack, stage }
    }

    fn input(&mut self, frame: &[u8], now: u64) -> Vec<(u16, Vec<u8>)> {
        let mut io = Sent::default();
        self.stack
            .input(0, TestBuf::new(frame), now, &mut io, &mut self.stage);
        io.0
    }

    fn count(&self, c: Counter) -> u64 {
        self.stack.counters().get(c)
    }

    fn conns(&self) -> (usize, u64) {
        let lb = self.stage.lb();
        (
            lb.conns().len(),
            lb.counters().created.load(Ordering::Relaxed),
        )
    }
}

fn builder(src: &str, dst: &str) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
    match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    }
}

fn syn(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    builder(src, dst)
        .tcp(40000, dport, 1000, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn udp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    builder(src, dst)
        .udp(40000, dport)
        .write(&mut v, b"query")
        .unwrap();
    v
}

fn ping(src: &str, dst: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let b = builder(src, dst);
    if src.contains('.') {
        b.icmpv4_echo_request(7, 1).write(&mut v, b"ping").unwrap();
    } else {
        b.icmpv6_echo_request(7, 1).write(&mut v, b"ping").unwrap();
    }
    v
}

/// (source, destination, TTL) of an IP frame, and its transport.
fn parsed(frame: &[u8]) -> (IpAddr, IpAddr, u8, Option<TransportSlice<'_>>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (s, d, ttl) = match p.net.unwrap() {
        NetSlice::Ipv4(i) => {
            let h = i.header();
            (
                IpAddr::from(h.source()),
                IpAddr::from(h.destination()),
                h.ttl(),
            )
        }
        NetSlice::Ipv6(i) => {
            let h = i.header();
            (
                IpAddr::from(h.source()),
                IpAddr::from(h.destination()),
                h.hop_limit(),
            )
        }
    };
    (s, d, ttl, p.transport)
}

#[test]
fn a_ping_to_a_vip_is_answered_from_the_vip() {
    for (client, vip) in [
        ("198.18.0.2", "198.18.0.100"),
        ("2001:db8::2", "2001:db8::100"),
    ] {
        let mut d = Director::new();
        let out = d.input(&ping(client, vip), 0);
        assert_eq!(out.len(), 1, "{vip}");
        let (port, f) = &out[0];
        assert_eq!((*port, &f[0..6]), (0, &CLIENT_MAC[..]));
        assert!(checksums_ok(f));
        let (s, dst, _, t) = parsed(f);
        assert_eq!((s, dst), (ip(vip), ip(client)));
        match t {
            Some(TransportSlice::Icmpv4(i)) => assert_eq!(i.type_u8(), 0),
            Some(TransportSlice::Icmpv6(i)) => assert_eq!(i.type_u8(), 129),
            _ => panic!("not an echo reply"),
        }
    }
}

#[test]
fn a_syn_to_a_vip_port_without_service_gets_a_reset_from_the_vip() {
    for (client, vip) in [
        ("198.18.0.2", "198.18.0.100"),
        ("2001:db8::2", "2001:db8::100"),
    ] {
        let mut d = Director::new();
        let out = d.input(&syn(client, vip, 81), 0);
        assert_eq!(out.len(), 1, "{vip}");
        let f = &out[0].1;
        assert!(checksums_ok(f));
        let (s, dst, ttl, t) = parsed(f);
        assert_eq!((s, dst, ttl), (ip(vip), ip(client), 64));
        let Some(TransportSlice::Tcp(t)) = t else {
            panic!("not TCP")
        };
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!(
            (
                t.source_port(),
                t.destination_port(),
                t.acknowledgment_number()
            ),
            (81, 40000, 1001)
        );
        assert_eq!(d.count(Counter::TcpResetSent), 1);
        assert_eq!(d.conns(), (0, 0), "no connection");
    }
}

#[test]
fn a_datagram_to_a_vip_port_without_service_gets_port_unreachable() {
    let mut d = Director::new();
    let out = d.input(&udp("198.18.0.2", "198.18.0.100", 54), 0);
    assert_eq!(out.len(), 1);
    let f = &out[0].1;
    assert!(checksums_ok(f));
    let (s, dst, _, t) = parsed(f);
    assert_eq!((s, dst), (ip("198.18.0.100"), ip("198.18.0.2")));
    let Some(TransportSlice::Icmpv4(i)) = t else {
        panic!("not ICMP")
    };
    assert_eq!((i.type_u8(), i.code_u8()), (3, 3));
    assert_eq!(d.count(Counter::PortUnreachableSent), 1);
    // IPv6: the VIP has a TCP service only.
    let out = d.input(&udp("2001:db8::2", "2001:db8::100", 53), 0);
    let Some(TransportSlice::Icmpv6(i)) = parsed(&out[0].1).3 else {
        panic!("not ICMPv6")
    };
    assert_eq!((i.type_u8(), i.code_u8()), (1, 4));
    assert_eq!(d.count(Counter::PortUnreachableSent), 2);
}

#[test]
fn answers_beyond_the_burst_are_counted_not_sent() {
    let mut d = Director::new();
    let mut sent = 0;
    for _ in 0..ANSWER_BURST + 10 {
        sent += d.input(&syn("198.18.0.2", "198.18.0.100", 81), 5).len();
        sent += d.input(&ping("198.18.0.2", "198.18.0.100"), 5).len();
    }
    assert_eq!(sent as u64, ANSWER_BURST);
    assert_eq!(d.count(Counter::DropRateLimited), ANSWER_BURST + 20);
    // Echo for the director's own address is not limited.
    assert_eq!(d.input(&ping("198.18.0.2", "198.18.0.1"), 5).len(), 1);
    // A second later the bucket is full again.
    assert_eq!(
        d.input(&syn("198.18.0.2", "198.18.0.100", 81), 1005).len(),
        1
    );
}

#[test]
fn a_stray_ack_to_a_served_port_gets_the_reset_linux_sends_and_no_connection() {
    // TCP 80 is served: a segment that may not start a connection (an ACK
    // of a flow this director never saw) gets a bare RST whose sequence
    // number is the segment's acknowledgement, from the VIP.
    let mut d = Director::new();
    let mut v = Vec::new();
    builder("198.18.0.2", "198.18.0.100")
        .tcp(40000, 80, 5000, 64240)
        .ack(777)
        .write(&mut v, b"data")
        .unwrap();
    let out = d.input(&v, 0);
    assert_eq!(out.len(), 1);
    let f = &out[0].1;
    assert!(checksums_ok(f));
    let (s, dst, _, t) = parsed(f);
    assert_eq!((s, dst), (ip("198.18.0.100"), ip("198.18.0.2")));
    let Some(TransportSlice::Tcp(t)) = t else {
        panic!("not TCP")
    };
    assert!(t.rst() && !t.ack() && !t.syn());
    assert_eq!((t.source_port(), t.sequence_number()), (80, 777));
    assert_eq!(d.count(Counter::TcpResetSent), 1);
    assert_eq!(d.conns(), (0, 0), "no connection");
    // Within the answer budget: a flood of them gets the burst only.
    let mut sent = 0;
    for _ in 0..(2 * ANSWER_BURST) {
        sent += d.input(&v, 0).len();
    }
    assert_eq!(sent as u64, ANSWER_BURST - 1);
    assert_eq!(d.count(Counter::DropRateLimited), ANSWER_BURST + 1);
}

#[test]
fn a_reset_to_a_closed_port_is_not_answered() {
    let mut d = Director::new();
    let mut v = Vec::new();
    builder("198.18.0.2", "198.18.0.100")
        .tcp(40000, 81, 1, 0)
        .rst()
        .write(&mut v, &[])
        .unwrap();
    assert!(d.input(&v, 0).is_empty());
    assert_eq!(d.count(Counter::DropLocalOther), 1);
}

#[test]
fn martian_and_damaged_syns_create_no_connection() {
    let mut d = Director::new();
    for src in [
        "255.255.255.255",
        "0.0.0.0",
        "224.0.0.5",
        "127.0.0.1",
        "198.18.0.255",
    ] {
        assert!(
            d.input(&syn(src, "198.18.0.100", 80), 0).is_empty(),
            "{src}"
        );
    }
    assert_eq!(d.count(Counter::DropMartianSource), 5);
    let mut bad = syn("198.18.0.2", "198.18.0.100", 80);
    bad[14 + 10] ^= 0xff;
    assert!(d.input(&bad, 0).is_empty());
    assert_eq!(d.count(Counter::DropChecksum), 1);
    assert!(d.input(&syn("198.18.0.2", "127.0.0.1", 80), 0).is_empty());
    assert_eq!(d.count(Counter::DropMartianDestination), 1);
    assert_eq!(d.conns(), (0, 0), "no connection created");
    // The same SYN, sound, makes one.
    assert_eq!(d.input(&syn("198.18.0.2", "198.18.0.100", 80), 0).len(), 1);
    assert_eq!(d.conns(), (1, 1));
}

#[test]
fn bytes_behind_the_ip_packet_do_not_reach_the_real_server() {
    let mut d = Director::new();
    let mut f = syn("198.18.0.2", "198.18.0.100", 80);
    let ip_end = f.len();
    f.extend_from_slice(&[0xee; 9]);
    let out = d.input(&f, 0);
    assert_eq!(out.len(), 1);
    let (port, sent) = &out[0];
    assert_eq!(*port, 1);
    assert_eq!(sent.len(), ip_end, "trimmed to the IP total length");
    assert!(checksums_ok(sent));
    assert_eq!(parsed(sent).1, ip("198.18.1.10"));
    assert_eq!(d.count(Counter::Trimmed), 1);
}

impl Director {
    /// The ledger of this worker's counters (see [`super::ledger`]).
    fn ledger(&self) -> super::ledger::Ledger {
        let net = self.stack.counters();
        let lb = self.stage.lb().counters();
        let mut named: Vec<(String, u64)> = Counter::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), net.get(*c)))
            .collect();
        named.extend(
            crate::lb::LbDrop::ALL
                .iter()
                .map(|r| (format!("lb_drop_{}", r.as_str()), lb.drops(*r))),
        );
        named.extend(
            crate::frag::FragDrop::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), lb.frag.drops(*r))),
        );
        named.push((
            "fragments_received".into(),
            lb.frag.fragments.load(Ordering::Relaxed),
        ));
        super::ledger::Ledger::of(named.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// An IPv6 atomic fragment (offset 0, no more fragments) to a VIP whose
/// UDP length (128) claims more than the 3 bytes it carries, from the
/// hostile capture: reassembled at once, the whole datagram does not
/// parse. It was dropped without a count; now the load balancer counts it.
#[test]
fn a_reassembled_datagram_that_does_not_parse_is_counted() {
    let frame: [u8; 73] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0xaa, 0x01, 0x86, 0xdd, 0x60, 0xbf, 0, 0, 0, 0x13,
        0x2c, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xfb, 0x20,
        0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x11, 0, 0, 0, 0, 0, 0, 0xd5,
        0xc8, 0xd1, 0, 0x35, 0, 0x80, 0xf8, 0xdf, 0x65, 0x78, 0x74,
    ];
    let mut d = Director::new();
    assert!(d.input(&frame, 0).is_empty());
    let lb = d.stage.lb().counters();
    assert_eq!(lb.drops(crate::lb::LbDrop::Rewrite), 1);
    assert_eq!(lb.frag.drops(crate::frag::FragDrop::Refused), 1);
    assert_eq!(d.ledger().unaccounted(), 0, "{:?}", d.ledger());
}

/// An empty fragment that is not the last adds nothing: dropped, and
/// counted.
#[test]
fn an_empty_fragment_is_counted() {
    let mut f = udp("198.18.0.2", "198.18.0.100", 53);
    // Total length 20: no payload; MF set, offset 8 bytes (a later
    // fragment: a first one must hold the UDP header); checksum fixed.
    f.truncate(14 + 20);
    f[14 + 2..14 + 4].copy_from_slice(&20u16.to_be_bytes());
    f[14 + 6] = 0x20;
    f[14 + 7] = 1;
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = crate::wire::checksum::finish(0, &f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let mut d = Director::new();
    assert!(d.input(&f, 0).is_empty());
    let lb = d.stage.lb().counters();
    assert_eq!(
        lb.frag.drops(crate::frag::FragDrop::Malformed),
        1,
        "{:?}",
        d.ledger()
    );
    assert_eq!(d.ledger().unaccounted(), 0, "{:?}", d.ledger());
}

mod ledger_props {
    use super::*;
    use proptest::prelude::*;

    /// Sound frames of every kind the director handles, to damage.
    fn seeds() -> Vec<Vec<u8>> {
        let mut frag = udp("198.18.0.2", "198.18.0.100", 53);
        frag[14 + 6] = 0x20; // MF: a first fragment
        vec![
            syn("198.18.0.2", "198.18.0.100", 80),
            syn("2001:db8::2", "2001:db8::100", 80),
            syn("198.18.0.2", "198.18.0.100", 81),
            udp("198.18.0.2", "198.18.0.100", 53),
            udp("198.18.0.2", "198.18.0.1", 53),
            ping("198.18.0.2", "198.18.0.100"),
            ping("2001:db8::2", "2001:db8::1"),
            frag,
        ]
    }

    proptest! {
        /// Whatever a frame holds, it ends in exactly one counted fate:
        /// after every frame the ledger balances.
        #[test]
        fn every_frame_has_one_counted_fate(
            picks in proptest::collection::vec(
                (0usize..8, proptest::collection::vec((0usize..80, any::<u8>()), 0..4), 0usize..200),
                1..40,
            )
        ) {
            let seeds = seeds();
            let mut d = Director::new();
            for (i, (seed, flips, cut)) in picks.into_iter().enumerate() {
                let mut f = seeds[seed].clone();
                for (at, b) in flips {
                    if at < f.len() {
                        f[at] = b;
                    }
                }
                if cut < f.len() && cut % 3 == 0 {
                    f.truncate(cut);
                }
                d.input(&f, i as u64 * 10);
                let l = d.ledger();
                prop_assert_eq!(l.unaccounted(), 0, "{:02x?}: {:?}", f, l);
            }
        }
    }
}
