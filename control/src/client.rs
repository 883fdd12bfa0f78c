//! The uvsadm client: ipvsadm's command line, sent to uvsd.
//!
//! The client parses the command line with the daemon's own grammar first,
//! so that `-h`, `-v` and every command-line error answer exactly as
//! ipvsadm does (same text, same stream, same status) whether or not a
//! daemon runs; only a command that needs the director contacts it. The
//! daemon parses the line again (it trusts no client), finds the same
//! answer, and executes it. The client forwards argv and, for `-R`,
//! standard input, then prints what the daemon answered and exits with its
//! status. Invoked as `ipvsadm` (a symlink or a copy) it
//! behaves the same: the program name is not sent.
//!
//! Socket discovery, in order: `--socket PATH` (or `--socket=PATH`) before
//! the ipvsadm command (see `grammar::split_client_options`), the `UVS_SOCKET` environment variable, then
//! [`DEFAULT_SOCKET`].

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::command::Command;
use crate::director::Refusal;
use crate::grammar;
use crate::proto::{read_frame, write_frame, Request, Response, MAX_RESPONSE};

/// Where uvsd serves its control socket unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/uvs/uvsadm.sock";

/// The socket path from the option, the environment or the default.
pub fn socket_path(option: Option<String>, env: Option<String>) -> PathBuf {
    option
        .or(env.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
        .into()
}

/// True when argv asks for a restore (`-R`/`--restore`), so standard input
/// must be sent along. ipvsadm requires the command to be the first option,
/// so only the first word is looked at (`-R` may be bundled: `-Rn`).
pub fn wants_stdin(args: &[String]) -> bool {
    match args.first() {
        Some(a) => a == "--restore" || (a.starts_with("-R")),
        None => false,
    }
}

/// True when argv is ipvsadm's `-v`/`--version` (after any `--socket`):
/// uvsadm answers it itself, so the version of an installed client can be
/// read without a running daemon.
pub fn asks_version(args: &[String]) -> bool {
    let (_, argv) = crate::grammar::split_client_options(args);
    matches!(
        crate::grammar::parse_with(&argv, &crate::grammar::OfflineResolver),
        Ok(crate::command::Command::Version)
    )
}

/// Sends one request and waits for the answer.
pub fn call(path: &std::path::Path, req: &Request) -> io::Result<Response> {
    let mut s = UnixStream::connect(path)?;
    write_frame(&mut s, req)?;
    read_frame(&mut s, MAX_RESPONSE).map_err(|e| io::Error::other(e.to_string()))
}

/// The answer to a command line that needs no director: help, version,
/// or the command-line error ipvsadm gives. `None`: send it to uvsd.
pub fn local_answer(argv: &[String], hosts: &dyn grammar::Resolver) -> Option<Response> {
    match grammar::parse_with(argv, hosts) {
        Ok(Command::Help) => Some(Response::ok(grammar::usage().to_string())),
        Ok(Command::Version) => Some(Response::ok(format!("{}\n", grammar::VERSION_LINE))),
        Ok(_) => None,
        Err(e) => Some(Refusal::from(e).into()),
    }
}

/// Runs the client with `args` (program name removed); returns the exit
/// status after printing the answer (its own, or the daemon's).
pub fn run(args: &[String]) -> i32 {
    let (sock_opt, argv) = crate::grammar::split_client_options(args);
    if let Some(resp) = local_answer(&argv, &grammar::SystemResolver) {
        print!("{}", resp.stdout);
        eprint!("{}", resp.stderr);
        return resp.code;
    }
    let path = socket_path(sock_opt, std::env::var("UVS_SOCKET").ok());
    let stdin = if wants_stdin(&argv) {
        let mut text = String::new();
        if let Err(e) = io::stdin().read_to_string(&mut text) {
            eprintln!("uvsadm: cannot read standard input: {e}");
            return 2;
        }
        Some(text)
    } else {
        None
    };
    let req = Request {
        argv,
        stdin,
        tool: Default::default(),
    };
    match call(&path, &req) {
        Ok(resp) => {
            print!("{}", resp.stdout);
            eprint!("{}", resp.stderr);
            resp.code
        }
        Err(e) => {
            // ipvsadm's wording first, so scripts that match it still do.
            eprintln!("Can't initialize ipvs: {e}");
            eprintln!(
                "Is uvsd running, and may you use its control socket {}?",
                path.display()
            );
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn version_is_recognised_as_ipvsadm_parses_it() {
        let v = |s: &str| asks_version(&s.split_whitespace().map(String::from).collect::<Vec<_>>());
        assert!(v("-v"));
        assert!(v("--version"));
        assert!(v("--socket /tmp/s --version"));
        assert!(!v("-L -n"));
        assert!(
            !v("-A -t 198.18.0.1:80 -v"),
            "a second command is an error, not a version"
        );
    }

    #[test]
    fn socket_precedence_option_env_default() {
        assert_eq!(
            socket_path(Some("/a".into()), Some("/b".into())),
            PathBuf::from("/a")
        );
        assert_eq!(socket_path(None, Some("/b".into())), PathBuf::from("/b"));
        assert_eq!(
            socket_path(None, Some(String::new())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(socket_path(None, None), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn restore_detection() {
        assert!(wants_stdin(&v(&["-R"])));
        assert!(wants_stdin(&v(&["--restore"])));
        assert!(!wants_stdin(&v(&["-L", "-n"])));
        assert!(!wants_stdin(&v(&["-A", "-t", "198.18.0.1:80"])));
        assert!(
            !wants_stdin(&v(&["-L", "-R"])),
            "only the first option is the command"
        );
    }

    #[test]
    fn help_version_and_errors_are_answered_without_a_daemon() {
        let off = &grammar::OfflineResolver;
        let h = local_answer(&v(&["-h"]), off).unwrap();
        assert_eq!(
            (h.code, h.stdout.as_str(), h.stderr.as_str()),
            (0, grammar::usage(), "")
        );
        let ver = local_answer(&v(&["--version"]), off).unwrap();
        assert_eq!(ver.code, 0);
        assert_eq!(ver.stdout, format!("{}\n", grammar::VERSION_LINE));
        let bad = local_answer(&v(&["-t", "198.18.0.1:80", "-A"]), off).unwrap();
        assert_eq!(bad.code, 255);
        assert!(bad.stdout.is_empty());
        assert!(bad.stderr.contains("Try `ipvsadm -h'"), "{}", bad.stderr);
        assert!(local_answer(&v(&["-L", "-n"]), off).is_none());
        assert!(local_answer(&[], off).is_none(), "no arguments lists");
        assert!(local_answer(&v(&["-R"]), off).is_none());
    }

    #[test]
    fn unreachable_daemon_is_a_clear_error() {
        let req = Request {
            argv: v(&["-L"]),
            stdin: None,
            tool: Default::default(),
        };
        let e = call(std::path::Path::new("/nonexistent/uvs.sock"), &req).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
