//! A bundle's revision: the Git commit of the checkout it lives in, or else a
//! SHA-256 hash of its files.
//!
//! Git is read directly (`.git/HEAD`, loose refs, `packed-refs`, worktree
//! `gitdir:` files), without shelling out. Note that a Git revision names the
//! commit, not uncommitted edits in the working tree.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Identifies the exact policy text a decision was made with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    /// `<commit hex>` or `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the revision is a Git commit (else a content hash).
    pub fn is_git_commit(&self) -> bool {
        !self.0.starts_with("sha256:")
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Git commit of the checkout containing `dir`, else the content hash of
/// `files` (relative path with `/` separators, contents).
pub(crate) fn revision_of(dir: &Path, files: &[(String, String)]) -> Revision {
    match git_head_commit(dir) {
        Some(commit) => Revision(commit),
        None => content_hash(files),
    }
}

/// `sha256:` over the files sorted by path, each as path, NUL, length, NUL, contents.
pub(crate) fn content_hash(files: &[(String, String)]) -> Revision {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (path, contents) in sorted {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(contents.len().to_string().as_bytes());
        hasher.update([0]);
        hasher.update(contents.as_bytes());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Revision(format!("sha256:{hex}"))
}

fn git_head_commit(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let git_dir = dir.ancestors().find_map(git_dir_at)?;
    let common_dir = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    let mut head = fs::read_to_string(git_dir.join("HEAD"))
        .ok()?
        .trim()
        .to_string();
    // Follow symbolic refs a few levels; a loop or a dangling ref gives up.
    for _ in 0..5 {
        let Some(name) = head.strip_prefix("ref:") else {
            return is_object_id(&head).then_some(head);
        };
        let name = name.trim();
        if name.split('/').any(|part| part == ".." || part.is_empty()) {
            return None;
        }
        head = [&git_dir, &common_dir]
            .iter()
            .find_map(|base| fs::read_to_string(base.join(name)).ok())
            .map(|text| text.trim().to_string())
            .or_else(|| packed_ref(&common_dir, name))?;
    }
    None
}

/// The Git directory of a checkout rooted at `root`, if it is one.
fn git_dir_at(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(root.join(target))
}

fn packed_ref(common_dir: &Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(common_dir.join("packed-refs")).ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .find_map(|line| {
            let (object_id, ref_name) = line.split_once(' ')?;
            (ref_name.trim() == name).then(|| object_id.to_string())
        })
}

fn is_object_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_commit_from_loose_ref() {
        let checkout = tempfile::tempdir().unwrap();
        write(&checkout.path().join(".git/HEAD"), "ref: refs/heads/main\n");
        write(
            &checkout.path().join(".git/refs/heads/main"),
            &format!("{COMMIT}\n"),
        );
        write(&checkout.path().join("policies/schema.cedarschema"), "");
        let revision = revision_of(&checkout.path().join("policies"), &[]);
        assert_eq!(revision.as_str(), COMMIT);
        assert!(revision.is_git_commit());
    }

    #[test]
    fn reads_commit_from_packed_refs_and_detached_head() {
        let checkout = tempfile::tempdir().unwrap();
        write(&checkout.path().join(".git/HEAD"), "ref: refs/heads/main\n");
        write(
            &checkout.path().join(".git/packed-refs"),
            &format!("# pack-refs with: peeled\n{COMMIT} refs/heads/main\n^{COMMIT}\n"),
        );
        assert_eq!(revision_of(checkout.path(), &[]).as_str(), COMMIT);
        write(&checkout.path().join(".git/HEAD"), &format!("{COMMIT}\n"));
        assert_eq!(revision_of(checkout.path(), &[]).as_str(), COMMIT);
    }

    #[test]
    fn falls_back_to_content_hash_when_head_does_not_resolve() {
        let checkout = tempfile::tempdir().unwrap();
        write(
            &checkout.path().join(".git/HEAD"),
            "ref: refs/heads/unborn\n",
        );
        let files = vec![("a.cedar".to_string(), "x".to_string())];
        let revision = revision_of(checkout.path(), &files);
        assert!(!revision.is_git_commit());
        assert_eq!(revision, content_hash(&files));
    }

    #[test]
    fn content_hash_depends_on_names_and_contents_not_order() {
        let one = ("a.cedar".to_string(), "x".to_string());
        let two = ("b.cedar".to_string(), "y".to_string());
        let hash = content_hash(&[one.clone(), two.clone()]);
        assert_eq!(hash, content_hash(&[two.clone(), one.clone()]));
        assert_ne!(
            hash,
            content_hash(&[one.clone(), ("b.cedar".to_string(), "z".to_string())])
        );
        assert_ne!(
            hash,
            content_hash(&[one, ("c.cedar".to_string(), "y".to_string())])
        );
        assert!(hash.as_str().starts_with("sha256:"));
        assert_eq!(hash.as_str().len(), "sha256:".len() + 64);
    }
}
