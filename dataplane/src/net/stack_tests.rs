//! The stack on byte buffers: requests built with etherparse (independent
//! of our wire code), replies compared byte for byte with hand-written
//! expectations or re-parsed with etherparse (checksums included).

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{PacketBuilder, SlicedPacket};

use super::*;
use crate::buf::TestBuf;

pub(super) const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(super) const SERVER_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];
const DIRECTOR: [u8; 4] = [198, 18, 0, 1];
const HOST: [u8; 4] = [198, 18, 0, 2];
const V6_DIRECTOR: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_HOST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

#[derive(Default)]
struct TestIo {
    sent: Vec<(u16, Vec<u8>)>,
    shared: Vec<(u16, Vec<u8>)>,
}

impl Io<TestBuf> for TestIo {
    fn alloc(&mut self) -> Option<TestBuf> {
        Some(TestBuf::new(&[]))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.sent.push((port, buf.data().to_vec()));
    }
    fn share(&mut self, port: u16, frame: &[u8]) {
        self.shared.push((port, frame.to_vec()));
    }
}

/// The director's two ports in the stack's unit tests: 0 = client side
/// (198.18.0.1/24, 2001:db8::1/64), 1 = server side (198.18.1.1/24).
pub(super) fn two_ports() -> Vec<Interface> {
    vec![
        Interface {
            port: 0,
            mac: MacAddr(DIRECTOR_MAC),
            addrs: vec![
                "198.18.0.1/24".parse().unwrap(),
                "2001:db8::1/64".parse().unwrap(),
            ],
            mtu: 1500,
            kernel: false,
        },
        Interface {
            port: 1,
            mac: MacAddr(SERVER_SIDE_MAC),
            addrs: vec!["198.18.1.1/24".parse().unwrap()],
            mtu: 1500,
            kernel: false,
        },
    ]
}

/// [`two_ports`] with 198.19.0.0/16 behind 198.18.1.2.
fn stack() -> Stack<TestBuf> {
    let cfg = L3Config {
        interfaces: two_ports(),
        routes: vec![(
            "198.19.0.0/16".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
        )],
        neighbors: vec![],
        forwarding: Default::default(),
    };
    Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap()
}

fn input(st: &mut Stack<TestBuf>, port: u16, frame: &[u8], now: u64) -> Vec<(u16, Vec<u8>)> {
    let mut io = TestIo::default();
    st.input(port, TestBuf::new(frame), now, &mut io, &mut NoStage);
    io.sent
}

fn arp_frame(
    dst: [u8; 6],
    src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    [
        &dst[..],
        &src,
        &[0x08, 0x06, 0, 1, 8, 0, 6, 4],
        &op.to_be_bytes(),
        &sha,
        &spa,
        &tha,
        &tpa,
    ]
    .concat()
}

fn echo_request(src: [u8; 4], dst: [u8; 4], dst_mac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, dst_mac)
        .ipv4(src, dst, 63)
        .icmpv4_echo_request(0x1234, 7);
    let mut v = Vec::new();
    b.write(&mut v, b"ping-data").unwrap();
    v
}

#[test]
fn arp_request_for_our_address_gets_the_exact_reply_and_teaches_us_the_sender() {
    let mut st = stack();
    let req = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], DIRECTOR);
    let sent = input(&mut st, 0, &req, 0);
    let want = arp_frame(
        HOST_MAC,
        DIRECTOR_MAC,
        2,
        DIRECTOR_MAC,
        DIRECTOR,
        HOST_MAC,
        HOST,
    );
    assert_eq!(sent, vec![(0, want)]);
    assert_eq!(st.counters().get(Counter::ArpReplied), 1);
    let n = st.neighbors().get(&IpAddr::from(HOST)).unwrap();
    assert_eq!((n.port, n.mac), (0, MacAddr(HOST_MAC)));
}

#[test]
fn arp_for_other_addresses_or_ports_is_counted_not_answered() {
    let mut st = stack();
    // Our server-side address asked on the client port: not on this port.
    let req = arp_frame(
        [0xff; 6],
        HOST_MAC,
        1,
        HOST_MAC,
        HOST,
        [0; 6],
        [198, 18, 1, 1],
    );
    assert!(input(&mut st, 0, &req, 0).is_empty());
    let req = arp_frame(
        [0xff; 6],
        HOST_MAC,
        1,
        HOST_MAC,
        HOST,
        [0; 6],
        [198, 18, 0, 77],
    );
    assert!(input(&mut st, 0, &req, 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropArpOther), 2);
    assert!(
        st.neighbors().is_empty(),
        "requests for others teach nothing"
    );
}

#[test]
fn off_link_arp_sender_is_answered_but_not_learned() {
    let mut st = stack();
    let req = arp_frame(
        [0xff; 6],
        GW_MAC,
        1,
        GW_MAC,
        [198, 19, 0, 5],
        [0; 6],
        [198, 18, 1, 1],
    );
    assert_eq!(input(&mut st, 1, &req, 0).len(), 1);
    assert!(st.neighbors().is_empty());
}

#[test]
fn unknown_vlan_and_truncated_frames_are_counted_by_reason() {
    let mut st = stack();
    let req = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], DIRECTOR);
    let tagged = [&req[..12], &[0x81, 0x00, 0x00, 0x05], &req[12..]].concat();
    assert!(input(&mut st, 0, &tagged, 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropUnknownVlan), 1);
    assert!(input(&mut st, 0, &req[..30], 0).is_empty());
    assert_eq!(
        st.counters().get_parse(crate::wire::ParseError::Truncated),
        1
    );
    assert_eq!(st.counters().get(Counter::DropMalformed), 1);
    assert_eq!(st.counters().get(Counter::ArpReplied), 0);
}

#[test]
fn echo_request_is_answered_to_the_learned_mac() {
    let mut st = stack();
    input(
        &mut st,
        0,
        &arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], DIRECTOR),
        0,
    );
    let sent = input(&mut st, 0, &echo_request(HOST, DIRECTOR, DIRECTOR_MAC), 1);
    let b = PacketBuilder::ethernet2(DIRECTOR_MAC, HOST_MAC)
        .ipv4(DIRECTOR, HOST, 64)
        .icmpv4_echo_reply(0x1234, 7);
    let mut want = Vec::new();
    b.write(&mut want, b"ping-data").unwrap();
    // etherparse leaves identification 0 and DF clear, as our request had.
    assert_eq!(sent, vec![(0, want)]);
    assert_eq!(st.counters().get(Counter::IcmpEchoReplied), 1);
}

#[test]
fn echo_with_bad_checksum_or_for_another_mac_is_dropped() {
    let mut st = stack();
    let mut f = echo_request(HOST, DIRECTOR, DIRECTOR_MAC);
    let last = f.len() - 1;
    f[last] ^= 0xff;
    assert!(input(&mut st, 0, &f, 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropChecksum), 1);
    let f = echo_request(HOST, DIRECTOR, [0x02, 0, 0, 0, 0, 0x99]);
    assert!(input(&mut st, 0, &f, 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropOtherMac), 1);
}

#[test]
fn reply_behind_a_gateway_waits_for_arp_then_leaves() {
    let mut st = stack();
    // 198.19.0.5 pings our server-side address through the gateway.
    let f = echo_request([198, 19, 0, 5], [198, 18, 1, 1], SERVER_SIDE_MAC);
    let sent = input(&mut st, 1, &f, 0);
    let who_has = arp_frame(
        [0xff; 6],
        SERVER_SIDE_MAC,
        1,
        SERVER_SIDE_MAC,
        [198, 18, 1, 1],
        [0; 6],
        [198, 18, 1, 2],
    );
    let mut who_has_padded = who_has.clone();
    who_has_padded.resize(60, 0);
    assert_eq!(
        sent,
        vec![(1, who_has_padded)],
        "an ARP request for the gateway"
    );
    assert_eq!(st.counters().get(Counter::Queued), 1);
    let reply = arp_frame(
        SERVER_SIDE_MAC,
        GW_MAC,
        2,
        GW_MAC,
        [198, 18, 1, 2],
        SERVER_SIDE_MAC,
        [198, 18, 1, 1],
    );
    let sent = input(&mut st, 1, &reply, 5);
    assert_eq!(sent.len(), 1, "the parked echo reply");
    let (port, f) = &sent[0];
    assert_eq!(*port, 1);
    assert_eq!(&f[0..6], &GW_MAC);
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("IPv4")
    };
    assert_eq!(ip.header().destination(), [198, 19, 0, 5]);
    assert_eq!(st.counters().get(Counter::Released), 1);
}

#[test]
fn unanswered_resolution_is_retried_then_dropped() {
    let mut st = stack();
    input(
        &mut st,
        1,
        &echo_request([198, 19, 0, 5], [198, 18, 1, 1], SERVER_SIDE_MAC),
        0,
    );
    let mut io = TestIo::default();
    for now in [1_000, 2_000, 3_000, 4_000] {
        st.tick(now, &mut io);
    }
    assert_eq!(io.sent.len(), 2, "two retries after the first request");
    assert_eq!(st.counters().get(Counter::DropUnresolved), 1);
    assert_eq!(st.neighbors().pending_len(), 0);
}

fn ndp(
    msg: u8,
    src: [u8; 16],
    dst: [u8; 16],
    dst_mac: [u8; 6],
    hop: u8,
    flags: u8,
    opt: u8,
) -> Vec<u8> {
    let body = [&V6_DIRECTOR[..], &[opt, 1], &HOST_MAC].concat();
    let b = PacketBuilder::ethernet2(HOST_MAC, dst_mac)
        .ipv6(src, dst, hop)
        .icmpv6_raw(msg, 0, [flags, 0, 0, 0]);
    let mut v = Vec::new();
    b.write(&mut v, &body).unwrap();
    v
}

#[test]
fn neighbor_solicitation_for_our_address_gets_an_advertisement() {
    let mut st = stack();
    let group = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1];
    let ns = ndp(135, V6_HOST, group, [0x33, 0x33, 0xff, 0, 0, 1], 255, 0, 1);
    let sent = input(&mut st, 0, &ns, 0);
    assert_eq!(sent.len(), 1);
    let (port, na) = &sent[0];
    assert_eq!(*port, 0);
    assert_eq!(&na[0..6], &HOST_MAC);
    assert_eq!(&na[6..12], &DIRECTOR_MAC);
    // Ours: solicited + override, target = our address, our MAC as option.
    let b = PacketBuilder::ethernet2(DIRECTOR_MAC, HOST_MAC)
        .ipv6(V6_DIRECTOR, V6_HOST, 255)
        .icmpv6_raw(136, 0, [0x60, 0, 0, 0]);
    let mut want = Vec::new();
    b.write(
        &mut want,
        &[&V6_DIRECTOR[..], &[2, 1], &DIRECTOR_MAC].concat(),
    )
    .unwrap();
    assert_eq!(na, &want);
    let n = st.neighbors().get(&IpAddr::from(V6_HOST)).unwrap();
    assert_eq!(
        n.mac,
        MacAddr(HOST_MAC),
        "learned from the source link-layer option"
    );
}

#[test]
fn ndp_from_off_link_hop_limit_is_dropped() {
    let mut st = stack();
    let ns = ndp(135, V6_HOST, V6_DIRECTOR, DIRECTOR_MAC, 64, 0, 1);
    assert!(input(&mut st, 0, &ns, 0).is_empty());
    assert_eq!(st.counters().get(Counter::DropNdpHopLimit), 1);
}

#[test]
fn icmpv6_echo_waits_for_ndp_and_advertisement_releases_it() {
    let mut st = stack();
    let b = PacketBuilder::ethernet2(HOST_MAC, DIRECTOR_MAC)
        .ipv6(V6_HOST, V6_DIRECTOR, 64)
        .icmpv6_echo_request(9, 3);
    let mut f = Vec::new();
    b.write(&mut f, b"v6-data").unwrap();
    let sent = input(&mut st, 0, &f, 0);
    assert_eq!(sent.len(), 1, "a solicitation");
    assert_eq!(&sent[0].1[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
    // The host's advertisement (target = its address, its MAC).
    let body = [&V6_HOST[..], &[2, 1], &HOST_MAC].concat();
    let b = PacketBuilder::ethernet2(HOST_MAC, DIRECTOR_MAC)
        .ipv6(V6_HOST, V6_DIRECTOR, 255)
        .icmpv6_raw(136, 0, [0x60, 0, 0, 0]);
    let mut na = Vec::new();
    b.write(&mut na, &body).unwrap();
    let sent = input(&mut st, 0, &na, 1);
    let b = PacketBuilder::ethernet2(DIRECTOR_MAC, HOST_MAC)
        .ipv6(V6_DIRECTOR, V6_HOST, 64)
        .icmpv6_echo_reply(9, 3);
    let mut want = Vec::new();
    b.write(&mut want, b"v6-data").unwrap();
    assert_eq!(sent, vec![(0, want)]);
}

/// A stage that routes everything but the director's own address.
struct RouteAll;

const VIP: [u8; 4] = [198, 18, 0, 100];

impl Stage<TestBuf> for RouteAll {
    fn process(
        &mut self,
        _p: u16,
        buf: TestBuf,
        meta: &crate::wire::PacketMeta,
        _n: u64,
        _r: &crate::net::RouteCache,
    ) -> StageVerdict<TestBuf> {
        if meta.dst == IpAddr::from(DIRECTOR) {
            return StageVerdict::Pass { buf };
        }
        StageVerdict::Route { buf, dst: meta.dst }
    }
}

#[test]
fn traffic_goes_through_the_stage_first() {
    let mut st = stack();
    let f = echo_request(HOST, [198, 19, 0, 9], DIRECTOR_MAC);
    assert!(input(&mut st, 0, &f, 0).is_empty());
    assert_eq!(
        st.counters().get(Counter::DropNotLocal),
        1,
        "NoStage passes, not ours: dropped"
    );
    let mut io = TestIo::default();
    st.input(0, TestBuf::new(&f), 0, &mut io, &mut RouteAll);
    assert_eq!(
        io.sent.len(),
        1,
        "an ARP request for the gateway of 198.19.0.0/16"
    );
    assert_eq!(io.sent[0].0, 1);
    // Passed back: the stack answers its own echo.
    let mut io = TestIo::default();
    st.input(
        0,
        TestBuf::new(&echo_request(HOST, DIRECTOR, DIRECTOR_MAC)),
        0,
        &mut io,
        &mut RouteAll,
    );
    assert_eq!(st.counters().get(Counter::IcmpEchoReplied), 1);
    assert_eq!(st.counters().get(Counter::Forwarded), 3);
}

#[test]
fn service_addresses_on_the_segment_are_answered_in_arp() {
    let mut st = stack();
    let req = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], VIP);
    assert!(
        input(&mut st, 0, &req, 0).is_empty(),
        "not a service address yet"
    );
    st.set_service_addrs(vec![IpAddr::from(VIP)]);
    let want = arp_frame(HOST_MAC, DIRECTOR_MAC, 2, DIRECTOR_MAC, VIP, HOST_MAC, HOST);
    assert_eq!(input(&mut st, 0, &req, 0), vec![(0, want)]);
    // Not on the server-side segment.
    let req = arp_frame([0xff; 6], GW_MAC, 1, GW_MAC, [198, 18, 1, 2], [0; 6], VIP);
    assert!(input(&mut st, 1, &req, 0).is_empty());
}

#[test]
fn neighbour_answers_are_shared_with_other_workers_and_requests_are_not() {
    let mut st = stack();
    let reply = arp_frame(
        SERVER_SIDE_MAC,
        GW_MAC,
        2,
        GW_MAC,
        [198, 18, 1, 2],
        SERVER_SIDE_MAC,
        [198, 18, 1, 1],
    );
    let mut io = TestIo::default();
    st.input(1, TestBuf::new(&reply), 0, &mut io, &mut NoStage);
    assert_eq!(io.shared, vec![(1, reply.clone())]);
    // What another worker does with the shared copy: learns, sends nothing.
    let mut other = stack();
    let mut io2 = TestIo::default();
    other.input(1, TestBuf::new(&io.shared[0].1), 0, &mut io2, &mut NoStage);
    assert!(io2.sent.is_empty());
    assert_eq!(
        other
            .neighbors()
            .get(&IpAddr::from([198, 18, 1, 2]))
            .unwrap()
            .mac,
        MacAddr(GW_MAC)
    );
    // A request for us is answered, not shared.
    let req = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], DIRECTOR);
    let mut io = TestIo::default();
    st.input(0, TestBuf::new(&req), 0, &mut io, &mut NoStage);
    assert!(io.shared.is_empty());
}

#[test]
fn cached_next_hops_follow_a_moved_neighbour_and_its_expiry() {
    let mut st = stack();
    let to_host = echo_request([198, 18, 1, 7], HOST, SERVER_SIDE_MAC);
    let route = |st: &mut Stack<TestBuf>, now: u64| {
        let mut io = TestIo::default();
        st.input(1, TestBuf::new(&to_host), now, &mut io, &mut RouteAll);
        io.sent
    };
    // The host answers our ARP request: from now on packets go to its MAC.
    let sent = route(&mut st, 0);
    assert_eq!(sent.len(), 1, "an ARP request: {sent:?}");
    let reply = arp_frame(
        DIRECTOR_MAC,
        HOST_MAC,
        2,
        HOST_MAC,
        HOST,
        DIRECTOR_MAC,
        DIRECTOR,
    );
    assert_eq!(input(&mut st, 0, &reply, 1).len(), 1, "the parked packet");
    for now in [2, 3] {
        let sent = route(&mut st, now);
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0].1[0..12], &[HOST_MAC, DIRECTOR_MAC].concat());
    }
    // The host moves to another MAC (an unsolicited ARP reply): the next
    // packet follows it, not the cached MAC.
    let moved = [0x02, 0, 0, 0, 0xaa, 0x09];
    let announce = arp_frame(DIRECTOR_MAC, moved, 2, moved, HOST, DIRECTOR_MAC, DIRECTOR);
    input(&mut st, 0, &announce, 4);
    let sent = route(&mut st, 5);
    assert_eq!(&sent[0].1[0..6], &moved);
    // Past the neighbour's reachable time the cache is not trusted either:
    // the packet waits for a new resolution.
    let later = 4 + neighbor::REACHABLE_MS + 1;
    let sent = route(&mut st, later);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].1[12..14], &[0x08, 0x06], "an ARP request again");
}

#[test]
fn a_reload_replaces_routes_and_static_neighbours() {
    let mut st = stack();
    let frame = || TestBuf::new(&[0u8; 34]);
    let dst: IpAddr = "198.20.0.5".parse().unwrap();
    // No route to 198.20.0.0/16 yet: nothing is sent.
    let mut io = TestIo::default();
    st.send_ip(frame(), dst, 0, &mut io);
    assert!(io.sent.is_empty());
    // Reload: 198.20.0.0/16 via 198.18.1.3, a static neighbour.
    let mut cfg = L3Config {
        interfaces: vec![Interface {
            port: 1,
            mac: MacAddr(SERVER_SIDE_MAC),
            addrs: vec!["198.18.1.1/24".parse().unwrap()],
            mtu: 1500,
            kernel: false,
        }],
        routes: vec![(
            "198.20.0.0/16".parse().unwrap(),
            "198.18.1.3".parse().unwrap(),
        )],
        neighbors: vec![("198.18.1.3".parse().unwrap(), MacAddr(GW_MAC))],
        forwarding: Default::default(),
    };
    st.reload(cfg.route_table().unwrap(), &cfg.neighbors);
    let mut io = TestIo::default();
    st.send_ip(frame(), dst, 1, &mut io);
    assert_eq!(io.sent.len(), 1);
    assert_eq!(io.sent[0].0, 1);
    assert_eq!(&io.sent[0].1[..6], &GW_MAC, "sent to the static neighbour");
    // The old route is gone and so is the static entry when a reload drops
    // them: the next packet is not sent to the old MAC.
    cfg.neighbors.clear();
    cfg.routes.clear();
    st.reload(cfg.route_table().unwrap(), &cfg.neighbors);
    let mut io = TestIo::default();
    st.send_ip(frame(), dst, 2, &mut io);
    assert!(io.sent.is_empty(), "{:?}", io.sent);
    assert!(st.neighbors().get(&"198.18.1.3".parse().unwrap()).is_none());
}

/// The client-side VIP as a floating address (VRRP), and a second one on
/// the server side that is no service's (the real servers' gateway).
fn floating_stack() -> Stack<TestBuf> {
    let mut st = stack();
    st.set_service_addrs(vec![IpAddr::from(VIP)]);
    st.set_floating(vec![
        (0, IpAddr::from(VIP)),
        (1, IpAddr::from([198, 18, 1, 254])),
    ]);
    st
}

#[test]
fn a_floating_vip_is_answered_and_served_only_while_held() {
    let mut st = floating_stack();
    let req = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], VIP);
    assert!(
        input(&mut st, 0, &req, 0).is_empty(),
        "a BACKUP does not answer for the VIP, though a service uses it"
    );
    let to_vip = echo_request(HOST, VIP, DIRECTOR_MAC);
    let mut io = TestIo::default();
    st.input(0, TestBuf::new(&to_vip), 0, &mut io, &mut RouteAll);
    assert!(io.sent.is_empty(), "nor serves it");
    assert_eq!(st.counters().get(Counter::DropStandby), 1);
    assert_eq!(st.counters().get(Counter::Forwarded), 0);

    // keepalived made this director MASTER: the first worker announces.
    let mut io = TestIo::default();
    st.set_held(&[IpAddr::from(VIP)], true, &mut io);
    let garp = arp_frame([0xff; 6], DIRECTOR_MAC, 1, DIRECTOR_MAC, VIP, [0; 6], VIP);
    let mut padded = garp.clone();
    padded.resize(60, 0);
    assert_eq!(io.sent, vec![(0, padded)], "a gratuitous ARP on port 0");
    assert_eq!(st.counters().get(Counter::Announced), 1);
    let want = arp_frame(HOST_MAC, DIRECTOR_MAC, 2, DIRECTOR_MAC, VIP, HOST_MAC, HOST);
    assert_eq!(input(&mut st, 0, &req, 0), vec![(0, want)]);
    let mut io = TestIo::default();
    st.input(0, TestBuf::new(&to_vip), 0, &mut io, &mut RouteAll);
    assert_eq!(st.counters().get(Counter::Forwarded), 1, "served");

    // BACKUP again (the same set published twice announces nothing).
    let mut io = TestIo::default();
    st.set_held(&[IpAddr::from(VIP)], true, &mut io);
    assert!(io.sent.is_empty());
    st.set_held(&[], true, &mut io);
    assert!(io.sent.is_empty());
    assert!(input(&mut st, 0, &req, 0).is_empty());
}

#[test]
fn a_held_floating_gateway_is_answered_on_its_port_only() {
    let mut st = floating_stack();
    let gw = [198, 18, 1, 254];
    let req = arp_frame([0xff; 6], GW_MAC, 1, GW_MAC, [198, 18, 1, 2], [0; 6], gw);
    assert!(input(&mut st, 1, &req, 0).is_empty());
    let mut io = TestIo::default();
    // Another worker: takes it without announcing.
    st.set_held(&[IpAddr::from(gw)], false, &mut io);
    assert!(io.sent.is_empty());
    let want = arp_frame(
        GW_MAC,
        SERVER_SIDE_MAC,
        2,
        SERVER_SIDE_MAC,
        gw,
        GW_MAC,
        [198, 18, 1, 2],
    );
    assert_eq!(input(&mut st, 1, &req, 0), vec![(1, want)]);
    let other_side = arp_frame([0xff; 6], HOST_MAC, 1, HOST_MAC, HOST, [0; 6], gw);
    assert!(input(&mut st, 0, &other_side, 0).is_empty());
}

#[test]
fn taking_an_ipv6_floating_address_sends_an_unsolicited_advertisement() {
    let mut st = stack();
    let vip6: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
    st.set_floating(vec![(0, IpAddr::V6(vip6))]);
    let mut io = TestIo::default();
    st.set_held(&[IpAddr::V6(vip6)], true, &mut io);
    assert_eq!(io.sent.len(), 1);
    let (port, f) = &io.sent[0];
    assert_eq!(*port, 0);
    assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "to all nodes");
    assert_eq!(&f[6..12], &DIRECTOR_MAC);
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6: {p:?}")
    };
    assert_eq!(ip.header().source_addr(), vip6);
    assert_eq!(
        ip.header().destination_addr(),
        "ff02::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(ip.header().hop_limit(), 255);
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6: {p:?}")
    };
    assert_eq!(icmp.type_u8(), 136);
    let body = icmp.slice();
    assert_eq!(body[4], 0x20, "override, not solicited, not router");
    assert_eq!(&body[8..24], &vip6.octets());
    assert_eq!(
        &body[24..32],
        &[2, 1, 2, 0, 0, 0, 0, 1],
        "target link-layer option"
    );
    let sum = icmp
        .header()
        .icmp_type
        .calc_checksum(
            vip6.octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            icmp.payload(),
        )
        .unwrap();
    assert_eq!(sum, icmp.checksum());
}
