//! iptables, iptables-save and iptables-restore (and the ip6tables names)
//! for a running uvsd: their command lines, messages, exit codes and
//! output formats, over the director's packet rules
//! ([`dataplane::rules`]).
//!
//! Why in the daemon: as with ipvsadm, the client (`uvstables`) sends the
//! words typed and the daemon parses, validates and answers with what
//! iptables would print; the client only picks the tool by the name it was
//! invoked under. On the control socket such a request has `"tool":
//! "iptables"` and the program name as its first word.
//!
//! Atomicity: one command changes one table or nothing; a restore is one
//! transaction, as with iptables-nft (any failed line leaves every table
//! as it was).

pub mod format;
#[cfg(test)]
mod kube_tests;
pub mod parse;
#[cfg(test)]
mod tests;

use dataplane::rules::tables::RuleTables;
use dataplane::rules::{RuleError, RuleOp, Table};
use uvs_model::model::Family;

use crate::proto::Response;
use parse::IptCommand;

/// What iptables says its version is (scripts parse it).
pub const VERSION: &str = "v1.8.9 (nf_tables)";

/// Which program the words are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Iptables,
    Save,
    Restore,
}

impl Tool {
    /// The tool and family a program name stands for (`ip6tables-save`,
    /// `iptables-nft-restore`, ...); `uvstables` is iptables.
    pub fn from_program(name: &str) -> Option<(Tool, Family)> {
        let name = name.replace("-nft", "").replace("-legacy", "");
        let (family, rest) = if let Some(r) = name.strip_prefix("ip6tables") {
            (Family::V6, r)
        } else if let Some(r) = name.strip_prefix("iptables") {
            (Family::V4, r)
        } else if name == "uvstables" {
            (Family::V4, "")
        } else {
            return None;
        };
        let tool = match rest {
            "" => Tool::Iptables,
            "-save" => Tool::Save,
            "-restore" => Tool::Restore,
            _ => return None,
        };
        Some((tool, family))
    }

    /// The program name iptables prints in its messages.
    pub fn program(self, family: Family) -> &'static str {
        match (self, family) {
            (Tool::Iptables, Family::V4) => "iptables",
            (Tool::Iptables, Family::V6) => "ip6tables",
            (Tool::Save, Family::V4) => "iptables-save",
            (Tool::Save, Family::V6) => "ip6tables-save",
            (Tool::Restore, Family::V4) => "iptables-restore",
            (Tool::Restore, Family::V6) => "ip6tables-restore",
        }
    }
}

/// Why a command failed, rendered as iptables renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IptError {
    /// A command-line problem: `PROG v1.8.9 (nf_tables): MSG` and the
    /// "Try" line, exit 2.
    Usage(String),
    /// `-t` of a table that does not exist, exit 3.
    NoTable(String),
    /// `-P` with a policy other than ACCEPT/DROP, exit 1.
    BadPolicy,
    /// The kernel refused the change: `PROG: MSG`, exit 1.
    Kernel(RuleError),
    /// Valid iptables that UVS does not do, exit 2.
    Unsupported(String),
}

impl IptError {
    pub fn usage(msg: impl Into<String>) -> IptError {
        IptError::Usage(msg.into())
    }

    pub fn unsupported(msg: impl Into<String>) -> IptError {
        IptError::Unsupported(msg.into())
    }

    /// The answer `prog` gives.
    pub fn response(&self, prog: &str) -> Response {
        let usage = |msg: &str| {
            Response::err(
                2,
                format!(
                    "{prog} {VERSION}: {msg}\nTry `{prog} -h' or '{prog} --help' for more information.\n"
                ),
            )
        };
        match self {
            IptError::Usage(m) => usage(m),
            IptError::Kernel(RuleError::NoTarget(t)) => {
                usage(&format!("Couldn't load target `{t}':No such file or directory\n"))
            }
            IptError::NoTable(t) => Response::err(
                3,
                format!(
                    "{prog} {VERSION}: table '{t}' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n"
                ),
            ),
            IptError::BadPolicy => Response::err(
                1,
                format!("{prog}: Bad policy name. Run `dmesg' for more information.\n"),
            ),
            IptError::Kernel(RuleError::ChainBusy(c)) => Response::err(
                1,
                format!("{prog} {VERSION}: CHAIN_USER_DEL failed (Device or resource busy): chain {c}\n"),
            ),
            IptError::Kernel(e) => Response::err(1, format!("{prog}: {e}\n")),
            IptError::Unsupported(m) => Response::err(2, format!("uvstables: {m}\n")),
        }
    }
}

/// What the rules need to know about ipsets: which names exist.
pub trait SetCatalog {
    fn exists(&self, name: &str) -> bool;
}

/// No sets at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSets;

impl SetCatalog for NoSets {
    fn exists(&self, _: &str) -> bool {
        false
    }
}

impl SetCatalog for dataplane::sets::SetStore {
    fn exists(&self, name: &str) -> bool {
        self.id(name).is_some()
    }
}

/// Names for compiling rules: sets by their store slot, interfaces by
/// the names the director's ports and VLANs answer to.
pub struct CompileNames<'a>(
    pub &'a dataplane::sets::SetStore,
    pub &'a dataplane::rules::Interfaces,
);

impl dataplane::rules::Names for CompileNames<'_> {
    fn set_id(&self, name: &str) -> Option<u16> {
        self.0.id(name)
    }
    fn ifaces(&self, name: &str) -> Vec<u16> {
        self.1.ids(name)
    }
}

/// Refuses a rule naming a set that does not exist (iptables' message).
fn check_sets(cmd: &IptCommand, sets: &dyn SetCatalog) -> Result<(), IptError> {
    let rule = match cmd {
        IptCommand::Op {
            op:
                RuleOp::Append { rule, .. }
                | RuleOp::Insert { rule, .. }
                | RuleOp::Replace { rule, .. }
                | RuleOp::Delete { rule, .. },
            ..
        }
        | IptCommand::Check { rule, .. } => rule,
        _ => return Ok(()),
    };
    for m in &rule.matches {
        if let dataplane::rules::Match::Set { name, .. } = m {
            if !sets.exists(name) {
                return Err(IptError::usage(format!("Set {name} doesn't exist.\n")));
            }
        }
    }
    Ok(())
}

/// The answer of one request and whether the rules changed.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub changed: bool,
}

impl Outcome {
    fn unchanged(response: Response) -> Outcome {
        Outcome {
            response,
            changed: false,
        }
    }
}

const HELP: &str = "Usage: iptables -[ACD] chain rule-specification [options]
       iptables -I chain [rulenum] rule-specification [options]
       iptables -R chain rulenum rule-specification [options]
       iptables -D chain rulenum [options]
       iptables -[LS] [chain [rulenum]] [options]
       iptables -[FZ] [chain] [options]
       iptables -[NX] chain
       iptables -E old-chain-name new-chain-name
       iptables -P chain target [options]
       iptables -h (print this help information)

UVS implements tables mangle, filter and nat; matches tcp, udp, sctp,
multiport, mark, set, comment, conntrack (--ctstate), addrtype
(--dst-type LOCAL); targets ACCEPT, DROP, REJECT, RETURN, MARK, SNAT,
MASQUERADE and user chains.
";

/// Runs one request of `tool` for `family` against `tables`. `now` is the
/// time for iptables-save's comments (`ctime` form, with its newline).
pub fn execute(
    tables: &mut RuleTables,
    sets: &dyn SetCatalog,
    tool: Tool,
    family: Family,
    argv: &[String],
    stdin: Option<&str>,
    now: &str,
) -> Outcome {
    let prog = tool.program(family);
    match tool {
        Tool::Iptables => iptables(tables, sets, family, argv, prog),
        Tool::Save => Outcome::unchanged(save(tables, family, argv, prog, now)),
        Tool::Restore => restore(tables, sets, family, argv, stdin.unwrap_or(""), prog),
    }
}

fn iptables(
    tables: &mut RuleTables,
    sets: &dyn SetCatalog,
    family: Family,
    argv: &[String],
    prog: &str,
) -> Outcome {
    let cmd = match parse::parse(argv, family).and_then(|c| check_sets(&c, sets).map(|()| c)) {
        Ok(c) => c,
        Err(e) => return Outcome::unchanged(e.response(prog)),
    };
    let no_chain = || IptError::Kernel(RuleError::NoChain).response(prog);
    match cmd {
        IptCommand::Help => Outcome::unchanged(Response::ok(HELP.replace("iptables", prog))),
        IptCommand::Version => Outcome::unchanged(Response::ok(format!("{prog} {VERSION}\n"))),
        IptCommand::Op { table, op } => match tables.apply(family, table, &op) {
            Ok(()) => Outcome {
                response: Response::ok(String::new()),
                changed: true,
            },
            Err(e) => Outcome::unchanged(IptError::Kernel(e).response(prog)),
        },
        IptCommand::Check { table, chain, rule } => {
            let t = tables.family(family).table(table);
            let Some(c) = t.chain(&chain) else {
                return Outcome::unchanged(no_chain());
            };
            Outcome::unchanged(if c.rules.iter().any(|r| r.rule == rule) {
                Response::ok(String::new())
            } else {
                IptError::Kernel(RuleError::BadRule).response(prog)
            })
        }
        IptCommand::List { table, opts } => {
            let t = tables.family(family).table(table);
            if opts.chain.as_deref().is_some_and(|c| t.chain(c).is_none()) {
                return Outcome::unchanged(no_chain());
            }
            Outcome::unchanged(Response::ok(format::list(&t, family, &opts)))
        }
        IptCommand::ListRules {
            table,
            chain,
            num,
            counters,
        } => {
            let t = tables.family(family).table(table);
            if let Some(c) = &chain {
                match t.chain(c) {
                    None => return Outcome::unchanged(no_chain()),
                    Some(ch) if num.is_some_and(|n| n > ch.rules.len()) => {
                        return Outcome::unchanged(
                            IptError::Kernel(RuleError::DeleteIndex).response(prog),
                        )
                    }
                    _ => {}
                }
            }
            Outcome::unchanged(Response::ok(format::list_rules(
                &t,
                family,
                chain.as_deref(),
                num,
                counters,
            )))
        }
    }
}

/// `iptables-save [-c] [-t TABLE]`.
fn save(tables: &RuleTables, family: Family, argv: &[String], prog: &str, now: &str) -> Response {
    let mut counters = false;
    let mut only = None;
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-c" | "--counters" => counters = true,
            "-t" | "--table" => {
                i += 1;
                let Some(t) = argv.get(i) else {
                    return IptError::usage("option \"-t\" requires an argument").response(prog);
                };
                match Table::from_name(t) {
                    Some(t) => only = Some(t),
                    None => return IptError::NoTable(t.clone()).response(prog),
                }
            }
            "-M" | "--modprobe" | "-f" | "--file" => i += 1,
            o => return IptError::usage(format!("unknown option \"{o}\"")).response(prog),
        }
        i += 1;
    }
    let fam = tables.family(family);
    let mut out = String::new();
    for t in Table::ALL {
        if only.is_some_and(|o| o != t) {
            continue;
        }
        // A table shows once used (or when asked for by name).
        let state = match fam.tables.get(&t) {
            Some(s) => s.clone(),
            None if only.is_some() => fam.table(t),
            None => continue,
        };
        out.push_str(&format!("# Generated by {prog} {VERSION} on {now}"));
        out.push_str(&format::save_table(&state, family, counters));
        out.push_str(&format!("# Completed on {now}"));
    }
    Response::ok(out)
}

/// C's `isspace` in the C locale: `iptables -N` refuses a chain name
/// holding one.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// What separates words in iptables-restore input (its
/// `add_param_to_argv`, and `strtok` on chain lines): space, tab and
/// newline, nothing else. A chain name cannot hold one (see
/// [`is_c_space`]); an interface name that does is quoted when saved.
pub(crate) fn is_restore_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n')
}

/// Splits a restore line into words as iptables-restore does: blanks
/// separate, `"..."` groups (with `\"` inside), quotes are removed.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                has = true;
            }
            c if is_restore_blank(c) && !quoted => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("Unterminated quoted string".into());
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// `iptables-restore [-c] [-n] [-t] [-T TABLE]`: one transaction.
fn restore(
    tables: &mut RuleTables,
    sets: &dyn SetCatalog,
    family: Family,
    argv: &[String],
    text: &str,
    prog: &str,
) -> Outcome {
    let (mut counters, mut noflush, mut test, mut only) = (false, false, false, None);
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-c" | "--counters" => counters = true,
            "-n" | "--noflush" => noflush = true,
            "-t" | "--test" => test = true,
            "-v" | "--verbose" | "-w" | "--wait" => {}
            "-T" | "--table" => {
                i += 1;
                match argv.get(i).and_then(|t| Table::from_name(t)) {
                    Some(t) => only = Some(t),
                    None => {
                        return Outcome::unchanged(
                            IptError::NoTable(argv.get(i).cloned().unwrap_or_default())
                                .response(prog),
                        )
                    }
                }
            }
            o => {
                return Outcome::unchanged(
                    IptError::usage(format!("unknown option \"{o}\"")).response(prog),
                )
            }
        }
        i += 1;
    }
    let line_error = |n: usize, msg: &str| {
        Outcome::unchanged(Response::err(
            2,
            format!(
                "{prog} {VERSION}: {msg}\nError occurred at line: {n}\nTry `{prog} -h' or '{prog} --help' for more information.\n"
            ),
        ))
    };
    let failed =
        |n: usize| Outcome::unchanged(Response::err(1, format!("{prog}: line {n} failed\n")));
    let mut work = tables.clone();
    let mut current: Option<Table> = None;
    let mut last = 0;
    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        last = n;
        // Only the blanks iptables-restore splits on: `str::trim` would also
        // take a Unicode blank (U+00A0) that ends a chain name in the line.
        let line = raw.trim_matches(is_restore_blank);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if current.is_some() {
                return failed(n);
            }
            let name = name.trim_matches(is_restore_blank);
            let Some(t) = Table::from_name(name) else {
                return line_error(n, &format!("table '{name}' does not exist"));
            };
            current = Some(t);
            if !noflush && only.is_none_or(|o| o == t) {
                let _ = work.apply(family, t, &RuleOp::Reset);
            }
            continue;
        }
        let Some(table) = current else {
            return line_error(n, "no command specified");
        };
        let skip = only.is_some_and(|o| o != table);
        if line == "COMMIT" {
            current = None;
            continue;
        }
        if let Some(chain_line) = line.strip_prefix(':') {
            let w: Vec<&str> = chain_line
                .split(is_restore_blank)
                .filter(|w| !w.is_empty())
                .collect();
            let (Some(name), Some(pol)) = (w.first(), w.get(1)) else {
                return line_error(n, "no command specified");
            };
            let cnt = w.get(2).and_then(|c| {
                let (p, b) = c.strip_prefix('[')?.strip_suffix(']')?.split_once(':')?;
                Some((p.parse().ok()?, b.parse().ok()?))
            });
            if skip {
                continue;
            }
            let exists = work.family(family).table(table).chain(name).is_some();
            let op = if *pol == "-" {
                if exists {
                    RuleOp::Flush {
                        chain: Some(name.to_string()),
                    }
                } else {
                    RuleOp::NewChain {
                        chain: name.to_string(),
                    }
                }
            } else {
                let policy = match *pol {
                    "ACCEPT" => dataplane::rules::Policy::Accept,
                    "DROP" => dataplane::rules::Policy::Drop,
                    _ => return failed(n),
                };
                RuleOp::SetPolicy {
                    chain: name.to_string(),
                    policy,
                    counters: if counters { cnt } else { None },
                }
            };
            if work.apply(family, table, &op).is_err() {
                return failed(n);
            }
            continue;
        }
        // `[p:b] -A ...` with -c.
        let (cnt, rest) = match line.strip_prefix('[') {
            Some(r) => match r.split_once(']') {
                Some((c, rest)) => {
                    let v = c
                        .split_once(':')
                        .and_then(|(p, b)| Some((p.parse().ok()?, b.parse().ok()?)));
                    match v {
                        Some(v) => (Some(v), rest),
                        None => return line_error(n, "Bad packet counter"),
                    }
                }
                None => return line_error(n, "Bad packet counter"),
            },
            None => (None, line),
        };
        let w = match words(rest) {
            Ok(w) => w,
            Err(m) => return line_error(n, &m),
        };
        let cmd = match parse::parse_restore_line(&w, family, table)
            .and_then(|c| check_sets(&c, sets).map(|()| c))
        {
            Ok(c) => c,
            Err(IptError::Usage(m)) => return line_error(n, m.trim_end()),
            Err(IptError::Kernel(RuleError::NoTarget(t))) => {
                return line_error(
                    n,
                    &format!("Couldn't load target `{t}':No such file or directory"),
                )
            }
            Err(_) => return failed(n),
        };
        let IptCommand::Op { mut op, .. } = cmd else {
            return line_error(n, "no command specified");
        };
        if counters {
            if let RuleOp::Append { counters: c, .. }
            | RuleOp::Insert { counters: c, .. }
            | RuleOp::Replace { counters: c, .. } = &mut op
            {
                if c.is_none() {
                    *c = cnt;
                }
            }
        }
        if skip {
            continue;
        }
        match work.apply(family, table, &op) {
            Ok(()) => {}
            Err(RuleError::NoTarget(t)) => {
                return line_error(
                    n,
                    &format!("Couldn't load target `{t}':No such file or directory"),
                )
            }
            Err(_) => return failed(n),
        }
    }
    if current.is_some() {
        return Outcome::unchanged(Response::err(
            1,
            format!("{prog}: COMMIT expected at line {}\n", last + 1),
        ));
    }
    if test {
        return Outcome::unchanged(Response::ok(String::new()));
    }
    *tables = work;
    Outcome {
        response: Response::ok(String::new()),
        changed: true,
    }
}

/// `ctime(3)` of a Unix time, UTC: `Thu Dec  3 10:40:00 2026\n`.
pub fn ctime(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let wday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wday} {month} {d:>2} {h:02}:{m:02}:{s:02} {y}\n")
}

/// The tables every fuzz input starts on, per family: a user chain and two
/// rules, and their `iptables-save -c` output.
struct FuzzStart {
    tables: RuleTables,
    save: String,
}

/// The commands that make [`FuzzStart`]'s tables.
const FUZZ_SETUP: [&str; 3] = [
    "-N web",
    "-A INPUT -p tcp --dport 80 -j web",
    "-A web -j ACCEPT",
];

impl FuzzStart {
    fn new(family: Family) -> FuzzStart {
        let now = ctime(0);
        let mut tables = RuleTables::default();
        for line in FUZZ_SETUP {
            let argv: Vec<String> = line.split(' ').map(str::to_string).collect();
            let out = execute(
                &mut tables,
                &NoSets,
                Tool::Iptables,
                family,
                &argv,
                None,
                &now,
            );
            assert_eq!(out.response.code, 0, "{out:?}");
        }
        let save = execute(
            &mut tables,
            &NoSets,
            Tool::Save,
            family,
            &["-c".to_string()],
            None,
            &now,
        )
        .response
        .stdout;
        FuzzStart { tables, save }
    }
}

thread_local! {
    /// [`FuzzStart`] for IPv4 and IPv6, made once per thread.
    static FUZZ_START: [FuzzStart; 2] = [FuzzStart::new(Family::V4), FuzzStart::new(Family::V6)];
}

/// Fuzzing entry point (shared by `fuzz/fuzz_targets/iptables.rs` and a
/// property test): the first byte picks the program and family, the rest
/// is command-line words (split at NUL, blank, newline) or restore input.
/// Whatever the input: no panic, iptables' exit statuses only, a refused
/// command changes nothing, and what is accepted saves and restores to
/// the same save output and compiles.
///
/// Why the starting tables are made once per thread and cloned per input:
/// running the three commands that make them and saving them was about a
/// third of an input's time. `RuleTables` is a plain value; its one shared
/// part, each rule's counters (behind an `Arc`), moves only when a packet
/// matches, which nothing here does (`-Z` and `-c` change the rule's own
/// offset or give it new counters). So each input starts on tables equal to
/// fresh ones, whatever ran before (`the_fuzz_inputs_start_on_the_same_tables`).
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let family = if mode & 4 == 0 {
        Family::V4
    } else {
        Family::V6
    };
    let now = ctime(0);
    let save = |t: &mut RuleTables| {
        execute(
            t,
            &NoSets,
            Tool::Save,
            family,
            &["-c".to_string()],
            None,
            &now,
        )
        .response
        .stdout
    };
    let (mut tables, before) = FUZZ_START.with(|s| {
        let s = &s[usize::from(family == Family::V6)];
        (s.tables.clone(), s.save.clone())
    });
    let (tool, argv, stdin) = if mode & 3 == 3 {
        (Tool::Restore, vec!["-c".to_string()], Some(text.as_ref()))
    } else {
        let tool = if mode & 3 == 2 {
            Tool::Save
        } else {
            Tool::Iptables
        };
        let argv = text
            .split(['\0', ' ', '\n'])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        (tool, argv, None)
    };
    let out = execute(&mut tables, &NoSets, tool, family, &argv, stdin, &now);
    assert!(matches!(out.response.code, 0..=4), "{out:?}");
    let after = save(&mut tables);
    if !out.changed {
        assert_eq!(before, after, "an unchanged outcome changed the rules");
        return;
    }
    let mut again = RuleTables::default();
    let r = execute(
        &mut again,
        &NoSets,
        Tool::Restore,
        family,
        &["-c".to_string()],
        Some(&after),
        &now,
    );
    assert_eq!(r.response.code, 0, "{}\n{after}", r.response.stderr);
    assert_eq!(save(&mut again), after);
    let _ = dataplane::rules::Program::compile(&tables.v4, &tables.v6, &dataplane::rules::NoNames);
}
