//! Root build script: records what `uvsd --version` and `uvsadm --version`
//! report, so a running appliance can tell which build it is: the git
//! revision, the DPDK version the binaries were built against (from
//! pkg-config) and the compiler.
use std::process::Command;

/// First line of a command's output, or `unknown`.
fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let rev = first_line("git", &["rev-parse", "--short", "HEAD"]);
    let dpdk = first_line("pkg-config", &["--modversion", "libdpdk"]);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.80.0 (051478957 2024-07-21)" -> "1.80.0"
    let rustc = first_line(&rustc, &["--version"])
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_string();
    println!("cargo:rustc-env=UVS_GIT_REV={rev}");
    println!("cargo:rustc-env=UVS_DPDK_VERSION={dpdk}");
    println!("cargo:rustc-env=UVS_RUSTC_VERSION={rustc}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    // uvsd's own munmap (dataplane::dpdk::quiesce) must be the one DPDK's
    // drivers bind to, so the binary exports it.
    println!("cargo:rustc-link-arg-bin=uvsd=-Wl,--export-dynamic-symbol=munmap");
}
