//! Nanoseconds per set lookup on the packet path (`SetTable::lookup`), for
//! a 1,000,000-entry `hash:net` blocklist with four prefix lengths (/32,
//! /24, /20 and /28 nomatch carve-outs) and a 10,000-entry `hash:ip`.
//!
//! Addresses cycle through a table of 4,096 precomputed probes: a third
//! hit at /32, a third at /24 or /20, a third miss (a miss probes every
//! length present, the worst case). Run briefly:
//! `cargo bench -p uvs-bench --bench sets`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::sets::{AddOpts, Dirs, Elem, Entry, Header, Packet, SetKind, SetOp, SetStore};

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn fill(st: &mut SetStore, name: &str, kind: SetKind, elems: Vec<(Elem, bool)>) {
    let mut h = Header::new(kind);
    h.maxelem = 2_000_000;
    st.apply(
        &SetOp::Create {
            name: name.into(),
            header: h,
        },
        false,
        1,
    )
    .unwrap();
    for (e, nomatch) in elems {
        let op = SetOp::Add {
            name: name.into(),
            entry: Entry::Elems(vec![e]),
            opts: AddOpts {
                nomatch,
                ..AddOpts::default()
            },
        };
        st.apply(&op, false, 1).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let mut st = SetStore::new();
    let n = 1_000_000u32;
    let mut elems = Vec::with_capacity(n as usize + 1000);
    for i in 0..n {
        let j = i / 3;
        let e = match i % 3 {
            0 => Elem::new(v4(0x0a00_0000 + j), 32),
            1 => Elem::new(v4(0x1400_0000 + j * 256), 24),
            _ => Elem::new(v4(0x4000_0000 + j * 4096), 20),
        };
        elems.push((e, false));
        if i % 1000 == 999 {
            elems.push((Elem::new(v4(0x4000_0000 + j * 4096 + 16), 28), true));
        }
    }
    fill(&mut st, "bl", SetKind::HashNet, elems);
    let hosts = (0..10_000u32)
        .map(|i| (Elem::new(v4(0xc612_0000 + i), 32), false))
        .collect();
    fill(&mut st, "hip", SetKind::HashIp, hosts);
    let table = st.table();
    let bl = table.id("bl").unwrap();
    let hip = table.id("hip").unwrap();
    let src = Dirs::parse("src").unwrap();
    let probes: Vec<Packet> = (0..4096u32)
        .map(|i| {
            let j = (i * 2654435761u32) % (n / 3);
            let a = match i % 3 {
                0 => 0x0a00_0000 + j,
                1 => 0x1400_0000 + j * 256 + 7,
                _ => 0xc000_0000 + j,
            };
            Packet {
                src: v4(a),
                dst: v4(0xc612_0001),
                proto: 6,
                sport: 40000,
                dport: 80,
                bytes: 64,
            }
        })
        .collect();
    let mut g = c.benchmark_group("sets");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let mut k = 0usize;
    g.bench_function("hash_net_1m_lookup", |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            black_box(table.lookup(bl, src, &probes[k]))
        })
    });
    g.bench_function("hash_ip_10k_lookup", |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            black_box(table.lookup(hip, src, &probes[k]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
