//! Fleet manifests: `kind: Deployment`, `Device`, `Secret` and `ConfigMap` documents
//! (`apiVersion: drover.dev/v1`), parsed into checked [`Object`]s.
//!
//! Parsing mirrors `drover_protocol::manifest`: serde-saphyr with the shared hardened
//! options and `deny_unknown_fields` for syntax and types, then checks that types cannot
//! express (selectors, labels, replicas), each located as `file:line:col`. A Deployment's
//! `template.spec` is the agent's Workload spec and is converted by the protocol crate;
//! `template.metadata.labels` become the workload's labels. Objects keep where their name
//! and images were written ([`Positions`]) for checks made after parsing. A file without
//! any object is an error, as `kubectl apply` says "no objects passed to apply".
//!
//! This module must never do IO: callers read the files and pass names and texts.

use std::collections::BTreeMap;

use drover_protocol::manifest::{
    ApiVersion, MAX_MANIFEST_BYTES, ManifestError, WorkloadTemplateSpec, checked_labels,
    yaml_options,
};
use drover_protocol::{Name, WorkloadSpec};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::config_object::{ConfigObject, DataManifest, config_object};
use super::rollout::Strategy;
use super::selector::{Operator, Requirement, Selector, check_label_key, check_label_value};
use super::source::{Position, Positions};
use super::strategy::{StrategyManifest, checked_strategy};

/// Device names starting with this are refused: it is the hub's own MQTT identity.
pub const RESERVED_DEVICE_PREFIX: &str = "drover-hub";

/// One checked fleet object.
// A Device is much smaller than a Deployment; objects are few and short-lived (one apply),
// so boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Deployment(Deployment),
    Device(DeviceObject),
    /// A Secret or a ConfigMap.
    Config(ConfigObject),
}

/// A workload template and the devices it should run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: Name,
    pub selector: Selector,
    /// `None`: one copy on every matching device (like a DaemonSet).
    pub replicas: Option<u32>,
    /// Only meaningful with `replicas`.
    pub placement: Placement,
    /// The workload each chosen device runs; its name is the Deployment's name.
    pub template: WorkloadSpec,
    pub labels: BTreeMap<String, String>,
    /// How a new revision reaches the devices: `None` = all at once, no health gate.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Where the name and each container's image were written (not stored or compared).
    #[serde(skip)]
    pub positions: Positions,
}

/// A device's labels, as declared in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceObject {
    pub name: Name,
    pub labels: BTreeMap<String, String>,
    /// Where the name was written (not stored or compared).
    #[serde(skip)]
    pub positions: Positions,
}

impl DeviceObject {
    /// `message` located at this Device's `metadata.name`, e.g. for
    /// `FILE:LINE:COL: Device "x" is not registered: …`.
    pub fn at(&self, message: impl Into<String>) -> ManifestError {
        Positions::error_at(self.positions.name.as_ref(), "Device", &self.name, message)
    }
}

impl Deployment {
    /// `message` located at this Deployment's `metadata.name`.
    pub fn at(&self, message: impl Into<String>) -> ManifestError {
        let at = self.positions.name.as_ref();
        Positions::error_at(at, "Deployment", &self.name, message)
    }

    /// `message` located at this Deployment's first `dependsOn` (else `metadata.name`).
    pub fn at_depends_on(&self, message: impl Into<String>) -> ManifestError {
        let at = self.positions.depends_on.as_ref();
        let at = at.or(self.positions.name.as_ref());
        Positions::error_at(at, "Deployment", &self.name, message)
    }
}

/// How replicas are spread over the matching devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// The device with the fewest workloads first.
    #[default]
    Spread,
    /// The device with the most memory already assigned that still fits first.
    Binpack,
}

impl Object {
    pub fn name(&self) -> &Name {
        match self {
            Object::Deployment(d) => &d.name,
            Object::Device(d) => &d.name,
            Object::Config(c) => &c.name,
        }
    }

    /// `Deployment`, `Device`, `Secret` or `ConfigMap`, as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Deployment(_) => "Deployment",
            Object::Device(_) => "Device",
            Object::Config(c) => c.kind.as_str(),
        }
    }
}

/// Lenient first look at a document, only to explain kind mistakes clearly.
#[derive(Deserialize)]
struct Header {
    kind: Option<Spanned<String>>,
    spec: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    #[allow(dead_code)] // checked by deserialization: only one version exists
    api_version: ApiVersion,
    kind: Kind,
    metadata: Metadata,
    #[serde(default)]
    spec: Option<Spanned<DeploymentSpecManifest>>,
    /// Secret (base64) and ConfigMap (text) values.
    #[serde(default)]
    data: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Secret values as text.
    #[serde(default)]
    string_data: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// A Secret's type.
    #[serde(default, rename = "type")]
    secret_type: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    Device,
    Secret,
    ConfigMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    name: Spanned<Name>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeploymentSpecManifest {
    selector: Spanned<SelectorManifest>,
    #[serde(default)]
    replicas: Option<Spanned<u32>>,
    #[serde(default)]
    placement: Option<Spanned<Placement>>,
    template: Spanned<TemplateManifest>,
    #[serde(default)]
    strategy: Option<Spanned<StrategyManifest>>,
    #[serde(default)]
    min_ready_seconds: Option<Spanned<u32>>,
}

/// `template`: the workload's `spec`, and optionally Kubernetes' `metadata.labels`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TemplateManifest {
    #[serde(default)]
    metadata: TemplateMetadata,
    spec: WorkloadTemplateSpec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TemplateMetadata {
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SelectorManifest {
    #[serde(default)]
    match_labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    match_expressions: Vec<Spanned<RequirementManifest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequirementManifest {
    key: Spanned<String>,
    operator: Operator,
    #[serde(default)]
    values: Option<Spanned<Vec<Spanned<String>>>>,
}

fn at<T>(file: &str, node: &Spanned<T>, message: impl Into<String>) -> ManifestError {
    ManifestError::at(file, node, message)
}

/// A parsed object and where its document starts, for duplicate reports.
type Located = (u64, u64, Object);

/// Parses every document of one fleet manifest file; a file without any object is an
/// error. Names are not checked for duplicates here; [`parse_set`] does that across files.
pub fn parse_objects(file: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    Ok(parse_located(file, text)?
        .into_iter()
        .map(|(_, _, o)| o)
        .collect())
}

/// Parses a whole apply set (`(file name, text)` pairs). Any error in any file, or two
/// objects of the same kind with the same name, fails the whole set.
pub fn parse_set(files: &[(String, String)]) -> Result<Vec<Object>, ManifestError> {
    let mut seen: BTreeMap<(&'static str, Name), (String, u64, u64)> = BTreeMap::new();
    let mut objects = Vec::new();
    for (file, text) in files {
        for (line, column, object) in parse_located(file, text)? {
            let key = (object.kind(), object.name().clone());
            if let Some((f, l, c)) = seen.get(&key) {
                return Err(ManifestError {
                    file: file.clone(),
                    line,
                    column,
                    message: format!(
                        "{} {:?} is defined twice (first at {f}:{l}:{c})",
                        object.kind(),
                        object.name().as_str()
                    ),
                });
            }
            seen.insert(key, (file.clone(), line, column));
            objects.push(object);
        }
    }
    Ok(objects)
}

fn parse_located(file: &str, text: &str) -> Result<Vec<Located>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: format!("file is larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    explain_kind_mistakes(file, text)?;
    let docs: Vec<Spanned<Document>> =
        serde_saphyr::from_str_multiple_with_options(text, yaml_options())
            .map_err(|e| ManifestError::from_yaml(file, &e))?;
    if docs.is_empty() {
        return Err(ManifestError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: format!("no objects in {file}"),
        });
    }
    docs.iter()
        .map(|doc| {
            let object = convert(file, doc)?;
            Ok((doc.referenced.line(), doc.referenced.column(), object))
        })
        .collect()
}

/// Agent manifests (`kind: Workload`) and Devices with a spec would otherwise fail with a
/// puzzling unknown or missing field somewhere in `spec`; say what is wrong instead. Other
/// problems are left to the strict pass, which reports them better.
fn explain_kind_mistakes(file: &str, text: &str) -> Result<(), ManifestError> {
    let parsed: Result<Vec<Header>, _> =
        serde_saphyr::from_str_multiple_with_options(text, yaml_options());
    let Ok(headers) = parsed else {
        return Ok(());
    };
    for header in &headers {
        let Some(kind) = &header.kind else { continue };
        if kind.value == "Workload" {
            let msg = "kind Workload is for an agent's local manifests; the hub takes kind \
                       Deployment (with the workload under spec.template.spec) or Device";
            return Err(at(file, kind, msg));
        }
        let no_spec = match kind.value.as_str() {
            "Device" => Some(DEVICE_SPEC),
            "Secret" => Some("a Secret has no spec: its values go in data or stringData"),
            "ConfigMap" => Some("a ConfigMap has no spec: its values go in data"),
            _ => None,
        };
        if let (Some(spec), Some(msg)) = (&header.spec, no_spec) {
            return Err(at(file, spec, msg));
        }
    }
    Ok(())
}

const DEVICE_SPEC: &str = "a Device has no spec: its labels go in metadata.labels";

fn convert(file: &str, doc: &Spanned<Document>) -> Result<Object, ManifestError> {
    let d = &doc.value;
    let name = d.metadata.name.value.clone();
    let labels = checked_labels(file, &d.metadata.labels)?;
    let data = DataManifest {
        data: d.data.as_ref(),
        string_data: d.string_data.as_ref(),
        secret_type: d.secret_type.as_ref(),
    };
    let ref_kind = match d.kind {
        Kind::Secret => Some(drover_protocol::RefKind::Secret),
        Kind::ConfigMap => Some(drover_protocol::RefKind::ConfigMap),
        Kind::Deployment | Kind::Device => None,
    };
    if let Some(kind) = ref_kind {
        if let Some(spec) = &d.spec {
            let msg = format!("a {} has no spec: its values go in data", kind.as_str());
            return Err(at(file, spec, msg));
        }
        return config_object(file, kind, &d.metadata.name, &data).map(Object::Config);
    }
    if let Some(p) = data.any_position(file) {
        let msg = "data, stringData and type belong to Secrets and ConfigMaps";
        return Err(p.error(msg));
    }
    match (d.kind, &d.spec) {
        (Kind::Device, Some(spec)) => Err(at(file, spec, DEVICE_SPEC)),
        (Kind::Device, None) => {
            if name.as_str().starts_with(RESERVED_DEVICE_PREFIX) {
                let msg = format!(
                    "device names starting with {RESERVED_DEVICE_PREFIX:?} are reserved for the hub"
                );
                return Err(at(file, &d.metadata.name, msg));
            }
            let positions = Positions {
                name: Some(Position::of(file, &d.metadata.name)),
                ..Positions::default()
            };
            Ok(Object::Device(DeviceObject {
                name,
                labels,
                positions,
            }))
        }
        (Kind::Deployment, None) => Err(at(file, doc, "a Deployment needs a spec")),
        (Kind::Deployment, Some(spec)) => {
            let mut dep = deployment(file, name, labels, spec)?;
            dep.positions.name = Some(Position::of(file, &d.metadata.name));
            Ok(Object::Deployment(dep))
        }
        (Kind::Secret | Kind::ConfigMap, _) => unreachable!("handled above"),
    }
}

fn deployment(
    file: &str,
    name: Name,
    labels: BTreeMap<String, String>,
    spec: &Spanned<DeploymentSpecManifest>,
) -> Result<Deployment, ManifestError> {
    let s = &spec.value;
    let selector = checked_selector(file, &s.selector.value)?;
    if let Some(r) = s.replicas.as_ref().filter(|r| r.value == 0) {
        return Err(at(
            file,
            r,
            "replicas must be at least 1 (delete the Deployment to run none)",
        ));
    }
    if let (None, Some(p)) = (&s.replicas, &s.placement) {
        let msg =
            "placement needs replicas: without replicas every matching device runs the workload";
        return Err(at(file, p, msg));
    }
    let t = &s.template.value;
    let mut template = t.spec.to_spec(file, name.clone()).map_err(|mut e| {
        if e.line == 0 {
            (e.line, e.column) = (s.template.referenced.line(), s.template.referenced.column());
        }
        e
    })?;
    template.labels = checked_labels(file, &t.metadata.labels)?;
    let min_ready = s.min_ready_seconds.as_ref();
    template.min_ready_ms = min_ready.map_or(0, |m| m.value.saturating_mul(1000));
    let strategy = checked_strategy(file, s.strategy.as_ref(), min_ready)?;
    let images = t.spec.containers.value.iter();
    let positions = Positions {
        name: None,
        images: images
            .map(|c| (c.name.value.clone(), Position::of(file, &c.image)))
            .collect(),
        depends_on: t.spec.depends_on.first().map(|d| Position::of(file, d)),
        refs: t.spec.ref_sites(file),
    };
    Ok(Deployment {
        name,
        selector,
        replicas: s.replicas.as_ref().map(|r| r.value),
        placement: s.placement.as_ref().map(|p| p.value).unwrap_or_default(),
        template,
        labels,
        strategy,
        positions,
    })
}

fn checked_selector(file: &str, s: &SelectorManifest) -> Result<Selector, ManifestError> {
    let match_labels = checked_labels(file, &s.match_labels)?;
    let match_expressions = s
        .match_expressions
        .iter()
        .map(|r| checked_requirement(file, r))
        .collect::<Result<_, _>>()?;
    Ok(Selector {
        match_labels,
        match_expressions,
    })
}

fn checked_requirement(
    file: &str,
    node: &Spanned<RequirementManifest>,
) -> Result<Requirement, ManifestError> {
    let r = &node.value;
    check_label_key(&r.key.value).map_err(|e| at(file, &r.key, e.to_string()))?;
    let values = r.values.as_ref().map_or(&[][..], |v| &v.value[..]);
    let wants_values = matches!(r.operator, Operator::In | Operator::NotIn);
    match (&r.values, wants_values) {
        (None, true) => {
            let msg = format!("operator {:?} needs a non-empty values list", r.operator);
            return Err(at(file, node, msg));
        }
        (Some(v), true) if v.value.is_empty() => {
            let msg = format!("operator {:?} needs a non-empty values list", r.operator);
            return Err(at(file, v, msg));
        }
        (Some(v), false) if !v.value.is_empty() => {
            let msg = format!("operator {:?} takes no values", r.operator);
            return Err(at(file, v, msg));
        }
        _ => {}
    }
    for v in values {
        check_label_value(&v.value).map_err(|e| at(file, v, e.to_string()))?;
    }
    Ok(Requirement {
        key: r.key.value.clone(),
        operator: r.operator,
        values: values.iter().map(|v| v.value.clone()).collect(),
    })
}
