//! The load-balancing stage of a worker: classify, connection lookup or
//! schedule-and-create, rewrite, and the next hop to send to.
//!
//! Why a separate, pure stage: everything IPVS decides about a packet lives
//! here, over a [`PacketBuf`] and an injected clock, so the exact code a
//! worker runs is unit-tested packet by packet without EAL. The worker (or a
//! test) owns one [`Lb`] per lcore: its connection-table shard, its
//! scheduler instances (cursors, Maglev tables) and its view of the current
//! configuration snapshot. Nothing here allocates, locks, logs or makes a
//! syscall on the packet path; a new snapshot is taken in between bursts
//! ([`Lb::set_snapshot`]) at a cost that does not depend on the table: the
//! snapshot brings its own packet index, and a service's scheduler state is
//! brought up to date when the service next schedules (`sched_for`), for
//! that service only.
//!
//! What [`Lb::process`] does, in IPVS's order (reference 4.1, 5.1-5.5):
//! 1. ICMP errors quoting a known connection are translated (NAT) or
//!    forwarded along the connection (DR, TUN).
//! 2. TCP/UDP/SCTP packets of a known connection (client side, or the real-server
//!    side of NAT) run the state machine and are rewritten by the
//!    connection's forwarding method.
//! 3. Packets to a virtual service that may start a connection (TCP SYN,
//!    any non-RST TCP with `sloppy_tcp`, any UDP, an SCTP INIT or with
//!    `sloppy_sctp` any SCTP packet but an ABORT) are scheduled
//!    (persistence templates first), a connection is created, and the
//!    packet is sent like 2. No destination: ICMP port unreachable back to
//!    the client.
//!
//! The IPVS tunables come with each snapshot ([`crate::tunables`]); the
//! memory defences they switch on are evaluated per worker in
//! [`Lb::housekeeping`] ([`Defense`]).
//! 4. Everything else is not the load balancer's: [`Action::Pass`], for the
//!    L2/L3 stage (own addresses, ARP, NDP) to handle or drop.
//!
//! The stage rewrites the IP packet in place and returns the L3 address to
//! send it to (the real server, the client, or the sender of a packet that
//! got an ICMP error); the worker resolves that address through its route
//! and neighbour tables and fills in the MAC addresses.

mod defense;
mod filter;
mod fullnat;
mod index;
mod lane;
mod masq;
mod pmtu;
mod stage;
mod sync;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fullnat;
#[cfg(test)]
mod tests_host;
#[cfg(test)]
mod tests_masq;
#[cfg(test)]
mod tests_synproxy;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::buf::PacketBuf;
use crate::conn::shared::{SharedRef, SharedTemplates};
use crate::conn::table::{cflags, HashedKey, WARM_BURST};
use crate::conn::{
    persist, proto_sctp, proto_tcp, ConnAddr, ConnId, ConnKey, ConnTable, Dir, NewConn, Sysctls,
    Verdict,
};
use crate::model::{
    Dest, DestConfig, DestShared, Family, ForwardMethod, Service, ServiceKey, ServiceShared,
    Snapshot, TunnelConfig,
};
use crate::sched::{self, SchedConfig, SchedInput, SchedRng, Scheduler, SplitMix64};
use crate::synproxy::{ServerVerdict, SynProxy, SynProxyCounters};
use crate::wire::ipv4::protocol;
use crate::wire::{parse_icmp_quote, Fragment, PacketMeta, L3};
use crate::xmit::icmp::{icmp_error_reply, nat_icmp_inbound, nat_icmp_outbound, IcmpErrorKind};
use crate::xmit::tunnel::{encapsulate, gue_source_port, TunnelParams};
use crate::xmit::{check_mtu, dr::dr_xmit, nat, XmitError};

use defense::DEFENSE_PERIOD_MS;
pub use defense::{Defense, DefenseCounters};
pub use index::ServiceIndex;
pub use pmtu::PathMtus;
pub use stage::{ConfigCell, ConnDump, LbStage};

/// What to do with a packet after the load-balancing stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not load-balanced traffic: the L2/L3 stage decides.
    Pass,
    /// Rewritten; send it towards this address (route, then neighbour).
    Forward(IpAddr),
    /// Drop it; the reason was counted.
    Drop(LbDrop),
}

/// Tables at least this large are looked up a burst at a time first
/// ([`Lb::warm`]); below it they fit the caches.
pub const WARM_MIN_CONNS: usize = 1 << 16;

/// Why the load balancer dropped a packet. Indexes [`LbCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbDrop {
    /// A non-SYN TCP packet to a virtual service with no connection.
    NoConnection = 0,
    /// Its connection's destination was deleted (`expire_nodest_conn=0`).
    DestUnavailable = 1,
    /// The scheduler found no destination and no ICMP could be sent.
    NoDestination = 2,
    /// The connection table is full.
    TableFull = 3,
    /// A later fragment to a virtual service (no ports to look up).
    Fragment = 4,
    /// The rewrite refused the packet (malformed, no headroom...).
    Rewrite = 5,
    /// Too big for the path and may not be fragmented, and no ICMP could
    /// be sent back.
    TooBig = 6,
    /// TTL / hop limit exhausted and no ICMP could be sent back.
    TtlExpired = 7,
    /// No route (no source address) towards a tunnel destination.
    NoRoute = 8,
    /// An ICMP error that failed its checksum or could not be translated.
    BadIcmp = 9,
    /// A new connection's packet dropped by the `drop_packet` defence.
    Defense = 10,
    /// Fragmentation needed about a tunnel packet whose client packet had
    /// no DF: the path MTU was learned, the client is not told (5.5).
    TunnelIcmpNoDf = 11,
    /// Dropped (or rejected) by a DROP/REJECT rule or chain policy.
    Filtered = 12,
    /// A packet of a SYN-proxied connection whose real server has not
    /// answered yet, that the proxy cannot use (a server packet other than
    /// its SYN-ACK, a client FIN or RST, one it could not rewrite).
    SynProxy = 13,
    /// A new FULLNAT connection found no free port on any of the service's
    /// local addresses (or the service has none).
    NoLocalPort = 14,
}

impl LbDrop {
    pub const COUNT: usize = 15;
    pub const ALL: [LbDrop; LbDrop::COUNT] = [
        LbDrop::NoConnection,
        LbDrop::DestUnavailable,
        LbDrop::NoDestination,
        LbDrop::TableFull,
        LbDrop::Fragment,
        LbDrop::Rewrite,
        LbDrop::TooBig,
        LbDrop::TtlExpired,
        LbDrop::NoRoute,
        LbDrop::BadIcmp,
        LbDrop::Defense,
        LbDrop::TunnelIcmpNoDf,
        LbDrop::Filtered,
        LbDrop::SynProxy,
        LbDrop::NoLocalPort,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LbDrop::NoConnection => "no_connection",
            LbDrop::DestUnavailable => "dest_unavailable",
            LbDrop::NoDestination => "no_destination",
            LbDrop::TableFull => "table_full",
            LbDrop::Fragment => "fragment",
            LbDrop::Rewrite => "rewrite",
            LbDrop::TooBig => "too_big",
            LbDrop::TtlExpired => "ttl_expired",
            LbDrop::NoRoute => "no_route",
            LbDrop::BadIcmp => "bad_icmp",
            LbDrop::Defense => "defense",
            LbDrop::TunnelIcmpNoDf => "tunnel_icmp_no_df",
            LbDrop::Filtered => "filtered",
            LbDrop::SynProxy => "synproxy",
            LbDrop::NoLocalPort => "no_local_port",
        }
    }
}

/// A worker's load-balancer counters: written by that worker only (relaxed
/// load + store), read by the control thread.
#[derive(Debug, Default)]
pub struct LbCounters {
    drops: [AtomicU64; LbDrop::COUNT],
    /// Connections created.
    pub created: AtomicU64,
    /// ICMP errors the director sent (unreachable, frag needed, time
    /// exceeded).
    pub icmp_sent: AtomicU64,
    /// ICMP errors translated or forwarded along a connection.
    pub icmp_related: AtomicU64,
    /// Path MTUs learned from fragmentation needed about tunnel packets.
    pub pmtu_learned: AtomicU64,
    /// FULLNAT segments that went without the TOA option: no room in the
    /// TCP header or the MTU.
    pub toa_skipped: AtomicU64,
    /// The worker's reassembly of fragments ([`crate::frag`]).
    pub frag: Arc<crate::frag::FragCounters>,
    /// Entries in the connection table (connections and templates), as of
    /// the last housekeeping (every few milliseconds): a gauge for metrics.
    pub table_entries: AtomicU64,
    /// The SYN proxy's ([`crate::synproxy`]).
    pub synproxy: Arc<SynProxyCounters>,
    /// Connections the `drop_entry` defence removed ([`Lb::defend`]).
    pub defense: DefenseCounters,
}

#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl LbCounters {
    pub fn drops(&self, r: LbDrop) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }
}

/// Where to send from: the routing facts a rewrite needs.
pub trait Egress {
    /// The director's source address and the path MTU towards `dst`
    /// (`None`: no route).
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)>;
    /// The path MTU towards `dst` alone (NAT and DR need no source
    /// address; an implementation with one MTU answers without a lookup).
    #[inline]
    fn mtu(&self, dst: IpAddr) -> u16 {
        self.route(dst).map_or(u16::MAX, |r| r.1)
    }
    /// Records the path MTU towards `dst` an ICMP error reported
    /// ([`PathMtus`]); the default (one fixed MTU) forgets it.
    #[inline]
    fn learn_mtu(&self, _dst: IpAddr, _mtu: u16) {}
    /// The interface a packet to `dst` leaves by (`-o` in the FORWARD
    /// rules); [`crate::rules::NO_PORT`]: not known.
    #[inline]
    fn out_port(&self, _dst: IpAddr) -> u16 {
        crate::rules::NO_PORT
    }
}

/// Start-up settings of a worker's stage.
#[derive(Debug, Clone, Copy)]
pub struct LbSettings {
    /// Connection-table capacity of this worker (entries).
    pub capacity: u32,
    pub sched: SchedConfig,
    /// `pmtu_disc`: copy DF into tunnel headers and send frag-needed. Kept
    /// in step with the snapshot's tunable by [`Lb::set_snapshot`].
    pub pmtu_disc: bool,
    /// Range GUE outer source ports are drawn from.
    pub gue_ports: (u16, u16),
    /// Seed of the worker's random source (twos).
    pub seed: u64,
    /// Memory advice for the connection table's arrays (huge pages).
    pub mem_advice: Option<crate::conn::table::MemAdvice>,
}

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            capacity: 1 << 20,
            sched: SchedConfig::default(),
            pmtu_disc: true,
            gue_ports: (32768, 60999),
            seed: 0x5eed,
            mem_advice: None,
        }
    }
}

/// One service's per-worker scheduling state, in the slot the store gave
/// the service ([`index::Indexed::slot`]).
struct SvcSched {
    /// The compiled service this state was brought up to date with. Weak:
    /// it pins no destination of a deleted service, and while it lives the
    /// address cannot be reused, so pointer equality is identity.
    of: Weak<Service>,
    /// The service itself, across edits (its shared part lives from `-A`
    /// to `-D`): a service deleted and added again gets fresh state, as in
    /// the kernel, even when it reuses the slot.
    owner: Weak<ServiceShared>,
    name: String,
    sched: Option<Box<dyn Scheduler>>,
    /// The destination list the scheduler last saw (addresses of the
    /// shared parts, only compared, and configurations), to tell whether a
    /// changed service changed it.
    seen: Vec<(usize, DestConfig)>,
}

/// One worker's load-balancing stage.
pub struct Lb {
    worker: usize,
    settings: LbSettings,
    snap: Arc<Snapshot>,
    /// By service slot; brought up to date on the first new connection
    /// after its service changed ([`sched_for`]).
    scheds: Vec<Option<SvcSched>>,
    conns: ConnTable,
    /// With several workers: the director-wide templates (the same table
    /// `conns` refers to).
    shared: Option<Arc<SharedTemplates>>,
    rng: SplitMix64,
    ip_id: u16,
    counters: Arc<LbCounters>,
    /// The snapshot's tunables, and the defence state they drive.
    defense: Defense,
    /// `Snapshot::dest_removals` last seen (`expire_nodest_conn` flush).
    removals_seen: u64,
    /// `(protocol, address, port)` of every NAT real server, while
    /// `nat_icmp_send` is on (empty otherwise).
    nat_reals: HashSet<(u8, IpAddr, u16)>,
    /// Tunnel configurations of every tunnel real server, to recognise ICMP
    /// errors about the director's own tunnel packets ([`pmtu`]).
    tunnel_reals: HashMap<IpAddr, [Option<TunnelConfig>; pmtu::CONFIGS_PER_REAL]>,
    /// Every real server's address: its fragmented NAT replies are
    /// reassembled (see [`crate::frag`]).
    reals: HashSet<IpAddr>,
    /// Connection synchronisation, when the daemon wired it ([`sync`]).
    sync: Option<crate::sync::WorkerSync>,
    /// SYN cookies and the proxied connections' offsets.
    synproxy: SynProxy,
    /// The packet rules' verdicts per flow ([`crate::rules::cache`]).
    flow_cache: crate::rules::FlowCache,
    /// The packet rules' verdicts per connection ([`crate::rules::conncache`]).
    conn_verdicts: crate::rules::ConnVerdicts,
    /// Counters the kept verdicts moved in this burst, not yet counted
    /// ([`crate::rules::replays`]; flushed by [`Lb::end_burst`]).
    replays: crate::rules::Replays,
    /// The connection lookup the packet rules made for the packet being
    /// processed ([`filter`]), for the balancer to reuse.
    looked: Option<filter::Looked>,
    /// FULLNAT's ownership and local-address cursor ([`fullnat`]).
    fnat: fullnat::FullNat,
    /// `conns.links()` at the last warm-up: how many connections the
    /// burst before created ([`Lb::warm_parsed`]).
    warm_links: u64,
    /// The burst being warmed ([`Lb::warm_parsed`], [`Lb::warm_next`]).
    warming: Warming,
}

/// How many packets ahead of the one being processed [`Lb::warm_next`]
/// prefetches a bucket word. Not the whole burst's at once: perf showed
/// the chain heads read a few packets later still missing, as if most of
/// 32 prefetches issued together had been dropped.
pub const WARM_BUCKET: usize = 16;
/// How many packets ahead of the one being processed [`Lb::warm_next`]
/// reads a chain's head (whose word [`Lb::warm_parsed`] prefetched) and
/// prefetches its entry.
pub const WARM_AHEAD: usize = 8;
/// How many packets ahead [`Lb::warm_next`] prefetches the second entry
/// of a chain (whose head was prefetched `WARM_AHEAD - WARM_SECOND`
/// packets before).
pub const WARM_SECOND: usize = 4;

/// A burst's lookups as [`Lb::warm_parsed`] found them, by position.
#[derive(Debug, Clone)]
struct Warming {
    /// Each packet's bucket, in the index `index` names.
    bucket: [u32; WARM_BURST],
    /// [`Warming::IN`], [`Warming::OUT`] or [`Warming::NONE`] (no lookup).
    /// Codes rather than `Option<Dir>`: with the `Option`, the matches
    /// took a million-flow packet 17 instructions more (905.3 -> 922.5).
    index: [u8; WARM_BURST],
    /// The chain's head, once [`Lb::warm_next`] read it.
    head: [u32; WARM_BURST],
    /// How many packets are being warmed (0: none).
    n: usize,
    /// Whether the reply index is warmed for packets to virtual addresses.
    creating: bool,
}

impl Warming {
    const NONE: u8 = 0;
    const IN: u8 = 1;
    const OUT: u8 = 2;
}

impl Default for Warming {
    fn default() -> Self {
        Warming {
            bucket: [0; WARM_BURST],
            index: [Warming::NONE; WARM_BURST],
            head: [u32::MAX; WARM_BURST],
            n: 0,
            creating: false,
        }
    }
}

impl std::fmt::Debug for Lb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lb")
            .field("worker", &self.worker)
            .field("generation", &self.snap.generation)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Lb {
    /// A stage for worker `worker` (its statistics slot) with an empty
    /// configuration. `now` is the clock in milliseconds.
    pub fn new(worker: usize, settings: LbSettings, now: u64) -> Lb {
        let conns = ConnTable::with_advice(settings.capacity, None, now, settings.mem_advice);
        let counters = LbCounters::default();
        let synproxy = SynProxy::new(now, Arc::clone(&counters.synproxy));
        Lb {
            worker,
            settings,
            snap: Arc::new(Snapshot::default()),
            scheds: Vec::new(),
            conns,
            shared: None,
            rng: SplitMix64::new(settings.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9)),
            ip_id: (worker as u16).wrapping_mul(7919),
            counters: Arc::new(counters),
            defense: Defense::new(now),
            removals_seen: 0,
            nat_reals: HashSet::new(),
            tunnel_reals: HashMap::new(),
            reals: HashSet::new(),
            sync: None,
            synproxy,
            flow_cache: crate::rules::FlowCache::default(),
            conn_verdicts: crate::rules::ConnVerdicts::default(),
            replays: crate::rules::Replays::new(worker),
            looked: None,
            fnat: fullnat::FullNat::new(),
            warm_links: 0,
            warming: Warming::default(),
        }
    }

    /// Shares persistence templates with the other workers (all workers of
    /// one director get the same table; set before traffic).
    pub fn set_shared_templates(&mut self, shared: Arc<SharedTemplates>) {
        self.conns.set_shared_templates(Arc::clone(&shared));
        self.shared = Some(shared);
    }

    /// The counters, for the control thread.
    pub fn counters(&self) -> Arc<LbCounters> {
        Arc::clone(&self.counters)
    }

    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    pub fn generation(&self) -> u64 {
        self.snap.generation
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Every virtual service address of the current snapshot, and every
    /// FULLNAT local address (answered in ARP/NDP like them).
    pub fn service_addrs(&self) -> Vec<IpAddr> {
        let locals = self.snap.locals.iter().map(|l| l.addr);
        self.snap.index.vips().copied().chain(locals).collect()
    }

    /// Whether `addr` is a virtual service address (answered in ARP/NDP).
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        self.snap.index.is_vip(addr)
    }

    /// Whether `addr` is the address of a real server of the current
    /// snapshot.
    pub fn is_real(&self, addr: &IpAddr) -> bool {
        self.reals.contains(addr)
    }

    /// Whether `proto` to `addr`:`port` is a virtual service of the
    /// current snapshot (the lookup a new connection makes).
    pub fn serves(&self, proto: u8, addr: IpAddr, port: u16) -> bool {
        self.snap.index.find(proto, &addr, port).is_some()
    }

    /// Takes a new configuration (between bursts). Costs the same
    /// whatever the table size: the snapshot carries its packet index, and
    /// a service's scheduler state is brought up to date on its next new
    /// connection ([`sched_for`]): schedulers of services whose name is
    /// unchanged keep their state and see the destination list change; new
    /// or re-scheduled services get fresh schedulers.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        if Arc::ptr_eq(&snap, &self.snap) {
            return;
        }
        if self.conns.timeouts() != snap.timeouts {
            self.conns.set_timeouts(snap.timeouts);
        }
        self.take_tunables(&snap);
        // Pending counts name the old program's counters.
        self.replays.flush(&self.snap.rules);
        self.flow_cache.reset(&snap.rules, &snap.sets);
        self.conn_verdicts
            .reset(&snap.rules, &snap.sets, self.conns.slots());
        if snap.locals.len() != self.snap.locals.len() {
            self.take_locals(&snap);
        }
        self.snap = snap;
    }

    /// The tunables of a new snapshot: the table's switches, `pmtu_disc`,
    /// the NAT real servers `nat_icmp_send` looks for, and the
    /// `expire_nodest_conn` flush when a destination was deleted since the
    /// last snapshot (the kernel's delayed flush work).
    fn take_tunables(&mut self, snap: &Snapshot) {
        let t = snap.tunables;
        if t != self.defense.tunables {
            // A changed mode applies now, as the kernel's sysctl handler
            // re-evaluates the defence level at once.
            self.defense.tunables = t;
            self.defense
                .update(self.conns.capacity() as i64 - self.conns.len() as i64);
        }
        self.settings.pmtu_disc = t.pmtu_disc();
        self.conns.set_sysctls(self.defense.sysctls());
        self.nat_reals.clear();
        if t.nat_icmp_send() {
            for svc in &snap.services {
                let ServiceKey::Addr { protocol, .. } = svc.config.key else {
                    continue;
                };
                for d in &svc.dests {
                    if d.config.method == ForwardMethod::Masq {
                        self.nat_reals
                            .insert((protocol.number(), d.config.addr, d.config.port));
                    }
                }
            }
        }
        self.tunnel_reals.clear();
        self.reals.clear();
        for d in snap.services.iter().flat_map(|s| &s.dests) {
            self.reals.insert(d.config.addr);
            if let ForwardMethod::Tunnel(cfg) = d.config.method {
                let e = self.tunnel_reals.entry(d.config.addr).or_default();
                if !e.contains(&Some(cfg)) {
                    if let Some(free) = e.iter_mut().find(|c| c.is_none()) {
                        *free = Some(cfg);
                    }
                }
            }
        }
        if snap
            .services
            .iter()
            .any(|s| crate::synproxy::applies(s, t.synproxy()))
        {
            self.synproxy.reserve(self.conns.slots());
        }
        if snap.dest_removals != self.removals_seen {
            self.removals_seen = snap.dest_removals;
            if t.expire_nodest_conn() {
                self.conns.flush_unavailable();
            }
        }
    }

    /// Whether the defence modes are in force on this worker now.
    pub fn defense(&self) -> &Defense {
        &self.defense
    }

    /// Housekeeping between bursts: expires at most `budget` connections
    /// and runs the schedulers' garbage collection.
    pub fn housekeeping(&mut self, now: u64, budget: usize) -> usize {
        for s in self.scheds.iter_mut().flatten() {
            if let Some(sch) = s.sched.as_mut() {
                sch.expire(now);
            }
        }
        self.defend(now);
        self.synproxy.housekeeping(now);
        let expired = self.conns.expire(now, budget);
        self.counters
            .table_entries
            .store(self.conns.len() as u64, Ordering::Relaxed);
        expired
    }

    /// Once a second, the kernel's `defense_work`: re-evaluates the
    /// defence modes from this worker's free table entries and, while
    /// `drop_entry` is in force, drops entries at random.
    fn defend(&mut self, now: u64) {
        if now < self.defense.next_check {
            return;
        }
        self.defense.next_check = now + DEFENSE_PERIOD_MS;
        let free = self.conns.capacity() as usize - self.conns.len();
        let secure = self.defense.secure;
        self.defense.update(free as i64);
        if self.defense.secure != secure {
            self.conns.set_sysctls(self.defense.sysctls());
        }
        if self.defense.dropentry {
            let n = (self.conns.capacity() >> 5).max(1) as usize;
            let Lb {
                conns,
                rng,
                defense,
                ..
            } = self;
            let freed = conns.random_drop(n, || rng.next_u32(), now, &mut defense.todrop_counters);
            self.counters.defense.count(freed);
        }
    }

    /// The client endpoint that owns this packet's connection, for
    /// hand-over between workers: the source of a packet to a virtual
    /// service, else the destination (a NAT reply goes to the client). For
    /// an ICMP error, the same rule applied to the packet it quotes (sent by
    /// the director to a client, or by a client to a real server). `None`
    /// for other ICMP and ARP.
    pub fn client_endpoint(&self, frame: &[u8], meta: &PacketMeta) -> Option<(IpAddr, u16)> {
        if meta.l3 == L3::Arp {
            return None;
        }
        if meta.is_icmp_error() {
            let q = parse_icmp_quote(frame, meta).ok()?;
            if let Some(tq) = self.tunnel_quote(frame, meta, &q) {
                return Some((tq.inner.src, tq.inner.sport));
            }
            return Some(if self.snap.index.is_vip(&q.src) {
                (q.dst, q.dport)
            } else {
                (q.src, q.sport)
            });
        }
        if meta.is_icmp() {
            return None;
        }
        if self.snap.index.is_vip(&meta.dst) && !masq::to_local_port(&self.snap, meta) {
            Some((meta.src, meta.sport))
        } else {
            Some((meta.dst, meta.dport))
        }
    }

    fn drop(&self, r: LbDrop) -> Action {
        drop_counted(&self.counters, r)
    }

    /// Warms the connection table for a whole burst ahead of
    /// [`Lb::process`], when the table is too large for the caches: every
    /// packet's lookup ([`Lb::warm_parsed`], then [`Lb::warm_next`] for
    /// each). For a caller that processes the burst afterwards, not a
    /// packet at a time behind the warm-up (tests, benchmarks); smaller
    /// tables skip it (nothing to gain).
    pub fn warm(&mut self, frames: &[&[u8]]) {
        if self.conns.len() < WARM_MIN_CONNS {
            return;
        }
        let mut metas = [Err(crate::wire::ParseError::Truncated); WARM_BURST];
        for (m, f) in metas.iter_mut().zip(frames) {
            *m = crate::wire::parse_packet(f);
        }
        let n = frames.len().min(WARM_BURST);
        self.warm_parsed(&metas[..n]);
        for i in 0..n {
            self.warm_next(i);
        }
    }

    /// Whether the table is large enough for [`Lb::warm`] to pay off.
    #[inline]
    pub fn warms(&self) -> bool {
        self.conns.len() >= WARM_MIN_CONNS
    }

    /// Starts warming the lookups of a burst the caller parsed already
    /// (the worker parses each burst once, for this and for the stack),
    /// when the table is too large for the caches; [`Lb::warm_next`]
    /// carries it on as the packets are processed. Each packet's bucket is
    /// the one its lookup will walk: the inbound index's for a packet to a
    /// virtual address, the reply index's for any other.
    ///
    /// At millions of entries a lookup is three dependent cache misses
    /// (bucket word, entry, the chain's next entry for one packet in
    /// four). Each level is taken a fixed number of packets ahead of the
    /// packet being processed ([`WARM_BUCKET`], [`WARM_AHEAD`],
    /// [`WARM_SECOND`]), so the misses of later packets overlap the work on
    /// earlier ones. Why not level by level over the whole burst before
    /// any packet: each level then waits for its slowest miss with nothing
    /// else to do (perf put a third of the worker's time at a million flows
    /// in those waits). Except while connections are being opened: a new
    /// connection's packet is several times an established one's work, and
    /// taken ahead its lines came too late (measured), so such a burst is
    /// warmed level by level here and [`Lb::warm_next`] has nothing to do.
    #[inline]
    pub fn warm_parsed(&mut self, metas: &[Result<PacketMeta, crate::wire::ParseError>]) {
        self.warming.n = 0;
        if self.conns.len() < WARM_MIN_CONNS {
            return;
        }
        let n = metas.len().min(WARM_BURST);
        let mut lookups = 0u64;
        for (i, m) in metas[..n].iter().enumerate() {
            let (bucket, index) = match m {
                Ok(m)
                    if matches!(m.protocol, protocol::TCP | protocol::UDP | protocol::SCTP)
                        && m.l3 != L3::Arp =>
                {
                    let b = self.conns.bucket_of(&ConnKey::of_packet(m));
                    // `is_vip_v4` by name: through `is_vip` the compiler
                    // kept the test out of line here, a call per packet.
                    let vip = match m.dst {
                        IpAddr::V4(d) => self.snap.index.is_vip_v4(d),
                        IpAddr::V6(_) => self.snap.index.is_vip(&m.dst),
                    };
                    lookups += 1;
                    (b, if vip { Warming::IN } else { Warming::OUT })
                }
                _ => (0, Warming::NONE),
            };
            self.warming.bucket[i] = bucket;
            self.warming.index[i] = index;
        }
        // While a quarter of the packets or more open connections (the
        // last burst's count), a packet to a virtual address is likely to
        // miss its connection and then look its key up in the reply index:
        // that index's bucket and first entry are warmed too. Not for
        // established traffic, whose packets would pay for the lines
        // (1 M flows: 113-117 -> 130-135 ns per packet).
        let links = self.conns.links();
        let created = links.wrapping_sub(std::mem::replace(&mut self.warm_links, links));
        let creating = created.saturating_mul(4) >= lookups && created > 0;
        self.warming.creating = creating;
        if creating {
            // Each level for the whole burst at once, and nothing left for
            // `warm_next`: while connections are being opened, taken a
            // few packets ahead the lines came too late (new UDP
            // connections 265 -> 304 ns per packet in uvs-loop, measured).
            for j in 0..n {
                self.prefetch_bucket_of(j);
            }
            for j in 0..n {
                self.warm_head_of(j);
            }
            for j in 0..n {
                self.warm_second_of(j);
            }
            return;
        }
        self.warming.n = n;
        for j in 0..WARM_BUCKET.min(n) {
            self.prefetch_bucket_of(j);
        }
        for j in 0..WARM_AHEAD.min(n) {
            self.warm_head_of(j);
        }
    }

    /// The bucket word of the burst's packet `j` prefetched (for a packet
    /// to a virtual address while connections are being opened, the reply
    /// index's word at the same bucket as well).
    #[inline(always)]
    fn prefetch_bucket_of(&self, j: usize) {
        let b = self.warming.bucket[j];
        match self.warming.index[j] {
            Warming::IN => {
                self.conns.prefetch_bucket(b, Dir::In);
                if self.warming.creating {
                    self.conns.prefetch_bucket(b, Dir::Out);
                }
            }
            Warming::OUT => self.conns.prefetch_bucket(b, Dir::Out),
            _ => {}
        }
    }

    /// Carries the warm-up [`Lb::warm_parsed`] started on, as the burst's
    /// packet `i` is about to be processed: the chain's head for the
    /// packet [`WARM_AHEAD`] further on, the chain's second entry for the
    /// one [`WARM_SECOND`] further on. Nothing is compared or returned:
    /// the lookups that follow find the lines there or on their way.
    #[inline(always)]
    pub fn warm_next(&mut self, i: usize) {
        let n = self.warming.n;
        if i + WARM_BUCKET < n {
            self.prefetch_bucket_of(i + WARM_BUCKET);
        }
        if i + WARM_AHEAD < n {
            self.warm_head_of(i + WARM_AHEAD);
        }
        if i + WARM_SECOND < n {
            self.warm_second_of(i + WARM_SECOND);
        }
    }

    /// The second entry of the chain of the burst's packet `j` prefetched
    /// (its head was read and prefetched before).
    #[inline(always)]
    fn warm_second_of(&self, j: usize) {
        match self.warming.index[j] {
            Warming::IN => self.conns.warm_second(self.warming.head[j], Dir::In),
            Warming::OUT => self.conns.warm_second(self.warming.head[j], Dir::Out),
            _ => {}
        }
    }

    /// The chain head of the burst's packet `j` (its bucket word was
    /// prefetched), its entry prefetched; for a packet to a virtual
    /// address while connections are being opened, the reply index's
    /// first entry at the same bucket as well.
    #[inline(always)]
    fn warm_head_of(&mut self, j: usize) {
        let b = self.warming.bucket[j];
        self.warming.head[j] = match self.warming.index[j] {
            Warming::IN => {
                if self.warming.creating {
                    self.conns.warm_head(b, Dir::Out);
                }
                self.conns.warm_head(b, Dir::In)
            }
            Warming::OUT => self.conns.warm_head(b, Dir::Out),
            _ => return,
        };
    }

    /// The load-balancing decision for one parsed packet; see the module
    /// docs. `meta` must describe `buf` as it is.
    #[inline]
    pub fn process<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        eg: &E,
    ) -> Action {
        self.process_marked(buf, meta, 0, now, eg)
    }

    /// [`Lb::process`] for a packet carrying firewall mark `mark` (set by
    /// mangle PREROUTING rules, [`crate::rules`]): a packet without a
    /// connection whose non-zero mark names an fwmark service of its family
    /// goes to that service, before the address lookup (as the kernel's
    /// `ip_vs_service_find`).
    pub fn process_marked<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        mark: u32,
        now: u64,
        eg: &E,
    ) -> Action {
        if meta.l3 == L3::Arp {
            return Action::Pass;
        }
        if meta.is_icmp_error() {
            return self.related_icmp(buf, meta, now, eg);
        }
        let proto = meta.protocol;
        if !matches!(proto, protocol::TCP | protocol::UDP | protocol::SCTP) {
            return Action::Pass;
        }
        if meta.fragment == Fragment::Later {
            return if self.snap.index.is_vip(&meta.dst) {
                self.drop(LbDrop::Fragment)
            } else {
                Action::Pass
            };
        }
        let flags = state_input(buf.data(), meta);
        // Hashed once: both indexes, and the insertion of a connection this
        // packet creates, use the same bucket.
        // The packet rules may have looked it up already ([`filter`]).
        let (key, known) = self.looked_up(meta, filter::data_at(buf));
        let found_in = match known {
            Some(f) => f.and_then(|(id, d)| (d == Dir::In).then_some(id)),
            None => self.conns.lookup_in_hashed(&key),
        };
        let found_out = |lb: &Self| match known {
            Some(f) => f.map(|(id, _)| id),
            None => lb.conns.lookup_out_hashed(&key),
        };
        if let Some(id) = found_in {
            if self.conns.get(id).flags() & cflags::SYNPROXY != 0 {
                if let Some(a) = self.proxied_client(id, buf, meta, now, eg) {
                    return a;
                }
            }
            match self.conns.on_packet(id, Dir::In, flags, now) {
                Verdict::Forward => {
                    self.sync_note(id);
                    return self.xmit_in(id, buf, meta, eg);
                }
                Verdict::Drop => return self.drop(LbDrop::DestUnavailable),
                Verdict::Expired => {}
            }
        } else if let Some(id) = found_out(self) {
            if self.conns.get(id).flags() & cflags::SYNPROXY != 0 {
                match self.synproxy.server_packet(id, buf, meta) {
                    ServerVerdict::ToClient => {}
                    ServerVerdict::AckToServer => {
                        // The server's SYN-ACK, then the ACK it gets back.
                        self.conns.on_packet(id, Dir::Out, flags, now);
                        self.conns
                            .on_packet(id, Dir::In, proto_tcp::flags::ACK, now);
                        return Action::Forward(meta.src);
                    }
                    ServerVerdict::Drop => return self.drop(LbDrop::SynProxy),
                }
            }
            return match self.conns.on_packet(id, Dir::Out, flags, now) {
                Verdict::Forward => self.xmit_out(id, buf, meta, eg),
                Verdict::Drop => self.drop(LbDrop::DestUnavailable),
                Verdict::Expired => Action::Pass,
            };
        }
        self.new_connection(buf, meta, mark, now, eg, &key)
    }

    /// Schedules a packet without a connection. Always inlined into its
    /// two callers, `process_marked` and the lane's `Lb::lane_new`: the
    /// general path keeps it in line as with one caller, and the lane's
    /// copy sits in the stack's out-of-line `lane_general`, away from the
    /// established packets' loop.
    #[inline(always)]
    fn new_connection<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        mark: u32,
        now: u64,
        eg: &E,
        key: &HashedKey,
    ) -> Action {
        let proto = meta.protocol;
        // Disjoint borrows of the stage's parts: no reference count is
        // touched for the snapshot, the service or the destination.
        let Lb {
            snap,
            scheds,
            conns,
            shared,
            rng,
            worker,
            counters,
            settings,
            ip_id,
            defense,
            synproxy,
            fnat,
            ..
        } = self;
        let family = if meta.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        };
        // A match, not `Option::or_else`: its closure stayed out of line
        // in the lane's copy of this function (45 instructions per new
        // connection).
        let found = match snap.index.find_mark(mark, family) {
            Some(f) => Some(f),
            None => snap.index.find(proto, &meta.dst, meta.dport),
        };
        let Some(found) = found else {
            return self.no_service(buf, meta, eg);
        };
        // A proxied service answers SYNs itself; only an ACK with a valid
        // cookie schedules (crate::synproxy).
        let mut proxied_ack = None;
        if proto == protocol::TCP
            && crate::synproxy::applies(&found.service, defense.tunables.synproxy())
        {
            if SynProxy::is_syn(meta) {
                return match synproxy.answer_syn(buf, meta) {
                    Ok(()) => Action::Forward(meta.src),
                    Err(_) => drop_counted(counters, LbDrop::SynProxy),
                };
            }
            proxied_ack = SynProxy::is_ack(meta)
                .then(|| synproxy.check_ack(buf.data(), meta))
                .flatten();
            if proxied_ack.is_none() {
                // Not the proxy's: what the local stack answers (a reset).
                return stray_tcp(counters, meta);
            }
        }
        if proto == protocol::TCP
            && proxied_ack.is_none()
            && !proto_tcp::may_schedule(meta.tcp_flags, defense.tunables.sloppy_tcp())
        {
            return stray_tcp(counters, meta);
        }
        if proto == protocol::SCTP
            && !sctp_event(buf.data(), meta)
                .is_some_and(|e| proto_sctp::may_schedule(e, defense.tunables.sloppy_sctp()))
        {
            return drop_counted(counters, LbDrop::NoConnection);
        }
        if defense.todrop() {
            return drop_counted(counters, LbDrop::Defense);
        }
        let worker = *worker;
        let svc = &found.service;
        let (svc_port, fwmark) = match svc.config.key {
            ServiceKey::Addr { port, .. } => (port, false),
            ServiceKey::Fwmark { .. } => (0, true),
        };
        let src = ConnAddr::from(meta.src);
        let dst = ConnAddr::from(meta.dst);
        // The ACK that completes a proxied handshake becomes the server's
        // SYN: the entry starts as a SYN starts it.
        let flags = match proxied_ack {
            Some(_) => proto_tcp::flags::SYN,
            None => state_input(buf.data(), meta),
        };
        let one_packet = svc.config.one_packet && proto == protocol::UDP;
        let mut input = SchedInput {
            src: meta.src,
            src_port: meta.sport,
            dst: meta.dst,
            protocol: proto,
            now,
            rng,
        };
        let sched = sched_for(scheds, found, &settings.sched, shared.is_some());

        // The destination (and controlling template) for the new connection.
        let (control, method, daddr, dport, dest): (
            Option<ConnId>,
            ForwardMethod,
            ConnAddr,
            u16,
            &Arc<DestShared>,
        ) = if let Some(timeout) = svc.config.persistent {
            let tk = persist::template_key(&svc.config, proto, src, dst, meta.dport);
            let t = match conns.find_template(&tk.key) {
                Some(t) => t,
                None => {
                    let Some((i, sref)) = template_dest(
                        shared.as_deref(),
                        &tk.key,
                        &svc.dests,
                        conns.sysctls(),
                        sched.map(|s| &mut **s),
                        &mut input,
                    ) else {
                        return unreachable(counters, buf, meta);
                    };
                    let d = &svc.dests[i];
                    let tdport = if tk.dport_from_dest { d.config.port } else { 0 };
                    match conns.create_template(
                        &tk.key,
                        ConnAddr::from(d.config.addr),
                        tdport,
                        d.config.method,
                        &d.shared,
                        Some(&svc.shared),
                        timeout,
                        now,
                        sref,
                    ) {
                        Ok(t) => t,
                        Err(_) => return drop_counted(counters, LbDrop::TableFull),
                    }
                }
            };
            // The template's destination: it may be one a newer snapshot
            // no longer lists (persistent clients keep a quiesced server).
            let c = conns.get(t);
            let Some(d) = c.dest() else {
                return unreachable(counters, buf, meta);
            };
            let dport = persist::persistent_conn_dport(svc_port, meta.dport, d.port);
            // Found by address in the service to borrow it from the
            // snapshot rather than clone the template's reference.
            let (m, a) = (*c.method(), c.real().0);
            match svc.dests.iter().find(|x| Arc::ptr_eq(&x.shared, d)) {
                Some(x) => (Some(t), m, a, dport, &x.shared),
                None => return drop_counted(counters, LbDrop::DestUnavailable),
            }
        } else {
            if svc_port == 0 && !fwmark {
                // A non-persistent port-0 service never schedules.
                return unreachable(counters, buf, meta);
            }
            let Some(i) = sched.and_then(|s| s.schedule(&svc.dests, &mut input)) else {
                return unreachable(counters, buf, meta);
            };
            let d = &svc.dests[i];
            let dport = if d.config.port == 0 {
                meta.dport
            } else {
                d.config.port
            };
            (
                None,
                d.config.method,
                ConnAddr::from(d.config.addr),
                dport,
                &d.shared,
            )
        };

        let mut created = None;
        // kube-proxy's masquerading: a NAT connection the nat chains
        // masquerade goes as FULLNAT from the director's address (masq).
        // `matches!`, not `==`: the derived `PartialEq` of a method (a
        // tunnel's carries its configuration) stayed a call per test.
        let masq =
            if matches!(method, ForwardMethod::Masq) && snap.nat.has_postrouting(meta.is_ipv6()) {
                let out = eg.route(daddr.to_ip()).map(|r| r.0);
                match masq::masquerade(snap, meta, mark, daddr.to_ip(), dport, out, worker) {
                    Ok(m) => m,
                    Err(_) => return drop_counted(counters, LbDrop::NoLocalPort),
                }
            } else {
                None
            };
        let method = if masq.is_some() {
            ForwardMethod::FullNat
        } else {
            method
        };
        let fullnat = matches!(method, ForwardMethod::FullNat);
        let mut lip4 = 0;
        let local = if let Some(lid) = masq {
            match conns.take_local_port(lid) {
                Some(p) => Some((lid, p)),
                None => return drop_counted(counters, LbDrop::NoLocalPort),
            }
        } else if fullnat {
            match fullnat::pick_local(conns, fnat, svc) {
                Some((l, word)) => {
                    lip4 = word;
                    Some(l)
                }
                None => return drop_counted(counters, LbDrop::NoLocalPort),
            }
        } else {
            None
        };
        if one_packet && !fullnat {
            conns.one_packet(dest, control, now);
        } else {
            let n = NewConn {
                proto,
                client: src,
                cport: meta.sport,
                vaddr: dst,
                vport: meta.dport,
                daddr,
                dport,
                method,
                dest,
                svc: Some(&svc.shared),
                control,
                local,
            };
            match conns.create_hashed(&n, flags, now, key) {
                Ok(id) if fullnat => {
                    bump(&counters.created);
                    let n = fullnat::Created {
                        id,
                        local,
                        lip4,
                        real: (daddr, dport),
                        svc: &svc.shared,
                        dest,
                        now,
                    };
                    return fullnat::create_in(conns, fnat, &n, buf, meta, eg, worker, counters);
                }
                Ok(id) => created = Some(id),
                Err(_) => {
                    if let Some((lid, lport)) = local {
                        conns.put_back_local_port(lid, lport);
                    }
                    return drop_counted(counters, LbDrop::TableFull);
                }
            }
        }
        svc.shared.stats.slot(worker).conn();
        dest.stats.slot(worker).conn();
        bump(&counters.created);
        let out = Outbound {
            method,
            daddr: daddr.to_ip(),
            dport,
            svc: Some(&svc.shared),
            dest,
        };
        if let (Some((ack, hs)), Some(id)) = (proxied_ack, created) {
            conns.mark_synproxy(id);
            if synproxy.open(id, buf, meta, &ack, hs).is_err() {
                return drop_counted(counters, LbDrop::SynProxy);
            }
            let Ok(syn) = crate::wire::parse_packet(buf.data()) else {
                return drop_counted(counters, LbDrop::SynProxy);
            };
            return out.send(buf, &syn, worker, eg, settings, ip_id, counters);
        }
        out.send(buf, meta, worker, eg, settings, ip_id, counters)
    }

    /// A client packet of SYN-proxied connection `id`: `None` when it goes
    /// on as any packet of the connection (its ACK translated), else what
    /// became of it before the real server answered (sent again as the
    /// server's SYN, or dropped).
    fn proxied_client<B: PacketBuf, E: Egress>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        eg: &E,
    ) -> Option<Action> {
        match self.synproxy.client_packet(id, buf, meta) {
            Ok(true) => None,
            Ok(false) => Some(match crate::wire::parse_packet(buf.data()) {
                Ok(syn) => self.xmit_in(id, buf, &syn, eg),
                Err(_) => self.drop(LbDrop::SynProxy),
            }),
            Err(_) => {
                if meta.tcp_flags & proto_tcp::flags::RST != 0 {
                    self.conns.on_packet(id, Dir::In, meta.tcp_flags, now);
                }
                Some(self.drop(LbDrop::SynProxy))
            }
        }
    }

    /// A packet that matched no connection and no service: passed on,
    /// except that with `nat_icmp_send` a TCP (not RST) or UDP packet from
    /// a NAT real server's address and port is answered with ICMP port
    /// unreachable, as the kernel's `ip_vs_out` does for replies whose
    /// connection is gone.
    fn no_service<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        eg: &E,
    ) -> Action {
        if self.nat_reals.is_empty()
            || (meta.protocol == protocol::TCP && meta.tcp_flags & proto_tcp::flags::RST != 0)
            || (meta.protocol == protocol::SCTP
                && sctp_event(buf.data(), meta) == Some(proto_sctp::event::ABORT))
            || !self
                .nat_reals
                .contains(&(meta.protocol, meta.src, meta.sport))
        {
            return Action::Pass;
        }
        let Some((from, _)) = eg.route(meta.src) else {
            return Action::Pass;
        };
        match icmp_error_reply(buf, meta, IcmpErrorKind::PortUnreachable, from) {
            Ok(()) => {
                bump(&self.counters.icmp_sent);
                Action::Forward(meta.src)
            }
            Err(_) => self.drop(LbDrop::NoConnection),
        }
    }

    /// A client packet along connection `id`.
    fn xmit_in<B: PacketBuf, E: Egress>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
        eg: &E,
    ) -> Action {
        let Lb {
            conns,
            settings,
            ip_id,
            worker,
            counters,
            fnat,
            ..
        } = self;
        let c = conns.get(id);
        let method = *c.method();
        if method == ForwardMethod::FullNat {
            return fullnat::xmit_in(conns, fnat, id, buf, meta, eg, *worker, counters);
        }
        let (daddr, dport) = c.real();
        let Some(dest) = c.dest() else {
            return drop_counted(counters, LbDrop::DestUnavailable);
        };
        let out = Outbound {
            method,
            daddr: daddr.to_ip(),
            dport,
            svc: c.service(),
            dest,
        };
        out.send(buf, meta, *worker, eg, settings, ip_id, counters)
    }

    /// A NAT reply along connection `id`: back to the client as the VIP.
    /// One whose TTL runs out here gets time exceeded back to the real
    /// server, from the director's address toward it (the kernel's
    /// `ip_forward` answers before IPVS sees the reply).
    fn xmit_out<B: PacketBuf, E: Egress>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
        eg: &E,
    ) -> Action {
        let c = self.conns.get(id);
        if c.local().is_some() {
            let (conns, fnat) = (&mut self.conns, &self.fnat);
            return fullnat::xmit_out(conns, fnat, id, buf, meta, self.worker, &self.counters);
        }
        let (vaddr, vport) = c.virt();
        let len = u64::from(meta.ip_len);
        match nat::nat_outbound(buf, meta, vaddr.to_ip(), vport) {
            Ok(()) => {
                if let Some(s) = c.service() {
                    s.stats.slot(self.worker).outbound(len);
                }
                if let Some(d) = c.dest() {
                    d.stats.slot(self.worker).outbound(len);
                }
                Action::Forward(meta.dst)
            }
            Err(XmitError::TtlExpired) => {
                let from = eg.route(meta.src).map(|r| r.0);
                match from.map(|f| icmp_error_reply(buf, meta, IcmpErrorKind::TimeExceeded, f)) {
                    Some(Ok(())) => {
                        bump(&self.counters.icmp_sent);
                        Action::Forward(meta.src)
                    }
                    _ => drop_counted(&self.counters, LbDrop::TtlExpired),
                }
            }
            Err(_) => drop_counted(&self.counters, LbDrop::Rewrite),
        }
    }

    /// ICMP errors related to a connection (5.5).
    fn related_icmp<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        eg: &E,
    ) -> Action {
        let Ok(q) = parse_icmp_quote(buf.data(), meta) else {
            return Action::Pass;
        };
        if let Some(a) = self.tunnel_error(buf, meta, &q, eg) {
            return a;
        }
        if !matches!(q.protocol, protocol::TCP | protocol::UDP | protocol::SCTP) {
            return Action::Pass;
        }
        // From the client side: the quote is a packet VIP -> client.
        let inbound = ConnKey::answering_quote(&q);
        let found = match self.conns.lookup_in(&inbound) {
            None if self.defense.tunables.schedule_icmp() => {
                match self.schedule_from_icmp(&q, &inbound, now) {
                    Ok(id) => id,
                    Err(a) => return a,
                }
            }
            found => found,
        };
        if let Some(id) = found {
            let c = self.conns.get(id);
            count_icmp(c, self.worker, meta, Dir::In);
            let method = *c.method();
            let (daddr, dport) = c.real();
            let daddr = daddr.to_ip();
            let r = match method {
                ForwardMethod::Masq => nat_icmp_inbound(buf, meta, &q, daddr, dport),
                ForwardMethod::FullNat => {
                    let to = fullnat::icmp_to_server(&self.conns, &self.fnat, id, buf, meta, &q);
                    return match to {
                        Ok(rs) => {
                            bump(&self.counters.icmp_related);
                            Action::Forward(rs)
                        }
                        Err(_) => self.drop(LbDrop::BadIcmp),
                    };
                }
                ForwardMethod::Route => dr_xmit(buf, meta),
                ForwardMethod::Tunnel(cfg) => match eg.route(daddr) {
                    Some((src, mtu)) => {
                        self.ip_id = self.ip_id.wrapping_add(1);
                        let p = TunnelParams {
                            config: cfg,
                            src,
                            dst: daddr,
                            ident: self.ip_id,
                            gue_sport: self.settings.gue_ports.0,
                            mtu,
                            pmtu_disc: self.settings.pmtu_disc,
                            inner_csum_partial: false,
                        };
                        encapsulate(buf, meta, &p)
                    }
                    None => return self.drop(LbDrop::NoRoute),
                },
            };
            return match r {
                Ok(()) => {
                    bump(&self.counters.icmp_related);
                    Action::Forward(daddr)
                }
                Err(_) => self.drop(LbDrop::BadIcmp),
            };
        }
        // From a real server: the quote is a packet client -> real server.
        let outbound = ConnKey::answering_quote(&q);
        if let Some(id) = self.conns.lookup_out(&outbound) {
            count_icmp(self.conns.get(id), self.worker, meta, Dir::Out);
            let (vaddr, vport) = self.conns.get(id).virt();
            let r = if self.conns.get(id).local().is_some() {
                fullnat::icmp_to_client(&self.conns, &self.fnat, id, buf, meta, &q)
            } else {
                nat_icmp_outbound(buf, meta, &q, vaddr.to_ip(), vport).map(|()| meta.dst)
            };
            return match r {
                Ok(to) => {
                    bump(&self.counters.icmp_related);
                    Action::Forward(to)
                }
                Err(_) => self.drop(LbDrop::BadIcmp),
            };
        }
        if fullnat::is_local(&self.snap, &q.src) {
            return self.drop(LbDrop::NoConnection);
        }
        Action::Pass
    }

    /// `schedule_icmp`: an ICMP error from the client side quoting a packet
    /// VIP -> client of a connection this worker does not have (another
    /// director of an ECMP group had it, or it expired) is scheduled as
    /// the kernel's `ip_vs_in_icmp` does: the service is the quote's
    /// source, the client its destination, and the new connection carries
    /// the error to the real server. `Ok(None)`: no such service (the
    /// caller goes on); `Err`: no destination (the error is dropped, never
    /// answered) or the table is full. UVS schedules only non-persistent,
    /// non-one-packet services this way; the others pass (kernel
    /// difference). The entry starts in the state a flagless packet gives
    /// (TCP CLOSE, UDP), so it lives for that state's timeout.
    fn schedule_from_icmp(
        &mut self,
        q: &crate::wire::IcmpQuote,
        inbound: &ConnKey,
        now: u64,
    ) -> Result<Option<ConnId>, Action> {
        let Lb {
            snap,
            scheds,
            conns,
            rng,
            worker,
            counters,
            settings,
            shared,
            ..
        } = self;
        let Some(found) = snap.index.find(q.protocol, &q.src, q.sport) else {
            return Ok(None);
        };
        let svc = &found.service;
        let svc_port = match svc.config.key {
            ServiceKey::Addr { port, .. } => port,
            ServiceKey::Fwmark { .. } => 0,
        };
        if svc.config.persistent.is_some() || svc.config.one_packet || svc_port == 0 {
            return Ok(None);
        }
        let mut input = SchedInput {
            src: q.dst,
            src_port: q.dport,
            dst: q.src,
            protocol: q.protocol,
            now,
            rng,
        };
        let Some(i) = sched_for(scheds, found, &settings.sched, shared.is_some())
            .and_then(|s| s.schedule(&svc.dests, &mut input))
        else {
            return Err(drop_counted(counters, LbDrop::NoDestination));
        };
        let d = &svc.dests[i];
        let n = NewConn {
            proto: q.protocol,
            client: inbound.src,
            cport: inbound.sport,
            vaddr: inbound.dst,
            vport: inbound.dport,
            daddr: ConnAddr::from(d.config.addr),
            dport: if d.config.port == 0 {
                q.sport
            } else {
                d.config.port
            },
            method: d.config.method,
            dest: &d.shared,
            svc: Some(&svc.shared),
            control: None,
            local: None,
        };
        let key = conns.hashed(*inbound);
        // SCTP: the ERROR event, which takes NONE to CLOSED as no flags
        // take TCP to CLOSE.
        let input = if q.protocol == protocol::SCTP {
            proto_sctp::event::ERROR
        } else {
            0
        };
        let id = conns
            .create_hashed(&n, input, now, &key)
            .map_err(|_| drop_counted(counters, LbDrop::TableFull))?;
        svc.shared.stats.slot(*worker).conn();
        d.shared.stats.slot(*worker).conn();
        bump(&counters.created);
        Ok(Some(id))
    }

    /// Rows of `ipvsadm -L -c` for this worker's shard.
    pub fn connections(&self, now: u64) -> impl Iterator<Item = crate::model::ConnEntry> + '_ {
        self.conns.iter_entries(now)
    }

    /// The rows of entry slots `start..start + n` (a piece of a listing);
    /// returns where the next piece starts, `None` at the end.
    pub fn connections_piece(
        &self,
        start: usize,
        n: usize,
        now: u64,
        out: &mut Vec<crate::model::ConnEntry>,
    ) -> Option<usize> {
        let end = start.saturating_add(n).min(self.conns.slots());
        out.extend(self.conns.entries_in(start..end, now));
        (end < self.conns.slots()).then_some(end)
    }
}

/// The scheduler of the service `found`, brought up to date with it if
/// the service changed since this worker last scheduled for it: the same
/// work the kernel does on `-E`/`-a`/`-e`/`-d`, for that service only.
/// In line, the test that it is up to date (every new connection's);
/// out of line, the update ([`sched_refresh`], once per service change).
#[inline(always)]
fn sched_for<'a>(
    scheds: &'a mut Vec<Option<SvcSched>>,
    found: &index::Indexed,
    cfg: &SchedConfig,
    share_locality: bool,
) -> Option<&'a mut Box<dyn Scheduler>> {
    let slot = found.slot as usize;
    let current = scheds
        .get(slot)
        .and_then(Option::as_ref)
        .is_some_and(|s| std::ptr::eq(s.of.as_ptr(), Arc::as_ptr(&found.service)));
    if !current {
        sched_refresh(scheds, found, cfg, share_locality);
    }
    scheds[slot].as_mut().and_then(|s| s.sched.as_mut())
}

/// [`sched_for`]'s update of the scheduler state of the service `found`
/// (its slot made if new), which changed since this worker last
/// scheduled for it.
#[cold]
#[inline(never)]
fn sched_refresh(
    scheds: &mut Vec<Option<SvcSched>>,
    found: &index::Indexed,
    cfg: &SchedConfig,
    share_locality: bool,
) {
    let slot = found.slot as usize;
    if scheds.len() <= slot {
        scheds.resize_with(slot + 1, || None);
    }
    let svc = &found.service;
    let entry = &mut scheds[slot];
    {
        let c = &svc.config;
        let seen: Vec<(usize, DestConfig)> = svc
            .dests
            .iter()
            .map(|d| (Arc::as_ptr(&d.shared) as usize, d.config.clone()))
            .collect();
        match entry {
            Some(s)
                if std::ptr::eq(s.owner.as_ptr(), Arc::as_ptr(&svc.shared))
                    && s.name == c.scheduler
                    && s.sched.is_some() =>
            {
                if let Some(sch) = s.sched.as_mut() {
                    sch.set_flags(c.sched_flags);
                    if s.seen != seen {
                        sch.update(&svc.dests);
                    }
                }
                s.seen = seen;
                s.of = Arc::downgrade(svc);
            }
            _ => {
                let mut sch = sched::new_with(&c.scheduler, c.sched_flags, cfg).ok();
                if let Some(s) = sch.as_mut() {
                    // Several workers share one locality table per
                    // service, as the kernel's CPUs do.
                    if share_locality && s.uses_locality() {
                        s.share_locality(svc.shared.locality());
                    }
                    s.update(&svc.dests);
                }
                *entry = Some(SvcSched {
                    of: Arc::downgrade(svc),
                    owner: Arc::downgrade(&svc.shared),
                    name: c.scheduler.clone(),
                    sched: sch,
                    seen,
                });
            }
        }
    }
}

/// The destination (an index in `dests`) of a new template for `key`, and
/// with several workers its reference to the director-wide template: the
/// destination another worker's template names, else the scheduler's
/// choice, published for the others (and if another worker published first
/// at the same instant, its choice). `None`: no destination.
fn template_dest(
    shared: Option<&SharedTemplates>,
    key: &ConnKey,
    dests: &[Dest],
    sysctls: &Sysctls,
    sched: Option<&mut (dyn Scheduler + 'static)>,
    input: &mut SchedInput<'_>,
) -> Option<(usize, Option<SharedRef>)> {
    if let Some(found) = shared.and_then(|st| persist::adopt_shared(st, key, dests, sysctls)) {
        return Some((found.1, Some(found.0)));
    }
    let i = sched?.schedule(dests, input)?;
    let Some(st) = shared else {
        return Some((i, None));
    };
    let d = &dests[i].config;
    let Some(r) = st.install(key, ConnAddr::from(d.addr), d.port) else {
        return Some((i, None));
    };
    match persist::shared_dest(&r, dests) {
        Some(j) => Some((j, Some(r))),
        None => {
            st.release(r.slot);
            Some((i, None))
        }
    }
}

/// The SCTP event of an SCTP packet ([`proto_sctp::event`]); `None` when
/// it carries no chunk.
fn sctp_event(frame: &[u8], meta: &PacketMeta) -> Option<u8> {
    frame
        .get(usize::from(meta.l4_offset)..meta.l3_end())
        .and_then(proto_sctp::event)
}

/// What the connection table's state machine reads of a packet: TCP's flag
/// byte, SCTP's event, nothing for UDP. An SCTP packet without a chunk
/// counts as DATA (the kernel leaves state and timer as they are there; a
/// difference of no consequence, docs/reference/sctp.md).
#[inline]
fn state_input(frame: &[u8], meta: &PacketMeta) -> u8 {
    match meta.protocol {
        protocol::TCP => meta.tcp_flags,
        protocol::SCTP => sctp_event(frame, meta).unwrap_or(proto_sctp::event::DATA),
        _ => 0,
    }
}

/// An ICMP error related to connection `c` counts in its service's and
/// destination's packet and byte counters, in the direction it travels,
/// as the kernel's `ip_vs_in_icmp` / `handle_response_icmp` count it
/// (before they transmit it).
fn count_icmp(c: &crate::conn::Conn, worker: usize, meta: &PacketMeta, dir: Dir) {
    let len = u64::from(meta.ip_len);
    let (svc, dest) = (c.service(), c.dest());
    match dir {
        Dir::In => {
            if let Some(s) = svc {
                s.stats.slot(worker).inbound(len);
            }
            if let Some(d) = dest {
                d.stats.slot(worker).inbound(len);
            }
        }
        Dir::Out => {
            if let Some(s) = svc {
                s.stats.slot(worker).outbound(len);
            }
            if let Some(d) = dest {
                d.stats.slot(worker).outbound(len);
            }
        }
    }
}

/// A TCP segment to a service that may not start a connection (not a SYN,
/// or an ACK without a valid cookie) and has none: the kernel passes it to
/// the local stack, which has no socket and answers with a reset. A reset
/// itself gets nothing (dropped, counted); any other segment is passed on
/// to the L2/L3 stage, which sends the reset within its answer budget.
fn stray_tcp(counters: &LbCounters, meta: &PacketMeta) -> Action {
    if meta.tcp_flags & proto_tcp::flags::RST != 0 {
        return drop_counted(counters, LbDrop::NoConnection);
    }
    Action::Pass
}

fn drop_counted(counters: &LbCounters, r: LbDrop) -> Action {
    bump(&counters.drops[r as usize]);
    Action::Drop(r)
}

/// No destination: ICMP port unreachable from the VIP to the client (4.9),
/// never a TCP reset.
fn unreachable<B: PacketBuf>(counters: &LbCounters, buf: &mut B, meta: &PacketMeta) -> Action {
    match icmp_error_reply(buf, meta, IcmpErrorKind::PortUnreachable, meta.dst) {
        Ok(()) => {
            bump(&counters.icmp_sent);
            Action::Forward(meta.src)
        }
        Err(_) => drop_counted(counters, LbDrop::NoDestination),
    }
}

/// Where a client packet goes: a connection's (or a one-packet flow's)
/// forwarding method, real server and statistics owners.
struct Outbound<'a> {
    method: ForwardMethod,
    daddr: IpAddr,
    dport: u16,
    svc: Option<&'a Arc<crate::model::ServiceShared>>,
    dest: &'a DestShared,
}

impl Outbound<'_> {
    /// Rewrites and counts the packet, or answers with ICMP where IPVS does.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn send<B: PacketBuf, E: Egress>(
        &self,
        buf: &mut B,
        meta: &PacketMeta,
        worker: usize,
        eg: &E,
        settings: &LbSettings,
        ip_id: &mut u16,
        counters: &LbCounters,
    ) -> Action {
        // Counted before the transmit, whatever becomes of the packet, as
        // the kernel's `ip_vs_in_stats` before `packet_xmit` (a SYN whose
        // TTL runs out counts too).
        let len = u64::from(meta.ip_len);
        if let Some(s) = self.svc {
            s.stats.slot(worker).inbound(len);
        }
        self.dest.stats.slot(worker).inbound(len);
        let r = rewrite_in(
            buf,
            meta,
            &self.method,
            self.daddr,
            self.dport,
            eg,
            settings,
            ip_id,
        );
        match r {
            Ok(()) => Action::Forward(self.daddr),
            Err(e) => refused(counters, buf, meta, e),
        }
    }
}

/// Rewrites a client packet for `method` towards `daddr:dport`, with the
/// MTU check of the path (5.4). Always inlined, as the lane's
/// `lane_xmit_in` runs it: out of line its call, frame and match cost a
/// new connection about 40 instructions.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rewrite_in<B: PacketBuf, E: Egress>(
    buf: &mut B,
    meta: &PacketMeta,
    method: &ForwardMethod,
    daddr: IpAddr,
    dport: u16,
    eg: &E,
    settings: &LbSettings,
    ip_id: &mut u16,
) -> Result<(), XmitError> {
    match method {
        ForwardMethod::Masq => {
            check_mtu(meta, eg.mtu(daddr))?;
            nat::nat_inbound(buf, meta, daddr, dport)
        }
        // FULLNAT needs its connection's local port: `fullnat::xmit_in`.
        ForwardMethod::FullNat => Err(XmitError::UnsupportedProtocol),
        ForwardMethod::Route => {
            check_mtu(meta, eg.mtu(daddr))?;
            dr_xmit(buf, meta)
        }
        ForwardMethod::Tunnel(cfg) => tunnel_in(buf, meta, cfg, daddr, eg, settings, ip_id),
    }
}

/// [`rewrite_in`] for a tunnel: the encapsulation toward `daddr`, from the
/// source address and with the MTU of its route. Always inlined: the fast
/// lane (`lane::lane_xmit_in`) runs the same code in line.
#[inline(always)]
fn tunnel_in<B: PacketBuf, E: Egress>(
    buf: &mut B,
    meta: &PacketMeta,
    cfg: &crate::model::TunnelConfig,
    daddr: IpAddr,
    eg: &E,
    settings: &LbSettings,
    ip_id: &mut u16,
) -> Result<(), XmitError> {
    let (src, mtu) = eg.route(daddr).ok_or(XmitError::NoRoute)?;
    *ip_id = ip_id.wrapping_add(1);
    let flow = (u32::from(meta.sport) << 16 | u32::from(meta.dport)).wrapping_mul(0x9e37_79b1);
    let p = TunnelParams {
        config: *cfg,
        src,
        dst: daddr,
        ident: *ip_id,
        gue_sport: gue_source_port(flow, settings.gue_ports.0, settings.gue_ports.1),
        mtu,
        pmtu_disc: settings.pmtu_disc,
        inner_csum_partial: false,
    };
    encapsulate(buf, meta, &p)
}

/// A rewrite refused the packet: answer with ICMP where IPVS does
/// (frag needed / packet too big, time exceeded), else count the drop.
fn refused<B: PacketBuf>(
    counters: &LbCounters,
    buf: &mut B,
    meta: &PacketMeta,
    e: XmitError,
) -> Action {
    let (kind, reason, src) = match e {
        XmitError::TooBig { mtu } => (
            IcmpErrorKind::TooBig { mtu },
            LbDrop::TooBig,
            Some(meta.dst),
        ),
        // From the VIP, as the kernel's `icmp_send` picks the address the
        // packet was sent to when that is local (a VIP is, on a kernel
        // director).
        XmitError::TtlExpired => (
            IcmpErrorKind::TimeExceeded,
            LbDrop::TtlExpired,
            Some(meta.dst),
        ),
        XmitError::NeedsFragmentation => return drop_counted(counters, LbDrop::TooBig),
        XmitError::NoRoute => return drop_counted(counters, LbDrop::NoRoute),
        _ => return drop_counted(counters, LbDrop::Rewrite),
    };
    match src.map(|s| icmp_error_reply(buf, meta, kind, s)) {
        Some(Ok(())) => {
            bump(&counters.icmp_sent);
            Action::Forward(meta.src)
        }
        _ => drop_counted(counters, reason),
    }
}

/// The whole classify, lookup, schedule, rewrite path on arbitrary bytes:
/// the body of the `pipeline` fuzz target (and of a property test). `data`
/// is read as a sequence of frames, each prefixed by a one-byte length; they
/// go through one stage configured with NAT, DR and tunnel services (and
/// an SCTP NAT service), so
/// later frames can hit connections earlier ones created. Returns the number
/// of frames forwarded, so the work cannot be optimised away.
///
/// Why one stage per thread, emptied between inputs: building it (the
/// compiled configuration, the connection table and its timer wheel) cost
/// far more than the frames of a typical input (the target ran about 1,900
/// inputs a second when it built a stage per input). Between inputs the
/// connection table is flushed and the schedulers, the random generator,
/// the IP ID and the defences start over, so an input's outcome does not
/// depend on the inputs before it and a crash replays alone. What carries
/// over cannot change a decision: the clock only moves forward (the table
/// is empty, and every timeout is relative), the counters and the
/// snapshot's statistics are only read by people, and with one destination
/// per service and no thresholds the connection counts choose nothing.
pub fn fuzz_pipeline(data: &[u8]) -> usize {
    use std::cell::RefCell;

    /// Time between two frames. Expiry used to walk the timer wheel tick
    /// by tick (10 ms), so the gap set the cost of housekeeping: at 1 s it
    /// was most of an input's time (the wheel now jumps over empty ticks,
    /// see `conn::timer`). With [`fuzz_config`]'s 1 s timeouts,
    /// established TCP and UDP entries still expire within an input (after
    /// 10 frames).
    const FRAME_GAP_MS: u64 = 100;

    struct Fixed;
    impl Egress for Fixed {
        fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
            match dst {
                IpAddr::V4(_) => Some((IpAddr::from([198, 18, 1, 1]), 1500)),
                IpAddr::V6(_) => None,
            }
        }
    }
    thread_local! {
        /// The stage, and the time its last input ended.
        static STAGE: RefCell<(Lb, u64)> = RefCell::new({
            let mut lb = Lb::new(
                0,
                LbSettings {
                    capacity: 64,
                    ..LbSettings::default()
                },
                0,
            );
            lb.set_snapshot(fuzz_config().snapshot());
            (lb, 0)
        });
    }
    STAGE.with(|stage| {
        let (lb, clock) = &mut *stage.borrow_mut();
        let mut now = *clock;
        lb.conns.flush();
        lb.scheds.clear();
        lb.rng = SplitMix64::new(lb.settings.seed);
        lb.ip_id = 0;
        lb.defense = Defense::new(now);
        let snap = Arc::clone(&lb.snap);
        lb.take_tunables(&snap);
        let mut forwarded = 0;
        let mut rest = data;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n).min(tail.len());
            let (f, next) = tail.split_at(n);
            rest = next;
            now += FRAME_GAP_MS;
            let mut b = crate::buf::TestBuf::new(f);
            if let Ok(m) = crate::wire::parse_packet(b.data()) {
                if let Action::Forward(_) = lb.process(&mut b, &m, now, &Fixed) {
                    forwarded += 1;
                }
            }
            lb.housekeeping(now, 16);
        }
        *clock = now;
        forwarded
    })
}

/// The configuration [`fuzz_pipeline`] runs: on 198.18.0.100, TCP port 80
/// by NAT (rr), UDP 53 by DR (sh), TCP port 0 persistent through a GUE
/// tunnel (wlc), SCTP 80 by NAT (rr); one real server each; `--set 1 1 1`
/// (TCP, TCP FIN and UDP timeouts of one second).
pub fn fuzz_config() -> crate::config::ConfigStore {
    use crate::config::{ConfigOp, ConfigStore};
    use crate::model::{DestConfig, Protocol, ServiceConfig, TunnelCsum, TunnelType};

    let mut st = ConfigStore::new();
    let _ = st.apply(&ConfigOp::SetTimeouts {
        tcp: 1,
        tcp_fin: 1,
        udp: 1,
    });
    let vip = IpAddr::from([198, 18, 0, 100]);
    let methods = [
        ForwardMethod::Masq,
        ForwardMethod::Route,
        ForwardMethod::Tunnel(crate::model::TunnelConfig {
            kind: TunnelType::Gue,
            port: 6080,
            csum: TunnelCsum::Csum,
        }),
        ForwardMethod::Masq,
    ];
    for (i, (proto, port)) in [
        (Protocol::Tcp, 80u16),
        (Protocol::Udp, 53),
        (Protocol::Tcp, 0),
        (Protocol::Sctp, 80),
    ]
    .into_iter()
    .enumerate()
    {
        let key = ServiceKey::Addr {
            protocol: proto,
            addr: vip,
            port,
        };
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = ["rr", "sh", "wlc", "rr"][i].into();
        if port == 0 {
            cfg.persistent = Some(60);
        }
        let _ = st.apply(&ConfigOp::AddService(cfg));
        let _ = st.apply(&ConfigOp::AddDest(
            key,
            DestConfig {
                addr: IpAddr::from([198, 18, 1, 11 + i as u8]),
                port,
                method: methods[i],
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        ));
    }
    st
}
