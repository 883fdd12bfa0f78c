//! The UVS traffic generator and sink (pktgen-style), as a library of pure
//! parts tested without EAL: the flow space, the packet template with its
//! per-packet patch, the sink's forwarding check, and the peer telemetry
//! client. `main.rs` runs them on one lcore over a DPDK port.

pub mod check;
pub mod flood;
pub mod flows;
pub mod hostile;
pub mod sched;
pub mod schedule;
pub mod service;
pub mod telemetry;
pub mod template;
