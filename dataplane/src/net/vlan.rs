//! 802.1Q VLANs on a port: each VLAN is a logical interface of the stack.
//!
//! Why logical interfaces: the usual appliance has one NIC carrying a
//! client VLAN and a server VLAN, each with its own addresses, connected
//! prefixes, neighbours and routes. The stack already keys all of that by
//! interface id (the `port` of [`super::Interface`], of a route, of a
//! neighbour entry), so a VLAN becomes one more interface with an id of its
//! own, and everything above L2 (ARP, NDP, routing, the load balancer,
//! NAT and DR across VLANs) works on it unchanged.
//!
//! Why the id encodes the VLAN: the id of VLAN `v` on DPDK port `p` is
//! `0x8000 | p << 12 | v` ([`iface_id`]), so turning a received tag into
//! an interface id and an interface id back into the port and tag to send
//! with ([`split`]) is arithmetic, with no table to look up, to keep in
//! step between workers or to reload. The price: VLANs only on DPDK ports
//! 0 to 7 (the director drives at most 8 ports) and ids 1 to 4094.
//!
//! Per packet: a tagged frame is untagged on input ([`untag`]: the MAC
//! addresses move 4 bytes up and the buffer starts 4 bytes later, nothing
//! is allocated) and handed to the stack as received on the VLAN's
//! interface; a frame the stack sends on a VLAN interface gets its tag on
//! output ([`tag`]: 4 bytes of headroom, MACs moved down). Which VLAN a
//! packet leaves on is decided by the route of its next hop, like the port
//! without VLANs. Frames with a tag of an unconfigured VLAN are dropped
//! and counted (`drop_unknown_vlan`); 802.1ad (QinQ, TPID 0x88a8) frames
//! are dropped and counted as `drop_vlan_tagged`, as are tagged frames on
//! a port with no VLAN at all. A priority tag (VLAN id 0, 802.1p) belongs
//! to the port itself. The priority bits of a received tag are not kept:
//! frames leave with priority 0.

use crate::buf::PacketBuf;
use crate::wire::ethernet::ethertype;

use super::stack::{Io, Stack};
use super::{Counter, Stage};

/// Set in every VLAN interface id; DPDK port ids never reach it.
const VLAN_BIT: u16 = 0x8000;
/// The highest DPDK port id that can carry VLANs.
pub const MAX_VLAN_PORT: u16 = 7;
/// The highest usable VLAN id (4095 is reserved).
pub const MAX_VLAN_ID: u16 = 4094;
/// Bytes of one 802.1Q tag.
pub const TAG_LEN: usize = 4;

/// The interface id of VLAN `vid` on DPDK port `port`; `None` if `port` or
/// `vid` is out of range (port above [`MAX_VLAN_PORT`], vid 0 or above
/// [`MAX_VLAN_ID`]).
#[inline]
pub const fn iface_id(port: u16, vid: u16) -> Option<u16> {
    if port > MAX_VLAN_PORT || vid == 0 || vid > MAX_VLAN_ID {
        return None;
    }
    Some(VLAN_BIT | port << 12 | vid)
}

/// The DPDK port and VLAN id of a VLAN interface id; `None` for a port's
/// own (untagged) id.
#[inline]
pub const fn split(iface: u16) -> Option<(u16, u16)> {
    if iface & VLAN_BIT == 0 {
        return None;
    }
    Some(((iface >> 12) & 0x7, iface & 0x0fff))
}

/// Where a tagged frame received on `rx_port` belongs: the interface id it
/// is untagged for (the VLAN's, or the port's own for a priority tag), or
/// the reason to drop it. `known` says whether an interface id is
/// configured. `rx_port` is a VLAN interface id when the frame carried
/// two tags: dropped.
#[inline]
pub fn ingress(rx_port: u16, frame: &[u8], known: impl Fn(u16) -> bool) -> Result<u16, Counter> {
    // A second tag inside a VLAN's frame: stacked tags are not ours.
    if split(rx_port).is_some()
        || frame.len() < 18
        || u16::from_be_bytes([frame[12], frame[13]]) != ethertype::VLAN
    {
        return Err(Counter::DropVlan);
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    if vid == 0 {
        return Ok(rx_port);
    }
    match iface_id(rx_port, vid) {
        Some(id) if known(id) => Ok(id),
        _ => Err(Counter::DropUnknownVlan),
    }
}

/// A tagged frame received on `rx_port`: untagged and handed to the stack
/// as received on its VLAN's interface, or counted and dropped.
pub(super) fn input<B: PacketBuf>(
    st: &mut Stack<B>,
    rx_port: u16,
    mut buf: B,
    now: u64,
    io: &mut impl Io<B>,
    stage: &mut impl Stage<B>,
) {
    match ingress(rx_port, buf.data(), |id| st.iface(id).is_some()) {
        Ok(iface) if untag(&mut buf) => st.input(iface, buf, now, io, stage),
        Ok(_) => {
            st.counters().inc(Counter::Rx);
            st.drop_buf(buf, Counter::DropMalformed)
        }
        Err(why) => {
            st.counters().inc(Counter::Rx);
            st.drop_buf(buf, why)
        }
    }
}

/// Removes the 802.1Q tag behind the MAC addresses of `buf` (which must be
/// tagged: see [`ingress`]) in place.
#[inline]
pub fn untag<B: PacketBuf>(buf: &mut B) -> bool {
    if buf.len() < 12 + TAG_LEN + 2 {
        return false;
    }
    buf.data_mut().copy_within(0..12, TAG_LEN);
    buf.adj(TAG_LEN)
}

/// Makes the untagged frame in `buf` leave on interface `iface`: tags it
/// with the VLAN of a VLAN interface and returns the DPDK port to send it
/// on (`iface` itself for a port's own id). `None` if the buffer has no
/// headroom for the tag (nothing changed). Always inlined: for a port's
/// own id (every frame, without VLANs) it is one test; the tagging itself
/// is out of line ([`tag_vlan`]).
#[inline(always)]
pub fn tag<B: PacketBuf>(iface: u16, buf: &mut B) -> Option<u16> {
    match split(iface) {
        None => Some(iface),
        Some((port, vid)) => tag_vlan(port, vid, buf),
    }
}

/// [`tag`] for a VLAN interface: `vid` on port `port`.
#[inline(never)]
fn tag_vlan<B: PacketBuf>(port: u16, vid: u16, buf: &mut B) -> Option<u16> {
    if buf.len() < 14 || !buf.prepend(TAG_LEN) {
        return None;
    }
    let d = buf.data_mut();
    d.copy_within(TAG_LEN..TAG_LEN + 12, 0);
    d[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    d[14..16].copy_from_slice(&vid.to_be_bytes());
    Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::TestBuf;
    use proptest::prelude::*;

    const UNTAGGED: [u8; 16] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0x00];
    /// VLAN 10 (priority 0) on the same frame.
    const TAGGED_10: [u8; 20] = [
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00, 0x45, 0x00,
    ];

    #[test]
    fn ids_encode_port_and_vlan_and_never_collide_with_ports() {
        assert_eq!(iface_id(0, 10), Some(0x800a));
        assert_eq!(iface_id(3, 4094), Some(0xbffe));
        assert_eq!(split(0x800a), Some((0, 10)));
        assert_eq!(split(0xbffe), Some((3, 4094)));
        assert_eq!(split(7), None, "a port's own id");
        assert_eq!(iface_id(8, 10), None);
        assert_eq!(iface_id(0, 0), None);
        assert_eq!(iface_id(0, 4095), None);
    }

    #[test]
    fn a_tag_is_pushed_and_stripped_byte_exact() {
        let mut b = TestBuf::new(&UNTAGGED);
        assert_eq!(tag(iface_id(0, 10).unwrap(), &mut b), Some(0));
        assert_eq!(b.data(), &TAGGED_10[..]);
        assert_eq!(ingress(0, b.data(), |id| id == 0x800a), Ok(0x800a));
        assert!(untag(&mut b));
        assert_eq!(b.data(), &UNTAGGED[..]);
        // A port's own id: the frame leaves untagged on that port.
        assert_eq!(tag(1, &mut b), Some(1));
        assert_eq!(b.data(), &UNTAGGED[..]);
    }

    #[test]
    fn unknown_vlans_qinq_and_priority_tags() {
        assert_eq!(
            ingress(0, &TAGGED_10, |_| false),
            Err(Counter::DropUnknownVlan)
        );
        assert_eq!(
            ingress(1, &TAGGED_10, |id| id == 0x800a),
            Err(Counter::DropUnknownVlan),
            "VLAN 10 of port 0 is not VLAN 10 of port 1"
        );
        assert_eq!(
            ingress(9, &TAGGED_10, |_| true),
            Err(Counter::DropUnknownVlan)
        );
        let mut qinq = TAGGED_10;
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(ingress(0, &qinq, |_| true), Err(Counter::DropVlan));
        let mut prio = TAGGED_10;
        prio[14..16].copy_from_slice(&[0xa0, 0x00]);
        assert_eq!(ingress(2, &prio, |_| false), Ok(2));
        assert_eq!(
            ingress(0, &TAGGED_10[..17], |_| true),
            Err(Counter::DropVlan)
        );
    }

    #[test]
    fn no_headroom_leaves_the_frame_alone() {
        let mut b = TestBuf::new(&UNTAGGED);
        assert!(b.adj(0));
        while b.headroom() > 0 {
            assert!(b.prepend(1));
        }
        let before = b.data().to_vec();
        assert_eq!(tag(iface_id(0, 10).unwrap(), &mut b), None);
        assert_eq!(b.data(), &before[..]);
    }

    proptest! {
        #[test]
        fn any_frame_is_placed_or_refused_without_panic(
            rx_port in any::<u16>(),
            frame in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let id = iface_id(0, 10).unwrap();
            let mut b = TestBuf::new(&frame);
            match ingress(rx_port, &frame, |x| x == id) {
                Ok(to) => {
                    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
                    prop_assert!(to == id || (vid == 0 && to == rx_port));
                    prop_assert!(untag(&mut b));
                    prop_assert_eq!(b.len(), frame.len() - TAG_LEN);
                }
                Err(why) => {
                    prop_assert!(matches!(why, Counter::DropVlan | Counter::DropUnknownVlan));
                }
            }
        }

        #[test]
        fn tag_then_untag_is_the_identity(
            port in 0u16..=MAX_VLAN_PORT,
            vid in 1u16..=MAX_VLAN_ID,
            frame in proptest::collection::vec(any::<u8>(), 14..200),
        ) {
            let id = iface_id(port, vid).unwrap();
            prop_assert_eq!(split(id), Some((port, vid)));
            let mut b = TestBuf::new(&frame);
            prop_assert_eq!(tag(id, &mut b), Some(port));
            prop_assert_eq!(b.len(), frame.len() + TAG_LEN);
            prop_assert_eq!(&b.data()[..12], &frame[..12]);
            prop_assert_eq!(&b.data()[16..], &frame[12..]);
            prop_assert_eq!(ingress(port, b.data(), |x| x == id), Ok(id));
            prop_assert!(untag(&mut b));
            prop_assert_eq!(b.data(), &frame[..]);
        }
    }
}
