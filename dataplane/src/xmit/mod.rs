//! Forwarding rewrites: what each IPVS forwarding method does to a packet
//! on the wire (ipvs.md section 5), one file per method.
//!
//! * [`nat`] — masquerading: inbound destination to the real server,
//!   outbound source back to the virtual service, checksums patched
//!   incrementally (RFC 1624).
//! * [`dr`] — direct routing: only the TTL (and the IPv4 header checksum)
//!   changes; the caller sets the real server's MAC.
//! * [`tunnel`] — IPIP / GUE / GRE encapsulation with an outer IPv4 or
//!   IPv6 header (the families may differ), and decapsulation for tests
//!   and for ICMP errors about the director's own tunnel packets.
//! * [`seqadj`] — TCP sequence numbers moved by a per-connection offset
//!   (SYN proxy, ISN randomisation), SACK blocks included.
//! * [`fullnat`] — FULLNAT (DPVS): both endpoints rewritten, so real servers
//!   answer the director's local address; the TOA option carries the
//!   client's address to them.
//! * [`icmp`] — ICMP errors about NAT connections translated in both
//!   directions, and the errors the director itself sends: fragmentation
//!   needed / packet too big, time exceeded, port unreachable.
//!
//! # Common contract
//! * Every function takes the packet as `&mut impl PacketBuf` (an mbuf in
//!   the worker, a `TestBuf` in tests) plus the [`PacketMeta`] that
//!   [`parse_packet`](crate::wire::parse_packet) produced for exactly these
//!   bytes, plus plain parameters. They never allocate, log or panic.
//! * Checks come first: on `Err` the packet is unchanged (headroom is
//!   claimed before anything is written, so [`XmitError::NoHeadroom`]
//!   leaves it unchanged too).
//! * Forwarding decrements TTL / hop limit (5, common part); a packet with
//!   TTL <= 1 is refused with [`XmitError::TtlExpired`] and the caller
//!   answers it with [`icmp::icmp_error_reply`] (time exceeded).
//! * The Ethernet header (with its VLAN tag, if any) stays in front. The
//!   caller fills in the MAC addresses after next-hop resolution
//!   ([`set_macs`]); encapsulation moves it forward to make room for the
//!   outer headers, decapsulation moves it back.
//! * After a rewrite the `PacketMeta` no longer describes the packet; parse
//!   again if it is needed.

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod icmp_both;
pub mod nat;
pub mod seqadj;
pub mod tunnel;

use std::net::IpAddr;

use crate::buf::PacketBuf;
use crate::wire::ethernet::{EthernetFrame, MacAddr};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{checksum, Fragment, PacketMeta, ParseError, L3};

/// Why a rewrite refused a packet. The packet is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XmitError {
    /// Not an IP packet (ARP).
    #[error("not an IP packet")]
    NotIp,
    /// An address of the other family than the packet's where the method
    /// cannot change the family (NAT, ICMP errors).
    #[error("address family does not match the packet")]
    FamilyMismatch,
    /// A later fragment (no L4 header): the director does not reassemble.
    #[error("non-first fragment cannot be rewritten")]
    Fragment,
    /// L4 protocol the method cannot rewrite (NAT: not TCP/UDP/SCTP/echo).
    #[error("protocol not supported by this forwarding method")]
    UnsupportedProtocol,
    /// TTL or hop limit would reach 0: answer with time exceeded.
    #[error("TTL or hop limit exceeded")]
    TtlExpired,
    /// Larger than the path MTU and may not be fragmented: answer with
    /// fragmentation needed / packet too big carrying this MTU.
    #[error("packet larger than the MTU {mtu}")]
    TooBig { mtu: u16 },
    /// Larger than the MTU but fragmentable: the director does not
    /// fragment, the packet is dropped.
    #[error("packet would need fragmentation")]
    NeedsFragmentation,
    /// The tunnel overhead leaves an MTU below 68 (5.4).
    #[error("tunnel MTU below 68")]
    MtuTooSmall,
    /// The mbuf has no headroom for the headers to insert.
    #[error("no headroom for the new headers")]
    NoHeadroom,
    /// The result would exceed the maximum IP packet size.
    #[error("result exceeds the maximum IP length")]
    TooLong,
    /// GUE tunnel without a destination port (it is mandatory).
    #[error("GUE tunnel without a port")]
    GuePortMissing,
    /// The bytes do not match the `PacketMeta` or a header is malformed.
    #[error("malformed packet: {0}")]
    Malformed(ParseError),
    /// Decapsulation of something that is not IPIP/GUE/GRE.
    #[error("not a tunnel packet")]
    NotTunnel,
    /// The director never answers an ICMP error (or, for frag-needed,
    /// any ICMP) with an ICMP error.
    #[error("no ICMP error in reply to ICMP")]
    IcmpInReplyToIcmp,
    /// The packet's source may not be answered (unspecified, multicast,
    /// broadcast).
    #[error("source address may not be answered")]
    BadSource,
    /// The ICMP message's checksum does not verify (NAT in_icmp, 5.5).
    #[error("ICMP checksum does not verify")]
    BadChecksum,
    /// No route (no source address) towards the destination.
    #[error("no route towards the destination")]
    NoRoute,
    /// Fragmentation needed about a tunnel packet whose client packet did
    /// not have DF: the client does no PMTU discovery, nothing is sent.
    #[error("client does not use PMTU discovery")]
    NoPmtud,
}

impl From<ParseError> for XmitError {
    fn from(e: ParseError) -> Self {
        XmitError::Malformed(e)
    }
}

/// The headers the IPv4 fast paths of NAT and FULLNAT rewrite: the IPv4
/// header and the whole TCP (20 bytes) or UDP (8 bytes) header, with
/// whether it is UDP, for an IPv4 TCP or UDP packet that is not a later
/// fragment, has TTL left (in `meta` and in the bytes), a sound UDP length
/// on a whole datagram and a UDP checksum to patch. `None` for anything
/// else: the general path decides (and refuses as before). Fixed-size views
/// so that no later access needs its own bounds check.
#[inline(always)]
pub(crate) fn v4_fast_headers<'a>(
    data: &'a mut [u8],
    meta: &PacketMeta,
) -> Option<(&'a mut [u8; 20], &'a mut [u8], bool)> {
    v4_fast_headers_of::<false>(data, meta)
}

/// [`v4_fast_headers`]; with `PARSED`, for a `meta` that is
/// [`crate::wire::parse_packet`]'s answer for `data` (link padding
/// trimmed or not) about a whole IPv4 TCP or UDP datagram, as the fast
/// lane's packets are: the tests the parser made on the same bytes are not
/// made again (the family, the fragment, the header lengths, the UDP
/// length, the TTL byte against `meta`'s). The property test
/// `parsed_fast_path_equals_general_path` holds it to the general path.
/// Out of its precondition it still never panics: every slice is checked.
#[inline(always)]
pub(crate) fn v4_fast_headers_of<'a, const PARSED: bool>(
    data: &'a mut [u8],
    meta: &PacketMeta,
) -> Option<(&'a mut [u8; 20], &'a mut [u8], bool)> {
    debug_assert!(!PARSED || (meta.l3 == L3::Ipv4 && meta.fragment == Fragment::No));
    if !PARSED && (meta.l3 != L3::Ipv4 || meta.fragment == Fragment::Later) {
        return None;
    }
    if meta.ttl <= 1 {
        return None;
    }
    let is_udp = match meta.protocol {
        crate::wire::ipv4::protocol::TCP => false,
        crate::wire::ipv4::protocol::UDP => true,
        _ => return None,
    };
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = meta.l3_end();
    if !PARSED && (end > data.len() || l4 > end || l4 < l3 + 20) {
        return None;
    }
    let (head, seg) = data.get_mut(..end)?.split_at_mut_checked(l4)?;
    let ip = <&mut [u8; 20]>::try_from(head.get_mut(l3..l3 + 20)?).ok()?;
    if !PARSED && ip[8] == 0 {
        // The bytes disagree with `meta.ttl`: the general path saturates.
        return None;
    }
    let hdr = if is_udp {
        let u = seg.get(..crate::wire::udp::HEADER_LEN)?;
        let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if !PARSED
            && meta.fragment == Fragment::No
            && (ulen < crate::wire::udp::HEADER_LEN || ulen > end - l4)
        {
            return None;
        }
        if u[6] == 0 && u[7] == 0 {
            return None;
        }
        crate::wire::udp::HEADER_LEN
    } else {
        crate::wire::tcp::HEADER_LEN
    };
    Some((ip, seg.get_mut(..hdr)?, is_udp))
}

/// Refuses what no forwarding method can transmit: non-IP, TTL <= 1, and
/// a frame shorter than the meta says.
pub(crate) fn check_forwardable(data: &[u8], meta: &PacketMeta) -> Result<(), XmitError> {
    if meta.l3 == L3::Arp {
        return Err(XmitError::NotIp);
    }
    if data.len() < meta.l3_end() || usize::from(meta.l4_offset) > meta.l3_end() {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    if meta.ttl <= 1 {
        return Err(XmitError::TtlExpired);
    }
    Ok(())
}

/// Decrements TTL / hop limit (IPv4: header checksum patched per RFC 1624).
/// Callers ran [`check_forwardable`] first.
///
/// Always inlined, with the common case (an IPv4 header whose TTL byte is
/// not 0) in straight-line code: the word holding TTL changes by -0x100,
/// so RFC 1624's `!old + new` is 0xfeff whatever the word, the same sum
/// [`checksum::update16`] makes of it (and the NAT rewrite's `patch_v4`
/// uses). Anything else takes [`decrement_ttl_general`]. Out of line, the
/// call cost direct routing 41 instructions per packet.
#[inline(always)]
pub(crate) fn decrement_ttl(data: &mut [u8], meta: &PacketMeta) {
    if meta.l3 == L3::Ipv4 {
        let l3 = usize::from(meta.l3_offset);
        if let Some(ip) = data
            .get_mut(l3..l3 + 20)
            .and_then(|h| <&mut [u8; 20]>::try_from(h).ok())
        {
            if ip[8] != 0 {
                ip[8] -= 1;
                let c = checksum::adjust(u16::from_be_bytes([ip[10], ip[11]]), 0xfeff);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                return;
            }
        }
    }
    decrement_ttl_general(data, meta)
}

/// [`decrement_ttl`] for every case: IPv6, and an IPv4 TTL byte of 0
/// (left 0, checksum unchanged) or a header cut short.
#[inline(never)]
fn decrement_ttl_general(data: &mut [u8], meta: &PacketMeta) {
    let l3 = usize::from(meta.l3_offset);
    match meta.l3 {
        L3::Ipv4 => {
            if let Some(h) = data.get_mut(l3..) {
                Ipv4Packet::new_unchecked(h).decrement_ttl();
            }
        }
        L3::Ipv6 => {
            if let Some(h) = data.get_mut(l3 + 7) {
                *h = h.saturating_sub(1);
            }
        }
        L3::Arp => {}
    }
}

/// Refuses a later fragment, which has no L4 header to rewrite.
pub(crate) fn check_not_later_fragment(meta: &PacketMeta) -> Result<(), XmitError> {
    if meta.fragment == Fragment::Later {
        return Err(XmitError::Fragment);
    }
    Ok(())
}

/// Whether `addr` has the packet's family.
pub(crate) fn same_family(meta: &PacketMeta, addr: &IpAddr) -> bool {
    matches!(
        (meta.l3, addr),
        (L3::Ipv4, IpAddr::V4(_)) | (L3::Ipv6, IpAddr::V6(_))
    )
}

/// Sets source and destination MAC of the frame (after next-hop
/// resolution). `Malformed` if the frame has no Ethernet header.
pub fn set_macs(buf: &mut impl PacketBuf, src: MacAddr, dst: MacAddr) -> Result<(), XmitError> {
    let mut eth = EthernetFrame::new_checked(buf.data_mut())?;
    eth.set_src_addr(src);
    eth.set_dst_addr(dst);
    Ok(())
}

/// The MTU check of 5.4 for NAT and DR: `Ok` if the IP packet fits `mtu`;
/// otherwise `TooBig` (IPv4 with DF, or IPv6) or `NeedsFragmentation`.
pub fn check_mtu(meta: &PacketMeta, mtu: u16) -> Result<(), XmitError> {
    if meta.ip_len <= mtu {
        return Ok(());
    }
    match meta.l3 {
        L3::Ipv4 if !meta.dont_frag => Err(XmitError::NeedsFragmentation),
        _ => Err(XmitError::TooBig { mtu }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::model::{TunnelConfig, TunnelCsum, TunnelType};
    use crate::wire::testutil::{frame, L4};
    use crate::wire::{parse_icmp_quote, parse_packet};
    use proptest::prelude::*;

    /// Runs every rewrite on a frame the classifier accepted; none may
    /// panic, and a refusal must leave the bytes unchanged.
    fn all_rewrites(f: &[u8]) {
        let Ok(m) = parse_packet(f) else { return };
        let (a4, a6): (IpAddr, IpAddr) = (
            "198.19.0.5".parse().unwrap(),
            "2001:db8:2::5".parse().unwrap(),
        );
        let same = if m.is_ipv6() { a6 } else { a4 };
        let check = |b: &TestBuf, r: Result<(), XmitError>| {
            if r.is_err() {
                assert_eq!(b.data(), f, "refusal {r:?} changed the packet");
            }
        };
        let mut b = TestBuf::new(f);
        check(&b.clone(), nat::nat_inbound(&mut b, &m, same, 8080));
        let mut b = TestBuf::new(f);
        check(&b.clone(), nat::nat_outbound(&mut b, &m, same, 80));
        let mut b = TestBuf::new(f);
        check(&b.clone(), dr::dr_xmit(&mut b, &m));
        for kind in [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre] {
            for (src, dst) in [(a4, a4), (a6, a6)] {
                let p = tunnel::TunnelParams {
                    config: TunnelConfig {
                        kind,
                        port: 6080,
                        csum: TunnelCsum::Csum,
                    },
                    src,
                    dst,
                    ident: 1,
                    gue_sport: 50000,
                    mtu: 1500,
                    pmtu_disc: true,
                    inner_csum_partial: true,
                };
                let mut b = TestBuf::new(f);
                let r = tunnel::encapsulate(&mut b, &m, &p);
                if r.is_err() {
                    assert_eq!(b.data(), f);
                } else {
                    let _ = tunnel::decapsulate(&mut b);
                }
            }
        }
        for k in [
            icmp::IcmpErrorKind::TimeExceeded,
            icmp::IcmpErrorKind::PortUnreachable,
            icmp::IcmpErrorKind::TooBig { mtu: 1400 },
        ] {
            let mut b = TestBuf::new(f);
            let r = icmp::icmp_error_reply(&mut b, &m, k, same);
            if r.is_err() {
                assert_eq!(b.data(), f);
            }
        }
        if let Ok(q) = parse_icmp_quote(f, &m) {
            let mut b = TestBuf::new(f);
            check(&b.clone(), icmp::nat_icmp_inbound(&mut b, &m, &q, same, 1));
            let mut b = TestBuf::new(f);
            check(&b.clone(), icmp::nat_icmp_outbound(&mut b, &m, &q, same, 1));
            for kind in [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre] {
                let cfg = TunnelConfig {
                    kind,
                    port: q.dport,
                    csum: TunnelCsum::NoCsum,
                };
                if let Ok(tq) = icmp::parse_tunnel_error(f, &m, &q, &cfg) {
                    let mut b = TestBuf::new(f);
                    check(
                        &b.clone(),
                        icmp::tunnel_error_to_client(&mut b, &m, &tq, 1400, a4),
                    );
                }
            }
        }
    }

    proptest! {
        /// The straight-line IPv4 TTL decrement writes what the general
        /// one (`Ipv4Packet::decrement_ttl`) writes, for any header bytes,
        /// TTL 0 and 0xffff/0x0000 checksums included.
        #[test]
        fn ttl_decrement_fast_case_equals_the_general_one(
            header in proptest::array::uniform20(any::<u8>()),
            ttl in prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()],
            csum in prop_oneof![Just(0u16), Just(0xffffu16), any::<u16>()],
            cut in 0usize..4,
        ) {
            let f0 = frame(
                "198.18.1.10".parse().unwrap(),
                "198.18.0.100".parse().unwrap(),
                L4::Udp,
                1000,
                80,
                None,
                b"data",
            );
            let m = parse_packet(&f0).unwrap();
            let mut f = f0.clone();
            let l3 = usize::from(m.l3_offset);
            f[l3..l3 + 20].copy_from_slice(&header);
            f[l3 + 8] = ttl;
            f[l3 + 10..l3 + 12].copy_from_slice(&csum.to_be_bytes());
            // A frame cut inside the header takes the general case too.
            let len = if cut == 0 { l3 + 19 } else { f.len() };
            let mut fast = f[..len].to_vec();
            let mut general = fast.clone();
            decrement_ttl(&mut fast, &m);
            decrement_ttl_general(&mut general, &m);
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn rewrites_never_panic_on_mutated_frames(
            v6 in any::<bool>(),
            l4 in prop_oneof![Just(L4::Tcp), Just(L4::Udp), Just(L4::IcmpEcho)],
            edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
            cut in 20usize..200,
            error_wrap in any::<bool>(),
            tunnel_first in any::<bool>(),
        ) {
            let (s, d): (IpAddr, IpAddr) = if v6 {
                ("2001:db8:1::10".parse().unwrap(), "2001:db8::100".parse().unwrap())
            } else {
                ("198.18.1.10".parse().unwrap(), "198.18.0.100".parse().unwrap())
            };
            let mut f = frame(s, d, l4, 1000, 80, None, b"0123456789abcdef");
            if tunnel_first && !v6 {
                // An IPIP packet of the director's, so the tunnel-error path runs.
                let m = parse_packet(&f).unwrap();
                let p = tunnel::TunnelParams {
                    config: TunnelConfig::default(),
                    src: "198.18.0.1".parse().unwrap(),
                    dst: "198.19.0.5".parse().unwrap(),
                    ident: 1,
                    gue_sport: 0,
                    mtu: 1500,
                    pmtu_disc: true,
                    inner_csum_partial: false,
                };
                let mut b = TestBuf::new(&f);
                tunnel::encapsulate(&mut b, &m, &p).unwrap();
                f = b.data().to_vec();
            }
            if error_wrap {
                // Wrap it in an ICMP error so the quote paths run too.
                let m = parse_packet(&f).unwrap();
                let mut b = TestBuf::new(&f);
                icmp::icmp_error_reply(&mut b, &m, icmp::IcmpErrorKind::PortUnreachable, d).unwrap();
                f = b.data().to_vec();
            }
            for (pos, val) in edits {
                if pos < f.len() { f[pos] = val; }
            }
            f.truncate(cut);
            all_rewrites(&f);
        }
    }

    #[test]
    fn mtu_check_separates_df_from_fragmentable() {
        let f = frame(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            L4::Udp,
            1,
            2,
            None,
            &[0u8; 100],
        );
        let mut m = parse_packet(&f).unwrap();
        assert_eq!(check_mtu(&m, 128), Ok(()));
        m.dont_frag = true;
        assert_eq!(check_mtu(&m, 127), Err(XmitError::TooBig { mtu: 127 }));
        m.dont_frag = false;
        assert_eq!(check_mtu(&m, 127), Err(XmitError::NeedsFragmentation));
    }
}
