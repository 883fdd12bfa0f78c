//! Hostile traffic through a running uvsd: the seeded capture of
//! `uvs_pktgen::hostile` (bad lengths, IPv4 options and IPv6 extension
//! headers of every kind, TCP options of every kind, all 512 TCP flag
//! combinations, ICMP errors quoting garbage and other flows, overlapping
//! and endless fragments, L2 oddities, byte-flipped copies, mixed with
//! sound traffic to NAT, DR and TUN services over IPv4 and IPv6) is
//! replayed many times over through a `net_pcap` port, whose `rx_pcap` is
//! a FIFO this test writes: the port takes frames as fast as the worker
//! polls, so the replay runs at the director's full rate and no file of
//! that size is written. What uvsd sends goes to a second FIFO, counted
//! here frame by frame.
//!
//! Checked as an operator would: uvsd keeps running and answers
//! `uvsadm -L -n`; `uvsadm --counters --json` accounts for every frame,
//! per worker and in total (the ledger of `dataplane::net::ledger`: frames
//! taken in are the sum of routed, answered, handed over, to the kernel,
//! consumed, and every drop by reason); every frame the generator wrote
//! was taken in;
//! what the workers set out to send was sent, refused or parked
//! (`Sends`); the frames that came out are as many as the workers' `tx`.
//!
//! Needs root (DPDK); one uvsd at a time (`flock /tmp/uvs-e2e.lock`).

mod common;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{leftovers, Daemon, Scratch};
use dataplane::net::ledger::{Ledger, Sends};
use uvs_pktgen::hostile;

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

/// Times the capture is replayed.
const LOOPS: u64 = 40;

fn uvsadm(sock: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(UVSADM)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("uvsadm runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn counters(sock: &Path) -> serde_json::Value {
    let (ok, text) = uvsadm(sock, &["--counters", "--json"]);
    assert!(ok, "uvsadm --counters --json: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn named(v: &serde_json::Value) -> Vec<(&str, u64)> {
    let m = v.as_object().expect("counters are an object");
    m.iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap_or(0)))
        .collect()
}

fn ledger(v: &serde_json::Value) -> Ledger {
    Ledger::of(named(v))
}

fn n(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

#[test]
fn a_hostile_capture_at_full_rate_is_survived_and_every_frame_accounted_for() {
    common::require_root();
    let dir = Scratch::new("hostile");
    let prefix = common::unique("hst");
    let (rx, tx) = (dir.path("rx.fifo"), dir.path("tx.fifo"));
    mkfifo(&rx);
    mkfifo(&tx);
    let sock = dir.path("uvsadm.sock");
    let rules = dir.path("hostile.rules");
    std::fs::write(&rules, hostile::rules()).unwrap();
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"512\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\nconn_capacity = 65536\n\
             [control]\nsocket = \"{}\"\nrules = \"{}\"\n\n{}",
            sock.display(),
            rules.display(),
            hostile::uvsd_port(&format!(
                "net_pcap_{prefix},rx_pcap={},tx_pcap={}",
                rx.display(),
                tx.display()
            ))
        ),
    )
    .unwrap();

    // The FIFOs' other ends: DPDK opens both while uvsd starts, and each
    // open waits for its peer.
    let cap = hostile::capture(1);
    let per_loop = cap.frames.len() as u64;
    let writer = {
        let rx = rx.clone();
        std::thread::spawn(move || {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&rx).unwrap());
            hostile::write_pcap(&mut w, &cap.frames, LOOPS).unwrap()
        })
    };
    let reader = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, File::open(&tx).unwrap());
            hostile::count_sent(&mut r).unwrap_or_default()
        })
    };
    let started = Instant::now();
    let mut uvsd = Daemon::start(&cfg);

    // Every frame written is taken in (the generator's count against the
    // workers' rx less what they handed each other).
    let written = writer.join().expect("the generator wrote the capture");
    assert_eq!(written, per_loop * LOOPS);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut v = counters(&sock);
    loop {
        let t = &v["total"];
        if n(t, "rx") - n(t, "handed_in") >= written || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        v = counters(&sock);
    }
    let replay = started.elapsed();
    // At rest: two reads in a row agree (nothing in rings or queues).
    let mut settled = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(300));
        let again = counters(&sock);
        if again == v {
            settled = true;
            break;
        }
        v = again;
    }
    assert!(settled, "the counters never settled: {v}");
    let total = &v["total"];
    assert_eq!(
        n(total, "rx") - n(total, "handed_in"),
        written,
        "every frame written was taken in: {total}"
    );

    // uvsd runs and answers.
    let (ok, list) = uvsadm(&sock, &["-L", "-n"]);
    assert!(ok, "{list}");
    assert!(list.contains("TCP  198.18.0.100:80 rr"), "{list}");
    assert!(list.contains("UDP  [2001:db8::102]:53 rr"), "{list}");
    assert!(uvsd.child.as_mut().unwrap().try_wait().unwrap().is_none());

    // The ledger, per worker and in total.
    let workers = v["workers"].as_u64().unwrap();
    for w in 0..workers {
        let l = ledger(&v["per_worker"][w as usize]);
        assert!(l.unclassified.is_empty(), "{:?}", l.unclassified);
        assert_eq!(l.unaccounted(), 0, "worker {w}: {l:?}");
        // And what it set out to send was sent, refused or parked.
        let s = Sends::of(named(&v["per_worker"][w as usize]));
        let s = s.expect("no fragmented datagram, no full neighbour table");
        assert_eq!(s.attempted, s.outcomes, "worker {w}: {s:?}");
    }
    let l = ledger(total);
    eprintln!(
        "hostile: {written} frames ({per_loop} x {LOOPS}) in {:.1} s; fates {:?}; datagram drops counted twice {:?}",
        replay.as_secs_f64(),
        l.fates,
        l.counted
    );
    assert_eq!(l.unaccounted(), 0, "{l:?}");
    eprintln!("hostile: totals {total}");
    // Sound traffic got through, hostile traffic was refused.
    assert!(n(total, "from_stage") > 0 && n(total, "connections_created") > 0);
    assert!(n(total, "drop_malformed") > 0 && n(total, "lb_drop_no_connection") > 0);
    assert!(n(total, "frag_overlap") > 0 && n(total, "fragments_received") > 0);

    // What came out: as many frames as the workers sent.
    let (status, log) = uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {log}");
    let out = reader.join().expect("the tx reader");
    eprintln!("hostile: out {out:?}");
    assert_eq!(out.frames, n(total, "tx"), "{out:?}");
    assert!(out.to_servers > 0 && out.to_gateway > 0, "{out:?}");
    assert_eq!(n(total, "drop_tx_full"), 0);
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
