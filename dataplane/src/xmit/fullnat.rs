//! FULLNAT (DPVS's forwarding method, not in the kernel's IPVS).
//!
//! Why: with NAT the real server sees the client's address, so its replies
//! must route back through the director; with FULLNAT both ends change and
//! the real server answers the director's own local address, so it needs
//! no route back through the director. The director can then sit on one
//! port beside clients and servers ("one-armed").
//!
//! * Inbound (client -> real server): `CIP:cport -> VIP:vport` becomes
//!   `LIP:lport -> RIP:rport` ([`fullnat_inbound`]).
//! * Outbound (real server's reply): `RIP:rport -> LIP:lport` becomes
//!   `VIP:vport -> CIP:cport` ([`fullnat_outbound`]).
//!
//! Both rewrites change four fields and the TTL with one RFC 1624 update
//! of each checksum. UDP with checksum 0 gets a fresh checksum as in NAT.
//!
//! Since the real server no longer sees the client's address, DPVS hands it
//! over in the TOA TCP option (kind 254; `kind, len, port, address`, 8
//! bytes for IPv4 and 20 for IPv6; reference wave2.md c.5), inserted right
//! behind the 20-byte TCP header of client segments that complete the
//! handshake or carry the first data ([`insert_toa`]). Room for it is made
//! at the real server's SYN-ACK: its MSS option is lowered by the option's
//! length ([`clamp_mss`]), so the client never sends a segment that the
//! option would push over the MTU. On the client's SYN the timestamp option
//! is overwritten with NOPs ([`strip_timestamps`]): many clients share one
//! local address, and their unrelated timestamps would trip the real
//! server's PAWS check.
//!
//! The contract is the module's (see [`super`]): checks first, the packet
//! unchanged on `Err`, no allocation.

use std::net::IpAddr;

use super::seqadj::SeqAdj;
use super::{check_forwardable, check_not_later_fragment, decrement_ttl, same_family, XmitError};
use crate::buf::PacketBuf;
use crate::conn::ConnAddr;
use crate::wire::ipv4::protocol;
use crate::wire::{checksum, get16, set16, tcp, udp, Fragment, PacketMeta, ParseError, L3};

/// TCP option kind of TOA (DPVS `TCPOPT_ADDR`).
pub const TOA_KIND: u8 = 254;
/// TOA length with an IPv4 client address.
pub const TOA_LEN_V4: usize = 8;
/// TOA length with an IPv6 client address.
pub const TOA_LEN_V6: usize = 20;
/// Longest TCP header (data offset 15).
const TCP_MAX_HEADER: usize = 60;

/// The length of the TOA option carrying `client`.
pub fn toa_len(client: &IpAddr) -> usize {
    match client {
        IpAddr::V4(_) => TOA_LEN_V4,
        IpAddr::V6(_) => TOA_LEN_V6,
    }
}

/// Writes the TOA option for `client:port` into `out` (which must be
/// [`toa_len`] bytes long).
pub fn write_toa(out: &mut [u8], client: &IpAddr, port: u16) {
    let n = toa_len(client);
    out[0] = TOA_KIND;
    out[1] = n as u8;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match client {
        IpAddr::V4(a) => out[4..8].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out[4..20].copy_from_slice(&a.octets()),
    }
}

/// Client -> real server: source becomes `laddr:lport`, destination
/// `raddr:rport`, TTL decremented.
#[inline]
pub fn fullnat_inbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
) -> Result<(), XmitError> {
    rewrite(buf.data_mut(), meta, (laddr, lport), (raddr, rport))
}

/// Real server -> client: source becomes `vaddr:vport`, destination
/// `caddr:cport`, TTL decremented.
#[inline]
pub fn fullnat_outbound(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    vaddr: IpAddr,
    vport: u16,
    caddr: IpAddr,
    cport: u16,
) -> Result<(), XmitError> {
    rewrite(buf.data_mut(), meta, (vaddr, vport), (caddr, cport))
}

/// The TCP sequence translation that rides on a FULLNAT rewrite
/// ([`crate::xmit::seqadj`]): folded into the rewrite's single checksum
/// update on the IPv4 fast path, applied after it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqMove {
    /// Nothing (UDP, or the plain rewrite).
    None,
    /// A client's segment toward the real server: its sequence number
    /// moves forward ([`SeqAdj::shift_seq`]).
    Shift(SeqAdj),
    /// A reply toward the client: its acknowledgement and SACK edges move
    /// back ([`SeqAdj::unshift_ack`]).
    Unshift(SeqAdj),
}

/// [`fullnat_inbound`] with the client's sequence number moved by `adj`
/// (TCP; UDP is rewritten alone): the same bytes as the rewrite followed
/// by [`SeqAdj::shift_seq`], in one checksum update on the IPv4 fast path.
/// Addresses as the connection table keeps them (IPv4-mapped for IPv4),
/// so that the fast path takes them as they are.
#[inline]
pub fn fullnat_inbound_seq(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    local: (ConnAddr, u16),
    real: (ConnAddr, u16),
    adj: SeqAdj,
) -> Result<(), XmitError> {
    rewrite_seq(buf.data_mut(), meta, local, real, SeqMove::Shift(adj))
}

/// [`fullnat_outbound`] with the reply's acknowledgement and SACK edges
/// moved back by `adj` (TCP): the same bytes as the rewrite followed by
/// [`SeqAdj::unshift_ack`].
#[inline]
pub fn fullnat_outbound_seq(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    virt: (ConnAddr, u16),
    client: (ConnAddr, u16),
    adj: SeqAdj,
) -> Result<(), XmitError> {
    rewrite_seq(buf.data_mut(), meta, virt, client, SeqMove::Unshift(adj))
}

/// The IPv4 fast path alone of [`fullnat_inbound_seq`] and
/// [`fullnat_outbound_seq`], the new endpoints given as words (host order):
/// `true` when it rewrote the packet (the same bytes as those functions),
/// `false`, having written nothing, for anything it does not take (the
/// caller then goes the general way). For the stage's established path,
/// which keeps the local address's word with the connection.
#[inline(always)]
pub fn fullnat_v4_fast(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    src: (u32, u16),
    dst: (u32, u16),
    mv: SeqMove,
) -> bool {
    let data = buf.data_mut();
    let Some(sack) = rewrite_v4_fast(data, meta, src, dst, mv) else {
        return false;
    };
    if let Some((adj, hlen)) = sack {
        // The fast path checked the packet lies within the frame.
        let l4 = usize::from(meta.l4_offset);
        adj.unshift_sack(&mut data[l4..meta.l3_end()], hlen);
    }
    true
}

/// The creation variant of [`fullnat_v4_fast`], for the client's segment
/// that has just created a connection (a SYN): the rewrite with the
/// sequence number set to `isn`, the ISN the director picked toward the
/// real server, instead of moved by an offset not known yet. Returns the
/// client's own sequence number, having written the same bytes as
/// [`fullnat_v4_fast`] with `SeqMove::Shift(SeqAdj::between(client, isn))`
/// (the connection's offset from now on); `None`, having written nothing,
/// for anything that function does not take, and for UDP. Options are left
/// as they are (the caller strips a SYN's timestamps first).
#[inline(always)]
pub fn fullnat_v4_syn(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    src: (u32, u16),
    dst: (u32, u16),
    isn: u32,
) -> Option<u32> {
    let data = buf.data_mut();
    let seg_len = meta.l3_end().wrapping_sub(usize::from(meta.l4_offset));
    let (ip, l4h, is_udp) = super::v4_fast_headers(data, meta)?;
    if is_udp {
        return None;
    }
    let hlen = usize::from(l4h[12] >> 4) * 4;
    if hlen < tcp::HEADER_LEN || hlen > seg_len {
        return None;
    }
    let client = u32::from_be_bytes([l4h[4], l4h[5], l4h[6], l4h[7]]);
    // An offset of 0 leaves the field and the sum alone, as the
    // established path does (adding `!x + x` could turn a checksum of
    // 0x0000 into 0xffff).
    let by = isn.wrapping_sub(client);
    let seq = (by != 0).then_some((4, by));
    write_v4(ip, l4h, tcp::CHECKSUM_OFFSET, false, src, dst, seq);
    Some(client)
}

/// The IPv4 address of a connection table address (`::ffff:a.b.c.d`):
/// two word compares of the first 12 bytes and the last four swapped (the
/// little-endian reading keeps the compiler from shuffling bytes).
#[inline(always)]
pub fn mapped_v4(a: &ConnAddr) -> Option<u32> {
    let v = u128::from_le_bytes(a.0);
    let (head, mid) = (v as u64, (v >> 64) as u32);
    (head == 0 && mid == 0xffff_0000).then_some(((v >> 96) as u32).swap_bytes())
}

/// The rewrite and the sequence translation `mv`. A segment too short for
/// its own header is refused as malformed (the rewrite may have been
/// written: the caller drops it).
#[inline(always)]
fn rewrite_seq(
    data: &mut [u8],
    meta: &PacketMeta,
    src: (ConnAddr, u16),
    dst: (ConnAddr, u16),
    mv: SeqMove,
) -> Result<(), XmitError> {
    if let (Some(s), Some(d)) = (mapped_v4(&src.0), mapped_v4(&dst.0)) {
        if let Some(sack) = rewrite_v4_fast(data, meta, (s, src.1), (d, dst.1), mv) {
            if let Some((adj, hlen)) = sack {
                let l4 = usize::from(meta.l4_offset);
                adj.unshift_sack(&mut data[l4..meta.l3_end()], hlen);
            }
            return Ok(());
        }
    }
    let (src, dst) = ((src.0.to_ip(), src.1), (dst.0.to_ip(), dst.1));
    rewrite_seq_general(data, meta, src, dst, mv)
}

/// The reference of [`rewrite_seq`]: [`rewrite_general`], then the
/// sequence adjuster's own update.
#[inline(never)]
fn rewrite_seq_general(
    data: &mut [u8],
    meta: &PacketMeta,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    mv: SeqMove,
) -> Result<(), XmitError> {
    rewrite_general(data, meta, src, dst)?;
    if meta.protocol != protocol::TCP {
        return Ok(());
    }
    // The rewrite checked the header lies within the packet.
    let seg = &mut data[usize::from(meta.l4_offset)..meta.l3_end()];
    let r = match mv {
        SeqMove::None => Ok(()),
        SeqMove::Shift(adj) => adj.shift_seq(seg),
        SeqMove::Unshift(adj) => adj.unshift_ack(seg),
    };
    r.map_err(|_| XmitError::Malformed(ParseError::Truncated))
}

/// Sum of `!old + new` over the 16-bit words of two equal-length byte
/// strings (an address): the RFC 1624 delta [`checksum::adjust`] takes.
#[inline(always)]
fn delta(old: &[u8], new: &[u8]) -> u64 {
    let mut acc = 0u64;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    acc
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

/// Both endpoints, the TTL and the checksums (TCP and UDP only).
#[inline(always)]
fn rewrite(
    data: &mut [u8],
    meta: &PacketMeta,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
) -> Result<(), XmitError> {
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src.0, dst.0) {
        let (s, d) = ((u32::from(s), src.1), (u32::from(d), dst.1));
        if rewrite_v4_fast(data, meta, s, d, SeqMove::None).is_some() {
            return Ok(());
        }
    }
    rewrite_general(data, meta, src, dst)
}

/// What a fast rewrite left to do: the SACK blocks of a reply with
/// options (`(adjustment, header length)`), or nothing.
type SackLeft = Option<(SeqAdj, usize)>;

/// The common case, an IPv4 TCP or UDP (with a checksum) packet that is
/// not a later fragment, in straight-line code over fixed-size views (as
/// NAT's fast path): `false`, having written nothing, for anything else or
/// anything [`rewrite_general`] could refuse. The property test
/// `fast_path_equals_general_path` checks it writes the same bytes.
///
/// A TCP segment's sequence translation `mv` joins the same checksum
/// update: one more `!old + new` term (RFC 1624 sums commute, and the
/// one's-complement sum has one representation of a non-zero value, so
/// the result is the two updates' to the bit). Returns, besides, the
/// SACK blocks still to move when a reply has options.
#[inline(always)]
fn rewrite_v4_fast(
    data: &mut [u8],
    meta: &PacketMeta,
    src: (u32, u16),
    dst: (u32, u16),
    mv: SeqMove,
) -> Option<SackLeft> {
    let seg_len = meta.l3_end().wrapping_sub(usize::from(meta.l4_offset));
    let (ip, l4h, is_udp) = super::v4_fast_headers(data, meta)?;
    let csum_at = if is_udp {
        udp::CHECKSUM_OFFSET
    } else {
        tcp::CHECKSUM_OFFSET
    };
    // The sequence field to move (offset, amount added), the checks of
    // `SeqAdj` first.
    let mut seq = None;
    let mut sack = None;
    if !is_udp {
        let adj = match mv {
            SeqMove::None => None,
            SeqMove::Shift(a) | SeqMove::Unshift(a) => Some(a),
        };
        if let Some(adj) = adj {
            let hlen = usize::from(l4h[12] >> 4) * 4;
            if hlen < tcp::HEADER_LEN || hlen > seg_len {
                return None;
            }
            if adj.delta() != 0 {
                match mv {
                    SeqMove::Shift(_) => seq = Some((4, adj.delta())),
                    _ => {
                        if l4h[13] & tcp::flags::ACK != 0 {
                            seq = Some((8, adj.delta().wrapping_neg()));
                        }
                        if hlen > tcp::HEADER_LEN {
                            sack = Some((adj, hlen));
                        }
                    }
                }
            }
        }
    }
    write_v4(ip, l4h, csum_at, is_udp, src, dst, seq);
    Some(sack)
}

/// The writing half of [`rewrite_v4_fast`] (checks done): the new
/// endpoints and the TTL, the sequence field at `seq.0` of the L4 header
/// moved by `seq.1`, one RFC 1624 update of each checksum.
#[inline(always)]
fn write_v4(
    ip: &mut [u8; 20],
    l4h: &mut [u8],
    csum_at: usize,
    is_udp: bool,
    src: (u32, u16),
    dst: (u32, u16),
    seq: Option<(usize, u32)>,
) {
    let old_s = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let old_d = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let a_delta = u64::from(!old_s) + u64::from(src.0) + u64::from(!old_d) + u64::from(dst.0);
    // TTL: see NAT's `patch_v4` (0xfeff whatever the word).
    ip[8] -= 1;
    let ip_c = checksum::adjust(u16::from_be_bytes([ip[10], ip[11]]), 0xfeff + a_delta);
    ip[10..12].copy_from_slice(&ip_c.to_be_bytes());
    ip[12..16].copy_from_slice(&src.0.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.0.to_be_bytes());
    let old_sp = u16::from_be_bytes([l4h[0], l4h[1]]);
    let old_dp = u16::from_be_bytes([l4h[2], l4h[3]]);
    let p_delta = u64::from(!old_sp) + u64::from(src.1) + u64::from(!old_dp) + u64::from(dst.1);
    let mut s_delta = 0;
    if let Some((at, by)) = seq {
        let old = u32::from_be_bytes([l4h[at], l4h[at + 1], l4h[at + 2], l4h[at + 3]]);
        let new = old.wrapping_add(by);
        // Two 16-bit words; `!old` of each half, as `checksum::update32`.
        s_delta = u64::from(!(old >> 16) as u16)
            + u64::from(!(old as u16))
            + u64::from(new >> 16)
            + u64::from(new & 0xffff);
        l4h[at..at + 4].copy_from_slice(&new.to_be_bytes());
    }
    let old_c = u16::from_be_bytes([l4h[csum_at], l4h[csum_at + 1]]);
    let mut c = checksum::adjust(old_c, a_delta + p_delta + s_delta);
    if is_udp && c == 0 {
        c = 0xffff;
    }
    l4h[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4h[2..4].copy_from_slice(&dst.1.to_be_bytes());
    l4h[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Every case (IPv6, UDP without checksum, fragments) with all checks
/// first: the reference the fast path is tested against.
#[inline(never)]
fn rewrite_general(
    data: &mut [u8],
    meta: &PacketMeta,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
) -> Result<(), XmitError> {
    check_forwardable(data, meta)?;
    if !same_family(meta, &src.0) || !same_family(meta, &dst.0) {
        return Err(XmitError::FamilyMismatch);
    }
    check_not_later_fragment(meta)?;
    let (csum_rel, min) = match meta.protocol {
        protocol::TCP => (tcp::CHECKSUM_OFFSET, tcp::HEADER_LEN),
        protocol::UDP => (udp::CHECKSUM_OFFSET, udp::HEADER_LEN),
        _ => return Err(XmitError::UnsupportedProtocol),
    };
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = meta.l3_end();
    if end - l4 < min {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let is_udp = meta.protocol == protocol::UDP;
    if is_udp && meta.fragment == Fragment::No {
        udp::UdpPacket::new_checked(&data[l4..end])?;
    }
    let (src_at, dst_at, alen) = match meta.l3 {
        L3::Ipv4 => (l3 + 12, l3 + 16, 4),
        _ => (l3 + 8, l3 + 24, 16),
    };
    let (ns, _) = addr_bytes(&src.0);
    let (nd, _) = addr_bytes(&dst.0);
    let addr_delta = delta(&data[src_at..src_at + alen], &ns[..alen])
        + delta(&data[dst_at..dst_at + alen], &nd[..alen]);
    let (old_sp, old_dp) = (get16(data, l4), get16(data, l4 + 2));
    let port_delta = u64::from(!old_sp) + u64::from(src.1) + u64::from(!old_dp) + u64::from(dst.1);

    decrement_ttl(data, meta);
    if meta.l3 == L3::Ipv4 {
        let c = checksum::adjust(get16(data, l3 + 10), addr_delta);
        set16(data, l3 + 10, c);
    }
    data[src_at..src_at + alen].copy_from_slice(&ns[..alen]);
    data[dst_at..dst_at + alen].copy_from_slice(&nd[..alen]);
    set16(data, l4, src.1);
    set16(data, l4 + 2, dst.1);
    let csum_at = l4 + csum_rel;
    let old = get16(data, csum_at);
    if is_udp && old == 0 {
        if meta.fragment == Fragment::No {
            let c = super::nat::full_udp_checksum(data, meta)?;
            set16(data, csum_at, c);
        }
        return Ok(());
    }
    let mut c = checksum::adjust(old, addr_delta + port_delta);
    if is_udp && c == 0 {
        c = 0xffff;
    }
    set16(data, csum_at, c);
    Ok(())
}

/// Where a TCP segment's options are: `(l4 offset, header length, end of
/// the IP packet)`, checked against the frame.
fn tcp_options(data: &[u8], meta: &PacketMeta) -> Result<(usize, usize, usize), XmitError> {
    if meta.protocol != protocol::TCP || meta.fragment == Fragment::Later {
        return Err(XmitError::UnsupportedProtocol);
    }
    let l4 = usize::from(meta.l4_offset);
    let end = meta.l3_end();
    if end > data.len() || end < l4 + tcp::HEADER_LEN {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let hl = usize::from(data[l4 + 12] >> 4) * 4;
    if hl < tcp::HEADER_LEN || l4 + hl > end {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    Ok((l4, hl, end))
}

/// Calls `f(at, kind, len)` for each option of the TCP header at `l4` of
/// length `hl` (NOP and END have length 1); stops at END or a malformed
/// length.
fn each_option(data: &[u8], l4: usize, hl: usize, mut f: impl FnMut(usize, u8, usize)) {
    let mut i = l4 + tcp::HEADER_LEN;
    let end = l4 + hl;
    while i < end {
        let kind = data[i];
        match kind {
            0 => return,
            1 => {
                f(i, kind, 1);
                i += 1;
            }
            _ => {
                let Some(&len) = data.get(i + 1) else { return };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    return;
                }
                f(i, kind, len);
                i += len;
            }
        }
    }
}

/// Lowers the MSS option of a SYN(-ACK) by `by` bytes (not below 536), with
/// the checksum patched. `Ok(false)`: no MSS option (nothing changed).
pub fn clamp_mss(buf: &mut impl PacketBuf, meta: &PacketMeta, by: u16) -> Result<bool, XmitError> {
    let data = buf.data_mut();
    let (l4, hl, _) = tcp_options(data, meta)?;
    let mut at = None;
    each_option(data, l4, hl, |i, kind, len| {
        if kind == 2 && len == 4 {
            at = Some(i + 2);
        }
    });
    let Some(at) = at else { return Ok(false) };
    let old = get16(data, at);
    let new = old.saturating_sub(by).max(536).min(old);
    if new != old {
        set16(data, at, new);
        let csum_at = l4 + tcp::CHECKSUM_OFFSET;
        let c = checksum::update16(get16(data, csum_at), old, new);
        set16(data, csum_at, c);
    }
    Ok(true)
}

/// Overwrites the timestamp option of a TCP segment with NOPs (checksum
/// patched). `Ok(false)`: there was none.
pub fn strip_timestamps(buf: &mut impl PacketBuf, meta: &PacketMeta) -> Result<bool, XmitError> {
    let data = buf.data_mut();
    let (l4, hl, _) = tcp_options(data, meta)?;
    let mut at = None;
    each_option(data, l4, hl, |i, kind, len| {
        if kind == 8 && len == 10 {
            at = Some(i);
        }
    });
    let Some(at) = at else { return Ok(false) };
    // The option starts at an even or odd offset from the header; pad the
    // sum with the neighbouring bytes so whole 16-bit words are patched.
    let from = at - (at - l4) % 2;
    let to = at + 10 + (at + 10 - l4) % 2;
    let mut old = [0u8; 12];
    old[..to - from].copy_from_slice(&data[from..to]);
    data[at..at + 10].fill(1);
    let csum_at = l4 + tcp::CHECKSUM_OFFSET;
    let d = delta(&old[..to - from], &data[from..to]);
    let c = checksum::adjust(get16(data, csum_at), d);
    set16(data, csum_at, c);
    Ok(true)
}

/// Why TOA was not inserted; the segment is unchanged and goes without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToaSkip {
    /// The TCP header would exceed 60 bytes (options over 40 bytes).
    NoOptionSpace,
    /// The packet would exceed the path MTU.
    TooBig,
    /// No room in the buffer, a fragment, or malformed.
    NoRoom,
}

/// Inserts the TOA option for `client:port` behind the 20-byte TCP header
/// (existing options and the payload move back), with data offset, IP
/// length and checksums updated. The packet has already been rewritten
/// (its addresses are the ones the real server sees); `meta` still
/// describes its layout. `mtu` bounds the resulting IP packet.
pub fn insert_toa(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    client: &IpAddr,
    port: u16,
    mtu: u16,
) -> Result<(), ToaSkip> {
    let n = toa_len(client);
    let (l4, hl, end) = tcp_options(buf.data(), meta).map_err(|_| ToaSkip::NoRoom)?;
    if meta.fragment != Fragment::No {
        return Err(ToaSkip::NoRoom);
    }
    if hl + n > TCP_MAX_HEADER {
        return Err(ToaSkip::NoOptionSpace);
    }
    if usize::from(meta.ip_len) + n > usize::from(mtu) {
        return Err(ToaSkip::TooBig);
    }
    let len = buf.data().len();
    let want = end + n;
    if want > len && !buf.append(want - len) {
        return Err(ToaSkip::NoRoom);
    }
    if want < len {
        // Link padding behind the IP packet: dropped.
        buf.trim(len - want);
    }
    let data = buf.data_mut();
    let opts = l4 + tcp::HEADER_LEN;
    data.copy_within(opts..end, opts + n);
    write_toa(&mut data[opts..opts + n], client, port);
    let new_hl = hl + n;
    data[l4 + 12] = (data[l4 + 12] & 0x0f) | ((new_hl / 4) as u8) << 4;
    let l3 = usize::from(meta.l3_offset);
    let seg_len = want - l4;
    match meta.l3 {
        L3::Ipv4 => {
            let old_tl = get16(data, l3 + 2);
            let tl = old_tl + n as u16;
            set16(data, l3 + 2, tl);
            let c = checksum::update16(get16(data, l3 + 10), old_tl, tl);
            set16(data, l3 + 10, c);
        }
        _ => {
            let old_pl = get16(data, l3 + 4);
            set16(data, l3 + 4, old_pl + n as u16);
        }
    }
    // The new segment's checksum from scratch: this is one or two segments
    // per connection, and the header moved.
    let csum_at = l4 + tcp::CHECKSUM_OFFSET;
    set16(data, csum_at, 0);
    let ph = match meta.l3 {
        L3::Ipv4 => {
            let s = crate::wire::ipv4::Ipv4Packet::new_unchecked(&data[l3..want]);
            checksum::pseudo_header_v4(s.src_addr(), s.dst_addr(), protocol::TCP, seg_len as u16)
        }
        _ => {
            let s = crate::wire::ipv6::Ipv6Packet::new_unchecked(&data[l3..want]);
            checksum::pseudo_header_v6(s.src_addr(), s.dst_addr(), protocol::TCP, seg_len as u32)
        }
    };
    let c = checksum::finish(ph, &data[l4..want]);
    set16(data, csum_at, c);
    Ok(())
}

#[cfg(test)]
mod tests;
