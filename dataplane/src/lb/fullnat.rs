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
use crate::conn::table::cflags;
use crate::conn::{ConnAddr, ConnId, ConnTable};
use crate::model::{Service, Snapshot};
use crate::ports::PortPool;
use crate::rss::Ownership;
use crate::sched::hash::{siphash, siphash13_12, SipKey};
use crate::synproxy::random_word;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;
use crate::wire::{IcmpQuote, PacketMeta};
use crate::xmit::fullnat::{
    clamp_mss, fullnat_inbound_seq, fullnat_outbound_seq, insert_toa, strip_timestamps, toa_len,
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
    /// the real server. Written whenever a FULLNAT connection is created;
    /// sized to the table when the first local address arrives (slots
    /// beyond it, if any, are never translated).
    seq: Vec<SeqAdj>,
    /// The ISN hash's key (the kernel's `net_secret`).
    isn_key: SipKey,
}

impl FullNat {
    pub(super) fn new() -> FullNat {
        FullNat {
            owners: Ownership::new(1),
            seen: 0,
            rr: 0,
            seq: Vec::new(),
            isn_key: SipKey(random_word(), random_word()),
        }
    }

    /// Connection `id`'s sequence offset toward the real server.
    #[inline(always)]
    pub(super) fn seq_adj(&self, id: ConnId) -> SeqAdj {
        self.seq.get(id.0 as usize).copied().unwrap_or_default()
    }

    /// Records the sequence offset of FULLNAT connection `id`, just
    /// created by `meta`'s packet (`data` its frame) at `now` (ms): a new
    /// ISN toward the real server for a client's SYN, none otherwise.
    #[inline]
    pub(super) fn start(
        &mut self,
        conns: &ConnTable,
        id: ConnId,
        data: &[u8],
        meta: &PacketMeta,
        now: u64,
    ) {
        let Some(slot) = self.seq.get_mut(id.0 as usize) else {
            return;
        };
        *slot = SeqAdj::IDENTITY;
        if meta.protocol != protocol::TCP || meta.tcp_flags & (tcpf::SYN | tcpf::ACK) != tcpf::SYN {
            return;
        }
        let at = usize::from(meta.l4_offset) + 4;
        let Some(b) = data.get(at..at + 4) else {
            return;
        };
        let client_isn = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let c = conns.get(id);
        let Some((lid, lport)) = c.local() else {
            return;
        };
        let (raddr, rport) = c.real();
        *slot = SeqAdj::between(
            client_isn,
            server_isn(
                self.isn_key,
                conns.local_addr(lid),
                lport,
                raddr,
                rport,
                now,
            ),
        );
    }
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
    let h = if laddr.is_v4() && raddr.is_v4() {
        // The message's bytes 0..8 and 8..12 as little-endian words.
        let l = &laddr.0;
        let r = &raddr.0;
        let head = u64::from_le_bytes([l[12], l[13], l[14], l[15], r[12], r[13], r[14], r[15]]);
        let tail = u32::from(lport.swap_bytes()) | u32::from(rport.swap_bytes()) << 16;
        siphash13_12(head, tail, key)
    } else {
        let (msg, n) = isn_message(laddr, lport, raddr, rport);
        siphash(&msg[..n], key, 1, 3)
    };
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
        if !snap.locals.is_empty() && self.fnat.seq.len() < self.conns.slots() {
            self.fnat.seq.resize(self.conns.slots(), SeqAdj::IDENTITY);
        }
        self.fnat.seen = snap.locals.len();
    }
}

/// A local address and port for a new connection of `svc`: round robin
/// over its local addresses, the next one tried when one has no free port
/// (DPVS tries up to 16). `None`: none has a free port.
#[inline]
pub(super) fn pick_local(
    conns: &mut ConnTable,
    fnat: &mut FullNat,
    svc: &Service,
) -> Option<(u16, u16)> {
    let n = svc.locals.len();
    for k in 0..n.min(16) {
        let l = &svc.locals[(fnat.rr as usize + k) % n];
        if let Some(p) = conns.take_local_port(l.id) {
            fnat.rr = fnat.rr.wrapping_add(k as u32 + 1);
            return Some((l.id, p));
        }
    }
    None
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
/// TOA where the service asks for it.
#[allow(clippy::too_many_arguments)]
#[inline]
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
    let toa = tcp && c.service().is_some_and(|s| s.toa.load(Ordering::Relaxed));
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
    if toa && meta.tcp_flags & (tcpf::SYN | tcpf::RST) == 0 && c.flags() & cflags::TOA_DONE == 0 {
        let (caddr, cport) = c.client();
        if insert_toa(buf, meta, &caddr.to_ip(), cport, mtu).is_err() {
            bump(&counters.toa_skipped);
        }
    }
    Action::Forward(daddr)
}

/// A real server's reply along FULLNAT connection `id`: back to the
/// client as `VIP:vport`.
#[inline]
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
    let virt = c.virt();
    let client = c.client();
    let caddr: IpAddr = client.0.to_ip();
    let tcp = meta.protocol == protocol::TCP;
    let toa = tcp && c.service().is_some_and(|s| s.toa.load(Ordering::Relaxed));
    let len = u64::from(meta.ip_len);
    if let Some(s) = c.service() {
        s.stats.slot(worker).outbound(len);
    }
    if let Some(d) = c.dest() {
        d.stats.slot(worker).outbound(len);
    }
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
