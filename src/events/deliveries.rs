//! Deliveries of events to endpoints: one per event and endpoint, each
//! attempt recorded (time, HTTP status, latency, error), retried by the
//! durable queue, sent again on request (same `webhook-id`). An endpoint
//! that has failed every attempt for `webhooks.disable_after_failing_hours`
//! is disabled with an alert.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::context::Ctx;
use crate::db::{Tx, params};
use crate::events::{endpoints, url_policy};
use crate::queue::{self, JobError, JobKind};

/// Attempts shown with a delivery (its latest).
pub const MAX_ATTEMPTS_SHOWN: i64 = 50;

/// Queues the delivery of `event_id` to `endpoint_id`: a new delivery, or
/// the existing one made pending again (a resend). Returns its id.
pub fn queue_delivery(tx: &Tx, event_id: &str, endpoint_id: &str, max_attempts: u32) -> anyhow::Result<i64> {
    let id: i64 = tx.query_value(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, created_at) VALUES ($1, $2, 'pending', $3)
         ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', delivered_at = NULL
         RETURNING id",
        params![event_id, endpoint_id, crate::db::now()],
    )?;
    queue::enqueue_now(tx, JobKind::DeliverWebhook, &id.to_string(), max_attempts)?;
    Ok(id)
}

/// Whether the delivery of `event_id` to `endpoint_id` is being sent right
/// now: a resend then would be taken for the attempt under way (whose
/// outcome decides the delivery's state), so it is refused until it ends.
pub fn in_flight(tx: &Tx, event_id: &str, endpoint_id: &str) -> anyhow::Result<bool> {
    let id: Option<i64> = tx.query_opt(
        "SELECT id FROM webhook_deliveries WHERE event_id = $1 AND endpoint_id = $2",
        params![event_id, endpoint_id],
        |r| r.get(0),
    )?;
    match id {
        Some(id) => queue::is_running(tx, JobKind::DeliverWebhook, &id.to_string()),
        None => Ok(false),
    }
}

struct Delivery {
    url: String,
    endpoint_id: String,
    event_id: String,
    payload: String,
    status: String,
    endpoint_enabled: bool,
    secrets: Vec<String>,
}

fn load_delivery(tx: &Tx, delivery_id: i64) -> anyhow::Result<Option<Delivery>> {
    let row = tx.query_opt(
        "SELECT e.url, e.id, m.id, m.payload, d.status,
                CASE WHEN e.status = 'enabled' AND e.deleted_at IS NULL THEN 1 ELSE 0 END
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         JOIN merchant_events m ON m.id = d.event_id WHERE d.id = $1",
        params![delivery_id],
        |r| {
            Ok(Delivery {
                url: r.get(0)?,
                endpoint_id: r.get(1)?,
                event_id: r.get(2)?,
                payload: r.get(3)?,
                status: r.get(4)?,
                endpoint_enabled: r.get(5)?,
                secrets: Vec::new(),
            })
        },
    )?;
    let Some(mut delivery) = row else { return Ok(None) };
    delivery.secrets = endpoints::signing_secrets(tx, &delivery.endpoint_id)?;
    Ok(Some(delivery))
}

/// The `webhook-signature` header: one `v1,…` per secret that signs now,
/// separated by spaces (Standard Webhooks lets a verifier accept any).
fn signature(delivery: &Delivery, timestamp: i64) -> Result<String, JobError> {
    let mut signatures = Vec::with_capacity(delivery.secrets.len());
    for secret in &delivery.secrets {
        let signed = standardwebhooks::Webhook::new(secret)
            .and_then(|wh| wh.sign(&delivery.event_id, timestamp, delivery.payload.as_bytes()))
            .map_err(|e| JobError::Final(format!("cannot sign with the endpoint's secret: {e}")))?;
        signatures.push(signed);
    }
    Ok(signatures.join(" "))
}

/// What one attempt got.
struct Outcome {
    http_status: Option<u16>,
    error: Option<String>,
    latency_ms: i64,
}

/// Signs and POSTs one delivery: the endpoint's answer, or why there is none.
async fn send(ctx: &Ctx, delivery: &Delivery) -> Result<Outcome, JobError> {
    let started = Instant::now();
    let latency = |started: Instant| i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    // The resolver guards names; an address written in the URL is connected
    // to without one, so it is checked here, at every attempt.
    if !ctx.settings.webhooks.allow_private_urls
        && let Err(refused) = url_policy::check_delivery_url(&delivery.url)
    {
        return Ok(Outcome { http_status: None, error: Some(format!("refused to deliver: {refused}")), latency_ms: 0 });
    }
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signature(delivery, timestamp)?;
    let sent = ctx
        .webhook_http
        .post(&delivery.url)
        .header("Content-Type", "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await;
    let (http_status, error) = match &sent {
        Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
        Ok(resp) => (Some(resp.status().as_u16()), Some(format!("the endpoint answered {}", resp.status()))),
        Err(e) => (None, Some(format!("could not reach the endpoint: {}", with_causes(e)))),
    };
    Ok(Outcome { http_status, error, latency_ms: latency(started) })
}

/// An error with its causes: reqwest's own message names only the URL, the
/// reason (refused, timed out, no public address) is in its sources.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

/// One delivery attempt: 2xx delivers; anything else is retried by the
/// queue (`last_try`: the queue will not try again, the delivery fails).
/// A delivery canceled, delivered, or to an endpoint no longer enabled
/// ends without a request.
pub async fn deliver(ctx: &Ctx, delivery_id: &str, last_try: bool) -> Result<(), JobError> {
    let id: i64 = delivery_id.parse().map_err(|_| JobError::Final(format!("bad delivery id {delivery_id}")))?;
    // A delivery gone was aged out with its event (`events.retention_days`).
    let Some(delivery) = ctx.db.run(move |tx| load_delivery(tx, id)).await? else { return Ok(()) };
    if delivery.status != "pending" {
        return Ok(());
    }
    if !delivery.endpoint_enabled {
        ctx.db.write(move |tx| cancel_delivery(tx, id)).await?;
        return Ok(());
    }
    let outcome = send(ctx, &delivery).await?;
    let error = outcome.error.clone();
    let failing_hours = ctx.settings.webhooks.disable_after_failing_hours;
    let endpoint_id = delivery.endpoint_id.clone();
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            record_attempt(tx, id, &endpoint_id, &outcome, last_try)?;
            if outcome.error.is_some() {
                disable_if_failing(tx, &endpoint_id, failing_hours)?;
            }
            Ok(())
        })
        .await?;
    match error {
        None => Ok(()),
        Some(e) => Err(JobError::Retry(e)),
    }
}

fn cancel_delivery(tx: &Tx, delivery_id: i64) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'canceled' WHERE id = $1 AND status = 'pending'",
        params![delivery_id],
    )?;
    Ok(())
}

/// Records one attempt and what it makes of the delivery: delivered, still
/// pending, or failed after the last try.
fn record_attempt(tx: &Tx, delivery_id: i64, endpoint_id: &str, o: &Outcome, last_try: bool) -> anyhow::Result<()> {
    let now = crate::db::now();
    let error: Option<String> = o.error.as_ref().map(|e| e.chars().take(1_000).collect());
    tx.execute(
        "INSERT INTO webhook_delivery_attempts (delivery_id, endpoint_id, attempted_at, succeeded, http_status,
                                                latency_ms, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![delivery_id, endpoint_id, now, error.is_none(), o.http_status, o.latency_ms, error],
    )
    .context("recording a delivery attempt")?;
    tx.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3,
                status = CASE WHEN status <> 'pending' THEN status WHEN $4 = 1 THEN 'delivered'
                              WHEN $6 = 1 THEN 'failed' ELSE status END,
                delivered_at = CASE WHEN $4 = 1 THEN $5 ELSE delivered_at END
         WHERE id = $1",
        params![delivery_id, o.http_status, error, error.is_none(), now, last_try],
    )?;
    Ok(())
}

/// Disables an endpoint whose every attempt has failed for `hours` (its
/// first failure since its last success is that old), with an alert.
fn disable_if_failing(tx: &Tx, endpoint_id: &str, hours: i64) -> anyhow::Result<()> {
    let health = endpoints::health(tx, endpoint_id)?;
    let first_failure: Option<String> = tx.query_value(
        "SELECT MIN(attempted_at) FROM webhook_delivery_attempts
         WHERE endpoint_id = $1 AND succeeded = 0 AND attempted_at > $2",
        params![endpoint_id, health.last_success_at.as_deref().unwrap_or("")],
    )?;
    let cutoff =
        (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let Some(first_failure) = first_failure.filter(|f| *f <= cutoff) else { return Ok(()) };
    let reason =
        format!("every delivery failed since {first_failure} ({} attempts in a row)", health.failures_in_a_row);
    endpoints::disable(tx, endpoint_id, &reason)?;
    let message = format!("webhook endpoint {endpoint_id} was disabled: {reason}");
    crate::alerts::raise(tx, "webhook_endpoint_disabled", endpoint_id, &message)?;
    tracing::warn!(endpoint = endpoint_id, %reason, "webhook endpoint disabled");
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempted_at: String,
    pub succeeded: bool,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub object: &'static str,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    /// `pending`, `delivered`, `failed` (its retries are spent) or
    /// `canceled` (its endpoint was deleted or disabled).
    pub status: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// When the queue tries it next (unix ms), while it is pending.
    pub next_attempt_at_ms: Option<i64>,
    /// Its attempts, newest first (the latest [`MAX_ATTEMPTS_SHOWN`]).
    pub attempts: Vec<AttemptView>,
}

/// An endpoint's deliveries, newest first, after the delivery
/// `starting_after`: up to `limit`, and whether more follow.
pub fn list_deliveries(
    tx: &Tx,
    endpoint_id: &str,
    starting_after: Option<i64>,
    limit: u32,
) -> anyhow::Result<(Vec<DeliveryView>, bool)> {
    let mut rows = tx.query_map(
        "SELECT d.id, d.event_id, m.event_type, d.endpoint_id, d.status, d.created_at, d.delivered_at
         FROM webhook_deliveries d JOIN merchant_events m ON m.id = d.event_id
         WHERE d.endpoint_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR d.id < $2)
         ORDER BY d.id DESC LIMIT $3",
        params![endpoint_id, starting_after, i64::from(limit) + 1],
        |r| {
            Ok(DeliveryView {
                id: r.get(0)?,
                object: "webhook_delivery",
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                endpoint_id: r.get(3)?,
                status: r.get(4)?,
                created_at: r.get(5)?,
                delivered_at: r.get(6)?,
                next_attempt_at_ms: None,
                attempts: Vec::new(),
            })
        },
    )?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    for d in &mut rows {
        fill_attempts(tx, d)?;
    }
    Ok((rows, more))
}

/// A delivery's attempts and, while it is pending, its next try.
fn fill_attempts(tx: &Tx, d: &mut DeliveryView) -> anyhow::Result<()> {
    d.attempts = tx.query_map(
        "SELECT attempted_at, succeeded, http_status, latency_ms, error FROM webhook_delivery_attempts
         WHERE delivery_id = $1 ORDER BY id DESC LIMIT $2",
        params![d.id, MAX_ATTEMPTS_SHOWN],
        |r| {
            Ok(AttemptView {
                attempted_at: r.get(0)?,
                succeeded: r.get(1)?,
                http_status: r.get(2)?,
                latency_ms: r.get(3)?,
                error: r.get(4)?,
            })
        },
    )?;
    if d.status == "pending" {
        d.next_attempt_at_ms = queue::next_run_ms(tx, JobKind::DeliverWebhook, &d.id.to_string())?;
    }
    Ok(())
}

/// The deliveries of one event, oldest first (one per endpoint at most).
pub fn deliveries_of_event(tx: &Tx, event_id: &str) -> anyhow::Result<Vec<DeliveryView>> {
    let ids: Vec<(i64, String)> = tx.query_map(
        "SELECT id, endpoint_id FROM webhook_deliveries WHERE event_id = $1 ORDER BY id LIMIT $2",
        params![event_id, endpoints::MAX_ENDPOINTS * 4],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, endpoint_id) in ids {
        let (mut page, _) = list_deliveries(tx, &endpoint_id, Some(id + 1), 1)?;
        out.append(&mut page);
    }
    Ok(out)
}
