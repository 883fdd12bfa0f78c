//! The SYN-flood mode of `uvs-pktgen`: spoofed SYNs beside established
//! flows, and the handshakes the sink completes.
//!
//! Why here and not in the loop: what counts as "an established flow's
//! packet forwarded" and "a flood SYN answered" is decided per frame at the
//! sink, and the answers the sink writes (the real server's SYN-ACK, the
//! client's ACK to a SYN-ACK) must carry exactly the sequence numbers the
//! SYN proxy checks; both are tested here without DPDK.
//!
//! Traffic classes, told apart at the sink without per-flow state:
//! * established data: the template's ACK (sequence number
//!   [`TEMPLATE_SEQ`]) from a real client to a real server;
//! * handshake: a SYN from a real client to a real server (the opening of
//!   an established flow or a new client; with the proxy, written by the
//!   director after the client's ACK carried a valid cookie);
//! * flood: anything from or to the flood prefix (spoofed sources, which
//!   no real client uses): a flood SYN forwarded to a real server (no
//!   defence), or a SYN-ACK from the VIP toward a spoofed source (the
//!   proxy's cookie, or a real server's answer the director forwarded).
//!
//! With `--handshake` the sink plays both ends of every real client's
//! handshake: a SYN that reaches a real server is answered with the
//! server's SYN-ACK (acknowledging the SYN's sequence number + 1, which the
//! proxy checks), and a SYN-ACK that reaches a real client from the VIP is
//! answered with the client's ACK (acknowledging the cookie or the server's
//! ISN + 1). Flood SYNs are answered by the real servers too (a real server
//! answers every SYN), but the spoofed sources never complete anything.
//!
//! Both generators (`uvs-pktgen` over a port, `uvs-loop` in one process)
//! interleave the flood with [`FloodMix`], tag what they send with
//! [`Class`], and decide at the sink with [`FloodSink::see`], so their
//! figures mean the same thing.

use std::net::Ipv4Addr;

use dataplane::buf::PacketBuf;
use dataplane::dpdk::Mbuf;
use dataplane::wire::checksum;

use crate::check::{Checker, Seen};
use crate::flows::FlowSpace;

/// The flood options both generators take (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    /// Spoofed SYNs per established-flow packet during the measurement
    /// window (TCP; 0: no flood).
    #[arg(long, default_value_t = 0)]
    pub flood: u32,
    /// Prefix the spoofed SYNs come from (random addresses and ports).
    #[arg(long, default_value = "198.19.0.0/16")]
    pub flood_clients: String,
    /// The sink completes the real clients' TCP handshakes: answers a SYN
    /// that reached a real server with its SYN-ACK, and a SYN-ACK that
    /// reached a client (a real server's, or a SYN proxy's cookie) with the
    /// client's ACK. Flood SYNs get the real server's SYN-ACK too.
    #[arg(long)]
    pub handshake: bool,
}

/// TCP sequence (and acknowledgement) number of every template frame.
pub const TEMPLATE_SEQ: u32 = 1;
/// The real servers' ISN in the SYN-ACKs the sink writes.
pub const SERVER_ISN: u32 = 0x5e5e_0000;

const ETH: usize = 14;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The spoofed sources: random addresses of a prefix and random ports.
#[derive(Debug, Clone)]
pub struct FloodSource {
    base: u32,
    mask: u32,
    state: u64,
}

impl FloodSource {
    /// Sources in `prefix` (a.b.c.d/len, 8 <= len <= 30), drawn from a
    /// xorshift generator started at `seed`.
    pub fn new(prefix: &str, seed: u64) -> Result<FloodSource, String> {
        let (a, l) = prefix
            .split_once('/')
            .ok_or_else(|| format!("flood prefix must be a.b.c.d/len, got {prefix:?}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("bad flood prefix address {a:?}"))?;
        let len: u32 = l
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("flood prefix length must be 8..=30, got {l:?}"))?;
        let mask = u32::MAX >> len;
        Ok(FloodSource {
            base: u32::from(addr) & !mask,
            mask,
            state: seed | 1,
        })
    }

    /// Whether `a` is in the flood prefix.
    #[inline(always)]
    pub fn contains(&self, a: u32) -> bool {
        a & !self.mask == self.base
    }

    /// The next spoofed source address and port (1024..65535).
    #[inline(always)]
    pub fn draw(&mut self) -> (u32, u16) {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let addr = self.base | (x as u32 & self.mask);
        let port = 1024 + ((x >> 32) % 64512) as u16;
        (addr, port)
    }
}

/// What the sink saw, in the flood benchmark's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodSeen {
    /// Not a TCP frame of this benchmark's classes (left to the checker).
    Other,
    /// A flood SYN forwarded to a real server.
    FloodForwarded,
    /// A SYN-ACK from the VIP toward a spoofed source.
    FloodSynAck,
}

/// What the generator sent, by class (index of the per-class counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An established flow's packet (the template's ACK).
    Established = 0,
    /// A real client's SYN: an established flow opening, or a new client.
    Syn = 1,
    /// A spoofed SYN.
    Flood = 2,
}

/// Number of [`Class`]es.
pub const CLASSES: usize = 3;

impl Class {
    /// The class of a real client's packet with TCP `flags`.
    #[inline(always)]
    pub fn of_flags(flags: u8) -> Class {
        if flags == TCP_SYN {
            Class::Syn
        } else {
            Class::Established
        }
    }
}

/// How the flood is interleaved with the real clients' packets: after
/// each of theirs, `per` spoofed SYNs, while the flood is on.
#[derive(Debug, Clone)]
pub struct FloodMix {
    per: u32,
    left: u32,
}

impl FloodMix {
    /// `per` flood SYNs after each real client's packet (0: no flood).
    pub fn new(per: u32) -> FloodMix {
        FloodMix { per, left: 0 }
    }

    /// Whether the next packet is a flood SYN (never while `on` is false);
    /// otherwise it is a real client's, and `per` flood SYNs follow it.
    #[inline(always)]
    pub fn next_is_flood(&mut self, on: bool) -> bool {
        if on && self.left > 0 {
            self.left -= 1;
            true
        } else {
            self.left = self.per;
            false
        }
    }
}

/// What the sink counted, per class.
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkCounts {
    /// Frames the checker accepted (requests and answers).
    pub valid: u64,
    /// Answers that came back to their client as expected.
    pub trips: u64,
    /// Established data at a real server, correctly rewritten.
    pub est_rx: u64,
    /// Real clients' SYNs at a real server.
    pub syn_rx: u64,
    /// Flood SYNs at a real server.
    pub flood_fwd: u64,
    /// SYN-ACKs from the VIP to a spoofed source (the proxy's cookies, or
    /// real servers' answers the director forwarded).
    pub flood_synack: u64,
    /// SYN-ACKs from the VIP to a real client.
    pub client_synack: u64,
    /// Resets from the VIP to a real client answering an established
    /// flow's data (sequence number [`TEMPLATE_SEQ`]: the segment's
    /// acknowledgement): the director had no connection for it.
    pub est_reset: u64,
    /// Other resets from the VIP to a real client (a handshake's ACK
    /// without a connection or a valid cookie).
    pub other_reset: u64,
}

/// What the sink's caller does with a frame [`FloodSink::see`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Turn it into its handshake answer ([`answer_handshake`]) and send
    /// that back to the director.
    Answer,
    /// A valid request (the caller may play the server: `--replies`).
    Request,
    /// Counted; nothing more to do.
    Done,
    /// Refused by the checker.
    Invalid,
}

/// The sink's decision per frame, shared by both generators.
#[derive(Debug, Clone)]
pub struct FloodSink {
    /// Where the spoofed sources are.
    pub flood: FloodSource,
    pub vip: Ipv4Addr,
    pub clients: FlowSpace,
    /// Tell the flood's frames apart (a flood or `--handshake` is on).
    pub classes: bool,
    /// Complete the handshakes (`--handshake`).
    pub handshake: bool,
}

impl FloodSink {
    /// Counts `frame` in `c` and says what to do with it.
    #[inline]
    pub fn see(&self, frame: &[u8], checker: &Checker, c: &mut SinkCounts) -> Verdict {
        if self.classes {
            if let Some(seq) = reset_to_client(frame, &self.clients, self.vip) {
                if seq == TEMPLATE_SEQ {
                    c.est_reset += 1;
                } else {
                    c.other_reset += 1;
                }
                return Verdict::Done;
            }
            match classify(frame, &self.flood, self.vip) {
                FloodSeen::Other => {}
                FloodSeen::FloodSynAck => {
                    c.flood_synack += 1;
                    return Verdict::Done;
                }
                FloodSeen::FloodForwarded => {
                    c.flood_fwd += 1;
                    // A real server answers every SYN.
                    return if self.handshake && is_syn(frame) {
                        Verdict::Answer
                    } else {
                        Verdict::Done
                    };
                }
            }
        }
        match checker.classify(frame) {
            Seen::Request if self.handshake && is_syn(frame) => {
                c.valid += 1;
                c.syn_rx += 1;
                Verdict::Answer
            }
            Seen::Reply if self.handshake && is_synack_to_client(frame, &self.clients) => {
                c.valid += 1;
                c.client_synack += 1;
                Verdict::Answer
            }
            Seen::Request => {
                c.valid += 1;
                if is_established_data(frame) {
                    c.est_rx += 1;
                } else if is_syn(frame) {
                    c.syn_rx += 1;
                }
                Verdict::Request
            }
            Seen::Reply => {
                c.valid += 1;
                c.trips += 1;
                Verdict::Done
            }
            Seen::Invalid => Verdict::Invalid,
        }
    }
}

/// [`answer_handshake`] on an mbuf: the answer, its length set, or `None`
/// (the mbuf freed) when the frame has none.
#[inline]
pub fn answer_mbuf(mut m: Mbuf, director_mac: [u8; 6]) -> Option<Mbuf> {
    let len = answer_handshake(m.data_mut(), director_mac)?;
    m.set_len(len);
    Some(m)
}

/// TCP header offset and flags of an option-less IPv4 TCP frame.
fn tcp_of(frame: &[u8]) -> Option<(usize, u8)> {
    if frame.len() < ETH + 20 + 20 || frame[12..14] != [0x08, 0x00] || frame[ETH] & 0xf0 != 0x40 {
        return None;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    let l4 = ETH + ihl;
    (ihl >= 20 && frame[ETH + 9] == 6 && frame.len() >= l4 + 20).then(|| (l4, frame[l4 + 13]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Whether `frame` belongs to the flood (from or to `flood`'s prefix) and
/// how; `vip` is the service address.
#[inline]
pub fn classify(frame: &[u8], flood: &FloodSource, vip: Ipv4Addr) -> FloodSeen {
    let Some((_, flags)) = tcp_of(frame) else {
        return FloodSeen::Other;
    };
    let src = be32(&frame[ETH + 12..]);
    let dst = be32(&frame[ETH + 16..]);
    if flood.contains(src) {
        FloodSeen::FloodForwarded
    } else if flood.contains(dst)
        && src == u32::from(vip)
        && flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
    {
        FloodSeen::FloodSynAck
    } else {
        FloodSeen::Other
    }
}

/// Whether a frame the checker accepted as a request (real client to real
/// server) is an established flow's data packet: the template's ACK.
#[inline]
pub fn is_established_data(frame: &[u8]) -> bool {
    tcp_of(frame).is_some_and(|(l4, flags)| {
        flags & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_ACK && be32(&frame[l4 + 4..]) == TEMPLATE_SEQ
    })
}

/// The sequence number of `frame` if it is a reset from `vip` to a client
/// of `clients` (the director's answer to a segment it had no connection
/// for: Linux's reset carries the segment's acknowledgement).
#[inline]
pub fn reset_to_client(frame: &[u8], clients: &FlowSpace, vip: Ipv4Addr) -> Option<u32> {
    let (l4, flags) = tcp_of(frame)?;
    (flags & TCP_RST != 0
        && be32(&frame[ETH + 12..]) == u32::from(vip)
        && clients.contains(be32(&frame[ETH + 16..])))
    .then(|| be32(&frame[l4 + 4..]))
}

/// Whether `frame` is a bare SYN (a handshake's first segment).
#[inline]
pub fn is_syn(frame: &[u8]) -> bool {
    tcp_of(frame).is_some_and(|(_, f)| f & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN)
}

/// Whether `frame` is a SYN-ACK toward a client of `clients` (the proxy's
/// cookie or a real server's answer, forwarded by the director).
#[inline]
pub fn is_synack_to_client(frame: &[u8], clients: &FlowSpace) -> bool {
    tcp_of(frame).is_some_and(|(_, f)| {
        f & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN | TCP_ACK
            && clients.contains(be32(&frame[ETH + 16..]))
    })
}

/// Turns `frame`, a SYN (to a real server) or a SYN-ACK (to a client), into
/// its answer in place, sent to `director_mac`: the real server's SYN-ACK
/// (seq [`SERVER_ISN`], ack = SYN's seq + 1) or the client's ACK (seq =
/// SYN-ACK's ack, ack = SYN-ACK's seq + 1). The TCP header is cut to 20
/// bytes (options dropped) and both checksums are computed again. Returns
/// the answer's frame length, or `None` (frame unchanged) for anything else.
pub fn answer_handshake(frame: &mut [u8], director_mac: [u8; 6]) -> Option<usize> {
    let (l4, flags) = tcp_of(frame)?;
    let (new_flags, seq, ack) = match flags & (TCP_SYN | TCP_ACK | TCP_RST) {
        TCP_SYN => (
            TCP_SYN | TCP_ACK,
            SERVER_ISN,
            be32(&frame[l4 + 4..]).wrapping_add(1),
        ),
        f if f == TCP_SYN | TCP_ACK => (
            TCP_ACK,
            be32(&frame[l4 + 8..]),
            be32(&frame[l4 + 4..]).wrapping_add(1),
        ),
        _ => return None,
    };
    // Ethernet: back to the director.
    frame.copy_within(0..6, 6);
    frame[0..6].copy_from_slice(&director_mac);
    // IPv4: options dropped, addresses swapped, length of a bare segment.
    let ihl = l4 - ETH;
    if ihl > 20 {
        frame.copy_within(l4.., ETH + 20);
    }
    let l4 = ETH + 20;
    let mut src = [0u8; 4];
    src.copy_from_slice(&frame[ETH + 12..ETH + 16]);
    frame.copy_within(ETH + 16..ETH + 20, ETH + 12);
    frame[ETH + 16..ETH + 20].copy_from_slice(&src);
    frame[ETH] = 0x45;
    frame[ETH + 2..ETH + 4].copy_from_slice(&40u16.to_be_bytes());
    frame[ETH + 8] = 64;
    frame[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
    let ip_sum = !checksum::data(&frame[ETH..ETH + 20]);
    frame[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP: ports swapped, bare 20-byte header.
    let mut sport = [0u8; 2];
    sport.copy_from_slice(&frame[l4..l4 + 2]);
    frame.copy_within(l4 + 2..l4 + 4, l4);
    frame[l4 + 2..l4 + 4].copy_from_slice(&sport);
    frame[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    frame[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
    frame[l4 + 12] = 5 << 4;
    frame[l4 + 13] = new_flags;
    frame[l4 + 14..l4 + 16].copy_from_slice(&0xffffu16.to_be_bytes());
    frame[l4 + 16..l4 + 20].copy_from_slice(&[0, 0, 0, 0]);
    let pseudo = checksum::pseudo_header_v4(
        Ipv4Addr::from(be32(&frame[ETH + 12..])),
        Ipv4Addr::from(be32(&frame[ETH + 16..])),
        6,
        20,
    );
    let c = checksum::finish(pseudo, &frame[l4..l4 + 20]);
    frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    // The frame's new length: a 40-byte IP packet, padded to 60 bytes.
    let len = (l4 + 20).max(60).min(frame.len());
    frame[l4 + 20..len].fill(0);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FrameSpec, Proto, Template};
    use dataplane::wire::ipv4::Ipv4Packet;
    use dataplane::wire::tcp::TcpPacket;

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const DIRECTOR: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn frame(src: u32, flags: u8) -> Vec<u8> {
        let t = Template::new(&FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 0x10],
            dst_mac: DIRECTOR,
            vip: VIP,
            vport: 80,
            proto: Proto::Tcp,
            frame_size: 64,
        })
        .unwrap();
        let mut f = t.bytes.clone();
        t.patch(&mut f, src, 4000, flags);
        f
    }

    fn checksums_ok(f: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let body = &ip.payload()[..usize::from(ip.total_len()) - 20];
        let pseudo = checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, body.len() as u16);
        ip.verify_checksum() && checksum::verify(pseudo, body)
    }

    #[test]
    fn flood_sources_stay_in_their_prefix_and_vary() {
        let mut f = FloodSource::new("198.19.0.0/16", 7).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let (a, p) = f.draw();
            assert!(f.contains(a));
            assert_eq!(a >> 16, 0xc613);
            assert!(p >= 1024);
            seen.insert((a, p));
        }
        assert!(seen.len() > 9_990, "{} distinct", seen.len());
        assert!(!f.contains(0xc612_8001));
        assert!(FloodSource::new("198.19.0.0", 1).is_err());
        assert!(FloodSource::new("198.19.0.0/31", 1).is_err());
    }

    #[test]
    fn the_classes_are_told_apart() {
        let flood = FloodSource::new("198.19.0.0/16", 1).unwrap();
        let est = frame(0xc612_8001, TCP_ACK);
        assert!(is_established_data(&est));
        assert!(!is_syn(&est));
        assert_eq!(classify(&est, &flood, VIP), FloodSeen::Other);
        let syn = frame(0xc612_8001, TCP_SYN);
        assert!(is_syn(&syn) && !is_established_data(&syn));
        let spoofed = frame(0xc613_0203, TCP_SYN);
        assert_eq!(classify(&spoofed, &flood, VIP), FloodSeen::FloodForwarded);
        // The director's SYN-ACK toward a spoofed source.
        let mut synack = frame(0xc613_0203, TCP_SYN);
        answer_handshake(&mut synack, DIRECTOR).unwrap();
        synack[14 + 12..14 + 16].copy_from_slice(&VIP.octets());
        assert_eq!(classify(&synack, &flood, VIP), FloodSeen::FloodSynAck);
    }

    #[test]
    fn a_syn_is_answered_as_the_proxy_checks_and_a_synack_with_the_cookie() {
        let clients = FlowSpace::parse("198.18.128.0/17").unwrap();
        // The real server's SYN-ACK to a SYN from a client.
        let mut f = frame(0xc612_8001, TCP_SYN);
        let len = answer_handshake(&mut f, DIRECTOR).unwrap();
        assert_eq!(len, 60);
        assert_eq!(&f[0..6], &DIRECTOR);
        assert!(checksums_ok(&f));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.src_addr(), VIP);
        assert_eq!(u32::from(ip.dst_addr()), 0xc612_8001);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 4000));
        assert_eq!(tcp.flags(), TCP_SYN | TCP_ACK);
        assert_eq!(tcp.seq_number(), SERVER_ISN);
        assert_eq!(tcp.ack_number(), TEMPLATE_SEQ + 1);
        // That SYN-ACK reaching the client is answered with the ACK.
        assert!(is_synack_to_client(&f, &clients));
        let cookie = 0xdead_beef_u32;
        f[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&cookie.to_be_bytes());
        answer_handshake(&mut f, DIRECTOR).unwrap();
        assert!(checksums_ok(&f));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(u32::from(ip.src_addr()), 0xc612_8001);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.flags(), TCP_ACK);
        assert_eq!(tcp.seq_number(), TEMPLATE_SEQ + 1);
        assert_eq!(tcp.ack_number(), cookie.wrapping_add(1));
        // An ACK is not answered.
        let mut ack = frame(0xc612_8001, TCP_ACK);
        let before = ack.clone();
        assert!(answer_handshake(&mut ack, DIRECTOR).is_none());
        assert_eq!(ack, before);
    }

    #[test]
    fn the_mix_puts_per_flood_syns_after_each_clients_packet_only_while_on() {
        let mut m = FloodMix::new(2);
        let seq: Vec<bool> = (0..9).map(|_| m.next_is_flood(true)).collect();
        assert_eq!(
            seq,
            [false, true, true, false, true, true, false, true, true]
        );
        assert!((0..5).all(|_| !m.next_is_flood(false)));
        let mut none = FloodMix::new(0);
        assert!((0..5).all(|_| !none.next_is_flood(true)));
        assert_eq!(Class::of_flags(TCP_SYN), Class::Syn);
        assert_eq!(Class::of_flags(TCP_ACK), Class::Established);
    }

    /// What a NAT director sends: `f` toward real server 198.18.1.11 (its
    /// MAC 02:00:00:00:01:0b), from the director's MAC.
    fn to_server(mut f: Vec<u8>) -> Vec<u8> {
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 11]);
        f[6..12].copy_from_slice(&DIRECTOR);
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 1, 11]);
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let ip_sum = !checksum::data(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&ip_sum.to_be_bytes());
        f[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&[0, 0]);
        let len = u16::from_be_bytes([f[16], f[17]]) - 20;
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::from(be32(&f[26..])),
            Ipv4Addr::new(198, 18, 1, 11),
            6,
            len,
        );
        let c = checksum::finish(pseudo, &f[34..34 + usize::from(len)]);
        f[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn the_sink_counts_each_class_and_answers_only_handshakes() {
        let clients = FlowSpace::parse("198.18.128.0/17").unwrap();
        let checker = Checker {
            expect: crate::check::Expect::Nat,
            own_mac: [2, 0, 0, 0, 0, 0x10],
            peer_mac: DIRECTOR,
            vip: VIP,
            vport: 80,
            proto: 6,
            clients,
            servers: std::sync::Arc::new(
                crate::check::Servers::numbered(Ipv4Addr::new(198, 18, 1, 11), 1).unwrap(),
            ),
            tunnel: crate::check::Tunnel::Ipip,
        };
        let mut sink = FloodSink {
            flood: FloodSource::new("198.19.0.0/16", 1).unwrap(),
            vip: VIP,
            clients,
            classes: true,
            handshake: true,
        };
        let mut c = SinkCounts::default();
        let est = to_server(frame(0xc612_8001, TCP_ACK));
        assert_eq!(sink.see(&est, &checker, &mut c), Verdict::Request);
        let syn = to_server(frame(0xc612_8001, TCP_SYN));
        assert_eq!(sink.see(&syn, &checker, &mut c), Verdict::Answer);
        let flood_syn = to_server(frame(0xc613_0203, TCP_SYN));
        assert_eq!(sink.see(&flood_syn, &checker, &mut c), Verdict::Answer);
        // The director's cookie toward a client, and toward a spoofed source.
        let mut cookie = frame(0xc612_8001, TCP_SYN);
        answer_handshake(&mut cookie, [2, 0, 0, 0, 0, 0x10]).unwrap();
        cookie[6..12].copy_from_slice(&DIRECTOR);
        assert_eq!(sink.see(&cookie, &checker, &mut c), Verdict::Answer);
        let mut spoofed = frame(0xc613_0203, TCP_SYN);
        answer_handshake(&mut spoofed, [2, 0, 0, 0, 0, 0x10]).unwrap();
        assert_eq!(sink.see(&spoofed, &checker, &mut c), Verdict::Done);
        // Not forwarded: the client's own frame came back unchanged.
        assert_eq!(
            sink.see(&frame(0xc612_8001, TCP_ACK), &checker, &mut c),
            Verdict::Invalid
        );
        assert_eq!(
            (
                c.est_rx,
                c.syn_rx,
                c.flood_fwd,
                c.client_synack,
                c.flood_synack,
                c.valid
            ),
            (1, 1, 1, 1, 1, 3)
        );
        // The director's reset to a real client: for an established
        // flow's data (sequence = the data's acknowledgement, 1), and for
        // a handshake's ACK (sequence = the cookie + 1).
        let reset = |seq: u32| {
            let mut f = frame(0xc612_8001, TCP_ACK);
            f[14 + 12..14 + 16].copy_from_slice(&VIP.octets());
            f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 128, 1]);
            f[14 + 20 + 13] = TCP_RST;
            f[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&seq.to_be_bytes());
            f
        };
        assert_eq!(
            reset_to_client(&reset(TEMPLATE_SEQ), &clients, VIP),
            Some(TEMPLATE_SEQ)
        );
        assert_eq!(reset_to_client(&est, &clients, VIP), None);
        assert_eq!(
            sink.see(&reset(TEMPLATE_SEQ), &checker, &mut c),
            Verdict::Done
        );
        assert_eq!(
            sink.see(&reset(0xdead_bef0), &checker, &mut c),
            Verdict::Done
        );
        assert_eq!((c.est_reset, c.other_reset, c.valid), (1, 1, 3));
        // Without --handshake nothing is answered; SYNs still counted.
        sink.handshake = false;
        let mut c = SinkCounts::default();
        assert_eq!(sink.see(&syn, &checker, &mut c), Verdict::Request);
        assert_eq!(sink.see(&flood_syn, &checker, &mut c), Verdict::Done);
        assert_eq!((c.syn_rx, c.flood_fwd), (1, 1));
    }

    #[test]
    fn options_are_dropped_from_the_answer() {
        // A SYN with 8 bytes of TCP options (as the proxy writes toward
        // the server) in a 72-byte frame.
        let mut f = frame(0xc612_8001, TCP_SYN);
        f.resize(14 + 20 + 28, 0);
        f[14 + 2..14 + 4].copy_from_slice(&48u16.to_be_bytes());
        f[14 + 20 + 12] = 7 << 4;
        let len = answer_handshake(&mut f, DIRECTOR).unwrap();
        f.truncate(len);
        assert!(checksums_ok(&f));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.total_len(), 40);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.header_len(), 20);
        assert_eq!(tcp.ack_number(), 2);
    }
}
