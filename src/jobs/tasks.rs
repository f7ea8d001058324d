//! The scheduled tasks themselves.

use std::collections::HashSet;
use std::time::Duration;

use chrono::SecondsFormat;

use crate::context::Ctx;
use crate::db::Tx;
use crate::payments::model::Order;
use crate::queue::{self, JobKind};

/// Work looked at per run, so one run stays short however much is stuck.
const BATCH: i64 = 1_000;
/// An order EXECUTING without change this long is asked about at the PSP.
const STUCK_MINUTES: i64 = 10;

fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An alert as `alerts.webhook_url` receives it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewAlert {
    pub kind: &'static str,
    pub subject_id: String,
    pub message: String,
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
            let mut alerted: HashSet<String> = HashSet::new();
            for order_id in crate::alerts::open_subjects(tx, UNFINISHED_ORDER)? {
                if crate::payments::store::order_status(tx, &order_id)?.is_some_and(|s| s.is_final()) {
                    crate::alerts::resolve(tx, UNFINISHED_ORDER, &order_id, "the order became final")?;
                } else {
                    alerted.insert(order_id);
                }
            }
            let mut raised = Vec::new();
            for order in unfinished_orders_not_alerted(tx, &cutoff, &alerted)? {
                let id = order.payment_order_id.to_string();
                let message = format!("payment order {id} is still {} since {}", order.status, order.created_at);
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

/// Up to [`BATCH`] orders not final since before `cutoff` and not in
/// `alerted`, oldest first. At most `alerted.len()` of the oldest unfinished
/// orders are alerted already, so that many more are read to skip them.
fn unfinished_orders_not_alerted(tx: &Tx, cutoff: &str, alerted: &HashSet<String>) -> anyhow::Result<Vec<Order>> {
    let limit = BATCH + i64::try_from(alerted.len())?;
    let orders = crate::payments::store::unfinished_orders_created_before(tx, cutoff, limit)?;
    let not_alerted = orders.into_iter().filter(|o| !alerted.contains(o.payment_order_id.as_str()));
    Ok(not_alerted.take(BATCH as usize).collect())
}

/// Sends new alerts to `alerts.webhook_url`, if set. Best effort: the alert
/// is stored and shown whatever happens here.
pub async fn post_alerts(ctx: &Ctx, alerts: &[NewAlert]) {
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
            let token_orders = crate::payments::store::stale_token_orders(tx, &stuck, BATCH)?;
            work.extend(token_orders.into_iter().map(|id| (JobKind::ChargeOrder, id)));
            let checkouts = crate::payments::store::stale_hosted_checkouts(tx, &expired, BATCH)?;
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

pub async fn idempotency_cleanup(ctx: &Ctx) -> anyhow::Result<usize> {
    // Stored PSP requests and scheduled-run records age out with the keys:
    // a write of any number of rows, in a transaction of its own.
    let removed = ctx
        .db
        .write_alone(|tx| {
            Ok::<_, anyhow::Error>(
                crate::idempotency::cleanup(tx)?
                    + crate::psp::requests::cleanup(tx)?
                    + crate::jobs::lease::cleanup(tx)?,
            )
        })
        .await?;
    Ok(removed + events_cleanup(ctx).await?)
}

/// Batches of old events a run removes at most (`events::CLEANUP_BATCH` each).
const EVENT_CLEANUP_BATCHES: usize = 100;

/// Events past `events.retention_days`, in bounded batches of their own.
pub async fn events_cleanup(ctx: &Ctx) -> anyhow::Result<usize> {
    let days = ctx.settings.events.retention_days;
    let mut removed = 0;
    for _ in 0..EVENT_CLEANUP_BATCHES {
        let n = ctx.db.write_alone(move |tx| crate::events::cleanup(tx, days)).await?;
        removed += n;
        if (n as i64) < crate::events::CLEANUP_BATCH {
            break;
        }
    }
    Ok(removed)
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
