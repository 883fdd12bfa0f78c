//! Byte-exact: a translated error equals the error the sender would have
//! got had there been no translation.

use super::*;
use crate::buf::TestBuf;
use crate::wire::testutil::{checksums_ok, frame, L4};
use crate::wire::{parse_icmp_quote, parse_packet};
use crate::xmit::dr::dr_xmit;
use crate::xmit::fullnat::fullnat_inbound;
use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};
use crate::xmit::nat::nat_outbound;
use crate::xmit::seqadj::SeqAdj;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Client, VIP, local address, real server.
fn addrs(v6: bool) -> [IpAddr; 4] {
    if v6 {
        [
            "2001:db8:2::5",
            "2001:db8::100",
            "2001:db8:1::50",
            "2001:db8:1::10",
        ]
        .map(ip)
    } else {
        ["198.19.0.5", "198.18.0.100", "198.18.1.50", "198.18.1.10"].map(ip)
    }
}

/// What `sender` gets back about its packet `orig` when `from` answers it
/// with `kind` one hop away (the packet forwarded once, the error once).
fn untranslated(orig: &[u8], kind: IcmpErrorKind, from: IpAddr) -> Vec<u8> {
    let mut b = TestBuf::new(orig);
    let m = parse_packet(b.data()).unwrap();
    dr_xmit(&mut b, &m).unwrap();
    let m = parse_packet(b.data()).unwrap();
    icmp_error_reply(&mut b, &m, kind, from).unwrap();
    let m = parse_packet(b.data()).unwrap();
    dr_xmit(&mut b, &m).unwrap();
    b.data().to_vec()
}

/// Ones'-complement equality of two checksums (0x0000 and 0xffff are the
/// same sum).
fn same_sum(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

fn kind(k: u8, v6: bool) -> IcmpErrorKind {
    match k % 3 {
        0 => IcmpErrorKind::PortUnreachable,
        1 => IcmpErrorKind::NoRoute,
        _ if v6 => IcmpErrorKind::TooBig { mtu: 1280 },
        _ => IcmpErrorKind::TooBig { mtu: 1400 },
    }
}

proptest! {
    /// A real server's error about a FULLNAT'd packet (`LIP:lport ->
    /// RIP:rport`, sequence shifted) reaches the client as the error about
    /// the packet it sent (`CIP:cport -> VIP:vport`), from the VIP: byte
    /// for byte, quoted L4 checksum included.
    #[test]
    fn a_real_servers_error_reaches_the_client_about_its_own_packet(
        v6 in any::<bool>(), tcp in any::<bool>(), k in any::<u8>(),
        cport in 1u16.., vport in 1u16.., lport in 1u16.., rport in 1u16..,
        cisn in any::<u32>(), sisn in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let [cip, vip, lip, rip] = addrs(v6);
        let kind = kind(k, v6);
        let l4 = if tcp { L4::Tcp } else { L4::Udp };
        let mut orig = frame(cip, vip, l4, cport, vport, None, &payload);
        if tcp {
            // The client's own sequence number (checksum patched).
            let m = parse_packet(&orig).unwrap();
            let t = usize::from(m.l4_offset);
            let mut b = TestBuf::new(&orig);
            SeqAdj::between(1000, cisn).shift_seq(&mut b.data_mut()[t..m.l3_end()]).unwrap();
            orig = b.data().to_vec();
        }
        let adj = SeqAdj::between(cisn, sisn);
        // The director's FULLNAT rewrite.
        let mut sent = TestBuf::new(&orig);
        let m = parse_packet(sent.data()).unwrap();
        fullnat_inbound(&mut sent, &m, lip, lport, rip, rport).unwrap();
        if tcp {
            let t = usize::from(m.l4_offset);
            adj.shift_seq(&mut sent.data_mut()[t..m.l3_end()]).unwrap();
        }
        // The real server's error about it.
        let sm = parse_packet(sent.data()).unwrap();
        let mut err = TestBuf::new(sent.data());
        icmp_error_reply(&mut err, &sm, kind, rip).unwrap();
        let em = parse_packet(err.data()).unwrap();
        prop_assert_eq!(em.dst, lip);
        let q = parse_icmp_quote(err.data(), &em).unwrap();
        let rw = IcmpRewrite {
            src: vip,
            dst: cip,
            quoted_src: (cip, cport),
            quoted_dst: (vip, vport),
            seq_delta: adj.inverse().delta(),
            ack_delta: 0,
        };
        icmp_error_rewrite(&mut err, &em, &q, &rw).unwrap();
        prop_assert!(checksums_ok(err.data()));
        let want = untranslated(&orig, kind, vip);
        prop_assert_eq!(want.len(), err.len());
        let got = parse_packet(err.data()).unwrap();
        let gq = parse_icmp_quote(err.data(), &got).unwrap();
        let l4c = usize::from(gq.l4_offset) + if tcp { 16 } else { 6 };
        let icmpc = usize::from(got.l4_offset) + 2;
        for (i, (a, b)) in want.iter().zip(err.data()).enumerate() {
            prop_assert!(a == b || [l4c, l4c + 1, icmpc, icmpc + 1].contains(&i), "byte {} differs", i);
        }
        let g = |d: &[u8], at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
        if l4c + 2 <= got.l3_end() {
            prop_assert!(same_sum(g(&want, l4c), g(err.data(), l4c)), "quoted checksum");
        }
    }

    /// An outside host's error about a packet SNAT'd to `WAN:wport` reaches
    /// the inside host about the packet it sent.
    #[test]
    fn an_outside_error_about_a_snat_packet_reaches_the_inside_host(
        v6 in any::<bool>(), tcp in any::<bool>(), k in any::<u8>(),
        hport in 1u16.., wport in 1u16.., dport in 1u16..,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let [host, _, wan, far] = addrs(v6);
        let kind = kind(k, v6);
        let l4 = if tcp { L4::Tcp } else { L4::Udp };
        let orig = frame(host, far, l4, hport, dport, None, &payload);
        let mut sent = TestBuf::new(&orig);
        let m = parse_packet(sent.data()).unwrap();
        nat_outbound(&mut sent, &m, wan, wport).unwrap();
        let sm = parse_packet(sent.data()).unwrap();
        let mut err = TestBuf::new(sent.data());
        icmp_error_reply(&mut err, &sm, kind, far).unwrap();
        let em = parse_packet(err.data()).unwrap();
        let q = parse_icmp_quote(err.data(), &em).unwrap();
        let rw = IcmpRewrite {
            src: em.src,
            dst: host,
            quoted_src: (host, hport),
            quoted_dst: (q.dst, q.dport),
            seq_delta: 0,
            ack_delta: 0,
        };
        icmp_error_rewrite(&mut err, &em, &q, &rw).unwrap();
        prop_assert!(checksums_ok(err.data()));
        let want = untranslated(&orig, kind, far);
        let got = parse_packet(err.data()).unwrap();
        let gq = parse_icmp_quote(err.data(), &got).unwrap();
        let l4c = usize::from(gq.l4_offset) + if tcp { 16 } else { 6 };
        let icmpc = usize::from(got.l4_offset) + 2;
        prop_assert_eq!(want.len(), err.len());
        for (i, (a, b)) in want.iter().zip(err.data()).enumerate() {
            prop_assert!(a == b || [l4c, l4c + 1, icmpc, icmpc + 1].contains(&i), "byte {} differs", i);
        }
        let g = |d: &[u8], at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
        if l4c + 2 <= got.l3_end() {
            prop_assert!(same_sum(g(&want, l4c), g(err.data(), l4c)), "quoted checksum");
        }
    }
}

#[test]
fn a_corrupted_or_truncated_error_is_refused_unchanged() {
    let [cip, vip, lip, rip] = addrs(false);
    let sent = frame(lip, rip, L4::Udp, 2000, 53, None, b"q");
    let sm = parse_packet(&sent).unwrap();
    let mut err = TestBuf::new(&sent);
    icmp_error_reply(&mut err, &sm, IcmpErrorKind::PortUnreachable, rip).unwrap();
    let rw = IcmpRewrite {
        src: vip,
        dst: cip,
        quoted_src: (cip, 5000),
        quoted_dst: (vip, 53),
        seq_delta: 0,
        ack_delta: 0,
    };
    let mut bad = err.data().to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let bm = parse_packet(&bad).unwrap();
    let q = parse_icmp_quote(&bad, &bm).unwrap();
    let mut b = TestBuf::new(&bad);
    assert_eq!(
        icmp_error_rewrite(&mut b, &bm, &q, &rw),
        Err(XmitError::BadChecksum)
    );
    assert_eq!(b.data(), &bad[..]);
    // An IPv6 address for an IPv4 error.
    let em = parse_packet(err.data()).unwrap();
    let q = parse_icmp_quote(err.data(), &em).unwrap();
    let before = err.data().to_vec();
    let v6 = IcmpRewrite {
        dst: ip("2001:db8::1"),
        ..rw
    };
    assert_eq!(
        icmp_error_rewrite(&mut err, &em, &q, &v6),
        Err(XmitError::FamilyMismatch)
    );
    assert_eq!(err.data(), &before[..]);
}
