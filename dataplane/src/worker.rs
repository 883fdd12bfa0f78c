//! The poll-mode worker: one per EAL lcore, run to completion.
//!
//! Loop: for each of its rx queues, receive a burst into a stack array,
//! hand each frame to the L2/L3 [`Stack`] (which answers ARP/NDP/ICMP and
//! passes other IP traffic to the [`Stage`], where the load balancer plugs
//! in), collect what is to be sent in per-port tx bursts, flush them, then
//! run the stack's timers. Nothing here allocates, locks, logs or makes a
//! syscall; time is the TSC converted to milliseconds once per burst.
//!
//! Each worker owns tx queue `index` of every port, so no tx queue is
//! shared, and the rx queues it was given. It stops when the shared stop
//! flag is set, between bursts. Its neighbour table is its own; since with
//! RSS the answer to one worker's ARP request or solicitation may arrive on
//! another worker's queue, a worker copies every neighbour answer it
//! receives into its peers' inbox rings (mbufs from the pool, no heap), and
//! each worker drains its inbox with its rx queues.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::buf::PacketBuf;
use crate::dpdk::{self, Burst, Mbuf, Mempool, PortQueue, Ring};
use crate::net::neighbor::State;
use crate::net::{Io, NetCounters, Stack, Stage};
use crate::wire::ethernet::MacAddr;

/// What a worker leaves behind when it stops (read by the daemon).
#[derive(Debug, Default, Clone)]
pub struct WorkerReport {
    /// Neighbour entries: address, port id, MAC, whether static.
    pub neighbors: Vec<(IpAddr, u16, MacAddr, bool)>,
}

/// One worker's resources.
pub struct Worker<S: Stage<Mbuf>> {
    pub index: usize,
    /// One entry per port: tx queue `index`, plus this worker's rx queue on
    /// that port if it has one.
    pub queues: Vec<PortQueue>,
    pub stack: Stack<Mbuf>,
    pub stage: S,
    pub pool: Arc<Mempool>,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<NetCounters>,
    pub report: Arc<Mutex<Option<WorkerReport>>>,
    /// Frames other workers share with this one (neighbour answers).
    pub inbox: Arc<Ring>,
    /// The other workers' inboxes.
    pub peers: Vec<Arc<Ring>>,
}

impl<S: Stage<Mbuf>> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .finish()
    }
}

/// The stack's view of a worker's tx side and pool.
struct WorkerIo<'a> {
    queues: &'a mut [PortQueue],
    tx: &'a mut [Burst],
    pool: &'a Mempool,
    counters: &'a NetCounters,
    /// Where to copy neighbour answers (empty for frames from the inbox).
    peers: &'a [Arc<Ring>],
}

impl WorkerIo<'_> {
    fn flush(&mut self) {
        for (q, b) in self.queues.iter_mut().zip(self.tx.iter_mut()) {
            if !b.is_empty() {
                q.tx_burst(b);
                if !b.is_empty() {
                    self.counters
                        .add(crate::net::Counter::DropTxFull, b.len() as u64);
                    b.clear();
                }
            }
        }
    }
}

impl Io<Mbuf> for WorkerIo<'_> {
    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }

    fn share(&mut self, port: u16, frame: &[u8]) {
        for peer in self.peers {
            let Some(mut m) = self.pool.alloc() else {
                self.counters.inc(crate::net::Counter::DropNoBuffer);
                return;
            };
            if !m.append(frame.len()) {
                continue;
            }
            m.data_mut().copy_from_slice(frame);
            m.set_port(port);
            let mut one = Burst::new();
            if one.push(m).is_ok() {
                peer.enqueue(&mut one);
            }
            // Anything not enqueued (inbox full) is freed with `one`.
        }
    }

    #[inline]
    fn tx(&mut self, port: u16, buf: Mbuf) {
        let Some(i) = self.queues.iter().position(|q| q.port_id() == port) else {
            self.counters.inc(crate::net::Counter::DropNoRoute);
            return;
        };
        if let Err(buf) = self.tx[i].push(buf) {
            self.queues[i].tx_burst(&mut self.tx[i]);
            if let Err(buf) = self.tx[i].push(buf) {
                self.counters.inc(crate::net::Counter::DropTxFull);
                drop(buf);
            }
        }
    }
}

/// At most this many ports per worker (tx bursts live on the stack).
pub const MAX_PORTS: usize = 8;

impl<S: Stage<Mbuf>> Worker<S> {
    /// Polls until the stop flag is set. Returns 0.
    pub fn run(mut self) -> i32 {
        let hz = dpdk::tsc_hz().max(1000);
        let per_ms = hz / 1000;
        let mut tx: [Burst; MAX_PORTS] = std::array::from_fn(|_| Burst::new());
        let nports = self.queues.len().min(MAX_PORTS);
        let mut rx = Burst::new();
        while !self.stop.load(Ordering::Relaxed) {
            let now = dpdk::tsc_cycles() / per_ms;
            for qi in 0..nports {
                if self.queues[qi].rx_burst(&mut rx) == 0 {
                    continue;
                }
                let port = self.queues[qi].port_id();
                let mut io = WorkerIo {
                    queues: &mut self.queues[..nports],
                    tx: &mut tx[..nports],
                    pool: &self.pool,
                    counters: &self.counters,
                    peers: &self.peers,
                };
                for m in rx.drain() {
                    self.stack.input(port, m, now, &mut io, &mut self.stage);
                }
                self.stage.end_burst(now);
                io.flush();
            }
            let mut io = WorkerIo {
                queues: &mut self.queues[..nports],
                tx: &mut tx[..nports],
                pool: &self.pool,
                counters: &self.counters,
                peers: &[],
            };
            if self.inbox.dequeue(&mut rx) > 0 {
                for m in rx.drain() {
                    let port = m.port();
                    self.stack.input(port, m, now, &mut io, &mut self.stage);
                }
            }
            self.stack.tick(now, &mut io);
            io.flush();
            if self.stage.tick(now) {
                self.stack.set_service_addrs(self.stage.service_addrs());
            }
        }
        let neighbors = self
            .stack
            .neighbors()
            .iter()
            .filter(|(_, n)| !matches!(n.state, State::Incomplete { .. }))
            .map(|(ip, n)| (*ip, n.port, n.mac, n.state == State::Static))
            .collect();
        if let Ok(mut r) = self.report.lock() {
            *r = Some(WorkerReport { neighbors });
        }
        0
    }
}

// Mbuf must satisfy the engine's buffer trait (checked at compile time).
const _: fn() = || {
    fn is_buf<B: PacketBuf>() {}
    is_buf::<Mbuf>();
};
