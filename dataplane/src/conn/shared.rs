//! Director-wide persistence templates: one template per client (or per
//! `-M` network) for all workers, as one kernel IPVS has.
//!
//! Why: a connection belongs to the worker its client *endpoint* (address
//! and port) hashes to, so the connections of one client are spread over
//! the workers, and each worker's table keeps its own templates. Left
//! alone, two workers would schedule a client's connections independently
//! and `-p` would send one client to several real servers.
//!
//! How: each worker still keeps a template entry in its own table (so its
//! connections are bound, counted and expired exactly as before, with no
//! change on the established-packet path), but a worker that has no
//! template for a key asks this table first. If another worker holds a
//! template for the key, the new local template takes its destination
//! instead of scheduling; otherwise the worker schedules and publishes its
//! choice here. A slot here lives while at least one worker's template
//! refers to it (a reference count), so the director-wide template lives
//! while any worker's does: until the persistence timeout after the
//! client's last new connection on any worker, and while any worker's
//! template still controls connections, which is the kernel's rule for its
//! one template. A template found invalid (destination deleted, or
//! quiescent with `expire_quiescent_template`) is neutralised here too, so
//! that every worker schedules anew and all agree on the next choice.
//!
//! Lock-free: slots are open-addressed in a probe window of [`WINDOW`]
//! slots (whose tag bytes are compared eight at a time); a slot is
//! claimed with a compare-and-swap on its state word,
//! filled, then published with a release store; references are taken with
//! a compare-and-swap that also checks the slot's generation, so a slot
//! freed and reused in between is never mistaken for the one read. No
//! lock, no allocation, no syscall: the cost is paid only when a worker
//! has no local template for a key (a client's first connection on that
//! worker), plus one atomic load when a local template is reused.
//!
//! Two workers that miss the same key at the same instant may both
//! publish (the kernel has the same race between two CPUs). Right after
//! publishing, a worker looks again (waiting a few hundred spins for a slot
//! of the same key still being filled): the earliest slot of the window
//! wins. A worker whose slot is later takes the earliest and withdraws its
//! own; one whose slot is earliest neutralises the later ones, so that
//! their workers' next connections come to it. Those first connections may
//! have gone to two servers (as in the kernel's race); every later one goes
//! to one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::table::MemAdvice;
use super::{ConnAddr, ConnKey};
use crate::model::ConnEntry;

/// Slots probed for one key.
pub const WINDOW: usize = 16;
/// How long (spin-loop hints) a worker publishing a template waits for an
/// earlier slot being filled for the same key hash; past it, each keeps its
/// own and later connections take the earlier one.
const BUSY_SPINS: u32 = 512;

// The state word of a slot: reference count (low 32 bits), flags, a tag
// of the key's hash (to skip most non-matching slots without reading the
// key) and a generation bumped each time the slot is freed.
const REFS: u64 = 0xffff_ffff;
const BUSY: u64 = 1 << 32;
const LIVE: u64 = 1 << 33;
const NEUTRAL: u64 = 1 << 34;
const TAG_SHIFT: u32 = 40;
const TAG_MASK: u64 = 0xff << TAG_SHIFT;
const GEN_ONE: u64 = 1 << 48;
const GEN_MASK: u64 = !(GEN_ONE - 1);

/// One template's key (5 words) and destination (2 words, the port
/// shares the key's last word). The state words live in an array of their
/// own, so that scanning a probe window reads 2 cache lines, not 16.
#[derive(Debug, Default)]
struct Slot {
    /// Client (masked) address, virtual address (or fwmark), then
    /// `proto | cport << 8 | vport << 24 | dest port << 40`.
    key: [AtomicU64; 5],
    daddr: [AtomicU64; 2],
}

/// The key's last word without the destination port.
const KEY_LAST_MASK: u64 = (1 << 40) - 1;

fn key_words(k: &ConnKey) -> [u64; 5] {
    let (s0, s1) = k.src.words();
    let (d0, d1) = k.dst.words();
    [
        s0,
        s1,
        d0,
        d1,
        u64::from(k.proto) | u64::from(k.sport) << 8 | u64::from(k.dport) << 24,
    ]
}

impl Slot {
    fn key_is(&self, w: &[u64; 5]) -> bool {
        self.key[4].load(Ordering::Relaxed) & KEY_LAST_MASK == w[4]
            && (0..4).all(|i| self.key[i].load(Ordering::Relaxed) == w[i])
    }

    fn dest(&self) -> (ConnAddr, u16) {
        let a = self.daddr[0].load(Ordering::Relaxed).to_ne_bytes();
        let b = self.daddr[1].load(Ordering::Relaxed).to_ne_bytes();
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&a);
        addr[8..].copy_from_slice(&b);
        let port = (self.key[4].load(Ordering::Relaxed) >> 40) as u16;
        (ConnAddr(addr), port)
    }
}

/// A reference to a director-wide template, held by one worker's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRef {
    /// The slot (what the worker's template remembers).
    pub slot: u32,
    /// The destination the template names: address and port, as
    /// configured (`-r`).
    pub daddr: ConnAddr,
    pub dport: u16,
    /// Whether this reference published the template (its destination
    /// then counts it in PersistConn).
    pub installed: bool,
}

/// The director-wide template table (shared by all workers).
#[derive(Debug)]
pub struct SharedTemplates {
    states: Box<[AtomicU64]>,
    /// One byte per slot, eight slots a word: a hint of the key hash of
    /// the slot's entry (high bit set), 0 when the slot is free. A probe
    /// window is two aligned words, compared eight bytes at a time, so a
    /// miss reads 2 words instead of 16 state words.
    tags: Box<[AtomicU64]>,
    slots: Box<[Slot]>,
    mask: usize,
    seed: [u64; 2],
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The lanes (bit `i` for byte `i`) of `word` that may equal `b`: every
/// equal byte is reported, and a byte above an equal one may be too (the
/// usual SWAR borrow); the caller checks the slot itself.
#[inline]
fn lanes(word: u64, b: u8) -> u32 {
    let x = word ^ LO.wrapping_mul(u64::from(b));
    let z = x.wrapping_sub(LO) & !x & HI;
    // Gather bit 7 of each byte into the top byte, then down.
    ((z >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

impl SharedTemplates {
    /// A table of at least `slots` slots (a power of two, at least
    /// [`WINDOW`]), 65 bytes each, all allocated here.
    pub fn new(slots: usize) -> SharedTemplates {
        SharedTemplates::with_advice(slots, None)
    }

    /// [`SharedTemplates::new`], calling `advise` on each array after
    /// reserving it and before touching it (the daemon asks for transparent
    /// huge pages, as for the connection tables: a template lookup is a few
    /// random accesses into a table of up to hundreds of MiB).
    pub fn with_advice(slots: usize, advise: Option<MemAdvice>) -> SharedTemplates {
        let n = slots.max(WINDOW).next_power_of_two();
        let mut states: Vec<AtomicU64> = Vec::with_capacity(n);
        let mut tags: Vec<AtomicU64> = Vec::with_capacity(n / 8);
        let mut data: Vec<Slot> = Vec::with_capacity(n);
        if let Some(f) = advise {
            f(states.as_mut_ptr().cast(), n * 8);
            f(tags.as_mut_ptr().cast(), n);
            f(data.as_mut_ptr().cast(), n * std::mem::size_of::<Slot>());
        }
        states.resize_with(n, || AtomicU64::new(0));
        tags.resize_with(n / 8, || AtomicU64::new(0));
        data.resize_with(n, Slot::default);
        let rs = RandomState::new();
        SharedTemplates {
            states: states.into_boxed_slice(),
            tags: tags.into_boxed_slice(),
            slots: data.into_boxed_slice(),
            mask: n - 1,
            seed: [rs.hash_one(1u8) | 1, rs.hash_one(2u8) | 1],
        }
    }

    /// The table for workers whose connection tables hold `per_worker`
    /// entries each: half as many slots (at least 1024). Templates are at
    /// most one per client (or network) and connection, and usually far
    /// fewer than connections; at 65 bytes a slot this adds a quarter to
    /// one worker's table (128 bytes an entry). A full probe window only
    /// means that worker keeps a template of its own for that client.
    pub fn sized_for(per_worker: u32, advise: Option<MemAdvice>) -> SharedTemplates {
        SharedTemplates::with_advice(
            ((per_worker as usize).next_power_of_two() / 2).max(1024),
            advise,
        )
    }

    /// Slots (capacity).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * (std::mem::size_of::<Slot>() + 9)
    }

    fn hash(&self, w: &[u64; 5]) -> u64 {
        mix(
            w[0] ^ w[2] ^ self.seed[0],
            w[1] ^ w[3] ^ 0x9e37_79b9_7f4a_7c15,
        ) ^ mix(w[4] ^ self.seed[1], w[0] ^ 0xc2b2_ae3d_27d4_eb4f)
    }

    /// The key's window (its first slot, a multiple of 8), the tag in its
    /// state words and its tag byte.
    fn start_and_tag(&self, w: &[u64; 5]) -> (usize, u64, u8) {
        let h = self.hash(w);
        (
            h as usize & self.mask & !7,
            (h >> 56) << TAG_SHIFT,
            0x80 | (h >> 49) as u8,
        )
    }

    /// The window positions (bit `j` for slot `start + j`) whose tag byte
    /// may be `b`.
    #[inline]
    fn candidates(&self, start: usize, b: u8, order: Ordering) -> u32 {
        let g = start / 8;
        let w0 = self.tags[g].load(order);
        let w1 = self.tags[(g + 1) % self.tags.len()].load(order);
        lanes(w0, b) | lanes(w1, b) << 8
    }

    fn set_tag(&self, at: usize, b: u8) {
        self.tags[at / 8].fetch_or(u64::from(b) << (8 * (at % 8)), Ordering::SeqCst);
    }

    fn clear_tag(&self, at: usize) {
        self.tags[at / 8].fetch_and(!(0xff << (8 * (at % 8))), Ordering::AcqRel);
    }

    /// Takes a reference on the live template for `k`, if a worker holds
    /// one. Scans the first `limit` slots of the window, earliest first.
    fn acquire_in(
        &self,
        w: &[u64; 5],
        limit: usize,
        skip: Option<usize>,
        wait_busy: bool,
    ) -> Option<SharedRef> {
        let (start, tag, tb) = self.start_and_tag(w);
        let order = if wait_busy {
            Ordering::SeqCst
        } else {
            Ordering::Acquire
        };
        let mut cand = self.candidates(start, tb, order) & ((1u32 << limit) - 1);
        while cand != 0 {
            let j = cand.trailing_zeros() as usize;
            cand &= cand - 1;
            let at = (start + j) & self.mask;
            if skip == Some(at) {
                continue;
            }
            let (state, s) = (&self.states[at], &self.slots[at]);
            let mut st = state.load(order);
            let mut spins = 0;
            loop {
                // A slot being filled for a key like ours, met while
                // publishing our own: give its writer (a few stores) the
                // time to finish, so that both of us agree on it.
                if wait_busy && st & BUSY != 0 && st & TAG_MASK == tag && spins < BUSY_SPINS {
                    std::hint::spin_loop();
                    spins += 1;
                    st = state.load(order);
                    continue;
                }
                if st & (LIVE | NEUTRAL | BUSY | TAG_MASK) != LIVE | tag || st & REFS == 0 {
                    break;
                }
                if !s.key_is(w) {
                    break;
                }
                // Read before the reference is taken: the compare-and-swap
                // below succeeds only if the slot was not freed (its
                // generation would have changed) since `st` was loaded.
                let (daddr, dport) = s.dest();
                match state.compare_exchange_weak(st, st + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        return Some(SharedRef {
                            slot: at as u32,
                            daddr,
                            dport,
                            installed: false,
                        })
                    }
                    Err(cur) => st = cur,
                }
            }
        }
        None
    }

    /// A reference on the live, not neutralised template for `k`, if any
    /// worker holds one. The caller checks that its destination is still
    /// valid (else [`SharedTemplates::neutralise`] and
    /// [`SharedTemplates::release`]).
    #[inline]
    pub fn acquire(&self, k: &ConnKey) -> Option<SharedRef> {
        self.acquire_in(&key_words(k), WINDOW, None, false)
    }

    /// Publishes the template for `k` naming `daddr:dport` (the caller
    /// scheduled it) and returns a reference: to this one, or to the one
    /// another worker published for the same key at the same instant,
    /// which then wins (compare the returned destination). `None` when the
    /// key's probe window is full: the caller keeps a template of its own.
    pub fn install(&self, k: &ConnKey, daddr: ConnAddr, dport: u16) -> Option<SharedRef> {
        let w = key_words(k);
        let (start, tag, tb) = self.start_and_tag(&w);
        let mut mine = None;
        let mut free = self.candidates(start, 0, Ordering::Acquire);
        while free != 0 {
            let j = free.trailing_zeros() as usize;
            free &= free - 1;
            let at = (start + j) & self.mask;
            let (state, s) = (&self.states[at], &self.slots[at]);
            let st = state.load(Ordering::Relaxed);
            if st & (BUSY | LIVE) != 0 {
                continue;
            }
            let gen = st & GEN_MASK;
            if state
                .compare_exchange(st, gen | BUSY | tag, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            self.set_tag(at, tb);
            for (i, v) in w.iter().enumerate().take(4) {
                s.key[i].store(*v, Ordering::Relaxed);
            }
            s.key[4].store(w[4] | u64::from(dport) << 40, Ordering::Relaxed);
            let (a, b) = daddr.words();
            s.daddr[0].store(a, Ordering::Relaxed);
            s.daddr[1].store(b, Ordering::Relaxed);
            state.store(gen | LIVE | tag | 1, Ordering::SeqCst);
            mine = Some((j, at));
            break;
        }
        let (j, at) = mine?;
        // Settle a race with workers that published the same key since our
        // lookup: the earliest slot of the window wins. An earlier one is
        // taken and ours withdrawn; later ones are neutralised, so their
        // workers' next connections come to ours. Publication and these
        // loads are sequentially consistent, so of two racers at least the
        // second to publish sees the other.
        if let Some(first) = self.acquire_in(&w, j, Some(at), true) {
            self.neutralise(at as u32);
            self.release(at as u32);
            return Some(first);
        }
        self.neutralise_later(&w, (start, tag, tb), j);
        Some(SharedRef {
            slot: at as u32,
            daddr,
            dport,
            installed: true,
        })
    }

    /// Neutralises the live entries for key `w` after position `j` of its
    /// window (published by racing workers; see [`SharedTemplates::install`]).
    fn neutralise_later(&self, w: &[u64; 5], (start, tag, tb): (usize, u64, u8), j: usize) {
        let mut cand = self.candidates(start, tb, Ordering::SeqCst) & !((2u32 << j) - 1);
        while cand != 0 {
            let k = cand.trailing_zeros() as usize;
            cand &= cand - 1;
            let at = (start + k) & self.mask;
            let (state, s) = (&self.states[at], &self.slots[at]);
            let mut st = state.load(Ordering::SeqCst);
            let mut spins = 0;
            loop {
                if st & BUSY != 0 && st & TAG_MASK == tag && spins < BUSY_SPINS {
                    std::hint::spin_loop();
                    spins += 1;
                    st = state.load(Ordering::SeqCst);
                    continue;
                }
                if st & (LIVE | NEUTRAL | BUSY | TAG_MASK) != LIVE | tag || !s.key_is(w) {
                    break;
                }
                // Only if the slot is still the one whose key was read.
                match state.compare_exchange_weak(
                    st,
                    st | NEUTRAL,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(cur) => st = cur,
                }
            }
        }
    }

    /// Drops a reference; returns true when it was the last one (the
    /// director-wide template is gone: the caller uncounts it from its
    /// destination's PersistConn).
    pub fn release(&self, slot: u32) -> bool {
        let Some(state) = self.states.get(slot as usize) else {
            return false;
        };
        let prev = state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            prev & REFS != 0,
            "released a template slot without a reference"
        );
        if prev & REFS != 1 {
            return false;
        }
        // No reference left, and none can be taken any more (acquire
        // needs one): free the slot under a new generation, its tag
        // cleared first so that whoever claims it next sets its own.
        self.clear_tag(slot as usize);
        state.store((prev & GEN_MASK).wrapping_add(GEN_ONE), Ordering::Release);
        true
    }

    /// Takes the template out of matching (its destination is no longer
    /// valid): workers that still refer to it keep it until their own
    /// templates expire, but no new connection finds it.
    pub fn neutralise(&self, slot: u32) {
        if let Some(state) = self.states.get(slot as usize) {
            state.fetch_or(NEUTRAL, Ordering::AcqRel);
        }
    }

    /// Whether the template is still the one new connections use (not
    /// neutralised by another worker). Only meaningful while the caller
    /// holds a reference.
    #[inline]
    pub fn is_current(&self, slot: u32) -> bool {
        self.states
            .get(slot as usize)
            .is_some_and(|s| s.load(Ordering::Acquire) & (LIVE | NEUTRAL) == LIVE)
    }

    /// Live templates (control path: reads every slot).
    pub fn len(&self) -> usize {
        self.states
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) & LIVE != 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Merges the `-L -c` rows of several workers: each worker lists its own
/// template for a client, and the director has one, so rows that name the
/// same template (same key and destination) become one, with the longest
/// expiry and ASSURED if any worker's is. Connection rows pass unchanged;
/// the order of first appearance is kept.
pub fn merge_template_rows(rows: Vec<ConnEntry>) -> Vec<ConnEntry> {
    use std::collections::HashMap;
    let is_template = |r: &ConnEntry| r.cport == 0 && (r.state == "NONE" || r.state == "ASSURED");
    let mut out: Vec<ConnEntry> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<
        (
            String,
            std::net::IpAddr,
            std::net::IpAddr,
            u16,
            std::net::IpAddr,
            u16,
        ),
        usize,
    > = HashMap::new();
    for r in rows {
        if !is_template(&r) {
            out.push(r);
            continue;
        }
        let k = (
            r.protocol.clone(),
            r.client,
            r.vaddr,
            r.vport,
            r.daddr,
            r.dport,
        );
        match seen.get(&k) {
            Some(&i) => {
                let m = &mut out[i];
                m.expires = m.expires.max(r.expires);
                if r.state == "ASSURED" {
                    m.state = r.state;
                }
            }
            None => {
                seen.insert(k, out.len());
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(client: [u8; 4], vport: u16) -> ConnKey {
        ConnKey::new(
            17,
            ConnAddr::from_v4(client),
            0,
            ConnAddr::from_v4([198, 18, 0, 100]),
            vport,
        )
    }

    fn rs(last: u8) -> ConnAddr {
        ConnAddr::from_v4([198, 18, 1, last])
    }

    #[test]
    fn tag_lanes_report_every_equal_byte() {
        let naive = |w: u64, b: u8| {
            (0..8)
                .filter(|i| (w >> (8 * i)) as u8 == b)
                .fold(0u32, |m, i| m | 1 << i)
        };
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for b in [0u8, 0x80, 0x81, (x >> 3) as u8 | 0x80, x as u8] {
                // Make some bytes equal to b.
                let w = if x & 1 == 0 {
                    x
                } else {
                    x & 0xff00_ff00_00ff_ff00
                        | LO.wrapping_mul(u64::from(b)) & 0x00ff_00ff_ff00_00ff
                };
                let (got, want) = (lanes(w, b), naive(w, b));
                assert_eq!(got & want, want, "{w:#x} {b:#x}");
                // A false positive only above a true one.
                if got != want {
                    assert!(want != 0 && (got & !want).trailing_zeros() > want.trailing_zeros());
                }
            }
        }
    }

    #[test]
    fn a_second_worker_finds_the_first_workers_template() {
        let t = SharedTemplates::new(64);
        let k = key([198, 18, 0, 2], 80);
        assert_eq!(t.acquire(&k), None);
        let a = t.install(&k, rs(11), 8080).unwrap();
        assert!(a.installed);
        assert_eq!((a.daddr, a.dport), (rs(11), 8080));
        let b = t.acquire(&k).unwrap();
        assert_eq!(
            (b.slot, b.daddr, b.dport, b.installed),
            (a.slot, rs(11), 8080, false)
        );
        // Other clients, other ports of the service: other templates.
        assert_eq!(t.acquire(&key([198, 18, 0, 3], 80)), None);
        assert_eq!(t.acquire(&key([198, 18, 0, 2], 81)), None);
        assert_eq!(t.len(), 1);
        // Lives while any reference does; the last one frees it.
        assert!(!t.release(a.slot));
        assert!(t.acquire(&k).is_some_and(|r| !t.release(r.slot)));
        assert!(t.release(b.slot));
        assert_eq!(t.acquire(&k), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_neutralised_template_is_not_found_and_a_new_one_wins() {
        let t = SharedTemplates::new(64);
        let k = key([198, 18, 0, 2], 80);
        let a = t.install(&k, rs(11), 80).unwrap();
        let b = t.acquire(&k).unwrap();
        assert!(t.is_current(b.slot));
        t.neutralise(a.slot);
        assert!(!t.is_current(b.slot));
        assert_eq!(t.acquire(&k), None);
        let c = t.install(&k, rs(12), 80).unwrap();
        assert!(c.installed);
        assert_ne!(c.slot, a.slot);
        assert_eq!(t.acquire(&k).map(|r| r.daddr), Some(rs(12)));
        // The old one goes with its last holder.
        assert!(!t.release(a.slot));
        assert!(t.release(b.slot));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn two_installs_of_one_key_agree_on_the_earlier_slot() {
        let t = SharedTemplates::new(64);
        let k = key([198, 18, 0, 2], 80);
        let a = t.install(&k, rs(11), 80).unwrap();
        // Another worker that missed at the same instant publishes too
        // (simulated by a second install while the first is live): it gets
        // the first one back, and its own slot is withdrawn.
        let b = t.install(&k, rs(12), 80).unwrap();
        assert_eq!((b.slot, b.daddr, b.installed), (a.slot, rs(11), false));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_window_refuses_and_freed_slots_are_reused() {
        let t = SharedTemplates::new(WINDOW);
        // With as many slots as the window, every key probes every slot.
        let refs: Vec<SharedRef> = (0..WINDOW as u8)
            .map(|i| t.install(&key([198, 18, 0, i], 80), rs(11), 80).unwrap())
            .collect();
        assert_eq!(t.install(&key([198, 18, 0, 200], 80), rs(11), 80), None);
        assert!(t.release(refs[3].slot));
        let r = t.install(&key([198, 18, 0, 200], 80), rs(12), 80).unwrap();
        assert_eq!(r.slot, refs[3].slot);
        // The freed key is gone; the new one is found.
        assert_eq!(t.acquire(&key([198, 18, 0, 3], 80)), None);
        assert_eq!(
            t.acquire(&key([198, 18, 0, 200], 80)).map(|x| x.daddr),
            Some(rs(12))
        );
    }

    #[test]
    fn threads_racing_on_one_key_all_end_on_one_destination() {
        // Four "workers" each create a template for the same client with
        // their own choice of server, at once, many times over: after the
        // race settles every acquire returns one destination.
        for round in 0..50u8 {
            let t = Arc::new(SharedTemplates::new(256));
            let k = key([198, 18, 0, round], 80);
            let got: Vec<SharedRef> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4u8)
                    .map(|w| {
                        let t = &t;
                        s.spawn(move || match t.acquire(&k) {
                            Some(r) => r,
                            None => t.install(&k, rs(11 + w), 80).unwrap(),
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // Every later connection, on any worker, gets one template:
            // the only one not neutralised.
            let current: Vec<_> = got.iter().filter(|r| t.is_current(r.slot)).collect();
            assert!(
                current.windows(2).all(|p| p[0].slot == p[1].slot),
                "{current:?}"
            );
            let now = t.acquire(&k).unwrap();
            assert!(current.iter().all(|r| r.slot == now.slot));
            for _ in 0..4 {
                let again = t.acquire(&k).unwrap();
                assert_eq!((again.slot, again.daddr), (now.slot, now.daddr));
                t.release(again.slot);
            }
            assert!(got.iter().any(|r| r.slot == now.slot));
            for r in got.iter().chain([&now]) {
                t.release(r.slot);
            }
            assert!(t.is_empty(), "round {round}");
        }
    }

    #[test]
    fn worker_rows_of_one_template_merge() {
        let row = |cport: u16, state: &str, expires: u32, daddr: &str| ConnEntry {
            protocol: "UDP".into(),
            client: "198.18.0.2".parse().unwrap(),
            cport,
            vaddr: "198.18.0.100".parse().unwrap(),
            vport: 80,
            daddr: daddr.parse().unwrap(),
            dport: 80,
            state: state.into(),
            expires,
            pe: None,
        };
        let rows = vec![
            row(0, "NONE", 100, "198.18.1.11"),
            row(40000, "UDP", 290, "198.18.1.11"),
            row(0, "ASSURED", 250, "198.18.1.11"),
            row(40001, "UDP", 280, "198.18.1.11"),
            row(0, "NONE", 50, "198.18.1.12"),
        ];
        let m = merge_template_rows(rows);
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].state.as_str(), m[0].expires), ("ASSURED", 250));
        assert_eq!(m[1].cport, 40000);
        assert_eq!(m[2].cport, 40001);
        assert_eq!(m[3].daddr.to_string(), "198.18.1.12");
    }
}
