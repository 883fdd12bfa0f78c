//! Where the control plane plugs into the daemon.
//!
//! [`prepare`] runs before EAL: it builds the [`Director`] (ipvsadm
//! grammar, configuration store, output formats) and applies the config's
//! `rules` file, so a bad rules file stops start-up before any port is
//! touched and an appliance's first snapshot is ready before its workers
//! receive their first packet. [`start`] then serves the Unix socket and
//! ticks the rate estimators every 2 seconds; [`ControlHandle::stop`]
//! closes both at shutdown, after the workers.
//!
//! The director reaches the data plane through [`UvsDataplane`]: new
//! snapshots are published in the [`ConfigCell`] every worker reads,
//! `-L -c` collects each worker's rows through its [`ConnDump`], and
//! `--start-daemon`/`--stop-daemon`/`-L --daemon` drive the sync threads
//! ([`SyncDaemons`]), whose rings each worker's stage holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use control::command::{DaemonConfig, DaemonState};
use control::director::{Dataplane, Director, Refusal, KERNEL_ERROR};
use control::format::counters::CounterTable;
use control::format::DaemonStatus;
use control::server::{Limits, Server};
use dataplane::conn::shared::merge_template_rows;
use dataplane::lb::{ConfigCell, ConnDump, LbCounters};
use dataplane::net::NetCounters;
use dataplane::snapshot::Snapshot;
use dataplane::sync::daemon::{Request, Role, SyncDaemons};
use dataplane::sync::{SyncHub, WorkerSync};
use uvs_model::model::ConnEntry;

use crate::config::Control;

/// How long `-L -c` waits for a worker's rows.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// The data plane as the director sees it.
#[derive(Debug)]
pub struct UvsDataplane {
    pub config: Arc<ConfigCell>,
    pub dumps: Vec<Arc<ConnDump>>,
    pub capacity_per_worker: u32,
    /// The sync daemons, and each worker's end until its stage takes it.
    pub sync: SyncDaemons,
    pub sync_ends: Mutex<Vec<Option<WorkerSync>>>,
    /// The served VIPs' routes for a routing daemon (`[announce]`).
    pub announce: Arc<crate::announce::Announcer>,
    /// Every worker's counters, once the workers run (`--counters`).
    pub counters: OnceLock<WorkerCounters>,
}

/// Where `uvsadm --counters` reads: each worker's stack and load-balancer
/// counters (what the metrics endpoint reads too).
#[derive(Debug)]
pub struct WorkerCounters {
    pub net: Vec<Arc<NetCounters>>,
    pub lb: Vec<Arc<LbCounters>>,
    /// Connection-table capacity of each worker.
    pub capacity: u32,
}

fn role(s: DaemonState) -> Role {
    match s {
        DaemonState::Master => Role::Master,
        DaemonState::Backup => Role::Backup,
    }
}

impl Dataplane for UvsDataplane {
    fn publish(&self, snapshot: Arc<Snapshot>) {
        self.announce.update(&snapshot);
        let g = snapshot.generation;
        self.config.publish(snapshot);
        // The command returns once the workers use it (see ConfigCell).
        self.config.wait_taken(g, Duration::from_secs(1));
    }

    /// Every worker's rows; a persistence template that several workers
    /// hold a copy of is the director's one template, listed once.
    fn connections(&self) -> Vec<ConnEntry> {
        let mut all = Vec::new();
        for d in &self.dumps {
            if let Some(rows) = d.collect(DUMP_TIMEOUT) {
                all.extend(rows);
            }
        }
        if self.dumps.len() > 1 {
            all = merge_template_rows(all);
        }
        all
    }

    fn conn_tab_size(&self) -> u32 {
        self.capacity_per_worker
            .saturating_mul(self.dumps.len() as u32)
    }

    fn reclaim(&self) {
        self.config.reclaim();
    }

    fn start_daemon(&self, cfg: &DaemonConfig) -> Result<(), Refusal> {
        let req = Request {
            role: role(cfg.state),
            ifname: cfg.mcast_interface.clone(),
            syncid: cfg.syncid,
            maxlen: cfg.sync_maxlen,
            group: cfg.mcast_group,
            port: cfg.mcast_port,
            ttl: cfg.mcast_ttl,
        };
        match self.sync.start(&req) {
            Ok(s) => {
                crate::log_event!(
                    crate::log::Level::Info,
                    "sync_daemon_started",
                    role = if s.role == Role::Master {
                        "master"
                    } else {
                        "backup"
                    },
                    iface = s.ifname.clone(),
                    syncid = s.syncid,
                    group = s.group.to_string(),
                    port = s.port
                );
                Ok(())
            }
            Err(e) => Err(Refusal::new(KERNEL_ERROR, e.to_string())),
        }
    }

    fn stop_daemon(&self, state: DaemonState) -> Result<(), Refusal> {
        self.sync
            .stop(role(state))
            .map_err(|e| Refusal::new(KERNEL_ERROR, e.to_string()))
    }

    fn counters(&self) -> Option<CounterTable> {
        let c = self.counters.get()?;
        let samples: Vec<_> = c
            .net
            .iter()
            .zip(&c.lb)
            .map(|(n, l)| crate::metrics::WorkerSample::read(n, l, c.capacity).named())
            .collect();
        let mut t = CounterTable {
            workers: samples.len(),
            rows: Vec::new(),
        };
        for (w, sample) in samples.into_iter().enumerate() {
            for (i, (name, v)) in sample.into_iter().enumerate() {
                if w == 0 {
                    t.rows.push((name, vec![v]));
                } else if let Some(row) = t.rows.get_mut(i) {
                    row.1.push(v);
                }
            }
        }
        Some(t)
    }

    fn daemons(&self) -> Vec<DaemonStatus> {
        let counters: Vec<(String, u64)> = self
            .sync
            .hub()
            .counters_named()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        self.sync
            .status()
            .into_iter()
            .map(|s| DaemonStatus {
                state: match s.role {
                    Role::Master => DaemonState::Master,
                    Role::Backup => DaemonState::Backup,
                },
                mcast_interface: s.ifname,
                syncid: s.syncid,
                maxlen: s.maxlen,
                group: Some(s.group),
                port: s.port,
                ttl: s.ttl,
                counters: counters.clone(),
            })
            .collect()
    }
}

/// The director, built before EAL with the rules applied.
pub type UvsDirector = Director<UvsDataplane>;

/// Builds the director for `nworkers` workers and applies the rules file.
pub fn prepare(
    control: &Control,
    nworkers: usize,
    capacity_per_worker: u32,
) -> Result<Arc<UvsDirector>, String> {
    let (hub, ends) = SyncHub::new(nworkers);
    let dp = UvsDataplane {
        config: Arc::new(ConfigCell::default()),
        dumps: (0..nworkers)
            .map(|_| Arc::new(ConnDump::default()))
            .collect(),
        capacity_per_worker,
        sync: SyncDaemons::new(hub),
        sync_ends: Mutex::new(ends.into_iter().map(Some).collect()),
        announce: Arc::default(),
        counters: OnceLock::new(),
    };
    let director = Director::new(dp);
    if let Some(path) = &control.rules {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("control.rules {}: {e}", path.display()))?;
        director.load_rules(&text).map_err(|r| {
            format!(
                "control.rules {}: {}",
                path.display(),
                r.message.trim_end().replace('\n', " ")
            )
        })?;
    }
    Ok(Arc::new(director))
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlHandle {
    server: Server,
    stop: Arc<AtomicBool>,
    ticker: Option<thread::JoinHandle<()>>,
}

impl ControlHandle {
    /// Stops the control plane (closes and removes the socket, joins the
    /// estimator thread).
    pub fn stop(mut self) {
        self.server.stop();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Serves `control.socket` with `director`.
pub fn start(control: &Control, director: &Arc<UvsDirector>) -> Result<ControlHandle, String> {
    let server = Server::start(
        &control.socket,
        control.group.as_deref(),
        Limits::default(),
        crate::audit::Audited(Arc::clone(director)),
    )
    .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, d) = (Arc::clone(&stop), Arc::clone(director));
    let ticker = thread::Builder::new()
        .name("uvs-estimator".into())
        .spawn(move || {
            // The kernel's estimator period: 2 s, checked in small steps so
            // that shutdown is prompt.
            let mut waited = Duration::ZERO;
            while !stop2.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited >= Duration::from_secs(2) {
                    waited = Duration::ZERO;
                    d.tick_estimators();
                }
            }
        })
        .map_err(|e| format!("estimator thread: {e}"))?;
    Ok(ControlHandle {
        server,
        stop,
        ticker: Some(ticker),
    })
}

/// The shared state a worker's load-balancing stage needs.
pub fn worker_shares(director: &UvsDirector, worker: usize) -> (Arc<ConfigCell>, Arc<ConnDump>) {
    let dp = director.dataplane();
    (Arc::clone(&dp.config), Arc::clone(&dp.dumps[worker]))
}

/// Worker `worker`'s end of the sync rings (taken once, by its stage).
pub fn worker_sync(director: &UvsDirector, worker: usize) -> Option<WorkerSync> {
    let mut ends = match director.dataplane().sync_ends.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    ends.get_mut(worker).and_then(Option::take)
}
