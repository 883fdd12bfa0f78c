//! sh: source hashing (ipvs.md 3.12).
//!
//! 256 buckets keyed by `hash_32(port + ntohl(source))`; the table is filled
//! by walking the list cyclically, each destination taking as many
//! consecutive buckets as its weight (a weight-0 destination still takes
//! one per lap). Rebuilt on add, delete and edit.
//!
//! Note what this means for consistency: the fill is positional, so a
//! `-d` (or a weight change) shifts the buckets of the servers after it,
//! as in the kernel. What stays exactly put is a server becoming
//! unavailable (OVERLOAD) under `sh-fallback`: the table does not change,
//! clients of other servers keep their server, and only the unavailable
//! server's clients are re-hashed (with the kernel's `2h + offset` probe).

use super::hash::{fold, hash_32};
use super::{overloaded, weight, SchedInput, Scheduler};
use crate::model::{Dest, SchedFlags};

/// `CONFIG_IP_VS_SH_TAB_BITS` (default 8).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;
const EMPTY: u32 = u32::MAX;

pub(crate) struct Sh {
    flags: SchedFlags,
    buckets: [u32; TAB_SIZE],
}

impl Sh {
    pub(crate) fn new(flags: SchedFlags) -> Sh {
        Sh {
            flags,
            buckets: [EMPTY; TAB_SIZE],
        }
    }
}

#[inline]
fn unavailable(d: &Dest) -> bool {
    weight(d) <= 0 || overloaded(d)
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn update(&mut self, dests: &[Dest]) {
        if dests.is_empty() {
            self.buckets = [EMPTY; TAB_SIZE];
            return;
        }
        let mut p = 0usize;
        let mut count = 0i32;
        for b in self.buckets.iter_mut() {
            *b = p as u32;
            count += 1;
            if count >= weight(&dests[p]) {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
    }

    fn set_flags(&mut self, flags: SchedFlags) {
        self.flags = flags;
    }

    fn schedule(&mut self, dests: &[Dest], input: &mut SchedInput<'_>) -> Option<usize> {
        let port = u32::from(input.hash_port(self.flags));
        let h = hash_32(port.wrapping_add(fold(&input.src)), TAB_BITS);
        let first = self.buckets[h as usize] as usize;
        let d = dests.get(first)?;
        if !unavailable(d) {
            return Some(first);
        }
        if !self.flags.fallback() {
            return None;
        }
        // The kernel re-hashes with `offset = (k + h) mod 256` and adds h
        // again: bucket (2h + k) mod 256.
        for k in 0..TAB_SIZE as u32 {
            let roffset = (k + h) % TAB_SIZE as u32;
            let idx = self.buckets[((roffset + h) & TAB_MASK) as usize] as usize;
            if dests.get(idx).is_some_and(|d| !unavailable(d)) {
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;

    const FALLBACK: SchedFlags = SchedFlags(SchedFlags::SCHED1);
    const PORT: SchedFlags = SchedFlags(SchedFlags::SCHED2);

    fn abc_321() -> Vec<Dest> {
        list(&[("198.18.1.13", 3), ("198.18.1.12", 1), ("198.18.1.11", 2)])
    }

    fn from(s: &mut Sh, d: &[Dest], src: &str, sport: u16) -> Option<usize> {
        pick_full(s, d, src, sport, "198.18.0.100", 0)
    }

    #[test]
    fn buckets_fill_in_weight_runs() {
        let d = abc_321();
        let mut s = Sh::new(SchedFlags::default());
        s.update(&d);
        let pattern = [0, 0, 0, 1, 2, 2];
        for (i, b) in s.buckets.iter().enumerate() {
            assert_eq!(*b, pattern[i % 6], "bucket {i}");
        }
        // Weight 0 still takes one bucket per lap.
        let z = list(&[("198.18.1.13", 2), ("198.18.1.12", 0)]);
        s.update(&z);
        assert_eq!(&s.buckets[..6], &[0, 0, 1, 0, 0, 1]);
    }

    /// Sources 198.18.0.1 ..= .8 hash (hash_32, independent Python model) to
    /// buckets 188 30 128 226 67 165 7 105; with source port 40000 to
    /// 96 194 36 134 231 73 171 13. Bucket b holds pattern[b % 6].
    const SRCS: [&str; 8] = [
        "198.18.0.1",
        "198.18.0.2",
        "198.18.0.3",
        "198.18.0.4",
        "198.18.0.5",
        "198.18.0.6",
        "198.18.0.7",
        "198.18.0.8",
    ];

    fn all(s: &mut Sh, d: &[Dest], sport: u16) -> Vec<Option<usize>> {
        SRCS.iter().map(|src| from(s, d, src, sport)).collect()
    }

    #[test]
    fn source_address_lookup() {
        let d = abc_321();
        let mut s = Sh::new(SchedFlags::default());
        s.update(&d);
        assert_eq!(all(&mut s, &d, 40000), [0, 0, 0, 2, 0, 1, 0, 1].map(Some));
    }

    #[test]
    fn sh_port_adds_the_source_port() {
        let d = abc_321();
        let mut s = Sh::new(PORT);
        s.update(&d);
        assert_eq!(all(&mut s, &d, 40000), [0, 0, 0, 0, 1, 0, 1, 0].map(Some));
        // Ports only count for TCP, UDP and SCTP.
        let mut rng = Scripted::new(&[0]);
        let mut icmp = SchedInput {
            src: SRCS[4].parse().unwrap(),
            src_port: 40000,
            dst: "198.18.0.100".parse().unwrap(),
            protocol: 1,
            now: 0,
            rng: &mut rng,
        };
        assert_eq!(s.schedule(&d, &mut icmp), Some(0));
    }

    #[test]
    fn unavailable_without_fallback_fails() {
        let d = abc_321();
        let mut s = Sh::new(SchedFlags::default());
        s.update(&d);
        set_overload(&d[1], true);
        assert_eq!(
            all(&mut s, &d, 0),
            [
                Some(0),
                Some(0),
                Some(0),
                Some(2),
                Some(0),
                None,
                Some(0),
                None
            ]
        );
    }

    #[test]
    fn fallback_probes_from_twice_the_hash() {
        let d = abc_321();
        let mut s = Sh::new(FALLBACK);
        s.update(&d);
        set_overload(&d[1], true);
        // Python model: [0, 0, 0, 2, 0, 0, 0, 0]. For 198.18.0.6 (h = 165)
        // the first probe is bucket 330 mod 256 = 74, pattern[74 % 6] = 0.
        assert_eq!(all(&mut s, &d, 0), [0, 0, 0, 2, 0, 0, 0, 0].map(Some));
        set_overload(&d[1], false);
        set_overload(&d[0], true);
        assert_eq!(all(&mut s, &d, 0), [1, 1, 1, 2, 1, 1, 1, 1].map(Some));
        set_overload(&d[1], true);
        set_overload(&d[2], true);
        assert_eq!(from(&mut s, &d, SRCS[0], 0), None);
    }

    #[test]
    fn weight_zero_is_in_the_table_but_never_returned() {
        let d = abc_321();
        let q = vec![d[0].clone(), edit_weight(&d[1], 0), d[2].clone()];
        let mut s = Sh::new(SchedFlags::default());
        s.update(&q);
        // Pattern is now A A A B C C again (B takes one bucket per lap).
        assert_eq!(
            all(&mut s, &q, 0),
            [
                Some(0),
                Some(0),
                Some(0),
                Some(2),
                Some(0),
                None,
                Some(0),
                None
            ]
        );
    }

    #[test]
    fn removing_a_server_shifts_others_as_in_the_kernel() {
        // Weights 1,1,1: buckets 0 1 2 0 1 2 ...; after -d of the middle
        // server the table is 0 1 0 1 ...: bucket 2 moves from the third
        // server to the first. (sh is positional, not consistent.)
        let d = list(&[("198.18.1.13", 1), ("198.18.1.12", 1), ("198.18.1.11", 1)]);
        let mut s = Sh::new(SchedFlags::default());
        s.update(&d);
        assert_eq!(&s.buckets[..3], &[0, 1, 2]);
        s.update(&[d[0].clone(), d[2].clone()]);
        assert_eq!(&s.buckets[..3], &[0, 1, 0]);
    }

    #[test]
    fn empty_service_fails() {
        let mut s = Sh::new(FALLBACK);
        s.update(&[]);
        assert_eq!(from(&mut s, &[], SRCS[0], 0), None);
    }

    proptest! {
        /// With sh-fallback, a server going unavailable moves only its own
        /// clients: every client of another server keeps it, exactly.
        #[test]
        fn unavailable_server_moves_only_its_clients(
            weights in proptest::collection::vec(1i32..6, 2..8),
            down in 0usize..8,
            srcs in proptest::collection::vec(any::<u32>(), 1..64),
        ) {
            let d: Vec<Dest> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| dest(&format!("198.18.1.{}", i + 1), 80, *w))
                .collect();
            let down = down % d.len();
            let mut s = Sh::new(FALLBACK);
            s.update(&d);
            for src in srcs {
                let a = std::net::Ipv4Addr::from(0xc612_0000 | (src & 0x1_ffff)).to_string();
                set_overload(&d[down], false);
                let before = from(&mut s, &d, &a, 0).unwrap();
                set_overload(&d[down], true);
                let after = from(&mut s, &d, &a, 0).unwrap();
                if before != down {
                    prop_assert_eq!(after, before);
                } else {
                    prop_assert_ne!(after, down);
                }
            }
        }
    }
}
