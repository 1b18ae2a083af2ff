//! `portcullis init`: the first run. There is no default account; this creates the
//! organization, its first workspace and its first administrator *without* a password,
//! and prints a one-time setup token (valid 24 hours, stored only as a hash) with which
//! that person chooses a password at `/.portcullis/setup`.

use std::path::Path;

use anyhow::{Context, bail};

use crate::clock;
use crate::config::Config;
use crate::crypto::random::random_hex256;
use crate::store::{Environment, RoleScope, SetupTokenHash};

/// How long the setup token works.
const SETUP_TOKEN_LIFETIME: time::Duration = time::Duration::hours(24);

/// What `portcullis init` was asked to create.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The organization's display name.
    #[arg(long)]
    organization_name: String,
    /// The first workspace's name.
    #[arg(long, default_value = "main")]
    workspace_name: String,
    /// The first workspace's stage: dev, test or prod.
    #[arg(long, default_value = "prod")]
    environment: String,
    /// The first administrator's email.
    #[arg(long)]
    email: String,
    /// A role to grant the administrator, e.g. `admin` (with --scope).
    #[arg(long, requires = "scope")]
    role: Option<String>,
    /// The scope of that role, a Cedar entity such as `App::"console"`.
    #[arg(long, requires = "role")]
    scope: Option<String>,
    /// The gateway's public address, to print the setup link.
    #[arg(long, default_value = "https://<your gateway>")]
    public_url: String,
}

/// Runs `portcullis init`.
pub async fn run(config_path: &Path, args: InitArgs) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let store = super::admin::open_configured_store(&config).await?;
    let now = clock::now_utc();
    if let Some(login) = config.login
        && store.count_users(login.organization).await? > 0
    {
        bail!(
            "organization {} (named in [login]) already has users: init runs once; \
             use `portcullis user add` and `portcullis user passwd` instead",
            login.organization
        );
    }
    let email = args.email.trim().to_lowercase();
    if !email.contains('@') {
        bail!("`{email}` is not an email address");
    }
    let environment = Environment::try_from(args.environment)?;
    let scope = match (&args.role, &args.scope) {
        (Some(_), Some(scope)) => {
            let Some(entity) = crate::authz::parse_entity(scope) else {
                bail!("`{scope}` is not a scope such as `App::\"console\"`");
            };
            Some(RoleScope {
                entity_type: entity.kind,
                entity_id: entity.id,
            })
        }
        _ => None,
    };

    let organization = store
        .create_organization(&args.organization_name, now)
        .await?;
    let workspace = store
        .create_workspace(organization.id, &args.workspace_name, environment, now)
        .await?;
    let user = store
        .create_user(organization.id, &email, &email, now)
        .await?;
    if let (Some(role), Some(scope)) = (&args.role, &scope) {
        store
            .add_role_binding(workspace.id, user.id, role, scope, now)
            .await
            .context("granting the administrator's role")?;
    }
    let token = random_hex256();
    store
        .create_setup_token(
            organization.id,
            user.id,
            &SetupTokenHash::of(token.as_bytes()),
            now,
            now + SETUP_TOKEN_LIFETIME,
        )
        .await?;

    eprintln!(
        "created organization `{}` ({}), workspace `{}` ({}, {environment}) and administrator `{email}`",
        args.organization_name, organization.id, args.workspace_name, workspace.id
    );
    eprintln!("put this in the configuration file, then (re)start the gateway:\n");
    eprintln!(
        "[login]\norganization = \"{}\"\nworkspace = \"{}\"\n",
        organization.id, workspace.id
    );
    eprintln!(
        "then open {}/.portcullis/setup and enter the setup token below to choose a password.\n\
         It works once, for 24 hours, and is shown only now:",
        args.public_url.trim_end_matches('/')
    );
    println!("{token}");
    Ok(())
}
