//! Prometheus metrics, served in Prometheus' text format at `GET /metrics`
//! on `[metrics] bind` (never the public port). Counters and histograms
//! are recorded where things happen (HTTP requests, PSP calls, group
//! commits); gauges of what is in the database (orders by status, the job
//! queue, dead letters, the webhook backlog, open alerts) are read when
//! scraped, by `http::metrics`. This module is a leaf: it names nothing of
//! till's, so every layer, `db` included, may record into it.
//! `docs/OPERATIONS.md` lists every metric and what to do about it.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) of HTTP requests and PSP calls: 1 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Commit latency buckets (seconds): an fsync takes from 0.1 ms to a second.
const COMMIT_BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Writes per group commit: 1 to the writer's cap of 512.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub psp_calls: IntCounterVec,
    pub psp_duration: HistogramVec,
    pub commit_batch: HistogramVec,
    pub commit_duration: HistogramVec,
    pub write_reruns: prometheus::IntCounter,
    pub orders: IntGaugeVec,
    pub jobs: IntGaugeVec,
    pub dead_letters: IntGauge,
    pub webhook_backlog: IntGauge,
    pub alerts_open: IntGauge,
    pub storage_available: IntGauge,
}

/// The process's metrics: one registry, however many servers it runs.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new().expect("the metrics are well-formed"));

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let gauges = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
        let m = Metrics {
            registry: Registry::new(),
            http_requests: counter(
                "till_http_requests_total",
                "HTTP requests answered by till's server, by route pattern, method and status",
                &["route", "method", "status"],
            )?,
            http_duration: histogram(
                "till_http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern and method",
                &LATENCY_BUCKETS,
                &["route", "method"],
            )?,
            psp_calls: counter(
                "till_psp_calls_total",
                "Calls to the PSP by operation and outcome (ok, refused, rejected, unknown)",
                &["operation", "outcome"],
            )?,
            psp_duration: histogram(
                "till_psp_call_duration_seconds",
                "Time of a call to the PSP, by operation",
                &LATENCY_BUCKETS,
                &["operation"],
            )?,
            commit_batch: histogram(
                "till_db_commit_batch_size",
                "Writes committed together in one transaction (group commit; 1 on PostgreSQL)",
                &BATCH_BUCKETS,
                &["engine"],
            )?,
            commit_duration: histogram(
                "till_db_commit_duration_seconds",
                "Time of a write transaction's COMMIT (SQLite: the fsync of its batch)",
                &COMMIT_BUCKETS,
                &["engine"],
            )?,
            write_reruns: prometheus::IntCounter::new(
                "till_db_write_reruns_total",
                "PostgreSQL writes run again after a serialization failure or a deadlock (contention)",
            )?,
            orders: gauges("till_payment_orders", "Payment orders by status (final ones only grow)", &["status"])?,
            jobs: gauges("till_queue_jobs", "Jobs of the durable queue by kind and status", &["kind", "status"])?,
            dead_letters: IntGauge::new("till_dead_letters", "Dead-lettered jobs waiting for a person")?,
            webhook_backlog: IntGauge::new(
                "till_webhook_backlog",
                "Merchant webhook deliveries not yet delivered (queued or being sent)",
            )?,
            alerts_open: IntGauge::new("till_alerts_open", "Open alerts (the dashboard's alerts page)")?,
            storage_available: IntGauge::new(
                "till_storage_available",
                "1 while the database takes writes, 0 while writes fail for want of storage",
            )?,
        };
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry.register(Box::new(m.psp_calls.clone()))?;
        m.registry.register(Box::new(m.psp_duration.clone()))?;
        m.registry.register(Box::new(m.commit_batch.clone()))?;
        m.registry.register(Box::new(m.commit_duration.clone()))?;
        m.registry.register(Box::new(m.write_reruns.clone()))?;
        m.registry.register(Box::new(m.orders.clone()))?;
        m.registry.register(Box::new(m.jobs.clone()))?;
        m.registry.register(Box::new(m.dead_letters.clone()))?;
        m.registry.register(Box::new(m.webhook_backlog.clone()))?;
        m.registry.register(Box::new(m.alerts_open.clone()))?;
        m.registry.register(Box::new(m.storage_available.clone()))?;
        Ok(m)
    }

    /// Every metric in Prometheus' text exposition format.
    pub fn encode(&self) -> prometheus::Result<String> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One group commit (or PostgreSQL write) of `writes` writes, committed in `took`.
pub fn record_commit(engine: &str, writes: usize, took: Duration) {
    METRICS.commit_batch.with_label_values(&[engine]).observe(writes as f64);
    METRICS.commit_duration.with_label_values(&[engine]).observe(took.as_secs_f64());
}
