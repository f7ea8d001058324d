//! Housekeeping on a fixed tick: expires open checkout sessions past
//! `expires_at`, settles pending refunds and transfers, finishes pending
//! report runs, books the daily
//! payouts once a day is over, and purges idempotency keys older than 24 h.
//! Each object moves in its own short transaction, in bounded batches.

use std::time::Duration;

use chrono::Utc;

use super::ids::{now_ms, now_s};
use super::{Sandbox, checkout, idempotency, refunds, reporting, settlement, transfers};

const TICK_MS: u64 = 250;
/// Objects of each kind moved per tick.
const BATCH: i64 = 100;
/// Idempotency keys are purged this often.
const PURGE_EVERY_MS: i64 = 60_000;

/// Runs until the runtime stops.
pub async fn run(sb: Sandbox) {
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = State::default();
    loop {
        interval.tick().await;
        if let Err(e) = tick(&sb, &mut state).await {
            tracing::error!(error = format!("{e:#}"), "sandbox housekeeping failed");
        }
    }
}

#[derive(Default)]
struct State {
    payouts_booked_before: i64,
    purged_at_ms: i64,
}

async fn tick(sb: &Sandbox, state: &mut State) -> anyhow::Result<()> {
    let sessions = sb.db.run_sqlite(|c| checkout::due_for_expiry(c, now_s(), BATCH)).await?;
    let refunds = sb.db.run_sqlite(|c| refunds::due(c, now_ms(), BATCH)).await?;
    let transfers = sb.db.run_sqlite(|c| transfers::due(c, now_ms(), BATCH)).await?;
    let moved = sessions.len() + refunds.len() + transfers.len();
    for id in sessions {
        let shared = sb.shared.clone();
        sb.db.write_sqlite(move |tx| checkout::expire_open(tx, &shared, &id)).await?;
    }
    for id in refunds {
        let shared = sb.shared.clone();
        sb.db.write_sqlite(move |tx| refunds::settle(tx, &shared, &id)).await?;
    }
    for id in transfers {
        let shared = sb.shared.clone();
        sb.db.write_sqlite(move |tx| transfers::settle(tx, &shared, &id)).await?;
    }
    if moved > 0 {
        sb.shared.wake_delivery.notify_one();
    }
    // Report runs send no events: nothing to wake.
    for id in sb.db.run_sqlite(|c| reporting::due(c, now_ms(), BATCH)).await? {
        sb.db.write_sqlite(move |tx| reporting::finish(tx, &id)).await?;
    }
    let today_start = Utc::now().date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    if let Some(today_start) = today_start.filter(|t| *t > state.payouts_booked_before) {
        sb.db.write_sqlite(move |tx| settlement::book_payouts(tx, today_start)).await?;
        state.payouts_booked_before = today_start;
    }
    if now_ms() - state.purged_at_ms >= PURGE_EVERY_MS {
        sb.db.write_sqlite(|tx| idempotency::purge_expired(tx, now_ms())).await?;
        state.purged_at_ms = now_ms();
    }
    Ok(())
}
