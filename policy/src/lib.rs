//! Cedar policy engine for Portcullis: no HTTP, SQL or tokio in here.
//!
//! The flow is: [`Bundle::load`] reads and strictly validates a policy folder,
//! [`Engine::new`] holds one immutable bundle, and [`Engine::decide`] answers a
//! [`Request`] using role bindings and the resource hierarchy from a
//! [`Directory`]. Around that sit the policy-as-code tools: [`run_tests`],
//! [`diff`], [`format_bundle`] and [`Engine::explain`].
//!
//! Roles are Cedar groups: for one request the user is a member of
//! `Role::"<name>"` exactly when one of the user's role bindings grants `<name>`
//! on the requested resource or one of its ancestors. Who holds which role where
//! is data (the [`Directory`]); what a role may do is policy.

mod bundle;
mod datetime;
mod diff;
mod directory;
mod engine;
mod error;
mod explain;
mod format;
mod request;
mod revision;
mod source;
mod testing;

pub use bundle::{Bundle, PolicyInfo};
pub use diff::{AccessChange, AccessDiff, Change, Subject, diff};
pub use directory::{Directory, EntityRef, MemoryDirectory, Parent, RoleBinding};
pub use engine::{Basis, ContextKey, Decision, Effect, Engine, EvalError};
pub use error::{DirectoryError, FormatError, IoError, LoadError, Problem, Problems};
pub use explain::{ExplainedPolicy, Explanation};
pub use format::{FormattedFile, format_bundle};
pub use request::{ContextError, Environment, Request, RequestContext};
pub use revision::Revision;
pub use testing::{CaseResult, Coverage, TestReport, run_tests};
