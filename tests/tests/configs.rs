//! Parses every file under `configs/` with the parser that will read it in production,
//! so that an example that drifts from the code fails the build. A file nobody knows how
//! to check fails too: add its parser here.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use drover_agent::config::AgentConfig;
use drover_protocol::manifest::parse_workloads;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Checks one file's text, dispatching on its path relative to `configs/`.
fn check(rel: &str, text: &str) -> Result<usize, String> {
    let yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
    if yaml && (rel.starts_with("manifests/") || rel.starts_with("examples/")) {
        let specs = parse_workloads(rel, text).map_err(|e| e.to_string())?;
        if specs.is_empty() {
            return Err(format!("{rel}: no workload in the file"));
        }
        Ok(specs.len())
    } else if yaml && (rel.starts_with("fleet/") || rel.starts_with("demo/")) {
        let files = [(rel.to_string(), text.to_string())];
        let objects = drover_hub::fleet::parse_set(&files).map_err(|e| e.to_string())?;
        if objects.is_empty() {
            return Err(format!("{rel}: no object in the file"));
        }
        Ok(objects.len())
    } else if rel.starts_with("grafana/") && rel.ends_with(".json") {
        // Each query's metrics are checked against the hub's /metrics in metrics.rs.
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{rel}: {e}"))?;
        let panels = v["panels"].as_array().map_or(0, Vec::len);
        if panels == 0 || v["__inputs"][0]["name"] != "DS_PROMETHEUS" {
            return Err(format!(
                "{rel}: a dashboard with panels and a DS_PROMETHEUS input"
            ));
        }
        Ok(panels)
    } else if rel == "hub.toml" {
        drover_hub::config::HubConfig::parse(rel, text)
            .map(|_| 1)
            .map_err(|e| e.to_string())
    } else if rel == "agent.toml" {
        AgentConfig::parse(rel, text)
            .map(|_| 1)
            .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "{rel}: no parser for this file: add one to tests/tests/configs.rs"
        ))
    }
}

#[test]
fn every_file_in_configs_parses() {
    let root = configs_dir();
    let mut files = Vec::new();
    files_under(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no files under {}", root.display());
    let mut failures = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .expect("under configs/")
            .to_string_lossy();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        if let Err(e) = check(&rel, &text) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "broken files in configs/:\n{}",
        failures.join("\n")
    );
}

#[test]
fn agent_toml_spells_out_the_defaults() {
    let text = std::fs::read_to_string(configs_dir().join("agent.toml")).expect("agent.toml");
    let parsed = AgentConfig::parse("agent.toml", &text).expect("parses");
    assert_eq!(parsed, AgentConfig::default_for_host());
}

#[test]
fn hello_manifest_is_the_documented_demo() {
    let text =
        std::fs::read_to_string(configs_dir().join("manifests/hello.yaml")).expect("hello.yaml");
    let specs = parse_workloads("hello.yaml", &text).expect("parses");
    let main = &specs[0].containers[0];
    assert_eq!(
        main.image.as_str(),
        "oci:/var/lib/drover-demo/busybox:latest"
    );
    assert_eq!(main.resources.memory_bytes, Some(32 << 20));
    assert_eq!(main.resources.pids, Some(32));
}

#[test]
fn broken_files_are_caught() {
    let workload =
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {name: a}\nspec:\n  containers: []\n";
    let broken = [
        ("manifests/a.yaml", workload),
        (
            "manifests/b.yaml",
            "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {nam: a}\n",
        ),
        ("manifests/c.yaml", "# only a comment\n"),
        ("agent.toml", "state_dir = 3\n"),
        ("agent.toml", "[logs]\nfile = 2\n"),
        ("other.toml", ""),
    ];
    for (rel, text) in broken {
        let err = check(rel, text).expect_err(rel);
        assert!(err.starts_with(rel), "{err}");
    }
}
