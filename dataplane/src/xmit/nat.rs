//! NAT / masquerading (ipvs.md 5.1).
//!
//! Inbound (client -> director): destination VIP:vport becomes the real
//! server's address and port. Outbound (real server's reply): source
//! becomes VIP:vport again, so the client only ever sees the virtual
//! service. Source (inbound) and destination (outbound) are untouched.
//!
//! Checksums are patched, not recomputed (RFC 1624): the IPv4 header
//! checksum for the address and TTL, and the TCP/UDP/ICMPv6 checksum for
//! the pseudo-header address and the port. Exceptions, as in IPVS:
//! * a UDP datagram that arrived with checksum 0 gets a freshly computed
//!   checksum (unless it is a first fragment, whose data we do not have:
//!   it keeps 0 over IPv4), and a computed or patched UDP checksum of 0 is
//!   sent as 0xFFFF;
//! * SCTP's CRC32c does not cover addresses; it is recomputed when the port
//!   changes;
//! * ICMP echo: the ICMPv4 checksum does not cover addresses, ICMPv6's
//!   does; the identifier is kept (the port argument is ignored).

use std::net::IpAddr;

use super::{check_forwardable, check_not_later_fragment, decrement_ttl, same_family, XmitError};
use crate::buf::PacketBuf;
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::sctp::SctpPacket;
use crate::wire::{checksum, get16, icmp, icmpv6, set16, tcp, udp, Fragment, PacketMeta, L3};

/// Which end of the flow the rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// Client -> real server: destination becomes `real_addr:real_port`,
/// TTL decremented. Always inlined: the IPv4 TCP/UDP case is a few dozen
/// instructions, less than a call's saves and restores around it.
#[inline(always)]
pub fn nat_inbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    real_addr: IpAddr,
    real_port: u16,
) -> Result<(), XmitError> {
    rewrite(buf.data_mut(), meta, Side::Dst, real_addr, real_port)
}

/// [`nat_inbound`] for a `meta` that is the parser's answer for `buf`
/// about a whole IPv4 TCP or UDP datagram (the fast lane's packets): the
/// fast path skips the tests the parser made (see
/// [`super::v4_fast_headers_of`]).
#[inline(always)]
pub fn nat_inbound_parsed(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    real_addr: IpAddr,
    real_port: u16,
) -> Result<(), XmitError> {
    rewrite_of::<true>(buf.data_mut(), meta, Side::Dst, real_addr, real_port)
}

/// Real server -> client: source becomes `virt_addr:virt_port`, TTL
/// decremented. Always inlined, as [`nat_inbound`].
#[inline(always)]
pub fn nat_outbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    virt_addr: IpAddr,
    virt_port: u16,
) -> Result<(), XmitError> {
    rewrite(buf.data_mut(), meta, Side::Src, virt_addr, virt_port)
}

fn addr_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            b[..4].copy_from_slice(&v.octets());
            (b, 4)
        }
        IpAddr::V6(v) => (v.octets(), 16),
    }
}

/// Offsets of the checksum field inside the L4 header that covers the
/// pseudo-header, for the protocols NAT handles.
fn pseudo_csum_offset(meta: &PacketMeta) -> Option<usize> {
    match (meta.l3, meta.protocol) {
        (_, protocol::TCP) => Some(tcp::CHECKSUM_OFFSET),
        (_, protocol::UDP) => Some(udp::CHECKSUM_OFFSET),
        (L3::Ipv6, protocol::ICMPV6) => Some(icmpv6::CHECKSUM_OFFSET),
        _ => None,
    }
}

fn is_echo(meta: &PacketMeta) -> bool {
    match (meta.l3, meta.protocol) {
        (L3::Ipv4, protocol::ICMP) => matches!(
            meta.icmp_type,
            icmp::kind::ECHO_REQUEST | icmp::kind::ECHO_REPLY
        ),
        (L3::Ipv6, protocol::ICMPV6) => matches!(
            meta.icmp_type,
            icmpv6::kind::ECHO_REQUEST | icmpv6::kind::ECHO_REPLY
        ),
        _ => false,
    }
}

/// Minimum L4 header length the rewrite touches.
fn l4_min_len(meta: &PacketMeta) -> usize {
    match meta.protocol {
        protocol::TCP => tcp::HEADER_LEN,
        protocol::UDP => udp::HEADER_LEN,
        protocol::SCTP => crate::wire::sctp::HEADER_LEN,
        _ => icmp::HEADER_LEN,
    }
}

#[inline(always)]
fn rewrite(
    data: &mut [u8],
    meta: &PacketMeta,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), XmitError> {
    rewrite_of::<false>(data, meta, side, addr, port)
}

/// [`rewrite`], with `PARSED` as [`super::v4_fast_headers_of`]'s.
#[inline(always)]
fn rewrite_of<const PARSED: bool>(
    data: &mut [u8],
    meta: &PacketMeta,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), XmitError> {
    if let IpAddr::V4(a) = addr {
        if rewrite_v4_fast::<PARSED>(data, meta, side, u32::from(a), port) {
            return Ok(());
        }
    }
    rewrite_general(data, meta, side, addr, port)
}

/// The common case, an IPv4 TCP or UDP (with a checksum) packet that is
/// not a later fragment, in straight-line code: TTL, address and port with
/// one RFC 1624 update of each checksum ([`checksum::adjust`]), through
/// fixed-size views so no access needs its own bounds check.
///
/// Returns `false`, having written nothing, when the packet is not that
/// case or any check of [`rewrite_general`] could fail; the general path
/// then decides (and refuses with the same error as before). So for every
/// packet it takes, the general path would have accepted it and written the
/// same bytes (the property test `fast_path_equals_general_path` checks
/// this byte for byte).
#[inline(always)]
fn rewrite_v4_fast<const PARSED: bool>(
    data: &mut [u8],
    meta: &PacketMeta,
    side: Side,
    new_a: u32,
    port: u16,
) -> bool {
    let Some((ip, l4h, is_udp)) = super::v4_fast_headers_of::<PARSED>(data, meta) else {
        return false;
    };
    if is_udp {
        let Ok(u) = <&mut [u8; 8]>::try_from(l4h) else {
            return false;
        };
        patch_v4(ip, u, udp::CHECKSUM_OFFSET, true, side, new_a, port);
    } else {
        let Ok(t) = <&mut [u8; 20]>::try_from(l4h) else {
            return false;
        };
        patch_v4(ip, t, tcp::CHECKSUM_OFFSET, false, side, new_a, port);
    }
    true
}

/// Writes the TTL, address and port of [`rewrite_v4_fast`] into the IPv4
/// header `ip` and the L4 header `l4` (checksum at `csum_at`).
#[inline(always)]
fn patch_v4<const N: usize>(
    ip: &mut [u8; 20],
    l4: &mut [u8; N],
    csum_at: usize,
    is_udp: bool,
    side: Side,
    new_a: u32,
    port: u16,
) {
    let (addr_at, port_at) = match side {
        Side::Src => (12, 0),
        Side::Dst => (16, 2),
    };
    let old_a = u32::from_be_bytes([
        ip[addr_at],
        ip[addr_at + 1],
        ip[addr_at + 2],
        ip[addr_at + 3],
    ]);
    let a_delta = u64::from(!old_a) + u64::from(new_a);
    // TTL is the high byte of the word at offset 8: `!old + (old - 0x100)`
    // is 0xfeff whatever the word (the TTL byte is not 0, checked above).
    ip[8] -= 1;
    let ip_c = checksum::adjust(u16::from_be_bytes([ip[10], ip[11]]), 0xfeff + a_delta);
    ip[10..12].copy_from_slice(&ip_c.to_be_bytes());
    ip[addr_at..addr_at + 4].copy_from_slice(&new_a.to_be_bytes());
    let old_port = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
    let old_c = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
    let mut c = checksum::adjust(old_c, a_delta + u64::from(!old_port) + u64::from(port));
    if is_udp && c == 0 {
        c = 0xffff;
    }
    l4[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Every case NAT handles (IPv6, ICMP echo, SCTP, UDP without checksum,
/// fragments), with all checks first: the reference the fast path is
/// tested against. Kept out of line so the fast path's caller saves no
/// registers for it.
#[inline(never)]
fn rewrite_general(
    data: &mut [u8],
    meta: &PacketMeta,
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(), XmitError> {
    // Checks: nothing is written before all of them passed.
    check_forwardable(data, meta)?;
    if !same_family(meta, &addr) {
        return Err(XmitError::FamilyMismatch);
    }
    check_not_later_fragment(meta)?;
    let ported = matches!(
        meta.protocol,
        protocol::TCP | protocol::UDP | protocol::SCTP
    );
    if !ported && !is_echo(meta) {
        return Err(XmitError::UnsupportedProtocol);
    }
    if meta.protocol == protocol::SCTP && meta.fragment != Fragment::No {
        // The CRC32c covers the whole packet, which a fragment is not.
        return Err(XmitError::Fragment);
    }
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = meta.l3_end();
    if end - l4 < l4_min_len(meta) {
        return Err(XmitError::Malformed(crate::wire::ParseError::Truncated));
    }
    if meta.protocol == protocol::UDP && meta.fragment == Fragment::No {
        // A fresh checksum may be needed below; its length must be sound.
        udp::UdpPacket::new_checked(&data[l4..end])?;
    }

    // Addresses: where they sit in the IP header.
    let (addr_at, addr_len) = match (meta.l3, side) {
        (L3::Ipv4, Side::Src) => (l3 + 12, 4),
        (L3::Ipv4, Side::Dst) => (l3 + 16, 4),
        (_, Side::Src) => (l3 + 8, 16),
        (_, Side::Dst) => (l3 + 24, 16),
    };
    let (new_addr, _) = addr_bytes(&addr);
    let mut old_addr = [0u8; 16];
    old_addr[..addr_len].copy_from_slice(&data[addr_at..addr_at + addr_len]);
    let port_at = l4 + if side == Side::Src { 0 } else { 2 };
    let old_port = if ported { get16(data, port_at) } else { 0 };

    // IP header: TTL, address, header checksum.
    decrement_ttl(data, meta);
    if meta.l3 == L3::Ipv4 {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..end]);
        let c = checksum::update_addr(ip.checksum(), &old_addr[..4], &new_addr[..4]);
        ip.set_checksum(c);
    }
    data[addr_at..addr_at + addr_len].copy_from_slice(&new_addr[..addr_len]);

    // L4 header.
    if meta.protocol == protocol::SCTP {
        if old_port != port {
            // A packet that arrived corrupt leaves as corrupt (its CRC32c
            // off by the same error): a fresh CRC over damaged chunks would
            // pass them off as sound to the receiver, which is the only
            // one left to drop them (the kernel's sctp_dnat_handler checks
            // the CRC only with an application helper and otherwise
            // recomputes it, blessing them).
            let error = {
                let b = &data[l4..end];
                SctpPacket::new_checked(b)?.checksum() ^ crate::wire::sctp::packet_crc(b)
            };
            let mut s = SctpPacket::new_checked(&mut data[l4..end])?;
            match side {
                Side::Src => s.set_src_port(port),
                Side::Dst => s.set_dst_port(port),
            }
            s.fill_checksum();
            if error != 0 {
                let c = s.checksum() ^ error;
                data[l4 + crate::wire::sctp::CHECKSUM_OFFSET..][..4]
                    .copy_from_slice(&c.to_le_bytes());
            }
        }
        return Ok(());
    }
    if ported {
        set16(data, port_at, port);
    }
    let Some(csum_rel) = pseudo_csum_offset(meta) else {
        return Ok(()); // ICMPv4 echo: the checksum covers no address
    };
    let csum_at = l4 + csum_rel;
    let old_csum = get16(data, csum_at);
    let is_udp = meta.protocol == protocol::UDP;
    if is_udp && old_csum == 0 {
        if meta.fragment == Fragment::No {
            let c = full_udp_checksum(data, meta)?;
            set16(data, csum_at, c);
        }
        return Ok(());
    }
    let mut c = checksum::update_addr(old_csum, &old_addr[..addr_len], &new_addr[..addr_len]);
    if ported {
        c = checksum::update16(c, old_port, port);
    }
    if is_udp && c == 0 {
        c = 0xffff;
    }
    set16(data, csum_at, c);
    Ok(())
}

/// Computes a UDP checksum from scratch over the datagram (its length
/// field bounds it) with the packet's current addresses; 0 becomes 0xFFFF.
pub(crate) fn full_udp_checksum(data: &mut [u8], meta: &PacketMeta) -> Result<u16, XmitError> {
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = meta.l3_end();
    let u = udp::UdpPacket::new_checked(&data[l4..end])?;
    let len = u.len();
    let dgram = &data[l4..l4 + usize::from(len)];
    let ph = match meta.l3 {
        L3::Ipv4 => {
            let ip = Ipv4Packet::new_unchecked(&data[l3..end]);
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), protocol::UDP, len)
        }
        _ => {
            let ip = crate::wire::ipv6::Ipv6Packet::new_unchecked(&data[l3..end]);
            checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), protocol::UDP, u32::from(len))
        }
    };
    // The field itself is 0 here, so it does not contribute to the sum.
    let c = checksum::finish(ph, dgram);
    Ok(if c == 0 { 0xffff } else { c })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::parse_packet;
    use crate::wire::testutil::{checksums_ok, frame, L4};
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const CLIENT4: &str = "198.18.1.10";
    const VIP4: &str = "198.18.0.100";
    const RIP4: &str = "198.19.0.5";
    const CLIENT6: &str = "2001:db8:1::10";
    const VIP6: &str = "2001:db8::100";
    const RIP6: &str = "2001:db8:2::5";

    #[test]
    fn inbound_tcp_v4_rewrites_destination_and_keeps_checksums_valid() {
        let f = frame(ip(CLIENT4), ip(VIP4), L4::Tcp, 40000, 80, None, b"GET /");
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        nat_inbound(&mut b, &m, ip(RIP4), 8080).unwrap();
        let n = parse_packet(b.data()).unwrap();
        assert_eq!((n.src, n.sport), (ip(CLIENT4), 40000), "client unchanged");
        assert_eq!((n.dst, n.dport), (ip(RIP4), 8080));
        assert_eq!(n.ttl, 63);
        assert!(checksums_ok(b.data()));
        // Bytes outside IP addresses, TTL, checksums and port are untouched.
        assert_eq!(b.data()[54..], f[54..], "payload");
    }

    #[test]
    fn udp_v4_with_zero_checksum_gets_a_fresh_one() {
        let f = frame(ip(CLIENT4), ip(VIP4), L4::UdpNoCsum, 5000, 53, None, b"q");
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        nat_inbound(&mut b, &m, ip(RIP4), 53).unwrap();
        let n = parse_packet(b.data()).unwrap();
        let at = usize::from(n.l4_offset) + 6;
        assert_ne!(get16(b.data(), at), 0, "a checksum was computed");
        assert!(checksums_ok(b.data()));
    }

    #[test]
    fn ttl_one_is_refused_and_packet_unchanged() {
        let mut f = frame(ip(CLIENT4), ip(VIP4), L4::Tcp, 1, 80, None, b"");
        f[22] = 1;
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        assert_eq!(
            nat_inbound(&mut b, &m, ip(RIP4), 80),
            Err(XmitError::TtlExpired)
        );
        assert_eq!(b.data(), &f[..]);
    }

    #[test]
    fn other_family_and_unsupported_protocols_are_refused() {
        let f = frame(ip(CLIENT4), ip(VIP4), L4::Tcp, 1, 80, None, b"");
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        assert_eq!(
            nat_inbound(&mut b, &m, ip(RIP6), 80),
            Err(XmitError::FamilyMismatch)
        );
        let mut gre = f.clone();
        gre[23] = 47;
        let mut m = parse_packet(&gre).unwrap_or(m);
        m.protocol = 47;
        let mut b = TestBuf::new(&gre);
        assert_eq!(
            nat_inbound(&mut b, &m, ip(RIP4), 80),
            Err(XmitError::UnsupportedProtocol)
        );
        assert_eq!(b.data(), &gre[..]);
    }

    #[test]
    fn icmpv6_echo_checksum_follows_the_address() {
        let f = frame(ip(CLIENT6), ip(VIP6), L4::IcmpEcho, 77, 0, None, b"ping");
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        nat_inbound(&mut b, &m, ip(RIP6), 0).unwrap();
        assert_eq!(parse_packet(b.data()).unwrap().dst, ip(RIP6));
        assert!(checksums_ok(b.data()));
    }

    fn l4_kind() -> impl Strategy<Value = L4> {
        prop_oneof![
            Just(L4::Tcp),
            Just(L4::Udp),
            Just(L4::UdpNoCsum),
            Just(L4::IcmpEcho)
        ]
    }

    fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr, IpAddr)> {
        prop_oneof![
            (any::<[u8; 3]>(), any::<[u8; 3]>(), any::<[u8; 3]>()).prop_map(|(a, b, c)| {
                // 198.18.0.0/15: second octet 18 or 19.
                let mk = |x: [u8; 3]| IpAddr::from([198, 18 + (x[0] & 1), x[1], x[2]]);
                (mk(a), mk(b), mk(c))
            }),
            (any::<[u16; 3]>(), any::<[u16; 3]>(), any::<[u16; 3]>()).prop_map(|(a, b, c)| {
                let mk = |x: [u16; 3]| IpAddr::from([0x2001, 0xdb8, x[0], 0, 0, x[1], 0, x[2]]);
                (mk(a), mk(b), mk(c))
            }),
        ]
    }

    proptest! {
        /// Whatever the fast path takes, the general path accepts and
        /// rewrites to the same bytes; what it declines it leaves untouched.
        #[test]
        fn fast_path_equals_general_path(
            kind in prop_oneof![Just(L4::Tcp), Just(L4::Udp), Just(L4::UdpNoCsum)],
            (c, v, r) in (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
            ports in any::<(u16, u16, u16)>(),
            vlan in proptest::option::of(1u16..4094),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            src_side in any::<bool>(),
            ttl in 0u8..4,
            edits in proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
            frag in 0u8..3,
        ) {
            let mk = |x: [u8; 4]| IpAddr::from([198, 18 + (x[0] & 1), x[1], x[2]]);
            let f = frame(mk(c), mk(v), kind, ports.0, ports.1, vlan, &payload);
            let mut m = parse_packet(&f).unwrap();
            let mut f = f;
            let l3 = usize::from(m.l3_offset);
            if ttl > 0 {
                f[l3 + 8] = ttl;
                m.ttl = ttl;
            }
            for (pos, val) in edits {
                if pos < f.len() {
                    f[pos] = val;
                }
            }
            m.fragment = [Fragment::No, Fragment::First, Fragment::Later][usize::from(frag)];
            let side = if src_side { Side::Src } else { Side::Dst };
            let a = match mk(r) {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => unreachable!(),
            };
            let mut fast = f.clone();
            let took = rewrite_v4_fast::<false>(&mut fast, &m, side, a, ports.2);
            if took {
                let mut general = f.clone();
                let r = rewrite_general(&mut general, &m, side, mk(r), ports.2);
                prop_assert_eq!(r, Ok(()));
                prop_assert_eq!(fast, general);
            } else {
                prop_assert_eq!(fast, f);
            }
        }

        /// The fast path for a parsed packet (the lane's), which skips the
        /// parser's tests, equals the general path: the bytes are edited
        /// before the parse (so lengths, TTL, flags and protocol are drawn
        /// too), link padding is left or trimmed, and whatever the parser
        /// accepts as a whole IPv4 TCP or UDP datagram is rewritten by both.
        #[test]
        fn parsed_fast_path_equals_general_path(
            kind in prop_oneof![Just(L4::Tcp), Just(L4::Udp), Just(L4::UdpNoCsum)],
            (c, v, r) in (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
            ports in any::<(u16, u16, u16)>(),
            vlan in proptest::option::of(1u16..4094),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            padding in proptest::collection::vec(any::<u8>(), 0..8),
            src_side in any::<bool>(),
            ttl in 0u8..4,
            edits in proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
        ) {
            let mk = |x: [u8; 4]| IpAddr::from([198, 18 + (x[0] & 1), x[1], x[2]]);
            let mut f = frame(mk(c), mk(v), kind, ports.0, ports.1, vlan, &payload);
            f.extend_from_slice(&padding);
            if ttl > 0 {
                let l3 = usize::from(parse_packet(&f).unwrap().l3_offset);
                f[l3 + 8] = ttl;
            }
            let unedited = edits.is_empty();
            for (pos, val) in edits {
                if pos < f.len() {
                    f[pos] = val;
                }
            }
            let Ok(m) = parse_packet(&f) else { return Ok(()) };
            if m.l3 != L3::Ipv4 || m.fragment != Fragment::No {
                return Ok(());
            }
            let side = if src_side { Side::Src } else { Side::Dst };
            let a = match mk(r) {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => unreachable!(),
            };
            let mut fast = f.clone();
            let took = rewrite_v4_fast::<true>(&mut fast, &m, side, a, ports.2);
            let mut general = f.clone();
            let r = rewrite_general(&mut general, &m, side, mk(r), ports.2);
            if took {
                prop_assert_eq!(r, Ok(()));
                prop_assert_eq!(fast, general);
            } else {
                prop_assert_eq!(fast, f);
            }
            // The common case is taken: an unedited TCP datagram, or UDP
            // with its checksum, with TTL left.
            if unedited && kind != L4::UdpNoCsum && m.ttl > 1 {
                prop_assert!(took);
            }
        }

        #[test]
        fn nat_round_trip_restores_the_clients_view_and_checksums_stay_valid(
            (client, vip, rip) in addr_pair(),
            kind in l4_kind(),
            cport in 1u16.., vport in 1u16.., rport in 1u16..,
            vlan in proptest::option::of(1u16..4094),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let kind = if kind == L4::UdpNoCsum && client.is_ipv6() { L4::Udp } else { kind };
            // Echo has no ports; the builders put the "port" in the
            // identifier, which NAT keeps: use one identifier throughout.
            let (vport, rport) = if kind == L4::IcmpEcho { (cport, cport) } else { (vport, rport) };
            // Client -> VIP, NATed to the real server.
            let f = frame(client, vip, kind, cport, vport, vlan, &payload);
            let m = parse_packet(&f).unwrap();
            let mut b = TestBuf::new(&f);
            nat_inbound(&mut b, &m, rip, rport).unwrap();
            prop_assert!(checksums_ok(b.data()), "inbound checksums");
            let n = parse_packet(b.data()).unwrap();
            prop_assert_eq!(n.dst, rip);
            // The server answers from rip:rport; the director restores VIP.
            let r = frame(rip, client, kind, rport, cport, vlan, &payload);
            let rm = parse_packet(&r).unwrap();
            let mut rb = TestBuf::new(&r);
            nat_outbound(&mut rb, &rm, vip, vport).unwrap();
            prop_assert!(checksums_ok(rb.data()), "outbound checksums");
            // What the client receives equals what VIP:vport would have sent.
            let expect = frame(vip, client, kind, vport, cport, vlan, &payload);
            let mut expect = expect;
            let em = parse_packet(&expect).unwrap();
            expect[usize::from(em.l3_offset) + if em.is_ipv4() { 8 } else { 7 }] -= 1;
            if em.is_ipv4() {
                let l3 = usize::from(em.l3_offset);
                Ipv4Packet::new_unchecked(&mut expect[l3..]).fill_checksum();
            }
            let got = parse_packet(rb.data()).unwrap();
            prop_assert_eq!(got.src, vip);
            if kind != L4::IcmpEcho {
                prop_assert_eq!(got.sport, vport);
            }
            if kind != L4::UdpNoCsum {
                prop_assert_eq!(rb.data(), &expect[..]);
            }
        }

        /// SCTP: the inbound rewrite gives the real server a packet whose
        /// CRC32c is valid for its new port, the outbound rewrite of the
        /// answer gives the client exactly what VIP:vport would have sent
        /// (CRC32c included), and rewriting the inbound packet back to
        /// VIP:vport restores the client's bytes.
        #[test]
        fn sctp_nat_round_trip_keeps_a_valid_crc32c(
            (client, vip, rip) in addr_pair(),
            cport in 1u16.., vport in 1u16.., rport in 1u16..,
            vtag in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            use crate::wire::testutil::{sctp_crc_ok, sctp_frame};
            // One DATA chunk carrying `data`, padded to 4 bytes.
            let mut chunk = vec![0u8, 3];
            chunk.extend_from_slice(&((16 + data.len()) as u16).to_be_bytes());
            chunk.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
            chunk.extend_from_slice(&data);
            chunk.resize(chunk.len().next_multiple_of(4), 0);
            let sctp_of = |f: &[u8]| {
                let m = parse_packet(f).unwrap();
                f[usize::from(m.l4_offset)..m.l3_end()].to_vec()
            };
            let f = sctp_frame(client, vip, cport, vport, vtag, &[&chunk]);
            let m = parse_packet(&f).unwrap();
            let mut b = TestBuf::new(&f);
            nat_inbound(&mut b, &m, rip, rport).unwrap();
            prop_assert!(checksums_ok(b.data()));
            let to_real = sctp_of(b.data());
            prop_assert!(sctp_crc_ok(&to_real), "inbound CRC32c");
            prop_assert_eq!(
                &to_real[..],
                &sctp_of(&sctp_frame(client, rip, cport, rport, vtag, &[&chunk]))[..]
            );
            // Back again: the client's packet, byte for byte.
            let bm = parse_packet(b.data()).unwrap();
            let mut back = TestBuf::new(b.data());
            rewrite_general(back.data_mut(), &bm, Side::Dst, vip, vport).unwrap();
            prop_assert_eq!(sctp_of(back.data()), sctp_of(&f));
            // The real server's answer reaches the client as from VIP:vport.
            let r = sctp_frame(rip, client, rport, cport, vtag, &[&chunk]);
            let rm = parse_packet(&r).unwrap();
            let mut rb = TestBuf::new(&r);
            nat_outbound(&mut rb, &rm, vip, vport).unwrap();
            prop_assert!(checksums_ok(rb.data()));
            prop_assert_eq!(
                sctp_of(rb.data()),
                sctp_of(&sctp_frame(vip, client, vport, cport, vtag, &[&chunk]))
            );
        }
    }
}
