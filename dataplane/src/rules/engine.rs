//! The compiled rule set a worker runs: per family and hook, the chains as
//! flat condition lists with jumps resolved to chain numbers.
//!
//! Why compiled and indexed: the configuration ([`super::tables`]) is
//! strings and vectors in iptables' shape; a packet must not pay for that.
//! A [`Program`] is built on the control thread after every change and
//! published with the configuration snapshot, so workers swap it between
//! bursts. Costs on the packet path:
//! * a hook with no rule and policy ACCEPT is not compiled at all: a
//!   director without rules pays one test per hook;
//! * a chain of [`INDEX_MIN`] rules or more is indexed by (protocol,
//!   destination port): a packet only visits the rules that can match its
//!   port, in rule order (rules with no exact port test are in every list);
//! * conditions are tested cheapest first within a rule, and the
//!   connection state and "is local" answers are asked for only if a rule
//!   needs them ([`Facts`]).
//!
//! Nothing here allocates, locks or logs on the packet path; counters are
//! per-worker slots ([`super::tables::RuleCounters`]).

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;

use super::tables::{FamilyTables, RuleCounters, TableState};
use super::{Match, Neg, Net, Policy, PortDir, PortRange, Rule, Table, Target};
use crate::sets::{Dirs, Match as SetMatch, SetId};

/// Chains with at least this many rules get a port index.
pub const INDEX_MIN: usize = 8;

/// Jumps deeper than this end the walk with the hook's policy (loops are
/// refused when rules are added, so only absurd depth reaches it).
const MAX_DEPTH: usize = 32;

/// A packet as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub v6: bool,
    pub proto: u8,
    /// Addresses as integers (IPv4 in the low 32 bits).
    pub src: u128,
    pub dst: u128,
    /// 0 when the protocol has no ports (or a later fragment).
    pub sport: u16,
    pub dport: u16,
    /// Whether `sport`/`dport` are real (TCP, UDP, SCTP first fragment).
    pub has_ports: bool,
    /// IP length in bytes (the byte counters).
    pub len: u32,
    /// Receiving port (`-i`), by its configured name's number.
    pub in_port: u16,
    /// Leaving port (`-o`), [`NO_PORT`] where the route is not chosen yet
    /// (the FORWARD hooks then ask [`Facts::out_port`]).
    pub out_port: u16,
}

/// [`Packet::in_port`] / [`Packet::out_port`] when it is not known: no
/// `-i` / `-o` test matches it, with or without `!`.
pub const NO_PORT: u16 = u16::MAX;

/// What a rule needs that costs a lookup: asked for only when a rule of
/// the walked chains tests it.
pub trait Facts {
    /// The packet's connection state ([`super::ctstate`] bit).
    fn ct_state(&self) -> u8;
    /// Whether the destination is an address of the director (its ports'
    /// addresses and the virtual service addresses).
    fn dst_local(&self) -> bool;
    /// ipset lookup of set `set` with the `--match-set` flags `dirs`.
    fn set_match(&self, set: SetId, dirs: Dirs) -> SetMatch;
    /// The interface the packet will leave by (the route to its
    /// destination), for `-o` in the FORWARD hooks when
    /// [`Packet::out_port`] is not known; [`NO_PORT`]: no route.
    fn out_port(&self) -> u16 {
        NO_PORT
    }
}

/// Connection state of a packet (what `-m conntrack` sees).
pub type CtState = u8;

/// A hook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop and answer ICMP port unreachable.
    Reject,
}

/// A test of one rule, compiled.
#[derive(Debug, Clone)]
enum Cond {
    Proto(bool, u8),
    Src(bool, u128, u128),
    Dst(bool, u128, u128),
    /// `-i`: the receiving interface is one of these ids.
    InPort(bool, Box<[u16]>),
    /// `-o`: the leaving interface is one of these ids (never, when the
    /// packet's is not known).
    OutPort(bool, Box<[u16]>),
    Sport(bool, PortRange),
    Dport(bool, PortRange),
    /// Only for packets with ports.
    NeedPorts,
    Multi(PortDir, bool, Arc<[PortRange]>),
    Mark(bool, u32, u32),
    Set {
        neg: bool,
        id: SetId,
        dirs: Dirs,
        return_nomatch: bool,
    },
    Ct(bool, u8),
    Local(bool),
}

/// What a compiled rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    None,
    Accept,
    Drop,
    Reject,
    Return,
    Jump(u32),
    Mark(u32, u32),
    /// SNAT / MASQUERADE in the nat table: the target's number
    /// ([`NatHook`]); ends the walk. Elsewhere these targets only count.
    Nat(u32),
}

#[derive(Debug, Clone)]
struct CRule {
    conds: Box<[Cond]>,
    action: Action,
    counters: Arc<RuleCounters>,
    /// This rule's counters in [`Program::counters`] (the flow cache
    /// replays a walk's counts by these numbers).
    cid: u32,
}

/// Rule numbers by (protocol, destination port).
type PortIndex = HashMap<(u8, u16), Box<[u32]>>;

#[derive(Debug, Clone, Default)]
struct CChain {
    rules: Box<[CRule]>,
    /// Candidate rule numbers per (protocol, destination port); absent
    /// keys use `wild`.
    index: Option<PortIndex>,
    /// Bit `port` set: some exact rule names that destination port (a
    /// packet to any other port takes `wild` without hashing).
    ports: Box<[u64]>,
    wild: Box<[u32]>,
}

impl CChain {
    #[inline]
    fn candidates(&self, pkt: &Packet) -> Option<&[u32]> {
        let ix = self.index.as_ref()?;
        let p = usize::from(pkt.dport);
        if !pkt.has_ports
            || self
                .ports
                .get(p / 64)
                .is_none_or(|w| w & (1 << (p % 64)) == 0)
        {
            return Some(&self.wild);
        }
        Some(match ix.get(&(pkt.proto, pkt.dport)) {
            Some(l) => l,
            None => &self.wild,
        })
    }
}

/// One built-in chain of one table, ready to run.
#[derive(Debug, Clone)]
struct Hook {
    entry: u32,
    policy: Verdict,
    policy_counters: Arc<RuleCounters>,
    policy_cid: u32,
    chains: Arc<[CChain]>,
}

/// Hooks of one family, in packet order.
#[derive(Debug, Clone, Default)]
struct FamilyProgram {
    mangle_pre: Option<Hook>,
    mangle_in: Option<Hook>,
    filter_in: Option<Hook>,
    mangle_fwd: Option<Hook>,
    filter_fwd: Option<Hook>,
}

/// The compiled rules of every family.
#[derive(Debug, Clone)]
pub struct Program {
    v4: FamilyProgram,
    v6: FamilyProgram,
    /// No hook of either family has anything to run.
    idle: bool,
    /// Every rule's and policy's counters, by `cid`.
    counters: Box<[Arc<RuleCounters>]>,
    /// No rule tests what may change between packets of one connection
    /// (`--ctstate`): the verdict is a function of the packet's flow key,
    /// the sets and the configuration ([`super::cache`]).
    flow_constant: bool,
    /// Few enough counters for a [`Path`] to name them (the caches).
    countable: bool,
    /// The sets the rules test (the flow cache needs them free of
    /// timeouts and counters).
    sets_used: Box<[SetId]>,
}

impl Default for Program {
    fn default() -> Self {
        Program {
            v4: FamilyProgram::default(),
            v6: FamilyProgram::default(),
            idle: true,
            counters: Box::default(),
            flow_constant: true,
            countable: true,
            sets_used: Box::default(),
        }
    }
}

/// What compiling collects across hooks: counters by number, and what the
/// flow cache must know about the conditions.
#[derive(Default)]
struct Collect {
    counters: Vec<Arc<RuleCounters>>,
    per_packet: bool,
    sets: Vec<SetId>,
}

impl Collect {
    fn cid(&mut self, c: &Arc<RuleCounters>) -> u32 {
        self.counters.push(Arc::clone(c));
        (self.counters.len() - 1) as u32
    }

    fn note(&mut self, conds: &[Cond]) {
        for c in conds {
            match c {
                Cond::Ct(..) => self.per_packet = true,
                Cond::Set { id, .. } if !self.sets.contains(id) => self.sets.push(*id),
                _ => {}
            }
        }
    }
}

/// Resolves names a rule uses when compiling: ipset names to the set
/// slots [`Facts::set_match`] takes, interface names to interface ids.
pub trait Names {
    fn set_id(&self, name: &str) -> Option<SetId>;
    /// The ids of the interfaces an `-i` name matches (`+`: by prefix;
    /// see [`super::ifaces`]).
    fn ifaces(&self, name: &str) -> Vec<u16>;
}

/// Names with no sets and no ports.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNames;

impl Names for NoNames {
    fn set_id(&self, _: &str) -> Option<SetId> {
        None
    }
    fn ifaces(&self, _: &str) -> Vec<u16> {
        Vec::new()
    }
}

fn addr_bits(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v),
    }
}

fn net_cond(n: &Neg<Net>, v6: bool, src: bool) -> Cond {
    let (bits, full) = if v6 {
        (128, u128::MAX)
    } else {
        (32, u128::from(u32::MAX))
    };
    let len = u32::from(n.v.len).min(bits);
    let mask = if len == 0 {
        0
    } else {
        full & !full.checked_shr(len).unwrap_or(0)
    };
    let addr = addr_bits(&n.v.addr) & mask;
    if src {
        Cond::Src(n.neg, addr, mask)
    } else {
        Cond::Dst(n.neg, addr, mask)
    }
}

/// Rank of a condition: cheap, selective tests first.
fn cost(c: &Cond) -> u8 {
    match c {
        Cond::Proto(..) | Cond::NeedPorts => 0,
        Cond::Dport(..)
        | Cond::Sport(..)
        | Cond::InPort(..)
        | Cond::OutPort(..)
        | Cond::Mark(..) => 1,
        Cond::Src(..) | Cond::Dst(..) => 2,
        Cond::Multi(..) => 3,
        Cond::Local(..) => 4,
        Cond::Ct(..) => 5,
        Cond::Set { .. } => 6,
    }
}

/// Numbers a nat table's SNAT / MASQUERADE target (`None`: it cannot be
/// applied, the rule never matches).
type NatTargets<'a> = &'a mut dyn FnMut(&Target) -> Option<u32>;

fn compile_rule(
    r: &Rule,
    v6: bool,
    chain_no: &dyn Fn(&str) -> Option<u32>,
    names: &dyn Names,
    nat: &mut Option<NatTargets<'_>>,
) -> Option<(Vec<Cond>, Action)> {
    let mut c = Vec::new();
    if let Some(p) = &r.proto {
        if p.v != 0 || p.neg {
            c.push(Cond::Proto(p.neg, p.v));
        }
    }
    if let Some(n) = &r.src {
        if !n.v.is_any() || n.neg {
            c.push(net_cond(n, v6, true));
        }
    }
    if let Some(n) = &r.dst {
        if !n.v.is_any() || n.neg {
            c.push(net_cond(n, v6, false));
        }
    }
    if let Some(i) = &r.in_if {
        c.push(Cond::InPort(i.neg, names.ifaces(&i.v).into()));
    }
    for m in &r.matches {
        match m {
            Match::Ports { sport, dport, .. } => {
                c.push(Cond::NeedPorts);
                if let Some(s) = sport {
                    c.push(Cond::Sport(s.neg, s.v));
                }
                if let Some(d) = dport {
                    c.push(Cond::Dport(d.neg, d.v));
                }
            }
            Match::Multiport { dir, neg, ports } => {
                c.push(Cond::NeedPorts);
                c.push(Cond::Multi(*dir, *neg, ports.clone().into()));
            }
            Match::Mark { neg, value, mask } => c.push(Cond::Mark(*neg, *value, *mask)),
            Match::Set {
                neg,
                name,
                src,
                return_nomatch,
            } => c.push(Cond::Set {
                neg: *neg,
                id: names.set_id(name)?,
                dirs: Dirs::parse(
                    &src.iter()
                        .map(|s| if *s { "src" } else { "dst" })
                        .collect::<Vec<_>>()
                        .join(","),
                )?,
                return_nomatch: *return_nomatch,
            }),
            Match::Comment(_) => {}
            Match::Conntrack { neg, states } => c.push(Cond::Ct(*neg, *states)),
            Match::AddrTypeLocal { neg } => c.push(Cond::Local(*neg)),
        }
    }
    // `-o`: where the route is chosen (nat POSTROUTING) or looked up for
    // the test (the FORWARD hooks, [`Facts::out_port`]); elsewhere (iptables
    // refuses it in PREROUTING and INPUT) it never matches.
    if let Some(o) = &r.out_if {
        c.push(Cond::OutPort(o.neg, names.ifaces(&o.v).into()));
    }
    c.sort_by_key(cost);
    let action = match &r.target {
        t @ (Target::Snat { .. } | Target::Masquerade { .. }) => match nat {
            Some(number) => Action::Nat(number(t)?),
            None => Action::None,
        },
        Target::None => Action::None,
        Target::Accept => Action::Accept,
        Target::Drop => Action::Drop,
        Target::Reject => Action::Reject,
        Target::Return => Action::Return,
        Target::Jump(j) => Action::Jump(chain_no(j)?),
        Target::Mark { value, mask } => Action::Mark(*value, *mask),
    };
    Some((c, action))
}

/// The exact (protocol, destination port) keys a rule can only match, or
/// `None` if it may match other ports too.
fn port_keys(conds: &[Cond]) -> Option<Vec<(u8, u16)>> {
    let proto = conds.iter().find_map(|c| match c {
        Cond::Proto(false, p) => Some(*p),
        _ => None,
    })?;
    conds.iter().find_map(|c| match c {
        Cond::Dport(false, (a, b)) if b.checked_sub(*a)? < 64 => {
            Some((*a..=*b).map(|p| (proto, p)).collect())
        }
        Cond::Multi(PortDir::Dst, false, ports)
            if ports.iter().map(|(a, b)| u32::from(b - a) + 1).sum::<u32>() <= 64 =>
        {
            Some(
                ports
                    .iter()
                    .flat_map(|(a, b)| *a..=*b)
                    .map(|p| (proto, p))
                    .collect(),
            )
        }
        _ => None,
    })
}

fn compile_chain(rules: Vec<CRule>) -> CChain {
    if rules.len() < INDEX_MIN {
        return CChain {
            rules: rules.into(),
            index: None,
            ports: Box::default(),
            wild: Box::default(),
        };
    }
    let mut exact: HashMap<(u8, u16), Vec<u32>> = HashMap::new();
    let mut wild = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match port_keys(&r.conds) {
            Some(keys) => {
                for k in keys {
                    exact.entry(k).or_default().push(i as u32);
                }
            }
            None => wild.push(i as u32),
        }
    }
    let mut ports = vec![0u64; 1024];
    for (_, p) in exact.keys() {
        ports[usize::from(*p) / 64] |= 1 << (p % 64);
    }
    let index = exact
        .into_iter()
        .map(|(k, mut l)| {
            l.extend_from_slice(&wild);
            l.sort_unstable();
            l.dedup();
            (k, l.into_boxed_slice())
        })
        .collect();
    CChain {
        rules: rules.into(),
        index: Some(index),
        ports: ports.into(),
        wild: wild.into(),
    }
}

/// Compiles one built-in chain of `t` and what it jumps to; `None` when it
/// has no rule and accepts (nothing to run).
fn compile_hook(
    t: &TableState,
    chain: &str,
    v6: bool,
    names: &dyn Names,
    col: &mut Collect,
    mut nat: Option<NatTargets<'_>>,
) -> Option<Hook> {
    let entry_chain = t.chain(chain)?;
    let policy = match entry_chain.policy {
        Some(Policy::Drop) => Verdict::Drop,
        _ => Verdict::Accept,
    };
    if entry_chain.rules.is_empty() && policy == Verdict::Accept {
        return None;
    }
    let chain_no = |name: &str| {
        t.chains
            .iter()
            .position(|c| c.name == name)
            .map(|i| i as u32)
    };
    let chains: Vec<CChain> = t
        .chains
        .iter()
        .map(|c| {
            let rules = c
                .rules
                .iter()
                .filter_map(|e| {
                    // A rule naming what does not exist (a set destroyed
                    // under it is refused elsewhere) never matches.
                    let (conds, action) = compile_rule(&e.rule, v6, &chain_no, names, &mut nat)?;
                    col.note(&conds);
                    Some(CRule {
                        conds: conds.into(),
                        action,
                        counters: Arc::clone(&e.counted.counters),
                        cid: col.cid(&e.counted.counters),
                    })
                })
                .collect();
            compile_chain(rules)
        })
        .collect();
    Some(Hook {
        entry: chain_no(chain)?,
        policy,
        policy_counters: Arc::clone(&entry_chain.policy_counted.counters),
        policy_cid: col.cid(&entry_chain.policy_counted.counters),
        chains: chains.into(),
    })
}

fn compile_family(
    f: &FamilyTables,
    v6: bool,
    names: &dyn Names,
    col: &mut Collect,
) -> FamilyProgram {
    let mut hook = |table: Table, chain: &str| {
        f.tables
            .get(&table)
            .and_then(|t| compile_hook(t, chain, v6, names, col, None))
    };
    FamilyProgram {
        mangle_pre: hook(Table::Mangle, "PREROUTING"),
        mangle_in: hook(Table::Mangle, "INPUT"),
        filter_in: hook(Table::Filter, "INPUT"),
        mangle_fwd: hook(Table::Mangle, "FORWARD"),
        filter_fwd: hook(Table::Filter, "FORWARD"),
    }
}

#[inline]
fn in_range(p: u16, r: PortRange) -> bool {
    r.0 <= p && p <= r.1
}

/// Per-packet state of one walk: the mark, and the lazily asked facts.
struct Walk<'a, F: Facts> {
    pkt: &'a Packet,
    facts: &'a F,
    mark: u32,
    ct: Option<u8>,
    local: Option<bool>,
    /// The nat target that ended the walk ([`Action::Nat`]).
    nat: Option<u32>,
    /// In a FORWARD hook: `-o` asks [`Facts::out_port`] when the packet's
    /// leaving port is not given (elsewhere it never matches).
    fwd: bool,
    out: Option<u16>,
    /// The counters this walk moved, in order (the first [`PATH_MAX`]),
    /// and how many it moved.
    path: Path,
}

/// The counters one walk moved, by `cid`: what the flow cache replays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Path {
    pub ids: [u16; PATH_MAX],
    /// How many counters moved (may exceed [`PATH_MAX`]: then the walk
    /// cannot be replayed).
    pub len: u8,
}

/// Counters a cached walk may move (rules that matched plus policies).
pub const PATH_MAX: usize = 6;

impl Path {
    #[inline]
    fn push(&mut self, cid: u32) {
        let n = usize::from(self.len);
        if n < PATH_MAX {
            // cid fits: programs with more counters are not cached.
            self.ids[n] = cid as u16;
        }
        self.len = self.len.saturating_add(1);
    }

    /// Whether every counter moved is recorded.
    #[inline]
    pub fn complete(&self) -> bool {
        usize::from(self.len) <= PATH_MAX
    }
}

impl<F: Facts> Walk<'_, F> {
    #[inline]
    fn test(&mut self, c: &Cond) -> bool {
        let p = self.pkt;
        match c {
            Cond::Proto(neg, v) => (p.proto == *v) != *neg,
            Cond::Src(neg, a, m) => ((p.src & m) == *a) != *neg,
            Cond::Dst(neg, a, m) => ((p.dst & m) == *a) != *neg,
            Cond::InPort(neg, ids) => p.in_port != NO_PORT && ids.contains(&p.in_port) != *neg,
            Cond::OutPort(neg, ids) => {
                let o = if p.out_port != NO_PORT || !self.fwd {
                    p.out_port
                } else {
                    *self.out.get_or_insert_with(|| self.facts.out_port())
                };
                o != NO_PORT && ids.contains(&o) != *neg
            }
            Cond::NeedPorts => p.has_ports,
            Cond::Sport(neg, r) => in_range(p.sport, *r) != *neg,
            Cond::Dport(neg, r) => in_range(p.dport, *r) != *neg,
            Cond::Multi(dir, neg, ports) => {
                let hit = ports.iter().any(|r| match dir {
                    PortDir::Src => in_range(p.sport, *r),
                    PortDir::Dst => in_range(p.dport, *r),
                    PortDir::Both => in_range(p.sport, *r) || in_range(p.dport, *r),
                });
                hit != *neg
            }
            Cond::Mark(neg, v, m) => ((self.mark & m) == *v) != *neg,
            Cond::Set {
                neg,
                id,
                dirs,
                return_nomatch,
            } => self.facts.set_match(*id, *dirs).matches(*return_nomatch) != *neg,
            Cond::Ct(neg, states) => {
                let s = *self.ct.get_or_insert_with(|| self.facts.ct_state());
                (s & states != 0) != *neg
            }
            Cond::Local(neg) => {
                let l = *self.local.get_or_insert_with(|| self.facts.dst_local());
                l != *neg
            }
        }
    }

    /// Runs `hook` (iptables' `ipt_do_table`): rules in order, MARK
    /// changes the mark and goes on, a jump walks the user chain and comes
    /// back after the rule unless that chain decided; at the end of the
    /// built-in chain, its policy.
    fn run(&mut self, hook: &Hook, worker: usize) -> Verdict {
        match self.chain(hook, hook.entry, worker, 0) {
            Some(v) => v,
            None => {
                hook.policy_counters.count(worker, self.pkt.len);
                self.path.push(hook.policy_cid);
                hook.policy
            }
        }
    }

    /// One chain: `Some` when a rule decided, `None` at its end or on
    /// RETURN. Jumps recurse (no return stack to set up per packet); loops
    /// are refused when rules are added, and [`MAX_DEPTH`] bounds the rest.
    fn chain(&mut self, hook: &Hook, chain: u32, worker: usize, depth: usize) -> Option<Verdict> {
        let ch = &hook.chains[chain as usize];
        let list = ch.candidates(self.pkt);
        let len = list.map_or(ch.rules.len(), <[u32]>::len);
        for pos in 0..len {
            let i = list.map_or(pos, |l| l[pos] as usize);
            let r = &ch.rules[i];
            if !r.conds.iter().all(|c| self.test(c)) {
                continue;
            }
            r.counters.count(worker, self.pkt.len);
            self.path.push(r.cid);
            match r.action {
                Action::None => {}
                Action::Mark(v, m) => self.mark = (self.mark & !m) ^ v,
                Action::Accept => return Some(Verdict::Accept),
                Action::Drop => return Some(Verdict::Drop),
                Action::Reject => return Some(Verdict::Reject),
                Action::Return => return None,
                Action::Nat(t) => {
                    self.nat = Some(t);
                    return Some(Verdict::Accept);
                }
                Action::Jump(to) => {
                    if depth < MAX_DEPTH {
                        if let Some(v) = self.chain(hook, to, worker, depth + 1) {
                            return Some(v);
                        }
                    }
                }
            }
        }
        None
    }
}

impl Program {
    /// Compiles `tables`, naming sets and ports through `names`.
    pub fn compile(v4: &FamilyTables, v6: &FamilyTables, names: &dyn Names) -> Program {
        let mut col = Collect::default();
        let mut p = Program {
            v4: compile_family(v4, false, names, &mut col),
            v6: compile_family(v6, true, names, &mut col),
            idle: false,
            counters: Box::default(),
            flow_constant: false,
            countable: false,
            sets_used: Box::default(),
        };
        p.countable = col.counters.len() <= usize::from(u16::MAX);
        p.flow_constant = !col.per_packet && p.countable;
        p.counters = col.counters.into();
        p.sets_used = col.sets.into();
        p.idle = [&p.v4, &p.v6].iter().all(|f| {
            f.mangle_pre.is_none()
                && f.mangle_in.is_none()
                && f.filter_in.is_none()
                && f.mangle_fwd.is_none()
                && f.filter_fwd.is_none()
        });
        p
    }

    #[inline]
    fn family(&self, v6: bool) -> &FamilyProgram {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Whether no hook of either family has anything to run (one load
    /// per packet for a director without rules).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.idle
    }

    /// Whether the verdict and mark of a TCP, UDP or SCTP packet depend
    /// only on its flow key ([`super::cache::FlowKey`]) for as long as this
    /// program and `sets` are current: no rule tests the connection state,
    /// and every set the rules test is free of timeouts and counters (and
    /// not a `list:set`, whose members may time out).
    pub fn flow_constant(&self, sets: &crate::sets::SetTable) -> bool {
        self.flow_constant && self.sets_used.iter().all(|id| sets.is_static(*id))
    }

    /// Whether the verdict and mark of a TCP, UDP or SCTP packet of a
    /// connection in the table depend only on its flow key and receiving
    /// port for as long as this program and `sets` are current
    /// ([`super::conncache`]): [`Program::flow_constant`] but for
    /// `--ctstate`, which reads ESTABLISHED for every such packet.
    pub fn conn_constant(&self, sets: &crate::sets::SetTable) -> bool {
        self.countable && self.sets_used.iter().all(|id| sets.is_static(*id))
    }

    /// Moves the counters of a replayed walk by `pkts` packets of `bytes`
    /// bytes in all ([`super::replays`]).
    #[inline]
    pub(super) fn replay_many(&self, path: &Path, pkts: u64, bytes: u64, worker: usize) {
        // Only complete paths are kept: the bound costs no check.
        for id in &path.ids[..usize::from(path.len).min(PATH_MAX)] {
            if let Some(c) = self.counters.get(usize::from(*id)) {
                c.add(worker, pkts, bytes);
            }
        }
    }

    /// `mangle PREROUTING`, then (`local`: to a virtual service or a
    /// director address) `mangle INPUT` and `filter INPUT`, else `mangle
    /// FORWARD` and `filter FORWARD`. Returns the verdict and the mark
    /// the packet leaves with. `local` is only asked when an INPUT or
    /// FORWARD hook has rules.
    #[inline]
    pub fn run<F: Facts>(
        &self,
        pkt: &Packet,
        facts: &F,
        local: impl FnOnce() -> bool,
        worker: usize,
    ) -> (Verdict, u32) {
        let (v, m, _) = self.walk(pkt, facts, local, worker);
        (v, m)
    }

    /// [`Program::run`], also returning the counters the walk moved.
    #[inline]
    pub(super) fn walk<F: Facts>(
        &self,
        pkt: &Packet,
        facts: &F,
        local: impl FnOnce() -> bool,
        worker: usize,
    ) -> (Verdict, u32, Path) {
        let f = self.family(pkt.v6);
        let mut w = Walk {
            pkt,
            facts,
            mark: 0,
            ct: None,
            local: None,
            nat: None,
            fwd: false,
            out: None,
            path: Path::default(),
        };
        if let Some(h) = &f.mangle_pre {
            let v = w.run(h, worker);
            if v != Verdict::Accept {
                return (v, w.mark, w.path);
            }
        }
        let (m, filt) = if f.mangle_in.is_none()
            && f.filter_in.is_none()
            && f.mangle_fwd.is_none()
            && f.filter_fwd.is_none()
        {
            (None, None)
        } else if local() {
            (f.mangle_in.as_ref(), f.filter_in.as_ref())
        } else {
            w.fwd = true;
            (f.mangle_fwd.as_ref(), f.filter_fwd.as_ref())
        };
        for h in [m, filt].into_iter().flatten() {
            let v = w.run(h, worker);
            if v != Verdict::Accept {
                return (v, w.mark, w.path);
            }
        }
        (Verdict::Accept, w.mark, w.path)
    }
}

/// One built-in chain of the nat table (PREROUTING or POSTROUTING) and the
/// user chains it reaches, compiled like the other hooks.
///
/// Why a hook of its own: conntrack walks the nat table once per
/// connection, for its first packet, and keeps the answer; so these hooks
/// are run where a connection (a routed mapping, an IPVS connection) is
/// created, never per packet, and are not part of [`Program`]'s walk or
/// its flow cache.
#[derive(Debug, Clone)]
pub struct NatHook(Hook);

/// What walking a [`NatHook`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatOutcome {
    /// The SNAT / MASQUERADE target that matched, by the number the
    /// compiler gave it; `None`: no NAT (ACCEPT, RETURN from the built-in
    /// chain, or its end).
    pub target: Option<u32>,
    /// The mark after the walk (MARK rules change it and go on).
    pub mark: u32,
    /// DROP in the nat table (iptables-legacy allows it).
    pub drop: bool,
}

impl NatHook {
    /// Compiles chain `chain` of the nat table `t`; `number` numbers the
    /// SNAT / MASQUERADE targets (a rule whose target it refuses never
    /// matches). `None`: nothing to run.
    pub fn compile(
        t: &TableState,
        chain: &str,
        v6: bool,
        names: &dyn Names,
        number: &mut dyn FnMut(&Target) -> Option<u32>,
    ) -> Option<NatHook> {
        let mut col = Collect::default();
        compile_hook(t, chain, v6, names, &mut col, Some(number)).map(NatHook)
    }

    /// Walks the chain for `pkt` entering it with `mark`; counters move
    /// in worker `worker`'s slots.
    #[inline]
    pub fn run<F: Facts>(&self, pkt: &Packet, facts: &F, mark: u32, worker: usize) -> NatOutcome {
        let mut w = Walk {
            pkt,
            facts,
            mark,
            ct: None,
            local: None,
            nat: None,
            fwd: false,
            out: None,
            path: Path::default(),
        };
        let v = w.run(&self.0, worker);
        NatOutcome {
            target: w.nat,
            mark: w.mark,
            drop: v != Verdict::Accept,
        }
    }
}
