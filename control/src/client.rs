//! The uvsadm client: ipvsadm's command line, sent to uvsd.
//!
//! The client does not interpret the command (the daemon parses and
//! validates it, see [`crate::proto`]); it finds the socket, forwards argv
//! and, for `-R`, standard input, then prints what the daemon answered and
//! exits with its status. Invoked as `ipvsadm` (a symlink or a copy) it
//! behaves the same: the program name is not sent.
//!
//! Socket discovery, in order: `--socket PATH` (or `--socket=PATH`) before
//! the ipvsadm command (see `grammar::split_client_options`), the `UVS_SOCKET` environment variable, then
//! [`DEFAULT_SOCKET`].

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

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

/// Runs the client with `args` (program name removed); returns the exit
/// status after printing the daemon's answer.
pub fn run(args: &[String]) -> i32 {
    let (sock_opt, argv) = crate::grammar::split_client_options(args);
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
    let req = Request { argv, stdin };
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
    fn unreachable_daemon_is_a_clear_error() {
        let req = Request {
            argv: v(&["-L"]),
            stdin: None,
        };
        let e = call(std::path::Path::new("/nonexistent/uvs.sock"), &req).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
