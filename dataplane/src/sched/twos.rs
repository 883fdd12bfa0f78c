//! twos: weighted random two choices (ipvs.md 3.14).
//!
//! Two servers are drawn at random with probability by weight, and the one
//! with the smaller overhead/weight wins (the first draw on a tie). The
//! draws are `r % (T + 1)` of 32-bit random numbers, `T` the total eligible
//! weight, so `r = 0` lands on the first server, which therefore gets
//! `(w + 1) / (T + 1)`, as in the kernel. Arithmetic is the kernel's C
//! `int` (wrapping).

use super::{overloaded, weight, Overhead, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Twos {
    ov: Overhead,
}

impl Twos {
    pub(crate) fn new(ov: Overhead) -> Twos {
        Twos { ov }
    }
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn update(&mut self, _dests: &[Dest]) {}

    fn schedule(&mut self, dests: &[Dest], input: &mut SchedInput<'_>) -> Option<usize> {
        let eligible = |d: &Dest| !overloaded(d) && weight(d) > 0;
        let mut total = 0i32;
        let mut choice1 = None;
        for (i, d) in dests.iter().enumerate() {
            if eligible(d) {
                total = total.wrapping_add(weight(d));
                choice1 = Some(i);
            }
        }
        let mut choice1 = choice1?;
        // Inclusive draws: T + 1 values. (A sum that wraps to -1 would make
        // the kernel divide by zero; we fail instead.)
        let span = total.wrapping_add(1) as u32;
        if span == 0 {
            return None;
        }
        let mut r1 = (input.rng.next_u32() % span) as i32;
        let mut r2 = (input.rng.next_u32() % span) as i32;

        let (mut w1, mut oh1) = (-1i32, 0i32);
        let (mut choice2, mut w2, mut oh2) = (None, -1i32, 0i32);
        for (i, d) in dests.iter().enumerate() {
            if !eligible(d) {
                continue;
            }
            let w = weight(d);
            r1 = r1.wrapping_sub(w);
            r2 = r2.wrapping_sub(w);
            if r1 <= 0 && w1 == -1 {
                choice1 = i;
                w1 = w;
                oh1 = self.ov.of(d);
            }
            if r2 <= 0 && w2 == -1 {
                choice2 = Some(i);
                w2 = w;
                oh2 = self.ov.of(d);
            }
            if w1 != -1 && w2 != -1 {
                break;
            }
        }
        match choice2 {
            Some(c2) if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) => Some(c2),
            _ => Some(choice1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn draw(s: &mut Twos, d: &[Dest], r: &[u32]) -> Option<usize> {
        let mut rng = Scripted::new(r);
        let mut input = SchedInput {
            src: "198.18.0.1".parse().unwrap(),
            src_port: 1,
            dst: "198.18.0.100".parse().unwrap(),
            protocol: 17,
            now: 0,
            rng: &mut rng,
        };
        s.schedule(d, &mut input)
    }

    fn abc() -> Vec<Dest> {
        list(&[("198.18.1.11", 1), ("198.18.1.12", 2), ("198.18.1.13", 3)])
    }

    #[test]
    fn draws_are_inclusive_and_weighted() {
        // T = 6, draws mod 7: 0,1 -> A; 2,3 -> B; 4,5,6 -> C. Both draws
        // equal so the comparison keeps that server.
        let d = abc();
        let mut s = Twos::new(Overhead::TotalConns);
        let got: Vec<_> = (0..7).map(|r| draw(&mut s, &d, &[r, r])).collect();
        assert_eq!(got, [0, 0, 1, 1, 2, 2, 2].map(Some));
        // 7 wraps to 0, 13 to 6.
        assert_eq!(draw(&mut s, &d, &[7, 7]), Some(0));
        assert_eq!(draw(&mut s, &d, &[13, 13]), Some(2));
    }

    #[test]
    fn less_loaded_per_weight_of_the_two_wins() {
        let d = abc();
        let mut s = Twos::new(Overhead::TotalConns);
        // A (r1 = 0) vs C (r2 = 6), both idle: tie keeps the first draw.
        assert_eq!(draw(&mut s, &d, &[0, 6]), Some(0));
        // A has one connection: 3 * 257 > 1 * 0, C.
        conns(&d[0], 1, 0);
        assert_eq!(draw(&mut s, &d, &[0, 6]), Some(2));
        // C has 3 active: 3 * 257 > 1 * 771? No, tie: A.
        conns(&d[2], 3, 0);
        assert_eq!(draw(&mut s, &d, &[0, 6]), Some(0));
        // The order of the draws matters only for ties.
        conns(&d[2], 4, 0);
        assert_eq!(draw(&mut s, &d, &[6, 0]), Some(0));
    }

    #[test]
    fn weight_zero_and_overloaded_are_not_drawn() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 2), ("198.18.1.13", 3)]);
        set_overload(&d[2], true);
        let mut s = Twos::new(Overhead::TotalConns);
        // T = 2: every draw lands on B.
        for r in 0..6 {
            assert_eq!(draw(&mut s, &d, &[r, r + 1]), Some(1));
        }
        set_overload(&d[1], true);
        assert_eq!(draw(&mut s, &d, &[0, 0]), None);
    }

    #[test]
    fn production_rng_spreads_by_weight() {
        let d = abc();
        let mut s = Twos::new(Overhead::TotalConns);
        let mut rng = crate::sched::SplitMix64::new(42);
        let mut count = [0u32; 3];
        for _ in 0..7000 {
            let mut input = SchedInput {
                src: "198.18.0.1".parse().unwrap(),
                src_port: 1,
                dst: "198.18.0.100".parse().unwrap(),
                protocol: 17,
                now: 0,
                rng: &mut rng,
            };
            count[s.schedule(&d, &mut input).unwrap()] += 1;
        }
        // All idle: the first draw always wins, shares 2/7, 2/7, 3/7.
        for (c, want) in count.iter().zip([2000.0, 2000.0, 3000.0]) {
            assert!((f64::from(*c) - want).abs() < want * 0.1, "{count:?}");
        }
    }
}
