//! Sending a datagram the stage reassembled: whole if it fits the egress
//! port's MTU, else cut into fragments (IPv4 without DF, IPv6 always: the
//! director is then the source of the fragments it writes), one fresh
//! buffer each, as Linux's output path does after IPVS (`ip_fragment`,
//! `ip6_fragment`).
//!
//! A datagram whose connection another worker owns is cut the same way
//! and handed to that worker instead ([`crate::frag::owner`]).
//!
//! Why here: the stage holds the datagram in its reassembly slot, and only
//! the stack has the buffers ([`Io::alloc`]) and knows the port a
//! destination leaves by.

use std::net::IpAddr;

use super::stack::{Io, Stack};
use super::{Counter, Stage};
use crate::buf::PacketBuf;
use crate::frag::{fragment_plan, write_fragment_v4, write_fragment_v6};
use crate::wire::ethernet::HEADER_LEN;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::ext;
use crate::wire::{ipv4, ipv6};

/// The piece size when the receiving port is not known (IPv6's minimum
/// MTU: every port's is at least that).
const MIN_PIECE_MTU: usize = 1280;

impl<B: PacketBuf> Stack<B> {
    /// Sends the stage's pending datagram toward `dst`; see the module docs.
    pub(super) fn send_datagram(
        &mut self,
        dst: IpAddr,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        self.send_pieces(dst, now, io, stage);
        stage.datagram_sent();
    }

    fn send_pieces(
        &mut self,
        dst: IpAddr,
        now: u64,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        let Some(frame) = stage.datagram() else {
            return;
        };
        self.send_frame(frame, dst, now, io);
    }

    /// Sends `frame` (Ethernet header, IP packet) toward `dst` in fresh
    /// buffers: whole if it fits the egress MTU, else in fragments.
    pub(super) fn send_frame(&mut self, frame: &[u8], dst: IpAddr, now: u64, io: &mut impl Io<B>) {
        let Some(mtu) = self
            .routes()
            .next_hop(dst)
            .and_then(|(port, _)| self.iface(port))
            .map(|i| usize::from(i.mtu))
        else {
            self.counters().inc(Counter::DropNoRoute);
            return;
        };
        let Some(ip) = frame.get(HEADER_LEN..) else {
            self.counters().inc(Counter::DropMalformed);
            return;
        };
        let eth = &frame[..HEADER_LEN];
        if ip.len() <= mtu {
            if let Some(b) = self.fill(io, &[eth, ip]) {
                self.send_ip(b, dst, now, io);
            }
            return;
        }
        let v6 = ip.first().is_some_and(|v| v >> 4 == 6);
        if !v6 {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                self.counters().inc(Counter::DropMalformed);
                return;
            };
            if p.dont_frag() {
                self.counters().inc(Counter::DropFragNeeded);
                return;
            }
            let hl = p.header_len();
            for piece in fragment_plan(ip.len() - hl, hl, mtu) {
                let Some(mut b) = self.alloc_frame(io, HEADER_LEN + hl + piece.len) else {
                    return;
                };
                b.data_mut()[..HEADER_LEN].copy_from_slice(eth);
                if write_fragment_v4(ip, piece, &mut b.data_mut()[HEADER_LEN..]).is_none() {
                    self.counters().inc(Counter::DropMalformed);
                    return;
                }
                self.counters().inc(Counter::FragmentsSent);
                self.send_ip(b, dst, now, io);
            }
        } else {
            let Some(unfrag) = unfragmentable_len(ip) else {
                self.counters().inc(Counter::DropMalformed);
                return;
            };
            self.frag_ident = self.frag_ident.wrapping_add(1);
            let ident = self.frag_ident;
            for piece in fragment_plan(ip.len() - unfrag, unfrag + 8, mtu) {
                let Some(mut b) = self.alloc_frame(io, HEADER_LEN + unfrag + 8 + piece.len) else {
                    return;
                };
                b.data_mut()[..HEADER_LEN].copy_from_slice(eth);
                let out = &mut b.data_mut()[HEADER_LEN..];
                if write_fragment_v6(ip, unfrag, ident, piece, out).is_none() {
                    self.counters().inc(Counter::DropMalformed);
                    return;
                }
                self.counters().inc(Counter::FragmentsSent);
                self.send_ip(b, dst, now, io);
            }
        }
    }

    /// Hands the stage's pending datagram to `worker`, the owner of its
    /// connection, as fragments of identification `ident` (as received on
    /// `rx_port`), then tells the stage. Why in fragments: a reassembled
    /// datagram does not fit one buffer (the pool's are sized for the
    /// largest port MTU), and the owner takes fragments like any others.
    pub(super) fn hand_over_datagram(
        &mut self,
        rx_port: u16,
        worker: usize,
        ident: u32,
        io: &mut impl Io<B>,
        stage: &mut impl Stage<B>,
    ) {
        if let Some(frame) = stage.datagram() {
            self.counters().inc(Counter::DatagramsHandedOver);
            self.hand_over_pieces(frame, rx_port, worker, ident, io);
        }
        stage.datagram_sent();
    }

    /// Cuts `frame` to the MTU of `rx_port` (its fragments arrived there,
    /// so pieces of that size fit a buffer) and hands each piece over.
    fn hand_over_pieces(
        &mut self,
        frame: &[u8],
        rx_port: u16,
        worker: usize,
        ident: u32,
        io: &mut impl Io<B>,
    ) {
        let mtu = self
            .iface(rx_port)
            .map_or(MIN_PIECE_MTU, |i| usize::from(i.mtu));
        let (Some(eth), Some(ip)) = (frame.get(..HEADER_LEN), frame.get(HEADER_LEN..)) else {
            self.counters().inc(Counter::DropMalformed);
            return;
        };
        let v6 = ip.first().is_some_and(|v| v >> 4 == 6);
        // What stays in front of each piece's data: IPv4's header, IPv6's
        // unfragmentable part (then the fragment header).
        let kept = if v6 {
            unfragmentable_len(ip)
        } else {
            Ipv4Packet::new_checked(ip).ok().map(|p| p.header_len())
        };
        let Some(kept) = kept.filter(|&k| k <= ip.len()) else {
            self.counters().inc(Counter::DropMalformed);
            return;
        };
        let front = if v6 { kept + 8 } else { kept };
        for piece in fragment_plan(ip.len() - kept, front, mtu) {
            let Some(mut b) = self.alloc_frame(io, HEADER_LEN + front + piece.len) else {
                return;
            };
            b.data_mut()[..HEADER_LEN].copy_from_slice(eth);
            let out = &mut b.data_mut()[HEADER_LEN..];
            let written = if v6 {
                write_fragment_v6(ip, kept, ident, piece, out)
            } else {
                write_fragment_v4(ip, piece, out).inspect(|&n| {
                    let mut p = Ipv4Packet::new_unchecked(&mut out[..n]);
                    p.set_ident(ident as u16);
                    p.fill_checksum();
                })
            };
            if written.is_none() {
                self.counters().inc(Counter::DropMalformed);
                return;
            }
            self.counters().inc(Counter::FragmentsHandedOver);
            io.hand_over(worker, rx_port, b);
        }
    }

    /// A fresh buffer of `len` bytes, or `None` (counted).
    fn alloc_frame(&self, io: &mut impl Io<B>, len: usize) -> Option<B> {
        let mut b = io.alloc().filter(|b| b.is_empty());
        match b.as_mut().map(|b| b.append(len)) {
            Some(true) => b,
            _ => {
                self.counters().inc(Counter::DropNoBuffer);
                None
            }
        }
    }

    /// A fresh buffer holding `parts` one after the other.
    fn fill(&self, io: &mut impl Io<B>, parts: &[&[u8]]) -> Option<B> {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut b = self.alloc_frame(io, len)?;
        let mut at = 0;
        for p in parts {
            b.data_mut()[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Some(b)
    }
}

/// Bytes of an IPv6 packet's unfragmentable part: the header plus the
/// hop-by-hop and routing headers (RFC 8200 4.5); destination options
/// before a routing header belong to it too.
fn unfragmentable_len(ip: &[u8]) -> Option<usize> {
    let mut next = *ip.get(6)?;
    let mut off = ipv6::HEADER_LEN;
    let mut unfrag = off;
    for _ in 0..ipv6::MAX_EXT_HEADERS {
        match next {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                let len = (usize::from(*ip.get(off + 1)?) + 1) * 8;
                let this = next;
                next = *ip.get(off)?;
                off += len;
                if this != ext::DEST_OPTS || next == ext::ROUTING {
                    unfrag = off;
                }
            }
            _ => break,
        }
    }
    (unfrag <= ip.len() && unfrag >= ipv4::HEADER_LEN).then_some(unfrag)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::buf::TestBuf;
    use crate::frag::{Insert, Reassembler, ReassemblyLimits};
    use crate::net::{Interface, L3Config, NetCounters, StageVerdict};
    use crate::wire::ethernet::MacAddr;
    use crate::wire::testutil::{frame, L4};
    use crate::wire::{parse_packet, PacketMeta};

    const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One port (MTU 1500) with the client as a static neighbour.
    fn stack(mtu: u16) -> Stack<TestBuf> {
        let cfg = L3Config {
            interfaces: vec![Interface {
                port: 0,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                addrs: vec![
                    "198.18.0.1/24".parse().unwrap(),
                    "2001:db8::1/64".parse().unwrap(),
                ],
                mtu,
                kernel: false,
            }],
            routes: vec![],
            neighbors: vec![
                (ip("198.18.0.2"), MacAddr(HOST_MAC)),
                (ip("2001:db8::2"), MacAddr(HOST_MAC)),
            ],
            forwarding: Default::default(),
        };
        Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap()
    }

    #[derive(Default)]
    struct TestIo {
        sent: Vec<Vec<u8>>,
    }
    impl Io<TestBuf> for TestIo {
        fn alloc(&mut self) -> Option<TestBuf> {
            Some(TestBuf::new(&[]))
        }
        fn tx(&mut self, _port: u16, buf: TestBuf) {
            self.sent.push(buf.data().to_vec());
        }
    }

    /// A stage holding one reassembled datagram for the client.
    struct Holding {
        frame: Vec<u8>,
        sent: bool,
    }
    impl Stage<TestBuf> for Holding {
        fn process(
            &mut self,
            _: u16,
            buf: TestBuf,
            m: &PacketMeta,
            _: u64,
            _: &crate::net::RouteCache,
        ) -> StageVerdict<TestBuf> {
            StageVerdict::Datagram { buf, dst: m.src }
        }
        fn datagram(&self) -> Option<&[u8]> {
            Some(&self.frame)
        }
        fn datagram_sent(&mut self) {
            self.sent = true;
        }
    }

    /// The answer (VIP -> client, 4,000 bytes of UDP) leaves in pieces of
    /// at most the port's MTU that the client reassembles to the datagram.
    #[test]
    fn a_large_datagram_leaves_in_fragments_that_reassemble_to_it() {
        for (client, vip) in [
            ("198.18.0.2", "198.18.0.100"),
            ("2001:db8::2", "2001:db8::100"),
        ] {
            let payload: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
            let mut answer = frame(ip(vip), ip(client), L4::Udp, 53, 40000, None, &payload);
            if client.contains('.') {
                answer[20] = 0; // no DF: the director may fragment
                crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut answer[14..]).fill_checksum();
            }
            let mut st = stack(1500);
            let mut stage = Holding {
                frame: answer.clone(),
                sent: false,
            };
            let mut io = TestIo::default();
            // Any packet from the client makes the stage hand it over.
            let trigger = frame(ip(client), ip(vip), L4::Udp, 40000, 53, None, b"x");
            let mut trigger = trigger;
            trigger[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            st.input(0, TestBuf::new(&trigger), 1, &mut io, &mut stage);
            assert!(stage.sent, "{client}: the stage is told");
            assert_eq!(io.sent.len(), 3, "{client}: 4,028 bytes in three pieces");
            assert_eq!(st.counters().get(Counter::FragmentsSent), 3);
            let mut r = Reassembler::new(ReassemblyLimits::default());
            let mut done = None;
            for f in &io.sent {
                assert!(f.len() <= 14 + 1500, "{client}: {} bytes", f.len());
                assert_eq!(f[0..6], HOST_MAC);
                let m = parse_packet(f).unwrap();
                if let Insert::Complete(s) = r.insert(f, &m, 1) {
                    done = Some(r.frame_of(s).to_vec());
                }
            }
            let whole = done.expect("reassembles");
            assert_eq!(whole[14..], answer[14..], "{client}");
        }
    }

    /// A stage that hands its datagram over to worker 1, and the io that
    /// records the hand-over.
    struct HandingOver(Holding);
    impl Stage<TestBuf> for HandingOver {
        fn process(
            &mut self,
            _: u16,
            buf: TestBuf,
            _: &PacketMeta,
            _: u64,
            _: &crate::net::RouteCache,
        ) -> StageVerdict<TestBuf> {
            StageVerdict::HandOverDatagram {
                buf,
                worker: 1,
                ident: 77,
            }
        }
        fn datagram(&self) -> Option<&[u8]> {
            Some(&self.0.frame)
        }
        fn datagram_sent(&mut self) {
            self.0.sent = true;
        }
    }
    #[derive(Default)]
    struct HandOverIo {
        handed: Vec<(usize, u16, Vec<u8>)>,
    }
    impl Io<TestBuf> for HandOverIo {
        fn alloc(&mut self) -> Option<TestBuf> {
            Some(TestBuf::new(&[]))
        }
        fn tx(&mut self, _port: u16, _buf: TestBuf) {
            panic!("a handed-over datagram is not sent here");
        }
        fn hand_over(&mut self, worker: usize, port: u16, buf: TestBuf) {
            self.handed.push((worker, port, buf.data().to_vec()));
        }
    }

    /// Fragments that arrived on a VLAN are handed to the connection's
    /// owner in pieces of the VLAN interface's MTU (that of its port), not
    /// of IPv6's minimum: three pieces of a 4,028-byte datagram at 1,500,
    /// where 1,280 would make four.
    #[test]
    fn a_datagram_received_on_a_vlan_is_handed_over_in_pieces_of_its_mtu() {
        let vlan = crate::net::vlan::iface_id(0, 10).unwrap();
        let cfg = L3Config {
            interfaces: vec![
                Interface {
                    port: 0,
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    addrs: vec!["198.18.0.1/24".parse().unwrap()],
                    mtu: 1500,
                    kernel: false,
                },
                Interface {
                    port: vlan,
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    addrs: vec!["198.18.10.1/24".parse().unwrap()],
                    mtu: 1500,
                    kernel: false,
                },
            ],
            routes: vec![],
            neighbors: vec![],
            forwarding: Default::default(),
        };
        let mut st = Stack::new(&cfg, Arc::new(NetCounters::default())).unwrap();
        let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        let mut datagram = frame(
            ip("198.18.10.2"),
            ip("198.18.10.100"),
            L4::Udp,
            40000,
            53,
            None,
            &payload,
        );
        datagram[20] = 0;
        crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut datagram[14..]).fill_checksum();
        let mut stage = HandingOver(Holding {
            frame: datagram.clone(),
            sent: false,
        });
        // Any tagged packet of VLAN 10 makes the stage hand it over.
        let mut trigger = frame(
            ip("198.18.10.2"),
            ip("198.18.10.100"),
            L4::Udp,
            40000,
            53,
            None,
            b"x",
        );
        trigger[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        trigger.splice(12..12, [0x81, 0x00, 0x00, 10]);
        let mut io = HandOverIo::default();
        st.input(0, TestBuf::new(&trigger), 1, &mut io, &mut stage);
        assert!(stage.0.sent);
        assert_eq!(io.handed.len(), 3, "4,028 bytes at MTU 1,500");
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let mut done = None;
        for (worker, port, f) in &io.handed {
            assert_eq!(
                (*worker, *port),
                (1, vlan),
                "to the owner, as from the VLAN"
            );
            assert!(f.len() <= 14 + 1500, "{} bytes", f.len());
            let m = parse_packet(f).unwrap();
            if let Insert::Complete(s) = r.insert(f, &m, 1) {
                done = Some(r.frame_of(s).to_vec());
            }
        }
        let whole = done.expect("reassembles");
        assert_eq!(whole[14 + 20..], datagram[14 + 20..]);
    }

    #[test]
    fn an_ipv4_datagram_with_df_too_large_for_the_port_is_dropped_and_counted() {
        let payload = vec![1u8; 4000];
        let answer = frame(
            ip("198.18.0.100"),
            ip("198.18.0.2"),
            L4::Udp,
            53,
            40000,
            None,
            &payload,
        );
        assert!(
            parse_packet(&answer).unwrap().dont_frag,
            "the test frame has DF"
        );
        let mut st = stack(1500);
        let mut stage = Holding {
            frame: answer,
            sent: false,
        };
        let mut io = TestIo::default();
        let mut trigger = frame(
            ip("198.18.0.2"),
            ip("198.18.0.100"),
            L4::Udp,
            1,
            53,
            None,
            b"x",
        );
        trigger[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        st.input(0, TestBuf::new(&trigger), 1, &mut io, &mut stage);
        assert!(io.sent.is_empty());
        assert!(stage.sent);
        assert_eq!(st.counters().get(Counter::DropFragNeeded), 1);
    }
}
