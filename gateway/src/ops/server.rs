//! The serve loop: bind every listener, serve until SIGTERM or SIGINT, reload TLS
//! certificates on SIGHUP, and on shutdown stop accepting, let in-flight requests finish
//! (bounded by the drain timeout) and return.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::{internal, metrics};
use crate::authz::reload::{self, WatchError};
use crate::authz::{ActivePolicy, PolicyError, load_snapshot, route_resources};
use crate::config::Config;
use crate::crypto::{CryptoError, MainKeyBox, SecretBox, SigningKey, load_main_key};
use crate::net::listener::{self, ListenerCtx};
use crate::net::tls::{self, ReloadableCert, TlsError};
use crate::net::workers::{Workers, WorkersError};
use crate::proxy::pipeline::{Gateway, GatewayError};
use crate::proxy::route::RouteTable;
use crate::proxy::upstream::UpstreamError;
use crate::store::{Store, StoreError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener's address could not be bound.
    #[error("listener `{listener}`: cannot bind {addr}: {source}")]
    Bind {
        /// The listener name.
        listener: String,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener's TLS files could not be loaded.
    #[error("listener `{listener}`: {source}")]
    Tls {
        /// The listener name.
        listener: String,
        /// The TLS error.
        source: TlsError,
    },
    /// An upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The hot-path state could not be built.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The policy bundle (or the bindings file) was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policy folder cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The main key could not be loaded.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The serving threads could not start.
    #[error(transparent)]
    Workers(#[from] WorkersError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Checks everything `serve` would load besides binding sockets: TLS files, the policy
/// bundle (loaded, validated, tested), the bindings file and upstream clients.
/// `check-config` uses it.
pub fn preflight(config: &Config) -> Result<(), ServeError> {
    let snapshot = load_snapshot(
        &config.policy.dir,
        config.policy.bindings.as_deref(),
        &route_resources(config),
    )?;
    tracing::debug!(policy.revision = %snapshot.engine().revision(), "policy bundle verified");
    for listener in &config.listeners {
        if let Some(files) = &listener.tls {
            tls::server_config(files).map_err(|source| ServeError::Tls {
                listener: listener.name.clone(),
                source,
            })?;
        }
    }
    RouteTable::build(&config.routes, config.unknown_host_status, config.workers)?;
    Ok(())
}

/// Serves until a termination signal, then drains.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    metrics::install();
    let policy = Arc::new(ActivePolicy::load(
        &config.policy,
        route_resources(&config),
    )?);
    tracing::info!(policy.revision = %policy.revision(), "policy bundle loaded");
    let store = Store::connect(&config.store).await?;
    store.migrate().await?;
    tracing::info!(store = ?store.backend(), "store ready");
    // The main key seals secrets at rest and derives the assertion signing key.
    let key = load_main_key(&config.main_key, &|name| std::env::var(name).ok())?;
    let secrets: Arc<dyn SecretBox> = Arc::new(MainKeyBox::new(&key));
    let signing = SigningKey::derive(&key)?;
    let gateway = Arc::new(Gateway::new(
        &config,
        Arc::clone(&policy),
        store,
        secrets,
        signing,
    )?);
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (tracker, mut drained) = mpsc::channel::<()>(1);
    let mut certs: Vec<(String, Arc<ReloadableCert>)> = Vec::new();
    let workers = Arc::new(Workers::start(config.workers)?);
    tracing::info!(workers = workers.count(), "serving threads started");

    for listener in &config.listeners {
        let tcp = TcpListener::bind(listener.bind)
            .await
            .map_err(|source| ServeError::Bind {
                listener: listener.name.clone(),
                addr: listener.bind,
                source,
            })?;
        let acceptor = match &listener.tls {
            None => None,
            Some(files) => {
                let (server_config, cert) =
                    tls::server_config(files).map_err(|source| ServeError::Tls {
                        listener: listener.name.clone(),
                        source,
                    })?;
                certs.push((listener.name.clone(), cert));
                Some(TlsAcceptor::from(server_config))
            }
        };
        let addr = tcp.local_addr().unwrap_or(listener.bind);
        tracing::info!(listener = %listener.name, %addr, tls = acceptor.is_some(), "listening");
        let ctx = ListenerCtx {
            gateway: Arc::clone(&gateway),
            limits: config.limits.clone(),
            shutdown: shutdown_rx.clone(),
            tracker: tracker.clone(),
        };
        tokio::spawn(listener::serve(tcp, acceptor, ctx, Arc::clone(&workers)));
    }
    if let Some(bind) = config.internal {
        let tcp = TcpListener::bind(bind)
            .await
            .map_err(|source| ServeError::Bind {
                listener: "internal".into(),
                addr: bind,
                source,
            })?;
        tracing::info!(listener = "internal", addr = %bind, "listening");
        tokio::spawn(internal::serve(
            tcp,
            Arc::clone(&gateway),
            shutdown_rx.clone(),
        ));
    }
    drop(tracker);
    reload::spawn(Arc::clone(&policy), shutdown_rx.clone())?;
    tokio::spawn(metrics::upkeep(shutdown_rx.clone()));
    tracing::info!(routes = config.routes.len(), "portcullis ready");

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                reload_certificates(&certs);
                // A refused bundle is logged and counted; the last good one keeps serving.
                let _ = policy.reload();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!(drain_timeout = ?config.limits.drain_timeout, "shutting down: draining connections");
    gateway.start_draining();
    // Receivers only observe the change; a send error means nobody is left to tell.
    let _ = shutdown_tx.send(true);
    match tokio::time::timeout(config.limits.drain_timeout, drained.recv()).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
    // The accept loops have ended with the shutdown signal, so this is the last owner;
    // if one is somehow still running, its threads simply end with the process.
    if let Some(workers) = Arc::into_inner(workers) {
        workers.stop();
    }
    Ok(())
}

fn reload_certificates(certs: &[(String, Arc<ReloadableCert>)]) {
    if certs.is_empty() {
        tracing::info!("SIGHUP: no TLS listener to reload");
    }
    for (listener, cert) in certs {
        match cert.reload() {
            Ok(()) => {
                metrics::record_tls_reload(listener, true);
                tracing::info!(listener = %listener, cert = %cert.cert_path().display(), "TLS certificate reloaded");
            }
            Err(err) => {
                metrics::record_tls_reload(listener, false);
                tracing::error!(listener = %listener, error = %err, "TLS certificate reload failed; keeping the current one");
            }
        }
    }
}
