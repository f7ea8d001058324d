//! Merchant events and their webhooks to the shop: endpoints, events stored
//! in the transaction that caused them (outbox), and deliveries through the
//! durable queue, which reach only public addresses (`url_policy`), signed
//! per the Standard Webhooks spec (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`).

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

pub mod url_policy;

use crate::config::WebhookSettings;
use crate::context::Ctx;
use crate::queue::JobError;
use crate::queue::{self, JobKind};
use url_policy::{NotPublic, PublicOnly};

pub const EVENT_TYPES: &[&str] = &[
    "payment_order.succeeded",
    "payment_order.failed",
    "checkout.completed",
    "refund.succeeded",
    "refund.failed",
    "payout.paid",
    "payout.failed",
];
/// Endpoints a merchant may have; each event is delivered to all of them.
pub const MAX_ENDPOINTS: i64 = 16;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub object: &'static str,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub status: String,
    pub created_at: String,
    /// Shown when the endpoint is created, and only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("at most {MAX_ENDPOINTS} webhook endpoints")]
    TooMany,
    #[error(transparent)]
    NotPublic(#[from] NotPublic),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

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
) -> Result<EndpointView, EndpointError> {
    url_policy::check_endpoint_url(&url, ctx.settings.webhooks.allow_private_urls).await?;
    ctx.db.write_raw(move |tx| create_endpoint(tx, &url, &enabled_events)).await
}

pub fn create_endpoint(tx: &Transaction, url: &str, enabled_events: &[String]) -> Result<EndpointView, EndpointError> {
    let count: i64 =
        tx.query_row("SELECT COUNT(*) FROM webhook_endpoints", [], |r| r.get(0)).context("counting endpoints")?;
    if count >= MAX_ENDPOINTS {
        return Err(EndpointError::TooMany);
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
    let view = EndpointView {
        id: format!("we_{}", uuid::Uuid::new_v4().simple()),
        object: "webhook_endpoint",
        url: url.to_string(),
        enabled_events: enabled_events.to_vec(),
        status: "enabled".into(),
        created_at: crate::db::now(),
        secret: Some(secret),
    };
    tx.execute(
        "INSERT INTO webhook_endpoints (id, url, secret, enabled_events, status, created_at)
         VALUES (?1, ?2, ?3, ?4, 'enabled', ?5)",
        params![
            view.id,
            view.url,
            view.secret,
            serde_json::to_string(&view.enabled_events).context("events")?,
            view.created_at
        ],
    )
    .context("storing a webhook endpoint")?;
    Ok(view)
}

pub fn list_endpoints(conn: &Connection) -> anyhow::Result<Vec<EndpointView>> {
    let mut st = conn.prepare_cached(
        "SELECT id, url, enabled_events, status, created_at FROM webhook_endpoints ORDER BY created_at",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(EndpointView {
                id: r.get(0)?,
                object: "webhook_endpoint",
                url: r.get(1)?,
                enabled_events: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                status: r.get(3)?,
                created_at: r.get(4)?,
                secret: None,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether any enabled endpoint wants `event_type`: events nobody will
/// receive are not stored (callers skip building them too).
// seam: transitional: the engine's handle, so that converted callers can pass `tx.raw()`.
pub fn wanted(tx: &Connection, event_type: &str) -> anyhow::Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.status = 'enabled'
               AND EXISTS (SELECT 1 FROM json_each(e.enabled_events) j WHERE j.value IN ('*', ?1)))",
        )?
        .query_row([event_type], |r| r.get(0))?)
}

/// Stores one event and queues its delivery to every endpoint that wants
/// it, inside the caller's transaction.
pub fn emit(
    tx: &Connection, // seam: transitional
    event_type: &str,
    subject_id: &str,
    data: &impl Serialize,
    max_attempts: u32,
) -> anyhow::Result<()> {
    debug_assert!(EVENT_TYPES.contains(&event_type), "{event_type}");
    if !wanted(tx, event_type)? {
        return Ok(());
    }
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({"type": event_type, "timestamp": crate::db::now(), "data": data});
    tx.prepare_cached(
        "INSERT INTO merchant_events (id, event_type, subject_id, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, event_type, subject_id, body.to_string(), crate::db::now()])?;
    let mut st = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, status)
         SELECT ?1, e.id, 'pending' FROM webhook_endpoints e
         WHERE e.status = 'enabled'
           AND EXISTS (SELECT 1 FROM json_each(e.enabled_events) j WHERE j.value IN ('*', ?2))
         RETURNING id",
    )?;
    let deliveries = st.query_map(params![id, event_type], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
    for delivery in deliveries {
        queue::enqueue(tx, JobKind::DeliverWebhook, &delivery.to_string(), 0, max_attempts)?;
    }
    Ok(())
}

struct Delivery {
    url: String,
    secret: String,
    event_id: String,
    payload: String,
    status: String,
}

/// Signs and POSTs one delivery: the endpoint's answer, or why there is none.
async fn send(ctx: &Ctx, delivery: &Delivery) -> Result<(Option<u16>, Option<String>), JobError> {
    // The resolver guards names; an address written in the URL is connected
    // to without one, so it is checked here, at every attempt.
    if !ctx.settings.webhooks.allow_private_urls
        && let Err(refused) = url_policy::check_delivery_url(&delivery.url)
    {
        return Ok((None, Some(format!("refused to deliver: {refused}"))));
    }
    let timestamp = chrono::Utc::now().timestamp();
    let signature = standardwebhooks::Webhook::new(&delivery.secret)
        .and_then(|wh| wh.sign(&delivery.event_id, timestamp, delivery.payload.as_bytes()))
        .map_err(|e| JobError::Final(format!("cannot sign with the endpoint's secret: {e}")))?;
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
    Ok(match &sent {
        Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
        Ok(resp) => (Some(resp.status().as_u16()), Some(format!("the endpoint answered {}", resp.status()))),
        Err(e) => (None, Some(format!("could not reach the endpoint: {}", with_causes(e)))),
    })
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

/// One delivery attempt: 2xx delivers; anything else is retried by the queue.
pub async fn deliver(ctx: &Ctx, delivery_id: &str) -> Result<(), JobError> {
    let id: i64 = delivery_id.parse().map_err(|_| JobError::Final(format!("bad delivery id {delivery_id}")))?;
    let delivery = ctx
        .db
        .run_raw(move |conn| -> anyhow::Result<Option<Delivery>> {
            Ok(conn
                .prepare_cached(
                    "SELECT e.url, e.secret, m.id, m.payload, d.status
                     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                     JOIN merchant_events m ON m.id = d.event_id WHERE d.id = ?1",
                )?
                .query_row([id], |r| {
                    Ok(Delivery {
                        url: r.get(0)?,
                        secret: r.get(1)?,
                        event_id: r.get(2)?,
                        payload: r.get(3)?,
                        status: r.get(4)?,
                    })
                })
                .optional()?)
        })
        .await?
        .ok_or_else(|| JobError::Final(format!("delivery {id} does not exist")))?;
    if delivery.status == "delivered" {
        return Ok(());
    }
    let (status, error) = send(ctx, &delivery).await?;
    let delivered = error.is_none();
    let recorded = error.clone();
    ctx.db
        .write_raw(move |tx| -> anyhow::Result<()> {
            tx.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                        status = CASE WHEN ?4 THEN 'delivered' ELSE status END,
                        delivered_at = CASE WHEN ?4 THEN ?5 ELSE delivered_at END
                 WHERE id = ?1",
                params![id, status, recorded, delivered, crate::db::now()],
            )?;
            Ok(())
        })
        .await?;
    match error {
        None => Ok(()),
        Some(e) => Err(JobError::Retry(e)),
    }
}
