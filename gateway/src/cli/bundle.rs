//! The default policy bundle, embedded at build time from the repository's `policies/`
//! folder, and the code that writes it out for `portcullis demo`.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/default_bundle.rs"));

/// Writes the default bundle into `dir`, leaving files that already exist untouched
/// (a user's edits win). Returns how many files were written.
pub fn write_default_bundle(dir: &Path) -> std::io::Result<usize> {
    let mut written = 0;
    for (relative, contents) in DEFAULT_BUNDLE {
        let path = dir.join(relative);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::DEFAULT_BUNDLE;

    #[test]
    fn embedded_bundle_holds_the_policies_folder() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for (relative, contents) in DEFAULT_BUNDLE {
            let on_disk = std::fs::read_to_string(root.join(relative)).unwrap_or_default();
            assert_eq!(&on_disk, contents, "{relative}");
        }
        assert!(
            DEFAULT_BUNDLE
                .iter()
                .any(|(path, _)| path.ends_with(".cedarschema"))
        );
        assert!(
            DEFAULT_BUNDLE
                .iter()
                .any(|(path, _)| path.ends_with(".cedar"))
        );
    }
}
