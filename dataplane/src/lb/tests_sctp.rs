//! SCTP through the stage, association by association: NAT (ports
//! rewritten, CRC32c recomputed), DR and TUN (packet untouched), over IPv4
//! and IPv6, with the state `ipvsadm -L -c` shows after each packet and the
//! ActiveConn/InActConn counts the kernel's tables give.

use super::*;
use crate::tunables::Tunable;
use crate::wire::testutil::{sctp_chunk as ch, sctp_crc_ok, sctp_frame};

const CPORT: u16 = 5000;

fn sctp(src: &str, sport: u16, dst: &str, dport: u16, chunks: &[&[u8]]) -> Vec<u8> {
    sctp_frame(ip(src), ip(dst), sport, dport, 0x0a0b_0c0d, chunks)
}

fn state_of(lb: &Lb, cport: u16) -> String {
    lb.connections(0)
        .find(|c| c.cport == cport && c.protocol == "SCTP")
        .map(|c| c.state)
        .unwrap_or_default()
}

/// (ActiveConn, InActConn) of the first destination of the first service.
fn counts(lb: &Lb) -> (i64, i64) {
    let d = &lb.snapshot().services[0].dests[0].shared;
    (
        i64::from(d.activeconns.load(Ordering::Relaxed)),
        i64::from(d.inactconns.load(Ordering::Relaxed)),
    )
}

/// The SCTP header of a frame: (sport, dport, stored CRC ok).
fn sctp_of(f: &[u8]) -> (u16, u16, bool) {
    let m = parse_packet(f).unwrap();
    let l4 = &f[usize::from(m.l4_offset)..m.l3_end()];
    (m.sport, m.dport, sctp_crc_ok(l4))
}

fn nat_store(vip: &str, rs: &str) -> ConfigStore {
    store(
        svc_key(Protocol::Sctp, vip, 80),
        "rr",
        None,
        &[dest(rs, 8080, ForwardMethod::Masq, 1)],
    )
}

#[test]
fn nat_association_is_rewritten_both_ways_with_fresh_crcs_and_tracked() {
    for (client, vip, rs) in [
        ("198.18.0.2", "198.18.0.100", "198.18.1.11"),
        ("2001:db8::2", "2001:db8::100", "2001:db8:1::11"),
    ] {
        let mut lb = lb_for(&nat_store(vip, rs));
        // (direction, chunk, state after it)
        let steps: [(Dir, &[u8], &str); 9] = [
            (Dir::In, ch::INIT, "INIT1"),
            (Dir::Out, ch::INIT_ACK, "C-SENT"),
            (Dir::In, ch::COOKIE_ECHO, "C-REPLIED"),
            (Dir::Out, ch::COOKIE_ACK, "ESTABLISHED"),
            (Dir::In, ch::DATA, "ESTABLISHED"),
            (Dir::Out, ch::DATA, "ESTABLISHED"),
            (Dir::In, ch::SHUTDOWN, "S-RECEIVED"),
            (Dir::Out, ch::SHUTDOWN_ACK, "S-ACK-SENT"),
            (Dir::In, ch::SHUTDOWN_COMPLETE, "CLOSED"),
        ];
        for (i, (dir, chunk, want)) in steps.into_iter().enumerate() {
            let (f, to, from_port, to_port) = match dir {
                Dir::In => (sctp(client, CPORT, vip, 80, &[chunk]), rs, CPORT, 8080),
                Dir::Out => (sctp(rs, 8080, client, CPORT, &[chunk]), client, 80, CPORT),
            };
            let (a, out) = run(&mut lb, &f, i as u64);
            assert_eq!(a, Action::Forward(ip(to)), "step {i} {want}");
            let m = parse_packet(&out).unwrap();
            match dir {
                Dir::In => assert_eq!((m.src, m.dst), (ip(client), ip(rs))),
                Dir::Out => assert_eq!((m.src, m.dst), (ip(vip), ip(client))),
            }
            let (sp, dp, crc_ok) = sctp_of(&out);
            assert_eq!((sp, dp), (from_port, to_port), "step {i}");
            assert!(crc_ok, "CRC32c recomputed after the port change, step {i}");
            assert!(checksums_ok(&out), "IP header checksum, step {i}");
            // Chunks travel untouched.
            assert_eq!(&out[out.len() - chunk.len()..], chunk);
            assert_eq!(state_of(&lb, CPORT), want, "step {i}");
            let active = usize::from(want == "ESTABLISHED");
            assert_eq!(counts(&lb), (active as i64, 1 - active as i64), "{want}");
        }
        let e = lb.connections(0).next().unwrap();
        assert_eq!(
            (e.protocol.as_str(), e.expires),
            ("SCTP", 61),
            "CLOSED lives 61 s"
        );
    }
}

#[test]
fn nat_without_a_port_change_keeps_the_crc_as_the_kernel_does() {
    let st = store(
        svc_key(Protocol::Sctp, "198.18.0.100", 80),
        "rr",
        None,
        &[dest("198.18.1.11", 80, ForwardMethod::Masq, 1)],
    );
    let mut lb = lb_for(&st);
    let f = sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::INIT]);
    let (a, out) = run(&mut lb, &f, 0);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let m = parse_packet(&out).unwrap();
    let at = usize::from(m.l4_offset);
    assert_eq!(out[at..], f[at..], "addresses are not in the CRC32c");
}

#[test]
fn only_an_init_starts_an_association_unless_sloppy_sctp() {
    let mut st = nat_store("198.18.0.100", "198.18.1.11");
    let mut lb = lb_for(&st);
    for (p, chunk) in [(1u16, ch::DATA), (2, ch::COOKIE_ECHO), (3, ch::ABORT)] {
        let (a, _) = run(
            &mut lb,
            &sctp("198.18.0.2", p, "198.18.0.100", 80, &[chunk]),
            0,
        );
        assert_eq!(a, Action::Drop(LbDrop::NoConnection), "chunk {}", chunk[0]);
    }
    // A packet with no chunk at all is never scheduled either.
    let (a, _) = run(&mut lb, &sctp("198.18.0.2", 4, "198.18.0.100", 80, &[]), 0);
    assert_eq!(a, Action::Drop(LbDrop::NoConnection));
    assert_eq!(lb.conns().len(), 0);

    st.apply(&ConfigOp::SetTunable(Tunable::SloppySctp, 1))
        .unwrap();
    lb.set_snapshot(st.snapshot());
    let (a, _) = run(
        &mut lb,
        &sctp("198.18.0.2", 1, "198.18.0.100", 80, &[ch::DATA]),
        0,
    );
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    assert_eq!(state_of(&lb, 1), "ESTABLISHED", "NONE + DATA");
    assert_eq!(counts(&lb), (1, 0));
    let (a, _) = run(
        &mut lb,
        &sctp("198.18.0.2", 3, "198.18.0.100", 80, &[ch::ABORT]),
        0,
    );
    assert_eq!(
        a,
        Action::Drop(LbDrop::NoConnection),
        "an ABORT never starts one"
    );
}

#[test]
fn an_init_answered_with_abort_is_rejected_and_forgotten_in_4_s() {
    let mut lb = lb_for(&nat_store("198.18.0.100", "198.18.1.11"));
    run(
        &mut lb,
        &sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::INIT]),
        0,
    );
    let (a, _) = run(
        &mut lb,
        &sctp("198.18.1.11", 8080, "198.18.0.2", CPORT, &[ch::ABORT]),
        0,
    );
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    assert_eq!(state_of(&lb, CPORT), "REJECTED");
    assert_eq!(lb.connections(0).next().unwrap().expires, 4);
    lb.housekeeping(3_900, 1000);
    assert_eq!(lb.conns().len(), 1);
    lb.housekeeping(4_100, 1000);
    assert_eq!(lb.conns().len(), 0);
}

#[test]
fn cookie_echo_with_a_bundled_abort_counts_as_abort() {
    let mut lb = lb_for(&nat_store("198.18.0.100", "198.18.1.11"));
    for (dir, chunks) in [
        (Dir::In, vec![ch::INIT]),
        (Dir::Out, vec![ch::INIT_ACK]),
        (Dir::In, vec![ch::COOKIE_ECHO, ch::ABORT]),
    ] {
        let f = match dir {
            Dir::In => sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &chunks),
            Dir::Out => sctp("198.18.1.11", 8080, "198.18.0.2", CPORT, &chunks),
        };
        run(&mut lb, &f, 0);
    }
    assert_eq!(state_of(&lb, CPORT), "CLOSED");
}

#[test]
fn a_new_init_replaces_a_closed_association_under_conn_reuse_mode() {
    let mut lb = lb_for(&nat_store("198.18.0.100", "198.18.1.11"));
    let init = sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::INIT]);
    run(&mut lb, &init, 0);
    run(
        &mut lb,
        &sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::ABORT]),
        0,
    );
    assert_eq!(state_of(&lb, CPORT), "CLOSED");
    let created = lb.counters().created.load(Ordering::Relaxed);
    let (a, _) = run(&mut lb, &init, 1);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    assert_eq!(state_of(&lb, CPORT), "INIT1", "a fresh entry, not INIT");
    assert_eq!(lb.counters().created.load(Ordering::Relaxed), created + 1);
}

#[test]
fn dr_and_tunnel_forward_the_packet_untouched_and_track_input_only() {
    let ipip = TunnelConfig {
        kind: TunnelType::Ipip,
        port: 0,
        csum: TunnelCsum::NoCsum,
    };
    for (client, vip, rs, method) in [
        (
            "198.18.0.2",
            "198.18.0.100",
            "198.18.1.11",
            ForwardMethod::Route,
        ),
        (
            "2001:db8::2",
            "2001:db8::100",
            "2001:db8:1::11",
            ForwardMethod::Route,
        ),
        (
            "198.18.0.2",
            "198.18.0.100",
            "198.18.1.11",
            ForwardMethod::Tunnel(ipip),
        ),
        (
            "2001:db8::2",
            "2001:db8::100",
            "2001:db8:1::11",
            ForwardMethod::Tunnel(ipip),
        ),
    ] {
        let st = store(
            svc_key(Protocol::Sctp, vip, 80),
            "rr",
            None,
            &[dest(rs, 80, method, 1)],
        );
        let mut lb = lb_for(&st);
        for (chunk, want) in [
            (ch::INIT, "INIT1"),
            (ch::COOKIE_ECHO, "ESTABLISHED"),
            (ch::DATA, "ESTABLISHED"),
            (ch::SHUTDOWN, "S-RECEIVED"),
            (ch::SHUTDOWN_COMPLETE, "CLOSED"),
        ] {
            let f = sctp(client, CPORT, vip, 80, &[chunk]);
            let (a, out) = run(&mut lb, &f, 0);
            assert_eq!(a, Action::Forward(ip(rs)), "{method:?}");
            // The SCTP packet (to the VIP, CRC as sent) is the tail of
            // what leaves, after the (outer) IP header.
            let sctp_len = f.len() - parse_packet(&f).unwrap().l4_offset as usize;
            assert_eq!(out[out.len() - sctp_len..], f[f.len() - sctp_len..]);
            if let ForwardMethod::Tunnel(_) = method {
                let m = parse_packet(&out).unwrap();
                assert_eq!(m.dst, ip(rs));
                assert_eq!(m.protocol, if m.is_ipv4() { 4 } else { 41 });
            } else {
                assert_eq!(dst_and_port(&out), (ip(vip), 80));
            }
            assert_eq!(state_of(&lb, CPORT), want, "{method:?} {}", chunk[0]);
        }
    }
}

fn dst_and_port(f: &[u8]) -> (IpAddr, u16) {
    let m = parse_packet(f).unwrap();
    (m.dst, m.dport)
}

#[test]
fn an_icmp_error_about_a_nat_association_reaches_the_client_as_from_the_vip() {
    let mut lb = lb_for(&nat_store("198.18.0.100", "198.18.1.11"));
    let (_, fwd) = run(
        &mut lb,
        &sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::INIT]),
        0,
    );
    // The real server's port unreachable about the INIT it got.
    let mut b = TestBuf::new(&fwd);
    let fm = parse_packet(b.data()).unwrap();
    crate::xmit::icmp::icmp_error_reply(
        &mut b,
        &fm,
        crate::xmit::icmp::IcmpErrorKind::PortUnreachable,
        ip("198.18.1.11"),
    )
    .unwrap();
    let (a, out) = run(&mut lb, b.data(), 1);
    assert_eq!(a, Action::Forward(ip("198.18.0.2")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.src, m.protocol), (ip("198.18.0.100"), 1));
    let q = crate::wire::parse_icmp_quote(&out, &m).unwrap();
    assert_eq!((q.protocol, q.dst, q.dport), (132, ip("198.18.0.100"), 80));
    assert_eq!(lb.counters().icmp_related.load(Ordering::Relaxed), 1);
}

/// `nat_icmp_send` for SCTP: a stray packet from a NAT real server's
/// address and port gets ICMP port unreachable, an ABORT does not (the
/// kernel's `ip_vs_out`).
#[test]
fn nat_icmp_send_answers_a_stray_sctp_reply_but_not_an_abort() {
    let mut st = nat_store("198.18.0.100", "198.18.1.11");
    st.apply(&ConfigOp::SetTunable(Tunable::NatIcmpSend, 1))
        .unwrap();
    let mut lb = lb_for(&st);
    let stray = sctp("198.18.1.11", 8080, "198.18.0.2", CPORT, &[ch::DATA]);
    let (a, out) = run(&mut lb, &stray, 0);
    assert_eq!(a, Action::Forward(ip("198.18.1.11")));
    let m = parse_packet(&out).unwrap();
    assert_eq!((m.protocol, m.icmp_type, m.icmp_code), (1, 3, 3));
    let abort = sctp("198.18.1.11", 8080, "198.18.0.2", CPORT, &[ch::ABORT]);
    assert_eq!(run(&mut lb, &abort, 1).0, Action::Pass);
}

/// A persistent SCTP service: the client's next association goes to the
/// same real server through the template, which becomes ASSURED when an
/// association it controls reaches ESTABLISHED.
#[test]
fn persistence_templates_work_for_sctp_and_are_assured_by_established() {
    let st = store(
        svc_key(Protocol::Sctp, "198.18.0.100", 80),
        "rr",
        Some(300),
        &[
            dest("198.18.1.11", 8080, ForwardMethod::Masq, 1),
            dest("198.18.1.12", 8080, ForwardMethod::Masq, 1),
        ],
    );
    let mut lb = lb_for(&st);
    let template = |lb: &Lb| {
        lb.connections(0)
            .find(|c| c.cport == 0)
            .map(|c| c.state)
            .unwrap()
    };
    let (a, _) = run(
        &mut lb,
        &sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[ch::INIT]),
        0,
    );
    let Action::Forward(rs) = a else {
        panic!("{a:?}")
    };
    assert_eq!(template(&lb), "NONE");
    let rs_text = rs.to_string();
    for (from_client, chunk) in [
        (false, ch::INIT_ACK),
        (true, ch::COOKIE_ECHO),
        (false, ch::COOKIE_ACK),
    ] {
        let f = if from_client {
            sctp("198.18.0.2", CPORT, "198.18.0.100", 80, &[chunk])
        } else {
            sctp(&rs_text, 8080, "198.18.0.2", CPORT, &[chunk])
        };
        run(&mut lb, &f, 0);
    }
    assert_eq!(state_of(&lb, CPORT), "ESTABLISHED");
    assert_eq!(template(&lb), "ASSURED");
    for p in 1..5 {
        let (a, _) = run(
            &mut lb,
            &sctp("198.18.0.2", CPORT + p, "198.18.0.100", 80, &[ch::INIT]),
            1,
        );
        assert_eq!(a, Action::Forward(rs), "same server for the same client");
    }
}
