//! The segments the SYN proxy writes, each built in place over the packet
//! that causes it (no buffer is allocated): the SYN-ACK over the client's
//! SYN, the SYN toward the real server over the client's ACK, the ACK
//! toward the real server over the server's SYN-ACK.
//!
//! Each is a bare IP header (IPv4 without options, IPv6 without extension
//! headers), a TCP header with the options given and no payload; the
//! Ethernet header stays in front and the caller fills in the MACs, as for
//! every rewrite ([`crate::xmit`]).

use std::net::IpAddr;

use super::cookie::Handshake;
use crate::buf::PacketBuf;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::{protocol, Ipv4Repr};
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{checksum, ipv4, ipv6, tcp, Fragment, PacketMeta, ParseError, L3};
use crate::xmit::XmitError;

/// TCP option kinds the proxy reads and writes.
mod opt {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const SACK_PERM: u8 = 4;
}

/// TTL / hop limit of the segments the director originates.
const TTL: u8 = 64;
/// The window the director's SYN-ACK announces (no window scaling).
pub const SYNACK_WINDOW: u16 = 65535;

/// The fields of a TCP segment the proxy reads: sequence and
/// acknowledgement numbers, flags, window, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegInfo {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: u32,
    /// MSS option, if any.
    pub mss: Option<u16>,
    /// SACK permitted option present.
    pub sack_perm: bool,
}

/// Reads the TCP segment of `meta`.
pub fn seg_info(frame: &[u8], meta: &PacketMeta) -> Result<SegInfo, XmitError> {
    if meta.protocol != protocol::TCP {
        return Err(XmitError::UnsupportedProtocol);
    }
    if meta.fragment != Fragment::No {
        return Err(XmitError::Fragment);
    }
    let seg = frame
        .get(usize::from(meta.l4_offset)..meta.l3_end())
        .ok_or(XmitError::Malformed(ParseError::Truncated))?;
    let t = tcp::TcpPacket::new_checked(seg).map_err(XmitError::Malformed)?;
    let hlen = t.header_len();
    let (mut mss, mut sack_perm) = (None, false);
    let mut at = tcp::HEADER_LEN;
    while at < hlen {
        match seg[at] {
            opt::END => break,
            opt::NOP => at += 1,
            kind => {
                let Some(&len) = seg.get(at + 1) else { break };
                let len = usize::from(len);
                if len < 2 || at + len > hlen {
                    break;
                }
                match (kind, len) {
                    (opt::MSS, 4) => mss = Some(u16::from_be_bytes([seg[at + 2], seg[at + 3]])),
                    (opt::SACK_PERM, 2) => sack_perm = true,
                    _ => {}
                }
                at += len;
            }
        }
    }
    Ok(SegInfo {
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window(),
        payload: t.payload().len() as u32,
        mss,
        sack_perm,
    })
}

/// The options of a proxied handshake: MSS, and SACK permitted when the
/// client offered it (NOP, NOP, SACK_PERM keeps 4-byte alignment).
fn handshake_options(hs: Handshake) -> ([u8; 8], usize) {
    let m = hs.mss.to_be_bytes();
    let o = [
        opt::MSS,
        4,
        m[0],
        m[1],
        opt::NOP,
        opt::NOP,
        opt::SACK_PERM,
        2,
    ];
    (o, if hs.sack { 8 } else { 4 })
}

/// One TCP segment to write over a packet.
struct Segment<'a> {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &'a [u8],
}

/// The client's SYN becomes the director's SYN-ACK: from the VIP back to
/// the client, sequence number `cookie`, acknowledging the SYN, announcing
/// the MSS and SACK the cookie carries.
pub fn syn_ack<B: PacketBuf>(
    buf: &mut B,
    meta: &PacketMeta,
    syn: &SegInfo,
    cookie: u32,
    hs: Handshake,
) -> Result<(), XmitError> {
    let (o, n) = handshake_options(hs);
    write(
        buf,
        meta,
        &Segment {
            src: meta.dst,
            dst: meta.src,
            sport: meta.dport,
            dport: meta.sport,
            seq: cookie,
            ack: syn.seq.wrapping_add(1),
            flags: tcp::flags::SYN | tcp::flags::ACK,
            window: SYNACK_WINDOW,
            options: &o[..n],
        },
        true,
    )
}

/// A client packet (the ACK that completed the handshake, or any later
/// one while the real server has not answered) becomes the SYN toward the
/// real server: same addresses and ports (NAT rewrites them next), the
/// client's ISN, the client's MSS and SACK, its window. Its payload is
/// dropped; the client sends it again once the connection is up.
pub fn syn_to_server<B: PacketBuf>(
    buf: &mut B,
    meta: &PacketMeta,
    client_isn: u32,
    window: u16,
    hs: Handshake,
) -> Result<(), XmitError> {
    let (o, n) = handshake_options(hs);
    write(
        buf,
        meta,
        &Segment {
            src: meta.src,
            dst: meta.dst,
            sport: meta.sport,
            dport: meta.dport,
            seq: client_isn,
            ack: 0,
            flags: tcp::flags::SYN,
            window,
            options: &o[..n],
        },
        false,
    )
}

/// The real server's SYN-ACK becomes the ACK that completes its handshake,
/// sent back to it in the client's name: sequence `client_isn + 1`,
/// acknowledging the server's SYN, the client's window.
pub fn ack_to_server<B: PacketBuf>(
    buf: &mut B,
    meta: &PacketMeta,
    synack: &SegInfo,
    client_isn: u32,
    window: u16,
) -> Result<(), XmitError> {
    write(
        buf,
        meta,
        &Segment {
            src: meta.dst,
            dst: meta.src,
            sport: meta.dport,
            dport: meta.sport,
            seq: client_isn.wrapping_add(1),
            ack: synack.seq.wrapping_add(1),
            flags: tcp::flags::ACK,
            window,
            options: &[],
        },
        true,
    )
}

/// Writes `s` over the packet from its IP header on, trimming or growing
/// the buffer to fit; `swap_macs` turns the Ethernet header around (an
/// answer to the packet's sender).
fn write<B: PacketBuf>(
    buf: &mut B,
    meta: &PacketMeta,
    s: &Segment<'_>,
    swap_macs: bool,
) -> Result<(), XmitError> {
    let l3 = usize::from(meta.l3_offset);
    let ip_hl = match meta.l3 {
        L3::Ipv4 => ipv4::HEADER_LEN,
        L3::Ipv6 => ipv6::HEADER_LEN,
        L3::Arp => return Err(XmitError::NotIp),
    };
    let seg = l3 + ip_hl;
    let tcp_len = tcp::HEADER_LEN + s.options.len();
    let new_len = seg + tcp_len;
    if buf.len() < l3 + ip_hl {
        return Err(XmitError::Malformed(ParseError::Truncated));
    }
    if new_len > buf.len() {
        if !buf.append(new_len - buf.len()) {
            return Err(XmitError::NoHeadroom);
        }
    } else {
        buf.trim(buf.len() - new_len);
    }
    let d = buf.data_mut();
    if swap_macs {
        let mut eth = EthernetFrame::new_unchecked(&mut d[..]);
        let (from, to) = (eth.src_addr(), eth.dst_addr());
        eth.set_src_addr(to);
        eth.set_dst_addr(from);
    }
    let len = tcp_len as u16;
    let pseudo = match (s.src, s.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            Ipv4Repr {
                src,
                dst,
                protocol: protocol::TCP,
                payload_len: len,
                ttl: TTL,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: true,
            }
            .emit(&mut d[l3..])
            .map_err(XmitError::Malformed)?;
            checksum::pseudo_header_v4(src, dst, protocol::TCP, len)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Ipv6Repr {
                src,
                dst,
                next_header: protocol::TCP,
                payload_len: len,
                hop_limit: TTL,
                traffic_class: 0,
            }
            .emit(&mut d[l3..])
            .map_err(XmitError::Malformed)?;
            checksum::pseudo_header_v6(src, dst, protocol::TCP, u32::from(len))
        }
        _ => return Err(XmitError::FamilyMismatch),
    };
    let t = &mut d[seg..new_len];
    t[0..2].copy_from_slice(&s.sport.to_be_bytes());
    t[2..4].copy_from_slice(&s.dport.to_be_bytes());
    t[4..8].copy_from_slice(&s.seq.to_be_bytes());
    t[8..12].copy_from_slice(&s.ack.to_be_bytes());
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = s.flags;
    t[14..16].copy_from_slice(&s.window.to_be_bytes());
    t[16..20].fill(0);
    t[20..].copy_from_slice(s.options);
    let c = checksum::finish(pseudo, t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    Ok(())
}
