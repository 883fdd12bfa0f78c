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
//!
//! The NIC side (`dpdk::port`) programs what this module assumes: on a port
//! that faces clients ([`RssSide::Client`]) the NIC hashes only the source
//! address and port, on a port that faces real servers
//! ([`RssSide::Server`]) only the destination address and port, with
//! [`DEFAULT_KEY`] and a round-robin table. The daemon then builds
//! [`Ownership`] from the table the ports actually report
//! ([`Ownership::from_tables`]), because a round-robin table of 512 entries
//! and one of 128 send the same hash to different queues unless the queue
//! count divides 128. Whatever a driver refuses only makes hand-over more
//! frequent.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The RSS key most NICs default to (Microsoft's verification key), 40 bytes.
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Longest key supported (52 bytes: some NICs use it for IPv6 inputs).
pub const MAX_KEY: usize = 52;

/// The key to program into a NIC whose key is `size` bytes: [`DEFAULT_KEY`]
/// zero-padded (or cut) to that size; 40 bytes when the driver does not say
/// (`size` 0). A key whose first 40 bytes are the default gives the default
/// hash for every input up to 36 bytes (an IPv6 4-tuple), since the hash of
/// an `n`-byte input reads only the first `n + 4` key bytes.
pub fn nic_key(size: usize) -> Vec<u8> {
    let size = if size == 0 { DEFAULT_KEY.len() } else { size };
    let mut k = vec![0u8; size];
    let n = size.min(DEFAULT_KEY.len());
    k[..n].copy_from_slice(&DEFAULT_KEY[..n]);
    k
}

/// Which endpoint of a port's traffic RSS hashes (the `rss` key of a
/// `[[port]]`): the client's, seen from the side the port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RssSide {
    /// The port faces clients: client packets carry the client as source,
    /// so hash source address and source port only.
    Client,
    /// The port faces real servers: NAT replies carry the client as
    /// destination, so hash destination address and destination port only.
    Server,
    /// Both directions or unknown: the usual 4-tuple hash. Ownership then
    /// relies on hand-over.
    #[default]
    All,
}

impl RssSide {
    pub fn as_str(self) -> &'static str {
        match self {
            RssSide::Client => "client",
            RssSide::Server => "server",
            RssSide::All => "all",
        }
    }
}

impl fmt::Display for RssSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RssSide {
    type Err = String;

    fn from_str(s: &str) -> Result<RssSide, String> {
        match s {
            "client" => Ok(RssSide::Client),
            "server" => Ok(RssSide::Server),
            "all" => Ok(RssSide::All),
            _ => Err(format!(
                "rss must be \"client\" (the port faces clients), \"server\" (it faces real servers) or \"all\", not {s:?}"
            )),
        }
    }
}

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

/// The Toeplitz hash of inputs up to [`ENDPOINT_LEN`] bytes by table
/// lookup: for every nibble position, the XOR of the key windows its four
/// bits select, precomputed.
///
/// Why: the bit-by-bit hash takes a data-dependent branch per input bit
/// (48 for an IPv4 endpoint, 144 for IPv6) and every multi-worker packet
/// pays for one (ownership is checked before the connection lookup). With
/// nibble tables it is 12 or 36 loads and XORs, no branches, from 2.3 KiB
/// of tables; the result is the same (tested against [`Toeplitz::hash`]).
#[derive(Clone)]
pub struct NibbleToeplitz {
    table: Box<[[u32; 16]; ENDPOINT_LEN * 2]>,
}

/// Longest input of [`NibbleToeplitz`]: an IPv6 address and a port.
pub const ENDPOINT_LEN: usize = 18;

impl std::fmt::Debug for NibbleToeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NibbleToeplitz")
    }
}

impl NibbleToeplitz {
    pub fn new(t: &Toeplitz) -> NibbleToeplitz {
        let mut table = Box::new([[0u32; 16]; ENDPOINT_LEN * 2]);
        let mut input = [0u8; ENDPOINT_LEN];
        for (pos, row) in table.iter_mut().enumerate() {
            for (v, cell) in row.iter_mut().enumerate() {
                input.fill(0);
                let shift = if pos % 2 == 0 { 4 } else { 0 };
                input[pos / 2] = (v as u8) << shift;
                *cell = t.hash(&input);
            }
        }
        NibbleToeplitz { table }
    }

    /// The hash of `input` (at most [`ENDPOINT_LEN`] bytes; longer input is
    /// cut there).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut h = 0;
        for (i, &b) in input.iter().take(ENDPOINT_LEN).enumerate() {
            h ^=
                self.table[2 * i][usize::from(b >> 4)] ^ self.table[2 * i + 1][usize::from(b & 15)];
        }
        h
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
    hash: NibbleToeplitz,
    /// The hash of an IPv4 endpoint by byte: `v4[i][b]` is the hash of
    /// the six bytes (address, port) with byte `i` = `b` and the others 0.
    /// Why: every multi-worker IPv4 packet is tested (twice when handed
    /// over), and six loads beat the nibble tables' twelve (6 KiB).
    v4: Box<[[u32; 256]; V4_ENDPOINT_LEN]>,
    reta: Reta,
}

/// An IPv4 endpoint: the address and the port.
const V4_ENDPOINT_LEN: usize = 6;

/// [`Ownership::v4`]'s tables for the nibble tables `hash`.
fn v4_tables(hash: &NibbleToeplitz) -> Box<[[u32; 256]; V4_ENDPOINT_LEN]> {
    let mut t = Box::new([[0u32; 256]; V4_ENDPOINT_LEN]);
    let mut input = [0u8; V4_ENDPOINT_LEN];
    for (pos, row) in t.iter_mut().enumerate() {
        for (b, cell) in row.iter_mut().enumerate() {
            input.fill(0);
            input[pos] = b as u8;
            *cell = hash.hash(&input);
        }
    }
    t
}

impl Ownership {
    /// Ownership among `workers` workers with the default key and a
    /// round-robin table of 128 entries (DPDK's usual defaults).
    pub fn new(workers: usize) -> Ownership {
        let n = workers.clamp(1, usize::from(u16::MAX));
        let hash = NibbleToeplitz::new(&Toeplitz::new(&DEFAULT_KEY));
        Ownership {
            workers: n,
            v4: v4_tables(&hash),
            hash,
            reta: Reta::round_robin(128, n as u16),
        }
    }

    /// Ownership among `workers` workers that follows a NIC's redirection
    /// table (queue index = worker index) with the default key. Refused if
    /// the table names a queue that is not a worker.
    pub fn with_reta(workers: usize, reta: Reta) -> Result<Ownership, String> {
        let n = workers.clamp(1, usize::from(u16::MAX));
        if let Some(&q) = reta.entries.iter().find(|&&q| usize::from(q) >= n) {
            return Err(format!(
                "the redirection table names queue {q} but there are {n} worker(s)"
            ));
        }
        let hash = NibbleToeplitz::new(&Toeplitz::new(&DEFAULT_KEY));
        Ok(Ownership {
            workers: n,
            v4: v4_tables(&hash),
            hash,
            reta,
        })
    }

    /// Ownership that follows the tables the multi-queue ports report: the
    /// one table they all share. Without one (no table read back, or ports
    /// that differ) the reason comes back and the caller falls back to
    /// [`Ownership::new`], leaving the work to hand-over.
    pub fn from_tables(workers: usize, tables: &[Reta]) -> Result<Ownership, String> {
        let Some(first) = tables.first() else {
            return Err("no multi-queue port reported its redirection table".into());
        };
        if tables.iter().any(|t| t != first) {
            return Err("the ports' redirection tables differ".into());
        }
        Ownership::with_reta(workers, first.clone())
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The redirection table in use.
    pub fn reta(&self) -> &Reta {
        &self.reta
    }

    /// The worker owning connections of client `addr:port`.
    #[inline]
    pub fn owner(&self, addr: IpAddr, port: u16) -> usize {
        if self.workers == 1 {
            return 0;
        }
        let a = match addr {
            IpAddr::V4(a) => return self.owner_v4(a, port),
            IpAddr::V6(a) => a,
        };
        let mut buf = [0u8; 18];
        buf[..16].copy_from_slice(&a.octets());
        buf[16..].copy_from_slice(&port.to_be_bytes());
        usize::from(self.reta.queue(self.hash.hash(&buf)))
    }

    /// [`Ownership::owner`] of an IPv4 client `addr:port`, by the byte
    /// tables (the same hash: tested against the nibble tables).
    #[inline(always)]
    pub fn owner_v4(&self, addr: std::net::Ipv4Addr, port: u16) -> usize {
        if self.workers == 1 {
            return 0;
        }
        let [a0, a1, a2, a3] = addr.octets();
        let [p0, p1] = port.to_be_bytes();
        let t = &*self.v4;
        let h = t[0][usize::from(a0)]
            ^ t[1][usize::from(a1)]
            ^ t[2][usize::from(a2)]
            ^ t[3][usize::from(a3)]
            ^ t[4][usize::from(p0)]
            ^ t[5][usize::from(p1)];
        usize::from(self.reta.queue(h))
    }
}

/// A redirection table: hash -> queue (= worker index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reta {
    entries: Vec<u16>,
    /// `entries.len() - 1` when the length is a power of two (as NICs'
    /// tables are): the index is then a mask, not a division (a `div` of
    /// 20 to 40 cycles on every ownership test otherwise). Kept, not
    /// derived from the length per call: derived, a handed-over packet
    /// cost 16 instructions more (1105.2 -> 1121.1).
    mask: Option<u32>,
}

impl Reta {
    /// The round-robin table DPDK drivers set up by default: entry `i` is
    /// queue `i % queues`.
    pub fn round_robin(size: usize, queues: u16) -> Reta {
        let q = queues.max(1);
        Reta::of(
            (0..size.max(1))
                .map(|i| (i % usize::from(q)) as u16)
                .collect(),
        )
    }

    /// A table of `entries` (not empty).
    fn of(entries: Vec<u16>) -> Reta {
        let mask = (entries.len().is_power_of_two() && entries.len() <= 1 << 31)
            .then(|| (entries.len() - 1) as u32);
        Reta { entries, mask }
    }

    /// A table read back from a port.
    pub fn from_entries(entries: Vec<u16>) -> Reta {
        if entries.is_empty() {
            return Reta::round_robin(1, 1);
        }
        Reta::of(entries)
    }

    /// The entries, index order.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }

    /// Whether the table is entry `i` = queue `i % queues` throughout.
    pub fn is_round_robin(&self, queues: u16) -> bool {
        *self == Reta::round_robin(self.entries.len(), queues)
    }

    /// The queue for `hash` (the low bits index the table, as NICs do).
    #[inline(always)]
    pub fn queue(&self, hash: u32) -> u16 {
        let i = match self.mask {
            Some(m) => (hash & m) as usize,
            None => hash as usize % self.entries.len(),
        };
        self.entries.get(i).copied().unwrap_or(0)
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

    #[test]
    fn a_table_of_any_length_is_indexed_by_the_hash_modulo_its_length() {
        // Powers of two take a mask, other lengths a division: the same
        // entry either way.
        for entries in [
            vec![3u16, 1, 2, 0],
            vec![0, 1, 2],
            (0..128).map(|i| i % 5).collect(),
        ] {
            let r = Reta::from_entries(entries.clone());
            for h in (0..2000u32).chain([u32::MAX, u32::MAX - 1, 1 << 31]) {
                assert_eq!(r.queue(h), entries[h as usize % entries.len()], "hash {h}");
            }
        }
    }

    /// The queue a NIC picks for `input`: Toeplitz with the programmed key,
    /// the low bits of the hash index a table of `size` entries (a power of
    /// two), entry `i` of a round-robin table is queue `i % queues`.
    fn nic_queue(key: &[u8], input: &[u8], size: u32, queues: u32) -> usize {
        let h = Toeplitz::new(key).hash(input);
        ((h & (size - 1)) % queues) as usize
    }

    /// Address then port in network byte order: what a NIC hashes with
    /// `L3_SRC_ONLY | L4_SRC_ONLY` (source endpoint) or `..._DST_ONLY`.
    fn endpoint(addr: IpAddr, port: u16) -> Vec<u8> {
        let mut v = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        v.extend_from_slice(&port.to_be_bytes());
        v
    }

    fn clients() -> Vec<(IpAddr, u16)> {
        let mut v = vec![];
        for i in 0..40u16 {
            let a4 = IpAddr::V4(Ipv4Addr::new(198, 18, (i % 3) as u8, 2 + i as u8));
            let a6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2 + i));
            v.push((a4, 1024 + 977 * i));
            v.push((a6, 40000 + 13 * i));
        }
        v
    }

    #[test]
    fn the_padded_key_gives_the_default_hash() {
        assert_eq!(nic_key(40), DEFAULT_KEY);
        assert_eq!(nic_key(0), DEFAULT_KEY, "unknown size: the 40-byte key");
        let k = nic_key(52);
        assert_eq!(k.len(), 52);
        assert_eq!(k[..40], DEFAULT_KEY);
        assert!(k[40..].iter().all(|&b| b == 0));
        assert_eq!(nic_key(16), DEFAULT_KEY[..16]);
        // The 36-byte IPv6 vector of the specification, with the padded key.
        let s: Ipv6Addr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let d: Ipv6Addr = "3ffe:2501:200:3::1".parse().unwrap();
        assert_eq!(
            Toeplitz::new(&k).hash_tuple(IpAddr::V6(s), IpAddr::V6(d), 2794, 1766),
            0x4020_7d3d
        );
    }

    #[test]
    fn ownership_from_a_nics_table_matches_the_nics_queue() {
        for size in [64u32, 128, 512] {
            for queues in 1..=4u16 {
                let reta = Reta::round_robin(size as usize, queues);
                let own = Ownership::with_reta(usize::from(queues), reta).unwrap();
                for (addr, port) in clients() {
                    let nic =
                        nic_queue(&nic_key(52), &endpoint(addr, port), size, u32::from(queues));
                    assert_eq!(
                        own.owner(addr, port),
                        nic,
                        "{size} entries, {queues} queues, {addr} {port}"
                    );
                }
            }
        }
    }

    #[test]
    fn table_size_matters_unless_the_queue_count_divides_it() {
        let differ = |queues: u16| {
            let small = Ownership::with_reta(3, Reta::round_robin(128, queues)).unwrap();
            let big = Ownership::with_reta(3, Reta::round_robin(512, queues)).unwrap();
            clients()
                .iter()
                .filter(|(a, p)| small.owner(*a, *p) != big.owner(*a, *p))
                .count()
        };
        assert_eq!(differ(2), 0);
        assert!(differ(3) > 0, "3 queues over 128 and 512 entries differ");
        // Ownership::new is the 128-entry table.
        let new = Ownership::new(3);
        let from128 = Ownership::with_reta(3, Reta::round_robin(128, 3)).unwrap();
        assert!(clients()
            .iter()
            .all(|(a, p)| new.owner(*a, *p) == from128.owner(*a, *p)));
    }

    #[test]
    fn both_directions_of_a_nat_connection_reach_the_owner() {
        let rs: IpAddr = "198.18.1.11".parse().unwrap();
        let rs6: IpAddr = "2001:db8:1::11".parse().unwrap();
        let own = Ownership::with_reta(4, Reta::round_robin(512, 4)).unwrap();
        let mut four_tuple_elsewhere = 0;
        for (client, cport) in clients() {
            let rs = if client.is_ipv4() { rs } else { rs6 };
            // Client -> VIP:80 on the client port (source-only fields: the
            // VIP does not enter the hash).
            let request = endpoint(client, cport);
            // Server:80 -> client after NAT on the server port
            // (destination-only fields): the reply's destination.
            let (reply_dst, reply_dport) = (client, cport);
            let reply = endpoint(reply_dst, reply_dport);
            let key = nic_key(52);
            let q_in = nic_queue(&key, &request, 512, 4);
            let q_back = nic_queue(&key, &reply, 512, 4);
            assert_eq!(q_in, q_back, "{client} {cport}");
            assert_eq!(q_in, own.owner(client, cport), "{client} {cport}");
            // With the usual 4-tuple hash the reply lands by chance.
            let h = Toeplitz::new(&key).hash_tuple(rs, client, 80, cport);
            if (h & 511) % 4 != q_in as u32 {
                four_tuple_elsewhere += 1;
            }
        }
        assert!(four_tuple_elsewhere > 0);
    }

    #[test]
    fn tables_are_adopted_only_when_they_agree_and_name_workers() {
        let rr = Reta::round_robin(512, 2);
        let own = Ownership::from_tables(2, &[rr.clone(), rr.clone()]).unwrap();
        assert_eq!(own.reta(), &rr);
        assert_eq!(own.workers(), 2);
        let e = Ownership::from_tables(2, &[]).unwrap_err();
        assert!(e.contains("no multi-queue port"), "{e}");
        let e = Ownership::from_tables(2, &[rr.clone(), Reta::round_robin(128, 2)]).unwrap_err();
        assert!(e.contains("differ"), "{e}");
        let e = Ownership::with_reta(2, Reta::round_robin(64, 3)).unwrap_err();
        assert!(e.contains("queue 2") && e.contains("2 worker"), "{e}");
        assert!(rr.is_round_robin(2));
        assert!(!rr.is_round_robin(3));
    }

    #[test]
    fn rss_side_names_parse_and_bad_ones_list_the_choices() {
        for side in [RssSide::Client, RssSide::Server, RssSide::All] {
            assert_eq!(side.as_str().parse::<RssSide>(), Ok(side));
        }
        assert_eq!(RssSide::default(), RssSide::All);
        let e = "Client".parse::<RssSide>().unwrap_err();
        assert!(
            e.contains("\"client\"") && e.contains("\"server\"") && e.contains("\"all\""),
            "{e}"
        );
        assert!(e.contains("\"Client\""), "{e}");
    }
}

#[cfg(test)]
mod nibble_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nibble_tables_give_the_specification_vectors() {
        let t = NibbleToeplitz::new(&Toeplitz::new(&DEFAULT_KEY));
        // Source address and port only, as a NIC hashing the client side:
        // compared with the bitwise hash, itself checked against the
        // Microsoft vectors above.
        let bit = Toeplitz::new(&DEFAULT_KEY);
        let v4 = [66, 9, 149, 187, 0x0a, 0xea];
        assert_eq!(t.hash(&v4), bit.hash(&v4));
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&[66, 9, 149, 187]);
        b[4..8].copy_from_slice(&[161, 142, 100, 80]);
        b[8..10].copy_from_slice(&2794u16.to_be_bytes());
        b[10..12].copy_from_slice(&1766u16.to_be_bytes());
        assert_eq!(t.hash(&b), 0x51cc_c178);
    }

    proptest! {
        #[test]
        fn nibble_tables_equal_the_bitwise_hash(input in proptest::collection::vec(any::<u8>(), 0..=ENDPOINT_LEN)) {
            let bit = Toeplitz::new(&DEFAULT_KEY);
            let t = NibbleToeplitz::new(&bit);
            prop_assert_eq!(t.hash(&input), bit.hash(&input));
        }

        #[test]
        fn the_ipv4_byte_tables_name_the_bitwise_hashs_owner(
            addr in any::<[u8; 4]>(),
            port in any::<u16>(),
            workers in 2..8usize,
        ) {
            let bit = Toeplitz::new(&DEFAULT_KEY);
            let mut input = addr.to_vec();
            input.extend_from_slice(&port.to_be_bytes());
            let o = Ownership::new(workers);
            let want = usize::from(o.reta.queue(bit.hash(&input)));
            let a = std::net::Ipv4Addr::from(addr);
            prop_assert_eq!(o.owner_v4(a, port), want);
            prop_assert_eq!(o.owner(IpAddr::V4(a), port), want);
        }
    }
}
