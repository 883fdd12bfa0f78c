//! Start-up, run and shutdown of the director.
//!
//! Order matters and is encoded here once:
//! 1. The operator's signals (HUP, INT, QUIT, TERM, USR1, USR2) are blocked
//!    before EAL starts any thread, so every thread inherits the mask and
//!    only the main thread takes them (`sigwait`): no handler runs inside a
//!    worker, and no such signal can end the process uncleanly. Fatal
//!    signals get a one-line report.
//! 2. The instance locks (file prefix, control socket; see
//!    [`crate::instance`]) and the removal of what a killed uvsd left. The
//!    metrics port is bound before EAL (a taken port ends start-up before
//!    any device is touched).
//! 3. EAL, the mbuf pool, the ports (started before any worker runs; their
//!    link state is never waited for), the control plane hook, the workers,
//!    then the metrics endpoint and the telemetry commands; the `ready`
//!    event, and `READY=1` to systemd.
//! 4. The main thread serves signals: HUP reloads ([`crate::reload`]),
//!    USR1 logs the counters, USR2 is acknowledged, and between signals
//!    port link changes are logged.
//! 5. On TERM, INT or QUIT (or a worker that panicked): stop flag, wait for
//!    every worker, stop the control plane, metrics and telemetry (they hold
//!    the ports), report, then drop ports (stop + close), pool, EAL
//!    (cleanup, runtime directory), and remove any hugepage files EAL left
//!    because neither `--huge-unlink` nor `--in-memory` was given.
//!
//! Every failure is a one-line `String` for main to print.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane::conn::shared::SharedTemplates;
use dataplane::dpdk::{lcore, quiesce, signal_name, Eal, Mempool, Port, PortConf, Signals};
use dataplane::lb::{Lb, LbSettings, LbStage, PathMtus};
use dataplane::net::{FloatingCell, L3Cell, L3Config, NetCounters, Stack};
use dataplane::rss::{Ownership, Reta};
use dataplane::wire::ethernet::MacAddr;
use dataplane::worker::{Mesh, Worker, WorkerParts, WorkerReport, MESH_RING_SIZE};

use crate::config::Validated;
use crate::control_hook;
use crate::kernel_side::{self, KernelSide};
use crate::log::{Level, Value};
use crate::log_event;
use crate::metrics;

/// Descriptors per rx/tx queue.
const DESCRIPTORS: u16 = 1024;

/// Everything that runs; dropped in field order (kernel interfaces and
/// their rings, then ports, before the pool, EAL last; workers and the
/// exception thread have returned before any of it drops).
pub struct Running {
    pub kernel: Option<KernelSide>,
    pub ports: Vec<Arc<Port>>,
    pub pool: Arc<Mempool>,
    pub eal: Eal,
}

fn mac_str(m: MacAddr) -> String {
    let b = m.0;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// EAL flag present in the args (`--flag` or `--flag=value`)?
fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

pub(crate) fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

/// Removes the hugepage files `<prefix>map_*` left in hugetlbfs mounts;
/// returns how many.
pub(crate) fn remove_hugepage_files(args: &[String]) -> usize {
    if has_flag(args, "--in-memory") || has_flag(args, "--no-huge") {
        return 0;
    }
    let mut removed = 0;
    let prefix = flag_value(args, "--file-prefix").unwrap_or_else(|| "rte".into());
    let mut dirs: Vec<PathBuf> = flag_value(args, "--huge-dir")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(m) = std::fs::read_to_string("/proc/mounts") {
        dirs.extend(m.lines().filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"hugetlbfs")).then(|| PathBuf::from(f[1]))
        }));
    }
    let stem = format!("{prefix}map_");
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&stem)
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// Connection ownership that follows the NICs: the redirection table read
/// back from the ports whose NIC hashes the client endpoint with the
/// software's key, when they all report the same one (rx queue `w` is
/// polled by worker `w`, so a queue index is a worker index). Otherwise the
/// software default, and hand-over does the work. Logs, per port, which of
/// the two it is.
fn ownership(ports: &[Arc<Port>], nworkers: usize) -> Ownership {
    let tables: Vec<Reta> = ports
        .iter()
        .filter(|p| p.rss().nic_ownership())
        .filter_map(|p| p.rss().reta.clone())
        .collect();
    let (own, why) = if nworkers <= 1 {
        (Ownership::new(nworkers), None)
    } else {
        match Ownership::from_tables(nworkers, &tables) {
            Ok(o) => (o, None),
            Err(e) => (Ownership::new(nworkers), Some(e)),
        }
    };
    for p in ports {
        let rss = p.rss();
        let verdict = if nworkers <= 1 {
            "one worker, nothing to hand over".to_string()
        } else if rss.nic_ownership() && rss.reta.as_ref() == Some(own.reta()) {
            "NIC-side ownership in effect".to_string()
        } else {
            let mut v = "hand-over does the work".to_string();
            if let Some(w) = why.as_ref().filter(|_| rss.nic_ownership()) {
                v.push_str(&format!(" ({w})"));
            }
            v
        };
        log_event!(
            Level::Info,
            "rss",
            port = p.name(),
            side = rss.side.to_string(),
            verdict = verdict,
            detail = rss.describe()
        );
    }
    own
}

/// Runs the director from the config file `path` (validated as `v`)
/// until SIGTERM, SIGINT or SIGQUIT.
pub fn run(v: Validated, path: &Path) -> Result<(), String> {
    let sigs = Signals::block();
    dataplane::dpdk::report_fatal_signals();
    let cfg = &v.raw;
    let nworkers = cfg.workers.lcores.len();
    for p in &cfg.ports {
        if usize::from(p.queues) > nworkers {
            return Err(format!(
                "port {}: {} queues but {} worker(s): each rx queue needs its own worker lcore",
                p.name, p.queues, nworkers
            ));
        }
    }
    // The control plane and the rules file come first: a bad rules file
    // ends start-up before any port exists (and before anything of a
    // previous run is cleaned).
    let director = control_hook::prepare(&cfg.control, nworkers, cfg.workers.conn_capacity)?;
    let _instance = crate::instance::claim(&cfg.eal.args, &cfg.control.socket)?;
    let metrics_listener = metrics::bind(&cfg.metrics)?;
    director
        .set_tunables(&v.tunables)
        .map_err(|r| format!("sysctl: {}", r.message.trim_end()))?;
    let eal_args = cfg.eal.args.clone();
    // Each shutdown step is named, so that a slow or hung one is in the log.
    let steps = crate::shutdown::Steps::start();
    let result = start_and_serve(&v, path, &sigs, &director, metrics_listener, &steps);
    // A start-up failure before anything ran stays one line: no step.
    if steps.began() {
        steps.begin("release");
    }
    remove_hugepage_files(&eal_args);
    drop(director);
    drop(_instance);
    steps.finish();
    result
}

/// What `-i` names: each port by its name and its kernel interface's name,
/// each VLAN as `NAME.VID` (`dataplane::rules::ifaces`).
fn interface_names(
    cfg: &crate::config::Config,
    ids: &[(u16, MacAddr, u16)],
) -> dataplane::rules::Interfaces {
    let mut ifaces = dataplane::rules::Interfaces::default();
    for (p, (id, _, _)) in cfg.ports.iter().zip(ids) {
        let vlans: Vec<(u16, u16)> = p
            .vlans
            .iter()
            .filter_map(|v| Some((dataplane::net::vlan::iface_id(*id, v.id)?, v.id)))
            .collect();
        ifaces.add_port(*id, &p.name, p.kernel.as_deref(), &vlans);
    }
    ifaces
}

fn start_and_serve(
    v: &Validated,
    path: &Path,
    sigs: &Signals,
    director: &Arc<control_hook::UvsDirector>,
    metrics_listener: Option<std::net::TcpListener>,
    steps: &crate::shutdown::Steps,
) -> Result<(), String> {
    let cfg = &v.raw;
    let nworkers = cfg.workers.lcores.len();
    let mut eal = Eal::init(&cfg.eal.args).map_err(|e| {
        let mut m = e.to_string();
        if m.contains("hugepage") || m.contains("hugetlbfs") {
            m.push_str(" (reserve hugepages and mount hugetlbfs on /dev/hugepages, or add --no-huge to eal.args)");
        }
        m
    })?;
    for &l in &cfg.workers.lcores {
        if !eal.lcore_enabled(l) || l == eal.main_lcore() {
            return Err(format!(
                "workers.lcores: lcore {l} is not an EAL worker lcore (give EAL e.g. -l {}-{l}; lcore {} is the main lcore)",
                eal.main_lcore(),
                eal.main_lcore()
            ));
        }
    }
    let kernels = (0..cfg.ports.len())
        .filter(|&i| kernel_side::wanted(v, i))
        .count() as u32;
    let mbufs = (cfg.ports.len() as u32 * u32::from(DESCRIPTORS) * (1 + nworkers as u32)
        // Kernel interfaces: their TAP's descriptors, and the two rings
        // per worker of the exception path, full.
        + kernels * u32::from(DESCRIPTORS)
        + u32::from(kernels > 0) * nworkers as u32 * 2 * dataplane::exception::kernel::RING_SIZE
        + 4096)
        .next_power_of_two()
        - 1;
    // Every frame in one segment: the data room fits the largest port MTU.
    let room = Mempool::data_room_for_mtu(cfg.ports.iter().map(|p| p.mtu).max().unwrap_or(1500));
    let pool = Arc::new(
        Mempool::with_data_room(&eal, "uvs_mbufs", mbufs, 256, -1, room).map_err(|e| {
            format!("{e} (are hugepages reserved and mounted? see README: nr_hugepages and /dev/hugepages)")
        })?,
    );
    let mut ports = vec![];
    for (i, p) in cfg.ports.iter().enumerate() {
        let conf = PortConf {
            name: p.name.clone(),
            device: p.device.clone(),
            rx_queues: p.queues,
            tx_queues: nworkers as u16,
            mac: v.port_macs[i].map(|m| m.0),
            descriptors: DESCRIPTORS,
            tap_shares_mac: false,
        };
        ports.push(Arc::new(
            Port::open_rss(&eal, &conf, v.port_rss[i], Arc::clone(&pool))
                .and_then(|port| {
                    if port.mtu() != p.mtu {
                        port.set_mtu(p.mtu)?;
                    }
                    Ok(port)
                })
                .map_err(|e| e.to_string())?,
        ));
    }
    let ownership = ownership(&ports, nworkers);
    director
        .dataplane()
        .sync
        .hub()
        .set_ownership(ownership.clone());
    let kernel = kernel_side::open(v, &eal, &ports, &pool, nworkers)?;
    let startup_log = eal.quiet_end();
    if std::env::var_os("UVS_EAL_LOG").is_some() {
        // EAL's own lines, as EAL wrote them (a debugging aid).
        eprint!("{startup_log}");
    }
    let mut running = Running {
        kernel,
        ports,
        pool,
        eal,
    };
    let exception = match running.kernel.as_mut() {
        Some(k) => Some(k.start(&running.eal)?),
        None => None,
    };
    let ids: Vec<(u16, MacAddr, u16)> = running
        .ports
        .iter()
        .map(|p| (p.id(), MacAddr(p.mac()), p.mtu()))
        .collect();
    v.check_vlan_ports(&ids)?;
    let l3 = v.l3(&ids);
    director.set_interfaces(interface_names(cfg, &ids));
    director.set_port_addrs(
        l3.interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(|a| a.addr))
            .collect(),
    );

    // The control plane: the ipvsadm socket (rules were applied already).
    let control = control_hook::start(&cfg.control, director)?;
    // Path MTUs learned from ICMP errors, shared by every worker's routes.
    let pmtu = Arc::new(PathMtus::default());
    let per_ms = (dataplane::dpdk::tsc_hz() / 1000).max(1);

    // The rings between workers: hand-overs and shared neighbour answers.
    let mesh =
        Mesh::new(&running.eal, "uvs_ho", nworkers, MESH_RING_SIZE).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    // Persistence templates shared by the workers (one worker needs none).
    let shared_templates = (nworkers > 1).then(|| {
        Arc::new(SharedTemplates::sized_for(
            cfg.workers.conn_capacity,
            Some(dataplane::dpdk::advise_huge_pages),
        ))
    });
    let l3_cell = Arc::new(L3Cell::default());
    // Floating addresses (VRRP): the watcher reads the kernel interfaces,
    // the workers pick up what it publishes (see src/floating.rs).
    let floating_cell = Arc::new(FloatingCell::default());
    let floating: Vec<(u16, IpAddr)> = v
        .port_floating
        .iter()
        .zip(&running.ports)
        .flat_map(|(addrs, p)| addrs.iter().map(|&a| (p.id(), a)))
        .collect();
    let watcher = crate::floating::start(v, Arc::clone(&floating_cell))?;
    let mut launched = vec![];
    let mut counters = vec![];
    let mut lb_counters = vec![];
    let mut reports = vec![];
    let mut err = None;
    for (w, &lcore) in cfg.workers.lcores.iter().enumerate() {
        let c = Arc::new(NetCounters::default());
        // Errors from here on stop the workers already launched (below).
        let stack = match Stack::new(&l3, Arc::clone(&c)) {
            Ok(s) => s,
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        };
        let queues: Result<Vec<_>, _> = running
            .ports
            .iter()
            .map(|port| {
                let rx = (w < usize::from(port.rx_queues())).then_some(w as u16);
                port.claim(rx, w as u16)
            })
            .collect();
        let queues = match queues {
            Ok(q) => q,
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        };
        let report = Arc::new(Mutex::new(None::<WorkerReport>));
        let (cell, dump) = control_hook::worker_shares(director, w);
        let now = dataplane::dpdk::tsc_cycles() / per_ms;
        let settings = LbSettings {
            capacity: cfg.workers.conn_capacity,
            seed: now ^ (w as u64) << 32,
            mem_advice: Some(dataplane::dpdk::advise_huge_pages),
            ..LbSettings::default()
        };
        let mut lb = Lb::new(w, settings, now);
        let lbc = lb.counters();
        if let Some(t) = &shared_templates {
            lb.set_shared_templates(Arc::clone(t));
        }
        lb.set_snapshot(cell.load());
        if let Some(s) = control_hook::worker_sync(director, w) {
            lb.set_sync(s);
        }
        let mut stack = stack;
        stack.share_path_mtus(Arc::clone(&pmtu));
        stack.set_service_addrs(lb.service_addrs());
        stack.set_floating(floating.clone());
        let stage = LbStage::new(lb, w, ownership.clone(), cell, dump, l3.interfaces.clone());
        let worker = Worker::new(WorkerParts {
            index: w,
            queues,
            stack,
            stage,
            pool: Arc::clone(&running.pool),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&c),
            report: Arc::clone(&report),
            links: mesh.links(w),
            kernel: running
                .kernel
                .as_ref()
                .map(|k| k.rings(w))
                .unwrap_or_default(),
        });
        let mut worker = worker.with_l3_cell(Arc::clone(&l3_cell));
        if !floating.is_empty() {
            worker = worker.with_floating_cell(Arc::clone(&floating_cell));
        }
        let job = move || {
            // The lcore boundary: a panic is logged (the panic hook printed
            // its message just before) and stops uvsd cleanly, so that a
            // service manager restarts it.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                Ok(rc) => rc,
                Err(_) => {
                    log_event!(
                        Level::Error,
                        "worker_panic",
                        worker = w,
                        lcore = lcore,
                        detail = "panicked (message above) and stopped forwarding; uvsd stops"
                    );
                    Signals::raise_in_process(libc::SIGTERM);
                    -1
                }
            }
        };
        match lcore::launch(&running.eal, lcore, job) {
            Ok(()) => {
                launched.push(lcore);
                counters.push(c);
                lb_counters.push(lbc);
                reports.push(report);
            }
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }

    // Metrics, telemetry and `uvsadm --counters` read what the workers
    // publish, never a worker.
    let mut observers = None;
    if err.is_none() {
        let _ = director
            .dataplane()
            .counters
            .set(control_hook::WorkerCounters {
                net: counters.clone(),
                lb: lb_counters.clone(),
                capacity: cfg.workers.conn_capacity,
            });
        let sources = Arc::new(metrics::Sources {
            director: Arc::clone(director),
            net: counters.clone(),
            lb: lb_counters.clone(),
            ports: running.ports.clone(),
            capacity: cfg.workers.conn_capacity,
        });
        match metrics::Observers::start(&running.eal, sources, metrics_listener) {
            Ok(o) => observers = Some(o),
            Err(e) => err = Some(e),
        }
    }

    // The served VIPs' routes, once the workers run (a routing daemon
    // announces them: traffic must find workers).
    let announce = &director.dataplane().announce;
    if let (None, Some(a)) = (&err, &cfg.announce) {
        err = announce.attach(a).err();
    }

    if err.is_none() {
        for p in &running.ports {
            // A TAP's kernel side got a MAC of its own (dpdk/tap.rs): say
            // which, since `ip link` shows it to whoever builds a topology.
            let mut fields = vec![
                ("name", Value::from(p.name())),
                ("id", Value::from(p.id())),
                ("driver", Value::from(p.driver())),
                ("mac", Value::from(mac_str(MacAddr(p.mac())))),
                ("queues", Value::from(p.rx_queues())),
                (
                    "link",
                    Value::from(if p.link_up() { "up" } else { "down_ignored" }),
                ),
            ];
            if let Some((iface, mac)) = p.kernel_side() {
                fields.push(("kernel_side", Value::from(iface)));
                fields.push(("kernel_mac", Value::from(mac_str(MacAddr(mac)))));
            }
            crate::log::write(Level::Info, "port", &fields);
        }
        let lcores: Vec<String> = cfg.workers.lcores.iter().map(u32::to_string).collect();
        log_event!(
            Level::Info,
            "ready",
            workers = launched.len(),
            lcores = lcores.join(",")
        );
        crate::notify::ready();
        quiesce::arm();
        let serving = Serving {
            path,
            cfg,
            l3: &l3,
            director,
            cell: &l3_cell,
            running: &running,
            counters: &counters,
            lb_counters: &lb_counters,
        };
        serving.serve(sigs);
        crate::notify::stopping();
    }
    steps.begin("announce_withdraw");
    announce.withdraw_all();

    steps.begin("workers");
    quiesce::disarm();
    stop.store(true, Ordering::SeqCst);
    let mut failed = vec![];
    for &l in &launched {
        if lcore::wait(&running.eal, l) != 0 {
            failed.push(l);
        }
    }
    steps.begin("floating_watcher");
    if let Some(w) = watcher {
        w.stop();
    }
    // The sync threads use the kernel interfaces: stop them first.
    steps.begin("sync");
    director.dataplane().sync.stop_all();
    steps.begin("exception_thread");
    if let Some(t) = exception {
        t.stop();
    }
    steps.begin("control");
    control.stop();
    steps.begin("observers");
    if let Some(o) = observers {
        o.stop();
    }
    steps.begin("report");
    sync_report(director);
    report(&running, &counters, &lb_counters, &reports);
    // The mesh's rings hold mbufs of the pool: free them before the ports,
    // the pool and EAL go.
    steps.begin("rings");
    drop(mesh);
    let Running {
        kernel,
        ports,
        pool,
        eal,
    } = running;
    // Closing a TAP unregisters its interface (the kernel takes rtnl_lock).
    steps.begin("kernel_interfaces");
    drop(kernel);
    steps.begin("ports");
    drop(ports);
    drop(pool);
    steps.begin("eal_cleanup");
    drop(eal);
    if let Some(e) = err {
        return Err(e);
    }
    if !failed.is_empty() {
        return Err(format!(
            "worker(s) on lcore(s) {failed:?} failed (panicked)"
        ));
    }
    Ok(())
}

/// What the main thread needs to answer signals while the workers run.
struct Serving<'a> {
    path: &'a Path,
    cfg: &'a crate::config::Config,
    l3: &'a L3Config,
    director: &'a control_hook::UvsDirector,
    cell: &'a L3Cell,
    running: &'a Running,
    counters: &'a [Arc<NetCounters>],
    lb_counters: &'a [Arc<dataplane::lb::LbCounters>],
}

/// How often the main thread looks at the ports' link state.
const LINK_WATCH: Duration = Duration::from_secs(1);

impl Serving<'_> {
    /// Answers signals until one asks to stop.
    fn serve(&self, sigs: &Signals) {
        let mut links: Vec<bool> = self.running.ports.iter().map(|p| p.link_up()).collect();
        loop {
            let Some(sig) = sigs.wait_timeout(LINK_WATCH) else {
                self.watch_links(&mut links);
                continue;
            };
            let name = signal_name(sig);
            match sig {
                libc::SIGHUP => self.reload(),
                libc::SIGUSR1 => {
                    log_event!(
                        Level::Info,
                        "signal",
                        signal = name,
                        action = "log_counters"
                    );
                    log_counters(self.running, self.counters, self.lb_counters);
                }
                libc::SIGUSR2 => log_event!(
                    Level::Info,
                    "signal",
                    signal = name,
                    action = "ignored",
                    hint = "SIGHUP reloads, SIGUSR1 logs the counters, SIGTERM stops"
                ),
                _ => {
                    log_event!(Level::Info, "stopping", signal = name);
                    return;
                }
            }
        }
    }

    fn reload(&self) {
        log_event!(
            Level::Info,
            "signal",
            signal = "SIGHUP",
            action = "reload",
            config = self.path.display().to_string()
        );
        match crate::reload::reload(self.path, self.cfg, self.l3, self.director, self.cell) {
            Ok(lines) => {
                for l in lines {
                    log_event!(Level::Info, "reload", change = l);
                }
            }
            Err(e) => log_event!(
                Level::Warn,
                "reload_refused",
                result = "nothing changed",
                reason = e
            ),
        }
    }

    /// Logs each port whose link went up or down since the last look.
    fn watch_links(&self, links: &mut [bool]) {
        for (p, was) in self.running.ports.iter().zip(links.iter_mut()) {
            let up = p.link_up();
            if up != *was {
                *was = up;
                log_event!(
                    Level::Warn,
                    "link",
                    port = p.name(),
                    state = if up { "up" } else { "down" }
                );
            }
        }
    }
}

/// Every worker's non-zero counters (the stack's by name, the load
/// balancer's drops as `lb_drop_<reason>`) and every port's, in the log.
fn log_counters(
    running: &Running,
    counters: &[Arc<NetCounters>],
    lb_counters: &[Arc<dataplane::lb::LbCounters>],
) {
    for (w, c) in counters.iter().enumerate() {
        let mut list: Vec<(String, u64)> = vec![("worker".into(), w as u64)];
        list.extend(c.nonzero());
        if let Some(lb) = lb_counters.get(w) {
            list.extend(
                dataplane::lb::LbDrop::ALL
                    .iter()
                    .map(|r| (format!("lb_drop_{}", r.as_str()), lb.drops(*r)))
                    .filter(|(_, v)| *v != 0),
            );
            list.extend(
                dataplane::frag::FragDrop::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), lb.frag.drops(*r)))
                    .filter(|(_, v)| *v != 0),
            );
            list.extend(
                lb.defense
                    .named()
                    .iter()
                    .filter(|(_, v)| *v != 0)
                    .map(|(n, v)| (n.to_string(), *v)),
            );
        }
        let fields: Vec<(&str, crate::log::Value)> = list
            .iter()
            .map(|(n, v)| (n.as_str(), crate::log::Value::Num(*v)))
            .collect();
        crate::log::write(Level::Info, "counters", &fields);
    }
    for p in &running.ports {
        let s = p.stats();
        log_event!(
            Level::Info,
            "port_stats",
            port = p.name(),
            rx = s.ipackets,
            tx = s.opackets,
            missed = s.imissed,
            rx_errors = s.ierrors,
            tx_errors = s.oerrors
        );
    }
}

/// The sync daemons' counters (summed over workers and threads), when
/// any is not zero.
fn sync_report(director: &control_hook::UvsDirector) {
    let named = director.dataplane().sync.hub().counters_named();
    let fields: Vec<(&str, crate::log::Value)> = named
        .iter()
        .filter(|&&(_, v)| v != 0)
        .map(|&(n, v)| (n, crate::log::Value::Num(v)))
        .collect();
    if !fields.is_empty() {
        crate::log::write(Level::Info, "sync_counters", &fields);
    }
}

/// The shutdown report in the log: counters, neighbour tables, ports.
fn report(
    running: &Running,
    counters: &[Arc<NetCounters>],
    lb_counters: &[Arc<dataplane::lb::LbCounters>],
    reports: &[Arc<Mutex<Option<WorkerReport>>>],
) {
    log_counters(running, counters, lb_counters);
    for (w, r) in reports.iter().enumerate() {
        let Ok(g) = r.lock() else { continue };
        let Some(r) = g.as_ref() else { continue };
        for (ip, port, mac, is_static) in &r.neighbors {
            let pname = running
                .ports
                .iter()
                .find(|p| p.id() == *port)
                .map(|p| p.name())
                .unwrap_or("?");
            log_event!(
                Level::Info,
                "neighbor",
                worker = w,
                ip = ip.to_string(),
                lladdr = mac_str(*mac),
                port = pname,
                state = if *is_static { "static" } else { "learned" }
            );
        }
    }
    if let Some(k) = &running.kernel {
        k.report();
    }
}
