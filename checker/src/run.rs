//! The uvs-keepalived daemon: configure uvsd from the file, run every
//! checker, apply what the state machine decides, keep a status file.
//!
//! Threads: one per checker (it sleeps until its next probe, runs the
//! blocking, time-bounded probe and reports), and the main thread, which
//! alone owns the state of every virtual server, talks to uvsd and writes
//! logs and the status file. A slow or hanging server or script therefore
//! delays only its own checker. One thread per checker is fine for the
//! hundreds of real servers a keepalived.conf usually holds.
//!
//! Start-up is all or nothing as far as the file goes (a bad file changes
//! nothing); after that a command uvsd refuses is logged and checking goes
//! on. On SIGTERM/SIGINT the services the file defines are removed (as
//! keepalived does), after the `omega` scripts.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::conf::{self, CheckKind, Checker, Config};
use crate::director::Director;
use crate::probe::{self, misc, Outcome};
use crate::state::{Action, VsState};

/// keepalived's BOOTSTRAP_DELAY: the first probe waits 1 s + warmup.
const BOOTSTRAP: Duration = Duration::from_secs(1);
/// Notify and quorum scripts are killed after this long.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the status listing goes unless `--status-file` says otherwise.
pub const DEFAULT_STATUS: &str = "/run/uvs/keepalived.status";

pub struct Options {
    pub config: PathBuf,
    pub socket: PathBuf,
    pub status_file: PathBuf,
}

/// Why the daemon stopped before or instead of running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration was refused; nothing was changed.
    #[error("{0}")]
    Config(#[from] conf::ConfError),
    /// uvsd refused the configuration or could not be reached (what this
    /// run had set up is taken back), or the checkers could not start.
    #[error("{0}")]
    Director(String),
}

/// A probe to run after a delay.
struct Job {
    delay: Duration,
    url: usize,
}

/// A probe's result, from a checker thread.
struct Report {
    vs: usize,
    ci: usize,
    outcome: Outcome,
    started: Instant,
}

pub fn run(opts: &Options) -> Result<(), RunError> {
    let cfg = conf::load(&opts.config)?;
    let dir = Director {
        socket: opts.socket.clone(),
    };
    dir.call(vec!["-L".into(), "-n".into()])
        .map_err(RunError::Director)?;
    let stop = Arc::new(AtomicBool::new(false));
    // keepalived reloads on SIGHUP; this daemon does not yet, and must
    // not die of it either.
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [(SIGTERM, &stop), (SIGINT, &stop), (SIGHUP, &hup)] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| RunError::Director(format!("cannot handle signals: {e}")))?;
    }
    let mut d = Daemon::configure(cfg, dir, opts.status_file.clone())?;
    crate::log(&format!(
        "configured {} virtual server(s) from {}; checking",
        d.cfg.virtual_servers.len(),
        opts.config.display()
    ));
    let (report_tx, reports) = channel();
    let jobs = match start_checkers(&d.cfg, &d.states, &report_tx) {
        Ok(j) => j,
        Err(e) => {
            d.remove_all();
            return Err(RunError::Director(format!(
                "cannot start the checkers: {e}"
            )));
        }
    };
    d.write_status();
    while !stop.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            crate::log(
                "SIGHUP: reloading is not supported; restart uvs-keepalived to read the file again",
            );
        }
        match reports.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => {
                let next = d.on_report(&r);
                let _ = jobs[r.vs][r.ci].send(next);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    d.stop();
    Ok(())
}

/// The main thread's state: the configuration, uvsd, and the state of
/// every virtual server.
struct Daemon {
    cfg: Config,
    dir: Director,
    states: Vec<VsState>,
    status_file: PathBuf,
}

impl Daemon {
    /// Creates the services (`lvs_flush` first if asked) and installs the
    /// start state of every virtual server. If uvsd refuses a service,
    /// what this run set up is taken back.
    fn configure(cfg: Config, dir: Director, status_file: PathBuf) -> Result<Daemon, RunError> {
        if cfg.global.lvs_flush {
            dir.call(vec!["-C".into()]).map_err(RunError::Director)?;
        }
        let mut states = Vec::new();
        for (i, vs) in cfg.virtual_servers.iter().enumerate() {
            if let Err(e) = dir.ensure_services(vs) {
                for done in &cfg.virtual_servers[..i] {
                    dir.remove_services(done);
                }
                return Err(RunError::Director(e));
            }
            let (st, acts) = VsState::start(vs);
            carry_out(&dir, vs, &acts);
            states.push(st);
        }
        Ok(Daemon {
            cfg,
            dir,
            states,
            status_file,
        })
    }

    /// Takes a probe's result; returns the checker's next job.
    fn on_report(&mut self, r: &Report) -> Job {
        let vs = &self.cfg.virtual_servers[r.vs];
        let st = &mut self.states[r.vs];
        let checker = checker_of(vs, st, r.ci);
        let (acts, next) = match &r.outcome {
            Outcome::Pass { dynamic } => st.on_result(vs, r.ci, true, *dynamic, ""),
            Outcome::Fail(why) => st.on_result(vs, r.ci, false, None, why),
            Outcome::Skip(why) => {
                crate::log(&format!("{why} (not counted; next try after delay_loop)"));
                (vec![], checker.timing.delay_loop)
            }
        };
        // MISC_CHECK counts its delay from the start of the run, the
        // others from its end (keepalived's rule).
        let delay = if matches!(checker.kind, CheckKind::Misc(_)) {
            next.saturating_sub(r.started.elapsed())
        } else {
            next
        };
        let url = st.checkers[r.ci].2.url();
        if !acts.is_empty() {
            carry_out(&self.dir, vs, &acts);
            self.write_status();
        }
        Job { delay, url }
    }

    /// omega's scripts, then the services of the file leave uvsd.
    fn stop(&mut self) {
        crate::log("stopping: removing the services of the configuration");
        for (vs, st) in self.cfg.virtual_servers.iter().zip(&self.states) {
            carry_out(&self.dir, vs, &st.shutdown(vs));
        }
        self.remove_all();
        let _ = std::fs::remove_file(&self.status_file);
        // Give omega's scripts a moment to start before the process ends.
        std::thread::sleep(Duration::from_millis(100));
    }

    fn remove_all(&self) {
        for vs in &self.cfg.virtual_servers {
            self.dir.remove_services(vs);
        }
    }

    /// The status listing (see the README), replaced atomically.
    fn write_status(&self) {
        let mut out = String::new();
        for (vs, st) in self.cfg.virtual_servers.iter().zip(&self.states) {
            st.status(vs, &mut out);
        }
        let path = &self.status_file;
        let tmp = path.with_extension("tmp");
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let res = std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            crate::log(&format!(
                "cannot write the status file {}: {e}",
                path.display()
            ));
        }
    }
}

fn checker_of<'a>(vs: &'a conf::VirtualServer, st: &VsState, ci: usize) -> &'a Checker {
    let (ri, cj, _) = &st.checkers[ci];
    &vs.real_servers[*ri].checkers[*cj]
}

/// One thread per checker; returns each checker's job sender, by virtual
/// server and checker index. The first probe is after 1 s + a random part
/// of warmup, so checkers do not all fire at once.
fn start_checkers(
    cfg: &Config,
    states: &[VsState],
    reports: &Sender<Report>,
) -> std::io::Result<Vec<Vec<Sender<Job>>>> {
    let random = RandomState::new();
    let mut all = Vec::new();
    for (v, (vs, st)) in cfg.virtual_servers.iter().zip(states).enumerate() {
        let mut senders = Vec::new();
        for ci in 0..st.checkers.len() {
            let checker = checker_of(vs, st, ci).clone();
            let (tx, rx) = channel();
            let warmup = checker.timing.warmup.as_micros() as u64;
            let jitter = if warmup == 0 {
                0
            } else {
                random.hash_one((v, ci)) % warmup
            };
            let _ = tx.send(Job {
                delay: BOOTSTRAP + Duration::from_micros(jitter),
                url: 0,
            });
            let reports = reports.clone();
            std::thread::Builder::new()
                .name(format!("check-{v}-{ci}"))
                .spawn(move || checker_thread(v, ci, &checker, &rx, &reports))?;
            senders.push(tx);
        }
        all.push(senders);
    }
    Ok(all)
}

fn checker_thread(
    v: usize,
    ci: usize,
    c: &Checker,
    jobs: &Receiver<Job>,
    reports: &Sender<Report>,
) {
    while let Ok(job) = jobs.recv() {
        std::thread::sleep(job.delay);
        let started = Instant::now();
        let outcome = probe::run(c, job.url);
        if reports
            .send(Report {
                vs: v,
                ci,
                outcome,
                started,
            })
            .is_err()
        {
            return;
        }
    }
}

fn carry_out(dir: &Director, vs: &conf::VirtualServer, acts: &[Action]) {
    for a in acts {
        match a {
            Action::Log(l) => crate::log(l),
            Action::Notify(s) => misc::notify(s, NOTIFY_TIMEOUT),
            _ => dir.apply(vs, std::slice::from_ref(a)),
        }
    }
}
