//! The body of the `reassembly` fuzz target: fragments whose offsets,
//! lengths, MF bits, identifications, header sizes and arrival times the
//! bytes decide, through one worker's [`Reassembler`], with the
//! invariants reassembly promises checked after every step.
//!
//! Why structured and not raw frames only: a raw frame that is a valid
//! fragment of a datagram that also receives other valid fragments is a
//! needle libFuzzer rarely finds; here every fragment is well formed unless
//! the bytes say otherwise, and the data of datagram `k` at position `p` is
//! a function of `(k, p)`, so fragments of one datagram are consistent
//! whatever their cutting and a reassembled datagram can be compared with
//! the bytes written. Raw frames are still mixed in (op 6).
//!
//! Invariants:
//! * memory: at most `slots` datagrams, at most `max_fragments` fragments
//!   held per datagram, held ranges disjoint, within the datagram's end
//!   and adding up to the bytes received; a discarded datagram holds none;
//! * every fragment is accounted for: each insertion is held, completes a
//!   datagram or is dropped with a counted reason (the counters move by
//!   exactly that), and held fragments leave only with their datagram,
//!   completed or discarded with a counted reason (timeout, eviction, or
//!   the fragment that spoiled it); a datagram already discarded is not
//!   counted again when its time runs out;
//! * a reassembled datagram is a valid datagram of its key: IP length
//!   equal to its bytes (never beyond 65,535), no fragment left in its
//!   header, and (unless a raw frame was taken in) data equal to the
//!   bytes the fragments carried.
//!
//! The reassembler (64 KiB per slot) is built once per thread and emptied
//! between inputs, so an input's outcome does not depend on the inputs
//! before it (test `a_fuzz_input_starts_on_an_empty_reassembler`).
//!
//! This module is a child of `reassembly` so it can check the slots'
//! bookkeeping without widening the reassembler's API.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;

use super::{FragDrop, Insert, Reassembler, ReassemblyLimits, FRONT, MAX_DATAGRAM, MAX_HEADER};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::ext;
use crate::wire::{parse_packet, Fragment};

/// Slots and fragments per datagram of the fuzzed reassembler: small, so
/// eviction and the fragment limit are reached by short inputs.
pub const FUZZ_LIMITS: ReassemblyLimits = ReassemblyLimits {
    slots: 4,
    max_fragments: 16,
    timeout_v4_ms: 30_000,
    timeout_v6_ms: 60_000,
};

/// Time steps an op may let pass, milliseconds: around both timeouts.
const GAPS: [u64; 8] = [0, 1, 100, 1_000, 10_000, 29_999, 30_000, 60_001];

/// Ops per input at most (each costs up to a 64 KiB copy).
const MAX_OPS: usize = 96;

thread_local! {
    static STATE: RefCell<Option<(Reassembler, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Runs `data` through the thread's reassembler (emptied first); returns a
/// digest of every outcome (insert results, reassembled bytes, counters),
/// so tests can compare runs and the work cannot be optimised away.
/// Panics when an invariant (module docs) does not hold.
pub fn fuzz_reassembly(data: &[u8]) -> u64 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let (r, frame) = s.get_or_insert_with(|| (Reassembler::new(FUZZ_LIMITS), vec![0; 70_000]));
        empty(r);
        run(r, frame, data)
    })
}

/// Back to the state of a new reassembler: no slot in use, counters zero.
fn empty(r: &mut Reassembler) {
    for s in &mut r.slots {
        s.clear();
        s.started = 0;
        s.deadline = 0;
        s.view = (0, 0);
    }
    let c = &r.counters;
    for d in &c.drops {
        d.store(0, Ordering::Relaxed);
    }
    c.fragments.store(0, Ordering::Relaxed);
    c.reassembled.store(0, Ordering::Relaxed);
}

/// Reads the input; bytes past its end read as zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A datagram the structured fragments belong to, from one key byte:
/// the fields reassembly keys on (family, source, identification, IPv4
/// protocol), plus how this fragment's headers look.
#[derive(Clone, Copy)]
struct Shape {
    v6: bool,
    src: u8,
    ident: u8,
    proto: u8,
    vlan: bool,
    /// IPv4: option words; IPv6: bytes of a hop-by-hop header.
    extra: usize,
}

impl Shape {
    fn of(k: u8) -> Shape {
        let v6 = k & 1 != 0;
        let x = usize::from(k >> 6);
        Shape {
            v6,
            ident: (k >> 1) & 3,
            src: (k >> 3) & 1,
            proto: if k & 0x10 != 0 { 132 } else { 17 },
            vlan: k & 0x20 != 0,
            extra: if v6 {
                [0, 8, 16, 88][x]
            } else {
                [0, 1, 5, 10][x]
            },
        }
    }
    /// The reassembly key as a number: what the data pattern depends on
    /// (IPv6 keys ignore the protocol, as reassembly does).
    fn key(&self) -> u8 {
        let proto = if self.v6 {
            0
        } else {
            u8::from(self.proto == 132)
        };
        u8::from(self.v6) | self.ident << 1 | self.src << 3 | proto << 4
    }
    fn src(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                2 + u16::from(self.src),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + self.src))
        }
    }
    fn dst(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))
        }
    }
    fn ident_v4(&self) -> u16 {
        0x5a00 | u16::from(self.ident)
    }
    fn ident_v6(&self) -> u32 {
        0x1234_5600 | u32::from(self.ident)
    }
}

/// Room between two keys' data in [`PATTERN`] (a prime, so no two keys'
/// data line up).
const KEY_STEP: usize = 1021;
/// Keys: [`Shape::key`] is 5 bits.
const KEYS: usize = 32;

/// Pseudo-random bytes the data of every datagram is cut from: the data
/// of key `k` at byte `p` is `PATTERN[k * KEY_STEP + p]`, so writing a
/// fragment and checking a datagram are slice copies and compares (a
/// per-byte function costs a sanitizer check per byte).
static PATTERN: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    // Offsets up to 65,528 plus lengths up to 65,535 (beyond what
    // reassembly takes, which is the point).
    (0..2 * (MAX_DATAGRAM + 1) + KEYS * KEY_STEP)
        .map(|p| ((p as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8 ^ (p >> 11) as u8)
        .collect()
});

/// Bytes `p..p + n` of the data of the datagram with key `key`.
fn pattern(key: u8, p: usize, n: usize) -> &'static [u8] {
    let at = usize::from(key) * KEY_STEP + p;
    &PATTERN[at..at + n]
}

/// Writes one fragment of `shape`'s datagram into `out`: data bytes
/// `offset..offset + len`, MF `more`; returns the frame's length.
fn write_fragment(
    out: &mut [u8],
    shape: Shape,
    offset: usize,
    len: usize,
    more: bool,
    dont_frag: bool,
) -> usize {
    let mut at = 12;
    out[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    if shape.vlan {
        out[12..16].copy_from_slice(&[0x81, 0, 0, 7]);
        at = 16;
    }
    let l3 = at + 2;
    let key = shape.key();
    match (shape.src(), shape.dst()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out[at..l3].copy_from_slice(&[0x08, 0x00]);
            let hl = 20 + 4 * shape.extra;
            let ip = &mut out[l3..l3 + hl + len];
            ip[20..hl].fill(1); // NOP options
            let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
            p.set_version_ihl(hl);
            p.set_dscp_ecn(0);
            p.set_total_len((hl + len) as u16);
            p.set_ident(shape.ident_v4());
            p.set_ttl(64);
            p.set_protocol(shape.proto);
            p.set_src_addr(s);
            p.set_dst_addr(d);
            let w = (offset / 8) as u16 & 0x1fff
                | if more { 0x2000 } else { 0 }
                | if dont_frag { 0x4000 } else { 0 };
            ip[6..8].copy_from_slice(&w.to_be_bytes());
            Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
            ip[hl..].copy_from_slice(pattern(key, offset, len));
            l3 + hl + len
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out[at..l3].copy_from_slice(&[0x86, 0xdd]);
            let hbh = shape.extra;
            let hl = 40 + hbh + 8;
            let ip = &mut out[l3..l3 + hl + len];
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&((hbh + 8 + len) as u16).to_be_bytes());
            ip[6] = if hbh > 0 {
                ext::HOP_BY_HOP
            } else {
                ext::FRAGMENT
            };
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            if hbh > 0 {
                let h = &mut ip[40..40 + hbh];
                h.fill(0); // Pad1 options
                h[0] = ext::FRAGMENT;
                h[1] = (hbh / 8 - 1) as u8;
            }
            let f = &mut ip[40 + hbh..hl];
            f[0] = shape.proto;
            f[1] = 0;
            let w = (offset as u16 & 0xfff8) | u16::from(more);
            f[2..4].copy_from_slice(&w.to_be_bytes());
            f[4..8].copy_from_slice(&shape.ident_v6().to_be_bytes());
            ip[hl..].copy_from_slice(pattern(key, offset, len));
            l3 + hl + len
        }
        _ => unreachable!("one family per shape"),
    }
}

/// What a slot held before a step, to see what the step took away.
#[derive(Clone, Copy, Default)]
struct Held {
    started: u64,
    fragments: usize,
    first: (u32, u32),
}

/// The counters as numbers: drops by reason, fragments, reassembled.
type Counts = ([u64; FragDrop::COUNT], u64, u64);

fn counts(r: &Reassembler) -> Counts {
    let c = &r.counters;
    (
        FragDrop::ALL.map(|d| c.drops(d)),
        c.fragments.load(Ordering::Relaxed),
        c.reassembled.load(Ordering::Relaxed),
    )
}

fn held(r: &Reassembler) -> [Held; 4] {
    let mut h = [Held::default(); 4];
    for (h, s) in h.iter_mut().zip(&r.slots) {
        *h = Held {
            started: s.started,
            fragments: s.ranges.len(),
            first: s.ranges.first().copied().unwrap_or_default(),
        };
    }
    h
}

/// The slots' bookkeeping is sound (memory bound, disjoint ranges).
fn check_slots(r: &Reassembler) {
    assert!(r.slots.len() == FUZZ_LIMITS.slots);
    assert!(r.in_use() <= FUZZ_LIMITS.slots);
    for s in &r.slots {
        assert!(
            s.ranges.len() <= FUZZ_LIMITS.max_fragments,
            "fragments held"
        );
        if s.key.is_none() || s.dead {
            assert!(
                s.ranges.is_empty() && s.received == 0,
                "a free or discarded slot holds data"
            );
        }
        let mut sum = 0;
        for (i, &(a, b)) in s.ranges.iter().enumerate() {
            assert!(a <= b && b as usize <= MAX_DATAGRAM);
            if let Some(t) = s.total {
                assert!(b as usize <= t, "data beyond the datagram's end");
            }
            for &(c, d) in &s.ranges[..i] {
                assert!(b <= c || d <= a, "overlapping ranges held");
            }
            sum += (b - a) as usize;
        }
        assert_eq!(sum, s.received, "bytes received");
    }
}

/// Datagrams whose held fragments a step took away (other than by
/// completing them): each must be counted by a datagram-level reason.
fn losses(before: &[Held; 4], r: &Reassembler) -> u64 {
    let mut n = 0;
    for (b, s) in before.iter().zip(&r.slots) {
        let kept = s.started == b.started
            && s.ranges.len() >= b.fragments
            && (b.fragments == 0 || s.ranges[0] == b.first);
        if b.fragments > 0 && !kept {
            n += 1;
        }
    }
    n
}

/// Reasons that discard a whole datagram (with what it held).
const DATAGRAM_DROPS: [FragDrop; 6] = [
    FragDrop::Overlap,
    FragDrop::TooManyFragments,
    FragDrop::BadLength,
    FragDrop::Timeout,
    FragDrop::Evicted,
    FragDrop::Malformed,
];

fn delta(a: &Counts, b: &Counts, d: FragDrop) -> u64 {
    b.0[d as usize] - a.0[d as usize]
}

/// A reassembled frame is a whole datagram of the key its fragments had;
/// with `exact`, its data is the bytes written.
fn check_whole(frame: &[u8], exact: bool) -> u64 {
    let l3 = if frame.get(12..14) == Some(&[0x81, 0]) {
        18
    } else {
        14
    };
    let ip = &frame[l3..];
    let v4 = ip[0] >> 4 == 4;
    let hl = if v4 {
        let p = Ipv4Packet::new_checked(ip).expect("an IPv4 header");
        assert_eq!(usize::from(p.total_len()), ip.len(), "IPv4 total length");
        assert!(p.verify_checksum(), "IPv4 header checksum");
        assert!(!p.more_frags() && p.frag_offset() == 0, "still a fragment");
        p.header_len()
    } else {
        assert_eq!(ip[0] >> 4, 6);
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        assert_eq!(40 + plen, ip.len(), "IPv6 payload length");
        if ip[6] == ext::HOP_BY_HOP {
            assert_ne!(ip[40], ext::FRAGMENT, "fragment header left");
            40 + (usize::from(ip[41]) + 1) * 8
        } else {
            assert_ne!(ip[6], ext::FRAGMENT, "fragment header left");
            40
        }
    };
    assert!(ip.len() <= MAX_DATAGRAM);
    if exact {
        // The key (Shape::key) from the first fragment's headers; IPv6's
        // identification is gone with the fragment header, so it comes
        // from the marker the harness leaves in the Ethernet source.
        let key = if v4 {
            let src = u8::from(ip[15] == 3);
            let proto = u8::from(ip[9] == 132);
            (ip[5] & 3) << 1 | src << 3 | proto << 4
        } else {
            let src = u8::from(ip[23] == 3);
            1 | (frame[10] & 3) << 1 | src << 3
        };
        let data = &ip[hl..];
        assert!(data == pattern(key, 0, data.len()), "reassembled data");
    }
    let mut h = ip.len() as u64;
    for &b in ip.iter().step_by(97) {
        h = h.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    h
}

/// Writes the fragment a structured op describes into `out` (at least
/// 70,000 bytes): datagram shape byte `key`, data `offset..offset + len`
/// (cut to what one IP packet holds), `flags` bit 0 MF, bit 4 DF; returns
/// the frame's length. The Ethernet source's low bits carry the
/// identification variant (IPv6 loses it with the fragment header).
pub fn fuzz_frame(out: &mut [u8], key: u8, offset: usize, len: usize, flags: u8) -> usize {
    let shape = Shape::of(key);
    let room = 65_535
        - if shape.v6 {
            48 + shape.extra
        } else {
            20 + 4 * shape.extra
        };
    let n = write_fragment(
        out,
        shape,
        offset,
        len.min(room),
        flags & 1 != 0,
        flags & 0x10 != 0,
    );
    out[10] = (out[10] & !3) | shape.ident;
    n
}

fn run(r: &mut Reassembler, frame: &mut [u8], data: &[u8]) -> u64 {
    let mut input = Bytes(data);
    let mut now = 1;
    let mut digest = 0u64;
    // A raw frame was taken in: data may not be the pattern any more.
    let mut tainted = false;
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8();
        let before = held(r);
        let c0 = counts(r);
        let (n, raw) = match op % 8 {
            7 => {
                now += GAPS[usize::from(input.u8() & 7)];
                let dead = r
                    .slots
                    .iter()
                    .filter(|s| s.key.is_some() && s.dead && now >= s.deadline)
                    .count();
                let live = r
                    .slots
                    .iter()
                    .filter(|s| s.key.is_some() && !s.dead && now >= s.deadline)
                    .count();
                let n = r.expire(now);
                assert_eq!(n, dead + live);
                let c1 = counts(r);
                assert_eq!(
                    delta(&c0, &c1, FragDrop::Timeout),
                    live as u64,
                    "a discarded datagram counted again as timed out"
                );
                assert!(losses(&before, r) <= live as u64);
                check_slots(r);
                digest = digest.wrapping_mul(31).wrapping_add(n as u64);
                continue;
            }
            6 => {
                let len = usize::from(input.u16() % 2048);
                let raw = input.take(len);
                frame[..raw.len()].copy_from_slice(raw);
                (raw.len(), true)
            }
            _ => {
                let key = input.u8();
                let offset = usize::from(input.u16() & 0x1fff) * 8;
                let len = input.u16();
                let flags = input.u8();
                now += GAPS[usize::from(flags >> 1 & 7)];
                // Short unless the flags ask for up to 64 KiB (each byte
                // written costs time).
                let len = usize::from(if flags & 0x20 != 0 { len } else { len & 0xfff });
                (fuzz_frame(frame, key, offset, len, flags), false)
            }
        };
        let f = &frame[..n];
        let Ok(meta) = parse_packet(f) else { continue };
        if meta.fragment == Fragment::No {
            continue;
        }
        let got = r.insert(f, &meta, now);
        let c1 = counts(r);
        let side = delta(&c0, &c1, FragDrop::Timeout) + delta(&c0, &c1, FragDrop::Evicted);
        assert!(side <= 1, "one slot found per fragment");
        let lost = losses(&before, r);
        match got {
            Insert::Held | Insert::Complete(_) => {
                assert_eq!(c1.1, c0.1 + 1, "a fragment taken in is counted");
                let done = u64::from(matches!(got, Insert::Complete(_)));
                assert_eq!(c1.2, c0.2 + done, "a datagram completed is counted");
                let other: u64 = FragDrop::ALL.iter().map(|&d| delta(&c0, &c1, d)).sum();
                assert_eq!(other, side, "no drop counted for a fragment taken in");
                assert!(lost <= side, "held fragments lost uncounted");
                tainted |= raw;
            }
            Insert::Dropped(why) => {
                assert_eq!(
                    (c1.1, c1.2),
                    (c0.1, c0.2),
                    "a dropped fragment is not taken in"
                );
                assert_eq!(delta(&c0, &c1, why), 1, "the reason is counted");
                let all: u64 = FragDrop::ALL.iter().map(|&d| delta(&c0, &c1, d)).sum();
                assert_eq!(all, 1 + side, "one reason per fragment");
                let spoil = u64::from(DATAGRAM_DROPS.contains(&why));
                assert!(lost <= side + spoil, "held fragments lost uncounted");
            }
        }
        check_slots(r);
        digest = digest.wrapping_mul(31).wrapping_add(match got {
            Insert::Held => 1,
            Insert::Complete(_) => 2,
            Insert::Dropped(d) => 3 + d as u64,
        });
        if let Insert::Complete(i) = got {
            let whole = r.frame_of(i);
            assert!(whole.len() <= FRONT + MAX_HEADER + MAX_DATAGRAM);
            digest = digest
                .wrapping_mul(31)
                .wrapping_add(check_whole(whole, !tainted));
            r.release(i);
            assert!(r.slots[i].key.is_none());
        }
    }
    let c = counts(r);
    digest
        .wrapping_mul(31)
        .wrapping_add(c.0.iter().sum::<u64>() + c.1 * 7 + c.2 * 13)
}
