//! The hub's `[policy]`: which host paths, devices and `privileged` a Deployment may ask
//! for, checked at `apply` before anything is stored or sent. The rules are the shared
//! ones of `drover_protocol::security` (`/` is never allowed); each agent checks again
//! with its own `[security]` and folders, and has the last word.
//!
//! Pure: the hub cannot see a device's files, so no path is resolved here.

use drover_protocol::SecurityPolicy;
use drover_protocol::manifest::ManifestError;

use super::{Deployment, Positions};

/// `Ok` when the Deployment's template (and its fallback) stays within `policy`; else the
/// violation, located at the offending container's `image` in the manifest.
pub fn check(d: &Deployment, policy: &SecurityPolicy) -> Result<(), ManifestError> {
    policy
        .check(&d.template, &[], &|p: &str| p.to_owned())
        .map_err(|v| {
            let at = d.positions.images.get(&v.container);
            let msg = format!("refused by the hub's [policy]: {v}");
            Positions::error_at(at.or(d.positions.name.as_ref()), "Deployment", &d.name, msg)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fleet::{Object, parse_set};

    fn deployment(mount: &str) -> Deployment {
        let text = format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: x}}}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: x\n          {mount}\n"
        );
        match parse_set(&[("fleet.yaml".into(), text)]).unwrap().remove(0) {
            Object::Deployment(d) => d,
            Object::Device(_) | Object::Config(_) => unreachable!(),
        }
    }

    #[test]
    fn root_is_refused_at_the_container_whatever_the_policy() {
        let d = deployment("mounts: [{hostPath: /, mountPath: /host}]");
        let open = SecurityPolicy {
            host_paths: vec!["/".into()],
            ..Default::default()
        };
        let e = check(&d, &open).unwrap_err().to_string();
        assert_eq!(
            e,
            "fleet.yaml:10:18: refused by the hub's [policy]: container main: hostPath \"/\" (mountPath /host): / is never allowed"
        );
    }

    #[test]
    fn allowed_paths_pass_and_privileged_needs_the_policy() {
        let d = deployment("mounts: [{hostPath: /srv/data, mountPath: /data}]");
        let srv = SecurityPolicy {
            host_paths: vec!["/srv".into()],
            ..Default::default()
        };
        assert!(check(&d, &srv).is_ok());
        assert!(check(&d, &SecurityPolicy::default()).is_err());
        let p = deployment("securityContext: {privileged: true}");
        assert!(
            check(&p, &srv)
                .unwrap_err()
                .to_string()
                .contains("privileged")
        );
        let allow = SecurityPolicy {
            allow_privileged: true,
            ..srv
        };
        assert!(check(&p, &allow).is_ok());
    }
}
