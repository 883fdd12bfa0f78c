//! Start-up of the ports' kernel interfaces (the exception path, see
//! `dataplane::exception`): one TAP per port that names one, with the
//! port's MAC, MTU and addresses, the config's routes through it, and the
//! rings and thread that carry frames between it and the workers.
//!
//! Kept apart from `daemon.rs` so that the daemon reads as its steps:
//! open, start, stop, report.

use std::net::IpAddr;
use std::sync::Arc;

use dataplane::dpdk::{Eal, Mempool, Port, Ring};
use dataplane::exception::kernel::{self, ExceptionThread, KernelLink, LinkCounters};
use dataplane::exception::netlink::{self, Netlink};
use dataplane::net::Prefix;

use crate::config::Validated;

/// The kernel interfaces once open; the thread starts with [`Self::start`].
pub struct KernelSide {
    /// The TAP devices (dropped before the pool and EAL).
    pub taps: Vec<Arc<Port>>,
    /// One ring per worker toward the exception thread.
    pub rings: Vec<Arc<Ring>>,
    /// One ring per worker back from it (what the kernels send).
    pub back: Vec<Arc<Ring>>,
    links: Vec<KernelLink>,
    /// Per kernel interface: the port's name, the interface's, counters.
    counters: Vec<(String, String, Arc<LinkCounters>)>,
}

/// Whether port `i` of the config has a kernel interface.
pub fn wanted(v: &Validated, i: usize) -> bool {
    v.port_kernel.get(i).is_some_and(Option::is_some)
}

/// Opens the kernel interfaces of the ports that name one (None if no
/// port does). `ports` are in config order.
pub fn open(
    v: &Validated,
    eal: &Eal,
    ports: &[Arc<Port>],
    pool: &Arc<Mempool>,
    nworkers: usize,
) -> Result<Option<KernelSide>, String> {
    if !(0..ports.len()).any(|i| wanted(v, i)) {
        return Ok(None);
    }
    let mut nl = Netlink::open().map_err(|e| format!("kernel interfaces: rtnetlink: {e}"))?;
    let mut side = KernelSide {
        taps: vec![],
        rings: vec![],
        back: vec![],
        links: vec![],
        counters: vec![],
    };
    for (i, port) in ports.iter().enumerate() {
        let Some(iface) = v.port_kernel[i].as_deref() else {
            continue;
        };
        let err = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "port {}: kernel interface {iface}: {what}: {e}",
                port.name()
            )
        };
        let tap = kernel::open_tap(eal, port, iface, i, Arc::clone(pool))
            .map_err(|e| err("creating the TAP", &e))?;
        side.taps.push(Arc::clone(&tap));
        // Best effort (no IPv6 in this namespace, for one); then down and
        // up, so that the link-local address comes back without DAD.
        if netlink::quiet_ipv6(iface).is_ok() {
            tap.set_link(false);
            tap.set_link(true);
        }
        let index = nl.index(iface).map_err(|e| err("finding it", &e))?;
        for p in &v.port_addrs[i] {
            nl.add_address(index, p)
                .map_err(|e| err(&format!("adding address {p}"), &e))?;
        }
        let routes = routes_through(&v.routes, &v.port_addrs[i]);
        for (to, via) in &routes {
            nl.add_route(index, to, *via)
                .map_err(|e| err(&format!("adding route to {to} via {via}"), &e))?;
        }
        let counters = Arc::new(LinkCounters::default());
        side.links.push(KernelLink {
            port: Arc::clone(port),
            tap: tap.claim(Some(0), 0).map_err(|e| err("its queues", &e))?,
            follow_link: !port.driver().contains("tap"),
            ifindex: index,
            addrs: v.port_addrs[i].clone(),
            routes,
            counters: Arc::clone(&counters),
        });
        side.counters
            .push((port.name().to_string(), iface.to_string(), counters));
        let addrs: Vec<String> = v.port_addrs[i].iter().map(|p| p.to_string()).collect();
        crate::log_event!(
            crate::log::Level::Info,
            "kernel_interface",
            port = port.name(),
            iface = iface,
            index = index,
            addresses = if addrs.is_empty() {
                "none".to_string()
            } else {
                addrs.join(" ")
            }
        );
    }
    for w in 0..nworkers {
        let ring = |name: String| {
            Ring::new(eal, &name, kernel::RING_SIZE, false)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        side.rings.push(ring(format!("uvs_exc{w}"))?);
        side.back.push(ring(format!("uvs_exc_back{w}"))?);
    }
    Ok(Some(side))
}

/// The config's routes whose gateway is on one of `addrs`' prefixes.
fn routes_through(routes: &[(Prefix, IpAddr)], addrs: &[Prefix]) -> Vec<(Prefix, IpAddr)> {
    routes
        .iter()
        .filter(|(_, via)| addrs.iter().any(|p| p.contains(*via)))
        .copied()
        .collect()
}

impl KernelSide {
    /// Worker `w`'s rings toward and back from the exception thread.
    pub fn rings(&self, w: usize) -> (Option<Arc<Ring>>, Option<Arc<Ring>>) {
        (self.rings.get(w).cloned(), self.back.get(w).cloned())
    }

    /// Starts the exception thread (it takes the queues).
    pub fn start(&mut self, eal: &Eal) -> Result<ExceptionThread, String> {
        let links = std::mem::take(&mut self.links);
        ExceptionThread::start(eal, links, self.rings.clone(), self.back.clone())
            .map_err(|e| e.to_string())
    }

    /// One shutdown-report event per kernel interface.
    pub fn report(&self) {
        for (port, iface, c) in &self.counters {
            let mut fields = vec![
                ("port", crate::log::Value::from(port)),
                ("iface", crate::log::Value::from(iface)),
            ];
            let values = c.values();
            fields.extend(values.iter().map(|(n, v)| (*n, crate::log::Value::Num(*v))));
            crate::log::write(
                crate::log::Level::Info,
                "kernel_interface_counters",
                &fields,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_through_the_port_of_their_gateway() {
        let addrs: Vec<Prefix> = vec!["198.18.0.1/24".parse().unwrap()];
        let r = |to: &str, via: &str| (to.parse::<Prefix>().unwrap(), via.parse().unwrap());
        let routes = [
            r("0.0.0.0/0", "198.18.0.254"),
            r("198.19.0.0/16", "198.18.1.2"),
        ];
        assert_eq!(routes_through(&routes, &addrs), vec![routes[0]]);
    }
}
