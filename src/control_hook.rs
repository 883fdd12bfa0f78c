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
//! snapshots are published in the [`ConfigCell`] every worker reads, and
//! `-L -c` collects each worker's rows through its [`ConnDump`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use control::director::{Dataplane, Director};
use control::server::{Limits, Server};
use dataplane::conn::shared::merge_template_rows;
use dataplane::lb::{ConfigCell, ConnDump};
use dataplane::model::{ConnEntry, Snapshot};

use crate::config::Control;

/// How long `-L -c` waits for a worker's rows.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// The data plane as the director sees it.
#[derive(Debug)]
pub struct UvsDataplane {
    pub config: Arc<ConfigCell>,
    pub dumps: Vec<Arc<ConnDump>>,
    pub capacity_per_worker: u32,
}

impl Dataplane for UvsDataplane {
    fn publish(&self, snapshot: Arc<Snapshot>) {
        self.config.publish(snapshot);
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
}

/// The director, built before EAL with the rules applied.
pub type UvsDirector = Director<UvsDataplane>;

/// Builds the director for `nworkers` workers and applies the rules file.
pub fn prepare(
    control: &Control,
    nworkers: usize,
    capacity_per_worker: u32,
) -> Result<Arc<UvsDirector>, String> {
    let dp = UvsDataplane {
        config: Arc::new(ConfigCell::default()),
        dumps: (0..nworkers)
            .map(|_| Arc::new(ConnDump::default()))
            .collect(),
        capacity_per_worker,
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
