//! The thin safe layer over DPDK: the only `unsafe` code of the engine.
//!
//! Why a layer of its own: everything above it (responders, schedulers,
//! rewrites) works on [`crate::buf::PacketBuf`] and is tested without EAL;
//! everything here is a small owner around one DPDK object whose lifetime
//! rules it encodes, so the rules are checked once:
//!
//! * [`Eal`]: `rte_eal_init` once per process, cleanup and removal of the
//!   runtime directory on drop.
//! * [`Mempool`]: a packet mbuf pool, freed on drop.
//! * [`Mbuf`]: an owned mbuf, freed on drop; [`Burst`]: a stack array of
//!   them for rx/tx without allocation, bulk-freed.
//! * [`Port`]: an ethdev with rx/tx queues (RSS when more than one), started
//!   on open, stopped and closed on drop.
//! * [`Ring`]: an `rte_ring` of mbufs between lcores.
//! * [`lcore`]: launching closures on EAL worker lcores, panics caught.
//! * [`Signals`]: the operator's signals blocked before EAL starts
//!   threads, and a one-line report of fatal ones.
//! * [`quiesce`]: workers' quiescent points, so that a driver's teardown
//!   from the interrupt thread never races a burst.
//! * [`telemetry`]: the daemon's own commands on DPDK's telemetry socket.
//! * [`tap`]: the kernel side of a net_tap port gets a MAC of its own.
//!
//! Every `unsafe` block says why it holds in a `// SAFETY:` comment.

mod bulk;
mod eal;
pub mod lcore;
mod mbuf;
mod mem;
mod mempool;
mod port;
pub mod quiesce;
mod ring;
mod signals;
pub mod tap;
pub mod telemetry;

pub use mem::{advise_huge_pages, prefetch};

pub use eal::Eal;
pub use mbuf::{Burst, Drain, Mbuf, BURST_SIZE};
pub use mempool::Mempool;
pub use port::{endpoint_fields, rss_request, Port, PortConf, PortQueue, PortStats, RssState};
pub use quiesce::Quiescence;
pub use ring::{ring_port, Ring};
pub use signals::{report_fatal_signals, signal_name, Signals};

use std::ffi::CStr;

/// Errors of the DPDK layer. The `Display` text is what the daemon prints.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` failed (the EAL's own last log line is included).
    #[error("EAL initialisation failed: {0}")]
    EalInit(String),
    /// EAL was already initialised in this process.
    #[error("EAL is already initialised in this process (one EAL per process)")]
    EalTwice,
    /// A DPDK call failed; `what` names the call and the object.
    #[error("{what}: {reason}")]
    Call { what: String, reason: String },
    /// An argument could not be passed to C (embedded NUL byte).
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
}

/// The message of a DPDK error number (`rte_strerror`).
pub fn strerror(errnum: i32) -> String {
    let errnum = errnum.abs();
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that
    // stays valid at least until the next call on this thread; we copy it.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errnum)) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno`.
pub fn errno() -> i32 {
    // SAFETY: uvs_errno reads the thread-local rte_errno; no preconditions.
    unsafe { dpdk_sys::uvs_errno() }
}

pub(crate) fn call_err(what: impl Into<String>, rc: i32) -> DpdkError {
    DpdkError::Call {
        what: what.into(),
        reason: strerror(rc),
    }
}

/// TSC cycles now (`rte_get_tsc_cycles`): the worker's clock.
#[inline(always)]
pub fn tsc_cycles() -> u64 {
    // SAFETY: reads the time stamp counter; no memory is touched.
    unsafe { dpdk_sys::rte_get_tsc_cycles() }
}

/// TSC frequency in Hz, as measured by EAL.
pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value computed at EAL init (0 before); no pointers.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
