//! The flow cache decides exactly as the uncached engine: same verdicts,
//! same marks, same counters, across rule changes.

use proptest::prelude::*;

use super::tables::RuleTables;
use super::tests::{arb_rule, tcp};
use super::*;
use crate::model::Family;
use crate::sets::{Dirs, Match as SetMatch, SetId};

/// Answers that depend only on the packet's flow key, as static sets and
/// the virtual addresses do.
pub(super) struct KeyFacts(pub(super) Packet);

impl Facts for KeyFacts {
    fn ct_state(&self) -> u8 {
        ctstate::NEW
    }
    fn dst_local(&self) -> bool {
        self.0.dst & 1 == 0
    }
    fn set_match(&self, set: SetId, dirs: Dirs) -> SetMatch {
        let p = &self.0;
        let k = (p.src as u64)
            .wrapping_mul(3)
            .wrapping_add(u64::from(p.dport) * 5)
            .wrapping_add(u64::from(set) * 7)
            .wrapping_add(dirs.len() as u64);
        [SetMatch::Absent, SetMatch::Hit, SetMatch::NoMatch][(k % 3) as usize]
    }
}

/// Sets `s0`, `s1`; ports `p0`, `p1`.
pub(super) struct TestNames;

impl Names for TestNames {
    fn set_id(&self, name: &str) -> Option<SetId> {
        name.strip_prefix('s')?.parse().ok()
    }
    fn ifaces(&self, name: &str) -> Vec<u16> {
        let mut i = Interfaces::default();
        for p in 0..2 {
            i.add_port(p, &format!("p{p}"), None, &[]);
        }
        i.ids(name)
    }
}

/// A rule of [`arb_rule`] with, sometimes, a set match and an `-i`.
pub(super) fn arb_rule_ext(chains: usize) -> impl Strategy<Value = Rule> {
    (
        arb_rule(chains),
        prop::option::of((any::<bool>(), 0u8..3, any::<bool>(), any::<bool>())),
        prop::option::of((any::<bool>(), 0u8..4)),
    )
        .prop_map(|(mut r, set, iface)| {
            if let Some((neg, s, src, return_nomatch)) = set {
                r.matches.push(Match::Set {
                    neg,
                    // s2 does not exist: the rule never matches.
                    name: format!("s{s}"),
                    src: vec![src],
                    return_nomatch,
                });
            }
            // p2 does not exist; p+ is every port.
            r.in_if = iface.map(|(neg, p)| Neg {
                neg,
                v: if p == 3 { "p+".into() } else { format!("p{p}") },
            });
            r
        })
}

pub(super) fn tables(
    pre: &[Rule],
    input: &[Rule],
    fwd: &[Rule],
    c0: &[Rule],
    c1: &[Rule],
) -> RuleTables {
    let mut t = RuleTables::default();
    for c in ["c0", "c1"] {
        t.apply(
            Family::V4,
            Table::Filter,
            &RuleOp::NewChain { chain: c.into() },
        )
        .unwrap();
    }
    let lists = [
        (Table::Mangle, "PREROUTING", pre),
        (Table::Filter, "c0", c0),
        (Table::Filter, "c1", c1),
        (Table::Filter, "INPUT", input),
        (Table::Filter, "FORWARD", fwd),
    ];
    for (table, chain, rules) in lists {
        for rule in rules {
            let mut rule = rule.clone();
            // Jumps exist only in filter.
            if table == Table::Mangle && matches!(rule.target, Target::Jump(_)) {
                rule.target = Target::Accept;
            }
            t.apply(
                Family::V4,
                table,
                &RuleOp::Append {
                    chain: chain.into(),
                    rule,
                    counters: None,
                },
            )
            .unwrap();
        }
    }
    t
}

/// Every rule's and policy's counters, in table and chain order.
pub(super) fn counters(t: &RuleTables) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for table in [Table::Mangle, Table::Filter] {
        for c in t.v4.table(table).chains {
            out.push(c.policy_counted.counters.total());
            out.extend(c.rules.iter().map(|e| e.counted.counters.total()));
        }
    }
    out
}

pub(super) type Flow = (u8, u8, u16, u16, u32);

pub(super) fn packet((a, d, port, in_port, len): Flow) -> Packet {
    let mut p = tcp(
        &format!("198.18.0.{a}"),
        1000,
        &format!("198.18.1.{d}"),
        port,
    );
    p.in_port = in_port;
    p.len = 40 + len;
    p
}

proptest! {
    /// Packets of a few flows, repeated, through the cache and through
    /// the plain engine (each with its own copy of the same tables): the
    /// same verdict and mark for every packet and the same counters at
    /// the end; then one more rule, and again.
    #[test]
    fn cached_verdicts_and_counters_are_the_engines(
        pre in prop::collection::vec(arb_rule_ext(0), 0..4),
        input in prop::collection::vec(arb_rule_ext(2), 0..(2 * engine::INDEX_MIN)),
        fwd in prop::collection::vec(arb_rule_ext(1), 0..4),
        c0 in prop::collection::vec(arb_rule_ext(0), 0..4),
        c1 in prop::collection::vec(arb_rule_ext(1), 0..3),
        extra in arb_rule_ext(0),
        flows in prop::collection::vec((0u8..4, 0u8..3, 1u16..8, 0u16..3, 0u32..100), 1..6),
        order in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..40),
    ) {
        let plain = tables(&pre, &input, &fwd, &c0, &c1);
        let cached = tables(&pre, &input, &fwd, &c0, &c1);
        let sets = crate::sets::SetTable::default();
        let mut cache = FlowCache::default();
        let run_all = |plain: &RuleTables, cached: &RuleTables, cache: &mut FlowCache| {
            let p = Program::compile(&plain.v4, &plain.v6, &TestNames);
            let q = Program::compile(&cached.v4, &cached.v6, &TestNames);
            cache.reset(&q, &sets);
            prop_assert_eq!(cache.is_on(), !q.is_empty());
            // Replayed counters are summed and moved at "burst" ends.
            let mut replays = Replays::new(0);
            for (i, end_burst) in &order {
                let pkt = packet(flows[i.index(flows.len())]);
                let f = KeyFacts(pkt);
                let want = p.run(&pkt, &f, || f.dst_local(), 0);
                let got = cache.run(&q, &pkt, &f, || f.dst_local(), &mut replays);
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
        run_all(&plain, &cached, &mut cache)?;
        let (mut plain, mut cached) = (plain, cached);
        for t in [&mut plain, &mut cached] {
            let op = RuleOp::Insert { chain: "INPUT".into(), num: 1, rule: extra.clone(), counters: None };
            t.apply(Family::V4, Table::Filter, &op).unwrap();
        }
        run_all(&plain, &cached, &mut cache)?;
    }
}

pub(super) fn drop_all() -> RuleTables {
    let mut t = RuleTables::default();
    let rule = Rule {
        target: Target::Drop,
        ..Rule::default()
    };
    let op = RuleOp::Append {
        chain: "INPUT".into(),
        rule,
        counters: None,
    };
    t.apply(Family::V4, Table::Filter, &op).unwrap();
    t
}

/// `--ctstate` differs between a connection's packets: no caching.
#[test]
fn a_conntrack_rule_turns_the_cache_off() {
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
    let mut cache = FlowCache::default();
    cache.reset(&p, &crate::sets::SetTable::default());
    assert!(!cache.is_on());
    let p = Program::compile(&drop_all().v4, &RuleTables::default().v6, &NoNames);
    cache.reset(&p, &crate::sets::SetTable::default());
    assert!(cache.is_on());
}

/// A set with timeouts or counters changes its answers or counts per
/// packet: rules testing it are not cached; a static set is.
#[test]
fn sets_with_timeouts_or_counters_turn_the_cache_off() {
    use crate::sets::{Header, SetKind, SetOp, SetStore};
    let mut store = SetStore::new();
    for (name, timeout, counters) in [
        ("plain", None, false),
        ("timed", Some(60), false),
        ("counted", None, true),
    ] {
        let mut header = Header::new(SetKind::HashIp);
        header.timeout = timeout;
        header.counters = counters;
        let op = SetOp::Create {
            name: name.into(),
            header,
        };
        store.apply(&op, false, 1).unwrap();
    }
    let sets = store.table();
    for (name, on) in [("plain", true), ("timed", false), ("counted", false)] {
        let mut t = RuleTables::default();
        let rule = Rule {
            matches: vec![Match::Set {
                neg: false,
                name: name.into(),
                src: vec![true],
                return_nomatch: false,
            }],
            target: Target::Drop,
            ..Rule::default()
        };
        let op = RuleOp::Append {
            chain: "INPUT".into(),
            rule,
            counters: None,
        };
        t.apply(Family::V4, Table::Filter, &op).unwrap();
        struct ByName<'a>(&'a crate::sets::SetTable);
        impl Names for ByName<'_> {
            fn set_id(&self, name: &str) -> Option<SetId> {
                self.0.id(name)
            }
            fn ifaces(&self, _: &str) -> Vec<u16> {
                Vec::new()
            }
        }
        let p = Program::compile(&t.v4, &t.v6, &ByName(&sets));
        let mut cache = FlowCache::default();
        cache.reset(&p, &sets);
        assert_eq!(cache.is_on(), on, "{name}");
        let mut kept = ConnVerdicts::default();
        kept.reset(&p, &sets, 4);
        assert_eq!(kept.is_on(), on, "{name}, per connection");
    }
}

/// A new snapshot forgets what the old rules decided.
#[test]
fn a_new_program_is_not_answered_from_the_old_ones_entries() {
    let drop = Program::compile(&drop_all().v4, &RuleTables::default().v6, &NoNames);
    let mut accept_t = RuleTables::default();
    accept_t
        .apply(
            Family::V4,
            Table::Filter,
            &RuleOp::Append {
                chain: "INPUT".into(),
                rule: Rule {
                    target: Target::Accept,
                    ..Rule::default()
                },
                counters: None,
            },
        )
        .unwrap();
    let accept = Program::compile(&accept_t.v4, &accept_t.v6, &NoNames);
    let sets = crate::sets::SetTable::default();
    let mut cache = FlowCache::default();
    let pkt = tcp("198.18.0.1", 1000, "198.18.1.1", 80);
    let f = KeyFacts(pkt);
    cache.reset(&drop, &sets);
    for _ in 0..2 {
        assert_eq!(
            cache.run(&drop, &pkt, &f, || true, &mut Replays::new(0)).0,
            Verdict::Drop
        );
    }
    cache.reset(&accept, &sets);
    assert_eq!(
        cache
            .run(&accept, &pkt, &f, || true, &mut Replays::new(0))
            .0,
        Verdict::Accept
    );
}
