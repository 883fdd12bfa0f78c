//! Helpers for the daemon's end-to-end tests: a running uvsd that is
//! stopped on drop, network namespaces removed on drop, and unique names
//! so tests running in parallel never collide.
#![allow(dead_code)]

pub mod lab;
pub mod pcap;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const UVSD: &str = env!("CARGO_BIN_EXE_uvsd");

/// `name=value` from worker `worker`'s `counters` line of uvsd's shutdown
/// report (0 when the line does not name the counter).
pub fn shutdown_counter(report: &str, worker: usize, name: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| {
            l.starts_with("uvsd: counters ")
                && l.split_whitespace()
                    .any(|w| w == format!("worker={worker}"))
        })
        .unwrap_or_else(|| panic!("no counters for worker {worker}: {report}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .map_or(0, |v| v.parse().unwrap())
}

/// A name unique to this test process and `tag` (short: tap names are
/// limited to 15 characters).
pub fn unique(tag: &str) -> String {
    format!("u{}{tag}", std::process::id() % 100_000)
}

/// A scratch directory for one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("uvs-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a command succeeds (output discarded).
pub fn ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Network namespaces deleted on drop (even when the test fails).
pub struct Netns(pub Vec<String>);

impl Netns {
    pub fn create(names: &[&str]) -> Netns {
        let ns = Netns(names.iter().map(|s| s.to_string()).collect());
        for n in names {
            let _ = ok(&["ip", "netns", "del", n]);
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = ok(&["ip", "netns", "del", n]);
        }
    }
}

/// A uvsd child process; SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    pub child: Option<Child>,
    /// Log lines as they arrive; `None` once stderr closed.
    log_rx: mpsc::Receiver<Option<String>>,
    /// The log lines read so far (up to and including `uvsd: ready`).
    pub log: Vec<String>,
}

impl Daemon {
    /// Starts uvsd with `config` and waits for its `uvsd: ready` log line.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_cmd(Command::new(UVSD), config)
    }

    /// [`Daemon::start`] inside network namespace `ns` (`ip netns exec`
    /// execs uvsd, so the child is uvsd itself).
    pub fn start_in(ns: &str, config: &Path) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, UVSD]);
        Daemon::start_cmd(cmd, config)
    }

    fn start_cmd(mut cmd: Command, config: &Path) -> Daemon {
        Daemon::start_with(cmd.arg("--config").arg(config))
    }

    /// Starts a prepared uvsd command (extra environment, arguments) and
    /// waits for its `uvsd: ready` log line.
    pub fn start_with(cmd: &mut Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("uvsd starts");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(Some(l));
            }
            let _ = tx.send(None);
        });
        let mut d = Daemon {
            child: Some(child),
            log_rx: rx,
            log: vec![],
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match d
                .log_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Some(l)) => {
                    let ready = l.starts_with("uvsd: ready");
                    d.log.push(l);
                    if ready {
                        return d;
                    }
                }
                Ok(None) | Err(_) => {
                    let (st, err) = d.stop();
                    panic!("uvsd did not become ready ({st:?}): {err}");
                }
            }
        }
    }

    /// Reads the log until a line satisfies `pred` (that line), or
    /// `secs` seconds passed or stderr closed (None). Lines read stay in
    /// [`Daemon::log`].
    pub fn wait_log(&mut self, secs: u64, pred: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self
                .log_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Some(l)) => {
                    let hit = pred(&l);
                    self.log.push(l.clone());
                    if hit {
                        return Some(l);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// SIGKILL (a crash: no shutdown report), and wait for the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait (60 s at most), and return the exit status and the
    /// whole log (stderr) since start. Why so long: uvsd's own shutdown
    /// takes milliseconds, but closing a TAP that sits in a bridge waits on
    /// the kernel, which took 19 s on a loaded CI run (uvsd logs such a
    /// step as `shutdown_slow`; docs/design/shutdown.md). A uvsd that hangs
    /// is still caught, with its threads' kernel stacks.
    pub fn stop(&mut self) -> (Option<ExitStatus>, String) {
        let Some(mut child) = self.child.take() else {
            return (None, String::new());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "uvsd (pid {}) did not stop within 60 s of SIGTERM; SIGKILL. Its threads:\n{}Kernel warnings:\n{}",
                    child.id(),
                    threads(child.id()),
                    kernel_warnings()
                );
                let _ = child.kill();
                // A process that outlives SIGKILL waits in the kernel
                // (uninterruptibly): say so, with where, then wait on.
                let killed = Instant::now();
                while matches!(child.try_wait(), Ok(None)) {
                    if killed.elapsed() > Duration::from_secs(10) {
                        eprintln!(
                            "uvsd (pid {}) still runs 10 s after SIGKILL: it waits in the kernel:\n{}",
                            child.id(),
                            threads(child.id())
                        );
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(Some(l)) = self.log_rx.recv_timeout(Duration::from_secs(5)) {
            self.log.push(l);
        }
        let mut all = self.log.join("\n");
        all.push('\n');
        (status, all)
    }
}

/// Every thread of process `pid`, one line each: name, state, the kernel
/// function it waits in (`wchan`), and its kernel stack when readable (a
/// stop that hangs in a system call shows where).
pub fn threads(pid: u32) -> String {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("  (no /proc/{pid}/task: the process is gone)\n");
    };
    let mut tasks: Vec<PathBuf> = tasks.flatten().map(|e| e.path()).collect();
    tasks.sort();
    for t in tasks {
        let state = read(&t.join("status"))
            .lines()
            .find_map(|l| l.strip_prefix("State:").map(|v| v.trim().to_string()))
            .unwrap_or_default();
        out.push_str(&format!(
            "  tid {} {} state={state} wchan={}\n",
            t.file_name().unwrap_or_default().to_string_lossy(),
            read(&t.join("comm")).trim(),
            read(&t.join("wchan")).trim()
        ));
        for l in read(&t.join("stack")).lines() {
            out.push_str(&format!("      {l}\n"));
        }
    }
    out
}

/// The kernel log's recent lines that say a task or a workqueue is stuck
/// (a close(2) of a TAP waits for rtnl_lock and the kernel's workqueues).
pub fn kernel_warnings() -> String {
    let log = Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let hits: Vec<&str> = log
        .lines()
        .filter(|l| {
            [
                "lockup",
                "blocked for more",
                "unregister_netdevice",
                "hung",
                "stall",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    let mut out = String::new();
    for l in &hits[hits.len().saturating_sub(10)..] {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Hugepage files and the runtime directory EAL would leave for `prefix`.
pub fn leftovers(prefix: &str) -> Vec<PathBuf> {
    let mut v = vec![];
    if let Ok(rd) = std::fs::read_dir("/dev/hugepages") {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}map_"))
            {
                v.push(e.path());
            }
        }
    }
    let run = PathBuf::from("/var/run/dpdk").join(prefix);
    if run.exists() {
        v.push(run);
    }
    v
}

/// Fails clearly when the machine cannot run DPDK tests.
pub fn require_root() {
    // SAFETY-free check: /proc/self/status Uid line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("1");
    assert_eq!(
        uid, "0",
        "this end-to-end test needs root (namespaces, taps, hugepages): run scripts/test as root"
    );
}

/// Background processes (listeners, servers) killed and reaped on drop:
/// removing a namespace would not end them.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `args` as a command run in network namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Waits (at most 30 s: python starts slowly on a loaded machine) until a
/// TCP socket listens on `port` in namespace `ns`, without connecting to
/// it (a probe connection would count as a client of the service).
pub fn wait_listening(ns: &str, port: u16) {
    let t0 = std::time::Instant::now();
    loop {
        let out = in_ns(ns, &["ss", "-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "nothing listens on port {port} in {ns}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
