//! Connection ownership across workers: the Toeplitz hash that RSS NICs use,
//! computed in software.
//!
//! Why: each worker owns its shard of the connection table, and a connection
//! belongs to one worker for both directions. If the owner is the queue the
//! NIC's RSS itself picks for the client's packets, client-to-VIP packets
//! arrive at their owner with no hand-over; only the packets that RSS sends
//! elsewhere (NAT replies from real servers, which hash on other fields) are
//! handed to the owner through a ring. Computing the same hash as the NIC
//! (same key, same redirection table) is what makes that possible on any
//! NIC, without flow rules. Correctness never depends on it: if the software
//! and hardware disagree, packets are simply handed over more often.
//!
//! The hash input follows the Microsoft RSS specification (and DPDK's
//! `rte_softrss`): source address, destination address, then source and
//! destination ports, all in network byte order.

use std::net::IpAddr;

/// The RSS key most NICs default to (Microsoft's verification key), 40 bytes.
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Longest key supported (52 bytes: some NICs use it for IPv6 inputs).
pub const MAX_KEY: usize = 52;

/// A Toeplitz hasher over a fixed key.
#[derive(Debug, Clone)]
pub struct Toeplitz {
    key: [u8; MAX_KEY],
    len: usize,
}

impl Toeplitz {
    /// A hasher for `key` (truncated to [`MAX_KEY`] bytes). The key must be
    /// at least 4 bytes longer than the longest input (36 bytes of IPv6
    /// 4-tuple need 40).
    pub fn new(key: &[u8]) -> Toeplitz {
        let mut k = [0u8; MAX_KEY];
        let len = key.len().min(MAX_KEY);
        k[..len].copy_from_slice(&key[..len]);
        Toeplitz { key: k, len }
    }

    /// The 32-bit Toeplitz hash of `input`.
    ///
    /// For every set bit `i` of the input (most significant first), the
    /// 32 key bits starting at bit `i` are XORed into the result. The window
    /// is kept in a u64 that is refilled one key byte at a time, so each input
    /// byte costs eight shifts and no key re-reads.
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut result = 0u32;
        // 64-bit window over the key, most significant bits first.
        let mut window: u64 = 0;
        for i in 0..8 {
            window = (window << 8) | u64::from(self.key_byte(i));
        }
        for (n, &byte) in input.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    result ^= (window >> (32 - bit)) as u32;
                }
            }
            window = (window << 8) | u64::from(self.key_byte(n + 8));
        }
        result
    }

    fn key_byte(&self, i: usize) -> u8 {
        if i < self.len {
            self.key[i]
        } else {
            0
        }
    }

    /// Hash of an L4 4-tuple as an RSS NIC computes it (addresses of one
    /// family). Mixed families hash as the source family's L3-only input.
    pub fn hash_tuple(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u32 {
        let mut buf = [0u8; 36];
        let n = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                buf[..4].copy_from_slice(&s.octets());
                buf[4..8].copy_from_slice(&d.octets());
                buf[8..10].copy_from_slice(&sport.to_be_bytes());
                buf[10..12].copy_from_slice(&dport.to_be_bytes());
                12
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                buf[..16].copy_from_slice(&s.octets());
                buf[16..32].copy_from_slice(&d.octets());
                buf[32..34].copy_from_slice(&sport.to_be_bytes());
                buf[34..36].copy_from_slice(&dport.to_be_bytes());
                36
            }
            (IpAddr::V4(s), _) => {
                buf[..4].copy_from_slice(&s.octets());
                4
            }
            (IpAddr::V6(s), _) => {
                buf[..16].copy_from_slice(&s.octets());
                16
            }
        };
        self.hash(&buf[..n])
    }
}

/// Which worker owns a connection: the queue RSS would pick when hashing
/// only the client endpoint (address and port), as a NIC configured for
/// source-only fields on the client side and destination-only fields on
/// the server side does. Both directions of a NAT connection name the same
/// client endpoint, so both find the same owner.
#[derive(Debug, Clone)]
pub struct Ownership {
    workers: usize,
    hash: Toeplitz,
    reta: Reta,
}

impl Ownership {
    /// Ownership among `workers` workers with the default key and a
    /// round-robin table of 128 entries (DPDK's usual defaults).
    pub fn new(workers: usize) -> Ownership {
        let n = workers.clamp(1, usize::from(u16::MAX));
        Ownership {
            workers: n,
            hash: Toeplitz::new(&DEFAULT_KEY),
            reta: Reta::round_robin(128, n as u16),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The worker owning connections of client `addr:port`.
    #[inline]
    pub fn owner(&self, addr: IpAddr, port: u16) -> usize {
        if self.workers == 1 {
            return 0;
        }
        let mut buf = [0u8; 18];
        let n = match addr {
            IpAddr::V4(a) => {
                buf[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                buf[..16].copy_from_slice(&a.octets());
                16
            }
        };
        buf[n..n + 2].copy_from_slice(&port.to_be_bytes());
        usize::from(self.reta.queue(self.hash.hash(&buf[..n + 2])))
    }
}

/// A redirection table: hash -> queue (= worker index).
#[derive(Debug, Clone)]
pub struct Reta {
    entries: Vec<u16>,
}

impl Reta {
    /// The round-robin table DPDK drivers set up by default: entry `i` is
    /// queue `i % queues`.
    pub fn round_robin(size: usize, queues: u16) -> Reta {
        let q = queues.max(1);
        Reta {
            entries: (0..size.max(1))
                .map(|i| (i % usize::from(q)) as u16)
                .collect(),
        }
    }

    /// A table read back from a port.
    pub fn from_entries(entries: Vec<u16>) -> Reta {
        if entries.is_empty() {
            return Reta::round_robin(1, 1);
        }
        Reta { entries }
    }

    /// The queue for `hash` (the low bits index the table, as NICs do).
    #[inline]
    pub fn queue(&self, hash: u32) -> u16 {
        self.entries[hash as usize % self.entries.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Vectors from the Microsoft RSS verification suite (hash inputs only;
    // nothing is sent to these addresses).
    #[test]
    fn ipv4_tcp_vectors_match_the_rss_specification() {
        let t = Toeplitz::new(&DEFAULT_KEY);
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        assert_eq!(
            t.hash_tuple(v4(66, 9, 149, 187), v4(161, 142, 100, 80), 2794, 1766),
            0x51cc_c178
        );
        assert_eq!(
            t.hash_tuple(v4(199, 92, 111, 2), v4(65, 69, 140, 83), 14230, 4739),
            0xc626_b0ea
        );
        // L3-only input.
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&[66, 9, 149, 187]);
        b[4..].copy_from_slice(&[161, 142, 100, 80]);
        assert_eq!(t.hash(&b), 0x323e_8fc2);
    }

    #[test]
    fn ipv6_tcp_vector_matches_the_rss_specification() {
        let t = Toeplitz::new(&DEFAULT_KEY);
        let s: Ipv6Addr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let d: Ipv6Addr = "3ffe:2501:200:3::1".parse().unwrap();
        assert_eq!(
            t.hash_tuple(IpAddr::V6(s), IpAddr::V6(d), 2794, 1766),
            0x4020_7d3d
        );
    }

    #[test]
    fn ownership_is_a_function_of_the_client_endpoint_and_spreads() {
        let o = Ownership::new(2);
        let c: IpAddr = "198.18.0.2".parse().unwrap();
        let mut per = [0usize; 2];
        for p in 1000..3000u16 {
            let w = o.owner(c, p);
            assert_eq!(w, o.owner(c, p));
            per[w] += 1;
        }
        assert!(per[0] > 800 && per[1] > 800, "{per:?}");
        assert!((0..100).all(|p| Ownership::new(1).owner(c, p) == 0));
    }

    #[test]
    fn round_robin_reta_spreads_queues() {
        let r = Reta::round_robin(128, 2);
        assert_eq!(r.queue(0), 0);
        assert_eq!(r.queue(1), 1);
        assert_eq!(r.queue(129), 1);
        let one = Reta::round_robin(64, 1);
        assert!((0..1000).all(|h| one.queue(h) == 0));
    }
}
