//! The lblc/lblcr locality table of a service, shared by all workers.
//!
//! Why: the kernel keeps one destination-address table per service, so
//! every CPU sends a destination address to the same cached server. With
//! one table per worker, each worker would cache its own choice and the
//! connections to one address would be split over several servers (24
//! clients of one address went 10/14 to two servers with two workers).
//! With several workers, lblc and lblcr therefore use this table instead
//! of their per-worker [`LocTable`](super::loctab::LocTable) (one worker
//! keeps the kernel-exact one).
//!
//! Lock-free, like the persistence templates (`conn::shared`): slots are
//! open-addressed in a probe window; a slot is claimed with a
//! compare-and-swap, filled, and published with a release store; readers
//! check the slot's generation again after reading it, so a slot freed
//! (and perhaps reused) meanwhile reads as a miss. A member is a
//! destination's [`fingerprint`] (exact for IPv4, a 63-bit hash for IPv6),
//! installed or replaced with one compare-and-swap; each worker maps
//! fingerprints to indexes in its own destination list. Nothing here
//! allocates or locks; the table is allocated when the service first gets
//! its lblc/lblcr scheduler.
//!
//! Differences from the kernel's table (and the per-worker one):
//! * an lblcr set holds at most [`MEMBERS`] servers (a member that does
//!   not fit is not added, as when the kernel's allocation fails);
//! * lblc replaces an entry's server in place, so the entry count is the
//!   real number of entries (upstream counts a replaced entry twice);
//! * garbage collection scans the whole table (the kernel's rover visits
//!   buckets in turn); it runs on whichever worker claims the 60 s timer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::loctab::{CAP, CHECK_EXPIRE_INTERVAL_MS, ENTRY_TIMEOUT_MS};
use crate::model::Dest;

/// Servers an lblcr set can hold here.
pub(crate) const MEMBERS: usize = 3;
/// Slots probed for one destination address.
const WINDOW: usize = 16;
/// Slots: room for the kernel's cap at three quarters full.
const SLOTS: usize = 32768;
/// `tbl->max_size` (16 per bucket of 1024).
const MAX_SIZE: i64 = 16 * 1024;
/// Every 30th timer run is a full expiration scan.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

const BUSY: u64 = 1;
const LIVE: u64 = 2;
const TAG_SHIFT: u32 = 8;
const TAG_MASK: u64 = 0xff_ffff << TAG_SHIFT;
const GEN_ONE: u64 = 1 << 32;
const GEN_MASK: u64 = !(GEN_ONE - 1);

/// A destination as a member: `1 << 62 | address << 16 | port` for IPv4
/// (exact), `1 << 63 |` a 63-bit hash of address and port for IPv6. Never 0
/// (an empty member).
pub(crate) fn fingerprint(addr: IpAddr, port: u16) -> u64 {
    match addr {
        IpAddr::V4(a) => 1 << 62 | u64::from(u32::from(a)) << 16 | u64::from(port),
        IpAddr::V6(a) => {
            let mut h = DefaultHasher::new();
            (a, port).hash(&mut h);
            1 << 63 | h.finish() >> 1
        }
    }
}

/// Fingerprints of a destination list, sorted, with their list index: a
/// worker's way from a member to its destination (built in `update`).
#[derive(Debug, Default)]
pub(crate) struct FingerprintIndex {
    sorted: Vec<(u64, u32)>,
}

impl FingerprintIndex {
    pub(crate) fn build(dests: &[Dest]) -> FingerprintIndex {
        let mut sorted: Vec<(u64, u32)> = dests
            .iter()
            .enumerate()
            .map(|(i, d)| (fingerprint(d.config.addr, d.config.port), i as u32))
            .collect();
        sorted.sort_unstable();
        FingerprintIndex { sorted }
    }

    /// The list index of member `fp`, or `None` (not in the service: "not
    /// AVAILABLE", or an empty member).
    #[inline]
    pub(crate) fn resolve(&self, fp: u64) -> Option<usize> {
        if fp == 0 {
            return None;
        }
        self.sorted
            .binary_search_by_key(&fp, |&(f, _)| f)
            .ok()
            .map(|k| self.sorted[k].1 as usize)
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    state: AtomicU64,
    key: [AtomicU64; 2],
    lastuse: AtomicU64,
    lastmod: AtomicU64,
    members: [AtomicU64; MEMBERS],
}

/// A live entry found by [`SharedLocality::get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    slot: u32,
    gen: u64,
}

/// One service's director-wide locality table.
#[derive(Debug)]
pub struct SharedLocality {
    slots: Box<[Slot]>,
    entries: AtomicI64,
    next_check: AtomicU64,
    counter: AtomicU32,
}

impl Default for SharedLocality {
    fn default() -> Self {
        SharedLocality::with_slots(SLOTS)
    }
}

fn key_words(a: &IpAddr) -> [u64; 2] {
    let v = match a {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(*v),
    };
    [(v >> 64) as u64, v as u64]
}

fn hash(w: &[u64; 2]) -> u64 {
    let r = u128::from(w[0] ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(u128::from(w[1] | 1));
    let h = (r as u64) ^ ((r >> 64) as u64);
    h ^ (h >> 29).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

impl SharedLocality {
    pub(crate) fn with_slots(n: usize) -> SharedLocality {
        let n = n.max(WINDOW).next_power_of_two();
        SharedLocality {
            slots: (0..n).map(|_| Slot::default()).collect(),
            entries: AtomicI64::new(0),
            next_check: AtomicU64::new(0),
            counter: AtomicU32::new(1),
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    fn start_and_tag(&self, w: &[u64; 2]) -> (usize, u64) {
        let h = hash(w);
        (
            h as usize & (self.slots.len() - 1),
            ((h >> 40) << TAG_SHIFT) & TAG_MASK,
        )
    }

    fn find(&self, w: &[u64; 2], limit: usize, skip: Option<usize>) -> Option<Entry> {
        let (start, tag) = self.start_and_tag(w);
        for j in 0..limit {
            let at = (start + j) & (self.slots.len() - 1);
            if skip == Some(at) {
                continue;
            }
            let s = &self.slots[at];
            let st = s.state.load(Ordering::Acquire);
            if st & (LIVE | BUSY) != LIVE || st & TAG_MASK != tag {
                continue;
            }
            if s.key[0].load(Ordering::Relaxed) == w[0] && s.key[1].load(Ordering::Relaxed) == w[1]
            {
                let e = Entry {
                    slot: at as u32,
                    gen: st & GEN_MASK,
                };
                if self.valid(e) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Whether `e` is still the entry it was (not freed since).
    #[inline]
    fn valid(&self, e: Entry) -> bool {
        let st = self.slots[e.slot as usize].state.load(Ordering::Acquire);
        st & GEN_MASK == e.gen && st & LIVE != 0
    }

    /// The entry for destination address `dst`, its last use set to `now`.
    pub(crate) fn get(&self, dst: &IpAddr, now: u64) -> Option<Entry> {
        let e = self.find(&key_words(dst), WINDOW, None)?;
        self.slots[e.slot as usize]
            .lastuse
            .store(now, Ordering::Relaxed);
        Some(e)
    }

    /// A new entry for `dst` whose first member is `fp` (the kernel's
    /// `ip_vs_lblc_new` / new lblcr set), unless the table is at the
    /// kernel's cap or the probe window is full. If another worker created
    /// the entry for `dst` at the same moment, the earlier slot is kept.
    pub(crate) fn insert(&self, dst: &IpAddr, fp: u64, now: u64) -> Option<Entry> {
        if self.entries.load(Ordering::Relaxed) >= CAP as i64 {
            return None;
        }
        let w = key_words(dst);
        let (start, tag) = self.start_and_tag(&w);
        for j in 0..WINDOW {
            let at = (start + j) & (self.slots.len() - 1);
            let s = &self.slots[at];
            let st = s.state.load(Ordering::Relaxed);
            if st & (BUSY | LIVE) != 0 {
                continue;
            }
            let gen = st & GEN_MASK;
            if s.state
                .compare_exchange(st, gen | BUSY | tag, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            s.key[0].store(w[0], Ordering::Relaxed);
            s.key[1].store(w[1], Ordering::Relaxed);
            s.lastuse.store(now, Ordering::Relaxed);
            s.lastmod.store(now, Ordering::Relaxed);
            s.members[0].store(fp, Ordering::Relaxed);
            for m in &s.members[1..] {
                m.store(0, Ordering::Relaxed);
            }
            s.state.store(gen | LIVE | tag, Ordering::Release);
            self.entries.fetch_add(1, Ordering::Relaxed);
            let mine = Entry {
                slot: at as u32,
                gen,
            };
            if let Some(first) = self.find(&w, j, Some(at)) {
                self.free(mine);
                return Some(first);
            }
            return Some(mine);
        }
        None
    }

    fn free(&self, e: Entry) -> bool {
        let s = &self.slots[e.slot as usize];
        let st = s.state.load(Ordering::Acquire);
        if st & GEN_MASK != e.gen || st & LIVE == 0 {
            return false;
        }
        if s.state
            .compare_exchange(
                st,
                e.gen.wrapping_add(GEN_ONE),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.entries.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// The members of `e` (0 = empty), or `None` if it was freed meanwhile.
    pub(crate) fn members(&self, e: Entry) -> Option<[u64; MEMBERS]> {
        let s = &self.slots[e.slot as usize];
        let m = std::array::from_fn(|i| s.members[i].load(Ordering::Relaxed));
        self.valid(e).then_some(m)
    }

    /// The set's last modification time.
    pub(crate) fn lastmod(&self, e: Entry) -> u64 {
        self.slots[e.slot as usize].lastmod.load(Ordering::Relaxed)
    }

    /// lblc: the entry now names `new` instead of `old`. False if another
    /// worker changed it first (its choice stands).
    pub(crate) fn replace(&self, e: Entry, old: u64, new: u64) -> bool {
        let s = &self.slots[e.slot as usize];
        s.members[0]
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && self.valid(e)
    }

    /// lblcr `ip_vs_dest_set_insert` with the membership check: adds `fp`
    /// to the set unless it is a member or the set is full.
    pub(crate) fn add_member(&self, e: Entry, fp: u64, now: u64) {
        let s = &self.slots[e.slot as usize];
        if s.members.iter().any(|m| m.load(Ordering::Relaxed) == fp) {
            return;
        }
        for m in &s.members {
            if m.compare_exchange(0, fp, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.lastmod.store(now, Ordering::Relaxed);
                return;
            }
        }
    }

    /// lblcr `ip_vs_dest_set_erase`: removes member `fp`.
    pub(crate) fn remove_member(&self, e: Entry, fp: u64, now: u64) {
        let s = &self.slots[e.slot as usize];
        for m in &s.members {
            if m.compare_exchange(fp, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.lastmod.store(now, Ordering::Relaxed);
                return;
            }
        }
    }

    /// The kernel's periodic `check_expire`, by whichever worker claims its
    /// 60 s timer (the first call starts it): every 30th run frees entries
    /// idle for `expiration_ms`; other runs, when the table holds more than
    /// `max_size` entries, free entries idle for 6 minutes until the goal.
    pub(crate) fn expire(&self, now: u64, expiration_ms: u64) {
        let due = self.next_check.load(Ordering::Relaxed);
        let next = now.saturating_add(CHECK_EXPIRE_INTERVAL_MS);
        if due == 0 {
            let _ = self
                .next_check
                .compare_exchange(0, next, Ordering::Relaxed, Ordering::Relaxed);
            return;
        }
        if now < due
            || self
                .next_check
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let counter = self.counter.load(Ordering::Relaxed);
        let (idle, mut goal) = if counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            self.counter.store(1, Ordering::Relaxed);
            (expiration_ms, i64::MAX)
        } else {
            let n = self.entries.load(Ordering::Relaxed);
            if n <= MAX_SIZE {
                self.counter.store(counter + 1, Ordering::Relaxed);
                return;
            }
            (ENTRY_TIMEOUT_MS, ((n - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2))
        };
        for (at, s) in self.slots.iter().enumerate() {
            if goal <= 0 {
                break;
            }
            let st = s.state.load(Ordering::Acquire);
            if st & LIVE == 0 || now < s.lastuse.load(Ordering::Relaxed).saturating_add(idle) {
                continue;
            }
            let e = Entry {
                slot: at as u32,
                gen: st & GEN_MASK,
            };
            if self.free(e) {
                goal -= 1;
            }
        }
    }

    /// Live entries (tests, control path).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) & LIVE != 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fingerprints_are_exact_for_ipv4_and_never_empty() {
        let f = fingerprint(a("198.18.1.11"), 80);
        assert_eq!(f, 1 << 62 | 0xc612_010b << 16 | 80);
        assert_ne!(f, fingerprint(a("198.18.1.11"), 81));
        let g = fingerprint(a("2001:db8::11"), 80);
        assert_ne!(g, 0);
        assert_eq!(g, fingerprint(a("2001:db8::11"), 80));
        assert_ne!(g, fingerprint(a("2001:db8::12"), 80));
    }

    #[test]
    fn entries_are_found_replaced_and_freed() {
        let t = SharedLocality::with_slots(1024);
        let (x, y) = (
            fingerprint(a("198.18.1.11"), 80),
            fingerprint(a("198.18.1.12"), 80),
        );
        assert_eq!(t.get(&a("198.18.5.1"), 0), None);
        let e = t.insert(&a("198.18.5.1"), x, 0).unwrap();
        assert_eq!(t.get(&a("198.18.5.1"), 1), Some(e));
        assert_eq!(t.members(e).unwrap()[0], x);
        assert!(t.replace(e, x, y));
        assert!(!t.replace(e, x, y), "someone else replaced it first");
        assert_eq!(t.members(e).unwrap()[0], y);
        // A second insert of the same address (another worker at the same
        // moment) gets the first entry back.
        assert_eq!(t.insert(&a("198.18.5.1"), x, 1), Some(e));
        assert_eq!(t.len(), 1);
        assert!(t.free(e));
        assert_eq!(t.members(e), None, "a freed entry reads as gone");
        assert_eq!(t.get(&a("198.18.5.1"), 2), None);
    }

    #[test]
    fn sets_add_and_remove_members_up_to_the_limit() {
        let t = SharedLocality::with_slots(1024);
        let fp = |i: u8| fingerprint(IpAddr::from([198, 18, 1, i]), 80);
        let e = t.insert(&a("198.18.5.1"), fp(1), 0).unwrap();
        t.add_member(e, fp(1), 5);
        assert_eq!(t.lastmod(e), 0, "already a member: unchanged");
        for i in 2..=5 {
            t.add_member(e, fp(i), u64::from(i));
        }
        assert_eq!(t.members(e).unwrap(), [fp(1), fp(2), fp(3)]);
        t.remove_member(e, fp(2), 9);
        assert_eq!(t.members(e).unwrap(), [fp(1), 0, fp(3)]);
        assert_eq!(t.lastmod(e), 9);
    }

    #[test]
    fn garbage_collection_follows_the_kernel_timer() {
        let t = SharedLocality::with_slots(1024);
        let x = fingerprint(a("198.18.1.11"), 80);
        t.expire(0, 1000); // starts the timer
        t.insert(&a("198.18.5.1"), x, 0);
        t.insert(&a("198.18.5.2"), x, 100_000);
        for k in 1..30 {
            t.expire(k * 60_000, 1000);
            assert_eq!(t.len(), 2, "run {k}");
        }
        t.expire(30 * 60_000, 1_700_000);
        assert_eq!(t.len(), 0);
        assert_eq!(t.entries.load(Ordering::Relaxed), 0);
    }
}
