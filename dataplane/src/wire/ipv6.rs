//! IPv6 headers (RFC 8200) and the walk over extension headers to the
//! upper-layer header.
//!
//! The director needs the transport ports behind hop-by-hop, routing,
//! destination-options and fragment headers, and must know a fragment when
//! it sees one (only the first fragment carries the ports). The walk stops
//! after [`MAX_EXT_HEADERS`] headers so a crafted chain cannot make a worker
//! spin.

use std::net::Ipv6Addr;

use super::checksum;
use super::{get16, set16, ParseError};

mod field {
    use std::ops::Range;
    pub const VER_TC_FL: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;

/// Extension headers walked past (RFC 8200 section 4).
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
    pub const NO_NEXT: u8 = 59;
}

/// How many extension headers the walk accepts before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// Where the upper-layer header is, found by [`Ipv6Packet::upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Next-header value of the upper layer (6 TCP, 17 UDP, 58 ICMPv6...).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// Fragment header contents, if there was one.
    pub fragment: Option<FragmentInfo>,
}

/// The interesting part of an IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of this fragment in bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks header length, version, then that the payload length fits the
    /// buffer. Jumbograms (payload length 0) are not supported: they read as
    /// an empty payload.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Self::new_quoted(buffer)?;
        if HEADER_LEN + usize::from(p.payload_len()) > p.buffer.as_ref().len() {
            return Err(ParseError::BadTotalLength);
        }
        Ok(p)
    }

    /// Checks header length and version only: for the truncated copy
    /// quoted in an ICMPv6 error.
    pub fn new_quoted(buffer: T) -> Result<Self, ParseError> {
        let p = Ipv6Packet { buffer };
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if p.version() != 6 {
            return Err(ParseError::BadVersion);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FL];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }
    /// Header plus payload length (what IPv4 calls the total length).
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }
    /// Everything after the fixed header up to the payload length (or the
    /// buffer end for a quoted packet).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len());
        b.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Walks the extension headers to the upper-layer header.
    ///
    /// Errors: [`ParseError::BadExtHeader`] if a header runs past the
    /// payload or a second fragment header follows the first (RFC 8200
    /// allows one; a datagram fragmented twice would leave a fragment
    /// header in what reassembly hands on), [`ParseError::TooManyExtHeaders`] after
    /// [`MAX_EXT_HEADERS`]. Headers behind a non-first fragment are not
    /// walked (they are not there); the fragment's own next header is
    /// returned with the offset of the fragment data.
    pub fn upper_layer(&self) -> Result<UpperLayer, ParseError> {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len());
        let mut next = self.next_header();
        let mut off = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..=MAX_EXT_HEADERS {
            match next {
                ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                    if off + 2 > end {
                        return Err(ParseError::BadExtHeader);
                    }
                    let len = (usize::from(b[off + 1]) + 1) * 8;
                    if off + len > end {
                        return Err(ParseError::BadExtHeader);
                    }
                    next = b[off];
                    off += len;
                }
                ext::FRAGMENT => {
                    if off + 8 > end || fragment.is_some() {
                        return Err(ParseError::BadExtHeader);
                    }
                    let w = get16(b, off + 2);
                    let info = FragmentInfo {
                        offset: w & 0xfff8,
                        more: w & 1 != 0,
                        ident: u32::from_be_bytes([b[off + 4], b[off + 5], b[off + 6], b[off + 7]]),
                    };
                    fragment = Some(info);
                    next = b[off];
                    off += 8;
                    if info.offset != 0 {
                        // Later fragments carry data, not headers.
                        break;
                    }
                }
                _ => break,
            }
        }
        if matches!(
            next,
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS | ext::FRAGMENT
        ) && !matches!(fragment, Some(f) if f.offset != 0)
        {
            return Err(ParseError::TooManyExtHeaders);
        }
        Ok(UpperLayer {
            protocol: next,
            offset: off,
            fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Version 6, the given traffic class and flow label.
    pub fn set_ver_tc_fl(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FL].copy_from_slice(&w.to_be_bytes());
    }
    pub fn set_payload_len(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
}

/// Pseudo-header sum for an upper-layer message of `len` bytes.
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: usize) -> u16 {
    checksum::pseudo_header_v6(src, dst, next_header, len as u32)
}

/// An IPv6 header without extension headers, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Ipv6Repr {
        Ipv6Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
        }
    }

    /// Writes the 40-byte header (flow label 0) to the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_ver_tc_fl(self.traffic_class, 0);
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2001:db8::1 -> 2001:db8::2, next header `nh`, hop limit 64, followed
    /// by `payload`.
    fn packet(nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b[6] = nh;
        b[7] = 64;
        b[8..10].copy_from_slice(&[0x20, 0x01]);
        b[10..12].copy_from_slice(&[0x0d, 0xb8]);
        b[23] = 1;
        b[24..26].copy_from_slice(&[0x20, 0x01]);
        b[26..28].copy_from_slice(&[0x0d, 0xb8]);
        b[39] = 2;
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn plain_udp_has_upper_layer_right_after_header() {
        let b = packet(17, &[0u8; 8]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: 17,
                offset: 40,
                fragment: None
            }
        );
    }

    #[test]
    fn hop_by_hop_then_dest_opts_then_tcp_is_walked() {
        // HBH (next 60, len 0 = 8 bytes), DO (next 6, len 1 = 16 bytes), TCP.
        let mut pl = vec![60, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pl.extend_from_slice(&[0u8; 20]);
        let b = packet(0, &pl);
        let u = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((u.protocol, u.offset), (6, 64));
    }

    #[test]
    fn first_and_later_fragments_are_recognised() {
        // Fragment header: next 17, offset 0, M=1, ident 0x01020304.
        let first = packet(44, &[17, 0, 0x00, 0x01, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        let u = Ipv6Packet::new_checked(&first[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(u.protocol, 17);
        assert_eq!(u.offset, 48);
        assert_eq!(
            u.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0x0102_0304
            })
        );
        // Offset 1448 (0x05a8), last fragment.
        let later = packet(44, &[17, 0, 0x05, 0xa8, 1, 2, 3, 4, 0xde, 0xad]);
        let u = Ipv6Packet::new_checked(&later[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(u.fragment.unwrap().offset, 1448);
        assert!(!u.fragment.unwrap().more);
    }

    #[test]
    fn a_second_fragment_header_is_rejected() {
        // Two fragment headers at offset 0 (the first an atomic fragment):
        // found by the reassembly fuzz target, whose reassembled datagram
        // still began with the second.
        let b = packet(
            44,
            &[
                44, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0x00, 0x01, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ParseError::BadExtHeader));
    }

    #[test]
    fn ext_header_past_payload_is_rejected() {
        let b = packet(43, &[6, 2, 0, 0, 0, 0, 0, 0]); // claims 24 bytes
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ParseError::BadExtHeader));
    }

    #[test]
    fn endless_chain_of_dest_opts_is_cut_off() {
        let mut pl = Vec::new();
        for _ in 0..12 {
            pl.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        let b = packet(60, &pl);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(ParseError::TooManyExtHeaders));
    }

    #[test]
    fn checks_come_in_order_length_version_payload_length() {
        let b = packet(17, &[0u8; 8]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]).err(),
            Some(ParseError::Truncated)
        );
        let mut v4 = b.clone();
        v4[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).err(),
            Some(ParseError::BadVersion)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..47]).err(),
            Some(ParseError::BadTotalLength)
        );
    }

    #[test]
    fn repr_round_trips() {
        let b = packet(6, &[]);
        let r = Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap());
        let mut out = [0u8; 40];
        r.emit(&mut out).unwrap();
        assert_eq!(out[..], b[..40]);
    }
}
