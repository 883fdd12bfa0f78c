//! Ethernet ports: probe, configure, start; stop and close on drop.
//!
//! A port is shared (`Arc<Port>`) by the workers that poll it, and each
//! worker claims its own rx and tx queues as a [`PortQueue`]: DPDK queues
//! are single-threaded, so a queue can be claimed once. The port closes
//! when the last holder lets go, which is after the workers have returned.
//!
//! Link status is recorded for display only: nothing waits for or gates on
//! it (a tap whose kernel side moved to another namespace reports DOWN while
//! it forwards fine).
//!
//! RSS with several queues: a connection is owned by the worker whose queue
//! RSS picks for the client endpoint (`crate::rss`), so a port is asked to
//! hash only that endpoint (source fields on a port facing clients,
//! destination fields on one facing real servers), with the key and a
//! round-robin redirection table that the software hash also uses. Drivers
//! differ in what they let an application set (net_tap and net_memif refuse
//! most of it), and none of it is needed for correctness, so every step is
//! best-effort: the port starts anyway and [`Port::rss`] reports what the
//! driver actually has, read back where the driver allows, for the daemon to
//! build ownership from and to say whether hand-over or the NIC does the
//! work.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use super::{call_err, strerror, Burst, DpdkError, Eal, Mempool, BURST_SIZE};
use crate::rss::{nic_key, Reta, RssSide, DEFAULT_KEY};

/// `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM` (rte_ethdev.h).
const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;

/// What the daemon asks of a port.
#[derive(Debug, Clone)]
pub struct PortConf {
    /// Name for messages.
    pub name: String,
    /// A vdev spec (`net_tap0,iface=uvs-c`) or a PCI address.
    pub device: String,
    /// Rx queues (RSS over them when more than one).
    pub rx_queues: u16,
    /// Tx queues (one per worker, so no tx queue is shared).
    pub tx_queues: u16,
    /// MAC address to set, if any.
    pub mac: Option<[u8; 6]>,
    /// Descriptors per queue (adjusted to the device's limits).
    pub descriptors: u16,
    /// For a net_tap device: the kernel side keeps the port's own MAC.
    /// False for a port that carries traffic (the kernel side gets a MAC
    /// of its own, see tap.rs); true for the exception path's TAP, whose
    /// kernel side *is* the director on that port.
    pub tap_shares_mac: bool,
}

/// Basic counters of a port (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// The L3/L4 hash fields that select only the client endpoint on a port
/// facing `side` (0 for [`RssSide::All`]).
pub fn endpoint_fields(side: RssSide) -> u64 {
    match side {
        RssSide::Client => dpdk_sys::RTE_ETH_RSS_L3_SRC_ONLY | dpdk_sys::RTE_ETH_RSS_L4_SRC_ONLY,
        RssSide::Server => dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY | dpdk_sys::RTE_ETH_RSS_L4_DST_ONLY,
        RssSide::All => 0,
    }
}

/// The `rss_hf` to ask of a device that can do `capa`
/// (`flow_type_rss_offloads`): IP, TCP and UDP flow types, restricted to
/// the client endpoint's fields for `side`, masked with what the device can
/// do (ethdev refuses a configuration that asks for more).
pub fn rss_request(side: RssSide, capa: u64) -> u64 {
    let types = dpdk_sys::RTE_ETH_RSS_IP | dpdk_sys::RTE_ETH_RSS_TCP | dpdk_sys::RTE_ETH_RSS_UDP;
    (types | endpoint_fields(side)) & capa
}

/// The RSS of a started port, as far as its driver tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RssState {
    /// What the configuration asked for (`rss` of the port).
    pub side: RssSide,
    /// Rx queues RSS spreads over (1: no RSS).
    pub queues: u16,
    /// `rss_hf` asked for, after the capability mask (0 with one queue).
    pub requested: u64,
    /// `rss_hf` in effect: read back, else what `rte_eth_dev_configure`
    /// accepted.
    pub fields: u64,
    /// The driver accepted [`DEFAULT_KEY`], padded to its key size.
    pub key_set: bool,
    /// The key read back (None: the driver does not tell).
    pub key: Option<Vec<u8>>,
    /// The redirection table read back (None: the driver has none or does
    /// not tell). Entries are queue indices, which are worker indices.
    pub reta: Option<Reta>,
    /// What the driver refused, in words, for the start-up log.
    pub refused: Vec<String>,
}

impl RssState {
    /// The hash fields select only the client endpoint.
    pub fn endpoint_only(&self) -> bool {
        let want = endpoint_fields(self.side);
        want != 0 && self.fields & want == want
    }

    /// The NIC hashes with the software's key: read back equal to the
    /// default (as far as it is needed for an IPv6 endpoint, 22 bytes), or,
    /// when it cannot be read, accepted.
    pub fn default_key(&self) -> bool {
        match &self.key {
            Some(k) => {
                let n = k.len().min(DEFAULT_KEY.len());
                n >= 22 && k[..n] == DEFAULT_KEY[..n]
            }
            None => self.key_set,
        }
    }

    /// The NIC itself sends a connection's packets on this port to the
    /// queue of their owner, provided the daemon's ownership uses this
    /// port's table (`reta`).
    pub fn nic_ownership(&self) -> bool {
        self.queues > 1 && self.endpoint_only() && self.default_key() && self.reta.is_some()
    }

    /// One line on what the port has: fields, key, table, refusals.
    pub fn describe(&self) -> String {
        if self.queues <= 1 {
            return "one rx queue, no RSS".into();
        }
        let fields = if self.endpoint_only() {
            format!(
                "{}-only fields",
                if self.side == RssSide::Client {
                    "source"
                } else {
                    "destination"
                }
            )
        } else if self.side == RssSide::All {
            "4-tuple fields".into()
        } else {
            "no endpoint-only fields".into()
        };
        let key = match (&self.key, self.default_key()) {
            (_, true) => "default key",
            (Some(_), false) => "another key",
            (None, false) => "key unknown",
        };
        let reta = match &self.reta {
            Some(r) if r.is_round_robin(self.queues) => {
                format!("table of {} round-robin", r.entries().len())
            }
            Some(r) => format!("table of {} (not round-robin)", r.entries().len()),
            None => "table unknown".into(),
        };
        let mut line = format!("rss_hf {:#x}, {fields}, {key}, {reta}", self.fields);
        if !self.refused.is_empty() {
            line.push_str(&format!("; driver refused {}", self.refused.join(", ")));
        }
        line
    }
}

/// An open, started ethdev.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    mac: [u8; 6],
    /// A TAP's kernel-side interface and the MAC it was given.
    kernel_side: Option<(String, [u8; 6])>,
    rx_queues: u16,
    tx_queues: u16,
    /// Offloads the device can do (`RTE_ETH_RX_OFFLOAD_*`), for later use.
    pub rx_offload_capa: u64,
    /// `RTE_ETH_TX_OFFLOAD_*` the device can do (checksum offload later).
    pub tx_offload_capa: u64,
    /// RSS hash functions in use (0 with one queue).
    pub rss_hf: u64,
    rss: RssState,
    driver: String,
    claimed_rx: AtomicU64,
    claimed_tx: AtomicU64,
    /// The MTU [`Port::set_mtu`] gave a port whose driver has no MTU
    /// setter (0: none; ethdev's own value holds).
    mtu_without_setter: AtomicU16,
    /// The interface a kernel-backed device sends and receives through
    /// (`if_index` from the driver, else its `iface=` devarg).
    kernel_if: Option<String>,
    /// Keeps the pool the rx queues fill from alive as long as the port.
    _pool: Arc<Mempool>,
}

/// The vdev or PCI name in a device spec: the part before the first comma.
fn device_name(spec: &str) -> &str {
    spec.split(',').next().unwrap_or(spec).trim()
}

/// The name ethdev gives a device: PCI addresses in their full
/// `domain:bus:device.function` form (`03:00.0` -> `0000:03:00.0`).
fn ethdev_name(name: &str) -> String {
    let b = name.as_bytes();
    let short_pci = b.len() == 7
        && b[2] == b':'
        && b[5] == b'.'
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_hexdigit());
    if short_pci {
        format!("0000:{}", name.to_ascii_lowercase())
    } else {
        name.to_string()
    }
}

fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

/// The run-time part of RSS on a started port with several rx queues:
/// the key (again: some drivers take it only at run time), a round-robin
/// table of `reta_size` entries, then what the driver reads back. Nothing
/// here fails the port; refusals are recorded in `rss`.
fn program_rss(id: u16, reta_size: u16, key: &mut [u8], rss: &mut RssState) {
    // Later DPDK releases add fields (the hash algorithm): default them.
    #[allow(clippy::needless_update)]
    let mut c = dpdk_sys::rte_eth_rss_conf {
        rss_key: key.as_mut_ptr(),
        rss_key_len: key.len() as u8,
        rss_hf: rss.fields,
        ..Default::default()
    };
    // SAFETY: started port; c and the key it points to outlive the call.
    let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_update(id, &mut c) };
    rss.key_set = rc == 0;
    if rc != 0 {
        rss.refused.push(format!("the key ({})", strerror(rc)));
    }

    if reta_size == 0 {
        rss.refused
            .push("a redirection table (the driver reports none)".into());
    } else {
        let size = usize::from(reta_size);
        let group = dpdk_sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let mut t = vec![dpdk_sys::rte_eth_rss_reta_entry64::default(); size.div_ceil(group)];
        for i in 0..size {
            t[i / group].mask |= 1 << (i % group);
            t[i / group].reta[i % group] = (i % usize::from(rss.queues)) as u16;
        }
        // SAFETY: started port; t holds reta_size entries in groups of 64 as
        // ethdev expects, each marked in its group's mask; queue numbers are
        // below the rx queue count.
        let rc = unsafe { dpdk_sys::rte_eth_dev_rss_reta_update(id, t.as_mut_ptr(), reta_size) };
        if rc != 0 {
            rss.refused
                .push(format!("the round-robin table ({})", strerror(rc)));
        }
        for e in &mut t {
            e.reta = [u16::MAX; 64];
        }
        // SAFETY: as above; the driver fills the masked entries.
        let rc = unsafe { dpdk_sys::rte_eth_dev_rss_reta_query(id, t.as_mut_ptr(), reta_size) };
        if rc == 0 {
            let entries: Vec<u16> = (0..size).map(|i| t[i / group].reta[i % group]).collect();
            if entries.iter().all(|&q| q < rss.queues) {
                rss.reta = Some(Reta::from_entries(entries));
            } else {
                rss.refused
                    .push("a readable table (it names queues that do not exist)".into());
            }
        } else {
            rss.refused
                .push(format!("reading the table back ({})", strerror(rc)));
        }
    }

    let mut back = vec![0u8; key.len().max(crate::rss::MAX_KEY)];
    let mut c = dpdk_sys::rte_eth_rss_conf {
        rss_key: back.as_mut_ptr(),
        rss_key_len: back.len() as u8,
        ..Default::default()
    };
    // SAFETY: started port; the buffer is at least the device's key size
    // and outlives the call.
    let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(id, &mut c) };
    if rc == 0 {
        rss.fields = c.rss_hf;
        let n = usize::from(c.rss_key_len).min(back.len());
        if back[..n].iter().any(|&b| b != 0) {
            rss.key = Some(back[..n].to_vec());
        }
    }
}

impl Port {
    /// Probes (if needed), configures and starts the device of `conf`, with
    /// the usual 4-tuple RSS when it has several rx queues.
    pub fn open(eal: &Eal, conf: &PortConf, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
        Port::open_rss(eal, conf, RssSide::All, pool)
    }

    /// [`Port::open`], with RSS on the client endpoint as seen from `side`
    /// (best-effort; see [`Port::rss`]).
    pub fn open_rss(
        eal: &Eal,
        conf: &PortConf,
        side: RssSide,
        pool: Arc<Mempool>,
    ) -> Result<Port, DpdkError> {
        let mark = eal.log_mark();
        let err = |what: &str, rc: i32| {
            let mut e = call_err(format!("port {} ({}): {what}", conf.name, conf.device), rc);
            if let (DpdkError::Call { reason, .. }, Some(line)) = (&mut e, eal.log_line_since(mark))
            {
                reason.push_str(&format!(" ({line})"));
            }
            e
        };
        let name = ethdev_name(device_name(&conf.device));
        let name = name.as_str();
        let id = match port_by_name(name) {
            Some(id) => id,
            None => {
                let spec = CString::new(conf.device.as_str())
                    .map_err(|_| DpdkError::Nul(conf.device.clone()))?;
                // SAFETY: EAL initialised; a valid C string.
                let rc = unsafe { dpdk_sys::rte_dev_probe(spec.as_ptr()) };
                if rc != 0 {
                    return Err(err("unknown or unusable device", rc));
                }
                port_by_name(name).ok_or_else(|| {
                    err(
                        "the device probed but is not an ethernet port",
                        libc::ENODEV,
                    )
                })?
            }
        };
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(err("reading device info", rc));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a static NUL-terminated driver name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if conf.rx_queues == 0
            || conf.rx_queues > info.max_rx_queues
            || conf.tx_queues > info.max_tx_queues
        {
            return Err(DpdkError::Call {
                what: format!("port {} ({})", conf.name, conf.device),
                reason: format!(
                    "{} rx / {} tx queues requested, the device has at most {} / {}",
                    conf.rx_queues, conf.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
            });
        }
        let mut rss = RssState {
            side,
            queues: conf.rx_queues,
            ..RssState::default()
        };
        let mut key = nic_key(usize::from(info.hash_key_size));
        // Configure with the fields and key asked for; if the driver refuses,
        // without the key, then with the plain 4-tuple fields.
        let attempts: Vec<(u64, bool)> = if conf.rx_queues > 1 {
            rss.requested = rss_request(side, info.flow_type_rss_offloads);
            let mut a = vec![(rss.requested, true), (rss.requested, false)];
            if side != RssSide::All {
                a.push((rss.requested & !endpoint_fields(side), false));
            }
            a
        } else {
            vec![(0, false)]
        };
        let mut failures = vec![];
        let mut rc = 0;
        for &(hf, with_key) in &attempts {
            let mut eth_conf = dpdk_sys::rte_eth_conf::default();
            // The NIC checks IPv4 header checksums where it can; the stack
            // reads its verdict from the mbuf (net/inbound.rs).
            eth_conf.rxmode.offloads = info.rx_offload_capa & RX_OFFLOAD_IPV4_CKSUM;
            if conf.rx_queues > 1 {
                eth_conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                eth_conf.rx_adv_conf.rss_conf.rss_hf = hf;
                if with_key {
                    eth_conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                    eth_conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
                }
            }
            // SAFETY: valid port, counts checked against the device's maxima,
            // eth_conf and the key it points to outlive the call (ethdev
            // copies what it keeps).
            rc = unsafe {
                dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf)
            };
            if rc == 0 {
                rss.fields = hf;
                break;
            }
            failures.push(rc);
        }
        if rc != 0 {
            return Err(err("configure", rc));
        }
        if let Some(&first) = failures.first() {
            let what = if rss.fields == rss.requested {
                "the key"
            } else {
                "the key and the endpoint-only fields"
            };
            rss.refused
                .push(format!("{what} at configure ({})", strerror(first)));
        }
        let (mut nrx, mut ntx) = (conf.descriptors, conf.descriptors);
        // SAFETY: valid port and out pointers.
        let rc = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        if rc != 0 {
            return Err(err("adjusting descriptor counts", rc));
        }
        // SAFETY: valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..conf.rx_queues {
            // SAFETY: configured port, q < rx queue count, the pool outlives
            // the port (kept in _pool), NULL conf = the device's defaults.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nrx,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(err(&format!("setting up rx queue {q}"), rc));
            }
        }
        for q in 0..conf.tx_queues {
            // SAFETY: as above, q < tx queue count.
            let rc =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, ntx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(err(&format!("setting up tx queue {q}"), rc));
            }
        }
        // Drivers that cannot set a MAC (net_pcap, net_null) still receive
        // every frame (promiscuous below): the configured MAC is then the
        // director's in software only.
        let mut soft_mac = None;
        if let Some(mac) = conf.mac {
            let mut a = dpdk_sys::rte_ether_addr { addr_bytes: mac };
            // SAFETY: valid port; a valid address struct.
            let rc = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(id, &mut a) };
            if rc == -libc::ENOTSUP {
                soft_mac = Some(mac);
            } else if rc != 0 {
                return Err(err("setting the MAC address", rc));
            }
        }
        // SAFETY: configured port with all queues set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(err("start", rc));
        }
        // Our unicast address is enough for ARP/NDP/ICMP, but a NIC with a
        // VIP as extra address (later) needs the frames: accept all.
        // SAFETY: started port; failure only means "not supported".
        let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port and out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(id, &mut a) };
        if rc != 0 {
            return Err(err("reading the MAC address", rc));
        }
        if conf.rx_queues > 1 {
            program_rss(id, info.reta_size, &mut key, &mut rss);
        }
        let mac = soft_mac.unwrap_or(a.addr_bytes);
        let kernel_if = (info.if_index != 0)
            .then(|| super::tap::if_name(info.if_index))
            .flatten()
            .or_else(|| super::tap::iface_devarg(&conf.device).map(str::to_string));
        let mut port = Port {
            id,
            name: conf.name.clone(),
            mac,
            kernel_side: None,
            rx_queues: conf.rx_queues,
            tx_queues: conf.tx_queues,
            rx_offload_capa: info.rx_offload_capa,
            tx_offload_capa: info.tx_offload_capa,
            rss_hf: rss.fields,
            rss,
            driver,
            claimed_rx: AtomicU64::new(0),
            claimed_tx: AtomicU64::new(0),
            mtu_without_setter: AtomicU16::new(0),
            kernel_if,
            _pool: pool,
        };
        // A TAP's kernel side must not share the port's MAC (tap.rs says
        // why); it is named by the index net_tap reports, else by `iface=`.
        // Set after start (starting does not touch it); an error drops, so
        // stops and closes, the port.
        if port.driver == "net_tap" && !conf.tap_shares_mac {
            if let Some(iface) = port.kernel_if.clone() {
                let k = super::tap::kernel_side_mac(mac);
                super::tap::set_kernel_mac(&iface, k).map_err(|e| DpdkError::Call {
                    what: format!("port {} ({})", conf.name, conf.device),
                    reason: e.to_string(),
                })?;
                port.kernel_side = Some((iface, k));
            }
        }
        Ok(port)
    }

    pub fn id(&self) -> u16 {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    /// For a TAP: the kernel-side interface and the MAC uvsd gave it.
    pub fn kernel_side(&self) -> Option<(&str, [u8; 6])> {
        self.kernel_side.as_ref().map(|(n, m)| (n.as_str(), *m))
    }
    pub fn driver(&self) -> &str {
        &self.driver
    }
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }
    pub fn tx_queues(&self) -> u16 {
        self.tx_queues
    }

    /// The RSS the port has (fields, key, table), as far as the driver
    /// tells: what the daemon builds connection ownership from.
    pub fn rss(&self) -> &RssState {
        &self.rss
    }

    /// Claims rx queue `rx` (or none) and tx queue `tx` for one thread.
    pub fn claim(self: &Arc<Self>, rx: Option<u16>, tx: u16) -> Result<PortQueue, DpdkError> {
        let taken = |what: &str| DpdkError::Call {
            what: format!("port {}", self.name),
            reason: format!("{what} queue is out of range or already claimed"),
        };
        if tx >= self.tx_queues || tx >= 64 {
            return Err(taken("tx"));
        }
        if let Some(r) = rx {
            if r >= self.rx_queues || r >= 64 {
                return Err(taken("rx"));
            }
            if self.claimed_rx.fetch_or(1 << r, Ordering::SeqCst) & (1 << r) != 0 {
                return Err(taken("rx"));
            }
        }
        if self.claimed_tx.fetch_or(1 << tx, Ordering::SeqCst) & (1 << tx) != 0 {
            if let Some(r) = rx {
                self.claimed_rx.fetch_and(!(1 << r), Ordering::SeqCst);
            }
            return Err(taken("tx"));
        }
        Ok(PortQueue {
            port: Arc::clone(self),
            rx,
            tx,
        })
    }

    /// The port's MTU: what [`Port::set_mtu`] gave it, else the driver's
    /// (1500 when the driver does not say).
    pub fn mtu(&self) -> u16 {
        let set = self.mtu_without_setter.load(Ordering::Relaxed);
        if set != 0 {
            return set;
        }
        let mut mtu = 0u16;
        // SAFETY: valid port, valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        if rc == 0 && mtu >= 1280 {
            mtu
        } else {
            1500
        }
    }

    /// Sets the port's MTU (for a kernel interface: the MTU of the port it
    /// stands for). A driver without an MTU setter (net_pcap) takes the
    /// MTU when the frames it receives may be that large: then the port's
    /// MTU is what uvsd sends up to, and the kernel interface the device
    /// works through, if any, gets it too (the kernel drops larger frames
    /// both ways).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: valid port; the driver checks the value.
        let rc = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, mtu) };
        if rc == 0 {
            return Ok(());
        }
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port; info is a valid out pointer.
        let known = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) } == 0;
        // ethdev also wants the frame (MTU + Ethernet header + CRC)
        // within the largest frame the device receives.
        let max = u32::from(info.max_mtu).min(info.max_rx_pktlen.saturating_sub(18));
        if rc == -libc::ENOTSUP && known && u32::from(mtu) <= max {
            if let Some(iface) = &self.kernel_if {
                super::tap::set_kernel_mtu(iface, mtu).map_err(|e| DpdkError::Call {
                    what: format!("port {}", self.name),
                    reason: e.to_string(),
                })?;
            }
            self.mtu_without_setter.store(mtu, Ordering::Relaxed);
            return Ok(());
        }
        let range = if known {
            format!(" (the device allows {}..={max})", info.min_mtu)
        } else {
            String::new()
        };
        Err(call_err(
            format!("port {}: setting MTU {mtu}{range}", self.name),
            rc,
        ))
    }

    /// Sets the link up or down (a TAP: its interface's IFF_UP). Best
    /// effort: drivers that cannot are left as they are.
    pub fn set_link(&self, up: bool) {
        // SAFETY: valid, started port; failure only means "not supported".
        let _ = unsafe {
            if up {
                dpdk_sys::rte_eth_dev_set_link_up(self.id)
            } else {
                dpdk_sys::rte_eth_dev_set_link_down(self.id)
            }
        };
    }

    /// Link up according to the driver (informational only).
    pub fn link_up(&self) -> bool {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port, valid out pointer; the nowait variant does not block.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        rc == 0 && l.link_status() != 0
    }

    /// The device's counters.
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port, valid out pointer.
        let _ = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone, so no thread polls the queues;
        // stop then close releases the device (taps remove their interface).
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// One thread's rx queue (optional) and tx queue on a port.
#[derive(Debug)]
pub struct PortQueue {
    port: Arc<Port>,
    rx: Option<u16>,
    tx: u16,
}

impl PortQueue {
    pub fn port(&self) -> &Port {
        &self.port
    }
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// Receives into the free space of `burst`; returns how many arrived.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let Some(q) = self.rx else { return 0 };
        let (ptrs, len) = burst.raw_parts();
        let room = (BURST_SIZE - *len) as u16;
        // SAFETY: this PortQueue holds the only claim on rx queue q of a
        // started port; the free slots after len receive owned mbufs and len
        // grows to cover exactly them.
        let got =
            unsafe { dpdk_sys::rte_eth_rx_burst(self.port.id, q, ptrs.add(*len), room) } as usize;
        // The packet path reads one segment per frame. A driver that
        // copies from the kernel (net_pcap) chains a frame larger than the
        // data room, which the port's MTU sizes: such a frame is too big
        // for this port. It is cut to its first segment and goes on, so
        // the worker takes it in and counts its fate like any other frame
        // (an IP packet longer than what is left is a malformed drop).
        for i in *len..*len + got {
            // SAFETY: entries len..len+got were just filled with owned,
            // valid mbufs; a chained one keeps its first segment, whose
            // lengths are set to that segment alone, and the rest of the
            // chain (owned by it, referenced nowhere else) is freed once.
            unsafe {
                let m = *ptrs.add(i);
                if (*m).nb_segs > 1 {
                    let rest = (*m).next;
                    (*m).next = std::ptr::null_mut();
                    (*m).nb_segs = 1;
                    (*m).pkt_len = u32::from((*m).data_len);
                    dpdk_sys::rte_pktmbuf_free(rest);
                }
            }
        }
        *len += got;
        got
    }

    /// Sends what it can of `burst`; unsent mbufs stay in it (the caller
    /// retries or clears). Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let (ptrs, len) = burst.raw_parts();
        let n = *len as u16;
        if n == 0 {
            return 0;
        }
        // SAFETY: this PortQueue holds the only claim on tx queue `tx`; the
        // first n entries are owned mbufs, those sent become the driver's and
        // consume_front forgets them.
        let sent = unsafe { dpdk_sys::rte_eth_tx_burst(self.port.id, self.tx, ptrs, n) } as usize;
        burst.consume_front(sent);
        sent
    }
}

impl Drop for PortQueue {
    fn drop(&mut self) {
        if let Some(r) = self.rx {
            self.port.claimed_rx.fetch_and(!(1 << r), Ordering::SeqCst);
        }
        self.port
            .claimed_tx
            .fetch_and(!(1 << self.tx), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_what_ethdev_calls_them() {
        assert_eq!(ethdev_name(device_name("net_tap0,iface=uvs-c")), "net_tap0");
        assert_eq!(ethdev_name(device_name("03:00.1")), "0000:03:00.1");
        assert_eq!(
            ethdev_name(device_name("0000:03:00.1,rx=4")),
            "0000:03:00.1"
        );
        assert_eq!(ethdev_name("net_pcap0"), "net_pcap0");
    }
}

#[cfg(test)]
mod rss_tests {
    use super::*;
    use dpdk_sys::{
        RTE_ETH_RSS_IP, RTE_ETH_RSS_L3_DST_ONLY, RTE_ETH_RSS_L3_SRC_ONLY, RTE_ETH_RSS_L4_DST_ONLY,
        RTE_ETH_RSS_L4_SRC_ONLY, RTE_ETH_RSS_NONFRAG_IPV4_TCP, RTE_ETH_RSS_TCP, RTE_ETH_RSS_UDP,
    };

    const TYPES: u64 = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
    const ONLY: u64 = RTE_ETH_RSS_L3_SRC_ONLY
        | RTE_ETH_RSS_L4_SRC_ONLY
        | RTE_ETH_RSS_L3_DST_ONLY
        | RTE_ETH_RSS_L4_DST_ONLY;

    #[test]
    fn each_side_asks_for_its_endpoint_within_the_devices_capability() {
        let all = u64::MAX;
        assert_eq!(
            rss_request(RssSide::Client, all),
            TYPES | RTE_ETH_RSS_L3_SRC_ONLY | RTE_ETH_RSS_L4_SRC_ONLY
        );
        assert_eq!(
            rss_request(RssSide::Server, all),
            TYPES | RTE_ETH_RSS_L3_DST_ONLY | RTE_ETH_RSS_L4_DST_ONLY
        );
        assert_eq!(rss_request(RssSide::All, all), TYPES);
        // A device without endpoint selection (net_tap advertises only the
        // flow types) gets the 4-tuple request; one with less gets less.
        assert_eq!(rss_request(RssSide::Client, TYPES), TYPES);
        assert_eq!(
            rss_request(
                RssSide::Server,
                RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_L3_DST_ONLY
            ),
            RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_L3_DST_ONLY
        );
        assert_eq!(rss_request(RssSide::Client, 0), 0);
        for side in [RssSide::Client, RssSide::Server, RssSide::All] {
            assert_eq!(
                rss_request(side, TYPES | ONLY) & !endpoint_fields(side),
                TYPES
            );
        }
    }

    fn granted(side: RssSide) -> RssState {
        RssState {
            side,
            queues: 2,
            requested: rss_request(side, u64::MAX),
            fields: rss_request(side, u64::MAX),
            key_set: true,
            key: Some(nic_key(52)),
            reta: Some(Reta::round_robin(512, 2)),
            refused: vec![],
        }
    }

    #[test]
    fn nic_ownership_needs_endpoint_fields_the_default_key_and_a_known_table() {
        for side in [RssSide::Client, RssSide::Server] {
            let s = granted(side);
            assert!(s.nic_ownership(), "{side}");
            assert!(s.describe().contains("default key"), "{}", s.describe());
            assert!(
                s.describe().contains("table of 512 round-robin"),
                "{}",
                s.describe()
            );
        }
        assert!(!granted(RssSide::All).nic_ownership(), "4-tuple hash");
        let mut s = granted(RssSide::Client);
        s.fields &= !RTE_ETH_RSS_L4_SRC_ONLY;
        assert!(!s.nic_ownership(), "address only is not the endpoint");
        let mut s = granted(RssSide::Server);
        s.fields = granted(RssSide::Client).fields;
        assert!(!s.nic_ownership(), "the other side's fields");
        let mut s = granted(RssSide::Client);
        s.reta = None;
        assert!(!s.nic_ownership());
        assert!(s.describe().contains("table unknown"));
        let mut s = granted(RssSide::Client);
        let mut other = nic_key(40);
        other[3] ^= 1;
        s.key = Some(other);
        assert!(
            !s.nic_ownership(),
            "a key that was not ours, though accepted"
        );
        assert!(s.describe().contains("another key"));
        // Unreadable key: accepted is enough; refused is not.
        let mut s = granted(RssSide::Client);
        s.key = None;
        assert!(s.nic_ownership());
        s.key_set = false;
        assert!(!s.nic_ownership());
        assert!(s.describe().contains("key unknown"));
        let mut s = granted(RssSide::Client);
        s.queues = 1;
        assert!(!s.nic_ownership());
        assert_eq!(s.describe(), "one rx queue, no RSS");
        let mut s = granted(RssSide::Client);
        s.refused.push("the key (Operation not supported)".into());
        assert!(s
            .describe()
            .ends_with("driver refused the key (Operation not supported)"));
    }
}
