//! Property tests: the parser never panics, and every valid command,
//! written back as a command line, parses to itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use uvs_model::model::{
    DestConfig, Family, ForwardMethod, Protocol, SchedFlags, ServiceConfig, ServiceKey,
    TunnelConfig, TunnelCsum, TunnelType,
};
use uvs_model::ops::ConfigOp;

use super::tests::Stub;
use super::*;
use crate::command::{
    Command, DaemonConfig, DaemonState, Detail, ListKind, ListOptions, SysctlRequest,
};

const WORDS: &[&str] = &[
    "-A",
    "-E",
    "-D",
    "-C",
    "-R",
    "-S",
    "-a",
    "-e",
    "-d",
    "-L",
    "-l",
    "-Z",
    "--set",
    "--start-daemon",
    "--stop-daemon",
    "-h",
    "-v",
    "-t",
    "-u",
    "--sctp-service",
    "-f",
    "-s",
    "-p",
    "-M",
    "-r",
    "-m",
    "-i",
    "-g",
    "-w",
    "-x",
    "-y",
    "-n",
    "-c",
    "--timeout",
    "--daemon",
    "--stats",
    "--rate",
    "--thresholds",
    "--persistent-conn",
    "--tun-info",
    "--nosort",
    "--sort",
    "-X",
    "-6",
    "-o",
    "--pe",
    "-b",
    "--mcast-group",
    "--mcast-port",
    "--mcast-ttl",
    "--sync-maxlen",
    "--syncid",
    "--mcast-interface",
    "--tun-type",
    "--tun-port",
    "--tun-nocsum",
    "--tun-csum",
    "--tun-remcsum",
    "--json",
    "--",
    "-",
    "198.18.0.1:80",
    "[2001:db8::1]:80",
    "2001:db8::1",
    "198.18.1.1",
    "80",
    "0",
    "sh",
    "mh",
    "gue",
    "gre",
    "ipip",
    "sh-port,flag-3",
    "master",
    "backup",
    "-Ln",
    "-p360",
    "--persistent=5",
    "--weight=",
    "[",
    "]:",
    "ff02::1",
    "224.0.0.81",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
        1 => "-[A-Za-z6]{1,4}",
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(args in proptest::collection::vec(word(), 0..10)) {
        match parse_with(&args, &OfflineResolver) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(e.exit_code == 2 || e.exit_code == 255);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn restore_never_panics(lines in proptest::collection::vec(
        proptest::collection::vec(word(), 0..8).prop_map(|w| w.join(" ")), 0..6)) {
        let _ = parse_restore_with(&lines.join("\n"), &OfflineResolver);
    }

    #[test]
    fn fuzz_body_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        fuzz_one(&data);
    }

    #[test]
    fn valid_commands_round_trip(cmd in command()) {
        let args = to_argv(&cmd);
        let parsed = parse_with(&args, &Stub);
        prop_assert_eq!(parsed, Ok(cmd), "argv: {:?}", args);
    }
}

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

fn addr_of(family: Family) -> BoxedStrategy<IpAddr> {
    match family {
        Family::V4 => (0u8..=1, any::<u16>())
            .prop_map(|(b, x)| IpAddr::V4(Ipv4Addr::new(198, 18 + b, (x >> 8) as u8, x as u8)))
            .boxed(),
        Family::V6 => any::<u64>()
            .prop_map(|x| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(x))))
            .boxed(),
    }
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

fn key() -> BoxedStrategy<ServiceKey> {
    prop_oneof![
        3 => (protocol(), family(), any::<u16>()).prop_flat_map(|(protocol, f, port)| {
            addr_of(f).prop_map(move |addr| ServiceKey::Addr { protocol, addr, port })
        }),
        1 => (1u32..=u32::MAX, family()).prop_map(|(mark, family)| ServiceKey::Fwmark { mark, family }),
    ]
    .boxed()
}

fn service_config() -> impl Strategy<Value = ServiceConfig> {
    (
        key(),
        proptest::sample::select(SCHEDULERS),
        proptest::option::of(1u32..=2_678_400),
        any::<u32>(),
        1u32..=128,
        any::<bool>(),
        any::<bool>(),
        0u32..8,
    )
        .prop_map(
            |(key, sched, persistent, mask4, len6, pe, ops, flag_bits)| {
                let mut c = ServiceConfig::new(key);
                c.scheduler = sched.to_string();
                c.persistent = persistent;
                if let ServiceKey::Addr { port: 0, .. } = key {
                    c.persistent = c.persistent.or(Some(360));
                }
                c.netmask = match key.family() {
                    Family::V4 => mask4,
                    Family::V6 => len6,
                };
                c.pe = pe.then(|| "sip".to_string());
                c.one_packet = ops
                    && matches!(
                        key,
                        ServiceKey::Fwmark { .. }
                            | ServiceKey::Addr {
                                protocol: Protocol::Udp,
                                ..
                            }
                    );
                let mut flags = 0;
                for (i, bit) in [SchedFlags::SCHED1, SchedFlags::SCHED2, SchedFlags::SCHED3]
                    .iter()
                    .enumerate()
                {
                    if flag_bits & (1 << i) != 0 {
                        flags |= bit;
                    }
                }
                c.sched_flags = SchedFlags(flags);
                c
            },
        )
}

fn tunnel() -> impl Strategy<Value = TunnelConfig> {
    prop_oneof![
        Just(TunnelConfig::default()),
        (1u16..=65535, 0u8..3).prop_map(|(port, c)| TunnelConfig {
            kind: TunnelType::Gue,
            port,
            csum: [TunnelCsum::NoCsum, TunnelCsum::Csum, TunnelCsum::RemCsum][c as usize],
        }),
        any::<bool>().prop_map(|csum| TunnelConfig {
            kind: TunnelType::Gre,
            port: 0,
            csum: if csum {
                TunnelCsum::Csum
            } else {
                TunnelCsum::NoCsum
            },
        }),
    ]
}

fn dest_for(key: ServiceKey) -> impl Strategy<Value = DestConfig> {
    let method = prop_oneof![
        Just(ForwardMethod::Masq),
        Just(ForwardMethod::Route),
        tunnel().prop_map(ForwardMethod::Tunnel),
    ];
    (
        method,
        family(),
        any::<u16>(),
        0..=i32::MAX,
        0..=i32::MAX,
        0..=i32::MAX,
    )
        .prop_flat_map(move |(method, fam, port, weight, u, l)| {
            let fam = if matches!(method, ForwardMethod::Tunnel(_)) {
                fam
            } else {
                key.family()
            };
            addr_of(fam).prop_map(move |addr| {
                let port = match (key, method) {
                    (
                        ServiceKey::Addr { port: vport, .. },
                        ForwardMethod::Route | ForwardMethod::Tunnel(_),
                    ) => vport,
                    _ => port,
                };
                DestConfig {
                    addr,
                    port,
                    method,
                    weight,
                    u_threshold: u as u32,
                    l_threshold: l as u32,
                }
            })
        })
}

fn list_options() -> impl Strategy<Value = ListOptions> {
    let detail = proptest::sample::select(
        &[
            Detail::Default,
            Detail::Stats,
            Detail::Rate,
            Detail::Thresholds,
            Detail::PersistentConn,
            Detail::TunInfo,
        ][..],
    );
    let kind = prop_oneof![
        detail.prop_map(ListKind::Services),
        any::<bool>().prop_map(|persistent_conn| ListKind::Connections { persistent_conn }),
        Just(ListKind::Timeout),
        Just(ListKind::Daemon),
    ];
    (kind, any::<[bool; 4]>(), proptest::option::of(key())).prop_map(|(kind, f, service)| {
        ListOptions {
            kind,
            numeric: f[0],
            exact: f[1],
            nosort: f[2],
            json: f[3],
            service: if matches!(kind, ListKind::Services(_)) {
                service
            } else {
                None
            },
        }
    })
}

fn daemon_state() -> impl Strategy<Value = DaemonState> {
    prop_oneof![Just(DaemonState::Master), Just(DaemonState::Backup)]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        service_config().prop_map(|x| Command::Config(ConfigOp::AddService(x))),
        service_config().prop_map(|x| Command::Config(ConfigOp::EditService(x))),
        key().prop_map(|x| Command::Config(ConfigOp::DeleteService(x))),
        Just(Command::Config(ConfigOp::Flush)),
        any::<bool>().prop_map(|numeric| Command::Save { numeric }),
        key().prop_flat_map(
            |k| dest_for(k).prop_map(move |d| Command::Config(ConfigOp::AddDest(k, d)))
        ),
        key().prop_flat_map(
            |k| dest_for(k).prop_map(move |d| Command::Config(ConfigOp::EditDest(k, d)))
        ),
        (key(), family(), any::<u16>()).prop_flat_map(|(service, f, port)| {
            addr_of(f).prop_map(move |addr| {
                Command::Config(ConfigOp::DeleteDest {
                    service,
                    addr,
                    port,
                })
            })
        }),
        list_options().prop_map(Command::List),
        proptest::option::of(key()).prop_map(|x| Command::Config(ConfigOp::Zero(x))),
        (0u32..=2_678_400, 0u32..=2_678_400, 0u32..=2_678_400).prop_map(|(tcp, tcp_fin, udp)| {
            Command::Config(ConfigOp::SetTimeouts { tcp, tcp_fin, udp })
        }),
        (
            daemon_state(),
            "[a-z][a-z0-9]{0,14}",
            any::<u8>(),
            proptest::option::of(1u16..=65507),
            proptest::option::of(prop_oneof![
                any::<[u8; 3]>().prop_map(|b| IpAddr::V4(Ipv4Addr::new(
                    224 | (b[0] & 15),
                    b[1],
                    b[2],
                    81
                ))),
                any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, x))),
            ]),
            proptest::option::of(1u16..=65535),
            proptest::option::of(1u8..=255),
        )
            .prop_map(
                |(state, ifn, syncid, sync_maxlen, mcast_group, mcast_port, mcast_ttl)| {
                    Command::StartDaemon(DaemonConfig {
                        state,
                        mcast_interface: ifn,
                        syncid,
                        sync_maxlen,
                        mcast_group,
                        mcast_port,
                        mcast_ttl,
                    })
                }
            ),
        daemon_state().prop_map(Command::StopDaemon),
        Just(Command::Help),
        Just(Command::Version),
        sysctl_request().prop_map(Command::Sysctl),
        any::<bool>().prop_map(|json| Command::Counters { json }),
    ]
}

/// Any `--sysctl` request with a known name and, for a set, a value in
/// its range.
fn sysctl_request() -> impl Strategy<Value = SysctlRequest> {
    use uvs_model::tunables::TUNABLES;
    let def = (0..TUNABLES.len()).prop_map(|i| &TUNABLES[i]);
    prop_oneof![
        Just(SysctlRequest::List),
        def.clone()
            .prop_map(|d| SysctlRequest::Get(d.name.to_string())),
        def.prop_flat_map(|d| (d.min..=d.max.min(1 << 20))
            .prop_map(move |v| SysctlRequest::Set(d.name.to_string(), v))),
    ]
}

fn host_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn key_argv(key: &ServiceKey, out: &mut Vec<String>) {
    match *key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let opt = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "--udp-service",
                Protocol::Sctp => "--sctp-service",
            };
            out.push(opt.into());
            out.push(host_port(addr, port));
        }
        ServiceKey::Fwmark { mark, family } => {
            out.push(format!("--fwmark-service={mark}"));
            if family == Family::V6 {
                out.push("-6".into());
            }
        }
    }
}

/// A command written back as an ipvsadm command line.
fn to_argv(cmd: &Command) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let push = |v: &mut Vec<String>, s: &str| v.push(s.to_string());
    match cmd {
        Command::Config(ConfigOp::AddService(c)) | Command::Config(ConfigOp::EditService(c)) => {
            push(
                &mut a,
                if matches!(cmd, Command::Config(ConfigOp::AddService(_))) {
                    "-A"
                } else {
                    "--edit-service"
                },
            );
            key_argv(&c.key, &mut a);
            a.push(format!("-s{}", c.scheduler));
            if let Some(p) = c.persistent {
                push(&mut a, "-p");
                a.push(p.to_string());
            }
            push(&mut a, "-M");
            a.push(match c.key.family() {
                Family::V4 => Ipv4Addr::from(c.netmask).to_string(),
                Family::V6 => c.netmask.to_string(),
            });
            if let Some(pe) = &c.pe {
                a.push(format!("--pe={pe}"));
            }
            if c.one_packet {
                push(&mut a, "-o");
            }
            if c.toa {
                push(&mut a, "--toa");
            }
            let names: Vec<&str> = [
                (SchedFlags::SCHED1, "flag-1"),
                (SchedFlags::SCHED2, "flag-2"),
                (SchedFlags::SCHED3, "flag-3"),
            ]
            .iter()
            .filter(|(b, _)| c.sched_flags.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
            if !names.is_empty() {
                push(&mut a, "-b");
                a.push(names.join(","));
            }
        }
        Command::Config(ConfigOp::DeleteService(k)) => {
            push(&mut a, "-D");
            key_argv(k, &mut a);
        }
        Command::Config(ConfigOp::AddLocal(k, l)) | Command::Config(ConfigOp::DelLocal(k, l)) => {
            push(
                &mut a,
                if matches!(cmd, Command::Config(ConfigOp::AddLocal(..))) {
                    "-P"
                } else {
                    "--del-laddr"
                },
            );
            key_argv(k, &mut a);
            push(&mut a, "-z");
            a.push(l.to_string());
        }
        Command::GetLocal(k) => {
            push(&mut a, "-G");
            if let Some(k) = k {
                key_argv(k, &mut a);
            }
        }
        Command::Config(ConfigOp::Flush) => push(&mut a, "-C"),
        // `--sysctl NAME=VALUE` parses to `Command::Sysctl` (it prints the
        // line it set), so `command()` never generates this operation.
        Command::Config(ConfigOp::SetTunable(..)) => unreachable!("not generated"),
        Command::Restore(_) => push(&mut a, "-R"),
        Command::Save { numeric } => push(&mut a, if *numeric { "-Sn" } else { "--save" }),
        Command::Config(ConfigOp::AddDest(k, d)) | Command::Config(ConfigOp::EditDest(k, d)) => {
            push(
                &mut a,
                if matches!(cmd, Command::Config(ConfigOp::AddDest(..))) {
                    "-a"
                } else {
                    "-e"
                },
            );
            key_argv(k, &mut a);
            push(&mut a, "-r");
            a.push(host_port(d.addr, d.port));
            match d.method {
                ForwardMethod::Masq => push(&mut a, "-m"),
                ForwardMethod::FullNat => push(&mut a, "-b"),
                ForwardMethod::Route => push(&mut a, "--gatewaying"),
                ForwardMethod::Tunnel(t) => {
                    push(&mut a, "-i");
                    match t.kind {
                        TunnelType::Ipip => push(&mut a, "--tun-type=ipip"),
                        TunnelType::Gue => {
                            push(&mut a, "--tun-type=gue");
                            a.push(format!("--tun-port={}", t.port));
                        }
                        TunnelType::Gre => push(&mut a, "--tun-type=gre"),
                    }
                    if t.kind != TunnelType::Ipip {
                        push(
                            &mut a,
                            match t.csum {
                                TunnelCsum::NoCsum => "--tun-nocsum",
                                TunnelCsum::Csum => "--tun-csum",
                                TunnelCsum::RemCsum => "--tun-remcsum",
                            },
                        );
                    }
                }
            }
            a.push(format!("-w{}", d.weight));
            push(&mut a, "-x");
            a.push(d.u_threshold.to_string());
            a.push(format!("--l-threshold={}", d.l_threshold));
        }
        Command::Config(ConfigOp::DeleteDest {
            service,
            addr,
            port,
        }) => {
            push(&mut a, "-d");
            key_argv(service, &mut a);
            push(&mut a, "-r");
            a.push(host_port(*addr, *port));
        }
        Command::List(o) => {
            push(&mut a, if o.numeric { "-Ln" } else { "-l" });
            match o.kind {
                ListKind::Services(d) => {
                    if let Some(k) = &o.service {
                        key_argv(k, &mut a);
                    }
                    let flag = match d {
                        Detail::Default => None,
                        Detail::Stats => Some("--stats"),
                        Detail::Rate => Some("--rate"),
                        Detail::Thresholds => Some("--thresholds"),
                        Detail::PersistentConn => Some("--persistent-conn"),
                        Detail::TunInfo => Some("--tun-info"),
                    };
                    if let Some(f) = flag {
                        push(&mut a, f);
                    }
                }
                ListKind::Connections { persistent_conn } => {
                    push(&mut a, "-c");
                    if persistent_conn {
                        push(&mut a, "--persistent-conn");
                    }
                }
                ListKind::Timeout => push(&mut a, "--timeout"),
                ListKind::Daemon => push(&mut a, "--daemon"),
            }
            if o.exact {
                push(&mut a, "-X");
            }
            if o.nosort {
                push(&mut a, "--nosort");
            }
            if o.json {
                push(&mut a, "--json");
            }
        }
        Command::Config(ConfigOp::Zero(k)) => {
            push(&mut a, "-Z");
            if let Some(k) = k {
                key_argv(k, &mut a);
            }
        }
        Command::Config(ConfigOp::SetTimeouts { tcp, tcp_fin, udp }) => {
            push(&mut a, "--set");
            a.extend([tcp.to_string(), tcp_fin.to_string(), udp.to_string()]);
        }
        Command::StartDaemon(d) => {
            a.push(format!("--start-daemon={}", state_word(d.state)));
            push(&mut a, "--mcast-interface");
            a.push(d.mcast_interface.clone());
            a.push(format!("--syncid={}", d.syncid));
            if let Some(v) = d.sync_maxlen {
                a.push(format!("--sync-maxlen={v}"));
            }
            if let Some(g) = d.mcast_group {
                push(&mut a, "--mcast-group");
                a.push(g.to_string());
            }
            if let Some(p) = d.mcast_port {
                a.push(format!("--mcast-port={p}"));
            }
            if let Some(t) = d.mcast_ttl {
                a.push(format!("--mcast-ttl={t}"));
            }
        }
        Command::StopDaemon(s) => {
            push(&mut a, "--stop-daemon");
            push(&mut a, state_word(*s));
        }
        Command::Help => push(&mut a, "-h"),
        Command::Version => push(&mut a, "-v"),
        Command::Sysctl(r) => {
            push(&mut a, "--sysctl");
            match r {
                SysctlRequest::List => {}
                SysctlRequest::Get(n) => push(&mut a, n),
                SysctlRequest::Set(n, v) => push(&mut a, &format!("{n}={v}")),
            }
        }
        Command::Counters { json } => {
            push(&mut a, "--counters");
            if *json {
                push(&mut a, "--json");
            }
        }
    }
    a
}

fn state_word(s: DaemonState) -> &'static str {
    match s {
        DaemonState::Master => "master",
        DaemonState::Backup => "backup",
    }
}
