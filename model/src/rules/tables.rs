//! The rule configuration of one director: per address family, the tables
//! with their chains and rules, changed by iptables' operations with the
//! kernel's refusals.
//!
//! Why counters live beside the rules and not in them: a rule's packet and
//! byte counts are written by every worker on the packet path, so each
//! rule owns an [`RuleCounters`] (one slot per worker, no lock) that the
//! compiled program shares; the configuration keeps the offset that `-Z`
//! and a restore with `[pkts:bytes]` set, so the listed value is the slots'
//! sum plus that offset. A rule keeps its counters when other rules move
//! around it (`-I`, `-D`), as in the kernel.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Policy, Rule, Table, Target};
use crate::model::Family;
use crate::stats::MAX_WORKERS;

/// Packet and byte counts of one rule (or a chain policy), one slot per
/// worker: each worker writes its own slot only (relaxed load + store).
#[derive(Debug)]
pub struct RuleCounters {
    /// A fixed-size array held inline (the counters are behind an `Arc`
    /// already): counting is one pointer away, and the clamped worker
    /// number needs no bounds check on the packet path.
    slots: [[AtomicU64; 2]; MAX_WORKERS],
}

impl Default for RuleCounters {
    fn default() -> Self {
        RuleCounters {
            slots: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
        }
    }
}

impl RuleCounters {
    /// Counts one packet of `len` bytes for worker `w`.
    #[inline]
    pub fn count(&self, w: usize, len: u32) {
        self.add(w, 1, u64::from(len));
    }

    /// Counts `pkts` packets of `bytes` bytes in all for worker `w`.
    #[inline]
    pub fn add(&self, w: usize, pkts: u64, bytes: u64) {
        let s = &self.slots[w.min(MAX_WORKERS - 1)];
        s[0].store(
            s[0].load(Ordering::Relaxed).wrapping_add(pkts),
            Ordering::Relaxed,
        );
        s[1].store(
            s[1].load(Ordering::Relaxed).wrapping_add(bytes),
            Ordering::Relaxed,
        );
    }

    /// Packets and bytes over all workers.
    pub fn total(&self) -> (u64, u64) {
        self.slots.iter().fold((0u64, 0u64), |(p, b), s| {
            (
                p.wrapping_add(s[0].load(Ordering::Relaxed)),
                b.wrapping_add(s[1].load(Ordering::Relaxed)),
            )
        })
    }
}

/// Counters as listed: the shared slots plus an offset (see module docs).
#[derive(Debug, Clone, Default)]
pub struct Counted {
    pub counters: Arc<RuleCounters>,
    offset: (u64, u64),
}

impl Counted {
    /// New counters that read `start`.
    pub fn starting_at(start: (u64, u64)) -> Counted {
        Counted {
            counters: Arc::default(),
            offset: start,
        }
    }

    /// Packets and bytes as `-L -v` shows them.
    pub fn get(&self) -> (u64, u64) {
        let (p, b) = self.counters.total();
        (p.wrapping_add(self.offset.0), b.wrapping_add(self.offset.1))
    }

    /// Makes the counters read `v` from now on (`-Z`: 0).
    pub fn set(&mut self, v: (u64, u64)) {
        let (p, b) = self.counters.total();
        self.offset = (v.0.wrapping_sub(p), v.1.wrapping_sub(b));
    }
}

/// A rule and its counters.
#[derive(Debug, Clone)]
pub struct RuleEntry {
    pub rule: Rule,
    pub counted: Counted,
}

/// A chain: built-in ones have a policy (and policy counters).
#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub policy: Option<Policy>,
    pub policy_counted: Counted,
    pub rules: Vec<RuleEntry>,
}

impl Chain {
    fn new(name: &str, policy: Option<Policy>) -> Chain {
        Chain {
            name: name.to_string(),
            policy,
            policy_counted: Counted::default(),
            rules: Vec::new(),
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.policy.is_some()
    }
}

/// One table: built-in chains in iptables' order, then user chains by name.
#[derive(Debug, Clone)]
pub struct TableState {
    pub table: Table,
    pub chains: Vec<Chain>,
}

impl TableState {
    fn new(table: Table) -> TableState {
        TableState {
            table,
            chains: table
                .builtins()
                .iter()
                .map(|n| Chain::new(n, Some(Policy::Accept)))
                .collect(),
        }
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut Chain, RuleError> {
        self.chains
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or(RuleError::NoChain)
    }

    /// How many rules jump to `name`.
    pub fn references(&self, name: &str) -> usize {
        self.chains
            .iter()
            .flat_map(|c| &c.rules)
            .filter(|r| matches!(&r.rule.target, Target::Jump(j) if j == name))
            .count()
    }

    /// Whether a rule in `from` jumping to `to` would close a loop: `to`
    /// reaches `from` through jumps.
    fn loops(&self, from: &str, to: &str) -> bool {
        let mut stack = vec![to.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = stack.pop() {
            if c == from {
                return true;
            }
            if !seen.insert(c.clone()) {
                continue;
            }
            if let Some(ch) = self.chain(&c) {
                for r in &ch.rules {
                    if let Target::Jump(j) = &r.rule.target {
                        stack.push(j.clone());
                    }
                }
            }
        }
        false
    }

    /// Refuses `rule` in chain `chain` for what the kernel refuses: an
    /// unknown jump target, a loop, a NAT target outside its table/hooks.
    fn check(&self, chain: &str, rule: &Rule) -> Result<(), RuleError> {
        match &rule.target {
            Target::Jump(j) => {
                match self.chain(j) {
                    Some(c) if !c.is_builtin() => {}
                    _ => return Err(RuleError::NoTarget(j.clone())),
                }
                if self.loops(chain, j) {
                    return Err(RuleError::Loop);
                }
            }
            Target::Snat { .. } | Target::Masquerade { .. } => {
                let masq = matches!(rule.target, Target::Masquerade { .. });
                let hook_ok = match chain {
                    "POSTROUTING" => true,
                    "INPUT" => !masq,
                    c => self.chain(c).is_some_and(|c| !c.is_builtin()),
                };
                if self.table != Table::Nat || !hook_ok {
                    return Err(RuleError::Invalid);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The tables of one address family; a table exists once used (as with
/// nf_tables, `iptables-save` shows only those).
#[derive(Debug, Clone, Default)]
pub struct FamilyTables {
    pub tables: BTreeMap<Table, TableState>,
}

impl FamilyTables {
    /// The table, created with its built-in chains if it did not exist.
    fn table_mut(&mut self, t: Table) -> &mut TableState {
        self.tables.entry(t).or_insert_with(|| TableState::new(t))
    }

    /// The table as listed (an unused table lists its empty built-ins).
    pub fn table(&self, t: Table) -> TableState {
        self.tables
            .get(&t)
            .cloned()
            .unwrap_or_else(|| TableState::new(t))
    }
}

/// Where a rule goes or which rule an operation names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleOp {
    /// `-A CHAIN rule`; `counters` from a restore's `[p:b]` (or `-c`).
    Append {
        chain: String,
        rule: Rule,
        counters: Option<(u64, u64)>,
    },
    /// `-I CHAIN [num] rule` (1 = first).
    Insert {
        chain: String,
        num: usize,
        rule: Rule,
        counters: Option<(u64, u64)>,
    },
    /// `-D CHAIN rule`: the first equal rule.
    Delete { chain: String, rule: Rule },
    /// `-D CHAIN num`.
    DeleteNum { chain: String, num: usize },
    /// `-R CHAIN num rule`.
    Replace {
        chain: String,
        num: usize,
        rule: Rule,
        counters: Option<(u64, u64)>,
    },
    /// `-F [CHAIN]`.
    Flush { chain: Option<String> },
    /// `-N CHAIN`.
    NewChain { chain: String },
    /// `-X [CHAIN]`: one user chain, or every unreferenced one.
    DeleteChain { chain: Option<String> },
    /// `-P CHAIN POLICY`; `counters` from a restore's chain line.
    SetPolicy {
        chain: String,
        policy: Policy,
        counters: Option<(u64, u64)>,
    },
    /// `-Z [CHAIN [num]]`.
    Zero {
        chain: Option<String>,
        num: Option<usize>,
    },
    /// `-E OLD NEW`.
    RenameChain { chain: String, to: String },
    /// Restore without `--noflush`: the table starts over empty (built-in
    /// chains with policy ACCEPT, no user chain).
    Reset,
}

/// Why the kernel refused an operation; the doc comment is iptables'
/// message (after `iptables: `), exit status 1 unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No chain/target/match by that name.
    #[error("No chain/target/match by that name.")]
    NoChain,
    /// A jump to a chain that does not exist: a command-line error in
    /// iptables (`Couldn't load target`), exit 2.
    #[error("Couldn't load target `{0}':No such file or directory")]
    NoTarget(String),
    /// Bad rule (does a matching rule exist in that chain?).
    #[error("Bad rule (does a matching rule exist in that chain?).")]
    BadRule,
    #[error("Index of deletion too big.")]
    DeleteIndex,
    #[error("Index of insertion too big.")]
    InsertIndex,
    #[error("Index of replacement too big.")]
    ReplaceIndex,
    #[error("Chain already exists.")]
    ChainExists,
    /// `-X` of a chain rules jump to (nf_tables' text).
    #[error("CHAIN_USER_DEL failed (Device or resource busy): chain {0}")]
    ChainBusy(String),
    /// `-X`/`-E` of a built-in chain, `-P` of a user chain.
    #[error("Bad built-in chain name.")]
    BuiltinChain,
    #[error("Too many levels of symbolic links.")]
    Loop,
    /// A target in a table or chain that cannot have it (SNAT outside nat
    /// POSTROUTING/INPUT...).
    #[error("Invalid argument. Run `dmesg' for more information.")]
    Invalid,
}

/// Every family's tables.
#[derive(Debug, Clone, Default)]
pub struct RuleTables {
    pub v4: FamilyTables,
    pub v6: FamilyTables,
}

impl RuleTables {
    pub fn family(&self, f: Family) -> &FamilyTables {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn family_mut(&mut self, f: Family) -> &mut FamilyTables {
        match f {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    /// The ipset names rules use, one entry per rule match (each holds
    /// its set: it may not be destroyed while used).
    pub fn set_names(&self) -> Vec<String> {
        [&self.v4, &self.v6]
            .into_iter()
            .flat_map(|f| f.tables.values())
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.rule.matches)
            .filter_map(|m| match m {
                super::Match::Set { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Executes one operation on `table` of `family`; on error nothing
    /// changed, not even the table's existence: a refused command on a
    /// table nothing has used yet leaves it out of iptables-save's output,
    /// as iptables-nft does (it commits nothing of a failed command).
    pub fn apply(&mut self, family: Family, table: Table, op: &RuleOp) -> Result<(), RuleError> {
        let f = self.family_mut(family);
        let existed = f.tables.contains_key(&table);
        let r = apply_to(f.table_mut(table), op);
        if r.is_err() && !existed {
            f.tables.remove(&table);
        }
        r
    }

    /// Executes all operations or none (a restore's table between `*table`
    /// and `COMMIT`): on failure, the index of the failed one.
    pub fn apply_all(
        &mut self,
        family: Family,
        table: Table,
        ops: &[RuleOp],
    ) -> Result<(), (usize, RuleError)> {
        let mut t = self.family(family).table(table);
        for (i, op) in ops.iter().enumerate() {
            apply_to(&mut t, op).map_err(|e| (i, e))?;
        }
        self.family_mut(family).tables.insert(table, t);
        Ok(())
    }
}

fn start(c: Option<(u64, u64)>) -> Counted {
    Counted::starting_at(c.unwrap_or((0, 0)))
}

fn apply_to(t: &mut TableState, op: &RuleOp) -> Result<(), RuleError> {
    match op {
        RuleOp::Append {
            chain,
            rule,
            counters,
        } => {
            t.check(chain, rule)?;
            t.chain_mut(chain)?.rules.push(RuleEntry {
                rule: rule.clone(),
                counted: start(*counters),
            });
        }
        RuleOp::Insert {
            chain,
            num,
            rule,
            counters,
        } => {
            t.check(chain, rule)?;
            let c = t.chain_mut(chain)?;
            if *num == 0 || *num > c.rules.len() + 1 {
                return Err(RuleError::InsertIndex);
            }
            c.rules.insert(
                num - 1,
                RuleEntry {
                    rule: rule.clone(),
                    counted: start(*counters),
                },
            );
        }
        RuleOp::Delete { chain, rule } => {
            let c = t.chain_mut(chain)?;
            let i = c
                .rules
                .iter()
                .position(|r| r.rule == *rule)
                .ok_or(RuleError::BadRule)?;
            c.rules.remove(i);
        }
        RuleOp::DeleteNum { chain, num } => {
            let c = t.chain_mut(chain)?;
            if *num == 0 || *num > c.rules.len() {
                return Err(RuleError::DeleteIndex);
            }
            c.rules.remove(num - 1);
        }
        RuleOp::Replace {
            chain,
            num,
            rule,
            counters,
        } => {
            t.check(chain, rule)?;
            let c = t.chain_mut(chain)?;
            if *num == 0 || *num > c.rules.len() {
                return Err(RuleError::ReplaceIndex);
            }
            c.rules[num - 1] = RuleEntry {
                rule: rule.clone(),
                counted: start(*counters),
            };
        }
        RuleOp::Flush { chain } => match chain {
            Some(name) => t.chain_mut(name)?.rules.clear(),
            None => t.chains.iter_mut().for_each(|c| c.rules.clear()),
        },
        RuleOp::NewChain { chain } => {
            if t.chain(chain).is_some() {
                return Err(RuleError::ChainExists);
            }
            t.chains.push(Chain::new(chain, None));
            sort_user_chains(t);
        }
        RuleOp::DeleteChain { chain } => match chain {
            Some(name) => {
                let c = t.chain(name).ok_or(RuleError::NoChain)?;
                if c.is_builtin() {
                    return Err(RuleError::BuiltinChain);
                }
                if t.references(name) > 0 {
                    return Err(RuleError::ChainBusy(name.clone()));
                }
                t.chains.retain(|c| c.name != *name);
            }
            None => {
                // Every user chain no other chain refers to; chains that
                // only refer to each other go together.
                loop {
                    let victims: Vec<String> = t
                        .chains
                        .iter()
                        .filter(|c| !c.is_builtin() && t.references(&c.name) == 0)
                        .map(|c| c.name.clone())
                        .collect();
                    if victims.is_empty() {
                        break;
                    }
                    t.chains.retain(|c| !victims.contains(&c.name));
                }
                if let Some(c) = t.chains.iter().find(|c| !c.is_builtin()) {
                    return Err(RuleError::ChainBusy(c.name.clone()));
                }
            }
        },
        RuleOp::SetPolicy {
            chain,
            policy,
            counters,
        } => {
            let c = t.chain_mut(chain)?;
            if !c.is_builtin() {
                return Err(RuleError::BuiltinChain);
            }
            c.policy = Some(*policy);
            if let Some(v) = counters {
                c.policy_counted.set(*v);
            }
        }
        RuleOp::Zero { chain, num } => {
            let zero = |c: &mut Chain| {
                c.policy_counted.set((0, 0));
                c.rules.iter_mut().for_each(|r| r.counted.set((0, 0)));
            };
            match (chain, num) {
                (None, _) => t.chains.iter_mut().for_each(zero),
                (Some(name), None) => zero(t.chain_mut(name)?),
                (Some(name), Some(n)) => {
                    let c = t.chain_mut(name)?;
                    let r = n
                        .checked_sub(1)
                        .and_then(|i| c.rules.get_mut(i))
                        .ok_or(RuleError::ReplaceIndex)?;
                    r.counted.set((0, 0));
                }
            }
        }
        RuleOp::RenameChain { chain, to } => {
            if t.chain(to).is_some() {
                return Err(RuleError::ChainExists);
            }
            let c = t.chain_mut(chain)?;
            if c.is_builtin() {
                return Err(RuleError::BuiltinChain);
            }
            c.name = to.clone();
            for c in &mut t.chains {
                for r in &mut c.rules {
                    if matches!(&r.rule.target, Target::Jump(j) if j == chain) {
                        r.rule.target = Target::Jump(to.clone());
                    }
                }
            }
            sort_user_chains(t);
        }
        RuleOp::Reset => *t = TableState::new(t.table),
    }
    Ok(())
}

/// Built-ins keep their order; user chains follow, sorted by name.
fn sort_user_chains(t: &mut TableState) {
    let n = t.table.builtins().len();
    t.chains[n..].sort_by(|a, b| a.name.cmp(&b.name));
}
