//! Picks the manifest for this host out of a multi-platform image index.
//!
//! Pure matching over descriptors; the only OS access is reading the ARM architecture
//! version from `/proc/cpuinfo` on 32-bit ARM hosts.

use serde::Deserialize;

/// The `platform` object of an index entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    pub fn describe(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// What this host can run: OCI architecture and acceptable variants, best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPlatform {
    pub architecture: String,
    /// Acceptable variants in order of preference; `None` = entry without a variant.
    /// Empty = any variant is fine.
    pub variants: Vec<Option<&'static str>>,
}

impl HostPlatform {
    /// The running host.
    pub fn current() -> Self {
        Self::for_arch(std::env::consts::ARCH, arm_version())
    }

    /// `rust_arch` as in `std::env::consts::ARCH`; `arm_version` only matters for `arm`.
    pub fn for_arch(rust_arch: &str, arm_version: u32) -> Self {
        let (architecture, variants) = match rust_arch {
            "x86_64" => ("amd64", vec![]),
            "x86" => ("386", vec![]),
            "aarch64" => ("arm64", vec![None, Some("v8")]),
            "arm" if arm_version >= 7 => ("arm", vec![Some("v7"), None, Some("v6"), Some("v5")]),
            "arm" if arm_version == 6 => ("arm", vec![Some("v6"), Some("v5")]),
            "arm" => ("arm", vec![Some("v5")]),
            other => (other, vec![]),
        };
        Self {
            architecture: architecture.to_string(),
            variants,
        }
    }

    pub fn describe(&self) -> String {
        format!("linux/{}", self.architecture)
    }

    /// Rank of a platform for this host (lower is better), `None` when it cannot run here.
    fn rank(&self, p: &Platform) -> Option<usize> {
        if p.os != "linux" || p.architecture != self.architecture {
            return None;
        }
        if self.variants.is_empty() {
            return Some(0);
        }
        self.variants
            .iter()
            .position(|v| *v == p.variant.as_deref())
    }

    /// Index of the best entry among `platforms` (entries without a platform are `None`).
    pub fn select(&self, platforms: &[Option<Platform>]) -> Option<usize> {
        platforms
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.rank(p.as_ref()?)?, i)))
            .min()
            .map(|(_, i)| i)
    }
}

/// ARM architecture version of the CPU ("CPU architecture: 7"), 7 when unknown.
fn arm_version() -> u32 {
    if std::env::consts::ARCH != "arm" {
        return 0;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter_map(|l| l.strip_prefix("CPU architecture"))
        .filter_map(|l| {
            l.trim_start_matches([' ', '\t', ':'])
                .get(..1)?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(arch: &str, variant: Option<&str>) -> Option<Platform> {
        let variant = variant.map(str::to_string);
        Some(Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant,
        })
    }

    #[test]
    fn maps_rust_arch_names() {
        assert_eq!(HostPlatform::for_arch("x86_64", 0).architecture, "amd64");
        assert_eq!(HostPlatform::for_arch("aarch64", 0).architecture, "arm64");
        assert_eq!(HostPlatform::for_arch("arm", 7).architecture, "arm");
    }

    #[test]
    fn picks_host_entry_and_skips_unknown() {
        let list = [
            None,
            p("arm64", Some("v8")),
            p("amd64", None),
            p("arm", Some("v7")),
        ];
        assert_eq!(HostPlatform::for_arch("x86_64", 0).select(&list), Some(2));
        assert_eq!(HostPlatform::for_arch("aarch64", 0).select(&list), Some(1));
        assert_eq!(HostPlatform::for_arch("arm", 7).select(&list), Some(3));
    }

    #[test]
    fn arm_variants_respected() {
        let list = [p("arm", Some("v6")), p("arm", Some("v7"))];
        assert_eq!(HostPlatform::for_arch("arm", 7).select(&list), Some(1));
        assert_eq!(HostPlatform::for_arch("arm", 6).select(&list), Some(0));
        assert_eq!(
            HostPlatform::for_arch("arm", 6).select(&[p("arm", Some("v7"))]),
            None
        );
        let windows = Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(
            HostPlatform::for_arch("x86_64", 0).select(&[Some(windows)]),
            None
        );
    }
}
