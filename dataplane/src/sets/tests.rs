//! Set semantics as observed on ipset 7.17 / Linux 6.18 (reference b.4).

use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Elem {
    let (a, c) = s.split_once('/').unwrap_or((s, ""));
    let a = ip(a);
    let c = if c.is_empty() {
        Family::of(a).bits()
    } else {
        c.parse().unwrap()
    };
    Elem::new(a, c)
}

fn add(st: &mut SetStore, name: &str, e: Elem, nomatch: bool) {
    let opts = AddOpts {
        nomatch,
        ..AddOpts::default()
    };
    st.apply(
        &SetOp::Add {
            name: name.into(),
            entry: Entry::Elems(vec![e]),
            opts,
        },
        false,
        1,
    )
    .unwrap();
}

fn create(st: &mut SetStore, name: &str, kind: SetKind) {
    let mut h = Header::new(kind);
    if kind == SetKind::BitmapPort {
        h.range = (0, 1024);
    }
    st.apply(
        &SetOp::Create {
            name: name.into(),
            header: h,
        },
        false,
        1,
    )
    .unwrap();
}

fn pkt(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        proto,
        sport,
        dport,
        bytes: 100,
    }
}

fn src() -> Dirs {
    Dirs::parse("src").unwrap()
}

#[test]
fn a_more_specific_nomatch_carves_an_exception_out_of_a_wider_net() {
    let mut st = SetStore::new();
    create(&mut st, "hnet", SetKind::HashNet);
    add(&mut st, "hnet", net("198.19.168.0/24"), false);
    add(&mut st, "hnet", net("198.19.168.0/30"), true);
    let t = st.table();
    let id = t.id("hnet").unwrap();
    let m = |a| t.lookup_at(id, src(), &pkt(a, "198.18.0.1", 6, 1, 80), 1);
    assert_eq!(m("198.19.168.1"), Match::NoMatch);
    assert_eq!(m("198.19.168.9"), Match::Hit);
    assert_eq!(m("198.19.169.9"), Match::Absent);
    // The -m set truth table (plain / nomatch / absent).
    let row = |rn| {
        [
            Match::Hit.matches(rn),
            Match::NoMatch.matches(rn),
            Match::Absent.matches(rn),
        ]
    };
    assert_eq!(row(false), [true, false, false]);
    assert_eq!(row(true), [false, true, false]);
    // ipset test honours nomatch the same way, unless nomatch is asked.
    let e = Entry::Elems(vec![net("198.19.168.1")]);
    assert!(!st.test("hnet", &e, false, 1).unwrap());
    assert!(st.test("hnet", &e, true, 1).unwrap());
    assert!(st
        .test("hnet", &Entry::Elems(vec![net("198.19.168.9")]), false, 1)
        .unwrap());
}

#[test]
fn the_longest_prefix_wins_whatever_the_insertion_order() {
    let mut st = SetStore::new();
    create(&mut st, "n", SetKind::HashNet);
    add(&mut st, "n", net("198.19.2.0/24"), true);
    add(&mut st, "n", net("198.18.0.0/15"), false);
    add(&mut st, "n", net("198.19.0.0/16"), false);
    let t = st.table();
    let id = t.id("n").unwrap();
    let m = |a| t.lookup_at(id, src(), &pkt(a, "198.18.0.1", 17, 1, 53), 1);
    assert_eq!(m("198.19.2.3"), Match::NoMatch);
    assert_eq!(m("198.19.3.3"), Match::Hit);
    assert_eq!(m("198.18.9.9"), Match::Hit);
    assert_eq!(m("11.0.0.1"), Match::Absent);
}

#[test]
fn ip_port_matches_address_with_port_and_protocol_in_flag_order() {
    let mut st = SetStore::new();
    create(&mut st, "hipp", SetKind::HashIpPort);
    let mut e = net("198.18.0.10");
    e.proto = 6;
    e.port = 80;
    add(&mut st, "hipp", e, false);
    let t = st.table();
    let id = t.id("hipp").unwrap();
    let dd = Dirs::parse("dst,dst").unwrap();
    let p = pkt("198.18.1.1", "198.18.0.10", 6, 40000, 80);
    assert_eq!(t.lookup_at(id, dd, &p, 1), Match::Hit);
    // udp:80 is another element.
    let p = pkt("198.18.1.1", "198.18.0.10", 17, 40000, 80);
    assert_eq!(t.lookup_at(id, dd, &p, 1), Match::Absent);
    // src,dst takes the source address.
    let p = pkt("198.18.1.1", "198.18.0.10", 6, 40000, 80);
    assert_eq!(
        t.lookup_at(id, Dirs::parse("src,dst").unwrap(), &p, 1),
        Match::Absent
    );
    // Fewer flags than dimensions never match; extra flags are ignored.
    assert_eq!(
        t.lookup_at(id, Dirs::parse("dst").unwrap(), &p, 1),
        Match::Absent
    );
    assert_eq!(
        t.lookup_at(id, Dirs::parse("dst,dst,src").unwrap(), &p, 1),
        Match::Hit
    );
}

#[test]
fn ip_port_net_probes_the_third_dimension_by_prefix() {
    let mut st = SetStore::new();
    create(&mut st, "ipn", SetKind::HashIpPortNet);
    let mut e = net("198.18.0.10");
    e.proto = 6;
    e.port = 443;
    e.b = ip("198.19.0.0");
    e.cb = 16;
    add(&mut st, "ipn", e, false);
    let t = st.table();
    let id = t.id("ipn").unwrap();
    let d = Dirs::parse("dst,dst,src").unwrap();
    assert_eq!(
        t.lookup_at(id, d, &pkt("198.19.5.5", "198.18.0.10", 6, 1, 443), 1),
        Match::Hit
    );
    assert_eq!(
        t.lookup_at(id, d, &pkt("198.20.5.5", "198.18.0.10", 6, 1, 443), 1),
        Match::Absent
    );
}

#[test]
fn bitmap_port_matches_only_tcp_and_udp() {
    let mut st = SetStore::new();
    create(&mut st, "bp", SetKind::BitmapPort);
    let mut e = net("0.0.0.0");
    e.port = 22;
    add(&mut st, "bp", e, false);
    let t = st.table();
    let id = t.id("bp").unwrap();
    let d = Dirs::parse("dst").unwrap();
    assert_eq!(
        t.lookup_at(id, d, &pkt("1.1.1.1", "2.2.2.2", 6, 1, 22), 1),
        Match::Hit
    );
    assert_eq!(
        t.lookup_at(id, d, &pkt("1.1.1.1", "2.2.2.2", 17, 1, 22), 1),
        Match::Hit
    );
    assert_eq!(
        t.lookup_at(id, d, &pkt("1.1.1.1", "2.2.2.2", 132, 1, 22), 1),
        Match::Absent
    );
    assert_eq!(
        t.lookup_at(id, d, &pkt("1.1.1.1", "2.2.2.2", 6, 1, 2000), 1),
        Match::Absent
    );
    // Out of range elements are refused.
    let mut e = net("0.0.0.0");
    e.port = 2000;
    let r = st.apply(
        &SetOp::Add {
            name: "bp".into(),
            entry: Entry::Elems(vec![e]),
            opts: AddOpts::default(),
        },
        false,
        1,
    );
    assert_eq!(r, Err(SetError::OutOfRange));
}

#[test]
fn list_set_tries_members_in_order_and_holds_them() {
    let mut st = SetStore::new();
    create(&mut st, "a", SetKind::HashIp);
    create(&mut st, "b", SetKind::HashNet);
    create(&mut st, "ls", SetKind::ListSet);
    add(&mut st, "b", net("198.18.0.0/15"), true);
    add(&mut st, "a", net("198.18.0.1"), false);
    for m in ["b", "a"] {
        st.apply(
            &SetOp::Add {
                name: "ls".into(),
                entry: Entry::Member {
                    name: m.into(),
                    at: None,
                },
                opts: AddOpts::default(),
            },
            false,
            1,
        )
        .unwrap();
    }
    let t = st.table();
    let id = t.id("ls").unwrap();
    // b (nomatch) is first and decides.
    assert_eq!(
        t.lookup_at(id, src(), &pkt("198.18.0.1", "2.2.2.2", 6, 1, 1), 1),
        Match::NoMatch
    );
    assert_eq!(
        st.apply(&SetOp::Destroy(Some("a".into())), false, 1),
        Err(SetError::Busy)
    );
    // Destroying everything at once is allowed: the list goes too.
    st.apply(&SetOp::Destroy(None), false, 1).unwrap();
    assert!(st.table().is_empty());
}

#[test]
fn a_rule_reference_blocks_destroy_until_released() {
    let mut st = SetStore::new();
    create(&mut st, "a", SetKind::HashIp);
    let id = st.hold("a").unwrap();
    assert_eq!(
        st.apply(&SetOp::Destroy(None), false, 1),
        Err(SetError::Busy)
    );
    assert!(st.get("a").is_some());
    st.release(id);
    st.apply(&SetOp::Destroy(Some("a".into())), false, 1)
        .unwrap();
}

#[test]
fn swap_exchanges_contents_and_keeps_names_on_their_slots() {
    let mut st = SetStore::new();
    create(&mut st, "live", SetKind::HashNet);
    create(&mut st, "next", SetKind::HashNet);
    create(&mut st, "other", SetKind::HashIp);
    add(&mut st, "next", net("198.18.0.0/15"), false);
    let before = st.table();
    let id = before.id("live").unwrap();
    st.apply(&SetOp::Swap("live".into(), "next".into()), false, 1)
        .unwrap();
    let t = st.table();
    assert_eq!(t.id("live"), Some(id));
    let p = pkt("198.19.1.1", "2.2.2.2", 6, 1, 1);
    assert_eq!(t.lookup_at(id, src(), &p, 1), Match::Hit);
    // The snapshot taken before still sees the old contents.
    assert_eq!(before.lookup_at(id, src(), &p, 1), Match::Absent);
    assert_eq!(
        st.apply(&SetOp::Swap("live".into(), "other".into()), false, 1),
        Err(SetError::SwapType)
    );
    assert_eq!(
        st.apply(&SetOp::Swap("live".into(), "nope".into()), false, 1),
        Err(SetError::SwapNoSecond)
    );
}

#[test]
fn counters_count_every_hit_and_timeouts_expire() {
    let mut st = SetStore::new();
    let mut h = Header::new(SetKind::HashIp);
    h.counters = true;
    h.timeout = Some(10);
    st.apply(
        &SetOp::Create {
            name: "t".into(),
            header: h,
        },
        false,
        100,
    )
    .unwrap();
    st.apply(
        &SetOp::Add {
            name: "t".into(),
            entry: Entry::Elems(vec![net("198.18.0.1")]),
            opts: AddOpts::default(),
        },
        false,
        100,
    )
    .unwrap();
    let t = st.table();
    let id = t.id("t").unwrap();
    let p = pkt("198.18.0.1", "2.2.2.2", 6, 1, 1);
    assert_eq!(t.lookup_at(id, src(), &p, 105), Match::Hit);
    assert_eq!(t.lookup_at(id, src(), &p, 109), Match::Hit);
    assert_eq!(t.lookup_at(id, src(), &p, 110), Match::Absent);
    let set = st.get("t").unwrap();
    let listed = set.elements(105);
    assert_eq!(listed[0].val.counts(), (2, 200));
    assert!(set.elements(110).is_empty());
    // Re-adding is refused, unless -exist (which refreshes the timeout).
    let again = SetOp::Add {
        name: "t".into(),
        entry: Entry::Elems(vec![net("198.18.0.1")]),
        opts: AddOpts::default(),
    };
    assert_eq!(st.apply(&again, false, 105), Err(SetError::ElemExists));
    st.apply(&again, true, 105).unwrap();
    assert_eq!(st.get("t").unwrap().elements(105)[0].val.expires, 115);
}

#[test]
fn maxelem_is_enforced_and_families_checked() {
    let mut st = SetStore::new();
    let mut h = Header::new(SetKind::HashIp);
    h.maxelem = 2;
    st.apply(
        &SetOp::Create {
            name: "s".into(),
            header: h,
        },
        false,
        1,
    )
    .unwrap();
    add(&mut st, "s", net("198.18.0.1"), false);
    add(&mut st, "s", net("198.18.0.2"), false);
    let op = |e| SetOp::Add {
        name: "s".into(),
        entry: Entry::Elems(vec![e]),
        opts: AddOpts::default(),
    };
    assert_eq!(
        st.apply(&op(net("198.18.0.3")), false, 1),
        Err(SetError::HashFull)
    );
    assert_eq!(
        st.apply(&op(net("2001:db8::1")), false, 1),
        Err(SetError::WantIpv4)
    );
}

#[test]
fn ipv6_nets_match_by_prefix() {
    let mut st = SetStore::new();
    let mut h = Header::new(SetKind::HashNet);
    h.family = Family::Inet6;
    st.apply(
        &SetOp::Create {
            name: "v6".into(),
            header: h,
        },
        false,
        1,
    )
    .unwrap();
    add(&mut st, "v6", net("2001:db8::/32"), false);
    let t = st.table();
    let id = t.id("v6").unwrap();
    let p = pkt("2001:db8:5::1", "2001:db8::2", 6, 1, 1);
    assert_eq!(t.lookup_at(id, src(), &p, 1), Match::Hit);
    let p = pkt("198.18.0.1", "198.18.0.2", 6, 1, 1);
    assert_eq!(t.lookup_at(id, src(), &p, 1), Match::Absent);
}
