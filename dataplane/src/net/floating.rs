//! Floating addresses: VIPs (and gateways) that two directors share under
//! VRRP, served only by the one that holds them.
//!
//! Why: in an HA pair both directors carry the same services, but only
//! the VRRP MASTER may answer ARP/NDP for the VIPs and take their traffic;
//! a BACKUP that answered too would split the clients between two
//! directors. keepalived decides who is MASTER and shows it the way it
//! does for the kernel: it puts its `virtual_ipaddress`es on the MASTER's
//! interface and takes them off the BACKUP's. uvsd reads that from the
//! port's kernel interface (the daemon's watcher polls the addresses over
//! rtnetlink) and publishes the addresses it holds in a [`FloatingCell`];
//! each worker picks the set up between bursts, like a configuration
//! snapshot, into its stack's [`Floating`].
//!
//! A floating address (`[[port]] floating = [...]`):
//! * held: answered in ARP/NDP on its port (as a port address is, even if
//!   no service uses it: a NAT gateway for the real servers), and traffic
//!   to it goes to the load balancer as usual;
//! * not held (standby): not answered, and traffic to it is dropped and
//!   counted (`drop_vip_standby`) before the load balancer sees it.
//!
//! When a worker takes addresses, the first worker announces them from the
//! DPDK port (gratuitous ARP, unsolicited neighbour advertisement), once it
//! serves them; keepalived's own gratuitous ARPs, sent through the kernel
//! interface (which carries the port's MAC), leave by the port as they are
//! and say the same.
//!
//! Cost on the packet path: one `is_empty` test per packet on a director
//! that holds all its floating addresses (or has none); a scan of the few
//! standby addresses on a BACKUP.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The floating addresses the director holds now, published by the
/// control side and picked up by every worker between bursts.
#[derive(Debug, Default)]
pub struct FloatingCell {
    held: ArcSwap<Vec<IpAddr>>,
    generation: AtomicU64,
}

impl FloatingCell {
    /// Publishes the addresses now held (any order).
    pub fn publish(&self, held: Vec<IpAddr>) {
        self.held.store(Arc::new(held));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Moves on every publish (one atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The addresses last published.
    pub fn load(&self) -> Arc<Vec<IpAddr>> {
        self.held.load_full()
    }
}

/// One worker's view: the configured floating addresses by port, and
/// which of them are held.
#[derive(Debug, Default, Clone)]
pub struct Floating {
    configured: Vec<(u16, IpAddr)>,
    held: Vec<IpAddr>,
    standby: Vec<IpAddr>,
}

impl Floating {
    /// `configured` floating addresses (port id, address), none held yet:
    /// a director starts as a BACKUP until keepalived says otherwise.
    pub fn new(configured: Vec<(u16, IpAddr)>) -> Floating {
        let standby = configured.iter().map(|&(_, a)| a).collect();
        Floating {
            configured,
            held: Vec::new(),
            standby,
        }
    }

    /// Takes the published `held` set (addresses that are not configured
    /// floating addresses are ignored). Returns the addresses taken now,
    /// with their port, for announcing.
    pub fn set_held(&mut self, held: &[IpAddr]) -> Vec<(u16, IpAddr)> {
        let taken = self
            .configured
            .iter()
            .filter(|(_, a)| held.contains(a) && !self.held.contains(a))
            .copied()
            .collect();
        self.held = self
            .configured
            .iter()
            .map(|&(_, a)| a)
            .filter(|a| held.contains(a))
            .collect();
        self.standby = self
            .configured
            .iter()
            .map(|&(_, a)| a)
            .filter(|a| !held.contains(a))
            .collect();
        taken
    }

    /// Whether `ip` is a floating address this director does not hold:
    /// neither answered nor served.
    #[inline]
    pub fn is_standby(&self, ip: &IpAddr) -> bool {
        !self.standby.is_empty() && self.standby.contains(ip)
    }

    /// Whether `ip` is a floating address of `port` held now (answered in
    /// ARP/NDP there).
    pub fn holds(&self, port: u16, ip: &IpAddr) -> bool {
        self.held.contains(ip) && self.configured.contains(&(port, *ip))
    }

    /// The floating addresses held now.
    pub fn held(&self) -> &[IpAddr] {
        &self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_director_starts_holding_nothing() {
        let f = Floating::new(vec![(0, ip("198.18.0.100")), (1, ip("198.18.1.1"))]);
        assert!(f.is_standby(&ip("198.18.0.100")));
        assert!(f.is_standby(&ip("198.18.1.1")));
        assert!(!f.is_standby(&ip("198.18.0.101")), "not floating: served");
        assert!(!f.holds(0, &ip("198.18.0.100")));
    }

    #[test]
    fn taking_and_losing_addresses() {
        let mut f = Floating::new(vec![
            (0, ip("198.18.0.100")),
            (0, ip("2001:db8::100")),
            (1, ip("198.18.1.1")),
        ]);
        let taken = f.set_held(&[ip("198.18.0.100"), ip("198.18.1.1"), ip("198.18.9.9")]);
        assert_eq!(taken, vec![(0, ip("198.18.0.100")), (1, ip("198.18.1.1"))]);
        assert!(f.holds(0, &ip("198.18.0.100")));
        assert!(
            !f.holds(1, &ip("198.18.0.100")),
            "answered on its own port only"
        );
        assert!(f.is_standby(&ip("2001:db8::100")));
        assert!(
            !f.is_standby(&ip("198.18.9.9")),
            "an address not configured"
        );
        // The same set again: nothing new to announce.
        assert!(f
            .set_held(&[ip("198.18.1.1"), ip("198.18.0.100")])
            .is_empty());
        // keepalived took them away (BACKUP again), then gave one back.
        assert!(f.set_held(&[]).is_empty());
        assert!(f.is_standby(&ip("198.18.0.100")) && f.held().is_empty());
        assert_eq!(
            f.set_held(&[ip("2001:db8::100")]),
            vec![(0, ip("2001:db8::100"))]
        );
    }

    #[test]
    fn without_floating_addresses_nothing_is_standby() {
        let mut f = Floating::default();
        assert!(!f.is_standby(&ip("198.18.0.100")));
        assert!(f.set_held(&[ip("198.18.0.100")]).is_empty());
    }

    #[test]
    fn the_cell_moves_its_generation_on_publish() {
        let c = FloatingCell::default();
        let g = c.generation();
        c.publish(vec![ip("198.18.0.100")]);
        assert_ne!(c.generation(), g);
        assert_eq!(*c.load(), vec![ip("198.18.0.100")]);
    }
}
