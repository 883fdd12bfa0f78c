//! Reloading the rules file: from "the table the file describes" to the
//! few changes that turn the running table into it.
//!
//! Why a difference and not "flush, then restore": a flush deletes every
//! service, and with it its counters and the connections the workers hold
//! for it. An operator who edits one line of the file and sends SIGHUP
//! expects the other services not to notice. So the file is first applied
//! to an empty table (which checks it completely: a bad file changes
//! nothing), and [`plan`] then lists, in an order the store accepts:
//! deletions of services the file no longer has, edits of services and
//! real servers whose settings changed, and additions of new ones.
//! Services and real servers that stay are not touched, so they keep their
//! statistics, their connections and their place in the table.

use dataplane::snapshot::{Service, Snapshot};
use uvs_model::ops::ConfigOp;

/// What a reload changed, for the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub services_added: usize,
    pub services_deleted: usize,
    pub services_edited: usize,
    pub services_kept: usize,
    pub servers_added: usize,
    pub servers_deleted: usize,
    pub servers_edited: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "services: {} added, {} deleted, {} edited, {} unchanged; real servers: {} added, {} deleted, {} edited",
            self.services_added,
            self.services_deleted,
            self.services_edited,
            self.services_kept,
            self.servers_added,
            self.servers_deleted,
            self.servers_edited
        )
    }
}

/// The operations that turn `current`'s services into `desired`'s, and
/// their count. Timeouts are not compared (the caller passes the file's
/// `--set` lines on as they are).
pub fn plan(current: &Snapshot, desired: &Snapshot) -> (Vec<ConfigOp>, ReloadSummary) {
    let mut ops = Vec::new();
    let mut sum = ReloadSummary::default();
    for s in &current.services {
        if desired.service(&s.config.key).is_none() {
            ops.push(ConfigOp::DeleteService(s.config.key));
            sum.services_deleted += 1;
        }
    }
    for want in &desired.services {
        match current.service(&want.config.key) {
            None => {
                ops.push(ConfigOp::AddService(want.config.clone()));
                sum.services_added += 1;
                for d in &want.dests {
                    ops.push(ConfigOp::AddDest(want.config.key, d.config.clone()));
                    sum.servers_added += 1;
                }
                for l in &want.locals {
                    ops.push(ConfigOp::AddLocal(want.config.key, l.addr));
                }
            }
            Some(have) => {
                let before = ops.len();
                if have.config != want.config {
                    ops.push(ConfigOp::EditService(want.config.clone()));
                }
                dests(have, want, &mut ops, &mut sum);
                locals(have, want, &mut ops);
                if ops.len() == before {
                    sum.services_kept += 1;
                } else {
                    sum.services_edited += 1;
                }
            }
        }
    }
    (ops, sum)
}

/// FULLNAT local addresses of a service present in both tables.
fn locals(have: &Service, want: &Service, ops: &mut Vec<ConfigOp>) {
    let key = want.config.key;
    for l in &have.locals {
        if !want.locals.iter().any(|w| w.addr == l.addr) {
            ops.push(ConfigOp::DelLocal(key, l.addr));
        }
    }
    for w in &want.locals {
        if !have.locals.iter().any(|l| l.addr == w.addr) {
            ops.push(ConfigOp::AddLocal(key, w.addr));
        }
    }
}

/// Real servers of a service present in both tables.
fn dests(have: &Service, want: &Service, ops: &mut Vec<ConfigOp>, sum: &mut ReloadSummary) {
    let key = want.config.key;
    let same = |a: &dataplane::snapshot::Dest, b: &dataplane::snapshot::Dest| {
        a.config.addr == b.config.addr && a.config.port == b.config.port
    };
    for d in &have.dests {
        if !want.dests.iter().any(|w| same(w, d)) {
            ops.push(ConfigOp::DeleteDest {
                service: key,
                addr: d.config.addr,
                port: d.config.port,
            });
            sum.servers_deleted += 1;
        }
    }
    for w in &want.dests {
        match have.dests.iter().find(|d| same(d, w)) {
            None => {
                ops.push(ConfigOp::AddDest(key, w.config.clone()));
                sum.servers_added += 1;
            }
            Some(d) if d.config != w.config => {
                ops.push(ConfigOp::EditDest(key, w.config.clone()));
                sum.servers_edited += 1;
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::{parse_restore_with, OfflineResolver};
    use dataplane::config::ConfigStore;

    fn store(text: &str) -> ConfigStore {
        let mut s = ConfigStore::new();
        let ops: Vec<ConfigOp> = parse_restore_with(text, &OfflineResolver)
            .unwrap()
            .iter()
            .filter_map(crate::director::to_op)
            .cloned()
            .collect();
        s.apply_all(&ops).unwrap();
        s
    }

    const BASE: &str = "\
-A -t 198.18.0.1:80 -s rr
-a -t 198.18.0.1:80 -r 198.19.0.1:80 -m -w 1
-a -t 198.18.0.1:80 -r 198.19.0.2:80 -m -w 1
-A -t 198.18.0.2:80 -s wlc
-a -t 198.18.0.2:80 -r 198.19.0.3:80 -m
-A -u 198.18.0.3:53 -s rr
";

    #[test]
    fn the_same_file_changes_nothing() {
        let cur = store(BASE);
        let (ops, sum) = plan(&cur.snapshot(), &store(BASE).snapshot());
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(sum.services_kept, 3);
    }

    #[test]
    fn applying_the_plan_gives_the_file_and_keeps_what_stays() {
        let wanted = "\
-A -t 198.18.0.1:80 -s rr
-a -t 198.18.0.1:80 -r 198.19.0.1:80 -m -w 1
-a -t 198.18.0.1:80 -r 198.19.0.2:80 -m -w 1
-A -t 198.18.0.2:80 -s rr
-a -t 198.18.0.2:80 -r 198.19.0.3:80 -m -w 5
-a -t 198.18.0.2:80 -r 198.19.0.4:80 -m
-A -t 198.18.0.9:443 -s sh
-a -t 198.18.0.9:443 -r 198.19.0.9:443 -g
";
        let mut cur = store(BASE);
        let kept = cur.snapshot().services[0].shared.clone();
        let (ops, sum) = plan(&cur.snapshot(), &store(wanted).snapshot());
        cur.apply_all(&ops).unwrap();
        let got = cur.snapshot();
        let want = store(wanted).snapshot();
        let configs = |s: &Snapshot| {
            let mut v: Vec<_> = s
                .services
                .iter()
                .map(|s| {
                    (
                        s.config.clone(),
                        s.dests.iter().map(|d| d.config.clone()).collect::<Vec<_>>(),
                    )
                })
                .collect();
            v.sort_by_key(|(c, _)| format!("{:?}", c.key));
            v
        };
        assert_eq!(configs(&got), configs(&want));
        // The untouched service is the same object: counters and
        // connections (which point at it) are kept.
        let same = got
            .service(&want.services[0].config.key)
            .expect("kept service");
        assert!(std::sync::Arc::ptr_eq(&same.shared, &kept));
        assert_eq!(
            sum,
            ReloadSummary {
                services_added: 1,
                services_deleted: 1,
                services_edited: 1,
                services_kept: 1,
                servers_added: 2,
                servers_deleted: 0,
                servers_edited: 1,
            }
        );
    }

    #[test]
    fn an_empty_file_deletes_everything() {
        let cur = store(BASE);
        let (ops, sum) = plan(&cur.snapshot(), &ConfigStore::new().snapshot());
        assert_eq!(ops.len(), 3);
        assert_eq!(sum.services_deleted, 3);
    }
}
