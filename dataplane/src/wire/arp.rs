//! ARP for IPv4 over Ethernet (RFC 826): the only kind the director
//! answers (for its VIPs and local addresses) and sends (next-hop lookup).

use std::net::Ipv4Addr;

use super::ethernet::MacAddr;
use super::ParseError;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation codes.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Checks the length and that hardware/protocol are Ethernet/IPv4
    /// (otherwise [`ParseError::UnsupportedArp`]).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(ParseError::Truncated);
        }
        if be16(b, field::HTYPE) != 1
            || be16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(ParseError::UnsupportedArp);
        }
        Ok(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }
    pub fn sender_hw_addr(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SHA]).unwrap_or_default()
    }
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    pub fn target_hw_addr(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::THA]).unwrap_or_default()
    }
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::TPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

/// An Ethernet/IPv4 ARP packet as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_hw: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_hw: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            operation: p.operation(),
            sender_hw: p.sender_hw_addr(),
            sender_ip: p.sender_proto_addr(),
            target_hw: p.target_hw_addr(),
            target_ip: p.target_proto_addr(),
        }
    }

    /// Writes the 28-byte packet to the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        if buf.len() < PACKET_LEN {
            return Err(ParseError::Truncated);
        }
        buf[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
        buf[field::PTYPE].copy_from_slice(&0x0800u16.to_be_bytes());
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        buf[field::OPER].copy_from_slice(&self.operation.to_be_bytes());
        buf[field::SHA].copy_from_slice(&self.sender_hw.0);
        buf[field::SPA].copy_from_slice(&self.sender_ip.octets());
        buf[field::THA].copy_from_slice(&self.target_hw.0);
        buf[field::TPA].copy_from_slice(&self.target_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who has 198.18.0.1? Tell 198.18.0.2 (02:00:00:00:00:02).
    const REQUEST_WHO_HAS_198_18_0_1: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0x02, 198, 18, 0, 2, 0, 0, 0,
        0, 0, 0, 198, 18, 0, 1,
    ];

    #[test]
    fn request_fields_read_back() {
        let p = ArpPacket::new_checked(&REQUEST_WHO_HAS_198_18_0_1[..]).unwrap();
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!(p.sender_hw_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(p.sender_proto_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(p.target_proto_addr(), Ipv4Addr::new(198, 18, 0, 1));
        let mut out = [0u8; 28];
        ArpRepr::parse(&p).emit(&mut out).unwrap();
        assert_eq!(out, REQUEST_WHO_HAS_198_18_0_1);
    }

    #[test]
    fn non_ethernet_hardware_is_unsupported() {
        let mut p = REQUEST_WHO_HAS_198_18_0_1;
        p[1] = 6; // IEEE 802
        assert_eq!(
            ArpPacket::new_checked(&p[..]).err(),
            Some(ParseError::UnsupportedArp)
        );
        assert_eq!(
            ArpPacket::new_checked(&REQUEST_WHO_HAS_198_18_0_1[..27]).err(),
            Some(ParseError::Truncated)
        );
    }
}
