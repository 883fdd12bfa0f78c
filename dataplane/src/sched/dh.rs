//! dh: destination hashing (ipvs.md 3.11).
//!
//! 256 buckets keyed by `hash_32` of the packet's destination address;
//! bucket `i` holds the `(i mod n)`-th destination in list order, weights
//! ignored. A bucket whose server is quiescent or overloaded fails: dh has
//! no fallback. The kernel rebuilds on add and delete only; an edit cannot
//! change a weight-blind table, so rebuilding on every `update` gives the
//! same table.

use super::hash::{fold, hash_32};
use super::{overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

/// `CONFIG_IP_VS_DH_TAB_BITS`.
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const EMPTY: u32 = u32::MAX;

pub(crate) struct Dh {
    buckets: [u32; TAB_SIZE],
}

impl Dh {
    pub(crate) fn new() -> Dh {
        Dh {
            buckets: [EMPTY; TAB_SIZE],
        }
    }
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn update(&mut self, dests: &[Dest]) {
        let n = dests.len();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if n == 0 { EMPTY } else { (i % n) as u32 };
        }
    }

    fn schedule(&mut self, dests: &[Dest], input: &mut SchedInput<'_>) -> Option<usize> {
        let idx = self.buckets[hash_32(fold(&input.dst), TAB_BITS) as usize] as usize;
        let d = dests.get(idx)?;
        if weight(d) <= 0 || overloaded(d) {
            return None;
        }
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn to(s: &mut Dh, d: &[Dest], dst: &str) -> Option<usize> {
        pick_full(s, d, "198.18.0.1", 40000, dst, 0)
    }

    #[test]
    fn maps_destination_addresses_to_bucket_mod_n() {
        // Buckets from hash_32(ntohl(addr), 8), computed independently in
        // Python: 198.18.1.1 -> 133, .2 -> 231, .3 -> 72, 198.18.7.200 -> 59,
        // 2001:db8::1 -> 63. With three servers bucket b holds server b % 3.
        let d = list(&[("198.18.1.13", 1), ("198.18.1.12", 7), ("198.18.1.11", 1)]);
        let mut s = Dh::new();
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.1.1"), Some(1));
        assert_eq!(to(&mut s, &d, "198.18.1.2"), Some(0));
        assert_eq!(to(&mut s, &d, "198.18.1.3"), Some(0));
        assert_eq!(to(&mut s, &d, "198.18.7.200"), Some(2));
        assert_eq!(to(&mut s, &d, "2001:db8::1"), Some(0));
        // The source does not matter.
        assert_eq!(
            pick_full(&mut s, &d, "198.18.9.9", 1, "198.18.1.1", 0),
            Some(1)
        );
    }

    #[test]
    fn unavailable_bucket_fails_without_fallback() {
        let d = list(&[("198.18.1.13", 1), ("198.18.1.12", 1), ("198.18.1.11", 1)]);
        let mut s = Dh::new();
        s.update(&d);
        set_overload(&d[1], true);
        assert_eq!(to(&mut s, &d, "198.18.1.1"), None);
        assert_eq!(to(&mut s, &d, "198.18.1.2"), Some(0));
        let q = vec![d[0].clone(), d[1].clone(), edit_weight(&d[2], 0)];
        s.update(&q);
        assert_eq!(to(&mut s, &q, "198.18.7.200"), None);
    }

    #[test]
    fn empty_service_fails() {
        let mut s = Dh::new();
        s.update(&[]);
        assert_eq!(to(&mut s, &[], "198.18.1.1"), None);
    }
}
