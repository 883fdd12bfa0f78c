//! Packet builders and full-recompute checksum checks shared by the wire
//! and xmit tests. Packets are built with etherparse, an implementation
//! independent of ours.

use std::net::IpAddr;

use etherparse::PacketBuilder;

use super::checksum;
use super::ipv4::protocol;

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// L4 kinds the builders make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
    /// UDP with checksum 0 (IPv4 only: "no checksum").
    UdpNoCsum,
    IcmpEcho,
}

/// An Ethernet frame from `src:sport` to `dst:dport` (both the same
/// family), TTL 64, optionally VLAN-tagged.
pub fn frame(
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    sport: u16,
    dport: u16,
    vlan: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let mut out = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {{
            let ip = $ip;
            match l4 {
                L4::Tcp => ip
                    .tcp(sport, dport, 1000, 4096)
                    .ack(7)
                    .write(&mut out, payload),
                L4::Udp | L4::UdpNoCsum => ip.udp(sport, dport).write(&mut out, payload),
                L4::IcmpEcho => match (src, dst) {
                    (IpAddr::V4(_), _) => ip.icmpv4_echo_request(sport, 1).write(&mut out, payload),
                    _ => ip.icmpv6_echo_request(sport, 1).write(&mut out, payload),
                },
            }
            .expect("etherparse writes into a Vec")
        }};
    }
    match (src, dst, vlan) {
        (IpAddr::V4(s), IpAddr::V4(d), None) => finish!(eth.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V4(s), IpAddr::V4(d), Some(v)) => finish!(eth
            .single_vlan(etherparse::VlanId::try_new(v).expect("vlan id < 4095"))
            .ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d), None) => finish!(eth.ipv6(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d), Some(v)) => finish!(eth
            .single_vlan(etherparse::VlanId::try_new(v).expect("vlan id < 4095"))
            .ipv6(s.octets(), d.octets(), 64)),
        _ => panic!("builders take one family"),
    }
    if l4 == L4::UdpNoCsum {
        let m = super::parse_packet(&out).expect("built frame parses");
        let at = usize::from(m.l4_offset) + 6;
        out[at] = 0;
        out[at + 1] = 0;
    }
    out
}

/// Whether every checksum in the frame equals a full recompute: the IPv4
/// header checksum and the TCP/UDP/ICMP/ICMPv6 checksum. A UDP checksum
/// of 0 counts as "none" and passes, over IPv6 too (tunnel encapsulation
/// may send it, RFC 6935); tests that need a computed one assert it.
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(m) = super::parse_packet(frame) else {
        return false;
    };
    let l3 = &frame[usize::from(m.l3_offset)..m.l3_end()];
    let l4 = &frame[usize::from(m.l4_offset)..m.l3_end()];
    let ph = |proto: u8| match (m.src, m.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, proto, l4.len() as u16),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, proto, l4.len() as u32),
        _ => 0,
    };
    if m.is_ipv4() {
        let hl = usize::from(l3[0] & 0x0f) * 4;
        if !checksum::verify(0, &l3[..hl]) {
            return false;
        }
    }
    match m.protocol {
        protocol::TCP => checksum::verify(ph(protocol::TCP), l4),
        protocol::UDP => (l4[6] == 0 && l4[7] == 0) || checksum::verify(ph(protocol::UDP), l4),
        protocol::ICMP => checksum::verify(0, l4),
        protocol::ICMPV6 => checksum::verify(ph(protocol::ICMPV6), l4),
        protocol::SCTP => sctp_crc_ok(l4),
        _ => true,
    }
}

/// CRC32c by its bit-at-a-time definition (reflected polynomial
/// 0x82F63B78, initial value and final xor all ones): the oracle SCTP
/// checksums are checked against, independent of the crate the engine uses.
pub fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Whether an SCTP packet's stored CRC32c (little-endian, RFC 9260
/// appendix A) is the CRC32c of the packet with that field zero.
pub fn sctp_crc_ok(sctp: &[u8]) -> bool {
    if sctp.len() < 12 {
        return false;
    }
    let mut z = sctp.to_vec();
    z[8..12].fill(0);
    sctp[8..12] == crc32c_bitwise(&z).to_le_bytes()
}

/// SCTP chunks as the tests send them (RFC 9260 3.3; values arbitrary but
/// well-formed).
pub mod sctp_chunk {
    /// INIT: initiate tag 0x11223344, a_rwnd 65535, 10 streams each way,
    /// initial TSN 1.
    pub const INIT: &[u8] = &[
        1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 0, 0xff, 0xff, 0, 10, 0, 10, 0, 0, 0, 1,
    ];
    /// INIT ACK with a 4-byte state cookie parameter.
    pub const INIT_ACK: &[u8] = &[
        2, 0, 0, 28, 0x55, 0x66, 0x77, 0x88, 0, 0, 0xff, 0xff, 0, 10, 0, 10, 0, 0, 0, 1, 0, 7, 0,
        8, 0xc0, 0x0c, 0x1e, 0x00,
    ];
    /// COOKIE ECHO carrying the cookie back.
    pub const COOKIE_ECHO: &[u8] = &[10, 0, 0, 8, 0xc0, 0x0c, 0x1e, 0x00];
    pub const COOKIE_ACK: &[u8] = &[11, 0, 0, 4];
    /// DATA, TSN 1, stream 0, PPID 0, 4 bytes of user data.
    pub const DATA: &[u8] = &[
        0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b'u', b'v', b's', b'!',
    ];
    /// SHUTDOWN, cumulative TSN ack 1.
    pub const SHUTDOWN: &[u8] = &[7, 0, 0, 8, 0, 0, 0, 1];
    pub const SHUTDOWN_ACK: &[u8] = &[8, 0, 0, 4];
    pub const SHUTDOWN_COMPLETE: &[u8] = &[14, 0, 0, 4];
    pub const ABORT: &[u8] = &[6, 0, 0, 4];
}

/// An Ethernet frame carrying an SCTP packet from `src:sport` to
/// `dst:dport` with verification tag `vtag` and `chunks`, its CRC32c
/// computed by [`crc32c_bitwise`]; TTL 64.
pub fn sctp_frame(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    vtag: u32,
    chunks: &[&[u8]],
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for c in chunks {
        p.extend_from_slice(c);
    }
    let crc = crc32c_bitwise(&p);
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let mut out = Vec::new();
    let sctp = etherparse::IpNumber(protocol::SCTP);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .write(&mut out, sctp, &p),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .write(&mut out, sctp, &p),
        _ => panic!("builders take one family"),
    }
    .expect("etherparse writes into a Vec");
    out
}
