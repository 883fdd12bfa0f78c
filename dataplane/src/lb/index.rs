//! Service lookup for packets without a connection (reference 4.1): exact
//! (protocol, VIP, port) first, then the port-0 service of that VIP.
//!
//! Built once per snapshot, between bursts; lookups do not allocate.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use crate::model::{ServiceKey, Snapshot};

/// Up to this many services are found by a linear scan of a small array
/// (cheaper than hashing an `IpAddr` key); more go through a hash map.
const SCAN_MAX: usize = 16;

/// The virtual services of one snapshot, by address.
#[derive(Debug, Default, Clone)]
pub struct ServiceIndex {
    few: Vec<(u8, u16, IpAddr, usize)>,
    by_key: HashMap<(u8, IpAddr, u16), usize>,
    vips: HashSet<IpAddr>,
    any_port0: bool,
}

impl ServiceIndex {
    /// Indexes `snap`'s services (fwmark services are not matched: there
    /// are no firewall marks in the data plane).
    pub fn build(snap: &Snapshot) -> ServiceIndex {
        let mut ix = ServiceIndex::default();
        for (i, s) in snap.services.iter().enumerate() {
            if let ServiceKey::Addr {
                protocol,
                addr,
                port,
            } = s.config.key
            {
                ix.by_key.insert((protocol.number(), addr, port), i);
                ix.few.push((protocol.number(), port, addr, i));
                ix.vips.insert(addr);
                ix.any_port0 |= port == 0;
            }
        }
        if ix.few.len() > SCAN_MAX {
            ix.few.clear();
        } else {
            ix.by_key.clear();
        }
        ix
    }

    #[inline]
    fn get(&self, proto: u8, dst: &IpAddr, dport: u16) -> Option<usize> {
        if self.by_key.is_empty() {
            self.few
                .iter()
                .find(|(p, port, a, _)| *p == proto && *port == dport && a == dst)
                .map(|e| e.3)
        } else {
            self.by_key.get(&(proto, *dst, dport)).copied()
        }
    }

    /// The service a new packet to `dst:dport` belongs to.
    #[inline]
    pub fn find(&self, proto: u8, dst: &IpAddr, dport: u16) -> Option<usize> {
        if let Some(i) = self.get(proto, dst, dport) {
            return Some(i);
        }
        if self.any_port0 {
            return self.get(proto, dst, 0);
        }
        None
    }

    /// Whether `addr` is the address of any virtual service.
    #[inline]
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        if self.by_key.is_empty() {
            self.few.iter().any(|e| e.2 == *addr)
        } else {
            self.vips.contains(addr)
        }
    }

    /// Every virtual service address (for ARP/NDP answers).
    pub fn vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigOp, ConfigStore};
    use crate::model::{Protocol, ServiceConfig};

    fn snap(n: u16) -> std::sync::Arc<Snapshot> {
        let mut st = ConfigStore::new();
        for p in 1..=n {
            let key = ServiceKey::Addr {
                protocol: if p % 2 == 0 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                addr: "198.18.0.100".parse().unwrap(),
                port: p,
            };
            st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
                .unwrap();
        }
        st.snapshot()
    }

    #[test]
    fn small_and_large_indexes_find_the_same_services() {
        for n in [3u16, 40] {
            let s = snap(n);
            let ix = ServiceIndex::build(&s);
            let vip: IpAddr = "198.18.0.100".parse().unwrap();
            for p in 1..=n {
                let proto = if p % 2 == 0 { 17 } else { 6 };
                let i = ix.find(proto, &vip, p).unwrap();
                assert!(
                    matches!(s.services[i].config.key, ServiceKey::Addr { port, .. } if port == p)
                );
                assert_eq!(ix.find(if proto == 6 { 17 } else { 6 }, &vip, p), None);
            }
            assert_eq!(ix.find(6, &vip, n + 1), None);
            assert!(ix.is_vip(&vip));
            assert!(!ix.is_vip(&"198.18.0.101".parse().unwrap()));
        }
    }
}
