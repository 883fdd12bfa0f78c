//! Fragmentation of a datagram that leaves the director larger than the
//! egress MTU, as Linux's `ip_fragment` / `ip6_fragment` cut it.
//!
//! IPv4: only without DF (with DF the sender gets fragmentation needed
//! instead, 5.4); each fragment repeats the IP header (options included:
//! UVS does not sort out the options not to copy) with its offset, MF and
//! length, data cut at multiples of 8 bytes. IPv6: only the source
//! fragments, so the director does it only for what it originates or
//! forwarded as one datagram after reassembly; each fragment is the
//! unfragmentable part, a fragment header (identification of the caller's
//! choosing), and a piece of the rest.
//!
//! [`fragment_plan`] says where to cut; the `write_fragment_*` functions
//! write one fragment into a buffer the caller provides (a fresh mbuf), so
//! nothing here allocates.

use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6;
use crate::wire::ipv6::{ext, Ipv6Packet};

/// One fragment of a datagram: bytes `offset..offset + len` of the data
/// behind the (unfragmentable) header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragPiece {
    pub offset: usize,
    pub len: usize,
    /// More fragments follow.
    pub more: bool,
}

/// Where to cut `data_len` bytes of data behind a header of `header_len`
/// bytes (IPv6: header plus the 8-byte fragment header) so that every
/// fragment fits `mtu`. Empty when even 8 bytes of data do not fit.
pub fn fragment_plan(
    data_len: usize,
    header_len: usize,
    mtu: usize,
) -> impl Iterator<Item = FragPiece> {
    let step = mtu.saturating_sub(header_len) & !7;
    let mut offset = 0;
    let total = if step == 0 { 0 } else { data_len };
    std::iter::from_fn(move || {
        if offset >= total {
            return None;
        }
        let len = step.min(total - offset);
        let p = FragPiece {
            offset,
            len,
            more: offset + len < total,
        };
        offset += len;
        Some(p)
    })
}

/// Writes fragment `piece` of the IPv4 datagram `ip` (a whole datagram:
/// header then data, as after reassembly) into `out`; returns the bytes
/// written (header + data), or `None` if `out` is too short or `ip` is
/// not an IPv4 datagram. The datagram's own offset and MF are taken into
/// account, so a fragment can be fragmented further.
pub fn write_fragment_v4(ip: &[u8], piece: FragPiece, out: &mut [u8]) -> Option<usize> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    let hl = p.header_len();
    let total = usize::from(p.total_len());
    let data = ip.get(hl..total)?;
    let chunk = data.get(piece.offset..piece.offset + piece.len)?;
    let n = hl + chunk.len();
    let o = out.get_mut(..n)?;
    o[..hl].copy_from_slice(&ip[..hl]);
    o[hl..].copy_from_slice(chunk);
    let base = usize::from(p.frag_offset());
    let more = piece.more || p.more_frags();
    let off = ((base + piece.offset) >> 3) as u16;
    let flags = if more { 0x2000 } else { 0 } | if p.dont_frag() { 0x4000 } else { 0 };
    let mut f = Ipv4Packet::new_unchecked(&mut o[..]);
    f.set_total_len(n as u16);
    o[6..8].copy_from_slice(&(flags | off).to_be_bytes());
    Ipv4Packet::new_unchecked(&mut o[..]).fill_checksum();
    Some(n)
}

/// Writes fragment `piece` of the IPv6 datagram `ip` into `out`, with a
/// fragment header of identification `ident` behind the first
/// `unfrag_len` bytes (the IPv6 header and the extension headers that
/// precede the fragmentable part; at least 40); returns the bytes
/// written. `piece` comes from [`fragment_plan`] over the data behind
/// `unfrag_len`, with a header length of `unfrag_len + 8`.
pub fn write_fragment_v6(
    ip: &[u8],
    unfrag_len: usize,
    ident: u32,
    piece: FragPiece,
    out: &mut [u8],
) -> Option<usize> {
    let p = Ipv6Packet::new_checked(ip).ok()?;
    let total = p.total_len();
    if unfrag_len < ipv6::HEADER_LEN || unfrag_len > total {
        return None;
    }
    let data = ip.get(unfrag_len..total)?;
    let chunk = data.get(piece.offset..piece.offset + piece.len)?;
    let n = unfrag_len + 8 + chunk.len();
    let o = out.get_mut(..n)?;
    o[..unfrag_len].copy_from_slice(&ip[..unfrag_len]);
    // The next-header byte that named the fragmentable part names the
    // fragment header now; the fragment header names the former.
    let at = last_next_header_at(ip, unfrag_len)?;
    let next = o[at];
    o[at] = ext::FRAGMENT;
    let w = (piece.offset as u16 & 0xfff8) | u16::from(piece.more);
    let fh = &mut o[unfrag_len..unfrag_len + 8];
    fh[0] = next;
    fh[1] = 0;
    fh[2..4].copy_from_slice(&w.to_be_bytes());
    fh[4..8].copy_from_slice(&ident.to_be_bytes());
    o[unfrag_len + 8..].copy_from_slice(chunk);
    Ipv6Packet::new_unchecked(&mut o[..]).set_payload_len((n - ipv6::HEADER_LEN) as u16);
    Some(n)
}

/// Offset of the next-header byte of the last header within the first
/// `unfrag_len` bytes of `ip`.
fn last_next_header_at(ip: &[u8], unfrag_len: usize) -> Option<usize> {
    let mut at = 6;
    let mut off = ipv6::HEADER_LEN;
    while off < unfrag_len {
        let len = (usize::from(*ip.get(off + 1)?) + 1) * 8;
        at = off;
        off += len;
    }
    (off == unfrag_len).then_some(at)
}
