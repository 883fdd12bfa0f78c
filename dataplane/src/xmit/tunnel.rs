//! Tunnelling (ipvs.md 5.3): the client's IP packet, TTL decremented and
//! otherwise unchanged (still addressed to VIP:vport), is wrapped in an
//! outer IPv4 or IPv6 header to the real server, optionally with a GUE
//! (outer UDP + GUE) or GRE header in between. The outer family may differ
//! from the inner one.
//!
//! Outer header fields follow the table in 5.3: TOS / traffic class is the
//! inner DS field with ECN copied unless it is CE (then ECT(0)); TTL / hop
//! limit is the inner one after the decrement; DF is copied from an inner
//! IPv4 header when `pmtu_disc` is on; the IPv4 ID is the caller's (its IP
//! ID generator); the IPv6 flow label is 0.
//!
//! The MTU rule of 5.4 is checked before anything changes: the tunnel MTU
//! is the route MTU minus the overhead; below 68 the packet is refused; a
//! packet that does not fit is refused with `TooBig` (IPv4 with DF and
//! `pmtu_disc`, or IPv6: answer with an ICMP error) or
//! `NeedsFragmentation` (the director does not fragment).
//!
//! Remote checksum offload (`--tun-remcsum`) only applies to a packet
//! whose inner checksum is still partial (`inner_csum_partial`); packets
//! received from a NIC carry complete checksums, so normally the GUE header
//! is the plain 4 bytes and the UDP checksum is computed.

use std::net::IpAddr;

use super::{check_forwardable, decrement_ttl, XmitError};
use crate::buf::PacketBuf;
use crate::model::{TunnelConfig, TunnelCsum, TunnelType};
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::gre::GrePacket;
use crate::wire::gue::GuePacket;
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::wire::udp::UdpPacket;
use crate::wire::{checksum, ipv4, ipv6, parse_packet, tcp, udp, PacketMeta, L3};

/// Smallest tunnel MTU accepted (the IPv4 minimum, 5.4).
pub const MIN_TUNNEL_MTU: u16 = 68;

/// Everything the encapsulation needs besides the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelParams {
    /// Tunnel type, GUE port, checksum option of the destination.
    pub config: TunnelConfig,
    /// The director's source address for the route to the real server.
    pub src: IpAddr,
    /// The real server's address (decides the outer family).
    pub dst: IpAddr,
    /// Outer IPv4 identification (from the caller's IP ID generator).
    pub ident: u16,
    /// Outer UDP source port for GUE (see [`gue_source_port`]).
    pub gue_sport: u16,
    /// Route MTU towards the real server.
    pub mtu: u16,
    /// `pmtu_disc` sysctl: copy DF from the inner IPv4 header.
    pub pmtu_disc: bool,
    /// The inner L4 checksum is partial (pseudo-header only), so remote
    /// checksum offload applies with `TunnelCsum::RemCsum`.
    pub inner_csum_partial: bool,
}

/// GUE source port from a flow hash, mapped into `[lo, hi]` (the local
/// ephemeral range), so that one flow keeps one outer 5-tuple and ECMP /
/// RSS on the way spreads flows.
pub fn gue_source_port(flow_hash: u32, lo: u16, hi: u16) -> u16 {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = u32::from(hi - lo) + 1;
    // Multiply-shift keeps the high bits of the hash, which are the best
    // mixed in the usual hashes, and needs no division.
    lo + ((u64::from(flow_hash) * u64::from(span)) >> 32) as u16
}

/// Bytes added in front of the inner packet: outer IP header plus the
/// GUE (UDP + GUE, + 8 with remote checksum) or GRE (4, 8 with checksum)
/// header.
pub fn tunnel_overhead(outer_v6: bool, config: &TunnelConfig, remcsum: bool) -> usize {
    let ip = if outer_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    ip + match config.kind {
        TunnelType::Ipip => 0,
        TunnelType::Gue => {
            udp::HEADER_LEN
                + if remcsum {
                    crate::wire::gue::REMCSUM_HEADER_LEN
                } else {
                    crate::wire::gue::BASE_HEADER_LEN
                }
        }
        TunnelType::Gre => match config.csum {
            TunnelCsum::Csum => crate::wire::gre::CSUM_HEADER_LEN,
            _ => crate::wire::gre::BASE_HEADER_LEN,
        },
    }
}

/// Outer DS field: inner DSCP, inner ECN unless CE, which becomes ECT(0).
fn outer_tos(inner: u8) -> u8 {
    if inner & 0x03 == 0x03 {
        (inner & !0x03) | 0x02
    } else {
        inner
    }
}

/// Encapsulates the packet for a tunnel destination. See the module docs.
#[inline]
pub fn encapsulate(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    p: &TunnelParams,
) -> Result<(), XmitError> {
    if ipip_v4_fast(buf, meta, p) {
        return Ok(());
    }
    encapsulate_other(buf, meta, p)
}

/// [`encapsulate`] past ipip's fast path: GRE's and GUE's
/// ([`gre_gue_v4_fast`]), else the general path. Out of line, so that the
/// lane's loop carries only ipip's (with the GRE and GUE fast paths in
/// it, ipip cost 28 instructions more per packet, NAT and DR 7).
#[inline(never)]
fn encapsulate_other(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    p: &TunnelParams,
) -> Result<(), XmitError> {
    if gre_gue_v4_fast(buf, meta, p) {
        return Ok(());
    }
    encapsulate_general(buf, meta, p)
}

/// The common tunnel case, IPv4 in IPv4 ipip from an untagged frame, in
/// straight-line code: the inner TTL with one RFC 1624 update, the outer
/// header written through a fixed-size view, its checksum over its ten
/// words.
///
/// Returns `false`, having changed nothing, when the packet is not that
/// case or any check of [`encapsulate_general`] could fail; the general
/// path then decides (and refuses with the same error). For every packet it
/// takes it writes the same bytes as the general path (the property test
/// `v4_fast_paths_equal_the_general_path` checks this).
#[inline(always)]
fn ipip_v4_fast(buf: &mut impl PacketBuf, meta: &PacketMeta, p: &TunnelParams) -> bool {
    const IP: usize = ipv4::HEADER_LEN;
    p.config.kind == TunnelType::Ipip
        && v4_fast::<0, { 2 * IP }>(buf, meta, p, protocol::IPIP, |_, _| {})
}

/// [`ipip_v4_fast`] for GRE without its checksum and GUE without a
/// checksum option (both ipvsadm's defaults): the same case with the
/// GRE header (4 bytes) or the UDP and GUE headers (8 + 4) between the
/// two IPv4 headers, in place of the general path's 200 instructions more
/// per packet.
#[inline(always)]
fn gre_gue_v4_fast(buf: &mut impl PacketBuf, meta: &PacketMeta, p: &TunnelParams) -> bool {
    const IP: usize = ipv4::HEADER_LEN;
    const GRE: usize = crate::wire::gre::BASE_HEADER_LEN;
    const GUE: usize = udp::HEADER_LEN + crate::wire::gue::BASE_HEADER_LEN;
    let cfg = &p.config;
    match cfg.kind {
        TunnelType::Gre if cfg.csum != TunnelCsum::Csum => {
            v4_fast::<GRE, { 2 * IP + GRE }>(buf, meta, p, protocol::GRE, |g, _| {
                // No flags, version 0; the payload is IPv4.
                *g = [0, 0, 0x08, 0x00];
            })
        }
        TunnelType::Gue if cfg.csum == TunnelCsum::NoCsum && cfg.port != 0 => {
            v4_fast::<GUE, { 2 * IP + GUE }>(buf, meta, p, protocol::UDP, |h, udp_len| {
                h[0..2].copy_from_slice(&p.gue_sport.to_be_bytes());
                h[2..4].copy_from_slice(&cfg.port.to_be_bytes());
                h[4..6].copy_from_slice(&udp_len.to_be_bytes());
                // No UDP checksum; GUE version 0, no options, IPv4 inside.
                h[6..12].copy_from_slice(&[0, 0, 0, protocol::IPIP, 0, 0]);
            })
        }
        _ => false,
    }
}

/// The IPv4-in-IPv4 fast path with `EXTRA` bytes of tunnel header after
/// the outer IPv4 header (`outer_proto`'s), written by `extra` (given the
/// length from its start to the packet's end). `HEADERS` is the two IPv4
/// headers and the tunnel header together (`2 * 20 + EXTRA`), one
/// fixed-size view.
#[inline(always)]
fn v4_fast<const EXTRA: usize, const HEADERS: usize>(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    p: &TunnelParams,
    outer_proto: u8,
    extra: impl FnOnce(&mut [u8; EXTRA], u16),
) -> bool {
    const L2: usize = 14;
    const IP: usize = ipv4::HEADER_LEN;
    const { assert!(HEADERS == 2 * IP + EXTRA) };
    let overhead = IP + EXTRA;
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else {
        return false;
    };
    if meta.l3 != L3::Ipv4 || usize::from(meta.l3_offset) != L2 || meta.ttl <= 1 {
        return false;
    }
    let end = meta.l3_end();
    let inner_len = usize::from(meta.ip_len);
    let tunnel_mtu = usize::from(p.mtu).saturating_sub(overhead);
    if buf.len() < end
        || usize::from(meta.l4_offset) > end
        || inner_len < ipv4::HEADER_LEN
        || tunnel_mtu < usize::from(MIN_TUNNEL_MTU)
        || inner_len > tunnel_mtu
    {
        return false;
    }
    if buf.data().get(L2 + 8).is_none_or(|&ttl| ttl <= 1) {
        // The bytes disagree with `meta.ttl`: the general path decides.
        return false;
    }
    let padding = buf.len() - end;
    if !buf.prepend(overhead) {
        return false;
    }
    if padding > 0 {
        // A call per packet otherwise (the trim is out of line here).
        buf.trim(padding);
    }
    let data = buf.data_mut();
    // The Ethernet header forward, through a fixed-size copy: the two
    // ranges do not overlap (the tunnel headers are longer than it), and
    // `copy_within` called memmove for 14 bytes (about 40 instructions per
    // packet).
    let Some((front, rest)) = data.split_at_mut_checked(overhead) else {
        return false; // not reached: the frame holds both headers
    };
    let (Some(to), Some(from)) = (front.get_mut(..L2), rest.get(..L2)) else {
        return false; // not reached
    };
    to.copy_from_slice(from);
    let Some(Ok(h)) = data
        .get_mut(L2..L2 + HEADERS)
        .map(<&mut [u8; HEADERS]>::try_from)
    else {
        return false; // not reached: the frame holds the headers
    };
    let (outer, rest) = h.split_at_mut(IP);
    let (ext, inner) = rest.split_at_mut(EXTRA);
    let (Ok(outer), Ok(ext), Some(Ok(inner))) = (
        <&mut [u8; IP]>::try_from(outer),
        <&mut [u8; EXTRA]>::try_from(ext),
        inner.get_mut(..IP).map(<&mut [u8; IP]>::try_from),
    ) else {
        return false; // not reached: HEADERS is 2 * IP + EXTRA (asserted)
    };
    // Inner TTL: the word at offset 8 loses 0x100 (`!old + old - 0x100`
    // is 0xfeff whatever the word).
    inner[8] -= 1;
    let ic = checksum::adjust(u16::from_be_bytes([inner[10], inner[11]]), 0xfeff);
    inner[10..12].copy_from_slice(&ic.to_be_bytes());
    let df = p.pmtu_disc && inner[6] & 0x40 != 0;
    let total = (overhead + inner_len) as u16;
    outer[0] = 0x45;
    outer[1] = outer_tos(inner[1]);
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    outer[4..6].copy_from_slice(&p.ident.to_be_bytes());
    outer[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    outer[8] = inner[8];
    outer[9] = outer_proto;
    outer[10..12].fill(0);
    outer[12..16].copy_from_slice(&src.octets());
    outer[16..20].copy_from_slice(&dst.octets());
    let c = !checksum::data(outer);
    outer[10..12].copy_from_slice(&c.to_be_bytes());
    extra(ext, (EXTRA + inner_len) as u16);
    data[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    true
}

/// Every tunnel case (GUE, GRE, IPv6 on either side, VLAN tags), with all
/// checks first: the reference the fast path is tested against.
#[inline(never)]
fn encapsulate_general(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    p: &TunnelParams,
) -> Result<(), XmitError> {
    // Checks; nothing changes before they all passed.
    check_forwardable(buf.data(), meta)?;
    let outer_v6 = match (p.src, p.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return Err(XmitError::FamilyMismatch),
    };
    let cfg = &p.config;
    if cfg.kind == TunnelType::Gue && cfg.port == 0 {
        return Err(XmitError::GuePortMissing);
    }
    let remcsum =
        if cfg.kind == TunnelType::Gue && cfg.csum == TunnelCsum::RemCsum && p.inner_csum_partial {
            let start = usize::from(meta.l4_offset.saturating_sub(meta.l3_offset));
            match meta.protocol {
                protocol::TCP => Some((start as u16, (start + tcp::CHECKSUM_OFFSET) as u16)),
                protocol::UDP => Some((start as u16, (start + udp::CHECKSUM_OFFSET) as u16)),
                _ => None,
            }
        } else {
            None
        };
    let overhead = tunnel_overhead(outer_v6, cfg, remcsum.is_some());
    let tunnel_mtu = usize::from(p.mtu).saturating_sub(overhead);
    if tunnel_mtu < usize::from(MIN_TUNNEL_MTU) {
        return Err(XmitError::MtuTooSmall);
    }
    let inner_len = usize::from(meta.ip_len);
    if inner_len > tunnel_mtu {
        return Err(match meta.l3 {
            L3::Ipv4 if !(meta.dont_frag && p.pmtu_disc) => XmitError::NeedsFragmentation,
            _ => XmitError::TooBig {
                mtu: tunnel_mtu as u16,
            },
        });
    }
    let outer_len = overhead + inner_len;
    if outer_len > usize::from(u16::MAX) {
        return Err(XmitError::TooLong);
    }
    let l2 = usize::from(meta.l3_offset);
    if !buf.prepend(overhead) {
        return Err(XmitError::NoHeadroom);
    }

    // Drop link padding behind the inner packet, then move L2 forward.
    let padding = buf.len() - overhead - meta.l3_end();
    buf.trim(padding);
    let data = buf.data_mut();
    data.copy_within(overhead..overhead + l2, 0);
    let inner_at = l2 + overhead;
    let mut inner_meta = *meta;
    inner_meta.l3_offset = inner_at as u16;
    decrement_ttl(data, &inner_meta);
    let (inner_tos, inner_ttl, inner_df) = match meta.l3 {
        L3::Ipv4 => {
            let ip = Ipv4Packet::new_unchecked(&data[inner_at..]);
            (ip.dscp_ecn(), ip.ttl(), ip.dont_frag())
        }
        _ => {
            let ip = Ipv6Packet::new_unchecked(&data[inner_at..]);
            (ip.traffic_class(), ip.hop_limit(), false)
        }
    };
    let inner_proto = if meta.l3 == L3::Ipv4 {
        protocol::IPIP
    } else {
        protocol::IPV6
    };
    let outer_proto = match cfg.kind {
        TunnelType::Ipip => inner_proto,
        TunnelType::Gue => protocol::UDP,
        TunnelType::Gre => protocol::GRE,
    };

    let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
    eth.set_ethertype(if outer_v6 {
        ethertype::IPV6
    } else {
        ethertype::IPV4
    });
    let ip_hl = match (p.src, p.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            Ipv4Repr {
                src,
                dst,
                protocol: outer_proto,
                payload_len: (outer_len - ipv4::HEADER_LEN) as u16,
                ttl: inner_ttl,
                dscp_ecn: outer_tos(inner_tos),
                ident: p.ident,
                dont_frag: p.pmtu_disc && inner_df,
            }
            .emit(&mut data[l2..])?;
            ipv4::HEADER_LEN
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Ipv6Repr {
                src,
                dst,
                next_header: outer_proto,
                payload_len: (outer_len - ipv6::HEADER_LEN) as u16,
                hop_limit: inner_ttl,
                traffic_class: outer_tos(inner_tos),
            }
            .emit(&mut data[l2..])?;
            ipv6::HEADER_LEN
        }
        _ => return Err(XmitError::FamilyMismatch), // checked above
    };
    let l4 = l2 + ip_hl;
    match cfg.kind {
        TunnelType::Ipip => {}
        TunnelType::Gre => {
            let inner_type = if meta.l3 == L3::Ipv4 {
                ethertype::IPV4
            } else {
                ethertype::IPV6
            };
            let mut g = GrePacket::new_unchecked(&mut data[l4..]);
            g.set_header(cfg.csum == TunnelCsum::Csum, inner_type);
            g.fill_checksum();
        }
        TunnelType::Gue => {
            let udp_len = outer_len - ip_hl;
            let mut u = UdpPacket::new_unchecked(&mut data[l4..]);
            u.set_src_port(p.gue_sport);
            u.set_dst_port(cfg.port);
            u.set_len(udp_len as u16);
            u.set_checksum(0);
            GuePacket::new_unchecked(&mut data[l4 + udp::HEADER_LEN..])
                .set_header(inner_proto, remcsum);
            if cfg.csum != TunnelCsum::NoCsum {
                let ph = match (p.src, p.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        checksum::pseudo_header_v4(s, d, protocol::UDP, udp_len as u16)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        checksum::pseudo_header_v6(s, d, protocol::UDP, udp_len as u32)
                    }
                    _ => 0,
                };
                let c = checksum::finish(ph, &data[l4..l4 + udp_len]);
                UdpPacket::new_unchecked(&mut data[l4..]).set_checksum(if c == 0 {
                    0xffff
                } else {
                    c
                });
            }
        }
    }
    Ok(())
}

/// What [`decapsulate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated {
    pub kind: TunnelType,
    /// Outer source and destination.
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

/// Removes the outer IP (and GUE/GRE) header of an IPIP, GUE (any UDP
/// port) or GRE packet, leaving the L2 header in front of the inner packet
/// with the inner ethertype. Checksums of the outer headers are not
/// verified. Used by tests and for ICMP errors about the director's own
/// tunnel packets.
pub fn decapsulate(buf: &mut impl PacketBuf) -> Result<Decapsulated, XmitError> {
    let m = parse_packet(buf.data())?;
    if m.l3 == L3::Arp || !m.has_l4() {
        return Err(XmitError::NotTunnel);
    }
    let data = buf.data();
    let l4 = usize::from(m.l4_offset);
    let end = m.l3_end();
    let (kind, inner_rel, inner_v6) = match m.protocol {
        protocol::IPIP => (TunnelType::Ipip, 0, false),
        protocol::IPV6 => (TunnelType::Ipip, 0, true),
        protocol::GRE => {
            let g = GrePacket::new_checked(&data[l4..end])?;
            let v6 = match g.protocol() {
                ethertype::IPV4 => false,
                ethertype::IPV6 => true,
                _ => return Err(XmitError::NotTunnel),
            };
            (TunnelType::Gre, g.header_len(), v6)
        }
        protocol::UDP => {
            let u = UdpPacket::new_checked(&data[l4..end])?;
            let g = GuePacket::new_checked(u.payload())?;
            let v6 = match g.protocol() {
                protocol::IPIP => false,
                protocol::IPV6 => true,
                _ => return Err(XmitError::NotTunnel),
            };
            (TunnelType::Gue, udp::HEADER_LEN + g.header_len(), v6)
        }
        _ => return Err(XmitError::NotTunnel),
    };
    let inner_at = l4 + inner_rel;
    if inner_at > end {
        return Err(XmitError::NotTunnel);
    }
    let l2 = usize::from(m.l3_offset);
    let strip = inner_at - l2;
    let tail = buf.len() - end;
    let data = buf.data_mut();
    data.copy_within(0..l2, strip);
    buf.adj(strip);
    buf.trim(tail);
    let mut eth = EthernetFrame::new_unchecked(buf.data_mut());
    eth.set_ethertype(if inner_v6 {
        ethertype::IPV6
    } else {
        ethertype::IPV4
    });
    Ok(Decapsulated {
        kind,
        outer_src: m.src,
        outer_dst: m.dst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::testutil::{checksums_ok, frame, L4};
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn params(kind: TunnelType, csum: TunnelCsum, src: &str, dst: &str) -> TunnelParams {
        TunnelParams {
            config: TunnelConfig {
                kind,
                port: if kind == TunnelType::Gue { 6080 } else { 0 },
                csum,
            },
            src: ip(src),
            dst: ip(dst),
            ident: 0x1234,
            gue_sport: 49152,
            mtu: 1500,
            pmtu_disc: true,
            inner_csum_partial: false,
        }
    }

    fn client_syn_v4() -> Vec<u8> {
        frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::Tcp,
            40000,
            80,
            None,
            b"hi",
        )
    }

    #[test]
    fn ipip_v4_in_v4_outer_header_fields() {
        let f = client_syn_v4();
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        let p = params(
            TunnelType::Ipip,
            TunnelCsum::NoCsum,
            "198.18.0.1",
            "198.19.0.5",
        );
        encapsulate(&mut b, &m, &p).unwrap();
        let d = b.data();
        assert_eq!(d.len(), f.len() + 20);
        assert_eq!(d[..12], f[..12], "MACs kept for the caller");
        assert_eq!(d[12..14], [0x08, 0x00]);
        let o = Ipv4Packet::new_checked(&d[14..]).unwrap();
        assert_eq!(o.protocol(), 4);
        assert_eq!(
            (o.src_addr().octets(), o.dst_addr().octets()),
            ([198, 18, 0, 1], [198, 19, 0, 5])
        );
        assert_eq!(o.ttl(), 63, "inner TTL after the decrement");
        assert_eq!(o.ident(), 0x1234);
        assert_eq!(
            o.dont_frag(),
            Ipv4Packet::new_checked(&f[14..]).unwrap().dont_frag()
        );
        assert!(o.verify_checksum());
        assert_eq!(usize::from(o.total_len()), f.len() - 14 + 20);
        let inner = &d[34..];
        assert_eq!(inner[8], 63);
        assert!(checksums_ok(&[&d[..14], inner].concat()));
    }

    #[test]
    fn gue_v4_inner_in_v6_outer_with_udp_checksum() {
        let f = client_syn_v4();
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        let p = params(
            TunnelType::Gue,
            TunnelCsum::Csum,
            "2001:db8::1",
            "2001:db8:2::5",
        );
        encapsulate(&mut b, &m, &p).unwrap();
        let d = b.data();
        assert_eq!(d[12..14], [0x86, 0xdd]);
        let om = parse_packet(d).unwrap();
        assert_eq!((om.protocol, om.sport, om.dport), (17, 49152, 6080));
        assert!(checksums_ok(d), "outer UDP checksum");
        let gue = &d[14 + 40 + 8..14 + 40 + 12];
        assert_eq!(gue, &[0x00, 4, 0, 0], "GUE variant 0, inner IPv4, no flags");
    }

    #[test]
    fn gre_with_checksum_has_c_bit_and_verifies() {
        let f = frame(
            ip("2001:db8:1::10"),
            ip("2001:db8::100"),
            L4::Udp,
            5000,
            53,
            Some(7),
            b"q",
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        let p = params(
            TunnelType::Gre,
            TunnelCsum::Csum,
            "198.18.0.1",
            "198.19.0.5",
        );
        encapsulate(&mut b, &m, &p).unwrap();
        let d = b.data();
        assert_eq!(d[12..16], f[12..16], "VLAN tag kept");
        assert_eq!(d[16..18], [0x08, 0x00], "outer family behind the tag");
        let g = GrePacket::new_checked(&d[18 + 20..]).unwrap();
        assert!(g.has_checksum() && g.verify_checksum());
        assert_eq!(g.protocol(), 0x86dd);
    }

    #[test]
    fn ce_becomes_ect0_in_the_outer_header() {
        assert_eq!(outer_tos(0xb8 | 3), 0xb8 | 2);
        assert_eq!(outer_tos(0xb8 | 1), 0xb8 | 1);
    }

    #[test]
    fn mtu_rules_of_5_4() {
        let f = frame(
            ip("198.18.1.10"),
            ip("198.18.0.100"),
            L4::Udp,
            1,
            2,
            None,
            &[0u8; 1472],
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        let mut p = params(
            TunnelType::Gue,
            TunnelCsum::NoCsum,
            "198.18.0.1",
            "198.19.0.5",
        );
        let mut df = m;
        df.dont_frag = true;
        assert_eq!(
            encapsulate(&mut b, &df, &p),
            Err(XmitError::TooBig { mtu: 1500 - 32 })
        );
        let mut nodf = m;
        nodf.dont_frag = false;
        assert_eq!(
            encapsulate(&mut b, &nodf, &p),
            Err(XmitError::NeedsFragmentation)
        );
        p.mtu = 99;
        assert_eq!(encapsulate(&mut b, &m, &p), Err(XmitError::MtuTooSmall));
        assert_eq!(b.data(), &f[..], "unchanged after refusals");
        p.mtu = 1500;
        p.config.port = 0;
        assert_eq!(encapsulate(&mut b, &m, &p), Err(XmitError::GuePortMissing));
    }

    #[test]
    fn remcsum_option_points_at_the_inner_checksum() {
        let f = client_syn_v4();
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        let mut p = params(
            TunnelType::Gue,
            TunnelCsum::RemCsum,
            "198.18.0.1",
            "198.19.0.5",
        );
        p.inner_csum_partial = true;
        encapsulate(&mut b, &m, &p).unwrap();
        let g = GuePacket::new_checked(&b.data()[14 + 20 + 8..]).unwrap();
        assert_eq!(
            g.remcsum(),
            Some((20, 36)),
            "TCP at 20, its checksum at 20 + 16"
        );
        assert_eq!(b.data().len(), f.len() + 20 + 8 + 12);
    }

    #[test]
    fn gue_source_port_stays_in_range() {
        assert_eq!(gue_source_port(0, 32768, 60999), 32768);
        assert_eq!(gue_source_port(u32::MAX, 32768, 60999), 60999);
    }

    fn addr(v6: bool, n: u16) -> IpAddr {
        if v6 {
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n])
        } else {
            IpAddr::from([198, 18, (n >> 8) as u8, n as u8])
        }
    }

    proptest! {
        /// Whatever the fast paths (ipip; GRE and GUE) take, the general
        /// path accepts and writes identically; what they decline they
        /// leave untouched.
        #[test]
        fn v4_fast_paths_equal_the_general_path(
            tcp in any::<bool>(),
            vlan in proptest::option::of(1u16..4094),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            pad in 0usize..8,
            ttl in 0u8..4,
            tos in any::<u8>(),
            df in any::<bool>(),
            pmtu_disc in any::<bool>(),
            mtu in prop_oneof![Just(1500u16), 60u16..1600],
            outer_v6 in any::<bool>(),
            kind in prop_oneof![Just(TunnelType::Ipip), Just(TunnelType::Gre), Just(TunnelType::Gue)],
            csum in prop_oneof![Just(TunnelCsum::NoCsum), Just(TunnelCsum::Csum), Just(TunnelCsum::RemCsum)],
            gue_port_zero in proptest::bool::weighted(0.1),
        ) {
            let l4 = if tcp { L4::Tcp } else { L4::Udp };
            let mut f = frame(ip("198.18.1.10"), ip("198.18.0.100"), l4, 1000, 80, vlan, &payload);
            let l3 = if vlan.is_some() { 18 } else { 14 };
            // TTL, DS field and DF as given, header checksum made valid.
            f[l3 + 1] = tos;
            f[l3 + 6] = if df { 0x40 } else { 0 };
            f[l3 + 8] = ttl;
            f[l3 + 10..l3 + 12].fill(0);
            let c = !checksum::data(&f[l3..l3 + 20]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            f.resize(f.len() + pad, 0);
            let m = parse_packet(&f).unwrap();
            let mut p = params(kind, csum, "198.18.0.1", "198.19.0.5");
            if gue_port_zero {
                p.config.port = 0;
            }
            if outer_v6 {
                p.src = ip("2001:db8::1");
                p.dst = ip("2001:db8::5");
            }
            p.mtu = mtu;
            p.pmtu_disc = pmtu_disc;
            let mut fast = TestBuf::new(&f);
            let took = if kind == TunnelType::Ipip {
                ipip_v4_fast(&mut fast, &m, &p)
            } else {
                gre_gue_v4_fast(&mut fast, &m, &p)
            };
            let mut general = TestBuf::new(&f);
            let r = encapsulate_general(&mut general, &m, &p);
            if took {
                prop_assert!(r.is_ok());
                prop_assert_eq!(fast.data(), general.data());
            } else {
                prop_assert_eq!(fast.data(), &f[..]);
            }
            // A fast path is taken for the common cases: ipip, GRE without
            // its checksum, GUE without a checksum option.
            let overhead = match kind {
                TunnelType::Ipip => 20,
                TunnelType::Gre => 24,
                TunnelType::Gue => 32,
            };
            let common = match kind {
                TunnelType::Ipip => true,
                TunnelType::Gre => csum != TunnelCsum::Csum,
                TunnelType::Gue => csum == TunnelCsum::NoCsum && !gue_port_zero,
            };
            if common && !outer_v6 && vlan.is_none() && ttl > 1
                && usize::from(mtu) >= f.len() - 14 - pad + overhead
                && usize::from(mtu) >= 68 + overhead
            {
                prop_assert!(took);
            }
        }

        #[test]
        fn decapsulating_an_encapsulated_packet_yields_the_forwarded_inner(
            inner_v6 in any::<bool>(), outer_v6 in any::<bool>(),
            kind in prop_oneof![Just(TunnelType::Ipip), Just(TunnelType::Gue), Just(TunnelType::Gre)],
            csum in prop_oneof![Just(TunnelCsum::NoCsum), Just(TunnelCsum::Csum), Just(TunnelCsum::RemCsum)],
            vlan in proptest::option::of(1u16..4094),
            tcp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            pad in 0usize..8,
        ) {
            let l4 = if tcp { L4::Tcp } else { L4::Udp };
            let mut f = frame(addr(inner_v6, 1), addr(inner_v6, 2), l4, 1000, 80, vlan, &payload);
            // What DR would send: the same packet with TTL decremented.
            let m = parse_packet(&f).unwrap();
            let mut expect = TestBuf::new(&f);
            crate::xmit::dr::dr_xmit(&mut expect, &m).unwrap();
            f.resize(f.len() + pad, 0); // link padding
            let m = parse_packet(&f).unwrap();
            let mut p = params(kind, csum, "198.18.0.1", "198.19.0.5");
            p.src = addr(outer_v6, 3);
            p.dst = addr(outer_v6, 4);
            let mut b = TestBuf::new(&f);
            encapsulate(&mut b, &m, &p).unwrap();
            prop_assert!(checksums_ok(b.data()));
            let got = decapsulate(&mut b).unwrap();
            prop_assert_eq!(got.kind, kind);
            prop_assert_eq!((got.outer_src, got.outer_dst), (p.src, p.dst));
            prop_assert_eq!(b.data(), expect.data());
        }
    }
}
