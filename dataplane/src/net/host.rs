//! The director's own answers for its virtual addresses: what a Linux host
//! sends when nothing listens.
//!
//! Scope: a VIP, for a protocol and port no virtual service covers. The
//! ports' own addresses keep their traffic for the kernel interface where
//! there is one ([`crate::exception`]) and drop it otherwise.
//!
//! Why: on a kernel director the VIP is a local address. A ping to it is
//! answered, and a packet to a port no virtual service covers reaches the
//! local stack, which answers a TCP segment with a reset (`tcp_v4_send_reset`,
//! `tcp_v6_send_reset`) and a UDP datagram with ICMP port unreachable
//! (`__udp4_lib_rcv`, `__udp6_lib_rcv`). Monitoring pings VIPs, and clients
//! of a port that has no service fail at once instead of timing out.
//!
//! Every such answer the director originates for a VIP, and every reset or
//! port unreachable, takes a token from one bucket per worker
//! ([`AnswerLimit`], Linux's `icmp_msgs_per_sec` = 1000 and
//! `icmp_msgs_burst` = 50): a flood toward closed ports cannot turn the
//! director into a packet source at line rate. What the bucket refuses is
//! counted as `drop_rate_limited`. Echo replies for the ports' own
//! addresses are not limited (as before, and as Linux by default).

use std::net::IpAddr;

use super::stack::{Io, Stack};
use super::Counter;
use crate::buf::PacketBuf;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::{protocol, Ipv4Repr};
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{checksum, icmp, icmpv6, ipv4, ipv6, tcp, Fragment, PacketMeta, ParseError, L3};
use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};
use crate::xmit::XmitError;

/// Answers a worker may originate per second, and at once.
pub const ANSWERS_PER_SEC: u64 = 1000;
pub const ANSWER_BURST: u64 = 50;

/// A token bucket over the millisecond clock: [`ANSWER_BURST`] tokens,
/// refilled at [`ANSWERS_PER_SEC`].
#[derive(Debug, Clone, Copy)]
pub struct AnswerLimit {
    /// Tokens, in thousandths (one per millisecond at 1000 a second).
    credit: u64,
    last: u64,
}

impl Default for AnswerLimit {
    fn default() -> Self {
        AnswerLimit {
            credit: ANSWER_BURST * 1000,
            last: 0,
        }
    }
}

impl AnswerLimit {
    /// Takes a token at `now` (ms) if there is one.
    #[inline]
    pub fn allow(&mut self, now: u64) -> bool {
        let refill = now
            .saturating_sub(self.last)
            .saturating_mul(ANSWERS_PER_SEC);
        self.credit = self.credit.saturating_add(refill).min(ANSWER_BURST * 1000);
        self.last = now.max(self.last);
        if self.credit >= 1000 {
            self.credit -= 1000;
            true
        } else {
            false
        }
    }
}

/// Whether `meta` is an ICMP or ICMPv6 echo request.
#[inline]
pub(super) fn is_echo_request(meta: &PacketMeta) -> bool {
    match meta.l3 {
        L3::Ipv4 => meta.protocol == protocol::ICMP && meta.icmp_type == icmp::kind::ECHO_REQUEST,
        L3::Ipv6 => {
            meta.protocol == protocol::ICMPV6 && meta.icmp_type == icmpv6::kind::ECHO_REQUEST
        }
        L3::Arp => false,
    }
}

/// No virtual service covers `meta`'s destination port of a VIP: a TCP
/// reset or an ICMP port unreachable, as Linux answers, within
/// the worker's answer budget. A reset is never answered, nor a later
/// fragment; other protocols are dropped as before.
pub(super) fn closed_port<B: PacketBuf>(
    st: &mut Stack<B>,
    mut buf: B,
    meta: &PacketMeta,
    now: u64,
    io: &mut impl Io<B>,
) {
    let answerable = match meta.protocol {
        protocol::TCP => meta.tcp_flags & tcp::flags::RST == 0,
        protocol::UDP => true,
        _ => false,
    };
    if !answerable || meta.fragment == Fragment::Later {
        return st.drop_buf(buf, Counter::DropLocalOther);
    }
    if !st.allow_answer(now) {
        return st.drop_buf(buf, Counter::DropRateLimited);
    }
    let (sent, r) = if meta.protocol == protocol::TCP {
        (Counter::TcpResetSent, tcp_reset(&mut buf, meta))
    } else {
        let r = icmp_error_reply(&mut buf, meta, IcmpErrorKind::PortUnreachable, meta.dst);
        (Counter::PortUnreachableSent, r)
    };
    match r {
        Ok(()) => {
            st.counters().inc(sent);
            st.send_ip(buf, meta.src, now, io);
        }
        Err(_) => st.drop_buf(buf, Counter::DropLocalOther),
    }
}

/// Turns the TCP segment in `buf` into the reset Linux answers it with
/// (RFC 793 "reset generation"): with ACK set in the segment, a bare RST
/// whose sequence number is that acknowledgement; without, RST+ACK with
/// sequence 0 acknowledging everything the segment occupied (SYN and FIN
/// count one). No options, window 0, from the segment's destination back
/// to its source (ports swapped), TTL / hop limit 64. The Ethernet header
/// is kept with its addresses swapped; the caller routes the reply.
pub fn tcp_reset<B: PacketBuf>(buf: &mut B, meta: &PacketMeta) -> Result<(), XmitError> {
    let (l3, l4, end) = (
        usize::from(meta.l3_offset),
        usize::from(meta.l4_offset),
        meta.l3_end(),
    );
    if meta.protocol != protocol::TCP {
        return Err(XmitError::UnsupportedProtocol);
    }
    if meta.fragment == Fragment::Later {
        return Err(XmitError::Fragment);
    }
    if buf.len() < end || l4 >= end {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let (seq, ack, flags, seg_len) = {
        let t = tcp::TcpPacket::new_checked(&buf.data()[l4..end]).map_err(XmitError::Malformed)?;
        (
            t.seq_number(),
            t.ack_number(),
            t.flags(),
            t.payload().len() as u32,
        )
    };
    let (rseq, rack, rflags) = if flags & tcp::flags::ACK != 0 {
        (ack, 0, tcp::flags::RST)
    } else {
        let occupied = seg_len
            + u32::from(flags & tcp::flags::SYN != 0)
            + u32::from(flags & tcp::flags::FIN != 0);
        (
            0,
            seq.wrapping_add(occupied),
            tcp::flags::RST | tcp::flags::ACK,
        )
    };
    let ip_hl = match meta.l3 {
        L3::Ipv4 => ipv4::HEADER_LEN,
        L3::Ipv6 => ipv6::HEADER_LEN,
        L3::Arp => return Err(XmitError::NotIp),
    };
    let seg = l3 + ip_hl;
    let new_len = seg + tcp::HEADER_LEN;
    if new_len > buf.len() {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    let extra = buf.len() - new_len;
    buf.trim(extra);
    let d = buf.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut d[..]);
    let (from, to) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(to);
    eth.set_dst_addr(from);
    let t = &mut d[seg..new_len];
    t[0..2].copy_from_slice(&meta.dport.to_be_bytes());
    t[2..4].copy_from_slice(&meta.sport.to_be_bytes());
    t[4..8].copy_from_slice(&rseq.to_be_bytes());
    t[8..12].copy_from_slice(&rack.to_be_bytes());
    t[12] = (tcp::HEADER_LEN as u8 / 4) << 4;
    t[13] = rflags;
    t[14..20].fill(0);
    let len = tcp::HEADER_LEN as u16;
    let pseudo = match (meta.dst, meta.src) {
        (IpAddr::V4(s), IpAddr::V4(dst)) => {
            Ipv4Repr {
                src: s,
                dst,
                protocol: protocol::TCP,
                payload_len: len,
                ttl: RESET_TTL,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: true,
            }
            .emit(&mut d[l3..])
            .map_err(XmitError::Malformed)?;
            checksum::pseudo_header_v4(s, dst, protocol::TCP, len)
        }
        (IpAddr::V6(s), IpAddr::V6(dst)) => {
            Ipv6Repr {
                src: s,
                dst,
                next_header: protocol::TCP,
                payload_len: len,
                hop_limit: RESET_TTL,
                traffic_class: 0,
            }
            .emit(&mut d[l3..])
            .map_err(XmitError::Malformed)?;
            checksum::pseudo_header_v6(s, dst, protocol::TCP, u32::from(len))
        }
        _ => return Err(XmitError::FamilyMismatch),
    };
    let c = checksum::finish(pseudo, &d[seg..new_len]);
    d[seg + 16..seg + 18].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// TTL / hop limit of the resets the director sends (Linux's default).
const RESET_TTL: u8 = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::wire::parse_packet;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn the_bucket_gives_its_burst_then_one_a_millisecond() {
        let mut l = AnswerLimit::default();
        let given = (0..100).filter(|_| l.allow(5)).count();
        assert_eq!(given, ANSWER_BURST as usize);
        assert!(!l.allow(5), "empty within the same millisecond");
        assert!(l.allow(6), "a token a millisecond");
        assert!(!l.allow(6));
        let given = (0..100).filter(|_| l.allow(1_000_000)).count();
        assert_eq!(given, ANSWER_BURST as usize, "refills to the burst only");
    }

    fn segment(v6: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        let b = if v6 {
            let mut c = [0u8; 16];
            c[0] = 0x20;
            c[1] = 0x01;
            c[2] = 0x0d;
            c[3] = 0xb8;
            let mut v = c;
            c[15] = 2;
            v[15] = 0x64;
            b.ipv6(c, v, 64)
        } else {
            b.ipv4([198, 18, 0, 2], [198, 18, 0, 100], 64)
        };
        let mut b = b.tcp(40000, 81, 1000, 64240);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(5555);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    /// The reset for `frame`, re-parsed by etherparse (checksums checked
    /// by hand): (seq, ack, rst, ack flag, sport, dport, swapped addrs).
    fn reset_of(frame: &[u8]) -> (u32, u32, bool, bool, u16, u16) {
        let meta = parse_packet(frame).unwrap();
        let mut buf = TestBuf::new(frame);
        tcp_reset(&mut buf, &meta).unwrap();
        let out = buf.data().to_vec();
        assert_eq!(&out[0..6], &frame[6..12], "back to the sender's MAC");
        let back = parse_packet(&out).unwrap();
        assert_eq!((back.src, back.dst), (meta.dst, meta.src));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let (src, dst) = match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(h.time_to_live, 64);
                (IpAddr::from(h.source), IpAddr::from(h.destination))
            }
            NetSlice::Ipv6(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.hop_limit, 64);
                (IpAddr::from(h.source), IpAddr::from(h.destination))
            }
        };
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        let h = t.to_header();
        let want = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => h.calc_checksum_ipv4_raw(s.octets(), d.octets(), &[]),
            (IpAddr::V6(s), IpAddr::V6(d)) => h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &[]),
            _ => unreachable!(),
        }
        .unwrap();
        assert_eq!(h.checksum, want, "TCP checksum");
        assert_eq!((t.payload().len(), h.window_size), (0, 0));
        (
            h.sequence_number,
            h.acknowledgment_number,
            h.rst,
            h.ack,
            h.source_port,
            h.destination_port,
        )
    }

    #[test]
    fn a_syn_gets_rst_ack_acknowledging_the_syn() {
        for v6 in [false, true] {
            assert_eq!(
                reset_of(&segment(v6, "S", &[])),
                (0, 1001, true, true, 81, 40000),
                "v6 {v6}"
            );
        }
    }

    #[test]
    fn a_segment_with_ack_gets_a_bare_rst_at_its_ack() {
        for v6 in [false, true] {
            assert_eq!(
                reset_of(&segment(v6, "A", b"hello")),
                (5555, 0, true, false, 81, 40000)
            );
        }
    }

    #[test]
    fn data_and_fin_without_ack_are_acknowledged_in_full() {
        assert_eq!(
            reset_of(&segment(false, "F", b"abc")),
            (0, 1000 + 3 + 1, true, true, 81, 40000)
        );
    }
}
