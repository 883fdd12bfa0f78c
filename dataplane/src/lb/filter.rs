//! The packet rules ([`crate::rules`]) at their place in a worker's path:
//! after the hand-over to the connection's owner (so `--ctstate` reads the
//! table that holds the connection) and before the load balancer (so
//! `mangle PREROUTING` marks select fwmark services).
//!
//! Why here and not in [`Lb::process`]: the rules need what only the
//! worker's stage knows (receiving port, the director's own addresses,
//! the route back for REJECT), and a director without rules must pay one
//! load per packet, which this keeps outside the balancer's own code.
//!
//! Established traffic does not walk: a packet of a connection in the
//! table takes the answer kept with its connection
//! ([`crate::rules::conncache`]), any other packet with ports the one kept
//! for its flow ([`crate::rules::cache`]), when the rules allow it.

use std::net::IpAddr;

use super::{drop_counted, Egress, Lb, LbDrop};
use crate::buf::PacketBuf;
use crate::conn::table::HashedKey;
use crate::conn::{ConnId, ConnKey, ConnTable, Dir};
use crate::model::Snapshot;
use crate::rules::{ctstate, Facts, Packet, Verdict};
use crate::sets::{Dirs, Match as SetMatch, Packet as SetPacket, SetId};
use crate::wire::{parse_icmp_quote, Fragment, PacketMeta, L3};
use crate::xmit::icmp::{icmp_error_reply, IcmpErrorKind};

/// What the rules decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    /// Go on to the load balancer with this mark.
    Pass(u32),
    /// Dropped (counted).
    Drop,
    /// Rejected: the buffer now holds an ICMP port unreachable for the
    /// sender, to be routed to this address.
    Reply(IpAddr),
}

fn bits(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v),
    }
}

/// The rules' view of a parsed packet received on `rx_port`.
pub fn packet(meta: &PacketMeta, rx_port: u16) -> Packet {
    let has_ports = matches!(meta.protocol, 6 | 17 | 132) && meta.fragment != Fragment::Later;
    Packet {
        v6: meta.is_ipv6(),
        proto: meta.protocol,
        src: bits(&meta.src),
        dst: bits(&meta.dst),
        sport: if has_ports { meta.sport } else { 0 },
        dport: if has_ports { meta.dport } else { 0 },
        has_ports,
        len: u32::from(meta.ip_len),
        in_port: rx_port,
        out_port: crate::rules::engine::NO_PORT,
    }
}

/// Connection state and local-address answers from a worker's stage.
struct StageFacts<'a> {
    snap: &'a Snapshot,
    conns: &'a ConnTable,
    frame: &'a [u8],
    meta: &'a PacketMeta,
    own_addr: &'a dyn Fn(&IpAddr) -> bool,
    /// The interface a packet to an address leaves by ([`Egress::out_port`]).
    out_port: &'a dyn Fn(IpAddr) -> u16,
}

impl Facts for StageFacts<'_> {
    fn ct_state(&self) -> u8 {
        let m = self.meta;
        let conns = self.conns;
        if m.is_icmp_error() {
            let Ok(q) = parse_icmp_quote(self.frame, m) else {
                return ctstate::INVALID;
            };
            // The quoted packet went the other way: its reverse is ours.
            let k = ConnKey::answering_quote(&q);
            return if conns.lookup_in(&k).is_some() || conns.lookup_out(&k).is_some() {
                ctstate::RELATED
            } else {
                ctstate::INVALID
            };
        }
        let k = ConnKey::of_packet(m);
        if conns.lookup_in(&k).is_some() || conns.lookup_out(&k).is_some() {
            ctstate::ESTABLISHED
        } else {
            ctstate::NEW
        }
    }

    fn dst_local(&self) -> bool {
        self.snap.index.is_vip(&self.meta.dst) || (self.own_addr)(&self.meta.dst)
    }

    fn set_match(&self, set: SetId, dirs: Dirs) -> SetMatch {
        let m = self.meta;
        // ICMP: type and code in both ports, as ipset takes them.
        let (sport, dport) = if m.is_icmp() {
            let tc = u16::from(m.icmp_type) << 8 | u16::from(m.icmp_code);
            (tc, tc)
        } else {
            (m.sport, m.dport)
        };
        let pkt = SetPacket {
            src: m.src,
            dst: m.dst,
            proto: m.protocol,
            sport,
            dport,
            bytes: u32::from(m.ip_len),
        };
        self.snap.sets.lookup(set, dirs, &pkt)
    }

    fn out_port(&self) -> u16 {
        (self.out_port)(self.meta.dst)
    }
}

/// A connection lookup made by the packet rules, for the balancer's
/// [`Lb::process_marked`] to reuse rather than repeat (dropped by the next
/// lookup, and used only for the same packet).
///
/// Written in place and read by reference: moving it in and out of its
/// `Option` (`take()`) copied ~100 bytes twice per packet (bench/RULES.md).
/// The balancer tells whether it is for its packet by the packet's data
/// address ([`Looked::is_for`]): the stage hands the same buffer to the
/// rules and then to the balancer, and clears the lookup on every way out
/// between them, so the address is what tells packets apart; comparing
/// the packet's addresses and ports cost ~15 instructions per packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Looked {
    /// The key (its [`HashedKey::key`]) and its bucket.
    key: HashedKey,
    /// The address of the packet's data when it was looked up.
    at: usize,
    found: Option<(ConnId, Dir)>,
}

impl Looked {
    /// The lookup of `key` for the packet whose data is at `at`, which
    /// found `found` (the fast lane hands it over, [`super::lane`]).
    #[inline]
    pub(super) fn new(key: HashedKey, at: usize, found: Option<(ConnId, Dir)>) -> Looked {
        Looked { key, at, found }
    }

    /// Whether this lookup is the one of the packet whose data is at `at`.
    #[inline]
    fn is_for(&self, at: usize) -> bool {
        self.at == at
    }

    /// The key of this lookup if it is the one of the packet whose data is
    /// at `at` and found no connection either way.
    #[inline]
    pub(super) fn missed_for(&self, at: usize) -> Option<HashedKey> {
        (self.found.is_none() && self.is_for(at)).then_some(self.key)
    }
}

/// Where a packet's data is ([`Looked::at`]).
#[inline]
pub(super) fn data_at<B: PacketBuf>(buf: &B) -> usize {
    buf.data().as_ptr() as usize
}

/// The stage's answers a walk may ask for: is an address the director's
/// own, and which interface a packet to an address leaves by.
type Routing<'a> = (&'a dyn Fn(&IpAddr) -> bool, &'a dyn Fn(IpAddr) -> u16);

impl Lb {
    /// The routes changed: answers that read them (`-o` in FORWARD) are
    /// forgotten. Between bursts.
    pub fn routes_changed(&mut self) {
        self.flow_cache.forget();
        self.conn_verdicts.forget();
    }

    /// The end of a burst: the counters the kept verdicts moved are
    /// counted ([`crate::rules::replays`]), so `iptables -L -v` never
    /// lags behind more than the burst being processed.
    #[inline]
    pub fn end_burst(&mut self) {
        self.replays.flush(&self.snap.rules);
        self.conns.link_pending_out();
    }

    /// Runs the packet rules on a packet this worker owns. `own_addr` says
    /// whether an address is one of the director's own (port) addresses;
    /// it is asked only if a rule or the INPUT/FORWARD choice needs it.
    #[inline]
    pub fn filter<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        rx_port: u16,
        own_addr: impl Fn(&IpAddr) -> bool,
        eg: &E,
    ) -> Filtered {
        if self.snap.rules.is_empty() || meta.l3 == L3::Arp {
            return Filtered::Pass(0);
        }
        // As `packet()` decides it; the rules' view is built only when
        // the connection's kept answer does not serve.
        let has_ports = matches!(meta.protocol, 6 | 17 | 132) && meta.fragment != Fragment::Later;
        // The connection's kept answer first, however few connections
        // there are: its lookup is the balancer's too, which makes it
        // cheaper than a flow cache hit (bench/RULES.md).
        let conn = if self.conn_verdicts.is_on() && has_ports {
            self.conn_of(meta, data_at(buf))
        } else {
            None
        };
        let rules = &self.snap.rules;
        let len = u32::from(meta.ip_len);
        let (verdict, mark) = match conn {
            Some((slot, serial, dir)) => {
                let kept = self.conn_verdicts.hit(
                    rules,
                    slot,
                    serial,
                    dir,
                    rx_port,
                    len,
                    &mut self.replays,
                );
                match kept {
                    Some(hit) => hit,
                    None => self.walk(
                        buf.data(),
                        meta,
                        &packet(meta, rx_port),
                        (&own_addr, &|d| eg.out_port(d)),
                        Some((slot, serial, dir)),
                    ),
                }
            }
            None => {
                let pkt = packet(meta, rx_port);
                match self.flow_cache.hit(rules, &pkt, &mut self.replays) {
                    Some(hit) => hit,
                    None => self.walk(
                        buf.data(),
                        meta,
                        &pkt,
                        (&own_addr, &|d| eg.out_port(d)),
                        None,
                    ),
                }
            }
        };
        if verdict != Verdict::Accept {
            // No balancer after this: nothing may reuse the lookup.
            self.looked = None;
        }
        match verdict {
            Verdict::Accept => Filtered::Pass(mark),
            Verdict::Drop => {
                drop_counted(&self.counters, LbDrop::Filtered);
                Filtered::Drop
            }
            Verdict::Reject => {
                drop_counted(&self.counters, LbDrop::Filtered);
                let Some((from, _)) = eg.route(meta.src) else {
                    return Filtered::Drop;
                };
                match icmp_error_reply(buf, meta, IcmpErrorKind::PortUnreachable, from) {
                    Ok(()) => Filtered::Reply(meta.src),
                    Err(_) => Filtered::Drop,
                }
            }
        }
    }

    /// The slot, serial and direction of the connection `meta`'s packet
    /// (one with ports) belongs to, looked up as `--ctstate` does. The
    /// lookup is kept for the balancer ([`Lb::looked_up`]).
    #[inline]
    fn conn_of(&mut self, meta: &PacketMeta, at: usize) -> Option<(u32, u32, Dir)> {
        let conns = &self.conns;
        let l = self.looked.insert(Looked {
            key: conns.hashed(ConnKey::of_packet(meta)),
            at,
            found: None,
        });
        l.found = match conns.lookup_in_hashed(&l.key) {
            Some(id) => Some((id, Dir::In)),
            None => conns.lookup_out_hashed(&l.key).map(|id| (id, Dir::Out)),
        };
        let (id, dir) = l.found?;
        Some((id.0, self.conns.serial(id), dir))
    }

    /// `meta`'s connection key hashed, and the connection it finds (in,
    /// else out) if the packet rules looked it up for this packet, whose
    /// data is at `at` ([`data_at`]) (`None`: not looked up; the table has
    /// not changed since, the rules only read it). A lookup serves once.
    /// Always inlined: the balancer's path without rules calls it on every
    /// packet, and out of line it cost ~10 instructions more per packet.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    pub(super) fn looked_up(
        &mut self,
        meta: &PacketMeta,
        at: usize,
    ) -> (HashedKey, Option<Option<(ConnId, Dir)>>) {
        let kept = match &self.looked {
            Some(l) if l.is_for(at) => {
                // The same data: the same key (checked in tests).
                debug_assert!(*l.key.key() == ConnKey::of_packet(meta));
                Some((l.key, l.found))
            }
            _ => None,
        };
        self.looked = None;
        match kept {
            Some((key, found)) => (key, Some(found)),
            None => (self.conns.hashed(ConnKey::of_packet(meta)), None),
        }
    }

    /// The rules walked for a packet that no kept answer served: one of
    /// connection `conn` (slot, serial, direction; its answer is kept with
    /// it), else any other (kept in the flow cache).
    #[inline(never)]
    fn walk(
        &mut self,
        frame: &[u8],
        meta: &PacketMeta,
        pkt: &Packet,
        (own_addr, out_port): Routing<'_>,
        conn: Option<(u32, u32, Dir)>,
    ) -> (Verdict, u32) {
        let facts = StageFacts {
            snap: &self.snap,
            conns: &self.conns,
            frame,
            meta,
            own_addr,
            out_port,
        };
        let (rules, worker) = (&self.snap.rules, self.worker);
        let local = || facts.dst_local();
        match conn {
            Some((slot, serial, dir)) => self
                .conn_verdicts
                .miss(rules, slot, serial, dir, pkt, &facts, local, worker),
            None => self.flow_cache.miss(rules, pkt, &facts, local, worker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use crate::config::{ConfigOp, ConfigStore};
    use crate::model::{DestConfig, Family, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
    use crate::rules::{ctstate, Match, NoNames, Program, Rule, RuleOp, RuleTables, Table, Target};
    use crate::wire::parse_packet;
    use crate::wire::testutil::{frame, L4};
    use std::sync::Arc;

    struct Routes;
    impl Egress for Routes {
        fn route(&self, _: IpAddr) -> Option<(IpAddr, u16)> {
            Some(("198.18.1.1".parse().unwrap(), 1500))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// filter INPUT: `--ctstate ESTABLISHED -j <established>`, then
    /// `-p udp -j ACCEPT`; policy DROP.
    fn rules(established: Target) -> (RuleTables, Arc<Program>) {
        let mut t = RuleTables::default();
        let ct = Rule {
            matches: vec![Match::Conntrack {
                neg: false,
                states: ctstate::ESTABLISHED,
            }],
            target: established,
            ..Rule::default()
        };
        let udp = Rule {
            proto: Some(crate::rules::Neg { neg: false, v: 17 }),
            target: Target::Accept,
            ..Rule::default()
        };
        for rule in [ct, udp] {
            let op = RuleOp::Append {
                chain: "INPUT".into(),
                rule,
                counters: None,
            };
            t.apply(Family::V4, Table::Filter, &op).unwrap();
        }
        let op = RuleOp::SetPolicy {
            chain: "INPUT".into(),
            policy: crate::rules::Policy::Drop,
            counters: None,
        };
        t.apply(Family::V4, Table::Filter, &op).unwrap();
        let p = Arc::new(Program::compile(&t.v4, &t.v6, &NoNames));
        (t, p)
    }

    fn input_packets(t: &RuleTables) -> Vec<u64> {
        let filter = t.v4.table(Table::Filter);
        let input = filter.chains.iter().find(|c| c.name == "INPUT").unwrap();
        input
            .rules
            .iter()
            .map(|e| e.counted.counters.total().0)
            .collect()
    }

    /// A balancer with one UDP NAT service (198.18.0.100:80 to
    /// 198.18.1.11), running the rules `p`.
    fn balancer(p: Arc<Program>) -> (ConfigStore, Lb) {
        let key = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip("198.18.0.100"),
            port: 80,
        };
        let mut st = ConfigStore::new();
        st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
            .unwrap();
        let d = DestConfig {
            addr: ip("198.18.1.11"),
            port: 80,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        st.apply(&ConfigOp::AddDest(key, d)).unwrap();
        st.set_rules(p);
        let mut lb = Lb::new(
            0,
            super::super::LbSettings {
                capacity: 64,
                ..super::super::LbSettings::default()
            },
            0,
        );
        lb.set_snapshot(st.snapshot());
        (st, lb)
    }

    fn client(port: u16) -> Vec<u8> {
        frame(
            ip("198.18.0.2"),
            ip("198.18.0.100"),
            L4::Udp,
            port,
            80,
            None,
            b"",
        )
    }

    /// The connection lookup the rules made serves the balancer only for
    /// the packet it was made for: a packet of another flow after it gets
    /// its own lookup (and its own connection), and a lookup is used once.
    #[test]
    fn the_rules_lookup_serves_only_its_own_packet() {
        let (_t, p) = rules(Target::Accept);
        let (_st, mut lb) = balancer(p);
        assert!(lb.conn_verdicts.is_on());
        let a = client(40000);
        let b = client(40001);
        let run = |lb: &mut Lb, f: &[u8], filter: bool| {
            let mut buf = TestBuf::new(f);
            let m = parse_packet(buf.data()).unwrap();
            if filter {
                assert_eq!(
                    lb.filter(&mut buf, &m, 0, |_| false, &Routes),
                    Filtered::Pass(0)
                );
            }
            lb.process_marked(&mut buf, &m, 0, 1, &Routes)
        };
        let to_real = super::super::Action::Forward(ip("198.18.1.11"));
        assert_eq!(run(&mut lb, &a, true), to_real);
        assert_eq!(lb.conns().len(), 1);
        // The rules look up `a` (found), then the balancer gets `b`.
        let mut buf = TestBuf::new(&a);
        let m = parse_packet(buf.data()).unwrap();
        assert_eq!(
            lb.filter(&mut buf, &m, 0, |_| false, &Routes),
            Filtered::Pass(0)
        );
        assert_eq!(run(&mut lb, &b, false), to_real);
        assert_eq!(lb.conns().len(), 2, "b has a connection of its own");
        // Used once: the rules find no connection for `b`, the balancer
        // creates it; `b`'s next packet is looked up again, not given
        // the stale "not found" (which would create a second one).
        let mut lb2 = balancer(rules(Target::Accept).1).1;
        let mut buf = TestBuf::new(&b);
        let m = parse_packet(buf.data()).unwrap();
        assert_eq!(
            lb2.filter(&mut buf, &m, 0, |_| false, &Routes),
            Filtered::Pass(0)
        );
        assert_eq!(lb2.process_marked(&mut buf, &m, 0, 1, &Routes), to_real);
        assert_eq!(run(&mut lb2, &b, false), to_real);
        assert_eq!(lb2.conns().len(), 1, "found, not created twice");
        assert_eq!(run(&mut lb2, &b, true), to_real);
        assert_eq!(lb2.conns().len(), 1);
    }

    /// With `--ctstate` rules (no flow cache), a connection's packets take
    /// the answer kept with it: ESTABLISHED accepts every packet after the
    /// first and counts each; a new rule set is asked again.
    #[test]
    fn established_packets_take_the_connections_kept_answer() {
        let (t, p) = rules(Target::Accept);
        let (mut st, mut lb) = balancer(p);
        assert!(lb.conn_verdicts.is_on() && !lb.flow_cache.is_on());
        let client = frame(
            ip("198.18.0.2"),
            ip("198.18.0.100"),
            L4::Udp,
            40000,
            80,
            None,
            b"",
        );
        let send = |lb: &mut Lb| {
            let mut b = TestBuf::new(&client);
            let m = parse_packet(b.data()).unwrap();
            match lb.filter(&mut b, &m, 0, |_| false, &Routes) {
                Filtered::Pass(mark) => Some(lb.process_marked(&mut b, &m, mark, 1, &Routes)),
                _ => None,
            }
        };
        for _ in 0..4 {
            assert_eq!(
                send(&mut lb),
                Some(super::super::Action::Forward(ip("198.18.1.11"))),
                "every packet to the real server"
            );
        }
        assert_eq!(lb.conns().len(), 1);
        // First packet NEW (the udp rule), then three ESTABLISHED: the
        // kept answers' counts move at the end of the burst.
        assert_eq!(input_packets(&t), vec![1, 1]);
        lb.end_burst();
        assert_eq!(input_packets(&t), vec![3, 1]);
        // ESTABLISHED now dropped: the kept ACCEPT is not reused.
        let (t2, p2) = rules(Target::Drop);
        st.set_rules(p2);
        lb.set_snapshot(st.snapshot());
        assert_eq!(send(&mut lb), None, "dropped by the new rules");
        assert_eq!(send(&mut lb), None, "and kept dropped");
        lb.end_burst();
        assert_eq!(input_packets(&t2), vec![2, 0]);
    }
}
