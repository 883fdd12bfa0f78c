//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Why one module: IPv4 headers, TCP, UDP, ICMP, ICMPv6 and GRE all use the
//! same 16-bit one's-complement sum; keeping it in one place means one loop
//! to get right and to make fast.
//!
//! Vocabulary, as in smoltcp:
//! * [`data`] is the one's-complement *sum* of a byte slice (not inverted);
//! * [`combine`] adds several such sums;
//! * [`pseudo_header_v4`]/[`pseudo_header_v6`] are the sums of the
//!   pseudo-headers TCP, UDP and ICMPv6 cover;
//! * the checksum written into a header is `!combine(&[..])`.
//!
//! [`update16`], [`update32`] and [`update_addr`] adjust a stored checksum
//! for a changed field without touching the rest of the packet, which is
//! what NAT does on every packet.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide one's-complement accumulator to 16 bits.
///
/// Each fold adds the carries above bit 15 back in at the bottom (the
/// "end-around carry"). Two folds suffice for a 32-bit value, a 64-bit value
/// needs up to four; looping until nothing is left is simplest and exact.
#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// [`fold`] without the loop, for the small sums of incremental updates:
/// three end-around steps are exact for any `acc < 2^40` (after the first
/// step the value is below 2^24 + 2^16, after the second below 2^16 + 2^8,
/// and the third leaves at most 0xffff). The result equals [`fold`]'s: both
/// keep the value modulo 0xffff and map a non-zero sum into 1..=0xffff.
#[inline(always)]
fn fold_small(acc: u64) -> u16 {
    debug_assert!(acc < 1 << 40);
    let a = (acc & 0xffff) + (acc >> 16);
    let a = (a & 0xffff) + (a >> 16);
    let a = (a & 0xffff) + (a >> 16);
    a as u16
}

/// RFC 1624 equation 3 over several changed fields at once: `delta` is the
/// sum of `!old + new` over every changed 16-bit word (a 32-bit field may
/// be given as one `!old as u64 + new as u64` term of 32-bit values, since
/// 2^16 = 1 modulo 0xffff), and must stay below 2^39.
///
/// Why one fold: one's-complement addition is associative, so chaining
/// [`update16`]/[`update32`] field by field gives exactly this result (the
/// intermediate folds only reduce modulo 0xffff, and a positive sum stays
/// positive) at a fraction of the instructions.
#[inline(always)]
pub fn adjust(check: u16, delta: u64) -> u16 {
    !fold_small(u64::from(!check) + delta)
}

/// One's-complement sum of `bytes` taken as big-endian 16-bit words; an odd
/// last byte is padded with a zero byte on the right (RFC 1071).
///
/// Why the loop looks like this: one's-complement addition is associative
/// and commutative, and carries may be added back at any time, so the sum of
/// 32-bit big-endian words folded at the end equals the sum of 16-bit words.
/// Reading 4 bytes at a time halves the loop iterations, and a `u64`
/// accumulator cannot overflow: a packet of at most 64 KiB has at most 2^14
/// words of at most 2^32 - 1. `chunks_exact` lets the compiler drop bounds
/// checks; no folding happens inside the loop.
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(acc)
}

/// One's-complement sum of partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of the IPv4 pseudo-header: source, destination, zero, protocol and
/// the upper-layer length (RFC 793, RFC 768).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        u16::from(protocol),
        length,
    ])
}

/// Sum of the IPv6 pseudo-header: source, destination, 32-bit upper-layer
/// length and next header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        (length >> 16) as u16,
        length as u16,
        u16::from(next_header),
    ])
}

/// Checksum of a whole message: the inverted sum of `bytes` and an initial
/// partial sum (a pseudo-header sum, or 0). The checksum field inside `bytes`
/// must be zero when this is used to fill it.
pub fn finish(initial: u16, bytes: &[u8]) -> u16 {
    !combine(&[initial, data(bytes)])
}

/// Whether `bytes` (checksum field included) sum to all ones, i.e. verify.
pub fn verify(initial: u16, bytes: &[u8]) -> bool {
    combine(&[initial, data(bytes)]) == 0xffff
}

/// RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')` for one 16-bit field that
/// changed from `old` to `new`.
///
/// Equation 3 (rather than RFC 1141's `HC + m + ~m'`) is used because it
/// gives the same result as a full recompute in every case, including the
/// one where the old form produced 0xffff instead of 0x0000.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold_small(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// [`update16`] for a 32-bit field (two 16-bit words at once).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!check)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold_small(acc)
}

/// [`update16`] for a field of any even length, as an IPv4 (4 bytes) or an
/// IPv6 (16 bytes) address. `old` and `new` must have the same length; extra
/// bytes of the longer one are ignored.
#[inline]
pub fn update_addr(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!check);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7
    /// sum to ddf2.
    const RFC1071_EXAMPLE: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    /// An IPv4 header (198.18.0.1 -> 198.18.0.2, TCP, TTL 64, total 40)
    /// whose checksum 0xaea8 was computed by hand.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0xa8, 198, 18, 0, 1, 198,
        18, 0, 2,
    ];

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        assert_eq!(data(&RFC1071_EXAMPLE), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero_on_the_right() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x00, 0x01, 0xab]), 0xab01);
    }

    #[test]
    fn ipv4_header_with_correct_checksum_verifies() {
        assert!(verify(0, &IPV4_HEADER));
        let mut h = IPV4_HEADER;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(finish(0, &h), 0xaea8);
    }

    #[test]
    fn ttl_decrement_by_rfc1624_matches_recompute() {
        let mut h = IPV4_HEADER;
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let inc = update16(0xaea8, old, new);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(inc, finish(0, &h));
    }

    #[test]
    fn rfc1624_section3_example_gives_0000_not_ffff() {
        // RFC 1624 section 3: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285. The
        // header now sums to 0xffff, so the correct checksum is 0x0000;
        // RFC 1141's equation yields the wrong 0xffff.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// Random values through both ways of patching a TTL word, a 32-bit
    /// address and a port: one [`adjust`] equals the chain of updates,
    /// including the 0x0000 / 0xffff edge.
    #[test]
    fn adjust_equals_chained_updates() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000u32 {
            let r = next();
            let (check, w0, w1) = (r as u16, (r >> 16) as u16, (r >> 32) as u16);
            let (a0, a1) = (next() as u32, next() as u32);
            // Every 16th case forces a sum of zero or all ones.
            let check = if i % 16 == 0 { !w0 } else { check };
            let chained = update32(update16(check, w0, w1), a0, a1);
            let once = adjust(
                check,
                u64::from(!w0) + u64::from(w1) + u64::from(!a0) + u64::from(a1),
            );
            assert_eq!(
                once, chained,
                "{check:#x} {w0:#x}->{w1:#x} {a0:#x}->{a1:#x}"
            );
        }
        assert_eq!(adjust(0xdd2f, u64::from(!0x5555u16) + 0x3285), 0x0000);
    }

    #[test]
    fn address_update_matches_two_word_update() {
        let a = [198u8, 18, 0, 1];
        let b = [198u8, 19, 7, 9];
        let c = 0x1234;
        assert_eq!(
            update_addr(c, &a, &b),
            update32(c, u32::from_be_bytes(a), u32::from_be_bytes(b))
        );
    }
}
