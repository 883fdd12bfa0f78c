//! The load balancer as a worker's [`Stage`], and what it shares with the
//! control thread.
//!
//! Sharing without locks on the packet path:
//! * [`ConfigCell`]: the control thread publishes each new configuration
//!   snapshot with one atomic pointer swap (`arc-swap`); a worker compares
//!   the published generation with its own on every loop turn and takes the
//!   new snapshot between bursts. A worker therefore sees the old or the new
//!   configuration, never a mix. Taking it costs the worker the same at any
//!   table size (see [`Lb::set_snapshot`]), and so does letting the old one
//!   go: the cell keeps every snapshot it replaced until no worker holds it
//!   and frees it on the control thread ([`ConfigCell::reclaim`]), so a
//!   worker never pays for freeing a large table.
//!   The control thread then waits until every running worker has taken
//!   it ([`ConfigCell::wait_taken`]): when `ipvsadm -E` returns, the next
//!   new connection gets the new scheduler, as with the kernel (a worker
//!   answers within one loop turn; one that does not within a second is
//!   stuck or stopping, and the command returns anyway).
//! * [`ConnDump`]: `ipvsadm -L -c` asks each worker for its connection rows
//!   through a request counter; the worker answers between bursts. The mutex
//!   around the rows is only ever taken on that control path.
//! * Counters are per worker ([`LbCounters`], statistics slots).
//!
//! A routed flow that source NAT maps skips the balancer once the balancer
//! has passed it ([`Clearance`]): for such a packet the balancer's answer
//! is a connection lookup that misses and a service lookup that misses,
//! about a fifth of what the packet costs, and the same answer every time
//! until a connection key is added or a new snapshot comes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::filter::Filtered;
use super::{Action, Egress, Lb};
use crate::buf::PacketBuf;
use crate::frag::{
    fragment_ident, fragment_owner, ident_for, FragDrop, Insert, Reassembler, ReassemblyLimits,
};
use crate::model::{ConnEntry, Snapshot};
use crate::net::{Interface, Lane, RouteCache, Stage, StageVerdict};
use crate::rss::Ownership;
use crate::snat::{Postrouting, Snat};
use crate::wire::ipv4::protocol;
use crate::wire::{Fragment, PacketMeta, ParseError};

/// The configuration the control thread publishes and workers pick up.
#[derive(Debug)]
pub struct ConfigCell {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Replaced snapshots, until no worker holds them (control side only).
    retired: Mutex<Vec<Arc<Snapshot>>>,
    /// One slot per worker: the generation it has taken plus one, 0 while
    /// it does not run (see [`Taken`]).
    taken: Mutex<Vec<Arc<AtomicU64>>>,
}

/// A worker's acknowledgement of the snapshots it takes (the worker side
/// of [`ConfigCell::wait_taken`]): written once per snapshot change, never
/// per packet; cleared when the worker's stage goes away.
#[derive(Debug)]
pub struct Taken {
    slot: Arc<AtomicU64>,
    last: u64,
}

impl Taken {
    /// Records that the worker now uses generation `g`.
    #[inline]
    pub fn record(&mut self, g: u64) {
        let v = g.wrapping_add(1).max(1);
        if self.last != v {
            self.last = v;
            self.slot.store(v, Ordering::Release);
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.slot.store(0, Ordering::Release);
    }
}

impl Default for ConfigCell {
    fn default() -> Self {
        ConfigCell {
            current: ArcSwap::from_pointee(Snapshot::default()),
            generation: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            taken: Mutex::new(Vec::new()),
        }
    }
}

impl ConfigCell {
    /// Publishes `snap` to every worker.
    pub fn publish(&self, snap: Arc<Snapshot>) {
        let g = snap.generation;
        let old = self.current.swap(snap);
        self.generation.store(g, Ordering::Release);
        self.reclaim();
        match self.retired.lock() {
            Ok(mut r) => r.push(old),
            Err(p) => p.into_inner().push(old),
        }
    }

    /// Frees the replaced snapshots no worker holds any more (the control
    /// thread calls it before each change, so that a destination only an
    /// old snapshot held counts as unreferenced, as it did before).
    pub fn reclaim(&self) {
        let mut r = match self.retired.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        r.retain(|s| Arc::strong_count(s) > 1);
    }

    /// The generation last published (one atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The snapshot last published.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A new worker's acknowledgement slot (a worker that never records
    /// counts as not running).
    pub fn register(&self) -> Taken {
        let slot = Arc::new(AtomicU64::new(0));
        match self.taken.lock() {
            Ok(mut t) => t.push(Arc::clone(&slot)),
            Err(p) => p.into_inner().push(Arc::clone(&slot)),
        }
        Taken { slot, last: 0 }
    }

    /// Waits until every running worker uses generation `g` or a later
    /// one, at most `timeout`; whether they all did. Workers that do not
    /// run (not started yet, or stopped) are not waited for.
    pub fn wait_taken(&self, g: u64, timeout: Duration) -> bool {
        let slots: Vec<Arc<AtomicU64>> = match self.taken.lock() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let want = g.wrapping_add(1).max(1);
        let t0 = Instant::now();
        loop {
            let behind = slots.iter().any(|s| {
                let v = s.load(Ordering::Acquire);
                v != 0 && v < want
            });
            if !behind {
                return true;
            }
            if t0.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// A worker's answer channel for connection listings.
///
/// The worker answers a piece at a time: [`DUMP_PIECE`] entry slots per
/// loop turn, so a listing of a million connections never holds it for
/// more than one piece, and its packets go on between pieces. The rows of
/// one listing are therefore not one instant's (as the kernel's are not:
/// it walks its hash table bucket by bucket).
#[derive(Debug, Default)]
pub struct ConnDump {
    requested: AtomicU64,
    answered: AtomicU64,
    /// Worker side: the next slot of the listing under way.
    cursor: AtomicUsize,
    /// The pieces listed so far (a worker never grows one big vector).
    pieces: Mutex<Vec<Vec<ConnEntry>>>,
}

/// Connection-table slots a worker lists per loop turn.
pub const DUMP_PIECE: usize = 1024;

impl ConnDump {
    /// Control side: asks the worker for its rows and waits for them,
    /// as long as the worker keeps answering pieces; `None` if it answered
    /// nothing for `timeout` (stopped).
    pub fn collect(&self, timeout: Duration) -> Option<Vec<ConnEntry>> {
        let want = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut progress = Instant::now();
        let mut seen = 0;
        while self.answered.load(Ordering::Acquire) < want {
            let at = self.cursor.load(Ordering::Relaxed);
            if at != seen {
                seen = at;
                progress = Instant::now();
            } else if progress.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let pieces = match self.pieces.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        Some(pieces.into_iter().flatten().collect())
    }

    /// Worker side: lists one more piece of a pending request, if any
    /// (between bursts).
    fn serve(&self, lb: &Lb, now: u64) {
        let req = self.requested.load(Ordering::Acquire);
        if req == self.answered.load(Ordering::Relaxed) {
            return;
        }
        let start = self.cursor.load(Ordering::Relaxed);
        let mut rows = Vec::new();
        let next = lb.connections_piece(start, DUMP_PIECE, now, &mut rows);
        let mut pieces = match self.pieces.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if start == 0 {
            pieces.clear();
        }
        if !rows.is_empty() {
            pieces.push(rows);
        }
        drop(pieces);
        match next {
            Some(n) => self.cursor.store(n, Ordering::Relaxed),
            None => {
                self.cursor.store(0, Ordering::Relaxed);
                self.answered.store(req, Ordering::Release);
            }
        }
    }
}

/// How often a worker expires connections, and how many at most per turn.
const HOUSEKEEPING_MS: u64 = 10;
const EXPIRE_BUDGET: usize = 4096;

/// The steps in front of the balancer that the worker's setup and the
/// installed snapshot leave off, decided between bursts ([`Stage::tick`],
/// [`LbStage::new`]), never per packet.
///
/// Why: most directors run none of them (one worker, no filter rules, no
/// source NAT), and each costs a test or a call per packet. With all of
/// them off ([`Switches::plain`]), a whole datagram goes straight to
/// [`Lb::process_marked`], as it would after passing each of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// One worker: no ownership test, nothing handed over.
    pub one_worker: bool,
    /// No filter rule (the rules would pass every packet, mark 0).
    pub no_rules: bool,
    /// No source-NAT mapping and no nat rule that could make one (no
    /// packet is a reply to a mapping). With no nat rule mappings only
    /// expire, so this holds until a snapshot with nat rules comes.
    pub no_snat: bool,
}

impl Switches {
    /// Whether every step is off.
    #[inline]
    pub fn plain(self) -> bool {
        self.one_worker && self.no_rules && self.no_snat
    }
}

/// The load balancer plugged into a worker.
#[derive(Debug)]
pub struct LbStage {
    lb: Lb,
    me: usize,
    owners: Ownership,
    config: Arc<ConfigCell>,
    taken: Taken,
    dump: Arc<ConnDump>,
    last_housekeeping: u64,
    /// Datagrams arriving in fragments (to a VIP, or NAT replies from a
    /// real server), reassembled before the load balancer sees them.
    frags: Reassembler,
    /// The reassembly slot of the datagram handed to the stack
    /// ([`StageVerdict::Datagram`]).
    pending: Option<usize>,
    /// Source NAT of routed traffic ([`crate::snat`]).
    snat: Snat,
    /// What is off, as of the last tick.
    switches: Switches,
    /// When the balancer's pass of a routed flow still holds.
    clear: Clearance,
    /// The lane left the packet [`Stage::process`] gets to the general
    /// path ([`Lane::General`]) after the steps in front of the balancer
    /// (source NAT's, [`LbStage::lane_snat`]; the owner's,
    /// [`Stage::lane_owned_step`]): `process` goes on from there, with
    /// this clearance epoch (0: none).
    lane_left: Option<u64>,
    /// Tests: never skip the balancer (the reference the skip is checked
    /// against).
    #[cfg(test)]
    no_clearance: bool,
}

/// The epoch in which the balancer's "pass" of a packet holds for every
/// later packet of the same flow (same addresses, ports and protocol, mark
/// 0, TCP or UDP, whole).
///
/// Why it holds: for such a packet the balancer passes exactly when no
/// connection has its key either way, no service (address or mark 0)
/// matches, and it is no NAT real server's (an ICMP error would answer
/// it). Connections, services and real servers change only by a key
/// linked into the connection table ([`crate::conn::ConnTable::links`];
/// removals only make misses) or by a new snapshot; either starts a new
/// epoch. A source-NAT mapping carries the epoch in which its flow was
/// last passed ([`Snat::lookup`]): while it is the current one, the
/// packet goes on to routing without the balancer.
#[derive(Debug, Clone, Copy)]
struct Clearance {
    generation: u64,
    links: u64,
    /// Never 0 once asked (0 marks a mapping never passed).
    epoch: u64,
}

impl Default for Clearance {
    fn default() -> Self {
        Clearance {
            generation: u64::MAX,
            links: u64::MAX,
            epoch: 0,
        }
    }
}

/// The routes for a reassembled datagram: no MTU limit, since what leaves
/// is fragmented to the egress MTU afterwards (the stack's
/// [`StageVerdict::Datagram`]).
struct Unlimited<'a>(&'a RouteCache);

impl Egress for Unlimited<'_> {
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
        self.0.route(dst).map(|(src, _)| (src, u16::MAX))
    }
    fn mtu(&self, _dst: IpAddr) -> u16 {
        u16::MAX
    }
    fn learn_mtu(&self, dst: IpAddr, mtu: u16) {
        self.0.learn_mtu(dst, mtu);
    }
}

/// What [`LbStage::front`] decided: go on to the balancer with a mark,
/// or this.
enum Front {
    Mark(u32),
    Done(Then),
}

/// What [`LbStage::routed`] decided for a packet.
enum Routed {
    /// A routed flow the balancer passed in this epoch: on to routing.
    Cleared,
    /// To the balancer, with this clearance epoch (0: none).
    Balance(u64),
}

/// A verdict of the steps in front of the balancer, without the buffer.
enum Then {
    HandOver(usize),
    /// A fragment to reassemble.
    Reassemble,
    Route(IpAddr),
    /// Dropped and counted.
    Drop,
}

impl LbStage {
    /// The stage of worker `me` of `owners.workers()`.
    pub fn new(
        mut lb: Lb,
        me: usize,
        owners: Ownership,
        config: Arc<ConfigCell>,
        dump: Arc<ConnDump>,
        interfaces: Vec<Interface>,
    ) -> Self {
        lb.set_ownership(owners.clone());
        let lb_frag = Arc::clone(&lb.counters().frag);
        let taken = config.register();
        let mut snat = Snat::new(interfaces, owners.clone(), me, 0);
        snat.prepare(&lb.snapshot().nat);
        let mut stage = LbStage {
            lb,
            me,
            owners,
            config,
            taken,
            dump,
            last_housekeeping: 0,
            frags: Reassembler::with_counters(ReassemblyLimits::default(), Arc::clone(&lb_frag)),
            pending: None,
            snat,
            switches: Switches::default(),
            clear: Clearance::default(),
            lane_left: None,
            #[cfg(test)]
            no_clearance: false,
        };
        stage.switches = stage.decide();
        stage
    }

    /// The [`Switches`] of the worker's setup, the snapshot in force and
    /// the source-NAT mappings held now.
    fn decide(&self) -> Switches {
        let snap = self.lb.snapshot();
        Switches {
            one_worker: self.owners.workers() <= 1,
            no_rules: snap.rules.is_empty(),
            no_snat: self.snat.is_empty() && snap.nat.is_empty(),
        }
    }

    /// What is off now.
    pub fn switches(&self) -> Switches {
        self.switches
    }

    /// Whether a fragment is the load balancer's to reassemble: TCP or
    /// UDP to a virtual service, or from a real server (a NAT reply).
    fn reassembles(&self, meta: &PacketMeta) -> bool {
        meta.fragment != Fragment::No
            && matches!(meta.protocol, protocol::TCP | protocol::UDP)
            && (self.lb.is_vip(&meta.dst) || self.lb.is_real(&meta.src))
    }

    /// Takes a fragment; a completed datagram goes through the load
    /// balancer whole and, if forwarded, to the stack in pieces.
    fn reassemble<B: PacketBuf>(
        &mut self,
        buf: B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> StageVerdict<B> {
        let slot = match self.frags.insert(buf.data(), meta, now) {
            Insert::Complete(slot) => slot,
            Insert::Held | Insert::Dropped(_) => return StageVerdict::Drop { buf, counted: true },
        };
        let mut whole = self.frags.frame(slot);
        let parsed = crate::wire::parse_packet(whole.data());
        if let (Ok(m), false) = (&parsed, self.switches.one_worker) {
            // Balanced where its connection is owned, like its whole
            // packets and the answers to it: another worker's gets it in
            // fragments that lead there.
            let owner = self.lb.client_endpoint(whole.data(), m);
            let owner = owner.map_or(self.me, |(a, p)| self.owners.owner(a, p));
            if owner != self.me {
                let ident = fragment_ident(buf.data(), meta).unwrap_or(0);
                // Not found (a redirection table that hardly names the
                // owner): balanced here, as with one worker.
                if let Some(ident) = ident_for(&self.owners, meta.src, ident, owner) {
                    self.pending = Some(slot);
                    return StageVerdict::HandOverDatagram {
                        buf,
                        worker: owner,
                        ident,
                    };
                }
            }
        }
        let action = match parsed {
            Ok(m) => self.lb.process(&mut whole, &m, now, &Unlimited(routes)),
            // Counted like any refusal of the load balancer's (it was
            // lost without a count before).
            Err(_) => super::drop_counted(&self.lb.counters, super::LbDrop::Rewrite),
        };
        match action {
            Action::Forward(dst) => {
                self.pending = Some(slot);
                StageVerdict::Datagram { buf, dst }
            }
            Action::Pass | Action::Drop(_) => {
                self.frags.release(slot);
                let why = if action == Action::Pass {
                    FragDrop::NotServed
                } else {
                    FragDrop::Refused
                };
                self.frags.count_drop(why);
                StageVerdict::Drop { buf, counted: true }
            }
        }
    }

    pub fn lb(&self) -> &Lb {
        &self.lb
    }

    /// The current clearance epoch (see [`Clearance`]).
    #[inline]
    fn clearance(&mut self) -> u64 {
        let (g, l) = (self.lb.generation(), self.lb.conns.links());
        if g != self.clear.generation || l != self.clear.links {
            self.clear = Clearance {
                generation: g,
                links: l,
                epoch: self.clear.epoch.wrapping_add(1).max(1),
            };
        }
        self.clear.epoch
    }

    /// Whether a packet's source-NAT mapping is looked up before the
    /// balancer: a whole IPv4 TCP/UDP packet, mark 0, with source NAT on, not
    /// to a virtual address (whose packets the balancer serves, and which
    /// should not pay the lookup).
    #[inline]
    fn looks_routed(&self, meta: &PacketMeta, mark: u32) -> bool {
        #[cfg(test)]
        if self.no_clearance {
            return false;
        }
        !self.switches.no_snat
            && mark == 0
            && meta.fragment == Fragment::No
            && matches!(meta.protocol, protocol::TCP | protocol::UDP)
            && meta.src.is_ipv4()
            && !self.lb.is_vip(&meta.dst)
    }

    /// The skip of the balancer for a packet whose mark is `mark`, after
    /// the steps in front of it: whether its routed flow was passed in
    /// this clearance epoch (then it goes on to routing), or the epoch to
    /// stamp if the balancer passes it (0: not a routed packet).
    #[inline(always)]
    fn routed(&mut self, meta: &PacketMeta, mark: u32) -> Routed {
        if !self.looks_routed(meta, mark) {
            return Routed::Balance(0);
        }
        let e = self.clearance();
        if self.snat.lookup(meta, e) {
            // Nothing may reuse the filter's connection lookup.
            self.lb.looked = None;
            return Routed::Cleared;
        }
        Routed::Balance(e)
    }

    /// The balancer's step for a packet of mark `mark` and clearance
    /// `epoch` ([`LbStage::routed`]), and the epoch's stamp on a pass.
    #[inline(always)]
    fn balance<B: PacketBuf>(
        &mut self,
        mut buf: B,
        meta: &PacketMeta,
        mark: u32,
        epoch: u64,
        now: u64,
        routes: &RouteCache,
    ) -> StageVerdict<B> {
        match self.lb.process_marked(&mut buf, meta, mark, now, routes) {
            Action::Forward(dst) => StageVerdict::Route { buf, dst },
            Action::Pass => {
                if epoch != 0 && self.clearance() == epoch {
                    self.snat.passed(epoch);
                }
                StageVerdict::Pass { buf }
            }
            Action::Drop(_) => StageVerdict::Drop { buf, counted: true },
        }
    }

    /// The lane's stage step ([`Stage::lane`]) for a whole IPv4 TCP/UDP
    /// packet with one worker, no filter rule and source NAT on: what
    /// [`Stage::process`] does for it, top-down. Nothing to reassemble or
    /// hand over and no rule (mark 0), so [`LbStage::front`] is the reply
    /// to a mapping (translated back and routed); then the skip of a
    /// cleared routed flow ([`Lane::Pass`]: on to routing, whose `nat
    /// POSTROUTING` uses the mapping lookup made here); then the
    /// balancer's lane ([`Lb::lane`]), with the clearance stamp on a pass
    /// as [`LbStage::balance`] makes it, and the epoch kept for
    /// [`Stage::process`] when the balancer's general step follows
    /// (`lane_left`: not through the front steps again). Why not a stage
    /// method of its own for that step: a second caller of
    /// `process_marked` kept it out of line, and the general path (two
    /// workers, every packet handed over) paid about 30 instructions per
    /// packet (1933.5 -> 1964.8).
    #[inline(always)]
    fn lane_snat<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> Lane {
        match self.snat.reply(buf, meta, now) {
            crate::snat::Reply::Route(dst) => return Lane::route(dst),
            crate::snat::Reply::Stray => {
                self.lb.count_stray_icmp();
                return Lane::Drop;
            }
            crate::snat::Reply::NotOurs => {}
        }
        let epoch = match self.routed(meta, 0) {
            Routed::Cleared => return Lane::Pass,
            Routed::Balance(e) => e,
        };
        match self.lb.lane(buf, meta, now, routes) {
            Lane::Pass if epoch != 0 => {
                if self.clearance() == epoch {
                    self.snat.passed(epoch);
                }
                Lane::Pass
            }
            Lane::General => {
                self.lane_left = Some(epoch);
                Lane::General
            }
            lane => lane,
        }
    }

    /// The steps in front of the balancer ([`Switches`]): reassembly,
    /// ownership, the reply to a source-NAT mapping, the filter rules.
    /// Inlined: out of line it cost a two-worker director (every packet
    /// through here) 80 instructions per handed-over packet.
    #[inline]
    fn front<B: PacketBuf>(
        &mut self,
        rx_port: u16,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> Front {
        if self.reassembles(meta) {
            // All fragments of a datagram to one worker: later ones carry
            // no ports, so the worker is chosen by what they all carry
            // ([`crate::frag::owner`]).
            if self.owners.workers() > 1 {
                let ident = fragment_ident(buf.data(), meta).unwrap_or(0);
                let owner = fragment_owner(&self.owners, meta.src, ident);
                if owner != self.me {
                    return Front::Done(Then::HandOver(owner));
                }
            }
            return Front::Done(Then::Reassemble);
        }
        // Connection ownership (DESIGN.md): the worker chosen by the client
        // endpoint handles both directions; a packet that RSS (or the
        // kernel, for taps) delivered elsewhere is handed to its owner.
        if self.owners.workers() > 1 {
            if let Some((addr, port)) = self.lb.client_endpoint(buf.data(), meta) {
                let owner = self.owners.owner(addr, port);
                if owner != self.me {
                    return Front::Done(Then::HandOver(owner));
                }
            }
        }
        // A reply to a source-NAT mapping: back to the original source
        // (conntrack's de-NAT, before the rules and the balancer).
        match self.snat.reply(buf, meta, now) {
            crate::snat::Reply::Route(dst) => return Front::Done(Then::Route(dst)),
            crate::snat::Reply::Stray => {
                self.lb.count_stray_icmp();
                return Front::Done(Then::Drop);
            }
            crate::snat::Reply::NotOurs => {}
        }
        match self
            .lb
            .filter(buf, meta, rx_port, |a| routes.is_own(a), routes)
        {
            Filtered::Pass(mark) => Front::Mark(mark),
            Filtered::Drop => Front::Done(Then::Drop),
            Filtered::Reply(dst) => Front::Done(Then::Route(dst)),
        }
    }
}

#[cfg(test)]
impl LbStage {
    /// One worker's stage (capacity 1024) over `store`'s snapshot, routing
    /// by `cfg`: for unit tests that run the stack with the real load
    /// balancer.
    pub(crate) fn for_tests(
        cfg: &crate::net::L3Config,
        store: &crate::config::ConfigStore,
    ) -> LbStage {
        let cell = Arc::new(super::ConfigCell::default());
        cell.publish(store.snapshot());
        let mut lb = Lb::new(
            0,
            super::LbSettings {
                capacity: 1024,
                ..super::LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(cell.load());
        LbStage::new(
            lb,
            0,
            Ownership::new(1),
            cell,
            Arc::new(super::ConnDump::default()),
            cfg.interfaces.clone(),
        )
    }

    /// `n` workers' stages (capacity 1024 each) over `store`'s snapshot,
    /// routing by `cfg`, sharing the configuration cell and the
    /// persistence templates as the daemon's workers do.
    pub(crate) fn workers_for_tests(
        cfg: &crate::net::L3Config,
        store: &crate::config::ConfigStore,
        n: usize,
    ) -> Vec<LbStage> {
        let cell = Arc::new(super::ConfigCell::default());
        cell.publish(store.snapshot());
        let owners = Ownership::new(n);
        let shared = Arc::new(crate::conn::shared::SharedTemplates::new(1024));
        (0..n)
            .map(|me| {
                let mut lb = Lb::new(
                    me,
                    super::LbSettings {
                        capacity: 1024,
                        ..super::LbSettings::default()
                    },
                    0,
                );
                lb.set_shared_templates(Arc::clone(&shared));
                lb.set_snapshot(cell.load());
                LbStage::new(
                    lb,
                    me,
                    owners.clone(),
                    Arc::clone(&cell),
                    Arc::new(super::ConnDump::default()),
                    cfg.interfaces.clone(),
                )
            })
            .collect()
    }

    /// This stage with a fixed FULLNAT ISN key (two stages fed the same
    /// packets then write the same sequence numbers).
    pub(crate) fn with_fixed_isn_key(mut self) -> LbStage {
        self.lb.fnat.fix_isn_key();
        self
    }

    /// The source-NAT mappings, for tests.
    pub(crate) fn snat(&self) -> &Snat {
        &self.snat
    }

    /// This stage never skipping the balancer ([`Clearance`]).
    pub(crate) fn without_clearance(mut self) -> LbStage {
        self.no_clearance = true;
        self
    }

    /// Publishes `store`'s snapshot as the next generation; the stage
    /// takes it at its next tick.
    pub(crate) fn publish_for_tests(&self, store: &crate::config::ConfigStore) {
        let mut snap = (*store.snapshot()).clone();
        snap.generation = self.config.generation() + 1;
        self.config.publish(Arc::new(snap));
    }
}

impl<B: PacketBuf> Stage<B> for LbStage {
    fn routes_changed(&mut self) {
        self.lb.routes_changed();
    }

    #[inline]
    fn process(
        &mut self,
        rx_port: u16,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> StageVerdict<B> {
        // Nothing in front of the balancer applies to a whole datagram
        // when every step is off (no reassembly, no owner but this worker,
        // no mapping to reply to, no rule: mark 0).
        // `epoch`: a routed flow the balancer passed in this epoch is
        // passed again without asking it ([`Clearance`]); 0 when not
        // looked up (never with every step off: no source NAT).
        let (mark, epoch) = if self.switches.plain() && meta.fragment == Fragment::No {
            (0, 0)
        } else if let Some(epoch) = self.lane_left.take() {
            // The lane made the steps in front (no rule: mark 0; the
            // owner is this worker) and left the balancer's general step
            // to this.
            (0, epoch)
        } else {
            let mark = match self.front(rx_port, &mut buf, meta, now, routes) {
                Front::Mark(mark) => mark,
                Front::Done(Then::HandOver(worker)) => {
                    return StageVerdict::HandOver { buf, worker }
                }
                Front::Done(Then::Reassemble) => return self.reassemble(buf, meta, now, routes),
                Front::Done(Then::Route(dst)) => return StageVerdict::Route { buf, dst },
                Front::Done(Then::Drop) => return StageVerdict::Drop { buf, counted: true },
            };
            match self.routed(meta, mark) {
                Routed::Cleared => return StageVerdict::Pass { buf },
                Routed::Balance(e) => (mark, e),
            }
        };
        self.balance(buf, meta, mark, epoch, now, routes)
    }

    /// No filter rule, and one worker or no source NAT: what is left in
    /// front of the balancer for a whole IPv4 TCP/UDP packet is source
    /// NAT's (the reply to a mapping, the skip of a cleared routed flow:
    /// [`LbStage::lane_snat`]) or the connection's owner
    /// ([`Stage::lane_owner`]), which the lane makes itself. Both at once
    /// (source NAT with more than one worker) take the general path.
    #[inline]
    fn lane_on(&self) -> bool {
        self.switches.no_rules && (self.switches.one_worker || self.switches.no_snat)
    }

    /// With every switch off, [`Stage::process`] of a whole packet is
    /// [`Lb::process_marked`] with mark 0; [`Lb::lane`] is that for a
    /// whole IPv4 TCP/UDP packet.
    #[inline(always)]
    fn lane(&mut self, buf: &mut B, meta: &PacketMeta, now: u64, routes: &RouteCache) -> Lane {
        self.lb.lane(buf, meta, now, routes)
    }

    /// The lane left a packet without a connection: [`Stage::process`]
    /// would take the balancer's step with mark 0 (every switch off, or
    /// the steps in front made by the lane: `lane_left`) and the epoch
    /// `lane_left` kept, whose stamp a pass gets as in
    /// [`LbStage::balance`]; the balancer's step goes to its
    /// `new_connection` ([`Lb::lane_new`]).
    #[inline(always)]
    fn lane_new(&mut self, buf: &mut B, meta: &PacketMeta, now: u64, routes: &RouteCache) -> Lane {
        let lane = self.lb.lane_new(buf, meta, now, routes);
        if lane == Lane::General {
            return lane;
        }
        let epoch = self.lane_left.take().unwrap_or(0);
        if lane == Lane::Pass && epoch != 0 && self.clearance() == epoch {
            self.snat.passed(epoch);
        }
        lane
    }

    /// Source NAT is on, or more than one worker: their steps come in
    /// front of the balancer's.
    #[inline(always)]
    fn lane_fronted(&self) -> bool {
        !self.switches.no_snat || !self.switches.one_worker
    }

    /// More than one worker (and, with [`Stage::lane_on`], no source NAT).
    #[inline(always)]
    fn lane_owned(&self) -> bool {
        !self.switches.one_worker
    }

    /// [`LbStage::front`]'s ownership test for a whole IPv4 TCP/UDP
    /// packet (nothing to reassemble, no ICMP quote).
    #[inline(always)]
    fn lane_owner(&self, meta: &PacketMeta, src: Ipv4Addr, dst: Ipv4Addr) -> Option<usize> {
        let (addr, port) = self.lb.lane_client(meta, src, dst);
        let owner = self.owners.owner_v4(addr, port);
        (owner != self.me).then_some(owner)
    }

    /// The lane's step for a packet this worker owns, with more than one
    /// worker, no filter rule and no source NAT: [`LbStage::front`] has
    /// nothing left to do (the owner is this worker, no mapping to reply
    /// to, no rule: mark 0, no routed flow to skip), so this is
    /// [`Lb::lane`]; a packet it leaves to the general path goes on in
    /// [`Stage::process`] from the balancer's step (`lane_left`), not
    /// through the ownership test again.
    #[inline(always)]
    fn lane_owned_step(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> Lane {
        match self.lb.lane(buf, meta, now, routes) {
            Lane::General => {
                self.lane_left = Some(0);
                Lane::General
            }
            lane => lane,
        }
    }

    /// With source NAT on (and one worker, no rule), [`Stage::process`]
    /// of a whole IPv4 TCP/UDP packet is [`LbStage::lane_snat`].
    #[inline(always)]
    fn lane_front(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        routes: &RouteCache,
    ) -> Lane {
        self.lane_snat(buf, meta, now, routes)
    }

    #[inline]
    fn warm(&mut self, metas: &[Result<PacketMeta, ParseError>]) {
        self.lb.warm_parsed(metas);
    }

    #[inline(always)]
    fn warm_next(&mut self, i: usize) {
        self.lb.warm_next(i);
    }

    #[inline]
    fn end_burst(&mut self, _now_ms: u64) {
        self.lb.end_burst();
    }

    #[inline]
    fn warms(&self) -> bool {
        self.lb.warms()
    }

    fn serves(&self, proto: u8, addr: IpAddr, port: u16) -> bool {
        self.lb.serves(proto, addr, port)
    }

    fn tick(&mut self, now: u64) -> bool {
        let mut changed = false;
        if self.config.generation() != self.lb.generation() {
            let old = Arc::clone(self.lb.snapshot());
            self.lb.set_snapshot(self.config.load());
            // The stack's copy of the VIPs is rebuilt only when they changed.
            let new = self.lb.snapshot();
            changed = !old.index.same_vips(&new.index) || old.locals.len() != new.locals.len();
            if !Arc::ptr_eq(&old.nat, &new.nat) {
                self.snat.prepare(&new.nat);
            }
        }
        if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.lb.housekeeping(now, EXPIRE_BUDGET);
            self.snat.expire(now, EXPIRE_BUDGET);
        }
        self.dump.serve(&self.lb, now);
        self.frags.expire(now);
        self.lb.sync_tick(now);
        self.switches = self.decide();
        changed
    }

    /// Tells the control thread which snapshot this worker now uses.
    #[inline]
    fn acknowledge(&mut self) {
        self.taken.record(self.lb.generation());
    }

    fn service_addrs(&self) -> Vec<IpAddr> {
        self.lb.service_addrs()
    }

    #[inline(always)]
    fn postrouting(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        out_port: u16,
        out_addr: IpAddr,
        now: u64,
    ) -> Postrouting {
        let snap = self.lb.snapshot();
        self.snat
            .outbound(buf, meta, &snap.nat, &snap.sets, out_port, out_addr, now)
    }

    fn datagram(&self) -> Option<&[u8]> {
        let slot = self.pending?;
        Some(self.frags.frame_of(slot))
    }

    fn datagram_sent(&mut self) {
        if let Some(slot) = self.pending.take() {
            self.frags.release(slot);
        }
    }
}

#[cfg(test)]
mod switch_tests {
    use super::*;
    use crate::config::ConfigStore;
    use crate::model::Family;
    use crate::net::L3Config;
    use crate::rules::{NoNames, Program, Rule, RuleOp, RuleTables, Table, Target};
    use crate::snat::NatRules;

    fn l3() -> L3Config {
        L3Config {
            interfaces: vec![Interface {
                port: 0,
                mac: crate::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
                addrs: vec!["198.18.0.1/24".parse().unwrap()],
                mtu: 1500,
                kernel: false,
            }],
            ..L3Config::default()
        }
    }

    /// `chain` of `table` with one rule, `target`.
    fn one_rule(table: Table, chain: &str, target: Target) -> RuleTables {
        let mut t = RuleTables::default();
        let op = RuleOp::Append {
            chain: chain.into(),
            rule: Rule {
                target,
                ..Rule::default()
            },
            counters: None,
        };
        t.apply(Family::V4, table, &op).unwrap();
        t
    }

    fn stage(store: &ConfigStore) -> LbStage {
        LbStage::for_tests(&l3(), store)
    }

    #[test]
    fn a_director_with_nothing_in_front_of_the_balancer_is_plain_and_each_step_turns_it_off() {
        let mut store = ConfigStore::new();
        let s = stage(&store);
        assert!(s.switches().plain(), "{:?}", s.switches());

        let drop_all = one_rule(Table::Filter, "INPUT", Target::Drop);
        store.set_rules(Arc::new(Program::compile(
            &drop_all.v4,
            &drop_all.v6,
            &NoNames,
        )));
        let s = stage(&store);
        assert!(!s.switches().no_rules);
        assert!(!s.switches().plain());

        let mut store = ConfigStore::new();
        let masq = one_rule(
            Table::Nat,
            "POSTROUTING",
            Target::Masquerade {
                to_ports: None,
                random: false,
                random_fully: false,
            },
        );
        store.set_nat(Arc::new(NatRules::compile(&masq.v4, &masq.v6, &NoNames)));
        let s = stage(&store);
        assert!(!s.switches().no_snat, "a nat rule may make mappings");
        assert!(s.switches().no_rules && !s.switches().plain());
    }

    #[test]
    fn two_workers_take_the_lane_with_the_owner_in_front_unless_source_nat_is_on() {
        use crate::buf::TestBuf;
        let store = ConfigStore::new();
        for s in LbStage::workers_for_tests(&l3(), &store, 2) {
            assert!(!s.switches().one_worker);
            assert!(Stage::<TestBuf>::lane_on(&s));
            assert!(Stage::<TestBuf>::lane_fronted(&s) && Stage::<TestBuf>::lane_owned(&s));
        }
        let mut store = ConfigStore::new();
        let masq = one_rule(
            Table::Nat,
            "POSTROUTING",
            Target::Masquerade {
                to_ports: None,
                random: false,
                random_fully: false,
            },
        );
        store.set_nat(Arc::new(NatRules::compile(&masq.v4, &masq.v6, &NoNames)));
        for s in LbStage::workers_for_tests(&l3(), &store, 2) {
            assert!(!Stage::<TestBuf>::lane_on(&s), "source NAT and two workers");
        }
        let s = stage(&store);
        assert!(Stage::<TestBuf>::lane_on(&s) && !Stage::<TestBuf>::lane_owned(&s));
    }

    #[test]
    fn a_new_snapshot_is_decided_again_at_the_next_tick() {
        let store = ConfigStore::new();
        let mut s = stage(&store);
        assert!(s.switches().plain());
        let mut next = ConfigStore::new();
        let drop_all = one_rule(Table::Filter, "INPUT", Target::Drop);
        next.set_rules(Arc::new(Program::compile(
            &drop_all.v4,
            &drop_all.v6,
            &NoNames,
        )));
        // A later generation than the one the stage holds.
        let mut snap = (*next.snapshot()).clone();
        snap.generation = s.lb.generation() + 1;
        s.config.publish(Arc::new(snap));
        assert!(s.switches().plain(), "nothing changes inside a burst");
        Stage::<crate::buf::TestBuf>::tick(&mut s, 1);
        assert!(!s.switches().no_rules, "{:?}", s.switches());
    }
}

#[cfg(test)]
mod taken_tests {
    use super::*;

    #[test]
    fn a_publish_waits_for_the_running_workers_and_only_for_them() {
        let cell = ConfigCell::default();
        let short = Duration::from_millis(5);
        assert!(cell.wait_taken(5, short), "no worker: nothing to wait for");
        let mut a = cell.register();
        let _never_runs = cell.register();
        a.record(4);
        assert!(!cell.wait_taken(5, short), "a worker on generation 4");
        a.record(5);
        assert!(cell.wait_taken(5, short));
        assert!(cell.wait_taken(3, short), "a later generation will do");
        drop(a);
        assert!(
            cell.wait_taken(9, short),
            "a stopped worker is not waited for"
        );

        let mut b = cell.register();
        b.record(8);
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.record(9);
            b
        });
        assert!(cell.wait_taken(9, Duration::from_secs(30)));
        drop(worker.join().unwrap());
    }
}
