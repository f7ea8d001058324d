//! The shop's webhook endpoints, managed like Stripe's: created with the
//! events they want, read, changed, disabled, deleted (kept for the
//! history of their deliveries, gone from the API), and their signing
//! secret rotated (the old one signs beside the new one for a while).

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;

use crate::db::{Row, Tx, params};
use crate::events::EVENT_TYPES;
use crate::events::url_policy::NotPublic;

/// Endpoints a merchant may have (deleted ones do not count).
pub const MAX_ENDPOINTS: i64 = 16;
/// What an endpoint's description may hold.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long the secret replaced by a rotation keeps signing beside the new one.
pub const PREVIOUS_SECRET_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub object: &'static str,
    pub url: String,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why it is disabled: `by the API`, `by staff`, or the failures that disabled it.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Shown when the endpoint is created and when its secret is rotated, and only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until when (unix ms) the secret a rotation replaced still signs beside the new one.
    pub previous_secret_expires_at_ms: Option<i64>,
    pub health: Health,
}

/// How an endpoint's deliveries have gone, from their attempts.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    /// Attempts that failed since the last success.
    pub failures_in_a_row: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("at most {MAX_ENDPOINTS} webhook endpoints")]
    TooMany,
    #[error(transparent)]
    NotPublic(#[from] NotPublic),
    #[error("no webhook endpoint {0}")]
    NotFound(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The events an endpoint wants, checked: 1 to all of [`EVENT_TYPES`], or `["*"]`.
pub fn parse_enabled_events(events: Vec<String>) -> Result<Vec<String>, (String, String)> {
    if events.is_empty() || events.len() > EVENT_TYPES.len() {
        return Err((
            format!("enabled_events must list 1 to {} event types, or [\"*\"]", EVENT_TYPES.len()),
            "enabled_events".into(),
        ));
    }
    if let Some(i) = events.iter().position(|e| e != "*" && !EVENT_TYPES.contains(&e.as_str())) {
        return Err((
            format!("enabled_events[{i}] is not one of {}", EVENT_TYPES.join(", ")),
            format!("enabled_events[{i}]"),
        ));
    }
    let mut events = events;
    events.dedup();
    Ok(events)
}

/// An endpoint's description, checked: at most [`MAX_DESCRIPTION_CHARS`], no
/// control characters; empty clears it.
pub fn parse_description(raw: &str) -> Result<Option<String>, String> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"));
    }
    if raw.chars().any(char::is_control) {
        return Err("description must not hold control characters".into());
    }
    Ok((!raw.trim().is_empty()).then(|| raw.to_string()))
}

fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

pub fn create_endpoint(
    tx: &Tx,
    url: &str,
    enabled_events: &[String],
    description: Option<&str>,
) -> Result<EndpointView, EndpointError> {
    let count: i64 = tx
        .query_value("SELECT COUNT(*) FROM webhook_endpoints WHERE deleted_at IS NULL", params![])
        .context("counting endpoints")?;
    if count >= MAX_ENDPOINTS {
        return Err(EndpointError::TooMany);
    }
    let id = format!("we_{}", uuid::Uuid::new_v4().simple());
    let secret = new_secret();
    let now = crate::db::now();
    tx.execute(
        "INSERT INTO webhook_endpoints (id, url, secret, enabled_events, status, created_at, updated_at, description)
         VALUES ($1, $2, $3, $4, 'enabled', $5, $5, $6)",
        params![id, url, secret, serde_json::to_string(enabled_events).context("events")?, now, description],
    )
    .context("storing a webhook endpoint")?;
    let mut view = endpoint(tx, &id)?.context("the endpoint just stored")?;
    view.secret = Some(secret);
    Ok(view)
}

/// The columns an [`EndpointView`] is read from; `$1` is now (unix ms),
/// which decides whether a rotated-out secret still signs.
macro_rules! endpoint_columns {
    () => {
        "SELECT id, url, description, enabled_events, status, disabled_reason, created_at, updated_at,
                CASE WHEN previous_secret_expires_at_ms > $1 THEN previous_secret_expires_at_ms END
         FROM webhook_endpoints"
    };
}

fn endpoint_from_row(r: &Row) -> anyhow::Result<EndpointView> {
    Ok(EndpointView {
        id: r.get(0)?,
        object: "webhook_endpoint",
        url: r.get(1)?,
        description: r.get(2)?,
        enabled_events: serde_json::from_str(&r.get::<String>(3)?).unwrap_or_default(),
        status: r.get(4)?,
        disabled_reason: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        secret: None,
        previous_secret_expires_at_ms: r.get(8)?,
        health: Health::default(),
    })
}

fn with_health(tx: &Tx, mut view: EndpointView) -> anyhow::Result<EndpointView> {
    view.health = health(tx, &view.id)?;
    Ok(view)
}

/// One endpoint that is not deleted.
pub fn endpoint(tx: &Tx, id: &str) -> anyhow::Result<Option<EndpointView>> {
    let view = tx.query_opt(
        concat!(endpoint_columns!(), " WHERE id = $2 AND deleted_at IS NULL"),
        params![crate::db::now_ms(), id],
        endpoint_from_row,
    )?;
    view.map(|v| with_health(tx, v)).transpose()
}

/// The endpoints that are not deleted, oldest first (at most [`MAX_ENDPOINTS`]).
pub fn list_endpoints(tx: &Tx) -> anyhow::Result<Vec<EndpointView>> {
    let views = tx.query_map(
        concat!(endpoint_columns!(), " WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT $2"),
        params![crate::db::now_ms(), MAX_ENDPOINTS],
        endpoint_from_row,
    )?;
    views.into_iter().map(|v| with_health(tx, v)).collect()
}

/// An endpoint's health from its attempts: three index lookups on
/// `webhook_delivery_attempts(endpoint_id, succeeded, attempted_at)`.
pub fn health(tx: &Tx, endpoint_id: &str) -> anyhow::Result<Health> {
    let last = |succeeded: bool| -> anyhow::Result<Option<String>> {
        tx.query_value(
            "SELECT MAX(attempted_at) FROM webhook_delivery_attempts WHERE endpoint_id = $1 AND succeeded = $2",
            params![endpoint_id, succeeded],
        )
    };
    let last_success_at = last(true)?;
    let last_failure_at = last(false)?;
    let failures_in_a_row = tx.query_value(
        "SELECT COUNT(*) FROM webhook_delivery_attempts
         WHERE endpoint_id = $1 AND succeeded = 0 AND attempted_at > $2",
        params![endpoint_id, last_success_at.as_deref().unwrap_or("")],
    )?;
    Ok(Health { last_success_at, last_failure_at, failures_in_a_row })
}

/// What may change on an endpoint; None leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    /// Some(None) clears it.
    pub description: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// Applies a change; disabling cancels the endpoint's pending deliveries
/// (an event can be sent again with a resend once it is enabled).
pub fn update_endpoint(tx: &Tx, id: &str, change: &EndpointChange, by: &str) -> Result<EndpointView, EndpointError> {
    let events = change.enabled_events.as_ref().map(serde_json::to_string).transpose().context("events")?;
    let n = tx.execute(
        "UPDATE webhook_endpoints SET url = COALESCE($2, url), enabled_events = COALESCE($3, enabled_events),
                description = CASE WHEN $4 = 1 THEN $5 ELSE description END, updated_at = $6
         WHERE id = $1 AND deleted_at IS NULL",
        params![
            id,
            change.url,
            events,
            change.description.is_some(),
            change.description.clone().flatten(),
            crate::db::now()
        ],
    )?;
    if n == 0 {
        return Err(EndpointError::NotFound(id.to_string()));
    }
    match change.disabled {
        Some(true) => disable(tx, id, &format!("disabled {by}"))?,
        Some(false) => {
            tx.execute(
                "UPDATE webhook_endpoints SET status = 'enabled', disabled_reason = NULL WHERE id = $1",
                params![id],
            )?;
        }
        None => {}
    }
    Ok(endpoint(tx, id)?.context("the endpoint just changed")?)
}

/// Disables an endpoint and cancels what was still to be delivered to it.
pub fn disable(tx: &Tx, id: &str, reason: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, updated_at = $3
         WHERE id = $1 AND status = 'enabled'",
        params![id, reason, crate::db::now()],
    )?;
    cancel_pending(tx, id)?;
    Ok(())
}

/// Deletes an endpoint: gone from the API and sent nothing more; its
/// pending deliveries are canceled (not dead-lettered), its history kept.
pub fn delete_endpoint(tx: &Tx, id: &str) -> Result<(), EndpointError> {
    let n = tx.execute(
        "UPDATE webhook_endpoints SET deleted_at = $2, updated_at = $2, status = 'disabled', disabled_reason = 'deleted'
         WHERE id = $1 AND deleted_at IS NULL",
        params![id, crate::db::now()],
    )?;
    if n == 0 {
        return Err(EndpointError::NotFound(id.to_string()));
    }
    cancel_pending(tx, id)?;
    Ok(())
}

/// A new signing secret; the one it replaces keeps signing beside it for
/// [`PREVIOUS_SECRET_MS`], so the shop can roll its verifier over.
pub fn rotate_secret(tx: &Tx, id: &str) -> Result<EndpointView, EndpointError> {
    let secret = new_secret();
    let n = tx.execute(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at_ms = $3, secret = $2,
                updated_at = $4
         WHERE id = $1 AND deleted_at IS NULL",
        params![id, secret, crate::db::now_ms() + PREVIOUS_SECRET_MS, crate::db::now()],
    )?;
    if n == 0 {
        return Err(EndpointError::NotFound(id.to_string()));
    }
    let mut view = endpoint(tx, id)?.context("the endpoint just rotated")?;
    view.secret = Some(secret);
    Ok(view)
}

/// The secrets a delivery is signed with now: the endpoint's, then the
/// one a rotation replaced while it still signs.
pub fn signing_secrets(tx: &Tx, id: &str) -> anyhow::Result<Vec<String>> {
    let row: Option<(String, Option<String>, Option<i64>)> = tx.query_opt(
        "SELECT secret, previous_secret, previous_secret_expires_at_ms FROM webhook_endpoints WHERE id = $1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((secret, previous, until_ms)) = row else { return Ok(Vec::new()) };
    let mut secrets = vec![secret];
    if let (Some(previous), Some(until_ms)) = (previous, until_ms)
        && until_ms > crate::db::now_ms()
    {
        secrets.push(previous);
    }
    Ok(secrets)
}

/// The enabled endpoints that want `event_type` (listed it, or `*`), in
/// the order they were created. At most [`MAX_ENDPOINTS`] rows are read;
/// the event lists are matched here rather than in SQL, where every
/// engine spells JSON arrays its own way.
pub fn subscribers(tx: &Tx, event_type: &str) -> anyhow::Result<Vec<String>> {
    let enabled: Vec<(String, String)> = tx.query_map(
        "SELECT id, enabled_events FROM webhook_endpoints
         WHERE status = 'enabled' AND deleted_at IS NULL ORDER BY created_at, id LIMIT $1",
        params![MAX_ENDPOINTS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(enabled
        .into_iter()
        .filter(|(_, events)| {
            serde_json::from_str::<Vec<String>>(events)
                .is_ok_and(|events| events.iter().any(|e| e == "*" || e == event_type))
        })
        .map(|(id, _)| id)
        .collect())
}

/// Whether the endpoint exists (not deleted) and is enabled.
pub fn is_enabled(tx: &Tx, id: &str) -> anyhow::Result<Option<bool>> {
    tx.query_opt("SELECT status FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL", params![id], |r| {
        Ok(r.get::<String>(0)? == "enabled")
    })
}

/// Cancels what is still to be delivered to an endpoint (deleted or
/// disabled): its jobs find the deliveries canceled and end quietly.
pub fn cancel_pending(tx: &Tx, endpoint_id: &str) -> anyhow::Result<usize> {
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'canceled' WHERE endpoint_id = $1 AND status = 'pending'",
        params![endpoint_id],
    )
}
