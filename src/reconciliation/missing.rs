//! `missing_in_psp`: till records of a day some file reported on that no line
//! of any file matched, once `reconciliation.grace_days` have passed (the PSP
//! may report a movement on the next day's file). Each is reported once;
//! a later line that matches it resolves the exception by itself.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::model::{Class, Decision, RecordKind, TillRecord};
use super::store;
use crate::db::{Tx, params};

/// Days looked back on each run: older days were swept by earlier runs.
pub const LOOKBACK_DAYS: i64 = 62;
/// Records reported per run at most; the rest follow on the next run.
pub const MAX_PER_RUN: i64 = 10_000;

/// Till's final records (successful pay-ins, refunds, paid payouts) with the
/// time they became final. A hosted checkout is one record, as at the PSP.
const CANDIDATES: &str = "
    WITH candidates (record_type, record_id, amount_minor, currency, status, at) AS (
        SELECT 'checkout', o.checkout_id, SUM(o.amount_minor), MIN(o.currency), 'SUCCESS', MIN(o.succeeded_at)
        FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
        WHERE e.payment_method = 'hosted_page' AND o.payment_order_status = 'SUCCESS' AND o.succeeded_at >= $1
        GROUP BY o.checkout_id
        UNION ALL
        SELECT 'payment_order', o.payment_order_id, o.amount_minor, o.currency, 'SUCCESS', o.succeeded_at
        FROM payment_orders o JOIN payment_events e ON e.checkout_id = o.checkout_id
        WHERE e.payment_method = 'token' AND o.payment_order_status = 'SUCCESS' AND o.succeeded_at >= $1
        UNION ALL
        SELECT 'refund', refund_id, amount_minor, currency, status, updated_at
        FROM refunds WHERE status = 'SUCCEEDED' AND updated_at >= $1
        UNION ALL
        SELECT 'payout', payout_id, amount_minor, currency, status, updated_at
        FROM payouts WHERE status = 'PAID' AND updated_at >= $1
    )
    SELECT c.record_type, c.record_id, c.amount_minor, c.currency, c.status FROM candidates c
    WHERE c.at < $2
      AND substr(c.at, 1, 10) IN (SELECT day FROM reconciled_days)
      AND NOT EXISTS (SELECT 1 FROM reconciliation_items i
                      WHERE i.record_type = c.record_type AND i.record_id = c.record_id
                        AND i.class IN ('matched', 'amount_mismatch', 'currency_mismatch', 'missing_in_till',
                                        'missing_in_psp'))
    ORDER BY c.at LIMIT $3";

/// Reports every record missing from the files; returns how many it found.
/// `earliest_day` widens the look-back to an older file's first day.
pub fn sweep(
    tx: &Tx,
    run_id: Option<i64>,
    now: DateTime<Utc>,
    grace_days: i64,
    earliest_day: Option<&str>,
) -> anyhow::Result<usize> {
    let lookback = (now - Duration::days(LOOKBACK_DAYS)).format("%Y-%m-%d").to_string();
    let from = match earliest_day {
        Some(day) if day < lookback.as_str() => day.to_string(),
        Some(_) | None => lookback,
    };
    let cutoff = (now - Duration::days(grace_days)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let records: Vec<(String, String, i64, String, String)> =
        tx.query_map(CANDIDATES, params![from, cutoff, MAX_PER_RUN], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    let mut found = 0;
    for (kind, id, amount_minor, currency, status) in records {
        let Some(kind) = RecordKind::parse(&kind) else { continue };
        let record = TillRecord { kind, id, amount_minor, currency, status };
        let rule = format!("{}.not_in_any_file_after_{grace_days}_days", kind.as_str());
        store::insert_item(tx, run_id, None, &Decision::new(Class::MissingInPsp, rule, Some(record)), None)?;
        found += 1;
    }
    Ok(found)
}
