//! Sync messages byte for byte against frames written out from the
//! reference's tables (ipvs.md 6.3, 6.4), and property tests.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// v1, SyncID 5, one IPv4 entry: TCP ESTABLISHED (state 1), NAT (flags
/// 0), 198.18.0.2:51234 -> 198.18.0.100:80 -> 198.18.1.11:8080, timeout
/// 900 s. Size 8 + 36 = 44.
const V1_ONE_V4: [u8; 44] = [
    0x00, 0x05, 0x00, 0x2c, 0x01, 0x01, 0x00,
    0x00, // header: reserved, syncid, size, count, version, spare
    0x00, 0x06, 0x00, 0x24, // type v4, TCP, version 0 + size 36
    0x00, 0x00, 0x00, 0x00, // flags
    0x00, 0x01, 0xc8, 0x22, // state ESTABLISHED, cport 51234
    0x00, 0x50, 0x1f, 0x90, // vport 80, dport 8080
    0x00, 0x00, 0x00, 0x00, // fwmark
    0x00, 0x00, 0x03, 0x84, // timeout 900
    198, 18, 0, 2, 198, 18, 0, 100, 198, 18, 1, 11, // caddr vaddr daddr
];

fn one_v4() -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 51234,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: ip("198.18.0.2"),
        vaddr: ip("198.18.0.100"),
        daddr: ip("198.18.1.11"),
        seq: None,
    }
}

/// v1, SyncID 0, two entries: an IPv4 UDP entry of a tunnel destination
/// with the sequence option (36 + 2 + 24 = 62 bytes, so 2 bytes of padding
/// follow), then an IPv6 TCP persistence template, ASSURED, DR (72 bytes).
/// Size 8 + 62 + 2 + 72 = 144.
#[rustfmt::skip]
const V1_TWO: [u8; 144] = [
    0x00, 0x00, 0x00, 0x90, 0x02, 0x01, 0x00, 0x00,
    // entry 1: type v4, UDP, size 62
    0x00, 0x11, 0x00, 0x3e,
    0x00, 0x00, 0x06, 0x02, // flags TUNNEL | OUT_SEQ | IN_SEQ
    0x00, 0x00, 0x9c, 0x40, // state 0, cport 40000
    0x00, 0x35, 0x00, 0x35, // vport 53, dport 53
    0x00, 0x00, 0x00, 0x07, // fwmark 7
    0x00, 0x00, 0x01, 0x2c, // timeout 300
    198, 18, 0, 3, 198, 18, 0, 101, 198, 19, 0, 20,
    0x01, 0x18, // option SEQ_DATA, 24 bytes
    0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6,
    0x00, 0x00, // padding to the 4-byte boundary
    // entry 2: type v6, TCP, size 72
    0x01, 0x06, 0x00, 0x48,
    0x00, 0x00, 0x11, 0x83, // flags TEMPLATE | INACTIVE | NOOUTPUT | DROUTE
    0x00, 0x01, 0x00, 0x00, // state ASSURED, cport 0
    0x01, 0xbb, 0x01, 0xbb, // vport 443, dport 443
    0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x68, // timeout 360
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
    0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
];

fn two() -> [SyncConn; 2] {
    [
        SyncConn {
            protocol: 17,
            flags: flags::TUNNEL | flags::SEQ_MASK,
            state: 0,
            cport: 40000,
            vport: 53,
            dport: 53,
            fwmark: 7,
            timeout: 300,
            caddr: ip("198.18.0.3"),
            vaddr: ip("198.18.0.101"),
            daddr: ip("198.19.0.20"),
            seq: Some([1, 2, 3, 4, 5, 6]),
        },
        SyncConn {
            protocol: 6,
            flags: flags::TEMPLATE | flags::INACTIVE | flags::NOOUTPUT | flags::DROUTE,
            state: template_state::ASSURED,
            cport: 0,
            vport: 443,
            dport: 443,
            fwmark: 0,
            timeout: 360,
            caddr: ip("2001:db8::5"),
            vaddr: ip("2001:db8::80"),
            daddr: ip("2001:db8:1::a"),
            seq: None,
        },
    ]
}

/// v0 (4-byte header: count 1, SyncID 9, size 28), one entry: TCP
/// ESTABLISHED, DR, 198.18.0.2:1025 -> 198.18.0.100:80 -> 198.18.1.12:80.
const V0_ONE: [u8; 28] = [
    0x01, 0x09, 0x00, 0x1c, // count, syncid, size
    0x00, 0x06, 0x04, 0x01, 0x00, 0x50, 0x00, 0x50, // reserved, TCP, cport, vport, dport
    198, 18, 0, 2, 198, 18, 0, 100, 198, 18, 1, 12, // caddr vaddr daddr
    0x00, 0x83, 0x00, 0x01, // flags NOOUTPUT | DROUTE, state 1
];

fn build(entries: &[SyncConn], syncid: u8, maxlen: usize) -> Vec<u8> {
    let mut buf = vec![0xee; maxlen];
    let mut m = MessageBuilder::new(&mut buf, syncid).unwrap();
    for e in entries {
        m.push(e).unwrap();
    }
    m.bytes().to_vec()
}

fn decode(b: &[u8]) -> Vec<Result<SyncConn, EntryError>> {
    SyncMessage::new_checked(b).unwrap().entries().collect()
}

#[test]
fn one_ipv4_entry_encodes_and_decodes_as_the_reference_lays_it_out() {
    assert_eq!(build(&[one_v4()], 5, 1472), V1_ONE_V4);
    let m = SyncMessage::new_checked(&V1_ONE_V4[..]).unwrap();
    assert_eq!(
        (m.version(), m.syncid(), m.size(), m.count()),
        (Version::V1, 5, 44, 1)
    );
    assert_eq!(decode(&V1_ONE_V4), vec![Ok(one_v4())]);
}

#[test]
fn entries_are_padded_to_four_bytes_and_ipv6_entries_are_72_bytes() {
    assert_eq!(build(&two(), 0, 1472), V1_TWO);
    assert_eq!(decode(&V1_TWO), two().map(Ok).to_vec());
}

#[test]
fn hashed_flag_is_not_sent() {
    let mut c = one_v4();
    c.flags |= flags::HASHED;
    assert_eq!(build(&[c], 5, 1472), V1_ONE_V4);
}

#[test]
fn version_0_is_recognised_and_decoded_without_timeout() {
    let m = SyncMessage::new_checked(&V0_ONE[..]).unwrap();
    assert_eq!((m.version(), m.syncid(), m.count()), (Version::V0, 9, 1));
    let want = SyncConn {
        protocol: 6,
        flags: flags::NOOUTPUT | flags::DROUTE,
        state: 1,
        cport: 1025,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 0,
        caddr: ip("198.18.0.2"),
        vaddr: ip("198.18.0.100"),
        daddr: ip("198.18.1.12"),
        seq: None,
    };
    assert_eq!(decode(&V0_ONE), vec![Ok(want)]);
    // A v1 header with a non-zero spare field is read as v0, as the
    // kernel does (and here its first "entry" runs past the message).
    let mut odd = V1_ONE_V4;
    odd[7] = 1;
    let m = SyncMessage::new_checked(&odd[..]).unwrap();
    assert_eq!(m.version(), Version::V0);
}

#[test]
fn a_datagram_whose_length_is_not_its_size_field_is_refused() {
    assert_eq!(
        SyncMessage::new_checked(&V1_ONE_V4[..43]).err(),
        Some(MessageError::BadSize)
    );
    let mut longer = V1_ONE_V4.to_vec();
    longer.push(0);
    assert_eq!(
        SyncMessage::new_checked(&longer[..]).err(),
        Some(MessageError::BadSize)
    );
    assert_eq!(
        SyncMessage::new_checked(&[0u8, 0, 0][..]).err(),
        Some(MessageError::Truncated)
    );
}

/// `V1_TWO` with the first entry changed by `f`.
fn two_with(f: impl FnOnce(&mut [u8])) -> Vec<Result<SyncConn, EntryError>> {
    let mut b = V1_TWO;
    f(&mut b[8..70]);
    decode(&b)
}

#[test]
fn malformed_entries_are_named_and_end_the_message_as_the_kernel_does() {
    // Type 2: the rest of the message is discarded.
    assert_eq!(two_with(|e| e[0] = 2), vec![Err(EntryError::BadType)]);
    // Version bits in ver_size.
    assert_eq!(two_with(|e| e[2] = 0x10), vec![Err(EntryError::BadVersion)]);
    // Size past the message.
    assert_eq!(
        two_with(|e| e[2..4].copy_from_slice(&[0x0f, 0xff])),
        vec![Err(EntryError::Truncated)]
    );
    // Size below the fixed part.
    assert_eq!(two_with(|e| e[3] = 20), vec![Err(EntryError::BadSize)]);
    // Option of length 0; sequence option of the wrong length.
    assert_eq!(two_with(|e| e[37] = 0), vec![Err(EntryError::BadOption)]);
    assert_eq!(two_with(|e| e[37] = 23), vec![Err(EntryError::BadOption)]);
    // A count larger than the entries present.
    let mut b = V1_ONE_V4;
    b[4] = 2;
    assert_eq!(decode(&b), vec![Ok(one_v4()), Err(EntryError::Truncated)]);
}

#[test]
fn unknown_options_drop_the_entry_if_mandatory_and_are_skipped_if_optional() {
    let [_, second] = two();
    let mut seqless = two()[0];
    seqless.seq = None;
    // Option type 9 (mandatory, unknown): that entry only.
    assert_eq!(
        two_with(|e| e[36] = 9),
        vec![Err(EntryError::UnknownOption), Ok(second)]
    );
    // Type 9 | F_PARAM: skipped.
    assert_eq!(two_with(|e| e[36] = 0x49), vec![Ok(seqless), Ok(second)]);
}

#[test]
fn the_builder_stops_at_the_maximum_length() {
    // Header + two 36-byte entries fill 80 bytes; a third does not fit.
    let mut buf = [0u8; 80];
    let mut m = MessageBuilder::new(&mut buf, 1).unwrap();
    m.push(&one_v4()).unwrap();
    assert_eq!(m.push(&one_v4()), Ok(()));
    assert_eq!(m.push(&one_v4()), Err(PushError::Full));
    assert_eq!((m.count(), m.bytes().len()), (2, 80));
    m.clear();
    assert!(m.is_empty());
    assert_eq!(m.bytes(), &[0, 1, 0, 8, 0, 1, 0, 0]);
    let mut mixed = one_v4();
    mixed.daddr = ip("2001:db8::1");
    assert_eq!(m.push(&mixed), Err(PushError::MixedFamily));
}

fn addr_pair() -> impl Strategy<Value = [IpAddr; 3]> {
    prop_oneof![
        any::<[[u8; 4]; 3]>().prop_map(|a| a.map(IpAddr::from)),
        any::<[[u8; 16]; 3]>().prop_map(|a| a.map(IpAddr::from)),
    ]
}

fn sync_conn() -> impl Strategy<Value = SyncConn> {
    (
        any::<(u8, u32, u16, u16, u16, u16, u32, u32)>(),
        addr_pair(),
        proptest::option::of(any::<[u32; 6]>()),
    )
        .prop_map(|((p, f, s, c, v, d, m, t), [ca, va, da], seq)| SyncConn {
            protocol: p,
            flags: f & !flags::HASHED,
            state: s,
            cport: c,
            vport: v,
            dport: d,
            fwmark: m,
            timeout: t,
            caddr: ca,
            vaddr: va,
            daddr: da,
            seq,
        })
}

proptest! {
    #[test]
    fn encode_then_decode_gives_the_entries_back(
        entries in proptest::collection::vec(sync_conn(), 0..20),
        syncid in any::<u8>(),
    ) {
        let b = build(&entries, syncid, 2000);
        let m = SyncMessage::new_checked(&b[..]).unwrap();
        prop_assert_eq!(m.version(), Version::V1);
        prop_assert_eq!(m.syncid(), syncid);
        let got: Vec<_> = m.entries().collect();
        prop_assert_eq!(got, entries.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn decoding_any_bytes_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..400), fix_size in any::<bool>()) {
        if fix_size && b.len() >= 4 {
            let n = b.len() as u16;
            b[2..4].copy_from_slice(&n.to_be_bytes());
        }
        if let Ok(m) = SyncMessage::new_checked(&b[..]) {
            let _ = (m.version(), m.syncid(), m.count());
            prop_assert!(m.entries().count() <= usize::from(m.count()));
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(i in 0usize..144, v in any::<u8>()) {
        let mut b = V1_TWO;
        b[i] = v;
        if let Ok(m) = SyncMessage::new_checked(&b[..]) {
            for _ in m.entries() {}
        }
    }
}
