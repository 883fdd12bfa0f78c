//! A spoofed SYN flood against one worker's load-balancing stage, with and
//! without the SYN proxy (`--synproxy`), in one process on one core.
//!
//! What it measures: 100 k (`--flows`) established NAT connections send one
//! data packet each in turn; after each, `--flood` SYNs from spoofed
//! sources (198.19.0.0/16, random ports) hit the same service, and every
//! `--new-every` data packets a real client opens a new connection (the
//! whole handshake, through the proxy when it is on). Reported: the share of
//! established-flow packets forwarded to their real server, the table's
//! fill, the new real connections refused, and the time per packet of each
//! kind. The stage is the daemon's own (`dataplane::lb::Lb`), with the
//! clock advancing in real time; the generator is this loop, so "full
//! rate" is as fast as the stage takes the packets.
//!
//! This is not the two-process memif benchmark (uvs-pktgen against uvsd):
//! nothing is lost in rings here, so the forwarded share shows what the
//! table does to established flows, not what CPU starvation does.
//!
//! Usage: `cargo run --release -p uvs-bench --example synflood -- [--synproxy]
//! [--flows N] [--capacity N] [--flood N] [--new-every N] [--seconds S]`

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use dataplane::buf::{PacketBuf, TestBuf};
use dataplane::config::ConfigStore;
use dataplane::lb::{Action, Egress, Lb, LbDrop, LbSettings};
use dataplane::wire::parse_packet;
use etherparse::{PacketBuilder, TcpHeaderSlice};
use uvs_model::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use uvs_model::ops::ConfigOp;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SYN: u8 = 0x02;
/// Distinct spoofed SYNs, cycled.
const FLOOD_FRAMES: usize = 1 << 19;
const ACK: u8 = 0x10;

struct Routes;
impl Egress for Routes {
    fn route(&self, _dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((IpAddr::from([198, 18, 1, 1]), 1500))
    }
}

struct Args {
    synproxy: bool,
    flows: u32,
    capacity: u32,
    flood: u32,
    new_every: u32,
    seconds: f64,
}

fn args() -> Args {
    let mut a = Args {
        synproxy: false,
        flows: 100_000,
        capacity: 1 << 18,
        flood: 1,
        new_every: 100,
        seconds: 5.0,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let num = |i: usize| -> f64 {
            v.get(i + 1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", v[i]))
        };
        match v[i].as_str() {
            "--synproxy" => a.synproxy = true,
            "--flows" => a.flows = num(i) as u32,
            "--capacity" => a.capacity = num(i) as u32,
            "--flood" => a.flood = num(i) as u32,
            "--new-every" => a.new_every = num(i) as u32,
            "--seconds" => a.seconds = num(i),
            other => panic!("unknown argument {other}"),
        }
        if v[i] != "--synproxy" {
            i += 1;
        }
        i += 1;
    }
    a
}

/// A TCP segment (IPv4, MSS and SACK permitted on a SYN, 10 bytes of
/// payload on a data packet), in `buf`.
#[allow(clippy::too_many_arguments)]
fn segment(
    buf: &mut Vec<u8>,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) {
    buf.clear();
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, seq, 29200);
    if flags & SYN != 0 {
        b = b
            .syn()
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
            ])
            .unwrap();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    let payload: &[u8] = if flags == ACK { b"0123456789" } else { b"" };
    b.write(buf, payload).unwrap();
}

struct Stage {
    lb: Lb,
    t0: Instant,
    out: TestBuf,
}

impl Stage {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Runs one frame through the stage; the rewritten frame stays in
    /// `self.out`.
    fn run(&mut self, frame: &[u8]) -> Action {
        self.out = TestBuf::with_capacity(frame, 256);
        let Ok(m) = parse_packet(self.out.data()) else {
            return Action::Drop(LbDrop::Rewrite);
        };
        let now = self.now();
        self.lb.process(&mut self.out, &m, now, &Routes)
    }

    /// `(src, sport, dst, dport, seq, ack)` of the last output.
    fn last(&self) -> (Ipv4Addr, u16, Ipv4Addr, u16, u32, u32) {
        let d = self.out.data();
        let m = parse_packet(d).unwrap();
        let t = TcpHeaderSlice::from_slice(&d[usize::from(m.l4_offset)..]).unwrap();
        let (IpAddr::V4(s), IpAddr::V4(dd)) = (m.src, m.dst) else {
            unreachable!()
        };
        (
            s,
            m.sport,
            dd,
            m.dport,
            t.sequence_number(),
            t.acknowledgment_number(),
        )
    }

    /// A real client's whole handshake (through the proxy when it is on);
    /// `true` when the real server saw its handshake completed.
    fn open(&mut self, f: &mut Vec<u8>, client: Ipv4Addr, port: u16, proxy: bool) -> bool {
        segment(f, client, port, VIP, 80, 1000, 0, SYN);
        let a = self.run(f);
        let (rs, rport) = if proxy {
            if a != Action::Forward(IpAddr::V4(client)) {
                return false;
            }
            let cookie = self.last().4;
            segment(f, client, port, VIP, 80, 1001, cookie.wrapping_add(1), ACK);
            let Action::Forward(IpAddr::V4(rs)) = self.run(f) else {
                return false;
            };
            (rs, self.last().3)
        } else {
            let Action::Forward(IpAddr::V4(rs)) = a else {
                return false;
            };
            (rs, self.last().3)
        };
        // The real server's SYN-ACK.
        segment(f, rs, rport, client, port, 5000, 1001, SYN | ACK);
        let a = self.run(f);
        if proxy {
            return a == Action::Forward(IpAddr::V4(rs));
        }
        if a != Action::Forward(IpAddr::V4(client)) {
            return false;
        }
        segment(f, client, port, VIP, 80, 1001, 5001, ACK);
        matches!(self.run(f), Action::Forward(_))
    }
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    // 198.18.128.0/17: 32 k addresses, 4 ports each for 128 k flows.
    (
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i / 4),
        20000 + (i % 4) as u16,
    )
}

fn main() {
    let a = args();
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    };
    let mut st = ConfigStore::new();
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = "rr".into();
    cfg.synproxy = a.synproxy;
    st.apply(&ConfigOp::AddService(cfg)).unwrap();
    for i in 0..4u8 {
        st.apply(&ConfigOp::AddDest(
            key,
            DestConfig {
                addr: IpAddr::from([198, 18, 1, 11 + i]),
                port: 80,
                method: ForwardMethod::Masq,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
        ))
        .unwrap();
    }
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: a.capacity,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    let mut s = Stage {
        lb,
        t0: Instant::now(),
        out: TestBuf::new(&[]),
    };
    let mut f = Vec::with_capacity(128);

    let t = Instant::now();
    let mut opened = 0;
    for i in 0..a.flows {
        let (c, p) = client(i);
        opened += u32::from(s.open(&mut f, c, p, a.synproxy));
    }
    let setup = t.elapsed();
    assert_eq!(opened, a.flows, "every established flow opened");

    // Data packets of the established flows, prebuilt (the client's seq
    // and ack as after the handshake: 1001 and 5001 or cookie + 1; the
    // stage does not check them).
    let frames: Vec<Vec<u8>> = (0..a.flows)
        .map(|i| {
            let (c, p) = client(i);
            let mut v = Vec::new();
            segment(&mut v, c, p, VIP, 80, 1001, 5001, ACK);
            v
        })
        .collect();
    // Spoofed SYNs, prebuilt: more distinct sources and ports than the
    // table has room for, from 198.19.0.0/16.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let flood: Vec<Vec<u8>> = (0..FLOOD_FRAMES)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let src =
                Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) | (rng as u32 & 0xffff));
            let mut v = Vec::new();
            segment(
                &mut v,
                src,
                (rng >> 16) as u16 | 1024,
                VIP,
                80,
                (rng >> 32) as u32,
                0,
                SYN,
            );
            v
        })
        .collect();
    let (mut data_sent, mut data_fwd, mut flood_sent) = (0u64, 0u64, 0u64);
    let (mut new_tried, mut new_ok) = (0u64, 0u64);
    let (mut data_ns, mut flood_ns) = (0u128, 0u128);
    let mut fresh = 0u32;
    let deadline = Duration::from_secs_f64(a.seconds);
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < deadline {
        for _ in 0..64 {
            let t = Instant::now();
            let fr = &frames[i % frames.len()];
            let a_ = s.run(fr);
            data_ns += t.elapsed().as_nanos();
            data_sent += 1;
            if matches!(a_, Action::Forward(IpAddr::V4(rs)) if rs.octets()[2] == 1) {
                data_fwd += 1;
            }
            i += 1;
            let t = Instant::now();
            for _ in 0..a.flood {
                let _ = s.run(&flood[flood_sent as usize % flood.len()]);
                flood_sent += 1;
            }
            flood_ns += t.elapsed().as_nanos();
            if a.new_every > 0 && (i as u64).is_multiple_of(u64::from(a.new_every)) {
                // A real new client: 198.18.64.0/18, one port each.
                let c = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 64, 0)) + fresh % 16384);
                let p = 30000 + (fresh / 16384) as u16;
                fresh += 1;
                new_tried += 1;
                new_ok += u64::from(s.open(&mut f, c, p, a.synproxy));
            }
        }
        let now = s.now();
        s.lb.housekeeping(now, 256);
    }
    let secs = start.elapsed().as_secs_f64();
    let c = s.lb.counters();
    let created = c.created.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{{\"synproxy\": {}, \"flows\": {}, \"capacity\": {}, \"flood_per_packet\": {}, \"seconds\": {:.2}, \
\"setup_us_per_flow\": {:.2}, \"data_sent\": {}, \"data_forwarded_share\": {:.6}, \
\"flood_sent\": {}, \"flood_mpps\": {:.3}, \"ns_per_data_packet\": {:.0}, \"ns_per_flood_syn\": {:.0}, \
\"table_entries\": {}, \"table_fill\": {:.4}, \"new_tried\": {}, \"new_refused\": {}, \
\"lb_drop_table_full\": {}, \"connections_created\": {}, \"synproxy_cookies_sent\": {}}}",
        a.synproxy,
        a.flows,
        a.capacity,
        a.flood,
        secs,
        setup.as_secs_f64() * 1e6 / f64::from(a.flows),
        data_sent,
        data_fwd as f64 / data_sent as f64,
        flood_sent,
        flood_sent as f64 / secs / 1e6,
        data_ns as f64 / data_sent as f64,
        flood_ns as f64 / flood_sent.max(1) as f64,
        s.lb.conns().len(),
        s.lb.conns().len() as f64 / f64::from(a.capacity),
        new_tried,
        new_tried - new_ok,
        c.drops(LbDrop::TableFull),
        created,
        c.synproxy
            .cookies_sent
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}
