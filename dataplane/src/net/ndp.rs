//! IPv6 neighbour discovery (RFC 4861) and ICMPv6 echo (RFC 4443) for the
//! director's own addresses.
//!
//! * A neighbour solicitation for one of our addresses is answered with an
//!   advertisement (solicited + override, target link-layer option), sent
//!   straight back to the soliciting MAC; its source link-layer option
//!   teaches us the sender (as ARP requests do).
//! * An advertisement teaches us its target.
//! * NDP messages with a hop limit other than 255 come from off-link and
//!   are dropped (RFC 4861 7.1.1 / 7.1.2).
//! * Echo requests are answered in place and routed back.

use std::net::{IpAddr, Ipv6Addr};

use super::icmp::REPLY_TTL;
use super::stack::{Io, Stack};
use super::{Counter, Interface};
use crate::buf::PacketBuf;
use crate::wire::ethernet::{ethertype, EthernetRepr, MacAddr, HEADER_LEN};
use crate::wire::icmpv6::{kind, na_flags, ndp_option, Icmpv6Packet, NDP_HEADER_LEN};
use crate::wire::ipv4::protocol;
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::{Fragment, PacketMeta};

/// An NS or NA with one link-layer address option.
const NDP_LEN: usize = NDP_HEADER_LEN + 8;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// `ff02::1:ffXX:XXXX` for `a`.
pub(super) fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// `33:33` + the low 32 bits of a multicast address.
fn multicast_mac(a: Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

fn checked<B: PacketBuf>(buf: &B, meta: &PacketMeta) -> Result<(Ipv6Addr, Ipv6Addr), Counter> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (meta.src, meta.dst) else {
        return Err(Counter::DropMalformed);
    };
    if meta.fragment != Fragment::No {
        return Err(Counter::DropFragment);
    }
    let d = buf.data();
    let p = Icmpv6Packet::new_checked(&d[usize::from(meta.l4_offset)..meta.l3_end()])
        .map_err(|_| Counter::DropMalformed)?;
    if !p.verify_checksum(src, dst) {
        return Err(Counter::DropChecksum);
    }
    Ok((src, dst))
}

pub(super) fn input<B: PacketBuf>(
    st: &mut Stack<B>,
    port: u16,
    mut buf: B,
    meta: &PacketMeta,
    now: u64,
    io: &mut impl Io<B>,
) {
    let (src, _dst) = match checked(&buf, meta) {
        Ok(a) => a,
        Err(why) => return st.drop_buf(buf, why),
    };
    if meta.ttl != 255 {
        return st.drop_buf(buf, Counter::DropNdpHopLimit);
    }
    let Some(iface) = st.iface(port) else { return };
    let my_mac = iface.mac;
    let kernel = iface.kernel;
    let (l3, l4, end) = (
        usize::from(meta.l3_offset),
        usize::from(meta.l4_offset),
        meta.l3_end(),
    );
    let (target, ll) = {
        let p = Icmpv6Packet::new_unchecked(&buf.data()[l4..end]);
        let opt = if meta.icmp_type == kind::NEIGHBOR_SOLICIT {
            ndp_option::SOURCE_LL_ADDR
        } else {
            ndp_option::TARGET_LL_ADDR
        };
        match (p.ndp_target(), p.ndp_lladdr(opt)) {
            (Some(t), Ok(ll)) => (t, ll),
            (_, Err(e)) => {
                st.counters().parse_error(e);
                return;
            }
            (None, _) => return st.drop_buf(buf, Counter::DropMalformed),
        }
    };
    if meta.icmp_type == kind::NEIGHBOR_ADVERT {
        if let Some(mac) = ll {
            if iface.on_link(IpAddr::V6(target)) || target.is_unicast_link_local() {
                st.learn(IpAddr::V6(target), port, mac, now, io);
                io.share(port, buf.data());
            }
        }
        // The kernel may have asked too (its own next hops).
        if kernel {
            return st.except(io, port, buf);
        }
        return st.drop_buf(buf, Counter::ConsumedNeighbor);
    }
    // A solicitation.
    if !st.answers_for(iface, IpAddr::V6(target)) {
        // Link-local targets are the kernel interface's (uvsd has none).
        if kernel && target.is_unicast_link_local() {
            return st.except(io, port, buf);
        }
        return st.drop_buf(buf, Counter::DropIcmp6Other);
    }
    let dad = src.is_unspecified();
    if let (false, Some(mac)) = (dad, ll) {
        st.learn(IpAddr::V6(src), port, mac, now, io);
    }
    let peer_mac = MacAddr::from_slice(&buf.data()[6..12]).unwrap_or(MacAddr::BROADCAST);
    let want = l3 + ipv6::HEADER_LEN + NDP_LEN;
    let have = buf.len();
    let resized = if have < want {
        buf.append(want - have)
    } else {
        buf.trim(have - want)
    };
    if !resized {
        return st.drop_buf(buf, Counter::DropNoBuffer);
    }
    let reply_dst = if dad { ALL_NODES } else { src };
    let d = buf.data_mut();
    let eth = EthernetRepr {
        src: my_mac,
        dst: if dad {
            multicast_mac(ALL_NODES)
        } else {
            peer_mac
        },
        vlan_tci: None,
        ethertype: ethertype::IPV6,
    };
    let ip = Ipv6Repr {
        src: target,
        dst: reply_dst,
        next_header: protocol::ICMPV6,
        payload_len: NDP_LEN as u16,
        hop_limit: 255,
        traffic_class: 0,
    };
    if eth.emit(d).is_err() || ip.emit(&mut d[l3..]).is_err() {
        return st.drop_buf(buf, Counter::DropMalformed);
    }
    let flags = if dad {
        na_flags::OVERRIDE
    } else {
        na_flags::SOLICITED | na_flags::OVERRIDE
    };
    write_ndp(
        &mut d[l3 + ipv6::HEADER_LEN..],
        kind::NEIGHBOR_ADVERT,
        u32::from(flags) << 24,
        target,
        ndp_option::TARGET_LL_ADDR,
        my_mac,
    );
    let mut p = Icmpv6Packet::new_unchecked(&mut d[l3 + ipv6::HEADER_LEN..]);
    p.fill_checksum(target, reply_dst);
    st.counters().inc(Counter::NdpAdvertised);
    st.tx(io, port, buf);
}

/// Writes an NS/NA body (checksum 0) with one link-layer option.
fn write_ndp(b: &mut [u8], msg_type: u8, rest: u32, target: Ipv6Addr, opt: u8, mac: MacAddr) {
    let mut p = Icmpv6Packet::new_unchecked(&mut b[..NDP_LEN]);
    p.set_msg_type(msg_type);
    p.set_msg_code(0);
    p.set_checksum(0);
    p.set_rest_of_header(rest);
    p.set_ndp_target(target);
    let o = &mut b[NDP_HEADER_LEN..NDP_LEN];
    o[0] = opt;
    o[1] = 1;
    o[2..8].copy_from_slice(&mac.0);
}

/// Answers an ICMPv6 echo request to one of our addresses.
pub(super) fn echo<B: PacketBuf>(
    st: &mut Stack<B>,
    mut buf: B,
    meta: &PacketMeta,
    now: u64,
    io: &mut impl Io<B>,
) {
    let (src, dst) = match checked(&buf, meta) {
        Ok(a) => a,
        Err(why) => return st.drop_buf(buf, why),
    };
    if meta.icmp_type != kind::ECHO_REQUEST || meta.icmp_code != 0 {
        return st.drop_buf(buf, Counter::DropIcmp6Other);
    }
    let (l3, l4, end) = (
        usize::from(meta.l3_offset),
        usize::from(meta.l4_offset),
        meta.l3_end(),
    );
    {
        let d = buf.data_mut();
        let mut ip = Ipv6Packet::new_unchecked(&mut d[l3..end]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(REPLY_TTL);
        let mut p = Icmpv6Packet::new_unchecked(&mut d[l4..end]);
        p.set_msg_type(kind::ECHO_REPLY);
        p.fill_checksum(dst, src);
    }
    let pad = buf.len() - end;
    buf.trim(pad);
    st.counters().inc(Counter::Icmp6EchoReplied);
    st.send_ip(buf, IpAddr::V6(src), now, io);
}

/// Fills the empty `buf` with a solicitation for `target` from `iface`.
pub(super) fn build_solicitation<B: PacketBuf>(
    buf: &mut B,
    iface: &Interface,
    target: Ipv6Addr,
) -> bool {
    let Some(src) = iface.v6_source(target) else {
        return false;
    };
    let len = HEADER_LEN + ipv6::HEADER_LEN + NDP_LEN;
    if !buf.append(len) {
        return false;
    }
    let group = solicited_node(target);
    let d = buf.data_mut();
    let eth = EthernetRepr {
        src: iface.mac,
        dst: multicast_mac(group),
        vlan_tci: None,
        ethertype: ethertype::IPV6,
    };
    let ip = Ipv6Repr {
        src,
        dst: group,
        next_header: protocol::ICMPV6,
        payload_len: NDP_LEN as u16,
        hop_limit: 255,
        traffic_class: 0,
    };
    if eth.emit(d).is_err() || ip.emit(&mut d[HEADER_LEN..]).is_err() {
        return false;
    }
    let body = &mut d[HEADER_LEN + ipv6::HEADER_LEN..];
    write_ndp(
        body,
        kind::NEIGHBOR_SOLICIT,
        0,
        target,
        ndp_option::SOURCE_LL_ADDR,
        iface.mac,
    );
    Icmpv6Packet::new_unchecked(&mut body[..NDP_LEN]).fill_checksum(src, group);
    true
}

/// Fills the empty `buf` with an unsolicited neighbour advertisement of
/// `target` from `iface` (RFC 4861 7.2.6): to all nodes, override set,
/// solicited clear, with the port's MAC as target link-layer address, so
/// that neighbours that know `target` move it to this port.
pub(super) fn build_unsolicited<B: PacketBuf>(
    buf: &mut B,
    iface: &Interface,
    target: Ipv6Addr,
) -> bool {
    let len = HEADER_LEN + ipv6::HEADER_LEN + NDP_LEN;
    if !buf.append(len) {
        return false;
    }
    let d = buf.data_mut();
    let eth = EthernetRepr {
        src: iface.mac,
        dst: multicast_mac(ALL_NODES),
        vlan_tci: None,
        ethertype: ethertype::IPV6,
    };
    let ip = Ipv6Repr {
        src: target,
        dst: ALL_NODES,
        next_header: protocol::ICMPV6,
        payload_len: NDP_LEN as u16,
        hop_limit: 255,
        traffic_class: 0,
    };
    if eth.emit(d).is_err() || ip.emit(&mut d[HEADER_LEN..]).is_err() {
        return false;
    }
    let body = &mut d[HEADER_LEN + ipv6::HEADER_LEN..];
    write_ndp(
        body,
        kind::NEIGHBOR_ADVERT,
        u32::from(na_flags::OVERRIDE) << 24,
        target,
        ndp_option::TARGET_LL_ADDR,
        iface.mac,
    );
    Icmpv6Packet::new_unchecked(&mut body[..NDP_LEN]).fill_checksum(target, ALL_NODES);
    true
}
