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
        _ => true,
    }
}
