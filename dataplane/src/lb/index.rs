//! Service lookup for packets without a connection (reference 4.1): exact
//! (protocol, VIP, port) first, then the port-0 service of that VIP.
//!
//! Built once per snapshot, between bursts; lookups do not allocate.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use crate::model::{ServiceKey, Snapshot};

/// The virtual services of one snapshot, by address.
#[derive(Debug, Default, Clone)]
pub struct ServiceIndex {
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
                ix.vips.insert(addr);
                ix.any_port0 |= port == 0;
            }
        }
        ix
    }

    /// The service a new packet to `dst:dport` belongs to.
    #[inline]
    pub fn find(&self, proto: u8, dst: &IpAddr, dport: u16) -> Option<usize> {
        if self.by_key.is_empty() {
            return None;
        }
        if let Some(&i) = self.by_key.get(&(proto, *dst, dport)) {
            return Some(i);
        }
        if self.any_port0 {
            return self.by_key.get(&(proto, *dst, 0)).copied();
        }
        None
    }

    /// Whether `addr` is the address of any virtual service.
    #[inline]
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        !self.vips.is_empty() && self.vips.contains(addr)
    }

    /// Every virtual service address (for ARP/NDP answers).
    pub fn vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.iter()
    }
}
