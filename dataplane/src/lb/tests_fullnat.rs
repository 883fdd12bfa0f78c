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
