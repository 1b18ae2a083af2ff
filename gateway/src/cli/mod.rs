//! The command line: `serve`, `check-config` and `demo`. The only place besides
//! `main.rs` that uses `anyhow`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod admin;
mod bundle;
mod demo;
mod init;
mod policy;

use crate::config::Config;
use crate::ops::server;

/// Portcullis: authentication gateway and security-policy reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve traffic with a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// For end-to-end tests only: the internal listener may move the wall clock.
        #[arg(long, hide = true)]
        unsafe_test_clock: bool,
    },
    /// Validate a configuration file (and the TLS and CA files it names) without serving.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// First run: create the organization, its first workspace and administrator, and
    /// print a one-time setup token with which the administrator chooses a password.
    Init {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        args: init::InitArgs,
    },
    /// Organizations: create, settings.
    Org {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::OrgCommand,
    },
    /// Workspaces: create, settings.
    Workspace {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::WorkspaceCommand,
    },
    /// Users: add, passwd, disable.
    User {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::UserCommand,
    },
    /// Sessions: list, revoke, revoke-all.
    Session {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::SessionCommand,
    },
    /// Role bindings: grant, revoke, list.
    Role {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::RoleCommand,
    },
    /// API tokens for machine clients: create, list, revoke.
    Token {
        /// The TOML configuration file (names the store).
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::TokenCommand,
    },
    /// Policy-as-code tools: validate, test, fmt, diff, explain.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Run a self-contained demo: generated key, default policies, a built-in upstream.
    Demo {
        /// Where the demo keeps its key, policies and configuration.
        #[arg(long, default_value = "portcullis-data")]
        data_dir: PathBuf,
        /// The address the gateway listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            unsafe_test_clock,
        } => {
            let config = Config::load(&config)?;
            if unsafe_test_clock {
                crate::clock::enable_test_clock();
                tracing::warn!(
                    "the wall clock can be moved through the internal listener (--unsafe-test-clock): never use this in production"
                );
            }
            // Proxied traffic is served on threads of its own (`net::workers`); this
            // runtime accepts connections and runs signals, reloads and the store's
            // upkeep, so one thread is plenty.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(server::serve(config))?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            server::preflight(&config)?;
            println!(
                "{}: ok ({} listener(s), {} route(s))",
                file.display(),
                config.listeners().len(),
                config.routes().len()
            );
            Ok(())
        }
        Command::Policy { command } => policy::run(command),
        Command::Init { config, args } => runtime()?.block_on(init::run(&config, args)),
        Command::Org { config, command } => {
            runtime()?.block_on(admin::org(&required(config)?, command))
        }
        Command::Workspace { config, command } => {
            runtime()?.block_on(admin::workspace(&required(config)?, command))
        }
        Command::User { config, command } => {
            runtime()?.block_on(admin::user(&required(config)?, command))
        }
        Command::Session { config, command } => {
            runtime()?.block_on(admin::session(&required(config)?, command))
        }
        Command::Role { config, command } => {
            runtime()?.block_on(admin::role(&required(config)?, command))
        }
        Command::Token { config, command } => {
            runtime()?.block_on(admin::token(&required(config)?, command))
        }
        Command::Demo { data_dir, listen } => {
            runtime()?.block_on(demo::run(&data_dir, listen))?;
            Ok(())
        }
    }
}

/// The `--config` an admin command needs (optional to clap only so it can follow the
/// subcommand).
fn required(config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    config.context("--config FILE (or PORTCULLIS_CONFIG) is required: it names the store")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
