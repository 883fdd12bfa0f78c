//! The build details both binaries print with `--version`: the package
//! version, the git revision, the DPDK version built against and the
//! compiler (recorded by build.rs).

/// `0.1.0 (git 46dde8a, DPDK 22.11.11, rustc 1.80.0)`.
pub const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("UVS_GIT_REV"),
    ", DPDK ",
    env!("UVS_DPDK_VERSION"),
    ", rustc ",
    env!("UVS_RUSTC_VERSION"),
    ")"
);
