//! net_pcap replay: a capture written here (an ARP request and an ICMP
//! echo request to the director, an IPv6 echo request, and a frame for
//! another host) goes through the real worker; the tx capture must hold
//! exactly the ARP reply and the two echo replies, byte for byte.

mod common;

use common::pcap::{read_pcap, write_pcap};

use common::{leftovers, Daemon, Scratch};

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const DIRECTOR_IP: [u8; 4] = [198, 18, 0, 1];
const HOST_IP: [u8; 4] = [198, 18, 0, 2];

/// The Internet checksum (RFC 1071), written independently of the engine.
fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let bytes: Vec<u8> = parts.concat();
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes()].concat()
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    [
        &[0, 1, 8, 0, 6, 4][..],
        &op.to_be_bytes(),
        &sha,
        &spa,
        &tha,
        &tpa,
    ]
    .concat()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = [
        &[0x45, 0][..],
        &len.to_be_bytes(),
        &[0x12, 0x34, 0x40, 0, ttl, 1, 0, 0],
        &src,
        &dst,
    ]
    .concat();
    let c = csum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    [h, payload.to_vec()].concat()
}

fn icmp_echo(kind: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = [
        &[kind, 0, 0, 0][..],
        &id.to_be_bytes(),
        &seq.to_be_bytes(),
        data,
    ]
    .concat();
    let c = csum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

const V6_DIRECTOR: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_HOST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn icmp6_echo(kind: u8, src: [u8; 16], dst: [u8; 16], hop: u8, data: &[u8]) -> Vec<u8> {
    let mut m = [&[kind, 0, 0, 0, 0, 7, 0, 1][..], data].concat();
    let len = (m.len() as u32).to_be_bytes();
    let c = csum(&[&src, &dst, &len, &[0, 0, 0, 58], &m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let plen = (m.len() as u16).to_be_bytes();
    [&[0x60, 0, 0, 0][..], &plen, &[58, hop], &src, &dst, &m].concat()
}

/// A neighbour advertisement from the host for its own address.
fn neighbor_advert() -> Vec<u8> {
    let mut m = [
        &[136, 0, 0, 0, 0x60, 0, 0, 0][..],
        &V6_HOST,
        &[2, 1],
        &HOST_MAC,
    ]
    .concat();
    let len = (m.len() as u32).to_be_bytes();
    let c = csum(&[&V6_HOST, &V6_DIRECTOR, &len, &[0, 0, 0, 58], &m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let plen = (m.len() as u16).to_be_bytes();
    let ip = [
        &[0x60, 0, 0, 0][..],
        &plen,
        &[58, 255],
        &V6_HOST,
        &V6_DIRECTOR,
        &m,
    ]
    .concat();
    [eth(DIRECTOR_MAC, HOST_MAC, 0x86dd), ip].concat()
}

#[test]
fn replayed_requests_get_exact_replies() {
    common::require_root();
    let dir = Scratch::new("pcap");
    let prefix = common::unique("pcap");
    let (rx, tx) = (dir.path("rx.pcap"), dir.path("tx.pcap"));
    let payload = b"uvs-pcap-echo-data-0123456789";

    let mut arp_req = eth([0xff; 6], HOST_MAC, 0x0806);
    arp_req.extend(arp(1, HOST_MAC, HOST_IP, [0; 6], DIRECTOR_IP));
    arp_req.resize(60, 0); // link padding, as on the wire
    let mut echo = eth(DIRECTOR_MAC, HOST_MAC, 0x0800);
    echo.extend(ipv4(
        HOST_IP,
        DIRECTOR_IP,
        63,
        &icmp_echo(8, 0x4242, 1, payload),
    ));
    let mut echo6 = eth(DIRECTOR_MAC, HOST_MAC, 0x86dd);
    echo6.extend(icmp6_echo(128, V6_HOST, V6_DIRECTOR, 64, payload));
    // For another host's MAC: must not be answered.
    let mut other = eth([0x02, 0, 0, 0, 0, 0x99], HOST_MAC, 0x0800);
    other.extend(ipv4(HOST_IP, DIRECTOR_IP, 64, &icmp_echo(8, 1, 1, b"x")));
    write_pcap(&rx, &[arp_req, other, echo, echo6, neighbor_advert()]);

    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [control]\nsocket = \"{}\"\n\
             [[port]]\nname = \"wire\"\ndevice = \"net_pcap_{prefix},rx_pcap={},tx_pcap={}\"\n\
             mac = \"02:00:00:00:00:01\"\naddresses = [\"198.18.0.1/24\", \"2001:db8::1/64\"]\n",
            dir.path("uvsadm.sock").display(),
            rx.display(),
            tx.display()
        ),
    )
    .unwrap();
    let mut uvsd = Daemon::start(&cfg);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, stderr) = uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");

    let mut want_arp = eth(HOST_MAC, DIRECTOR_MAC, 0x0806);
    want_arp.extend(arp(2, DIRECTOR_MAC, DIRECTOR_IP, HOST_MAC, HOST_IP));
    want_arp.resize(60, 0);
    // The echo reply: addresses swapped, TTL 64, same id/seq/data, and sent
    // to the MAC learned from the ARP request.
    let mut want_echo = eth(HOST_MAC, DIRECTOR_MAC, 0x0800);
    want_echo.extend(ipv4(
        DIRECTOR_IP,
        HOST_IP,
        64,
        &icmp_echo(0, 0x4242, 1, payload),
    ));
    // The IPv6 echo reply needs NDP first: a solicitation for 2001:db8::2
    // goes out, the reply waits, and leaves when the advertisement (next
    // in the capture) arrives.
    let mut want_echo6 = eth(HOST_MAC, DIRECTOR_MAC, 0x86dd);
    want_echo6.extend(icmp6_echo(129, V6_DIRECTOR, V6_HOST, 64, payload));
    let out = read_pcap(&tx);
    assert_eq!(
        out.len(),
        4,
        "ARP reply, echo reply, solicitation, echo reply: {out:02x?}\n{stderr}"
    );
    assert_eq!(out[0], want_arp, "ARP reply");
    assert_eq!(out[1], want_echo, "ICMP echo reply");
    let ns = &out[2];
    assert_eq!(
        &ns[0..6],
        &[0x33, 0x33, 0xff, 0, 0, 2],
        "to the solicited-node group's MAC"
    );
    assert_eq!(&ns[12..14], &[0x86, 0xdd]);
    assert_eq!(ns[14 + 6], 58, "ICMPv6");
    assert_eq!(ns[14 + 7], 255, "hop limit 255");
    assert_eq!(
        &ns[14 + 24..14 + 40],
        &[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2],
        "solicited-node group"
    );
    assert_eq!(ns[14 + 40], 135, "neighbour solicitation");
    let body = &ns[14 + 40..];
    let len = (body.len() as u32).to_be_bytes();
    assert_eq!(
        csum(&[
            &V6_DIRECTOR,
            &ns[14 + 24..14 + 40],
            &len,
            &[0, 0, 0, 58],
            body
        ]),
        0,
        "checksum"
    );
    assert_eq!(&ns[14 + 48..14 + 64], &V6_HOST, "target");
    assert_eq!(
        &ns[14 + 64..14 + 72],
        &[1, 1, 2, 0, 0, 0, 0, 1],
        "source link-layer option"
    );
    assert_eq!(out[3], want_echo6, "ICMPv6 echo reply after resolution");
    assert!(stderr.contains("drop_other_mac=1"), "{stderr}");
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
