//! uvs-keepalived end to end: uvsd on net_tap with real servers in
//! namespaces (scripts/topo.sh), configured and checked from an unchanged
//! keepalived.conf that Debian's `keepalived -t` accepts.
//!
//! Where the checker runs: as on an appliance, beside uvsd on the director.
//! uvsd runs in a namespace of its own (`<p>-dir`, [`Lab::on_director`])
//! whose server-side port has a kernel interface; uvs-keepalived runs in
//! that namespace too, so its probes leave from the director's address
//! 198.18.1.1 through the kernel interface, uvsd's exception path and the
//! DPDK port, and the real servers' answers come back the same way. The
//! director's namespace has no other way to the real servers. The checker
//! reaches uvsd through the control socket.
//!
//! No timing assertions: every wait polls with a generous deadline.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{lock, sha, Lab, VIP, VIP6};
use common::Procs;

const CHECKER: &str = env!("CARGO_BIN_EXE_uvs-keepalived");
const HTTP_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/http_server.py");
/// rs1 as the IPv6 service lists it.
const RS1_V6: &str = "[2001:db8:1::11]:80";
/// Generous: the checks run every second, the machine may be slow.
const DEADLINE: Duration = Duration::from_secs(45);

/// The director's namespace has the kernel interface with the server
/// port's address and no other interface toward the real servers: what the
/// checker sends there goes through uvsd.
fn director_reaches_servers_only_through_uvsd(lab: &Lab) {
    let kif = lab.server_kernel_if();
    let links = lab.ns("dir", &["ip", "-o", "link", "show"]).unwrap();
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default())
        .collect();
    assert_eq!(names, ["lo", kif.as_str()], "{links}");
    let route = lab
        .ns("dir", &["ip", "route", "get", "198.18.1.11"])
        .unwrap();
    assert!(
        route.contains(&format!("dev {kif} src 198.18.1.1")),
        "{route}"
    );
}

/// uvs-keepalived in the director's namespace (uvsd's), its log in `log`; SIGTERM on
/// drop.
struct Checker {
    child: Option<Child>,
}

impl Checker {
    fn start(lab: &Lab, ns: &str, conf: &str) -> Checker {
        let log = std::fs::File::create(lab.scratch.path("checker.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                CHECKER,
                "-f",
                conf,
                "--socket",
                &lab.sock(),
            ])
            .args([
                "--status-file",
                &lab.scratch.path("status").display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Checker { child: Some(child) }
    }

    /// SIGTERM and wait; the exit status.
    fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `cond` every 200 ms until it holds or DEADLINE passes.
fn wait_for(what: &str, lab: &Lab, cond: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let list = lab.ok("-L -n");
        if cond(&list) {
            return list;
        }
        if t0.elapsed() > DEADLINE {
            let log = std::fs::read_to_string(lab.scratch.path("checker.log")).unwrap_or_default();
            panic!("{what}: not within {DEADLINE:?}\n{list}\nchecker log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The weight `-L -n` shows for real server `rs` (IP:PORT), if listed.
fn weight(list: &str, rs: &str) -> Option<u32> {
    list.lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .find(|l| l.split_whitespace().next() == Some(rs))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
}

/// Stops the HTTP server of real server `i` (python3 http_server.py).
fn stop_http(lab: &Lab, i: u32) {
    let ns = format!("{}-rs{i}", lab.p);
    let pids = common::sh(&["ip", "netns", "pids", &ns]);
    for pid in pids.split_whitespace() {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("http_server.py") {
            common::sh(&["kill", pid]);
        }
    }
}

/// Starts it again (topo.sh's way).
fn start_http(lab: &Lab, i: u32, bg: &mut Procs) {
    let ns = format!("{}-rs{i}", lab.p);
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "python3",
            HTTP_SERVER,
            &format!("/tmp/{}-www/rs{i}", lab.p),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    bg.0.push(child);
}

/// `keepalived -t -f FILE` (Debian's keepalived): whether it accepts.
fn keepalived_accepts(file: &str) -> bool {
    let out = Command::new("keepalived")
        .args(["-t", "-f", file])
        .output()
        .expect("keepalived is installed (scripts/setup)");
    out.status.success()
}

fn checker_test(file: &str) -> (bool, String) {
    let out = Command::new(CHECKER)
        .args(["-t", "-f", file])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A check script that hangs (its argument is unique to this test).
const HANG: &str = "3517.25";

/// A TCP server on port 81 that answers anything with bytes that are not
/// HTTP.
const GARBAGE: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 81))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(1000)
    c.sendall(b'\\x00\\x01garbage\\r\\n\\r\\nmore')
    c.close()
";

fn md5_hex(data: &[u8]) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)[..32].to_string()
}

#[test]
fn servers_leave_and_return_with_their_service_and_the_sorry_server_covers_for_all() {
    let _g = lock();
    let lab = Lab::on_director("ka", "nat", 3, 1);
    let ns = lab.dir_ns();
    director_reaches_servers_only_through_uvsd(&lab);
    let mut bg = Procs::default();
    let digest = md5_hex(b"rs2\n");
    let conf = lab.scratch.path("keepalived.conf");
    let text = format!(
        "global_defs {{
    router_id uvs-test
}}
virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 198.18.1.13 80
    real_server 198.18.1.11 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server 198.18.1.12 80 {{
        weight 1
        HTTP_GET {{
            url {{
                path /who
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
}}
virtual_server {VIP6} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 2001:db8:1::11 80 {{
        HTTP_GET {{
            url {{
                path /who
                status_code 200
            }}
            connect_timeout 1
        }}
    }}
}}
"
    );
    std::fs::write(&conf, &text).unwrap();
    let conf_s = conf.display().to_string();
    assert!(
        keepalived_accepts(&conf_s),
        "keepalived -t refuses the test's file"
    );
    assert!(checker_test(&conf_s).0);

    // A broken file: both refuse it, uvs-keepalived with its line, and
    // running it changes nothing in uvsd.
    let broken = lab.scratch.path("broken.conf");
    std::fs::write(
        &broken,
        text.replace("lb_algo rr", "lb_algo rr\n    wieght 3"),
    )
    .unwrap();
    let broken_s = broken.display().to_string();
    assert!(
        !keepalived_accepts(&broken_s),
        "keepalived -t accepts the broken file"
    );
    let (ok, err) = checker_test(&broken_s);
    assert!(!ok);
    assert!(
        err.contains("broken.conf:7: unknown keyword 'wieght'"),
        "{err}"
    );
    let before = lab.ok("-S -n");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            CHECKER,
            "-f",
            &broken_s,
            "--socket",
            &lab.sock(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lab.ok("-S -n"),
        before,
        "a refused file changed the director"
    );

    let mut checker = Checker::start(&lab, &ns, &conf_s);
    let list = wait_for("both servers in service", &lab, |l| {
        weight(l, "198.18.1.11:80") == Some(1) && weight(l, "198.18.1.12:80") == Some(1)
    });
    assert!(list.contains(&format!("TCP  {VIP}:80 rr")), "{list}");
    assert_eq!(
        weight(&list, "198.18.1.13:80"),
        None,
        "sorry server in use with quorum up"
    );
    let who = lab.who("198.18.0.2", VIP);
    assert!(who == "rs1" || who == "rs2", "{who}");
    wait_for("the IPv6 service's server in service", &lab, |l| {
        weight(l, RS1_V6) == Some(1)
    });
    assert_eq!(lab.who("2001:db8::2", VIP6), "rs1");

    // rs1's service stops: removed; clients go to rs2; it comes back.
    stop_http(&lab, 1);
    wait_for("rs1 removed from both services", &lab, |l| {
        weight(l, "198.18.1.11:80").is_none() && weight(l, RS1_V6).is_none()
    });
    for _ in 0..4 {
        assert_eq!(lab.who("198.18.0.2", VIP), "rs2");
    }
    let status = common::sh(&[
        CHECKER,
        "--status",
        "--status-file",
        &lab.scratch.path("status").display().to_string(),
    ]);
    assert!(
        status.contains("RS 198.18.1.11:80 dead weight 1 not in table: TCP_CHECK down"),
        "{status}"
    );
    assert!(
        status.contains("RS 198.18.1.12:80 alive weight 1 in table: HTTP_GET up"),
        "{status}"
    );
    start_http(&lab, 1, &mut bg);
    wait_for("rs1 back in both services", &lab, |l| {
        weight(l, "198.18.1.11:80") == Some(1) && weight(l, RS1_V6) == Some(1)
    });
    assert_eq!(lab.who("2001:db8::2", VIP6), "rs1");

    // Every server down: the sorry server answers.
    stop_http(&lab, 1);
    stop_http(&lab, 2);
    wait_for("sorry server alone", &lab, |l| {
        weight(l, "198.18.1.13:80").is_some()
            && weight(l, "198.18.1.11:80").is_none()
            && weight(l, "198.18.1.12:80").is_none()
    });
    assert_eq!(lab.who("198.18.0.2", VIP), "rs3");
    start_http(&lab, 2, &mut bg);
    wait_for("rs2 back, sorry server gone", &lab, |l| {
        weight(l, "198.18.1.12:80") == Some(1) && weight(l, "198.18.1.13:80").is_none()
    });
    assert_eq!(lab.who("198.18.0.2", VIP), "rs2");

    let log = std::fs::read_to_string(lab.scratch.path("checker.log")).unwrap();
    for line in [
        "real server 198.18.1.11:80 in VS 198.18.0.100:80: down, removed",
        "real server 198.18.1.11:80 in VS 198.18.0.100:80: up, added (weight 1)",
        "VS 198.18.0.100:80: lost quorum",
        "VS 198.18.0.100:80: sorry server 198.18.1.13 in service",
        "VS 198.18.0.100:80: gained quorum",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    eprintln!("checker log:\n{log}");
    // Stopping the checker removes the services it configured.
    assert_eq!(checker.stop(), Some(0));
    assert_eq!(lab.ok("-S -n"), "");
}

#[test]
fn inhibit_on_failure_quiesces_a_server_and_its_download_in_flight_finishes() {
    let _g = lock();
    let lab = Lab::on_director("kq", "nat", 2, 1);
    let ns = lab.dir_ns();
    let flag = |i: u32| lab.scratch.path(&format!("down{i}")).display().to_string();
    let notified = lab.scratch.path("notified").display().to_string();
    let conf = lab.scratch.path("keepalived.conf");
    let mut text =
        String::from("global_defs {\n    enable_script_security\n    script_user root\n}\n");
    text += &format!(
        "virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    inhibit_on_failure\n"
    );
    for i in 1..=2 {
        // The check passes while the flag file is absent.
        text += &format!(
            "    real_server 198.18.1.1{i} 80 {{\n        notify_down \"/usr/bin/touch {notified}\"\n        MISC_CHECK {{\n            misc_path \"/usr/bin/test ! -e {}\"\n            misc_timeout 2\n        }}\n    }}\n",
            flag(i)
        );
    }
    text += "}\n";
    // A second service whose servers misbehave: rs1 answers garbage on
    // port 81, rs2's check script hangs. Both fail; neither stops anything.
    text += &format!(
        "virtual_server {VIP} 81 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.18.1.11 81 {{
        HTTP_GET {{
            url {{
                path /
            }}
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 198.18.1.12 81 {{
        MISC_CHECK {{
            misc_path \"/bin/sleep {HANG}\"
            misc_timeout 1
        }}
    }}
}}
"
    );
    let mut bg = Procs::default();
    let garbage = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-rs1", lab.p),
            "python3",
            "-c",
            GARBAGE,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    bg.0.push(garbage);
    std::fs::write(&conf, &text).unwrap();
    let conf_s = conf.display().to_string();
    assert!(
        keepalived_accepts(&conf_s),
        "keepalived -t refuses:\n{text}"
    );
    let _checker = Checker::start(&lab, &ns, &conf_s);
    wait_for("both servers in service", &lab, |l| {
        weight(l, "198.18.1.11:80") == Some(1) && weight(l, "198.18.1.12:80") == Some(1)
    });

    // A slow download; then its server's check fails.
    let p = lab.p.clone();
    let want = sha(&std::fs::read(format!("/tmp/{p}-www/blob")).unwrap());
    let slow = std::thread::spawn(move || {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{p}-cli")])
            .args(["curl", "-s", "-f", "-m", "90", "--limit-rate", "150k"])
            .arg(format!("http://{VIP}/blob"))
            .output()
            .unwrap();
        out.status.success() && sha(&out.stdout) == want
    });
    let t0 = Instant::now();
    let busy = loop {
        let list = lab.ok("-L -n");
        let busy = list
            .lines()
            .filter_map(|l| l.strip_prefix("  -> "))
            .find(|l| l.split_whitespace().nth(3) == Some("1"))
            .map(|l| l.split_whitespace().next().unwrap().to_string());
        if let Some(b) = busy {
            break b;
        }
        if t0.elapsed() > DEADLINE {
            let conns = lab.ok("-L -n -c");
            panic!("no active connection: {list}\nconnections:\n{conns}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (i, other) = if busy == "198.18.1.11:80" {
        (1, "rs2")
    } else {
        (2, "rs1")
    };
    std::fs::write(flag(i), "").unwrap();
    let list = wait_for("busy server at weight 0", &lab, |l| {
        weight(l, &busy) == Some(0)
    });
    assert!(
        list.contains(&busy),
        "inhibit_on_failure removed the server: {list}"
    );
    for _ in 0..4 {
        assert_eq!(
            lab.who("198.18.0.2", VIP),
            other,
            "a server at weight 0 got a new connection"
        );
    }
    assert!(
        slow.join().unwrap(),
        "the download in flight did not finish intact"
    );
    let t0 = Instant::now();
    while !std::path::Path::new(&notified).exists() {
        assert!(t0.elapsed() < DEADLINE, "notify_down did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(flag(i)).unwrap();
    wait_for("weight restored", &lab, |l| weight(l, &busy) == Some(1));

    // The misbehaving servers are out, the hanging scripts killed.
    wait_for("garbage and hanging servers out", &lab, |l| {
        l.contains(&format!("TCP  {VIP}:81 rr"))
            && weight(l, "198.18.1.11:81").is_none()
            && weight(l, "198.18.1.12:81").is_none()
    });
    let killed = format!("MISC_CHECK '/bin/sleep {HANG}': still running after 1 s, killed");
    let t0 = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(lab.scratch.path("checker.log")).unwrap();
        if log.contains("not an HTTP status line") && log.contains(&killed) {
            break log;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "garbage or hang not reported:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Checks go on every second and each hanging one is killed after its
    // 1 s timeout, so one may well be running at any moment (on a fast
    // machine nearly always): what must not happen is that they pile up.
    // Watched for ten check rounds, never more than three run at once.
    let sleeping = || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("^/bin/sleep {HANG}$")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let mut most = 0;
    for _ in 0..100 {
        most = most.max(sleeping());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(most <= 3, "hanging check scripts pile up: {most} at once");
    eprintln!("checker log:\n{log}");
}

/// keepalived's fwmark services: a `virtual_server_group` of `fwmark`
/// lines becomes fwmark services (`FWM  1`) whose real servers, without
/// ports, are checked on `connect_port`; the marks come from a mangle
/// PREROUTING MARK rule; a server whose check fails leaves the service and
/// clients go to the other.
#[test]
fn a_group_of_fwmarks_is_served_and_checked() {
    use std::os::unix::process::CommandExt;
    let _g = lock();
    let lab = Lab::on_director("kf", "nat", 2, 1);
    let ns = lab.dir_ns();
    let mut bg = Procs::default();
    // The director's own client-side address is the marked destination,
    // as in the rules tests (a Linux director's VIP is a local address).
    let vip = "198.18.0.1";
    let rule =
        format!("-t mangle -A PREROUTING -d {vip}/32 -p tcp --dport 80 -j MARK --set-mark 1");
    let out = Command::new(env!("CARGO_BIN_EXE_uvstables"))
        .arg0("iptables")
        .args(["--socket", &lab.sock()])
        .args(rule.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let conf = lab.scratch.path("keepalived.conf");
    let text = "virtual_server_group marked {
    fwmark 1
}
virtual_server group marked {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    persistence_timeout 60
    real_server 198.18.1.11 {
        TCP_CHECK {
            connect_port 80
            connect_timeout 1
        }
    }
    real_server 198.18.1.12 {
        TCP_CHECK {
            connect_port 80
            connect_timeout 1
        }
    }
}
";
    std::fs::write(&conf, text).unwrap();
    let conf_s = conf.display().to_string();
    assert!(keepalived_accepts(&conf_s), "keepalived -t refuses it");
    let mut checker = Checker::start(&lab, &ns, &conf_s);
    let list = wait_for("both servers in the fwmark service", &lab, |l| {
        weight(l, "198.18.1.11:0") == Some(1) && weight(l, "198.18.1.12:0") == Some(1)
    });
    assert!(list.contains("\nFWM  1 rr persistent 60\n"), "{list}");
    let url = format!("http://{vip}/who");
    let first = lab
        .get("198.18.0.2", &url)
        .expect("GET through the fwmark service");
    let first = first.trim().to_string();
    assert!(first == "rs1" || first == "rs2", "{first}");
    // The persistent client's server stops: its check removes it and the
    // client is served by the other one.
    let (gone, other) = if first == "rs1" {
        (1, "rs2")
    } else {
        (2, "rs1")
    };
    stop_http(&lab, gone);
    wait_for("the stopped server removed", &lab, |l| {
        weight(l, &format!("198.18.1.1{gone}:0")).is_none()
    });
    let now = lab.get("198.18.0.2", &url).expect("GET after the failure");
    assert_eq!(now.trim(), other);
    start_http(&lab, gone, &mut bg);
    wait_for("the server back", &lab, |l| {
        weight(l, &format!("198.18.1.1{gone}:0")) == Some(1)
    });
    assert_eq!(checker.stop(), Some(0));
    assert_eq!(lab.ok("-S -n"), "");
}
