//! End to end: an HA pair (README, "HA pair") fails over with its
//! established connections intact.
//!
//! Two uvsd, master and backup, each in a namespace of its own
//! (`<p>-m`, `<p>-b`) with the repo's configs (configs/ha-master.toml,
//! configs/ha-backup.toml, configs/ha.rules; only the TAP names, EAL
//! arguments, socket and rules paths changed) and Debian's keepalived,
//! unmodified, running only its vrrp_instance on uvsd's kernel interfaces
//! with configs/keepalived-ha-*.conf as they are. Both run the IPVS sync
//! daemons (master and backup) on `uvs0`.
//!
//! Topology: the directors' client TAPs join a bridge in the client's
//! namespace (`<p>-cli`, 198.18.0.2); their server TAPs a bridge in
//! `<p>-srv`, which also routes the DR server's replies to the client
//! over a veth (198.18.2.0/24). The NAT real server (`<p>-rn`,
//! 198.18.1.11) routes through the floating gateway 198.18.1.1; the DR
//! real server (`<p>-rd`, 198.18.1.12) has the DR VIP on lo.
//!
//! Checked: only the VRRP MASTER answers ARP for the VIPs; 100 long
//! downloads through the NAT VIP and 100 through the DR VIP, running when
//! the master's uvsd and keepalived are killed with SIGKILL; the backup
//! takes the VIPs (its uvsd logs `vip_taken`, then answers ARP for them
//! alone) and at least 99 % of the downloads end with the right sha256.
//! Then bad input: VRRP from a stranger and a flapping VIP are logged and
//! change nothing else; the backup keeps serving and stops cleanly.
//!
//! Printed (no timing assertions): takeover time (kill to the backup's
//! `vip_taken`), time until a new connection through the NAT VIP works,
//! and per method the downloads intact and the longest stall.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_ns, sh, Daemon, Netns, Procs, Scratch};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAT_VIP: &str = "198.18.0.100";
const DR_VIP: &str = "198.18.0.101";
const MASTER_MAC: &str = "02:00:00:00:0a:01";
const BACKUP_MAC: &str = "02:00:00:00:0b:01";
/// Downloads per VIP, and their size: 8 KiB every 0.2 s
/// (scripts/stream.py), so about 16 s each without a failover.
const DOWNLOADS: u32 = 100;
const SIZE: u32 = 640 * 1024;

fn uvsadm(sock: &str, line: &str) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// configs/ha-<who>.toml as the test runs it: what it changes is what a
/// second pair on the same machine would change (TAP names, EAL's file
/// prefix and lcores, no hugepages, socket, the rules' absolute path).
fn director_config(p: &str, who: &str, s: &str, sock: &str) -> String {
    let text = std::fs::read_to_string(format!("{ROOT}/configs/ha-{who}.toml")).unwrap();
    let eal = format!(
        "args = [\"-l\", \"0-1\", \"--no-pci\", \"--file-prefix=uvs-ha-{s}\", \"--huge-unlink\"]"
    );
    let out = text
        .replace(
            &eal,
            &format!("args = [\"--lcores\", \"0@0,1@1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \"--file-prefix={p}{s}\"]"),
        )
        .replace(&format!("/run/uvs/ha-{who}.sock"), sock)
        .replace("\"configs/ha.rules\"", &format!("\"{ROOT}/configs/ha.rules\""))
        .replace(&format!("iface=ha-{s}-c"), &format!("iface={p}{s}c"))
        .replace(&format!("iface=ha-{s}-s"), &format!("iface={p}{s}s"));
    for gone in [eal.as_str(), "iface=ha-", "/run/uvs/", "\"configs/"] {
        assert!(!out.contains(gone), "configs/ha-{who}.toml changed: {gone}");
    }
    out
}

/// keepalived (Debian's) in `ns` with configs/keepalived-ha-<who>.conf;
/// both of its processes are killed on drop.
struct Keepalived {
    child: Option<Child>,
    vrrp_pidfile: String,
    log: String,
}

impl Keepalived {
    fn start(ns: &str, who: &str, scratch: &Scratch) -> Keepalived {
        let pid = scratch.path(&format!("ka-{who}.pid"));
        let vrrp = scratch.path(&format!("ka-{who}-vrrp.pid"));
        let log = scratch.path(&format!("ka-{who}.log"));
        let child = in_ns(
            ns,
            &[
                "keepalived",
                "-n",
                "-l",
                "-P",
                "-f",
                &format!("{ROOT}/configs/keepalived-ha-{who}.conf"),
                "-p",
                &pid.display().to_string(),
                "-r",
                &vrrp.display().to_string(),
            ],
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("keepalived starts");
        Keepalived {
            child: Some(child),
            vrrp_pidfile: vrrp.display().to_string(),
            log: log.display().to_string(),
        }
    }

    /// SIGKILL to the VRRP process, then to the parent: a crash, no
    /// farewell advert.
    fn kill9(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.vrrp_pidfile) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every 200 ms for up to `secs` seconds.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Who answers an ARP request for `ip` on the client's segment: the
/// sender MACs of the replies seen within 1.5 s.
fn arp_answers(cli: &str, ip: &str) -> Vec<String> {
    let script = r#"
import socket, struct, sys, time
ifn, tip, sip = sys.argv[1], socket.inet_aton(sys.argv[2]), socket.inet_aton(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifn, 0))
mac = s.getsockname()[4]
arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, mac, sip, b'\0' * 6, tip)
s.send(b'\xff' * 6 + mac + b'\x08\x06' + arp + b'\0' * 18)
s.settimeout(0.2)
end = time.time() + 1.5
seen = set()
while time.time() < end:
    try:
        f = s.recv(100)
    except socket.timeout:
        continue
    if f[12:14] == b'\x08\x06' and f[20:22] == b'\x00\x02' and f[28:32] == tip:
        seen.add(f[22:28].hex(':'))
print(' '.join(sorted(seen)))
"#;
    let out = in_ns(cli, &["python3", "-c", script, "br0", ip, "198.18.0.2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Gratuitous ARPs for `ip` seen on the client's segment for `secs`
/// seconds, started now: (sender MAC, frame length) of each.
fn garps(cli: &str, ip: &str, secs: u32) -> Child {
    let script = r#"
import socket, sys, time
tip, secs = socket.inet_aton(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(('br0', 0))
s.settimeout(0.2)
end = time.time() + secs
while time.time() < end:
    try:
        f = s.recv(100)
    except socket.timeout:
        continue
    if f[20:22] == b'\x00\x01' and f[28:32] == tip and f[38:42] == tip:
        print(f[22:28].hex(':'), len(f), flush=True)
"#;
    in_ns(cli, &["python3", "-c", script, ip, &secs.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A new download through `vip` works within `secs` seconds: the
/// seconds it took (scripts/stream.py probe).
fn probe(cli: &str, vip: &str, secs: u32) -> Option<f64> {
    let out = in_ns(
        cli,
        &[
            "python3",
            &format!("{ROOT}/scripts/stream.py"),
            "probe",
            &format!("{vip}:80"),
            &secs.to_string(),
        ],
    )
    .output()
    .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

/// Connections in ESTABLISHED in `-L -n -c`.
fn established(sock: &str) -> usize {
    uvsadm(sock, "-L -n -c")
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("ESTABLISHED"))
        .count()
}

/// The figures of one fetch line: (ok, bad, failed, max_stall).
fn figures(line: &str) -> (u32, u32, u32, f64) {
    let v = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {line}"))
            .to_string()
    };
    (
        v("ok=").parse().unwrap(),
        v("bad=").parse().unwrap(),
        v("failed=").parse().unwrap(),
        v("max_stall=").parse().unwrap(),
    )
}

/// Sends raw VRRP (IP protocol 112) `payload` from the client to
/// 224.0.0.18 with TTL 255, as a stranger on the segment.
fn stranger_vrrp(cli: &str, payload: &[u8]) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_RAW,112)\n\
        s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,255)\n\
        s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('198.18.0.2'))\n\
        s.sendto(bytes.fromhex(sys.argv[1]),('224.0.0.18',0))\n";
    assert!(in_ns(cli, &["python3", "-c", script, &hex])
        .status()
        .unwrap()
        .success());
}

#[test]
fn the_backup_takes_over_with_the_downloads_intact() {
    common::require_root();
    let p = format!("f{}", std::process::id() % 1000);
    let ns = |s: &str| format!("{p}-{s}");
    let (cli, srv, m_ns, b_ns, rn, rd) =
        (ns("cli"), ns("srv"), ns("m"), ns("b"), ns("rn"), ns("rd"));
    let scratch = Scratch::new(&p);
    let (m_sock, b_sock) = (
        scratch.path("m.sock").display().to_string(),
        scratch.path("b.sock").display().to_string(),
    );
    let (m_cfg, b_cfg) = (scratch.path("m.toml"), scratch.path("b.toml"));
    std::fs::write(&m_cfg, director_config(&p, "master", "m", &m_sock)).unwrap();
    std::fs::write(&b_cfg, director_config(&p, "backup", "b", &b_sock)).unwrap();
    let netns = Netns::create(&[&cli, &srv, &m_ns, &b_ns, &rn, &rd]);
    let mut master = Daemon::start_in(&m_ns, &m_cfg);
    let mut backup = Daemon::start_in(&b_ns, &b_cfg);

    // The client's segment and the servers' segment: a bridge each.
    let ip = |n: &str, args: &str| {
        let mut v = vec!["ip", "-n", n];
        v.extend(args.split_whitespace());
        sh(&v);
    };
    let sysctl = |n: &str, kv: &str| sh(&["ip", "netns", "exec", n, "sysctl", "-qw", kv]);
    ip(&cli, "link add br0 address 02:00:00:00:cc:01 type bridge");
    ip(&cli, "addr add 198.18.0.2/24 dev br0");
    ip(&cli, "link set br0 up");
    ip(&srv, "link add br1 address 02:00:00:00:cc:02 type bridge");
    ip(&srv, "addr add 198.18.1.254/24 dev br1");
    ip(&srv, "link set br1 up");
    for (dir, s) in [(&m_ns, "m"), (&b_ns, "b")] {
        for (tap, to, br) in [
            (format!("{p}{s}c"), &cli, "br0"),
            (format!("{p}{s}s"), &srv, "br1"),
        ] {
            ip(dir, &format!("link set {tap} netns {to}"));
            ip(to, &format!("link set {tap} master {br} up"));
        }
    }
    // The router's way back to the client (DR replies).
    sh(&[
        "ip",
        "link",
        "add",
        &format!("{p}rt0"),
        "netns",
        &srv,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{p}rt1"),
        "netns",
        &cli,
    ]);
    ip(&srv, &format!("addr add 198.18.2.1/24 dev {p}rt0"));
    ip(&srv, &format!("link set {p}rt0 up"));
    ip(&srv, "route add 198.18.0.0/24 via 198.18.2.2");
    sysctl(&srv, "net.ipv4.ip_forward=1");
    ip(&cli, &format!("addr add 198.18.2.2/24 dev {p}rt1"));
    ip(&cli, &format!("link set {p}rt1 up"));
    for k in ["all", "default", "br0", &format!("{p}rt1")] {
        sysctl(&cli, &format!("net.ipv4.conf.{k}.rp_filter=0"));
    }
    // The real servers.
    for (n, addr, veth) in [(&rn, "198.18.1.11", "n"), (&rd, "198.18.1.12", "d")] {
        sh(&[
            "ip",
            "link",
            "add",
            &format!("{p}{veth}0"),
            "netns",
            &srv,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            n,
        ]);
        ip(&srv, &format!("link set {p}{veth}0 master br1 up"));
        ip(n, &format!("addr add {addr}/24 dev eth0"));
        ip(n, "link set eth0 up");
    }
    ip(&rn, "route add default via 198.18.1.1");
    for kv in [
        "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2",
        "net.ipv4.conf.eth0.arp_ignore=1",
        "net.ipv4.conf.eth0.arp_announce=2",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.eth0.rp_filter=0",
    ] {
        sysctl(&rd, kv);
    }
    ip(&rd, &format!("addr add {DR_VIP}/32 dev lo"));
    ip(&rd, "route add default via 198.18.1.254");
    let stream = format!("{ROOT}/scripts/stream.py");
    let mut procs = Procs::default();
    for n in [&rn, &rd] {
        procs.0.push(
            in_ns(n, &["python3", &stream, "serve", "80"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    // VRRP and sync on both directors.
    // The master's keepalived first: the backup's then hears its adverts
    // from the start and stays BACKUP (else it could be MASTER for the
    // moment until the master preempts it).
    let mut ka_m = Keepalived::start(&m_ns, "master", &scratch);
    for sock in [&m_sock, &b_sock] {
        uvsadm(
            sock,
            "--start-daemon master --mcast-interface uvs0 --syncid 7",
        );
        uvsadm(
            sock,
            "--start-daemon backup --mcast-interface uvs0 --syncid 7",
        );
    }
    for a in [NAT_VIP, DR_VIP, "198.18.1.1"] {
        let taken = master.wait_log(30, |l| {
            l.starts_with("uvsd: vip_taken") && l.contains(&format!("address={a} "))
        });
        assert!(
            taken.is_some(),
            "the master never took {a}\n{}\nkeepalived:\n{}",
            master.log.join("\n"),
            ka_m.log()
        );
    }
    let mut ka_b = Keepalived::start(&b_ns, "backup", &scratch);
    assert!(
        backup
            .wait_log(5, |l| l.starts_with("uvsd: vip_taken"))
            .is_none(),
        "the backup holds nothing\n{}",
        ka_b.log()
    );
    for vip in [NAT_VIP, DR_VIP] {
        assert!(probe(&cli, vip, 20).is_some(), "no answer through {vip}");
        assert_eq!(
            arp_answers(&cli, vip),
            [MASTER_MAC],
            "only the MASTER answers for {vip}"
        );
    }

    // The downloads; once all stream and the backup holds them, the crash.
    let mut fetch = in_ns(
        &cli,
        &[
            "python3",
            &stream,
            "fetch",
            &SIZE.to_string(),
            &DOWNLOADS.to_string(),
            &format!("{NAT_VIP}:80"),
            &format!("{DR_VIP}:80"),
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(fetch.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "streaming");
    let mut synced = 0;
    let all_synced = wait_for(20, || {
        synced = established(&b_sock);
        synced >= 2 * DOWNLOADS as usize
    });
    assert!(
        all_synced,
        "the backup holds {synced} established connections"
    );
    let on_master = established(&m_sock);
    assert!(
        matches!(fetch.try_wait(), Ok(None)),
        "the downloads still run at the kill"
    );
    let garp_watch = garps(&cli, NAT_VIP, 12);
    let killed = Instant::now();
    ka_m.kill9();
    master.kill9();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{p}m"));

    // The first new connection through the NAT VIP, timed by the prober
    // from the kill, while the backup's log is watched.
    let mut prober = in_ns(
        &cli,
        &["python3", &stream, "probe", &format!("{NAT_VIP}:80"), "30"],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let prober = std::thread::spawn(move || {
        let ok = prober.wait().is_ok_and(|s| s.success());
        ok.then(|| killed.elapsed().as_secs_f64())
    });
    let taken = backup.wait_log(30, |l| {
        l.starts_with("uvsd: vip_taken") && l.contains(&format!("address={NAT_VIP} "))
    });
    let takeover = killed.elapsed();
    assert!(
        taken.is_some(),
        "the backup never took the VIP\n{}",
        ka_b.log()
    );
    let restored = prober.join().unwrap();
    let status = fetch.wait().unwrap();
    let results: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{results:?}");
    let (nat, dr) = (figures(&results[0]), figures(&results[1]));
    // Announced twice: by uvsd from the port once it served the VIP (a
    // 60-byte frame), and by keepalived through the kernel interface (42
    // bytes, left as the kernel wrote it); both with the port's MAC.
    let seen = String::from_utf8(garp_watch.wait_with_output().unwrap().stdout).unwrap();
    let garp: Vec<(&str, &str)> = seen.lines().filter_map(|l| l.split_once(' ')).collect();
    assert!(garp.iter().all(|(mac, _)| *mac == BACKUP_MAC), "{seen}");
    assert!(garp.iter().any(|(_, len)| *len == "60"), "uvsd's: {seen}");
    assert!(
        garp.iter().any(|(_, len)| *len == "42"),
        "keepalived's: {seen}"
    );
    for vip in [NAT_VIP, DR_VIP] {
        assert_eq!(
            arp_answers(&cli, vip),
            [BACKUP_MAC],
            "the backup answers for {vip} now"
        );
    }
    eprintln!(
        "failover: {on_master} connections established on the master, {synced} on the backup before the kill\n\
         failover: the backup's uvsd took {NAT_VIP} (vip_taken) {:.1} s after kill -9\n\
         failover: a new connection through {NAT_VIP} worked {} after kill -9 (probe every 100 ms)\n\
         failover: gratuitous ARPs for {NAT_VIP} after the kill (sender, bytes): {}\n\
         failover: NAT {DOWNLOADS} downloads: {} intact, {} corrupt, {} broken; longest stall {:.1} s\n\
         failover: DR  {DOWNLOADS} downloads: {} intact, {} corrupt, {} broken; longest stall {:.1} s",
        takeover.as_secs_f64(),
        restored.map_or("never (30 s)".to_string(), |s| format!("{s:.1} s")),
        seen.trim().replace('\n', ", "),
        nat.0,
        nat.1,
        nat.2,
        nat.3,
        dr.0,
        dr.1,
        dr.2,
        dr.3
    );
    assert!(restored.is_some(), "no new connection after the takeover");
    let need = DOWNLOADS * 99 / 100;
    assert!(nat.0 >= need, "NAT: {}", results[0]);
    assert!(dr.0 >= need, "DR: {}", results[1]);

    // Bad input: VRRP from a stranger (garbage, and an advert of another
    // router id with a wrong checksum), and a VIP that flaps on the
    // director's interface. Logged, nothing stops, service goes on.
    stranger_vrrp(&cli, b"not vrrp");
    stranger_vrrp(&cli, &[0x21, 99, 255, 1, 0, 1, 0xde, 0xad, 198, 18, 0, 100]);
    for _ in 0..3 {
        ip(&b_ns, &format!("addr del {NAT_VIP}/24 dev uvs0"));
        std::thread::sleep(Duration::from_millis(150));
        ip(&b_ns, &format!("addr replace {NAT_VIP}/24 dev uvs0"));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        backup
            .wait_log(10, |l| l.starts_with("uvsd: vip_released")
                && l.contains(&format!("address={NAT_VIP} ")))
            .is_some(),
        "the flap is logged"
    );
    assert!(probe(&cli, NAT_VIP, 20).is_some(), "served after the flap");
    assert!(probe(&cli, DR_VIP, 20).is_some(), "the DR VIP too");
    assert!(ka_b
        .child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None))));

    drop(procs);
    drop(ka_b);
    let (st, report) = backup.stop();
    assert!(st.is_some_and(|s| s.success()), "{report}");
    eprintln!(
        "failover: backup log: {} vip_taken, {} vip_released (takeover, then the flaps)",
        report.matches("uvsd: vip_taken").count(),
        report.matches("uvsd: vip_released").count()
    );
    let counter = |name: &str| -> u64 {
        report
            .lines()
            .filter(|l| l.starts_with("uvsd: counters "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    };
    eprintln!(
        "failover: backup counters: vip_announced={} drop_vip_standby={}",
        counter("vip_announced"),
        counter("drop_vip_standby")
    );
    assert!(counter("vip_announced") >= 3, "{report}");
    drop(netns);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{p}m"));
}
