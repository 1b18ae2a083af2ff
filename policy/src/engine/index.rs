//! Policies that can only apply to some requests, filed by what they need.
//!
//! A policy whose resource scope names an entity (`resource == E`,
//! `resource in E`, `resource is T in E`) can only be satisfied when `E` is
//! the requested resource or one of its ancestors: the per-request entities
//! give the resource exactly the ancestors on its chain, and Cedar tests the
//! scope before the conditions (so an unsatisfied scope never evaluates, and
//! never fails in, a condition). Likewise a policy gated on a role
//! (`principal in Role::"r"`) can only apply when the user holds `r` on the
//! chain. Leaving such policies out of a request they cannot apply to changes
//! neither the decision nor the errors.
//!
//! Each key (an entity or a role) holds the policies filed under it, each
//! with the role it additionally needs. A request looks its chain and held
//! roles up, and evaluates the policies whose keys it all matched; the sets
//! are built once per combination of matched keys and kept in a bounded cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{Policy, PolicySet};

use crate::directory::{EntityRef, RoleBinding};

/// The most key combinations an action keeps a policy set for; past it the
/// cache starts over (each set holds only indexed policies, so it is small).
const MAX_CACHED_SETS: usize = 4096;

/// A key's policies, each with the role key it also needs, if any.
type Filed = Vec<(Policy, Option<usize>)>;

/// Collects an action's indexed policies at load.
#[derive(Debug, Default)]
pub(super) struct IndexBuilder {
    entities: HashMap<EntityRef, usize>,
    roles: HashMap<String, usize>,
    filed: Vec<Filed>,
}

impl IndexBuilder {
    fn entity_key(&mut self, entity: &EntityRef) -> usize {
        if let Some(key) = self.entities.get(entity) {
            return *key;
        }
        let key = self.next_key();
        self.entities.insert(entity.clone(), key);
        key
    }

    fn role_key(&mut self, role: &str) -> usize {
        if let Some(key) = self.roles.get(role) {
            return *key;
        }
        let key = self.next_key();
        self.roles.insert(role.to_string(), key);
        key
    }

    fn next_key(&mut self) -> usize {
        self.filed.push(Vec::new());
        self.filed.len() - 1
    }

    fn file(&mut self, key: usize, needs: Option<usize>, policy: &Policy) {
        if let Some(filed) = self.filed.get_mut(key) {
            filed.push((policy.clone(), needs));
        }
    }

    /// Files `policy`, whose resource scope names `entity`, under it; if it is
    /// also gated on `gate`, it needs that role too.
    pub(super) fn file_under_entity(
        &mut self,
        entity: &EntityRef,
        gate: Option<&str>,
        policy: &Policy,
    ) {
        let key = self.entity_key(entity);
        let needs = gate.map(|gate| self.role_key(gate));
        self.file(key, needs, policy);
    }

    /// Of the unindexed policies (with their gates), those left for
    /// per-combination sets: all of them when they are gated on at most
    /// `max_gates` roles; else the ungated ones, the gated ones being filed
    /// under their role.
    pub(super) fn take_gated_if_too_many<'a>(
        &mut self,
        gated: Vec<(Option<String>, &'a Policy)>,
        max_gates: usize,
    ) -> Vec<(Option<String>, &'a Policy)> {
        let mut gates: Vec<&str> = gated
            .iter()
            .filter_map(|(gate, _)| gate.as_deref())
            .collect();
        gates.sort_unstable();
        gates.dedup();
        if gates.len() <= max_gates {
            return gated;
        }
        let mut ungated = Vec::new();
        for (gate, policy) in gated {
            match gate {
                Some(gate) => {
                    let key = self.role_key(&gate);
                    self.file(key, None, policy);
                }
                None => ungated.push((None, policy)),
            }
        }
        ungated
    }

    /// The index; fails if the policies do not make a policy set.
    pub(super) fn build(self) -> Result<PolicyIndex, String> {
        let mut all = PolicySet::new();
        for (policy, _) in self.filed.iter().flatten() {
            all.add(policy.clone())
                .map_err(|error| format!("error: {error}"))?;
        }
        Ok(PolicyIndex {
            entities: self.entities,
            roles: self.roles,
            filed: self.filed,
            all: Arc::new(all),
            sets: RwLock::new(HashMap::new()),
        })
    }
}

/// An action's indexed policies, and the sets built for requests so far.
#[derive(Debug)]
pub(super) struct PolicyIndex {
    entities: HashMap<EntityRef, usize>,
    roles: HashMap<String, usize>,
    filed: Vec<Filed>,
    /// Every indexed policy: a correct (if slow) set for any request.
    all: Arc<PolicySet>,
    /// By sorted matched keys: the policies they let apply, if any.
    sets: RwLock<HashMap<Vec<usize>, Option<Arc<PolicySet>>>>,
}

impl PolicyIndex {
    /// The indexed policies that can apply to a request for the resource
    /// whose chain (resource first) is `chain`, by a user with `bindings`
    /// there; none when no indexed policy can.
    pub(super) fn select(
        &self,
        chain: &[&EntityRef],
        bindings: &[RoleBinding],
    ) -> Option<Arc<PolicySet>> {
        if self.filed.is_empty() {
            return None;
        }
        let mut keys: Vec<usize> = chain
            .iter()
            .filter_map(|entity| self.entities.get(*entity).copied())
            .chain(
                bindings
                    .iter()
                    .filter_map(|binding| self.roles.get(&binding.role).copied()),
            )
            .collect();
        if keys.is_empty() {
            return None;
        }
        keys.sort_unstable();
        keys.dedup();
        if let Some(set) = self
            .sets
            .read()
            .ok()
            .and_then(|sets| sets.get(&keys).cloned())
        {
            return set;
        }
        let set = self.build(&keys);
        if let Ok(mut sets) = self.sets.write() {
            if sets.len() >= MAX_CACHED_SETS {
                sets.clear();
            }
            sets.insert(keys, set.clone());
        }
        set
    }

    /// The policies filed under `keys` whose other needed key is in `keys`.
    fn build(&self, keys: &[usize]) -> Option<Arc<PolicySet>> {
        let mut set = PolicySet::new();
        for key in keys {
            let Some(filed) = self.filed.get(*key) else {
                continue;
            };
            for (policy, needs) in filed {
                if needs.is_none_or(|needs| keys.binary_search(&needs).is_ok()) {
                    // Each policy is filed under one key, so this cannot
                    // collide; should it, every indexed policy is still a
                    // correct set.
                    if set.add(policy.clone()).is_err() {
                        return Some(Arc::clone(&self.all));
                    }
                }
            }
        }
        if set.is_empty() {
            None
        } else {
            Some(Arc::new(set))
        }
    }
}
