//! Each IPVS tunable's effect on the stage, packet by packet: the same
//! traffic with the kernel's default and with the tunable set, through
//! the configuration store and a snapshot, as `uvsadm --sysctl` sets it.

use super::*;
use crate::tunables::Tunable;

const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;

fn set(st: &mut ConfigStore, lb: &mut Lb, t: Tunable, v: i32) {
    st.apply(&ConfigOp::SetTunable(t, v)).unwrap();
    lb.set_snapshot(st.snapshot());
}

fn state_of(lb: &Lb, cport: u16) -> String {
    lb.connections(0)
        .find(|c| c.cport == cport)
        .map(|c| c.state)
        .unwrap_or_default()
}

fn syn_to(lb: &mut Lb, cport: u16, now: u64) -> Action {
    run(
        lb,
        &tcp_frame("198.18.0.2", cport, "198.18.0.100", 80, SYN),
        now,
    )
    .0
}

#[test]
fn expire_nodest_conn_removes_a_deleted_servers_connections_at_once() {
    for on in [false, true] {
        let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let mut st = store(
            k,
            "rr",
            None,
            &[
                dest("198.18.1.11", 80, ForwardMethod::Masq, 1),
                dest("198.18.1.12", 80, ForwardMethod::Masq, 1),
            ],
        );
        let mut lb = lb_for(&st);
        set(&mut st, &mut lb, Tunable::ExpireNodestConn, i32::from(on));
        let mut gone_ports = vec![];
        let mut gone = None;
        for p in 0..6 {
            let Action::Forward(rs) = syn_to(&mut lb, 40000 + p, 0) else {
                panic!()
            };
            if rs == ip("198.18.1.12") {
                gone_ports.push(40000 + p);
                gone = Some(rs);
            }
        }
        let gone = gone.unwrap();
        assert_eq!(lb.conns().len(), 6);
        st.apply(&ConfigOp::DeleteDest {
            service: k,
            addr: gone,
            port: 80,
        })
        .unwrap();
        lb.set_snapshot(st.snapshot());
        let left: Vec<_> = lb.connections(0).map(|c| c.daddr).collect();
        let ack = tcp_frame("198.18.0.2", gone_ports[0], "198.18.0.100", 80, ACK);
        if on {
            assert_eq!(left.len(), 3, "the deleted server's three went at once");
            assert!(left.iter().all(|a| *a != gone));
            assert_eq!(
                run(&mut lb, &ack, 1).0,
                Action::Pass,
                "a reset from the stack"
            );
        } else {
            assert_eq!(left.len(), 6, "they wait for their timeout");
            assert_eq!(
                run(&mut lb, &ack, 1).0,
                Action::Drop(LbDrop::DestUnavailable)
            );
        }
        // A SYN on a port the deleted server had is scheduled afresh with
        // the tunable (the entry is gone), dropped without it.
        let again = syn_to(&mut lb, gone_ports[1], 2);
        if on {
            assert_eq!(again, Action::Forward(ip("198.18.1.11")));
        } else {
            assert_eq!(again, Action::Drop(LbDrop::DestUnavailable));
        }
    }
}

#[test]
fn expire_quiescent_template_moves_persistent_clients_off_a_weight_0_server() {
    for on in [false, true] {
        let k = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let mut st = store(
            k,
            "rr",
            Some(300),
            &[
                dest("198.18.1.11", 80, ForwardMethod::Masq, 1),
                dest("198.18.1.12", 80, ForwardMethod::Masq, 1),
            ],
        );
        let mut lb = lb_for(&st);
        set(
            &mut st,
            &mut lb,
            Tunable::ExpireQuiescentTemplate,
            i32::from(on),
        );
        let Action::Forward(first) = syn_to(&mut lb, 40000, 0) else {
            panic!()
        };
        st.apply(&ConfigOp::EditDest(
            k,
            dest(&first.to_string(), 80, ForwardMethod::Masq, 0),
        ))
        .unwrap();
        lb.set_snapshot(st.snapshot());
        let Action::Forward(next) = syn_to(&mut lb, 40001, 1) else {
            panic!()
        };
        assert_eq!(next == first, !on, "tunable {on}: {first} then {next}");
    }
}

#[test]
fn sloppy_tcp_schedules_a_mid_stream_ack_but_never_a_reset() {
    let mut st = masq3("rr");
    let mut lb = lb_for(&st);
    let ack = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK);
    assert_eq!(
        run(&mut lb, &ack, 0).0,
        Action::Pass,
        "a reset from the stack"
    );
    set(&mut st, &mut lb, Tunable::SloppyTcp, 1);
    let (a, out) = run(&mut lb, &ack, 1);
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    assert_eq!(dst_of(&out), (rs, 8080));
    assert!(checksums_ok(&out));
    assert_eq!(state_of(&lb, 40000), "ESTABLISHED");
    let rst = tcp_frame("198.18.0.2", 40001, "198.18.0.100", 80, RST | ACK);
    assert_eq!(run(&mut lb, &rst, 2).0, Action::Drop(LbDrop::NoConnection));
    assert_eq!(lb.conns().len(), 1);
}

/// A NAT flow closed by both sides sits in TIME_WAIT; a new SYN from the
/// same client port is a new connection with `conn_reuse_mode` 1 (rr moves
/// it on), and follows the old entry with 0.
#[test]
fn conn_reuse_mode_reschedules_a_syn_that_reuses_a_time_wait_entry() {
    for mode in [0, 1] {
        let mut st = masq3("rr");
        let mut lb = lb_for(&st);
        set(&mut st, &mut lb, Tunable::ConnReuseMode, mode);
        let Action::Forward(rs) = syn_to(&mut lb, 40000, 0) else {
            panic!()
        };
        let c = |f| tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, f);
        let s = |f| tcp_frame(&rs.to_string(), 8080, "198.18.0.2", 40000, f);
        run(&mut lb, &s(SYNACK), 1);
        run(&mut lb, &c(ACK), 2);
        run(&mut lb, &c(FIN_ACK), 3);
        run(&mut lb, &s(FIN_ACK), 4);
        assert_eq!(state_of(&lb, 40000), "TIME_WAIT");
        let Action::Forward(again) = syn_to(&mut lb, 40000, 5) else {
            panic!()
        };
        assert_eq!(again != rs, mode == 1, "mode {mode}");
        assert_eq!(state_of(&lb, 40000), "SYN_RECV");
    }
}

/// `secure_tcp` 3 uses the stricter table: a client ACK does not
/// establish a half-open connection (SYN_RECV stays), 0 does.
#[test]
fn secure_tcp_keeps_a_half_open_connection_half_open() {
    for mode in [0, 3] {
        let mut st = masq3("rr");
        let mut lb = lb_for(&st);
        set(&mut st, &mut lb, Tunable::SecureTcp, mode);
        syn_to(&mut lb, 40000, 0);
        run(
            &mut lb,
            &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
            1,
        );
        let want = if mode == 3 { "SYN_RECV" } else { "ESTABLISHED" };
        assert_eq!(state_of(&lb, 40000), want, "secure_tcp {mode}");
    }
}

#[test]
fn drop_packet_3_drops_one_new_connection_in_am_droprate() {
    let mut st = masq3("rr");
    let mut lb = lb_for(&st);
    set(&mut st, &mut lb, Tunable::DropPacket, 3);
    set(&mut st, &mut lb, Tunable::AmDroprate, 4);
    let acts: Vec<Action> = (0..20).map(|p| syn_to(&mut lb, 40000 + p, 1)).collect();
    let dropped = acts
        .iter()
        .filter(|a| **a == Action::Drop(LbDrop::Defense))
        .count();
    assert_eq!(dropped, 5);
    assert_eq!(lb.counters().drops(LbDrop::Defense), 5);
    assert_eq!(lb.conns().len(), 15);
    // Established flows are never dropped by it.
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        2,
    );
    assert!(matches!(a, Action::Forward(_)), "{a:?}");
}

/// `drop_packet` 1 defends only while the worker's free entries are below
/// `amemthresh`: with 64 entries and a threshold of 48, it starts when
/// more than 16 are in use.
#[test]
fn drop_packet_1_defends_when_free_entries_fall_below_amemthresh() {
    let mut st = masq3("rr");
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 64,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    set(&mut st, &mut lb, Tunable::DropPacket, 1);
    set(&mut st, &mut lb, Tunable::Amemthresh, 48);
    lb.housekeeping(0, 16);
    for p in 0..20 {
        assert!(matches!(syn_to(&mut lb, 40000 + p, 1), Action::Forward(_)));
    }
    assert!(lb.defense().drop_rate == 0, "not evaluated again yet");
    lb.housekeeping(1000, 16);
    // 44 free of 48: rate 48 / 4 = 12.
    assert_eq!(lb.defense().drop_rate, 12);
    let dropped = (0..24)
        .filter(|p| syn_to(&mut lb, 41000 + p, 1001) == Action::Drop(LbDrop::Defense))
        .count();
    assert_eq!(dropped, 2);
}

/// `drop_entry` 3 drops half-open connections at random once a second and
/// leaves busy established ones alone.
#[test]
fn drop_entry_removes_half_open_connections_not_busy_ones() {
    for mode in [0, 3] {
        let mut st = masq3("rr");
        let mut lb = Lb::new(
            0,
            LbSettings {
                capacity: 64,
                ..LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(st.snapshot());
        set(&mut st, &mut lb, Tunable::DropEntry, mode);
        for p in 0..10 {
            syn_to(&mut lb, 40000 + p, 0);
            run(
                &mut lb,
                &tcp_frame("198.18.0.2", 50000 + p, "198.18.0.100", 80, SYN),
                0,
            );
            run(
                &mut lb,
                &tcp_frame("198.18.0.2", 50000 + p, "198.18.0.100", 80, ACK),
                0,
            );
        }
        // 40 s of seconds, the established flows busy all along (the
        // half-open ones would live 60 s).
        for s in 0..40u64 {
            for p in 0..10 {
                run(
                    &mut lb,
                    &tcp_frame("198.18.0.2", 50000 + p, "198.18.0.100", 80, ACK),
                    s * 1000,
                );
            }
            lb.housekeeping(s * 1000, 64);
        }
        let half_open = lb.connections(0).filter(|c| c.state == "SYN_RECV").count();
        let established = lb
            .connections(0)
            .filter(|c| c.state == "ESTABLISHED")
            .count();
        assert_eq!(established, 10, "drop_entry {mode}");
        if mode == 0 {
            assert_eq!(half_open, 10);
        } else {
            assert!(half_open < 10, "some half-open dropped: {half_open} left");
        }
    }
}

/// What `drop_entry` removes is counted by kind, and a removed
/// connection's next client segment is not lost silently: as in the
/// kernel (which drops SYN_RECV entries whatever their age), a real
/// client caught between its SYN and its ACK loses its entry, and its ACK
/// goes to the stack, which answers with a reset (`tcp_reset_sent`).
/// Established connections go only once idle for 60 s.
#[test]
fn drop_entry_counts_what_it_removes_and_the_next_segment_gets_a_reset() {
    let mut st = masq3("rr");
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 64,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    set(&mut st, &mut lb, Tunable::DropEntry, 3);
    let ack = |p: u16| tcp_frame("198.18.0.2", p, "198.18.0.100", 80, ACK);
    // 10 half-open (SYN only) and 10 established with two client packets.
    for p in 0..10 {
        syn_to(&mut lb, 40000 + p, 0);
        syn_to(&mut lb, 50000 + p, 0);
        run(&mut lb, &ack(50000 + p), 0);
    }
    let counted = |lb: &Lb| {
        let d = &lb.counters().defense;
        (
            d.half_open.load(Ordering::Relaxed),
            d.idle.load(Ordering::Relaxed),
        )
    };
    let count_state = |lb: &Lb, state: &str| lb.connections(0).filter(|c| c.state == state).count();
    // 40 s: half-open ones go (the flood's kind), idle established ones
    // not yet (idle under 60 s).
    for s in 0..40u64 {
        lb.housekeeping(s * 1000, 64);
    }
    let half_open_left = count_state(&lb, "SYN_RECV");
    assert!(half_open_left < 10, "some half-open dropped");
    assert_eq!(count_state(&lb, "ESTABLISHED"), 10);
    assert_eq!(counted(&lb), (10 - half_open_left as u64, 0));
    // A removed half-open connection's ACK: no entry, passed to the stack
    // (its reset), and no connection created.
    let gone = (40000..40010)
        .find(|p| state_of(&lb, *p).is_empty())
        .unwrap();
    let before = lb.conns().len();
    assert_eq!(run(&mut lb, &ack(gone), 40_000).0, Action::Pass);
    assert_eq!(lb.conns().len(), before);
    // Idle past 60 s (their timeout is 900 s): established ones go too,
    // counted apart.
    for s in 40..200u64 {
        lb.housekeeping(s * 1000, 64);
    }
    let established_left = count_state(&lb, "ESTABLISHED");
    assert!(established_left < 10, "some idle established dropped");
    assert_eq!(counted(&lb).1, 10 - established_left as u64);
}

/// `nat_icmp_send`: a reply from a NAT real server's address and port with
/// no connection gets ICMP port unreachable back to the server; a reset
/// does not, and without the tunable the packet is not the balancer's.
#[test]
fn nat_icmp_send_answers_a_stray_reply_from_a_real_server() {
    let mut st = masq3("rr");
    let mut lb = lb_for(&st);
    let stray = tcp_frame("198.18.1.11", 8080, "198.18.0.2", 40000, ACK);
    assert_eq!(run(&mut lb, &stray, 0).0, Action::Pass);
    set(&mut st, &mut lb, Tunable::NatIcmpSend, 1);
    let (a, out) = run(&mut lb, &stray, 1);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.dst), (ip("198.18.1.1"), ip("198.18.1.11")));
    assert_eq!((m.protocol, m.icmp_type, m.icmp_code), (1, 3, 3));
    assert!(checksums_ok(&out));
    let rst = tcp_frame("198.18.1.11", 8080, "198.18.0.2", 40000, RST);
    assert_eq!(run(&mut lb, &rst, 2).0, Action::Pass);
    let other_port = tcp_frame("198.18.1.11", 22, "198.18.0.2", 40000, ACK);
    assert_eq!(run(&mut lb, &other_port, 2).0, Action::Pass);
}

/// `pmtu_disc` 0: tunnel packets no longer carry the inner DF bit.
#[test]
fn pmtu_disc_0_clears_df_in_tunnel_headers() {
    for on in [1, 0] {
        let mut st = tunnel_store(TunnelType::Ipip);
        let mut lb = lb_for(&st);
        set(&mut st, &mut lb, Tunable::PmtuDisc, on);
        let mut f = tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, SYN);
        let m = parse_packet(&f).unwrap();
        let l3 = usize::from(m.l3_offset);
        let old = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]);
        f[l3 + 6] |= 0x40;
        let new = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]);
        let c = checksum::update16(u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]), old, new);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let (a, out) = run(&mut lb, &f, 0);
        assert!(matches!(a, Action::Forward(_)), "{a:?}");
        let outer = parse_packet(&out).unwrap();
        assert_eq!(outer.protocol, 4);
        assert_eq!(outer.dont_frag, on == 1, "pmtu_disc {on}");
    }
}

/// `schedule_icmp`: an ICMP error from a client about a connection this
/// director does not know is scheduled and carried to a real server; by
/// default it is not the balancer's.
#[test]
fn schedule_icmp_schedules_an_error_for_an_unknown_connection() {
    let mut st = masq3("rr");
    let mut lb = lb_for(&st);
    // What the client's router says about a packet VIP -> client.
    let sent = tcp_frame("198.18.0.100", 80, "198.18.0.2", 40000, ACK);
    let mut b = TestBuf::new(&sent);
    let sm = parse_packet(b.data()).unwrap();
    crate::xmit::icmp::icmp_error_reply(
        &mut b,
        &sm,
        crate::xmit::icmp::IcmpErrorKind::PortUnreachable,
        ip("198.18.0.2"),
    )
    .unwrap();
    let err = b.data().to_vec();
    assert_eq!(run(&mut lb, &err, 0).0, Action::Pass);
    assert_eq!(lb.conns().len(), 0);
    set(&mut st, &mut lb, Tunable::ScheduleIcmp, 1);
    let (a, out) = run(&mut lb, &err, 1);
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    let m = parse_packet(&out).unwrap();
    assert_eq!(m.dst, rs, "NAT: the error goes to the real server");
    assert!(m.is_icmp_error());
    assert!(checksums_ok(&out));
    let c: Vec<_> = lb.connections(1).collect();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].client, c[0].cport, c[0].daddr),
        (ip("198.18.0.2"), 40000, rs)
    );
    // The client's next packet on that connection goes the same way.
    let (a, _) = run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, ACK),
        2,
    );
    assert_eq!(a, Action::Forward(rs));
}

/// `run_estimation` 0 stops the rate estimator: rates keep their values.
#[test]
fn run_estimation_0_stops_the_rate_estimator() {
    for on in [1, 0] {
        let mut st = masq3("rr");
        let mut lb = lb_for(&st);
        set(&mut st, &mut lb, Tunable::RunEstimation, on);
        for p in 0..50 {
            syn_to(&mut lb, 40000 + p, 0);
        }
        st.tick_estimators();
        let key = svc_key(Protocol::Tcp, "198.18.0.100", 80);
        let rates = st.service_stats(&key).unwrap().rates;
        assert_eq!(rates.cps > 0, on == 1, "run_estimation {on}: {rates:?}");
    }
}
