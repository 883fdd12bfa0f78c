//! uvsadm: ipvsadm's command line for a running uvsd.
//!
//! Installed or symlinked as `ipvsadm`, it behaves the same: the program
//! name is never part of what is sent. See `control::client`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(control::client::run(&args));
}
