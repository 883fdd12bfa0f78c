//! uvsadm with no daemon to talk to: `-h`, `-v` and command-line errors
//! must look exactly like ipvsadm 1.31's (text, stream, exit status), and
//! only commands that need the director may say it cannot be reached.
//! Runs the built binary against a socket path that does not exist; needs
//! neither root nor DPDK.

use std::process::Command;

use control::grammar::{usage, VERSION_LINE};

const UVSADM: &str = env!("CARGO_BIN_EXE_uvsadm");
const NO_SOCKET: &str = "/nonexistent/uvs-test/uvsadm.sock";

/// (status, stdout, stderr) of `uvsadm --socket NO_SOCKET args...`.
fn uvsadm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(UVSADM)
        .args(["--socket", NO_SOCKET])
        .args(args)
        .env_remove("UVS_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_is_ipvsadms_usage_on_stdout_with_status_0() {
    for h in ["-h", "--help"] {
        let (code, out, err) = uvsadm(&[h]);
        assert_eq!(code, 0, "{h}: {err}");
        assert_eq!(out, usage(), "{h}");
        assert_eq!(err, "", "{h}");
    }
}

/// Run as `uvsadm`, `-v` prints ipvsadm's line and then the build details;
/// run as `ipvsadm` (a symlink, as an operator installs it), exactly
/// ipvsadm's line, so scripts that parse it see what they expect.
#[test]
fn version_is_ipvsadms_line_on_stdout_with_status_0() {
    for v in ["-v", "--version"] {
        let (code, out, err) = uvsadm(&[v]);
        assert_eq!((code, err.as_str()), (0, ""), "{v}");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(VERSION_LINE), "{v}: {out}");
        let build = lines.next().unwrap_or_default();
        assert!(
            build.starts_with("uvsadm ") && build.contains("git ") && build.contains("DPDK "),
            "{v}: {out}"
        );
        assert_eq!(lines.next(), None, "{v}: {out}");
    }
    let dir = std::env::temp_dir().join(format!("uvs-test-ipvsadm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("ipvsadm");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(UVSADM, &link).unwrap();
    let out = Command::new(&link)
        .args(["--socket", NO_SOCKET, "-v"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{VERSION_LINE}\n")
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn command_line_errors_are_ipvsadms_without_contacting_the_director() {
    for (args, code, text) in [
        (
            &["-t", "198.18.0.1:80", "-A"][..],
            255,
            "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n",
        ),
        (&["-L", "--bogus"][..], 255, "--bogus: unknown option\n"),
        (
            &["-A"][..],
            2,
            "You need to supply the 'service-address' option for the 'add-service' command\n",
        ),
        (
            &["-A", "-t", "198.18.0.1:80", "-A"][..],
            2,
            "invalid option `-A'\n",
        ),
    ] {
        let (got, out, err) = uvsadm(args);
        assert_eq!(got, code, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.ends_with(text), "{args:?}: {err:?}");
        assert!(!err.contains("Can't initialize"), "{args:?}: {err}");
    }
}

#[test]
fn only_commands_that_need_the_director_say_it_cannot_be_reached() {
    for args in [
        &["-L", "-n"][..],
        &[][..],
        &["-A", "-t", "198.18.0.1:80"][..],
    ] {
        let (code, out, err) = uvsadm(args);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(out, "");
        assert!(
            err.starts_with("Can't initialize ipvs: "),
            "{args:?}: {err}"
        );
        assert!(err.contains(NO_SOCKET), "{err}");
    }
}
