//! The command-line state machine: ipvsadm's `parse_options` followed by
//! the checks of `process_options`, producing a typed [`Command`].
//!
//! ipvsadm applies each option to one service/destination record as popt
//! returns it, so order matters in a few places that operators rely on or
//! trip over, and they are kept: `-r` without a port copies the service
//! port known at that moment; `-M` reads an IPv6 prefix length only if an
//! IPv6 service was parsed before it; an IPv6 service (or `-f ... -6`) sets
//! the persistence netmask to 128 whenever it is parsed; `-6` needs `-f`
//! before it. Scheduler flags are checked last, against the final `-s`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use uvs_model::model::{
    DestConfig, Family, ForwardMethod, Protocol, SchedFlags, ServiceConfig, ServiceKey,
    TunnelConfig, TunnelCsum, TunnelType, DEFAULT_PERSISTENCE_TIMEOUT,
};
use uvs_model::ops::ConfigOp;

use super::address::{atoi, inet_aton, parse_fwmark, parse_host_port, string_to_number, Resolver};
use super::error::GrammarError;
use super::options::{OptId, Tag, Tokenizer};
use super::validate::{
    generic_opt_check, list_conflicts, parse_sched_flags, tunnel_opt_check,
    tunnel_options_need_tunnel, Cmd, TunKind,
};
use crate::command::{
    Command, DaemonConfig, DaemonState, Detail, ListKind, ListOptions, SysctlRequest,
};
use uvs_model::tunables::{Tunable, TunableError, Tunables};

/// Longest timeout ipvsadm accepts (31 days).
pub const MAX_TIMEOUT: i64 = 86400 * 31;
/// `IP_VS_SCHEDNAME_MAXLEN - 1`, `IP_VS_PENAME_MAXLEN - 1`, `IFNAMSIZ - 1`.
const NAME_MAX: usize = 15;
/// ipvsadm copies `-b`'s list into a 128-byte buffer.
const SCHED_FLAGS_MAX: usize = 127;
/// Default multicast interface of `--start-daemon`.
const DEFAULT_MCAST_IFN: &str = "eth0";

/// The service half of ipvsadm's command record.
#[derive(Debug)]
struct Svc {
    af: Option<Family>,
    protocol: Option<Protocol>,
    addr: IpAddr,
    port: u16,
    fwmark: u32,
    /// IPv4: host-order mask; IPv6: prefix length.
    netmask: u32,
    persistent: Option<u32>,
    one_packet: bool,
    /// `-j enable` (DPVS's option).
    synproxy: bool,
    scheduler: String,
    pe: String,
    toa: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Masq,
    Route,
    Tunnel,
    FullNat,
}

/// The destination half.
#[derive(Debug)]
struct Dest {
    af: Option<Family>,
    addr: IpAddr,
    port: u16,
    method: Method,
    weight: i32,
    u_threshold: u32,
    l_threshold: u32,
    tun_kind: TunKind,
    tun_port: u16,
    tun_flags: u32,
}

/// Byte-truncation like `strncpy` into a fixed buffer, kept valid UTF-8.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    String::from_utf8_lossy(&s.as_bytes()[..max]).into_owned()
}

fn proto_name(p: Option<Protocol>) -> Option<&'static str> {
    match p? {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Sctp => Some("sctp"),
    }
}

fn set_option(options: &mut u64, opt: OptId) -> Result<(), GrammarError> {
    if *options & opt.bit() != 0 {
        return Err(GrammarError::fail(format!(
            "multiple '{}' options specified",
            opt.name()
        )));
    }
    *options |= opt.bit();
    Ok(())
}

fn daemon_state(word: &str) -> Option<DaemonState> {
    match word {
        "master" => Some(DaemonState::Master),
        "backup" => Some(DaemonState::Backup),
        _ => None,
    }
}

fn number(arg: &str, min: i64, max: i64, message: &str) -> Result<i64, GrammarError> {
    string_to_number(arg, min, max).ok_or_else(|| GrammarError::fail(message))
}

fn timeout_value(arg: &str, min: i64) -> Result<u32, GrammarError> {
    string_to_number(arg, min, MAX_TIMEOUT)
        .map(|v| v as u32)
        .ok_or_else(|| GrammarError::fail(format!("invalid timeout value `{arg}' specified")))
}

/// `--sysctl`, `--sysctl NAME`, `--sysctl NAME=VALUE` (a UVS extension):
/// nothing may follow, and the name and value are checked here against the
/// tunables' table, so a bad one fails before the director is asked.
fn sysctl_command(arg: Option<&str>, mut tok: Tokenizer<'_>) -> Result<Command, GrammarError> {
    if let Some(p) = tok.next_option()? {
        return Err(GrammarError::fail(format!(
            "--sysctl takes one NAME or NAME=VALUE and no other option, not `{}'",
            p.word
        )));
    }
    if let Some(w) = tok.into_leftovers().first() {
        return Err(GrammarError::fail(format!(
            "--sysctl takes one NAME or NAME=VALUE, not also `{w}'"
        )));
    }
    let fail = |e: TunableError| GrammarError::fail(e.to_string());
    Ok(Command::Sysctl(match arg {
        None => SysctlRequest::List,
        Some(a) if a.contains('=') => {
            let mut t = Tunables::default();
            let which = t.assign(a).map_err(fail)?;
            SysctlRequest::Set(which.name().to_string(), t.get(which))
        }
        Some(a) => SysctlRequest::Get(Tunable::lookup(a).map_err(fail)?.name().to_string()),
    }))
}

/// `--counters [--json]` (a UVS extension): nothing else may follow.
fn counters_command(mut tok: Tokenizer<'_>) -> Result<Command, GrammarError> {
    let mut json = false;
    while let Some(p) = tok.next_option()? {
        if p.tag != Tag::Json || json {
            return Err(GrammarError::fail(format!(
                "--counters takes only --json, not `{}'",
                p.word
            )));
        }
        json = true;
    }
    if let Some(w) = tok.into_leftovers().first() {
        return Err(GrammarError::fail(format!(
            "--counters takes only --json, not `{w}'"
        )));
    }
    Ok(Command::Counters { json })
}

/// `--add-laddr|--del-laddr|--get-laddr` (DPVS): a service option, and
/// `-z ADDR` for adding and deleting (`-F IFNAME` is accepted and unused).
fn laddr_command(
    cmd: Tag,
    mut tok: Tokenizer<'_>,
    resolver: &dyn Resolver,
) -> Result<Command, GrammarError> {
    let mut key = None;
    let mut addr = None;
    while let Some(p) = tok.next_option()? {
        let arg = p.arg.as_deref().unwrap_or("");
        match p.tag {
            Tag::TcpService | Tag::UdpService | Tag::SctpService if key.is_none() => {
                let protocol = match p.tag {
                    Tag::TcpService => Protocol::Tcp,
                    Tag::UdpService => Protocol::Udp,
                    _ => Protocol::Sctp,
                };
                let hp = parse_host_port(arg, proto_name(Some(protocol)), resolver).ok_or_else(
                    || GrammarError::fail("illegal virtual server address[:port] specified"),
                )?;
                key = Some(ServiceKey::Addr {
                    protocol,
                    addr: hp.addr,
                    port: hp.port.unwrap_or(0),
                });
            }
            Tag::FwmarkService if key.is_none() => {
                let mark = parse_fwmark(arg).ok_or_else(|| {
                    GrammarError::fail(format!("invalid fwmark value `{arg}' specified"))
                })?;
                key = Some(ServiceKey::Fwmark {
                    mark,
                    family: Family::V4,
                });
            }
            Tag::Ipv6 => match &mut key {
                Some(ServiceKey::Fwmark { family, .. }) => *family = Family::V6,
                _ => return Err(GrammarError::fail("-6 used before -f\n")),
            },
            Tag::Laddr if addr.is_none() && cmd != Tag::GetLaddr => {
                addr = Some(
                    parse_host_port(arg, None, resolver)
                        .filter(|hp| hp.port.is_none())
                        .ok_or_else(|| GrammarError::fail("illegal local address"))?
                        .addr,
                );
            }
            Tag::Ifname if cmd != Tag::GetLaddr => {}
            _ => return Err(GrammarError::fail(format!("invalid option `{}'", p.word))),
        }
    }
    if let Some(w) = tok.into_leftovers().first() {
        return Err(GrammarError::fail(format!("unexpected argument {w}")));
    }
    let name = match cmd {
        Tag::AddLaddr => "add-laddr",
        Tag::DelLaddr => "del-laddr",
        _ => "get-laddr",
    };
    if cmd == Tag::GetLaddr {
        return Ok(Command::GetLocal(key));
    }
    let key = key.ok_or_else(|| {
        GrammarError::fail(format!(
            "You need to supply the 'service-address' option for the '{name}' command"
        ))
    })?;
    let addr = addr.ok_or_else(|| {
        GrammarError::fail(format!(
            "You need to supply the 'laddr' option for the '{name}' command"
        ))
    })?;
    Ok(if cmd == Tag::AddLaddr {
        Command::Config(ConfigOp::AddLocal(key, addr))
    } else {
        Command::Config(ConfigOp::DelLocal(key, addr))
    })
}

/// Parses one command line (argv without the program name).
/// `reading_stdin` is true for lines of `-R` input, where `-R` is refused.
pub fn parse_command(
    args: &[String],
    resolver: &dyn Resolver,
    reading_stdin: bool,
) -> Result<Command, GrammarError> {
    if args.is_empty() {
        return Ok(Command::List(ListOptions {
            kind: ListKind::Services(Detail::Default),
            numeric: false,
            exact: false,
            nosort: false,
            json: false,
            service: None,
        }));
    }
    let mut tok = Tokenizer::new(args);
    let first = match tok.next_option() {
        Ok(Some(p)) => p,
        _ => return Err(GrammarError::try_help()),
    };
    let mut daemon = DaemonConfig {
        state: DaemonState::Master,
        mcast_interface: String::new(),
        syncid: 0,
        sync_maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
    };
    let cmd = match first.tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DeleteService => Cmd::Del,
        Tag::Clear => Cmd::Flush,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DeleteServer => Cmd::DelDest,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::Set => Cmd::Timeout,
        Tag::StartDaemon | Tag::StopDaemon => {
            let word = first.arg.as_deref().unwrap_or("");
            daemon.state = match daemon_state(word) {
                Some(s) => s,
                None if first.tag == Tag::StartDaemon => {
                    return Err(GrammarError::fail(
                        "illegal start-daemon parameter specified",
                    ))
                }
                None => return Err(GrammarError::fail("illegal start_daemon specified")),
            };
            if first.tag == Tag::StartDaemon {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        Tag::Help => return Ok(Command::Help),
        Tag::Version => return Ok(Command::Version),
        Tag::Sysctl => return sysctl_command(first.arg.as_deref(), tok),
        Tag::Counters => return counters_command(tok),
        Tag::AddLaddr | Tag::DelLaddr | Tag::GetLaddr => {
            return laddr_command(first.tag, tok, resolver)
        }
        _ => return Err(GrammarError::try_help()),
    };
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        tok.b_means_fullnat();
    }

    let mut options: u64 = 0;
    let mut svc = Svc {
        af: None,
        protocol: None,
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        fwmark: 0,
        netmask: u32::MAX,
        persistent: None,
        one_packet: false,
        synproxy: false,
        scheduler: String::new(),
        pe: String::new(),
        toa: false,
    };
    let mut dest = Dest {
        af: None,
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        method: Method::Route,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_kind: TunKind::Ipip,
        tun_port: 0,
        tun_flags: 0,
    };
    let mut sched_flags_arg = String::new();

    while let Some(p) = tok.next_option()? {
        let arg = p.arg.as_deref().unwrap_or("");
        match p.tag {
            Tag::AddService
            | Tag::EditService
            | Tag::DeleteService
            | Tag::Clear
            | Tag::Restore
            | Tag::Save
            | Tag::AddServer
            | Tag::EditServer
            | Tag::DeleteServer
            | Tag::List
            | Tag::Zero
            | Tag::Set
            | Tag::StartDaemon
            | Tag::StopDaemon
            | Tag::Help
            | Tag::Version
            | Tag::Sysctl
            | Tag::Counters
            | Tag::AddLaddr
            | Tag::DelLaddr
            | Tag::GetLaddr
            | Tag::Laddr
            | Tag::Ifname => {
                // ipvsadm's option loop has no case for commands: a second
                // command falls to its default case, which names the argv
                // word popt consumed last (`set_command`'s "multiple
                // commands specified" is unreachable).
                return Err(GrammarError::fail(format!("invalid option `{}'", p.word)));
            }
            Tag::TcpService | Tag::UdpService | Tag::SctpService => {
                set_option(&mut options, OptId::Service)?;
                let protocol = match p.tag {
                    Tag::TcpService => Protocol::Tcp,
                    Tag::UdpService => Protocol::Udp,
                    _ => Protocol::Sctp,
                };
                svc.protocol = Some(protocol);
                let hp = parse_host_port(arg, proto_name(Some(protocol)), resolver).ok_or_else(
                    || GrammarError::fail("illegal virtual server address[:port] specified"),
                )?;
                svc.addr = hp.addr;
                svc.af = Some(Family::of(&hp.addr));
                if hp.addr.is_ipv6() {
                    svc.netmask = 128;
                }
                if let Some(port) = hp.port {
                    svc.port = port;
                }
            }
            Tag::FwmarkService => {
                set_option(&mut options, OptId::Service)?;
                svc.af = Some(Family::V4);
                svc.protocol = Some(Protocol::Tcp);
                svc.fwmark = parse_fwmark(arg).ok_or_else(|| {
                    GrammarError::fail(format!("invalid fwmark value `{arg}' specified"))
                })?;
            }
            Tag::Scheduler => {
                set_option(&mut options, OptId::Scheduler)?;
                svc.scheduler = truncate(arg, NAME_MAX);
            }
            Tag::Persistent => {
                set_option(&mut options, OptId::Persistent)?;
                svc.persistent = Some(match p.arg.as_deref() {
                    None => DEFAULT_PERSISTENCE_TIMEOUT,
                    Some(v) => timeout_value(v, 1)?,
                });
            }
            Tag::Netmask => {
                set_option(&mut options, OptId::Netmask)?;
                if svc.af != Some(Family::V6) {
                    svc.netmask = inet_aton(arg)
                        .or_else(|| resolver.host_v4(arg).map(u32::from))
                        .ok_or_else(|| {
                            GrammarError::fail("illegal virtual server persistent mask specified")
                        })?;
                } else {
                    let len = atoi(arg);
                    if !(1..=128).contains(&len) {
                        return Err(GrammarError::fail("illegal ipv6 netmask specified"));
                    }
                    svc.netmask = len as u32;
                }
            }
            Tag::RealServer => {
                set_option(&mut options, OptId::Server)?;
                let hp =
                    parse_host_port(arg, proto_name(svc.protocol), resolver).ok_or_else(|| {
                        GrammarError::fail("illegal real server address[:port] specified")
                    })?;
                dest.af = Some(Family::of(&hp.addr));
                dest.addr = hp.addr;
                dest.port = hp.port.unwrap_or(svc.port);
            }
            Tag::Masquerading | Tag::Ipip | Tag::Gatewaying | Tag::FullNat => {
                set_option(&mut options, OptId::Forward)?;
                dest.method = match p.tag {
                    Tag::Masquerading => Method::Masq,
                    Tag::Ipip => Method::Tunnel,
                    Tag::FullNat => Method::FullNat,
                    _ => Method::Route,
                };
            }
            Tag::Toa => {
                if !matches!(cmd, Cmd::Add | Cmd::Edit) {
                    return Err(GrammarError::fail(format!(
                        "Illegal 'toa' option with the '{}' command",
                        cmd.name()
                    )));
                }
                svc.toa = true;
            }
            Tag::Weight => {
                set_option(&mut options, OptId::Weight)?;
                dest.weight =
                    number(arg, 0, i64::from(i32::MAX), "illegal weight specified")? as i32;
            }
            Tag::UThreshold => {
                set_option(&mut options, OptId::UThreshold)?;
                dest.u_threshold =
                    number(arg, 0, i64::from(i32::MAX), "illegal u_threshold specified")? as u32;
            }
            Tag::LThreshold => {
                set_option(&mut options, OptId::LThreshold)?;
                dest.l_threshold =
                    number(arg, 0, i64::from(i32::MAX), "illegal l_threshold specified")? as u32;
            }
            Tag::Numeric => set_option(&mut options, OptId::Numeric)?,
            Tag::Connection => set_option(&mut options, OptId::Connection)?,
            Tag::McastInterface => {
                set_option(&mut options, OptId::Mcast)?;
                daemon.mcast_interface = truncate(arg, NAME_MAX);
            }
            Tag::SyncId => {
                set_option(&mut options, OptId::SyncId)?;
                daemon.syncid = number(arg, 0, 255, "illegal syncid specified")? as u8;
            }
            Tag::Timeout => set_option(&mut options, OptId::Timeout)?,
            Tag::Daemon => set_option(&mut options, OptId::Daemon)?,
            Tag::Stats => set_option(&mut options, OptId::Stats)?,
            Tag::Rate => set_option(&mut options, OptId::Rate)?,
            Tag::Thresholds => set_option(&mut options, OptId::Thresholds)?,
            Tag::PersistentConn => set_option(&mut options, OptId::PersistentConn)?,
            Tag::TunInfo => set_option(&mut options, OptId::TunInfo)?,
            Tag::NoSort => set_option(&mut options, OptId::NoSort)?,
            Tag::Sort => {}
            Tag::Exact => set_option(&mut options, OptId::Exact)?,
            Tag::Json => set_option(&mut options, OptId::Json)?,
            Tag::Ipv6 => {
                if svc.fwmark == 0 {
                    return Err(GrammarError::fail("-6 used before -f\n"));
                }
                svc.af = Some(Family::V6);
                svc.netmask = 128;
            }
            Tag::Ops => {
                set_option(&mut options, OptId::OnePacket)?;
                svc.one_packet = true;
            }
            Tag::Synproxy => {
                set_option(&mut options, OptId::Synproxy)?;
                svc.synproxy = match arg {
                    "enable" => true,
                    "disable" => false,
                    _ => {
                        return Err(GrammarError::fail(
                            "synproxy switch must be enable or disable",
                        ))
                    }
                };
            }
            Tag::Pe => {
                set_option(&mut options, OptId::Pe)?;
                svc.pe = truncate(arg, NAME_MAX);
            }
            Tag::SchedFlags => {
                set_option(&mut options, OptId::SchedFlags)?;
                sched_flags_arg = truncate(arg, SCHED_FLAGS_MAX);
            }
            Tag::McastGroup => {
                set_option(&mut options, OptId::McastGroup)?;
                let group = if arg.contains(':') {
                    match arg.parse::<Ipv6Addr>() {
                        Ok(a) if a.is_multicast() => IpAddr::V6(a),
                        _ => {
                            return Err(GrammarError::fail(format!(
                                "invalid IPv6 mcast-group `{arg}'"
                            )))
                        }
                    }
                } else {
                    match arg.parse::<Ipv4Addr>() {
                        Ok(a) if a.is_multicast() => IpAddr::V4(a),
                        _ => {
                            return Err(GrammarError::fail(format!(
                                "invalid IPv4 mcast-group `{arg}'"
                            )))
                        }
                    }
                };
                daemon.mcast_group = Some(group);
            }
            Tag::McastPort => {
                set_option(&mut options, OptId::McastPort)?;
                daemon.mcast_port =
                    Some(number(arg, 1, 65535, "illegal mcast-port specified")? as u16);
            }
            Tag::McastTtl => {
                set_option(&mut options, OptId::McastTtl)?;
                daemon.mcast_ttl = Some(number(arg, 1, 255, "illegal mcast-ttl specified")? as u8);
            }
            Tag::SyncMaxlen => {
                set_option(&mut options, OptId::SyncMaxlen)?;
                daemon.sync_maxlen =
                    Some(number(arg, 1, 65535 - 20 - 8, "illegal sync-maxlen specified")? as u16);
            }
            Tag::TunType => {
                set_option(&mut options, OptId::TunType)?;
                dest.tun_kind = match arg {
                    "ipip" => TunKind::Ipip,
                    "gue" => TunKind::Gue,
                    "gre" => TunKind::Gre,
                    _ => return Err(GrammarError::fail("illegal tunnel type specified")),
                };
            }
            Tag::TunPort => {
                set_option(&mut options, OptId::TunPort)?;
                dest.tun_port = number(arg, 1, 65535, "illegal tunnel port specified")? as u16;
            }
            Tag::TunNocsum => set_option(&mut options, OptId::TunNocsum)?,
            Tag::TunCsum => {
                set_option(&mut options, OptId::TunCsum)?;
                dest.tun_flags |= 1;
            }
            Tag::TunRemcsum => {
                set_option(&mut options, OptId::TunRemcsum)?;
                dest.tun_flags |= 2;
            }
        }
    }

    let mut leftovers = tok.into_leftovers().into_iter();
    let mut timeouts = (0, 0, 0);
    if cmd == Cmd::Timeout {
        match (leftovers.next(), leftovers.next(), leftovers.next()) {
            (Some(a), Some(b), Some(c)) => {
                timeouts = (
                    timeout_value(&a, 0)?,
                    timeout_value(&b, 0)?,
                    timeout_value(&c, 0)?,
                );
            }
            _ => return Err(GrammarError::fail("--set option requires 3 timeout values")),
        }
    }
    if let Some(word) = leftovers.next() {
        return Err(GrammarError::fail(format!("unexpected argument {word}")));
    }
    let mut sched_flags = 0;
    if !sched_flags_arg.is_empty() {
        sched_flags = parse_sched_flags(&svc.scheduler, &sched_flags_arg)?;
    }

    generic_opt_check(cmd, options)?;
    let has = |o: OptId| options & o.bit() != 0;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if svc.fwmark == 0 && svc.port == 0 && svc.persistent.is_none() {
            return Err(GrammarError::fail(
                "Zero port specified for non-persistent service",
            ));
        }
        if svc.one_packet && svc.fwmark == 0 && svc.protocol != Some(Protocol::Udp) {
            return Err(GrammarError::fail(
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
        if svc.scheduler.is_empty() {
            svc.scheduler = "wlc".to_string();
        }
    }
    if cmd == Cmd::StartDaemon && daemon.mcast_interface.is_empty() {
        daemon.mcast_interface = DEFAULT_MCAST_IFN.to_string();
    }
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        if svc.fwmark == 0 && matches!(dest.method, Method::Tunnel | Method::Route) {
            dest.port = svc.port;
        }
        if dest.af != svc.af && dest.method != Method::Tunnel {
            return Err(GrammarError::fail(
                "Different address family is allowed only for tunneling servers",
            ));
        }
        tunnel_options_need_tunnel(options, dest.method == Method::Tunnel)?;
        tunnel_opt_check(dest.tun_kind, options)?;
    }

    let key = service_key(&svc);
    // Every command that needs a key had its service option required by
    // generic_opt_check above, so this fallback error is never produced.
    let need_key = || key.ok_or_else(GrammarError::try_help);
    Ok(match cmd {
        Cmd::Add | Cmd::Edit => {
            let config = ServiceConfig {
                key: need_key()?,
                scheduler: svc.scheduler.clone(),
                persistent: svc.persistent,
                netmask: svc.netmask,
                pe: (!svc.pe.is_empty()).then(|| svc.pe.clone()),
                one_packet: svc.one_packet,
                sched_flags: SchedFlags(sched_flags),
                synproxy: svc.synproxy,
                toa: svc.toa,
            };
            if cmd == Cmd::Add {
                Command::Config(ConfigOp::AddService(config))
            } else {
                Command::Config(ConfigOp::EditService(config))
            }
        }
        Cmd::Del => Command::Config(ConfigOp::DeleteService(need_key()?)),
        Cmd::Flush => Command::Config(ConfigOp::Flush),
        Cmd::List => {
            list_conflicts(options)?;
            let detail = if has(OptId::Stats) {
                Detail::Stats
            } else if has(OptId::Rate) {
                Detail::Rate
            } else if has(OptId::Thresholds) {
                Detail::Thresholds
            } else if has(OptId::PersistentConn) {
                Detail::PersistentConn
            } else if has(OptId::TunInfo) {
                Detail::TunInfo
            } else {
                Detail::Default
            };
            let kind = if has(OptId::Connection) {
                ListKind::Connections {
                    persistent_conn: has(OptId::PersistentConn),
                }
            } else if has(OptId::Timeout) {
                ListKind::Timeout
            } else if has(OptId::Daemon) {
                ListKind::Daemon
            } else {
                ListKind::Services(detail)
            };
            Command::List(ListOptions {
                kind,
                numeric: has(OptId::Numeric),
                exact: has(OptId::Exact),
                nosort: has(OptId::NoSort),
                json: has(OptId::Json),
                service: if has(OptId::Service) { key } else { None },
            })
        }
        Cmd::AddDest | Cmd::EditDest => {
            let method = match dest.method {
                Method::Masq => ForwardMethod::Masq,
                Method::FullNat => ForwardMethod::FullNat,
                Method::Route => ForwardMethod::Route,
                Method::Tunnel => ForwardMethod::Tunnel(TunnelConfig {
                    kind: match dest.tun_kind {
                        TunKind::Ipip => TunnelType::Ipip,
                        TunKind::Gue => TunnelType::Gue,
                        TunKind::Gre => TunnelType::Gre,
                    },
                    port: dest.tun_port,
                    csum: match dest.tun_flags {
                        0 => TunnelCsum::NoCsum,
                        1 => TunnelCsum::Csum,
                        _ => TunnelCsum::RemCsum,
                    },
                }),
            };
            let config = DestConfig {
                addr: dest.addr,
                port: dest.port,
                method,
                weight: dest.weight,
                u_threshold: dest.u_threshold,
                l_threshold: dest.l_threshold,
            };
            if cmd == Cmd::AddDest {
                Command::Config(ConfigOp::AddDest(need_key()?, config))
            } else {
                Command::Config(ConfigOp::EditDest(need_key()?, config))
            }
        }
        Cmd::DelDest => Command::Config(ConfigOp::DeleteDest {
            service: need_key()?,
            addr: dest.addr,
            port: dest.port,
        }),
        Cmd::Timeout => Command::Config(ConfigOp::SetTimeouts {
            tcp: timeouts.0,
            tcp_fin: timeouts.1,
            udp: timeouts.2,
        }),
        Cmd::StartDaemon => Command::StartDaemon(daemon),
        Cmd::StopDaemon => Command::StopDaemon(daemon.state),
        Cmd::Restore => {
            if reading_stdin {
                return Err(GrammarError::try_help());
            }
            Command::Restore(Vec::new())
        }
        Cmd::Save => Command::Save {
            numeric: has(OptId::Numeric),
        },
        Cmd::Zero => Command::Config(ConfigOp::Zero(if has(OptId::Service) { key } else { None })),
    })
}

/// The service key, once a service option was parsed.
fn service_key(svc: &Svc) -> Option<ServiceKey> {
    if svc.fwmark != 0 {
        return Some(ServiceKey::Fwmark {
            mark: svc.fwmark,
            family: svc.af.unwrap_or(Family::V4),
        });
    }
    Some(ServiceKey::Addr {
        protocol: svc.protocol?,
        addr: svc.addr,
        port: svc.port,
    })
}
