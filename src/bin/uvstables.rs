//! uvstables: iptables, iptables-save and iptables-restore (and the
//! ip6tables names) for a running uvsd.
//!
//! Installed or symlinked under one of those names it behaves as that
//! program; invoked as `uvstables` it is `iptables`. The words typed go to
//! the daemon unchanged, after the program name (see `control::iptables`),
//! with standard input for a restore. The daemon
//! answers with iptables' output, messages and exit status.
//!
//! Socket discovery: `--socket PATH` as the first words, the `UVS_SOCKET`
//! environment variable, then uvsadm's default socket.

use std::io::Read;

use control::iptables::{Tool, VERSION};
use control::proto::{self, Request};

fn main() {
    let program = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "uvstables".into());
    let Some((tool, family)) = Tool::from_program(&program) else {
        eprintln!("uvstables: invoked as `{program}'; link it as iptables, iptables-save, iptables-restore or the ip6tables names");
        std::process::exit(2);
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut sock = None;
    if args.first().is_some_and(|a| a == "--socket") && args.len() > 1 {
        sock = Some(args[1].clone());
        args.drain(..2);
    } else if let Some(p) = args.first().and_then(|a| a.strip_prefix("--socket=")) {
        sock = Some(p.to_string());
        args.remove(0);
    }
    let prog = tool.program(family);
    if args.iter().any(|a| a == "-V" || a == "--version") {
        println!("{prog} {VERSION}");
        return;
    }
    let mut stdin = None;
    if tool == Tool::Restore {
        // iptables-restore reads a file named as the last word, else stdin.
        let file = args.last().filter(|a| !a.starts_with('-')).cloned();
        let text = match &file {
            Some(f) => {
                args.pop();
                std::fs::read_to_string(f)
            }
            None => {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t).map(|_| t)
            }
        };
        match text {
            Ok(t) => stdin = Some(t),
            Err(e) => {
                eprintln!("{prog}: cannot read input: {e}");
                std::process::exit(1);
            }
        }
    }
    let path = control::client::socket_path(sock, std::env::var("UVS_SOCKET").ok());
    let mut argv = vec![program.clone()];
    argv.extend(args);
    let req = Request {
        argv,
        stdin,
        tool: proto::Tool::Iptables,
    };
    match control::client::call(&path, &req) {
        Ok(r) => {
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            std::process::exit(r.code);
        }
        Err(e) => {
            eprintln!("{prog}: cannot reach uvsd at {}: {e}", path.display());
            // iptables' RESOURCE_PROBLEM.
            std::process::exit(4);
        }
    }
}
