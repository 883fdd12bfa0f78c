//! Traffic counters of services and destinations, kept per worker.
//!
//! Why per worker: a counter written by several cores bounces its cache line
//! on every packet. Each worker owns one cache-line-padded slot and is its
//! only writer, so it updates with a plain relaxed load and store (no
//! read-modify-write, no lock); the control thread sums the slots when it
//! lists. 64-bit counters, as the kernel's `STATS64`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The most workers a counter set has slots for.
pub const MAX_WORKERS: usize = 32;

/// The five IPVS counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Connections scheduled (templates not counted).
    pub conns: u64,
    /// Client-to-server packets seen.
    pub inpkts: u64,
    /// Server-to-client packets seen (NAT only).
    pub outpkts: u64,
    /// Client-to-server bytes (IP length).
    pub inbytes: u64,
    /// Server-to-client bytes (IP length).
    pub outbytes: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.conns = self.conns.wrapping_add(o.conns);
        self.inpkts = self.inpkts.wrapping_add(o.inpkts);
        self.outpkts = self.outpkts.wrapping_add(o.outpkts);
        self.inbytes = self.inbytes.wrapping_add(o.inbytes);
        self.outbytes = self.outbytes.wrapping_add(o.outbytes);
    }

    /// `self - base`, saturating (used for `-Z`'s zero point).
    pub fn since(&self, base: &Counters) -> Counters {
        Counters {
            conns: self.conns.saturating_sub(base.conns),
            inpkts: self.inpkts.saturating_sub(base.inpkts),
            outpkts: self.outpkts.saturating_sub(base.outpkts),
            inbytes: self.inbytes.saturating_sub(base.inbytes),
            outbytes: self.outbytes.saturating_sub(base.outbytes),
        }
    }
}

/// One worker's slot: a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Slot {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

#[inline(always)]
fn bump(c: &AtomicU64, by: u64) {
    // Single writer per slot: load + store is enough and avoids a locked op.
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Slot {
    #[inline(always)]
    pub fn conn(&self) {
        bump(&self.conns, 1);
    }
    #[inline(always)]
    pub fn inbound(&self, bytes: u64) {
        bump(&self.inpkts, 1);
        bump(&self.inbytes, bytes);
    }
    #[inline(always)]
    pub fn outbound(&self, bytes: u64) {
        bump(&self.outpkts, 1);
        bump(&self.outbytes, bytes);
    }
    pub fn read(&self) -> Counters {
        Counters {
            conns: self.conns.load(Ordering::Relaxed),
            inpkts: self.inpkts.load(Ordering::Relaxed),
            outpkts: self.outpkts.load(Ordering::Relaxed),
            inbytes: self.inbytes.load(Ordering::Relaxed),
            outbytes: self.outbytes.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one service or destination: one slot per worker.
#[derive(Debug)]
pub struct Stats {
    /// A fixed-size array, so that [`Stats::slot`]'s index, already
    /// clamped, needs no bounds check on the packet path.
    slots: Box<[Slot; MAX_WORKERS]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            slots: Box::new(std::array::from_fn(|_| Slot::default())),
        }
    }
}

impl Stats {
    /// The slot of worker `w` (workers are numbered from 0). Out-of-range
    /// indices share a slot (`w` modulo [`MAX_WORKERS`]) rather than
    /// panic; [`Stats::total`] counts every slot either way. A mask rather
    /// than a clamp: one instruction where the clamp's compare and move
    /// were three, for every forwarded packet (twice: its service's and its
    /// destination's).
    #[inline(always)]
    pub fn slot(&self, w: usize) -> &Slot {
        const { assert!(MAX_WORKERS.is_power_of_two()) };
        &self.slots[w & (MAX_WORKERS - 1)]
    }

    /// The sum over all workers.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for s in self.slots.iter() {
            t.add(&s.read());
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_across_workers() {
        let s = Stats::default();
        s.slot(0).conn();
        s.slot(0).inbound(100);
        s.slot(1).inbound(60);
        s.slot(1).outbound(40);
        // Beyond the slots: still counted, in a shared slot.
        s.slot(MAX_WORKERS + 1).inbound(7);
        let t = s.total();
        assert_eq!(t.conns, 1);
        assert_eq!(t.inpkts, 3);
        assert_eq!(t.inbytes, 167);
        assert_eq!(t.outpkts, 1);
        assert_eq!(t.outbytes, 40);
    }

    #[test]
    fn since_saturates() {
        let a = Counters {
            conns: 5,
            ..Default::default()
        };
        let b = Counters {
            conns: 7,
            ..Default::default()
        };
        assert_eq!(a.since(&b).conns, 0);
        assert_eq!(b.since(&a).conns, 2);
    }
}
