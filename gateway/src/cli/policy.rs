//! `portcullis policy validate|test|fmt|diff|explain`: policy-as-code tooling for CI
//! and for people. Output is readable text, or JSON with `--json`; any failure exits
//! non-zero.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, bail};
use clap::Subcommand;
use portcullis_policy::{
    Bundle, Engine, EntityRef, MemoryDirectory, Request, RequestContext, diff, format_bundle,
    run_tests,
};

use crate::clock;

/// The policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load the bundle and validate it strictly against its schema.
    Validate {
        /// The bundle folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the bundle's test cases and report coverage.
    Test {
        /// The bundle folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Also fail when a policy is not exercised by any test case.
        #[arg(long)]
        require_coverage: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Format policy files canonically.
    Fmt {
        /// The bundle folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Change nothing; fail if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// List the effective access that changes between two bundles.
    Diff {
        /// The bundle before: a folder, or `git:REV` for a revision of `--dir`.
        before: String,
        /// The bundle after: a folder, or `git:REV` for a revision of `--dir`.
        after: String,
        /// The bundle folder inside a Git checkout, for `git:REV` arguments.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide one request and say why.
    Explain {
        /// The bundle folder.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
        /// The user id.
        #[arg(long)]
        principal: String,
        /// The action, e.g. `http:GET`.
        #[arg(long)]
        action: String,
        /// The resource, e.g. `App::"billing"`.
        #[arg(long)]
        resource: String,
        /// Context fields as JSON, over the defaults (`ip` 127.0.0.1, `mfa` false,
        /// `authMethod` password, `sessionAgeSeconds` 0, `environment` prod, `time` now).
        #[arg(long)]
        context: Option<String>,
        /// A directory file (entities and role bindings).
        #[arg(long, conflicts_with = "fixture")]
        bindings: Option<PathBuf>,
        /// A fixture of the bundle to use as the directory.
        #[arg(long)]
        fixture: Option<String>,
        /// Fail unless the decision is this (`allow` or `deny`).
        #[arg(long, value_parser = ["allow", "deny"])]
        expect: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a policy subcommand.
pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Validate { dir, json } => {
            let bundle = load(&dir)?;
            let n_policies = bundle.policies().count();
            if json {
                let out = serde_json::json!({
                    "valid": true,
                    "revision": bundle.revision().as_str(),
                    "policies": bundle.policies().collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                println!(
                    "{}: valid ({n_policies} policies, revision {})",
                    dir.display(),
                    bundle.revision()
                );
            }
            Ok(())
        }
        PolicyCommand::Test {
            dir,
            require_coverage,
            json,
        } => {
            let bundle = load(&dir)?;
            let report = run_tests(&bundle);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("writing the report as JSON")?
                );
            } else {
                print!("{report}");
            }
            if !report.passed() {
                let failed = report.cases().iter().filter(|case| !case.passed()).count();
                bail!("{failed} of {} test cases failed", report.cases().len());
            }
            if require_coverage && !report.coverage().is_complete() {
                bail!(
                    "policies without a test: {}",
                    report.coverage().uncovered().join(", ")
                );
            }
            Ok(())
        }
        PolicyCommand::Fmt { dir, check } => {
            let files =
                format_bundle(&dir).with_context(|| format!("formatting {}", dir.display()))?;
            let changed: Vec<_> = files.iter().filter(|file| file.changed()).collect();
            if check {
                for file in &changed {
                    println!("not formatted: {}", file.path().display());
                }
                if !changed.is_empty() {
                    bail!("{} file(s) need `portcullis policy fmt`", changed.len());
                }
                return Ok(());
            }
            for file in &changed {
                std::fs::write(file.path(), file.formatted())
                    .with_context(|| format!("writing {}", file.path().display()))?;
                println!("formatted: {}", file.path().display());
            }
            Ok(())
        }
        PolicyCommand::Diff {
            before,
            after,
            dir,
            json,
        } => {
            let before = BundleSource::resolve(&before, &dir)?;
            let after = BundleSource::resolve(&after, &dir)?;
            let changes = diff(&load(before.path())?, &load(after.path())?);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&changes).context("writing the diff as JSON")?
                );
            } else if changes.is_empty() {
                println!("no change in effective access");
            } else {
                print!("{changes}");
            }
            Ok(())
        }
        PolicyCommand::Explain {
            dir,
            principal,
            action,
            resource,
            context,
            bindings,
            fixture,
            expect,
            json,
        } => {
            let bundle = load(&dir)?;
            let directory = match (&bindings, &fixture) {
                (Some(path), _) => MemoryDirectory::load(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                (None, Some(name)) => match bundle.fixture(name) {
                    Some(directory) => directory.clone(),
                    None => bail!("the bundle has no fixture `{name}`"),
                },
                (None, None) => MemoryDirectory::new(),
            };
            let request = Request {
                principal: principal.into(),
                action: action.into(),
                resource: parse_resource(&resource)?.into(),
                context: explain_context(context.as_deref())?,
            };
            let engine = Engine::new(bundle);
            let decision = engine.decide(&request, &directory);
            let explanation = engine.explain(&decision);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&explanation).context("writing JSON")?
                );
            } else {
                println!("{explanation}");
            }
            let actual = if decision.is_allowed() {
                "allow"
            } else {
                "deny"
            };
            match expect {
                Some(expected) if expected != actual => bail!("expected {expected}, got {actual}"),
                _ => Ok(()),
            }
        }
    }
}

fn load(dir: &Path) -> anyhow::Result<Bundle> {
    Bundle::load(dir).with_context(|| format!("policy bundle {}", dir.display()))
}

fn parse_resource(text: &str) -> anyhow::Result<EntityRef> {
    match crate::authz::parse_entity(text) {
        Some(entity) => Ok(entity),
        None => bail!("`{text}` is not an entity such as `App::\"billing\"`"),
    }
}

/// The default context with the given JSON fields laid over it.
fn explain_context(overrides: Option<&str>) -> anyhow::Result<RequestContext> {
    let now = time_text(clock::system_now());
    let mut context = serde_json::json!({
        "ip": "127.0.0.1",
        "mfa": false,
        "authMethod": "password",
        "sessionAgeSeconds": 0,
        "environment": "prod",
        "time": now,
    });
    if let Some(text) = overrides {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).context("--context must be a JSON object")?;
        if let Some(object) = context.as_object_mut() {
            object.extend(fields);
        }
    }
    Ok(RequestContext::from_json_value(context)?)
}

/// `YYYY-MM-DDThh:mm:ssZ` for a point in time.
fn time_text(at: std::time::SystemTime) -> String {
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A bundle folder: given, or extracted from a Git revision into a temporary folder
/// that is removed on drop.
enum BundleSource {
    Folder(PathBuf),
    Extracted { root: PathBuf, bundle: PathBuf },
}

impl BundleSource {
    fn resolve(spec: &str, dir: &Path) -> anyhow::Result<BundleSource> {
        let Some(revision) = spec.strip_prefix("git:") else {
            return Ok(BundleSource::Folder(PathBuf::from(spec)));
        };
        let git = |args: &[&str]| -> anyhow::Result<String> {
            let output = Process::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .context("running git")?;
            if !output.status.success() {
                bail!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let prefix = git(&["rev-parse", "--show-prefix"])?;
        let commit = git(&["rev-parse", "--verify", &format!("{revision}^{{commit}}")])?;
        let root =
            std::env::temp_dir().join(format!("portcullis-diff-{}-{commit}", std::process::id()));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let source = BundleSource::Extracted {
            bundle: root.join(&prefix),
            root: root.clone(),
        };
        let archive = Process::new("git")
            .arg("-C")
            .arg(dir)
            .args(["archive", "--format=tar", &commit, "--", "."])
            .output()
            .context("running git archive")?;
        if !archive.status.success() {
            bail!(
                "git archive {revision}: {}",
                String::from_utf8_lossy(&archive.stderr).trim()
            );
        }
        let mut tar = Process::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&root)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running tar")?;
        if let Some(mut stdin) = tar.stdin.take() {
            stdin.write_all(&archive.stdout).context("feeding tar")?;
        }
        if !tar.wait().context("waiting for tar")?.success() {
            bail!("tar could not extract {revision}");
        }
        Ok(source)
    }

    fn path(&self) -> &Path {
        match self {
            BundleSource::Folder(path) => path,
            BundleSource::Extracted { bundle, .. } => bundle,
        }
    }
}

impl Drop for BundleSource {
    fn drop(&mut self) {
        if let BundleSource::Extracted { root, .. } = self {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::time_text;

    #[test]
    fn utc_text() {
        assert_eq!(time_text(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            time_text(UNIX_EPOCH + Duration::from_secs(1_795_600_000)),
            "2026-11-25T09:46:40Z"
        );
        assert_eq!(
            time_text(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
