//! The parser against the reference: every file here goes through
//! Debian's `keepalived -t -f FILE` and through `checker::conf::load`, and
//! the two must agree on accepting or refusing it. The few places where
//! UVS is stricter on purpose (things it cannot do yet, or would do
//! wrongly) are listed apart, with the message UVS gives.
//!
//! Needs the `keepalived` package (scripts/setup and .ci/run install it).

use std::process::Command;

/// A virtual server with one real server; `vs` and `rs` lines go inside.
fn vs(vs: &str, rs: &str) -> String {
    format!(
        "virtual_server 198.18.0.100 80 {{\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{vs}\n    real_server 198.18.1.11 80 {{\n{rs}\n    }}\n}}\n"
    )
}

/// Files both must accept.
fn good() -> Vec<(&'static str, String)> {
    vec![
        ("plain", vs("", "")),
        ("fractional delay_loop, weight 2", vs("delay_loop 2.5", "weight 2")),
        ("bare persistence_timeout", vs("persistence_timeout", "")),
        ("granularity as mask", vs("persistence_timeout 60\npersistence_granularity 255.255.255.0", "")),
        ("virtualhost and HTTP_GET", vs("virtualhost www.example.com", "HTTP_GET {\n url {\n  path /\n  status_code 200 301-302\n }\n http_protocol 1.1\n}")),
        ("SSL_GET with SNI", vs("", "SSL_GET {\n url {\n  path /\n }\n enable_sni\n}")),
        ("every TCP_CHECK option", vs("", "TCP_CHECK {\n connect_ip 198.18.1.12\n connect_port 81\n bindto 198.18.1.200\n bind_port 4000\n fwmark 3\n warmup 0\n alpha\n log_all_failures\n}")),
        ("DR", vs("lb_kind DR", "")),
        ("fwmark entries in a group, with and without a family", "virtual_server_group g {\n fwmark 7\n fwmark 8 inet\n}\nvirtual_server group g {\n lb_algo rr\n lb_kind DR\n persistence_timeout 60\n real_server 198.18.1.13 {\n  TCP_CHECK {\n   connect_port 443\n  }\n }\n}\n".into()),
        ("fwmark DR, real servers without ports", "virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n persistence_timeout 60\n real_server 198.18.1.13 {\n  TCP_CHECK {\n   connect_port 443\n  }\n }\n}\n".into()),
        ("TUN gue", vs("lb_kind TUN type gue port 6080", "")),
        ("lowercase protocol", vs("protocol udp", "")),
        ("mh flags", vs("lb_algo mh\nmh-port\nmh-fallback", "")),
        ("ops on UDP", vs("protocol UDP\nops", "")),
        ("sorry server options", vs("sorry_server 198.18.1.50 80\nsorry_server_inhibit\nsorry_server_lvs_method DR", "")),
        ("alpha omega and booleans", vs("alpha\nomega", "alpha off\ninhibit_on_failure yes")),
        ("thresholds", vs("", "uthreshold 10\nlthreshold 5")),
        ("timers", vs("delay_loop 1\nretry 2\ndelay_before_retry 0.5\nconnect_timeout 0.5\nwarmup 2", "")),
        ("braces on one line", vs("", "TCP_CHECK { connect_port 80 }")),
        ("status_code without codes", vs("", "HTTP_GET {\n url {\n  path /\n  status_code\n }\n}")),
        ("missing notify program (dropped)", vs("", "notify_up /nonexistent/x")),
        ("IPv6", "virtual_server 2001:db8::100 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 2001:db8:1::11 80 {\n  TCP_CHECK {\n  }\n }\n}\n".into()),
        ("brace on the next line", "virtual_server 198.18.0.100 80\n{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80\n {\n }\n}\n".into()),
        ("comments", "virtual_server 198.18.0.100 80 { # c\n lb_algo rr ! x\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 { TCP_CHECK { connect_port 80 } }\n}\n".into()),
        ("group", "virtual_server_group g {\n 198.18.0.100 80\n 198.18.0.101-103 80\n}\nvirtual_server group g {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 {\n }\n}\n".into()),
        ("scripts with script security", format!("global_defs {{\n enable_script_security\n script_user root\n}}\n{}", vs("quorum_up \"/bin/true up\"", "notify_down /bin/true\nMISC_CHECK {\n misc_path \"/bin/true 'a b'\"\n misc_timeout 3\n misc_dynamic\n}"))),
    ]
}

/// Files both must refuse.
fn bad() -> Vec<(&'static str, String)> {
    vec![
        ("unknown keyword", vs("", "wieght 1")),
        ("protocol on an fwmark service", "virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 198.18.1.13 {\n }\n}\n".into()),
        ("the only server at weight 0 (quorum 1 unreachable)", vs("", "weight 0")),
        ("unknown scheduler", vs("lb_algo xx", "")),
        ("persistence 0", vs("persistence_timeout 0", "")),
        ("persistence too long", vs("persistence_timeout 2678401", "")),
        ("quorum above the total weight", vs("quorum 5", "weight 2")),
        ("quorum 0", vs("quorum 0", "")),
        ("hysteresis >= quorum", vs("hysteresis 3", "")),
        ("delay_loop 0", vs("delay_loop 0", "")),
        ("negative delay_loop", vs("delay_loop -1", "")),
        ("delay_loop not a number", vs("delay_loop abc", "")),
        ("sorry_server without address", vs("sorry_server", "")),
        ("negative weight", vs("", "weight -1")),
        ("weight too large", vs("", "weight 2147483648")),
        ("bad boolean", vs("", "inhibit_on_failure maybe")),
        ("scripts without script security", vs("", "notify_up /bin/true")),
        ("MISC_CHECK without misc_path", vs("", "MISC_CHECK {\n misc_timeout 3\n}")),
        ("status code 600", vs("", "HTTP_GET {\n url {\n  path /\n  status_code 600\n }\n}")),
        ("status code 99", vs("", "HTTP_GET {\n url {\n  path /\n  status_code 99\n }\n}")),
        ("short digest", vs("", "HTTP_GET {\n url {\n  path /\n  digest 123\n }\n}")),
        ("HTTP_GET without url", vs("", "HTTP_GET {\n}")),
        ("connect_port 70000", vs("", "TCP_CHECK {\n connect_port 70000\n}")),
        ("bad connect_ip", vs("", "TCP_CHECK {\n connect_ip 198.18.1.300\n}")),
        ("negative retry", vs("", "TCP_CHECK {\n retry -1\n}")),
        ("misc_path in TCP_CHECK", vs("", "TCP_CHECK {\n misc_path /bin/true\n}")),
        ("nb_get_retry", vs("", "HTTP_GET {\n nb_get_retry 3\n url {\n  path /\n }\n}")),
        ("ipip with checksum option", vs("lb_kind TUN type ipip csum", "")),
        ("ops on TCP", vs("ops", "")),
        ("lowercase method", vs("lb_kind dr", "")),
        ("routing method FNAT", vs("lb_kind FNAT", "")),
        ("connect_timeout 0", vs("connect_timeout 0", "")),
        ("no protocol", "virtual_server 198.18.0.100 80 {\n lb_algo rr\n lb_kind NAT\n real_server 198.18.1.11 80 {\n }\n}\n".into()),
        ("no real server", "virtual_server 198.18.0.100 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n}\n".into()),
        ("bad address", "virtual_server 198.18.0.300 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 {\n }\n}\n".into()),
        ("port 70000", "virtual_server 198.18.0.100 70000 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 {\n }\n}\n".into()),
        ("missing brace", "virtual_server 198.18.0.100 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 {\n }\n".into()),
        ("extra brace", format!("{}}}\n", vs("", ""))),
        ("unknown block", format!("foo {{\n}}\n{}", vs("", ""))),
        ("duplicate real server", vs("", "}\nreal_server 198.18.1.11 80 {")),
        ("family mismatch", vs("", "}\nreal_server 2001:db8::1 80 {")),
        ("DR with another port", vs("lb_kind DR", "}\nreal_server 198.18.1.12 8080 {")),
    ]
}

/// Files keepalived accepts and UVS refuses on purpose, with UVS's reason.
fn uvs_stricter() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("fwmark check without a port", "virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n real_server 198.18.1.13 {\n  TCP_CHECK {\n  }\n }\n}\n".into(), "has no port"),
        ("undefined group", "virtual_server group nope {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n}\n".into(), "virtual_server_group 'nope' is not defined"),
        ("mixed families in a group", "virtual_server_group g {\n 198.18.0.100 80\n 2001:db8::1 80\n}\nvirtual_server group g {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.11 80 {\n }\n}\n".into(), "mixes IPv4 and IPv6"),
        ("a service defined twice", format!("{}{}", vs("", ""), vs("", "weight 2")), "repeats a service defined before"),
        ("DNS_CHECK", vs("", "DNS_CHECK {\n}"), "DNS_CHECK is not supported by UVS yet"),
    ]
}

fn keepalived_accepts(path: &std::path::Path) -> bool {
    Command::new("keepalived")
        .arg("-t")
        .arg("-f")
        .arg(path)
        .output()
        .expect("keepalived is installed (Debian package keepalived)")
        .status
        .success()
}

#[test]
fn uvs_and_keepalived_agree_on_what_is_a_valid_file() {
    let dir = std::env::temp_dir().join(format!("uvs-agree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut disagreements = Vec::new();
    let mut check = |name: &str, text: &str, want_ok: bool, uvs_reason: Option<&str>| {
        let path = dir.join("keepalived.conf");
        std::fs::write(&path, text).unwrap();
        let k = keepalived_accepts(&path);
        let u = checker::conf::load(&path);
        let k_want = want_ok || uvs_reason.is_some();
        if k != k_want {
            disagreements.push(format!("{name}: keepalived -t says {k}, expected {k_want}"));
        }
        match (&u, want_ok, uvs_reason) {
            (Ok(_), true, _) => {}
            (Err(e), false, Some(r)) if e.to_string().contains(r) => {}
            (Err(_), false, None) => {}
            (r, _, _) => disagreements.push(format!("{name}: UVS says {r:?}")),
        }
    };
    for (name, text) in good() {
        check(name, &text, true, None);
    }
    for (name, text) in bad() {
        check(name, &text, false, None);
    }
    for (name, text, reason) in uvs_stricter() {
        check(name, &text, false, Some(reason));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
