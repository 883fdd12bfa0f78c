//! Generates raw bindings to the system DPDK and compiles the C glue.
//!
//! Why this shape (see dpdk-notes): DPDK's fast-path API is static inline
//! functions and macros, which a shared library does not export. bindgen's
//! `wrap_static_fns` writes one exported C wrapper per static inline; `cc`
//! compiles them (and `shim.c`, for macros such as `rte_errno`) with the full
//! `pkg-config --cflags libdpdk` output, since DPDK headers need
//! `-include rte_config.h` and a `-march`. Linking is dynamic; Debian's EAL
//! loads its PMD plugins itself.

use std::env;
use std::path::PathBuf;

use bindgen::callbacks::{IntKind, ParseCallbacks};

/// Makes the 64-bit flag families (built with `RTE_BIT64`) come out as `u64`
/// so they combine with the `u64` fields they are meant for.
#[derive(Debug)]
struct U64Flags;

impl ParseCallbacks for U64Flags {
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        const U64_PREFIXES: [&str; 6] = [
            "RTE_ETH_TX_OFFLOAD_",
            "RTE_ETH_RX_OFFLOAD_",
            "RTE_ETH_RSS_",
            "RTE_MBUF_F_",
            "RTE_ETH_DEV_CAPA_",
            "RTE_PTYPE_",
        ];
        if U64_PREFIXES.iter().any(|p| name.starts_with(p)) {
            Some(IntKind::U64)
        } else {
            None
        }
    }
}

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(false)
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("DPDK >= 22.11 not found through pkg-config libdpdk: {e}"));

    let cflags_out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config runs");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags_out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    let wrap_base = out.join("static_fns");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        .allowlist_var("RING_F_.*")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_function("uvs_.*")
        // Packed structs holding aligned ones do not compile in Rust (E0588):
        // keep them opaque; the engine has its own header views.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_psc_.*")
        .clang_macro_fallback()
        .parse_callbacks(Box::new(U64Flags))
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_base)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen generates DPDK bindings");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("bindings written");

    // The generated wrappers include wrapper.h by a relative path.
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let mut build = cc::Build::new();
    build
        .file(wrap_base.with_extension("c"))
        .file("shim.c")
        .include(&manifest)
        .warnings(false)
        .opt_level(3);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("uvs_dpdk_glue");

    // Link flags after the glue archive, so its references resolve.
    for p in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
    for l in &lib.libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    // Driver libraries are not in libdpdk.pc; rte_vdev_init lives here.
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    // rte_eth_from_rings (ports over rings of our own: the single-process
    // benchmark and tests).
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-changed=build.rs");
}
