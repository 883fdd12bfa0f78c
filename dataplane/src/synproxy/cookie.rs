//! SYN cookies: the initial sequence number of the director's SYN-ACK
//! carries, under a keyed hash, what the handshake needs later, so that
//! nothing is stored for a SYN.
//!
//! The construction is Linux's `secure_tcp_syn_cookie`
//! (net/ipv4/syncookies.c), with its constants:
//!
//! ```text
//! cookie = H1(flow) + client_isn + (count << 24)
//!        + ((H2(flow, count) + data) mod 2^24)
//! ```
//!
//! `count` is a minute counter (Linux's `tcp_cookie_time()`), kept in the
//! top 8 bits, so a cookie is accepted for the minute it was made in and
//! the next one (Linux's `MAX_SYNCOOKIE_AGE` = 2). `data` is what the cookie
//! carries: the index of the client's MSS in a table of four (Linux's
//! `msstab`, `msstab` of IPv6), and one bit for SACK permitted (DPVS keeps
//! its SACK bit in the same field). Validation recomputes the hashes and
//! accepts only `data` values that can have been encoded (3 bits of 24), so
//! a forged ACK passes with probability about 2^-21 per guess.
//!
//! Window scale and timestamps are *not* encoded, on purpose: the director
//! cannot know which scale the real server will announce in its own
//! SYN-ACK, and a scale promised to the client that the server does not use
//! corrupts every window of the connection; timestamps would have to be
//! translated on every segment (the server's clock is not ours, and the
//! client's PAWS check would drop the server's first segments). So the
//! director's SYN-ACK offers neither, the SYN toward the real server asks
//! for neither, and the connection runs without both (windows up to 64 KB).
//!
//! Where Linux keys one SipHash with a secret fixed at boot, the key here
//! rotates: the key of minute `count` is drawn fresh when that minute
//! starts and lives for the two minutes its cookies are valid, so a key
//! that leaks is worthless two minutes later. Hash: SipHash-2-4 (the
//! function Linux uses), written here over a fixed-size block.

use std::net::IpAddr;

/// Bits of the cookie below the counter.
pub const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Minutes a cookie stays valid (the minute it was made in counts).
pub const MAX_AGE: u32 = 2;
/// Length of a counter step (Linux: 60 s).
pub const PERIOD_MS: u64 = 60_000;
/// Linux's `msstab` (IPv4): the MSS a client announced is rounded down to
/// one of these.
pub const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// Linux's IPv6 `msstab`.
pub const MSS_V6: [u16; 4] = [1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60];
/// `data` values a cookie can carry (MSS index, SACK bit).
const DATA_LIMIT: u32 = 8;

/// What a cookie carries from the client's SYN to its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The client's MSS, rounded down to the table.
    pub mss: u16,
    /// The client offered SACK.
    pub sack: bool,
}

impl Handshake {
    /// From the client's SYN options: `mss` as announced (536 when absent,
    /// RFC 9293's default), rounded down to the family's table.
    pub fn from_syn(mss: Option<u16>, sack: bool, v6: bool) -> Handshake {
        let tab = if v6 { &MSS_V6 } else { &MSS_V4 };
        let want = mss.unwrap_or(536);
        let idx = tab.iter().rposition(|&m| m <= want).unwrap_or(0);
        Handshake {
            mss: tab[idx],
            sack,
        }
    }

    fn encode(self, v6: bool) -> u32 {
        let tab = if v6 { &MSS_V6 } else { &MSS_V4 };
        let idx = tab.iter().position(|&m| m == self.mss).unwrap_or(0) as u32;
        idx | u32::from(self.sack) << 2
    }

    fn decode(data: u32, v6: bool) -> Handshake {
        let tab = if v6 { &MSS_V6 } else { &MSS_V4 };
        Handshake {
            mss: tab[(data & 3) as usize],
            sack: data & 4 != 0,
        }
    }
}

/// The four-tuple a cookie is bound to, as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: IpAddr,
    pub vip: IpAddr,
    pub cport: u16,
    pub vport: u16,
}

/// One worker's cookie keys and minute counter.
#[derive(Debug, Clone)]
pub struct CookieJar {
    /// Key of minute `count` in slot `count & 1`.
    keys: [[u64; 2]; 2],
    /// The current minute (`now / PERIOD_MS`, truncated).
    count: u32,
}

impl CookieJar {
    /// A jar at `now` (ms) whose keys come from `fresh`.
    pub fn new(now: u64, mut fresh: impl FnMut() -> u64) -> CookieJar {
        CookieJar {
            keys: [[fresh(), fresh()], [fresh(), fresh()]],
            count: (now / PERIOD_MS) as u32,
        }
    }

    /// Between bursts: when a new minute starts, its key is drawn fresh
    /// (the key of two minutes ago, whose cookies just expired, is
    /// replaced). After a pause of two minutes or more, both keys are.
    pub fn rotate(&mut self, now: u64, mut fresh: impl FnMut() -> u64) {
        let c = (now / PERIOD_MS) as u32;
        if c == self.count {
            return;
        }
        if c.wrapping_sub(self.count) >= MAX_AGE {
            let other = (c.wrapping_sub(1) & 1) as usize;
            self.keys[other] = [fresh(), fresh()];
        }
        self.keys[(c & 1) as usize] = [fresh(), fresh()];
        self.count = c;
    }

    /// The cookie (the director's ISN) for a SYN of `flow` whose sequence
    /// number is `client_isn`.
    pub fn make(&self, flow: &Flow, client_isn: u32, hs: Handshake) -> u32 {
        let v6 = flow.client.is_ipv6();
        let c = self.count;
        let k = self.keys[(c & 1) as usize];
        let h1 = flow_hash(k, flow, 0, 0) as u32;
        let h2 = flow_hash(k, flow, c, 1) as u32;
        h1.wrapping_add(client_isn)
            .wrapping_add(c << COOKIE_BITS)
            .wrapping_add(h2.wrapping_add(hs.encode(v6)) & COOKIE_MASK)
    }

    /// What `cookie` (the client's ACK number minus one) carries, if the
    /// director made it for `flow` and `client_isn` (the ACK's sequence
    /// number minus one) in this minute or the last.
    pub fn check(&self, flow: &Flow, client_isn: u32, cookie: u32) -> Option<Handshake> {
        let v6 = flow.client.is_ipv6();
        (0..MAX_AGE).find_map(|age| {
            let c = self.count.wrapping_sub(age);
            let k = self.keys[(c & 1) as usize];
            let v = cookie
                .wrapping_sub(flow_hash(k, flow, 0, 0) as u32)
                .wrapping_sub(client_isn);
            if v >> COOKIE_BITS != c & 0xff {
                return None;
            }
            let data = v.wrapping_sub(flow_hash(k, flow, c, 1) as u32) & COOKIE_MASK;
            (data < DATA_LIMIT).then(|| Handshake::decode(data, v6))
        })
    }
}

/// SipHash-2-4 of the flow, the counter and a domain byte (1 or 2 hashes
/// per cookie, as Linux's `cookie_hash(.., c)`): addresses (16 bytes each,
/// IPv4 mapped), ports, counter, domain.
fn flow_hash(k: [u64; 2], f: &Flow, count: u32, which: u8) -> u64 {
    let mut b = [0u8; 41];
    b[0..16].copy_from_slice(&v6_bytes(f.client));
    b[16..32].copy_from_slice(&v6_bytes(f.vip));
    b[32..34].copy_from_slice(&f.cport.to_be_bytes());
    b[34..36].copy_from_slice(&f.vport.to_be_bytes());
    b[36..40].copy_from_slice(&count.to_be_bytes());
    b[40] = which;
    siphash24(k[0], k[1], &b)
}

fn v6_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), 64-bit output: the schedulers'
/// implementation ([`crate::sched::hash::siphash`]), checked there against
/// the published vectors.
pub fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    crate::sched::hash::siphash(msg, crate::sched::hash::SipKey(k0, k1), 2, 4)
}
