//! Microseconds to rebuild a Maglev (mh) table, by table size and number of
//! real servers: what a director pays on every real-server change (the
//! control plane publishes, each worker rebuilds between bursts), so what a
//! large cluster with big tables costs (docs/design/scale-out.md).
//! Run briefly: `cargo bench -p uvs-bench --bench mh_build`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dataplane::sched::{self, MhTableIndex, SchedConfig};
use dataplane::snapshot::Dest;
use uvs_model::model::{DestConfig, DestShared, ForwardMethod, SchedFlags};

fn dests(n: u32) -> Vec<Dest> {
    (0..n)
        .map(|i| {
            let cfg = DestConfig {
                addr: IpAddr::V4(Ipv4Addr::from(0xc612_0000 | i)),
                port: 80,
                method: ForwardMethod::Route,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            };
            Dest {
                shared: Arc::new(DestShared::new(&cfg)),
                config: cfg,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mh_rebuild");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    // Index 12: 4093 slots (the default); 16: 65521; 17: 131071.
    for index in [12u8, 16, 17] {
        let cfg = SchedConfig {
            mh_tab_index: MhTableIndex::new(index).expect("8..=17"),
            ..SchedConfig::default()
        };
        let size = cfg.mh_tab_index.size();
        for n in [3u32, 16, 100, 1000] {
            let d = dests(n);
            let mut s = sched::new_with("mh", SchedFlags::default(), &cfg).expect("mh");
            group.bench_with_input(BenchmarkId::new(format!("M{size}"), n), &d, |b, d| {
                b.iter(|| s.update(black_box(d)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
