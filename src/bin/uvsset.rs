//! uvsset: ipset's command line for a running uvsd.
//!
//! Installed or symlinked as `ipset`, it behaves the same: the program name
//! is never part of what is sent. See `control::ipset_client`.
//!
//! `version` is answered here, without the daemon: its first line is
//! ipset's. Invoked as `uvsset`, a second line gives the build details;
//! invoked as `ipset`, that line is left out, so scripts see the one line
//! they expect.

#[path = "../version.rs"]
mod version;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (_, argv) = control::grammar::split_client_options(&args);
    let asks_version = matches!(
        control::ipset::parse(&argv),
        Ok((_, control::ipset::Command::Version))
    );
    if asks_version {
        print!("{}", control::ipset::version_text());
        if !invoked_as_ipset() {
            println!("uvsset {}", version::BUILD);
        }
        return;
    }
    std::process::exit(control::ipset_client::run(&args));
}

/// Whether argv[0]'s file name is `ipset` (a symlink or a copy).
fn invoked_as_ipset() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "ipset"))
        .unwrap_or(false)
}
