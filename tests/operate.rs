//! Operating uvsd: signals, reloads, restarts, a second instance, and
//! peers or ports that go away, checked as an operator would (uvsadm,
//! the log, what is left on disk, whether clients are still served).
//!
//! Needs root (taps, namespaces, hugepages); one uvsd at a time. Each test
//! uses its own file prefix, socket and interface names.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{conns_per_server, lock, Lab, UVSADM, VIP};
use common::{leftovers, require_root, unique, Daemon, Scratch, UVSD};

/// Sends `sig` (a name such as "HUP") to `pid`.
fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// Polls `f` for up to `secs` seconds.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

/// uvsadm against `sock`: (status, stdout, stderr).
fn adm(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(UVSADM)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A one-port uvsd config (a tap nobody attaches; nothing but the daemon
/// itself is exercised). `huge`: hugepages instead of `--no-huge`.
fn small_config(dir: &Scratch, prefix: &str, sock: &Path, huge: bool) -> PathBuf {
    let mem = if huge {
        r#""-m", "64""#
    } else {
        r#""--no-huge", "-m", "256""#
    };
    let cfg = dir.path(&format!("{prefix}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["--lcores", "0@0,1@1", "--no-pci", {mem}, "--file-prefix={prefix}"]
[workers]
lcores = [1]
conn_capacity = 4096
[control]
socket = "{sock}"
[[port]]
name = "p"
device = "net_tap0,iface={prefix}t"
addresses = ["198.18.7.1/24"]
"#,
            sock = sock.display()
        ),
    )
    .unwrap();
    cfg
}

/// A TCP connection from the client namespace to `VIP:80` that sends half
/// a request, stays open until told, then finishes it and returns the
/// answer's body (which real server answered).
struct HeldConnection(Child);

impl HeldConnection {
    fn open(lab: &Lab) -> HeldConnection {
        let script = format!(
            r#"
import socket, sys
s = socket.create_connection(("{VIP}", 80), timeout=60)
s.sendall(b"GET /who HTTP/1.0\r\n")
print("open", flush=True)
sys.stdin.readline()
s.sendall(b"Host: uvs\r\n\r\n")
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
print(data.decode().split("\r\n\r\n", 1)[-1].strip(), flush=True)
"#
        );
        let mut c = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cli", lab.p), "python3", "-c"])
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "open", "the held connection did not open");
        HeldConnection(c)
    }

    fn finish(mut self) -> String {
        self.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = self.0.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

const RULES_V1: &str = "\
-A -t 198.18.0.100:80 -s rr
-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m
-A -u 198.18.0.100:53 -s rr
-a -u 198.18.0.100:53 -r 198.18.1.12:53 -m
";

/// v1 without the UDP service, plus a service whose real server is
/// reachable only through the route the reload adds.
const RULES_V2: &str = "\
-A -t 198.18.0.100:80 -s rr
-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m
-A -t 198.18.0.101:80 -s rr
-a -t 198.18.0.101:80 -r 198.19.99.1:80 -m
";

const ROUTE: &str = "[[route]]\nto = \"198.19.99.0/24\"\nvia = \"198.18.1.12\"\n";

#[test]
fn sighup_reloads_rules_and_routes_and_keeps_established_connections() {
    require_root();
    let _g = lock();
    let mut lab = Lab::with_config("h", "nat", 2, 1, 1, Some(RULES_V1), "");
    // rs2 also answers on 198.19.99.1, which only a route via rs2 reaches.
    lab.ns("rs2", &["ip", "addr", "add", "198.19.99.1/32", "dev", "lo"])
        .expect("address on rs2");
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
    let held = HeldConnection::open(&lab);
    let before = conns_per_server(&lab.ok("-L -n --stats"))["198.18.1.11:80"];

    let cfg = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(lab.config_path(), format!("{cfg}{ROUTE}")).unwrap();
    std::fs::write(lab.rules_path(), RULES_V2).unwrap();
    signal(lab.pid(), "HUP");
    assert!(
        eventually(30, || lab.ok("-L -n").contains("198.18.0.101:80")),
        "the reload did not add the new service"
    );
    let list = lab.ok("-L -n");
    assert!(
        !list.contains("UDP"),
        "the UDP service was not deleted: {list}"
    );
    // The established connection survived and the kept service kept its
    // counters (the held connection is one of them).
    assert_eq!(held.finish(), "rs1", "the held connection broke");
    let after = conns_per_server(&lab.ok("-L -n --stats"))["198.18.1.11:80"];
    assert_eq!(after, before, "counters of the kept service changed");
    // The new route is in use: the new service's server is behind it.
    assert_eq!(lab.who("198.18.0.2", "198.18.0.101"), "rs2");

    // A bad rules file changes nothing, not even its good lines.
    let listing = lab.ok("-L -n");
    std::fs::write(
        lab.rules_path(),
        format!(
            "{RULES_V2}-A -t 198.18.0.102:80 -s rr\n-a -t 198.18.0.103:80 -r 198.18.1.11:80 -m\n"
        ),
    )
    .unwrap();
    signal(lab.pid(), "HUP");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.ok("-L -n"), listing);
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");

    // What needs a restart is reported, not applied; the rest reloads.
    std::fs::write(lab.rules_path(), RULES_V2).unwrap();
    let cfg = std::fs::read_to_string(lab.config_path()).unwrap();
    std::fs::write(
        lab.config_path(),
        cfg.replace("conn_capacity = 65536", "conn_capacity = 1024"),
    )
    .unwrap();
    signal(lab.pid(), "HUP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.daemon_running());
    assert_eq!(lab.who("198.18.0.2", "198.18.0.101"), "rs2");
    let (st, err) = lab.stop_daemon();
    assert!(st.is_some_and(|s| s.success()), "{st:?} {err}");
    assert!(
        err.contains(
            "uvsd: reload_refused level=warn result=\"nothing changed\" reason=\"control.rules"
        ),
        "{err}"
    );
    assert!(err.contains("[workers] changed: not applied"), "{err}");
}

#[test]
fn every_operator_signal_is_handled_and_each_stop_is_clean() {
    require_root();
    let _g = lock();
    let dir = Scratch::new("sig");
    for (i, stop) in ["TERM", "INT", "QUIT"].into_iter().enumerate() {
        let prefix = unique(&format!("s{i}"));
        let sock = dir.path(&format!("{prefix}.sock"));
        let mut d = Daemon::start(&small_config(&dir, &prefix, &sock, false));
        let pid = d.child.as_ref().unwrap().id();
        if i == 0 {
            for sig in ["PIPE", "USR1", "USR2", "HUP"] {
                signal(pid, sig);
                std::thread::sleep(Duration::from_millis(300));
                assert_eq!(adm(&sock, &["-L", "-n"]).0, 0, "uvsd gone after SIG{sig}");
            }
        }
        signal(pid, stop);
        let (st, err) = d.stop();
        assert!(st.is_some_and(|s| s.success()), "SIG{stop}: {st:?} {err}");
        assert!(
            err.contains(&format!("uvsd: stopping level=info signal=SIG{stop}")),
            "{err}"
        );
        assert!(
            err.contains("uvsd: port_stats level=info port=p rx="),
            "no shutdown report: {err}"
        );
        if i == 0 {
            assert!(err.contains("signal=SIGUSR1 action=log_counters"), "{err}");
            assert!(err.contains("signal=SIGUSR2 action=ignored"), "{err}");
            assert!(err.contains("signal=SIGHUP action=reload"), "{err}");
        }
        assert!(!sock.exists(), "socket left after SIG{stop}");
        assert_eq!(leftovers(&prefix), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_restart_after_kill_9_needs_no_cleanup_and_touches_only_its_prefix() {
    require_root();
    let _g = lock();
    let dir = Scratch::new("k9");
    let prefix = unique("k9");
    let sock = dir.path("k9.sock");
    // Files of another prefix that must survive the clean-up. The hugepage
    // file is locked, as a running DPDK process holds its own: EAL itself
    // removes every unlocked `*map_*` file of any prefix when it starts.
    let other = unique("ot");
    let other_run = PathBuf::from("/var/run/dpdk").join(&other);
    let other_huge = PathBuf::from(format!("/dev/hugepages/{other}map_0"));
    std::fs::create_dir_all(&other_run).unwrap();
    let held = std::fs::File::create(&other_huge).unwrap();
    held.lock_shared().unwrap();

    let cfg = small_config(&dir, &prefix, &sock, true);
    let mut d = Daemon::start(&cfg);
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(sock.exists(), "kill -9 leaves the socket");
    assert!(!leftovers(&prefix).is_empty(), "kill -9 leaves EAL's files");

    let mut d = Daemon::start(&cfg);
    assert!(
        d.log
            .iter()
            .any(|l| l.contains("removed what a previous uvsd left behind")),
        "{:?}",
        d.log
    );
    assert_eq!(adm(&sock, &["-L", "-n"]).0, 0);
    let (st, err) = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?} {err}");
    assert_eq!(leftovers(&prefix), Vec::<PathBuf>::new());
    assert!(
        other_run.exists(),
        "another prefix's runtime directory was removed"
    );
    assert!(
        other_huge.exists(),
        "another prefix's hugepage file was removed"
    );
    drop(held);
    let _ = std::fs::remove_file(&other_huge);
    let _ = std::fs::remove_dir_all(&other_run);
}

#[test]
fn a_second_uvsd_on_the_same_prefix_or_socket_is_refused() {
    require_root();
    let _g = lock();
    let dir = Scratch::new("two");
    let prefix = unique("p1");
    let sock = dir.path("one.sock");
    let mut first = Daemon::start(&small_config(&dir, &prefix, &sock, false));
    let cases = [
        (
            small_config(&dir, &prefix, &dir.path("two.sock"), false),
            format!("another uvsd is running with file prefix \"{prefix}\""),
        ),
        (
            small_config(&dir, &unique("p2"), &sock, false),
            format!(
                "another uvsd is running with control socket {}",
                sock.display()
            ),
        ),
    ];
    for (cfg, why) in cases {
        let out = Command::new(UVSD)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&why), "{err}");
        // The first one is untouched and still serves.
        assert_eq!(adm(&sock, &["-L", "-n"]).0, 0);
    }
    let (st, err) = first.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?} {err}");
}

#[test]
fn sigterm_finishes_when_the_socket_file_was_removed() {
    require_root();
    let _g = lock();
    let dir = Scratch::new("rm");
    let prefix = unique("rm");
    let sock = dir.path("rm.sock");
    let mut d = Daemon::start(&small_config(&dir, &prefix, &sock, false));
    std::fs::remove_file(&sock).unwrap();
    let (st, err) = d.stop();
    assert!(
        st.is_some_and(|s| s.success()),
        "uvsd did not finish after SIGTERM: {st:?} {err}"
    );
    assert_eq!(leftovers(&prefix), Vec::<PathBuf>::new());
}

#[test]
fn a_port_whose_link_goes_down_or_whose_tap_is_deleted_does_not_stop_uvsd() {
    require_root();
    let _g = lock();
    let mut lab = Lab::new("t", "nat", 1, 1);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m"));
    assert_eq!(lab.who("198.18.0.2", VIP), "rs1");
    // Link down and up again on the client side: served again.
    let tap = format!("{}c", lab.p);
    lab.ns("cli", &["ip", "link", "set", &tap, "down"]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab.ns("cli", &["ip", "link", "set", &tap, "up"]).unwrap();
    assert!(
        eventually(20, || lab
            .get("198.18.0.2", &format!("http://{VIP}/who"))
            .is_some()),
        "not served after the link came back"
    );
    // The server side's tap deleted: uvsd keeps running and answering.
    lab.ns("br", &["ip", "link", "del", &format!("{}b", lab.p)])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = lab.get("198.18.0.2", &format!("http://{VIP}/who"));
    assert!(lab.daemon_running(), "uvsd died with its tap");
    assert!(lab.ok("-L -n").contains(&format!("{VIP}:80")));
    let (st, err) = lab.stop_daemon();
    assert!(st.is_some_and(|s| s.success()), "{st:?} {err}");
    assert!(!err.contains("fatal"), "{err}");
}

/// Kills uvsd's memif peer (dpdk-testpmd sending as fast as it can) a few
/// times while traffic flows; uvsd must survive each kill and take the
/// next peer. bench/scripts/memif-peer-kills.sh does the same 100 times.
#[test]
fn memif_peer_killed_while_traffic_flows_never_takes_uvsd_down() {
    require_root();
    let _g = lock();
    let dir = Scratch::new("mk");
    let prefix = unique("mk");
    let peer_prefix = unique("mp");
    let sock = dir.path("mk.sock");
    let memif = dir.path("memif.sock");
    let cfg = dir.path("mk.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["--lcores", "0@0,1@1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix={prefix}"]
[workers]
lcores = [1]
conn_capacity = 4096
[control]
socket = "{sock}"
[[port]]
name = "memif"
device = "net_memif0,role=server,socket={memif}"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/15"]
"#,
            sock = sock.display(),
            memif = memif.display()
        ),
    )
    .unwrap();
    let log = dir.path("uvsd.log");
    let mut uvsd = Command::new(UVSD)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path("uvsd.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Packets uvsd received so far (SIGUSR1 logs its counters): a new
    // peer is connected when this grows.
    let pid = uvsd.id();
    let rx_now = || {
        signal(pid, "USR1");
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("uvsd: counters level=info worker=0 "))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("rx=")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        eventually(60, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("uvsd: ready")),
        "uvsd did not start"
    );
    for k in 1..=5 {
        let before = rx_now();
        let mut peer = Command::new("dpdk-testpmd")
            .args([
                "--lcores",
                "0@0,1@0",
                "--main-lcore",
                "0",
                "--no-pci",
                "--no-huge",
                "-m",
                "256",
                &format!("--file-prefix={peer_prefix}"),
                &format!(
                    "--vdev=net_memif0,role=client,socket={},mac=02:00:00:00:00:10",
                    memif.display()
                ),
                "--",
                "--forward-mode=txonly",
                "--auto-start",
                "--stats-period=1",
                "--total-num-mbufs=16384",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dpdk-testpmd (package dpdk-dev)");
        assert!(
            eventually(30, || rx_now() > before),
            "kill {k}: the peer did not connect"
        );
        std::thread::sleep(Duration::from_secs(1));
        peer.kill().unwrap();
        peer.wait().unwrap();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{peer_prefix}"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            matches!(uvsd.try_wait(), Ok(None)),
            "uvsd died at peer kill {k}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    signal(uvsd.id(), "TERM");
    let st = uvsd.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "{st:?} {text}");
    assert!(!text.contains("fatal"), "{text}");
}
