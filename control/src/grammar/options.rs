//! ipvsadm's option table and a tokenizer that splits argv the way popt
//! does, one option at a time.
//!
//! Why one at a time: ipvsadm acts on each option as popt returns it, so
//! when a command line has several faults, the first one in argv order is
//! reported (a bad weight before an unknown option that follows it). The
//! tokenizer is therefore an iterator and the caller validates as it goes.
//!
//! popt rules reproduced here:
//! * `--name value` and `--name=value`; long names match exactly.
//! * Short options bundle (`-Ln`); an option with an argument takes the rest
//!   of the bundle (`-p360`, a leading `=` is skipped: `-p=360`) or else the
//!   next word, whatever it looks like.
//! * An optional argument (`-p`) takes the next word only if it does not
//!   start with `-`.
//! * A flag given a value (`--numeric=1`, `-n=1`) is an error.
//! * Words that are not options (and `-`) are collected as leftovers and
//!   parsing continues; after `--` every word is a leftover.

use super::error::{GrammarError, PoptFailure};

/// What an option does when popt returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    // Commands.
    AddService,
    EditService,
    DeleteService,
    Clear,
    Restore,
    Save,
    AddServer,
    EditServer,
    DeleteServer,
    List,
    Zero,
    Set,
    StartDaemon,
    StopDaemon,
    Help,
    Version,
    // Options.
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    Synproxy,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    /// `--json`: UVS extension, listings only.
    Json,
    /// `--sysctl [NAME[=VALUE]]`: UVS extension, the IPVS tunables.
    Sysctl,
    /// `--counters [--json]`: UVS extension, the workers' counters.
    Counters,
    /// DPVS's FULLNAT local addresses: `--add-laddr` (`-P`),
    /// `--del-laddr` (`-Q`), `--get-laddr` (`-G`), the address `--laddr`
    /// (`-z`) and `--ifname` (`-F`, accepted and unused: the director
    /// answers for local addresses on every port).
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Laddr,
    Ifname,
    /// `--fullnat` (DPVS; `-b` with `-a`/`-e`, where ipvsadm's
    /// `--sched-flags` cannot appear).
    FullNat,
    /// `--toa`: UVS extension, TOA for a service's FULLNAT connections.
    Toa,
}

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Required,
    Optional,
}

/// One row of the option table.
#[derive(Debug, Clone, Copy)]
pub struct OptionDef {
    pub long: &'static str,
    pub short: Option<char>,
    pub arg: ArgKind,
    pub tag: Tag,
}

const fn def(long: &'static str, short: Option<char>, arg: ArgKind, tag: Tag) -> OptionDef {
    OptionDef {
        long,
        short,
        arg,
        tag,
    }
}

use ArgKind::{None as NoArg, Optional, Required};

/// ipvsadm 1.31's table, in its order (the first `list` entry wins a long
/// name lookup; both mean the same command).
pub const OPTIONS: &[OptionDef] = &[
    def("add-service", Some('A'), NoArg, Tag::AddService),
    def("edit-service", Some('E'), NoArg, Tag::EditService),
    def("delete-service", Some('D'), NoArg, Tag::DeleteService),
    def("clear", Some('C'), NoArg, Tag::Clear),
    def("restore", Some('R'), NoArg, Tag::Restore),
    def("save", Some('S'), NoArg, Tag::Save),
    def("add-server", Some('a'), NoArg, Tag::AddServer),
    def("edit-server", Some('e'), NoArg, Tag::EditServer),
    def("delete-server", Some('d'), NoArg, Tag::DeleteServer),
    def("list", Some('L'), NoArg, Tag::List),
    def("list", Some('l'), NoArg, Tag::List),
    def("zero", Some('Z'), NoArg, Tag::Zero),
    def("set", None, NoArg, Tag::Set),
    def("start-daemon", None, Required, Tag::StartDaemon),
    def("stop-daemon", None, Required, Tag::StopDaemon),
    def("help", Some('h'), NoArg, Tag::Help),
    def("version", Some('v'), NoArg, Tag::Version),
    def("tcp-service", Some('t'), Required, Tag::TcpService),
    def("udp-service", Some('u'), Required, Tag::UdpService),
    def("sctp-service", None, Required, Tag::SctpService),
    def("fwmark-service", Some('f'), Required, Tag::FwmarkService),
    def("scheduler", Some('s'), Required, Tag::Scheduler),
    def("persistent", Some('p'), Optional, Tag::Persistent),
    def("netmask", Some('M'), Required, Tag::Netmask),
    def("real-server", Some('r'), Required, Tag::RealServer),
    def("masquerading", Some('m'), NoArg, Tag::Masquerading),
    def("ipip", Some('i'), NoArg, Tag::Ipip),
    def("gatewaying", Some('g'), NoArg, Tag::Gatewaying),
    def("weight", Some('w'), Required, Tag::Weight),
    def("u-threshold", Some('x'), Required, Tag::UThreshold),
    def("l-threshold", Some('y'), Required, Tag::LThreshold),
    def("numeric", Some('n'), NoArg, Tag::Numeric),
    def("connection", Some('c'), NoArg, Tag::Connection),
    def("mcast-interface", None, Required, Tag::McastInterface),
    def("syncid", None, Required, Tag::SyncId),
    def("timeout", None, NoArg, Tag::Timeout),
    def("daemon", None, NoArg, Tag::Daemon),
    def("stats", None, NoArg, Tag::Stats),
    def("rate", None, NoArg, Tag::Rate),
    def("thresholds", None, NoArg, Tag::Thresholds),
    def("persistent-conn", None, NoArg, Tag::PersistentConn),
    def("tun-info", None, NoArg, Tag::TunInfo),
    def("nosort", None, NoArg, Tag::NoSort),
    def("sort", None, NoArg, Tag::Sort),
    def("exact", Some('X'), NoArg, Tag::Exact),
    def("ipv6", Some('6'), NoArg, Tag::Ipv6),
    def("ops", Some('o'), NoArg, Tag::Ops),
    def("pe", None, Required, Tag::Pe),
    def("sched-flags", Some('b'), Required, Tag::SchedFlags),
    def("synproxy", Some('j'), Required, Tag::Synproxy),
    def("mcast-group", None, Required, Tag::McastGroup),
    def("mcast-port", None, Required, Tag::McastPort),
    def("mcast-ttl", None, Required, Tag::McastTtl),
    def("sync-maxlen", None, Required, Tag::SyncMaxlen),
    def("tun-type", None, Required, Tag::TunType),
    def("tun-port", None, Required, Tag::TunPort),
    def("tun-nocsum", None, NoArg, Tag::TunNocsum),
    def("tun-csum", None, NoArg, Tag::TunCsum),
    def("tun-remcsum", None, NoArg, Tag::TunRemcsum),
    def("json", None, NoArg, Tag::Json),
    def("sysctl", None, Optional, Tag::Sysctl),
    def("counters", None, NoArg, Tag::Counters),
    def("add-laddr", Some('P'), NoArg, Tag::AddLaddr),
    def("del-laddr", Some('Q'), NoArg, Tag::DelLaddr),
    def("get-laddr", Some('G'), NoArg, Tag::GetLaddr),
    def("laddr", Some('z'), Required, Tag::Laddr),
    def("ifname", Some('F'), Required, Tag::Ifname),
    def("fullnat", None, NoArg, Tag::FullNat),
    def("toa", None, NoArg, Tag::Toa),
];

/// `-b` on `-a`/`-e` (DPVS's FULLNAT switch).
const FULLNAT_B: OptionDef = def("fullnat", Some('b'), NoArg, Tag::FullNat);

/// Options whose presence ipvsadm tracks (each may be given once), in
/// ipvsadm's internal order: this order decides which fault is reported
/// first. `Json` is the UVS extension, tracked last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OptId {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Json,
    Synproxy,
}

/// Number of tracked options.
pub const NUMBER_OF_OPT: usize = 36;

/// All tracked options, in internal order.
pub const ALL_OPTS: [OptId; NUMBER_OF_OPT] = [
    OptId::Numeric,
    OptId::Connection,
    OptId::Service,
    OptId::Scheduler,
    OptId::Persistent,
    OptId::Netmask,
    OptId::Server,
    OptId::Forward,
    OptId::Weight,
    OptId::UThreshold,
    OptId::LThreshold,
    OptId::Mcast,
    OptId::Timeout,
    OptId::Daemon,
    OptId::Stats,
    OptId::Rate,
    OptId::Thresholds,
    OptId::PersistentConn,
    OptId::NoSort,
    OptId::SyncId,
    OptId::Exact,
    OptId::OnePacket,
    OptId::Pe,
    OptId::SchedFlags,
    OptId::McastGroup,
    OptId::McastPort,
    OptId::McastTtl,
    OptId::SyncMaxlen,
    OptId::TunInfo,
    OptId::TunType,
    OptId::TunPort,
    OptId::TunNocsum,
    OptId::TunCsum,
    OptId::TunRemcsum,
    OptId::Json,
    OptId::Synproxy,
];

impl OptId {
    /// Name used in ipvsadm's messages.
    pub const fn name(self) -> &'static str {
        match self {
            OptId::Numeric => "numeric",
            OptId::Connection => "connection",
            OptId::Service => "service-address",
            OptId::Scheduler => "scheduler",
            OptId::Persistent => "persistent",
            OptId::Netmask => "netmask",
            OptId::Server => "real-server",
            OptId::Forward => "forwarding-method",
            OptId::Weight => "weight",
            OptId::UThreshold => "u-threshold",
            OptId::LThreshold => "l-threshold",
            OptId::Mcast => "mcast-interface",
            OptId::Timeout => "timeout",
            OptId::Daemon => "daemon",
            OptId::Stats => "stats",
            OptId::Rate => "rate",
            OptId::Thresholds => "thresholds",
            OptId::PersistentConn => "persistent-conn",
            OptId::NoSort => "nosort",
            OptId::SyncId => "syncid",
            OptId::Exact => "exact",
            OptId::OnePacket => "ops",
            OptId::Pe => "pe",
            OptId::SchedFlags => "sched-flags",
            OptId::McastGroup => "mcast-group",
            OptId::McastPort => "mcast-port",
            OptId::McastTtl => "mcast-ttl",
            OptId::SyncMaxlen => "sync-maxlen",
            OptId::TunInfo => "tun-info",
            OptId::TunType => "tun-type",
            OptId::TunPort => "tun-port",
            OptId::TunNocsum => "tun-nocsum",
            OptId::TunCsum => "tun-csum",
            OptId::TunRemcsum => "tun-remcsum",
            OptId::Json => "json",
            OptId::Synproxy => "synproxy",
        }
    }

    pub const fn bit(self) -> u64 {
        1u64 << (self as u8)
    }
}

/// One option as popt returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub tag: Tag,
    pub arg: Option<String>,
    /// The argv word popt consumed last (what `poptBadOption` names).
    pub word: String,
}

/// popt-like argv walker.
#[derive(Debug)]
pub struct Tokenizer<'a> {
    args: &'a [String],
    next: usize,
    /// Index of the bundle word being walked and the byte offset of its next
    /// short option.
    bundle: Option<(usize, usize)>,
    rest_are_leftovers: bool,
    leftovers: Vec<String>,
    /// `-b` means `--fullnat` (set for `-a`/`-e`, see [`FULLNAT_B`]).
    b_is_fullnat: bool,
}

fn find_long(name: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|o| o.long == name)
}

fn find_short(c: char) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

impl<'a> Tokenizer<'a> {
    pub fn new(args: &'a [String]) -> Tokenizer<'a> {
        Tokenizer {
            args,
            next: 0,
            bundle: None,
            rest_are_leftovers: false,
            leftovers: Vec::new(),
            b_is_fullnat: false,
        }
    }

    /// From now on `-b` is DPVS's `--fullnat` rather than ipvsadm's
    /// `--sched-flags` (for `-a`/`-e`, which take no scheduler flags).
    pub fn b_means_fullnat(&mut self) {
        self.b_is_fullnat = true;
    }

    fn short(&self, c: char) -> Option<&'static OptionDef> {
        if c == 'b' && self.b_is_fullnat {
            return Some(&FULLNAT_B);
        }
        find_short(c)
    }

    /// Non-option words in order, including any not yet walked over
    /// (call after the last option was returned).
    pub fn into_leftovers(mut self) -> Vec<String> {
        while self.next < self.args.len() {
            self.leftovers.push(self.args[self.next].clone());
            self.next += 1;
        }
        self.leftovers
    }

    /// Value for an option whose bundle or `=` gave none: the next word.
    fn take_next_word(
        &mut self,
        def: &OptionDef,
        word: &str,
    ) -> Result<Option<String>, GrammarError> {
        match self.args.get(self.next) {
            None => match def.arg {
                ArgKind::Optional => Ok(None),
                _ => Err(GrammarError::popt(word, PoptFailure::MissingArgument)),
            },
            Some(w) => {
                if def.arg == ArgKind::Optional && w.starts_with('-') {
                    Ok(None)
                } else {
                    self.next += 1;
                    Ok(Some(w.clone()))
                }
            }
        }
    }

    /// The next option, `Ok(None)` at the end of argv.
    pub fn next_option(&mut self) -> Result<Option<Parsed>, GrammarError> {
        loop {
            if let Some((w, off)) = self.bundle.take() {
                let word = &self.args[w];
                let rest = &word[off..];
                let Some(c) = rest.chars().next() else {
                    continue;
                };
                let Some(def) = self.short(c) else {
                    return Err(GrammarError::popt(word, PoptFailure::UnknownOption));
                };
                let after = &rest[c.len_utf8()..];
                let after_off = off + c.len_utf8();
                let arg = if def.arg == ArgKind::None {
                    if after.starts_with('=') {
                        return Err(GrammarError::popt(word, PoptFailure::UnwantedArgument));
                    }
                    if !after.is_empty() {
                        self.bundle = Some((w, after_off));
                    }
                    None
                } else if !after.is_empty() {
                    Some(after.strip_prefix('=').unwrap_or(after).to_string())
                } else {
                    self.take_next_word(def, word)?
                };
                let word = self.args[self.next - 1].clone();
                return Ok(Some(Parsed {
                    tag: def.tag,
                    arg,
                    word,
                }));
            }
            let Some(word) = self.args.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            if self.rest_are_leftovers || !word.starts_with('-') || word == "-" {
                self.leftovers.push(word.clone());
                continue;
            }
            if word == "--" {
                self.rest_are_leftovers = true;
                continue;
            }
            let Some(body) = word.strip_prefix("--") else {
                self.bundle = Some((self.next - 1, 1));
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(def) = find_long(name) else {
                return Err(GrammarError::popt(word, PoptFailure::UnknownOption));
            };
            let arg = match (def.arg, inline) {
                (ArgKind::None, Some(_)) => {
                    return Err(GrammarError::popt(word, PoptFailure::UnwantedArgument))
                }
                (ArgKind::None, None) => None,
                (_, Some(v)) => Some(v),
                (_, None) => self.take_next_word(def, word)?,
            };
            let word = self.args[self.next - 1].clone();
            return Ok(Some(Parsed {
                tag: def.tag,
                arg,
                word,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn walk(s: &str) -> (Vec<(Tag, Option<String>)>, Vec<String>) {
        let args = argv(s);
        let mut t = Tokenizer::new(&args);
        let mut out = Vec::new();
        while let Some(p) = t.next_option().expect("tokenizes") {
            out.push((p.tag, p.arg));
        }
        (out, t.into_leftovers())
    }

    #[test]
    fn option_ids_are_in_internal_order() {
        for (i, id) in ALL_OPTS.iter().enumerate() {
            assert_eq!(*id as usize, i);
        }
    }

    #[test]
    fn bundles_split_and_take_the_rest_as_value() {
        let (opts, left) = walk("-Ln -p360 -p=7 -At198.18.0.1:80");
        assert_eq!(
            opts,
            vec![
                (Tag::List, None),
                (Tag::Numeric, None),
                (Tag::Persistent, Some("360".into())),
                (Tag::Persistent, Some("7".into())),
                (Tag::AddService, None),
                (Tag::TcpService, Some("198.18.0.1:80".into())),
            ]
        );
        assert!(left.is_empty());
    }

    #[test]
    fn optional_value_skips_words_starting_with_dash() {
        let (opts, _) = walk("-p -n -p 30 --persistent --persistent=5 --persistent 6");
        assert_eq!(
            opts,
            vec![
                (Tag::Persistent, None),
                (Tag::Numeric, None),
                (Tag::Persistent, Some("30".into())),
                (Tag::Persistent, None),
                (Tag::Persistent, Some("5".into())),
                (Tag::Persistent, Some("6".into())),
            ]
        );
    }

    #[test]
    fn required_value_takes_any_next_word() {
        let (opts, _) = walk("-t -L --weight=");
        assert_eq!(
            opts,
            vec![
                (Tag::TcpService, Some("-L".into())),
                (Tag::Weight, Some(String::new())),
            ]
        );
    }

    #[test]
    fn leftovers_and_double_dash() {
        let (opts, left) = walk("1 --set - 2 -- -3 -n");
        assert_eq!(opts, vec![(Tag::Set, None)]);
        assert_eq!(left, argv("1 - 2 -3 -n"));
    }

    #[test]
    fn popt_errors_name_the_whole_word() {
        let cases = [
            ("-Lq", "-Lq: unknown option"),
            ("--bogus=1", "--bogus=1: unknown option"),
            ("-t", "-t: missing argument"),
            ("-Lt", "-Lt: missing argument"),
            (
                "--numeric=1",
                "--numeric=1: option does not take an argument",
            ),
            ("-n=1", "-n=1: option does not take an argument"),
        ];
        for (line, msg) in cases {
            let args = argv(line);
            let mut t = Tokenizer::new(&args);
            let err = loop {
                match t.next_option() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{line}: no error"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.message, msg, "{line}");
            assert_eq!(err.exit_code, 255);
        }
    }
}
