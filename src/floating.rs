//! Which floating addresses this director holds, read from its ports'
//! kernel interfaces: keepalived's VRRP puts its `virtual_ipaddress`es on
//! the MASTER's interface and takes them off when it leaves MASTER, so
//! the addresses on the interface are the VRRP state, as keepalived
//! itself shows it to the kernel. What the workers do with it:
//! `dataplane::net::floating`.
//!
//! Why a poll of rtnetlink's address dump rather than a subscription to
//! its address notifications: a dump cannot miss a change (a notification
//! can be lost when the socket's buffer overflows, and then the state is
//! wrong until the next change), it needs no bound multicast socket (and
//! so no `unsafe` outside the DPDK layer), and its cost every
//! [`PERIOD`] is one small message exchange. The delay it adds (at most
//! [`PERIOD`]) is small beside VRRP's own: a BACKUP declares the MASTER
//! dead after three advert intervals (3 s with `advert_int 1`).
//!
//! Every change is logged (`vip_taken`, `vip_released`): a flapping VRRP
//! peer shows as a run of them; nothing here can stop the director (a
//! netlink error is logged, rate-limited, and the last state kept).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::exception::netlink::Netlink;
use dataplane::net::FloatingCell;

use crate::config::Validated;
use crate::log::{Level, RateLimit};
use crate::log_event;

/// How often the kernel interfaces' addresses are read.
pub const PERIOD: Duration = Duration::from_millis(50);

/// One floating address to look for: on which interface (index and name).
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    ifindex: u32,
    iface: String,
    addr: IpAddr,
}

/// The floating addresses present in `dump` (interface index, address)
/// on the interface they belong to, in `wanted`'s order.
fn held(dump: &[(u32, IpAddr)], wanted: &[Wanted]) -> Vec<IpAddr> {
    wanted
        .iter()
        .filter(|w| dump.contains(&(w.ifindex, w.addr)))
        .map(|w| w.addr)
        .collect()
}

/// The watcher thread; [`Watcher::stop`] ends it.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the watcher if a port has floating addresses (their kernel
/// interfaces exist already). The cell starts empty: nothing is held
/// until the first read says so.
pub fn start(v: &Validated, cell: Arc<FloatingCell>) -> Result<Option<Watcher>, String> {
    if v.port_floating.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let mut nl = Netlink::open().map_err(|e| format!("floating addresses: rtnetlink: {e}"))?;
    let mut wanted = vec![];
    for (i, addrs) in v.port_floating.iter().enumerate() {
        let Some(iface) = v.port_kernel[i].as_deref() else {
            continue;
        };
        let ifindex = nl
            .index(iface)
            .map_err(|e| format!("floating addresses: kernel interface {iface}: {e}"))?;
        wanted.extend(addrs.iter().map(|&addr| Wanted {
            ifindex,
            iface: iface.to_string(),
            addr,
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("uvs-floating".into())
        .spawn(move || watch(nl, &wanted, &cell, &flag))
        .map_err(|e| format!("floating addresses: thread: {e}"))?;
    Ok(Some(Watcher {
        stop,
        thread: Some(thread),
    }))
}

fn watch(mut nl: Netlink, wanted: &[Wanted], cell: &FloatingCell, stop: &AtomicBool) {
    let mut now_held: Vec<IpAddr> = vec![];
    let mut errors = RateLimit::new(1, Duration::from_secs(60));
    while !stop.load(Ordering::Relaxed) {
        match nl.addresses() {
            Ok(dump) => {
                let h = held(&dump, wanted);
                if h != now_held {
                    cell.publish(h.clone());
                    for w in wanted {
                        let (was, is) = (now_held.contains(&w.addr), h.contains(&w.addr));
                        if was != is {
                            log_event!(
                                Level::Info,
                                if is { "vip_taken" } else { "vip_released" },
                                address = w.addr.to_string(),
                                iface = w.iface.as_str()
                            );
                        }
                    }
                    now_held = h;
                }
            }
            Err(e) => {
                if let Some(suppressed) = errors.allow(Instant::now()) {
                    log_event!(
                        Level::Warn,
                        "floating_read_failed",
                        detail = e.to_string(),
                        suppressed = suppressed,
                        kept = "the addresses last read"
                    );
                }
            }
        }
        std::thread::sleep(PERIOD);
    }
}

impl Watcher {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_held_only_on_its_own_interface() {
        let w = |ifindex, addr: &str| Wanted {
            ifindex,
            iface: format!("if{ifindex}"),
            addr: ip(addr),
        };
        let wanted = [w(5, "198.18.0.100"), w(6, "198.18.1.254")];
        let dump = [
            (5, ip("198.18.0.1")),
            (5, ip("198.18.0.100")),
            (5, ip("198.18.1.254")),
            (1, ip("127.0.0.1")),
        ];
        assert_eq!(held(&dump, &wanted), vec![ip("198.18.0.100")]);
        assert!(held(&[], &wanted).is_empty());
    }
}
