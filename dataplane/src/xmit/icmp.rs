//! ICMP and the director (ipvs.md 4.9, 5.4, 5.5).
//!
//! Two jobs:
//! * translating ICMP errors that quote a packet of a NAT connection, so
//!   the real server and the client each see an error about the packet
//!   they sent: [`nat_icmp_inbound`] (client side -> real server) and
//!   [`nat_icmp_outbound`] (real server -> client);
//! * building the errors the director sends itself, in place in the
//!   offending packet's buffer: [`icmp_error_reply`] for time exceeded
//!   (TTL <= 1), fragmentation needed / packet too big (5.4) and port
//!   unreachable when a service has no destination (4.9).
//!
//! A third job is the error about one of the director's own IPv4 tunnel
//! packets (5.5): [`parse_tunnel_error`] finds the client's packet inside
//! the quoted tunnel packet, [`tunnel_error_to_client`] re-emits the error
//! to the client about it (for fragmentation needed with the MTU reduced
//! by the tunnel overhead, and only if the client packet had DF).
//!
//! Translation rewrites the outer address, the quoted address and the
//! quoted port, recomputes the quoted IPv4 header checksum and the whole
//! ICMP checksum, and, like IPVS, leaves the quoted L4 checksum alone (it
//! is often not even within the quote). DR and tunnel connections forward
//! ICMP unchanged with their own transmitter; that is the caller's choice.

use std::net::IpAddr;

use super::{check_forwardable, decrement_ttl, same_family, XmitError};
use crate::buf::PacketBuf;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{
    checksum, icmp, icmpv6, ipv4, ipv6, set16, Fragment, IcmpQuote, PacketMeta, ParseError, L3,
};

/// An error the director sends about a packet it will not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// IPv4: destination unreachable / fragmentation needed (3/4) with the
    /// next-hop MTU; IPv6: packet too big (2/0) with the MTU.
    TooBig { mtu: u16 },
    /// IPv4: time exceeded in transit (11/0); IPv6: hop limit exceeded
    /// (3/0).
    TimeExceeded,
    /// IPv4: port unreachable (3/3); IPv6: port unreachable (1/4).
    PortUnreachable,
    /// No route to the destination, from a router: IPv4 network
    /// unreachable (3/0); IPv6 no route to destination (1/0).
    NoRoute,
}

/// Most of the offending packet an error quotes: the error stays within
/// 576 bytes over IPv4 (RFC 1812 4.3.2.3) and 1280 over IPv6 (RFC 4443
/// 2.4(c)).
const QUOTE_MAX_V4: usize = 576 - ipv4::HEADER_LEN - icmp::HEADER_LEN;
const QUOTE_MAX_V6: usize = 1280 - ipv6::HEADER_LEN - icmpv6::HEADER_LEN;
/// TTL / hop limit of errors the director originates.
const ERROR_TTL: u8 = 64;
/// IPv4 TOS of ICMP errors: precedence "internetwork control", as Linux.
const ERROR_TOS: u8 = 0xc0;

fn answerable_source(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => !(v.is_unspecified() || v.is_broadcast() || v.is_multicast()),
        IpAddr::V6(v) => !(v.is_unspecified() || v.is_multicast()),
    }
}

/// Turns the offending packet in `buf` into an ICMP error of `kind` from
/// `src` back to the packet's source. The Ethernet header is kept with the
/// MAC addresses swapped (the reply goes back to the hop it came from; the
/// caller may set others). The quote is the original IP packet, cut to
/// keep the error within 576 (IPv4) / 1280 (IPv6) bytes.
///
/// Refused: ICMP errors (any ICMP for `TooBig`), later fragments, sources
/// that may not be answered, `src` of the other family.
pub fn icmp_error_reply(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    kind: IcmpErrorKind,
    src: IpAddr,
) -> Result<(), XmitError> {
    if meta.l3 == L3::Arp {
        return Err(XmitError::NotIp);
    }
    if !same_family(meta, &src) {
        return Err(XmitError::FamilyMismatch);
    }
    if meta.is_icmp_error() || (matches!(kind, IcmpErrorKind::TooBig { .. }) && meta.is_icmp()) {
        return Err(XmitError::IcmpInReplyToIcmp);
    }
    if meta.fragment == Fragment::Later {
        return Err(XmitError::Fragment);
    }
    if !answerable_source(&meta.src) {
        return Err(XmitError::BadSource);
    }
    if buf.len() < meta.l3_end() {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let v6 = meta.l3 == L3::Ipv6;
    let (ip_hl, quote_max) = if v6 {
        (ipv6::HEADER_LEN, QUOTE_MAX_V6)
    } else {
        (ipv4::HEADER_LEN, QUOTE_MAX_V4)
    };
    let hdr = ip_hl + icmp::HEADER_LEN;
    let l2 = usize::from(meta.l3_offset);
    let quote_len = usize::from(meta.ip_len).min(quote_max);
    if !buf.prepend(hdr) {
        return Err(XmitError::NoHeadroom);
    }
    let excess = buf.len() - (l2 + hdr + quote_len);
    buf.trim(excess);
    let data = buf.data_mut();
    data.copy_within(hdr..hdr + l2, 0);
    let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
    let (from, to) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(to);
    eth.set_dst_addr(from);

    let msg_len = icmp::HEADER_LEN + quote_len;
    let (ty, code, rest) = match (v6, kind) {
        (false, IcmpErrorKind::TooBig { mtu }) => (
            icmp::kind::DEST_UNREACHABLE,
            icmp::code::FRAG_NEEDED,
            u32::from(mtu),
        ),
        (false, IcmpErrorKind::TimeExceeded) => {
            (icmp::kind::TIME_EXCEEDED, icmp::code::TTL_EXCEEDED, 0)
        }
        (false, IcmpErrorKind::PortUnreachable) => (
            icmp::kind::DEST_UNREACHABLE,
            icmp::code::PORT_UNREACHABLE,
            0,
        ),
        (false, IcmpErrorKind::NoRoute) => {
            (icmp::kind::DEST_UNREACHABLE, icmp::code::NET_UNREACHABLE, 0)
        }
        (true, IcmpErrorKind::NoRoute) => {
            (icmpv6::kind::DEST_UNREACHABLE, icmpv6::CODE_NO_ROUTE, 0)
        }
        (true, IcmpErrorKind::TooBig { mtu }) => (icmpv6::kind::PACKET_TOO_BIG, 0, u32::from(mtu)),
        (true, IcmpErrorKind::TimeExceeded) => (icmpv6::kind::TIME_EXCEEDED, 0, 0),
        (true, IcmpErrorKind::PortUnreachable) => (
            icmpv6::kind::DEST_UNREACHABLE,
            icmpv6::CODE_PORT_UNREACHABLE,
            0,
        ),
    };
    let l4 = l2 + ip_hl;
    let msg = &mut data[l4..l4 + msg_len];
    msg[0] = ty;
    msg[1] = code;
    msg[2..4].fill(0);
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    match (src, meta.src) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            Ipv4Repr {
                src: s,
                dst: d,
                protocol: protocol::ICMP,
                payload_len: msg_len as u16,
                ttl: ERROR_TTL,
                dscp_ecn: ERROR_TOS,
                ident: 0,
                dont_frag: false,
            }
            .emit(&mut data[l2..])?;
            icmp::Icmpv4Packet::new_unchecked(&mut data[l4..l4 + msg_len]).fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ipv6Repr {
                src: s,
                dst: d,
                next_header: protocol::ICMPV6,
                payload_len: msg_len as u16,
                hop_limit: ERROR_TTL,
                traffic_class: 0,
            }
            .emit(&mut data[l2..])?;
            icmpv6::Icmpv6Packet::new_unchecked(&mut data[l4..l4 + msg_len]).fill_checksum(s, d);
        }
        _ => return Err(XmitError::FamilyMismatch), // checked above
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// ICMP error from the client side about a packet the director sent the
/// client (VIP:vport -> client) of a NAT connection: the outer destination
/// becomes the real server, the quoted source becomes
/// `real_addr:real_port`; TTL decremented; forwarded to the real server.
/// The ICMP checksum is verified first ([`XmitError::BadChecksum`]).
pub fn nat_icmp_inbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    quote: &IcmpQuote,
    real_addr: IpAddr,
    real_port: u16,
) -> Result<(), XmitError> {
    translate(
        buf.data_mut(),
        meta,
        quote,
        Side::Dst,
        Side::Src,
        real_addr,
        real_port,
    )
}

/// ICMP error from a real server about a packet the director sent it
/// (client -> real server) of a NAT connection: the outer source becomes
/// the VIP, the quoted destination becomes `virt_addr:virt_port`; TTL
/// decremented; forwarded to the client.
pub fn nat_icmp_outbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    quote: &IcmpQuote,
    virt_addr: IpAddr,
    virt_port: u16,
) -> Result<(), XmitError> {
    translate(
        buf.data_mut(),
        meta,
        quote,
        Side::Src,
        Side::Dst,
        virt_addr,
        virt_port,
    )
}

fn addr_range(l3: usize, v6: bool, side: Side) -> std::ops::Range<usize> {
    let (at, len) = match (v6, side) {
        (false, Side::Src) => (12, 4),
        (false, Side::Dst) => (16, 4),
        (true, Side::Src) => (8, 16),
        (true, Side::Dst) => (24, 16),
    };
    l3 + at..l3 + at + len
}

pub(super) fn icmp_checksum_ok(data: &[u8], meta: &PacketMeta) -> bool {
    let msg = &data[usize::from(meta.l4_offset)..meta.l3_end()];
    match (meta.src, meta.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => checksum::verify(0, msg),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::verify(checksum::pseudo_header_v6(s, d, 58, msg.len() as u32), msg)
        }
        _ => false,
    }
}

fn translate(
    data: &mut [u8],
    meta: &PacketMeta,
    quote: &IcmpQuote,
    outer: Side,
    quoted: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), XmitError> {
    check_forwardable(data, meta)?;
    if !same_family(meta, &addr) {
        return Err(XmitError::FamilyMismatch);
    }
    if !meta.is_icmp_error() {
        return Err(XmitError::UnsupportedProtocol);
    }
    let end = meta.l3_end();
    let q3 = usize::from(quote.l3_offset);
    let q4 = usize::from(quote.l4_offset);
    let ported = matches!(
        quote.protocol,
        protocol::TCP | protocol::UDP | protocol::SCTP
    );
    let v6 = meta.l3 == L3::Ipv6;
    let min_quote = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    if q3 < usize::from(meta.l4_offset) + icmp::HEADER_LEN
        || q3 + min_quote > end
        || q4 < q3 + min_quote
        || (ported && q4 + 4 > end)
    {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    if !icmp_checksum_ok(data, meta) {
        return Err(XmitError::BadChecksum);
    }
    let new = match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    };
    let n = if v6 { 16 } else { 4 };
    let l3 = usize::from(meta.l3_offset);

    decrement_ttl(data, meta);
    // Outer header.
    if v6 {
        data[addr_range(l3, true, outer)].copy_from_slice(&new[..n]);
    } else {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..end]);
        match (outer, addr) {
            (Side::Src, IpAddr::V4(a)) => ip.update_src_addr(a),
            (Side::Dst, IpAddr::V4(a)) => ip.update_dst_addr(a),
            _ => {}
        }
    }
    // Quoted header and port.
    data[addr_range(q3, v6, quoted)].copy_from_slice(&new[..n]);
    if !v6 {
        Ipv4Packet::new_unchecked(&mut data[q3..end]).fill_checksum();
    }
    if ported {
        set16(data, q4 + if quoted == Side::Src { 0 } else { 2 }, port);
    }
    fill_icmp_checksum(data, meta, end);
    Ok(())
}

/// Writes the ICMP or ICMPv6 checksum of a rewritten error over the whole
/// message, up to `end` (and the pseudo-header for v6).
pub(super) fn fill_icmp_checksum(data: &mut [u8], meta: &PacketMeta, end: usize) {
    let (l3, l4) = (usize::from(meta.l3_offset), usize::from(meta.l4_offset));
    match meta.l3 {
        L3::Ipv6 => {
            let ip = crate::wire::ipv6::Ipv6Packet::new_unchecked(&data[l3..end]);
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            icmpv6::Icmpv6Packet::new_unchecked(&mut data[l4..end]).fill_checksum(s, d);
        }
        _ => icmp::Icmpv4Packet::new_unchecked(&mut data[l4..end]).fill_checksum(),
    }
}

/// The client's packet inside an ICMP error about one of the director's
/// own tunnel packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelErrorQuote {
    /// The client's original packet (offsets from the frame start).
    pub inner: IcmpQuote,
    /// Bytes of outer IP header and tunnel header in front of it.
    pub overhead: u16,
    /// DF of the client's packet (the quoted inner header): whether the
    /// client does PMTU discovery, as `ip_vs_in_icmp` checks it.
    pub client_df: bool,
}

/// Finds the client's packet quoted inside an ICMPv4 error about a tunnel
/// packet the director sent to a destination with tunnel configuration
/// `cfg` (IPIP: protocol 4; GUE: UDP to `cfg.port`; GRE: protocol 47).
/// Only IPv4 in IPv4, as IPVS.
pub fn parse_tunnel_error(
    frame: &[u8],
    meta: &PacketMeta,
    quote: &IcmpQuote,
    cfg: &crate::model::TunnelConfig,
) -> Result<TunnelErrorQuote, XmitError> {
    use crate::model::TunnelType;
    if meta.l3 != L3::Ipv4 || !meta.is_icmp_error() {
        return Err(XmitError::NotTunnel);
    }
    let end = meta.l3_end().min(frame.len());
    let q3 = usize::from(quote.l3_offset);
    let q4 = usize::from(quote.l4_offset);
    // The quoted outer header must be whole.
    Ipv4Packet::new_quoted(frame.get(q3..end).ok_or(ParseError::Truncated)?)?;
    let l4 = frame.get(q4..end).ok_or(ParseError::Truncated)?;
    let inner_rel = match (cfg.kind, quote.protocol) {
        (TunnelType::Ipip, protocol::IPIP) => 0,
        (TunnelType::Gre, protocol::GRE) => {
            let g = crate::wire::gre::GrePacket::new_checked(l4)?;
            if g.protocol() != crate::wire::ethernet::ethertype::IPV4 {
                return Err(XmitError::NotTunnel);
            }
            g.header_len()
        }
        (TunnelType::Gue, protocol::UDP) if quote.dport == cfg.port => {
            let g = crate::wire::gue::GuePacket::new_checked(
                l4.get(crate::wire::udp::HEADER_LEN..)
                    .ok_or(ParseError::Truncated)?,
            )?;
            if g.protocol() != protocol::IPIP {
                return Err(XmitError::NotTunnel);
            }
            crate::wire::udp::HEADER_LEN + g.header_len()
        }
        _ => return Err(XmitError::NotTunnel),
    };
    let inner_at = q4 + inner_rel;
    let inner = Ipv4Packet::new_quoted(frame.get(inner_at..end).ok_or(ParseError::Truncated)?)?;
    let ihl = inner.header_len();
    let ports = frame
        .get(inner_at + ihl..inner_at + ihl + 4)
        .ok_or(ParseError::Truncated)?;
    Ok(TunnelErrorQuote {
        inner: IcmpQuote {
            l3_offset: inner_at as u16,
            l4_offset: (inner_at + ihl) as u16,
            src: IpAddr::V4(inner.src_addr()),
            dst: IpAddr::V4(inner.dst_addr()),
            protocol: inner.protocol(),
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
        },
        overhead: (inner_at - q3) as u16,
        client_df: inner.dont_frag(),
    })
}

/// Re-emits an ICMP error about the director's own tunnel packet to the
/// client, in place: the buffer becomes L2 + a new ICMPv4 error from `src`
/// to the client, with the same type and code, quoting the client's packet
/// (as much as was quoted). For fragmentation needed the MTU is
/// `path_mtu` (the director's updated PMTU to the real server; 0 = the
/// reported one) minus the tunnel overhead, and nothing is sent
/// ([`XmitError::NoPmtud`]) if the client packet had no DF. The caller
/// sets the MAC addresses for the route to the client.
pub fn tunnel_error_to_client(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    tq: &TunnelErrorQuote,
    path_mtu: u16,
    src: IpAddr,
) -> Result<(), XmitError> {
    let IpAddr::V4(src4) = src else {
        return Err(XmitError::FamilyMismatch);
    };
    let IpAddr::V4(client) = tq.inner.src else {
        return Err(XmitError::FamilyMismatch);
    };
    if meta.l3 != L3::Ipv4 || !meta.is_icmp_error() {
        return Err(XmitError::NotTunnel);
    }
    if !answerable_source(&tq.inner.src) {
        return Err(XmitError::BadSource);
    }
    let end = meta.l3_end();
    let l2 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let inner_at = usize::from(tq.inner.l3_offset);
    let hdr = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    if buf.len() < end || inner_at > end || inner_at < l2 + hdr || l4 + icmp::HEADER_LEN > end {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let data = buf.data();
    let rest = if meta.icmp_type == icmp::kind::DEST_UNREACHABLE
        && meta.icmp_code == icmp::code::FRAG_NEEDED
    {
        if !tq.client_df {
            return Err(XmitError::NoPmtud);
        }
        let reported = crate::wire::get16(data, l4 + 6);
        let mut mtu = if path_mtu != 0 { path_mtu } else { reported };
        if usize::from(mtu) > 68 + usize::from(tq.overhead) {
            mtu -= tq.overhead;
        }
        u32::from(mtu)
    } else {
        u32::from_be_bytes([data[l4 + 4], data[l4 + 5], data[l4 + 6], data[l4 + 7]])
    };
    let quote_len = (end - inner_at).min(QUOTE_MAX_V4);
    let (ty, code) = (meta.icmp_type, meta.icmp_code);
    // Drop what is in front of the new headers, then move L2 up to them.
    let cut = inner_at - hdr - l2;
    let tail = buf.len() - (inner_at + quote_len);
    let data = buf.data_mut();
    data.copy_within(0..l2, cut);
    buf.adj(cut);
    buf.trim(tail);
    let data = buf.data_mut();
    let msg_len = icmp::HEADER_LEN + quote_len;
    Ipv4Repr {
        src: src4,
        dst: client,
        protocol: protocol::ICMP,
        payload_len: msg_len as u16,
        ttl: ERROR_TTL,
        dscp_ecn: ERROR_TOS,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut data[l2..])?;
    let m = &mut data[l2 + ipv4::HEADER_LEN..l2 + hdr + quote_len];
    m[0] = ty;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    icmp::Icmpv4Packet::new_unchecked(m).fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::testutil::{checksums_ok, frame, L4, MAC_A, MAC_B};
    use crate::wire::{parse_icmp_quote, parse_packet};
    use crate::xmit::nat::nat_outbound;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn time_exceeded_v4_quotes_the_packet_and_goes_back_to_the_sender() {
        let f = frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::Tcp,
            40000,
            80,
            None,
            b"x",
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        icmp_error_reply(&mut b, &m, IcmpErrorKind::TimeExceeded, ip("198.18.0.1")).unwrap();
        let d = b.data();
        assert_eq!(d[0..6], MAC_A, "back to the hop it came from");
        assert_eq!(d[6..12], MAC_B);
        let e = parse_packet(d).unwrap();
        assert_eq!((e.src, e.dst), (ip("198.18.0.1"), ip("198.18.1.10")));
        assert_eq!((e.protocol, e.icmp_type, e.icmp_code), (1, 11, 0));
        assert_eq!(e.ttl, 64);
        assert_eq!(d[14 + 28..], f[14..], "whole original IP packet quoted");
        assert!(checksums_ok(d));
        let q = parse_icmp_quote(d, &e).unwrap();
        assert_eq!((q.sport, q.dport), (40000, 80));
    }

    #[test]
    fn frag_needed_carries_the_mtu_in_bytes_6_and_7() {
        let f = frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::Udp,
            5,
            53,
            None,
            &[1; 1400],
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        icmp_error_reply(
            &mut b,
            &m,
            IcmpErrorKind::TooBig { mtu: 1380 },
            ip("198.18.0.100"),
        )
        .unwrap();
        let d = b.data();
        assert_eq!(d.len(), 14 + 576, "error capped at 576 bytes");
        assert_eq!(d[34..36], [3, 4]);
        assert_eq!(d[38..42], [0, 0, 0x05, 0x64]);
        assert!(checksums_ok(d));
    }

    #[test]
    fn packet_too_big_v6_has_32_bit_mtu_and_1280_byte_cap() {
        let f = frame(
            ip("2001:db8:1::10"),
            ip("2001:db8::100"),
            L4::Tcp,
            40000,
            443,
            Some(9),
            &[7; 1400],
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        icmp_error_reply(
            &mut b,
            &m,
            IcmpErrorKind::TooBig { mtu: 1280 },
            ip("2001:db8::100"),
        )
        .unwrap();
        let d = b.data();
        assert_eq!(d.len(), 18 + 1280);
        let e = parse_packet(d).unwrap();
        assert_eq!((e.protocol, e.icmp_type, e.icmp_code), (58, 2, 0));
        assert_eq!(d[18 + 44..18 + 48], 1280u32.to_be_bytes());
        assert!(checksums_ok(d));
    }

    #[test]
    fn port_unreachable_codes_per_family() {
        for (c, s, ty, code) in [
            ("198.18.1.10", "198.18.0.100", 3, 3),
            ("2001:db8:1::10", "2001:db8::100", 1, 4),
        ] {
            let f = frame(ip(c), ip(s), L4::Tcp, 1, 80, None, b"");
            let m = parse_packet(&f).unwrap();
            let mut b = TestBuf::new(&f);
            icmp_error_reply(&mut b, &m, IcmpErrorKind::PortUnreachable, ip(s)).unwrap();
            let e = parse_packet(b.data()).unwrap();
            assert_eq!((e.icmp_type, e.icmp_code), (ty, code));
        }
    }

    #[test]
    fn never_an_error_about_an_error_nor_frag_needed_about_icmp() {
        let f = frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::Tcp,
            1,
            80,
            None,
            b"",
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        icmp_error_reply(
            &mut b,
            &m,
            IcmpErrorKind::PortUnreachable,
            ip("198.18.0.100"),
        )
        .unwrap();
        let err = b.data().to_vec();
        let em = parse_packet(&err).unwrap();
        let mut b2 = TestBuf::new(&err);
        assert_eq!(
            icmp_error_reply(&mut b2, &em, IcmpErrorKind::TimeExceeded, ip("198.18.0.1")),
            Err(XmitError::IcmpInReplyToIcmp)
        );
        let ping = frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::IcmpEcho,
            1,
            0,
            None,
            b"",
        );
        let pm = parse_packet(&ping).unwrap();
        let mut b3 = TestBuf::new(&ping);
        assert_eq!(
            icmp_error_reply(
                &mut b3,
                &pm,
                IcmpErrorKind::TooBig { mtu: 1000 },
                ip("198.18.0.1")
            ),
            Err(XmitError::IcmpInReplyToIcmp)
        );
        assert_eq!(b3.data(), &ping[..]);
    }

    #[test]
    fn corrupted_icmp_checksum_is_refused_by_nat_translation() {
        let f = frame(
            ip("198.18.0.100"),
            ip("198.18.1.10"),
            L4::Tcp,
            80,
            40000,
            None,
            b"",
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        icmp_error_reply(
            &mut b,
            &m,
            IcmpErrorKind::PortUnreachable,
            ip("198.18.1.10"),
        )
        .unwrap();
        let mut e = b.data().to_vec();
        e[14 + 20 + 8 + 30] ^= 0xff; // inside the quote
        let em = parse_packet(&e).unwrap();
        let q = parse_icmp_quote(&e, &em).unwrap();
        let mut b = TestBuf::new(&e);
        assert_eq!(
            nat_icmp_inbound(&mut b, &em, &q, ip("198.19.0.5"), 8080),
            Err(XmitError::BadChecksum)
        );
        assert_eq!(b.data(), &e[..]);
    }

    #[test]
    fn frag_needed_about_a_gue_packet_reaches_the_client_with_reduced_mtu() {
        use crate::model::{TunnelConfig, TunnelCsum, TunnelType};
        use crate::xmit::tunnel::{encapsulate, TunnelParams};
        let (client, vip, rip) = addrs(false);
        let me = ip("198.18.0.1");
        let f = frame(client, vip, L4::Tcp, 40000, 80, None, &[5; 100]);
        let mut df = f.clone();
        df[20] |= 0x40; // client uses PMTU discovery
        Ipv4Packet::new_unchecked(&mut df[14..]).fill_checksum();
        let m = parse_packet(&df).unwrap();
        let cfg = TunnelConfig {
            kind: TunnelType::Gue,
            port: 6080,
            csum: TunnelCsum::NoCsum,
        };
        let p = TunnelParams {
            config: cfg,
            src: me,
            dst: rip,
            ident: 9,
            gue_sport: 50000,
            mtu: 1500,
            pmtu_disc: true,
            inner_csum_partial: false,
        };
        let mut b = TestBuf::new(&df);
        encapsulate(&mut b, &m, &p).unwrap();
        let sent = b.data().to_vec();
        // A router on the way to the real server reports MTU 1400.
        let sm = parse_packet(&sent).unwrap();
        let mut e = TestBuf::new(&sent);
        icmp_error_reply(
            &mut e,
            &sm,
            IcmpErrorKind::TooBig { mtu: 1400 },
            ip("198.19.9.9"),
        )
        .unwrap();
        let em = parse_packet(e.data()).unwrap();
        let q = parse_icmp_quote(e.data(), &em).unwrap();
        let tq = parse_tunnel_error(e.data(), &em, &q, &cfg).unwrap();
        assert_eq!(tq.overhead, 20 + 8 + 4);
        assert_eq!((tq.inner.src, tq.inner.dst), (client, vip));
        assert_eq!((tq.inner.sport, tq.inner.dport), (40000, 80));
        tunnel_error_to_client(&mut e, &em, &tq, 0, me).unwrap();
        let out = parse_packet(e.data()).unwrap();
        assert_eq!((out.src, out.dst), (me, client));
        assert_eq!((out.icmp_type, out.icmp_code), (3, 4));
        assert_eq!(e.data()[38..42], (1400u32 - 32).to_be_bytes());
        assert!(checksums_ok(e.data()));
        let oq = parse_icmp_quote(e.data(), &out).unwrap();
        assert_eq!(
            (oq.src, oq.sport, oq.dst, oq.dport),
            (client, 40000, vip, 80)
        );
        // Without DF on the client's packet nothing is reported.
        let mut nodf = tq;
        nodf.client_df = false;
        let mut e2 = TestBuf::new(&sent);
        icmp_error_reply(
            &mut e2,
            &sm,
            IcmpErrorKind::TooBig { mtu: 1400 },
            ip("198.19.9.9"),
        )
        .unwrap();
        let before = e2.data().to_vec();
        assert_eq!(
            tunnel_error_to_client(&mut e2, &em, &nodf, 0, me),
            Err(XmitError::NoPmtud)
        );
        assert_eq!(e2.data(), &before[..]);
    }

    fn addrs(v6: bool) -> (IpAddr, IpAddr, IpAddr) {
        if v6 {
            (
                ip("2001:db8:1::10"),
                ip("2001:db8::100"),
                ip("2001:db8:2::5"),
            )
        } else {
            (ip("198.18.1.10"), ip("198.18.0.100"), ip("198.19.0.5"))
        }
    }

    proptest! {
        /// The client reports an error about the reply it got from VIP;
        /// after translation the real server gets the error it would have
        /// got about its own packet, byte for byte except the quoted L4
        /// checksum (which IPVS does not touch) and the ICMP checksum.
        #[test]
        fn inbound_error_about_a_nat_reply_reaches_the_server_as_its_own(
            v6 in any::<bool>(), tcp in any::<bool>(),
            cport in 1u16.., vport in 1u16.., rport in 1u16..,
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let (client, vip, rip) = addrs(v6);
            let l4 = if tcp { L4::Tcp } else { L4::Udp };
            // The server's reply, NATed by the director, reaches the client.
            let reply = frame(rip, client, l4, rport, cport, None, &payload);
            let rm = parse_packet(&reply).unwrap();
            let mut seen = TestBuf::new(&reply);
            nat_outbound(&mut seen, &rm, vip, vport).unwrap();
            // The client answers it with port unreachable.
            let sm = parse_packet(seen.data()).unwrap();
            let mut err = TestBuf::new(seen.data());
            icmp_error_reply(&mut err, &sm, IcmpErrorKind::PortUnreachable, client).unwrap();
            // Addressed to the VIP; the director translates it.
            let em = parse_packet(err.data()).unwrap();
            prop_assert_eq!(em.dst, vip);
            let q = parse_icmp_quote(err.data(), &em).unwrap();
            prop_assert_eq!((q.src, q.sport, q.dst, q.dport), (vip, vport, client, cport));
            nat_icmp_inbound(&mut err, &em, &q, rip, rport).unwrap();
            prop_assert!(checksums_ok(err.data()));
            let got = parse_packet(err.data()).unwrap();
            prop_assert_eq!((got.src, got.dst, got.ttl), (client, rip, 63));
            let gq = parse_icmp_quote(err.data(), &got).unwrap();
            prop_assert_eq!((gq.src, gq.sport, gq.dst, gq.dport), (rip, rport, client, cport));
            if !v6 {
                let q3 = usize::from(gq.l3_offset);
                prop_assert!(Ipv4Packet::new_quoted(&err.data()[q3..]).unwrap().verify_checksum());
            }
            // What the server would get about its own (forwarded) packet.
            let mut own = TestBuf::new(&reply);
            crate::xmit::dr::dr_xmit(&mut own, &rm).unwrap();
            let om = parse_packet(own.data()).unwrap();
            icmp_error_reply(&mut own, &om, IcmpErrorKind::PortUnreachable, client).unwrap();
            let om = parse_packet(own.data()).unwrap();
            crate::xmit::dr::dr_xmit(&mut own, &om).unwrap();
            prop_assert_eq!(own.len(), err.len());
            let quoted_l4_csum = usize::from(gq.l4_offset) + if tcp { 16 } else { 6 };
            let icmp_csum = usize::from(got.l4_offset) + 2;
            for (i, (a, b)) in own.data().iter().zip(err.data()).enumerate() {
                let skip = [quoted_l4_csum, quoted_l4_csum + 1, icmp_csum, icmp_csum + 1];
                prop_assert!(a == b || skip.contains(&i), "byte {} differs", i);
            }
        }
    }

    #[test]
    fn outbound_error_from_server_reaches_client_about_the_vip() {
        for v6 in [false, true] {
            let (client, vip, rip) = addrs(v6);
            // The director sent client -> rip:8080; the server reports it.
            let sent = frame(client, rip, L4::Udp, 5000, 8080, None, b"dns?");
            let sm = parse_packet(&sent).unwrap();
            let mut err = TestBuf::new(&sent);
            icmp_error_reply(&mut err, &sm, IcmpErrorKind::PortUnreachable, rip).unwrap();
            let em = parse_packet(err.data()).unwrap();
            let q = parse_icmp_quote(err.data(), &em).unwrap();
            nat_icmp_outbound(&mut err, &em, &q, vip, 53).unwrap();
            assert!(checksums_ok(err.data()));
            let got = parse_packet(err.data()).unwrap();
            assert_eq!((got.src, got.dst), (vip, client));
            let gq = parse_icmp_quote(err.data(), &got).unwrap();
            assert_eq!(
                (gq.src, gq.sport, gq.dst, gq.dport),
                (client, 5000, vip, 53)
            );
        }
    }
}
