use std::net::IpAddr;

use super::cookie::{siphash24, CookieJar, Flow, Handshake, MAX_AGE, MSS_V4, MSS_V6, PERIOD_MS};
use super::*;
use crate::buf::TestBuf;
use crate::wire::parse_packet;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::sync::atomic::Ordering;

fn counter_keys() -> impl FnMut() -> u64 {
    let mut n = 0u64;
    move || {
        n += 1;
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

fn flow() -> Flow {
    Flow {
        client: IpAddr::from([198, 18, 0, 10]),
        vip: IpAddr::from([198, 18, 0, 100]),
        cport: 40000,
        vport: 80,
    }
}

#[test]
fn siphash_matches_the_reference_vector() {
    // The SipHash paper's appendix: key 00..0f, message 00..0e.
    let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
    let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
    let msg: Vec<u8> = (0..15).collect();
    assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
}

#[test]
fn a_cookie_validates_for_its_flow_and_isn_and_carries_mss_and_sack() {
    let jar = CookieJar::new(0, counter_keys());
    for (mss, sack) in [(Some(1460), true), (Some(1400), false), (None, true)] {
        let hs = Handshake::from_syn(mss, sack, false);
        let c = jar.make(&flow(), 12345, hs);
        assert_eq!(jar.check(&flow(), 12345, c), Some(hs));
    }
    let hs = Handshake::from_syn(Some(1400), false, false);
    assert_eq!(hs.mss, 1300, "rounded down to the table");
    let c = jar.make(&flow(), 12345, hs);
    let mut other = flow();
    other.cport += 1;
    assert_eq!(jar.check(&other, 12345, c), None, "another client port");
    // As in Linux, the ISN is added in, not hashed: an ISN a little off
    // shifts the data (never to the same handshake), one far off fails.
    assert_ne!(jar.check(&flow(), 12346, c), Some(hs), "another ISN");
    assert_eq!(jar.check(&flow(), 13345, c), None, "another ISN");
    assert_eq!(
        jar.check(&flow(), 12345, c ^ 0x100),
        None,
        "a changed cookie"
    );
}

#[test]
fn ipv6_uses_its_own_mss_table() {
    let jar = CookieJar::new(0, counter_keys());
    let f = Flow {
        client: "2001:db8::10".parse().unwrap(),
        vip: "2001:db8::100".parse().unwrap(),
        cport: 1,
        vport: 443,
    };
    let hs = Handshake::from_syn(Some(8960), false, true);
    assert_eq!(hs.mss, MSS_V6[3]);
    let c = jar.make(&f, 7, hs);
    assert_eq!(jar.check(&f, 7, c), Some(hs));
    assert_eq!(Handshake::from_syn(Some(100), false, false).mss, MSS_V4[0]);
}

#[test]
fn cookies_expire_after_their_minute_and_the_next_and_keys_rotate() {
    let mut jar = CookieJar::new(0, counter_keys());
    let mut keys = counter_keys();
    for _ in 0..4 {
        keys();
    }
    let hs = Handshake::from_syn(Some(1460), true, false);
    let c = jar.make(&flow(), 99, hs);
    jar.rotate(PERIOD_MS - 1, &mut keys);
    assert_eq!(jar.check(&flow(), 99, c), Some(hs), "same minute");
    jar.rotate(PERIOD_MS, &mut keys);
    assert_eq!(jar.check(&flow(), 99, c), Some(hs), "the next minute");
    let newer = jar.make(&flow(), 99, hs);
    assert_ne!(newer, c, "a new minute, a new key and counter");
    jar.rotate(u64::from(MAX_AGE) * PERIOD_MS, &mut keys);
    assert_eq!(jar.check(&flow(), 99, c), None, "two minutes later");
    assert_eq!(jar.check(&flow(), 99, newer), Some(hs));
    jar.rotate(10 * PERIOD_MS, &mut keys);
    assert_eq!(jar.check(&flow(), 99, newer), None, "after a long pause");
}

#[test]
fn forged_acks_almost_never_pass() {
    let jar = CookieJar::new(0, counter_keys());
    let mut f = flow();
    let mut passed = 0;
    for i in 0..200_000u32 {
        f.cport = (i % 60000) as u16;
        if jar
            .check(&f, i.wrapping_mul(2_654_435_761), i.wrapping_mul(40503))
            .is_some()
        {
            passed += 1;
        }
    }
    // 2 minutes x 8 values of 2^32: about 0.7 expected in 200 k guesses.
    assert!(passed <= 5, "{passed} forged cookies passed");
}

fn frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    f: impl FnOnce(PacketBuilder2) -> PacketBuilder2,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    let b = f(b);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

type PacketBuilder2 = etherparse::PacketBuilderStep<etherparse::TcpHeader>;

/// The TCP header of an untagged IPv4 frame without IP options.
fn tcp_of(bytes: &[u8]) -> etherparse::TcpHeaderSlice<'_> {
    etherparse::TcpHeaderSlice::from_slice(&bytes[34..]).unwrap()
}

fn checksum_ok(bytes: &[u8]) -> bool {
    let m = parse_packet(bytes).unwrap();
    let seg = &bytes[usize::from(m.l4_offset)..m.l3_end()];
    let (IpAddr::V4(s), IpAddr::V4(d)) = (m.src, m.dst) else {
        return false;
    };
    let pseudo = crate::wire::checksum::pseudo_header_v4(s, d, 6, seg.len() as u16);
    crate::wire::checksum::verify(pseudo, seg)
}

const CLIENT: [u8; 4] = [198, 18, 0, 10];
const VIP: [u8; 4] = [198, 18, 0, 100];

#[test]
fn the_whole_proxied_handshake_and_the_translation_after_it() {
    let mut sp = SynProxy::new(0, Default::default());
    sp.reserve(4);
    // 1. SYN with MSS 1460, SACK, timestamps and window scale.
    let syn = frame(
        CLIENT,
        VIP,
        40000,
        80,
        1000,
        |b| {
            b.syn()
                .options(&[
                    etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                    etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
                    etherparse::TcpOptionElement::Timestamp(1, 0),
                    etherparse::TcpOptionElement::WindowScale(7),
                ])
                .unwrap()
        },
        &[],
    );
    let mut b = TestBuf::with_capacity(&syn, 256);
    let m = parse_packet(b.data()).unwrap();
    assert!(SynProxy::is_syn(&m));
    sp.answer_syn(&mut b, &m).unwrap();
    let sa = tcp_of(b.data());
    assert!(sa.syn() && sa.ack() && !sa.rst());
    assert_eq!(sa.acknowledgment_number(), 1001);
    assert_eq!((sa.source_port(), sa.destination_port()), (80, 40000));
    let opts: Vec<_> = sa.options_iterator().map(|o| o.unwrap()).collect();
    assert_eq!(
        opts,
        [
            etherparse::TcpOptionElement::MaximumSegmentSize(1460),
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
        ],
        "no timestamps, no window scale"
    );
    assert!(checksum_ok(b.data()));
    let cookie = sa.sequence_number();
    let mb = parse_packet(b.data()).unwrap();
    assert_eq!((mb.src, mb.dst), (IpAddr::from(VIP), IpAddr::from(CLIENT)));

    // 2. The client's ACK, with the first request in it.
    let ack = frame(
        CLIENT,
        VIP,
        40000,
        80,
        1001,
        |b| b.ack(cookie.wrapping_add(1)),
        b"GET /",
    );
    let mut b = TestBuf::with_capacity(&ack, 256);
    let m = parse_packet(b.data()).unwrap();
    assert!(SynProxy::is_ack(&m));
    let (info, hs) = sp.check_ack(b.data(), &m).expect("valid cookie");
    assert_eq!(
        hs,
        Handshake {
            mss: 1460,
            sack: true
        }
    );
    let id = crate::conn::ConnId(2);
    sp.open(id, &mut b, &m, &info, hs).unwrap();
    let s = tcp_of(b.data());
    assert!(s.syn() && !s.ack());
    assert_eq!(s.sequence_number(), 1000, "the client's ISN");
    assert!(SlicedPacket::from_ethernet(b.data())
        .unwrap()
        .transport
        .map(|t| matches!(t, TransportSlice::Tcp(t) if t.payload().is_empty()))
        .unwrap());
    assert!(checksum_ok(b.data()));
    assert!(!sp.is_open(id));

    // More client data before the server answers: the SYN again.
    let mut more = TestBuf::with_capacity(&ack, 256);
    let m = parse_packet(more.data()).unwrap();
    assert_eq!(sp.client_packet(id, &mut more, &m), Ok(false));
    assert!(tcp_of(more.data()).syn());

    // 3. The real server's SYN-ACK (already back through NAT's reply
    // index: from the server to the client).
    let rs = [198, 18, 1, 11];
    let synack = frame(rs, CLIENT, 80, 40000, 777_000, |b| b.syn().ack(1001), &[]);
    let mut b = TestBuf::with_capacity(&synack, 256);
    let m = parse_packet(b.data()).unwrap();
    assert_eq!(sp.server_packet(id, &mut b, &m), ServerVerdict::AckToServer);
    let a = tcp_of(b.data());
    assert!(a.ack() && !a.syn());
    assert_eq!(
        (a.sequence_number(), a.acknowledgment_number()),
        (1001, 777_001)
    );
    let m2 = parse_packet(b.data()).unwrap();
    assert_eq!((m2.src, m2.dst), (IpAddr::from(CLIENT), IpAddr::from(rs)));
    assert!(checksum_ok(b.data()));
    assert!(sp.is_open(id));

    // 4. Server data toward the client: its seq in the cookie's numbering.
    let data = frame(rs, CLIENT, 80, 40000, 777_001, |b| b.ack(1006), b"200 OK");
    let mut b = TestBuf::with_capacity(&data, 256);
    let m = parse_packet(b.data()).unwrap();
    assert_eq!(sp.server_packet(id, &mut b, &m), ServerVerdict::ToClient);
    assert_eq!(tcp_of(b.data()).sequence_number(), cookie.wrapping_add(1));
    assert!(checksum_ok(b.data()));
    // The client's ACK of it: back in the server's numbering.
    let cack = frame(
        CLIENT,
        VIP,
        40000,
        80,
        1006,
        |b| b.ack(cookie.wrapping_add(7)),
        &[],
    );
    let mut b = TestBuf::with_capacity(&cack, 256);
    let m = parse_packet(b.data()).unwrap();
    assert_eq!(sp.client_packet(id, &mut b, &m), Ok(true));
    assert_eq!(tcp_of(b.data()).acknowledgment_number(), 777_007);
    assert!(checksum_ok(b.data()));
}

#[test]
fn an_ack_with_a_wrong_cookie_is_refused_and_counted() {
    let sp = SynProxy::new(0, Default::default());
    let ack = frame(CLIENT, VIP, 40000, 80, 5, |b| b.ack(123456), &[]);
    let m = parse_packet(&ack).unwrap();
    assert!(sp.check_ack(&ack, &m).is_none());
    assert_eq!(sp.counters().cookies_bad.load(Ordering::Relaxed), 1);
}

#[test]
fn a_server_reset_before_its_syn_ack_reaches_the_client_in_sequence() {
    let mut sp = SynProxy::new(0, Default::default());
    sp.reserve(1);
    let syn = frame(CLIENT, VIP, 1, 80, 50, |b| b.syn(), &[]);
    let mut b = TestBuf::with_capacity(&syn, 256);
    let m = parse_packet(b.data()).unwrap();
    sp.answer_syn(&mut b, &m).unwrap();
    let cookie = tcp_of(b.data()).sequence_number();
    let ack = frame(
        CLIENT,
        VIP,
        1,
        80,
        51,
        |b| b.ack(cookie.wrapping_add(1)),
        &[],
    );
    let mut b = TestBuf::with_capacity(&ack, 256);
    let m = parse_packet(b.data()).unwrap();
    let (info, hs) = sp.check_ack(b.data(), &m).unwrap();
    assert_eq!(hs.mss, 536, "no MSS option: the default");
    let id = crate::conn::ConnId(0);
    sp.open(id, &mut b, &m, &info, hs).unwrap();
    let rst = frame([198, 18, 1, 11], CLIENT, 80, 1, 0, |b| b.rst().ack(51), &[]);
    let mut b = TestBuf::with_capacity(&rst, 256);
    let m = parse_packet(b.data()).unwrap();
    assert_eq!(sp.server_packet(id, &mut b, &m), ServerVerdict::ToClient);
    assert_eq!(tcp_of(b.data()).sequence_number(), cookie.wrapping_add(1));
}
