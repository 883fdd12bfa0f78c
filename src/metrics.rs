//! Prometheus metrics: an HTTP endpoint in the text exposition format
//! (version 0.0.4), served by a thread of its own.
//!
//! Off by default; `[metrics] listen = "127.0.0.1:9112"` turns it on. The
//! thread never touches a worker: it reads what workers already publish for
//! the control thread (per-worker counters written by one worker each and
//! read with relaxed loads, the statistics slots the director sums for
//! `ipvsadm -L --stats`, the ports' hardware counters), so a scrape costs
//! the packet path nothing.
//!
//! Names: where the meaning is the kernel's, the metric is the one
//! node_exporter's IPVS collector exposes (`node_ipvs_*`, same labels), so
//! dashboards and alerts written for an LVS director keep working. The
//! global `node_ipvs_*_total` counters are the sums over the services, as
//! `/proc/net/ip_vs_stats` is for the kernel; like the kernel's, they count
//! from the last `-Z` (and a deleted service's share leaves them), which
//! Prometheus reads as a counter reset. Everything else is UVS's own, under
//! `uvs_`. The list is in README.md ("Metrics and logs").
//!
//! [`Sample`] is what one scrape reads (plain data), [`render`] turns it
//! into text: both are tested without EAL or a socket.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use control::format::Listing;
use dataplane::dpdk::{Port, PortStats};
use dataplane::frag::FragDrop;
use dataplane::lb::{LbCounters, LbDrop};
use dataplane::net::{Counter, NetCounters};
use dataplane::wire::ParseError;
use serde::Deserialize;
use uvs_model::model::ServiceKey;

use crate::control_hook::UvsDirector;
use crate::log::{Level, RateLimit};
use crate::log_event;

/// `[metrics]` in the daemon's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port of the HTTP endpoint; none: no endpoint.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// One worker's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSample {
    /// Every L2/L3 counter, in [`Counter::ALL`] order.
    pub stack: Vec<(Counter, u64)>,
    /// Malformed frames by the parser's reason.
    pub malformed: Vec<(ParseError, u64)>,
    /// Load-balancer drops by reason.
    pub lb_drops: Vec<(LbDrop, u64)>,
    /// Fragments dropped by the reassembly, by reason.
    pub frag_drops: Vec<(FragDrop, u64)>,
    pub created: u64,
    pub icmp_sent: u64,
    pub icmp_related: u64,
    /// Fragments taken for reassembly, datagrams reassembled, path MTUs
    /// learned from ICMP errors about tunnel packets.
    pub fragments: u64,
    pub reassembled: u64,
    pub pmtu_learned: u64,
    /// FULLNAT segments sent without the TOA option (no room).
    pub toa_skipped: u64,
    pub table_entries: u64,
    pub table_capacity: u64,
    /// The SYN proxy's counters, by name.
    pub synproxy: [(&'static str, u64); 5],
    /// Connections the `drop_entry` defence removed, by name.
    pub defense: [(&'static str, u64); 2],
}

impl WorkerSample {
    pub fn read(net: &NetCounters, lb: &LbCounters, capacity: u32) -> WorkerSample {
        WorkerSample {
            stack: Counter::ALL.iter().map(|c| (*c, net.get(*c))).collect(),
            malformed: ParseError::ALL
                .iter()
                .map(|e| (*e, net.get_parse(*e)))
                .collect(),
            lb_drops: LbDrop::ALL.iter().map(|r| (*r, lb.drops(*r))).collect(),
            frag_drops: FragDrop::ALL
                .iter()
                .map(|r| (*r, lb.frag.drops(*r)))
                .collect(),
            created: lb.created.load(Ordering::Relaxed),
            icmp_sent: lb.icmp_sent.load(Ordering::Relaxed),
            icmp_related: lb.icmp_related.load(Ordering::Relaxed),
            fragments: lb.frag.fragments.load(Ordering::Relaxed),
            reassembled: lb.frag.reassembled.load(Ordering::Relaxed),
            pmtu_learned: lb.pmtu_learned.load(Ordering::Relaxed),
            toa_skipped: lb.toa_skipped.load(Ordering::Relaxed),
            table_entries: lb.table_entries.load(Ordering::Relaxed),
            table_capacity: u64::from(capacity),
            synproxy: lb.synproxy.named(),
            defense: lb.defense.named(),
        }
    }

    /// Every counter by the name `uvsadm --counters` and telemetry give
    /// it: the stack's by name, parser reasons as `malformed_<reason>`,
    /// reassembly drops by their reason, load-balancer drops as
    /// `lb_drop_<reason>`, then the load balancer's
    /// own counts and the table's fill and capacity.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .stack
            .iter()
            .map(|(c, n)| (c.as_str().to_string(), *n))
            .collect();
        v.extend(
            self.malformed
                .iter()
                .map(|(e, n)| (format!("malformed_{}", e.as_str()), *n)),
        );
        v.extend(
            self.frag_drops
                .iter()
                .map(|(r, n)| (r.as_str().to_string(), *n)),
        );
        v.extend(
            self.lb_drops
                .iter()
                .map(|(r, n)| (format!("lb_drop_{}", r.as_str()), *n)),
        );
        for (name, n) in [
            ("connections_created", self.created),
            ("icmp_errors_sent", self.icmp_sent),
            ("icmp_errors_related", self.icmp_related),
            ("fragments_received", self.fragments),
            ("datagrams_reassembled", self.reassembled),
            ("path_mtus_learned", self.pmtu_learned),
            ("toa_skipped", self.toa_skipped),
            ("conn_table_entries", self.table_entries),
            ("conn_table_capacity", self.table_capacity),
        ] {
            v.push((name.to_string(), n));
        }
        v.extend(self.synproxy.iter().map(|(k, n)| (k.to_string(), *n)));
        v.extend(self.defense.iter().map(|(k, n)| (k.to_string(), *n)));
        v
    }

    /// The load balancer's own events that no other family exports:
    /// reassembly, path MTUs learned, TOA skipped, the SYN proxy's
    /// counters and the `drop_entry` defence's removals, by the names
    /// `uvsadm --counters` gives them.
    pub fn lb_events(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("fragments_received", self.fragments),
            ("datagrams_reassembled", self.reassembled),
            ("path_mtus_learned", self.pmtu_learned),
            ("toa_skipped", self.toa_skipped),
        ]
        .into_iter()
        .chain(self.synproxy.iter().copied())
        .chain(self.defense.iter().copied())
    }

    /// A stack counter's value.
    pub fn stack(&self, c: Counter) -> u64 {
        self.stack
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, v)| *v)
    }
}

/// Everything one scrape reads.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub listing: Listing,
    pub workers: Vec<WorkerSample>,
    /// Port name and hardware counters.
    pub ports: Vec<(String, PortStats)>,
}

/// Where a sample is read from; shared by the metrics thread and the DPDK
/// telemetry commands.
#[derive(Debug)]
pub struct Sources {
    pub director: Arc<UvsDirector>,
    pub net: Vec<Arc<NetCounters>>,
    pub lb: Vec<Arc<LbCounters>>,
    pub ports: Vec<Arc<Port>>,
    /// Connection-table capacity of each worker.
    pub capacity: u32,
}

impl Sources {
    pub fn sample(&self) -> Sample {
        Sample {
            listing: self.director.capture(),
            workers: self
                .net
                .iter()
                .zip(&self.lb)
                .map(|(n, l)| WorkerSample::read(n, l, self.capacity))
                .collect(),
            ports: self
                .ports
                .iter()
                .map(|p| (p.name().to_string(), p.stats()))
                .collect(),
        }
    }
}

/// A metric family being written: `# HELP`, `# TYPE`, then samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

fn family<'a>(out: &'a mut String, name: &'a str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], v: u64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Labels of a virtual service, as node_exporter names them:
/// `local_address`, `local_port`, `proto`, `local_mark` (a fwmark service
/// has no address and port, proto `FWM` and the mark in hex, as
/// `/proc/net/ip_vs` shows it).
fn service_labels(key: &ServiceKey) -> [(&'static str, String); 4] {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => [
            ("local_address", addr.to_string()),
            ("local_port", port.to_string()),
            ("proto", protocol.name().to_string()),
            ("local_mark", String::new()),
        ],
        ServiceKey::Fwmark { mark, .. } => [
            ("local_address", String::new()),
            ("local_port", "0".into()),
            ("proto", "FWM".into()),
            ("local_mark", format!("{mark:08X}")),
        ],
    }
}

/// The five IPVS counters and five rates, by field.
type StatField = (
    &'static str,
    &'static str,
    fn(&uvs_model::ops::StatsRow) -> u64,
);

const COUNTERS: [StatField; 5] = [
    ("connections_total", "Connections scheduled", |r| {
        r.counters.conns
    }),
    ("incoming_packets_total", "Packets from clients", |r| {
        r.counters.inpkts
    }),
    (
        "outgoing_packets_total",
        "Packets from real servers (NAT)",
        |r| r.counters.outpkts,
    ),
    ("incoming_bytes_total", "Bytes from clients", |r| {
        r.counters.inbytes
    }),
    (
        "outgoing_bytes_total",
        "Bytes from real servers (NAT)",
        |r| r.counters.outbytes,
    ),
];

const RATES: [StatField; 5] = [
    (
        "connections_per_second",
        "New connections per second",
        |r| r.rates.cps,
    ),
    (
        "incoming_packets_per_second",
        "Packets per second from clients",
        |r| r.rates.inpps,
    ),
    (
        "outgoing_packets_per_second",
        "Packets per second from real servers",
        |r| r.rates.outpps,
    ),
    (
        "incoming_bytes_per_second",
        "Bytes per second from clients",
        |r| r.rates.inbps,
    ),
    (
        "outgoing_bytes_per_second",
        "Bytes per second from real servers",
        |r| r.rates.outbps,
    ),
];

/// The exposition text of a sample.
pub fn render(s: &Sample) -> String {
    let mut out = String::with_capacity(16 * 1024);
    render_ipvs(&mut out, &s.listing);
    render_workers(&mut out, &s.workers);
    render_ports(&mut out, &s.ports);
    let mut f = family(
        &mut out,
        "uvs_build_info",
        "gauge",
        "Build of the running uvsd (always 1)",
    );
    f.sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("UVS_GIT_REV")),
            ("dpdk", env!("UVS_DPDK_VERSION")),
        ],
        1,
    );
    out
}

fn render_ipvs(out: &mut String, l: &Listing) {
    // node_exporter's global counters: sums over the services.
    for (suffix, help, get) in COUNTERS {
        let total = l
            .services
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(get(&s.stats)));
        let name = format!("node_ipvs_{suffix}");
        family(out, &name, "counter", &format!("{help}, all services")).sample(&[], total);
    }
    let backend_labels = |key: &ServiceKey, addr: &std::net::IpAddr, port: u16| {
        let [a, b, c, d] = service_labels(key);
        [
            a,
            b,
            ("remote_address", addr.to_string()),
            ("remote_port", port.to_string()),
            c,
            d,
        ]
    };
    type Gauge = (
        &'static str,
        &'static str,
        fn(&control::format::DestListing) -> u64,
    );
    let gauges: [Gauge; 4] = [
        (
            "node_ipvs_backend_connections_active",
            "Active (established) connections by real server",
            |d| u64::from(d.active),
        ),
        (
            "node_ipvs_backend_connections_inactive",
            "Inactive connections by real server",
            |d| u64::from(d.inactive),
        ),
        (
            "node_ipvs_backend_weight",
            "Weight of the real server",
            |d| d.config.weight.max(0) as u64,
        ),
        (
            "uvs_backend_connections_persistent",
            "Persistence templates bound to the real server",
            |d| u64::from(d.persistent),
        ),
    ];
    for (name, help, get) in gauges {
        let mut f = family(out, name, "gauge", help);
        for s in &l.services {
            for d in &s.dests {
                let labels = backend_labels(&s.config.key, &d.config.addr, d.config.port);
                let refs: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                f.sample(&refs, get(d));
            }
        }
    }
    for (kind, fields) in [("counter", &COUNTERS), ("gauge", &RATES)] {
        for (suffix, help, get) in fields.iter() {
            let name = format!("uvs_service_{suffix}");
            let mut f = family(out, &name, kind, &format!("{help}, by virtual service"));
            for s in &l.services {
                let labels = service_labels(&s.config.key);
                let refs: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                f.sample(&refs, get(&s.stats));
            }
            let name = format!("uvs_backend_{suffix}");
            let mut f = family(out, &name, kind, &format!("{help}, by real server"));
            for s in &l.services {
                for d in &s.dests {
                    let labels = backend_labels(&s.config.key, &d.config.addr, d.config.port);
                    let refs: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    f.sample(&refs, get(&d.stats));
                }
            }
        }
    }
}

/// Which family a stack counter belongs to.
enum StackKind {
    Rx,
    Tx,
    HandedOver,
    HandedIn,
    /// `poll_cycles`, `busy_cycles`, `busy_turns`: the worker's time, not
    /// events.
    Cycles,
    /// `drop_<reason>`: the reason.
    Drop(&'static str),
    Event,
}

fn stack_kind(c: Counter) -> StackKind {
    match c {
        Counter::Rx => StackKind::Rx,
        Counter::Tx => StackKind::Tx,
        Counter::HandedOver => StackKind::HandedOver,
        Counter::HandedIn => StackKind::HandedIn,
        Counter::PollCycles | Counter::BusyCycles | Counter::BusyTurns => StackKind::Cycles,
        c => match c.as_str().strip_prefix("drop_") {
            Some(r) => StackKind::Drop(r),
            None => StackKind::Event,
        },
    }
}

fn render_workers(out: &mut String, ws: &[WorkerSample]) {
    let names: Vec<String> = (0..ws.len()).map(|w| w.to_string()).collect();
    let per_worker = |out: &mut String, name, kind, help, get: &dyn Fn(&WorkerSample) -> u64| {
        let mut f = family(out, name, kind, help);
        for (w, s) in ws.iter().enumerate() {
            f.sample(&[("worker", &names[w])], get(s));
        }
    };
    per_worker(
        out,
        "uvs_worker_received_packets_total",
        "counter",
        "Frames a worker took from its rx queues",
        &|s| s.stack(Counter::Rx),
    );
    per_worker(
        out,
        "uvs_worker_transmitted_packets_total",
        "counter",
        "Frames a worker handed to its tx queues",
        &|s| s.stack(Counter::Tx),
    );
    per_worker(
        out,
        "uvs_worker_poll_cycles_total",
        "counter",
        "TSC cycles a worker spent in its polling turns",
        &|s| s.stack(Counter::PollCycles),
    );
    per_worker(
        out,
        "uvs_worker_busy_cycles_total",
        "counter",
        "TSC cycles of a worker's turns that took packets in (against uvs_worker_poll_cycles_total: how busy it is)",
        &|s| s.stack(Counter::BusyCycles),
    );
    per_worker(
        out,
        "uvs_worker_busy_turns_total",
        "counter",
        "A worker's polling turns that took packets in",
        &|s| s.stack(Counter::BusyTurns),
    );
    per_worker(
        out,
        "uvs_handed_over_packets_total",
        "counter",
        "Packets a worker handed to the worker that owns their connection",
        &|s| s.stack(Counter::HandedOver),
    );
    per_worker(
        out,
        "uvs_handed_in_packets_total",
        "counter",
        "Packets a worker received from other workers (its own connections, and copies of neighbour answers)",
        &|s| s.stack(Counter::HandedIn),
    );
    {
        let mut f = family(
            out,
            "uvs_dropped_packets_total",
            "counter",
            "Packets dropped, by worker, layer (stack: L2/L3, lb: load balancer) and reason",
        );
        for (w, s) in ws.iter().enumerate() {
            for (c, v) in &s.stack {
                if let StackKind::Drop(r) = stack_kind(*c) {
                    f.sample(
                        &[("worker", &names[w]), ("layer", "stack"), ("reason", r)],
                        *v,
                    );
                }
            }
            for (r, v) in &s.frag_drops {
                f.sample(
                    &[
                        ("worker", &names[w]),
                        ("layer", "frag"),
                        ("reason", r.as_str()),
                    ],
                    *v,
                );
            }
            for (r, v) in &s.lb_drops {
                f.sample(
                    &[
                        ("worker", &names[w]),
                        ("layer", "lb"),
                        ("reason", r.as_str()),
                    ],
                    *v,
                );
            }
        }
    }
    {
        let mut f = family(
            out,
            "uvs_malformed_packets_total",
            "counter",
            "Malformed frames by the parser's reason (their sum is the stack's malformed drops)",
        );
        for (w, s) in ws.iter().enumerate() {
            for (e, v) in &s.malformed {
                f.sample(&[("worker", &names[w]), ("reason", e.as_str())], *v);
            }
        }
    }
    {
        let mut f = family(
            out,
            "uvs_stack_events_total",
            "counter",
            "What the L2/L3 stack answered, sent, learned, parked or passed on, by worker",
        );
        for (w, s) in ws.iter().enumerate() {
            for (c, v) in &s.stack {
                if matches!(stack_kind(*c), StackKind::Event) {
                    f.sample(&[("worker", &names[w]), ("event", c.as_str())], *v);
                }
            }
        }
    }
    {
        let mut f = family(
            out,
            "uvs_lb_events_total",
            "counter",
            "What the load balancer reassembled, learned, proxied or removed, by worker",
        );
        for (w, s) in ws.iter().enumerate() {
            for (event, v) in s.lb_events() {
                f.sample(&[("worker", &names[w]), ("event", event)], v);
            }
        }
    }
    per_worker(
        out,
        "uvs_connections_created_total",
        "counter",
        "Connections (and templates) a worker created",
        &|s| s.created,
    );
    per_worker(
        out,
        "uvs_icmp_errors_sent_total",
        "counter",
        "ICMP errors the director sent (unreachable, fragmentation needed, time exceeded)",
        &|s| s.icmp_sent,
    );
    per_worker(
        out,
        "uvs_icmp_errors_related_total",
        "counter",
        "ICMP errors translated or forwarded along a connection",
        &|s| s.icmp_related,
    );
    per_worker(
        out,
        "uvs_connection_table_entries",
        "gauge",
        "Entries (connections and templates) in a worker's connection table",
        &|s| s.table_entries,
    );
    per_worker(
        out,
        "uvs_connection_table_capacity",
        "gauge",
        "Entries a worker's connection table can hold",
        &|s| s.table_capacity,
    );
}

fn render_ports(out: &mut String, ports: &[(String, PortStats)]) {
    type PortField = (&'static str, &'static str, fn(&PortStats) -> u64);
    let fields: [PortField; 8] = [
        (
            "uvs_port_received_packets_total",
            "Packets the port received",
            |s| s.ipackets,
        ),
        (
            "uvs_port_transmitted_packets_total",
            "Packets the port sent",
            |s| s.opackets,
        ),
        (
            "uvs_port_received_bytes_total",
            "Bytes the port received",
            |s| s.ibytes,
        ),
        (
            "uvs_port_transmitted_bytes_total",
            "Bytes the port sent",
            |s| s.obytes,
        ),
        (
            "uvs_port_missed_packets_total",
            "Packets the NIC dropped because the rx queues were full",
            |s| s.imissed,
        ),
        (
            "uvs_port_receive_errors_total",
            "Erroneous packets received",
            |s| s.ierrors,
        ),
        (
            "uvs_port_transmit_errors_total",
            "Packets the port failed to send",
            |s| s.oerrors,
        ),
        (
            "uvs_port_receive_no_buffer_total",
            "Receive failures for want of an mbuf",
            |s| s.rx_nombuf,
        ),
    ];
    for (name, help, get) in fields {
        let mut f = family(out, name, "counter", help);
        for (p, s) in ports {
            f.sample(&[("port", p)], get(s));
        }
    }
}

/// Binds the endpoint, if configured (before EAL: a taken port fails
/// start-up before any device is touched).
pub fn bind(cfg: &MetricsConfig) -> Result<Option<TcpListener>, String> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).map_err(|e| format!("metrics.listen {addr}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("metrics.listen {addr}: {e}"))?;
    Ok(Some(l))
}

/// The running endpoint.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and joins the thread (it holds the ports' handles,
    /// which must go before the ports close).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The metrics endpoint and the telemetry commands of a running daemon.
#[derive(Debug)]
pub struct Observers {
    server: Option<Server>,
}

impl Observers {
    /// Registers the telemetry commands (a failure there is logged, not
    /// fatal: the director works without them) and serves `listener`.
    pub fn start(
        eal: &dataplane::dpdk::Eal,
        sources: Arc<Sources>,
        listener: Option<TcpListener>,
    ) -> Result<Observers, String> {
        if let Err(e) = crate::telemetry::register(eal, &sources) {
            log_event!(Level::Warn, "telemetry", error = e);
        }
        match listener.map(|l| serve(l, sources)).transpose() {
            Ok(server) => Ok(Observers { server }),
            Err(e) => {
                crate::telemetry::unregister();
                Err(e)
            }
        }
    }

    /// Stops both; afterwards nothing holds the ports or the counters.
    pub fn stop(self) {
        if let Some(s) = self.server {
            s.stop();
        }
        crate::telemetry::unregister();
    }
}

/// Largest request head read.
const MAX_REQUEST: usize = 8192;

/// Serves `GET /metrics` on `listener` from its own thread.
pub fn serve(listener: TcpListener, sources: Arc<Sources>) -> Result<Server, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let thread = thread::Builder::new()
        .name("uvs-metrics".into())
        .spawn(move || {
            // Anyone who can reach the port can make these events: both
            // are rate-limited.
            let mut limit = RateLimit::new(5, Duration::from_secs(60));
            let mut served = RateLimit::new(60, Duration::from_secs(60));
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, peer)) => match answer(conn, &sources) {
                        Ok(status) => {
                            if crate::log::enabled(Level::Debug) {
                                if let Some(suppressed) = served.allow(Instant::now()) {
                                    log_event!(
                                        Level::Debug,
                                        "metrics_served",
                                        peer = peer.to_string(),
                                        status = status,
                                        suppressed = suppressed
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            if let Some(suppressed) = limit.allow(Instant::now()) {
                                log_event!(
                                    Level::Warn,
                                    "metrics_request",
                                    peer = peer.to_string(),
                                    error = e,
                                    suppressed = suppressed
                                );
                            }
                        }
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(|e| format!("metrics thread: {e}"))?;
    log_event!(Level::Info, "metrics", listen = addr, path = "/metrics");
    Ok(Server {
        stop,
        thread: Some(thread),
    })
}

/// Reads one request and answers it; the connection is closed after.
/// Returns the status line's code when the request was a good one.
fn answer(mut conn: TcpStream, sources: &Sources) -> Result<&'static str, String> {
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request ended".into());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            respond(&mut conn, "431 Request Header Fields Too Large", "", b"")?;
            return Err("request head too large".into());
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    let (status, body, err) = match route(line) {
        Route::Metrics { head_only } => {
            let text = render(&sources.sample());
            let body = if head_only {
                Vec::new()
            } else {
                text.into_bytes()
            };
            ("200 OK", body, None)
        }
        Route::NotFound => ("404 Not Found", b"metrics are at /metrics\n".to_vec(), None),
        Route::BadMethod => (
            "405 Method Not Allowed",
            Vec::new(),
            Some(format!("method not allowed: {line:?}")),
        ),
        Route::Bad => (
            "400 Bad Request",
            Vec::new(),
            Some(format!("bad request line: {line:?}")),
        ),
    };
    respond(
        &mut conn,
        status,
        "text/plain; version=0.0.4; charset=utf-8",
        &body,
    )?;
    err.map_or(Ok(&status[..3]), Err)
}

enum Route {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Bad,
}

/// What a request line asks for.
fn route(line: &str) -> Route {
    let mut w = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (w.next(), w.next(), w.next(), w.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::BadMethod,
    };
    if path == "/metrics" {
        Route::Metrics { head_only }
    } else {
        Route::NotFound
    }
}

fn respond(conn: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> Result<(), String> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !ctype.is_empty() {
        let _ = write!(head, "Content-Type: {ctype}\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::format::{DestListing, ServiceListing};
    use uvs_model::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig};
    use uvs_model::ops::StatsRow;
    use uvs_model::stats::Counters;

    fn row(conns: u64, inpkts: u64) -> StatsRow {
        StatsRow {
            counters: Counters {
                conns,
                inpkts,
                outpkts: inpkts / 2,
                inbytes: inpkts * 60,
                outbytes: inpkts * 30,
            },
            rates: Default::default(),
        }
    }

    fn sample() -> Sample {
        let key = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80,
        };
        let v6 = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: "2001:db8::100".parse().unwrap(),
            port: 53,
        };
        let dest = |a: &str, conns| DestListing {
            config: DestConfig {
                addr: a.parse().unwrap(),
                port: 80,
                method: ForwardMethod::Masq,
                weight: 3,
                u_threshold: 0,
                l_threshold: 0,
            },
            active: 2,
            inactive: 1,
            persistent: 0,
            stats: row(conns, conns * 10),
        };
        let svc = |key, dests: Vec<DestListing>, conns| ServiceListing {
            config: ServiceConfig::new(key),
            stats: row(conns, conns * 10),
            dests,
            locals: Vec::new(),
        };
        let net = NetCounters::default();
        net.add(Counter::Rx, 100);
        net.add(Counter::DropNoRoute, 3);
        net.parse_error(ParseError::Truncated);
        let lb = LbCounters::default();
        Sample {
            listing: Listing {
                conn_tab_size: 4096,
                services: vec![
                    svc(key, vec![dest("198.18.1.11", 4), dest("198.18.1.12", 3)], 7),
                    svc(v6, vec![], 5),
                ],
            },
            workers: vec![
                WorkerSample::read(&net, &lb, 1024),
                WorkerSample::read(&NetCounters::default(), &lb, 1024),
            ],
            ports: vec![(
                "client".into(),
                PortStats {
                    ipackets: 9,
                    ..Default::default()
                },
            )],
        }
    }

    /// The value of the sample line that starts with `prefix`.
    fn value(text: &str, prefix: &str) -> u64 {
        let hits: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(hits.len(), 1, "{prefix}: {hits:?}");
        hits[0].rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn ipvs_metrics_carry_node_exporters_names_and_labels() {
        let t = render(&sample());
        assert_eq!(value(&t, "node_ipvs_connections_total "), 12);
        assert_eq!(value(&t, "node_ipvs_incoming_packets_total "), 120);
        assert_eq!(
            value(
                &t,
                r#"node_ipvs_backend_connections_active{local_address="198.18.0.100",local_port="80",remote_address="198.18.1.11",remote_port="80",proto="TCP",local_mark=""}"#
            ),
            2
        );
        assert_eq!(
            value(
                &t,
                r#"node_ipvs_backend_weight{local_address="198.18.0.100",local_port="80",remote_address="198.18.1.12""#
            ),
            3
        );
        assert_eq!(
            value(
                &t,
                r#"uvs_service_connections_total{local_address="2001:db8::100",local_port="53",proto="UDP",local_mark=""}"#
            ),
            5
        );
        assert_eq!(
            value(
                &t,
                r#"uvs_backend_incoming_packets_total{local_address="198.18.0.100",local_port="80",remote_address="198.18.1.12""#
            ),
            30
        );
    }

    /// `uvsadm --counters` names every counter; the ledger that checks
    /// nothing is lost must know what each one counts (a fate of a frame
    /// taken in, or not), so a new counter cannot slip past it.
    #[test]
    fn every_counter_uvsadm_shows_has_a_place_in_the_ledger() {
        let named = sample().workers[0].named();
        assert!(named.len() > Counter::ALL.len());
        let l = dataplane::net::ledger::Ledger::of(named.iter().map(|(k, v)| (k.as_str(), *v)));
        assert!(l.unclassified.is_empty(), "{:?}", l.unclassified);
    }

    #[test]
    fn the_syn_proxys_and_drop_entrys_counters_are_series() {
        let mut s = sample();
        let lb = LbCounters::default();
        lb.synproxy.cookies_sent.store(41, Ordering::Relaxed);
        lb.defense.count(dataplane::conn::RandomDrop {
            half_open: 7,
            idle: 2,
        });
        lb.frag.reassembled.store(5, Ordering::Relaxed);
        s.workers[1] = WorkerSample::read(&NetCounters::default(), &lb, 1024);
        let t = render(&s);
        let ev = |w: &str, e: &str| {
            value(
                &t,
                &format!(r#"uvs_lb_events_total{{worker="{w}",event="{e}"}}"#),
            )
        };
        assert_eq!(ev("1", "synproxy_cookies_sent"), 41);
        assert_eq!(ev("1", "defense_dropped_half_open"), 7);
        assert_eq!(ev("1", "defense_dropped_idle"), 2);
        assert_eq!(ev("1", "datagrams_reassembled"), 5);
        assert_eq!(ev("0", "defense_dropped_half_open"), 0);
        // One series per event and worker, each also in `uvsadm --counters`.
        let names: Vec<String> = s.workers[1].named().into_iter().map(|(k, _)| k).collect();
        let events: Vec<&str> = s.workers[1].lb_events().map(|(k, _)| k).collect();
        assert!(events.iter().all(|e| names.iter().any(|n| n == e)));
        let series = t
            .lines()
            .filter(|l| l.starts_with("uvs_lb_events_total{"))
            .count();
        assert_eq!(series, 2 * events.len());
    }

    #[test]
    fn every_drop_reason_of_every_worker_is_a_series() {
        let t = render(&sample());
        let drops = t
            .lines()
            .filter(|l| l.starts_with("uvs_dropped_packets_total{"))
            .count();
        let stack_reasons = Counter::ALL
            .iter()
            .filter(|c| c.as_str().starts_with("drop_"))
            .count();
        assert_eq!(drops, 2 * (stack_reasons + LbDrop::COUNT + FragDrop::COUNT));
        assert_eq!(
            value(
                &t,
                r#"uvs_dropped_packets_total{worker="0",layer="stack",reason="no_route"}"#
            ),
            3
        );
        assert_eq!(
            value(
                &t,
                r#"uvs_dropped_packets_total{worker="0",layer="stack",reason="malformed"}"#
            ),
            1
        );
        assert_eq!(
            value(&t, r#"uvs_worker_received_packets_total{worker="0"}"#),
            100
        );
        assert_eq!(
            value(&t, r#"uvs_connection_table_capacity{worker="1"}"#),
            1024
        );
        assert_eq!(
            value(&t, r#"uvs_port_received_packets_total{port="client"}"#),
            9
        );
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let t = render(&sample());
        let mut declared = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
                let kind = rest.split(' ').nth(1).unwrap();
                assert_eq!(
                    name.ends_with("_total"),
                    kind == "counter",
                    "counters and only counters end in _total: {l}"
                );
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before # TYPE");
            }
        }
    }

    #[test]
    fn the_sample_dashboard_uses_only_metrics_uvsd_serves() {
        let dash = include_str!("../configs/grafana-dashboard.json");
        let t = render(&sample());
        let served: std::collections::HashSet<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut used = 0;
        for (i, _) in dash.match_indices(['u', 'n']) {
            let rest = &dash[i..];
            if !(rest.starts_with("uvs_") || rest.starts_with("node_ipvs_")) {
                continue;
            }
            if dash[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(served.contains(name.as_str()), "dashboard uses {name}");
            used += 1;
        }
        assert!(used >= 10, "{used}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn requests_route_by_method_and_path() {
        assert!(matches!(
            route("GET /metrics HTTP/1.1"),
            Route::Metrics { head_only: false }
        ));
        assert!(matches!(
            route("HEAD /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head_only: true }
        ));
        assert!(matches!(route("GET / HTTP/1.1"), Route::NotFound));
        assert!(matches!(route("POST /metrics HTTP/1.1"), Route::BadMethod));
        assert!(matches!(route("GET /metrics"), Route::Bad));
        assert!(matches!(route("\u{0}\u{1}"), Route::Bad));
    }

    #[test]
    fn config_takes_an_address_or_nothing() {
        let c: MetricsConfig = toml::from_str("listen = \"127.0.0.1:9112\"").unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9112".parse().unwrap()));
        assert_eq!(toml::from_str::<MetricsConfig>("").unwrap().listen, None);
        assert!(toml::from_str::<MetricsConfig>("listen = \"localhost\"").is_err());
        assert!(toml::from_str::<MetricsConfig>("port = 1").is_err());
    }
}
