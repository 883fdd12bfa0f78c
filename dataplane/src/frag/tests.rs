//! Fragmentation and reassembly together: whatever way a datagram is cut
//! and in whatever order the pieces arrive, reassembly gives back the
//! datagram; overlapping, excessive, late and unfinished fragments are
//! dropped and counted.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::buf::PacketBuf;
use crate::frag::reassembly::{
    fuzz_reassembly, FragDrop, Insert, Reassembler, ReassemblyLimits, FUZZ_LIMITS,
};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::testutil::{frame, L4};
use crate::wire::{parse_packet, Fragment};

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A UDP datagram client -> VIP with `len` bytes of payload, as a frame.
pub(super) fn datagram(v6: bool, len: usize, seed: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let (s, d) = if v6 {
        (ip("2001:db8::2"), ip("2001:db8::100"))
    } else {
        (ip("198.18.0.2"), ip("198.18.0.100"))
    };
    let mut f = frame(s, d, L4::Udp, 40000, 53, None, &payload);
    if !v6 {
        // An identification of its own, no DF (the sender fragments).
        f[18] = seed;
        f[19] = 0x5a;
        f[20] = 0;
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    }
    f
}

/// The datagram of `f` cut into frames of IP size at most `mtu`.
pub(super) fn cut(f: &[u8], mtu: usize, ident: u32) -> Vec<Vec<u8>> {
    let ip = &f[14..];
    let v6 = ip[0] >> 4 == 6;
    let (hdr, data_len) = if v6 {
        (40 + 8, ip.len() - 40)
    } else {
        (20, ip.len() - 20)
    };
    fragment_plan(data_len, hdr, mtu)
        .map(|piece| {
            let mut out = vec![0u8; 14 + mtu];
            out[..14].copy_from_slice(&f[..14]);
            let n = if v6 {
                write_fragment_v6(ip, 40, ident, piece, &mut out[14..]).unwrap()
            } else {
                write_fragment_v4(ip, piece, &mut out[14..]).unwrap()
            };
            out.truncate(14 + n);
            assert!(n <= mtu);
            out
        })
        .collect()
}

fn feed(r: &mut Reassembler, frames: &[Vec<u8>], now: u64) -> Vec<Insert> {
    frames
        .iter()
        .map(|f| {
            let m = parse_packet(f).unwrap();
            assert_ne!(m.fragment, Fragment::No);
            r.insert(f, &m, now)
        })
        .collect()
}

proptest! {
    #[test]
    fn any_cut_in_any_order_reassembles_to_the_datagram(
        v6 in any::<bool>(),
        len in 1500usize..5000,
        mtu in 1280usize..1500,
        seed in any::<u8>(),
        order in proptest::collection::vec(any::<u32>(), 64),
    ) {
        let f = datagram(v6, len, seed);
        // Every datagram is longer than the MTU (at least 1,500 bytes of payload).
        let mut pieces = cut(&f, mtu, 0x1234_5678);
        prop_assert!(pieces.len() >= 2);
        // Shuffle by the random keys.
        let mut keyed: Vec<(u32, Vec<u8>)> =
            pieces.drain(..).enumerate().map(|(i, p)| (order[i % 64] ^ i as u32, p)).collect();
        keyed.sort_by_key(|k| k.0);
        let pieces: Vec<Vec<u8>> = keyed.into_iter().map(|k| k.1).collect();
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let got = feed(&mut r, &pieces, 1);
        let (last, held) = got.split_last().unwrap();
        prop_assert!(held.iter().all(|g| *g == Insert::Held), "{:?}", got);
        let Insert::Complete(slot) = *last else {
            return Err(TestCaseError::fail(format!("{got:?}")));
        };
        let whole = r.frame(slot).data().to_vec();
        prop_assert_eq!(&whole[..], &f[..]);
        r.release(slot);
        prop_assert_eq!(r.in_use(), 0);
    }

    #[test]
    fn an_overlapping_fragment_discards_the_datagram(
        v6 in any::<bool>(),
        len in 3000usize..5000,
        shift in 1usize..64,
        which in any::<prop::sample::Index>(),
    ) {
        let f = datagram(v6, len, 7);
        let mut pieces = cut(&f, 1280, 9);
        // Move one later fragment's offset back into its predecessor.
        // (not the last: moving that back shortens the datagram, which is
        // refused as a bad length before any overlap is looked at).
        let i = 1 + which.index(pieces.len() - 2);
        let p = &mut pieces[i];
        let shift = (shift * 8) as u16;
        if v6 {
            let at = 14 + 40 + 2;
            let w = u16::from_be_bytes([p[at], p[at + 1]]);
            p[at..at + 2].copy_from_slice(&(w - shift).to_be_bytes());
        } else {
            let w = u16::from_be_bytes([p[20], p[21]]);
            p[20..22].copy_from_slice(&(w - shift / 8).to_be_bytes());
            Ipv4Packet::new_unchecked(&mut p[14..]).fill_checksum();
        }
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let got = feed(&mut r, &pieces, 1);
        prop_assert!(got.contains(&Insert::Dropped(FragDrop::Overlap)), "{:?}", got);
        prop_assert!(!got.iter().any(|g| matches!(g, Insert::Complete(_))));
        prop_assert_eq!(r.counters().drops(FragDrop::Overlap), 1);
    }
}

/// One structured fragment op of the `reassembly` fuzz body: datagram
/// shape byte `key`, data `offset` (bytes, a multiple of 8), `len` bytes,
/// `flags` (bit 0 MF, bits 1-3 the time step, bit 4 DF, bit 5 long).
pub(super) fn frag_op(key: u8, offset: usize, len: usize, flags: u8) -> Vec<u8> {
    let mut v = vec![0, key];
    v.extend_from_slice(&((offset / 8) as u16).to_be_bytes());
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.push(flags | if len > 0xfff { 0x20 } else { 0 });
    v
}

/// A raw frame op of the fuzz body.
pub(super) fn raw_op(frame: &[u8]) -> Vec<u8> {
    let mut v = vec![6];
    v.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// The ops that send datagram `key` of `len` bytes in pieces of `step`
/// bytes (a multiple of 8), last piece first when `reverse`.
pub(super) fn cut_ops(key: u8, len: usize, step: usize, reverse: bool) -> Vec<Vec<u8>> {
    let mut ops: Vec<Vec<u8>> = (0..len)
        .step_by(step)
        .map(|o| {
            let n = step.min(len - o);
            frag_op(key, o, n, u8::from(o + n < len))
        })
        .collect();
    if reverse {
        ops.reverse();
    }
    ops
}

/// The seeds of the `reassembly` corpus: datagrams cut every way, in
/// order, reversed, interleaved, with duplicates, overlaps, gaps past the
/// timeouts, more datagrams than slots, the largest datagram, and real
/// fragments (from the fragmenter) as raw frames.
pub(super) fn reassembly_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = vec![];
    let mut add = |name: &str, ops: Vec<Vec<u8>>| seeds.push((name.to_string(), ops.concat()));
    for (k, fam) in [
        (0u8, "v4"),
        (1, "v6"),
        (0x20 | 0x40, "v4-vlan-options"),
        (0x81, "v6-hbh"),
    ] {
        add(&format!("{fam}-in-order"), cut_ops(k, 3000, 1480, false));
        add(&format!("{fam}-reversed"), cut_ops(k, 3000, 1232, true));
        add(&format!("{fam}-small-pieces"), cut_ops(k, 200, 8, false));
        let mut d = cut_ops(k, 3000, 1480, false);
        d.insert(1, d[0].clone());
        add(&format!("{fam}-duplicate"), d);
        let mut o = cut_ops(k, 3000, 1480, false);
        o.insert(1, frag_op(k, 1400, 160, 1));
        add(&format!("{fam}-overlap"), o);
        let mut t = cut_ops(k, 3000, 1480, false);
        t.insert(1, vec![7, 6]);
        t.insert(2, vec![7, 7]);
        add(&format!("{fam}-late"), t);
    }
    // Interleaved datagrams, and more of them than slots.
    let a = cut_ops(0, 2000, 1000, false);
    let b = cut_ops(3, 2000, 1000, true);
    add(
        "v4-v6-interleaved",
        vec![a[0].clone(), b[0].clone(), a[1].clone(), b[1].clone()],
    );
    let firsts: Vec<Vec<u8>> = (0..6u8).map(|k| frag_op(k << 1, 0, 1000, 1)).collect();
    let mut e = firsts.clone();
    e.push(frag_op(0, 1000, 500, 0));
    add("evictions", e);
    add("too-many", cut_ops(2, 8 * 40, 8, false));
    add("largest-v4", cut_ops(0xc0, 65_472 + 40, 65_472, false));
    add("largest-v6", cut_ops(0xc1, 65_392 + 96, 65_392, false));
    add(
        "expire",
        vec![
            frag_op(0, 0, 8, 1),
            frag_op(1, 0, 8, 1),
            vec![7, 6],
            vec![7, 7],
        ],
    );
    for v6 in [false, true] {
        let raw: Vec<Vec<u8>> = cut(&datagram(v6, 3000, 5), 1280, 7)
            .iter()
            .map(|f| raw_op(f))
            .collect();
        add(if v6 { "raw-v6" } else { "raw-v4" }, raw);
    }
    seeds
}

proptest! {
    /// The fuzz target's body on real fragments, mutated, as raw frames:
    /// no panic, and the invariants it checks hold.
    #[test]
    fn mutated_fragments_never_panic(
        v6 in any::<bool>(),
        len in 1300usize..4000,
        edits in proptest::collection::vec((0usize..1600, any::<u8>()), 0..6),
        cuts in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let pieces = cut(&datagram(v6, len, 3), 1280, 1);
        let mut data = vec![];
        for (i, p) in pieces.iter().enumerate() {
            let mut p = p.clone();
            for &(at, v) in &edits {
                if at < p.len() && i % 2 == 0 {
                    p[at] = v;
                }
            }
            if let Some(&c) = cuts.get(i) {
                p.truncate(p.len().saturating_sub(usize::from(c)));
            }
            data.extend(raw_op(&p));
        }
        let _ = fuzz_reassembly(&data);
    }

    /// Structured fragments of a few datagrams, cut, shuffled, duplicated,
    /// overlapping, late: the invariants the fuzz body checks hold.
    #[test]
    fn any_fragments_keep_the_reassembly_invariants(
        ops in proptest::collection::vec(
            (0u8..8, any::<u8>(), 0usize..600, 0usize..3000, any::<u8>()), 0..40),
        seed in 0usize..48,
    ) {
        let seeds = reassembly_seeds();
        let mut data = seeds[seed % seeds.len()].1.clone();
        for (op, key, off, len, flags) in ops {
            match op {
                7 => data.extend([7, flags]),
                // Offsets and lengths near the seeds' cuts, so pieces meet.
                _ => data.extend(frag_op(key, off * 8, len, flags & !0x20)),
            }
        }
        let _ = fuzz_reassembly(&data);
    }

    /// The seeds, mutated byte by byte: still no panic.
    #[test]
    fn mutated_seeds_keep_the_reassembly_invariants(
        seed in 0usize..48,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let seeds = reassembly_seeds();
        let mut data = seeds[seed % seeds.len()].1.clone();
        for (at, v) in edits {
            let i = at.index(data.len());
            data[i] = v;
        }
        let _ = fuzz_reassembly(&data);
    }
}

#[test]
fn every_reassembly_seed_keeps_the_invariants_and_completes_what_it_should() {
    for (name, data) in reassembly_seeds() {
        let _ = fuzz_reassembly(&data);
        let mut r = Reassembler::new(FUZZ_LIMITS);
        // The in-order and reversed cuts complete (checked in the body:
        // equal to the bytes written).
        if name.ends_with("in-order") || name.ends_with("reversed") {
            assert!(complete_count(&mut r, &data) == 1, "{name}");
        }
    }
}

/// Datagrams the leading fragment ops of `data` complete on `r`.
fn complete_count(r: &mut Reassembler, data: &[u8]) -> u64 {
    let before = r
        .counters()
        .reassembled
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut frame = vec![0u8; 70_000];
    let mut at = 0;
    let mut now = 1;
    while at + 7 <= data.len() && data[at] == 0 {
        let op = &data[at..at + 7];
        at += 7;
        let off = usize::from(u16::from_be_bytes([op[2], op[3]]) & 0x1fff) * 8;
        let len = usize::from(u16::from_be_bytes([op[4], op[5]]));
        let n = super::reassembly::fuzz_frame(&mut frame, op[1], off, len, op[6]);
        let m = parse_packet(&frame[..n]).unwrap();
        now += 1;
        if let Insert::Complete(i) = r.insert(&frame[..n], &m, now) {
            r.release(i);
        }
    }
    r.counters()
        .reassembled
        .load(std::sync::atomic::Ordering::Relaxed)
        - before
}

#[test]
fn a_fuzz_input_starts_on_an_empty_reassembler() {
    // Each seed alone, on a fresh thread (a new reassembler) ...
    let seeds = reassembly_seeds();
    let alone: Vec<u64> = seeds
        .iter()
        .map(|(_, d)| {
            let d = d.clone();
            std::thread::spawn(move || fuzz_reassembly(&d))
                .join()
                .unwrap()
        })
        .collect();
    // ... gives what it gives after all the others ran on this thread,
    // leaving datagrams pending, discarded and completed.
    for (_, d) in &seeds {
        let _ = fuzz_reassembly(d);
    }
    for ((name, d), want) in seeds.iter().zip(&alone).rev() {
        assert_eq!(fuzz_reassembly(d), *want, "{name}");
    }
}

#[test]
fn a_datagram_longer_than_64k_with_its_first_headers_is_dropped() {
    // The first fragment carries 40 bytes of options, the last none: the
    // last fragment's end is within the limit its own header allows, but
    // the datagram with the first fragment's header is 65,572 bytes.
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut frame = vec![0u8; 70_000];
    let mut got = vec![];
    for (key, off, len, flags) in [(0xc0, 0, 65_472, 1), (0, 65_472, 40, 0)] {
        let n = super::reassembly::fuzz_frame(&mut frame, key, off, len, flags);
        let m = parse_packet(&frame[..n]).unwrap();
        got.push(r.insert(&frame[..n], &m, 1));
    }
    assert_eq!(got, [Insert::Held, Insert::Dropped(FragDrop::BadLength)]);
    assert_eq!(
        r.counters()
            .reassembled
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // IPv6: 88 bytes of hop-by-hop header in front of the first piece.
    let mut got = vec![];
    for (key, off, len, flags) in [(0xc1, 0, 65_392, 1), (1, 65_392, 96, 0)] {
        let n = super::reassembly::fuzz_frame(&mut frame, key, off, len, flags);
        let m = parse_packet(&frame[..n]).unwrap();
        got.push(r.insert(&frame[..n], &m, 1));
    }
    assert_eq!(got, [Insert::Held, Insert::Dropped(FragDrop::BadLength)]);
}

#[test]
fn a_discarded_datagram_is_not_counted_again_when_its_time_runs_out() {
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut pieces = cut(&datagram(false, 4000, 1), 1500, 0);
    // The second piece moved back onto the first: an overlap.
    let p = &mut pieces[1];
    let w = u16::from_be_bytes([p[20], p[21]]);
    p[20..22].copy_from_slice(&(w - 1).to_be_bytes());
    Ipv4Packet::new_unchecked(&mut p[14..]).fill_checksum();
    let got = feed(&mut r, &pieces[..2], 1000);
    assert_eq!(got[1], Insert::Dropped(FragDrop::Overlap));
    // Its last piece, after its time: a new datagram, which times out.
    assert_eq!(r.expire(31_000), 1, "the discarded datagram's slot freed");
    assert_eq!(r.counters().drops(FragDrop::Timeout), 0);
    feed(&mut r, &pieces[2..], 31_000);
    assert_eq!(r.expire(61_000), 1);
    assert_eq!(r.counters().drops(FragDrop::Timeout), 1);
    assert_eq!(r.counters().drops(FragDrop::Overlap), 1);
}

/// Writes the `reassembly` corpus's seeds into `$UVS_FUZZ_SEEDS/reassembly`
/// (`scripts/fuzz --seed`).
#[test]
#[ignore = "writes files: run by scripts/fuzz --seed"]
fn write_reassembly_seeds() {
    let Some(dir) = std::env::var_os("UVS_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join("reassembly");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in reassembly_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}

#[test]
fn a_duplicate_is_dropped_alone_and_the_datagram_completes() {
    let f = datagram(false, 4000, 1);
    let mut pieces = cut(&f, 1500, 0);
    pieces.insert(1, pieces[0].clone());
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let got = feed(&mut r, &pieces, 1);
    assert_eq!(got[1], Insert::Dropped(FragDrop::Duplicate));
    let Some(Insert::Complete(slot)) = got.last() else {
        panic!("{got:?}")
    };
    let whole = r.frame(*slot).data().to_vec();
    assert_eq!(whole, f);
}

#[test]
fn unfinished_datagrams_time_out_after_the_kernels_times() {
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let v4 = cut(&datagram(false, 4000, 1), 1500, 0);
    let v6 = cut(&datagram(true, 4000, 1), 1500, 5);
    feed(&mut r, &v4[..1], 1000);
    feed(&mut r, &v6[..1], 1000);
    assert_eq!(r.expire(30_999), 0);
    assert_eq!(r.expire(31_000), 1, "ipfrag_time 30 s");
    assert_eq!(r.expire(60_999), 0);
    assert_eq!(r.expire(61_000), 1, "ip6frag_time 60 s");
    assert_eq!(r.counters().drops(FragDrop::Timeout), 2);
    // The rest of the v4 datagram, late, does not complete it.
    let got = feed(&mut r, &v4[1..], 62_000);
    assert!(got.iter().all(|g| *g == Insert::Held), "{got:?}");
}

#[test]
fn too_many_fragments_and_too_many_datagrams_are_bounded() {
    let mut r = Reassembler::new(ReassemblyLimits {
        slots: 2,
        max_fragments: 8,
        ..ReassemblyLimits::default()
    });
    // 4000 bytes in pieces of 8 bytes of data: far more than 8 fragments.
    let tiny = cut(&datagram(false, 4000, 1), 28, 0);
    let got = feed(&mut r, &tiny[..20], 1);
    assert!(got.contains(&Insert::Dropped(FragDrop::TooManyFragments)));
    // Three datagrams at once in two slots: the oldest goes.
    for (seed, now) in [(2u8, 10), (3, 20), (4, 30)] {
        let p = cut(&datagram(false, 3000, seed), 1500, 0);
        feed(&mut r, &p[..1], now);
    }
    assert_eq!(r.counters().drops(FragDrop::Evicted), 1);
    assert_eq!(r.in_use(), 2);
}

#[test]
fn data_beyond_the_last_fragment_or_64_kib_is_refused() {
    let f = datagram(false, 4000, 1);
    let mut pieces = cut(&f, 1500, 0);
    // Last fragment first, then a middle one pushed past its end.
    let last = pieces.pop().unwrap();
    let mut r = Reassembler::new(ReassemblyLimits::default());
    feed(&mut r, std::slice::from_ref(&last), 1);
    let mut beyond = pieces[1].clone();
    let w = u16::from_be_bytes([beyond[20], beyond[21]]);
    beyond[20..22].copy_from_slice(&((w & 0xe000) | 1000).to_be_bytes());
    Ipv4Packet::new_unchecked(&mut beyond[14..]).fill_checksum();
    assert_eq!(
        feed(&mut r, &[beyond], 1),
        [Insert::Dropped(FragDrop::BadLength)]
    );
}

#[test]
fn ipv4_fragments_keep_df_off_and_fit_the_mtu() {
    let f = datagram(false, 4000, 3);
    let pieces = cut(&f, 1500, 0);
    assert_eq!(pieces.len(), 3);
    let mut offsets = vec![];
    for p in &pieces {
        let m = parse_packet(p).unwrap();
        assert!(!m.dont_frag);
        assert!(usize::from(m.ip_len) <= 1500);
        assert!(Ipv4Packet::new_checked(&p[14..]).unwrap().verify_checksum());
        offsets.push(Ipv4Packet::new_checked(&p[14..]).unwrap().frag_offset());
    }
    assert_eq!(offsets, [0, 1480, 2960]);
}

/// The configuration of [`two_stages`]: two ports (198.18.0.1 and
/// 2001:db8::1 toward the clients, 198.18.1.1 and 2001:db8:1::1 toward the
/// real servers), the clients 198.18.0.2 / 2001:db8::2 and the real servers
/// as static neighbours, and one NAT service, UDP port 53 on 198.18.0.100
/// and 2001:db8::100 to 198.18.1.10 / 2001:db8:1::10.
pub(super) fn two_worker_config() -> (crate::net::L3Config, crate::config::ConfigStore) {
    use crate::config::{ConfigOp, ConfigStore};
    use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
    use crate::net::{Interface, L3Config, Prefix};
    use crate::wire::ethernet::MacAddr;

    let port = |id: u16, v4: &str, v6: &str| Interface {
        port: id,
        mac: MacAddr([2, 0, 0, 0, 0, 1 + id as u8]),
        addrs: vec![
            Prefix::new(ip(v4), 24).unwrap(),
            Prefix::new(ip(v6), 64).unwrap(),
        ],
        mtu: 1500,
        kernel: false,
    };
    let cfg = L3Config {
        interfaces: vec![
            port(0, "198.18.0.1", "2001:db8::1"),
            port(1, "198.18.1.1", "2001:db8:1::1"),
        ],
        routes: vec![],
        neighbors: ["198.18.0.2", "2001:db8::2", "198.18.1.10", "2001:db8:1::10"]
            .iter()
            .map(|a| (ip(a), MacAddr([2, 0, 0, 0, 0xaa, 1])))
            .collect(),
        forwarding: Default::default(),
    };
    let mut store = ConfigStore::new();
    for (vip, rs) in [
        ("198.18.0.100", "198.18.1.10"),
        ("2001:db8::100", "2001:db8:1::10"),
    ] {
        let key = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip(vip),
            port: 53,
        };
        store
            .apply(&ConfigOp::AddService(ServiceConfig::new(key)))
            .unwrap();
        let d = DestConfig {
            addr: ip(rs),
            port: 53,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        store.apply(&ConfigOp::AddDest(key, d)).unwrap();
    }
    (cfg, store)
}

/// Two workers' load-balancing stages over [`two_worker_config`].
pub(super) fn two_stages() -> (Vec<crate::lb::LbStage>, crate::net::RouteCache) {
    use crate::lb::{ConfigCell, ConnDump, Lb, LbSettings, LbStage};
    use crate::rss::Ownership;
    use std::sync::Arc;

    let (cfg, store) = two_worker_config();
    let owners = Ownership::new(2);
    let routes = crate::net::RouteCache::new(cfg.route_table().unwrap(), cfg.interfaces.clone());
    let stages = (0..2)
        .map(|me| {
            let cell = Arc::new(ConfigCell::default());
            cell.publish(store.snapshot());
            let mut lb = Lb::new(
                me,
                LbSettings {
                    capacity: 1024,
                    ..LbSettings::default()
                },
                0,
            );
            lb.set_snapshot(cell.load());
            LbStage::new(
                lb,
                me,
                owners.clone(),
                cell,
                Arc::new(ConnDump::default()),
                cfg.interfaces.clone(),
            )
        })
        .collect();
    (stages, routes)
}

/// With two workers, RSS may give the fragments of one datagram to both
/// (on fragments it hashes addresses only, or nothing): every fragment is
/// handed to the worker of the source address and identification, which
/// alone reassembles the datagram and balances it whole (its connection's
/// owner here); nothing is reassembled, held or lost on the other.
#[test]
fn with_two_workers_fragments_split_by_rss_meet_and_are_reassembled_on_one_worker() {
    use crate::net::{Stage, StageVerdict};
    use crate::rss::Ownership;

    let owners = Ownership::new(2);
    for v6 in [false, true] {
        let (mut stages, routes) = two_stages();
        let (src, sport) = if v6 {
            (ip("2001:db8::2"), 40000)
        } else {
            (ip("198.18.0.2"), 40000)
        };
        // An identification that leads the fragments to the connection's
        // owner (the other case: `tests_workers`).
        let home = owners.owner(src, sport);
        let ident = if v6 { 0x0102_0304 } else { 0x0304 };
        let ident = crate::frag::ident_for(&owners, src, ident, home).unwrap();
        let mut whole = datagram(v6, 4000, 7);
        if !v6 {
            whole[18..20].copy_from_slice(&(ident as u16).to_be_bytes());
            Ipv4Packet::new_unchecked(&mut whole[14..]).fill_checksum();
        }
        let pieces = cut(&whole, 1500, ident);
        assert_eq!(pieces.len(), 3);
        assert_eq!(parse_packet(&whole).unwrap().src, src);
        let mut datagrams = 0;
        for (i, p) in pieces.iter().enumerate() {
            // Alternate arrival workers, as RSS may.
            let mut at = i % 2;
            let mut buf = crate::buf::TestBuf::new(p);
            let m = parse_packet(p).unwrap();
            loop {
                match stages[at].process(0, buf, &m, 1, &routes) {
                    StageVerdict::HandOver { buf: b, worker } => {
                        assert_ne!(at, home, "the home worker keeps its fragments");
                        assert_eq!(worker, home, "fragment {i} (v6 {v6})");
                        buf = b;
                        at = worker;
                    }
                    StageVerdict::Drop { counted, .. } => {
                        assert!(counted);
                        assert!(i < pieces.len() - 1, "the last fragment completes it");
                        break;
                    }
                    StageVerdict::Datagram { dst, .. } => {
                        assert_eq!(at, home);
                        let rs = if v6 { "2001:db8:1::10" } else { "198.18.1.10" };
                        assert_eq!(dst, ip(rs));
                        let out = Stage::<crate::buf::TestBuf>::datagram(&stages[at])
                            .expect("the datagram is held");
                        let m = parse_packet(out).unwrap();
                        assert_eq!(m.fragment, Fragment::No);
                        assert_eq!((m.dst, m.dport), (ip(rs), 53));
                        // The whole payload, rewritten for the real server.
                        assert_eq!(out.len(), whole.len());
                        assert_eq!(out[out.len() - 4000..], whole[whole.len() - 4000..]);
                        Stage::<crate::buf::TestBuf>::datagram_sent(&mut stages[at]);
                        datagrams += 1;
                        break;
                    }
                    _ => panic!("fragment {i} (v6 {v6}): neither held, handed nor completed"),
                }
            }
        }
        assert_eq!(datagrams, 1, "v6 {v6}");
        use std::sync::atomic::Ordering::Relaxed;
        let (h, o) = (&stages[home], &stages[1 - home]);
        let (h, o) = (&h.lb().counters().frag, &o.lb().counters().frag);
        assert_eq!(h.fragments.load(Relaxed), 3);
        assert_eq!(h.reassembled.load(Relaxed), 1);
        assert_eq!(o.fragments.load(Relaxed), 0);
        for r in FragDrop::ALL {
            assert_eq!(h.drops(r) + o.drops(r), 0, "{r:?}");
        }
    }
}

#[test]
fn fragments_with_and_without_a_vlan_tag_reassemble_to_a_valid_datagram() {
    // The first fragment untagged, the last tagged, and the other way
    // round: the IP header is fixed where the first fragment put it.
    for (first, last) in [(0x00, 0x20), (0x20, 0x00), (0x01, 0x21), (0x21, 0x01)] {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let mut frame = vec![0u8; 70_000];
        let mut got = vec![];
        for (key, off, len, flags) in [(first, 0, 1480, 1), (last, 1480, 100, 0)] {
            let n = super::reassembly::fuzz_frame(&mut frame, key, off, len, flags);
            let m = parse_packet(&frame[..n]).unwrap();
            got.push(r.insert(&frame[..n], &m, 1));
        }
        let Insert::Complete(i) = got[1] else {
            panic!("{got:?}")
        };
        let whole = r.frame_of(i);
        let l3 = if first & 0x20 != 0 { 18 } else { 14 };
        assert_eq!(
            &whole[l3 - 2..l3],
            if first & 1 == 0 { [8, 0] } else { [0x86, 0xdd] }
        );
        let ip = &whole[l3..];
        if first & 1 == 0 {
            let p = Ipv4Packet::new_checked(ip).unwrap();
            assert_eq!(usize::from(p.total_len()), ip.len(), "{first:#x}+{last:#x}");
            assert_eq!(ip.len(), 20 + 1580);
            assert!(p.verify_checksum() && !p.more_frags() && p.frag_offset() == 0);
        } else {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(40 + plen, ip.len(), "{first:#x}+{last:#x}");
            assert_eq!(ip.len(), 40 + 1580);
            assert_eq!(ip[6], 17, "the fragment header is gone");
        }
    }
}

/// Inputs the `reassembly` fuzz target crashed on, run through its body:
/// `nested-fragment-header`, an IPv6 fragment whose own fragment header
/// at offset 0 was followed by a second one; the reassembled datagram
/// still began with that second header. The parser now refuses a second
/// fragment header (`wire::ipv6`'s `a_second_fragment_header_is_rejected`).
#[test]
fn the_fuzz_targets_former_crashes_pass() {
    crate::frag::reassembly::fuzz_reassembly(include_bytes!(
        "fuzz-regressions/nested-fragment-header"
    ));
}
