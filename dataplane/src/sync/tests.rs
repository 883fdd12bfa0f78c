//! The master's decision and the backup's entry check, from the
//! reference's rules (ipvs.md 6.2).

use super::*;
use crate::conn::proto_tcp::state::*;

fn due(proto: u8, st: u8, old: u8, pkts: u32) -> bool {
    sync_needed(proto, false, st, old, pkts, &SyncParams::default())
}

#[test]
fn established_tcp_is_sent_at_packets_3_53_103() {
    let sent: Vec<u32> = (1..=110)
        .filter(|&n| due(6, ESTABLISHED, ESTABLISHED, n))
        .collect();
    assert_eq!(sent, vec![3, 53, 103]);
    // Becoming ESTABLISHED is not a reason on its own.
    assert!(!due(6, ESTABLISHED, NONE, 2));
}

#[test]
fn a_change_to_a_closing_state_is_sent_at_once() {
    for st in [FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT] {
        assert!(due(6, st, ESTABLISHED, 7), "{st}");
        assert!(!due(6, st, st, 7), "{st} unchanged");
    }
}

#[test]
fn opening_states_are_never_sent() {
    for st in [NONE, SYN_SENT, SYN_RECV, LAST_ACK, LISTEN, SYNACK] {
        assert!((1..200).all(|n| !due(6, st, ESTABLISHED, n)), "{st}");
    }
}

#[test]
fn udp_is_sent_by_count_and_templates_always() {
    assert!(due(17, 0, 0, 3) && due(17, 0, 0, 53) && !due(17, 0, 0, 4));
    assert!(sync_needed(6, true, 0, 0, 1, &SyncParams::default()));
}

#[test]
fn sctp_is_sent_like_tcp_from_its_own_states() {
    use crate::conn::proto_sctp::state as sctp;
    let sent: Vec<u32> = (1..=110)
        .filter(|&n| due(132, sctp::ESTABLISHED, sctp::ESTABLISHED, n))
        .collect();
    assert_eq!(sent, vec![3, 53, 103]);
    for st in [
        sctp::SHUTDOWN_SENT,
        sctp::SHUTDOWN_RECEIVED,
        sctp::SHUTDOWN_ACK_SENT,
        sctp::CLOSED,
    ] {
        assert!(due(132, st, sctp::ESTABLISHED, 7), "{st}");
        assert!(!due(132, st, st, 7), "{st} unchanged");
    }
    for st in [sctp::NONE, sctp::INIT1, sctp::COOKIE_ECHOED, sctp::REJECTED] {
        assert!(
            (1..200).all(|n| !due(132, st, sctp::ESTABLISHED, n)),
            "{st}"
        );
    }
    let c = SyncConn {
        protocol: 132,
        state: u16::from(sctp::SHUTDOWN_ACK_SENT),
        ..conn()
    };
    assert_eq!(check_entry(&c), Ok(()));
}

fn conn() -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 1000,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: "198.18.0.2".parse().unwrap(),
        vaddr: "198.18.0.100".parse().unwrap(),
        daddr: "198.18.1.11".parse().unwrap(),
        seq: None,
    }
}

#[test]
fn records_carry_entries_of_both_families() {
    let c = conn();
    assert_eq!(from_record(&to_record(&c).unwrap()), Some(c));
    let v6 = SyncConn {
        caddr: "2001:db8::2".parse().unwrap(),
        vaddr: "2001:db8::100".parse().unwrap(),
        daddr: "2001:db8:1::11".parse().unwrap(),
        ..c
    };
    assert_eq!(from_record(&to_record(&v6).unwrap()), Some(v6));
    let mixed = SyncConn {
        daddr: "2001:db8:1::11".parse().unwrap(),
        ..c
    };
    assert_eq!(to_record(&mixed), None);
}

#[test]
fn the_backup_refuses_what_the_kernel_refuses_and_what_uvs_cannot_serve() {
    let c = conn();
    assert_eq!(check_entry(&c), Ok(()));
    let bad = [
        SyncConn { state: 11, ..c },
        SyncConn {
            protocol: 17,
            state: 1,
            ..c
        },
        SyncConn {
            protocol: 132,
            state: 14,
            ..c
        },
        SyncConn { protocol: 1, ..c },
        SyncConn {
            flags: flags::ONE_PACKET,
            ..c
        },
        SyncConn {
            flags: flags::TEMPLATE | flags::NO_CPORT,
            state: 0,
            ..c
        },
        SyncConn {
            flags: flags::TEMPLATE,
            state: 2,
            ..c
        },
        SyncConn { fwmark: 7, ..c },
    ];
    for b in bad {
        assert_eq!(check_entry(&b), Err(SyncDrop::Unsupported), "{b:?}");
    }
}
