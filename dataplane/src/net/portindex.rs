//! Positions in a list of ports (a worker's tx queues, a stack's
//! interfaces) by DPDK port id.
//!
//! Why: every received frame asks for its port's interface, and every
//! frame sent for its port's tx queue. A scan of the list costs a loop
//! per frame (about a dozen instructions with its bounds); a table by port
//! id is one load. Port ids are small (DPDK's default `RTE_MAX_ETHPORTS`
//! is 32), so the table covers them all in practice; a larger id, or a
//! position beyond a byte, falls back to the scan, which stays the
//! reference (`net::portindex`'s property test holds them equal).

/// Port ids the table covers: DPDK's default `RTE_MAX_ETHPORTS`.
const COVERED: usize = 32;
/// No entry: the port is not in the list, or beyond what the table holds.
const NONE: u8 = u8::MAX;

/// The first position of each port id in a list, for ids below
/// [`COVERED`].
#[derive(Debug, Clone)]
pub struct PortIndex {
    at: [u8; COVERED],
}

impl PortIndex {
    /// The index of `ports`, in list order (a port listed twice is found at
    /// its first place, as a scan finds it).
    pub fn new(ports: impl IntoIterator<Item = u16>) -> PortIndex {
        let mut at = [NONE; COVERED];
        for (i, port) in ports.into_iter().enumerate() {
            if let (Some(slot), Ok(i)) = (at.get_mut(usize::from(port)), u8::try_from(i)) {
                if *slot == NONE {
                    *slot = i;
                }
            }
        }
        PortIndex { at }
    }

    /// The position of `port` in the list, found by the table or else by
    /// `scan` (the list's own search, the reference).
    #[inline(always)]
    pub fn find(&self, port: u16, scan: impl FnOnce() -> Option<usize>) -> Option<usize> {
        match self.at.get(usize::from(port)) {
            Some(&i) if i != NONE => Some(usize::from(i)),
            _ => scan(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The table finds what the scan of the list finds, for any list:
        /// port ids beyond the table, a port listed several times, more
        /// than a byte of entries.
        #[test]
        fn the_table_finds_what_the_scan_finds(
            ports in proptest::collection::vec(0u16..48, 0..300),
            asked in 0u16..64,
        ) {
            let index = PortIndex::new(ports.iter().copied());
            let scan = || ports.iter().position(|&p| p == asked);
            proptest::prop_assert_eq!(index.find(asked, scan), scan());
        }
    }
}
