//! The semantic layer: the block tree -> [`Config`], with keepalived's
//! defaults, inheritance and checks (`keepalived -t` of Debian's 2.2.7 was
//! the reference: what it reports as an error, even a "defaulting to"
//! warning that makes `-t` fail, is an error here).
//!
//! Values that a checker may inherit are first collected as options at
//! every level (virtual server, real server, checker) in any order, and
//! resolved at the end, as keepalived does after reading.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::lex::{Diag, Loc, Node};
use super::*;

/// The schedulers IPVS (and UVS) know.
const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Top-level blocks that belong to other parts of keepalived (VRRP, BFD,
/// static addresses...): skipped without being checked.
const OTHER_TOP_LEVEL: &[&str] = &[
    "vrrp_instance",
    "vrrp_sync_group",
    "vrrp_script",
    "vrrp_track_file",
    "track_file",
    "track_process",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "garp_group",
    "bfd_instance",
    "linkbeat_use_polling",
    "net_namespace",
    "net_namespace_ipvs",
    "instance",
    "use_pid_dir",
    "local_address_group",
];

/// keepalived's real-server checker blocks that UVS does not run yet.
const OTHER_CHECKERS: &[&str] = &[
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "BFD_CHECK",
    "FILE_CHECK",
];

/// Values a checker inherits from its real server and virtual server.
#[derive(Debug, Clone, Default)]
struct Inherit {
    connect_timeout: Option<Duration>,
    delay_loop: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: Option<bool>,
    virtualhost: Option<String>,
}

impl Inherit {
    fn or(&self, parent: &Inherit) -> Inherit {
        Inherit {
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            delay_loop: self.delay_loop.or(parent.delay_loop),
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            warmup: self.warmup.or(parent.warmup),
            alpha: self.alpha.or(parent.alpha),
            virtualhost: self.virtualhost.clone().or(parent.virtualhost.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawKind {
    Tcp,
    Http,
    Ssl,
    Misc,
}

#[derive(Debug, Clone)]
struct RawChecker {
    loc: Loc,
    kind: RawKind,
    inh: Inherit,
    log_all_failures: bool,
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    bind_if: Option<String>,
    fwmark: Option<u32>,
    protocol: HttpProtocol,
    sni: bool,
    fast_recovery: bool,
    urls: Vec<RawUrl>,
    misc_path: Option<Script>,
    misc_timeout: Option<Duration>,
    misc_dynamic: bool,
}

struct RawRs {
    loc: Loc,
    addr: IpAddr,
    port: Option<u16>,
    weight: Option<u32>,
    method: Option<Method>,
    upper: Option<u32>,
    lower: Option<u32>,
    inhibit: Option<bool>,
    notify_up: Option<Script>,
    notify_down: Option<Script>,
    inh: Inherit,
    checkers: Vec<RawChecker>,
}

struct Ctx<'a> {
    diags: &'a mut Vec<Diag>,
    /// Where the first script appears (keepalived's script security check).
    first_script: Option<Loc>,
}

impl Ctx<'_> {
    fn err(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.diags.push(Diag {
            loc: loc.clone(),
            msg: msg.into(),
        });
    }

    fn script(&mut self, n: &Node) -> Option<Script> {
        let line = arg(self, n, 0)?;
        // keepalived takes the rest of the line (quoted or not) as the
        // command, optionally followed by user and group when quoted;
        // only the command is used here.
        let argv = split_command(line);
        if argv.is_empty() {
            self.err(&n.loc, format!("'{}' needs a command", n.keyword));
            return None;
        }
        // keepalived drops a script whose program does not exist (it then
        // needs no script security); at run time such a check fails.
        if self.first_script.is_none() && program_exists(&argv[0]) {
            self.first_script = Some(n.loc.clone());
        }
        Some(Script { argv })
    }
}

/// Whether a program can be found (an absolute path, or in PATH).
fn program_exists(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

/// The first argument, or an error naming the keyword.
fn arg<'n>(cx: &mut Ctx<'_>, n: &'n Node, i: usize) -> Option<&'n str> {
    match n.args.get(i) {
        Some(a) => Some(a.as_str()),
        None => {
            cx.err(
                &n.loc,
                format!("missing a parameter after keyword '{}'", n.keyword),
            );
            None
        }
    }
}

fn block<'n>(cx: &mut Ctx<'_>, n: &'n Node) -> &'n [Node] {
    match &n.block {
        Some(b) => b,
        None => {
            cx.err(&n.loc, format!("'{}' needs a block {{ ... }}", n.keyword));
            &[]
        }
    }
}

/// An integer in `lo..=hi`.
fn int(cx: &mut Ctx<'_>, n: &Node, lo: u64, hi: u64) -> Option<u64> {
    let s = arg(cx, n, 0)?;
    match s.parse::<i128>() {
        Ok(v) if v >= i128::from(lo) && v <= i128::from(hi) => u64::try_from(v).ok(),
        Ok(v) => {
            cx.err(
                &n.loc,
                format!("{} '{v}' outside range [{lo}, {hi}]", n.keyword),
            );
            None
        }
        Err(_) => {
            cx.err(&n.loc, format!("{}: invalid number '{s}'", n.keyword));
            None
        }
    }
}

fn int32(cx: &mut Ctx<'_>, n: &Node, lo: u64, hi: u64) -> Option<u32> {
    int(cx, n, lo, hi).and_then(|v| u32::try_from(v).ok())
}

/// A keepalived TIMER: seconds with up to 6 decimals; `zero_ok` for
/// delays that may be 0.
fn timer(cx: &mut Ctx<'_>, n: &Node, zero_ok: bool) -> Option<Duration> {
    let s = arg(cx, n, 0)?;
    let parsed = parse_seconds(s);
    match parsed {
        Some(d) if zero_ok || !d.is_zero() => Some(d),
        Some(_) => {
            cx.err(
                &n.loc,
                format!("{} '{s}' invalid: must be more than 0", n.keyword),
            );
            None
        }
        None => {
            cx.err(
                &n.loc,
                format!("{} '{s}' invalid: not a number of seconds", n.keyword),
            );
            None
        }
    }
}

/// `12`, `2.5`, `0.000001`: seconds to microseconds; no sign, no exponent.
pub(crate) fn parse_seconds(s: &str) -> Option<Duration> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Cap at keepalived's own upper bound of about 18 million years... in
    // practice a day is plenty; refuse what would overflow a Duration's
    // arithmetic later.
    if secs > 10 * 365 * 86_400 {
        return None;
    }
    let mut micros = 0u64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// `<BOOL>` with its keyword alone meaning true.
fn flag(cx: &mut Ctx<'_>, n: &Node) -> Option<bool> {
    match n.args.first().map(|s| s.to_ascii_lowercase()) {
        None => Some(true),
        Some(s) if ["on", "true", "yes"].contains(&s.as_str()) => Some(true),
        Some(s) if ["off", "false", "no"].contains(&s.as_str()) => Some(false),
        Some(s) => {
            cx.err(&n.loc, format!("invalid {} parameter {s}", n.keyword));
            None
        }
    }
}

fn ip(cx: &mut Ctx<'_>, n: &Node, s: &str) -> Option<IpAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(
                &n.loc,
                format!("invalid IP address '{s}' for {}", n.keyword),
            );
            None
        }
    }
}

fn port(cx: &mut Ctx<'_>, n: &Node, s: &str) -> Option<u16> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => u16::try_from(p).ok(),
        _ => {
            cx.err(
                &n.loc,
                format!("invalid port '{s}' for {} (1-65535)", n.keyword),
            );
            None
        }
    }
}

/// Splits a command line as keepalived does (no shell): words separated
/// by blanks, single or double quotes group, backslash escapes.
pub fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `NAT`, `DR`, `TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`.
fn method(cx: &mut Ctx<'_>, n: &Node) -> Option<Method> {
    let kind = arg(cx, n, 0)?;
    match kind {
        "NAT" => Some(Method::Nat),
        "DR" => Some(Method::Dr),
        "TUN" => {
            let mut opts = Vec::new();
            let mut i = 1;
            while i < n.args.len() {
                match n.args[i].as_str() {
                    "type" => {
                        let t = n.args.get(i + 1).map(String::as_str);
                        match t {
                            Some("ipip") | Some("gre") => {
                                opts.push(format!("--tun-type={}", t.unwrap_or_default()));
                                i += 2;
                            }
                            Some("gue") => {
                                let p = match (n.args.get(i + 2), n.args.get(i + 3)) {
                                    (Some(k), Some(p)) if k == "port" => {
                                        port(cx, n, p).map(|p| p.to_string())
                                    }
                                    _ => {
                                        cx.err(&n.loc, "TUN type gue needs 'port N'");
                                        None
                                    }
                                };
                                opts.push("--tun-type=gue".into());
                                opts.push(format!("--tun-port={}", p.unwrap_or_default()));
                                i += 4;
                            }
                            _ => {
                                cx.err(&n.loc, "unknown tunnel type (ipip, gue or gre)");
                                return None;
                            }
                        }
                    }
                    c @ ("nocsum" | "csum" | "remcsum") => {
                        if opts.iter().any(|o| o == "--tun-type=ipip") {
                            cx.err(&n.loc, "ipip tunnels do not support checksum options");
                            return None;
                        }
                        opts.push(format!("--tun-{c}"));
                        i += 1;
                    }
                    other => {
                        cx.err(&n.loc, format!("unknown TUN option '{other}'"));
                        return None;
                    }
                }
            }
            Some(Method::Tun(opts))
        }
        other => {
            cx.err(
                &n.loc,
                format!("unknown [{other}] routing method (NAT, DR or TUN)"),
            );
            None
        }
    }
}

/// Common timing keywords of every level; true when `n` was one.
fn timing_keyword(cx: &mut Ctx<'_>, n: &Node, inh: &mut Inherit) -> bool {
    match n.keyword.as_str() {
        "connect_timeout" => inh.connect_timeout = timer(cx, n, false).or(inh.connect_timeout),
        "delay_loop" => inh.delay_loop = timer(cx, n, false).or(inh.delay_loop),
        "nb_get_retry" => {
            cx.err(&n.loc, "nb_get_retry is deprecated - please use 'retry'");
        }
        "retry" => inh.retry = int32(cx, n, 0, u64::from(u32::MAX)).or(inh.retry),
        "delay_before_retry" => {
            inh.delay_before_retry = timer(cx, n, true).or(inh.delay_before_retry)
        }
        "warmup" => inh.warmup = timer(cx, n, true).or(inh.warmup),
        "virtualhost" => inh.virtualhost = arg(cx, n, 0).map(str::to_string),
        _ => return false,
    }
    true
}

pub(super) fn config(tree: &[Node], diags: &mut Vec<Diag>) -> Config {
    let mut cx = Ctx {
        diags,
        first_script: None,
    };
    let mut global = Global::default();
    let mut groups: HashMap<String, Vec<Entry>> = HashMap::new();
    // Groups may be defined after the virtual servers using them.
    for n in tree {
        if n.keyword == "virtual_server_group" {
            if let Some(name) = arg(&mut cx, n, 0) {
                let body = block(&mut cx, n);
                let entries = group(&mut cx, body);
                groups.insert(name.to_string(), entries);
            }
        }
    }
    let mut vss = Vec::new();
    for n in tree {
        match n.keyword.as_str() {
            "global_defs" => {
                for g in block(&mut cx, n) {
                    match g.keyword.as_str() {
                        "lvs_flush" => global.lvs_flush = true,
                        "enable_script_security" => global.script_security = true,
                        "script_user" => global.script_user = g.args.first().cloned(),
                        _ => {} // the rest concerns VRRP, SMTP, SNMP...
                    }
                }
            }
            "virtual_server_group" => {}
            "virtual_server" => {
                if let Some(vs) = virtual_server(&mut cx, n, &groups) {
                    let taken = vss.iter().any(|o: &VirtualServer| {
                        o.protocol == vs.protocol
                            && o.services.iter().any(|s| vs.services.contains(s))
                    });
                    if taken {
                        cx.err(
                            &n.loc,
                            format!(
                                "virtual server {} repeats a service defined before",
                                vs.name
                            ),
                        );
                    } else {
                        vss.push(vs);
                    }
                }
            }
            k if OTHER_TOP_LEVEL.contains(&k) => {}
            "" => {} // an anonymous block, already reported
            k => cx.err(&n.loc, format!("unknown keyword '{k}'")),
        }
    }
    // keepalived refuses to run scripts unless told it is safe to.
    if let Some(loc) = cx.first_script.clone() {
        if !global.script_security {
            cx.err(
                &loc,
                "SECURITY VIOLATION - scripts are configured but global_defs has no \
                 enable_script_security",
            );
        } else {
            let user = global.script_user.as_deref().unwrap_or("keepalived_script");
            if !user_exists(user) {
                cx.err(
                    &loc,
                    format!("unable to run scripts as user '{user}': no such user"),
                );
            }
        }
    }
    cx.diags
        .sort_by(|a, b| (&a.loc.file, a.loc.line).cmp(&(&b.loc.file, b.loc.line)));
    Config {
        global,
        virtual_servers: vss,
    }
}

fn user_exists(name: &str) -> bool {
    if name.parse::<u32>().is_ok() {
        return true;
    }
    std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

/// One service named by a `virtual_server` header or a group line, and
/// whether it takes its family from the real servers (an fwmark without
/// `inet`/`inet6`: keepalived gives such a virtual server the family of
/// its real servers).
#[derive(Debug, Clone, Copy)]
struct Entry {
    svc: Svc,
    family_from_servers: bool,
}

impl Entry {
    fn fixed(svc: Svc) -> Entry {
        Entry {
            svc,
            family_from_servers: false,
        }
    }
}

/// `virtual_server_group` lines: `IP [PORT]`, `IP-LAST [PORT]`,
/// `fwmark N [inet|inet6]`.
fn group(cx: &mut Ctx<'_>, body: &[Node]) -> Vec<Entry> {
    let mut out = Vec::new();
    for n in body {
        if n.keyword == "fwmark" {
            if let Some(e) = group_fwmark(cx, n) {
                out.push(e);
            }
            continue;
        }
        let p = match n.args.first() {
            Some(p) => match port(cx, n, p) {
                Some(p) => p,
                None => continue,
            },
            None => 0,
        };
        let spec = n.keyword.as_str();
        if spec.contains('/') {
            cx.err(
                &n.loc,
                "address/prefix entries of a virtual_server_group are not supported by UVS yet",
            );
            continue;
        }
        match range(spec) {
            Some(addrs) => out.extend(
                addrs
                    .into_iter()
                    .map(|a| Entry::fixed(Svc::Addr(SocketAddr::new(a, p)))),
            ),
            None => cx.err(
                &n.loc,
                format!("invalid virtual_server_group entry '{spec}'"),
            ),
        }
    }
    out
}

/// A group's `fwmark N [inet|inet6]` line.
fn group_fwmark(cx: &mut Ctx<'_>, n: &Node) -> Option<Entry> {
    let m = arg(cx, n, 0)?;
    let mark = match m.parse::<u32>() {
        Ok(mark) if mark > 0 => mark,
        _ => {
            cx.err(
                &n.loc,
                format!("virtual_server_group fwmark: invalid mark '{m}'"),
            );
            return None;
        }
    };
    let v6 = match n.args.get(1).map(String::as_str) {
        None => None,
        Some("inet") => Some(false),
        Some("inet6") => Some(true),
        Some(f) => {
            cx.err(
                &n.loc,
                format!("virtual_server_group fwmark {mark}: unknown address family '{f}'"),
            );
            return None;
        }
    };
    Some(Entry {
        svc: Svc::Mark {
            mark,
            v6: v6.unwrap_or(false),
        },
        family_from_servers: v6.is_none(),
    })
}

/// persistence_granularity as uvsadm's `-M` wants it: an IPv4 netmask
/// (a prefix length such as `24` is taken as the mask it means; keepalived
/// would read it as the address 0.0.0.24), or an IPv6 prefix length.
fn granularity_arg(g: &str, v4: bool) -> Option<String> {
    if v4 {
        if let Ok(len) = g.parse::<u32>() {
            return (1..=32)
                .contains(&len)
                .then(|| Ipv4Addr::from(u32::MAX << (32 - len)).to_string());
        }
        g.parse::<Ipv4Addr>().ok().map(|m| m.to_string())
    } else {
        g.parse::<u8>()
            .ok()
            .filter(|l| (1..=128).contains(l))
            .map(|l| l.to_string())
    }
}

/// `IP`, `IPv4-LASTOCTET`, `IPv6-LASTHEXTET` (both ends included).
fn range(spec: &str) -> Option<Vec<IpAddr>> {
    if let Ok(a) = spec.parse::<IpAddr>() {
        return Some(vec![a]);
    }
    let (first, last) = spec.rsplit_once('-')?;
    match first.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let last: u8 = last.parse().ok()?;
            let o = a.octets();
            (o[3] <= last).then(|| {
                (o[3]..=last)
                    .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
                    .collect()
            })
        }
        IpAddr::V6(a) => {
            let last = u16::from_str_radix(last, 16).ok()?;
            let s = a.segments();
            (s[7] <= last && last - s[7] < 4096).then(|| {
                (s[7]..=last)
                    .map(|x| {
                        let mut t = s;
                        t[7] = x;
                        IpAddr::V6(Ipv6Addr::from(t))
                    })
                    .collect()
            })
        }
    }
}

fn virtual_server(
    cx: &mut Ctx<'_>,
    n: &Node,
    groups: &HashMap<String, Vec<Entry>>,
) -> Option<VirtualServer> {
    let body = block(cx, n);
    let (name, entries) = vs_header(cx, n, groups)?;
    // An fwmark service without a family has the family of its real
    // servers (keepalived takes it from them too).
    let servers_v6 = body.iter().any(|k| {
        k.keyword == "real_server"
            && k.args
                .first()
                .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok())
    });
    let services: Vec<Svc> = entries
        .into_iter()
        .map(|e| match e.svc {
            Svc::Mark { mark, .. } if e.family_from_servers => Svc::Mark {
                mark,
                v6: servers_v6,
            },
            svc => svc,
        })
        .collect();
    let v4 = services.first().is_some_and(Svc::is_ipv4);
    let mut raw = RawVs::default();
    for k in body {
        if !timing_keyword(cx, k, &mut raw.inh) {
            raw.keyword(cx, k, v4);
        }
    }
    finish_vs(cx, n, name, services, raw)
}

/// `IP [PORT]`, `group NAME` or `fwmark N`: the name used in messages
/// and the services.
fn vs_header(
    cx: &mut Ctx<'_>,
    n: &Node,
    groups: &HashMap<String, Vec<Entry>>,
) -> Option<(String, Vec<Entry>)> {
    match arg(cx, n, 0)? {
        "fwmark" => {
            let m = arg(cx, n, 1)?;
            match m.parse::<u32>() {
                Ok(mark) if mark > 0 => Some((
                    format!("fwmark {mark}"),
                    vec![Entry {
                        svc: Svc::Mark { mark, v6: false },
                        family_from_servers: true,
                    }],
                )),
                _ => {
                    cx.err(&n.loc, format!("virtual_server fwmark: invalid mark '{m}'"));
                    None
                }
            }
        }
        "group" => {
            let g = arg(cx, n, 1)?;
            match groups.get(g) {
                Some(s) => Some((format!("group {g}"), s.clone())),
                None => {
                    cx.err(&n.loc, format!("virtual_server_group '{g}' is not defined"));
                    None
                }
            }
        }
        a => {
            let addr = ip(cx, n, a)?;
            let p = match n.args.get(1) {
                Some(p) => port(cx, n, p)?,
                None => 0,
            };
            let sa = SocketAddr::new(addr, p);
            Some((sa.to_string(), vec![Entry::fixed(Svc::Addr(sa))]))
        }
    }
}

/// A virtual server's keywords as read, before defaults and checks.
struct RawVs {
    inh: Inherit,
    protocol: Option<Protocol>,
    scheduler: Option<String>,
    sched_flags: Vec<String>,
    ops: bool,
    method: Option<Method>,
    persistence: Option<u32>,
    granularity: Option<String>,
    quorum: u64,
    hysteresis: u64,
    quorum_up: Option<Script>,
    quorum_down: Option<Script>,
    sorry: Option<(Loc, IpAddr, Option<u16>)>,
    sorry_inhibit: bool,
    sorry_method: Option<Method>,
    inhibit: bool,
    omega: bool,
    weight: u32,
    real_servers: Vec<RawRs>,
}

impl Default for RawVs {
    fn default() -> RawVs {
        RawVs {
            inh: Inherit::default(),
            protocol: None,
            scheduler: None,
            sched_flags: Vec::new(),
            ops: false,
            method: None,
            persistence: None,
            granularity: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry: None,
            sorry_inhibit: false,
            sorry_method: None,
            inhibit: false,
            omega: false,
            weight: 1,
            real_servers: Vec::new(),
        }
    }
}

impl RawVs {
    /// One keyword of the block (the timing ones are handled before).
    fn keyword(&mut self, cx: &mut Ctx<'_>, k: &Node, v4: bool) {
        match k.keyword.as_str() {
            "lvs_sched" | "lb_algo" => {
                if let Some(s) = arg(cx, k, 0) {
                    if SCHEDULERS.contains(&s) {
                        self.scheduler = Some(s.to_string());
                    } else {
                        cx.err(&k.loc, format!("invalid lvs_scheduler '{s}'"));
                    }
                }
            }
            "lvs_method" | "lb_kind" => self.method = method(cx, k).or(self.method.take()),
            "protocol" => match arg(cx, k, 0).map(str::to_ascii_uppercase).as_deref() {
                Some("TCP") => self.protocol = Some(Protocol::Tcp),
                Some("UDP") => self.protocol = Some(Protocol::Udp),
                Some("SCTP") => self.protocol = Some(Protocol::Sctp),
                Some(p) => cx.err(&k.loc, format!("unknown protocol '{p}'")),
                None => {}
            },
            "persistence_timeout" => {
                self.persistence = if k.args.is_empty() {
                    Some(360)
                } else {
                    int32(cx, k, 1, 2_678_400)
                }
            }
            "persistence_granularity" => {
                if let Some(g) = arg(cx, k, 0) {
                    match granularity_arg(g, v4) {
                        Some(m) => self.granularity = Some(m),
                        None => cx.err(&k.loc, format!("invalid persistence_granularity '{g}'")),
                    }
                }
            }
            "persistence_engine" => {
                cx.err(&k.loc, "persistence_engine is not supported by UVS yet")
            }
            "ops" => self.ops = true,
            f @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" | "flag-1" | "flag-2"
            | "flag-3") => self.sched_flags.push(f.to_string()),
            "hashed" | "ha_suspend" | "smtp_alert" | "snmp_name" | "ip_family" => {}
            "alpha" => self.inh.alpha = Some(true),
            "omega" => self.omega = true,
            "quorum" => self.quorum = int(cx, k, 1, u64::from(u32::MAX)).unwrap_or(self.quorum),
            "hysteresis" => {
                self.hysteresis = int(cx, k, 0, u64::from(u32::MAX)).unwrap_or(self.hysteresis)
            }
            "quorum_up" => self.quorum_up = cx.script(k),
            "quorum_down" => self.quorum_down = cx.script(k),
            "sorry_server" => {
                if let Some(a) = arg(cx, k, 0) {
                    let addr = ip(cx, k, a);
                    let p = k.args.get(1).and_then(|p| port(cx, k, p));
                    if let Some(addr) = addr {
                        self.sorry = Some((k.loc.clone(), addr, p));
                    }
                }
            }
            "sorry_server_inhibit" => self.sorry_inhibit = true,
            "sorry_server_lvs_method" => self.sorry_method = method(cx, k),
            "inhibit_on_failure" => self.inhibit = true,
            "weight" => self.weight = int32(cx, k, 1, 2_147_483_647).unwrap_or(self.weight),
            "real_server" => self.real_servers.extend(real_server(cx, k)),
            other => cx.err(&k.loc, format!("unknown keyword '{other}'")),
        }
    }
}

/// keepalived's checks of a whole virtual server (what `-t` reports as
/// "defaulting to", quorum and hysteresis bounds, port fix-ups) and the
/// inherited values resolved.
fn finish_vs(
    cx: &mut Ctx<'_>,
    n: &Node,
    name: String,
    services: Vec<Svc>,
    raw: RawVs,
) -> Option<VirtualServer> {
    let mut missing = |what: &str, default: &str| {
        cx.err(
            &n.loc,
            format!("virtual server {name}: no {what} set (keepalived would default to {default})"),
        );
    };
    // An fwmark service matches every protocol the mark covers: keepalived
    // warns about a `protocol` there (and `-t` fails), and needs none. (A
    // group mixing marks and addresses needs it for the addresses.)
    let mut protocol = raw.protocol;
    if services.iter().all(|s| matches!(s, Svc::Mark { .. })) {
        if protocol.is_some() {
            cx.err(
                &n.loc,
                format!(
                    "virtual server {name}: protocol specified for fwmark - keepalived ignores it"
                ),
            );
            return None;
        }
        protocol = Some(Protocol::Tcp);
    }
    let (Some(protocol), Some(scheduler), Some(vs_method)) =
        (protocol, raw.scheduler.clone(), raw.method.clone())
    else {
        if raw.protocol.is_none() {
            missing("protocol", "UDP");
        }
        if raw.scheduler.is_none() {
            missing("scheduler", "wlc");
        }
        if raw.method.is_none() {
            missing("lvs_method", "NAT");
        }
        return None;
    };
    if raw.ops && protocol != Protocol::Udp {
        cx.err(
            &n.loc,
            format!("virtual server {name}: one-packet scheduling (ops) requires UDP"),
        );
    }
    // An fwmark service schedules each connection; an address service of
    // port 0 only works persistent (as ipvsadm requires).
    if services
        .iter()
        .any(|s| matches!(s, Svc::Addr(a) if a.port() == 0))
        && raw.persistence.is_none()
    {
        cx.err(
            &n.loc,
            format!("virtual server {name}: a service without a port must be persistent"),
        );
        return None;
    }
    if raw.real_servers.is_empty() {
        cx.err(&n.loc, format!("virtual server {name} has no real servers"));
        return None;
    }
    let v4 = services.first().is_some_and(Svc::is_ipv4);
    if services.iter().any(|s| s.is_ipv4() != v4) {
        cx.err(&n.loc, format!("virtual server {name} mixes IPv4 and IPv6 services; UVS needs one family per virtual server"));
        return None;
    }
    let mut real_servers: Vec<RealServer> = Vec::new();
    for rs in &raw.real_servers {
        if let Some(r) = resolve_real_server(cx, &name, &services, &raw, &vs_method, rs) {
            if real_servers
                .iter()
                .any(|o| o.addr == r.addr && o.port == r.port)
            {
                cx.err(&rs.loc, format!("real server {} is duplicated", r.addr));
            } else {
                real_servers.push(r);
            }
        }
    }
    let total: u64 = real_servers.iter().map(|r| u64::from(r.weight)).sum();
    let (quorum, hysteresis) = (raw.quorum, raw.hysteresis);
    if quorum > total {
        cx.err(&n.loc, format!("quorum {quorum} of virtual server {name} exceeds the total weight of its real servers ({total})"));
    }
    if hysteresis > 0 && hysteresis >= quorum {
        cx.err(
            &n.loc,
            format!("hysteresis {hysteresis} >= quorum {quorum} in virtual server {name}"),
        );
    }
    let sorry = raw.sorry.map(|(loc, addr, port)| {
        if addr.is_ipv4() != v4 {
            cx.err(
                &loc,
                "address family of the sorry server and the virtual server differ",
            );
        }
        Sorry {
            addr,
            port,
            method: raw.sorry_method.unwrap_or_else(|| vs_method.clone()),
            inhibit: raw.sorry_inhibit,
        }
    });
    Some(VirtualServer {
        loc: n.loc.clone(),
        name,
        services,
        protocol,
        scheduler,
        sched_flags: raw.sched_flags,
        ops: raw.ops,
        persistence: raw.persistence,
        granularity: raw.granularity,
        quorum,
        hysteresis,
        quorum_up: raw.quorum_up,
        quorum_down: raw.quorum_down,
        sorry,
        omega: raw.omega,
        real_servers,
    })
}

/// A real server with what it inherits from its virtual server; None
/// (reported) when keepalived would drop or change it.
fn resolve_real_server(
    cx: &mut Ctx<'_>,
    vs_name: &str,
    services: &[Svc],
    vs: &RawVs,
    vs_method: &Method,
    raw: &RawRs,
) -> Option<RealServer> {
    if services.iter().any(|s| s.is_ipv4() != raw.addr.is_ipv4()) {
        cx.err(
            &raw.loc,
            format!(
                "address family of virtual server {vs_name} and real server {} differ",
                raw.addr
            ),
        );
        return None;
    }
    let method = raw.method.clone().unwrap_or_else(|| vs_method.clone());
    if let (Some(p), false) = (raw.port, method == Method::Nat) {
        // An fwmark service has no port of its own to keep.
        if services
            .iter()
            .any(|s| matches!(s, Svc::Addr(a) if a.port() != p))
        {
            cx.err(&raw.loc, format!("real server port {p} differs from the virtual server's port; DR and TUN keep the port (keepalived resets it)"));
            return None;
        }
    }
    let inherited = raw.inh.or(&vs.inh);
    let check_port = raw.port.or(services.first().map(Svc::port)).unwrap_or(0);
    let checkers = raw
        .checkers
        .iter()
        .filter_map(|c| resolve_checker(cx, c, &inherited, raw.addr, check_port))
        .collect();
    Some(RealServer {
        loc: raw.loc.clone(),
        addr: raw.addr,
        port: raw.port,
        weight: raw.weight.unwrap_or(vs.weight),
        method,
        upper: raw.upper,
        lower: raw.lower,
        inhibit: raw.inhibit.unwrap_or(vs.inhibit),
        notify_up: raw.notify_up.clone(),
        notify_down: raw.notify_down.clone(),
        checkers,
    })
}

fn real_server(cx: &mut Ctx<'_>, n: &Node) -> Option<RawRs> {
    let body = n.block.as_deref().unwrap_or(&[]);
    let a = arg(cx, n, 0)?;
    let addr = ip(cx, n, a)?;
    let p = match n.args.get(1) {
        Some(p) => Some(port(cx, n, p)?),
        None => None,
    };
    let mut rs = RawRs {
        loc: n.loc.clone(),
        addr,
        port: p,
        weight: None,
        method: None,
        upper: None,
        lower: None,
        inhibit: None,
        notify_up: None,
        notify_down: None,
        inh: Inherit::default(),
        checkers: Vec::new(),
    };
    for k in body {
        if timing_keyword(cx, k, &mut rs.inh) {
            continue;
        }
        match k.keyword.as_str() {
            "weight" => rs.weight = int32(cx, k, 0, 2_147_483_647),
            "lvs_method" | "lb_kind" => rs.method = method(cx, k),
            "uthreshold" => rs.upper = int32(cx, k, 0, u64::from(u32::MAX)),
            "lthreshold" => rs.lower = int32(cx, k, 0, u64::from(u32::MAX)),
            "inhibit_on_failure" => rs.inhibit = flag(cx, k),
            "alpha" => rs.inh.alpha = flag(cx, k),
            "notify_up" => rs.notify_up = cx.script(k),
            "notify_down" => rs.notify_down = cx.script(k),
            "smtp_alert" | "snmp_name" => {}
            "TCP_CHECK" => rs.checkers.extend(checker(cx, k, RawKind::Tcp)),
            "HTTP_GET" => rs.checkers.extend(checker(cx, k, RawKind::Http)),
            "SSL_GET" => rs.checkers.extend(checker(cx, k, RawKind::Ssl)),
            "MISC_CHECK" => rs.checkers.extend(checker(cx, k, RawKind::Misc)),
            c if OTHER_CHECKERS.contains(&c) => {
                cx.err(&k.loc, format!("{c} is not supported by UVS yet"))
            }
            other => cx.err(&k.loc, format!("unknown keyword '{other}'")),
        }
    }
    Some(rs)
}

fn checker(cx: &mut Ctx<'_>, n: &Node, kind: RawKind) -> Option<RawChecker> {
    let body = block(cx, n);
    let mut c = RawChecker {
        loc: n.loc.clone(),
        kind,
        inh: Inherit::default(),
        log_all_failures: false,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        protocol: HttpProtocol::V10,
        sni: false,
        fast_recovery: false,
        urls: Vec::new(),
        misc_path: None,
        misc_timeout: None,
        misc_dynamic: false,
    };
    let http = matches!(kind, RawKind::Http | RawKind::Ssl);
    let conn = kind != RawKind::Misc;
    for k in body {
        let kw = k.keyword.as_str();
        // `virtualhost` means something only to HTTP checkers.
        if kw != "virtualhost" && timing_keyword(cx, k, &mut c.inh) {
            if kw == "connect_timeout" && !conn {
                cx.err(&k.loc, "unknown keyword 'connect_timeout'");
            }
            continue;
        }
        match kw {
            "alpha" => c.inh.alpha = flag(cx, k),
            "log_all_failures" => c.log_all_failures = flag(cx, k).unwrap_or(false),
            "connect_ip" if conn => {
                c.connect_ip = arg(cx, k, 0).and_then(|a| ip(cx, k, a));
            }
            "connect_port" if conn => c.connect_port = arg(cx, k, 0).and_then(|p| port(cx, k, p)),
            "bindto" if conn => c.bindto = arg(cx, k, 0).and_then(|a| ip(cx, k, a)),
            "bind_port" if conn => c.bind_port = arg(cx, k, 0).and_then(|p| port(cx, k, p)),
            "bind_if" if conn => c.bind_if = arg(cx, k, 0).map(str::to_string),
            "fwmark" if conn => c.fwmark = int32(cx, k, 0, u64::from(u32::MAX)),
            "virtualhost" if http => c.inh.virtualhost = arg(cx, k, 0).map(str::to_string),
            "http_protocol" if http => match arg(cx, k, 0) {
                Some("1.0") => c.protocol = HttpProtocol::V10,
                Some("1.0C") | Some("1.0c") => c.protocol = HttpProtocol::V10Close,
                Some("1.1") => c.protocol = HttpProtocol::V11,
                Some(p) => cx.err(&k.loc, format!("invalid http_protocol '{p}'")),
                None => {}
            },
            "fast_recovery" if http => c.fast_recovery = flag(cx, k).unwrap_or(false),
            "enable_sni" if kind == RawKind::Ssl => c.sni = flag(cx, k).unwrap_or(false),
            "url" if http => {
                if let Some(u) = url(cx, k) {
                    c.urls.push(u);
                }
            }
            "misc_path" if !conn => c.misc_path = cx.script(k),
            "misc_timeout" if !conn => {
                c.misc_timeout = int(cx, k, 1, 86_400).map(Duration::from_secs);
            }
            "misc_dynamic" if !conn => c.misc_dynamic = true,
            "user" if !conn => {}
            other => cx.err(&k.loc, format!("unknown keyword '{other}'")),
        }
    }
    if http && c.urls.is_empty() {
        cx.err(&n.loc, "HTTP/SSL_GET checker has no urls specified");
        return None;
    }
    if kind == RawKind::Misc && c.misc_path.is_none() {
        cx.err(&n.loc, "no misc_path has been specified for MISC_CHECK");
        return None;
    }
    Some(c)
}

type RawUrl = (String, Vec<(u16, u16)>, Option<String>, Option<String>);

fn url(cx: &mut Ctx<'_>, n: &Node) -> Option<RawUrl> {
    let body = block(cx, n);
    let mut path = None;
    let mut status = Vec::new();
    let mut digest = None;
    let mut vhost = None;
    for k in body {
        match k.keyword.as_str() {
            "path" => path = arg(cx, k, 0).map(str::to_string),
            "status_code" => {
                for s in &k.args {
                    match status_range(s) {
                        Some(r) => status.push(r),
                        None => cx.err(&k.loc, format!("invalid HTTP_GET status code '{s}'")),
                    }
                }
            }
            "digest" => {
                if let Some(d) = arg(cx, k, 0) {
                    if d.len() != 32 {
                        cx.err(
                            &k.loc,
                            format!(
                                "digest '{d}' character length should be 32 rather than {}",
                                d.len()
                            ),
                        );
                    } else if !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                        cx.err(&k.loc, format!("digest '{d}' is not hexadecimal"));
                    } else {
                        digest = Some(d.to_ascii_lowercase());
                    }
                }
            }
            "virtualhost" => vhost = arg(cx, k, 0).map(str::to_string),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => {
                cx.err(&k.loc, format!("{} is not supported by UVS yet", k.keyword))
            }
            other => cx.err(&k.loc, format!("unknown keyword '{other}'")),
        }
    }
    let Some(path) = path else {
        cx.err(&n.loc, "HTTP/SSL_GET checker url has no path");
        return None;
    };
    if status.is_empty() {
        status.push((200, 299));
    }
    Some((path, status, digest, vhost))
}

/// `200`, `200-299`: each end in 100..=599.
fn status_range(s: &str) -> Option<(u16, u16)> {
    let ok = |v: u16| (100..=599).contains(&v);
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let v = s.parse().ok()?;
            (v, v)
        }
    };
    (ok(a) && ok(b) && a <= b).then_some((a, b))
}

fn resolve_checker(
    cx: &mut Ctx<'_>,
    c: &RawChecker,
    parent: &Inherit,
    rs_addr: IpAddr,
    rs_port: u16,
) -> Option<Checker> {
    let inh = c.inh.or(parent);
    let (retry, dbr) = match c.kind {
        RawKind::Tcp => (1, Duration::from_secs(1)),
        RawKind::Http | RawKind::Ssl => (1, Duration::from_secs(3)),
        RawKind::Misc => (0, Duration::from_secs(1)),
    };
    let delay_loop = inh.delay_loop.unwrap_or(Duration::from_secs(60));
    let timing = Timing {
        delay_loop,
        retry: inh.retry.unwrap_or(retry),
        delay_before_retry: inh.delay_before_retry.unwrap_or(dbr),
        warmup: inh.warmup.unwrap_or(delay_loop),
    };
    let port = c.connect_port.unwrap_or(rs_port);
    if port == 0 && c.kind != RawKind::Misc {
        cx.err(
            &c.loc,
            "the checker has no port: set connect_port or the real server's port",
        );
        return None;
    }
    let target = Target {
        addr: SocketAddr::new(c.connect_ip.unwrap_or(rs_addr), port),
        bindto: c.bindto,
        bind_port: c.bind_port,
        bind_if: c.bind_if.clone(),
        fwmark: c.fwmark,
        connect_timeout: inh.connect_timeout.unwrap_or(Duration::from_secs(5)),
    };
    let kind = match c.kind {
        RawKind::Tcp => CheckKind::Tcp(target),
        RawKind::Http | RawKind::Ssl => {
            let default_host = match target.addr {
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
                SocketAddr::V4(a) => a.to_string(),
            };
            CheckKind::Http(Http {
                urls: c
                    .urls
                    .iter()
                    .map(|(path, status, digest, vhost)| Url {
                        path: path.clone(),
                        status: status.clone(),
                        digest: digest.clone(),
                        host: vhost
                            .clone()
                            .or(inh.virtualhost.clone())
                            .unwrap_or(default_host.clone()),
                    })
                    .collect(),
                target,
                tls: c.kind == RawKind::Ssl,
                protocol: c.protocol,
                sni: c.sni,
                fast_recovery: c.fast_recovery,
            })
        }
        RawKind::Misc => CheckKind::Misc(Misc {
            script: c.misc_path.clone()?,
            timeout: c.misc_timeout.unwrap_or(delay_loop),
            dynamic: c.misc_dynamic,
        }),
    };
    Some(Checker {
        loc: c.loc.clone(),
        kind,
        timing,
        alpha: inh.alpha.unwrap_or(false),
        log_all_failures: c.log_all_failures,
    })
}
