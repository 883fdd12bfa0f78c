//! ipvsadm's output, byte for byte: configuration, counters, rates and
//! connections -> the exact text ipvsadm 1.31 prints (reference section 2).
//!
//! Why exact bytes: operators and their scripts parse `ipvsadm -L -n` and
//! `ipvsadm -S` output; trailing spaces from left-justified last columns,
//! the K/M/G/T large-number routine, truncation of service text to 33 and
//! real-server text to 28 characters and the sort order (with its
//! signed-difference quirk, see [`sort`]) are all kept.
//!
//! Everything here is a pure function from a [`Listing`] (or a few plain
//! values) to a `String`; nothing reads the daemon's state itself. A
//! `Listing` is plain serialisable data captured from the configuration
//! snapshot and the statistics at one moment, so the daemon can send it and
//! the client can format it, resolving names on its own side.
//! Name lookups go through a [`Resolver`] so tests are deterministic.
//!
//! Known differences from a kernel director:
//! * `--nosort` lists services in creation order (the kernel's hash-table
//!   order cannot be reproduced) and destinations in the kernel's list
//!   order (newest first), which is exact.
//! * Method `Local` never appears (modern kernels never report it either).
//!
//! ## `--json` (a UVS extension)
//! [`json_services`] prints one object, always numeric, followed by a
//! newline:
//! ```text
//! { "version": "1.2.1", "conn_tab_size": 4096,
//!   "services": [ {
//!     "protocol": "TCP" | "UDP" | "SCTP" | null (fwmark),
//!     "address": "198.18.0.1" | null, "port": 80 | null,
//!     "fwmark": 7 | null, "family": "ipv4" | "ipv6",
//!     "scheduler": "wlc", "flags": ["sh-fallback", ...],
//!     "persistent": 360 | null, "netmask": "255.255.255.255" | 128,
//!     "pe": "sip" | null, "ops": false,
//!     "stats": {"conns","inpkts","outpkts","inbytes","outbytes"},
//!     "rates": {"cps","inpps","outpps","inbps","outbps"},
//!     "dests": [ { "address", "port", "forward": "Masq"|"Route"|"Tunnel",
//!       "tunnel": null | {"type": "ipip"|"gue"|"gre", "port", "csum":
//!                 "nocsum"|"csum"|"remcsum"},
//!       "weight", "u_threshold", "l_threshold", "active_conns",
//!       "inactive_conns", "persistent_conns", "stats", "rates" } ] } ] }
//! ```
//! Services and destinations are in listing order (`--nosort` honoured);
//! `-L <service>` gives the same object with just that service.

pub mod counters;
pub mod names;
pub mod sort;

use std::fmt::Write as _;
use std::net::IpAddr;

use dataplane::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uvs_model::model::{
    ConnEntry, DestConfig, Family, ForwardMethod, Protocol, SchedFlags, ServiceConfig, ServiceKey,
    Timeouts, TunnelCsum, TunnelType,
};
use uvs_model::ops::{StatsRow, StatsView};

use crate::command::{DaemonState, Detail, ListOptions};
pub use names::{NoNames, Resolver, SystemResolver};

/// IPVS version ipvsadm reports (the kernel's 1.2.1).
pub const IPVS_VERSION: &str = "1.2.1";

/// One real server as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestListing {
    pub config: DestConfig,
    pub active: u32,
    pub inactive: u32,
    /// Persistence templates bound to it.
    pub persistent: u32,
    /// Counters since the zero point, and rates.
    pub stats: StatsRow,
}

/// One service as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceListing {
    pub config: ServiceConfig,
    pub stats: StatsRow,
    /// In the kernel's list order (newest first).
    pub dests: Vec<DestListing>,
    /// FULLNAT local addresses, in the order added.
    #[serde(default)]
    pub locals: Vec<IpAddr>,
}

/// Everything a service listing or `-S` reads, captured at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Connection hash-table size, shown as `size=` in the header.
    pub conn_tab_size: u32,
    /// In creation order.
    pub services: Vec<ServiceListing>,
}

impl Listing {
    /// Reads a snapshot's services, their connection counters and their
    /// statistics (from [`dataplane::config::ConfigStore::stats_view`]).
    pub fn capture(snapshot: &Snapshot, stats: &StatsView, conn_tab_size: u32) -> Listing {
        let services = snapshot
            .services
            .iter()
            .map(|s| {
                let key = s.config.key;
                ServiceListing {
                    config: s.config.clone(),
                    stats: stats.service(&key),
                    dests: s
                        .dests
                        .iter()
                        .map(|d| DestListing {
                            config: d.config.clone(),
                            active: d.shared.active(),
                            inactive: d.shared.inactive(),
                            persistent: d
                                .shared
                                .persistconns
                                .load(std::sync::atomic::Ordering::Relaxed),
                            stats: stats.dest(&key, d.config.addr, d.config.port),
                        })
                        .collect(),
                    locals: s.locals.iter().map(|l| l.addr).collect(),
                }
            })
            .collect();
        Listing {
            conn_tab_size,
            services,
        }
    }

    /// The service with exactly this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceListing> {
        self.services.iter().find(|s| &s.config.key == key)
    }

    /// The services `-L` shows: one (or ESRCH), or all in listing order.
    fn selected(&self, opts: &ListOptions) -> Result<Vec<&ServiceListing>, ListError> {
        match &opts.service {
            Some(k) => Ok(vec![self.service(k).ok_or(ListError::NoSuchService)?]),
            None => Ok(sort::services(&self.services, opts.nosort)),
        }
    }
}

/// A listing the kernel would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// `-L <service>` for a service that does not exist (ESRCH).
    #[error("No such service")]
    NoSuchService,
}

/// One running sync daemon with the kernel's values filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    pub state: DaemonState,
    pub mcast_interface: String,
    pub syncid: u8,
    /// 0 = not shown.
    pub maxlen: u16,
    pub group: Option<IpAddr>,
    /// 0 = not shown.
    pub port: u16,
    /// 0 = not shown.
    pub ttl: u8,
    /// UVS's counters of this daemon's traffic (JSON listing only).
    pub counters: Vec<(String, u64)>,
}

/// ipvsadm's `print_largenum`: fixed width 9 with K/M/G/T above 10^8, or
/// exact with `--exact`.
pub fn largenum(v: u64, exact: bool) -> String {
    if exact {
        let digits = v.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{v:>width$}");
    }
    const K: u64 = 1_000;
    match v {
        _ if v < 100_000_000 => format!("{v:>9}"),
        _ if v < 1_000_000_000 => format!("{:>8}K", v / K),
        _ if v < 100_000_000_000 => format!("{:>8}M", v / 1_000_000),
        _ if v < 100_000_000_000_000 => format!("{:>8}G", v / 1_000_000_000),
        _ => format!("{:>8}T", v / 1_000_000_000_000),
    }
}

/// Scheduler flag names as ipvsadm prints them (comma-joined, no spaces):
/// sh and mh name only their two flags, every other scheduler gets
/// `flag-N`.
fn sched_flags(cfg: &ServiceConfig) -> String {
    let f = cfg.sched_flags.0;
    let table: &[(u32, &str)] = match cfg.scheduler.as_str() {
        "sh" => &[
            (SchedFlags::SCHED1, "sh-fallback"),
            (SchedFlags::SCHED2, "sh-port"),
        ],
        "mh" => &[
            (SchedFlags::SCHED1, "mh-fallback"),
            (SchedFlags::SCHED2, "mh-port"),
        ],
        _ => &[
            (SchedFlags::SCHED1, "flag-1"),
            (SchedFlags::SCHED2, "flag-2"),
            (SchedFlags::SCHED3, "flag-3"),
        ],
    };
    table
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

fn any_sched_flag(cfg: &ServiceConfig) -> bool {
    cfg.sched_flags.0 & (SchedFlags::SCHED1 | SchedFlags::SCHED2 | SchedFlags::SCHED3) != 0
}

fn dotted(mask: u32) -> String {
    std::net::Ipv4Addr::from(mask).to_string()
}

/// The protocol whose port names a service's real servers use. The kernel
/// reports no protocol for fwmark services, so ipvsadm prints their real
/// servers' ports as numbers even without `-n`.
fn service_proto(key: &ServiceKey) -> Option<Protocol> {
    match key {
        ServiceKey::Addr { protocol, .. } => Some(*protocol),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// The service text of listings: `TCP  198.18.0.1:80`, `FWM  7 IPv6`;
/// non-IPv6 text is cut to 33 characters.
fn service_text(key: &ServiceKey, numeric: bool, r: &dyn Resolver) -> String {
    match *key {
        ServiceKey::Fwmark { mark, family } => match family {
            Family::V4 => format!("FWM  {mark}"),
            Family::V6 => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let v = names::addrport(&addr, port, Some(protocol), numeric, r);
            let mut s = format!("{:<4} {}", protocol.name(), v);
            if Family::of(&addr) != Family::V6 {
                names::cut(&mut s, 33);
            }
            s
        }
    }
}

/// The service text of `-S`: `-t 198.18.0.1:80`, `-f 7 -6`.
fn service_rule(key: &ServiceKey, numeric: bool, r: &dyn Resolver) -> String {
    match *key {
        ServiceKey::Fwmark { mark, family } => match family {
            Family::V4 => format!("-f {mark}"),
            Family::V6 => format!("-f {mark} -6"),
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let opt = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!(
                "{opt} {}",
                names::addrport(&addr, port, Some(protocol), numeric, r)
            )
        }
    }
}

/// Real-server text: cut to 28 characters unless the address is IPv6.
fn dest_text(key: &ServiceKey, d: &DestListing, numeric: bool, r: &dyn Resolver) -> String {
    let c = &d.config;
    let mut s = names::addrport(&c.addr, c.port, service_proto(key), numeric, r);
    if Family::of(&c.addr) != Family::V6 {
        names::cut(&mut s, 28);
    }
    s
}

/// The default service line: `<text> <sched> (flags) persistent T mask M
/// pe P ops`.
fn service_line(svc: &ServiceListing, numeric: bool, r: &dyn Resolver) -> String {
    let cfg = &svc.config;
    let mut s = format!("{} {}", service_text(&cfg.key, numeric, r), cfg.scheduler);
    if any_sched_flag(cfg) {
        let _ = write!(s, " ({})", sched_flags(cfg));
    }
    if let Some(t) = cfg.persistent {
        let _ = write!(s, " persistent {t}");
        match cfg.key.family() {
            Family::V4 if cfg.netmask != u32::MAX => {
                let _ = write!(s, " mask {}", dotted(cfg.netmask));
            }
            Family::V6 if cfg.netmask != 128 => {
                let _ = write!(s, " mask {}", cfg.netmask);
            }
            _ => {}
        }
        if let Some(pe) = &cfg.pe {
            let _ = write!(s, " pe {pe}");
        }
    }
    if cfg.one_packet {
        s.push_str(" ops");
    }
    // A UVS extension (DPVS shows its flag the same way).
    if cfg.synproxy {
        s.push_str(" synproxy");
    }
    if cfg.toa {
        s.push_str(" toa");
    }
    s
}

fn tun_flag(c: TunnelCsum) -> &'static str {
    match c {
        TunnelCsum::NoCsum => "-c",
        TunnelCsum::Csum => "+c",
        TunnelCsum::RemCsum => "r+c",
    }
}

fn tun_info(m: &ForwardMethod) -> String {
    match m {
        ForwardMethod::Tunnel(t) => match t.kind {
            TunnelType::Ipip => "ipip".to_string(),
            TunnelType::Gue => format!("gue:{}:{}", t.port, tun_flag(t.csum)),
            TunnelType::Gre => format!("gre:{}", tun_flag(t.csum)),
        },
        _ => "n/a".to_string(),
    }
}

fn title(detail: Detail) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    let cols5 = |c: [&str; 5]| {
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n",
            c[0], c[1], c[2], c[3], c[4]
        )
    };
    match detail {
        Detail::Stats => cols5(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        Detail::Rate => cols5(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        Detail::Thresholds => format!(
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        Detail::PersistentConn => format!(
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        Detail::TunInfo => format!(
            "{PROT} Scheduler Flags\n{REMOTE}           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        Detail::Default => format!(
            "{PROT} Scheduler Flags\n{REMOTE}           Forward Weight ActiveConn InActConn\n"
        ),
    }
}

fn counters5(row: &StatsRow, exact: bool) -> String {
    let c = &row.counters;
    [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes]
        .iter()
        .map(|v| largenum(*v, exact))
        .collect()
}

fn rates5(row: &StatsRow, exact: bool) -> String {
    let r = &row.rates;
    [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
        .iter()
        .map(|v| largenum(*v, exact))
        .collect()
}

fn print_service(
    out: &mut String,
    svc: &ServiceListing,
    detail: Detail,
    opts: &ListOptions,
    r: &dyn Resolver,
) {
    let key = &svc.config.key;
    let n = opts.numeric;
    let _ = match detail {
        Detail::Stats => writeln!(
            out,
            "{:<33}{}",
            service_text(key, n, r),
            counters5(&svc.stats, opts.exact)
        ),
        Detail::Rate => writeln!(
            out,
            "{:<33}{}",
            service_text(key, n, r),
            rates5(&svc.stats, opts.exact)
        ),
        _ => writeln!(out, "{}", service_line(svc, n, r)),
    };
    for d in sort::dests(&svc.dests, opts.nosort) {
        let name = dest_text(key, d, n, r);
        let c = &d.config;
        let _ = match detail {
            Detail::Stats => writeln!(out, "  -> {name:<28}{}", counters5(&d.stats, opts.exact)),
            Detail::Rate => {
                let t = &d.stats.rates;
                writeln!(
                    out,
                    "  -> {name:<28} {:>8} {:>8} {:>8}{}{}",
                    t.cps,
                    t.inpps,
                    t.outpps,
                    largenum(t.inbps, opts.exact),
                    largenum(t.outbps, opts.exact)
                )
            }
            Detail::Thresholds => writeln!(
                out,
                "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
                c.u_threshold, c.l_threshold, d.active, d.inactive
            ),
            Detail::PersistentConn => writeln!(
                out,
                "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                // ipvsadm prints the int weight with %u.
                c.weight as u32,
                d.persistent,
                d.active,
                d.inactive
            ),
            Detail::TunInfo => writeln!(
                out,
                "  -> {name:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                c.method.name(),
                tun_info(&c.method),
                c.weight,
                d.active,
                d.inactive
            ),
            Detail::Default => writeln!(
                out,
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                c.method.name(),
                c.weight,
                d.active,
                d.inactive
            ),
        };
    }
}

/// `-L` of services: the version header (unless one service is asked
/// for), the titles of `detail`, then each service and its destinations.
pub fn list_services(
    listing: &Listing,
    detail: Detail,
    opts: &ListOptions,
    resolver: &dyn Resolver,
) -> Result<String, ListError> {
    let services = listing.selected(opts)?;
    let mut out = String::new();
    if opts.service.is_none() {
        let _ = writeln!(
            out,
            "IP Virtual Server version {IPVS_VERSION} (size={})",
            listing.conn_tab_size
        );
    }
    out.push_str(&title(detail));
    for svc in services {
        print_service(&mut out, svc, detail, opts, resolver);
    }
    Ok(out)
}

/// `-S`: rules in `-R` format, sorted; thresholds are not saved.
pub fn save(listing: &Listing, numeric: bool, resolver: &dyn Resolver) -> String {
    let mut out = String::new();
    for svc in sort::services(&listing.services, false) {
        let cfg = &svc.config;
        let name = service_rule(&cfg.key, numeric, resolver);
        let _ = write!(out, "-A {name} -s {}", cfg.scheduler);
        if let Some(t) = cfg.persistent {
            let _ = write!(out, " -p {t}");
            match cfg.key.family() {
                Family::V4 if cfg.netmask != u32::MAX => {
                    let _ = write!(out, " -M {}", dotted(cfg.netmask));
                }
                Family::V6 if cfg.netmask != 128 => {
                    let _ = write!(out, " -M {}", cfg.netmask);
                }
                _ => {}
            }
        }
        if let Some(pe) = &cfg.pe {
            let _ = write!(out, " --pe {pe}");
        }
        if cfg.one_packet {
            out.push_str(" -o");
        }
        if any_sched_flag(cfg) {
            let _ = write!(out, " -b {}", sched_flags(cfg));
        }
        if cfg.synproxy {
            out.push_str(" -j enable");
        }
        if cfg.toa {
            out.push_str(" --toa");
        }
        out.push('\n');
        for d in sort::dests(&svc.dests, false) {
            let c = &d.config;
            let addr = names::addrport(&c.addr, c.port, service_proto(&cfg.key), numeric, resolver);
            let switch = match c.method {
                ForwardMethod::Masq => "-m",
                ForwardMethod::Route => "-g",
                ForwardMethod::Tunnel(_) => "-i",
                ForwardMethod::FullNat => "-b",
            };
            let _ = write!(out, "-a {name} -r {addr} {switch} -w {}", c.weight);
            if let ForwardMethod::Tunnel(t) = c.method {
                let csum = match t.csum {
                    TunnelCsum::NoCsum => "--tun-nocsum",
                    TunnelCsum::Csum => "--tun-csum",
                    TunnelCsum::RemCsum => "--tun-remcsum",
                };
                let _ = match t.kind {
                    TunnelType::Ipip => write!(out, " --tun-type ipip"),
                    TunnelType::Gue => {
                        write!(out, " --tun-type gue --tun-port {} {csum}", t.port)
                    }
                    TunnelType::Gre => write!(out, " --tun-type gre {csum}"),
                };
            }
            out.push('\n');
        }
        for l in &svc.locals {
            let _ = writeln!(out, "-P {name} -z {}", names::ntop(l));
        }
    }
    out
}

/// `--get-laddr [service]` in DPVS's layout: a title, then per service its
/// `VIP:VPORT` and number of local addresses, and one line per address
/// with its port conflicts (new connections refused for want of a free
/// port) and the connections holding one of its ports.
pub fn laddrs(snap: &Snapshot, key: Option<&ServiceKey>) -> Result<String, ListError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<20} {:<10} {:<10}",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
    );
    let services: Vec<&dataplane::snapshot::Service> = match key {
        Some(k) => vec![snap.service(k).ok_or(ListError::NoSuchService)?],
        None => snap.services.iter().map(|s| &**s).collect(),
    };
    for s in services {
        let vip = match s.config.key {
            ServiceKey::Addr { addr, port, .. } => match addr {
                IpAddr::V6(a) => format!("[{a}]:{port}"),
                IpAddr::V4(a) => format!("{a}:{port}"),
            },
            ServiceKey::Fwmark { mark, .. } => format!("FWM {mark}"),
        };
        let _ = writeln!(out, "{:<20} {:<8} ", vip, s.locals.len());
        for l in &s.locals {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "",
                "",
                l.addr.to_string(),
                l.conflicts.load(std::sync::atomic::Ordering::Relaxed),
                l.conns.load(std::sync::atomic::Ordering::Relaxed).max(0)
            );
        }
    }
    Ok(out)
}

fn conn_proto(name: &str) -> Option<Protocol> {
    match name {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// `-L -c` (and `--persistent-conn`): the connection table.
// The titles keep ipvsadm's printf shape (format plus literal arguments).
#[allow(clippy::write_literal)]
pub fn connections(
    conns: &[ConnEntry],
    persistent_conn: bool,
    numeric: bool,
    resolver: &dyn Resolver,
) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {}",
            "state", "source", "virtual", "destination"
        );
    }
    for c in conns {
        let p = conn_proto(&c.protocol);
        let cname = names::addrport(&c.client, c.cport, p, numeric, resolver);
        let vname = names::addrport(&c.vaddr, c.vport, p, numeric, resolver);
        let dname = names::addrport(&c.daddr, c.dport, p, numeric, resolver);
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        let _ = match (&c.pe, persistent_conn) {
            (Some((pe_name, pe_data)), true) => writeln!(
                out,
                "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}",
                c.protocol, expire, c.state, cname, vname, dname, pe_name, pe_data
            ),
            _ => writeln!(
                out,
                "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                c.protocol, expire, c.state, cname, vname, dname
            ),
        };
    }
    out
}

/// `-L --timeout`.
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// `-L --daemon`: master first, then backup; nothing if none runs.
pub fn daemons(list: &[DaemonStatus]) -> String {
    let mut out = String::new();
    for want in [DaemonState::Master, DaemonState::Backup] {
        for d in list.iter().filter(|d| d.state == want) {
            let kind = match d.state {
                DaemonState::Master => "master",
                DaemonState::Backup => "backup",
            };
            let _ = write!(
                out,
                "{kind} sync daemon (mcast={}, syncid={}",
                d.mcast_interface, d.syncid
            );
            if d.maxlen != 0 {
                let _ = write!(out, ", maxlen={}", d.maxlen);
            }
            if let Some(g) = &d.group {
                let _ = write!(out, ", group={}", names::ntop(g));
            }
            if d.port != 0 {
                let _ = write!(out, ", port={}", d.port);
            }
            if d.ttl != 0 {
                let _ = write!(out, ", ttl={}", d.ttl);
            }
            out.push_str(")\n");
        }
    }
    out
}

fn stats_json(row: &StatsRow) -> (Value, Value) {
    let c = &row.counters;
    let r = &row.rates;
    (
        json!({"conns": c.conns, "inpkts": c.inpkts, "outpkts": c.outpkts,
               "inbytes": c.inbytes, "outbytes": c.outbytes}),
        json!({"cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
               "inbps": r.inbps, "outbps": r.outbps}),
    )
}

fn dest_json(d: &DestListing) -> Value {
    let c = &d.config;
    let tunnel = match c.method {
        ForwardMethod::Tunnel(t) => json!({
            "type": match t.kind {
                TunnelType::Ipip => "ipip",
                TunnelType::Gue => "gue",
                TunnelType::Gre => "gre",
            },
            "port": t.port,
            "csum": match t.csum {
                TunnelCsum::NoCsum => "nocsum",
                TunnelCsum::Csum => "csum",
                TunnelCsum::RemCsum => "remcsum",
            },
        }),
        _ => Value::Null,
    };
    let (stats, rates) = stats_json(&d.stats);
    json!({
        "address": names::ntop(&c.addr),
        "port": c.port,
        "forward": c.method.name(),
        "tunnel": tunnel,
        "weight": c.weight,
        "u_threshold": c.u_threshold,
        "l_threshold": c.l_threshold,
        "active_conns": d.active,
        "inactive_conns": d.inactive,
        "persistent_conns": d.persistent,
        "stats": stats,
        "rates": rates,
    })
}

fn service_json(svc: &ServiceListing, nosort: bool) -> Value {
    let cfg = &svc.config;
    let (protocol, address, port, fwmark) = match cfg.key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (
            json!(protocol.name()),
            json!(names::ntop(&addr)),
            json!(port),
            Value::Null,
        ),
        ServiceKey::Fwmark { mark, .. } => (Value::Null, Value::Null, Value::Null, json!(mark)),
    };
    let flags: Vec<String> = if any_sched_flag(cfg) {
        sched_flags(cfg)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let netmask = match cfg.key.family() {
        Family::V4 => json!(dotted(cfg.netmask)),
        Family::V6 => json!(cfg.netmask),
    };
    let (stats, rates) = stats_json(&svc.stats);
    json!({
        "protocol": protocol,
        "address": address,
        "port": port,
        "fwmark": fwmark,
        "family": match cfg.key.family() {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        },
        "scheduler": cfg.scheduler,
        "flags": flags,
        "persistent": cfg.persistent,
        "netmask": netmask,
        "pe": cfg.pe,
        "ops": cfg.one_packet,
        "synproxy": cfg.synproxy,
        "toa": cfg.toa,
        "laddrs": svc.locals,
        "stats": stats,
        "rates": rates,
        "dests": sort::dests(&svc.dests, nosort)
            .into_iter()
            .map(dest_json)
            .collect::<Vec<_>>(),
    })
}

/// `-L --json`: the schema is in the module documentation.
pub fn json_services(listing: &Listing, opts: &ListOptions) -> Result<String, ListError> {
    let services = listing.selected(opts)?;
    let v = json!({
        "version": IPVS_VERSION,
        "conn_tab_size": listing.conn_tab_size,
        "services": services
            .into_iter()
            .map(|s| service_json(s, opts.nosort))
            .collect::<Vec<_>>(),
    });
    Ok(format!("{v}\n"))
}

/// `-L -c --json`: `{"connections": [ConnEntry...]}` with the fields of
/// [`ConnEntry`] (addresses numeric, `expires` in seconds, `pe` null or
/// `[name, data]`).
pub fn json_connections(conns: &[ConnEntry]) -> String {
    format!("{}\n", json!({ "connections": conns }))
}

/// `-L --timeout --json`: `{"tcp": 900, "tcp_fin": 120, "udp": 300}`.
pub fn json_timeouts(t: &Timeouts) -> String {
    format!(
        "{}\n",
        json!({"tcp": t.tcp, "tcp_fin": t.tcp_fin, "udp": t.udp})
    )
}

/// `-L --daemon --json`: `{"daemons": [{"state": "master"|"backup",
/// "mcast_interface", "syncid", "maxlen", "group" (null or address),
/// "port", "ttl", "counters" (name: value, summed over master and
/// backup)}]}`.
pub fn json_daemons(list: &[DaemonStatus]) -> String {
    let items: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "state": match d.state { DaemonState::Master => "master", DaemonState::Backup => "backup" },
                "mcast_interface": d.mcast_interface,
                "syncid": d.syncid,
                "maxlen": d.maxlen,
                "group": d.group.map(|g| names::ntop(&g)),
                "port": d.port,
                "ttl": d.ttl,
                "counters": d.counters.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect::<serde_json::Map<String, Value>>(),
            })
        })
        .collect();
    format!("{}\n", json!({ "daemons": items }))
}

/// What a `-L` may need, gathered by the caller. `conns` and `daemons` are
/// only read for `-c` and `--daemon`; pass empty slices otherwise.
#[derive(Debug, Clone, Copy)]
pub struct ListSources<'a> {
    pub listing: &'a Listing,
    pub timeouts: Timeouts,
    pub conns: &'a [ConnEntry],
    pub daemons: &'a [DaemonStatus],
}

/// Any `-L`: dispatches on the list kind and `--json`.
pub fn list(
    src: &ListSources,
    opts: &ListOptions,
    resolver: &dyn Resolver,
) -> Result<String, ListError> {
    use crate::command::ListKind;
    let t = &src.timeouts;
    Ok(match (opts.kind, opts.json) {
        (ListKind::Services(_), true) => json_services(src.listing, opts)?,
        (ListKind::Services(detail), false) => list_services(src.listing, detail, opts, resolver)?,
        (ListKind::Connections { .. }, true) => json_connections(src.conns),
        (ListKind::Connections { persistent_conn }, false) => {
            connections(src.conns, persistent_conn, opts.numeric, resolver)
        }
        (ListKind::Timeout, true) => json_timeouts(t),
        (ListKind::Timeout, false) => timeouts(t),
        (ListKind::Daemon, true) => json_daemons(src.daemons),
        (ListKind::Daemon, false) => daemons(src.daemons),
    })
}

#[cfg(test)]
mod tests;
