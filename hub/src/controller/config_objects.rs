//! Secrets and ConfigMaps in `apply` and `delete`: the applied objects are staged beside
//! the stored ones, every applied Deployment's references are digested against them
//! (a missing object or key fails the apply at the reference's `file:line:col`), and
//! stored Deployments that use a changed object get the new digests, hence a new
//! revision and a rollout, as a changed template does.
//!
//! Kubernetes accepts references to objects that do not exist yet and leaves the pod
//! waiting; here the apply fails at once instead, naming the reference, because a device
//! cannot wait for a value only the hub could send. The objects may be in the same apply
//! set as the Deployments, in any order.

use drover_protocol::{Name, RefKind};

use super::{Controller, ControllerError};
use crate::fleet::{ConfigObject, Deployment, FleetSnapshot, Object};
use crate::secrets::views::ConfigObjectView;
use crate::secrets::{self, Missing, Objects, SecretBox};
use crate::store::{ConfigRow, Store};

/// What an apply does to Secrets and ConfigMaps, decided before anything is written.
#[derive(Default)]
pub(super) struct ConfigStage {
    /// Stored and applied objects after the apply.
    pub next: Objects,
    /// Rows to write (Secret values already sealed).
    pub rows: Vec<ConfigRow>,
    /// Objects whose keys or values changed.
    pub changed: Vec<(RefKind, Name)>,
    pub lines: Vec<String>,
}

impl ConfigStage {
    pub fn write(&self, s: &Store) -> Result<(), ControllerError> {
        for row in &self.rows {
            s.put_config_object(row)?;
        }
        Ok(())
    }
}

fn lower(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Secret => "secret",
        RefKind::ConfigMap => "configmap",
    }
}

fn at_rest(e: secrets::AtRestError) -> ControllerError {
    ControllerError::Invalid(e.to_string())
}

impl Controller {
    /// Uses `b` for Secret values at rest and loads the stored objects with it.
    pub fn with_secret_box(mut self, b: SecretBox) -> Result<Controller, ControllerError> {
        let mut objects = Objects::new();
        for row in self.store.config_objects()? {
            if let Some(o) = secrets::from_row(&row, &b).map_err(at_rest)? {
                objects.insert((o.kind, o.name.clone()), o);
            }
        }
        self.objects = objects;
        self.secret_box = b;
        Ok(self)
    }

    /// Takes the Secrets and ConfigMaps out of `objects` and stages them.
    pub(super) fn stage_configs(
        &self,
        objects: &mut Vec<Object>,
        now_ms: u64,
    ) -> Result<ConfigStage, ControllerError> {
        let mut stage = ConfigStage {
            next: self.objects.clone(),
            ..ConfigStage::default()
        };
        let (configs, rest): (Vec<Object>, Vec<Object>) = std::mem::take(objects)
            .into_iter()
            .partition(|o| matches!(o, Object::Config(_)));
        *objects = rest;
        for o in configs {
            let Object::Config(c) = o else { continue };
            let key = (c.kind, c.name.clone());
            let word = match self.objects.get(&key) {
                Some(old) if old.same_as(&c) => "unchanged",
                Some(_) => "configured",
                None => "created",
            };
            stage
                .lines
                .push(format!("{}/{} {word}", lower(c.kind), c.name));
            if word != "unchanged" {
                let row = secrets::to_row(&c, &self.secret_box, now_ms).map_err(at_rest)?;
                stage.rows.push(row);
                stage.changed.push(key.clone());
            }
            stage.next.insert(key, c);
        }
        Ok(stage)
    }

    /// Digests the references of the applied Deployments; errors located where written.
    pub(super) fn digest_applied(
        &self,
        objects: &mut [Object],
        stage: &ConfigStage,
    ) -> Result<(), ControllerError> {
        for o in objects {
            let Object::Deployment(d) = o else { continue };
            let b = &self.secret_box;
            let result = secrets::digest_refs(&mut d.template, &stage.next, &|p| b.digest(p));
            if let Err(missing) = result {
                return Err(locate(d, &missing).into());
            }
        }
        Ok(())
    }

    /// Stored Deployments (not in this apply) that use a changed object, with their
    /// templates digested again in `next`. Returns their names.
    pub(super) fn redigest_stored(
        &self,
        next: &mut FleetSnapshot,
        applied: &[Object],
        stage: &ConfigStage,
    ) -> Result<Vec<Name>, ControllerError> {
        let mut touched = Vec::new();
        let is_applied = |n: &Name| {
            applied
                .iter()
                .any(|o| matches!(o, Object::Deployment(d) if &d.name == n))
        };
        for (name, d) in next.deployments.iter_mut() {
            let uses = stage
                .changed
                .iter()
                .any(|(k, n)| secrets::references(&d.template, *k, n));
            if !uses || is_applied(name) {
                continue;
            }
            let before = d.template.clone();
            let b = &self.secret_box;
            secrets::digest_refs(&mut d.template, &stage.next, &|p| b.digest(p))
                .map_err(|m| ControllerError::Invalid(format!("deployment/{name}: {m}")))?;
            if d.template != before {
                touched.push(name.clone());
            }
        }
        Ok(touched)
    }

    /// Deletes a Secret or ConfigMap no Deployment uses; returns the report line.
    pub(super) fn stage_config_delete(
        &self,
        next: &FleetSnapshot,
        c: &ConfigObject,
        gone: &mut Vec<(RefKind, Name)>,
    ) -> Result<String, ControllerError> {
        let label = format!("{}/{}", lower(c.kind), c.name);
        if !self.objects.contains_key(&(c.kind, c.name.clone())) {
            return Ok(format!("{label} not found"));
        }
        if let Some(d) = next
            .deployments
            .values()
            .find(|d| secrets::references(&d.template, c.kind, &c.name))
        {
            let msg = format!(
                "{label} is used by deployment/{}: delete or change that first",
                d.name
            );
            return Err(c.at(msg).into());
        }
        gone.push((c.kind, c.name.clone()));
        Ok(format!("{label} deleted"))
    }
}

/// A missing object or key, located at the reference that names it.
fn locate(d: &Deployment, m: &Missing) -> drover_protocol::manifest::ManifestError {
    let sites = &d.positions.refs;
    let exact = sites
        .iter()
        .find(|s| s.kind == m.kind() && &s.object == m.object() && s.key.as_deref() == m.key());
    let any = sites
        .iter()
        .find(|s| s.kind == m.kind() && &s.object == m.object());
    let hint = match m {
        Missing::Object { .. } => ": apply it first, or in the same apply",
        Missing::Key { .. } | Missing::NotText { .. } => "",
    };
    match exact.or(any).or(sites.first()) {
        Some(s) => drover_protocol::manifest::ManifestError {
            file: d
                .positions
                .name
                .as_ref()
                .map_or_else(String::new, |p| p.file.clone()),
            line: s.line,
            column: s.column,
            message: format!("{m}{hint}"),
        },
        None => d.at(format!("{m}{hint}")),
    }
}

impl super::ReadSide {
    /// Every Secret (`kind` = `Secret`) or ConfigMap, values of Secrets redacted.
    pub fn config_objects(&self, kind: &str) -> Result<Vec<ConfigObjectView>, ControllerError> {
        Ok(self
            .store
            .config_objects()?
            .iter()
            .filter(|r| r.kind == kind)
            .map(ConfigObjectView::of)
            .collect())
    }

    pub fn config_object(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ConfigObjectView, ControllerError> {
        let kind_name = if kind == "Secret" {
            "secret"
        } else {
            "configmap"
        };
        self.config_objects(kind)?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| super::read::not_found(kind_name, name))
    }
}
