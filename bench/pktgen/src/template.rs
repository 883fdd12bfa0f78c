//! The packet template and the few bytes patched per packet.
//!
//! Why templates: every mbuf of the generator's transmit pool is filled
//! once with the whole frame before the run; afterwards a packet costs only
//! the fields that name its flow (client address and port, TCP flags) and
//! the two checksums over them. The checksums are not recomputed: the
//! template's sums are taken with those fields zero, and each packet adds
//! its field values and folds (one's-complement addition is associative),
//! which gives the same result as a full computation.
//!
//! Frame layout (no VLAN): Ethernet 0..14, IPv4 14..34 (no options),
//! TCP 34..54 or UDP 34..42, then zero payload up to the frame length.

use std::net::Ipv4Addr;

use dataplane::wire::checksum;

/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

const ETH_LEN: usize = 14;
const IP_OFF: usize = ETH_LEN;
const IP_SRC: usize = IP_OFF + 12;
const IP_CSUM: usize = IP_OFF + 10;
const L4_OFF: usize = IP_OFF + 20;
const L4_SRC_PORT: usize = L4_OFF;
const TCP_FLAGS: usize = L4_OFF + 13;
const TCP_CSUM: usize = L4_OFF + 16;
const UDP_CSUM: usize = L4_OFF + 6;

/// Transport protocol of the generated flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    /// Lower-case name, as in the results.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Why a template could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The frame size is outside 64..=1518 (Ethernet, FCS included).
    #[error("frame size must be 64..=1518 bytes (Ethernet frame with FCS), got {0}")]
    Size(usize),
}

/// One flow's frame, minus its flow fields.
#[derive(Debug, Clone)]
pub struct Template {
    /// The frame bytes (without FCS), flow fields zero.
    pub bytes: Vec<u8>,
    /// Protocol of the frame.
    pub proto: Proto,
    ip_sum: u16,
    l4_sum: u16,
}

/// What a frame is built from.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub proto: Proto,
    /// Ethernet frame size including the 4-byte FCS the wire would add
    /// (RFC 2544's sizes: 64 B is 60 bytes of data in the mbuf).
    pub frame_size: usize,
}

#[inline(always)]
fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

impl Template {
    /// Builds the template of `spec`.
    pub fn new(spec: &FrameSpec) -> Result<Template, TemplateError> {
        if !(64..=1518).contains(&spec.frame_size) {
            return Err(TemplateError::Size(spec.frame_size));
        }
        let len = spec.frame_size - 4;
        let mut b = vec![0u8; len];
        b[0..6].copy_from_slice(&spec.dst_mac);
        b[6..12].copy_from_slice(&spec.src_mac);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (len - ETH_LEN) as u16;
        let ip = &mut b[IP_OFF..IP_OFF + 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64; // TTL
        ip[9] = spec.proto.number();
        // source address (12..16) and checksum (10..12) stay zero
        ip[16..20].copy_from_slice(&spec.vip.octets());
        let ip_sum = checksum::data(&b[IP_OFF..IP_OFF + 20]);
        let l4_len = ip_len - 20;
        let l4 = &mut b[L4_OFF..];
        l4[2..4].copy_from_slice(&spec.vport.to_be_bytes());
        match spec.proto {
            Proto::Tcp => {
                l4[4..8].copy_from_slice(&1u32.to_be_bytes()); // seq
                l4[8..12].copy_from_slice(&1u32.to_be_bytes()); // ack
                l4[12] = 5 << 4; // header length 20, flags (13) zero
                l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes()); // window
            }
            Proto::Udp => {
                l4[4..6].copy_from_slice(&l4_len.to_be_bytes());
            }
        }
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::UNSPECIFIED,
            spec.vip,
            spec.proto.number(),
            l4_len,
        );
        let l4_sum = checksum::combine(&[pseudo, checksum::data(&b[L4_OFF..])]);
        Ok(Template {
            bytes: b,
            proto: spec.proto,
            ip_sum,
            l4_sum,
        })
    }

    /// Frame length in the mbuf (without FCS).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never empty; for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes flow `(src, sport)` with TCP `flags` (ignored for UDP) into
    /// `frame`, which must hold this template (as every mbuf of the
    /// prefilled pool does). A frame shorter than the template is left
    /// alone.
    #[inline(always)]
    pub fn patch(&self, frame: &mut [u8], src: u32, sport: u16, flags: u8) {
        if frame.len() < L4_OFF + 20 {
            return;
        }
        let hi = src >> 16;
        let lo = src & 0xffff;
        frame[IP_SRC..IP_SRC + 4].copy_from_slice(&src.to_be_bytes());
        let ip = !fold(u32::from(self.ip_sum) + hi + lo);
        frame[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ip.to_be_bytes());
        frame[L4_SRC_PORT..L4_SRC_PORT + 2].copy_from_slice(&sport.to_be_bytes());
        let sum = u32::from(self.l4_sum) + hi + lo + u32::from(sport);
        match self.proto {
            Proto::Tcp => {
                frame[TCP_FLAGS] = flags;
                let c = !fold(sum + u32::from(flags));
                frame[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Udp => {
                let c = match !fold(sum) {
                    0 => 0xffff, // zero means "no checksum" in UDP
                    c => c,
                };
                frame[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::ipv4::Ipv4Packet;
    use dataplane::wire::tcp::TcpPacket;
    use dataplane::wire::udp::UdpPacket;

    fn spec(proto: Proto, frame_size: usize) -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vip: Ipv4Addr::new(198, 18, 0, 100),
            vport: 80,
            proto,
            frame_size,
        }
    }

    fn l4_ok(ip: &Ipv4Packet<&[u8]>) -> bool {
        let pseudo = checksum::pseudo_header_v4(
            ip.src_addr(),
            ip.dst_addr(),
            ip.protocol(),
            ip.payload().len() as u16,
        );
        checksum::verify(pseudo, ip.payload())
    }

    #[test]
    fn patched_udp_frames_parse_with_valid_checksums() {
        let t = Template::new(&spec(Proto::Udp, 64)).unwrap();
        assert_eq!(t.len(), 60);
        let mut f = t.bytes.clone();
        for (src, port) in [
            (0xc612_8001u32, 1024u16),
            (0xc612_ffff, 65535),
            (0xc612_8000, 40000),
        ] {
            t.patch(&mut f, src, port, 0);
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(u32::from(ip.src_addr()), src);
            assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 18, 0, 100));
            assert_eq!(ip.total_len(), 46);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (port, 80, 26));
            assert_ne!(udp.checksum(), 0);
            assert!(l4_ok(&ip), "udp checksum wrong for {src:x}:{port}");
        }
    }

    #[test]
    fn patched_tcp_frames_carry_flags_and_valid_checksums() {
        let t = Template::new(&spec(Proto::Tcp, 128)).unwrap();
        let mut f = t.bytes.clone();
        for flags in [TCP_SYN, TCP_ACK] {
            t.patch(&mut f, 0xc612_9234, 5555, flags);
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert!(ip.verify_checksum());
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(tcp.flags(), flags);
            assert_eq!((tcp.src_port(), tcp.dst_port()), (5555, 80));
            assert!(l4_ok(&ip));
        }
    }

    #[test]
    fn sizes_outside_ethernet_are_refused() {
        assert_eq!(
            Template::new(&spec(Proto::Udp, 63)).unwrap_err(),
            TemplateError::Size(63)
        );
        assert!(Template::new(&spec(Proto::Udp, 1519)).is_err());
        assert_eq!(Template::new(&spec(Proto::Tcp, 1518)).unwrap().len(), 1514);
    }

    #[test]
    fn short_frame_is_left_alone() {
        let t = Template::new(&spec(Proto::Udp, 64)).unwrap();
        let mut f = vec![0u8; 40];
        t.patch(&mut f, 1, 2, 0);
        assert!(f.iter().all(|&b| b == 0));
    }
}
