//! The SYN proxy: the SYN-flood defence DPVS calls synproxy. Under a
//! spoofed SYN flood no connection entry may exist before the client has
//! proved it receives what is sent to its address.
//!
//! Why: an IPVS director creates a connection entry for every SYN to a
//! service; a flood of SYNs from forged addresses fills the table (and the
//! real servers' backlogs) and refuses the clients that are real. The
//! kernel's own defences (`drop_entry`, `drop_packet`, `secure_tcp`,
//! [`crate::lb::Defense`]) only thin the damage once the table fills. With
//! the proxy, the director answers SYNs itself with SYN cookies
//! ([`cookie`]) and keeps nothing; only an ACK carrying a valid cookie
//! creates the entry, and only then does the real server see a SYN.
//!
//! The handshake, for a NAT (masquerading) service with the proxy on:
//! 1. client SYN: answered by a SYN-ACK from the VIP whose sequence number
//!    is the cookie ([`packet::syn_ack`]); no entry, no scheduling.
//! 2. client ACK (no SYN, no RST) with no entry: the cookie is checked
//!    ([`CookieJar::check`]). Invalid: the packet is not the proxy's (it
//!    goes on as any stray segment, which gets a reset). Valid: the
//!    service schedules, the entry is created (state SYN_RECV, as for a
//!    SYN), and the ACK is rewritten into the SYN toward the real server
//!    carrying the client's ISN, MSS and SACK ([`packet::syn_to_server`]).
//! 3. the real server's SYN-ACK: the offset between its ISN and the cookie
//!    is recorded ([`SeqAdj`]), and the SYN-ACK is turned into the ACK that
//!    completes the server's handshake ([`packet::ack_to_server`]).
//! 4. from then on every server segment's sequence number moves forward by
//!    the offset toward the client, and every client segment's ACK and SACK
//!    blocks move back toward the server ([`crate::xmit::seqadj`]), before
//!    the NAT rewrite.
//!
//! Client packets between 2 and 3 (the data the client sent with or right
//! after its ACK) are not held: each is turned into the SYN again, which
//! also retransmits the SYN when the server's SYN-ACK was lost. The
//! client's retransmission timer then sends the data again once the
//! server side is up (unacknowledged data always is), one RTO later. DPVS
//! holds the ACK's mbuf instead; holding buffers per half-open connection
//! is what the proxy is there to avoid.
//!
//! DR and TUN: the real server answers the client directly, so the
//! director never sees its SYN-ACK nor its later segments and cannot
//! translate their sequence numbers. The proxy applies to a service only
//! when every real server of it is NAT; `-j enable` refuses DR and TUN
//! servers, and the global switch skips such services.
//!
//! Per-connection state lives beside the connection table, indexed by the
//! entry's slot, and is read only for entries marked
//! [`crate::conn::table::cflags::SYNPROXY`], so the table's entry keeps its
//! two cache lines.

pub mod cookie;
pub mod packet;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};

pub use cookie::{CookieJar, Flow, Handshake};
use packet::SegInfo;

use crate::buf::PacketBuf;
use crate::conn::ConnId;
use crate::model::{ForwardMethod, Protocol, Service, ServiceKey};
use crate::wire::ipv4::protocol;
use crate::wire::PacketMeta;
use crate::xmit::seqadj::SeqAdj;
use crate::xmit::XmitError;

/// TCP flag bits.
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

/// The proxy's counters of one worker (written by it alone, read by the
/// control thread).
#[derive(Debug, Default)]
pub struct SynProxyCounters {
    /// SYNs answered with a cookie (no entry created).
    pub cookies_sent: AtomicU64,
    /// ACKs whose cookie was valid: entries created.
    pub cookies_ok: AtomicU64,
    /// ACKs to a proxied service with no entry and no valid cookie.
    pub cookies_bad: AtomicU64,
    /// SYNs sent to real servers (retransmissions included).
    pub server_syns: AtomicU64,
    /// Real servers' handshakes completed.
    pub opened: AtomicU64,
}

impl SynProxyCounters {
    /// Every counter by the name `uvsadm --counters` and telemetry give it.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("synproxy_cookies_sent", g(&self.cookies_sent)),
            ("synproxy_cookies_ok", g(&self.cookies_ok)),
            ("synproxy_cookies_bad", g(&self.cookies_bad)),
            ("synproxy_server_syns", g(&self.server_syns)),
            ("synproxy_opened", g(&self.opened)),
        ]
    }
}

#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// One proxied connection's handshake and offset.
#[derive(Debug, Clone, Copy)]
struct ProxiedConn {
    /// The real server answered: `adj` holds.
    open: bool,
    client_isn: u32,
    cookie: u32,
    window: u16,
    hs: Handshake,
    adj: SeqAdj,
}

const BLANK: ProxiedConn = ProxiedConn {
    open: false,
    client_isn: 0,
    cookie: 0,
    window: 0,
    hs: Handshake {
        mss: 536,
        sack: false,
    },
    adj: SeqAdj::IDENTITY,
};

/// What became of a real server's packet on a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVerdict {
    /// Its SYN-ACK was turned into the ACK back to it: send it there.
    AckToServer,
    /// Translated toward the client: NAT it as usual.
    ToClient,
    /// Nothing to send (before the handshake, not a SYN-ACK or RST).
    Drop,
}

/// One worker's SYN proxy: its cookie keys and its proxied connections.
pub struct SynProxy {
    jar: CookieJar,
    conns: Vec<ProxiedConn>,
    counters: std::sync::Arc<SynProxyCounters>,
}

impl std::fmt::Debug for SynProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynProxy")
            .field("slots", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// A fresh random key word: the standard library's per-process random
/// SipHash keys (seeded from the OS), hashed with a counter. Called when a
/// key rotates, never on the packet path.
pub fn random_word() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5359_4e50_524f_5859);
    h.finish()
}

impl SynProxy {
    /// A proxy at `now` (ms) counting in `counters`, with no connection
    /// slots yet.
    pub fn new(now: u64, counters: std::sync::Arc<SynProxyCounters>) -> SynProxy {
        SynProxy {
            jar: CookieJar::new(now, random_word),
            conns: Vec::new(),
            counters,
        }
    }

    pub fn counters(&self) -> std::sync::Arc<SynProxyCounters> {
        std::sync::Arc::clone(&self.counters)
    }

    /// Makes room for connection slots `0..capacity` (between bursts, when
    /// a proxied service appears; later calls with the same capacity cost
    /// nothing).
    pub fn reserve(&mut self, capacity: usize) {
        if self.conns.len() < capacity {
            self.conns.resize(capacity, BLANK);
        }
    }

    /// Between bursts: rotates the cookie key when a minute starts.
    pub fn housekeeping(&mut self, now: u64) {
        self.jar.rotate(now, random_word);
    }

    /// Whether `meta` is a bare SYN (the packet the proxy answers).
    #[inline]
    pub fn is_syn(meta: &PacketMeta) -> bool {
        meta.protocol == protocol::TCP && meta.tcp_flags & (SYN | ACK | RST) == SYN
    }

    /// Whether `meta` may complete a proxied handshake: ACK, no SYN, no RST.
    #[inline]
    pub fn is_ack(meta: &PacketMeta) -> bool {
        meta.protocol == protocol::TCP && meta.tcp_flags & (SYN | ACK | RST) == ACK
    }

    /// Step 1: turns the client's SYN into the SYN-ACK with its cookie (send
    /// it back to `meta.src`).
    pub fn answer_syn<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
    ) -> Result<(), XmitError> {
        let syn = packet::seg_info(buf.data(), meta)?;
        let hs = Handshake::from_syn(syn.mss, syn.sack_perm, meta.is_ipv6());
        let cookie = self.jar.make(&flow(meta), syn.seq, hs);
        packet::syn_ack(buf, meta, &syn, cookie, hs)?;
        bump(&self.counters.cookies_sent);
        Ok(())
    }

    /// Step 2, check: the handshake an ACK without an entry completes, if
    /// its cookie is valid (counted either way).
    pub fn check_ack(&self, frame: &[u8], meta: &PacketMeta) -> Option<(SegInfo, Handshake)> {
        let found = packet::seg_info(frame, meta).ok().and_then(|a| {
            let isn = a.seq.wrapping_sub(1);
            let hs = self.jar.check(&flow(meta), isn, a.ack.wrapping_sub(1))?;
            Some((a, hs))
        });
        bump(if found.is_some() {
            &self.counters.cookies_ok
        } else {
            &self.counters.cookies_bad
        });
        found
    }

    /// Step 2, open: connection `id` was created for the ACK `ack`; the ACK
    /// becomes the SYN toward the real server (NAT it next).
    pub fn open<B: PacketBuf>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
        ack: &SegInfo,
        hs: Handshake,
    ) -> Result<(), XmitError> {
        let c = ProxiedConn {
            open: false,
            client_isn: ack.seq.wrapping_sub(1),
            cookie: ack.ack.wrapping_sub(1),
            window: ack.window,
            hs,
            adj: SeqAdj::IDENTITY,
        };
        let slot = self
            .conns
            .get_mut(id.0 as usize)
            .ok_or(XmitError::UnsupportedProtocol)?;
        *slot = c;
        packet::syn_to_server(buf, meta, c.client_isn, c.window, hs)?;
        bump(&self.counters.server_syns);
        Ok(())
    }

    /// A client packet on proxied connection `id`. Before the server
    /// answered: `Ok(false)` after turning it into the SYN again (NAT it
    /// next), except a RST or FIN, refused. After: its ACK and SACK blocks
    /// are translated in place, `Ok(true)` (go on as usual).
    pub fn client_packet<B: PacketBuf>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
    ) -> Result<bool, XmitError> {
        let c = *self
            .conns
            .get(id.0 as usize)
            .ok_or(XmitError::UnsupportedProtocol)?;
        if c.open {
            let l4 = usize::from(meta.l4_offset);
            let end = meta.l3_end().min(buf.len());
            if l4 < end {
                c.adj
                    .unshift_ack(&mut buf.data_mut()[l4..end])
                    .map_err(|_| XmitError::UnsupportedProtocol)?;
            }
            return Ok(true);
        }
        if meta.tcp_flags & (RST | FIN | SYN) != 0 {
            return Err(XmitError::UnsupportedProtocol);
        }
        packet::syn_to_server(buf, meta, c.client_isn, c.window, c.hs)?;
        bump(&self.counters.server_syns);
        Ok(false)
    }

    /// A real server's packet on proxied connection `id` (see
    /// [`ServerVerdict`]). Its SYN-ACK fixes the offset; a RST before that
    /// is passed on to the client at the sequence number it expects.
    pub fn server_packet<B: PacketBuf>(
        &mut self,
        id: ConnId,
        buf: &mut B,
        meta: &PacketMeta,
    ) -> ServerVerdict {
        let Some(c) = self.conns.get_mut(id.0 as usize) else {
            return ServerVerdict::Drop;
        };
        let l4 = usize::from(meta.l4_offset);
        let end = meta.l3_end().min(buf.len());
        if l4 >= end {
            return ServerVerdict::Drop;
        }
        if !c.open {
            let Ok(info) = packet::seg_info(buf.data(), meta) else {
                return ServerVerdict::Drop;
            };
            if info.flags & (SYN | ACK | RST) == SYN | ACK {
                if info.ack != c.client_isn.wrapping_add(1) {
                    return ServerVerdict::Drop;
                }
                c.adj = SeqAdj::between(info.seq, c.cookie);
                c.open = true;
                return match packet::ack_to_server(buf, meta, &info, c.client_isn, c.window) {
                    Ok(()) => {
                        bump(&self.counters.opened);
                        ServerVerdict::AckToServer
                    }
                    Err(_) => ServerVerdict::Drop,
                };
            }
            if info.flags & RST == 0 {
                return ServerVerdict::Drop;
            }
            // The server refused: the client gets the reset at the
            // sequence number after the cookie.
            c.adj = SeqAdj::between(info.seq, c.cookie.wrapping_add(1));
            c.open = true;
        }
        match c.adj.shift_seq(&mut buf.data_mut()[l4..end]) {
            Ok(()) => ServerVerdict::ToClient,
            Err(_) => ServerVerdict::Drop,
        }
    }

    /// Whether proxied connection `id` is open on the server side.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.conns.get(id.0 as usize).is_some_and(|c| c.open)
    }
}

/// Whether the proxy answers for `svc`: switched on for it (`-j enable`),
/// or by the global `synproxy` tunable (`global`) for a TCP service whose
/// real servers are all NAT (the only kind it can serve; `-j` refuses the
/// others when configured).
#[inline]
pub fn applies(svc: &Service, global: bool) -> bool {
    svc.config.synproxy
        || (global
            && matches!(
                svc.config.key,
                ServiceKey::Addr {
                    protocol: Protocol::Tcp,
                    ..
                }
            )
            && !svc.dests.is_empty()
            && svc
                .dests
                .iter()
                .all(|d| d.config.method == ForwardMethod::Masq))
}

/// The flow a client packet belongs to.
fn flow(meta: &PacketMeta) -> Flow {
    Flow {
        client: meta.src,
        vip: meta.dst,
        cport: meta.sport,
        vport: meta.dport,
    }
}
