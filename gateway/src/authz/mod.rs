//! The active policy: the Cedar bundle the gateway decides with, and the directory
//! (resource hierarchy and role bindings) it decides against.
//!
//! A bundle becomes active only if it loads, validates strictly and passes its own
//! tests; the directory file (until the store holds role bindings) must load too. The
//! pair is swapped atomically, so a request sees one consistent snapshot, and a failed
//! reload leaves the last good snapshot serving. [`reload`] watches the folder.

pub mod bindings;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_policy::{
    Bundle, Directory, DirectoryError, Engine, EntityRef, LoadError, MemoryDirectory, Parent,
    run_tests,
};

use crate::config::{Config, PolicyConfig};
use crate::ops::metrics;

/// Why a policy snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bundle did not load or validate.
    #[error("policy bundle `{dir}`:\n{source}")]
    Load {
        /// The bundle folder.
        dir: String,
        /// What the loader found.
        source: LoadError,
    },
    /// The bundle loaded but its own tests fail.
    #[error("policy bundle `{dir}` fails its tests:\n{report}")]
    Tests {
        /// The bundle folder.
        dir: String,
        /// The test report (cases and coverage).
        report: String,
    },
    /// The role-binding file did not load.
    #[error("role bindings `{path}`: {source}")]
    Bindings {
        /// The bindings file.
        path: String,
        /// What was wrong.
        source: DirectoryError,
    },
}

/// One consistent view: an engine and the directory it decides against.
pub struct PolicySnapshot {
    engine: Engine,
    directory: MemoryDirectory,
}

impl PolicySnapshot {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The directory (resource hierarchy and role bindings).
    pub fn directory(&self) -> &MemoryDirectory {
        &self.directory
    }
}

/// The snapshot in force, swapped atomically on reload.
pub struct ActivePolicy {
    current: ArcSwap<PolicySnapshot>,
    dir: PathBuf,
    bindings: Option<PathBuf>,
    resources: Vec<EntityRef>,
}

impl ActivePolicy {
    /// Loads and verifies the configured bundle; the gateway does not start without one.
    /// `resources` are the protected routes' entities: any the bindings file does not
    /// place in a hierarchy is added as a root, so bindings on it can apply.
    pub fn load(
        config: &PolicyConfig,
        resources: Vec<EntityRef>,
    ) -> Result<ActivePolicy, PolicyError> {
        let snapshot = load_snapshot(&config.dir, config.bindings.as_deref(), &resources)?;
        metrics::record_policy_revision(None, snapshot.engine.revision().as_str());
        Ok(ActivePolicy {
            current: ArcSwap::from_pointee(snapshot),
            dir: config.dir.clone(),
            bindings: config.bindings.clone(),
            resources,
        })
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// The revision in force now.
    pub fn revision(&self) -> String {
        self.current.load().engine.revision().as_str().to_owned()
    }

    /// Re-reads the bundle and bindings; on success swaps them in, on failure keeps the
    /// current snapshot. Either way the outcome is logged and counted.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let before = self.revision();
        match load_snapshot(&self.dir, self.bindings.as_deref(), &self.resources) {
            Ok(snapshot) => {
                let after = snapshot.engine.revision().as_str().to_owned();
                self.current.store(Arc::new(snapshot));
                metrics::record_policy_reload(true);
                metrics::record_policy_revision(Some(&before), &after);
                tracing::info!(policy.revision = %after, policy.previous = %before, "policy bundle reloaded");
                Ok(())
            }
            Err(err) => {
                metrics::record_policy_reload(false);
                tracing::error!(policy.revision = %before, error = %err, "policy reload refused; keeping the last good bundle");
                Err(err)
            }
        }
    }

    /// The folders and files a watcher should follow.
    pub fn watched_paths(&self) -> (&Path, Option<&Path>) {
        (&self.dir, self.bindings.as_deref())
    }
}

/// Loads, validates and tests a bundle and loads the bindings file: what `check-config`,
/// startup and every reload run.
pub fn load_snapshot(
    dir: &Path,
    bindings: Option<&Path>,
    resources: &[EntityRef],
) -> Result<PolicySnapshot, PolicyError> {
    let bundle = Bundle::load(dir).map_err(|source| PolicyError::Load {
        dir: dir.display().to_string(),
        source,
    })?;
    let report = run_tests(&bundle);
    if !report.passed() {
        return Err(PolicyError::Tests {
            dir: dir.display().to_string(),
            report: report.to_string(),
        });
    }
    let mut directory = match bindings {
        Some(path) => MemoryDirectory::load(path).map_err(|source| PolicyError::Bindings {
            path: path.display().to_string(),
            source,
        })?,
        None => MemoryDirectory::new(),
    };
    for resource in resources {
        if matches!(directory.parent(resource), Parent::Unknown) {
            directory
                .insert_entity(resource.clone(), None)
                .map_err(|source| PolicyError::Bindings {
                    path: "(route resources)".into(),
                    source,
                })?;
        }
    }
    Ok(PolicySnapshot {
        engine: Engine::new(bundle),
        directory,
    })
}

/// The entities of the configuration's protected routes.
pub fn route_resources(config: &Config) -> Vec<EntityRef> {
    config
        .routes
        .iter()
        .filter_map(|route| route.resource.as_deref().and_then(parse_entity))
        .collect()
}

/// `Type::"id"` (validated by the configuration loader) as an entity reference.
pub fn parse_entity(text: &str) -> Option<EntityRef> {
    let (kind, quoted) = text.split_once("::\"")?;
    let id = quoted.strip_suffix('"')?;
    Some(EntityRef::new(kind, id))
}

#[cfg(test)]
mod tests;
