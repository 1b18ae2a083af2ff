//! What a set of policies can observe of a request, computed once at load.
//!
//! Cedar evaluation can only look at the context through `context.<field>`,
//! `context has <field>` or the whole `context` record, and can only look up
//! an entity (its ancestors) when that entity is the principal, the action,
//! the resource or a literal written in a policy: per-request entities carry
//! no attributes or tags, and the context holds no entity references. So a
//! request that supplies only the context fields and the entities (and
//! ancestors) the evaluated policies can observe gets exactly the decision of
//! the full request, without paying to build the rest.

use std::collections::HashSet;

use cedar_policy::pst::{Clause, Expr, Var};
use cedar_policy::{EntityUid, Policy};

use crate::directory::EntityRef;

/// One field of the context the engine supplies (see [`crate::RequestContext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Ip,
    Mfa,
    AuthMethod,
    SessionAgeSeconds,
    Environment,
    Time,
}

impl Field {
    /// Every field, in the order the context lists them.
    pub(crate) const ALL: [Field; 6] = [
        Field::Ip,
        Field::Mfa,
        Field::AuthMethod,
        Field::SessionAgeSeconds,
        Field::Environment,
        Field::Time,
    ];

    /// The name policies use (`context.<name>`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Ip => "ip",
            Field::Mfa => "mfa",
            Field::AuthMethod => "authMethod",
            Field::SessionAgeSeconds => "sessionAgeSeconds",
            Field::Environment => "environment",
            Field::Time => "time",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of context fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ContextReads(u8);

impl ContextReads {
    /// No field.
    pub(crate) const NONE: ContextReads = ContextReads(0);

    /// Every field the engine supplies.
    pub(crate) fn all() -> ContextReads {
        Field::ALL.iter().fold(ContextReads::NONE, |reads, field| {
            reads.union(ContextReads(field.bit()))
        })
    }

    /// The field policies call `name`; none if the engine supplies no such
    /// field (reading it fails the same way with or without the others).
    fn named(name: &str) -> ContextReads {
        Field::ALL
            .iter()
            .find(|field| field.name() == name)
            .map_or(ContextReads::NONE, |field| ContextReads(field.bit()))
    }

    pub(crate) fn union(self, other: ContextReads) -> ContextReads {
        ContextReads(self.0 | other.0)
    }

    pub(crate) fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// The context fields `policy` can read. A policy whose syntax tree is
    /// unavailable, or that uses `context` other than through one field, reads
    /// every field.
    pub(crate) fn of_policy(policy: &Policy) -> ContextReads {
        let Ok(tree) = policy.to_pst() else {
            return ContextReads::all();
        };
        tree.body()
            .clauses()
            .iter()
            .map(|clause| match clause {
                Clause::When(expr) | Clause::Unless(expr) => ContextReads::of_expr(expr),
            })
            .fold(ContextReads::NONE, ContextReads::union)
    }

    fn of_expr(expr: &Expr) -> ContextReads {
        let is_context = |expr: &Expr| matches!(expr, Expr::Var(Var::Context));
        expr.reduce(
            &|node| match node {
                Expr::GetAttr { expr, attr } if is_context(expr) => Some(ContextReads::named(attr)),
                Expr::HasAttr { expr, attrs } if is_context(expr) => {
                    Some(ContextReads::named(&attrs.head))
                }
                Expr::Var(Var::Context) => Some(ContextReads::all()),
                _ => None,
            },
            &ContextReads::union,
            ContextReads::NONE,
        )
    }
}

/// The entities a set of policies names as literals (scope and conditions).
#[derive(Debug, Default)]
pub(crate) struct Literals {
    uids: HashSet<EntityUid>,
    refs: HashSet<EntityRef>,
}

impl Literals {
    pub(crate) fn add_policy(&mut self, policy: &Policy) {
        for uid in policy.entity_literals() {
            self.refs.insert(EntityRef::new(
                uid.type_name().to_string(),
                uid.id().unescaped(),
            ));
            self.uids.insert(uid);
        }
    }

    pub(crate) fn contains_uid(&self, uid: &EntityUid) -> bool {
        self.uids.contains(uid)
    }

    pub(crate) fn contains(&self, entity: &EntityRef) -> bool {
        self.refs.contains(entity)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn reads(src: &str) -> Vec<&'static str> {
        let policy = Policy::from_str(src).unwrap();
        let reads = ContextReads::of_policy(&policy);
        Field::ALL
            .iter()
            .filter(|field| reads.contains(**field))
            .map(|field| field.name())
            .collect()
    }

    #[test]
    fn finds_the_context_fields_a_policy_reads() {
        assert!(reads("permit(principal, action, resource);").is_empty());
        assert_eq!(
            reads(
                r#"forbid(principal, action, resource) when { context.environment == "prod" && !context.mfa };"#
            ),
            ["mfa", "environment"]
        );
        assert_eq!(
            reads(
                r#"permit(principal, action, resource) unless { context has time && context["ip"].isLoopback() };"#
            ),
            ["ip", "time"]
        );
        assert_eq!(
            reads("permit(principal, action, resource) when { context has sessionAgeSeconds.x };"),
            ["sessionAgeSeconds"]
        );
        assert!(reads("permit(principal, action, resource) when { context.other };").is_empty());
    }

    #[test]
    fn a_policy_using_the_whole_context_reads_every_field() {
        let all = [
            "ip",
            "mfa",
            "authMethod",
            "sessionAgeSeconds",
            "environment",
            "time",
        ];
        assert_eq!(
            reads(r#"permit(principal, action, resource) when { context == {"mfa": true} };"#),
            all
        );
        assert_eq!(
            reads(r#"permit(principal, action, resource) when { {c: context}.c.mfa };"#),
            all
        );
        assert_eq!(
            reads(
                r#"permit(principal, action, resource) when { (if context.mfa then context else context).ip.isLoopback() };"#
            ),
            all
        );
    }

    #[test]
    fn collects_entity_literals_of_scopes_and_conditions() {
        let policy = Policy::from_str(
            r#"permit(principal in Role::"admin", action == Action::"view", resource in Folder::"f") when { Project::"p" in Workspace::"w" };"#,
        )
        .unwrap();
        let mut literals = Literals::default();
        literals.add_policy(&policy);
        for (kind, id) in [
            ("Role", "admin"),
            ("Action", "view"),
            ("Folder", "f"),
            ("Project", "p"),
            ("Workspace", "w"),
        ] {
            assert!(literals.contains(&EntityRef::new(kind, id)), "{kind}::{id}");
        }
        assert!(!literals.contains(&EntityRef::new("Folder", "g")));
        assert!(literals.contains_uid(&EntityUid::from_str(r#"Action::"view""#).unwrap()));
    }
}
