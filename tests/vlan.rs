//! VLANs through the real worker, byte for byte: one port carries the
//! client VLAN 10 and the server VLAN 20 (802.1Q), and NAT and DR services
//! balance from one to the other. This machine's kernel has neither the
//! 8021q module nor bridge VLAN filtering, so no namespace peer could send
//! or receive tagged frames: the clients' and real servers' frames are
//! written here, exactly, replayed through a net_pcap port into uvsd, and
//! what uvsd sends is read back from the tx capture. Checked as an
//! operator would: ARP for a VIP on the client VLAN is answered on that
//! VLAN; a client's SYN to a NAT VIP makes the director ask for the real
//! server on the server VLAN, then leaves rewritten and tagged for it with
//! the right MACs; the server's answer leaves from the VIP on the client
//! VLAN; a DR SYN leaves on the server VLAN unchanged but for MACs, tag
//! and TTL; a frame of an unconfigured VLAN goes nowhere and is counted,
//! read back with `uvsadm --counters --json` while uvsd runs.

mod common;

use common::pcap::{read_pcap, write_pcap};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{leftovers, Daemon, Scratch};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const NAT_REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];
const DR_REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x02];
const CLIENT: [u8; 4] = [198, 18, 0, 2];
const VLAN20_ADDR: [u8; 4] = [198, 18, 1, 1];
const VIP_NAT: [u8; 4] = [198, 18, 0, 100];
const VIP_DR: [u8; 4] = [198, 18, 0, 101];
const NAT_REAL: [u8; 4] = [198, 18, 1, 10];

const RULES: &str = "\
-A -t 198.18.0.100:80 -s rr
-a -t 198.18.0.100:80 -r 198.18.1.10:8080 -m -w 1
-A -t 198.18.0.101:80 -s rr
-a -t 198.18.0.101:80 -r 198.18.1.11:80 -g -w 1
";

/// The Internet checksum (RFC 1071), written independently of the engine.
fn csum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum = 0u32;
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

/// An Ethernet frame tagged with `vid` (802.1Q, priority 0).
fn tagged(vid: u16, dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [
        &dst[..],
        &src,
        &[0x81, 0x00],
        &vid.to_be_bytes(),
        &ethertype.to_be_bytes(),
        payload,
    ]
    .concat()
}

/// An ARP packet with `sha` the frame's source, padded so that the
/// untagged frame has the 60-byte minimum (64 bytes with the tag).
fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = [
        &[0, 1, 8, 0, 6, 4][..],
        &op.to_be_bytes(),
        &sha,
        &spa,
        &tha,
        &tpa,
    ]
    .concat();
    a.resize(60 - 14, 0);
    a
}

/// An IPv4 packet carrying TCP: `flags` (SYN 0x02, SYN-ACK 0x12), both
/// checksums computed here.
fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), ttl: u8, flags: u8, ack: u32) -> Vec<u8> {
    let mut t = [
        &src.1.to_be_bytes()[..],
        &dst.1.to_be_bytes(),
        &1000u32.to_be_bytes(),
        &ack.to_be_bytes(),
        &[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0],
    ]
    .concat();
    let c = csum(&[&src.0, &dst.0, &[0, 6, 0, 20], &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let mut h = [
        &[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, ttl, 6, 0, 0][..],
        &src.0,
        &dst.0,
    ]
    .concat();
    let c = csum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    [h, t].concat()
}

/// The totals of `uvsadm --counters --json`, if uvsd answers.
fn totals(sock: &Path) -> Option<serde_json::Value> {
    let out = Command::new(UVSADM)
        .args([
            "--socket",
            &sock.display().to_string(),
            "--counters",
            "--json",
        ])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["total"].clone())
}

#[test]
fn nat_and_dr_from_the_client_vlan_to_the_server_vlan_byte_for_byte() {
    common::require_root();
    // One uvsd of the pcap tests at a time: each busy-polls lcore 1.
    let _serial = common::lab::lock();
    let dir = Scratch::new("vlan");
    let prefix = common::unique("vlan");
    let (rx, tx) = (dir.path("rx.pcap"), dir.path("tx.pcap"));
    let rules = dir.path("vlan.rules");
    std::fs::write(&rules, RULES).unwrap();
    let sock = dir.path("uvsadm.sock");

    let arp_for_vip = tagged(
        10,
        [0xff; 6],
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP_NAT),
    );
    let nat_syn = tagged(
        10,
        DIRECTOR_MAC,
        CLIENT_MAC,
        0x0800,
        &tcp((CLIENT, 40000), (VIP_NAT, 80), 64, 0x02, 0),
    );
    let real_is_at = tagged(
        20,
        DIRECTOR_MAC,
        NAT_REAL_MAC,
        0x0806,
        &arp(2, NAT_REAL_MAC, NAT_REAL, DIRECTOR_MAC, VLAN20_ADDR),
    );
    let syn_ack = tagged(
        20,
        DIRECTOR_MAC,
        NAT_REAL_MAC,
        0x0800,
        &tcp((NAT_REAL, 8080), (CLIENT, 40000), 64, 0x12, 1001),
    );
    let dr_syn = tagged(
        10,
        DIRECTOR_MAC,
        CLIENT_MAC,
        0x0800,
        &tcp((CLIENT, 40001), (VIP_DR, 80), 64, 0x02, 0),
    );
    let unknown_vlan = tagged(
        30,
        DIRECTOR_MAC,
        CLIENT_MAC,
        0x0800,
        &tcp((CLIENT, 40002), (VIP_NAT, 80), 64, 0x02, 0),
    );
    let frames = [
        arp_for_vip,
        nat_syn,
        real_is_at,
        syn_ack,
        dr_syn,
        unknown_vlan,
    ];
    write_pcap(&rx, &frames);

    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [control]\nsocket = \"{}\"\nrules = \"{}\"\n\
             [[port]]\nname = \"trunk\"\ndevice = \"net_pcap_{prefix},rx_pcap={},tx_pcap={}\"\n\
             mac = \"02:00:00:00:00:01\"\n\
             [[port.vlan]]\nid = 10\naddresses = [\"198.18.0.1/24\"]\n\
             [[port.vlan]]\nid = 20\naddresses = [\"198.18.1.1/24\"]\n\
             [[neighbor]]\nip = \"198.18.1.11\"\nmac = \"02:00:00:00:bb:02\"\n",
            sock.display(),
            rules.display(),
            rx.display(),
            tx.display()
        ),
    )
    .unwrap();
    let mut uvsd = Daemon::start(&cfg);
    // Until the worker took every frame of the capture (30 s at most).
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let t = totals(&sock);
        let rx_done = t
            .as_ref()
            .and_then(|t| t["rx"].as_u64())
            .is_some_and(|n| n >= frames.len() as u64);
        if rx_done || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, stderr) = uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    let counts = counts.unwrap_or_else(|| panic!("no counters from uvsadm: {stderr}"));
    assert_eq!(counts["rx"], frames.len() as u64, "{counts}");
    assert_eq!(counts["drop_unknown_vlan"], 1, "VLAN 30: {counts}");

    let want = [
        (
            "ARP reply for the VIP on VLAN 10",
            tagged(
                10,
                CLIENT_MAC,
                DIRECTOR_MAC,
                0x0806,
                &arp(2, DIRECTOR_MAC, VIP_NAT, CLIENT_MAC, CLIENT),
            ),
        ),
        (
            "who-has for the NAT real server on VLAN 20",
            tagged(
                20,
                [0xff; 6],
                DIRECTOR_MAC,
                0x0806,
                &arp(1, DIRECTOR_MAC, VLAN20_ADDR, [0; 6], NAT_REAL),
            ),
        ),
        (
            "the client's SYN, NATed, on VLAN 20",
            tagged(
                20,
                NAT_REAL_MAC,
                DIRECTOR_MAC,
                0x0800,
                &tcp((CLIENT, 40000), (NAT_REAL, 8080), 63, 0x02, 0),
            ),
        ),
        (
            "the server's SYN-ACK from the VIP on VLAN 10",
            tagged(
                10,
                CLIENT_MAC,
                DIRECTOR_MAC,
                0x0800,
                &tcp((VIP_NAT, 80), (CLIENT, 40000), 63, 0x12, 1001),
            ),
        ),
        (
            "the DR SYN on VLAN 20",
            tagged(
                20,
                DR_REAL_MAC,
                DIRECTOR_MAC,
                0x0800,
                &tcp((CLIENT, 40001), (VIP_DR, 80), 63, 0x02, 0),
            ),
        ),
    ];
    let sent = read_pcap(&tx);
    assert_eq!(sent.len(), want.len(), "{:02x?}\n{stderr}", sent);
    for ((what, w), s) in want.iter().zip(&sent) {
        assert_eq!(s, w, "{what}");
    }
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
