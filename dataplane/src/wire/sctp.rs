//! SCTP common header (RFC 9260 section 3) and its CRC32c checksum.
//!
//! The director only reads and rewrites ports; because the CRC32c does not
//! cover IP addresses it is recomputed only when a port changes (ipvs.md
//! 5.1).

use super::{get16, ParseError};

pub const HEADER_LEN: usize = 12;
pub const CHECKSUM_OFFSET: usize = 8;

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) lookup table,
/// built at compile time.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC32c of `data` (initial value and final xor all ones).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// A read/write view of an SCTP packet's common header.
#[derive(Debug, Clone)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(SctpPacket { buffer })
    }
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), 2)
    }
    /// The stored CRC32c (little-endian on the wire, RFC 9260 appendix A).
    pub fn checksum(&self) -> u32 {
        let b = &self.buffer.as_ref()[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&v.to_be_bytes());
    }
    /// Recomputes the CRC32c over the whole packet.
    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].fill(0);
        let c = crc32c(b);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&c.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_of_123456789() {
        // The standard check value of CRC-32C (RFC 3720 B.4 catalogue).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn fill_checksum_stores_little_endian() {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&[0x13, 0x88, 0x00, 0x50]);
        let mut p = SctpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        let mut z = b;
        z[8..12].fill(0);
        assert_eq!(b[8..12], crc32c(&z).to_le_bytes());
        assert_eq!(
            SctpPacket::new_checked(&b[..]).unwrap().checksum(),
            crc32c(&z)
        );
    }
}
