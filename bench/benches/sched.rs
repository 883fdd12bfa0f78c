//! Nanoseconds per `Scheduler::schedule` call, for each of the fourteen
//! schedulers, on a service with 10 destinations.
//!
//! Every call sees a different client address and destination address (a
//! counter), so hash schedulers and the lblc/lblcr caches do real lookups;
//! connection counters are spread so least-connection comparisons are not
//! all ties. Run briefly: `cargo bench -p uvs-bench --bench sched`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::sched::{self, SchedInput, SplitMix64};
use dataplane::snapshot::Dest;
use uvs_model::model::{DestConfig, DestShared, ForwardMethod, SchedFlags};

fn dests() -> Vec<Dest> {
    (0..10u32)
        .map(|i| {
            let cfg = DestConfig {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10 + i as u8)),
                port: 80,
                method: ForwardMethod::Route,
                weight: 1 + (i as i32 % 4),
                u_threshold: 0,
                l_threshold: 0,
            };
            let shared = Arc::new(DestShared::new(&cfg));
            shared.activeconns.store(100 + 7 * i, Ordering::Relaxed);
            shared.inactconns.store(50 + 3 * i, Ordering::Relaxed);
            Dest {
                config: cfg,
                shared,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let d = dests();
    let mut group = c.benchmark_group("schedule_10_dests");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for name in sched::NAMES {
        let mut s = sched::new(name, SchedFlags(SchedFlags::SCHED1)).expect("known name");
        s.update(&d);
        let mut rng = SplitMix64::new(1);
        let mut n: u32 = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let mut input = SchedInput {
                    // Clients and cache targets inside 198.18.0.0/15.
                    src: IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (n & 0xffff))),
                    src_port: n as u16,
                    dst: IpAddr::V4(Ipv4Addr::from(0xc613_0000 | (n & 0x3ff))),
                    protocol: 6,
                    now: u64::from(n),
                    rng: &mut rng,
                };
                black_box(s.schedule(black_box(&d), &mut input))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
