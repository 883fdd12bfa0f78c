//! GRE headers (RFC 2784, key and sequence of RFC 2890) as IPVS's GRE
//! tunnel sends them: version 0, optional checksum, protocol type of the
//! inner packet (0x0800 / 0x86DD).

use super::checksum;
use super::{get16, set16, ParseError};

mod field {
    pub const FLAGS_VER: usize = 0;
    pub const PROTOCOL: usize = 2;
    /// Present only with the C bit.
    pub const CHECKSUM: usize = 4;
}

pub const BASE_HEADER_LEN: usize = 4;
/// Header with the checksum and reserved word.
pub const CSUM_HEADER_LEN: usize = 8;

pub const FLAG_CSUM: u16 = 0x8000;
pub const FLAG_ROUTING: u16 = 0x4000;
pub const FLAG_KEY: u16 = 0x2000;
pub const FLAG_SEQ: u16 = 0x1000;

/// A read/write view of a GRE packet.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Checks the base header, version 0, no routing (RFC 1701 source
    /// routing is [`ParseError::Unsupported`]), and that the optional
    /// fields announced by the flags fit.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = GrePacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < BASE_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if p.flags_ver() & 0x0007 != 0 {
            return Err(ParseError::BadVersion);
        }
        if p.flags_ver() & FLAG_ROUTING != 0 {
            return Err(ParseError::Unsupported);
        }
        if p.header_len() > len {
            return Err(ParseError::Truncated);
        }
        Ok(p)
    }

    fn flags_ver(&self) -> u16 {
        get16(self.buffer.as_ref(), field::FLAGS_VER)
    }
    pub fn has_checksum(&self) -> bool {
        self.flags_ver() & FLAG_CSUM != 0
    }
    pub fn has_key(&self) -> bool {
        self.flags_ver() & FLAG_KEY != 0
    }
    pub fn has_seq(&self) -> bool {
        self.flags_ver() & FLAG_SEQ != 0
    }
    /// Ethertype of the inner packet.
    pub fn protocol(&self) -> u16 {
        get16(self.buffer.as_ref(), field::PROTOCOL)
    }
    /// 4, plus 4 for each of checksum, key, sequence number.
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN
            + 4 * (usize::from(self.has_checksum())
                + usize::from(self.has_key())
                + usize::from(self.has_seq()))
    }
    pub fn checksum(&self) -> Option<u16> {
        self.has_checksum()
            .then(|| get16(self.buffer.as_ref(), field::CHECKSUM))
    }
    /// Whether the checksum (header and payload) verifies; `true` without C.
    pub fn verify_checksum(&self) -> bool {
        !self.has_checksum() || checksum::verify(0, self.buffer.as_ref())
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    /// Writes the flags word (version 0) and protocol; with `csum` the
    /// checksum and reserved words are zeroed (fill them with
    /// [`fill_checksum`](Self::fill_checksum) once the payload is in place).
    pub fn set_header(&mut self, csum: bool, protocol: u16) {
        let b = self.buffer.as_mut();
        set16(b, field::FLAGS_VER, if csum { FLAG_CSUM } else { 0 });
        set16(b, field::PROTOCOL, protocol);
        if csum {
            b[4..8].fill(0);
        }
    }
    /// Computes the checksum over header and payload (C bit must be set).
    pub fn fill_checksum(&mut self) {
        if !self.has_checksum() {
            return;
        }
        set16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::finish(0, self.buffer.as_ref());
        set16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C bit, protocol IPv4, checksum over header + 4 payload bytes.
    const GRE_CSUM_IPV4: [u8; 12] = [0x80, 0x00, 0x08, 0x00, 0x77, 0xff, 0, 0, 0, 0, 0, 0];

    #[test]
    fn checksummed_header_is_eight_bytes() {
        let mut b = GRE_CSUM_IPV4;
        b[8..12].copy_from_slice(&[0x45, 0, 0, 0]);
        let mut p = GrePacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 8);
        assert_eq!(p.protocol(), 0x0800);
        assert_eq!(p.payload(), &[0x45, 0, 0, 0]);
        // 0x8000 + 0x0800 + 0x4500 = 0xcd00 -> !0xcd00 = 0x32ff
        assert_eq!(p.checksum(), Some(0x32ff));
    }

    #[test]
    fn version_one_and_routing_are_refused() {
        let mut b = [0x00, 0x01, 0x88, 0x0b];
        assert_eq!(
            GrePacket::new_checked(&b[..]).err(),
            Some(ParseError::BadVersion)
        );
        b = [0x40, 0x00, 0x08, 0x00];
        assert_eq!(
            GrePacket::new_checked(&b[..]).err(),
            Some(ParseError::Unsupported)
        );
        assert_eq!(
            GrePacket::new_checked(&GRE_CSUM_IPV4[..7]).err(),
            Some(ParseError::Truncated)
        );
    }
}
