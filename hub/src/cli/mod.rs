//! The CLI side of `drover-hub`: each command reads its input (manifest files), calls the
//! hub's HTTP API and prints the answer. No fleet logic lives here: the hub parses and
//! checks manifests itself, so errors look the same whatever the client.

mod client;
pub mod clients;
pub mod device_cmd;
pub mod enroll;
mod output;
pub mod rollout;
pub mod top;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

pub use client::{Client, ClientError};

use crate::views::{
    AddDeviceRequest, ChangeReport, DeploymentDetail, DeploymentView, DeviceAddedAnswer,
    DeviceDetail, DeviceView, DevicesImported, FileText, ImageView, ImportReport, ImportRequest,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetKind {
    #[value(alias = "device")]
    Devices,
    #[value(alias = "deployment")]
    Deployments,
    #[value(alias = "secret")]
    Secrets,
    #[value(alias = "configmap")]
    Configmaps,
    Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DescribeKind {
    #[value(alias = "devices")]
    Device,
    #[value(alias = "deployments")]
    Deployment,
    #[value(alias = "secrets")]
    Secret,
    #[value(alias = "configmaps")]
    Configmap,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no *.yaml or *.yml files in this folder", .0.display())]
    EmptyDir(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error("cannot print as {format}: {message}")]
    Output {
        format: &'static str,
        message: String,
    },
}

/// `apply -f` / `delete -f`: every file given, folders expanded to their `*.yaml`/`*.yml`
/// files in name order.
pub fn read_manifests(paths: &[PathBuf]) -> Result<Vec<FileText>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        let read_err = |source| CliError::Read {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(read_err)?.is_dir() {
            let mut found = yaml_files_in(path)?;
            if found.is_empty() {
                return Err(CliError::EmptyDir(path.clone()));
            }
            found.sort();
            for f in found {
                files.push(read_one(&f)?);
            }
        } else {
            files.push(read_one(path)?);
        }
    }
    Ok(files)
}

fn yaml_files_in(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let read_err = |source| CliError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            out.push(path);
        }
    }
    Ok(out)
}

fn read_one(path: &Path) -> Result<FileText, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(FileText {
        file: path.display().to_string(),
        text,
    })
}

/// `apply -f` (`delete -f` with `delete`); with `dry_run` the hub plans and reports, and
/// changes nothing. Returns the report (for `diff`'s exit code).
pub fn apply(
    client: &Client,
    paths: &[PathBuf],
    delete: bool,
    dry_run: bool,
    format: Format,
) -> Result<ChangeReport, CliError> {
    let files = read_manifests(paths)?;
    let verb = if delete { "delete" } else { "apply" };
    let path = format!("/v1/{verb}{}", if dry_run { "?dry_run=true" } else { "" });
    let report: ChangeReport = client.post(&path, &files)?;
    output::print(&report, format, output::change_report)?;
    Ok(report)
}

pub fn get(client: &Client, kind: GetKind, format: Format) -> Result<(), CliError> {
    match kind {
        GetKind::Devices => {
            let v: Vec<DeviceView> = client.get("/v1/devices")?;
            output::print(&v, format, |v| output::devices_table(v, crate::now_ms()))
        }
        GetKind::Deployments => {
            let v: Vec<DeploymentView> = client.get("/v1/deployments")?;
            output::print(&v, format, |v| output::deployments_table(v))
        }
        GetKind::Secrets | GetKind::Configmaps => {
            let path = if kind == GetKind::Secrets {
                "/v1/secrets"
            } else {
                "/v1/configmaps"
            };
            let v: Vec<crate::secrets::views::ConfigObjectView> = client.get(path)?;
            output::print(&v, format, |v| crate::secrets::views::table(v))
        }
        GetKind::Stats => {
            let v: BTreeMap<String, u64> = client.get("/v1/stats")?;
            output::print(&v, format, output::stats_table)
        }
    }
}

pub fn describe(
    client: &Client,
    kind: DescribeKind,
    name: &str,
    format: Format,
) -> Result<(), CliError> {
    let name = client::escape(name);
    match kind {
        DescribeKind::Device => {
            let v: DeviceDetail = client.get(&format!("/v1/devices/{name}"))?;
            output::print(&v, format, |v| output::describe_device(v, crate::now_ms()))
        }
        DescribeKind::Deployment => {
            let v: DeploymentDetail = client.get(&format!("/v1/deployments/{name}"))?;
            output::print(&v, format, |v| {
                output::describe_deployment(v, crate::now_ms())
            })
        }
        DescribeKind::Secret | DescribeKind::Configmap => {
            let base = if kind == DescribeKind::Secret {
                "secrets"
            } else {
                "configmaps"
            };
            let v: crate::secrets::views::ConfigObjectView =
                client.get(&format!("/v1/{base}/{name}"))?;
            output::print(&v, format, crate::secrets::views::describe)
        }
    }
}

pub fn add_device(
    client: &Client,
    name: &str,
    labels: Vec<(String, String)>,
    format: Format,
) -> Result<(), CliError> {
    let req = AddDeviceRequest {
        name: name.to_owned(),
        labels: labels.into_iter().collect(),
    };
    let added: DeviceAddedAnswer = client.post("/v1/devices", &req)?;
    output::print(&added, format, |a| {
        format!(
            "# Device {} registered. Add this to its agent config (/etc/drover/agent.toml):\n{}",
            a.device.name, a.device.config
        )
    })
}

/// `device import FILE`: registers every device of a CSV or YAML file (all or nothing);
/// with `out_dir`, writes each device's agent config to `DIR/NAME.toml` (mode 0600).
pub fn import_devices(
    client: &Client,
    path: &Path,
    out_dir: Option<&Path>,
    format: Format,
) -> Result<(), CliError> {
    if out_dir.is_none() && format == Format::Table {
        return Err(CliError::Usage(
            "device import shows each credential only once: pass --out-dir DIR or -o json"
                .to_owned(),
        ));
    }
    if let Some(dir) = out_dir {
        prepare_out_dir(dir)?;
    }
    let file = read_one(path)?;
    let answer: DevicesImported = client.post("/v1/devices/import", &file)?;
    if let Some(dir) = out_dir
        && let Err(e) = write_configs(dir, &answer)
    {
        // Registered already: never lose the credentials.
        output::print(&answer, Format::Json, |_| String::new())?;
        return Err(CliError::Usage(format!(
            "{} devices WERE registered, but their configs could not all be written ({e}); every credential is printed above as JSON",
            answer.registered
        )));
    }
    output::print(&answer, format, |a| {
        let dir = out_dir.map(|d| d.display().to_string()).unwrap_or_default();
        format!(
            "{} devices registered; agent configs written to {}/NAME.toml\n",
            a.registered,
            dir.trim_end_matches('/')
        )
    })
}

/// Creates `dir` (mode 0700) if needed and checks that files can be created in it, before
/// anything is registered.
fn prepare_out_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| CliError::Read {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let probe = dir.join(format!(".drover-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

fn write_configs(dir: &Path, answer: &DevicesImported) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Read { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    for d in &answer.devices {
        let path = dir.join(format!("{}.toml", d.device.name));
        // Never over an existing file (or through a symlink): its mode could expose the
        // credential.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(err(&path))?;
        f.write_all(d.device.config.as_bytes())
            .map_err(err(&path))?;
    }
    Ok(())
}

/// `image import PATH`: the hub reads the layout itself, so a relative path is made
/// absolute here (it must name the same folder on the hub's machine).
pub fn image_import(
    client: &Client,
    path: &Path,
    name: Option<String>,
    tag: Option<String>,
    format: Format,
) -> Result<(), CliError> {
    let abs = std::path::absolute(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })?;
    let req = ImportRequest {
        path: abs.display().to_string(),
        name,
        tag,
    };
    let report: ImportReport = client.post("/v1/images/import", &req)?;
    output::print(&report, format, output::import_report)
}

pub fn image_ls(client: &Client, format: Format) -> Result<(), CliError> {
    let v: Vec<ImageView> = client.get("/v1/images")?;
    output::print(&v, format, |v| output::images_table(v))
}
