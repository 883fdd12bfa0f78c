//! Root build script: records the git revision for `uvsd --version` so a
//! running appliance can tell which build it is.
use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=UVS_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    // uvsd's own munmap (dataplane::dpdk::quiesce) must be the one DPDK's
    // drivers bind to, so the binary exports it.
    println!("cargo:rustc-link-arg-bin=uvsd=-Wl,--export-dynamic-symbol=munmap");
}
