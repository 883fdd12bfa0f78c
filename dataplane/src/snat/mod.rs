//! Source NAT of routed traffic: `nat POSTROUTING` SNAT and MASQUERADE
//! rules, connection-tracked so that replies are translated back.
//!
//! Why: a NAT real server's own traffic to the world leaves through the
//! director (its gateway, [`crate::net`]'s router), and the world has no
//! route back to the real servers' private segment. On a Linux director a
//! `-t nat -A POSTROUTING -s <servers> -j MASQUERADE` rule rewrites the
//! source to the director's address and conntrack rewrites the replies
//! back. UVS has no netfilter, so this module is that pair:
//! * [`NatRules`]: the `nat PREROUTING` and `POSTROUTING` chains of each
//!   family compiled on
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
//! The chains are walked as iptables walks them ([`NatHook`], the same
//! compiled conditions as the filter rules): jumps to user chains, RETURN,
//! MARK (the mark goes on from `nat PREROUTING` to `nat POSTROUTING`),
//! `-m mark`, `-m set`, `-m addrtype --dst-type LOCAL`, `-o` (the egress
//! port). ACCEPT ends the walk without NAT. As conntrack does, the walk
//! happens once per connection, for its first packet: a routed flow when
//! its mapping is made, an IPVS connection when it is created (kube-proxy's
//! masquerading; docs/design/kube-proxy.md). `-i` never matches in the nat
//! chains (the receiving port is not known where they run).

pub mod path;
pub mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_clearance;

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::rules::tables::FamilyTables;
use crate::rules::{ctstate, Facts, Names, NatHook, Packet, Table, Target, NO_PORT};
use crate::sets::{Dirs, Match as SetMatch, Packet as SetPacket, SetId, SetTable};

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

/// The nat chains of one family.
#[derive(Debug, Clone, Default)]
struct NatFamily {
    pre: Option<NatHook>,
    post: Option<NatHook>,
}

/// The `nat PREROUTING` and `nat POSTROUTING` chains of both families,
/// compiled, with the SNAT / MASQUERADE targets they reach.
#[derive(Debug, Clone)]
pub struct NatRules {
    v4: NatFamily,
    v6: NatFamily,
    targets: Vec<ToSource>,
    /// No family has a nat rule (kept: every routed packet asks).
    empty: bool,
}

/// The SNAT / MASQUERADE target of a nat rule, parsed; `None` for any
/// other target or a range that does not parse (the rule never matches).
fn to_source(t: &Target) -> Option<ToSource> {
    match t {
        Target::Snat { to, .. } => ToSource::parse(to).ok(),
        Target::Masquerade { to_ports, .. } => ToSource::masquerade(to_ports.as_deref()).ok(),
        _ => None,
    }
}

/// What the nat chains ask about a packet: no connection exists yet
/// (conntrack walks them for a connection's first packet), its
/// destination may be the director's, and its fields for `-m set`.
pub struct NatFacts<'a> {
    pub sets: &'a SetTable,
    /// The packet as the sets see it (ICMP: type and code as ports).
    pub pkt: SetPacket,
    /// Whether an address is the director's (`--dst-type LOCAL`).
    pub local: &'a dyn Fn(&IpAddr) -> bool,
}

impl Facts for NatFacts<'_> {
    fn ct_state(&self) -> u8 {
        ctstate::NEW
    }

    fn dst_local(&self) -> bool {
        (self.local)(&self.pkt.dst)
    }

    fn set_match(&self, set: SetId, dirs: Dirs) -> SetMatch {
        self.sets.lookup(set, dirs, &self.pkt)
    }
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The rules' and the sets' views of a packet `src:sport -> dst:dport`
/// (`has_ports`: TCP, UDP or SCTP; ICMP carries `(type << 8) | code` in
/// both ports for the sets) of `len` bytes leaving by `out_port`
/// ([`NO_PORT`] before the route).
#[allow(clippy::too_many_arguments)]
pub fn nat_packet(
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    has_ports: bool,
    len: u32,
    out_port: u16,
) -> (Packet, SetPacket) {
    let pkt = Packet {
        v6: src.is_ipv6(),
        proto,
        src: bits(src),
        dst: bits(dst),
        sport: if has_ports { sport } else { 0 },
        dport: if has_ports { dport } else { 0 },
        has_ports,
        len,
        in_port: NO_PORT,
        out_port,
    };
    let set = SetPacket {
        src,
        dst,
        proto,
        sport,
        dport,
        bytes: len,
    };
    (pkt, set)
}

impl Default for NatRules {
    fn default() -> Self {
        NatRules {
            v4: NatFamily::default(),
            v6: NatFamily::default(),
            targets: Vec::new(),
            empty: true,
        }
    }
}

impl NatRules {
    /// Compiles `nat PREROUTING` and `nat POSTROUTING` of both families;
    /// set and port names go through `names`.
    pub fn compile(v4: &FamilyTables, v6: &FamilyTables, names: &dyn Names) -> NatRules {
        let mut out = NatRules::default();
        let mut targets = Vec::new();
        let mut number = |t: &Target| {
            targets.push(to_source(t)?);
            Some((targets.len() - 1) as u32)
        };
        for (f, v6) in [(v4, false), (v6, true)] {
            let Some(t) = f.tables.get(&Table::Nat) else {
                continue;
            };
            let fam = NatFamily {
                pre: NatHook::compile(t, "PREROUTING", v6, names, &mut number),
                post: NatHook::compile(t, "POSTROUTING", v6, names, &mut number),
            };
            if v6 {
                out.v6 = fam;
            } else {
                out.v4 = fam;
            }
        }
        out.targets = targets;
        out.empty = [&out.v4, &out.v6]
            .iter()
            .all(|f| f.pre.is_none() && f.post.is_none());
        out
    }

    fn family(&self, v6: bool) -> &NatFamily {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Whether no family has a nat rule (one test per routed packet then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `nat POSTROUTING` of the family has rules: an IPVS
    /// connection asks the nat chains only then.
    #[inline]
    pub fn has_postrouting(&self, v6: bool) -> bool {
        self.family(v6).post.is_some()
    }

    /// `nat PREROUTING` for a connection's first packet arriving with
    /// `mark`: the mark it leaves with (its MARK rules; SNAT is not a
    /// PREROUTING target and DNAT is IPVS's job, so nothing else).
    #[inline]
    pub fn prerouting<F: Facts>(&self, pkt: &Packet, facts: &F, mark: u32, worker: usize) -> u32 {
        match &self.family(pkt.v6).pre {
            Some(h) => h.run(pkt, facts, mark, worker).mark,
            None => mark,
        }
    }

    /// `nat POSTROUTING` for a connection's first packet leaving with
    /// `mark`: the SNAT / MASQUERADE target that decided, if any. DROP in
    /// the nat table (iptables-legacy allows it) is not a filter here: no
    /// NAT.
    #[inline]
    pub fn postrouting<F: Facts>(
        &self,
        pkt: &Packet,
        facts: &F,
        mark: u32,
        worker: usize,
    ) -> Option<&ToSource> {
        let h = self.family(pkt.v6).post.as_ref()?;
        let out = h.run(pkt, facts, mark, worker);
        if out.drop {
            return None;
        }
        self.targets.get(out.target? as usize)
    }

    /// Both nat chains for a routed packet `src -> dst` of protocol
    /// `proto` leaving by `out_port`, with no set defined, mark 0 and the
    /// ports unknown to the rules: the target that decided, if any.
    pub fn lookup(&self, proto: u8, src: IpAddr, dst: IpAddr, out_port: u16) -> Option<&ToSource> {
        let sets = SetTable::default();
        let (pkt, set) = nat_packet(proto, src, 0, dst, 0, false, 0, out_port);
        let facts = NatFacts {
            sets: &sets,
            pkt: set,
            local: &|_| false,
        };
        let mark = self.prerouting(&pkt, &facts, 0, 0);
        self.postrouting(&pkt, &facts, mark, 0)
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
