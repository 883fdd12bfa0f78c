//! Per-packet cost of the classifier and the forwarding rewrites on a
//! minimum-size frame: what a worker spends on every packet besides the
//! connection lookup.
//!
//! Run: `cargo bench -p uvs-bench --bench rewrite`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dataplane::buf::{PacketBuf, TestBuf};
use dataplane::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use dataplane::wire::{checksum, parse_packet};
use dataplane::xmit::nat::nat_inbound;
use dataplane::xmit::tunnel::{encapsulate, TunnelParams};
use uvs_model::model::{TunnelConfig, TunnelCsum, TunnelType};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 5);

/// A 64-byte frame: Ethernet, IPv4, TCP (ACK) and 10 bytes of data, with
/// valid checksums.
fn tcp_frame_64() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    Ipv4Repr {
        src: CLIENT,
        dst: VIP,
        protocol: 6,
        payload_len: 30,
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut f[14..])
    .expect("room for the header");
    let tcp = &mut f[34..];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x10;
    tcp[14..16].copy_from_slice(&4096u16.to_be_bytes());
    tcp[20..30].copy_from_slice(b"0123456789");
    let ph = checksum::pseudo_header_v4(CLIENT, VIP, 6, 30);
    let c = checksum::finish(ph, &f[34..64]);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    assert!(Ipv4Packet::new_checked(&f[14..])
        .expect("valid")
        .verify_checksum());
    f
}

fn bench_rewrite(c: &mut Criterion) {
    let frame = tcp_frame_64();
    let buf = TestBuf::new(&frame);

    c.bench_function("parse_packet/tcp4_64B", |b| {
        b.iter(|| parse_packet(black_box(&frame)))
    });

    c.bench_function("parse+nat_inbound/tcp4_64B", |b| {
        b.iter_batched_ref(
            || buf.clone(),
            |p| {
                let m = parse_packet(p.data()).expect("valid frame");
                nat_inbound(p, &m, IpAddr::V4(RIP), 8080).expect("rewritable")
            },
            BatchSize::SmallInput,
        )
    });

    for (name, kind, csum) in [
        ("ipip", TunnelType::Ipip, TunnelCsum::NoCsum),
        ("gue_csum", TunnelType::Gue, TunnelCsum::Csum),
        ("gre", TunnelType::Gre, TunnelCsum::NoCsum),
    ] {
        let params = TunnelParams {
            config: TunnelConfig {
                kind,
                port: if kind == TunnelType::Gue { 6080 } else { 0 },
                csum,
            },
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(RIP),
            ident: 7,
            gue_sport: 49152,
            mtu: 1500,
            pmtu_disc: true,
            inner_csum_partial: false,
        };
        c.bench_function(&format!("parse+encap_{name}/tcp4_64B"), |b| {
            b.iter_batched_ref(
                || buf.clone(),
                |p| {
                    let m = parse_packet(p.data()).expect("valid frame");
                    encapsulate(p, &m, &params).expect("fits")
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench_rewrite);
criterion_main!(benches);
