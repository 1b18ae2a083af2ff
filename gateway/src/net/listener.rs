//! Accepting client connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! Each connection gets the configured bounds (header bytes and count, header read
//! timeout, TLS handshake timeout) and an idle timeout: when no byte has moved for that
//! long, the connection is asked to close gracefully, and closed outright one idle
//! period later. On shutdown, listeners stop accepting and every connection is asked
//! to finish its in-flight requests and close.

use std::convert::Infallible;
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::framing::{FramingFlag, FramingIo};
use super::http1;
use super::idle::{Activity, ActivityIo, until_idle};
use super::watched::{self, First};
use super::workers::Workers;
use crate::config::Limits;
use crate::proxy::pipeline::{ConnInfo, Gateway, handle};
use crate::proxy::request::ClientRequest;
use crate::proxy::with_all_headers;

/// What every connection task of one listener shares.
#[derive(Clone)]
pub struct ListenerCtx {
    /// The hot-path state.
    pub gateway: Arc<Gateway>,
    /// Client-side bounds.
    pub limits: Limits,
    /// Flips to `true` when the process starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Held by every connection; the receiver sees the channel close once all are gone.
    pub tracker: mpsc::Sender<()>,
}

/// Accepts connections until shutdown, and hands each to a serving thread, where it
/// stays until it closes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut ctx: ListenerCtx,
    workers: Arc<Workers>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // The socket leaves this runtime's reactor for the worker's.
                Ok((stream, peer)) => match stream.into_std() {
                    Ok(stream) => {
                        let ctx = ctx.clone();
                        let tls = tls.clone();
                        workers.spawn(move || async move {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => connection(stream, peer, tls, ctx).await,
                                Err(err) => tracing::warn!(client.addr = %peer, error = %err, "cannot register connection"),
                            }
                        });
                    }
                    Err(err) => tracing::warn!(client.addr = %peer, error = %err, "cannot hand over connection"),
                },
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = ctx.shutdown.changed() => return,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: ListenerCtx,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "set_nodelay failed");
    }
    let framing = FramingFlag::default();
    let Some(acceptor) = tls else {
        serve_connection(stream, ConnInfo::new(peer, false, framing), false, ctx).await;
        return;
    };
    match tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            serve_connection(stream, ConnInfo::new(peer, true, framing), h2, ctx).await;
        }
        Ok(Err(err)) => tracing::debug!(client.addr = %peer, error = %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(client.addr = %peer, "TLS handshake timed out"),
    }
}

/// Serves one connection: HTTP/1.1 requests without a body by the gateway's own
/// server ([`http1`]), the rest of the connection by hyper once a request needs it
/// (and all of it for HTTP/2 negotiated by ALPN).
async fn serve_connection<S>(stream: S, conn: ConnInfo, h2: bool, mut ctx: ListenerCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = ActivityIo::new(stream);
    let activity = io.activity();
    let mut buf = BytesMut::new();
    let mut closing = false;
    if !h2 {
        let state = http1::ConnState::default();
        let served = http1::serve(&mut io, &mut buf, &ctx.gateway, &conn, &ctx.limits, &state);
        tokio::pin!(served);
        let next = supervise(
            served,
            &activity,
            ctx.limits.idle_timeout,
            &mut ctx.shutdown,
            &mut closing,
            conn.peer,
            |_| {
                // Between requests there is nothing to finish: the connection just goes.
                if state.is_between_requests() {
                    return false;
                }
                state.close_after_response();
                true
            },
        )
        .await;
        if next != Some(http1::Next::HandOff) {
            return;
        }
    }
    let max_head = ctx.limits.max_header_bytes;
    let replay = http1::Replay::new(buf.freeze(), io.into_inner());
    let io = ActivityIo::resume(
        FramingIo::new(replay, max_head, conn.framing.clone()),
        activity,
    );
    serve_io(io, conn, closing, ctx).await;
}

async fn serve_io<I>(io: ActivityIo<I>, conn: ConnInfo, mut closing: bool, mut ctx: ListenerCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = io.activity();
    let gateway = Arc::clone(&ctx.gateway);
    let peer = conn.peer;
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let gateway = Arc::clone(&gateway);
        let conn = conn.clone();
        async move {
            let request = ClientRequest::from_hyper(request);
            // hyper writes heads from the map alone.
            Ok::<_, Infallible>(with_all_headers(handle(&gateway, &conn, request).await))
        }
    });
    let builder = http_builder(&ctx.limits);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    let ended = supervise(
        connection,
        &activity,
        ctx.limits.idle_timeout,
        &mut ctx.shutdown,
        &mut closing,
        peer,
        |connection| {
            connection.graceful_shutdown();
            true
        },
    )
    .await;
    if let Some(Err(err)) = ended {
        tracing::debug!(client.addr = %peer, error = %err, "connection ended with error");
    }
}

/// Drives `connection` to its end, or drops it. On shutdown and after an idle timeout
/// it is asked to wind down (`wind_down` returns `false` when it may simply be dropped
/// instead); one idle period after an idle wind-down it is dropped anyway. `closing`
/// says whether it was asked to wind down, on entry and on return. `None`: dropped.
async fn supervise<F: Future>(
    mut connection: Pin<&mut F>,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
    closing: &mut bool,
    peer: std::net::SocketAddr,
    mut wind_down: impl FnMut(Pin<&mut F>) -> bool,
) -> Option<F::Output> {
    let mut hard_stop: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        // Polled only when one of them woke the task (`watched`), not on every read
        // and write of the connection.
        let watcher = async {
            tokio::select! {
                _ = shutdown.changed(), if !*closing => Watch::Shutdown,
                () = until_idle(activity, idle_timeout), if hard_stop.is_none() => Watch::Idle,
                () = async { match hard_stop.as_mut() { Some(sleep) => sleep.await, None => pending().await } } => Watch::HardStop,
            }
        };
        match watched::first(connection.as_mut(), watcher).await {
            First::Main(output) => return Some(output),
            First::Watcher(Watch::Shutdown) => {
                *closing = true;
                if !wind_down(connection.as_mut()) {
                    return None;
                }
            }
            First::Watcher(Watch::Idle) => {
                *closing = true;
                if !wind_down(connection.as_mut()) {
                    tracing::debug!(client.addr = %peer, "idle connection closed");
                    return None;
                }
                hard_stop = Some(Box::pin(tokio::time::sleep(idle_timeout)));
            }
            First::Watcher(Watch::HardStop) => {
                tracing::debug!(client.addr = %peer, "idle connection closed");
                return None;
            }
        }
    }
}

/// What a connection's watcher saw.
enum Watch {
    Shutdown,
    Idle,
    HardStop,
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}
