//! ipset-compatible match sets: the per-packet lookup, and the store that
//! executes ipset's commands with its semantics and messages. The set
//! model (types, create options, elements, the operations and their
//! errors) is `uvs_model::sets`, re-exported here.
//!
//! Why here: a set is tested by the rules of every worker for every packet
//! (`-m set --match-set NAME src,dst`), so its contents are part of the
//! snapshot the workers read, built and published by the control plane like
//! the service table. Workers never change a set; the only things they write
//! are the per-element packet and byte counters (relaxed atomics shared with
//! the control plane, so `ipset list` shows them).
//!
//! # The lookup API (for the rule engine)
//!
//! ```text
//! let table: &SetTable = &snapshot.sets;          // per-worker snapshot
//! let id: SetId = table.id("blocklist")?;         // once, when rules are compiled
//! let dirs = Dirs::parse("src,dst")?;             // once, when rules are compiled
//! // per packet, no allocation, no lock:
//! let m: Match = table.lookup(id, dirs, &Packet { src, dst, proto, sport, dport, bytes });
//! let hit = m.matches(return_nomatch);             // then apply `!`
//! ```
//!
//! * [`SetId`] is the set's slot. It stays valid while the set exists and
//!   keeps naming the same slot across `rename` and `swap` (a swap exchanges
//!   the contents of two slots, as the kernel does, so a rule keeps pointing
//!   at "the set called blocklist" while its contents are replaced
//!   atomically). Rules that reference a set should hold it in the store
//!   ([`SetStore::hold`]) so it cannot be destroyed under them, and release
//!   it ([`SetStore::release`]) when the rule goes.
//! * [`Dirs`] is the `src,dst,...` flag list: one flag per dimension of the
//!   set type. A set with more dimensions than flags never matches; extra
//!   flags are ignored (both as the kernel does).
//! * [`Packet`]: addresses, L4 protocol number and ports in host order. For
//!   ICMP and ICMPv6 put `(type << 8) | code` in both ports, as the kernel
//!   does; for protocols without ports put 0.
//! * [`Match`]: `Hit` (a plain element matched), `NoMatch` (the most
//!   specific matching element of a `hash:net*` set carries `nomatch`) or
//!   `Absent`. [`Match::matches`] gives the `-m set` result with or without
//!   `--return-nomatch`; negation (`!`) is applied by the rule after it.
//! * Element counters of sets created with `counters` are updated on every
//!   hit, also on a `NoMatch` hit, as the kernel does.
//!
//! Cost per lookup: `hash:ip*` one hash probe; `hash:net*` one probe per
//! distinct prefix length present in the set, most specific first, stopping
//! at the first hit (ipset's own semantics); `bitmap:port` one index;
//! `list:set` the members' costs in order until one matches.
//!
//! Timeouts: expiry is kept in whole seconds of [`clock`], a process-wide
//! counter the control plane advances ([`clock::refresh`]); workers read it
//! with one relaxed load, so no packet makes a clock call.

pub mod clock;
mod set;
mod store;
#[cfg(test)]
mod tests;

pub use set::{
    Addr, Body, ElemCounters, ElemVal, HashBody, IpSet, ListBody, ListMember, Listed, PortBody,
};
pub use store::SetStore;
// The set model (types, elements, operations, errors) is `uvs_model::sets`;
// the engine and the packet path keep naming it from here.
pub use uvs_model::sets::{
    AddOpts, Cmd, Elem, Entry, Family, Header, RestoreError, SetError, SetKind, SetOp, MAX_NAME,
    MAX_SETS, NO_EXPIRY,
};

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap as FastMap;

/// The slot of a set in a [`SetTable`].
pub type SetId = u16;

/// All sets, by slot, and their names: what a worker's snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct SetTable {
    pub(crate) slots: Vec<Option<Arc<IpSet>>>,
    pub(crate) names: FastMap<String, SetId>,
}

/// The `src,dst,...` flags of a `--match-set` (at most 6, one per
/// dimension): bit `i` set means "dimension `i` comes from the destination".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirs {
    count: u8,
    dst_bits: u8,
}

impl Dirs {
    /// Parses `src`, `dst,src`, ...: 1 to 6 comma-separated words.
    pub fn parse(s: &str) -> Option<Dirs> {
        let mut d = Dirs {
            count: 0,
            dst_bits: 0,
        };
        for w in s.split(',') {
            if d.count == 6 {
                return None;
            }
            match w {
                "src" => {}
                "dst" => d.dst_bits |= 1 << d.count,
                _ => return None,
            }
            d.count += 1;
        }
        Some(d)
    }

    /// How many flags were given.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether dimension `i` is taken from the destination.
    pub fn is_dst(&self, i: usize) -> bool {
        self.dst_bits & (1 << i) != 0
    }

    /// The flags as written (`src,dst`).
    pub fn text(&self) -> String {
        (0..self.len())
            .map(|i| if self.is_dst(i) { "dst" } else { "src" })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The packet fields a set can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub proto: u8,
    /// Ports in host order; for ICMP/ICMPv6 `(type << 8) | code`.
    pub sport: u16,
    pub dport: u16,
    /// Length of the packet, for the byte counters.
    pub bytes: u32,
}

impl Packet {
    fn addr(&self, dst: bool) -> IpAddr {
        if dst {
            self.dst
        } else {
            self.src
        }
    }

    fn port(&self, dst: bool) -> u16 {
        if dst {
            self.dport
        } else {
            self.sport
        }
    }
}

/// Result of testing a packet against a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// No element matched (or the set cannot match with these flags).
    Absent,
    /// A plain element matched.
    Hit,
    /// The most specific element that matched carries `nomatch`.
    NoMatch,
}

impl Match {
    /// The `-m set --match-set` result before `!`: a hit, or with
    /// `--return-nomatch` a nomatch hit.
    pub fn matches(self, return_nomatch: bool) -> bool {
        match self {
            Match::Hit => !return_nomatch,
            Match::NoMatch => return_nomatch,
            Match::Absent => false,
        }
    }
}

impl SetTable {
    /// The slot of the set called `name`.
    pub fn id(&self, name: &str) -> Option<SetId> {
        self.names.get(name).copied()
    }

    /// The set in slot `id`.
    pub fn get(&self, id: SetId) -> Option<&IpSet> {
        self.slots.get(usize::from(id)).and_then(|s| s.as_deref())
    }

    /// Whether lookups in set `id` answer the same for the same packet for
    /// as long as this table is current and move no counter: no timeouts,
    /// no counters, not a `list:set` (whose members may time out). A
    /// missing set always answers `Absent`.
    pub fn is_static(&self, id: SetId) -> bool {
        self.get(id).is_none_or(|s| {
            s.header.timeout.is_none() && !s.header.counters && !matches!(s.body, Body::List(_))
        })
    }

    /// The set called `name`.
    pub fn by_name(&self, name: &str) -> Option<&IpSet> {
        self.id(name).and_then(|id| self.get(id))
    }

    /// Sets in slot order (the kernel's listing order).
    pub fn iter(&self) -> impl Iterator<Item = (SetId, &IpSet)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_deref().map(|s| (i as SetId, s)))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Tests `pkt` against set `id` with the `--match-set` flags `dirs`.
    /// No allocation, no lock: safe on the packet path.
    pub fn lookup(&self, id: SetId, dirs: Dirs, pkt: &Packet) -> Match {
        self.lookup_at(id, dirs, pkt, clock::now())
    }

    /// [`SetTable::lookup`] at a given second of [`clock`] (tests).
    pub fn lookup_at(&self, id: SetId, dirs: Dirs, pkt: &Packet, now: u32) -> Match {
        let Some(set) = self.get(id) else {
            return Match::Absent;
        };
        if let Body::List(list) = &set.body {
            for m in &list.members {
                if m.val.expired(now) {
                    continue;
                }
                let Some(member) = self.get(m.id) else {
                    continue;
                };
                if member.header.kind.dims() > dirs.len() {
                    continue;
                }
                let r = member.lookup_packet(dirs, pkt, now);
                if r != Match::Absent {
                    m.val.count(pkt.bytes);
                    return r;
                }
            }
            return Match::Absent;
        }
        if set.header.kind.dims() > dirs.len() {
            return Match::Absent;
        }
        set.lookup_packet(dirs, pkt, now)
    }
}
