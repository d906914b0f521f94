//! Test support shared by the agent's unit and integration tests. Not for production
//! code paths.

/// True when running as root. Root-only tests call this first: without root they are
/// skipped with a loud `SKIPPED` line — unless `DROVER_REQUIRE_ROOT` is set (CI and
/// `scripts/test.sh` as root set it), in which case a skip is a failure.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("DROVER_REQUIRE_ROOT").is_none(),
        "{test} needs root, and DROVER_REQUIRE_ROOT is set: refusing to skip"
    );
    eprintln!("SKIPPED {test}: needs root (real containers, mounts and cgroups)");
    false
}
