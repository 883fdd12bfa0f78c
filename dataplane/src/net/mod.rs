//! L2/L3 on the director's own ports: what a host must do to be reachable,
//! and the next-hop resolution every forwarded packet needs.
//!
//! Why it is in the engine and pure: ARP, NDP and ICMP echo run on every
//! worker's fast path, and their correctness (the exact reply bytes, when
//! to learn a neighbour, when to give up) is best shown on byte buffers.
//! Everything here works on [`PacketBuf`] with time injected in
//! milliseconds; [`Io`] gives the stack fresh buffers and a transmit
//! function, which the worker backs with a mempool and tx bursts.
//!
//! * [`Stack::input`]: one received frame. ARP and neighbour discovery are
//!   the stack's: requests and solicitations for our addresses (and the
//!   stage's service addresses on the segment) are answered, replies and
//!   advertisements are learned. Every other IPv4/IPv6 packet goes to the
//!   [`Stage`] first (the load balancer plugs in there, so it also sees ICMP
//!   errors sent to our addresses and VIPs equal to a port address), after
//!   the checks Linux makes before IPVS sees a packet (`inbound`: header
//!   checksum, martian addresses, link padding cut); what it passes back is
//!   ours if it is an ICMP/ICMPv6 echo request to our addresses or a VIP
//!   (the reply is routed, so it resolves its next hop like any other
//!   packet), and a VIP port no service covers gets what a Linux host
//!   sends ([`host`]: a TCP reset, ICMP port unreachable, rate-limited).
//!   Everything else is dropped and counted by reason ([`Counter`]).
//!   An 802.1Q-tagged frame is untagged and handled as received on its
//!   VLAN's interface ([`vlan`]); what leaves on a VLAN interface is tagged.
//!   With a kernel interface on the port ([`Interface::kernel`]), what the
//!   stage passes back and [`crate::exception::classify`] calls the
//!   kernel's goes there instead (through [`Io::except`]), and so do
//!   copies of neighbour answers.
//! * [`Stack::send_ip`]: route and resolve an IP packet (a reply, or what
//!   the stage forwards): known neighbour -> Ethernet header and tx; unknown
//!   -> ARP request / neighbour solicitation and a bounded parking queue.
//!   The route, the next hop's MACs, the source address and the MTU come
//!   from one per-worker cache ([`RouteCache`]) that the stage reads too.
//! * [`Stack::tick`]: retries and expiry; call it between bursts.

mod arp;
pub mod counters;
pub mod floating;
mod forward;
mod fragout;
pub mod host;
mod icmp;
mod inbound;
pub mod ledger;
mod ndp;
pub mod neighbor;
pub mod portindex;
pub mod route;
pub mod routecache;
mod stack;
pub mod vlan;

pub use counters::{Counter, NetCounters};
pub use floating::{Floating, FloatingCell};
pub use neighbor::NeighborTable;
pub use route::{Route, RouteTable};
pub use routecache::RouteCache;
#[cfg(feature = "dpdk")]
pub(crate) use stack::front;
pub use stack::{Io, Stack};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::buf::PacketBuf;
use crate::wire::ethernet::MacAddr;
use crate::wire::{PacketMeta, ParseError};

/// An address with a prefix length (`198.18.0.1/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// `addr/len`; `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Prefix { addr, len })
    }

    /// Whether `ip` (same family) is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(longer.addr)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a prefix string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address/length such as 198.18.0.1/24 or 2001:db8::1/64")]
pub struct PrefixError(pub String);

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let err = || PrefixError(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let len: u8 = l.parse().map_err(|_| err())?;
        Prefix::new(addr, len).ok_or_else(err)
    }
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(out))
}

/// The slot of `addr` in a direct-mapped cache of `slots` entries (a power
/// of two): a multiplicative hash of the address's low 32 bits (IPv4) or of
/// its last 64 folded (IPv6), for the small per-worker caches keyed by
/// destination (next hops, source addresses).
#[inline]
pub fn addr_slot(addr: IpAddr, slots: usize) -> usize {
    let k = match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
                ^ u32::from_be_bytes([o[8], o[9], o[10], o[11]])
        }
    };
    slot_of_word(k, slots)
}

/// [`addr_slot`] of an IPv4 address.
#[inline(always)]
pub fn addr_slot_v4(addr: Ipv4Addr, slots: usize) -> usize {
    slot_of_word(u32::from(addr), slots)
}

#[inline(always)]
fn slot_of_word(k: u32, slots: usize) -> usize {
    // The top bits of the product are the best mixed.
    let bits = slots.trailing_zeros().clamp(1, 31);
    (k.wrapping_mul(0x9E37_79B9) >> (32 - bits)) as usize & (slots - 1)
}

/// The L3 identity of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The DPDK port id.
    pub port: u16,
    pub mac: MacAddr,
    /// Our addresses on it, with their on-link prefix lengths.
    pub addrs: Vec<Prefix>,
    /// The port's MTU (IP packet size), for the stage's too-big checks.
    pub mtu: u16,
    /// Whether the port has a kernel interface: the director's own traffic
    /// that uvsd does not handle goes there ([`crate::exception`]).
    pub kernel: bool,
}

impl Interface {
    pub fn has_addr(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|p| p.addr == ip)
    }
    /// Whether `ip` is on one of this port's connected prefixes.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|p| p.contains(ip))
    }
    /// The IPv4 address to speak from toward `peer` (same prefix first).
    pub fn v4_source(&self, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        let pick = |p: &Prefix| match p.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        };
        self.addrs
            .iter()
            .filter(|p| p.contains(IpAddr::V4(peer)))
            .find_map(pick)
            .or_else(|| self.addrs.iter().find_map(pick))
    }
    /// The IPv6 address to speak from toward `peer` (same prefix first).
    pub fn v6_source(&self, peer: Ipv6Addr) -> Option<Ipv6Addr> {
        let pick = |p: &Prefix| match p.addr {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        };
        self.addrs
            .iter()
            .filter(|p| p.contains(IpAddr::V6(peer)))
            .find_map(pick)
            .or_else(|| self.addrs.iter().find_map(pick))
    }
}

/// The whole L3 configuration a worker's [`Stack`] starts from.
#[derive(Debug, Clone, Default)]
pub struct L3Config {
    pub interfaces: Vec<Interface>,
    /// Static routes: prefix via gateway (the port is the gateway's).
    pub routes: Vec<(Prefix, IpAddr)>,
    /// Static neighbours: address and MAC (the port is found by prefix).
    pub neighbors: Vec<(IpAddr, MacAddr)>,
    /// Whether packets for neither a service nor the director are routed
    /// on, per family (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`).
    pub forwarding: Forwarding,
}

/// The router switches, as Linux's `net.ipv4.ip_forward` and
/// `net.ipv6.conf.all.forwarding`: off unless the config says so
/// (docs/design/router.md says why).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub v4: bool,
    pub v6: bool,
}

/// Why an [`L3Config`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum L3ConfigError {
    #[error("address {0} is configured twice")]
    DuplicateAddress(IpAddr),
    #[error("address {a} (port {pa}) overlaps prefix {b} of another port (port {pb})")]
    Overlap {
        a: Prefix,
        pa: u16,
        b: Prefix,
        pb: u16,
    },
    #[error("route to {to}: gateway {via} is not on any port's connected prefix")]
    GatewayNotOnLink { to: Prefix, via: IpAddr },
    #[error("neighbor {0} is not on any port's connected prefix")]
    NeighborNotOnLink(IpAddr),
}

impl L3Config {
    /// Checks addresses are unique and ports' prefixes do not overlap, and
    /// builds the route table (connected routes, then static ones).
    pub fn route_table(&self) -> Result<RouteTable, L3ConfigError> {
        let all: Vec<(u16, Prefix)> = self
            .interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(move |p| (i.port, *p)))
            .collect();
        for (i, (pa, a)) in all.iter().enumerate() {
            for (pb, b) in &all[i + 1..] {
                if a.addr == b.addr {
                    return Err(L3ConfigError::DuplicateAddress(a.addr));
                }
                if pa != pb && a.overlaps(b) {
                    return Err(L3ConfigError::Overlap {
                        a: *a,
                        pa: *pa,
                        b: *b,
                        pb: *pb,
                    });
                }
            }
        }
        let mut t = RouteTable::new();
        for (port, p) in &all {
            t.add(Route {
                prefix: *p,
                via: None,
                port: *port,
            });
        }
        for (to, via) in &self.routes {
            let port = t
                .connected_port(*via)
                .ok_or(L3ConfigError::GatewayNotOnLink { to: *to, via: *via })?;
            t.add(Route {
                prefix: *to,
                via: Some(*via),
                port,
            });
        }
        for (ip, _) in &self.neighbors {
            t.connected_port(*ip)
                .ok_or(L3ConfigError::NeighborNotOnLink(*ip))?;
        }
        Ok(t)
    }
}

/// What the forwarding stage did with a packet.
#[derive(Debug)]
pub enum StageVerdict<B> {
    /// Route the packet toward `dst` (the stack resolves the next hop and
    /// writes the Ethernet header; the IP packet must start at byte 14).
    Route { buf: B, dst: IpAddr },
    /// Not the stage's: the stack hands it to the port's kernel interface
    /// (if it has one and [`crate::exception::classify`] says so), handles
    /// it (echo to our addresses) or drops it (`drop_not_local`,
    /// `drop_local_not_icmp`).
    Pass { buf: B },
    /// Drop it (the stack counts it as `drop_not_local` unless the stage
    /// counted it itself and says so with `counted`).
    Drop { buf: B, counted: bool },
    /// The packet belongs to a connection another worker owns: hand it to
    /// worker `worker` (the worker batches hand-overs per owner).
    HandOver { buf: B, worker: usize },
    /// A datagram the stage reassembled from fragments and rewrote, held
    /// by the stage ([`Stage::datagram`]): the stack sends it toward `dst`,
    /// fragmented to the egress MTU where the IP header allows, then
    /// tells the stage ([`Stage::datagram_sent`]). `buf` (the fragment
    /// that completed it) is freed.
    Datagram { buf: B, dst: IpAddr },
    /// A datagram the stage reassembled, held as for `Datagram`, whose
    /// connection another worker owns: the stack cuts it into fragments of
    /// identification `ident` (which leads them to `worker`, see
    /// [`crate::frag::owner`]) and hands them to `worker`, then tells the
    /// stage. `buf` is freed.
    HandOverDatagram { buf: B, worker: usize, ident: u32 },
}

/// What the fast lane's balancer step ([`Stage::lane`]) decided; the
/// buffer stays with the caller (no verdict carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Rewritten: route it toward this address ([`StageVerdict::Route`]).
    Route(IpAddr),
    /// [`Lane::Route`] toward an IPv4 address, the lane's common answer:
    /// four bytes a register holds, where the `IpAddr` went through the
    /// stack's frame, and the route cache's IPv4 lookup
    /// ([`RouteCache::hit_v4`]) without the family's tests.
    Route4(std::net::Ipv4Addr),
    /// Not the balancer's: the stack's own handling follows
    /// ([`StageVerdict::Pass`]).
    Pass,
    /// Dropped, and counted by the stage ([`StageVerdict::Drop`] with
    /// `counted`).
    Drop,
    /// Not the lane's: the packet, untouched, takes the general path's
    /// stage step ([`Stage::process`]; the stage may keep what it looked
    /// up for it, so that nothing is done twice).
    General,
}

impl Lane {
    /// Route toward `dst`: [`Lane::Route4`] for an IPv4 address.
    #[inline(always)]
    pub fn route(dst: IpAddr) -> Lane {
        match dst {
            IpAddr::V4(a) => Lane::Route4(a),
            IpAddr::V6(_) => Lane::Route(dst),
        }
    }
}

/// The stage between classification and transmit, where the load balancer
/// plugs in. It sees every IPv4/IPv6 packet except neighbour discovery
/// before the stack's own handling (so a VIP may equal a port address), and
/// [`Pass`](StageVerdict::Pass)es what is not its business.
pub trait Stage<B: PacketBuf> {
    /// One packet of the burst, with its classification. `routes` is the
    /// worker's route cache, for the source address and MTU towards where
    /// the stage sends the packet (the stack then reads the MACs from the
    /// same entry).
    fn process(
        &mut self,
        rx_port: u16,
        buf: B,
        meta: &PacketMeta,
        now_ms: u64,
        routes: &RouteCache,
    ) -> StageVerdict<B>;
    /// Whether the established-flow fast lane ([`Stack::input_lane`]) may
    /// run: decided between bursts (for [`crate::lb::LbStage`]: one worker
    /// and no filter rule; source NAT's steps are the lane's own).
    /// The default: never.
    fn lane_on(&self) -> bool {
        false
    }
    /// The fast lane's balancer step for a whole IPv4 TCP/UDP packet that
    /// passed the inbound checks, called only while [`Stage::lane_on`]
    /// holds: what [`Stage::process`] would decide, without the buffer
    /// travelling in a verdict. The default passes every packet back.
    fn lane(
        &mut self,
        _buf: &mut B,
        _meta: &PacketMeta,
        _now_ms: u64,
        _routes: &RouteCache,
    ) -> Lane {
        Lane::Pass
    }
    /// The first step of the general path for a packet the lane's stage
    /// step answered [`Lane::General`] (in [`Stack::lane_general`]): what
    /// [`Stage::process`] would decide for it when the stage can tell that
    /// without the general path (for [`crate::lb::LbStage`]: a packet
    /// without a connection, which it schedules), else [`Lane::General`]
    /// with `buf` and the stage's state untouched. The default: the
    /// general path.
    fn lane_new(
        &mut self,
        _buf: &mut B,
        _meta: &PacketMeta,
        _now_ms: u64,
        _routes: &RouteCache,
    ) -> Lane {
        Lane::General
    }
    /// Whether the stage's lane step has steps of its own in front of
    /// [`Stage::lane`]'s for now (for [`crate::lb::LbStage`]: source NAT's,
    /// or the connection's owner with more than one worker), decided
    /// between bursts: then the stack takes [`Stage::lane_front`] instead,
    /// out of line, or, while [`Stage::lane_owned`] holds, the owner's
    /// steps. The default: none.
    fn lane_fronted(&self) -> bool {
        false
    }
    /// Whether the lane's step in front is the connection's owner (more
    /// than one worker; then [`Stage::lane_fronted`] holds too), decided
    /// between bursts. The default: never.
    fn lane_owned(&self) -> bool {
        false
    }
    /// While [`Stage::lane_owned`] holds: the worker owning the
    /// connection of a whole IPv4 TCP/UDP packet from `src` to `dst` that
    /// passed the inbound checks when it is not this one (the packet is
    /// handed over to it, as [`Stage::process`] would hand it over), else
    /// `None`.
    fn lane_owner(
        &self,
        _meta: &PacketMeta,
        _src: std::net::Ipv4Addr,
        _dst: std::net::Ipv4Addr,
    ) -> Option<usize> {
        None
    }
    /// While [`Stage::lane_owned`] holds: [`Stage::lane`] for a packet
    /// this worker owns (nothing else is in front of the balancer then).
    /// The default: [`Stage::lane`].
    fn lane_owned_step(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now_ms: u64,
        routes: &RouteCache,
    ) -> Lane {
        self.lane(buf, meta, now_ms, routes)
    }
    /// [`Stage::lane`] with the stage's steps in front of it, while
    /// [`Stage::lane_fronted`] holds. The default: [`Stage::lane`].
    fn lane_front(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now_ms: u64,
        routes: &RouteCache,
    ) -> Lane {
        self.lane(buf, meta, now_ms, routes)
    }
    /// Called with a whole received burst before its packets are processed
    /// one by one (batched lookups that overlap cache misses).
    fn warm(&mut self, _metas: &[Result<PacketMeta, ParseError>]) {}
    /// Called before the burst's packet `i` (of those [`Stage::warm`] was
    /// given) is processed: the warm-up carried on a few packets ahead.
    #[inline(always)]
    fn warm_next(&mut self, _i: usize) {}
    /// Whether [`Stage::warm`] would do anything now (if not, the worker
    /// does not parse the burst ahead).
    fn warms(&self) -> bool {
        false
    }
    /// Called once at the end of every burst (flush batched work).
    fn end_burst(&mut self, _now_ms: u64) {}
    /// Called on every turn of the worker loop, with or without traffic:
    /// configuration pick-up and housekeeping. Returns true when the set of
    /// [`Stage::service_addrs`] may have changed.
    fn tick(&mut self, _now_ms: u64) -> bool {
        false
    }
    /// Called after [`Stage::tick`] once the worker has also applied what
    /// the tick changed: the configuration picked up is now in force.
    fn acknowledge(&mut self) {}
    /// Addresses the stage serves (virtual service addresses): the stack
    /// answers ARP and neighbour solicitations for those on a port's
    /// connected prefix, as for its own addresses.
    fn service_addrs(&self) -> Vec<IpAddr> {
        Vec::new()
    }
    /// The routes changed (a reload of the config, between bursts): answers
    /// the stage kept that read them are forgotten.
    fn routes_changed(&mut self) {}
    /// The frame of the datagram a [`StageVerdict::Datagram`] announced.
    fn datagram(&self) -> Option<&[u8]> {
        None
    }
    /// The stack is done with [`Stage::datagram`].
    fn datagram_sent(&mut self) {}
    /// Whether `proto` (TCP or UDP) to `addr`:`port` is a virtual service:
    /// such packets never go to a kernel interface, even when the stage
    /// passes them back.
    fn serves(&self, _proto: u8, _addr: IpAddr, _port: u16) -> bool {
        false
    }
    /// `nat POSTROUTING` for a packet the stack routes ([`forward`]),
    /// leaving by `out_port` whose address toward the destination is
    /// `out_addr`: the stage may rewrite its source ([`crate::snat`]).
    fn postrouting(
        &mut self,
        _buf: &mut B,
        _meta: &PacketMeta,
        _out_port: u16,
        _out_addr: IpAddr,
        _now_ms: u64,
    ) -> crate::snat::Postrouting {
        crate::snat::Postrouting::Unchanged
    }
}

/// Routes and static neighbours as the daemon publishes them on reload,
/// for every worker to pick up between two turns.
///
/// Why a cell and not a message: a reload is rare and replaces the whole
/// L3 table, so each worker compares one generation number per turn and
/// copies the new table when it moved, as with the service snapshot.
#[derive(Debug, Default)]
pub struct L3Cell {
    current: arc_swap::ArcSwap<L3Routes>,
    generation: std::sync::atomic::AtomicU64,
}

/// What [`L3Cell`] holds.
#[derive(Debug, Clone, Default)]
pub struct L3Routes {
    pub routes: RouteTable,
    pub neighbors: Vec<(IpAddr, MacAddr)>,
}

impl L3Cell {
    /// Publishes new routes and neighbours to every worker.
    pub fn publish(&self, l3: L3Routes) {
        use std::sync::atomic::Ordering;
        self.current.store(std::sync::Arc::new(l3));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Moves on every publish (one atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The routes last published.
    pub fn load(&self) -> std::sync::Arc<L3Routes> {
        self.current.load_full()
    }
}

/// The stage of a director with nothing to balance: passes everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStage;

impl<B: PacketBuf> Stage<B> for NoStage {
    fn process(
        &mut self,
        _rx_port: u16,
        buf: B,
        _meta: &PacketMeta,
        _now_ms: u64,
        _routes: &RouteCache,
    ) -> StageVerdict<B> {
        StageVerdict::Pass { buf }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_contain_and_overlap() {
        let p: Prefix = "198.18.0.1/24".parse().unwrap();
        assert!(p.contains("198.18.0.200".parse().unwrap()));
        assert!(!p.contains("198.18.1.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("198.19.1.1".parse().unwrap()));
        let v6: Prefix = "2001:db8::1/64".parse().unwrap();
        assert!(v6.contains("2001:db8::ffff".parse().unwrap()));
        assert!(!v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(p.overlaps(&"198.18.0.0/16".parse().unwrap()));
        assert!(!p.overlaps(&"198.18.1.1/24".parse().unwrap()));
        assert!("198.18.0.1/33".parse::<Prefix>().is_err());
        assert!("198.18.0.1".parse::<Prefix>().is_err());
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("02:00:00:00:01:0a"),
            Some(MacAddr([2, 0, 0, 0, 1, 10]))
        );
        assert_eq!(parse_mac("02:00:00:00:01"), None);
        assert_eq!(parse_mac("02:00:00:00:01:0a:0b"), None);
        assert_eq!(parse_mac("2:0:0:0:1:a"), None);
        assert_eq!(parse_mac("02-00-00-00-01-0a"), None);
    }

    #[test]
    fn config_rejects_conflicts_and_off_link_gateways() {
        let iface = |port, addrs: &[&str]| Interface {
            port,
            mac: MacAddr([2, 0, 0, 0, 0, port as u8]),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: 1500,
            kernel: false,
        };
        let mut c = L3Config {
            interfaces: vec![iface(0, &["198.18.0.1/24"]), iface(1, &["198.18.1.1/24"])],
            routes: vec![(
                "198.19.0.0/16".parse().unwrap(),
                "198.18.1.2".parse().unwrap(),
            )],
            neighbors: vec![],
            forwarding: Default::default(),
        };
        let t = c.route_table().unwrap();
        assert_eq!(
            t.next_hop("198.19.0.5".parse().unwrap()),
            Some((1, "198.18.1.2".parse().unwrap()))
        );
        c.routes[0].1 = "198.18.7.2".parse().unwrap();
        assert!(matches!(
            c.route_table(),
            Err(L3ConfigError::GatewayNotOnLink { .. })
        ));
        c.routes.clear();
        c.interfaces[1] = iface(1, &["198.18.0.9/24"]);
        assert!(matches!(
            c.route_table(),
            Err(L3ConfigError::Overlap { .. })
        ));
        c.interfaces[1] = iface(1, &["198.18.0.1/24"]);
        assert!(matches!(
            c.route_table(),
            Err(L3ConfigError::DuplicateAddress(_))
        ));
    }
}

#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod lane_snat_tests;
#[cfg(test)]
mod lane_tests;
#[cfg(test)]
mod routecache_tests;
#[cfg(test)]
mod stack_tests;
#[cfg(test)]
mod vlan_tests;
