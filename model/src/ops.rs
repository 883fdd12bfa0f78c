//! The configuration operations: what one ipvsadm command line asks the
//! director to change ([`ConfigOp`]), the kernel's checks of each one that
//! need no state, and the kernel's errors and their libipvs texts
//! ([`ApplyError`]).
//!
//! Why a type of its own: the ipvsadm grammar (uvsadm, the rules file,
//! keepalived's configuration) produces these values directly and the
//! engine's store (`dataplane::config::ConfigStore`) executes them, so the
//! two sides share one description of every change and nothing is
//! translated in between. The checks that need the current configuration
//! (does the service exist, is the destination in the trash) are the
//! store's; the ones here look at the operation alone and are called by the
//! store in the kernel's order.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::estimator::Rates;
use crate::model::{
    DestConfig, Family, ForwardMethod, Protocol, ServiceConfig, ServiceKey, TunnelType,
};
use crate::stats::Counters;
use crate::tunables::Tunable;

/// Scheduler names the kernel (and UVS) knows.
pub const SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// One configuration change, as the kernel receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    /// `-A`
    AddService(ServiceConfig),
    /// `-E`: replaces the service's configuration; destinations stay.
    EditService(ServiceConfig),
    /// `-D`
    DeleteService(ServiceKey),
    /// `-C`
    Flush,
    /// `-a`
    AddDest(ServiceKey, DestConfig),
    /// `-e`: replaces the destination's configuration; it keeps its place.
    EditDest(ServiceKey, DestConfig),
    /// `-d`
    DeleteDest {
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
    },
    /// `--set`: 0 leaves that timeout unchanged.
    SetTimeouts { tcp: u32, tcp_fin: u32, udp: u32 },
    /// `-Z`: one service (and its destinations) or everything.
    Zero(Option<ServiceKey>),
    /// `uvsadm --sysctl NAME=VALUE` (and the config's `[sysctl]` table):
    /// one IPVS tunable, value already checked against its range.
    SetTunable(Tunable, i32),
    /// `--add-laddr -z ADDR` (DPVS): a FULLNAT local address for the service.
    AddLocal(ServiceKey, IpAddr),
    /// `--del-laddr -z ADDR` (DPVS). Connections using it keep their ports
    /// until they end; new ones no longer get it.
    DelLocal(ServiceKey, IpAddr),
}

impl ConfigOp {
    pub fn kind(&self) -> OpKind {
        match self {
            ConfigOp::AddService(_) => OpKind::AddService,
            ConfigOp::EditService(_) => OpKind::EditService,
            ConfigOp::DeleteService(_) => OpKind::DeleteService,
            ConfigOp::Flush => OpKind::Flush,
            ConfigOp::AddDest(..) => OpKind::AddDest,
            ConfigOp::EditDest(..) => OpKind::EditDest,
            ConfigOp::DeleteDest { .. } => OpKind::DeleteDest,
            ConfigOp::SetTimeouts { .. } => OpKind::SetTimeouts,
            ConfigOp::Zero(_) => OpKind::Zero,
            ConfigOp::SetTunable(..) => OpKind::SetTunable,
            ConfigOp::AddLocal(..) => OpKind::AddLocal,
            ConfigOp::DelLocal(..) => OpKind::DelLocal,
        }
    }
}

/// Which operation failed: libipvs words its messages per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    AddService,
    EditService,
    DeleteService,
    Flush,
    AddDest,
    EditDest,
    DeleteDest,
    SetTimeouts,
    Zero,
    SetTunable,
    AddLocal,
    DelLocal,
}

/// A refused operation: the kernel's errno, the operation, and (for EINVAL
/// and ERANGE) why, for logs. Its `Display` is exactly what ipvsadm prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// EEXIST: the service or destination already exists.
    #[error("{}", self.message())]
    Exists(OpKind),
    /// ESRCH: the service does not exist.
    #[error("{}", self.message())]
    NoService(OpKind),
    /// ENOENT: unknown scheduler or persistence engine, or no such
    /// destination.
    #[error("{}", self.message())]
    NotFound(OpKind),
    /// EINVAL, with the reason.
    #[error("{}", self.message())]
    Invalid(OpKind, &'static str),
    /// ERANGE, with the reason.
    #[error("{}", self.message())]
    OutOfRange(OpKind, &'static str),
}

impl ApplyError {
    /// Linux errno number.
    pub fn errno(&self) -> i32 {
        match self {
            ApplyError::Exists(_) => 17,
            ApplyError::NoService(_) => 3,
            ApplyError::NotFound(_) => 2,
            ApplyError::Invalid(..) => 22,
            ApplyError::OutOfRange(..) => 34,
        }
    }

    pub fn op(&self) -> OpKind {
        match *self {
            ApplyError::Exists(op)
            | ApplyError::NoService(op)
            | ApplyError::NotFound(op)
            | ApplyError::Invalid(op, _)
            | ApplyError::OutOfRange(op, _) => op,
        }
    }

    /// Why the kernel refused, beyond the errno (empty when the message says
    /// it all).
    pub fn detail(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_, why) | ApplyError::OutOfRange(_, why) => why,
            _ => "",
        }
    }

    /// The text libipvs's `ipvs_strerror` gives for this operation and
    /// errno, falling back to `strerror()` as it does.
    pub fn message(&self) -> &'static str {
        use OpKind as K;
        match *self {
            ApplyError::Exists(K::AddService) => "Service already exists",
            ApplyError::Exists(K::AddDest) => "Destination already exists",
            ApplyError::Exists(_) => "File exists",
            ApplyError::NoService(K::AddDest | K::EditDest | K::DeleteDest) => {
                "Service not defined"
            }
            ApplyError::NoService(
                K::EditService | K::DeleteService | K::Zero | K::AddLocal | K::DelLocal,
            ) => "No such service",
            ApplyError::NotFound(K::DelLocal) => "No such local address",
            ApplyError::NoService(_) => "No such process",
            ApplyError::NotFound(K::AddService | K::EditService) => {
                "Scheduler or persistence engine not found"
            }
            ApplyError::NotFound(K::EditDest | K::DeleteDest) => "No such destination",
            ApplyError::NotFound(_) => "No such file or directory",
            // The SYN proxy is an extension: no libipvs text to keep, so
            // the reason itself.
            ApplyError::Invalid(_, why) if why.starts_with(SYNPROXY_REFUSAL) => why,
            ApplyError::Invalid(..) => {
                "Invalid operation.  Possibly wrong module version, address not unicast, ..."
            }
            ApplyError::OutOfRange(..) => "Numerical result out of range",
        }
    }
}

/// Counters since the `-Z` zero point, and the estimated rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRow {
    pub counters: Counters,
    pub rates: Rates,
}

/// Statistics of every listed object, read at one moment (for listings).
#[derive(Debug, Clone, Default)]
pub struct StatsView {
    pub services: HashMap<ServiceKey, StatsRow>,
    pub dests: HashMap<(ServiceKey, IpAddr, u16), StatsRow>,
}

impl StatsView {
    /// A service's row (zeros if unknown).
    pub fn service(&self, key: &ServiceKey) -> StatsRow {
        self.services.get(key).copied().unwrap_or_default()
    }

    /// A destination's row (zeros if unknown).
    pub fn dest(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> StatsRow {
        self.dests
            .get(&(*key, addr, port))
            .copied()
            .unwrap_or_default()
    }
}

pub fn validate_service(op: OpKind, cfg: &ServiceConfig) -> Result<(), ApplyError> {
    if cfg.key.family() == Family::V6 && !(1..=128).contains(&cfg.netmask) {
        return Err(ApplyError::Invalid(op, "IPv6 netmask outside 1..128"));
    }
    let tcp = matches!(
        cfg.key,
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            ..
        }
    );
    if cfg.synproxy && !tcp {
        return Err(ApplyError::Invalid(
            op,
            "the SYN proxy (-j) is for TCP services (-t) only",
        ));
    }
    Ok(())
}

/// How the SYN proxy's refusals start (they are shown as they are).
pub const SYNPROXY_REFUSAL: &str = "the SYN proxy (-j)";

/// Why the SYN proxy refuses DR and TUN real servers.
pub const SYNPROXY_NEEDS_NAT: &str = "the SYN proxy (-j) needs masquerading (-m): \
     DR and TUN replies bypass the director, which must translate their sequence numbers";

pub fn check_engines(op: OpKind, cfg: &ServiceConfig) -> Result<(), ApplyError> {
    if !SCHEDULERS.contains(&cfg.scheduler.as_str()) || cfg.pe.is_some() {
        return Err(ApplyError::NotFound(op));
    }
    Ok(())
}

/// Checks shared by `-a` and `-e`, in the kernel's order.
pub fn validate_dest(op: OpKind, svc: &ServiceConfig, d: &DestConfig) -> Result<(), ApplyError> {
    let tunnel = matches!(d.method, ForwardMethod::Tunnel(_));
    if Family::of(&d.addr) != svc.key.family() && !tunnel {
        return Err(ApplyError::Invalid(
            op,
            "different address family is allowed only for tunneling servers",
        ));
    }
    if d.weight < 0 {
        return Err(ApplyError::OutOfRange(op, "negative weight"));
    }
    if d.u_threshold > i32::MAX as u32 {
        return Err(ApplyError::Invalid(op, "upper threshold above INT_MAX"));
    }
    if d.l_threshold > d.u_threshold {
        return Err(ApplyError::OutOfRange(
            op,
            "lower threshold above upper threshold",
        ));
    }
    if let ForwardMethod::Tunnel(t) = d.method {
        if t.kind == TunnelType::Gue && t.port == 0 {
            return Err(ApplyError::Invalid(op, "GUE tunnel without a port"));
        }
    }
    if svc.synproxy && d.method != ForwardMethod::Masq {
        return Err(ApplyError::Invalid(op, SYNPROXY_NEEDS_NAT));
    }
    Ok(())
}

/// The kernel's "local or unicast" test, without knowing local addresses.
pub fn is_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(o[0] == 0 || a.is_broadcast() || a.is_multicast())
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
            let link_local = s[0] & 0xffc0 == 0xfe80;
            !(a.is_unspecified() || a.is_multicast() || mapped || link_local)
        }
    }
}
