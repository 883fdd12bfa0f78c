//! A per-worker cache of the rules' verdict per flow, so that established
//! traffic does not walk the chains and probe the sets on every packet.
//!
//! Why it gives exactly iptables' answers: Linux evaluates filter rules on
//! every packet, and so does UVS when the cache is off. It is on only when
//! [`Program::flow_constant`] holds for the current snapshot: no rule tests
//! the connection state, and every set the rules test has no timeouts, no
//! counters and is not a `list:set`. Then a walk reads only the packet's
//! flow key (family, protocol, addresses, ports, receiving port), the
//! configuration snapshot (rules, sets, virtual addresses for "is local")
//! and the director's own addresses, which a stage keeps for its life; the
//! mark starts at 0 for every packet; `-o` in the FORWARD hooks reads the
//! route to the destination, and a route change empties the cache
//! ([`FlowCache::forget`]). So two packets with the same key walk
//! the same rules to the same verdict and mark. A hit replays the counters
//! the first walk moved (rules that matched, policies), with this packet's
//! length: `iptables -L -v` reads as if every packet had walked.
//!
//! Only packets with ports (TCP, UDP, SCTP, not later fragments) are
//! cached; a walk that moved more than [`PATH_MAX`] counters is not. The
//! cache is 4-way set associative (a direct-mapped one kept a fifth of
//! 2,000 flows missing on collisions), newest entry first in its bucket,
//! and emptied by an epoch bump whenever the worker takes a new snapshot
//! ([`FlowCache::reset`]), which is when rules or sets change. More active
//! flows than [`SLOTS`] per worker evict each other: they then cost a
//! walk, as without the cache, plus a bucket probe.

use super::engine::{Path, PATH_MAX};
use super::replays::Replays;
use super::{Facts, Packet, Program, Verdict};
use crate::sets::SetTable;

/// Entries per worker (64 bytes each: 512 KiB).
pub const SLOTS: usize = 8192;
/// Entries per bucket.
const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    src: u128,
    dst: u128,
    /// Ports, protocol, family and receiving port ([`rest`]).
    rest: u64,
    /// Valid while equal to [`FlowCache::epoch`] (0: never).
    epoch: u32,
    mark: u32,
    verdict: Verdict,
    path: Path,
}

const EMPTY: Slot = Slot {
    src: 0,
    dst: 0,
    rest: 0,
    epoch: 0,
    mark: 0,
    verdict: Verdict::Accept,
    path: Path {
        ids: [0; PATH_MAX],
        len: 0,
    },
};

/// The flow key's fields besides the addresses, in one word.
#[inline]
fn rest(p: &Packet) -> u64 {
    u64::from(p.sport) << 48
        | u64::from(p.dport) << 32
        | u64::from(p.proto) << 24
        | u64::from(p.v6) << 16
        | u64::from(p.in_port)
}

/// One worker's verdicts by flow, for the snapshot it runs.
#[derive(Debug, Default)]
pub struct FlowCache {
    /// Allocated when a snapshot first allows caching (between bursts).
    slots: Box<[Slot]>,
    epoch: u32,
    on: bool,
}

/// The first slot of the bucket of a flow key.
#[inline]
fn bucket_of(p: &Packet, rest: u64) -> usize {
    let fold = |a: u128| (a as u64) ^ ((a >> 64) as u64).rotate_left(29);
    let h = fold(p.src) ^ fold(p.dst).rotate_left(32) ^ rest.rotate_left(16);
    let buckets = SLOTS / WAYS;
    ((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - buckets.trailing_zeros())) as usize) * WAYS
}

impl FlowCache {
    /// Forgets every entry and decides whether `rules` with `sets` may be
    /// cached. Call whenever the worker takes a new snapshot (never per
    /// packet: it may allocate).
    pub fn reset(&mut self, rules: &Program, sets: &SetTable) {
        self.on = !rules.is_empty() && rules.flow_constant(sets);
        if !self.on {
            return;
        }
        if self.slots.is_empty() {
            self.slots = vec![EMPTY; SLOTS].into_boxed_slice();
        }
        next_epoch(&mut self.epoch, &mut self.slots, EMPTY);
    }

    /// Forgets every entry (the routes changed: `-o` in FORWARD reads
    /// them). Between bursts.
    pub fn forget(&mut self) {
        if self.on {
            next_epoch(&mut self.epoch, &mut self.slots, EMPTY);
        }
    }

    /// Whether the current snapshot's rules are cached.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The verdict and mark of `pkt`'s flow if cached (its counters then
    /// moved as a walk would have moved them, through `replays`); `None`:
    /// ask [`FlowCache::miss`].
    #[inline]
    pub fn hit(
        &self,
        rules: &Program,
        pkt: &Packet,
        replays: &mut Replays,
    ) -> Option<(Verdict, u32)> {
        if !self.on || !pkt.has_ports {
            return None;
        }
        let rest = rest(pkt);
        let b = bucket_of(pkt, rest);
        let s = self.slots[b..b + WAYS].iter().find(|s| {
            s.src == pkt.src && s.dst == pkt.dst && s.rest == rest && s.epoch == self.epoch
        })?;
        replays.add(rules, &s.path, pkt.len);
        Some((s.verdict, s.mark))
    }

    /// [`Program::run`] through the cache: the same verdict and mark, the
    /// same counters moved (once `replays` is flushed).
    #[inline]
    pub fn run<F: Facts>(
        &mut self,
        rules: &Program,
        pkt: &Packet,
        facts: &F,
        local: impl FnOnce() -> bool,
        replays: &mut Replays,
    ) -> (Verdict, u32) {
        if let Some(hit) = self.hit(rules, pkt, replays) {
            return hit;
        }
        let worker = replays.worker();
        self.miss(rules, pkt, facts, local, worker)
    }

    /// Walks `pkt` and remembers the answer (after [`FlowCache::hit`]
    /// said `None`).
    pub fn miss<F: Facts>(
        &mut self,
        rules: &Program,
        pkt: &Packet,
        facts: &F,
        local: impl FnOnce() -> bool,
        worker: usize,
    ) -> (Verdict, u32) {
        if !self.on || !pkt.has_ports {
            return rules.run(pkt, facts, local, worker);
        }
        let epoch = self.epoch;
        let rest = rest(pkt);
        let b = bucket_of(pkt, rest);
        let bucket = &mut self.slots[b..b + WAYS];
        let (verdict, mark, path) = rules.walk(pkt, facts, local, worker);
        if path.complete() {
            // Newest first; the oldest falls out.
            bucket.copy_within(0..WAYS - 1, 1);
            bucket[0] = Slot {
                src: pkt.src,
                dst: pkt.dst,
                rest,
                epoch,
                mark,
                verdict,
                path,
            };
        }
        (verdict, mark)
    }
}

/// Moves a cache's epoch on, which makes every entry stale at once; on the
/// rare wrap to 0 (the value no entry may carry) the entries are emptied.
pub(super) fn next_epoch<T: Copy>(epoch: &mut u32, entries: &mut [T], empty: T) {
    *epoch = epoch.wrapping_add(1);
    if *epoch == 0 {
        entries.fill(empty);
        *epoch = 1;
    }
}
