//! A hostile-traffic capture: deterministic, seeded frames of every kind a
//! load balancer must survive, mixed with sound traffic to its services,
//! written as a pcap stream for a `net_pcap` port to replay.
//!
//! Why raw bytes: most frames are malformed on purpose (lengths that lie,
//! options that overrun, quotes of garbage), which no packet builder will
//! write; every frame is built here byte by byte, independently of the
//! dataplane's parsers, with its checksums right unless the checksum is
//! the point (a frame that fails the IPv4 header checksum tests nothing
//! behind it).
//!
//! The classes ([`Class`]): sound traffic (TCP conversations, UDP, pings,
//! ARP and neighbour discovery) to the NAT, DR and TUN services; bad
//! lengths at every layer; IPv4 options and IPv6 extension headers of
//! every kind, well and badly formed; TCP options of every kind; all 512
//! TCP flag combinations (the nine flag bits) toward services, closed
//! ports, the director's own address and others, on live and unknown
//! connections; ICMP and ICMPv6 errors quoting garbage, truncated quotes,
//! other flows, other families and other errors; overlapping, duplicate,
//! oversized, tiny and endless fragments; L2 oddities (VLAN tags, QinQ,
//! unknown ethertypes, other MACs, broken ARP and NDP, martians, bad
//! checksums, TTL 0 and 1); and byte-flipped copies of all of these. IPv4
//! and IPv6 throughout, toward the director's VIPs, its own addresses and
//! others.
//!
//! The addresses are the ones [`RULES`] and [`uvsd_port`] configure.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The director's MAC.
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The clients' gateway (the only neighbour clients are reached through).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The director's own addresses.
pub const DIRECTOR_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DIRECTOR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The gateway toward the clients.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// VIPs: NAT, DR, TUN (IPIP), each with TCP 80 and UDP 53.
pub const VIP_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 0, 100),
    Ipv4Addr::new(198, 18, 0, 101),
    Ipv4Addr::new(198, 18, 0, 102),
];
pub const VIP_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x102),
];
/// Real servers, on the director's segment.
pub const SERVERS: u8 = 4;

fn server_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 11 + i)
}
fn server_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11 + u16::from(i))
}
/// MAC of real server `i`.
pub fn server_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, 11 + i]
}
fn client_v4(n: u32) -> Ipv4Addr {
    let n = n & 0x7fff;
    Ipv4Addr::new(198, 18, 128 + (n >> 8) as u8, n as u8)
}
fn client_v6(n: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, (n >> 16) as u16, n as u16)
}
/// Addresses that are neither the director's nor a service's.
const OTHER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 5);
const OTHER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 5);

/// The services, as `uvsadm -R` input: NAT, DR and IPIP tunnel over IPv4
/// and IPv6, TCP 80 and UDP 53 each, [`SERVERS`] real servers.
pub fn rules() -> String {
    let mut r = String::new();
    for (fam, vips) in [
        (4, VIP_V4.map(|a| a.to_string())),
        (6, VIP_V6.map(|a| format!("[{a}]"))),
    ] {
        for (vip, flag) in vips.iter().zip(["-m", "-g", "-i"]) {
            for (p, port) in [("-t", 80), ("-u", 53)] {
                r.push_str(&format!("-A {p} {vip}:{port} -s rr\n"));
                for i in 0..SERVERS {
                    let rs = if fam == 4 {
                        server_v4(i).to_string()
                    } else {
                        format!("[{}]", server_v6(i))
                    };
                    r.push_str(&format!("-a {p} {vip}:{port} -r {rs}:{port} {flag}\n"));
                }
            }
        }
    }
    r
}

/// The `[[port]]`, `[[route]]` and `[[neighbor]]` part of a uvsd config
/// for one port on `device` that receives the capture: the director's
/// addresses, the clients' prefixes routed through the gateway, static
/// neighbours for the gateway and the real servers (nothing waits for ARP).
pub fn uvsd_port(device: &str) -> String {
    let mut s = format!(
        "[[port]]\nname = \"hostile\"\ndevice = \"{device}\"\nmac = \"{}\"\n\
         addresses = [\"{DIRECTOR_V4}/24\", \"{DIRECTOR_V6}/64\"]\n\n\
         [[route]]\nto = \"198.18.128.0/17\"\nvia = \"{GATEWAY_V4}\"\n\n\
         [[route]]\nto = \"2001:db8:c::/48\"\nvia = \"{GATEWAY_V6}\"\n",
        mac_str(DIRECTOR_MAC)
    );
    let mut neigh = |ip: String, mac: [u8; 6]| {
        s.push_str(&format!(
            "\n[[neighbor]]\nip = \"{ip}\"\nmac = \"{}\"\n",
            mac_str(mac)
        ));
    };
    neigh(GATEWAY_V4.to_string(), GATEWAY_MAC);
    neigh(GATEWAY_V6.to_string(), GATEWAY_MAC);
    for i in 0..SERVERS {
        neigh(server_v4(i).to_string(), server_mac(i));
        neigh(server_v6(i).to_string(), server_mac(i));
    }
    s
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a frame of the capture is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Sound,
    BadLength,
    Ipv4Options,
    Ipv6Extensions,
    TcpOptions,
    TcpFlags,
    IcmpErrors,
    Fragments,
    Link,
    Mutated,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::Sound,
        Class::BadLength,
        Class::Ipv4Options,
        Class::Ipv6Extensions,
        Class::TcpOptions,
        Class::TcpFlags,
        Class::IcmpErrors,
        Class::Fragments,
        Class::Link,
        Class::Mutated,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sound => "sound",
            Class::BadLength => "bad_length",
            Class::Ipv4Options => "ipv4_options",
            Class::Ipv6Extensions => "ipv6_extensions",
            Class::TcpOptions => "tcp_options",
            Class::TcpFlags => "tcp_flags",
            Class::IcmpErrors => "icmp_errors",
            Class::Fragments => "fragments",
            Class::Link => "link",
            Class::Mutated => "mutated",
        }
    }
}

/// splitmix64: small, seedable, the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
    fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

// ---- raw builders ----------------------------------------------------

fn sum(mut acc: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = it.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `b`.
pub fn checksum(b: &[u8]) -> u16 {
    fold(sum(0, b))
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 fields a frame may set.
#[derive(Debug, Clone, Copy)]
struct V4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    id: u16,
    /// Flags and fragment offset (in 8-byte units), as on the wire.
    frag: u16,
    tos: u8,
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> V4 {
    V4 {
        src,
        dst,
        proto,
        ttl: 64,
        id: 0x1234,
        frag: 0x4000,
        tos: 0,
    }
}

/// An IPv4 header with `options` (padded to 4 bytes) and a right checksum,
/// its total length covering `payload_len` bytes.
fn ipv4_header(h: &V4, options: &[u8], payload_len: usize) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let ihl = (20 + opts.len()) / 4;
    let total = 20 + opts.len() + payload_len;
    let mut b = vec![
        0x40 | (ihl as u8 & 0x0f),
        h.tos,
        (total >> 8) as u8,
        total as u8,
    ];
    b.extend_from_slice(&h.id.to_be_bytes());
    b.extend_from_slice(&h.frag.to_be_bytes());
    b.extend_from_slice(&[h.ttl, h.proto, 0, 0]);
    b.extend_from_slice(&h.src.octets());
    b.extend_from_slice(&h.dst.octets());
    b.extend_from_slice(&opts);
    let c = checksum(&b);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b
}

/// Fixes the IPv4 header checksum of the frame's IP header at 14.
fn refix_v4(f: &mut [u8]) {
    if f.len() < 34 {
        return;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let end = (14 + ihl.max(20)).min(f.len());
    f[24] = 0;
    f[25] = 0;
    let c = checksum(&f[14..end]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + len as u32
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + (len as u32 >> 16) + (len as u32 & 0xffff)
}

/// Writes the transport checksum of `l4` (TCP 16, UDP 6, ICMPv6 2) over
/// the pseudo header `pseudo`.
fn fill_l4(l4: &mut [u8], proto: u8, pseudo: u32) {
    let at = match proto {
        6 => 16,
        17 => 6,
        58 => 2,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    l4[at] = 0;
    l4[at + 1] = 0;
    let mut c = fold(sum(pseudo, l4));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// TCP flags as the nine bits: FIN SYN RST PSH ACK URG ECE CWR, then NS
/// (bit 8, in the data-offset byte).
const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const PSH: u16 = 0x08;
const ACK: u16 = 0x10;

fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u16,
    opts: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    let off = ((20 + o.len()) / 4) as u8;
    let mut b = Vec::with_capacity(20 + o.len() + data.len());
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ack.to_be_bytes());
    b.push((off << 4) | ((flags >> 8) as u8 & 1));
    b.push(flags as u8);
    b.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
    b.extend_from_slice(&o);
    b.extend_from_slice(data);
    b
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(data);
    b
}

/// An ICMP (or ICMPv6, checksummed by the caller) message.
fn icmp(kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = vec![kind, code, 0, 0];
    b.extend_from_slice(&rest);
    b.extend_from_slice(body);
    b
}

/// A whole IPv4 frame from the gateway (or `src_mac`) to the director:
/// `l4` gets its checksum, the header gets `options`.
fn frame4(src_mac: [u8; 6], h: &V4, options: &[u8], mut l4: Vec<u8>) -> Vec<u8> {
    match h.proto {
        6 | 17 => {
            let l = l4.len();
            fill_l4(&mut l4, h.proto, pseudo_v4(h.src, h.dst, h.proto, l))
        }
        1 => {
            l4[2] = 0;
            l4[3] = 0;
            let c = checksum(&l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
    let mut f = eth(DIRECTOR_MAC, src_mac, 0x0800);
    f.extend(ipv4_header(h, options, l4.len()));
    f.extend(l4);
    f
}

/// A whole IPv6 frame: `ext` are extension headers already chained (the
/// first one's type is `first`, the last one names `proto`), or empty with
/// `first == proto`.
#[allow(clippy::too_many_arguments)]
fn frame6(
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    first: u8,
    ext: &[u8],
    proto: u8,
    mut l4: Vec<u8>,
) -> Vec<u8> {
    let l = l4.len();
    fill_l4(&mut l4, proto, pseudo_v6(src, dst, proto, l));
    let plen = ext.len() + l4.len();
    let mut f = eth(DIRECTOR_MAC, src_mac, 0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(plen as u16).to_be_bytes());
    f.extend_from_slice(&[first, hop]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(ext);
    f.extend(l4);
    f
}

fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u16, opts: &[u8]) -> Vec<u8> {
    let h = v4(src, dst, 6);
    frame4(
        GATEWAY_MAC,
        &h,
        &[],
        tcp(sport, dport, 1000, 1, flags, opts, &[]),
    )
}

fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, flags: u16, opts: &[u8]) -> Vec<u8> {
    frame6(
        GATEWAY_MAC,
        src,
        dst,
        64,
        6,
        &[],
        6,
        tcp(sport, dport, 1000, 1, flags, opts, &[]),
    )
}

/// One extension header: `next`, its body (padded to 8-byte units with
/// PadN, length field set).
fn ext_header(next: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![next, 0];
    b.extend_from_slice(body);
    let pad = (8 - b.len() % 8) % 8;
    match pad {
        0 => {}
        1 => b.push(0),
        n => {
            b.push(1);
            b.push((n - 2) as u8);
            b.extend(std::iter::repeat_n(0, n - 2));
        }
    }
    b[1] = (b.len() / 8 - 1) as u8;
    b
}

// ---- the capture ---------------------------------------------------

/// One capture's frames, by class, in a seeded order.
#[derive(Debug, Clone)]
pub struct Capture {
    pub frames: Vec<Vec<u8>>,
    pub classes: Vec<Class>,
}

impl Capture {
    /// How many frames of each class.
    pub fn counts(&self) -> Vec<(Class, usize)> {
        Class::ALL
            .iter()
            .map(|c| (*c, self.classes.iter().filter(|k| *k == c).count()))
            .collect()
    }
    /// Bytes of frame data.
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

struct Gen {
    rng: Rng,
    out: Vec<(Class, Vec<u8>)>,
}

/// Builds the capture for `seed` (the same seed, the same bytes).
pub fn capture(seed: u64) -> Capture {
    let mut g = Gen {
        rng: Rng::new(seed),
        out: Vec::with_capacity(50_000),
    };
    g.sound();
    g.bad_lengths();
    g.ipv4_options();
    g.ipv6_extensions();
    g.tcp_options();
    g.tcp_flags();
    g.icmp_errors();
    g.fragments();
    g.link();
    g.mutated();
    // Interleave: sound conversations keep their order among themselves
    // (a seeded merge), the hostile frames fall in between.
    let (sound, rest): (Vec<_>, Vec<_>) = g.out.into_iter().partition(|(c, _)| *c == Class::Sound);
    let mut rest = rest;
    let mut rng = g.rng;
    for i in (1..rest.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        rest.swap(i, j);
    }
    let total = sound.len() + rest.len();
    let (mut s, mut r) = (sound.into_iter().peekable(), rest.into_iter().peekable());
    let mut frames = Vec::with_capacity(total);
    let mut classes = Vec::with_capacity(total);
    while s.peek().is_some() || r.peek().is_some() {
        let take_sound = match (s.peek(), r.peek()) {
            (Some(_), None) => true,
            (None, _) => false,
            _ => rng.chance(25),
        };
        let (c, f) = if take_sound { s.next() } else { r.next() }.unwrap_or((Class::Sound, vec![]));
        classes.push(c);
        frames.push(f);
    }
    Capture { frames, classes }
}

/// Destinations a hostile IPv4 packet goes to: the VIPs (NAT, DR, TUN),
/// the director, another host, and broadcast/multicast.
const V4_DSTS: [Ipv4Addr; 6] = [
    VIP_V4[0],
    VIP_V4[1],
    VIP_V4[2],
    DIRECTOR_V4,
    OTHER_V4,
    Ipv4Addr::new(198, 18, 0, 11),
];
const V6_DSTS: [Ipv6Addr; 6] = [
    VIP_V6[0],
    VIP_V6[1],
    VIP_V6[2],
    DIRECTOR_V6,
    OTHER_V6,
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11),
];

impl Gen {
    fn push(&mut self, c: Class, f: Vec<u8>) {
        self.out.push((c, f));
    }

    fn port(&mut self) -> u16 {
        1024 + self.rng.below(60000) as u16
    }

    /// Sound traffic: TCP conversations and UDP to every service, the
    /// real servers' NAT answers, pings, ARP and neighbour solicitations.
    fn sound(&mut self) {
        let c = Class::Sound;
        for flow in 0..600u32 {
            let svc = (flow % 3) as usize;
            let sport = 20000 + flow as u16;
            let data = self.rng.bytes(16 + (flow as usize % 200));
            let steps: [(u16, &[u8]); 5] = [
                (SYN, &[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7]),
                (ACK, &[]),
                (ACK | PSH, &[]),
                (ACK | FIN, &[]),
                (ACK, &[]),
            ];
            for (i, (flags, opts)) in steps.iter().enumerate() {
                let payload: &[u8] = if i == 2 { &data } else { &[] };
                let seq = 1000 + if i > 2 { data.len() as u32 } else { 0 };
                let f = if flow % 2 == 0 {
                    let h = v4(client_v4(flow), VIP_V4[svc], 6);
                    frame4(
                        GATEWAY_MAC,
                        &h,
                        &[],
                        tcp(sport, 80, seq, 5000, *flags, opts, payload),
                    )
                } else {
                    frame6(
                        GATEWAY_MAC,
                        client_v6(flow),
                        VIP_V6[svc],
                        64,
                        6,
                        &[],
                        6,
                        tcp(sport, 80, seq, 5000, *flags, opts, payload),
                    )
                };
                self.push(c, f);
                // NAT: every real server answers; the one the director
                // chose is forwarded, the others are not its connection.
                if svc == 0 && i < 2 {
                    for s in 0..SERVERS {
                        let f = if flow % 2 == 0 {
                            let h = v4(server_v4(s), client_v4(flow), 6);
                            frame4(
                                server_mac(s),
                                &h,
                                &[],
                                tcp(80, sport, 5000, 1001, SYN | ACK, &[2, 4, 5, 0xb4], &[]),
                            )
                        } else {
                            frame6(
                                server_mac(s),
                                server_v6(s),
                                client_v6(flow),
                                64,
                                6,
                                &[],
                                6,
                                tcp(80, sport, 5000, 1001, SYN | ACK, &[], &[]),
                            )
                        };
                        self.push(c, f);
                    }
                }
            }
        }
        for n in 0..1500u32 {
            let svc = (n % 3) as usize;
            let data = self.rng.bytes(8 + n as usize % 300);
            let f = if n % 2 == 0 {
                let h = v4(client_v4(n + 5000), VIP_V4[svc], 17);
                frame4(GATEWAY_MAC, &h, &[], udp(30000 + n as u16, 53, &data))
            } else {
                frame6(
                    GATEWAY_MAC,
                    client_v6(n + 5000),
                    VIP_V6[svc],
                    64,
                    17,
                    &[],
                    17,
                    udp(30000 + n as u16, 53, &data),
                )
            };
            self.push(c, f);
        }
        for n in 0..300u16 {
            let dst4 = if n % 2 == 0 { VIP_V4[0] } else { DIRECTOR_V4 };
            let h = v4(client_v4(u32::from(n)), dst4, 1);
            let f = frame4(
                GATEWAY_MAC,
                &h,
                &[],
                icmp(8, 0, [0, 7, (n >> 8) as u8, n as u8], b"ping"),
            );
            self.push(c, f);
            let dst6 = if n % 2 == 0 { VIP_V6[0] } else { DIRECTOR_V6 };
            let f = frame6(
                GATEWAY_MAC,
                client_v6(u32::from(n)),
                dst6,
                64,
                58,
                &[],
                58,
                icmp(128, 0, [0, 7, (n >> 8) as u8, n as u8], b"ping"),
            );
            self.push(c, f);
        }
        for n in 0..100u8 {
            let target = if n % 2 == 0 {
                VIP_V4[n as usize % 3]
            } else {
                DIRECTOR_V4
            };
            let f = arp(1, GATEWAY_MAC, GATEWAY_V4, [0; 6], target, [0xff; 6]);
            self.push(c, f);
            let t6 = if n % 2 == 0 {
                VIP_V6[n as usize % 3]
            } else {
                DIRECTOR_V6
            };
            self.push(c, ns(GATEWAY_V6, t6, 255, true));
        }
    }

    /// Lengths that lie at every layer, with the IPv4 header checksum
    /// right for the lie (so the lie is what gets tested).
    fn bad_lengths(&mut self) {
        let c = Class::BadLength;
        for n in 0..6000u32 {
            let v6 = n % 2 == 1;
            let mut f = self.some_packet(v6);
            let l3 = 14;
            let l4 = if v6 { l3 + 40 } else { l3 + 20 };
            match n / 2 % 8 {
                // Cut anywhere, down to nothing.
                0 => {
                    let cut = self.rng.below(f.len() as u64) as usize;
                    f.truncate(cut);
                }
                // IP total / payload length anything.
                1 => {
                    let v = self.rng.u16();
                    let v = if self.rng.chance(50) { v % 128 } else { v };
                    let at = if v6 { l3 + 4 } else { l3 + 2 };
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
                // IHL anything (IPv4) / version anything.
                2 => {
                    if v6 || self.rng.chance(30) {
                        f[l3] = (self.rng.byte() & 0xf0) | (f[l3] & 0x0f);
                    } else {
                        f[l3] = 0x40 | (self.rng.byte() & 0x0f);
                    }
                }
                // TCP data offset anything / UDP length anything.
                3 => {
                    if f.len() > l4 + 13 && f[if v6 { l3 + 6 } else { l3 + 9 }] == 6 {
                        f[l4 + 12] = (self.rng.byte() & 0xf0) | (f[l4 + 12] & 0x0f);
                    } else if f.len() > l4 + 6 {
                        let v = self.rng.u16() % 600;
                        f[l4 + 4..l4 + 6].copy_from_slice(&v.to_be_bytes());
                    }
                }
                // Bytes behind the IP packet, a little or a lot.
                4 => {
                    let extra = if self.rng.chance(50) {
                        1 + self.rng.below(8)
                    } else {
                        100 + self.rng.below(1300)
                    };
                    let junk = self.rng.bytes(extra as usize);
                    f.extend(junk);
                }
                // Total length shorter than the headers it carries.
                5 => {
                    let v: u16 = if v6 {
                        self.rng.below(20) as u16
                    } else {
                        20 + self.rng.below(20) as u16
                    };
                    let at = if v6 { l3 + 4 } else { l3 + 2 };
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
                // A frame shorter than an Ethernet header, or just one.
                6 => {
                    let n = self.rng.below(15) as usize;
                    f.truncate(n);
                }
                // Jumbo claims: total length 65535 in a small frame,
                // IPv6 payload length 0 (a jumbogram without its option).
                _ => {
                    if v6 {
                        f[l3 + 4] = 0;
                        f[l3 + 5] = 0;
                    } else {
                        f[l3 + 2] = 0xff;
                        f[l3 + 3] = 0xff;
                    }
                }
            }
            if !v6 && self.rng.chance(90) {
                refix_v4(&mut f);
            }
            self.push(c, f);
        }
    }

    /// A sound packet of some protocol toward some destination.
    fn some_packet(&mut self, v6: bool) -> Vec<u8> {
        let k = self.rng.below(4);
        let sport = self.port();
        let cl = self.rng.u32();
        let data = self.rng.some_bytes(64);
        if v6 {
            let dst = self.rng.pick(&V6_DSTS);
            let (proto, l4) = match k {
                0 | 1 => (
                    6,
                    tcp(sport, 80, 1, 0, if k == 0 { SYN } else { ACK }, &[], &data),
                ),
                2 => (17, udp(sport, 53, &data)),
                _ => (58, icmp(128, 0, [0, 1, 0, 1], &data)),
            };
            frame6(GATEWAY_MAC, client_v6(cl), dst, 64, proto, &[], proto, l4)
        } else {
            let dst = self.rng.pick(&V4_DSTS);
            let (proto, l4) = match k {
                0 | 1 => (
                    6,
                    tcp(sport, 80, 1, 0, if k == 0 { SYN } else { ACK }, &[], &data),
                ),
                2 => (17, udp(sport, 53, &data)),
                _ => (1, icmp(8, 0, [0, 1, 0, 1], &data)),
            };
            frame4(GATEWAY_MAC, &v4(client_v4(cl), dst, proto), &[], l4)
        }
    }

    /// Every IPv4 option kind, well formed, badly formed, and unknown.
    fn ipv4_options(&mut self) {
        let c = Class::Ipv4Options;
        // (kind, a well-formed instance)
        let well: Vec<Vec<u8>> = vec![
            vec![0],                                          // end of list
            vec![1, 1, 1, 1],                                 // nops
            vec![7, 7, 4, 0, 0, 0, 0],                        // record route, one slot
            vec![7, 11, 8, 198, 18, 0, 2, 0, 0, 0, 0],        // record route, one used
            vec![68, 12, 5, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],    // timestamp
            vec![68, 12, 13, 0x11, 0, 0, 0, 0, 0, 0, 0, 0],   // timestamp, overflow
            vec![131, 7, 4, 198, 18, 0, 1],                   // loose source route
            vec![137, 7, 4, 198, 18, 0, 1],                   // strict source route
            vec![131, 11, 4, 198, 18, 0, 100, 198, 18, 5, 5], // LSRR via VIP
            vec![148, 4, 0, 0],                               // router alert
            vec![130, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],         // security
            vec![133, 4, 0, 1],                               // extended security
            vec![134, 6, 0, 0, 0, 0],                         // CIPSO
            vec![136, 4, 0, 1],                               // stream id
            vec![82, 12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],       // traceroute
            vec![25, 8, 0, 0, 0, 0, 0, 0],                    // quick-start
            vec![30, 4, 0, 0],                                // experimental
            vec![94, 4, 0, 0],
            vec![158, 4, 0, 0],
            vec![222, 4, 0, 0],
        ];
        for n in 0..3000u32 {
            let mut opts = match n % 5 {
                0 | 1 => well[n as usize / 5 % well.len()].clone(),
                // Bad length: 0, 1, 2, or past the header.
                2 => {
                    let k = self.rng.pick(&[7u8, 68, 131, 137, 148, 130, 136, 2, 200]);
                    let l = self.rng.pick(&[0u8, 1, 2, 3, 39, 40, 255]);
                    let mut o = vec![k, l];
                    o.extend(self.rng.some_bytes(10));
                    o
                }
                // Pointers that point nowhere.
                3 => {
                    let k = self.rng.pick(&[7u8, 68, 131, 137]);
                    vec![k, 7, self.rng.byte(), 1, 2, 3, 4]
                }
                // Anything, up to the 40 bytes there is room for.
                _ => {
                    let l = 1 + self.rng.below(40) as usize;
                    self.rng.bytes(l)
                }
            };
            opts.truncate(40);
            let dst = self.rng.pick(&V4_DSTS);
            let proto = self.rng.pick(&[6u8, 17, 1]);
            let mut h = v4(client_v4(n), dst, proto);
            if n % 7 == 0 {
                h.ttl = 1;
            }
            let sport = self.port();
            let l4 = match proto {
                6 => tcp(sport, 80, 1, 0, SYN, &[], &[]),
                17 => udp(sport, 53, b"options"),
                _ => icmp(8, 0, [0, 2, 0, 2], b"options"),
            };
            let f = frame4(GATEWAY_MAC, &h, &opts, l4);
            self.push(c, f);
        }
    }

    /// IPv6 extension headers: every kind, chains, bad lengths, unknown
    /// options with each action, routing types, AH, ESP, no next header.
    fn ipv6_extensions(&mut self) {
        let c = Class::Ipv6Extensions;
        for n in 0..3000u32 {
            let dst = self.rng.pick(&V6_DSTS);
            let proto = self.rng.pick(&[6u8, 17, 58]);
            let sport = self.port();
            let l4 = match proto {
                6 => tcp(sport, 80, 1, 0, SYN, &[], &[]),
                17 => udp(sport, 53, b"ext"),
                _ => icmp(128, 0, [0, 3, 0, 3], b"ext"),
            };
            let (first, ext) = match n % 10 {
                // Hop-by-hop with Pad1, PadN, router alert, jumbo, and
                // unknown options of each action (00, 01, 10, 11).
                0 => {
                    let opt = self.rng.pick(&[
                        &[0u8][..],
                        &[1, 2, 0, 0],
                        &[5, 2, 0, 0],
                        &[0xc2, 4, 0, 1, 0, 0],
                        &[0x1e, 2, 0, 0],
                        &[0x5e, 2, 0, 0],
                        &[0x9e, 2, 0, 0],
                        &[0xde, 2, 0, 0],
                        &[0x1e, 200, 0, 0],
                    ]);
                    (0, ext_header(proto, opt))
                }
                // Destination options, same kinds.
                1 => {
                    let opt = self.rng.pick(&[
                        &[0x1e, 2, 0, 0][..],
                        &[0x9e, 2, 0, 0],
                        &[4, 1, 0],
                        &[0xc9, 16],
                    ]);
                    (60, ext_header(proto, opt))
                }
                // Routing headers: type 0 (deprecated), 2, 3, 4 (SRH).
                2 => {
                    let rt = self.rng.pick(&[0u8, 2, 3, 4, 253]);
                    let left = self.rng.pick(&[0u8, 1, 5]);
                    let mut body = vec![rt, left, 0, 0, 0, 0];
                    body.extend_from_slice(&VIP_V6[0].octets());
                    (43, ext_header(proto, &body))
                }
                // A fragment header that says "whole" (atomic fragment).
                3 => (44, vec![proto, 0, 0, 0, 0, 0, 0, self.rng.byte()]),
                // AH, ESP, no next header.
                4 => {
                    let k = self.rng.pick(&[51u8, 50, 59]);
                    match k {
                        51 => (51, {
                            let mut b = vec![proto, 4, 0, 0];
                            b.extend(self.rng.bytes(20));
                            b
                        }),
                        50 => (50, self.rng.bytes(24)),
                        _ => (59, vec![]),
                    }
                }
                // Long chains of hop-by-hop / destination / routing.
                5 => {
                    let k = 2 + self.rng.below(12) as usize;
                    let kinds: Vec<u8> = (0..k)
                        .map(|i| {
                            if i == 0 {
                                0
                            } else {
                                self.rng.pick(&[60u8, 43, 0])
                            }
                        })
                        .collect();
                    let mut ext = vec![];
                    for i in 0..k {
                        let next = if i + 1 < k { kinds[i + 1] } else { proto };
                        let body = if kinds[i] == 43 {
                            vec![4, 0, 0, 0, 0, 0]
                        } else {
                            vec![1, 2, 0, 0]
                        };
                        ext.extend(ext_header(next, &body));
                    }
                    (0, ext)
                }
                // A length that runs past the packet.
                6 => {
                    let mut e = ext_header(proto, &[1, 2, 0, 0]);
                    e[1] = self.rng.pick(&[1u8, 10, 255]);
                    (self.rng.pick(&[0u8, 60, 43]), e)
                }
                // Hop-by-hop not first (forbidden).
                7 => {
                    let mut e = ext_header(0, &[1, 2, 0, 0]);
                    e.extend(ext_header(proto, &[1, 2, 0, 0]));
                    (60, e)
                }
                // Unknown next header values.
                8 => (
                    self.rng
                        .pick(&[139u8, 140, 143, 253, 254, 255, 4, 41, 47, 132, 136]),
                    {
                        let n = 8 + self.rng.below(24) as usize;
                        self.rng.bytes(n)
                    },
                ),
                // Garbage claiming to be extension headers.
                _ => {
                    let k = self.rng.pick(&[0u8, 43, 44, 60, 51]);
                    (k, self.rng.some_bytes(40))
                }
            };
            let hop = if n % 9 == 0 { 1 } else { 64 };
            let f = frame6(GATEWAY_MAC, client_v6(n), dst, hop, first, &ext, proto, l4);
            self.push(c, f);
        }
    }

    /// Every TCP option kind, in SYNs and ACKs, well and badly formed.
    fn tcp_options(&mut self) {
        let c = Class::TcpOptions;
        let well: Vec<Vec<u8>> = vec![
            vec![0],
            vec![1, 1, 1, 1],
            vec![2, 4, 5, 0xb4],
            vec![2, 4, 0, 0],
            vec![3, 3, 14],
            vec![3, 3, 255],
            vec![4, 2],
            vec![5, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            vec![
                5, 34, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0,
                0, 0, 7, 0, 0, 0, 8,
            ],
            vec![8, 10, 0, 0, 0, 1, 0, 0, 0, 0],
            vec![
                19, 18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ],
            vec![28, 4, 0, 10],
            vec![29, 6, 1, 1, 0, 0],
            vec![30, 4, 0, 0],
            vec![30, 12, 0x00, 0x81, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![34, 2],
            vec![34, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![253, 4, 0xf9, 0x89],
            vec![254, 6, 0xf9, 0x89, 0, 0],
            vec![99, 2],
        ];
        for n in 0..4000u32 {
            let mut opts = match n % 4 {
                0 | 1 => well[n as usize / 4 % well.len()].clone(),
                // Length 0, 1, or past the header.
                2 => {
                    let k = self.rng.pick(&[2u8, 3, 4, 5, 8, 19, 29, 30, 34, 77]);
                    let l = self.rng.pick(&[0u8, 1, 3, 39, 41, 255]);
                    let mut o = vec![k, l];
                    o.extend(self.rng.some_bytes(8));
                    o
                }
                _ => {
                    let l = 1 + self.rng.below(40) as usize;
                    self.rng.bytes(l)
                }
            };
            opts.truncate(40);
            let flags = self
                .rng
                .pick(&[SYN, ACK, SYN | ACK, ACK | PSH, RST, FIN | ACK]);
            let sport = self.port();
            let f = if n % 2 == 0 {
                let dst = self.rng.pick(&V4_DSTS);
                tcp4(client_v4(n), dst, sport, 80, flags, &opts)
            } else {
                let dst = self.rng.pick(&V6_DSTS);
                tcp6(client_v6(n), dst, sport, 80, flags, &opts)
            };
            self.push(c, f);
        }
    }

    /// All 512 combinations of the nine TCP flag bits, toward each kind of
    /// destination, on the sound conversations' own connections (NAT) and
    /// on unknown ones.
    fn tcp_flags(&mut self) {
        let c = Class::TcpFlags;
        for flags in 0..512u16 {
            for (k, dport) in [(0usize, 80u16), (1, 80), (2, 80), (0, 81), (3, 22), (4, 80)] {
                // Live connections: the sound flows' tuples (flow k*2 is
                // IPv4 to service k, k*2+1 IPv6).
                let flow = (k as u32 % 3) + 3 * (u32::from(flags) % 100);
                let sport = if k < 3 && dport == 80 {
                    20000 + flow as u16
                } else {
                    self.port()
                };
                let f4 = {
                    let dst = V4_DSTS[k];
                    let mut h = v4(client_v4(flow), dst, 6);
                    h.ttl = if flags % 37 == 0 { 1 } else { 64 };
                    let data = if flags % 3 == 0 { &b"payload"[..] } else { &[] };
                    frame4(
                        GATEWAY_MAC,
                        &h,
                        &[],
                        tcp(sport, dport, 1000, 5001, flags, &[], data),
                    )
                };
                self.push(c, f4);
                let f6 = frame6(
                    GATEWAY_MAC,
                    client_v6(flow),
                    V6_DSTS[k],
                    64,
                    6,
                    &[],
                    6,
                    tcp(sport, dport, 1000, 5001, flags, &[], &[]),
                );
                self.push(c, f6);
            }
        }
    }

    /// ICMP and ICMPv6 errors quoting garbage, truncated quotes, live
    /// connections from the wrong side, unknown flows, other families and
    /// other errors, from real servers, the gateway and strangers.
    fn icmp_errors(&mut self) {
        let c = Class::IcmpErrors;
        for n in 0..4000u32 {
            let flow = (n % 200) * 2; // IPv4 sound flows
            let sport = 20000 + flow as u16;
            let svc = (flow % 3) as usize;
            let v6 = n % 2 == 1;
            let quote: Vec<u8> = match n / 2 % 8 {
                // Garbage.
                0 => self.rng.some_bytes(80),
                // A live NAT connection as the real server sent it (the
                // error comes from the client's side).
                1 | 2 => {
                    if v6 {
                        let fl = flow + 1;
                        let f = frame6(
                            server_mac(0),
                            server_v6(0),
                            client_v6(fl),
                            64,
                            6,
                            &[],
                            6,
                            tcp(80, 20000 + fl as u16, 5000, 1001, SYN | ACK, &[], &[]),
                        );
                        f[14..].to_vec()
                    } else {
                        let f = frame4(
                            server_mac(0),
                            &v4(VIP_V4[svc], client_v4(flow), 6),
                            &[],
                            tcp(80, sport, 5000, 1001, SYN | ACK, &[], &[]),
                        );
                        f[14..].to_vec()
                    }
                }
                // The client's packet toward the real server (an error
                // from a router between director and server).
                3 => {
                    if v6 {
                        let fl = flow + 1;
                        let f = frame6(
                            GATEWAY_MAC,
                            client_v6(fl),
                            server_v6(1),
                            64,
                            6,
                            &[],
                            6,
                            tcp(20000 + fl as u16, 80, 1000, 0, SYN, &[], &[]),
                        );
                        f[14..].to_vec()
                    } else {
                        let f = frame4(
                            GATEWAY_MAC,
                            &v4(client_v4(flow), server_v4(1), 6),
                            &[],
                            tcp(sport, 80, 1000, 0, SYN, &[], &[]),
                        );
                        f[14..].to_vec()
                    }
                }
                // An unknown flow, a UDP flow, an ICMP error, an echo.
                4 => {
                    let f = self.some_packet(v6);
                    f[14..].to_vec()
                }
                // The other family's packet.
                5 => {
                    let f = self.some_packet(!v6);
                    f[14..].to_vec()
                }
                // A live flow's quote cut short (0..27 bytes of it).
                6 => {
                    let f = frame4(
                        GATEWAY_MAC,
                        &v4(VIP_V4[svc], client_v4(flow), 6),
                        &[],
                        tcp(80, sport, 5000, 1001, ACK, &[], &[]),
                    );
                    let cut = self.rng.below(28) as usize;
                    f[14..14 + cut].to_vec()
                }
                // A quote with a lying header: IHL, length, protocol.
                _ => {
                    let mut f = frame4(
                        GATEWAY_MAC,
                        &v4(VIP_V4[svc], client_v4(flow), 6),
                        &[],
                        tcp(80, sport, 5000, 1001, ACK, &[], &[]),
                    );
                    let at = 14 + self.rng.below(20) as usize;
                    f[at] = self.rng.byte();
                    f[14..].to_vec()
                }
            };
            // Senders: a real server, the gateway (a router), a stranger.
            let who = self.rng.below(3);
            let f = if v6 {
                let (kind, code) = self.rng.pick(&[
                    (1u8, 0u8),
                    (1, 4),
                    (2, 0),
                    (3, 0),
                    (4, 0),
                    (4, 1),
                    (1, 9),
                    (100, 0),
                ]);
                let rest = if kind == 2 { [0, 0, 5, 0] } else { [0; 4] };
                let (src, mac) = match who {
                    0 => (server_v6(0), server_mac(0)),
                    1 => (GATEWAY_V6, GATEWAY_MAC),
                    _ => (OTHER_V6, GATEWAY_MAC),
                };
                let dst = self.rng.pick(&[
                    VIP_V6[0],
                    VIP_V6[1],
                    VIP_V6[2],
                    DIRECTOR_V6,
                    client_v6(flow + 1),
                    OTHER_V6,
                ]);
                let mut body = quote;
                body.truncate(1232);
                frame6(
                    mac,
                    src,
                    dst,
                    64,
                    58,
                    &[],
                    58,
                    icmp(kind, code, rest, &body),
                )
            } else {
                let (kind, code) = self.rng.pick(&[
                    (3u8, 0u8),
                    (3, 1),
                    (3, 3),
                    (3, 4),
                    (11, 0),
                    (11, 1),
                    (12, 0),
                    (4, 0),
                    (5, 1),
                    (3, 13),
                ]);
                let rest = match (kind, code) {
                    (3, 4) => [0, 0, self.rng.byte() & 0x05, self.rng.byte()],
                    (12, _) => [self.rng.byte(), 0, 0, 0],
                    _ => [0; 4],
                };
                let (src, mac) = match who {
                    0 => (server_v4(0), server_mac(0)),
                    1 => (GATEWAY_V4, GATEWAY_MAC),
                    _ => (OTHER_V4, GATEWAY_MAC),
                };
                let dst = self.rng.pick(&[
                    VIP_V4[0],
                    VIP_V4[1],
                    VIP_V4[2],
                    DIRECTOR_V4,
                    client_v4(flow),
                    OTHER_V4,
                ]);
                let mut l4 = icmp(kind, code, rest, &quote);
                let f = frame4(mac, &v4(src, dst, 1), &[], l4.clone());
                if self.rng.chance(10) {
                    // A wrong ICMP checksum.
                    l4[2] ^= 0x5a;
                    let mut g = f;
                    let at = g.len() - l4.len() + 2;
                    g[at] = l4[2];
                    g
                } else {
                    f
                }
            };
            self.push(c, f);
        }
    }

    /// Fragments: overlapping, duplicate, beyond 64 KiB, not a multiple of
    /// 8, empty, tiny (a TCP header split), too many, last-first,
    /// contradicting ends, atomic and nested (IPv6), to services and to
    /// others.
    fn fragments(&mut self) {
        let c = Class::Fragments;
        let mut id = 1u16;
        for n in 0..500u32 {
            id = id.wrapping_add(1);
            let v6 = n % 2 == 1;
            let svc = (n % 3) as usize;
            let proto = if n % 4 < 2 { 17 } else { 6 };
            let sport = self.port();
            let body_len = 64 + self.rng.below(1400) as usize;
            let data = self.rng.bytes(body_len);
            let mut l4 = if proto == 17 {
                udp(sport, 53, &data)
            } else {
                tcp(sport, 80, 1, 0, SYN, &[], &data)
            };
            let (s4, d4) = (
                client_v4(n + 9000),
                if n % 5 == 4 { OTHER_V4 } else { VIP_V4[svc] },
            );
            let (s6, d6) = (
                client_v6(n + 9000),
                if n % 5 == 4 { OTHER_V6 } else { VIP_V6[svc] },
            );
            if v6 {
                let l = l4.len();
                fill_l4(&mut l4, proto, pseudo_v6(s6, d6, proto, l));
            } else {
                let l = l4.len();
                fill_l4(&mut l4, proto, pseudo_v4(s4, d4, proto, l));
            }
            // (offset in bytes, length, more) pieces of `l4`.
            let len = l4.len();
            let plan: Vec<(usize, usize, bool)> = match n / 2 % 10 {
                // Overlapping second piece.
                0 => vec![(0, 48, true), (40, len - 40, false)],
                // Duplicate, then the rest.
                1 => vec![(0, 48, true), (0, 48, true), (48, len - 48, false)],
                // The last piece first, then an overlap of it.
                2 => vec![(48, len - 48, false), (0, 56, true)],
                // A piece not a multiple of 8 that is not last.
                3 => vec![(0, 13, true), (13, len - 13, false)],
                // Empty non-last pieces, then the whole.
                4 => vec![
                    (0, 0, true),
                    (0, 0, true),
                    (0, 48, true),
                    (48, len - 48, false),
                ],
                // Tiny: 8 bytes (half a TCP header), then the rest.
                5 => vec![(0, 8, true), (8, len - 8, false)],
                // Too many: 8-byte pieces of everything.
                6 => {
                    let mut v: Vec<_> = (0..len / 8).map(|i| (i * 8, 8, true)).collect();
                    v.push((len / 8 * 8, len % 8, false));
                    v
                }
                // Two different ends.
                7 => vec![(0, 48, true), (48, len - 48, false), (48, len - 56, false)],
                // Beyond 64 KiB: offset near the top.
                8 => vec![(0, 48, true), (65528, 48.min(len), false)],
                // Only a first piece (never completed: times out).
                _ => vec![(0, 48, true)],
            };
            for (off, l, more) in plan {
                let end = (off + l).min(len);
                let start = off.min(len);
                let piece = if off < 65528 {
                    l4[start..end].to_vec()
                } else {
                    self.rng.bytes(l)
                };
                let f = if v6 {
                    let word = ((off / 8) as u16) << 3 | u16::from(more);
                    let ext = [
                        proto,
                        0,
                        (word >> 8) as u8,
                        word as u8,
                        0,
                        0,
                        (id >> 8) as u8,
                        id as u8,
                    ];
                    let first = if n % 17 == 0 { 0 } else { 44 };
                    let ext: Vec<u8> = if first == 0 {
                        // Hop-by-hop in front of the fragment header.
                        let mut e = ext_header(44, &[1, 2, 0, 0]);
                        e.extend_from_slice(&ext);
                        e
                    } else {
                        ext.to_vec()
                    };
                    let mut fr = frame6(GATEWAY_MAC, s6, d6, 64, first, &ext, 0, piece);
                    // The piece must not get a checksum of its own.
                    let _ = &mut fr;
                    fr
                } else {
                    let mut h = v4(s4, d4, proto);
                    h.id = id;
                    h.frag = (((off / 8) as u16) & 0x1fff) | if more { 0x2000 } else { 0 };
                    let mut fr = eth(DIRECTOR_MAC, GATEWAY_MAC, 0x0800);
                    fr.extend(ipv4_header(&h, &[], piece.len()));
                    fr.extend(piece);
                    fr
                };
                self.push(c, f);
            }
        }
        // IPv6 atomic and nested fragment headers, IPv4 with DF and MF.
        for n in 0..300u32 {
            let sport = self.port();
            let f = if n % 2 == 0 {
                let ext = [44u8, 0, 0, 1, 0, 0, 0, 9, 17, 0, 0, 0, 0, 0, 0, 9];
                frame6(
                    GATEWAY_MAC,
                    client_v6(n),
                    VIP_V6[0],
                    64,
                    44,
                    &ext,
                    17,
                    udp(sport, 53, b"nested"),
                )
            } else {
                let mut h = v4(client_v4(n), VIP_V4[0], 17);
                h.frag = 0x6000 | (n as u16 & 0x1fff);
                frame4(GATEWAY_MAC, &h, &[], udp(sport, 53, b"df and mf"))
            };
            self.push(c, f);
        }
    }

    /// Link-layer and network-layer oddities.
    fn link(&mut self) {
        let c = Class::Link;
        for n in 0..3000u32 {
            let f = match n % 15 {
                // 802.1Q of an unknown VLAN, QinQ, two tags.
                0 => {
                    let inner = self.some_packet(n % 2 == 1);
                    let tpid: u16 = self.rng.pick(&[0x8100u16, 0x88a8, 0x9100]);
                    let mut f = inner[..12].to_vec();
                    f.extend_from_slice(&tpid.to_be_bytes());
                    f.extend_from_slice(&(self.rng.u16() & 0x0fff).to_be_bytes());
                    if self.rng.chance(30) {
                        f.extend_from_slice(&[0x81, 0x00, 0, 5]);
                    }
                    f.extend_from_slice(&inner[12..]);
                    if self.rng.chance(20) {
                        f.truncate(14 + self.rng.below(6) as usize);
                    }
                    f
                }
                // Unknown ethertypes and 802.3 lengths.
                1 => {
                    let et = self.rng.pick(&[
                        0x88ccu16, 0x8863, 0x8035, 0x0005, 0x05dc, 0x88e5, 0x22f0, 0xffff,
                    ]);
                    let mut f = eth(DIRECTOR_MAC, GATEWAY_MAC, et);
                    f.extend(self.rng.bytes(46));
                    f
                }
                // Another host's MAC, broadcast and multicast MACs.
                2 => {
                    let mut f = self.some_packet(n % 2 == 1);
                    let mac = self.rng.pick(&[
                        [0x02u8, 0, 0, 0, 0, 0x99],
                        [0xff; 6],
                        [0x01, 0, 0x5e, 0, 0, 1],
                        [0x33, 0x33, 0, 0, 0, 1],
                    ]);
                    f[..6].copy_from_slice(&mac);
                    f
                }
                // ARP: requests for VIPs, own, others; replies; garbage.
                3 => {
                    let target = self
                        .rng
                        .pick(&[VIP_V4[0], DIRECTOR_V4, OTHER_V4, GATEWAY_V4]);
                    let op = self.rng.pick(&[1u16, 2, 3, 0]);
                    let sender_ip = self.rng.pick(&[
                        GATEWAY_V4,
                        Ipv4Addr::new(0, 0, 0, 0),
                        Ipv4Addr::new(255, 255, 255, 255),
                        client_v4(n),
                        DIRECTOR_V4,
                    ]);
                    let sha =
                        self.rng
                            .pick(&[GATEWAY_MAC, [0xff; 6], [0; 6], [0x01, 0, 0x5e, 0, 0, 1]]);
                    let mut f = arp(op, sha, sender_ip, [0; 6], target, [0xff; 6]);
                    if self.rng.chance(30) {
                        // hlen / plen / htype / ptype lies, or a cut.
                        let at = 14 + self.rng.below(8) as usize;
                        f[at] = self.rng.byte();
                    }
                    if self.rng.chance(20) {
                        f.truncate(14 + self.rng.below(28) as usize);
                    }
                    f
                }
                // NDP: hop limits other than 255, bad checksums, zero
                // option lengths, solicitations for others.
                4 => {
                    let target = self.rng.pick(&[VIP_V6[0], DIRECTOR_V6, OTHER_V6]);
                    let hop = self.rng.pick(&[255u8, 254, 64, 1]);
                    let mut f = ns(GATEWAY_V6, target, hop, self.rng.chance(70));
                    if self.rng.chance(30) {
                        let l = f.len();
                        f[l - 7] = 0; // option length 0
                    }
                    if self.rng.chance(20) {
                        f[14 + 42] ^= 0xff; // checksum
                    }
                    f
                }
                // Router advertisements, MLD, redirects.
                5 => {
                    let kind = self.rng.pick(&[133u8, 134, 137, 130, 131, 143, 136]);
                    frame6(
                        GATEWAY_MAC,
                        GATEWAY_V6,
                        self.rng
                            .pick(&[DIRECTOR_V6, "ff02::1".parse().unwrap_or(DIRECTOR_V6)]),
                        255,
                        58,
                        &[],
                        58,
                        icmp(kind, 0, [0; 4], &self.rng.bytes(24)),
                    )
                }
                // Martian sources and destinations.
                6 => {
                    let src = self.rng.pick(&[
                        Ipv4Addr::new(0, 0, 0, 0),
                        Ipv4Addr::new(255, 255, 255, 255),
                        Ipv4Addr::new(224, 0, 0, 1),
                        Ipv4Addr::new(127, 0, 0, 1),
                        Ipv4Addr::new(198, 18, 0, 255),
                        Ipv4Addr::new(0, 1, 2, 3),
                    ]);
                    let dst = self.rng.pick(&[
                        VIP_V4[0],
                        DIRECTOR_V4,
                        Ipv4Addr::new(127, 0, 0, 1),
                        Ipv4Addr::new(0, 0, 0, 0),
                        Ipv4Addr::new(255, 255, 255, 255),
                        Ipv4Addr::new(224, 0, 0, 5),
                    ]);
                    let sport = self.port();
                    frame4(
                        GATEWAY_MAC,
                        &v4(src, dst, 6),
                        &[],
                        tcp(sport, 80, 1, 0, SYN, &[], &[]),
                    )
                }
                7 => {
                    let src: Ipv6Addr = self
                        .rng
                        .pick(&["::", "::1", "ff02::1", "fe80::1", "::ffff:127.0.0.1"])
                        .parse()
                        .unwrap_or(Ipv6Addr::LOCALHOST);
                    let dst: Ipv6Addr = self
                        .rng
                        .pick(&["2001:db8::100", "::1", "::", "ff02::1", "2001:db8::1"])
                        .parse()
                        .unwrap_or(Ipv6Addr::LOCALHOST);
                    let sport = self.port();
                    frame6(
                        GATEWAY_MAC,
                        src,
                        dst,
                        64,
                        6,
                        &[],
                        6,
                        tcp(sport, 80, 1, 0, SYN, &[], &[]),
                    )
                }
                // A bad IPv4 header checksum.
                8 => {
                    let mut f = self.some_packet(false);
                    f[24] ^= 0x55;
                    f
                }
                // TTL / hop limit 0 and 1 toward services and others.
                9 => {
                    let mut f = self.some_packet(n % 2 == 1);
                    if f[12] == 0x08 {
                        f[22] = self.rng.pick(&[0u8, 1]);
                        refix_v4(&mut f);
                    } else {
                        f[21] = self.rng.pick(&[0u8, 1]);
                    }
                    f
                }
                // A bad transport checksum.
                10 => {
                    let mut f = self.some_packet(n % 2 == 1);
                    let l = f.len();
                    f[l - 1] ^= 0x3c;
                    f
                }
                // Other protocols to VIPs and the director: SCTP garbage,
                // IPIP, GRE, ESP, an unknown number.
                11 => {
                    let proto = self.rng.pick(&[132u8, 4, 47, 50, 41, 2, 253, 0]);
                    let body = self.rng.some_bytes(80);
                    if n % 2 == 0 {
                        frame4(
                            GATEWAY_MAC,
                            &v4(client_v4(n), self.rng.pick(&V4_DSTS), proto),
                            &[],
                            body,
                        )
                    } else {
                        frame6(
                            GATEWAY_MAC,
                            client_v6(n),
                            self.rng.pick(&V6_DSTS),
                            64,
                            proto,
                            &[],
                            proto,
                            body,
                        )
                    }
                }
                // UDP with checksum 0: legal over IPv4, not over IPv6.
                12 => {
                    let mut f = self.some_packet(n % 2 == 1);
                    let v6 = f[12] == 0x86;
                    let l4 = if v6 { 54 } else { 34 };
                    if f[if v6 { 20 } else { 23 }] == 17 && f.len() >= l4 + 8 {
                        f[l4 + 6] = 0;
                        f[l4 + 7] = 0;
                    }
                    f
                }
                // A VIP's port with no service, UDP and TCP.
                13 => {
                    let sport = self.port();
                    let dport = self.rng.pick(&[0u16, 1, 54, 443, 65535]);
                    if n % 2 == 0 {
                        let h = v4(client_v4(n), VIP_V4[self.rng.below(3) as usize], 17);
                        frame4(GATEWAY_MAC, &h, &[], udp(sport, dport, b"closed"))
                    } else {
                        tcp6(
                            client_v6(n),
                            VIP_V6[self.rng.below(3) as usize],
                            sport,
                            dport,
                            SYN,
                            &[],
                        )
                    }
                }
                // Runts and giants: all-zero, all-ones, 9000 bytes.
                _ => {
                    let l = self
                        .rng
                        .pick(&[0usize, 1, 13, 14, 15, 60, 1514, 1600, 9014]);
                    let b = self.rng.pick(&[0u8, 0xff, 0x45]);
                    let mut f = vec![b; l];
                    if l >= 14 {
                        f[..6].copy_from_slice(&DIRECTOR_MAC);
                        f[12] = 0x08;
                        f[13] = 0;
                    }
                    f
                }
            };
            self.push(c, f);
        }
    }

    /// Copies of frames built above with a few random bytes changed.
    fn mutated(&mut self) {
        let c = Class::Mutated;
        let n_src = self.out.len() as u64;
        for _ in 0..4000 {
            let mut f = self.out[self.rng.below(n_src) as usize].1.clone();
            if f.is_empty() {
                continue;
            }
            let flips = 1 + self.rng.below(4);
            for _ in 0..flips {
                // Mostly inside the headers, where the parsers look.
                let lim = f.len().min(80) as u64;
                let at = self.rng.below(lim) as usize;
                f[at] = self.rng.byte();
            }
            if f.len() > 34 && f[12] == 0x08 && f[13] == 0 && self.rng.chance(70) {
                refix_v4(&mut f);
            }
            self.push(c, f);
        }
    }
}

/// An ARP frame (Ethernet destination `eth_dst`).
fn arp(
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
    eth_dst: [u8; 6],
) -> Vec<u8> {
    let mut f = eth(eth_dst, sha, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f.resize(60, 0);
    f
}

/// A neighbour solicitation from `src` for `target`, to its
/// solicited-node group, with a source link-layer option if `slla`.
fn ns(src: Ipv6Addr, target: Ipv6Addr, hop: u8, slla: bool) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut body = t.to_vec();
    if slla {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&GATEWAY_MAC);
    }
    let mut f = frame6(
        GATEWAY_MAC,
        src,
        group,
        hop,
        58,
        &[],
        58,
        icmp(135, 0, [0; 4], &body),
    );
    let g = group.octets();
    f[..6].copy_from_slice(&[0x33, 0x33, g[12], g[13], g[14], g[15]]);
    f
}

/// Writes `frames` as a pcap stream (little-endian, Ethernet, microsecond
/// timestamps counting up from 0), `loops` times over; returns the number
/// of frames written. A FIFO works: the stream is written in order and
/// never sought.
pub fn write_pcap(w: &mut impl Write, frames: &[Vec<u8>], loops: u64) -> io::Result<u64> {
    let mut head = Vec::with_capacity(24);
    head.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    head.extend_from_slice(&2u16.to_le_bytes());
    head.extend_from_slice(&4u16.to_le_bytes());
    head.extend_from_slice(&[0; 8]);
    head.extend_from_slice(&65535u32.to_le_bytes());
    head.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&head)?;
    let mut n = 0u64;
    let mut rec = Vec::with_capacity(16 + 9100);
    for _ in 0..loops {
        for f in frames {
            rec.clear();
            rec.extend_from_slice(&((n / 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&((n % 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
            rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
            rec.extend_from_slice(f);
            w.write_all(&rec)?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// Counts the records of a pcap stream (what a `net_pcap` port wrote) and
/// hands each frame to `each`.
pub fn read_pcap(r: &mut impl io::Read, mut each: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut head = [0u8; 24];
    r.read_exact(&mut head)?;
    let mut n = 0;
    let mut rec = [0u8; 16];
    let mut buf = vec![0u8; 65536];
    loop {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
            Err(e) => return Err(e),
        }
        let caplen = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        if caplen > buf.len() {
            buf.resize(caplen, 0);
        }
        r.read_exact(&mut buf[..caplen])?;
        each(&buf[..caplen]);
        n += 1;
    }
}

/// What a director sent, by where it went (a `tx_pcap` stream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub frames: u64,
    /// To a real server's MAC (forwarded by NAT, DR or TUN).
    pub to_servers: u64,
    /// To the gateway (answers and NAT replies toward clients).
    pub to_gateway: u64,
    /// Broadcast and multicast (ARP requests, neighbour solicitations).
    pub multicast: u64,
    /// Any other unicast MAC (answers to senders on the segment).
    pub other: u64,
}

/// Reads a pcap stream of what the director sent, to its end.
pub fn count_sent(r: &mut impl io::Read) -> io::Result<Sent> {
    let mut out = Sent::default();
    let servers: Vec<[u8; 6]> = (0..SERVERS).map(server_mac).collect();
    out.frames = read_pcap(r, |f| {
        let dst: [u8; 6] = f.get(..6).and_then(|d| d.try_into().ok()).unwrap_or([0; 6]);
        if servers.contains(&dst) {
            out.to_servers += 1;
        } else if dst == GATEWAY_MAC {
            out.to_gateway += 1;
        } else if dst[0] & 1 == 1 {
            out.multicast += 1;
        } else {
            out.other += 1;
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_capture_and_another_seed_another() {
        let a = capture(7);
        let b = capture(7);
        assert_eq!(a.frames, b.frames);
        let c = capture(8);
        assert_ne!(a.frames, c.frames);
    }

    #[test]
    fn every_class_is_there_in_tens_of_thousands_of_frames() {
        let cap = capture(1);
        assert!(cap.frames.len() > 30_000, "{}", cap.frames.len());
        for (class, n) in cap.counts() {
            assert!(n > 1000, "{class:?}: {n}");
        }
        let bytes = cap.bytes();
        assert!((1 << 20..16 << 20).contains(&bytes), "{bytes}");
    }

    #[test]
    fn every_tcp_flag_combination_is_sent_over_both_families() {
        let cap = capture(1);
        let mut seen = [[false; 512]; 2];
        for (f, c) in cap.frames.iter().zip(&cap.classes) {
            if *c != Class::TcpFlags {
                continue;
            }
            let (fam, l4) = if f[12] == 0x08 { (0, 34) } else { (1, 54) };
            let flags = (usize::from(f[l4 + 12] & 1) << 8) | usize::from(f[l4 + 13]);
            seen[fam][flags] = true;
        }
        assert!(seen.iter().all(|s| s.iter().all(|b| *b)));
    }

    #[test]
    fn sound_ipv4_frames_carry_right_checksums() {
        let cap = capture(1);
        let mut checked = 0;
        for (f, c) in cap.frames.iter().zip(&cap.classes) {
            if *c != Class::Sound || f[12] != 0x08 || f[13] != 0 {
                continue;
            }
            assert_eq!(checksum(&f[14..34]), 0, "header checksum");
            let proto = f[23];
            if proto == 6 || proto == 17 {
                let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
                let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
                let l4 = &f[34..];
                assert_eq!(fold(sum(pseudo_v4(src, dst, proto, l4.len()), l4)), 0);
                checked += 1;
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn a_capture_written_reads_back_frame_for_frame() {
        let cap = capture(3);
        let mut out = vec![];
        let n = write_pcap(&mut out, &cap.frames[..100], 3).unwrap();
        assert_eq!(n, 300);
        let mut i = 0;
        let read = read_pcap(&mut &out[..], |f| {
            assert_eq!(f, &cap.frames[i % 100][..]);
            i += 1;
        })
        .unwrap();
        assert_eq!(read, 300);
    }

    /// The bodies of the `wire` and `pipeline` fuzz targets take every
    /// frame of the capture without a panic (its frames seed both
    /// corpora: FUZZING.md).
    #[test]
    fn the_fuzz_targets_bodies_take_the_whole_capture() {
        let cap = capture(1);
        let mut run = vec![];
        for f in &cap.frames {
            dataplane::wire::fuzz_views(f);
            if f.len() <= 255 {
                run.push(f.len() as u8);
                run.extend_from_slice(f);
            }
            if run.len() > 2000 {
                dataplane::lb::fuzz_pipeline(&run);
                run.clear();
            }
        }
        dataplane::lb::fuzz_pipeline(&run);
    }

    #[test]
    fn the_rules_name_every_service() {
        let r = rules();
        assert_eq!(r.lines().filter(|l| l.starts_with("-A")).count(), 12);
        assert_eq!(r.lines().filter(|l| l.starts_with("-a")).count(), 48);
        assert!(r.contains("-A -u [2001:db8::102]:53 -s rr"));
        assert!(uvsd_port("net_pcap0").contains("via = \"198.18.0.2\""));
    }
}
