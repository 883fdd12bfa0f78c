//! The director's configuration model: virtual services, their destinations
//! (real servers) and the global timeouts, in IPVS's own vocabulary.
//!
//! Why it lives here: the control plane (ipvsadm grammar, listings) and the
//! engine (schedulers, connection table, rewrites) must agree on one typed
//! description of the configuration. This module is pure data with no DPDK
//! dependency, so `control` uses it with the `dpdk` feature off.
//!
//! Two halves:
//! * `*Config` structs are plain values: what ipvsadm says. They are replaced
//!   whole on `-E`/`-e`, as ipvsadm does.
//! * `*Shared` structs live behind an `Arc` and survive configuration changes:
//!   connection counters (global to all workers, relaxed atomics, as the
//!   kernel's host-global atomics), the OVERLOAD/AVAILABLE flags and the
//!   per-worker statistics slots. A connection keeps an `Arc<DestShared>`, so
//!   a deleted destination stays alive ("trash") while connections use it.
//!
//! Workers see immutable [`Snapshot`]s; the control thread builds a new one
//! for every accepted command and publishes it atomically.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;

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
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Linux AF_* number (used for ipvsadm's sort order: 2 before 10).
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
    /// `mark` (set by mangle PREROUTING rules, [`crate::rules`]).
    Fwmark { mark: u32, family: Family },
}

impl ServiceKey {
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

    pub const fn fallback(self) -> bool {
        self.0 & Self::SCHED1 != 0
    }
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
    /// The SYN proxy (`-j enable`, DPVS's option; [`crate::synproxy`]).
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
    /// addresses ([`LocalAddr`]). Not in the kernel's IPVS.
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

    pub fn active(&self) -> u32 {
        self.activeconns.load(Ordering::Relaxed)
    }
    pub fn inactive(&self) -> u32 {
        self.inactconns.load(Ordering::Relaxed)
    }
    pub fn weight(&self) -> i32 {
        self.weight.load(Ordering::Relaxed)
    }
    pub fn is_overloaded(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & dest_flags::OVERLOAD != 0
    }
    pub fn is_available(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & dest_flags::AVAILABLE != 0
    }
}

/// Per-service state that outlives snapshots: statistics, and with
/// several workers the lblc/lblcr locality table they share.
#[derive(Debug, Default)]
pub struct ServiceShared {
    pub stats: Stats,
    /// The service's `--toa` switch, for its connections (set when the
    /// service is compiled into a snapshot).
    pub toa: std::sync::atomic::AtomicBool,
    locality: std::sync::OnceLock<Arc<crate::sched::sharedloc::SharedLocality>>,
}

impl ServiceShared {
    /// The service's director-wide lblc/lblcr table, allocated by the first
    /// worker that asks (between bursts, when it builds its scheduler).
    pub fn locality(&self) -> Arc<crate::sched::sharedloc::SharedLocality> {
        Arc::clone(self.locality.get_or_init(Default::default))
    }
}

/// A destination inside a snapshot: its configuration and its shared state.
#[derive(Debug, Clone)]
pub struct Dest {
    pub config: DestConfig,
    pub shared: Arc<DestShared>,
}

/// A service inside a snapshot.
#[derive(Debug, Clone)]
pub struct Service {
    pub config: ServiceConfig,
    /// Destinations in the kernel's list order: a newly added destination is
    /// inserted at the front; an edit does not move it. Schedulers' "first
    /// in list wins a tie" refers to this order.
    pub dests: Vec<Dest>,
    pub shared: Arc<ServiceShared>,
    /// FULLNAT local addresses (`--add-laddr`), in the order added.
    pub locals: Vec<Arc<LocalAddr>>,
}

/// A FULLNAT local address: the source address real servers see for the
/// connections it carries. One per address for the whole director (two
/// services may share it, and then share its ports), numbered once and
/// for good so that a connection can name it in two bytes and every worker
/// can keep its ports for it ([`crate::ports::PortPool`]) by that number.
#[derive(Debug)]
pub struct LocalAddr {
    pub addr: IpAddr,
    /// The director-wide number (index of [`Snapshot::locals`]).
    pub id: u16,
    /// Connections holding a port of this address now (all workers).
    pub conns: std::sync::atomic::AtomicI64,
    /// New connections refused because no port of it was free.
    pub conflicts: std::sync::atomic::AtomicU64,
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

/// One immutable configuration, as workers see it.
///
/// Services are shared between snapshots: a change builds a new [`Service`]
/// for the services it touched only, and the others are the same `Arc`s as
/// in the previous snapshot (see [`crate::config`]).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases by one with every accepted change (or batch of changes);
    /// a restore published at once advances it by its number of lines.
    pub generation: u64,
    /// Services in creation order (listings sort them themselves).
    pub services: ServiceList,
    pub timeouts: Timeouts,
    /// The IPVS tunables (`/proc/sys/net/ipv4/vs/*`).
    pub tunables: crate::tunables::Tunables,
    /// How many destinations have been deleted since start: a worker that
    /// sees it grow flushes their connections when `expire_nodest_conn` is
    /// on (once per delete, not once per snapshot).
    pub dest_removals: u64,
    /// The same services by key and by address, for the packet path. The
    /// store keeps it; a snapshot built by hand may leave it empty (see
    /// [`crate::lb::ServiceIndex::build`]).
    pub index: crate::lb::ServiceIndex,
    /// The packet rules (iptables), compiled ([`crate::rules`]).
    pub rules: Arc<crate::rules::Program>,
    /// The ipset sets, for `-m set` rules (see [`crate::sets`]).
    pub sets: Arc<crate::sets::SetTable>,
    /// Every FULLNAT local address ever configured, by number (never
    /// shrinks: connections and worker port pools name them by number).
    pub locals: Arc<Vec<Arc<LocalAddr>>>,
    /// The `nat POSTROUTING` rules of routed traffic ([`crate::snat`]).
    pub nat: Arc<crate::snat::NatRules>,
}

impl Snapshot {
    /// The service with exactly this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        if !self.index.is_empty() {
            return self.index.get(key).map(|e| &*e.service);
        }
        self.services
            .iter()
            .find(|s| &s.config.key == key)
            .map(|s| &**s)
    }
}

/// Services in creation order, shared between snapshots a chunk at a
/// time: replacing, adding or removing one service copies its chunk (at
/// most [`ServiceList::CHUNK`] pointers) and the list of chunks (one
/// pointer per chunk), and a copy of the whole list is one reference count.
/// Reads like a slice of `Arc<Service>` (`iter`, `len`, indexing).
#[derive(Debug, Clone, Default)]
pub struct ServiceList {
    chunks: Arc<Vec<Arc<Chunk>>>,
    len: usize,
}

/// Up to [`ServiceList::CHUNK`] services with their creation numbers, in
/// creation order.
type Chunk = Vec<(u64, Arc<Service>)>;

impl ServiceList {
    /// Services per chunk at most.
    pub const CHUNK: usize = 256;

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Service>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().map(|e| &e.1))
    }

    pub fn last(&self) -> Option<&Arc<Service>> {
        self.chunks.last().and_then(|c| c.last()).map(|e| &e.1)
    }

    /// The chunk and position of the `i`th service.
    fn locate(&self, mut i: usize) -> Option<(usize, usize)> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.len() {
                return Some((c, i));
            }
            i -= chunk.len();
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&Arc<Service>> {
        let (c, j) = self.locate(i)?;
        Some(&self.chunks[c][j].1)
    }

    /// The `i`th service, its chunk copied first if another list shares it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Arc<Service>> {
        let (c, j) = self.locate(i)?;
        let chunk = Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[c]);
        Some(&mut chunk[j].1)
    }

    /// The chunk that holds creation number `seq` or would hold it.
    fn chunk_of(&self, seq: u64) -> Option<usize> {
        let c = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.0 < seq));
        (c < self.chunks.len()).then_some(c)
    }

    /// Adds the service with creation number `seq`, or replaces it.
    pub fn put(&mut self, seq: u64, svc: Arc<Service>) {
        let chunks = Arc::make_mut(&mut self.chunks);
        let c = match Self::chunk_for_put(chunks, seq) {
            Some(c) => c,
            None => {
                chunks.push(Arc::new(Vec::with_capacity(Self::CHUNK)));
                chunks.len() - 1
            }
        };
        let chunk = Arc::make_mut(&mut chunks[c]);
        match chunk.binary_search_by_key(&seq, |e| e.0) {
            Ok(j) => chunk[j].1 = svc,
            Err(j) => {
                chunk.insert(j, (seq, svc));
                self.len += 1;
                if chunk.len() > Self::CHUNK {
                    let tail = chunk.split_off(Self::CHUNK / 2);
                    chunks.insert(c + 1, Arc::new(tail));
                }
            }
        }
    }

    /// Where `put` goes: the chunk that would hold `seq`, else the last
    /// chunk if it has room (`None`: a new chunk).
    fn chunk_for_put(chunks: &[Arc<Chunk>], seq: u64) -> Option<usize> {
        let c = chunks.partition_point(|c| c.last().is_some_and(|e| e.0 < seq));
        if c < chunks.len() {
            return Some(c);
        }
        let last = chunks.len().checked_sub(1)?;
        (chunks[last].len() < Self::CHUNK).then_some(last)
    }

    /// Removes the service with creation number `seq`, if listed.
    pub fn remove(&mut self, seq: u64) {
        let Some(c) = self.chunk_of(seq) else {
            return;
        };
        let Ok(j) = self.chunks[c].binary_search_by_key(&seq, |e| e.0) else {
            return;
        };
        let chunks = Arc::make_mut(&mut self.chunks);
        let chunk = Arc::make_mut(&mut chunks[c]);
        chunk.remove(j);
        self.len -= 1;
        if chunk.is_empty() {
            chunks.remove(c);
        }
    }
}

impl std::ops::Index<usize> for ServiceList {
    type Output = Arc<Service>;
    fn index(&self, i: usize) -> &Arc<Service> {
        match self.get(i) {
            Some(s) => s,
            None => panic!("service {i} of {}", self.len),
        }
    }
}

impl std::ops::IndexMut<usize> for ServiceList {
    fn index_mut(&mut self, i: usize) -> &mut Arc<Service> {
        let len = self.len;
        match self.get_mut(i) {
            Some(s) => s,
            None => panic!("service {i} of {len}"),
        }
    }
}

impl FromIterator<Arc<Service>> for ServiceList {
    fn from_iter<I: IntoIterator<Item = Arc<Service>>>(it: I) -> Self {
        let mut l = ServiceList::default();
        for (i, s) in it.into_iter().enumerate() {
            l.put(i as u64, s);
        }
        l
    }
}

impl From<Vec<Arc<Service>>> for ServiceList {
    fn from(v: Vec<Arc<Service>>) -> Self {
        v.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a ServiceList {
    type Item = &'a Arc<Service>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a Arc<Service>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port: u16) -> Arc<Service> {
        Arc::new(Service {
            config: ServiceConfig::new(ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "198.18.0.1".parse().unwrap(),
                port,
            }),
            dests: Vec::new(),
            shared: Arc::default(),
            locals: Vec::new(),
        })
    }

    fn ports(l: &ServiceList) -> Vec<u16> {
        l.iter()
            .map(|s| match s.config.key {
                ServiceKey::Addr { port, .. } => port,
                ServiceKey::Fwmark { .. } => 0,
            })
            .collect()
    }

    /// Creation order holds through adds, replacements and removals across
    /// chunks, and a change leaves all chunks but one shared with a copy.
    #[test]
    fn service_list_keeps_creation_order_and_shares_chunks() {
        let n = 3 * ServiceList::CHUNK as u16;
        let mut l = ServiceList::default();
        for p in 1..=n {
            l.put(u64::from(p), svc(p));
        }
        let copy = l.clone();
        l.put(5, svc(5000));
        l.remove(300);
        l.remove(301);
        l.remove(9999);
        let mut want: Vec<u16> = (1..=n).filter(|p| *p != 300 && *p != 301).collect();
        want[4] = 5000;
        assert_eq!(ports(&l), want);
        assert_eq!(l.len(), want.len());
        assert_eq!(
            ports(&copy),
            (1..=n).collect::<Vec<_>>(),
            "the copy is untouched"
        );
        let shared = l
            .chunks
            .iter()
            .filter(|c| copy.chunks.iter().any(|d| Arc::ptr_eq(c, d)))
            .count();
        assert_eq!(
            shared,
            l.chunks.len() - 2,
            "only the two changed chunks are new"
        );
        // Removing every service of a chunk drops the chunk.
        for p in 1..=ServiceList::CHUNK as u64 {
            l.remove(p);
        }
        assert_eq!(l.len(), want.len() - ServiceList::CHUNK);
        assert!(l.chunks.iter().all(|c| !c.is_empty()));
        assert_eq!(l.last().map(Arc::as_ptr), copy.last().map(Arc::as_ptr));
    }
}
