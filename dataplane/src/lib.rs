//! UVS engine: everything a director does to a packet, and the DPDK worker
//! that drives it.
//!
//! The pure modules (`buf`, `wire`, `snapshot`, `config`, `sched`,
//! `conn`, `xmit`, `net`) know nothing of DPDK: they work on byte buffers
//! through [`buf::PacketBuf`], take time from an injected clock, and are
//! tested without EAL. The `dpdk` module (feature `dpdk`: EAL, mempools,
//! mbufs, ports, rings, lcores) is the only code of this crate that is not
//! safe Rust, each block with its SAFETY comment. The configuration model
//! (services, operations, tunables, statistics) is the `uvs-model` crate.

pub mod buf;
pub mod config;
pub mod conn;
pub mod exception;
pub mod frag;
pub mod lb;
pub mod net;
pub mod ports;
pub mod rss;
pub mod rules;
pub mod sched;
pub mod sets;
pub mod snapshot;
pub mod snat;
pub mod sync;
pub mod synproxy;
pub mod wire;
pub mod xmit;

// The configuration model lives in `uvs-model` (shared with the control
// plane); the engine's own modules keep reaching it by these paths.
pub use uvs_model::{estimator, stats, tunables};

/// The configuration model and the engine's snapshot of it under one path:
/// `uvs_model::model` (what is configured) and [`snapshot`] (what workers
/// read).
pub mod model {
    pub use crate::snapshot::*;
    pub use uvs_model::model::*;
}

#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod worker;
