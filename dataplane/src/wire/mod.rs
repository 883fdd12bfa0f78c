//! Packet views and the one-pass classifier.
//!
//! # Contract (as smoltcp's `wire`)
//! * Every header has a zero-copy view over any `AsRef<[u8]>` (setters when
//!   the buffer is also `AsMut<[u8]>`). `new_checked` validates everything
//!   the accessors rely on, in the order a reader expects the error (length,
//!   version, header length, total length); after it succeeded no accessor
//!   can panic. `new_unchecked` is only for buffers about to be filled.
//! * Field positions live in a private `mod field` per header and are read
//!   in network byte order; no packed structs are cast.
//! * A plain `*Repr` with `parse`/`emit` exists where tests and builders
//!   need one (Ethernet, ARP, IPv4, IPv6).
//! * Checksums are all in [`checksum`].
//!
//! # The classifier
//! [`parse_packet`] is what the worker runs on every received frame: one
//! pass over Ethernet (one optional VLAN tag), ARP or IPv4/IPv6 (IPv6
//! extension headers walked), and the first bytes of TCP/UDP/SCTP/ICMP,
//! producing a small `Copy` [`PacketMeta`]. It never allocates and never
//! panics; a frame it cannot vouch for is a [`ParseError`] whose
//! [`ParseError::index`] the daemon uses to count drops by reason.
//!
//! Addresses in [`PacketMeta`] are `std::net::IpAddr`: it is `Copy`, 17
//! bytes, and is what the connection table and configuration use, so no
//! conversion is needed between classifier, lookup and rewrite.
//!
//! ICMP errors quote the packet they are about; [`parse_icmp_quote`] is the
//! second pass that reads the quoted header for the connection lookup of
//! ipvs.md 5.5.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod gue;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod sync;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testutil;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr};

use ethernet::{ethertype, EthernetFrame};
use ipv4::protocol;

/// Why a frame could not be classified or a view could not be built.
///
/// The discriminants are stable: [`index`](ParseError::index) is used as a
/// counter slot and [`as_str`](ParseError::as_str) as the counter's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends inside a header.
    #[error("packet truncated inside a header")]
    Truncated = 0,
    /// The ethertype is neither IPv4, IPv6 nor ARP.
    #[error("unsupported ethertype")]
    UnsupportedEtherType = 1,
    /// ARP for something other than IPv4 over Ethernet.
    #[error("ARP for other than IPv4 over Ethernet")]
    UnsupportedArp = 2,
    /// IP version (or GRE/GUE version) is not the one announced.
    #[error("bad version field")]
    BadVersion = 3,
    /// IPv4 IHL below 5 or past the buffer; GUE options past the buffer.
    #[error("bad header length")]
    BadHeaderLength = 4,
    /// IPv4 total length below the header or past the buffer; IPv6
    /// payload length past the buffer.
    #[error("bad total length")]
    BadTotalLength = 5,
    /// An IPv6 extension header runs past the payload.
    #[error("IPv6 extension header runs past the payload")]
    BadExtHeader = 6,
    /// More IPv6 extension headers than the walk accepts.
    #[error("too many IPv6 extension headers")]
    TooManyExtHeaders = 7,
    /// TCP data offset below 5 words or past the segment.
    #[error("bad TCP data offset")]
    BadTcpOffset = 8,
    /// UDP length below 8 or past the IP payload.
    #[error("bad UDP length")]
    BadUdpLength = 9,
    /// A Neighbor Discovery option of length 0 or past the message.
    #[error("malformed NDP option")]
    BadNdpOption = 10,
    /// A valid but unsupported feature (GRE routing, GUE control messages).
    #[error("unsupported header feature")]
    Unsupported = 11,
}

impl ParseError {
    /// Number of variants: the size of a per-reason counter array.
    pub const COUNT: usize = 12;

    /// All variants in index order.
    pub const ALL: [ParseError; ParseError::COUNT] = [
        ParseError::Truncated,
        ParseError::UnsupportedEtherType,
        ParseError::UnsupportedArp,
        ParseError::BadVersion,
        ParseError::BadHeaderLength,
        ParseError::BadTotalLength,
        ParseError::BadExtHeader,
        ParseError::TooManyExtHeaders,
        ParseError::BadTcpOffset,
        ParseError::BadUdpLength,
        ParseError::BadNdpOption,
        ParseError::Unsupported,
    ];

    /// Stable index in `0..COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, for counters and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParseError::Truncated => "truncated",
            ParseError::UnsupportedEtherType => "unsupported_ethertype",
            ParseError::UnsupportedArp => "unsupported_arp",
            ParseError::BadVersion => "bad_version",
            ParseError::BadHeaderLength => "bad_header_length",
            ParseError::BadTotalLength => "bad_total_length",
            ParseError::BadExtHeader => "bad_ext_header",
            ParseError::TooManyExtHeaders => "too_many_ext_headers",
            ParseError::BadTcpOffset => "bad_tcp_offset",
            ParseError::BadUdpLength => "bad_udp_length",
            ParseError::BadNdpOption => "bad_ndp_option",
            ParseError::Unsupported => "unsupported",
        }
    }
}

/// Reads a big-endian u16 at `at`; callers have checked the bounds.
#[inline]
pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Writes a big-endian u16 at `at`; callers have checked the bounds.
#[inline]
pub(crate) fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The network layer found by [`parse_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Arp,
    Ipv4,
    Ipv6,
}

/// Fragment status of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fragment {
    /// A whole datagram.
    #[default]
    No,
    /// The first fragment: carries the L4 header.
    First,
    /// A later fragment: no L4 header, ports are 0.
    Later,
}

/// What the worker needs to know about a frame, found in one pass.
///
/// All offsets are from the start of the frame (the Ethernet header).
/// Fields that do not apply are 0 (ports of ICMP, ICMP type of TCP...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// VLAN id if the frame carried an 802.1Q/802.1ad tag.
    pub vlan: Option<u16>,
    /// Ethertype of the payload (behind the tag).
    pub ethertype: u16,
    /// Offset of the ARP/IP header: 14, or 18 with a tag.
    pub l3_offset: u16,
    pub l3: L3,
    /// Source address (ARP: sender protocol address).
    pub src: IpAddr,
    /// Destination address (ARP: target protocol address).
    pub dst: IpAddr,
    /// IPv4 total length, IPv6 40 + payload length (ARP: 28). Bytes of the
    /// frame behind `l3_offset + ip_len` are link padding.
    pub ip_len: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 DF bit (always `false` for IPv6, which never fragments in
    /// transit).
    pub dont_frag: bool,
    pub fragment: Fragment,
    /// L4 protocol (IPv6: after the extension headers); ARP: 0.
    pub protocol: u8,
    /// Offset of the L4 header (of the fragment data for later fragments).
    pub l4_offset: u16,
    pub sport: u16,
    pub dport: u16,
    /// TCP flag byte.
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type and code.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl PacketMeta {
    pub fn is_ipv4(&self) -> bool {
        self.l3 == L3::Ipv4
    }
    pub fn is_ipv6(&self) -> bool {
        self.l3 == L3::Ipv6
    }
    /// End of the IP packet in the frame (start of any padding).
    pub fn l3_end(&self) -> usize {
        usize::from(self.l3_offset) + usize::from(self.ip_len)
    }
    /// An ICMP (v4 or v6) message of an error type.
    pub fn is_icmp_error(&self) -> bool {
        match (self.l3, self.protocol) {
            (L3::Ipv4, protocol::ICMP) => icmp::is_error(self.icmp_type),
            (L3::Ipv6, protocol::ICMPV6) => icmpv6::is_error(self.icmp_type),
            _ => false,
        }
    }
    /// Any ICMP/ICMPv6 message.
    pub fn is_icmp(&self) -> bool {
        matches!(
            (self.l3, self.protocol),
            (L3::Ipv4, protocol::ICMP) | (L3::Ipv6, protocol::ICMPV6)
        )
    }
    /// Whether the L4 header is present (whole datagram or first fragment).
    pub fn has_l4(&self) -> bool {
        self.fragment != Fragment::Later
    }
}

const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Classifies a frame in one pass. See the module docs.
#[inline]
pub fn parse_packet(frame: &[u8]) -> Result<PacketMeta, ParseError> {
    if let Some(m) = parse_v4_fast(frame) {
        return Ok(m);
    }
    parse_general(frame)
}

/// [`parse_packet`] into `out`, for a caller that keeps the answers of a
/// burst in an array ([`crate::worker`]'s parse ahead of the warm-up). Why
/// not `*out = parse_packet(frame)`: that built the answer in a temporary
/// with byte and word stores and copied it with wider loads, which the
/// CPU cannot forward from those stores (perf, a million flows: the
/// copy's first wide load was the parse's costliest instruction). Each
/// branch here writes `out` itself.
#[inline(always)]
pub fn parse_packet_into(frame: &[u8], out: &mut Result<PacketMeta, ParseError>) {
    match parse_v4_fast(frame) {
        Some(m) => *out = Ok(m),
        None => *out = parse_general(frame),
    }
}

/// The frame nearly every packet of an established flow is: untagged IPv4
/// without options, not a fragment, carrying a TCP or UDP header that
/// [`parse_general`] accepts; read at fixed offsets through one fixed-size
/// view of the 34 header bytes.
///
/// `None` for anything else (tags, options, fragments, other protocols,
/// any length the general parse would refuse): the general parse then
/// classifies it, with its exact errors. For every frame it accepts, the
/// result equals [`parse_general`]'s (property test
/// `fast_parse_equals_general_parse`).
#[inline(always)]
fn parse_v4_fast(frame: &[u8]) -> Option<PacketMeta> {
    const AT_L3: usize = ethernet::HEADER_LEN;
    const AT_L4: usize = AT_L3 + ipv4::HEADER_LEN;
    let h: &[u8; AT_L4] = frame.get(..AT_L4)?.try_into().ok()?;
    // Ethertype IPv4 (not a tag), version 4 with IHL 5.
    if h[12] != 0x08 || h[13] != 0x00 || h[AT_L3] != 0x45 {
        return None;
    }
    let total = u16::from_be_bytes([h[AT_L3 + 2], h[AT_L3 + 3]]);
    let flags_frag = u16::from_be_bytes([h[AT_L3 + 6], h[AT_L3 + 7]]);
    if flags_frag & 0x3fff != 0 {
        return None; // MF or an offset: a fragment
    }
    // Empty (None) when the total length is below the header or past the
    // frame.
    let l4 = frame.get(AT_L4..AT_L3 + usize::from(total))?;
    let proto = h[AT_L3 + 9];
    let (sport, dport, tcp_flags) = match proto {
        protocol::TCP => {
            let t: &[u8; tcp::HEADER_LEN] = l4.get(..tcp::HEADER_LEN)?.try_into().ok()?;
            let off = usize::from(t[12] >> 4) * 4;
            if off < tcp::HEADER_LEN || off > l4.len() {
                return None;
            }
            (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                t[13],
            )
        }
        protocol::UDP => {
            let u: &[u8; udp::HEADER_LEN] = l4.get(..udp::HEADER_LEN)?.try_into().ok()?;
            let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if len < udp::HEADER_LEN || len > l4.len() {
                return None;
            }
            (
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                0,
            )
        }
        _ => return None,
    };
    Some(PacketMeta {
        vlan: None,
        ethertype: ethertype::IPV4,
        l3_offset: AT_L3 as u16,
        l3: L3::Ipv4,
        src: IpAddr::V4(Ipv4Addr::new(
            h[AT_L3 + 12],
            h[AT_L3 + 13],
            h[AT_L3 + 14],
            h[AT_L3 + 15],
        )),
        dst: IpAddr::V4(Ipv4Addr::new(
            h[AT_L3 + 16],
            h[AT_L3 + 17],
            h[AT_L3 + 18],
            h[AT_L3 + 19],
        )),
        ip_len: total,
        ttl: h[AT_L3 + 8],
        dont_frag: flags_frag & 0x4000 != 0,
        fragment: Fragment::No,
        protocol: proto,
        l4_offset: AT_L4 as u16,
        sport,
        dport,
        tcp_flags,
        icmp_type: 0,
        icmp_code: 0,
    })
}

/// Every frame [`parse_packet`] classifies, layer by layer through the
/// checked views. Kept out of line so the fast path's caller saves no
/// registers for it.
#[inline(never)]
fn parse_general(frame: &[u8]) -> Result<PacketMeta, ParseError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let l3_offset = eth.header_len();
    let mut meta = PacketMeta {
        vlan: eth.vlan_id(),
        ethertype: eth.ethertype(),
        l3_offset: l3_offset as u16,
        l3: L3::Arp,
        src: UNSPECIFIED,
        dst: UNSPECIFIED,
        ip_len: 0,
        ttl: 0,
        dont_frag: false,
        fragment: Fragment::No,
        protocol: 0,
        l4_offset: 0,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    let l3 = &frame[l3_offset..];
    let l4: &[u8] = match meta.ethertype {
        ethertype::ARP => {
            let p = arp::ArpPacket::new_checked(l3)?;
            meta.src = IpAddr::V4(p.sender_proto_addr());
            meta.dst = IpAddr::V4(p.target_proto_addr());
            meta.ip_len = arp::PACKET_LEN as u16;
            return Ok(meta);
        }
        ethertype::IPV4 => {
            let p = ipv4::Ipv4Packet::new_checked(l3)?;
            meta.l3 = L3::Ipv4;
            meta.src = IpAddr::V4(p.src_addr());
            meta.dst = IpAddr::V4(p.dst_addr());
            meta.ip_len = p.total_len();
            meta.ttl = p.ttl();
            meta.dont_frag = p.dont_frag();
            meta.protocol = p.protocol();
            meta.fragment = match (p.is_fragment(), p.frag_offset()) {
                (false, _) => Fragment::No,
                (true, 0) => Fragment::First,
                (true, _) => Fragment::Later,
            };
            let hl = p.header_len();
            meta.l4_offset = (l3_offset + hl) as u16;
            &l3[hl..usize::from(meta.ip_len)]
        }
        ethertype::IPV6 => {
            let p = ipv6::Ipv6Packet::new_checked(l3)?;
            meta.l3 = L3::Ipv6;
            meta.src = IpAddr::V6(p.src_addr());
            meta.dst = IpAddr::V6(p.dst_addr());
            let total = p.total_len();
            // 40 + a 16-bit payload length can exceed u16; such a packet
            // does not fit an mbuf, but say so rather than wrap.
            meta.ip_len = u16::try_from(total).map_err(|_| ParseError::BadTotalLength)?;
            meta.ttl = p.hop_limit();
            let up = p.upper_layer()?;
            meta.protocol = up.protocol;
            meta.fragment = match up.fragment {
                None => Fragment::No,
                Some(f) if f.offset == 0 => Fragment::First,
                Some(_) => Fragment::Later,
            };
            meta.l4_offset = (l3_offset + up.offset) as u16;
            &l3[up.offset..total]
        }
        _ => return Err(ParseError::UnsupportedEtherType),
    };
    if meta.fragment == Fragment::Later {
        return Ok(meta);
    }
    parse_l4(&mut meta, l4)?;
    Ok(meta)
}

/// Reads ports, TCP flags or ICMP type/code from the L4 header.
fn parse_l4(meta: &mut PacketMeta, l4: &[u8]) -> Result<(), ParseError> {
    match (meta.l3, meta.protocol) {
        (_, protocol::TCP) => {
            let t = tcp::TcpPacket::new_checked(l4)?;
            meta.sport = t.src_port();
            meta.dport = t.dst_port();
            meta.tcp_flags = t.flags();
        }
        (_, protocol::UDP) => {
            // A first fragment holds only part of the datagram the UDP
            // length describes, so only the header is required then.
            if meta.fragment == Fragment::First {
                if l4.len() < udp::HEADER_LEN {
                    return Err(ParseError::Truncated);
                }
                let u = udp::UdpPacket::new_unchecked(l4);
                meta.sport = u.src_port();
                meta.dport = u.dst_port();
            } else {
                let u = udp::UdpPacket::new_checked(l4)?;
                meta.sport = u.src_port();
                meta.dport = u.dst_port();
            }
        }
        (_, protocol::SCTP) => {
            // SCTP common header: ports, verification tag, CRC32c.
            if l4.len() < 12 {
                return Err(ParseError::Truncated);
            }
            meta.sport = get16(l4, 0);
            meta.dport = get16(l4, 2);
        }
        (L3::Ipv4, protocol::ICMP) => {
            let i = icmp::Icmpv4Packet::new_checked(l4)?;
            meta.icmp_type = i.msg_type();
            meta.icmp_code = i.msg_code();
        }
        (L3::Ipv6, protocol::ICMPV6) => {
            let i = icmpv6::Icmpv6Packet::new_checked(l4)?;
            meta.icmp_type = i.msg_type();
            meta.icmp_code = i.msg_code();
        }
        _ => {}
    }
    Ok(())
}

/// The packet quoted inside an ICMP/ICMPv6 error (its IP header and at
/// least the first 4 bytes of its L4 header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpQuote {
    /// Offset of the quoted IP header from the frame start.
    pub l3_offset: u16,
    /// Offset of the quoted L4 header from the frame start.
    pub l4_offset: u16,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    /// Ports of a TCP/UDP/SCTP quote (0 otherwise).
    pub sport: u16,
    pub dport: u16,
}

/// Reads the packet quoted by the ICMP error `meta` describes. The quote
/// must be of the same family as the error and carry the first 4 bytes of
/// a TCP, UDP or SCTP header (for other protocols, e.g. a quoted IPIP/GRE
/// tunnel packet, the ports are 0 and the L4 bytes are not required).
pub fn parse_icmp_quote(frame: &[u8], meta: &PacketMeta) -> Result<IcmpQuote, ParseError> {
    if !meta.is_icmp_error() {
        return Err(ParseError::Unsupported);
    }
    let start = usize::from(meta.l4_offset) + icmp::HEADER_LEN;
    let end = meta.l3_end().min(frame.len());
    let q = frame.get(start..end).ok_or(ParseError::Truncated)?;
    let (src, dst, proto, l4_rel) = match meta.l3 {
        L3::Ipv4 => {
            let p = ipv4::Ipv4Packet::new_quoted(q)?;
            if p.frag_offset() != 0 {
                return Err(ParseError::Unsupported);
            }
            (
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                p.protocol(),
                p.header_len(),
            )
        }
        L3::Ipv6 => {
            let p = ipv6::Ipv6Packet::new_quoted(q)?;
            let up = p.upper_layer()?;
            if up.fragment.is_some_and(|f| f.offset != 0) {
                return Err(ParseError::Unsupported);
            }
            (
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                up.protocol,
                up.offset,
            )
        }
        L3::Arp => return Err(ParseError::Unsupported),
    };
    let mut quote = IcmpQuote {
        l3_offset: start as u16,
        l4_offset: (start + l4_rel) as u16,
        src,
        dst,
        protocol: proto,
        sport: 0,
        dport: 0,
    };
    if matches!(proto, protocol::TCP | protocol::UDP | protocol::SCTP) {
        let l4 = q.get(l4_rel..l4_rel + 4).ok_or(ParseError::Truncated)?;
        quote.sport = get16(l4, 0);
        quote.dport = get16(l4, 2);
    }
    Ok(quote)
}

/// Runs the classifier and every checked view over `data` and reads every
/// accessor: the body of the `wire` fuzz target, also run by a proptest.
/// Returns a value derived from all reads so nothing is optimised away.
pub fn fuzz_views(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut eat = |v: u64| acc = acc.wrapping_mul(31).wrapping_add(v);
    if let Ok(m) = parse_packet(data) {
        eat(u64::from(m.sport) + u64::from(m.dport) + u64::from(m.l4_offset));
        if let Ok(q) = parse_icmp_quote(data, &m) {
            eat(u64::from(q.sport) + u64::from(q.l4_offset));
        }
    }
    if let Ok(e) = EthernetFrame::new_checked(data) {
        eat(u64::from(e.ethertype()) + u64::from(e.vlan_id().unwrap_or(0)));
        eat(e.payload().len() as u64 + u64::from(e.src_addr().0[0] ^ e.dst_addr().0[5]));
    }
    if let Ok(a) = arp::ArpPacket::new_checked(data) {
        let r = arp::ArpRepr::parse(&a);
        eat(u64::from(r.operation) + u64::from(u32::from(r.sender_ip)));
    }
    for p in [
        ipv4::Ipv4Packet::new_checked(data),
        ipv4::Ipv4Packet::new_quoted(data),
    ]
    .into_iter()
    .flatten()
    {
        eat(u64::from(p.total_len()) + u64::from(p.frag_offset()) + p.options().len() as u64);
        eat(p.payload().len() as u64 + u64::from(p.verify_checksum()) + u64::from(p.ttl()));
        eat(u64::from(u32::from(p.src_addr()) ^ u32::from(p.dst_addr())));
    }
    for p in [
        ipv6::Ipv6Packet::new_checked(data),
        ipv6::Ipv6Packet::new_quoted(data),
    ]
    .into_iter()
    .flatten()
    {
        eat(u64::from(p.flow_label()) + p.payload().len() as u64);
        if let Ok(u) = p.upper_layer() {
            eat(u.offset as u64 + u64::from(u.protocol));
        }
        eat(p.src_addr().octets()[15] as u64 + u64::from(p.hop_limit()));
    }
    if let Ok(t) = tcp::TcpPacket::new_checked(data) {
        eat(u64::from(t.seq_number()) + u64::from(t.ack_number()) + u64::from(t.window()));
        eat(t.payload().len() as u64 + u64::from(t.urgent()) + u64::from(t.checksum()));
    }
    if let Ok(u) = udp::UdpPacket::new_checked(data) {
        eat(u.payload().len() as u64 + u64::from(u.checksum()));
    }
    if let Ok(s) = sctp::SctpPacket::new_checked(data) {
        eat(u64::from(s.verify_checksum()) + u64::from(s.src_port()));
        // Walk the chunks as the state machine does (first, and the one
        // behind it at the padded length).
        if let Some((t, len)) = s.chunk_at(0) {
            let next = (usize::from(len) + 3) & !3;
            eat(u64::from(t) + u64::from(s.chunk_at(next).map_or(0, |c| c.0)));
        }
    }
    if let Ok(i) = icmp::Icmpv4Packet::new_checked(data) {
        eat(u64::from(i.next_hop_mtu()) + u64::from(i.echo_seq()) + i.payload().len() as u64);
        eat(u64::from(i.verify_checksum()));
    }
    if let Ok(i) = icmpv6::Icmpv6Packet::new_checked(data) {
        eat(u64::from(i.mtu()) + u64::from(i.na_flags()) + i.payload().len() as u64);
        if let Ok(r) = icmpv6::NdpRepr::parse(&i) {
            eat(u64::from(r.flags) + u64::from(r.lladdr.map_or(0, |m| m.0[5])));
        }
        if let Some(t) = i.ndp_target() {
            eat(u64::from(t.octets()[0]));
        }
        for kind in [
            icmpv6::ndp_option::SOURCE_LL_ADDR,
            icmpv6::ndp_option::TARGET_LL_ADDR,
        ] {
            if let Ok(Some(m)) = i.ndp_lladdr(kind) {
                eat(u64::from(m.0[0]));
            }
        }
    }
    if let Ok(g) = gre::GrePacket::new_checked(data) {
        eat(u64::from(g.protocol())
            + u64::from(g.checksum().unwrap_or(0))
            + g.payload().len() as u64);
        eat(u64::from(g.verify_checksum()));
    }
    if let Ok(g) = gue::GuePacket::new_checked(data) {
        let (s, p) = g.remcsum().unwrap_or((0, 0));
        eat(u64::from(g.protocol()) + u64::from(s) + u64::from(p) + g.payload().len() as u64);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::testutil::{checksums_ok, frame, L4};
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Ethernet + IPv4 (198.18.0.1 -> 198.18.0.2, TTL 64, DF) + TCP SYN
    /// 40000 -> 80, written out byte by byte.
    const TCP_SYN_V4: [u8; 54] = [
        0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0xa8, 198, 18, 0, 1, 198,
        18, 0, 2, // IPv4
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0,
        0, // TCP
    ];

    #[test]
    fn tcp_syn_v4_is_classified_field_by_field() {
        let m = parse_packet(&TCP_SYN_V4).unwrap();
        assert_eq!(m.vlan, None);
        assert_eq!(m.ethertype, 0x0800);
        assert_eq!(m.l3_offset, 14);
        assert_eq!(m.l3, L3::Ipv4);
        assert_eq!((m.src, m.dst), (v4("198.18.0.1"), v4("198.18.0.2")));
        assert_eq!((m.ip_len, m.ttl, m.dont_frag), (40, 64, true));
        assert_eq!((m.protocol, m.l4_offset), (6, 34));
        assert_eq!(
            (m.sport, m.dport, m.tcp_flags),
            (40000, 80, tcp::flags::SYN)
        );
        assert_eq!(m.fragment, Fragment::No);
    }

    #[test]
    fn trailing_ethernet_padding_is_not_part_of_the_packet() {
        let mut f = TCP_SYN_V4.to_vec();
        f.extend_from_slice(&[0u8; 6]);
        let m = parse_packet(&f).unwrap();
        assert_eq!(m.l3_end(), 54);
    }

    #[test]
    fn later_ipv4_fragment_has_no_ports() {
        let mut f = TCP_SYN_V4;
        f[20] = 0x00;
        f[21] = 0x10; // offset 128 bytes, DF cleared
        let m = parse_packet(&f).unwrap();
        assert_eq!(m.fragment, Fragment::Later);
        assert_eq!((m.sport, m.dport), (0, 0));
        f[20] = 0x20;
        f[21] = 0x00; // MF, offset 0
        assert_eq!(parse_packet(&f).unwrap().fragment, Fragment::First);
    }

    #[test]
    fn each_layer_reports_its_own_error() {
        assert_eq!(parse_packet(&TCP_SYN_V4[..10]), Err(ParseError::Truncated));
        let mut f = TCP_SYN_V4;
        f[12] = 0x88;
        f[13] = 0xcc; // LLDP
        assert_eq!(parse_packet(&f), Err(ParseError::UnsupportedEtherType));
        let mut f = TCP_SYN_V4;
        f[14] = 0x55;
        assert_eq!(parse_packet(&f), Err(ParseError::BadVersion));
        let mut f = TCP_SYN_V4;
        f[14] = 0x43;
        assert_eq!(parse_packet(&f), Err(ParseError::BadHeaderLength));
        let mut f = TCP_SYN_V4;
        f[17] = 0x29;
        assert_eq!(parse_packet(&f), Err(ParseError::BadTotalLength));
        let mut f = TCP_SYN_V4;
        f[46] = 0x40;
        assert_eq!(parse_packet(&f), Err(ParseError::BadTcpOffset));
    }

    #[test]
    fn vlan_tagged_udp_v6_is_classified() {
        let f = frame(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            L4::Udp,
            5353,
            53,
            Some(100),
            b"query",
        );
        let m = parse_packet(&f).unwrap();
        assert_eq!(m.vlan, Some(100));
        assert_eq!(m.l3_offset, 18);
        assert_eq!(m.l3, L3::Ipv6);
        assert_eq!(
            m.src,
            IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!((m.protocol, m.sport, m.dport), (17, 5353, 53));
        assert_eq!(m.ip_len as usize, 40 + 8 + 5);
        assert_eq!(m.l4_offset, 18 + 40);
    }

    #[test]
    fn echo_request_reports_icmp_type() {
        let f = frame(
            v4("198.18.0.1"),
            v4("198.18.0.2"),
            L4::IcmpEcho,
            7,
            0,
            None,
            b"ping",
        );
        let m = parse_packet(&f).unwrap();
        assert_eq!((m.protocol, m.icmp_type, m.icmp_code), (1, 8, 0));
        assert!(m.is_icmp() && !m.is_icmp_error());
    }

    #[test]
    fn arp_request_reports_sender_and_target() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        f.extend_from_slice(&[
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0,
            1,
        ]);
        let m = parse_packet(&f).unwrap();
        assert_eq!(m.l3, L3::Arp);
        assert_eq!((m.src, m.dst), (v4("198.18.0.2"), v4("198.18.0.1")));
    }

    #[test]
    fn icmp_error_quote_yields_the_quoted_flow() {
        // Port unreachable from 198.18.0.9 quoting the SYN above.
        let quoted = &TCP_SYN_V4[14..];
        let mut f = TCP_SYN_V4[..14].to_vec();
        let total = 20 + 8 + quoted.len();
        f.extend_from_slice(&[0x45, 0, 0, total as u8, 0, 0, 0, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&[198, 18, 0, 9, 198, 18, 0, 1]);
        f.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(quoted);
        let m = parse_packet(&f).unwrap();
        assert!(m.is_icmp_error());
        let q = parse_icmp_quote(&f, &m).unwrap();
        assert_eq!((q.src, q.dst), (v4("198.18.0.1"), v4("198.18.0.2")));
        assert_eq!((q.protocol, q.sport, q.dport), (6, 40000, 80));
        assert_eq!(q.l3_offset, 14 + 28);
        assert_eq!(q.l4_offset, 14 + 28 + 20);
    }

    #[test]
    fn error_names_and_indices_are_stable_and_distinct() {
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(!e.as_str().is_empty());
        }
        let mut names: Vec<_> = ParseError::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ParseError::COUNT);
    }

    #[test]
    fn etherparse_built_frames_verify_with_our_checksums() {
        for l4 in [L4::Tcp, L4::Udp, L4::IcmpEcho] {
            let f4 = frame(
                v4("198.18.0.1"),
                v4("198.19.0.1"),
                l4,
                1234,
                80,
                None,
                b"abc",
            );
            let f6 = frame(
                "2001:db8::1".parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
                l4,
                1234,
                80,
                None,
                b"abc",
            );
            assert!(checksums_ok(&f4), "{l4:?} v4");
            assert!(checksums_ok(&f6), "{l4:?} v6");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// What the fast parse accepts, the general parse classifies the
        /// same way, on valid frames of every kind and on mutated ones.
        #[test]
        fn fast_parse_equals_general_parse(
            v6 in proptest::bool::weighted(0.2),
            kind in prop_oneof![Just(L4::Tcp), Just(L4::Udp), Just(L4::IcmpEcho)],
            vlan in proptest::option::weighted(0.2, 1u16..4094),
            ports in any::<(u16, u16)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            // Mostly the ethertype, IP and L4 header bytes.
            edits in proptest::collection::vec((12usize..62, any::<u8>()), 0..3),
            cut in 0usize..120,
        ) {
            let (s, d) = if v6 {
                (IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]))
            } else {
                (v4("198.18.0.1"), v4("198.19.0.2"))
            };
            let mut f = frame(s, d, kind, ports.0, ports.1, vlan, &payload);
            for (pos, val) in edits {
                if pos < f.len() {
                    f[pos] = val;
                }
            }
            f.truncate(f.len().min(cut + 20));
            if let Some(m) = parse_v4_fast(&f) {
                prop_assert_eq!(Ok(m), parse_general(&f));
            }
            // Into a slot holding an earlier answer, as the worker's array.
            let mut slot = parse_packet(&TCP_SYN_V4);
            parse_packet_into(&f, &mut slot);
            prop_assert_eq!(slot, parse_packet(&f));
        }
    }

    proptest! {

        #[test]
        fn parse_packet_and_views_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_packet(&data);
            let _ = fuzz_views(&data);
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            pos in 0usize..90, val in any::<u8>(), cut in 0usize..100, v6 in any::<bool>(),
        ) {
            let mut f = if v6 {
                frame("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(),
                      L4::Tcp, 1, 2, Some(5), b"0123456789")
            } else {
                TCP_SYN_V4.to_vec()
            };
            if pos < f.len() { f[pos] = val; }
            f.truncate(cut);
            let _ = parse_packet(&f);
            let _ = fuzz_views(&f);
        }
    }
}
