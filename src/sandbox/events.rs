//! Events and webhook endpoints. An event is stored with the exact JSON that
//! will be delivered, and its deliveries (one per subscribed endpoint, as
//! the webhook faults decide: dropped, once, twice, delayed) are queued in the
//! same transaction that changed the object (an outbox); `delivery` sends them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Shared;
use super::error::StripeError;
use super::ids::{new_id, now_ms, now_s, with_random};
use super::params::{Metadata, Params};
use super::reply::Reply;

/// The API version written on events.
pub const API_VERSION: &str = "2024-06-20";
/// Stripe's limit of webhook endpoints per account.
pub const MAX_ENDPOINTS: i64 = 16;
pub const MAX_URL_CHARS: usize = 2_048;
const MAX_EVENT_TYPE_CHARS: usize = 100;

#[derive(Serialize)]
struct EventData<'a, T: Serialize> {
    object: &'a T,
}

#[derive(Serialize)]
struct EventRequest {
    id: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    id: &'a str,
    object: &'static str,
    api_version: &'static str,
    created: i64,
    data: EventData<'a, T>,
    livemode: bool,
    pending_webhooks: usize,
    request: EventRequest,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// Records an event about `object` and queues its deliveries; returns its id.
pub fn emit<T: Serialize>(conn: &Connection, shared: &Shared, kind: &str, object: &T) -> anyhow::Result<String> {
    let endpoints = subscribed_endpoints(conn, kind)?;
    let id = new_id("evt_");
    let created = now_s();
    let event = Event {
        id: &id,
        object: "event",
        api_version: API_VERSION,
        created,
        data: EventData { object },
        livemode: false,
        pending_webhooks: endpoints.len(),
        request: EventRequest { id: None, idempotency_key: None },
        kind,
    };
    let body = serde_json::to_string(&event)?;
    conn.execute(
        "INSERT INTO events (id, type, created, body) VALUES (?1, ?2, ?3, ?4)",
        params![id, kind, created, body],
    )?;
    for endpoint_id in endpoints {
        queue_deliveries(conn, shared, &id, &endpoint_id)?;
    }
    Ok(id)
}

fn queue_deliveries(conn: &Connection, shared: &Shared, event_id: &str, endpoint_id: &str) -> anyhow::Result<()> {
    let plan = shared.faults.draw_delivery();
    let now = now_ms();
    let (status, copies) = if plan.copies == 0 { ("dropped", 1) } else { ("pending", plan.copies) };
    let delay_ms = i64::try_from(plan.delay_ms).unwrap_or(0);
    for _ in 0..copies {
        conn.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_ms, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![event_id, endpoint_id, status, now + delay_ms, now],
        )?;
    }
    if plan.copies != 1 {
        tracing::info!(event_id, endpoint_id, copies = plan.copies, "sandbox fault: webhook drop/duplicate");
    }
    Ok(())
}

fn subscribed_endpoints(conn: &Connection, kind: &str) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id, enabled_events FROM webhook_endpoints WHERE status = 'enabled' ORDER BY created, id LIMIT ?1",
    )?;
    let rows = stmt.query_map([MAX_ENDPOINTS], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, events) = row?;
        let events: Vec<String> = serde_json::from_str(&events)?;
        if events.iter().any(|e| e == "*" || e == kind) {
            out.push(id);
        }
    }
    Ok(out)
}

/// A webhook endpoint as Stripe shows it; `secret` only when created.
#[derive(Debug, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub object: &'static str,
    pub api_version: Option<String>,
    pub created: i64,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    pub livemode: bool,
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub status: String,
    pub url: String,
}

/// Creates or updates an endpoint with a known id and secret (till's own).
pub fn upsert_endpoint(conn: &Connection, id: &str, url: &str, secret: &str) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, secret, enabled_events, status, created)
         VALUES (?1, ?2, ?3, '[\"*\"]', 'enabled', ?4)
         ON CONFLICT (id) DO UPDATE SET url = ?2, secret = ?3, status = 'enabled'",
        params![id, url, secret, now_s()],
    )?;
    Ok(())
}

/// `POST /v1/webhook_endpoints` (`url`, `enabled_events[]`).
pub fn create_endpoint(conn: &Connection, _shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let url = parse_url(&params, "url")?.ok_or_else(|| StripeError::missing("url"))?;
    let events = params.str_list("enabled_events")?;
    if events.is_empty() {
        return Err(StripeError::missing("enabled_events"));
    }
    for (i, event) in events.iter().enumerate() {
        let valid = event == "*"
            || (event.len() <= MAX_EVENT_TYPE_CHARS
                && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'));
        if !valid {
            return Err(StripeError::invalid(
                "parameter_invalid",
                format!("enabled_events[{i}]"),
                format!("Invalid enabled_events[{i}]: not an event type."),
            ));
        }
    }
    let count: i64 =
        conn.query_row("SELECT COUNT(*) FROM webhook_endpoints", [], |r| r.get(0)).map_err(anyhow::Error::from)?;
    if count >= MAX_ENDPOINTS {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "url",
            format!("You have reached the maximum of {MAX_ENDPOINTS} webhook endpoints."),
        ));
    }
    let id = new_id("we_");
    let secret = with_random("whsec_", 32);
    let enabled = serde_json::to_string(&events).map_err(anyhow::Error::from)?;
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, secret, enabled_events, status, created)
         VALUES (?1, ?2, ?3, ?4, 'enabled', ?5)",
        params![id, url, secret, enabled, now_s()],
    )
    .map_err(anyhow::Error::from)?;
    let mut endpoint = load_endpoint(conn, &id)?.ok_or_else(|| anyhow::anyhow!("endpoint vanished"))?;
    endpoint.secret = Some(secret);
    Reply::ok(&endpoint)
}

/// `GET /v1/webhook_endpoints/{id}` (without the secret, as Stripe).
pub fn retrieve_endpoint(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    let endpoint = load_endpoint(conn, id)?.ok_or_else(|| StripeError::no_such("webhook endpoint", id, Some("id")))?;
    Reply::ok(&endpoint)
}

fn load_endpoint(conn: &Connection, id: &str) -> anyhow::Result<Option<WebhookEndpoint>> {
    let row = conn
        .query_row("SELECT id, url, enabled_events, status, created FROM webhook_endpoints WHERE id = ?1", [id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let Some((id, url, events, status, created)) = row else {
        return Ok(None);
    };
    Ok(Some(WebhookEndpoint {
        id,
        object: "webhook_endpoint",
        api_version: None,
        created,
        description: None,
        enabled_events: serde_json::from_str(&events)?,
        livemode: false,
        metadata: Metadata::new(),
        secret: None,
        status,
        url,
    }))
}

/// An optional http(s) URL parameter.
pub fn parse_url(params: &Params, key: &str) -> Result<Option<String>, StripeError> {
    let Some(url) = params.opt_str(key)? else {
        return Ok(None);
    };
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && url.chars().count() <= MAX_URL_CHARS
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(StripeError::invalid(
            "url_invalid",
            params.name(key),
            format!("Not a valid URL: {}", params.name(key)),
        ));
    }
    Ok(Some(url))
}
