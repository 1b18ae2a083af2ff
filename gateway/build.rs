//! Embeds the default policy bundle (`../policies`) so `portcullis demo` and
//! `portcullis init` can write it out on a machine that has only the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let bundle = manifest_dir.join("../policies");
    println!("cargo::rerun-if-changed={}", bundle.display());
    let mut files = Vec::new();
    collect(&bundle, &bundle, &mut files)?;
    files.sort();
    let mut out =
        String::from("/// The default policy bundle: (path relative to the bundle, contents).\n");
    out.push_str("pub const DEFAULT_BUNDLE: &[(&str, &str)] = &[\n");
    for (relative, absolute) in &files {
        writeln!(out, "    ({relative:?}, include_str!({absolute:?})),")?;
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("default_bundle.rs"), out)?;
    Ok(())
}

fn collect(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, String)>,
) -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        println!("cargo::rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let relative = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            let absolute = path.canonicalize()?.to_string_lossy().into_owned();
            files.push((relative, absolute));
        }
    }
    Ok(())
}
