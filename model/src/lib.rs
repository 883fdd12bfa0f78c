//! UVS's configuration model: one typed description of what the director is
//! told and what it counts, shared by the engine (`dataplane`) and the
//! control plane (`control`).
//!
//! Why a crate of its own: the control plane speaks three command languages
//! (ipvsadm, ipset, iptables) and the engine executes what they say; both
//! must agree on every value, operation and error, and neither should pull
//! in the other's code to do so. This crate is pure data and pure checks: no
//! DPDK, no I/O, no packet processing.
//!
//! * [`model`]: services, destinations, forwarding methods, timeouts.
//! * [`ops`]: the operations on them ([`ops::ConfigOp`]), the checks that
//!   need no state, the kernel's errors and their libipvs texts.
//! * [`store`]: the services, destinations and local addresses of a
//!   director, changed by [`ops::ConfigOp`]s with the checks that need the
//!   current state, and what the kernel keeps beside them (trash, zero
//!   points, estimators).
//! * [`rules`]: iptables' tables, chains and rules, the operations on them
//!   ([`rules::RuleOp`]) and the kernel's refusals.
//! * [`sets`]: ipset's set types, elements and operations
//!   ([`sets::SetOp`]), the kernel's refusals and the element checks.
//! * [`tunables`]: the IPVS sysctls, their ranges and defaults.
//! * [`stats`]: the per-worker counter slots the packet path writes, and
//!   their totals; [`estimator`]: the kernel's rate estimator over them.

pub mod estimator;
pub mod model;
pub mod ops;
pub mod rules;
pub mod sets;
pub mod stats;
pub mod store;
pub mod tunables;
