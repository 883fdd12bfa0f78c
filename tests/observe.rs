//! What an operator watches, end to end: the Prometheus endpoint scraped
//! with curl under real traffic, checked by `promtool check metrics` and
//! against `uvsadm -L -n --stats`, and uvsd's own commands on DPDK's
//! telemetry socket read with `dpdk-telemetry.py`.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{lock, Lab, VIP};

/// A metrics port of this test process (several test processes may run
/// labs at once on one machine).
fn metrics_port() -> u16 {
    20_000 + (std::process::id() % 20_000) as u16
}

/// Scrapes the endpoint with curl.
fn scrape(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-s", "-f", "-m", "10"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `promtool check metrics`, Prometheus' own checker (format and naming
/// conventions), accepts the exposition.
fn promtool_accepts(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) runs");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sample lines as `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `-L -n --stats --exact` rows: `TCP 198.18.0.100:80` for the service and
/// `198.18.1.11:80` for real servers -> [conns, inpkts, outpkts, inbytes,
/// outbytes].
fn stats_rows(listing: &str) -> HashMap<String, [u64; 5]> {
    let mut rows = HashMap::new();
    for l in listing.lines() {
        let (name, rest) = if let Some(r) = l.strip_prefix("  -> ") {
            let mut f = r.split_whitespace();
            let Some(addr) = f.next() else { continue };
            (addr.to_string(), f.collect::<Vec<_>>())
        } else if l.starts_with("TCP ") || l.starts_with("UDP ") {
            let f: Vec<&str> = l.split_whitespace().collect();
            (format!("{} {}", f[0], f[1]), f[2..].to_vec())
        } else {
            continue;
        };
        let nums: Vec<u64> = rest.iter().filter_map(|x| x.parse().ok()).collect();
        if nums.len() == 5 {
            rows.insert(name, [nums[0], nums[1], nums[2], nums[3], nums[4]]);
        }
    }
    rows
}

const FIELDS: [&str; 5] = [
    "connections_total",
    "incoming_packets_total",
    "outgoing_packets_total",
    "incoming_bytes_total",
    "outgoing_bytes_total",
];

fn svc_labels() -> String {
    format!(r#"local_address="{VIP}",local_port="80",proto="TCP",local_mark="""#)
}

fn backend_labels(rs: &str) -> String {
    format!(
        r#"local_address="{VIP}",local_port="80",remote_address="{rs}",remote_port="80",proto="TCP",local_mark="""#
    )
}

/// Whether a scrape and a listing say the same for the service and both
/// real servers; the differences otherwise.
fn disagreements(m: &HashMap<String, u64>, rows: &HashMap<String, [u64; 5]>) -> Vec<String> {
    let mut bad = vec![];
    let mut check = |metric: String, want: u64| match m.get(&metric) {
        Some(&got) if got == want => {}
        got => bad.push(format!("{metric}: metrics {got:?}, uvsadm {want}")),
    };
    let svc = rows
        .get(&format!("TCP {VIP}:80"))
        .copied()
        .unwrap_or_default();
    for (i, f) in FIELDS.iter().enumerate() {
        check(format!("uvs_service_{f}{{{}}}", svc_labels()), svc[i]);
        check(format!("node_ipvs_{f}"), svc[i]);
    }
    for rs in ["198.18.1.11", "198.18.1.12"] {
        let row = rows.get(&format!("{rs}:80")).copied().unwrap_or_default();
        for (i, f) in FIELDS.iter().enumerate() {
            check(format!("uvs_backend_{f}{{{}}}", backend_labels(rs)), row[i]);
        }
    }
    bad
}

/// `Weight ActiveConn InActConn` of each real server in `-L -n`.
fn conn_columns(listing: &str) -> HashMap<String, [u64; 3]> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i)?.parse().ok();
            Some((f[0].to_string(), [n(2)?, n(3)?, n(4)?]))
        })
        .collect()
}

/// One command through `dpdk-telemetry.py -f PREFIX`: its JSON answer.
fn telemetry(prefix: &str, cmd: &str) -> serde_json::Value {
    let mut c = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (package dpdk-dev) runs");
    writeln!(c.stdin.take().unwrap(), "{cmd}").unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The tool prints its banner, then one JSON object per command, keyed
    // by the command without its parameters.
    let key = cmd.split(',').next().unwrap();
    let json = text
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim_start_matches("--> ").trim();
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get(key).is_some())
        })
        .unwrap_or_else(|| {
            panic!(
                "no answer to {cmd} from dpdk-telemetry.py: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    json[key].clone()
}

#[test]
fn metrics_and_telemetry_agree_with_uvsadm_under_traffic() {
    common::require_root();
    let _g = lock();
    let port = metrics_port();
    let mut lab = Lab::with_config(
        "o",
        "nat",
        2,
        2,
        1,
        None,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // A director without services: families without samples.
    let empty = scrape(port);
    assert!(empty.contains("# TYPE node_ipvs_backend_weight gauge"));
    promtool_accepts(&empty);
    lab.ok(&format!("-A -t {VIP}:80 -s rr"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.11:80 -m -w 2"));
    lab.ok(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));
    for n in 0..12 {
        let from = if n % 2 == 0 {
            "198.18.0.2"
        } else {
            "198.18.0.3"
        };
        assert!(!lab.who(from, VIP).is_empty(), "request {n} unanswered");
    }
    assert!(lab.blob_matches(VIP), "download through the VIP differs");

    // The last packets of a connection may still be on their way: compare
    // once a scrape and the listing taken after it agree (they must, and
    // soon: the loop ends at the first agreement).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (text, listing) = loop {
        let text = scrape(port);
        let listing = lab.ok("-L -n --stats --exact");
        let bad = disagreements(&samples(&text), &stats_rows(&listing));
        if bad.is_empty() {
            break (text, listing);
        }
        assert!(
            Instant::now() < deadline,
            "metrics and uvsadm -L -n --stats disagree: {bad:#?}\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let m = samples(&text);
    let svc = stats_rows(&listing)[&format!("TCP {VIP}:80")];
    assert_eq!(svc[0], 13, "12 requests and a download: {listing}");

    promtool_accepts(&text);

    // Weight and connection columns, under node_exporter's names
    // (connections close and expire meanwhile: again until they agree).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = samples(&scrape(port));
        let cols = conn_columns(&lab.ok("-L -n"));
        let mut bad = vec![];
        for rs in ["198.18.1.11", "198.18.1.12"] {
            let want = cols[&format!("{rs}:80")];
            let l = backend_labels(rs);
            let got = [
                m[&format!("node_ipvs_backend_weight{{{l}}}")],
                m[&format!("node_ipvs_backend_connections_active{{{l}}}")],
                m[&format!("node_ipvs_backend_connections_inactive{{{l}}}")],
            ];
            if got != want {
                bad.push(format!("{rs}: metrics {got:?}, uvsadm {want:?}"));
            }
        }
        if bad.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "weight/active/inactive: {bad:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(m[r#"uvs_connection_table_capacity{worker="0"}"#], 65536);
    assert!(
        m[r#"uvs_connection_table_entries{worker="0"}"#] >= 1,
        "closed connections linger in the table (TIME_WAIT, FIN_WAIT)"
    );
    assert!(m[r#"uvs_port_received_packets_total{port="client"}"#] >= svc[1]);
    assert!(m[r#"uvs_worker_received_packets_total{worker="0"}"#] >= svc[1] + svc[2]);
    assert_eq!(
        m[r#"uvs_dropped_packets_total{worker="0",layer="lb",reason="table_full"}"#],
        0
    );

    // Anything but GET /metrics gets a clear refusal, and the endpoint
    // keeps serving.
    let code = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(code(&[&format!("http://127.0.0.1:{port}/")]), "404");
    assert_eq!(
        code(&["-X", "POST", &format!("http://127.0.0.1:{port}/metrics")]),
        "405"
    );
    assert!(scrape(port).contains("node_ipvs_connections_total"));

    // DPDK telemetry: uvsd's commands beside DPDK's.
    let cmds = telemetry(&lab.p, "/");
    for c in [
        "/uvs/counters",
        "/uvs/workers",
        "/uvs/services",
        "/ethdev/stats",
    ] {
        assert!(
            cmds.as_array().unwrap().iter().any(|x| x == c),
            "{c} missing from {cmds}"
        );
    }
    let counters = telemetry(&lab.p, "/uvs/counters");
    let listing = lab.ok("-L -n --stats --exact");
    let svc = stats_rows(&listing)[&format!("TCP {VIP}:80")];
    assert_eq!(counters["conns"], svc[0], "{counters}");
    assert_eq!(counters["workers"], 1);
    assert_eq!(counters["conn_table_capacity"], 65536);
    assert!(counters["rx"].as_u64().unwrap() >= svc[1] + svc[2]);
    let workers = telemetry(&lab.p, "/uvs/workers");
    // The same counter read twice (neighbour traffic goes on meanwhile).
    let all = workers["0"]["rx"].as_u64().unwrap();
    let one = telemetry(&lab.p, "/uvs/workers,0")["rx"].as_u64().unwrap();
    assert!(all >= svc[1] + svc[2] && one >= all, "{all} then {one}");
    let services = telemetry(&lab.p, "/uvs/services");
    assert_eq!(
        services["services"],
        serde_json::json!([format!("TCP {VIP}:80")])
    );
    let one = telemetry(&lab.p, &format!("/uvs/services,TCP {VIP}:80"));
    assert_eq!(one["conns"], svc[0], "{one}");
    assert_eq!(one["scheduler"], "rr");
    assert_eq!(one["dests"].as_array().unwrap().len(), 2, "{one}");
    assert_eq!(telemetry(&lab.p, "/uvs/workers,7"), serde_json::Value::Null);

    // Changes are in the log with their outcome; listings are not (info).
    let (code, _, _) = lab.adm(&format!("-a -t {VIP}:80 -r 198.18.1.12:80 -m"));
    assert_eq!(code, 255, "a second add of a real server is refused");
    let (_, log) = lab.stop_daemon();
    let added =
        format!(r#"uvsd: command level=info argv="-A -t {VIP}:80 -s rr" status=0 error="""#);
    assert!(log.lines().any(|l| l == added), "{log}");
    let refused = format!(
        r#"uvsd: command level=info argv="-a -t {VIP}:80 -r 198.18.1.12:80 -m" status=255 error="#
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with(&refused) && l.contains("exists")),
        "{log}"
    );
    assert!(
        !log.contains("argv=\"-L"),
        "listings are not logged at info"
    );
}

/// With `[log] format = "json"` every line uvsd writes is one JSON object
/// with a level and an event; started as systemd starts a `Type=notify`
/// unit, it sends `READY=1` to `$NOTIFY_SOCKET` once it serves.
#[test]
fn json_log_and_readiness_notification() {
    use std::io::Read;
    use std::os::unix::net::UnixDatagram;
    common::require_root();
    let d = common::Scratch::new("jsonlog");
    let prefix = common::unique("jl");
    let cfg = d.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"128\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\nconn_capacity = 1024\n\
             [control]\nsocket = \"{}\"\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/24\"]\n",
            d.path("ctl.sock").display()
        ),
    )
    .unwrap();
    let notify = d.path("notify.sock");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _g = lock();
    let mut child = Command::new(common::UVSD)
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let got = rx.recv(&mut buf);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let status = child.wait().unwrap();
    let n = got.unwrap_or_else(|e| panic!("no READY=1 ({e}): {log}"));
    assert_eq!(&buf[..n], b"READY=1");
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1", "after the signal");
    assert!(status.success(), "{status:?}: {log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for want in ["port", "ready", "stopping", "counters", "port_stats"] {
        assert!(names.contains(&want), "no {want} event in {log}");
    }
    assert!(
        events
            .iter()
            .all(|e| e["level"] == "info" && e["ts"].is_string()),
        "{log}"
    );
    let ready = events.iter().find(|e| e["event"] == "ready").unwrap();
    assert_eq!(ready["workers"], 1);
    assert_eq!(common::leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}

/// A metrics port that is taken ends start-up with one clear line, before
/// any device is touched.
#[test]
fn a_taken_metrics_port_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let d = common::Scratch::new("metrics-taken");
    let prefix = common::unique("mt");
    let cfg = d.path("uvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"--no-pci\", \"--no-huge\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [control]\nsocket = \"{}\"\n\
             [metrics]\nlisten = \"{addr}\"\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\n",
            d.path("ctl.sock").display()
        ),
    )
    .unwrap();
    let out = Command::new(common::UVSD)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("uvsd: metrics.listen {addr}: ")) && err.contains("in use"),
        "{err}"
    );
    assert!(!d.path("ctl.sock").exists(), "nothing was started");
    assert_eq!(common::leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
