-- Accounts, credentials, sessions, role bindings, API tokens and settings (SQLite).
-- Ids are UUIDv7 stored as 16-byte BLOBs; timestamps are RFC 3339 TEXT in UTC,
-- whole seconds (fixed width, so text order is time order); durations are INTEGER
-- seconds. Every row owned by a tenant carries its organization and, where it
-- belongs to one, its workspace. Composite foreign keys on (organization_id, id)
-- make it impossible to point a row at a user or workspace of another organization.

CREATE TABLE organizations (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE workspaces (
    id BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('dev', 'test', 'prod')),
    created_at TEXT NOT NULL,
    UNIQUE (organization_id, name),
    UNIQUE (organization_id, id)
);

CREATE TABLE users (
    id BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL,
    UNIQUE (organization_id, email),
    UNIQUE (organization_id, id)
);

CREATE TABLE password_credentials (
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    phc TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    PRIMARY KEY (organization_id, user_id),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE password_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    phc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX password_history_by_user ON password_history (organization_id, user_id, seq);

CREATE TABLE totp_enrolments (
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    sealed_seed BLOB NOT NULL,
    created_at TEXT NOT NULL,
    confirmed_at TEXT,
    last_step INTEGER,
    PRIMARY KEY (organization_id, user_id),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE recovery_codes (
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    code_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    used_at TEXT,
    PRIMARY KEY (organization_id, user_id, code_hash),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE sessions (
    id_hash BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL,
    workspace_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    idle_timeout_secs INTEGER NOT NULL CHECK (idle_timeout_secs > 0),
    absolute_expiry TEXT NOT NULL,
    mfa_done BOOLEAN NOT NULL,
    auth_method TEXT NOT NULL CHECK (auth_method IN ('password', 'oidc', 'saml', 'email_code')),
    revoked_at TEXT,
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_by_workspace_user ON sessions (workspace_id, user_id);
CREATE INDEX sessions_by_organization_user ON sessions (organization_id, user_id);

CREATE TABLE role_bindings (
    organization_id BLOB NOT NULL,
    workspace_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    role TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id, role, scope_type, scope_id),
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL,
    workspace_id BLOB NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_by BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT,
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, created_by) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX api_tokens_by_workspace ON api_tokens (workspace_id, created_at);

CREATE TABLE organization_settings (
    organization_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    idle_timeout_secs INTEGER CHECK (idle_timeout_secs > 0),
    absolute_lifetime_secs INTEGER CHECK (absolute_lifetime_secs > 0),
    require_2fa BOOLEAN,
    password_profile TEXT,
    ip_allowlist TEXT
);

CREATE TABLE workspace_settings (
    organization_id BLOB NOT NULL,
    workspace_id BLOB PRIMARY KEY NOT NULL,
    idle_timeout_secs INTEGER CHECK (idle_timeout_secs > 0),
    absolute_lifetime_secs INTEGER CHECK (absolute_lifetime_secs > 0),
    require_2fa BOOLEAN,
    password_profile TEXT,
    ip_allowlist TEXT,
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE
);
