//! Merchant events and their webhooks to the shop: every event is stored
//! in the transaction that caused it (outbox) and kept
//! `events.retention_days`, whether or not an endpoint wants it; each
//! endpoint that wants it gets a delivery through the durable queue, which
//! reaches only public addresses (`url_policy`), signed per the Standard
//! Webhooks spec (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`).
//! This module owns `webhook_endpoints`, `merchant_events`,
//! `webhook_deliveries` and `webhook_delivery_attempts`.

use anyhow::Context;
use serde::Serialize;

pub mod deliveries;
pub mod endpoints;
pub mod url_policy;

use crate::config::WebhookSettings;
use crate::context::Ctx;
use crate::db::{Tx, params};
use url_policy::PublicOnly;

pub use deliveries::{DeliveryView, deliver};

pub use endpoints::{EndpointChange, EndpointError, EndpointView, MAX_ENDPOINTS, list_endpoints};

pub const EVENT_TYPES: &[&str] = &[
    "payment_order.authorized",
    "payment_order.succeeded",
    "payment_order.failed",
    "checkout.authorized",
    "checkout.completed",
    "refund.succeeded",
    "refund.failed",
    "payout.paid",
    "payout.failed",
    "dispute.created",
    "dispute.closed",
];

/// The HTTP client settings of deliveries: bounded, no redirects (a
/// redirect would go where no check looked).
pub fn client_builder(settings: &WebhookSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(settings.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("till-webhooks/", env!("CARGO_PKG_VERSION")))
}

/// The client of merchant webhook deliveries: unless
/// `webhooks.allow_private_urls`, it connects to public addresses only,
/// whatever a name resolves to at the time (`url_policy`).
pub fn http_client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let builder = client_builder(settings);
    let builder = if settings.allow_private_urls { builder } else { builder.dns_resolver(PublicOnly) };
    builder.build().context("building the webhook HTTP client")
}

/// `POST /v1/webhook_endpoints`: a new endpoint for a URL that leads to a
/// public address (unless the operator allows private ones).
pub async fn register_endpoint(
    ctx: &Ctx,
    url: String,
    enabled_events: Vec<String>,
    description: Option<String>,
) -> Result<EndpointView, EndpointError> {
    url_policy::check_endpoint_url(&url, ctx.settings.webhooks.allow_private_urls).await?;
    ctx.db.write(move |tx| endpoints::create_endpoint(tx, &url, &enabled_events, description.as_deref())).await
}

/// Changes an endpoint (a new URL is checked as at creation).
pub async fn change_endpoint(ctx: &Ctx, id: String, change: EndpointChange) -> Result<EndpointView, EndpointError> {
    if let Some(url) = &change.url {
        url_policy::check_endpoint_url(url, ctx.settings.webhooks.allow_private_urls).await?;
    }
    ctx.db.write(move |tx| endpoints::update_endpoint(tx, &id, &change, "by the API")).await
}

/// Stores one event and queues its delivery to every endpoint that wants
/// it, inside the caller's transaction. Every event is stored: it can be
/// listed, read and sent again for `events.retention_days`.
pub fn emit(
    tx: &Tx,
    event_type: &str,
    subject_id: &str,
    data: &impl Serialize,
    max_attempts: u32,
) -> anyhow::Result<()> {
    debug_assert!(EVENT_TYPES.contains(&event_type), "{event_type}");
    // Time-ordered (UUIDv7): every event is stored, and its key then lands
    // at the end of the primary key's index rather than on a random page.
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let now = crate::db::now();
    let body = serde_json::json!({"type": event_type, "timestamp": now, "data": data});
    tx.execute(
        "INSERT INTO merchant_events (id, event_type, subject_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        params![id, event_type, subject_id, body.to_string(), now],
    )?;
    for endpoint in endpoints::subscribers(tx, event_type)? {
        deliveries::queue_delivery(tx, &id, &endpoint, max_attempts)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// `msg_…`: the `webhook-id` of each of its deliveries.
    pub id: String,
    pub object: &'static str,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The id of the object it is about (an order, checkout, refund or payout).
    pub subject_id: String,
    pub created_at: String,
    /// The object as it was when the event happened (the `data` of the body sent).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

fn event_from_row(r: &crate::db::Row) -> anyhow::Result<EventView> {
    let payload: serde_json::Value = serde_json::from_str(&r.get::<String>(3)?).context("a stored event's body")?;
    Ok(EventView {
        id: r.get(0)?,
        object: "event",
        event_type: r.get(1)?,
        subject_id: r.get(2)?,
        created_at: r.get(4)?,
        data: payload.get("data").cloned().unwrap_or(serde_json::Value::Null),
    })
}

pub fn event(tx: &Tx, id: &str) -> anyhow::Result<Option<EventView>> {
    tx.query_opt(
        "SELECT id, event_type, subject_id, payload, created_at FROM merchant_events WHERE id = $1",
        params![id],
        event_from_row,
    )
}

/// Which events a list wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    /// `created_at` bounds, in the stored form (RFC 3339, UTC, milliseconds).
    pub created_gte: Option<String>,
    pub created_lt: Option<String>,
    /// An event id: the page starts with the next older event.
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// Events newest first, on `(created_at, id)`: up to `limit`, and whether more follow.
pub fn list_events(tx: &Tx, f: &EventFilter) -> anyhow::Result<(Vec<EventView>, bool)> {
    let cursor: Option<String> = match &f.starting_after {
        None => None,
        Some(id) => match tx
            .query_opt("SELECT created_at FROM merchant_events WHERE id = $1", params![id], |r| r.get::<String>(0))?
        {
            Some(at) => Some(at),
            None => return Ok((Vec::new(), false)),
        },
    };
    let mut rows = tx.query_map(
        "SELECT id, event_type, subject_id, payload, created_at FROM merchant_events
         WHERE (CAST($1 AS TEXT) IS NULL OR event_type = $1)
           AND (CAST($2 AS TEXT) IS NULL OR created_at >= $2)
           AND (CAST($3 AS TEXT) IS NULL OR created_at < $3)
           AND (CAST($4 AS TEXT) IS NULL OR (created_at, id) < ($4, $5))
         ORDER BY created_at DESC, id DESC LIMIT $6",
        params![f.event_type, f.created_gte, f.created_lt, cursor, f.starting_after, i64::from(f.limit) + 1],
        event_from_row,
    )?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    Ok((rows, more))
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("no event {0}")]
    NoEvent(String),
    #[error("no webhook endpoint {0}")]
    NoEndpoint(String),
    #[error("webhook endpoint {0} is disabled")]
    Disabled(String),
    #[error("the event is being sent to webhook endpoint {0} right now; resend it once that attempt ends")]
    InFlight(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Sends a stored event again (same `webhook-id`): to one endpoint, or to
/// every enabled endpoint that wants its type. Returns the deliveries queued.
pub fn resend(
    tx: &Tx,
    event_id: &str,
    endpoint_id: Option<&str>,
    max_attempts: u32,
) -> Result<Vec<DeliveryView>, ResendError> {
    let event = event(tx, event_id)?.ok_or_else(|| ResendError::NoEvent(event_id.to_string()))?;
    let targets = match endpoint_id {
        Some(id) => match endpoints::is_enabled(tx, id)? {
            None => return Err(ResendError::NoEndpoint(id.to_string())),
            Some(false) => return Err(ResendError::Disabled(id.to_string())),
            Some(true) => vec![id.to_string()],
        },
        None => endpoints::subscribers(tx, &event.event_type)?,
    };
    // Nothing is queued while any of them is being sent.
    for endpoint in &targets {
        if deliveries::in_flight(tx, event_id, endpoint)? {
            return Err(ResendError::InFlight(endpoint.clone()));
        }
    }
    for endpoint in &targets {
        deliveries::queue_delivery(tx, event_id, endpoint, max_attempts)?;
    }
    let all = deliveries::deliveries_of_event(tx, event_id)?;
    Ok(all.into_iter().filter(|d| targets.contains(&d.endpoint_id)).collect())
}

/// Rows the retention cleanup removes per run (events, with their
/// deliveries and attempts): a bounded write.
pub const CLEANUP_BATCH: i64 = 5_000;

/// Removes events older than `retention_days`, their deliveries and the
/// deliveries' attempts, oldest first, at most [`CLEANUP_BATCH`] events.
/// Returns how many events went.
pub fn cleanup(tx: &Tx, retention_days: i64) -> anyhow::Result<usize> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(retention_days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let old = "SELECT id FROM merchant_events WHERE created_at < $1 ORDER BY created_at, id LIMIT $2";
    tx.execute(
        &format!(
            "DELETE FROM webhook_delivery_attempts WHERE delivery_id IN
                 (SELECT id FROM webhook_deliveries WHERE event_id IN ({old}))"
        ),
        params![cutoff, CLEANUP_BATCH],
    )?;
    tx.execute(&format!("DELETE FROM webhook_deliveries WHERE event_id IN ({old})"), params![cutoff, CLEANUP_BATCH])?;
    let n = tx.execute(&format!("DELETE FROM merchant_events WHERE id IN ({old})"), params![cutoff, CLEANUP_BATCH])?;
    Ok(n)
}
