//! TCP headers (RFC 9293): ports, flags and checksum are what the director
//! reads and rewrites; sequence numbers pass through untouched.

use super::{get16, set16, ParseError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFF_FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

pub const HEADER_LEN: usize = 20;
/// Offset of the checksum field, for callers that patch it in place.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// TCP flag bits as in the low byte of the offset/flags word.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// A read/write view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Checks the fixed header, then that the data offset is at least 5
    /// words and within the buffer ([`ParseError::BadTcpOffset`]).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = TcpPacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(ParseError::BadTcpOffset);
        }
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::DST_PORT)
    }
    pub fn seq_number(&self) -> u32 {
        get32(self.buffer.as_ref(), field::SEQ)
    }
    pub fn ack_number(&self) -> u32 {
        get32(self.buffer.as_ref(), field::ACK)
    }
    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF_FLAGS] >> 4) * 4
    }
    /// The flag byte (FIN..URG, plus ECE/CWR in the top bits).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::OFF_FLAGS + 1]
    }
    pub fn window(&self) -> u16 {
        get16(self.buffer.as_ref(), field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn urgent(&self) -> u16 {
        get16(self.buffer.as_ref(), field::URGENT)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, v);
    }
    pub fn set_dst_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, v);
    }
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 198.18.0.1:40000 -> :80, SYN, data offset 6 (one MSS option 1460).
    const SYN_WITH_MSS: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0, 2, 4,
        0x05, 0xb4,
    ];

    #[test]
    fn syn_fields_read_back() {
        let p = TcpPacket::new_checked(&SYN_WITH_MSS[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.header_len(), 24);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn data_offset_out_of_range_is_rejected() {
        let mut b = SYN_WITH_MSS;
        b[12] = 0x40; // 16 bytes < 20
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(ParseError::BadTcpOffset)
        );
        b[12] = 0x70; // 28 bytes > 24
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(ParseError::BadTcpOffset)
        );
        assert_eq!(
            TcpPacket::new_checked(&b[..19]).err(),
            Some(ParseError::Truncated)
        );
    }
}
