//! FULLNAT rewrites and TOA, checked against etherparse's own checksum
//! computation (an implementation independent of `wire::checksum`).

use super::*;
use crate::buf::TestBuf;
use crate::wire::parse_packet;
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CLIENT4: &str = "198.18.1.10";
const VIP4: &str = "198.18.0.100";
const LIP4: &str = "198.18.0.50";
const RIP4: &str = "198.18.0.11";
const CLIENT6: &str = "2001:db8:1::10";
const VIP6: &str = "2001:db8::100";
const LIP6: &str = "2001:db8::50";
const RIP6: &str = "2001:db8::11";

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A TCP frame with `flags` (SYN, ACK) and raw `options` (a multiple of 4
/// bytes).
fn tcp_frame(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    syn: bool,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC, MAC);
    let mut out = Vec::new();
    let step = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .tcp(sport, dport, 1000, 4096),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .tcp(sport, dport, 1000, 4096),
        _ => unreachable!(),
    };
    let step = if syn { step.syn() } else { step.ack(7) };
    step.options_raw(options)
        .unwrap()
        .write(&mut out, payload)
        .unwrap();
    out
}

fn udp_frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC, MAC);
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, payload),
        _ => unreachable!(),
    }
    .unwrap();
    out
}

/// Parses `frame` with etherparse and asserts that the IPv4 header checksum
/// and the TCP/UDP checksum equal etherparse's computation; returns the
/// headers.
fn verified(frame: &[u8]) -> PacketHeaders<'_> {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses it");
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(t))) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv4(ip, payload).unwrap(),
                "TCP checksum"
            );
        }
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert_eq!(
                u.checksum,
                u.calc_checksum_ipv4(ip, payload).unwrap(),
                "UDP checksum"
            );
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Tcp(t))) => {
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv6(ip, payload).unwrap(),
                "TCP checksum"
            );
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Udp(u))) => {
            assert_eq!(
                u.checksum,
                u.calc_checksum_ipv6(ip, payload).unwrap(),
                "UDP checksum"
            );
        }
        other => panic!("unexpected headers {other:?}"),
    }
    h
}

fn endpoints(frame: &[u8]) -> ((IpAddr, u16), (IpAddr, u16), u8) {
    let m = parse_packet(frame).unwrap();
    ((m.src, m.sport), (m.dst, m.dport), m.ttl)
}

#[test]
fn inbound_and_outbound_v4_tcp_swap_both_endpoints_with_valid_checksums() {
    let f = tcp_frame(
        ip(CLIENT4),
        ip(VIP4),
        40000,
        80,
        false,
        &[],
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_inbound(&mut b, &m, ip(LIP4), 20001, ip(RIP4), 8080).unwrap();
    verified(b.data());
    assert_eq!(
        endpoints(b.data()),
        ((ip(LIP4), 20001), (ip(RIP4), 8080), 63)
    );
    assert_eq!(b.data()[54..], f[54..], "payload untouched");

    let r = tcp_frame(
        ip(RIP4),
        ip(LIP4),
        8080,
        20001,
        false,
        &[],
        b"HTTP/1.0 200 OK\r\n",
    );
    let m = parse_packet(&r).unwrap();
    let mut b = TestBuf::new(&r);
    fullnat_outbound(&mut b, &m, ip(VIP4), 80, ip(CLIENT4), 40000).unwrap();
    verified(b.data());
    assert_eq!(
        endpoints(b.data()),
        ((ip(VIP4), 80), (ip(CLIENT4), 40000), 63)
    );
}

#[test]
fn inbound_and_outbound_v6_udp_swap_both_endpoints_with_valid_checksums() {
    let f = udp_frame(ip(CLIENT6), ip(VIP6), 5353, 53, b"query");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_inbound(&mut b, &m, ip(LIP6), 30001, ip(RIP6), 5300).unwrap();
    verified(b.data());
    assert_eq!(
        endpoints(b.data()),
        ((ip(LIP6), 30001), (ip(RIP6), 5300), 63)
    );

    let r = udp_frame(ip(RIP6), ip(LIP6), 5300, 30001, b"answer");
    let m = parse_packet(&r).unwrap();
    let mut b = TestBuf::new(&r);
    fullnat_outbound(&mut b, &m, ip(VIP6), 53, ip(CLIENT6), 5353).unwrap();
    verified(b.data());
    assert_eq!(
        endpoints(b.data()),
        ((ip(VIP6), 53), (ip(CLIENT6), 5353), 63)
    );
}

#[test]
fn v4_udp_and_v6_tcp_rewrites_verify_too() {
    let f = udp_frame(ip(CLIENT4), ip(VIP4), 5353, 53, b"q");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_inbound(&mut b, &m, ip(LIP4), 1025, ip(RIP4), 53).unwrap();
    verified(b.data());
    let f = tcp_frame(ip(RIP6), ip(LIP6), 80, 1025, false, &[], b"x");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_outbound(&mut b, &m, ip(VIP6), 80, ip(CLIENT6), 44444).unwrap();
    verified(b.data());
    assert_eq!(
        endpoints(b.data()),
        ((ip(VIP6), 80), (ip(CLIENT6), 44444), 63)
    );
}

#[test]
fn a_refused_rewrite_leaves_the_packet_unchanged() {
    let f = tcp_frame(ip(CLIENT4), ip(VIP4), 40000, 80, false, &[], b"");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    assert_eq!(
        fullnat_inbound(&mut b, &m, ip(LIP6), 1, ip(RIP4), 80),
        Err(XmitError::FamilyMismatch)
    );
    assert_eq!(b.data(), &f[..]);
}

#[test]
fn toa_v4_is_inserted_behind_the_tcp_header_with_exact_bytes() {
    // MSS-less ACK with a timestamp option (NOP NOP TS): 12 bytes.
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let f = tcp_frame(ip(CLIENT4), ip(VIP4), 56324, 80, false, &ts, b"hello");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_inbound(&mut b, &m, ip(LIP4), 20001, ip(RIP4), 80).unwrap();
    insert_toa(&mut b, &m, &ip("192.0.2.1"), 56324, 1500).unwrap();
    let h = verified(b.data());
    let Some(TransportHeader::Tcp(t)) = &h.transport else {
        panic!()
    };
    let opts = t.options.as_slice();
    // The example of the reference: 192.0.2.1:56324.
    assert_eq!(opts[..8], [0xfe, 0x08, 0xdc, 0x04, 0xc0, 0x00, 0x02, 0x01]);
    assert_eq!(opts[8..], ts, "existing options moved behind it");
    assert_eq!(h.payload.slice(), b"hello");
    let Some(NetHeaders::Ipv4(ipv4, _)) = &h.net else {
        panic!()
    };
    assert_eq!(usize::from(ipv4.total_len), 20 + 20 + 12 + 8 + 5);
    assert_eq!(b.data().len(), 14 + 20 + 20 + 12 + 8 + 5);
}

#[test]
fn toa_v6_carries_the_whole_client_address_in_20_bytes() {
    let f = tcp_frame(ip(CLIENT6), ip(VIP6), 40000, 80, false, &[], b"");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    fullnat_inbound(&mut b, &m, ip(LIP6), 20001, ip(RIP6), 80).unwrap();
    insert_toa(&mut b, &m, &ip(CLIENT6), 40000, 1500).unwrap();
    let h = verified(b.data());
    let Some(TransportHeader::Tcp(t)) = &h.transport else {
        panic!()
    };
    let mut want = vec![254u8, 20, 0x9c, 0x40];
    want.extend_from_slice(
        &"2001:db8:1::10"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    assert_eq!(t.options.as_slice(), &want[..]);
    let Some(NetHeaders::Ipv6(ip6, _)) = &h.net else {
        panic!()
    };
    assert_eq!(ip6.payload_length, 20 + 20);
}

#[test]
fn toa_on_a_padded_minimum_frame_drops_the_link_padding() {
    let mut f = tcp_frame(ip(CLIENT4), ip(VIP4), 40000, 80, false, &[], b"");
    f.resize(60, 0); // Ethernet minimum: 6 bytes of padding.
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    insert_toa(&mut b, &m, &ip(CLIENT4), 40000, 1500).unwrap();
    assert_eq!(b.data().len(), 14 + 20 + 28);
    verified(b.data());
}

#[test]
fn toa_without_option_space_or_over_the_mtu_is_skipped_and_the_packet_unchanged() {
    // 36 bytes of options: 8 more would exceed 40.
    let opts = [1u8; 36];
    let f = tcp_frame(ip(CLIENT4), ip(VIP4), 40000, 80, false, &opts, b"");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    assert_eq!(
        insert_toa(&mut b, &m, &ip(CLIENT4), 40000, 1500),
        Err(ToaSkip::NoOptionSpace)
    );
    assert_eq!(b.data(), &f[..]);
    let f = tcp_frame(ip(CLIENT4), ip(VIP4), 40000, 80, false, &[], &[0u8; 1460]);
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    assert_eq!(
        insert_toa(&mut b, &m, &ip(CLIENT4), 40000, 1500),
        Err(ToaSkip::TooBig)
    );
    assert_eq!(b.data(), &f[..]);
}

#[test]
fn mss_of_a_syn_ack_is_lowered_by_the_toa_length() {
    let opts = [2, 4, 0x05, 0xb4, 1, 1, 4, 2]; // MSS 1460, NOP NOP SACK-permitted
    let f = tcp_frame(ip(RIP4), ip(LIP4), 80, 20001, true, &opts, b"");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    assert_eq!(clamp_mss(&mut b, &m, 8), Ok(true));
    let h = verified(b.data());
    let Some(TransportHeader::Tcp(t)) = &h.transport else {
        panic!()
    };
    assert_eq!(t.options.as_slice()[..4], [2, 4, 0x05, 0xac], "1452");
    let f = tcp_frame(ip(RIP4), ip(LIP4), 80, 20001, true, &[], b"");
    let m = parse_packet(&f).unwrap();
    let mut b = TestBuf::new(&f);
    assert_eq!(clamp_mss(&mut b, &m, 8), Ok(false));
    assert_eq!(b.data(), &f[..]);
}

#[test]
fn timestamps_of_a_syn_become_nops_at_either_alignment() {
    for opts in [
        vec![
            2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 1, 1, 1,
        ],
        vec![2, 4, 5, 0xb4, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 1],
        vec![1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1],
    ] {
        let f = tcp_frame(ip(CLIENT4), ip(VIP4), 40000, 80, true, &opts, b"");
        let m = parse_packet(&f).unwrap();
        let mut b = TestBuf::new(&f);
        assert_eq!(strip_timestamps(&mut b, &m), Ok(true));
        let h = verified(b.data());
        let Some(TransportHeader::Tcp(t)) = &h.transport else {
            panic!()
        };
        assert!(
            !t.options.as_slice().windows(2).any(|w| w == [8, 10]),
            "{:?}",
            t.options.as_slice()
        );
        assert_eq!(t.options.as_slice().len(), opts.len());
    }
}

mod fast {
    use super::*;
    use crate::wire::testutil::{frame, L4};
    use proptest::prelude::*;

    proptest! {
        /// The IPv4 fast path writes exactly what the general path writes,
        /// on valid and on mutated frames, and refuses what it refuses.
        #[test]
        fn fast_path_equals_general_path(
            udp in any::<bool>(),
            sport in any::<u16>(),
            lport in any::<u16>(),
            rport in any::<u16>(),
            edits in proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let l4 = if udp { L4::Udp } else { L4::Tcp };
            let mut f = frame(ip(CLIENT4), ip(VIP4), l4, sport, 80, None, &payload);
            for (pos, val) in edits {
                if pos < f.len() { f[pos] = val; }
            }
            let Ok(m) = parse_packet(&f) else { return Ok(()) };
            let mut a = f.clone();
            let fast = rewrite_v4_fast(
                &mut a,
                &m,
                (u32::from(LIP4.parse::<std::net::Ipv4Addr>().unwrap()), lport),
                (u32::from(RIP4.parse::<std::net::Ipv4Addr>().unwrap()), rport),
                SeqMove::None,
            )
            .is_some();
            let mut b = f.clone();
            let general = rewrite_general(&mut b, &m, (ip(LIP4), lport), (ip(RIP4), rport));
            if fast {
                prop_assert!(general.is_ok());
                prop_assert_eq!(a, b);
            } else {
                prop_assert_eq!(&a, &f, "a refusal writes nothing");
            }
        }
    }

    proptest! {
        /// The word compare reads an IPv4-mapped address exactly as the
        /// table's own conversion does, and nothing else as IPv4.
        #[test]
        fn mapped_v4_reads_what_to_ip_reads(
            bytes in proptest::array::uniform16(any::<u8>()),
            mapped in any::<bool>(),
        ) {
            let mut b = bytes;
            if mapped {
                b[..10].fill(0);
                b[10..12].fill(0xff);
            }
            let a = ConnAddr(b);
            match a.to_ip() {
                IpAddr::V4(v) => prop_assert_eq!(mapped_v4(&a), Some(u32::from(v))),
                IpAddr::V6(_) => prop_assert_eq!(mapped_v4(&a), None),
            }
        }
    }

    /// A TCP (or UDP) frame `src:sport -> dst:dport` with sequence `seq`,
    /// acknowledgement `ack` when `with_ack`, raw `options`.
    #[allow(clippy::too_many_arguments)]
    fn numbered(
        udp: bool,
        src: IpAddr,
        dst: IpAddr,
        seq: u32,
        ack: Option<u32>,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            unreachable!()
        };
        let eth = PacketBuilder::ethernet2(MAC, MAC).ipv4(s.octets(), d.octets(), 64);
        let mut out = Vec::new();
        if udp {
            eth.udp(40000, 80).write(&mut out, payload).unwrap();
            return out;
        }
        let t = eth.tcp(40000, 80, seq, 4096);
        let t = match ack {
            Some(a) => t.ack(a),
            None => t.syn(),
        };
        t.options_raw(options)
            .unwrap()
            .write(&mut out, payload)
            .unwrap();
        out
    }

    proptest! {
        /// The sequence translation folded into the fast rewrite's one
        /// checksum update writes exactly what the general rewrite
        /// followed by the adjuster's own updates writes (SACK blocks at
        /// either alignment, ACK or not, offset 0 or not, UDP, mutated
        /// frames), refuses what it refuses, and a valid frame takes the
        /// fast path and leaves every checksum valid.
        #[test]
        fn folded_sequence_update_equals_the_two_updates(
            udp in proptest::bool::weighted(0.2),
            inbound in any::<bool>(),
            delta in prop_oneof![Just(0u32), any::<u32>()],
            seq in any::<u32>(),
            ack in proptest::option::weighted(0.8, any::<u32>()),
            sack in proptest::option::of((0usize..4, proptest::array::uniform4(any::<u32>()))),
            edits in proptest::collection::vec((0usize..90, any::<u8>()), 0..2),
            payload in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut opts = Vec::new();
            if let Some((nops, e)) = sack {
                opts.resize(nops, 1);
                opts.extend_from_slice(&[5, 18]);
                for v in e {
                    opts.extend_from_slice(&v.to_be_bytes());
                }
                while opts.len() % 4 != 0 {
                    opts.push(0);
                }
            }
            let f0 = numbered(udp, ip(CLIENT4), ip(VIP4), seq, ack, &opts, &payload);
            let mut f = f0.clone();
            for (pos, val) in &edits {
                if *pos < f.len() { f[*pos] = *val; }
            }
            let Ok(m) = parse_packet(&f) else { return Ok(()) };
            let adj = SeqAdj::between(0, delta);
            let mv = if inbound { SeqMove::Shift(adj) } else { SeqMove::Unshift(adj) };
            let (src, dst) = ((ip(LIP4), 20001), (ip(RIP4), 8080));
            let conn = |a: (IpAddr, u16)| (ConnAddr::from(a.0), a.1);
            let mut a = f.clone();
            let ra = rewrite_seq(&mut a, &m, conn(src), conn(dst), mv);
            let mut b = f.clone();
            let rb = rewrite_seq_general(&mut b, &m, src, dst, mv);
            prop_assert_eq!(ra.is_ok(), rb.is_ok());
            if ra.is_ok() {
                prop_assert_eq!(&a, &b);
            }
            // The stage's entry point with the words it keeps: the same
            // bytes when it takes the packet, nothing written when not.
            let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
            let mut d = TestBuf::new(&f);
            let took = fullnat_v4_fast(&mut d, &m, (v4(LIP4), 20001), (v4(RIP4), 8080), mv);
            if took {
                prop_assert!(rb.is_ok());
                prop_assert_eq!(d.data(), &b[..]);
            } else {
                prop_assert_eq!(d.data(), &f[..], "a refusal writes nothing");
            }
            if f == f0 {
                let mut c = f.clone();
                let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
                let fast = rewrite_v4_fast(&mut c, &m, (v4(LIP4), 20001), (v4(RIP4), 8080), mv);
                prop_assert!(fast.is_some(), "a valid frame takes the fast path");
                prop_assert!(took);
                prop_assert!(ra.is_ok());
                verified(&a);
            }
        }
    }

    proptest! {
        /// The SYN's creation variant, which sets the sequence number to
        /// the new ISN, writes exactly what the established fast path and
        /// the general rewrite followed by the adjuster write with the
        /// offset between the client's ISN (which it returns) and the new
        /// one (options or none, the offset 0 or not, mutated frames);
        /// for TCP it refuses exactly what the established fast path
        /// refuses, UDP always, writing nothing then; a valid SYN is taken,
        /// leaves every checksum valid and carries the new ISN.
        #[test]
        fn syn_variant_equals_the_shift_by_the_new_offset(
            udp in proptest::bool::weighted(0.1),
            client_isn in any::<u32>(),
            same in proptest::bool::weighted(0.1),
            isn in any::<u32>(),
            opts in prop_oneof![
                Just(Vec::new()),
                Just(vec![2, 4, 5, 0xb4]),
                Just(vec![2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]),
            ],
            edits in proptest::collection::vec((0usize..90, any::<u8>()), 0..2),
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let isn = if same { client_isn } else { isn };
            let f0 = numbered(udp, ip(CLIENT4), ip(VIP4), client_isn, None, &opts, &payload);
            let mut f = f0.clone();
            for (pos, val) in &edits {
                if *pos < f.len() { f[*pos] = *val; }
            }
            let Ok(m) = parse_packet(&f) else { return Ok(()) };
            let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
            let (src, dst) = ((v4(LIP4), 20001), (v4(RIP4), 8080));
            let mut a = TestBuf::new(&f);
            let took = fullnat_v4_syn(&mut a, &m, src, dst, isn);
            // The client's ISN as the frame carries it (mutations included).
            let at = usize::from(m.l4_offset) + 4;
            let seen = f.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
            let mv = SeqMove::Shift(SeqAdj::between(seen.unwrap_or(0), isn));
            let mut fast = TestBuf::new(&f);
            let fast_took = fullnat_v4_fast(&mut fast, &m, src, dst, mv);
            let Some(client) = took else {
                prop_assert_eq!(a.data(), &f[..], "a refusal writes nothing");
                prop_assert!(udp || !fast_took, "TCP refused only where the fast path refuses");
                prop_assert!(udp || f != f0, "a valid SYN is taken");
                return Ok(());
            };
            prop_assert!(!udp);
            prop_assert_eq!(Some(client), seen);
            prop_assert!(fast_took);
            prop_assert_eq!(a.data(), fast.data());
            let mut b = f.clone();
            let rb = rewrite_seq_general(&mut b, &m, (ip(LIP4), 20001), (ip(RIP4), 8080), mv);
            prop_assert!(rb.is_ok());
            prop_assert_eq!(a.data(), &b[..]);
            if f == f0 {
                let h = verified(a.data());
                let Some(TransportHeader::Tcp(t)) = h.transport else { unreachable!() };
                prop_assert_eq!(t.sequence_number, isn);
            }
        }
    }
}
