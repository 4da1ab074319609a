//! Rebuilds when a migration changes: `sqlx::migrate!` embeds them at
//! compile time, and cargo does not otherwise know to look.
//!
//! Embeds the web client: every file of `web/dist` (built by
//! `infra/build-web.sh`) becomes a static the service serves at `/` and
//! `/assets/`. Without a built `web/dist` the list is empty and `/` says how
//! to build it.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let dist = web.join("dist");
    let mut files = Vec::new();
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files);
    } else {
        // Watching `web/src` too would rebuild on every edit before a build;
        // the build script writes `dist`, which this notices.
        println!(
            "cargo:rerun-if-changed={}",
            web.join("package.json").display()
        );
        println!("cargo:rerun-if-changed={}", web.display());
    }
    files.sort();
    let mut out = String::from("/// The web client's files: (path under dist, bytes).\n");
    out.push_str("pub(crate) static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_files.rs");
    std::fs::write(target, out).expect("write web_files.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((name, path.clone()));
        }
    }
}
