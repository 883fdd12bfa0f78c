//! The SYN proxy in the load-balancing stage, packet by packet: no entry
//! for a SYN, the entry on a valid cookie, the server's handshake, and the
//! sequence numbers of the rest of the connection; and what a stray TCP
//! segment to a service gets.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ApplyError, ConfigOp, ConfigStore};
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::tunables::Tunable;
use crate::wire::parse_packet;
use etherparse::{PacketBuilder, TcpHeaderSlice};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

const CLIENT: &str = "198.18.0.10";
const VIP: &str = "198.18.0.100";
const RS: &str = "198.18.1.11";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, _dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((ip("198.18.1.1"), 1500))
    }
}

fn key() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(VIP),
        port: 80,
    }
}

fn dest(method: ForwardMethod) -> DestConfig {
    DestConfig {
        addr: ip(RS),
        port: 8080,
        method,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// One NAT service on VIP:80 to RS:8080, with `-j enable` if `proxied`.
fn store(proxied: bool) -> ConfigStore {
    let mut st = ConfigStore::new();
    let mut cfg = ServiceConfig::new(key());
    cfg.scheduler = "rr".into();
    cfg.synproxy = proxied;
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    st.apply(&ConfigOp::AddDest(key(), dest(ForwardMethod::Masq)))
        .unwrap();
    st
}

fn lb_for(st: &ConfigStore) -> Lb {
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 1024,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    lb
}

/// A TCP segment as a Linux peer sends it (IPv4, MSS 1460 and SACK
/// permitted on a SYN).
#[allow(clippy::too_many_arguments)]
fn seg(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        unreachable!()
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(s.octets(), d.octets(), 64)
        .tcp(sport, dport, seq, 29200);
    if flags & SYN != 0 {
        b = b.syn();
        b = b
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
            ])
            .unwrap();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn run(lb: &mut Lb, f: &[u8], now: u64) -> (Action, Vec<u8>) {
    let mut b = TestBuf::with_capacity(f, 2048);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process(&mut b, &m, now, &Routes);
    (a, b.data().to_vec())
}

fn tcp(f: &[u8]) -> TcpHeaderSlice<'_> {
    let m = parse_packet(f).unwrap();
    TcpHeaderSlice::from_slice(&f[usize::from(m.l4_offset)..]).unwrap()
}

fn ends(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let m = parse_packet(f).unwrap();
    (m.src, m.sport, m.dst, m.dport)
}

fn payload(f: &[u8]) -> Vec<u8> {
    let m = parse_packet(f).unwrap();
    let t = tcp(f);
    f[usize::from(m.l4_offset) + t.slice().len()..m.l3_end()].to_vec()
}

#[test]
fn syns_get_a_cookie_and_no_entry() {
    let mut lb = lb_for(&store(true));
    for port in 0..50u16 {
        let (a, out) = run(
            &mut lb,
            &seg(CLIENT, 1000 + port, VIP, 80, 7, 0, SYN, b""),
            1,
        );
        assert_eq!(a, Action::Forward(ip(CLIENT)));
        let t = tcp(&out);
        assert!(t.syn() && t.ack());
        assert_eq!(t.acknowledgment_number(), 8);
        assert_eq!(ends(&out), (ip(VIP), 80, ip(CLIENT), 1000 + port));
    }
    assert_eq!(lb.conns().len(), 0, "no entry before the client's ACK");
    let c = lb.counters();
    assert_eq!(c.synproxy.cookies_sent.load(Ordering::Relaxed), 50);
    assert_eq!(c.created.load(Ordering::Relaxed), 0);
}

#[test]
fn a_proxied_connection_end_to_end_in_the_stage() {
    let mut lb = lb_for(&store(true));
    let (_, sa) = run(&mut lb, &seg(CLIENT, 40000, VIP, 80, 100, 0, SYN, b""), 1);
    let cookie = tcp(&sa).sequence_number();

    // The ACK (with a request in it) opens the server side: a SYN to RS.
    let ack = seg(
        CLIENT,
        40000,
        VIP,
        80,
        101,
        cookie.wrapping_add(1),
        ACK,
        b"GET /",
    );
    let (a, syn) = run(&mut lb, &ack, 2);
    assert_eq!(a, Action::Forward(ip(RS)));
    assert_eq!(ends(&syn), (ip(CLIENT), 40000, ip(RS), 8080));
    let t = tcp(&syn);
    assert!(t.syn() && !t.ack());
    assert_eq!(t.sequence_number(), 100);
    assert_eq!(lb.conns().len(), 1);
    let id = lb.conns().ids().next().unwrap();
    assert_eq!(lb.conns().get(id).state(), proto_tcp::state::SYN_RECV);

    // The request again (the client's retransmission) before the server
    // answers: the SYN again.
    let (a, again) = run(&mut lb, &ack, 3);
    assert_eq!(a, Action::Forward(ip(RS)));
    assert!(tcp(&again).syn());

    // The server's SYN-ACK: the ACK back to it, nothing to the client.
    let (a, back) = run(
        &mut lb,
        &seg(RS, 8080, CLIENT, 40000, 9000, 101, SYN | ACK, b""),
        4,
    );
    assert_eq!(a, Action::Forward(ip(RS)));
    assert_eq!(ends(&back), (ip(CLIENT), 40000, ip(RS), 8080));
    let t = tcp(&back);
    assert!(t.ack() && !t.syn());
    assert_eq!(
        (t.sequence_number(), t.acknowledgment_number()),
        (101, 9001)
    );
    assert_eq!(lb.conns().get(id).state(), proto_tcp::state::ESTABLISHED);

    // The request retransmitted: to the server, its ACK in the server's
    // numbering.
    let (a, req) = run(&mut lb, &ack, 5);
    assert_eq!(a, Action::Forward(ip(RS)));
    assert_eq!(tcp(&req).acknowledgment_number(), 9001);
    assert_eq!(payload(&req), b"GET /");

    // The answer: from the VIP, in the cookie's numbering.
    let (a, resp) = run(
        &mut lb,
        &seg(RS, 8080, CLIENT, 40000, 9001, 106, ACK, b"200"),
        6,
    );
    assert_eq!(a, Action::Forward(ip(CLIENT)));
    assert_eq!(ends(&resp), (ip(VIP), 80, ip(CLIENT), 40000));
    assert_eq!(tcp(&resp).sequence_number(), cookie.wrapping_add(1));
    assert_eq!(lb.counters().synproxy.opened.load(Ordering::Relaxed), 1);
}

#[test]
fn a_bad_cookie_or_a_stray_ack_is_passed_for_the_reset_and_a_reset_is_dropped() {
    for proxied in [true, false] {
        let mut lb = lb_for(&store(proxied));
        let (a, _) = run(&mut lb, &seg(CLIENT, 5, VIP, 80, 1, 12345, ACK, b""), 1);
        assert_eq!(a, Action::Pass, "proxied: {proxied}");
        let (a, _) = run(&mut lb, &seg(CLIENT, 5, VIP, 80, 1, 0, RST, b""), 1);
        assert_eq!(a, Action::Drop(LbDrop::NoConnection));
        assert_eq!(lb.conns().len(), 0);
    }
}

#[test]
fn sloppy_tcp_still_schedules_a_stray_ack_of_an_unproxied_service() {
    let mut st = store(false);
    st.apply(&ConfigOp::SetTunable(Tunable::SloppyTcp, 1))
        .unwrap();
    let mut lb = lb_for(&st);
    let (a, _) = run(&mut lb, &seg(CLIENT, 5, VIP, 80, 1, 2, ACK, b""), 1);
    assert_eq!(a, Action::Forward(ip(RS)));
    assert_eq!(lb.conns().len(), 1);
}

#[test]
fn the_global_switch_proxies_nat_services_only() {
    let mut st = store(false);
    st.apply(&ConfigOp::SetTunable(Tunable::Synproxy, 1))
        .unwrap();
    let dr = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(VIP),
        port: 81,
    };
    let mut cfg = ServiceConfig::new(dr);
    cfg.scheduler = "rr".into();
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    st.apply(&ConfigOp::AddDest(dr, dest(ForwardMethod::Route)))
        .unwrap();
    let mut lb = lb_for(&st);
    let (a, _) = run(&mut lb, &seg(CLIENT, 5, VIP, 80, 1, 0, SYN, b""), 1);
    assert_eq!(a, Action::Forward(ip(CLIENT)), "NAT: answered by the proxy");
    let (a, _) = run(&mut lb, &seg(CLIENT, 5, VIP, 81, 1, 0, SYN, b""), 1);
    assert_eq!(a, Action::Forward(ip(RS)), "DR: forwarded as before");
    assert_eq!(lb.conns().len(), 1);
}

#[test]
fn the_proxy_refuses_dr_tun_and_udp_and_changes_nothing() {
    let mut st = store(true);
    let before = st.snapshot().services.len();
    let mut d = dest(ForwardMethod::Route);
    d.addr = ip("198.18.1.12");
    let e = st.apply(&ConfigOp::AddDest(key(), d.clone())).unwrap_err();
    assert!(matches!(e, ApplyError::Invalid(..)));
    assert!(e.detail().contains("masquerading"), "{}", e.detail());
    assert_eq!(st.snapshot().services[0].dests.len(), 1);

    let mut st = store(false);
    d.method = ForwardMethod::Route;
    st.apply(&ConfigOp::AddDest(key(), d)).unwrap();
    let mut cfg = ServiceConfig::new(key());
    cfg.scheduler = "rr".into();
    cfg.synproxy = true;
    assert!(st.apply(&ConfigOp::EditService(cfg)).is_err());
    assert!(!st.snapshot().services[0].config.synproxy);

    let udp = ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: ip(VIP),
        port: 53,
    };
    let mut cfg = ServiceConfig::new(udp);
    cfg.synproxy = true;
    assert!(st.apply(&ConfigOp::AddService(cfg)).is_err());
    assert_eq!(st.snapshot().services.len(), before);
}
