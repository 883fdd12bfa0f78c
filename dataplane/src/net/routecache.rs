//! The worker's one route and next-hop cache: destination -> egress port,
//! gateway, both MACs, the director's source address, the port's MTU, and
//! whether the neighbour part still holds.
//!
//! Why one: every packet the load balancer forwards needs two routing
//! facts. The rewrite needs the MTU towards the destination (the too-big
//! check) and, for tunnels and FULLNAT, the director's source address
//! towards it; the stack then needs the egress port and both MACs to fill
//! the Ethernet header. Both come from the same route lookup (a scan of
//! the routes) and the port's interface; the neighbour table adds the
//! gateway's MAC. Two caches (one in the stage, one in the stack) did that
//! lookup twice per new destination and held two copies of the answer.
//! Here the stage asks through [`crate::lb::Egress`] and the stack through
//! [`RouteCache::hit`], over one two-way set-associative array.
//!
//! Validity: the route part of an entry (port, gateway, source MAC, source
//! address, MTU) holds until the routes change (a reload replaces them
//! and empties the cache; interfaces and their addresses never change
//! while the daemon runs). The neighbour part (destination MAC) holds
//! while the neighbour table's generation is the one it was filled under
//! and the neighbour's own validity has not run out: a stale neighbour
//! part costs a neighbour lookup, not a route lookup. The path MTU learned
//! from ICMP errors ([`PathMtus`], shared by every worker) lowers the
//! port's MTU at each read, so a learned or expired value is seen at once.
//!
//! Entries are `Cell`s: the stage reads the cache through a shared
//! reference while the stack, which owns it, is in the middle of handling
//! the same packet. An entry's two parts sit in two arrays of the same
//! shape, each filled and replaced on its own (a neighbour part carries
//! the port and source MAC it was resolved with): the neighbour part,
//! which only the stack writes, is a plain array that the stack's read per
//! packet compares in place.
//!
//! Replacement: a set's first way holds the entry filled last; a new
//! entry pushes the first way's into the second and the second's out, and
//! an entry found again is refreshed where it is. Two destinations of a
//! set asked in turn both stay.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::{Interface, RouteTable};
use crate::lb::{Egress, PathMtus};
use crate::wire::ethernet::MacAddr;

/// Sets of the cache (a power of two), each of [`WAYS`] entries.
/// Requests go to few destinations (the real servers), but NAT and
/// FULLNAT replies go to the clients, one destination each. With 64
/// direct-mapped entries a benchmark of 1,000 clients missed on nearly
/// every reply (1343 instructions per packet of NAT TCP with replies
/// against 1111 with 1,024 entries); with 1,024 direct-mapped entries about
/// one packet in ten still missed, the clients and real servers that the
/// hash put in one slot taking it from each other in turn (~540
/// instructions a miss). Two ways per set keep any two destinations of a
/// set, and 2,048 entries hold a working set of 1,000 destinations with
/// few sets asked for three. The entries cost about 220 KiB per worker;
/// beyond that many active destinations, misses come back and pay a
/// route and a neighbour lookup.
pub const ROUTE_CACHE_SETS: usize = 1024;
/// Entries per set.
pub const WAYS: usize = 2;

/// The route part of a cached destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub dst: IpAddr,
    /// The egress port (a VLAN interface's port id for a VLAN).
    pub port: u16,
    /// The next hop on the link: the gateway, or `dst` itself.
    pub via: IpAddr,
    /// The port's MAC.
    pub src_mac: MacAddr,
    /// The director's address towards `dst` (`None`: the port has none of
    /// `dst`'s family).
    pub src: Option<IpAddr>,
    /// The port's IP MTU (before any learned path MTU).
    pub mtu: u16,
}

/// The neighbour part of a cached destination: all the stack reads for a
/// packet, kept in an array of its own so that the read copies no more.
#[derive(Debug, Clone, Copy)]
struct Near {
    dst: IpAddr,
    port: u16,
    src_mac: MacAddr,
    /// The next hop's MAC, valid while `generation` is the neighbour
    /// table's and the clock is before `until`.
    dst_mac: MacAddr,
    generation: u64,
    until: u64,
}

/// The cache; see the module docs.
#[derive(Debug)]
pub struct RouteCache {
    routes: RouteTable,
    interfaces: Vec<Interface>,
    /// The ports' IP MTU when all ports have the same one (NAT and DR then
    /// need no lookup for their MTU check).
    uniform_mtu: Option<u16>,
    /// The entries' route parts, by set.
    slots: Box<[[Cell<Option<Hop>>; WAYS]; ROUTE_CACHE_SETS]>,
    /// The entries' neighbour parts, by set. Written by the stack alone
    /// ([`RouteCache::resolved`]), so no `Cell`: the read per packet
    /// compares in place.
    near: Box<[[Option<Near>; WAYS]; ROUTE_CACHE_SETS]>,
    /// Learned path MTUs, shared by every worker.
    pmtu: Arc<PathMtus>,
    /// The worker's clock in seconds (wrapping), for the learned MTUs.
    now_s: Cell<u16>,
}

#[inline(always)]
fn set_of(dst: IpAddr) -> usize {
    super::addr_slot(dst, ROUTE_CACHE_SETS)
}

impl RouteCache {
    /// A cache over `routes` and the ports `interfaces`, with a table of
    /// learned path MTUs of its own (see [`RouteCache::share_path_mtus`]).
    pub fn new(routes: RouteTable, interfaces: Vec<Interface>) -> Self {
        let first = interfaces.first().map(|i| i.mtu);
        let uniform_mtu = first.filter(|&m| interfaces.iter().all(|i| i.mtu == m));
        RouteCache {
            routes,
            interfaces,
            uniform_mtu,
            slots: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| Cell::new(None))
            })),
            near: Box::new([[None; WAYS]; ROUTE_CACHE_SETS]),
            pmtu: Arc::new(PathMtus::default()),
            now_s: Cell::new(0),
        }
    }

    /// Uses `pmtu`, the table every worker shares, for learned path MTUs.
    pub fn share_path_mtus(&mut self, pmtu: Arc<PathMtus>) {
        self.pmtu = pmtu;
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// Replaces the routes (a reload); every entry is forgotten.
    pub fn set_routes(&mut self, routes: RouteTable) {
        self.routes = routes;
        self.clear();
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        for s in self.slots.iter().flatten() {
            s.set(None);
        }
        *self.near = [[None; WAYS]; ROUTE_CACHE_SETS];
    }

    /// The worker's clock, for the expiry of learned MTUs (between bursts).
    #[inline]
    pub fn set_now(&self, now_ms: u64) {
        self.now_s.set((now_ms / 1000) as u16);
    }

    /// Whether `a` is one of the ports' own addresses.
    pub fn is_own(&self, a: &IpAddr) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addrs.iter().any(|p| p.addr == *a))
    }

    /// The route part of `dst`'s entry, from the cache or looked up (and
    /// then cached, with no neighbour part). `None`: no route, or a route
    /// by a port with no interface.
    #[inline]
    pub fn hop(&self, dst: IpAddr) -> Option<Hop> {
        let set = &self.slots[set_of(dst)];
        for way in set {
            if let Some(h) = way.get() {
                if h.dst == dst {
                    return Some(h);
                }
            }
        }
        let h = self.lookup(dst)?;
        set[1].set(set[0].get());
        set[0].set(Some(h));
        Some(h)
    }

    /// `dst`'s entry if its neighbour part holds under the neighbour
    /// table's `generation` at `now`: port, source MAC, destination MAC.
    /// Both ways in line: with the second way's test out of line,
    /// established flows cost 18-23 instructions more per packet than
    /// with both in line (NAT UDP 780.5 -> 798.5, measured), the lane's
    /// loop keeping more of its values on the stack around the call.
    #[inline(always)]
    pub fn hit(&self, dst: IpAddr, generation: u64, now: u64) -> Option<(u16, MacAddr, MacAddr)> {
        let [first, second] = &self.near[set_of(dst)];
        let n = match (first, second) {
            (Some(n), _) if n.dst == dst => n,
            (_, Some(n)) if n.dst == dst => n,
            _ => return None,
        };
        (n.generation == generation && now < n.until).then_some((n.port, n.src_mac, n.dst_mac))
    }

    /// [`RouteCache::hit`] of an IPv4 destination: the same entry, found
    /// without the family's tests on the way (the set's hash of the
    /// address alone, the address compared as a word).
    #[inline(always)]
    pub fn hit_v4(
        &self,
        dst: Ipv4Addr,
        generation: u64,
        now: u64,
    ) -> Option<(u16, MacAddr, MacAddr)> {
        let [first, second] = &self.near[super::addr_slot_v4(dst, ROUTE_CACHE_SETS)];
        let is = |n: &Near| matches!(n.dst, IpAddr::V4(a) if a == dst);
        let n = match (first, second) {
            (Some(n), _) if is(n) => n,
            (_, Some(n)) if is(n) => n,
            _ => return None,
        };
        (n.generation == generation && now < n.until).then_some((n.port, n.src_mac, n.dst_mac))
    }

    /// Records the neighbour part of `hop`'s destination: the stack
    /// resolved its next hop to `mac`, valid until `until` under
    /// `generation`.
    #[inline]
    pub fn resolved(&mut self, hop: &Hop, mac: MacAddr, generation: u64, until: u64) {
        let near = Some(Near {
            dst: hop.dst,
            port: hop.port,
            src_mac: hop.src_mac,
            dst_mac: mac,
            generation,
            until,
        });
        let set = &mut self.near[set_of(hop.dst)];
        match set {
            [Some(n), _] if n.dst == hop.dst => set[0] = near,
            [_, Some(n)] if n.dst == hop.dst => set[1] = near,
            _ => {
                set[1] = set[0];
                set[0] = near;
            }
        }
    }

    /// The uncached route part of `dst`'s entry.
    fn lookup(&self, dst: IpAddr) -> Option<Hop> {
        let (port, via) = self.routes.next_hop(dst)?;
        let iface = self.interfaces.iter().find(|i| i.port == port)?;
        let src = match dst {
            IpAddr::V4(d) => iface.v4_source(d).map(IpAddr::V4),
            IpAddr::V6(d) => iface.v6_source(d).map(IpAddr::V6),
        };
        Some(Hop {
            dst,
            port,
            via,
            src_mac: iface.mac,
            src,
            mtu: iface.mtu,
        })
    }

    /// `mtu` lowered to the path MTU learned for `dst`, if any. Always
    /// inlined: every tunnelled packet asks it (through `route`), and out
    /// of line its call cost more than its lookup.
    #[inline(always)]
    fn path(&self, dst: IpAddr, mtu: u16) -> u16 {
        match dst {
            IpAddr::V4(d) => match self.pmtu.get(d, self.now_s.get()) {
                Some(p) => p.min(mtu),
                None => mtu,
            },
            IpAddr::V6(_) => mtu,
        }
    }
}

impl Egress for RouteCache {
    /// Always inlined: the tunnels ask it for every packet (the outer
    /// source and the path MTU), and out of line its call cost them 16
    /// instructions per packet.
    #[inline(always)]
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
        let h = self.hop(dst)?;
        Some((h.src?, self.path(dst, h.mtu)))
    }

    #[inline(always)]
    fn mtu(&self, dst: IpAddr) -> u16 {
        match self.uniform_mtu {
            Some(m) => m,
            None => self.route(dst).map_or(u16::MAX, |r| r.1),
        }
    }

    fn learn_mtu(&self, dst: IpAddr, mtu: u16) {
        if let IpAddr::V4(d) = dst {
            self.pmtu.learn(d, mtu, self.now_s.get());
        }
    }

    fn out_port(&self, dst: IpAddr) -> u16 {
        self.routes
            .next_hop(dst)
            .map_or(crate::rules::NO_PORT, |(port, _)| port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::L3Config;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Port 0: 198.18.0.1/24 and 2001:db8::1/64; port 1: 198.18.1.1/24
    /// and 198.18.2.1/24, with 198.19.0.0/16 via 198.18.1.254; port 2
    /// (MTU 9000) has only an IPv6 address but carries 198.20.0.0/16.
    fn cache() -> RouteCache {
        let iface = |port: u8, addrs: &[&str], mtu: u16| Interface {
            port: u16::from(port),
            mac: MacAddr([2, 0, 0, 0, 0, port + 1]),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mtu,
            kernel: false,
        };
        let cfg = L3Config {
            interfaces: vec![
                iface(0, &["198.18.0.1/24", "2001:db8::1/64"], 1500),
                iface(1, &["198.18.1.1/24", "198.18.2.1/24"], 1500),
                iface(2, &["2001:db8:2::1/64"], 9000),
            ],
            routes: vec![("198.19.0.0/16".parse().unwrap(), ip("198.18.1.254"))],
            neighbors: vec![],
            forwarding: Default::default(),
        };
        let mut t = cfg.route_table().unwrap();
        t.add(crate::net::Route {
            prefix: "198.20.0.0/16".parse().unwrap(),
            via: None,
            port: 2,
        });
        RouteCache::new(t, cfg.interfaces.clone())
    }

    #[test]
    fn cached_answers_are_the_lookups_answers() {
        let r = cache();
        assert_eq!(
            r.route(ip("198.18.2.7")),
            Some((ip("198.18.2.1"), 1500)),
            "the address on the destination's own prefix"
        );
        assert_eq!(
            r.route(ip("198.19.3.4")).map(|x| x.0),
            Some(ip("198.18.1.1"))
        );
        assert_eq!(
            r.hop(ip("198.19.3.4")).map(|h| h.via),
            Some(ip("198.18.1.254"))
        );
        assert_eq!(
            r.route(ip("2001:db8::9")).map(|x| x.0),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(r.route(ip("2001:db8:1::9")), None, "no route");
        // Many destinations (more than the cache holds, so slots are
        // shared and replaced), each asked three times: every answer is the
        // uncached one.
        let dsts: Vec<IpAddr> = (0..3 * (ROUTE_CACHE_SETS * WAYS) as u32)
            .map(|i| {
                let j = i / 3;
                let [_, _, hi, lo] = j.to_be_bytes();
                match i % 3 {
                    0 => IpAddr::from([198, 18, 0, lo]),
                    1 => IpAddr::from([198, 18, 1, lo]),
                    _ => IpAddr::from([198, 19, hi, lo]),
                }
            })
            .collect();
        for _ in 0..3 {
            for &d in &dsts {
                let want = r.lookup(d);
                assert_eq!(r.hop(d), want, "{d}");
                assert_eq!(r.route(d), want.and_then(|h| Some((h.src?, h.mtu))), "{d}");
            }
        }
    }

    #[test]
    fn the_neighbour_part_holds_for_its_generation_and_lifetime_only() {
        let mut r = cache();
        let d = ip("198.19.3.4");
        let mac = MacAddr([2, 9, 9, 9, 9, 9]);
        assert_eq!(r.hit(d, 1, 0), None, "nothing cached");
        let h = r.hop(d).unwrap();
        r.resolved(&h, mac, 1, 100);
        assert_eq!(r.hit(d, 1, 99), Some((1, MacAddr([2, 0, 0, 0, 0, 2]), mac)));
        assert_eq!(r.hit(d, 1, 100), None, "run out");
        assert_eq!(r.hit(d, 2, 50), None, "the neighbour table moved on");
        assert_eq!(
            r.route(d),
            Some((ip("198.18.1.1"), 1500)),
            "a stale neighbour part leaves the route part"
        );
    }

    proptest::proptest! {
        /// The IPv4 lookup of the neighbour part finds what the general
        /// one finds: destinations of both families resolved in turn (so
        /// sets are shared and ways replaced), then every IPv4 one asked
        /// at drawn times and generations.
        #[test]
        fn the_ipv4_hit_is_the_hit(
            dsts in proptest::collection::vec((0u8..4, proptest::num::u8::ANY), 1..40),
            asks in proptest::collection::vec((0u64..3, 0u64..200), 1..10),
        ) {
            let mut r = cache();
            let addr = |(net, lo): (u8, u8)| match net {
                0 => IpAddr::from([198, 18, 0, lo]),
                1 => IpAddr::from([198, 19, 0, lo]),
                2 => IpAddr::from([198, 18, 1, lo]),
                _ => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(lo)]),
            };
            for (i, &d) in dsts.iter().enumerate() {
                if let Some(h) = r.hop(addr(d)) {
                    r.resolved(&h, MacAddr([2, 9, 0, 0, 0, i as u8]), 1, 100 + i as u64);
                }
            }
            for &d in &dsts {
                let IpAddr::V4(v4) = addr(d) else { continue };
                proptest::prop_assert_eq!(
                    crate::net::addr_slot_v4(v4, ROUTE_CACHE_SETS),
                    crate::net::addr_slot(IpAddr::V4(v4), ROUTE_CACHE_SETS)
                );
                for &(generation, now) in &asks {
                    proptest::prop_assert_eq!(
                        r.hit_v4(v4, generation, now),
                        r.hit(IpAddr::V4(v4), generation, now)
                    );
                }
            }
        }
    }

    /// Destinations of one set (found by the hash), as many as `n`.
    fn same_set(n: usize) -> Vec<IpAddr> {
        let first = ip("198.19.0.1");
        (1u32..)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from((198u32 << 24 | 19 << 16) + i)))
            .filter(|&d| set_of(d) == set_of(first))
            .take(n)
            .collect()
    }

    #[test]
    fn two_destinations_of_a_set_asked_in_turn_both_stay() {
        let mut r = cache();
        let d = same_set(3);
        let mac = |i: u8| MacAddr([2, 9, 9, 9, 9, i]);
        for (i, &x) in d[..2].iter().enumerate() {
            let h = r.hop(x).unwrap();
            r.resolved(&h, mac(i as u8), 1, 100);
        }
        for _ in 0..3 {
            for (i, &x) in d[..2].iter().enumerate() {
                assert_eq!(r.hit(x, 1, 0).map(|h| h.2), Some(mac(i as u8)), "{x}");
            }
        }
        // A third pushes out the one filled first; refreshing one in
        // place keeps its way.
        let h = r.hop(d[2]).unwrap();
        r.resolved(&h, mac(2), 1, 100);
        assert_eq!(r.hit(d[0], 1, 0), None, "pushed out");
        assert_eq!(r.hit(d[1], 1, 0).map(|h| h.2), Some(mac(1)));
        let h = r.hop(d[1]).unwrap();
        r.resolved(&h, mac(7), 2, 100);
        assert_eq!(r.hit(d[1], 2, 0).map(|h| h.2), Some(mac(7)));
        assert_eq!(r.hit(d[2], 1, 0).map(|h| h.2), Some(mac(2)), "kept");
        for &x in &d {
            assert_eq!(r.hop(x), r.lookup(x), "{x}");
        }
    }

    #[test]
    fn mtu_is_the_ports_lowered_by_a_learned_path_mtu_and_a_reload_forgets() {
        let mut r = cache();
        let d = ip("198.19.3.4");
        assert_eq!(r.mtu(d), 1500);
        r.learn_mtu(d, 1400);
        assert_eq!(r.route(d).map(|x| x.1), Some(1400));
        r.set_now(601_000);
        assert_eq!(r.route(d).map(|x| x.1), Some(1500), "expired");
        assert_eq!(
            r.route(ip("198.20.1.1")),
            None,
            "a port without an IPv4 address has no source"
        );
        assert_eq!(
            r.mtu(ip("198.20.1.1")),
            u16::MAX,
            "ports differ: no route, no limit"
        );
        let shared = Arc::new(PathMtus::default());
        r.share_path_mtus(Arc::clone(&shared));
        r.learn_mtu(d, 1300);
        assert_eq!(
            shared.get(a4(d), 601),
            Some(1300),
            "learned into the shared table"
        );
        r.set_routes(RouteTable::default());
        assert_eq!(r.hop(d), None, "the new routes have none");
    }

    fn a4(d: IpAddr) -> std::net::Ipv4Addr {
        match d {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        }
    }
}
