//! ARP (RFC 826) for IPv4 over Ethernet: answer requests for our
//! addresses, learn on-link senders, ask for next hops.
//!
//! Learning follows Linux: a request for one of our addresses and any
//! reply teach us the sender, but only when the sender is on one of the
//! port's connected prefixes (a neighbour we could ever send to).

use std::net::{IpAddr, Ipv4Addr};

use super::stack::{Io, Stack};
use super::{Counter, Interface};
use crate::buf::PacketBuf;
use crate::wire::arp::{self, op, ArpPacket, ArpRepr};
use crate::wire::ethernet::{ethertype, EthernetRepr, MacAddr, HEADER_LEN};
use crate::wire::PacketMeta;

/// Minimum Ethernet frame without FCS; requests we build are padded to it.
const MIN_FRAME: usize = 60;

pub(super) fn input<B: PacketBuf>(
    st: &mut Stack<B>,
    port: u16,
    mut buf: B,
    meta: &PacketMeta,
    now: u64,
    io: &mut impl Io<B>,
) {
    let l3 = usize::from(meta.l3_offset);
    let Some(iface) = st.iface(port) else { return };
    let my_mac = iface.mac;
    let kernel = iface.kernel;
    let Ok(p) = ArpPacket::new_checked(&buf.data()[l3..]) else {
        return st.drop_buf(buf, Counter::DropMalformed);
    };
    let req = ArpRepr::parse(&p);
    let sender = IpAddr::V4(req.sender_ip);
    let sender_ok = !req.sender_ip.is_unspecified() && iface.on_link(sender);
    let for_us = st.answers_for(iface, IpAddr::V4(req.target_ip));
    match req.operation {
        op::REQUEST if for_us => {
            if sender_ok {
                st.learn(sender, port, req.sender_hw, now, io);
            }
            let reply = ArpRepr {
                operation: op::REPLY,
                sender_hw: my_mac,
                sender_ip: req.target_ip,
                target_hw: req.sender_hw,
                target_ip: req.sender_ip,
            };
            let eth = EthernetRepr {
                src: my_mac,
                dst: req.sender_hw,
                vlan_tci: None,
                ethertype: ethertype::ARP,
            };
            let d = buf.data_mut();
            if eth.emit(d).is_err() || reply.emit(&mut d[l3..]).is_err() {
                return st.drop_buf(buf, Counter::DropMalformed);
            }
            st.counters().inc(Counter::ArpReplied);
            st.tx(io, port, buf);
        }
        op::REPLY if sender_ok => {
            st.learn(sender, port, req.sender_hw, now, io);
            io.share(port, buf.data());
            // The kernel may have asked too (its own next hops).
            if kernel {
                st.except(io, port, buf);
            } else {
                st.drop_buf(buf, Counter::ConsumedNeighbor);
            }
        }
        _ => st.drop_buf(buf, Counter::DropArpOther),
    }
}

/// Fills the empty `buf` with a broadcast "who has `target`" from `iface`.
pub(super) fn build_request<B: PacketBuf>(
    buf: &mut B,
    iface: &Interface,
    target: Ipv4Addr,
) -> bool {
    match iface.v4_source(target) {
        Some(src) => build_broadcast_request(buf, iface, src, target),
        None => false,
    }
}

/// Fills the empty `buf` with a gratuitous ARP for `addr` from `iface`: a
/// broadcast request whose sender and target are both `addr` (RFC 5227
/// 3: an ARP announcement), so that every host on the segment that knows
/// `addr` moves it to this port's MAC.
pub(super) fn build_gratuitous<B: PacketBuf>(
    buf: &mut B,
    iface: &Interface,
    addr: Ipv4Addr,
) -> bool {
    build_broadcast_request(buf, iface, addr, addr)
}

/// Fills the empty `buf` with a broadcast ARP request from `iface`'s MAC
/// and `sender` for `target` (a resolution, or with both equal an
/// announcement).
fn build_broadcast_request<B: PacketBuf>(
    buf: &mut B,
    iface: &Interface,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    if !buf.append(MIN_FRAME) {
        return false;
    }
    let d = buf.data_mut();
    d.fill(0);
    let eth = EthernetRepr {
        src: iface.mac,
        dst: MacAddr::BROADCAST,
        vlan_tci: None,
        ethertype: ethertype::ARP,
    };
    let req = ArpRepr {
        operation: op::REQUEST,
        sender_hw: iface.mac,
        sender_ip: sender,
        target_hw: MacAddr([0; 6]),
        target_ip: target,
    };
    eth.emit(d).is_ok()
        && req
            .emit(&mut d[HEADER_LEN..HEADER_LEN + arp::PACKET_LEN])
            .is_ok()
}
