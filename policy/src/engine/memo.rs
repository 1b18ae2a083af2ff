//! Remembering decisions.
//!
//! A decision is a pure function of the bundle, the principal, the action, the
//! resource's ancestor chain, the role bindings on that chain and the context
//! fields the action's policies read (see [`super::observe`]): evaluation sees
//! nothing else. An engine holds one bundle for its whole life, so it can
//! remember a decision under exactly those inputs and hand it out again while
//! they repeat. With a gateway's traffic they repeat constantly: the same user
//! on the same route, from the same address, within the same second (a policy
//! reading `context.sessionAgeSeconds` changes the key once a second; one
//! reading `context.time` makes every request a different key, which is
//! correct, only slower).
//!
//! The table is direct-mapped: a key's hash picks one slot, a hit must match
//! the whole key (not just the hash), and a new decision replaces whatever the
//! slot held. Memory is bounded by the slot count, there is no eviction
//! bookkeeping, and a slot's lock is held only to compare and clone. The hash
//! is keyed per process, so nobody can aim many keys at one slot on purpose;
//! if they could, they would only make their own decisions slower.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::directory::{EntityRef, RoleBinding};
use crate::engine::Decision;
use crate::engine::observe::{ContextReads, Field};
use crate::request::{Environment, Request};

/// How many decisions an engine remembers at most.
const SLOTS: usize = 4096;
const _: () = assert!(SLOTS.is_power_of_two());

/// The context as the action's policies can see it: the fields they do not
/// read are left out, so they do not split the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Observed {
    ip: Option<IpAddr>,
    mfa: Option<bool>,
    auth_method: Option<Cow<'static, str>>,
    session_age_seconds: Option<u64>,
    environment: Option<Environment>,
    time: Option<SystemTime>,
}

impl Observed {
    /// The fields of `request`'s context in `reads` (the sign-in method shared: a
    /// `'static` name, or an owned copy as in `request`).
    pub(crate) fn of_shared(request: &Request, reads: ContextReads) -> Observed {
        let context = &request.context;
        let read = |field| reads.contains(field);
        Observed {
            ip: read(Field::Ip).then(|| context.ip.to_canonical()),
            mfa: read(Field::Mfa).then_some(context.mfa),
            auth_method: read(Field::AuthMethod).then(|| context.auth_method.clone()),
            session_age_seconds: read(Field::SessionAgeSeconds)
                .then_some(context.session_age_seconds),
            environment: read(Field::Environment).then_some(context.environment),
            time: read(Field::Time).then_some(context.time),
        }
    }
}

/// Everything a decision depends on besides the bundle, borrowed from the request.
pub(crate) struct Key<'a> {
    pub(crate) principal: &'a str,
    pub(crate) action: &'a str,
    pub(crate) chain: &'a [&'a EntityRef],
    pub(crate) bindings: &'a [&'a RoleBinding],
    pub(crate) context: Observed,
}

/// One remembered decision with the whole key it was made for.
struct Entry {
    hash: u64,
    principal: Box<str>,
    action: Box<str>,
    chain: Box<[EntityRef]>,
    context: Observed,
    /// Holds the bindings of the key too ([`Decision::bindings`]).
    decision: Arc<Decision>,
}

impl Entry {
    fn matches(&self, hash: u64, key: &Key<'_>) -> bool {
        self.hash == hash
            && *self.principal == *key.principal
            && *self.action == *key.action
            && self.chain.len() == key.chain.len()
            && self.chain.iter().zip(key.chain).all(|(a, b)| a == *b)
            && self.decision.bindings.len() == key.bindings.len()
            && self
                .decision
                .bindings
                .iter()
                .zip(key.bindings)
                .all(|(a, b)| a == *b)
            && self.context == key.context
    }
}

/// A bounded table of decisions, owned by one engine.
pub(crate) struct Memo {
    hasher: foldhash::fast::RandomState,
    slots: Box<[Mutex<Option<Box<Entry>>>]>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Memo {
    pub(crate) fn new() -> Memo {
        Memo {
            hasher: foldhash::fast::RandomState::default(),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The remembered decision for `key`, or `decide()`'s, which is then remembered.
    pub(crate) fn get_or_insert(
        &self,
        key: Key<'_>,
        decide: impl FnOnce() -> Decision,
    ) -> Arc<Decision> {
        let hash = self.hash(&key);
        // The slot count is a power of two, so the mask keeps the index in range.
        let slot = self
            .slots
            .get(usize::try_from(hash).unwrap_or_default() & (SLOTS - 1));
        if let Some(slot) = slot
            && let Ok(entry) = slot.lock()
            && let Some(entry) = entry.as_ref()
            && entry.matches(hash, &key)
        {
            return Arc::clone(&entry.decision);
        }
        let decision = Arc::new(decide());
        if let Some(slot) = slot
            && let Ok(mut entry) = slot.lock()
        {
            *entry = Some(Box::new(Entry {
                hash,
                principal: key.principal.into(),
                action: key.action.into(),
                chain: key.chain.iter().map(|entity| (*entity).clone()).collect(),
                context: key.context,
                decision: Arc::clone(&decision),
            }));
        }
        decision
    }

    fn hash(&self, key: &Key<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        key.principal.hash(&mut hasher);
        key.action.hash(&mut hasher);
        key.chain.hash(&mut hasher);
        key.bindings.hash(&mut hasher);
        key.context.hash(&mut hasher);
        hasher.finish()
    }
}
