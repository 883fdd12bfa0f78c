//! The per-connection verdicts decide exactly as the plain engine does for
//! packets of established connections: same verdicts, marks and counters,
//! across rule changes, slot reuse and a change of receiving port.

use proptest::prelude::*;

use super::cache_tests::{arb_rule_ext, counters, drop_all, packet, tables, KeyFacts, TestNames};
use super::tables::RuleTables;
use super::tests::tcp;
use super::*;
use crate::conn::Dir;
use crate::model::Family;
use crate::sets::{Dirs, Match as SetMatch, SetId};

/// A packet of a connection in the table: ESTABLISHED, the rest as
/// [`KeyFacts`].
struct Established(KeyFacts);

impl Facts for Established {
    fn ct_state(&self) -> u8 {
        ctstate::ESTABLISHED
    }
    fn dst_local(&self) -> bool {
        self.0.dst_local()
    }
    fn set_match(&self, set: SetId, dirs: Dirs) -> SetMatch {
        self.0.set_match(set, dirs)
    }
}

/// A rule of [`arb_rule_ext`] with, sometimes, a `--ctstate` test.
fn arb_rule_ct(chains: usize) -> impl Strategy<Value = Rule> {
    (
        arb_rule_ext(chains),
        prop::option::of((any::<bool>(), 1u8..16)),
    )
        .prop_map(|(mut r, ct)| {
            if let Some((neg, states)) = ct {
                r.matches.push(Match::Conntrack { neg, states });
            }
            r
        })
}

/// Through [`ConnVerdicts`], as the load-balancing stage does.
#[allow(clippy::too_many_arguments)]
fn through(
    kept: &mut ConnVerdicts,
    p: &Program,
    slot: u32,
    serial: u32,
    dir: Dir,
    pkt: &Packet,
    f: &Established,
    replays: &mut Replays,
) -> (Verdict, u32) {
    if let Some(hit) = kept.hit(p, slot, serial, dir, pkt.in_port, pkt.len, replays) {
        return hit;
    }
    kept.miss(p, slot, serial, dir, pkt, f, || f.dst_local(), 0)
}

proptest! {
    /// Packets of a few connections (each flow is one direction of a
    /// connection slot; slots are sometimes reused by another flow, which
    /// gets a new serial), repeated, through the kept answers and through
    /// the plain engine (each with its own copy of the same tables): the
    /// same verdict and mark for every packet and the same counters at
    /// the end; then one more rule, and again.
    #[test]
    fn kept_verdicts_and_counters_are_the_engines(
        pre in prop::collection::vec(arb_rule_ct(0), 0..4),
        input in prop::collection::vec(arb_rule_ct(2), 0..(2 * engine::INDEX_MIN)),
        fwd in prop::collection::vec(arb_rule_ct(1), 0..4),
        c0 in prop::collection::vec(arb_rule_ct(0), 0..4),
        c1 in prop::collection::vec(arb_rule_ct(1), 0..3),
        extra in arb_rule_ct(0),
        flows in prop::collection::vec(
            (0u8..4, 0u8..3, 1u16..8, prop::sample::select(vec![0u16, 1, 2, u16::MAX]), 0u32..100),
            1..6,
        ),
        order in prop::collection::vec((any::<prop::sample::Index>(), 0u32..3, any::<bool>(), any::<bool>(), any::<bool>()), 1..40),
        first_serial in prop::sample::select(vec![0u32, 1, u32::MAX - 2]),
    ) {
        let plain = tables(&pre, &input, &fwd, &c0, &c1);
        let cached = tables(&pre, &input, &fwd, &c0, &c1);
        let sets = crate::sets::SetTable::default();
        let mut kept = ConnVerdicts::default();
        // Which flow each (slot, direction) holds now, and each slot's
        // serial (as the connection table numbers its occupants).
        let mut held: Vec<Option<usize>> = vec![None; 6];
        // Serials may wrap: an answer is told apart by serial and epoch.
        let mut serials = [first_serial; 3];
        let mut run_all = |plain: &RuleTables, cached: &RuleTables, kept: &mut ConnVerdicts| {
            let p = Program::compile(&plain.v4, &plain.v6, &TestNames);
            let q = Program::compile(&cached.v4, &cached.v6, &TestNames);
            kept.reset(&q, &sets, 3);
            prop_assert_eq!(kept.is_on(), !q.is_empty());
            // Replayed counters are summed and moved at "burst" ends.
            let mut replays = Replays::new(0);
            for (i, slot, out, reuse, end_burst) in &order {
                let dir = if *out { Dir::Out } else { Dir::In };
                let at = *slot as usize * 2 + usize::from(*out);
                let flow = i.index(flows.len());
                // A slot holds one connection: a new flow there, or a
                // reuse, is a new occupant (both directions).
                let s = *slot as usize;
                if *reuse || held[at].is_some_and(|f| f != flow) {
                    serials[s] = serials[s].wrapping_add(1);
                    held[s * 2] = None;
                    held[s * 2 + 1] = None;
                }
                held[at] = Some(flow);
                let serial = serials[s];
                let pkt = packet(flows[flow]);
                let f = Established(KeyFacts(pkt));
                let want = p.run(&pkt, &f, || f.dst_local(), 0);
                let got = through(kept, &q, *slot, serial, dir, &pkt, &f, &mut replays);
                prop_assert_eq!(got, want, "{:?}", pkt);
                if *end_burst {
                    replays.flush(&q);
                    prop_assert_eq!(counters(cached), counters(plain));
                }
            }
            replays.flush(&q);
            prop_assert_eq!(counters(cached), counters(plain));
            Ok(())
        };
        run_all(&plain, &cached, &mut kept)?;
        let (mut plain, mut cached) = (plain, cached);
        for t in [&mut plain, &mut cached] {
            let op = RuleOp::Insert { chain: "INPUT".into(), num: 1, rule: extra.clone(), counters: None };
            t.apply(Family::V4, Table::Filter, &op).unwrap();
        }
        run_all(&plain, &cached, &mut kept)?;
    }
}

/// ACCEPT for ESTABLISHED, then DROP everything: the common stateful
/// firewall. Kept per connection (not in the flow cache).
fn stateful() -> (RuleTables, Program) {
    let mut t = drop_all();
    let rule = Rule {
        matches: vec![Match::Conntrack {
            neg: false,
            states: ctstate::ESTABLISHED,
        }],
        target: Target::Accept,
        ..Rule::default()
    };
    let op = RuleOp::Insert {
        chain: "INPUT".into(),
        num: 1,
        rule,
        counters: None,
    };
    t.apply(Family::V4, Table::Filter, &op).unwrap();
    let p = Program::compile(&t.v4, &t.v6, &NoNames);
    (t, p)
}

#[test]
fn conntrack_rules_are_kept_per_connection() {
    let (t, p) = stateful();
    let sets = crate::sets::SetTable::default();
    let mut flows = FlowCache::default();
    flows.reset(&p, &sets);
    assert!(!flows.is_on(), "--ctstate differs between a flow's packets");
    let mut kept = ConnVerdicts::default();
    kept.reset(&p, &sets, 4);
    assert!(kept.is_on(), "but not between a connection's packets");
    let mut r = Replays::new(0);
    let pkt = tcp("198.18.0.1", 1000, "198.18.1.2", 80);
    let f = Established(KeyFacts(pkt));
    assert_eq!(
        kept.hit(&p, 1, 7, Dir::In, 0, 60, &mut r),
        None,
        "nothing kept yet"
    );
    assert_eq!(
        through(&mut kept, &p, 1, 7, Dir::In, &pkt, &f, &mut r).0,
        Verdict::Accept
    );
    assert_eq!(
        kept.hit(&p, 1, 7, Dir::In, 0, 60, &mut r),
        Some((Verdict::Accept, 0))
    );
    assert_eq!(
        kept.hit(&p, 1, 7, Dir::Out, 0, 60, &mut r),
        None,
        "per direction"
    );
    assert_eq!(
        kept.hit(&p, 1, 7, Dir::In, 1, 60, &mut r),
        None,
        "per receiving port"
    );
    assert_eq!(
        kept.hit(&p, 1, 8, Dir::In, 0, 60, &mut r),
        None,
        "another connection in the slot"
    );
    // Counted on the ACCEPT rule: the walk and the one hit (once the
    // burst ends).
    let filter = t.v4.table(Table::Filter);
    let input = filter.chains.iter().find(|c| c.name == "INPUT").unwrap();
    assert_eq!(input.rules[0].counted.counters.total(), (1, 60));
    r.flush(&p);
    assert_eq!(input.rules[0].counted.counters.total(), (2, 120));
}

/// A new snapshot forgets what the old rules decided.
#[test]
fn a_new_snapshot_or_a_per_packet_set_forgets() {
    let drop = Program::compile(&drop_all().v4, &RuleTables::default().v6, &NoNames);
    let sets = crate::sets::SetTable::default();
    let mut kept = ConnVerdicts::default();
    kept.reset(&drop, &sets, 4);
    let mut r = Replays::new(0);
    let pkt = tcp("198.18.0.1", 1000, "198.18.1.2", 80);
    let f = Established(KeyFacts(pkt));
    assert_eq!(
        through(&mut kept, &drop, 2, 1, Dir::In, &pkt, &f, &mut r).0,
        Verdict::Drop
    );
    assert!(kept.hit(&drop, 2, 1, Dir::In, 0, 60, &mut r).is_some());
    let (_, accept) = stateful();
    r.flush(&drop);
    kept.reset(&accept, &sets, 4);
    assert_eq!(
        kept.hit(&accept, 2, 1, Dir::In, 0, 60, &mut r),
        None,
        "the old rules' answer is gone"
    );
    assert_eq!(
        through(&mut kept, &accept, 2, 1, Dir::In, &pkt, &f, &mut r).0,
        Verdict::Accept
    );
    assert!(kept.hit(&accept, 2, 1, Dir::In, 0, 60, &mut r).is_some());
    kept.reset(&Program::default(), &sets, 4);
    assert!(!kept.is_on(), "no rules");
    assert_eq!(
        kept.hit(&accept, 2, 1, Dir::In, 0, 60, &mut r),
        None,
        "turned off: nothing kept serves, even if asked"
    );
}

/// The receiving port is part of what is kept: the highest port number and
/// port 0 are told apart from each other and from "nothing kept".
#[test]
fn the_receiving_port_is_kept_at_both_ends_of_its_range() {
    let (_, p) = stateful();
    let sets = crate::sets::SetTable::default();
    let mut kept = ConnVerdicts::default();
    kept.reset(&p, &sets, 4);
    let mut r = Replays::new(0);
    let mut pkt = tcp("198.18.0.1", 1000, "198.18.1.2", 80);
    pkt.in_port = u16::MAX;
    let f = Established(KeyFacts(pkt));
    assert_eq!(
        through(&mut kept, &p, 3, u32::MAX, Dir::Out, &pkt, &f, &mut r).0,
        Verdict::Accept
    );
    assert_eq!(
        kept.hit(&p, 3, u32::MAX, Dir::Out, u16::MAX, 60, &mut r),
        Some((Verdict::Accept, 0))
    );
    assert_eq!(kept.hit(&p, 3, u32::MAX, Dir::Out, 0, 60, &mut r), None);
    assert_eq!(
        kept.hit(&p, 3, u32::MAX, Dir::In, u16::MAX, 60, &mut r),
        None,
        "the other direction: nothing kept"
    );
    assert_eq!(
        kept.hit(&p, 3, 0, Dir::Out, u16::MAX, 60, &mut r),
        None,
        "the serial after it (wrapped)"
    );
}
