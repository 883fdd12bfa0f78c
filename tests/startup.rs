//! Bad start-up input ends uvsd with one clear line on stderr and a
//! non-zero status, never a panic trace, and leaves nothing behind.

mod common;

use std::process::Command;

use common::{leftovers, Scratch, UVSD};

/// Runs uvsd with `args`; returns (status code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(UVSD).args(args).output().expect("uvsd runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_clear_line(stderr: &str, want: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line, got: {stderr:?}");
    assert!(lines[0].starts_with("uvsd: "), "{stderr:?}");
    assert!(lines[0].contains(want), "want {want:?} in {stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr:?}"
    );
}

/// Writes `body` plus a control socket of the test's own (tests run in
/// parallel, and a second uvsd on one socket is refused).
fn config(dir: &Scratch, name: &str, body: &str) -> String {
    let p = dir.path(name);
    let socket = dir.path("ctl.sock");
    let body = if body.contains("[control]") {
        body.to_string()
    } else {
        format!("{body}\n[control]\nsocket = \"{}\"\n", socket.display())
    };
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn missing_config_argument_and_missing_file() {
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "no config given");

    let (code, err) = run(&["--config", "/nonexistent/uvs.toml"]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "cannot read config /nonexistent/uvs.toml");

    let (code, err) = run(&["--confg", "x"]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "--confg");
}

#[test]
fn unknown_key_is_named() {
    let d = Scratch::new("unknown-key");
    let c = config(
        &d,
        "c.toml",
        "[eal]\nargs = []\n[workers]\nlcores = [1]\nthreads = 2\n\
         [[port]]\nname = \"a\"\ndevice = \"net_null0\"\n",
    );
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "unknown field `threads`");
}

#[test]
fn bad_sysctl_is_named() {
    let d = Scratch::new("bad-sysctl");
    for (line, want) in [
        (
            "expire_nodest_con = 1",
            "sysctl.expire_nodest_con: unknown IPVS tunable",
        ),
        ("drop_entry = 7", "invalid value `7' for drop_entry"),
    ] {
        let c = config(
            &d,
            "c.toml",
            &format!(
                "[eal]\nargs = []\n[workers]\nlcores = [1]\n\
                 [[port]]\nname = \"a\"\ndevice = \"net_null0\"\n[sysctl]\n{line}\n"
            ),
        );
        let (code, err) = run(&["--config", &c]);
        assert_eq!(code, Some(1));
        assert_one_clear_line(&err, want);
    }
}

#[test]
fn address_conflict_is_refused_before_dpdk_starts() {
    let d = Scratch::new("conflict");
    let prefix = common::unique("cf");
    let c = config(
        &d,
        "c.toml",
        &format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\naddresses = [\"198.18.0.1/24\"]\n\
             [[port]]\nname = \"b\"\ndevice = \"net_null1\"\naddresses = [\"198.18.0.1/24\"]\n"
        ),
    );
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "address 198.18.0.1 is configured twice");
    assert!(leftovers(&prefix).is_empty());
}

#[test]
fn unknown_device_is_named_and_nothing_is_left() {
    common::require_root();
    let d = Scratch::new("unknown-dev");
    let prefix = common::unique("ud");
    let c = config(
        &d,
        "c.toml",
        &format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"128\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [[port]]\nname = \"uplink\"\ndevice = \"net_nosuchdriver0,x=1\"\naddresses = [\"198.18.0.1/24\"]\n"
        ),
    );
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(
        &err,
        "port uplink (net_nosuchdriver0,x=1): unknown or unusable device",
    );
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}

#[test]
fn missing_hugepages_is_one_line_with_a_hint() {
    common::require_root();
    let d = Scratch::new("nohuge");
    let prefix = common::unique("nh");
    // A --huge-dir that is not a hugetlbfs mount: EAL finds no hugepages.
    let c = config(
        &d,
        "c.toml",
        &format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--huge-dir={}\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [1]\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\n",
            d.0.display()
        ),
    );
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "EAL initialisation failed");
    assert!(err.contains("hugepage"), "{err}");
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}

#[test]
fn worker_lcore_that_eal_does_not_have_is_refused() {
    common::require_root();
    let d = Scratch::new("lcore");
    let prefix = common::unique("lc");
    let c = config(
        &d,
        "c.toml",
        &format!(
            "[eal]\nargs = [\"-l\", \"0-1\", \"--no-pci\", \"--no-huge\", \"-m\", \"128\", \"--file-prefix={prefix}\"]\n\
             [workers]\nlcores = [5]\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\n"
        ),
    );
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&err, "lcore 5 is not an EAL worker lcore");
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
}
