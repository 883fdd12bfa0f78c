//! What goes to the kernel and what does not: [`classify`] on frames built
//! with etherparse, then the stack with a kernel interface on its port
//! (what it hands to [`Io::except`], what it still answers itself).

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::PacketBuilder;

use super::*;
use crate::buf::{PacketBuf, TestBuf};
use crate::net::{Counter, Io, L3Config, NetCounters, Stack, Stage, StageVerdict};
use crate::wire::ethernet::MacAddr;
use crate::wire::{checksum, parse_packet};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const DIRECTOR: [u8; 4] = [198, 18, 0, 1];
const OTHER_PORT_ADDR: [u8; 4] = [198, 18, 1, 1];
const PEER: [u8; 4] = [198, 18, 0, 2];
/// A VIP that is not one of the director's addresses.
const VIP: [u8; 4] = [198, 18, 0, 100];
const V6_DIRECTOR: &str = "2001:db8::1";
const V6_PEER: &str = "2001:db8::2";

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Port 0 (client side, with a kernel interface): 198.18.0.1/24 and
/// 2001:db8::1/64; port 1: 198.18.1.1/24, no kernel interface.
fn l3(kernel: bool) -> L3Config {
    L3Config {
        interfaces: vec![
            Interface {
                port: 0,
                mac: MacAddr(MAC),
                addrs: vec![
                    "198.18.0.1/24".parse().unwrap(),
                    "2001:db8::1/64".parse().unwrap(),
                ],
                mtu: 1500,
                kernel,
            },
            Interface {
                port: 1,
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                addrs: vec!["198.18.1.1/24".parse().unwrap()],
                mtu: 1500,
                kernel: false,
            },
        ],
        routes: vec![],
        neighbors: vec![],
        forwarding: Default::default(),
    }
}

/// The services: TCP 198.18.0.1:80 (a VIP equal to the director's
/// address), TCP 198.18.0.100:80, UDP 2001:db8::1:53.
fn serves(proto: u8, addr: IpAddr, port: u16) -> bool {
    let a = addr.to_string();
    matches!(
        (proto, a.as_str(), port),
        (protocol::TCP, "198.18.0.1", 80)
            | (protocol::TCP, "198.18.0.100", 80)
            | (protocol::UDP, "2001:db8::1", 53)
    )
}

fn eth(dst: [u8; 6]) -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(PEER_MAC, dst)
}

fn tcp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth(MAC)
        .ipv4(PEER, dst, 64)
        .tcp(40000, dport, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn udp4(dst: [u8; 4], dst_mac: [u8; 6], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth(dst_mac)
        .ipv4(PEER, dst, 64)
        .udp(40000, dport)
        .write(&mut v, b"x")
        .unwrap();
    v
}

fn tcp6(dst: &str, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth(MAC)
        .ipv6(v6(V6_PEER), v6(dst), 64)
        .tcp(40000, dport, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn udp6(dst: &str, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    eth(MAC)
        .ipv6(v6(V6_PEER), v6(dst), 64)
        .udp(40000, dport)
        .write(&mut v, b"x")
        .unwrap();
    v
}

fn echo4(dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    eth(MAC)
        .ipv4(PEER, dst, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut v, b"ping")
        .unwrap();
    v
}

/// VRRP (IP protocol 112) advert to 224.0.0.18.
fn vrrp() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, [0x01, 0, 0x5e, 0, 0, 0x12])
        .ipv4(PEER, [224, 0, 0, 18], 255)
        .write(
            &mut v,
            etherparse::IpNumber(112),
            &[0x31, 1, 100, 1, 0, 1, 0, 0, 198, 18, 0, 50],
        )
        .unwrap();
    v
}

/// ICMP port unreachable to the director, quoting a UDP/TCP packet it sent
/// from `src:sport`.
fn unreachable4(quoted_proto: u8, sport: u16) -> Vec<u8> {
    let mut quote = vec![
        0x45,
        0,
        0,
        28,
        0,
        1,
        0,
        0,
        64,
        quoted_proto,
        0,
        0,
        198,
        18,
        0,
        1,
        198,
        18,
        0,
        2,
    ];
    quote.extend_from_slice(&sport.to_be_bytes());
    quote.extend_from_slice(&[0x9c, 0x40, 0, 8, 0, 0]);
    let mut v = Vec::new();
    eth(MAC)
        .ipv4(PEER, DIRECTOR, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, &quote)
        .unwrap();
    v
}

fn class(frame: &[u8]) -> Destination {
    let cfg = l3(true);
    let meta = parse_packet(frame).unwrap();
    let local = |ip: IpAddr| cfg.interfaces.iter().any(|i| i.has_addr(ip));
    classify(&cfg.interfaces[0], &meta, frame, local, serves)
}

#[test]
fn the_directors_own_traffic_goes_to_the_kernel_and_service_traffic_never() {
    use Destination::{Kernel, Service, Uvsd};
    let cases: Vec<(&str, Vec<u8>, Destination)> = vec![
        ("SSH to the director", tcp4(DIRECTOR, 22), Kernel),
        ("BGP to the director", tcp4(DIRECTOR, 179), Kernel),
        (
            "the director's address on the other port",
            tcp4(OTHER_PORT_ADDR, 22),
            Kernel,
        ),
        (
            "TCP service on the director's address",
            tcp4(DIRECTOR, 80),
            Service,
        ),
        (
            "UDP to the port of a TCP service",
            udp4(DIRECTOR, MAC, 80),
            Kernel,
        ),
        ("ping to the director", echo4(DIRECTOR), Kernel),
        ("ping to a VIP", echo4(VIP), Uvsd),
        ("TCP to a VIP, no service on the port", tcp4(VIP, 22), Uvsd),
        ("TCP service on a VIP", tcp4(VIP, 80), Uvsd),
        ("to another host", tcp4(PEER, 22), Uvsd),
        ("VRRP to 224.0.0.18", vrrp(), Kernel),
        ("limited broadcast", udp4([255; 4], [0xff; 6], 67), Kernel),
        (
            "directed broadcast of the port's prefix",
            udp4([198, 18, 0, 255], [0xff; 6], 137),
            Kernel,
        ),
        ("BGP over IPv6", tcp6(V6_DIRECTOR, 179), Kernel),
        ("UDP service over IPv6", udp6(V6_DIRECTOR, 53), Service),
        ("IPv6 link-local unicast", tcp6("fe80::1", 22), Kernel),
        ("VRRP over IPv6 (ff02::12)", udp6("ff02::12", 9), Kernel),
        ("IPv6 to another host", tcp6(V6_PEER, 22), Uvsd),
        (
            "ICMP error quoting the director's own UDP",
            unreachable4(protocol::UDP, 5353),
            Kernel,
        ),
        (
            "ICMP error quoting a service's TCP",
            unreachable4(protocol::TCP, 80),
            Service,
        ),
    ];
    for (what, frame, want) in cases {
        assert_eq!(class(&frame), want, "{what}");
    }
}

#[test]
fn arp_is_not_classified_here() {
    let mut v = [
        &[0xff; 6][..],
        &PEER_MAC,
        &[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1],
    ]
    .concat();
    v.extend_from_slice(&[&PEER_MAC[..], &PEER, &[0; 6], &DIRECTOR].concat());
    assert_eq!(class(&v), Destination::Uvsd);
}

/// What the stack hands to the kernel, transmits, and shares.
#[derive(Default)]
struct Capture {
    sent: Vec<(u16, Vec<u8>)>,
    kernel: Vec<(u16, Vec<u8>)>,
}

impl Io<TestBuf> for Capture {
    fn alloc(&mut self) -> Option<TestBuf> {
        Some(TestBuf::new(&[]))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.sent.push((port, buf.data().to_vec()));
    }
    fn except(&mut self, port: u16, buf: TestBuf) {
        self.kernel.push((port, buf.data().to_vec()));
    }
}

/// A stage that knows the services of [`serves`] and passes everything
/// back (as the load balancer does with a TCP segment to a service that
/// has no connection... except that it drops those; passing them is the
/// worst case for the exception path).
struct PassAll;

impl Stage<TestBuf> for PassAll {
    fn process(
        &mut self,
        _: u16,
        buf: TestBuf,
        _: &PacketMeta,
        _: u64,
        _: &crate::net::RouteCache,
    ) -> StageVerdict<TestBuf> {
        StageVerdict::Pass { buf }
    }
    fn serves(&self, proto: u8, addr: IpAddr, port: u16) -> bool {
        serves(proto, addr, port)
    }
}

fn run(kernel: bool, port: u16, frames: &[Vec<u8>]) -> (Capture, Stack<TestBuf>) {
    let mut st = Stack::new(&l3(kernel), Arc::new(NetCounters::default())).unwrap();
    let mut io = Capture::default();
    for f in frames {
        st.input(port, TestBuf::new(f), 0, &mut io, &mut PassAll);
    }
    (io, st)
}

fn arp(op: u16, dst: [u8; 6], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    [
        &dst[..],
        &PEER_MAC,
        &[0x08, 0x06, 0, 1, 8, 0, 6, 4],
        &op.to_be_bytes(),
        &PEER_MAC,
        &PEER,
        &tha,
        &tpa,
    ]
    .concat()
}

#[test]
fn without_a_kernel_interface_nothing_is_excepted() {
    let frames = [tcp4(DIRECTOR, 22), echo4(DIRECTOR), vrrp()];
    let (io, st) = run(false, 0, &frames);
    assert!(io.kernel.is_empty());
    assert_eq!(io.sent.len(), 1, "uvsd answers the ping itself");
    assert_eq!(st.counters().get(Counter::IcmpEchoReplied), 1);
    assert_eq!(st.counters().get(Counter::ToKernel), 0);
}

#[test]
fn with_a_kernel_interface_the_kernel_gets_the_frames_unchanged() {
    let frames = [
        tcp4(DIRECTOR, 22),
        echo4(DIRECTOR),
        vrrp(),
        tcp6(V6_DIRECTOR, 179),
    ];
    let (io, st) = run(true, 0, &frames);
    let want: Vec<(u16, Vec<u8>)> = frames.iter().map(|f| (0, f.clone())).collect();
    assert_eq!(io.kernel, want);
    assert!(io.sent.is_empty(), "the kernel answers the ping, not uvsd");
    assert_eq!(st.counters().get(Counter::ToKernel), 4);
    assert_eq!(st.counters().get(Counter::IcmpEchoReplied), 0);
}

#[test]
fn service_traffic_passed_back_is_dropped_not_excepted() {
    let (io, st) = run(true, 0, &[tcp4(DIRECTOR, 80), udp6(V6_DIRECTOR, 53)]);
    assert!(io.kernel.is_empty() && io.sent.is_empty());
    assert_eq!(st.counters().get(Counter::DropLocalOther), 2);
}

#[test]
fn a_port_without_a_kernel_interface_keeps_its_traffic() {
    // Port 1 has no kernel interface: SSH to its address is dropped as before.
    let mut frame = tcp4(OTHER_PORT_ADDR, 22);
    frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    let (io, st) = run(true, 1, &[frame]);
    assert!(io.kernel.is_empty());
    assert_eq!(st.counters().get(Counter::DropLocalOther), 1);
}

#[test]
fn arp_requests_stay_uvsds_and_replies_reach_the_kernel_too() {
    let request = arp(1, [0xff; 6], [0; 6], DIRECTOR);
    let reply = arp(2, MAC, MAC, DIRECTOR);
    let (io, st) = run(true, 0, &[request, reply.clone()]);
    assert_eq!(io.sent.len(), 1, "uvsd answers the request");
    assert_eq!(io.kernel, vec![(0, reply)], "the kernel sees the reply");
    let n = st.neighbors().get(&IpAddr::from(PEER)).unwrap();
    assert_eq!(n.mac, MacAddr(PEER_MAC), "and uvsd learned it");
}

/// A neighbour solicitation from the peer for `target`, or an
/// advertisement of the peer's address when `advert`.
fn ndp(target: &str, advert: bool) -> Vec<u8> {
    let (ty, dst, opt) = if advert {
        (136u8, v6(V6_DIRECTOR), 2u8)
    } else {
        (135u8, v6("ff02::1:ff00:1"), 1u8)
    };
    let mut body = vec![ty, 0, 0, 0, if advert { 0x60 } else { 0 }, 0, 0, 0];
    body.extend_from_slice(&v6(target));
    body.extend_from_slice(&[opt, 1]);
    body.extend_from_slice(&PEER_MAC);
    let src = v6(V6_PEER);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 255]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let pseudo = checksum::pseudo_header_v6(src.into(), dst.into(), 58, body.len() as u32);
    let sum = checksum::finish(pseudo, &body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    let dst_mac = if advert {
        MAC
    } else {
        [0x33, 0x33, 0xff, 0, 0, 1]
    };
    [&dst_mac[..], &PEER_MAC, &[0x86, 0xdd], &ip, &body].concat()
}

#[test]
fn neighbour_discovery_for_the_kernels_link_local_reaches_it() {
    let for_director = ndp(V6_DIRECTOR, false);
    let for_link_local = ndp("fe80::1", false);
    let advert = ndp(V6_PEER, true);
    let (io, _) = run(
        true,
        0,
        &[for_director, for_link_local.clone(), advert.clone()],
    );
    assert_eq!(io.sent.len(), 1, "uvsd answers for its own address");
    assert_eq!(io.kernel, vec![(0, for_link_local), (0, advert)]);
}
