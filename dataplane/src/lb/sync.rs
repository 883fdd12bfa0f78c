//! The load balancer's side of connection synchronisation
//! ([`crate::sync`]): the master's per-packet decision and the backup's
//! installation of entries, between bursts, into this worker's table.

use super::Lb;
use crate::conn::table::SyncBind;
use crate::conn::{ConnId, ConnTable};
use crate::model::ForwardMethod;
use crate::sync::{bump, SyncDrop, WorkerSync};
use crate::wire::sync::{flags, SyncConn};

/// Entries a worker installs per turn at most (the rest wait in its ring).
const INSTALL_BUDGET: usize = 256;

impl Lb {
    /// Connects this stage to the sync daemons.
    pub fn set_sync(&mut self, s: WorkerSync) {
        self.sync = Some(s);
    }

    /// Master: after a client packet of connection `id` was forwarded.
    /// Nothing happens unless a master daemon runs.
    #[inline]
    pub(super) fn sync_note(&mut self, id: ConnId) {
        let Some(s) = &self.sync else { return };
        if s.master {
            note(&mut self.conns, s, id);
        }
    }

    /// Between bursts: follows the master switch and installs what the
    /// backup thread handed over. Returns how many entries it installed.
    pub fn sync_tick(&mut self, now: u64) -> usize {
        let Some(s) = self.sync.as_mut() else {
            return 0;
        };
        s.refresh();
        let mut n = 0;
        while n < INSTALL_BUDGET {
            let Some(c) = self.sync.as_ref().and_then(WorkerSync::receive) else {
                break;
            };
            n += 1;
            let r = self.install_synced(&c, now);
            if let Some(s) = &self.sync {
                match r {
                    Ok(_) => bump(&s.counters.installed),
                    Err(r) => s.counters.count_drop(r),
                }
            }
        }
        n
    }

    /// Installs one entry from the backup thread, bound to this
    /// director's matching service and destination.
    pub fn install_synced(&mut self, c: &SyncConn, now: u64) -> Result<ConnId, SyncDrop> {
        let found = self
            .snap
            .index
            .find(c.protocol, &c.vaddr, c.vport)
            .ok_or(SyncDrop::NoService)?;
        let svc = &found.service;
        let template = c.flags & flags::TEMPLATE != 0;
        let dest = svc
            .dests
            .iter()
            .find(|d| {
                d.config.addr == c.daddr
                    && (d.config.port == c.dport
                        || d.config.port == 0
                        || (template && c.dport == 0))
            })
            .ok_or(SyncDrop::NoDestination)?;
        if dest.config.method == ForwardMethod::FullNat {
            // A FULLNAT entry needs a local port the message cannot carry
            // (masters never send them); none is made up here.
            return Err(SyncDrop::NoDestination);
        }
        let b = SyncBind {
            dest: &dest.shared,
            svc: Some(&svc.shared),
            method: dest.config.method,
        };
        self.conns
            .install_synced(c, b, now)
            .map_err(|_| SyncDrop::TableFull)
    }
}

/// Counts the packet and queues the entry (and its template) when due.
fn note(conns: &mut ConnTable, s: &WorkerSync, id: ConnId) {
    if !conns.sync_due(id, &s.params) {
        return;
    }
    s.send(&conns.sync_entry(id));
    if let Some(t) = conns.get(id).control() {
        if conns.sync_due(t, &s.params) {
            s.send(&conns.sync_entry(t));
        }
    }
}

#[cfg(all(test, feature = "dpdk"))]
#[path = "tests_sync.rs"]
mod tests;
