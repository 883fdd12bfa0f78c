//! Golden tests: every expected text below was derived independently from
//! ipvsadm's printf formats (reference section 2) with the reference's
//! example values, addresses moved to 198.18.0.0/15 and 2001:db8::/32.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use dataplane::snapshot::{Dest, Service, ServiceShared, Snapshot};
use uvs_model::estimator::Rates;
use uvs_model::model::{
    ConnEntry, DestConfig, DestShared, Family, ForwardMethod, Protocol, SchedFlags, ServiceConfig,
    ServiceKey, Timeouts, TunnelConfig, TunnelCsum, TunnelType,
};
use uvs_model::ops::{StatsRow, StatsView};
use uvs_model::stats::Counters;

use super::*;
use crate::command::{DaemonState, Detail, ListKind, ListOptions};

const DEFAULT: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    "TCP  198.18.0.1:80 wlc\n",
    "  -> 198.19.1.10:80               Masq    1      12         130       \n",
    "  -> 198.19.1.11:80               Masq    2      25         260       \n",
    "TCP  198.18.0.2:443 sh (sh-fallback,sh-port)\n",
    "  -> 198.19.1.30:443              Tunnel  1      3          1         \n",
    "UDP  198.18.0.1:53 rr persistent 360 mask 255.255.255.0 ops\n",
    "  -> 198.19.1.20:53               Route   1      0          4         \n",
    "FWM  7 IPv6 wlc\n",
    "  -> [2001:db8::10]:0             Route   1      0          0         \n",
);

const STATS: &str = concat!(
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    "  -> RemoteAddress:Port\n",
    "TCP  198.18.0.1:80                   14209   111769    74613  7207174     123G\n",
    "  -> 198.19.1.10:80                   5000    40000    30000  3000000  987654K\n",
);

const EXACT: &str = concat!(
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    "  -> RemoteAddress:Port\n",
    "TCP  198.18.0.1:80                   14209   111769    74613  7207174 123456789012\n",
    "  -> 198.19.1.10:80                   5000    40000    30000  3000000 987654321\n",
);

const RATE: &str = concat!(
    "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
    "  -> RemoteAddress:Port\n",
    "TCP  198.18.0.1:80                      12      340      280    41000   350000\n",
    "  -> 198.19.1.10:80                      6      170      140    20500   175000\n",
);

const THRESHOLDS: &str = concat!(
    "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
    "  -> RemoteAddress:Port\n",
    "TCP  198.18.0.1:80 wlc\n",
    "  -> 198.19.1.10:80               1000       0          12         130       \n",
);

const PCONN: &str = concat!(
    "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
    "  -> RemoteAddress:Port\n",
    "TCP  198.18.0.1:80 wlc persistent 360\n",
    "  -> 198.19.1.10:80               1         57          12         130       \n",
);

const TUN: &str = concat!(
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
    "TCP  198.18.0.1:80 rr\n",
    "  -> 198.19.10.1:80               Tunnel  gue:6080:-c   1      0          0         \n",
    "  -> 198.19.10.2:80               Tunnel  gre:+c        1      0          0         \n",
    "  -> 198.19.10.3:80               Tunnel  ipip          1      0          0         \n",
    "  -> 198.19.10.4:80               Masq    n/a           1      0          0         \n",
);

const CONNS: &str = concat!(
    "IPVS connection entries\n",
    "pro expire state       source             virtual            destination\n",
    "TCP 14:59  ESTABLISHED 198.18.2.3:51234   198.18.0.1:80      198.19.1.10:80\n",
    "TCP 01:59  FIN_WAIT    198.18.2.3:51230   198.18.0.1:80      198.19.1.11:80\n",
    "UDP 04:59  UDP         198.18.2.4:33000   198.18.0.1:53      198.19.1.20:53\n",
    "TCP 05:59  NONE        198.18.2.0:0       198.18.0.1:80      198.19.1.10:80\n",
    "IP  05:59  ASSURED     198.18.2.3:0       0.0.0.7:0          198.19.1.10:0\n",
    "TCP 100:00 ESTABLISHED [2001:db8::5]:40000 [2001:db8::80]:80  [2001:db8::a0a0]:80\n",
);

const PCONNS: &str = concat!(
    "IPVS connection entries\n",
    "pro expire state       source             virtual            destination        pe name          pe_data\n",
    "UDP 05:59  NONE        198.18.2.4:0       198.18.0.1:5060    198.19.1.40:5060 sip                a84b4c76e66710\n",
    "TCP 14:59  ESTABLISHED 198.18.2.3:51234   198.18.0.1:80      198.19.1.10:80\n",
);

const NAMES: &str = concat!(
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    "TCP  frontend-01.loadbalancer.exa wlc\n",
    "  -> backend-01.servers.example.t Masq    1      0          0         \n",
    "  -> 198.19.1.11:8080             Masq    1      0          0         \n",
    "TCP  [frontend-v6.loadbalancer.example.test]:https wlc\n",
    "  -> [backend-v6.servers.example.test]:https Masq    1      0          0         \n",
);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn tcp(a: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(a),
        port,
    }
}

fn udp(a: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: ip(a),
        port,
    }
}

fn dest(a: &str, port: u16, method: ForwardMethod, weight: i32, act: u32, inact: u32) -> Dest {
    let config = DestConfig {
        addr: ip(a),
        port,
        method,
        weight,
        u_threshold: 0,
        l_threshold: 0,
    };
    let shared = Arc::new(DestShared::new(&config));
    shared.activeconns.store(act, Ordering::Relaxed);
    shared.inactconns.store(inact, Ordering::Relaxed);
    Dest { config, shared }
}

fn service(config: ServiceConfig, dests: Vec<Dest>) -> Arc<Service> {
    Arc::new(Service {
        config,
        dests,
        shared: Arc::new(ServiceShared::default()),
        locals: Vec::new(),
    })
}

fn gue(port: u16, csum: TunnelCsum) -> ForwardMethod {
    ForwardMethod::Tunnel(TunnelConfig {
        kind: TunnelType::Gue,
        port,
        csum,
    })
}

/// The reference's 2.2 table, created in a scrambled order; destination
/// vectors are in kernel order (newest first).
fn reference_snapshot() -> Snapshot {
    let fwm = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V6,
    };
    let mut dns = ServiceConfig::new(udp("198.18.0.1", 53));
    dns.scheduler = "rr".into();
    dns.persistent = Some(360);
    dns.netmask = 0xffff_ff00;
    dns.one_packet = true;
    let mut https = ServiceConfig::new(tcp("198.18.0.2", 443));
    https.scheduler = "sh".into();
    https.sched_flags = SchedFlags(SchedFlags::SCHED1 | SchedFlags::SCHED2);
    Snapshot {
        generation: 1,
        services: vec![
            service(
                ServiceConfig::new(fwm),
                vec![dest("2001:db8::10", 0, ForwardMethod::Route, 1, 0, 0)],
            ),
            service(
                dns,
                vec![dest("198.19.1.20", 53, ForwardMethod::Route, 1, 0, 4)],
            ),
            service(
                https,
                vec![dest(
                    "198.19.1.30",
                    443,
                    gue(6080, TunnelCsum::NoCsum),
                    1,
                    3,
                    1,
                )],
            ),
            service(
                ServiceConfig::new(tcp("198.18.0.1", 80)),
                vec![
                    dest("198.19.1.11", 80, ForwardMethod::Masq, 2, 25, 260),
                    dest("198.19.1.10", 80, ForwardMethod::Masq, 1, 12, 130),
                ],
            ),
        ]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    }
}

fn cap(snap: &Snapshot) -> Listing {
    Listing::capture(snap, &StatsView::default(), 4096)
}

fn opts(detail: Detail) -> ListOptions {
    ListOptions {
        kind: ListKind::Services(detail),
        numeric: true,
        exact: false,
        nosort: false,
        json: false,
        service: None,
    }
}

fn list(snap: &Snapshot, stats: &StatsView, o: &ListOptions) -> String {
    let ListKind::Services(detail) = o.kind else {
        panic!("services listing expected");
    };
    let view = Listing::capture(snap, stats, 4096);
    list_services(&view, detail, o, &NoNames).expect("listing")
}

#[test]
fn default_listing_matches_reference_layout() {
    let snap = reference_snapshot();
    assert_eq!(
        list(&snap, &StatsView::default(), &opts(Detail::Default)),
        DEFAULT
    );
}

#[test]
fn one_service_has_no_version_header() {
    let snap = reference_snapshot();
    let mut o = opts(Detail::Default);
    o.service = Some(udp("198.18.0.1", 53));
    let want: String = DEFAULT
        .lines()
        .enumerate()
        .filter(|(i, _)| matches!(i, 1 | 2 | 8 | 9))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(list(&snap, &StatsView::default(), &o), want);
    o.service = Some(udp("198.18.0.9", 53));
    let view = Listing::capture(&snap, &StatsView::default(), 4096);
    let err = list_services(&view, Detail::Default, &o, &NoNames).unwrap_err();
    assert_eq!(err.to_string(), "No such service");
}

#[test]
fn nosort_keeps_creation_and_kernel_list_order() {
    let snap = reference_snapshot();
    let mut o = opts(Detail::Default);
    o.nosort = true;
    let text = list(&snap, &StatsView::default(), &o);
    let firsts: Vec<&str> = text
        .lines()
        .skip(3)
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        firsts,
        [
            "7",
            "[2001:db8::10]:0",
            "198.18.0.1:53",
            "198.19.1.20:53",
            "198.18.0.2:443",
            "198.19.1.30:443",
            "198.18.0.1:80",
            "198.19.1.11:80",
            "198.19.1.10:80",
        ]
    );
}

fn one_service_stats() -> (Snapshot, StatsView) {
    let key = tcp("198.18.0.1", 80);
    let mut cfg = ServiceConfig::new(key);
    cfg.persistent = None;
    let mut d = dest("198.19.1.10", 80, ForwardMethod::Masq, 1, 12, 130);
    d.config.u_threshold = 1000;
    d.shared.persistconns.store(57, Ordering::Relaxed);
    let snap = Snapshot {
        generation: 1,
        services: vec![service(cfg, vec![d])].into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    let c = |v: [u64; 5]| Counters {
        conns: v[0],
        inpkts: v[1],
        outpkts: v[2],
        inbytes: v[3],
        outbytes: v[4],
    };
    let r = |v: [u64; 5]| Rates {
        cps: v[0],
        inpps: v[1],
        outpps: v[2],
        inbps: v[3],
        outbps: v[4],
    };
    let mut stats = StatsView::default();
    stats.services.insert(
        key,
        StatsRow {
            counters: c([14209, 111769, 74613, 7207174, 123456789012]),
            rates: r([12, 340, 280, 41000, 350000]),
        },
    );
    stats.dests.insert(
        (key, ip("198.19.1.10"), 80),
        StatsRow {
            counters: c([5000, 40000, 30000, 3000000, 987654321]),
            rates: r([6, 170, 140, 20500, 175000]),
        },
    );
    (snap, stats)
}

fn without_header(s: &str) -> String {
    s.split_once('\n')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default()
}

#[test]
fn stats_exact_rate_thresholds_persistent_conn() {
    let (snap, stats) = one_service_stats();
    assert_eq!(
        without_header(&list(&snap, &stats, &opts(Detail::Stats))),
        STATS
    );
    let mut o = opts(Detail::Stats);
    o.exact = true;
    assert_eq!(without_header(&list(&snap, &stats, &o)), EXACT);
    assert_eq!(
        without_header(&list(&snap, &stats, &opts(Detail::Rate))),
        RATE
    );
    assert_eq!(
        without_header(&list(&snap, &stats, &opts(Detail::Thresholds))),
        THRESHOLDS
    );
    let mut snap = snap;
    Arc::make_mut(&mut snap.services[0]).config.persistent = Some(360);
    assert_eq!(
        without_header(&list(&snap, &stats, &opts(Detail::PersistentConn))),
        PCONN
    );
}

#[test]
fn large_number_routine_boundaries() {
    let cases: [(u64, &str); 10] = [
        (0, "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (u64::MAX, "18446744T"),
    ];
    for (v, want) in cases {
        assert_eq!(largenum(v, false), want, "{v}");
    }
    assert_eq!(largenum(12_345_678, true), " 12345678");
    assert_eq!(largenum(123_456_789, true), " 123456789");
    assert_eq!(largenum(0, true), "        0");
}

#[test]
fn tun_info_listing() {
    let mut cfg = ServiceConfig::new(tcp("198.18.0.1", 80));
    cfg.scheduler = "rr".into();
    let gre = ForwardMethod::Tunnel(TunnelConfig {
        kind: TunnelType::Gre,
        port: 0,
        csum: TunnelCsum::Csum,
    });
    let snap = Snapshot {
        generation: 1,
        services: vec![service(
            cfg,
            vec![
                dest("198.19.10.4", 80, ForwardMethod::Masq, 1, 0, 0),
                dest(
                    "198.19.10.3",
                    80,
                    ForwardMethod::Tunnel(TunnelConfig::default()),
                    1,
                    0,
                    0,
                ),
                dest("198.19.10.2", 80, gre, 1, 0, 0),
                dest("198.19.10.1", 80, gue(6080, TunnelCsum::NoCsum), 1, 0, 0),
            ],
        )]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    assert_eq!(
        without_header(&list(&snap, &StatsView::default(), &opts(Detail::TunInfo))),
        TUN
    );
}

#[test]
fn save_writes_rules_sorted_without_thresholds() {
    let mut snap = reference_snapshot();
    Arc::make_mut(&mut snap.services[3]).dests[0]
        .config
        .u_threshold = 100;
    let want = concat!(
        "-A -t 198.18.0.1:80 -s wlc\n",
        "-a -t 198.18.0.1:80 -r 198.19.1.10:80 -m -w 1\n",
        "-a -t 198.18.0.1:80 -r 198.19.1.11:80 -m -w 2\n",
        "-A -t 198.18.0.2:443 -s sh -b sh-fallback,sh-port\n",
        "-a -t 198.18.0.2:443 -r 198.19.1.30:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n",
        "-A -u 198.18.0.1:53 -s rr -p 360 -M 255.255.255.0 -o\n",
        "-a -u 198.18.0.1:53 -r 198.19.1.20:53 -g -w 1\n",
        "-A -f 7 -6 -s wlc\n",
        "-a -f 7 -6 -r [2001:db8::10]:0 -g -w 1\n",
    );
    assert_eq!(save(&cap(&snap), true, &NoNames), want);
}

#[test]
fn save_other_tunnels_pe_and_v6_mask() {
    let mut cfg = ServiceConfig::new(ServiceKey::Addr {
        protocol: Protocol::Sctp,
        addr: ip("2001:db8::1"),
        port: 5060,
    });
    cfg.scheduler = "mh".into();
    cfg.persistent = Some(60);
    cfg.netmask = 64;
    cfg.pe = Some("sip".into());
    cfg.sched_flags = SchedFlags(SchedFlags::SCHED3);
    let gre = ForwardMethod::Tunnel(TunnelConfig {
        kind: TunnelType::Gre,
        port: 0,
        csum: TunnelCsum::Csum,
    });
    let snap = Snapshot {
        generation: 1,
        services: vec![service(
            cfg,
            vec![
                dest("2001:db8::2", 5060, gre, 3, 0, 0),
                dest("2001:db8::3", 5060, gue(6080, TunnelCsum::RemCsum), 0, 0, 0),
            ],
        )]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    let want = concat!(
        "-A --sctp-service [2001:db8::1]:5060 -s mh -p 60 -M 64 --pe sip -b \n",
        "-a --sctp-service [2001:db8::1]:5060 -r [2001:db8::2]:5060 -i -w 3 --tun-type gre --tun-csum\n",
        "-a --sctp-service [2001:db8::1]:5060 -r [2001:db8::3]:5060 -i -w 0 --tun-type gue --tun-port 6080 --tun-remcsum\n",
    );
    assert_eq!(save(&cap(&snap), true, &NoNames), want);
    // The same service in a listing: "mh ()" for flag-3 only, mask as a
    // prefix length, pe after it.
    let text = list(&snap, &StatsView::default(), &opts(Detail::Default));
    assert_eq!(
        text.lines().nth(3),
        Some("SCTP [2001:db8::1]:5060 mh () persistent 60 mask 64 pe sip")
    );
}

fn conn(
    p: &str,
    expires: u32,
    state: &str,
    c: (&str, u16),
    v: (&str, u16),
    d: (&str, u16),
) -> ConnEntry {
    ConnEntry {
        protocol: p.into(),
        client: ip(c.0),
        cport: c.1,
        vaddr: ip(v.0),
        vport: v.1,
        daddr: ip(d.0),
        dport: d.1,
        state: state.into(),
        expires,
        pe: None,
    }
}

#[test]
fn connection_listing() {
    let rows = [
        conn(
            "TCP",
            899,
            "ESTABLISHED",
            ("198.18.2.3", 51234),
            ("198.18.0.1", 80),
            ("198.19.1.10", 80),
        ),
        conn(
            "TCP",
            119,
            "FIN_WAIT",
            ("198.18.2.3", 51230),
            ("198.18.0.1", 80),
            ("198.19.1.11", 80),
        ),
        conn(
            "UDP",
            299,
            "UDP",
            ("198.18.2.4", 33000),
            ("198.18.0.1", 53),
            ("198.19.1.20", 53),
        ),
        conn(
            "TCP",
            359,
            "NONE",
            ("198.18.2.0", 0),
            ("198.18.0.1", 80),
            ("198.19.1.10", 80),
        ),
        conn(
            "IP",
            359,
            "ASSURED",
            ("198.18.2.3", 0),
            ("0.0.0.7", 0),
            ("198.19.1.10", 0),
        ),
        conn(
            "TCP",
            6000,
            "ESTABLISHED",
            ("2001:db8::5", 40000),
            ("2001:db8::80", 80),
            ("2001:db8::a0a0", 80),
        ),
    ];
    assert_eq!(connections(&rows, false, true, &NoNames), CONNS);
}

#[test]
fn persistent_connection_listing_with_pe_data() {
    let mut sip = conn(
        "UDP",
        359,
        "NONE",
        ("198.18.2.4", 0),
        ("198.18.0.1", 5060),
        ("198.19.1.40", 5060),
    );
    sip.pe = Some(("sip".into(), "a84b4c76e66710".into()));
    let plain = conn(
        "TCP",
        899,
        "ESTABLISHED",
        ("198.18.2.3", 51234),
        ("198.18.0.1", 80),
        ("198.19.1.10", 80),
    );
    assert_eq!(connections(&[sip, plain], true, true, &NoNames), PCONNS);
}

#[test]
fn timeout_and_daemon_lines() {
    assert_eq!(
        timeouts(&Timeouts::default()),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let backup = DaemonStatus {
        state: DaemonState::Backup,
        mcast_interface: "uvs-c".into(),
        syncid: 5,
        maxlen: 1472,
        group: Some(ip("224.0.0.81")),
        port: 8848,
        ttl: 1,
        counters: vec![],
    };
    let master = DaemonStatus {
        state: DaemonState::Master,
        mcast_interface: "uvs-s".into(),
        syncid: 0,
        maxlen: 0,
        group: None,
        port: 0,
        ttl: 0,
        counters: vec![],
    };
    assert_eq!(
        daemons(&[backup, master]),
        concat!(
            "master sync daemon (mcast=uvs-s, syncid=0)\n",
            "backup sync daemon (mcast=uvs-c, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n",
        )
    );
    assert_eq!(daemons(&[]), "");
}

/// Deterministic names for the resolution tests.
struct Names(HashMap<IpAddr, &'static str>);

impl Resolver for Names {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.0.get(&addr).map(|s| s.to_string())
    }
    fn service(&self, port: u16, protocol: Protocol) -> Option<String> {
        match (port, protocol) {
            (80, Protocol::Tcp) => Some("http".into()),
            (443, Protocol::Tcp) => Some("https".into()),
            _ => None,
        }
    }
}

#[test]
fn names_resolved_and_truncated_33_28_but_not_ipv6() {
    let names = Names(HashMap::from([
        (ip("198.18.0.1"), "frontend-01.loadbalancer.example.test"),
        (ip("198.19.1.10"), "backend-01.servers.example.test"),
        (ip("2001:db8::1"), "frontend-v6.loadbalancer.example.test"),
        (ip("2001:db8::2"), "backend-v6.servers.example.test"),
    ]));
    let snap = Snapshot {
        generation: 1,
        services: vec![
            service(
                ServiceConfig::new(tcp("2001:db8::1", 443)),
                vec![dest("2001:db8::2", 443, ForwardMethod::Masq, 1, 0, 0)],
            ),
            service(
                ServiceConfig::new(tcp("198.18.0.1", 80)),
                vec![
                    dest("198.19.1.11", 8080, ForwardMethod::Masq, 1, 0, 0),
                    dest("198.19.1.10", 80, ForwardMethod::Masq, 1, 0, 0),
                ],
            ),
        ]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    let view = Listing::capture(&snap, &StatsView::default(), 4096);
    let mut o = opts(Detail::Default);
    o.numeric = false;
    let text = list_services(&view, Detail::Default, &o, &names).unwrap();
    assert_eq!(
        text,
        format!("IP Virtual Server version 1.2.1 (size=4096)\n{NAMES}")
    );
    // -S is never truncated.
    let saved = save(&cap(&snap), false, &names);
    assert!(saved.contains(
        "-a -t frontend-01.loadbalancer.example.test:http -r backend-01.servers.example.test:http -m -w 1\n"
    ));
}

#[test]
fn listing_applies_the_sort_quirk() {
    // Word 2 differs by >= 2^31 between the first and the last address:
    // glibc's merge sort of [C, B, A] yields C, A, B (see sort.rs).
    let keys = [
        "2001:db8::c612:1:0:0",
        "2001:db8::6400:1:0:0",
        "2001:db8::1:0:0",
    ];
    let snap = Snapshot {
        generation: 1,
        services: keys
            .iter()
            .map(|k| service(ServiceConfig::new(tcp(k, 80)), vec![]))
            .collect(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    let text = list(&snap, &StatsView::default(), &opts(Detail::Default));
    let order: Vec<&str> = text.lines().skip(3).collect();
    assert_eq!(
        order,
        [
            "TCP  [2001:db8::c612:1:0:0]:80 wlc",
            "TCP  [2001:db8::1:0:0]:80 wlc",
            "TCP  [2001:db8::6400:1:0:0]:80 wlc",
        ]
    );
}

#[test]
fn json_lists_services_with_stats() {
    let (snap, stats) = one_service_stats();
    let view = Listing::capture(&snap, &stats, 4096);
    let text = json_services(&view, &opts(Detail::Default)).unwrap();
    assert!(text.ends_with('\n'));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["conn_tab_size"], 4096);
    let s = &v["services"][0];
    assert_eq!(s["protocol"], "TCP");
    assert_eq!(s["address"], "198.18.0.1");
    assert_eq!(s["port"], 80);
    assert_eq!(s["netmask"], "255.255.255.255");
    assert_eq!(s["stats"]["outbytes"], 123456789012u64);
    let d = &s["dests"][0];
    assert_eq!(d["address"], "198.19.1.10");
    assert_eq!(d["forward"], "Masq");
    assert_eq!(d["u_threshold"], 1000);
    assert_eq!(d["active_conns"], 12);
    assert_eq!(d["persistent_conns"], 57);
    assert_eq!(d["rates"]["inbps"], 20500);
}

#[test]
fn fwmark_real_servers_keep_numeric_ports_with_names() {
    let key = ServiceKey::Fwmark {
        mark: 7,
        family: Family::V4,
    };
    let snap = Snapshot {
        generation: 1,
        services: vec![service(
            ServiceConfig::new(key),
            vec![dest("198.19.1.10", 80, ForwardMethod::Route, 1, 0, 0)],
        )]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    let names = Names(HashMap::new());
    let view = Listing::capture(&snap, &StatsView::default(), 4096);
    let mut o = opts(Detail::Default);
    o.numeric = false;
    let text = list_services(&view, Detail::Default, &o, &names).unwrap();
    assert!(text.ends_with(
        "FWM  7 wlc\n  -> 198.19.1.10:80               Route   1      0          0         \n"
    ));
    assert_eq!(
        save(&cap(&snap), false, &names),
        "-A -f 7 -s wlc\n-a -f 7 -r 198.19.1.10:80 -g -w 1\n"
    );
}

#[test]
fn list_dispatches_every_kind() {
    let snap = reference_snapshot();
    let stats = StatsView::default();
    let view = Listing::capture(&snap, &stats, 4096);
    let c = conn(
        "UDP",
        299,
        "UDP",
        ("198.18.2.4", 33000),
        ("198.18.0.1", 53),
        ("198.19.1.20", 53),
    );
    let src = ListSources {
        listing: &view,
        timeouts: Timeouts::default(),
        conns: std::slice::from_ref(&c),
        daemons: &[],
    };
    let mut o = opts(Detail::Default);
    assert_eq!(super::list(&src, &o, &NoNames).unwrap(), DEFAULT);
    o.kind = ListKind::Timeout;
    assert_eq!(
        super::list(&src, &o, &NoNames).unwrap(),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    o.json = true;
    assert_eq!(
        super::list(&src, &o, &NoNames).unwrap(),
        "{\"tcp\":900,\"tcp_fin\":120,\"udp\":300}\n"
    );
    o.kind = ListKind::Connections {
        persistent_conn: false,
    };
    let v: serde_json::Value =
        serde_json::from_str(&super::list(&src, &o, &NoNames).unwrap()).unwrap();
    assert_eq!(v["connections"][0]["client"], "198.18.2.4");
    assert_eq!(v["connections"][0]["expires"], 299);
    o.json = false;
    assert_eq!(
        super::list(&src, &o, &NoNames).unwrap().lines().nth(2),
        Some("UDP 04:59  UDP         198.18.2.4:33000   198.18.0.1:53      198.19.1.20:53")
    );
    o.kind = ListKind::Daemon;
    assert_eq!(super::list(&src, &o, &NoNames).unwrap(), "");
    o.json = true;
    assert_eq!(
        super::list(&src, &o, &NoNames).unwrap(),
        "{\"daemons\":[]}\n"
    );
}

#[test]
fn listing_survives_serialisation_for_client_side_formatting() {
    let (snap, stats) = one_service_stats();
    let listing = Listing::capture(&snap, &stats, 4096);
    let wire = serde_json::to_string(&listing).unwrap();
    let back: Listing = serde_json::from_str(&wire).unwrap();
    assert_eq!(back, listing);
    let o = opts(Detail::Stats);
    assert_eq!(
        without_header(&list_services(&back, Detail::Stats, &o, &NoNames).unwrap()),
        STATS
    );
}

#[test]
fn a_syn_proxied_service_shows_its_flag_in_listings_saves_and_json() {
    let mut cfg = ServiceConfig::new(tcp("198.18.0.5", 80));
    cfg.scheduler = "rr".into();
    cfg.synproxy = true;
    let snap = Snapshot {
        generation: 1,
        services: vec![service(
            cfg,
            vec![dest("198.19.1.10", 8080, ForwardMethod::Masq, 1, 0, 0)],
        )]
        .into(),
        timeouts: Timeouts::default(),
        ..Snapshot::default()
    };
    assert_eq!(
        save(&cap(&snap), true, &NoNames),
        concat!(
            "-A -t 198.18.0.5:80 -s rr -j enable\n",
            "-a -t 198.18.0.5:80 -r 198.19.1.10:8080 -m -w 1\n",
        )
    );
    let text = list(&snap, &StatsView::default(), &opts(Detail::Default));
    assert_eq!(text.lines().nth(3), Some("TCP  198.18.0.5:80 rr synproxy"));
}
