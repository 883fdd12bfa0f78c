//! SCTP common header (RFC 9260 section 3) and its CRC32c checksum.
//!
//! The director only reads and rewrites ports; because the CRC32c does not
//! cover IP addresses it is recomputed only when a port changes (ipvs.md
//! 5.1).

use super::{get16, ParseError};

pub const HEADER_LEN: usize = 12;
pub const CHECKSUM_OFFSET: usize = 8;

/// Chunk types (RFC 9260 3.2) the director tells apart.
pub mod chunk {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECNE: u8 = 12;
    pub const CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// Length of a chunk header (type, flags, length).
    pub const HEADER_LEN: usize = 4;
}

/// CRC32c (Castagnoli) of `data`, as SCTP uses it (RFC 9260 appendix A:
/// initial value and final xor all ones). The `crc32c` crate uses the
/// CPU's CRC32 instruction where there is one (its feature test is cached:
/// no syscall per packet).
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// The CRC32c of an SCTP packet as if its checksum field were zero, without
/// writing it: what the field must hold.
pub fn packet_crc(packet: &[u8]) -> u32 {
    let c = ::crc32c::crc32c(&packet[..CHECKSUM_OFFSET]);
    let c = ::crc32c::crc32c_append(c, &[0; 4]);
    ::crc32c::crc32c_append(c, &packet[CHECKSUM_OFFSET + 4..])
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
    /// Whether the stored CRC32c is right for the packet as it is.
    pub fn verify_checksum(&self) -> bool {
        packet_crc(self.buffer.as_ref()) == self.checksum()
    }
    /// Type and length field of the chunk `at` bytes behind the common
    /// header, if its 4-byte header lies within the packet (the length is
    /// as stored, unchecked: the chunk's value may be cut short).
    pub fn chunk_at(&self, at: usize) -> Option<(u8, u16)> {
        let b = self.buffer.as_ref();
        let start = HEADER_LEN.checked_add(at)?;
        let h = b.get(start..start.checked_add(chunk::HEADER_LEN)?)?;
        Some((h[0], u16::from_be_bytes([h[2], h[3]])))
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
        let c = packet_crc(self.buffer.as_ref());
        self.buffer.as_mut()[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4]
            .copy_from_slice(&c.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// The bit-at-a-time definition of CRC32c (reflected polynomial
    /// 0x82F63B78), the oracle the crate is checked against.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn crc32c_check_value_of_123456789() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn crc32c_rfc3720_vectors() {
        // RFC 3720 appendix B.4, the values as the bytes sent (read back
        // little-endian).
        let incrementing: Vec<u8> = (0..32).collect();
        let decrementing: Vec<u8> = (0..32).rev().collect();
        let vectors: [(&[u8], [u8; 4]); 4] = [
            (&[0u8; 32], [0xaa, 0x36, 0x91, 0x8a]),
            (&[0xffu8; 32], [0x43, 0xab, 0xa8, 0x62]),
            (&incrementing, [0x4e, 0x79, 0xdd, 0x46]),
            (&decrementing, [0x5c, 0xdb, 0x3f, 0x11]),
        ];
        for (data, sent) in vectors {
            assert_eq!(crc32c(data).to_le_bytes(), sent);
            assert_eq!(crc32c_bitwise(data).to_le_bytes(), sent);
        }
    }

    /// An SCTP INIT from 5000 to 80 (verification tag 0, initiate tag
    /// 0x12345678, a_rwnd 65535, 10 streams each way, initial TSN 1),
    /// its CRC32c filled in by the test (checked against the definition).
    const INIT_5000_80: [u8; 32] = [
        0x13, 0x88, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, // common header, CRC below
        0x01, 0x00, 0x00, 0x14, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0xff, 0xff, 0x00, 0x0a, 0x00,
        0x0a, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn verify_accepts_a_filled_packet_and_refuses_a_flipped_bit() {
        let mut b = INIT_5000_80;
        SctpPacket::new_checked(&mut b[..]).unwrap().fill_checksum();
        assert_eq!(b[8..12], crc32c_bitwise(&INIT_5000_80).to_le_bytes());
        assert!(SctpPacket::new_checked(&b[..]).unwrap().verify_checksum());
        for bit in [0usize, 8 * 8, 8 * 20 + 3, 8 * 31 + 7] {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(!SctpPacket::new_checked(&c[..]).unwrap().verify_checksum());
        }
    }

    #[test]
    fn chunk_at_reads_headers_inside_the_packet_only() {
        let p = SctpPacket::new_checked(&INIT_5000_80[..]).unwrap();
        assert_eq!(p.chunk_at(0), Some((chunk::INIT, 20)));
        assert_eq!(p.chunk_at(16), Some((0, 1)));
        assert_eq!(p.chunk_at(17), None);
        assert_eq!(p.chunk_at(usize::MAX), None);
        let bare = SctpPacket::new_checked(&INIT_5000_80[..12]).unwrap();
        assert_eq!(bare.chunk_at(0), None);
    }

    proptest! {
        #[test]
        fn crate_equals_the_definition(data in proptest::collection::vec(any::<u8>(), 0..2100)) {
            prop_assert_eq!(crc32c(&data), crc32c_bitwise(&data));
        }

        #[test]
        fn packet_crc_ignores_the_stored_field(
            data in proptest::collection::vec(any::<u8>(), 12..600),
        ) {
            let mut z = data.clone();
            z[8..12].fill(0);
            prop_assert_eq!(packet_crc(&data), crc32c_bitwise(&z));
        }
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
