//! Third-party peers the end-to-end tests talk to (installed by
//! `tests/peers/<name>/install.sh`, which `.ci/run` calls). A test whose peer is missing
//! fails under `CI=true` and is skipped with a notice elsewhere.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The folder of a peer.
pub fn peer_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers")
        .join(name)
}

/// The Python interpreter of a peer's venv, or `None` (with a notice) when the peer is
/// not installed and this is not CI.
pub fn python(name: &str) -> Option<PathBuf> {
    let python = peer_dir(name).join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let install = format!("tests/peers/{name}/install.sh");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "peer `{name}` is not installed; CI must run {install}"
    );
    eprintln!("notice: skipping: peer `{name}` is not installed (run {install})");
    None
}

/// A peer process that stops when dropped (its stdin closes, then it is killed).
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Peer {
    /// Starts `command` and waits (bounded by the peer itself) for its `ready` line.
    pub fn start(mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the peer did not start");
        Peer { child, stdin }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
