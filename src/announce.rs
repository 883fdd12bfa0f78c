//! Telling a routing daemon which VIPs this director serves (`[announce]`).
//!
//! Behind an ECMP router, a director must attract a VIP's traffic only
//! while it can balance it. uvsd says so the way every routing daemon
//! already listens to: for each served VIP it keeps a host route
//! (`VIP/32`, `VIP/128`) out of its kernel interface in a routing table of
//! its own (`ip route show table T`), and BIRD's `protocol kernel` learns
//! that table and exports it over BGP. No hook script, no BIRD-specific
//! protocol, and nothing can be left behind: the routes go through the
//! kernel interface (a TAP of uvsd's), so when uvsd exits or dies the
//! interface and its routes vanish with it, and BIRD withdraws the VIPs.
//!
//! Served = a service on that address (any protocol and port) with at
//! least one real server of weight > 0. The set is recomputed from every
//! snapshot the control plane publishes (uvsadm, restore, reload), so it
//! follows `-a`, `-e -w 0`, `-d`, `-D`, `-C` at once. Routes are also
//! written again every [`REFRESH`] (replace semantics, no change when they
//! are there), because Linux drops an interface's routes when it goes down
//! and uvsd sets its kernel interface down and up with the port's link.
//!
//! Nothing here runs on the packet path: it runs in the control thread
//! (on publish) and in its own thread (the refresh).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use dataplane::exception::netlink::Netlink;
use dataplane::snapshot::Snapshot;
use serde::Deserialize;
use uvs_model::model::ServiceKey;

/// How often the routes are written again (see the module doc).
pub const REFRESH: Duration = Duration::from_secs(2);

/// `[announce]`: where the served VIPs' routes go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnnounceConfig {
    /// A port's `kernel` interface name.
    pub interface: String,
    /// The kernel routing table (1..=252 or 256..; not main, local, default).
    pub table: u32,
}

impl AnnounceConfig {
    /// Checks the table and that `interface` is one of `kernels` (the
    /// ports' kernel interfaces).
    pub fn check(&self, kernels: &[Option<String>]) -> Result<(), String> {
        if matches!(self.table, 0 | 253..=255) {
            return Err(format!(
                "announce.table {} is reserved (0 unspec, 253 default, 254 main, 255 local): use e.g. 100",
                self.table
            ));
        }
        if !kernels.iter().flatten().any(|k| *k == self.interface) {
            return Err(format!(
                "announce.interface {:?} is not the kernel interface of a port (set kernel = {:?} on the port facing the router)",
                self.interface, self.interface
            ));
        }
        Ok(())
    }
}

/// The VIPs `snapshot` serves: addresses of services that have a real
/// server with weight > 0 (fwmark services have no address).
pub fn served(snapshot: &Snapshot) -> BTreeSet<IpAddr> {
    snapshot
        .services
        .iter()
        .filter(|s| s.dests.iter().any(|d| d.shared.weight() > 0))
        .filter_map(|s| match s.config.key {
            ServiceKey::Addr { addr, .. } => Some(addr),
            ServiceKey::Fwmark { .. } => None,
        })
        .collect()
}

/// The kernel table uvsd writes, once attached.
struct Sink {
    nl: Netlink,
    iface: String,
    ifindex: u32,
    table: u32,
}

#[derive(Default)]
struct State {
    sink: Option<Sink>,
    /// What the last published snapshot serves.
    served: BTreeSet<IpAddr>,
    /// The routes uvsd added (and not deleted since).
    installed: BTreeSet<IpAddr>,
    /// VIPs whose last add failed: logged once, not at every refresh
    /// (an interface set down by hand refuses routes until it is up).
    failing: BTreeSet<IpAddr>,
}

/// Keeps a kernel table equal to the served VIPs (see the module doc).
/// Before [`Announcer::attach`] (and without `[announce]`) it only
/// remembers the served set.
#[derive(Default)]
pub struct Announcer {
    state: Mutex<State>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Announcer")
    }
}

impl Announcer {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new snapshot was published: announce what it serves.
    pub fn update(&self, snapshot: &Snapshot) {
        let mut st = self.state();
        st.served = served(snapshot);
        sync(&mut st, false);
    }

    /// Starts writing routes out of `cfg.interface` into `cfg.table` (the
    /// interface exists: uvsd created it), and the refresh thread.
    pub fn attach(self: &Arc<Self>, cfg: &AnnounceConfig) -> Result<(), String> {
        let err = |e: std::io::Error| format!("announce on {}: {e}", cfg.interface);
        let mut nl = Netlink::open().map_err(err)?;
        let ifindex = nl.index(&cfg.interface).map_err(err)?;
        {
            let mut st = self.state();
            st.sink = Some(Sink {
                nl,
                iface: cfg.interface.clone(),
                ifindex,
                table: cfg.table,
            });
            sync(&mut st, true);
        }
        let (me, stop) = (Arc::clone(self), Arc::clone(&self.stop));
        thread::Builder::new()
            .name("uvs-announce".into())
            .spawn(move || {
                let step = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    thread::sleep(step);
                    waited += step;
                    if waited >= REFRESH {
                        waited = Duration::ZERO;
                        sync(&mut me.state(), true);
                    }
                }
            })
            .map_err(|e| format!("announce thread: {e}"))?;
        Ok(())
    }

    /// Withdraws every VIP and stops (at shutdown, before the workers
    /// stop, so that the router moves the flows while they still flow).
    pub fn withdraw_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut st = self.state();
        st.served.clear();
        sync(&mut st, false);
        st.sink = None;
    }
}

/// Makes the table match `st.served`: adds what is missing (every route
/// again with `all`), deletes what is no longer served. Failures are
/// logged and retried at the next refresh.
fn sync(st: &mut State, all: bool) {
    let State {
        sink,
        served,
        installed,
        failing,
    } = st;
    let Some(s) = sink.as_mut() else {
        return;
    };
    for &vip in served.iter() {
        let new = !installed.contains(&vip);
        if !new && !all {
            continue;
        }
        match s.nl.add_host_route(s.ifindex, s.table, vip) {
            Ok(()) => {
                let recovered = failing.remove(&vip);
                if new || recovered {
                    installed.insert(vip);
                    log(s, vip, "announce", None);
                }
            }
            Err(e) => {
                if failing.insert(vip) {
                    log(s, vip, "announce", Some(e));
                }
            }
        }
    }
    failing.retain(|v| served.contains(v));
    let gone: Vec<IpAddr> = installed.difference(served).copied().collect();
    for vip in gone {
        let r = s.nl.del_host_route(s.ifindex, s.table, vip);
        // ESRCH: the route is gone already (interface down and up).
        match r {
            Err(e) if e.raw_os_error() != Some(3) => log(s, vip, "withdraw", Some(e)),
            _ => {
                installed.remove(&vip);
                log(s, vip, "withdraw", None);
            }
        }
    }
}

fn log(s: &Sink, vip: IpAddr, action: &str, err: Option<std::io::Error>) {
    match err {
        None => crate::log_event!(
            crate::log::Level::Info,
            "announce",
            action = action,
            vip = vip.to_string(),
            iface = s.iface.clone(),
            table = s.table
        ),
        Some(e) => crate::log_event!(
            crate::log::Level::Warn,
            "announce_failed",
            action = action,
            vip = vip.to_string(),
            iface = s.iface.clone(),
            table = s.table,
            error = e.to_string()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::director::{Director, NoDataplane};

    fn served_after(lines: &[&str]) -> BTreeSet<IpAddr> {
        let d = Director::new(NoDataplane::default());
        d.load_rules(&lines.join("\n"))
            .unwrap_or_else(|e| panic!("{lines:?}: {}", e.message));
        let snap = d.dataplane().last.lock().unwrap().clone().unwrap();
        served(&snap)
    }

    fn set(a: &[&str]) -> BTreeSet<IpAddr> {
        a.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_vip_is_served_while_one_real_server_has_weight() {
        let base = [
            "-A -t 198.19.0.10:80 -s mh",
            "-a -t 198.19.0.10:80 -r 198.18.0.21 -g -w 1",
            "-A -u 198.19.0.10:53",
            "-A -t [2001:db8::10]:80",
            "-a -t [2001:db8::10]:80 -r [2001:db8::21]:80 -g",
            "-A -t 198.19.0.20:80",
        ];
        assert_eq!(
            served_after(&base),
            set(&["198.19.0.10", "2001:db8::10"]),
            "a service without real servers is not served"
        );
        let mut l = base.to_vec();
        l.push("-e -t 198.19.0.10:80 -r 198.18.0.21 -g -w 0");
        assert_eq!(served_after(&l), set(&["2001:db8::10"]), "weight 0");
        l.push("-a -u 198.19.0.10:53 -r 198.18.0.22 -w 3");
        assert_eq!(
            served_after(&l),
            set(&["198.19.0.10", "2001:db8::10"]),
            "another service on the same address serves it"
        );
        l.push("-D -u 198.19.0.10:53");
        l.push("-d -t [2001:db8::10]:80 -r [2001:db8::21]:80");
        assert_eq!(served_after(&l), set(&[]));
    }

    #[test]
    fn the_example_directors_configs_are_valid() {
        for (name, text) in [
            ("d1.toml", include_str!("../configs/scaleout/d1.toml")),
            ("d2.toml", include_str!("../configs/scaleout/d2.toml")),
            ("d3.toml", include_str!("../configs/scaleout/d3.toml")),
        ] {
            let v = crate::config::Config::parse(text, std::path::Path::new(name))
                .unwrap_or_else(|e| panic!("{e}"));
            let a = v.raw.announce.expect("[announce]");
            assert_eq!((a.interface.as_str(), a.table), ("uvs0", 100));
        }
        let bad = include_str!("../configs/scaleout/d1.toml").replace("table = 100", "table = 254");
        let e = crate::config::Config::parse(&bad, std::path::Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("announce.table 254 is reserved"), "{e}");
    }

    #[test]
    fn the_table_and_interface_are_checked() {
        let k = vec![None, Some("uvs0".to_string())];
        let c = |iface: &str, table| AnnounceConfig {
            interface: iface.into(),
            table,
        };
        assert!(c("uvs0", 100).check(&k).is_ok());
        assert!(c("uvs0", 1000).check(&k).is_ok());
        for t in [0, 253, 254, 255] {
            assert!(c("uvs0", t).check(&k).unwrap_err().contains("reserved"));
        }
        assert!(c("eth0", 100)
            .check(&k)
            .unwrap_err()
            .contains("not the kernel interface of a port"));
    }
}
