//! The store of the ipvsadm configuration: services, their real servers
//! and FULLNAT local addresses, timeouts and tunables, changed by
//! [`ConfigOp`]s with the IPVS kernel's semantics and errors, and what the
//! kernel keeps beside them (deleted destinations still referenced, the
//! `-Z` zero points, the rate estimators).
//!
//! Why in the model: this is where an operation meets the current state
//! (existence checks, the trash, revivals), the half of validation that
//! `ops` cannot do alone; every grammar's operation ends here. What the
//! engine adds per service (statistics the workers write, and whatever
//! else its schedulers share) is the type parameter `S` ([`ServiceState`]);
//! compiling the store into the snapshot workers read (the packet index,
//! the rules, the sets) is the engine's (`dataplane::config::ConfigStore`,
//! which owns one of these and is told which services changed).
//!
//! Rules kept from the kernel (reference sections 1.8, 1.9, 3.0, 4.7, 4.8):
//! * Every operation is validated completely before anything changes: each
//!   operation makes all its checks before its first change, and what it
//!   does to state the workers share (flags, mirrors) is recorded and done
//!   at commit. [`ServiceStore::apply_all`] stages a whole list on a copy
//!   (all or nothing, for a rules file).
//! * A new destination (also one revived from the trash) goes to the front
//!   of its service's list; an edit does not move it.
//! * A deleted destination (by `-d`, `-D` or `-C`) loses its AVAILABLE flag
//!   and waits in the trash while anything else (connections, a worker's
//!   old snapshot) still holds its [`DestShared`]. Adding the same
//!   address:port to the same service key revives it with its counters,
//!   statistics and zero point intact. UVS never revives unreferenced trash
//!   (and frees it with the estimator tick).
//! * `-Z` cannot clear per-worker counters (each worker is their only
//!   writer), so it records a zero point per service and destination;
//!   listings show counters since it. It also resets the rate estimators.
//!
//! Scaling: each operation costs in proportion to what it changes, not to
//! the table: services are found by key in a hash map, destinations by
//! address:port in a per-service set.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

// The store's own maps hash with hashbrown's default (foldhash): keys are
// the operator's own configuration, and SipHash's cost showed in restores.
use hashbrown::{HashMap as FastMap, HashSet as FastSet};

use crate::estimator::Estimator;
use crate::model::{
    dest_flags, DestConfig, DestShared, Family, ForwardMethod, LocalAddr, ServiceConfig,
    ServiceKey, Timeouts,
};
use crate::ops::{
    check_engines, is_unicast, validate_dest, validate_service, ApplyError, ConfigOp, StatsRow,
    StatsView, SYNPROXY_NEEDS_NAT,
};
use crate::stats::{Counters, Stats};
use crate::tunables::Tunables;

/// What the engine keeps per service beside its configuration, shared with
/// its workers: the store creates one when the service is added and keeps
/// it while the service exists. The store reads its statistics (zero
/// points, estimators, listings).
pub trait ServiceState: Default + std::fmt::Debug + Send + Sync + 'static {
    fn stats(&self) -> &Stats;
}

/// Zero point and estimator of one statistics owner.
#[derive(Debug, Clone, Copy)]
struct Track {
    zero: Counters,
    est: Estimator,
}

impl Track {
    fn starting_at(now: Counters) -> Track {
        Track {
            zero: now,
            est: Estimator::new(now),
        }
    }

    fn zero(&mut self, now: Counters) {
        self.zero = now;
        self.est.reset(now);
    }

    fn row(&self, now: Counters) -> StatsRow {
        StatsRow {
            counters: now.since(&self.zero),
            rates: self.est.rates(),
        }
    }
}

/// A destination of a service (or in the trash): its configuration, the
/// state it shares with the workers, its zero point and estimator.
#[derive(Debug, Clone)]
pub struct DestEntry {
    pub config: DestConfig,
    pub shared: Arc<DestShared>,
    track: Track,
}

/// A service: its configuration, its destinations, the state the engine
/// keeps for it ([`ServiceState`]), its zero point and estimator.
#[derive(Debug)]
pub struct ServiceEntry<S> {
    pub config: ServiceConfig,
    /// Kernel list order: front = most recently added.
    pub dests: VecDeque<DestEntry>,
    /// The destinations' address:port, for the existence checks of `-a`.
    dest_keys: FastSet<(IpAddr, u16)>,
    pub shared: Arc<S>,
    track: Track,
    /// Creation order (listings with `--nosort`, the snapshot's order).
    pub seq: u64,
    /// A small number, unique among the services that exist, reused after
    /// a delete: the engine's packet index keys workers' scheduler state
    /// on it.
    pub slot: u32,
    /// FULLNAT local addresses, in the order added.
    pub locals: Vec<Arc<LocalAddr>>,
}

// By hand: `S` itself is shared (`Arc`), not cloned.
impl<S> Clone for ServiceEntry<S> {
    fn clone(&self) -> Self {
        ServiceEntry {
            config: self.config.clone(),
            dests: self.dests.clone(),
            dest_keys: self.dest_keys.clone(),
            shared: Arc::clone(&self.shared),
            track: self.track,
            seq: self.seq,
            slot: self.slot,
            locals: self.locals.clone(),
        }
    }
}

impl<S> ServiceEntry<S> {
    /// Where the destination `addr:port` is in [`ServiceEntry::dests`].
    pub fn dest_position(&self, addr: IpAddr, port: u16) -> Option<usize> {
        if !self.dest_keys.contains(&(addr, port)) {
            return None;
        }
        self.dests
            .iter()
            .position(|e| e.config.addr == addr && e.config.port == port)
    }
}

/// What an accepted operation does to state shared with the workers, done
/// in order when it commits (so a refused batch touches none of it).
#[derive(Debug)]
enum Effect {
    /// The destination left its service: clear AVAILABLE.
    Trash(Arc<DestShared>),
    /// The destination is in its service with this configuration: set
    /// AVAILABLE, copy the mirrors, re-evaluate OVERLOAD.
    Sync(Arc<DestShared>, DestConfig),
    /// The service changed or went: the engine's compiled form is stale.
    Service(ServiceKey),
}

/// The services, destinations and local addresses of a director, and what
/// the kernel keeps beside them. `S`: what the engine keeps per service.
#[derive(Debug)]
pub struct ServiceStore<S> {
    services: FastMap<ServiceKey, ServiceEntry<S>>,
    timeouts: Timeouts,
    /// Deleted destinations, by service key, address and port.
    trash: FastMap<(ServiceKey, IpAddr, u16), DestEntry>,
    next_seq: u64,
    tunables: Tunables,
    /// Destinations deleted so far.
    dest_removals: u64,
    next_slot: u32,
    free_slots: Vec<u32>,
    /// Every FULLNAT local address ever added, by number.
    locals: Arc<Vec<Arc<LocalAddr>>>,
}

impl<S> Clone for ServiceStore<S> {
    fn clone(&self) -> Self {
        ServiceStore {
            services: self.services.clone(),
            timeouts: self.timeouts,
            trash: self.trash.clone(),
            next_seq: self.next_seq,
            tunables: self.tunables,
            dest_removals: self.dest_removals,
            next_slot: self.next_slot,
            free_slots: self.free_slots.clone(),
            locals: Arc::clone(&self.locals),
        }
    }
}

impl<S> Default for ServiceStore<S> {
    fn default() -> Self {
        ServiceStore {
            services: FastMap::new(),
            timeouts: Timeouts::default(),
            trash: FastMap::new(),
            next_seq: 0,
            tunables: Tunables::default(),
            dest_removals: 0,
            next_slot: 0,
            free_slots: Vec::new(),
            locals: Arc::default(),
        }
    }
}

impl<S: ServiceState> ServiceStore<S> {
    /// An empty configuration with default timeouts and tunables.
    pub fn new() -> ServiceStore<S> {
        ServiceStore::default()
    }

    fn take_slot(&mut self) -> u32 {
        self.free_slots.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        })
    }

    /// The service with `key`.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceEntry<S>> {
        self.services.get(key)
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The IPVS tunables in force.
    pub fn tunables(&self) -> Tunables {
        self.tunables
    }

    /// Destinations deleted so far (each one counted once).
    pub fn dest_removals(&self) -> u64 {
        self.dest_removals
    }

    /// Every FULLNAT local address ever added, indexed by its number.
    pub fn locals(&self) -> &Arc<Vec<Arc<LocalAddr>>> {
        &self.locals
    }

    /// Makes `addr` a local address if it is not one yet, without giving
    /// it to any service; `None` when the numbers ran out.
    pub fn ensure_local(&mut self, addr: IpAddr) -> Option<u16> {
        if let Some(l) = self.locals.iter().find(|l| l.addr == addr) {
            return Some(l.id);
        }
        let id = u16::try_from(self.locals.len()).ok()?;
        Arc::make_mut(&mut self.locals).push(Arc::new(LocalAddr::new(addr, id)));
        Some(id)
    }

    /// Executes one operation; on error nothing changed. Returns the
    /// services it changed (their compiled forms are stale). Costs in
    /// proportion to the operation, not to the table: every check comes
    /// before the first change, so it runs on the live state.
    pub fn apply(&mut self, op: &ConfigOp) -> Result<Vec<ServiceKey>, ApplyError> {
        let mut effects = Vec::new();
        stage(self, op, &mut effects)?;
        Ok(self.commit(effects))
    }

    /// Executes all operations or none: on the first failure, returns its
    /// index and error and nothing changed. Stages on a copy (one copy per
    /// batch). Returns the services changed.
    pub fn apply_all(&mut self, ops: &[ConfigOp]) -> Result<Vec<ServiceKey>, (usize, ApplyError)> {
        // First, so that the copy does not count as a reference.
        self.purge_trash();
        let mut staged = self.clone();
        let mut effects = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            stage(&mut staged, op, &mut effects).map_err(|e| (i, e))?;
        }
        *self = staged;
        Ok(self.commit(effects))
    }

    /// One estimator step (every [`crate::estimator::TICK_SECONDS`]).
    /// Does nothing but free the trash while `run_estimation` is 0 (the
    /// rates then keep their last values, as the kernel's stopped
    /// estimators do). Also frees the trash nothing references any more.
    pub fn tick_estimators(&mut self) {
        self.purge_trash();
        if !self.tunables.run_estimation() {
            return;
        }
        for s in self.services.values_mut() {
            s.track.est.tick(s.shared.stats().total());
            for d in &mut s.dests {
                d.track.est.tick(d.shared.stats.total());
            }
        }
        for t in self.trash.values_mut() {
            t.track.est.tick(t.shared.stats.total());
        }
    }

    /// A service's counters since its zero point and its rates.
    pub fn service_stats(&self, key: &ServiceKey) -> Option<StatsRow> {
        self.services
            .get(key)
            .map(|s| s.track.row(s.shared.stats().total()))
    }

    /// A destination's counters since its zero point and its rates.
    pub fn dest_stats(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> Option<StatsRow> {
        let s = self.services.get(key)?;
        let d = &s.dests[s.dest_position(addr, port)?];
        Some(d.track.row(d.shared.stats.total()))
    }

    /// Every service's and destination's statistics, for a listing.
    pub fn stats_view(&self) -> StatsView {
        let mut v = StatsView::default();
        for s in self.services.values() {
            let key = s.config.key;
            v.services
                .insert(key, s.track.row(s.shared.stats().total()));
            for d in &s.dests {
                v.dests.insert(
                    (key, d.config.addr, d.config.port),
                    d.track.row(d.shared.stats.total()),
                );
            }
        }
        v
    }

    /// How many deleted destinations are waiting in the trash (referenced
    /// by a connection or an older snapshot).
    pub fn trash_len(&self) -> usize {
        self.trash
            .values()
            .filter(|t| Arc::strong_count(&t.shared) > 1)
            .count()
    }

    /// Frees trashed destinations nothing else references any more.
    fn purge_trash(&mut self) {
        self.trash.retain(|_, t| Arc::strong_count(&t.shared) > 1);
    }

    /// Does to the shared state what the staged operations recorded, in
    /// order; returns the services they changed.
    fn commit(&mut self, effects: Vec<Effect>) -> Vec<ServiceKey> {
        let mut touched = Vec::new();
        for e in effects {
            match e {
                Effect::Trash(d) => {
                    d.flags.fetch_and(!dest_flags::AVAILABLE, Ordering::Relaxed);
                    self.dest_removals += 1;
                }
                Effect::Sync(d, cfg) => {
                    d.flags.fetch_or(dest_flags::AVAILABLE, Ordering::Relaxed);
                    sync_mirrors(&d, &cfg);
                }
                Effect::Service(key) => touched.push(key),
            }
        }
        touched
    }
}

/// Copies the configured values into the shared mirrors and re-evaluates
/// OVERLOAD as newer kernels do on `-a`/`-e` (4.7): set when the connection
/// count reaches the upper threshold, cleared when there is none or when the
/// count is below the low-water mark, otherwise unchanged.
fn sync_mirrors(d: &DestShared, cfg: &DestConfig) {
    d.weight.store(cfg.weight, Ordering::Relaxed);
    if cfg.weight > 0 {
        d.last_weight.store(cfg.weight, Ordering::Relaxed);
    }
    d.u_threshold.store(cfg.u_threshold, Ordering::Relaxed);
    d.l_threshold.store(cfg.l_threshold, Ordering::Relaxed);
    let u = cfg.u_threshold;
    let conns = d.active().saturating_add(d.inactive());
    if u == 0 {
        d.flags.fetch_and(!dest_flags::OVERLOAD, Ordering::Relaxed);
    } else if conns >= u {
        d.flags.fetch_or(dest_flags::OVERLOAD, Ordering::Relaxed);
    } else {
        let low = if cfg.l_threshold != 0 {
            cfg.l_threshold
        } else {
            u - u / 4
        };
        if conns < low {
            d.flags.fetch_and(!dest_flags::OVERLOAD, Ordering::Relaxed);
        }
    }
}

/// Removes a service: its destinations go to the trash, its slot is free.
fn remove_service<S>(st: &mut ServiceStore<S>, key: &ServiceKey, fx: &mut Vec<Effect>) {
    let Some(svc) = st.services.remove(key) else {
        return;
    };
    st.free_slots.push(svc.slot);
    fx.push(Effect::Service(*key));
    for dest in svc.dests {
        fx.push(Effect::Trash(Arc::clone(&dest.shared)));
        st.trash
            .insert((*key, dest.config.addr, dest.config.port), dest);
    }
}

/// Applies `op` to `st`, recording what the commit must do in `fx`. Every
/// check comes before the first change: on error `st` and `fx` are as they
/// were.
fn stage<S: ServiceState>(
    st: &mut ServiceStore<S>,
    op: &ConfigOp,
    fx: &mut Vec<Effect>,
) -> Result<(), ApplyError> {
    let kind = op.kind();
    match op {
        ConfigOp::AddService(cfg) => {
            validate_service(kind, cfg)?;
            if st.services.contains_key(&cfg.key) {
                return Err(ApplyError::Exists(kind));
            }
            check_engines(kind, cfg)?;
            let shared = Arc::new(S::default());
            let track = Track::starting_at(shared.stats().total());
            let slot = st.take_slot();
            st.next_seq += 1;
            st.services.insert(
                cfg.key,
                ServiceEntry {
                    config: cfg.clone(),
                    dests: VecDeque::new(),
                    dest_keys: FastSet::new(),
                    shared,
                    track,
                    seq: st.next_seq,
                    slot,
                    locals: Vec::new(),
                },
            );
            fx.push(Effect::Service(cfg.key));
        }
        ConfigOp::EditService(cfg) => {
            validate_service(kind, cfg)?;
            let svc = st
                .services
                .get_mut(&cfg.key)
                .ok_or(ApplyError::NoService(kind))?;
            check_engines(kind, cfg)?;
            if cfg.synproxy
                && svc
                    .dests
                    .iter()
                    .any(|d| d.config.method != ForwardMethod::Masq)
            {
                return Err(ApplyError::Invalid(kind, SYNPROXY_NEEDS_NAT));
            }
            svc.config = cfg.clone();
            fx.push(Effect::Service(cfg.key));
        }
        ConfigOp::DeleteService(key) => {
            if !st.services.contains_key(key) {
                return Err(ApplyError::NoService(kind));
            }
            remove_service(st, key, fx);
        }
        ConfigOp::Flush => {
            let keys: Vec<ServiceKey> = st.services.keys().copied().collect();
            for key in keys {
                remove_service(st, &key, fx);
            }
        }
        ConfigOp::AddDest(key, d) => {
            let svc = st.services.get(key).ok_or(ApplyError::NoService(kind))?;
            validate_dest(kind, &svc.config, d)?;
            if svc.dest_keys.contains(&(d.addr, d.port)) {
                return Err(ApplyError::Exists(kind));
            }
            // Trash nothing references any more is freed, not revived (the
            // kernel frees it after a while; UVS at the next operation).
            let tkey = (*key, d.addr, d.port);
            if st
                .trash
                .get(&tkey)
                .is_some_and(|t| Arc::strong_count(&t.shared) == 1)
            {
                if !is_unicast(&d.addr) {
                    return Err(ApplyError::Invalid(kind, "address not unicast"));
                }
                st.trash.remove(&tkey);
            }
            let entry = match st.trash.remove(&tkey) {
                Some(mut e) => {
                    e.config = d.clone();
                    e
                }
                None => {
                    if !is_unicast(&d.addr) {
                        return Err(ApplyError::Invalid(kind, "address not unicast"));
                    }
                    let shared = Arc::new(DestShared::new(d));
                    let track = Track::starting_at(shared.stats.total());
                    DestEntry {
                        config: d.clone(),
                        shared,
                        track,
                    }
                }
            };
            fx.push(Effect::Sync(Arc::clone(&entry.shared), d.clone()));
            fx.push(Effect::Service(*key));
            let svc = st
                .services
                .get_mut(key)
                .ok_or(ApplyError::NoService(kind))?;
            svc.dest_keys.insert((d.addr, d.port));
            svc.dests.push_front(entry);
        }
        ConfigOp::EditDest(key, d) => {
            let svc = st
                .services
                .get_mut(key)
                .ok_or(ApplyError::NoService(kind))?;
            validate_dest(kind, &svc.config, d)?;
            let j = svc
                .dest_position(d.addr, d.port)
                .ok_or(ApplyError::NotFound(kind))?;
            let e = &mut svc.dests[j];
            e.config = d.clone();
            fx.push(Effect::Sync(Arc::clone(&e.shared), d.clone()));
            fx.push(Effect::Service(*key));
        }
        ConfigOp::DeleteDest {
            service,
            addr,
            port,
        } => {
            let svc = st
                .services
                .get_mut(service)
                .ok_or(ApplyError::NoService(kind))?;
            let j = svc
                .dest_position(*addr, *port)
                .ok_or(ApplyError::NotFound(kind))?;
            let dest = svc.dests.remove(j).ok_or(ApplyError::NotFound(kind))?;
            svc.dest_keys.remove(&(*addr, *port));
            fx.push(Effect::Trash(Arc::clone(&dest.shared)));
            fx.push(Effect::Service(*service));
            st.trash.insert((*service, *addr, *port), dest);
        }
        ConfigOp::SetTimeouts { tcp, tcp_fin, udp } => {
            let t = &mut st.timeouts;
            for (slot, v) in [
                (&mut t.tcp, tcp),
                (&mut t.tcp_fin, tcp_fin),
                (&mut t.udp, udp),
            ] {
                if *v != 0 {
                    *slot = *v;
                }
            }
        }
        ConfigOp::Zero(which) => {
            let zero_service = |s: &mut ServiceEntry<S>| {
                s.track.zero(s.shared.stats().total());
                for d in &mut s.dests {
                    d.track.zero(d.shared.stats.total());
                }
            };
            match which {
                Some(key) => {
                    let svc = st
                        .services
                        .get_mut(key)
                        .ok_or(ApplyError::NoService(kind))?;
                    zero_service(svc);
                }
                None => st.services.values_mut().for_each(zero_service),
            }
        }
        ConfigOp::SetTunable(t, v) => {
            st.tunables
                .set(t.name(), &v.to_string())
                .map_err(|_| ApplyError::Invalid(kind, "tunable value out of range"))?;
        }
        ConfigOp::AddLocal(key, addr) => {
            let svc = st.services.get(key).ok_or(ApplyError::NoService(kind))?;
            if Family::of(addr) != key.family() {
                return Err(ApplyError::Invalid(kind, "local address of another family"));
            }
            if !is_unicast(addr) {
                return Err(ApplyError::Invalid(kind, "address not unicast"));
            }
            if svc.locals.iter().any(|l| l.addr == *addr) {
                return Err(ApplyError::Exists(kind));
            }
            let local = match st.locals.iter().find(|l| l.addr == *addr) {
                Some(l) => Arc::clone(l),
                None => {
                    let id = u16::try_from(st.locals.len())
                        .map_err(|_| ApplyError::OutOfRange(kind, "too many local addresses"))?;
                    let l = Arc::new(LocalAddr::new(*addr, id));
                    Arc::make_mut(&mut st.locals).push(Arc::clone(&l));
                    l
                }
            };
            if let Some(svc) = st.services.get_mut(key) {
                svc.locals.push(local);
            }
            fx.push(Effect::Service(*key));
        }
        ConfigOp::DelLocal(key, addr) => {
            let svc = st
                .services
                .get_mut(key)
                .ok_or(ApplyError::NoService(kind))?;
            let j = svc
                .locals
                .iter()
                .position(|l| l.addr == *addr)
                .ok_or(ApplyError::NotFound(kind))?;
            svc.locals.remove(j);
            fx.push(Effect::Service(*key));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::Protocol;

    /// What an engine keeps per service: here, statistics only.
    #[derive(Debug, Default)]
    struct Plain(Stats);

    impl ServiceState for Plain {
        fn stats(&self) -> &Stats {
            &self.0
        }
    }

    fn vip(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            port,
        }
    }

    fn dest(last: u8) -> DestConfig {
        DestConfig {
            addr: IpAddr::V4(Ipv4Addr::new(198, 19, 0, last)),
            port: 80,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn operations_report_the_services_they_changed() {
        let mut st = ServiceStore::<Plain>::new();
        let add = ConfigOp::AddService(ServiceConfig::new(vip(80)));
        assert_eq!(st.apply(&add), Ok(vec![vip(80)]));
        assert_eq!(
            st.apply(&add),
            Err(ApplyError::Exists(add.kind())),
            "a second add is refused"
        );
        let touched = st.apply(&ConfigOp::AddDest(vip(80), dest(1))).unwrap();
        assert_eq!(touched, vec![vip(80)]);
        let shared = Arc::clone(&st.service(&vip(80)).unwrap().dests[0].shared);
        assert_ne!(
            shared.flags.load(Ordering::Relaxed) & dest_flags::AVAILABLE,
            0
        );
        // Timeouts change no service.
        let t = ConfigOp::SetTimeouts {
            tcp: 10,
            tcp_fin: 0,
            udp: 0,
        };
        assert_eq!(st.apply(&t), Ok(vec![]));
        assert_eq!(st.timeouts().tcp, 10);
        // Deleting the service trashes its destination (still held here).
        assert_eq!(
            st.apply(&ConfigOp::DeleteService(vip(80))),
            Ok(vec![vip(80)])
        );
        assert_eq!(
            shared.flags.load(Ordering::Relaxed) & dest_flags::AVAILABLE,
            0
        );
        assert_eq!((st.dest_removals(), st.trash_len()), (1, 1));
    }

    #[test]
    fn a_refused_batch_changes_nothing_and_reports_where_it_stopped() {
        let mut st = ServiceStore::<Plain>::new();
        let ops = [
            ConfigOp::AddService(ServiceConfig::new(vip(80))),
            ConfigOp::AddDest(vip(80), dest(1)),
            ConfigOp::AddDest(vip(81), dest(2)),
        ];
        let err = st.apply_all(&ops).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(st.service(&vip(80)).is_none());
        assert_eq!(st.apply_all(&ops[..2]), Ok(vec![vip(80), vip(80)]));
        assert_eq!(st.service(&vip(80)).unwrap().dests.len(), 1);
    }
}
