//! fo: weighted failover (ipvs.md 3.7).
//!
//! The highest weight among servers without OVERLOAD; the first in list
//! order wins ties; weight 0 never wins. Connection counts are not read.

use super::{overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Fo;

impl Fo {
    pub(crate) fn new() -> Fo {
        Fo
    }
}

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let mut best = None;
        let mut hw = 0;
        for (i, d) in dests.iter().enumerate() {
            if !overloaded(d) && weight(d) > hw {
                best = Some(i);
                hw = weight(d);
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
    fn highest_weight_first_wins() {
        let d = list(&[("198.18.1.11", 2), ("198.18.1.12", 5), ("198.18.1.13", 5)]);
        conns(&d[1], 1000, 1000);
        let mut s = Fo::new();
        assert_eq!(pick(&mut s, &d), Some(1));
        assert_eq!(pick(&mut s, &d), Some(1)); // no rotation
        set_overload(&d[1], true);
        assert_eq!(pick(&mut s, &d), Some(2));
        set_overload(&d[2], true);
        assert_eq!(pick(&mut s, &d), Some(0));
    }

    #[test]
    fn weight_zero_never_wins() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 0)]);
        assert_eq!(pick(&mut Fo::new(), &d), None);
    }
}
