//! The kernel's hash primitives that decide which real server a key maps to:
//! `hash_32` (dh, sh, lblc, lblcr buckets), the IPv6 address fold, and
//! `hsiphash` (mh).
//!
//! Why exact copies matter: a client that the kernel sends to server B must
//! go to server B here too, so the hash functions are reproduced to the bit,
//! including the choice of SipHash-1-3 with 64-bit key words that the kernel
//! makes for `hsiphash` on 64-bit machines (32-bit kernels use
//! HalfSipHash-1-3 and build different Maglev tables; we match 64-bit).

use std::net::IpAddr;

/// The multiplier of the kernel's `hash_32` (`GOLDEN_RATIO_32`).
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(v, bits)`: the top `bits` bits of `v * 0x61C88647 mod 2^32`.
/// `bits` must be 1..=32 (every caller passes a constant).
#[inline]
pub const fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// The kernel's `ntohl(addr_fold)`: an IPv4 address as a host-order number,
/// or for IPv6 the XOR of its four 32-bit words (XOR commutes with the byte
/// swap, so folding host-order words gives the same value).
#[inline]
pub fn fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// A `hsiphash_key_t` on a 64-bit kernel: two 64-bit key words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

const C0: u64 = 0x736f_6d65_7073_6575;
const C1: u64 = 0x646f_7261_6e64_6f6d;
const C2: u64 = 0x6c79_6765_6e65_7261;
const C3: u64 = 0x7465_6462_7974_6573;

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-c-d over `msg` with a 128-bit key, full 64-bit result. Generic
/// so the implementation is checked against the published SipHash-2-4
/// vectors; the schedulers use [`hsiphash_u32`].
pub fn siphash(msg: &[u8], key: SipKey, c_rounds: usize, d_rounds: usize) -> u64 {
    let mut v = [key.0 ^ C0, key.1 ^ C1, key.0 ^ C2, key.1 ^ C3];
    let mut chunks = msg.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        for _ in 0..c_rounds {
            sip_round(&mut v);
        }
        v[0] ^= m;
    }
    let mut b = (msg.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= u64::from(*byte) << (8 * i);
    }
    v[3] ^= b;
    for _ in 0..c_rounds {
        sip_round(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..d_rounds {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The kernel's `hsiphash(&v, 4, key)` on a 64-bit machine: SipHash-1-3 of
/// the 4-byte little-endian encoding of `v`, truncated to 32 bits.
/// Specialised for one 4-byte word (no loop over message blocks), since mh
/// calls it on the packet path.
#[inline]
pub fn hsiphash_u32(v: u32, key: SipKey) -> u32 {
    let s = [key.0 ^ C0, key.1 ^ C1, key.0 ^ C2, key.1 ^ C3];
    last_block_1_3(s, (4u64 << 56) | u64::from(v)) as u32
}

/// SipHash-1-3's last (length) block `b`, one compression round, then the
/// three finalisation rounds: the common end of the specialised hashes.
#[inline(always)]
fn last_block_1_3(mut s: [u64; 4], b: u64) -> u64 {
    s[3] ^= b;
    sip_round(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    sip_round(&mut s);
    sip_round(&mut s);
    sip_round(&mut s);
    s[0] ^ s[1] ^ s[2] ^ s[3]
}

/// SipHash-1-3 of a 12-byte message, given as its first 8 bytes (`head`,
/// little-endian) and its last 4 (`tail`, little-endian): [`siphash`]`(msg,
/// key, 1, 3)` in straight-line code (one message block, then the
/// length block), for FULLNAT's IPv4 ISN on a new connection's path.
#[inline]
pub fn siphash13_12(head: u64, tail: u32, key: SipKey) -> u64 {
    let mut s = [key.0 ^ C0, key.1 ^ C1, key.0 ^ C2, key.1 ^ C3];
    s[3] ^= head;
    sip_round(&mut s);
    s[0] ^= head;
    last_block_1_3(s, (12u64 << 56) | u64::from(tail))
}

/// Greatest common divisor of two positive numbers (the kernel's `gcd`).
pub fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// `fls`: 1-based index of the highest set bit, 0 for 0.
pub const fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SipHash paper's key `00 01 .. 0f`.
    const PAPER_KEY: SipKey = SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    #[test]
    fn siphash_2_4_matches_the_published_vectors() {
        // Appendix A of Aumasson & Bernstein, "SipHash: a fast short-input
        // PRF": the empty message and the 15-byte message 00..0e.
        assert_eq!(siphash(&[], PAPER_KEY, 2, 4), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash(&msg, PAPER_KEY, 2, 4), 0xa129_ca61_49be_45e5);
    }

    /// Values from an independent Python SipHash-1-3 (written from the
    /// algorithm description, itself checked against the two 2-4 vectors
    /// above) with the mh keys of ipvs.md 3.13.
    #[test]
    fn hsiphash_of_zero_with_the_mh_keys() {
        let h1 = SipKey(2_654_435_761, 2_654_435_761);
        let h2 = SipKey(2_654_446_892, 2_654_446_892);
        assert_eq!(
            siphash(&0u32.to_le_bytes(), h1, 1, 3),
            0x5c36_1353_1d5a_77c2
        );
        assert_eq!(hsiphash_u32(0, h1), 0x1d5a_77c2);
        assert_eq!(hsiphash_u32(0, h2), 0xf882_433f);
    }

    #[test]
    fn hsiphash_fast_path_equals_the_generic_one() {
        let k = SipKey(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        for v in [0u32, 1, 80, 0xc612_010b, u32::MAX] {
            assert_eq!(
                hsiphash_u32(v, k),
                siphash(&v.to_le_bytes(), k, 1, 3) as u32
            );
        }
    }

    proptest::proptest! {
        /// The 12-byte specialisation is the generic SipHash-1-3 of the
        /// same bytes.
        #[test]
        fn siphash13_12_equals_the_generic_one(
            msg in proptest::array::uniform12(proptest::prelude::any::<u8>()),
            k0 in proptest::prelude::any::<u64>(),
            k1 in proptest::prelude::any::<u64>(),
        ) {
            let k = SipKey(k0, k1);
            let head = u64::from_le_bytes(msg[..8].try_into().unwrap());
            let tail = u32::from_le_bytes(msg[8..].try_into().unwrap());
            proptest::prop_assert_eq!(siphash13_12(head, tail, k), siphash(&msg, k, 1, 3));
        }
    }

    #[test]
    fn hash_32_is_the_top_bits_of_the_golden_ratio_product() {
        // 0xc612010b (198.18.1.11) + 80 = 0xc612015b;
        // 0xc612015b * 0x61c88647 mod 2^32 = 0xe5...: top 8 bits 229.
        assert_eq!(hash_32(0xc612_015b, 8), 229);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 32), GOLDEN_RATIO_32);
        assert_eq!(hash_32(1, 8), 0x61);
    }

    #[test]
    fn fold_xors_the_ipv6_words() {
        assert_eq!(fold(&"198.18.1.11".parse().unwrap()), 0xc612_010b);
        // 2001:0db8:0000:0000:0000:0000:0001:0011 -> 0x20010db8 ^ 0x00010011
        assert_eq!(fold(&"2001:db8::1:11".parse().unwrap()), 0x2000_0da9);
    }

    #[test]
    fn gcd_and_fls() {
        assert_eq!(gcd(4, 6), 2);
        assert_eq!(gcd(7, 7), 7);
        assert_eq!(gcd(9, 1), 1);
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(1000), 10);
        assert_eq!(fls(u32::MAX), 32);
    }
}
