//! One worker's source-NAT mappings: original tuple -> translated source,
//! found from both directions, expiring as conntrack's entries do.
//!
//! Why its own table and not [`crate::conn::table::ConnTable`]: an IPVS
//! connection's two keys are (client -> VIP) and (real server -> client),
//! and its entry carries a destination and a service; a mapping's are
//! (server -> outside) and (outside -> translated source), with a port to
//! give back to its pool. The building blocks are the same: [`ConnKey`]
//! for both keys, a slab of entries with `u32` chain links for the two
//! hash indexes, and the connection table's timer wheel
//! ([`crate::conn::timer`]) for expiry. Everything is sized at start; the
//! packet path allocates nothing.
//!
//! Timeouts are conntrack's defaults: TCP 120 s until the reply (SYN_SENT),
//! 5 days established, 120 s after a FIN, 10 s after a RST; UDP 30 s, 120 s
//! once a reply was seen (`nf_conntrack_udp_timeout_stream`); ICMP 30 s.
//! A packet moves the expiry forward without touching the wheel; the wheel
//! looks again when the old time comes (as the connection table does).
//!
//! ICMP echo: the identifier is the "port". It is kept as the sender chose
//! it (Linux also keeps it unless it clashes); a second flow with the same
//! identifier toward the same host through the same address is refused.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::conn::timer::{before, tick_of_ms, HasLink, Link, Wheel, TICKS_PER_SEC, UNLINKED};
use crate::conn::{ConnAddr, ConnKey};
use crate::ports::PortPool;
use crate::rss::Ownership;
use crate::wire::tcp;

const NIL: u32 = u32::MAX;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// conntrack's default timeouts, in seconds.
pub mod timeout {
    pub const TCP_SYN_SENT: u32 = 120;
    pub const TCP_ESTABLISHED: u32 = 432_000;
    pub const TCP_FIN: u32 = 120;
    pub const TCP_CLOSE: u32 = 10;
    pub const UDP: u32 = 30;
    pub const UDP_STREAM: u32 = 120;
    pub const ICMP: u32 = 30;
}

/// Where a mapping's TCP connection is (enough for the timeouts).
mod state {
    pub const NEW: u8 = 0;
    pub const REPLIED: u8 = 1;
    pub const FIN: u8 = 2;
    pub const CLOSED: u8 = 3;
}

/// Why a new mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address's pool of this worker has no free port (or the echo
    /// identifier is taken): counted `drop_snat_no_port`.
    NoPort,
    /// The table is full: counted `drop_snat_table_full`.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The original tuple (server -> outside).
    orig: ConnKey,
    nat: ConnAddr,
    nat_port: u16,
    /// Pool the port came from (`u16::MAX`: none, ICMP).
    pool: u16,
    state: u8,
    live: bool,
    next_out: u32,
    next_reply: u32,
    expires: u32,
    link: Link,
    /// The stage's clearance epoch in which the load balancer passed this
    /// flow's packets on to routing (0: never); see [`Mappings::cleared`].
    clear: u64,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            orig: ConnKey::new(0, ConnAddr([0; 16]), 0, ConnAddr([0; 16]), 0),
            nat: ConnAddr([0; 16]),
            nat_port: 0,
            pool: u16::MAX,
            state: 0,
            live: false,
            next_out: NIL,
            next_reply: NIL,
            expires: 0,
            clear: 0,
            link: Link {
                prev: UNLINKED,
                next: UNLINKED,
                at: 0,
            },
        }
    }
}

impl HasLink for Entry {
    fn prev(&self) -> u32 {
        self.link.prev
    }
    fn next(&self) -> u32 {
        self.link.next
    }
    fn at(&self) -> u32 {
        self.link.at
    }
    fn set_prev(&mut self, v: u32) {
        self.link.prev = v
    }
    fn set_next(&mut self, v: u32) {
        self.link.next = v
    }
    fn set_at(&mut self, v: u32) {
        self.link.at = v
    }
}

/// One worker's mappings and port pools. See the module docs.
#[derive(Debug)]
pub struct Mappings {
    ents: Vec<Entry>,
    free: Vec<u32>,
    out_heads: Vec<u32>,
    reply_heads: Vec<u32>,
    mask: u32,
    wheel: Wheel,
    /// This worker's pools, with the range each was built for.
    pools: Vec<(PortPool, RangeInclusive<u16>)>,
    own: Ownership,
    me: usize,
}

/// The bucket-independent hash of a mapping key (both indexes).
#[inline]
pub fn hash(k: &ConnKey) -> u32 {
    let s = u128::from_be_bytes(k.src.0);
    let d = u128::from_be_bytes(k.dst.0);
    let p = u64::from(k.sport) | u64::from(k.dport) << 16 | u64::from(k.proto) << 32;
    hash_words(
        (s as u64) ^ (s >> 64) as u64,
        (d as u64) ^ (d >> 64) as u64,
        p,
    )
}

/// The rounds of [`hash`] over the key's folded addresses and its ports
/// and protocol (`p`).
#[inline(always)]
fn hash_words(src: u64, dst: u64, p: u64) -> u32 {
    let mix = |a: u64, b: u64| {
        let r = u128::from(a).wrapping_mul(u128::from(b));
        (r as u64) ^ ((r >> 64) as u64)
    };
    let h = mix(src, 0x9e37_79b9_7f4a_7c15)
        ^ mix(dst, 0xc2b2_ae3d_27d4_eb4f)
        ^ mix(p, 0x1656_67b1_9e37_79f9);
    (h ^ (h >> 32)) as u32
}

/// [`hash`] of an IPv4 key given by its addresses (`src`, `dst`, host
/// order), ports and protocol, without building the key's 16-byte
/// addresses: an IPv4 [`ConnAddr`] is `::ffff:a.b.c.d`, whose two 64-bit
/// halves fold to `0xffff_0000_0000 | a`. Equal to `hash` of that key
/// (test below).
#[inline(always)]
pub fn hash_v4(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    const MAPPED: u64 = 0xffff_0000_0000;
    let p = u64::from(sport) | u64::from(dport) << 16 | u64::from(proto) << 32;
    hash_words(MAPPED | u64::from(src), MAPPED | u64::from(dst), p)
}

fn reply_key(e: &Entry) -> ConnKey {
    ConnKey::new(e.orig.proto, e.orig.dst, e.orig.dport, e.nat, e.nat_port)
}

/// The state a packet (TCP flags `flags`; `reply`: from the outside)
/// leaves mapping `e` in, and the timeout from then on.
#[inline]
fn timeout_after(e: &mut Entry, flags: u8, reply: bool) -> u32 {
    match e.orig.proto {
        TCP => {
            if flags & tcp::flags::RST != 0 {
                e.state = state::CLOSED;
            } else if flags & tcp::flags::FIN != 0 {
                e.state = e.state.max(state::FIN);
            } else if reply && e.state == state::NEW {
                e.state = state::REPLIED;
            }
            match e.state {
                state::NEW => timeout::TCP_SYN_SENT,
                state::REPLIED => timeout::TCP_ESTABLISHED,
                state::FIN => timeout::TCP_FIN,
                _ => timeout::TCP_CLOSE,
            }
        }
        UDP => {
            if reply {
                e.state = state::REPLIED;
            }
            if e.state == state::REPLIED {
                timeout::UDP_STREAM
            } else {
                timeout::UDP
            }
        }
        _ => timeout::ICMP,
    }
}

fn secs(s: u32) -> u32 {
    s.saturating_mul(TICKS_PER_SEC)
}

impl Mappings {
    /// A table of `capacity` mappings for worker `me` of `own`.
    pub fn new(capacity: u32, own: Ownership, me: usize, now: u64) -> Mappings {
        let cap = capacity.max(1);
        let buckets = cap.next_power_of_two();
        Mappings {
            ents: vec![Entry::default(); cap as usize],
            free: (0..cap).rev().collect(),
            out_heads: vec![NIL; buckets as usize],
            reply_heads: vec![NIL; buckets as usize],
            mask: buckets - 1,
            wheel: Wheel::new(cap, tick_of_ms(now)),
            pools: Vec::new(),
            own,
            me,
        }
    }

    /// Mappings in use.
    pub fn len(&self) -> usize {
        self.ents.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.len() == self.ents.len()
    }

    /// Makes sure this worker has a pool for `addr` over `ports` (between
    /// bursts, when the rules or the addresses change: building a pool
    /// allocates). Pools are never removed: mappings may hold their ports.
    pub fn ensure_pool(&mut self, addr: IpAddr, ports: RangeInclusive<u16>) {
        if self.pool_of(addr, &ports).is_none() && self.pools.len() < usize::from(u16::MAX) {
            let pool = PortPool::new(addr, ports.clone(), &self.own, self.me);
            self.pools.push((pool, ports));
        }
    }

    fn pool_of(&self, addr: IpAddr, ports: &RangeInclusive<u16>) -> Option<usize> {
        self.pools
            .iter()
            .position(|(p, r)| p.addr() == addr && r == ports)
    }

    /// Whether `addr` is an address some pool maps to (cheap test before a
    /// reply lookup).
    #[inline]
    pub fn is_nat_addr(&self, addr: IpAddr) -> bool {
        self.pools.iter().any(|(p, _)| p.addr() == addr)
    }

    /// The original source of the mapping whose reply tuple is `reply`,
    /// without touching its state or expiry (an ICMP error about it).
    pub fn reply_peek(&self, reply: &ConnKey) -> Option<(IpAddr, u16)> {
        let i = self.find(&self.reply_heads, reply, true)?;
        let e = &self.ents[i as usize];
        Some((e.orig.src.to_ip(), e.orig.sport))
    }

    /// Whether `port` of `addr` is one mappings hand out (an error about
    /// it with no mapping is about a flow that is gone, not about the
    /// director's own traffic).
    pub fn is_mapped_port(&self, addr: IpAddr, port: u16) -> bool {
        self.pools
            .iter()
            .any(|(p, r)| p.addr() == addr && r.contains(&port))
    }

    /// Free ports of the pool of `addr` over `ports` (tests, listings).
    pub fn free_ports(&self, addr: IpAddr, ports: &RangeInclusive<u16>) -> Option<usize> {
        self.pool_of(addr, ports).map(|i| self.pools[i].0.free())
    }

    fn find(&self, heads: &[u32], k: &ConnKey, reply: bool) -> Option<u32> {
        self.find_hashed(heads, k, hash(k), reply)
    }

    #[inline]
    fn find_hashed(&self, heads: &[u32], k: &ConnKey, h: u32, reply: bool) -> Option<u32> {
        let mut i = heads[(h & self.mask) as usize];
        while i != NIL {
            let e = &self.ents[i as usize];
            if reply {
                if reply_key(e) == *k {
                    return Some(i);
                }
                i = e.next_reply;
            } else {
                if e.orig == *k {
                    return Some(i);
                }
                i = e.next_out;
            }
        }
        None
    }

    /// The translated source of the flow `orig` (server -> outside) if it
    /// has a mapping; the packet (TCP flags `flags`) moves its expiry.
    #[inline]
    pub fn outbound(&mut self, orig: &ConnKey, flags: u8, now: u64) -> Option<(IpAddr, u16)> {
        let i = self.find(&self.out_heads, orig, false)?;
        self.touch(i, flags, false, now);
        let e = &self.ents[i as usize];
        Some((e.nat.to_ip(), e.nat_port))
    }

    /// The slot of the mapping of the flow `orig` (server -> outside),
    /// whose [`hash`] is `h`, without touching it.
    #[inline]
    pub fn find_out(&self, orig: &ConnKey, h: u32) -> Option<u32> {
        self.find_hashed(&self.out_heads, orig, h, false)
    }

    /// The clearance epoch stamped on mapping `slot` (0: none).
    #[inline]
    pub fn cleared(&self, slot: u32) -> u64 {
        self.ents[slot as usize].clear
    }

    /// [`Mappings::outbound`] of the mapping found at `slot`
    /// ([`Mappings::find_out`]); a nonzero `clear` is stamped on it.
    #[inline]
    pub fn outbound_at(&mut self, slot: u32, flags: u8, clear: u64, now: u64) -> (IpAddr, u16) {
        self.touch(slot, flags, false, now);
        let e = &mut self.ents[slot as usize];
        if clear != 0 {
            e.clear = clear;
        }
        (e.nat.to_ip(), e.nat_port)
    }

    /// The original source of a reply whose tuple is `reply` (outside ->
    /// translated source), if it belongs to a mapping.
    #[inline]
    pub fn reply(&mut self, reply: &ConnKey, flags: u8, now: u64) -> Option<(IpAddr, u16)> {
        let i = self.find(&self.reply_heads, reply, true)?;
        self.touch(i, flags, true, now);
        let e = &self.ents[i as usize];
        Some((e.orig.src.to_ip(), e.orig.sport))
    }

    /// A new mapping for `orig` to `addr` with a port of the pool over
    /// `ports` (ICMP echo: the identifier kept). The caller looked
    /// `orig` up first.
    pub fn create(
        &mut self,
        orig: &ConnKey,
        addr: IpAddr,
        ports: &RangeInclusive<u16>,
        flags: u8,
        now: u64,
    ) -> Result<(IpAddr, u16), Refused> {
        self.create_hashed(orig, hash(orig), addr, ports, flags, 0, now)
    }

    /// [`Mappings::create`] of `orig` whose [`hash`] is `h`, stamped with
    /// the clearance epoch `clear` (0: none).
    #[allow(clippy::too_many_arguments)]
    pub fn create_hashed(
        &mut self,
        orig: &ConnKey,
        h: u32,
        addr: IpAddr,
        ports: &RangeInclusive<u16>,
        flags: u8,
        clear: u64,
        now: u64,
    ) -> Result<(IpAddr, u16), Refused> {
        let Some(&slot) = self.free.last() else {
            return Err(Refused::Full);
        };
        let nat = ConnAddr::from(addr);
        let (port, pool) = if matches!(orig.proto, TCP | UDP) {
            let p = self.pool_of(addr, ports).ok_or(Refused::NoPort)?;
            (self.pools[p].0.take().ok_or(Refused::NoPort)?, p as u16)
        } else {
            let k = ConnKey::new(orig.proto, orig.dst, orig.dport, nat, orig.sport);
            if self.find(&self.reply_heads, &k, true).is_some() {
                return Err(Refused::NoPort);
            }
            (orig.sport, u16::MAX)
        };
        self.free.pop();
        let e = &mut self.ents[slot as usize];
        e.orig = *orig;
        e.nat = nat;
        e.nat_port = port;
        e.pool = pool;
        e.state = state::NEW;
        e.live = true;
        e.clear = clear;
        let ob = (h & self.mask) as usize;
        e.next_out = self.out_heads[ob];
        self.out_heads[ob] = slot;
        let rk = reply_key(e);
        // A new entry is not on the wheel yet: its expiry is only set.
        let at = tick_of_ms(now).wrapping_add(secs(timeout_after(e, flags, false)));
        e.expires = at;
        let rb = (hash(&rk) & self.mask) as usize;
        self.ents[slot as usize].next_reply = self.reply_heads[rb];
        self.reply_heads[rb] = slot;
        self.wheel.schedule(&mut self.ents, slot, at);
        Ok((addr, port))
    }

    /// State and expiry after a packet (`reply`: from the outside).
    /// Always inlined: a mapping's every packet pays it.
    #[inline(always)]
    fn touch(&mut self, i: u32, flags: u8, reply: bool, now: u64) {
        let e = &mut self.ents[i as usize];
        let until = tick_of_ms(now).wrapping_add(secs(timeout_after(e, flags, reply)));
        e.expires = until;
        // Shorter than the wheel's next look (a FIN or RST of an
        // established flow): look earlier.
        if e.is_linked() && before(until, e.link.at) {
            self.wheel.reschedule(&mut self.ents, i, until);
        }
    }

    /// Frees mappings whose time is up (ports back to their pools);
    /// examines at most `max` entries. Returns how many were freed.
    pub fn expire(&mut self, now: u64, max: usize) -> usize {
        let now_t = tick_of_ms(now);
        let mut freed = 0;
        for _ in 0..max {
            let Some(i) = self.wheel.pop_due(&mut self.ents, now_t) else {
                break;
            };
            let e = self.ents[i as usize];
            if before(now_t, e.expires) {
                self.wheel.schedule(&mut self.ents, i, e.expires);
                continue;
            }
            self.remove(i);
            freed += 1;
        }
        freed
    }

    fn unchain(&mut self, i: u32, reply: bool) {
        let e = self.ents[i as usize];
        let k = if reply { reply_key(&e) } else { e.orig };
        let b = (hash(&k) & self.mask) as usize;
        let heads = if reply {
            &mut self.reply_heads
        } else {
            &mut self.out_heads
        };
        let next = |x: &Entry| if reply { x.next_reply } else { x.next_out };
        if heads[b] == i {
            heads[b] = next(&e);
            return;
        }
        let mut j = heads[b];
        while j != NIL {
            let nj = next(&self.ents[j as usize]);
            if nj == i {
                let after = next(&e);
                let x = &mut self.ents[j as usize];
                if reply {
                    x.next_reply = after;
                } else {
                    x.next_out = after;
                }
                return;
            }
            j = nj;
        }
    }

    /// Every live mapping (slot, both tuples, state, expiry, wheel slot,
    /// clearance stamp) and each pool's free ports: for tests that hold
    /// two paths to the same table.
    #[cfg(test)]
    pub(crate) fn live_for_tests(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ents
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(i, e)| {
                format!(
                    "{i}: {:?} -> {:?}:{} p{} s{} e{} at{} c{}",
                    e.orig, e.nat, e.nat_port, e.pool, e.state, e.expires, e.link.at, e.clear
                )
            })
            .collect();
        out.extend(
            self.pools
                .iter()
                .map(|(p, r)| format!("{:?} {r:?} free {}", p.addr(), p.free())),
        );
        out
    }

    fn remove(&mut self, i: u32) {
        self.unchain(i, false);
        self.unchain(i, true);
        let e = &mut self.ents[i as usize];
        e.live = false;
        e.clear = 0;
        let (pool, port) = (e.pool, e.nat_port);
        if let Some((p, _)) = self.pools.get_mut(usize::from(pool)) {
            p.put(port);
        }
        self.free.push(i);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_ipv4_hash_is_the_keys_hash(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) {
            let k = ConnKey::new(
                proto,
                ConnAddr::from_v4(src.to_be_bytes()),
                sport,
                ConnAddr::from_v4(dst.to_be_bytes()),
                dport,
            );
            prop_assert_eq!(hash_v4(src, dst, sport, dport, proto), hash(&k));
        }
    }
}
