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
}
