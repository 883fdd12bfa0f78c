//! Golden tests: every message of reference sections 1.1-1.9 with its exit
//! status, and accepted command lines with the exact command they produce.
//! Vectors are derived by hand from the reference, not from this code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use uvs_model::model::{
    DestConfig, Family, ForwardMethod, Protocol, SchedFlags, ServiceConfig, ServiceKey,
    TunnelConfig, TunnelCsum, TunnelType,
};
use uvs_model::ops::ConfigOp;

use super::address::Resolver;
use super::*;
use crate::command::{Command, DaemonConfig, DaemonState, Detail, ListKind, ListOptions};

/// Fixed names so tests never depend on the machine.
pub(super) struct Stub;

impl Resolver for Stub {
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
        (name == "vip.example").then_some(Ipv4Addr::new(198, 18, 0, 10))
    }
    fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        match (name, proto) {
            ("http" | "www", "tcp") => Some(80),
            ("domain", "tcp" | "udp") => Some(53),
            ("sip", "tcp" | "udp" | "sctp") => Some(5060),
            _ => None,
        }
    }
}

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn run(line: &str) -> Result<Command, GrammarError> {
    parse_with(&argv(line), &Stub)
}

fn ok(line: &str) -> Command {
    match run(line) {
        Ok(c) => c,
        Err(e) => panic!("`{line}` rejected: {} ({})", e.message, e.exit_code),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("test address"))
}

fn tcp(addr: IpAddr, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr,
        port,
    }
}

fn vip_key() -> ServiceKey {
    tcp(v4(198, 18, 0, 1), 80)
}

fn dest(addr: IpAddr, port: u16, method: ForwardMethod) -> DestConfig {
    DestConfig {
        addr,
        port,
        method,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn list(kind: ListKind) -> ListOptions {
    ListOptions {
        kind,
        numeric: false,
        exact: false,
        nosort: false,
        json: false,
        service: None,
    }
}

const E2: i32 = 2;
const E255: i32 = 255;

/// (argv, exact stderr text without the final newline, exit status)
const ERRORS: &[(&str, &str, i32)] = &[
    // 1.1 general parsing
    ("-t 198.18.0.1:80 -A", TRY_HELP, E255),
    ("foo", TRY_HELP, E255),
    ("-nL", TRY_HELP, E255),
    ("--bogus -L", TRY_HELP, E255),
    ("-t", TRY_HELP, E255),
    ("-- -L", TRY_HELP, E255),
    // A second command is not a known option inside ipvsadm's option loop:
    // popt's last consumed word is named (for --start-daemon, its value).
    ("-A -t 198.18.0.1:80 -E", "invalid option `-E'", E2),
    ("-L -L", "invalid option `-L'", E2),
    ("-LZ", "invalid option `-LZ'", E2),
    ("-Ln --start-daemon master", "invalid option `master'", E2),
    ("-C --set=1", "--set=1: option does not take an argument", E255),
    ("-A -t 198.18.0.1:80 -s rr -s wlc", "multiple 'scheduler' options specified", E2),
    ("-A -t 198.18.0.1:80 -u 198.18.0.1:53", "multiple 'service-address' options specified", E2),
    ("-A -f 1 -t 198.18.0.1:80", "multiple 'service-address' options specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -g -m", "multiple 'forwarding-method' options specified", E2),
    ("-Lnn", "multiple 'numeric' options specified", E2),
    ("-A -t 198.18.0.1:80 -p -p 5", "multiple 'persistent' options specified", E2),
    ("-A -t 198.18.0.1:80 --bogus", "--bogus: unknown option", E255),
    ("-Lq", "-Lq: unknown option", E255),
    ("-A -t", "-t: missing argument", E255),
    ("-L --numeric=yes", "--numeric=yes: option does not take an argument", E255),
    ("-A -t 198.18.0.1:80 extra", "unexpected argument extra", E2),
    ("-C - ", "unexpected argument -", E2),
    ("-L -h", "invalid option `-h'", E2),
    ("-L --version", "invalid option `--version'", E2),
    // First fault in argv order wins during parsing.
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -w 5000000000 --bogus", "illegal weight specified", E2),
    ("-A -t 198.18.0.1:80 --bogus -w x", "--bogus: unknown option", E255),
    // 1.2 commands: required / illegal / conflicting options
    ("-A", "You need to supply the 'service-address' option for the 'add-service' command", E2),
    ("-E -s rr", "You need to supply the 'service-address' option for the 'edit-service' command", E2),
    ("-A -r 198.18.1.1", "You need to supply the 'service-address' option for the 'add-service' command", E2),
    ("-D -t 198.18.0.1:80 -s rr", "Illegal 'scheduler' option with the 'delete-service' command", E2),
    ("-a -t 198.18.0.1:80", "You need to supply the 'real-server' option for the 'add-server' command", E2),
    ("-e -r 198.18.1.1", "You need to supply the 'service-address' option for the 'edit-server' command", E2),
    ("-d -t 198.18.0.1:80 -r 198.18.1.1 -w 2", "Illegal 'weight' option with the 'delete-server' command", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -s rr", "Illegal 'scheduler' option with the 'add-server' command", E2),
    ("-A -t 198.18.0.1:80 -w 2", "Illegal 'weight' option with the 'add-service' command", E2),
    ("-C -n", "Illegal 'numeric' option with the 'flush' command", E2),
    ("-R -n", "Illegal 'numeric' option with the 'restore' command", E2),
    ("-S -c", "Illegal 'connection' option with the 'save' command", E2),
    ("-Z -t 198.18.0.1:80 -n", "Illegal 'numeric' option with the 'zero' command", E2),
    ("--set 1 2 3 -n", "Illegal 'numeric' option with the 'set' command", E2),
    ("-L --syncid 256", "illegal syncid specified", E2),
    ("-L -s rr", "Illegal 'scheduler' option with the 'list' command", E2),
    // `-list` is a bundle: -l, -i, -s with the value "t".
    ("-list", "Illegal 'scheduler' option with the 'list' command", E2),
    ("--stop-daemon master --mcast-interface eth1", "Illegal 'mcast-interface' option with the 'stop-daemon' command", E2),
    ("--start-daemon master -n", "Illegal 'numeric' option with the 'start-daemon' command", E2),
    ("-L -c -t 198.18.0.1:80", "The option 'service-address' conflicts with the 'connection' option in the 'list' command", E2),
    ("-L --daemon --timeout", "The option 'daemon' conflicts with the 'timeout' option in the 'list' command", E2),
    ("-L --timeout -t 198.18.0.1:80", "The option 'timeout' conflicts with the 'service-address' option in the 'list' command", E2),
    ("-L -c --stats", "options conflicts in the list command", E2),
    ("-L --timeout --rate", "options conflicts in the list command", E2),
    ("-L --daemon --thresholds", "options conflicts in the list command", E2),
    ("-L --daemon --persistent-conn", "options conflicts in the list command", E2),
    ("-L --timeout --persistent-conn", "options conflicts in the list command", E2),
    ("--start-daemon foo", "illegal start-daemon parameter specified", E2),
    ("--stop-daemon foo", "illegal start_daemon specified", E2),
    ("--start-daemon", TRY_HELP, E255),
    ("--set 1 2", "--set option requires 3 timeout values", E2),
    ("--set", "--set option requires 3 timeout values", E2),
    ("--set 1 2 2678401", "invalid timeout value `2678401' specified", E2),
    ("--set x 2 3", "invalid timeout value `x' specified", E2),
    ("--set -- -1 2 3", "invalid timeout value `-1' specified", E2),
    ("--set 1 2 3 4", "unexpected argument 4", E2),
    // 1.3 service specifiers
    ("-A -f 0", "invalid fwmark value `0' specified", E2),
    ("-A -f 4294967296", "invalid fwmark value `4294967296' specified", E2),
    ("-A -f 1x", "invalid fwmark value `1x' specified", E2),
    ("-A -f -1", "invalid fwmark value `-1' specified", E2),
    ("-A -6 -f 1", "-6 used before -f\n", E2),
    ("-A -t [2001:db8::1]:80 -6", "-6 used before -f\n", E2),
    ("-A -t 80", "illegal virtual server address[:port] specified", E2),
    ("-A -u 198.18.0.1:99999", "illegal virtual server address[:port] specified", E2),
    ("-A --sctp-service nosuch.example:80", "illegal virtual server address[:port] specified", E2),
    ("-a -t 198.18.0.1:80 -r 8080", "illegal real server address[:port] specified", E2),
    // 1.4 address syntax
    ("-A -t [2001:db8::1]", "illegal virtual server address[:port] specified", E2),
    ("-A -t [2001:db8::1]:", "illegal virtual server address[:port] specified", E2),
    ("-A -t [2001:db8::1:80", "illegal virtual server address[:port] specified", E2),
    ("-A -t 198.18.0.1:nosuch", "illegal virtual server address[:port] specified", E2),
    ("-A -u 198.18.0.1:http", "illegal virtual server address[:port] specified", E2),
    ("-A -t 198.18.0.1.:80", "illegal virtual server address[:port] specified", E2),
    // service names need the service's protocol: -r before -t has none
    ("-a -r 198.18.1.1:http -t 198.18.0.1:80", "illegal real server address[:port] specified", E2),
    ("-a -t 198.18.0.1:80 -r [2001:db8::2]:80", "Different address family is allowed only for tunneling servers", E2),
    ("-a -t [2001:db8::1]:80 -r 198.18.1.1 -m", "Different address family is allowed only for tunneling servers", E2),
    ("-a -f 7 -6 -r 198.18.1.1", "Different address family is allowed only for tunneling servers", E2),
    // 1.5 parameters
    ("-A -t 198.18.0.1:80 -p 0", "invalid timeout value `0' specified", E2),
    ("-A -t 198.18.0.1:80 -p 2678401", "invalid timeout value `2678401' specified", E2),
    ("-A -t 198.18.0.1:80 -p abc", "invalid timeout value `abc' specified", E2),
    ("-A -t 198.18.0.1:80 --persistent=", "invalid timeout value `' specified", E2),
    ("-A -t 198.18.0.1:80 -p 60 -M 255.255.x", "illegal virtual server persistent mask specified", E2),
    ("-A -t [2001:db8::1]:80 -p -M 129", "illegal ipv6 netmask specified", E2),
    ("-A -t [2001:db8::1]:80 -p -M 0", "illegal ipv6 netmask specified", E2),
    ("-A -f 1 -6 -p -M x", "illegal ipv6 netmask specified", E2),
    ("-A -t 198.18.0.1:80 -o", "One-Packet Scheduling is only for UDP virtual services", E2),
    ("-A --sctp-service 198.18.0.1:80 -o", "One-Packet Scheduling is only for UDP virtual services", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -w -1", "illegal weight specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -w 2147483648", "illegal weight specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -w 1.5", "illegal weight specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -x abc", "illegal u_threshold specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -y 2147483648", "illegal l_threshold specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type vxlan", "illegal tunnel type specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gue --tun-port 0", "illegal tunnel port specified", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gue --tun-port 65536", "illegal tunnel port specified", E2),
    ("--start-daemon master --syncid 256", "illegal syncid specified", E2),
    ("--stop-daemon backup --syncid -1", "illegal syncid specified", E2),
    ("--start-daemon master --sync-maxlen 65508", "illegal sync-maxlen specified", E2),
    ("--start-daemon master --sync-maxlen 0", "illegal sync-maxlen specified", E2),
    ("--start-daemon master --mcast-group 198.18.0.1", "invalid IPv4 mcast-group `198.18.0.1'", E2),
    ("--start-daemon master --mcast-group 224.0.0", "invalid IPv4 mcast-group `224.0.0'", E2),
    ("--start-daemon master --mcast-group 2001:db8::1", "invalid IPv6 mcast-group `2001:db8::1'", E2),
    ("--start-daemon master --mcast-port 0", "illegal mcast-port specified", E2),
    ("--start-daemon master --mcast-port 65536", "illegal mcast-port specified", E2),
    ("--start-daemon master --mcast-ttl 0", "illegal mcast-ttl specified", E2),
    ("--start-daemon master --mcast-ttl 256", "illegal mcast-ttl specified", E2),
    // 1.6 scheduler flags (checked against the final -s, before other checks)
    ("-A -t 198.18.0.1:80 -b sh-port", "incompatible scheduler flag `sh-port'", E2),
    ("-A -t 198.18.0.1:80 -b sh-fallback -s sh -s sh", "multiple 'scheduler' options specified", E2),
    ("-A -t 198.18.0.1:80 -s sh -b mh-port", "incompatible scheduler flag `mh-port'", E2),
    ("-A -t 198.18.0.1:80 -s mh -b sh-fallback", "incompatible scheduler flag `sh-fallback'", E2),
    ("-A -t 198.18.0.1:80 -s mh -b flag-1,bogus", "invalid scheduler flag `bogus'", E2),
    ("-A -t 198.18.0.1:80 -b flag-4", "invalid scheduler flag `flag-4'", E2),
    // On -a/-e, -b is DPVS's --fullnat (ipvsadm parsed scheduler flags
    // here only to refuse them), so the word after it is left over.
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -b bogus", "unexpected argument bogus", E2),
    ("-A -t 198.18.0.1:80 -b ,", "invalid scheduler flag `,'", E2),
    // 1.7 tunnel matrix
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gue", "You need to supply the 'tun-port' option for the 'gue' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-port 6080", "Illegal 'tun-port' option with the 'ipip' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type ipip --tun-csum", "Illegal 'tun-csum' option with the 'ipip' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-nocsum", "Illegal 'tun-nocsum' option with the 'ipip' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gre --tun-port 1", "Illegal 'tun-port' option with the 'gre' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gre --tun-remcsum", "Illegal 'tun-remcsum' option with the 'gre' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gre --tun-csum --tun-nocsum", "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gue --tun-port 6080 --tun-remcsum --tun-csum", "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 -m --tun-type gue", "Tunnel options conflict with forward method", E2),
    ("-a -t 198.18.0.1:80 -r 198.18.1.1 --tun-csum", "Tunnel options conflict with forward method", E2),
    ("-e -t 198.18.0.1:80 -r 198.18.1.1 -g --tun-port 6080", "Tunnel options conflict with forward method", E2),
    ("-d -t 198.18.0.1:80 -r 198.18.1.1 --tun-type gre", "Illegal 'tun-type' option with the 'delete-server' command", E2),
    // 1.8 zero port
    ("-A -t 198.18.0.1:0", "Zero port specified for non-persistent service", E2),
    ("-E -u 198.18.0.1", "Zero port specified for non-persistent service", E2),
    ("-A -t [2001:db8::1]:0 -s rr", "Zero port specified for non-persistent service", E2),
    // A bracketed IPv4 address loses its port (ipvsadm looks for the `:`
    // inside the brackets).
    ("-A -t [198.18.0.1]:80", "Zero port specified for non-persistent service", E2),
    // --json is a listing extension only
    ("-A -t 198.18.0.1:80 --json", "Illegal 'json' option with the 'add-service' command", E2),
    ("-S --json", "Illegal 'json' option with the 'save' command", E2),
    ("-L --json --json", "multiple 'json' options specified", E2),
];

#[test]
fn every_error_message_and_status() {
    let mut failures = Vec::new();
    for &(line, message, code) in ERRORS {
        match run(line) {
            Ok(c) => failures.push(format!("`{line}` accepted as {c:?}")),
            Err(e) => {
                if e.message != message || e.exit_code != code || e.line.is_some() {
                    failures.push(format!(
                        "`{line}`: got {:?} ({}), want {message:?} ({code})",
                        e.message, e.exit_code
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_arguments_lists_with_names() {
    assert_eq!(
        parse_with(&[], &Stub),
        Ok(Command::List(list(ListKind::Services(Detail::Default))))
    );
}

#[test]
fn help_and_version_ignore_what_follows() {
    assert_eq!(ok("-h --bogus"), Command::Help);
    assert_eq!(ok("--help"), Command::Help);
    assert_eq!(ok("-v -t x"), Command::Version);
    assert_eq!(ok("--version"), Command::Version);
    assert!(usage().starts_with(VERSION_LINE));
    assert!(usage().ends_with('\n'));
}

#[test]
fn usage_names_every_option() {
    for def in options::OPTIONS {
        let long = format!("--{}", def.long);
        assert!(usage().contains(&long), "{long} missing from usage");
        if let Some(c) = def.short {
            assert!(
                usage().contains(&format!("-{c}")),
                "-{c} missing from usage"
            );
        }
    }
}

#[test]
fn add_service_defaults_and_edit_resets() {
    let base = ServiceConfig::new(vip_key());
    assert_eq!(
        ok("-A -t 198.18.0.1:80"),
        Command::Config(ConfigOp::AddService(base.clone()))
    );
    assert_eq!(
        ok("--add-service --tcp-service=198.18.0.1:80"),
        Command::Config(ConfigOp::AddService(base.clone()))
    );
    // -E without options resets to wlc, no persistence, no flags.
    assert_eq!(
        ok("-E -t 198.18.0.1:80"),
        Command::Config(ConfigOp::EditService(base.clone()))
    );
    // Empty -s means the default scheduler too.
    assert_eq!(
        ok("-A -t 198.18.0.1:80 --scheduler="),
        Command::Config(ConfigOp::AddService(base))
    );
}

#[test]
fn persistence_forms() {
    let with = |t: u32| ServiceConfig {
        persistent: Some(t),
        ..ServiceConfig::new(vip_key())
    };
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p"),
        Command::Config(ConfigOp::AddService(with(360)))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p -s wlc"),
        Command::Config(ConfigOp::AddService(with(360)))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p 60"),
        Command::Config(ConfigOp::AddService(with(60)))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p60"),
        Command::Config(ConfigOp::AddService(with(60)))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 --persistent=2678400"),
        Command::Config(ConfigOp::AddService(with(2678400)))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 --persistent 1"),
        Command::Config(ConfigOp::AddService(with(1)))
    );
    // Port 0 is fine once persistent.
    let zero = ServiceConfig {
        persistent: Some(360),
        ..ServiceConfig::new(tcp(v4(198, 18, 0, 1), 0))
    };
    assert_eq!(
        ok("-A -t 198.18.0.1 -p"),
        Command::Config(ConfigOp::AddService(zero))
    );
}

#[test]
fn bundled_short_options() {
    let cfg = ServiceConfig {
        scheduler: "rr".into(),
        ..ServiceConfig::new(vip_key())
    };
    assert_eq!(
        ok("-At198.18.0.1:80 -srr"),
        Command::Config(ConfigOp::AddService(cfg))
    );
    let mut o = list(ListKind::Services(Detail::Default));
    o.numeric = true;
    assert_eq!(ok("-Ln"), Command::List(o.clone()));
    assert_eq!(ok("-Lnc"), {
        let mut c = list(ListKind::Connections {
            persistent_conn: false,
        });
        c.numeric = true;
        Command::List(c)
    });
}

#[test]
fn service_address_forms() {
    let udp = |addr, port| ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr,
        port,
    };
    let sctp = |addr, port| ServiceKey::Addr {
        protocol: Protocol::Sctp,
        addr,
        port,
    };
    let add = |key| Command::Config(ConfigOp::AddService(ServiceConfig::new(key)));
    assert_eq!(ok("-A -t 198.18.0.1:http"), add(vip_key()));
    assert_eq!(ok("-A -t vip.example:80"), add(tcp(v4(198, 18, 0, 10), 80)));
    assert_eq!(
        ok("-A -u 198.18.0.1:domain"),
        add(udp(v4(198, 18, 0, 1), 53))
    );
    assert_eq!(
        ok("-A --sctp-service 198.18.0.1:sip"),
        add(sctp(v4(198, 18, 0, 1), 5060))
    );
    // inet_aton forms and strtol ports.
    assert_eq!(ok("-A -t 198.18.1:80"), add(tcp(v4(198, 18, 0, 1), 80)));
    assert_eq!(ok("-A -t 0xc6.18.0.1:+80"), add(vip_key()));
    // Bracketed IPv6 with port; netmask becomes 128.
    let key6 = tcp(v6("2001:db8::1"), 443);
    assert_eq!(ok("-A -t [2001:db8::1]:443"), add(key6));
    match ok("-A -t [2001:db8::1]:443") {
        Command::Config(ConfigOp::AddService(c)) => assert_eq!(c.netmask, 128),
        other => panic!("{other:?}"),
    }
    // Unbracketed IPv6 never has a port: this is a persistent any-port service.
    let cfg = ServiceConfig {
        persistent: Some(360),
        ..ServiceConfig::new(tcp(v6("2001:db8::1:80"), 0))
    };
    assert_eq!(
        ok("-A -t 2001:db8::1:80 -p"),
        Command::Config(ConfigOp::AddService(cfg))
    );
}

#[test]
fn fwmark_services() {
    let fw = |mark, family| ServiceKey::Fwmark { mark, family };
    assert_eq!(
        ok("-A -f 7"),
        Command::Config(ConfigOp::AddService(ServiceConfig::new(fw(7, Family::V4))))
    );
    let v6cfg = ServiceConfig::new(fw(7, Family::V6));
    assert_eq!(v6cfg.netmask, 128);
    assert_eq!(
        ok("-A -f 7 -6"),
        Command::Config(ConfigOp::AddService(v6cfg.clone()))
    );
    assert_eq!(
        ok("-A -f 7 -6 -6"),
        Command::Config(ConfigOp::AddService(v6cfg))
    );
    assert_eq!(ok("-A -f 4294967295 -o"), {
        let mut c = ServiceConfig::new(fw(u32::MAX, Family::V4));
        c.one_packet = true;
        Command::Config(ConfigOp::AddService(c))
    });
    // DPVS's SYN proxy switch, on -A and -E only.
    let mut c = ServiceConfig::new(vip_key());
    c.synproxy = true;
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -j enable"),
        Command::Config(ConfigOp::AddService(c.clone()))
    );
    assert_eq!(
        ok("-E -t 198.18.0.1:80 --synproxy=enable"),
        Command::Config(ConfigOp::EditService(c))
    );
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -j disable"),
        Command::Config(ConfigOp::AddService(ServiceConfig::new(vip_key())))
    );
    let e = run("-A -t 198.18.0.1:80 -j on").unwrap_err();
    assert_eq!(e.message, "synproxy switch must be enable or disable");
    let e = run("-a -t 198.18.0.1:80 -r 198.19.1.1 -j enable").unwrap_err();
    assert!(
        e.message.contains("Illegal 'synproxy' option"),
        "{}",
        e.message
    );
    // IPv6 prefix after -6; a -M before -6 is overridden by -6.
    let mut c = ServiceConfig::new(fw(7, Family::V6));
    c.persistent = Some(360);
    c.netmask = 64;
    assert_eq!(
        ok("-A -f 7 -6 -p -M 64"),
        Command::Config(ConfigOp::AddService(c.clone()))
    );
    c.netmask = 128;
    assert_eq!(
        ok("-A -f 7 -M 64 -6 -p"),
        Command::Config(ConfigOp::AddService(c))
    );
    assert_eq!(
        ok("-D -f 7 -6"),
        Command::Config(ConfigOp::DeleteService(fw(7, Family::V6)))
    );
}

#[test]
fn netmask_forms() {
    let mut c = ServiceConfig::new(vip_key());
    c.persistent = Some(360);
    c.netmask = 0xffff_ff00;
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p -M 255.255.255.0"),
        Command::Config(ConfigOp::AddService(c.clone()))
    );
    // inet_aton accepts a single number as the whole address.
    c.netmask = 0xffff_0000;
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -p -M 4294901760"),
        Command::Config(ConfigOp::AddService(c))
    );
    let mut c6 = ServiceConfig::new(tcp(v6("2001:db8::1"), 80));
    c6.persistent = Some(360);
    c6.netmask = 48;
    assert_eq!(
        ok("-A -t [2001:db8::1]:80 -p -M 48"),
        Command::Config(ConfigOp::AddService(c6.clone()))
    );
    // atoi reads a prefix.
    assert_eq!(
        ok("-A -t [2001:db8::1]:80 -p -M 48junk"),
        Command::Config(ConfigOp::AddService(c6.clone()))
    );
    // -M before the IPv6 service is read as an IPv4 mask, then the service
    // resets it to 128.
    c6.netmask = 128;
    assert_eq!(
        ok("-A -M 48 -t [2001:db8::1]:80 -p"),
        Command::Config(ConfigOp::AddService(c6))
    );
}

#[test]
fn scheduler_flags_pe_and_ops() {
    let mut c = ServiceConfig::new(vip_key());
    c.scheduler = "sh".into();
    c.sched_flags = SchedFlags(SchedFlags::SCHED1 | SchedFlags::SCHED2);
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -s sh -b sh-fallback,sh-port"),
        Command::Config(ConfigOp::AddService(c.clone()))
    );
    // -b before -s: checked against the final scheduler.
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -b sh-port,sh-fallback -s sh"),
        Command::Config(ConfigOp::AddService(c.clone()))
    );
    c.scheduler = "mh".into();
    assert_eq!(
        ok("-A -t 198.18.0.1:80 -s mh -b mh-fallback,mh-port"),
        Command::Config(ConfigOp::AddService(c))
    );
    let mut c = ServiceConfig::new(vip_key());
    c.sched_flags = SchedFlags(SchedFlags::SCHED1 | SchedFlags::SCHED3);
    assert_eq!(
        ok("-E -t 198.18.0.1:80 --sched-flags=flag-1,flag-3"),
        Command::Config(ConfigOp::EditService(c))
    );
    let mut c = ServiceConfig::new(tcp(v4(198, 18, 0, 1), 5060));
    c.persistent = Some(360);
    c.pe = Some("sip".into());
    assert_eq!(
        ok("-A -t 198.18.0.1:5060 -p --pe sip"),
        Command::Config(ConfigOp::AddService(c))
    );
    let mut c = ServiceConfig::new(ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: v4(198, 18, 0, 1),
        port: 53,
    });
    c.one_packet = true;
    c.scheduler = "rr".into();
    assert_eq!(
        ok("-A -u 198.18.0.1:53 -s rr -o"),
        Command::Config(ConfigOp::AddService(c))
    );
    // Scheduler names are cut to 15 bytes.
    match ok("-A -t 198.18.0.1:80 -s abcdefghijklmnopq") {
        Command::Config(ConfigOp::AddService(c)) => assert_eq!(c.scheduler, "abcdefghijklmno"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn real_server_ports_and_methods() {
    let key = vip_key();
    let rip = v4(198, 18, 1, 1);
    // Default method DR, weight 1; no port: the service port is copied.
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 80, ForwardMethod::Route)))
    );
    // DR and tunnel force the service port.
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1:8080"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 80, ForwardMethod::Route)))
    );
    let ipip = ForwardMethod::Tunnel(TunnelConfig::default());
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1:8080 -i"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 80, ipip)))
    );
    // NAT keeps the mapped port.
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1:8080 -m"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 8080, ForwardMethod::Masq)))
    );
    // -r before the service copies the port known then (0); NAT keeps it.
    assert_eq!(
        ok("-a -r 198.18.1.1 -m -t 198.18.0.1:80"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 0, ForwardMethod::Masq)))
    );
    // Service names use the service protocol.
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1:www -m"),
        Command::Config(ConfigOp::AddDest(key, dest(rip, 80, ForwardMethod::Masq)))
    );
    // Weight, thresholds, long forms.
    let mut d = dest(rip, 8080, ForwardMethod::Masq);
    d.weight = 2147483647;
    d.u_threshold = 100;
    d.l_threshold = 2147483647;
    assert_eq!(
        ok("--edit-server -t 198.18.0.1:80 --real-server=198.18.1.1:8080 --masquerading --weight 2147483647 -x100 --l-threshold=2147483647"),
        Command::Config(ConfigOp::EditDest(key, d))
    );
    let mut d = dest(rip, 80, ForwardMethod::Route);
    d.weight = 0;
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r 198.18.1.1 -w 0"),
        Command::Config(ConfigOp::AddDest(key, d))
    );
    // -e resets what is not given: weight 1, DR, thresholds 0.
    assert_eq!(
        ok("-e -t 198.18.0.1:80 -r 198.18.1.1"),
        Command::Config(ConfigOp::EditDest(key, dest(rip, 80, ForwardMethod::Route)))
    );
    // Fwmark services keep the real server's port, even with DR.
    let fw = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V6,
    };
    assert_eq!(
        ok("-a -f 7 -6 -r [2001:db8::10]:8080"),
        Command::Config(ConfigOp::AddDest(
            fw,
            dest(v6("2001:db8::10"), 8080, ForwardMethod::Route)
        ))
    );
    assert_eq!(
        ok("-a -f 7 -6 -r 2001:db8::10"),
        Command::Config(ConfigOp::AddDest(
            fw,
            dest(v6("2001:db8::10"), 0, ForwardMethod::Route)
        ))
    );
    // Delete: port copied, not forced.
    assert_eq!(
        ok("-d -t 198.18.0.1:80 -r 198.18.1.1"),
        Command::Config(ConfigOp::DeleteDest {
            service: key,
            addr: rip,
            port: 80
        })
    );
    assert_eq!(
        ok("-d -t 198.18.0.1:80 -r 198.18.1.1:81"),
        Command::Config(ConfigOp::DeleteDest {
            service: key,
            addr: rip,
            port: 81
        })
    );
}

#[test]
fn tunnel_matrix_accepted_forms() {
    let key = vip_key();
    let rip = v4(198, 18, 1, 1);
    let tun = |kind, port, csum| ForwardMethod::Tunnel(TunnelConfig { kind, port, csum });
    let cases = [
        (
            "-i --tun-type ipip",
            tun(TunnelType::Ipip, 0, TunnelCsum::NoCsum),
        ),
        (
            "-i --tun-type gue --tun-port 6080",
            tun(TunnelType::Gue, 6080, TunnelCsum::NoCsum),
        ),
        (
            "-i --tun-type gue --tun-port 6080 --tun-nocsum",
            tun(TunnelType::Gue, 6080, TunnelCsum::NoCsum),
        ),
        (
            "-i --tun-type gue --tun-port=6080 --tun-csum",
            tun(TunnelType::Gue, 6080, TunnelCsum::Csum),
        ),
        (
            "--ipip --tun-type=gue --tun-port 1 --tun-remcsum",
            tun(TunnelType::Gue, 1, TunnelCsum::RemCsum),
        ),
        (
            "-i --tun-type gre",
            tun(TunnelType::Gre, 0, TunnelCsum::NoCsum),
        ),
        (
            "-i --tun-type gre --tun-csum",
            tun(TunnelType::Gre, 0, TunnelCsum::Csum),
        ),
        (
            "-i --tun-type gre --tun-nocsum",
            tun(TunnelType::Gre, 0, TunnelCsum::NoCsum),
        ),
    ];
    for (opts, method) in cases {
        let line = format!("-a -t 198.18.0.1:80 -r 198.18.1.1 {opts}");
        assert_eq!(
            ok(&line),
            Command::Config(ConfigOp::AddDest(key, dest(rip, 80, method))),
            "{line}"
        );
    }
    // Tunnels may cross address families.
    assert_eq!(
        ok("-a -t 198.18.0.1:80 -r [2001:db8::2]:99 -i"),
        Command::Config(ConfigOp::AddDest(
            key,
            dest(
                v6("2001:db8::2"),
                80,
                tun(TunnelType::Ipip, 0, TunnelCsum::NoCsum)
            )
        ))
    );
}

#[test]
fn list_forms() {
    let svc = |kind| list(kind);
    assert_eq!(
        ok("-L"),
        Command::List(svc(ListKind::Services(Detail::Default)))
    );
    assert_eq!(
        ok("-l --sort --sort"),
        Command::List(svc(ListKind::Services(Detail::Default)))
    );
    let mut o = svc(ListKind::Services(Detail::Stats));
    o.numeric = true;
    o.exact = true;
    o.nosort = true;
    o.json = true;
    assert_eq!(
        ok("--list -n --stats --exact --nosort --json"),
        Command::List(o)
    );
    // The first of stats, rate, thresholds, persistent-conn, tun-info wins.
    assert_eq!(
        ok("-L --tun-info --rate --thresholds"),
        Command::List(svc(ListKind::Services(Detail::Rate)))
    );
    assert_eq!(
        ok("-L --tun-info --persistent-conn"),
        Command::List(svc(ListKind::Services(Detail::PersistentConn)))
    );
    assert_eq!(ok("-L --tun-info -X"), {
        let mut o = svc(ListKind::Services(Detail::TunInfo));
        o.exact = true;
        Command::List(o)
    });
    assert_eq!(
        ok("-L -c --persistent-conn"),
        Command::List(svc(ListKind::Connections {
            persistent_conn: true
        }))
    );
    assert_eq!(ok("-L --timeout"), Command::List(svc(ListKind::Timeout)));
    assert_eq!(ok("-L --daemon"), Command::List(svc(ListKind::Daemon)));
    let mut one = svc(ListKind::Services(Detail::Thresholds));
    one.service = Some(vip_key());
    assert_eq!(ok("-L -t 198.18.0.1:80 --thresholds"), Command::List(one));
    // Listing one service does not need a port.
    let mut one = svc(ListKind::Services(Detail::Default));
    one.service = Some(tcp(v4(198, 18, 0, 1), 0));
    assert_eq!(ok("-L -t 198.18.0.1"), Command::List(one));
}

#[test]
fn other_commands() {
    assert_eq!(ok("-C"), Command::Config(ConfigOp::Flush));
    assert_eq!(ok("--clear"), Command::Config(ConfigOp::Flush));
    assert_eq!(ok("-S"), Command::Save { numeric: false });
    assert_eq!(ok("-Sn"), Command::Save { numeric: true });
    assert_eq!(ok("-R"), Command::Restore(Vec::new()));
    assert_eq!(ok("-Z"), Command::Config(ConfigOp::Zero(None)));
    assert_eq!(
        ok("-Z -t 198.18.0.1:80"),
        Command::Config(ConfigOp::Zero(Some(vip_key())))
    );
    assert_eq!(
        ok("-D -t 198.18.0.1:80"),
        Command::Config(ConfigOp::DeleteService(vip_key()))
    );
    assert_eq!(
        ok("--set 900 120 300"),
        Command::Config(ConfigOp::SetTimeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        })
    );
    assert_eq!(
        ok("0 --set 0 2678400"),
        Command::Config(ConfigOp::SetTimeouts {
            tcp: 0,
            tcp_fin: 0,
            udp: 2678400
        })
    );
    assert_eq!(
        ok("--start-daemon master"),
        Command::StartDaemon(DaemonConfig {
            state: DaemonState::Master,
            mcast_interface: "eth0".into(),
            syncid: 0,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        })
    );
    assert_eq!(
        ok("--start-daemon=backup --mcast-interface ens1 --syncid 255 --sync-maxlen 65507 --mcast-group ff02::81 --mcast-port 8848 --mcast-ttl 255"),
        Command::StartDaemon(DaemonConfig {
            state: DaemonState::Backup,
            mcast_interface: "ens1".into(),
            syncid: 255,
            sync_maxlen: Some(65507),
            mcast_group: Some(v6("ff02::81")),
            mcast_port: Some(8848),
            mcast_ttl: Some(255),
        })
    );
    match ok("--start-daemon master --mcast-group 224.0.0.81") {
        Command::StartDaemon(d) => assert_eq!(d.mcast_group, Some(v4(224, 0, 0, 81))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok("--stop-daemon backup --syncid 9"),
        Command::StopDaemon(DaemonState::Backup)
    );
}

#[test]
fn restore_semantics() {
    let text = "# saved by ipvsadm-save\n\
                -A -t 198.18.0.1:80 -s rr\n\
                \n\
                ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.1:80 -m -w 2\r\n\
                \t  \r\n\
                ipvsadm\n\
                \t# indented comment\n\
                -A -t [2001:db8::1]:443 ipvsadm -s wlc\n\
                -D -t 198.18.0.1:80";
    let cmds = parse_restore_with(text, &Stub).expect("restores");
    let mut d = dest(v4(198, 18, 1, 1), 80, ForwardMethod::Masq);
    d.weight = 2;
    assert_eq!(
        cmds,
        vec![
            Command::Config(ConfigOp::AddService(ServiceConfig {
                scheduler: "rr".into(),
                ..ServiceConfig::new(vip_key())
            })),
            Command::Config(ConfigOp::AddDest(vip_key(), d)),
            Command::Config(ConfigOp::AddService(ServiceConfig::new(tcp(
                v6("2001:db8::1"),
                443
            )))),
            Command::Config(ConfigOp::DeleteService(vip_key())),
        ]
    );
}

#[test]
fn restore_errors_name_the_line_and_keep_the_message() {
    let text = "-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.18.1.1 -w x\n-C\n";
    let e = parse_restore_with(text, &Stub).expect_err("rejects");
    assert_eq!(
        (e.message.as_str(), e.exit_code, e.line),
        ("illegal weight specified", 2, Some(2))
    );
    // -R inside -R is refused with the help hint.
    let e = parse_restore_with("-C\n\n-R\n", &Stub).expect_err("rejects");
    assert_eq!(
        (e.message.as_str(), e.exit_code, e.line),
        (TRY_HELP, 255, Some(3))
    );
    let e = parse_restore_with("-A -t 198.18.0.1:80 --bogus\n", &Stub).expect_err("rejects");
    assert_eq!(
        (e.message.as_str(), e.exit_code, e.line),
        ("--bogus: unknown option", 255, Some(1))
    );
}

#[test]
fn restore_comment_marks_inside_a_line_are_words() {
    let e = parse_restore_with("-C # flush\n", &Stub).expect_err("rejects");
    assert_eq!(
        (e.message.as_str(), e.exit_code, e.line),
        ("unexpected argument #", 2, Some(1))
    );
}

#[test]
fn restore_stops_at_help() {
    let cmds = parse_restore_with("-C\n-h\n-A --bogus\n", &Stub).expect("stops at -h");
    assert_eq!(cmds, vec![Command::Config(ConfigOp::Flush), Command::Help]);
}

#[test]
fn socket_option_is_stripped_before_the_command() {
    let (s, rest) = split_client_options(&argv("--socket /run/uvs/a.sock -L -n"));
    assert_eq!(
        (s.as_deref(), rest),
        (Some("/run/uvs/a.sock"), argv("-L -n"))
    );
    let (s, rest) = split_client_options(&argv("--socket=/tmp/b -C"));
    assert_eq!((s.as_deref(), rest), (Some("/tmp/b"), argv("-C")));
    let (s, rest) = split_client_options(&argv("-L --socket /tmp/c"));
    assert_eq!((s, rest), (None, argv("-L --socket /tmp/c")));
    let (s, rest) = split_client_options(&argv("--socket"));
    assert_eq!((s, rest.clone()), (None, argv("--socket")));
    assert_eq!(parse_with(&rest, &Stub).map_err(|e| e.exit_code), Err(255));
}

#[test]
fn restore_reads_save_output() {
    // The -S example of reference 2.11, moved to the test address ranges.
    let saved = "\
-A -t 198.18.0.1:80 -s wlc
-a -t 198.18.0.1:80 -r 198.19.1.10:80 -m -w 1
-a -t 198.18.0.1:80 -r 198.19.1.11:80 -m -w 2
-A -t 198.18.0.2:443 -s sh -b sh-fallback,sh-port
-a -t 198.18.0.2:443 -r 198.19.1.30:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum
-A -u 198.18.0.1:53 -s rr -p 360 -M 255.255.255.0 -o
-a -u 198.18.0.1:53 -r 198.19.1.20:53 -g -w 1
-A -f 7 -6 -s wlc
-a -f 7 -6 -r [2001:db8::10]:0 -g -w 1
";
    let web = vip_key();
    let tls = tcp(v4(198, 18, 0, 2), 443);
    let dns = ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: v4(198, 18, 0, 1),
        port: 53,
    };
    let fw = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V6,
    };
    let mut w2 = dest(v4(198, 19, 1, 11), 80, ForwardMethod::Masq);
    w2.weight = 2;
    let want = vec![
        Command::Config(ConfigOp::AddService(ServiceConfig::new(web))),
        Command::Config(ConfigOp::AddDest(
            web,
            dest(v4(198, 19, 1, 10), 80, ForwardMethod::Masq),
        )),
        Command::Config(ConfigOp::AddDest(web, w2)),
        Command::Config(ConfigOp::AddService(ServiceConfig {
            scheduler: "sh".into(),
            sched_flags: SchedFlags(SchedFlags::SCHED1 | SchedFlags::SCHED2),
            ..ServiceConfig::new(tls)
        })),
        Command::Config(ConfigOp::AddDest(
            tls,
            dest(
                v4(198, 19, 1, 30),
                443,
                ForwardMethod::Tunnel(TunnelConfig {
                    kind: TunnelType::Gue,
                    port: 6080,
                    csum: TunnelCsum::NoCsum,
                }),
            ),
        )),
        Command::Config(ConfigOp::AddService(ServiceConfig {
            scheduler: "rr".into(),
            persistent: Some(360),
            netmask: 0xffff_ff00,
            one_packet: true,
            ..ServiceConfig::new(dns)
        })),
        Command::Config(ConfigOp::AddDest(
            dns,
            dest(v4(198, 19, 1, 20), 53, ForwardMethod::Route),
        )),
        Command::Config(ConfigOp::AddService(ServiceConfig::new(fw))),
        Command::Config(ConfigOp::AddDest(
            fw,
            dest(v6("2001:db8::10"), 0, ForwardMethod::Route),
        )),
    ];
    assert_eq!(parse_restore_with(saved, &Stub), Ok(want));
}

#[test]
fn system_resolver_reads_etc_services() {
    // The real entry point: numeric address (no DNS), port name from the
    // machine's /etc/services, which lists http as 80/tcp on every
    // distribution that ships the file.
    let Ok(services) = std::fs::read_to_string("/etc/services") else {
        return; // no services database on this machine: nothing to compare
    };
    let http = address::lookup_service(&address::parse_services(&services), "http", "tcp");
    assert_eq!(http, Some(80));
    assert_eq!(
        parse(&argv("-A -t 198.18.0.1:http")),
        Ok(Command::Config(ConfigOp::AddService(ServiceConfig::new(
            vip_key()
        ))))
    );
}

#[test]
fn sysctl_is_an_extension_command_with_one_optional_word() {
    use crate::command::SysctlRequest as R;
    assert_eq!(ok("--sysctl"), Command::Sysctl(R::List));
    assert_eq!(
        ok("--sysctl sloppy_tcp"),
        Command::Sysctl(R::Get("sloppy_tcp".into()))
    );
    assert_eq!(
        ok("--sysctl net.ipv4.vs.sloppy_tcp=1"),
        Command::Sysctl(R::Set("sloppy_tcp".into(), 1))
    );
    assert_eq!(
        ok("--sysctl=amemthresh=4096"),
        Command::Sysctl(R::Set("amemthresh".into(), 4096))
    );
    for (line, want) in [
        (
            "--sysctl bogus",
            "unknown IPVS tunable `bogus' (uvsadm --sysctl lists them)",
        ),
        (
            "--sysctl drop_packet=9",
            "invalid value `9' for drop_packet: expected a whole number from 0 to 3",
        ),
        (
            "--sysctl a b",
            "--sysctl takes one NAME or NAME=VALUE, not also `b'",
        ),
        (
            "--sysctl -n",
            "--sysctl takes one NAME or NAME=VALUE and no other option, not `-n'",
        ),
        ("-A -t 198.18.0.1:80 --sysctl", "invalid option `--sysctl'"),
    ] {
        let e = run(line).unwrap_err();
        assert_eq!((e.message.as_str(), e.exit_code), (want, E2), "{line}");
    }
}

#[test]
fn counters_is_an_extension_command_with_only_json() {
    assert_eq!(ok("--counters"), Command::Counters { json: false });
    assert_eq!(ok("--counters --json"), Command::Counters { json: true });
    for (line, want) in [
        ("--counters -n", "--counters takes only --json, not `-n'"),
        (
            "--counters --json --json",
            "--counters takes only --json, not `--json'",
        ),
        ("--counters all", "--counters takes only --json, not `all'"),
        ("-L --counters", "invalid option `--counters'"),
    ] {
        let e = run(line).unwrap_err();
        assert_eq!((e.message.as_str(), e.exit_code), (want, E2), "{line}");
    }
}
