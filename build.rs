//! Embeds the shipped image store (`image_store/`) in the binary: a table of every file's
//! relative path, mode and bytes, written to `$OUT_DIR/embedded_store.rs`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with('~') || name.ends_with(".swp") {
            continue;
        }
        if p.is_dir() {
            out.push(p.clone());
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("image_store");
    println!("cargo:rerun-if-changed=image_store");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let mut code = String::from("pub(super) static FILES: &[EmbeddedFile] = &[\n");
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
        let rel = p
            .strip_prefix(&root)
            .expect("walked under root")
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::metadata(p).expect("walked file has metadata");
        // Normalised as `image import` does (issue #18): a checkout made under umask 002
        // must not give `store init` group-writable scripts, which provisioning refuses.
        let mode = if meta.is_dir() || meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        if meta.is_dir() {
            writeln!(
                code,
                "    EmbeddedFile {{ path: {rel:?}, mode: 0o{mode:o}, dir: true, data: b\"\" }},"
            )
            .unwrap();
        } else {
            writeln!(code, "    EmbeddedFile {{ path: {rel:?}, mode: 0o{mode:o}, dir: false, data: include_bytes!({:?}) }},", p.display().to_string()).unwrap();
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("embedded_store.rs");
    std::fs::write(out, code).expect("write embedded_store.rs");
}
