//! UVS engine: everything a director does to a packet, and the DPDK worker
//! that drives it.
//!
//! The pure modules (`buf`, `wire`, `model`, `stats`, `config`, `sched`,
//! `conn`, `xmit`, `net`) know nothing of DPDK: they work on byte buffers
//! through [`buf::PacketBuf`], take time from an injected clock, and are
//! tested without EAL. The `dpdk` module (feature `dpdk`: EAL, mempools,
//! mbufs, ports, rings, lcores) is the only code of this crate that is not
//! safe Rust, each block with its SAFETY comment.

pub mod buf;
pub mod config;
pub mod conn;
pub mod estimator;
pub mod exception;
pub mod frag;
pub mod lb;
pub mod model;
pub mod net;
pub mod ports;
pub mod rss;
pub mod rules;
pub mod sched;
pub mod sets;
pub mod snat;
pub mod stats;
pub mod sync;
pub mod synproxy;
pub mod tunables;
pub mod wire;
pub mod xmit;

#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod worker;
