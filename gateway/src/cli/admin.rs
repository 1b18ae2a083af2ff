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
    Environment, NewApiToken, OrganizationId, RoleScope, Store, UserId, WorkspaceId,
};

/// `portcullis org …`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization; prints its id.
    Create {
        /// Its display name.
        name: String,
    },
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

async fn open_configured_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(config.store())
        .await
        .context("opening the store")?;
    store.migrate().await.context("migrating the store")?;
    Ok(store)
}

/// Runs `org create`.
pub async fn org(config: &Path, command: OrgCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let OrgCommand::Create { name } = command;
    let organization = store.create_organization(&name, clock::now_utc()).await?;
    eprintln!("created organization `{name}`");
    println!("{}", organization.id);
    Ok(())
}

/// Runs `workspace create`.
pub async fn workspace(config: &Path, command: WorkspaceCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let WorkspaceCommand::Create {
        organization,
        name,
        environment,
    } = command;
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
    if let Err(rule) = password::check_policy(password, &email) {
        bail!("password refused: {rule}");
    }
    let hasher = password::PasswordHasher::new(config.passwords, 1)?;
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
                    "{}\tsigned in {}\tlast seen {}\tends by {}\tmfa={}",
                    session.auth_method,
                    session.created_at,
                    session.last_seen_at,
                    session.absolute_expiry,
                    session.mfa_done
                );
            }
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
