//! Two workers, each a stack and a load-balancing stage as in `uvsd`, with
//! the hand-over rings in between: fragments that RSS splits across both
//! are reassembled and balanced on the worker owning their connection,
//! whichever worker they met on first, and the real server's fragmented
//! answers find the connection there; the counters balance.

use std::sync::Arc;

use super::owner::fragment_owner;
use super::tests::{cut, ip, two_stages, two_worker_config};
use crate::buf::{PacketBuf, TestBuf};
use crate::frag::{Insert, Reassembler, ReassemblyLimits};
use crate::lb::LbStage;
use crate::net::ledger::{Ledger, Sends};
use crate::net::{Counter, Io, NetCounters, Stack};
use crate::rss::Ownership;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::testutil::{frame, L4};
use crate::wire::{parse_packet, PacketMeta};

/// A worker's transmit side: what it sent (counted `tx` as the worker
/// does), and what it put on the ring to the other worker.
struct Wio {
    tx: Vec<(u16, Vec<u8>)>,
    ring: Vec<(u16, TestBuf)>,
    counters: Arc<NetCounters>,
}

impl Io<TestBuf> for Wio {
    fn alloc(&mut self) -> Option<TestBuf> {
        // The pool's buffers hold a frame of the largest port MTU.
        Some(TestBuf::with_capacity(&[], 9000 + 18))
    }
    fn tx(&mut self, port: u16, buf: TestBuf) {
        self.counters.inc(Counter::Tx);
        self.tx.push((port, buf.data().to_vec()));
    }
    fn hand_over(&mut self, _worker: usize, port: u16, buf: TestBuf) {
        self.ring.push((port, buf));
    }
}

struct Two {
    stacks: Vec<Stack<TestBuf>>,
    stages: Vec<LbStage>,
    io: [Wio; 2],
    now: u64,
}

/// The ports' MACs (`two_worker_config`).
const PORT_MAC: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];

impl Two {
    /// Port 1 (toward the real servers) has a 9,000-byte MTU: requests
    /// leave there whole, so each worker's sending side can be checked
    /// exactly ([`Sends`]).
    fn new() -> Two {
        let (mut cfg, _) = two_worker_config();
        cfg.interfaces[1].mtu = 9000;
        let (stages, _) = two_stages();
        let counters: [Arc<NetCounters>; 2] = Default::default();
        let stacks = counters
            .iter()
            .map(|c| Stack::new(&cfg, Arc::clone(c)).unwrap())
            .collect();
        Two {
            stacks,
            stages,
            io: counters.map(|counters| Wio {
                tx: Vec::new(),
                ring: Vec::new(),
                counters,
            }),
            now: 1,
        }
    }

    /// Worker `w` receives `f` on `port`; then each worker takes what the
    /// other put on its ring, until both rings are empty.
    fn receive(&mut self, w: usize, port: u16, f: &[u8]) {
        self.stacks[w].input(
            port,
            TestBuf::new(f),
            self.now,
            &mut self.io[w],
            &mut self.stages[w],
        );
        loop {
            let mut moved = false;
            for from in 0..2 {
                let to = 1 - from;
                for (port, buf) in std::mem::take(&mut self.io[from].ring) {
                    moved = true;
                    self.stacks[to].counters().inc(Counter::HandedIn);
                    self.stacks[to].input(
                        port,
                        buf,
                        self.now,
                        &mut self.io[to],
                        &mut self.stages[to],
                    );
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// What each worker sent since the last call.
    fn sent(&mut self) -> [Vec<(u16, Vec<u8>)>; 2] {
        [
            std::mem::take(&mut self.io[0].tx),
            std::mem::take(&mut self.io[1].tx),
        ]
    }

    fn net(&self, w: usize, c: Counter) -> u64 {
        self.stacks[w].counters().get(c)
    }

    /// Every counter of worker `w` by name, as the daemon names them.
    fn named(&self, w: usize) -> Vec<(String, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let lb = self.stages[w].lb().counters();
        let mut v: Vec<(String, u64)> = Counter::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), self.net(w, *c)))
            .collect();
        v.extend(
            crate::lb::LbDrop::ALL
                .iter()
                .map(|r| (format!("lb_drop_{}", r.as_str()), lb.drops(*r))),
        );
        v.extend(
            crate::frag::FragDrop::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), lb.frag.drops(*r))),
        );
        v.push(("fragments_received".into(), lb.frag.fragments.load(Relaxed)));
        v.push((
            "datagrams_reassembled".into(),
            lb.frag.reassembled.load(Relaxed),
        ));
        v
    }

    fn created(&self, w: usize) -> u64 {
        let lb = self.stages[w].lb().counters();
        lb.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counter identities every worker keeps (README, tests/hostile.rs):
    /// each frame taken in has one fate, and each took from its ring what
    /// the other put there.
    fn assert_balanced(&self) {
        for w in 0..2 {
            let l = Ledger::of(self.named(w).iter().map(|(k, v)| (k.as_str(), *v)));
            assert_eq!(l.unaccounted(), 0, "worker {w}: {l:?}");
            assert!(l.unclassified.is_empty(), "{l:?}");
            let o = 1 - w;
            assert_eq!(
                self.net(w, Counter::HandedIn),
                self.net(o, Counter::HandedOver) + self.net(o, Counter::FragmentsHandedOver)
                    - self.net(o, Counter::DropHandOverFull)
                    + self.net(o, Counter::NeighborShared),
                "worker {w}"
            );
        }
    }
}

/// `f` addressed to port `port`'s MAC.
fn to_port(mut f: Vec<u8>, port: usize) -> Vec<u8> {
    f[0..6].copy_from_slice(&PORT_MAC[port]);
    f
}

/// A 4,000-byte UDP datagram `src:sport -> dst:dport` with identification
/// `ident` (IPv4: no DF), cut at 1,500 bytes.
fn fragments(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    ident: u32,
    port: usize,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let payload: Vec<u8> = (0..4000u32)
        .map(|i| (i % 251) as u8 ^ sport as u8)
        .collect();
    let mut whole = frame(ip(src), ip(dst), L4::Udp, sport, dport, None, &payload);
    if src.contains('.') {
        whole[18..20].copy_from_slice(&(ident as u16).to_be_bytes());
        whole[20] = 0;
        Ipv4Packet::new_unchecked(&mut whole[14..]).fill_checksum();
    }
    let pieces = cut(&whole, 1500, ident)
        .into_iter()
        .map(|p| to_port(p, port))
        .collect();
    (whole, pieces)
}

/// The datagram the frames `sent` on `port` make, reassembled (or the one
/// frame, if whole).
fn reassembled(sent: &[(u16, Vec<u8>)], port: u16) -> Vec<u8> {
    let frames: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, f)| f)
        .collect();
    assert!(!frames.is_empty(), "nothing sent on port {port}");
    if frames.len() == 1 {
        return frames[0].clone();
    }
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut done = None;
    for f in frames {
        let m = parse_packet(f).unwrap();
        if let Insert::Complete(s) = r.insert(f, &m, 1) {
            done = Some(r.frame_of(s).to_vec());
        }
    }
    done.expect("the fragments sent reassemble")
}

fn meta(f: &[u8]) -> PacketMeta {
    parse_packet(f).unwrap()
}

/// For 16 client ports, IPv4 and IPv6: a 4,000-byte request cut in three
/// and spread over both workers reaches the real server once, from the
/// worker owning the connection (the only one with an entry); a later
/// whole packet of the flow finds that entry; the real server's 4,000-byte
/// answer, cut in three and spread too, leaves de-NATed for the client
/// from the same worker. Some datagrams met on their connection's owner,
/// some on the other worker: both cases are covered.
#[test]
fn fragments_spread_over_two_workers_are_balanced_and_answered_on_the_connections_owner() {
    let owners = Ownership::new(2);
    for (client, vip, rs) in [
        ("198.18.0.2", "198.18.0.100", "198.18.1.10"),
        ("2001:db8::2", "2001:db8::100", "2001:db8:1::10"),
    ] {
        let v6 = client.contains(':');
        let mut two = Two::new();
        let (mut met_on_owner, mut met_elsewhere) = (0, 0);
        let mut per_owner = [0u64; 2];
        for i in 0..16u16 {
            let cport = 40000 + i * 7;
            let owner = owners.owner(ip(client), cport);
            per_owner[owner] += 1;
            // Request: client -> VIP.
            let ident = if v6 {
                0x0100_0000 + u32::from(i)
            } else {
                0x1000 + u32::from(i)
            };
            if fragment_owner(&owners, ip(client), ident) == owner {
                met_on_owner += 1;
            } else {
                met_elsewhere += 1;
            }
            let (whole, pieces) = fragments(client, vip, cport, 53, ident, 0);
            for (j, p) in pieces.iter().enumerate() {
                two.receive((j + usize::from(i)) % 2, 0, p);
            }
            let sent = two.sent();
            assert!(
                sent[1 - owner].is_empty(),
                "{client}:{cport}: sent by the other worker"
            );
            let out = reassembled(&sent[owner], 1);
            assert_eq!(
                sent[owner].len(),
                1,
                "{client}:{cport}: whole on the 9,000-byte port"
            );
            let m = meta(&out);
            assert_eq!(
                (m.src, m.sport, m.dst, m.dport),
                (ip(client), cport, ip(rs), 53)
            );
            assert_eq!(out[out.len() - 4000..], whole[whole.len() - 4000..]);
            assert_eq!(two.created(owner), per_owner[owner], "{client}:{cport}");
            assert_eq!(
                two.created(1 - owner),
                per_owner[1 - owner],
                "{client}:{cport}"
            );

            // A later whole packet of the flow, on either worker, goes
            // with the entry: no second one.
            let small = to_port(
                frame(ip(client), ip(vip), L4::Udp, cport, 53, None, b"again"),
                0,
            );
            two.receive(1 - owner, 0, &small);
            let sent = two.sent();
            assert_eq!(sent[owner].len(), 1, "{client}:{cport}");
            assert!(sent[1 - owner].is_empty());
            assert_eq!(
                two.created(owner),
                per_owner[owner],
                "{client}:{cport}: one entry"
            );

            // Answer: real server -> client, cut in three and spread.
            let ident = ident ^ 0x55;
            let (whole, pieces) = fragments(rs, client, 53, cport, ident, 1);
            for (j, p) in pieces.iter().enumerate() {
                two.receive((j + usize::from(i) + 1) % 2, 1, p);
            }
            let sent = two.sent();
            assert!(
                sent[1 - owner].is_empty(),
                "{client}:{cport}: answered by the other worker"
            );
            let out = reassembled(&sent[owner], 0);
            let m = meta(&out);
            assert_eq!(
                (m.src, m.sport, m.dst, m.dport),
                (ip(vip), 53, ip(client), cport),
                "{client}:{cport}: de-NATed"
            );
            assert_eq!(out[out.len() - 4000..], whole[whole.len() - 4000..]);
        }
        assert!(
            met_on_owner > 0 && met_elsewhere > 0,
            "{met_on_owner} {met_elsewhere}"
        );
        for w in 0..2 {
            let lb = two.stages[w].lb().counters();
            for r in crate::frag::FragDrop::ALL {
                assert_eq!(lb.frag.drops(r), 0, "worker {w}: {r:?}");
            }
        }
        assert!(
            two.net(0, Counter::DatagramsHandedOver) + two.net(1, Counter::DatagramsHandedOver) > 0
        );
        two.assert_balanced();
    }
}

/// Requests only (they leave whole): what each worker set out to send
/// balances with what it sent, a datagram handed over counted where it is
/// sent, not where it was first reassembled.
#[test]
fn a_datagram_handed_over_is_sent_once_by_the_owner_and_the_sending_sides_balance() {
    let owners = Ownership::new(2);
    for (client, vip) in [
        ("198.18.0.2", "198.18.0.100"),
        ("2001:db8::2", "2001:db8::100"),
    ] {
        let v6 = client.contains(':');
        let mut two = Two::new();
        for i in 0..16u16 {
            let cport = 50000 + i * 3;
            let k = u32::from(i) * 13;
            let ident = if v6 { 0x0200_0000 + k } else { 0x2000 + k };
            let (_, pieces) = fragments(client, vip, cport, 53, ident, 0);
            for (j, p) in pieces.iter().enumerate() {
                two.receive(j % 2, 0, p);
            }
            let sent = two.sent();
            let owner = owners.owner(ip(client), cport);
            assert_eq!((sent[owner].len(), sent[1 - owner].len()), (1, 0));
        }
        assert!(two.net(0, Counter::FragmentsHandedOver) > 0);
        assert!(two.net(1, Counter::FragmentsHandedOver) > 0);
        for w in 0..2 {
            let named = two.named(w);
            let s = Sends::of(named.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
            assert_eq!(s.attempted, s.outcomes, "worker {w}: {s:?}");
            assert!(s.attempted > 0);
        }
        two.assert_balanced();
    }
}
