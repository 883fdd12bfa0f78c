//! Routing what is neither for a virtual service nor for the director: the
//! director as its real servers' gateway, as a Linux router
//! (`ip_forward`, `ip6_forward`).
//!
//! Why: a NAT real server's default gateway is the director, so its own
//! traffic (updates, DNS, calls to other services) reaches the director
//! too. A Linux director routes it when `net.ipv4.ip_forward` /
//! `net.ipv6.conf.all.forwarding` is on; UVS does the same, behind the same
//! switches ([`super::Forwarding`], `[sysctl]` in the config), after the
//! load balancer passed the packet back and the `filter FORWARD` chain
//! accepted it (the stage runs the rules before it balances).
//!
//! What a Linux router does, in its order, and so this:
//! * only unicast destinations are routed (not broadcast, not link-local,
//!   nor a link-local source: `ip6_forward` refuses those too);
//! * TTL / hop limit 1 or less: ICMP time exceeded (11/0) / ICMPv6 hop
//!   limit exceeded (3/0), from the receiving port's address
//!   (`icmp_send` picks the address of the port the error leaves by, and
//!   the error goes back where the packet came from);
//! * no route: ICMP network unreachable (3/0) / ICMPv6 no route (1/0)
//!   (`ip_error` for `RTN_UNREACHABLE`, `ip6_pkt_discard`);
//! * larger than the egress MTU: IPv4 without DF is fragmented, IPv4 with
//!   DF gets fragmentation needed (3/4) with the MTU, IPv6 packet too big;
//! * `nat POSTROUTING` (the stage's [`Stage::postrouting`]: SNAT and
//!   MASQUERADE, [`crate::snat`]) may rewrite the source;
//! * otherwise TTL / hop limit decremented (IPv4 checksum patched) and sent
//!   to the next hop.
//!
//! Every error the router originates takes a token of the worker's answer
//! budget ([`super::host::AnswerLimit`], Linux's `icmp_ratelimit`): a
//! traceroute storm or a scan of unrouted space cannot make the director a
//! packet source at line rate.

use std::net::IpAddr;

use super::stack::{Io, Stack};
use super::{Counter, Stage};
use crate::buf::PacketBuf;
use crate::snat::Postrouting;
use crate::wire::ethernet::HEADER_LEN;
use crate::wire::{PacketMeta, L3};
use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};
use crate::xmit::{check_forwardable, decrement_ttl, XmitError};

/// Whether a router may forward a packet between these addresses.
fn routable(src: IpAddr, dst: IpAddr) -> bool {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(d)) => !(d.is_broadcast() || d.is_multicast()),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let link_local = |a: std::net::Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
            !(d.is_multicast() || link_local(d) || link_local(s))
        }
        _ => false,
    }
}

/// Where a routed destination leaves: the port, its MTU and its address
/// toward the destination (MASQUERADE's).
#[derive(Debug, Clone, Copy)]
pub(super) struct Egress {
    dst: IpAddr,
    port: u16,
    mtu: u16,
    addr: IpAddr,
}

/// Entries of the egress cache (a power of two). Why a cache: the route
/// lookup scans the routes and the ports, and a router sends most packets
/// to few destinations; the routes change only on reload, which empties
/// it.
pub(super) const EGRESS_CACHE: usize = 64;

impl<B: PacketBuf> Stack<B> {
    /// The egress of `dst`, from the cache or the route table. Always
    /// inlined: every routed packet asks.
    #[inline(always)]
    fn egress_of(&mut self, dst: IpAddr) -> Option<Egress> {
        let slot = super::addr_slot(dst, EGRESS_CACHE);
        if let Some(e) = self.egress[slot] {
            if e.dst == dst {
                return Some(e);
            }
        }
        self.egress_looked_up(dst, slot)
    }

    /// [`Stack::egress_of`] when the cache misses: the route table, kept
    /// in `slot`.
    #[cold]
    #[inline(never)]
    fn egress_looked_up(&mut self, dst: IpAddr, slot: usize) -> Option<Egress> {
        let e = self
            .routes()
            .next_hop(dst)
            .and_then(|(port, _)| self.iface(port))
            .and_then(|i| {
                let addr = match dst {
                    IpAddr::V4(d) => IpAddr::V4(i.v4_source(d)?),
                    IpAddr::V6(d) => IpAddr::V6(i.v6_source(d)?),
                };
                Some(Egress {
                    dst,
                    port: i.port,
                    mtu: i.mtu,
                    addr,
                })
            })?;
        self.egress[slot] = Some(e);
        Some(e)
    }

    /// Routes `buf`, a packet for neither a service nor the director,
    /// received on `rx_port`; see the module docs. With forwarding off for
    /// its family it is dropped as `drop_not_local`, as before. Always
    /// inlined into its two callers, [`Stack::passed`] and the lane's
    /// `Stack::lane_passed` (as a call it would cost each routed packet).
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        rx_port: u16,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let on = match meta.l3 {
            L3::Ipv4 => self.forwarding.v4,
            L3::Ipv6 => self.forwarding.v6,
            L3::Arp => false,
        };
        if !on {
            return self.drop_buf(buf, Counter::DropNotLocal);
        }
        if !routable(meta.src, meta.dst) {
            return self.drop_buf(buf, Counter::DropNotRoutable);
        }
        match check_forwardable(buf.data(), meta) {
            Ok(()) => {}
            Err(XmitError::TtlExpired) => {
                return self.router_error(
                    rx_port,
                    buf,
                    meta,
                    IcmpErrorKind::TimeExceeded,
                    Counter::TimeExceededSent,
                    now,
                    io,
                );
            }
            Err(_) => return self.drop_buf(buf, Counter::DropMalformed),
        }
        let Some(Egress {
            port: out_port,
            mtu,
            addr: out_addr,
            ..
        }) = self.egress_of(meta.dst)
        else {
            return self.router_error(
                rx_port,
                buf,
                meta,
                IcmpErrorKind::NoRoute,
                Counter::NetUnreachableSent,
                now,
                io,
            );
        };
        if meta.ip_len > mtu && (meta.l3 == L3::Ipv6 || meta.dont_frag) {
            return self.router_error(
                rx_port,
                buf,
                meta,
                IcmpErrorKind::TooBig { mtu },
                Counter::TooBigSent,
                now,
                io,
            );
        }
        match stage.postrouting(&mut buf, meta, out_port, out_addr, now) {
            Postrouting::Unchanged => decrement_ttl(buf.data_mut(), meta),
            Postrouting::Translated => self.counters().inc(Counter::SnatTranslated),
            Postrouting::Refused(why) => return self.drop_buf(buf, why),
        }
        self.counters().inc(Counter::Routed);
        if meta.ip_len > mtu {
            // IPv4 without DF: cut to the egress MTU, as `ip_fragment`.
            let end = usize::from(meta.l3_offset) + usize::from(meta.ip_len);
            if usize::from(meta.l3_offset) != HEADER_LEN || buf.len() < end {
                return self.drop_buf(buf, Counter::DropMalformed);
            }
            self.send_frame(&buf.data()[..end], meta.dst, now, io);
            return drop(buf);
        }
        self.send_ip(buf, meta.dst, now, io)
    }

    /// Turns `buf` into the ICMP error `kind` from the receiving port's
    /// address and sends it back to the packet's source, within the
    /// worker's answer budget.
    #[allow(clippy::too_many_arguments)]
    fn router_error(
        &mut self,
        rx_port: u16,
        mut buf: B,
        meta: &PacketMeta,
        kind: IcmpErrorKind,
        sent: Counter,
        now: u64,
        io: &mut impl Io<B>,
    ) {
        let from = self.iface(rx_port).and_then(|i| match meta.src {
            IpAddr::V4(s) => i.v4_source(s).map(IpAddr::V4),
            IpAddr::V6(s) => i.v6_source(s).map(IpAddr::V6),
        });
        // Fates of their own (not the sending side's drop_no_route or
        // drop_frag_needed): see net::ledger.
        let counted = match kind {
            IcmpErrorKind::TimeExceeded => Counter::DropTtlExpired,
            _ => Counter::DropRouterUnanswered,
        };
        let Some(from) = from else {
            return self.drop_buf(buf, counted);
        };
        if !self.allow_answer(now) {
            return self.drop_buf(buf, Counter::DropRateLimited);
        }
        match icmp_error_reply(&mut buf, meta, kind, from) {
            Ok(()) => {
                self.counters().inc(sent);
                self.send_ip(buf, meta.src, now, io);
            }
            // An error about an error, a later fragment, a source no one
            // may answer: dropped without a word, as Linux.
            Err(_) => self.drop_buf(buf, counted),
        }
    }
}
