//! ipset 7.17's command line, executed against the director's sets.
//!
//! Why in the daemon: as with ipvsadm, `uvsset` sends the words as typed
//! and the daemon parses them, because an element's syntax depends on the
//! type of the set it goes into (`198.18.0.0/24` is one element of a
//! `hash:net` and 256 of a `hash:ip`), which only the daemon knows.
//! The grammar produces the model's set commands ([`Parsed`]) directly:
//! create, destroy, flush, rename and swap as the [`SetOp`] itself; add,
//! del and test as a [`TypedAdt`], which becomes its `SetOp` (or test)
//! against the set's header when it runs ([`TypedAdt::resolve`] with this
//! grammar's entry syntax, so every message stays ipset's).
//!
//! Messages and exit codes are libipset's: an error prints
//! `ipset v7.17: MESSAGE` on stderr; a bad command line (exit 2) adds
//! "Try `ipset help' for more information."; anything the "kernel" refuses
//! exits 1; `test` says `Warning: X is in set S.` (exit 0) or
//! `X is NOT in set S.` (exit 1). `-quiet` silences all of these.
//! A restore runs line by line and stops at the first error, printing
//! `Error in line N: MESSAGE`; earlier lines stay done, as with ipset.
//!
//! Not implemented (refused with a message): `-output xml`, interactive
//! mode (`ipset -`), the `skbinfo` extension and `skb*` options, name
//! resolution (`-resolve` is accepted and does nothing), service names in
//! place of port numbers.

mod elem;
mod list;

#[cfg(test)]
mod tests;

use dataplane::config::ConfigStore;
use dataplane::sets::clock;
use uvs_model::sets::{
    AddOpts, Adt, Cmd, Entry, Family, Header, Parsed, SetError, SetKind, SetOp, TypedAdt, MAX_NAME,
};

use crate::proto::Response;

pub use elem::{elem_text, parse_elems};
pub use list::header_text;

/// The ipset release whose behaviour UVS follows.
pub const VERSION: &str = "7.17";
/// ipset's netlink protocol version, shown by `ipset version`.
pub const PROTOCOL: u32 = 7;

/// Largest timeout ipset accepts (seconds).
const MAX_TIMEOUT: u64 = 2_147_483;

/// A refused command: exit status and message (without the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub code: i32,
    pub message: String,
}

impl Fail {
    /// A session (kernel or syntax) error: exit 1.
    pub fn session(message: String) -> Fail {
        Fail { code: 1, message }
    }

    /// A command-line problem: exit 2, with the help hint.
    pub fn param(message: String) -> Fail {
        Fail { code: 2, message }
    }

    fn full() -> Fail {
        Fail::session(SetError::HashFull.to_string())
    }

    /// What ipset prints on stderr for this failure.
    pub fn render(&self, line: Option<usize>) -> String {
        let at = line.map_or_else(String::new, |n| format!("Error in line {n}: "));
        let mut s = format!("ipset v{VERSION}: {at}{}\n", self.message);
        if self.code == 2 {
            s.push_str("Try `ipset help' for more information.\n");
        }
        s
    }
}

impl From<SetError> for Fail {
    fn from(e: SetError) -> Fail {
        Fail::session(e.to_string())
    }
}

/// Output mode (`-output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Default,
    Plain,
    Save,
}

/// The environment options (ipset calls them "envopts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Session {
    pub exist: bool,
    pub quiet: bool,
    pub sorted: bool,
    pub names: bool,
    pub terse: bool,
    pub output: Output,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// create, add, del, test, destroy, flush, rename, swap: the model's
    /// set command.
    Set(Parsed),
    /// A `create` whose type or options ipset refuses. Reported when the
    /// command runs, as a refusal of the set store is (`-q` silences it),
    /// not as a command-line error (an `Err` of [`parse`], always printed).
    Refused(Fail),
    List(Option<String>),
    Save(Option<String>),
    Restore,
    Help(Option<String>),
    Version,
    Quit,
}

/// How many arguments a command takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    None,
    Optional,
    Two,
}

/// ipset's commands: canonical name, aliases, arity. Order matters: a
/// prefix matches the first command it is a prefix of (`d` is `del`).
const COMMANDS: &[(&str, &[&str], Arity)] = &[
    ("create", &["create", "new", "-N"], Arity::Two),
    ("add", &["add", "-A"], Arity::Two),
    ("del", &["del", "-D"], Arity::Two),
    ("test", &["test", "-T"], Arity::Two),
    ("destroy", &["destroy", "x", "-X"], Arity::Optional),
    ("list", &["list", "-L"], Arity::Optional),
    ("save", &["save", "-S"], Arity::Optional),
    ("restore", &["restore", "-R"], Arity::None),
    ("flush", &["flush", "-F"], Arity::Optional),
    ("rename", &["rename", "e", "-E"], Arity::Two),
    ("swap", &["swap", "w", "-W"], Arity::Two),
    ("help", &["help", "-h", "-H"], Arity::Optional),
    ("version", &["version", "-v", "-V"], Arity::None),
    ("quit", &["quit"], Arity::None),
];

/// ipset_match_cmd: `arg` (two leading dashes ignored) is a prefix of one
/// of the names.
fn match_cmd(arg: &str, names: &[&str]) -> bool {
    let a = arg.strip_prefix("--").unwrap_or(arg);
    if a.is_empty() || arg == "-" {
        return false;
    }
    names.iter().any(|n| n.starts_with(a))
}

/// ipset_match_envopt: one of two leading dashes is ignored.
fn envopt(arg: &str) -> &str {
    if arg.starts_with("--") {
        &arg[1..]
    } else {
        arg
    }
}

/// Parses a command line (without the program name).
pub fn parse(argv: &[String]) -> Result<(Session, Command), Fail> {
    parse_line(argv.to_vec(), false, Session::default())
}

/// Parses one line's words (taken by value: a restore parses a million).
fn parse_line(
    argv: Vec<String>,
    restoring: bool,
    base: Session,
) -> Result<(Session, Command), Fail> {
    let mut s = base;
    let mut rest: Vec<String> = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match envopt(&a) {
            "-!" | "-exist" => s.exist = true,
            "-q" | "-quiet" => s.quiet = true,
            "-s" | "-sorted" => s.sorted = true,
            "-r" | "-resolve" => {}
            "-n" | "-name" => s.names = true,
            "-t" | "-terse" => s.terse = true,
            "-o" | "-output" => {
                let v = it
                    .next()
                    .ok_or_else(|| Fail::param("Missing mandatory argument to option -o".into()))?;
                s.output = match v.as_str() {
                    "plain" => Output::Plain,
                    "save" => Output::Save,
                    "xml" => {
                        return Err(Fail::session(
                            "Syntax error: output mode 'xml' is not supported by UVS".into(),
                        ))
                    }
                    _ => {
                        return Err(Fail::session(format!(
                            "Syntax error: unknown output mode '{v}'"
                        )))
                    }
                };
            }
            "-f" | "-file" => {
                return Err(Fail::param(
                    "-file option cannot be used when full io is activated".into(),
                ))
            }
            _ => rest.push(a),
        }
    }
    let Some(first) = rest.first() else {
        return Err(Fail::param("No command specified.".into()));
    };
    let Some(&(name, _, arity)) = COMMANDS.iter().find(|(_, n, _)| match_cmd(first, n)) else {
        if first == "-" {
            return Err(Fail::session(
                "Interactive mode is not supported by UVS".into(),
            ));
        }
        return Err(Fail::param(format!(
            "No command specified: unknown argument {first}"
        )));
    };
    if restoring && matches!(name, "restore" | "version" | "help" | "list") {
        return Err(Fail::param(format!(
            "Command `{name}' is invalid in restore mode."
        )));
    }
    let mut args = rest.into_iter().skip(1);
    let mut arg0 = None;
    let mut arg1 = None;
    match arity {
        Arity::None => {}
        Arity::Optional => arg0 = args.next(),
        Arity::Two => {
            arg0 = Some(args.next().ok_or_else(|| {
                Fail::param(format!("Missing mandatory argument to command {name}"))
            })?);
            arg1 = Some(args.next().ok_or_else(|| {
                Fail::param(format!(
                    "Missing second mandatory argument to command {name}"
                ))
            })?);
        }
    }
    let extra: Vec<String> = args.collect();
    let takes_options = matches!(name, "create" | "add" | "del" | "test");
    if !takes_options {
        if let Some(x) = extra.first() {
            return Err(Fail::param(format!("Unknown argument {x}")));
        }
    }
    if name != "help" {
        if let Some(n) = &arg0 {
            check_name(n)?;
        }
    }
    if let (Some(n), "rename" | "swap") = (&arg1, name) {
        check_name(n)?;
    }
    let (a0, a1) = (arg0.unwrap_or_default(), arg1.unwrap_or_default());
    let opt = |s: String| (!s.is_empty()).then_some(s);
    let change = |op: SetOp| Command::Set(Parsed::change(op));
    let cmd = match name {
        "create" => match parse_create(&a1, &extra) {
            Ok(header) => change(SetOp::Create { name: a0, header }),
            Err(f) => Command::Refused(f),
        },
        "add" | "del" | "test" => Command::Set(Parsed::Typed(TypedAdt {
            adt: match name {
                "add" => Adt::Add,
                "del" => Adt::Del,
                _ => Adt::Test,
            },
            name: a0,
            text: a1,
            args: extra,
        })),
        "destroy" => change(SetOp::Destroy(opt(a0))),
        "list" => Command::List(opt(a0)),
        "save" => Command::Save(opt(a0)),
        "flush" => change(SetOp::Flush(opt(a0))),
        "rename" => change(SetOp::Rename(a0, a1)),
        "swap" => change(SetOp::Swap(a0, a1)),
        "restore" => Command::Restore,
        "help" => Command::Help(opt(a0)),
        "version" => Command::Version,
        _ => Command::Quit,
    };
    Ok((s, cmd))
}

fn check_name(n: &str) -> Result<(), Fail> {
    if n.len() > MAX_NAME {
        return Err(Fail::session(format!(
            "Syntax error: setname '{n}' is longer than {MAX_NAME} characters"
        )));
    }
    Ok(())
}

fn number(s: &str, min: u64, max: u64) -> Result<u64, Fail> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse::<u64>()
    }
    .map_err(|_| Fail::session(format!("Syntax error: '{s}' is invalid as number")))?;
    if v < min || v > max {
        return Err(Fail::session(format!(
            "Syntax error: '{s}' is out of range {min}-{max}"
        )));
    }
    Ok(v)
}

fn timeout(s: &str) -> Result<u32, Fail> {
    let v = number(s, 0, u64::from(u32::MAX))?;
    if v > MAX_TIMEOUT {
        return Err(Fail::session(format!(
            "Syntax error: timeout value is too large, maximal value is {MAX_TIMEOUT}"
        )));
    }
    Ok(v as u32)
}

/// A fresh hash seed for `initval` (any value does: it only spreads the
/// kernel's buckets, and UVS's hash is seeded separately).
fn random_initval() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(clock::now()));
    h.finish() as u32
}

/// Parses `create NAME TYPE OPTIONS`.
pub fn parse_create(kind: &str, args: &[String]) -> Result<Header, Fail> {
    let kind = SetKind::parse(kind)
        .ok_or_else(|| Fail::session(format!("Syntax error: typename '{kind}' is unknown")))?;
    let mut h = Header::new(kind);
    h.initval = random_initval();
    let mut it = args.iter();
    let mut range = false;
    while let Some(a) = it.next() {
        let o = a.strip_prefix("--").unwrap_or(a);
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| Fail::param(format!("Missing mandatory argument of option `{o}'")))
        };
        let hash = kind.is_hash();
        match o {
            "family" if hash => {
                h.family = match value()? {
                    "inet" | "ipv4" | "-4" => Family::Inet,
                    "inet6" | "ipv6" | "-6" => Family::Inet6,
                    v => {
                        return Err(Fail::session(format!(
                            "Syntax error: unknown INET family {v}"
                        )))
                    }
                }
            }
            "-4" if hash => h.family = Family::Inet,
            "-6" if hash => h.family = Family::Inet6,
            "hashsize" if hash => {
                let v = number(value()?, 1, u64::from(u32::MAX))? as u32;
                h.hashsize = v.max(64).checked_next_power_of_two().unwrap_or(1 << 31);
            }
            "maxelem" if hash => h.maxelem = number(value()?, 1, u64::from(u32::MAX))? as u32,
            "bucketsize" if hash => {
                let v = number(value()?, 2, 255)? as u32;
                h.bucketsize = (v + (v & 1)).min(12);
            }
            "initval" if hash => h.initval = number(value()?, 0, u64::from(u32::MAX))? as u32,
            "probes" | "resize" if hash => {
                value()?;
            }
            "forceadd" if hash => h.forceadd = true,
            "netmask" if kind == SetKind::HashIp => {
                let max = if h.family == Family::Inet { 32 } else { 128 };
                let v = number(value()?, 1, max)? as u8;
                h.netmask = Some(v);
            }
            "range" if kind == SetKind::BitmapPort => {
                let v = value()?;
                let v = v.split_once(':').map_or(v, |(_, p)| p);
                let (a, b) = v.split_once('-').ok_or_else(|| {
                    Fail::session(format!("Syntax error: cannot parse '{v}' as a port range"))
                })?;
                let a = number(a, 0, 65535)? as u16;
                let b = number(b, 0, 65535)? as u16;
                h.range = (a.min(b), a.max(b));
                range = true;
            }
            "size" if kind == SetKind::ListSet => {
                number(value()?, 1, u64::from(u32::MAX))?;
                // Ignored by the kernel since 6.24; always shown as 8.
            }
            "timeout" => h.timeout = Some(timeout(value()?)?),
            "counters" => h.counters = true,
            "comment" => h.comment = true,
            "skbinfo" => {
                return Err(Fail::session(
                    "The skbinfo extension is not supported by UVS".into(),
                ))
            }
            _ => return Err(Fail::param(format!("Unknown argument: `{a}'"))),
        }
    }
    if kind == SetKind::BitmapPort && !range {
        return Err(Fail::param("Mandatory option `range' is missing".into()));
    }
    if h.netmask.is_some() && h.family == Family::Inet6 && h.netmask > Some(128) {
        return Err(Fail::session(
            "The value of the netmask parameter is invalid".into(),
        ));
    }
    Ok(h)
}

/// Parses the options after an add/del/test entry.
fn parse_adt_opts(
    cmd: Adt,
    h: &Header,
    args: &[String],
) -> Result<(AddOpts, Option<(bool, String)>), Fail> {
    let mut o = AddOpts::default();
    let mut at = None;
    let mut it = args.iter();
    let list = h.kind == SetKind::ListSet;
    while let Some(a) = it.next() {
        let name = a.strip_prefix("--").unwrap_or(a);
        let mut value = || {
            it.next().map(String::as_str).ok_or_else(|| {
                Fail::param(format!("Missing mandatory argument of option `{name}'"))
            })
        };
        match (name, cmd) {
            ("timeout", Adt::Add) => o.timeout = Some(timeout(value()?)?),
            ("nomatch", Adt::Add | Adt::Test) if h.kind.has_nomatch() => o.nomatch = true,
            ("packets", Adt::Add) => o.packets = Some(number(value()?, 0, u64::MAX)?),
            ("bytes", Adt::Add) => o.bytes = Some(number(value()?, 0, u64::MAX)?),
            ("comment", Adt::Add) => {
                let c = value()?;
                if c.contains('"') {
                    return Err(Fail::session(
                        "Syntax error: \" character is not permitted in comments".into(),
                    ));
                }
                if c.len() > 255 {
                    return Err(Fail::session(
                        "Syntax error: Comment is longer than the maximum allowed 255 characters"
                            .into(),
                    ));
                }
                o.comment = Some(c.to_string());
            }
            ("before" | "after", _) if list => {
                at = Some((name == "before", value()?.to_string()));
            }
            _ => return Err(Fail::param(format!("Unknown argument: `{a}'"))),
        }
    }
    Ok((o, at))
}

/// What executing a line did.
#[derive(Debug, Default)]
struct Done {
    stdout: String,
    stderr: String,
    /// The exit status of a successful command (`test` may say 1).
    code: i32,
    changed: bool,
}

/// Runs one ipset request against the director's store. Returns the
/// response and whether the sets changed (the caller publishes).
pub fn execute(store: &mut ConfigStore, argv: &[String], stdin: Option<&str>) -> (Response, bool) {
    let now = clock::refresh();
    execute_at(store, argv, stdin, now)
}

/// [`execute`] at second `now` of the sets' clock.
pub fn execute_at(
    store: &mut ConfigStore,
    argv: &[String],
    stdin: Option<&str>,
    now: u32,
) -> (Response, bool) {
    let (session, cmd) = match parse(argv) {
        Ok(p) => p,
        Err(f) => return (fail_response(&f, None, false), false),
    };
    if cmd == Command::Restore {
        return restore(store, session, stdin.unwrap_or(""), now);
    }
    match run(store, &session, cmd, now) {
        Ok(d) => (
            Response {
                code: d.code,
                stdout: d.stdout,
                stderr: d.stderr,
            },
            d.changed,
        ),
        Err(f) => (fail_response(&f, None, session.quiet), false),
    }
}

fn fail_response(f: &Fail, line: Option<usize>, quiet: bool) -> Response {
    Response::err(f.code, if quiet { String::new() } else { f.render(line) })
}

/// `ipset restore`: line by line, stopping at the first error; what ran
/// before it stays (ipset has no transaction).
fn restore(store: &mut ConfigStore, base: Session, text: &str, now: u32) -> (Response, bool) {
    let mut changed = false;
    let mut out = Response::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') || line.trim_end() == "COMMIT" {
            continue;
        }
        let r = split_line(line)
            .and_then(|words| parse_line(words, true, base))
            .and_then(|(s, cmd)| run(store, &s, cmd, now));
        match r {
            Ok(d) => {
                changed |= d.changed;
                out.stdout.push_str(&d.stdout);
                out.stderr.push_str(&d.stderr);
            }
            Err(f) => {
                let mut resp = fail_response(&f, Some(i + 1), base.quiet);
                resp.code = 1;
                resp.stdout = out.stdout;
                return (resp, changed);
            }
        }
    }
    (out, changed)
}

/// Splits a restore line into words the way ipset's build_argv does:
/// whitespace separates, double quotes group (and are dropped).
fn split_line(line: &str) -> Result<Vec<String>, Fail> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ' ' | '\t' | '\r' | '\n' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if quoted {
        return Err(Fail::param("Missing close quote!".into()));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// Runs one parsed command.
fn run(store: &mut ConfigStore, s: &Session, cmd: Command, now: u32) -> Result<Done, Fail> {
    let save_cmd = matches!(cmd, Command::Save(_));
    match cmd {
        Command::Set(p) => set_command(store, s, p, now),
        Command::Refused(f) => Err(f),
        Command::List(n) | Command::Save(n) => {
            let sets = store.sets();
            if let Some(name) = &n {
                if sets.get(name).is_none() {
                    return Err(SetError::NoSet.into());
                }
            }
            let sel = list::selection(sets, n.as_deref());
            let save = match s.output {
                Output::Save => true,
                Output::Plain => false,
                Output::Default => save_cmd,
            };
            let text = if save {
                list::save(sets, &sel, s.sorted, now)
            } else {
                let detail = if s.names {
                    list::Detail::Names
                } else if s.terse {
                    list::Detail::Terse
                } else {
                    list::Detail::Full
                };
                list::plain(sets, &sel, detail, s.sorted, now)
            };
            Ok(Done {
                stdout: text,
                ..Done::default()
            })
        }
        Command::Help(t) => help(t.as_deref()),
        Command::Version => Ok(Done {
            stdout: version_text(),
            ..Done::default()
        }),
        Command::Quit => Ok(Done::default()),
        Command::Restore => Err(Fail::param(
            "Command `restore' is invalid in restore mode.".into(),
        )),
    }
}

/// `ipset version`'s line.
pub fn version_text() -> String {
    format!("ipset v{VERSION}, protocol version: {PROTOCOL}\n")
}

/// Runs a set command: an element command is first read against its
/// set's header (the set must exist), then the change is applied or the
/// test answered.
fn set_command(store: &mut ConfigStore, s: &Session, p: Parsed, now: u32) -> Result<Done, Fail> {
    let (cmd, typed) = match p {
        Parsed::Ready(cmd) => (cmd, None),
        Parsed::Typed(t) => {
            let set = store.sets().get(&t.name).ok_or(SetError::NoSet)?;
            let room = (set.header.maxelem as usize)
                .saturating_sub(set.len())
                .max(1);
            let cmd = t.resolve(&set.header, |t, header| read_entry(t, header, room))?;
            (cmd, Some(t.text))
        }
    };
    match cmd {
        Cmd::Change(op) => {
            store.sets_mut().apply(&op, s.exist, now)?;
            Ok(Done {
                changed: true,
                ..Done::default()
            })
        }
        Cmd::Test {
            name,
            entry,
            nomatch,
        } => {
            let sets = store.sets();
            let found = sets.test(&name, &entry, nomatch, now)?;
            let header = &sets.get(&name).ok_or(SetError::NoSet)?.header;
            let shown = match &entry {
                Entry::Elems(e) => e
                    .first()
                    .map_or_else(|| typed.unwrap_or_default(), |e| elem_text(e, header)),
                Entry::Member { name, .. } => name.clone(),
            };
            let msg = if s.quiet {
                String::new()
            } else if found {
                format!("Warning: {shown} is in set {name}.\n")
            } else {
                format!("{shown} is NOT in set {name}.\n")
            };
            Ok(Done {
                stderr: msg,
                code: if found { 0 } else { 1 },
                ..Done::default()
            })
        }
    }
}

/// ipset's entry syntax for a set with `header`: the options after the
/// entry, then the entry itself (a member's name in a `list:set`, else
/// elements, ranges expanded; an add expands at most `room` of them).
fn read_entry(t: &TypedAdt, header: &Header, room: usize) -> Result<(Entry, AddOpts), Fail> {
    let (opts, at) = parse_adt_opts(t.adt, header, &t.args)?;
    let entry = if header.kind == SetKind::ListSet {
        Entry::Member {
            name: t.text.clone(),
            at,
        }
    } else {
        let limit = if t.adt == Adt::Add { room } else { 1 << 20 };
        Entry::Elems(parse_elems(&t.text, header, t.adt.name(), limit)?)
    };
    Ok((entry, opts))
}

fn help(kind: Option<&str>) -> Result<Done, Fail> {
    let mut out = format!("ipset v{VERSION}\n\nUsage: ipset [options] COMMAND\n\nCommands:\n");
    for (cmd, help) in [
        (
            "create",
            "SETNAME TYPENAME [type-specific-options]\n        Create a new set",
        ),
        ("add", "SETNAME ENTRY\n        Add entry to the named set"),
        (
            "del",
            "SETNAME ENTRY\n        Delete entry from the named set",
        ),
        ("test", "SETNAME ENTRY\n        Test entry in the named set"),
        (
            "destroy",
            "[SETNAME]\n        Destroy a named set or all sets",
        ),
        (
            "list",
            "[SETNAME]\n        List the entries of a named set or all sets",
        ),
        (
            "save",
            "[SETNAME]\n        Save the named set or all sets to stdout",
        ),
        ("restore", "\n        Restore a saved state"),
        ("flush", "[SETNAME]\n        Flush a named set or all sets"),
        ("rename", "FROM-SETNAME TO-SETNAME\n        Rename two sets"),
        (
            "swap",
            "FROM-SETNAME TO-SETNAME\n        Swap the contect of two existing sets",
        ),
        (
            "help",
            "[TYPENAME]\n        Print help, and settype specific help",
        ),
        ("version", "\n        Print version information"),
        ("quit", "\n        Quit interactive mode"),
    ] {
        out.push_str(&format!("{cmd} {help}\n"));
    }
    out.push_str(
        "\nOptions:\n\
-o plain|save|xml\n       Specify output mode for listing sets.\n       Default value for \"list\" command is mode \"plain\"\n       and for \"save\" command is mode \"save\".\n\
-s \n        Print elements sorted (if supported by the set type).\n\
-q \n        Suppress any notice or warning message.\n\
-r \n        Try to resolve IP addresses in the output (slow!)\n\
-! \n        Ignore errors when creating or adding sets or\n        elements that do exist or when deleting elements\n        that don't exist.\n\
-n \n        When listing, just list setnames from the kernel.\n\n\
-t \n        When listing, list setnames and set headers\n        from kernel only.\n\
-f \n        Read from the given file instead of standard\n        input (restore) or write to given file instead\n        of standard output (list/save).\n",
    );
    match kind {
        None => {
            out.push_str("\nSupported set types:\n");
            for k in SetKind::ALL {
                let name = k.name();
                let tab = if name.len() < 12 { "\t" } else { "" };
                out.push_str(&format!("    {name}\t{tab}{}\n", k.revision()));
            }
        }
        Some(t) => {
            let k =
                SetKind::parse(t).ok_or_else(|| Fail::param(format!("Unknown settype: `{t}'")))?;
            let fam = if k.is_hash() {
                format!("\nType {} supports inet and inet6.\n", k.name())
            } else {
                format!("\nType {} is family neutral.\n", k.name())
            };
            out.push_str(&fam);
        }
    }
    Ok(Done {
        stdout: out,
        ..Done::default()
    })
}

/// The sets every fuzz input starts on: one of each kind. The hash sets'
/// seeds are given (a created set otherwise draws one at random), so an
/// input replays the same whichever process runs it.
const FUZZ_SETUP: &str = "create n hash:net counters comment timeout 100 initval 0x2545f491\n\
add n 198.18.0.0/16\ncreate p hash:ip,port,net initval 0x9e3779b9\ncreate b bitmap:port range 0-1024\ncreate l list:set\nadd l n\n";

/// What [`fuzz_one`] keeps per thread: a store to run inputs on, the
/// pristine sets ([`FUZZ_SETUP`] restored once) and their save output.
struct FuzzStage {
    store: ConfigStore,
    pristine: dataplane::sets::SetStore,
    pristine_save: String,
}

thread_local! {
    static FUZZ_STAGE: std::cell::RefCell<FuzzStage> = std::cell::RefCell::new({
        let mut store = ConfigStore::new();
        let (r, _) = execute_at(&mut store, &["restore".to_string()], Some(FUZZ_SETUP), 1);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let pristine = store.sets().clone();
        let pristine_save = fuzz_save(&mut store);
        FuzzStage { store, pristine, pristine_save }
    });
}

impl FuzzStage {
    /// The store with the pristine sets put back, for the next input.
    fn start(&mut self) -> &mut ConfigStore {
        *self.store.sets_mut() = self.pristine.clone();
        &mut self.store
    }
}

fn fuzz_save(store: &mut ConfigStore) -> String {
    execute_at(store, &["save".to_string()], None, 1).0.stdout
}

/// Fuzzing entry point (shared by `fuzz/fuzz_targets/ipset.rs` and a
/// property test): the first byte picks a command line or `restore`
/// input, the rest is split into words at NULs and blanks (lossy UTF-8)
/// and run against a store holding one set of each kind. Nothing may
/// panic; every status is ipset's (0, 1 or 2) and every failure is worded;
/// a refused command line changes nothing, and neither does a `test`,
/// whatever it answers.
///
/// Why one store per thread whose sets are put back before every input:
/// building a store and restoring [`FUZZ_SETUP`] into it, then saving it
/// to compare with, was about half of an input's time. The sets are set
/// up once per thread and cloned into the store before each input
/// (`SetStore` is a plain value: a clone shares each set behind an `Arc`
/// until a change copies it, and an element's counters, the one shared
/// mutable part, move only when a packet matches, which no command does).
/// That is the whole of what an input can change: ipset's commands reach
/// the store only through `sets()` and `sets_mut()`, so the rest of it
/// (services, rules, compiled snapshot) stays as `ConfigStore::new` made
/// it, and an input's outcome does not depend on the inputs before it
/// (`a_fuzz_input_starts_on_the_pristine_sets_whatever_ran_before`).
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    FUZZ_STAGE.with(|stage| {
        let stage = &mut *stage.borrow_mut();
        let pristine_save = stage.pristine_save.clone();
        let store = stage.start();
        let (r, _) = if mode & 1 == 0 {
            let args: Vec<String> = text
                .split(['\0', ' ', '\n'])
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let out = execute_at(store, &args, None, 1);
            let test = matches!(
                parse(&args),
                Ok((
                    _,
                    Command::Set(Parsed::Typed(TypedAdt { adt: Adt::Test, .. }))
                ))
            );
            if out.0.code != 0 || test {
                assert_eq!(
                    fuzz_save(store),
                    pristine_save,
                    "a refused command or a test changed the sets"
                );
            }
            out
        } else {
            execute_at(store, &["restore".to_string()], Some(&text), 1)
        };
        assert!(matches!(r.code, 0..=2), "status {}", r.code);
        if r.code == 2 {
            assert!(r.stderr.starts_with("ipset v7.17: ") || r.stderr.is_empty());
        }
    });
}
