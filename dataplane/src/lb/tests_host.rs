//! What the kernel does around a connection's packets that it does not
//! forward as they are: TTLs that run out (either way), and ICMP errors
//! about the connection, counted in the service's packet counters as
//! `ip_vs_in_stats` / `ip_vs_out_stats` count them.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::*;
use crate::buf::TestBuf;
use crate::config::{ConfigOp, ConfigStore};
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::stats::Counters;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::testutil::{checksums_ok, frame, L4};
use crate::wire::{parse_icmp_quote, parse_packet};
use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};

const VIP: &str = "198.18.0.100";
const CLIENT: &str = "198.18.0.2";
const RS: &str = "198.18.1.11";
/// The director's address toward the real servers ([`Routes`]).
const DIRECTOR_SERVER_SIDE: &str = "198.18.1.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, _dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((ip(DIRECTOR_SERVER_SIDE), 1500))
    }
}

/// TCP VIP:80 through NAT to RS:8080.
fn director() -> (ConfigStore, Lb) {
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(VIP),
        port: 80,
    };
    let mut st = ConfigStore::new();
    st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
        .unwrap();
    st.apply(&ConfigOp::AddDest(
        key,
        DestConfig {
            addr: ip(RS),
            port: 8080,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    ))
    .unwrap();
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 64,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    (st, lb)
}

fn service_stats(st: &ConfigStore) -> Counters {
    st.snapshot().services[0].shared.stats.total()
}

/// A TCP segment with `flags` and the given TTL (header checksum right).
fn segment(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, ttl: u8) -> Vec<u8> {
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, b"");
    set_flags(&mut f, flags);
    let mut h = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
    h.set_ttl(ttl);
    h.fill_checksum();
    f
}

/// Sets the TCP flags of frame `f`, keeping its checksum right.
fn set_flags(f: &mut [u8], flags: u8) {
    let m = parse_packet(f).unwrap();
    let l4 = usize::from(m.l4_offset);
    // Flags are not in the pseudo-header: patch the TCP checksum word.
    let old = u16::from_be_bytes([f[l4 + 12], f[l4 + 13]]);
    f[l4 + 13] = flags;
    let new = u16::from_be_bytes([f[l4 + 12], f[l4 + 13]]);
    let c = u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]);
    let c = crate::wire::checksum::update16(c, old, new);
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

fn run(lb: &mut Lb, f: &[u8]) -> (Action, Vec<u8>) {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    let a = lb.process(&mut b, &m, 0, &Routes);
    (a, b.data().to_vec())
}

#[test]
fn a_syn_whose_ttl_runs_out_gets_time_exceeded_from_the_vip_and_counts() {
    let (st, mut lb) = director();
    let (a, out) = run(&mut lb, &segment(CLIENT, 40000, VIP, 80, 0x02, 1));
    assert_eq!(a, Action::Forward(ip(CLIENT)));
    assert!(checksums_ok(&out));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.dst), (ip(VIP), ip(CLIENT)), "from the VIP");
    assert_eq!((m.icmp_type, m.icmp_code), (11, 0));
    assert_eq!(lb.counters().icmp_sent.load(Ordering::Relaxed), 1);
    let s = service_stats(&st);
    assert_eq!(
        (s.conns, s.inpkts, s.outpkts),
        (1, 1, 0),
        "the connection and the SYN count, as the kernel counts them"
    );
}

#[test]
fn a_nat_reply_whose_ttl_runs_out_gets_time_exceeded_toward_the_real_server() {
    let (st, mut lb) = director();
    let (a, _) = run(&mut lb, &segment(CLIENT, 40000, VIP, 80, 0x02, 64));
    assert_eq!(a, Action::Forward(ip(RS)));
    let reply = segment(RS, 8080, CLIENT, 40000, 0x12, 1);
    let (a, out) = run(&mut lb, &reply);
    assert_eq!(a, Action::Forward(ip(RS)));
    assert!(checksums_ok(&out));
    let m = parse_packet(&out).unwrap();
    assert_eq!(
        (m.src, m.dst, m.icmp_type, m.icmp_code),
        (ip(DIRECTOR_SERVER_SIDE), ip(RS), 11, 0)
    );
    let q = parse_icmp_quote(&out, &m).unwrap();
    assert_eq!(
        (q.src, q.sport, q.dst, q.dport),
        (ip(RS), 8080, ip(CLIENT), 40000),
        "quotes the reply as the real server sent it"
    );
    assert_eq!(service_stats(&st).outpkts, 0, "never forwarded");
    assert_eq!(lb.counters().drops(LbDrop::Rewrite), 0);
}

#[test]
fn related_icmp_errors_count_in_the_service_packet_counters() {
    let (st, mut lb) = director();
    let (_, fwd) = run(&mut lb, &segment(CLIENT, 40000, VIP, 80, 0x02, 64));
    let (_, back) = run(&mut lb, &segment(RS, 8080, CLIENT, 40000, 0x12, 64));
    let before = service_stats(&st);
    assert_eq!((before.inpkts, before.outpkts), (1, 1));

    // The client's host says the VIP's SYN-ACK was unwanted.
    let mut b = TestBuf::new(&back);
    let m = parse_packet(b.data()).unwrap();
    icmp_error_reply(&mut b, &m, IcmpErrorKind::PortUnreachable, ip(CLIENT)).unwrap();
    let (a, _) = run(&mut lb, b.data());
    assert_eq!(a, Action::Forward(ip(RS)));
    // The real server says the same of the forwarded SYN.
    let mut b = TestBuf::new(&fwd);
    let m = parse_packet(b.data()).unwrap();
    icmp_error_reply(&mut b, &m, IcmpErrorKind::PortUnreachable, ip(RS)).unwrap();
    let (a, _) = run(&mut lb, b.data());
    assert_eq!(a, Action::Forward(ip(CLIENT)));

    let after = service_stats(&st);
    assert_eq!(
        (after.inpkts, after.outpkts),
        (2, 2),
        "one more packet each way"
    );
    assert_eq!(lb.counters().icmp_related.load(Ordering::Relaxed), 2);
}

#[test]
fn new_connections_refused_on_a_full_table_are_counted() {
    let (st, mut lb) = director();
    let capacity = lb.conns().capacity() as usize;
    let mut forwarded = 0;
    for i in 0..capacity + 10 {
        let f = segment(CLIENT, 1024 + i as u16, VIP, 80, 0x02, 64);
        match run(&mut lb, &f).0 {
            Action::Forward(_) => forwarded += 1,
            Action::Drop(r) => assert_eq!(r, LbDrop::TableFull),
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(forwarded, lb.conns().len());
    let refused = lb.counters().drops(LbDrop::TableFull);
    assert_eq!(refused as usize, capacity + 10 - forwarded);
    assert!(refused >= 10, "{refused}");
    assert_eq!(service_stats(&st).conns as usize, forwarded);
}

#[test]
fn over_ipv6_too_time_exceeded_comes_from_the_vip() {
    let vip = "2001:db8::100";
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(vip),
        port: 80,
    };
    let mut st = ConfigStore::new();
    st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
        .unwrap();
    st.apply(&ConfigOp::AddDest(
        key,
        DestConfig {
            addr: ip("2001:db8:1::11"),
            port: 80,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        },
    ))
    .unwrap();
    let mut lb = Lb::new(0, LbSettings::default(), 0);
    lb.set_snapshot(st.snapshot());
    let mut f = frame(ip("2001:db8::2"), ip(vip), L4::Tcp, 40000, 80, None, b"");
    set_flags(&mut f, 0x02);
    f[14 + 7] = 1; // hop limit (no IPv6 header checksum)
    let (a, out) = run(&mut lb, &f);
    assert_eq!(a, Action::Forward(ip("2001:db8::2")));
    assert!(checksums_ok(&out));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.icmp_type, m.icmp_code), (ip(vip), 3, 0));
}
