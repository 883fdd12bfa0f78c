//! One worker's L2/L3 stack: dispatch of received frames, routing and
//! neighbour resolution of what it sends.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::floating::Floating;
use super::host::AnswerLimit;
use super::neighbor::{Lookup, NeighborTable};
use super::portindex::PortIndex;
use super::routecache::RouteCache;
use super::{arp, host, icmp, inbound, ndp, vlan};
use super::{
    Counter, Forwarding, Interface, L3Config, L3ConfigError, Lane, NetCounters, RouteTable, Stage,
    StageVerdict,
};
use crate::buf::PacketBuf;
use crate::exception::{self, Destination};
use crate::wire::ethernet::{ethertype, MacAddr, HEADER_LEN};
use crate::wire::ipv4::protocol;
use crate::wire::{icmpv6, parse_packet, Fragment, PacketMeta, ParseError, L3};

/// What the stack needs from its worker: fresh buffers and a transmit.
pub trait Io<B> {
    /// An empty buffer with room to append a frame, or `None`.
    fn alloc(&mut self) -> Option<B>;
    /// Queues `buf` for transmission on `port` (the worker batches).
    fn tx(&mut self, port: u16, buf: B);
    /// A neighbour answer (ARP reply, neighbour advertisement) that other
    /// workers should see too: with RSS, answers to one worker's request
    /// may land on another worker's queue. The worker copies `frame` to its
    /// peers; the default (one worker, tests) does nothing.
    fn share(&mut self, _port: u16, _frame: &[u8]) {}
    /// A packet for worker `worker`, received on `port` (connection
    /// ownership, see `lb`). The default (one worker, tests) drops it.
    fn hand_over(&mut self, _worker: usize, _port: u16, buf: B) {
        drop(buf);
    }
    /// A frame for the kernel interface of `port` (the exception path, see
    /// [`crate::exception`]); the worker queues it for the exception
    /// thread, or counts it dropped. The default (tests) drops it.
    fn except(&mut self, _port: u16, buf: B) {
        drop(buf);
    }
}

/// The L2/L3 state of one worker. See the module docs of [`super`].
#[derive(Debug)]
pub struct Stack<B> {
    ifaces: Vec<Interface>,
    /// `ifaces` by port, for the receive path ([`Stack::rx_iface`]).
    iface_by_port: PortIndex,
    neigh: NeighborTable<B>,
    counters: Arc<NetCounters>,
    last_tick: u64,
    /// Virtual service addresses answered in ARP/NDP (from the stage).
    service_addrs: Vec<IpAddr>,
    /// Addresses shared with another director under VRRP, and which of
    /// them this one holds (see [`super::floating`]).
    floating: Floating,
    /// The routes, and recent destinations resolved to a port, both MACs,
    /// the source address and the MTU: the one cache the stage (through
    /// [`Stage::process`]) and [`Stack::send_ip`] share
    /// ([`super::routecache`]).
    hops: RouteCache,
    /// The budget of answers the director originates ([`host`]).
    answers: AnswerLimit,
    /// Identification of the IPv6 fragment headers this stack writes.
    pub(super) frag_ident: u32,
    /// Whether packets for neither a service nor us are routed on.
    pub(super) forwarding: Forwarding,
    /// Recent routed destinations' egress ([`super::forward`]).
    pub(super) egress: Box<[Option<super::forward::Egress>; super::forward::EGRESS_CACHE]>,
}

/// Writes the source MAC and the ethertype of `dst`'s family into the
/// Ethernet header at the front of `d` (at least [`HEADER_LEN`] bytes).
#[inline(always)]
fn fill_l2(d: &mut [u8], dst: IpAddr, src_mac: MacAddr) {
    let et = if dst.is_ipv4() {
        ethertype::IPV4
    } else {
        ethertype::IPV6
    };
    d[6..12].copy_from_slice(&src_mac.0);
    d[12..14].copy_from_slice(&et.to_be_bytes());
}

/// What comes in front of the stage's lane step, for
/// [`Stack::input_lane_front`]: fixed per call site, by the worker once
/// per burst (a test per packet cost the lane without it about 15
/// instructions per packet, established UDP NAT 865 -> 880, measured,
/// the compiler keeping more of the lane's values on the stack).
pub(crate) mod front {
    /// Nothing: the stage's [`super::Stage::lane`]; the entry
    /// [`super::Stack::input_lane`] while neither source NAT nor a
    /// second worker is configured.
    pub const NONE: u8 = 0;
    /// Source NAT's steps ([`super::Stage::lane_fronted`] holds): the
    /// stack's checks, then the stage's [`super::Stage::lane_front`] out
    /// of line, and a pass (a routed flow, mostly) routed on in line.
    pub const SNAT: u8 = 1;
    /// More than one worker ([`super::Stage::lane_owned`] holds): the
    /// stack's checks, then the connection's owner
    /// ([`super::Stage::lane_owner`]). A packet another worker owns is
    /// handed over (counted as the general path's
    /// [`super::StageVerdict::HandOver`]); one this worker owns goes on
    /// through [`super::Stage::lane_owned_step`], with `NONE`'s answers.
    pub const OWNER: u8 = 2;
    /// [`OWNER`] for a frame another worker handed over (from the mesh;
    /// its rx port is the port it arrived on): without the inbound checks
    /// (`inbound::check_lane`), which the worker that handed it over made
    /// on the same bytes, the same interface (the stacks' interfaces are
    /// the same on every worker and never change) and the same NIC
    /// verdict, and passed: the general path makes them again and they
    /// pass again, counting nothing (the trim was made and counted
    /// there). The owner test is made again, as the general path makes
    /// it, since the two workers' snapshots may differ for a moment (a
    /// VIP added or removed changes which endpoint is the client's).
    pub const HANDED_IN: u8 = 3;
}

/// How often [`Stack::tick`] does work.
const TICK_MS: u64 = 100;

impl<B: PacketBuf> Stack<B> {
    /// A stack for `cfg` (validated here), counting into `counters`.
    pub fn new(cfg: &L3Config, counters: Arc<NetCounters>) -> Result<Self, L3ConfigError> {
        let routes = cfg.route_table()?;
        let mut neigh = NeighborTable::new();
        for (ip, mac) in &cfg.neighbors {
            if let Some(port) = routes.connected_port(*ip) {
                neigh.add_static(*ip, port, *mac);
            }
        }
        Ok(Stack {
            hops: RouteCache::new(routes, cfg.interfaces.clone()),
            iface_by_port: PortIndex::new(cfg.interfaces.iter().map(|i| i.port)),
            ifaces: cfg.interfaces.clone(),
            neigh,
            counters,
            last_tick: 0,
            service_addrs: Vec::new(),
            floating: Floating::default(),
            answers: AnswerLimit::default(),
            frag_ident: 0,
            forwarding: cfg.forwarding,
            egress: Box::new([None; super::forward::EGRESS_CACHE]),
        })
    }

    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }
    pub fn neighbors(&self) -> &NeighborTable<B> {
        &self.neigh
    }
    pub fn routes(&self) -> &RouteTable {
        self.hops.routes()
    }

    /// Uses `pmtu`, the table of learned path MTUs every worker shares.
    pub fn share_path_mtus(&mut self, pmtu: Arc<crate::lb::PathMtus>) {
        self.hops.share_path_mtus(pmtu);
    }

    /// Replaces the routes and the static neighbours (a reload of the
    /// config, between bursts). Learned neighbours stay; every cached next
    /// hop is forgotten (the neighbour table's generation moves).
    pub fn reload(&mut self, routes: RouteTable, neighbors: &[(IpAddr, MacAddr)]) {
        let statics: Vec<(IpAddr, u16, MacAddr)> = neighbors
            .iter()
            .filter_map(|&(ip, mac)| routes.connected_port(ip).map(|p| (ip, p, mac)))
            .collect();
        self.neigh.replace_statics(&statics);
        self.hops.set_routes(routes);
        *self.egress = [None; super::forward::EGRESS_CACHE];
    }

    /// The route cache (tests).
    #[cfg(test)]
    pub(super) fn route_cache(&mut self) -> &mut RouteCache {
        &mut self.hops
    }

    pub(super) fn iface(&self, port: u16) -> Option<&Interface> {
        self.ifaces.iter().find(|i| i.port == port)
    }

    /// [`Stack::iface`] for a received frame, by `iface_by_port`.
    #[inline(always)]
    fn rx_iface(&self, port: u16) -> Option<&Interface> {
        let scan = || self.ifaces.iter().position(|i| i.port == port);
        self.ifaces.get(self.iface_by_port.find(port, scan)?)
    }

    /// Sets the virtual service addresses to answer ARP/NDP for (between
    /// bursts, when the configuration changed).
    pub fn set_service_addrs(&mut self, mut addrs: Vec<IpAddr>) {
        addrs.sort_unstable();
        addrs.dedup();
        self.service_addrs = addrs;
    }

    /// Whether `ip` is a virtual service address.
    #[inline]
    pub(super) fn is_service_addr(&self, ip: IpAddr) -> bool {
        self.service_addrs.binary_search(&ip).is_ok()
    }

    /// Takes a token for an answer the director originates ([`host`]).
    pub(super) fn allow_answer(&mut self, now: u64) -> bool {
        self.answers.allow(now)
    }

    /// Whether ARP/NDP for `ip` on `iface` is ours to answer: one of the
    /// port's addresses, a virtual service address on its segment, or a
    /// floating address of the port that this director holds; never a
    /// floating address it does not hold.
    pub(super) fn answers_for(&self, iface: &Interface, ip: IpAddr) -> bool {
        if self.floating.is_standby(&ip) {
            return false;
        }
        iface.has_addr(ip)
            || (iface.on_link(ip) && self.is_service_addr(ip))
            || self.floating.holds(iface.port, &ip)
    }

    /// Sets the floating addresses (port id, address) of the config; none
    /// is held until [`Stack::set_held`] says so.
    pub fn set_floating(&mut self, configured: Vec<(u16, IpAddr)>) {
        self.floating = Floating::new(configured);
    }

    /// The floating addresses held now (between bursts, when the daemon
    /// published a change). With `announce`, each address taken now is
    /// announced from its port: gratuitous ARP or unsolicited neighbour
    /// advertisement.
    pub fn set_held(&mut self, held: &[IpAddr], announce: bool, io: &mut impl Io<B>) {
        let taken = self.floating.set_held(held);
        if !announce {
            return;
        }
        for (port, addr) in taken {
            let Some(iface) = self.iface(port) else {
                continue;
            };
            let Some(mut buf) = io.alloc() else {
                self.counters.inc(Counter::DropNoBuffer);
                continue;
            };
            let built = match addr {
                IpAddr::V4(a) => arp::build_gratuitous(&mut buf, iface, a),
                IpAddr::V6(a) => ndp::build_unsolicited(&mut buf, iface, a),
            };
            if built {
                self.counters.inc(Counter::Announced);
                self.tx(io, port, buf);
            } else {
                self.drop_buf(buf, Counter::DropNoBuffer);
            }
        }
    }

    /// Whether `ip` is one of the director's own addresses (any port).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.ifaces.iter().any(|i| i.has_addr(ip))
    }

    pub(super) fn drop_buf(&self, buf: B, why: Counter) {
        self.counters.inc(why);
        drop(buf);
    }

    /// Hands `buf` to the kernel interface of `port`.
    pub(super) fn except(&self, io: &mut impl Io<B>, port: u16, buf: B) {
        self.counters.inc(Counter::ToKernel);
        io.except(port, buf);
    }

    /// Queues `buf` on `port`; the worker counts it `tx` once its tx
    /// queue took it (or `drop_tx_full`).
    /// A VLAN interface's frame is tagged here and sent on its port.
    #[inline(always)]
    pub(super) fn tx(&self, io: &mut impl Io<B>, port: u16, mut buf: B) {
        match vlan::tag(port, &mut buf) {
            Some(port) => io.tx(port, buf),
            None => self.drop_buf(buf, Counter::DropNoBuffer),
        }
    }

    /// Handles one received frame.
    pub fn input(
        &mut self,
        rx_port: u16,
        buf: B,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let parsed = parse_packet(buf.data());
        self.input_parsed(rx_port, buf, &parsed, now, io, stage)
    }

    /// Handles one received frame that the caller parsed already
    /// (`parsed` must be `parse_packet` of the frame as it is): the worker
    /// parses a burst once, for the stage's batched lookups and for this.
    pub fn input_parsed(
        &mut self,
        rx_port: u16,
        mut buf: B,
        parsed: &Result<PacketMeta, ParseError>,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        if let Ok(PacketMeta { vlan: Some(_), .. }) = parsed {
            return vlan::input(self, rx_port, buf, now, io, stage);
        }
        self.counters.inc(Counter::Rx);
        let Some(iface) = self.rx_iface(rx_port) else {
            return self.drop_buf(buf, Counter::DropUnknownPort);
        };
        let my_mac = iface.mac;
        let kernel = iface.kernel;
        let meta = match parsed {
            Ok(m) => m,
            Err(e) => {
                self.counters.parse_error(*e);
                return;
            }
        };
        let dst_mac = MacAddr::from_slice(&buf.data()[0..6]).unwrap_or(MacAddr([0; 6]));
        if !dst_mac.is_multicast() && dst_mac != my_mac {
            return self.drop_buf(buf, Counter::DropOtherMac);
        }
        let is_ndp = meta.l3 == L3::Ipv6
            && meta.protocol == protocol::ICMPV6
            && matches!(
                meta.icmp_type,
                icmpv6::kind::NEIGHBOR_SOLICIT | icmpv6::kind::NEIGHBOR_ADVERT
            );
        if meta.l3 == L3::Arp {
            return arp::input(self, rx_port, buf, meta, now, io);
        }
        if is_ndp {
            return ndp::input(self, rx_port, buf, meta, now, io);
        }
        if self.floating.is_standby(&meta.dst) {
            return self.drop_buf(buf, Counter::DropStandby);
        }
        if let Err(why) = inbound::check(iface, &mut buf, meta, &self.counters) {
            return self.drop_buf(buf, why);
        }
        self.counters.inc(Counter::Forwarded);
        self.staged(rx_port, kernel, buf, meta, now, io, stage)
    }

    /// The stage's step of the general path ([`Stage::process`]) and what
    /// the stack does with its verdict, for a packet that passed the
    /// inbound checks. Always inlined: [`Stack::input_parsed`]'s per-packet
    /// path.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn staged(
        &mut self,
        rx_port: u16,
        kernel: bool,
        buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let v = stage.process(rx_port, buf, meta, now, &self.hops);
        self.stage_verdict(rx_port, kernel, v, meta, now, io, stage)
    }

    /// What the stack does with the stage's verdict on a packet
    /// ([`Stack::staged`], [`Stack::lane_general`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn stage_verdict(
        &mut self,
        rx_port: u16,
        kernel: bool,
        v: StageVerdict<B>,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let buf = match v {
            StageVerdict::Route { buf, dst } => {
                self.counters.inc(Counter::FromStage);
                return self.send_ip(buf, dst, now, io);
            }
            StageVerdict::Drop { buf, counted } => {
                if !counted {
                    self.counters.inc(Counter::DropNotLocal);
                }
                return drop(buf);
            }
            StageVerdict::Pass { buf } => buf,
            StageVerdict::HandOver { buf, worker } => {
                self.counters.inc(Counter::HandedOver);
                return io.hand_over(worker, rx_port, buf);
            }
            StageVerdict::Datagram { buf, dst } => {
                drop(buf);
                return self.send_datagram(dst, now, io, stage);
            }
            StageVerdict::HandOverDatagram { buf, worker, ident } => {
                drop(buf);
                return self.hand_over_datagram(rx_port, worker, ident, io, stage);
            }
        };
        self.passed(rx_port, kernel, buf, meta, now, io, stage)
    }

    /// The fast lane for a received frame (parsed by the caller, as for
    /// [`Stack::input_parsed`]): a whole IPv4 TCP or UDP packet, untagged,
    /// while the stage allows it ([`Stage::lane_on`]), goes through the
    /// stack's checks and the stage's [`Stage::lane`] top-down, with no
    /// verdict carrying the buffer, and out through the route cache's hit
    /// ([`Stack::lane_send`]). Every other frame goes to
    /// [`Stack::input_parsed`]. The lane's checks are the general path's
    /// for such a packet, in the same order and counted the same (ARP,
    /// NDP, VLAN and fragments cannot apply to it); property tests
    /// (`lane_tests`) hold it equal to the general path.
    ///
    /// With source NAT or more than one worker, the worker calls
    /// [`Stack::input_lane_front`] instead, decided once per burst.
    #[inline(always)]
    pub fn input_lane(
        &mut self,
        rx_port: u16,
        buf: B,
        parsed: &Result<PacketMeta, ParseError>,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        self.input_lane_front::<{ front::NONE }>(rx_port, buf, parsed, now, io, stage)
    }

    /// [`Stack::input_lane`] with `FRONT` (a [`front`] constant, chosen
    /// by the worker once per burst) in front of the stage's lane step.
    /// Property tests (`lane_tests`, `lane_snat_tests`) hold each entry
    /// equal to the general path.
    #[inline(always)]
    pub(crate) fn input_lane_front<const FRONT: u8>(
        &mut self,
        rx_port: u16,
        mut buf: B,
        parsed: &Result<PacketMeta, ParseError>,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let meta = match parsed {
            Ok(
                m @ PacketMeta {
                    vlan: None,
                    l3: L3::Ipv4,
                    fragment: Fragment::No,
                    src: IpAddr::V4(src),
                    dst: IpAddr::V4(dst),
                    ..
                },
            ) if matches!(m.protocol, protocol::TCP | protocol::UDP) => (m, *src, *dst),
            _ => return self.input_parsed(rx_port, buf, parsed, now, io, stage),
        };
        let (meta, src, dst) = meta;
        self.counters.inc(Counter::Rx);
        let Some(iface) = self.rx_iface(rx_port) else {
            return self.drop_buf(buf, Counter::DropUnknownPort);
        };
        let dst_mac = MacAddr::from_slice(&buf.data()[0..6]).unwrap_or(MacAddr([0; 6]));
        if !dst_mac.is_multicast() && dst_mac != iface.mac {
            return self.drop_buf(buf, Counter::DropOtherMac);
        }
        if self.floating.is_standby(&meta.dst) {
            return self.drop_buf(buf, Counter::DropStandby);
        }
        if FRONT != front::HANDED_IN {
            if let Err(why) = inbound::check_lane(iface, &mut buf, meta, src, dst, &self.counters) {
                return self.drop_buf(buf, why);
            }
        }
        let kernel = iface.kernel;
        self.counters.inc(Counter::Forwarded);
        if FRONT == front::SNAT {
            return self.lane_fronted(rx_port, kernel, buf, meta, now, io, stage);
        }
        if FRONT == front::OWNER || FRONT == front::HANDED_IN {
            if let Some(worker) = stage.lane_owner(meta, src, dst) {
                self.counters.inc(Counter::HandedOver);
                return io.hand_over(worker, rx_port, buf);
            }
            return self.lane_owned(rx_port, kernel, buf, meta, now, io, stage);
        }
        debug_assert!(
            !stage.lane_fronted(),
            "the worker calls front::SNAT's entry"
        );
        let lane = stage.lane(&mut buf, meta, now, &self.hops);
        // The common answer first, by a branch of its own (in the match, a
        // jump through a table).
        if let Lane::Route4(dst) = lane {
            self.counters.inc(Counter::FromStage);
            return self.lane_send_v4(buf, dst, now, io);
        }
        match lane {
            Lane::Route(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send(buf, dst, now, io)
            }
            Lane::Route4(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send_v4(buf, dst, now, io)
            }
            Lane::Drop => drop(buf),
            Lane::Pass => self.passed(rx_port, kernel, buf, meta, now, io, stage),
            Lane::General => self.lane_general(rx_port, kernel, buf, meta, now, io, stage),
        }
    }

    /// The rest of [`front::SNAT`]'s entry: the same answers as
    /// `input_lane`'s, with the stage's [`Stage::lane_front`], and a pass
    /// (a routed flow, mostly) routed on in line ([`Stack::lane_passed`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn lane_fronted(
        &mut self,
        rx_port: u16,
        kernel: bool,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        match stage.lane_front(&mut buf, meta, now, &self.hops) {
            Lane::Route(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send(buf, dst, now, io)
            }
            Lane::Route4(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send_v4(buf, dst, now, io)
            }
            Lane::Drop => drop(buf),
            Lane::Pass => self.lane_passed(rx_port, kernel, buf, meta, now, io, stage),
            Lane::General => self.lane_general(rx_port, kernel, buf, meta, now, io, stage),
        }
    }

    /// The rest of [`front::OWNER`]'s entry for a packet this worker
    /// owns: `input_lane`'s answers, with the stage's
    /// [`Stage::lane_owned_step`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn lane_owned(
        &mut self,
        rx_port: u16,
        kernel: bool,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        match stage.lane_owned_step(&mut buf, meta, now, &self.hops) {
            Lane::Route(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send(buf, dst, now, io)
            }
            Lane::Route4(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send_v4(buf, dst, now, io)
            }
            Lane::Drop => drop(buf),
            Lane::Pass => self.passed(rx_port, kernel, buf, meta, now, io, stage),
            Lane::General => self.lane_general(rx_port, kernel, buf, meta, now, io, stage),
        }
    }

    /// [`Stack::staged`] for a packet the lane leaves to the general path
    /// ([`Lane::General`]: new connections, mostly; the stage goes on from
    /// where its lane step stopped). Out of line, so that
    /// the lane's loop does not carry the general stage step's code.
    ///
    /// The stage's [`Stage::lane_new`] first: a packet it decides (a new
    /// connection) is answered as the lane answers, without the general
    /// stage step, its verdict and `send_ip`; what the stack does with
    /// each answer is what [`Stack::stage_verdict`] does with the
    /// verdict (a pass: [`Stack::passed`]; a route: counted from the
    /// stage, and sent through the route cache as `send_ip` sends).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn lane_general(
        &mut self,
        rx_port: u16,
        kernel: bool,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        match stage.lane_new(&mut buf, meta, now, &self.hops) {
            Lane::Route(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send(buf, dst, now, io)
            }
            Lane::Route4(dst) => {
                self.counters.inc(Counter::FromStage);
                self.lane_send_v4(buf, dst, now, io)
            }
            Lane::Drop => drop(buf),
            Lane::Pass => self.passed(rx_port, kernel, buf, meta, now, io, stage),
            Lane::General => self.staged(rx_port, kernel, buf, meta, now, io, stage),
        }
    }

    /// [`Stack::passed`] for a packet of the lane (a whole IPv4 TCP or
    /// UDP packet) that the stage passed back ([`Lane::Pass`]: mostly a
    /// routed flow that source NAT maps): for such a packet `passed` routes
    /// it on ([`Stack::forward`]) unless its port has a kernel interface or
    /// it is for the director or a virtual address, which take `passed`
    /// itself; `passed`'s tests for ICMP and IPv6 cannot apply.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn lane_passed(
        &mut self,
        rx_port: u16,
        kernel: bool,
        buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        if kernel || self.is_local(meta.dst) || self.is_service_addr(meta.dst) {
            return self.passed(rx_port, kernel, buf, meta, now, io, stage);
        }
        self.forward(rx_port, buf, meta, now, io, stage)
    }

    /// [`Stack::lane_send`] toward an IPv4 address ([`Lane::Route4`]).
    #[inline(always)]
    fn lane_send_v4(&mut self, mut buf: B, dst: Ipv4Addr, now: u64, io: &mut impl Io<B>) {
        if buf.len() >= HEADER_LEN {
            if let Some((port, src_mac, dst_mac)) =
                self.hops.hit_v4(dst, self.neigh.generation(), now)
            {
                let d = buf.data_mut();
                d[0..6].copy_from_slice(&dst_mac.0);
                d[6..12].copy_from_slice(&src_mac.0);
                d[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
                return self.tx(io, port, buf);
            }
        }
        self.send_ip_resolving(buf, IpAddr::V4(dst), now, io)
    }

    /// [`Stack::send_ip`] for the fast lane: the route cache's hit, the
    /// Ethernet header and the tx push (a VLAN interface's frame is tagged
    /// as there); a miss resolves the general way.
    ///
    /// The same lines as `send_ip`, on purpose: `send_ip` written as a
    /// call of this one cost the general path 20 instructions per packet
    /// (established SNAT, 1,000 flows: 1195.3 -> 1215.3 in callgrind).
    #[inline(always)]
    fn lane_send(&mut self, mut buf: B, dst: IpAddr, now: u64, io: &mut impl Io<B>) {
        if buf.len() >= HEADER_LEN {
            if let Some((port, src_mac, dst_mac)) = self.hops.hit(dst, self.neigh.generation(), now)
            {
                fill_l2(buf.data_mut(), dst, src_mac);
                buf.data_mut()[0..6].copy_from_slice(&dst_mac.0);
                return self.tx(io, port, buf);
            }
        }
        self.send_ip_resolving(buf, dst, now, io)
    }

    /// What the stack does with a packet the stage passed back
    /// ([`StageVerdict::Pass`], [`Lane::Pass`]): the kernel interface,
    /// local answers, routing on, or a counted drop.
    #[allow(clippy::too_many_arguments)]
    fn passed(
        &mut self,
        rx_port: u16,
        kernel: bool,
        buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        if kernel && self.to_kernel(rx_port, &buf, meta, stage) {
            return self.except(io, rx_port, buf);
        }
        let local = self.is_local(meta.dst);
        let vip = self.is_service_addr(meta.dst);
        if vip && !local && host::is_echo_request(meta) && !self.allow_answer(now) {
            return self.drop_buf(buf, Counter::DropRateLimited);
        }
        match meta.l3 {
            L3::Ipv4 if (local || vip) && meta.protocol == protocol::ICMP => {
                icmp::input(self, buf, meta, now, io)
            }
            L3::Ipv6 if (local || vip) && meta.protocol == protocol::ICMPV6 => {
                ndp::echo(self, buf, meta, now, io)
            }
            // A TCP segment the load balancer passed back for a VIP has
            // no connection and may not start one (a stray ACK, or a bad
            // SYN cookie): the local stack's reset, as for a closed port.
            _ if vip
                && (meta.protocol == protocol::TCP
                    || !stage.serves(meta.protocol, meta.dst, meta.dport)) =>
            {
                host::closed_port(self, buf, meta, now, io)
            }
            _ if local || vip => self.drop_buf(buf, Counter::DropLocalOther),
            L3::Ipv6 if meta.dst.is_multicast() => self.drop_buf(buf, Counter::DropIcmp6Other),
            _ => self.forward(rx_port, buf, meta, now, io, stage),
        }
    }

    /// Whether a packet the stage passed back goes to the kernel interface
    /// of `rx_port` (which has one); see [`crate::exception`].
    fn to_kernel(&self, rx_port: u16, buf: &B, meta: &PacketMeta, stage: &impl Stage<B>) -> bool {
        let Some(iface) = self.iface(rx_port) else {
            return false;
        };
        let to = exception::classify(
            iface,
            meta,
            buf.data(),
            |ip| self.is_local(ip),
            |proto, addr, port| stage.serves(proto, addr, port),
        );
        to == Destination::Kernel
    }

    /// Routes `buf` (an IP packet at byte 14 of an Ethernet frame) toward
    /// `dst`: fills the Ethernet header and transmits, or resolves the next
    /// hop first (the packet waits in a bounded queue).
    pub fn send_ip(&mut self, mut buf: B, dst: IpAddr, now: u64, io: &mut impl Io<B>) {
        if buf.len() >= HEADER_LEN {
            if let Some((port, src_mac, dst_mac)) = self.hops.hit(dst, self.neigh.generation(), now)
            {
                fill_l2(buf.data_mut(), dst, src_mac);
                buf.data_mut()[0..6].copy_from_slice(&dst_mac.0);
                return self.tx(io, port, buf);
            }
        }
        self.send_ip_resolving(buf, dst, now, io)
    }

    /// [`Stack::send_ip`] without a fresh neighbour part in the route
    /// cache: the route (cached or looked up), then the neighbour table.
    /// Apart, so that the per-packet case stays small.
    #[cold]
    #[inline(never)]
    fn send_ip_resolving(&mut self, mut buf: B, dst: IpAddr, now: u64, io: &mut impl Io<B>) {
        let Some(h) = self.hops.hop(dst) else {
            return self.drop_buf(buf, Counter::DropNoRoute);
        };
        if buf.len() < HEADER_LEN {
            return self.drop_buf(buf, Counter::DropMalformed);
        }
        let (port, hop) = (h.port, h.via);
        fill_l2(buf.data_mut(), dst, h.src_mac);
        match self.neigh.lookup(hop, port, now) {
            Lookup::Mac { mac, until } => {
                buf.data_mut()[0..6].copy_from_slice(&mac.0);
                self.hops.resolved(&h, mac, self.neigh.generation(), until);
                self.tx(io, port, buf);
            }
            Lookup::Resolve { probe } => {
                if probe {
                    self.solicit(hop, port, io);
                }
                match self.neigh.park(hop, port, buf) {
                    Ok(()) => self.counters.inc(Counter::Queued),
                    Err(buf) => self.drop_buf(buf, Counter::DropPendingFull),
                }
            }
            Lookup::Full => self.drop_buf(buf, Counter::DropNeighborFull),
        }
    }

    /// Sends an ARP request or neighbour solicitation for `hop` on `port`.
    fn solicit(&mut self, hop: IpAddr, port: u16, io: &mut impl Io<B>) {
        let Some(iface) = self.iface(port) else {
            return;
        };
        let Some(mut buf) = io.alloc() else {
            self.counters.inc(Counter::DropNoBuffer);
            return;
        };
        let built = match hop {
            IpAddr::V4(h) => arp::build_request(&mut buf, iface, h),
            IpAddr::V6(h) => ndp::build_solicitation(&mut buf, iface, h),
        };
        if built {
            self.counters.inc(if hop.is_ipv4() {
                Counter::ArpRequested
            } else {
                Counter::NdpSolicited
            });
            self.tx(io, port, buf);
        } else {
            self.drop_buf(buf, Counter::DropNoBuffer);
        }
    }

    /// Records a neighbour and sends whatever waited for it.
    pub(super) fn learn(
        &mut self,
        ip: IpAddr,
        port: u16,
        mac: MacAddr,
        now: u64,
        io: &mut impl Io<B>,
    ) {
        if mac.is_multicast() || mac == MacAddr([0; 6]) {
            return;
        }
        if !self.neigh.learn(ip, port, mac, now) {
            self.counters.inc(Counter::DropNeighborFull);
            return;
        }
        self.counters.inc(Counter::NeighborLearned);
        let counters = &self.counters;
        let n = self.neigh.release(ip, |port, mac, mut buf| {
            buf.data_mut()[0..6].copy_from_slice(&mac.0);
            match vlan::tag(port, &mut buf) {
                Some(port) => io.tx(port, buf),
                None => counters.inc(Counter::DropNoBuffer),
            }
        });
        self.counters.add(Counter::Released, n as u64);
    }

    /// Retries and expiry of pending resolutions; cheap when nothing is due.
    pub fn tick(&mut self, now: u64, io: &mut impl Io<B>) {
        self.hops.set_now(now);
        if now.saturating_sub(self.last_tick) < TICK_MS {
            return;
        }
        self.last_tick = now;
        let mut due: [(IpAddr, u16); 8] = [(IpAddr::V4([0, 0, 0, 0].into()), 0); 8];
        let mut n_due = 0;
        let counters = &self.counters;
        self.neigh.expire(
            now,
            |ip, port| {
                if n_due < due.len() {
                    due[n_due] = (ip, port);
                    n_due += 1;
                }
            },
            |buf| {
                counters.inc(Counter::DropUnresolved);
                drop(buf);
            },
        );
        for &(ip, port) in &due[..n_due] {
            self.solicit(ip, port, io);
        }
    }
}
