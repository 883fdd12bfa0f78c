//! Path MTU towards tunnel destinations, learned from the ICMP errors that
//! routers and real servers send about the director's own tunnel packets
//! (ipvs.md 5.4, 5.5).
//!
//! Why: a tunnel packet is the client's packet plus 20 or more bytes. When a
//! link between the director and a real server has a smaller MTU than the
//! director's port, the router in front of it answers the director (the
//! tunnel packet's source), not the client. Without learning from that
//! answer the client never hears of the smaller path and its large packets
//! are lost for good (a black hole). As Linux does (`ipip_err` updates the
//! route's PMTU, `ip_vs_in_icmp` then tells the client), the director
//! * remembers the reported MTU for that destination ([`PathMtus`]), so the
//!   next oversized client packet is refused at once with fragmentation
//!   needed carrying the right MTU (the tunnel MTU check of 5.4), and
//! * re-emits the error to the client about its own packet, the MTU reduced
//!   by the tunnel overhead, if the client's packet had DF (the client does
//!   PMTU discovery); errors of other kinds go to the client unchanged.
//!
//! The table is shared by all workers (as the kernel's route cache is): an
//! error about one client's packet also teaches the path the other
//! workers' clients use. Each entry is one atomic word (address, MTU,
//! time learned), written with a relaxed store: no lock, and a reader sees
//! a whole entry or the one before. Entries expire after the kernel's
//! `ip_rt_mtu_expires` (10 minutes), so a path that grows again is used
//! again; reported values below the kernel's `ip_rt_min_pmtu` (552) are
//! raised to it. Only IPv4 destinations, as IPVS handles only errors
//! about IPv4 tunnel packets.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{bump, Action, Egress, Lb, LbDrop};
use crate::buf::PacketBuf;
use crate::conn::{ConnAddr, ConnKey};
use crate::model::TunnelConfig;
use crate::wire::{icmp, IcmpQuote, PacketMeta, L3};
use crate::xmit::icmp::{parse_tunnel_error, tunnel_error_to_client, TunnelErrorQuote};
use crate::xmit::XmitError;

/// How long a learned path MTU holds (`ip_rt_mtu_expires`, 600 s).
pub const PMTU_EXPIRES_S: u16 = 600;
/// Smallest path MTU the director believes (`ip_rt_min_pmtu`).
pub const MIN_PMTU: u16 = 552;
/// Entries of the table (a power of two). A director tunnels to a few
/// hundred real servers at most; a collision only forgets a learned MTU,
/// which the next error teaches again.
const SLOTS: usize = 1024;

/// Learned path MTUs of tunnel destinations; see the module docs.
#[derive(Debug)]
pub struct PathMtus {
    /// `address << 32 | mtu << 16 | learned_at` (seconds, wrapping); 0 is
    /// an empty slot.
    slots: Box<[AtomicU64]>,
}

impl Default for PathMtus {
    fn default() -> Self {
        PathMtus {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

#[inline]
fn slot_of(a: Ipv4Addr) -> usize {
    (u32::from(a).wrapping_mul(0x9e37_79b1) >> 22) as usize & (SLOTS - 1)
}

#[inline]
fn fresh(learned: u16, now_s: u16) -> bool {
    now_s.wrapping_sub(learned) < PMTU_EXPIRES_S
}

impl PathMtus {
    /// The learned path MTU towards `dst`, if one holds at `now_s` (the
    /// clock in seconds, wrapping).
    #[inline]
    pub fn get(&self, dst: Ipv4Addr, now_s: u16) -> Option<u16> {
        let e = self.slots[slot_of(dst)].load(Ordering::Relaxed);
        let (addr, mtu, at) = ((e >> 32) as u32, (e >> 16) as u16, e as u16);
        (mtu != 0 && addr == u32::from(dst) && fresh(at, now_s)).then_some(mtu)
    }

    /// Records `mtu` as reported for `dst` at `now_s`: a path MTU only
    /// shrinks while it holds, never below [`MIN_PMTU`].
    pub fn learn(&self, dst: Ipv4Addr, mtu: u16, now_s: u16) {
        let mut mtu = mtu.max(MIN_PMTU);
        if let Some(old) = self.get(dst, now_s) {
            mtu = mtu.min(old);
        }
        let e = u64::from(u32::from(dst)) << 32 | u64::from(mtu) << 16 | u64::from(now_s);
        self.slots[slot_of(dst)].store(e, Ordering::Relaxed);
    }
}

/// Up to this many tunnel configurations per real-server address (one per
/// service using it with another tunnel type or GUE port).
pub(super) const CONFIGS_PER_REAL: usize = 4;

impl Lb {
    /// The client's packet quoted by an ICMPv4 error about one of the
    /// director's own tunnel packets: the quote goes to a tunnel
    /// destination of the configuration, and the packet inside it to a
    /// virtual service.
    pub(super) fn tunnel_quote(
        &self,
        frame: &[u8],
        meta: &PacketMeta,
        q: &IcmpQuote,
    ) -> Option<TunnelErrorQuote> {
        if meta.l3 != L3::Ipv4 {
            return None;
        }
        let cfgs: &[Option<TunnelConfig>; CONFIGS_PER_REAL] = self.tunnel_reals.get(&q.dst)?;
        cfgs.iter()
            .flatten()
            .find_map(|cfg| parse_tunnel_error(frame, meta, q, cfg).ok())
            .filter(|tq| self.snap.index.is_vip(&tq.inner.dst))
    }

    /// An ICMP error about one of the director's own tunnel packets (5.5):
    /// fragmentation needed teaches the path MTU to the real server; the
    /// client of the connection hears of it about its own packet. `None`:
    /// not such an error.
    pub(super) fn tunnel_error<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        q: &IcmpQuote,
        eg: &E,
    ) -> Option<Action> {
        let tq = self.tunnel_quote(buf.data(), meta, q)?;
        let frag_needed = meta.icmp_type == icmp::kind::DEST_UNREACHABLE
            && meta.icmp_code == icmp::code::FRAG_NEEDED;
        let mut path_mtu = 0;
        if frag_needed {
            let at = usize::from(meta.l4_offset) + 6;
            let reported = buf
                .data()
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let Some(m) = reported.filter(|&m| m != 0) {
                eg.learn_mtu(q.dst, m);
                bump(&self.counters.pmtu_learned);
            }
            path_mtu = eg.route(q.dst).map_or(0, |r| r.1);
        }
        let inner = &tq.inner;
        let key = ConnKey::new(
            inner.protocol,
            ConnAddr::from(inner.src),
            inner.sport,
            ConnAddr::from(inner.dst),
            inner.dport,
        );
        // As ip_vs_in_icmp: the client hears of it only along a connection.
        self.conns.lookup_in(&key)?;
        Some(
            match tunnel_error_to_client(buf, meta, &tq, path_mtu, inner.dst) {
                Ok(()) => {
                    bump(&self.counters.icmp_sent);
                    Action::Forward(inner.src)
                }
                Err(XmitError::NoPmtud) => self.drop(LbDrop::TunnelIcmpNoDf),
                Err(_) => self.drop(LbDrop::BadIcmp),
            },
        )
    }
}

/// Whether `dst` is an IPv4 address, as [`PathMtus`] keys are.
#[cfg(test)]
fn v4(dst: std::net::IpAddr) -> Option<Ipv4Addr> {
    match dst {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::config::{ConfigOp, ConfigStore};
    use crate::lb::LbSettings;
    use crate::model::{
        DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey, TunnelCsum, TunnelType,
    };
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::testutil::{checksums_ok, frame, L4};
    use crate::wire::{parse_icmp_quote, parse_packet};
    use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};
    use std::cell::Cell;
    use std::net::IpAddr;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One port of MTU 1500 and the shared table, as the daemon's routes.
    struct Routes {
        pmtu: PathMtus,
        now_s: Cell<u16>,
    }
    impl Egress for Routes {
        fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
            let learned = v4(dst).and_then(|d| self.pmtu.get(d, self.now_s.get()));
            Some((ip("198.18.1.1"), learned.unwrap_or(1500).min(1500)))
        }
        fn learn_mtu(&self, dst: IpAddr, mtu: u16) {
            self.pmtu.learn(v4(dst).unwrap(), mtu, self.now_s.get());
        }
    }

    const CLIENT: &str = "198.18.0.2";
    const VIP: &str = "198.18.0.100";
    const RS: &str = "198.19.5.2";

    fn tunnel_lb(kind: TunnelType) -> Lb {
        let key = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip(VIP),
            port: 53,
        };
        let mut st = ConfigStore::new();
        st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
            .unwrap();
        let cfg = TunnelConfig {
            kind,
            port: if kind == TunnelType::Gue { 6080 } else { 0 },
            csum: TunnelCsum::NoCsum,
        };
        st.apply(&ConfigOp::AddDest(
            key,
            DestConfig {
                addr: ip(RS),
                port: 53,
                method: ForwardMethod::Tunnel(cfg),
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        ))
        .unwrap();
        let mut lb = Lb::new(0, LbSettings::default(), 0);
        lb.set_snapshot(st.snapshot());
        lb
    }

    /// A UDP datagram of `len` payload bytes from the client, DF set.
    fn client_packet(sport: u16, len: usize) -> Vec<u8> {
        let mut f = frame(ip(CLIENT), ip(VIP), L4::Udp, sport, 53, None, &vec![7; len]);
        f[20] |= 0x40;
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    fn process(lb: &mut Lb, f: &[u8], eg: &Routes) -> (Action, Vec<u8>) {
        let mut b = TestBuf::new(f);
        let m = parse_packet(b.data()).unwrap();
        let act = lb.process(&mut b, &m, 1000, eg);
        (act, b.data().to_vec())
    }

    /// A router between the director and the real server (link MTU 1400)
    /// answers a tunnel packet that does not fit, as Linux does.
    fn router_frag_needed(tunnel_packet: &[u8]) -> Vec<u8> {
        let m = parse_packet(tunnel_packet).unwrap();
        let mut e = TestBuf::new(tunnel_packet);
        icmp_error_reply(
            &mut e,
            &m,
            IcmpErrorKind::TooBig { mtu: 1400 },
            ip("198.18.1.254"),
        )
        .unwrap();
        e.data().to_vec()
    }

    #[test]
    fn frag_needed_about_a_tunnel_packet_teaches_the_path_and_tells_the_client() {
        for (kind, overhead) in [
            (TunnelType::Ipip, 20u32),
            (TunnelType::Gue, 32),
            (TunnelType::Gre, 24),
        ] {
            let mut lb = tunnel_lb(kind);
            let eg = Routes {
                pmtu: PathMtus::default(),
                now_s: Cell::new(1),
            };
            // 1450 bytes fit the director's port, not the router's link.
            let big = client_packet(4000, 1450 - 28);
            let (act, sent) = process(&mut lb, &big, &eg);
            assert_eq!(act, Action::Forward(ip(RS)), "{kind:?}");
            let err = router_frag_needed(&sent);
            let (act, told) = process(&mut lb, &err, &eg);
            assert_eq!(
                act,
                Action::Forward(ip(CLIENT)),
                "{kind:?}: the client is told"
            );
            let m = parse_packet(&told).unwrap();
            assert_eq!((m.src, m.dst), (ip(VIP), ip(CLIENT)));
            assert_eq!((m.icmp_type, m.icmp_code), (3, 4));
            let l4 = usize::from(m.l4_offset);
            assert_eq!(told[l4 + 4..l4 + 8], (1400 - overhead).to_be_bytes());
            assert!(checksums_ok(&told));
            let q = parse_icmp_quote(&told, &m).unwrap();
            assert_eq!(
                (q.src, q.sport, q.dst, q.dport),
                (ip(CLIENT), 4000, ip(VIP), 53)
            );
            assert_eq!(eg.pmtu.get(a(RS), 1), Some(1400), "learned");
            assert_eq!(lb.counters().pmtu_learned.load(Ordering::Relaxed), 1);

            // The next large packet (another client port) is refused at
            // once, with the MTU that fits the path.
            let (act, refused) = process(&mut lb, &client_packet(4001, 1450 - 28), &eg);
            assert_eq!(act, Action::Forward(ip(CLIENT)), "{kind:?}");
            let m = parse_packet(&refused).unwrap();
            let l4 = usize::from(m.l4_offset);
            assert_eq!((m.icmp_type, m.icmp_code), (3, 4));
            assert_eq!(refused[l4 + 4..l4 + 8], (1400 - overhead).to_be_bytes());
            // A packet that fits the path goes through.
            let fits = client_packet(4001, (1400 - overhead - 28) as usize);
            assert_eq!(process(&mut lb, &fits, &eg).0, Action::Forward(ip(RS)));
        }
    }

    #[test]
    fn without_df_the_path_is_learned_and_the_client_not_told() {
        let mut lb = tunnel_lb(TunnelType::Ipip);
        let eg = Routes {
            pmtu: PathMtus::default(),
            now_s: Cell::new(1),
        };
        // DF on the client packet, so the tunnel packet has DF; the
        // router's quote is then edited to say it had none.
        let (_, sent) = process(&mut lb, &client_packet(4000, 1420), &eg);
        let mut err = router_frag_needed(&sent);
        // Quoted outer header at 14 + 20 + 8, its inner header 20 later.
        let inner = 14 + 20 + 8 + 20;
        err[inner + 6] &= !0x40;
        Ipv4Packet::new_unchecked(&mut err[inner..]).fill_checksum();
        crate::wire::icmp::Icmpv4Packet::new_unchecked(&mut err[34..]).fill_checksum();
        let (act, _) = process(&mut lb, &err, &eg);
        assert_eq!(act, Action::Drop(LbDrop::TunnelIcmpNoDf));
        assert_eq!(eg.pmtu.get(a(RS), 1), Some(1400));
    }

    #[test]
    fn errors_about_other_packets_are_not_taken_for_tunnel_errors() {
        let mut lb = tunnel_lb(TunnelType::Ipip);
        let eg = Routes {
            pmtu: PathMtus::default(),
            now_s: Cell::new(1),
        };
        // An IPIP packet to an address that is no tunnel destination.
        let (_, mut sent) = process(&mut lb, &client_packet(4000, 1420), &eg);
        sent[14 + 19] = 99; // outer destination 198.19.5.99
        Ipv4Packet::new_unchecked(&mut sent[14..]).fill_checksum();
        let err = router_frag_needed(&sent);
        assert_eq!(process(&mut lb, &err, &eg).0, Action::Pass);
        assert_eq!(eg.pmtu.get(a("198.19.5.99"), 1), None);
    }

    #[test]
    fn learned_mtu_holds_for_ten_minutes_and_only_shrinks() {
        let t = PathMtus::default();
        let rs = a("198.19.5.2");
        assert_eq!(t.get(rs, 0), None);
        t.learn(rs, 1400, 100);
        assert_eq!(t.get(rs, 100), Some(1400));
        assert_eq!(t.get(rs, 699), Some(1400));
        assert_eq!(t.get(a("198.19.5.3"), 100), None, "other destinations");
        t.learn(rs, 1450, 200);
        assert_eq!(
            t.get(rs, 200),
            Some(1400),
            "a larger report does not grow it"
        );
        t.learn(rs, 1300, 300);
        assert_eq!(t.get(rs, 899), Some(1300));
        assert_eq!(t.get(rs, 900), None, "expired after 600 s");
        t.learn(rs, 1450, 900);
        assert_eq!(t.get(rs, 900), Some(1450), "after expiry a new value holds");
    }

    #[test]
    fn tiny_reports_are_raised_to_the_minimum_and_the_clock_wraps() {
        let t = PathMtus::default();
        let rs = a("198.19.5.2");
        t.learn(rs, 68, u16::MAX - 10);
        assert_eq!(t.get(rs, u16::MAX), Some(MIN_PMTU));
        assert_eq!(t.get(rs, 100), Some(MIN_PMTU), "across the wrap");
        assert_eq!(t.get(rs, 600), None);
    }
}
