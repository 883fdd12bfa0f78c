//! Packet rules in iptables' vocabulary: tables, chains, rules, matches and
//! targets, and the compiled form workers run.
//!
//! Why UVS has them: operators group ports and VIPs into one fwmark service
//! with `mangle PREROUTING` MARK rules, and keep clients out with `filter
//! INPUT` rules; kube-proxy's IPVS mode is built from exactly that. The
//! director has no netfilter, so the subset of iptables a director needs
//! lives here:
//! * [`tables`]: the configuration (what `iptables -S` shows), changed by
//!   the operations iptables has (`-A`, `-I`, `-D`, `-R`, `-F`, `-N`, `-X`,
//!   `-P`, `-Z`) with the kernel's refusals, per address family;
//! * [`engine`]: the compiled [`Program`] a worker runs on each packet.
//!   It comes with the configuration snapshot, so workers pick a new rule
//!   set up between bursts, as they do services;
//! * [`cache`]: a worker's verdicts per flow, so established traffic does
//!   not walk the chains again when the rules cannot tell its packets apart;
//! * [`conncache`]: the same answers kept per connection, beside the
//!   connection table, so that it holds however many connections there are.
//!
//! Where each hook sits in the packet path (docs/design/rules.md):
//! `mangle PREROUTING` runs on every IP packet before the service lookup
//! (its marks select fwmark services); then packets to a virtual service or
//! a director address run `mangle INPUT` and `filter INPUT`, the others
//! (NAT replies, routed traffic) `mangle FORWARD` and `filter FORWARD`.
//! The `nat` table and SNAT/MASQUERADE rules are kept, saved and listed but
//! not applied: source NAT of routed traffic belongs to the routing path.

pub mod cache;
#[cfg(test)]
mod cache_tests;
pub mod conncache;
#[cfg(test)]
mod conncache_tests;
pub mod engine;
pub mod ifaces;
#[cfg(test)]
mod nat_tests;
pub mod tables;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use cache::FlowCache;
pub use conncache::ConnVerdicts;
pub use engine::{
    CtState, Facts, Names, NatHook, NatOutcome, NoNames, Packet, Program, Verdict, NO_PORT,
};
pub use ifaces::Interfaces;
pub use tables::{RuleError, RuleOp, RuleTables};

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    Mangle,
    Filter,
    Nat,
}

impl Table {
    /// In `iptables-save`'s order (iptables-nft lists mangle, filter, nat).
    pub const ALL: [Table; 3] = [Table::Mangle, Table::Filter, Table::Nat];

    pub const fn name(self) -> &'static str {
        match self {
            Table::Mangle => "mangle",
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The built-in chains, in the order iptables lists them.
    pub const fn builtins(self) -> &'static [&'static str] {
        match self {
            Table::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        }
    }
}

/// A chain's policy (built-in chains only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub const fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// A value and whether `!` inverted its test.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Neg<T> {
    pub neg: bool,
    pub v: T,
}

/// An address with a prefix length (`-s`, `-d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Net {
    /// Already masked to `len` bits, as iptables stores it.
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    /// `addr/len` with the host bits cleared.
    pub fn new(addr: IpAddr, len: u8) -> Net {
        let addr = match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len.min(32)))
                };
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len.min(128)))
                };
                IpAddr::V6((u128::from(a) & m).into())
            }
        };
        Net { addr, len }
    }

    /// The whole address space of the family (what no `-s` means).
    pub fn is_any(&self) -> bool {
        self.len == 0
    }
}

/// A port range, both ends included (`80`, `1024:65535`).
pub type PortRange = (u16, u16);

/// Which ports `-m multiport` tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortDir {
    /// `--sports`
    Src,
    /// `--dports`
    Dst,
    /// `--ports`: either.
    Both,
}

/// Connection states of `-m conntrack --ctstate`, as bits.
pub mod ctstate {
    pub const INVALID: u8 = 1;
    pub const NEW: u8 = 2;
    pub const RELATED: u8 = 4;
    pub const ESTABLISHED: u8 = 8;
    pub const UNTRACKED: u8 = 16;
    pub const SNAT: u8 = 32;
    pub const DNAT: u8 = 64;
    /// In the order iptables prints them.
    pub const NAMES: [(u8, &str); 7] = [
        (INVALID, "INVALID"),
        (NEW, "NEW"),
        (RELATED, "RELATED"),
        (ESTABLISHED, "ESTABLISHED"),
        (UNTRACKED, "UNTRACKED"),
        (SNAT, "SNAT"),
        (DNAT, "DNAT"),
    ];
}

/// A `-m` match (or the implicit one `-p tcp --dport` loads).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Match {
    /// `-m tcp|udp|sctp [!] --sport P[:P] [!] --dport P[:P]`.
    Ports {
        proto: u8,
        sport: Option<Neg<PortRange>>,
        dport: Option<Neg<PortRange>>,
    },
    /// `-m multiport [!] --sports|--dports|--ports P[,P:P...]`.
    Multiport {
        dir: PortDir,
        neg: bool,
        ports: Vec<PortRange>,
    },
    /// `-m mark [!] --mark V[/M]`: `(mark & M) == V`.
    Mark { neg: bool, value: u32, mask: u32 },
    /// `-m set [!] --match-set NAME src,dst... [--return-nomatch]`; `src`
    /// is `true` per dimension.
    Set {
        neg: bool,
        name: String,
        src: Vec<bool>,
        return_nomatch: bool,
    },
    /// `-m comment --comment TEXT`.
    Comment(String),
    /// `-m conntrack [!] --ctstate S[,S...]` ([`ctstate`] bits).
    Conntrack { neg: bool, states: u8 },
    /// `-m addrtype [!] --dst-type LOCAL`.
    AddrTypeLocal { neg: bool },
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Target {
    /// No `-j`: only the counters move.
    #[default]
    None,
    Accept,
    Drop,
    Return,
    /// `-j REJECT [--reject-with icmp-port-unreachable]`: ICMP port
    /// unreachable back to the sender.
    Reject,
    /// `-j CHAIN`: a user chain.
    Jump(String),
    /// `-j MARK`, every form as `--set-xmark`: `mark = (mark & !mask) ^ value`.
    Mark {
        value: u32,
        mask: u32,
    },
    /// `-j SNAT --to-source A[-B][:P[-P]] [--random] [--random-fully]
    /// [--persistent]` (nat POSTROUTING/INPUT; kept, not applied).
    Snat {
        to: String,
        random: bool,
        random_fully: bool,
        persistent: bool,
    },
    /// `-j MASQUERADE [--to-ports P[-P]] [--random] [--random-fully]`
    /// (nat POSTROUTING; kept, not applied).
    Masquerade {
        to_ports: Option<String>,
        random: bool,
        random_fully: bool,
    },
}

impl Target {
    /// The name in the target column and after `-j`.
    pub fn name(&self) -> &str {
        match self {
            Target::None => "",
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Reject => "REJECT",
            Target::Jump(c) => c,
            Target::Mark { .. } => "MARK",
            Target::Snat { .. } => "SNAT",
            Target::Masquerade { .. } => "MASQUERADE",
        }
    }
}

/// One rule as iptables describes it; equality is `-D`'s "same rule".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Rule {
    pub src: Option<Neg<Net>>,
    pub dst: Option<Neg<Net>>,
    pub in_if: Option<Neg<String>>,
    pub out_if: Option<Neg<String>>,
    /// `-p`: IP protocol number (0 = all).
    pub proto: Option<Neg<u8>>,
    /// In command-line order.
    pub matches: Vec<Match>,
    pub target: Target,
}
