//! End to end: connection synchronisation between two uvsd, master and
//! backup, over their exception paths (ipvs.md section 6).
//!
//! Topology (prefix `<p>`, one worker each): the client namespace
//! `<p>-cli` holds a bridge joining both directors' client-side TAPs, so
//! their kernel interfaces (`<p>mk`, `<p>bk`, in the directors' own
//! namespaces `<p>-m` and `<p>-b`) share a segment. The master's server
//! TAP leads to the real server in `<p>-srv`; the backup has the same
//! service and destination but no traffic (the client reaches the VIP
//! through a static neighbour entry for the master's MAC, as the VRRP
//! master would hold the VIP). The master syncs over `<p>mk`; the packets
//! leave through its exception path and DPDK port, cross the bridge, and
//! reach the backup's socket through the backup's exception path.
//!
//! Checked: `-L --daemon` on both, as ipvsadm prints it; a rate-limited
//! download through the master shows on the backup's `-L -n -c` as
//! ESTABLISHED toward the same real server with a fresh 15-minute timer,
//! then in a closing state once it ends; a stranger's datagram and a
//! message of another SyncID are counted (`-L --daemon --json`) and
//! install nothing; the shutdown report counts what was sent and
//! installed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_ns, leftovers, sh, Daemon, Netns, Procs, Scratch};
use dataplane::wire::sync::{flags, MessageBuilder, SyncConn};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");

fn uvsadm(sock: &str, line: &str) -> (i32, String, String) {
    let out = Command::new(UVSADM)
        .args(["--socket", sock])
        .args(line.split_whitespace())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn uvsadm_ok(sock: &str, line: &str) -> String {
    let (code, out, err) = uvsadm(sock, line);
    assert_eq!(code, 0, "uvsadm {line}: {err}");
    out
}

/// A uvsd config: client port (kernel interface `kif`), server port.
fn config(p: &str, who: &str, addr: &str, mac: &str, kif: &str, sock: &str) -> String {
    format!(
        r#"[eal]
args = ["--lcores", "0@0,1@1", "--no-pci", "--no-huge", "-m", "256", "--file-prefix={p}{who}"]
[workers]
lcores = [1]
conn_capacity = 4096
[control]
socket = "{sock}"
[[port]]
name = "client"
device = "net_tap_{p}{who}c,iface={p}{who}c"
mac = "{mac}"
addresses = ["{addr}/24"]
kernel = "{kif}"
[[port]]
name = "server"
device = "net_tap_{p}{who}s,iface={p}{who}s"
addresses = ["198.18.1.1/24"]
"#
    )
}

/// Sends `payload` from the client namespace to the sync group and port.
fn send_from_client(cli: &str, payload: &[u8]) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('198.18.0.2'))\n\
        s.sendto(bytes.fromhex(sys.argv[1]),('224.0.0.81',8848))\n";
    let st = in_ns(cli, &["python3", "-c", script, &hex])
        .status()
        .unwrap();
    assert!(st.success());
}

fn debug(cli: &str) -> String {
    let o = |args: &[&str]| {
        let out = in_ns(cli, args).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    format!(
        "{}\n{}\n{}\n{}",
        o(&["ping", "-c", "2", "-W", "1", "198.18.0.1"]),
        o(&["ping", "-c", "2", "-W", "1", "198.18.0.100"]),
        o(&["bridge", "fdb"]),
        o(&["ip", "neigh"])
    )
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

/// The backup's row for the client's connection from `cport`, if any.
fn backup_row(sock: &str, cport: u16) -> Option<String> {
    let out = uvsadm_ok(sock, "-L -n -c");
    let src = format!("198.18.0.2:{cport}");
    out.lines()
        .find(|l| l.split_whitespace().nth(3) == Some(src.as_str()))
        .map(str::to_string)
}

#[test]
fn backup_holds_the_masters_connections() {
    common::require_root();
    let p = format!("y{}", std::process::id() % 1000);
    let (cli, m_ns, b_ns, srv) = (
        format!("{p}-cli"),
        format!("{p}-m"),
        format!("{p}-b"),
        format!("{p}-srv"),
    );
    let (mk, bk) = (format!("{p}mk"), format!("{p}bk"));
    let scratch = Scratch::new(&p);
    let (m_sock, b_sock) = (
        scratch.path("m.sock").display().to_string(),
        scratch.path("b.sock").display().to_string(),
    );
    let (m_cfg, b_cfg) = (scratch.path("m.toml"), scratch.path("b.toml"));
    let m_mac = "02:00:00:00:0a:01";
    std::fs::write(&m_cfg, config(&p, "m", "198.18.0.1", m_mac, &mk, &m_sock)).unwrap();
    std::fs::write(
        &b_cfg,
        config(&p, "b", "198.18.0.3", "02:00:00:00:0b:01", &bk, &b_sock),
    )
    .unwrap();
    let netns = Netns::create(&[&cli, &m_ns, &b_ns, &srv]);
    let mut master = Daemon::start_in(&m_ns, &m_cfg);
    let mut backup = Daemon::start_in(&b_ns, &b_cfg);

    // The segment: a bridge in the client's namespace joins both client
    // TAPs; the master's server TAP goes to the real server.
    // The TAPs' kernel sides carry the ports' MACs: give them (and the
    // bridge) their own, or the bridge would keep the directors' frames.
    sh(&[
        "ip",
        "-n",
        &cli,
        "link",
        "add",
        "br0",
        "address",
        "02:00:00:00:cc:01",
        "type",
        "bridge",
    ]);
    sh(&[
        "ip",
        "-n",
        &cli,
        "addr",
        "add",
        "198.18.0.2/24",
        "dev",
        "br0",
    ]);
    sh(&["ip", "-n", &cli, "link", "set", "br0", "up"]);
    // Small receive buffers: the rate-limited download below stays
    // ESTABLISHED for as long as curl reads, not only until the whole
    // blob and the server's FIN have passed the director.
    sh(&[
        "ip",
        "netns",
        "exec",
        &cli,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_rmem=4096 16384 65536",
    ]);
    for (ns, tap, mac) in [
        (&m_ns, format!("{p}mc"), "02:00:00:00:aa:01"),
        (&b_ns, format!("{p}bc"), "02:00:00:00:aa:02"),
    ] {
        sh(&["ip", "-n", ns, "link", "set", &tap, "netns", &cli]);
        sh(&["ip", "-n", &cli, "link", "set", &tap, "address", mac]);
        sh(&["ip", "-n", &cli, "link", "set", &tap, "master", "br0"]);
        sh(&["ip", "-n", &cli, "link", "set", &tap, "up"]);
    }
    let tap_s = format!("{p}ms");
    sh(&["ip", "-n", &m_ns, "link", "set", &tap_s, "netns", &srv]);
    sh(&[
        "ip",
        "-n",
        &srv,
        "addr",
        "add",
        "198.18.1.2/24",
        "dev",
        &tap_s,
    ]);
    sh(&["ip", "-n", &srv, "link", "set", &tap_s, "up"]);
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
    // The VIP is the master's (VRRP's job in a real pair).
    sh(&[
        "ip",
        "-n",
        &cli,
        "neigh",
        "replace",
        "198.18.0.100",
        "lladdr",
        m_mac,
        "dev",
        "br0",
        "nud",
        "permanent",
    ]);

    let www = scratch.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("blob"), vec![7u8; 1 << 20]).unwrap();
    let procs = Procs(vec![in_ns(
        &srv,
        &[
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            "198.18.1.2",
            "--directory",
            &www.display().to_string(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()]);

    for sock in [&m_sock, &b_sock] {
        uvsadm_ok(sock, "-A -t 198.18.0.100:80 -s rr");
        uvsadm_ok(sock, "-a -t 198.18.0.100:80 -r 198.18.1.2:80 -m");
    }
    uvsadm_ok(
        &m_sock,
        &format!("--start-daemon master --mcast-interface {mk} --syncid 7"),
    );
    uvsadm_ok(
        &b_sock,
        &format!("--start-daemon backup --mcast-interface {bk} --syncid 7"),
    );
    assert_eq!(
        uvsadm_ok(&m_sock, "-L --daemon"),
        format!("master sync daemon (mcast={mk}, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n")
    );
    assert_eq!(
        uvsadm_ok(&b_sock, "-L --daemon"),
        format!("backup sync daemon (mcast={bk}, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n")
    );
    let (code, _, err) = uvsadm(
        &m_sock,
        &format!("--start-daemon master --mcast-interface {mk}"),
    );
    assert_eq!((code, err.as_str()), (255, "Daemon has already run\n"));

    // The real server listens once a first request gets through.
    let ready = wait_for(20, || {
        in_ns(
            &cli,
            &[
                "curl",
                "-s",
                "-f",
                "-o",
                "/dev/null",
                "-m",
                "3",
                "http://198.18.0.100/blob",
            ],
        )
        .status()
        .is_ok_and(|s| s.success())
    });
    assert!(ready, "no answer through the master's VIP");

    // A slow download through the master: established for several seconds.
    let cport: u16 = 41000 + (std::process::id() % 1000) as u16;
    let curl = in_ns(
        &cli,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--local-port",
            &cport.to_string(),
            "--limit-rate",
            "150k",
            "-m",
            "60",
            "http://198.18.0.100/blob",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut row = None;
    let seen = wait_for(20, || {
        row = backup_row(&b_sock, cport);
        row.as_deref().is_some_and(|r| r.contains("ESTABLISHED"))
    });
    if !seen {
        let conns = uvsadm_ok(&m_sock, "-L -n -c");
        let d = debug(&cli);
        let (_, mr) = master.stop();
        let (_, br) = backup.stop();
        panic!("the backup never showed the connection established: {row:?}\nmaster: {conns}\n{d}\nmaster: {mr}\nbackup: {br}");
    }
    let r = row.unwrap();
    eprintln!("backup: {r}");
    let f: Vec<&str> = r.split_whitespace().collect();
    assert_eq!(
        (f[0], f[2], f[4], f[5]),
        ("TCP", "ESTABLISHED", "198.18.0.100:80", "198.18.1.2:80"),
        "{r}"
    );
    assert!(
        f[1].starts_with("14:") || f[1] == "15:00",
        "a 15-minute timer: {r}"
    );

    let out = curl.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "download");
    // Its end (a state change away from ESTABLISHED) is sent at once.
    let mut row = None;
    assert!(
        wait_for(10, || {
            row = backup_row(&b_sock, cport);
            row.as_deref().is_some_and(|r| {
                ["CLOSE_WAIT", "TIME_WAIT", "FIN_WAIT", "CLOSE"]
                    .iter()
                    .any(|s| r.split_whitespace().nth(2) == Some(*s))
            })
        }),
        "the backup never saw the connection close: {row:?}"
    );

    // A stranger's bytes and a well-formed message of another SyncID.
    send_from_client(&cli, b"not a sync message");
    let foreign = SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 4242,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: "198.18.0.77".parse().unwrap(),
        vaddr: "198.18.0.100".parse().unwrap(),
        daddr: "198.18.1.2".parse().unwrap(),
        seq: None,
    };
    let mut buf = [0u8; 1472];
    let mut m = MessageBuilder::new(&mut buf, 9).unwrap();
    m.push(&foreign).unwrap();
    send_from_client(&cli, m.bytes());
    let json = || -> serde_json::Value {
        serde_json::from_str(&uvsadm_ok(&b_sock, "-L --daemon --json")).unwrap()
    };
    let counted = wait_for(10, || {
        let c = &json()["daemons"][0]["counters"];
        c["sync_drop_wrong_syncid"].as_u64() >= Some(1)
            && c["sync_drop_bad_size"].as_u64() >= Some(1)
    });
    assert!(counted, "{}", json());
    assert!(
        !uvsadm_ok(&b_sock, "-L -n -c").contains("198.18.0.77"),
        "the other SyncID's connection was not installed"
    );
    let mj: serde_json::Value =
        serde_json::from_str(&uvsadm_ok(&m_sock, "-L --daemon --json")).unwrap();
    assert!(
        mj["daemons"][0]["counters"]["sync_sent_messages"].as_u64() >= Some(1),
        "{mj}"
    );

    uvsadm_ok(&b_sock, "--stop-daemon backup");
    assert_eq!(uvsadm_ok(&b_sock, "-L --daemon"), "");
    let (code, _, err) = uvsadm(&b_sock, "--stop-daemon backup");
    assert_eq!((code, err.as_str()), (255, "No daemon is running\n"));

    drop(procs);
    let (ms, m_report) = master.stop();
    let (bs, b_report) = backup.stop();
    assert!(ms.is_some_and(|s| s.success()), "{m_report}");
    assert!(bs.is_some_and(|s| s.success()), "{b_report}");
    let line = |r: &str| {
        r.lines()
            .find(|l| l.starts_with("uvsd: sync_counters "))
            .unwrap_or_default()
            .to_string()
    };
    eprintln!("master {}\nbackup {}", line(&m_report), line(&b_report));
    assert!(line(&m_report).contains("sync_sent_entries="), "{m_report}");
    assert!(line(&b_report).contains("sync_installed="), "{b_report}");
    drop(netns);
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
}
