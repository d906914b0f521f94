//! `busybox-layout DIR [TAG]`: writes an OCI image layout holding Debian's busybox-static,
//! for demos and manual testing (`oci:DIR:TAG` in a workload manifest).

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: busybox-layout DIR [TAG]");
        return std::process::ExitCode::from(2);
    };
    let tag = args.next().unwrap_or_else(|| "latest".into());
    match drover_tests::oci::busybox_layout(std::path::Path::new(&dir), &tag) {
        Ok(()) => {
            println!("wrote oci:{dir}:{tag}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("busybox-layout: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
