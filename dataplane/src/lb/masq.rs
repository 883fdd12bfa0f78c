//! kube-proxy's masquerading of IPVS connections: the nat chains decide,
//! for a NAT (`-m`) connection's first packet, whether the real server
//! sees the director's address as the source.
//!
//! Why: kube-proxy's IPVS mode marks service packets in `nat PREROUTING`
//! (KUBE-MARK-MASQ) and masquerades the marked ones, and a pod reaching
//! itself through its service (KUBE-LOOP-BACK), in `nat POSTROUTING`. On
//! Linux (`net.ipv4.vs.conntrack=1`) the packet IPVS has rewritten to the
//! pod walks POSTROUTING and conntrack's source NAT is added to IPVS's
//! destination NAT, so the pod answers the node, which undoes both. UVS
//! does the same with FULLNAT ([`super::fullnat`]): a connection the rules
//! masquerade is created as a FULLNAT connection whose local address is
//! the address MASQUERADE would use (the director's source toward the real
//! server; SNAT's `--to-source` address), its port from the worker's own
//! pool of that address. The control plane makes every port address a
//! local address while a nat rule masquerades (see
//! [`crate::config::ConfigStore::ensure_local`]), so the pools exist
//! before traffic. As conntrack, the decision is taken once per
//! connection and kept; later packets never walk the nat chains.

use std::net::IpAddr;

use crate::model::Snapshot;
use crate::rules::NO_PORT;
use crate::snat::{nat_packet, NatFacts};
use crate::wire::PacketMeta;

/// Why a connection the rules masquerade cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NoLocal;

/// The local address (its number in [`Snapshot::locals`]) for a new
/// connection of `meta` (arriving with `mark`) to real server
/// `daddr:dport`, from the director's address `out` toward it: `Ok(None)`
/// when the nat rules do not masquerade it.
#[inline(never)]
pub(super) fn masquerade(
    snap: &Snapshot,
    meta: &PacketMeta,
    mark: u32,
    daddr: IpAddr,
    dport: u16,
    out: Option<IpAddr>,
    worker: usize,
) -> Result<Option<u16>, NoLocal> {
    let nat = &snap.nat;
    let local = |a: &IpAddr| snap.index.is_vip(a) || snap.locals.iter().any(|l| l.addr == *a);
    let len = u32::from(meta.ip_len);
    // nat PREROUTING sees the packet as it came (to the virtual service).
    let (pkt, set) = nat_packet(
        meta.protocol,
        meta.src,
        meta.sport,
        meta.dst,
        meta.dport,
        true,
        len,
        NO_PORT,
    );
    let facts = NatFacts {
        sets: &snap.sets,
        pkt: set,
        local: &local,
    };
    let mark = nat.prerouting(&pkt, &facts, mark, worker);
    // nat POSTROUTING sees it after IPVS's rewrite: to the real server.
    let (pkt, set) = nat_packet(
        meta.protocol,
        meta.src,
        meta.sport,
        daddr,
        dport,
        true,
        len,
        NO_PORT,
    );
    let facts = NatFacts {
        sets: &snap.sets,
        pkt: set,
        local: &local,
    };
    let Some(t) = nat.postrouting(&pkt, &facts, mark, worker) else {
        return Ok(None);
    };
    let addr = match (t.addrs, out) {
        (Some((a, _)), _) => a,
        (None, Some(a)) => a,
        (None, None) => return Err(NoLocal),
    };
    snap.locals
        .iter()
        .find(|l| l.addr == addr)
        .map(|l| Some(l.id))
        .ok_or(NoLocal)
}

/// Whether a packet to a virtual service address is in fact a real
/// server's reply to a masqueraded connection: the address is also a
/// local address (a port address while a nat rule masquerades, which is a
/// virtual service address too when a NodePort lives on it) and no
/// service listens on its port. Such a reply is owned by its destination
/// endpoint, as every FULLNAT reply ([`super::Lb::client_endpoint`]).
/// One test per packet, in line, when no nat rule exists: out of line it
/// cost the fast lane's ownership test 26 instructions per call.
#[inline(always)]
pub(super) fn to_local_port(snap: &Snapshot, meta: &PacketMeta) -> bool {
    !snap.nat.is_empty() && to_local_port_with_nat(snap, meta)
}

/// [`to_local_port`] once a nat rule exists.
#[inline(never)]
fn to_local_port_with_nat(snap: &Snapshot, meta: &PacketMeta) -> bool {
    snap.locals.iter().any(|l| l.addr == meta.dst)
        && snap
            .index
            .find(meta.protocol, &meta.dst, meta.dport)
            .is_none()
}
