//! The sink's check that a returned frame was forwarded the expected way,
//! and the real servers' answers that make a round trip of it.
//!
//! Why: counting returned frames alone cannot tell a forwarder from a
//! reflector, or a NAT from a box that bounces packets back untouched. Each
//! expectation names what the device under test must have done to the
//! frames the generator sent (and only those: a frame from another source
//! is invalid too):
//!
//! * `io`: testpmd io forwarding, the frame comes back unchanged;
//! * `macswap`: testpmd macswap, the Ethernet addresses are swapped;
//! * `nat`: masquerading, the destination is a configured real server
//!   instead of the VIP, the destination MAC is that server's, the source
//!   is still a client, both checksums verify;
//! * `dr`: direct routing, same IP packet toward the VIP, the destination
//!   MAC is a configured real server's;
//! * `tun`: an outer IPv4 header toward a configured real server (with that
//!   server's MAC) around the original packet toward the VIP, in the
//!   configured encapsulation: IPIP, GUE (UDP to the GUE port, a GUE header
//!   carrying IPv4) or GRE (carrying IPv4);
//! * `any`: every frame counts.
//!
//! With sh or mh, "a configured real server" is the one that scheduler
//! picks for the client ([`Servers::choose_with`]): a forwarder that sends
//! a client to another server fails the check.
//!
//! Replies: users get a service only when the real server's answer makes it
//! back, rewritten again by the director. With replies on, the sink plays
//! the real servers: it turns each valid NAT request into that server's
//! answer in place ([`make_reply`]) and sends it back to the director; the
//! answer must then come out toward the client, from the VIP and the
//! service port, to the generator's MAC (the clients' gateway), with valid
//! checksums ([`Checker::classify`]). Such a frame made the whole trip,
//! client -> VIP -> real server -> VIP -> client, with both rewrites
//! checked.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::wire::checksum;
use dataplane::wire::gre::GrePacket;
use dataplane::wire::gue::GuePacket;
use dataplane::wire::ipv4::Ipv4Packet;
use dataplane::wire::udp::UdpPacket;

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
    /// FULLNAT: requests from a local address (`crate::service::is_fullnat_local`) to a real
    /// server, answers back to the client from the VIP.
    FullNat,
    /// Routed by the director with its source masqueraded (`uvs-loop
    /// --method snat`): to the destination unchanged, from an address that
    /// is not a client's, checksums valid.
    Snat,
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
            "fullnat" => Expect::FullNat,
            "snat" => Expect::Snat,
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
            Expect::FullNat => "fullnat",
            Expect::Snat => "snat",
        }
    }
}

/// The encapsulation a `tun` forwarder must use (ipvsadm `--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Ipip,
    /// GUE toward this UDP port.
    Gue(u16),
    Gre,
}

impl Tunnel {
    /// Parses `ipip`, `gre` or `gue:PORT`.
    pub fn parse(s: &str) -> Result<Tunnel, String> {
        match s {
            "ipip" => Ok(Tunnel::Ipip),
            "gre" => Ok(Tunnel::Gre),
            _ => match s.strip_prefix("gue:").map(str::parse::<u16>) {
                Some(Ok(p)) if p != 0 => Ok(Tunnel::Gue(p)),
                _ => Err(format!(
                    "tunnel type must be ipip, gre or gue:PORT, not {s:?}"
                )),
            },
        }
    }
}

/// The configured real servers, and with sh or mh the one each client
/// must get.
#[derive(Debug, Clone, Default)]
pub struct Servers {
    /// Addresses, sorted.
    addrs: Vec<u32>,
    /// MAC of each address (same index).
    macs: Vec<[u8; 6]>,
    /// Per client address (offset in the client prefix): the index in
    /// `addrs` of the server the scheduler picks.
    chosen: Option<(u32, Vec<u16>)>,
}

/// Why a server list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    #[error("no real servers")]
    Empty,
    #[error("real server {0} is listed twice")]
    Duplicate(Ipv4Addr),
    #[error("the scheduler picked {0}, which is not a listed real server")]
    Unlisted(Ipv4Addr),
    #[error("the scheduler picked no real server for client {0}")]
    NoChoice(Ipv4Addr),
}

impl Servers {
    /// Real servers by address and MAC (any order).
    pub fn new(list: &[(Ipv4Addr, [u8; 6])]) -> Result<Servers, ServersError> {
        if list.is_empty() {
            return Err(ServersError::Empty);
        }
        let mut v: Vec<(u32, [u8; 6])> = list.iter().map(|&(a, m)| (u32::from(a), m)).collect();
        v.sort_unstable_by_key(|e| e.0);
        if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ServersError::Duplicate(Ipv4Addr::from(w[0].0)));
        }
        Ok(Servers {
            addrs: v.iter().map(|e| e.0).collect(),
            macs: v.iter().map(|e| e.1).collect(),
            chosen: None,
        })
    }

    /// `count` servers from `first` up, each with MAC `02:00:00:00:01:xx`
    /// where xx is the address's last byte: what the benchmark scripts
    /// configure as static neighbours.
    pub fn numbered(first: Ipv4Addr, count: u8) -> Result<Servers, ServersError> {
        let list: Vec<_> = (0..u32::from(count))
            .map(|i| {
                let a = Ipv4Addr::from(u32::from(first) + i);
                (a, [2, 0, 0, 0, 1, a.octets()[3]])
            })
            .collect();
        Servers::new(&list)
    }

    /// Fixes, for every client address of `clients`, the server `choose`
    /// returns for it (sh and mh hash the client address only, unless
    /// their port flag is set, which this does not model).
    pub fn choose_with(
        mut self,
        clients: FlowSpace,
        mut choose: impl FnMut(Ipv4Addr) -> Option<Ipv4Addr>,
    ) -> Result<Servers, ServersError> {
        let base = clients.flow(0).0;
        let mut table = Vec::with_capacity(clients.addresses() as usize);
        for i in 0..clients.addresses() {
            let client = Ipv4Addr::from(base + i);
            let s = choose(client).ok_or(ServersError::NoChoice(client))?;
            let idx = self.find(u32::from(s)).ok_or(ServersError::Unlisted(s))?;
            table.push(idx as u16);
        }
        self.chosen = Some((base, table));
        Ok(self)
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The servers, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, [u8; 6])> + '_ {
        self.addrs
            .iter()
            .zip(&self.macs)
            .map(|(&a, &m)| (Ipv4Addr::from(a), m))
    }

    /// The server `client` must reach (sh, mh), if fixed.
    pub fn chosen_for(&self, client: u32) -> Option<Ipv4Addr> {
        let (base, t) = self.chosen.as_ref()?;
        let i = *t.get(client.wrapping_sub(*base) as usize)?;
        Some(Ipv4Addr::from(self.addrs[usize::from(i)]))
    }

    #[inline]
    fn find(&self, addr: u32) -> Option<usize> {
        self.addrs.binary_search(&addr).ok()
    }

    /// Whether `client`'s traffic may go to the server at `idx`.
    #[inline]
    fn allowed(&self, client: u32, idx: usize) -> bool {
        match &self.chosen {
            None => true,
            Some((base, t)) => t
                .get(client.wrapping_sub(*base) as usize)
                .is_some_and(|&c| usize::from(c) == idx),
        }
    }

    /// Whether a frame for `client` to server address `addr` with
    /// destination MAC `mac` went to the right server.
    #[inline]
    fn accepts(&self, client: u32, addr: u32, mac: &[u8]) -> bool {
        self.find(addr)
            .is_some_and(|i| self.macs[i] == mac && self.allowed(client, i))
    }

    /// Whether a frame to server address `addr` has that server's MAC
    /// (FULLNAT: the client is not in the frame, so sh/mh are not checked).
    #[inline]
    fn accepts_any(&self, addr: u32, mac: &[u8]) -> bool {
        self.find(addr).is_some_and(|i| self.macs[i] == mac)
    }

    /// Whether a frame for `client` with destination MAC `mac` went to the
    /// right server (DR: the IP destination is still the VIP).
    #[inline]
    fn accepts_mac(&self, client: u32, mac: &[u8]) -> bool {
        match &self.chosen {
            Some(_) => (0..self.macs.len())
                .find(|&i| self.allowed(client, i))
                .is_some_and(|i| self.macs[i] == mac),
            None => self.macs.iter().any(|m| m == mac),
        }
    }
}

/// Everything a check compares against.
#[derive(Debug, Clone)]
pub struct Checker {
    pub expect: Expect,
    /// The generator's own MAC (source of what it sends).
    pub own_mac: [u8; 6],
    /// The destination MAC it sends to.
    pub peer_mac: [u8; 6],
    pub vip: Ipv4Addr,
    /// The service port.
    pub vport: u16,
    pub proto: u8,
    pub clients: FlowSpace,
    /// The real servers (nat, dr, tun).
    pub servers: Arc<Servers>,
    /// The encapsulation (tun).
    pub tunnel: Tunnel,
}

/// What the sink saw in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not one of ours, or not forwarded as expected.
    Invalid,
    /// A request forwarded as expected (toward a real server).
    Request,
    /// A real server's answer forwarded back to its client as expected:
    /// the end of a round trip.
    Reply,
}

/// An IPv4 packet from one of our clients with our protocol: its view.
fn client_ip<'a>(c: &Checker, bytes: &'a [u8]) -> Option<Ipv4Packet<&'a [u8]>> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    (ip.protocol() == c.proto && c.clients.contains(u32::from(ip.src_addr()))).then_some(ip)
}

fn ipv4_payload(frame: &[u8]) -> Option<&[u8]> {
    (frame.len() >= 14 && frame[12..14] == [0x08, 0x00]).then(|| &frame[14..])
}

/// Whether both checksums of `ip` (IPv4 header, TCP/UDP over the
/// pseudo-header) verify.
#[inline]
fn checksums_ok(ip: &Ipv4Packet<&[u8]>) -> bool {
    let pseudo = checksum::pseudo_header_v4(
        ip.src_addr(),
        ip.dst_addr(),
        ip.protocol(),
        ip.payload().len() as u16,
    );
    ip.verify_checksum() && checksum::verify(pseudo, ip.payload())
}

/// The inner IPv4 packet of a tunnel packet's outer payload, if `outer`
/// has the expected encapsulation.
fn tunnel_inner<'a>(t: Tunnel, l3: &'a [u8], outer: &Ipv4Packet<&[u8]>) -> Option<&'a [u8]> {
    let end = usize::from(outer.total_len()).min(l3.len());
    let payload: &'a [u8] = l3.get(outer.header_len()..end)?;
    match t {
        Tunnel::Ipip => (outer.protocol() == 4).then_some(payload),
        Tunnel::Gre => {
            if outer.protocol() != 47 {
                return None;
            }
            let g = GrePacket::new_checked(payload).ok()?;
            (g.protocol() == 0x0800 && (!g.has_checksum() || g.verify_checksum()))
                .then(|| &payload[g.header_len()..])
        }
        Tunnel::Gue(port) => {
            if outer.protocol() != 17 {
                return None;
            }
            let u = UdpPacket::new_checked(payload).ok()?;
            if u.dst_port() != port {
                return None;
            }
            let body = &payload[8..usize::from(u.len()).min(payload.len())];
            let g = GuePacket::new_checked(body).ok()?;
            (!g.is_control() && g.protocol() == 4).then(|| &body[g.header_len()..])
        }
    }
}

impl Checker {
    /// Whether `frame` is one of ours, forwarded as expected (a request:
    /// use [`classify`](Self::classify) when replies come back too).
    #[inline]
    pub fn check(&self, frame: &[u8]) -> bool {
        self.classify(frame) == Seen::Request
    }

    /// What `frame` is: a request forwarded as expected, a real server's
    /// answer forwarded back to its client as expected (nat), or neither.
    #[inline]
    pub fn classify(&self, frame: &[u8]) -> Seen {
        let ok = |b: bool| if b { Seen::Request } else { Seen::Invalid };
        let Some(l3) = ipv4_payload(frame) else {
            return ok(self.expect == Expect::Any);
        };
        let (dst_mac, src_mac) = (&frame[0..6], &frame[6..12]);
        match self.expect {
            Expect::Any => Seen::Request,
            Expect::Io | Expect::Macswap => {
                let (want_dst, want_src) = if self.expect == Expect::Io {
                    (self.peer_mac, self.own_mac)
                } else {
                    (self.own_mac, self.peer_mac)
                };
                ok(dst_mac == want_dst
                    && src_mac == want_src
                    && client_ip(self, l3).is_some_and(|ip| ip.dst_addr() == self.vip))
            }
            Expect::Nat | Expect::FullNat => {
                let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                    return Seen::Invalid;
                };
                if ip.protocol() != self.proto {
                    return Seen::Invalid;
                }
                let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
                if self.expect == Expect::FullNat && crate::service::is_fullnat_local(ip.src_addr())
                {
                    ok(src_mac == self.peer_mac
                        && self.servers.accepts_any(dst, dst_mac)
                        && checksums_ok(&ip))
                } else if self.expect == Expect::Nat && self.clients.contains(src) {
                    ok(src_mac == self.peer_mac
                        && self.servers.accepts(src, dst, dst_mac)
                        && checksums_ok(&ip))
                } else if ip.src_addr() == self.vip
                    && self.clients.contains(dst)
                    && dst_mac == self.own_mac
                    && src_mac == self.peer_mac
                    && ip.payload().len() >= 4
                    && ip.payload()[0..2] == self.vport.to_be_bytes()
                    && checksums_ok(&ip)
                {
                    Seen::Reply
                } else {
                    Seen::Invalid
                }
            }
            Expect::Snat => ok(Ipv4Packet::new_checked(l3).is_ok_and(|ip| {
                ip.protocol() == self.proto
                    && ip.dst_addr() == self.vip
                    && !self.clients.contains(u32::from(ip.src_addr()))
                    && dst_mac == self.own_mac
                    && src_mac == self.peer_mac
                    && checksums_ok(&ip)
            })),
            Expect::Dr => ok(client_ip(self, l3).is_some_and(|ip| {
                ip.dst_addr() == self.vip
                    && self.servers.accepts_mac(u32::from(ip.src_addr()), dst_mac)
            })),
            Expect::Tun => ok(Ipv4Packet::new_checked(l3).is_ok_and(|outer| {
                outer.verify_checksum()
                    && tunnel_inner(self.tunnel, l3, &outer)
                        .and_then(|inner| client_ip(self, inner))
                        .is_some_and(|ip| {
                            ip.dst_addr() == self.vip
                                && self.servers.accepts(
                                    u32::from(ip.src_addr()),
                                    u32::from(outer.dst_addr()),
                                    dst_mac,
                                )
                        })
            })),
        }
    }
}

/// Turns `frame`, a NAT request that [`Checker::classify`] accepted, into
/// the real server's answer in place: addresses and ports swapped (which
/// leaves both checksums as they are), from the server's MAC to
/// `director_mac`; a TCP SYN is answered with SYN-ACK, anything else with
/// the same flags. Returns false (frame unchanged) for anything else than
/// an option-less IPv4 TCP/UDP frame.
#[inline]
pub fn make_reply(frame: &mut [u8], director_mac: [u8; 6]) -> bool {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 {
        return false;
    }
    let proto = frame[14 + 9];
    let l4 = 14 + 20;
    if !(proto == 17 || (proto == 6 && frame.len() >= l4 + 20)) {
        return false;
    }
    frame.copy_within(0..6, 6);
    frame[0..6].copy_from_slice(&director_mac);
    let mut a = [0u8; 4];
    a.copy_from_slice(&frame[26..30]);
    frame.copy_within(30..34, 26);
    frame[30..34].copy_from_slice(&a);
    let mut p = [0u8; 2];
    p.copy_from_slice(&frame[l4..l4 + 2]);
    frame.copy_within(l4 + 2..l4 + 4, l4);
    frame[l4 + 2..l4 + 4].copy_from_slice(&p);
    if proto == 6 && frame[l4 + 13] & 0x12 == 0x02 {
        // SYN -> SYN-ACK: the word at 12..14 holds the flags.
        let old = u16::from_be_bytes([frame[l4 + 12], frame[l4 + 13]]);
        frame[l4 + 13] |= 0x10;
        let new = u16::from_be_bytes([frame[l4 + 12], frame[l4 + 13]]);
        let c = u16::from_be_bytes([frame[l4 + 16], frame[l4 + 17]]);
        let c = checksum::update16(c, old, new);
        frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FrameSpec, Proto, Template};
    use dataplane::buf::{PacketBuf, TestBuf};
    use dataplane::wire::parse_packet;
    use dataplane::xmit::nat::{nat_inbound, nat_outbound};
    use dataplane::xmit::tunnel::{encapsulate, TunnelParams};
    use std::net::IpAddr;
    use uvs_model::model::{TunnelConfig, TunnelCsum, TunnelType};

    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
    const RS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 11];
    const RS2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
    const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 1, 12];
    const CLIENT: u32 = 0xc612_8005; // 198.18.128.5

    fn clients() -> FlowSpace {
        FlowSpace::parse("198.18.128.0/17").unwrap()
    }

    fn checker_with(expect: Expect, proto: Proto, servers: Servers, tunnel: Tunnel) -> Checker {
        Checker {
            expect,
            own_mac: OWN,
            peer_mac: PEER,
            vip: VIP,
            vport: 80,
            proto: proto.number(),
            clients: clients(),
            servers: Arc::new(servers),
            tunnel,
        }
    }

    fn checker(expect: Expect) -> Checker {
        checker_with(
            expect,
            Proto::Udp,
            Servers::numbered(RS, 2).unwrap(),
            Tunnel::Ipip,
        )
    }

    fn sent_proto(proto: Proto, flags: u8) -> Vec<u8> {
        let t = Template::new(&FrameSpec {
            src_mac: OWN,
            dst_mac: PEER,
            vip: VIP,
            vport: 80,
            proto,
            frame_size: 64,
        })
        .unwrap();
        let mut f = t.bytes.clone();
        t.patch(&mut f, CLIENT, 4000, flags);
        f
    }

    fn sent() -> Vec<u8> {
        sent_proto(Proto::Udp, 0)
    }

    fn macswapped(mut f: Vec<u8>) -> Vec<u8> {
        f[0..6].copy_from_slice(&OWN);
        f[6..12].copy_from_slice(&PEER);
        f
    }

    /// What the director does to a request, by its own NAT rewrite.
    fn natted_to(f: Vec<u8>, rs: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
        let mut b = TestBuf::new(&f);
        let meta = parse_packet(b.data()).unwrap();
        nat_inbound(&mut b, &meta, IpAddr::V4(rs), 80).unwrap();
        let mut out = b.data().to_vec();
        out[0..6].copy_from_slice(&mac);
        out[6..12].copy_from_slice(&PEER);
        out
    }

    fn natted(f: Vec<u8>) -> Vec<u8> {
        natted_to(f, RS, RS_MAC)
    }

    /// What the director does to a real server's answer.
    fn answered_back(f: Vec<u8>) -> Vec<u8> {
        let mut b = TestBuf::new(&f);
        let meta = parse_packet(b.data()).unwrap();
        nat_outbound(&mut b, &meta, IpAddr::V4(VIP), 80).unwrap();
        let mut out = b.data().to_vec();
        out[0..6].copy_from_slice(&OWN);
        out[6..12].copy_from_slice(&PEER);
        out
    }

    /// The director's own encapsulation toward `rs`.
    fn tunnelled_to(f: Vec<u8>, kind: TunnelType, rs: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
        let mut b = TestBuf::with_capacity(&f, 256);
        let meta = parse_packet(b.data()).unwrap();
        let p = TunnelParams {
            config: TunnelConfig {
                kind,
                port: if kind == TunnelType::Gue { 6080 } else { 0 },
                csum: TunnelCsum::NoCsum,
            },
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(rs),
            ident: 1,
            gue_sport: 50000,
            mtu: 1500,
            pmtu_disc: true,
            inner_csum_partial: false,
        };
        encapsulate(&mut b, &meta, &p).unwrap();
        let mut out = b.data().to_vec();
        out[0..6].copy_from_slice(&mac);
        out
    }

    fn tunnelled(f: Vec<u8>) -> Vec<u8> {
        tunnelled_to(f, TunnelType::Ipip, RS, RS_MAC)
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
    fn nat_needs_a_configured_server_its_mac_and_valid_checksums() {
        let c = checker(Expect::Nat);
        let n = natted(sent());
        assert!(c.check(&n));
        assert!(c.check(&natted_to(sent(), RS2, RS2_MAC)));
        assert!(!c.check(&sent()), "untouched frame passed as NAT");
        let mut bad = n.clone();
        bad[34 + 6] ^= 0xff; // UDP checksum
        assert!(!c.check(&bad));
        let mut not_client = n.clone();
        not_client[14 + 12] = 199; // source 199.18.128.5
        assert!(!c.check(&not_client));
        let unknown = Ipv4Addr::new(198, 18, 1, 99);
        assert!(
            !c.check(&natted_to(sent(), unknown, RS_MAC)),
            "not a real server"
        );
        assert!(
            !c.check(&natted_to(sent(), RS, RS2_MAC)),
            "another server's MAC"
        );
    }

    #[test]
    fn sh_choice_is_enforced_for_nat_dr_and_tun() {
        // Even clients on the first server, odd ones on the second.
        let fixed = || {
            Servers::numbered(RS, 2)
                .unwrap()
                .choose_with(clients(), |a| {
                    Some(if u32::from(a) % 2 == 0 { RS2 } else { RS })
                })
                .unwrap()
        };
        // CLIENT (…128.5) is odd: RS.
        let c = checker_with(Expect::Nat, Proto::Udp, fixed(), Tunnel::Ipip);
        assert!(c.check(&natted(sent())));
        assert!(!c.check(&natted_to(sent(), RS2, RS2_MAC)));
        let c = checker_with(Expect::Dr, Proto::Udp, fixed(), Tunnel::Ipip);
        let mut f = sent();
        f[0..6].copy_from_slice(&RS_MAC);
        assert!(c.check(&f));
        f[0..6].copy_from_slice(&RS2_MAC);
        assert!(!c.check(&f));
        let c = checker_with(Expect::Tun, Proto::Udp, fixed(), Tunnel::Ipip);
        assert!(c.check(&tunnelled(sent())));
        assert!(!c.check(&tunnelled_to(sent(), TunnelType::Ipip, RS2, RS2_MAC)));
    }

    #[test]
    fn dr_needs_a_real_servers_mac_and_the_vip() {
        let c = checker(Expect::Dr);
        let mut f = sent();
        f[0..6].copy_from_slice(&RS_MAC);
        assert!(c.check(&f));
        assert!(!c.check(&sent()));
        assert!(!c.check(&natted(f.clone())));
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 99]);
        assert!(!c.check(&f), "a MAC of no real server");
    }

    #[test]
    fn tun_checks_each_encapsulation() {
        for (kind, t) in [
            (TunnelType::Ipip, Tunnel::Ipip),
            (TunnelType::Gre, Tunnel::Gre),
            (TunnelType::Gue, Tunnel::Gue(6080)),
        ] {
            let c = checker_with(
                Expect::Tun,
                Proto::Udp,
                Servers::numbered(RS, 2).unwrap(),
                t,
            );
            let good = tunnelled_to(sent(), kind, RS, RS_MAC);
            assert!(c.check(&good), "{kind:?}");
            assert!(!c.check(&sent()), "{kind:?}");
            let unknown = Ipv4Addr::new(198, 18, 1, 99);
            assert!(
                !c.check(&tunnelled_to(sent(), kind, unknown, RS_MAC)),
                "{kind:?}"
            );
            // Another encapsulation than configured.
            for other in [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue] {
                if other != kind {
                    let f = tunnelled_to(sent(), other, RS, RS_MAC);
                    assert!(!c.check(&f), "{other:?} passed as {kind:?}");
                }
            }
        }
        let c = checker_with(
            Expect::Tun,
            Proto::Udp,
            Servers::numbered(RS, 2).unwrap(),
            Tunnel::Gue(7000),
        );
        let f = tunnelled_to(sent(), TunnelType::Gue, RS, RS_MAC);
        assert!(!c.check(&f), "GUE to another port");
    }

    #[test]
    fn a_round_trip_is_checked_both_ways() {
        for (proto, flags) in [(Proto::Udp, 0), (Proto::Tcp, 0x02), (Proto::Tcp, 0x10)] {
            let c = checker_with(
                Expect::Nat,
                proto,
                Servers::numbered(RS, 2).unwrap(),
                Tunnel::Ipip,
            );
            let mut f = natted(sent_proto(proto, flags));
            assert_eq!(c.classify(&f), Seen::Request);
            assert!(make_reply(&mut f, PEER));
            // The server's answer: to the director, from the server's MAC,
            // server -> client, checksums still valid.
            assert_eq!(&f[0..6], &PEER);
            assert_eq!(&f[6..12], &RS_MAC);
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert_eq!(ip.src_addr(), RS);
            assert_eq!(u32::from(ip.dst_addr()), CLIENT);
            assert!(checksums_ok(&ip), "{proto:?} {flags:#x}");
            if proto == Proto::Tcp {
                let want = if flags == 0x02 { 0x12 } else { flags };
                assert_eq!(f[34 + 13], want);
            }
            // Not a valid answer until the director rewrote it back.
            assert_eq!(c.classify(&f), Seen::Invalid);
            let back = answered_back(f);
            assert_eq!(c.classify(&back), Seen::Reply, "{proto:?} {flags:#x}");
            let mut bad = back.clone();
            bad[0..6].copy_from_slice(&PEER);
            assert_eq!(
                c.classify(&bad),
                Seen::Invalid,
                "not to the clients' gateway"
            );
            let mut bad = back.clone();
            bad[34..36].copy_from_slice(&81u16.to_be_bytes());
            assert_eq!(c.classify(&bad), Seen::Invalid, "another source port");
        }
    }

    #[test]
    fn make_reply_refuses_what_it_cannot_answer() {
        let mut arp = sent();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let before = arp.clone();
        assert!(!make_reply(&mut arp, PEER));
        assert_eq!(arp, before);
        let mut short = sent()[..30].to_vec();
        assert!(!make_reply(&mut short, PEER));
    }

    #[test]
    fn servers_refuse_bad_lists() {
        assert_eq!(Servers::new(&[]).unwrap_err(), ServersError::Empty);
        assert_eq!(
            Servers::new(&[(RS, RS_MAC), (RS, RS2_MAC)]).unwrap_err(),
            ServersError::Duplicate(RS)
        );
        let s = Servers::numbered(RS, 2).unwrap();
        let elsewhere = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            s.clone()
                .choose_with(clients(), |_| Some(elsewhere))
                .unwrap_err(),
            ServersError::Unlisted(elsewhere)
        );
        assert!(matches!(
            s.choose_with(clients(), |_| None).unwrap_err(),
            ServersError::NoChoice(_)
        ));
        assert_eq!(Tunnel::parse("gue:6080"), Ok(Tunnel::Gue(6080)));
        assert!(Tunnel::parse("gue:0").is_err());
        assert!(Tunnel::parse("vxlan").is_err());
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
