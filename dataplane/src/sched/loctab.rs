//! The locality cache shared by lblc and lblcr: the kernel's 1024-bucket
//! chained hash table keyed by destination address, its entry counter and
//! its garbage-collection timer (ipvs.md 3.9, 3.10).
//!
//! Why a slab: the kernel `kmalloc`s an entry per new address; the packet
//! path here must not allocate. Entries live in a slab reserved up front for
//! the kernel's cap (24576) and are chained by `u32` index, new entries at
//! the head of their bucket as `hlist_add_head` puts them, so lookups and
//! garbage collection visit entries in the kernel's order. The reservation
//! is virtual: pages are committed as entries are first used.
//!
//! Entries refer to destinations by address and port ([`DestRef`]), not by
//! list index, so they survive list changes; a destination that is no
//! longer in the list is the kernel's "not AVAILABLE" (in its trash), and
//! re-adding the same address and port makes the entry valid again, as
//! reviving the trashed destination does in the kernel.

use std::net::IpAddr;

use super::hash::{fold, hash_32};
use crate::model::Dest;

/// `CONFIG_IP_VS_LBLC_TAB_BITS` / `..._LBLCR_TAB_BITS`.
const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// `tbl->max_size`: 16 entries per bucket.
const MAX_SIZE: i64 = TAB_SIZE as i64 * 16;
/// No new entries once the table counts this many (`max_size * 3 / 2`).
pub(crate) const CAP: usize = (MAX_SIZE * 3 / 2) as usize;
/// `CHECK_EXPIRE_INTERVAL`: the garbage-collection timer period.
pub(crate) const CHECK_EXPIRE_INTERVAL_MS: u64 = 60_000;
/// `ENTRY_TIMEOUT`: idle time after which an over-full table drops entries.
pub(crate) const ENTRY_TIMEOUT_MS: u64 = 6 * 60_000;
/// Every 30th timer run is a full expiration scan.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// `lblc_expiration` / `lblcr_expiration` default: 24 hours.
pub(crate) const DEFAULT_EXPIRATION_MS: u64 = 24 * 3600 * 1000;

pub(crate) const NIL: u32 = u32::MAX;

/// A destination as a cache entry remembers it: address and port, plus its
/// index in the list of generation `gen` (so the lookup is O(1) until the
/// list changes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DestRef {
    addr: IpAddr,
    port: u16,
    idx: u32,
    gen: u32,
}

impl DestRef {
    pub(crate) fn new(dests: &[Dest], idx: usize, gen: u32) -> DestRef {
        DestRef {
            addr: dests[idx].config.addr,
            port: dests[idx].config.port,
            idx: idx as u32,
            gen,
        }
    }

    /// Its index in `dests` (the list of generation `gen`), or `None` when
    /// it is not in the service (deleted: "not AVAILABLE").
    #[inline]
    pub(crate) fn resolve(&mut self, dests: &[Dest], gen: u32) -> Option<usize> {
        if self.gen != gen {
            self.idx = dests
                .iter()
                .position(|d| d.config.addr == self.addr && d.config.port == self.port)
                .map_or(NIL, |i| i as u32);
            self.gen = gen;
        }
        (self.idx != NIL && (self.idx as usize) < dests.len()).then_some(self.idx as usize)
    }

    /// The kernel's `en->dest == dest`.
    #[inline]
    pub(crate) fn is(&self, d: &Dest) -> bool {
        self.addr == d.config.addr && self.port == d.config.port
    }
}

pub(crate) struct Entry<V> {
    pub(crate) key: IpAddr,
    next: u32,
    pub(crate) lastuse: u64,
    pub(crate) val: V,
}

pub(crate) struct LocTable<V> {
    buckets: Vec<u32>,
    slab: Vec<Entry<V>>,
    /// Free slab slots, chained through `next`.
    free: u32,
    /// The kernel's `tbl->entries` counter. lblc's replace path unhashes an
    /// entry without decrementing it (upstream code), so it can run ahead
    /// of the real number of entries; it is kept as the kernel keeps it
    /// because the cap and the collector decide by it.
    pub(crate) entries: i64,
    rover: usize,
    counter: u32,
    next_check: Option<u64>,
}

#[inline]
fn bucket_of(key: &IpAddr) -> usize {
    hash_32(fold(key), TAB_BITS) as usize
}

impl<V> LocTable<V> {
    pub(crate) fn new() -> LocTable<V> {
        LocTable {
            buckets: vec![NIL; TAB_SIZE],
            slab: Vec::with_capacity(CAP),
            free: NIL,
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: None,
        }
    }

    /// The entry for `key`, if any.
    #[inline]
    pub(crate) fn get(&self, key: &IpAddr) -> Option<u32> {
        let mut id = self.buckets[bucket_of(key)];
        while id != NIL {
            let e = &self.slab[id as usize];
            if e.key == *key {
                return Some(id);
            }
            id = e.next;
        }
        None
    }

    #[inline]
    pub(crate) fn entry(&mut self, id: u32) -> &mut Entry<V> {
        &mut self.slab[id as usize]
    }

    /// Hash a new entry at the head of its bucket and count it. `None` when
    /// the slab is full (the kernel's failed `kmalloc`).
    pub(crate) fn insert(&mut self, key: IpAddr, now: u64, val: V) -> Option<u32> {
        let b = bucket_of(&key);
        let e = Entry {
            key,
            next: self.buckets[b],
            lastuse: now,
            val,
        };
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.slab[id as usize].next;
            self.slab[id as usize] = e;
            id
        } else if self.slab.len() < CAP {
            self.slab.push(e);
            (self.slab.len() - 1) as u32
        } else {
            return None;
        };
        self.buckets[b] = id;
        self.entries += 1;
        Some(id)
    }

    /// Unhash entry `id` and free its slot, leaving `entries` alone (the
    /// caller decides, as the kernel's callers do).
    pub(crate) fn unlink(&mut self, id: u32) {
        let b = bucket_of(&self.slab[id as usize].key);
        let next = self.slab[id as usize].next;
        if self.buckets[b] == id {
            self.buckets[b] = next;
        } else {
            let mut p = self.buckets[b];
            while p != NIL {
                if self.slab[p as usize].next == id {
                    self.slab[p as usize].next = next;
                    break;
                }
                p = self.slab[p as usize].next;
            }
        }
        self.slab[id as usize].next = self.free;
        self.free = id;
    }

    /// Remove, in bucket `j`, every entry idle for at least `idle_ms`;
    /// returns how many went.
    fn sweep_bucket(
        &mut self,
        j: usize,
        now: u64,
        idle_ms: u64,
        on_free: &mut impl FnMut(&mut V),
    ) -> i64 {
        let mut removed = 0;
        let mut id = self.buckets[j];
        while id != NIL {
            let next = self.slab[id as usize].next;
            // time_before(now, lastuse + idle): keep.
            if now < self.slab[id as usize].lastuse.saturating_add(idle_ms) {
                id = next;
                continue;
            }
            on_free(&mut self.slab[id as usize].val);
            self.unlink(id);
            self.entries -= 1;
            removed += 1;
            id = next;
        }
        removed
    }

    /// The kernel's periodic `check_expire`, run when its 60 s timer is due
    /// (the timer starts at the first call). `expiration_ms` is the
    /// `lblc(r)_expiration` sysctl; `on_free` releases an entry's value.
    pub(crate) fn expire(&mut self, now: u64, expiration_ms: u64, mut on_free: impl FnMut(&mut V)) {
        match self.next_check {
            None => {
                self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
                return;
            }
            Some(t) if now < t => return,
            Some(_) => {}
        }
        self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));

        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            let mut j = self.rover;
            for _ in 0..TAB_SIZE {
                j = (j + 1) & TAB_MASK;
                self.sweep_bucket(j, now, expiration_ms, &mut on_free);
            }
            self.rover = j;
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            goal -= self.sweep_bucket(j, now, ENTRY_TIMEOUT_MS, &mut on_free);
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }

    /// Real number of hashed entries (tests).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.buckets
            .iter()
            .map(|&h| {
                let mut n = 0;
                let mut id = h;
                while id != NIL {
                    n += 1;
                    id = self.slab[id as usize].next;
                }
                n
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | i))
    }

    #[test]
    fn insert_get_unlink_reuse() {
        let mut t: LocTable<u8> = LocTable::new();
        let a = t.insert(v4(1), 0, 1).unwrap();
        let b = t.insert(v4(2), 0, 2).unwrap();
        assert_eq!(t.get(&v4(1)), Some(a));
        assert_eq!(t.get(&v4(2)), Some(b));
        assert_eq!(t.get(&v4(3)), None);
        t.unlink(a);
        assert_eq!(t.get(&v4(1)), None);
        assert_eq!(t.entries, 2); // unlink alone does not count down
        let c = t.insert(v4(3), 0, 3).unwrap();
        assert_eq!(c, a); // slot reused
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn slab_is_bounded_by_the_cap() {
        let mut t: LocTable<()> = LocTable::new();
        for i in 0..CAP as u32 {
            assert!(t.insert(v4(i), 0, ()).is_some());
        }
        assert!(t.insert(v4(CAP as u32), 0, ()).is_none());
        assert_eq!(t.slab.capacity(), CAP);
    }

    #[test]
    fn full_scan_every_thirtieth_timer_run() {
        let mut t: LocTable<()> = LocTable::new();
        t.expire(0, 1000, |_| {}); // starts the timer: due at 60 s
        t.insert(v4(1), 0, ());
        t.insert(v4(2), 100_000, ());
        // Runs at 60 s, 120 s, ... : counter 1 -> 30 after 29 runs, the
        // 30th run (at 1800 s) is the full scan.
        for k in 1..30 {
            t.expire(k * 60_000, 1000, |_| {});
            assert_eq!(t.live(), 2, "run {k}");
        }
        t.expire(29 * 60_000 + 59_999, 1000, |_| {}); // not due yet
        assert_eq!(t.live(), 2);
        let mut freed = 0;
        t.expire(30 * 60_000, 1_700_000, |_| freed += 1);
        // Entry 1 idle 1800 s >= 1700 s: gone; entry 2 idle 1700 s: gone
        // (time_before(now, lastuse + exp) is false at equality).
        assert_eq!((freed, t.live(), t.entries), (2, 0, 0));
    }

    #[test]
    fn over_full_table_drops_idle_entries_up_to_the_goal() {
        let mut t: LocTable<()> = LocTable::new();
        t.expire(0, DEFAULT_EXPIRATION_MS, |_| {});
        let n = MAX_SIZE as u32 + 300;
        for i in 0..n {
            t.insert(v4(i), 0, ());
        }
        // 10 minutes later everything is idle > 6 min. Goal (300*4/3 =
        // 400) is checked after each bucket, so at least 400 go but whole
        // buckets are swept.
        t.expire(600_000, DEFAULT_EXPIRATION_MS, |_| {});
        let gone = i64::from(n) - t.live() as i64;
        assert!((400..400 + 64).contains(&gone), "{gone}");
        assert_eq!(t.entries, t.live() as i64);
    }
}
