use std::net::IpAddr;

use proptest::prelude::*;

use super::table::{timeout, Mappings, Refused};
use super::*;
use crate::conn::{ConnAddr, ConnKey};
use crate::model::Family;
use crate::rss::Ownership;
use crate::rules::{Neg, Net, NoNames, Rule, RuleOp, RuleTables};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> ConnKey {
    ConnKey::new(
        proto,
        ConnAddr::from(ip(src)),
        sport,
        ConnAddr::from(ip(dst)),
        dport,
    )
}

#[test]
fn to_source_parses_as_iptables_writes_it() {
    let t = ToSource::parse("198.18.0.1-198.18.0.4:1024-65535").unwrap();
    assert_eq!(t.addrs, Some((ip("198.18.0.1"), ip("198.18.0.4"))));
    assert_eq!(t.ports, 1024..=65535);
    let t = ToSource::parse("198.18.0.1").unwrap();
    assert_eq!(
        (t.addrs, t.ports),
        (Some((ip("198.18.0.1"), ip("198.18.0.1"))), DEFAULT_PORTS)
    );
    let t = ToSource::parse("[2001:db8::1]:2000-3000").unwrap();
    assert_eq!(
        (t.addr(ip("::"), ip("::"), ip("::")), t.ports),
        (ip("2001:db8::1"), 2000..=3000)
    );
    let t = ToSource::parse("2001:db8::1").unwrap();
    assert_eq!(t.addr(ip("::"), ip("::"), ip("::")), ip("2001:db8::1"));
    for bad in [
        "",
        "198.18.0.1:0",
        "198.18.0.1:9-3",
        "198.18.0.4-198.18.0.1",
        "198.18.0.1-2001:db8::1",
        "[2001:db8::1]x",
        "nonsense",
        "198.18.0.1:70000",
    ] {
        assert!(ToSource::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        ToSource::masquerade(Some("3000-3100")).unwrap().ports,
        3000..=3100
    );
    assert!(ToSource::masquerade(Some("x")).is_err());
}

proptest! {
    #[test]
    fn any_to_source_text_parses_or_is_refused_without_panic(s in "[0-9a-f.:\\[\\]-]{0,40}") {
        let _ = ToSource::parse(&s);
    }

    #[test]
    fn written_ranges_parse_back(a in any::<u32>(), n in 0u32..8, p in 1u16..60000, w in 0u16..5000) {
        let b = a.saturating_add(n);
        let text = format!("{}-{}:{}-{}", std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b), p, p.saturating_add(w));
        let t = ToSource::parse(&text).unwrap();
        prop_assert_eq!(t.addrs, Some((IpAddr::from(std::net::Ipv4Addr::from(a)), IpAddr::from(std::net::Ipv4Addr::from(b)))));
        prop_assert_eq!(t.ports, p..=p.saturating_add(w));
    }
}

fn rules(lines: &[Rule]) -> NatRules {
    let mut t = RuleTables::default();
    for r in lines {
        t.apply(
            Family::V4,
            Table::Nat,
            &RuleOp::Append {
                chain: "POSTROUTING".into(),
                rule: r.clone(),
                counters: None,
            },
        )
        .unwrap();
    }
    NatRules::compile(&t.v4, &t.v6, &NoNames)
}

fn net(s: &str, neg: bool) -> Option<Neg<Net>> {
    let (a, l) = s.split_once('/').unwrap();
    Some(Neg {
        neg,
        v: Net::new(ip(a), l.parse().unwrap()),
    })
}

#[test]
fn the_first_matching_rule_maps_accept_stops_and_unknown_matches_never_match() {
    let masq = Rule {
        src: net("198.18.1.0/24", false),
        dst: net("198.18.1.0/24", true),
        target: Target::Masquerade {
            to_ports: None,
            random: false,
            random_fully: false,
        },
        ..Rule::default()
    };
    let keep = Rule {
        dst: net("198.19.9.0/24", false),
        target: Target::Accept,
        ..Rule::default()
    };
    let marked = Rule {
        matches: vec![crate::rules::Match::Mark {
            neg: false,
            value: 1,
            mask: 1,
        }],
        target: Target::Snat {
            to: "198.18.0.9".into(),
            random: false,
            random_fully: false,
            persistent: false,
        },
        ..Rule::default()
    };
    let r = rules(&[marked, keep, masq]);
    assert!(!r.is_empty());
    let hit = r.lookup(6, ip("198.18.1.11"), ip("198.19.0.2"), 0).unwrap();
    assert_eq!(hit.addrs, None, "MASQUERADE");
    assert!(
        r.lookup(6, ip("198.18.1.11"), ip("198.18.1.12"), 0)
            .is_none(),
        "! -d"
    );
    assert!(
        r.lookup(6, ip("198.18.1.11"), ip("198.19.9.1"), 0)
            .is_none(),
        "ACCEPT first"
    );
    assert!(
        r.lookup(6, ip("198.18.2.11"), ip("198.19.0.2"), 0)
            .is_none(),
        "-s"
    );
    assert!(
        r.lookup(6, ip("2001:db8:1::11"), ip("2001:db8:3::2"), 0)
            .is_none(),
        "v6 has none"
    );
    assert_eq!(r.masquerade_ranges().count(), 1);
}

fn table(cap: u32) -> Mappings {
    let mut m = Mappings::new(cap, Ownership::new(1), 0, 0);
    m.ensure_pool(ip("198.18.0.1"), 1024..=1027);
    m
}

#[test]
fn a_mapping_is_found_from_both_directions_and_replies_name_the_original_source() {
    let mut m = table(16);
    let k = key(6, "198.18.1.11", 40000, "198.19.0.2", 80);
    assert_eq!(m.outbound(&k, 0x02, 0), None);
    let (a, p) = m
        .create(&k, ip("198.18.0.1"), &(1024..=1027), 0x02, 0)
        .unwrap();
    assert_eq!(a, ip("198.18.0.1"));
    assert!((1024..=1027).contains(&p));
    assert_eq!(m.outbound(&k, 0x10, 1), Some((a, p)));
    let back = key(6, "198.19.0.2", 80, "198.18.0.1", p);
    assert_eq!(m.reply(&back, 0x12, 2), Some((ip("198.18.1.11"), 40000)));
    assert_eq!(
        m.reply(&key(6, "198.19.0.3", 80, "198.18.0.1", p), 0x12, 2),
        None
    );
    assert!(m.is_nat_addr(ip("198.18.0.1")) && !m.is_nat_addr(ip("198.18.0.2")));
}

#[test]
fn an_empty_pool_refuses_new_mappings_and_leaves_the_others_alone() {
    let mut m = table(16);
    let range = 1024..=1027;
    let mut made = Vec::new();
    for i in 0..4 {
        let k = key(17, "198.18.1.11", 5000 + i, "198.19.0.2", 53);
        made.push((k, m.create(&k, ip("198.18.0.1"), &range, 0, 0).unwrap()));
    }
    let k = key(17, "198.18.1.11", 6000, "198.19.0.2", 53);
    assert_eq!(
        m.create(&k, ip("198.18.0.1"), &range, 0, 0),
        Err(Refused::NoPort)
    );
    for (k, got) in &made {
        assert_eq!(
            m.outbound(k, 0, 1),
            Some(*got),
            "existing mappings unchanged"
        );
    }
    let ports: std::collections::HashSet<u16> = made.iter().map(|(_, (_, p))| *p).collect();
    assert_eq!(ports.len(), 4, "each its own port");
    let mut small = Mappings::new(1, Ownership::new(1), 0, 0);
    small.ensure_pool(ip("198.18.0.1"), range.clone());
    small
        .create(&made[0].0, ip("198.18.0.1"), &range, 0, 0)
        .unwrap();
    assert_eq!(
        small.create(&k, ip("198.18.0.1"), &range, 0, 0),
        Err(Refused::Full)
    );
}

#[test]
fn mappings_expire_with_conntracks_timeouts_and_give_their_ports_back() {
    let mut m = table(16);
    let range = 1024..=1027;
    let s = 1000u64;
    let udp = key(17, "198.18.1.11", 5000, "198.19.0.2", 53);
    let (_, p) = m.create(&udp, ip("198.18.0.1"), &range, 0, 0).unwrap();
    assert_eq!(m.free_ports(ip("198.18.0.1"), &range), Some(3));
    m.expire(u64::from(timeout::UDP) * s - s, 100);
    assert_eq!(m.len(), 1, "alive before 30 s");
    m.expire(u64::from(timeout::UDP) * s + s, 100);
    assert_eq!(m.len(), 0, "gone after 30 s unreplied");
    assert_eq!(m.free_ports(ip("198.18.0.1"), &range), Some(4), "port back");
    let _ = p;

    // A replied UDP flow lives 120 s; an established TCP one 5 days.
    let t0 = 100 * s;
    m.create(&udp, ip("198.18.0.1"), &range, 0, t0).unwrap();
    let (_, p) = m.outbound(&udp, 0, t0).unwrap();
    m.reply(&key(17, "198.19.0.2", 53, "198.18.0.1", p), 0, t0)
        .unwrap();
    let tcp = key(6, "198.18.1.11", 40000, "198.19.0.2", 80);
    m.create(&tcp, ip("198.18.0.1"), &range, 0x02, t0).unwrap();
    let (_, tp) = m.outbound(&tcp, 0x02, t0).unwrap();
    m.reply(&key(6, "198.19.0.2", 80, "198.18.0.1", tp), 0x12, t0)
        .unwrap();
    m.outbound(&tcp, 0x10, t0).unwrap();
    let mut now = t0;
    while now < t0 + u64::from(timeout::UDP_STREAM + 5) * s {
        now += 5 * s;
        m.expire(now, 1000);
    }
    assert!(
        m.outbound(&udp, 0, now).is_none(),
        "UDP stream gone after 120 s"
    );
    assert!(
        m.outbound(&tcp, 0x10, now).is_some(),
        "TCP established stays"
    );
    // A RST: 10 s.
    m.outbound(&tcp, 0x04, now).unwrap();
    for _ in 0..4 {
        now += 5 * s;
        m.expire(now, 1000);
    }
    assert!(
        m.outbound(&tcp, 0x10, now).is_none(),
        "closed 10 s after a RST"
    );
    assert_eq!(m.len(), 0);
    assert_eq!(m.free_ports(ip("198.18.0.1"), &range), Some(4));
}

#[test]
fn icmp_echo_keeps_its_identifier_and_refuses_a_clash() {
    let mut m = table(16);
    let e = key(1, "198.18.1.11", 0x1234, "198.19.0.2", 0);
    let (_, id) = m
        .create(&e, ip("198.18.0.1"), &(1024..=1027), 0, 0)
        .unwrap();
    assert_eq!(id, 0x1234);
    assert_eq!(
        m.reply(&key(1, "198.19.0.2", 0, "198.18.0.1", 0x1234), 0, 1),
        Some((ip("198.18.1.11"), 0x1234))
    );
    let other = key(1, "198.18.1.12", 0x1234, "198.19.0.2", 0);
    assert_eq!(
        m.create(&other, ip("198.18.0.1"), &(1024..=1027), 0, 0),
        Err(Refused::NoPort)
    );
}

#[test]
fn every_worker_gets_only_ports_whose_replies_it_receives() {
    let own = Ownership::new(2);
    for me in 0..2 {
        let mut m = Mappings::new(64, own.clone(), me, 0);
        m.ensure_pool(ip("198.18.0.1"), 1024..=1100);
        for i in 0..20 {
            let k = key(6, "198.18.1.11", 40000 + i, "198.19.0.2", 80);
            let (a, p) = m
                .create(&k, ip("198.18.0.1"), &(1024..=1100), 0x02, 0)
                .unwrap();
            assert_eq!(own.owner(a, p), me);
        }
    }
}

#[test]
fn a_to_source_range_spreads_host_pairs_over_its_addresses_and_keeps_each_pair_on_one() {
    let t = ToSource::parse("198.18.0.1-198.18.0.4").unwrap();
    let all: Vec<IpAddr> = t.each_addr().collect();
    assert_eq!(
        all,
        ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"].map(ip)
    );
    let out = ip("198.18.9.9");
    let mut per = std::collections::HashMap::new();
    for i in 0..400u32 {
        let src = IpAddr::V4((0xc612_0100 + i).into()); // 198.18.1.x..
        let dst = ip("198.19.0.2");
        let a = t.addr(out, src, dst);
        assert!(all.contains(&a), "{a}");
        assert_eq!(t.addr(out, src, dst), a, "the same pair, the same address");
        *per.entry(a).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 4, "{per:?}");
    assert!(per.values().all(|&n| n > 50), "uneven: {per:?}");
    // IPv6 ranges too; MASQUERADE (no range) takes the egress address.
    let t6 = ToSource::parse("2001:db8::1-2001:db8::2").unwrap();
    let a = t6.addr(ip("::"), ip("2001:db8:1::5"), ip("2001:db8:3::2"));
    assert!(a == ip("2001:db8::1") || a == ip("2001:db8::2"));
    let m = ToSource::masquerade(None).unwrap();
    assert_eq!(m.addr(out, ip("198.18.1.1"), ip("198.19.0.2")), out);
    assert_eq!(m.each_addr().count(), 0);
}

#[test]
fn a_to_source_range_over_256_addresses_is_refused() {
    assert!(ToSource::parse("198.18.0.0-198.18.0.255").is_ok());
    let e = ToSource::parse("198.18.0.0-198.18.1.0").unwrap_err();
    assert!(e.to_string().contains("at most 256 addresses"), "{e}");
    assert!(ToSource::parse("2001:db8::-2001:db8::1:0").is_err());
}

#[test]
fn every_address_of_a_range_gets_a_pool_and_mappings_use_them_all() {
    let own = Ownership::new(1);
    let mut m = Mappings::new(1024, own, 0, 0);
    let t = ToSource::parse("198.18.0.1-198.18.0.3:1024-2047").unwrap();
    for a in t.each_addr() {
        m.ensure_pool(a, t.ports.clone());
    }
    let mut used = std::collections::HashSet::new();
    for i in 0..300u16 {
        let src = IpAddr::V4((0xc612_0100 + u32::from(i)).into());
        let k = ConnKey::new(
            6,
            ConnAddr::from(src),
            40000,
            ConnAddr::from(ip("198.19.0.2")),
            80,
        );
        let addr = t.addr(ip("0.0.0.0"), src, ip("198.19.0.2"));
        let (a, p) = m.create(&k, addr, &t.ports, 0x02, 0).unwrap();
        assert!(t.ports.contains(&p));
        used.insert(a);
    }
    assert_eq!(used.len(), 3);
    for a in t.each_addr() {
        assert!(m.is_nat_addr(a));
    }
}
