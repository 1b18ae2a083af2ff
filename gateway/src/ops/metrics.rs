//! Prometheus metrics: request counts and latency by route and outcome.
//!
//! The recorder is process-wide; it is installed once by the server and rendered by the
//! internal listener. Labels are bounded: the route id comes from the configuration
//! (`-` before a route is known) and the outcome is `proxied` or a stable reject code.
//!
//! A proxied request on a known route, the common case, records through handles its
//! route registered on first use ([`RouteMetrics`]), so it neither builds label strings
//! nor looks the series up in the registry.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

const REQUESTS: &str = "portcullis_requests_total";
const DURATION: &str = "portcullis_request_duration_seconds";
const RELOADS: &str = "portcullis_tls_reloads_total";
const POLICY_RELOADS: &str = "portcullis_policy_reloads_total";
const POLICY_REVISION: &str = "portcullis_policy_revision_info";

/// Latency buckets in seconds, from sub-millisecond gateway answers to slow upstreams.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// How often recorded latencies are folded into their buckets. Until then the recorder
/// holds each one as a raw sample: without upkeep, a gateway nobody scrapes grows by
/// every request it serves.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), &BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            metrics::describe_counter!(REQUESTS, "Requests served, by route and outcome");
            metrics::describe_histogram!(
                DURATION,
                metrics::Unit::Seconds,
                "Time from request to response head, by route and outcome"
            );
            metrics::describe_counter!(RELOADS, "TLS certificate reloads, by listener and result");
            metrics::describe_counter!(POLICY_RELOADS, "Policy bundle reloads, by result");
            metrics::describe_gauge!(POLICY_REVISION, "1 for the policy bundle revision in force");
            Some(handle)
        })
        .as_ref()
}

/// Folds recorded samples into the histograms every few seconds, until `shutdown`.
pub async fn upkeep(mut shutdown: watch::Receiver<bool>) {
    let Some(handle) = HANDLE.get().and_then(Option::as_ref) else {
        return;
    };
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}

/// The text exposition of every metric, for `/metrics`.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// The outcome label of a request that reached its upstream.
pub const PROXIED: &str = "proxied";

/// Counts one request and records its latency.
pub fn record_request(route: &str, outcome: &'static str, elapsed: Duration) {
    let labels = [("route", route.to_owned()), ("outcome", outcome.to_owned())];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(elapsed.as_secs_f64());
}

/// One route's request metrics, with the `proxied` series registered once.
///
/// Registration is lazy (on the first proxied request) so that it happens after the
/// server has installed the recorder; handles taken before that would record nowhere.
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    proxied: OnceLock<(Counter, Histogram)>,
}

impl RouteMetrics {
    /// Metrics for the route with id `route`.
    pub fn new(route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            proxied: OnceLock::new(),
        }
    }

    /// Counts one request on this route and records its latency.
    pub fn record(&self, outcome: &'static str, elapsed: Duration) {
        if outcome != PROXIED {
            record_request(&self.route, outcome, elapsed);
            return;
        }
        let (requests, duration) = self.proxied.get_or_init(|| {
            let labels = [
                ("route", self.route.clone()),
                ("outcome", PROXIED.to_owned()),
            ];
            (
                metrics::counter!(REQUESTS, &labels),
                metrics::histogram!(DURATION, &labels),
            )
        });
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

/// Counts one TLS certificate reload attempt.
pub fn record_tls_reload(listener: &str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(RELOADS, "listener" => listener.to_owned(), "result" => result).increment(1);
}

/// Counts one policy reload attempt.
pub fn record_policy_reload(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(POLICY_RELOADS, "result" => result).increment(1);
}

/// Marks `current` as the revision in force (and `previous`, if any, as not).
pub fn record_policy_revision(previous: Option<&str>, current: &str) {
    if let Some(previous) = previous.filter(|previous| *previous != current) {
        metrics::gauge!(POLICY_REVISION, "revision" => previous.to_owned()).set(0.0);
    }
    metrics::gauge!(POLICY_REVISION, "revision" => current.to_owned()).set(1.0);
}
