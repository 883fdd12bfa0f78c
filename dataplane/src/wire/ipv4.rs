//! IPv4 headers (RFC 791), with options and fragments recognised.
//!
//! [`Ipv4Packet::new_checked`] validates in the order a reader expects the
//! error: length of the fixed header, version, header length (IHL), then
//! total length. After that every accessor is in bounds; the payload ends at
//! the total length, so Ethernet padding behind it is never read as payload.

use std::net::Ipv4Addr;

use super::checksum;
use super::{get16, set16, ParseError};

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// IP protocol numbers the director looks at.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks fixed header length, version, IHL and total length.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Ipv4Packet { buffer };
        p.check_header()?;
        let total = usize::from(p.total_len());
        if total < p.header_len() || total > p.buffer.as_ref().len() {
            return Err(ParseError::BadTotalLength);
        }
        Ok(p)
    }

    /// Like [`new_checked`](Self::new_checked) but without the total-length
    /// check: for the truncated copy of a packet quoted inside an ICMP
    /// error. [`payload`](Self::payload) then ends at the buffer end if the
    /// total length claims more.
    pub fn new_quoted(buffer: T) -> Result<Self, ParseError> {
        let p = Ipv4Packet { buffer };
        p.check_header()?;
        Ok(p)
    }

    fn check_header(&self) -> Result<(), ParseError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if self.version() != 4 {
            return Err(ParseError::BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > b.len() {
            return Err(ParseError::BadHeaderLength);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP and ECN, the former TOS byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }
    pub fn total_len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        get16(self.buffer.as_ref(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        get16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        get16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get16(self.buffer.as_ref(), field::FLAGS_FRAG) & OFFSET_MASK) << 3
    }
    /// Part of a fragmented datagram (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        get16(self.buffer.as_ref(), field::FLAGS_FRAG) & (FLAG_MF | OFFSET_MASK) != 0
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, &self.buffer.as_ref()[..self.header_len()])
    }
    /// The payload: from the end of the header to the total length (or the
    /// buffer end, whichever comes first).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(b.len());
        b.get(self.header_len()..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_version_ihl(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }
    pub fn set_total_len(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::LENGTH, v);
    }
    pub fn set_ident(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::IDENT, v);
    }
    /// Sets DF and clears MF and the offset.
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        set16(
            self.buffer.as_mut(),
            field::FLAGS_FRAG,
            if dont_frag { FLAG_DF } else { 0 },
        );
    }
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
    /// Recomputes the header checksum over the whole header (options too).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len().min(self.buffer.as_ref().len());
        let c = checksum::finish(0, &self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }
    /// Decrements the TTL and patches the header checksum (RFC 1624).
    /// The caller checks for TTL <= 1 first; a TTL of 0 stays 0.
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let old = get16(b, field::TTL);
        b[field::TTL] = b[field::TTL].saturating_sub(1);
        let new = get16(b, field::TTL);
        let c = checksum::update16(get16(b, field::CHECKSUM), old, new);
        set16(b, field::CHECKSUM, c);
    }
    /// Replaces the source address, patching the header checksum.
    pub fn update_src_addr(&mut self, a: Ipv4Addr) {
        let old = self.src_addr();
        let c = checksum::update_addr(self.checksum(), &old.octets(), &a.octets());
        self.set_src_addr(a);
        self.set_checksum(c);
    }
    /// Replaces the destination address, patching the header checksum.
    pub fn update_dst_addr(&mut self, a: Ipv4Addr) {
        let old = self.dst_addr();
        let c = checksum::update_addr(self.checksum(), &old.octets(), &a.octets());
        self.set_dst_addr(a);
        self.set_checksum(c);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        self.buffer.as_mut().get_mut(hl..end).unwrap_or(&mut [])
    }
}

/// An option-less IPv4 header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: u16,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads the header of an unfragmented packet; options are dropped.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.total_len().saturating_sub(p.header_len() as u16),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        }
    }

    /// Writes a 20-byte header with a correct checksum to the front of
    /// `buf`; `BadTotalLength` if the total would exceed 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let total = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(ParseError::BadTotalLength)?;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_ihl(HEADER_LEN);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_unfragmented(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 198.18.0.1 -> 198.18.0.2, TCP, TTL 64, DF, total 40, checksum 0xaea8,
    /// followed by 20 zero bytes of "TCP" and 6 bytes of Ethernet padding.
    fn tcp_packet_with_padding() -> [u8; 46] {
        let mut p = [0u8; 46];
        p[..20].copy_from_slice(&[
            0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0xa8, 198, 18, 0, 1,
            198, 18, 0, 2,
        ]);
        p
    }

    #[test]
    fn header_fields_read_back() {
        let b = tcp_packet_with_padding();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 40);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::TCP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 20, "padding is not payload");
    }

    #[test]
    fn errors_come_in_order_length_version_ihl_total() {
        let b = tcp_packet_with_padding();
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]).err(),
            Some(ParseError::Truncated)
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).err(),
            Some(ParseError::BadVersion)
        );
        let mut ihl4 = b;
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl4[..]).err(),
            Some(ParseError::BadHeaderLength)
        );
        let mut ihl15 = b;
        ihl15[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl15[..]).err(),
            Some(ParseError::BadHeaderLength)
        );
        let mut long = b;
        long[3] = 47; // one byte more than the buffer
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).err(),
            Some(ParseError::BadTotalLength)
        );
        let mut short = b;
        short[3] = 19; // less than the header
        assert_eq!(
            Ipv4Packet::new_checked(&short[..]).err(),
            Some(ParseError::BadTotalLength)
        );
    }

    #[test]
    fn options_are_between_header_and_payload() {
        // IHL 6: one 4-byte option word (NOP NOP NOP EOL).
        let mut b = [0u8; 28];
        b[0] = 0x46;
        b[3] = 28;
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn mf_and_offset_mark_fragments() {
        let mut b = tcp_packet_with_padding();
        b[6] = 0x20; // MF, offset 0: first fragment
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && p.more_frags() && p.frag_offset() == 0);
        b[6] = 0x00;
        b[7] = 0x03; // last fragment at byte 24
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && !p.more_frags());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut b = tcp_packet_with_padding();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        p.update_dst_addr(Ipv4Addr::new(198, 19, 255, 254));
        assert!(p.verify_checksum());
    }

    #[test]
    fn repr_emits_what_it_parsed() {
        let b = tcp_packet_with_padding();
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap());
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(out[..], b[..20]);
    }
}
