//! VLANs end to end through the stack and the real load-balancing stage:
//! one port, the client VLAN 10 and the server VLAN 20, frames in and out
//! compared byte for byte (expectations built with etherparse or by hand,
//! independent of our wire code).

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{PacketBuilder, VlanId};

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::lb::LbStage;
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::wire::testutil::checksums_ok;

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const NAT_REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
const DR_REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x02];
const CLIENT: [u8; 4] = [198, 18, 0, 2];
const VIP_NAT: [u8; 4] = [198, 18, 0, 100];
const VIP_DR: [u8; 4] = [198, 18, 0, 101];
const NAT_REAL: [u8; 4] = [198, 18, 1, 10];
const DR_REAL: [u8; 4] = [198, 18, 1, 11];
const V6_CLIENT: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const V6_VIP: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const V6_REAL: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const CLIENT_VLAN: u16 = 10;
const SERVER_VLAN: u16 = 20;

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

/// DPDK port 0 only, untagged with 198.18.9.1/24; VLAN 10 (clients):
/// 198.18.0.1/24 and 2001:db8::1/64; VLAN 20 (servers): 198.18.1.1/24 and
/// 2001:db8:1::1/64. TCP 198.18.0.100:80 through NAT to 198.18.1.10:8080,
/// TCP 198.18.0.101:80 through DR to 198.18.1.11, TCP [2001:db8::100]:80
/// through NAT to [2001:db8:1::10]:8080. The clients and the IPv6 real
/// server are static neighbours; the IPv4 real servers are learned through
/// ARP on VLAN 20.
struct Director {
    stack: Stack<TestBuf>,
    stage: LbStage,
}

impl Director {
    fn new() -> Director {
        let iface = |port: u16, addrs: &[&str]| Interface {
            port,
            mac: MacAddr(DIRECTOR_MAC),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: 1500,
            kernel: false,
        };
        let cfg = L3Config {
            interfaces: vec![
                iface(0, &["198.18.9.1/24"]),
                iface(
                    vlan::iface_id(0, CLIENT_VLAN).unwrap(),
                    &["198.18.0.1/24", "2001:db8::1/64"],
                ),
                iface(
                    vlan::iface_id(0, SERVER_VLAN).unwrap(),
                    &["198.18.1.1/24", "2001:db8:1::1/64"],
                ),
            ],
            routes: vec![],
            neighbors: vec![
                (IpAddr::from(CLIENT), MacAddr(CLIENT_MAC)),
                (IpAddr::from(V6_CLIENT), MacAddr(CLIENT_MAC)),
                (IpAddr::from(V6_REAL), MacAddr(NAT_REAL_MAC)),
            ],
            forwarding: Default::default(),
        };
        let mut store = ConfigStore::new();
        for (vip, real, port, method) in [
            (
                IpAddr::from(VIP_NAT),
                IpAddr::from(NAT_REAL),
                8080,
                ForwardMethod::Masq,
            ),
            (
                IpAddr::from(VIP_DR),
                IpAddr::from(DR_REAL),
                80,
                ForwardMethod::Route,
            ),
            (
                IpAddr::from(V6_VIP),
                IpAddr::from(V6_REAL),
                8080,
                ForwardMethod::Masq,
            ),
        ] {
            let key = ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: vip,
                port: 80,
            };
            store
                .apply(&ConfigOp::AddService(ServiceConfig::new(key)))
                .unwrap();
            let d = DestConfig {
                addr: real,
                port,
                method,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            };
            store.apply(&ConfigOp::AddDest(key, d)).unwrap();
        }
        let stage = LbStage::for_tests(&cfg, &store);
        let mut stack = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        stack.set_service_addrs(stage.lb().service_addrs());
        Director { stack, stage }
    }

    /// One frame received on DPDK port 0; what was sent, by DPDK port.
    fn input(&mut self, frame: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut io = Sent::default();
        self.stack
            .input(0, TestBuf::new(frame), 0, &mut io, &mut self.stage);
        io.0
    }

    fn count(&self, c: Counter) -> u64 {
        self.stack.counters().get(c)
    }
}

/// `frame` with an 802.1Q tag of `vid` (priority 0) behind the MACs.
fn tagged(vid: u16, frame: &[u8]) -> Vec<u8> {
    let tci = vid.to_be_bytes();
    [&frame[..12], &[0x81, 0x00, tci[0], tci[1]], &frame[12..]].concat()
}

/// An untagged ARP frame, padded to the 60-byte minimum.
fn arp(dst: [u8; 6], src: [u8; 6], op: u16, spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = [
        &dst[..],
        &src,
        &[0x08, 0x06, 0, 1, 8, 0, 6, 4],
        &op.to_be_bytes(),
        &src,
        &spa,
        &tha,
        &tpa,
    ]
    .concat();
    f.resize(60, 0);
    f
}

/// A TCP segment as a tagged frame on `vid`.
#[allow(clippy::too_many_arguments)]
fn tcp(
    vid: u16,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ttl: u8,
    syn_ack: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .single_vlan(VlanId::try_new(vid).unwrap())
        .ipv4(src.0, dst.0, ttl)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if syn_ack { b.syn().ack(1001) } else { b.syn() };
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

#[test]
fn a_tagged_arp_request_for_a_vip_gets_a_tagged_reply_on_its_vlan() {
    let mut d = Director::new();
    let req = arp([0xff; 6], CLIENT_MAC, 1, CLIENT, [0; 6], VIP_NAT);
    let out = d.input(&tagged(CLIENT_VLAN, &req));
    let want = tagged(
        CLIENT_VLAN,
        &arp(CLIENT_MAC, DIRECTOR_MAC, 2, VIP_NAT, CLIENT_MAC, CLIENT),
    );
    assert_eq!(out, vec![(0, want)]);
    assert_eq!(d.count(Counter::ArpReplied), 1);

    // The VIP is not on the server VLAN's segment, nor on the port's own.
    let on20 = arp([0xff; 6], NAT_REAL_MAC, 1, NAT_REAL, [0; 6], VIP_NAT);
    assert!(d.input(&tagged(SERVER_VLAN, &on20)).is_empty());
    let untagged = arp([0xff; 6], CLIENT_MAC, 1, [198, 18, 9, 2], [0; 6], VIP_NAT);
    assert!(d.input(&untagged).is_empty());
    assert_eq!(d.count(Counter::ArpReplied), 1);
    assert_eq!(d.count(Counter::DropArpOther), 2);

    // The VLAN's own address answers too; the port's untagged one on the
    // port only.
    let out = d.input(&tagged(
        SERVER_VLAN,
        &arp(
            [0xff; 6],
            NAT_REAL_MAC,
            1,
            NAT_REAL,
            [0; 6],
            [198, 18, 1, 1],
        ),
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[12..16], &[0x81, 0x00, 0x00, 20]);
    let out = d.input(&arp(
        [0xff; 6],
        CLIENT_MAC,
        1,
        [198, 18, 9, 2],
        [0; 6],
        [198, 18, 9, 1],
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[12..14], &[0x08, 0x06], "untagged reply");
}

#[test]
fn unknown_vlans_and_qinq_are_counted_and_dropped() {
    let mut d = Director::new();
    let req = arp([0xff; 6], CLIENT_MAC, 1, CLIENT, [0; 6], VIP_NAT);
    assert!(d.input(&tagged(30, &req)).is_empty());
    assert_eq!(d.count(Counter::DropUnknownVlan), 1);
    let mut qinq = tagged(CLIENT_VLAN, &req);
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    assert!(d.input(&qinq).is_empty());
    assert_eq!(d.count(Counter::DropVlan), 1);
    // Two 802.1Q tags: the classifier does not know the inner ethertype.
    assert!(d
        .input(&tagged(CLIENT_VLAN, &tagged(SERVER_VLAN, &req)))
        .is_empty());
    assert_eq!(
        d.stack
            .counters()
            .get_parse(crate::wire::ParseError::UnsupportedEtherType),
        1
    );
    assert_eq!(d.count(Counter::ArpReplied), 0);
    assert_eq!(d.count(Counter::Rx), 3, "each frame counted received once");
    // A priority tag (VLAN 0) is the port's own traffic.
    let prio = tagged(
        0,
        &arp(
            [0xff; 6],
            CLIENT_MAC,
            1,
            [198, 18, 9, 2],
            [0; 6],
            [198, 18, 9, 1],
        ),
    );
    assert_eq!(d.input(&prio).len(), 1);
    assert_eq!(d.count(Counter::ArpReplied), 1);
}

#[test]
fn nat_from_the_client_vlan_to_the_server_vlan_and_back() {
    let mut d = Director::new();
    let syn = tcp(
        CLIENT_VLAN,
        CLIENT_MAC,
        DIRECTOR_MAC,
        (CLIENT, 40000),
        (VIP_NAT, 80),
        64,
        false,
    );
    // The real server is not known yet: the director asks on VLAN 20.
    let out = d.input(&syn);
    let who_has = tagged(
        SERVER_VLAN,
        &arp(
            [0xff; 6],
            DIRECTOR_MAC,
            1,
            [198, 18, 1, 1],
            [0; 6],
            NAT_REAL,
        ),
    );
    assert_eq!(out, vec![(0, who_has)]);
    assert_eq!(d.count(Counter::Queued), 1);

    // Its reply on VLAN 20 releases the SYN, rewritten and tagged for 20.
    let is_at = tagged(
        SERVER_VLAN,
        &arp(
            DIRECTOR_MAC,
            NAT_REAL_MAC,
            2,
            NAT_REAL,
            DIRECTOR_MAC,
            [198, 18, 1, 1],
        ),
    );
    let out = d.input(&is_at);
    let want = tcp(
        SERVER_VLAN,
        DIRECTOR_MAC,
        NAT_REAL_MAC,
        (CLIENT, 40000),
        (NAT_REAL, 8080),
        63,
        false,
    );
    assert_eq!(out, vec![(0, want.clone())]);
    assert!(checksums_ok(&want));

    // The next packet of the flow goes straight out (neighbour known).
    assert_eq!(d.input(&syn), vec![(0, want)]);

    // The server's answer on VLAN 20 leaves from the VIP on VLAN 10.
    let syn_ack = tcp(
        SERVER_VLAN,
        NAT_REAL_MAC,
        DIRECTOR_MAC,
        (NAT_REAL, 8080),
        (CLIENT, 40000),
        64,
        true,
    );
    let want = tcp(
        CLIENT_VLAN,
        DIRECTOR_MAC,
        CLIENT_MAC,
        (VIP_NAT, 80),
        (CLIENT, 40000),
        63,
        true,
    );
    assert_eq!(d.input(&syn_ack), vec![(0, want)]);
    assert_eq!(d.count(Counter::DropUnknownVlan), 0);
}

#[test]
fn dr_from_the_client_vlan_to_a_real_server_on_the_server_vlan() {
    let mut d = Director::new();
    let is_at = tagged(
        SERVER_VLAN,
        &arp(
            DIRECTOR_MAC,
            DR_REAL_MAC,
            2,
            DR_REAL,
            DIRECTOR_MAC,
            [198, 18, 1, 1],
        ),
    );
    assert!(d.input(&is_at).is_empty());
    let syn = tcp(
        CLIENT_VLAN,
        CLIENT_MAC,
        DIRECTOR_MAC,
        (CLIENT, 40000),
        (VIP_DR, 80),
        64,
        false,
    );
    // The IP packet keeps its addresses and ports (its TTL is forwarded
    // down by one); the MACs and the tag change.
    let want = tcp(
        SERVER_VLAN,
        DIRECTOR_MAC,
        DR_REAL_MAC,
        (CLIENT, 40000),
        (VIP_DR, 80),
        63,
        false,
    );
    assert_eq!(d.input(&syn), vec![(0, want)]);
}

#[test]
fn an_untagged_syn_to_a_vip_is_balanced_as_on_any_interface() {
    // A VIP is a local address of the director, reached from any
    // interface as on Linux (no VLAN scoping): the same SYN untagged on the
    // port is balanced, and its real server asked for on VLAN 20.
    let mut d = Director::new();
    let mut syn = tcp(
        CLIENT_VLAN,
        CLIENT_MAC,
        DIRECTOR_MAC,
        (CLIENT, 40000),
        (VIP_NAT, 80),
        64,
        false,
    );
    syn.drain(12..16);
    let who_has = tagged(
        SERVER_VLAN,
        &arp(
            [0xff; 6],
            DIRECTOR_MAC,
            1,
            [198, 18, 1, 1],
            [0; 6],
            NAT_REAL,
        ),
    );
    assert_eq!(d.input(&syn), vec![(0, who_has)]);
}

#[test]
fn ndp_and_ping_to_a_vlans_own_addresses_are_answered_on_that_vlan() {
    let mut d = Director::new();
    let v6_director: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let v6_client: [u8; 16] = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let group = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1];
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .single_vlan(VlanId::try_new(CLIENT_VLAN).unwrap())
        .ipv6(v6_client, group, 255)
        .icmpv6_raw(135, 0, [0, 0, 0, 0])
        .write(&mut ns, &[&v6_director[..], &[1, 1], &CLIENT_MAC].concat())
        .unwrap();
    let mut na = Vec::new();
    PacketBuilder::ethernet2(DIRECTOR_MAC, CLIENT_MAC)
        .single_vlan(VlanId::try_new(CLIENT_VLAN).unwrap())
        .ipv6(v6_director, v6_client, 255)
        .icmpv6_raw(136, 0, [0x60, 0, 0, 0])
        .write(
            &mut na,
            &[&v6_director[..], &[2, 1], &DIRECTOR_MAC].concat(),
        )
        .unwrap();
    assert_eq!(d.input(&ns), vec![(0, na)]);
    assert_eq!(d.count(Counter::NdpAdvertised), 1);
    // The same solicitation on VLAN 20, where 2001:db8::1 is not ours.
    let mut on20 = ns.clone();
    on20[14..16].copy_from_slice(&SERVER_VLAN.to_be_bytes());
    assert!(d.input(&on20).is_empty());

    let ping = |vid: u16, dst: [u8; 4], kind_request: bool| {
        let mut v = Vec::new();
        let (s, t, sm, dm) = if kind_request {
            ([198, 18, 1, 50], dst, NAT_REAL_MAC, DIRECTOR_MAC)
        } else {
            (dst, [198, 18, 1, 50], DIRECTOR_MAC, NAT_REAL_MAC)
        };
        let b = PacketBuilder::ethernet2(sm, dm)
            .single_vlan(VlanId::try_new(vid).unwrap())
            .ipv4(s, t, 64);
        if kind_request {
            b.icmpv4_echo_request(7, 1).write(&mut v, b"ping").unwrap();
        } else {
            b.icmpv4_echo_reply(7, 1).write(&mut v, b"ping").unwrap();
        }
        v
    };
    // 198.18.1.50 is learned from nothing: the reply waits for ARP on VLAN
    // 20, which the server answers.
    let out = d.input(&ping(SERVER_VLAN, [198, 18, 1, 1], true));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[12..16], &[0x81, 0x00, 0x00, 20], "who-has on 20");
    let is_at = tagged(
        SERVER_VLAN,
        &arp(
            DIRECTOR_MAC,
            NAT_REAL_MAC,
            2,
            [198, 18, 1, 50],
            DIRECTOR_MAC,
            [198, 18, 1, 1],
        ),
    );
    assert_eq!(
        d.input(&is_at),
        vec![(0, ping(SERVER_VLAN, [198, 18, 1, 1], false))]
    );
}

#[test]
fn ipv6_nat_from_the_client_vlan_to_the_server_vlan_and_back() {
    let mut d = Director::new();
    let seg = |vid: u16, sm, dm, src: ([u8; 16], u16), dst: ([u8; 16], u16), hop, ack: bool| {
        let b = PacketBuilder::ethernet2(sm, dm)
            .single_vlan(VlanId::try_new(vid).unwrap())
            .ipv6(src.0, dst.0, hop)
            .tcp(src.1, dst.1, 1000, 64240);
        let b = if ack { b.syn().ack(1001) } else { b.syn() };
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    };
    let syn = seg(
        CLIENT_VLAN,
        CLIENT_MAC,
        DIRECTOR_MAC,
        (V6_CLIENT, 40000),
        (V6_VIP, 80),
        64,
        false,
    );
    let want = seg(
        SERVER_VLAN,
        DIRECTOR_MAC,
        NAT_REAL_MAC,
        (V6_CLIENT, 40000),
        (V6_REAL, 8080),
        63,
        false,
    );
    assert_eq!(d.input(&syn), vec![(0, want)]);
    let syn_ack = seg(
        SERVER_VLAN,
        NAT_REAL_MAC,
        DIRECTOR_MAC,
        (V6_REAL, 8080),
        (V6_CLIENT, 40000),
        64,
        true,
    );
    let want = seg(
        CLIENT_VLAN,
        DIRECTOR_MAC,
        CLIENT_MAC,
        (V6_VIP, 80),
        (V6_CLIENT, 40000),
        63,
        true,
    );
    assert_eq!(d.input(&syn_ack), vec![(0, want)]);
}
