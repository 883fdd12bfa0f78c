//! Source ports a worker may give out on one of the director's own
//! addresses: for SNAT/MASQUERADE mappings and FULLNAT local addresses.
//!
//! Why: a reply to a mapping comes back to `addr:port`, and the NIC's RSS on
//! a server-facing port hashes exactly that (`rss`, [`RssSide::Server`]).
//! If a worker only ever hands out ports whose hash lands on its own queue,
//! every reply reaches the worker that owns the mapping and no hand-over is
//! needed. Which ports those are is a property of the address, the key and
//! the redirection table, so it is computed once, when a pool is built on
//! the control thread, not per packet.
//!
//! Allocation never scans: each worker's free ports of an address are a
//! stack; taking and returning one is a push or a pop. The stack starts in
//! a scrambled order so that consecutive mappings do not use consecutive
//! ports (as Linux randomises its ephemeral ports), and a port just
//! returned is reused last rather than first (it goes to the bottom), which
//! keeps a closed mapping's late packets from meeting a new one at once.
//!
//! [`RssSide::Server`]: crate::rss::RssSide::Server

use std::collections::VecDeque;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::rss::Ownership;

/// The free ports of one address for one worker.
#[derive(Debug, Clone)]
pub struct PortPool {
    addr: IpAddr,
    free: VecDeque<u16>,
    size: usize,
}

impl PortPool {
    /// The ports of `range` on `addr` whose replies RSS sends to `worker`
    /// under `own`, in a scrambled order. Every worker's pools of one
    /// address together hold each port of the range exactly once.
    pub fn new(addr: IpAddr, range: RangeInclusive<u16>, own: &Ownership, worker: usize) -> Self {
        let mut ports: Vec<u16> = range.filter(|&p| own.owner(addr, p) == worker).collect();
        scramble(&mut ports, seed(addr, worker));
        let size = ports.len();
        PortPool {
            addr,
            free: ports.into(),
            size,
        }
    }

    /// The address the ports belong to.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Takes a free port; `None` when all are in use (the caller counts the
    /// refusal; existing mappings are never disturbed).
    #[inline]
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// Returns `port`, taken from this pool, to be reused after every other
    /// free port.
    #[inline]
    pub fn put(&mut self, port: u16) {
        debug_assert!(self.free.len() < self.size, "port {port} returned twice");
        if self.free.len() < self.size {
            self.free.push_back(port);
        }
    }

    /// Ports free now.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Ports this pool holds in all (free or in use).
    pub fn size(&self) -> usize {
        self.size
    }
}

/// A fixed per-address, per-worker seed: the order differs between
/// addresses and workers but is the same on every run, which keeps tests
/// and captures reproducible.
fn seed(addr: IpAddr, worker: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    for b in bytes.iter().chain((worker as u64).to_le_bytes().iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Fisher-Yates with xorshift64*: no external randomness needed.
fn scramble(ports: &mut [u16], mut state: u64) {
    state |= 1;
    for i in (1..ports.len()).rev() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let j = (r % (i as u64 + 1)) as usize;
        ports.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ADDR: &str = "198.18.1.1";

    #[test]
    fn the_workers_pools_split_the_range_and_each_port_hashes_to_its_owner() {
        let own = Ownership::new(2);
        let addr: IpAddr = ADDR.parse().unwrap();
        let pools: Vec<PortPool> = (0..2)
            .map(|w| PortPool::new(addr, 1024..=65535, &own, w))
            .collect();
        assert_eq!(pools[0].size() + pools[1].size(), 65535 - 1024 + 1);
        assert!(pools.iter().all(|p| p.size() > 20_000), "RSS splits evenly");
        let mut seen = HashSet::new();
        for (w, pool) in pools.into_iter().enumerate() {
            let mut pool = pool;
            while let Some(p) = pool.take() {
                assert_eq!(own.owner(addr, p), w, "port {p}");
                assert!((1024..=65535).contains(&p));
                assert!(seen.insert(p), "port {p} in two pools");
            }
        }
        assert_eq!(seen.len(), 65535 - 1024 + 1);
    }

    #[test]
    fn ports_come_out_scrambled_and_a_returned_port_is_reused_last() {
        let own = Ownership::new(1);
        let mut pool = PortPool::new(ADDR.parse().unwrap(), 40000..=40009, &own, 0);
        let first: Vec<u16> = (0..3).map(|_| pool.take().unwrap()).collect();
        assert_ne!(first, vec![40000, 40001, 40002], "not in order");
        pool.put(first[0]);
        let rest: Vec<u16> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(rest.len(), 8);
        assert_eq!(*rest.last().unwrap(), first[0]);
    }

    #[test]
    fn an_exhausted_pool_refuses_and_recovers_when_a_port_returns() {
        let own = Ownership::new(1);
        let mut pool = PortPool::new("2001:db8::1".parse().unwrap(), 5000..=5001, &own, 0);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.take(), None);
        assert_eq!(pool.free(), 0);
        pool.put(b);
        assert_eq!(pool.take(), Some(b));
    }
}
