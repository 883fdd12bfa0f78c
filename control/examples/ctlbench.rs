//! `ctlbench`: how the control plane scales (bench/CONTROL.md).
//!
//! Three measurements, each printing one JSON line per figure:
//!
//! * `socket`: a running uvsd over its control socket, with the requests
//!   uvsadm sends. Restores a generated table (`--services` services with
//!   `--dests` real servers in all, as one `-R`), then times single
//!   `-A`/`-D`, `-a`/`-e`/`-d` round trips, `-L -n`, `-S -n` and
//!   `-L -n -c`.
//! * `inproc`: the same against a director in this process (no socket, no
//!   workers): the control plane's own share of each figure.
//! * `pause`: the daemon's own load-balancing stage ([`LbStage`]) forwarding
//!   in a thread, as a worker does (a burst, then the stage's tick, where it
//!   picks configurations up), while a control thread runs the same
//!   restore and single changes through a [`Director`]. Reports the
//!   forwarding rate and the longest turn of the worker, with and without
//!   the control traffic.
//! * `conns`: the same worker holding `--conns` connections while the
//!   control thread lists them (`-L -n -c`): how long the listing takes and
//!   the longest turn of the worker meanwhile.
//!
//! Why in-process for the last two: a worker's longest pause is a property
//! of the code between its bursts (snapshot pick-up, listing service), and
//! measuring it inside one process removes the generator and the NIC from
//! the figure. Run it on an otherwise idle machine; the worker and the
//! control thread each want a core.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use control::client;
use control::director::{Dataplane, Director};
use control::proto::{Request, Response};
use dataplane::buf::{PacketBuf, TestBuf};
use dataplane::lb::{ConfigCell, ConnDump, Lb, LbSettings, LbStage};
use dataplane::net::{Interface, L3Config, RouteCache, Stage, StageVerdict};
use dataplane::rss::Ownership;
use dataplane::snapshot::Snapshot;
use dataplane::wire::ethernet::MacAddr;
use dataplane::wire::parse_packet;
use uvs_model::model::ConnEntry;

const USAGE: &str = "usage: ctlbench socket --socket PATH [--services N] [--dests M] [--ops K]
       ctlbench inproc [--services N] [--dests M] [--ops K]
       ctlbench pause [--services N] [--dests M] [--seconds S] [--ops K]
       ctlbench conns [--conns N]";

struct Opts {
    socket: Option<PathBuf>,
    services: u32,
    dests: u32,
    ops: u32,
    seconds: f64,
    conns: u32,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        socket: None,
        services: 20_000,
        dests: 100_000,
        ops: 50,
        seconds: 2.0,
        conns: 1_000_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--socket" => o.socket = Some(val()?.into()),
            "--services" => o.services = num(val()?)?.max(1),
            "--dests" => o.dests = num(val()?)?,
            "--ops" => o.ops = num(val()?)?.max(1),
            "--conns" => o.conns = num(val()?)?,
            "--seconds" => o.seconds = val()?.parse().map_err(|e| format!("{a}: {e}"))?,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let opts = match parse_opts(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ctlbench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let r = match mode.as_str() {
        "socket" => socket_bench(&opts),
        "inproc" => table_figures(&bare_director(), &opts),
        "pause" => pause_bench(&opts),
        "conns" => conns_bench(&opts),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = r {
        eprintln!("ctlbench: {e}");
        std::process::exit(1);
    }
}

/// The address of service `i`: VIPs from 198.18.0.0/16 up, port 80.
fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 256 + i)
}

/// The address of real server `j`: from 198.19.0.0 up.
fn rip(j: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 1 + j)
}

/// ipvsadm-save text: `services` TCP services (wlc), `dests` NAT real
/// servers spread evenly over them (the first services get one more).
fn restore_text(services: u32, dests: u32) -> String {
    let mut t = String::with_capacity((services as usize) * 40 + (dests as usize) * 60);
    for i in 0..services {
        t.push_str(&format!("-A -t {}:80 -s wlc\n", vip(i)));
    }
    for j in 0..dests {
        let i = j % services;
        t.push_str(&format!("-a -t {}:80 -r {}:8080 -m -w 1\n", vip(i), rip(j)));
    }
    t
}

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Durations, in milliseconds, summarised.
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let at = |q: f64| ms[((n as f64 - 1.0) * q).round() as usize];
    serde_json::json!({
        "n": n, "median_ms": round3(at(0.5)), "p99_ms": round3(at(0.99)),
        "max_ms": round3(ms[n - 1]),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Something that answers uvsadm requests: a socket or an in-process
/// director.
trait Target {
    fn call(&self, argv: Vec<String>, stdin: Option<String>) -> Result<Response, String>;

    /// Runs one request and checks it succeeded; returns its time.
    fn timed(&self, cmd: &str, stdin: Option<String>) -> Result<(Duration, Response), String> {
        let t = Instant::now();
        let r = self.call(argv(cmd), stdin)?;
        let took = t.elapsed();
        if r.code != 0 {
            return Err(format!("{cmd}: exit {}: {}", r.code, r.stderr.trim_end()));
        }
        Ok((took, r))
    }
}

struct Socket(PathBuf);

impl Target for Socket {
    fn call(&self, argv: Vec<String>, stdin: Option<String>) -> Result<Response, String> {
        client::call(
            &self.0,
            &Request {
                argv,
                stdin,
                tool: Default::default(),
            },
        )
        .map_err(|e| e.to_string())
    }
}

impl<D: Dataplane> Target for Director<D> {
    fn call(&self, argv: Vec<String>, stdin: Option<String>) -> Result<Response, String> {
        Ok(self.handle(&argv, stdin.as_deref()))
    }
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

/// The restore, then single changes and listings, each timed.
fn table_figures(t: &dyn Target, o: &Opts) -> Result<(), String> {
    t.timed("-C", None)?;
    let text = restore_text(o.services, o.dests);
    let (took, _) = t.timed("-R", Some(text))?;
    emit(serde_json::json!({
        "figure": "restore", "services": o.services, "dests": o.dests,
        "seconds": round3(took.as_secs_f64()),
    }));
    single_changes(t, o)?;
    for cmd in ["-L -n", "-S -n", "-L -n -c"] {
        let (took, r) = t.timed(cmd, None)?;
        emit(serde_json::json!({
            "figure": cmd, "seconds": round3(took.as_secs_f64()),
            "lines": r.stdout.lines().count(), "bytes": r.stdout.len(),
        }));
    }
    // One service with many real servers, restored alone.
    t.timed("-C", None)?;
    let (took, _) = t.timed("-R", Some(restore_text(1, 5000)))?;
    emit(serde_json::json!({
        "figure": "restore", "services": 1, "dests": 5000,
        "seconds": round3(took.as_secs_f64()),
    }));
    Ok(())
}

/// `--ops` rounds of `-A`/`-D` of a new service and `-a`/`-e`/`-d` of a new
/// real server on existing services spread over the table.
fn single_changes(t: &dyn Target, o: &Opts) -> Result<(), String> {
    let mut times: [Vec<f64>; 5] = Default::default();
    for k in 0..o.ops {
        let svc = vip((k * 7919) % o.services);
        let new_svc = vip(o.services + 1000 + k);
        let new_rip = rip(o.dests + 1000 + k);
        let cmds = [
            format!("-A -t {new_svc}:80 -s wlc"),
            format!("-D -t {new_svc}:80"),
            format!("-a -t {svc}:80 -r {new_rip}:8080 -m -w 1"),
            format!("-e -t {svc}:80 -r {new_rip}:8080 -m -w 3"),
            format!("-d -t {svc}:80 -r {new_rip}:8080"),
        ];
        for (i, c) in cmds.iter().enumerate() {
            times[i].push(ms(t.timed(c, None)?.0));
        }
    }
    for (name, v) in ["-A", "-D", "-a", "-e", "-d"].iter().zip(times) {
        let mut s = summary(v);
        s["figure"] = serde_json::json!(name);
        s["services"] = serde_json::json!(o.services);
        emit(s);
    }
    Ok(())
}

fn socket_bench(o: &Opts) -> Result<(), String> {
    let path = o
        .socket
        .clone()
        .ok_or("socket: --socket PATH is required")?;
    table_figures(&Socket(path), o)
}

/// The data plane of the in-process measurements: one worker's cell and
/// listing channel.
struct OneWorker {
    cell: Arc<ConfigCell>,
    dump: Arc<ConnDump>,
}

impl Dataplane for OneWorker {
    fn publish(&self, snapshot: Arc<Snapshot>) {
        self.cell.publish(snapshot);
    }
    fn connections(&self) -> Vec<ConnEntry> {
        self.dump
            .collect(Duration::from_secs(60))
            .unwrap_or_default()
    }
    fn conn_tab_size(&self) -> u32 {
        1 << 21
    }
}

fn director() -> (Arc<Director<OneWorker>>, Arc<ConfigCell>, Arc<ConnDump>) {
    let cell = Arc::new(ConfigCell::default());
    let dump = Arc::new(ConnDump::default());
    let dp = OneWorker {
        cell: Arc::clone(&cell),
        dump: Arc::clone(&dump),
    };
    let names = Box::new(control::format::names::NoNames);
    let hosts = Box::new(control::grammar::OfflineResolver);
    (
        Arc::new(Director::with_resolvers(dp, names, hosts)),
        cell,
        dump,
    )
}

/// A director without workers (`-L -c` lists nothing).
fn bare_director() -> Director<control::director::NoDataplane> {
    Director::with_resolvers(
        control::director::NoDataplane::default(),
        Box::new(control::format::names::NoNames),
        Box::new(control::grammar::OfflineResolver),
    )
}

/// A UDP datagram from `client:cport` to `dst:80` in an Ethernet frame.
fn udp_frame(client: Ipv4Addr, cport: u16, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 18];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&client.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = dataplane::wire::checksum::data(ip);
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    f[34..36].copy_from_slice(&cport.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// The client of flow `n`: addresses from 198.18.128.0 up, 60,000 ports
/// each.
fn flow(n: u32) -> (Ipv4Addr, u16) {
    let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + n / 60_000);
    (a, 1024 + (n % 60_000) as u16)
}

/// One worker: the daemon's load-balancing stage with DR destinations (the
/// frames are not rewritten, so the same buffers go round).
struct Worker {
    stage: LbStage,
    routes: RouteCache,
    bufs: Vec<Option<TestBuf>>,
    clock: Instant,
}

impl Worker {
    fn new(cell: &Arc<ConfigCell>, dump: &Arc<ConnDump>, capacity: u32) -> Worker {
        let settings = LbSettings {
            capacity,
            ..LbSettings::default()
        };
        let l3 = L3Config {
            interfaces: vec![Interface {
                port: 0,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                addrs: vec!["198.18.0.1/15".parse().expect("prefix")],
                mtu: 1500,
                kernel: false,
            }],
            routes: vec![],
            neighbors: vec![],
            forwarding: Default::default(),
        };
        let routes = RouteCache::new(l3.route_table().expect("routes"), l3.interfaces.clone());
        let stage = LbStage::new(
            Lb::new(0, settings, 0),
            0,
            Ownership::new(1),
            Arc::clone(cell),
            Arc::clone(dump),
            l3.interfaces.clone(),
        );
        Worker {
            stage,
            routes,
            bufs: Vec::new(),
            clock: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Sends every frame of `frames` once through the stage, in bursts of
    /// 32 (creates their connections).
    fn prime(&mut self, frames: impl Iterator<Item = Vec<u8>>) {
        for f in frames {
            let now = self.now();
            let meta = parse_packet(&f).expect("frame");
            let _ = self
                .stage
                .process(0, TestBuf::new(&f), &meta, now, &self.routes);
            let _ = Stage::<TestBuf>::tick(&mut self.stage, now);
        }
    }

    /// Loads the frames that the timed loop sends round and round.
    fn load(&mut self, frames: impl Iterator<Item = Vec<u8>>) {
        self.bufs = frames.map(|f| Some(TestBuf::new(&f))).collect();
    }

    /// One turn: a burst of 32 packets, then the tick. Returns packets sent.
    fn turn(&mut self, at: &mut usize) -> u64 {
        let now = self.now();
        let n = self.bufs.len();
        for _ in 0..32 {
            let slot = &mut self.bufs[*at % n];
            *at += 1;
            let Some(buf) = slot.take() else { continue };
            let meta = parse_packet(buf.data()).expect("frame");
            let back = match self.stage.process(0, buf, &meta, now, &self.routes) {
                StageVerdict::Route { buf, .. }
                | StageVerdict::Pass { buf }
                | StageVerdict::Drop { buf, .. }
                | StageVerdict::HandOver { buf, .. }
                | StageVerdict::Datagram { buf, .. }
                | StageVerdict::HandOverDatagram { buf, .. } => buf,
            };
            *slot = Some(back);
        }
        let _ = Stage::<TestBuf>::tick(&mut self.stage, now);
        32
    }
}

/// What a worker saw over one window.
///
/// Wall-clock figures include the time the machine gave the worker's core
/// to someone else; the CPU-time figures (the worker thread's own time)
/// do not, and are the ones that show what the control plane costs the
/// worker on a machine where it has a core to itself.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    packets: u64,
    seconds: f64,
    cpu_seconds: f64,
    longest_turn: Duration,
    longest_turn_cpu: Duration,
}

impl Window {
    fn json(&self, label: &str) -> serde_json::Value {
        serde_json::json!({
            "window": label,
            "mpps_wall": round3(self.packets as f64 / self.seconds / 1e6),
            "mpps_cpu": round3(self.mpps()),
            "longest_turn_wall_ms": round3(ms(self.longest_turn)),
            "longest_turn_cpu_ms": round3(ms(self.longest_turn_cpu)),
        })
    }

    /// Packets per second of the worker's own CPU time, in millions.
    fn mpps(&self) -> f64 {
        self.packets as f64 / self.cpu_seconds / 1e6
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs the worker until `stop`; returns what it saw.
fn run_worker(w: &mut Worker, stop: &AtomicBool) -> Window {
    let mut win = Window::default();
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut at = 0;
    let mut last = Instant::now();
    let mut last_cpu = cpu0;
    while !stop.load(Ordering::Relaxed) {
        win.packets += w.turn(&mut at);
        let t = Instant::now();
        let c = thread_cpu();
        win.longest_turn = win.longest_turn.max(t - last);
        win.longest_turn_cpu = win.longest_turn_cpu.max(c - last_cpu);
        last = t;
        last_cpu = c;
    }
    win.seconds = start.elapsed().as_secs_f64();
    win.cpu_seconds = (thread_cpu() - cpu0).as_secs_f64();
    win
}

/// Runs `control` in this thread while the worker runs in another; returns
/// the worker's window and the control's result.
fn beside<T: Send>(
    w: &mut Worker,
    control: impl FnOnce() -> Result<T, String> + Send,
) -> Result<(Window, T), String> {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let h = s.spawn(|| run_worker(w, &stop));
        // Let the worker warm up first.
        thread::sleep(Duration::from_millis(200));
        let r = control();
        stop.store(true, Ordering::Relaxed);
        let win = h.join().map_err(|_| "worker panicked".to_string())?;
        Ok((win, r?))
    })
}

/// The worker while the control thread only spins (touching a 32 MiB
/// buffer, as a restore touches memory): what sharing the machine with a
/// busy control thread costs the worker, whatever the control plane does.
fn spin_window(w: &mut Worker, d: Duration, quiet: &Window) -> Result<serde_json::Value, String> {
    let (busy, sum) = beside(w, || {
        let mut buf = vec![0u64; 4 << 20];
        let t = Instant::now();
        let mut i = 0usize;
        while t.elapsed() < d {
            for _ in 0..4096 {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (i >> 11) % buf.len();
                buf[k] = buf[k].wrapping_add(1);
            }
        }
        Ok(buf.iter().sum::<u64>())
    })?;
    let mut j = busy.json("control thread spinning (no control traffic)");
    j["rate_vs_quiet"] = serde_json::json!(round3(busy.mpps() / quiet.mpps()));
    j["touched"] = serde_json::json!(sum);
    Ok(j)
}

fn pause_bench(o: &Opts) -> Result<(), String> {
    let (dir, cell, dump) = director();
    let mut w = Worker::new(&cell, &dump, 1 << 20);
    // Forwarded traffic: 4096 flows to one service that stays.
    dir.timed("-A -u 198.18.0.100:80 -s rr", None)?;
    dir.timed("-a -u 198.18.0.100:80 -r 198.19.255.1:80 -g", None)?;
    let flows = || {
        (0..4096).map(|n| {
            let (c, p) = flow(n);
            udp_frame(c, p, Ipv4Addr::new(198, 18, 0, 100))
        })
    };
    w.prime(flows());
    w.load(flows());
    let idle = Duration::from_secs_f64(o.seconds);
    let (quiet, ()) = beside(&mut w, || {
        thread::sleep(idle);
        Ok(())
    })?;
    emit(quiet.json("no control traffic"));
    emit(spin_window(&mut w, idle, &quiet)?);
    let text = restore_text(o.services, o.dests);
    let (busy, took) = beside(&mut w, || {
        let (took, _) = dir.timed("-R", Some(text))?;
        Ok(took)
    })?;
    let mut j = busy.json("during -R");
    j["restore_seconds"] = serde_json::json!(round3(took.as_secs_f64()));
    j["services"] = serde_json::json!(o.services);
    j["dests"] = serde_json::json!(o.dests);
    j["rate_vs_quiet"] = serde_json::json!(round3(busy.mpps() / quiet.mpps()));
    emit(j);
    let ops = o.ops;
    let services = o.services;
    let (busy, ()) = beside(&mut w, || {
        for k in 0..ops {
            let svc = vip((k * 7919) % services);
            let r = rip(o.dests + 1000 + k);
            dir.timed(&format!("-a -t {svc}:80 -r {r}:8080 -m -w 1"), None)?;
            dir.timed(&format!("-e -t {svc}:80 -r {r}:8080 -m -w 2"), None)?;
            dir.timed(&format!("-d -t {svc}:80 -r {r}:8080"), None)?;
        }
        Ok(())
    })?;
    let mut j = busy.json("during single -a/-e/-d");
    j["changes"] = serde_json::json!(3 * ops);
    j["rate_vs_quiet"] = serde_json::json!(round3(busy.mpps() / quiet.mpps()));
    emit(j);
    Ok(())
}

fn conns_bench(o: &Opts) -> Result<(), String> {
    let (dir, cell, dump) = director();
    let mut w = Worker::new(&cell, &dump, (o.conns + o.conns / 2).max(4096));
    dir.timed("-A -u 198.18.0.100:80 -s rr", None)?;
    for k in 0..4u8 {
        dir.timed(
            &format!("-a -u 198.18.0.100:80 -r 198.19.255.{}:80 -g", k + 1),
            None,
        )?;
    }
    let n = o.conns;
    let fill = Instant::now();
    w.prime((0..n).map(|i| {
        let (c, p) = flow(i);
        udp_frame(c, p, Ipv4Addr::new(198, 18, 0, 100))
    }));
    emit(serde_json::json!({
        "figure": "fill", "conns": n, "seconds": round3(fill.elapsed().as_secs_f64()),
    }));
    w.load((0..4096).map(|i| {
        let (c, p) = flow(i);
        udp_frame(c, p, Ipv4Addr::new(198, 18, 0, 100))
    }));
    let (quiet, ()) = beside(&mut w, || {
        thread::sleep(Duration::from_secs_f64(o.seconds));
        Ok(())
    })?;
    emit(quiet.json("no control traffic"));
    emit(spin_window(
        &mut w,
        Duration::from_secs_f64(o.seconds),
        &quiet,
    )?);
    let (busy, (took, r)) = beside(&mut w, || dir.timed("-L -n -c", None))?;
    let mut j = busy.json("during -L -n -c");
    j["list_seconds"] = serde_json::json!(round3(took.as_secs_f64()));
    j["lines"] = serde_json::json!(r.stdout.lines().count());
    j["bytes"] = serde_json::json!(r.stdout.len());
    emit(j);
    Ok(())
}
