//! The sink's check that a returned frame was forwarded the expected way.
//!
//! Why: counting returned frames alone cannot tell a forwarder from a
//! reflector, or a NAT from a box that bounces packets back untouched. Each
//! expectation names what the device under test must have done to the
//! frames the generator sent (and only those: a frame from another source
//! is invalid too):
//!
//! * `io`: testpmd io forwarding, the frame comes back unchanged;
//! * `macswap`: testpmd macswap, the Ethernet addresses are swapped;
//! * `nat`: masquerading, the destination is a real server instead of the
//!   VIP, the source is still a client, both checksums verify;
//! * `dr`: direct routing, same IP packet toward the VIP, a new destination
//!   MAC (the real server's);
//! * `tun`: IP-in-IP, an outer header toward a real server around the
//!   original packet toward the VIP;
//! * `any`: every frame counts.

use std::net::Ipv4Addr;

use dataplane::wire::checksum;
use dataplane::wire::ipv4::Ipv4Packet;

use crate::flows::FlowSpace;

/// What the device under test does to the generated frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    Io,
    Macswap,
    Nat,
    Dr,
    Tun,
}

impl Expect {
    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<Expect> {
        Some(match s {
            "any" => Expect::Any,
            "io" => Expect::Io,
            "macswap" => Expect::Macswap,
            "nat" => Expect::Nat,
            "dr" => Expect::Dr,
            "tun" => Expect::Tun,
            _ => return None,
        })
    }
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Expect::Any => "any",
            Expect::Io => "io",
            Expect::Macswap => "macswap",
            Expect::Nat => "nat",
            Expect::Dr => "dr",
            Expect::Tun => "tun",
        }
    }
}

/// Everything a check compares against.
#[derive(Debug, Clone, Copy)]
pub struct Checker {
    pub expect: Expect,
    /// The generator's own MAC (source of what it sends).
    pub own_mac: [u8; 6],
    /// The destination MAC it sends to.
    pub peer_mac: [u8; 6],
    pub vip: Ipv4Addr,
    pub proto: u8,
    pub clients: FlowSpace,
}

/// An IPv4 packet from one of our clients with our protocol: its view.
fn client_ip<'a>(c: &Checker, bytes: &'a [u8]) -> Option<Ipv4Packet<&'a [u8]>> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    (ip.protocol() == c.proto && c.clients.contains(u32::from(ip.src_addr()))).then_some(ip)
}

fn ipv4_payload(frame: &[u8]) -> Option<&[u8]> {
    (frame.len() >= 14 && frame[12..14] == [0x08, 0x00]).then(|| &frame[14..])
}

impl Checker {
    /// Whether `frame` is one of ours, forwarded as expected.
    #[inline]
    pub fn check(&self, frame: &[u8]) -> bool {
        let Some(l3) = ipv4_payload(frame) else {
            return self.expect == Expect::Any;
        };
        let (dst_mac, src_mac) = (&frame[0..6], &frame[6..12]);
        match self.expect {
            Expect::Any => true,
            Expect::Io | Expect::Macswap => {
                let (want_dst, want_src) = if self.expect == Expect::Io {
                    (self.peer_mac, self.own_mac)
                } else {
                    (self.own_mac, self.peer_mac)
                };
                dst_mac == want_dst
                    && src_mac == want_src
                    && client_ip(self, l3).is_some_and(|ip| ip.dst_addr() == self.vip)
            }
            Expect::Nat => client_ip(self, l3).is_some_and(|ip| {
                let pseudo = checksum::pseudo_header_v4(
                    ip.src_addr(),
                    ip.dst_addr(),
                    ip.protocol(),
                    ip.payload().len() as u16,
                );
                ip.dst_addr() != self.vip
                    && ip.verify_checksum()
                    && checksum::verify(pseudo, ip.payload())
            }),
            Expect::Dr => {
                dst_mac != self.peer_mac
                    && client_ip(self, l3).is_some_and(|ip| ip.dst_addr() == self.vip)
            }
            Expect::Tun => Ipv4Packet::new_checked(l3).is_ok_and(|outer| {
                outer.protocol() == 4
                    && outer.dst_addr() != self.vip
                    && outer.verify_checksum()
                    && client_ip(self, outer.payload()).is_some_and(|ip| ip.dst_addr() == self.vip)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FrameSpec, Proto, Template};

    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const RS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 11];
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
    const CLIENT: u32 = 0xc612_8005; // 198.18.128.5

    fn checker(expect: Expect) -> Checker {
        Checker {
            expect,
            own_mac: OWN,
            peer_mac: PEER,
            vip: VIP,
            proto: 17,
            clients: FlowSpace::parse("198.18.128.0/17").unwrap(),
        }
    }

    fn sent() -> Vec<u8> {
        let t = Template::new(&FrameSpec {
            src_mac: OWN,
            dst_mac: PEER,
            vip: VIP,
            vport: 80,
            proto: Proto::Udp,
            frame_size: 64,
        })
        .unwrap();
        let mut f = t.bytes.clone();
        t.patch(&mut f, CLIENT, 4000, 0);
        f
    }

    fn macswapped(mut f: Vec<u8>) -> Vec<u8> {
        f[0..6].copy_from_slice(&OWN);
        f[6..12].copy_from_slice(&PEER);
        f
    }

    /// What a NAT does: destination to the real server, checksums updated.
    fn natted(mut f: Vec<u8>) -> Vec<u8> {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_dst_addr(RS);
        ip.fill_checksum();
        let (src, len) = (ip.src_addr(), ip.payload().len() as u16);
        let l4 = &mut f[34..];
        l4[6..8].copy_from_slice(&[0, 0]);
        let pseudo = checksum::pseudo_header_v4(src, RS, 17, len);
        let c = !checksum::combine(&[pseudo, checksum::data(l4)]);
        l4[6..8].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn tunnelled(f: Vec<u8>) -> Vec<u8> {
        let inner = &f[14..];
        let mut out = f[..14].to_vec();
        out[0..6].copy_from_slice(&RS_MAC);
        let mut outer = vec![0u8; 20];
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut outer[..]);
            ip.set_version_ihl(20);
            ip.set_total_len((20 + inner.len()) as u16);
            ip.set_ttl(64);
            ip.set_protocol(4);
            ip.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
            ip.set_dst_addr(RS);
            ip.fill_checksum();
        }
        out.extend_from_slice(&outer);
        out.extend_from_slice(inner);
        out
    }

    #[test]
    fn io_accepts_unchanged_frames_only() {
        let c = checker(Expect::Io);
        assert!(c.check(&sent()));
        assert!(!c.check(&macswapped(sent())));
    }

    #[test]
    fn macswap_accepts_swapped_frames_only() {
        let c = checker(Expect::Macswap);
        assert!(c.check(&macswapped(sent())));
        assert!(!c.check(&sent()));
    }

    #[test]
    fn nat_needs_a_new_destination_and_valid_checksums() {
        let c = checker(Expect::Nat);
        let n = natted(sent());
        assert!(c.check(&n));
        assert!(!c.check(&sent()), "untouched frame passed as NAT");
        let mut bad = n.clone();
        bad[34 + 6] ^= 0xff; // UDP checksum
        assert!(!c.check(&bad));
        let mut not_client = n;
        not_client[14 + 12] = 199; // source 199.18.128.5
        assert!(!c.check(&not_client));
    }

    #[test]
    fn dr_needs_a_new_mac_and_the_vip() {
        let c = checker(Expect::Dr);
        let mut f = sent();
        f[0..6].copy_from_slice(&RS_MAC);
        assert!(c.check(&f));
        assert!(!c.check(&sent()));
        assert!(!c.check(&natted(f)));
    }

    #[test]
    fn tun_needs_an_ipip_header_around_the_original() {
        let c = checker(Expect::Tun);
        assert!(c.check(&tunnelled(sent())));
        assert!(!c.check(&sent()));
    }

    #[test]
    fn non_ip_and_truncated_frames_only_count_for_any() {
        let arp = {
            let mut f = sent();
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f
        };
        for e in [
            Expect::Io,
            Expect::Macswap,
            Expect::Nat,
            Expect::Dr,
            Expect::Tun,
        ] {
            let c = checker(e);
            assert!(!c.check(&arp), "{e:?}");
            assert!(!c.check(&sent()[..20]), "{e:?}");
            assert!(!c.check(&[]), "{e:?}");
        }
        assert!(checker(Expect::Any).check(&arp));
    }
}
