//! `missing_in_psp`: till records of a day some file reported on that no line
//! of any file matched, once `reconciliation.grace_days` have passed (the PSP
//! may report a movement on the next day's file). Each is reported once;
//! a later line that matches it resolves the exception by itself.

use std::collections::HashSet;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::model::{Class, Decision, RecordKind, TillRecord};
use super::store;
use crate::db::Tx;
use crate::payments::model::OrderStatus;
use crate::{disputes, payments, payouts, refunds};

/// Days looked back on each run: older days were swept by earlier runs.
pub const LOOKBACK_DAYS: i64 = 62;
/// Records reported per run at most; the rest follow on the next run.
pub const MAX_PER_RUN: i64 = 10_000;

/// Reports every record missing from the files; returns how many it found.
/// `earliest_day` widens the look-back to an older file's first day.
/// Each owner lists its final records of the window in one query; the days
/// reported on and the decisions taken are this module's own to filter by.
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
    let days = store::reconciled_days_since(tx, &from)?;
    let mut records = final_records(tx, &from, &cutoff)?;
    records.retain(|(at, _)| at.get(..10).is_some_and(|day| days.contains(day)));
    let decided = decided(tx, &records)?;
    records.retain(|(_, r)| !decided.contains(&(r.kind, r.id.clone())));
    records.sort_by(|(a, _), (b, _)| a.cmp(b));
    records.truncate(usize::try_from(MAX_PER_RUN)?);
    let found = records.len();
    for (_, record) in records {
        let rule = format!("{}.not_in_any_file_after_{grace_days}_days", record.kind.as_str());
        store::insert_item(tx, run_id, None, &Decision::new(Class::MissingInPsp, rule, Some(record)), None)?;
    }
    Ok(found)
}

/// Till's final records (successful pay-ins, refunds, paid payouts,
/// disputes' withdrawals and reinstatements) that became final at or after
/// `from` and before `before`, with when, asked of their owners. A hosted checkout is one record, as at the PSP.
fn final_records(tx: &Tx, from: &str, before: &str) -> anyhow::Result<Vec<(String, TillRecord)>> {
    let mut out = Vec::new();
    for c in payments::store::paid_charges_between(tx, from, before)? {
        let kind = if c.hosted_page { RecordKind::Checkout } else { RecordKind::PaymentOrder };
        let status = OrderStatus::Success.as_str().to_string();
        let record = TillRecord { kind, id: c.id, amount_minor: c.amount_minor, currency: c.currency, status };
        out.push((c.paid_at, record));
    }
    for r in refunds::store::succeeded_between(tx, from, before)? {
        let status = r.status.as_str().to_string();
        let record = TillRecord {
            kind: RecordKind::Refund,
            id: r.refund_id,
            amount_minor: r.amount_minor,
            currency: r.currency,
            status,
        };
        out.push((r.updated_at, record));
    }
    for p in payouts::store::paid_between(tx, from, before)? {
        let status = p.status.as_str().to_string();
        let record = TillRecord {
            kind: RecordKind::Payout,
            id: p.payout_id,
            amount_minor: p.amount_minor,
            currency: p.currency,
            status,
        };
        out.push((p.updated_at, record));
    }
    for d in disputes::store::booked_between(tx, from, before)? {
        let kind = if d.reinstatement { RecordKind::DisputeReversal } else { RecordKind::Dispute };
        let record = TillRecord {
            kind,
            id: d.psp_dispute_id,
            amount_minor: d.amount_minor,
            currency: d.currency,
            status: "booked".into(),
        };
        out.push((d.at, record));
    }
    Ok(out)
}

/// The records a decision holds already (matched by a line, or reported missing before).
fn decided(tx: &Tx, records: &[(String, TillRecord)]) -> anyhow::Result<HashSet<(RecordKind, String)>> {
    let mut decided = HashSet::new();
    for kind in [
        RecordKind::Checkout,
        RecordKind::PaymentOrder,
        RecordKind::Refund,
        RecordKind::Payout,
        RecordKind::Dispute,
        RecordKind::DisputeReversal,
    ] {
        let ids: Vec<&str> = records.iter().filter(|(_, r)| r.kind == kind).map(|(_, r)| r.id.as_str()).collect();
        decided.extend(store::decided_among(tx, kind, &ids)?.into_iter().map(|id| (kind, id)));
    }
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, params};

    /// The sweep as one statement over every module's tables, as it was
    /// before each owner answered for its own: what the sweep must still find.
    const ONE_STATEMENT: &str = "
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
        ORDER BY c.at";

    type Found = (String, String, i64, String, String);

    fn at(now: DateTime<Utc>, hours_ago: i64) -> String {
        (now - Duration::hours(hours_ago)).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Hosted checkouts of two orders (paid a day apart, some across the
    /// look-back's start), token orders paid and failed, refunds and payouts
    /// in every state, over 70 days of which some were reconciled, and
    /// records a line matched or that were reported missing before.
    fn books(tx: &Tx, now: DateTime<Utc>) -> anyhow::Result<()> {
        tx.execute(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at) VALUES ('k', 'k', 'h', 'p', 'now')",
            params![],
        )?;
        tx.execute(
            "INSERT INTO settlement_files (id, sha256, name, source, raw, size_bytes, row_count, imported_at)
             VALUES (1, 'sha', 'f', 'cli', $1, 0, 0, 'now')",
            params![Vec::<u8>::new()],
        )?;
        for day in 0..70 {
            if day % 5 != 0 {
                let day = (now - Duration::days(day)).format("%Y-%m-%d").to_string();
                tx.execute("INSERT INTO reconciled_days (day, file_id) VALUES ($1, 1)", params![day])?;
            }
        }
        for i in 0..400_i64 {
            let paid = at(now, i * 4 + 1);
            let hosted = i % 3 == 0;
            let method = if hosted { "hosted_page" } else { "token" };
            let checkout = format!("c{i}");
            tx.execute(
                "INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, payment_method, request_hash,
                                             created_at, updated_at) VALUES ($1, 'k', '{}', $2, 'h', 'now', 'now')",
                params![checkout, method],
            )?;
            let orders = if hosted { 2 } else { 1 };
            for position in 0..orders {
                let status = if i % 3 == 2 { "FAILED" } else { "SUCCESS" };
                let succeeded = (status == "SUCCESS").then(|| at(now, i * 4 + 1 - position * 20));
                let amount = 1000 + i + position;
                let captured = (status == "SUCCESS").then_some(amount);
                tx.execute(
                    "INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                         amount_minor, currency, payment_order_status, succeeded_at, created_at, updated_at,
                         captured_minor)
                     VALUES ($1, $2, $3, 'b', 's', $4, 'USD', $5, $6, 'now', 'now', $7)",
                    params![format!("o{i}_{position}"), checkout, position, amount, status, succeeded, captured],
                )?;
            }
            if i % 6 == 1 {
                let status = if i % 12 == 1 { "SUCCEEDED" } else { "PENDING" };
                tx.execute(
                    "INSERT INTO refunds (refund_id, payment_order_id, amount_minor, currency, status,
                         seller_part_minor, commission_part_minor, created_by, created_at, updated_at)
                     VALUES ($1, $2, 100, 'USD', $3, 100, 0, 'k', 'now', $4)",
                    params![format!("r{i}"), format!("o{i}_0"), status, at(now, i * 4 - 3)],
                )?;
            }
            let payout = if i % 4 == 0 { "PAID" } else { "IN_TRANSIT" };
            tx.execute(
                "INSERT INTO payouts (payout_id, seller_id, amount_minor, currency, status, destination, created_by,
                     created_at, updated_at) VALUES ($1, 's', 500, 'USD', $2, 'acct', 'k', 'now', $3)",
                params![format!("p{i}"), payout, paid],
            )?;
            decide(tx, i, if hosted { ("checkout", checkout) } else { ("payment_order", format!("o{i}_0")) })?;
        }
        Ok(())
    }

    /// A line matched every 7th record; every 11th was reported missing and resolved by hand.
    fn decide(tx: &Tx, i: i64, (kind, id): (&str, String)) -> anyhow::Result<()> {
        if i % 7 == 0 {
            let row: i64 = tx.query_value(
                "INSERT INTO settlement_rows (file_id, line, balance_transaction_id, created_utc, currency,
                     gross_minor, fee_minor, net_minor, reporting_category)
                 VALUES (1, $1, $2, 'now', 'USD', 0, 0, 0, 'charge') RETURNING id",
                params![i + 2, format!("txn_{i}")],
            )?;
            tx.execute(
                "INSERT INTO reconciliation_items (row_id, class, first_class, first_rule, rule, record_type,
                     record_id, status, created_at, updated_at)
                 VALUES ($1, 'matched', 'matched', 'r', 'r', $2, $3, 'none', 'now', 'now')",
                params![row, kind, id],
            )?;
        } else if i % 11 == 0 {
            tx.execute(
                "INSERT INTO reconciliation_items (class, first_class, first_rule, rule, record_type, record_id,
                     status, note, resolved_at, created_at, updated_at)
                 VALUES ('missing_in_psp', 'missing_in_psp', 'r', 'r', $1, $2, 'resolved', 'n', 'now', 'now', 'now')",
                params![kind, id],
            )?;
        }
        Ok(())
    }

    #[test]
    fn the_owners_queries_find_what_one_statement_over_their_tables_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        let now = DateTime::parse_from_rfc3339("2024-06-30T12:00:00Z").unwrap().with_timezone(&Utc);
        db.write_now(|tx| books(tx, now)).unwrap();
        let (grace_days, from) = (2, (now - Duration::days(LOOKBACK_DAYS)).format("%Y-%m-%d").to_string());
        let cutoff = (now - Duration::days(grace_days)).to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut expected: Vec<Found> = db
            .read_now(|tx| {
                tx.query_map(ONE_STATEMENT, params![from, cutoff], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
            })
            .unwrap();
        assert!(expected.len() > 100, "enough records to look up in several statements: {}", expected.len());

        let found = db.write_now(|tx| sweep(tx, None, now, grace_days, None)).unwrap();
        let mut reported: Vec<Found> = db
            .read_now(|tx| {
                tx.query_map(
                    "SELECT record_type, record_id, till_amount_minor, till_currency, till_status
                     FROM reconciliation_items WHERE class = 'missing_in_psp' AND status = 'open'",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
            })
            .unwrap();
        assert_eq!(found, expected.len());
        expected.sort();
        reported.sort();
        assert_eq!(reported, expected);
        assert_eq!(db.write_now(|tx| sweep(tx, None, now, grace_days, None)).unwrap(), 0, "each is reported once");
    }
}
