//! FULLNAT's words in the ipvsadm language: DPVS's `-b`/`--fullnat` and
//! local-address commands, UVS's `--toa`, how they list, save and restore.

use crate::command::Command;
use crate::director::{Director, NoDataplane};
use crate::format::NoNames;
use crate::grammar::{parse_with, OfflineResolver};
use uvs_model::model::ForwardMethod;
use uvs_model::ops::ConfigOp;

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn parse(line: &str) -> Result<Command, String> {
    parse_with(&argv(line), &OfflineResolver).map_err(|e| e.message)
}

fn director() -> Director<NoDataplane> {
    Director::with_resolvers(
        NoDataplane::default(),
        Box::new(NoNames),
        Box::new(OfflineResolver),
    )
}

fn run(d: &Director<NoDataplane>, line: &str) -> String {
    let r = d.handle(&argv(line), None);
    assert_eq!(r.code, 0, "{line}: {}", r.stderr);
    r.stdout
}

#[test]
fn b_is_fullnat_on_a_real_server_and_sched_flags_on_a_service() {
    for line in [
        "-a -t 198.18.0.100:80 -r 198.18.0.11:8080 -b -w 1",
        "-e -t 198.18.0.100:80 -r 198.18.0.11:8080 --fullnat",
        "-a -t 198.18.0.100:80 -r 198.18.0.11 -bw 3",
    ] {
        match parse(line) {
            Ok(
                Command::Config(ConfigOp::AddDest(_, d))
                | Command::Config(ConfigOp::EditDest(_, d)),
            ) => {
                assert_eq!(d.method, ForwardMethod::FullNat, "{line}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    match parse("-A -t 198.18.0.100:80 -s sh -b sh-port") {
        Ok(Command::Config(ConfigOp::AddService(c))) => assert_ne!(c.sched_flags.0, 0),
        other => panic!("{other:?}"),
    }
    assert!(parse("-a -t 198.18.0.100:80 -r 198.18.0.11 -b -m").is_err());
    assert!(parse("-A -t 198.18.0.100:80 --fullnat").is_err());
}

#[test]
fn local_address_commands_follow_dpvs() {
    let key = match parse("-D -t 198.18.0.100:80").unwrap() {
        Command::Config(ConfigOp::DeleteService(k)) => k,
        _ => unreachable!(),
    };
    let lip = "198.18.0.50".parse().unwrap();
    assert_eq!(
        parse("--add-laddr -z 198.18.0.50 -t 198.18.0.100:80 -F dpdk0"),
        Ok(Command::Config(ConfigOp::AddLocal(key, lip)))
    );
    assert_eq!(
        parse("-Q -t 198.18.0.100:80 -z 198.18.0.50"),
        Ok(Command::Config(ConfigOp::DelLocal(key, lip)))
    );
    assert_eq!(parse("-G"), Ok(Command::GetLocal(None)));
    assert_eq!(
        parse("-G -t 198.18.0.100:80"),
        Ok(Command::GetLocal(Some(key)))
    );
    match parse("-P -t [2001:db8::100]:80 -z 2001:db8::50") {
        Ok(Command::Config(ConfigOp::AddLocal(_, a))) => {
            assert_eq!(a, "2001:db8::50".parse::<std::net::IpAddr>().unwrap())
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "-P -t 198.18.0.100:80",
        "-P -z 198.18.0.50",
        "-P -t 198.18.0.100:80 -z 198.18.0.50:80",
        "-P -t 198.18.0.100:80 -z nonsense!",
        "-P -t 198.18.0.100:80 -z 198.18.0.50 -m",
        "-G -z 198.18.0.50",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn toa_belongs_to_services() {
    match parse("-A -t 198.18.0.100:80 -s rr --toa") {
        Ok(Command::Config(ConfigOp::AddService(c))) => assert!(c.toa),
        other => panic!("{other:?}"),
    }
    assert!(parse("-a -t 198.18.0.100:80 -r 198.18.0.11 --toa").is_err());
}

const RULES: &str = "\
-A -t 198.18.0.100:80 -s rr --toa
-a -t 198.18.0.100:80 -r 198.18.0.11:8080 -b -w 1
-a -t 198.18.0.100:80 -r 198.18.0.12:8080 -m -w 1
-P -t 198.18.0.100:80 -z 198.18.0.50
-P -t 198.18.0.100:80 -z 198.18.0.51
-A -u [2001:db8::100]:53 -s rr
-a -u [2001:db8::100]:53 -r [2001:db8::11]:53 -b -w 2
-P -u [2001:db8::100]:53 -z 2001:db8::50
";

#[test]
fn fullnat_lists_saves_and_restores() {
    let d = director();
    for line in RULES.lines() {
        run(&d, line);
    }
    let list = run(&d, "-L -n");
    assert!(list.contains("TCP  198.18.0.100:80 rr toa\n"), "{list}");
    assert!(
        list.contains("  -> 198.18.0.11:8080             FullNat 1      0          0"),
        "{list}"
    );
    let saved = run(&d, "-S -n");
    for line in RULES.lines() {
        assert!(saved.contains(line), "{line} not in\n{saved}");
    }
    let again = director();
    let r = again.handle(&argv("-R"), Some(&saved));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(&again, "-S -n"), saved);
}

#[test]
fn get_laddr_lists_each_service_and_its_addresses() {
    let d = director();
    for line in RULES.lines() {
        run(&d, line);
    }
    let out = run(&d, "-G -t 198.18.0.100:80");
    assert_eq!(
        out,
        format!(
            "{:<20} {:<8} {:<20} {:<10} {:<10}\n{:<20} {:<8} \n{:<20} {:<8} {:<20} {:<10} {:<10}\n{:<20} {:<8} {:<20} {:<10} {:<10}\n",
            "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS",
            "198.18.0.100:80", 2,
            "", "", "198.18.0.50", 0, 0,
            "", "", "198.18.0.51", 0, 0,
        )
    );
    let all = run(&d, "-G");
    assert!(all.contains("[2001:db8::100]:53"), "{all}");
    assert!(all.contains("2001:db8::50"), "{all}");
}

#[test]
fn bad_local_addresses_are_refused_and_change_nothing() {
    let d = director();
    for line in RULES.lines() {
        run(&d, line);
    }
    let before = run(&d, "-S -n");
    for (line, why) in [
        ("-P -t 198.18.0.100:80 -z 198.18.0.50", "File exists"),
        ("-P -t 198.18.0.100:80 -z 2001:db8::50", "Invalid operation"),
        ("-P -t 198.18.0.100:81 -z 198.18.0.50", "No such service"),
        (
            "-Q -t 198.18.0.100:80 -z 198.18.0.99",
            "No such local address",
        ),
        ("-P -t 198.18.0.100:80 -z 224.0.0.1", "Invalid operation"),
    ] {
        let r = d.handle(&argv(line), None);
        assert_ne!(r.code, 0, "{line}");
        assert!(r.stderr.contains(why), "{line}: {}", r.stderr);
    }
    assert_eq!(run(&d, "-S -n"), before);
    run(&d, "-Q -t 198.18.0.100:80 -z 198.18.0.51");
    assert!(!run(&d, "-S -n").contains("198.18.0.51"));
}
