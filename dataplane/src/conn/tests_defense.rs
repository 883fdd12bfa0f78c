//! `drop_entry`'s choice of entries ([`ConnTable::random_drop`]), against
//! the kernel's `ip_vs_random_dropentry` and `todrop_entry`: half-open TCP
//! and SCTP in INIT1/INIT always, established TCP and SCTP and UDP only
//! when idle 60 s and with 1..=8 client
//! packets (the i-th such entry with i packets), never a template that
//! controls connections, never a busy or a long-lived chatty flow.

use std::sync::Arc;

use super::proto_tcp::flags::{ACK, SYN};
use super::*;
use crate::model::{DestConfig, DestShared, ForwardMethod};

const TCP: u8 = 6;
const UDP: u8 = 17;
const S: u64 = 1000;

fn dest() -> Arc<DestShared> {
    Arc::new(DestShared::new(&DestConfig {
        addr: "198.18.1.11".parse().unwrap(),
        port: 80,
        method: ForwardMethod::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }))
}

fn conn(t: &mut ConnTable, d: &Arc<DestShared>, proto: u8, cport: u16, flags: u8) -> ConnId {
    let n = NewConn {
        proto,
        client: "198.18.0.2".parse::<std::net::IpAddr>().unwrap().into(),
        cport,
        vaddr: "198.18.0.100".parse::<std::net::IpAddr>().unwrap().into(),
        vport: 80,
        daddr: d.addr.into(),
        dport: 80,
        method: ForwardMethod::Masq,
        dest: d,
        svc: None,
        control: None,
        local: None,
    };
    t.create(&n, flags, 0).unwrap()
}

/// Runs `random_drop` over every slot, `rounds` times (a sweep picks each
/// slot once), and returns which of `ids` are still there.
fn sweep(t: &mut ConnTable, ids: &[ConnId], now: u64, rounds: usize) -> Vec<bool> {
    let mut counters = [0i8; 9];
    let cap = t.capacity();
    for _ in 0..rounds {
        let mut next = 0u32;
        t.random_drop(
            cap as usize,
            || {
                next += 1;
                next - 1
            },
            now,
            &mut counters,
        );
    }
    ids.iter()
        .map(|id| t.get(*id).flags() & table::cflags::LIVE != 0)
        .collect()
}

#[test]
fn half_open_tcp_goes_at_once_busy_entries_stay() {
    let d = dest();
    let mut t = ConnTable::new(16, None, 0);
    let half = conn(&mut t, &d, TCP, 1000, SYN);
    let est = conn(&mut t, &d, TCP, 1001, SYN);
    assert_eq!(t.on_packet(est, Dir::In, ACK, 0), Verdict::Forward);
    let udp = conn(&mut t, &d, UDP, 1002, 0);
    // 30 s later nothing established or UDP is idle long enough.
    assert_eq!(
        sweep(&mut t, &[half, est, udp], 30 * S, 1),
        [false, true, true]
    );
}

#[test]
fn idle_entries_with_few_packets_are_thinned_as_the_kernel_does() {
    let d = dest();
    let mut t = ConnTable::new(64, None, 0);
    // Four UDP entries with one client packet each, idle 61 s: the
    // counter for 1 packet drops every one of them.
    let one: Vec<ConnId> = (0..4).map(|p| conn(&mut t, &d, UDP, 2000 + p, 0)).collect();
    // Four with two packets: every second one.
    let two: Vec<ConnId> = (0..4)
        .map(|p| {
            let id = conn(&mut t, &d, UDP, 3000 + p, 0);
            t.on_packet(id, Dir::In, 0, 0);
            id
        })
        .collect();
    // Four with more than 8: never.
    let many: Vec<ConnId> = (0..4)
        .map(|p| {
            let id = conn(&mut t, &d, UDP, 4000 + p, 0);
            for _ in 0..9 {
                t.on_packet(id, Dir::In, 0, 0);
            }
            id
        })
        .collect();
    let left = sweep(&mut t, &[one, two, many].concat(), 61 * S, 1);
    assert_eq!(&left[0..4], [false; 4]);
    assert_eq!(left[4..8].iter().filter(|l| !**l).count(), 2);
    assert_eq!(&left[8..12], [true; 4]);
}

#[test]
fn sctp_entries_go_in_init_and_when_idle_established_never_otherwise() {
    use super::proto_sctp::event;
    const SCTP: u8 = 132;
    let d = dest();
    let mut t = ConnTable::new(16, None, 0);
    // INIT1 (one INIT) and INIT (a second INIT) go at once, as half-open
    // TCP does.
    let init1 = conn(&mut t, &d, SCTP, 1000, event::INIT);
    let init = conn(&mut t, &d, SCTP, 1001, event::INIT);
    t.on_packet(init, Dir::In, event::INIT, 0);
    // ESTABLISHED with one client packet, idle: picked by todrop_entry.
    let est = conn(&mut t, &d, SCTP, 1002, event::DATA);
    // C-SENT (answered INIT): never.
    let sent = conn(&mut t, &d, SCTP, 1003, event::INIT);
    t.on_packet(sent, Dir::Out, event::INIT_ACK, 0);
    let names: Vec<String> = t.iter_entries(0).map(|e| e.state).collect();
    assert_eq!(names, ["INIT1", "INIT", "ESTABLISHED", "C-SENT"]);
    assert_eq!(
        sweep(&mut t, &[init1, init, est, sent], 30 * S, 1),
        [false, false, true, true],
        "30 s: the established one is not idle enough"
    );
    assert_eq!(
        sweep(&mut t, &[est, sent], 61 * S, 1),
        [false, true],
        "61 s idle with one packet"
    );
}
