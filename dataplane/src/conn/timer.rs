//! A hashed timer wheel over the connection slab, driven by an injected clock.
//!
//! Why this shape: every packet re-arms its connection's timer, so re-arming
//! must be O(1) and, ideally, touch nothing but the entry itself. The wheel
//! keeps each entry in a doubly linked list (u32 links stored in the entry)
//! hanging off the slot of the tick at which it must next be *examined*
//! (`at`). The entry's true expiry lives beside it and may only move later
//! than `at` without touching the wheel ("lazy re-arm"): when the slot comes
//! round the table sees the entry is not due yet and links it again at its
//! real expiry. Only a re-arm to an *earlier* time (say ESTABLISHED ->
//! CLOSE) unlinks and relinks, still O(1).
//!
//! Slots are one tick wide ([`TICK_MS`]); with [`SLOTS`] slots one round
//! spans about 82 s, so an idle entry with a 900 s timeout is examined about
//! 11 times before it expires. Ticks are `u32` compared with wrapping
//! arithmetic, good for timeouts below 2^31 ticks (248 days).
//!
//! Lists are circular with sentinel nodes: indices `0..cap` are entries,
//! `cap..cap + SLOTS` are the slot heads and `cap + SLOTS` is the "pending"
//! list of entries spliced out of a due slot and not yet handed out, which is
//! what lets [`Wheel::pop_due`] stop after any number of entries and resume.
//!
//! A bitmap marks the slots that may hold entries (set when an entry is
//! linked to a slot, cleared when the slot is spliced out or found empty),
//! so [`Wheel::pop_due`] jumps over empty ticks 64 at a time instead of
//! visiting each: a worker whose table is small or empty pays almost
//! nothing for the ticks between two expiry calls. Unlinking leaves the
//! mark (a mark on an empty slot only costs a look at that slot later),
//! so re-arming touches no more than it did.

/// Milliseconds per tick.
pub const TICK_MS: u64 = 10;
/// Ticks per second.
pub const TICKS_PER_SEC: u32 = (1000 / TICK_MS) as u32;
/// Number of slots (a power of two).
pub const SLOTS: usize = 8192;

/// The current tick of a millisecond clock.
pub fn tick_of_ms(now_ms: u64) -> u32 {
    (now_ms / TICK_MS) as u32
}

/// `a` is strictly before `b`, modulo 2^32.
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The wheel links of one node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    pub prev: u32,
    pub next: u32,
    /// Tick at which the node is examined; meaningful while linked.
    pub at: u32,
}

/// Marks a node that is in no list.
pub const UNLINKED: u32 = u32::MAX;

impl Link {
    pub const fn unlinked() -> Link {
        Link {
            prev: UNLINKED,
            next: UNLINKED,
            at: 0,
        }
    }
    pub const fn is_linked(&self) -> bool {
        self.next != UNLINKED
    }
}

/// Access to the wheel links stored in each slab entry. Separate fields
/// rather than one [`Link`], so an entry can keep `at` (read on every
/// re-arm) on its hot cache line and `prev`/`next` on a cold one.
pub trait HasLink {
    fn prev(&self) -> u32;
    fn next(&self) -> u32;
    fn at(&self) -> u32;
    fn set_prev(&mut self, v: u32);
    fn set_next(&mut self, v: u32);
    fn set_at(&mut self, v: u32);
    fn is_linked(&self) -> bool {
        self.next() != UNLINKED
    }
}

/// Words of the bitmap of slots that may hold entries.
const MARK_WORDS: usize = SLOTS / 64;

/// The wheel: sentinel nodes and the cursor. Entries are passed in.
#[derive(Debug)]
pub struct Wheel {
    cap: u32,
    heads: Vec<Link>,
    /// Next tick whose slot has not been spliced into the pending list.
    cur: u32,
    /// Bit `s` is set whenever slot `s` holds an entry (it may also be set
    /// for an empty slot whose entries were unlinked since).
    marks: Box<[u64; MARK_WORDS]>,
}

impl Wheel {
    /// A wheel for a slab of `cap` entries whose clock now reads `now_tick`.
    pub fn new(cap: u32, now_tick: u32) -> Wheel {
        let heads = (0..=SLOTS as u32)
            .map(|i| Link {
                prev: cap + i,
                next: cap + i,
                at: 0,
            })
            .collect();
        Wheel {
            cap,
            heads,
            cur: now_tick,
            marks: Box::new([0; MARK_WORDS]),
        }
    }

    /// Bytes held by the wheel itself (not counting entry links).
    pub fn memory_bytes(&self) -> usize {
        self.heads.len() * std::mem::size_of::<Link>() + std::mem::size_of::<[u64; MARK_WORDS]>()
    }

    fn pending(&self) -> u32 {
        self.cap + SLOTS as u32
    }

    fn prev_of<E: HasLink>(&self, ents: &[E], i: u32) -> u32 {
        if i < self.cap {
            ents[i as usize].prev()
        } else {
            self.heads[(i - self.cap) as usize].prev
        }
    }

    fn next_of<E: HasLink>(&self, ents: &[E], i: u32) -> u32 {
        if i < self.cap {
            ents[i as usize].next()
        } else {
            self.heads[(i - self.cap) as usize].next
        }
    }

    fn set_prev<E: HasLink>(&mut self, ents: &mut [E], i: u32, v: u32) {
        if i < self.cap {
            ents[i as usize].set_prev(v)
        } else {
            self.heads[(i - self.cap) as usize].prev = v
        }
    }

    fn set_next<E: HasLink>(&mut self, ents: &mut [E], i: u32, v: u32) {
        if i < self.cap {
            ents[i as usize].set_next(v)
        } else {
            self.heads[(i - self.cap) as usize].next = v
        }
    }

    /// Links entry `i` last before `head`, a sentinel (a slot's or the
    /// pending list's, [`Wheel::schedule`]'s only): the sentinel's links
    /// are read and written as such, without `prev_of`'s test.
    fn push_tail<E: HasLink>(&mut self, ents: &mut [E], head: u32, i: u32) {
        debug_assert!(head >= self.cap);
        let h = (head - self.cap) as usize;
        let tail = self.heads[h].prev;
        ents[i as usize].set_prev(tail);
        ents[i as usize].set_next(head);
        self.set_next(ents, tail, i);
        self.heads[h].prev = i;
    }

    /// Links entry `i` (currently unlinked) to be examined at tick `at`.
    /// A time already in the past goes on the pending list, handed out by
    /// the next [`Wheel::pop_due`].
    pub fn schedule<E: HasLink>(&mut self, ents: &mut [E], i: u32, at: u32) {
        let head = if before(at, self.cur) {
            self.pending()
        } else {
            let s = at as usize & (SLOTS - 1);
            self.marks[s / 64] |= 1 << (s % 64);
            self.cap + s as u32
        };
        self.push_tail(ents, head, i);
        ents[i as usize].set_at(at);
    }

    /// Unlinks entry `i` if it is linked.
    pub fn unlink<E: HasLink>(&mut self, ents: &mut [E], i: u32) {
        let (prev, next) = (ents[i as usize].prev(), ents[i as usize].next());
        if next == UNLINKED {
            return;
        }
        self.set_next(ents, prev, next);
        self.set_prev(ents, next, prev);
        ents[i as usize].set_prev(UNLINKED);
        ents[i as usize].set_next(UNLINKED);
    }

    /// Moves entry `i` to be examined at `at` (O(1)).
    pub fn reschedule<E: HasLink>(&mut self, ents: &mut [E], i: u32, at: u32) {
        self.unlink(ents, i);
        self.schedule(ents, i, at);
    }

    /// Unlinks and returns the next entry whose examination tick has come,
    /// advancing the cursor up to `now_tick`; `None` when nothing is due.
    /// The caller checks the entry's real expiry and schedules it again if
    /// it is not due yet. Hands out what visiting every tick from the
    /// cursor to `now_tick` would, in the same order, but visits only the
    /// marked slots.
    pub fn pop_due<E: HasLink>(&mut self, ents: &mut [E], now_tick: u32) -> Option<u32> {
        loop {
            if let Some(i) = self.pop_pending(ents) {
                return Some(i);
            }
            if !self.catch_up(now_tick) {
                return None;
            }
            match self.next_marked(now_tick) {
                Some(t) => {
                    self.cur = t;
                    self.splice_cur(ents);
                }
                None => {
                    // Every slot up to `now_tick` is empty: visiting them
                    // would only have moved the cursor.
                    self.cur = now_tick.wrapping_add(1);
                    return None;
                }
            }
        }
    }

    /// Unlinks and returns the first entry of the pending list.
    fn pop_pending<E: HasLink>(&mut self, ents: &mut [E]) -> Option<u32> {
        let first = self.heads[SLOTS].next;
        if first == self.pending() {
            return None;
        }
        self.unlink(ents, first);
        Some(first)
    }

    /// False when the cursor is past `now_tick` (nothing more is due).
    /// More than a round behind (the clock jumped, or expire was not called
    /// for a while), visiting the last SLOTS ticks visits every slot once,
    /// which examines every entry, so the cursor skips the rest.
    fn catch_up(&mut self, now_tick: u32) -> bool {
        if before(now_tick, self.cur) {
            return false;
        }
        if now_tick.wrapping_sub(self.cur) >= SLOTS as u32 {
            self.cur = now_tick.wrapping_sub(SLOTS as u32 - 1);
        }
        true
    }

    /// The first tick from the cursor to `now_tick` (less than a round
    /// apart) whose slot is marked.
    fn next_marked(&self, now_tick: u32) -> Option<u32> {
        let mut t = self.cur;
        loop {
            let s = t as usize & (SLOTS - 1);
            let bits = self.marks[s / 64] >> (s % 64);
            if bits != 0 {
                let hit = t.wrapping_add(bits.trailing_zeros());
                return (!before(now_tick, hit)).then_some(hit);
            }
            t = t.wrapping_add(64 - (s % 64) as u32);
            if before(now_tick, t) {
                return None;
            }
        }
    }

    /// Splices the cursor's slot onto the (empty) pending list, clears its
    /// mark and moves the cursor to the next tick.
    fn splice_cur<E: HasLink>(&mut self, ents: &mut [E]) {
        let p = self.pending();
        let s = self.cur as usize & (SLOTS - 1);
        self.marks[s / 64] &= !(1 << (s % 64));
        let slot = self.cap + s as u32;
        let (last, first) = (self.prev_of(ents, slot), self.next_of(ents, slot));
        if first != slot {
            self.set_prev(ents, first, p);
            self.set_next(ents, last, p);
            self.heads[SLOTS].next = first;
            self.heads[SLOTS].prev = last;
            self.set_next(ents, slot, slot);
            self.set_prev(ents, slot, slot);
        }
        self.cur = self.cur.wrapping_add(1);
    }

    /// What [`Wheel::pop_due`] did before the marks: visits every tick.
    /// The reference its property test compares it with.
    #[cfg(test)]
    fn pop_due_tick_by_tick<E: HasLink>(&mut self, ents: &mut [E], now_tick: u32) -> Option<u32> {
        loop {
            if let Some(i) = self.pop_pending(ents) {
                return Some(i);
            }
            if !self.catch_up(now_tick) {
                return None;
            }
            self.splice_cur(ents);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Default, Clone)]
    struct E(Link);
    impl HasLink for E {
        fn prev(&self) -> u32 {
            self.0.prev
        }
        fn next(&self) -> u32 {
            self.0.next
        }
        fn at(&self) -> u32 {
            self.0.at
        }
        fn set_prev(&mut self, v: u32) {
            self.0.prev = v
        }
        fn set_next(&mut self, v: u32) {
            self.0.next = v
        }
        fn set_at(&mut self, v: u32) {
            self.0.at = v
        }
    }

    fn ents(n: usize) -> Vec<E> {
        vec![E(Link::unlinked()); n]
    }

    fn drain(w: &mut Wheel, e: &mut [E], now: u32) -> Vec<u32> {
        std::iter::from_fn(|| w.pop_due(e, now)).collect()
    }

    #[test]
    fn entries_come_out_when_due_and_not_before() {
        let mut e = ents(4);
        let mut w = Wheel::new(4, 1000);
        w.schedule(&mut e, 0, 1005);
        w.schedule(&mut e, 1, 1002);
        w.schedule(&mut e, 2, 1000 + SLOTS as u32 + 2); // same slot, next round
        assert!(drain(&mut w, &mut e, 1001).is_empty());
        // Both slot-1002 entries come out: the wheel hands out by slot; the
        // caller sees entry 2 is not due and links it again.
        assert_eq!(drain(&mut w, &mut e, 1002), [1, 2]);
        w.schedule(&mut e, 2, 1000 + SLOTS as u32 + 2);
        assert_eq!(drain(&mut w, &mut e, 1010), [0]);
        assert_eq!(drain(&mut w, &mut e, 1000 + SLOTS as u32 + 2), [2]);
    }

    #[test]
    fn unlink_and_reschedule_earlier() {
        let mut e = ents(3);
        let mut w = Wheel::new(3, 0);
        w.schedule(&mut e, 0, 500);
        w.schedule(&mut e, 1, 500);
        w.reschedule(&mut e, 1, 20);
        w.unlink(&mut e, 0);
        assert_eq!(drain(&mut w, &mut e, 1000), [1]);
        assert!(!e[0].is_linked());
    }

    #[test]
    fn past_time_goes_to_pending_and_popping_can_stop_midway() {
        let mut e = ents(3);
        let mut w = Wheel::new(3, 100);
        for i in 0..3 {
            w.schedule(&mut e, i, 105);
        }
        assert_eq!(w.pop_due(&mut e, 110), Some(0));
        // Stop here; something scheduled in the past comes out next call.
        w.reschedule(&mut e, 0, 50);
        assert_eq!(drain(&mut w, &mut e, 110), [1, 2, 0]);
    }

    #[test]
    fn a_long_clock_jump_visits_each_slot_once() {
        let mut e = ents(3);
        let mut w = Wheel::new(3, 0);
        w.schedule(&mut e, 0, 5);
        w.schedule(&mut e, 1, 5 + 3 * SLOTS as u32);
        w.schedule(&mut e, 2, 7);
        let now = 10 * SLOTS as u32 + 3;
        assert_eq!(drain(&mut w, &mut e, now), [0, 1, 2]);
        // The cursor is at now + 1: a later schedule at now + 1 is due next.
        w.schedule(&mut e, 0, now + 1);
        assert!(drain(&mut w, &mut e, now).is_empty());
        assert_eq!(drain(&mut w, &mut e, now + 1), [0]);
    }

    /// One step of the property test below, applied to both wheels.
    #[derive(Debug, Clone)]
    enum Op {
        /// Entry `i` (if unlinked) to be examined `dt` ticks from the
        /// cursor (negative: in the past, onto the pending list).
        Schedule(u32, i32),
        Unlink(u32),
        /// Entry `i` (linked or not) moved to `dt` ticks from the cursor.
        Reschedule(u32, i32),
        /// The clock moves `dt` ticks; then up to `max` entries are popped,
        /// each popped entry `k` rescheduled `again[k]` ticks later if
        /// that is `Some` (what the table does with entries not yet due).
        Pop {
            dt: u32,
            max: usize,
            again: Vec<Option<u32>>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let dt = prop_oneof![-20i32..40, -(SLOTS as i32)..3 * SLOTS as i32];
        prop_oneof![
            3 => (0u32..16, dt.clone()).prop_map(|(i, d)| Op::Schedule(i, d)),
            1 => (0u32..16).prop_map(Op::Unlink),
            1 => (0u32..16, dt).prop_map(|(i, d)| Op::Reschedule(i, d)),
            3 => (
                prop_oneof![0u32..12, 0u32..3 * SLOTS as u32],
                0usize..20,
                proptest::collection::vec(proptest::option::of(0u32..2 * SLOTS as u32), 20),
            )
                .prop_map(|(dt, max, again)| Op::Pop { dt, max, again }),
        ]
    }

    proptest! {
        /// The marks change only how much work a pop costs: the same
        /// schedules, unlinks and pops hand out the same entries in the
        /// same order, and leave the cursor where, as the walk of every
        /// tick did.
        #[test]
        fn popping_by_marks_hands_out_what_the_tick_walk_did(
            start in prop_oneof![0u32..100, (u32::MAX - 3 * SLOTS as u32)..u32::MAX],
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let (mut ea, mut eb) = (ents(16), ents(16));
            let (mut wa, mut wb) = (Wheel::new(16, start), Wheel::new(16, start));
            let mut now = start;
            for op in ops {
                match op {
                    Op::Schedule(i, d) => {
                        if !ea[i as usize].is_linked() {
                            let at = wa.cur.wrapping_add_signed(d);
                            wa.schedule(&mut ea, i, at);
                            wb.schedule(&mut eb, i, at);
                        }
                    }
                    Op::Unlink(i) => {
                        wa.unlink(&mut ea, i);
                        wb.unlink(&mut eb, i);
                    }
                    Op::Reschedule(i, d) => {
                        let at = wa.cur.wrapping_add_signed(d);
                        wa.reschedule(&mut ea, i, at);
                        wb.reschedule(&mut eb, i, at);
                    }
                    Op::Pop { dt, max, again } => {
                        now = now.wrapping_add(dt);
                        for again in again.iter().take(max) {
                            let a = wa.pop_due(&mut ea, now);
                            let b = wb.pop_due_tick_by_tick(&mut eb, now);
                            prop_assert_eq!(a, b);
                            prop_assert_eq!(wa.cur, wb.cur);
                            let Some(i) = a else { break };
                            if let Some(later) = *again {
                                wa.schedule(&mut ea, i, now.wrapping_add(later));
                                wb.schedule(&mut eb, i, now.wrapping_add(later));
                            }
                        }
                    }
                }
            }
            // Whatever is left comes out the same way, a round later.
            let end = now.wrapping_add(3 * SLOTS as u32);
            prop_assert_eq!(drain(&mut wa, &mut ea, end), {
                std::iter::from_fn(|| wb.pop_due_tick_by_tick(&mut eb, end)).collect::<Vec<_>>()
            });
            prop_assert_eq!(wa.cur, wb.cur);
        }
    }

    #[test]
    fn an_empty_wheel_moves_its_cursor_past_now() {
        let mut e = ents(1);
        let mut w = Wheel::new(1, 7);
        assert_eq!(w.pop_due(&mut e, 7 + 500), None);
        assert_eq!(w.cur, 7 + 501);
        w.schedule(&mut e, 0, 7 + 600);
        w.unlink(&mut e, 0);
        // A mark left on an emptied slot is cleared when the walk meets it.
        assert_eq!(w.pop_due(&mut e, 7 + 700), None);
        assert_eq!(w.marks.iter().map(|m| m.count_ones()).sum::<u32>(), 0);
    }

    #[test]
    fn wrapping_ticks() {
        let mut e = ents(1);
        let start = u32::MAX - 5;
        let mut w = Wheel::new(1, start);
        w.schedule(&mut e, 0, start.wrapping_add(10));
        assert!(drain(&mut w, &mut e, start.wrapping_add(9)).is_empty());
        assert_eq!(drain(&mut w, &mut e, start.wrapping_add(10)), [0]);
    }
}
