//! The cases of the store suite: each takes a migrated, empty [`Store`] of either
//! dialect and must pass on both.

use time::{Duration, OffsetDateTime, UtcOffset};

use crate::config::KeySource;
use crate::crypto::{MainKeyBox, RecordOwner, SecretBox, load_main_key, record_aad};
use crate::store::{
    AuthMethod, Backend, Environment, NewApiToken, NewSession, OrganizationId, RecoveryCodeHash,
    RoleScope, SessionHash, Settings, SetupTokenHash, Store, StoreError, TokenHash, UserId,
    UserTimeouts, WorkspaceId, with_pool,
};

/// A fixed instant with sub-second digits and a non-UTC offset, to show the store
/// normalises both.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_987_654_321)
        .unwrap()
        .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap())
}

fn at(seconds_after_t0: i64) -> OffsetDateTime {
    t0() + Duration::seconds(seconds_after_t0)
}

fn whole_utc(time: OffsetDateTime) -> OffsetDateTime {
    time.to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap()
}

struct Tenant {
    org: OrganizationId,
    workspace: WorkspaceId,
    user: UserId,
}

async fn tenant(store: &Store, name: &str) -> Tenant {
    let org = store.create_organization(name, t0()).await.unwrap();
    let workspace = store
        .create_workspace(org.id, "main", Environment::Prod, t0())
        .await
        .unwrap();
    let user = store
        .create_user(org.id, &format!("alice@{name}.example"), "Alice", t0())
        .await
        .unwrap();
    Tenant {
        org: org.id,
        workspace: workspace.id,
        user: user.id,
    }
}

fn new_session(raw_id: &[u8], user: UserId) -> NewSession {
    NewSession {
        hash: SessionHash::of(raw_id),
        user_id: user,
        idle_timeout: Duration::minutes(30),
        absolute_expiry: at(8 * 3600),
        mfa_done: true,
        auth_method: AuthMethod::Password,
    }
}

fn scope(entity_type: &str, entity_id: &str) -> RoleScope {
    RoleScope {
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_owned(),
    }
}

fn new_token(secret: &[u8], creator: UserId) -> NewApiToken {
    NewApiToken {
        hash: TokenHash::of(secret),
        name: "deploy bot".to_owned(),
        created_by: creator,
        expires_at: at(86_400),
    }
}

pub(super) async fn migrations_apply_twice(store: Store) {
    // The harness migrated once already.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let applied: i64 = with_pool!(&store, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(
        applied,
        i64::try_from(shipped).unwrap(),
        "each migration once"
    );
    let expected = match store.backend() {
        Backend::Sqlite => "Store(SQLite)",
        Backend::Postgres => "Store(PostgreSQL)",
    };
    assert_eq!(format!("{store:?}"), expected, "no connection details");
}

pub(super) async fn organizations_workspaces_and_settings(store: Store) {
    let org = store.create_organization("Acme", t0()).await.unwrap();
    assert_eq!(org.created_at, whole_utc(t0()));
    assert_eq!(
        store.get_organization(org.id).await.unwrap(),
        Some(org.clone())
    );
    let other = store.create_organization("Globex", t0()).await.unwrap();

    let mut workspaces = Vec::new();
    for (name, environment) in [
        ("dev", Environment::Dev),
        ("test", Environment::Test),
        ("prod", Environment::Prod),
    ] {
        let workspace = store
            .create_workspace(org.id, name, environment, t0())
            .await
            .unwrap();
        assert_eq!(environment.as_str(), name);
        assert_eq!(environment.to_string(), name);
        let fetched = store.get_workspace(org.id, workspace.id).await.unwrap();
        assert_eq!(fetched, Some(workspace.clone()));
        assert_eq!(
            store.get_workspace(other.id, workspace.id).await.unwrap(),
            None
        );
        workspaces.push(workspace);
    }
    let duplicate = store
        .create_workspace(org.id, "prod", Environment::Prod, t0())
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Duplicate(_)),
        "{duplicate:?}"
    );
    assert_eq!(
        duplicate.to_string(),
        "a row with the same key already exists"
    );
    // The same name in another organization is fine.
    store
        .create_workspace(other.id, "prod", Environment::Prod, t0())
        .await
        .unwrap();

    assert_eq!(
        store.get_organization_settings(org.id).await.unwrap(),
        Settings::default()
    );
    let org_settings = Settings {
        idle_timeout: Some(Duration::minutes(30)),
        absolute_lifetime: Some(Duration::hours(12)),
        require_2fa: Some(true),
        require_sso: Some(false),
        password_profile: Some("nist".to_owned()),
        ip_allowlist: Some(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]),
    };
    store
        .set_organization_settings(org.id, &org_settings)
        .await
        .unwrap();
    assert_eq!(
        store.get_organization_settings(org.id).await.unwrap(),
        org_settings
    );
    assert_eq!(
        store.get_organization_settings(other.id).await.unwrap(),
        Settings::default()
    );
    let changed = Settings {
        idle_timeout: Some(Duration::minutes(5)),
        ..Settings::default()
    };
    store
        .set_organization_settings(org.id, &changed)
        .await
        .unwrap();
    assert_eq!(
        store.get_organization_settings(org.id).await.unwrap(),
        changed
    );

    let [dev, _, prod] = &workspaces[..] else {
        panic!("three workspaces");
    };
    let workspace_settings = Settings {
        require_2fa: Some(false),
        require_sso: None,
        ip_allowlist: Some(vec!["192.0.2.0/24".parse().unwrap()]),
        ..Settings::default()
    };
    store
        .set_workspace_settings(prod.id, &workspace_settings)
        .await
        .unwrap();
    assert_eq!(
        store.get_workspace_settings(prod.id).await.unwrap(),
        workspace_settings
    );
    assert_eq!(
        store.get_workspace_settings(dev.id).await.unwrap(),
        Settings::default()
    );
    let missing = store
        .set_workspace_settings(WorkspaceId::generate(t0()), &workspace_settings)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::UnknownWorkspace),
        "{missing:?}"
    );
    assert_eq!(missing.to_string(), "the workspace does not exist");
}

pub(super) async fn users_and_passwords(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let user = store.get_user(a.org, a.user).await.unwrap().unwrap();
    assert_eq!(user.email, "alice@a.example");
    assert_eq!(user.display_name, "Alice");
    assert!(!user.disabled);
    assert_eq!(user.created_at, whole_utc(t0()));
    assert_eq!(
        store
            .find_user_by_email(a.org, "alice@a.example")
            .await
            .unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.get_user(b.org, a.user).await.unwrap(), None);
    assert_eq!(
        store
            .find_user_by_email(b.org, "alice@a.example")
            .await
            .unwrap(),
        None
    );

    let duplicate = store
        .create_user(a.org, "alice@a.example", "Other Alice", t0())
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Duplicate(_)),
        "{duplicate:?}"
    );
    // Email is unique per organization, not globally.
    store
        .create_user(b.org, "alice@a.example", "Alice at B", t0())
        .await
        .unwrap();
    let orphan = store
        .create_user(OrganizationId::generate(t0()), "x@y.example", "X", t0())
        .await
        .unwrap_err();
    assert!(matches!(orphan, StoreError::NotInTenant(_)), "{orphan:?}");

    assert_eq!(store.get_password(a.org, a.user).await.unwrap(), None);
    store
        .set_password(a.org, a.user, "$argon2id$v=19$m=19456,t=2,p=1$first", at(1))
        .await
        .unwrap();
    store
        .set_password(
            a.org,
            a.user,
            "$argon2id$v=19$m=19456,t=2,p=1$second",
            at(2),
        )
        .await
        .unwrap();
    store
        .set_password(a.org, a.user, "$argon2id$v=19$m=19456,t=2,p=1$third", at(2))
        .await
        .unwrap();
    let current = store.get_password(a.org, a.user).await.unwrap().unwrap();
    assert_eq!(current.phc, "$argon2id$v=19$m=19456,t=2,p=1$third");
    assert_eq!(current.changed_at, whole_utc(at(2)));
    assert!(
        !format!("{current:?}").contains("argon2id"),
        "Debug hides the hash"
    );
    assert_eq!(
        store.password_history(a.org, a.user, 2).await.unwrap(),
        [
            "$argon2id$v=19$m=19456,t=2,p=1$third",
            "$argon2id$v=19$m=19456,t=2,p=1$second"
        ]
    );
    assert_eq!(
        store
            .password_history(a.org, a.user, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    // Organization B can neither read nor set A's user's password.
    assert_eq!(store.get_password(b.org, a.user).await.unwrap(), None);
    assert!(
        store
            .password_history(b.org, a.user, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let cross = store
        .set_password(b.org, a.user, "$argon2id$evil", at(3))
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");
    assert_eq!(
        cross.to_string(),
        "a referenced user or workspace does not exist in this tenant"
    );
    assert_eq!(
        store
            .get_password(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .phc,
        "$argon2id$v=19$m=19456,t=2,p=1$third"
    );
}

pub(super) async fn disabling_a_user_revokes_its_sessions(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    store
        .insert_session(a.workspace, &new_session(b"s1", a.user), t0())
        .await
        .unwrap();
    store
        .create_api_token(a.workspace, &new_token(b"token-of-a", a.user), t0())
        .await
        .unwrap();
    assert!(!store.disable_user(b.org, a.user, at(1)).await.unwrap());
    assert!(
        !store
            .get_user(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(
        store
            .get_session(a.workspace, &SessionHash::of(b"s1"))
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    assert!(store.disable_user(a.org, a.user, at(1)).await.unwrap());
    assert!(
        store
            .get_user(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let session = store
        .get_session(a.workspace, &SessionHash::of(b"s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.revoked_at, Some(whole_utc(at(1))));
    // Tokens acting as the user stop working with it.
    let token = store
        .get_api_token_by_hash(a.workspace, &TokenHash::of(b"token-of-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.revoked_at, Some(whole_utc(at(1))));
}

pub(super) async fn tenant_scoping_of_sessions_roles_and_tokens(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    // A second workspace of the same organization is a separate tenant for these rows.
    let a2 = store
        .create_workspace(a.org, "second", Environment::Dev, t0())
        .await
        .unwrap()
        .id;

    let hash = SessionHash::of(b"session-in-a");
    store
        .insert_session(a.workspace, &new_session(b"session-in-a", a.user), t0())
        .await
        .unwrap();
    for other in [a2, b.workspace] {
        assert_eq!(store.get_session(other, &hash).await.unwrap(), None);
        assert!(
            store
                .list_user_sessions(other, a.user, at(1))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!store.touch_session(other, &hash, at(1)).await.unwrap());
        assert!(!store.revoke_session(other, &hash, at(1)).await.unwrap());
    }
    assert!(
        store
            .get_session(a.workspace, &hash)
            .await
            .unwrap()
            .unwrap()
            .is_active(at(1))
    );
    assert_eq!(
        store
            .revoke_user_sessions(b.org, a.user, at(1))
            .await
            .unwrap(),
        0
    );
    let cross = store
        .insert_session(b.workspace, &new_session(b"cross", a.user), t0())
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");
    let unknown = store
        .insert_session(
            WorkspaceId::generate(t0()),
            &new_session(b"x", a.user),
            t0(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownWorkspace),
        "{unknown:?}"
    );

    let admin = scope("Workspace", &a.workspace.to_string());
    assert!(
        store
            .add_role_binding(a.workspace, a.user, "Admin", &admin, t0())
            .await
            .unwrap()
    );
    for other in [a2, b.workspace] {
        assert!(
            store
                .list_user_role_bindings(other, a.user)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !store
                .remove_role_binding(other, a.user, "Admin", &admin)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        store
            .list_user_role_bindings(a.workspace, a.user)
            .await
            .unwrap()
            .len(),
        1
    );
    let cross = store
        .add_role_binding(b.workspace, a.user, "Admin", &admin, t0())
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");

    let token = store
        .create_api_token(a.workspace, &new_token(b"token-a", a.user), t0())
        .await
        .unwrap();
    for other in [a2, b.workspace] {
        assert_eq!(
            store
                .get_api_token_by_hash(other, &TokenHash::of(b"token-a"))
                .await
                .unwrap(),
            None
        );
        assert!(store.list_api_tokens(other).await.unwrap().is_empty());
        assert!(
            !store
                .revoke_api_token(other, token.id, at(1))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .get_api_token_by_hash(a.workspace, &TokenHash::of(b"token-a"))
            .await
            .unwrap()
            .unwrap()
            .is_usable(at(1))
    );
    let cross = store
        .create_api_token(b.workspace, &new_token(b"token-b", a.user), t0())
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");
}

pub(super) async fn sessions_are_stored_only_by_hash(store: Store) {
    let a = tenant(&store, "a").await;
    let raw_id: [u8; 32] = rand::random();
    let inserted = store
        .insert_session(a.workspace, &new_session(&raw_id, a.user), t0())
        .await
        .unwrap();
    let stored: Vec<Vec<u8>> = with_pool!(&store, |pool| {
        sqlx::query_scalar("SELECT id_hash FROM sessions")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(stored, [SessionHash::of(&raw_id).as_bytes().to_vec()]);
    assert_ne!(stored[0], raw_id);
    let by_raw: Option<Vec<u8>> = with_pool!(&store, |pool| {
        sqlx::query_scalar("SELECT id_hash FROM sessions WHERE id_hash = $1")
            .bind(raw_id.as_slice())
            .fetch_optional(pool)
            .await
            .unwrap()
    });
    assert_eq!(by_raw, None, "the raw id finds nothing");

    let fetched = store
        .get_session(a.workspace, &SessionHash::of(&raw_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched, inserted);
    assert_eq!(fetched.organization_id, a.org);
    assert_eq!(fetched.workspace_id, a.workspace);
    assert_eq!(fetched.user_id, a.user);
    assert_eq!(fetched.created_at, whole_utc(t0()));
    assert_eq!(fetched.last_seen_at, whole_utc(t0()));
    assert_eq!(fetched.idle_timeout, Duration::minutes(30));
    assert_eq!(fetched.absolute_expiry, whole_utc(at(8 * 3600)));
    assert!(fetched.mfa_done);
    assert_eq!(fetched.auth_method, AuthMethod::Password);
    assert_eq!(fetched.revoked_at, None);
}

pub(super) async fn session_lifecycle_and_revoke_all(store: Store) {
    let a = tenant(&store, "a").await;
    let second_workspace = store
        .create_workspace(a.org, "second", Environment::Test, t0())
        .await
        .unwrap()
        .id;
    let bob = store
        .create_user(a.org, "bob@a.example", "Bob", t0())
        .await
        .unwrap()
        .id;
    let methods = [
        AuthMethod::Password,
        AuthMethod::Oidc,
        AuthMethod::Saml,
        AuthMethod::EmailCode,
    ];
    for (index, method) in methods.into_iter().enumerate() {
        let raw = format!("alice-{index}");
        let new = NewSession {
            auth_method: method,
            mfa_done: false,
            ..new_session(raw.as_bytes(), a.user)
        };
        let offset = i64::try_from(index).unwrap();
        store
            .insert_session(a.workspace, &new, at(offset))
            .await
            .unwrap();
        let stored = store
            .get_session(a.workspace, &SessionHash::of(raw.as_bytes()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.auth_method, method);
        assert_eq!(stored.auth_method.to_string(), method.as_str());
        assert!(!stored.mfa_done);
    }
    store
        .insert_session(
            second_workspace,
            &new_session(b"alice-second", a.user),
            t0(),
        )
        .await
        .unwrap();
    store
        .insert_session(a.workspace, &new_session(b"bob", bob), t0())
        .await
        .unwrap();

    // Listing: oldest first, only this user's, only this workspace's.
    let listed = store
        .list_user_sessions(a.workspace, a.user, at(10))
        .await
        .unwrap();
    let created: Vec<_> = listed.iter().map(|session| session.created_at).collect();
    assert_eq!(
        created,
        (0..4).map(|s| whole_utc(at(s))).collect::<Vec<_>>()
    );

    // Idle timeout: untouched sessions lapse after 30 minutes, touched ones do not.
    let alice0 = SessionHash::of(b"alice-0");
    assert!(
        store
            .touch_session(a.workspace, &alice0, at(25 * 60))
            .await
            .unwrap()
    );
    let touched = store
        .get_session(a.workspace, &alice0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, whole_utc(at(25 * 60)));
    let later = at(40 * 60);
    assert!(touched.is_active(later));
    let listed = store
        .list_user_sessions(a.workspace, a.user, later)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].hash, alice0);
    // Absolute lifetime: no amount of activity extends it.
    assert!(
        store
            .touch_session(a.workspace, &alice0, at(8 * 3600 - 60))
            .await
            .unwrap()
    );
    let touched = store
        .get_session(a.workspace, &alice0)
        .await
        .unwrap()
        .unwrap();
    assert!(touched.is_active(at(8 * 3600 - 1)));
    assert!(!touched.is_active(at(8 * 3600)));

    // Revoke one.
    let alice1 = SessionHash::of(b"alice-1");
    assert!(
        store
            .revoke_session(a.workspace, &alice1, at(20))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(a.workspace, &alice1, at(21))
            .await
            .unwrap()
    );
    assert!(
        !store
            .touch_session(a.workspace, &alice1, at(22))
            .await
            .unwrap()
    );
    let revoked = store
        .get_session(a.workspace, &alice1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(whole_utc(at(20))));
    assert!(!revoked.is_active(at(21)));
    assert_eq!(
        store
            .list_user_sessions(a.workspace, a.user, at(30))
            .await
            .unwrap()
            .len(),
        3
    );

    // Revoke all: the other three here and the one in the second workspace; Bob's stay.
    assert_eq!(
        store
            .revoke_user_sessions(a.org, a.user, at(40))
            .await
            .unwrap(),
        4
    );
    assert!(
        store
            .list_user_sessions(a.workspace, a.user, at(41))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_user_sessions(second_workspace, a.user, at(41))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .get_session(a.workspace, &alice1)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(whole_utc(at(20))),
        "an earlier revocation keeps its time"
    );
    assert_eq!(
        store
            .list_user_sessions(a.workspace, bob, at(41))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .revoke_user_sessions(a.org, a.user, at(50))
            .await
            .unwrap(),
        0
    );
}

pub(super) async fn totp_step_compare_and_set_is_atomic(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let env = |_: &str| Some("42".repeat(32));
    let sealer = MainKeyBox::new(&load_main_key(&KeySource::Env("KEY".into()), &env).unwrap());
    let aad = record_aad(
        RecordOwner::Organization(a.org),
        "totp_enrolments",
        a.user.as_uuid(),
    );
    let sealed = sealer.seal(&aad, b"JBSWY3DPEHPK3PXP").unwrap();

    assert_eq!(store.get_totp_enrolment(a.org, a.user).await.unwrap(), None);
    store
        .upsert_totp_enrolment(a.org, a.user, &sealed, t0())
        .await
        .unwrap();
    let pending = store
        .get_totp_enrolment(a.org, a.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.user_id, a.user);
    assert_eq!(pending.created_at, whole_utc(t0()));
    assert_eq!((pending.confirmed_at, pending.last_step), (None, None));
    assert_eq!(
        sealer.open(&aad, &pending.sealed_seed).unwrap().as_slice(),
        b"JBSWY3DPEHPK3PXP"
    );
    let other_users_aad = record_aad(
        RecordOwner::Organization(b.org),
        "totp_enrolments",
        b.user.as_uuid(),
    );
    assert!(sealer.open(&other_users_aad, &pending.sealed_seed).is_err());

    // Codes are not accepted before confirmation; confirmation records its step.
    assert!(!store.accept_totp_step(a.org, a.user, 100).await.unwrap());
    assert!(
        store
            .confirm_totp_enrolment(a.org, a.user, 100, at(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_totp_enrolment(a.org, a.user, 101, at(2))
            .await
            .unwrap()
    );
    assert!(
        !store.accept_totp_step(a.org, a.user, 100).await.unwrap(),
        "replay"
    );
    assert!(
        !store.accept_totp_step(a.org, a.user, 99).await.unwrap(),
        "older step"
    );

    // Many concurrent logins with the same code: exactly one wins.
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let (org, user) = (a.org, a.user);
            tokio::spawn(async move { store.accept_totp_step(org, user, 101).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert!(store.accept_totp_step(a.org, a.user, 102).await.unwrap());
    let confirmed = store
        .get_totp_enrolment(a.org, a.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(confirmed.confirmed_at, Some(whole_utc(at(1))));
    assert_eq!(confirmed.last_step, Some(102));

    // Another organization cannot touch it.
    assert!(!store.accept_totp_step(b.org, a.user, 200).await.unwrap());
    assert_eq!(store.get_totp_enrolment(b.org, a.user).await.unwrap(), None);
    let cross = store
        .upsert_totp_enrolment(b.org, a.user, &sealed, t0())
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");
    let too_big = store
        .accept_totp_step(a.org, a.user, u64::MAX)
        .await
        .unwrap_err();
    assert_eq!(too_big.to_string(), "TOTP step is out of range");

    // Re-enrolment starts over: pending again, no step recorded.
    store
        .upsert_totp_enrolment(a.org, a.user, &sealed, at(5))
        .await
        .unwrap();
    let restarted = store
        .get_totp_enrolment(a.org, a.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((restarted.confirmed_at, restarted.last_step), (None, None));
    assert_eq!(restarted.created_at, whole_utc(at(5)));
}

pub(super) async fn recovery_codes_work_once(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let codes: Vec<_> = ["code-1", "code-2", "code-3"]
        .iter()
        .map(|code| RecoveryCodeHash::of(code.as_bytes()))
        .collect();
    store
        .replace_recovery_codes(a.org, a.user, &codes, t0())
        .await
        .unwrap();
    assert_eq!(
        store
            .count_unused_recovery_codes(a.org, a.user)
            .await
            .unwrap(),
        3
    );

    assert!(
        store
            .consume_recovery_code(a.org, a.user, &codes[0], at(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_recovery_code(a.org, a.user, &codes[0], at(2))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_recovery_code(a.org, a.user, &RecoveryCodeHash::of(b"nope"), at(2))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_recovery_code(b.org, a.user, &codes[1], at(2))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .count_unused_recovery_codes(b.org, a.user)
            .await
            .unwrap(),
        0
    );

    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let (org, user, code) = (a.org, a.user, codes[1].clone());
            tokio::spawn(async move {
                store
                    .consume_recovery_code(org, user, &code, at(3))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        store
            .count_unused_recovery_codes(a.org, a.user)
            .await
            .unwrap(),
        1
    );

    // A new set replaces the old one entirely.
    let fresh = [RecoveryCodeHash::of(b"fresh-1")];
    store
        .replace_recovery_codes(a.org, a.user, &fresh, at(4))
        .await
        .unwrap();
    assert!(
        !store
            .consume_recovery_code(a.org, a.user, &codes[2], at(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .consume_recovery_code(a.org, a.user, &fresh[0], at(5))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .count_unused_recovery_codes(a.org, a.user)
            .await
            .unwrap(),
        0
    );
    let cross = store
        .replace_recovery_codes(b.org, a.user, &fresh, at(6))
        .await
        .unwrap_err();
    assert!(matches!(cross, StoreError::NotInTenant(_)), "{cross:?}");
}

pub(super) async fn second_factor_reset(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    store
        .upsert_totp_enrolment(a.org, a.user, b"sealed", t0())
        .await
        .unwrap();
    assert!(
        store
            .confirm_totp_enrolment(a.org, a.user, 5, t0())
            .await
            .unwrap()
    );
    store
        .replace_recovery_codes(a.org, a.user, &[RecoveryCodeHash::of(b"c1")], t0())
        .await
        .unwrap();
    store
        .insert_session(a.workspace, &new_session(b"s-reset", a.user), t0())
        .await
        .unwrap();
    // Another tenant cannot reset it.
    assert!(
        !store
            .reset_second_factor(b.org, a.user, at(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_totp_enrolment(a.org, a.user)
            .await
            .unwrap()
            .is_some()
    );

    assert!(
        store
            .reset_second_factor(a.org, a.user, at(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_totp_enrolment(a.org, a.user)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .count_unused_recovery_codes(a.org, a.user)
            .await
            .unwrap(),
        0
    );
    let session = store
        .get_session(a.workspace, &SessionHash::of(b"s-reset"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.revoked_at, Some(whole_utc(at(1))));
    assert!(
        !store
            .reset_second_factor(a.org, a.user, at(2))
            .await
            .unwrap()
    );
}

pub(super) async fn role_bindings(store: Store) {
    let a = tenant(&store, "a").await;
    let workspace_scope = scope("Workspace", &a.workspace.to_string());
    let project_scope = scope("Project", "billing");
    assert!(
        store
            .add_role_binding(a.workspace, a.user, "Operator", &project_scope, t0())
            .await
            .unwrap()
    );
    assert!(
        store
            .add_role_binding(a.workspace, a.user, "Analyst", &workspace_scope, at(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_role_binding(a.workspace, a.user, "Analyst", &workspace_scope, at(2))
            .await
            .unwrap(),
        "the same binding twice"
    );
    let listed = store
        .list_user_role_bindings(a.workspace, a.user)
        .await
        .unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|binding| {
            (
                binding.role.as_str(),
                binding.scope.entity_type.as_str(),
                binding.scope.entity_id.as_str(),
                binding.created_at,
                binding.workspace_id,
                binding.user_id,
            )
        })
        .collect();
    let workspace_id = a.workspace.to_string();
    assert_eq!(
        summary,
        [
            (
                "Analyst",
                "Workspace",
                workspace_id.as_str(),
                whole_utc(at(1)),
                a.workspace,
                a.user
            ),
            (
                "Operator",
                "Project",
                "billing",
                whole_utc(t0()),
                a.workspace,
                a.user
            ),
        ]
    );
    assert!(
        store
            .remove_role_binding(a.workspace, a.user, "Analyst", &workspace_scope)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_role_binding(a.workspace, a.user, "Analyst", &workspace_scope)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list_user_role_bindings(a.workspace, a.user)
            .await
            .unwrap()
            .len(),
        1
    );
    let unknown = store
        .add_role_binding(
            WorkspaceId::generate(t0()),
            a.user,
            "Admin",
            &project_scope,
            t0(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownWorkspace),
        "{unknown:?}"
    );
}

pub(super) async fn api_tokens(store: Store) {
    let a = tenant(&store, "a").await;
    let first = store
        .create_api_token(a.workspace, &new_token(b"secret-1", a.user), t0())
        .await
        .unwrap();
    let second = store
        .create_api_token(
            a.workspace,
            &NewApiToken {
                name: "ci".to_owned(),
                ..new_token(b"secret-2", a.user)
            },
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(first.workspace_id, a.workspace);
    assert_eq!(first.created_by, a.user);
    assert_eq!(first.created_at, whole_utc(t0()));
    assert_eq!(first.expires_at, whole_utc(at(86_400)));
    let fetched = store
        .get_api_token_by_hash(a.workspace, &TokenHash::of(b"secret-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        fetched.creator_email.as_deref(),
        Some("alice@a.example"),
        "read with the email of the user it acts as"
    );
    assert_eq!(fetched, first);
    assert_eq!(
        store
            .get_api_token_by_hash(a.workspace, &TokenHash::of(b"secret-3"))
            .await
            .unwrap(),
        None
    );
    assert!(first.is_usable(at(86_399)));
    assert!(!first.is_usable(at(86_400)), "expired");
    assert_eq!(
        store.list_api_tokens(a.workspace).await.unwrap(),
        [first.clone(), second.clone()]
    );

    assert!(
        store
            .revoke_api_token(a.workspace, first.id, at(2))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_token(a.workspace, first.id, at(3))
            .await
            .unwrap()
    );
    let revoked = store
        .get_api_token_by_hash(a.workspace, &TokenHash::of(b"secret-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(whole_utc(at(2))));
    assert!(!revoked.is_usable(at(2)));
    assert_eq!(store.list_api_tokens(a.workspace).await.unwrap().len(), 2);

    let reused = store
        .create_api_token(a.workspace, &new_token(b"secret-2", a.user), at(4))
        .await
        .unwrap_err();
    assert!(matches!(reused, StoreError::Duplicate(_)), "{reused:?}");
}

pub(super) async fn user_timeouts_and_user_count(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    assert_eq!(
        store.get_user_timeouts(a.org, a.user).await.unwrap(),
        UserTimeouts::default()
    );
    let mine = UserTimeouts {
        idle_timeout: Some(Duration::minutes(5)),
        absolute_lifetime: None,
    };
    store.set_user_timeouts(a.org, a.user, mine).await.unwrap();
    assert_eq!(store.get_user_timeouts(a.org, a.user).await.unwrap(), mine);
    // Another organization cannot read or write it.
    assert_eq!(
        store.get_user_timeouts(b.org, a.user).await.unwrap(),
        UserTimeouts::default()
    );
    assert!(matches!(
        store.set_user_timeouts(b.org, a.user, mine).await,
        Err(StoreError::NotInTenant(_))
    ));
    assert!(matches!(
        store
            .set_user_timeouts(
                a.org,
                a.user,
                UserTimeouts {
                    idle_timeout: Some(Duration::ZERO),
                    absolute_lifetime: None
                }
            )
            .await,
        Err(StoreError::OutOfRange { .. })
    ));
    assert_eq!(store.count_users(a.org).await.unwrap(), 1);
    store
        .create_user(a.org, "second@a.test", "Second", t0())
        .await
        .unwrap();
    assert_eq!(store.count_users(a.org).await.unwrap(), 2);
    assert_eq!(store.count_users(b.org).await.unwrap(), 1);
}

pub(super) async fn setup_tokens_work_once_and_expire(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let hash = SetupTokenHash::of(b"setup-token-a");
    store
        .create_setup_token(a.org, a.user, &hash, t0(), at(3600))
        .await
        .unwrap();
    assert_eq!(
        store.peek_setup_token(a.org, &hash, at(10)).await.unwrap(),
        Some(a.user)
    );
    assert_eq!(
        store.peek_setup_token(b.org, &hash, at(10)).await.unwrap(),
        None,
        "tenant-scoped"
    );
    assert_eq!(
        store
            .peek_setup_token(a.org, &hash, at(3600))
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .redeem_setup_token(b.org, &hash, "$argon2id$x", at(10))
            .await
            .unwrap(),
        None,
        "another organization cannot use it"
    );
    assert_eq!(
        store
            .redeem_setup_token(a.org, &hash, "$argon2id$x", at(10))
            .await
            .unwrap(),
        Some(a.user)
    );
    assert_eq!(
        store
            .get_password(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .phc,
        "$argon2id$x"
    );
    assert_eq!(
        store
            .redeem_setup_token(a.org, &hash, "$argon2id$y", at(11))
            .await
            .unwrap(),
        None,
        "a token works once"
    );
    assert_eq!(
        store
            .get_password(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .phc,
        "$argon2id$x"
    );

    let late = SetupTokenHash::of(b"setup-token-late");
    store
        .create_setup_token(a.org, a.user, &late, t0(), at(60))
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_setup_token(a.org, &late, "$argon2id$z", at(60))
            .await
            .unwrap(),
        None,
        "an expired token changes nothing"
    );
    assert_eq!(
        store
            .get_password(a.org, a.user)
            .await
            .unwrap()
            .unwrap()
            .phc,
        "$argon2id$x"
    );
}

pub(super) async fn external_identities_link_once(store: Store) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    assert_eq!(
        store
            .find_external_identity(a.org, "okta", "sub-1")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .link_external_identity(a.org, "okta", "sub-1", a.user, t0())
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_external_identity(a.org, "okta", "sub-1")
            .await
            .unwrap(),
        Some(a.user)
    );
    assert!(
        store
            .link_external_identity(a.org, "okta", "sub-1", a.user, at(5))
            .await
            .unwrap(),
        "a repeat sign-in through the same link"
    );
    let other = store
        .create_user(a.org, "other@a.test", "Other", t0())
        .await
        .unwrap();
    assert!(
        !store
            .link_external_identity(a.org, "okta", "sub-1", other.id, at(6))
            .await
            .unwrap(),
        "an existing link is never moved to another user"
    );
    assert_eq!(
        store
            .find_external_identity(a.org, "okta", "sub-1")
            .await
            .unwrap(),
        Some(a.user)
    );
    assert_eq!(
        store
            .find_external_identity(b.org, "okta", "sub-1")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .link_external_identity(b.org, "okta", "sub-1", a.user, t0())
            .await,
        Err(StoreError::NotInTenant(_))
    ));
}

pub(super) async fn provider_role_bindings_sync_without_touching_manual_ones(store: Store) {
    let a = tenant(&store, "a").await;
    let scope = |id: &str| RoleScope {
        entity_type: "App".into(),
        entity_id: id.into(),
    };
    store
        .add_role_binding(a.workspace, a.user, "admin", &scope("console"), t0())
        .await
        .unwrap();
    let mapped = vec![
        ("operator".to_owned(), scope("wiki")),
        ("admin".to_owned(), scope("console")),
    ];
    store
        .sync_provider_role_bindings(a.workspace, a.user, "okta", &mapped, t0())
        .await
        .unwrap();
    let roles = |list: Vec<crate::store::RoleBinding>| -> Vec<String> {
        list.into_iter()
            .map(|b| format!("{}@{}", b.role, b.scope.entity_id))
            .collect()
    };
    assert_eq!(
        roles(
            store
                .list_user_role_bindings(a.workspace, a.user)
                .await
                .unwrap()
        ),
        ["admin@console", "operator@wiki"]
    );
    // The provider stops asserting both groups: its own binding goes, the manual stays.
    store
        .sync_provider_role_bindings(a.workspace, a.user, "okta", &[], at(60))
        .await
        .unwrap();
    assert_eq!(
        roles(
            store
                .list_user_role_bindings(a.workspace, a.user)
                .await
                .unwrap()
        ),
        ["admin@console"]
    );
    // Another provider's bindings are its own.
    store
        .sync_provider_role_bindings(
            a.workspace,
            a.user,
            "entra",
            &[("analyst".into(), scope("wiki"))],
            at(61),
        )
        .await
        .unwrap();
    store
        .sync_provider_role_bindings(a.workspace, a.user, "okta", &[], at(62))
        .await
        .unwrap();
    assert_eq!(
        roles(
            store
                .list_user_role_bindings(a.workspace, a.user)
                .await
                .unwrap()
        ),
        ["admin@console", "analyst@wiki"]
    );
    let mut settings = store.get_organization_settings(a.org).await.unwrap();
    settings.require_sso = Some(true);
    store
        .set_organization_settings(a.org, &settings)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_organization_settings(a.org)
            .await
            .unwrap()
            .require_sso,
        Some(true)
    );
}

/// A connection remembers the session its last request presented: the next request
/// with that cookie gets the same answer the shared cache would give, another cookie
/// on the same connection (a front proxy's pool) gets its own session, and idle
/// timeouts and revocations on this instance end a remembered session at once.
pub(super) async fn a_connection_remembers_its_session_within_the_caches_bounds(store: Store) {
    use std::time::SystemTime;

    use crate::session::{Remembered, Sessions, Timeouts, read_cookie};

    let a = tenant(&store, "acme").await;
    let bob = store
        .create_user(a.org, "bob@acme.example", "Bob", t0())
        .await
        .unwrap()
        .id;
    let sessions = Sessions::new(store.clone());
    let timeouts = Timeouts {
        idle: Duration::minutes(30),
        absolute: Duration::hours(8),
    };
    let sign_in = |user: UserId, secs: i64| {
        sessions.create(
            a.workspace,
            user,
            timeouts,
            AuthMethod::Password,
            false,
            at(secs),
        )
    };
    let connection = Remembered::default();
    let user_at = |cookie: String, secs: i64| {
        let (sessions, connection) = (&sessions, &connection);
        async move {
            sessions
                .find_presented(connection, cookie.as_bytes(), SystemTime::from(at(secs)))
                .await
                .unwrap()
                .map(|live| live.session().user_id)
        }
    };

    let alice_cookie = sign_in(a.user, 0).await.unwrap();
    let bob_cookie = sign_in(bob, 0).await.unwrap();
    assert_eq!(user_at(alice_cookie.clone(), 1).await, Some(a.user));
    assert_eq!(user_at(alice_cookie.clone(), 2).await, Some(a.user));
    assert_eq!(user_at(bob_cookie.clone(), 3).await, Some(bob));
    assert_eq!(user_at(alice_cookie.clone(), 4).await, Some(a.user));
    // One digit off names no session, remembered or not.
    let last = alice_cookie.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &alice_cookie[..alice_cookie.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(user_at(forged, 5).await, None);
    assert_eq!(user_at(alice_cookie.clone(), 6).await, Some(a.user));
    // Idle past the timeout: refused although remembered, and forgotten.
    assert_eq!(user_at(alice_cookie.clone(), 6 + 31 * 60).await, None);

    // A sign-out on this instance ends the remembered session at once.
    let later = 4 * 3600;
    let alice_cookie = sign_in(a.user, later).await.unwrap();
    assert_eq!(user_at(alice_cookie.clone(), later + 1).await, Some(a.user));
    assert_eq!(user_at(alice_cookie.clone(), later + 2).await, Some(a.user));
    let (workspace, hash) = read_cookie(alice_cookie.as_bytes()).unwrap();
    assert!(
        sessions
            .revoke(workspace, &hash, at(later + 3))
            .await
            .unwrap()
    );
    assert_eq!(user_at(alice_cookie, later + 4).await, None);

    // So does revoking every session of the user.
    let bob_cookie = sign_in(bob, later).await.unwrap();
    assert_eq!(user_at(bob_cookie.clone(), later + 5).await, Some(bob));
    assert_eq!(user_at(bob_cookie.clone(), later + 6).await, Some(bob));
    assert_eq!(
        sessions
            .revoke_user(a.org, bob, at(later + 7))
            .await
            .unwrap(),
        2
    );
    assert_eq!(user_at(bob_cookie, later + 8).await, None);
}
