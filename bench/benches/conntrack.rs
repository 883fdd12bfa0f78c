//! Connection-table micro-benchmark: nanoseconds per established-flow packet
//! (inbound lookup + `on_packet`: state transition, accounting check and
//! timer re-arm) at 1 k, 1 M and 10 M connections, and bytes per connection.
//!
//! Why random order: a real worker sees packets of many flows interleaved,
//! so at 1 M+ entries every packet costs cache misses on the bucket and the
//! entry. Lookups walk a fixed pseudo-random permutation of the flows.
//!
//! Bytes per connection are reported two ways: the table's own count
//! (`ConnTable::memory_bytes() / capacity`: slab + both u32 bucket arrays +
//! wheel heads) and the process RSS growth while building the table
//! (includes allocator overhead; the shared `DestShared` is negligible).
//!
//! Run: `cargo bench -p uvs-bench --bench conntrack`
//! (set `CONNTRACK_SIZES=1000,1000000` to skip the 10 M table).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::conn::proto_tcp::flags::{ACK, SYN};
use dataplane::conn::{ConnAddr, ConnKey, ConnTable, Dir, NewConn};
use uvs_model::model::{DestConfig, DestShared, ForwardMethod};

const TCP: u8 = 6;
const BURST: usize = 32;
const VIP: ConnAddr = ConnAddr::from_v4([198, 18, 0, 1]);
/// Client addresses span 198.18.0.0/15 (131072 addresses).
const CLIENTS: u32 = 1 << 17;

fn client(i: u32) -> (ConnAddr, u16) {
    let a = (198u32 << 24 | 18 << 16) + (i % CLIENTS);
    (
        ConnAddr::from_v4(a.to_be_bytes()),
        1024 + (i / CLIENTS) as u16,
    )
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn build(n: u32, dests: &[Arc<DestShared>]) -> ConnTable {
    let mut t = ConnTable::new(n, None, 0);
    for i in 0..n {
        let (c, p) = client(i);
        let d = &dests[i as usize % dests.len()];
        let nc = NewConn {
            proto: TCP,
            client: c,
            cport: p,
            vaddr: VIP,
            vport: 80,
            daddr: d.addr.into(),
            dport: 80,
            method: ForwardMethod::Masq,
            dest: d,
            svc: None,
            control: None,
            local: None,
        };
        let id = t.create(&nc, SYN, 0).expect("sized for n");
        t.on_packet(id, Dir::In, ACK, 0);
    }
    t
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<u32> = std::env::var("CONNTRACK_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 1_000_000, 10_000_000]);
    let dests: Vec<Arc<DestShared>> = (0..8u8)
        .map(|k| {
            Arc::new(DestShared::new(&DestConfig {
                addr: std::net::Ipv4Addr::new(198, 19, 1, 10 + k).into(),
                port: 80,
                method: ForwardMethod::Masq,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            }))
        })
        .collect();
    let mut g = c.benchmark_group("conntrack");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in sizes {
        let rss0 = rss_bytes();
        let t0 = Instant::now();
        let mut t = build(n, &dests);
        let built = t0.elapsed();
        let rss = rss_bytes().saturating_sub(rss0);
        println!(
            "conntrack n={n}: mean probe length {:.3}",
            t.mean_probe_len()
        );
        println!(
            "conntrack n={n}: built in {:.2?} ({:.0} ns/create); table {:.1} B/conn, RSS growth {:.1} B/conn, entry {} B",
            built,
            built.as_nanos() as f64 / f64::from(n),
            t.memory_bytes() as f64 / f64::from(n),
            rss as f64 / f64::from(n),
            std::mem::size_of::<dataplane::conn::Conn>(),
        );
        // A full-period LCG walk over 0..2^k visits flows in scattered order.
        let span = (n as u64).next_power_of_two();
        let mut x: u64 = 1;
        let mut now: u64 = 1;
        g.bench_function(format!("lookup_in+on_packet/{n}"), |b| {
            b.iter(|| {
                let i = loop {
                    x = (x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407))
                        & (span - 1);
                    if x < u64::from(n) {
                        break x as u32;
                    }
                };
                let (c, p) = client(i);
                let k = ConnKey::new(TCP, c, p, VIP, 80);
                let id = t.lookup_in(&k).expect("established flow");
                now += 1;
                black_box(t.on_packet(id, Dir::In, ACK, now))
            })
        });
        // The same work a burst at a time, with the batched lookup.
        let mut z: u64 = 1;
        let mut keys = [ConnKey::new(TCP, VIP, 0, VIP, 80); BURST];
        let mut ids = [None; BURST];
        g.throughput(criterion::Throughput::Elements(BURST as u64));
        g.bench_function(format!("burst32_lookup_in_batch+on_packet/{n}"), |b| {
            b.iter(|| {
                for k in keys.iter_mut() {
                    let i = loop {
                        z = (z
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407))
                            & (span - 1);
                        if z < u64::from(n) {
                            break z as u32;
                        }
                    };
                    let (c, p) = client(i);
                    *k = ConnKey::new(TCP, c, p, VIP, 80);
                }
                t.lookup_in_batch(&keys, &mut ids);
                for id in ids.iter().flatten() {
                    now += 1;
                    black_box(t.on_packet(*id, Dir::In, ACK, now));
                }
            })
        });
        g.throughput(criterion::Throughput::Elements(1));
        // Calibration: the machine's random-access memory latency, as a
        // pointer chase through one random cycle (Sattolo) over an array as
        // large as the slab (capped at 128 MiB): every read's address comes
        // from the previous read, as bucket -> entry does.
        let words = (n as usize * std::mem::size_of::<dataplane::conn::Conn>() / 8).min(1 << 24);
        let mut arr: Vec<u32> = (0..words as u32).collect();
        let mut r: u64 = 0x2545_f491_4f6c_dd1d;
        for k in (1..words).rev() {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            arr.swap(k, (r % k as u64) as usize);
        }
        let mut w: u32 = 0;
        g.bench_function(format!("baseline_pointer_chase/{n}"), |b| {
            b.iter(|| {
                w = arr[w as usize];
                black_box(w)
            })
        });
        drop(arr);
        // Expiry: jump the clock past every timeout and time the wheel
        // freeing all entries in batches of 1024 (not a criterion loop: it
        // can only run once per table).
        let t0 = Instant::now();
        let end = now + 3_600_000;
        let mut examined = 0usize;
        loop {
            let k = t.expire(end, 1024);
            examined += k;
            if k < 1024 {
                break;
            }
        }
        let el = t0.elapsed();
        println!(
            "conntrack n={n}: expired all in {el:.2?}: {:.0} ns per entry examined ({examined} examined, {} left)",
            el.as_nanos() as f64 / examined.max(1) as f64,
            t.len()
        );
        drop(t);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
