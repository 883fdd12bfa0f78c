//! The engine's configuration store: the configuration model's store of
//! services ([`ServiceStore`], `uvs_model::store`), the ipset sets, the
//! packet and source-NAT rules, and the immutable [`Snapshot`]s compiled
//! from them for the workers.
//!
//! Why the split: executing a [`ConfigOp`] against the current state (the
//! kernel's semantics and errors, the trash, `-Z` zero points, estimators)
//! is configuration logic and lives in `uvs-model`, beside the operations
//! the grammars produce; compiling that state into what a worker reads (a
//! `Service` per changed service, the packet index, the rule program, the
//! set tables) is the engine's, here. The model's store tells this one
//! which services an operation changed, and only those are compiled again.
//!
//! Scaling: the snapshot side ([`Compiled`]) is rebuilt lazily and per
//! service: a snapshot shares every service it did not touch
//! (`Arc<Service>`) and its packet index shares all shards but the touched
//! ones with the previous snapshot. A batch of operations (a restore)
//! compiles each touched service once, when the snapshot is taken.
//! bench/CONTROL.md has the figures.
//!
//! Known differences from the kernel, on purpose:
//! * `--pe sip` is refused with ENOENT ("Scheduler or persistence engine not
//!   found"), as a kernel without `ip_vs_pe_sip` does: UVS has no SIP engine.
//! * The scheduler `none` is refused (ENOENT): UVS ships exactly the
//!   [`SCHEDULERS`].
//! * Whether a real-server address is "local" is not known here: IPv4
//!   zero-net, limited-broadcast and multicast addresses and IPv6
//!   unspecified, multicast, v4-mapped and link-local addresses are refused
//!   with EINVAL.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::{HashMap as FastMap, HashSet as FastSet};

use crate::lb::ServiceIndex;
use crate::model::{Service, ServiceKey, ServiceList, ServiceShared, Snapshot, Timeouts};
use crate::stats::Stats;
use crate::tunables::Tunables;

pub use uvs_model::ops::{ApplyError, ConfigOp, OpKind, StatsRow, StatsView, SCHEDULERS};
pub use uvs_model::store::{ServiceEntry, ServiceState, ServiceStore};

impl ServiceState for ServiceShared {
    fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The service as a snapshot shows it.
fn compile(e: &ServiceEntry<ServiceShared>) -> Service {
    e.shared.toa.store(e.config.toa, Ordering::Relaxed);
    Service {
        config: e.config.clone(),
        dests: e
            .dests
            .iter()
            .map(|d| crate::model::Dest {
                config: d.config.clone(),
                shared: Arc::clone(&d.shared),
            })
            .collect(),
        shared: Arc::clone(&e.shared),
        locals: e.locals.clone(),
    }
}

/// The snapshot's side of the store: compiled services in creation order
/// and the packet index, both changed per service. Rebuilt lazily, when a
/// snapshot is asked for, so a batch (a restore) compiles each service it
/// touched once, whatever the number of lines.
#[derive(Debug, Default, Clone)]
struct Compiled {
    order: ServiceList,
    seq_of: FastMap<ServiceKey, u64>,
    index: ServiceIndex,
    /// Services whose compiled form is missing.
    dirty: FastSet<ServiceKey>,
    /// The last snapshot, until the next change.
    cache: Option<Arc<Snapshot>>,
}

impl Compiled {
    /// Drops `key`'s compiled form now (so it holds no destination that
    /// left) and marks it to be compiled again.
    fn invalidate(&mut self, key: ServiceKey) {
        if let Some(seq) = self.seq_of.remove(&key) {
            self.order.remove(seq);
            self.index.remove(&key);
        }
        self.dirty.insert(key);
    }
}

/// The daemon's configuration and what the kernel keeps beside it.
#[derive(Debug)]
pub struct ConfigStore {
    services: ServiceStore<ServiceShared>,
    generation: u64,
    compiled: Mutex<Compiled>,
    /// The packet rules, compiled by their owner ([`ConfigStore::set_rules`]).
    rules: Arc<crate::rules::Program>,
    /// The source-NAT rules, compiled with the packet rules.
    nat: Arc<crate::snat::NatRules>,
    /// The ipset sets (`uvsset`): published in every snapshot.
    sets: crate::sets::SetStore,
}

impl Default for ConfigStore {
    fn default() -> Self {
        ConfigStore::new()
    }
}

impl ConfigStore {
    /// An empty configuration with default timeouts (generation 0).
    pub fn new() -> ConfigStore {
        ConfigStore {
            services: ServiceStore::new(),
            generation: 0,
            compiled: Mutex::new(Compiled::default()),
            rules: Arc::default(),
            nat: Arc::default(),
            sets: crate::sets::SetStore::new(),
        }
    }

    /// A copy of this configuration for a director with no workers (tests,
    /// the `control` fuzz target, which starts every input on a copy of one
    /// empty store instead of building one: `ConfigStore::new` and its drop
    /// were a fifth of an input's time). Changes to either leave the other
    /// as it was (every part is a value or copied on write), but what outlives
    /// snapshots is shared: each service's statistics and its lblc/lblcr
    /// table, and the packet index's lineage, by which workers tell whether
    /// a VIP set they cached is still current. So a copy must never be
    /// published to workers that saw the original.
    pub fn copy_without_workers(&self) -> ConfigStore {
        ConfigStore {
            services: self.services.clone(),
            generation: self.generation,
            compiled: Mutex::new(self.compiled().clone()),
            rules: Arc::clone(&self.rules),
            nat: Arc::clone(&self.nat),
            sets: self.sets.clone(),
        }
    }

    fn compiled(&self) -> MutexGuard<'_, Compiled> {
        // Only this store takes the lock, and nothing in it can panic
        // half-way through a change that matters: a poisoned lock is sound.
        match self.compiled.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The current configuration, as workers should see it. Compiles the
    /// services changed since the last call; the others are shared with
    /// the previous snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let mut c = self.compiled();
        if let Some(s) = &c.cache {
            return Arc::clone(s);
        }
        let dirty: Vec<ServiceKey> = c.dirty.drain().collect();
        for key in dirty {
            if let Some(e) = self.services.service(&key) {
                let svc = Arc::new(compile(e));
                c.order.put(e.seq, Arc::clone(&svc));
                c.seq_of.insert(key, e.seq);
                c.index.insert(e.slot, svc);
            }
        }
        c.index.finish();
        let snap = Arc::new(Snapshot {
            generation: self.generation,
            services: c.order.clone(),
            timeouts: self.services.timeouts(),
            tunables: self.services.tunables(),
            dest_removals: self.services.dest_removals(),
            index: c.index.clone(),
            rules: Arc::clone(&self.rules),
            nat: Arc::clone(&self.nat),
            sets: self.sets.table(),
            locals: Arc::clone(self.services.locals()),
        });
        c.cache = Some(Arc::clone(&snap));
        snap
    }

    /// Makes `addr` a local address (FULLNAT's, [`Snapshot::locals`]) if
    /// it is not one yet, without giving it to any service: the address
    /// IPVS connections masqueraded by the nat rules take their ports from
    /// (docs/design/kube-proxy.md). Published with the next
    /// [`ConfigStore::set_rules`]; `None` when the numbers ran out.
    pub fn ensure_local(&mut self, addr: IpAddr) -> Option<u16> {
        self.services.ensure_local(addr)
    }

    /// Replaces the source-NAT rules; published with the next
    /// [`ConfigStore::set_rules`].
    pub fn set_nat(&mut self, nat: Arc<crate::snat::NatRules>) {
        self.nat = nat;
    }

    /// Replaces the packet rules workers run (one more generation).
    pub fn set_rules(&mut self, rules: Arc<crate::rules::Program>) {
        self.rules = rules;
        self.generation += 1;
        self.compiled().cache = None;
    }

    pub fn timeouts(&self) -> Timeouts {
        self.services.timeouts()
    }

    /// The generation the next snapshot will carry.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ipset sets.
    pub fn sets(&self) -> &crate::sets::SetStore {
        &self.sets
    }

    /// The ipset sets, to change them: the next snapshot carries the
    /// change (and has a new generation).
    pub fn sets_mut(&mut self) -> &mut crate::sets::SetStore {
        self.generation += 1;
        self.compiled().cache = None;
        &mut self.sets
    }

    /// The IPVS tunables in force.
    pub fn tunables(&self) -> Tunables {
        self.services.tunables()
    }

    /// Executes one operation ([`ServiceStore::apply`]); on error nothing
    /// changed.
    pub fn apply(&mut self, op: &ConfigOp) -> Result<(), ApplyError> {
        let touched = self.services.apply(op)?;
        self.commit(touched);
        Ok(())
    }

    /// Executes all operations or none ([`ServiceStore::apply_all`]): on
    /// the first failure, returns its index and error and nothing changed.
    pub fn apply_all(&mut self, ops: &[ConfigOp]) -> Result<(), (usize, ApplyError)> {
        let touched = self.services.apply_all(ops)?;
        self.commit(touched);
        Ok(())
    }

    /// One estimator step (call every [`crate::estimator::TICK_SECONDS`]),
    /// see [`ServiceStore::tick_estimators`].
    pub fn tick_estimators(&mut self) {
        self.services.tick_estimators();
    }

    /// A service's counters since its zero point and its rates.
    pub fn service_stats(&self, key: &ServiceKey) -> Option<StatsRow> {
        self.services.service_stats(key)
    }

    /// A destination's counters since its zero point and its rates.
    pub fn dest_stats(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> Option<StatsRow> {
        self.services.dest_stats(key, addr, port)
    }

    /// Every service's and destination's statistics, for a listing.
    pub fn stats_view(&self) -> StatsView {
        self.services.stats_view()
    }

    /// How many deleted destinations are waiting in the trash (referenced
    /// by a connection or an older snapshot).
    pub fn trash_len(&self) -> usize {
        self.services.trash_len()
    }

    /// The services an operation changed are compiled again at the next
    /// snapshot; every accepted operation makes a new generation.
    fn commit(&mut self, touched: Vec<ServiceKey>) {
        let mut c = self.compiled();
        c.cache = None;
        for key in touched {
            c.invalidate(key);
        }
        drop(c);
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimator::Rates;
    use crate::model::{
        DestConfig, ForwardMethod, Protocol, ServiceConfig, TunnelConfig, TunnelType,
    };
    use crate::stats::Counters;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn tcp(addr: IpAddr, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr,
            port,
        }
    }

    fn vip() -> ServiceKey {
        tcp(v4(198, 18, 0, 1), 80)
    }

    fn dest(last: u8, weight: i32) -> DestConfig {
        DestConfig {
            addr: v4(198, 19, 0, last),
            port: 80,
            method: ForwardMethod::Masq,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    fn store_with_service() -> ConfigStore {
        let mut s = ConfigStore::new();
        s.apply(&ConfigOp::AddService(ServiceConfig::new(vip())))
            .expect("add service");
        s
    }

    fn dest_order(s: &ConfigStore) -> Vec<IpAddr> {
        let snap = s.snapshot();
        snap.service(&vip())
            .map(|svc| svc.dests.iter().map(|d| d.config.addr).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_copy_without_workers_changes_apart_from_its_original() {
        let s = store_with_service();
        let first = s.snapshot();
        let mut c = s.copy_without_workers();
        assert_eq!(c.snapshot().generation, first.generation);
        c.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        c.apply(&ConfigOp::SetTimeouts {
            tcp: 5,
            tcp_fin: 6,
            udp: 7,
        })
        .unwrap();
        assert_eq!(dest_order(&c), [v4(198, 19, 0, 1)]);
        assert!(
            Arc::ptr_eq(&first, &s.snapshot()),
            "the original is as it was"
        );
        assert!(dest_order(&s).is_empty());
        assert_ne!(c.snapshot().timeouts, s.snapshot().timeouts);
        // And the other way round.
        let mut s = s;
        s.apply(&ConfigOp::AddDest(vip(), dest(2, 1))).unwrap();
        assert_eq!(dest_order(&c), [v4(198, 19, 0, 1)]);
        assert_eq!(dest_order(&s), [v4(198, 19, 0, 2)]);
    }

    /// Asserts `op` fails with `want` and `message`, and changes nothing.
    fn refused(s: &mut ConfigStore, op: ConfigOp, want: ApplyError, message: &str) {
        let before = s.snapshot();
        let err = s.apply(&op).expect_err("must be refused");
        assert_eq!(err, want);
        assert_eq!(err.to_string(), message);
        let after = s.snapshot();
        assert_eq!(before.generation, after.generation);
        assert_eq!(before.services.len(), after.services.len());
    }

    #[test]
    fn add_service_errors() {
        let mut s = store_with_service();
        refused(
            &mut s,
            ConfigOp::AddService(ServiceConfig::new(vip())),
            ApplyError::Exists(OpKind::AddService),
            "Service already exists",
        );
        let mut cfg = ServiceConfig::new(tcp(v4(198, 18, 0, 2), 80));
        cfg.scheduler = "bogus".into();
        refused(
            &mut s,
            ConfigOp::AddService(cfg.clone()),
            ApplyError::NotFound(OpKind::AddService),
            "Scheduler or persistence engine not found",
        );
        cfg.scheduler = "rr".into();
        cfg.pe = Some("sip".into());
        refused(
            &mut s,
            ConfigOp::AddService(cfg),
            ApplyError::NotFound(OpKind::AddService),
            "Scheduler or persistence engine not found",
        );
        let mut v6 = ServiceConfig::new(tcp("2001:db8::1".parse().unwrap(), 80));
        v6.netmask = 129;
        let err = s.apply(&ConfigOp::AddService(v6)).unwrap_err();
        assert_eq!(err.errno(), 22);
        assert_eq!(
            err.to_string(),
            "Invalid operation.  Possibly wrong module version, address not unicast, ..."
        );
    }

    #[test]
    fn every_shipped_scheduler_is_accepted() {
        let mut s = ConfigStore::new();
        for (i, name) in SCHEDULERS.iter().enumerate() {
            let mut cfg = ServiceConfig::new(tcp(v4(198, 18, 1, i as u8 + 1), 80));
            cfg.scheduler = name.to_string();
            s.apply(&ConfigOp::AddService(cfg)).expect(name);
        }
        assert_eq!(s.snapshot().services.len(), 14);
    }

    #[test]
    fn edit_delete_zero_service_errors() {
        let mut s = store_with_service();
        let other = tcp(v4(198, 18, 0, 9), 80);
        refused(
            &mut s,
            ConfigOp::EditService(ServiceConfig::new(other)),
            ApplyError::NoService(OpKind::EditService),
            "No such service",
        );
        refused(
            &mut s,
            ConfigOp::DeleteService(other),
            ApplyError::NoService(OpKind::DeleteService),
            "No such service",
        );
        refused(
            &mut s,
            ConfigOp::Zero(Some(other)),
            ApplyError::NoService(OpKind::Zero),
            "No such service",
        );
        let mut cfg = ServiceConfig::new(vip());
        cfg.scheduler = "nope".into();
        refused(
            &mut s,
            ConfigOp::EditService(cfg),
            ApplyError::NotFound(OpKind::EditService),
            "Scheduler or persistence engine not found",
        );
    }

    #[test]
    fn edit_service_replaces_config_and_keeps_dests() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        let mut cfg = ServiceConfig::new(vip());
        cfg.scheduler = "rr".into();
        cfg.persistent = Some(360);
        s.apply(&ConfigOp::EditService(cfg.clone())).unwrap();
        let snap = s.snapshot();
        let svc = snap.service(&vip()).unwrap();
        assert_eq!(svc.config, cfg);
        assert_eq!(svc.dests.len(), 1);
    }

    #[test]
    fn dest_errors() {
        let mut s = store_with_service();
        let other = tcp(v4(198, 18, 0, 9), 80);
        for (op, kind) in [
            (ConfigOp::AddDest(other, dest(1, 1)), OpKind::AddDest),
            (ConfigOp::EditDest(other, dest(1, 1)), OpKind::EditDest),
            (
                ConfigOp::DeleteDest {
                    service: other,
                    addr: v4(198, 19, 0, 1),
                    port: 80,
                },
                OpKind::DeleteDest,
            ),
        ] {
            refused(
                &mut s,
                op,
                ApplyError::NoService(kind),
                "Service not defined",
            );
        }
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        refused(
            &mut s,
            ConfigOp::AddDest(vip(), dest(1, 5)),
            ApplyError::Exists(OpKind::AddDest),
            "Destination already exists",
        );
        refused(
            &mut s,
            ConfigOp::EditDest(vip(), dest(2, 1)),
            ApplyError::NotFound(OpKind::EditDest),
            "No such destination",
        );
        refused(
            &mut s,
            ConfigOp::DeleteDest {
                service: vip(),
                addr: v4(198, 19, 0, 2),
                port: 80,
            },
            ApplyError::NotFound(OpKind::DeleteDest),
            "No such destination",
        );
        let mut d = dest(3, 1);
        d.u_threshold = 10;
        d.l_threshold = 11;
        let err = s.apply(&ConfigOp::AddDest(vip(), d.clone())).unwrap_err();
        assert_eq!(err.errno(), 34);
        assert_eq!(err.to_string(), "Numerical result out of range");
        d.l_threshold = 0;
        d.weight = -1;
        assert_eq!(
            s.apply(&ConfigOp::AddDest(vip(), d)).unwrap_err().errno(),
            34
        );
        let mut gue = dest(4, 1);
        gue.method = ForwardMethod::Tunnel(TunnelConfig {
            kind: TunnelType::Gue,
            port: 0,
            csum: Default::default(),
        });
        assert!(matches!(
            s.apply(&ConfigOp::AddDest(vip(), gue)).unwrap_err(),
            ApplyError::Invalid(OpKind::AddDest, _)
        ));
        assert_eq!(dest_order(&s), vec![v4(198, 19, 0, 1)]);
    }

    #[test]
    fn mixed_family_only_for_tunnel_and_unicast_only() {
        let mut s = store_with_service();
        let mut d = dest(1, 1);
        d.addr = "2001:db8::10".parse().unwrap();
        assert_eq!(
            s.apply(&ConfigOp::AddDest(vip(), d.clone()))
                .unwrap_err()
                .errno(),
            22
        );
        d.method = ForwardMethod::Tunnel(TunnelConfig::default());
        s.apply(&ConfigOp::AddDest(vip(), d))
            .expect("tunnel may mix");
        for bad in [
            v4(224, 0, 0, 1),
            v4(255, 255, 255, 255),
            v4(0, 0, 0, 0),
            IpAddr::V6("fe80::1".parse::<Ipv6Addr>().unwrap()),
        ] {
            let mut d = dest(1, 1);
            d.addr = bad;
            d.method = ForwardMethod::Tunnel(TunnelConfig::default());
            let err = s.apply(&ConfigOp::AddDest(vip(), d)).unwrap_err();
            assert_eq!(
                err,
                ApplyError::Invalid(OpKind::AddDest, "address not unicast")
            );
        }
    }

    #[test]
    fn new_dests_go_to_the_front_and_edit_does_not_move() {
        let mut s = store_with_service();
        for i in 1..=3 {
            s.apply(&ConfigOp::AddDest(vip(), dest(i, 1))).unwrap();
        }
        let order = vec![v4(198, 19, 0, 3), v4(198, 19, 0, 2), v4(198, 19, 0, 1)];
        assert_eq!(dest_order(&s), order);
        s.apply(&ConfigOp::EditDest(vip(), dest(1, 7))).unwrap();
        assert_eq!(dest_order(&s), order);
        let snap = s.snapshot();
        let d = &snap.service(&vip()).unwrap().dests[2];
        assert_eq!(d.config.weight, 7);
        assert_eq!(d.shared.weight(), 7);
    }

    #[test]
    fn generation_counts_changes_and_services_keep_creation_order() {
        let mut s = ConfigStore::new();
        assert_eq!(s.snapshot().generation, 0);
        let keys = [tcp(v4(198, 18, 0, 9), 80), tcp(v4(198, 18, 0, 1), 80)];
        for k in keys {
            s.apply(&ConfigOp::AddService(ServiceConfig::new(k)))
                .unwrap();
        }
        let snap = s.snapshot();
        assert_eq!(snap.generation, 2);
        let got: Vec<_> = snap.services.iter().map(|s| s.config.key).collect();
        assert_eq!(got, keys);
    }

    #[test]
    fn deleted_dest_referenced_is_revived_with_stats() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        s.apply(&ConfigOp::AddDest(vip(), dest(2, 1))).unwrap();
        let snap = s.snapshot();
        let held = Arc::clone(&snap.service(&vip()).unwrap().dests[1].shared);
        drop(snap);
        held.stats.slot(0).conn();
        held.activeconns.store(3, Ordering::Relaxed);
        s.apply(&ConfigOp::DeleteDest {
            service: vip(),
            addr: v4(198, 19, 0, 1),
            port: 80,
        })
        .unwrap();
        assert!(!held.is_available());
        assert_eq!(s.trash_len(), 1);
        assert_eq!(s.dest_stats(&vip(), v4(198, 19, 0, 1), 80), None);
        // Re-added with another weight: the same shared object, at the front.
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 4))).unwrap();
        assert_eq!(s.trash_len(), 0);
        assert!(held.is_available());
        assert_eq!(held.weight(), 4);
        assert_eq!(held.active(), 3);
        let snap = s.snapshot();
        let first = &snap.service(&vip()).unwrap().dests[0];
        assert!(Arc::ptr_eq(&first.shared, &held));
        let row = s.dest_stats(&vip(), v4(198, 19, 0, 1), 80).unwrap();
        assert_eq!(row.counters.conns, 1);
    }

    #[test]
    fn service_delete_trashes_dests_and_readd_revives() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        let held = Arc::clone(&s.snapshot().services[0].dests[0].shared);
        s.apply(&ConfigOp::Flush).unwrap();
        assert!(!held.is_available());
        s.apply(&ConfigOp::AddService(ServiceConfig::new(vip())))
            .unwrap();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        assert!(Arc::ptr_eq(
            &s.snapshot().services[0].dests[0].shared,
            &held
        ));
    }

    #[test]
    fn unreferenced_trash_is_freed_and_not_revived() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        let old = Arc::clone(&s.snapshot().services[0].dests[0].shared);
        old.stats.slot(0).conn();
        let weak = Arc::downgrade(&old);
        drop(old);
        s.apply(&ConfigOp::DeleteDest {
            service: vip(),
            addr: v4(198, 19, 0, 1),
            port: 80,
        })
        .unwrap();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        assert!(weak.upgrade().is_none());
        let row = s.dest_stats(&vip(), v4(198, 19, 0, 1), 80).unwrap();
        assert_eq!(row.counters.conns, 0);
    }

    #[test]
    fn zero_points_per_service_and_all() {
        let mut s = store_with_service();
        let other = tcp(v4(198, 18, 0, 2), 80);
        s.apply(&ConfigOp::AddService(ServiceConfig::new(other)))
            .unwrap();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        let snap = s.snapshot();
        let svc = snap.service(&vip()).unwrap();
        svc.shared.stats.slot(0).inbound(100);
        svc.shared.stats.slot(1).inbound(50);
        svc.dests[0].shared.stats.slot(0).inbound(100);
        snap.service(&other).unwrap().shared.stats.slot(0).conn();
        s.tick_estimators();
        assert_eq!(s.service_stats(&vip()).unwrap().counters.inbytes, 150);
        assert_ne!(s.service_stats(&vip()).unwrap().rates, Rates::default());
        s.apply(&ConfigOp::Zero(Some(vip()))).unwrap();
        let row = s.service_stats(&vip()).unwrap();
        assert_eq!(row.counters, Counters::default());
        assert_eq!(row.rates, Rates::default());
        let d = s.dest_stats(&vip(), v4(198, 19, 0, 1), 80).unwrap();
        assert_eq!(d.counters.inpkts, 0);
        assert_eq!(s.service_stats(&other).unwrap().counters.conns, 1);
        // Counting goes on from the zero point.
        svc.shared.stats.slot(0).inbound(7);
        assert_eq!(s.service_stats(&vip()).unwrap().counters.inbytes, 7);
        s.apply(&ConfigOp::Zero(None)).unwrap();
        assert_eq!(s.service_stats(&other).unwrap().counters.conns, 0);
        assert_eq!(s.service_stats(&vip()).unwrap().counters.inbytes, 0);
        let view = s.stats_view();
        assert_eq!(view.service(&other).counters.conns, 0);
    }

    #[test]
    fn timeouts_zero_means_unchanged() {
        let mut s = ConfigStore::new();
        s.apply(&ConfigOp::SetTimeouts {
            tcp: 0,
            tcp_fin: 30,
            udp: 0,
        })
        .unwrap();
        let t = s.snapshot().timeouts;
        assert_eq!((t.tcp, t.tcp_fin, t.udp), (900, 30, 300));
    }

    #[test]
    fn apply_all_is_all_or_nothing() {
        let mut s = ConfigStore::new();
        let ops = [
            ConfigOp::AddService(ServiceConfig::new(vip())),
            ConfigOp::AddDest(vip(), dest(1, 1)),
            ConfigOp::AddDest(vip(), dest(1, 1)),
        ];
        assert_eq!(
            s.apply_all(&ops),
            Err((2, ApplyError::Exists(OpKind::AddDest)))
        );
        assert!(s.snapshot().services.is_empty());
        assert_eq!(s.snapshot().generation, 0);
        s.apply_all(&ops[..2]).unwrap();
        assert_eq!(dest_order(&s), vec![v4(198, 19, 0, 1)]);
        assert_eq!(s.snapshot().generation, 1);
    }

    #[test]
    fn mirrors_and_overload_follow_edits() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 3))).unwrap();
        let d = Arc::clone(&s.snapshot().services[0].dests[0].shared);
        // Weight 0 keeps the last non-zero weight.
        s.apply(&ConfigOp::EditDest(vip(), dest(1, 0))).unwrap();
        assert_eq!(d.weight(), 0);
        assert_eq!(d.last_weight.load(Ordering::Relaxed), 3);
        // 8 connections, new upper threshold 8: overloaded at once.
        d.activeconns.store(5, Ordering::Relaxed);
        d.inactconns.store(3, Ordering::Relaxed);
        let mut cfg = dest(1, 2);
        cfg.u_threshold = 8;
        s.apply(&ConfigOp::EditDest(vip(), cfg.clone())).unwrap();
        assert!(d.is_overloaded());
        assert_eq!(d.u_threshold.load(Ordering::Relaxed), 8);
        // u = 10: low-water 10 - 2 = 8; 8 is not below: unchanged (set).
        cfg.u_threshold = 10;
        s.apply(&ConfigOp::EditDest(vip(), cfg.clone())).unwrap();
        assert!(d.is_overloaded());
        // u = 12: low-water 9 > 8: cleared.
        cfg.u_threshold = 12;
        s.apply(&ConfigOp::EditDest(vip(), cfg.clone())).unwrap();
        assert!(!d.is_overloaded());
        // u = 0: never overloaded.
        cfg.u_threshold = 4;
        s.apply(&ConfigOp::EditDest(vip(), cfg.clone())).unwrap();
        assert!(d.is_overloaded());
        cfg.u_threshold = 0;
        s.apply(&ConfigOp::EditDest(vip(), cfg)).unwrap();
        assert!(!d.is_overloaded());
    }

    #[test]
    fn edit_dest_range_and_gue_errors() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 1))).unwrap();
        let mut d = dest(1, -3);
        refused(
            &mut s,
            ConfigOp::EditDest(vip(), d.clone()),
            ApplyError::OutOfRange(OpKind::EditDest, "negative weight"),
            "Numerical result out of range",
        );
        d.weight = 1;
        d.method = ForwardMethod::Tunnel(TunnelConfig {
            kind: TunnelType::Gue,
            port: 0,
            csum: Default::default(),
        });
        refused(
            &mut s,
            ConfigOp::EditDest(vip(), d),
            ApplyError::Invalid(OpKind::EditDest, "GUE tunnel without a port"),
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        );
        let mut d = dest(1, 1);
        d.u_threshold = u32::MAX;
        assert_eq!(
            s.apply(&ConfigOp::EditDest(vip(), d)).unwrap_err().errno(),
            22
        );
    }

    #[test]
    fn failed_batch_touches_no_shared_state() {
        let mut s = store_with_service();
        s.apply(&ConfigOp::AddDest(vip(), dest(1, 2))).unwrap();
        let d = Arc::clone(&s.snapshot().services[0].dests[0].shared);
        let ops = [
            ConfigOp::EditDest(vip(), dest(1, 9)),
            ConfigOp::DeleteDest {
                service: vip(),
                addr: v4(198, 19, 0, 1),
                port: 80,
            },
            ConfigOp::DeleteService(tcp(v4(198, 18, 0, 9), 80)),
        ];
        assert_eq!(
            s.apply_all(&ops),
            Err((2, ApplyError::NoService(OpKind::DeleteService)))
        );
        assert_eq!(d.weight(), 2);
        assert!(d.is_available());
        assert_eq!(s.trash_len(), 0);
        assert_eq!(dest_order(&s), vec![v4(198, 19, 0, 1)]);
    }

    /// The snapshot after one change shares every service it did not touch
    /// with the snapshot before, and the untouched service's slot stays.
    #[test]
    fn a_change_shares_untouched_services_with_the_last_snapshot() {
        let mut s = ConfigStore::new();
        let keys: Vec<ServiceKey> = (1..=50).map(|i| tcp(v4(198, 18, 1, i), 80)).collect();
        for k in &keys {
            s.apply(&ConfigOp::AddService(ServiceConfig::new(*k)))
                .unwrap();
            s.apply(&ConfigOp::AddDest(*k, dest(1, 1))).unwrap();
        }
        let before = s.snapshot();
        s.apply(&ConfigOp::AddDest(keys[7], dest(2, 1))).unwrap();
        let after = s.snapshot();
        assert_eq!(after.generation, before.generation + 1);
        let same: Vec<bool> = before
            .services
            .iter()
            .zip(after.services.iter())
            .map(|(a, b)| Arc::ptr_eq(a, b))
            .collect();
        let mut want = vec![true; 50];
        want[7] = false;
        assert_eq!(same, want, "only the changed service is a new Arc");
        assert_eq!(after.services[7].dests.len(), 2);
        let slot = |snap: &Snapshot, k: &ServiceKey| snap.index.get(k).unwrap().slot;
        assert_eq!(slot(&before, &keys[7]), slot(&after, &keys[7]));
        // A deleted service's slot goes to the next new service.
        let freed = slot(&after, &keys[3]);
        s.apply(&ConfigOp::DeleteService(keys[3])).unwrap();
        let new = tcp(v4(198, 18, 2, 1), 80);
        s.apply(&ConfigOp::AddService(ServiceConfig::new(new)))
            .unwrap();
        let last = s.snapshot();
        assert_eq!(slot(&last, &new), freed);
        assert_eq!(
            last.services.last().unwrap().config.key,
            new,
            "creation order"
        );
    }

    /// A batch (as a restore runs it, line by line without a snapshot in
    /// between) compiles each service once, when the snapshot is taken.
    #[test]
    fn snapshots_are_built_when_asked_for() {
        let mut s = store_with_service();
        let first = s.snapshot();
        assert!(
            Arc::ptr_eq(&first, &s.snapshot()),
            "no change, same snapshot"
        );
        for i in 1..=20 {
            s.apply(&ConfigOp::AddDest(vip(), dest(i, 1))).unwrap();
        }
        let snap = s.snapshot();
        assert_eq!(snap.generation, first.generation + 20);
        assert_eq!(dest_order(&s).len(), 20);
        assert_eq!(dest_order(&s)[0], v4(198, 19, 0, 20), "newest first");
        assert!(snap.index.find(6, &v4(198, 18, 0, 1), 80).is_some());
    }
}
