//! Hot reload: watch the policy folder (and the bindings file) and reload the active
//! policy when something changes. Editors save by writing a new file and renaming it,
//! so the watch is on folders, and a burst of events becomes one reload after a short
//! quiet period. Changes under `.git` are ignored (a commit that changes no file keeps
//! the policies the same; SIGHUP reloads on demand, e.g. to pick up a new revision).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::ActivePolicy;

/// How long the folder must be quiet before a reload.
const SETTLE: Duration = Duration::from_millis(300);

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch `{path}` for policy changes: {source}")]
pub struct WatchError {
    path: String,
    source: notify::Error,
}

/// Starts watching; reloads run on the returned task until `shutdown` flips.
pub fn spawn(
    active: Arc<ActivePolicy>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WatchError> {
    let (events, mut changes) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|path| is_relevant(path))
        {
            // The receiver only goes away at shutdown.
            let _ = events.send(());
        }
    })
    .map_err(|source| WatchError {
        path: String::new(),
        source,
    })?;
    let (dir, bindings) = active.watched_paths();
    watch_path(&mut watcher, dir, RecursiveMode::Recursive)?;
    if let Some(parent) = bindings.and_then(Path::parent) {
        watch_path(&mut watcher, parent, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                change = changes.recv() => {
                    if change.is_none() {
                        return;
                    }
                    // Let the burst settle, then reload once.
                    loop {
                        match tokio::time::timeout(SETTLE, changes.recv()).await {
                            Ok(Some(())) => continue,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    // The outcome is logged and counted inside reload().
                    let _ = active.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(())
}

fn watch_path(
    watcher: &mut impl Watcher,
    path: &Path,
    mode: RecursiveMode,
) -> Result<(), WatchError> {
    watcher.watch(path, mode).map_err(|source| WatchError {
        path: path.display().to_string(),
        source,
    })
}

fn is_relevant(path: &Path) -> bool {
    !path
        .components()
        .any(|part| matches!(part.as_os_str().to_str(), Some(".git" | "target")))
}
