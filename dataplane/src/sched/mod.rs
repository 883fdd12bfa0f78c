//! The fourteen IPVS schedulers, making the kernel's choices.
//!
//! A scheduler picks the real server for a packet that starts a new
//! connection (and, for persistent services, has no valid template). Every
//! rule here comes from `reference/ipvs.md` section 3: list order (newest
//! destination first, ties go to the earlier entry), skipping weight-0
//! ("quiescent") and OVERLOAD destinations, the kernel's integer overhead
//! arithmetic, the hash functions bit for bit. One file per scheduler, as in
//! `net/netfilter/ipvs/`.
//!
//! # Interface
//! * [`new`]`(name, flags)` / [`new_with`] build a [`Scheduler`] for one
//!   service on one worker; [`NAMES`] lists the fourteen names. (`none`, the
//!   kernel's "no scheduler", is not a scheduler: represent it as no
//!   scheduler at all.)
//! * [`Scheduler::update`] must be called once after construction and again
//!   whenever the service's destination list changes (add, delete, edit),
//!   with the new list in kernel order. What each scheduler does with it is
//!   the kernel's add/del/upd hook: wrr resets its cursor and recomputes
//!   gcd/max weight on every change; rr only moves its cursor when the
//!   destination under it was deleted; dh rebuilds its table (the kernel only
//!   on add/delete, but an edit cannot change a weight-blind table, so the
//!   result is the same); sh and mh rebuild on every change; lblc/lblcr keep
//!   their tables (entries refer to destinations by address and port, so a
//!   deleted and re-added server is found again, as the kernel's reference
//!   from the cache keeps the same destination alive in its trash).
//!   Each call should describe one change: rr's cursor rule and wrr's
//!   reset are defined per change, so folding several changes into one call
//!   can give a different (still valid) cursor. Equally, do not call it when
//!   a new snapshot left this service's destinations alone (wrr would reset
//!   its cursor where the kernel does not). A worker brings a service's
//!   scheduler up to date at the service's next new connection, so the
//!   changes made between two new connections reach `update` as one call
//!   (as a restore's changes, published at once, always did).
//! * [`Scheduler::schedule`] returns the index of the chosen destination in
//!   the same slice, or `None` ("no destination available"). It must be
//!   given the list of the last `update`.
//! * [`Scheduler::expire`] runs lblc/lblcr garbage collection; the worker
//!   calls it between bursts (the schedulers keep their own 60 s period).
//! * [`Scheduler::set_flags`]: `-E` that keeps the scheduler name changes
//!   only the flags (the kernel keeps the scheduler state).
//!
//! # Why a trait object
//! `schedule` runs once per new connection, not per packet, beside a
//! connection-table insert that costs far more than one indirect call, and
//! each scheduler has very different state (a cursor, a 4093-slot Maglev
//! table, a 24576-entry locality cache). `Box<dyn Scheduler>` keeps each in
//! its own file with no giant enum; the criterion bench (`bench/benches/
//! sched.rs`) measures the whole call.
//!
//! # The packet path
//! `schedule` never allocates, locks, logs or formats. Weights come from the
//! snapshot's [`DestConfig`](crate::model::DestConfig) (the same values
//! `update` saw); connection counters and the OVERLOAD flag are relaxed
//! atomic loads from [`DestShared`](crate::model::DestShared). The lblc/lblcr
//! tables are pools reserved up front at the kernel's cap (memory is
//! committed by the OS as entries are first used). Table rebuilds (sh, dh,
//! mh) happen in `update`, between bursts.
//!
//! # Workers and sharding
//! Every worker owns its own scheduler instances, so no lock is taken: the
//! rr/wrr cursors and the sh/dh/mh tables are per worker. The lblc/lblcr
//! destination-address table is the exception: with several workers it is
//! one per service for the whole director ([`sharedloc`], lock-free), as
//! the kernel's one table serves all its CPUs. What that means for
//! identical choices (docs/design/persistence.md has the figures):
//! * With one worker every choice is exactly the kernel's.
//! * With N workers, the hash schedulers (dh, sh, mh) and fo are unaffected:
//!   they depend on configuration and the packet only.
//! * rr and wrr keep one cursor per worker: each worker's sequence of picks
//!   is the kernel's sequence, but the sequences interleave, so the global
//!   order is not the kernel's single-cursor order; per-server counts stay
//!   within N + 1 connections of the kernel's at any time.
//! * lc, wlc, sed, nq, ovf, lblc, lblcr and twos read the host-global
//!   connection counters in `DestShared`, which all workers update, so they
//!   see the same global counts the kernel's CPUs see (a stale relaxed read
//!   only moves a near-tie, as concurrent CPUs do in the kernel); lblc and
//!   lblcr also share their table, so one destination address is cached to
//!   one server (lblcr sets hold at most [`sharedloc::MEMBERS`] servers).
//! * twos draws from the worker's random source (the kernel's per-CPU
//!   generator plays the same role).
//!
//! # Overhead
//! [`Overhead`] switches the lc/wlc/lblc/lblcr/twos load measure between the
//! classic `active*256 + inactive` and the `(active<<8) + totalconns` =
//! `257*active + inactive` of the Debian 6.1/6.12 sources. The default is
//! [`Overhead::TotalConns`] (the newer kernels). The counters themselves are
//! kept the classic way (active and inactive), so the listed `InActConn`
//! is the same under both: the new kernels display `max(total - active, 0)`,
//! which equals the inactive count.
//!
//! # Integer arithmetic
//! The kernel computes overheads and comparisons in C `int` (with
//! `-fno-strict-overflow`, i.e. wrapping) and widens to 64 bits only for
//! the wlc-style cross products. These modules do the same (`i32` wrapping,
//! `i64` products) so that even absurd counts or weights choose as the
//! kernel does.
//!
//! # Known differences from the kernel
//! * mh folds an IPv6 real server's address by XOR of its four words; under
//!   an IPv4 service (a mixed-family tunnel destination) the kernel reads
//!   only the first word, so such tables differ.
//! * lblcr: a set member whose server was deleted is not weighed when
//!   expiry drops the most loaded member (its counters are not visible).
//! * lblc/lblcr garbage collection runs at most once per
//!   [`Scheduler::expire`] call: call it at least every 60 s.
//! * twos: a total weight that wraps a C `int` to -1 makes the kernel
//!   divide by zero; here the call fails.
//! * The lblc cap (24576 entries) is the one described for the Debian
//!   6.12 sources in ipvs.md 3.9; upstream has no cap.

use std::fmt;
use std::net::IpAddr;

use crate::model::{Dest, SchedFlags};

pub mod hash;

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod loctab;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
pub mod sharedloc;
mod twos;
mod wlc;
mod wrr;

pub use mh::{MhTableIndex, MhTableIndexError};

/// The fourteen scheduler names, in the order ipvsadm's man page lists them.
pub const NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Scheduler or persistence engine not found
///
/// (ipvsadm's text for the kernel's ENOENT on an unknown scheduler name.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Scheduler or persistence engine not found")]
pub struct UnknownScheduler {
    /// The name that was asked for.
    pub name: String,
}

/// Which connection-overhead formula lc, wlc, lblc, lblcr and twos use
/// (ipvs.md 0 and 3.0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overhead {
    /// `activeconns * 256 + inactconns`: most of IPVS's history.
    Classic,
    /// `(activeconns << 8) + totalconns` = `257*active + inactive`: the
    /// Debian 6.1.192 / 6.12.117 sources.
    #[default]
    TotalConns,
}

impl Overhead {
    /// The kernel's `ip_vs_dest_conn_overhead` as a C `int`.
    #[inline]
    pub fn of(self, d: &Dest) -> i32 {
        let a = active(d);
        let i = inactive(d);
        let base = (a as u32).wrapping_shl(8) as i32;
        match self {
            Overhead::Classic => base.wrapping_add(i),
            Overhead::TotalConns => base.wrapping_add(a.wrapping_add(i)),
        }
    }
}

/// Settings that the kernel takes from build options and sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedConfig {
    pub overhead: Overhead,
    /// Maglev table size (`CONFIG_IP_VS_MH_TAB_INDEX`, default 12 → 4093).
    pub mh_tab_index: MhTableIndex,
    /// `lblc_expiration` sysctl, milliseconds (default 24 h).
    pub lblc_expiration_ms: u64,
    /// `lblcr_expiration` sysctl, milliseconds (default 24 h).
    pub lblcr_expiration_ms: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            overhead: Overhead::default(),
            mh_tab_index: MhTableIndex::default(),
            lblc_expiration_ms: loctab::DEFAULT_EXPIRATION_MS,
            lblcr_expiration_ms: loctab::DEFAULT_EXPIRATION_MS,
        }
    }
}

/// A source of uniformly distributed 32-bit numbers (twos draws two per
/// call). Tests script it; production uses [`SplitMix64`].
pub trait SchedRng {
    fn next_u32(&mut self) -> u32;
}

/// The production random source: SplitMix64 (Steele, Lea and Flood), one per
/// worker, seeded by the worker (e.g. from its lcore id and the TSC). Not
/// cryptographic, like the kernel's old `prandom_u32`; it only has to spread
/// twos' draws evenly. No allocation, no syscall.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
}

impl SchedRng for SplitMix64 {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// What a scheduler may look at for one new connection.
pub struct SchedInput<'a> {
    /// Client (source) address: the sh/mh key.
    pub src: IpAddr,
    /// Client (source) port, host order: used by sh/mh with `-b sh-port` /
    /// `mh-port` (only for TCP, UDP and SCTP).
    pub src_port: u16,
    /// Packet destination address (the VIP, or the cache target for fwmark
    /// services): the dh/lblc/lblcr key.
    pub dst: IpAddr,
    /// IP protocol number of the packet.
    pub protocol: u8,
    /// The worker's clock in milliseconds from any fixed origin (lblc/lblcr
    /// last-use times and expiry).
    pub now: u64,
    /// The worker's random source (twos).
    pub rng: &'a mut dyn SchedRng,
}

impl fmt::Debug for SchedInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedInput")
            .field("src", &self.src)
            .field("src_port", &self.src_port)
            .field("dst", &self.dst)
            .field("protocol", &self.protocol)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl SchedInput<'_> {
    /// The port sh and mh hash: the source port for TCP, UDP and SCTP when
    /// the `*-port` flag (SCHED2) is set, else 0.
    #[inline]
    pub(crate) fn hash_port(&self, flags: SchedFlags) -> u16 {
        if flags.port() && matches!(self.protocol, 6 | 17 | 132) {
            self.src_port
        } else {
            0
        }
    }
}

/// One service's scheduler on one worker. See the module docs for the call
/// protocol.
pub trait Scheduler: Send {
    /// The kernel name (`wlc`, `mh`, ...).
    fn name(&self) -> &'static str;
    /// The service's destination list changed (or was first set).
    fn update(&mut self, dests: &[Dest]);
    /// Pick a destination for a new connection: an index into `dests`.
    fn schedule(&mut self, dests: &[Dest], input: &mut SchedInput<'_>) -> Option<usize>;
    /// Periodic housekeeping at time `now` (ms): lblc/lblcr garbage
    /// collection. Cheap when nothing is due.
    fn expire(&mut self, _now: u64) {}
    /// The service's scheduler flags changed (`-E` with the same `-s`).
    fn set_flags(&mut self, _flags: SchedFlags) {}
    /// Whether this scheduler keeps a destination-address table (lblc,
    /// lblcr) that several workers should share.
    fn uses_locality(&self) -> bool {
        false
    }
    /// Several workers: use the service's director-wide locality table
    /// from now on (called before the first `update`).
    fn share_locality(&mut self, _table: std::sync::Arc<sharedloc::SharedLocality>) {}
    /// The most destinations this scheduler accepts (mh: its table size; the
    /// kernel refuses a service with more, EINVAL). `None` = no limit.
    fn max_dests(&self) -> Option<usize> {
        None
    }
}

/// A scheduler with the default [`SchedConfig`].
pub fn new(name: &str, flags: SchedFlags) -> Result<Box<dyn Scheduler>, UnknownScheduler> {
    new_with(name, flags, &SchedConfig::default())
}

/// A scheduler with explicit build options and sysctls.
pub fn new_with(
    name: &str,
    flags: SchedFlags,
    cfg: &SchedConfig,
) -> Result<Box<dyn Scheduler>, UnknownScheduler> {
    let ov = cfg.overhead;
    Ok(match name {
        "rr" => Box::new(rr::Rr::new()),
        "wrr" => Box::new(wrr::Wrr::new()),
        "lc" => Box::new(lc::Lc::new(ov)),
        "wlc" => Box::new(wlc::Wlc::new(ov)),
        "lblc" => Box::new(lblc::Lblc::new(ov, cfg.lblc_expiration_ms)),
        "lblcr" => Box::new(lblcr::Lblcr::new(ov, cfg.lblcr_expiration_ms)),
        "dh" => Box::new(dh::Dh::new()),
        "sh" => Box::new(sh::Sh::new(flags)),
        "sed" => Box::new(sed::Sed::new()),
        "nq" => Box::new(nq::Nq::new()),
        "fo" => Box::new(fo::Fo::new()),
        "ovf" => Box::new(ovf::Ovf::new()),
        "mh" => Box::new(mh::Mh::new(flags, cfg.mh_tab_index)),
        "twos" => Box::new(twos::Twos::new(ov)),
        _ => {
            return Err(UnknownScheduler {
                name: name.to_string(),
            })
        }
    })
}

/// Whether a service's destination list differs between two snapshots:
/// another length, another destination at some position (by identity of its
/// shared state), or another configuration. The worker calls
/// [`Scheduler::update`] only when this is true.
pub fn dests_changed(old: &[Dest], new: &[Dest]) -> bool {
    old.len() != new.len()
        || old
            .iter()
            .zip(new)
            .any(|(a, b)| !std::sync::Arc::ptr_eq(&a.shared, &b.shared) || a.config != b.config)
}

// ---- Helpers shared by several schedulers: the kernel's `atomic_read`s. ----

/// `atomic_read(&dest->weight)`.
#[inline]
pub(crate) fn weight(d: &Dest) -> i32 {
    d.config.weight
}

/// `dest->flags & IP_VS_DEST_F_OVERLOAD`.
#[inline]
pub(crate) fn overloaded(d: &Dest) -> bool {
    d.shared.is_overloaded()
}

/// `atomic_read(&dest->activeconns)` (an `int` in the kernel).
#[inline]
pub(crate) fn active(d: &Dest) -> i32 {
    d.shared.active() as i32
}

/// `atomic_read(&dest->inactconns)`.
#[inline]
pub(crate) fn inactive(d: &Dest) -> i32 {
    d.shared.inactive() as i32
}

/// Weighted least-connection over the whole list (ipvs.md 3.4): the first
/// eligible destination, replaced by a later one only when
/// `H_least * W_d > H_d * W_least` in 64 bits. Also lblc's and lblcr's
/// fallback.
#[inline]
pub(crate) fn wlc_pick(dests: &[Dest], ov: Overhead) -> Option<usize> {
    let first = dests.iter().position(|d| !overloaded(d) && weight(d) > 0)?;
    let mut least = first;
    let mut loh = ov.of(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if overloaded(d) {
            continue;
        }
        let doh = ov.of(d);
        if i64::from(loh) * i64::from(weight(d)) > i64::from(doh) * i64::from(weight(&dests[least]))
        {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// lblc's "overloaded" (ipvs.md 3.9): more active connections than its
/// weight, while some destination of the service is below half its weight.
#[inline]
pub(crate) fn lblc_overloaded(dests: &[Dest], d: &Dest) -> bool {
    active(d) > weight(d) && dests.iter().any(|m| active(m).wrapping_mul(2) < weight(m))
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
