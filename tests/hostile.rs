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
//! Run with one worker, and with two: then the port has two queues (two
//! FIFO pairs, one written with seed 1, the other with seed 2) and a frame
//! whose client endpoint the other worker owns crosses the pair's
//! hand-over ring, so both directions of hand-over run all the time.
//!
//! Checked as an operator would: uvsd keeps running and answers
//! `uvsadm -L -n`; `uvsadm --counters --json` accounts for every frame,
//! per worker and in total (the ledger of `dataplane::net::ledger`: frames
//! taken in are the sum of routed, answered, handed over, to the kernel,
//! consumed, and every drop by reason); every frame the generator wrote
//! was taken in; with two workers, what one worker took from its hand-over
//! ring is what the other put there (`handed_in` = `handed_over` -
//! `drop_handover_full` + `neighbor_shared` + `fragments_handed_over`);
//! what the workers set out to send was sent, refused or parked
//! (`Sends`); the frames that came out are as many as the workers' `tx`.
//!
//! No timing assumption: the test waits (up to minutes) for every frame
//! written to be taken in and for the counters to stand still.
//!
//! Needs root (DPDK); one uvsd at a time (`flock /tmp/uvs-e2e.lock`).

mod common;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{leftovers, Daemon, Scratch};
use dataplane::net::ledger::{Ledger, Sends};
use uvs_pktgen::hostile;

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

/// One replay at a time: each runs busy-polling workers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

/// `v` without the workers' clock: `poll_cycles` grows with every turn,
/// busy or not, so it is the one count two reads at rest never agree on.
fn at_rest(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(t) = v.get_mut("total").and_then(|t| t.as_object_mut()) {
        t.remove("poll_cycles");
    }
    for w in v
        .get_mut("per_worker")
        .and_then(|w| w.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(o) = w.as_object_mut() {
            o.remove("poll_cycles");
        }
    }
    v
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
    replay(1, 40);
}

#[test]
fn two_workers_survive_a_hostile_capture_and_account_for_every_frame_and_hand_over() {
    replay(2, 10);
}

/// Replays the capture `loops` times into each of `workers` queues (seed
/// 1 into queue 0, seed 2 into queue 1) and checks everything above.
fn replay(workers: usize, loops: u64) {
    common::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Scratch::new(&format!("hostile{workers}"));
    let prefix = common::unique(&format!("hst{workers}"));
    let mut device = format!("net_pcap_{prefix}");
    let mut fifos = Vec::new();
    for q in 0..workers {
        let (rx, tx) = (
            dir.path(&format!("rx{q}.fifo")),
            dir.path(&format!("tx{q}.fifo")),
        );
        mkfifo(&rx);
        mkfifo(&tx);
        device += &format!(",rx_pcap={},tx_pcap={}", rx.display(), tx.display());
        fifos.push((rx, tx));
    }
    let sock = dir.path("uvsadm.sock");
    let rules = dir.path("hostile.rules");
    std::fs::write(&rules, hostile::rules()).unwrap();
    // One worker: lcore 1 on CPU 1. Two: lcores 1 and 2, one per CPU (the
    // main lcore only serves the control socket).
    let (lcores, wlcores) = if workers == 1 {
        ("0@0,1@1", "[1]")
    } else {
        ("0@0,1@0,2@1", "[1, 2]")
    };
    let cfg = dir.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"--lcores\", \"{lcores}\", \"--main-lcore\", \"0\", \"--no-pci\", \"--no-huge\", \"-m\", \"512\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = {wlcores}\nconn_capacity = 65536\n\
             [control]\nsocket = \"{}\"\nrules = \"{}\"\n\n{}",
            sock.display(),
            rules.display(),
            hostile::uvsd_port(&device).replacen(
                "name = \"hostile\"\n",
                &format!("name = \"hostile\"\nqueues = {workers}\n"),
                1
            )
        ),
    )
    .unwrap();

    // The FIFOs' other ends: DPDK opens them all while uvsd starts, and
    // each open waits for its peer.
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (q, (rx, tx)) in fifos.iter().enumerate() {
        let cap = hostile::capture(1 + q as u64);
        let frames = cap.frames.len() as u64;
        let rx = rx.clone();
        writers.push((
            frames,
            std::thread::spawn(move || {
                let mut w = BufWriter::with_capacity(1 << 20, File::create(&rx).unwrap());
                hostile::write_pcap(&mut w, &cap.frames, loops).unwrap()
            }),
        ));
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, File::open(&tx).unwrap());
            hostile::count_sent(&mut r).unwrap_or_default()
        }));
    }
    let started = Instant::now();
    let mut uvsd = Daemon::start(&cfg);

    // Every frame written is taken in (the generators' count against the
    // workers' rx less what they handed each other).
    let mut written = 0;
    for (frames, w) in writers {
        let wrote = w.join().expect("the generator wrote the capture");
        assert_eq!(wrote, frames * loops);
        written += wrote;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
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
    // At rest: two reads in a row agree (nothing in rings or queues), the
    // workers' clock aside.
    let mut settled = false;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(300));
        let again = counters(&sock);
        if at_rest(&again) == at_rest(&v) {
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
    assert_eq!(v["workers"].as_u64(), Some(workers as u64), "{v}");
    let per_worker = |w: usize| &v["per_worker"][w];
    for w in 0..workers {
        let l = ledger(per_worker(w));
        assert!(l.unclassified.is_empty(), "{:?}", l.unclassified);
        assert_eq!(l.unaccounted(), 0, "worker {w}: {l:?}");
        // And what it set out to send was sent, refused or parked (exact
        // while no forwarded datagram left in fragments: seed 2 has a few
        // that do, and then `Sends` declines, see its doc).
        match Sends::of(named(per_worker(w))) {
            Some(s) => assert_eq!(s.attempted, s.outcomes, "worker {w}: {s:?}"),
            None => assert!(
                workers > 1
                    && n(per_worker(w), "fragments_sent") > 0
                    && n(per_worker(w), "drop_neighbor_table_full") == 0,
                "worker {w}: the sending side cannot be checked: {}",
                per_worker(w)
            ),
        }
    }
    if workers == 2 {
        // What each worker took from its ring is what the other put there:
        // frames handed over and enqueued, copies of neighbour answers, and
        // the fragments of datagrams reassembled off their connection's
        // owner.
        for w in 0..2 {
            let (me, other) = (per_worker(w), per_worker(1 - w));
            assert_eq!(
                n(me, "handed_in"),
                n(other, "handed_over") - n(other, "drop_handover_full")
                    + n(other, "neighbor_shared")
                    + n(other, "fragments_handed_over"),
                "worker {w} took from the ring what worker {} put there: {v}",
                1 - w
            );
            assert!(
                n(other, "handed_over") > 0,
                "worker {} handed nothing over",
                1 - w
            );
        }
    }
    let l = ledger(total);
    eprintln!(
        "hostile, {workers} worker(s): {written} frames ({loops} loops) in {:.1} s; fates {:?}; datagram drops counted twice {:?}",
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
    let mut out = Vec::new();
    for r in readers {
        out.push(r.join().expect("the tx reader"));
    }
    eprintln!("hostile: out {out:?}");
    // Against `tx` at shutdown: a worker may still send after the counters
    // settled (neighbour probes, parked frames), so the last report counts.
    let frames: u64 = out.iter().map(|o| o.frames).sum();
    let tx_at_exit: u64 = (0..workers)
        .map(|w| common::shutdown_counter(&log, w, "tx"))
        .sum();
    assert!(tx_at_exit >= n(total, "tx"), "{log}");
    assert_eq!(frames, tx_at_exit, "{out:?}: {log}");
    assert!(
        out.iter().map(|o| o.to_servers).sum::<u64>() > 0
            && out.iter().map(|o| o.to_gateway).sum::<u64>() > 0,
        "{out:?}"
    );
    assert_eq!(n(total, "drop_tx_full"), 0);
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
