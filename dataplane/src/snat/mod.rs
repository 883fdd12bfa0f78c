//! Source NAT of routed traffic: `nat POSTROUTING` SNAT and MASQUERADE
//! rules, connection-tracked so that replies are translated back.
//!
//! Why: a NAT real server's own traffic to the world leaves through the
//! director (its gateway, [`crate::net`]'s router), and the world has no
//! route back to the real servers' private segment. On a Linux director a
//! `-t nat -A POSTROUTING -s <servers> -j MASQUERADE` rule rewrites the
//! source to the director's address and conntrack rewrites the replies
//! back. UVS has no netfilter, so this module is that pair:
//! * [`NatRules`]: the `nat POSTROUTING` chain of each family compiled on
//!   the control thread (published with the configuration snapshot, like
//!   the filter rules), with `--to-source` parsed ([`ToSource`]);
//! * [`table::Mappings`]: one worker's mapping table, sized at start:
//!   original tuple -> translated source, found from both directions,
//!   expiring with conntrack's timeouts.
//!
//! Port ownership: the translated source port comes from the worker's own
//! [`PortPool`](crate::ports::PortPool) of the address, which holds only
//! ports whose replies RSS (and the stage's hand-over rule) sends to that
//! worker, so a reply always reaches the worker holding its mapping and no
//! mapping is ever shared.
//!
//! What a rule may test: `-s`, `-d`, `-p` (with `!`), `-o` (the egress
//! port's name, when the rules know port names); a rule with any other
//! match, or a jump, never matches here (its chain is not walked), which a
//! listing still shows. ACCEPT and RETURN end the walk without NAT, as in
//! iptables.

pub mod path;
pub mod table;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::rules::tables::{FamilyTables, TableState};
use crate::rules::{Names, Net, Rule, Table, Target};

pub use path::{Postrouting, Reply, Snat};

/// `--to-source addr[-addr][:port[-port]]` (SNAT) or MASQUERADE's
/// `--to-ports port[-port]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToSource {
    /// First and last address (equal for one); `None` for MASQUERADE (the
    /// egress port's address).
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// Source ports to map to; the unprivileged ports when absent.
    pub ports: RangeInclusive<u16>,
}

/// Ports a mapping gets when the rule names none. Linux tries to keep the
/// original port and maps within its class; UVS always maps (as
/// `--random-fully`) into the ports a worker owns, so it takes the
/// unprivileged range.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 1024..=65535;

/// Why a `--to-source` / `--to-ports` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad NAT range {0:?}: expected ADDR[-ADDR][:PORT[-PORT]], at most 256 addresses")]
pub struct RangeError(pub String);

/// Addresses one `--to-source` range may hold: each is a port pool per
/// worker (about 64 k Toeplitz hashes to build and 64 KiB), built when the
/// rule arrives.
pub const MAX_RANGE_ADDRS: u128 = 256;

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn addr_from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(b.into()),
    }
}

fn port_range(s: &str, whole: &str) -> Result<RangeInclusive<u16>, RangeError> {
    let err = || RangeError(whole.to_string());
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| err())?;
    let b: u16 = b.parse().map_err(|_| err())?;
    if a == 0 || a > b {
        return Err(err());
    }
    Ok(a..=b)
}

impl ToSource {
    /// Parses SNAT's `--to-source` as iptables writes it
    /// (`198.18.0.1-198.18.0.4:1024-65535`, `[2001:db8::1]:1024-2048`).
    pub fn parse(s: &str) -> Result<ToSource, RangeError> {
        let err = || RangeError(s.to_string());
        let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
            // IPv6 with ports: [A[-B]]:P
            let (a, p) = rest.split_once(']').ok_or_else(err)?;
            let p = match p.strip_prefix(':') {
                Some(p) => Some(p),
                None if p.is_empty() => None,
                None => return Err(err()),
            };
            (a, p)
        } else if s.matches(':').count() == 1 {
            let (a, p) = s.split_once(':').ok_or_else(err)?;
            (a, Some(p))
        } else {
            (s, None)
        };
        let (a, b) = match addrs.split_once('-') {
            Some((a, b)) => (a, b),
            None => (addrs, addrs),
        };
        let a: IpAddr = a.parse().map_err(|_| err())?;
        let b: IpAddr = b.parse().map_err(|_| err())?;
        if a.is_ipv4() != b.is_ipv4() || a > b {
            return Err(err());
        }
        if addr_bits(b) - addr_bits(a) >= MAX_RANGE_ADDRS {
            return Err(err());
        }
        let ports = match ports {
            Some(p) => port_range(p, s)?,
            None => DEFAULT_PORTS,
        };
        Ok(ToSource {
            addrs: Some((a, b)),
            ports,
        })
    }

    /// MASQUERADE's `--to-ports`.
    pub fn masquerade(to_ports: Option<&str>) -> Result<ToSource, RangeError> {
        Ok(ToSource {
            addrs: None,
            ports: match to_ports {
                Some(p) => port_range(p, p)?,
                None => DEFAULT_PORTS,
            },
        })
    }

    /// The address a mapping of `src -> dst` gets: MASQUERADE's `out`, or
    /// one of the range chosen as Linux's `find_best_ips_proto` does
    /// without `--persistent`: a hash of both addresses scaled onto the
    /// range, so a given pair of hosts always gets the same address and
    /// pairs spread evenly over the range.
    pub fn addr(&self, out: IpAddr, src: IpAddr, dst: IpAddr) -> IpAddr {
        let Some((a, b)) = self.addrs else { return out };
        let n = addr_bits(b) - addr_bits(a) + 1;
        if n == 1 {
            return a;
        }
        let (s, d) = (addr_bits(src), addr_bits(dst));
        let mix = |x: u128, k: u64| {
            let r = u128::from((x as u64) ^ ((x >> 64) as u64)).wrapping_mul(u128::from(k));
            (r as u64) ^ ((r >> 64) as u64)
        };
        let h = mix(s, 0x9e37_79b9_7f4a_7c15) ^ mix(d, 0xc2b2_ae3d_27d4_eb4f);
        let j = u128::from((h ^ (h >> 32)) as u32);
        addr_from_bits(a, addr_bits(a) + ((j * n) >> 32))
    }

    /// Every address of the range (none for MASQUERADE).
    pub fn each_addr(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (a, n) = match self.addrs {
            Some((a, b)) => (a, addr_bits(b) - addr_bits(a) + 1),
            None => (IpAddr::V4(0.into()), 0),
        };
        (0..n).map(move |i| addr_from_bits(a, addr_bits(a) + i))
    }
}

/// One compiled `nat POSTROUTING` rule.
#[derive(Debug, Clone)]
struct NatRule {
    proto: Option<(bool, u8)>,
    src: Option<(bool, Net)>,
    dst: Option<(bool, Net)>,
    /// `-o`: (negated, the ids of the interfaces the name matches; none
    /// for a name no interface has).
    out: Option<(bool, Vec<u16>)>,
    action: NatAction,
}

/// What a matching rule does.
#[derive(Debug, Clone)]
enum NatAction {
    /// SNAT or MASQUERADE: index into [`NatRules::targets`].
    Map(usize),
    /// ACCEPT / RETURN: no NAT, stop.
    Stop,
    /// A rule that cannot be evaluated here: skipped.
    Skip,
}

/// The `nat POSTROUTING` chains of both families, compiled.
#[derive(Debug, Clone, Default)]
pub struct NatRules {
    v4: Vec<NatRule>,
    v6: Vec<NatRule>,
    targets: Vec<ToSource>,
}

fn net_has(n: &Net, ip: IpAddr) -> bool {
    Net::new(ip, n.len).addr == n.addr
}

impl NatRules {
    /// Compiles `nat POSTROUTING` of both families; port names go through
    /// `names`.
    pub fn compile(v4: &FamilyTables, v6: &FamilyTables, names: &dyn Names) -> NatRules {
        let mut out = NatRules::default();
        for (f, v6) in [(v4, false), (v6, true)] {
            let Some(t) = f.tables.get(&Table::Nat) else {
                continue;
            };
            let rules = out.chain(t, names);
            if v6 {
                out.v6 = rules;
            } else {
                out.v4 = rules;
            }
        }
        out
    }

    fn chain(&mut self, t: &TableState, names: &dyn Names) -> Vec<NatRule> {
        let Some(c) = t.chains.iter().find(|c| c.name == "POSTROUTING") else {
            return Vec::new();
        };
        c.rules.iter().map(|e| self.rule(&e.rule, names)).collect()
    }

    fn rule(&mut self, r: &Rule, names: &dyn Names) -> NatRule {
        let mut action = match &r.target {
            Target::Snat { to, .. } => match ToSource::parse(to) {
                Ok(t) => {
                    self.targets.push(t);
                    NatAction::Map(self.targets.len() - 1)
                }
                Err(_) => NatAction::Skip,
            },
            Target::Masquerade { to_ports, .. } => {
                match ToSource::masquerade(to_ports.as_deref()) {
                    Ok(t) => {
                        self.targets.push(t);
                        NatAction::Map(self.targets.len() - 1)
                    }
                    Err(_) => NatAction::Skip,
                }
            }
            Target::Accept | Target::Return => NatAction::Stop,
            Target::None => NatAction::Skip,
            _ => NatAction::Skip,
        };
        let only_comments = r
            .matches
            .iter()
            .all(|m| matches!(m, crate::rules::Match::Comment(_)));
        if !only_comments || r.in_if.is_some() {
            action = NatAction::Skip;
        }
        NatRule {
            proto: r
                .proto
                .as_ref()
                .filter(|p| p.v != 0 || p.neg)
                .map(|p| (p.neg, p.v)),
            src: r.src.as_ref().map(|n| (n.neg, n.v)),
            dst: r.dst.as_ref().map(|n| (n.neg, n.v)),
            out: r.out_if.as_ref().map(|o| (o.neg, names.ifaces(&o.v))),
            action,
        }
    }

    /// Whether no family has a rule (one test per routed packet then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The target of the first rule that matches a routed packet
    /// (`proto`, `src` -> `dst`, leaving by port `out_port`), if it maps.
    pub fn lookup(&self, proto: u8, src: IpAddr, dst: IpAddr, out_port: u16) -> Option<&ToSource> {
        let rules = if src.is_ipv4() { &self.v4 } else { &self.v6 };
        for r in rules {
            if let Some((neg, p)) = r.proto {
                if (proto == p) == neg {
                    continue;
                }
            }
            if let Some((neg, n)) = &r.src {
                if net_has(n, src) == *neg {
                    continue;
                }
            }
            if let Some((neg, n)) = &r.dst {
                if net_has(n, dst) == *neg {
                    continue;
                }
            }
            if let Some((neg, ports)) = &r.out {
                if ports.contains(&out_port) == *neg {
                    continue;
                }
            }
            match r.action {
                NatAction::Map(i) => return self.targets.get(i),
                NatAction::Stop => return None,
                NatAction::Skip => {}
            }
        }
        None
    }

    /// Every address a SNAT rule maps to (the pools a worker needs beside
    /// its ports' own addresses).
    pub fn addresses(&self) -> impl Iterator<Item = (IpAddr, RangeInclusive<u16>)> + '_ {
        self.targets
            .iter()
            .flat_map(|t| t.each_addr().map(|a| (a, t.ports.clone())))
    }

    /// Every port range a MASQUERADE rule maps into.
    pub fn masquerade_ranges(&self) -> impl Iterator<Item = RangeInclusive<u16>> + '_ {
        self.targets
            .iter()
            .filter(|t| t.addrs.is_none())
            .map(|t| t.ports.clone())
    }
}
