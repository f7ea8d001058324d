//! The scheduled tasks themselves.

use std::time::Duration;

use chrono::SecondsFormat;

use crate::context::Ctx;
use crate::db::{Tx, params};
use crate::payments::model::OrderStatus;
use crate::queue::{self, JobKind};

/// Work looked at per run, so one run stays short however much is stuck.
const BATCH: i64 = 1_000;
/// An order EXECUTING without change this long is asked about at the PSP.
const STUCK_MINUTES: i64 = 10;

fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, serde::Serialize)]
struct NewAlert {
    kind: &'static str,
    subject_id: String,
    message: String,
}

/// The kind of alert an unfinished order raises.
const UNFINISHED_ORDER: &str = "unfinished_order";

/// One alert per order not final after `alerts.unfinished_after_minutes`;
/// alerts of orders that became final are resolved. Returns new alerts.
pub async fn unfinished_alert(ctx: &Ctx) -> anyhow::Result<usize> {
    let cutoff = minutes_ago(ctx.settings.alerts.unfinished_after_minutes);
    let raised = ctx
        .db
        .write(move |tx| -> anyhow::Result<Vec<NewAlert>> {
            for order_id in alerted_orders_now_final(tx)? {
                crate::alerts::resolve(tx, UNFINISHED_ORDER, &order_id, "the order became final")?;
            }
            let mut raised = Vec::new();
            for (id, status, created_at) in unfinished_orders_not_alerted(tx, &cutoff)? {
                let message = format!("payment order {id} is still {status} since {created_at}");
                if crate::alerts::raise(tx, UNFINISHED_ORDER, &id, &message)? {
                    raised.push(NewAlert { kind: UNFINISHED_ORDER, subject_id: id, message });
                }
            }
            Ok(raised)
        })
        .await?;
    post_alerts(ctx, &raised).await;
    Ok(raised.len())
}

// The two scans below read the payments module's orders beside the open
// alerts, in one statement each; they write nothing.

/// Orders with an open "unfinished" alert that are final now.
fn alerted_orders_now_final(tx: &Tx) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT a.subject_id FROM alerts a JOIN payment_orders o ON o.payment_order_id = a.subject_id
         WHERE a.kind = $1 AND a.status = 'open' AND o.payment_order_status IN ($2, $3)",
        params![UNFINISHED_ORDER, OrderStatus::Success.as_str(), OrderStatus::Failed.as_str()],
        |r| r.get(0),
    )
}

/// (order, status, created_at) of up to [`BATCH`] orders not final since
/// before `cutoff` and not alerted yet, oldest first.
fn unfinished_orders_not_alerted(tx: &Tx, cutoff: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    tx.query_map(
        "SELECT o.payment_order_id, o.payment_order_status, o.created_at FROM payment_orders o
         WHERE o.payment_order_status IN ($1, $2) AND o.created_at < $3
           AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = $4
                           AND a.subject_id = o.payment_order_id AND a.status = 'open')
         ORDER BY o.created_at LIMIT $5",
        params![OrderStatus::NotStarted.as_str(), OrderStatus::Executing.as_str(), cutoff, UNFINISHED_ORDER, BATCH],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Sends new alerts to `alerts.webhook_url`, if set. Best effort: the alert
/// is stored and shown whatever happens here.
async fn post_alerts(ctx: &Ctx, alerts: &[NewAlert]) {
    let url = &ctx.settings.alerts.webhook_url;
    if url.is_empty() {
        return;
    }
    for alert in alerts {
        let sent = ctx.alert_http.post(url).timeout(Duration::from_secs(10)).json(alert).send().await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "alerts.webhook_url refused an alert"),
            Err(e) => tracing::warn!(error = %e, "could not POST an alert to alerts.webhook_url"),
        }
    }
}

/// Queues a PSP status read for work stuck waiting on the PSP: token orders
/// and refunds still pending, hosted checkouts whose session must have ended.
pub async fn psp_sync(ctx: &Ctx) -> anyhow::Result<usize> {
    let stuck = minutes_ago(STUCK_MINUTES);
    let expired = minutes_ago(ctx.settings.payments.checkout_expires_minutes + 5);
    let attempts = ctx.settings.queue.max_attempts;
    let queued = ctx
        .db
        .write(move |tx| -> anyhow::Result<usize> {
            let mut work: Vec<(JobKind, String)> = Vec::new();
            let token_orders = stuck_token_orders(tx, &stuck)?;
            work.extend(token_orders.into_iter().map(|id| (JobKind::ChargeOrder, id)));
            let checkouts = ended_hosted_checkouts(tx, &expired)?;
            work.extend(checkouts.into_iter().map(|id| (JobKind::SyncCheckout, id)));
            let refunds = crate::refunds::store::pending_since(tx, &stuck, BATCH)?;
            work.extend(refunds.into_iter().map(|id| (JobKind::SubmitRefund, id)));
            let payouts = crate::payouts::store::unfinished_since(tx, &stuck, BATCH)?;
            work.extend(payouts.into_iter().map(|id| (JobKind::SendPayout, id)));
            let mut n = 0;
            for (kind, id) in work {
                n += usize::from(queue::enqueue_now(tx, kind, &id, attempts)?);
            }
            Ok(n)
        })
        .await?;
    if queued > 0 {
        ctx.queue_wake.notify_one();
    }
    Ok(queued)
}

// Reads of the payments module's tables, which have no query function
// for these scans.

/// Up to [`BATCH`] token orders not final and unchanged since `before`.
fn stuck_token_orders(tx: &Tx, before: &str) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT o.payment_order_id FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
         WHERE o.payment_order_status IN ($1, $2) AND e.payment_method = 'token' AND o.updated_at < $3 LIMIT $4",
        params![OrderStatus::NotStarted.as_str(), OrderStatus::Executing.as_str(), before, BATCH],
        |r| r.get(0),
    )
}

/// Up to [`BATCH`] hosted checkouts not done, with a session, created before `before`.
fn ended_hosted_checkouts(tx: &Tx, before: &str) -> anyhow::Result<Vec<String>> {
    tx.query_map(
        "SELECT checkout_id FROM payment_events
         WHERE is_payment_done = 0 AND payment_method = 'hosted_page' AND psp_session_id IS NOT NULL
           AND created_at < $1 LIMIT $2",
        params![before, BATCH],
        |r| r.get(0),
    )
}

pub async fn idempotency_cleanup(ctx: &Ctx) -> anyhow::Result<usize> {
    // A write (on PostgreSQL `Db::run` is a read-only transaction), of
    // any number of rows: in a transaction of its own.
    ctx.db.write_alone(crate::idempotency::cleanup).await
}

/// Runs `till check`; a violation raises (and keeps open) one alert, a clean
/// ledger resolves it. Returns whether the ledger is sound.
pub async fn ledger_audit(ctx: &Ctx) -> anyhow::Result<bool> {
    let options = crate::ledger::check::Options::of(&ctx.settings);
    let report = ctx.db.run(move |tx| crate::ledger::check::run_with(tx, &options)).await?;
    let summary = report.summary();
    let ok = report.ok;
    ctx.db
        .write(move |tx| -> anyhow::Result<()> {
            if ok {
                crate::alerts::resolve(tx, "ledger_audit", "ledger", "the ledger audit passed again")?;
            } else {
                crate::alerts::raise(tx, "ledger_audit", "ledger", &summary)?;
            }
            Ok(())
        })
        .await?;
    Ok(ok)
}
