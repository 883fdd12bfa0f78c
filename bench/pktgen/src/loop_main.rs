//! `uvs-loop`: the single-process benchmark — uvsd's worker pipeline between
//! ports inside one process, against an empty pipeline, on one core.
//!
//! Why: two-process memif runs on these VMs flip between a fast and a slow
//! state (dpdk-notes.md), so their absolute figures move from run to run.
//! Here the generator, the pipeline and the sink share one thread and one
//! core: nothing waits on another process, and the difference between the
//! uvsd pipeline and an empty one (rx burst straight to tx burst, as
//! testpmd's io forwarding) is the cost uvsd adds per packet. That is the
//! figure to track from commit to commit.
//!
//! The port is a `net_ring` ethdev over rings this program owns
//! (`rte_eth_from_rings`): per queue, the generator fills the rx ring and
//! the sink drains the tx ring. The pipeline is the daemon's own
//! [`Worker`] (L2/L3 stack, load-balancing stage, per-pair hand-over
//! rings), polled one turn at a time. Each turn: the generator builds a
//! burst per queue from the packet template (the whole frame is copied in,
//! as a NIC's DMA would, because NAT rewrote the last one in place),
//! enqueues it, every worker polls once, the sink checks and frees what
//! came out.
//!
//! With `--replies`, the sink also plays the real servers (NAT): each
//! request that reached its server correctly is turned into the server's
//! answer and put back on the port's receive ring, and the answer must come
//! out toward its client from the VIP (`check::Seen::Reply`): a round trip.
//! The pipeline then carries a 1:1 mix of requests and answers, and the
//! empty pipeline carries the same mix (its answers come back untouched).
//!
//! With `--workers 2`, packets are put on the queue of the worker that owns
//! their connection (`--handover none`) or of the other one (`--handover
//! all`): the difference per packet is what a hand-over costs.
//!
//! Rounds alternate the empty pipeline and uvsd, so a slow spell of the
//! machine hits both; each round prints a JSON line, the last line is the
//! summary (medians).
//!
//! With `--flood N` (TCP, NAT) the run is the SYN-flood
//! benchmark instead: the uvsd pipeline alone, spoofed SYNs beside the
//! established flows, counted per class (`loop_flood.rs`).

#[path = "loop_flood.rs"]
mod loop_flood;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::Parser;
use dataplane::buf::PacketBuf;
use dataplane::conn::shared::SharedTemplates;
use dataplane::dpdk::{
    ring_port, tsc_cycles, tsc_hz, Burst, Eal, Mempool, Port, PortConf, PortQueue, Ring,
};
use dataplane::lb::{ConfigCell, ConnDump, Lb, LbDrop, LbSettings, LbStage, PathMtus};
use dataplane::net::{Counter, Interface, L3Config, NetCounters, Prefix, Stack};
use dataplane::rss::Ownership;
use dataplane::wire::ethernet::MacAddr;
use dataplane::worker::{Mesh, Worker, WorkerParts};
use serde_json::json;

use uvs_pktgen::check::{make_reply, Checker, Expect, Seen, Tunnel};
use uvs_pktgen::flood::FloodSource;
use uvs_pktgen::flows::FlowSpace;
use uvs_pktgen::schedule::{Schedule, ScheduleArgs};
use uvs_pktgen::service::BenchService;
use uvs_pktgen::template::{FrameSpec, Proto, Template};

const DUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const RING_SLOTS: u32 = 1024;
/// The clients' gateway (the generator) when the real servers answer.
const GEN_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

#[derive(Debug, Parser)]
#[command(
    name = "uvs-loop",
    about = "uvsd's pipeline against an empty one, in one process on one core"
)]
struct Args {
    /// Forwarding method of the real servers: nat, dr, tun or fullnat
    /// (16 local addresses from 198.18.0.50); or snat: no service, the
    /// clients' packets are routed to the "VIP" address (a host on the
    /// port's segment) with their source masqueraded (`nat POSTROUTING -s
    /// <clients> -j MASQUERADE`, forwarding on).
    #[arg(long, default_value = "nat", value_parser = ["nat", "dr", "tun", "fullnat", "snat"])]
    method: String,
    /// tcp or udp.
    #[arg(long, default_value = "udp", value_parser = ["tcp", "udp"])]
    proto: String,
    #[command(flatten)]
    sched: ScheduleArgs,
    /// The service's scheduler (`-s`). With sh or mh the sink checks that
    /// each client went to the server that scheduler picks for it.
    #[arg(long, default_value = "rr")]
    scheduler: String,
    /// TUN encapsulation: ipip, gre or gue:PORT (`--tun-type`).
    #[arg(long, default_value = "ipip", value_parser = Tunnel::parse)]
    tunnel: Tunnel,
    /// The sink plays the real servers (NAT, FULLNAT): every request answered,
    /// the answers forwarded back through the pipeline and checked.
    #[arg(long)]
    replies: bool,
    /// Ethernet frame size including FCS.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Workers (queues), all polled by this thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2))]
    workers: u16,
    /// With 2 workers: put packets on their owner's queue (none) or on the
    /// other worker's (all).
    #[arg(long, default_value = "none", value_parser = ["none", "all"])]
    handover: String,
    /// Real servers.
    #[arg(long, default_value_t = 4)]
    servers: u8,
    /// Make the service persistent (`-p SECS`): every new connection then
    /// looks its client's template up first.
    #[arg(long)]
    persistent: Option<u32>,
    /// Give the port a kernel interface as uvsd does with `kernel = ...`:
    /// the workers get their rings to and from the exception thread (none
    /// runs; the traffic is not excepted), to measure what the exception
    /// path costs the traffic that does not take it.
    #[arg(long)]
    kernel: bool,
    /// An `ipset save` file loaded into the director (`ipset restore`).
    #[arg(long)]
    ipset_restore: Option<std::path::PathBuf>,
    /// An `iptables-save` file loaded into the director
    /// (`iptables-restore`); its `-m set` rules may use the sets of
    /// `--ipset-restore`.
    #[arg(long)]
    iptables_restore: Option<std::path::PathBuf>,
    /// Rounds of each pipeline (alternating).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Seconds of each measurement window.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds of traffic before each window (and every established flow
    /// opened once before the first).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Free text copied into the JSON lines.
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    fl: uvs_pktgen::flood::FloodArgs,
    /// An IPVS tunable for the director, as `sysctl -w` takes it without
    /// the prefix (`synproxy=1`, `drop_entry=1`); repeatable.
    #[arg(long)]
    sysctl: Vec<String>,
    /// Connection-table entries per worker (default: sized for the run).
    #[arg(long)]
    conn_capacity: Option<u32>,
    /// EAL arguments (after `--`; default: one lcore, no huge pages).
    #[arg(last = true)]
    eal: Vec<String>,
}

/// One of the two pipelines under test.
enum Pipeline {
    /// rx burst straight to tx burst on the same queue.
    Empty(Vec<PortQueue>),
    /// The daemon's workers.
    Uvsd(Vec<Worker<LbStage>>),
}

impl Pipeline {
    fn name(&self) -> &'static str {
        match self {
            Pipeline::Empty(_) => "empty",
            Pipeline::Uvsd(_) => "uvsd",
        }
    }

    #[inline]
    fn poll(&mut self, b: &mut Burst) {
        match self {
            Pipeline::Empty(qs) => {
                for q in qs {
                    if q.rx_burst(b) > 0 {
                        q.tx_burst(b);
                        b.clear();
                    }
                }
            }
            Pipeline::Uvsd(ws) => {
                for w in ws {
                    w.poll();
                }
            }
        }
    }
}

/// What one round measured.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    sent: u64,
    received: u64,
    /// Requests and answers that came out as expected.
    valid: u64,
    /// Answers that came out as expected: completed round trips.
    trips: u64,
    secs: f64,
    /// Share of the window this thread spent on a CPU (below ~0.9 the
    /// round measured the machine's other tenants, not the pipeline).
    cpu_share: Option<f64>,
}

impl Round {
    fn mpps(&self) -> f64 {
        self.valid as f64 / self.secs / 1e6
    }
}

/// The generator and the sink around the port's rings.
struct Traffic {
    pool: Arc<Mempool>,
    tpl: Template,
    clients: FlowSpace,
    checker: Checker,
    owners: Ownership,
    all_handover: bool,
    /// Answer each valid request (`--replies`), as this MAC's real server.
    replies: Option<[u8; 6]>,
    rx: Vec<Arc<Ring>>,
    tx: Vec<Arc<Ring>>,
    /// Per queue: generated packets not yet taken by the ring.
    pending: Vec<Burst>,
    /// Packets received from each pipeline, warm-up included (with
    /// callgrind's `--toggle-collect='*Worker*poll*'` this gives the
    /// instructions per packet of the uvsd pipeline).
    total: [u64; 2],
    /// Frames the sink refused, per pipeline, warm-up included.
    invalid: [u64; 2],
    hz: u64,
}

impl Traffic {
    /// Runs `pipe` for `warmup` seconds (and until every established flow
    /// was opened), then measures `duration` seconds.
    fn round(&mut self, pipe: &mut Pipeline, sched: &mut Schedule, a: &Args) -> Round {
        let which = usize::from(matches!(pipe, Pipeline::Uvsd(_)));
        let hz = self.hz as f64;
        let t0 = tsc_cycles();
        let warm_end = t0 + (a.warmup * hz) as u64;
        let mut start = None::<(u64, Round, Option<uvs_pktgen::sched::Times>)>;
        let mut r = Round::default();
        let mut scratch = Burst::new();
        let mut gen = Burst::new();
        loop {
            let now = tsc_cycles();
            match start {
                None if now >= warm_end && sched.opened() => {
                    start = Some((now, r, uvs_pktgen::sched::this_thread()))
                }
                Some((s, before, cpu0)) if now - s >= (a.duration * hz) as u64 => {
                    self.total[which] += r.received;
                    let secs = (now - s) as f64 / hz;
                    let cpu = uvs_pktgen::sched::this_thread()
                        .zip(cpu0)
                        .map(|(b, a)| b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / (secs * 1e9));
                    return Round {
                        sent: r.sent - before.sent,
                        received: r.received - before.received,
                        valid: r.valid - before.valid,
                        trips: r.trips - before.trips,
                        secs,
                        cpu_share: cpu,
                    };
                }
                _ => {}
            }
            // Generate one burst, spread over the queues.
            if self.pool.alloc_bulk(&mut gen, dataplane::dpdk::BURST_SIZE) {
                for m in gen.drain() {
                    let mut m = m;
                    let len = self.tpl.len();
                    m.set_len(len);
                    m.data_mut().copy_from_slice(&self.tpl.bytes);
                    let (f, flags) = sched.next_packet();
                    let (src, sport) = self.clients.flow(f);
                    self.tpl.patch(m.data_mut(), src, sport, flags);
                    let mut q = 0;
                    if self.rx.len() > 1 {
                        q = self.owners.owner(IpAddr::V4(Ipv4Addr::from(src)), sport);
                        if self.all_handover {
                            q = 1 - q;
                        }
                    }
                    // A full burst for this queue: the ring takes what it can.
                    if let Err(m) = self.pending[q].push(m) {
                        self.rx[q].enqueue(&mut self.pending[q]);
                        if let Err(m) = self.pending[q].push(m) {
                            drop(m);
                            continue;
                        }
                    }
                    r.sent += 1;
                }
            }
            for (ring, p) in self.rx.iter().zip(self.pending.iter_mut()) {
                if !p.is_empty() {
                    ring.enqueue(p);
                }
            }
            pipe.poll(&mut scratch);
            for (q, ring) in self.tx.iter().enumerate() {
                while ring.dequeue(&mut scratch) > 0 {
                    r.received += scratch.len() as u64;
                    for mut m in scratch.drain() {
                        match self.checker.classify(m.data()) {
                            Seen::Request => {
                                r.valid += 1;
                                if let Some(mac) = self.replies {
                                    if make_reply(m.data_mut(), mac) {
                                        // The answer goes back on the queue
                                        // the request left by.
                                        let back = if self.all_handover { 1 - q } else { q };
                                        if let Err(m) = self.pending[back].push(m) {
                                            self.rx[back].enqueue(&mut self.pending[back]);
                                            // Refused twice: lost, as on a wire.
                                            let _ = self.pending[back].push(m);
                                        }
                                    }
                                }
                            }
                            Seen::Reply => {
                                r.valid += 1;
                                r.trips += 1;
                            }
                            // The empty pipeline hands the answers back
                            // untouched: they count as carried.
                            Seen::Invalid if which == 0 && self.replies.is_some() => {
                                r.valid += 1;
                            }
                            Seen::Invalid => self.invalid[which] += 1,
                        }
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uvs-loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The service: VIP:80 under `--scheduler` with `--servers` real servers
/// 198.18.1.11.. (`--persistent` as `-p`).
fn service(a: &Args, vip: SocketAddrV4) -> BenchService {
    BenchService {
        protocol: if a.proto == "tcp" { 6 } else { 17 },
        vip,
        scheduler: a.scheduler.clone(),
        method: a.method.clone(),
        tunnel: a.tunnel,
        servers: a.servers,
        persistent: a.persistent,
    }
}

/// `--ipset-restore` and `--iptables-restore`, through the daemon's own
/// ipset and iptables grammars.
fn load_sets_and_rules(a: &Args, st: &mut dataplane::config::ConfigStore) -> Result<(), String> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    if let Some(p) = &a.ipset_restore {
        let (r, _) = control::ipset::execute(st, &["restore".to_string()], Some(&read(p)?));
        if r.code != 0 {
            return Err(format!("ipset restore: {}", r.stderr));
        }
    }
    let text = match &a.iptables_restore {
        Some(p) => Some(read(p)?),
        None if a.method == "snat" => Some(SNAT_RULES.to_string()),
        None => None,
    };
    if let Some(text) = text {
        use control::iptables::{self, Tool};
        let mut tables = dataplane::rules::tables::RuleTables::default();
        let out = iptables::execute(
            &mut tables,
            st.sets(),
            Tool::Restore,
            uvs_model::model::Family::V4,
            &[],
            Some(&text),
            &iptables::ctime(0),
        );
        if out.response.code != 0 {
            return Err(format!("iptables-restore: {}", out.response.stderr));
        }
        let program = dataplane::rules::Program::compile(
            &tables.v4,
            &tables.v6,
            &iptables::CompileNames(st.sets(), &Default::default()),
        );
        st.set_nat(Arc::new(dataplane::snat::NatRules::compile(
            &tables.v4,
            &tables.v6,
            &iptables::CompileNames(st.sets(), &Default::default()),
        )));
        st.set_rules(Arc::new(program));
    }
    Ok(())
}

/// The rule `--method snat` runs without `--iptables-restore`.
const SNAT_RULES: &str = "*nat\n-A POSTROUTING -s 198.18.128.0/17 -j MASQUERADE\nCOMMIT\n";

fn run(a: &Args) -> Result<(), String> {
    let vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 100), 80);
    let clients = FlowSpace::parse("198.18.128.0/17").map_err(|e| e.to_string())?;
    if a.sched.mode != "new" && !(1..=clients.len() / 2).contains(&a.sched.flows) {
        return Err(format!("--flows must be 1..={}", clients.len() / 2));
    }
    if !(a.duration > 0.0 && a.warmup >= 0.0 && a.rounds > 0) {
        return Err("--duration and --rounds must be positive".into());
    }
    if a.servers == 0 || a.servers > 200 {
        return Err("--servers must be 1..=200".into());
    }
    if a.replies && !matches!(a.method.as_str(), "nat" | "fullnat") {
        return Err(
            "--replies needs --method nat or fullnat (DR and TUN answers bypass the director)"
                .into(),
        );
    }
    let flood_mode = a.fl.flood > 0 || a.fl.handshake;
    let flood_source = FloodSource::new(&a.fl.flood_clients, 0x5eed_f100d)?;
    if flood_mode {
        if a.proto != "tcp" || a.method != "nat" || a.replies {
            return Err(
                "--flood and --handshake need --proto tcp --method nat, no --replies".into(),
            );
        }
        let (c0, _) = clients.flow(0);
        if flood_source.contains(c0) || flood_source.contains(u32::from(*vip.ip())) {
            return Err("--flood-clients must not overlap the clients or the VIP".into());
        }
    }
    let prefix = format!("--file-prefix=uvs-loop-{}", std::process::id());
    let eal_args: Vec<String> = if a.eal.is_empty() {
        ["-l", "0", "--no-huge", "-m", "512", "--no-pci", &prefix]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.eal.clone()
    };
    let mut eal = Eal::init(&eal_args).map_err(|e| e.to_string())?;
    eal.quiet_end();
    let nq = usize::from(a.workers);
    let pool =
        Arc::new(Mempool::new(&eal, "loop_pool", 16383, 256, -1).map_err(|e| e.to_string())?);
    let mut rx = vec![];
    let mut tx = vec![];
    for q in 0..nq {
        rx.push(Arc::new(
            Ring::new(&eal, &format!("loop_rx{q}"), RING_SLOTS, false)
                .map_err(|e| e.to_string())?,
        ));
        tx.push(Arc::new(
            Ring::new(&eal, &format!("loop_tx{q}"), RING_SLOTS, false)
                .map_err(|e| e.to_string())?,
        ));
    }
    let rx_refs: Vec<&Ring> = rx.iter().map(|r| r.as_ref()).collect();
    let tx_refs: Vec<&Ring> = tx.iter().map(|r| r.as_ref()).collect();
    // Two ports over the same rings: one for each pipeline (queues are
    // claimed once per port); only one of them is polled at a time.
    let open = |name: &str| -> Result<Arc<Port>, String> {
        let dev = ring_port(&eal, name, &rx_refs, &tx_refs).map_err(|e| e.to_string())?;
        Ok(Arc::new(
            Port::open(
                &eal,
                &PortConf {
                    name: name.into(),
                    device: dev,
                    rx_queues: a.workers,
                    tx_queues: a.workers,
                    mac: Some(DUT_MAC),
                    descriptors: 1024,
                    tap_shares_mac: false,
                },
                Arc::clone(&pool),
            )
            .map_err(|e| e.to_string())?,
        ))
    };
    let port = open("uvsd")?;
    let empty_port = open("empty")?;
    let proto = if a.proto == "tcp" {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let tpl = Template::new(&FrameSpec {
        src_mac: GEN_MAC,
        dst_mac: port.mac(),
        vip: *vip.ip(),
        vport: vip.port(),
        proto,
        frame_size: a.size,
    })
    .map_err(|e| e.to_string())?;
    let expect = match a.method.as_str() {
        "nat" => Expect::Nat,
        "dr" => Expect::Dr,
        "fullnat" => Expect::FullNat,
        "snat" => Expect::Snat,
        _ => Expect::Tun,
    };
    let snat = a.method == "snat";
    // SNAT: no service; the same checks as NAT's for the (absent) servers.
    let svc = service(a, vip);
    let svc = if snat {
        BenchService {
            method: "nat".into(),
            ..svc
        }
    } else {
        svc
    };
    let mut st = if snat {
        dataplane::config::ConfigStore::new()
    } else {
        svc.store()?
    };
    load_sets_and_rules(a, &mut st)?;
    for text in &a.sysctl {
        let mut t = uvs_model::tunables::Tunables::default();
        let which = t
            .assign(text)
            .map_err(|e| format!("--sysctl {text}: {e}"))?;
        st.apply(&uvs_model::ops::ConfigOp::SetTunable(which, t.get(which)))
            .map_err(|e| format!("--sysctl {text}: {e:?}"))?;
    }
    let servers = Arc::new(svc.expected_servers(clients)?);
    let checker = |expect| Checker {
        expect,
        own_mac: GEN_MAC,
        peer_mac: port.mac(),
        vip: *vip.ip(),
        vport: vip.port(),
        proto: proto.number(),
        clients,
        servers: Arc::clone(&servers),
        tunnel: a.tunnel,
    };

    // The uvsd pipeline: what src/daemon.rs builds, on this port.
    let l3 = L3Config {
        interfaces: vec![Interface {
            port: port.id(),
            mac: MacAddr(port.mac()),
            addrs: vec![
                Prefix::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 15).ok_or("bad prefix")?
            ],
            mtu: 1500,
            kernel: a.kernel,
        }],
        // With replies the answers go to the clients through the
        // generator, their gateway; in the flood mode the SYN-ACKs to the
        // spoofed sources too.
        routes: if a.replies || flood_mode {
            let mut r = vec![(
                Prefix::new(IpAddr::V4(Ipv4Addr::new(198, 18, 128, 0)), 17).ok_or("bad prefix")?,
                IpAddr::V4(GEN_GATEWAY),
            )];
            if flood_mode {
                let (p, len) =
                    a.fl.flood_clients
                        .split_once('/')
                        .ok_or("bad flood prefix")?;
                let p: Ipv4Addr = p.parse().map_err(|_| "bad flood prefix")?;
                let len: u8 = len.parse().map_err(|_| "bad flood prefix")?;
                r.push((
                    Prefix::new(IpAddr::V4(p), len).ok_or("bad flood prefix")?,
                    IpAddr::V4(GEN_GATEWAY),
                ));
            }
            r
        } else {
            vec![]
        },
        neighbors: servers
            .iter()
            .map(|(ip, mac)| (IpAddr::V4(ip), MacAddr(mac)))
            .chain((a.replies || flood_mode).then_some((IpAddr::V4(GEN_GATEWAY), MacAddr(GEN_MAC))))
            .chain(snat.then_some((IpAddr::V4(*vip.ip()), MacAddr(GEN_MAC))))
            .collect(),
        forwarding: dataplane::net::Forwarding {
            v4: snat,
            v6: false,
        },
    };
    let pmtu = Arc::new(PathMtus::default());
    let cell = Arc::new(ConfigCell::default());
    cell.publish(st.snapshot());
    let per_worker = match a.sched.mode.as_str() {
        // Every new flow opens a connection that lives for a minute (TCP
        // SYN_RECV) or five (UDP): room for all the uvsd rounds can create
        // at up to 2 Mpps of new flows, or 10 Mpps of mixed traffic of
        // which one packet in --new-every is new (table_full in the
        // summary says if that was not enough).
        "new" | "mixed" => {
            let secs = f64::from(a.rounds) * (a.duration + a.warmup) + 1.0;
            let new_per_s = if a.sched.mode == "new" {
                2e6
            } else {
                10e6 / a.sched.new_every.max(1) as f64
            };
            let want = (secs * new_per_s) as u64 + a.sched.flows;
            want.next_power_of_two().clamp(1 << 20, 1 << 26) as u32
        }
        _ => (a.sched.flows + a.sched.flows / 8 + 4096).min(u64::from(u32::MAX)) as u32,
    };
    let per_worker = a.conn_capacity.unwrap_or(per_worker);
    let mesh = Mesh::new(&eal, "loop_ho", nq, 1024).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = vec![];
    let mut workers = vec![];
    let shared = (nq > 1).then(|| {
        Arc::new(SharedTemplates::sized_for(
            per_worker,
            Some(dataplane::dpdk::advise_huge_pages),
        ))
    });
    for w in 0..nq {
        let c = Arc::new(NetCounters::default());
        let mut lb = Lb::new(
            w,
            LbSettings {
                capacity: per_worker,
                mem_advice: Some(dataplane::dpdk::advise_huge_pages),
                ..LbSettings::default()
            },
            // The workers' clock (ms), as the daemon starts it: the SYN
            // proxy's cookies of the first burst carry this minute.
            tsc_cycles() / (tsc_hz() / 1000).max(1),
        );
        if let Some(t) = &shared {
            lb.set_shared_templates(Arc::clone(t));
        }
        lb.set_snapshot(cell.load());
        let mut stack = Stack::new(&l3, Arc::clone(&c)).map_err(|e| e.to_string())?;
        stack.share_path_mtus(Arc::clone(&pmtu));
        stack.set_service_addrs(lb.service_addrs());
        let stage = LbStage::new(
            lb,
            w,
            Ownership::new(nq),
            Arc::clone(&cell),
            Arc::new(ConnDump::default()),
            l3.interfaces.clone(),
        );
        workers.push(Worker::new(WorkerParts {
            index: w,
            queues: vec![port
                .claim(Some(w as u16), w as u16)
                .map_err(|e| e.to_string())?],
            stack,
            stage,
            pool: Arc::clone(&pool),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&c),
            report: Arc::new(Mutex::new(None)),
            links: mesh.links(w),
            kernel: if a.kernel {
                let ring = |name: String| {
                    Ring::new(&eal, &name, 1024, false)
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                };
                (
                    Some(ring(format!("loop_exc{w}"))?),
                    Some(ring(format!("loop_exc_back{w}"))?),
                )
            } else {
                (None, None)
            },
        }));
        counters.push(c);
    }
    let lb_counters: Vec<_> = workers.iter().map(|w| w.stage().lb().counters()).collect();
    let capacity = workers
        .first()
        .map_or(0, |w| w.stage().lb().conns().capacity());
    let mut uvsd = Pipeline::Uvsd(workers);

    let mut traffic = Traffic {
        pool: Arc::clone(&pool),
        tpl,
        clients,
        checker: checker(expect),
        owners: Ownership::new(nq),
        all_handover: a.handover == "all",
        replies: a.replies.then_some(port.mac()),
        rx: rx.clone(),
        tx: tx.clone(),
        pending: (0..nq).map(|_| Burst::new()).collect(),
        total: [0; 2],
        invalid: [0; 2],
        hz: tsc_hz(),
    };
    // The same traffic for both pipelines, each from its start.
    let mut sched_uvsd = a.sched.schedule(clients.len(), false)?;
    let mut sched_empty = sched_uvsd.clone();

    let mut empty = Pipeline::Empty(
        (0..a.workers)
            .map(|q| empty_port.claim(Some(q), q))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    );
    // Workers and queues before the ports, the ports before the rings and
    // the pool, all before EAL (both ways out of the runs end so).
    macro_rules! teardown {
        () => {
            drop(uvsd);
            drop(empty);
            drop(traffic);
            drop(mesh);
            drop(port);
            drop(empty_port);
            drop(rx);
            drop(tx);
            drop(pool);
            drop(eal);
        };
    }
    if flood_mode {
        let mut f = loop_flood::Flood {
            mix: uvs_pktgen::flood::FloodMix::new(a.fl.flood),
            source: flood_source.clone(),
            sink: uvs_pktgen::flood::FloodSink {
                flood: flood_source,
                vip: *vip.ip(),
                clients,
                classes: true,
                handshake: a.fl.handshake,
            },
            lb: lb_counters.clone(),
            capacity,
            net: counters.clone(),
        };
        let mut total = json!({});
        for round in 0..a.rounds {
            let line =
                traffic.flood_round(&mut uvsd, &mut sched_uvsd, a, &mut f, &mut total, round);
            println!("{line}");
        }
        let est = total["established_offered"].as_u64().unwrap_or(0);
        let fwd = total["established_forwarded"].as_u64().unwrap_or(0);
        total["tool"] = json!("uvs-loop");
        total["label"] = json!(a.label);
        total["summary"] = json!(true);
        total["established_forwarded_share"] = json!(fwd as f64 / est.max(1) as f64);
        total["established_unaccounted"] =
            json!(est as i64 - fwd as i64 - total["established_reset"].as_i64().unwrap_or(0));
        // The run's counters (every worker's, summed), by name.
        for (name, v) in loop_flood::lb_figures_sum(&lb_counters) {
            if name == LbDrop::TableFull.as_str() {
                total["lb_drop_table_full"] = json!(v);
            } else if name.starts_with("synproxy") || name.starts_with("defense_dropped") {
                total[name] = json!(v);
            }
        }
        println!("{total}");
        eprintln!(
            "uvs-loop: flood {} per packet, {} flows, {:?}: {fwd} of {est} established packets forwarded ({:.4} %)",
            a.fl.flood,
            a.sched.flows,
            a.sysctl,
            fwd as f64 * 100.0 / est.max(1) as f64
        );
        teardown!();
        return Ok(());
    }
    let mut mpps: [Vec<f64>; 2] = [vec![], vec![]];
    let mut trips = vec![];
    let mut cpu: [Vec<Option<f64>>; 2] = [vec![], vec![]];
    for round in 0..a.rounds {
        // Alternate which goes first, so neither always follows the other.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (pipe, sched, exp) = if which == 0 {
                (&mut empty, &mut sched_empty, Expect::Io)
            } else {
                (&mut uvsd, &mut sched_uvsd, expect)
            };
            traffic.checker = checker(exp);
            let r = traffic.round(pipe, sched, a);
            mpps[which].push(r.mpps());
            cpu[which].push(r.cpu_share);
            if which == 1 {
                trips.push(r.trips as f64 / r.secs / 1e6);
            }
            println!(
                "{}",
                json!({
                    "tool": "uvs-loop", "label": a.label, "round": round,
                    "pipeline": pipe.name(), "method": a.method, "proto": a.proto,
                    "mode": a.sched.mode, "flows": a.sched.flows, "size": a.size,
                    "workers": a.workers, "handover": a.handover,
                    "scheduler": a.scheduler, "replies": a.replies,
                    "sent": r.sent, "received": r.received, "valid": r.valid,
                    "round_trips": r.trips, "cpu_share": r.cpu_share,
                    "window_s": r.secs, "mpps": r.mpps(),
                    "ns_per_packet": 1e3 / r.mpps(),
                })
            );
        }
    }
    let handed: u64 = counters.iter().map(|c| c.get(Counter::HandedOver)).sum();
    let handed_in: u64 = counters.iter().map(|c| c.get(Counter::HandedIn)).sum();
    let lost_handover: u64 = counters
        .iter()
        .map(|c| c.get(Counter::DropHandOverFull))
        .sum();
    let table_full: u64 = match &uvsd {
        Pipeline::Uvsd(ws) => ws
            .iter()
            .map(|w| w.stage().lb().counters().drops(LbDrop::TableFull))
            .sum(),
        Pipeline::Empty(_) => 0,
    };
    let (e, u) = (median(mpps[0].clone()), median(mpps[1].clone()));
    let ns = |m: f64| 1e3 / m;
    println!(
        "{}",
        json!({
            "tool": "uvs-loop", "label": a.label, "summary": true,
            "method": a.method, "proto": a.proto, "persistent": a.persistent, "mode": a.sched.mode, "flows": a.sched.flows,
            "size": a.size, "workers": a.workers, "handover": a.handover,
            "rounds": a.rounds, "duration_s": a.duration,
            "empty_mpps": mpps[0], "uvsd_mpps": mpps[1],
            "empty_median_mpps": e, "uvsd_median_mpps": u,
            "scheduler": a.scheduler, "replies": a.replies,
            "round_trips_mpps": trips, "round_trips_median_mpps": median(trips.clone()),
            "empty_cpu_share": cpu[0], "uvsd_cpu_share": cpu[1],
            "descheduled_rounds": cpu.iter().flatten().filter(|c| c.is_some_and(|c| c < 0.9)).count(),
            "ratio": u / e,
            "uvsd_ns_per_packet": ns(u) - ns(e),
            "handed_over": handed, "handed_in": handed_in,
            "drop_handover_full": lost_handover,
            "table_full": table_full, "conn_capacity_per_worker": per_worker,
            "empty_total_packets": traffic.total[0], "uvsd_total_packets": traffic.total[1],
            "uvsd_invalid_total": traffic.invalid[1],
        })
    );
    eprintln!(
        "uvs-loop: {} {} {} {} flows, {} worker(s), hand-over {}: empty {:.2} Mpps, uvsd {:.2} Mpps ({:.2}x), uvsd adds {:.1} ns per packet",
        a.method, a.proto, a.sched.mode, a.sched.flows, a.workers, a.handover, e, u, u / e, ns(u) - ns(e)
    );
    teardown!();
    Ok(())
}
