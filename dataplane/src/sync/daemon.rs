//! The sync threads: one master and one backup at most, each on an
//! ordinary kernel UDP socket bound to the multicast interface (in UVS the
//! kernel interface of a port, so the packets travel the exception path).
//!
//! Master (`uvs-sync-master`): drains every worker's ring, packs the
//! entries into v1 messages of at most `maxlen` bytes, and sends a message
//! when it is full or when its oldest entry is [`FLUSH_AFTER`] old (the
//! kernel waits up to 2 s; a shorter wait loses less at a failover). It
//! sleeps 10 ms when the rings were empty, so an idle master does not
//! poll. The socket is connected to the group, with multicast loopback off
//! and the configured TTL, as the kernel's.
//!
//! Backup (`uvs-sync-backup`): joins the group on the interface, decodes
//! each datagram, filters by SyncID (0 accepts all), counts and drops what
//! is malformed or cannot be served ([`SyncDrop`]), and hands each entry
//! to its owner worker's ring.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::{bump, check_entry, from_record, to_record, SyncDrop, SyncHub};
use crate::wire::sync::{
    EntryError, MessageBuilder, MessageError, SyncMessage, Version, DEFAULT_GROUP_V4, DEFAULT_PORT,
};

/// Longest time an entry waits in the master's message.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// Daemon role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Backup,
}

/// `--start-daemon` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub role: Role,
    pub ifname: String,
    pub syncid: u8,
    pub maxlen: Option<u16>,
    pub group: Option<IpAddr>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
}

/// A running daemon's settings with the kernel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub role: Role,
    pub ifname: String,
    pub ifindex: u32,
    pub syncid: u8,
    /// Largest message (UDP payload) in bytes.
    pub maxlen: u16,
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
}

/// Why a daemon did not start or stop (the kernel's errno in the names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonError {
    /// EEXIST
    #[error("Daemon has already run")]
    AlreadyRunning,
    /// ESRCH
    #[error("No daemon is running")]
    NotRunning,
    /// ENODEV
    #[error("No such device")]
    NoDevice,
    /// EINVAL: the group is not multicast.
    #[error("Invalid operation.  Possibly wrong module version, address not unicast, ...")]
    NotMulticast,
    /// The socket or the thread could not be set up.
    #[error("{0}")]
    Io(String),
}

fn sys_value(ifname: &str, what: &str) -> Option<u32> {
    if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{what}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Request {
    /// The kernel's defaults and clamps (ipvs.md 6.1): group 224.0.0.81,
    /// port 8848, TTL 1; maxlen 1500 minus the IP and UDP headers on a
    /// master, the interface MTU (clamped to 1500..65535) minus them on a
    /// backup; a given maxlen clamped to 1 (master) or 1024 (backup) ..
    /// 65535 minus the headers.
    pub fn settle(&self) -> Result<Settings, DaemonError> {
        let ifindex = sys_value(&self.ifname, "ifindex").ok_or(DaemonError::NoDevice)?;
        let group = self.group.unwrap_or(IpAddr::V4(DEFAULT_GROUP_V4));
        if !group.is_multicast() {
            return Err(DaemonError::NotMulticast);
        }
        let hdr: u32 = if group.is_ipv6() { 48 } else { 28 };
        let top = 65535 - hdr;
        let maxlen = match (self.role, self.maxlen) {
            (Role::Master, Some(m)) => u32::from(m).clamp(1, top),
            (Role::Backup, Some(m)) => u32::from(m).clamp(1024, top),
            (Role::Master, None) => 1500 - hdr,
            (Role::Backup, None) => {
                let mtu = sys_value(&self.ifname, "mtu").unwrap_or(1500);
                mtu.clamp(1500, 65535) - hdr
            }
        };
        Ok(Settings {
            role: self.role,
            ifname: self.ifname.clone(),
            ifindex,
            syncid: self.syncid,
            maxlen: maxlen as u16,
            group,
            port: self.port.unwrap_or(DEFAULT_PORT),
            ttl: self.ttl.unwrap_or(1),
        })
    }
}

#[derive(Debug)]
struct Running {
    settings: Settings,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn end(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master and backup daemons of one uvsd.
#[derive(Debug)]
pub struct SyncDaemons {
    hub: Arc<SyncHub>,
    master: Mutex<Option<Running>>,
    backup: Mutex<Option<Running>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SyncDaemons {
    pub fn new(hub: Arc<SyncHub>) -> SyncDaemons {
        SyncDaemons {
            hub,
            master: Mutex::new(None),
            backup: Mutex::new(None),
        }
    }

    pub fn hub(&self) -> &Arc<SyncHub> {
        &self.hub
    }

    fn slot(&self, role: Role) -> &Mutex<Option<Running>> {
        match role {
            Role::Master => &self.master,
            Role::Backup => &self.backup,
        }
    }

    /// `--start-daemon`: opens the socket and starts the thread.
    pub fn start(&self, req: &Request) -> Result<Settings, DaemonError> {
        let mut slot = lock(self.slot(req.role));
        if slot.is_some() {
            return Err(DaemonError::AlreadyRunning);
        }
        let s = req.settle()?;
        let io = |e: io::Error| DaemonError::Io(format!("sync daemon socket on {}: {e}", s.ifname));
        let stop = Arc::new(AtomicBool::new(false));
        let (hub, st, set) = (Arc::clone(&self.hub), Arc::clone(&stop), s.clone());
        let thread = match s.role {
            Role::Master => {
                let sock = master_socket(&s).map_err(io)?;
                // Stale records of an earlier master go first.
                for c in lock(&hub.from_workers).iter() {
                    while c.pop().is_some() {}
                }
                hub.set_master(true);
                std::thread::Builder::new()
                    .name("uvs-sync-master".into())
                    .spawn(move || run_master(&hub, &set, &sock, &st))
            }
            Role::Backup => {
                let sock = backup_socket(&s).map_err(io)?;
                std::thread::Builder::new()
                    .name("uvs-sync-backup".into())
                    .spawn(move || run_backup(&hub, &set, &sock, &st))
            }
        }
        .map_err(|e| DaemonError::Io(format!("sync thread: {e}")))?;
        *slot = Some(Running {
            settings: s.clone(),
            stop,
            thread: Some(thread),
        });
        Ok(s)
    }

    /// `--stop-daemon`.
    pub fn stop(&self, role: Role) -> Result<(), DaemonError> {
        let r = lock(self.slot(role))
            .take()
            .ok_or(DaemonError::NotRunning)?;
        if role == Role::Master {
            self.hub.set_master(false);
        }
        r.end();
        Ok(())
    }

    /// Stops whatever runs (at shutdown).
    pub fn stop_all(&self) {
        for role in [Role::Master, Role::Backup] {
            let _ = self.stop(role);
        }
    }

    /// The running daemons, master first.
    pub fn status(&self) -> Vec<Settings> {
        [Role::Master, Role::Backup]
            .iter()
            .filter_map(|&r| lock(self.slot(r)).as_ref().map(|x| x.settings.clone()))
            .collect()
    }
}

fn domain(group: &IpAddr) -> Domain {
    if group.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    }
}

fn master_socket(s: &Settings) -> io::Result<UdpSocket> {
    let sock = Socket::new(domain(&s.group), Type::DGRAM, Some(Protocol::UDP))?;
    sock.bind_device(Some(s.ifname.as_bytes()))?;
    match s.group {
        IpAddr::V4(_) => {
            sock.set_multicast_loop_v4(false)?;
            sock.set_multicast_ttl_v4(u32::from(s.ttl))?;
        }
        IpAddr::V6(_) => {
            sock.set_multicast_loop_v6(false)?;
            sock.set_multicast_hops_v6(u32::from(s.ttl))?;
            sock.set_multicast_if_v6(s.ifindex)?;
        }
    }
    let to = match s.group {
        IpAddr::V4(g) => SocketAddr::new(IpAddr::V4(g), s.port),
        IpAddr::V6(g) => SocketAddr::V6(std::net::SocketAddrV6::new(g, s.port, 0, s.ifindex)),
    };
    sock.connect(&to.into())?;
    Ok(sock.into())
}

fn backup_socket(s: &Settings) -> io::Result<UdpSocket> {
    let sock = Socket::new(domain(&s.group), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.bind_device(Some(s.ifname.as_bytes()))?;
    match s.group {
        IpAddr::V4(g) => {
            sock.bind(&SocketAddr::new(IpAddr::V4(g), s.port).into())?;
            sock.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(s.ifindex))?;
        }
        IpAddr::V6(g) => {
            sock.set_only_v6(true)?;
            sock.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), s.port).into())?;
            sock.join_multicast_v6(&g, s.ifindex)?;
        }
    }
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(sock)
}

fn send(sock: &UdpSocket, m: &MessageBuilder, hub: &SyncHub) {
    match sock.send(m.bytes()) {
        Ok(_) => {
            bump(&hub.counters.sent_messages);
            for _ in 0..m.count() {
                bump(&hub.counters.sent_entries);
            }
        }
        Err(_) => bump(&hub.counters.send_errors),
    }
}

fn run_master(hub: &SyncHub, s: &Settings, sock: &UdpSocket, stop: &AtomicBool) {
    let mut buf = vec![0u8; usize::from(s.maxlen)];
    let Some(mut msg) = MessageBuilder::new(&mut buf, s.syncid) else {
        // maxlen below a header: nothing can be sent (counted per record).
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        return;
    };
    let rings = lock(&hub.from_workers);
    let mut oldest: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut got = 0;
        for ring in rings.iter() {
            while let Some(r) = ring.pop() {
                got += 1;
                let Some(e) = from_record(&r) else { continue };
                if msg.push(&e).is_err() {
                    send(sock, &msg, hub);
                    msg.clear();
                    if msg.push(&e).is_err() {
                        // Larger than maxlen on its own.
                        bump(&hub.counters.send_errors);
                        continue;
                    }
                }
                oldest.get_or_insert_with(Instant::now);
            }
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
        if !msg.is_empty() && (due || stopping) {
            send(sock, &msg, hub);
            msg.clear();
            oldest = None;
        }
        if stopping {
            return;
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn run_backup(hub: &SyncHub, s: &Settings, sock: &UdpSocket, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match sock.recv(&mut buf) {
            Ok(n) => receive(hub, s.syncid, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One datagram on the backup: counted, checked, routed to the owners.
pub fn receive(hub: &SyncHub, syncid: u8, b: &[u8]) {
    let c = &hub.counters;
    bump(&c.received);
    let m = match SyncMessage::new_checked(b) {
        Ok(m) => m,
        Err(MessageError::Truncated) => return c.count_drop(SyncDrop::Truncated),
        Err(MessageError::BadSize) => return c.count_drop(SyncDrop::BadSize),
    };
    if syncid != 0 && m.syncid() != syncid {
        return c.count_drop(SyncDrop::WrongSyncid);
    }
    if m.version() == Version::V0 {
        bump(&c.received_v0);
    }
    let rings = lock(&hub.to_workers);
    for e in m.entries() {
        let e = match e {
            Ok(e) => e,
            Err(EntryError::UnknownOption) => {
                c.count_drop(SyncDrop::UnknownOption);
                continue;
            }
            Err(_) => {
                c.count_drop(SyncDrop::BadEntry);
                continue;
            }
        };
        if let Err(r) = check_entry(&e) {
            c.count_drop(r);
            continue;
        }
        let Some(rec) = to_record(&e) else {
            c.count_drop(SyncDrop::Unsupported);
            continue;
        };
        match rings.get(hub.owner(&e)) {
            Some(ring) if ring.push(&rec) => {}
            _ => c.count_drop(SyncDrop::RingFull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: Role, ifname: &str) -> Request {
        Request {
            role,
            ifname: ifname.into(),
            syncid: 0,
            maxlen: None,
            group: None,
            port: None,
            ttl: None,
        }
    }

    #[test]
    fn defaults_are_the_kernels() {
        let s = req(Role::Master, "lo").settle().unwrap();
        assert_eq!(
            (s.maxlen, s.group, s.port, s.ttl),
            (1472, IpAddr::V4(DEFAULT_GROUP_V4), 8848, 1)
        );
        let mut r = req(Role::Master, "lo");
        r.group = Some("ff02::12:81".parse().unwrap());
        assert_eq!(r.settle().unwrap().maxlen, 1452);
        // A backup's default follows the interface MTU (lo: 65536,
        // clamped to 65535), and a given length is at least 1024.
        let s = req(Role::Backup, "lo").settle().unwrap();
        assert_eq!(s.maxlen, 65535 - 28);
        let mut r = req(Role::Backup, "lo");
        r.maxlen = Some(10);
        assert_eq!(r.settle().unwrap().maxlen, 1024);
        let mut r = req(Role::Master, "lo");
        r.maxlen = Some(10);
        assert_eq!(r.settle().unwrap().maxlen, 10);
    }

    #[test]
    fn unknown_interfaces_and_unicast_groups_are_refused() {
        assert_eq!(
            req(Role::Master, "uvs-nosuch0").settle(),
            Err(DaemonError::NoDevice)
        );
        assert_eq!(
            req(Role::Master, "../lo").settle(),
            Err(DaemonError::NoDevice)
        );
        let mut r = req(Role::Backup, "lo");
        r.group = Some("198.18.0.1".parse().unwrap());
        assert_eq!(r.settle(), Err(DaemonError::NotMulticast));
    }

    #[test]
    fn a_second_daemon_of_a_role_is_refused_and_stop_needs_one() {
        let (hub, _ends) = SyncHub::new(1);
        let d = SyncDaemons::new(hub);
        assert_eq!(d.stop(Role::Backup), Err(DaemonError::NotRunning));
        let mut r = req(Role::Master, "lo");
        r.syncid = 3;
        d.start(&r).unwrap();
        assert_eq!(d.start(&r), Err(DaemonError::AlreadyRunning));
        assert_eq!(d.status().len(), 1);
        d.stop(Role::Master).unwrap();
        assert!(d.status().is_empty());
    }
}
