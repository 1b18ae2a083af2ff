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
    /// Starts `command` and waits (at most 60 s) for its first line, which must start
    /// with `ready` (any case); returns the rest of that line (e.g. the peer's URL).
    /// Later output is drained so the peer never blocks on a full pipe.
    pub fn start(mut command: Command) -> (Peer, String) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (first, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = first.send(line);
            }
            for _ in lines {}
        });
        let line = receive
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the peer did not say it was ready within 60 s");
        let rest = line
            .get(..5)
            .filter(|word| word.eq_ignore_ascii_case("ready"))
            .map(|_| line[5..].trim().to_owned())
            .unwrap_or_else(|| panic!("the peer did not start: {line}"));
        (Peer { child, stdin }, rest)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
