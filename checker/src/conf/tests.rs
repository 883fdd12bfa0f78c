use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// wave2's sample without its fwmark parts (which UVS refuses), with the
/// script security keepalived requires for MISC_CHECK.
const SAMPLE: &str = r#"
global_defs {
    router_id uvs1
    lvs_flush
    enable_script_security
    script_user root
}
virtual_server_group web_vips {
    198.18.0.10 80
    198.18.0.20-21 80
}
virtual_server 198.18.0.10 443 {
    delay_loop 6
    lvs_sched wlc
    lvs_method NAT
    protocol TCP
    persistence_timeout 300
    quorum 2
    hysteresis 0
    alpha
    sorry_server 198.18.1.250 443
    inhibit_on_failure
    real_server 198.18.1.11 443 {
        weight 3
        HTTP_GET {
            url {
                path /healthz
                status_code 200-299 304
            }
            url {
                path /index.html
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            connect_timeout 3
            retry 2
            delay_before_retry 2
        }
    }
    real_server 198.18.1.12 443 {
        weight 1
        TCP_CHECK {
            connect_port 443
            connect_timeout 2
        }
        MISC_CHECK {
            misc_path "/usr/local/bin/check.sh 198.18.1.12 'two words'"
            misc_timeout 5
            misc_dynamic
        }
    }
}
virtual_server group web_vips {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 198.18.1.13 {
        TCP_CHECK {
            connect_port 80
        }
    }
}
"#;

fn errors(text: &str) -> Vec<String> {
    match parse_text("t.conf", text) {
        Ok(_) => vec![],
        Err(e) => e.diags.iter().map(|d| d.to_string()).collect(),
    }
}

fn vs(body: &str, rs: &str) -> String {
    format!(
        "virtual_server 198.18.0.100 80 {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n{body}\n real_server 198.18.1.11 80 {{\n{rs}\n }}\n}}\n"
    )
}

#[test]
fn the_sample_parses_with_keepalived_defaults_and_inheritance() {
    let c = parse_text("t.conf", SAMPLE).unwrap();
    assert!(c.global.lvs_flush);
    assert_eq!(c.virtual_servers.len(), 2);
    let v = &c.virtual_servers[0];
    assert_eq!(v.services, [Svc::Addr("198.18.0.10:443".parse().unwrap())]);
    assert_eq!((v.quorum, v.persistence), (2, Some(300)));
    let sorry = v.sorry.as_ref().unwrap();
    assert_eq!(
        (sorry.addr.to_string(), sorry.port),
        ("198.18.1.250".into(), Some(443))
    );
    let rs1 = &v.real_servers[0];
    assert!(rs1.inhibit, "inhibit_on_failure inherited from the VS");
    let http = &rs1.checkers[0];
    assert!(http.alpha, "alpha inherited from the VS");
    assert_eq!(http.timing.delay_loop, Duration::from_secs(6));
    assert_eq!(http.timing.retry, 2);
    assert_eq!(http.timing.delay_before_retry, Duration::from_secs(2));
    let CheckKind::Http(h) = &http.kind else {
        panic!()
    };
    assert_eq!(h.target.connect_timeout, Duration::from_secs(3));
    assert_eq!(h.urls[0].status, [(200, 299), (304, 304)]);
    assert_eq!(h.urls[1].status, [(200, 299)]);
    assert_eq!(
        h.urls[1].digest.as_deref(),
        Some("9b3a0c85a887a256d6939da88aabd8cd")
    );
    assert_eq!(h.urls[0].host, "198.18.1.11:443");
    let rs2 = &v.real_servers[1];
    let tcp = &rs2.checkers[0];
    // TCP_CHECK's own defaults where nothing is inherited.
    assert_eq!(tcp.timing.retry, 1);
    assert_eq!(tcp.timing.delay_before_retry, Duration::from_secs(1));
    let CheckKind::Misc(m) = &rs2.checkers[1].kind else {
        panic!()
    };
    assert_eq!(
        m.script.argv,
        ["/usr/local/bin/check.sh", "198.18.1.12", "two words"]
    );
    assert_eq!(m.timeout, Duration::from_secs(5));
    assert!(m.dynamic);
    assert_eq!(
        rs2.checkers[1].timing.retry, 0,
        "MISC_CHECK retries 0 by default"
    );
    let g = &c.virtual_servers[1];
    assert_eq!(g.name, "group web_vips");
    assert_eq!(g.services.len(), 3);
    assert_eq!(g.services[2], Svc::Addr("198.18.0.21:80".parse().unwrap()));
    assert_eq!(g.real_servers[0].port, None, "DR takes each service's port");
    assert_eq!(
        g.real_servers[0].checkers[0].timing.delay_loop,
        Duration::from_secs(60)
    );
}

#[test]
fn mistakes_keepalived_rejects_are_rejected_at_their_line() {
    let cases: &[(&str, &str)] = &[
        (&vs("", "wieght 1"), "t.conf:7: unknown keyword 'wieght'"),
        (&vs("lb_algo xx", ""), "t.conf:5: invalid lvs_scheduler 'xx'"),
        (&vs("persistence_timeout 0", ""), "t.conf:5: persistence_timeout '0' outside range [1, 2678400]"),
        (&vs("delay_loop 0", ""), "t.conf:5: delay_loop '0' invalid: must be more than 0"),
        (&vs("delay_loop abc", ""), "t.conf:5: delay_loop 'abc' invalid: not a number of seconds"),
        (&vs("quorum 5", "weight 2"), "t.conf:1: quorum 5 of virtual server 198.18.0.100:80 exceeds the total weight of its real servers (2)"),
        (&vs("hysteresis 3", ""), "t.conf:1: hysteresis 3 >= quorum 1 in virtual server 198.18.0.100:80"),
        (&vs("", "weight -1"), "t.conf:7: weight '-1' outside range [0, 2147483647]"),
        (&vs("", "inhibit_on_failure maybe"), "t.conf:7: invalid inhibit_on_failure parameter maybe"),
        (&vs("", "TCP_CHECK {\n connect_port 70000\n}"), "t.conf:8: invalid port '70000' for connect_port (1-65535)"),
        (&vs("", "HTTP_GET {\n url {\n path /\n status_code 600\n }\n}"), "t.conf:10: invalid HTTP_GET status code '600'"),
        (&vs("", "HTTP_GET {\n url {\n path /\n digest 123\n }\n}"), "t.conf:10: digest '123' character length should be 32 rather than 3"),
        (&vs("", "HTTP_GET {\n}"), "t.conf:7: HTTP/SSL_GET checker has no urls specified"),
        (&vs("", "MISC_CHECK {\n misc_timeout 3\n}"), "t.conf:7: no misc_path has been specified for MISC_CHECK"),
        (&vs("sorry_server", ""), "t.conf:5: missing a parameter after keyword 'sorry_server'"),
        (&vs("lb_kind FNAT", ""), "t.conf:5: unknown [FNAT] routing method (NAT, DR or TUN)"),
        (&vs("", "notify_up /bin/true"), "t.conf:7: SECURITY VIOLATION - scripts are configured but global_defs has no enable_script_security"),
        ("virtual_server 198.18.0.100 80 {\n lb_algo rr\n lb_kind NAT\n}\n", "t.conf:1: virtual server 198.18.0.100:80: no protocol set (keepalived would default to UDP)"),
        ("virtual_server 198.18.0.100 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n}\n", "t.conf:1: virtual server 198.18.0.100:80 has no real servers"),
        ("virtual_server 198.18.0.300 80 {\n}\n", "t.conf:1: invalid IP address '198.18.0.300' for virtual_server"),
        ("foo {\n}\n", "t.conf:1: unknown keyword 'foo'"),
        ("virtual_server 198.18.0.100 80 {\n", "t.conf:1: missing '}' for the block 'virtual_server' opened here"),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert!(
            got.iter().any(|g| g == want),
            "for\n{text}\nwanted {want:?}, got {got:?}"
        );
    }
}

#[test]
fn what_uvs_cannot_do_yet_is_said_as_such() {
    let net = "virtual_server_group g {\n 198.18.1.0/29 80\n}\n";
    assert_eq!(
        errors(net),
        ["t.conf:2: address/prefix entries of a virtual_server_group are not supported by UVS yet"]
    );
    let dns = vs("", "DNS_CHECK {\n}");
    assert_eq!(
        errors(&dns),
        ["t.conf:7: DNS_CHECK is not supported by UVS yet"]
    );
}

#[test]
fn blocks_of_other_keepalived_parts_are_skipped() {
    let text = format!(
        "vrrp_instance VI_1 {{\n state BACKUP\n interface eth0\n virtual_router_id 51\n}}\n{}",
        vs("", "")
    );
    let c = parse_text("t.conf", &text).unwrap();
    assert_eq!(c.virtual_servers.len(), 1);
    assert!(c.virtual_servers[0].real_servers[0].checkers.is_empty());
}

#[test]
fn persistence_granularity_becomes_a_netmask() {
    let gran = |g: &str| {
        parse_text(
            "t",
            &vs(
                &format!("persistence_timeout 60\npersistence_granularity {g}"),
                "",
            ),
        )
        .map(|mut c| c.virtual_servers.remove(0).granularity)
        .map_err(|e| e.to_string())
    };
    assert_eq!(gran("255.255.255.0"), Ok(Some("255.255.255.0".into())));
    assert_eq!(gran("24"), Ok(Some("255.255.255.0".into())));
    assert_eq!(gran("32"), Ok(Some("255.255.255.255".into())));
    assert!(gran("33").is_err());
    assert!(gran("x").is_err());
}

#[test]
fn timers_take_fractions_down_to_microseconds() {
    use super::parse::parse_seconds;
    assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
    assert_eq!(parse_seconds("0.000001"), Some(Duration::from_micros(1)));
    assert_eq!(parse_seconds(".5"), Some(Duration::from_millis(500)));
    for bad in ["", ".", "-1", "1e3", "x", "1.2.3", "+1"] {
        assert_eq!(parse_seconds(bad), None, "{bad}");
    }
}

#[test]
fn commands_split_like_keepalived() {
    use super::parse::split_command;
    assert_eq!(
        split_command(r#"/bin/x a 'b c' "d e" f\ g"#),
        ["/bin/x", "a", "b c", "d e", "f g"]
    );
    assert!(split_command("   ").is_empty());
}

/// Words keepalived.conf is made of, to build plausible broken files.
const WORDS: &[&str] = &[
    "{",
    "}",
    "virtual_server",
    "real_server",
    "198.18.0.100",
    "198.18.1.11",
    "80",
    "0",
    "-1",
    "70000",
    "lb_algo",
    "rr",
    "lb_kind",
    "NAT",
    "DR",
    "TUN",
    "type",
    "gue",
    "port",
    "protocol",
    "TCP",
    "UDP",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "url",
    "path",
    "/",
    "status_code",
    "200-299",
    "digest",
    "misc_path",
    "\"/bin/true\"",
    "quorum",
    "hysteresis",
    "sorry_server",
    "inhibit_on_failure",
    "weight",
    "delay_loop",
    "1.5",
    "retry",
    "virtual_server_group",
    "group",
    "g",
    "fwmark",
    "include",
    "#",
    "!",
    "alpha",
    "omega",
    "2001:db8::1",
    "198.18.0.1-5",
    "persistence_timeout",
    "\n",
    "\n",
    "\n",
];

proptest! {
    /// The fuzz target's body: parser, then state machine and ipvsadm
    /// lines for whatever it accepts.
    #[test]
    fn fuzz_body_never_panics(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 0..120),
        tail in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        let mut data = words.join(" ").into_bytes();
        data.extend(tail);
        crate::fuzz_one(&data);
        crate::fuzz_one(SAMPLE.as_bytes());
    }

    #[test]
    fn any_text_is_parsed_or_refused_without_panic(text in "\\PC{0,400}") {
        let _ = parse_text("p.conf", &text);
    }

    #[test]
    fn any_keepalived_like_word_soup_is_parsed_or_refused_without_panic(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 0..120)
    ) {
        let text = words.join(" ");
        match parse_text("p.conf", &text) {
            Ok(c) => {
                for v in &c.virtual_servers {
                    prop_assert!(!v.real_servers.is_empty());
                    prop_assert!(!v.services.is_empty());
                }
            }
            Err(e) => prop_assert!(!e.diags.is_empty()),
        }
    }

    #[test]
    fn a_valid_file_with_one_line_damaged_is_refused_or_still_valid(
        line in 0usize..70, junk in "[a-z_{} 0-9.]{0,12}"
    ) {
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        let at = line % lines.len();
        lines[at] = &junk;
        let _ = parse_text("p.conf", &lines.join("\n"));
    }
}

/// A group's `fwmark N [inet|inet6]` lines: each becomes an fwmark service
/// sharing the group's real servers and checkers; without a family the
/// mark takes its real servers' family, as a `virtual_server fwmark` does.
#[test]
fn group_fwmark_entries_become_fwmark_services() {
    use crate::director::service_argv;
    let conf = |entries: &str, rs: &str| {
        format!(
            "virtual_server_group web {{\n{entries}\n}}\nvirtual_server group web {{\n delay_loop 5\n lb_algo rr\n lb_kind DR\n persistence_timeout 60\n real_server {rs} {{\n TCP_CHECK {{\n connect_port 80\n }}\n }}\n}}\n"
        )
    };
    let c = parse_text("t.conf", &conf(" fwmark 7\n fwmark 8 inet", "198.18.1.13")).unwrap();
    let v = &c.virtual_servers[0];
    assert_eq!(v.name, "group web");
    assert_eq!(
        v.services,
        [
            Svc::Mark { mark: 7, v6: false },
            Svc::Mark { mark: 8, v6: false }
        ]
    );
    let argv: Vec<String> = v
        .services
        .iter()
        .map(|s| service_argv(v, *s, false).join(" "))
        .collect();
    assert_eq!(argv, ["-A -f 7 -s rr -p 60", "-A -f 8 -s rr -p 60"]);
    // IPv6 real servers: the unmarked entry follows them.
    let c = parse_text(
        "t.conf",
        &conf(" fwmark 7\n fwmark 8 inet6", "2001:db8:1::13"),
    )
    .unwrap();
    assert_eq!(
        c.virtual_servers[0].services,
        [
            Svc::Mark { mark: 7, v6: true },
            Svc::Mark { mark: 8, v6: true }
        ]
    );
    // A family that disagrees with the other services is refused.
    let e = errors(&conf(" fwmark 7\n fwmark 8 inet6", "198.18.1.13"));
    assert!(e.iter().any(|l| l.contains("mixes IPv4 and IPv6")), "{e:?}");
    assert_eq!(
        errors(&conf(" fwmark 0", "198.18.1.13"))[0],
        "t.conf:2: virtual_server_group fwmark: invalid mark '0'"
    );
    assert_eq!(
        errors(&conf(" fwmark 7 inet5", "198.18.1.13"))[0],
        "t.conf:2: virtual_server_group fwmark 7: unknown address family 'inet5'"
    );
}

/// keepalived's fwmark virtual server: DR real servers without ports,
/// checked on their own ports with connect_port; uvsadm gets `-f MARK`
/// (`-6` for IPv6) and port-less real servers.
#[test]
fn fwmark_virtual_servers_become_fwmark_services() {
    use crate::director::{action_argv, service_argv};
    use crate::state::{Action, Dest};
    let conf = |rs: &str, check: &str| {
        format!(
            "virtual_server fwmark 7 {{\n delay_loop 5\n lb_algo wlc\n lb_kind DR\n persistence_timeout 300\n real_server {rs} {{\n weight 2\n TCP_CHECK {{\n{check}\n }}\n }}\n}}\n"
        )
    };
    let c = parse_text("t.conf", &conf("198.18.1.13", " connect_port 443")).unwrap();
    let v = &c.virtual_servers[0];
    assert_eq!(v.name, "fwmark 7");
    assert_eq!(v.services, [Svc::Mark { mark: 7, v6: false }]);
    let r = &v.real_servers[0];
    assert_eq!((r.port, &r.method), (None, &Method::Dr));
    match &r.checkers[0].kind {
        CheckKind::Tcp(t) => assert_eq!(t.addr, "198.18.1.13:443".parse().unwrap()),
        k => panic!("{k:?}"),
    }
    let svc = v.services[0];
    assert_eq!(
        service_argv(v, svc, false).join(" "),
        "-A -f 7 -s wlc -p 300"
    );
    assert_eq!(
        action_argv(v, svc, &Action::Add(Dest::Real(0), 2))
            .unwrap()
            .join(" "),
        "-a -f 7 -r 198.18.1.13 -g -w 2"
    );
    // IPv6 real servers make an IPv6 fwmark service.
    let c = parse_text("t.conf", &conf("2001:db8:1::13", " connect_port 443")).unwrap();
    let v = &c.virtual_servers[0];
    assert_eq!(v.services, [Svc::Mark { mark: 7, v6: true }]);
    assert_eq!(
        action_argv(v, v.services[0], &Action::Del(Dest::Real(0)))
            .unwrap()
            .join(" "),
        "-d -f 7 -6 -r 2001:db8:1::13"
    );
    // No port anywhere: the check has nothing to connect to.
    let e = errors(&conf("198.18.1.13", ""));
    assert!(e.iter().any(|l| l.contains("has no port")), "{e:?}");
    assert_eq!(
        errors("virtual_server fwmark x {\n}\n"),
        ["t.conf:1: virtual_server fwmark: invalid mark 'x'"]
    );
}
