//! The scheduled tasks themselves.

use std::time::Duration;

use chrono::SecondsFormat;
use rusqlite::params;

use crate::context::Ctx;
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

/// One alert per order not final after `alerts.unfinished_after_minutes`;
/// alerts of orders that became final are resolved. Returns new alerts.
pub async fn unfinished_alert(ctx: &Ctx) -> anyhow::Result<usize> {
    let cutoff = minutes_ago(ctx.settings.alerts.unfinished_after_minutes);
    let raised = ctx
        .db
        .write_raw(move |tx| -> anyhow::Result<Vec<NewAlert>> {
            tx.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = ?1, resolution = 'the order became final'
                 WHERE kind = 'unfinished_order' AND status = 'open'
                   AND subject_id IN (SELECT payment_order_id FROM payment_orders
                                      WHERE payment_order_status IN ('SUCCESS', 'FAILED'))",
                [crate::db::now()],
            )?;
            let mut st = tx.prepare(
                "SELECT payment_order_id, payment_order_status, created_at FROM payment_orders
                 WHERE payment_order_status IN ('NOT_STARTED', 'EXECUTING') AND created_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'unfinished_order'
                                   AND a.subject_id = payment_order_id AND a.status = 'open')
                 ORDER BY created_at LIMIT ?2",
            )?;
            let stuck = st
                .query_map(params![cutoff, BATCH], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut raised = Vec::new();
            for (id, status, created_at) in stuck {
                let message = format!("payment order {id} is still {status} since {created_at}");
                if crate::alerts::raise(tx, "unfinished_order", &id, &message)? {
                    raised.push(NewAlert { kind: "unfinished_order", subject_id: id, message });
                }
            }
            Ok(raised)
        })
        .await?;
    post_alerts(ctx, &raised).await;
    Ok(raised.len())
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
        .write_raw(move |tx| -> anyhow::Result<usize> {
            let mut work: Vec<(JobKind, String)> = Vec::new();
            let mut collect = |sql: &str, arg: &str, kind: JobKind| -> anyhow::Result<()> {
                let mut st = tx.prepare(sql)?;
                for id in st.query_map(params![arg, BATCH], |r| r.get::<_, String>(0))? {
                    work.push((kind, id?));
                }
                Ok(())
            };
            collect(
                "SELECT o.payment_order_id FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
                 WHERE o.payment_order_status IN ('NOT_STARTED', 'EXECUTING') AND e.payment_method = 'token'
                   AND o.updated_at < ?1 LIMIT ?2",
                &stuck,
                JobKind::ChargeOrder,
            )?;
            collect(
                "SELECT checkout_id FROM payment_events
                 WHERE is_payment_done = 0 AND payment_method = 'hosted_page' AND psp_session_id IS NOT NULL
                   AND created_at < ?1 LIMIT ?2",
                &expired,
                JobKind::SyncCheckout,
            )?;
            collect(
                "SELECT refund_id FROM refunds WHERE status = 'PENDING' AND updated_at < ?1 LIMIT ?2",
                &stuck,
                JobKind::SubmitRefund,
            )?;
            collect(
                "SELECT payout_id FROM payouts WHERE status IN ('PENDING', 'IN_TRANSIT') AND updated_at < ?1 LIMIT ?2",
                &stuck,
                JobKind::SendPayout,
            )?;
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
    ctx.db.run(crate::idempotency::cleanup).await
}

/// Runs `till check`; a violation raises (and keeps open) one alert, a clean
/// ledger resolves it. Returns whether the ledger is sound.
pub async fn ledger_audit(ctx: &Ctx) -> anyhow::Result<bool> {
    let options = crate::ledger::check::Options::of(&ctx.settings);
    let db = ctx.db.clone();
    let report =
        tokio::task::spawn_blocking(move || db.read_snapshot(|tx| crate::ledger::check::run_with(tx, &options)))
            .await??;
    let summary = report.summary();
    let ok = report.ok;
    ctx.db
        .write_raw(move |tx| -> anyhow::Result<()> {
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
