//! uvsset's client side: ipset's command line sent to uvsd.
//!
//! Like uvsadm it is a thin pipe: the daemon parses and executes. The
//! client only does what needs the client's own files and terminal:
//! `-file F` (restore reads F, list/save write F), reading standard input
//! for `restore`, and answering `help`, `version` and command-line errors
//! without a daemon (so `ipset version` works before uvsd starts).

use std::io::{self, Read};

use crate::ipset::{self, Command, Fail};
use crate::proto::{Request, Response, Tool};

/// Splits `-file F` (any of ipset's spellings) off the arguments.
fn split_file(args: &[String]) -> Result<(Option<String>, Vec<String>), Fail> {
    let mut file = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if matches!(a.as_str(), "-f" | "-file" | "--file") {
            let f = it
                .next()
                .ok_or_else(|| Fail::param("Missing mandatory argument to option -file".into()))?;
            if file.is_some() {
                return Err(Fail::param(
                    "-file option cannot be used when full io is activated".into(),
                ));
            }
            file = Some(f.clone());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((file, rest))
}

/// What the client answers by itself: help, version, and a command line
/// that does not parse. `None`: ask the daemon.
pub fn local_answer(argv: &[String]) -> Option<Response> {
    match ipset::parse(argv) {
        Ok((s, Command::Help(t))) => {
            // help needs no set: run it on an empty store.
            let mut store = dataplane::config::ConfigStore::new();
            let mut args = vec!["help".to_string()];
            args.extend(t);
            let (r, _) = ipset::execute(&mut store, &args, None);
            Some(if s.quiet && r.code == 0 {
                Response::ok(r.stdout)
            } else {
                r
            })
        }
        Ok((_, Command::Version)) => Some(Response::ok(ipset::version_text())),
        Ok(_) => None,
        Err(f) => Some(Response::err(f.code, f.render(None))),
    }
}

/// Runs uvsset with `args` (program name excluded); returns the exit
/// status.
pub fn run(args: &[String]) -> i32 {
    let (sock_opt, args) = crate::grammar::split_client_options(args);
    let (file, argv) = match split_file(&args) {
        Ok(x) => x,
        Err(f) => return print(&Response::err(f.code, f.render(None))),
    };
    if let Some(resp) = local_answer(&argv) {
        return print(&resp);
    }
    let restoring = matches!(ipset::parse(&argv), Ok((_, Command::Restore)));
    let stdin = if restoring {
        let text = match &file {
            Some(f) => std::fs::read_to_string(f),
            None => {
                let mut t = String::new();
                io::stdin().read_to_string(&mut t).map(|_| t)
            }
        };
        match text {
            Ok(t) => Some(t),
            Err(e) => {
                return print(&Response::err(
                    1,
                    format!(
                        "ipset v{}: Cannot open {}: {e}\n",
                        ipset::VERSION,
                        file.as_deref().unwrap_or("standard input")
                    ),
                ))
            }
        }
    } else {
        None
    };
    let path = crate::client::socket_path(sock_opt, std::env::var("UVS_SOCKET").ok());
    let req = Request {
        argv,
        stdin,
        tool: Tool::Ipset,
    };
    match crate::client::call(&path, &req) {
        Ok(mut resp) => {
            if let (Some(f), false) = (&file, restoring) {
                if let Err(e) = std::fs::write(f, &resp.stdout) {
                    return print(&Response::err(
                        1,
                        format!("ipset v{}: Cannot open {f}: {e}\n", ipset::VERSION),
                    ));
                }
                resp.stdout.clear();
            }
            print(&resp)
        }
        Err(e) => {
            eprintln!("ipset v{}: Cannot open session to kernel.", ipset::VERSION);
            eprintln!(
                "uvsset: {e}: is uvsd running, and may you use its control socket {}?",
                path.display()
            );
            1
        }
    }
}

fn print(r: &Response) -> i32 {
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    r.code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_option_is_taken_by_the_client() {
        let (f, rest) = split_file(&v(&["-file", "/tmp/x", "restore"])).unwrap();
        assert_eq!(f.as_deref(), Some("/tmp/x"));
        assert_eq!(rest, v(&["restore"]));
        assert_eq!(split_file(&v(&["save", "-f"])).unwrap_err().code, 2);
    }

    #[test]
    fn version_help_and_bad_lines_need_no_daemon() {
        let r = local_answer(&v(&["version"])).unwrap();
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "ipset v7.17, protocol version: 7\n")
        );
        let h = local_answer(&v(&["help"])).unwrap();
        assert!(h
            .stdout
            .starts_with("ipset v7.17\n\nUsage: ipset [options] COMMAND\n"));
        let bad = local_answer(&v(&["add", "x"])).unwrap();
        assert_eq!(bad.code, 2);
        assert_eq!(
            bad.stderr,
            "ipset v7.17: Missing second mandatory argument to command add\nTry `ipset help' for more information.\n"
        );
        assert!(local_answer(&v(&["list"])).is_none());
    }
}
