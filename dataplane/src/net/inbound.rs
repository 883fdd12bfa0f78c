//! What Linux checks on an IP packet before IPVS sees it, checked before
//! the load balancer sees it.
//!
//! Why: a kernel director never load-balances a packet whose IPv4 header
//! checksum is wrong (`ip_rcv_core`), whose source is a martian (zero
//! network, limited or segment broadcast, multicast, loopback:
//! `ip_route_input_slow`, `fib_validate_source`; IPv6 multicast or
//! loopback: `ip6_rcv_core`) or whose destination is a martian (zero
//! network, loopback), and it cuts the bytes behind the IP total length
//! (`pskb_trim_rcsum`) before NAT rewrites anything. Without these checks a
//! SYN from 255.255.255.255 or with a bad header checksum would create a
//! connection and reach a real server, and NAT would carry link padding
//! into the packet it sends on. Each drop is counted by its reason.
//!
//! The IPv4 header checksum is taken from the NIC's verdict where the
//! buffer carries one ([`PacketBuf::rx_ip_checksum`]), else computed (20 to
//! 60 bytes). IPv6 has no header checksum. The unspecified IPv6 source is
//! martian only toward a unicast destination: duplicate address detection
//! and MLD send from it to multicast groups. An IPv4 packet from 0.0.0.0 to
//! 255.255.255.255 (a DHCP client) is not martian, as in Linux.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Counter, Interface, NetCounters};
use crate::buf::PacketBuf;
use crate::wire::{PacketMeta, L3};

/// Checks `buf` (described by `meta`, received on `iface`); trims what lies
/// behind the IP packet. `Err`: the reason to drop it.
#[inline]
pub(super) fn check<B: PacketBuf>(
    iface: &Interface,
    buf: &mut B,
    meta: &PacketMeta,
    counters: &NetCounters,
) -> Result<(), Counter> {
    let end = meta.l3_end();
    match (meta.l3, meta.src, meta.dst) {
        (L3::Ipv4, IpAddr::V4(src), IpAddr::V4(dst)) => check_v4(iface, buf, meta, src, dst)?,
        (L3::Ipv6, IpAddr::V6(src), IpAddr::V6(dst)) => {
            if martian_source_v6(src, dst) {
                return Err(Counter::DropMartianSource);
            }
            if dst.is_unspecified() || dst.is_loopback() {
                return Err(Counter::DropMartianDestination);
            }
        }
        _ => return Ok(()),
    }
    let behind = buf.len().saturating_sub(end);
    if behind > 0 {
        buf.trim(behind);
        counters.inc(Counter::Trimmed);
    }
    Ok(())
}

/// [`check`] for the fast lane ([`super::Stack::input_lane`]): an IPv4
/// packet from `src` to `dst` (its `meta`'s addresses), so the family is
/// not matched again. The same checks, verdicts and counts as [`check`]'s
/// (the same code: [`check_v4`] and the trim).
#[inline(always)]
pub(super) fn check_lane<B: PacketBuf>(
    iface: &Interface,
    buf: &mut B,
    meta: &PacketMeta,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    counters: &NetCounters,
) -> Result<(), Counter> {
    check_v4(iface, buf, meta, src, dst)?;
    let behind = buf.len().saturating_sub(meta.l3_end());
    if behind > 0 {
        buf.trim(behind);
        counters.inc(Counter::Trimmed);
    }
    Ok(())
}

/// The IPv4 checks: header checksum (the NIC's verdict or computed),
/// martian source, martian destination.
#[inline(always)]
fn check_v4<B: PacketBuf>(
    iface: &Interface,
    buf: &B,
    meta: &PacketMeta,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<(), Counter> {
    let ok = match buf.rx_ip_checksum() {
        Some(v) => v,
        None => buf
            .data()
            .get(usize::from(meta.l3_offset)..meta.l3_end())
            .is_some_and(header_checksum_ok),
    };
    if !ok {
        return Err(Counter::DropChecksum);
    }
    if martian_source_v4(iface, src, dst) {
        return Err(Counter::DropMartianSource);
    }
    // The zero network (0.0.0.0 included) and loopback.
    if matches!(dst.octets()[0], 0 | 127) {
        return Err(Counter::DropMartianDestination);
    }
    Ok(())
}

/// Whether the IPv4 header at the front of `ip` (an IPv4 packet the parser
/// accepted: its IHL gives 20 to 60 bytes, all within `ip`) has a good
/// checksum: its 16-bit one's-complement sum is 0xffff.
///
/// Why not [`crate::wire::ipv4::Ipv4Packet::verify_checksum`]: that one checks the header again
/// and runs the general byte loop; this sums the usual 20-byte header as
/// five 32-bit words and folds without a loop (the sum of at most fifteen
/// 32-bit words is below 2^36, and three end-around steps are exact below
/// 2^40). Equal to it on every header (property test below).
///
/// Always inlined, as [`martian_source_v4`]: with a third caller (the
/// lane with source NAT, `front::SNAT`'s entry) the compiler took
/// both out of line, and the lane paid about 27 instructions per packet
/// (established UDP NAT, measured).
#[inline(always)]
fn header_checksum_ok(ip: &[u8]) -> bool {
    let word = |w: &[u8]| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let hl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
    let acc: u64 = match ip.get(..hl) {
        Some(h) if hl == 20 => {
            let h = <&[u8; 20]>::try_from(h).unwrap_or(&[0; 20]);
            word(&h[0..4]) + word(&h[4..8]) + word(&h[8..12]) + word(&h[12..16]) + word(&h[16..20])
        }
        Some(h) if hl > 20 => h.chunks_exact(4).map(word).sum(),
        _ => return false,
    };
    let a = (acc & 0xffff) + (acc >> 16);
    let a = (a & 0xffff) + (a >> 16);
    let a = (a & 0xffff) + (a >> 16);
    a == 0xffff
}

/// Linux's martian sources: the zero network (except a DHCP client's
/// 0.0.0.0 to 255.255.255.255), limited broadcast, multicast, loopback, and
/// the broadcast address of one of the port's prefixes. Tested on the
/// first octet and the address as a word; the prefixes are walked only for
/// an address whose two low bits are set, as every broadcast address of a
/// prefix of /30 or shorter has.
#[inline(always)]
fn martian_source_v4(iface: &Interface, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let s = u32::from(src);
    let first = (s >> 24) as u8;
    if first == 0 {
        return !(s == 0 && dst.is_broadcast());
    }
    if first == 127 || (224..=239).contains(&first) || s == u32::MAX {
        return true;
    }
    s & 3 == 3 && segment_broadcast(iface, src)
}

/// Whether `a` is the broadcast address of one of `iface`'s IPv4 prefixes
/// (prefixes of /31 and /32 have none, RFC 3021).
fn segment_broadcast(iface: &Interface, a: Ipv4Addr) -> bool {
    iface.addrs.iter().any(|p| match p.addr {
        IpAddr::V4(net) if p.len < 31 => {
            let host = u32::MAX >> p.len;
            u32::from(net) | host == u32::from(a)
        }
        _ => false,
    })
}

fn martian_source_v6(src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    src.is_multicast() || src.is_loopback() || (src.is_unspecified() && !dst.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::ethernet::MacAddr;
    use crate::wire::parse_packet;

    fn iface() -> Interface {
        Interface {
            port: 0,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: vec![
                "198.18.0.1/24".parse().unwrap(),
                "2001:db8::1/64".parse().unwrap(),
            ],
            mtu: 1500,
            kernel: false,
        }
    }

    /// A TCP SYN from `src` to `dst`, Ethernet framed, with `pad` bytes of
    /// link padding behind the IP packet.
    fn syn(src: IpAddr, dst: IpAddr, pad: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        let b = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        };
        let b = b.tcp(40000, 80, 1, 64240).syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v.extend(std::iter::repeat_n(0xee, pad));
        v
    }

    fn run(frame: &[u8]) -> (Result<(), Counter>, usize, u64) {
        let counters = NetCounters::default();
        let mut buf = TestBuf::new(frame);
        let meta = parse_packet(frame).unwrap();
        let r = check(&iface(), &mut buf, &meta, &counters);
        (r, buf.len(), counters.get(Counter::Trimmed))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_good_syn_passes_and_its_link_padding_is_cut() {
        let f = syn(ip("198.18.0.2"), ip("198.18.0.100"), 6);
        assert_eq!(run(&f), (Ok(()), f.len() - 6, 1));
        let f = syn(ip("198.18.0.2"), ip("198.18.0.100"), 0);
        assert_eq!(run(&f), (Ok(()), f.len(), 0), "nothing to trim");
        let f = syn(ip("2001:db8::2"), ip("2001:db8::100"), 3);
        assert_eq!(run(&f), (Ok(()), f.len() - 3, 1));
    }

    #[test]
    fn a_bad_ipv4_header_checksum_is_dropped() {
        let mut f = syn(ip("198.18.0.2"), ip("198.18.0.100"), 0);
        f[14 + 10] ^= 0x01;
        assert_eq!(run(&f).0, Err(Counter::DropChecksum));
    }

    #[test]
    fn martian_sources_are_dropped() {
        for src in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "127.0.0.1",
            "198.18.0.255",
        ] {
            let f = syn(ip(src), ip("198.18.0.100"), 0);
            assert_eq!(run(&f).0, Err(Counter::DropMartianSource), "{src}");
        }
        for src in ["ff02::1", "::1", "::"] {
            let f = syn(ip(src), ip("2001:db8::100"), 0);
            assert_eq!(run(&f).0, Err(Counter::DropMartianSource), "{src}");
        }
        // Not martian: a DHCP client's broadcast, DAD/MLD from ::, an
        // address that is a broadcast only on another segment's prefix.
        let f = syn(ip("0.0.0.0"), ip("255.255.255.255"), 0);
        assert_eq!(run(&f).0, Ok(()));
        let f = syn(ip("::"), ip("ff02::16"), 0);
        assert_eq!(run(&f).0, Ok(()));
        let f = syn(ip("198.18.1.255"), ip("198.18.0.100"), 0);
        assert_eq!(run(&f).0, Ok(()));
    }

    proptest::proptest! {
        /// The fast header sum agrees with the wire module's general check
        /// on any header of any length, good checksum or not.
        #[test]
        fn the_fast_header_checksum_equals_the_general_one(
            words in proptest::collection::vec(proptest::prelude::any::<u32>(), 15),
            ihl in 5u8..=15,
            fix in proptest::prelude::any::<bool>(),
        ) {
            let mut h: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            h[0] = 0x40 | ihl;
            let hl = usize::from(ihl) * 4;
            h[2..4].copy_from_slice(&(hl as u16).to_be_bytes());
            h.truncate(hl);
            if fix {
                h[10] = 0;
                h[11] = 0;
                let c = !crate::wire::checksum::data(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let general = crate::wire::ipv4::Ipv4Packet::new_checked(&h[..])
                .is_ok_and(|p| p.verify_checksum());
            proptest::prop_assert_eq!(header_checksum_ok(&h), general);
            if fix {
                proptest::prop_assert!(general);
            }
        }

        /// The word-and-octet martian test agrees with the one written
        /// with the standard library's address classes.
        #[test]
        fn the_martian_source_test_equals_the_plain_one(
            src in proptest::prelude::any::<u32>(),
            dst in proptest::prelude::any::<u32>(),
            near in proptest::prelude::any::<u8>(),
        ) {
            let i = iface();
            // Half the sources on the port's own /24, to reach its broadcast.
            let src = if near & 1 == 0 { src } else { 0xc612_0000 | (src & 0xff) };
            let dst = if near & 2 == 0 { dst } else { u32::MAX };
            let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let plain = if s.octets()[0] == 0 {
                !(s.is_unspecified() && d.is_broadcast())
            } else {
                s.is_broadcast() || s.is_multicast() || s.is_loopback() || segment_broadcast(&i, s)
            };
            proptest::prop_assert_eq!(martian_source_v4(&i, s, d), plain);
        }
    }

    #[test]
    fn martian_destinations_are_dropped() {
        for dst in ["0.0.0.0", "0.9.9.9", "127.0.0.1"] {
            let f = syn(ip("198.18.0.2"), ip(dst), 0);
            assert_eq!(run(&f).0, Err(Counter::DropMartianDestination), "{dst}");
        }
        for dst in ["::", "::1"] {
            let f = syn(ip("2001:db8::2"), ip(dst), 0);
            assert_eq!(run(&f).0, Err(Counter::DropMartianDestination), "{dst}");
        }
    }
}
