//! The director's configuration model: virtual services, their destinations
//! (real servers) and the global timeouts, in IPVS's own vocabulary.
//!
//! Why it lives here: the control plane (ipvsadm grammar, listings) and the
//! engine (schedulers, connection table, rewrites) must agree on one typed
//! description of the configuration. This module is pure data with no DPDK
//! dependency.
//!
//! Two halves:
//! * `*Config` structs are plain values: what ipvsadm says. They are replaced
//!   whole on `-E`/`-e`, as ipvsadm does.
//! * [`DestShared`] lives behind an `Arc` and survives configuration changes:
//!   connection counters (global to all workers, relaxed atomics, as the
//!   kernel's host-global atomics), the OVERLOAD/AVAILABLE flags and the
//!   per-worker statistics slots. A connection keeps an `Arc<DestShared>`, so
//!   a deleted destination stays alive ("trash") while connections use it.
//!
//! Workers see immutable snapshots built from these values (the engine's
//! `dataplane::snapshot`); the control thread builds a new one for every
//! accepted operation ([`crate::ops::ConfigOp`]) and publishes it atomically.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IP protocol number.
    #[inline]
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Name as ipvsadm prints it (`TCP`, `UDP`, `SCTP`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    #[inline]
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    #[inline]
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Linux AF_* number (used for ipvsadm's sort order: 2 before 10).
    #[inline]
    pub const fn af(self) -> u16 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }
}

/// What identifies a virtual service: exactly one "service-address".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKey {
    /// `-t`, `-u`, `--sctp-service`: protocol, VIP and port (0 = any port,
    /// persistent services only).
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// `-f MARK [-6]`: packets whose whole 32-bit firewall mark equals
    /// `mark` (set by mangle PREROUTING rules, the engine's `rules`).
    Fwmark { mark: u32, family: Family },
}

impl ServiceKey {
    #[inline]
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

/// Scheduler flags (`-b`), as the kernel's service flag bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchedFlags(pub u32);

impl SchedFlags {
    /// `flag-1`, `sh-fallback`, `mh-fallback`.
    pub const SCHED1: u32 = 0x08;
    /// `flag-2`, `sh-port`, `mh-port`.
    pub const SCHED2: u32 = 0x10;
    /// `flag-3`.
    pub const SCHED3: u32 = 0x20;

    #[inline]
    pub const fn fallback(self) -> bool {
        self.0 & Self::SCHED1 != 0
    }
    #[inline]
    pub const fn port(self) -> bool {
        self.0 & Self::SCHED2 != 0
    }
}

/// Default persistence timeout when `-p` is given without a value (ipvsadm's
/// code constant; the man page's 300 is wrong).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// One virtual service as configured (`-A`/`-E` replace it whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub key: ServiceKey,
    /// Scheduler name as given (`wlc` by default); validated by the engine.
    pub scheduler: String,
    /// Persistence timeout in seconds; `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity: IPv4 netmask as a host-order `u32`
    /// (0xffff_ffff by default), or the IPv6 prefix length (128 by default).
    pub netmask: u32,
    /// Persistence engine name (`sip`).
    pub pe: Option<String>,
    /// One-packet scheduling (`-o`).
    pub one_packet: bool,
    pub sched_flags: SchedFlags,
    /// The SYN proxy (`-j enable`, DPVS's option; the engine's `synproxy`).
    #[serde(default)]
    pub synproxy: bool,
    /// `--toa` (a UVS extension): FULLNAT connections of this TCP service
    /// hand the client's address to the real server in DPVS's TOA option.
    #[serde(default)]
    pub toa: bool,
}

impl ServiceConfig {
    /// A service with ipvsadm's defaults for everything but the key.
    pub fn new(key: ServiceKey) -> ServiceConfig {
        let netmask = match key.family() {
            Family::V4 => u32::MAX,
            Family::V6 => 128,
        };
        ServiceConfig {
            key,
            scheduler: "wlc".to_string(),
            persistent: None,
            netmask,
            pe: None,
            one_packet: false,
            sched_flags: SchedFlags::default(),
            synproxy: false,
            toa: false,
        }
    }
}

/// Tunnel encapsulation (`--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelType {
    Ipip,
    Gue,
    Gre,
}

/// Tunnel checksum option (`--tun-nocsum`, `--tun-csum`, `--tun-remcsum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

/// Tunnel parameters of a `-i` destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TunnelConfig {
    pub kind: TunnelType,
    /// GUE destination UDP port (mandatory for GUE, 0 otherwise).
    pub port: u16,
    pub csum: TunnelCsum,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            kind: TunnelType::Ipip,
            port: 0,
            csum: TunnelCsum::NoCsum,
        }
    }
}

/// Forwarding method of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardMethod {
    /// `-m`, NAT ("Masq").
    Masq,
    /// `-g`, direct routing ("Route"), ipvsadm's default.
    Route,
    /// `-i`, IP tunnelling ("Tunnel").
    Tunnel(TunnelConfig),
    /// `--fullnat`, DPVS's full NAT ("FullNat"): client and virtual
    /// addresses both replaced, the client's by one of the service's local
    /// addresses (the engine's `LocalAddr`). Not in the kernel's IPVS.
    FullNat,
}

impl ForwardMethod {
    /// Name in listings: `Masq`, `Route`, `Tunnel`.
    pub const fn name(&self) -> &'static str {
        match self {
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Route => "Route",
            ForwardMethod::Tunnel(_) => "Tunnel",
            ForwardMethod::FullNat => "FullNat",
        }
    }
}

/// One destination (real server) as configured (`-a`/`-e` replace it whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub method: ForwardMethod,
    /// 0 = quiescent. ipvsadm (Debian) accepts 0..=i32::MAX.
    pub weight: i32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = 3/4 of the upper one.
    pub l_threshold: u32,
}

/// Flag bits of [`DestShared::flags`].
pub mod dest_flags {
    /// The destination is in its service (cleared when deleted: "trash").
    pub const AVAILABLE: u32 = 0x1;
    /// Upper threshold reached; no new connections until below the lower one.
    pub const OVERLOAD: u32 = 0x2;
}

/// The part of a destination that outlives configuration snapshots and is
/// shared by every worker: connection counters, flags and statistics.
///
/// Counters are host-global, as in the kernel: every worker updates them with
/// relaxed atomic read-modify-writes, and least-connection schedulers read
/// them. A stale read only shifts a near-tie, exactly as concurrent CPUs do in
/// the kernel.
#[derive(Debug)]
pub struct DestShared {
    pub addr: IpAddr,
    pub port: u16,
    pub activeconns: AtomicU32,
    pub inactconns: AtomicU32,
    pub persistconns: AtomicU32,
    pub flags: AtomicU32,
    /// Mirrors of the configured values that connection release needs
    /// (to clear OVERLOAD) and that `expire_nodest_conn`-style checks read.
    pub weight: AtomicI32,
    /// Last non-zero weight (Maglev keeps slots for quiesced servers).
    pub last_weight: AtomicI32,
    pub u_threshold: AtomicU32,
    pub l_threshold: AtomicU32,
    pub stats: Stats,
}

impl DestShared {
    pub fn new(cfg: &DestConfig) -> DestShared {
        DestShared {
            addr: cfg.addr,
            port: cfg.port,
            activeconns: AtomicU32::new(0),
            inactconns: AtomicU32::new(0),
            persistconns: AtomicU32::new(0),
            flags: AtomicU32::new(dest_flags::AVAILABLE),
            weight: AtomicI32::new(cfg.weight),
            last_weight: AtomicI32::new(cfg.weight),
            u_threshold: AtomicU32::new(cfg.u_threshold),
            l_threshold: AtomicU32::new(cfg.l_threshold),
            stats: Stats::default(),
        }
    }

    #[inline]
    pub fn active(&self) -> u32 {
        self.activeconns.load(Ordering::Relaxed)
    }
    #[inline]
    pub fn inactive(&self) -> u32 {
        self.inactconns.load(Ordering::Relaxed)
    }
    #[inline]
    pub fn weight(&self) -> i32 {
        self.weight.load(Ordering::Relaxed)
    }
    #[inline]
    pub fn is_overloaded(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & dest_flags::OVERLOAD != 0
    }
    #[inline]
    pub fn is_available(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & dest_flags::AVAILABLE != 0
    }
}

/// `--set tcp tcpfin udp` timeouts, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        }
    }
}

/// Unspecified addresses, handy as defaults.
pub const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// One row of the connection listing (`-L -c`), as a worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnEntry {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for fwmark templates.
    pub protocol: String,
    pub client: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// State name as ipvsadm prints it (`ESTABLISHED`, `UDP`, `NONE`, ...).
    pub state: String,
    /// Seconds until expiry.
    pub expires: u32,
    /// Persistence engine name and data, if any.
    pub pe: Option<(String, String)>,
}

/// A FULLNAT local address: the source address real servers see for the
/// connections it carries. One per address for the whole director (two
/// services may share it, and then share its ports), numbered once and
/// for good so that a connection can name it in two bytes and every worker
/// can keep its ports for it (the engine's port pools) by that number.
#[derive(Debug)]
pub struct LocalAddr {
    pub addr: IpAddr,
    /// The director-wide number (index of the store's and the snapshot's
    /// `locals`).
    pub id: u16,
    /// Connections holding a port of this address now (all workers).
    pub conns: AtomicI64,
    /// New connections refused because no port of it was free.
    pub conflicts: AtomicU64,
}

impl LocalAddr {
    pub fn new(addr: IpAddr, id: u16) -> LocalAddr {
        LocalAddr {
            addr,
            id,
            conns: Default::default(),
            conflicts: Default::default(),
        }
    }
}
