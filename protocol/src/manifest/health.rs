//! The health parts of a manifest: probes and `dependsOn`, shaped as in Kubernetes
//! (`livenessProbe: {httpGet: {path, port}, periodSeconds: 10}`) and checked here, with
//! every error at its node. Also [`dependency_cycle`], which the hub and the agent run over
//! all the workloads of one device. No IO.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ManifestError;
use crate::health::{Dependency, DependencyCondition, HttpScheme, Probe, ProbeAction};
use crate::{Name, WorkloadSpec};

/// Longest probe command, header list or path accepted (bytes, all parts together).
pub const MAX_PROBE_BYTES: usize = 4096;

/// A probe as written (Kubernetes' `Probe`): exactly one action, then timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeManifest {
    #[serde(default)]
    pub exec: Option<ExecManifest>,
    #[serde(default)]
    pub http_get: Option<HttpGetManifest>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocketManifest>,
    #[serde(default)]
    pub initial_delay_seconds: Option<Spanned<u32>>,
    #[serde(default)]
    pub period_seconds: Option<Spanned<u32>>,
    #[serde(default)]
    pub timeout_seconds: Option<Spanned<u32>>,
    #[serde(default)]
    pub success_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub failure_threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecManifest {
    pub command: Spanned<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGetManifest {
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    pub port: Spanned<u16>,
    #[serde(default)]
    pub scheme: SchemeManifest,
    #[serde(default)]
    pub http_headers: Vec<Spanned<HeaderManifest>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SchemeManifest {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderManifest {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSocketManifest {
    pub port: Spanned<u16>,
}

/// Which probe a [`ProbeManifest`] is: liveness and startup probes must have
/// `successThreshold: 1` (as Kubernetes requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }
}

/// `dependsOn` of a workload: `{workload: NAME, condition: started|healthy|completed}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadDependencyManifest {
    pub workload: Spanned<Name>,
    #[serde(default)]
    pub condition: ConditionManifest,
}

/// `dependsOn` of a container: `{container: NAME, condition: …}` in the same workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerDependencyManifest {
    pub container: Spanned<Name>,
    #[serde(default)]
    pub condition: ConditionManifest,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionManifest {
    #[default]
    Started,
    Healthy,
    Completed,
}

impl From<ConditionManifest> for DependencyCondition {
    fn from(c: ConditionManifest) -> DependencyCondition {
        match c {
            ConditionManifest::Started => DependencyCondition::Started,
            ConditionManifest::Healthy => DependencyCondition::Healthy,
            ConditionManifest::Completed => DependencyCondition::Completed,
        }
    }
}

/// Checks one probe and builds its wire form.
pub fn probe(
    file: &str,
    node: &Spanned<ProbeManifest>,
    kind: ProbeKind,
) -> Result<Probe, ManifestError> {
    let p = &node.value;
    let field = kind.field();
    let action = match (&p.exec, &p.http_get, &p.tcp_socket) {
        (Some(e), None, None) => exec_action(file, e, field)?,
        (None, Some(h), None) => http_action(file, h, field)?,
        (None, None, Some(t)) => ProbeAction::TcpSocket {
            port: port(file, &t.port, field)?,
        },
        _ => {
            let msg = format!("{field} needs exactly one of exec, httpGet or tcpSocket");
            return Err(ManifestError::at(file, node, msg));
        }
    };
    let mut out = Probe::new(action);
    let at_least = |v: &Option<Spanned<u32>>, name: &str, min: u32, dflt: u32| match v {
        None => Ok(dflt),
        Some(s) if s.value >= min => Ok(s.value),
        Some(s) => Err(ManifestError::at(
            file,
            s,
            format!("{field}.{name} must be at least {min}"),
        )),
    };
    out.initial_delay_s = at_least(&p.initial_delay_seconds, "initialDelaySeconds", 0, 0)?;
    out.period_s = at_least(&p.period_seconds, "periodSeconds", 1, 10)?;
    out.timeout_s = at_least(&p.timeout_seconds, "timeoutSeconds", 1, 1)?;
    out.success_threshold = at_least(&p.success_threshold, "successThreshold", 1, 1)?;
    out.failure_threshold = at_least(&p.failure_threshold, "failureThreshold", 1, 3)?;
    if kind != ProbeKind::Readiness
        && out.success_threshold != 1
        && let Some(s) = &p.success_threshold
    {
        let msg = format!("{field}.successThreshold must be 1");
        return Err(ManifestError::at(file, s, msg));
    }
    Ok(out)
}

fn exec_action(file: &str, e: &ExecManifest, field: &str) -> Result<ProbeAction, ManifestError> {
    let command = &e.command.value;
    if command.is_empty() || command[0].is_empty() {
        let msg = format!("{field}.exec.command needs at least the program to run");
        return Err(ManifestError::at(file, &e.command, msg));
    }
    if command.iter().map(String::len).sum::<usize>() > MAX_PROBE_BYTES {
        let msg = format!("{field}.exec.command is longer than {MAX_PROBE_BYTES} bytes");
        return Err(ManifestError::at(file, &e.command, msg));
    }
    Ok(ProbeAction::Exec {
        command: command.clone(),
    })
}

fn http_action(file: &str, h: &HttpGetManifest, field: &str) -> Result<ProbeAction, ManifestError> {
    let path = match &h.path {
        None => "/".to_owned(),
        Some(p) if p.value.starts_with('/') && is_clean(&p.value) => p.value.clone(),
        Some(p) => {
            let msg = format!("{field}.httpGet.path must start with '/' and hold no spaces");
            return Err(ManifestError::at(file, p, msg));
        }
    };
    let mut headers = Vec::with_capacity(h.http_headers.len());
    let mut total = path.len();
    for node in &h.http_headers {
        let hd = &node.value;
        let token = !hd.name.is_empty()
            && hd
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !token || !is_clean_value(&hd.value) {
            let msg = format!(
                "{field}.httpGet.httpHeaders: {:?} is not a valid header",
                hd.name
            );
            return Err(ManifestError::at(file, node, msg));
        }
        total += hd.name.len() + hd.value.len();
        headers.push((hd.name.clone(), hd.value.clone()));
    }
    if total > MAX_PROBE_BYTES {
        let msg = format!("{field}.httpGet is longer than {MAX_PROBE_BYTES} bytes");
        return Err(ManifestError::at(file, &h.port, msg));
    }
    Ok(ProbeAction::HttpGet {
        path,
        port: port(file, &h.port, field)?,
        scheme: match h.scheme {
            SchemeManifest::Http => HttpScheme::Http,
            SchemeManifest::Https => HttpScheme::Https,
        },
        headers,
    })
}

fn port(file: &str, p: &Spanned<u16>, field: &str) -> Result<u16, ManifestError> {
    if p.value == 0 {
        return Err(ManifestError::at(
            file,
            p,
            format!("{field}: port must be 1–65535"),
        ));
    }
    Ok(p.value)
}

/// A request-target: visible ASCII only.
fn is_clean(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// A header value: visible ASCII and spaces, no line breaks.
fn is_clean_value(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// Checks a container's `dependsOn` against the workload's containers (`names`).
pub fn container_dependencies(
    file: &str,
    own: &Name,
    deps: &[Spanned<ContainerDependencyManifest>],
    names: &BTreeSet<&Name>,
) -> Result<Vec<Dependency>, ManifestError> {
    let mut out = Vec::with_capacity(deps.len());
    for d in deps {
        let target = &d.value.container;
        if &target.value == own {
            let msg = format!("container {:?} cannot depend on itself", own.as_str());
            return Err(ManifestError::at(file, target, msg));
        }
        if !names.contains(&target.value) {
            let msg = format!(
                "dependsOn: no container {:?} in this workload",
                target.value.as_str()
            );
            return Err(ManifestError::at(file, target, msg));
        }
        out.push(Dependency {
            name: target.value.clone(),
            condition: d.value.condition.into(),
        });
    }
    Ok(out)
}

/// Checks a workload's `dependsOn` (targets may live in other files: only itself is refused).
pub fn workload_dependencies(
    file: &str,
    own: &Name,
    deps: &[Spanned<WorkloadDependencyManifest>],
) -> Result<Vec<Dependency>, ManifestError> {
    let mut out = Vec::with_capacity(deps.len());
    for d in deps {
        let target = &d.value.workload;
        if &target.value == own {
            let msg = format!("workload {:?} cannot depend on itself", own.as_str());
            return Err(ManifestError::at(file, target, msg));
        }
        out.push(Dependency {
            name: target.value.clone(),
            condition: d.value.condition.into(),
        });
    }
    Ok(out)
}

/// A cycle among `nodes` (name → what it depends on), as the names along it with the first
/// repeated at the end (`a → b → a`); `None` when there is none. Names not in `nodes` end
/// a path (a dependency on something absent is a wait, not a cycle).
pub fn find_cycle<'a>(nodes: &BTreeMap<&'a Name, Vec<&'a Name>>) -> Option<Vec<&'a Name>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: BTreeMap<&Name, Mark> = BTreeMap::new();
    for &start in nodes.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // Iterative depth-first search: (node, index of its next edge).
        let mut path: Vec<(&Name, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Open);
        while let Some(top) = path.last_mut() {
            let node = top.0;
            let edges = nodes.get(node).map(Vec::as_slice).unwrap_or(&[]);
            let Some(&to) = edges.get(top.1) else {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            };
            top.1 += 1;
            match marks.get(to) {
                Some(Mark::Open) => {
                    let from = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    let mut cycle: Vec<&Name> = path[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(to);
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None if nodes.contains_key(to) => {
                    marks.insert(to, Mark::Open);
                    path.push((to, 0));
                }
                None => {}
            }
        }
    }
    None
}

/// A `dependsOn` cycle among the workloads of one device (see [`find_cycle`]).
pub fn workload_cycle(workloads: &[WorkloadSpec]) -> Option<Vec<&Name>> {
    let nodes: BTreeMap<&Name, Vec<&Name>> = workloads
        .iter()
        .map(|w| (&w.name, w.depends_on.iter().map(|d| &d.name).collect()))
        .collect();
    find_cycle(&nodes)
}

/// `a → b → a`.
pub fn join_cycle(names: &[&Name]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
