//! wrr: weighted round robin (ipvs.md 3.2).
//!
//! The kernel's interleaved algorithm: a current weight `cw` starts at the
//! maximum weight and drops by the weights' gcd `di` each time the cursor
//! passes the list head; a destination is picked while its weight is at
//! least `cw`. With weights 4, 3, 2 the order is A A B A B C A B C.
//!
//! One addition, invisible in the results: when a whole pass over the list
//! finds nothing (every eligible weight is below `cw`), the kernel keeps
//! lowering `cw` one step per pass, which with a weight near `i32::MAX`
//! would be two billion passes on the packet path. We jump over the passes
//! that provably find nothing and change nothing but `cw`, landing on the
//! same state the kernel reaches. A test compares with a literal transcript
//! of the kernel loop.

use super::hash::gcd;
use super::{overloaded, weight, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Wrr {
    /// Last chosen index; `None` = the list head.
    cl: Option<usize>,
    cw: i32,
    mw: i32,
    di: i32,
}

impl Wrr {
    pub(crate) fn new() -> Wrr {
        Wrr {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }
}

/// gcd of the positive weights, 1 if there are none.
fn gcd_weight(dests: &[Dest]) -> i32 {
    let g = dests
        .iter()
        .map(weight)
        .filter(|&w| w > 0)
        .fold(0u32, |g, w| if g > 0 { gcd(w as u32, g) } else { w as u32 });
    if g == 0 {
        1
    } else {
        g as i32
    }
}

fn max_weight(dests: &[Dest]) -> i32 {
    dests.iter().map(weight).fold(0, i32::max)
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    /// The kernel's `ip_vs_wrr_dest_changed`, run on add, delete and edit.
    fn update(&mut self, dests: &[Dest]) {
        self.cl = None;
        self.di = gcd_weight(dests);
        self.mw = max_weight(dests) - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        if self.mw <= 0 {
            return None;
        }
        let n = dests.len();
        let last = self.cl;
        let mut pos = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let full = pos.is_none();
            // Highest weight among non-overloaded destinations of this pass.
            let mut seen_max = 0i32;
            for (i, d) in dests.iter().enumerate().skip(pos.map_or(0, |p| p + 1)) {
                if !overloaded(d) {
                    let w = weight(d);
                    if w >= self.cw {
                        self.cl = Some(i);
                        return Some(i);
                    }
                    seen_max = seen_max.max(w);
                }
                if stop == Some(i) {
                    self.cl = Some(i);
                    return None;
                }
            }
            // At the list head.
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
            if full && stop.is_none() && n > 0 {
                self.skip_empty_passes(seen_max);
            }
        }
    }
}

impl Wrr {
    /// Lower `cw` over the coming full passes that would find nothing
    /// (`cw > seen_max`) and leave everything else as it is: `cw` stays
    /// above `di` (so no restart and `last_pass` stays false).
    fn skip_empty_passes(&mut self, seen_max: i32) {
        let (cw, di) = (i64::from(self.cw), i64::from(self.di));
        let empty = if cw > i64::from(seen_max) {
            (cw - i64::from(seen_max) - 1) / di + 1
        } else {
            0
        };
        let harmless = ((cw - di - 1) / di).max(0);
        let k = empty.min(harmless);
        self.cw = (cw - k * di) as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;

    fn letters(p: &[Option<usize>]) -> String {
        p.iter()
            .map(|x| x.map_or('-', |i| (b'A' + i as u8) as char))
            .collect()
    }

    #[test]
    fn weights_4_3_2_interleave_as_the_kernel() {
        let d = list(&[("198.18.1.11", 4), ("198.18.1.12", 3), ("198.18.1.13", 2)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!(letters(&picks(&mut s, &d, 18)), "AABABCABCAABABCABC");
    }

    #[test]
    fn gcd_above_one_divides_the_steps() {
        // di = 2, mw = 4 - 1 = 3: cw runs 3, 1.
        let d = list(&[("198.18.1.11", 4), ("198.18.1.12", 2)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!((s.di, s.mw, s.cw), (2, 3, 3));
        assert_eq!(letters(&picks(&mut s, &d, 6)), "AABAAB");
        // Same shares as weights 2, 1.
        let d = list(&[("198.18.1.11", 6), ("198.18.1.12", 3), ("198.18.1.13", 9)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!(letters(&picks(&mut s, &d, 12)), "CACABCCACABC");
    }

    #[test]
    fn weight_zero_and_overloaded_are_never_picked() {
        let d = list(&[("198.18.1.11", 2), ("198.18.1.12", 0), ("198.18.1.13", 1)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!(letters(&picks(&mut s, &d, 6)), "AACAAC");
        set_overload(&d[0], true);
        assert_eq!(letters(&picks(&mut s, &d, 3)), "CCC");
        set_overload(&d[2], true);
        assert_eq!(pick(&mut s, &d), None);
    }

    #[test]
    fn all_weights_zero_fail_at_once() {
        let d = list(&[("198.18.1.11", 0), ("198.18.1.12", 0)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!(s.mw, 0);
        assert_eq!(pick(&mut s, &d), None);
    }

    #[test]
    fn update_resets_the_cursor_and_adjusts_cw() {
        let d = list(&[("198.18.1.11", 4), ("198.18.1.12", 3), ("198.18.1.13", 2)]);
        let mut s = Wrr::new();
        s.update(&d);
        assert_eq!(letters(&picks(&mut s, &d, 4)), "AABA"); // cw now 2, cursor A
                                                            // Edit C to weight 4: cl = head, di = 1, mw = 4; cw 2 stays.
        let e = vec![d[0].clone(), d[1].clone(), edit_weight(&d[2], 4)];
        s.update(&e);
        assert_eq!((s.cl, s.cw, s.mw), (None, 2, 4));
        assert_eq!(letters(&picks(&mut s, &e, 3)), "ABC");
        // Weights 4, 2, 4 (di = 2, mw = 3): cw 2 becomes (2/2)*2+1 = 3.
        let f = vec![e[0].clone(), edit_weight(&e[1], 2), e[2].clone()];
        s.update(&f);
        assert_eq!((s.di, s.mw, s.cw), (2, 3, 3));
    }

    #[test]
    fn huge_weights_do_not_loop_for_long() {
        let d = list(&[("198.18.1.11", i32::MAX), ("198.18.1.12", 1)]);
        let mut s = Wrr::new();
        s.update(&d);
        set_overload(&d[0], true);
        assert_eq!(pick(&mut s, &d), Some(1));
        set_overload(&d[1], true);
        assert_eq!(pick(&mut s, &d), None);
    }

    /// A literal transcript of the kernel's loop, without the skip.
    struct Naive {
        cl: Option<usize>,
        cw: i32,
        mw: i32,
        di: i32,
    }

    impl Naive {
        fn update(&mut self, dests: &[Dest]) {
            self.cl = None;
            self.di = gcd_weight(dests);
            self.mw = max_weight(dests) - (self.di - 1);
            if self.cw > self.mw || self.cw == 0 {
                self.cw = self.mw;
            } else if self.di > 1 {
                self.cw = (self.cw / self.di) * self.di + 1;
            }
        }
        fn schedule(&mut self, dests: &[Dest]) -> Option<usize> {
            if self.mw == 0 {
                return None;
            }
            let last = self.cl;
            let mut pos = self.cl;
            let (mut stop, mut last_pass, mut restarted) = (None, false, false);
            loop {
                let from = pos.map_or(0, |p| p + 1);
                for (i, d) in dests.iter().enumerate().skip(from) {
                    if !overloaded(d) && weight(d) >= self.cw {
                        self.cl = Some(i);
                        return Some(i);
                    }
                    if stop == Some(i) {
                        self.cl = Some(i);
                        return None;
                    }
                }
                pos = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    proptest! {
        #[test]
        fn same_choices_and_state_as_the_literal_kernel_loop(
            weights in proptest::collection::vec(0i32..40, 1..6),
            ops in proptest::collection::vec((0usize..6, any::<bool>(), 0i32..40, 0u8..4), 1..60),
        ) {
            let mut d: Vec<Dest> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| dest(&format!("198.18.1.{}", i + 1), 80, *w))
                .collect();
            let mut fast = Wrr::new();
            let mut naive = Naive { cl: None, cw: 0, mw: 0, di: 1 };
            fast.update(&d);
            naive.update(&d);
            for (idx, flag, w, what) in ops {
                let i = idx % d.len();
                match what {
                    0 => set_overload(&d[i], flag),
                    1 => {
                        d[i] = edit_weight(&d[i], w);
                        fast.update(&d);
                        naive.update(&d);
                    }
                    _ => {}
                }
                prop_assert_eq!(pick(&mut fast, &d), naive.schedule(&d));
                prop_assert_eq!((fast.cl, fast.cw), (naive.cl, naive.cw));
            }
        }

        #[test]
        fn long_run_shares_equal_the_weights(
            weights in proptest::collection::vec(0i32..12, 1..6),
        ) {
            let d: Vec<Dest> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| dest(&format!("198.18.1.{}", i + 1), 80, *w))
                .collect();
            let mut s = Wrr::new();
            s.update(&d);
            let total: i32 = weights.iter().sum();
            let mut count = vec![0i32; d.len()];
            // Three whole cycles of the schedule.
            let rounds = (3 * total) as usize;
            for _ in 0..rounds {
                match pick(&mut s, &d) {
                    Some(i) => count[i] += 1,
                    None => prop_assert_eq!(total, 0),
                }
            }
            let want: Vec<i32> = weights.iter().map(|w| 3 * w).collect();
            prop_assert_eq!(count, want);
        }
    }
}
