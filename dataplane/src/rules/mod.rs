//! Packet rules in iptables' vocabulary: tables, chains, rules, matches and
//! targets, and the compiled form workers run.
//!
//! Why UVS has them: operators group ports and VIPs into one fwmark service
//! with `mangle PREROUTING` MARK rules, and keep clients out with `filter
//! INPUT` rules; kube-proxy's IPVS mode is built from exactly that. The
//! director has no netfilter, so the subset of iptables a director needs
//! lives here:
//! * [`tables`]: the configuration (what `iptables -S` shows), changed by
//!   the operations iptables has (`-A`, `-I`, `-D`, `-R`, `-F`, `-N`, `-X`,
//!   `-P`, `-Z`) with the kernel's refusals, per address family; it is part
//!   of the configuration model (`uvs_model::rules`), re-exported here;
//! * [`engine`]: the compiled [`Program`] a worker runs on each packet.
//!   It comes with the configuration snapshot, so workers pick a new rule
//!   set up between bursts, as they do services;
//! * [`cache`]: a worker's verdicts per flow, so established traffic does
//!   not walk the chains again when the rules cannot tell its packets apart;
//! * [`conncache`]: the same answers kept per connection, beside the
//!   connection table, so that it holds however many connections there are;
//! * [`replays`]: the counters those kept answers move, summed per burst.
//!
//! Where each hook sits in the packet path (docs/design/rules.md):
//! `mangle PREROUTING` runs on every IP packet before the service lookup
//! (its marks select fwmark services); then packets to a virtual service or
//! a director address run `mangle INPUT` and `filter INPUT`, the others
//! (NAT replies, routed traffic) `mangle FORWARD` and `filter FORWARD`.
//! The `nat` table and SNAT/MASQUERADE rules are kept, saved and listed but
//! not applied: source NAT of routed traffic belongs to the routing path.

pub mod cache;
#[cfg(test)]
mod cache_tests;
pub mod conncache;
#[cfg(test)]
mod conncache_tests;
pub mod engine;
pub mod ifaces;
#[cfg(test)]
mod nat_tests;
pub mod replays;
#[cfg(test)]
mod tests;

pub use cache::FlowCache;
pub use conncache::ConnVerdicts;
pub use engine::{
    CtState, Facts, Names, NatHook, NatOutcome, NoNames, Packet, Program, Verdict, NO_PORT,
};
pub use ifaces::Interfaces;
pub use replays::Replays;
// The configuration (types, tables, operations) is the model's; the
// engine's modules and the packet path keep naming it from here.
pub use uvs_model::rules::{
    ctstate, tables, Match, Neg, Net, Policy, PortDir, PortRange, Rule, RuleError, RuleOp,
    RuleTables, Table, Target,
};
