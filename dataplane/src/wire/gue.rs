//! Generic UDP Encapsulation headers, variant 0 (draft-ietf-intarea-gue),
//! as IPVS's GUE tunnel sends them: 4 bytes, optionally followed by the
//! private-flags word with the remote-checksum-offload option.

use super::{get16, set16, ParseError};

mod field {
    pub const VER_C_HLEN: usize = 0;
    pub const PROTOCOL: usize = 1;
    pub const FLAGS: usize = 2;
    /// With the PRIV flag: the private flags word.
    pub const PRIV_FLAGS: std::ops::Range<usize> = 4..8;
    /// With REMCSUM in the private flags: checksum start and position.
    pub const REMCSUM_START: usize = 8;
    pub const REMCSUM_OFFSET: usize = 10;
}

pub const BASE_HEADER_LEN: usize = 4;
/// Header with the private flags and the remote checksum option.
pub const REMCSUM_HEADER_LEN: usize = 12;
/// PRIV flag in the flags field.
pub const FLAG_PRIV: u16 = 0x0001;
/// REMCSUM bit in the private flags.
pub const PFLAG_REMCSUM: u32 = 0x8000_0000;

/// A read/write view of a GUE packet (the UDP payload).
#[derive(Debug, Clone)]
pub struct GuePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GuePacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        GuePacket { buffer }
    }

    /// Checks the base header, variant 0, a data (not control) message,
    /// and that the option length fits.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = GuePacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < BASE_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if p.version() != 0 {
            return Err(ParseError::BadVersion);
        }
        if p.is_control() {
            return Err(ParseError::Unsupported);
        }
        if p.header_len() > len {
            return Err(ParseError::BadHeaderLength);
        }
        if p.flags() & FLAG_PRIV != 0 && p.header_len() < BASE_HEADER_LEN + 4 {
            return Err(ParseError::BadHeaderLength);
        }
        if p.has_remcsum() && p.header_len() < REMCSUM_HEADER_LEN {
            return Err(ParseError::BadHeaderLength);
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] >> 6
    }
    pub fn is_control(&self) -> bool {
        self.buffer.as_ref()[field::VER_C_HLEN] & 0x20 != 0
    }
    /// 4 + hlen * 4.
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN + usize::from(self.buffer.as_ref()[field::VER_C_HLEN] & 0x1f) * 4
    }
    /// IP protocol of the inner packet (4 or 41).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    pub fn flags(&self) -> u16 {
        get16(self.buffer.as_ref(), field::FLAGS)
    }
    fn private_flags(&self) -> u32 {
        if self.flags() & FLAG_PRIV == 0 {
            return 0;
        }
        match self.buffer.as_ref().get(field::PRIV_FLAGS) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }
    pub fn has_remcsum(&self) -> bool {
        self.private_flags() & PFLAG_REMCSUM != 0
    }
    /// Remote checksum (start, position), relative to the inner packet.
    pub fn remcsum(&self) -> Option<(u16, u16)> {
        let b = self.buffer.as_ref();
        (self.has_remcsum() && b.len() >= REMCSUM_HEADER_LEN).then(|| {
            (
                get16(b, field::REMCSUM_START),
                get16(b, field::REMCSUM_OFFSET),
            )
        })
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GuePacket<T> {
    /// Writes a variant-0 data header; with `remcsum` the PRIV flag, the
    /// REMCSUM private flag and the (start, position) pair. The buffer must
    /// hold 4 (12 with `remcsum`) bytes.
    pub fn set_header(&mut self, protocol: u8, remcsum: Option<(u16, u16)>) {
        let b = self.buffer.as_mut();
        match remcsum {
            None => {
                b[field::VER_C_HLEN] = 0;
                b[field::PROTOCOL] = protocol;
                set16(b, field::FLAGS, 0);
            }
            Some((start, pos)) => {
                b[field::VER_C_HLEN] = 2; // hlen: two 32-bit words
                b[field::PROTOCOL] = protocol;
                set16(b, field::FLAGS, FLAG_PRIV);
                b[field::PRIV_FLAGS].copy_from_slice(&PFLAG_REMCSUM.to_be_bytes());
                set16(b, field::REMCSUM_START, start);
                set16(b, field::REMCSUM_OFFSET, pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUE_IPV4: [u8; 4] = [0x00, 4, 0x00, 0x00];
    /// hlen 2, inner IPv6, PRIV, REMCSUM, start 40, position 56 (TCP csum).
    const GUE_IPV6_REMCSUM: [u8; 12] = [0x02, 41, 0x00, 0x01, 0x80, 0, 0, 0, 0, 40, 0, 56];

    #[test]
    fn plain_header_reads_back() {
        let p = GuePacket::new_checked(&GUE_IPV4[..]).unwrap();
        assert_eq!((p.protocol(), p.header_len(), p.remcsum()), (4, 4, None));
    }

    #[test]
    fn remcsum_header_reads_back_and_emits_identically() {
        let p = GuePacket::new_checked(&GUE_IPV6_REMCSUM[..]).unwrap();
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.remcsum(), Some((40, 56)));
        let mut out = [0u8; 12];
        GuePacket::new_unchecked(&mut out[..]).set_header(41, Some((40, 56)));
        assert_eq!(out, GUE_IPV6_REMCSUM);
    }

    #[test]
    fn bad_variant_control_and_short_options_are_refused() {
        assert_eq!(
            GuePacket::new_checked(&[0x40, 4, 0, 0][..]).err(),
            Some(ParseError::BadVersion)
        );
        assert_eq!(
            GuePacket::new_checked(&[0x20, 0, 0, 0][..]).err(),
            Some(ParseError::Unsupported)
        );
        assert_eq!(
            GuePacket::new_checked(&GUE_IPV6_REMCSUM[..11]).err(),
            Some(ParseError::BadHeaderLength)
        );
    }
}
