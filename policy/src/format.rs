//! Canonical formatting of the bundle's `.cedar` files with
//! `cedar-policy-formatter` (80 columns, 2-space indent, like `cedar format`).
//!
//! Nothing is written here: the caller writes [`FormattedFile::formatted`]
//! back, or in check mode reports the files where [`FormattedFile::changed`].

use std::fs;
use std::path::{Path, PathBuf};

use cedar_policy_formatter::{Config, policies_str_to_pretty};

use crate::error::{FormatError, IoError};

/// One policy file and its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormattedFile {
    path: PathBuf,
    original: String,
    formatted: String,
}

impl FormattedFile {
    /// The file's path (the bundle folder joined with its relative path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The canonical text.
    pub fn formatted(&self) -> &str {
        &self.formatted
    }

    /// Whether formatting changes the file.
    pub fn changed(&self) -> bool {
        self.original != self.formatted
    }
}

/// The canonical form of policy text.
fn format_policy_text(text: &str) -> Result<String, String> {
    let config = Config {
        line_width: 80,
        indent_width: 2,
    };
    let mut formatted =
        policies_str_to_pretty(text, &config).map_err(|report| format!("{report:#}"))?;
    if !formatted.ends_with('\n') {
        formatted.push('\n');
    }
    Ok(formatted)
}

/// Formats every `.cedar` file below `dir` (hidden folders and `target` skipped), sorted by path.
pub fn format_bundle(dir: &Path) -> Result<Vec<FormattedFile>, FormatError> {
    let mut paths = Vec::new();
    collect_policy_files(dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let original = fs::read_to_string(&path).map_err(|source| IoError::new(&path, source))?;
        let formatted =
            format_policy_text(&original).map_err(|message| FormatError::Unparsable {
                file: path.strip_prefix(dir).unwrap_or(&path).to_path_buf(),
                message,
            })?;
        files.push(FormattedFile {
            path,
            original,
            formatted,
        });
    }
    Ok(files)
}

fn collect_policy_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IoError> {
    for entry in fs::read_dir(dir).map_err(|source| IoError::new(dir, source))? {
        let entry = entry.map_err(|source| IoError::new(dir, source))?;
        let path = entry.path();
        let name = entry.file_name();
        let is_dir = entry
            .file_type()
            .map_err(|source| IoError::new(&path, source))?
            .is_dir();
        if is_dir {
            let name = name.to_string_lossy();
            if !name.starts_with('.') && name != "target" {
                collect_policy_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|ext| ext == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use expect_test::expect;

    use super::*;

    #[test]
    fn reports_and_fixes_unformatted_files() {
        let dir = tempfile::tempdir().unwrap();
        let messy = "// keep me\n@id(\"p\")   permit(principal,action in [Action::\"read\"],resource)  when {context.mfa};";
        fs::create_dir_all(dir.path().join("roles")).unwrap();
        fs::write(dir.path().join("roles/messy.cedar"), messy).unwrap();
        let canonical = format_policy_text(messy).unwrap();
        fs::write(dir.path().join("tidy.cedar"), &canonical).unwrap();
        fs::write(dir.path().join("notes.txt"), "not policy").unwrap();

        let files = format_bundle(dir.path()).unwrap();
        let summary: Vec<(String, bool)> = files
            .iter()
            .map(|file| {
                (
                    file.path()
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string(),
                    file.changed(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("roles/messy.cedar".to_string(), true),
                ("tidy.cedar".to_string(), false)
            ]
        );
        expect![[r#"
            // keep me
            @id("p")
            permit (
              principal,
              action in [Action::"read"],
              resource
            )
            when { context.mfa };
        "#]]
        .assert_eq(&canonical);
    }

    #[test]
    fn unparsable_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad.cedar"), "permit(").unwrap();
        let error = format_bundle(dir.path()).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot format `bad.cedar`: "),
            "{error}"
        );
    }

    #[test]
    fn default_bundle_is_formatted() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let changed: Vec<_> = format_bundle(&dir)
            .unwrap()
            .into_iter()
            .filter(FormattedFile::changed)
            .collect();
        assert!(
            changed.is_empty(),
            "run `portcullis policy fmt`: {changed:#?}"
        );
    }
}
