//! `oci-pack`: packs one static binary per platform into a multi-platform OCI image layout
//! (used by `images/build.sh`).
//!
//! ```text
//! oci-pack --out DIR [--tag latest] --path bin/NAME [--env K=V]… [--user U] [--expose 8080/tcp]…
//!          --platform linux/amd64=FILE --platform linux/arm/v7=FILE …
//! ```
//! It replaces DIR only if DIR is already an OCI layout (has `oci-layout`); it never
//! deletes anything else.

mod layout;

use std::path::PathBuf;

use serde_json::{Map, Value, json};

struct Args {
    out: PathBuf,
    tag: String,
    path: String,
    env: Vec<String>,
    user: Option<String>,
    expose: Vec<String>,
    platforms: Vec<(String, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        out: PathBuf::new(),
        tag: "latest".into(),
        path: String::new(),
        env: Vec::new(),
        user: None,
        expose: Vec::new(),
        platforms: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => a.out = val.into(),
            "--tag" => a.tag = val,
            "--path" => a.path = val.trim_start_matches('/').to_string(),
            "--env" => a.env.push(val),
            "--user" => a.user = Some(val),
            "--expose" => a.expose.push(val),
            "--platform" => {
                let (p, f) = val
                    .split_once('=')
                    .ok_or("--platform wants os/arch[/variant]=FILE")?;
                a.platforms.push((p.to_string(), f.into()));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.out.as_os_str().is_empty() || a.path.is_empty() || a.platforms.is_empty() {
        return Err("--out, --path and at least one --platform are required".into());
    }
    Ok(a)
}

fn platform(spec: &str, file: &PathBuf) -> Result<layout::Platform, String> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (os, arch, variant) = match parts.as_slice() {
        [os, arch] => (*os, *arch, None),
        [os, arch, v] => (*os, *arch, Some(v.to_string())),
        _ => return Err(format!("bad platform {spec:?}")),
    };
    let binary = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    Ok(layout::Platform {
        os: os.into(),
        architecture: arch.into(),
        variant,
        binary,
    })
}

fn image_config(a: &Args) -> Value {
    let mut c = json!({ "Entrypoint": [format!("/{}", a.path)], "Env": a.env, "WorkingDir": "/" });
    if let Some(u) = &a.user {
        c["User"] = json!(u);
    }
    if !a.expose.is_empty() {
        let ports: Map<String, Value> = a.expose.iter().map(|p| (p.clone(), json!({}))).collect();
        c["ExposedPorts"] = Value::Object(ports);
    }
    c
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let platforms = a
        .platforms
        .iter()
        .map(|(p, f)| platform(p, f))
        .collect::<Result<Vec<_>, _>>()?;
    if a.out.join("oci-layout").is_file() {
        std::fs::remove_dir_all(&a.out)
            .map_err(|e| format!("removing old {}: {e}", a.out.display()))?;
    }
    let spec = layout::ImageSpec {
        binary_path: a.path.clone(),
        config: image_config(&a),
    };
    let (digest, sizes) = layout::write_layout(&a.out, &a.tag, &spec, &platforms)
        .map_err(|e| format!("writing {}: {e}", a.out.display()))?;
    println!("{}:{} {digest}", a.out.display(), a.tag);
    for ((p, _), size) in a.platforms.iter().zip(sizes) {
        println!(
            "  {p:<14} layer {:>8} bytes ({:.0} KiB gzip)",
            size,
            size as f64 / 1024.0
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("oci-pack: {e}");
        std::process::exit(1);
    }
}
