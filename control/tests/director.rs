//! The director as an operator meets it: ipvsadm command lines in, ipvsadm's
//! bytes and exit statuses out, with the configuration changed only by
//! accepted commands.

use std::sync::Arc;

use control::director::{Director, NoDataplane};
use control::format::NoNames;
use control::grammar::OfflineResolver;
use control::proto::Response;
use proptest::prelude::*;

fn director() -> Director<NoDataplane> {
    Director::with_resolvers(
        NoDataplane::default(),
        Box::new(NoNames),
        Box::new(OfflineResolver),
    )
}

fn run(d: &Director<NoDataplane>, line: &str) -> Response {
    let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    d.handle(&argv, None)
}

fn ok(d: &Director<NoDataplane>, line: &str) -> String {
    let r = run(d, line);
    assert_eq!(r.code, 0, "{line}: {}", r.stderr);
    r.stdout
}

fn generation(d: &Director<NoDataplane>) -> u64 {
    d.dataplane()
        .last
        .lock()
        .unwrap()
        .as_ref()
        .map(|s| s.generation)
        .unwrap()
}

#[test]
fn list_shows_services_and_servers_in_ipvsadm_layout() {
    let d = director();
    ok(&d, "-A -t 198.18.0.100:80 -s rr");
    ok(&d, "-a -t 198.18.0.100:80 -r 198.18.1.12:80 -m -w 2");
    ok(&d, "-a -t 198.18.0.100:80 -r 198.18.1.11 -m");
    ok(&d, "-A -u 198.18.0.100:53 -s wrr -p");
    ok(&d, "-a -u 198.18.0.100:53 -r 198.18.1.13:53 -g");
    let out = ok(&d, "-L -n");
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 rr
  -> 198.18.1.11:80               Masq    1      0          0         
  -> 198.18.1.12:80               Masq    2      0          0         
UDP  198.18.0.100:53 wrr persistent 360
  -> 198.18.1.13:53               Route   1      0          0         
";
    assert_eq!(out, expected);
    // Bundled options give the same bytes.
    assert_eq!(ok(&d, "-Ln"), expected);
    // One service: no version header.
    let one = ok(&d, "-L -n -t 198.18.0.100:80");
    assert!(
        one.starts_with("Prot LocalAddress:Port Scheduler Flags\n"),
        "{one}"
    );
    assert!(!one.contains("UDP"));
}

#[test]
fn kernel_refusals_print_libipvs_text_and_change_nothing() {
    let d = director();
    ok(&d, "-A -t 198.18.0.100:80 -s rr");
    let before = ok(&d, "-S -n");
    let g = generation(&d);

    let r = run(&d, "-A -t 198.18.0.100:80 -s wlc");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Service already exists\n")
    );
    let r = run(&d, "-a -t 198.18.0.101:80 -r 198.18.1.11:80");
    assert_eq!((r.code, r.stderr.as_str()), (255, "Service not defined\n"));
    let r = run(&d, "-d -t 198.18.0.100:80 -r 198.18.1.11:80");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No such destination\n"));
    let r = run(&d, "-A -t 198.18.0.102:80 -s nosuch");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Scheduler or persistence engine not found\n")
    );
    let r = run(&d, "-L -n -t 198.18.0.109:80");
    assert_eq!((r.code, r.stderr.as_str()), (1, "No such service\n"));

    assert_eq!(ok(&d, "-S -n"), before);
    assert_eq!(generation(&d), g, "nothing was published");
}

#[test]
fn grammar_errors_keep_ipvsadm_status_and_text() {
    let d = director();
    let r = run(&d, "-t 198.18.0.100:80 -A");
    assert_eq!(r.code, 255);
    assert_eq!(
        r.stderr,
        "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"
    );
    let r = run(&d, "-A -t 198.18.0.100:0");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (2, "Zero port specified for non-persistent service\n")
    );
    let r = run(&d, "-A -t 198.18.0.100:80 --bogus");
    assert_eq!(r.code, 255);
    assert!(r.stderr.contains("--bogus"), "{}", r.stderr);
    assert_eq!(ok(&d, "-S -n"), "");
}

#[test]
fn version_help_and_timeouts() {
    let d = director();
    assert_eq!(
        ok(&d, "-v"),
        "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
    );
    assert!(ok(&d, "-h").contains("--add-service"));
    assert_eq!(
        ok(&d, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    ok(&d, "--set 600 0 30");
    assert_eq!(
        ok(&d, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 600 120 30\n"
    );
}

#[test]
fn what_uvs_cannot_serve_is_refused_clearly() {
    let d = director();
    let r = run(&d, "--start-daemon master");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("synchronisation"), "{}", r.stderr);
    assert_eq!(ok(&d, "-S -n"), "");
}

/// Fwmark services are added, edited, listed, saved, restored and deleted
/// as ipvsadm does it.
#[test]
fn fwmark_services_are_listed_saved_and_restored() {
    let d = director();
    ok(&d, "-A -f 1 -s rr -p 300");
    ok(&d, "-a -f 1 -r 198.18.1.11 -m");
    ok(&d, "-a -f 1 -r 198.18.1.12:80 -m -w 2");
    ok(&d, "-A -f 7 -6 -s wlc");
    ok(&d, "-a -f 7 -6 -r [2001:db8:1::11]:0 -g");
    ok(&d, "-A -t 198.18.0.100:80 -s rr");
    let save = ok(&d, "-S -n");
    assert_eq!(
        save,
        "-A -t 198.18.0.100:80 -s rr\n\
         -A -f 1 -s rr -p 300\n\
         -a -f 1 -r 198.18.1.11:0 -m -w 1\n\
         -a -f 1 -r 198.18.1.12:80 -m -w 2\n\
         -A -f 7 -6 -s wlc\n\
         -a -f 7 -6 -r [2001:db8:1::11]:0 -g -w 1\n"
    );
    let list = ok(&d, "-L -n");
    assert!(list.contains("\nFWM  1 rr persistent 300\n"), "{list}");
    assert!(list.contains("\nFWM  7 IPv6 wlc\n"), "{list}");
    ok(&d, "-e -f 1 -r 198.18.1.11 -m -w 5");
    assert!(ok(&d, "-S -n").contains("-a -f 1 -r 198.18.1.11:0 -m -w 5\n"));
    ok(&d, "-d -f 1 -r 198.18.1.12:80");
    ok(&d, "-D -f 7 -6");
    let r = run(&d, "-D -f 7 -6");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No such service\n"));
    // The save output restores to the same table.
    let again = director();
    let saved = ok(&d, "-S -n");
    let r = again.handle(&["-R".to_string()], Some(&saved));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ok(&again, "-S -n"), saved);
}

#[test]
fn restore_with_a_bad_line_applies_nothing() {
    let d = director();
    let text = "-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:80 -w nine\n";
    let r = d.handle(&["-R".to_string()], Some(text));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("illegal weight specified\n"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert_eq!(ok(&d, "-S -n"), "");
}

#[test]
fn save_then_restore_reproduces_the_configuration() {
    let a = director();
    for line in [
        "-A -t 198.18.0.100:80 -s wlc",
        "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 3",
        "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 0",
        "-A -u 198.18.0.100:53 -s sh -b sh-fallback,sh-port",
        "-a -u 198.18.0.100:53 -r 198.18.1.13:53 -g",
        "-A -t [2001:db8::100]:443 -s mh -p 120 -M 64 -b mh-port",
        "-a -t [2001:db8::100]:443 -r [2001:db8:1::11]:443 -i --tun-type gue --tun-port 6080 --tun-csum",
        "-a -t [2001:db8::100]:443 -r 198.18.1.14:443 -i --tun-type gre",
        "-A -u 198.18.0.101:0 -s rr -p 60 -M 255.255.255.0 -o",
    ] {
        ok(&a, line);
    }
    let saved = ok(&a, "-S -n");
    let b = director();
    let r = b.handle(&["-R".to_string()], Some(&saved));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ok(&b, "-S -n"), saved);
    assert_eq!(ok(&b, "-L -n"), ok(&a, "-L -n"));
}

#[test]
fn rules_file_loads_all_or_nothing() {
    let d = director();
    let good = "# appliance rules\n-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m\n";
    d.load_rules(good).unwrap();
    assert!(ok(&d, "-S -n").contains("-r 198.18.1.11:80 -m -w 1"));

    let d = director();
    let bad = "-A -t 198.18.0.100:80 -s rr\n-A -t 198.18.0.100:80 -s rr\n";
    let e = d.load_rules(bad).unwrap_err();
    assert!(
        e.message.contains("Service already exists"),
        "{}",
        e.message
    );
    assert_eq!(
        ok(&d, "-S -n"),
        "",
        "nothing of a failed rules file is applied"
    );
}

#[test]
fn every_change_publishes_a_new_snapshot() {
    let d = director();
    let g0 = generation(&d);
    ok(&d, "-A -t 198.18.0.100:80 -s rr");
    let g1 = generation(&d);
    assert!(g1 > g0);
    ok(&d, "-L -n");
    assert_eq!(generation(&d), g1, "listing publishes nothing");
    let snap = d.snapshot();
    assert_eq!(snap.services.len(), 1);
    assert!(Arc::ptr_eq(
        &snap,
        d.dataplane().last.lock().unwrap().as_ref().unwrap()
    ));
}

/// A small command language to generate: services on a few VIPs, servers on
/// a few addresses, edits and deletions. Many generated lines are refused;
/// the property only concerns what was accepted.
fn command() -> impl Strategy<Value = String> {
    let vip = prop_oneof![
        Just("-t 198.18.0.100:80"),
        Just("-u 198.18.0.100:53"),
        Just("-t [2001:db8::100]:80"),
    ];
    let rs = prop_oneof![
        Just("198.18.1.11"),
        Just("198.18.1.12:8080"),
        Just("[2001:db8:1::11]:80"),
    ];
    let sched = prop_oneof![Just("rr"), Just("wrr"), Just("sh"), Just("mh"), Just("lc")];
    let method = prop_oneof![
        Just("-m"),
        Just("-g"),
        Just("-i"),
        Just("-i --tun-type gre --tun-csum"),
        Just("-i --tun-type gue --tun-port 6080")
    ];
    prop_oneof![
        (vip.clone(), sched.clone(), proptest::option::of(1u32..1000)).prop_map(
            |(v, s, p)| match p {
                Some(p) => format!("-A {v} -s {s} -p {p}"),
                None => format!("-A {v} -s {s}"),
            }
        ),
        (vip.clone(), sched).prop_map(|(v, s)| format!("-E {v} -s {s}")),
        (vip.clone(), rs.clone(), method.clone(), 0u32..5)
            .prop_map(|(v, r, m, w)| format!("-a {v} -r {r} {m} -w {w}")),
        (vip.clone(), rs.clone(), method, 0u32..5)
            .prop_map(|(v, r, m, w)| format!("-e {v} -r {r} {m} -w {w}")),
        (vip.clone(), rs).prop_map(|(v, r)| format!("-d {v} -r {r}")),
        vip.prop_map(|v| format!("-D {v}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn save_replayed_on_an_empty_daemon_gives_the_same_save(
        cmds in proptest::collection::vec(command(), 0..24)
    ) {
        let a = director();
        for c in &cmds {
            let _ = run(&a, c);
        }
        let saved = ok(&a, "-S -n");
        let b = director();
        let r = b.handle(&["-R".to_string()], Some(&saved));
        prop_assert_eq!(r.code, 0, "{}", r.stderr);
        prop_assert_eq!(ok(&b, "-S -n"), saved);
    }
}

/// `--sysctl` lists the tunables as `sysctl` prints them, shows one, and
/// sets one (printing the new line); the workers' snapshot carries the new
/// value. A bad name or value is one line, status 2, and changes nothing.
#[test]
fn sysctl_lists_shows_and_sets_the_ipvs_tunables() {
    let d = director();
    let all = ok(&d, "--sysctl");
    assert_eq!(all.lines().count(), uvs_model::tunables::COUNT);
    assert!(
        all.contains("net.ipv4.vs.expire_nodest_conn = 0\n"),
        "{all}"
    );
    assert!(all.contains("net.ipv4.vs.conn_reuse_mode = 1\n"), "{all}");
    assert!(all.contains("net.ipv4.vs.pmtu_disc = 1\n"), "{all}");

    let g = generation(&d);
    assert_eq!(
        ok(&d, "--sysctl expire_nodest_conn=1"),
        "net.ipv4.vs.expire_nodest_conn = 1\n"
    );
    assert_eq!(generation(&d), g + 1, "a set publishes a snapshot");
    let snap = d.dataplane().last.lock().unwrap().clone().unwrap();
    assert!(snap.tunables.expire_nodest_conn());
    assert_eq!(
        ok(&d, "--sysctl net.ipv4.vs.expire_nodest_conn"),
        "net.ipv4.vs.expire_nodest_conn = 1\n"
    );
    assert_eq!(
        ok(&d, "--sysctl=sloppy_tcp=1"),
        "net.ipv4.vs.sloppy_tcp = 1\n"
    );

    let before = ok(&d, "--sysctl");
    let g = generation(&d);
    for (line, want) in [
        ("--sysctl nosuch=1", "unknown IPVS tunable `nosuch'"),
        ("--sysctl nosuch", "unknown IPVS tunable `nosuch'"),
        (
            "--sysctl sloppy_tcp=yes",
            "invalid value `yes' for sloppy_tcp: expected 0 or 1",
        ),
        ("--sysctl secure_tcp=4", "invalid value `4' for secure_tcp"),
        ("--sysctl sync_threshold=3", "not supported by UVS"),
        ("--sysctl sloppy_tcp=1 -n", "no other option"),
        ("--sysctl sloppy_tcp=1 extra", "not also `extra'"),
        ("-L --sysctl", "invalid option `--sysctl'"),
    ] {
        let r = run(&d, line);
        assert_eq!(r.code, 2, "{line}: {r:?}");
        assert!(r.stderr.contains(want), "{line}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{line}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    assert_eq!(ok(&d, "--sysctl"), before, "nothing changed");
    assert_eq!(generation(&d), g);
}

#[test]
fn reloading_rules_makes_the_table_the_file_and_a_bad_file_changes_nothing() {
    let d = director();
    d.load_rules(
        "-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.1:80 -m\n-A -u 198.18.0.1:53\n",
    )
    .unwrap();
    ok(&d, "-a -t 198.18.0.1:80 -r 198.19.0.2:80 -m");
    let kept = d.snapshot().services[0].shared.clone();
    let s = d
        .reload_rules("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.1:80 -m -w 3\n--set 100 20 30\n")
        .unwrap();
    assert_eq!(
        (
            s.services_deleted,
            s.services_edited,
            s.servers_deleted,
            s.servers_edited
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        ok(&d, "-S -n"),
        "-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.1:80 -m -w 3\n"
    );
    assert!(
        Arc::ptr_eq(&d.snapshot().services[0].shared, &kept),
        "the service was replaced"
    );
    assert_eq!(
        ok(&d, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 20 30\n"
    );

    let before = (ok(&d, "-S -n"), generation(&d));
    for bad in [
        "-A -t 198.18.0.2:80\n-A -t 198.18.0.2:80\n",
        "-A -t 198.18.0.2:80 -s nosuch\n",
        "-A -t 198.18.0.2:80\n-a -t 198.18.0.9:80 -r 198.19.0.1\n",
        "-A -f 1\n-A -f 1\n",
        "-L -n\n",
    ] {
        assert!(d.reload_rules(bad).is_err(), "{bad:?} accepted");
        assert_eq!(
            (ok(&d, "-S -n"), generation(&d)),
            before,
            "{bad:?} changed something"
        );
    }
}

/// iptables rules with `-m set` use the sets ipset manages: the blocklist
/// case (a hash:net with a nomatch carve-out) decides per client in the
/// published program, and a set in use by a rule cannot be destroyed.
#[test]
fn rules_match_sets_and_hold_them() {
    use dataplane::rules::{ctstate, Facts, Packet, Verdict};
    use dataplane::sets::{Dirs, Match, Packet as SetPacket, SetId};
    let d = director();
    let w = |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
    let ipset = |line: &str| d.handle_ipset(&w(line), None);
    let ipt = |line: &str| d.handle_iptables("iptables", &w(line), None);
    for line in [
        "create blocked hash:net",
        "add blocked 198.18.0.0/24",
        "add blocked 198.18.0.2 nomatch",
    ] {
        assert_eq!(ipset(line).code, 0, "{line}");
    }
    let r = ipt("-A INPUT -p tcp -m set --match-set blocked src -j DROP");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        ipt("-S INPUT").stdout,
        "-P INPUT ACCEPT\n-A INPUT -p tcp -m set --match-set blocked src -j DROP\n"
    );
    let r = ipset("destroy blocked");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);

    struct SnapFacts<'a>(&'a dataplane::sets::SetTable, std::net::IpAddr);
    impl Facts for SnapFacts<'_> {
        fn ct_state(&self) -> u8 {
            ctstate::NEW
        }
        fn dst_local(&self) -> bool {
            true
        }
        fn set_match(&self, set: SetId, dirs: Dirs) -> Match {
            let p = SetPacket {
                src: self.1,
                dst: "198.18.0.100".parse().unwrap(),
                proto: 6,
                sport: 40000,
                dport: 80,
                bytes: 60,
            };
            self.0.lookup(set, dirs, &p)
        }
    }
    let snap = d.dataplane().last.lock().unwrap().clone().unwrap();
    for (client, want) in [
        ("198.18.0.3", Verdict::Drop),
        ("198.18.0.2", Verdict::Accept),
        ("198.18.1.5", Verdict::Accept),
    ] {
        let a: std::net::IpAddr = client.parse().unwrap();
        let std::net::IpAddr::V4(v4) = a else {
            unreachable!()
        };
        let pkt = Packet {
            v6: false,
            proto: 6,
            src: u128::from(u32::from(v4)),
            dst: u128::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 100))),
            sport: 40000,
            dport: 80,
            has_ports: true,
            len: 60,
            in_port: 0,
            out_port: dataplane::rules::NO_PORT,
        };
        let (v, _) = snap.rules.run(&pkt, &SnapFacts(&snap.sets, a), || true, 0);
        assert_eq!(v, want, "{client}");
    }
    assert_eq!(ipt("-D INPUT 1").code, 0);
    assert_eq!(ipset("destroy blocked").code, 0, "released with the rule");
}
