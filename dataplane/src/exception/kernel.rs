//! The exception thread: moves frames between the workers' rings and the
//! kernel interfaces, and from the kernel interfaces out of the ports.
//!
//! Why one thread of its own (not a worker lcore): writing to and reading
//! from a TAP is a syscall per frame, which no worker may make; and a
//! kernel that sends a flood through its interface must cost some thread
//! other than the workers. The thread is registered with EAL (it frees
//! and allocates mbufs of the shared pool). It shares nothing with a
//! worker but rings, each with one producer and one consumer: one per
//! worker toward the kernel, one per worker back toward the ports (the
//! worker sends those frames on its own tx queue, at most a burst per
//! turn; a dedicated tx queue per port would be cheaper still, but
//! net_tap, for one, wants as many tx queues as rx queues).
//!
//! The kernel interface is a DPDK `net_tap` device: the thread polls it
//! like a port, and the TAP driver already makes its MAC, MTU and link
//! (IFF_UP) follow what is set on the device. Everything is bounded: at
//! most a burst per ring and per interface each round; what does not fit a
//! tx queue is freed and counted. The thread sleeps when a round moved
//! nothing (briefly at first, up to a millisecond), so an idle exception
//! path does not busy-poll a core; a millisecond is nothing to SSH or BGP.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use super::netlink::Netlink;
use crate::dpdk::{lcore, Burst, DpdkError, Eal, Port, PortQueue, Ring};
use crate::net::Prefix;

/// Slots of each worker's ring toward the exception thread.
pub const RING_SIZE: u32 = 1024;

/// Empty rounds before the thread sleeps its longest.
const SPIN_ROUNDS: u32 = 64;
/// How often the ports' link state is read and mirrored.
const LINK_EVERY: Duration = Duration::from_millis(500);

/// One port's kernel interface as the thread drives it.
pub struct KernelLink {
    /// The port (frames from and to the workers carry its id).
    pub port: Arc<Port>,
    /// The TAP device: rx = what the kernel sends, tx = what it receives.
    pub tap: PortQueue,
    /// Whether the TAP's link follows the port's link state (not for
    /// net_tap ports, whose link state means nothing once their peer
    /// interface moved to another namespace).
    pub follow_link: bool,
    /// The interface's index, addresses and routes (gateway on the port),
    /// set again when its link comes back up: Linux drops IPv6 addresses
    /// and routes of an interface that goes down.
    pub ifindex: u32,
    pub addrs: Vec<Prefix>,
    pub routes: Vec<(Prefix, IpAddr)>,
    pub counters: Arc<LinkCounters>,
}

/// Counters of one kernel interface (written by the thread only).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames written to the kernel interface.
    pub to_kernel: AtomicU64,
    /// Frames for the kernel that its interface did not take.
    pub drop_to_kernel: AtomicU64,
    /// Frames the kernel sent, handed to a worker for the port.
    pub from_kernel: AtomicU64,
    /// Frames the kernel sent that found the worker's ring full.
    pub drop_from_kernel: AtomicU64,
}

fn add(c: &AtomicU64, n: usize) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }
}

impl LinkCounters {
    /// `(name, value)` of every counter, for the shutdown report.
    pub fn values(&self) -> [(&'static str, u64); 4] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("to_kernel", g(&self.to_kernel)),
            ("drop_to_kernel", g(&self.drop_to_kernel)),
            ("from_kernel", g(&self.from_kernel)),
            ("drop_from_kernel", g(&self.drop_from_kernel)),
        ]
    }
}

/// The running exception thread; [`ExceptionThread::stop`] ends it.
#[derive(Debug)]
pub struct ExceptionThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ExceptionThread {
    /// Starts the thread over `links`, draining `from_workers` (one ring
    /// per worker, this thread their only consumer) and filling
    /// `to_workers` (this thread their only producer) with what the
    /// kernels send: kernel interface `i` always through worker `i mod n`,
    /// so that its frames leave in the order the kernel sent them.
    pub fn start(
        eal: &Eal,
        links: Vec<KernelLink>,
        from_workers: Vec<Arc<Ring>>,
        to_workers: Vec<Arc<Ring>>,
    ) -> Result<ExceptionThread, DpdkError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = lcore::spawn_registered(eal, "uvs-exception", move || {
            run(links, &from_workers, &to_workers, &flag);
        })?;
        Ok(ExceptionThread {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it (frames in flight are freed).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ExceptionThread {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(
    mut links: Vec<KernelLink>,
    from_workers: &[Arc<Ring>],
    to_workers: &[Arc<Ring>],
    stop: &AtomicBool,
) {
    let mut burst = Burst::new();
    let mut to_tap: Vec<Burst> = links.iter().map(|_| Burst::new()).collect();
    let mut idle = 0u32;
    let mut link_state: Vec<Option<bool>> = vec![None; links.len()];
    let mut last_link = Instant::now() - LINK_EVERY;
    loop {
        if stop.load(Ordering::Relaxed) {
            // The workers have stopped: what they queued last is written
            // (or counted), so every excepted frame is accounted for.
            while to_kernel(&mut links, from_workers, &mut burst, &mut to_tap) > 0 {}
            break;
        }
        let mut moved = to_kernel(&mut links, from_workers, &mut burst, &mut to_tap);
        // Kernel -> port, as it is, each interface through its worker.
        for (i, l) in links.iter_mut().enumerate() {
            let n = l.tap.rx_burst(&mut burst);
            if n == 0 || to_workers.is_empty() {
                burst.clear();
                continue;
            }
            moved += n;
            let id = l.port.id();
            for m in burst.as_mut_slice() {
                m.set_port(id);
            }
            let sent = to_workers[i % to_workers.len()].enqueue(&mut burst);
            add(&l.counters.from_kernel, sent);
            add(&l.counters.drop_from_kernel, burst.len());
            burst.clear();
        }
        if last_link.elapsed() >= LINK_EVERY {
            last_link = Instant::now();
            mirror_links(&links, &mut link_state);
        }
        if moved == 0 {
            idle = idle.saturating_add(1);
            std::thread::sleep(if idle < SPIN_ROUNDS {
                Duration::from_micros(20)
            } else {
                Duration::from_millis(1)
            });
        } else {
            idle = 0;
        }
    }
}

/// Workers -> kernel: one burst from each ring, sorted by port, written.
/// Returns how many frames it took.
fn to_kernel(
    links: &mut [KernelLink],
    from_workers: &[Arc<Ring>],
    burst: &mut Burst,
    to_tap: &mut [Burst],
) -> usize {
    let mut moved = 0;
    for ring in from_workers {
        moved += ring.dequeue(burst);
        for m in burst.drain() {
            let Some(i) = links.iter().position(|l| l.port.id() == m.port()) else {
                continue; // No kernel interface (cannot happen): freed.
            };
            if let Err(m) = to_tap[i].push(m) {
                flush_tap(&mut links[i], &mut to_tap[i]);
                if to_tap[i].push(m).is_err() {
                    add(&links[i].counters.drop_to_kernel, 1);
                }
            }
        }
    }
    for (l, b) in links.iter_mut().zip(to_tap.iter_mut()) {
        flush_tap(l, b);
    }
    moved
}

/// Writes `b` to the kernel interface; what it does not take is counted
/// and freed.
fn flush_tap(l: &mut KernelLink, b: &mut Burst) {
    if b.is_empty() {
        return;
    }
    let sent = l.tap.tx_burst(b);
    add(&l.counters.to_kernel, sent);
    add(&l.counters.drop_to_kernel, b.len());
    b.clear();
}

/// Sets each kernel interface's link to its port's when the port's link
/// changed since last read (so an operator's `ip link set uvs0 down` holds
/// until the port's link itself changes).
fn mirror_links(links: &[KernelLink], seen: &mut [Option<bool>]) {
    for (l, last) in links.iter().zip(seen.iter_mut()) {
        if !l.follow_link {
            continue;
        }
        let up = l.port.link_up();
        if *last != Some(up) {
            if last.is_some() {
                l.tap.port().set_link(up);
                if up {
                    restore(l);
                }
            }
            *last = Some(up);
        }
    }
}

/// Sets the interface's addresses and routes again (best effort: an
/// operator may have changed them on purpose, and nothing here may stop
/// the thread).
fn restore(l: &KernelLink) {
    let Ok(mut nl) = Netlink::open() else { return };
    for p in &l.addrs {
        let _ = nl.add_address(l.ifindex, p);
    }
    for (to, via) in &l.routes {
        let _ = nl.add_route(l.ifindex, to, *via);
    }
}

/// Opens the kernel interface `iface` of `port` as a net_tap device
/// (`net_tap_uvsk<index>`) with the port's MAC and MTU, up.
pub fn open_tap(
    eal: &Eal,
    port: &Port,
    iface: &str,
    index: usize,
    pool: Arc<crate::dpdk::Mempool>,
) -> Result<Arc<Port>, DpdkError> {
    let conf = crate::dpdk::PortConf {
        name: format!("{} kernel {iface}", port.name()),
        device: format!("net_tap_uvsk{index},iface={iface}"),
        rx_queues: 1,
        tx_queues: 1,
        mac: Some(port.mac()),
        descriptors: 512,
        // Port::open gives a TAP's kernel side a MAC of its own (right for
        // a port, whose kernel side is the peer). Here the kernel side is
        // the director itself: it must carry the port's MAC, or what it
        // sends leaves the port with another source address (in net_tap
        // mode, the port's own peer's), and the answers go there instead
        // of to uvsd.
        tap_shares_mac: true,
    };
    let tap = Arc::new(Port::open(eal, &conf, pool)?);
    tap.set_mtu(port.mtu())?;
    Ok(tap)
}
