//! `--counters [--json]` through the director: what the data plane
//! reports, as text and as JSON, and the answer before any worker runs.

use std::sync::{Arc, Mutex};

use control::director::{Dataplane, Director, KERNEL_ERROR};
use control::format::counters::CounterTable;
use control::format::NoNames;
use control::grammar::OfflineResolver;
use control::proto::Response;
use dataplane::snapshot::Snapshot;
use uvs_model::model::ConnEntry;

/// A data plane whose workers report `table` (none: not running).
#[derive(Default)]
struct Workers(Mutex<Option<CounterTable>>);

impl Dataplane for Workers {
    fn publish(&self, _snapshot: Arc<Snapshot>) {}
    fn connections(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
    fn conn_tab_size(&self) -> u32 {
        4096
    }
    fn counters(&self) -> Option<CounterTable> {
        self.0.lock().unwrap().clone()
    }
}

fn run(d: &Director<Workers>, line: &str) -> Response {
    let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    d.handle(&argv, None)
}

#[test]
fn counters_show_what_the_workers_report() {
    let d = Director::with_resolvers(
        Workers::default(),
        Box::new(NoNames),
        Box::new(OfflineResolver),
    );
    let r = run(&d, "--counters");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (KERNEL_ERROR, "", "uvsd: no worker is running yet\n")
    );
    *d.dataplane().0.lock().unwrap() = Some(CounterTable {
        workers: 2,
        rows: vec![
            ("rx".into(), vec![7, 5]),
            ("lb_drop_table_full".into(), vec![0, 2]),
        ],
    });
    let r = run(&d, "--counters");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[1], ["rx", "12", "7", "5"]);
    assert_eq!(rows[2], ["lb_drop_table_full", "2", "0", "2"]);
    let r = run(&d, "--counters --json");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["total"]["lb_drop_table_full"], 2);
    assert_eq!(v["per_worker"][0]["rx"], 7);
    // A bad line changes nothing and says why.
    let r = run(&d, "--counters --stats");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--counters takes only --json"),
        "{}",
        r.stderr
    );
}
