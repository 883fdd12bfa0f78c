//! The packet rules' verdict kept per connection, beside the connection
//! table, so that an established connection's packets do not walk the
//! chains or probe the sets however many connections a worker holds.
//!
//! Why: the per-flow cache ([`super::cache`]) has a fixed size; with more
//! active flows than it holds, flows evict each other and every packet
//! walks again. Conntrack keeps its answer with the connection; so does
//! this, sized with the connection table (one 64-byte entry per slot,
//! allocated when a snapshot first allows it).
//!
//! Why it gives exactly iptables' answers: it is used only for TCP, UDP
//! and SCTP packets (not later fragments) that belong to a connection of
//! the table, in either direction. For such a packet `-m conntrack
//! --ctstate` reads ESTABLISHED, on every packet for as long as the
//! connection exists; every other input of a walk is the flow key
//! (addresses, ports and protocol, fixed by the connection and the
//! direction), the receiving port (kept and compared), the configuration
//! snapshot, the director's own addresses and, for `-o` in the FORWARD
//! hooks, the route to the destination ([`ConnVerdicts::forget`] when the
//! routes change). So it is on when
//! [`Program::conn_constant`] holds: every set the rules test is free of
//! timeouts and counters and not a `list:set` (`--ctstate` rules are
//! allowed, unlike in the flow cache). The mark starts at 0 for every
//! packet. A hit replays the counters the first walk moved with this
//! packet's length, so `iptables -L -v` reads as if every packet had
//! walked.
//!
//! An entry is valid while three things hold: the snapshot's epoch is the
//! one it was written under ([`ConnVerdicts::reset`] bumps it on every new
//! snapshot, i.e. every change of rules or sets); the slot still holds the
//! connection it was written for ([`crate::conn::ConnTable::serial`]); and,
//! per direction, the packet came in on the same port.

use super::engine::Path;
use super::replays::Replays;
use super::{Facts, Packet, Program, Verdict};
use crate::conn::Dir;
use crate::sets::SetTable;

/// One direction's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    mark: u32,
    /// The receiving port plus one ([`from`]); 0: not known. One compare
    /// on a hit checks both.
    from: u32,
    verdict: Verdict,
    path: Path,
}

/// [`Answer::from`] of an answer kept for a packet received on `in_port`.
#[inline]
fn from(in_port: u16) -> u32 {
    u32::from(in_port) + 1
}

/// One connection slot: both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Entry {
    /// The connection's [`crate::conn::ConnTable::serial`] and the
    /// [`ConnVerdicts::epoch`] it was written under ([`tag`]): valid while
    /// both are current (epoch 0: never).
    tag: u64,
    /// By [`Dir`]: client to server, then the replies.
    dirs: [Answer; 2],
}

const UNKNOWN: Answer = Answer {
    mark: 0,
    from: 0,
    verdict: Verdict::Accept,
    path: Path {
        ids: [0; super::engine::PATH_MAX],
        len: 0,
    },
};

const EMPTY: Entry = Entry {
    tag: 0,
    dirs: [UNKNOWN; 2],
};

/// [`Entry::tag`] of connection serial `serial` under epoch `epoch`.
#[inline]
fn tag(serial: u32, epoch: u32) -> u64 {
    u64::from(epoch) << 32 | u64::from(serial)
}

#[inline]
fn side(dir: Dir) -> usize {
    match dir {
        Dir::In => 0,
        Dir::Out => 1,
    }
}

/// One worker's verdicts by connection slot, for the snapshot it runs.
#[derive(Debug, Default)]
pub struct ConnVerdicts {
    /// By connection slot; allocated when a snapshot first allows it.
    entries: Vec<Entry>,
    epoch: u32,
    on: bool,
}

impl ConnVerdicts {
    /// Forgets every answer and decides whether `rules` with `sets` may be
    /// kept per connection, for a table of `slots` entries. Call whenever
    /// the worker takes a new snapshot (never per packet: it may
    /// allocate, 64 bytes per slot, once).
    pub fn reset(&mut self, rules: &Program, sets: &SetTable, slots: usize) {
        self.on = !rules.is_empty() && rules.conn_constant(sets);
        if !self.on {
            // Nothing kept may serve, even if asked ([`ConnVerdicts::hit`]
            // does not check `on`).
            super::cache::next_epoch(&mut self.epoch, &mut self.entries, EMPTY);
            return;
        }
        if self.entries.len() < slots {
            self.entries.resize(slots, EMPTY);
        }
        super::cache::next_epoch(&mut self.epoch, &mut self.entries, EMPTY);
    }

    /// Forgets every answer (the routes changed: `-o` in FORWARD reads
    /// them). Between bursts.
    pub fn forget(&mut self) {
        if self.on {
            super::cache::next_epoch(&mut self.epoch, &mut self.entries, EMPTY);
        }
    }

    /// Whether the current snapshot's rules are kept per connection.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The verdict and mark kept for connection slot `slot` (its
    /// `serial`) in direction `dir`, for a packet of `len` bytes received
    /// on `in_port`; the counters then moved as a walk would have moved
    /// them (through `replays`). `None`: walk ([`ConnVerdicts::miss`]).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn hit(
        &self,
        rules: &Program,
        slot: u32,
        serial: u32,
        dir: Dir,
        in_port: u16,
        len: u32,
        replays: &mut Replays,
    ) -> Option<(Verdict, u32)> {
        // No check of `on`: while off nothing is kept under the current
        // epoch (every reset moves it).
        let e = self.entries.get(slot as usize)?;
        if e.tag != tag(serial, self.epoch) {
            return None;
        }
        let a = &e.dirs[side(dir)];
        if a.from != from(in_port) {
            return None;
        }
        replays.add(rules, &a.path, len);
        Some((a.verdict, a.mark))
    }

    /// Walks `pkt`, a packet of connection slot `slot` (`serial`) in
    /// direction `dir`, and keeps the answer (after [`ConnVerdicts::hit`]
    /// said `None`).
    #[allow(clippy::too_many_arguments)]
    pub fn miss<F: Facts>(
        &mut self,
        rules: &Program,
        slot: u32,
        serial: u32,
        dir: Dir,
        pkt: &Packet,
        facts: &F,
        local: impl FnOnce() -> bool,
        worker: usize,
    ) -> (Verdict, u32) {
        let (verdict, mark, path) = rules.walk(pkt, facts, local, worker);
        self.keep(slot, serial, dir, pkt.in_port, verdict, mark, path);
        (verdict, mark)
    }

    /// Keeps what a walk of a packet of connection slot `slot` (`serial`),
    /// direction `dir`, received on `in_port`, decided and which counters
    /// it moved (a walk that moved more than the path holds is not kept).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn keep(
        &mut self,
        slot: u32,
        serial: u32,
        dir: Dir,
        in_port: u16,
        verdict: Verdict,
        mark: u32,
        path: Path,
    ) {
        if !self.on || !path.complete() {
            return;
        }
        let tag = tag(serial, self.epoch);
        let Some(e) = self.entries.get_mut(slot as usize) else {
            return;
        };
        if e.tag != tag {
            *e = Entry {
                tag,
                dirs: [UNKNOWN; 2],
            };
        }
        e.dirs[side(dir)] = Answer {
            mark,
            from: from(in_port),
            verdict,
            path,
        };
    }
}
