//! sed: shortest expected delay (ipvs.md 3.5).
//!
//! wlc's procedure with overhead `activeconns + 1`: inactive connections do
//! not count, and the `+ 1` makes an idle heavy server beat an idle light
//! one.

use super::{active, overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Sed;

impl Sed {
    pub(crate) fn new() -> Sed {
        Sed
    }
}

/// `ip_vs_sed_dest_overhead`: active connections plus one, as a C int.
#[inline]
pub(crate) fn sed_overhead(d: &Dest) -> i32 {
    active(d).wrapping_add(1)
}

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let first = dests.iter().position(|d| !overloaded(d) && weight(d) > 0)?;
        let mut least = first;
        let mut loh = sed_overhead(&dests[first]);
        for (i, d) in dests.iter().enumerate().skip(first + 1) {
            if overloaded(d) {
                continue;
            }
            let doh = sed_overhead(d);
            if i64::from(loh) * i64::from(weight(d))
                > i64::from(doh) * i64::from(weight(&dests[least]))
            {
                least = i;
                loh = doh;
            }
        }
        Some(least)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn idle_heavier_server_wins() {
        // A weight 1, B weight 2, both idle: 1/1 > 1/2, so B.
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 2)]);
        assert_eq!(pick(&mut Sed::new(), &d), Some(1));
    }

    #[test]
    fn inactive_connections_are_ignored() {
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 1)]);
        conns(&d[0], 0, 1000);
        conns(&d[1], 1, 0);
        assert_eq!(pick(&mut Sed::new(), &d), Some(0));
    }

    #[test]
    fn expected_delay_order_and_ties() {
        // A w1 a0 -> 1/1; B w3 a2 -> 3/3: tie, A kept; C w4 a2 -> 3/4 wins.
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 3), ("198.18.1.13", 4)]);
        conns(&d[1], 2, 0);
        conns(&d[2], 2, 0);
        let mut s = Sed::new();
        assert_eq!(pick(&mut s, &d), Some(2));
        conns(&d[2], 3, 0); // 4/4: tie with A, A kept
        assert_eq!(pick(&mut s, &d), Some(0));
    }

    #[test]
    fn skips_weight_zero_and_overloaded() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 1), ("198.18.1.13", 1)]);
        set_overload(&d[1], true);
        assert_eq!(pick(&mut Sed::new(), &d), Some(2));
        set_overload(&d[2], true);
        assert_eq!(pick(&mut Sed::new(), &d), None);
    }
}
