//! Link flags for the `drover-agent` binary only.
//!
//! Packed relative relocations (DT_RELR, glibc ≥ 2.36): the position-independent binary
//! carries ~19,000 relative relocations; as a `.rela.dyn` table (24 bytes each, ~450 KiB)
//! every process of the binary (the agent and each shim) reads all of it at start and
//! keeps it in its RSS. Packed, the table is a few KiB.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DROVER_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("DROVER_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
