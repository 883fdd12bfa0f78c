//! FULLNAT through the load-balancing stage: local address and port of a
//! new connection, replies back to the client, TOA on the handshake's ACK,
//! and a local-port pool that runs out.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::wire::testutil::{checksums_ok, frame, L4};
use crate::wire::{checksum, parse_packet, tcp};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((dst, 1500))
    }
}

const VIP: &str = "198.18.0.100";
const LIP: &str = "198.18.0.50";
const RIP: &str = "198.18.0.11";
const CLIENT: &str = "198.18.0.200";

fn key() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(VIP),
        port: 80,
    }
}

fn store(toa: bool) -> ConfigStore {
    let mut st = ConfigStore::new();
    let mut cfg = ServiceConfig::new(key());
    cfg.scheduler = "rr".into();
    cfg.toa = toa;
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    st.apply(&ConfigOp::AddDest(
        key(),
        DestConfig {
            addr: ip(RIP),
            port: 8080,
            method: ForwardMethod::FullNat,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    ))
    .unwrap();
    st.apply(&ConfigOp::AddLocal(key(), ip(LIP))).unwrap();
    st
}

fn lb_for(st: &ConfigStore) -> Lb {
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 1 << 17,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    lb
}

fn tcp_frame(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, payload);
    let m = parse_packet(&f).unwrap();
    let off = usize::from(m.l4_offset);
    let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    f[off + 13] = flags;
    let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
    let c = checksum::update16(t.checksum(), old, new);
    t.set_checksum(c);
    f
}

fn run(lb: &mut Lb, f: &[u8]) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process(&mut b, &m, 0, &Routes);
    (a, b.data().to_vec())
}

fn ends(f: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    let m = parse_packet(f).unwrap();
    ((m.src, m.sport), (m.dst, m.dport))
}

#[test]
fn a_connection_leaves_from_the_local_address_and_its_replies_return_as_the_vip() {
    let st = store(false);
    let mut lb = lb_for(&st);
    let (a, out) = run(&mut lb, &tcp_frame(CLIENT, 40000, VIP, 80, 0x02, b""));
    assert_eq!(a, Action::Forward(ip(RIP)));
    let ((src, lport), dst) = ends(&out);
    assert_eq!((src, dst), (ip(LIP), (ip(RIP), 8080)));
    assert!(LOCAL_PORTS_FOR_TESTS.contains(&lport));
    assert!(checksums_ok(&out));
    let (a, back) = run(&mut lb, &tcp_frame(RIP, 8080, LIP, lport, 0x12, b""));
    assert_eq!(a, Action::Forward(ip(CLIENT)));
    assert_eq!(ends(&back), ((ip(VIP), 80), (ip(CLIENT), 40000)));
    assert!(checksums_ok(&back));
    let snap = st.snapshot();
    assert_eq!(snap.locals[0].conns.load(Ordering::Relaxed), 1);
}

#[test]
fn toa_rides_the_handshake_ack_and_stops_once_the_server_sent_data() {
    let st = store(true);
    let mut lb = lb_for(&st);
    let (_, out) = run(&mut lb, &tcp_frame(CLIENT, 40000, VIP, 80, 0x02, b""));
    let lport = ends(&out).0 .1;
    run(&mut lb, &tcp_frame(RIP, 8080, LIP, lport, 0x12, b""));
    let (_, ack) = run(&mut lb, &tcp_frame(CLIENT, 40000, VIP, 80, 0x10, b""));
    let m = parse_packet(&ack).unwrap();
    let l4 = usize::from(m.l4_offset);
    assert_eq!(ack[l4 + 12] >> 4, 7, "data offset 5 + 2 words");
    assert_eq!(ack[l4 + 20..l4 + 28], [254, 8, 0x9c, 0x40, 198, 18, 0, 200]);
    assert!(checksums_ok(&ack));
    run(&mut lb, &tcp_frame(RIP, 8080, LIP, lport, 0x18, b"hello"));
    let (_, later) = run(&mut lb, &tcp_frame(CLIENT, 40000, VIP, 80, 0x10, b""));
    let m = parse_packet(&later).unwrap();
    assert_eq!(
        later[usize::from(m.l4_offset) + 12] >> 4,
        5,
        "no TOA any more"
    );
}

#[test]
fn a_pool_that_runs_out_refuses_new_connections_and_keeps_the_old_ones() {
    let st = store(false);
    let mut lb = lb_for(&st);
    let total = LOCAL_PORTS_FOR_TESTS.len();
    let mut first = None;
    for i in 0..total {
        let sport = 1000 + (i % 60000) as u16;
        let client = format!("198.18.{}.{}", 2 + i / 60000, 1);
        let (a, out) = run(&mut lb, &tcp_frame(&client, sport, VIP, 80, 0x02, b""));
        assert_eq!(a, Action::Forward(ip(RIP)), "connection {i}");
        if i == 0 {
            first = Some(ends(&out).0 .1);
        }
    }
    let (a, _) = run(&mut lb, &tcp_frame("198.18.9.9", 999, VIP, 80, 0x02, b""));
    assert_eq!(a, Action::Drop(LbDrop::NoLocalPort));
    assert_eq!(lb.counters().drops(LbDrop::NoLocalPort), 1);
    assert_eq!(st.snapshot().locals[0].conflicts.load(Ordering::Relaxed), 1);
    // The first connection still works both ways.
    let (a, _) = run(&mut lb, &tcp_frame("198.18.2.1", 1000, VIP, 80, 0x10, b""));
    assert_eq!(a, Action::Forward(ip(RIP)));
    let (a, _) = run(
        &mut lb,
        &tcp_frame(RIP, 8080, LIP, first.unwrap(), 0x10, b""),
    );
    assert_eq!(a, Action::Forward(ip("198.18.2.1")));
}

const LOCAL_PORTS_FOR_TESTS: std::ops::RangeInclusive<u16> = fullnat::LOCAL_PORTS;

/// A TCP segment with sequence and acknowledgement numbers and options
/// (a multiple of 4 bytes), checksums valid.
#[allow(clippy::too_many_arguments)]
fn seg(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    opts: &[u8],
) -> Vec<u8> {
    let mut body = opts.to_vec();
    body.extend_from_slice(b"data");
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, &body);
    let m = parse_packet(&f).unwrap();
    let l4 = usize::from(m.l4_offset);
    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    f[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
    f[l4 + 12] = (((20 + opts.len()) / 4) as u8) << 4;
    f[l4 + 13] = flags;
    f[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
    let end = m.l3_end();
    let ph = match (m.src, m.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, 6, (end - l4) as u16),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, 6, (end - l4) as u32),
        _ => unreachable!(),
    };
    let c = checksum::finish(ph, &f[l4..end]);
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    f
}

fn seq_ack(f: &[u8]) -> (u32, u32) {
    let m = parse_packet(f).unwrap();
    let l4 = usize::from(m.l4_offset);
    let r = |at: usize| u32::from_be_bytes(f[l4 + at..l4 + at + 4].try_into().unwrap());
    (r(4), r(8))
}

/// NOP, NOP, SACK with one block.
fn sack(left: u32, right: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 5, 10];
    o.extend_from_slice(&left.to_be_bytes());
    o.extend_from_slice(&right.to_be_bytes());
    o
}

/// One handshake and a data exchange with client ISN `cisn` and server
/// ISN `sisn`: the server's ISN as it saw the client's, and the client's
/// view of the server's acknowledgement and SACK block.
fn exchange(cisn: u32, sisn: u32) -> (u32, (u32, u32), (u32, u32), u32) {
    let st = store(false);
    let mut lb = lb_for(&st);
    let (_, syn) = run(&mut lb, &seg(CLIENT, 40000, VIP, 80, 0x02, cisn, 0, &[]));
    assert!(checksums_ok(&syn));
    let (s_isn, _) = seq_ack(&syn);
    let lport = ends(&syn).0 .1;
    let (_, synack) = run(
        &mut lb,
        &seg(
            RIP,
            8080,
            LIP,
            lport,
            0x12,
            sisn,
            s_isn.wrapping_add(1),
            &[],
        ),
    );
    assert!(checksums_ok(&synack));
    let client_view_synack = seq_ack(&synack);
    let (_, data) = run(
        &mut lb,
        &seg(
            CLIENT,
            40000,
            VIP,
            80,
            0x18,
            cisn.wrapping_add(1),
            sisn.wrapping_add(1),
            &[],
        ),
    );
    assert!(checksums_ok(&data));
    let server_view_data = seq_ack(&data).0;
    // The server acknowledges 4 bytes and SACKs a later block.
    let a = s_isn.wrapping_add(5);
    let opts = sack(s_isn.wrapping_add(9), s_isn.wrapping_add(13));
    let (_, ack) = run(
        &mut lb,
        &seg(RIP, 8080, LIP, lport, 0x10, sisn.wrapping_add(1), a, &opts),
    );
    assert!(checksums_ok(&ack));
    let m = parse_packet(&ack).unwrap();
    let l4 = usize::from(m.l4_offset);
    let edge = |at: usize| u32::from_be_bytes(ack[l4 + at..l4 + at + 4].try_into().unwrap());
    assert_eq!(
        seq_ack(&ack).0,
        sisn.wrapping_add(1),
        "the server's own numbers pass"
    );
    assert_eq!(client_view_synack.0, sisn, "the server's ISN passes");
    (
        s_isn,
        client_view_synack,
        (seq_ack(&ack).1, edge(24)),
        server_view_data.wrapping_sub(s_isn),
    )
}

#[test]
fn the_real_server_sees_its_own_isn_for_the_client_and_replies_are_translated_back() {
    let (s_isn, synack, (ack, sack_left), data_off) = exchange(1000, 5000);
    assert_ne!(s_isn, 1000, "the client's ISN reached the real server");
    assert_eq!(
        synack.1, 1001,
        "the SYN-ACK acknowledges the client's own ISN"
    );
    assert_eq!(data_off, 1, "the client's data follows the translated ISN");
    assert_eq!(ack, 1005, "acknowledgement in the client's numbering");
    assert_eq!(sack_left, 1009, "SACK block in the client's numbering");
}

#[test]
fn a_syn_with_timestamps_loses_them_and_the_server_sees_the_new_isn() {
    let st = store(false);
    let mut lb = lb_for(&st);
    let ts = [2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0];
    let (a, syn) = run(&mut lb, &seg(CLIENT, 40000, VIP, 80, 0x02, 1000, 0, &ts));
    assert_eq!(a, Action::Forward(ip(RIP)));
    assert!(checksums_ok(&syn));
    let ((src, _), dst) = ends(&syn);
    assert_eq!((src, dst), (ip(LIP), (ip(RIP), 8080)));
    let (s_isn, _) = seq_ack(&syn);
    assert_ne!(s_isn, 1000, "the client's ISN reached the real server");
    let m = parse_packet(&syn).unwrap();
    let l4 = usize::from(m.l4_offset);
    assert_eq!(
        syn[l4 + 20..l4 + 36],
        [2, 4, 5, 0xb4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        "the MSS stays, the timestamps are NOPs"
    );
    let (_, data) = run(&mut lb, &seg(CLIENT, 40000, VIP, 80, 0x18, 1001, 1, &[]));
    assert!(checksums_ok(&data));
    assert_eq!(seq_ack(&data).0, s_isn.wrapping_add(1));
    let t = st.snapshot().services[0].shared.stats.total();
    assert_eq!(
        (t.conns, t.inpkts),
        (1, 2),
        "one connection, two packets in"
    );
}

#[test]
fn two_connections_get_unrelated_isns_and_a_reused_port_a_later_one() {
    let key = crate::sched::hash::SipKey(1, 2);
    let (l, r) = (ConnAddr::from(ip(LIP)), ConnAddr::from(ip(RIP)));
    let a = fullnat::server_isn(key, l, 2000, r, 80, 10);
    let b = fullnat::server_isn(key, l, 2001, r, 80, 10);
    assert_ne!(a, b);
    // 1 ms later the same 4-tuple starts 15625 (1 ms of 64 ns ticks) above.
    let later = fullnat::server_isn(key, l, 2000, r, 80, 11);
    assert_eq!(later.wrapping_sub(a), 15_625);
    let other_key = fullnat::server_isn(crate::sched::hash::SipKey(3, 4), l, 2000, r, 80, 10);
    assert_ne!(a, other_key);
}

proptest::proptest! {
    /// The ISN's IPv4 straight-line hash is the generic SipHash-1-3 of
    /// the documented message (and IPv6 goes through the generic one).
    #[test]
    fn server_isn_equals_the_generic_hash(
        k in proptest::prelude::any::<(u64, u64)>(),
        l in proptest::prelude::any::<[u8; 16]>(),
        r in proptest::prelude::any::<[u8; 16]>(),
        v4 in proptest::prelude::any::<bool>(),
        ports in proptest::prelude::any::<(u16, u16)>(),
        now in proptest::prelude::any::<u64>(),
    ) {
        let key = crate::sched::hash::SipKey(k.0, k.1);
        let (l, r) = if v4 {
            (ConnAddr::from_v4([l[0], l[1], l[2], l[3]]), ConnAddr::from_v4([r[0], r[1], r[2], r[3]]))
        } else {
            (ConnAddr::from_v6(l), ConnAddr::from_v6(r))
        };
        let (msg, n) = fullnat::isn_message(l, ports.0, r, ports.1);
        let want = (crate::sched::hash::siphash(&msg[..n], key, 1, 3) as u32)
            .wrapping_add(now.wrapping_mul(15_625) as u32);
        proptest::prop_assert_eq!(fullnat::server_isn(key, l, ports.0, r, ports.1, now), want);
        proptest::prop_assert_eq!(n, if v4 { 12 } else { 36 });
    }
}

proptest::proptest! {
    // Each case builds a stage (a connection table of 128 k slots).
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Whatever the ISNs, the real server reads the client's stream at the
    /// same offsets from the ISN it was shown, and the client reads the
    /// server's acknowledgements and SACK blocks at the same offsets from
    /// its own ISN; every checksum stays valid.
    #[test]
    fn offsets_survive_the_translation(cisn in proptest::prelude::any::<u32>(), sisn in proptest::prelude::any::<u32>()) {
        let (_, synack, (ack, left), data_off) = exchange(cisn, sisn);
        proptest::prop_assert_eq!(synack.1, cisn.wrapping_add(1));
        proptest::prop_assert_eq!(data_off, 1);
        proptest::prop_assert_eq!(ack, cisn.wrapping_add(5));
        proptest::prop_assert_eq!(left, cisn.wrapping_add(9));
    }
}

/// Port unreachable from the real server about `sent` (a frame the
/// director sent it).
fn unreachable_about(sent: &[u8]) -> Vec<u8> {
    let mut b = TestBuf::new(sent);
    let m = parse_packet(b.data()).unwrap();
    crate::xmit::icmp::icmp_error_reply(
        &mut b,
        &m,
        crate::xmit::icmp::IcmpErrorKind::PortUnreachable,
        ip(RIP),
    )
    .unwrap();
    b.data().to_vec()
}

#[test]
fn a_real_servers_icmp_error_reaches_the_client_about_its_own_segment() {
    let st = store(false);
    let mut lb = lb_for(&st);
    let (_, syn) = run(&mut lb, &seg(CLIENT, 40000, VIP, 80, 0x02, 1000, 0, &[]));
    let (a, err) = run(&mut lb, &unreachable_about(&syn));
    assert_eq!(a, Action::Forward(ip(CLIENT)));
    assert!(checksums_ok(&err));
    let m = parse_packet(&err).unwrap();
    assert_eq!((m.src, m.dst), (ip(VIP), ip(CLIENT)));
    let q = crate::wire::parse_icmp_quote(&err, &m).unwrap();
    assert_eq!(
        ((q.src, q.sport), (q.dst, q.dport)),
        ((ip(CLIENT), 40000), (ip(VIP), 80))
    );
    let q4 = usize::from(q.l4_offset);
    let seq = u32::from_be_bytes(err[q4 + 4..q4 + 8].try_into().unwrap());
    assert_eq!(seq, 1000, "the client's own ISN in the quote");
    assert_eq!(lb.counters().icmp_related.load(Ordering::Relaxed), 1);
}

#[test]
fn an_icmp_error_about_no_fullnat_connection_is_counted_and_dropped() {
    let st = store(false);
    let mut lb = lb_for(&st);
    let stray = seg(LIP, 4321, RIP, 8080, 0x10, 1, 1, &[]);
    let (a, _) = run(&mut lb, &unreachable_about(&stray));
    assert_eq!(a, Action::Drop(LbDrop::NoConnection));
    assert_eq!(lb.counters().drops(LbDrop::NoConnection), 1);
}

#[test]
fn with_two_workers_replies_and_errors_hash_to_the_worker_that_opened_the_connection() {
    let st = store(false);
    let owners = crate::rss::Ownership::new(2);
    for me in 0..2 {
        let mut lb = Lb::new(
            me,
            LbSettings {
                capacity: 1 << 12,
                ..LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(st.snapshot());
        lb.set_ownership(owners.clone());
        for i in 0..16 {
            let (_, syn) = run(&mut lb, &seg(CLIENT, 41000 + i, VIP, 80, 0x02, 7, 0, &[]));
            let lport = ends(&syn).0 .1;
            // What RSS hashes for the server's reply and for its error.
            let reply = seg(RIP, 8080, LIP, lport, 0x12, 1, 8, &[]);
            let m = parse_packet(&reply).unwrap();
            let (a, p) = lb.client_endpoint(&reply, &m).unwrap();
            assert_eq!(owners.owner(a, p), me, "reply to {LIP}:{lport}");
            let err = unreachable_about(&syn);
            let m = parse_packet(&err).unwrap();
            let (a, p) = lb.client_endpoint(&err, &m).unwrap();
            assert_eq!(owners.owner(a, p), me, "error about {LIP}:{lport}");
            let (act, _) = run(&mut lb, &err);
            assert_eq!(act, Action::Forward(ip(CLIENT)));
        }
    }
}
