//! `uvs-pktgen`: the benchmark's traffic generator and sink.
//!
//! Why its own: testpmd's `flowgen` sends fixed private-range addresses and
//! `txonly` cannot receive (dpdk-notes.md), and a load balancer needs many
//! clients toward one VIP. This program sends TCP or UDP flows from a client
//! prefix in 198.18.0.0/15 toward a VIP over one DPDK port (net_memif in the
//! benchmarks), receives what the device under test sends back on the same
//! port, checks that it was forwarded the expected way, and prints one JSON
//! line with the rates over a fixed window.
//!
//! One lcore does everything, in this order per turn: take a burst of mbufs
//! from the prefilled transmit pool (one bulk call), patch each packet's
//! flow fields, transmit (what the ring refuses is retried next turn, so the
//! generator is paced by the peer), receive a burst, check and count it,
//! free it in bulk. Nothing on the loop allocates, formats or makes a
//! syscall; the peer's telemetry is read only at the window's edges.
//!
//! With `--replies` (NAT), the sink also plays the real servers: each
//! request that reached its server correctly is answered in place (the
//! received mbuf becomes the answer) and sent back to the device under test,
//! and answers that come back to their client from the VIP are counted as
//! round trips (`check.rs`).
//!
//! With `--flood N` (TCP), the measurement window also carries N spoofed
//! SYNs from random sources of `--flood-clients` per established-flow
//! packet, and the sink counts each class apart (`flood.rs`); with
//! `--handshake` it completes the real clients' handshakes (the real
//! server's SYN-ACK, the client's ACK to a SYN-ACK or a SYN proxy's
//! cookie), and with `--drop-refused` what the peer's ring refuses is
//! dropped and counted per class, as on a wire, instead of retried.
//!
//! Usage: `uvs-pktgen [OPTIONS] -- <EAL arguments>`.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dataplane::buf::PacketBuf;
use dataplane::dpdk::{tsc_cycles, tsc_hz, Burst, Eal, Mempool, Port, PortConf, BURST_SIZE};
use serde_json::json;

use uvs_pktgen::check::{make_reply, Checker, Expect, Tunnel};
use uvs_pktgen::flood::{
    self, Class, FloodArgs, FloodMix, FloodSink, FloodSource, SinkCounts, Verdict, CLASSES,
};
use uvs_pktgen::flows::FlowSpace;
use uvs_pktgen::sched;
use uvs_pktgen::schedule::ScheduleArgs;
use uvs_pktgen::service::BenchService;
use uvs_pktgen::telemetry::{EthStats, Telemetry};
use uvs_pktgen::template::{FrameSpec, Proto, Template, TCP_SYN};

#[derive(Debug, Parser)]
#[command(
    name = "uvs-pktgen",
    about = "UVS traffic generator and sink (TCP/UDP flows toward a VIP)"
)]
struct Args {
    /// DPDK device to send on and receive from (vdev spec or PCI address).
    #[arg(
        long,
        default_value = "net_memif0,role=client,socket=/run/uvs-bench/memif.sock"
    )]
    device: String,
    /// MAC address to give the port (default: the driver's).
    #[arg(long, value_parser = parse_mac)]
    mac: Option<[u8; 6]>,
    /// Destination MAC of the generated frames (the device under test's).
    #[arg(long, value_parser = parse_mac, default_value = "02:00:00:00:00:02")]
    dst_mac: [u8; 6],
    /// tcp or udp.
    #[arg(long, default_value = "udp", value_parser = parse_proto)]
    proto: Proto,
    /// VIP and port the flows go to.
    #[arg(long, default_value = "198.18.0.100:80")]
    vip: SocketAddrV4,
    /// Client prefix the flows come from (a part of 198.18.0.0/15).
    #[arg(long, default_value = "198.18.128.0/17")]
    clients: String,
    #[command(flatten)]
    sched: ScheduleArgs,
    /// Real servers of the service (198.18.1.11.., MAC 02:00:00:00:01:xx,
    /// as memif-uvsd.sh configures them): nat, dr and tun frames must reach
    /// one of them.
    #[arg(long, default_value_t = 4)]
    servers: u8,
    /// The service's scheduler: with sh or mh each client must reach the
    /// server that scheduler picks for it.
    #[arg(long, default_value = "rr")]
    scheduler: String,
    /// TUN encapsulation: ipip, gre or gue:PORT.
    #[arg(long, default_value = "ipip", value_parser = Tunnel::parse)]
    tunnel: Tunnel,
    /// Play the real servers too (with --expect nat): answer every request,
    /// count the answers that come back to their client.
    #[arg(long)]
    replies: bool,
    /// Visit established flows in order instead of scattered.
    #[arg(long)]
    sequential: bool,
    /// Ethernet frame size including FCS (64 .. 1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Transmit at most this many million packets per second (default: as
    /// fast as the peer takes them).
    #[arg(long)]
    rate_mpps: Option<f64>,
    /// Seconds of traffic before the window (and at least one packet per
    /// established flow).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Milliseconds of receiving after transmit stops (in-flight packets).
    #[arg(long, default_value_t = 200)]
    drain_ms: u64,
    /// What the device under test does: any, io, macswap, nat, dr, tun.
    #[arg(long, default_value = "any", value_parser = parse_expect)]
    expect: Expect,
    /// Telemetry socket of the device under test, read at the window edges.
    #[arg(long)]
    peer_telemetry: Option<PathBuf>,
    /// Ethdev port number of the device under test in its telemetry.
    #[arg(long, default_value_t = 0)]
    peer_port: u16,
    /// Mbufs in the transmit pool.
    #[arg(long, default_value_t = 8191)]
    tx_pool: u32,
    /// Seconds to wait for the link (memif peer connected).
    #[arg(long, default_value_t = 10.0)]
    link_wait: f64,
    #[command(flatten)]
    fl: FloodArgs,
    /// Drop (and count per class) what the peer's ring refuses during the
    /// window, as a wire into a full receive ring would, instead of
    /// retrying it (before the window everything is retried, so that every
    /// established flow opens).
    #[arg(long)]
    drop_refused: bool,
    /// Transmit at most this many million packets per second while the
    /// established flows open (their first round).
    #[arg(long)]
    open_mpps: Option<f64>,
    /// Free text copied into the JSON result (scenario name).
    #[arg(long, default_value = "")]
    label: String,
    /// EAL arguments (after `--`).
    #[arg(last = true)]
    eal: Vec<String>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!(
            "MAC must be six hex bytes like 02:00:00:00:00:02, got {s:?}"
        ));
    }
    for (o, p) in m.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC byte {p:?} in {s:?}"))?;
    }
    Ok(m)
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("protocol must be tcp or udp, got {s:?}")),
    }
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    Expect::parse(s)
        .ok_or_else(|| format!("expect must be any, io, macswap, nat, dr or tun, got {s:?}"))
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    built: u64,
    tx: u64,
    rx: u64,
    /// Answers sent to the device under test, and answers dropped because
    /// the last turn's still waited for the ring.
    replies: u64,
    reply_refused: u64,
    alloc_fail: u64,
    tx_stalls: u64,
    /// Per class (established data, SYN of a real client, flood SYN):
    /// taken by the peer's ring, refused by it (`--drop-refused`).
    class_tx: [u64; CLASSES],
    class_refused: [u64; CLASSES],
    /// At the sink, per class (`flood::FloodSink`).
    sink: SinkCounts,
    /// Handshake answers queued, and lost because the answer burst was full.
    hs_answers: u64,
    hs_refused: u64,
}

/// Traffic classes of what the generator sends (indices of `class_tx`).
const EST: usize = Class::Established as usize;
const SYN: usize = Class::Syn as usize;
const FLOOD: usize = Class::Flood as usize;

/// Queues the handshake answer `m` becomes (`flood::answer_handshake`);
/// drops `m` when it has none.
fn answer(m: dataplane::dpdk::Mbuf, director: [u8; 6], answers: &mut Burst, c: &mut Counts) {
    let Some(m) = flood::answer_mbuf(m, director) else {
        return;
    };
    if answers.push(m).is_err() {
        c.hs_refused += 1;
    } else {
        c.hs_answers += 1;
    }
}

/// The flood benchmark's figures over the window: what was sent per class
/// (at the window's end), what the sink saw (through the drain).
fn flood_json(
    a: &Args,
    w: &Counts,
    end: &Counts,
    last: &Counts,
    window_s: f64,
) -> serde_json::Value {
    if a.fl.flood == 0 && !a.fl.handshake {
        return serde_json::Value::Null;
    }
    let sent = |i: usize| end.class_tx[i] - w.class_tx[i];
    let refused = |i: usize| end.class_refused[i] - w.class_refused[i];
    let est_offered = sent(EST) + refused(EST);
    let est_rx = last.sink.est_rx - w.sink.est_rx;
    let flood_offered = sent(FLOOD) + refused(FLOOD);
    json!({
        "per_established_packet": a.fl.flood,
        "clients": a.fl.flood_clients,
        "handshake": a.fl.handshake,
        "drop_refused": a.drop_refused,
        "established_offered": est_offered,
        "established_taken": sent(EST),
        "established_refused_by_ring": refused(EST),
        "established_forwarded": est_rx,
        "established_forwarded_share": if est_offered > 0 { est_rx as f64 / est_offered as f64 } else { 0.0 },
        "established_offered_mpps": est_offered as f64 / window_s / 1e6,
        "syn_offered": sent(SYN) + refused(SYN),
        "syn_refused_by_ring": refused(SYN),
        "syn_at_servers": last.sink.syn_rx - w.sink.syn_rx,
        "syn_at_servers_before_window": w.sink.syn_rx,
        "client_synacks_before_window": w.sink.client_synack,
        "client_synacks": last.sink.client_synack - w.sink.client_synack,
        "flood_offered": flood_offered,
        "flood_offered_mpps": flood_offered as f64 / window_s / 1e6,
        "flood_taken": sent(FLOOD),
        "flood_refused_by_ring": refused(FLOOD),
        "flood_at_servers": last.sink.flood_fwd - w.sink.flood_fwd,
        "flood_synacks": last.sink.flood_synack - w.sink.flood_synack,
        "handshake_answers": last.hs_answers - w.hs_answers,
        "handshake_answers_refused": last.hs_refused - w.hs_refused,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uvs-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let clients = FlowSpace::parse(&a.clients).map_err(|e| e.to_string())?;
    if a.sched.mode != "new" && !(1..=clients.len() / 2).contains(&a.sched.flows) {
        return Err(format!(
            "--flows must be 1..={} for client prefix {}",
            clients.len() / 2,
            a.clients
        ));
    }
    if a.replies && a.expect != Expect::Nat {
        return Err("--replies needs --expect nat (DR and TUN answers bypass the director)".into());
    }
    if (a.fl.flood > 0 || a.fl.handshake) && a.proto != Proto::Tcp {
        return Err("--flood and --handshake need --proto tcp".into());
    }
    if a.fl.handshake && a.expect != Expect::Nat {
        return Err("--handshake needs --expect nat (the answers go through the director)".into());
    }
    let mut flood_src = FloodSource::new(&a.fl.flood_clients, 0x5eed_f100d)?;
    let sink = FloodSink {
        flood: flood_src.clone(),
        vip: *a.vip.ip(),
        clients,
        classes: a.fl.flood > 0 || a.fl.handshake,
        handshake: a.fl.handshake,
    };
    if a.fl.flood > 0
        && (flood_src.contains(u32::from(*a.vip.ip())) || {
            let (c0, _) = clients.flow(0);
            flood_src.contains(c0)
        })
    {
        return Err("--flood-clients must not overlap the clients or the VIP".into());
    }
    if !(a.duration > 0.0 && a.warmup >= 0.0 && a.link_wait >= 0.0) {
        return Err("durations must be positive".into());
    }
    let mut eal = Eal::init(&a.eal).map_err(|e| e.to_string())?;
    eal.quiet_end();
    let hz = tsc_hz();
    let rx_pool = Arc::new(Mempool::new(&eal, "gen_rx", 8191, 256, -1).map_err(|e| e.to_string())?);
    let tx_pool = Mempool::new(&eal, "gen_tx", a.tx_pool, 256, -1).map_err(|e| e.to_string())?;
    let port = Arc::new(
        Port::open(
            &eal,
            &PortConf {
                name: "gen".into(),
                device: a.device.clone(),
                rx_queues: 1,
                tx_queues: 1,
                mac: a.mac,
                descriptors: 1024,
                tap_shares_mac: false,
            },
            rx_pool,
        )
        .map_err(|e| e.to_string())?,
    );
    let own_mac = port.mac();
    let tpl = Template::new(&FrameSpec {
        src_mac: own_mac,
        dst_mac: a.dst_mac,
        vip: *a.vip.ip(),
        vport: a.vip.port(),
        proto: a.proto,
        frame_size: a.size,
    })
    .map_err(|e| e.to_string())?;
    let servers = BenchService {
        protocol: a.proto.number(),
        vip: a.vip,
        scheduler: a.scheduler.clone(),
        method: match a.expect {
            Expect::Dr => "dr",
            Expect::Tun => "tun",
            _ => "nat",
        }
        .into(),
        tunnel: a.tunnel,
        servers: a.servers,
        persistent: None,
    }
    .expected_servers(clients)?;
    let checker = Checker {
        expect: a.expect,
        own_mac,
        peer_mac: a.dst_mac,
        vip: *a.vip.ip(),
        vport: a.vip.port(),
        proto: a.proto.number(),
        clients,
        servers: Arc::new(servers),
        tunnel: a.tunnel,
    };

    // Prefill every mbuf of the transmit pool with the template.
    let mut all = Vec::with_capacity(a.tx_pool as usize);
    while let Some(mut m) = tx_pool.alloc() {
        if !m.set_len(tpl.len()) {
            return Err("frame does not fit an mbuf".into());
        }
        m.data_mut().copy_from_slice(&tpl.bytes);
        all.push(m);
    }
    let prefilled = all.len();
    drop(all);

    let mut q = port.claim(Some(0), 0).map_err(|e| e.to_string())?;
    let link_deadline = Instant::now() + Duration::from_secs_f64(a.link_wait);
    while !port.link_up() {
        if Instant::now() > link_deadline {
            return Err(format!(
                "link of {} not up after {} s (is the peer running?)",
                a.device, a.link_wait
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut peer = match &a.peer_telemetry {
        Some(p) => Some(Telemetry::connect(p).map_err(|e| e.to_string())?),
        None => None,
    };

    let mut sched = a.sched.schedule(clients.len(), a.sequential)?;
    let frame_len = tpl.len();
    let rate_per_cycle = a.rate_mpps.map(|r| r * 1e6 / hz as f64);
    let open_per_cycle = a.open_mpps.map(|r| r * 1e6 / hz as f64);
    // The class of each packet of `txb`, from `cls_next` on (what a
    // partial transmit left is sent first next turn).
    let mut classes = [0u8; BURST_SIZE];
    let mut cls_next = 0usize;
    let mut mix = FloodMix::new(a.fl.flood);
    let secs = |s: f64| (s * hz as f64) as u64;

    let mut c = Counts::default();
    let mut txb = Burst::new();
    let mut rxb = Burst::new();
    let mut answers = Burst::new();
    let mut first_invalid = [0u8; 64];
    let mut first_invalid_len = 0usize;

    let t0 = tsc_cycles();
    let warm_end = t0 + secs(a.warmup);
    let mut at_window = None::<(u64, Counts, Option<EthStats>)>;
    let peer_pid = peer.as_ref().and_then(|t| t.pid);
    let mut sched_start = (None, HashMap::new());
    let mut sched_end = (None, HashMap::new());
    let mut window_end = u64::MAX;
    let mut tx_end = None::<u64>;
    let mut drain_end = u64::MAX;
    let mut peer_end = None;
    let mut counts_end = Counts::default();
    loop {
        let now = tsc_cycles();
        if at_window.is_none() && now >= warm_end && sched.opened() {
            let ps = match peer.as_mut() {
                Some(t) => Some(t.eth_stats(a.peer_port).map_err(|e| e.to_string())?),
                None => None,
            };
            sched_start = (
                sched::this_thread(),
                peer_pid.map(sched::threads).unwrap_or_default(),
            );
            let start = tsc_cycles();
            at_window = Some((start, c, ps));
            window_end = start + secs(a.duration);
        }
        if tx_end.is_none() && now >= window_end {
            counts_end = c;
            tx_end = Some(now);
            sched_end = (
                sched::this_thread(),
                peer_pid.map(sched::threads).unwrap_or_default(),
            );
            if let Some(t) = peer.as_mut() {
                peer_end = Some(t.eth_stats(a.peer_port).map_err(|e| e.to_string())?);
            }
            drain_end = tsc_cycles() + secs(a.drain_ms as f64 / 1000.0);
            txb.clear();
            answers.clear();
        }
        if now >= drain_end {
            break;
        }
        if tx_end.is_none() && !answers.is_empty() {
            // The real servers' answers go first; new requests wait.
            c.replies += q.tx_burst(&mut answers) as u64;
        }
        if tx_end.is_none() && answers.is_empty() {
            if txb.is_empty() {
                let mut want = BURST_SIZE;
                let cap = if sched.opened() {
                    rate_per_cycle
                } else {
                    open_per_cycle.or(rate_per_cycle)
                };
                if let Some(r) = cap {
                    let allowed = ((now - t0) as f64 * r) as u64;
                    want = allowed.saturating_sub(c.built).min(BURST_SIZE as u64) as usize;
                }
                // The flood runs during the window only.
                let flooding = a.fl.flood > 0 && at_window.is_some();
                if want > 0 {
                    if tx_pool.alloc_bulk(&mut txb, want) {
                        cls_next = 0;
                        for (m, cls) in txb.as_mut_slice().iter_mut().zip(classes.iter_mut()) {
                            m.set_len(frame_len);
                            if mix.next_is_flood(flooding) {
                                let (src, sport) = flood_src.draw();
                                tpl.patch(m.data_mut(), src, sport, TCP_SYN);
                                *cls = FLOOD as u8;
                                continue;
                            }
                            let (f, flags) = sched.next_packet();
                            let (src, sport) = clients.flow(f);
                            tpl.patch(m.data_mut(), src, sport, flags);
                            *cls = Class::of_flags(flags) as u8;
                        }
                        c.built += want as u64;
                    } else {
                        c.alloc_fail += 1;
                    }
                }
            }
            if !txb.is_empty() {
                let sent = q.tx_burst(&mut txb);
                c.tx += sent as u64;
                for &cls in &classes[cls_next..cls_next + sent] {
                    c.class_tx[usize::from(cls)] += 1;
                }
                cls_next += sent;
                if !txb.is_empty() {
                    c.tx_stalls += 1;
                    // Only in the window: the flows must all open first.
                    if a.drop_refused && at_window.is_some() {
                        for &cls in &classes[cls_next..cls_next + txb.len()] {
                            c.class_refused[usize::from(cls)] += 1;
                        }
                        txb.clear();
                    }
                }
            }
        }
        let n = q.rx_burst(&mut rxb);
        if n > 0 {
            c.rx += n as u64;
            for mut m in rxb.drain() {
                match sink.see(m.data(), &checker, &mut c.sink) {
                    Verdict::Answer => answer(m, a.dst_mac, &mut answers, &mut c),
                    Verdict::Request => {
                        if a.replies
                            && make_reply(m.data_mut(), a.dst_mac)
                            && answers.push(m).is_err()
                        {
                            // Answers from the last turn still wait: this
                            // one is lost, as on a congested wire.
                            c.reply_refused += 1;
                        }
                    }
                    Verdict::Invalid if first_invalid_len == 0 => {
                        let d = m.data();
                        first_invalid_len = d.len().min(64);
                        first_invalid[..first_invalid_len].copy_from_slice(&d[..first_invalid_len]);
                    }
                    Verdict::Invalid | Verdict::Done => {}
                }
            }
        }
    }
    let (w_start, w_counts, peer_start) =
        at_window.ok_or("the run ended before the measurement window")?;
    let w_end = tx_end.unwrap_or(w_start);
    let window_s = (w_end - w_start) as f64 / hz as f64;
    let tx = counts_end.tx - w_counts.tx;
    let rx = counts_end.rx - w_counts.rx;
    let valid = counts_end.sink.valid - w_counts.sink.valid;
    let trips = counts_end.sink.trips - w_counts.sink.trips;
    let mpps = |p: u64| p as f64 / window_s / 1e6;
    // Requests and answers sent, against everything that came back.
    let lost = (c.tx + c.replies).saturating_sub(c.rx);
    let own = port.stats();
    let peer_json = match (peer_start, peer_end) {
        (Some(s), Some(e)) => {
            let d = e.since(&s);
            json!({
                "rx_mpps": mpps(d.ipackets), "tx_mpps": mpps(d.opackets),
                "rx_pkts": d.ipackets, "tx_pkts": d.opackets,
                "imissed": d.imissed, "oerrors": d.oerrors, "rx_nombuf": d.rx_nombuf,
            })
        }
        _ => serde_json::Value::Null,
    };
    let window_ns = window_s * 1e9;
    let share = |t: Option<sched::Times>| {
        t.map(|t| json!({"cpu": t.cpu_ns as f64 / window_ns, "wait": t.wait_ns as f64 / window_ns}))
    };
    let gen_sched = match (sched_start.0, sched_end.0) {
        (Some(a), Some(b)) => Some(sched::Times {
            cpu_ns: b.cpu_ns.saturating_sub(a.cpu_ns),
            wait_ns: b.wait_ns.saturating_sub(a.wait_ns),
        }),
        _ => None,
    };
    let peer_sched = sched::busiest(&sched_start.1, &sched_end.1);
    let mut result = json!({
        "tool": "uvs-pktgen",
        "label": a.label,
        "device": a.device,
        "proto": a.proto.name(),
        "mode": a.sched.mode,
        "flows": if a.sched.mode == "new" { 0 } else { a.sched.flows },
        "new_every": if a.sched.mode == "mixed" { a.sched.new_every } else if a.sched.mode == "new" { 1 } else { 0 },
        "frame_size": a.size,
        "expect": a.expect.name(),
        "rate_limit_mpps": a.rate_mpps,
        "window_s": window_s,
        "tx_pkts": tx,
        "rx_pkts": rx,
        "rx_valid": valid,
        "rx_invalid": rx - valid,
        "tx_mpps": mpps(tx),
        "rx_mpps": mpps(rx),
        "valid_mpps": mpps(valid),
        "total_tx": c.tx,
        "total_rx": c.rx,
        "lost_pkts": lost,
        "loss_pct": if c.tx > 0 { lost as f64 * 100.0 / c.tx as f64 } else { 0.0 },
        "alloc_fail": c.alloc_fail,
        "tx_stalls": c.tx_stalls,
        "gen_imissed": own.imissed,
        "gen_rx_nombuf": own.rx_nombuf,
        "prefilled_mbufs": prefilled,
        "mac": mac_text(own_mac),
        "dst_mac": mac_text(a.dst_mac),
        "vip": a.vip.to_string(),
        "clients": a.clients,
        "peer": peer_json,
        "first_invalid_hex": first_invalid[..first_invalid_len].iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "tsc_hz": hz,
        "gen_sched": share(gen_sched),
        "peer_sched": share(peer_sched),
    });
    // Added after: one json! of every field exceeds the macro's recursion.
    for (k, v) in [
        ("replies", json!(a.replies)),
        ("scheduler", json!(a.scheduler)),
        ("round_trips", json!(trips)),
        ("round_trips_mpps", json!(mpps(trips))),
        ("total_replies", json!(c.replies)),
        ("replies_refused", json!(c.reply_refused)),
        ("flood", flood_json(a, &w_counts, &counts_end, &c, window_s)),
    ] {
        result[k] = v;
    }
    println!("{result}");
    eprintln!(
        "uvs-pktgen: {} {} {} flows, {} B: tx {:.3} Mpps, rx {:.3} Mpps ({:.3} valid as {}), loss {:.4}% over {:.2} s",
        a.proto.name(),
        a.sched.mode,
        a.sched.flows,
        a.size,
        mpps(tx),
        mpps(rx),
        mpps(valid),
        a.expect.name(),
        if c.tx > 0 { lost as f64 * 100.0 / c.tx as f64 } else { 0.0 },
        window_s
    );
    // Mbufs still held go back to their pools before the pools go.
    answers.clear();
    txb.clear();
    rxb.clear();
    drop(q);
    drop(port);
    drop(tx_pool);
    drop(eal);
    Ok(())
}
