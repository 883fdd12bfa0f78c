//! Source NAT at its two places in a worker's path: after routing for a
//! packet leaving (`nat POSTROUTING`, [`Snat::outbound`]), and before
//! anything else for a reply arriving at a translated address
//! ([`Snat::reply`], conntrack's de-NAT in PREROUTING).
//!
//! Both rewrites are the load balancer's NAT rewrites
//! ([`crate::xmit::nat`]): addresses, ports and checksums patched (RFC
//! 1624), TTL decremented, so a translated packet is routed on as it is.

use std::net::IpAddr;

use super::table::{self, Mappings, Refused};
use super::{nat_packet, NatFacts, NatRules, ToSource};
use crate::buf::PacketBuf;
use crate::conn::{ConnAddr, ConnKey};
use crate::net::{Counter, Interface};
use crate::rss::Ownership;
use crate::sets::SetTable;
use crate::wire::ipv4::protocol;
use crate::wire::parse_icmp_quote;
use crate::wire::{icmp, icmpv6, Fragment, PacketMeta, L3};
use crate::xmit::icmp_both::{icmp_error_rewrite, IcmpRewrite};
use crate::xmit::nat::{nat_inbound, nat_outbound};

/// What the source NAT did with a routed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postrouting {
    /// No rule maps it (or it cannot be mapped): routed as it is.
    Unchanged,
    /// Source rewritten and TTL decremented.
    Translated,
    /// A rule maps it but no mapping could be made: dropped, counted as
    /// this.
    Refused(Counter),
}

/// What became of a packet addressed to a translated address
/// ([`Snat::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not a reply of ours: untouched.
    NotOurs,
    /// Translated back (a reply, or an ICMP error about a mapping's
    /// packet): route it to this address.
    Route(IpAddr),
    /// An ICMP error about a translated port with no mapping (a flow
    /// that is gone): drop it, counted.
    Stray,
}

/// Mappings a worker holds at most.
pub const CAPACITY: u32 = 1 << 16;

/// One worker's source NAT: its mappings and the ports' addresses
/// (MASQUERADE's pools).
#[derive(Debug)]
pub struct Snat {
    maps: Mappings,
    ifaces: Vec<Interface>,
    /// This worker's number (its slot in the rule counters).
    me: usize,
    /// The lookup the stage made for the packet it last handled
    /// ([`Snat::lookup`]), for that packet's `nat POSTROUTING`.
    pending: Pending,
}

/// An IPv4 TCP/UDP packet's mapping lookup, made in front of the load
/// balancer and used again by its `nat POSTROUTING` ([`Snat::outbound`]):
/// the key is built and hashed once per packet. Small on purpose: it is
/// written for every such packet.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    /// The packet it was made for ([`tuple_v4`]); `ports` 0: none.
    addrs: u64,
    ports: u64,
    hash: u32,
    /// The mapping's slot, if the flow has one.
    slot: Option<u32>,
    /// The clearance epoch to stamp on the mapping (0: none).
    clear: u64,
}

/// An IPv4 packet's addresses (source in the high half) and its ports and
/// protocol (never 0), as [`Pending`] keeps them. Always inlined: every
/// routed packet builds it twice (its lookup and its POSTROUTING), and out
/// of line it cost 24 instructions per packet.
#[inline(always)]
fn tuple_v4(meta: &PacketMeta) -> Option<(u64, u64)> {
    match (meta.src, meta.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some((
            u64::from(u32::from(s)) << 32 | u64::from(u32::from(d)),
            1 << 40
                | u64::from(meta.sport) << 24
                | u64::from(meta.dport) << 8
                | u64::from(meta.protocol),
        )),
        _ => None,
    }
}

/// The echo identifier of an ICMP / ICMPv6 echo request or reply, and
/// whether it is a request; `None` for other messages.
fn echo(buf: &[u8], meta: &PacketMeta) -> Option<(u16, bool)> {
    let req = match (meta.l3, meta.protocol) {
        (L3::Ipv4, protocol::ICMP) => match meta.icmp_type {
            icmp::kind::ECHO_REQUEST => true,
            icmp::kind::ECHO_REPLY => false,
            _ => return None,
        },
        (L3::Ipv6, protocol::ICMPV6) => match meta.icmp_type {
            icmpv6::kind::ECHO_REQUEST => true,
            icmpv6::kind::ECHO_REPLY => false,
            _ => return None,
        },
        _ => return None,
    };
    let at = usize::from(meta.l4_offset) + 4;
    let id = buf.get(at..at + 2)?;
    Some((u16::from_be_bytes([id[0], id[1]]), req))
}

impl Snat {
    /// Worker `me` of `own`, with the ports `ifaces` (MASQUERADE maps to
    /// their addresses).
    pub fn new(ifaces: Vec<Interface>, own: Ownership, me: usize, now: u64) -> Snat {
        Snat {
            maps: Mappings::new(CAPACITY, own, me, now),
            ifaces,
            me,
            pending: Pending::default(),
        }
    }

    /// Whether `a` is one of the ports' addresses.
    fn is_own(&self, a: &IpAddr) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|p| p.addr == *a))
    }

    /// Builds the pools `rules` need (between bursts, when they changed).
    pub fn prepare(&mut self, rules: &NatRules) {
        for (addr, ports) in rules.addresses() {
            self.maps.ensure_pool(addr, ports);
        }
        let ranges: Vec<_> = rules.masquerade_ranges().collect();
        for r in ranges {
            for a in self
                .ifaces
                .iter()
                .flat_map(|i| i.addrs.iter().map(|p| p.addr))
            {
                self.maps.ensure_pool(a, r.clone());
            }
        }
    }

    /// Frees expired mappings (at most `max` examined).
    pub fn expire(&mut self, now: u64, max: usize) -> usize {
        self.maps.expire(now, max)
    }

    /// Mappings in use.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The mappings as [`Mappings::live_for_tests`] lists them.
    #[cfg(test)]
    pub(crate) fn live_for_tests(&self) -> Vec<String> {
        self.maps.live_for_tests()
    }

    /// Looks up the mapping of an IPv4 TCP/UDP packet (`server ->
    /// outside`) before the load balancer sees it, and keeps the lookup
    /// for the packet's `nat POSTROUTING`. Whether its mapping carries the
    /// clearance `epoch` (never 0): the balancer passed this flow on to
    /// routing in this epoch, so it would pass this packet too (see
    /// [`crate::lb::stage`]). Other packets: nothing kept, `false`.
    /// Inlined, and the key built and hashed from the packed IPv4 tuple:
    /// it runs for every routed packet (about 60 instructions per packet
    /// less than the call with `ConnKey::of_packet` and [`table::hash`]).
    #[inline(always)]
    pub fn lookup(&mut self, meta: &PacketMeta, epoch: u64) -> bool {
        let Some((addrs, ports)) = tuple_v4(meta) else {
            self.pending.ports = 0;
            return false;
        };
        let (src, dst) = ((addrs >> 32) as u32, addrs as u32);
        let key = ConnKey::new(
            meta.protocol,
            ConnAddr::from_v4(src.to_be_bytes()),
            meta.sport,
            ConnAddr::from_v4(dst.to_be_bytes()),
            meta.dport,
        );
        let hash = table::hash_v4(src, dst, meta.sport, meta.dport, meta.protocol);
        let slot = self.maps.find_out(&key, hash);
        let cleared = slot.is_some_and(|i| self.maps.cleared(i) == epoch);
        self.pending = Pending {
            addrs,
            ports,
            hash,
            slot,
            clear: if cleared { epoch } else { 0 },
        };
        cleared
    }

    /// The load balancer passed the packet last looked up
    /// ([`Snat::lookup`]) in clearance `epoch`: its mapping, found or made
    /// at POSTROUTING, is stamped with it.
    #[inline]
    pub fn passed(&mut self, epoch: u64) {
        self.pending.clear = epoch;
    }

    /// `nat POSTROUTING` for a routed packet leaving by `out_port`, whose
    /// address toward the destination is `out_addr` (MASQUERADE's); the
    /// nat chains (with `sets` for `-m set`) are walked for a flow's first
    /// packet only. The mark they start from is 0 (the mangle mark stays
    /// with the balancer's part of the path).
    ///
    /// The packet the stage looked up ([`Snat::lookup`]) is served in
    /// line; any other (ICMP, IPv6, a packet the balancer saw first) out
    /// of line.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn outbound<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        rules: &NatRules,
        sets: &SetTable,
        out_port: u16,
        out_addr: IpAddr,
        now: u64,
    ) -> Postrouting {
        let p = self.pending;
        self.pending.ports = 0;
        if rules.is_empty() || meta.fragment == Fragment::Later {
            return Postrouting::Unchanged;
        }
        if p.ports != 0 && tuple_v4(meta) == Some((p.addrs, p.ports)) {
            let (addr, port) = match p.slot {
                Some(i) => self.maps.outbound_at(i, meta.tcp_flags, p.clear, now),
                None => match self.map(meta, rules, sets, out_port, out_addr, &p, now) {
                    Ok(m) => m,
                    Err(r) => return r,
                },
            };
            return match nat_outbound(buf, meta, addr, port) {
                Ok(()) => Postrouting::Translated,
                Err(_) => Postrouting::Refused(Counter::DropMalformed),
            };
        }
        self.outbound_unlooked(buf, meta, rules, sets, out_port, now, out_addr)
    }

    /// [`Snat::outbound`] for a packet whose mapping was not looked up in
    /// front of the balancer: the key built and looked up here.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn outbound_unlooked<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        rules: &NatRules,
        sets: &SetTable,
        out_port: u16,
        now: u64,
        out_addr: IpAddr,
    ) -> Postrouting {
        let (sport, dport) = match meta.protocol {
            protocol::TCP | protocol::UDP => (meta.sport, meta.dport),
            _ => match echo(buf.data(), meta) {
                Some((id, true)) => (id, 0),
                _ => return Postrouting::Unchanged,
            },
        };
        let orig = ConnKey::new(
            meta.protocol,
            ConnAddr::from(meta.src),
            sport,
            ConnAddr::from(meta.dst),
            dport,
        );
        let (addr, port) = match self.maps.outbound(&orig, meta.tcp_flags, now) {
            Some(m) => m,
            None => {
                let Some(t) = self.decide(meta, rules, sets, out_port) else {
                    return Postrouting::Unchanged;
                };
                let addr = t.addr(out_addr, meta.src, meta.dst);
                if addr.is_ipv4() != meta.src.is_ipv4() {
                    return Postrouting::Unchanged;
                }
                match self.maps.create(&orig, addr, &t.ports, meta.tcp_flags, now) {
                    Ok(m) => m,
                    Err(Refused::NoPort) => return Postrouting::Refused(Counter::DropSnatNoPort),
                    Err(Refused::Full) => return Postrouting::Refused(Counter::DropSnatTableFull),
                }
            }
        };
        match nat_outbound(buf, meta, addr, port) {
            Ok(()) => Postrouting::Translated,
            Err(_) => Postrouting::Refused(Counter::DropMalformed),
        }
    }

    /// A new mapping for the flow of `p` (looked up, not found), if the
    /// nat chains map it.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn map(
        &mut self,
        meta: &PacketMeta,
        rules: &NatRules,
        sets: &SetTable,
        out_port: u16,
        out_addr: IpAddr,
        p: &Pending,
        now: u64,
    ) -> Result<(IpAddr, u16), Postrouting> {
        let Some(t) = self.decide(meta, rules, sets, out_port) else {
            return Err(Postrouting::Unchanged);
        };
        let addr = t.addr(out_addr, meta.src, meta.dst);
        if addr.is_ipv4() != meta.src.is_ipv4() {
            return Err(Postrouting::Unchanged);
        }
        self.maps
            .create_hashed(
                &ConnKey::of_packet(meta),
                p.hash,
                addr,
                &t.ports,
                meta.tcp_flags,
                p.clear,
                now,
            )
            .map_err(|r| match r {
                Refused::NoPort => Postrouting::Refused(Counter::DropSnatNoPort),
                Refused::Full => Postrouting::Refused(Counter::DropSnatTableFull),
            })
    }

    /// Both nat chains for a routed flow's first packet. Inlined into
    /// [`Self::map`], its one caller (itself out of line): the rules' and
    /// the sets' views of the packet are then built in place, not copied.
    #[inline(always)]
    fn decide<'r>(
        &self,
        meta: &PacketMeta,
        rules: &'r NatRules,
        sets: &SetTable,
        out_port: u16,
    ) -> Option<&'r ToSource> {
        let has_ports = matches!(
            meta.protocol,
            protocol::TCP | protocol::UDP | protocol::SCTP
        );
        let (sport, dport) = if has_ports {
            (meta.sport, meta.dport)
        } else if meta.is_icmp() {
            let tc = u16::from(meta.icmp_type) << 8 | u16::from(meta.icmp_code);
            (tc, tc)
        } else {
            (0, 0)
        };
        let (pkt, set) = nat_packet(
            meta.protocol,
            meta.src,
            sport,
            meta.dst,
            dport,
            has_ports,
            u32::from(meta.ip_len),
            out_port,
        );
        let own = |a: &IpAddr| self.is_own(a);
        let facts = NatFacts {
            sets,
            pkt: set,
            local: &own,
        };
        let mark = rules.prerouting(&pkt, &facts, 0, self.me);
        rules.postrouting(&pkt, &facts, mark, self.me)
    }

    /// A reply to a mapping (to a translated address and port): its
    /// destination becomes the original source again, TTL decremented.
    /// An ICMP error about a mapping's packet is translated back as
    /// conntrack does (outer destination, quoted source and port,
    /// checksums: [`icmp_error_rewrite`]).
    /// The test whether a packet may be a reply is inlined (every packet
    /// in front of the balancer pays it while source NAT is on); the
    /// translation is not.
    #[inline(always)]
    pub fn reply<B: PacketBuf>(&mut self, buf: &mut B, meta: &PacketMeta, now: u64) -> Reply {
        if self.maps.is_empty()
            || !self.maps.is_nat_addr(meta.dst)
            || meta.fragment == Fragment::Later
        {
            return Reply::NotOurs;
        }
        self.reply_to_nat_addr(buf, meta, now)
    }

    /// [`Snat::reply`] for a packet to a translated address.
    #[inline(never)]
    fn reply_to_nat_addr<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
    ) -> Reply {
        if meta.is_icmp_error() {
            return self.icmp_error(buf, meta);
        }
        match self.reply_flow(buf, meta, now) {
            Some(a) => Reply::Route(a),
            None => Reply::NotOurs,
        }
    }

    /// An ICMP error to a translated address quoting a packet the
    /// mapping sent (`WAN:wport -> far:port`).
    #[cold]
    fn icmp_error<B: PacketBuf>(&mut self, buf: &mut B, meta: &PacketMeta) -> Reply {
        let Ok(q) = parse_icmp_quote(buf.data(), meta) else {
            return Reply::NotOurs;
        };
        if q.src != meta.dst || !matches!(q.protocol, protocol::TCP | protocol::UDP) {
            return Reply::NotOurs;
        }
        let k = ConnKey::answering_quote(&q);
        let Some((addr, port)) = self.maps.reply_peek(&k) else {
            return if self.maps.is_mapped_port(q.src, q.sport) {
                Reply::Stray
            } else {
                Reply::NotOurs
            };
        };
        let rw = IcmpRewrite {
            src: meta.src,
            dst: addr,
            quoted_src: (addr, port),
            quoted_dst: (q.dst, q.dport),
            seq_delta: 0,
            ack_delta: 0,
        };
        match icmp_error_rewrite(buf, meta, &q, &rw) {
            Ok(()) => Reply::Route(addr),
            Err(_) => Reply::Stray,
        }
    }

    /// A TCP/UDP or echo reply to a mapping.
    #[inline]
    fn reply_flow<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
    ) -> Option<IpAddr> {
        let (sport, dport) = match meta.protocol {
            protocol::TCP | protocol::UDP => (meta.sport, meta.dport),
            _ => match echo(buf.data(), meta) {
                Some((id, false)) => (0, id),
                _ => return None,
            },
        };
        let k = ConnKey::new(
            meta.protocol,
            ConnAddr::from(meta.src),
            sport,
            ConnAddr::from(meta.dst),
            dport,
        );
        let (addr, port) = self.maps.reply(&k, meta.tcp_flags, now)?;
        nat_inbound(buf, meta, addr, port).ok()?;
        Some(addr)
    }
}
