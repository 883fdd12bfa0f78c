//! UDP headers (RFC 768). The length field bounds the datagram; a checksum
//! of 0 means "none" over IPv4 and is invalid over IPv6 (RFC 8200 8.1).

use super::{get16, set16, ParseError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

pub const HEADER_LEN: usize = 8;
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Checks the header, then that the length field is at least 8 and
    /// within the buffer ([`ParseError::BadUdpLength`]).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = UdpPacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let l = usize::from(p.len());
        if l < HEADER_LEN || l > len {
            return Err(ParseError::BadUdpLength);
        }
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// The length field: header plus data.
    pub fn len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The data, up to the length field.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(HEADER_LEN..usize::from(self.len())).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, v);
    }
    pub fn set_dst_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, v);
    }
    pub fn set_len(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::LENGTH, v);
    }
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// :5353 -> :53, length 12 (4 data bytes), checksum 0 ("none").
    const DNS_LIKE_NO_CSUM: [u8; 12] = [0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];

    #[test]
    fn fields_read_back() {
        let p = UdpPacket::new_checked(&DNS_LIKE_NO_CSUM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (5353, 53, 12));
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn length_field_out_of_range_is_rejected() {
        let mut b = DNS_LIKE_NO_CSUM;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(ParseError::BadUdpLength)
        );
        b[5] = 13;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(ParseError::BadUdpLength)
        );
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).err(),
            Some(ParseError::Truncated)
        );
    }
}
