//! The whole per-packet decision of a worker, without I/O: parse, connection
//! lookup, state machine, NAT rewrite (`dataplane::lb::Lb::process`), for
//! established flows at 1 k, 1 M and 10 M connections; and the cost of a new
//! connection (parse, service lookup, schedule, create, rewrite) per
//! scheduler.
//!
//! `PIPELINE_SIZES=1000,1000000` limits the table sizes (10 M takes a few
//! seconds to build and about 1.5 GiB). Results and interpretation:
//! bench/PIPELINE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dataplane::buf::{PacketBuf, TestBuf};
use dataplane::lb::{Action, Lb, LbSettings};
use dataplane::wire::parse_packet;
use uvs_bench::{store, tcp, Routes};

/// With `--features dpdk` and `PIPELINE_THP=1`, the connection table asks
/// for transparent huge pages as the daemon's does.
fn advice() -> Option<dataplane::conn::table::MemAdvice> {
    #[cfg(feature = "dpdk")]
    if std::env::var_os("PIPELINE_THP").is_some() {
        return Some(dataplane::dpdk::advise_huge_pages);
    }
    None
}

fn sizes() -> Vec<u32> {
    std::env::var("PIPELINE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 1_000_000, 10_000_000])
}

/// Sends `frame` through `lb` in a reused buffer (the copy of a 54-byte
/// frame stands in for the NIC's DMA).
#[inline(always)]
fn send(lb: &mut Lb, buf: &mut TestBuf, frame: &[u8], now: u64) -> Action {
    if buf.len() != frame.len() {
        // The last packet was answered with an ICMP error in place.
        *buf = TestBuf::new(frame);
    }
    buf.data_mut().copy_from_slice(frame);
    let m = parse_packet(buf.data()).unwrap();
    lb.process(buf, &m, now, &Routes)
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established_nat");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in sizes() {
        let st = store("rr");
        let mut lb = Lb::new(
            0,
            LbSettings {
                capacity: n + n / 8 + 64,
                mem_advice: advice(),
                ..LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(st.snapshot());
        let syn0 = tcp(0, true);
        let mut buf = TestBuf::new(&syn0);
        for i in 0..n {
            let f = tcp(i, true);
            assert!(matches!(send(&mut lb, &mut buf, &f, 1), Action::Forward(_)));
        }
        assert_eq!(lb.conns().len(), n as usize);
        let frames: Vec<Vec<u8>> = (0..4096u32)
            .map(|k| tcp(k.wrapping_mul(2_654_435_761) % n, false))
            .collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("single", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 4095;
                black_box(send(&mut lb, &mut buf, &frames[k], 2))
            })
        });
        // Bursts of 32 as a worker receives them: the stage sees the whole
        // burst first (Lb::warm: batched lookup when the table is large),
        // then each packet. Reported per burst; divide by 32.
        let mut bufs: Vec<TestBuf> = (0..32).map(|_| TestBuf::new(&frames[0])).collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("burst32", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 32) & 4095;
                for (j, buf) in bufs.iter_mut().enumerate() {
                    buf.data_mut().copy_from_slice(&frames[k + j]);
                }
                {
                    let views: Vec<&[u8]> = bufs.iter().map(|b| b.data()).collect();
                    lb.warm(&views);
                }
                for buf in bufs.iter_mut() {
                    let m = parse_packet(buf.data()).unwrap();
                    black_box(lb.process(buf, &m, 2, &Routes));
                }
            })
        });
        println!(
            "pipeline: {n} connections, table {} B/conn",
            lb.conns().memory_bytes() / lb.conns().capacity() as usize
        );
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_connection");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for sched in dataplane::sched::NAMES.iter().copied() {
        let st = store(sched);
        let cap = 1 << 22;
        let mut lb = Lb::new(
            0,
            LbSettings {
                capacity: cap,
                ..LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(st.snapshot());
        let syn0 = tcp(0, true);
        let mut buf = TestBuf::new(&syn0);
        let frames: Vec<Vec<u8>> = (0..65536u32).map(|k| tcp(k, true)).collect();
        let mut k = 0usize;
        let mut now = 0u64;
        g.bench_function(sched, |b| {
            b.iter(|| {
                k += 1;
                if k == frames.len() {
                    // Every flow exists now: expire them all (outside the
                    // figure's intent, but rare: once per 65536 packets).
                    k = 0;
                    now += 200_000;
                    lb.housekeeping(now, usize::MAX);
                }
                black_box(send(&mut lb, &mut buf, &frames[k], now))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, established, new_connections);
criterion_main!(benches);
