//! "Why was this allowed / denied?": a decision in words, naming the
//! determining policies with their annotations.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::bundle::Bundle;
use crate::directory::RoleBinding;
use crate::engine::{Basis, Decision, EvalError};

/// A decision explained: what decided it and where those policies are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    revision: String,
    decision: Decision,
    policies: Vec<ExplainedPolicy>,
}

/// A determining policy, as an explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedPolicy {
    id: String,
    effect: Option<&'static str>,
    title: Option<String>,
    description: Option<String>,
    file: Option<PathBuf>,
    line: Option<usize>,
}

impl ExplainedPolicy {
    /// The policy's `@id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its `@title`, if any.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }
}

impl Explanation {
    pub(crate) fn new(bundle: &Bundle, decision: &Decision) -> Explanation {
        let policies = decision
            .policies()
            .iter()
            .map(|id| {
                let info = bundle.policy(id);
                ExplainedPolicy {
                    id: id.clone(),
                    effect: info.map(|info| info.effect()),
                    title: info.and_then(|info| info.title()).map(str::to_string),
                    description: info.and_then(|info| info.description()).map(str::to_string),
                    file: info.map(|info| info.file().to_path_buf()),
                    line: info.map(|info| info.line()),
                }
            })
            .collect();
        Explanation {
            revision: bundle.revision().to_string(),
            decision: decision.clone(),
            policies,
        }
    }

    /// The decision explained.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The determining policies.
    pub fn policies(&self) -> &[ExplainedPolicy] {
        &self.policies
    }

    /// The role bindings that applied.
    pub fn bindings(&self) -> &[RoleBinding] {
        self.decision.bindings()
    }

    /// What could not be evaluated.
    pub fn errors(&self) -> &[EvalError] {
        self.decision.errors()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decision.basis() {
            Basis::Permit => writeln!(f, "allowed: permitted by")?,
            Basis::Forbid => writeln!(f, "denied: explicitly forbidden by")?,
            Basis::DefaultDeny => {
                writeln!(f, "denied: no policy permits this request (default deny)")?
            }
            Basis::Error => writeln!(
                f,
                "denied: evaluation failed, and any evaluation error denies"
            )?,
        }
        for policy in &self.policies {
            write!(f, "  - {}", policy.id)?;
            if let Some(title) = &policy.title {
                write!(f, " \"{title}\"")?;
            }
            if let (Some(file), Some(line)) = (&policy.file, policy.line) {
                write!(f, " ({}:{line})", file.display())?;
            }
            writeln!(f)?;
            if let Some(description) = &policy.description {
                writeln!(f, "    {description}")?;
            }
        }
        for error in self.decision.errors() {
            writeln!(f, "  error: {error}")?;
        }
        if self.decision.bindings().is_empty() {
            writeln!(f, "roles on this resource: none")?;
        } else {
            writeln!(f, "roles on this resource:")?;
            for binding in self.decision.bindings() {
                writeln!(f, "  - {} on {}", binding.role, binding.scope)?;
            }
        }
        write!(f, "policy revision: {}", self.revision)
    }
}
