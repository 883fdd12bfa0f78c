//! Which options each command takes, and the cross-option rules ipvsadm
//! checks after parsing (`generic_opt_check`, `tunnel_opt_check`, the list
//! conflicts).
//!
//! The checks walk options in ipvsadm's internal order ([`ALL_OPTS`]) and
//! stop at the first fault, so a command line with several faults gets the
//! same message as from ipvsadm.

use super::error::GrammarError;
use super::options::{OptId, ALL_OPTS, NUMBER_OF_OPT};

/// ipvsadm's commands, in its internal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    /// Name used in ipvsadm's messages.
    pub const fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
        }
    }
}

/// How a command treats an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Not allowed (`x`).
    Illegal,
    /// Allowed (` `).
    Allowed,
    /// Required (`+`).
    Required,
    /// At most one of the options marked so (`1`).
    OneOf,
}

/// The rule for `opt` under `cmd` (ipvsadm's `commands_v_options`, plus
/// `--json`, allowed with `-L` only). `--syncid` is accepted (and unused)
/// with `-L`, as in ipvsadm's table, although the reference's command table
/// does not list it.
fn rule(cmd: Cmd, opt: OptId) -> Rule {
    use OptId as O;
    use Rule::{Allowed, Illegal, OneOf, Required};
    match cmd {
        Cmd::Add | Cmd::Edit => match opt {
            O::Service => Required,
            O::Scheduler
            | O::Persistent
            | O::Netmask
            | O::OnePacket
            | O::Pe
            | O::SchedFlags
            | O::Synproxy => Allowed,
            _ => Illegal,
        },
        Cmd::Del => match opt {
            O::Service => Required,
            _ => Illegal,
        },
        Cmd::Flush | Cmd::Timeout | Cmd::Restore => Illegal,
        Cmd::List => match opt {
            O::Connection | O::Service | O::Timeout | O::Daemon => OneOf,
            O::Numeric
            | O::Stats
            | O::Rate
            | O::Thresholds
            | O::PersistentConn
            | O::NoSort
            | O::SyncId
            | O::Exact
            | O::TunInfo
            | O::Json => Allowed,
            _ => Illegal,
        },
        Cmd::AddDest | Cmd::EditDest => match opt {
            O::Service | O::Server => Required,
            O::Forward
            | O::Weight
            | O::UThreshold
            | O::LThreshold
            | O::TunType
            | O::TunPort
            | O::TunNocsum
            | O::TunCsum
            | O::TunRemcsum => Allowed,
            _ => Illegal,
        },
        Cmd::DelDest => match opt {
            O::Service | O::Server => Required,
            _ => Illegal,
        },
        Cmd::StartDaemon => match opt {
            O::Mcast | O::SyncId | O::McastGroup | O::McastPort | O::McastTtl | O::SyncMaxlen => {
                Allowed
            }
            _ => Illegal,
        },
        Cmd::StopDaemon => match opt {
            O::SyncId => Allowed,
            _ => Illegal,
        },
        Cmd::Save => match opt {
            O::Numeric => Allowed,
            _ => Illegal,
        },
        Cmd::Zero => match opt {
            O::Service => Allowed,
            _ => Illegal,
        },
    }
}

/// ipvsadm's `generic_opt_check`: required, illegal and mutually exclusive
/// options, the first fault in internal order wins.
pub fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), GrammarError> {
    let mut first_of_group: Option<OptId> = None;
    debug_assert_eq!(ALL_OPTS.len(), NUMBER_OF_OPT);
    for opt in ALL_OPTS {
        let given = options & opt.bit() != 0;
        match (rule(cmd, opt), given) {
            (Rule::Required, false) => {
                return Err(GrammarError::fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                )))
            }
            (Rule::Illegal, true) => {
                return Err(GrammarError::fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                )))
            }
            (Rule::OneOf, true) => match first_of_group {
                None => first_of_group = Some(opt),
                Some(earlier) => {
                    return Err(GrammarError::fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        earlier.name(),
                        cmd.name()
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The extra `-L` rule: connection/timeout/daemon listings take no column
/// options, and timeout/daemon listings no `--persistent-conn`.
pub fn list_conflicts(options: u64) -> Result<(), GrammarError> {
    let has = |o: OptId| options & o.bit() != 0;
    let special = has(OptId::Connection) || has(OptId::Timeout) || has(OptId::Daemon);
    let columns = has(OptId::Stats) || has(OptId::Rate) || has(OptId::Thresholds);
    let no_conn = has(OptId::Timeout) || has(OptId::Daemon);
    if (special && columns) || (no_conn && has(OptId::PersistentConn)) {
        return Err(GrammarError::fail("options conflicts in the list command"));
    }
    Ok(())
}

/// `--tun-type` values, in ipvsadm's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunKind {
    Ipip,
    Gue,
    Gre,
}

impl TunKind {
    pub const fn name(self) -> &'static str {
        match self {
            TunKind::Ipip => "ipip",
            TunKind::Gue => "gue",
            TunKind::Gre => "gre",
        }
    }
}

/// "Tunnel options conflict with forward method": any `--tun-*` option on
/// a destination that is not tunnelled.
pub fn tunnel_options_need_tunnel(options: u64, is_tunnel: bool) -> Result<(), GrammarError> {
    let tun_opts = OptId::TunType.bit()
        | OptId::TunPort.bit()
        | OptId::TunNocsum.bit()
        | OptId::TunCsum.bit()
        | OptId::TunRemcsum.bit();
    if options & tun_opts != 0 && !is_tunnel {
        return Err(GrammarError::fail(
            "Tunnel options conflict with forward method",
        ));
    }
    Ok(())
}

/// ipvsadm's `tunnel_opt_check`: which of tun-port and the checksum options
/// each tunnel type takes.
pub fn tunnel_opt_check(kind: TunKind, options: u64) -> Result<(), GrammarError> {
    use Rule::{Illegal, OneOf, Required};
    let row: [(OptId, Rule); 4] = match kind {
        TunKind::Ipip => [
            (OptId::TunPort, Illegal),
            (OptId::TunNocsum, Illegal),
            (OptId::TunCsum, Illegal),
            (OptId::TunRemcsum, Illegal),
        ],
        TunKind::Gue => [
            (OptId::TunPort, Required),
            (OptId::TunNocsum, OneOf),
            (OptId::TunCsum, OneOf),
            (OptId::TunRemcsum, OneOf),
        ],
        TunKind::Gre => [
            (OptId::TunPort, Illegal),
            (OptId::TunNocsum, OneOf),
            (OptId::TunCsum, OneOf),
            (OptId::TunRemcsum, Illegal),
        ],
    };
    let mut first: Option<OptId> = None;
    for (opt, r) in row {
        let given = options & opt.bit() != 0;
        match (r, given) {
            (Required, false) => {
                return Err(GrammarError::fail(format!(
                    "You need to supply the '{}' option for the '{}' tunnel type",
                    opt.name(),
                    kind.name()
                )))
            }
            (Illegal, true) => {
                return Err(GrammarError::fail(format!(
                    "Illegal '{}' option with the '{}' tunnel type",
                    opt.name(),
                    kind.name()
                )))
            }
            (OneOf, true) => match first {
                None => first = Some(opt),
                Some(earlier) => {
                    return Err(GrammarError::fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' tunnel type",
                        opt.name(),
                        earlier.name(),
                        kind.name()
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// ipvsadm's `parse_sched_flags`, run against the final scheduler name
/// (empty when `-s` was not given, which matches neither `sh` nor `mh`).
///
/// A list with no flag word at all (`-b ,`) crashes ipvsadm 1.31 (strtok
/// returns NULL); here it is reported as an invalid flag naming the list.
pub fn parse_sched_flags(scheduler: &str, list: &str) -> Result<u32, GrammarError> {
    use uvs_model::model::SchedFlags;
    let mut flags = 0u32;
    let mut any = false;
    for flag in list.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, needs) = match flag {
            "flag-1" => (SchedFlags::SCHED1, None),
            "flag-2" => (SchedFlags::SCHED2, None),
            "flag-3" => (SchedFlags::SCHED3, None),
            "sh-fallback" => (SchedFlags::SCHED1, Some("sh")),
            "sh-port" => (SchedFlags::SCHED2, Some("sh")),
            "mh-fallback" => (SchedFlags::SCHED1, Some("mh")),
            "mh-port" => (SchedFlags::SCHED2, Some("mh")),
            _ => {
                return Err(GrammarError::fail(format!(
                    "invalid scheduler flag `{flag}'"
                )))
            }
        };
        flags |= bit;
        if let Some(s) = needs {
            if scheduler != s {
                return Err(GrammarError::fail(format!(
                    "incompatible scheduler flag `{flag}'"
                )));
            }
        }
    }
    if !any {
        return Err(GrammarError::fail(format!(
            "invalid scheduler flag `{list}'"
        )));
    }
    Ok(flags)
}
