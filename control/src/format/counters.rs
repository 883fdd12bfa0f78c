//! `uvsadm --counters [--json]` (a UVS extension): every counter of the
//! running director's workers, per worker and in total.
//!
//! Why here and not in the daemon: like the listings, the output is a pure
//! function of plain data ([`CounterTable`]), tested without a director.
//! The daemon fills the table from the same per-worker reads its metrics
//! endpoint and DPDK telemetry use; names are those of the metrics'
//! `reason` labels and of the telemetry dictionaries (README, "Drop
//! counters").
//!
//! Text: one line per counter, name then the total then one column per
//! worker, every counter listed (zeros too, so that a script can look for
//! a name without knowing whether it ever moved).
//!
//! JSON: one object, followed by a newline:
//! ```text
//! { "workers": 2,
//!   "total": { "rx": 10, "lb_drop_table_full": 0, ... },
//!   "per_worker": [ { "rx": 6, ... }, { "rx": 4, ... } ] }
//! ```

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The counters of every worker: `rows[i]` is one counter, its name and
/// one value per worker (every row has as many values as there are
/// workers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterTable {
    pub workers: usize,
    pub rows: Vec<(String, Vec<u64>)>,
}

impl CounterTable {
    /// The sum over the workers of row `values`.
    fn total(values: &[u64]) -> u64 {
        values.iter().fold(0u64, |a, v| a.wrapping_add(*v))
    }

    /// One counter's total, if the table has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.rows
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| Self::total(v))
    }
}

/// The text form (see the module docs).
pub fn text(t: &CounterTable) -> String {
    let width = t
        .rows
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0)
        .max("Counter".len());
    let mut out = String::new();
    let _ = write!(out, "{:<width$} {:>14}", "Counter", "Total");
    for w in 0..t.workers {
        let _ = write!(out, " {:>14}", format!("Worker {w}"));
    }
    out.push('\n');
    for (name, values) in &t.rows {
        let _ = write!(out, "{:<width$} {:>14}", name, CounterTable::total(values));
        for v in values {
            let _ = write!(out, " {v:>14}");
        }
        out.push('\n');
    }
    out
}

/// The JSON form (see the module docs).
pub fn json(t: &CounterTable) -> String {
    let mut total = Map::new();
    let mut per: Vec<Map<String, Value>> = vec![Map::new(); t.workers];
    for (name, values) in &t.rows {
        total.insert(name.clone(), CounterTable::total(values).into());
        for (w, v) in values.iter().enumerate() {
            if let Some(m) = per.get_mut(w) {
                m.insert(name.clone(), (*v).into());
            }
        }
    }
    let v = serde_json::json!({
        "workers": t.workers,
        "total": total,
        "per_worker": per,
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CounterTable {
        CounterTable {
            workers: 2,
            rows: vec![
                ("rx".into(), vec![6, 4]),
                ("lb_drop_table_full".into(), vec![0, 3]),
            ],
        }
    }

    #[test]
    fn text_lists_every_counter_with_its_total_and_each_worker() {
        let want = "\
Counter                     Total       Worker 0       Worker 1
rx                             10              6              4
lb_drop_table_full              3              0              3
";
        assert_eq!(text(&table()), want);
    }

    #[test]
    fn json_gives_totals_and_per_worker_objects() {
        let v: Value = serde_json::from_str(&json(&table())).unwrap();
        assert_eq!(v["workers"], 2);
        assert_eq!(v["total"]["rx"], 10);
        assert_eq!(v["total"]["lb_drop_table_full"], 3);
        assert_eq!(v["per_worker"][0]["rx"], 6);
        assert_eq!(v["per_worker"][1]["lb_drop_table_full"], 3);
        assert_eq!(table().get("rx"), Some(10));
        assert_eq!(table().get("nothing"), None);
    }
}
