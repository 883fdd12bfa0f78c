//! End to end: the director's own traffic over its DPDK port reaches the
//! kernel of the director's namespace, as the README's "Reaching the
//! director over its own ports" sets it up.
//!
//! uvsd runs inside a namespace of its own (`<p>-dir`), so its kernel
//! interface and the listeners behind it live there; the client-side TAP
//! moves to `<p>-cli`, the server-side TAP to `<p>-srv` (a real server).
//! Checked: the kernel interface has the port's MAC, addresses and the
//! config's route through the port; multicast reaches a group member in
//! the director's kernel; ping (IPv4 and IPv6) and TCP sessions from the client to the
//! director's address reach the director's kernel (its answers, not
//! uvsd's); a VIP service on the same address and port as a kernel
//! listener still goes to the real server; a flood toward and from the
//! kernel leaves a download through the VIP intact, and every frame that
//! the workers gave the exception path is accounted for in the counters.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_ns, leftovers, ok, sh, Daemon, Netns, Procs, Scratch};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

/// Output of a command in `ns` if it succeeded.
fn run_in(ns: &str, args: &[&str]) -> Option<String> {
    let out = in_ns(ns, args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `python3 -m http.server` in `ns` on `bind`:`port`, serving `dir`.
fn http_server(ns: &str, bind: &str, port: u16, dir: &std::path::Path) -> Child {
    in_ns(
        ns,
        &[
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            bind,
            "--directory",
            &dir.display().to_string(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

/// GET `url` from `ns`, retried for up to 10 s (listeners start, neighbours
/// resolve); the body.
fn get(ns: &str, url: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(b) = run_in(ns, &["curl", "-s", "-f", "-m", "3", "-g", url]) {
            return Some(b);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn uvsadm(sock: &str, line: &str) {
    let out = Command::new(UVSADM)
        .args(["--socket", sock])
        .args(line.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uvsadm {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name=value` pairs of the stderr line that starts with `head`.
fn counters(stderr: &str, head: &str) -> HashMap<String, u64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(head))
        .unwrap_or_else(|| panic!("no {head:?} line in: {stderr}"));
    line[head.len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// "N received" of ping's summary.
fn received(ping_out: &str) -> u64 {
    ping_out
        .split(',')
        .find_map(|f| f.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn sha(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The topology of this file, removed on drop (listeners, then uvsd, so
/// its TAPs go, then the namespaces).
struct Setup {
    p: String,
    dir_ns: String,
    cli: String,
    kif: String,
    sock: String,
    blob: Vec<u8>,
    _procs: Procs,
    uvsd: Daemon,
    _netns: Netns,
    _scratch: Scratch,
}

/// uvsd with `workers` workers (and as many queues per port) in `<p>-dir`,
/// the client port with kernel interface `<p>k` (the server port's is
/// `<p>j`), the client and a real
/// server in their namespaces, and the listeners: the director's kernel
/// on :8022 and on 198.18.0.1:80 (`director-kernel`), the real server on
/// 198.18.1.2:80 (`real-server`, and a 1 MiB blob).
fn setup(tag: &str, workers: u32) -> Setup {
    common::require_root();
    let p = format!("x{}{tag}", std::process::id() % 1000);
    let (dir_ns, cli, srv) = (format!("{p}-dir"), format!("{p}-cli"), format!("{p}-srv"));
    let (tap_c, tap_s, kif) = (format!("{p}c"), format!("{p}s"), format!("{p}k"));
    let scratch = Scratch::new(&p);
    let sock = scratch.path("ctl.sock").display().to_string();
    let cfg = scratch.path("uvsd.toml");
    // Extra workers share the second CPU (this machine has two).
    let lcores = std::iter::once("0@0".to_string())
        .chain((1..=workers).map(|w| format!("{w}@1")))
        .collect::<Vec<_>>()
        .join(",");
    let list = (1..=workers)
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &cfg,
        format!(
            r#"[eal]
args = ["--lcores", "{lcores}", "--no-pci", "--no-huge", "-m", "512", "--file-prefix={p}"]
[workers]
lcores = [{list}]
conn_capacity = 4096
[control]
socket = "{sock}"
[[port]]
name = "client"
device = "net_tap_{tap_c},iface={tap_c}"
queues = {workers}
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
kernel = "{kif}"
[[port]]
name = "server"
device = "net_tap_{tap_s},iface={tap_s}"
queues = {workers}
mac = "02:00:00:00:00:02"
addresses = ["198.18.1.1/24"]
kernel = "{p}j"
[[route]]
to = "198.19.0.0/16"
via = "198.18.0.254"
"#
        ),
    )
    .unwrap();

    let netns = Netns::create(&[&dir_ns, &cli, &srv]);
    let uvsd = Daemon::start_in(&dir_ns, &cfg);
    assert!(
        uvsd.log
            .iter()
            .any(|l| l.starts_with("uvsd: kernel_interface ")
                && l.contains(&format!(" iface={kif} "))
                && l.contains("198.18.0.1/24")),
        "{:?}",
        uvsd.log
    );

    // The kernel interface: the port's MAC and addresses, up.
    let link = sh(&["ip", "-n", &dir_ns, "-o", "link", "show", &kif]);
    assert!(link.contains("02:00:00:00:00:01"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    let addrs = sh(&["ip", "-n", &dir_ns, "-o", "addr", "show", "dev", &kif]);
    assert!(addrs.contains("198.18.0.1/24"), "{addrs}");
    assert!(addrs.contains("2001:db8::1/64"), "{addrs}");
    assert!(addrs.contains("fe80::"), "a link-local address: {addrs}");
    assert!(!addrs.contains("dadfailed"), "{addrs}");
    // The config's route through this port's gateway.
    let route = sh(&["ip", "-n", &dir_ns, "route", "show", "198.19.0.0/16"]);
    assert!(
        route.contains(&format!("via 198.18.0.254 dev {kif}")),
        "{route}"
    );

    // Client and real server on the other ends of the ports.
    for (tap, ns, mac, a4, a6) in [
        (
            &tap_c,
            &cli,
            "02:00:00:00:aa:01",
            "198.18.0.2/24",
            Some("2001:db8::2/64"),
        ),
        (&tap_s, &srv, "02:00:00:00:aa:02", "198.18.1.2/24", None),
    ] {
        sh(&["ip", "-n", &dir_ns, "link", "set", tap, "netns", ns]);
        sh(&["ip", "-n", ns, "link", "set", tap, "address", mac]);
        sh(&["ip", "-n", ns, "addr", "add", a4, "dev", tap]);
        if let Some(a6) = a6 {
            sh(&["ip", "-n", ns, "addr", "add", a6, "dev", tap, "nodad"]);
        }
        sh(&["ip", "-n", ns, "link", "set", tap, "up"]);
    }
    sh(&[
        "ip",
        "-n",
        &srv,
        "route",
        "add",
        "default",
        "via",
        "198.18.1.1",
    ]);

    let www_dir = scratch.path("dir-www");
    let www_srv = scratch.path("srv-www");
    std::fs::create_dir_all(&www_dir).unwrap();
    std::fs::create_dir_all(&www_srv).unwrap();
    std::fs::write(www_dir.join("who"), "director-kernel\n").unwrap();
    std::fs::write(www_srv.join("who"), "real-server\n").unwrap();
    let blob: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(www_srv.join("blob"), &blob).unwrap();
    let procs = Procs(vec![
        http_server(&dir_ns, "::", 8022, &www_dir),
        http_server(&dir_ns, "198.18.0.1", 80, &www_dir),
        http_server(&srv, "198.18.1.2", 80, &www_srv),
    ]);
    // Listening before anything talks to them (python starts slowly on a
    // loaded machine).
    for (ns, port) in [(&dir_ns, 8022), (&dir_ns, 80), (&srv, 80)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while run_in(ns, &["ss", "-Hltn", &format!("sport = :{port}")])
            .is_none_or(|o| o.trim().is_empty())
        {
            assert!(Instant::now() < deadline, "no listener on :{port} in {ns}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Setup {
        p,
        dir_ns,
        cli,
        kif,
        sock,
        blob,
        _procs: procs,
        uvsd,
        _netns: netns,
        _scratch: scratch,
    }
}

/// Pings and TCP sessions (IPv4 and IPv6) from the client reach the
/// director's kernel; the kernel reaches the real server (as a health
/// check would) through the server-side port's kernel interface; a
/// service on the director's address and the port a kernel listener uses
/// goes to the real server.
fn own_traffic_and_service(s: &Setup) {
    let cli = &s.cli;
    let got = get(&s.dir_ns, "http://198.18.1.2/who");
    assert_eq!(
        got.as_deref(),
        Some("real-server\n"),
        "the director's kernel reaches the real server"
    );
    for dst in ["198.18.0.1", "2001:db8::1"] {
        let out = run_in(cli, &["ping", "-c", "3", "-i", "0.3", "-W", "2", dst]);
        assert!(out.is_some(), "ping {dst} from the client");
    }
    for url in [
        "http://198.18.0.1:8022/who",
        "http://[2001:db8::1]:8022/who",
    ] {
        assert_eq!(get(cli, url).as_deref(), Some("director-kernel\n"), "{url}");
    }
    uvsadm(&s.sock, "-A -t 198.18.0.1:80 -s rr");
    uvsadm(&s.sock, "-a -t 198.18.0.1:80 -r 198.18.1.2:80 -m");
    for _ in 0..3 {
        assert_eq!(
            get(cli, "http://198.18.0.1/who").as_deref(),
            Some("real-server\n"),
            "the service's traffic goes to the service, not the kernel"
        );
    }
    assert_eq!(
        get(cli, "http://198.18.0.1:8022/who").as_deref(),
        Some("director-kernel\n"),
        "other ports of the address still reach the kernel"
    );
}

/// Sums of the kernel interfaces' counters in the shutdown report.
fn kernel_sums(stderr: &str) -> HashMap<String, u64> {
    let mut sum = HashMap::new();
    for l in stderr
        .lines()
        .filter(|l| l.starts_with("uvsd: kernel_interface_counters "))
    {
        for (k, v) in counters(l, "uvsd: kernel_interface_counters ") {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    sum
}

/// Sums of the workers' counters in the shutdown report.
fn worker_sums(stderr: &str, workers: u32) -> HashMap<String, u64> {
    let mut sum = HashMap::new();
    for w in 0..workers {
        for (k, v) in counters(stderr, &format!("uvsd: counters level=info worker={w} ")) {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    sum
}

#[test]
fn the_directors_own_traffic_reaches_its_kernel_and_services_stay_served() {
    let _serial = common::lab::lock();
    let mut s = setup("a", 1);
    let (dir_ns, cli, kif, p) = (s.dir_ns.clone(), s.cli.clone(), s.kif.clone(), s.p.clone());
    let blob = s.blob.clone();
    own_traffic_and_service(&s);

    // Multicast (as VRRP adverts are) reaches a member in the kernel.
    let member = in_ns(
        &dir_ns,
        &[
            "python3",
            "-c",
            "import socket as s\n\
             k=s.socket(s.AF_INET,s.SOCK_DGRAM)\n\
             k.bind(('239.1.1.1',5000))\n\
             k.setsockopt(s.IPPROTO_IP,s.IP_ADD_MEMBERSHIP,\
             s.inet_aton('239.1.1.1')+s.inet_aton('198.18.0.1'))\n\
             k.settimeout(10)\n\
             print(k.recv(100).decode(),flush=True)",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    run_in(
        &cli,
        &[
            "python3",
            "-c",
            "import socket as s,time\n\
             k=s.socket(s.AF_INET,s.SOCK_DGRAM)\n\
             k.setsockopt(s.IPPROTO_IP,s.IP_MULTICAST_IF,s.inet_aton('198.18.0.2'))\n\
             for i in range(15):\n    k.sendto(b'to-the-group',('239.1.1.1',5000)); time.sleep(0.2)",
        ],
    )
    .expect("multicast sender");
    let got = member.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "to-the-group");

    // Floods toward the kernel (the client) and from it (the director's
    // own ping), while a download goes through the service.
    let flood_in = in_ns(
        &cli,
        &["ping", "-f", "-q", "-w", "4", "-s", "500", "198.18.0.1"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let flood_out = in_ns(
        &dir_ns,
        &["ping", "-f", "-q", "-w", "4", "-s", "500", "198.18.0.2"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let download = in_ns(
        &cli,
        &["curl", "-s", "-f", "-m", "30", "http://198.18.0.1/blob"],
    )
    .output()
    .unwrap();
    let flood_in =
        String::from_utf8_lossy(&flood_in.wait_with_output().unwrap().stdout).into_owned();
    let flood_out =
        String::from_utf8_lossy(&flood_out.wait_with_output().unwrap().stdout).into_owned();
    assert!(download.status.success(), "download during the floods");
    assert_eq!(sha(&download.stdout), sha(&blob), "the download is intact");
    let (got_in, got_out) = (received(&flood_in), received(&flood_out));
    assert!(got_in > 0 && got_out > 0, "{flood_in} / {flood_out}");

    let (status, stderr) = s.uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    eprintln!("floods: in {got_in} replies, out {got_out} replies\n{stderr}");
    let worker = worker_sums(&stderr, 1);
    let kernel = counters(
        &stderr,
        &format!("uvsd: kernel_interface_counters level=info port=client iface={kif} "),
    );
    let w = |k: &str| worker.get(k).copied().unwrap_or(0);
    let k = |n: &str| kernel.get(n).copied().unwrap_or(0);
    assert_eq!(w("icmp_echo_replied"), 0, "the kernel answered the pings");
    assert_eq!(w("icmp6_echo_replied"), 0, "the kernel answered the pings");
    // Every frame a worker gave the exception path was written to the
    // kernel interface or counted as dropped, on one side or the other.
    assert!(w("to_kernel") >= got_in, "{stderr}");
    let all = kernel_sums(&stderr);
    let a = |n: &str| all.get(n).copied().unwrap_or(0);
    assert_eq!(
        w("to_kernel") - w("drop_kernel_full"),
        a("to_kernel") + a("drop_to_kernel"),
        "{stderr}"
    );
    // Each echo reply either flood saw crossed the port from the kernel.
    assert!(
        k("from_kernel") >= got_in + got_out,
        "{stderr}\n{flood_in}\n{flood_out}"
    );

    // Nothing is left: the kernel interface went with uvsd.
    assert!(!ok(&["ip", "-n", &dir_ns, "link", "show", &kif]));
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
}

#[test]
fn with_two_workers_the_path_works_from_either_queue() {
    let _serial = common::lab::lock();
    let mut s = setup("b", 2);
    own_traffic_and_service(&s);
    // Several client connections: RSS and hand-over spread them.
    for _ in 0..6 {
        assert_eq!(
            get(&s.cli, "http://198.18.0.1:8022/who").as_deref(),
            Some("director-kernel\n")
        );
    }
    let (status, stderr) = s.uvsd.stop();
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    eprintln!("{stderr}");
    let worker = worker_sums(&stderr, 2);
    let kernel = counters(
        &stderr,
        &format!(
            "uvsd: kernel_interface_counters level=info port=client iface={} ",
            s.kif
        ),
    );
    let w = |k: &str| worker.get(k).copied().unwrap_or(0);
    let k = |n: &str| kernel.get(n).copied().unwrap_or(0);
    assert_eq!(w("icmp_echo_replied") + w("icmp6_echo_replied"), 0);
    assert!(w("to_kernel") > 0 && w("from_kernel") > 0, "{stderr}");
    let all = kernel_sums(&stderr);
    let a = |n: &str| all.get(n).copied().unwrap_or(0);
    assert_eq!(
        w("to_kernel") - w("drop_kernel_full"),
        a("to_kernel") + a("drop_to_kernel"),
        "{stderr}"
    );
    // The workers sent what the thread gave them (less what was still in
    // a ring at the stop).
    assert!(w("from_kernel") <= a("from_kernel"), "{stderr}");
    assert!(k("from_kernel") > 0, "{stderr}");
}
