//! lblcr: locality-based least connection with replication (ipvs.md 3.10).
//!
//! Like lblc, but a destination address maps to a *set* of servers. The
//! least loaded usable member serves; when it is overloaded in lblc's sense
//! (or none is usable) wlc picks a server from the whole service and it
//! joins the set (at the front). A set that has not changed for
//! `lblcr_expiration` loses its most loaded member, one per lookup.
//!
//! Sets are lists of members in a second slab, reserved up front
//! ([`MEMBER_CAP`] members); when it is exhausted a member is not added,
//! which is what the kernel does when its atomic allocation fails.
//!
//! One difference: a member whose server was deleted from the service
//! still counts in the set's size, but since its counters are no longer
//! visible here it is not a candidate for the "most loaded" member that
//! expiry removes (the kernel still weighs the trashed server).

use std::sync::Arc;

use super::loctab::{DestRef, LocTable, CAP, NIL};
use super::sharedloc::{fingerprint, FingerprintIndex, SharedLocality, MEMBERS};
use super::{lblc_overloaded, overloaded, weight, wlc_pick, Overhead, SchedInput, Scheduler};
use crate::model::Dest;

/// Set members reserved per scheduler: two per possible entry.
pub(crate) const MEMBER_CAP: usize = 2 * CAP;

#[derive(Clone, Copy)]
struct Member {
    dest: DestRef,
    next: u32,
}

/// A destination set: a list of members, newest first.
pub(crate) struct Set {
    head: u32,
    size: i32,
    lastmod: u64,
}

struct Members {
    slab: Vec<Member>,
    free: u32,
}

impl Members {
    fn alloc(&mut self, m: Member) -> Option<u32> {
        if self.free != NIL {
            let id = self.free;
            self.free = self.slab[id as usize].next;
            self.slab[id as usize] = m;
            Some(id)
        } else if self.slab.len() < MEMBER_CAP {
            self.slab.push(m);
            Some((self.slab.len() - 1) as u32)
        } else {
            None
        }
    }

    fn release(&mut self, id: u32) {
        self.slab[id as usize].next = self.free;
        self.free = id;
    }

    /// Free a whole set.
    fn clear(&mut self, set: &mut Set) {
        let mut id = set.head;
        while id != NIL {
            let next = self.slab[id as usize].next;
            self.release(id);
            id = next;
        }
        set.head = NIL;
        set.size = 0;
    }

    /// `ip_vs_dest_set_insert`: add `dests[i]` at the front unless (with
    /// `check`) it is already a member; `lastmod = now` only when added.
    fn insert(&mut self, set: &mut Set, dests: &[Dest], i: usize, gen: u32, now: u64, check: bool) {
        if check {
            let mut id = set.head;
            while id != NIL {
                if self.slab[id as usize].dest.is(&dests[i]) {
                    return;
                }
                id = self.slab[id as usize].next;
            }
        }
        let m = Member {
            dest: DestRef::new(dests, i, gen),
            next: set.head,
        };
        if let Some(id) = self.alloc(m) {
            set.head = id;
            set.size += 1;
            set.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`: the weighted least-connection usable member.
    fn min(&mut self, set: &Set, dests: &[Dest], gen: u32, ov: Overhead) -> Option<usize> {
        let slab = &mut self.slab;
        let mut id = set.head;
        let members = std::iter::from_fn(|| {
            while id != NIL {
                let m = &mut slab[id as usize];
                id = m.next;
                if let Some(i) = m.dest.resolve(dests, gen) {
                    return Some(i);
                }
                // not AVAILABLE
            }
            None
        });
        least_loaded(members, dests, ov)
    }

    /// `ip_vs_dest_set_max`: the most loaded member with weight > 0, as the
    /// slab id of its member.
    fn max(&mut self, set: &Set, dests: &[Dest], gen: u32, ov: Overhead) -> Option<u32> {
        let mut most: Option<(u32, usize, i32)> = None;
        let mut id = set.head;
        while id != NIL {
            let this = id;
            let m = &mut self.slab[id as usize];
            id = m.next;
            let Some(i) = m.dest.resolve(dests, gen) else {
                continue;
            };
            let d = &dests[i];
            if weight(d) <= 0 {
                continue;
            }
            let doh = ov.of(d);
            let replace = match most {
                None => true,
                Some((_, mi, moh)) => {
                    i64::from(moh) * i64::from(weight(d))
                        < i64::from(doh) * i64::from(weight(&dests[mi]))
                }
            };
            if replace {
                most = Some((this, i, doh));
            }
        }
        most.map(|(id, _, _)| id)
    }

    /// `ip_vs_dest_set_erase` of member `victim`.
    fn erase(&mut self, set: &mut Set, victim: u32, now: u64) {
        if set.head == victim {
            set.head = self.slab[victim as usize].next;
        } else {
            let mut id = set.head;
            while id != NIL {
                if self.slab[id as usize].next == victim {
                    self.slab[id as usize].next = self.slab[victim as usize].next;
                    break;
                }
                id = self.slab[id as usize].next;
            }
        }
        self.release(victim);
        set.size -= 1;
        set.lastmod = now;
    }
}

pub(crate) struct Lblcr {
    ov: Overhead,
    expiration_ms: u64,
    table: LocTable<Set>,
    members: Members,
    gen: u32,
    /// With several workers: the service's director-wide table (sets of at
    /// most [`MEMBERS`] servers), used instead of `table` and `members`.
    shared: Option<(Arc<SharedLocality>, FingerprintIndex)>,
}

/// `ip_vs_dest_set_min` over the members of a shared set (list indexes;
/// `None` for members not in the service).
fn shared_min(set: &[Option<usize>; MEMBERS], dests: &[Dest], ov: Overhead) -> Option<usize> {
    least_loaded(set.iter().flatten().copied(), dests, ov)
}

/// The weighted least-connection choice of `ip_vs_dest_set_min` among
/// `members` (list indexes): overloaded members are skipped, the first
/// must have weight > 0.
fn least_loaded(
    members: impl Iterator<Item = usize>,
    dests: &[Dest],
    ov: Overhead,
) -> Option<usize> {
    let mut least: Option<(usize, i32)> = None;
    for i in members {
        let d = &dests[i];
        if overloaded(d) {
            continue;
        }
        match least {
            None => {
                if weight(d) > 0 {
                    least = Some((i, ov.of(d)));
                }
            }
            Some((l, loh)) => {
                let doh = ov.of(d);
                if i64::from(loh) * i64::from(weight(d))
                    > i64::from(doh) * i64::from(weight(&dests[l]))
                {
                    least = Some((i, doh));
                }
            }
        }
    }
    least.map(|(i, _)| i)
}

/// `ip_vs_dest_set_max` over the members of a shared set.
fn shared_max(set: &[Option<usize>; MEMBERS], dests: &[Dest], ov: Overhead) -> Option<usize> {
    let mut most: Option<(usize, i32)> = None;
    for &i in set.iter().flatten() {
        let d = &dests[i];
        if weight(d) <= 0 {
            continue;
        }
        let doh = ov.of(d);
        let replace = match most {
            None => true,
            Some((m, moh)) => {
                i64::from(moh) * i64::from(weight(d))
                    < i64::from(doh) * i64::from(weight(&dests[m]))
            }
        };
        if replace {
            most = Some((i, doh));
        }
    }
    most.map(|(i, _)| i)
}

impl Lblcr {
    pub(crate) fn new(ov: Overhead, expiration_ms: u64) -> Lblcr {
        Lblcr {
            ov,
            expiration_ms,
            table: LocTable::new(),
            members: Members {
                slab: Vec::with_capacity(MEMBER_CAP),
                free: NIL,
            },
            gen: 0,
            shared: None,
        }
    }

    /// lblcr over the director-wide table: the kernel's algorithm on sets
    /// of at most [`MEMBERS`] servers.
    fn schedule_shared(
        &self,
        t: &SharedLocality,
        idx: &FingerprintIndex,
        dests: &[Dest],
        input: &SchedInput<'_>,
    ) -> Option<usize> {
        let (ov, now) = (self.ov, input.now);
        let fp = |i: usize| fingerprint(dests[i].config.addr, dests[i].config.port);
        let found = t
            .get(&input.dst, now)
            .and_then(|e| Some((e, t.members(e)?)));
        if let Some((e, members)) = found {
            let set = members.map(|m| idx.resolve(m));
            let dest = shared_min(&set, dests, ov);
            let size = members.iter().filter(|&&m| m != 0).count();
            if size > 1 && now > t.lastmod(e).saturating_add(self.expiration_ms) {
                if let Some(m) = shared_max(&set, dests, ov) {
                    t.remove_member(e, fp(m), now);
                }
            }
            if let Some(i) = dest {
                if !lblc_overloaded(dests, &dests[i]) {
                    return Some(i);
                }
            }
            let i = wlc_pick(dests, ov)?;
            t.add_member(e, fp(i), now);
            return Some(i);
        }
        let i = wlc_pick(dests, ov)?;
        // Another worker may have created the set at the same moment: its
        // first member then serves, if usable.
        let first = t
            .insert(&input.dst, fp(i), now)
            .and_then(|e| t.members(e))
            .and_then(|m| idx.resolve(m[0]));
        Some(first.filter(|&j| weight(&dests[j]) > 0).unwrap_or(i))
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.gen = self.gen.wrapping_add(1);
        if let Some((_, idx)) = &mut self.shared {
            *idx = FingerprintIndex::build(dests);
        }
    }

    fn expire(&mut self, now: u64) {
        if let Some((t, _)) = &self.shared {
            t.expire(now, self.expiration_ms);
            return;
        }
        let members = &mut self.members;
        self.table
            .expire(now, self.expiration_ms, |set| members.clear(set));
    }

    fn uses_locality(&self) -> bool {
        true
    }

    fn share_locality(&mut self, table: Arc<SharedLocality>) {
        self.shared = Some((table, FingerprintIndex::default()));
    }

    fn schedule(&mut self, dests: &[Dest], input: &mut SchedInput<'_>) -> Option<usize> {
        if let Some((t, idx)) = &self.shared {
            return self.schedule_shared(t, idx, dests, input);
        }
        let (gen, ov, now) = (self.gen, self.ov, input.now);
        if let Some(id) = self.table.get(&input.dst) {
            let e = self.table.entry(id);
            e.lastuse = now;
            let set = &mut e.val;
            let dest = self.members.min(set, dests, gen, ov);
            // time_after(now, lastmod + expiration)
            if set.size > 1 && now > set.lastmod.saturating_add(self.expiration_ms) {
                if let Some(m) = self.members.max(set, dests, gen, ov) {
                    self.members.erase(set, m, now);
                }
            }
            if let Some(i) = dest {
                if !lblc_overloaded(dests, &dests[i]) {
                    return Some(i);
                }
            }
            let i = wlc_pick(dests, ov)?;
            self.members.insert(set, dests, i, gen, now, true);
            return Some(i);
        }
        let i = wlc_pick(dests, ov)?;
        if self.table.entries < CAP as i64 {
            let empty = Set {
                head: NIL,
                size: 0,
                lastmod: now,
            };
            if let Some(id) = self.table.insert(input.dst, now, empty) {
                let set = &mut self.table.entry(id).val;
                self.members.insert(set, dests, i, gen, now, false);
            }
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const HOUR: u64 = 3600 * 1000;

    fn to(s: &mut Lblcr, d: &[Dest], dst: &str, now: u64) -> Option<usize> {
        pick_full(s, d, "198.18.0.1", 40000, dst, now)
    }

    /// The set of `dst` as list indices, in set order.
    fn set_of(s: &mut Lblcr, d: &[Dest], dst: &str) -> Vec<Option<usize>> {
        let id = s.table.get(&dst.parse().unwrap()).unwrap();
        let mut out = Vec::new();
        let mut m = s.table.entry(id).val.head;
        while m != NIL {
            let mem = &mut s.members.slab[m as usize];
            out.push(mem.dest.resolve(d, s.gen));
            m = mem.next;
        }
        out
    }

    fn abc() -> Vec<Dest> {
        list(&[("198.18.1.11", 2), ("198.18.1.12", 2), ("198.18.1.13", 2)])
    }

    #[test]
    fn set_grows_when_its_member_is_overloaded() {
        let d = abc();
        let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0));
        assert_eq!(set_of(&mut s, &d, "198.18.5.1"), [Some(0)]);
        // A: 3 active > 2, and C is idle (0 < 2): overloaded. wlc over the
        // service: B (idle, earlier than C). B joins at the front.
        conns(&d[0], 3, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 10), Some(1));
        assert_eq!(set_of(&mut s, &d, "198.18.5.1"), [Some(1), Some(0)]);
        // Now the set's least loaded member (B) serves.
        assert_eq!(to(&mut s, &d, "198.18.5.1", 20), Some(1));
        // B overloaded too: C joins.
        conns(&d[1], 3, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 30), Some(2));
        assert_eq!(
            set_of(&mut s, &d, "198.18.5.1"),
            [Some(2), Some(1), Some(0)]
        );
        assert_eq!(
            s.table
                .entry(s.table.get(&"198.18.5.1".parse().unwrap()).unwrap())
                .val
                .lastmod,
            30
        );
    }

    #[test]
    fn a_member_already_in_the_set_is_not_added_twice() {
        let d = abc();
        let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
        s.update(&d);
        to(&mut s, &d, "198.18.5.1", 0); // {A}
                                         // A overloaded in the lblc sense but still wlc's choice (B and C
                                         // are threshold-overloaded): A is already a member.
        conns(&d[0], 3, 0);
        set_overload(&d[1], true);
        set_overload(&d[2], true);
        conns(&d[2], 0, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 5), Some(0));
        assert_eq!(set_of(&mut s, &d, "198.18.5.1"), [Some(0)]);
        let id = s.table.get(&"198.18.5.1".parse().unwrap()).unwrap();
        assert_eq!(s.table.entry(id).val.lastmod, 0);
    }

    #[test]
    fn unchanged_set_loses_its_most_loaded_member_after_expiration() {
        let d = abc();
        let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
        s.update(&d);
        to(&mut s, &d, "198.18.5.1", 0);
        conns(&d[0], 3, 0);
        to(&mut s, &d, "198.18.5.1", 1000); // {B, A}, lastmod 1 s
        conns(&d[0], 1, 0);
        // Not yet: now must be strictly after lastmod + expiration.
        to(&mut s, &d, "198.18.5.1", 1000 + HOUR);
        assert_eq!(set_of(&mut s, &d, "198.18.5.1").len(), 2);
        // A (1 active) is the most loaded: removed, lastmod = now.
        to(&mut s, &d, "198.18.5.1", 1001 + HOUR);
        assert_eq!(set_of(&mut s, &d, "198.18.5.1"), [Some(1)]);
        let id = s.table.get(&"198.18.5.1".parse().unwrap()).unwrap();
        assert_eq!(s.table.entry(id).val.lastmod, 1001 + HOUR);
        // A single member is never removed.
        to(&mut s, &d, "198.18.5.1", 10 * HOUR);
        assert_eq!(set_of(&mut s, &d, "198.18.5.1"), [Some(1)]);
    }

    #[test]
    fn idle_entries_are_collected_and_their_members_freed() {
        let d = abc();
        let mut s = Lblcr::new(Overhead::TotalConns, 10 * 60_000);
        s.update(&d);
        s.expire(0);
        to(&mut s, &d, "198.18.5.1", 0);
        conns(&d[0], 3, 0);
        to(&mut s, &d, "198.18.5.1", 0);
        assert_eq!(s.members.slab.len(), 2);
        for m in 1..=30 {
            s.expire(m * 60_000);
        }
        assert_eq!(s.table.live(), 0);
        // Both members are back on the free list and get reused.
        conns(&d[0], 0, 0);
        to(&mut s, &d, "198.18.5.2", 31 * 60_000);
        assert_eq!(s.members.slab.len(), 2);
    }

    #[test]
    fn deleted_member_is_skipped_and_counts_in_the_size() {
        let d = abc();
        let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
        s.update(&d);
        to(&mut s, &d, "198.18.5.1", 0); // {A}
        let bc = vec![d[1].clone(), d[2].clone()];
        s.update(&bc);
        // A is gone: no usable member; wlc over B, C picks B, which joins.
        assert_eq!(to(&mut s, &bc, "198.18.5.1", 1), Some(0));
        assert_eq!(set_of(&mut s, &bc, "198.18.5.1"), [Some(0), None]);
    }

    #[test]
    fn nothing_eligible_fails_without_an_entry() {
        let d = list(&[("198.18.1.11", 0)]);
        let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), None);
        assert_eq!(s.table.live(), 0);
    }

    #[test]
    fn two_workers_sharing_the_table_share_one_set() {
        let d = list(&[("198.18.1.11", 4), ("198.18.1.12", 4), ("198.18.1.13", 4)]);
        let table = Arc::new(SharedLocality::default());
        let mut w: Vec<Lblcr> = (0..2)
            .map(|_| {
                let mut s = Lblcr::new(Overhead::TotalConns, HOUR);
                s.share_locality(Arc::clone(&table));
                s.update(&d);
                s
            })
            .collect();
        assert_eq!(to(&mut w[0], &d, "198.18.5.1", 0), Some(0));
        conns(&d[0], 3, 0);
        for n in 1..24 {
            assert_eq!(
                to(&mut w[n % 2], &d, "198.18.5.1", n as u64),
                Some(0),
                "{n}"
            );
        }
        // Overloaded: wlc adds server 1 to the set, seen by both workers.
        conns(&d[0], 5, 0);
        assert_eq!(to(&mut w[1], &d, "198.18.5.1", 30), Some(1));
        conns(&d[1], 2, 0);
        conns(&d[2], 2, 0);
        assert_eq!(
            to(&mut w[0], &d, "198.18.5.1", 31),
            Some(1),
            "set member, not wlc's 2"
        );
        // After the expiration time without change, the most loaded member
        // leaves the set (one per lookup), again for both.
        conns(&d[0], 3, 0);
        assert_eq!(to(&mut w[1], &d, "198.18.5.1", 31 + HOUR + 1), Some(1));
        conns(&d[1], 4, 0);
        assert_eq!(to(&mut w[0], &d, "198.18.5.1", 31 + HOUR + 2), Some(1));
        assert_eq!(table.len(), 1);
    }
}
