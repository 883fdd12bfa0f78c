//! TCP sequence-number adjustment: one side of a connection sees the other
//! side's sequence numbers moved by a fixed offset.
//!
//! Why a module of its own: whenever the director, not the real server,
//! chose an initial sequence number, the two ends of a connection disagree
//! on the numbers of one direction for the connection's whole life. The SYN
//! proxy ([`crate::synproxy`]) answers the client's SYN with its own cookie
//! as ISN, then lets the real server pick another; FULLNAT's ISN
//! randomisation replaces the client's ISN toward the server. Both need the
//! same two rewrites, so they live here, over a bare TCP segment:
//!
//! * segments *from* the side whose numbers are shifted get their sequence
//!   number moved forward ([`SeqAdj::shift_seq`]);
//! * segments *toward* that side get their acknowledgement number and their
//!   SACK blocks moved back ([`SeqAdj::unshift_ack`]), so the sender of the
//!   shifted numbers reads its own numbering again.
//!
//! The adjustment is one 32-bit offset added modulo 2^32 ([`SeqAdj::between`]
//! builds it from the two ISNs), so it costs a few loads and stores, and
//! the TCP checksum is patched incrementally (RFC 1624), whatever the
//! pseudo-header: the segment's addresses and ports may be rewritten before
//! or after by NAT. Options are walked as RFC 9293 lays them out; a
//! malformed option list ends the walk (the segment is left as the sender
//! made it past that point, as Linux's `tcp_sack_adjust` gives up).
//! Timestamps are not touched: they are not sequence numbers.

use crate::wire::checksum;

/// Offset of the sequence number, the acknowledgement number, the data
/// offset, the flags and the checksum in a TCP header.
mod field {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    /// The fixed header's length.
    pub const HEADER: usize = 20;
}

/// The ACK flag bit.
const ACK: u8 = 0x10;
/// SACK option kind (RFC 2018).
const OPT_SACK: u8 = 5;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;

/// Why a segment could not be adjusted; it is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeqAdjError {
    /// Shorter than its TCP header (20 bytes, or its data offset).
    #[error("TCP segment shorter than its header")]
    Truncated,
}

/// The offset between the numbering one end of a connection sees and the
/// numbering the other end uses: `seen = used + delta` (mod 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqAdj {
    delta: u32,
}

impl SeqAdj {
    /// No change.
    pub const IDENTITY: SeqAdj = SeqAdj { delta: 0 };

    /// The adjustment under which `used` (the ISN one end really sent)
    /// reads as `seen` (the ISN the other end was told).
    pub const fn between(used: u32, seen: u32) -> SeqAdj {
        SeqAdj {
            delta: seen.wrapping_sub(used),
        }
    }

    /// The offset added to the shifted side's numbers.
    pub const fn delta(self) -> u32 {
        self.delta
    }

    /// A sequence number of the shifted side, as its peer sees it.
    pub const fn map(self, seq: u32) -> u32 {
        seq.wrapping_add(self.delta)
    }

    /// A number the peer sent about the shifted side (an acknowledgement,
    /// a SACK edge), in the shifted side's own numbering.
    pub const fn unmap(self, seq: u32) -> u32 {
        seq.wrapping_sub(self.delta)
    }

    /// The adjustment that undoes this one.
    pub const fn inverse(self) -> SeqAdj {
        SeqAdj {
            delta: self.delta.wrapping_neg(),
        }
    }

    /// A segment sent by the shifted side (`seg` from its TCP header to
    /// the end of its payload): its sequence number moves forward by the
    /// offset, the checksum follows.
    #[inline]
    pub fn shift_seq(self, seg: &mut [u8]) -> Result<(), SeqAdjError> {
        header_len(seg)?;
        if self.delta != 0 {
            let old = read32(seg, field::SEQ);
            patch32(seg, field::SEQ, old, self.map(old));
        }
        Ok(())
    }

    /// A segment sent toward the shifted side: its acknowledgement number
    /// (when ACK is set) and every SACK block edge move back by the offset,
    /// the checksum follows.
    #[inline]
    pub fn unshift_ack(self, seg: &mut [u8]) -> Result<(), SeqAdjError> {
        let hlen = header_len(seg)?;
        if self.delta == 0 {
            return Ok(());
        }
        if seg[field::FLAGS] & ACK != 0 {
            let old = read32(seg, field::ACK);
            patch32(seg, field::ACK, old, self.unmap(old));
        }
        self.unshift_sack(seg, hlen);
        Ok(())
    }

    /// The SACK half of [`SeqAdj::unshift_ack`]: every SACK block edge in
    /// the options of `seg` (whose header, `hlen` bytes, was checked to lie
    /// within it) moves back by the offset, the checksum follows. For a
    /// caller that moved the acknowledgement itself (FULLNAT folds it into
    /// its rewrite's checksum update) and found options behind the fixed
    /// header.
    pub fn unshift_sack(self, seg: &mut [u8], hlen: usize) {
        let hlen = hlen.min(seg.len());
        let mut at = field::HEADER;
        while at < hlen {
            match seg[at] {
                OPT_END => break,
                OPT_NOP => at += 1,
                kind => {
                    let Some(&len) = seg.get(at + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || at + len > hlen {
                        break;
                    }
                    if kind == OPT_SACK {
                        let mut edge = at + 2;
                        while edge + 4 <= at + len {
                            let old = read32(seg, edge);
                            patch32(seg, edge, old, self.unmap(old));
                            edge += 4;
                        }
                    }
                    at += len;
                }
            }
        }
    }
}

/// The segment's header length, checked against its size.
#[inline(always)]
pub(crate) fn header_len(seg: &[u8]) -> Result<usize, SeqAdjError> {
    if seg.len() < field::HEADER {
        return Err(SeqAdjError::Truncated);
    }
    let hlen = usize::from(seg[field::DATA_OFF] >> 4) * 4;
    if hlen < field::HEADER || hlen > seg.len() {
        return Err(SeqAdjError::Truncated);
    }
    Ok(hlen)
}

fn read32(seg: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]])
}

/// Writes `new` over the 32-bit field at `at` (which held `old`) and
/// patches the checksum. A SACK block may sit at an odd offset (options
/// need no alignment), so the update covers the 16-bit words the field
/// overlaps, read before and after the write.
#[inline(always)]
fn patch32(seg: &mut [u8], at: usize, old: u32, new: u32) {
    if at & 1 == 0 {
        // The sequence and acknowledgement fields, and most SACK blocks.
        seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
        let c = u16::from_be_bytes([seg[field::CHECKSUM], seg[field::CHECKSUM + 1]]);
        let c = checksum::update32(c, old, new);
        seg[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        return;
    }
    let start = at & !1;
    let end = (at + 4 + 1) & !1;
    let mut before = [0u8; 6];
    let n = end - start;
    before[..n].copy_from_slice(&seg[start..end]);
    debug_assert_eq!(read32(seg, at), old);
    seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let c = u16::from_be_bytes([seg[field::CHECKSUM], seg[field::CHECKSUM + 1]]);
    let c = if start == at {
        checksum::update32(c, old, new)
    } else {
        checksum::update_addr(c, &before[..n], &seg[start..end])
    };
    seg[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A segment with data offset `hlen`, the given flags, options and
    /// payload, checksummed over the segment alone (pseudo-header sum 0:
    /// the incremental update does not depend on it).
    fn segment(seq: u32, ack: u32, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let hlen = 20 + options.len();
        assert_eq!(hlen % 4, 0);
        let mut s = vec![0u8; hlen];
        s[0..2].copy_from_slice(&40000u16.to_be_bytes());
        s[2..4].copy_from_slice(&80u16.to_be_bytes());
        s[4..8].copy_from_slice(&seq.to_be_bytes());
        s[8..12].copy_from_slice(&ack.to_be_bytes());
        s[12] = ((hlen / 4) as u8) << 4;
        s[13] = flags;
        s[14..16].copy_from_slice(&65535u16.to_be_bytes());
        s[20..].copy_from_slice(options);
        s.extend_from_slice(payload);
        let c = checksum::finish(0, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }

    fn valid(seg: &[u8]) -> bool {
        checksum::verify(0, seg)
    }

    /// NOP, NOP, SACK with two blocks (20 bytes): the layout Linux sends.
    fn sack_two(a: u32, b: u32, c: u32, d: u32) -> Vec<u8> {
        let mut o = vec![1, 1, 5, 18];
        for v in [a, b, c, d] {
            o.extend_from_slice(&v.to_be_bytes());
        }
        o
    }

    #[test]
    fn the_server_seq_toward_the_client_moves_by_the_offset() {
        // The client was told ISN 1000 (a cookie); the server chose 5000.
        let adj = SeqAdj::between(5000, 1000);
        let mut s = segment(5001, 777, ACK, &[], b"hello");
        adj.shift_seq(&mut s).unwrap();
        assert_eq!(read32(&s, 4), 1001);
        assert_eq!(read32(&s, 8), 777, "the ack is the client's numbering");
        assert!(valid(&s));
    }

    #[test]
    fn the_client_ack_and_sack_toward_the_server_move_back() {
        let adj = SeqAdj::between(5000, 1000);
        let opts = sack_two(1101, 1201, 1301, 1401);
        let mut s = segment(777, 1101, ACK, &opts, b"");
        adj.unshift_ack(&mut s).unwrap();
        assert_eq!(read32(&s, 8), 5101);
        assert_eq!(read32(&s, 4), 777, "the client's own seq is unchanged");
        let edges: Vec<u32> = (0..4).map(|i| read32(&s, 24 + 4 * i)).collect();
        assert_eq!(edges, [5101, 5201, 5301, 5401]);
        assert!(valid(&s));
    }

    #[test]
    fn a_sack_block_at_an_odd_offset_keeps_the_checksum() {
        // One NOP, then SACK (one block) at offset 21, then padding.
        let mut o = vec![1, 5, 10];
        o.extend_from_slice(&3000u32.to_be_bytes());
        o.extend_from_slice(&3100u32.to_be_bytes());
        o.extend_from_slice(&[0]);
        let adj = SeqAdj::between(0, 7);
        let mut s = segment(1, 3000, ACK, &o, b"x");
        adj.unshift_ack(&mut s).unwrap();
        assert_eq!(read32(&s, 23), 2993);
        assert_eq!(read32(&s, 27), 3093);
        assert!(valid(&s));
    }

    #[test]
    fn without_ack_the_ack_field_is_left_alone() {
        let adj = SeqAdj::between(1, 2);
        let mut s = segment(9, 1234, 0x02, &[], b"");
        adj.unshift_ack(&mut s).unwrap();
        assert_eq!(read32(&s, 8), 1234);
    }

    #[test]
    fn malformed_options_end_the_walk_without_a_panic() {
        // A SACK whose length runs past the header, then a zero length.
        for o in [vec![5, 40, 0, 0], vec![3, 0, 0, 0], vec![5, 1, 0, 0]] {
            let mut s = segment(1, 2, ACK, &o, b"");
            SeqAdj::between(0, 9).unshift_ack(&mut s).unwrap();
            assert_eq!(read32(&s, 8), 2u32.wrapping_sub(9));
            assert_eq!(&s[20..24], &o[..], "options untouched");
            assert!(valid(&s));
        }
    }

    #[test]
    fn short_segments_are_refused_unchanged() {
        let mut short = vec![0u8; 19];
        assert_eq!(
            SeqAdj::IDENTITY.shift_seq(&mut short),
            Err(SeqAdjError::Truncated)
        );
        let mut s = segment(1, 2, ACK, &[1, 1, 1, 1], b"");
        s[12] = 0xf0; // data offset 60 > 24 bytes
        let before = s.clone();
        assert_eq!(
            SeqAdj::between(0, 5).unshift_ack(&mut s),
            Err(SeqAdjError::Truncated)
        );
        assert_eq!(s, before);
    }

    proptest! {
        /// Shifting then applying the inverse gives the segment back byte
        /// for byte, and every step keeps the checksum valid; the same for
        /// acknowledgements and SACK blocks.
        #[test]
        fn adjust_round_trips(
            used in any::<u32>(), seen in any::<u32>(),
            seq in any::<u32>(), ack in any::<u32>(),
            edges in proptest::array::uniform4(any::<u32>()),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let adj = SeqAdj::between(used, seen);
            prop_assert_eq!(adj.map(used), seen);
            prop_assert_eq!(adj.unmap(adj.map(seq)), seq);
            let opts = sack_two(edges[0], edges[1], edges[2], edges[3]);
            let orig = segment(seq, ack, ACK, &opts, &payload);
            let mut s = orig.clone();
            adj.shift_seq(&mut s).unwrap();
            prop_assert!(valid(&s));
            prop_assert_eq!(read32(&s, 4), adj.map(seq));
            adj.inverse().shift_seq(&mut s).unwrap();
            prop_assert_eq!(&s, &orig);
            adj.unshift_ack(&mut s).unwrap();
            prop_assert!(valid(&s));
            prop_assert_eq!(read32(&s, 8), adj.unmap(ack));
            prop_assert_eq!(read32(&s, 24), adj.unmap(edges[0]));
            adj.inverse().unshift_ack(&mut s).unwrap();
            prop_assert_eq!(&s, &orig);
        }
    }
}
