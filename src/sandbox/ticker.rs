//! Housekeeping on a fixed tick: expires open checkout sessions past
//! `expires_at`, settles pending refunds and transfers, cancels manual
//! authorizations older than `authorization_days`, opens the disputes of
//! the dispute test card's captured charges, decides submitted dispute
//! evidence and loses disputes left past `due_by`, finishes pending report
//! runs, books the daily payouts once a day is over, and purges idempotency
//! keys older than 24 h. Each object moves in its own short transaction, in
//! bounded batches. Faults never apply here: they model the API's failures.

use std::time::Duration;

use chrono::Utc;
use rusqlite::Connection;

use super::ids::{now_ms, now_s};
use super::{
    Sandbox, Shared, checkout, disputes, idempotency, payment_intents, refunds, reporting, settlement, transfers,
};

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
    if move_due_objects(sb).await? > 0 {
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

/// Moves every object whose time has come (each step sends events); how many.
async fn move_due_objects(sb: &Sandbox) -> anyhow::Result<usize> {
    let days = sb.shared.settings.authorization_days;
    let moved = [
        each(
            sb,
            |c| checkout::due_for_expiry(c, now_s(), BATCH),
            |tx, s, id| checkout::expire_open(tx, s, id).map(drop),
        )
        .await?,
        each(sb, |c| refunds::due(c, now_ms(), BATCH), refunds::settle).await?,
        each(sb, |c| transfers::due(c, now_ms(), BATCH), transfers::settle).await?,
        each(
            sb,
            move |c| payment_intents::due_for_expiry(c, days, now_ms(), BATCH),
            |tx, s, id| payment_intents::cancel_open(tx, s, id, Some(payment_intents::EXPIRED_REASON)).map(drop),
        )
        .await?,
        each(
            sb,
            |c| payment_intents::disputes_due(c, now_ms(), BATCH),
            |tx, s, id| disputes::open(tx, s, id, now_ms()).map(drop),
        )
        .await?,
        each(sb, |c| disputes::due_for_decision(c, now_ms(), BATCH), disputes::decide).await?,
        each(sb, |c| disputes::past_due(c, now_s(), BATCH), |tx, s, id| disputes::close_past_due(tx, s, id, now_s()))
            .await?,
    ];
    Ok(moved.iter().sum())
}

/// Runs `step` on each id `due` lists, each in its own write transaction;
/// how many were listed.
async fn each<D, S>(sb: &Sandbox, due: D, step: S) -> anyhow::Result<usize>
where
    D: FnOnce(&Connection) -> anyhow::Result<Vec<String>> + Send + 'static,
    S: Fn(&Connection, &Shared, &str) -> anyhow::Result<()> + Copy + Send + 'static,
{
    let ids = sb.db.run_sqlite(move |c| due(c)).await?;
    let listed = ids.len();
    for id in ids {
        let shared = sb.shared.clone();
        sb.db.write_sqlite(move |tx| step(tx, &shared, &id)).await?;
    }
    Ok(listed)
}
