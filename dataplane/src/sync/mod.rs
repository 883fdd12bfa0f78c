//! Connection synchronisation between two directors, as the kernel's IPVS
//! sync daemon does it (`--start-daemon master|backup`, reference ipvs.md
//! section 6), without slowing the workers.
//!
//! Master: after a client packet of a connection, the worker decides as
//! the kernel does whether the entry is due ([`sync_needed`]: TCP entries
//! in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT; a change to a
//! state other than ESTABLISHED at once, else when the client packet count
//! is `threshold` modulo `period`, 3 and 50 by default; UDP by count only;
//! the controlling template with each of its connections) and, if so,
//! writes one fixed-size record (the wire entry, [`ring::Record`]) into its
//! own bounded ring ([`WorkerSync`]). That is a few dozen stores: no
//! allocation, no lock, no system call; a full ring counts the record as
//! dropped. The sync thread (`daemon`, on an ordinary kernel UDP socket)
//! drains every worker's ring, batches the records into messages of at
//! most `sync_maxlen` bytes and sends them to the group.
//!
//! Backup: the sync thread receives, decodes ([`crate::wire::sync`]),
//! filters by SyncID, counts and drops what is malformed, foreign or not
//! installable ([`SyncDrop`]), and hands each entry to the worker that owns
//! it (the data path's ownership rule on the client endpoint) through that
//! worker's ring; the worker installs it between bursts
//! ([`crate::conn::ConnTable::install_synced`]), bound to its own matching
//! service and destination, with the message's state and timeout, flagged
//! as synced.

#[cfg(feature = "dpdk")]
pub mod daemon;
pub mod ring;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::conn::proto_tcp::state;
use crate::rss::Ownership;
use crate::wire::sync::{flags, template_state, SyncConn, RECORD_LEN};
use ring::{Consumer, Producer, Record};

/// Records a worker ring holds (each direction).
pub const WORKER_RING: usize = 4096;

/// The kernel's `sync_threshold` sysctl: sync at client packet counts
/// where `count % period == threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncParams {
    pub threshold: u32,
    pub period: u32,
}

impl Default for SyncParams {
    fn default() -> Self {
        SyncParams {
            threshold: 3,
            period: 50,
        }
    }
}

const TCP: u8 = 6;
const SCTP: u8 = 132;

/// Whether the master sends an entry after a client packet (the kernel's
/// `ip_vs_sync_conn_needed` with `sync_refresh_period` 0): `pkts` is the
/// entry's client packet count including this one, `old_state` its state
/// when last sent.
pub fn sync_needed(
    proto: u8,
    template: bool,
    st: u8,
    old_state: u8,
    pkts: u32,
    p: &SyncParams,
) -> bool {
    if template {
        return true;
    }
    if proto == TCP {
        let synced = [
            state::ESTABLISHED,
            state::FIN_WAIT,
            state::CLOSE,
            state::CLOSE_WAIT,
            state::TIME_WAIT,
        ];
        if !synced.contains(&st) {
            return false;
        }
        if st != old_state && st != state::ESTABLISHED {
            return true;
        }
    } else if proto == SCTP {
        use crate::conn::proto_sctp::state as sctp;
        let synced = [
            sctp::ESTABLISHED,
            sctp::SHUTDOWN_SENT,
            sctp::SHUTDOWN_RECEIVED,
            sctp::SHUTDOWN_ACK_SENT,
            sctp::CLOSED,
        ];
        if !synced.contains(&st) {
            return false;
        }
        if st != old_state && st != sctp::ESTABLISHED {
            return true;
        }
    }
    if p.period > 0 {
        pkts % p.period == p.threshold
    } else {
        pkts == p.threshold
    }
}

/// Why the backup dropped a message or an entry. Indexes the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncDrop {
    /// Shorter than a header.
    Truncated = 0,
    /// The size field is not the datagram's length.
    BadSize = 1,
    /// Another SyncID than the backup's (which is not 0).
    WrongSyncid = 2,
    /// A malformed entry (type, size, version, option); the rest of its
    /// message is dropped with it.
    BadEntry = 3,
    /// An entry with an unknown mandatory option.
    UnknownOption = 4,
    /// A protocol UVS does not serve (fwmark templates), a state out
    /// of range, or flags the kernel rejects (one-packet, a template
    /// without client port rule).
    Unsupported = 5,
    /// No local virtual service matches the entry.
    NoService = 6,
    /// The service has no matching destination.
    NoDestination = 7,
    /// The owner's connection table is full.
    TableFull = 8,
    /// The owner's ring was full.
    RingFull = 9,
}

impl SyncDrop {
    pub const COUNT: usize = 10;
    pub const ALL: [SyncDrop; SyncDrop::COUNT] = [
        SyncDrop::Truncated,
        SyncDrop::BadSize,
        SyncDrop::WrongSyncid,
        SyncDrop::BadEntry,
        SyncDrop::UnknownOption,
        SyncDrop::Unsupported,
        SyncDrop::NoService,
        SyncDrop::NoDestination,
        SyncDrop::TableFull,
        SyncDrop::RingFull,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SyncDrop::Truncated => "sync_drop_truncated",
            SyncDrop::BadSize => "sync_drop_bad_size",
            SyncDrop::WrongSyncid => "sync_drop_wrong_syncid",
            SyncDrop::BadEntry => "sync_drop_bad_entry",
            SyncDrop::UnknownOption => "sync_drop_unknown_option",
            SyncDrop::Unsupported => "sync_drop_unsupported",
            SyncDrop::NoService => "sync_drop_no_service",
            SyncDrop::NoDestination => "sync_drop_no_destination",
            SyncDrop::TableFull => "sync_drop_table_full",
            SyncDrop::RingFull => "sync_drop_ring_full",
        }
    }
}

/// Counters of one writer (a worker or the sync thread): relaxed load +
/// store, read by the control thread.
#[derive(Debug, Default)]
pub struct SyncCounters {
    drops: [AtomicU64; SyncDrop::COUNT],
    /// Master: records queued toward the sync thread.
    pub queued: AtomicU64,
    /// Master: records refused because the worker's ring was full.
    pub queue_full: AtomicU64,
    /// Master: records of connections whose addresses mix families.
    pub mixed_family: AtomicU64,
    /// Master: messages and entries sent, send errors.
    pub sent_messages: AtomicU64,
    pub sent_entries: AtomicU64,
    pub send_errors: AtomicU64,
    /// Backup: messages received (any), v0 messages among them, entries
    /// installed (new or updated).
    pub received: AtomicU64,
    pub received_v0: AtomicU64,
    pub installed: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl SyncCounters {
    pub fn count_drop(&self, r: SyncDrop) {
        bump(&self.drops[r as usize]);
    }
    pub fn drops(&self, r: SyncDrop) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }

    /// Every counter by name (for reports and listings).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v = vec![
            ("sync_queued", l(&self.queued)),
            ("sync_queue_full", l(&self.queue_full)),
            ("sync_mixed_family", l(&self.mixed_family)),
            ("sync_sent_messages", l(&self.sent_messages)),
            ("sync_sent_entries", l(&self.sent_entries)),
            ("sync_send_errors", l(&self.send_errors)),
            ("sync_received", l(&self.received)),
            ("sync_received_v0", l(&self.received_v0)),
            ("sync_installed", l(&self.installed)),
        ];
        v.extend(SyncDrop::ALL.iter().map(|&r| (r.as_str(), self.drops(r))));
        v
    }
}

/// Sums named counter lists.
pub fn sum_named(lists: &[Vec<(&'static str, u64)>]) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, u64)> = Vec::new();
    for l in lists {
        for &(n, v) in l {
            match out.iter_mut().find(|(m, _)| *m == n) {
                Some(e) => e.1 += v,
                None => out.push((n, v)),
            }
        }
    }
    out
}

/// An entry as a ring record; `None` when it cannot be expressed (mixed
/// address families, or options that do not fit a record).
pub fn to_record(c: &SyncConn) -> Option<Record> {
    let mut r = [0u8; RECORD_LEN];
    let plain = SyncConn { seq: None, ..*c };
    plain.emit(&mut r).ok()?;
    Some(r)
}

/// A ring record back as an entry.
pub fn from_record(r: &Record) -> Option<SyncConn> {
    let size = usize::from(u16::from_be_bytes([r[2], r[3]]) & 0x0fff);
    SyncConn::parse(r.get(..size)?).ok()
}

/// The backup's check of an entry before it is routed to a worker: what
/// the kernel rejects (`ip_vs_proc_sync_conn`) and what UVS cannot serve.
pub fn check_entry(c: &SyncConn) -> Result<(), SyncDrop> {
    let fl = c.flags;
    let template = fl & flags::TEMPLATE != 0;
    if fl & flags::ONE_PACKET != 0 || (template && fl & flags::NO_CPORT != 0) {
        return Err(SyncDrop::Unsupported);
    }
    let ok_state = if template {
        c.state < template_state::COUNT
    } else {
        match c.protocol {
            TCP => usize::from(c.state) < state::COUNT,
            17 => c.state == 0,
            SCTP => usize::from(c.state) < crate::conn::proto_sctp::state::COUNT,
            _ => false,
        }
    };
    if !ok_state || !matches!(c.protocol, TCP | 17 | SCTP) || c.fwmark != 0 {
        return Err(SyncDrop::Unsupported);
    }
    Ok(())
}

/// A worker's end of synchronisation: its ring toward the sync thread
/// (master), its ring from it (backup), and its counters.
#[derive(Debug)]
pub struct WorkerSync {
    out: Producer,
    inbox: Consumer,
    master_on: Arc<AtomicBool>,
    /// Copied from `master_on` between bursts: the per-packet test.
    pub(crate) master: bool,
    pub(crate) params: SyncParams,
    pub(crate) counters: Arc<SyncCounters>,
}

impl WorkerSync {
    /// Queues an entry toward the sync thread (master; counted when full).
    #[inline]
    pub(crate) fn send(&self, c: &SyncConn) {
        match to_record(c) {
            Some(r) => {
                if self.out.push(&r) {
                    bump(&self.counters.queued);
                } else {
                    bump(&self.counters.queue_full);
                }
            }
            None => bump(&self.counters.mixed_family),
        }
    }

    /// The next entry the backup thread handed to this worker.
    pub(crate) fn receive(&self) -> Option<SyncConn> {
        self.inbox.pop().as_ref().and_then(from_record)
    }

    /// Between bursts: whether a master daemon runs now.
    pub(crate) fn refresh(&mut self) {
        self.master = self.master_on.load(Ordering::Relaxed);
    }
}

/// The sync thread's side of every worker: created with the workers'
/// ends, shared by the control plane (start, stop, listing).
#[derive(Debug)]
pub struct SyncHub {
    master_on: Arc<AtomicBool>,
    /// Master: one ring per worker to drain (the running master holds the
    /// lock while it runs). Read by the threads (feature `dpdk`).
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) from_workers: Mutex<Vec<Consumer>>,
    /// Backup: one ring per worker to fill.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) to_workers: Mutex<Vec<Producer>>,
    ownership: OnceLock<Ownership>,
    workers: usize,
    worker_counters: Vec<Arc<SyncCounters>>,
    /// The sync threads' own counters.
    pub counters: Arc<SyncCounters>,
}

impl SyncHub {
    /// A hub for `workers` workers and their ends, one per worker, in order.
    pub fn new(workers: usize) -> (Arc<SyncHub>, Vec<WorkerSync>) {
        let master_on = Arc::new(AtomicBool::new(false));
        let (mut from, mut to, mut ends, mut wc) = (vec![], vec![], vec![], vec![]);
        for _ in 0..workers {
            let (p_out, c_out) = ring::ring(WORKER_RING);
            let (p_in, c_in) = ring::ring(WORKER_RING);
            let counters = Arc::new(SyncCounters::default());
            from.push(c_out);
            to.push(p_in);
            wc.push(Arc::clone(&counters));
            ends.push(WorkerSync {
                out: p_out,
                inbox: c_in,
                master_on: Arc::clone(&master_on),
                master: false,
                params: SyncParams::default(),
                counters,
            });
        }
        let hub = SyncHub {
            master_on,
            from_workers: Mutex::new(from),
            to_workers: Mutex::new(to),
            ownership: OnceLock::new(),
            workers,
            worker_counters: wc,
            counters: Arc::new(SyncCounters::default()),
        };
        (Arc::new(hub), ends)
    }

    /// The data path's ownership rule (set once the ports are open).
    pub fn set_ownership(&self, o: Ownership) {
        let _ = self.ownership.set(o);
    }

    /// The worker that owns the entry: the data path's rule on the client
    /// endpoint.
    pub fn owner(&self, c: &SyncConn) -> usize {
        match self.ownership.get() {
            Some(o) => o.owner(c.caddr, c.cport),
            None => Ownership::new(self.workers).owner(c.caddr, c.cport),
        }
    }

    /// Tells the workers whether to queue entries.
    pub fn set_master(&self, on: bool) {
        self.master_on.store(on, Ordering::Relaxed);
    }

    /// Every counter, summed over the workers and the threads.
    pub fn counters_named(&self) -> Vec<(&'static str, u64)> {
        let mut lists: Vec<_> = self.worker_counters.iter().map(|c| c.named()).collect();
        lists.push(self.counters.named());
        sum_named(&lists)
    }
}

#[cfg(test)]
mod tests;
