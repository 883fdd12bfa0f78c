//! Typed ipvsadm commands: what the grammar produces from a command line and
//! what the control thread executes.
//!
//! The grammar (`grammar`) turns argv into a [`Command`] after validating it
//! completely, with ipvsadm's messages and exit codes; the server executes
//! it against the daemon's configuration; the formatters (`format`) turn the
//! result into ipvsadm's bytes. A configuration change is the model's own
//! operation ([`Command::Config`] holds a `uvs_model::ops::ConfigOp`), so
//! nothing is said twice or translated; the other variants are what only
//! the client side has (listings, save, help, version, sync daemons,
//! `--sysctl`, which prints what it sets).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uvs_model::model::ServiceKey;
use uvs_model::ops::ConfigOp;

/// One ipvsadm command, fully validated on the client side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A configuration change (`-A -E -D -C -a -e -d --set -Z --add-laddr
    /// --del-laddr`): the model's operation itself, executed as it is.
    Config(ConfigOp),
    /// `-R`: the client reads stdin and sends the parsed commands.
    Restore(Vec<Command>),
    /// `-S`
    Save { numeric: bool },
    /// `-L`, `-l`
    List(ListOptions),
    /// `--start-daemon`
    StartDaemon(DaemonConfig),
    /// `--stop-daemon`
    StopDaemon(DaemonState),
    /// `-h`
    Help,
    /// `-v`
    Version,
    /// `--sysctl [NAME[=VALUE]]` (a UVS extension): the IPVS tunables.
    Sysctl(SysctlRequest),
    /// `--counters [--json]` (a UVS extension): every worker counter of
    /// the running director, per worker and in total.
    Counters { json: bool },
    /// `--get-laddr [service]` (DPVS): the local addresses and their use.
    GetLocal(Option<ServiceKey>),
}

/// What `--sysctl` asks for. Names are the kernel's short names
/// (`sloppy_tcp`), already checked by the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SysctlRequest {
    /// `--sysctl`: every tunable, `sysctl`'s `name = value` lines.
    List,
    /// `--sysctl NAME`: one line.
    Get(String),
    /// `--sysctl NAME=VALUE`: set it (and print the line, as `sysctl -w`).
    Set(String, i32),
}

/// What `-L` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListKind {
    /// Services and destinations, with one of the detail formats.
    Services(Detail),
    /// `-c`; `persistent_conn` adds the PE columns.
    Connections { persistent_conn: bool },
    /// `--timeout`
    Timeout,
    /// `--daemon`
    Daemon,
}

/// Column set of a service listing. When several are given, the first of
/// stats, rate, thresholds, persistent-conn, tun-info wins (ipvsadm's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    Default,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
}

/// Options of `-L`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOptions {
    pub kind: ListKind,
    /// `-n`
    pub numeric: bool,
    /// `-X`/`--exact`
    pub exact: bool,
    /// `--nosort`
    pub nosort: bool,
    /// `--json` (a UVS extension)
    pub json: bool,
    /// List only this service (no version header).
    pub service: Option<ServiceKey>,
}

/// Sync daemon role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonState {
    Master,
    Backup,
}

/// `--start-daemon` parameters as given (defaults are the kernel's to fill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonConfig {
    pub state: DaemonState,
    pub mcast_interface: String,
    pub syncid: u8,
    pub sync_maxlen: Option<u16>,
    pub mcast_group: Option<IpAddr>,
    pub mcast_port: Option<u16>,
    pub mcast_ttl: Option<u8>,
}
