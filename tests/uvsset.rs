//! uvsset end to end: ipset's command line against a running uvsd, as an
//! operator uses it (create, add, test, list, save, restore, destroy),
//! with ipset's messages and exit codes; and, without a daemon, the
//! answers uvsset gives by itself (version, help, command-line errors).
//!
//! The daemon test needs root and runs one uvsd (in the lab of
//! scripts/topo.sh); the offline tests need neither.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::lab::{lock, Lab};

const UVSSET: &str = env!("CARGO_BIN_EXE_uvsset");
const NO_SOCKET: &str = "/nonexistent/uvs-test/uvsadm.sock";

/// (status, stdout, stderr) of `uvsset --socket SOCK words...` with
/// `stdin` on standard input.
fn uvsset_in(prog: &str, sock: &str, line: &str, stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(prog)
        .args(["--socket", sock])
        .args(line.split_whitespace())
        .env_remove("UVS_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn uvsset(sock: &str, line: &str) -> (i32, String, String) {
    uvsset_in(UVSSET, sock, line, "")
}

#[test]
fn version_help_and_errors_are_answered_without_a_daemon() {
    let (code, out, err) = uvsset(NO_SOCKET, "version");
    assert_eq!((code, err.as_str()), (0, ""));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ipset v7.17, protocol version: 7"));
    assert!(
        lines.next().unwrap_or_default().starts_with("uvsset "),
        "{out}"
    );

    // Linked as ipset: exactly ipset's line.
    let dir = std::env::temp_dir().join(format!("uvs-test-ipset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("ipset");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(UVSSET, &link).unwrap();
    let r = uvsset_in(link.to_str().unwrap(), NO_SOCKET, "-V", "");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        r,
        (
            0,
            "ipset v7.17, protocol version: 7\n".into(),
            String::new()
        )
    );

    let (code, out, _) = uvsset(NO_SOCKET, "help");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ipset v7.17\n\nUsage: ipset [options] COMMAND\n"),
        "{out}"
    );

    let (code, out, err) = uvsset(NO_SOCKET, "create onlyname");
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "ipset v7.17: Missing second mandatory argument to command create\n\
         Try `ipset help' for more information.\n"
    );
    // A command that needs the director says it cannot reach it.
    let (code, _, err) = uvsset(NO_SOCKET, "list");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("ipset v7.17: Cannot open session to kernel.\n"),
        "{err}"
    );
}

#[test]
fn sets_are_created_filled_tested_saved_restored_and_destroyed() {
    common::require_root();
    let _g = lock();
    let lab = Lab::new("ss", "nat", 1, 1);
    let sock = lab.sock();
    let ok = |line: &str| {
        let (code, out, err) = uvsset(&sock, line);
        assert_eq!((code, err.as_str()), (0, ""), "uvsset {line}");
        out
    };

    ok("create block hash:net family inet hashsize 1024 maxelem 65536 counters");
    ok("add block 198.18.0.0/24");
    ok("add block 198.18.0.0/30 nomatch");
    ok("add block 198.19.0.1-198.19.0.6");
    // test: the most specific entry decides.
    assert_eq!(
        uvsset(&sock, "test block 198.18.0.9"),
        (
            0,
            String::new(),
            "Warning: 198.18.0.9 is in set block.\n".into()
        )
    );
    assert_eq!(
        uvsset(&sock, "test block 198.18.0.1"),
        (1, String::new(), "198.18.0.1 is NOT in set block.\n".into())
    );
    let listing = ok("list block");
    assert!(
        listing.starts_with("Name: block\nType: hash:net\nRevision: 7\n"),
        "{listing}"
    );
    assert!(
        listing.contains("\nNumber of entries: 6\nMembers:\n"),
        "{listing}"
    );
    assert!(
        listing.contains("\n198.19.0.2/31 packets 0 bytes 0\n"),
        "{listing}"
    );

    // Errors: ipset's words and status, and nothing changes.
    for (line, code, msg) in [
        (
            "add block 198.18.0.0/24",
            1,
            "Element cannot be added to the set: it's already added",
        ),
        (
            "add nope 198.18.0.1",
            1,
            "The set with the given name does not exist",
        ),
        (
            "add block 1.1.1.1/0",
            1,
            "The value of the CIDR parameter of the IP address is invalid",
        ),
        (
            "add block 2001:db8::1",
            1,
            "Syntax error: cannot parse 2001:db8::1: resolving to IPv4 address failed",
        ),
    ] {
        let (c, out, err) = uvsset(&sock, line);
        assert_eq!((c, out.as_str()), (code, ""), "{line}");
        assert_eq!(err, format!("ipset v7.17: {msg}\n"), "{line}");
    }
    assert_eq!(ok("-exist add block 198.18.0.0/24"), "");

    // A member of a list:set cannot be destroyed.
    ok("create all list:set");
    ok("add all block");
    let (c, _, err) = uvsset(&sock, "destroy block");
    assert_eq!(
        (c, err.as_str()),
        (
            1,
            "ipset v7.17: Set cannot be destroyed: it is in use by a kernel component\n"
        )
    );

    // save -> destroy -> restore gives the same sets back.
    let saved = ok("-sorted save");
    assert!(saved.starts_with("create block hash:net family inet hashsize 1024 maxelem 65536 counters bucketsize 12 initval 0x"), "{saved}");
    assert!(
        saved.ends_with("create all list:set size 8\nadd all block\n"),
        "{saved}"
    );
    ok("destroy");
    assert_eq!(ok("list"), "");
    let (c, _, err) = uvsset_in(UVSSET, &sock, "restore", &saved);
    assert_eq!((c, err.as_str()), (0, ""));
    assert_eq!(ok("-sorted save"), saved);

    // A failing restore stops at its line and keeps what came before.
    let bad =
        "create more hash:ip\nadd more 198.18.1.1\nadd missing 198.18.1.2\nadd more 198.18.1.3\n";
    let (c, _, err) = uvsset_in(UVSSET, &sock, "restore", bad);
    assert_eq!(
        (c, err.as_str()),
        (
            1,
            "ipset v7.17: Error in line 3: The set with the given name does not exist\n"
        )
    );
    assert!(ok("save more").ends_with("\nadd more 198.18.1.1\n"));

    // Swap replaces contents under a name; rename and flush.
    ok("create next hash:net");
    ok("add next 203.0.113.0/24");
    ok("swap block next");
    assert_eq!(uvsset(&sock, "-q test block 203.0.113.7").0, 0);
    ok("flush block");
    assert_eq!(uvsset(&sock, "-q test block 203.0.113.7").0, 1);
    ok("rename more less");
    assert_eq!(ok("-n list"), "block\nless\nnext\nall\n");

    // ipvsadm's language on the same socket is unaffected.
    assert_eq!(lab.ok("-L -n").lines().count(), 3);
}
