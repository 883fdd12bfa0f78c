//! A load-balancing lab for end-to-end tests: namespaces from
//! scripts/topo.sh (client, bridge, real servers with real services), a
//! uvsd on two taps, uvsadm to configure it, and helpers to check what
//! clients get. Everything is removed on drop, also when a test fails.
//!
//! [`Lab::on_director`] runs uvsd as on an appliance instead: in a
//! namespace of its own (`<p>-dir`) with the server-side port's kernel
//! interface (`kernel = "<p>kb"`), so that programs run there (a health
//! checker) reach the real servers through the exception path.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

use super::{Daemon, Scratch};

pub const TOPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/topo.sh");
pub const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");
pub const VIP: &str = "198.18.0.100";
pub const VIP6: &str = "2001:db8::100";

/// One scenario at a time: each uvsd busy-polls a core.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A topology and a director, removed on drop (in that order: the daemon
/// first, so its taps disappear, then the namespaces).
pub struct Lab {
    pub p: String,
    pub scratch: Scratch,
    daemon: Option<Daemon>,
}

impl Lab {
    /// Builds the namespaces for `method` with `servers` real servers and
    /// `clients` client addresses, starts uvsd, and attaches its taps.
    pub fn new(tag: &str, method: &str, servers: u32, clients: u32) -> Lab {
        Lab::with_workers(tag, method, servers, clients, 1)
    }

    /// [`Lab::new`] with `workers` workers and as many queues per port
    /// (extra lcores share the second CPU: this machine has two).
    pub fn with_workers(tag: &str, method: &str, servers: u32, clients: u32, workers: u32) -> Lab {
        Lab::with_config(tag, method, servers, clients, workers, None, "")
    }

    /// [`Lab::with_workers`] with a `control.rules` file holding `rules`
    /// (at [`Lab::rules_path`]) and `extra` appended to uvsd's config file
    /// (`[[route]]`, `[[neighbor]]`, ...).
    pub fn with_config(
        tag: &str,
        method: &str,
        servers: u32,
        clients: u32,
        workers: u32,
        rules: Option<&str>,
        extra: &str,
    ) -> Lab {
        Lab::build(tag, method, servers, clients, workers, rules, extra, false)
    }

    /// [`Lab::new`] with uvsd in namespace `<p>-dir` (see [`Lab::dir_ns`])
    /// and the server-side port's kernel interface [`Lab::server_kernel_if`]
    /// there: the director's kernel reaches the real servers through
    /// uvsd's exception path and the server port, as on an appliance.
    pub fn on_director(tag: &str, method: &str, servers: u32, clients: u32) -> Lab {
        Lab::build(tag, method, servers, clients, 1, None, "", true)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        tag: &str,
        method: &str,
        servers: u32,
        clients: u32,
        workers: u32,
        rules: Option<&str>,
        extra: &str,
        director_ns: bool,
    ) -> Lab {
        let p = format!("l{}{tag}", std::process::id() % 1000);
        assert!(p.len() <= 7, "prefix {p} too long for interface names");
        let scratch = Scratch::new(&p);
        let mut lab = Lab {
            p: p.clone(),
            scratch,
            daemon: None,
        };
        run(&[
            TOPO,
            "create",
            &p,
            method,
            &servers.to_string(),
            &clients.to_string(),
        ]);
        let kernel_line = if director_ns {
            run(&[TOPO, "director", &p]);
            format!("kernel = \"{}\"\n", lab.server_kernel_if())
        } else {
            String::new()
        };
        let cfg = lab.scratch.path("uvsd.toml");
        let rules_line = match rules {
            Some(text) => {
                std::fs::write(lab.rules_path(), text).unwrap();
                format!("rules = \"{}\"\n", lab.rules_path().display())
            }
            None => String::new(),
        };
        std::fs::write(
            &cfg,
            format!(
                r#"[eal]
args = ["--lcores", "{lcores}", "--no-pci", "--no-huge", "-m", "512", "--file-prefix={p}"]
[workers]
lcores = [{workers}]
conn_capacity = 65536
[control]
socket = "{sock}"
{rules_line}[[port]]
name = "client"
device = "net_tap0,iface={p}c"
queues = {queues}
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
[[port]]
name = "server"
device = "net_tap1,iface={p}b"
queues = {queues}
mac = "02:00:00:00:00:02"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
{kernel_line}{extra}"#,
                sock = lab.sock(),
                lcores = std::iter::once("0@0".to_string())
                    .chain((1..=workers).map(|w| format!("{w}@1")))
                    .collect::<Vec<_>>()
                    .join(","),
                workers = (1..=workers)
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                queues = workers,
            ),
        )
        .unwrap();
        lab.daemon = Some(if director_ns {
            Daemon::start_in(&lab.dir_ns(), &cfg)
        } else {
            Daemon::start(&cfg)
        });
        run(&[TOPO, "attach", &p]);
        lab
    }

    /// The namespace uvsd runs in with [`Lab::on_director`].
    pub fn dir_ns(&self) -> String {
        format!("{}-dir", self.p)
    }

    /// The server-side port's kernel interface with [`Lab::on_director`].
    pub fn server_kernel_if(&self) -> String {
        format!("{}kb", self.p)
    }

    /// Stops uvsd (SIGTERM) and returns its exit status and stderr (the
    /// shutdown report with every worker's counters).
    pub fn stop_daemon(&mut self) -> (Option<std::process::ExitStatus>, String) {
        match self.daemon.take() {
            Some(mut d) => d.stop(),
            None => (None, String::new()),
        }
    }

    /// uvsd's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.daemon
            .as_ref()
            .and_then(|d| d.child.as_ref())
            .map(|c| c.id())
            .expect("uvsd runs")
    }

    /// Whether uvsd is still running.
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .and_then(|d| d.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The `control.rules` file of [`Lab::with_config`].
    pub fn rules_path(&self) -> std::path::PathBuf {
        self.scratch.path("rules")
    }

    /// uvsd's config file (rewrite it, then SIGHUP, to reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.scratch.path("uvsd.toml")
    }

    pub fn sock(&self) -> String {
        self.scratch.path("ctl.sock").display().to_string()
    }

    /// uvsadm with these words; returns (status, stdout, stderr).
    pub fn adm(&self, line: &str) -> (i32, String, String) {
        let out = Command::new(UVSADM)
            .args(["--socket", &self.sock()])
            .args(line.split_whitespace())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// uvsadm that must succeed; its stdout.
    pub fn ok(&self, line: &str) -> String {
        let (code, out, err) = self.adm(line);
        assert_eq!(code, 0, "uvsadm {line}: {err}");
        out
    }

    /// A command inside namespace `ns` (suffix), its stdout if it succeeded.
    pub fn ns(&self, ns: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.p)])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An HTTP GET from the client namespace, from client address `from`.
    pub fn get(&self, from: &str, url: &str) -> Option<String> {
        self.ns(
            "cli",
            &["curl", "-s", "-f", "-m", "5", "--interface", from, url],
        )
    }

    /// Which real server answers `/who` (one new connection).
    pub fn who(&self, from: &str, vip: &str) -> String {
        let url = if vip.contains(':') {
            format!("http://[{vip}]/who")
        } else {
            format!("http://{vip}/who")
        };
        self.get(from, &url)
            .unwrap_or_else(|| panic!("GET {url} from {from} failed"))
            .trim()
            .to_string()
    }

    /// A UDP request to `vip:53` from the client namespace and its answer.
    pub fn udp(&self, vip: &str, payload: &str) -> Option<String> {
        self.udp_from("cli", vip, payload)
    }

    /// A UDP request to `vip:53` from namespace `<p>-<ns>` and its answer.
    pub fn udp_from(&self, ns: &str, vip: &str, payload: &str) -> Option<String> {
        // UDP may lose a datagram (a real client retries): up to 3 tries,
        // each a new request from a new source port.
        for _ in 0..3 {
            let out = Command::new("bash")
                .args([
                    "-c",
                    &format!(
                        "echo {payload} | ip netns exec {}-{ns} nc -u -w 2 {vip} 53",
                        self.p
                    ),
                ])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !s.is_empty() {
                return Some(s);
            }
        }
        None
    }

    /// sha256 of the test blob the servers serve, and of a download.
    pub fn blob_matches(&self, vip: &str) -> bool {
        let want = sha(&std::fs::read(format!("/tmp/{}-www/blob", self.p)).unwrap());
        let url = if vip.contains(':') {
            format!("http://[{vip}]/blob")
        } else {
            format!("http://{vip}/blob")
        };
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", self.p)])
            .args(["curl", "-s", "-f", "-m", "20", &url])
            .output()
            .unwrap();
        out.status.success() && sha(&out.stdout) == want
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.stop();
        }
        let _ = Command::new(TOPO).args(["destroy", &self.p]).status();
    }
}

pub fn run(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed");
}

pub fn sha(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// The Conns column of each real-server line of `-L -n --stats`.
pub fn conns_per_server(stats: &str) -> HashMap<String, u64> {
    stats
        .lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?.to_string();
            let conns = f.next()?.parse().ok()?;
            Some((addr, conns))
        })
        .collect()
}

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
