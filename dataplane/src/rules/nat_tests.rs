//! The nat hooks ([`NatHook`]): the chains walked as iptables walks them
//! (jumps, RETURN, MARK going on, SNAT / MASQUERADE ending the walk), `-o`
//! matched only where the leaving port is known, and the same marks as
//! the mangle hook's walk for the same rules.

use std::net::IpAddr;

use proptest::prelude::*;

use super::tables::RuleTables;
use super::*;
use crate::model::Family;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pkt(src: &str, out_port: u16) -> Packet {
    let b = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    Packet {
        v6: false,
        proto: 6,
        src: b(ip(src)),
        dst: b(ip("198.19.0.2")),
        sport: 40000,
        dport: 80,
        has_ports: true,
        len: 60,
        in_port: NO_PORT,
        out_port,
    }
}

struct NoFacts;

impl Facts for NoFacts {
    fn ct_state(&self) -> u8 {
        ctstate::NEW
    }
    fn dst_local(&self) -> bool {
        false
    }
    fn set_match(&self, _: crate::sets::SetId, _: crate::sets::Dirs) -> crate::sets::Match {
        crate::sets::Match::Absent
    }
}

/// Port "server" is interface 1.
struct Ports;

impl Names for Ports {
    fn set_id(&self, _: &str) -> Option<crate::sets::SetId> {
        None
    }
    fn ifaces(&self, name: &str) -> Vec<u16> {
        if name == "server" {
            vec![1]
        } else {
            Vec::new()
        }
    }
}

fn op(t: &mut RuleTables, table: Table, o: RuleOp) {
    t.apply(Family::V4, table, &o).unwrap();
}

fn append(t: &mut RuleTables, table: Table, chain: &str, rule: Rule) {
    op(
        t,
        table,
        RuleOp::Append {
            chain: chain.into(),
            rule,
            counters: None,
        },
    );
}

fn mark_match(neg: bool, value: u32, mask: u32) -> Vec<Match> {
    vec![Match::Mark { neg, value, mask }]
}

fn masquerade() -> Target {
    Target::Masquerade {
        to_ports: None,
        random: false,
        random_fully: true,
    }
}

/// The chain `hook` of the nat table of `t`, its targets numbered in
/// order of compilation (kept in `names`).
fn hook(t: &RuleTables, chain: &str, names: &mut Vec<String>) -> NatHook {
    let nat = t.v4.tables.get(&Table::Nat).unwrap();
    NatHook::compile(nat, chain, false, &Ports, &mut |tg| {
        names.push(tg.name().to_string());
        Some((names.len() - 1) as u32)
    })
    .unwrap()
}

#[test]
fn jumps_return_and_marks_decide_as_kube_postrouting_does() {
    let mut t = RuleTables::default();
    op(
        &mut t,
        Table::Nat,
        RuleOp::NewChain {
            chain: "KUBE-POSTROUTING".into(),
        },
    );
    append(
        &mut t,
        Table::Nat,
        "POSTROUTING",
        Rule {
            target: Target::Jump("KUBE-POSTROUTING".into()),
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Nat,
        "POSTROUTING",
        Rule {
            src: Some(Neg {
                neg: false,
                v: Net::new(ip("198.18.1.0"), 24),
            }),
            target: Target::Snat {
                to: "198.18.0.9".into(),
                random: false,
                random_fully: false,
                persistent: false,
            },
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Nat,
        "KUBE-POSTROUTING",
        Rule {
            matches: mark_match(true, 0x4000, 0x4000),
            target: Target::Return,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Nat,
        "KUBE-POSTROUTING",
        Rule {
            target: Target::Mark {
                value: 0x4000,
                mask: 0,
            },
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Nat,
        "KUBE-POSTROUTING",
        Rule {
            target: masquerade(),
            ..Rule::default()
        },
    );
    let mut names = Vec::new();
    let h = hook(&t, "POSTROUTING", &mut names);
    assert_eq!(names, ["SNAT", "MASQUERADE"]);

    // Marked: the xor clears the bit, MASQUERADE ends the walk.
    let o = h.run(&pkt("198.18.2.5", NO_PORT), &NoFacts, 0x4001, 0);
    assert_eq!((o.target, o.mark, o.drop), (Some(1), 0x0001, false));
    // Unmarked: RETURN from the user chain, on to the next rule.
    let o = h.run(&pkt("198.18.1.5", NO_PORT), &NoFacts, 0, 0);
    assert_eq!((o.target, o.mark), (Some(0), 0));
    let o = h.run(&pkt("198.18.2.5", NO_PORT), &NoFacts, 0, 0);
    assert_eq!((o.target, o.mark), (None, 0), "no rule: the policy, no NAT");

    // The counters moved as iptables' would: the jump 3 times, RETURN
    // twice, the MASQUERADE once, the policy twice.
    let nat = t.v4.tables.get(&Table::Nat).unwrap();
    let count = |c: &str, i: usize| {
        let ch = nat.chains.iter().find(|x| x.name == c).unwrap();
        ch.rules[i].counted.counters.total().0
    };
    assert_eq!(count("POSTROUTING", 0), 3);
    assert_eq!(count("KUBE-POSTROUTING", 0), 2);
    assert_eq!(count("KUBE-POSTROUTING", 2), 1);
    assert_eq!(count("POSTROUTING", 1), 1);
}

#[test]
fn out_interface_matches_only_where_the_leaving_port_is_known() {
    let mut t = RuleTables::default();
    let out = |neg| {
        Some(Neg {
            neg,
            v: "server".to_string(),
        })
    };
    append(
        &mut t,
        Table::Nat,
        "POSTROUTING",
        Rule {
            out_if: out(true),
            target: Target::Accept,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Nat,
        "POSTROUTING",
        Rule {
            out_if: out(false),
            target: masquerade(),
            ..Rule::default()
        },
    );
    let h = hook(&t, "POSTROUTING", &mut Vec::new());
    let o = |port| h.run(&pkt("198.18.1.5", port), &NoFacts, 0, 0).target;
    assert_eq!(o(1), Some(0), "-o server");
    assert_eq!(o(0), None, "! -o server accepts first");
    assert_eq!(
        o(NO_PORT),
        None,
        "neither -o nor ! -o matches an unknown port"
    );
}

/// A rule of the generated chains: a mark test, then MARK, RETURN or a
/// jump to the user chain.
#[derive(Debug, Clone)]
enum Step {
    Mark(u32, u32),
    Return,
    Jump,
}

fn step() -> impl Strategy<Value = (Option<(bool, u32)>, Step)> {
    (
        proptest::option::of((any::<bool>(), 0u32..4)),
        prop_oneof![
            (0u32..4, 0u32..4).prop_map(|(v, m)| Step::Mark(v, m)),
            Just(Step::Return),
            Just(Step::Jump),
        ],
    )
}

fn fill(
    t: &mut RuleTables,
    table: Table,
    entry: &str,
    main: &[(Option<(bool, u32)>, Step)],
    sub: &[(Option<(bool, u32)>, Step)],
) {
    op(
        t,
        table,
        RuleOp::NewChain {
            chain: "SUB".into(),
        },
    );
    for (chain, rules) in [(entry, main), ("SUB", sub)] {
        for (test, s) in rules {
            let target = match s {
                Step::Mark(v, m) => Target::Mark {
                    value: *v,
                    mask: *m,
                },
                Step::Return => Target::Return,
                // The user chain may not jump to itself.
                Step::Jump if chain == "SUB" => Target::None,
                Step::Jump => Target::Jump("SUB".into()),
            };
            append(
                t,
                table,
                chain,
                Rule {
                    matches: test.map_or_else(Vec::new, |(neg, v)| mark_match(neg, v, 3)),
                    target,
                    ..Rule::default()
                },
            );
        }
    }
}

proptest! {
    /// The same chains of MARK, RETURN and jumps give the same mark in
    /// nat PREROUTING (walked once per connection) as in mangle
    /// PREROUTING (the per-packet program).
    #[test]
    fn nat_walks_mark_as_the_mangle_walk(
        main in proptest::collection::vec(step(), 0..8),
        sub in proptest::collection::vec(step(), 0..8),
    ) {
        let mut mangle = RuleTables::default();
        fill(&mut mangle, Table::Mangle, "PREROUTING", &main, &sub);
        let mut nat = RuleTables::default();
        fill(&mut nat, Table::Nat, "PREROUTING", &main, &sub);
        let p = Program::compile(&mangle.v4, &mangle.v6, &NoNames);
        let (_, want) = p.run(&pkt("198.18.1.5", NO_PORT), &NoFacts, || true, 0);
        let h = NatHook::compile(nat.v4.tables.get(&Table::Nat).unwrap(), "PREROUTING", false, &NoNames, &mut |_| None);
        let got = h.map_or(0, |h| h.run(&pkt("198.18.1.5", NO_PORT), &NoFacts, 0, 0).mark);
        prop_assert_eq!(got, want);
    }
}
