//! ovf: weighted overflow (ipvs.md 3.8).
//!
//! The highest-weight server whose active connections do not exceed its
//! weight; first in list order wins ties. Inactive connections are ignored,
//! so UDP traffic never overflows.

use super::{active, overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Ovf;

impl Ovf {
    pub(crate) fn new() -> Ovf {
        Ovf
    }
}

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, d) in dests.iter().enumerate() {
            let w = weight(d);
            if overloaded(d) || active(d) > w || w == 0 {
                continue;
            }
            if best.is_none_or(|b| w > weight(&dests[b])) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn fills_the_heaviest_then_overflows() {
        let d = list(&[("198.18.1.11", 2), ("198.18.1.12", 3), ("198.18.1.13", 3)]);
        let mut s = Ovf::new();
        assert_eq!(pick(&mut s, &d), Some(1));
        conns(&d[1], 3, 0); // at its weight: still eligible
        assert_eq!(pick(&mut s, &d), Some(1));
        conns(&d[1], 4, 0); // above: skipped
        assert_eq!(pick(&mut s, &d), Some(2));
        conns(&d[2], 4, 500); // inactive does not count, active does
        assert_eq!(pick(&mut s, &d), Some(0));
        conns(&d[0], 3, 0);
        assert_eq!(pick(&mut s, &d), None);
    }

    #[test]
    fn inactive_connections_never_overflow() {
        let d = list(&[("198.18.1.11", 1)]);
        conns(&d[0], 0, 1_000_000);
        assert_eq!(pick(&mut Ovf::new(), &d), Some(0));
    }

    #[test]
    fn skips_weight_zero_and_overloaded() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 1)]);
        let mut s = Ovf::new();
        assert_eq!(pick(&mut s, &d), Some(1));
        set_overload(&d[1], true);
        assert_eq!(pick(&mut s, &d), None);
    }
}
