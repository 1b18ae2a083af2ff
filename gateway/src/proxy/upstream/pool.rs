//! The kept-alive HTTP/1.1 connections of one route's upstream.
//!
//! A request takes the oldest connection that is ready (or opens one), hands its
//! request to that connection's task, and puts the connection straight back, busy: it
//! becomes ready again by itself once its response has been read to the end. So
//! nothing is spawned per request and a checkout is a few checks under a lock on a
//! short queue. (hyper-util's general pool, used before, hashed a key on every
//! checkout and spawned a task per request to wait for the connection to come back:
//! about a tenth of the instructions of a proxied request.)
//!
//! A connection the upstream closed is dropped when a checkout meets it. One that
//! closes between the checkout and the write hands the request back unsent (hyper
//! returns it), and the request goes on a new connection: no request is sent twice.
//! At most [`KEEP`] connections are kept; one that took no request for [`IDLE`] is
//! closed when a checkout meets it (an upstream's own keep-alive timeout usually
//! closes it first).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::clock;

/// The most connections kept per route.
const KEEP: usize = 64;
/// A kept connection that took no request for this long is closed.
const IDLE: Duration = Duration::from_secs(90);

/// Why an upstream exchange failed, in words for the error page's log line.
pub(super) type Failure = String;

/// One route's connections.
pub(super) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`: where the connector connects (and what it verifies).
    target: Uri,
    conns: Mutex<VecDeque<Kept>>,
}

struct Kept {
    sender: SendRequest<Incoming>,
    /// When it last took a request.
    used: Instant,
}

impl Pool {
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, target: Uri) -> Pool {
        Pool {
            connector,
            target,
            conns: Mutex::new(VecDeque::with_capacity(KEEP)),
        }
    }

    /// Sends `request` (origin-form, with its `Host`) and waits for the response head.
    pub(super) async fn send(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, Failure> {
        let request = match self.checkout() {
            Some(mut sender) => {
                let sending = sender.try_send_request(request);
                self.keep(sender);
                match sending.await {
                    Ok(response) => return Ok(response),
                    Err(mut err) => match err.take_message() {
                        // Never written: it may go on a fresh connection.
                        Some(unsent) => unsent,
                        None => return Err(describe(&err.into_error())),
                    },
                }
            }
            None => request,
        };
        let mut sender = self.connect().await?;
        let sending = sender.try_send_request(request);
        self.keep(sender);
        sending.await.map_err(|err| describe(&err.into_error()))
    }

    /// The oldest kept connection that is ready; closed and stale ones are dropped.
    fn checkout(&self) -> Option<SendRequest<Incoming>> {
        let now = clock::monotonic_now();
        // A poisoned lock only means another request panicked mid-checkout; the
        // queue itself is always consistent, but a fresh connection is safe too.
        let mut conns = self.conns.lock().ok()?;
        for _ in 0..conns.len() {
            let kept = conns.pop_front()?;
            if kept.sender.is_closed() || now.saturating_duration_since(kept.used) > IDLE {
                continue;
            }
            if kept.sender.is_ready() {
                return Some(kept.sender);
            }
            conns.push_back(kept);
        }
        None
    }

    /// Keeps a connection that just took a request, unless it closed or enough are kept.
    fn keep(&self, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut conns) = self.conns.lock()
            && conns.len() < KEEP
        {
            conns.push_back(Kept {
                sender,
                used: clock::monotonic_now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, Failure> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|err| describe(err.as_ref()))?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(|err| describe(err.as_ref()))?;
        let (sender, connection) = Builder::new()
            .handshake(io)
            .await
            .map_err(|err| describe(&err))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// An error with its causes, for the log.
fn describe(err: &(dyn std::error::Error + 'static)) -> Failure {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
