//! `kubeha render`: every generated file on disk, for audit or air-gapped review.
//!
//! Layout: `hosts/<host>/<absolute path>` per managed file (a `.kubeha-block` suffix marks
//! a block kubeha maintains inside a file others edit), `cluster/calico.yaml` when the
//! manifest is local, and `runbook.sh`. Secrets are placeholders (`${KUBEHA_...}`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{load_spec, Failure, Ui};
use crate::render::{self, runbook, Content, RenderInputs};
use crate::spec::ManifestSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster spec.
    #[arg(short = 'f', long = "file", default_value = "cluster.yaml")]
    file: PathBuf,
    /// Folder to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

/// Marks a folder as kubeha's, so a re-render may clear what an earlier one wrote.
const MARKER: &str = ".kubeha-render";

#[derive(Serialize)]
struct Written {
    host: Option<String>,
    path: String,
    file: PathBuf,
    mode: String,
    secret: bool,
}

pub fn run(ui: &Ui, args: Args) -> Result<(), Failure> {
    let loaded = load_spec(ui, &args.file)?;
    let cluster = &loaded.cluster;
    let out = &args.out;
    prepare(out)?;

    let mut written = Vec::new();
    for (host, files) in render::cluster_files(cluster, &RenderInputs::placeholders()) {
        for f in files {
            let rel = runbook::rendered_path(host, &f.path, &f.content);
            let bytes = match &f.content {
                Content::Text(t) | Content::ManagedBlock(t) => t.clone().into_bytes(),
                Content::LocalFile(p) => fs::read(p)
                    .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", p.display())))?,
            };
            write(&out.join(&rel), &bytes, f.mode)?;
            written.push(Written {
                host: Some(host.name.clone()),
                path: f.path,
                file: rel.into(),
                mode: format!("{:04o}", f.mode),
                secret: f.secret,
            });
        }
    }
    if let ManifestSource::File(path) = &cluster.calico.manifest {
        let text = fs::read_to_string(path)
            .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", path.display())))?;
        let patched = render::calico_manifest(cluster, &text)
            .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
        write(&out.join(runbook::CALICO_FILE), patched.as_bytes(), 0o644)?;
        written.push(Written {
            host: None,
            path: runbook::CALICO_FILE.into(),
            file: runbook::CALICO_FILE.into(),
            mode: "0644".into(),
            secret: false,
        });
    }
    write(
        &out.join("runbook.sh"),
        runbook::render(cluster).as_bytes(),
        0o755,
    )?;
    written.push(Written {
        host: None,
        path: "runbook.sh".into(),
        file: "runbook.sh".into(),
        mode: "0755".into(),
        secret: false,
    });

    ui.print(&serde_json::json!({ "out": out, "files": written }), || {
        written
            .iter()
            .map(|w| format!("{}  {}\n", w.mode, out.join(&w.file).display()))
            .collect()
    });
    eprintln!(
        "rendered {} files for {} hosts into {}; secrets are ${{KUBEHA_...}} placeholders",
        written.len(),
        cluster.hosts.len(),
        out.display()
    );
    Ok(())
}

/// Creates `out`, or clears what an earlier render wrote there; never a foreign folder.
fn prepare(out: &Path) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::Runtime(format!("cannot prepare {}: {e}", out.display()));
    if out.exists() {
        let ours = out.join(MARKER).exists();
        let empty = fs::read_dir(out).map_err(fail)?.next().is_none();
        if !ours && !empty {
            return Err(Failure::Invalid(format!(
                "{} is not empty and was not written by `kubeha render`; choose another --out",
                out.display()
            )));
        }
        for dir in ["hosts", "cluster"] {
            if out.join(dir).exists() {
                fs::remove_dir_all(out.join(dir)).map_err(fail)?;
            }
        }
    }
    fs::create_dir_all(out).map_err(fail)?;
    fs::write(out.join(MARKER), "written by kubeha render\n").map_err(fail)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::Runtime(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    fs::write(path, bytes).map_err(fail)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)
}
