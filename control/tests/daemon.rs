//! `--start-daemon`, `--stop-daemon` and `-L --daemon` through the
//! director: what reaches the data plane, ipvsadm's output and errors.

use std::sync::{Arc, Mutex};

use control::command::{DaemonConfig, DaemonState};
use control::director::{Dataplane, Director, Refusal, KERNEL_ERROR};
use control::format::{DaemonStatus, NoNames};
use control::grammar::OfflineResolver;
use control::proto::Response;
use dataplane::snapshot::Snapshot;
use uvs_model::model::ConnEntry;

/// A data plane that keeps the daemons it was asked to run, with the
/// kernel's defaults filled in as uvsd fills them.
#[derive(Default)]
struct Daemons(Mutex<Vec<DaemonConfig>>);

impl Dataplane for Daemons {
    fn publish(&self, _snapshot: Arc<Snapshot>) {}
    fn connections(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
    fn conn_tab_size(&self) -> u32 {
        4096
    }
    fn start_daemon(&self, cfg: &DaemonConfig) -> Result<(), Refusal> {
        let mut g = self.0.lock().unwrap();
        if g.iter().any(|d| d.state == cfg.state) {
            return Err(Refusal::new(KERNEL_ERROR, "Daemon has already run"));
        }
        g.push(cfg.clone());
        Ok(())
    }
    fn stop_daemon(&self, state: DaemonState) -> Result<(), Refusal> {
        let mut g = self.0.lock().unwrap();
        let n = g.len();
        g.retain(|d| d.state != state);
        if g.len() == n {
            return Err(Refusal::new(KERNEL_ERROR, "No daemon is running"));
        }
        Ok(())
    }
    fn daemons(&self) -> Vec<DaemonStatus> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|d| DaemonStatus {
                state: d.state,
                mcast_interface: d.mcast_interface.clone(),
                syncid: d.syncid,
                maxlen: d.sync_maxlen.unwrap_or(1472),
                group: Some(d.mcast_group.unwrap_or("224.0.0.81".parse().unwrap())),
                port: d.mcast_port.unwrap_or(8848),
                ttl: d.mcast_ttl.unwrap_or(1),
                counters: vec![("sync_installed".into(), 2)],
            })
            .collect()
    }
}

fn run(d: &Director<Daemons>, line: &str) -> Response {
    let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    d.handle(&argv, None)
}

#[test]
fn daemons_start_list_and_stop_as_ipvsadm_shows_them() {
    let d = Director::with_resolvers(
        Daemons::default(),
        Box::new(NoNames),
        Box::new(OfflineResolver),
    );
    assert_eq!(run(&d, "-L --daemon").stdout, "");
    let r = run(
        &d,
        "--start-daemon backup --mcast-interface uvs-k --syncid 5",
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = run(&d, "--start-daemon master --mcast-interface uvs-k --sync-maxlen 1000 --mcast-port 9000 --mcast-ttl 2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        run(&d, "-L --daemon").stdout,
        concat!(
            "master sync daemon (mcast=uvs-k, syncid=0, maxlen=1000, group=224.0.0.81, port=9000, ttl=2)\n",
            "backup sync daemon (mcast=uvs-k, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n",
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&d, "-L --daemon --json").stdout).unwrap();
    assert_eq!(json["daemons"][1]["counters"]["sync_installed"], 2);

    let r = run(&d, "--start-daemon master --mcast-interface uvs-k");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Daemon has already run\n")
    );
    assert_eq!(run(&d, "--stop-daemon master").code, 0);
    let r = run(&d, "--stop-daemon master");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No daemon is running\n"));
    assert_eq!(
        run(&d, "-L --daemon").stdout,
        "backup sync daemon (mcast=uvs-k, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    // Bad words and values are ipvsadm's client-side errors; nothing runs.
    let r = run(&d, "--start-daemon primary");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (2, "illegal start-daemon parameter specified\n")
    );
    let r = run(&d, "--start-daemon master --syncid 256");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (2, "illegal syncid specified\n")
    );
    assert_eq!(d.dataplane().0.lock().unwrap().len(), 1);
}
