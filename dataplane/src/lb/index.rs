//! Service lookup for packets without a connection (reference 4.1): the
//! fwmark service of a marked packet first, then exact (protocol, VIP,
//! port), then the port-0 service of that VIP.
//!
//! Why it is persistent: the configuration store keeps one index and
//! changes it service by service; every published [`Snapshot`] carries a
//! copy that shares all it can with the previous one. The maps are split
//! into [`SHARDS`] shards behind `Arc`s, so a change copies one shard
//! (1/256th of the table) and a copy of the whole index is one reference
//! count. Workers take the index with the snapshot: picking a new
//! configuration up costs them nothing, whatever the table size.
//!
//! Each entry names the service's slot: a small number the store gives a
//! service for its lifetime (reused after it is deleted), which indexes a
//! worker's per-service scheduler state. Lookups do not allocate.
//!
//! [`Snapshot`]: crate::model::Snapshot

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::model::{Family, Protocol, Service, ServiceKey, Snapshot};

/// Up to this many services are found by a linear scan of a small array
/// (cheaper than hashing an `IpAddr` key); more go through the shards.
const SCAN_MAX: usize = 16;

/// Shards of each map (a power of two).
pub const SHARDS: usize = 256;

/// A service as the index finds it.
#[derive(Debug, Clone)]
pub struct Indexed {
    /// Stable for the service's lifetime; see the module docs.
    pub slot: u32,
    pub service: Arc<Service>,
}

/// A hash map split into shards that copies are shared by: changing one
/// key copies its shard only, if a copy of the map still uses it.
#[derive(Debug, Clone)]
struct Sharded<K, V> {
    shards: Arc<Vec<Arc<HashMap<K, V>>>>,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        let empty = Arc::new(HashMap::new());
        Sharded {
            shards: Arc::new(vec![empty; SHARDS]),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    #[inline]
    fn get(&self, shard: usize, k: &K) -> Option<&V> {
        self.shards[shard].get(k)
    }

    fn shard_mut(&mut self, shard: usize) -> &mut HashMap<K, V> {
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[shard])
    }

    fn values(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

/// The shard of an address: cheap and spread by its low bits, which vary
/// most among a director's VIPs.
#[inline]
fn addr_shard(a: &IpAddr) -> usize {
    let x = match a {
        IpAddr::V4(v) => u32::from(*v),
        IpAddr::V6(v) => {
            let o = v.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]]) ^ u32::from(o[11])
        }
    };
    ((x ^ (x >> 8) ^ (x >> 16)) as usize) & (SHARDS - 1)
}

#[inline]
fn key_shard(k: &ServiceKey) -> usize {
    match k {
        ServiceKey::Addr { addr, port, .. } => {
            (addr_shard(addr) ^ usize::from(*port) ^ usize::from(port >> 8)) & (SHARDS - 1)
        }
        ServiceKey::Fwmark { mark, .. } => (*mark as usize) & (SHARDS - 1),
    }
}

/// The virtual services of one configuration, by key and by address.
#[derive(Debug, Clone)]
pub struct ServiceIndex {
    /// Which index this is a version of (a new one for every index made
    /// from scratch), so that VIP generations are only ever compared
    /// within one line of versions.
    lineage: u64,
    by_key: Sharded<ServiceKey, Indexed>,
    /// How many services use each VIP.
    vips: Sharded<IpAddr, u32>,
    /// Address services.
    addr_services: usize,
    /// Fwmark services (looked up first for a marked packet, when any).
    fwmarks: usize,
    len: usize,
    port0: usize,
    /// Changes whenever an address becomes or stops being a VIP.
    vip_generation: u64,
    /// All address services when there are at most [`SCAN_MAX`].
    few: Arc<Vec<(u8, u16, IpAddr, Indexed)>>,
    /// The IPv4 addresses of `few`, as words in the index itself: the
    /// VIP test of an IPv4 packet ([`ServiceIndex::is_vip_v4`]) reads them
    /// with no pointer to follow past the snapshot.
    few_v4: [u32; SCAN_MAX],
    /// How many of `few_v4` are filled.
    few_v4_len: u8,
}

impl Default for ServiceIndex {
    fn default() -> Self {
        static LINEAGES: AtomicU64 = AtomicU64::new(0);
        ServiceIndex {
            lineage: LINEAGES.fetch_add(1, Ordering::Relaxed),
            by_key: Sharded::default(),
            vips: Sharded::default(),
            addr_services: 0,
            fwmarks: 0,
            len: 0,
            port0: 0,
            vip_generation: 0,
            few: Arc::default(),
            few_v4: [0; SCAN_MAX],
            few_v4_len: 0,
        }
    }
}

impl ServiceIndex {
    /// An index of `snap`'s services, slot = position (for snapshots built
    /// by hand; the store keeps its index up to date instead).
    pub fn build(snap: &Snapshot) -> ServiceIndex {
        let mut ix = ServiceIndex::default();
        for (i, s) in snap.services.iter().enumerate() {
            ix.insert(i as u32, Arc::clone(s));
        }
        ix.finish();
        ix
    }

    /// Adds or replaces the service with `svc`'s key. Lookups need
    /// [`ServiceIndex::finish`] first.
    pub fn insert(&mut self, slot: u32, svc: Arc<Service>) {
        self.clear_few();
        let key = svc.config.key;
        let entry = Indexed { slot, service: svc };
        if self
            .by_key
            .shard_mut(key_shard(&key))
            .insert(key, entry)
            .is_some()
        {
            return;
        }
        self.len += 1;
        self.fwmarks += usize::from(matches!(key, ServiceKey::Fwmark { .. }));
        if let ServiceKey::Addr { addr, port, .. } = key {
            self.addr_services += 1;
            self.port0 += usize::from(port == 0);
            let n = self
                .vips
                .shard_mut(addr_shard(&addr))
                .entry(addr)
                .or_insert(0);
            *n += 1;
            if *n == 1 {
                self.vip_generation += 1;
            }
        }
    }

    /// Removes the service with `key`, if indexed.
    pub fn remove(&mut self, key: &ServiceKey) {
        // The scan array holds services too: drop it until `finish`.
        self.clear_few();
        if self.by_key.get(key_shard(key), key).is_none() {
            return;
        }
        self.by_key.shard_mut(key_shard(key)).remove(key);
        self.len -= 1;
        self.fwmarks -= usize::from(matches!(key, ServiceKey::Fwmark { .. }));
        if let ServiceKey::Addr { addr, port, .. } = *key {
            self.addr_services -= 1;
            self.port0 -= usize::from(port == 0);
            let shard = self.vips.shard_mut(addr_shard(&addr));
            if let Some(n) = shard.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&addr);
                    self.vip_generation += 1;
                }
            }
        }
    }

    /// Call after a round of changes, before lookups: refreshes the small
    /// table's scan array (at most [`SCAN_MAX`] entries).
    pub fn finish(&mut self) {
        let mut few = Vec::new();
        if self.addr_services <= SCAN_MAX {
            for (k, e) in self.by_key.values() {
                if let ServiceKey::Addr {
                    protocol,
                    addr,
                    port,
                } = *k
                {
                    few.push((protocol.number(), port, addr, e.clone()));
                }
            }
            // Hash order is arbitrary; keep the scan order stable.
            few.sort_by_key(|e| e.3.slot);
        }
        self.few_v4_len = 0;
        for (_, _, addr, _) in &few {
            if let IpAddr::V4(a) = addr {
                let a = u32::from(*a);
                let n = usize::from(self.few_v4_len);
                if !self.few_v4[..n].contains(&a) {
                    // `few` holds at most SCAN_MAX services: always a slot.
                    if let Some(slot) = self.few_v4.get_mut(n) {
                        *slot = a;
                        self.few_v4_len += 1;
                    }
                }
            }
        }
        self.few = Arc::new(few);
    }

    /// Empties the scan arrays (until [`ServiceIndex::finish`]).
    fn clear_few(&mut self) {
        self.few = Arc::default();
        self.few_v4_len = 0;
    }

    /// Services indexed (of any kind).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The service with exactly this key.
    #[inline]
    pub fn get(&self, key: &ServiceKey) -> Option<&Indexed> {
        self.by_key.get(key_shard(key), key)
    }

    #[inline]
    fn lookup(&self, proto: u8, dst: &IpAddr, dport: u16) -> Option<&Indexed> {
        if self.addr_services <= SCAN_MAX {
            return self
                .few
                .iter()
                .find(|(p, port, a, _)| *p == proto && *port == dport && a == dst)
                .map(|e| &e.3);
        }
        let key = ServiceKey::Addr {
            protocol: Protocol::from_number(proto)?,
            addr: *dst,
            port: dport,
        };
        self.get(&key)
    }

    /// The service a new packet to `dst:dport` belongs to.
    #[inline]
    pub fn find(&self, proto: u8, dst: &IpAddr, dport: u16) -> Option<&Indexed> {
        if let Some(e) = self.lookup(proto, dst, dport) {
            return Some(e);
        }
        if self.port0 > 0 {
            return self.lookup(proto, dst, 0);
        }
        None
    }

    /// The fwmark service of a packet marked `mark` (non-zero) of family
    /// `family`: the kernel's first lookup (`__ip_vs_svc_fwm_find`), before
    /// [`ServiceIndex::find`]. One comparison when there is none.
    #[inline]
    pub fn find_mark(&self, mark: u32, family: Family) -> Option<&Indexed> {
        if self.fwmarks == 0 || mark == 0 {
            return None;
        }
        self.get(&ServiceKey::Fwmark { mark, family })
    }

    /// Whether any fwmark service exists.
    #[inline]
    pub fn has_fwmarks(&self) -> bool {
        self.fwmarks > 0
    }

    /// Whether `addr` is the address of any virtual service.
    #[inline]
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.is_vip_v4(*a),
            IpAddr::V6(_) if self.addr_services <= SCAN_MAX => {
                self.few.iter().any(|e| e.2 == *addr)
            }
            IpAddr::V6(_) => self.vips.get(addr_shard(addr), addr).is_some(),
        }
    }

    /// [`ServiceIndex::is_vip`] of an IPv4 address: with at most
    /// [`SCAN_MAX`] address services, a scan of their IPv4 addresses kept
    /// as words in the index. Always inlined: the fast lane asks it of
    /// every packet with more than one worker (whose endpoint is the
    /// client's), and the warm-up of every packet of a large table; out of
    /// line, through `few`, it cost 44 instructions per call.
    #[inline(always)]
    pub fn is_vip_v4(&self, a: std::net::Ipv4Addr) -> bool {
        if self.addr_services <= SCAN_MAX {
            let a = u32::from(a);
            let n = usize::from(self.few_v4_len).min(SCAN_MAX);
            // A plain loop: `contains` compiled to an unrolled search that
            // cost the two-worker lane 11 instructions more per packet.
            for &v in &self.few_v4[..n] {
                if v == a {
                    return true;
                }
            }
            false
        } else {
            self.vips
                .get(addr_shard(&IpAddr::V4(a)), &IpAddr::V4(a))
                .is_some()
        }
    }

    /// Changes exactly when the set of [`ServiceIndex::vips`] changes.
    pub fn vip_generation(&self) -> u64 {
        self.vip_generation
    }

    /// Whether `other` has the same [`ServiceIndex::vips`] as this index
    /// for sure (a later or earlier version with no VIP change between).
    pub fn same_vips(&self, other: &ServiceIndex) -> bool {
        self.lineage == other.lineage && self.vip_generation == other.vip_generation
    }

    /// Every virtual service address (for ARP/NDP answers).
    pub fn vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.values().map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigOp, ConfigStore};
    use crate::model::ServiceConfig;

    fn key(p: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: if p.is_multiple_of(2) {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            addr: "198.18.0.100".parse().unwrap(),
            port: p,
        }
    }

    fn store(n: u16) -> ConfigStore {
        let mut st = ConfigStore::new();
        for p in 1..=n {
            st.apply(&ConfigOp::AddService(ServiceConfig::new(key(p))))
                .unwrap();
        }
        st
    }

    #[test]
    fn small_and_large_indexes_find_the_same_services() {
        for n in [3u16, 40] {
            let s = store(n).snapshot();
            for ix in [&s.index, &ServiceIndex::build(&s)] {
                let vip: IpAddr = "198.18.0.100".parse().unwrap();
                for p in 1..=n {
                    let proto = if p % 2 == 0 { 17 } else { 6 };
                    let e = ix.find(proto, &vip, p).unwrap();
                    assert_eq!(e.service.config.key, key(p));
                    assert_eq!(
                        ix.find(if proto == 6 { 17 } else { 6 }, &vip, p)
                            .map(|e| e.slot),
                        None
                    );
                }
                assert!(ix.find(6, &vip, n + 1).is_none());
                assert!(ix.is_vip(&vip));
                assert!(!ix.is_vip(&"198.18.0.101".parse().unwrap()));
                assert_eq!(ix.vips().count(), 1);
            }
        }
    }

    #[test]
    fn the_vip_test_follows_services_added_and_deleted_in_either_family() {
        let svc = |a: &str, port| ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: a.parse().unwrap(),
            port,
        };
        let ip = |a: &str| -> IpAddr { a.parse().unwrap() };
        // Two services on one IPv4 VIP, one on another, one on an IPv6 VIP;
        // then 20 more IPv4 VIPs, past the scan array.
        let mut st = ConfigStore::new();
        for k in [
            svc("198.18.0.1", 80),
            svc("198.18.0.1", 443),
            svc("198.18.0.2", 80),
            svc("2001:db8::1", 80),
        ] {
            st.apply(&ConfigOp::AddService(ServiceConfig::new(k)))
                .unwrap();
        }
        let vips = |st: &ConfigStore, a: &str| {
            let s = st.snapshot();
            let (ix, built) = (&s.index, ServiceIndex::build(&s));
            assert_eq!(ix.is_vip(&ip(a)), built.is_vip(&ip(a)), "{a}");
            if let IpAddr::V4(v4) = ip(a) {
                assert_eq!(ix.is_vip_v4(v4), ix.is_vip(&ip(a)), "{a}");
            }
            ix.is_vip(&ip(a))
        };
        for a in ["198.18.0.1", "198.18.0.2", "2001:db8::1"] {
            assert!(vips(&st, a), "{a}");
        }
        for a in ["198.18.0.3", "2001:db8::2", "::ffff:198.18.0.1"] {
            assert!(!vips(&st, a), "{a}");
        }
        // One of the first VIP's two services goes: still a VIP.
        st.apply(&ConfigOp::DeleteService(svc("198.18.0.1", 80)))
            .unwrap();
        assert!(vips(&st, "198.18.0.1"));
        st.apply(&ConfigOp::DeleteService(svc("198.18.0.1", 443)))
            .unwrap();
        assert!(!vips(&st, "198.18.0.1"));
        assert!(vips(&st, "198.18.0.2"));
        for i in 10..30 {
            let k = svc(&format!("198.18.1.{i}"), 80);
            st.apply(&ConfigOp::AddService(ServiceConfig::new(k)))
                .unwrap();
        }
        for a in ["198.18.0.2", "198.18.1.10", "198.18.1.29", "2001:db8::1"] {
            assert!(vips(&st, a), "{a}");
        }
        for a in ["198.18.0.1", "198.18.1.30"] {
            assert!(!vips(&st, a), "{a}");
        }
    }

    #[test]
    fn a_change_copies_one_shard_and_shares_the_rest() {
        let mut st = store(1000);
        let before = st.snapshot();
        st.apply(&ConfigOp::AddService(ServiceConfig::new(key(1001))))
            .unwrap();
        let after = st.snapshot();
        let old = &before.index.by_key.shards;
        let new = &after.index.by_key.shards;
        let shared = old
            .iter()
            .zip(new.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
        assert!(after.index.get(&key(1001)).is_some());
        assert!(before.index.get(&key(1001)).is_none());
        // The VIP was known already: the VIP set is unchanged.
        assert!(before.index.same_vips(&after.index));
        assert!(!ServiceIndex::default().same_vips(&ServiceIndex::default()));
    }
}
