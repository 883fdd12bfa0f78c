//! The neighbour table (ARP and NDP results) and the bounded queue of
//! packets waiting for a next hop to resolve.
//!
//! Why bounded and preallocated: the table and the queue live on the fast
//! path. The map is created with room for [`MAX_NEIGHBORS`] entries and
//! never grows past it (a full table refuses to learn, counted); the queue
//! holds at most [`MAX_PENDING`] packets. Time is injected as milliseconds
//! from any monotonic origin, so every rule here is unit-tested.
//!
//! Entries: `Static` (from the config, never expire), `Reachable` (learned,
//! valid for [`REACHABLE_MS`]), `Incomplete` (a request is out; retried
//! every [`RETRY_MS`] up to [`MAX_PROBES`] times, then the waiting packets
//! are dropped).

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::wire::ethernet::MacAddr;

/// Most entries the table holds.
pub const MAX_NEIGHBORS: usize = 1024;
/// Most packets waiting for resolution, over all next hops.
pub const MAX_PENDING: usize = 256;
/// How long a learned entry is trusted.
pub const REACHABLE_MS: u64 = 30_000;
/// Interval between ARP requests / solicitations for one next hop.
pub const RETRY_MS: u64 = 1_000;
/// Requests sent before giving up on a next hop.
pub const MAX_PROBES: u8 = 3;

/// The state of one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Static,
    Reachable { until: u64 },
    Incomplete { probes: u8, last: u64 },
}

/// One neighbour: where it lives and its MAC (when known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub port: u16,
    pub mac: MacAddr,
    pub state: State,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Known: send to `mac`, an answer that holds until `until` (never
    /// ending for a static entry) while the generation does not change.
    Mac { mac: MacAddr, until: u64 },
    /// Unknown or stale: queue the packet; `probe` says a request is due now.
    Resolve { probe: bool },
    /// Table full: cannot even track the resolution.
    Full,
}

/// Neighbours plus packets waiting for them.
#[derive(Debug)]
pub struct NeighborTable<B> {
    map: HashMap<IpAddr, Neighbor>,
    pending: VecDeque<Pending<B>>,
    /// Bumped whenever a known entry may change or go (learning, static
    /// entries, eviction), so that callers caching lookups know when to
    /// forget them.
    generation: u64,
}

#[derive(Debug)]
struct Pending<B> {
    next_hop: IpAddr,
    port: u16,
    buf: B,
}

impl<B> Default for NeighborTable<B> {
    fn default() -> Self {
        NeighborTable::new()
    }
}

impl<B> NeighborTable<B> {
    pub fn new() -> Self {
        NeighborTable {
            map: HashMap::with_capacity(MAX_NEIGHBORS),
            pending: VecDeque::with_capacity(MAX_PENDING),
            generation: 0,
        }
    }

    /// Changes whenever a lookup that gave a MAC might now give another
    /// answer (besides a Reachable entry's own expiry, the `until` of
    /// [`Lookup::Mac`]).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A static entry (from the config).
    pub fn add_static(&mut self, ip: IpAddr, port: u16, mac: MacAddr) {
        self.generation += 1;
        self.map.insert(
            ip,
            Neighbor {
                port,
                mac,
                state: State::Static,
            },
        );
    }

    /// Makes `entries` (address, port, MAC) the static entries: static
    /// entries not listed go, listed ones are set (a reload of the config).
    pub fn replace_statics(&mut self, entries: &[(IpAddr, u16, MacAddr)]) {
        self.generation += 1;
        self.map
            .retain(|ip, n| n.state != State::Static || entries.iter().any(|(e, _, _)| e == ip));
        for &(ip, port, mac) in entries {
            self.add_static(ip, port, mac);
        }
    }

    pub fn get(&self, ip: &IpAddr) -> Option<&Neighbor> {
        self.map.get(ip)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry (for reports).
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Neighbor)> {
        self.map.iter()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn make_room(&mut self, now: u64) -> bool {
        if self.map.len() < MAX_NEIGHBORS {
            return true;
        }
        self.generation += 1;
        self.map.retain(|_, n| match n.state {
            State::Static => true,
            State::Reachable { until } => until > now,
            State::Incomplete { .. } => true,
        });
        self.map.len() < MAX_NEIGHBORS
    }

    /// The MAC for `ip` on `port`, or whether to send a request now.
    pub fn lookup(&mut self, ip: IpAddr, port: u16, now: u64) -> Lookup {
        match self.map.get_mut(&ip) {
            Some(n) => match n.state {
                State::Static => Lookup::Mac {
                    mac: n.mac,
                    until: u64::MAX,
                },
                State::Reachable { until } if until > now && n.port == port => {
                    Lookup::Mac { mac: n.mac, until }
                }
                State::Reachable { .. } => {
                    self.generation += 1;
                    n.port = port;
                    n.state = State::Incomplete {
                        probes: 1,
                        last: now,
                    };
                    Lookup::Resolve { probe: true }
                }
                State::Incomplete { .. } => Lookup::Resolve { probe: false },
            },
            None => {
                if !self.make_room(now) {
                    return Lookup::Full;
                }
                self.map.insert(
                    ip,
                    Neighbor {
                        port,
                        mac: MacAddr([0; 6]),
                        state: State::Incomplete {
                            probes: 1,
                            last: now,
                        },
                    },
                );
                Lookup::Resolve { probe: true }
            }
        }
    }

    /// Records `ip` at `mac` on `port` (ARP reply/request, NA, NS source
    /// option). Static entries are not overridden. `false` if the table is
    /// full.
    pub fn learn(&mut self, ip: IpAddr, port: u16, mac: MacAddr, now: u64) -> bool {
        self.generation += 1;
        if let Some(n) = self.map.get_mut(&ip) {
            if n.state != State::Static {
                *n = Neighbor {
                    port,
                    mac,
                    state: State::Reachable {
                        until: now + REACHABLE_MS,
                    },
                };
            }
            return true;
        }
        if !self.make_room(now) {
            return false;
        }
        self.map.insert(
            ip,
            Neighbor {
                port,
                mac,
                state: State::Reachable {
                    until: now + REACHABLE_MS,
                },
            },
        );
        true
    }

    /// Parks `buf` until `next_hop` resolves; gives it back when full.
    pub fn park(&mut self, next_hop: IpAddr, port: u16, buf: B) -> Result<(), B> {
        if self.pending.len() >= MAX_PENDING {
            return Err(buf);
        }
        self.pending.push_back(Pending {
            next_hop,
            port,
            buf,
        });
        Ok(())
    }

    /// Hands every parked packet for `ip` to `send(port, mac, buf)` if `ip`
    /// is now known. Returns how many were released.
    pub fn release(&mut self, ip: IpAddr, mut send: impl FnMut(u16, MacAddr, B)) -> usize {
        let Some(n) = self.map.get(&ip).copied() else {
            return 0;
        };
        if matches!(n.state, State::Incomplete { .. }) {
            return 0;
        }
        let mut released = 0;
        for _ in 0..self.pending.len() {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.next_hop == ip {
                send(p.port, n.mac, p.buf);
                released += 1;
            } else {
                self.pending.push_back(p);
            }
        }
        released
    }

    /// Timers: calls `probe(ip, port)` for each incomplete entry due for
    /// another request, and for next hops that exhausted their probes,
    /// removes the entry and hands their parked packets to `drop_buf`.
    pub fn expire(
        &mut self,
        now: u64,
        mut probe: impl FnMut(IpAddr, u16),
        mut drop_buf: impl FnMut(B),
    ) {
        let mut failed = false;
        for (ip, n) in self.map.iter_mut() {
            if let State::Incomplete { probes, last } = n.state {
                if now.saturating_sub(last) >= RETRY_MS {
                    if probes >= MAX_PROBES {
                        failed = true;
                    } else {
                        n.state = State::Incomplete {
                            probes: probes + 1,
                            last: now,
                        };
                        probe(*ip, n.port);
                    }
                }
            }
        }
        if !failed {
            return;
        }
        let is_failed = |n: &Neighbor| {
            matches!(n.state, State::Incomplete { probes, last }
                if probes >= MAX_PROBES && now.saturating_sub(last) >= RETRY_MS)
        };
        for _ in 0..self.pending.len() {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if self.map.get(&p.next_hop).is_some_and(is_failed) {
                drop_buf(p.buf);
            } else {
                self.pending.push_back(p);
            }
        }
        self.map.retain(|_, n| !is_failed(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn replacing_statics_drops_unlisted_statics_and_keeps_learned_entries() {
        let mut t: NeighborTable<u32> = NeighborTable::new();
        let mac2 = MacAddr([2, 0, 0, 0, 2, 2]);
        t.add_static(ip("198.18.1.1"), 1, MAC1);
        t.add_static(ip("198.18.1.2"), 1, MAC1);
        assert!(t.learn(ip("198.18.1.9"), 1, mac2, 0));
        let g = t.generation();
        t.replace_statics(&[(ip("198.18.1.2"), 1, mac2), (ip("198.18.1.3"), 2, MAC1)]);
        assert!(t.generation() > g, "cached lookups must be forgotten");
        assert!(t.get(&ip("198.18.1.1")).is_none());
        assert_eq!(t.get(&ip("198.18.1.2")).map(|n| n.mac), Some(mac2));
        assert_eq!(t.get(&ip("198.18.1.3")).map(|n| n.port), Some(2));
        let learned = t.get(&ip("198.18.1.9")).unwrap();
        assert_eq!((learned.mac, learned.state == State::Static), (mac2, false));
    }

    #[test]
    fn unknown_hop_is_probed_once_then_parked_packets_leave_on_learning() {
        let mut t: NeighborTable<u32> = NeighborTable::new();
        let hop = ip("198.18.1.2");
        assert_eq!(t.lookup(hop, 1, 0), Lookup::Resolve { probe: true });
        assert_eq!(t.lookup(hop, 1, 10), Lookup::Resolve { probe: false });
        t.park(hop, 1, 7).unwrap();
        t.park(ip("198.18.1.3"), 1, 8).unwrap();
        assert!(t.learn(hop, 1, MAC1, 20));
        let mut out = vec![];
        assert_eq!(t.release(hop, |p, m, b| out.push((p, m, b))), 1);
        assert_eq!(out, vec![(1, MAC1, 7)]);
        assert_eq!(t.pending_len(), 1, "the other hop's packet stays");
        assert_eq!(
            t.lookup(hop, 1, 30),
            Lookup::Mac {
                mac: MAC1,
                until: 20 + REACHABLE_MS
            }
        );
    }

    #[test]
    fn learned_entries_expire_and_static_ones_do_not() {
        let mut t: NeighborTable<u32> = NeighborTable::new();
        t.learn(ip("2001:db8::2"), 0, MAC1, 0);
        t.add_static(ip("198.18.1.11"), 0, MAC1);
        assert_eq!(
            t.lookup(ip("2001:db8::2"), 0, REACHABLE_MS - 1),
            Lookup::Mac {
                mac: MAC1,
                until: REACHABLE_MS
            }
        );
        assert_eq!(
            t.lookup(ip("2001:db8::2"), 0, REACHABLE_MS),
            Lookup::Resolve { probe: true }
        );
        assert_eq!(
            t.lookup(ip("198.18.1.11"), 0, u64::MAX / 2),
            Lookup::Mac {
                mac: MAC1,
                until: u64::MAX
            }
        );
        t.learn(ip("198.18.1.11"), 0, MacAddr([2, 9, 9, 9, 9, 9]), 5);
        assert_eq!(t.get(&ip("198.18.1.11")).unwrap().mac, MAC1, "static wins");
    }

    #[test]
    fn unanswered_hop_is_retried_then_its_packets_dropped() {
        let mut t: NeighborTable<u32> = NeighborTable::new();
        let hop = ip("198.18.1.9");
        t.lookup(hop, 0, 0);
        t.park(hop, 0, 1).unwrap();
        let mut probes = 0;
        let mut dropped = vec![];
        for now in [RETRY_MS, 2 * RETRY_MS] {
            t.expire(now, |_, _| probes += 1, |b| dropped.push(b));
        }
        assert_eq!((probes, dropped.len()), (2, 0));
        t.expire(3 * RETRY_MS, |_, _| probes += 1, |b| dropped.push(b));
        assert_eq!((probes, dropped.as_slice()), (2, &[1][..]));
        assert!(t.get(&hop).is_none());
        assert_eq!(t.pending_len(), 0);
    }

    #[test]
    fn queue_and_table_are_bounded() {
        let mut t: NeighborTable<usize> = NeighborTable::new();
        for i in 0..MAX_PENDING {
            t.park(ip("198.18.1.9"), 0, i).unwrap();
        }
        assert_eq!(t.park(ip("198.18.1.9"), 0, 999), Err(999));
        for i in 0..MAX_NEIGHBORS as u32 {
            let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + i);
            assert!(t.learn(IpAddr::V4(a), 0, MAC1, 0));
        }
        assert!(
            !t.learn(ip("198.19.255.1"), 0, MAC1, 1),
            "full of live entries"
        );
        assert!(
            t.learn(ip("198.19.255.1"), 0, MAC1, REACHABLE_MS + 1),
            "expired ones make room"
        );
    }
}
