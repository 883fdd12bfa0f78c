//! The daemon's configuration file (`uvsd --config FILE`).
//!
//! The keys are a contract shared with the docs, the tests and the users
//! (DESIGN.md): keys may be added, never renamed, and an unknown key is an
//! error, so a typo cannot silently change behaviour. Parsing is followed by
//! validation of everything that can be checked without DPDK (addresses,
//! prefixes, MACs, conflicts, gateways), so a bad file fails before any
//! device is touched.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use dataplane::net::{parse_mac, vlan, Forwarding, Interface, L3Config, Prefix};
use dataplane::rss::RssSide;
use dataplane::wire::ethernet::MacAddr;
use serde::Deserialize;
use uvs_model::tunables::Tunables;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub eal: Eal,
    pub workers: Workers,
    #[serde(default)]
    pub control: Control,
    #[serde(rename = "port", default)]
    pub ports: Vec<Port>,
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteEntry>,
    #[serde(rename = "neighbor", default)]
    pub neighbors: Vec<NeighborEntry>,
    /// `[metrics]`: the Prometheus endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[log]`: format, target and level of the event log.
    #[serde(default)]
    pub log: crate::log::LogConfig,
    /// `[sysctl]`: the IPVS tunables by their kernel names
    /// (`expire_nodest_conn = 1`), checked in [`Config::validate`].
    #[serde(default)]
    pub sysctl: toml::Table,
    /// `[announce]`: the served VIPs as routes for a routing daemon.
    #[serde(default)]
    pub announce: Option<crate::announce::AnnounceConfig>,
}

/// `[eal]`: arguments passed to `rte_eal_init` as they are.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Eal {
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[workers]`: one poll-mode worker per listed lcore.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    pub lcores: Vec<u32>,
    /// Connections (and persistence templates) each worker can hold; new
    /// connections beyond it are refused and counted. About 140 bytes each.
    #[serde(default = "default_conn_capacity")]
    pub conn_capacity: u32,
}

fn default_conn_capacity() -> u32 {
    1 << 20
}

/// `[control]`: the Unix socket of the ipvsadm-compatible control plane.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// ipvsadm-save lines applied before the ports start.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// Group allowed to use the socket (mode 0660 instead of 0600).
    #[serde(default)]
    pub group: Option<String>,
}

/// The socket path when the file does not say.
pub const DEFAULT_SOCKET: &str = "/run/uvs/uvsadm.sock";

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: default_socket(),
            rules: None,
            group: None,
        }
    }
}

/// `[[port]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    /// A vdev spec (`net_tap0,iface=uvs-c`) or a PCI address.
    pub device: String,
    #[serde(default = "one")]
    pub queues: u16,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Which side the port faces, for RSS with several queues: "client"
    /// (hash the source endpoint), "server" (the destination endpoint, which
    /// is the client in NAT replies) or "all" (the 4-tuple; the default).
    #[serde(default)]
    pub rss: Option<String>,
    /// The name of the port's kernel interface (a TAP uvsd creates in its
    /// own network namespace), which carries the director's own traffic:
    /// see `dataplane::exception`. None (the default): no exception path.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Addresses this port shares with another director under VRRP
    /// (keepalived's `virtual_ipaddress`): answered and served only while
    /// the port's kernel interface carries them. See
    /// `dataplane::net::floating`.
    #[serde(default)]
    pub floating: Vec<String>,
    /// The port's IP MTU (Ethernet payload): [`MIN_MTU`]..=[`MAX_MTU`],
    /// 1500 when absent. Set on the device (and, for net_tap, on its
    /// kernel side) at start; a value the device refuses is an error, and
    /// a device that cannot change its MTU at all keeps (and the director
    /// uses) its own.
    #[serde(default = "standard_mtu")]
    pub mtu: u16,
    /// `[[port.vlan]]`: 802.1Q VLANs carried on the port, each a logical
    /// interface with its own addresses (see `dataplane::net::vlan`).
    #[serde(rename = "vlan", default)]
    pub vlans: Vec<VlanEntry>,
}

/// `[[port.vlan]]`: one 802.1Q VLAN of a port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VlanEntry {
    /// The VLAN id, 1 to 4094.
    pub id: u16,
    #[serde(default)]
    pub addresses: Vec<String>,
}

fn standard_mtu() -> u16 {
    1500
}

/// Smallest port MTU: IPv6's minimum link MTU (RFC 8200 5), so every
/// address family works on every port.
pub const MIN_MTU: u16 = 1280;
/// Largest port MTU: jumbo frames of 9,000 bytes.
pub const MAX_MTU: u16 = 9000;

fn one() -> u16 {
    1
}

/// `[[route]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub to: String,
    pub via: String,
}

/// `[[neighbor]]`: a static ARP/NDP entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighborEntry {
    pub ip: String,
    pub mac: String,
}

/// Why a configuration cannot be used. The text is the message uvsd prints.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// Most rx/tx queue pairs per port.
pub const MAX_QUEUES: u16 = 16;

/// The config after validation, with parsed values.
#[derive(Debug, Clone)]
pub struct Validated {
    pub raw: Config,
    /// Per port, in file order: MAC to set and addresses.
    pub port_macs: Vec<Option<MacAddr>>,
    pub port_addrs: Vec<Vec<Prefix>>,
    /// Per port: the side it faces for RSS (`rss`, "all" when absent).
    pub port_rss: Vec<RssSide>,
    /// Per port: the name of its kernel interface, if it has one.
    pub port_kernel: Vec<Option<String>>,
    /// Per port: its floating addresses (`floating`).
    pub port_floating: Vec<Vec<IpAddr>>,
    /// Per port: its VLANs (`[[port.vlan]]`), id and addresses.
    pub port_vlans: Vec<Vec<(u16, Vec<Prefix>)>>,
    pub routes: Vec<(Prefix, IpAddr)>,
    pub neighbors: Vec<(IpAddr, MacAddr)>,
    /// The tunables: the kernel's defaults with `[sysctl]` applied.
    pub tunables: Tunables,
    /// The router switches of `[sysctl]` (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`), off when absent.
    pub forwarding: Forwarding,
}

/// An address family a forwarding switch turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The family a `[sysctl]` name switches forwarding of, if it is one of
/// Linux's forwarding switches (`net.ipv4.conf.all.forwarding` is the
/// same switch as `net.ipv4.ip_forward` in Linux).
fn forwarding_switch(name: &str) -> Option<Family> {
    let name = name.replace('/', ".");
    match name.as_str() {
        "net.ipv4.ip_forward" | "net.ipv4.conf.all.forwarding" | "ip_forward" => Some(Family::V4),
        "net.ipv6.conf.all.forwarding" => Some(Family::V6),
        _ => None,
    }
}

/// `[sysctl]`'s entries by their dotted names: a quoted key
/// (`"net.ipv4.ip_forward" = 1`) and a dotted one (`net.ipv4.ip_forward =
/// 1`, which TOML reads as nested tables) name the same switch.
fn sysctl_entries(t: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in t {
        match v {
            toml::Value::Table(inner) => out.extend(
                sysctl_entries(inner)
                    .into_iter()
                    .map(|(n, v)| (format!("{k}.{n}"), v)),
            ),
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

impl Validated {
    /// The L3 configuration with each port's DPDK id, actual MAC and MTU.
    pub fn l3(&self, ports: &[(u16, MacAddr, u16)]) -> L3Config {
        L3Config {
            interfaces: ports
                .iter()
                .zip(&self.port_addrs)
                .enumerate()
                .map(|(i, ((port, mac, mtu), addrs))| Interface {
                    port: *port,
                    mac: *mac,
                    addrs: addrs.clone(),
                    mtu: *mtu,
                    kernel: self.port_kernel.get(i).is_some_and(Option::is_some),
                })
                .chain(self.vlan_interfaces(ports))
                .collect(),
            routes: self.routes.clone(),
            neighbors: self.neighbors.clone(),
            forwarding: self.forwarding,
        }
    }
}

impl Validated {
    /// The VLAN interfaces of the ports (ids as in [`Validated::l3`]); a
    /// port whose DPDK id cannot carry VLANs has none here, which
    /// [`Validated::check_vlan_ports`] reports first.
    fn vlan_interfaces<'a>(
        &'a self,
        ports: &'a [(u16, MacAddr, u16)],
    ) -> impl Iterator<Item = Interface> + 'a {
        ports
            .iter()
            .zip(&self.port_vlans)
            .flat_map(|((port, mac, mtu), vlans)| {
                vlans.iter().filter_map(move |(vid, addrs)| {
                    Some(Interface {
                        port: vlan::iface_id(*port, *vid)?,
                        mac: *mac,
                        addrs: addrs.clone(),
                        mtu: *mtu,
                        kernel: false,
                    })
                })
            })
    }

    /// Whether every port with VLANs got a DPDK id that can carry them
    /// (0 to 7; `ports` as in [`Validated::l3`]).
    pub fn check_vlan_ports(&self, ports: &[(u16, MacAddr, u16)]) -> Result<(), String> {
        for ((id, _, _), (p, vlans)) in ports
            .iter()
            .zip(self.raw.ports.iter().zip(&self.port_vlans))
        {
            if !vlans.is_empty() && *id > vlan::MAX_VLAN_PORT {
                return Err(format!(
                    "port {}: DPDK gave it port id {id}; VLANs work on port ids 0 to {} only",
                    p.name,
                    vlan::MAX_VLAN_PORT
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Validated, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text` (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Validated, ConfigError> {
        let raw: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            msg: one_line(&e.to_string()),
        })?;
        raw.validate().map_err(|msg| ConfigError::Invalid {
            path: path.to_path_buf(),
            msg,
        })
    }

    fn validate(self) -> Result<Validated, String> {
        if self.workers.conn_capacity == 0 {
            return Err("workers.conn_capacity must be at least 1".into());
        }
        if self.workers.lcores.is_empty() {
            return Err("workers.lcores is empty: list at least one worker lcore".into());
        }
        for (i, l) in self.workers.lcores.iter().enumerate() {
            if self.workers.lcores[..i].contains(l) {
                return Err(format!("workers.lcores lists lcore {l} twice"));
            }
        }
        if self.ports.is_empty() {
            return Err("no [[port]]: the director needs at least one port".into());
        }
        if self.ports.len() > dataplane::worker::MAX_PORTS {
            return Err(format!(
                "at most {} ports are supported",
                dataplane::worker::MAX_PORTS
            ));
        }
        let mut port_macs = vec![];
        let mut port_addrs = vec![];
        let mut port_rss = vec![];
        let mut port_kernel = vec![];
        let mut port_floating: Vec<Vec<IpAddr>> = vec![];
        let mut port_vlans = vec![];
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(format!("port #{}: name is empty", i + 1));
            }
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("port name {:?} is used twice", p.name));
            }
            if p.device.trim().is_empty() {
                return Err(format!("port {}: device is empty", p.name));
            }
            if self.ports[..i]
                .iter()
                .any(|q| dev_name(&q.device) == dev_name(&p.device))
            {
                return Err(format!(
                    "port {}: device {} is used by two ports",
                    p.name,
                    dev_name(&p.device)
                ));
            }
            if p.queues == 0 || p.queues > MAX_QUEUES {
                return Err(format!(
                    "port {}: queues must be 1..={MAX_QUEUES}, not {}",
                    p.name, p.queues
                ));
            }
            let mac = match &p.mac {
                None => None,
                Some(m) => Some(
                    parse_mac(m)
                        .filter(|m| !m.is_multicast() && m.0 != [0; 6])
                        .ok_or_else(|| {
                            format!(
                                "port {}: mac {m:?} is not a unicast MAC such as 02:00:00:00:00:01",
                                p.name
                            )
                        })?,
                ),
            };
            port_macs.push(mac);
            let rss = match &p.rss {
                None => RssSide::All,
                Some(r) => r
                    .parse::<RssSide>()
                    .map_err(|e| format!("port {}: {e}", p.name))?,
            };
            port_rss.push(rss);
            if !(MIN_MTU..=MAX_MTU).contains(&p.mtu) {
                return Err(format!(
                    "port {}: mtu must be {MIN_MTU}..={MAX_MTU}, not {}",
                    p.name, p.mtu
                ));
            }
            let addrs = p
                .addresses
                .iter()
                .map(|a| {
                    a.parse::<Prefix>()
                        .map_err(|e| format!("port {}: {e}", p.name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for a in &addrs {
                if a.addr.is_multicast() || a.addr.is_unspecified() {
                    return Err(format!("port {}: {a} is not a unicast address", p.name));
                }
            }
            port_addrs.push(addrs);
            if let Some(k) = &p.kernel {
                check_ifname(k).map_err(|why| format!("port {}: kernel {k:?} {why}", p.name))?;
                if self.ports[..i]
                    .iter()
                    .any(|q| q.kernel.as_deref() == Some(k.as_str()))
                {
                    return Err(format!(
                        "port {}: kernel interface {k:?} is used by two ports",
                        p.name
                    ));
                }
                if self.ports.iter().any(|q| tap_iface(&q.device) == Some(k)) {
                    return Err(format!(
                        "port {}: kernel interface {k:?} is also the iface of a net_tap port",
                        p.name
                    ));
                }
            }
            port_kernel.push(p.kernel.clone());
            let mut floating = vec![];
            for f in &p.floating {
                let ip: IpAddr = f.parse().map_err(|_| {
                    format!(
                        "port {}: floating {f:?} is not an IP address (no prefix length)",
                        p.name
                    )
                })?;
                if p.kernel.is_none() {
                    return Err(format!(
                        "port {}: floating {ip} needs the port's kernel interface (kernel = ...), where keepalived puts it",
                        p.name
                    ));
                }
                if !port_addrs[i].iter().any(|a: &Prefix| a.contains(ip)) {
                    return Err(format!(
                        "port {}: floating {ip} is on none of the port's prefixes",
                        p.name
                    ));
                }
                if port_addrs[i].iter().any(|a| a.addr == ip) {
                    return Err(format!(
                        "port {}: floating {ip} is one of the port's own addresses",
                        p.name
                    ));
                }
                if floating.contains(&ip) || port_floating.iter().flatten().any(|a| *a == ip) {
                    return Err(format!("port {}: floating {ip} is listed twice", p.name));
                }
                floating.push(ip);
            }
            port_floating.push(floating);
            port_vlans.push(check_vlans(p)?);
        }
        if let Some(a) = &self.announce {
            a.check(&port_kernel)?;
        }
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let to: Prefix = r.to.parse().map_err(|e| format!("route: {e}"))?;
                let via: IpAddr = r.via.parse().map_err(|_| {
                    format!("route to {}: via {:?} is not an IP address", r.to, r.via)
                })?;
                if to.addr.is_ipv4() != via.is_ipv4() {
                    return Err(format!(
                        "route to {}: via {via} is of the other address family",
                        r.to
                    ));
                }
                Ok((to, via))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let neighbors = self
            .neighbors
            .iter()
            .map(|n| {
                let ip: IpAddr =
                    n.ip.parse()
                        .map_err(|_| format!("neighbor: {:?} is not an IP address", n.ip))?;
                let mac = parse_mac(&n.mac)
                    .filter(|m| !m.is_multicast())
                    .ok_or_else(|| {
                        format!("neighbor {ip}: mac {:?} is not a unicast MAC", n.mac)
                    })?;
                Ok((ip, mac))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut tunables = Tunables::default();
        let mut forwarding = Forwarding::default();
        for (name, value) in sysctl_entries(&self.sysctl) {
            let v = value
                .as_integer()
                .ok_or_else(|| format!("sysctl.{name}: {value} is not a whole number"))?;
            if let Some(family) = forwarding_switch(&name) {
                let on = match v {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(format!(
                            "sysctl.{name}: invalid value `{v}': expected 0 or 1"
                        ))
                    }
                };
                match family {
                    Family::V4 => forwarding.v4 = on,
                    Family::V6 => forwarding.v6 = on,
                }
                continue;
            }
            tunables
                .set_int(&name, v)
                .map_err(|e| format!("sysctl.{name}: {e}"))?;
        }
        let v = Validated {
            raw: self,
            port_macs,
            port_addrs,
            port_rss,
            port_kernel,
            port_floating,
            port_vlans,
            routes,
            neighbors,
            tunables,
            forwarding,
        };
        // Conflicts and gateways, with placeholder ids (file order).
        let placeholder: Vec<(u16, MacAddr, u16)> = (0..v.raw.ports.len())
            .map(|i| (i as u16, MacAddr([2, 0, 0, 0, 0, 0]), 1500))
            .collect();
        v.l3(&placeholder).route_table().map_err(|e| {
            // Name ports rather than placeholder ids.
            let mut s = e.to_string();
            for (i, p) in v.raw.ports.iter().enumerate().rev() {
                for (vid, _) in &v.port_vlans[i] {
                    if let Some(id) = vlan::iface_id(i as u16, *vid) {
                        s = s.replace(
                            &format!("(port {id})"),
                            &format!("(port {} vlan {vid})", p.name),
                        );
                    }
                }
                s = s.replace(&format!("(port {i})"), &format!("(port {})", p.name));
            }
            s
        })?;
        Ok(v)
    }
}

/// The VLANs of `p`: ids in range and listed once, addresses unicast.
fn check_vlans(p: &Port) -> Result<Vec<(u16, Vec<Prefix>)>, String> {
    let mut out: Vec<(u16, Vec<Prefix>)> = vec![];
    for v in &p.vlans {
        if v.id == 0 || v.id > vlan::MAX_VLAN_ID {
            return Err(format!(
                "port {}: vlan id {} is not a VLAN id (1 to {})",
                p.name,
                v.id,
                vlan::MAX_VLAN_ID
            ));
        }
        if out.iter().any(|(id, _)| *id == v.id) {
            return Err(format!("port {}: vlan {} is listed twice", p.name, v.id));
        }
        let addrs = v
            .addresses
            .iter()
            .map(|a| {
                a.parse::<Prefix>()
                    .map_err(|e| format!("port {} vlan {}: {e}", p.name, v.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for a in &addrs {
            if a.addr.is_multicast() || a.addr.is_unspecified() {
                return Err(format!(
                    "port {} vlan {}: {a} is not a unicast address",
                    p.name, v.id
                ));
            }
        }
        out.push((v.id, addrs));
    }
    Ok(out)
}

/// The device name in a spec: the part before the first comma.
pub fn dev_name(spec: &str) -> &str {
    spec.split(',').next().unwrap_or(spec).trim()
}

/// Why `name` cannot name a Linux network interface (the kernel's own
/// rule, `dev_valid_name`: 1 to 15 bytes, no '/', ':' or whitespace, not
/// "." or "..").
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("is not an interface name of 1 to 15 characters");
    }
    if name == "." || name == ".." {
        return Err("is not an interface name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("is not an interface name (no '/', ':' or spaces)");
    }
    Ok(())
}

/// The `iface=` of a net_tap device spec.
fn tap_iface(spec: &str) -> Option<&str> {
    if !dev_name(spec).starts_with("net_tap") {
        return None;
    }
    spec.split(',')
        .skip(1)
        .find_map(|kv| kv.trim().strip_prefix("iface="))
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"
[eal]
args = ["--no-pci", "--file-prefix=uvs"]

[workers]
lcores = [1]

[control]
socket = "/run/uvs/uvsadm.sock"
rules = "configs/demo.rules"

[[port]]
name = "client"
device = "net_tap0,iface=uvs-c"
queues = 1
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24", "2001:db8::1/64"]
rss = "client"

[[port]]
name = "server"
device = "net_tap1,iface=uvs-s"
addresses = ["198.18.1.1/24"]

[[route]]
to = "0.0.0.0/0"
via = "198.18.0.254"

[[neighbor]]
ip = "198.18.1.11"
mac = "02:00:00:00:01:11"
"#;

    fn parse(s: &str) -> Result<Validated, String> {
        Config::parse(s, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_design_example_parses_with_every_key() {
        let v = parse(DEMO).unwrap();
        let c = &v.raw;
        assert_eq!(c.eal.args, ["--no-pci", "--file-prefix=uvs"]);
        assert_eq!(c.workers.lcores, [1]);
        assert_eq!(c.control.socket, PathBuf::from("/run/uvs/uvsadm.sock"));
        assert_eq!(c.control.rules, Some(PathBuf::from("configs/demo.rules")));
        assert_eq!(c.control.group, None);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[1].queues, 1, "queues defaults to 1");
        assert_eq!(v.port_macs[0], Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(v.port_macs[1], None);
        assert_eq!(v.port_addrs[0][1].to_string(), "2001:db8::1/64");
        assert_eq!(v.routes[0].1, "198.18.0.254".parse::<IpAddr>().unwrap());
        assert_eq!(v.neighbors[0].1, MacAddr([2, 0, 0, 0, 1, 0x11]));
        assert_eq!(
            v.port_rss,
            [RssSide::Client, RssSide::All],
            "rss defaults to all"
        );
    }

    #[test]
    fn rss_names_the_side_a_port_faces() {
        for (value, side) in [
            ("client", RssSide::Client),
            ("server", RssSide::Server),
            ("all", RssSide::All),
        ] {
            let v =
                parse(&DEMO.replace("rss = \"client\"", &format!("rss = \"{value}\""))).unwrap();
            assert_eq!(v.port_rss[0], side, "{value}");
        }
        for bad in ["\"clients\"", "\"Client\"", "\"\""] {
            let e = parse(&DEMO.replace("rss = \"client\"", &format!("rss = {bad}"))).unwrap_err();
            assert!(
                e.starts_with("config t.toml: port client: rss must be \"client\""),
                "{e}"
            );
            assert!(
                e.contains("\"server\"") && e.contains("\"all\"") && e.contains(bad),
                "{e}"
            );
        }
        let e = parse(&DEMO.replace("rss = \"client\"", "rss = 1")).unwrap_err();
        assert!(e.contains("rss") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn sysctl_table_sets_tunables_by_their_kernel_names() {
        let v = parse(DEMO).unwrap();
        assert_eq!(
            v.tunables,
            Tunables::default(),
            "no [sysctl]: the kernel's defaults"
        );
        let v = parse(&format!(
            "{DEMO}\n[sysctl]\nexpire_nodest_conn = 1\nsloppy_tcp = 1\nconn_reuse_mode = 0\n"
        ))
        .unwrap();
        let t = v.tunables;
        assert!(t.expire_nodest_conn() && t.sloppy_tcp());
        assert_eq!(t.conn_reuse_mode(), 0);
        assert!(t.pmtu_disc(), "others keep their defaults");
    }

    #[test]
    fn forwarding_is_off_unless_sysctl_switches_it_on_as_linux_names_it() {
        assert_eq!(parse(DEMO).unwrap().forwarding, Forwarding::default());
        let v = parse(&format!(
            "{DEMO}\n[sysctl]\n\"net.ipv4.ip_forward\" = 1\nnet.ipv6.conf.all.forwarding = 1\n"
        ))
        .unwrap();
        assert_eq!(v.forwarding, Forwarding { v4: true, v6: true });
        let v = parse(&format!(
            "{DEMO}\n[sysctl]\nip_forward = 1\nsloppy_tcp = 1\n"
        ))
        .unwrap();
        assert_eq!(
            v.forwarding,
            Forwarding {
                v4: true,
                v6: false
            }
        );
        assert!(v.tunables.sloppy_tcp());
        let e = parse(&format!("{DEMO}\n[sysctl]\n\"net.ipv4.ip_forward\" = 2\n")).unwrap_err();
        assert!(
            e.contains("net.ipv4.ip_forward") && e.contains("0 or 1"),
            "{e}"
        );
    }

    #[test]
    fn bad_sysctl_names_and_values_are_one_line_errors() {
        for (body, want) in [
            ("nosuch = 1", "sysctl.nosuch: unknown IPVS tunable `nosuch'"),
            (
                "sloppy_tcp = 2",
                "sysctl.sloppy_tcp: invalid value `2' for sloppy_tcp: expected 0 or 1",
            ),
            (
                "sloppy_tcp = \"1\"",
                "sysctl.sloppy_tcp: \"1\" is not a whole number",
            ),
            ("sync_ports = 2", "is not supported by UVS"),
            ("secure_tcp = 4", "expected a whole number from 0 to 3"),
        ] {
            let e = parse(&format!("{DEMO}\n[sysctl]\n{body}\n")).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn control_section_is_optional_with_the_default_socket() {
        let s = DEMO.replace(
            "[control]\nsocket = \"/run/uvs/uvsadm.sock\"\nrules = \"configs/demo.rules\"\n",
            "",
        );
        let v = parse(&s).unwrap();
        assert_eq!(v.raw.control, Control::default());
        assert_eq!(v.raw.control.socket, PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for (from, to, key) in [
            ("queues = 1", "queues = 1\nqueue = 2", "queue"),
            ("[workers]", "[workers]\ncores = [2]", "cores"),
            ("[eal]", "[eal]\nargz = []", "argz"),
            ("[[route]]", "[[routes]]", "routes"),
            (
                "rules = ",
                "group = \"uvs\"\nrulez = \"x\"\nrules = ",
                "rulez",
            ),
        ] {
            let e = parse(&DEMO.replacen(from, to, 1)).unwrap_err();
            assert!(e.contains("unknown field") && e.contains(key), "{key}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn bad_values_are_rejected_with_the_port_named() {
        for (from, to, want) in [
            ("02:00:00:00:00:01", "02:00:00:00:01", "port client: mac"),
            (
                "\"198.18.0.1/24\", ",
                "\"198.18.0.1\", ",
                "not an address/length",
            ),
            ("queues = 1", "queues = 0", "queues must be"),
            (
                "queues = 1",
                "queues = 1\nmtu = 9001",
                "mtu must be 1280..=9000",
            ),
            ("queues = 1", "queues = 1\nmtu = 576", "port client: mtu"),
            ("lcores = [1]", "lcores = []", "workers.lcores is empty"),
            ("lcores = [1]", "lcores = [1, 1]", "twice"),
            (
                "via = \"198.18.0.254\"",
                "via = \"198.18.9.254\"",
                "not on any port",
            ),
            (
                "via = \"198.18.0.254\"",
                "via = \"2001:db8::fe\"",
                "other address family",
            ),
            (
                "ip = \"198.18.1.11\"",
                "ip = \"198.18.5.11\"",
                "not on any port",
            ),
            (
                "[\"198.18.1.1/24\"]",
                "[\"198.18.0.1/24\"]",
                "configured twice",
            ),
            ("[\"198.18.1.1/24\"]", "[\"198.18.0.9/16\"]", "overlaps"),
            (
                "net_tap1,iface=uvs-s",
                "net_tap0,iface=uvs-x",
                "used by two ports",
            ),
            ("name = \"server\"", "name = \"client\"", "used twice"),
        ] {
            let s = DEMO.replacen(from, to, 1);
            assert_ne!(s, DEMO, "{from} must be in the example");
            let e = parse(&s).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn vlans_are_interfaces_of_their_port_with_their_own_addresses() {
        let s = DEMO.replacen(
            "[[port]]\nname = \"server\"",
            "[[port.vlan]]\nid = 10\naddresses = [\"198.18.2.1/24\"]\n\n[[port.vlan]]\nid = 4094\n\n[[port]]\nname = \"server\"",
            1,
        );
        let v = parse(&s).unwrap();
        assert_eq!(v.port_vlans[0].len(), 2);
        assert!(v.port_vlans[1].is_empty());
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let ids = [(3, mac, 1500), (5, mac, 1500)];
        let l3 = v.l3(&ids);
        let vlan10 = l3
            .interfaces
            .iter()
            .find(|i| i.port == vlan::iface_id(3, 10).unwrap())
            .expect("VLAN 10 of DPDK port 3");
        assert_eq!(vlan10.addrs, vec!["198.18.2.1/24".parse().unwrap()]);
        assert_eq!((vlan10.mac, vlan10.kernel), (mac, false));
        assert_eq!(l3.interfaces.len(), 4);
        let routes = l3.route_table().unwrap();
        assert_eq!(
            routes.next_hop("198.18.2.7".parse().unwrap()),
            Some((
                vlan::iface_id(3, 10).unwrap(),
                "198.18.2.7".parse().unwrap()
            ))
        );
        assert!(v.check_vlan_ports(&ids).is_ok());
        let e = v
            .check_vlan_ports(&[(8, mac, 1500), (1, mac, 1500)])
            .unwrap_err();
        assert!(e.contains("port client") && e.contains("0 to 7"), "{e}");

        for (vlans, want) in [
            ("id = 0", "port client: vlan id 0 is not a VLAN id"),
            ("id = 4095", "vlan id 4095 is not a VLAN id"),
            ("id = 10\n[[port.vlan]]\nid = 10", "vlan 10 is listed twice"),
            (
                "id = 10\naddresses = [\"198.18.2.1\"]",
                "port client vlan 10: \"198.18.2.1\" is not an address/length",
            ),
            (
                "id = 10\naddresses = [\"224.0.0.1/24\"]",
                "port client vlan 10: 224.0.0.1/24 is not a unicast address",
            ),
            (
                "id = 10\naddresses = [\"198.18.1.7/24\"]",
                "(port server) overlaps prefix 198.18.1.7/24 of another port (port client vlan 10)",
            ),
            ("id = 10\ntag = 3", "unknown field"),
        ] {
            let s = DEMO.replacen(
                "[[port]]\nname = \"server\"",
                &format!("[[port.vlan]]\n{vlans}\n\n[[port]]\nname = \"server\""),
                1,
            );
            let e = parse(&s).unwrap_err();
            assert!(e.contains(want), "{vlans}: {e}");
        }
    }

    #[test]
    fn kernel_names_a_ports_kernel_interface_and_is_off_by_default() {
        let v = parse(&DEMO.replacen("rss = \"client\"", "rss = \"client\"\nkernel = \"uvs0\"", 1))
            .unwrap();
        assert_eq!(v.port_kernel, [Some("uvs0".to_string()), None]);
        let ids = [
            (0, MacAddr([2, 0, 0, 0, 0, 1]), 1500),
            (1, MacAddr([2, 0, 0, 0, 0, 2]), 1500),
        ];
        let l3 = v.l3(&ids);
        assert!(l3.interfaces[0].kernel && !l3.interfaces[1].kernel);
        let v = parse(DEMO).unwrap();
        assert_eq!(v.port_kernel, [None, None]);
        assert!(v.l3(&ids).interfaces.iter().all(|i| !i.kernel));
    }

    #[test]
    fn floating_addresses_need_the_kernel_interface_and_the_ports_prefix() {
        let with = |line: &str| {
            parse(&DEMO.replacen("rss = \"client\"", &format!("rss = \"client\"\n{line}"), 1))
        };
        let v =
            with("kernel = \"uvs0\"\nfloating = [\"198.18.0.100\", \"2001:db8::100\"]").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            v.port_floating,
            [vec![ip("198.18.0.100"), ip("2001:db8::100")], vec![]]
        );
        assert_eq!(
            parse(DEMO).unwrap().port_floating,
            [Vec::<IpAddr>::new(), vec![]]
        );
        for (line, want) in [
            (
                "floating = [\"198.18.0.100\"]",
                "needs the port's kernel interface",
            ),
            (
                "kernel = \"uvs0\"\nfloating = [\"198.18.0.100/24\"]",
                "not an IP address",
            ),
            (
                "kernel = \"uvs0\"\nfloating = [\"198.18.7.1\"]",
                "on none of the port's prefixes",
            ),
            (
                "kernel = \"uvs0\"\nfloating = [\"198.18.0.1\"]",
                "the port's own addresses",
            ),
            (
                "kernel = \"uvs0\"\nfloating = [\"198.18.0.9\", \"198.18.0.9\"]",
                "listed twice",
            ),
        ] {
            let e = with(line).unwrap_err();
            assert!(
                e.contains("port client: floating") && e.contains(want),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn bad_kernel_interface_names_are_rejected_with_the_port_named() {
        let with = |k0: &str, k1: Option<&str>| {
            let mut s = DEMO.replacen(
                "rss = \"client\"",
                &format!("rss = \"client\"\nkernel = {k0:?}"),
                1,
            );
            if let Some(k1) = k1 {
                s = s.replacen(
                    "addresses = [\"198.18.1.1/24\"]",
                    &format!("addresses = [\"198.18.1.1/24\"]\nkernel = {k1:?}"),
                    1,
                );
            }
            parse(&s)
        };
        for bad in ["", "a/b", "has space", "a:b", "sixteen-chars-xx", ".."] {
            let e = with(bad, None).unwrap_err();
            assert!(
                e.contains("port client: kernel") && e.contains("interface name"),
                "{bad:?}: {e}"
            );
        }
        let e = with("uvs0", Some("uvs0")).unwrap_err();
        assert!(
            e.contains("port server") && e.contains("used by two ports"),
            "{e}"
        );
        let e = with("uvs-s", None).unwrap_err();
        assert!(e.contains("also the iface of a net_tap port"), "{e}");
        assert!(with("fifteen-chars-x", Some("uvs1")).is_ok());
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = parse("[eal\nargs=[").unwrap_err();
        assert!(e.starts_with("config t.toml: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn missing_required_sections_are_errors() {
        let e = parse("[eal]\nargs=[]\n").unwrap_err();
        assert!(e.contains("workers"), "{e}");
    }
}

#[cfg(test)]
mod example_configs {
    use super::*;

    /// Every shipped example parses and validates.
    #[test]
    fn examples_in_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(
            n >= 3,
            "expected the net_tap, net_pcap and net_memif examples"
        );
    }

    /// The package's /etc/uvs/uvsd.toml parses and validates, with the
    /// metrics and log sections it shows.
    #[test]
    fn packaged_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/uvsd.toml");
        let v = Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(v.raw.metrics.listen.is_some());
        assert_eq!(v.raw.log.format, crate::log::Format::Kv);
    }
}
