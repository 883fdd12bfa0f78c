//! Direct routing (ipvs.md 5.2): the IP packet goes out unchanged except
//! for TTL / hop limit (and the IPv4 header checksum); the caller then
//! sets the real server's MAC as destination ([`super::set_macs`]).

use super::{check_forwardable, decrement_ttl, XmitError};
use crate::buf::PacketBuf;
use crate::wire::PacketMeta;

/// Prepares a packet for direct routing: TTL / hop limit decremented.
pub fn dr_xmit(buf: &mut impl PacketBuf, meta: &PacketMeta) -> Result<(), XmitError> {
    let data = buf.data_mut();
    check_forwardable(data, meta)?;
    decrement_ttl(data, meta);
    Ok(())
}

/// [`dr_xmit`] for a `meta` that is the parser's answer for `buf` about
/// a whole IPv4 datagram (the fast lane's packets): of
/// [`check_forwardable`]'s tests only the TTL's can fail (the parser
/// checked the lengths on the same bytes), so only it is made. The
/// property test `parsed_dr_equals_dr_xmit` holds it to [`dr_xmit`].
#[inline(always)]
pub fn dr_xmit_parsed(buf: &mut impl PacketBuf, meta: &PacketMeta) -> Result<(), XmitError> {
    debug_assert!(check_forwardable(buf.data(), meta).is_ok() || meta.ttl <= 1);
    if meta.ttl <= 1 {
        return Err(XmitError::TtlExpired);
    }
    decrement_ttl(buf.data_mut(), meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::ethernet::MacAddr;
    use crate::wire::parse_packet;
    use crate::wire::testutil::{checksums_ok, frame, L4};
    use crate::xmit::set_macs;

    #[test]
    fn only_macs_ttl_and_header_checksum_change() {
        let f = frame(
            "198.18.1.10".parse().unwrap(),
            "198.18.0.100".parse().unwrap(),
            L4::Tcp,
            40000,
            80,
            None,
            b"data",
        );
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        dr_xmit(&mut b, &m).unwrap();
        let rs = MacAddr([2, 0, 0, 0, 0, 0x55]);
        let me = MacAddr([2, 0, 0, 0, 0, 0x01]);
        set_macs(&mut b, me, rs).unwrap();
        let d = b.data();
        assert_eq!(d[0..6], rs.0);
        assert_eq!(d[6..12], me.0);
        assert_eq!(d[22], 63, "TTL");
        assert!(checksums_ok(d));
        let changed: Vec<usize> = (12..f.len()).filter(|&i| d[i] != f[i]).collect();
        assert!(
            changed.iter().all(|i| [22, 24, 25].contains(i)),
            "{changed:?}"
        );
    }

    #[test]
    fn ipv6_hop_limit_one_is_refused() {
        let mut f = frame(
            "2001:db8:1::10".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
            L4::Udp,
            1,
            53,
            None,
            b"",
        );
        f[21] = 1;
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        assert_eq!(dr_xmit(&mut b, &m), Err(XmitError::TtlExpired));
        assert_eq!(b.data(), &f[..]);
    }

    proptest::proptest! {
        /// For every frame the parser accepts as a whole IPv4 datagram
        /// (bytes edited before the parse, padding behind it), the parsed
        /// variant answers and writes as `dr_xmit`.
        #[test]
        fn parsed_dr_equals_dr_xmit(
            udp in proptest::bool::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            padding in proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            edits in proptest::collection::vec((0usize..60, proptest::num::u8::ANY), 0..3),
            ttl in 0u8..4,
        ) {
            let mut f = frame(
                "198.18.1.10".parse().unwrap(),
                "198.18.0.100".parse().unwrap(),
                if udp { L4::Udp } else { L4::Tcp },
                40000,
                80,
                None,
                &payload,
            );
            f.extend_from_slice(&padding);
            if ttl > 0 {
                f[14 + 8] = ttl;
            }
            for (pos, val) in edits {
                if let Some(b) = f.get_mut(pos) {
                    *b = val;
                }
            }
            let Ok(m) = parse_packet(&f) else { return Ok(()) };
            if m.l3 != crate::wire::L3::Ipv4 || m.fragment != crate::wire::Fragment::No {
                return Ok(());
            }
            let (mut a, mut b) = (TestBuf::new(&f), TestBuf::new(&f));
            proptest::prop_assert_eq!(dr_xmit_parsed(&mut a, &m), dr_xmit(&mut b, &m));
            proptest::prop_assert_eq!(a.data(), b.data());
        }
    }
}
