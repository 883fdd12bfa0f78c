//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages the director
//! needs (RFC 4861): neighbor solicitation and advertisement with their
//! link-layer address options.
//!
//! The checksum covers an IPv6 pseudo-header, so every function that
//! computes it takes the source and destination addresses.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::MacAddr;
use super::{get16, set16, ParseError};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ: usize = 6;
    /// Packet Too Big: 32-bit MTU.
    pub const MTU: std::ops::Range<usize> = 4..8;
    /// NA flags byte (R, S, O in the top bits).
    pub const NA_FLAGS: usize = 4;
    /// NS/NA target address.
    pub const TARGET: std::ops::Range<usize> = 8..24;
    /// First NDP option of NS/NA.
    pub const NDP_OPTIONS: usize = 24;
}

pub const HEADER_LEN: usize = 8;
/// Length of NS/NA without options.
pub const NDP_HEADER_LEN: usize = 24;
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// ICMPv6 message types.
pub mod kind {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Destination-unreachable code for "port unreachable".
/// Destination unreachable: no route to destination (RFC 4443 3.1).
pub const CODE_NO_ROUTE: u8 = 0;
pub const CODE_PORT_UNREACHABLE: u8 = 4;

/// NA flags.
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// NDP option types.
pub mod ndp_option {
    pub const SOURCE_LL_ADDR: u8 = 1;
    pub const TARGET_LL_ADDR: u8 = 2;
}

/// Error messages have types 0..=127 (RFC 4443 2.1); IPVS relates them
/// all to connections.
pub fn is_error(icmp_type: u8) -> bool {
    icmp_type < 128
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Checks the 8-byte header, and for NS/NA the 24-byte fixed part.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Icmpv6Packet { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if matches!(p.msg_type(), kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT)
            && len < NDP_HEADER_LEN
        {
            return Err(ParseError::Truncated);
        }
        Ok(p)
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn echo_ident(&self) -> u16 {
        get16(self.buffer.as_ref(), field::IDENT)
    }
    pub fn echo_seq(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SEQ)
    }
    /// MTU of a Packet Too Big message.
    pub fn mtu(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::MTU];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Everything after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// NS/NA target; `None` for other types.
    pub fn ndp_target(&self) -> Option<Ipv6Addr> {
        if !matches!(
            self.msg_type(),
            kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT
        ) {
            return None;
        }
        let b = self.buffer.as_ref().get(field::TARGET)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Some(Ipv6Addr::from(a))
    }
    /// NA flag byte (see [`na_flags`]).
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NA_FLAGS]
    }
    /// The link-layer address from the first NDP option of `option_type`
    /// (source or target link-layer address) of an NS/NA. `Err` if the
    /// option list is malformed (an option of length 0 or running past the
    /// end, RFC 4861 4.6: such packets are discarded).
    pub fn ndp_lladdr(&self, option_type: u8) -> Result<Option<MacAddr>, ParseError> {
        let b = self.buffer.as_ref();
        let mut off = field::NDP_OPTIONS;
        while off < b.len() {
            if off + 2 > b.len() {
                return Err(ParseError::BadNdpOption);
            }
            let len = usize::from(b[off + 1]) * 8;
            if len == 0 || off + len > b.len() {
                return Err(ParseError::BadNdpOption);
            }
            if b[off] == option_type && len >= 8 {
                return Ok(MacAddr::from_slice(&b[off + 2..off + 8]));
            }
            off += len;
        }
        Ok(None)
    }
    /// Verifies the checksum with the IPv6 pseudo-header.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, 58, b.len() as u32);
        checksum::verify(ph, b)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Sets the second 32-bit word (echo ident/seq, MTU, NA flags...).
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the NS/NA target; no effect on a buffer shorter than 24 bytes.
    pub fn set_ndp_target(&mut self, a: Ipv6Addr) {
        if let Some(t) = self.buffer.as_mut().get_mut(field::TARGET) {
            t.copy_from_slice(&a.octets());
        }
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
    /// Recomputes the checksum over the whole buffer and the pseudo-header.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, 58, b.len() as u32);
        let c = checksum::finish(ph, b);
        self.set_checksum(c);
    }
}

/// A neighbor solicitation or advertisement as plain values, with the
/// link-layer address option that goes with it (source for NS, target for
/// NA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpRepr {
    /// [`kind::NEIGHBOR_SOLICIT`] or [`kind::NEIGHBOR_ADVERT`].
    pub msg_type: u8,
    /// NA flags ([`na_flags`]); 0 for NS.
    pub flags: u8,
    pub target: Ipv6Addr,
    pub lladdr: Option<MacAddr>,
}

impl NdpRepr {
    fn lladdr_option(msg_type: u8) -> u8 {
        if msg_type == kind::NEIGHBOR_SOLICIT {
            ndp_option::SOURCE_LL_ADDR
        } else {
            ndp_option::TARGET_LL_ADDR
        }
    }

    /// Reads an NS/NA; `Unsupported` for other types, `BadNdpOption` for a
    /// malformed option list, code other than 0 is `Unsupported` too
    /// (RFC 4861 7.1.1).
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) -> Result<NdpRepr, ParseError> {
        let ty = p.msg_type();
        if !matches!(ty, kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT) || p.msg_code() != 0 {
            return Err(ParseError::Unsupported);
        }
        let target = p.ndp_target().ok_or(ParseError::Truncated)?;
        Ok(NdpRepr {
            msg_type: ty,
            flags: if ty == kind::NEIGHBOR_ADVERT {
                p.na_flags() & 0xe0
            } else {
                0
            },
            target,
            lladdr: p.ndp_lladdr(Self::lladdr_option(ty))?,
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        NDP_HEADER_LEN + if self.lladdr.is_some() { 8 } else { 0 }
    }

    /// Writes the message (with its option) to the front of `buf` and
    /// fills the checksum for the given IPv6 source and destination.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<(), ParseError> {
        let n = self.buffer_len();
        let b = buf.get_mut(..n).ok_or(ParseError::Truncated)?;
        b.fill(0);
        b[field::TYPE] = self.msg_type;
        b[field::NA_FLAGS] = self.flags;
        b[field::TARGET].copy_from_slice(&self.target.octets());
        if let Some(mac) = self.lladdr {
            b[24] = Self::lladdr_option(self.msg_type);
            b[25] = 1;
            b[26..32].copy_from_slice(&mac.0);
        }
        Icmpv6Packet::new_unchecked(b).fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NS for 2001:db8::1 with a source link-layer option 02:00:00:00:00:02.
    fn ns_for_2001_db8_1() -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = 135;
        b[8..10].copy_from_slice(&[0x20, 0x01]);
        b[10..12].copy_from_slice(&[0x0d, 0xb8]);
        b[23] = 1;
        b[24..32].copy_from_slice(&[1, 1, 2, 0, 0, 0, 0, 2]);
        b
    }

    #[test]
    fn neighbor_solicitation_target_and_source_lladdr() {
        let b = ns_for_2001_db8_1();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.ndp_target(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(
            p.ndp_lladdr(ndp_option::SOURCE_LL_ADDR),
            Ok(Some(MacAddr([2, 0, 0, 0, 0, 2])))
        );
        assert_eq!(p.ndp_lladdr(ndp_option::TARGET_LL_ADDR), Ok(None));
    }

    #[test]
    fn advert_repr_round_trips_with_target_lladdr() {
        let na = NdpRepr {
            msg_type: kind::NEIGHBOR_ADVERT,
            flags: na_flags::SOLICITED | na_flags::OVERRIDE,
            target: "2001:db8::100".parse().unwrap(),
            lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        };
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::100".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        );
        let mut b = [0u8; 32];
        na.emit(&mut b, src, dst).unwrap();
        assert_eq!(b[0], 136);
        assert_eq!(b[4], 0x60, "S and O flags");
        assert_eq!(b[24..26], [2, 1], "target link-layer option, 8 bytes");
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(src, dst));
        assert_eq!(NdpRepr::parse(&p), Ok(na));
    }

    #[test]
    fn zero_length_ndp_option_is_malformed() {
        let mut b = ns_for_2001_db8_1();
        b[25] = 0;
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.ndp_lladdr(1), Err(ParseError::BadNdpOption));
    }

    #[test]
    fn short_neighbor_solicitation_is_truncated() {
        let b = ns_for_2001_db8_1();
        assert_eq!(
            Icmpv6Packet::new_checked(&b[..23]).err(),
            Some(ParseError::Truncated)
        );
    }

    #[test]
    fn checksum_fill_then_verify_with_pseudo_header() {
        let mut b = ns_for_2001_db8_1();
        let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(src, dst);
        assert!(p.verify_checksum(src, dst));
        let other: Ipv6Addr = "2001:db8::3".parse().unwrap();
        assert!(!p.verify_checksum(other, dst), "the pseudo-header counts");
    }
}
