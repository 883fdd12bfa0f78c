//! ICMP errors about flows translated on both ends (FULLNAT) or on the
//! source only (routed traffic under SNAT/MASQUERADE): the error is made
//! to read as if the translation had never happened, as conntrack's
//! `nf_nat_icmp_reply_translation` does.
//!
//! Why not [`super::icmp::nat_icmp_outbound`]: NAT changes one endpoint of
//! the quoted packet and one address of the outer header. A FULLNAT error
//! from a real server quotes `LIP:lport -> RIP:rport` and must reach the
//! client quoting `CIP:cport -> VIP:vport`, from the VIP: both quoted
//! endpoints and both outer addresses change, and with the sequence
//! translation of [`super::seqadj`] the quoted sequence number (or
//! acknowledgement) moves too. So [`icmp_error_rewrite`] takes the full
//! set of new values; fields left as they were cost nothing.
//!
//! Checksums: the outer IPv4 header's and the ICMP message's as
//! [`super::icmp`] does (the ICMP checksum computed again over the
//! message: errors are rare), the quoted IPv4 header's computed again,
//! and, unlike IPVS but as conntrack, the quoted TCP/UDP checksum patched
//! (RFC 1624) when the quote holds it, so the original sender recognises
//! its own segment byte for byte. A quoted UDP checksum 0 stays 0.

use std::net::IpAddr;

use super::{check_forwardable, decrement_ttl, same_family, XmitError};
use crate::buf::PacketBuf;
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::{checksum, get16, set16, IcmpQuote, PacketMeta, ParseError, L3};

/// The error's new addresses and its quote's new endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpRewrite {
    /// Outer source and destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The quoted packet's source and destination, with ports.
    pub quoted_src: (IpAddr, u16),
    pub quoted_dst: (IpAddr, u16),
    /// Added (mod 2^32) to a quoted TCP segment's sequence number and,
    /// when its ACK flag is quoted and set, its acknowledgement number.
    pub seq_delta: u32,
    pub ack_delta: u32,
}

/// Sum of `!old + new` over the 16-bit words of two equal-length strings.
fn word_delta(old: &[u8], new: &[u8]) -> u64 {
    old.chunks_exact(2)
        .zip(new.chunks_exact(2))
        .map(|(o, n)| {
            u64::from(!u16::from_be_bytes([o[0], o[1]]))
                + u64::from(u16::from_be_bytes([n[0], n[1]]))
        })
        .sum()
}

fn octets(a: &IpAddr) -> ([u8; 16], usize) {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (b, 4)
        }
        IpAddr::V6(v) => (v.octets(), 16),
    }
}

/// Rewrites the ICMP error `meta` describes (its quote `quote`, from
/// [`crate::wire::parse_icmp_quote`]) to `rw`, TTL decremented. Checks
/// first (forwardable, families, a quote holding the IP header and the
/// ports, the ICMP checksum): on `Err` the packet is unchanged.
pub fn icmp_error_rewrite(
    buf: &mut impl PacketBuf,
    meta: &PacketMeta,
    quote: &IcmpQuote,
    rw: &IcmpRewrite,
) -> Result<(), XmitError> {
    let data = buf.data_mut();
    check_forwardable(data, meta)?;
    if !meta.is_icmp_error() {
        return Err(XmitError::UnsupportedProtocol);
    }
    for a in [&rw.src, &rw.dst, &rw.quoted_src.0, &rw.quoted_dst.0] {
        if !same_family(meta, a) {
            return Err(XmitError::FamilyMismatch);
        }
    }
    if !matches!(quote.protocol, protocol::TCP | protocol::UDP) {
        return Err(XmitError::UnsupportedProtocol);
    }
    let v6 = meta.l3 == L3::Ipv6;
    let (alen, src_at, dst_at, min_ip) = if v6 { (16, 8, 24, 40) } else { (4, 12, 16, 20) };
    let end = meta.l3_end();
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let q3 = usize::from(quote.l3_offset);
    let q4 = usize::from(quote.l4_offset);
    if q3 < l4 + 8 || q3 + min_ip > end || q4 < q3 + min_ip || q4 + 4 > end {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    if !super::icmp::icmp_checksum_ok(data, meta) {
        return Err(XmitError::BadChecksum);
    }

    decrement_ttl(data, meta);
    // Outer addresses (the IPv4 header checksum patched).
    let mut outer = 0u64;
    for (at, a) in [(l3 + src_at, &rw.src), (l3 + dst_at, &rw.dst)] {
        let (new, _) = octets(a);
        outer += word_delta(&data[at..at + alen], &new[..alen]);
        data[at..at + alen].copy_from_slice(&new[..alen]);
    }
    if !v6 {
        let c = checksum::adjust(get16(data, l3 + 10), outer);
        set16(data, l3 + 10, c);
    }

    // The quote: what its L4 checksum must follow.
    let mut inner = 0u64;
    for (at, a) in [
        (q3 + src_at, &rw.quoted_src.0),
        (q3 + dst_at, &rw.quoted_dst.0),
    ] {
        let (new, _) = octets(a);
        inner += word_delta(&data[at..at + alen], &new[..alen]);
        data[at..at + alen].copy_from_slice(&new[..alen]);
    }
    if !v6 {
        Ipv4Packet::new_unchecked(&mut data[q3..end]).fill_checksum();
    }
    for (at, p) in [(q4, rw.quoted_src.1), (q4 + 2, rw.quoted_dst.1)] {
        inner += u64::from(!get16(data, at)) + u64::from(p);
        set16(data, at, p);
    }
    let tcp = quote.protocol == protocol::TCP;
    if tcp {
        let ack_set = q4 + 14 <= end && data[q4 + 13] & 0x10 != 0;
        for (at, d, quoted) in [
            (q4 + 4, rw.seq_delta, true),
            (q4 + 8, rw.ack_delta, ack_set),
        ] {
            if d != 0 && quoted && at + 4 <= end {
                let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                let new = old.wrapping_add(d);
                inner += word_delta(&old.to_be_bytes(), &new.to_be_bytes());
                data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            }
        }
    }
    let csum_at = q4 + if tcp { 16 } else { 6 };
    if csum_at + 2 <= end {
        let old = get16(data, csum_at);
        if tcp || old != 0 {
            let mut c = checksum::adjust(old, inner);
            if !tcp && c == 0 {
                c = 0xffff;
            }
            set16(data, csum_at, c);
        }
    }

    // The ICMP checksum over the whole message.
    super::icmp::fill_icmp_checksum(data, meta, end);
    Ok(())
}

#[cfg(test)]
mod tests;
