//! ipvsadm's listing order, quirks included.
//!
//! ipvsadm sorts with `qsort` and comparators that return the difference of
//! unsigned 32-bit values cast to `int`. Two values that differ by 2^31 or
//! more therefore compare "the wrong way" (198.18.0.1 vs a 2xx.x.x.x
//! address), and the relation is not a consistent order, so the result also
//! depends on the sorting algorithm. glibc's `qsort` is a top-down merge sort
//! (`msort`) whenever it can allocate its buffer (and again since 2.39), so
//! [`merge_sort`] reproduces that algorithm step for step; Rust's own sorts
//! may panic on an inconsistent comparator and would order differently.

use std::cmp::Ordering;
use std::net::IpAddr;

use uvs_model::model::{DestConfig, Family, ServiceKey};

use super::{DestListing, ServiceListing};

/// `(int)(a - b)` on unsigned 32-bit values, as C computes it.
fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The address as the kernel's `nf_inet_addr` union seen as four host-order
/// words: IPv4 in word 0, the rest zero.
fn words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v) => [u32::from(*v), 0, 0, 0],
        IpAddr::V6(v) => {
            let o = v.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// Compares addresses the way `ipvs_cmp_services`/`ipvs_cmp_dests` do: one
/// word for IPv4 (by the family of the first operand), four for IPv6.
fn addr_diff(first_af: Family, a: &IpAddr, b: &IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if first_af == Family::V6 { 4 } else { 1 };
    for i in 0..n {
        let r = diff(wa[i], wb[i]);
        if r != 0 {
            return r;
        }
    }
    0
}

/// (fwmark, af, protocol, address, port) as libipvs reports a service;
/// fwmark services come with protocol 0 and a zero address and port.
fn service_fields(k: &ServiceKey) -> (u32, Family, u8, IpAddr, u16) {
    match *k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (0, Family::of(&addr), protocol.number(), addr, port),
        ServiceKey::Fwmark { mark, family } => {
            let zero = match family {
                Family::V4 => uvs_model::model::V4_ANY,
                Family::V6 => uvs_model::model::V6_ANY,
            };
            (mark, family, 0, zero, 0)
        }
    }
}

/// `ipvs_cmp_services`: fwmark, family, protocol, address, port.
pub fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> i32 {
    let (fa, afa, pa, aa, pta) = service_fields(a);
    let (fb, afb, pb, ab, ptb) = service_fields(b);
    let r = diff(fa, fb);
    if r != 0 {
        return r;
    }
    let r = i32::from(afa.af()) - i32::from(afb.af());
    if r != 0 {
        return r;
    }
    let r = i32::from(pa) - i32::from(pb);
    if r != 0 {
        return r;
    }
    let r = addr_diff(afa, &aa, &ab);
    if r != 0 {
        return r;
    }
    i32::from(pta) - i32::from(ptb)
}

/// `ipvs_cmp_dests`: address, then port.
pub fn cmp_dests(x: &DestConfig, y: &DestConfig) -> i32 {
    let r = addr_diff(Family::of(&x.addr), &x.addr, &y.addr);
    if r != 0 {
        return r;
    }
    i32::from(x.port) - i32::from(y.port)
}

/// glibc's `msort_with_tmp`: split at n/2, sort both halves, merge taking
/// from the left half while `cmp(left, right) <= 0`.
pub fn merge_sort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    merge_sort(&mut v[..n1], cmp);
    merge_sort(&mut v[n1..], cmp);
    let mut out = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            out.push(v[i].clone());
            i += 1;
        } else {
            out.push(v[j].clone());
            j += 1;
        }
    }
    out.extend_from_slice(&v[i..n1]);
    out.extend_from_slice(&v[j..n]);
    v.clone_from_slice(&out);
}

/// Services in listing order: sorted, or creation order with `nosort`.
pub fn services(list: &[ServiceListing], nosort: bool) -> Vec<&ServiceListing> {
    let mut v: Vec<&ServiceListing> = list.iter().collect();
    if !nosort {
        merge_sort(&mut v, &|a: &&ServiceListing, b: &&ServiceListing| {
            cmp_services(&a.config.key, &b.config.key)
        });
    }
    v
}

/// Destinations in listing order: sorted, or the kernel's list order
/// (newest first) with `nosort`.
pub fn dests(list: &[DestListing], nosort: bool) -> Vec<&DestListing> {
    let mut v: Vec<&DestListing> = list.iter().collect();
    if !nosort {
        merge_sort(&mut v, &|a: &&DestListing, b: &&DestListing| {
            cmp_dests(&a.config, &b.config)
        });
    }
    v
}

/// An `Ordering` view of a C comparator result (for callers that want one).
pub fn ordering(r: i32) -> Ordering {
    r.cmp(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uvs_model::model::Protocol;

    fn key(a: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: a.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn plain_order_fwmark_family_protocol_address_port() {
        let fwm = ServiceKey::Fwmark {
            mark: 7,
            family: Family::V4,
        };
        let udp = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: "198.18.0.1".parse().unwrap(),
            port: 53,
        };
        let v6 = key("2001:db8::1", 80);
        let a = key("198.18.0.2", 80);
        let b = key("198.18.0.1", 443);
        let c = key("198.18.0.1", 80);
        let mut v = vec![fwm, udp, v6, a, b, c];
        merge_sort(&mut v, &|x, y| cmp_services(x, y));
        assert_eq!(v, vec![c, b, a, udp, v6, fwm]);
    }

    #[test]
    fn signed_difference_quirk() {
        // Word 2 of these addresses: A = 0x00000001, B = 0x64000001,
        // C = 0xC6120001 (all inside 2001:db8::/32).
        let (a, b, c) = (
            key("2001:db8::1:0:0", 1),
            key("2001:db8::6400:1:0:0", 1),
            key("2001:db8::c612:1:0:0", 1),
        );
        // B - A and C - B are below 2^31: the natural order.
        assert!(cmp_services(&a, &b) < 0);
        assert!(cmp_services(&b, &c) < 0);
        // A - C = 0x39EE0000 as int is positive: A sorts AFTER C (the quirk).
        assert!(cmp_services(&a, &c) > 0);
        // Fwmarks too: mark 1 sorts after mark 0x90000000.
        let m = |mark| ServiceKey::Fwmark {
            mark,
            family: Family::V4,
        };
        assert!(cmp_services(&m(1), &m(0x9000_0000)) > 0);
        // msort of [A, B, C]: left [A], right [B, C] (in order); merge:
        // cmp(A, B) < 0 takes A; then B, C.
        let mut v = vec![a, b, c];
        merge_sort(&mut v, &|x, y| cmp_services(x, y));
        assert_eq!(v, vec![a, b, c]);
        // msort of [C, B, A]: left [C]; right [B, A] sorts to [A, B];
        // merge: cmp(C, A) < 0 (quirk) takes C first; then A, B.
        let mut v = vec![c, b, a];
        merge_sort(&mut v, &|x, y| cmp_services(x, y));
        assert_eq!(v, vec![c, a, b]);
    }

    #[test]
    fn ipv6_compares_word_by_word() {
        assert!(cmp_services(&key("2001:db8::1", 80), &key("2001:db8::2", 80)) < 0);
        assert!(cmp_services(&key("2001:db8:1::", 80), &key("2001:db8::ffff", 80)) > 0);
        assert_eq!(
            ordering(cmp_services(
                &key("2001:db8::1", 80),
                &key("2001:db8::1", 80)
            )),
            Ordering::Equal
        );
    }

    proptest::proptest! {
        /// Within 198.18.0.0/15 no two addresses are 2^31 apart, so the C
        /// comparator is a total order there and the merge sort must agree
        /// with a plain sort on (protocol, address, port).
        #[test]
        fn agrees_with_total_order_when_no_quirk(
            raw in proptest::collection::vec((0u32..0x2_0000, 0u16..4, proptest::bool::ANY), 0..40)
        ) {
            let keys: Vec<ServiceKey> = raw
                .iter()
                .map(|(host, port, udp)| ServiceKey::Addr {
                    protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
                    addr: IpAddr::V4((0xC612_0000 | host).into()),
                    port: *port,
                })
                .collect();
            let mut ours = keys.clone();
            merge_sort(&mut ours, &|x, y| cmp_services(x, y));
            let mut plain = keys;
            plain.sort_by_key(|k| match k {
                ServiceKey::Addr { protocol, addr, port } => (protocol.number(), *addr, *port),
                ServiceKey::Fwmark { .. } => (0, uvs_model::model::V4_ANY, 0),
            });
            proptest::prop_assert_eq!(ours, plain);
        }
    }
}
