//! The balancer's step of the established-flow fast lane
//! ([`crate::net::Stack::input_lane`]).
//!
//! Why: with nothing in front of the balancer ([`super::LbStage`]'s
//! switches all off), a whole IPv4 TCP or UDP packet goes from the stack
//! straight to [`Lb::process_marked`] with mark 0. For such a packet most
//! of what `process_marked` tests first (ARP, ICMP errors, the protocol,
//! later fragments) cannot apply, and the lookup the packet rules may have
//! made (`looked`) cannot exist. [`Lb::lane`] is `process_marked` for that
//! packet alone: the same lookup, the same connection update, the same
//! rewrite and statistics, in the same order; what it does not handle
//! itself (no connection, a client packet whose connection just expired,
//! a SYN proxy's connection) it leaves untouched to the general path's
//! stage step, with the lookup handed over (`looked`, as the packet rules
//! hand theirs), so nothing is done twice. Property tests
//! (`crate::net::lane_tests`) hold the lane equal to the general path.
//!
//! A packet the lane left because it has no connection either way (or a
//! client packet whose connection just expired) is the general path's
//! only in that it is out of the lane's loop: the stack's
//! `Stack::lane_general` first offers it to [`Lb::lane_new`], which goes
//! where `process_marked` would go with the handed-over lookup, straight
//! to `new_connection`, and answers a [`Lane`]; the general path's stage
//! step, its verdict and `send_ip` in between did nothing for it. Why
//! not from [`Lb::lane`] itself: a call there, even never taken by an
//! established packet, changed the loop's code around it (established UDP
//! NAT 777.5 -> 798.6 instructions per packet).
//!
//! With source NAT configured (one worker, no filter rule still), the
//! stage makes source NAT's steps in front of this one in the lane
//! (`LbStage::lane_snat` in [`super::stage`]: the reply to a mapping, the
//! skip of a routed flow the balancer already passed), then calls
//! [`Lb::lane`] as here; `crate::net::lane_snat_tests` holds that equal to
//! the general path.
//!
//! With more than one worker (no filter rule, no source NAT), the step in
//! front is the connection's owner (`LbStage`'s `Stage::lane_owner`, the
//! same test as the general path's `LbStage::front`): a packet another
//! worker owns is handed over from the lane, and its owner, taking it from
//! the mesh, runs it through the lane as its own. Nothing the lane does for
//! an owned connection depends on the other workers: the connection, its
//! timers, its persistence template and its sync note are the owner's, and
//! the statistics are counted in the worker's own slots, as in the general
//! path; `crate::net::lane_tests` holds two workers equal to the general
//! path too, hand-overs included.

use super::filter::{data_at, Looked};
use std::net::Ipv4Addr;

use super::{drop_counted, fullnat, masq, refused, tunnel_in, Action, Egress, Lb, LbDrop};
use crate::buf::PacketBuf;
use crate::conn::table::cflags;
use crate::conn::{proto_tcp, ConnKey, Dir, Verdict};
use crate::model::ForwardMethod;
use crate::net::Lane;
use crate::wire::ipv4::protocol;
use crate::wire::PacketMeta;
use crate::xmit::{check_mtu, dr::dr_xmit_parsed, nat};

impl Lb {
    /// [`Lb::process_marked`] with mark 0 for a whole IPv4 TCP or UDP
    /// packet (`meta` describes `buf` as it is) of an existing connection,
    /// with no lookup kept by the packet rules (none run), answered as a
    /// [`Lane`] (no `Action` in between). [`Lane::General`], with `buf`
    /// untouched: the packet is the general path's (no connection, a
    /// client packet whose connection just expired, a SYN proxy's
    /// connection), and its lookup is kept for `process_marked` (`looked`).
    /// Why not call `process_marked` or `new_connection` from here: a second
    /// caller of `process_marked` keeps it out of line in the general path
    /// (about 20 instructions per packet there), and `new_connection` here
    /// changed this loop's code around it (established UDP NAT 777.5 ->
    /// 798.6, measured); [`Lb::lane_new`] calls it from the stack's
    /// out-of-line step for such packets instead.
    #[inline(always)]
    pub fn lane<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        eg: &E,
    ) -> Lane {
        let flags = if meta.protocol == protocol::TCP {
            meta.tcp_flags
        } else {
            0
        };
        // A packet that may start a connection takes `on_packet`'s tests
        // (connection reuse); any other, the steady update.
        let steady = meta.protocol == protocol::UDP || !proto_tcp::is_new_conn(flags);
        // The bucket alone, and the key by itself: the `HashedKey` that
        // the general path keeps is built only when the lane leaves the
        // packet to it (built first, it was stored to the stack for every
        // packet).
        let key = ConnKey::of_packet(meta);
        let bucket = self.conns.bucket_of(&key);
        let found = if let Some((id, cf)) = self.conns.lookup_in_at(bucket, &key) {
            if cf & cflags::SYNPROXY == 0 {
                let v = self.lane_update(id, Dir::In, steady, flags, now);
                match v {
                    Verdict::Forward => {
                        self.sync_note(id);
                        return self.lane_xmit_in(id, buf, meta, eg);
                    }
                    Verdict::Drop => {
                        self.drop(LbDrop::DestUnavailable);
                        return Lane::Drop;
                    }
                    // Gone: `process_marked` schedules the packet anew, as
                    // after its own `on_packet`.
                    Verdict::Expired => None,
                }
            } else {
                Some((id, Dir::In))
            }
        } else if let Some(id) = self.conns.lookup_out_at(bucket, &key) {
            if self.conns.get(id).flags() & cflags::SYNPROXY == 0 {
                let v = self.lane_update(id, Dir::Out, steady, flags, now);
                return lane_of(match v {
                    Verdict::Forward if self.conns.get(id).local().is_some() => {
                        // `xmit_out`'s FULLNAT case, without its call in between.
                        let (conns, fnat, worker) = (&mut self.conns, &self.fnat, self.worker);
                        fullnat::xmit_out(conns, fnat, id, buf, meta, worker, &self.counters)
                    }
                    Verdict::Forward => self.xmit_out(id, buf, meta, eg),
                    Verdict::Drop => self.drop(LbDrop::DestUnavailable),
                    Verdict::Expired => Action::Pass,
                });
            }
            Some((id, Dir::Out))
        } else {
            None
        };
        let key = self.conns.hashed_at(key, bucket);
        self.looked = Some(Looked::new(key, data_at(buf), found));
        Lane::General
    }

    /// [`Lb::client_endpoint`] of a whole IPv4 TCP or UDP packet from
    /// `src` to `dst` (`meta`'s addresses): no ICMP quote to look into.
    #[inline(always)]
    pub fn lane_client(&self, meta: &PacketMeta, src: Ipv4Addr, dst: Ipv4Addr) -> (Ipv4Addr, u16) {
        if self.snap.index.is_vip_v4(dst) && !masq::to_local_port(&self.snap, meta) {
            (src, meta.sport)
        } else {
            (dst, meta.dport)
        }
    }

    /// The connection's update for a packet in the lane: the steady one
    /// when the packet cannot start a connection, `on_packet` otherwise.
    #[inline(always)]
    fn lane_update(
        &mut self,
        id: crate::conn::ConnId,
        dir: Dir,
        steady: bool,
        flags: u8,
        now: u64,
    ) -> Verdict {
        if steady {
            self.conns.on_packet_steady(id, dir, flags, now)
        } else {
            self.conns.on_packet(id, dir, flags, now)
        }
    }

    /// [`Lb::process_marked`] with mark 0 for a packet [`Lb::lane`] left
    /// to the general path because it found no connection (its lookup
    /// kept in `looked`, `meta` describing `buf` as it is): its
    /// `new_connection`, answered as a [`Lane`]. [`Lane::General`], with
    /// the lookup still kept, for any other packet (a SYN proxy's
    /// connection): the general path's.
    ///
    /// `process_marked` with the lane's lookup goes the same way: the
    /// lane's packet passed its first tests (not ARP, not an ICMP error,
    /// TCP or UDP, whole), and a kept lookup that found nothing sends it
    /// to `new_connection` with the same key.
    #[inline(always)]
    pub fn lane_new<B: PacketBuf, E: Egress>(
        &mut self,
        buf: &mut B,
        meta: &PacketMeta,
        now: u64,
        eg: &E,
    ) -> Lane {
        let Some(key) = self.looked.and_then(|l| l.missed_for(data_at(buf))) else {
            return Lane::General;
        };
        self.looked = None;
        lane_of(self.new_connection(buf, meta, 0, now, eg, &key))
    }

    /// [`Lb::xmit_in`] for NAT, DR and tunnels in the lane, in line: the
    /// same statistics (counted before the transmit, as `Outbound::send`),
    /// the same MTU check and rewrite as `rewrite_in` (the tunnel's is the
    /// same function, `tunnel_in`), the same refusals (`refused`); without
    /// the general path's calls and its `Outbound`. FULLNAT goes straight
    /// to `fullnat::xmit_in`, as `xmit_in` sends it.
    #[inline(always)]
    fn lane_xmit_in<B: PacketBuf, E: Egress>(
        &mut self,
        id: crate::conn::ConnId,
        buf: &mut B,
        meta: &PacketMeta,
        eg: &E,
    ) -> Lane {
        let c = self.conns.get(id);
        let method = match c.method() {
            ForwardMethod::FullNat => {
                // `xmit_in`'s FULLNAT case, without its call in between.
                let (conns, fnat, worker) = (&mut self.conns, &self.fnat, self.worker);
                return lane_of(fullnat::xmit_in(
                    conns,
                    fnat,
                    id,
                    buf,
                    meta,
                    eg,
                    worker,
                    &self.counters,
                ));
            }
            m => *m,
        };
        let Some(dest) = c.dest() else {
            drop_counted(&self.counters, LbDrop::DestUnavailable);
            return Lane::Drop;
        };
        let (daddr, dport) = c.real();
        let daddr = daddr.to_ip();
        let len = u64::from(meta.ip_len);
        if let Some(s) = c.service() {
            s.stats.slot(self.worker).inbound(len);
        }
        dest.stats.slot(self.worker).inbound(len);
        let r = match method {
            ForwardMethod::Masq => check_mtu(meta, eg.mtu(daddr))
                .and_then(|()| nat::nat_inbound_parsed(buf, meta, daddr, dport)),
            ForwardMethod::Route => {
                check_mtu(meta, eg.mtu(daddr)).and_then(|()| dr_xmit_parsed(buf, meta))
            }
            ForwardMethod::Tunnel(cfg) => {
                tunnel_in(buf, meta, &cfg, daddr, eg, &self.settings, &mut self.ip_id)
            }
            ForwardMethod::FullNat => Err(crate::xmit::XmitError::UnsupportedProtocol),
        };
        match r {
            Ok(()) => Lane::route(daddr),
            Err(e) => lane_of(refused(&self.counters, buf, meta, e)),
        }
    }
}

/// The lane's answer for a balancer's [`Action`].
#[inline(always)]
fn lane_of(a: Action) -> Lane {
    match a {
        Action::Forward(dst) => Lane::route(dst),
        Action::Pass => Lane::Pass,
        Action::Drop(_) => Lane::Drop,
    }
}
