//! ipset's command line against the store: messages, exit codes and the
//! save format of reference b.3.

use proptest::prelude::*;

use super::*;

const NOW: u32 = 1000;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn ipset(store: &mut ConfigStore, line: &str) -> Response {
    execute_at(store, &argv(line), None, NOW).0
}

fn restore(store: &mut ConfigStore, opts: &str, text: &str) -> Response {
    let mut a = argv(opts);
    a.push("restore".into());
    execute_at(store, &a, Some(text), NOW).0
}

/// The b.3 sample (ipset 7.17 on Linux 6.18), members in `-sorted` order,
/// without the skbinfo set UVS does not implement.
const SAMPLE: &str = "\
create hip hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x239da50b
add hip 198.18.0.1
add hip 198.18.0.11
create hnet hash:net family inet hashsize 1024 maxelem 65536 counters bucketsize 12 initval 0x53424d13
add hnet 198.18.2.4 packets 0 bytes 0
add hnet 198.19.168.0/24 packets 0 bytes 0
add hnet 198.19.168.0/30 nomatch packets 0 bytes 0
create hipp hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 300 bucketsize 12 initval 0x975508ac
add hipp 198.18.0.1,tcp:80 timeout 299
add hipp 198.18.0.1,udp:53 timeout 0
add hipp 198.18.0.3,icmp:echo-request timeout 299
add hipp 198.18.0.4,vrrp:0 timeout 299
create hnp hash:net,port family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xbf044962
add hnp 198.18.0.0/15,tcp:443 comment \"web clients\"
add hnp 198.19.0.0/16,tcp:443 nomatch
create bp bitmap:port range 0-1024
add bp 22
create h6 hash:ip family inet6 hashsize 64 maxelem 100 bucketsize 12 initval 0x70067cbc
add h6 2001:db8::1
create ls list:set size 8
add ls hip
add ls hnet
";

#[test]
fn save_reproduces_the_observed_format_byte_for_byte() {
    let mut st = ConfigStore::new();
    let r = restore(&mut st, "", SAMPLE);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let saved = ipset(&mut st, "-sorted save");
    assert_eq!(saved.stdout, SAMPLE);
    // And what was saved restores into the same state.
    let mut again = ConfigStore::new();
    assert_eq!(restore(&mut again, "", &saved.stdout).code, 0);
    assert_eq!(ipset(&mut again, "-sorted save").stdout, SAMPLE);
}

#[test]
fn list_shows_the_header_and_members() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create hip hash:ip initval 0x239da50b");
    ipset(&mut st, "add hip 198.18.0.1");
    ipset(&mut st, "create ls list:set");
    ipset(&mut st, "add ls hip");
    let out = ipset(&mut st, "list hip").stdout;
    let head = "Name: hip\nType: hash:ip\nRevision: 6\n\
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x239da50b\nSize in memory: ";
    assert!(out.starts_with(head), "{out}");
    assert!(
        out.ends_with("References: 1\nNumber of entries: 1\nMembers:\n198.18.0.1\n"),
        "{out}"
    );
    assert_eq!(ipset(&mut st, "-n list").stdout, "hip\nls\n");
    let terse = ipset(&mut st, "-t list ls").stdout;
    assert!(terse.ends_with("Number of entries: 1\n"), "{terse}");
    assert_eq!(
        ipset(&mut st, "-o save list ls").stdout,
        "create ls list:set size 8\nadd ls hip\n"
    );
}

#[test]
fn test_reports_like_ipset_with_its_exit_codes() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create hnet hash:net");
    ipset(&mut st, "add hnet 198.19.168.0/24");
    ipset(&mut st, "add hnet 198.19.168.0/30 nomatch");
    let r = ipset(&mut st, "test hnet 198.19.168.9");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (0, "Warning: 198.19.168.9 is in set hnet.\n")
    );
    let r = ipset(&mut st, "test hnet 198.19.168.1");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "198.19.168.1 is NOT in set hnet.\n")
    );
    let r = ipset(&mut st, "test hnet 198.19.168.1 nomatch");
    assert_eq!(r.code, 0);
    let r = ipset(&mut st, "-q test hnet 198.18.0.1");
    assert_eq!((r.code, r.stderr.as_str()), (1, ""));
}

#[test]
fn errors_use_ipsets_messages_and_exit_codes() {
    let mut st = ConfigStore::new();
    let e = |st: &mut ConfigStore, l: &str| {
        let r = ipset(st, l);
        (r.code, r.stderr)
    };
    let one = |m: &str| (1, format!("ipset v7.17: {m}\n"));
    let two = |m: &str| {
        (
            2,
            format!("ipset v7.17: {m}\nTry `ipset help' for more information.\n"),
        )
    };
    assert_eq!(
        e(&mut st, "add nope 1.2.3.4"),
        one("The set with the given name does not exist")
    );
    assert_eq!(e(&mut st, "create a hash:ip"), (0, String::new()));
    assert_eq!(
        e(&mut st, "create a hash:ip"),
        one("Set cannot be created: set with the same name already exists")
    );
    assert_eq!(e(&mut st, "-exist create a hash:ip"), (0, String::new()));
    assert_eq!(e(&mut st, "add a 1.2.3.4"), (0, String::new()));
    assert_eq!(
        e(&mut st, "add a 1.2.3.4"),
        one("Element cannot be added to the set: it's already added")
    );
    assert_eq!(e(&mut st, "add a 1.2.3.4 -exist"), (0, String::new()));
    assert_eq!(
        e(&mut st, "del a 1.2.3.5"),
        one("Element cannot be deleted from the set: it's not added")
    );
    assert_eq!(e(&mut st, "-! del a 1.2.3.5"), (0, String::new()));
    assert_eq!(
        e(&mut st, "add a 1.2.3.6 timeout 5"),
        one("Timeout cannot be used: set was created without timeout support")
    );
    assert_eq!(
        e(&mut st, "add a 1.2.3.6 bogus"),
        two("Unknown argument: `bogus'")
    );
    assert_eq!(
        e(&mut st, "frobnicate"),
        two("No command specified: unknown argument frobnicate")
    );
    assert_eq!(e(&mut st, ""), two("No command specified."));
    assert_eq!(
        e(&mut st, "create b bitmap:port"),
        two("Mandatory option `range' is missing")
    );
    assert_eq!(e(&mut st, "create b hash:ip"), (0, String::new()));
    assert_eq!(e(&mut st, "create l list:set"), (0, String::new()));
    assert_eq!(e(&mut st, "add l b"), (0, String::new()));
    assert_eq!(
        e(&mut st, "destroy b"),
        one("Set cannot be destroyed: it is in use by a kernel component")
    );
    assert_eq!(
        e(&mut st, "swap a l"),
        one("The sets cannot be swapped: their type does not match")
    );
    assert_eq!(
        e(&mut st, "rename a b"),
        one("Set cannot be renamed: a set with the new name already exists")
    );
    assert_eq!(e(&mut st, "rename a c"), (0, String::new()));
    assert_eq!(
        e(&mut st, "list a"),
        one("The set with the given name does not exist")
    );
    // A refusal changed nothing: b is still there, in l.
    assert_eq!(ipset(&mut st, "-n list").stdout, "c\nb\nl\n");
}

#[test]
fn a_failed_restore_keeps_the_lines_before_it_and_names_the_line() {
    let mut st = ConfigStore::new();
    let text =
        "create x hash:ip\n# comment\n\nadd x 198.18.0.1\nadd y 198.18.0.2\nadd x 198.18.0.3\n";
    let r = restore(&mut st, "", text);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "ipset v7.17: Error in line 5: The set with the given name does not exist\n"
        )
    );
    let saved = ipset(&mut st, "save x").stdout;
    assert!(saved.ends_with("\nadd x 198.18.0.1\n"), "{saved}");
    // -exist makes a repeated restore harmless.
    let again = "create x hash:ip\nadd x 198.18.0.1\n";
    assert_eq!(restore(&mut st, "", again).code, 1);
    assert_eq!(restore(&mut st, "-exist", again).code, 0);
    let r = restore(&mut st, "", "list\n");
    assert_eq!(r.code, 1);
    let r = restore(&mut st, "", "version\n");
    assert!(
        r.stderr
            .contains("Command `version' is invalid in restore mode."),
        "{}",
        r.stderr
    );
}

#[test]
fn timeouts_count_down_in_list_and_expire() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create t hash:ip timeout 300 initval 0x1");
    ipset(&mut st, "add t 198.18.0.1");
    ipset(&mut st, "add t 198.18.0.2 timeout 10");
    let at =
        |st: &mut ConfigStore, now| execute_at(st, &argv("-sorted save t"), None, now).0.stdout;
    assert!(at(&mut st, NOW + 5)
        .ends_with("add t 198.18.0.1 timeout 295\nadd t 198.18.0.2 timeout 5\n"));
    assert!(at(&mut st, NOW + 10).ends_with("add t 198.18.0.1 timeout 290\n"));
}

fn elem_v4() -> impl Strategy<Value = String> {
    (any::<u32>(), 1u8..=32).prop_map(|(a, c)| {
        let a = std::net::Ipv4Addr::from(a & if c == 32 { u32::MAX } else { !(u32::MAX >> c) });
        if c == 32 {
            a.to_string()
        } else {
            format!("{a}/{c}")
        }
    })
}

proptest! {
    /// save(restore(save(S))) == save(S) for any hash:net content, and the
    /// restored set answers tests as the original does.
    #[test]
    fn restore_of_save_is_identity(
        nets in proptest::collection::vec((elem_v4(), any::<bool>()), 0..40),
        probes in proptest::collection::vec(any::<u32>(), 1..20),
    ) {
        let mut st = ConfigStore::new();
        let mut text = String::from("create s hash:net counters comment\n");
        for (n, nm) in &nets {
            text.push_str(&format!("add s {n}{} comment \"c {n}\"\n", if *nm { " nomatch" } else { "" }));
        }
        let r = restore(&mut st, "-exist", &text);
        prop_assert_eq!(r.code, 0, "{}", r.stderr);
        let saved = ipset(&mut st, "-sorted save").stdout;
        let mut back = ConfigStore::new();
        let r = restore(&mut back, "", &saved);
        prop_assert_eq!(r.code, 0, "{}", r.stderr);
        prop_assert_eq!(&ipset(&mut back, "-sorted save").stdout, &saved);
        for p in probes {
            let ip = std::net::Ipv4Addr::from(p);
            if ip.is_unspecified() { continue; }
            let line = format!("test s {ip}");
            prop_assert_eq!(ipset(&mut st, &line).code, ipset(&mut back, &line).code);
        }
    }

    /// The fuzz target's body on ipset-shaped words: never a panic, a
    /// refused command changes nothing (see `fuzz_one`).
    #[test]
    fn fuzz_body_holds_on_ipset_like_input(
        restore in any::<bool>(),
        words in proptest::collection::vec(
            prop_oneof![
                Just("create"), Just("add"), Just("del"), Just("test"), Just("destroy"),
                Just("swap"), Just("rename"), Just("flush"), Just("list"), Just("save"),
                Just("n"), Just("p"), Just("b"), Just("l"), Just("x"), Just("hash:net"),
                Just("list:set"), Just("bitmap:port"), Just("198.18.0.0/24"),
                Just("198.18.0.1-198.18.0.9"), Just("198.18.0.1,udp:53,198.19.0.0/16"),
                Just("80"), Just("2000"), Just("nomatch"), Just("timeout"), Just("5"),
                Just("comment"), Just("\"c\""), Just("-exist"), Just("-q"), Just("before"),
                Just("range"), Just("0-80"), Just("\n"),
            ],
            0..10,
        ),
    ) {
        let text = words.join(" ");
        let mut data = vec![u8::from(restore)];
        data.extend_from_slice(text.as_bytes());
        fuzz_one(&data);
    }
}

#[test]
fn a_range_add_that_fails_midway_keeps_what_it_added_as_the_kernel_does() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create a hash:ip initval 0x1");
    ipset(&mut st, "add a 198.18.0.2");
    let before = st.generation();
    let r = ipset(&mut st, "add a 198.18.0.1-198.18.0.3");
    assert_eq!(r.code, 1);
    assert_eq!(
        ipset(&mut st, "-sorted save a").stdout,
        "create a hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x00000001\n\
         add a 198.18.0.1\nadd a 198.18.0.2\n"
    );
    assert_ne!(
        st.generation(),
        before,
        "the director publishes the partial add"
    );
}

#[test]
fn a_refused_create_is_a_refusal_that_quiet_silences_not_a_command_line_error() {
    let mut st = ConfigStore::new();
    let r = ipset(&mut st, "create x hash:foo");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "ipset v7.17: Syntax error: typename 'hash:foo' is unknown\n"
    );
    let r = ipset(&mut st, "create b bitmap:port");
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "ipset v7.17: Mandatory option `range' is missing\nTry `ipset help' for more information.\n"
    );
    for line in ["-q create x hash:foo", "-q create b bitmap:port"] {
        let r = ipset(&mut st, line);
        assert!(r.code != 0 && r.stderr.is_empty(), "{line}: {r:?}");
    }
    // The client leaves these to the daemon (which knows -q), as before.
    let args = argv("-q create x hash:foo");
    assert!(crate::ipset_client::local_answer(&args).is_none());
    assert_eq!(ipset(&mut st, "-n list").stdout, "");
}

#[test]
fn element_commands_are_read_against_the_type_of_their_set() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create ips hash:ip");
    ipset(&mut st, "create nets hash:net");
    // One word, 4 elements of a hash:ip, one of a hash:net.
    assert_eq!(ipset(&mut st, "add ips 198.18.0.0/30").code, 0);
    assert_eq!(ipset(&mut st, "add nets 198.18.0.0/30").code, 0);
    let listed = |st: &mut ConfigStore, n: &str| {
        let out = ipset(st, &format!("list {n}")).stdout;
        out.lines().last().map(str::to_string)
    };
    assert!(ipset(&mut st, "list ips")
        .stdout
        .contains("Number of entries: 4\n"));
    assert_eq!(listed(&mut st, "nets").as_deref(), Some("198.18.0.0/30"));
    // nomatch exists only where the type has it: a command-line error
    // elsewhere, found once the set's type is known.
    let r = ipset(&mut st, "add ips 198.18.0.9 nomatch");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            "ipset v7.17: Unknown argument: `nomatch'\nTry `ipset help' for more information.\n"
        )
    );
    assert_eq!(ipset(&mut st, "add nets 198.18.0.0/31 nomatch").code, 0);
    let r = ipset(&mut st, "test nets 198.18.0.1");
    assert_eq!(r.stderr, "198.18.0.1 is NOT in set nets.\n");
    let r = ipset(&mut st, "add nope 198.18.0.1");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "ipset v7.17: The set with the given name does not exist\n"
        )
    );
}

/// `fuzz_one` runs every input on one store per thread: whatever an input
/// did to the sets, the next one starts on sets that save exactly as a
/// new store with the fuzz setup restored into it.
#[test]
fn a_fuzz_input_starts_on_the_pristine_sets_whatever_ran_before() {
    let mut fresh = ConfigStore::new();
    let (r, _) = execute_at(&mut fresh, &argv("restore"), Some(FUZZ_SETUP), 1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fresh_save = fuzz_save(&mut fresh);
    assert!(fresh_save.contains("add l n"), "{fresh_save}");
    for input in [
        &b"\0destroy"[..],
        b"\0flush",
        b"\0add n 198.18.1.0/24 comment x",
        b"\0add b 80",
        b"\0rename p q",
        b"\0swap n p",
        b"\0del l n",
        b"\x01create x hash:ip\nadd x 198.18.0.1\nadd l x\nflush n\n",
    ] {
        fuzz_one(input);
        FUZZ_STAGE.with(|stage| {
            let stage = &mut *stage.borrow_mut();
            assert_eq!(stage.pristine_save, fresh_save);
            let store = stage.start();
            assert_eq!(fuzz_save(store), fresh_save, "after {input:?}");
        });
    }
}

/// `ipset test` of a host in a hash:net set with counters counted a packet
/// (of 0 bytes) on the element it hit: `packets` grew in the listing. The
/// kernel's userspace test counts nothing. Found by the `ipset` fuzz target
/// once its inputs shared the starting sets (`\0test n 198.18.0.1`, then a
/// refused command whose sets no longer saved as at the start).
#[test]
fn a_test_does_not_count_on_the_element_it_hits() {
    let mut st = ConfigStore::new();
    ipset(&mut st, "create n hash:net counters");
    ipset(&mut st, "add n 198.18.0.0/16");
    let before = ipset(&mut st, "save").stdout;
    assert!(before.contains("packets 0 bytes 0"), "{before}");
    assert_eq!(ipset(&mut st, "test n 198.18.0.1").code, 0);
    assert_eq!(ipset(&mut st, "save").stdout, before);
    fuzz_one(b"\0test n 198.18.0.1");
}
