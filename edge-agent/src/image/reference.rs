//! Which pull path serves an image reference. References are validated once, by
//! `drover_protocol::ImageRef` (the same rules as the hub's manifests); this module only
//! turns a parsed reference into what the store needs: a layout folder, or a registry
//! repository (the hub's own when no host is given).
//!
//! Pure: it never touches the file system or the network.

use std::path::PathBuf;

pub use drover_protocol::image_ref::Selector;
use drover_protocol::image_ref::{DOCKER_HUB, DOCKER_HUB_API};
use drover_protocol::{ImageRef, ImageSource};

/// A parsed `oci:` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub layout: PathBuf,
    pub selector: Selector,
}

/// An image in an OCI distribution registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]` (`docker.io` for Docker Hub); empty for the agent's hub, whose
    /// address comes from the config.
    pub host: String,
    /// Repository path, e.g. `library/busybox`.
    pub repo: String,
    pub selector: Selector,
}

impl RegistryRef {
    /// Host the distribution API is served from (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }

    /// `<tag>` or `sha256:<hex>` for `/v2/<repo>/manifests/<ref>`.
    pub fn manifest_ref(&self) -> String {
        self.selector.manifest_ref()
    }
}

/// Where the store gets an image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `oci:PATH…`: a local OCI image layout folder.
    Oci(Reference),
    /// A registry, or (host empty) the agent's hub.
    Registry(RegistryRef),
}

/// Parses and checks `reference`; the error says what is wrong.
pub fn parse_any(reference: &str) -> Result<Source, String> {
    let image = ImageRef::new(reference).map_err(|e| e.to_string())?;
    Ok(match image.source().clone() {
        ImageSource::Oci(r) => Source::Oci(Reference {
            layout: PathBuf::from(r.layout),
            selector: r.selector,
        }),
        ImageSource::Registry(r) => Source::Registry(RegistryRef {
            host: r.host,
            repo: r.repo,
            selector: r.selector,
        }),
        ImageSource::Hub(r) => Source::Registry(RegistryRef {
            host: String::new(),
            repo: r.repo,
            selector: r.selector,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_maps_to_its_pull_path() {
        let Ok(Source::Oci(r)) = parse_any("oci:/a:b/app:t") else {
            panic!()
        };
        assert_eq!(r.layout, PathBuf::from("/a:b/app"));
        assert_eq!(r.selector, Selector::Tag("t".into()));
        let Ok(Source::Registry(r)) = parse_any("busybox") else {
            panic!()
        };
        assert_eq!(
            (r.api_host(), r.repo.as_str(), r.manifest_ref().as_str()),
            ("registry-1.docker.io", "library/busybox", "latest")
        );
        let Ok(Source::Registry(r)) = parse_any("hub:sensor:1.0") else {
            panic!()
        };
        assert_eq!((r.host.as_str(), r.repo.as_str()), ("", "sensor"));
        let Ok(Source::Registry(r)) = parse_any("127.0.0.1:5000/x") else {
            panic!()
        };
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let err = parse_any("Nginx:1").unwrap_err();
        assert!(err.contains("repository \"Nginx\""), "{err}");
    }
}
