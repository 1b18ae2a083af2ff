-- Per-user preferences, first-run setup tokens and links to external identities
-- (SQLite). Same conventions as 0001.

-- A user's own, shorter session timeouts (never longer than the organization's or
-- the workspace's: the strictest value wins when a session starts).
CREATE TABLE user_settings (
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    idle_timeout_secs INTEGER CHECK (idle_timeout_secs > 0),
    absolute_lifetime_secs INTEGER CHECK (absolute_lifetime_secs > 0),
    PRIMARY KEY (organization_id, user_id),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

-- One-time tokens that let the first administrator choose a password
-- (`portcullis init`). Only the SHA-256 of the token is stored.
CREATE TABLE setup_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);

-- Who a (provider, subject) pair from single sign-on is. Users are linked by the
-- provider's stable subject, never by email alone.
CREATE TABLE external_identities (
    organization_id BLOB NOT NULL,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    last_login_at TEXT NOT NULL,
    PRIMARY KEY (organization_id, provider, subject),
    FOREIGN KEY (organization_id, user_id) REFERENCES users (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX external_identities_by_user ON external_identities (organization_id, user_id);

-- Where a role binding came from: `manual` (CLI, console) or `sso:<provider>` (mapped
-- from the identity provider's groups and re-evaluated at each sign-in through it).
ALTER TABLE role_bindings ADD COLUMN source TEXT NOT NULL DEFAULT 'manual';

-- Organizations (and workspaces) may require single sign-on: no password or email-code
-- sign-in for their members.
ALTER TABLE organization_settings ADD COLUMN require_sso BOOLEAN;
ALTER TABLE workspace_settings ADD COLUMN require_sso BOOLEAN;
