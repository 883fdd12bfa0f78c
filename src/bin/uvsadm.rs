//! uvsadm: ipvsadm's command line for a running uvsd.
//!
//! Installed or symlinked as `ipvsadm`, it behaves the same: the program
//! name is never part of what is sent. See `control::client`.
//!
//! `-v`/`--version` is answered here, without the daemon. Its first line is
//! ipvsadm's, byte for byte, because scripts parse it (`ipvsadm -v | awk
//! '{print $2}'`). Invoked as `uvsadm`, a second line gives the build
//! details; invoked as `ipvsadm`, that line is left out, so a script written
//! for ipvsadm sees exactly the one line it expects.

#[path = "../version.rs"]
mod version;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if control::client::asks_version(&args) {
        println!("{}", control::grammar::VERSION_LINE);
        if !invoked_as_ipvsadm() {
            println!("uvsadm {}", version::BUILD);
        }
        return;
    }
    std::process::exit(control::client::run(&args));
}

/// Whether argv[0]'s file name is `ipvsadm` (a symlink or a copy).
fn invoked_as_ipvsadm() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "ipvsadm"))
        .unwrap_or(false)
}
