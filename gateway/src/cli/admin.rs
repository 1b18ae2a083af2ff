//! Tenant, user and token administration from the command line: `org`, `workspace`,
//! `user` and `token`. Each opens the store named by the configuration file. Created
//! ids (and a new token, shown once) go to stdout alone, so scripts can capture them.

use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::api_token;
use crate::clock;
use crate::config::{Config, parse_duration};
use crate::login::password;
use crate::store::{
    Environment, NewApiToken, OrganizationId, RoleScope, Settings, Store, UserId, WorkspaceId,
};

/// `portcullis org …`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization; prints its id.
    Create {
        /// Its display name.
        name: String,
    },
    /// Show or change an organization's settings (timeouts, 2FA rule, password profile).
    Settings {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        #[command(flatten)]
        change: SettingsArgs,
    },
}

/// `portcullis org settings` / `portcullis workspace settings`: what to change. Each
/// flag left out keeps its value; `--clear` unsets every setting first.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// Sessions end after this long without a request, e.g. `30m`.
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Sessions end this long after sign-in, e.g. `12h`.
    #[arg(long)]
    absolute_lifetime: Option<String>,
    /// Whether every user must use a second factor.
    #[arg(long)]
    require_2fa: Option<bool>,
    /// Whether members must sign in through single sign-on (password and email-code
    /// sign-in refused).
    #[arg(long)]
    require_sso: Option<bool>,
    /// The password profile: `nist` or `compliance`.
    #[arg(long)]
    password_profile: Option<String>,
    /// Unset every setting before applying the flags given.
    #[arg(long)]
    clear: bool,
}

impl SettingsArgs {
    fn apply(self, mut settings: Settings) -> anyhow::Result<Settings> {
        if self.clear {
            settings = Settings::default();
        }
        let duration = |text: &str| -> anyhow::Result<time::Duration> {
            parse_duration(text)
                .and_then(|d| time::Duration::try_from(d).ok())
                .filter(|d| d.is_positive())
                .with_context(|| format!("`{text}` is not a duration such as `30m` or `12h`"))
        };
        if let Some(text) = &self.idle_timeout {
            settings.idle_timeout = Some(duration(text)?);
        }
        if let Some(text) = &self.absolute_lifetime {
            settings.absolute_lifetime = Some(duration(text)?);
        }
        if let Some(required) = self.require_2fa {
            settings.require_2fa = Some(required);
        }
        if let Some(required) = self.require_sso {
            settings.require_sso = Some(required);
        }
        if let Some(profile) = &self.password_profile {
            let profile =
                password::PasswordProfile::parse(Some(profile)).map_err(anyhow::Error::msg)?;
            settings.password_profile = Some(profile.as_str().to_owned());
        }
        Ok(settings)
    }
}

fn print_settings(settings: &Settings) {
    let duration = |d: Option<time::Duration>| {
        d.map_or_else(|| "unset".to_owned(), |d| format!("{}s", d.whole_seconds()))
    };
    println!("idle_timeout\t{}", duration(settings.idle_timeout));
    println!(
        "absolute_lifetime\t{}",
        duration(settings.absolute_lifetime)
    );
    println!(
        "require_2fa\t{}",
        settings
            .require_2fa
            .map_or("unset".to_owned(), |b| b.to_string())
    );
    println!(
        "require_sso\t{}",
        settings
            .require_sso
            .map_or("unset".to_owned(), |b| b.to_string())
    );
    println!(
        "password_profile\t{}",
        settings.password_profile.as_deref().unwrap_or("unset")
    );
}

/// `portcullis workspace …`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace in an organization; prints its id.
    Create {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// Its name, unique in the organization.
        name: String,
        /// The stage it serves: dev, test or prod.
        #[arg(long, default_value = "prod")]
        environment: String,
    },
    /// Show or change a workspace's own settings (they can only tighten the
    /// organization's).
    Settings {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        #[command(flatten)]
        change: SettingsArgs,
    },
}

/// `portcullis user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user to an organization; prints its id.
    Add {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// The user's email (stored lower-cased).
        email: String,
        /// The name shown in the console.
        #[arg(long)]
        name: Option<String>,
    },
    /// Disable a user: no sign-in, no API tokens acting as them, every session ended.
    Disable {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// The user's email.
        email: String,
    },
    /// Reset a user's second factor (TOTP and recovery codes) and sign them out: they
    /// sign in with their password and enrol again.
    TotpReset {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// The user's email.
        email: String,
    },
    /// Set a user's password, read from the first line of standard input. Signs the
    /// user out everywhere.
    Passwd {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// The user's email.
        email: String,
    },
}

/// `portcullis session …`
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List a user's live sessions in a workspace.
    List {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user id.
        #[arg(long)]
        user: UserId,
    },
    /// Sign out one session, by the handle `session list` shows.
    Revoke {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user id.
        #[arg(long)]
        user: UserId,
        /// The session's handle (first column of `session list`).
        handle: String,
    },
    /// Sign a user out everywhere (every session in every workspace).
    RevokeAll {
        /// The organization id.
        #[arg(long)]
        organization: OrganizationId,
        /// The user id.
        #[arg(long)]
        user: UserId,
    },
}

/// `portcullis role …`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Grant a user a role on a scope (and everything below it) in a workspace.
    Grant {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user id.
        #[arg(long)]
        user: UserId,
        /// The role name, as the policies spell it (e.g. `operator`).
        #[arg(long)]
        role: String,
        /// The scope, a Cedar entity such as `Project::"acme/payments"`.
        #[arg(long)]
        scope: String,
    },
    /// Take a role binding away.
    Revoke {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user id.
        #[arg(long)]
        user: UserId,
        /// The role name.
        #[arg(long)]
        role: String,
        /// The scope it was granted on.
        #[arg(long)]
        scope: String,
    },
    /// List a user's role bindings in a workspace.
    List {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user id.
        #[arg(long)]
        user: UserId,
    },
}

/// `portcullis token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token acting as a user in a workspace; prints it once.
    Create {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The user the token acts as (its role bindings apply).
        #[arg(long)]
        user: UserId,
        /// A label for listings.
        #[arg(long)]
        name: String,
        /// How long it works, e.g. `30d`, `12h`.
        #[arg(long, default_value = "90d")]
        expires_in: String,
    },
    /// List a workspace's tokens (never the secrets).
    List {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The workspace id.
        #[arg(long)]
        workspace: WorkspaceId,
        /// The token id (from `token list`).
        id: crate::store::ApiTokenId,
    },
}

/// Opens (and migrates) the store of a configuration file.
async fn open_store(config: &Path) -> anyhow::Result<Store> {
    let config = Config::load(config)?;
    open_configured_store(&config).await
}

pub(super) async fn open_configured_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(config.store())
        .await
        .context("opening the store")?;
    store.migrate().await.context("migrating the store")?;
    Ok(store)
}

/// Runs `org create`.
pub async fn org(config: &Path, command: OrgCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match command {
        OrgCommand::Create { name } => {
            let organization = store.create_organization(&name, clock::now_utc()).await?;
            eprintln!("created organization `{name}`");
            println!("{}", organization.id);
        }
        OrgCommand::Settings {
            organization,
            change,
        } => {
            if store.get_organization(organization).await?.is_none() {
                bail!("no organization {organization}");
            }
            let settings = change.apply(store.get_organization_settings(organization).await?)?;
            store
                .set_organization_settings(organization, &settings)
                .await?;
            print_settings(&settings);
        }
    }
    Ok(())
}

/// Runs `workspace create`.
pub async fn workspace(config: &Path, command: WorkspaceCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let (organization, name, environment) = match command {
        WorkspaceCommand::Create {
            organization,
            name,
            environment,
        } => (organization, name, environment),
        WorkspaceCommand::Settings { workspace, change } => {
            let settings = change.apply(store.get_workspace_settings(workspace).await?)?;
            store.set_workspace_settings(workspace, &settings).await?;
            print_settings(&settings);
            return Ok(());
        }
    };
    let environment = Environment::try_from(environment)?;
    let workspace = store
        .create_workspace(organization, &name, environment, clock::now_utc())
        .await?;
    eprintln!("created workspace `{name}` ({environment})");
    println!("{}", workspace.id);
    Ok(())
}

/// Runs `user add|passwd|disable|totp-reset`.
pub async fn user(config: &Path, command: UserCommand) -> anyhow::Result<()> {
    let (organization, email, name) = match command {
        UserCommand::Add {
            organization,
            email,
            name,
        } => (organization, email, name),
        UserCommand::Passwd {
            organization,
            email,
        } => return passwd(config, organization, &email).await,
        UserCommand::Disable {
            organization,
            email,
        } => return disable(config, organization, &email).await,
        UserCommand::TotpReset {
            organization,
            email,
        } => return totp_reset(config, organization, &email).await,
    };
    let store = open_store(config).await?;
    let email = email.trim().to_lowercase();
    if !email.contains('@') {
        bail!("`{email}` is not an email address");
    }
    let name = name.unwrap_or_else(|| email.clone());
    let user = store
        .create_user(organization, &email, &name, clock::now_utc())
        .await?;
    eprintln!("added user `{email}`");
    println!("{}", user.id);
    Ok(())
}

/// Runs `token create|list|revoke`.
pub async fn token(config: &Path, command: TokenCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = clock::now_utc();
    match command {
        TokenCommand::Create {
            workspace,
            user,
            name,
            expires_in,
        } => {
            let Some(lifetime) = parse_duration(&expires_in) else {
                bail!("`{expires_in}` is not a duration such as `30d` or `12h`");
            };
            let minted = api_token::mint(workspace);
            let new = NewApiToken {
                hash: minted.hash,
                name,
                created_by: user,
                expires_at: now + lifetime,
            };
            let token = store.create_api_token(workspace, &new, now).await?;
            eprintln!(
                "created token {} (expires {}); it is shown once:",
                token.id, token.expires_at
            );
            println!("{}", minted.text);
        }
        TokenCommand::List { workspace } => {
            for token in store.list_api_tokens(workspace).await? {
                let state = match token.revoked_at {
                    Some(_) => "revoked",
                    None if !token.is_usable(now) => "expired",
                    None => "active",
                };
                println!(
                    "{}\t{}\t{state}\texpires {}",
                    token.id, token.name, token.expires_at
                );
            }
        }
        TokenCommand::Revoke { workspace, id } => {
            if !store.revoke_api_token(workspace, id, now).await? {
                bail!("no live token {id} in workspace {workspace}");
            }
            eprintln!("revoked token {id}; running gateways stop accepting it within seconds");
        }
    }
    Ok(())
}

async fn passwd(
    config_path: &Path,
    organization: OrganizationId,
    email: &str,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let store = open_configured_store(&config).await?;
    let email = email.trim().to_lowercase();
    let Some(user) = store.find_user_by_email(organization, &email).await? else {
        bail!("no user `{email}` in organization {organization}");
    };
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    let profile = password::PasswordProfile::resolve(&[store
        .get_organization_settings(organization)
        .await?
        .password_profile
        .as_deref()]);
    if let Err(rule) = profile.check(password, &email) {
        bail!("password refused: {rule}");
    }
    let hasher = password::PasswordHasher::new(config.passwords, 1)?;
    for phc in store
        .password_history(organization, user.id, profile.history_depth())
        .await?
    {
        if hasher.verify(Some(&phc), password).await? != password::Verified::No {
            bail!("password refused: {}", password::REUSED);
        }
    }
    let phc = hasher.hash(password).await?;
    let now = clock::now_utc();
    store.set_password(organization, user.id, &phc, now).await?;
    let revoked = store
        .revoke_user_sessions(organization, user.id, now)
        .await?;
    eprintln!("password set for `{email}`; {revoked} session(s) signed out");
    Ok(())
}

/// Runs `role grant|revoke|list`.
pub async fn role(config: &Path, command: RoleCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let scope_of = |text: &str| -> anyhow::Result<RoleScope> {
        let Some(entity) = crate::authz::parse_entity(text) else {
            bail!("`{text}` is not a scope such as `Project::\"acme/payments\"`");
        };
        Ok(RoleScope {
            entity_type: entity.kind,
            entity_id: entity.id,
        })
    };
    match command {
        RoleCommand::Grant {
            workspace,
            user,
            role,
            scope,
        } => {
            let added = store
                .add_role_binding(workspace, user, &role, &scope_of(&scope)?, clock::now_utc())
                .await?;
            eprintln!("{}", if added { "granted" } else { "already granted" });
        }
        RoleCommand::Revoke {
            workspace,
            user,
            role,
            scope,
        } => {
            if !store
                .remove_role_binding(workspace, user, &role, &scope_of(&scope)?)
                .await?
            {
                bail!("no such role binding");
            }
            eprintln!("revoked; running gateways apply it within seconds");
        }
        RoleCommand::List { workspace, user } => {
            for binding in store.list_user_role_bindings(workspace, user).await? {
                println!(
                    "{}\t{}::\"{}\"",
                    binding.role, binding.scope.entity_type, binding.scope.entity_id
                );
            }
        }
    }
    Ok(())
}

async fn disable(config: &Path, organization: OrganizationId, email: &str) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let email = email.trim().to_lowercase();
    let Some(user) = store.find_user_by_email(organization, &email).await? else {
        bail!("no user `{email}` in organization {organization}");
    };
    store
        .disable_user(organization, user.id, clock::now_utc())
        .await?;
    eprintln!(
        "disabled `{email}`; their sessions are ended and running gateways refuse them within seconds"
    );
    Ok(())
}

/// Runs `session list|revoke-all`.
pub async fn session(config: &Path, command: SessionCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = clock::now_utc();
    match command {
        SessionCommand::List { workspace, user } => {
            for session in store.list_user_sessions(workspace, user, now).await? {
                println!(
                    "{}\t{}\tsigned in {}\tlast seen {}\tends by {}\tmfa={}",
                    crate::session::handle(&session.hash),
                    session.auth_method,
                    session.created_at,
                    session.last_seen_at,
                    session.absolute_expiry,
                    session.mfa_done
                );
            }
        }
        SessionCommand::Revoke {
            workspace,
            user,
            handle,
        } => {
            let found = store
                .list_user_sessions(workspace, user, now)
                .await?
                .into_iter()
                .find(|session| crate::session::handle(&session.hash) == handle.trim());
            let Some(session) = found else {
                bail!("no live session `{handle}` of user {user} in workspace {workspace}");
            };
            store.revoke_session(workspace, &session.hash, now).await?;
            eprintln!("session ended; running gateways refuse it within seconds");
        }
        SessionCommand::RevokeAll { organization, user } => {
            let revoked = store.revoke_user_sessions(organization, user, now).await?;
            eprintln!("{revoked} session(s) ended");
        }
    }
    Ok(())
}

async fn totp_reset(
    config: &Path,
    organization: OrganizationId,
    email: &str,
) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let email = email.trim().to_lowercase();
    let Some(user) = store.find_user_by_email(organization, &email).await? else {
        bail!("no user `{email}` in organization {organization}");
    };
    if !store
        .reset_second_factor(organization, user.id, clock::now_utc())
        .await?
    {
        bail!("`{email}` has no second factor to reset");
    }
    eprintln!(
        "second factor reset for `{email}`; they are signed out and enrol again at next sign-in"
    );
    Ok(())
}
