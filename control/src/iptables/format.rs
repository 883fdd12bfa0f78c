//! Rules -> iptables' output bytes: the rule specification of `-S` and
//! `iptables-save`, and the `-L` table (with `-v`, `-n`, `-x`,
//! `--line-numbers`), after iptables 1.8.9's printf formats.

use std::fmt::Write;
use std::net::IpAddr;

use dataplane::rules::tables::{Chain, TableState};
use dataplane::rules::{ctstate, Match, Neg, Net, PortDir, PortRange, Rule, Target};
use uvs_model::model::Family;

use super::parse::{match_name, ListOpts};

/// A protocol number as iptables names it (`getprotobynumber`).
pub fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        0 => "all",
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

/// `xtables_save_string`: bare if only `[A-Za-z0-9_-]`, else quoted with
/// `"`, `\` and `'` escaped.
fn save_string(out: &mut String, s: &str) {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    out.push(' ');
    if bare {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A name (chain, interface) as iptables-save writes it: as it is, unless
/// it holds what iptables-restore would read differently (a blank that
/// splits it, a quote that opens a quoted string, a carriage return,
/// which our restore takes from a line's end to accept CRLF input); such
/// a name is quoted so that it restores as itself (iptables accepts those
/// names and writes them bare, which its own restore then misreads).
fn save_name(out: &mut String, s: &str) {
    if s.contains(|c| super::is_restore_blank(c) || c == '"' || c == '\r') {
        save_string(out, s);
    } else {
        out.push(' ');
        out.push_str(s);
    }
}

fn range_colon(r: PortRange) -> String {
    if r.0 == r.1 {
        r.0.to_string()
    } else {
        format!("{}:{}", r.0, r.1)
    }
}

fn ports_list(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(|r| range_colon(*r))
        .collect::<Vec<_>>()
        .join(",")
}

fn states(s: u8) -> String {
    ctstate::NAMES
        .iter()
        .filter(|(b, _)| s & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn dirs(src: &[bool]) -> String {
    src.iter()
        .map(|s| if *s { "src" } else { "dst" })
        .collect::<Vec<_>>()
        .join(",")
}

fn net_text(n: &Net) -> String {
    format!("{}/{}", n.addr, n.len)
}

/// The rule as `-S` and `iptables-save` write it after `-A CHAIN`
/// (starting with a space), with ` -c P B` before the target when
/// `counters` is given.
pub fn rule_spec(r: &Rule, family: Family, counters: Option<(u64, u64)>) -> String {
    let mut o = String::new();
    let neg = |o: &mut String, n: bool| {
        if n {
            o.push_str(" !");
        }
    };
    for (flag, n) in [("-s", &r.src), ("-d", &r.dst)] {
        if let Some(n) = n {
            if !n.v.is_any() || n.neg {
                neg(&mut o, n.neg);
                let _ = write!(o, " {flag} {}", net_text(&n.v));
            }
        }
    }
    for (flag, i) in [("-i", &r.in_if), ("-o", &r.out_if)] {
        if let Some(i) = i {
            neg(&mut o, i.neg);
            let _ = write!(o, " {flag}");
            save_name(&mut o, &i.v);
        }
    }
    if let Some(p) = &r.proto {
        if p.v != 0 || p.neg {
            neg(&mut o, p.neg);
            match proto_name(p.v) {
                Some(name) => {
                    let _ = write!(o, " -p {name}");
                }
                None => {
                    let _ = write!(o, " -p {}", p.v);
                }
            }
        }
    }
    for m in &r.matches {
        let _ = write!(o, " -m {}", match_name(m));
        match m {
            Match::Ports { sport, dport, .. } => {
                for (flag, v) in [("--sport", sport), ("--dport", dport)] {
                    if let Some(Neg { neg: n, v }) = v {
                        neg(&mut o, *n);
                        let _ = write!(o, " {flag} {}", range_colon(*v));
                    }
                }
            }
            Match::Multiport { dir, neg: n, ports } => {
                neg(&mut o, *n);
                let flag = match dir {
                    PortDir::Src => "--sports",
                    PortDir::Dst => "--dports",
                    PortDir::Both => "--ports",
                };
                let _ = write!(o, " {flag} {}", ports_list(ports));
            }
            Match::Mark {
                neg: n,
                value,
                mask,
            } => {
                neg(&mut o, *n);
                o.push_str(" --mark");
                mark_text(&mut o, *value, *mask);
            }
            Match::Set {
                neg: n,
                name,
                src,
                return_nomatch,
            } => {
                neg(&mut o, *n);
                let _ = write!(o, " --match-set {name} {}", dirs(src));
                if *return_nomatch {
                    o.push_str(" --return-nomatch");
                }
            }
            Match::Comment(c) => {
                o.push_str(" --comment");
                save_string(&mut o, c);
            }
            Match::Conntrack { neg: n, states: s } => {
                neg(&mut o, *n);
                let _ = write!(o, " --ctstate {}", states(*s));
            }
            Match::AddrTypeLocal { neg: n } => {
                neg(&mut o, *n);
                o.push_str(" --dst-type LOCAL");
            }
        }
    }
    if let Some((p, b)) = counters {
        let _ = write!(o, " -c {p} {b}");
    }
    match &r.target {
        Target::None => {}
        Target::Reject => {
            let with = match family {
                Family::V4 => "icmp-port-unreachable",
                Family::V6 => "icmp6-port-unreachable",
            };
            let _ = write!(o, " -j REJECT --reject-with {with}");
        }
        Target::Mark { value, mask } => {
            let _ = write!(o, " -j MARK --set-xmark {value:#x}/{mask:#x}");
        }
        Target::Snat {
            to,
            random,
            random_fully,
            persistent,
        } => {
            let _ = write!(o, " -j SNAT --to-source {to}");
            for (f, n) in [
                (*random, " --random"),
                (*random_fully, " --random-fully"),
                (*persistent, " --persistent"),
            ] {
                if f {
                    o.push_str(n);
                }
            }
        }
        Target::Masquerade {
            to_ports,
            random,
            random_fully,
        } => {
            o.push_str(" -j MASQUERADE");
            if let Some(p) = to_ports {
                let _ = write!(o, " --to-ports {p}");
            }
            if *random {
                o.push_str(" --random");
            }
            if *random_fully {
                o.push_str(" --random-fully");
            }
        }
        t => {
            o.push_str(" -j");
            save_name(&mut o, t.name());
        }
    }
    o
}

fn mark_text(o: &mut String, value: u32, mask: u32) {
    if mask == u32::MAX {
        let _ = write!(o, " {value:#x}");
    } else {
        let _ = write!(o, " {value:#x}/{mask:#x}");
    }
}

/// `-S` lines of one table (or one chain, or one rule of it).
pub fn list_rules(
    t: &TableState,
    family: Family,
    chain: Option<&str>,
    num: Option<usize>,
    counters: bool,
) -> String {
    let mut o = String::new();
    let chains: Vec<&Chain> = t
        .chains
        .iter()
        .filter(|c| chain.is_none_or(|n| c.name == n))
        .collect();
    if num.is_none() {
        for c in &chains {
            match c.policy {
                Some(p) => {
                    let _ = write!(o, "-P {} {}", c.name, p.name());
                    if counters {
                        let (pk, b) = c.policy_counted.get();
                        let _ = write!(o, " -c {pk} {b}");
                    }
                    o.push('\n');
                }
                None => {
                    let _ = writeln!(o, "-N {}", c.name);
                }
            }
        }
    }
    for c in chains {
        for (i, r) in c.rules.iter().enumerate() {
            if num.is_some_and(|n| n != i + 1) {
                continue;
            }
            let cnt = counters.then(|| r.counted.get());
            o.push_str("-A");
            save_name(&mut o, &c.name);
            let _ = writeln!(o, "{}", rule_spec(&r.rule, family, cnt));
        }
    }
    o
}

/// One table as `iptables-save` writes it between its header and footer
/// comments; `counters` (`-c`) puts `[p:b]` before every rule.
pub fn save_table(t: &TableState, family: Family, counters: bool) -> String {
    let mut o = format!("*{}\n", t.table.name());
    for c in &t.chains {
        let (p, b) = if c.is_builtin() {
            c.policy_counted.get()
        } else {
            (0, 0)
        };
        let pol = c.policy.map_or("-", |p| p.name());
        let _ = writeln!(o, ":{} {pol} [{p}:{b}]", c.name);
    }
    for c in &t.chains {
        for r in &c.rules {
            if counters {
                let (p, b) = r.counted.get();
                let _ = write!(o, "[{p}:{b}] ");
            }
            o.push_str("-A");
            save_name(&mut o, &c.name);
            let _ = writeln!(o, "{}", rule_spec(&r.rule, family, None));
        }
    }
    o.push_str("COMMIT\n");
    o
}

/// `xtables_print_num`.
fn num(o: &mut String, n: u64, opts: &ListOpts) {
    if opts.exact {
        let _ = write!(o, "{n:>8} ");
        return;
    }
    if n <= 99999 {
        let _ = write!(o, "{n:>5} ");
        return;
    }
    let mut n = n.saturating_add(500) / 1000;
    for unit in ["K", "M", "G"] {
        if n <= 9999 {
            let _ = write!(o, "{n:>4}{unit} ");
            return;
        }
        n = (n + 500) / 1000;
    }
    let _ = write!(o, "{n:>4}T ");
}

fn addr_col(n: &Option<Neg<Net>>, family: Family, opts: &ListOpts) -> (char, String) {
    let (neg, net) = match n {
        Some(n) => (n.neg, n.v),
        None => (
            false,
            Net {
                addr: match family {
                    Family::V4 => IpAddr::from([0u8; 4]),
                    Family::V6 => IpAddr::from([0u8; 16]),
                },
                len: 0,
            },
        ),
    };
    let bang = if neg { '!' } else { ' ' };
    let full = if net.addr.is_ipv4() { 32 } else { 128 };
    let text = if net.len == 0 && !neg && !opts.numeric {
        "anywhere".to_string()
    } else if net.len == full {
        net.addr.to_string()
    } else {
        net_text(&net)
    };
    (bang, text)
}

/// The match and target words of a `-L` line (each starting with a space).
fn list_details(r: &Rule, family: Family) -> String {
    let mut o = String::new();
    for m in &r.matches {
        match m {
            Match::Ports { sport, dport, .. } => {
                let _ = write!(o, " {}", match_name(m));
                for (name, v) in [("spt", sport), ("dpt", dport)] {
                    if let Some(Neg { neg, v }) = v {
                        let inv = if *neg { "!" } else { "" };
                        if v.0 == v.1 {
                            let _ = write!(o, " {name}:{inv}{}", v.0);
                        } else {
                            let _ = write!(o, " {name}s:{inv}{}:{}", v.0, v.1);
                        }
                    }
                }
            }
            Match::Multiport { dir, neg, ports } => {
                let kind = match dir {
                    PortDir::Src => "sports",
                    PortDir::Dst => "dports",
                    PortDir::Both => "ports",
                };
                let inv = if *neg { "!" } else { "" };
                let _ = write!(o, " multiport {kind} {inv}{}", ports_list(ports));
            }
            Match::Mark { neg, value, mask } => {
                o.push_str(" mark match");
                if *neg {
                    o.push_str(" !");
                }
                mark_text(&mut o, *value, *mask);
            }
            Match::Set {
                neg,
                name,
                src,
                return_nomatch,
            } => {
                let inv = if *neg { "! " } else { "" };
                let _ = write!(o, " {inv}match-set {name} {}", dirs(src));
                if *return_nomatch {
                    o.push_str(" return-nomatch");
                }
            }
            Match::Comment(c) => {
                let _ = write!(o, " /* {c} */");
            }
            Match::Conntrack { neg, states: s } => {
                if *neg {
                    o.push_str(" !");
                }
                let _ = write!(o, " ctstate {}", states(*s));
            }
            Match::AddrTypeLocal { neg } => {
                let inv = if *neg { "!" } else { "" };
                let _ = write!(o, " ADDRTYPE match dst-type {inv}LOCAL");
            }
        }
    }
    match &r.target {
        Target::Reject => {
            let with = match family {
                Family::V4 => "icmp-port-unreachable",
                Family::V6 => "icmp6-port-unreachable",
            };
            let _ = write!(o, " reject-with {with}");
        }
        Target::Mark { value, mask } => {
            let (v, m) = (*value, *mask);
            if v == 0 {
                let _ = write!(o, " MARK and {:#x}", !m);
            } else if v == m {
                let _ = write!(o, " MARK or {v:#x}");
            } else if m == 0 {
                let _ = write!(o, " MARK xor {v:#x}");
            } else if m == u32::MAX {
                let _ = write!(o, " MARK set {v:#x}");
            } else {
                let _ = write!(o, " MARK xset {v:#x}/{m:#x}");
            }
        }
        Target::Snat {
            to,
            random,
            random_fully,
            persistent,
        } => {
            let _ = write!(o, " to:{to}");
            for (f, n) in [
                (*random, " random"),
                (*random_fully, " random-fully"),
                (*persistent, " persistent"),
            ] {
                if f {
                    o.push_str(n);
                }
            }
        }
        Target::Masquerade {
            to_ports,
            random,
            random_fully,
        } => {
            if let Some(p) = to_ports {
                let _ = write!(o, " masq ports: {p}");
            }
            if *random {
                o.push_str(" random");
            }
            if *random_fully {
                o.push_str(" random-fully");
            }
        }
        _ => {}
    }
    o
}

/// `-L` of one table (or one chain of it).
pub fn list(t: &TableState, family: Family, opts: &ListOpts) -> String {
    let mut o = String::new();
    let mut first = true;
    for c in &t.chains {
        if opts.chain.as_deref().is_some_and(|n| n != c.name) {
            continue;
        }
        if !first {
            o.push('\n');
        }
        first = false;
        let _ = write!(o, "Chain {}", c.name);
        match c.policy {
            Some(p) => {
                let _ = write!(o, " (policy {}", p.name());
                if opts.verbose {
                    let (pk, b) = c.policy_counted.get();
                    let _ = write!(o, " {pk} packets, {b} bytes");
                }
                o.push_str(")\n");
            }
            None => {
                let _ = writeln!(o, " ({} references)", t.references(&c.name));
            }
        }
        if opts.line_numbers {
            o.push_str("num  ");
        }
        if opts.verbose {
            if opts.exact {
                let _ = write!(o, "{:>8} {:>10} ", "pkts", "bytes");
            } else {
                let _ = write!(o, "{:>5} {:>5} ", "pkts", "bytes");
            }
        }
        let _ = write!(o, "{:<9}  prot opt", "target");
        if opts.verbose {
            let _ = write!(o, " {:<6} {:<6} ", "in", "out");
        }
        let _ = writeln!(o, " {:<19}  {:<19} ", "source", "destination");
        for (i, e) in c.rules.iter().enumerate() {
            let r = &e.rule;
            if opts.line_numbers {
                let _ = write!(o, "{:<4} ", i + 1);
            }
            if opts.verbose {
                let (p, b) = e.counted.get();
                num(&mut o, p, opts);
                num(&mut o, b, opts);
            }
            let _ = write!(o, "{:<9} ", r.target.name());
            let (pneg, pv) = r.proto.as_ref().map_or((false, 0), |p| (p.neg, p.v));
            o.push(if pneg { '!' } else { ' ' });
            match proto_name(pv) {
                Some(n) => {
                    let _ = write!(o, "{n:<5}");
                }
                None => {
                    let _ = write!(o, "{pv:<5}");
                }
            }
            o.push_str("-- ");
            if opts.verbose {
                let iface = |i: &Option<Neg<String>>| match i {
                    Some(i) => format!("{}{}", if i.neg { "!" } else { "" }, i.v),
                    None if opts.numeric => "*".into(),
                    None => "any".into(),
                };
                let _ = write!(o, " {:<6} {:<6} ", iface(&r.in_if), iface(&r.out_if));
            }
            let (b, s) = addr_col(&r.src, family, opts);
            let _ = write!(o, "{b}{s:<19} ");
            let (b, d) = addr_col(&r.dst, family, opts);
            let _ = write!(o, "{b}{d:<19} ");
            o.push_str(&list_details(r, family));
            o.push('\n');
        }
    }
    o
}
