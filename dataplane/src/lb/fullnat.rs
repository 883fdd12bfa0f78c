//! FULLNAT in the load-balancing stage: local addresses and ports for new
//! connections, and both directions of an established one
//! ([`crate::xmit::fullnat`] does the bytes).
//!
//! Why replies need no hand-over: a real server answers `LIP:lport`, and
//! the worker that owns a reply is found from that endpoint (the
//! destination of a packet that is not for a virtual service, see
//! [`Lb::client_endpoint`]), which is also what RSS hashes on a
//! server-facing port. Each worker takes local ports only from its own
//! [`PortPool`] per local address, which holds exactly the ports whose
//! `(LIP, port)` hashes to that worker, so the reply lands on the worker
//! that created the connection. The pools are built from the stage's
//! [`Ownership`] when a snapshot brings a local address this worker has
//! not seen (about 64 k Toeplitz hashes, once per address, between
//! bursts); allocation and release are a pop and a push.
//!
//! TOA (`--toa` on the service, TCP only): inserted into client segments
//! other than SYN and RST until the real server has sent data (DPVS
//! inserts it while the client's ACK still equals the server's ISN + 1,
//! which is the same segments: the handshake-completing ACK and the
//! client's data before any answer). The real server's SYN-ACK has its MSS
//! lowered by the option's length so that the option always fits; a
//! segment it still does not fit goes without it, counted in
//! `toa_skipped`. The client's SYN loses its timestamp option (clients
//! sharing a local address would trip the real server's PAWS check).
//!
//! Sequence numbers (TCP): as DPVS, the real server never sees the
//! client's initial sequence number. When a client's SYN creates a
//! connection, the stage picks the ISN toward the real server the way the
//! kernel's `secure_tcp_seq` does (a keyed SipHash of the local and real
//! endpoints plus a clock ticking every 64 ns, so a local port reused
//! toward the same server starts above its predecessor) and keeps the
//! offset to the client's ISN per connection slot ([`FullNat::seq`]). Every
//! client segment then has its sequence number moved forward and every
//! reply its acknowledgement and SACK blocks moved back, with the SYN
//! proxy's adjuster ([`SeqAdj`]). Connections not created by a SYN (UDP, a
//! TCP connection picked up mid-stream) keep their numbers.
//!
//! ICMP errors about a connection are translated both ways as conntrack
//! does for a flow NATed on both ends ([`icmp_to_client`],
//! [`icmp_to_server`], the bytes in [`crate::xmit::icmp_both`]); one that
//! quotes a local address with no connection is dropped and counted.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::{bump, drop_counted, refused, Action, Egress, Lb, LbCounters, LbDrop};
use crate::buf::PacketBuf;
use crate::conn::table::{cflags, Conn};
use crate::conn::{ConnAddr, ConnId, ConnTable};
use crate::model::{DestShared, Service, ServiceShared, Snapshot};
use crate::ports::PortPool;
use crate::rss::Ownership;
use crate::sched::hash::{siphash, siphash13_12, SipKey};
use crate::synproxy::random_word;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;
use crate::wire::{IcmpQuote, PacketMeta};
use crate::xmit::fullnat::{
    clamp_mss, fullnat_inbound_seq, fullnat_outbound_seq, fullnat_v4_fast, fullnat_v4_syn,
    insert_toa, mapped_v4, strip_timestamps, toa_len, SeqMove,
};
use crate::xmit::icmp_both::{icmp_error_rewrite, IcmpRewrite};
use crate::xmit::seqadj::SeqAdj;
use crate::xmit::{check_mtu, XmitError};

/// Local ports DPVS hands out by default (`DEF_MIN_PORT..=DEF_MAX_PORT`).
pub const LOCAL_PORTS: std::ops::RangeInclusive<u16> = 1025..=65535;

/// A worker's FULLNAT state beside its connection table (which holds the
/// pools, so that a freed connection returns its port).
#[derive(Debug)]
pub(super) struct FullNat {
    owners: Ownership,
    /// Local addresses of [`Snapshot::locals`] this worker has pools for.
    seen: usize,
    /// Round-robin cursor over a service's local addresses.
    rr: u32,
    /// Per connection slot: how the client's sequence numbers move toward
    /// the real server, and the local address's IPv4 word ([`Side`]).
    /// Written whenever a FULLNAT connection is created; sized to the
    /// table when the first local address arrives (slots beyond it, if
    /// any, are never translated and take the general path).
    side: Vec<Side>,
    /// The ISN hash's key (the kernel's `net_secret`).
    isn_key: SipKey,
}

impl FullNat {
    pub(super) fn new() -> FullNat {
        FullNat {
            owners: Ownership::new(1),
            seen: 0,
            rr: 0,
            side: Vec::new(),
            isn_key: SipKey(random_word(), random_word()),
        }
    }

    /// Tests: a fixed ISN key, so that two balancers fed the same
    /// packets write the same sequence numbers.
    #[cfg(test)]
    pub(super) fn fix_isn_key(&mut self) {
        self.isn_key = SipKey(1, 2);
    }

    /// What connection `id`'s packets need beside its entry.
    #[inline(always)]
    pub(super) fn side(&self, id: ConnId) -> Side {
        self.side.get(id.0 as usize).copied().unwrap_or_default()
    }

    /// Connection `id`'s sequence offset toward the real server.
    #[inline(always)]
    pub(super) fn seq_adj(&self, id: ConnId) -> SeqAdj {
        self.side(id).adj
    }

    /// Records what FULLNAT connection `id` needs beside its entry, just
    /// created toward `real` from `local` (the local address's number and
    /// port) by `meta`'s packet (`data` its frame) at `now` (ms): the local
    /// address's IPv4 word, and a new ISN toward the real server for a
    /// client's SYN (none otherwise). The caller passes the endpoints it
    /// has just written into the entry, so nothing is read back.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &mut self,
        conns: &ConnTable,
        id: ConnId,
        local: (u16, u16),
        real: (ConnAddr, u16),
        data: &[u8],
        meta: &PacketMeta,
        now: u64,
    ) {
        let Some(slot) = self.side.get_mut(id.0 as usize) else {
            return;
        };
        let laddr = conns.local_addr(local.0);
        let lip4 = mapped_v4(&laddr).unwrap_or(0);
        *slot = Side {
            adj: SeqAdj::IDENTITY,
            lip4,
        };
        if meta.protocol != protocol::TCP || meta.tcp_flags & (tcpf::SYN | tcpf::ACK) != tcpf::SYN {
            return;
        }
        let at = usize::from(meta.l4_offset) + 4;
        let Some(b) = data.get(at..at + 4) else {
            return;
        };
        let client_isn = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let isn = match (lip4, mapped_v4(&real.0)) {
            (l, Some(r)) if l != 0 => server_isn_v4(self.isn_key, (l, local.1), (r, real.1), now),
            _ => server_isn(self.isn_key, laddr, local.1, real.0, real.1, now),
        };
        slot.adj = SeqAdj::between(client_isn, isn);
    }
}

/// What an established FULLNAT packet needs besides its connection entry
/// (whose two cache lines are full), kept per connection slot in one
/// 8-byte word so that the packet path reads it with one load: the
/// sequence offset, and the local address's IPv4 address, so that the
/// rewrite needs no look-up in the local-address table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Side {
    /// How the client's sequence numbers move toward the real server.
    adj: SeqAdj,
    /// The local address when it is IPv4 (host order); 0 for IPv6 (and
    /// for a slot not written), which takes the table look-up.
    lip4: u32,
}

/// The ISN toward the real server of a connection `laddr:lport ->
/// raddr:rport` opened at `now` (ms), as the kernel's `secure_tcp_seq`:
/// a keyed hash of the endpoints, so it cannot be guessed from outside,
/// plus a clock that advances 1 every 64 ns, so a reused 4-tuple starts
/// above its predecessor (what a real server's TIME_WAIT socket accepts).
///
/// The hash is SipHash-1-3 of [`isn_message`]; for IPv4 (12 bytes) it is
/// computed in straight-line code from the addresses' words
/// ([`siphash13_12`], checked against the generic SipHash by the property
/// test `server_isn_equals_the_generic_hash`).
#[inline]
pub fn server_isn(
    key: SipKey,
    laddr: ConnAddr,
    lport: u16,
    raddr: ConnAddr,
    rport: u16,
    now: u64,
) -> u32 {
    if let (Some(l), Some(r)) = (mapped_v4(&laddr), mapped_v4(&raddr)) {
        return server_isn_v4(key, (l, lport), (r, rport), now);
    }
    let (msg, n) = isn_message(laddr, lport, raddr, rport);
    isn_clock(siphash(&msg[..n], key, 1, 3), now)
}

/// [`server_isn`] of IPv4 endpoints given as words (host order).
#[inline]
pub fn server_isn_v4(key: SipKey, local: (u32, u16), real: (u32, u16), now: u64) -> u32 {
    // The message's bytes 0..8 and 8..12 as little-endian words.
    let head = u64::from(local.0.swap_bytes()) | u64::from(real.0.swap_bytes()) << 32;
    let tail = u32::from(local.1.swap_bytes()) | u32::from(real.1.swap_bytes()) << 16;
    isn_clock(siphash13_12(head, tail, key), now)
}

/// A hash `h` plus the ISN clock at `now` (ms).
#[inline(always)]
fn isn_clock(h: u64, now: u64) -> u32 {
    // 1 ms = 15625 ticks of 64 ns.
    let clock = now.wrapping_mul(15_625) as u32;
    (h as u32).wrapping_add(clock)
}

/// The bytes [`server_isn`] hashes, and how many: both addresses, then
/// both ports in network order (4 + 4 + 2 + 2 for IPv4, 16 + 16 + 2 + 2
/// otherwise).
pub fn isn_message(laddr: ConnAddr, lport: u16, raddr: ConnAddr, rport: u16) -> ([u8; 36], usize) {
    let mut msg = [0u8; 36];
    let n = if laddr.is_v4() && raddr.is_v4() {
        msg[..4].copy_from_slice(&laddr.0[12..]);
        msg[4..8].copy_from_slice(&raddr.0[12..]);
        msg[8..10].copy_from_slice(&lport.to_be_bytes());
        msg[10..12].copy_from_slice(&rport.to_be_bytes());
        12
    } else {
        msg[..16].copy_from_slice(&laddr.0);
        msg[16..32].copy_from_slice(&raddr.0);
        msg[32..34].copy_from_slice(&lport.to_be_bytes());
        msg[34..36].copy_from_slice(&rport.to_be_bytes());
        36
    };
    (msg, n)
}

impl Lb {
    /// Which worker RSS sends each reply to (set by the stage before
    /// traffic; pools built so far are built again).
    pub fn set_ownership(&mut self, owners: Ownership) {
        self.fnat.owners = owners;
        self.fnat.seen = 0;
        let snap = std::sync::Arc::clone(&self.snap);
        self.take_locals(&snap);
    }

    /// Counts an ICMP error about a translated flow that is gone (a
    /// FULLNAT local port or a SNAT port without a connection), which is
    /// dropped: `lb_drop_no_connection`.
    pub fn count_stray_icmp(&self) {
        bump(&self.counters.drops[LbDrop::NoConnection as usize]);
    }

    /// Builds this worker's ports of the local addresses `snap` brings
    /// that it has not seen yet.
    pub(super) fn take_locals(&mut self, snap: &Snapshot) {
        for l in snap.locals.iter().skip(self.fnat.seen) {
            let pool = PortPool::new(l.addr, LOCAL_PORTS, &self.fnat.owners, self.worker);
            self.conns.add_local_pool(std::sync::Arc::clone(l), pool);
        }
        if !snap.locals.is_empty() && self.fnat.side.len() < self.conns.slots() {
            self.fnat.side.resize(self.conns.slots(), Side::default());
        }
        self.fnat.seen = snap.locals.len();
    }
}

/// A local address and port for a new connection of `svc`: round robin
/// over its local addresses, the next one tried when one has no free port
/// (DPVS tries up to 16). Returns the address's number and the port, and
/// the address's IPv4 word (host order; 0 for IPv6) for [`create_in`], so
/// that nothing looks the address up again. `None`: none has a free port.
#[inline]
pub(super) fn pick_local(
    conns: &mut ConnTable,
    fnat: &mut FullNat,
    svc: &Service,
) -> Option<((u16, u16), u32)> {
    let n = svc.locals.len();
    // The cursor is kept below `n` of the service last served, so the
    // division happens only when services with fewer addresses alternate.
    let mut i = fnat.rr as usize;
    if i >= n {
        i = i.checked_rem(n)?;
    }
    for _ in 0..n.min(16) {
        let l = &svc.locals[i];
        i += 1;
        if i == n {
            i = 0;
        }
        if let Some(p) = conns.take_local_port(l.id) {
            fnat.rr = i as u32;
            let word = match l.addr {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => 0,
            };
            return Some(((l.id, p), word));
        }
    }
    None
}

/// A FULLNAT connection the creation path has just made, with what it
/// knows of it: [`create_in`] takes these instead of reading the entry
/// back.
pub(super) struct Created<'a> {
    pub id: ConnId,
    /// The local address's number and port ([`Conn::local`]).
    pub local: Option<(u16, u16)>,
    /// The local address's IPv4 word as [`pick_local`] gave it; 0 when
    /// not known (IPv6, or a port taken otherwise): looked up then.
    pub lip4: u32,
    /// The real server's address and port ([`Conn::real`]).
    pub real: (ConnAddr, u16),
    pub svc: &'a ServiceShared,
    pub dest: &'a DestShared,
    /// Now (ms), for the ISN's clock.
    pub now: u64,
}

/// The client packet that has just created FULLNAT connection `n.id`:
/// counted (the connection for its service and destination, and the
/// packet), its [`Side`] recorded and the packet sent on, as
/// [`FullNat::start`] followed by [`xmit_in`] would, from the endpoints the
/// creation path holds rather than the entry. The IPv4 case that needs
/// only the rewrite, a SYN (its ISN hashed from the words and written in
/// the same checksum update, [`fullnat_v4_syn`]) or a UDP datagram, goes
/// in straight-line code ([`create_v4_fast`]); everything else takes
/// `start` and [`xmit_in_general`].
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn create_in<B: PacketBuf, E: Egress>(
    conns: &ConnTable,
    fnat: &mut FullNat,
    n: &Created,
    buf: &mut B,
    meta: &PacketMeta,
    eg: &E,
    worker: usize,
    counters: &LbCounters,
) -> Action {
    let len = u64::from(meta.ip_len);
    let (s, d) = (n.svc.stats.slot(worker), n.dest.stats.slot(worker));
    s.conn();
    s.inbound(len);
    d.conn();
    d.inbound(len);
    let Some(local) = n.local else {
        return xmit_in_general(conns, fnat, n.id, buf, meta, eg, counters);
    };
    let lip4 = if n.lip4 != 0 {
        n.lip4
    } else {
        mapped_v4(&conns.local_addr(local.0)).unwrap_or(0)
    };
    if let Some(a) = create_v4_fast(fnat, n, (lip4, local.1), buf, meta, eg) {
        return a;
    }
    fnat.start(conns, n.id, local, n.real, buf.data(), meta, n.now);
    xmit_in_general(conns, fnat, n.id, buf, meta, eg, counters)
}

/// [`create_in`]'s IPv4 case, from `local` (the local address's word and
/// port): a client's SYN (its timestamps stripped first when it has
/// options, as [`xmit_in_general`] does) gets the ISN toward the real
/// server in the rewrite itself; any other packet, TOA off, the plain
/// rewrite (its offset is the identity). `None`, the slot not written,
/// when it does not apply; the packet is then as it came, but for a SYN's
/// timestamps, which the general path would strip anyway.
#[inline(always)]
fn create_v4_fast<B: PacketBuf, E: Egress>(
    fnat: &mut FullNat,
    n: &Created,
    local: (u32, u16),
    buf: &mut B,
    meta: &PacketMeta,
    eg: &E,
) -> Option<Action> {
    let r = mapped_v4(&n.real.0)?;
    let key = fnat.isn_key;
    let slot = fnat.side.get_mut(n.id.0 as usize)?;
    if local.0 == 0 {
        return None;
    }
    let daddr = IpAddr::V4(r.into());
    if check_mtu(meta, eg.mtu(daddr)).is_err() {
        return None;
    }
    let real = (r, n.real.1);
    let tcp = meta.protocol == protocol::TCP;
    let adj = if tcp && meta.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN {
        if has_options(buf.data(), meta) {
            // Malformed options only mean there is nothing to strip.
            let _ = strip_timestamps(buf, meta);
        }
        let isn = server_isn_v4(key, local, real, n.now);
        SeqAdj::between(fullnat_v4_syn(buf, meta, local, real, isn)?, isn)
    } else {
        // A TCP connection picked up mid-stream may want TOA: the
        // general path decides.
        if tcp && n.svc.toa.load(Ordering::Relaxed) {
            return None;
        }
        let mv = SeqMove::Shift(SeqAdj::IDENTITY);
        if !fullnat_v4_fast(buf, meta, local, real, mv) {
            return None;
        }
        SeqAdj::IDENTITY
    };
    *slot = Side { adj, lip4: local.0 };
    Some(Action::Forward(daddr))
}

/// Whether `meta`'s TCP segment has options (a data offset above 5): a
/// SYN without them has no timestamp to strip, and skips the walk.
#[inline(always)]
fn has_options(data: &[u8], meta: &PacketMeta) -> bool {
    data.get(usize::from(meta.l4_offset) + 12)
        .is_none_or(|b| b >> 4 != 5)
}

/// Length of the TCP payload of `meta`'s segment (0 if not TCP).
fn tcp_payload_len(data: &[u8], meta: &PacketMeta) -> usize {
    let l4 = usize::from(meta.l4_offset);
    let hl = data.get(l4 + 12).map_or(0, |b| usize::from(b >> 4) * 4);
    meta.l3_end().saturating_sub(l4 + hl)
}

/// A client packet along FULLNAT connection `id`: `LIP:lport -> RIP:rport`,
/// TOA where the service asks for it. Counted first (whatever becomes of
/// the packet, as NAT's), then the established IPv4 case in straight-line
/// code ([`in_v4_fast`]), everything else in [`xmit_in_general`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn xmit_in<B: PacketBuf, E: Egress>(
    conns: &ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    eg: &E,
    worker: usize,
    counters: &LbCounters,
) -> Action {
    let c = conns.get(id);
    let Some(dest) = c.dest() else {
        return drop_counted(counters, LbDrop::DestUnavailable);
    };
    let len = u64::from(meta.ip_len);
    if let Some(s) = c.service() {
        s.stats.slot(worker).inbound(len);
    }
    dest.stats.slot(worker).inbound(len);
    if let Some(a) = in_v4_fast(c, fnat.side(id), buf, meta, eg) {
        return a;
    }
    xmit_in_general(conns, fnat, id, buf, meta, eg, counters)
}

/// Whether `meta`'s TCP segment is one TOA would go into, on a connection
/// whose service asks for it: not SYN or RST, and the real server has sent
/// no data yet.
#[inline(always)]
fn wants_toa(c: &Conn, meta: &PacketMeta) -> bool {
    meta.protocol == protocol::TCP
        && meta.tcp_flags & (tcpf::SYN | tcpf::RST) == 0
        && c.flags() & cflags::TOA_DONE == 0
        && c.service().is_some_and(|s| s.toa.load(Ordering::Relaxed))
}

/// The client packet of an IPv4 connection (local address known by its
/// word, `side`) that needs nothing but the rewrite: no TOA to insert, no
/// timestamp to strip (a SYN with options), within the path MTU, and taken
/// by [`fullnat_v4_fast`]. `None`, having written nothing, otherwise.
#[inline(always)]
fn in_v4_fast<B: PacketBuf, E: Egress>(
    c: &Conn,
    side: Side,
    buf: &mut B,
    meta: &PacketMeta,
    eg: &E,
) -> Option<Action> {
    let (_, lport) = c.local()?;
    let (raddr, rport) = c.real();
    let r = mapped_v4(&raddr)?;
    if side.lip4 == 0
        || (meta.protocol == protocol::TCP
            && meta.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN
            && has_options(buf.data(), meta))
        || wants_toa(c, meta)
    {
        return None;
    }
    let daddr = IpAddr::V4(r.into());
    if check_mtu(meta, eg.mtu(daddr)).is_err() {
        return None;
    }
    let mv = SeqMove::Shift(side.adj);
    fullnat_v4_fast(buf, meta, (side.lip4, lport), (r, rport), mv).then_some(Action::Forward(daddr))
}

/// [`xmit_in`] past the counters, for every case: IPv6, TOA, a SYN's
/// timestamps, refusals.
#[inline(never)]
fn xmit_in_general<B: PacketBuf, E: Egress>(
    conns: &ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    eg: &E,
    counters: &LbCounters,
) -> Action {
    let c = conns.get(id);
    let Some((lid, lport)) = c.local() else {
        return drop_counted(counters, LbDrop::Rewrite);
    };
    let laddr = conns.local_addr(lid);
    let (raddr, dport) = c.real();
    let daddr = raddr.to_ip();
    let mtu = eg.mtu(daddr);
    if let Err(e) = check_mtu(meta, mtu) {
        return refused(counters, buf, meta, e);
    }
    let tcp = meta.protocol == protocol::TCP;
    if tcp
        && meta.tcp_flags & tcpf::SYN != 0
        && meta.tcp_flags & tcpf::ACK == 0
        && has_options(buf.data(), meta)
    {
        // Malformed options only mean there is nothing to strip.
        let _ = strip_timestamps(buf, meta);
    }
    // UDP ignores the adjustment.
    let adj = fnat.seq_adj(id);
    if let Err(e) = fullnat_inbound_seq(buf, meta, (laddr, lport), (raddr, dport), adj) {
        return refused(counters, buf, meta, e);
    }
    if wants_toa(c, meta) {
        let (caddr, cport) = c.client();
        if insert_toa(buf, meta, &caddr.to_ip(), cport, mtu).is_err() {
            bump(&counters.toa_skipped);
        }
    }
    Action::Forward(daddr)
}

/// A real server's reply along FULLNAT connection `id`: back to the
/// client as `VIP:vport`. Counted first, then the IPv4 case that needs
/// nothing but the rewrite ([`out_v4_fast`]), everything else in
/// [`xmit_out_general`].
#[inline(always)]
pub(super) fn xmit_out<B: PacketBuf>(
    conns: &mut ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    worker: usize,
    counters: &LbCounters,
) -> Action {
    let c = conns.get(id);
    let len = u64::from(meta.ip_len);
    if let Some(s) = c.service() {
        s.stats.slot(worker).outbound(len);
    }
    if let Some(d) = c.dest() {
        d.stats.slot(worker).outbound(len);
    }
    if let Some(a) = out_v4_fast(c, fnat.seq_adj(id), buf, meta) {
        return a;
    }
    xmit_out_general(conns, fnat, id, buf, meta, counters)
}

/// The reply of an IPv4 connection that needs nothing but the rewrite:
/// TOA off, or done with and not a SYN-ACK (no MSS to clamp, no first
/// data to note), and taken by [`fullnat_v4_fast`]. `None`, having written
/// nothing, otherwise.
#[inline(always)]
fn out_v4_fast<B: PacketBuf>(
    c: &Conn,
    adj: SeqAdj,
    buf: &mut B,
    meta: &PacketMeta,
) -> Option<Action> {
    let (vaddr, vport) = c.virt();
    let (caddr, cport) = c.client();
    let (v, a) = (mapped_v4(&vaddr)?, mapped_v4(&caddr)?);
    if meta.protocol == protocol::TCP
        && (c.flags() & cflags::TOA_DONE == 0
            || meta.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN | tcpf::ACK)
        && c.service().is_some_and(|s| s.toa.load(Ordering::Relaxed))
    {
        return None;
    }
    let mv = SeqMove::Unshift(adj);
    fullnat_v4_fast(buf, meta, (v, vport), (a, cport), mv)
        .then(|| Action::Forward(IpAddr::V4(a.into())))
}

/// [`xmit_out`] past the counters, for every case: IPv6, TOA, refusals.
#[inline(never)]
fn xmit_out_general<B: PacketBuf>(
    conns: &mut ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    counters: &LbCounters,
) -> Action {
    let c = conns.get(id);
    let virt = c.virt();
    let client = c.client();
    let caddr: IpAddr = client.0.to_ip();
    let tcp = meta.protocol == protocol::TCP;
    let toa = tcp && c.service().is_some_and(|s| s.toa.load(Ordering::Relaxed));
    let done = c.flags() & cflags::TOA_DONE != 0;
    if toa && meta.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN | tcpf::ACK {
        let _ = clamp_mss(buf, meta, toa_len(&caddr) as u16);
    }
    let adj = fnat.seq_adj(id);
    match fullnat_outbound_seq(buf, meta, virt, client, adj) {
        Ok(()) => {
            if toa && !done && tcp_payload_len(buf.data(), meta) > 0 {
                conns.set_toa_done(id);
            }
            Action::Forward(caddr)
        }
        Err(XmitError::TtlExpired) => drop_counted(counters, LbDrop::TtlExpired),
        Err(_) => drop_counted(counters, LbDrop::Rewrite),
    }
}

/// An ICMP error from a real server about a packet of FULLNAT connection
/// `id` (its quote `LIP:lport -> RIP:rport`): rewritten into the error the
/// client would get about its own packet (`CIP:cport -> VIP:vport`, from
/// the VIP, its sequence number the client's again), as conntrack does.
/// Returns the client to forward it to.
pub(super) fn icmp_to_client<B: PacketBuf>(
    conns: &ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    q: &IcmpQuote,
) -> Result<IpAddr, XmitError> {
    let c = conns.get(id);
    let (vaddr, vport) = c.virt();
    let (caddr, cport) = c.client();
    let (vaddr, caddr) = (vaddr.to_ip(), caddr.to_ip());
    let rw = IcmpRewrite {
        src: vaddr,
        dst: caddr,
        quoted_src: (caddr, cport),
        quoted_dst: (vaddr, vport),
        seq_delta: fnat.seq_adj(id).inverse().delta(),
        ack_delta: 0,
    };
    icmp_error_rewrite(buf, meta, q, &rw)?;
    Ok(caddr)
}

/// An ICMP error from the client side about a reply of FULLNAT connection
/// `id` (its quote `VIP:vport -> CIP:cport`): rewritten into the error the
/// real server would get about its own packet (`RIP:rport -> LIP:lport`,
/// from the local address, its acknowledgement in the server's view of
/// the client's numbering). Returns the real server.
pub(super) fn icmp_to_server<B: PacketBuf>(
    conns: &ConnTable,
    fnat: &FullNat,
    id: ConnId,
    buf: &mut B,
    meta: &PacketMeta,
    q: &IcmpQuote,
) -> Result<IpAddr, XmitError> {
    let c = conns.get(id);
    let Some((lid, lport)) = c.local() else {
        return Err(XmitError::UnsupportedProtocol);
    };
    let laddr = conns.local_addr(lid).to_ip();
    let (raddr, rport) = c.real();
    let raddr = raddr.to_ip();
    let rw = IcmpRewrite {
        src: laddr,
        dst: raddr,
        quoted_src: (raddr, rport),
        quoted_dst: (laddr, lport),
        seq_delta: 0,
        ack_delta: fnat.seq_adj(id).delta(),
    };
    icmp_error_rewrite(buf, meta, q, &rw)?;
    Ok(raddr)
}

/// Whether `addr` is one of the director's FULLNAT local addresses: an
/// error quoting a packet from it is about a FULLNAT connection, and
/// dropped (counted) when there is none.
pub(super) fn is_local(snap: &Snapshot, addr: &IpAddr) -> bool {
    snap.locals.iter().any(|l| l.addr == *addr)
}
