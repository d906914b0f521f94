//! `apply` and `delete` of fleet manifests: parse, build the candidate snapshot, plan,
//! and either report (dry run) or commit through [`Controller::commit`]. All or nothing:
//! any error, in any file or for any device, changes nothing.

use drover_protocol::Name;

use super::rollouts::{NewRevision, add_events, apply_steps, stage_revision, write_revision};
use super::sign::sign_changes;
use super::{Controller, ControllerError};
use crate::fleet::rollout::Phase;
use crate::fleet::{self, FleetPlan, FleetSnapshot, Object, diff_workloads, plan, progress};
use crate::store::{DeploymentRow, Event, EventReason, Store};
use crate::views::{ChangeReport, DeviceChangeView, FileText, RolloutRef, labels_string};

/// One object's effect, decided before anything is written.
enum Change {
    /// `template`: its template changed (or it is new): a new revision.
    Deployment {
        name: Name,
        verb: EventReason,
        template: bool,
    },
    Labels {
        name: Name,
    },
    Unchanged,
}

impl Controller {
    /// Applies a set of manifest files: all of them or, on any error, nothing.
    pub fn apply(
        &mut self,
        files: &[FileText],
        dry_run: bool,
        now_ms: u64,
    ) -> Result<ChangeReport, ControllerError> {
        let (mut objects, mut written) = self.parse_for_apply(files)?;
        let configs = self.stage_configs(&mut objects, now_ms)?;
        self.digest_applied(&mut objects, &configs)?;
        let mut next = self.snapshot.clone();
        let mut report = ChangeReport::default();
        report.results.extend(configs.lines.iter().cloned());
        let mut todo = Vec::new();
        for o in &objects {
            let (line, change) = stage(&mut next, o);
            report.results.push(line);
            todo.push(change);
        }
        check_dependency_cycle(&next, &objects)?;
        for name in self.redigest_stored(&mut next, &objects, &configs)? {
            report
                .results
                .push(format!("deployment/{name} configured (its values changed)"));
            let images = written_images(&next.deployments[&name]);
            written.insert(name.clone(), images);
            todo.push(Change::Deployment {
                name,
                verb: EventReason::Configured,
                template: true,
            });
        }
        let source = sources(files);
        let mut revisions = Vec::new();
        for change in &todo {
            if let Change::Deployment {
                name,
                template: true,
                ..
            } = change
            {
                let images = written.remove(name).unwrap_or_default();
                let rev = stage_revision(&self.snapshot, &mut next, name, images, &source, now_ms);
                report.rollouts.extend(rev.started.clone());
                revisions.push(rev);
            }
        }
        report.unchanged_rollouts = unchanged_rollouts(&next, &objects, &revisions);
        // The first step of a new rollout picks its canary: the same commit publishes it.
        let steps = progress::step_all(&next, now_ms);
        let (events, _) = apply_steps(&mut next, steps, now_ms);
        // Sealing fills in the staged values; kept only if the apply commits.
        let before = std::mem::replace(&mut self.objects, configs.next.clone());
        let result = self.finish(next, report, dry_run, now_ms, |s, next| {
            configs.write(s)?;
            for change in &todo {
                write_change(s, next, change, &source, now_ms)?;
            }
            for rev in &revisions {
                write_revision(s, rev, now_ms)?;
            }
            add_events(s, &events)
        });
        if dry_run || result.is_err() {
            self.objects = before;
        }
        result
    }

    /// Deletes the Deployments named in the files. `Device` objects are skipped: devices
    /// are not removed (nor their labels changed) by `delete`.
    pub fn delete(
        &mut self,
        files: &[FileText],
        dry_run: bool,
        now_ms: u64,
    ) -> Result<ChangeReport, ControllerError> {
        let mut objects = parse(files)?;
        // Deployments first: a Secret deleted with the Deployment using it goes, in any
        // order of the file.
        objects.sort_by_key(|o| matches!(o, Object::Config(_)));
        let mut next = self.snapshot.clone();
        let mut report = ChangeReport::default();
        let mut gone = Vec::new();
        let mut gone_configs = Vec::new();
        for o in &objects {
            let name = o.name();
            let line = match o {
                Object::Config(c) => self.stage_config_delete(&next, c, &mut gone_configs)?,
                Object::Deployment(_) if next.deployments.remove(name).is_some() => {
                    next.revisions.remove(name);
                    gone.push(name.clone());
                    format!("deployment/{name} deleted")
                }
                Object::Deployment(_) => format!("deployment/{name} not found"),
                Object::Device(_) => format!("device/{name} skipped (devices are not deleted)"),
            };
            report.results.push(line);
        }
        let before = self.objects.clone();
        for key in &gone_configs {
            self.objects.remove(key);
        }
        let result = self.finish(next, report, dry_run, now_ms, |s, _| {
            for (kind, name) in &gone_configs {
                s.delete_config_object(kind.as_str(), name.as_str())?;
            }
            for name in &gone {
                s.delete_deployment(name.as_str())?;
                s.add_event(&Event::deployment(
                    now_ms,
                    name.as_str(),
                    EventReason::Deleted,
                    "deleted",
                ))?;
            }
            Ok(())
        });
        if dry_run || result.is_err() {
            self.objects = before;
        }
        result
    }

    /// Parses the files, refuses Device objects for unregistered devices and pins `hub:`
    /// image references to the digests the hub's registry holds now (so a re-tagged image
    /// never changes a running fleet behind the operator's back: a new apply does).
    /// Also returns each Deployment's images as written (container → reference).
    fn parse_for_apply(
        &self,
        files: &[FileText],
    ) -> Result<(Vec<Object>, Written), ControllerError> {
        let mut objects = parse(files)?;
        for o in &objects {
            if let Object::Device(d) = o
                && !self.snapshot.devices.contains_key(&d.name)
            {
                return Err(d
                    .at(format!(
                        "Device {:?} is not registered: register it first with `drover-hub device add {}` (or many with `drover-hub device import FILE`)",
                        d.name.as_str(),
                        d.name
                    ))
                    .into());
            }
        }
        for o in &objects {
            if let Object::Deployment(d) = o {
                fleet::policy::check(d, &self.settings.policy)?;
            }
        }
        let written = objects
            .iter()
            .filter_map(|o| match o {
                Object::Deployment(d) => Some((d.name.clone(), written_images(d))),
                Object::Device(_) | Object::Config(_) => None,
            })
            .collect();
        self.pin(&mut objects)?;
        Ok((objects, written))
    }

    /// Pins every unpinned `hub:` image of the objects to the digest its tag serves now.
    pub(super) fn pin(&self, objects: &mut [Object]) -> Result<(), ControllerError> {
        let registry = self.registry.clone();
        let resolve = move |repo: &str, tag: &str| registry.as_ref()?.resolve(repo, tag);
        fleet::pin_hub_images(objects, &resolve)?;
        Ok(())
    }

    /// Plans `next`; a dry run reports the plan, otherwise it is committed with `write`.
    fn finish(
        &mut self,
        next: FleetSnapshot,
        mut report: ChangeReport,
        dry_run: bool,
        now_ms: u64,
        write: impl FnOnce(&Store, &FleetSnapshot) -> Result<(), ControllerError>,
    ) -> Result<ChangeReport, ControllerError> {
        if dry_run {
            let p = plan(&next, now_ms);
            // The same size check as a real apply: a dry run must not promise what apply
            // refuses.
            sign_changes(&self.key, &self.creds, &p.changes, &self.objects)?;
            report.dry_run = true;
            report.devices = device_changes(&self.snapshot, &p);
            report.changed_devices = report.devices.len();
            return Ok(report);
        }
        let ((), p) = self.commit(next, now_ms, write)?;
        report.changed_devices = p.changes.len();
        Ok(report)
    }
}

/// The applied Deployments that get no new revision and whose current revision's last
/// rollout is in progress or was rolled back.
fn unchanged_rollouts(
    next: &FleetSnapshot,
    objects: &[Object],
    revisions: &[NewRevision],
) -> Vec<RolloutRef> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(&d.name),
            Object::Device(_) | Object::Config(_) => None,
        })
        .filter(|name| !revisions.iter().any(|r| r.row.deployment == name.as_str()))
        .filter_map(|name| {
            let state = next.revisions.get(name)?;
            let r = state.rollout.as_ref().filter(|r| r.to == state.revision)?;
            let rolled_back = matches!(r.phase, Phase::RolledBack { .. });
            (progress::is_active(r) || rolled_back).then(|| RolloutRef {
                deployment: name.to_string(),
                from: r.from,
                to: r.to,
            })
        })
        .collect()
}

/// Applies one object to the candidate snapshot; returns its report line and change.
fn stage(next: &mut FleetSnapshot, o: &Object) -> (String, Change) {
    let name = o.name().clone();
    match o {
        Object::Deployment(d) => {
            let (verb, template) = match next.deployments.get(&name) {
                Some(old) if old == d => {
                    return (format!("deployment/{name} unchanged"), Change::Unchanged);
                }
                Some(old) => (EventReason::Configured, old.template != d.template),
                None => (EventReason::Created, true),
            };
            next.deployments.insert(name.clone(), d.clone());
            let word = if verb == EventReason::Created {
                "created"
            } else {
                "configured"
            };
            (
                format!("deployment/{name} {word}"),
                Change::Deployment {
                    name,
                    verb,
                    template,
                },
            )
        }
        Object::Device(d) => {
            let Some(entry) = next.devices.get_mut(&name) else {
                return (format!("device/{name} not registered"), Change::Unchanged);
            };
            if *entry.labels == d.labels {
                return (format!("device/{name} unchanged"), Change::Unchanged);
            }
            entry.labels = std::sync::Arc::new(d.labels.clone());
            (format!("device/{name} configured"), Change::Labels { name })
        }
        // Taken out of the set before staging (`Controller::stage_configs`).
        Object::Config(_) => (String::new(), Change::Unchanged),
    }
}

fn write_change(
    s: &Store,
    next: &FleetSnapshot,
    change: &Change,
    source: &str,
    now_ms: u64,
) -> Result<(), ControllerError> {
    match change {
        Change::Unchanged => {}
        Change::Deployment { name, verb, .. } => {
            let row = DeploymentRow {
                deployment: next.deployments[name].clone(),
                source: source.to_owned(),
                updated_ms: now_ms,
            };
            s.put_deployment(&row)?;
            let word = if *verb == EventReason::Created {
                "created"
            } else {
                "configured"
            };
            s.add_event(&Event::deployment(now_ms, name.as_str(), *verb, word))?;
        }
        Change::Labels { name } => {
            let labels = &next.devices[name].labels;
            s.set_labels(name.as_str(), labels)?;
            let msg = format!("labels set to {}", labels_string(labels));
            s.add_event(&Event::device(
                now_ms,
                name.as_str(),
                EventReason::LabelsChanged,
                msg,
            ))?;
        }
    }
    Ok(())
}

fn device_changes(before: &FleetSnapshot, p: &FleetPlan) -> Vec<DeviceChangeView> {
    p.changes
        .iter()
        .map(|(device, change)| {
            let old = before
                .desired
                .get(device)
                .map_or(&[][..], |d| &d.workloads[..]);
            DeviceChangeView {
                device: device.to_string(),
                generation: change.generation,
                diff: diff_workloads(old, &change.workloads),
            }
        })
        .collect()
}

pub(super) fn parse(files: &[FileText]) -> Result<Vec<Object>, ControllerError> {
    let pairs: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.file.clone(), f.text.clone()))
        .collect();
    Ok(fleet::parse_set(&pairs)?)
}

type Written = std::collections::BTreeMap<Name, std::collections::BTreeMap<String, String>>;

fn written_images(d: &fleet::Deployment) -> std::collections::BTreeMap<String, String> {
    d.template
        .containers
        .iter()
        .map(|c| (c.name.to_string(), c.image.to_string()))
        .collect()
}

fn sources(files: &[FileText]) -> String {
    files
        .iter()
        .map(|f| f.file.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Refuses a `dependsOn` cycle among the Deployments the apply would leave (its own and
/// those already stored), located at the `dependsOn` of an applied Deployment of the
/// cycle. Checked over the whole fleet, not per device: Deployments of a cycle that never
/// share a device would wait for each other forever just the same.
fn check_dependency_cycle(next: &FleetSnapshot, applied: &[Object]) -> Result<(), ControllerError> {
    let nodes: std::collections::BTreeMap<&Name, Vec<&Name>> = next
        .deployments
        .values()
        .map(|d| {
            let deps = d.template.depends_on.iter().map(|x| &x.name).collect();
            (&d.name, deps)
        })
        .collect();
    let Some(cycle) = drover_protocol::manifest::find_cycle(&nodes) else {
        return Ok(());
    };
    let msg = format!(
        "dependsOn forms a cycle: {}",
        drover_protocol::manifest::join_cycle(&cycle)
    );
    let located = applied.iter().find_map(|o| match o {
        Object::Deployment(d) if cycle.contains(&&d.name) => Some(d),
        _ => None,
    });
    Err(match located {
        Some(d) => d.at_depends_on(msg).into(),
        None => ControllerError::Invalid(msg),
    })
}
