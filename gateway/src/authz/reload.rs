//! Hot reload: watch the policy folder (and the bindings file) and reload the active
//! policy when something changes. Editors save by writing a new file and renaming it,
//! so the watch is on folders, and a burst of events becomes one reload after a short
//! quiet period. Changes under `.git` are ignored (a commit that changes no file keeps
//! the policies the same; SIGHUP reloads on demand, e.g. to pick up a new revision).
//! So is mere access (opening or closing a file unchanged): a reload reads every
//! watched file, and SQLite opens its folder to sync it, so counting reads would reload
//! forever.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
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
            && is_change(&event.kind)
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

/// Whether an event may have changed what a reload reads: anything but access, and of
/// access only closing a file that was open for writing.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(access) => matches!(access, AccessKind::Close(AccessMode::Write)),
        _ => true,
    }
}

fn is_relevant(path: &Path) -> bool {
    !path
        .components()
        .any(|part| matches!(part.as_os_str().to_str(), Some(".git" | "target")))
}

#[cfg(test)]
mod tests {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    use super::is_change;

    #[test]
    fn reading_the_watched_files_does_not_reload() {
        // A reload opens and reads every watched file: those events must not trigger
        // the next reload.
        for access in [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Close(AccessMode::Read),
            AccessKind::Close(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Any,
        ] {
            assert!(!is_change(&EventKind::Access(access)), "{access:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(is_change(&change), "{change:?}");
        }
    }
}
