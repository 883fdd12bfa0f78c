//! ICMP for IPv4 (RFC 792): echo (the director answers pings to its
//! addresses), and the error messages IPVS relates to connections or sends
//! itself (destination unreachable incl. fragmentation needed, time
//! exceeded, source quench).

use super::checksum;
use super::{get16, set16, ParseError};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ: usize = 6;
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191).
    pub const NEXT_HOP_MTU: usize = 6;
}

pub const HEADER_LEN: usize = 8;
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// ICMP message types.
pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes.
pub mod code {
    pub const NET_UNREACHABLE: u8 = 0;
    pub const PORT_UNREACHABLE: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL reached zero in transit.
    pub const TTL_EXCEEDED: u8 = 0;
}

/// Whether a type is an error that quotes the offending packet and that
/// IPVS relates to a connection (5.5: unreachable, source quench, time
/// exceeded).
pub fn is_related_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        kind::DEST_UNREACHABLE | kind::SOURCE_QUENCH | kind::TIME_EXCEEDED
    )
}

/// Whether a type is any error message (never answered with an error).
pub fn is_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        kind::DEST_UNREACHABLE
            | kind::SOURCE_QUENCH
            | kind::TIME_EXCEEDED
            | kind::PARAMETER_PROBLEM
    ) || icmp_type == 5 // redirect
}

/// A read/write view of an ICMP message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Checks that the 8-byte header is there.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
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
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        get16(self.buffer.as_ref(), field::IDENT)
    }
    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SEQ)
    }
    /// Next-hop MTU of a fragmentation-needed message.
    pub fn next_hop_mtu(&self) -> u16 {
        get16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }
    /// Everything after the 8-byte header: echo data or the quoted packet.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// Whether the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Sets the second 32-bit word (echo ident/seq, unused, or MTU).
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(0, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request, ident 0x1234, seq 1, data "ab"; checksum by hand:
    /// 0x0800 + 0x1234 + 0x0001 + 0x6162 = 0x7b97 -> !0x7b97 = 0x8468.
    const ECHO_REQUEST: [u8; 10] = [8, 0, 0x84, 0x68, 0x12, 0x34, 0x00, 0x01, b'a', b'b'];

    #[test]
    fn echo_request_reads_and_verifies() {
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), kind::ECHO_REQUEST);
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), b"ab");
    }

    #[test]
    fn fill_checksum_reproduces_hand_computed_value() {
        let mut b = ECHO_REQUEST;
        b[2] = 0;
        b[3] = 0;
        Icmpv4Packet::new_checked(&mut b[..])
            .unwrap()
            .fill_checksum();
        assert_eq!(b, ECHO_REQUEST);
    }

    #[test]
    fn only_unreachable_quench_and_time_exceeded_are_related() {
        assert!(is_related_error(3) && is_related_error(4) && is_related_error(11));
        assert!(!is_related_error(0) && !is_related_error(8) && !is_related_error(12));
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO_REQUEST[..7]).err(),
            Some(ParseError::Truncated)
        );
    }
}
