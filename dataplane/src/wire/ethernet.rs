//! Ethernet II frames, with an optional single 802.1Q (or 802.1ad) tag.
//!
//! The view finds the L3 payload behind zero or one VLAN tag; stacked tags
//! are not supported by the director (it is never a VLAN bridge) and show
//! up as ethertype 0x8100 of the payload, which the classifier does not
//! know.

use super::ParseError;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, Eq, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// The bytes' hash, as derived (equal addresses have equal bytes).
impl std::hash::Hash for MacAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Byte equality, compared as a 4-byte and a 2-byte word: the derived
/// `[u8; 6]` comparison compiles to a 48-bit value assembled from both
/// sides with shifts (15 instructions per compare, measured in the lane's
/// destination MAC test); this is two loads and two compares a side.
impl PartialEq for MacAddr {
    #[inline(always)]
    fn eq(&self, other: &MacAddr) -> bool {
        let [a0, a1, a2, a3, a4, a5] = self.0;
        let [b0, b1, b2, b3, b4, b5] = other.0;
        u32::from_ne_bytes([a0, a1, a2, a3]) == u32::from_ne_bytes([b0, b1, b2, b3])
            && u16::from_ne_bytes([a4, a5]) == u16::from_ne_bytes([b4, b5])
    }
}

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// Group bit set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    /// Copies a MAC address out of a 6-byte slice; `None` for other lengths.
    pub fn from_slice(b: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Ethertype values the director handles.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// With a VLAN tag: tag control information, then the inner ethertype.
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// Header length without a VLAN tag.
pub const HEADER_LEN: usize = 14;
/// Header length with one VLAN tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; only for buffers about to be
    /// filled whose length the caller knows to be sufficient.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that the header (and the VLAN tag, if
    /// the outer ethertype announces one) fits.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let f = EthernetFrame { buffer };
        let b = f.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if f.has_vlan() && b.len() < VLAN_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(f)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }

    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }

    /// The ethertype right after the source address (0x8100 when tagged).
    pub fn outer_ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]])
    }

    /// Whether a VLAN tag follows the source address.
    pub fn has_vlan(&self) -> bool {
        matches!(self.outer_ethertype(), ethertype::VLAN | ethertype::QINQ)
    }

    /// The VLAN id (low 12 bits of the tag), if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|t| t & 0x0fff)
    }

    /// The whole tag control information (PCP, DEI, VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        if !self.has_vlan() {
            return None;
        }
        let b = self.buffer.as_ref();
        Some(u16::from_be_bytes([
            b[field::TCI.start],
            b[field::TCI.start + 1],
        ]))
    }

    /// The ethertype of the payload (behind the tag, if any).
    pub fn ethertype(&self) -> u16 {
        if self.has_vlan() {
            let b = self.buffer.as_ref();
            u16::from_be_bytes([
                b[field::INNER_ETHERTYPE.start],
                b[field::INNER_ETHERTYPE.start + 1],
            ])
        } else {
            self.outer_ethertype()
        }
    }

    /// 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        if self.has_vlan() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the payload ethertype (behind the tag, if any).
    pub fn set_ethertype(&mut self, t: u16) {
        let r = if self.has_vlan() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        self.buffer.as_mut()[r].copy_from_slice(&t.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// An Ethernet header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The full VLAN TCI when tagged (emitted as 802.1Q).
    pub vlan_tci: Option<u16>,
    pub ethertype: u16,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> EthernetRepr {
        EthernetRepr {
            src: f.src_addr(),
            dst: f.dst_addr(),
            vlan_tci: f.vlan_tci(),
            ethertype: f.ethertype(),
        }
    }

    pub fn header_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into the front of `buf`; `Truncated` if too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        if buf.len() < self.header_len() {
            return Err(ParseError::Truncated);
        }
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        match self.vlan_tci {
            Some(tci) => {
                buf[field::ETHERTYPE].copy_from_slice(&ethertype::VLAN.to_be_bytes());
                buf[field::TCI].copy_from_slice(&tci.to_be_bytes());
                buf[field::INNER_ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes());
            }
            None => buf[field::ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED_IPV4: [u8; 14] = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00];
    /// VLAN 100 (0x064), priority 5 (0xa0 in the top byte), carrying IPv6.
    const TAGGED_VLAN100_IPV6: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd,
    ];

    #[test]
    fn untagged_frame_reads_macs_and_ethertype() {
        let f = EthernetFrame::new_checked(&UNTAGGED_IPV4[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.header_len(), 14);
    }

    #[test]
    fn tagged_frame_reads_vlan_id_and_inner_ethertype() {
        let f = EthernetFrame::new_checked(&TAGGED_VLAN100_IPV6[..]).unwrap();
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.header_len(), 18);
    }

    #[test]
    fn tag_cut_short_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED_VLAN100_IPV6[..16]).err(),
            Some(ParseError::Truncated)
        );
        assert_eq!(
            EthernetFrame::new_checked(&UNTAGGED_IPV4[..13]).err(),
            Some(ParseError::Truncated)
        );
    }

    #[test]
    fn repr_round_trips_tagged_header() {
        let f = EthernetFrame::new_checked(&TAGGED_VLAN100_IPV6[..]).unwrap();
        let r = EthernetRepr::parse(&f);
        let mut out = [0u8; 18];
        r.emit(&mut out).unwrap();
        assert_eq!(out, TAGGED_VLAN100_IPV6);
    }

    proptest::proptest! {
        /// The word-wise comparison is byte equality: drawn pairs differ in
        /// one byte or not at all, so both answers are drawn often.
        #[test]
        fn mac_equality_is_byte_equality(
            a in proptest::array::uniform6(proptest::num::u8::ANY),
            at in 0usize..7,
            to in proptest::num::u8::ANY,
        ) {
            let mut b = a;
            if let Some(x) = b.get_mut(at) {
                *x = to;
            }
            proptest::prop_assert_eq!(MacAddr(a) == MacAddr(b), a == b);
        }
    }
}
