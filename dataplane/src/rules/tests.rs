//! The rule engine's matching semantics, as iptables defines them, and the
//! configuration operations with the kernel's refusals.

use std::net::IpAddr;

use proptest::prelude::*;

use super::engine::INDEX_MIN;
use super::tables::RuleTables;
use super::*;
use crate::model::Family;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

pub(super) fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Packet {
    Packet {
        v6: ip(src).is_ipv6(),
        proto: 6,
        src: bits(ip(src)),
        dst: bits(ip(dst)),
        sport,
        dport,
        has_ports: true,
        len: 60,
        in_port: 0,
        out_port: super::engine::NO_PORT,
    }
}

/// Facts with a fixed connection state and local answer, no sets.
struct Fixed {
    ct: u8,
    local: bool,
}

impl Facts for Fixed {
    fn ct_state(&self) -> u8 {
        self.ct
    }
    fn dst_local(&self) -> bool {
        self.local
    }
    fn set_match(&self, _: crate::sets::SetId, _: crate::sets::Dirs) -> crate::sets::Match {
        crate::sets::Match::Absent
    }
}

const NEW: Fixed = Fixed {
    ct: ctstate::NEW,
    local: true,
};

fn net(s: &str) -> Neg<Net> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    Neg {
        neg: false,
        v: Net::new(ip(a), l.parse().unwrap()),
    }
}

fn dport(p: u16) -> Match {
    Match::Ports {
        proto: 6,
        sport: None,
        dport: Some(Neg {
            neg: false,
            v: (p, p),
        }),
    }
}

fn p_tcp() -> Option<Neg<u8>> {
    Some(Neg { neg: false, v: 6 })
}

fn append(t: &mut RuleTables, table: Table, chain: &str, rule: Rule) {
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

fn compile(t: &RuleTables) -> Program {
    Program::compile(&t.v4, &t.v6, &NoNames)
}

fn run(p: &Program, pkt: &Packet) -> (Verdict, u32) {
    p.run(pkt, &NEW, || true, 0)
}

#[test]
fn no_rules_is_an_idle_program() {
    let mut t = RuleTables::default();
    assert!(compile(&t).is_empty());
    // A table that exists with empty ACCEPT chains is still idle.
    t.apply(Family::V4, Table::Filter, &RuleOp::Flush { chain: None })
        .unwrap();
    assert!(compile(&t).is_empty());
    t.apply(
        Family::V4,
        Table::Filter,
        &RuleOp::SetPolicy {
            chain: "FORWARD".into(),
            policy: Policy::Drop,
            counters: None,
        },
    )
    .unwrap();
    assert!(!compile(&t).is_empty());
}

/// kube-proxy's and keepalived's classic: ports 80 and 443 of a VIP get
/// mark 1; MARK forms combine as `(mark & ~mask) ^ value`.
#[test]
fn mark_rules_set_and_combine_the_mark() {
    let mut t = RuleTables::default();
    append(
        &mut t,
        Table::Mangle,
        "PREROUTING",
        Rule {
            dst: Some(net("198.18.0.100/32")),
            proto: p_tcp(),
            matches: vec![Match::Multiport {
                dir: PortDir::Dst,
                neg: false,
                ports: vec![(80, 80), (443, 443)],
            }],
            target: Target::Mark {
                value: 1,
                mask: u32::MAX,
            },
            ..Rule::default()
        },
    );
    let p = compile(&t);
    assert_eq!(run(&p, &tcp("198.18.0.2", 1000, "198.18.0.100", 80)).1, 1);
    assert_eq!(run(&p, &tcp("198.18.0.2", 1000, "198.18.0.100", 443)).1, 1);
    assert_eq!(run(&p, &tcp("198.18.0.2", 1000, "198.18.0.100", 22)).1, 0);
    assert_eq!(run(&p, &tcp("198.18.0.2", 1000, "198.18.0.101", 80)).1, 0);

    // --or-mark 0x10 (0x10/0x10), then --and-mark 0xff (0/~0xff), then
    // --xor-mark 0x3 (0x3/0): from 1, 0x11, 0x11, 0x12.
    for (value, mask) in [(0x10, 0x10), (0, !0xff), (0x3, 0)] {
        append(
            &mut t,
            Table::Mangle,
            "PREROUTING",
            Rule {
                target: Target::Mark { value, mask },
                ..Rule::default()
            },
        );
    }
    // A mark match sees the mark earlier rules set.
    append(
        &mut t,
        Table::Mangle,
        "PREROUTING",
        Rule {
            matches: vec![Match::Mark {
                neg: false,
                value: 0x2,
                mask: 0xf,
            }],
            target: Target::Drop,
            ..Rule::default()
        },
    );
    let p = compile(&t);
    assert_eq!(
        run(&p, &tcp("198.18.0.2", 1000, "198.18.0.100", 80)),
        (Verdict::Drop, 0x12)
    );
    assert_eq!(
        run(&p, &tcp("198.18.0.2", 1000, "198.18.0.100", 22)),
        (Verdict::Accept, 0x13),
        "0 | 0x10 & 0xff ^ 3 = 0x13, and 0x13 & 0xf != 2"
    );
}

#[test]
fn filter_input_negation_policy_user_chains_and_counters() {
    let mut t = RuleTables::default();
    let f = Table::Filter;
    t.apply(
        Family::V4,
        f,
        &RuleOp::NewChain {
            chain: "web".into(),
        },
    )
    .unwrap();
    // web: RETURN for 198.18.0.9, ACCEPT everything else.
    append(
        &mut t,
        f,
        "web",
        Rule {
            src: Some(net("198.18.0.9")),
            target: Target::Return,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        f,
        "web",
        Rule {
            target: Target::Accept,
            ..Rule::default()
        },
    );
    // INPUT: .3 to port 80 accepted, the rest of 198.18.0.0/28 dropped,
    // tcp/80 to web, anything but TCP accepted, policy DROP.
    append(
        &mut t,
        f,
        "INPUT",
        Rule {
            src: Some(net("198.18.0.3")),
            proto: p_tcp(),
            matches: vec![dport(80)],
            target: Target::Accept,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        f,
        "INPUT",
        Rule {
            src: Some(net("198.18.0.0/28")),
            target: Target::Drop,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        f,
        "INPUT",
        Rule {
            proto: p_tcp(),
            matches: vec![dport(80)],
            target: Target::Jump("web".into()),
            ..Rule::default()
        },
    );
    append(
        &mut t,
        f,
        "INPUT",
        Rule {
            proto: Some(Neg { neg: true, v: 6 }),
            target: Target::Accept,
            ..Rule::default()
        },
    );
    t.apply(
        Family::V4,
        f,
        &RuleOp::SetPolicy {
            chain: "INPUT".into(),
            policy: Policy::Drop,
            counters: None,
        },
    )
    .unwrap();
    let p = compile(&t);
    let cases = [
        (tcp("198.18.0.3", 1, "198.18.0.100", 80), Verdict::Accept),
        (tcp("198.18.0.4", 1, "198.18.0.100", 80), Verdict::Drop),
        (tcp("198.18.0.20", 1, "198.18.0.100", 80), Verdict::Accept),
        (tcp("198.18.0.20", 1, "198.18.0.100", 22), Verdict::Drop),
        (tcp("198.18.0.9", 1, "198.18.0.100", 22), Verdict::Drop),
    ];
    for (pkt, want) in cases {
        assert_eq!(run(&p, &pkt).0, want, "{pkt:?}");
    }
    let mut udp = tcp("198.18.0.20", 1, "198.18.0.100", 53);
    udp.proto = 17;
    assert_eq!(run(&p, &udp).0, Verdict::Accept, "! -p tcp");
    // Counters: the /28 DROP saw .4 and .9, the policy .20:22.
    let input = t.v4.table(f);
    let input = input.chain("INPUT").unwrap();
    let counts: Vec<u64> = input.rules.iter().map(|r| r.counted.get().0).collect();
    assert_eq!(counts, vec![1, 2, 1, 1]);
    assert_eq!(input.policy_counted.get(), (1, 60));
    // -Z zeroes what is listed; the slots keep counting from there.
    t.apply(
        Family::V4,
        f,
        &RuleOp::Zero {
            chain: None,
            num: None,
        },
    )
    .unwrap();
    let input = t.v4.table(f);
    assert_eq!(input.chain("INPUT").unwrap().policy_counted.get(), (0, 0));
}

#[test]
fn a_jump_that_returns_continues_after_the_jump() {
    let mut t = RuleTables::default();
    let m = Table::Mangle;
    t.apply(Family::V4, m, &RuleOp::NewChain { chain: "a".into() })
        .unwrap();
    append(
        &mut t,
        m,
        "a",
        Rule {
            target: Target::Mark { value: 1, mask: 0 },
            ..Rule::default()
        },
    );
    append(
        &mut t,
        m,
        "PREROUTING",
        Rule {
            target: Target::Jump("a".into()),
            ..Rule::default()
        },
    );
    append(
        &mut t,
        m,
        "PREROUTING",
        Rule {
            target: Target::Mark { value: 2, mask: 0 },
            ..Rule::default()
        },
    );
    let p = compile(&t);
    assert_eq!(run(&p, &tcp("198.18.0.2", 1, "198.18.0.1", 1)).1, 3);
}

#[test]
fn ctstate_and_addrtype_ask_the_facts() {
    let mut t = RuleTables::default();
    append(
        &mut t,
        Table::Filter,
        "INPUT",
        Rule {
            matches: vec![Match::Conntrack {
                neg: false,
                states: ctstate::ESTABLISHED | ctstate::RELATED,
            }],
            target: Target::Accept,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Filter,
        "INPUT",
        Rule {
            matches: vec![Match::AddrTypeLocal { neg: true }],
            target: Target::Reject,
            ..Rule::default()
        },
    );
    append(
        &mut t,
        Table::Filter,
        "INPUT",
        Rule {
            target: Target::Drop,
            ..Rule::default()
        },
    );
    let p = compile(&t);
    let pkt = tcp("198.18.0.2", 1, "198.18.0.1", 80);
    let est = Fixed {
        ct: ctstate::ESTABLISHED,
        local: true,
    };
    let new_remote = Fixed {
        ct: ctstate::NEW,
        local: false,
    };
    assert_eq!(p.run(&pkt, &est, || true, 0).0, Verdict::Accept);
    assert_eq!(p.run(&pkt, &NEW, || true, 0).0, Verdict::Drop);
    assert_eq!(p.run(&pkt, &new_remote, || true, 0).0, Verdict::Reject);
    // The same packet routed (not local) runs FORWARD: empty, accepted.
    assert_eq!(p.run(&pkt, &NEW, || false, 0).0, Verdict::Accept);
}

#[test]
fn operations_refuse_as_the_kernel_does() {
    let mut t = RuleTables::default();
    let f = Table::Filter;
    let r = |target| Rule {
        target,
        ..Rule::default()
    };
    let op = |t: &mut RuleTables, op: RuleOp| t.apply(Family::V4, f, &op);
    assert_eq!(
        op(
            &mut t,
            RuleOp::Delete {
                chain: "INPUT".into(),
                rule: r(Target::Drop)
            }
        ),
        Err(RuleError::BadRule)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::DeleteNum {
                chain: "INPUT".into(),
                num: 1
            }
        ),
        Err(RuleError::DeleteIndex)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::Insert {
                chain: "INPUT".into(),
                num: 2,
                rule: r(Target::Drop),
                counters: None
            }
        ),
        Err(RuleError::InsertIndex)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::Append {
                chain: "nosuch".into(),
                rule: r(Target::Drop),
                counters: None
            }
        ),
        Err(RuleError::NoChain)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::Append {
                chain: "INPUT".into(),
                rule: r(Target::Jump("x".into())),
                counters: None
            }
        ),
        Err(RuleError::NoTarget("x".into()))
    );
    op(&mut t, RuleOp::NewChain { chain: "x".into() }).unwrap();
    op(&mut t, RuleOp::NewChain { chain: "y".into() }).unwrap();
    assert_eq!(
        op(&mut t, RuleOp::NewChain { chain: "x".into() }),
        Err(RuleError::ChainExists)
    );
    op(
        &mut t,
        RuleOp::Append {
            chain: "x".into(),
            rule: r(Target::Jump("y".into())),
            counters: None,
        },
    )
    .unwrap();
    assert_eq!(
        op(
            &mut t,
            RuleOp::Append {
                chain: "y".into(),
                rule: r(Target::Jump("x".into())),
                counters: None
            }
        ),
        Err(RuleError::Loop)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::DeleteChain {
                chain: Some("y".into())
            }
        ),
        Err(RuleError::ChainBusy("y".into()))
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::SetPolicy {
                chain: "x".into(),
                policy: Policy::Drop,
                counters: None
            }
        ),
        Err(RuleError::BuiltinChain)
    );
    assert_eq!(
        op(
            &mut t,
            RuleOp::Append {
                chain: "INPUT".into(),
                rule: r(Target::Masquerade {
                    to_ports: None,
                    random: false,
                    random_fully: false
                }),
                counters: None
            }
        ),
        Err(RuleError::Invalid)
    );
    // -X without a name removes every user chain, x (which jumps to y)
    // first.
    op(&mut t, RuleOp::DeleteChain { chain: None }).unwrap();
    assert!(t.v4.table(f).chain("y").is_none());
    // A failed batch changes nothing.
    let before = format!("{:?}", t.v4.table(f).chains.len());
    let ops = [
        RuleOp::NewChain { chain: "z".into() },
        RuleOp::DeleteNum {
            chain: "INPUT".into(),
            num: 9,
        },
    ];
    assert_eq!(
        t.apply_all(Family::V4, f, &ops),
        Err((1, RuleError::DeleteIndex))
    );
    assert_eq!(format!("{:?}", t.v4.table(f).chains.len()), before);
}

/// Reference semantics: the rules walked one by one over the model, as
/// iptables' `ipt_do_table` does, without compilation or index.
fn reference(t: &RuleTables, pkt: &Packet) -> Verdict {
    fn rule_matches(r: &Rule, pkt: &Packet, mark: u32) -> bool {
        let netm = |n: &Neg<Net>, a: u128| {
            let width = if pkt.v6 { 128 } else { 32 };
            let l = u32::from(n.v.len);
            let shift = width - l;
            let hit = l == 0 || (a >> shift) == (bits(n.v.addr) >> shift);
            hit != n.neg
        };
        if let Some(p) = &r.proto {
            if (p.v == 0 || pkt.proto == p.v) == p.neg {
                return false;
            }
        }
        if r.src.as_ref().is_some_and(|n| !netm(n, pkt.src))
            || r.dst.as_ref().is_some_and(|n| !netm(n, pkt.dst))
        {
            return false;
        }
        r.matches.iter().all(|m| match m {
            Match::Ports { sport, dport, .. } => {
                pkt.has_ports
                    && sport
                        .as_ref()
                        .is_none_or(|s| (s.v.0 <= pkt.sport && pkt.sport <= s.v.1) != s.neg)
                    && dport
                        .as_ref()
                        .is_none_or(|s| (s.v.0 <= pkt.dport && pkt.dport <= s.v.1) != s.neg)
            }
            Match::Multiport { dir, neg, ports } => {
                pkt.has_ports
                    && ports.iter().any(|(a, b)| match dir {
                        PortDir::Dst => *a <= pkt.dport && pkt.dport <= *b,
                        PortDir::Src => *a <= pkt.sport && pkt.sport <= *b,
                        PortDir::Both => {
                            (*a <= pkt.dport && pkt.dport <= *b)
                                || (*a <= pkt.sport && pkt.sport <= *b)
                        }
                    }) != *neg
            }
            Match::Mark { neg, value, mask } => ((mark & mask) == *value) != *neg,
            _ => true,
        })
    }
    fn walk(t: &tables::TableState, chain: &str, pkt: &Packet, mark: &mut u32) -> Option<Verdict> {
        for e in &t.chain(chain).unwrap().rules {
            if !rule_matches(&e.rule, pkt, *mark) {
                continue;
            }
            match &e.rule.target {
                Target::Accept => return Some(Verdict::Accept),
                Target::Drop => return Some(Verdict::Drop),
                Target::Reject => return Some(Verdict::Reject),
                Target::Return => return None,
                Target::Jump(j) => {
                    if let Some(v) = walk(t, j, pkt, mark) {
                        return Some(v);
                    }
                }
                Target::Mark { value, mask } => *mark = (*mark & !mask) ^ value,
                _ => {}
            }
        }
        None
    }
    let table = t.v4.table(Table::Filter);
    let mut mark = 0;
    walk(&table, "INPUT", pkt, &mut mark).unwrap_or(Verdict::Accept)
}

pub(super) fn arb_rule(chains: usize) -> impl Strategy<Value = Rule> {
    let ports = prop::collection::vec((1u16..6, 0u16..3), 1..4)
        .prop_map(|v| v.into_iter().map(|(a, w)| (a, a + w)).collect::<Vec<_>>());
    (
        prop::option::of((any::<bool>(), 0u8..2)),
        prop::option::of((any::<bool>(), 0u8..4, 30u8..33)),
        prop::option::of(prop_oneof![
            (any::<bool>(), 1u16..6, 0u16..2).prop_map(|(n, a, w)| Match::Ports {
                proto: 6,
                sport: None,
                dport: Some(Neg {
                    neg: n,
                    v: (a, a + w)
                })
            }),
            (any::<bool>(), ports).prop_map(|(neg, ports)| Match::Multiport {
                dir: PortDir::Dst,
                neg,
                ports
            }),
            (any::<bool>(), 0u32..4).prop_map(|(neg, value)| Match::Mark {
                neg,
                value,
                mask: 3
            }),
        ]),
        0..5 + chains,
    )
        .prop_map(move |(proto, src, m, t)| {
            let proto = proto.map(|(neg, p)| Neg {
                neg,
                v: if p == 0 { 6 } else { 17 },
            });
            // Port matches need -p tcp, as iptables requires.
            let proto = if m
                .as_ref()
                .is_some_and(|m| matches!(m, Match::Ports { .. } | Match::Multiport { .. }))
            {
                Some(Neg { neg: false, v: 6 })
            } else {
                proto
            };
            Rule {
                proto,
                src: src.map(|(neg, a, len)| Neg {
                    neg,
                    v: Net::new(IpAddr::from([198, 18, 0, a]), len),
                }),
                matches: m.into_iter().collect(),
                target: match t {
                    0 => Target::Accept,
                    1 => Target::Drop,
                    2 => Target::Return,
                    3 => Target::Mark { value: 1, mask: 0 },
                    4 => Target::None,
                    n => Target::Jump(format!("c{}", n - 5)),
                },
                ..Rule::default()
            }
        })
}

proptest! {
    /// Whatever the rules, the compiled program (indexed by port when a
    /// chain is long enough) decides as the rules walked one by one.
    #[test]
    fn compiled_program_decides_as_the_rules_walked_one_by_one(
        input in prop::collection::vec(arb_rule(2), 0..(3 * INDEX_MIN)),
        chain0 in prop::collection::vec(arb_rule(0), 0..(2 * INDEX_MIN)),
        chain1 in prop::collection::vec(arb_rule(1), 0..4),
        pkts in prop::collection::vec((0u8..4, 0u8..2, 1u16..8), 1..20),
    ) {
        let mut t = RuleTables::default();
        let f = Table::Filter;
        for c in ["c0", "c1"] {
            t.apply(Family::V4, f, &RuleOp::NewChain { chain: c.into() }).unwrap();
        }
        // c1 may jump to c0, INPUT to both: no loops.
        for (chain, rules) in [("c0", chain0), ("c1", chain1), ("INPUT", input)] {
            for rule in rules {
                t.apply(Family::V4, f, &RuleOp::Append { chain: chain.into(), rule, counters: None }).unwrap();
            }
        }
        let p = compile(&t);
        for (a, proto, port) in pkts {
            let mut pkt = tcp(&format!("198.18.0.{a}"), 1, "198.18.0.100", port);
            pkt.proto = if proto == 0 { 6 } else { 17 };
            prop_assert_eq!(p.run(&pkt, &NEW, || true, 0).0, reference(&t, &pkt), "{:?}", pkt);
        }
    }
}

/// `-i` matches the receiving interface by any of its names, `+` by
/// prefix, `!` inverted; `-o` never matches in INPUT (iptables refuses it
/// there).
#[test]
fn interface_rules_match_the_receiving_interface() {
    struct Lab(Interfaces);
    impl Names for Lab {
        fn set_id(&self, _: &str) -> Option<crate::sets::SetId> {
            None
        }
        fn ifaces(&self, name: &str) -> Vec<u16> {
            self.0.ids(name)
        }
    }
    let mut ifaces = Interfaces::default();
    ifaces.add_port(0, "client", Some("uvs-kc"), &[]);
    ifaces.add_port(1, "server", None, &[(0x9064, 100)]);
    let names = Lab(ifaces);
    let decide = |in_if: Option<(bool, &str)>, out_if: bool, port: u16| {
        let mut t = RuleTables::default();
        let rule = Rule {
            in_if: in_if.map(|(neg, n)| Neg { neg, v: n.into() }),
            out_if: out_if.then(|| Neg {
                neg: false,
                v: "client".into(),
            }),
            target: Target::Drop,
            ..Rule::default()
        };
        append(&mut t, Table::Filter, "INPUT", rule);
        let p = Program::compile(&t.v4, &t.v6, &names);
        let mut pkt = tcp("198.18.0.1", 1000, "198.18.0.100", 80);
        pkt.in_port = port;
        run(&p, &pkt).0
    };
    use Verdict::{Accept, Drop};
    for (in_if, port, want) in [
        ((false, "client"), 0, Drop),
        ((false, "client"), 1, Accept),
        ((false, "uvs-kc"), 0, Drop),
        ((false, "cli+"), 0, Drop),
        ((false, "cli+"), 1, Accept),
        ((true, "client"), 0, Accept),
        ((true, "client"), 1, Drop),
        ((false, "server.100"), 0x9064, Drop),
        ((false, "server.100"), 1, Accept),
        ((false, "server+"), 0x9064, Drop),
        ((false, "+"), 1, Drop),
        ((false, "eth0"), 0, Accept),
        ((true, "eth0"), 0, Drop),
    ] {
        assert_eq!(
            decide(Some(in_if), false, port),
            want,
            "-i {in_if:?} on {port}"
        );
    }
    assert_eq!(decide(None, true, 0), Accept, "-o never matches in INPUT");
}

/// `-o` in the FORWARD hooks matches the interface the route to the
/// destination leaves by, asked only when a rule reaches the test; a
/// packet given its leaving port (nat POSTROUTING) is not asked.
#[test]
fn out_interface_rules_match_the_route_in_forward() {
    use std::cell::Cell;
    struct Routed {
        port: u16,
        asked: Cell<u32>,
    }
    impl Facts for Routed {
        fn ct_state(&self) -> u8 {
            ctstate::NEW
        }
        fn dst_local(&self) -> bool {
            false
        }
        fn set_match(&self, _: crate::sets::SetId, _: crate::sets::Dirs) -> crate::sets::Match {
            crate::sets::Match::Absent
        }
        fn out_port(&self) -> u16 {
            self.asked.set(self.asked.get() + 1);
            self.port
        }
    }
    struct Lab(Interfaces);
    impl Names for Lab {
        fn set_id(&self, _: &str) -> Option<crate::sets::SetId> {
            None
        }
        fn ifaces(&self, name: &str) -> Vec<u16> {
            self.0.ids(name)
        }
    }
    let mut ifaces = Interfaces::default();
    ifaces.add_port(0, "client", None, &[]);
    ifaces.add_port(1, "server", Some("uvs-ks"), &[]);
    let names = Lab(ifaces);
    let program = |table: Table, chain: &str, neg: bool, name: &str| {
        let mut t = RuleTables::default();
        // Two rules test -o: the route is asked once per walk.
        let never = Rule {
            dst: Some(net("203.0.113.0/24")),
            out_if: Some(Neg {
                neg: false,
                v: name.into(),
            }),
            target: Target::Accept,
            ..Rule::default()
        };
        append(&mut t, table, chain, never);
        let rule = Rule {
            out_if: Some(Neg {
                neg,
                v: name.into(),
            }),
            target: Target::Drop,
            ..Rule::default()
        };
        append(&mut t, table, chain, rule);
        Program::compile(&t.v4, &t.v6, &names)
    };
    let pkt = tcp("198.18.0.1", 1000, "198.18.1.100", 80);
    use Verdict::{Accept, Drop};
    for (table, neg, name, port, want) in [
        (Table::Filter, false, "server", 1, Drop),
        (Table::Filter, false, "uvs-ks", 1, Drop),
        (Table::Filter, false, "server", 0, Accept),
        (Table::Filter, true, "server", 0, Drop),
        (Table::Filter, true, "server", 1, Accept),
        (Table::Filter, false, "serv+", 1, Drop),
        (Table::Filter, false, "server", NO_PORT, Accept),
        (Table::Filter, true, "server", NO_PORT, Accept),
        (Table::Mangle, false, "server", 1, Drop),
    ] {
        let p = program(table, "FORWARD", neg, name);
        let f = Routed {
            port,
            asked: Cell::new(0),
        };
        let (v, _) = p.run(&pkt, &f, || false, 0);
        assert_eq!(
            v,
            want,
            "{table:?} FORWARD -o {}{name} leaving by {port}",
            if neg { "! " } else { "" }
        );
        assert_eq!(f.asked.get(), 1, "the route is asked once per walk");
    }
    // Not in FORWARD: never asked, never matches.
    let p = program(Table::Filter, "INPUT", false, "server");
    let f = Routed {
        port: 1,
        asked: Cell::new(0),
    };
    assert_eq!(p.run(&pkt, &f, || true, 0).0, Accept);
    assert_eq!(f.asked.get(), 0);
    // A packet that knows its leaving port (after routing) is not asked.
    let p = program(Table::Filter, "FORWARD", false, "server");
    let mut routed = pkt;
    routed.out_port = 1;
    let f = Routed {
        port: 0,
        asked: Cell::new(0),
    };
    assert_eq!(p.run(&routed, &f, || false, 0).0, Drop);
    assert_eq!(f.asked.get(), 0);
}
