//! The parts of a keepalived.conf that drive a load balancer, typed.
//!
//! Why a model of our own rather than keepalived's: UVS needs only what
//! becomes a service, a destination or a checker, with every inherited
//! value already resolved (checker -> real server -> virtual server ->
//! checker-type default, keepalived's order), so the runtime never looks a
//! default up again. [`load`] reads a file; a file keepalived's `-t` would
//! reject is refused with every problem at its file and line, and so is a
//! file that asks for something UVS cannot do yet (fwmark entries of a
//! `virtual_server_group`, the checkers other than TCP_CHECK, HTTP_GET,
//! SSL_GET and MISC_CHECK), said as such.

pub mod lex;
mod parse;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub use lex::{Diag, Loc};

/// Why a configuration was refused: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The main file could not be read at all.
    pub unreadable: Option<String>,
    pub diags: Vec<Diag>,
}

impl std::fmt::Display for ConfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.unreadable {
            return write!(f, "{u}");
        }
        for (i, d) in self.diags.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfError {}

/// Everything uvs-keepalived acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub virtual_servers: Vec<VirtualServer>,
}

/// The few `global_defs` keywords that change what the checker does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Global {
    /// `lvs_flush`: clear the director's table before configuring it.
    pub lvs_flush: bool,
    /// `enable_script_security` (keepalived refuses scripts without it).
    pub script_security: bool,
    /// `script_user NAME [GROUP]`.
    pub script_user: Option<String>,
}

/// `-t`, `-u` or `--sctp-service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// How a destination is reached (keepalived's lvs_method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Nat,
    Dr,
    /// TUN with its uvsadm tunnel options (`--tun-type gue --tun-port N`..).
    Tun(Vec<String>),
}

/// A script line (notify, quorum, misc_path): program and arguments,
/// split the way keepalived splits them (no shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub argv: Vec<String>,
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.argv.join(" "))
    }
}

/// One service of a virtual server: an address and port, or a firewall
/// mark (`virtual_server fwmark N`, the marks iptables MARK rules set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    Addr(SocketAddr),
    /// IPv6 when the real servers are.
    Mark {
        mark: u32,
        v6: bool,
    },
}

impl Svc {
    /// The service's port; 0 for an fwmark service (its real servers take
    /// each packet's port).
    pub fn port(&self) -> u16 {
        match self {
            Svc::Addr(a) => a.port(),
            Svc::Mark { .. } => 0,
        }
    }

    pub fn is_ipv4(&self) -> bool {
        match self {
            Svc::Addr(a) => a.is_ipv4(),
            Svc::Mark { v6, .. } => !v6,
        }
    }
}

impl std::fmt::Display for Svc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Svc::Addr(a) => write!(f, "{a}"),
            Svc::Mark { mark, .. } => write!(f, "fwmark {mark}"),
        }
    }
}

/// A `virtual_server` block: one or more services (several from a
/// `virtual_server_group`) sharing real servers and checkers.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    pub loc: Loc,
    /// How logs and the status name it: `198.18.0.100:80`, `fwmark 1` or
    /// `group NAME`.
    pub name: String,
    pub services: Vec<Svc>,
    pub protocol: Protocol,
    pub scheduler: String,
    /// Service flags for uvsadm (`-b`): sh-port, mh-fallback...
    pub sched_flags: Vec<String>,
    pub ops: bool,
    pub persistence: Option<u32>,
    pub granularity: Option<String>,
    pub quorum: u64,
    pub hysteresis: u64,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub sorry: Option<Sorry>,
    pub omega: bool,
    pub real_servers: Vec<RealServer>,
}

/// `sorry_server`: used while quorum is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sorry {
    pub addr: IpAddr,
    /// None: the service's port.
    pub port: Option<u16>,
    pub method: Method,
    /// `sorry_server_inhibit`: kept at weight 0 while unused.
    pub inhibit: bool,
}

/// A `real_server` block, inherited values resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    pub loc: Loc,
    pub addr: IpAddr,
    /// None: each service's own port (NAT without a port, DR, TUN).
    pub port: Option<u16>,
    pub weight: u32,
    pub method: Method,
    pub upper: Option<u32>,
    pub lower: Option<u32>,
    pub inhibit: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub checkers: Vec<Checker>,
}

/// One checker block with its timing resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Checker {
    pub loc: Loc,
    pub kind: CheckKind,
    pub timing: Timing,
    /// Start failed (`alpha`): the server waits for a first success.
    pub alpha: bool,
    pub log_all_failures: bool,
}

/// keepalived's per-checker timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay_loop: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Upper bound of the random delay before the first probe.
    pub warmup: Duration,
}

/// Where a connection-based probe goes and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    pub fwmark: Option<u32>,
    pub connect_timeout: Duration,
}

/// What a checker probes.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Tcp(Target),
    Http(Http),
    Misc(Misc),
}

impl CheckKind {
    /// keepalived's name of the checker type.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp(_) => "TCP_CHECK",
            CheckKind::Http(h) if h.tls => "SSL_GET",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
        }
    }
}

/// HTTP_GET or SSL_GET.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub target: Target,
    pub tls: bool,
    /// `http_protocol`: 1.0, 1.0C (1.0 + Connection: close) or 1.1.
    pub protocol: HttpProtocol,
    pub sni: bool,
    /// `fast_recovery`: while not up, the next URL of a pass is fetched
    /// at once instead of after delay_loop.
    pub fast_recovery: bool,
    pub urls: Vec<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    V10,
    V10Close,
    V11,
}

/// One `url` block; `host` is the Host header already chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub path: String,
    /// Accepted status codes as inclusive ranges; default 200-299.
    pub status: Vec<(u16, u16)>,
    /// MD5 of the body, lowercase hex.
    pub digest: Option<String>,
    pub host: String,
}

/// MISC_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misc {
    pub script: Script,
    pub timeout: Duration,
    pub dynamic: bool,
}

/// Reads and validates a keepalived.conf and what it includes.
pub fn load(path: &Path) -> Result<Config, ConfError> {
    let (tree, mut diags) = lex::read_tree(path).map_err(|e| ConfError {
        unreadable: Some(e),
        diags: vec![],
    })?;
    let cfg = parse::config(&tree, &mut diags);
    finish(cfg, diags)
}

/// [`load`] over text already in memory (`name` is used in messages).
pub fn parse_text(name: &str, text: &str) -> Result<Config, ConfError> {
    let (tree, mut diags) = lex::tree_of_text(name, text);
    let cfg = parse::config(&tree, &mut diags);
    finish(cfg, diags)
}

fn finish(cfg: Config, mut diags: Vec<Diag>) -> Result<Config, ConfError> {
    if diags.is_empty() {
        Ok(cfg)
    } else {
        // Keep file order; a problem found twice is said once.
        diags.dedup();
        Err(ConfError {
            unreadable: None,
            diags,
        })
    }
}

#[cfg(test)]
mod tests;
