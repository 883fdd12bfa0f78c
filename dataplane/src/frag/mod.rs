//! IP fragments: reassembly of datagrams sent to the director in pieces,
//! and fragmentation of what leaves it to the egress MTU.
//!
//! Why the director reassembles: IPVS schedules and rewrites by ports, and
//! only the first fragment carries them. Linux reassembles every fragmented
//! datagram for a local address (the VIP is one) in `ip_defrag` /
//! `ipv6_frag_rcv` before IPVS sees it, then balances the whole datagram
//! and fragments it again on the way out (`ip_fragment`) where DF allows.
//! UVS does the same, within fixed per-worker memory: [`reassembly`] holds
//! a preallocated set of slots, one datagram each; nothing is allocated,
//! locked or logged per fragment.
//!
//! Both halves are pure functions over byte slices, tested (and fuzzed)
//! without EAL.

pub mod fragment;
pub mod owner;
pub mod reassembly;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_workers;

pub use fragment::{fragment_plan, write_fragment_v4, write_fragment_v6, FragPiece};
pub use owner::{fragment_owner, ident_for};
pub use reassembly::{
    fragment_ident, FragCounters, FragDrop, Insert, Reassembler, ReassemblyLimits,
};
