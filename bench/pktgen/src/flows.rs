//! The flow space: which client address and port a flow number stands for.
//!
//! Why a bijection instead of a table: 10 M flows would need 60 MB of
//! (address, port) pairs and a cache miss per packet on the generator's
//! side. Flow `i` is computed instead: the low bits pick one of the client
//! addresses (a power-of-two prefix), the high bits a port slot, and the
//! slot is scattered over 1024..=65535 by a multiplication modulo the port
//! count (a bijection because the factor is coprime with it), shifted per
//! address so that ports look random on the wire and differ between
//! clients. Distinct flow numbers below [`FlowSpace::len`] give distinct
//! (address, port) pairs.

use std::net::Ipv4Addr;

/// The first client port (below it: well-known and registered ports).
pub const FIRST_PORT: u16 = 1024;
/// How many client ports a client address uses (1024..=65535).
pub const PORTS: u32 = 65536 - FIRST_PORT as u32;
/// Scatters port slots; coprime with [`PORTS`] (= 2^10 * 3^2 * 7).
const PORT_FACTOR: u32 = 25_601;
/// Shifts the port sequence per client address.
const ADDR_SHIFT: u32 = 7_919;

/// Why a client prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Text is not `a.b.c.d/len`.
    #[error("client prefix must look like 198.18.128.0/17, got {0:?}")]
    Syntax(String),
    /// Longer than /30 leaves too few clients; shorter than /8 is not a test range.
    #[error("client prefix length must be between 8 and 30, got {0}")]
    Length(u8),
    /// Host bits set.
    #[error("client prefix {0} has host bits set")]
    HostBits(String),
}

/// Client addresses (a prefix) times client ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpace {
    base: u32,
    addr_bits: u32,
}

impl FlowSpace {
    /// The space of all ports on all addresses of `prefix` (`a.b.c.d/len`).
    pub fn parse(prefix: &str) -> Result<FlowSpace, FlowError> {
        let syntax = || FlowError::Syntax(prefix.to_string());
        let (addr, len) = prefix.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        if !(8..=30).contains(&len) {
            return Err(FlowError::Length(len));
        }
        let addr_bits = 32 - u32::from(len);
        let base = u32::from(addr);
        if base & ((1u32 << addr_bits) - 1) != 0 {
            return Err(FlowError::HostBits(prefix.to_string()));
        }
        Ok(FlowSpace { base, addr_bits })
    }

    /// Number of client addresses.
    pub fn addresses(&self) -> u32 {
        1 << self.addr_bits
    }

    /// Number of distinct flows (address, port pairs).
    pub fn len(&self) -> u64 {
        u64::from(self.addresses()) * u64::from(PORTS)
    }

    /// Never empty (at least 4 addresses); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `a` is one of the client addresses.
    #[inline(always)]
    pub fn contains(&self, a: u32) -> bool {
        (a ^ self.base) >> self.addr_bits == 0
    }

    /// Client address (as u32) and port of flow `i`. Periodic with period
    /// [`len`](Self::len) (the address takes the low bits, the port slot is
    /// reduced modulo the port count), so no division by the space is needed.
    #[inline(always)]
    pub fn flow(&self, i: u64) -> (u32, u16) {
        let a = (i & u64::from(self.addresses() - 1)) as u32;
        let slot = (i >> self.addr_bits) % u64::from(PORTS);
        let scattered = (slot * u64::from(PORT_FACTOR) + u64::from(a) * u64::from(ADDR_SHIFT))
            % u64::from(PORTS);
        (self.base | a, FIRST_PORT + scattered as u16)
    }
}

/// Greatest common divisor.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A step through `0..n` that visits every flow once per round in a
/// scattered order (coprime with `n`, near the golden ratio of `n`), so
/// consecutive packets hit unrelated connection-table buckets as real
/// traffic does. `sequential` gives 1.
pub fn stride(n: u64, sequential: bool) -> u64 {
    if sequential || n <= 2 {
        return 1;
    }
    let mut s = (n as f64 * 0.618_033_988_7) as u64 | 1;
    while gcd(s, n) != 1 {
        s += 2;
    }
    s % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn parse_accepts_benchmark_prefix_and_refuses_bad_ones() {
        let s = FlowSpace::parse("198.18.128.0/17").unwrap();
        assert_eq!(s.addresses(), 32768);
        assert_eq!(s.len(), 32768 * 64512);
        assert!(matches!(
            FlowSpace::parse("198.18.128.1/17"),
            Err(FlowError::HostBits(_))
        ));
        assert_eq!(
            FlowSpace::parse("198.18.0.0/31"),
            Err(FlowError::Length(31))
        );
        assert!(matches!(
            FlowSpace::parse("198.18.0.0"),
            Err(FlowError::Syntax(_))
        ));
        assert!(matches!(
            FlowSpace::parse("198.18.0.x/24"),
            Err(FlowError::Syntax(_))
        ));
    }

    #[test]
    fn flows_are_distinct_inside_the_prefix_and_ports_not_sequential() {
        let s = FlowSpace::parse("198.18.128.0/24").unwrap();
        let n = 200_000u64;
        let mut seen = HashSet::new();
        for i in 0..n {
            let (a, p) = s.flow(i);
            assert!(s.contains(a), "flow {i} address outside the prefix");
            assert!(p >= FIRST_PORT);
            assert!(seen.insert((a, p)), "flow {i} repeats an earlier tuple");
        }
        // Flows of one client address do not use consecutive ports.
        let (_, p0) = s.flow(0);
        let (_, p1) = s.flow(256);
        assert_ne!(p1.wrapping_sub(p0), 1);
    }

    #[test]
    fn whole_space_of_a_small_prefix_is_a_bijection() {
        let s = FlowSpace::parse("198.18.0.0/30").unwrap();
        let mut seen = HashSet::new();
        for i in 0..s.len() {
            seen.insert(s.flow(i));
        }
        assert_eq!(seen.len() as u64, s.len());
        assert_eq!(s.flow(s.len()), s.flow(0));
    }

    #[test]
    fn contains_matches_the_prefix() {
        let s = FlowSpace::parse("198.18.128.0/17").unwrap();
        assert!(s.contains(u32::from(Ipv4Addr::new(198, 18, 255, 255))));
        assert!(!s.contains(u32::from(Ipv4Addr::new(198, 18, 0, 100))));
        assert!(!s.contains(u32::from(Ipv4Addr::new(198, 19, 128, 1))));
    }

    #[test]
    fn stride_visits_every_flow_once_per_round() {
        for n in [1u64, 2, 3, 1000, 1024, 4096, 100_000] {
            let st = stride(n, false);
            let mut seen = HashSet::new();
            let mut i = 0;
            for _ in 0..n {
                assert!(seen.insert(i));
                i = (i + st) % n;
            }
            assert_eq!(seen.len() as u64, n);
        }
        assert_eq!(stride(1000, true), 1);
    }
}
