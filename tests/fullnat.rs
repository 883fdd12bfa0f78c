//! FULLNAT end to end, one-armed: the client, the real servers and the
//! director's server-side port share one segment (the bridge of
//! scripts/topo.sh, method `fullnat`), and the real servers have no route
//! beyond it: they answer the director's local address, never the client.
//! TCP and UDP over IPv4 and IPv6 with real Linux peers (curl, nc, python's
//! HTTP server and a UDP service), and DPVS's TOA option checked in a
//! capture taken at a real server (tcpdump in its namespace). The same
//! captures show DPVS's sequence translation: the real server's SYNs carry
//! ISNs the client never sent, the client's SYN-ACKs an MSS lowered by the
//! TOA length, and a 1 MiB download through the translation arrives whole.
//!
//! Needs root; runs alone (uvsd polls a core) and removes its namespaces
//! even when it fails.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lab::{lock, Lab};
use common::pcap::read_pcap;
use common::{in_ns, Procs};

/// Virtual services and local addresses on the server segment; the client
/// is the bridge namespace's own address on it.
const VIP: &str = "198.18.1.100";
const VIP6: &str = "2001:db8:1::100";
const LIP: &str = "198.18.1.50";
const LIP6: &str = "2001:db8:1::50";
const CLIENT: &str = "198.18.1.254";
const CLIENT6: &str = "2001:db8:1::fe";

/// Waits up to `secs` for `f` to hold.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// `/who` over `url_host` from the bridge namespace (the one-armed client).
fn who(lab: &Lab, url_host: &str) -> Option<String> {
    lab.ns(
        "br",
        &[
            "curl",
            "-s",
            "-f",
            "-m",
            "5",
            &format!("http://{url_host}/who"),
        ],
    )
    .map(|s| s.trim().to_string())
}

/// A Python program sending one datagram to `addr:port` on a connected
/// socket and printing `refused` when an ICMP port unreachable comes back
/// (`timeout` when nothing does).
fn udp_probe(addr: &str, port: u16) -> String {
    let fam = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    format!(
        "import socket\ns = socket.socket(socket.{fam}, socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.connect(('{addr}', {port}))\ns.send(b'x')\ntry:\n    s.recv(100)\n    print('answer')\n\
         except ConnectionRefusedError:\n    print('refused')\nexcept socket.timeout:\n    print('timeout')\n"
    )
}

/// TCP options of each TCP segment in `frame` sent from `src` to port 80,
/// with the segment's source.
fn options_from(frame: &[u8], src: IpAddr) -> Option<Vec<u8>> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (l4, from, proto) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let a: [u8; 4] = frame[26..30].try_into().ok()?;
            (14 + ihl, IpAddr::V4(Ipv4Addr::from(a)), frame[23])
        }
        0x86dd => {
            let a: [u8; 16] = frame[22..38].try_into().ok()?;
            (54, IpAddr::V6(Ipv6Addr::from(a)), frame[20])
        }
        _ => return None,
    };
    if proto != 6 || from != src || frame.len() < l4 + 20 {
        return None;
    }
    if u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]) != 80 {
        return None;
    }
    let hl = usize::from(frame[l4 + 12] >> 4) * 4;
    frame.get(l4 + 20..l4 + hl).map(<[u8]>::to_vec)
}

/// `(source, sequence number, MSS option)` of a SYN (with or without ACK)
/// in `frame`, if it is one.
fn syn(frame: &[u8]) -> Option<(IpAddr, u32, Option<u16>)> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (l4, from, proto) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let a: [u8; 4] = frame[26..30].try_into().ok()?;
            (14 + ihl, IpAddr::V4(Ipv4Addr::from(a)), frame[23])
        }
        0x86dd => {
            let a: [u8; 16] = frame[22..38].try_into().ok()?;
            (54, IpAddr::V6(Ipv6Addr::from(a)), frame[20])
        }
        _ => return None,
    };
    if proto != 6 || frame.len() < l4 + 20 || frame[l4 + 13] & 0x02 == 0 {
        return None;
    }
    let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().ok()?);
    let hl = usize::from(frame[l4 + 12] >> 4) * 4;
    let opts = frame.get(l4 + 20..l4 + hl)?;
    let mut mss = None;
    let mut i = 0;
    while i + 1 < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            k => {
                let len = usize::from(opts[i + 1]).max(2);
                if k == 2 && len == 4 && i + 4 <= opts.len() {
                    mss = Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]));
                }
                i += len;
            }
        }
    }
    Some((from, seq, mss))
}

/// The TOA option (kind 254) among `opts`, if any.
fn toa(opts: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            k => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if k == 254 {
                    return Some(opts[i..i + len].to_vec());
                }
                i += len;
            }
        }
    }
    None
}

#[test]
fn one_armed_fullnat_tcp_udp_ipv4_ipv6_with_toa_seen_at_the_real_server() {
    common::require_root();
    let _g = lock();
    let lab = Lab::new("fn", "fullnat", 2, 1);

    // The real servers cannot reach the client, whatever the director does.
    for rs in ["rs1", "rs2"] {
        let r4 = lab.ns(rs, &["ip", "route", "show", "default"]).unwrap();
        let r6 = lab
            .ns(rs, &["ip", "-6", "route", "show", "default"])
            .unwrap();
        assert!(
            r4.trim().is_empty() && r6.trim().is_empty(),
            "{rs}: {r4}{r6}"
        );
    }

    for (vip, lip) in [(VIP.to_string(), LIP), (format!("[{VIP6}]"), LIP6)] {
        lab.ok(&format!("-A -t {vip}:80 -s rr --toa"));
        lab.ok(&format!("-A -u {vip}:53 -s rr"));
        for (i, rs) in ["198.18.1.11", "198.18.1.12"].iter().enumerate() {
            let rs = if vip.starts_with('[') {
                format!("[2001:db8:1::1{}]", i + 1)
            } else {
                rs.to_string()
            };
            lab.ok(&format!("-a -t {vip}:80 -r {rs}:80 -b"));
            lab.ok(&format!("-a -u {vip}:53 -r {rs}:53 --fullnat"));
        }
        lab.ok(&format!("--add-laddr -z {lip} -t {vip}:80"));
        lab.ok(&format!("-P -u {vip}:53 -z {lip}"));
    }
    let list = lab.ok("-L -n");
    assert!(list.contains("FullNat"), "{list}");
    assert!(list.contains("rr toa"), "{list}");

    // A capture at rs1 of what reaches its HTTP server.
    let pcap = lab.scratch.path("rs1.pcap");
    let err = lab.scratch.path("tcpdump.err");
    let mut procs = Procs::default();
    procs.0.push(
        in_ns(
            &format!("{}-rs1", lab.p),
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-U",
                "-n",
                "-s",
                "256",
                "-w",
                pcap.to_str().unwrap(),
                "tcp",
                "dst",
                "port",
                "80",
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap(),
    );
    // And one at the client of the SYNs it sends and the SYN-ACKs it gets.
    let cpcap = lab.scratch.path("client.pcap");
    let cerr = lab.scratch.path("tcpdump-client.err");
    procs.0.push(
        in_ns(
            &format!("{}-br", lab.p),
            &[
                "tcpdump",
                "-i",
                "br0",
                "-U",
                "-n",
                "-s",
                "256",
                "-w",
                cpcap.to_str().unwrap(),
                "tcp",
                "port",
                "80",
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&cerr).unwrap())
        .spawn()
        .unwrap(),
    );
    for e in [&err, &cerr] {
        assert!(
            wait_for(20, || std::fs::read_to_string(e)
                .is_ok_and(|s| s.contains("listening on"))),
            "tcpdump did not start: {:?}",
            std::fs::read_to_string(e)
        );
    }

    // TCP over both families: round robin over both servers, every answer
    // back through the director.
    for host in [VIP.to_string(), format!("[{VIP6}]")] {
        let mut seen: Vec<String> = (0..4)
            .map(|_| who(&lab, &host).unwrap_or_else(|| panic!("GET http://{host}/who failed")))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, ["rs1", "rs2"], "{host}");
    }
    // A 1 MiB download: every acknowledgement and SACK block the client
    // sends crosses the sequence translation.
    let blob = std::fs::read(format!("/tmp/{}-www/blob", lab.p)).unwrap();
    let got = lab.scratch.path("blob");
    lab.ns(
        "br",
        &[
            "curl",
            "-s",
            "-f",
            "-m",
            "60",
            "-o",
            got.to_str().unwrap(),
            &format!("http://{VIP}/blob"),
        ],
    )
    .expect("download through FULLNAT failed");
    assert!(std::fs::read(&got).unwrap() == blob, "the download differs");

    // UDP over both families.
    for vip in [VIP, VIP6] {
        let a = lab
            .udp_from("br", vip, "hello")
            .unwrap_or_else(|| panic!("no UDP answer from {vip}"));
        assert!(a == "rs1 hello" || a == "rs2 hello", "{vip}: {a}");
    }

    // A UDP service whose real servers have nothing on the port: their
    // port unreachable, about the datagram from the local address, reaches
    // the client about its own datagram (the socket reports the refusal).
    for (vip, lip, rs) in [(VIP, LIP, "198.18.1.11"), (VIP6, LIP6, "[2001:db8:1::11]")] {
        let v = if vip.contains(':') {
            format!("[{vip}]")
        } else {
            vip.to_string()
        };
        lab.ok(&format!("-A -u {v}:54 -s rr"));
        lab.ok(&format!("-a -u {v}:54 -r {rs}:54 -b"));
        lab.ok(&format!("-P -u {v}:54 -z {lip}"));
        let probe = udp_probe(vip, 54);
        let mut last = String::new();
        let refused = wait_for(20, || {
            last = lab.ns("br", &["python3", "-c", &probe]).unwrap_or_default();
            last.trim() == "refused"
        });
        assert!(refused, "UDP to {vip}:54 with nothing behind it: {last}");
    }

    // The local addresses carry the connections (DPVS's --get-laddr).
    let g = lab.ok(&format!("-G -t {VIP}:80"));
    let row = g
        .lines()
        .find(|l| l.split_whitespace().next() == Some(LIP))
        .unwrap_or_else(|| panic!("{g}"));
    let conns: i64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(conns >= 1, "{g}");
    let counters = lab.ok("--counters");
    let refused = counters
        .lines()
        .find(|l| l.starts_with("lb_drop_no_local_port "))
        .unwrap_or_else(|| panic!("{counters}"));
    assert!(
        refused.split_whitespace().skip(1).all(|n| n == "0"),
        "{counters}"
    );

    // TOA at the real server: segments from the local address carry the
    // client's address (IPv4: 8 bytes, IPv6: 20 bytes, DPVS's layout).
    let frames = || read_pcap(&pcap);
    let found = |src: &str, len: usize, addr: &[u8]| {
        frames().iter().any(|f| {
            options_from(f, src.parse().unwrap())
                .and_then(|o| toa(&o))
                .is_some_and(|t| t.len() == len && t[1] as usize == len && &t[4..] == addr)
        })
    };
    let v4: Vec<u8> = CLIENT.parse::<Ipv4Addr>().unwrap().octets().to_vec();
    let v6: Vec<u8> = CLIENT6.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    assert!(
        wait_for(10, || found(LIP, 8, &v4) && found(LIP6, 20, &v6)),
        "no TOA with the client's address in {} frames from the local addresses",
        frames().len()
    );
    // Sequence numbers: the SYNs reaching rs1 from the local addresses
    // carry ISNs none of the client's SYNs had; the SYN-ACKs the client
    // gets offer an MSS lowered by the TOA length (rs1's 1460 / 1440 on a
    // 1500-byte link, less 8 / 20).
    let client_frames = read_pcap(&cpcap);
    let syns: Vec<_> = client_frames.iter().filter_map(|f| syn(f)).collect();
    let client_isns: Vec<u32> = syns
        .iter()
        .filter(|(from, _, _)| [CLIENT, CLIENT6].contains(&from.to_string().as_str()))
        .map(|s| s.1)
        .collect();
    let server_isns: Vec<u32> = frames()
        .iter()
        .filter_map(|f| syn(f))
        .filter(|(from, _, _)| [LIP, LIP6].contains(&from.to_string().as_str()))
        .map(|s| s.1)
        .collect();
    assert!(
        client_isns.len() >= 4 && server_isns.len() >= 2,
        "SYNs seen: client {client_isns:?}, at rs1 {server_isns:?}"
    );
    assert!(
        server_isns.iter().all(|i| !client_isns.contains(i)),
        "a client ISN reached rs1: client {client_isns:?}, rs1 {server_isns:?}"
    );
    let mss: Vec<(String, Option<u16>)> = syns
        .iter()
        .filter(|(from, _, _)| [VIP, VIP6].contains(&from.to_string().as_str()))
        .map(|(f, _, m)| (f.to_string(), *m))
        .collect();
    assert!(!mss.is_empty(), "no SYN-ACK at the client");
    for (from, m) in &mss {
        let want = if from == VIP { 1460 - 8 } else { 1440 - 20 };
        assert_eq!(*m, Some(want), "SYN-ACK from {from}: {mss:?}");
    }

    // The real server never saw the client itself.
    for f in frames() {
        for src in [CLIENT, CLIENT6] {
            assert!(
                options_from(&f, src.parse().unwrap()).is_none(),
                "client reached rs1"
            );
        }
    }
    drop(procs);
}

/// `name=value` summed over the workers' `counters` events of the
/// shutdown report.
fn report_total(report: &str, name: &str) -> u64 {
    report
        .lines()
        .filter(|l| l.starts_with("uvsd: counters "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(|v| v.parse::<u64>().unwrap())
        })
        .sum()
}

#[test]
fn two_workers_carry_fullnat_connections_their_sequence_numbers_and_errors() {
    common::require_root();
    let _g = lock();
    let mut lab = Lab::with_workers("fn2", "fullnat", 2, 1, 2);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-A -u {VIP}:54 -s rr"));
    for rs in ["198.18.1.11", "198.18.1.12"] {
        lab.ok(&format!("-a -t {VIP}:80 -r {rs}:80 -b"));
        lab.ok(&format!("-a -u {VIP}:54 -r {rs}:54 -b"));
    }
    lab.ok(&format!("-P -t {VIP}:80 -z {LIP}"));
    lab.ok(&format!("-P -u {VIP}:54 -z {LIP}"));
    // Connections opened on either worker (the kernel spreads the tap's
    // packets over both queues): every one answered.
    for _ in 0..12 {
        who(&lab, VIP).expect("GET /who through two workers failed");
    }
    let blob = std::fs::read(format!("/tmp/{}-www/blob", lab.p)).unwrap();
    let got = lab.scratch.path("blob");
    lab.ns(
        "br",
        &[
            "curl",
            "-s",
            "-f",
            "-m",
            "60",
            "-o",
            got.to_str().unwrap(),
            &format!("http://{VIP}/blob"),
        ],
    )
    .expect("download through two workers failed");
    assert!(std::fs::read(&got).unwrap() == blob, "the download differs");
    // A real server's port unreachable reaches the client.
    let probe = udp_probe(VIP, 54);
    let mut last = String::new();
    assert!(
        wait_for(20, || {
            last = lab.ns("br", &["python3", "-c", &probe]).unwrap_or_default();
            last.trim() == "refused"
        }),
        "UDP to {VIP}:54 with nothing behind it: {last}"
    );
    let (status, report) = lab.stop_daemon();
    assert!(status.is_some_and(|s| s.success()), "{report}");
    assert_eq!(
        report.matches("uvsd: counters ").count(),
        2,
        "one counters event per worker: {report}"
    );
    assert!(
        report_total(&report, "handed_in") >= report_total(&report, "handed_over"),
        "hand-overs lost: {report}"
    );
    assert_eq!(report_total(&report, "drop_handover_full"), 0, "{report}");
}
