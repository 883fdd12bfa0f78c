//! The body of the `sctp` fuzz target: SCTP packets (any chunks, any
//! lengths, CRC32c right or wrong) in both directions of one association,
//! through the parser, the IPVS state tables and the NAT rewrite.
//!
//! Why a target of its own: `wire` and `pipeline` reach SCTP only behind a
//! random Ethernet and IP header, and the pipeline drops most packets
//! before the rewrite; here every input is an SCTP packet in a well-formed
//! frame, so libFuzzer spends its time on the chunks and the CRC.
//!
//! Invariants, after every packet:
//! * the parser reads the ports of every packet with a common header and
//!   refuses shorter ones;
//! * the event is the first chunk's (an ABORT right behind a first COOKIE
//!   ECHO or COOKIE ACK wins), none without a chunk header;
//! * the association moves only among the kernel's states (never back to
//!   NONE), an ABORT ends it (CLOSED or REJECTED), only ESTABLISHED is
//!   active, every state has a timeout;
//! * the NAT rewrite changes the address, the port and the TTL (and the
//!   IPv4 header checksum stays right), leaves the verification tag and
//!   the chunks alone, and keeps the CRC32c as right as it was: a packet
//!   that arrived intact leaves with a CRC that verifies, a corrupt one
//!   stays detectably corrupt; a refused rewrite changes nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::proto_sctp::{self, event, state, Table};
use super::Dir;
use crate::buf::PacketBuf;
use crate::wire::ipv4::protocol;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::parse_packet;
use crate::wire::sctp::{self, chunk, SctpPacket};
use crate::xmit::nat::{nat_inbound, nat_outbound};

/// Packets per input at most.
const MAX_PACKETS: usize = 64;
/// Longest SCTP packet an op writes (fits one Ethernet frame).
const MAX_SCTP: usize = 1480;

/// The frame under rewrite: a fixed buffer, so nothing is allocated per
/// packet.
struct Frame<'a>(&'a mut [u8]);

impl PacketBuf for Frame<'_> {
    fn data(&self) -> &[u8] {
        self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0
    }
    fn prepend(&mut self, _: usize) -> bool {
        false
    }
    fn adj(&mut self, _: usize) -> bool {
        false
    }
    fn append(&mut self, _: usize) -> bool {
        false
    }
    fn trim(&mut self, _: usize) -> bool {
        false
    }
}

fn addrs(v6: bool) -> (IpAddr, IpAddr, IpAddr) {
    if v6 {
        let a = |x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x));
        (a(2), a(0x100), a(0x111))
    } else {
        let a = |x| IpAddr::V4(Ipv4Addr::new(198, 18, 0, x));
        (a(2), a(100), a(111))
    }
}

/// Writes an Ethernet frame carrying `sctp` from `src` to `dst` with TTL
/// `ttl` into `out`; returns its length.
fn write_frame(out: &mut [u8], src: IpAddr, dst: IpAddr, ttl: u8, sctp: &[u8]) -> usize {
    out[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    let l3 = 14;
    let hl = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out[12..14].copy_from_slice(&[0x08, 0x00]);
            let mut p = Ipv4Packet::new_unchecked(&mut out[l3..l3 + 20]);
            p.set_version_ihl(20);
            p.set_dscp_ecn(0);
            p.set_total_len((20 + sctp.len()) as u16);
            p.set_ident(1);
            p.set_unfragmented(true);
            p.set_ttl(ttl);
            p.set_protocol(protocol::SCTP);
            p.set_src_addr(s);
            p.set_dst_addr(d);
            p.fill_checksum();
            20
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out[12..14].copy_from_slice(&[0x86, 0xdd]);
            let ip = &mut out[l3..l3 + 40];
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&(sctp.len() as u16).to_be_bytes());
            ip[6] = protocol::SCTP;
            ip[7] = ttl;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            40
        }
        _ => unreachable!("one family per packet"),
    };
    out[l3 + hl..l3 + hl + sctp.len()].copy_from_slice(sctp);
    l3 + hl + sctp.len()
}

/// The event of an SCTP packet by RFC 9260's chunk layout, written apart
/// from [`proto_sctp::event`] as its oracle.
fn expected_event(p: &[u8]) -> Option<u8> {
    let c = p.get(sctp::HEADER_LEN..sctp::HEADER_LEN + 4)?;
    let (first, len) = (c[0], usize::from(u16::from_be_bytes([c[2], c[3]])));
    if (first == chunk::COOKIE_ECHO || first == chunk::COOKIE_ACK) && len >= 4 {
        let next = sctp::HEADER_LEN + len.div_ceil(4) * 4;
        if p.get(next) == Some(&chunk::ABORT) && p.len() >= next + 4 {
            return Some(event::ABORT);
        }
    }
    Some(proto_sctp::chunk_event(first))
}

/// Runs `data` as SCTP packets of one association; returns a digest of
/// the states and rewrites (so tests can compare runs and the work cannot
/// be optimised away). Panics when an invariant (module docs) does not
/// hold.
///
/// Each packet is an op byte (bit 0: server to client; bit 1: IPv6;
/// bit 2: write the right CRC32c over the bytes; bit 3: the rewrite keeps
/// the port; bit 4: TTL 1; bit 5: the next two bytes are a length, else
/// the next one), then that many bytes of SCTP packet.
pub fn fuzz_sctp(data: &[u8]) -> u64 {
    let mut frame = [0u8; 14 + 40 + MAX_SCTP];
    let mut before = [0u8; 14 + 40 + MAX_SCTP];
    let mut rest = data;
    let mut st = state::NONE;
    let mut nooutput = true;
    let mut digest = 0u64;
    for _ in 0..MAX_PACKETS {
        let Some((&op, r)) = rest.split_first() else {
            break;
        };
        rest = r;
        let len = if op & 0x20 != 0 && rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            rest = &rest[2..];
            n
        } else if let Some((&n, r)) = rest.split_first() {
            rest = r;
            usize::from(n)
        } else {
            0
        };
        let (sctp_bytes, r) = rest.split_at(len.min(rest.len()).min(MAX_SCTP));
        rest = r;
        let dir = if op & 1 != 0 { Dir::Out } else { Dir::In };
        let v6 = op & 2 != 0;
        let (client, vip, real) = addrs(v6);
        let (src, dst) = match dir {
            Dir::In => (client, vip),
            Dir::Out => (real, client),
        };
        let ttl = if op & 0x10 != 0 { 1 } else { 64 };
        let n = write_frame(&mut frame, src, dst, ttl, sctp_bytes);
        let l4 = n - sctp_bytes.len();
        if op & 4 != 0 && sctp_bytes.len() >= sctp::HEADER_LEN {
            SctpPacket::new_checked(&mut frame[l4..n])
                .expect("a common header")
                .fill_checksum();
        }
        let f = &mut frame[..n];
        let meta = parse_packet(f);
        let meta = match meta {
            Ok(m) => m,
            Err(_) => {
                assert!(
                    sctp_bytes.len() < sctp::HEADER_LEN,
                    "a whole common header is read"
                );
                continue;
            }
        };
        assert!(
            sctp_bytes.len() >= sctp::HEADER_LEN,
            "a short packet is refused"
        );
        assert_eq!(meta.protocol, protocol::SCTP);
        assert_eq!(usize::from(meta.l4_offset), l4);
        let p = &f[l4..];
        assert_eq!(meta.sport, u16::from_be_bytes([p[0], p[1]]));
        assert_eq!(meta.dport, u16::from_be_bytes([p[2], p[3]]));

        // The state machine.
        let ev = proto_sctp::event(p);
        assert_eq!(
            ev,
            expected_event(p),
            "event of {:?}",
            &p[..p.len().min(32)]
        );
        if let Some(ev) = ev {
            assert!(usize::from(ev) < event::COUNT);
            let table = Table::select(dir, nooutput && dir == Dir::In);
            if dir == Dir::Out {
                nooutput = false;
            }
            st = proto_sctp::next_state(st, table, ev);
            assert!(
                st != state::NONE && usize::from(st) < state::COUNT,
                "state {st}"
            );
            if ev == event::ABORT {
                assert!(
                    st == state::CLOSED || st == state::REJECTED,
                    "ABORT leaves {st}"
                );
            }
            assert_eq!(proto_sctp::is_active(st), st == state::ESTABLISHED);
            assert!(proto_sctp::timeout_secs(st) > 0);
            assert_ne!(proto_sctp::name(st), "NONE");
            digest = digest.wrapping_mul(31).wrapping_add(u64::from(st));
        }

        // The NAT rewrite, in the packet's direction.
        let crc_ok = SctpPacket::new_checked(p)
            .expect("parsed")
            .verify_checksum();
        let (sport, dport) = (meta.sport, meta.dport);
        let port = if op & 8 != 0 {
            if dir == Dir::In {
                dport
            } else {
                sport
            }
        } else {
            8080 ^ dport ^ sport.rotate_left(3)
        };
        before[..n].copy_from_slice(f);
        let mut buf = Frame(f);
        let res = match dir {
            Dir::In => nat_inbound(&mut buf, &meta, real, port),
            Dir::Out => nat_outbound(&mut buf, &meta, vip, port),
        };
        let f = buf.0;
        if let Err(e) = res {
            assert_eq!(&f[..], &before[..n], "{e:?}: nothing changed");
            assert_eq!(ttl, 1, "only the TTL refuses a sound packet: {e:?}");
            continue;
        }
        let got = parse_packet(f).expect("a rewritten packet parses");
        let (want_src, want_dst, want_sport, want_dport) = match dir {
            Dir::In => (client, real, sport, port),
            Dir::Out => (vip, client, port, dport),
        };
        assert_eq!((got.src, got.dst), (want_src, want_dst));
        assert_eq!((got.sport, got.dport), (want_sport, want_dport));
        assert_eq!(got.ttl, ttl - 1);
        if !v6 {
            assert!(Ipv4Packet::new_checked(&f[14..])
                .expect("v4")
                .verify_checksum());
        }
        assert_eq!(
            &f[l4 + 4..l4 + 8],
            &before[l4 + 4..l4 + 8],
            "verification tag"
        );
        assert_eq!(&f[l4 + 12..n], &before[l4 + 12..n], "chunks");
        let s = SctpPacket::new_checked(&f[l4..n]).expect("parsed");
        assert_eq!(
            s.verify_checksum(),
            crc_ok,
            "CRC32c right after iff right before"
        );
        digest = digest
            .wrapping_mul(31)
            .wrapping_add(u64::from(s.checksum()));
    }
    digest
}

/// One packet op of [`fuzz_sctp`]: `flags` (the op byte's bits 0-4),
/// ports 40000 -> 80 (swapped from the server), tag 7, `chunks`.
pub fn sctp_op(flags: u8, chunks: &[&[u8]]) -> Vec<u8> {
    let (sport, dport) = if flags & 1 != 0 {
        (80u16, 40000u16)
    } else {
        (40000, 80)
    };
    let mut p = vec![];
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&7u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for c in chunks {
        p.extend_from_slice(c);
    }
    let mut v = vec![flags | 0x20];
    v.extend_from_slice(&(p.len() as u16).to_be_bytes());
    v.extend(p);
    v
}

/// Chunks of every type, as an association uses them.
pub mod chunks {
    pub const DATA: &[u8] = &[
        0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b'h', b'i', 0, 0,
    ];
    pub const INIT: &[u8] = &[1, 0, 0, 20, 0, 0, 0, 9, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1];
    pub const INIT_ACK: &[u8] = &[
        2, 0, 0, 28, 0, 0, 0, 7, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 7, 0, 8, 0xc0, 0x0c, 0, 1,
    ];
    pub const SACK: &[u8] = &[3, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
    pub const HEARTBEAT: &[u8] = &[4, 0, 0, 12, 0, 1, 0, 8, 1, 2, 3, 4];
    pub const HEARTBEAT_ACK: &[u8] = &[5, 0, 0, 12, 0, 1, 0, 8, 1, 2, 3, 4];
    pub const ABORT: &[u8] = &[6, 0, 0, 4];
    pub const SHUTDOWN: &[u8] = &[7, 0, 0, 8, 0, 0, 0, 1];
    pub const SHUTDOWN_ACK: &[u8] = &[8, 0, 0, 4];
    pub const ERROR: &[u8] = &[9, 0, 0, 8, 0, 1, 0, 4];
    pub const COOKIE_ECHO: &[u8] = &[10, 0, 0, 8, 0xc0, 0x0c, 0, 1];
    pub const COOKIE_ACK: &[u8] = &[11, 0, 0, 4];
    pub const ECNE: &[u8] = &[12, 0, 0, 8, 0, 0, 0, 1];
    pub const CWR: &[u8] = &[13, 0, 0, 8, 0, 0, 0, 1];
    pub const SHUTDOWN_COMPLETE: &[u8] = &[14, 0, 0, 4];
    pub const ASCONF: &[u8] = &[0xc1, 0, 0, 8, 0, 0, 0, 1];
}

/// The seeds of the `sctp` corpus: associations set up and shut down from
/// either end, over IPv4 and IPv6, aborts (alone and behind cookie
/// chunks), every chunk type, bad chunk lengths, wrong CRCs, expired TTLs.
pub fn sctp_seeds() -> Vec<(String, Vec<u8>)> {
    use chunks::*;
    const OK: u8 = 4; // the right CRC
    const OUT: u8 = 1;
    let mut seeds = vec![];
    for (fam, v6) in [("v4", 0u8), ("v6", 2)] {
        let f = OK | v6;
        let client = vec![
            sctp_op(f, &[INIT]),
            sctp_op(f | OUT, &[INIT_ACK]),
            sctp_op(f, &[COOKIE_ECHO, DATA]),
            sctp_op(f | OUT, &[COOKIE_ACK, SACK]),
            sctp_op(f, &[DATA]),
            sctp_op(f | OUT, &[SACK]),
            sctp_op(f, &[HEARTBEAT]),
            sctp_op(f | OUT, &[HEARTBEAT_ACK]),
            sctp_op(f, &[SHUTDOWN]),
            sctp_op(f | OUT, &[SHUTDOWN_ACK]),
            sctp_op(f, &[SHUTDOWN_COMPLETE]),
        ];
        seeds.push((format!("{fam}-association"), client.concat()));
        let server = [
            sctp_op(f | OUT, &[INIT]),
            sctp_op(f, &[INIT_ACK]),
            sctp_op(f | OUT, &[COOKIE_ECHO]),
            sctp_op(f, &[COOKIE_ACK]),
            sctp_op(f | OUT, &[SHUTDOWN]),
            sctp_op(f, &[SHUTDOWN_ACK]),
            sctp_op(f | OUT, &[SHUTDOWN_COMPLETE]),
        ];
        seeds.push((format!("{fam}-server-starts"), server.concat()));
        let abort = [
            sctp_op(f, &[INIT]),
            sctp_op(f | OUT, &[ABORT]),
            sctp_op(f, &[INIT]),
            sctp_op(f | OUT, &[INIT_ACK]),
            sctp_op(f, &[COOKIE_ECHO, ABORT]),
            sctp_op(f | OUT, &[COOKIE_ACK, ABORT]),
        ];
        seeds.push((format!("{fam}-aborts"), abort.concat()));
        let other = vec![
            sctp_op(f, &[INIT]),
            sctp_op(f, &[ERROR]),
            sctp_op(f, &[ECNE, CWR]),
            sctp_op(f, &[ASCONF]),
            sctp_op(f | 0x10, &[DATA]),
            sctp_op(v6, &[DATA]),
            sctp_op(f | 8, &[DATA]),
            sctp_op(f, &[&[0, 3, 0, 2], DATA]),
            sctp_op(f, &[&[10, 0, 0xff, 0xff, 1, 2, 3]]),
            sctp_op(f, &[&[11, 0, 0, 5, 0, 0, 0, 0], ABORT]),
            sctp_op(f, &[]),
            vec![f, 11, 0, 80, 0, 0x50, 0, 0, 0, 7, 0, 0, 0],
        ];
        seeds.push((format!("{fam}-chunks-and-errors"), other.concat()));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seeds_keep_the_invariants_and_set_up_associations() {
        for (name, data) in sctp_seeds() {
            let _ = fuzz_sctp(&data);
            let _ = name;
        }
        // The client's association ends CLOSED, having been ESTABLISHED
        // (checked through the state table directly).
        let mut st = state::NONE;
        for (dir, c) in [
            (Table::Input, chunks::INIT),
            (Table::Output, chunks::INIT_ACK),
            (Table::Input, chunks::COOKIE_ECHO),
            (Table::Output, chunks::COOKIE_ACK),
        ] {
            let p = &sctp_op(4, &[c])[3..];
            st = proto_sctp::next_state(st, dir, proto_sctp::event(p).unwrap());
        }
        assert_eq!(st, state::ESTABLISHED);
    }

    #[test]
    fn a_corrupt_packet_leaves_the_nat_rewrite_still_corrupt() {
        // Wrong CRC (zero) and a port change: the rewrite must not bless it.
        let data = sctp_op(0, &[chunks::DATA]);
        let _ = fuzz_sctp(&data);
        // Right CRC: it stays right.
        let _ = fuzz_sctp(&sctp_op(4, &[chunks::DATA]));
    }

    proptest! {
        /// Any packets: the invariants hold (checked by the body).
        #[test]
        fn any_sctp_packets_keep_the_invariants(
            ops in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80)), 0..12),
        ) {
            let mut data = vec![];
            for (op, bytes) in ops {
                data.push(op & !0x20);
                data.push(bytes.len() as u8);
                data.extend(bytes);
            }
            let _ = fuzz_sctp(&data);
        }

        /// The seeds with chunks mutated: the invariants hold.
        #[test]
        fn mutated_sctp_seeds_keep_the_invariants(
            seed in 0usize..8,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let seeds = sctp_seeds();
            let mut data = seeds[seed % seeds.len()].1.clone();
            for (at, v) in edits {
                let i = at.index(data.len());
                data[i] = v;
            }
            let _ = fuzz_sctp(&data);
        }
    }

    /// Writes the `sctp` corpus's seeds into `$UVS_FUZZ_SEEDS/sctp`
    /// (`scripts/fuzz --seed`).
    #[test]
    #[ignore = "writes files: run by scripts/fuzz --seed"]
    fn write_sctp_seeds() {
        let Some(dir) = std::env::var_os("UVS_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::Path::new(&dir).join("sctp");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in sctp_seeds() {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}
