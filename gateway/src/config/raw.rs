//! The configuration file as written: serde types mirroring the TOML, nothing validated yet.
//!
//! Every table rejects unknown keys so that a typo is an error, never a silently ignored
//! setting. [`super::Config::from_raw`] turns this into the validated form.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub(crate) version: Option<u32>,
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<RawListener>,
    pub(crate) internal: Option<RawInternal>,
    #[serde(default)]
    pub(crate) network: RawNetwork,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) runtime: RawRuntime,
    #[serde(default)]
    pub(crate) identity: RawIdentity,
    pub(crate) store: Option<RawStore>,
    pub(crate) policy: Option<RawPolicy>,
    pub(crate) keys: Option<RawKeys>,
    pub(crate) login: Option<RawLogin>,
    pub(crate) email: Option<RawEmail>,
    #[serde(default)]
    pub(crate) sso: super::sso::RawSso,
    #[serde(default)]
    pub(crate) passwords: RawPasswords,
    #[serde(default)]
    pub(crate) sessions: RawSessions,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<RawRoute>,
}

/// `[[listener]]`: a socket that serves proxied traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub(crate) name: Option<String>,
    pub(crate) bind: Option<String>,
    pub(crate) tls: Option<RawTls>,
}

/// `tls = { cert = "...", key = "..." }` inside a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

/// `[internal]`: the operator-only listener for metrics and probes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInternal {
    pub(crate) bind: Option<String>,
}

/// `[network]`: who is trusted to report client addresses, and unknown-host handling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub(crate) trusted_proxies: Option<Vec<String>>,
    pub(crate) unknown_host_status: Option<u16>,
    pub(crate) reject_path_parameters: Option<bool>,
}

/// `[limits]`: sizes and timeouts on the client side.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) max_headers: Option<usize>,
    pub(crate) max_uri_bytes: Option<usize>,
    pub(crate) tls_handshake_timeout: Option<String>,
    pub(crate) header_read_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) drain_timeout: Option<String>,
}

/// `[runtime]`: the threads that serve proxied traffic.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub(crate) workers: Option<usize>,
}

/// `[identity]`: headers the gateway owns towards upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub(crate) strip_headers: Option<Vec<String>>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub(crate) url: Option<String>,
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub(crate) dir: Option<String>,
    pub(crate) bindings: Option<String>,
    pub(crate) environment: Option<String>,
}

/// `[keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    pub(crate) main_key: Option<String>,
}

/// `[login]`: where browser logins land.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub(crate) organization: Option<String>,
    pub(crate) workspace: Option<String>,
}

/// `[email]`: the SMTP server that sends one-time sign-in codes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) security: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) ca: Option<String>,
}

/// `[passwords]`: argon2id cost, and how many threads hash.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswords {
    pub(crate) memory_kib: Option<u32>,
    pub(crate) iterations: Option<u32>,
    pub(crate) parallelism: Option<u32>,
    pub(crate) threads: Option<usize>,
}

/// `[sessions]`: deployment-wide default timeouts (stores may only shorten them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub(crate) idle_timeout: Option<String>,
    pub(crate) absolute_lifetime: Option<String>,
}

/// `[[route]]`: host + path prefix → upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub(crate) id: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) upstream_ca: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) access: Option<String>,
    pub(crate) allow: Option<Vec<String>>,
    pub(crate) websocket: Option<bool>,
    pub(crate) case_insensitive: Option<bool>,
    pub(crate) preserve_host: Option<bool>,
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_timeout: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) actions: Option<std::collections::BTreeMap<String, String>>,
}
