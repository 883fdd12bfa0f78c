//! iptables' command line (1.8.9, nf_tables) -> a typed command, with
//! iptables' messages.
//!
//! Options come in any order (getopt with permutation); `!` inverts the
//! option that follows it. `-p tcp|udp|sctp` loads that protocol's port
//! match implicitly, as iptables does (`-p tcp --dport 80` is saved as
//! `-p tcp -m tcp --dport 80`). Matches and targets UVS does not know
//! are refused with iptables' "Couldn't load" message.

use std::net::IpAddr;

use dataplane::rules::{ctstate, Match, Neg, Net, Policy, PortDir, Rule, RuleOp, Table, Target};
use uvs_model::model::Family;

use super::IptError;

/// What one iptables command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IptCommand {
    /// A change of `table`.
    Op {
        table: Table,
        op: RuleOp,
    },
    /// `-C CHAIN rule`: exit 0 if the rule exists.
    Check {
        table: Table,
        chain: String,
        rule: Rule,
    },
    /// `-L [CHAIN]`.
    List {
        table: Table,
        opts: ListOpts,
    },
    /// `-S [CHAIN [num]]`.
    ListRules {
        table: Table,
        chain: Option<String>,
        num: Option<usize>,
        counters: bool,
    },
    Help,
    Version,
}

/// Listing options (`-L`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOpts {
    pub chain: Option<String>,
    pub verbose: bool,
    pub numeric: bool,
    pub exact: bool,
    pub line_numbers: bool,
}

/// Which command letter was given (for "Can't use -X with -Y").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Append,
    Check,
    Delete,
    Insert,
    Replace,
    List,
    ListRules,
    Flush,
    Zero,
    NewChain,
    DeleteChain,
    Policy,
    Rename,
}

impl Cmd {
    fn letter(self) -> char {
        match self {
            Cmd::Append => 'A',
            Cmd::Check => 'C',
            Cmd::Delete => 'D',
            Cmd::Insert => 'I',
            Cmd::Replace => 'R',
            Cmd::List => 'L',
            Cmd::ListRules => 'S',
            Cmd::Flush => 'F',
            Cmd::Zero => 'Z',
            Cmd::NewChain => 'N',
            Cmd::DeleteChain => 'X',
            Cmd::Policy => 'P',
            Cmd::Rename => 'E',
        }
    }
}

fn fail(msg: impl Into<String>) -> IptError {
    IptError::usage(msg)
}

/// `strtoul(s, 0)` for marks: decimal, `0x` hex or `0` octal.
pub fn parse_u32(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// `V[/M]` (mask default all ones).
fn value_mask(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn port(s: &str) -> Result<u16, IptError> {
    s.parse::<u16>()
        .map_err(|_| fail(format!("invalid port/service `{s}' specified")))
}

/// `P`, `P:P`, `P:` or `:P`.
fn port_range(s: &str) -> Result<(u16, u16), IptError> {
    let (a, b) = match s.split_once(':') {
        Some((a, b)) => (
            if a.is_empty() { 0 } else { port(a)? },
            if b.is_empty() { u16::MAX } else { port(b)? },
        ),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(fail("invalid portrange (min > max) specified"));
    }
    Ok((a, b))
}

/// A protocol name or number as iptables accepts it.
pub fn protocol(s: &str, family: Family) -> Result<u8, IptError> {
    let n = match s.to_ascii_lowercase().as_str() {
        "all" => 0,
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "udplite" => 136,
        "esp" => 50,
        "ah" => 51,
        "gre" => 47,
        other => other
            .parse::<u8>()
            .map_err(|_| fail(format!("unknown protocol \"{s}\" specified")))?,
    };
    let _ = family;
    Ok(n)
}

/// `addr[/len|/mask]` of the command's family.
fn network(s: &str, family: Family) -> Result<Net, IptError> {
    let bad = || fail(format!("host/network `{s}' not found"));
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let max = match (family, addr) {
        (Family::V4, IpAddr::V4(_)) => 32u8,
        (Family::V6, IpAddr::V6(_)) => 128,
        _ => return Err(bad()),
    };
    let len = match m {
        None => max,
        Some(m) => match m.parse::<u8>() {
            Ok(l) if l <= max => l,
            Ok(_) => return Err(fail(format!("invalid mask `{m}' specified"))),
            Err(_) => match m.parse::<std::net::Ipv4Addr>() {
                Ok(mask) if max == 32 => {
                    let bits = u32::from(mask);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return Err(fail(format!("invalid mask `{m}' specified")));
                    }
                    bits.leading_ones() as u8
                }
                _ => return Err(fail(format!("invalid mask `{m}' specified"))),
            },
        },
    };
    Ok(Net::new(addr, len))
}

/// The set of options a loaded match or target understands.
fn match_options(name: &str) -> &'static [&'static str] {
    match name {
        "tcp" | "udp" | "sctp" => &["--sport", "--source-port", "--dport", "--destination-port"],
        "multiport" => &[
            "--sports",
            "--source-ports",
            "--dports",
            "--destination-ports",
            "--ports",
        ],
        "mark" => &["--mark"],
        "set" => &["--match-set", "--set", "--return-nomatch"],
        "comment" => &["--comment"],
        "conntrack" | "state" => &["--ctstate", "--state"],
        "addrtype" => &["--dst-type"],
        _ => &[],
    }
}

fn target_options(name: &str) -> &'static [&'static str] {
    match name {
        "REJECT" => &["--reject-with"],
        "MARK" => &[
            "--set-mark",
            "--set-xmark",
            "--or-mark",
            "--and-mark",
            "--xor-mark",
        ],
        "SNAT" => &[
            "--to-source",
            "--to",
            "--random",
            "--random-fully",
            "--persistent",
        ],
        "MASQUERADE" => &["--to-ports", "--random", "--random-fully"],
        _ => &[],
    }
}

const KNOWN_MATCHES: [&str; 9] = [
    "tcp",
    "udp",
    "sctp",
    "multiport",
    "mark",
    "set",
    "comment",
    "conntrack",
    "addrtype",
];

/// One command line (without the program name) for `family`.
pub fn parse(argv: &[String], family: Family) -> Result<IptCommand, IptError> {
    Parser::new(&split_long_values(argv), family).run()
}

/// One rule line of an iptables-restore file, whose table is set by the
/// file's `*table` line: a `-t` option in it is an error (iptables-restore
/// sets the table itself, so a second one is refused), while a `-t` that is
/// an option's value (`--comment "-t"`) is not.
pub fn parse_restore_line(
    argv: &[String],
    family: Family,
    table: Table,
) -> Result<IptCommand, IptError> {
    let words = split_long_values(argv);
    let mut p = Parser::new(&words, family);
    p.table = Some(table);
    p.restore = true;
    p.run()
}

/// `--opt=value` as getopt_long splits it.
fn split_long_values(argv: &[String]) -> Vec<String> {
    argv.iter()
        .flat_map(|a| match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => vec![o.to_string(), v.to_string()],
            _ => vec![a.clone()],
        })
        .collect()
}

struct Parser<'a> {
    argv: &'a [String],
    i: usize,
    family: Family,
    cmd: Option<(Cmd, Vec<String>)>,
    table: Option<Table>,
    rule: Rule,
    /// Implicit (`-p`) or explicit port match being filled.
    loaded: Vec<String>,
    target: Option<String>,
    target_opts: Vec<(String, Vec<String>, bool)>,
    list: ListOpts,
    counters: Option<(u64, u64)>,
    neg: bool,
    /// A line of iptables-restore: the table is already set.
    restore: bool,
}

impl<'a> Parser<'a> {
    fn new(argv: &'a [String], family: Family) -> Self {
        Parser {
            argv,
            i: 0,
            family,
            cmd: None,
            table: None,
            rule: Rule::default(),
            loaded: Vec::new(),
            target: None,
            target_opts: Vec::new(),
            list: ListOpts::default(),
            counters: None,
            neg: false,
            restore: false,
        }
    }

    fn next_arg(&mut self, opt: &str) -> Result<String, IptError> {
        let a = self
            .argv
            .get(self.i)
            .ok_or_else(|| fail(format!("option \"{opt}\" requires an argument")))?;
        self.i += 1;
        Ok(a.clone())
    }

    /// Optional positional words after a command (`-L CHAIN`, `-D CHAIN 3`).
    fn optional_word(&mut self) -> Option<String> {
        let a = self.argv.get(self.i)?;
        if a.starts_with('-') || a == "!" {
            return None;
        }
        self.i += 1;
        Some(a.clone())
    }

    fn set_cmd(&mut self, c: Cmd, words: Vec<String>) -> Result<(), IptError> {
        if let Some((old, _)) = &self.cmd {
            return Err(fail(format!(
                "Can't use -{} with -{}",
                c.letter(),
                old.letter()
            )));
        }
        self.cmd = Some((c, words));
        Ok(())
    }

    fn take_neg(&mut self) -> bool {
        std::mem::take(&mut self.neg)
    }

    fn no_neg(&mut self, opt: &str) -> Result<(), IptError> {
        if self.take_neg() {
            return Err(fail(format!("cannot have ! before {opt}")));
        }
        Ok(())
    }

    fn run(mut self) -> Result<IptCommand, IptError> {
        while self.i < self.argv.len() {
            let opt = self.argv[self.i].clone();
            self.i += 1;
            self.option(&opt)?;
        }
        self.finish()
    }

    fn option(&mut self, opt: &str) -> Result<(), IptError> {
        if opt == "!" {
            if self.neg {
                return Err(fail("multiple consecutive ! not allowed"));
            }
            self.neg = true;
            return Ok(());
        }
        // Bundled short options (`-nL`, `-vnL`).
        if opt.len() > 2 && opt.starts_with('-') && !opt.starts_with("--") {
            let letters: Vec<char> = opt[1..].chars().collect();
            if letters.iter().all(|c| "nvxLSZF".contains(*c)) {
                for c in letters {
                    self.option(&format!("-{c}"))?;
                }
                return Ok(());
            }
        }
        match opt {
            "-A" | "--append" => {
                let c = self.next_arg(opt)?;
                self.set_cmd(Cmd::Append, vec![c])
            }
            "-C" | "--check" => {
                let c = self.next_arg(opt)?;
                self.set_cmd(Cmd::Check, vec![c])
            }
            "-D" | "--delete" => {
                let mut w = vec![self.next_arg(opt)?];
                w.extend(self.optional_word());
                self.set_cmd(Cmd::Delete, w)
            }
            "-I" | "--insert" => {
                let mut w = vec![self.next_arg(opt)?];
                if let Some(n) = self.argv.get(self.i) {
                    if n.parse::<usize>().is_ok() {
                        w.push(n.clone());
                        self.i += 1;
                    }
                }
                self.set_cmd(Cmd::Insert, w)
            }
            "-R" | "--replace" => {
                let c = self.next_arg(opt)?;
                let n = self.next_arg(opt)?;
                self.set_cmd(Cmd::Replace, vec![c, n])
            }
            "-L" | "--list" => {
                let w = self.optional_word().into_iter().collect();
                self.set_cmd(Cmd::List, w)
            }
            "-S" | "--list-rules" => {
                let mut w: Vec<String> = self.optional_word().into_iter().collect();
                if !w.is_empty() {
                    w.extend(self.optional_word());
                }
                self.set_cmd(Cmd::ListRules, w)
            }
            "-F" | "--flush" => {
                let w = self.optional_word().into_iter().collect();
                self.set_cmd(Cmd::Flush, w)
            }
            "-Z" | "--zero" => {
                let mut w: Vec<String> = self.optional_word().into_iter().collect();
                if !w.is_empty() {
                    w.extend(self.optional_word());
                }
                // -L -Z: list then zero; UVS lists (the zero is separate).
                if matches!(self.cmd, Some((Cmd::List, _))) {
                    return Ok(());
                }
                self.set_cmd(Cmd::Zero, w)
            }
            "-N" | "--new-chain" | "--new" => {
                let c = self.next_arg(opt)?;
                self.set_cmd(Cmd::NewChain, vec![c])
            }
            "-X" | "--delete-chain" => {
                let w = self.optional_word().into_iter().collect();
                self.set_cmd(Cmd::DeleteChain, w)
            }
            "-P" | "--policy" => {
                let c = self.next_arg(opt)?;
                let p = self.next_arg(opt)?;
                self.set_cmd(Cmd::Policy, vec![c, p])
            }
            "-E" | "--rename-chain" => {
                let c = self.next_arg(opt)?;
                let n = self.next_arg(opt)?;
                self.set_cmd(Cmd::Rename, vec![c, n])
            }
            "-h" | "--help" => {
                self.cmd = None;
                self.i = self.argv.len();
                self.list.chain = Some("\0help".into());
                Ok(())
            }
            "-V" | "--version" => {
                self.i = self.argv.len();
                self.list.chain = Some("\0version".into());
                Ok(())
            }
            "-t" | "--table" => {
                self.no_neg(opt)?;
                if self.restore {
                    return Err(fail(
                        "The -t option (seen in this context) cannot be used in iptables-restore.",
                    ));
                }
                let t = self.next_arg(opt)?;
                if self.table.is_some() {
                    return Err(fail(
                        "The -t option (seen in this context) cannot be used multiple times",
                    ));
                }
                self.table = Some(Table::from_name(&t).ok_or(IptError::NoTable(t))?);
                Ok(())
            }
            "-p" | "--protocol" => {
                let neg = self.take_neg();
                let v = self.next_arg(opt)?;
                if self.rule.proto.is_some() {
                    return Err(fail("multiple -p flags not allowed"));
                }
                let p = protocol(&v, self.family)?;
                self.rule.proto = Some(Neg { neg, v: p });
                Ok(())
            }
            "-s" | "--source" | "--src" => {
                let neg = self.take_neg();
                let v = self.next_arg(opt)?;
                if self.rule.src.is_some() {
                    return Err(fail("multiple -s flags not allowed"));
                }
                self.rule.src = Some(Neg {
                    neg,
                    v: network(&v, self.family)?,
                });
                Ok(())
            }
            "-d" | "--destination" | "--dst" => {
                let neg = self.take_neg();
                let v = self.next_arg(opt)?;
                if self.rule.dst.is_some() {
                    return Err(fail("multiple -d flags not allowed"));
                }
                self.rule.dst = Some(Neg {
                    neg,
                    v: network(&v, self.family)?,
                });
                Ok(())
            }
            "-i" | "--in-interface" => {
                let neg = self.take_neg();
                let v = self.next_arg(opt)?;
                if self.rule.in_if.is_some() {
                    return Err(fail("multiple -i flags not allowed"));
                }
                check_interface(&v)?;
                self.rule.in_if = Some(Neg { neg, v });
                Ok(())
            }
            "-o" | "--out-interface" => {
                let neg = self.take_neg();
                let v = self.next_arg(opt)?;
                if self.rule.out_if.is_some() {
                    return Err(fail("multiple -o flags not allowed"));
                }
                check_interface(&v)?;
                self.rule.out_if = Some(Neg { neg, v });
                Ok(())
            }
            "-j" | "--jump" => {
                self.no_neg(opt)?;
                let t = self.next_arg(opt)?;
                if self.target.is_some() {
                    return Err(fail("multiple -j flags not allowed"));
                }
                self.target = Some(t);
                Ok(())
            }
            "-m" | "--match" => {
                self.no_neg(opt)?;
                let m = self.next_arg(opt)?;
                let m = if m == "state" {
                    "conntrack".to_string()
                } else {
                    m
                };
                if !KNOWN_MATCHES.contains(&m.as_str()) {
                    return Err(fail(format!(
                        "Couldn't load match `{m}':No such file or directory"
                    )));
                }
                self.start_match(&m)
            }
            "-n" | "--numeric" => {
                self.list.numeric = true;
                Ok(())
            }
            "-v" | "--verbose" => {
                self.list.verbose = true;
                Ok(())
            }
            "-x" | "--exact" => {
                self.list.exact = true;
                Ok(())
            }
            "--line-numbers" => {
                self.list.line_numbers = true;
                Ok(())
            }
            "-c" | "--set-counters" => {
                let p = self.next_arg(opt)?;
                let b = self.next_arg(opt)?;
                let pkts = p
                    .parse()
                    .map_err(|_| fail(format!("packet counter `{p}' invalid")))?;
                let bytes = b
                    .parse()
                    .map_err(|_| fail(format!("byte counter `{b}' invalid")))?;
                self.counters = Some((pkts, bytes));
                Ok(())
            }
            "-w" | "--wait" | "-W" | "--wait-interval" => {
                // No lock to wait for: the daemon serialises changes.
                if self
                    .argv
                    .get(self.i)
                    .is_some_and(|a| a.parse::<u64>().is_ok())
                {
                    self.i += 1;
                }
                Ok(())
            }
            "-4" | "--ipv4" | "-6" | "--ipv6" => Ok(()),
            o if o.starts_with("--") => self.extension_option(o),
            o => Err(fail(format!("unknown option \"{o}\""))),
        }
    }

    /// Loads a match: its options become valid from here on.
    fn start_match(&mut self, m: &str) -> Result<(), IptError> {
        self.loaded.push(m.to_string());
        let new = match m {
            "tcp" | "udp" | "sctp" => Match::Ports {
                proto: protocol(m, self.family)?,
                sport: None,
                dport: None,
            },
            "multiport" => Match::Multiport {
                dir: PortDir::Dst,
                neg: false,
                ports: Vec::new(),
            },
            "mark" => Match::Mark {
                neg: false,
                value: 0,
                mask: 0,
            },
            "set" => Match::Set {
                neg: false,
                name: String::new(),
                src: Vec::new(),
                return_nomatch: false,
            },
            "comment" => Match::Comment(String::new()),
            "conntrack" => Match::Conntrack {
                neg: false,
                states: 0,
            },
            _ => Match::AddrTypeLocal { neg: false },
        };
        self.rule.matches.push(new);
        Ok(())
    }

    /// An option of a loaded match or of the target.
    fn extension_option(&mut self, o: &str) -> Result<(), IptError> {
        if let Some(t) = &self.target {
            if target_options(t).contains(&o) {
                let neg = self.take_neg();
                let takes = !matches!(o, "--random" | "--random-fully" | "--persistent");
                let args = if takes {
                    vec![self.next_arg(o)?]
                } else {
                    vec![]
                };
                self.target_opts.push((o.to_string(), args, neg));
                return Ok(());
            }
        }
        // The most recent match that knows the option (iptables tries the
        // loaded matches; `-p tcp` loads tcp implicitly).
        let idx = self
            .rule
            .matches
            .iter()
            .rposition(|m| match_options(match_name(m)).contains(&o));
        let idx = match idx {
            Some(i) => i,
            None => {
                let implicit = self.rule.proto.as_ref().and_then(|p| match p.v {
                    6 => Some("tcp"),
                    17 => Some("udp"),
                    132 => Some("sctp"),
                    _ => None,
                });
                match implicit {
                    Some(m) if !p_neg(&self.rule) && match_options(m).contains(&o) => {
                        self.start_match(m)?;
                        self.rule.matches.len() - 1
                    }
                    _ => return Err(fail(format!("unknown option \"{o}\""))),
                }
            }
        };
        let neg = self.take_neg();
        let family = self.family;
        match o {
            "--sport" | "--source-port" | "--dport" | "--destination-port" => {
                let v = port_range(&self.next_arg(o)?)?;
                let Match::Ports { sport, dport, .. } = &mut self.rule.matches[idx] else {
                    unreachable!("index of a port match")
                };
                let slot = if o.contains('d') && !o.contains("source") {
                    dport
                } else {
                    sport
                };
                if slot.is_some() {
                    return Err(fail(format!("multiple {o} flags not allowed")));
                }
                *slot = Some(Neg { neg, v });
            }
            "--sports" | "--source-ports" | "--dports" | "--destination-ports" | "--ports" => {
                let list = self.next_arg(o)?;
                let mut ports = Vec::new();
                for p in list.split(',') {
                    ports.push(port_range(p)?);
                }
                if ports.len() > 15 {
                    return Err(fail("too many ports specified"));
                }
                let Match::Multiport {
                    dir,
                    neg: n,
                    ports: ps,
                } = &mut self.rule.matches[idx]
                else {
                    unreachable!("index of a multiport match")
                };
                *dir = match o {
                    "--sports" | "--source-ports" => PortDir::Src,
                    "--ports" => PortDir::Both,
                    _ => PortDir::Dst,
                };
                *n = neg;
                *ps = ports;
            }
            "--mark" => {
                let v = self.next_arg(o)?;
                let (value, mask) =
                    value_mask(&v).ok_or_else(|| fail(format!("Bad mark value \"{v}\"")))?;
                self.rule.matches[idx] = Match::Mark { neg, value, mask };
            }
            "--match-set" | "--set" => {
                let name = self.next_arg(o)?;
                let flags = self.next_arg(o)?;
                let mut src = Vec::new();
                for f in flags.split(',') {
                    src.push(match f {
                        "src" => true,
                        "dst" => false,
                        _ => {
                            return Err(fail(
                                "You must specify (the comma separated list of) 'src' or 'dst'.",
                            ))
                        }
                    });
                }
                if src.len() > 6 {
                    return Err(fail("Can't be more src/dst options than 6."));
                }
                if name.len() > 31 {
                    return Err(fail(format!(
                        "setname `{name}' too long, max 31 characters."
                    )));
                }
                if let Match::Set {
                    neg: n,
                    name: nm,
                    src: s,
                    ..
                } = &mut self.rule.matches[idx]
                {
                    *n = neg;
                    *nm = name;
                    *s = src;
                }
            }
            "--return-nomatch" => {
                if let Match::Set { return_nomatch, .. } = &mut self.rule.matches[idx] {
                    *return_nomatch = true;
                }
            }
            "--comment" => {
                let c = self.next_arg(o)?;
                if c.len() > 255 {
                    return Err(fail("COMMENT must be shorter than 256 characters"));
                }
                self.rule.matches[idx] = Match::Comment(c);
            }
            "--ctstate" | "--state" => {
                let v = self.next_arg(o)?;
                let mut states = 0;
                for s in v.split(',') {
                    let bit = ctstate::NAMES
                        .iter()
                        .find(|(_, n)| n.eq_ignore_ascii_case(s))
                        .map(|(b, _)| *b)
                        .ok_or_else(|| fail(format!("Bad ctstate \"{s}\"")))?;
                    states |= bit;
                }
                self.rule.matches[idx] = Match::Conntrack { neg, states };
            }
            "--dst-type" => {
                let v = self.next_arg(o)?;
                if v != "LOCAL" {
                    return Err(IptError::unsupported(format!(
                        "addrtype: UVS matches --dst-type LOCAL only, not `{v}'"
                    )));
                }
                self.rule.matches[idx] = Match::AddrTypeLocal { neg };
            }
            _ => return Err(fail(format!("unknown option \"{o}\""))),
        }
        let _ = family;
        Ok(())
    }

    fn build_target(&mut self) -> Result<Target, IptError> {
        let Some(name) = self.target.clone() else {
            return Ok(Target::None);
        };
        let opt = |k: &str| {
            self.target_opts
                .iter()
                .find(|(o, _, _)| o == k)
                .map(|(_, a, _)| a.first().cloned().unwrap_or_default())
        };
        let has = |k: &str| self.target_opts.iter().any(|(o, _, _)| o == k);
        Ok(match name.as_str() {
            "ACCEPT" => Target::Accept,
            "DROP" => Target::Drop,
            "RETURN" => Target::Return,
            "REJECT" => {
                if let Some(w) = opt("--reject-with") {
                    let ok = match self.family {
                        Family::V4 => w == "icmp-port-unreachable" || w == "port-unreach",
                        Family::V6 => w == "icmp6-port-unreachable" || w == "port-unreach",
                    };
                    if !ok {
                        return Err(IptError::unsupported(format!(
                            "REJECT: UVS answers with port unreachable only, not `{w}'"
                        )));
                    }
                }
                Target::Reject
            }
            "MARK" => {
                let forms = [
                    "--set-mark",
                    "--set-xmark",
                    "--or-mark",
                    "--and-mark",
                    "--xor-mark",
                ];
                let given: Vec<&(String, Vec<String>, bool)> = self
                    .target_opts
                    .iter()
                    .filter(|(o, _, _)| forms.contains(&o.as_str()))
                    .collect();
                let [(o, a, _)] = given.as_slice() else {
                    return Err(fail(
                        "MARK target: Parameter --set/and/or/xor-mark is required",
                    ));
                };
                let v = a[0].clone();
                let bad = || fail(format!("MARK: Bad mark value \"{v}\""));
                let (value, mask) = match o.as_str() {
                    "--set-xmark" => value_mask(&v).ok_or_else(bad)?,
                    "--set-mark" => {
                        let (v, m) = value_mask(&v).ok_or_else(bad)?;
                        (v, m | v)
                    }
                    "--or-mark" => {
                        let b = parse_u32(&v).ok_or_else(bad)?;
                        (b, b)
                    }
                    "--and-mark" => {
                        let b = parse_u32(&v).ok_or_else(bad)?;
                        (0, !b)
                    }
                    _ => (parse_u32(&v).ok_or_else(bad)?, 0),
                };
                Target::Mark { value, mask }
            }
            "SNAT" => {
                let to = opt("--to-source")
                    .or_else(|| opt("--to"))
                    .ok_or_else(|| fail("You must specify --to-source"))?;
                dataplane::snat::ToSource::parse(&to).map_err(|e| fail(e.to_string()))?;
                Target::Snat {
                    to,
                    random: has("--random"),
                    random_fully: has("--random-fully"),
                    persistent: has("--persistent"),
                }
            }
            "MASQUERADE" => Target::Masquerade {
                to_ports: opt("--to-ports"),
                random: has("--random"),
                random_fully: has("--random-fully"),
            },
            n if n.starts_with('-') || n.is_empty() => {
                return Err(fail(format!("Invalid target name `{n}'")))
            }
            n if n.len() > 28 => {
                return Err(fail(format!("Invalid target name `{n}' (28 chars max)")))
            }
            n if n
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !n.is_empty()
                && matches!(n, "DNAT" | "LOG" | "CT" | "NOTRACK" | "TPROXY" | "SET") =>
            {
                return Err(IptError::unsupported(format!(
                    "target `{n}' is not supported by UVS"
                )))
            }
            n => Target::Jump(n.to_string()),
        })
    }

    fn finish(mut self) -> Result<IptCommand, IptError> {
        match self.list.chain.as_deref() {
            Some("\0help") => return Ok(IptCommand::Help),
            Some("\0version") => return Ok(IptCommand::Version),
            _ => {}
        }
        if self.neg {
            return Err(fail("! not allowed before end of options"));
        }
        let (cmd, words) = self
            .cmd
            .clone()
            .ok_or_else(|| fail("no command specified"))?;
        let table = self.table.unwrap_or(Table::Filter);
        // Port options need their protocol, and `-p` must be positive.
        for m in &self.rule.matches {
            if let Match::Ports { proto, .. } = m {
                if self.rule.proto.as_ref().map(|p| (p.v, p.neg)) != Some((*proto, false)) {
                    // The kernel's tcp/udp match checks the rule's protocol.
                    return Err(IptError::Kernel(dataplane::rules::RuleError::Invalid));
                }
            }
            if let Match::Multiport { ports, .. } = m {
                if ports.is_empty() {
                    return Err(fail("multiport expects an option"));
                }
                if !matches!(
                    self.rule.proto.as_ref().map(|p| (p.v, p.neg)),
                    Some((6 | 17 | 132 | 136, false))
                ) {
                    return Err(fail(
                        "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'",
                    ));
                }
            }
            if let Match::Set { name, .. } = m {
                if name.is_empty() {
                    return Err(fail("You must specify `--match-set' with proper arguments"));
                }
            }
            if let Match::Conntrack { states: 0, .. } = m {
                return Err(fail("conntrack: At least one option is required"));
            }
            if let Match::Comment(c) = m {
                if c.is_empty() {
                    return Err(fail("COMMENT match: You must specify `--comment'"));
                }
            }
        }
        let target = self.build_target()?;
        let needs_ports = match &target {
            Target::Snat { to, .. } => to.contains(':'),
            Target::Masquerade { to_ports, .. } => to_ports.is_some(),
            _ => false,
        };
        if needs_ports
            && !matches!(
                self.rule.proto.as_ref().map(|p| (p.v, p.neg)),
                Some((6 | 17 | 132, false))
            )
        {
            return Err(fail("Need TCP, UDP, SCTP or DCCP with port specification"));
        }
        self.rule.target = target;
        let rule_given = self.rule != Rule::default();
        let rule = std::mem::take(&mut self.rule);
        let counters = self.counters;
        let num = |s: &str, what: &str| -> Result<usize, IptError> {
            s.parse::<usize>()
                .map_err(|_| fail(format!("Invalid rule number `{s}'")))
                .and_then(|n| {
                    if n == 0 && what != "insert" {
                        Err(fail(format!("Invalid rule number `{s}'")))
                    } else {
                        Ok(n)
                    }
                })
        };
        let chain = words.first().cloned();
        // iptables' own refusal (xshared.c): a packet coming in has no
        // leaving interface yet, one going out no receiving one.
        if matches!(
            cmd,
            Cmd::Append | Cmd::Check | Cmd::Insert | Cmd::Replace | Cmd::Delete
        ) {
            let c = chain.as_deref().unwrap_or_default();
            let wrong = match c {
                "PREROUTING" | "INPUT" if rule.out_if.is_some() => Some('o'),
                "POSTROUTING" | "OUTPUT" if rule.in_if.is_some() => Some('i'),
                _ => None,
            };
            if let Some(letter) = wrong {
                return Err(fail(format!("Can't use -{letter} with {c}\n")));
            }
        }
        let only_cmd = |c: Cmd| -> Result<(), IptError> {
            if rule_given {
                return Err(fail(format!(
                    "Illegal option `-{}' with this command",
                    if c == Cmd::List { 'L' } else { c.letter() }
                )));
            }
            Ok(())
        };
        let op = |op| Ok(IptCommand::Op { table, op });
        match cmd {
            Cmd::Append => op(RuleOp::Append {
                chain: chain.unwrap_or_default(),
                rule,
                counters,
            }),
            Cmd::Check => Ok(IptCommand::Check {
                table,
                chain: chain.unwrap_or_default(),
                rule,
            }),
            Cmd::Insert => op(RuleOp::Insert {
                chain: chain.unwrap_or_default(),
                num: match words.get(1) {
                    Some(n) => num(n, "insert")?.max(1),
                    None => 1,
                },
                rule,
                counters,
            }),
            Cmd::Delete => match words.get(1) {
                Some(n) => {
                    only_cmd(cmd)?;
                    op(RuleOp::DeleteNum {
                        chain: chain.unwrap_or_default(),
                        num: num(n, "delete")?,
                    })
                }
                None => op(RuleOp::Delete {
                    chain: chain.unwrap_or_default(),
                    rule,
                }),
            },
            Cmd::Replace => op(RuleOp::Replace {
                chain: chain.unwrap_or_default(),
                num: num(&words[1], "replace")?,
                rule,
                counters,
            }),
            Cmd::List => {
                only_cmd(cmd)?;
                self.list.chain = chain;
                Ok(IptCommand::List {
                    table,
                    opts: self.list,
                })
            }
            Cmd::ListRules => {
                only_cmd(cmd)?;
                Ok(IptCommand::ListRules {
                    table,
                    chain,
                    num: words.get(1).map(|n| num(n, "list")).transpose()?,
                    counters: self.list.verbose,
                })
            }
            Cmd::Flush => {
                only_cmd(cmd)?;
                op(RuleOp::Flush { chain })
            }
            Cmd::Zero => {
                only_cmd(cmd)?;
                op(RuleOp::Zero {
                    chain,
                    num: words.get(1).map(|n| num(n, "zero")).transpose()?,
                })
            }
            Cmd::NewChain => {
                only_cmd(cmd)?;
                let c = chain.unwrap_or_default();
                check_chain_name(&c)?;
                op(RuleOp::NewChain { chain: c })
            }
            Cmd::DeleteChain => {
                only_cmd(cmd)?;
                op(RuleOp::DeleteChain { chain })
            }
            Cmd::Policy => {
                only_cmd(cmd)?;
                let policy = match words[1].as_str() {
                    "ACCEPT" => Policy::Accept,
                    "DROP" => Policy::Drop,
                    _ => return Err(IptError::BadPolicy),
                };
                op(RuleOp::SetPolicy {
                    chain: chain.unwrap_or_default(),
                    policy,
                    counters,
                })
            }
            Cmd::Rename => {
                only_cmd(cmd)?;
                check_chain_name(&words[1])?;
                op(RuleOp::RenameChain {
                    chain: chain.unwrap_or_default(),
                    to: words[1].clone(),
                })
            }
        }
    }
}

fn p_neg(r: &Rule) -> bool {
    r.proto.as_ref().is_some_and(|p| p.neg)
}

/// The `-m` name of a match (for option lookup and saving).
pub fn match_name(m: &Match) -> &'static str {
    match m {
        Match::Ports { proto: 17, .. } => "udp",
        Match::Ports { proto: 132, .. } => "sctp",
        Match::Ports { .. } => "tcp",
        Match::Multiport { .. } => "multiport",
        Match::Mark { .. } => "mark",
        Match::Set { .. } => "set",
        Match::Comment(_) => "comment",
        Match::Conntrack { .. } => "conntrack",
        Match::AddrTypeLocal { .. } => "addrtype",
    }
}

/// iptables' check on an interface name (`xtables_parse_interface`): at
/// most 15 bytes (IFNAMSIZ less the NUL).
fn check_interface(name: &str) -> Result<(), IptError> {
    if name.len() > 15 {
        return Err(fail(format!(
            "interface name `{name}' must be shorter than IFNAMSIZ (15)"
        )));
    }
    Ok(())
}

/// iptables' checks on a new chain name.
fn check_chain_name(c: &str) -> Result<(), IptError> {
    if c.len() > 28 {
        return Err(fail(format!(
            "chain name `{c}' too long (must be under 29 chars)"
        )));
    }
    if c.starts_with('-') || c.starts_with('!') || c.is_empty() {
        return Err(fail(format!(
            "chain name not allowed to start with `{}'",
            c.chars().next().unwrap_or('-')
        )));
    }
    if matches!(
        c,
        "ACCEPT" | "DROP" | "QUEUE" | "RETURN" | "REJECT" | "MARK" | "SNAT" | "MASQUERADE"
    ) {
        return Err(fail("chain name may not clash with target name"));
    }
    if c.chars().any(super::is_c_space) {
        return Err(fail(format!("Invalid chain name `{c}'")));
    }
    Ok(())
}
