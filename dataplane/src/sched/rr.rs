//! rr: round robin (ipvs.md 3.1).
//!
//! The kernel keeps a pointer to the last chosen list element (initially
//! the list head) and walks on from there. Here the cursor is an index into
//! the list plus the identities of the list it indexes, so that `update`
//! can follow the kernel's rule for a deleted cursor: it moves to the
//! deleted element's predecessor, and the next pick is the element that
//! followed the deleted one. Adding or editing leaves the cursor on its
//! destination.

use std::sync::Arc;

use super::{overloaded, weight, SchedInput, Scheduler};
use crate::model::{Dest, DestShared};

pub(crate) struct Rr {
    /// Index of the last chosen destination; `None` = the list head.
    cursor: Option<usize>,
    /// The list `cursor` indexes (identities only).
    ids: Vec<Arc<DestShared>>,
}

impl Rr {
    pub(crate) fn new() -> Rr {
        Rr {
            cursor: None,
            ids: Vec::new(),
        }
    }
}

fn position(dests: &[Dest], id: &Arc<DestShared>) -> Option<usize> {
    dests.iter().position(|d| Arc::ptr_eq(&d.shared, id))
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn update(&mut self, dests: &[Dest]) {
        if let Some(c) = self.cursor {
            self.cursor = match self.ids.get(c).and_then(|id| position(dests, id)) {
                Some(i) => Some(i),
                // Deleted (or unknown): the nearest surviving predecessor,
                // or the head.
                None => self.ids[..c.min(self.ids.len())]
                    .iter()
                    .rev()
                    .find_map(|id| position(dests, id)),
            };
        }
        self.ids.clear();
        self.ids.extend(dests.iter().map(|d| Arc::clone(&d.shared)));
    }

    fn schedule(&mut self, dests: &[Dest], _input: &mut SchedInput<'_>) -> Option<usize> {
        let ok = |d: &Dest| !overloaded(d) && weight(d) > 0;
        let n = dests.len();
        let start = self.cursor.map_or(0, |c| c + 1).min(n);
        // After the cursor to the end of the list ...
        let found = (start..n).find(|&i| ok(&dests[i])).or_else(|| {
            // ... then from the start up to and including the cursor itself
            // (no second pass when the cursor is the head).
            let last = self.cursor?;
            (0..=last.min(n.saturating_sub(1))).find(|&i| i < n && ok(&dests[i]))
        })?;
        self.cursor = Some(found);
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn abc() -> Vec<Dest> {
        // Added A, B, C: list order C, B, A.
        list(&[("198.18.1.13", 1), ("198.18.1.12", 1), ("198.18.1.11", 1)])
    }

    #[test]
    fn walks_the_list_in_kernel_order_and_wraps() {
        let d = abc();
        let mut s = Rr::new();
        s.update(&d);
        let p = picks(&mut s, &d, 7);
        assert_eq!(p, [0, 1, 2, 0, 1, 2, 0].map(Some));
    }

    #[test]
    fn skips_weight_zero_and_overloaded() {
        let mut d = abc();
        d[1] = edit_weight(&d[1], 0);
        let mut s = Rr::new();
        s.update(&d);
        set_overload(&d[2], true);
        assert_eq!(picks(&mut s, &d, 3), [Some(0), Some(0), Some(0)]);
        set_overload(&d[0], true);
        assert_eq!(pick(&mut s, &d), None);
        set_overload(&d[2], false);
        assert_eq!(pick(&mut s, &d), Some(2));
    }

    #[test]
    fn weight_values_do_not_matter() {
        let d = list(&[("198.18.1.13", 5), ("198.18.1.12", 1)]);
        let mut s = Rr::new();
        s.update(&d);
        assert_eq!(picks(&mut s, &d, 4), [0, 1, 0, 1].map(Some));
    }

    #[test]
    fn deleting_the_cursor_continues_with_its_successor() {
        let d = abc(); // C B A
        let mut s = Rr::new();
        s.update(&d);
        assert_eq!(picks(&mut s, &d, 2), [Some(0), Some(1)]); // C, B: cursor on B
        let after: Vec<Dest> = vec![d[0].clone(), d[2].clone()]; // -d B: C A
        s.update(&after);
        assert_eq!(pick(&mut s, &after), Some(1)); // A, which followed B
        assert_eq!(pick(&mut s, &after), Some(0)); // then C
    }

    #[test]
    fn deleting_the_first_element_under_the_cursor_restarts_at_the_head() {
        let d = abc();
        let mut s = Rr::new();
        s.update(&d);
        assert_eq!(pick(&mut s, &d), Some(0)); // C
        let after: Vec<Dest> = d[1..].to_vec(); // -d C: B A
        s.update(&after);
        assert_eq!(pick(&mut s, &after), Some(0)); // B
    }

    #[test]
    fn deleting_another_element_or_adding_keeps_the_cursor() {
        let d = abc(); // C B A
        let mut s = Rr::new();
        s.update(&d);
        assert_eq!(pick(&mut s, &d), Some(0)); // C
                                               // -a D: D C B A; cursor stays on C, so next is B.
        let mut added = vec![dest("198.18.1.14", 80, 1)];
        added.extend(d.iter().cloned());
        s.update(&added);
        assert_eq!(pick(&mut s, &added), Some(2)); // B
                                                   // -d A: D C B; cursor stays on B; next wraps to D.
        let fewer: Vec<Dest> = added[..3].to_vec();
        s.update(&fewer);
        assert_eq!(pick(&mut s, &fewer), Some(0)); // D
    }

    #[test]
    fn empty_list_fails() {
        let mut s = Rr::new();
        s.update(&[]);
        assert_eq!(pick(&mut s, &[]), None);
    }
}
