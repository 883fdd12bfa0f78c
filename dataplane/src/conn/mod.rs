//! The connection table: one per worker, no locks.
//!
//! Why it looks like this: a director's per-packet work is one lookup in
//! this table, one state transition and one timer re-arm, and at 10 M
//! connections the table is most of the daemon's memory. So entries live in
//! one slab allocated at start-up and are named by `u32` ([`ConnId`]); each
//! entry sits in two chained hash indexes (inbound and NAT-reply) whose
//! buckets and chain links are `u32`s, and in a hashed timer wheel
//! ([`timer`]) through `u32` links stored in the entry. Nothing allocates
//! after [`ConnTable::new`]. Memory per connection is reported by
//! [`ConnTable::memory_bytes`] (slab + both bucket arrays + wheel heads).
//!
//! Semantics follow Linux IPVS (reference 4.1-4.9): TCP state tables
//! ([`proto_tcp`]), UDP's single state ([`proto_udp`]), SCTP's state
//! tables ([`proto_sctp`]), active/inactive/
//! persistent accounting and `-x`/`-y` thresholds on the shared
//! [`DestShared`](crate::model::DestShared) atomics, persistence templates
//! ([`persist`]), deleted destinations, `conn_reuse_mode`.
//!
//! # What the engine calls
//! Time is an injected clock: `now` is milliseconds from any fixed origin,
//! passed to every call (tests drive it by hand).
//!
//! Per packet (no allocation, no lock; counter updates are relaxed atomics):
//! * [`ConnTable::lookup_in`]`(&ConnKey::new(proto, client, cport, vaddr,
//!   vport)) -> Option<ConnId>` for client packets;
//!   [`ConnTable::lookup_out`]`(&ConnKey::new(proto, daddr, dport, client,
//!   cport))` for NAT replies. ICMP errors look up the embedded header the
//!   same way and do not call `on_packet` (ICMP never has entries).
//!   At millions of entries a lookup is memory latency: the worker warms
//!   each packet's lookup a few packets ahead of it
//!   (`ConnTable::prefetch_bucket`, `warm_head`, `warm_second`, from
//!   `Lb::warm_parsed` and `Lb::warm_next`), so the misses overlap the
//!   work on the packets before it; a caller that wants the
//!   answers of a batch has [`ConnTable::lookup_in_batch`] /
//!   [`ConnTable::lookup_out_batch`] (see `bench/CONNTRACK.md`).
//! * [`ConnTable::on_packet`]`(id, dir, tcp_flags, now) -> Verdict` (SCTP:
//!   the packet's [`proto_sctp::event`] in place of the flags): applies
//!   `conn_reuse_mode` and deleted-destination rules, runs the state machine,
//!   moves the active/inactive counters, marks the template ASSURED and
//!   re-arms the timer. [`Verdict::Expired`] means the entry is gone: treat
//!   the packet as having no connection (schedule it if it can start one,
//!   else drop it). [`Verdict::Drop`] means drop silently (destination
//!   deleted, `expire_nodest_conn=0`).
//! * For a packet without an entry that may start one
//!   ([`proto_tcp::is_new_conn`], any UDP): for persistent services
//!   [`persist::template_key`] then [`ConnTable::find_template`] (valid ->
//!   reuse its destination) or, after scheduling,
//!   [`ConnTable::create_template`]; then [`ConnTable::create`] with
//!   `control: Some(template)`, which binds the destination, runs the first
//!   packet through the state machine and re-arms the template.
//!   One-packet (`-o`) UDP flows are never inserted: call
//!   [`ConnTable::one_packet`] instead (bind and release around the packet).
//! * [`ConnTable::get`]`(id) -> &Conn` for the rewrite (addresses, ports,
//!   forwarding method, destination, service).
//!
//! The only per-packet work that is not a plain load/store: relaxed atomic
//! read-modify-writes on the destination's counters at state changes, and
//! dropping the last `Arc` of a deleted destination when its last entry is
//! freed (a deallocation, once per deleted destination).
//!
//! Between bursts: [`ConnTable::expire`]`(now, max)` frees at most `max` due
//! entries (templates still controlling connections are re-armed with 60 s).
//! Control path: [`ConnTable::set_timeouts`], [`ConnTable::set_sysctls`],
//! [`ConnTable::len`], [`ConnTable::iter_entries`] (rows of `ipvsadm -L -c`),
//! [`ConnTable::flush_unavailable`] (`expire_nodest_conn=1` after a delete).

pub mod persist;
pub mod proto_sctp;
pub mod proto_tcp;
pub mod proto_udp;
pub mod sctp_fuzz;
pub mod shared;
pub mod table;
pub mod timer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_defense;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use table::{Conn, ConnTable, CreateError, NewConn, RandomDrop};

/// IP protocol number of fwmark templates ("IP" in listings).
pub const IPPROTO_IP: u8 = 0;

/// An IPv4 or IPv6 address in 16 bytes: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ConnAddr(pub [u8; 16]);

impl ConnAddr {
    pub const fn from_v4(a: [u8; 4]) -> ConnAddr {
        // One 128-bit value rather than byte stores: `::ffff:a.b.c.d`.
        let v = 0xffff_0000_0000u128 | u32::from_be_bytes(a) as u128;
        ConnAddr(v.to_be_bytes())
    }

    pub const fn from_v6(a: [u8; 16]) -> ConnAddr {
        ConnAddr(a)
    }

    /// Whether this is an IPv4 (mapped) address.
    pub fn is_v4(&self) -> bool {
        u128::from_be_bytes(self.0) >> 32 == 0xffff
    }

    pub fn to_ip(&self) -> IpAddr {
        let v = u128::from_be_bytes(self.0);
        if v >> 32 == 0xffff {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }

    fn words(&self) -> (u64, u64) {
        let (a, b) = self.0.split_at(8);
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x.copy_from_slice(a);
        y.copy_from_slice(b);
        (u64::from_ne_bytes(x), u64::from_ne_bytes(y))
    }
}

impl From<IpAddr> for ConnAddr {
    fn from(a: IpAddr) -> ConnAddr {
        match a {
            IpAddr::V4(v) => ConnAddr::from_v4(v.octets()),
            IpAddr::V6(v) => ConnAddr::from_v6(v.octets()),
        }
    }
}

/// A lookup key: inbound `(proto, client, cport, vaddr, vport)` or
/// NAT-reply `(proto, daddr, dport, client, cport)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub proto: u8,
    pub src: ConnAddr,
    pub sport: u16,
    pub dst: ConnAddr,
    pub dport: u16,
}

impl ConnKey {
    pub fn new(proto: u8, src: ConnAddr, sport: u16, dst: ConnAddr, dport: u16) -> ConnKey {
        ConnKey {
            proto,
            src,
            sport,
            dst,
            dport,
        }
    }

    /// The key of a TCP/UDP/SCTP packet as it travels (its source first).
    #[inline]
    pub fn of_packet(meta: &crate::wire::PacketMeta) -> ConnKey {
        ConnKey::new(
            meta.protocol,
            ConnAddr::from(meta.src),
            meta.sport,
            ConnAddr::from(meta.dst),
            meta.dport,
        )
    }

    /// The key of the packets answering the one an ICMP error quotes: the
    /// error travels against the quoted packet, so the quote's reverse is
    /// the direction of the error itself.
    pub fn answering_quote(q: &crate::wire::IcmpQuote) -> ConnKey {
        ConnKey::new(
            q.protocol,
            ConnAddr::from(q.dst),
            q.dport,
            ConnAddr::from(q.src),
            q.sport,
        )
    }
}

/// Names an entry of one worker's table. Valid until the entry is freed
/// (by `expire`, or by `on_packet` returning [`Verdict::Expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Direction of a packet relative to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server (the inbound key matched).
    In,
    /// Server to client through the director (the NAT-reply key matched).
    Out,
}

/// What to do with a packet of an existing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it along the connection.
    Forward,
    /// Drop it silently: the destination was deleted and
    /// `expire_nodest_conn` is 0; the entry lives on until its timeout.
    Drop,
    /// The entry was expired (conn_reuse_mode, or a deleted/quiesced
    /// destination with `expire_nodest_conn=1`) and is gone: handle the
    /// packet as one without a connection.
    Expired,
}

/// The table's switches, from the IPVS tunables (reference 4.8/4.10;
/// [`crate::tunables`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctls {
    /// `expire_nodest_conn` (default false).
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template` (default false).
    pub expire_quiescent_template: bool,
    /// `conn_reuse_mode` bits: 1 = TIME_WAIT/CLOSE, 2 = also FIN_WAIT for
    /// non-NAT (default 1).
    pub conn_reuse_mode: u8,
    /// The `secure_tcp` table in force (mode 3, or 1/2 while the worker
    /// is short of entries: decided by `lb::Defense`; default false).
    pub secure_tcp: bool,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            conn_reuse_mode: 1,
            secure_tcp: false,
        }
    }
}
