//! The load balancer as a worker's [`Stage`], and what it shares with the
//! control thread.
//!
//! Sharing without locks on the packet path:
//! * [`ConfigCell`]: the control thread publishes each new configuration
//!   snapshot with one atomic pointer swap (`arc-swap`); a worker compares
//!   the published generation with its own on every loop turn and takes the
//!   new snapshot between bursts. A worker therefore sees the old or the new
//!   configuration, never a mix. Taking it costs the worker the same at any
//!   table size (see [`Lb::set_snapshot`]), and so does letting the old one
//!   go: the cell keeps every snapshot it replaced until no worker holds it
//!   and frees it on the control thread ([`ConfigCell::reclaim`]), so a
//!   worker never pays for freeing a large table.
//! * [`ConnDump`]: `ipvsadm -L -c` asks each worker for its connection rows
//!   through a request counter; the worker answers between bursts. The mutex
//!   around the rows is only ever taken on that control path.
//! * Counters are per worker ([`LbCounters`], statistics slots).

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::filter::Filtered;
use super::{Action, Egress, Lb};
use crate::buf::PacketBuf;
use crate::model::{ConnEntry, Snapshot};
use crate::net::{Interface, RouteTable, Stage, StageVerdict};
use crate::rss::Ownership;
use crate::wire::{PacketMeta, ParseError};

/// The configuration the control thread publishes and workers pick up.
#[derive(Debug)]
pub struct ConfigCell {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Replaced snapshots, until no worker holds them (control side only).
    retired: Mutex<Vec<Arc<Snapshot>>>,
}

impl Default for ConfigCell {
    fn default() -> Self {
        ConfigCell {
            current: ArcSwap::from_pointee(Snapshot::default()),
            generation: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
        }
    }
}

impl ConfigCell {
    /// Publishes `snap` to every worker.
    pub fn publish(&self, snap: Arc<Snapshot>) {
        let g = snap.generation;
        let old = self.current.swap(snap);
        self.generation.store(g, Ordering::Release);
        self.reclaim();
        match self.retired.lock() {
            Ok(mut r) => r.push(old),
            Err(p) => p.into_inner().push(old),
        }
    }

    /// Frees the replaced snapshots no worker holds any more (the control
    /// thread calls it before each change, so that a destination only an
    /// old snapshot held counts as unreferenced, as it did before).
    pub fn reclaim(&self) {
        let mut r = match self.retired.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        r.retain(|s| Arc::strong_count(s) > 1);
    }

    /// The generation last published (one atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The snapshot last published.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// A worker's answer channel for connection listings.
///
/// The worker answers a piece at a time: [`DUMP_PIECE`] entry slots per
/// loop turn, so a listing of a million connections never holds it for
/// more than one piece, and its packets go on between pieces. The rows of
/// one listing are therefore not one instant's (as the kernel's are not:
/// it walks its hash table bucket by bucket).
#[derive(Debug, Default)]
pub struct ConnDump {
    requested: AtomicU64,
    answered: AtomicU64,
    /// Worker side: the next slot of the listing under way.
    cursor: AtomicUsize,
    /// The pieces listed so far (a worker never grows one big vector).
    pieces: Mutex<Vec<Vec<ConnEntry>>>,
}

/// Connection-table slots a worker lists per loop turn.
pub const DUMP_PIECE: usize = 1024;

impl ConnDump {
    /// Control side: asks the worker for its rows and waits for them,
    /// as long as the worker keeps answering pieces; `None` if it answered
    /// nothing for `timeout` (stopped).
    pub fn collect(&self, timeout: Duration) -> Option<Vec<ConnEntry>> {
        let want = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut progress = Instant::now();
        let mut seen = 0;
        while self.answered.load(Ordering::Acquire) < want {
            let at = self.cursor.load(Ordering::Relaxed);
            if at != seen {
                seen = at;
                progress = Instant::now();
            } else if progress.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let pieces = match self.pieces.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        Some(pieces.into_iter().flatten().collect())
    }

    /// Worker side: lists one more piece of a pending request, if any
    /// (between bursts).
    fn serve(&self, lb: &Lb, now: u64) {
        let req = self.requested.load(Ordering::Acquire);
        if req == self.answered.load(Ordering::Relaxed) {
            return;
        }
        let start = self.cursor.load(Ordering::Relaxed);
        let mut rows = Vec::new();
        let next = lb.connections_piece(start, DUMP_PIECE, now, &mut rows);
        let mut pieces = match self.pieces.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if start == 0 {
            pieces.clear();
        }
        if !rows.is_empty() {
            pieces.push(rows);
        }
        drop(pieces);
        match next {
            Some(n) => self.cursor.store(n, Ordering::Relaxed),
            None => {
                self.cursor.store(0, Ordering::Relaxed);
                self.answered.store(req, Ordering::Release);
            }
        }
    }
}

/// Routing facts for rewrites, from the port configuration.
///
/// Tunnel destinations need the director's source address toward each
/// real server on every packet: a route lookup, the port's interface and
/// its addresses. Addresses never change while the daemon runs and routes
/// only on a reload, which replaces the whole value, so each worker's copy
/// remembers recent answers in a small direct-mapped cache that never
/// needs invalidating.
#[derive(Debug, Clone)]
pub struct PortRoutes {
    routes: RouteTable,
    interfaces: Vec<Interface>,
    /// IP MTU of every port.
    mtu: u16,
    cache: [Cell<Option<RouteHit>>; ROUTE_CACHE],
}

/// A remembered answer of [`PortRoutes::route`].
#[derive(Debug, Clone, Copy)]
struct RouteHit {
    dst: IpAddr,
    src: IpAddr,
}

const ROUTE_CACHE: usize = 32;

impl PortRoutes {
    /// Routing facts from the port table; `mtu` is every port's IP MTU.
    pub fn new(routes: RouteTable, interfaces: Vec<Interface>, mtu: u16) -> Self {
        PortRoutes {
            routes,
            interfaces,
            mtu,
            cache: std::array::from_fn(|_| Cell::new(None)),
        }
    }

    /// Whether `a` is one of the ports' own addresses.
    pub fn is_own(&self, a: &IpAddr) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addrs.iter().any(|p| p.addr == *a))
    }

    fn lookup(&self, dst: IpAddr) -> Option<IpAddr> {
        let (port, _) = self.routes.next_hop(dst)?;
        let iface = self.interfaces.iter().find(|i| i.port == port)?;
        Some(match dst {
            IpAddr::V4(d) => IpAddr::V4(iface.v4_source(d)?),
            IpAddr::V6(d) => IpAddr::V6(iface.v6_source(d)?),
        })
    }
}

#[inline]
fn route_slot(dst: IpAddr) -> usize {
    crate::net::addr_slot(dst, ROUTE_CACHE)
}

impl Egress for PortRoutes {
    #[inline]
    fn route(&self, dst: IpAddr) -> Option<(IpAddr, u16)> {
        let slot = &self.cache[route_slot(dst)];
        if let Some(h) = slot.get() {
            if h.dst == dst {
                return Some((h.src, self.mtu));
            }
        }
        let src = self.lookup(dst)?;
        slot.set(Some(RouteHit { dst, src }));
        Some((src, self.mtu))
    }

    #[inline]
    fn mtu(&self, _dst: IpAddr) -> u16 {
        self.mtu
    }
}

/// How often a worker expires connections, and how many at most per turn.
const HOUSEKEEPING_MS: u64 = 10;
const EXPIRE_BUDGET: usize = 4096;

/// The load balancer plugged into a worker.
#[derive(Debug)]
pub struct LbStage {
    lb: Lb,
    me: usize,
    owners: Ownership,
    config: Arc<ConfigCell>,
    dump: Arc<ConnDump>,
    egress: PortRoutes,
    last_housekeeping: u64,
}

impl LbStage {
    /// The stage of worker `me` of `owners.workers()`.
    pub fn new(
        lb: Lb,
        me: usize,
        owners: Ownership,
        config: Arc<ConfigCell>,
        dump: Arc<ConnDump>,
        egress: PortRoutes,
    ) -> Self {
        LbStage {
            lb,
            me,
            owners,
            config,
            dump,
            egress,
            last_housekeeping: 0,
        }
    }

    pub fn lb(&self) -> &Lb {
        &self.lb
    }
}

impl PortRoutes {
    /// The same ports with other routes (a reload); the cache starts
    /// empty.
    pub fn with_routes(&self, routes: &RouteTable) -> PortRoutes {
        PortRoutes::new(routes.clone(), self.interfaces.clone(), self.mtu)
    }
}

impl<B: PacketBuf> Stage<B> for LbStage {
    fn set_routes(&mut self, routes: &RouteTable) {
        self.egress = self.egress.with_routes(routes);
    }

    #[inline]
    fn process(
        &mut self,
        rx_port: u16,
        mut buf: B,
        meta: &PacketMeta,
        now: u64,
    ) -> StageVerdict<B> {
        // Connection ownership (DESIGN.md): the worker chosen by the client
        // endpoint handles both directions; a packet that RSS (or the
        // kernel, for taps) delivered elsewhere is handed to its owner.
        if self.owners.workers() > 1 {
            if let Some((addr, port)) = self.lb.client_endpoint(buf.data(), meta) {
                let owner = self.owners.owner(addr, port);
                if owner != self.me {
                    return StageVerdict::HandOver { buf, worker: owner };
                }
            }
        }
        let eg = &self.egress;
        let mark = match self
            .lb
            .filter(&mut buf, meta, rx_port, |a| eg.is_own(a), eg)
        {
            Filtered::Pass(mark) => mark,
            Filtered::Drop => return StageVerdict::Drop { buf, counted: true },
            Filtered::Reply(dst) => return StageVerdict::Route { buf, dst },
        };
        match self
            .lb
            .process_marked(&mut buf, meta, mark, now, &self.egress)
        {
            Action::Forward(dst) => StageVerdict::Route { buf, dst },
            Action::Pass => StageVerdict::Pass { buf },
            Action::Drop(_) => StageVerdict::Drop { buf, counted: true },
        }
    }

    #[inline]
    fn warm(&mut self, metas: &[Result<PacketMeta, ParseError>]) {
        self.lb.warm_parsed(metas);
    }

    #[inline]
    fn warms(&self) -> bool {
        self.lb.warms()
    }

    fn serves(&self, proto: u8, addr: IpAddr, port: u16) -> bool {
        self.lb.serves(proto, addr, port)
    }

    fn tick(&mut self, now: u64) -> bool {
        let mut changed = false;
        if self.config.generation() != self.lb.generation() {
            let old = Arc::clone(self.lb.snapshot());
            self.lb.set_snapshot(self.config.load());
            // The stack's copy of the VIPs is rebuilt only when they changed.
            changed = !old.index.same_vips(&self.lb.snapshot().index);
        }
        if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.lb.housekeeping(now, EXPIRE_BUDGET);
        }
        self.dump.serve(&self.lb, now);
        self.lb.sync_tick(now);
        changed
    }

    fn service_addrs(&self) -> Vec<IpAddr> {
        self.lb.service_addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::L3Config;
    use crate::wire::ethernet::MacAddr;

    /// Port 0: 198.18.0.1/24 and 2001:db8::1/64; port 1: 198.18.1.1/24
    /// and 198.18.2.1/24, with 198.19.0.0/16 via 198.18.1.254.
    fn routes() -> PortRoutes {
        let cfg = L3Config {
            interfaces: vec![
                Interface {
                    port: 0,
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    addrs: vec![
                        "198.18.0.1/24".parse().unwrap(),
                        "2001:db8::1/64".parse().unwrap(),
                    ],
                    mtu: 1500,
                    kernel: false,
                },
                Interface {
                    port: 1,
                    mac: MacAddr([2, 0, 0, 0, 0, 2]),
                    addrs: vec![
                        "198.18.1.1/24".parse().unwrap(),
                        "198.18.2.1/24".parse().unwrap(),
                    ],
                    mtu: 1500,
                    kernel: false,
                },
            ],
            routes: vec![(
                "198.19.0.0/16".parse().unwrap(),
                "198.18.1.254".parse().unwrap(),
            )],
            neighbors: vec![],
        };
        PortRoutes::new(cfg.route_table().unwrap(), cfg.interfaces.clone(), 1500)
    }

    #[test]
    fn remembered_routes_answer_as_the_lookup_does() {
        let r = routes();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            r.route(ip("198.18.2.7")),
            Some((ip("198.18.2.1"), 1500)),
            "the address on the destination's own prefix"
        );
        assert_eq!(
            r.route(ip("198.19.3.4")).map(|x| x.0),
            Some(ip("198.18.1.1"))
        );
        assert_eq!(
            r.route(ip("2001:db8::9")).map(|x| x.0),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(r.route(ip("2001:db8:1::9")), None, "no route");
        // Many destinations (more than the cache holds, so slots are
        // shared and replaced), each asked three times: every answer is the
        // uncached one.
        let dsts: Vec<IpAddr> = (0..300u32)
            .map(|i| {
                let o = (i % 3) as u8;
                IpAddr::from([198, 18 + u8::from(o == 2), o, (i / 3) as u8])
            })
            .collect();
        for _ in 0..3 {
            for &d in &dsts {
                let want = r.lookup(d).map(|s| (s, 1500));
                assert_eq!(r.route(d), want, "{d}");
            }
        }
    }
}
