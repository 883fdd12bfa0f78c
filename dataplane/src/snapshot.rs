//! The engine's view of the configuration: the immutable [`Snapshot`]
//! workers read, its services with their destinations, and the state that
//! outlives snapshots (per-service statistics and locality table, FULLNAT
//! local addresses).
//!
//! Why here and not in `uvs-model`: a snapshot carries compiled engine
//! structures (the packet index of [`crate::lb`], the rule program, the set
//! tables, the source-NAT rules), so it belongs to the engine; the plain
//! configuration it is built from is `uvs_model::model`. Both are reachable
//! as `dataplane::model` for the engine's own code.

use std::sync::Arc;

use crate::model::{DestConfig, DestShared, ServiceConfig, ServiceKey, Timeouts};
use crate::stats::Stats;
pub use uvs_model::model::LocalAddr;

/// Per-service state that outlives snapshots: statistics, and with
/// several workers the lblc/lblcr locality table they share.
#[derive(Debug, Default)]
pub struct ServiceShared {
    pub stats: Stats,
    /// The service's `--toa` switch, for its connections (set when the
    /// service is compiled into a snapshot).
    pub toa: std::sync::atomic::AtomicBool,
    locality: std::sync::OnceLock<Arc<crate::sched::sharedloc::SharedLocality>>,
}

impl ServiceShared {
    /// The service's director-wide lblc/lblcr table, allocated by the first
    /// worker that asks (between bursts, when it builds its scheduler).
    pub fn locality(&self) -> Arc<crate::sched::sharedloc::SharedLocality> {
        Arc::clone(self.locality.get_or_init(Default::default))
    }
}

/// A destination inside a snapshot: its configuration and its shared state.
#[derive(Debug, Clone)]
pub struct Dest {
    pub config: DestConfig,
    pub shared: Arc<DestShared>,
}

/// A service inside a snapshot.
#[derive(Debug, Clone)]
pub struct Service {
    pub config: ServiceConfig,
    /// Destinations in the kernel's list order: a newly added destination is
    /// inserted at the front; an edit does not move it. Schedulers' "first
    /// in list wins a tie" refers to this order.
    pub dests: Vec<Dest>,
    pub shared: Arc<ServiceShared>,
    /// FULLNAT local addresses (`--add-laddr`), in the order added.
    pub locals: Vec<Arc<LocalAddr>>,
}

/// One immutable configuration, as workers see it.
///
/// Services are shared between snapshots: a change builds a new [`Service`]
/// for the services it touched only, and the others are the same `Arc`s as
/// in the previous snapshot (see [`crate::config`]).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases by one with every accepted change (or batch of changes);
    /// a restore published at once advances it by its number of lines.
    pub generation: u64,
    /// Services in creation order (listings sort them themselves).
    pub services: ServiceList,
    pub timeouts: Timeouts,
    /// The IPVS tunables (`/proc/sys/net/ipv4/vs/*`).
    pub tunables: crate::tunables::Tunables,
    /// How many destinations have been deleted since start: a worker that
    /// sees it grow flushes their connections when `expire_nodest_conn` is
    /// on (once per delete, not once per snapshot).
    pub dest_removals: u64,
    /// The same services by key and by address, for the packet path. The
    /// store keeps it; a snapshot built by hand may leave it empty (see
    /// [`crate::lb::ServiceIndex::build`]).
    pub index: crate::lb::ServiceIndex,
    /// The packet rules (iptables), compiled ([`crate::rules`]).
    pub rules: Arc<crate::rules::Program>,
    /// The ipset sets, for `-m set` rules (see [`crate::sets`]).
    pub sets: Arc<crate::sets::SetTable>,
    /// Every FULLNAT local address ever configured, by number (never
    /// shrinks: connections and worker port pools name them by number).
    pub locals: Arc<Vec<Arc<LocalAddr>>>,
    /// The `nat POSTROUTING` rules of routed traffic ([`crate::snat`]).
    pub nat: Arc<crate::snat::NatRules>,
}

impl Snapshot {
    /// The service with exactly this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        if !self.index.is_empty() {
            return self.index.get(key).map(|e| &*e.service);
        }
        self.services
            .iter()
            .find(|s| &s.config.key == key)
            .map(|s| &**s)
    }
}

/// Services in creation order, shared between snapshots a chunk at a
/// time: replacing, adding or removing one service copies its chunk (at
/// most [`ServiceList::CHUNK`] pointers) and the list of chunks (one
/// pointer per chunk), and a copy of the whole list is one reference count.
/// Reads like a slice of `Arc<Service>` (`iter`, `len`, indexing).
#[derive(Debug, Clone, Default)]
pub struct ServiceList {
    chunks: Arc<Vec<Arc<Chunk>>>,
    len: usize,
}

/// Up to [`ServiceList::CHUNK`] services with their creation numbers, in
/// creation order.
type Chunk = Vec<(u64, Arc<Service>)>;

impl ServiceList {
    /// Services per chunk at most.
    pub const CHUNK: usize = 256;

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Service>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().map(|e| &e.1))
    }

    pub fn last(&self) -> Option<&Arc<Service>> {
        self.chunks.last().and_then(|c| c.last()).map(|e| &e.1)
    }

    /// The chunk and position of the `i`th service.
    fn locate(&self, mut i: usize) -> Option<(usize, usize)> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.len() {
                return Some((c, i));
            }
            i -= chunk.len();
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&Arc<Service>> {
        let (c, j) = self.locate(i)?;
        Some(&self.chunks[c][j].1)
    }

    /// The `i`th service, its chunk copied first if another list shares it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Arc<Service>> {
        let (c, j) = self.locate(i)?;
        let chunk = Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[c]);
        Some(&mut chunk[j].1)
    }

    /// The chunk that holds creation number `seq` or would hold it.
    fn chunk_of(&self, seq: u64) -> Option<usize> {
        let c = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.0 < seq));
        (c < self.chunks.len()).then_some(c)
    }

    /// Adds the service with creation number `seq`, or replaces it.
    pub fn put(&mut self, seq: u64, svc: Arc<Service>) {
        let chunks = Arc::make_mut(&mut self.chunks);
        let c = match Self::chunk_for_put(chunks, seq) {
            Some(c) => c,
            None => {
                chunks.push(Arc::new(Vec::with_capacity(Self::CHUNK)));
                chunks.len() - 1
            }
        };
        let chunk = Arc::make_mut(&mut chunks[c]);
        match chunk.binary_search_by_key(&seq, |e| e.0) {
            Ok(j) => chunk[j].1 = svc,
            Err(j) => {
                chunk.insert(j, (seq, svc));
                self.len += 1;
                if chunk.len() > Self::CHUNK {
                    let tail = chunk.split_off(Self::CHUNK / 2);
                    chunks.insert(c + 1, Arc::new(tail));
                }
            }
        }
    }

    /// Where `put` goes: the chunk that would hold `seq`, else the last
    /// chunk if it has room (`None`: a new chunk).
    fn chunk_for_put(chunks: &[Arc<Chunk>], seq: u64) -> Option<usize> {
        let c = chunks.partition_point(|c| c.last().is_some_and(|e| e.0 < seq));
        if c < chunks.len() {
            return Some(c);
        }
        let last = chunks.len().checked_sub(1)?;
        (chunks[last].len() < Self::CHUNK).then_some(last)
    }

    /// Removes the service with creation number `seq`, if listed.
    pub fn remove(&mut self, seq: u64) {
        let Some(c) = self.chunk_of(seq) else {
            return;
        };
        let Ok(j) = self.chunks[c].binary_search_by_key(&seq, |e| e.0) else {
            return;
        };
        let chunks = Arc::make_mut(&mut self.chunks);
        let chunk = Arc::make_mut(&mut chunks[c]);
        chunk.remove(j);
        self.len -= 1;
        if chunk.is_empty() {
            chunks.remove(c);
        }
    }
}

impl std::ops::Index<usize> for ServiceList {
    type Output = Arc<Service>;
    fn index(&self, i: usize) -> &Arc<Service> {
        match self.get(i) {
            Some(s) => s,
            None => panic!("service {i} of {}", self.len),
        }
    }
}

impl std::ops::IndexMut<usize> for ServiceList {
    fn index_mut(&mut self, i: usize) -> &mut Arc<Service> {
        let len = self.len;
        match self.get_mut(i) {
            Some(s) => s,
            None => panic!("service {i} of {len}"),
        }
    }
}

impl FromIterator<Arc<Service>> for ServiceList {
    fn from_iter<I: IntoIterator<Item = Arc<Service>>>(it: I) -> Self {
        let mut l = ServiceList::default();
        for (i, s) in it.into_iter().enumerate() {
            l.put(i as u64, s);
        }
        l
    }
}

impl From<Vec<Arc<Service>>> for ServiceList {
    fn from(v: Vec<Arc<Service>>) -> Self {
        v.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a ServiceList {
    type Item = &'a Arc<Service>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a Arc<Service>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn svc(port: u16) -> Arc<Service> {
        Arc::new(Service {
            config: ServiceConfig::new(ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: "198.18.0.1".parse().unwrap(),
                port,
            }),
            dests: Vec::new(),
            shared: Arc::default(),
            locals: Vec::new(),
        })
    }

    fn ports(l: &ServiceList) -> Vec<u16> {
        l.iter()
            .map(|s| match s.config.key {
                ServiceKey::Addr { port, .. } => port,
                ServiceKey::Fwmark { .. } => 0,
            })
            .collect()
    }

    /// Creation order holds through adds, replacements and removals across
    /// chunks, and a change leaves all chunks but one shared with a copy.
    #[test]
    fn service_list_keeps_creation_order_and_shares_chunks() {
        let n = 3 * ServiceList::CHUNK as u16;
        let mut l = ServiceList::default();
        for p in 1..=n {
            l.put(u64::from(p), svc(p));
        }
        let copy = l.clone();
        l.put(5, svc(5000));
        l.remove(300);
        l.remove(301);
        l.remove(9999);
        let mut want: Vec<u16> = (1..=n).filter(|p| *p != 300 && *p != 301).collect();
        want[4] = 5000;
        assert_eq!(ports(&l), want);
        assert_eq!(l.len(), want.len());
        assert_eq!(
            ports(&copy),
            (1..=n).collect::<Vec<_>>(),
            "the copy is untouched"
        );
        let shared = l
            .chunks
            .iter()
            .filter(|c| copy.chunks.iter().any(|d| Arc::ptr_eq(c, d)))
            .count();
        assert_eq!(
            shared,
            l.chunks.len() - 2,
            "only the two changed chunks are new"
        );
        // Removing every service of a chunk drops the chunk.
        for p in 1..=ServiceList::CHUNK as u64 {
            l.remove(p);
        }
        assert_eq!(l.len(), want.len() - ServiceList::CHUNK);
        assert!(l.chunks.iter().all(|c| !c.is_empty()));
        assert_eq!(l.last().map(Arc::as_ptr), copy.last().map(Arc::as_ptr));
    }
}
