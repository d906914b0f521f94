//! Pinning `hub:` images at apply: every `hub:REPO[:TAG]` of a Deployment's template
//! becomes `hub:REPO@sha256:…`, the digest the hub's registry serves for that tag now.
//!
//! So a revision names exactly one image: importing a new image under the same tag later
//! changes nothing on devices until the Deployment is applied again, a device rolling
//! back gets back exactly what it ran, and what a device pulls is checked against the
//! signed digest. Pure: the registry is asked through `resolve`, never read from here.
//! Other references (`oci:`, external registries) and `hub:` references already pinned
//! are left as written.

use drover_protocol::image_ref::{HubRef, Selector};
use drover_protocol::manifest::ManifestError;
use drover_protocol::{Digest, ImageSource};

use super::manifest::Object;
use super::source::Positions;

/// Rewrites every unpinned `hub:` image in `objects`' Deployment templates to
/// `hub:REPO@DIGEST`, with `resolve(repo, tag)` giving the digest a tag serves (`latest`
/// when no tag is written). Fails, located at the image, on the first tag the registry
/// does not have; `objects` may then be partly rewritten.
pub fn pin_hub_images(
    objects: &mut [Object],
    resolve: &dyn Fn(&str, &str) -> Option<Digest>,
) -> Result<(), ManifestError> {
    for object in objects {
        let Object::Deployment(dep) = object else {
            continue;
        };
        for c in &mut dep.template.containers {
            let ImageSource::Hub(HubRef { repo, selector }) = c.image.source() else {
                continue;
            };
            let tag = match selector {
                Selector::Digest(_) => continue,
                Selector::Tag(t) => t.as_str(),
                Selector::Default => "latest",
            };
            let Some(digest) = resolve(repo, tag) else {
                let message = format!(
                    "image {} is not in the hub's registry: import it with drover-hub image import",
                    c.image
                );
                let at = dep.positions.images.get(&c.name);
                return Err(Positions::error_at(at, "Deployment", &dep.name, message));
            };
            c.image = c.image.with_digest(&digest);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::fleet::parse_objects;

    const DEP: &str = "\
apiVersion: drover.dev/v1
kind: Deployment
metadata: {name: sensor}
spec:
  selector: {matchLabels: {role: sensor}}
  template:
    spec:
      containers:
        - name: main
          image: hub:sensor:1.0
        - name: side
          image: hub:tools/side
        - name: local
          image: oci:/images/x:1
        - name: ext
          image: reg.local:5000/sensor:1.0
        - name: pinned
          image: hub:sensor@sha256:0000000000000000000000000000000000000000000000000000000000000000
---
apiVersion: drover.dev/v1
kind: Device
metadata: {name: pi-1, labels: {role: sensor}}
";

    fn images(objects: &[Object]) -> Vec<String> {
        let Object::Deployment(d) = &objects[0] else {
            panic!("not a Deployment")
        };
        d.template
            .containers
            .iter()
            .map(|c| c.image.to_string())
            .collect()
    }

    #[test]
    fn hub_tags_become_digests_and_everything_else_stays() {
        let mut objects = parse_objects("f.yaml", DEP).expect("parses");
        let before = objects.clone();
        let asked = RefCell::new(Vec::new());
        let resolve = |repo: &str, tag: &str| {
            asked.borrow_mut().push(format!("{repo}:{tag}"));
            Some(Digest::of(format!("{repo}:{tag}").as_bytes()))
        };
        pin_hub_images(&mut objects, &resolve).expect("pins");
        assert_eq!(*asked.borrow(), ["sensor:1.0", "tools/side:latest"]);
        let zero = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            images(&objects),
            [
                format!("hub:sensor@{}", Digest::of(b"sensor:1.0")),
                format!("hub:tools/side@{}", Digest::of(b"tools/side:latest")),
                "oci:/images/x:1".to_owned(),
                "reg.local:5000/sensor:1.0".to_owned(),
                format!("hub:sensor@{zero}"),
            ]
        );
        assert_eq!(objects[1], before[1], "a Device is left alone");
        // Pinning again asks nothing and changes nothing.
        let pinned = objects.clone();
        asked.borrow_mut().clear();
        pin_hub_images(&mut objects, &resolve).expect("pins");
        assert!(asked.borrow().is_empty());
        assert_eq!(objects, pinned);
    }

    #[test]
    fn a_tag_the_registry_lacks_is_located_at_the_image() {
        let mut objects = parse_objects("f.yaml", DEP).expect("parses");
        let only_sensor = |repo: &str, _: &str| (repo == "sensor").then(|| Digest::of(b"s"));
        let err = pin_hub_images(&mut objects, &only_sensor).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:12:18: image hub:tools/side is not in the hub's registry: \
             import it with drover-hub image import"
        );
        let mut objects = parse_objects("f.yaml", DEP).expect("parses");
        let err = pin_hub_images(&mut objects, &|_: &str, _: &str| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:10:18: image hub:sensor:1.0 is not in the hub's registry: \
             import it with drover-hub image import"
        );
    }

    #[test]
    fn a_stored_deployment_without_positions_still_says_which_one() {
        let mut objects = parse_objects("f.yaml", DEP).expect("parses");
        let json = serde_json::to_string(&objects[0]).expect("serializes");
        let stored: Object = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(
            stored, objects[0],
            "positions are neither stored nor compared"
        );
        objects[0] = stored;
        let err = pin_hub_images(&mut objects, &|_: &str, _: &str| None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("deployment/sensor:0:0: image hub:sensor:1.0 is not"),
            "{err}"
        );
    }
}
