//! The counters of kept answers ([`super::cache`], [`super::conncache`])
//! moved once per run of equal answers in a burst, not once per packet.
//!
//! Why: an established packet whose answer is kept moves the counters its
//! first walk moved (usually the two policies it fell through), four
//! loads and stores each; with 10,000 flows that was ~25 of the ~175
//! instructions the rules added per packet (bench/RULES.md). Consecutive
//! packets of a burst mostly move the same counters, so a worker keeps the
//! last path with a packet and byte sum and moves the counters once, when
//! a packet moves other counters or at the end of the burst.
//!
//! Why `iptables -L -v` still reads exact figures: what is pending is at
//! most one burst of packets the worker is processing, the same as packets
//! still waiting in its receive ring; the worker flushes at the end of
//! every burst ([`Replays::flush`]) and before it takes a new rule set (the
//! path names counters of the program it was kept under).

use super::engine::Path;
use super::Program;

/// One worker's counters of kept answers not yet moved: `pkts` packets
/// and `bytes` bytes that moved every counter of `path`.
#[derive(Debug, Default)]
pub struct Replays {
    path: Path,
    pkts: u64,
    bytes: u64,
    worker: usize,
}

impl Replays {
    /// Pending counts of worker `worker`'s slots.
    pub fn new(worker: usize) -> Replays {
        Replays {
            worker,
            ..Replays::default()
        }
    }

    /// One packet of `len` bytes moved the counters of `path` (of
    /// program `rules`, the one every pending count is of).
    #[inline]
    pub fn add(&mut self, rules: &Program, path: &Path, len: u32) {
        if self.path != *path {
            self.switch(rules, path);
        }
        self.pkts += 1;
        self.bytes += u64::from(len);
    }

    /// Moves what is pending and starts counting for `path`.
    #[inline(never)]
    fn switch(&mut self, rules: &Program, path: &Path) {
        self.flush(rules);
        self.path = *path;
    }

    /// Moves every pending count into `rules`' counters (the program the
    /// pending paths were kept under). Between bursts.
    #[inline]
    pub fn flush(&mut self, rules: &Program) {
        if self.pkts != 0 {
            rules.replay_many(&self.path, self.pkts, self.bytes, self.worker);
            self.pkts = 0;
            self.bytes = 0;
        }
    }

    /// The worker whose slots these counts go to.
    #[inline]
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pkts == 0
    }
}
