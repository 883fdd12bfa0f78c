//! UVS benchmark fixtures shared by the criterion benches and the callgrind
//! example: the frames, the service and the routing of the pipeline
//! measurements (bench/ENGINE.md).

use std::net::{IpAddr, Ipv4Addr};

use uvs_model::ops::ConfigOp;

use dataplane::config::ConfigStore;
use dataplane::lb::Egress;
use etherparse::PacketBuilder;
use uvs_model::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};

/// The virtual service address of the measurements.
pub const VIP: [u8; 4] = [198, 18, 0, 100];

/// One route for everything: the director's server-side address, MTU 1500.
#[derive(Debug, Clone, Copy)]
pub struct Routes;

impl Egress for Routes {
    fn route(&self, _dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)), 1500))
    }
    fn mtu(&self, _dst: IpAddr) -> u16 {
        1500
    }
}

/// A 54-byte TCP frame (64 B on the wire) from client `n` (an address in
/// 198.18.128.0/17 and a port, both from `n`) to VIP:80: a SYN or an ACK.
pub fn tcp(n: u32, syn: bool) -> Vec<u8> {
    let a = 0xC612_8000u32 | (n >> 14 & 0x7fff);
    let port = 1024 + (n & 0x3fff) as u16;
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(a.to_be_bytes(), VIP, 64)
        .tcp(port, 80, 1, 1024);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &[])
        .expect("etherparse writes into a Vec");
    out
}

/// A configuration with one TCP service on VIP:80 under `sched` and ten NAT
/// real servers (weights 1, 2, 3, 1, ...).
pub fn store(sched: &str) -> ConfigStore {
    let mut st = ConfigStore::new();
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: IpAddr::V4(Ipv4Addr::from(VIP)),
        port: 80,
    };
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = sched.into();
    st.apply(&ConfigOp::AddService(cfg))
        .expect("a valid service");
    for i in 0..10u8 {
        st.apply(&ConfigOp::AddDest(
            key,
            DestConfig {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11 + i)),
                port: 8080,
                method: ForwardMethod::Masq,
                weight: 1 + i32::from(i % 3),
                u_threshold: 0,
                l_threshold: 0,
            },
        ))
        .expect("a valid destination");
    }
    st
}
