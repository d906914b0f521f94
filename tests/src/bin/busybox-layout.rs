//! `busybox-layout DIR [TAG]`: writes an OCI image layout holding Debian's busybox-static,
//! for demos and manual testing (`oci:DIR:TAG` in a workload manifest). Never takes an
//! option it does not know for a folder name (`--help` is help, not `./--help`).

use std::process::ExitCode;

const USAGE: &str = "usage: busybox-layout DIR [TAG]

Writes an OCI image layout holding this machine's /bin/busybox (Debian's
busybox-static) into the folder DIR, tagged TAG (default `latest`); use it in a workload
manifest as `image: oci:DIR:TAG`, or import it with `drover-hub image import DIR`.

Options:
  -h, --help   print this help";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    Help,
    Write { dir: String, tag: String },
}

/// The arguments after the program's name; `Err` is the usage error to print.
fn parse(args: &[String]) -> Result<Args, String> {
    let mut plain = Vec::new();
    let mut options_end = false;
    for a in args {
        match a.as_str() {
            "--" if !options_end => options_end = true,
            "-h" | "--help" if !options_end => return Ok(Args::Help),
            o if o.starts_with('-') && o.len() > 1 && !options_end => {
                return Err(format!(
                    "unknown option {o:?} (a folder named so: put `--` before it)"
                ));
            }
            _ => plain.push(a.clone()),
        }
    }
    match plain.as_slice() {
        [dir] => Ok(Args::Write {
            dir: dir.clone(),
            tag: "latest".into(),
        }),
        [dir, tag] => Ok(Args::Write {
            dir: dir.clone(),
            tag: tag.clone(),
        }),
        [] => Err("the folder DIR is missing".into()),
        _ => Err(format!("{} arguments; expected DIR [TAG]", plain.len())),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, tag) = match parse(&args) {
        Ok(Args::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Args::Write { dir, tag }) => (dir, tag),
        Err(e) => {
            eprintln!("busybox-layout: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match drover_tests::oci::busybox_layout(std::path::Path::new(&dir), &tag) {
        Ok(()) => {
            println!("wrote oci:{dir}:{tag}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("busybox-layout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Args, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn help_is_help_and_unknown_options_are_refused() {
        assert_eq!(p(&["--help"]), Ok(Args::Help));
        assert_eq!(p(&["out", "-h"]), Ok(Args::Help));
        assert!(p(&["--verbose", "out"]).unwrap_err().contains("--verbose"));
        assert!(p(&[]).is_err());
        assert!(p(&["a", "b", "c"]).is_err());
        let write = |dir: &str, tag: &str| {
            Ok(Args::Write {
                dir: dir.into(),
                tag: tag.into(),
            })
        };
        assert_eq!(p(&["out"]), write("out", "latest"));
        assert_eq!(p(&["out", "v1"]), write("out", "v1"));
        assert_eq!(p(&["--", "--help"]), write("--help", "latest"));
    }
}
