//! The deployment configuration: one TOML file, compiled into a validated [`Config`].
//!
//! Two stages: [`raw`] mirrors the file (serde, unknown keys rejected), and
//! [`Config::from_raw`] checks every value and compiles it (CIDR sets, upstream URIs,
//! durations, resolved paths). The rest of the gateway only ever sees [`Config`].
//!
//! Per-deployment settings live here. Per-organization and per-workspace settings
//! (session timeouts, password policy, workspace allowlists, the 2FA rule) live in the
//! store and are edited through the console or CLI, not in this file.
//!
//! Relative paths in the file are resolved against the directory holding the file.

pub(crate) mod raw;
pub mod sso;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode, Uri};
use ipnetwork::IpNetwork;
use portcullis_policy::Environment;

use crate::login::password::HashParams;
use crate::session::Timeouts;
use crate::store::{OrganizationId, WorkspaceId};

use crate::proxy::path::CanonicalPath;
use raw::{RawConfig, RawLimits, RawListener, RawRoute};

/// The only configuration format version this build understands.
pub const CONFIG_VERSION: u32 = 1;

/// Why a configuration file was refused. Every message names the file, and where it
/// can, the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not have the expected shape.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// Where and what, from the TOML parser.
        message: String,
    },
    /// A value is present but wrong, or a required value is missing.
    #[error("{path}: `{key}`: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// The dotted key, e.g. `route[2].upstream`.
        key: String,
        /// What is wrong, in words.
        problem: String,
    },
}

/// The validated configuration.
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) listeners: Vec<ListenerConfig>,
    pub(crate) internal: Option<SocketAddr>,
    pub(crate) trusted_proxies: Vec<IpNetwork>,
    pub(crate) unknown_host_status: StatusCode,
    pub(crate) reject_path_parameters: bool,
    pub(crate) limits: Limits,
    /// Serving threads (`[runtime] workers`; default: the usable CPUs).
    pub(crate) workers: usize,
    pub(crate) strip_headers: Vec<HeaderName>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) store: StoreUrl,
    pub(crate) policy: PolicyConfig,
    pub(crate) main_key: KeySource,
    pub(crate) login: Option<LoginConfig>,
    pub(crate) email: Option<EmailConfig>,
    pub(crate) sso: Option<sso::SsoConfig>,
    pub(crate) passwords: HashParams,
    /// How many threads hash passwords (`[passwords] threads`); none: half the cores.
    pub(crate) password_threads: Option<usize>,
    pub(crate) sessions: Timeouts,
}

/// Browser logins: the organization whose users sign in and the workspace their
/// sessions belong to.
#[derive(Debug, Clone, Copy)]
pub struct LoginConfig {
    pub(crate) organization: OrganizationId,
    pub(crate) workspace: WorkspaceId,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on this machine (loopback).
    None,
}

/// `[email]`: where one-time sign-in codes are sent from.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: SmtpSecurity,
    /// The user name and where its password comes from.
    pub(crate) credentials: Option<(String, KeySource)>,
    pub(crate) from: String,
    /// Extra trusted root certificates (PEM) for the SMTP server.
    pub(crate) ca: Option<PathBuf>,
}

/// Where the policy bundle and (until the store holds them) role bindings come from.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub(crate) dir: PathBuf,
    pub(crate) bindings: Option<PathBuf>,
    pub(crate) environment: Environment,
}

/// One proxied-traffic listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) tls: Option<TlsFiles>,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Client-side limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_uri_bytes: usize,
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) drain_timeout: Duration,
}

/// Whether a route needs an authenticated, authorized principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who passes the network rules.
    Public,
    /// Only principals the policy engine allows.
    Protected,
}

/// One route as configured.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) upstream: Uri,
    pub(crate) upstream_ca: Option<PathBuf>,
    pub(crate) resource: Option<String>,
    pub(crate) access: Access,
    pub(crate) allow: Vec<IpNetwork>,
    pub(crate) websocket: bool,
    pub(crate) case_insensitive: bool,
    pub(crate) preserve_host: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) actions: RouteActions,
}

/// How a protected route names the Cedar action for a request: a per-method entry,
/// else the route's default, else `http:<METHOD>`.
#[derive(Debug, Clone, Default)]
pub struct RouteActions {
    pub(crate) default: Option<Arc<str>>,
    pub(crate) by_method: Vec<(http::Method, Arc<str>)>,
}

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL server (the scale-out store). The URL may hold a password, so it
    /// is never printed.
    Postgres(String),
}

/// Where the 256-bit main key comes from. The key itself never appears in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the key.
    File(PathBuf),
    /// An environment variable holding the key.
    Env(String),
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            StoreUrl::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("listeners", &self.listeners)
            .field("internal", &self.internal)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("routes", &self.routes.len())
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field("main_key", &self.main_key)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(path, &text)
    }

    /// Validates configuration text as if it had been read from `path`.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            path: path.display().to_string(),
            message: syntax_message(text, &err),
        })?;
        Config::from_raw(path, raw)
    }

    /// Compiles the raw file into a validated configuration.
    pub(crate) fn from_raw(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let ctx = Ctx {
            path: path.display().to_string(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        match raw.version {
            Some(CONFIG_VERSION) => {}
            Some(other) => {
                return Err(ctx.invalid(
                    "version",
                    format!(
                        "unsupported version {other}; this build reads version {CONFIG_VERSION}"
                    ),
                ));
            }
            None => return Err(ctx.missing("version")),
        }
        let listeners = compile_listeners(&ctx, raw.listeners)?;
        let internal = match raw.internal {
            Some(internal) => Some(ctx.socket_addr("internal.bind", internal.bind)?),
            None => None,
        };
        let trusted_proxies = match raw.network.trusted_proxies {
            Some(list) => ctx.cidrs("network.trusted_proxies", &list)?,
            None => Vec::new(),
        };
        let unknown_host_status = match raw.network.unknown_host_status {
            None | Some(421) => StatusCode::MISDIRECTED_REQUEST,
            Some(404) => StatusCode::NOT_FOUND,
            Some(other) => {
                return Err(ctx.invalid(
                    "network.unknown_host_status",
                    format!("must be 421 or 404, got {other}"),
                ));
            }
        };
        let limits = compile_limits(&ctx, raw.limits)?;
        let workers = match raw.runtime.workers {
            None => crate::net::workers::default_count(),
            Some(workers @ 1..=1024) => workers,
            Some(other) => {
                return Err(ctx.invalid(
                    "runtime.workers",
                    format!("must be between 1 and 1024, got {other}"),
                ));
            }
        };
        let mut strip_headers = Vec::new();
        for (i, name) in raw
            .identity
            .strip_headers
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let key = format!("identity.strip_headers[{i}]");
            let normalised = name.trim().to_ascii_lowercase().replace('_', "-");
            let header = HeaderName::from_bytes(normalised.as_bytes())
                .map_err(|_| ctx.invalid(&key, format!("`{name}` is not a header name")))?;
            strip_headers.push(header);
        }
        let routes = compile_routes(&ctx, raw.routes)?;
        let store = compile_store(&ctx, raw.store.and_then(|store| store.url))?;
        let policy = compile_policy(&ctx, raw.policy)?;
        let main_key = compile_key_source(&ctx, raw.keys.and_then(|keys| keys.main_key))?;
        let login = match raw.login {
            None => None,
            Some(login) => {
                let organization = login
                    .organization
                    .ok_or_else(|| ctx.missing("login.organization"))?;
                let workspace = login
                    .workspace
                    .ok_or_else(|| ctx.missing("login.workspace"))?;
                Some(LoginConfig {
                    organization: organization.parse().map_err(|_| {
                        ctx.invalid(
                            "login.organization",
                            format!("`{organization}` is not an id (a UUID)"),
                        )
                    })?,
                    workspace: workspace.parse().map_err(|_| {
                        ctx.invalid(
                            "login.workspace",
                            format!("`{workspace}` is not an id (a UUID)"),
                        )
                    })?,
                })
            }
        };
        let email = raw
            .email
            .map(|email| compile_email(&ctx, email))
            .transpose()?;
        let sso = sso::compile(&ctx, raw.sso)?;
        let passwords = HashParams {
            memory_kib: raw
                .passwords
                .memory_kib
                .unwrap_or(HashParams::OWASP.memory_kib),
            iterations: raw
                .passwords
                .iterations
                .unwrap_or(HashParams::OWASP.iterations),
            parallelism: raw
                .passwords
                .parallelism
                .unwrap_or(HashParams::OWASP.parallelism),
        };
        if !(8..=4 * 1024 * 1024).contains(&passwords.memory_kib)
            || !(1..=16).contains(&passwords.iterations)
            || !(1..=16).contains(&passwords.parallelism)
        {
            return Err(ctx.invalid(
                "passwords",
                "memory_kib must be 8..=4194304, iterations and parallelism 1..=16",
            ));
        }
        let password_threads = raw.passwords.threads;
        if password_threads.is_some_and(|threads| !(1..=256).contains(&threads)) {
            return Err(ctx.invalid("passwords.threads", "must be 1..=256"));
        }
        let to_time =
            |duration: Duration| time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        let sessions = Timeouts {
            idle: to_time(ctx.duration(
                "sessions.idle_timeout",
                raw.sessions.idle_timeout.as_deref(),
                Duration::from_secs(30 * 60),
            )?),
            absolute: to_time(ctx.duration(
                "sessions.absolute_lifetime",
                raw.sessions.absolute_lifetime.as_deref(),
                Duration::from_secs(12 * 3600),
            )?),
        };
        Ok(Config {
            path: path.to_path_buf(),
            listeners,
            internal,
            trusted_proxies,
            unknown_host_status,
            reject_path_parameters: raw.network.reject_path_parameters.unwrap_or(true),
            limits,
            workers,
            strip_headers,
            routes,
            store,
            policy,
            main_key,
            login,
            email,
            sso,
            passwords,
            password_threads,
            sessions,
        })
    }

    /// The file this configuration came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The proxied-traffic listeners.
    pub fn listeners(&self) -> &[ListenerConfig] {
        &self.listeners
    }

    /// The routes, in file order.
    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// The store location.
    pub fn store(&self) -> &StoreUrl {
        &self.store
    }

    /// Where the main key comes from.
    pub fn main_key(&self) -> &KeySource {
        &self.main_key
    }
}

impl ListenerConfig {
    /// The listener's name, used in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl RouteConfig {
    /// The route's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Validation context: the file name for messages and the folder relative paths start from.
struct Ctx {
    path: String,
    base: PathBuf,
}

impl Ctx {
    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    fn missing(&self, key: &str) -> ConfigError {
        self.invalid(key, "is required")
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    fn socket_addr(&self, key: &str, value: Option<String>) -> Result<SocketAddr, ConfigError> {
        let value = value.ok_or_else(|| self.missing(key))?;
        value.parse().map_err(|_| {
            self.invalid(
                key,
                format!("`{value}` is not an address:port such as `0.0.0.0:8443` or `[::]:8443`"),
            )
        })
    }

    fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => parse_duration(text).ok_or_else(|| {
                self.invalid(
                    key,
                    format!("`{text}` is not a duration such as `250ms`, `10s`, `5m` or `1h`"),
                )
            }),
        }
    }

    fn cidrs(&self, key: &str, list: &[String]) -> Result<Vec<IpNetwork>, ConfigError> {
        let mut out = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let network: IpNetwork = text.trim().parse().map_err(|_| {
                self.invalid(&item_key, format!("`{text}` is not an IP address or CIDR"))
            })?;
            if network.network() != network.ip() {
                return Err(self.invalid(
                    &item_key,
                    format!(
                        "`{text}` has host bits set; did you mean `{}/{}`?",
                        network.network(),
                        network.prefix()
                    ),
                ));
            }
            out.push(network);
        }
        Ok(out)
    }
}

fn compile_listeners(ctx: &Ctx, raw: Vec<RawListener>) -> Result<Vec<ListenerConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.invalid("listener", "at least one `[[listener]]` is required"));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, listener) in raw.into_iter().enumerate() {
        let key = format!("listener[{i}]");
        let name = listener.name.unwrap_or_else(|| format!("listener{i}"));
        if !names.insert(name.clone()) {
            return Err(ctx.invalid(&format!("{key}.name"), format!("`{name}` is used twice")));
        }
        let bind = ctx.socket_addr(&format!("{key}.bind"), listener.bind)?;
        let tls = match listener.tls {
            None => None,
            Some(tls) => {
                let cert = tls
                    .cert
                    .ok_or_else(|| ctx.missing(&format!("{key}.tls.cert")))?;
                let key_file = tls
                    .key
                    .ok_or_else(|| ctx.missing(&format!("{key}.tls.key")))?;
                Some(TlsFiles {
                    cert: ctx.resolve(&cert),
                    key: ctx.resolve(&key_file),
                })
            }
        };
        out.push(ListenerConfig { name, bind, tls });
    }
    Ok(out)
}

fn compile_limits(ctx: &Ctx, raw: RawLimits) -> Result<Limits, ConfigError> {
    let max_header_bytes = raw.max_header_bytes.unwrap_or(16 * 1024);
    if !(8192..=1024 * 1024).contains(&max_header_bytes) {
        return Err(ctx.invalid(
            "limits.max_header_bytes",
            format!("must be between 8192 and 1048576, got {max_header_bytes}"),
        ));
    }
    let max_headers = raw.max_headers.unwrap_or(100);
    if !(8..=1000).contains(&max_headers) {
        return Err(ctx.invalid(
            "limits.max_headers",
            format!("must be between 8 and 1000, got {max_headers}"),
        ));
    }
    let max_uri_bytes = raw.max_uri_bytes.unwrap_or(8192);
    if !(256..=max_header_bytes).contains(&max_uri_bytes) {
        return Err(ctx.invalid(
            "limits.max_uri_bytes",
            format!("must be between 256 and limits.max_header_bytes ({max_header_bytes}), got {max_uri_bytes}"),
        ));
    }
    Ok(Limits {
        max_header_bytes,
        max_headers,
        max_uri_bytes,
        tls_handshake_timeout: ctx.duration(
            "limits.tls_handshake_timeout",
            raw.tls_handshake_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        header_read_timeout: ctx.duration(
            "limits.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        idle_timeout: ctx.duration(
            "limits.idle_timeout",
            raw.idle_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        drain_timeout: ctx.duration(
            "limits.drain_timeout",
            raw.drain_timeout.as_deref(),
            Duration::from_secs(30),
        )?,
    })
}

fn compile_routes(ctx: &Ctx, raw: Vec<RawRoute>) -> Result<Vec<RouteConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.invalid("route", "at least one `[[route]]` is required"));
    }
    let mut ids = HashSet::new();
    let mut places = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, route) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("route[{i}].{field}");
        let id = route.id.ok_or_else(|| ctx.missing(&key("id")))?;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ctx.invalid(
                &key("id"),
                format!("`{id}` must be lowercase letters, digits, `-` or `_`"),
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(ctx.invalid(&key("id"), format!("`{id}` is used by another route")));
        }
        let host = compile_route_host(ctx, &key("host"), route.host)?;
        let path = route.path.ok_or_else(|| ctx.missing(&key("path")))?;
        match CanonicalPath::parse(&path, true) {
            Ok(canonical) if canonical.as_str() == path => {}
            Ok(canonical) => {
                return Err(ctx.invalid(
                    &key("path"),
                    format!(
                        "`{path}` is not in canonical form; write `{}`",
                        canonical.as_str()
                    ),
                ));
            }
            Err(err) => {
                return Err(
                    ctx.invalid(&key("path"), format!("`{path}` is not a plain path: {err}"))
                );
            }
        }
        let case_insensitive = route.case_insensitive.unwrap_or(false);
        let place = (
            host.clone(),
            if case_insensitive {
                path.to_ascii_lowercase()
            } else {
                path.clone()
            },
        );
        if !places.insert(place) {
            return Err(ctx.invalid(
                &key("path"),
                format!("host `{host}` already has a route for `{path}`"),
            ));
        }
        let upstream = compile_upstream(ctx, &key("upstream"), route.upstream)?;
        let upstream_ca = match route.upstream_ca {
            None => None,
            Some(_) if upstream.scheme() != Some(&http::uri::Scheme::HTTPS) => {
                return Err(ctx.invalid(
                    &key("upstream_ca"),
                    "only applies to an `https://` upstream",
                ));
            }
            Some(ca) => Some(ctx.resolve(&ca)),
        };
        let access = match route.access.as_deref() {
            Some("public") => Access::Public,
            Some("protected") => Access::Protected,
            Some(other) => {
                return Err(ctx.invalid(
                    &key("access"),
                    format!("must be `public` or `protected`, got `{other}`"),
                ));
            }
            None => return Err(ctx.missing(&key("access"))),
        };
        let resource = match route.resource {
            Some(resource) => {
                if !is_entity_uid(&resource) {
                    return Err(ctx.invalid(
                        &key("resource"),
                        format!("`{resource}` is not a Cedar entity id such as `App::\"wiki\"`"),
                    ));
                }
                Some(resource)
            }
            None if access == Access::Protected => {
                return Err(
                    ctx.invalid(&key("resource"), "is required when access = \"protected\"")
                );
            }
            None => None,
        };
        let allow = match route.allow {
            Some(list) if list.is_empty() => {
                return Err(ctx.invalid(
                    &key("allow"),
                    "an empty allowlist would refuse everyone; remove the key to allow any address",
                ));
            }
            Some(list) => ctx.cidrs(&key("allow"), &list)?,
            None => Vec::new(),
        };
        let actions = compile_actions(ctx, &key("actions"), route.action, route.actions)?;
        if access == Access::Public && (actions.default.is_some() || !actions.by_method.is_empty())
        {
            return Err(ctx.invalid(&key("action"), "only applies to access = \"protected\""));
        }
        out.push(RouteConfig {
            id,
            host,
            path,
            upstream,
            upstream_ca,
            resource,
            access,
            allow,
            websocket: route.websocket.unwrap_or(false),
            case_insensitive,
            preserve_host: route.preserve_host.unwrap_or(true),
            connect_timeout: ctx.duration(
                &key("connect_timeout"),
                route.connect_timeout.as_deref(),
                Duration::from_secs(5),
            )?,
            response_timeout: ctx.duration(
                &key("response_timeout"),
                route.response_timeout.as_deref(),
                Duration::from_secs(60),
            )?,
            actions,
        });
    }
    Ok(out)
}

fn compile_policy(ctx: &Ctx, raw: Option<raw::RawPolicy>) -> Result<PolicyConfig, ConfigError> {
    let raw = raw.ok_or_else(|| ctx.missing("policy.dir"))?;
    let dir = ctx.resolve(&raw.dir.ok_or_else(|| ctx.missing("policy.dir"))?);
    if !dir.is_dir() {
        return Err(ctx.invalid(
            "policy.dir",
            format!("`{}` is not a directory", dir.display()),
        ));
    }
    let bindings = raw.bindings.map(|file| ctx.resolve(&file));
    let environment = match raw.environment.as_deref() {
        None | Some("prod") => Environment::Prod,
        Some("test") => Environment::Test,
        Some("dev") => Environment::Dev,
        Some(other) => {
            return Err(ctx.invalid(
                "policy.environment",
                format!("must be `dev`, `test` or `prod`, got `{other}`"),
            ));
        }
    };
    Ok(PolicyConfig {
        dir,
        bindings,
        environment,
    })
}

fn compile_actions(
    ctx: &Ctx,
    key: &str,
    default: Option<String>,
    by_method: Option<std::collections::BTreeMap<String, String>>,
) -> Result<RouteActions, ConfigError> {
    let valid_action = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    };
    if let Some(action) = &default
        && !valid_action(action)
    {
        return Err(ctx.invalid(
            &key.replace("actions", "action"),
            format!("`{action}` is not an action name (letters, digits, `_ - . :`)"),
        ));
    }
    let mut methods = Vec::new();
    for (method, action) in by_method.unwrap_or_default() {
        let entry = format!("{key}.{method}");
        let parsed = http::Method::from_bytes(method.as_bytes())
            .ok()
            .filter(|_| method.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| {
                ctx.invalid(
                    &entry,
                    format!("`{method}` is not an upper-case HTTP method"),
                )
            })?;
        if !valid_action(&action) {
            return Err(ctx.invalid(
                &entry,
                format!("`{action}` is not an action name (letters, digits, `_ - . :`)"),
            ));
        }
        methods.push((parsed, Arc::from(action)));
    }
    Ok(RouteActions {
        default: default.map(Arc::from),
        by_method: methods,
    })
}

fn compile_route_host(ctx: &Ctx, key: &str, host: Option<String>) -> Result<String, ConfigError> {
    let host = host.ok_or_else(|| ctx.missing(key))?;
    if host == "*" {
        return Ok(host);
    }
    let lower = host.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 253
        && !lower.starts_with('.')
        && !lower.ends_with('.')
        && lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ip_literal = lower
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
        && (lower.starts_with('[') == lower.ends_with(']'));
    if !valid && !ip_literal {
        return Err(ctx.invalid(
            key,
            format!("`{host}` is not a host name (no port, no scheme; `*` matches any host)"),
        ));
    }
    Ok(lower)
}

fn compile_upstream(ctx: &Ctx, key: &str, upstream: Option<String>) -> Result<Uri, ConfigError> {
    let text = upstream.ok_or_else(|| ctx.missing(key))?;
    let uri: Uri = text
        .parse()
        .map_err(|_| ctx.invalid(key, format!("`{text}` is not a URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ctx.invalid(
                key,
                format!("`{text}` must start with `http://` or `https://`"),
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(ctx.invalid(key, format!("`{text}` has no host")));
    };
    if authority.as_str().contains('@') {
        return Err(ctx.invalid(key, format!("`{text}` must not carry credentials")));
    }
    if uri.query().is_some() || !matches!(uri.path(), "" | "/") {
        return Err(ctx.invalid(
            key,
            format!("`{text}` must be scheme://host[:port] only; requests keep their own path"),
        ));
    }
    Ok(uri)
}

fn compile_store(ctx: &Ctx, url: Option<String>) -> Result<StoreUrl, ConfigError> {
    let url = url.ok_or_else(|| ctx.missing("store.url"))?;
    if let Some(file) = url.strip_prefix("sqlite://") {
        if file.is_empty() {
            return Err(ctx.invalid(
                "store.url",
                "`sqlite://` needs a file path, e.g. `sqlite://data/portcullis.db`",
            ));
        }
        return Ok(StoreUrl::Sqlite(ctx.resolve(file)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let host_part = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        if host_part.is_empty() || host_part.starts_with('/') {
            return Err(ctx.invalid(
                "store.url",
                "a PostgreSQL URL needs a host, e.g. `postgres://db.internal/portcullis`",
            ));
        }
        return Ok(StoreUrl::Postgres(url));
    }
    // Do not echo the value: it may be a URL with a password in it.
    Err(ctx.invalid("store.url", "must start with `sqlite://` or `postgres://`"))
}

fn compile_email(ctx: &Ctx, raw: raw::RawEmail) -> Result<EmailConfig, ConfigError> {
    let host = raw.host.ok_or_else(|| ctx.missing("email.host"))?;
    if host.is_empty() || host.contains(['/', ' ', ':']) {
        return Err(ctx.invalid("email.host", format!("`{host}` is not a host name")));
    }
    let security = match raw.security.as_deref().unwrap_or("starttls") {
        "starttls" => SmtpSecurity::StartTls,
        "tls" => SmtpSecurity::Tls,
        "none" => SmtpSecurity::None,
        other => {
            return Err(ctx.invalid(
                "email.security",
                format!("`{other}` is not one of `starttls`, `tls`, `none`"),
            ));
        }
    };
    let loopback = crate::net::is_loopback_host(&host);
    if security == SmtpSecurity::None && !loopback {
        return Err(ctx.invalid(
            "email.security",
            "`none` sends codes in clear text: it is only allowed for a relay on loopback",
        ));
    }
    let port = raw.port.unwrap_or(match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::None => 25,
    });
    let credentials = match (raw.username, raw.password) {
        (None, None) => None,
        (Some(user), Some(password)) => Some((
            user,
            compile_secret_source(ctx, "email.password", Some(password))?,
        )),
        (Some(_), None) => return Err(ctx.missing("email.password")),
        (None, Some(_)) => return Err(ctx.missing("email.username")),
    };
    let from = raw.from.ok_or_else(|| ctx.missing("email.from"))?;
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(ctx.invalid(
            "email.from",
            format!("`{from}` is not an address such as `Portcullis <no-reply@example.com>`"),
        ));
    }
    Ok(EmailConfig {
        host,
        port,
        security,
        credentials,
        from,
        ca: raw.ca.map(|ca| ctx.resolve(&ca)),
    })
}

fn compile_key_source(ctx: &Ctx, source: Option<String>) -> Result<KeySource, ConfigError> {
    compile_secret_source(ctx, "keys.main_key", source)
}

/// A secret's source: `file:PATH` or `env:NAME`, never the secret itself.
fn compile_secret_source(
    ctx: &Ctx,
    key: &str,
    source: Option<String>,
) -> Result<KeySource, ConfigError> {
    let source = source.ok_or_else(|| ctx.missing(key))?;
    if let Some(file) = source.strip_prefix("file:") {
        if file.is_empty() {
            return Err(ctx.invalid(key, "`file:` needs a path"));
        }
        return Ok(KeySource::File(ctx.resolve(file)));
    }
    if let Some(name) = source.strip_prefix("env:") {
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(ctx.invalid(
                key,
                format!("`{name}` is not an environment variable name (A-Z, 0-9, _)"),
            ));
        }
        return Ok(KeySource::Env(name.to_owned()));
    }
    Err(ctx.invalid(
        key,
        "must be `file:PATH` or `env:NAME`; the key itself never goes in this file",
    ))
}

/// Parses `250ms`, `10s`, `5m`, `1h`, `30d`. Zero is refused: a zero timeout is never intended.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits_end);
    let value: u64 = number.parse().ok()?;
    if value == 0 {
        return None;
    }
    match unit {
        "ms" => Some(Duration::from_millis(value)),
        "s" => Some(Duration::from_secs(value)),
        "m" => value.checked_mul(60).map(Duration::from_secs),
        "h" => value.checked_mul(3600).map(Duration::from_secs),
        "d" => value.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

/// `Type::"id"` or `Name::Space::Type::"id"` with a plain quoted id.
fn is_entity_uid(text: &str) -> bool {
    let Some((type_path, quoted)) = text.split_once("::\"") else {
        return false;
    };
    let Some(id) = quoted.strip_suffix('"') else {
        return false;
    };
    let ident = |part: &str| {
        part.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    !id.is_empty() && !id.contains(['"', '\\']) && type_path.split("::").all(ident)
}

/// One line: `line L, column C: message`, from a TOML error's span.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
