//! nq: never queue (ipvs.md 3.6).
//!
//! An idle server (no active connections) is taken at once, the first in
//! list order; otherwise sed's choice.

use super::sed::sed_overhead;
use super::{active, overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Nq;

impl Nq {
    pub(crate) fn new() -> Nq {
        Nq
    }
}

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let mut least: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            if overloaded(d) || weight(d) == 0 {
                continue;
            }
            let doh = sed_overhead(d);
            if active(d) == 0 {
                return Some(i);
            }
            let better = match least {
                None => true,
                Some((l, loh)) => {
                    i64::from(loh) * i64::from(weight(d))
                        > i64::from(doh) * i64::from(weight(&dests[l]))
                }
            };
            if better {
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
    fn first_idle_server_is_returned() {
        // A busy, B idle weight 1, C idle weight 10: B (first idle), where
        // sed would pick C.
        let d = list(&[("198.18.1.11", 5), ("198.18.1.12", 1), ("198.18.1.13", 10)]);
        conns(&d[0], 1, 0);
        assert_eq!(pick(&mut Nq::new(), &d), Some(1));
        assert_eq!(pick(&mut super::super::sed::Sed::new(), &d), Some(2));
    }

    #[test]
    fn without_idle_servers_it_is_sed() {
        let d = list(&[("198.18.1.11", 1), ("198.18.1.12", 3)]);
        conns(&d[0], 1, 0); // 2/1
        conns(&d[1], 5, 0); // 6/3: tie, A kept
        let mut s = Nq::new();
        assert_eq!(pick(&mut s, &d), Some(0));
        conns(&d[1], 4, 0); // 5/3 < 2
        assert_eq!(pick(&mut s, &d), Some(1));
    }

    #[test]
    fn idle_but_quiescent_or_overloaded_is_skipped() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 1), ("198.18.1.13", 1)]);
        conns(&d[2], 3, 0);
        set_overload(&d[1], true);
        assert_eq!(pick(&mut Nq::new(), &d), Some(2));
        set_overload(&d[2], true);
        assert_eq!(pick(&mut Nq::new(), &d), None);
    }
}
