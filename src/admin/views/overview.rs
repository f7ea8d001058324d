//! `/admin`: how money is flowing today and in the last 14 days, and what
//! needs a person (stuck orders, authorizations to capture, open disputes,
//! dead letters, open alerts).

use chrono::{Duration, Utc};

use crate::admin::format;
use crate::admin::views::chart::{self, Chart};
use crate::admin::views::ops::{self, DeadLetterRow};
use crate::admin::views::reconciliation::{self, ExceptionRow};
use crate::db::{Tx, params};

pub const CHART_DAYS: i64 = 14;
/// Currencies charted; the others are still in the totals.
const MAX_CHARTS: usize = 4;
const LISTED: u32 = 8;

#[derive(Debug, Clone)]
pub struct CurrencyToday {
    pub volume: String,
    pub payments: i64,
    /// Its currency's code, for the count of payments under the amounts.
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct StuckRow {
    pub payment_order_id: String,
    pub checkout_id: String,
    pub seller_id: String,
    pub amount: String,
    pub status: String,
    pub created_at: String,
}

/// What buyers authorized in one currency and the shop has not captured yet.
#[derive(Debug, Clone)]
pub struct AuthorizedRow {
    pub currency: String,
    pub orders: i64,
    pub amount: String,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub message: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub today: String,
    pub volume_today: Vec<CurrencyToday>,
    pub succeeded_today: i64,
    pub failed_today: i64,
    pub open_today: i64,
    /// Of today's orders that ended, the share that succeeded ("96.4 %").
    pub success_rate: Option<String>,
    pub charts: Vec<Chart>,
    pub stuck_after_minutes: i64,
    pub stuck_count: i64,
    pub stuck: Vec<StuckRow>,
    /// AUTHORIZED orders per currency, and the soonest `capture_before` of them.
    pub authorized: Vec<AuthorizedRow>,
    pub authorized_count: i64,
    pub capture_before: Option<String>,
    /// Disputes needing a response or under review, and the soonest evidence deadline.
    pub disputes_open: i64,
    pub dispute_due: Option<String>,
    pub dispute_urgent: bool,
    pub dead_count: i64,
    pub dead: Vec<DeadLetterRow>,
    pub alert_count: i64,
    pub alerts: Vec<AlertRow>,
    pub exception_count: i64,
    pub exceptions: Vec<ExceptionRow>,
}

fn day_start(days_ago: i64) -> String {
    let day = (Utc::now() - Duration::days(days_ago)).date_naive();
    format!("{day}T00:00:00.000Z")
}

pub fn load(tx: &Tx, stuck_after_minutes: i64) -> anyhow::Result<Overview> {
    let today = day_start(0);
    let (succeeded_today, failed_today, open_today) = outcomes_since(tx, &today)?;
    let decided = succeeded_today + failed_today;
    let success_rate = (decided > 0).then(|| {
        // Tenths of a percent in integers, rounded half up.
        let permille = (succeeded_today * 1000 * 2 + decided) / (decided * 2);
        format!("{}.{} %", permille / 10, permille % 10)
    });
    let (volume_today, charts) = volumes(tx)?;
    let cutoff =
        (Utc::now() - Duration::minutes(stuck_after_minutes)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (stuck_count, stuck) = stuck_orders(tx, &cutoff)?;
    let (authorized, capture_before) = authorized(tx)?;
    let (disputes_open, dispute_due, dispute_urgent) = crate::admin::views::disputes::open_summary(tx)?;
    let (dead_count, dead) = (ops::dead_letter_count(tx)?, ops::dead_letters(tx, LISTED)?);
    let alert_count = crate::alerts::open_count(tx)?;
    let (exception_count, exceptions) = reconciliation::open_exceptions(tx, LISTED)?;
    let alerts = crate::alerts::list_open(tx, LISTED)?
        .into_iter()
        .map(|a| AlertRow { id: a.id, kind: a.kind, message: a.message, created_at: format::time(&a.created_at) })
        .collect();
    Ok(Overview {
        today: today[..10].to_string(),
        volume_today,
        succeeded_today,
        failed_today,
        open_today,
        success_rate,
        charts,
        stuck_after_minutes,
        stuck_count,
        stuck,
        authorized_count: authorized.iter().map(|a| a.orders).sum(),
        authorized,
        capture_before,
        disputes_open,
        dispute_due,
        dispute_urgent,
        dead_count,
        dead,
        alert_count,
        alerts,
        exception_count,
        exceptions,
    })
}

/// Today's orders (created since `since`) by outcome: succeeded, failed, not final.
fn outcomes_since(tx: &Tx, since: &str) -> anyhow::Result<(i64, i64, i64)> {
    let rows: Vec<(String, i64)> = tx.query_map(
        "SELECT payment_order_status, COUNT(*) FROM payment_orders WHERE created_at >= $1
         GROUP BY payment_order_status",
        params![since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut counts = (0, 0, 0);
    for row in rows {
        match row {
            (s, n) if s == "SUCCESS" => counts.0 += n,
            (s, n) if s == "FAILED" => counts.1 += n,
            (_, n) => counts.2 += n,
        }
    }
    Ok(counts)
}

/// Today's volume per currency and the 14-day charts, from one indexed scan.
/// A stored time is RFC 3339 text in UTC, so its first ten characters are
/// its UTC day on every engine.
fn volumes(tx: &Tx) -> anyhow::Result<(Vec<CurrencyToday>, Vec<Chart>)> {
    let days: Vec<String> = (0..CHART_DAYS).rev().map(|ago| day_start(ago)[..10].to_string()).collect();
    let rows: Vec<(String, String, i64, i64)> = tx.query_map(
        "SELECT substr(succeeded_at, 1, 10), currency, SUM(captured_minor), COUNT(*)
         FROM payment_orders WHERE payment_order_status = 'SUCCESS' AND succeeded_at >= $1
         GROUP BY substr(succeeded_at, 1, 10), currency",
        params![day_start(CHART_DAYS - 1)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let today = days.last().cloned().unwrap_or_default();
    let mut currencies: Vec<(String, i64)> = Vec::new();
    for (_, code, amount, _) in &rows {
        match currencies.iter_mut().find(|(c, _)| c == code) {
            Some((_, total)) => *total = total.saturating_add(*amount),
            None => currencies.push((code.clone(), *amount)),
        }
    }
    currencies.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut volume_today = Vec::new();
    let mut charts = Vec::new();
    for (code, _) in &currencies {
        let points: Vec<(String, i64, i64)> =
            rows.iter().filter(|r| &r.1 == code).map(|r| (r.0.clone(), r.2, r.3)).collect();
        if let Some((_, amount, n)) = points.iter().find(|p| p.0 == today) {
            volume_today.push(CurrencyToday {
                volume: format::money(*amount, code),
                payments: *n,
                currency: code.clone(),
            });
        }
        if charts.len() < MAX_CHARTS {
            charts.push(chart::build(code, &days, &points));
        }
    }
    Ok((volume_today, charts))
}

/// AUTHORIZED orders per currency (what the PSP holds for the shop to
/// capture), and the soonest deadline to capture one by.
fn authorized(tx: &Tx) -> anyhow::Result<(Vec<AuthorizedRow>, Option<String>)> {
    let rows: Vec<(String, i64, i64, Option<String>)> = tx.query_map(
        "SELECT currency, COUNT(*), SUM(amount_minor), MIN(capture_before) FROM payment_orders
         WHERE payment_order_status = 'AUTHORIZED' GROUP BY currency ORDER BY currency",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let soonest = rows.iter().filter_map(|r| r.3.clone()).min();
    let rows = rows
        .into_iter()
        .map(|(code, orders, amount, _)| AuthorizedRow { amount: format::money(amount, &code), currency: code, orders })
        .collect();
    Ok((rows, soonest.as_deref().map(format::time)))
}

/// Orders still not final that were created before `cutoff`, oldest first.
/// AUTHORIZED orders are not stuck: they wait for the shop's capture, not
/// for the PSP (the overview counts them apart).
fn stuck_orders(tx: &Tx, cutoff: &str) -> anyhow::Result<(i64, Vec<StuckRow>)> {
    let count = tx.query_value(
        "SELECT COUNT(*) FROM payment_orders
         WHERE payment_order_status IN ('NOT_STARTED', 'EXECUTING') AND created_at < $1",
        params![cutoff],
    )?;
    let rows = tx.query_map(
        "SELECT payment_order_id, checkout_id, seller_id, amount_minor, currency, payment_order_status, created_at
         FROM payment_orders WHERE payment_order_status IN ('NOT_STARTED', 'EXECUTING') AND created_at < $1
         ORDER BY created_at LIMIT $2",
        params![cutoff, LISTED],
        |r| {
            Ok(StuckRow {
                payment_order_id: r.get(0)?,
                checkout_id: r.get(1)?,
                seller_id: r.get(2)?,
                amount: format::money(r.get(3)?, &r.get::<String>(4)?),
                status: r.get(5)?,
                created_at: format::time(&r.get::<String>(6)?),
            })
        },
    )?;
    Ok((count, rows))
}
