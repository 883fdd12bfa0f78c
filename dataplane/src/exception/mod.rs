//! The exception path: the director's own traffic between its DPDK ports
//! and the Linux kernel.
//!
//! Why: a director whose NICs belong to DPDK still has a life of its own on
//! them — SSH to its address, BGP sessions, VRRP adverts, health-check
//! replies, connection sync. None of that is load balancing, and all of it
//! is best left to the kernel and its ordinary daemons (sshd, bird,
//! keepalived). So a port may have a *kernel interface* (`kernel = "uvs0"`
//! on its `[[port]]`): a TAP in uvsd's network namespace with the port's
//! MAC, MTU and addresses, up while the port is.
//!
//! What goes to the kernel ([`classify`], called by the stack only for
//! frames the load balancer passed back and that the port would otherwise
//! drop or answer itself):
//! * IP to one of the director's addresses that uvsd does not handle
//!   itself: any protocol, TCP/UDP to a port that is not a service, ICMP
//!   echo (a Linux host answers ping, so the kernel does; VIPs that are not
//!   the director's addresses stay answered by uvsd), ICMP errors unless
//!   they quote a service's packet.
//! * Multicast and broadcast IP (VRRP's 224.0.0.18, ff02::12, OSPF, DHCP),
//!   and unicast to an IPv6 link-local address (the kernel's own; uvsd has
//!   none).
//! * Neighbour traffic the kernel needs to resolve its own next hops: ARP
//!   replies and neighbour advertisements (after uvsd learned them too),
//!   and solicitations for link-local targets (which uvsd does not
//!   answer). ARP requests and solicitations for the director's addresses
//!   stay uvsd's: it answers them, and the kernel would answer the same.
//!
//! Never: traffic of a service. A TCP/UDP packet to a VIP:port that has a
//! service, or an ICMP error quoting one, is the load balancer's even when
//! it dropped it (no connection, a deleted destination); it is never handed
//! to the kernel, whatever address the VIP shares.
//!
//! What the kernel sends out of its interface leaves by the port as it is
//! (the kernel routed it and resolved its neighbour itself).
//!
//! How, without a syscall on a worker: the worker puts excepted frames into
//! a bounded single-producer ring of its own (full: counted as
//! `drop_kernel_full`, never waited for), and one exception thread — not a
//! worker lcore — drains those rings into the TAPs ([`kernel`]). What the
//! kernels send, the thread puts into a second bounded ring per worker
//! (full: counted as `drop_from_kernel`), and each worker sends at most one
//! burst of it per turn on its own tx queue of the port: a kernel that
//! floods its interface costs the thread its syscalls and a worker no more
//! than a burst per turn. Traffic that is not excepted pays one empty-ring
//! check per turn; the decision itself is taken only on the stack's "not
//! for the load balancer" branch.

#[cfg(feature = "dpdk")]
pub mod kernel;
#[cfg(feature = "dpdk")]
pub mod netlink;

use std::net::IpAddr;

use crate::net::Interface;
use crate::wire::ipv4::protocol;
use crate::wire::{parse_icmp_quote, Fragment, PacketMeta, L3};

/// Where a packet the load balancer passed back goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the receiving port's kernel interface.
    Kernel,
    /// A service's packet: stays with uvsd (which drops it).
    Service,
    /// Not the kernel's business: uvsd handles or drops it as without a
    /// kernel interface.
    Uvsd,
}

/// Where the IP packet `meta` describes (`frame` is the whole frame, for
/// quotes of ICMP errors) goes, once the load balancer passed it back and
/// it arrived on `iface`, which has a kernel interface. `local` says
/// whether an address is one of the director's (on any port, as Linux
/// accepts its addresses on any interface); `serves` whether a
/// protocol, address and port is a virtual service.
pub fn classify(
    iface: &Interface,
    meta: &PacketMeta,
    frame: &[u8],
    local: impl Fn(IpAddr) -> bool,
    serves: impl Fn(u8, IpAddr, u16) -> bool,
) -> Destination {
    if !matches!(meta.l3, L3::Ipv4 | L3::Ipv6) {
        return Destination::Uvsd;
    }
    if meta.dst.is_multicast() || is_broadcast(iface, meta.dst) || is_link_local(meta.dst) {
        return Destination::Kernel;
    }
    if !local(meta.dst) {
        return Destination::Uvsd;
    }
    let proto = meta.protocol;
    if (proto == protocol::TCP || proto == protocol::UDP)
        && meta.fragment != Fragment::Later
        && serves(proto, meta.dst, meta.dport)
    {
        return Destination::Service;
    }
    if meta.is_icmp_error() {
        if let Ok(q) = parse_icmp_quote(frame, meta) {
            // The quote is a packet the director sent: from a service, it
            // belongs to a connection the load balancer no longer knows.
            if (q.protocol == protocol::TCP || q.protocol == protocol::UDP)
                && serves(q.protocol, q.src, q.sport)
            {
                return Destination::Service;
            }
        }
    }
    Destination::Kernel
}

/// The IPv4 limited broadcast, or the directed broadcast of one of the
/// port's prefixes (shorter than /31).
fn is_broadcast(iface: &Interface, dst: IpAddr) -> bool {
    let IpAddr::V4(d) = dst else { return false };
    if d.is_broadcast() {
        return true;
    }
    iface.addrs.iter().any(|p| match p.addr {
        IpAddr::V4(a) if p.len < 31 => {
            let host = u32::MAX >> p.len;
            p.contains(dst) && u32::from(d) & host == host && u32::from(a) & host != host
        }
        _ => false,
    })
}

/// Unicast IPv6 link-local (fe80::/10).
fn is_link_local(dst: IpAddr) -> bool {
    matches!(dst, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

#[cfg(test)]
mod tests;
