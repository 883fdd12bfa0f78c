//! The poll-mode worker: one per EAL lcore, run to completion.
//!
//! Loop: for each of its rx queues, receive a burst into a preallocated
//! array, hand each frame to the L2/L3 [`Stack`] (which answers ARP/NDP/ICMP
//! and passes other IP traffic to the [`Stage`], where the load balancer
//! plugs in), collect what is to be sent in per-port tx bursts, flush them,
//! then drain what the other workers handed over and run the timers.
//! Nothing here allocates, locks, logs or makes a syscall; time is the TSC
//! converted to milliseconds once per turn.
//!
//! Each worker owns tx queue `index` of every port, so no tx queue is
//! shared, and the rx queues it was given. It stops when the shared stop
//! flag is set, between turns.
//!
//! Workers talk through a [`Mesh`] of single-producer single-consumer
//! rings, one per ordered pair (DESIGN.md: "per-pair rte_ring"): worker `a`
//! is the only producer of ring `a -> b` and `b` its only consumer, so
//! neither side pays for the compare-and-swap a shared multi-producer ring
//! needs, and one busy sender cannot starve another's hand-overs. Two kinds
//! of packets travel there: packets whose connection the receiver owns but
//! that arrived on the sender's queue (hand-over, in per-owner bursts), and
//! copies of neighbour answers (with RSS, the answer to one worker's ARP
//! request may arrive on another worker's queue; neighbour tables are per
//! worker).
//!
//! Between two turns (never inside a burst) [`Worker::run`] passes a
//! quiescent point ([`dpdk::Quiescence`]), so that a driver tearing a
//! port's memory down from EAL's interrupt thread can wait until no burst
//! is in flight, and picks up routes a reload published ([`L3Cell`]).
//!
//! Frames for a port's kernel interface (the exception path,
//! [`crate::exception`]) go into one more single-producer ring, drained by
//! the exception thread; the worker never waits for it (full: counted).
//! What the kernels send comes back through another ring, at most a burst
//! per turn, and leaves on the worker's tx queue of the port.
//!
//! [`Worker::poll`] is one turn of the loop, so that a benchmark can drive
//! several workers (and a generator) from one thread (`uvs-loop` in
//! bench/pktgen); [`Worker::run`] polls until stopped.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::buf::PacketBuf;
use crate::dpdk::{self, Burst, DpdkError, Eal, Mbuf, Mempool, PortQueue, Ring};
use crate::net::neighbor::State;
use crate::net::{front, Counter, FloatingCell, Io, L3Cell, NetCounters, Stack, Stage};
use crate::wire::ethernet::MacAddr;
use crate::wire::{parse_packet, parse_packet_into, PacketMeta, ParseError};

/// What a worker leaves behind when it stops (read by the daemon).
#[derive(Debug, Default, Clone)]
pub struct WorkerReport {
    /// Neighbour entries: address, port id, MAC, whether static.
    pub neighbors: Vec<(IpAddr, u16, MacAddr, bool)>,
}

/// At most this many ports per worker (tx bursts are preallocated).
pub const MAX_PORTS: usize = 8;
/// At most this many workers exchange hand-overs.
pub const MAX_WORKERS: usize = 16;
/// Slots of each ring between two workers.
pub const MESH_RING_SIZE: u32 = 1024;

/// One worker's ends of the mesh.
#[derive(Debug, Default)]
pub struct Links {
    /// `to[w]`: the ring this worker alone fills for worker `w` (None for
    /// itself).
    pub to: Vec<Option<Arc<Ring>>>,
    /// The rings the other workers fill for this one (this worker alone
    /// drains them).
    pub from: Vec<Arc<Ring>>,
}

/// The single-producer single-consumer rings between every ordered pair
/// of `n` workers.
#[derive(Debug)]
pub struct Mesh {
    /// `rings[a][b]`: from worker `a` to worker `b` (None when `a == b`).
    rings: Vec<Vec<Option<Arc<Ring>>>>,
}

impl Mesh {
    /// Creates `n * (n - 1)` rings of `size` slots named `{prefix}{a}_{b}`.
    pub fn new(eal: &Eal, prefix: &str, n: usize, size: u32) -> Result<Mesh, DpdkError> {
        let mut rings = Vec::with_capacity(n);
        for a in 0..n {
            let mut row = Vec::with_capacity(n);
            for b in 0..n {
                row.push(if a == b {
                    None
                } else {
                    Some(Arc::new(Ring::new(
                        eal,
                        &format!("{prefix}{a}_{b}"),
                        size,
                        false,
                    )?))
                });
            }
            rings.push(row);
        }
        Ok(Mesh { rings })
    }

    /// Worker `w`'s ends.
    pub fn links(&self, w: usize) -> Links {
        Links {
            to: self.rings.get(w).cloned().unwrap_or_default(),
            from: self
                .rings
                .iter()
                .filter_map(|row| row.get(w).and_then(|r| r.clone()))
                .collect(),
        }
    }
}

/// What a worker is built from.
pub struct WorkerParts<S: Stage<Mbuf>> {
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
    pub links: Links,
    /// The rings to and from the exception thread (None when no port has
    /// a kernel interface): this worker alone fills the first with frames
    /// for the ports' kernel interfaces, and alone drains the second, the
    /// kernels' frames for the ports, which it sends on its tx queues.
    pub kernel: (Option<Arc<Ring>>, Option<Arc<Ring>>),
}

/// One worker's resources and its preallocated bursts.
pub struct Worker<S: Stage<Mbuf>> {
    /// First, so that anything left in it is freed while the pool and the
    /// queues are still held.
    bursts: Box<Bursts>,
    index: usize,
    queues: Vec<PortQueue>,
    stack: Stack<Mbuf>,
    stage: S,
    pool: Arc<Mempool>,
    stop: Arc<AtomicBool>,
    counters: Arc<NetCounters>,
    report: Arc<Mutex<Option<WorkerReport>>>,
    links: Links,
    to_kernel: Option<Arc<Ring>>,
    from_kernel: Option<Arc<Ring>>,
    per_ms: u64,
    /// Routes published on reload, and the generation last picked up.
    l3: Option<(Arc<L3Cell>, u64)>,
    /// Floating addresses held (VRRP), and the generation last picked up.
    floating: Option<(Arc<FloatingCell>, u64)>,
}

/// The bursts a turn fills, allocated once with the worker.
struct Bursts {
    rx: Burst,
    out: Outgoing,
}

/// What a turn sends: a tx burst per port, a hand-over burst per worker,
/// and the frames for the kernel interfaces.
struct Outgoing {
    tx: [Burst; MAX_PORTS],
    handoff: [Burst; MAX_WORKERS],
    kernel: Burst,
}

impl<S: Stage<Mbuf>> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .finish()
    }
}

/// The stack's view of a worker's tx side and pool. `queues` has at most
/// [`MAX_PORTS`] entries and `to` at most [`MAX_WORKERS`] (see
/// [`Worker::new`]), so they index `out`'s arrays.
struct WorkerIo<'a> {
    queues: &'a mut [PortQueue],
    out: &'a mut Outgoing,
    pool: &'a Mempool,
    counters: &'a NetCounters,
    /// The rings to the other workers, by worker index.
    to: &'a [Option<Arc<Ring>>],
    /// Whether neighbour answers are copied to the others (not for frames
    /// that came from them: they were shared already).
    share: bool,
    /// The ring to the exception thread.
    to_kernel: Option<&'a Ring>,
}

impl WorkerIo<'_> {
    /// Enqueues the hand-overs gathered for `w`; what does not fit is
    /// counted and freed.
    fn flush_handoff(&mut self, w: usize) {
        let b = &mut self.out.handoff[w];
        if b.is_empty() {
            return;
        }
        if let Some(Some(ring)) = self.to.get(w) {
            ring.enqueue(b);
        }
        if !b.is_empty() {
            self.counters.add(Counter::DropHandOverFull, b.len() as u64);
            b.clear();
        }
    }

    /// Enqueues the frames gathered for the kernel interfaces; what does
    /// not fit is counted and freed (never waited for: a flood toward the
    /// kernel costs the worker no more than this).
    fn flush_kernel(&mut self) {
        let b = &mut self.out.kernel;
        if b.is_empty() {
            return;
        }
        if let Some(ring) = self.to_kernel {
            ring.enqueue(b);
        }
        if !b.is_empty() {
            self.counters.add(Counter::DropKernelFull, b.len() as u64);
            b.clear();
        }
    }

    fn flush(&mut self) {
        self.flush_kernel();
        for w in 0..self.to.len() {
            self.flush_handoff(w);
        }
        for (q, b) in self.queues.iter_mut().zip(self.out.tx.iter_mut()) {
            if !b.is_empty() {
                send(q, b, self.counters);
                if !b.is_empty() {
                    self.counters.add(Counter::DropTxFull, b.len() as u64);
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
        if !self.share {
            return;
        }
        for ring in self.to.iter().flatten() {
            let Some(mut m) = self.pool.alloc() else {
                self.counters.inc(Counter::DropNoBuffer);
                return;
            };
            if !m.append(frame.len()) {
                continue;
            }
            m.data_mut().copy_from_slice(frame);
            m.set_port(port);
            let mut one = Burst::new();
            if one.push(m).is_ok() {
                ring.enqueue(&mut one);
                if one.is_empty() {
                    self.counters.inc(Counter::NeighborShared);
                }
            }
            // Anything not enqueued (ring full) is freed with `one`: a
            // copy, the frame itself went its way.
        }
    }

    #[inline]
    fn hand_over(&mut self, worker: usize, port: u16, mut buf: Mbuf) {
        if !matches!(self.to.get(worker), Some(Some(_))) {
            // Ownership never names this worker or a missing one; dropping
            // beats looping the packet.
            self.counters.inc(Counter::DropHandOverFull);
            return;
        }
        buf.set_port(port);
        if let Err(buf) = self.out.handoff[worker].push(buf) {
            self.flush_handoff(worker);
            if self.out.handoff[worker].push(buf).is_err() {
                self.counters.inc(Counter::DropHandOverFull);
            }
        }
    }

    fn except(&mut self, port: u16, mut buf: Mbuf) {
        buf.set_port(port);
        if let Err(buf) = self.out.kernel.push(buf) {
            self.flush_kernel();
            if self.out.kernel.push(buf).is_err() {
                self.counters.inc(Counter::DropKernelFull);
            }
        }
    }

    /// Always inlined: every forwarded packet comes through here, and the
    /// common case (a burst with room) is a compare and a store; a full
    /// burst is sent out of line ([`WorkerIo::tx_full`]).
    #[inline(always)]
    fn tx(&mut self, port: u16, buf: Mbuf) {
        let Some(i) = self.queues.iter().position(|q| q.port_id() == port) else {
            self.counters.inc(Counter::DropNoRoute);
            return;
        };
        if let Err(buf) = self.out.tx[i].push(buf) {
            self.tx_full(i, buf);
        }
    }
}

impl WorkerIo<'_> {
    /// [`Io::tx`] when queue `i`'s burst is full: sends it, then queues
    /// `buf` (or counts `drop_tx_full`).
    #[inline(never)]
    fn tx_full(&mut self, i: usize, buf: Mbuf) {
        send(&mut self.queues[i], &mut self.out.tx[i], self.counters);
        if let Err(buf) = self.out.tx[i].push(buf) {
            self.counters.inc(Counter::DropTxFull);
            drop(buf);
        }
    }
}

/// Hands `b` to tx queue `q`, counting as `tx` what the queue took (what
/// it refused stays in `b`, for the caller to retry or count as
/// `drop_tx_full`): a frame is counted once, as sent or as dropped.
#[inline]
fn send(q: &mut PortQueue, b: &mut Burst, counters: &NetCounters) {
    let n = q.tx_burst(b);
    counters.add(Counter::Tx, n as u64);
}

/// Feeds a burst to the stack: parsed once up front for the stage's
/// batched lookups when the stage says they pay (large tables), else frame
/// by frame. `port` is the burst's rx port, or `None` for frames from the
/// mesh, which carry the port they arrived on.
#[inline]
fn input_burst<S: Stage<Mbuf>>(
    stack: &mut Stack<Mbuf>,
    stage: &mut S,
    burst: &mut Burst,
    port: Option<u16>,
    now: u64,
    io: &mut WorkerIo<'_>,
) {
    // The fast lane ([`Stack::input_lane`]) while the stage allows it,
    // decided once per burst.
    if stage.lane_on() {
        if stage.lane_fronted() {
            return input_burst_fronted(stack, stage, burst, port, now, io);
        }
        return lane_loop::<_, { front::NONE }>(stack, stage, burst, port, now, io);
    }
    if stage.warms() {
        return warmed_loop::<_, GENERAL>(stack, stage, burst, port, now, io);
    }
    for m in burst.drain() {
        let p = port.unwrap_or_else(|| m.port());
        stack.input(p, m, now, io, stage);
    }
}

/// Parses the burst's frames into `metas` and lets the stage start warming
/// its lookups for them (prefetching the connection table's buckets; the
/// loop that follows carries it on with [`Stage::warm_next`]), for a
/// stage that says this pays ([`Stage::warms`]: large tables).
#[inline(always)]
fn parse_ahead<S: Stage<Mbuf>>(
    stage: &mut S,
    burst: &mut Burst,
    metas: &mut [Result<PacketMeta, ParseError>; dpdk::BURST_SIZE],
) {
    let n = burst.len().min(dpdk::BURST_SIZE);
    for (meta, m) in metas.iter_mut().zip(burst.as_mut_slice().iter()) {
        parse_packet_into(m.data(), meta);
    }
    stage.warm(&metas[..n]);
}

/// [`input_burst`] while the stage's lane step has steps in front of it
/// ([`Stage::lane_fronted`]): with source NAT, every frame to the stack's
/// [`front::SNAT`] entry; with more than one worker ([`Stage::lane_owned`]),
/// every frame from a port to [`front::OWNER`]'s, its owner first, and
/// every frame from the mesh to [`front::HANDED_IN`]'s (the same, without
/// the inbound checks the sender made). A function of its own, called once per burst:
/// with this loop in `input_burst` the compiler took the lane's inbound
/// checks out of line there, and the lane without source NAT paid about
/// 27 instructions per packet (established UDP NAT, measured).
#[inline(never)]
fn input_burst_fronted<S: Stage<Mbuf>>(
    stack: &mut Stack<Mbuf>,
    stage: &mut S,
    burst: &mut Burst,
    port: Option<u16>,
    now: u64,
    io: &mut WorkerIo<'_>,
) {
    if stage.lane_owned() {
        if port.is_some() {
            lane_loop::<_, { front::OWNER }>(stack, stage, burst, port, now, io)
        } else {
            lane_loop::<_, { front::HANDED_IN }>(stack, stage, burst, port, now, io)
        }
    } else {
        lane_loop::<_, { front::SNAT }>(stack, stage, burst, port, now, io)
    }
}

/// The stack's lane entry `FRONT` ([`Stack::input_lane_front`]) for every
/// frame of the burst (parsed ahead when the stage warms). The entry is
/// named by a constant, not passed as a function: passed, it stayed behind
/// an `Fn::call` shim the compiler kept out of line once the two-worker
/// entries joined (source NAT 968 -> 1013 instructions per packet).
#[inline(always)]
fn lane_loop<S: Stage<Mbuf>, const FRONT: u8>(
    stack: &mut Stack<Mbuf>,
    stage: &mut S,
    burst: &mut Burst,
    port: Option<u16>,
    now: u64,
    io: &mut WorkerIo<'_>,
) {
    if stage.warms() {
        return warmed_loop::<_, FRONT>(stack, stage, burst, port, now, io);
    }
    for m in burst.drain() {
        let p = port.unwrap_or_else(|| m.port());
        let meta = parse_packet(m.data());
        stack.input_lane_front::<FRONT>(p, m, &meta, now, io, stage);
    }
}

/// [`warmed_loop`]'s `FRONT` for the general path ([`Stack::input_parsed`]
/// for every frame) rather than one of the lane's entries.
const GENERAL: u8 = u8::MAX;

/// The loop of [`input_burst`] (`FRONT` = [`GENERAL`]) or of
/// [`lane_loop`] (a [`front`] entry) while the stage warms its lookups
/// (large tables): the burst parsed ahead, the warm-up carried on before
/// each packet ([`Stage::warm_next`]). Out of line, called once per
/// burst: in line, its loop changed the code of the loop beside it,
/// which small tables take (established UDP NAT at 1 k flows 686.8 ->
/// 696.0 instructions per packet, DR 619.8 -> 628.8).
#[inline(never)]
fn warmed_loop<S: Stage<Mbuf>, const FRONT: u8>(
    stack: &mut Stack<Mbuf>,
    stage: &mut S,
    burst: &mut Burst,
    port: Option<u16>,
    now: u64,
    io: &mut WorkerIo<'_>,
) {
    let mut metas = [Err(ParseError::Truncated); dpdk::BURST_SIZE];
    parse_ahead(stage, burst, &mut metas);
    for (i, (m, meta)) in burst.drain().zip(metas.iter()).enumerate() {
        stage.warm_next(i);
        let p = port.unwrap_or_else(|| m.port());
        if FRONT == GENERAL {
            stack.input_parsed(p, m, meta, now, io, stage);
        } else {
            stack.input_lane_front::<FRONT>(p, m, meta, now, io, stage);
        }
    }
}

impl<S: Stage<Mbuf>> Worker<S> {
    /// A worker ready to poll (at most [`MAX_PORTS`] ports and
    /// [`MAX_WORKERS`] workers are used).
    pub fn new(p: WorkerParts<S>) -> Self {
        let mut queues = p.queues;
        queues.truncate(MAX_PORTS);
        let mut links = p.links;
        links.to.truncate(MAX_WORKERS);
        Worker {
            index: p.index,
            queues,
            stack: p.stack,
            stage: p.stage,
            pool: p.pool,
            stop: p.stop,
            counters: p.counters,
            report: p.report,
            links,
            to_kernel: p.kernel.0,
            from_kernel: p.kernel.1,
            bursts: Box::new(Bursts {
                rx: Burst::new(),
                out: Outgoing {
                    tx: std::array::from_fn(|_| Burst::new()),
                    handoff: std::array::from_fn(|_| Burst::new()),
                    kernel: Burst::new(),
                },
            }),
            per_ms: (dpdk::tsc_hz() / 1000).max(1),
            l3: None,
            floating: None,
        }
    }

    /// Makes the worker follow the floating addresses published in `cell`
    /// (see [`crate::net::floating`]); the first worker announces what
    /// the director takes.
    pub fn with_floating_cell(mut self, cell: Arc<FloatingCell>) -> Self {
        // Never seen: the first turn applies what is published.
        let g = cell.generation().wrapping_sub(1);
        self.floating = Some((cell, g));
        self
    }

    /// Makes the worker pick up the routes and static neighbours published
    /// in `cell` (the daemon's reload).
    pub fn with_l3_cell(mut self, cell: Arc<L3Cell>) -> Self {
        let g = cell.generation();
        self.l3 = Some((cell, g));
        self
    }

    /// Applies routes published since the last turn.
    fn pick_up_routes(&mut self) {
        let Some((cell, seen)) = &mut self.l3 else {
            return;
        };
        let g = cell.generation();
        if g == *seen {
            return;
        }
        *seen = g;
        let l3 = cell.load();
        self.stack.reload(l3.routes.clone(), &l3.neighbors);
        self.stage.routes_changed();
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// One turn: every rx queue once, then the rings from the other
    /// workers, then the timers. Returns how many packets it took in.
    /// Never inlined: one call per turn costs nothing, and profiles and
    /// callgrind (bench/scripts/loop-instructions.sh) can then name it.
    #[inline(never)]
    pub fn poll(&mut self) -> usize {
        let start = dpdk::tsc_cycles();
        let now = start / self.per_ms;
        let b = &mut *self.bursts;
        let mut taken = 0;
        // One view of the tx side for the whole turn; rx goes through it
        // too, since it holds the queues.
        let mut io = WorkerIo {
            queues: &mut self.queues,
            out: &mut b.out,
            pool: &self.pool,
            counters: &self.counters,
            to: &self.links.to,
            share: true,
            to_kernel: self.to_kernel.as_deref(),
        };
        for qi in 0..io.queues.len() {
            if io.queues[qi].rx_burst(&mut b.rx) == 0 {
                continue;
            }
            taken += b.rx.len();
            let port = io.queues[qi].port_id();
            input_burst(
                &mut self.stack,
                &mut self.stage,
                &mut b.rx,
                Some(port),
                now,
                &mut io,
            );
            self.stage.end_burst(now);
            io.flush();
        }
        // Frames from the other workers were shared by them already.
        io.share = false;
        for ring in &self.links.from {
            let n = ring.dequeue(&mut b.rx);
            if n == 0 {
                continue;
            }
            taken += n;
            self.counters.add(Counter::HandedIn, n as u64);
            // Handed-over packets get the batched lookup too: at large
            // tables a burst without it waits on every miss in turn.
            input_burst(
                &mut self.stack,
                &mut self.stage,
                &mut b.rx,
                None,
                now,
                &mut io,
            );
            self.stage.end_burst(now);
        }
        // What the kernels send: a burst at most per turn, as it is, so a
        // flooding kernel cannot take more of a worker than that.
        if let Some(ring) = &self.from_kernel {
            let n = ring.dequeue(&mut b.rx);
            if n > 0 {
                self.counters.add(Counter::FromKernel, n as u64);
                for m in b.rx.drain() {
                    io.tx(m.port(), m);
                }
            }
        }
        if let Some((cell, seen)) = &mut self.floating {
            let g = cell.generation();
            if g != *seen {
                *seen = g;
                let held = cell.load();
                self.stack.set_held(&held, self.index == 0, &mut io);
            }
        }
        self.stack.tick(now, &mut io);
        io.flush();
        if self.stage.tick(now) {
            self.stack.set_service_addrs(self.stage.service_addrs());
        }
        self.stage.acknowledge();
        // The turn's time, once per turn: busy or not.
        let spent = dpdk::tsc_cycles().wrapping_sub(start);
        self.counters.add(Counter::PollCycles, spent);
        if taken > 0 {
            self.counters.add(Counter::BusyCycles, spent);
            self.counters.inc(Counter::BusyTurns);
        }
        taken
    }

    /// Polls until the stop flag is set, then leaves its report. Returns 0.
    pub fn run(mut self) -> i32 {
        let quiet = dpdk::Quiescence::enter(self.index);
        while !self.stop.load(Ordering::Relaxed) {
            quiet.passed();
            self.pick_up_routes();
            self.poll();
        }
        drop(quiet);
        self.finish();
        0
    }

    /// Leaves the worker's report (neighbour entries) for the daemon.
    pub fn finish(&mut self) {
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
    }
}

// Mbuf must satisfy the engine's buffer trait (checked at compile time).
const _: fn() = || {
    fn is_buf<B: PacketBuf>() {}
    is_buf::<Mbuf>();
};
