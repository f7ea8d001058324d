//! The settlement report (a sandbox extension, shaped like Stripe's itemized
//! payout-reconciliation report): every balance transaction of one UTC day
//! as CSV, amounts in major units, and the daily payouts that move each
//! finished day's net to the merchant's bank, booked by the ticker once the
//! day is over (dated 23:59:59 of that day, so they sit in its report).
//! As in Stripe's report, a charge's processing fee is in the `fee` column of
//! its `charge` row (gross − fee = net); no separate `fee` rows are written.
//! `available_on_utc` equals `created_utc` (no hold at the sandbox).
//! A dispute's withdrawal (`dispute`: −amount, its fee in `fee`) and, if won,
//! its reversal (`dispute_reversal`: +amount) are lines like the others, with
//! the dispute `du_…` as their source, and the payout sums them in.
//! The same lines, for any interval and a choice of columns, are the files
//! of Stripe's Reporting API (see `reporting`); the daily report here is
//! its shortcut.

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use rusqlite::{Connection, params};

use super::balance::{self, Category, Entry};
use super::error::StripeError;
use super::ids::new_id;
use super::params::Metadata;
use super::reply::Reply;
use crate::money::{Currency, format_minor};

/// A report longer than this is refused rather than cut short.
pub const MAX_REPORT_ROWS: i64 = 100_000;
/// Days looked back for unbooked payouts (after the sandbox was stopped a while).
const PAYOUT_LOOKBACK_DAYS: i64 = 31;
const SECONDS_PER_DAY: i64 = 86_400;

pub const COLUMNS: [&str; 13] = [
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "payment_intent_id",
    "description",
    "payment_metadata[checkout_id]",
    "payment_metadata[payment_order_id]",
];

/// The UTC day `YYYY-MM-DD` as [start, end) unix seconds.
pub fn parse_day(raw: &str) -> Result<(NaiveDate, i64), StripeError> {
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        StripeError::invalid(
            "parameter_invalid",
            "day",
            format!("'{}' is not a day like 2025-01-31.", super::error::truncate(raw, 20)),
        )
    })?;
    Ok((day, day_start(day)))
}

fn day_start(day: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN)).timestamp()
}

struct Row {
    id: String,
    created: i64,
    available_on: i64,
    currency: String,
    amount: i64,
    fee: i64,
    net: i64,
    category: String,
    source_id: String,
    payment_intent: Option<String>,
    description: Option<String>,
    metadata: Metadata,
}

/// `GET /v1/sandbox/settlement_reports/{YYYY-MM-DD}`: every column, for one UTC day.
pub fn report(conn: &Connection, day: &str) -> Result<Reply, StripeError> {
    let (_, start) = parse_day(day)?;
    Ok(Reply::csv(csv_between(conn, start, start + SECONDS_PER_DAY, &COLUMNS)?))
}

/// The report of the balance transactions created in [`start`, `end`) (unix
/// seconds) as CSV: a header line, then one line per transaction, with the
/// `columns` named (each one of [`COLUMNS`]) in the order given. Both the
/// settlement report and the Reporting API's report runs write it.
pub fn csv_between(conn: &Connection, start: i64, end: i64, columns: &[&str]) -> anyhow::Result<String> {
    let picked = columns
        .iter()
        .map(|c| COLUMNS.iter().position(|known| known == c).ok_or_else(|| anyhow::anyhow!("no report column {c}")))
        .collect::<anyhow::Result<Vec<usize>>>()?;
    let rows = rows_between(conn, start, end)?;
    let mut csv = String::new();
    push_line(&mut csv, columns.iter().map(|c| c.to_string()));
    for row in &rows {
        let all = fields(row)?;
        push_line(&mut csv, picked.iter().map(|&i| all[i].clone()));
    }
    Ok(csv)
}

/// Balance transactions created in [`start`, `end`): the lines of their report.
pub fn count_between(conn: &Connection, start: i64, end: i64) -> anyhow::Result<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM balance_transactions WHERE created >= ?1 AND created < ?2",
        params![start, end],
        |r| r.get(0),
    )?)
}

/// Lines of one second in the order they were booked (rowid: the sandbox
/// never vacuums), the day's payouts last.
fn rows_between(conn: &Connection, start: i64, end: i64) -> anyhow::Result<Vec<Row>> {
    let count = count_between(conn, start, end)?;
    anyhow::ensure!(count <= MAX_REPORT_ROWS, "the report has {count} rows, over {MAX_REPORT_ROWS}");
    let mut stmt = conn.prepare(
        "SELECT id, created, available_on, currency, amount, fee, net, reporting_category, source_id,
                payment_intent, description, payment_metadata
         FROM balance_transactions WHERE created >= ?1 AND created < ?2
         ORDER BY created, reporting_category = 'payout', rowid",
    )?;
    let rows = stmt
        .query_map(params![start, end], |r| {
            Ok((
                Row {
                    id: r.get(0)?,
                    created: r.get(1)?,
                    available_on: r.get(2)?,
                    currency: r.get(3)?,
                    amount: r.get(4)?,
                    fee: r.get(5)?,
                    net: r.get(6)?,
                    category: r.get(7)?,
                    source_id: r.get(8)?,
                    payment_intent: r.get(9)?,
                    description: r.get(10)?,
                    metadata: Metadata::new(),
                },
                r.get::<_, String>(11)?,
            ))
        })?
        .map(|row| {
            let (mut row, metadata) = row?;
            row.metadata = serde_json::from_str(&metadata)?;
            Ok(row)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(rows)
}

fn fields(row: &Row) -> anyhow::Result<Vec<String>> {
    let currency = Currency::parse(&row.currency.to_uppercase())
        .map_err(|e| anyhow::anyhow!("balance transaction {}: {e}", row.id))?;
    let major = |minor: i64| format_minor(minor, currency);
    let meta = |key: &str| row.metadata.get(key).cloned().unwrap_or_default();
    Ok(vec![
        row.id.clone(),
        utc(row.created),
        utc(row.available_on),
        row.currency.clone(),
        major(row.amount),
        major(row.fee),
        major(row.net),
        row.category.clone(),
        row.source_id.clone(),
        row.payment_intent.clone().unwrap_or_default(),
        row.description.clone().unwrap_or_default(),
        meta("checkout_id"),
        meta("payment_order_id"),
    ])
}

/// Stripe's report time format: `2025-01-31 13:45:00`.
fn utc(unix_s: i64) -> String {
    Utc.timestamp_opt(unix_s, 0).single().map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

fn push_line(csv: &mut String, fields: impl IntoIterator<Item = String>) {
    let line: Vec<String> = fields.into_iter().map(|f| csv_field(&f)).collect();
    csv.push_str(&line.join(","));
    csv.push_str("\r\n");
}

/// RFC 4180 quoting.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Books the payout of every finished day (before `today_start`) in the
/// look-back window that has movements but no payout yet, per currency.
pub fn book_payouts(conn: &Connection, today_start: i64) -> anyhow::Result<usize> {
    let mut stmt = conn.prepare(
        "SELECT (created - (created % 86400)) AS day_start, currency, SUM(net)
         FROM balance_transactions
         WHERE created >= ?1 AND created < ?2 AND reporting_category != 'payout'
         GROUP BY day_start, currency",
    )?;
    let totals = stmt
        .query_map(params![today_start - PAYOUT_LOOKBACK_DAYS * SECONDS_PER_DAY, today_start], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut booked = 0;
    for (start, currency, net) in totals {
        if book_payout(conn, start, &currency, net)? {
            booked += 1;
        }
    }
    Ok(booked)
}

fn book_payout(conn: &Connection, start: i64, currency: &str, net: i64) -> anyhow::Result<bool> {
    let day = utc(start).chars().take(10).collect::<String>();
    let id = new_id("po_");
    let inserted = conn.execute(
        "INSERT INTO payouts (id, day, currency, amount, created) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (day, currency) DO NOTHING",
        params![id, day, currency, net, start + SECONDS_PER_DAY - 1],
    )?;
    if inserted == 0 || net == 0 {
        return Ok(false);
    }
    balance::book(
        conn,
        &Entry {
            created: start + SECONDS_PER_DAY - 1,
            currency,
            amount: -net,
            fee: 0,
            category: Category::Payout,
            source_id: &id,
            payment_intent: None,
            description: Some("STRIPE PAYOUT"),
            payment_metadata: &Metadata::new(),
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn days_are_utc() {
        let (_, start) = parse_day("2025-01-31").unwrap();
        assert_eq!(utc(start), "2025-01-31 00:00:00");
        assert!(parse_day("2025-02-30").is_err());
        assert!(parse_day("yesterday").is_err());
    }

    #[test]
    fn a_days_payout_sums_its_dispute_lines_in() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("s.db"), 1, 1000, &crate::db::sandbox_migrations()).unwrap();
        let conn = db.conn().unwrap();
        let (_, day) = parse_day("2025-01-30").unwrap();
        let md = Metadata::new();
        let lines = [
            (Category::Charge, "ch_1", 10_000, 320),
            (Category::Dispute, "du_1", -10_000, 1_500),
            (Category::DisputeReversal, "du_1", 10_000, 0),
        ];
        for (category, source_id, amount, fee) in lines {
            let entry = Entry {
                created: day + 3600,
                currency: "usd",
                amount,
                fee,
                category,
                source_id,
                payment_intent: Some("pi_1"),
                description: None,
                payment_metadata: &md,
            };
            balance::book(&conn, &entry).unwrap();
        }
        assert_eq!(book_payouts(&conn, day + SECONDS_PER_DAY).unwrap(), 1);
        let csv = report(&conn, "2025-01-30").unwrap().body;
        assert!(csv.contains(",-100.00,15.00,-115.00,dispute,du_1,pi_1,"), "{csv}");
        assert!(csv.contains(",100.00,0.00,100.00,dispute_reversal,du_1,pi_1,"), "{csv}");
        // 96.80 − 115.00 + 100.00 = 81.80 paid out.
        let payout = csv.lines().find(|l| l.contains(",payout,")).unwrap();
        assert!(payout.contains(",-81.80,0.00,-81.80,payout,"), "{payout}");
    }

    #[test]
    fn a_finished_day_gets_one_payout_of_its_net() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("s.db"), 1, 1000, &crate::db::sandbox_migrations()).unwrap();
        let conn = db.conn().unwrap();
        let (_, yesterday) = parse_day("2025-01-30").unwrap();
        let md = Metadata::new();
        for (source, amount, fee) in [("ch_1", 2500, 103), ("ch_2", 1000, 59)] {
            let entry = Entry {
                created: yesterday + 3600,
                currency: "usd",
                amount,
                fee,
                category: Category::Charge,
                source_id: source,
                payment_intent: None,
                description: None,
                payment_metadata: &md,
            };
            balance::book(&conn, &entry).unwrap();
        }
        let today = yesterday + SECONDS_PER_DAY;
        assert_eq!(book_payouts(&conn, today).unwrap(), 1);
        assert_eq!(book_payouts(&conn, today).unwrap(), 0, "booked once");
        let csv = report(&conn, "2025-01-30").unwrap().body;
        let payout = csv.lines().find(|l| l.contains(",payout,")).unwrap();
        assert!(payout.contains(",-33.38,0.00,-33.38,payout,"), "{payout}");
        assert!(payout.starts_with("txn_") && payout.contains("2025-01-30 23:59:59"));
        assert_eq!(csv.lines().count(), 4);
    }
}
