//! The webhook sender: a background task that takes due deliveries from the
//! durable queue in batches (leased, so a crash re-sends rather than loses),
//! POSTs them signed as Stripe signs (`Stripe-Signature: t=…,v1=…`), and
//! records each outcome; non-2xx and connection errors are retried with
//! exponential backoff up to `webhook_max_attempts`. Delivery is at least
//! once. No database transaction is open during a POST.

use std::time::Duration;

use anyhow::Context;
use hmac::{Hmac, Mac};
use rusqlite::{Connection, params};
use sha2::Sha256;
use tokio::task::JoinSet;

use super::Sandbox;
use super::ids::{now_ms, now_s};

/// Deliveries taken from the queue at once.
const BATCH_SIZE: i64 = 64;
/// POSTs under way at once, at the most.
const IN_FLIGHT: usize = 256;
/// A taken delivery is not taken again before this (a crashed sender's lease lapses).
const LEASE_MS: i64 = 60_000;
/// Per-POST timeout; shorter than the lease.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The sender also looks for due deliveries this often without being woken.
const POLL_INTERVAL_MS: u64 = 100;
/// Upper bound of the backoff between two attempts.
const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;
/// Back off this long when the database itself fails.
const ERROR_PAUSE_MS: u64 = 1_000;
const MAX_ERROR_CHARS: usize = 500;

/// The HTTP client for deliveries: no redirects, a timeout on everything.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks) till-sandbox")
        .build()
        .context("building the webhook HTTP client")
}

/// `Stripe-Signature` for `body` sent at unix time `t`, keyed by the whole `whsec_…` secret.
pub fn signature_header(secret: &str, t: i64, body: &str) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
    mac.update(format!("{t}.{body}").as_bytes());
    Ok(format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())))
}

/// Exponential: base, 2×base, 4×base, … capped at an hour.
pub fn backoff_ms(base_ms: u64, attempts_made: u32) -> u64 {
    let factor = 1u64.checked_shl(attempts_made.saturating_sub(1)).unwrap_or(u64::MAX);
    base_ms.saturating_mul(factor).min(MAX_BACKOFF_MS)
}

struct Due {
    id: i64,
    attempts: u32,
    url: String,
    secret: String,
    body: String,
}

enum Outcome {
    Delivered(u16),
    Failed { http_status: Option<u16>, error: String },
}

/// Runs until the runtime stops: keeps up to [`IN_FLIGHT`] POSTs under way,
/// taking more due deliveries as soon as slots free up (no waiting for a
/// whole batch), each outcome recorded as its POST ends.
pub async fn run(sb: Sandbox, client: reqwest::Client) {
    let mut sends: JoinSet<()> = JoinSet::new();
    loop {
        let free = IN_FLIGHT.saturating_sub(sends.len());
        let taken = if free > 0 { take(&sb, &client, &mut sends, free.min(BATCH_SIZE as usize)).await } else { Ok(0) };
        match taken {
            Ok(n) if n > 0 && sends.len() < IN_FLIGHT => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "sandbox webhook delivery failed");
                tokio::time::sleep(Duration::from_millis(ERROR_PAUSE_MS)).await;
            }
        }
        let wake = sb.shared.wake_delivery.notified();
        tokio::select! {
            Some(_) = sends.join_next(), if !sends.is_empty() => {}
            _ = tokio::time::timeout(Duration::from_millis(POLL_INTERVAL_MS), wake) => {}
        }
    }
}

/// Takes up to `limit` due deliveries and starts sending them.
async fn take(sb: &Sandbox, client: &reqwest::Client, sends: &mut JoinSet<()>, limit: usize) -> anyhow::Result<usize> {
    let batch = sb.db.write_sqlite(move |tx| take_due(tx, now_ms(), limit as i64)).await?;
    let count = batch.len();
    for due in batch {
        let (client, sb) = (client.clone(), sb.clone());
        sends.spawn(async move {
            let outcome = send(&client, &due).await;
            let (base_ms, max_attempts) =
                (sb.shared.settings.webhook_retry_base_ms, sb.shared.settings.webhook_max_attempts);
            let recorded = sb.db.write_sqlite(move |tx| record(tx, &due, &outcome, base_ms, max_attempts)).await;
            if let Err(e) = recorded {
                // The lease lapses and the delivery is sent again: at least once.
                tracing::error!(error = format!("{e:#}"), "could not record a webhook delivery");
            }
        });
    }
    Ok(count)
}

fn take_due(conn: &Connection, now: i64, limit: i64) -> anyhow::Result<Vec<Due>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.attempts, w.url, w.secret, e.body
         FROM webhook_deliveries d
         JOIN webhook_endpoints w ON w.id = d.endpoint_id
         JOIN events e ON e.id = d.event_id
         WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1 AND d.lease_until_ms <= ?1
           AND w.status = 'enabled'
         ORDER BY d.next_attempt_ms, d.id
         LIMIT ?2",
    )?;
    let due = stmt
        .query_map(params![now, limit], |r| {
            Ok(Due { id: r.get(0)?, attempts: r.get(1)?, url: r.get(2)?, secret: r.get(3)?, body: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for d in &due {
        conn.execute("UPDATE webhook_deliveries SET lease_until_ms = ?2 WHERE id = ?1", params![d.id, now + LEASE_MS])?;
    }
    Ok(due)
}

async fn send(client: &reqwest::Client, due: &Due) -> Outcome {
    let signature = match signature_header(&due.secret, now_s(), &due.body) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failed { http_status: None, error: format!("{e:#}") };
        }
    };
    let result = client
        .post(&due.url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Stripe-Signature", signature)
        .body(due.body.clone())
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => Outcome::Delivered(response.status().as_u16()),
        Ok(response) => Outcome::Failed {
            http_status: Some(response.status().as_u16()),
            error: format!("HTTP {}", response.status()),
        },
        Err(e) => Outcome::Failed { http_status: None, error: format!("{e}") },
    }
}

fn record(conn: &Connection, due: &Due, outcome: &Outcome, base_ms: u64, max_attempts: u32) -> anyhow::Result<()> {
    let attempts = due.attempts.saturating_add(1);
    let now = now_ms();
    match outcome {
        Outcome::Delivered(status) => {
            conn.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?2, last_http_status = ?3,
                     last_error = NULL, lease_until_ms = 0, updated_ms = ?4
                 WHERE id = ?1 AND status = 'pending'",
                params![due.id, attempts, status, now],
            )?;
        }
        Outcome::Failed { http_status, error } => {
            let final_failure = attempts >= max_attempts;
            let next = now.saturating_add(i64::try_from(backoff_ms(base_ms, attempts)).unwrap_or(i64::MAX));
            let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_attempt_ms = ?4,
                     last_http_status = ?5, last_error = ?6, lease_until_ms = 0, updated_ms = ?7
                 WHERE id = ?1 AND status = 'pending'",
                params![
                    due.id,
                    if final_failure { "failed" } else { "pending" },
                    attempts,
                    next,
                    http_status,
                    error,
                    now
                ],
            )?;
            if final_failure {
                tracing::warn!(delivery = due.id, attempts, "sandbox webhook delivery gave up");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(100, 1), 100);
        assert_eq!(backoff_ms(100, 2), 200);
        assert_eq!(backoff_ms(100, 4), 800);
        assert_eq!(backoff_ms(100, 200), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u64::MAX, 3), MAX_BACKOFF_MS);
    }

    #[test]
    fn signs_like_stripe() {
        // Computed with Python's hmac: HMAC-SHA256(b"whsec_test", b"1700000000.{}").
        let header = signature_header("whsec_test", 1_700_000_000, "{}").unwrap();
        assert_eq!(header, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
    }
}
