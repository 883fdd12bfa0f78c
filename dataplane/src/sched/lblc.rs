//! lblc: locality-based least connection (ipvs.md 3.9).
//!
//! A cache maps the packet's destination address to one server. A hit is
//! used while that server is in the service, has weight > 0 and is not
//! "overloaded" in lblc's sense (more active connections than its weight
//! while some server is below half its weight); otherwise wlc picks and the
//! entry is replaced. The threshold OVERLOAD flag is not checked for a
//! cached server, only by the wlc fallback. For an ordinary VIP service the
//! key is always the VIP, so lblc is a sticky wlc; it is meant for fwmark
//! cache clusters.

use std::sync::Arc;

use super::loctab::{DestRef, LocTable, CAP};
use super::sharedloc::{fingerprint, FingerprintIndex, SharedLocality};
use super::{lblc_overloaded, weight, wlc_pick, Overhead, SchedInput, Scheduler};
use crate::model::Dest;

pub(crate) struct Lblc {
    ov: Overhead,
    expiration_ms: u64,
    table: LocTable<DestRef>,
    /// Bumped by every `update` (see [`DestRef`]).
    gen: u32,
    /// With several workers: the service's director-wide table, used
    /// instead of `table`, and this worker's way from its members to
    /// destinations.
    shared: Option<(Arc<SharedLocality>, FingerprintIndex)>,
}

impl Lblc {
    pub(crate) fn new(ov: Overhead, expiration_ms: u64) -> Lblc {
        Lblc {
            ov,
            expiration_ms,
            table: LocTable::new(),
            gen: 0,
            shared: None,
        }
    }

    /// lblc over the director-wide table: the kernel's algorithm, with the
    /// entry's server replaced in place (see [`super::sharedloc`]). When
    /// another worker created or replaced the entry at the same moment, its
    /// choice is taken if usable, so that all workers agree.
    fn schedule_shared(
        &self,
        t: &SharedLocality,
        idx: &FingerprintIndex,
        dests: &[Dest],
        input: &SchedInput<'_>,
    ) -> Option<usize> {
        let usable = |i: usize| weight(&dests[i]) > 0 && !lblc_overloaded(dests, &dests[i]);
        let found = t.get(&input.dst, input.now);
        let cur = found.and_then(|e| t.members(e)).map(|m| m[0]);
        if let Some(i) = cur.and_then(|fp| idx.resolve(fp)) {
            if usable(i) {
                return Some(i);
            }
        }
        let i = wlc_pick(dests, self.ov)?;
        let fp = fingerprint(dests[i].config.addr, dests[i].config.port);
        let entry = match (found, cur) {
            (Some(e), Some(old)) => {
                if old != fp {
                    t.replace(e, old, fp);
                }
                Some(e)
            }
            _ => t.insert(&input.dst, fp, input.now),
        };
        let agreed = entry
            .and_then(|e| t.members(e))
            .and_then(|m| idx.resolve(m[0]));
        Some(agreed.filter(|&j| usable(j)).unwrap_or(i))
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.gen = self.gen.wrapping_add(1);
        if let Some((_, idx)) = &mut self.shared {
            *idx = FingerprintIndex::build(dests);
        }
    }

    fn expire(&mut self, now: u64) {
        match &self.shared {
            Some((t, _)) => t.expire(now, self.expiration_ms),
            None => self.table.expire(now, self.expiration_ms, |_| {}),
        }
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
        let found = self.table.get(&input.dst);
        if let Some(id) = found {
            let e = self.table.entry(id);
            e.lastuse = input.now;
            if let Some(i) = e.val.resolve(dests, self.gen) {
                let d = &dests[i];
                if weight(d) > 0 && !lblc_overloaded(dests, d) {
                    return Some(i);
                }
            }
        }
        let i = wlc_pick(dests, self.ov)?;
        // ip_vs_lblc_new, unless the table is at its cap.
        if self.table.entries < CAP as i64 {
            if let Some(id) = found {
                if self.table.entry(id).val.is(&dests[i]) {
                    return Some(i);
                }
                // Replaced: unhashed without counting down (upstream).
                self.table.unlink(id);
            }
            let r = DestRef::new(dests, i, self.gen);
            let _ = self.table.insert(input.dst, input.now, r);
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    fn to(s: &mut Lblc, d: &[Dest], dst: &str, now: u64) -> Option<usize> {
        pick_full(s, d, "198.18.0.1", 40000, dst, now)
    }

    fn ab() -> Vec<Dest> {
        list(&[("198.18.1.11", 4), ("198.18.1.12", 4)])
    }

    #[test]
    fn sticks_to_the_cached_server() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0)); // wlc: first
        conns(&d[0], 3, 50); // busier, but not over its weight
        assert_eq!(to(&mut s, &d, "198.18.5.1", 1), Some(0)); // cached
        assert_eq!(to(&mut s, &d, "198.18.5.2", 1), Some(1)); // new key: wlc
        assert_eq!(s.table.live(), 2);
    }

    #[test]
    fn overloaded_in_the_lblc_sense_is_repicked() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0));
        // A has 5 active > weight 4, and B has 1*2 < 4: overloaded.
        conns(&d[0], 5, 0);
        conns(&d[1], 1, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 1), Some(1));
        // The entry now names B.
        conns(&d[1], 3, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 2), Some(1));
        // Above its weight but nobody below half: not overloaded, A stays
        // cached for another key.
        let mut t = Lblc::new(Overhead::TotalConns, DAY);
        t.update(&d);
        conns(&d[1], 9, 0);
        assert_eq!(to(&mut t, &d, "198.18.5.9", 0), Some(0));
        conns(&d[1], 1, 0); // 1*2 < 4: now someone is below half
        assert_eq!(to(&mut t, &d, "198.18.5.9", 1), Some(1));
    }

    #[test]
    fn threshold_overload_is_not_checked_on_a_hit() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0));
        set_overload(&d[0], true);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 1), Some(0));
        // But the wlc fallback skips it.
        assert_eq!(to(&mut s, &d, "198.18.5.2", 1), Some(1));
    }

    #[test]
    fn quiesced_or_deleted_cached_server_is_replaced_and_revived() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0));
        let q = vec![edit_weight(&d[0], 0), d[1].clone()];
        s.update(&q);
        assert_eq!(to(&mut s, &q, "198.18.5.1", 1), Some(1));
        // Another key cached on A, then A deleted: B.
        s.update(&d);
        conns(&d[1], 1, 0);
        assert_eq!(to(&mut s, &d, "198.18.5.2", 2), Some(0));
        let only_b = vec![d[1].clone()];
        s.update(&only_b);
        conns(&d[1], 0, 0);
        // While A is gone, keep its entry: no lookup for .2 now.
        // A re-added (same address and port): the entry is valid again.
        let back = vec![dest("198.18.1.11", 80, 4), d[1].clone()];
        s.update(&back);
        conns(&back[1], 0, 0);
        assert_eq!(to(&mut s, &back, "198.18.5.2", 3), Some(0));
    }

    #[test]
    fn entries_expire_after_the_expiration_time() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, 10 * 60_000);
        s.update(&d);
        s.expire(0);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), Some(0));
        // Timer runs every minute; the 30th run (30 min) is the full scan.
        for m in 1..30 {
            s.expire(m * 60_000);
        }
        assert_eq!(s.table.live(), 1);
        s.expire(30 * 60_000);
        assert_eq!(s.table.live(), 0);
    }

    #[test]
    fn lastuse_is_refreshed_by_hits() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, 10 * 60_000);
        s.update(&d);
        s.expire(0);
        to(&mut s, &d, "198.18.5.1", 0);
        for m in 1..30 {
            s.expire(m * 60_000);
        }
        to(&mut s, &d, "198.18.5.1", 25 * 60_000); // used 5 minutes before the scan
        s.expire(30 * 60_000);
        assert_eq!(s.table.live(), 1);
    }

    #[test]
    fn replacing_an_entry_counts_up_as_upstream_does() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        to(&mut s, &d, "198.18.5.1", 0);
        conns(&d[0], 5, 0);
        to(&mut s, &d, "198.18.5.1", 1); // replaced by B
        assert_eq!((s.table.live(), s.table.entries), (1, 2));
    }

    #[test]
    fn a_full_table_serves_without_caching() {
        let d = ab();
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        let key = |i: u32| std::net::Ipv4Addr::from(0xc613_0000 | i).to_string();
        for i in 0..CAP as u32 {
            assert_eq!(to(&mut s, &d, &key(i), 0), Some(0));
        }
        assert_eq!(s.table.live(), CAP);
        // One more address: scheduled by wlc, not cached.
        conns(&d[0], 1, 0);
        assert_eq!(to(&mut s, &d, &key(CAP as u32), 1), Some(1));
        assert_eq!(s.table.live(), CAP);
        assert!(s.table.get(&key(CAP as u32).parse().unwrap()).is_none());
    }

    #[test]
    fn nothing_eligible_fails() {
        let d = list(&[("198.18.1.11", 0)]);
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.1", 0), None);
        assert_eq!(s.table.live(), 0);
    }

    #[test]
    fn two_workers_sharing_the_table_send_one_address_to_one_server() {
        let d = ab();
        let table = Arc::new(SharedLocality::default());
        let mut w: Vec<Lblc> = (0..2)
            .map(|_| {
                let mut s = Lblc::new(Overhead::TotalConns, DAY);
                s.share_locality(Arc::clone(&table));
                s.update(&d);
                s
            })
            .collect();
        assert_eq!(to(&mut w[0], &d, "198.18.5.1", 0), Some(0));
        // Server 0 now busier (not over its weight): a table of worker 1's
        // own would ask wlc, which picks server 1.
        conns(&d[0], 3, 0);
        for n in 1..24 {
            assert_eq!(
                to(&mut w[n % 2], &d, "198.18.5.1", n as u64),
                Some(0),
                "{n}"
            );
        }
        // A new address: wlc, then cached for both.
        assert_eq!(to(&mut w[1], &d, "198.18.5.2", 30), Some(1));
        conns(&d[1], 4, 0);
        assert_eq!(to(&mut w[0], &d, "198.18.5.2", 31), Some(1));
        // Overloaded in lblc's sense: replaced once, for both workers.
        conns(&d[0], 5, 0);
        conns(&d[1], 1, 0);
        assert_eq!(to(&mut w[1], &d, "198.18.5.1", 40), Some(1));
        conns(&d[1], 3, 0);
        assert_eq!(to(&mut w[0], &d, "198.18.5.1", 41), Some(1));
        assert_eq!(table.len(), 2);
        // Garbage collection by either worker empties it for both.
        for m in 0..=30u64 {
            w[(m % 2) as usize].expire(m * 3_600_000);
        }
        assert!(table.is_empty());
    }

    #[test]
    fn a_shared_entry_follows_a_deleted_and_re_added_server() {
        let d = ab();
        let table = Arc::new(SharedLocality::default());
        let mut s = Lblc::new(Overhead::TotalConns, DAY);
        s.share_locality(Arc::clone(&table));
        s.update(&d);
        assert_eq!(to(&mut s, &d, "198.18.5.2", 0), Some(0));
        let only_b = vec![d[1].clone()];
        s.update(&only_b);
        assert_eq!(to(&mut s, &only_b, "198.18.5.2", 1), Some(0), "B, index 0");
        // Replaced by B; re-adding A does not move it back.
        let back = vec![dest("198.18.1.11", 80, 4), d[1].clone()];
        s.update(&back);
        assert_eq!(to(&mut s, &back, "198.18.5.2", 2), Some(1));
    }
}
