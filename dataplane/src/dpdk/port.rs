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

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{call_err, Burst, DpdkError, Eal, Mempool, BURST_SIZE};

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

/// An open, started ethdev.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    mac: [u8; 6],
    rx_queues: u16,
    tx_queues: u16,
    /// Offloads the device can do (`RTE_ETH_RX_OFFLOAD_*`), for later use.
    pub rx_offload_capa: u64,
    /// `RTE_ETH_TX_OFFLOAD_*` the device can do (checksum offload later).
    pub tx_offload_capa: u64,
    /// RSS hash functions in use (0 with one queue).
    pub rss_hf: u64,
    driver: String,
    claimed_rx: AtomicU64,
    claimed_tx: AtomicU64,
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

impl Port {
    /// Probes (if needed), configures and starts the device of `conf`.
    pub fn open(eal: &Eal, conf: &PortConf, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
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
        let mut eth_conf = dpdk_sys::rte_eth_conf::default();
        let mut rss_hf = 0;
        if conf.rx_queues > 1 {
            rss_hf =
                (dpdk_sys::RTE_ETH_RSS_IP | dpdk_sys::RTE_ETH_RSS_TCP | dpdk_sys::RTE_ETH_RSS_UDP)
                    & info.flow_type_rss_offloads;
            eth_conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            eth_conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: valid port, counts checked against the device's maxima,
        // eth_conf outlives the call.
        let rc = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf)
        };
        if rc != 0 {
            return Err(err("configure", rc));
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
        Ok(Port {
            id,
            name: conf.name.clone(),
            mac: soft_mac.unwrap_or(a.addr_bytes),
            rx_queues: conf.rx_queues,
            tx_queues: conf.tx_queues,
            rx_offload_capa: info.rx_offload_capa,
            tx_offload_capa: info.tx_offload_capa,
            rss_hf,
            driver,
            claimed_rx: AtomicU64::new(0),
            claimed_tx: AtomicU64::new(0),
            _pool: pool,
        })
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
    pub fn driver(&self) -> &str {
        &self.driver
    }
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }
    pub fn tx_queues(&self) -> u16 {
        self.tx_queues
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

    /// The port's MTU (1500 when the driver does not say).
    pub fn mtu(&self) -> u16 {
        let mut mtu = 0u16;
        // SAFETY: valid port, valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        if rc == 0 && mtu >= 1280 {
            mtu
        } else {
            1500
        }
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
