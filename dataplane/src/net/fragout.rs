//! Sending a datagram the stage reassembled: whole if it fits the egress
//! port's MTU, else cut into fragments (IPv4 without DF, IPv6 always: the
//! director is then the source of the fragments it writes), one fresh
//! buffer each, as Linux's output path does after IPVS (`ip_fragment`,
//! `ip6_fragment`).
//!
//! Why here: the stage holds the datagram in its reassembly slot, and only
//! the stack has the buffers ([`Io::alloc`]) and knows the port a
//! destination leaves by.

use std::net::IpAddr;

use super::stack::{Io, Stack};
use super::{Counter, Stage};
use crate::buf::PacketBuf;
use crate::frag::{fragment_plan, write_fragment_v4, write_fragment_v6};
use crate::wire::ethernet::HEADER_LEN;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::ext;
use crate::wire::{ipv4, ipv6};

impl<B: PacketBuf> Stack<B> {
    /// Sends the stage's pending datagram toward `dst`; see the module docs.
    pub(super) fn send_datagram(
        &mut self,
        dst: IpAddr,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        self.send_pieces(dst, now, io, stage);
        stage.datagram_sent();
    }

    fn send_pieces(
        &mut self,
        dst: IpAddr,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let Some(frame) = stage.datagram() else {
            return;
        };
        let Some(mtu) = self
            .routes()
            .next_hop(dst)
            .and_then(|(port, _)| self.iface(port))
            .map(|i| usize::from(i.mtu))
        else {
            self.counters().inc(Counter::DropNoRoute);
            return;
        };
        let Some(ip) = frame.get(HEADER_LEN..) else {
            self.counters().inc(Counter::DropMalformed);
            return;
        };
        let eth = &frame[..HEADER_LEN];
        if ip.len() <= mtu {
            if let Some(b) = self.fill(io, &[eth, ip]) {
                self.send_ip(b, dst, now, io);
            }
            return;
        }
        let v6 = ip.first().is_some_and(|v| v >> 4 == 6);
        if !v6 {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                self.counters().inc(Counter::DropMalformed);
                return;
            };
            if p.dont_frag() {
                self.counters().inc(Counter::DropFragNeeded);
                return;
            }
            let hl = p.header_len();
            for piece in fragment_plan(ip.len() - hl, hl, mtu) {
                let Some(mut b) = self.alloc_frame(io, HEADER_LEN + hl + piece.len) else {
                    return;
                };
                b.data_mut()[..HEADER_LEN].copy_from_slice(eth);
                if write_fragment_v4(ip, piece, &mut b.data_mut()[HEADER_LEN..]).is_none() {
                    self.counters().inc(Counter::DropMalformed);
                    return;
                }
                self.counters().inc(Counter::FragmentsSent);
                self.send_ip(b, dst, now, io);
            }
        } else {
            let Some(unfrag) = unfragmentable_len(ip) else {
                self.counters().inc(Counter::DropMalformed);
                return;
            };
            self.frag_ident = self.frag_ident.wrapping_add(1);
            let ident = self.frag_ident;
            for piece in fragment_plan(ip.len() - unfrag, unfrag + 8, mtu) {
                let Some(mut b) = self.alloc_frame(io, HEADER_LEN + unfrag + 8 + piece.len) else {
                    return;
                };
                b.data_mut()[..HEADER_LEN].copy_from_slice(eth);
                let out = &mut b.data_mut()[HEADER_LEN..];
                if write_fragment_v6(ip, unfrag, ident, piece, out).is_none() {
                    self.counters().inc(Counter::DropMalformed);
                    return;
                }
                self.counters().inc(Counter::FragmentsSent);
                self.send_ip(b, dst, now, io);
            }
        }
    }

    /// A fresh buffer of `len` bytes, or `None` (counted).
    fn alloc_frame(&self, io: &mut impl Io<B>, len: usize) -> Option<B> {
        let mut b = io.alloc().filter(|b| b.is_empty());
        match b.as_mut().map(|b| b.append(len)) {
            Some(true) => b,
            _ => {
                self.counters().inc(Counter::DropNoBuffer);
                None
            }
        }
    }

    /// A fresh buffer holding `parts` one after the other.
    fn fill(&self, io: &mut impl Io<B>, parts: &[&[u8]]) -> Option<B> {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut b = self.alloc_frame(io, len)?;
        let mut at = 0;
        for p in parts {
            b.data_mut()[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Some(b)
    }
}

/// Bytes of an IPv6 packet's unfragmentable part: the header plus the
/// hop-by-hop and routing headers (RFC 8200 4.5); destination options
/// before a routing header belong to it too.
fn unfragmentable_len(ip: &[u8]) -> Option<usize> {
    let mut next = *ip.get(6)?;
    let mut off = ipv6::HEADER_LEN;
    let mut unfrag = off;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        match next {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                let len = (usize::from(*ip.get(off + 1)?) + 1) * 8;
                let this = next;
                next = *ip.get(off)?;
                off += len;
                if this != ext::DEST_OPTS || next == ext::ROUTING {
                    unfrag = off;
                }
            }
            _ => break,
        }
    }
    (unfrag <= ip.len() && unfrag >= ipv4::HEADER_LEN).then_some(unfrag)
}
