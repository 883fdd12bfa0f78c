//! lc: least connection (ipvs.md 3.3).
//!
//! The smallest overhead wins; ties keep the earlier destination in list
//! order. Weights only matter as "zero = quiescent".

use super::{overloaded, weight, Overhead, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Lc {
    ov: Overhead,
}

impl Lc {
    pub(crate) fn new(ov: Overhead) -> Lc {
        Lc { ov }
    }
}

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let mut least: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            if overloaded(d) || weight(d) == 0 {
                continue;
            }
            let doh = self.ov.of(d);
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn least_overhead_wins_and_ties_keep_the_first() {
        let d = list(&[("198.18.1.13", 1), ("198.18.1.12", 5), ("198.18.1.11", 1)]);
        let mut s = Lc::new(Overhead::TotalConns);
        s.update(&d);
        assert_eq!(pick(&mut s, &d), Some(0)); // all zero: first
        conns(&d[0], 1, 0); // 257
        conns(&d[1], 0, 300); // 300
        conns(&d[2], 1, 0); // 257
        assert_eq!(pick(&mut s, &d), Some(0)); // tie 0 vs 2: first; weight 5 ignored
        conns(&d[0], 2, 0);
        assert_eq!(pick(&mut s, &d), Some(2));
    }

    #[test]
    fn the_two_overhead_formulas_differ_in_a_near_tie() {
        // ipvs.md 0: A 1 active / 0 inactive versus B 0 active / 256
        // inactive, A first: classic keeps A (256 vs 256), the new formula
        // picks B (257 vs 256).
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 1)]);
        conns(&d[0], 1, 0);
        conns(&d[1], 0, 256);
        assert_eq!(pick(&mut Lc::new(Overhead::Classic), &d), Some(0));
        assert_eq!(pick(&mut Lc::new(Overhead::TotalConns), &d), Some(1));
    }

    #[test]
    fn skips_weight_zero_and_overloaded() {
        let d = list(&[("198.18.1.13", 0), ("198.18.1.12", 1), ("198.18.1.11", 1)]);
        conns(&d[2], 5, 0);
        let mut s = Lc::new(Overhead::TotalConns);
        assert_eq!(pick(&mut s, &d), Some(1));
        set_overload(&d[1], true);
        assert_eq!(pick(&mut s, &d), Some(2));
        set_overload(&d[2], true);
        assert_eq!(pick(&mut s, &d), None);
    }
}
