//! UVS control plane: the language operators speak to the director.
//!
//! * [`command`]: typed ipvsadm commands.
//! * [`grammar`]: ipvsadm 1.31's command line -> [`command::Command`], with
//!   ipvsadm's error messages and exit codes.
//! * [`format`]: configuration, counters and connections -> ipvsadm's exact
//!   output bytes (and JSON).
//!
//! * [`proto`], [`server`], [`client`]: the control socket (framing documented
//!   in `proto`), served by uvsd's control thread and spoken by uvsadm.
//!
//! * [`reload`]: the rules file as the desired service table (SIGHUP).
//!
//! No DPDK here: the crate uses only the engine's pure configuration model.

pub mod client;
pub mod command;
pub mod director;
pub mod format;
#[cfg(test)]
mod fullnat_tests;
pub mod fuzz;
pub mod grammar;
pub mod ipset;
pub mod ipset_client;
pub mod iptables;
pub mod proto;
pub mod reload;
pub mod server;
