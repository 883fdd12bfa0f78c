//! wlc: weighted least connection, the default scheduler (ipvs.md 3.4).
//!
//! Smallest overhead/weight, compared by cross-multiplying in 64 bits;
//! strict comparison, so ties keep the earlier destination. With all
//! counters at zero the most recently added eligible server wins.

use super::{wlc_pick, Overhead, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Wlc {
    ov: Overhead,
}

impl Wlc {
    pub(crate) fn new(ov: Overhead) -> Wlc {
        Wlc { ov }
    }
}

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        wlc_pick(dests, self.ov)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn all_idle_picks_the_first_eligible() {
        let d = list(&[("198.18.1.13", 0), ("198.18.1.12", 1), ("198.18.1.11", 3)]);
        assert_eq!(pick(&mut Wlc::new(Overhead::TotalConns), &d), Some(1));
    }

    #[test]
    fn weighted_choice() {
        // A weight 1, B weight 3 (list A, B), TotalConns overhead.
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 3)]);
        let mut s = Wlc::new(Overhead::TotalConns);
        conns(&d[0], 1, 0); // H = 257, 257/1
        conns(&d[1], 2, 0); // H = 514, 514/3 = 171: B
        assert_eq!(pick(&mut s, &d), Some(1));
        conns(&d[1], 3, 0); // 771/3 = 257: tie, A keeps it
        assert_eq!(pick(&mut s, &d), Some(0));
        conns(&d[1], 3, 1); // 772/3 > 257: A
        assert_eq!(pick(&mut s, &d), Some(0));
        conns(&d[0], 1, 1); // 258 * 3 = 774 > 772 * 1: B
        assert_eq!(pick(&mut s, &d), Some(1));
    }

    #[test]
    fn weight_zero_never_wins_and_overloaded_is_skipped() {
        let d = list(&[("198.18.1.11", 2), ("198.18.1.12", 0), ("198.18.1.13", 1)]);
        conns(&d[0], 100, 0);
        conns(&d[2], 60, 0);
        let mut s = Wlc::new(Overhead::TotalConns);
        // B is idle but weight 0; C: 60/1 > 100/2? 15420 > 12850, so A.
        assert_eq!(pick(&mut s, &d), Some(0));
        set_overload(&d[0], true);
        assert_eq!(pick(&mut s, &d), Some(2));
        set_overload(&d[2], true);
        assert_eq!(pick(&mut s, &d), None);
    }

    #[test]
    fn overhead_wraps_as_a_c_int() {
        // 2^24 active connections: 2^24 << 8 wraps to 0 in a 32-bit int,
        // so the kernel sees an idle server (classic formula).
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 1)]);
        conns(&d[0], 1, 0);
        conns(&d[1], 1 << 24, 0);
        assert_eq!(Overhead::Classic.of(&d[1]), 0);
        assert_eq!(pick(&mut Wlc::new(Overhead::Classic), &d), Some(1));
    }
}
