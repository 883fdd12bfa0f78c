//! Start-up, run and shutdown of the director.
//!
//! Order matters and is encoded here once:
//! 1. SIGINT/SIGTERM are blocked before EAL starts any thread, so every
//!    thread inherits the mask and only the main thread takes them
//!    (`sigwait`): no handler runs inside a worker.
//! 2. EAL, the mbuf pool, the ports (started before any worker runs; their
//!    link state is never waited for), the control plane hook, the workers.
//! 3. On a signal: stop flag, wait for every worker, report, then drop
//!    ports (stop + close), pool, EAL (cleanup, runtime directory), and
//!    remove any hugepage files EAL left because neither `--huge-unlink`
//!    nor `--in-memory` was given.
//!
//! Every failure is a one-line `String` for main to print.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dataplane::dpdk::{lcore, Eal, Mempool, Port, PortConf, Termination};
use dataplane::lb::{Lb, LbSettings, LbStage, PortRoutes};
use dataplane::net::{NetCounters, Stack};
use dataplane::rss::{Ownership, Reta};
use dataplane::wire::ethernet::MacAddr;
use dataplane::worker::{Mesh, Worker, WorkerParts, WorkerReport, MESH_RING_SIZE};

use crate::config::Validated;
use crate::control_hook;
use crate::kernel_side::{self, KernelSide};

/// IP MTU of every port (the standard Ethernet payload).
const PORT_MTU: u16 = 1500;

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

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

/// Hugepage files `<prefix>map_*` left in hugetlbfs mounts.
fn remove_hugepage_files(args: &[String]) {
    if has_flag(args, "--in-memory") || has_flag(args, "--no-huge") {
        return;
    }
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
                if e.file_name().to_string_lossy().starts_with(&stem) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
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
        println!(
            "uvsd: port {} rss {}: {verdict}: {}",
            p.name(),
            rss.side,
            rss.describe()
        );
    }
    own
}

/// Runs the director until SIGINT/SIGTERM.
pub fn run(v: Validated) -> Result<(), String> {
    let sigs = Termination::block();
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
    // ends start-up before any port exists.
    let director = control_hook::prepare(&cfg.control, nworkers, cfg.workers.conn_capacity)?;
    let eal_args = cfg.eal.args.clone();
    let result = start_and_serve(&v, &sigs, &director);
    remove_hugepage_files(&eal_args);
    result
}

fn start_and_serve(
    v: &Validated,
    sigs: &Termination,
    director: &Arc<control_hook::UvsDirector>,
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
        + kernels * 4 * u32::from(DESCRIPTORS)
        + 4096)
        .next_power_of_two()
        - 1;
    let pool = Arc::new(
        Mempool::new(&eal, "uvs_mbufs", mbufs, 256, -1).map_err(|e| {
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
        };
        ports.push(Arc::new(
            Port::open_rss(&eal, &conf, v.port_rss[i], Arc::clone(&pool))
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
    let l3 = v.l3(&ids);

    // The control plane: the ipvsadm socket (rules were applied already).
    let control = control_hook::start(&cfg.control, director)?;
    let egress = PortRoutes::new(
        l3.route_table().map_err(|e| e.to_string())?,
        l3.interfaces.clone(),
        PORT_MTU,
    );
    let per_ms = (dataplane::dpdk::tsc_hz() / 1000).max(1);

    // The rings between workers: hand-overs and shared neighbour answers.
    let mesh =
        Mesh::new(&running.eal, "uvs_ho", nworkers, MESH_RING_SIZE).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut launched = vec![];
    let mut counters = vec![];
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
        lb.set_snapshot(cell.load());
        if let Some(s) = control_hook::worker_sync(director, w) {
            lb.set_sync(s);
        }
        let mut stack = stack;
        stack.set_service_addrs(lb.service_addrs());
        let stage = LbStage::new(lb, w, ownership.clone(), cell, dump, egress.clone());
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
        match lcore::launch(&running.eal, lcore, move || worker.run()) {
            Ok(()) => {
                launched.push(lcore);
                counters.push(c);
                reports.push(report);
            }
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }

    if err.is_none() {
        for p in &running.ports {
            println!(
                "uvsd: port {} id {} driver {} mac {} queues {} link {}",
                p.name(),
                p.id(),
                p.driver(),
                mac_str(MacAddr(p.mac())),
                p.rx_queues(),
                if p.link_up() { "up" } else { "down (ignored)" }
            );
        }
        println!(
            "uvsd: ready, {} worker(s) on lcores {:?}",
            launched.len(),
            cfg.workers.lcores
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let sig = sigs.wait();
        eprintln!("uvsd: signal {sig}, stopping");
    }

    stop.store(true, Ordering::SeqCst);
    let mut failed = vec![];
    for &l in &launched {
        if lcore::wait(&running.eal, l) != 0 {
            failed.push(l);
        }
    }
    // The sync threads use the kernel interfaces: stop them first.
    director.dataplane().sync.stop_all();
    if let Some(t) = exception {
        t.stop();
    }
    control.stop();
    sync_report(director);
    report(&running, &counters, &reports);
    // The mesh's rings hold mbufs of the pool: free them before the ports,
    // the pool and EAL go.
    drop(mesh);
    drop(running);
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

/// The sync daemons' counters (summed over workers and threads), when
/// any is not zero.
fn sync_report(director: &control_hook::UvsDirector) {
    let list: Vec<String> = director
        .dataplane()
        .sync
        .hub()
        .counters_named()
        .into_iter()
        .filter(|&(_, v)| v != 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    if !list.is_empty() {
        eprintln!("uvsd: sync counters: {}", list.join(" "));
    }
}

/// The shutdown report on stderr: counters and neighbour tables.
fn report(
    running: &Running,
    counters: &[Arc<NetCounters>],
    reports: &[Arc<Mutex<Option<WorkerReport>>>],
) {
    for (w, c) in counters.iter().enumerate() {
        let list: Vec<String> = c
            .nonzero()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        eprintln!("uvsd: worker {w} counters: {}", list.join(" "));
    }
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
            eprintln!(
                "uvsd: worker {w} neighbor {ip} lladdr {} port {pname} {}",
                mac_str(*mac),
                if *is_static { "static" } else { "learned" }
            );
        }
    }
    if let Some(k) = &running.kernel {
        k.report();
    }
    for p in &running.ports {
        let s = p.stats();
        eprintln!(
            "uvsd: port {} rx {} tx {} missed {} rx_errors {} tx_errors {}",
            p.name(),
            s.ipackets,
            s.opackets,
            s.imissed,
            s.ierrors,
            s.oerrors
        );
    }
}
