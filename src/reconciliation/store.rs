//! SQL for reconciliation: files, their lines, runs and decisions. Small
//! helpers that run inside the caller's transaction, and the read models the
//! API and the CLI show.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use anyhow::Context;
use serde::Serialize;

use super::model::{Class, Decision, RecordKind, Source};
use super::parse::SettlementRow;
use crate::db::{Row, ToSql, Tx, params};
use crate::money::{Currency, format_minor};

/// A line as stored: its row id, its file, its values.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub id: i64,
    pub file_id: i64,
    pub row: SettlementRow,
}

pub struct NewFile<'a> {
    pub sha256: &'a str,
    pub name: &'a str,
    pub source: Source,
    pub raw: &'a [u8],
    pub row_count: usize,
}

/// The file with this content, and its run: (file id, run id, finished?).
pub fn find_file(tx: &Tx, sha256: &str) -> anyhow::Result<Option<(i64, i64, bool)>> {
    tx.query_opt(
        "SELECT f.id, r.id, r.status FROM settlement_files f
         JOIN reconciliation_runs r ON r.file_id = f.id WHERE f.sha256 = $1",
        params![sha256],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<String>(2)? == "done")),
    )
}

/// Stores the file and opens its run: (file id, run id).
pub fn insert_file_and_run(tx: &Tx, file: &NewFile) -> anyhow::Result<(i64, i64)> {
    let now = crate::db::now();
    let file_id: i64 = tx
        .query_value(
            "INSERT INTO settlement_files (sha256, name, source, raw, size_bytes, row_count, imported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            params![file.sha256, file.name, file.source.as_str(), file.raw, file.raw.len(), file.row_count, now],
        )
        .context("storing a settlement file")?;
    let run_id: i64 = tx
        .query_value(
            "INSERT INTO reconciliation_runs (file_id, source, status, rows_total, started_at)
             VALUES ($1, $2, 'running', $3, $4) RETURNING id",
            params![file_id, file.source.as_str(), file.row_count, now],
        )
        .context("opening a reconciliation run")?;
    Ok((file_id, run_id))
}

/// Stores a file's lines; a line stored before (a resumed import) is left as it is.
pub fn insert_rows(tx: &Tx, file_id: i64, rows: &[SettlementRow]) -> anyhow::Result<()> {
    for row in rows {
        tx.execute(
            "INSERT INTO settlement_rows (file_id, line, balance_transaction_id, created_utc, available_on_utc,
                 currency, gross_minor, fee_minor, net_minor, reporting_category, source_id, payment_intent_id,
                 description, checkout_id, payment_order_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (file_id, line) DO NOTHING",
            params![
                file_id,
                row.line,
                row.balance_transaction_id,
                row.created_utc,
                row.available_on_utc,
                row.currency.code(),
                row.gross_minor,
                row.fee_minor,
                row.net_minor,
                row.reporting_category,
                row.source_id,
                row.payment_intent_id,
                row.description,
                row.checkout_id,
                row.payment_order_id
            ],
        )
        .with_context(|| format!("storing line {} of a settlement file", row.line))?;
    }
    Ok(())
}

pub fn count_rows(tx: &Tx, file_id: i64) -> anyhow::Result<usize> {
    tx.query_value("SELECT COUNT(*) FROM settlement_rows WHERE file_id = $1", params![file_id])
}

/// The next lines of a run's file to classify, in file order, and moves the run's cursor past them.
pub fn next_rows_to_classify(tx: &Tx, run_id: i64, file_id: i64, limit: usize) -> anyhow::Result<Vec<StoredRow>> {
    let rows = tx.query_map(
        &format!(
            "SELECT {ROW_COLUMNS} FROM settlement_rows r
             WHERE r.file_id = $1 AND r.id > (SELECT classified_through FROM reconciliation_runs WHERE id = $2)
             ORDER BY r.id LIMIT $3"
        ),
        params![file_id, run_id, limit],
        stored_row,
    )?;
    if let Some(last) = rows.last() {
        tx.execute("UPDATE reconciliation_runs SET classified_through = $2 WHERE id = $1", params![run_id, last.id])?;
    }
    Ok(rows)
}

const ROW_COLUMNS: &str = "r.id, r.file_id, r.line, r.balance_transaction_id, r.created_utc, r.available_on_utc,
     r.currency, r.gross_minor, r.fee_minor, r.net_minor, r.reporting_category, r.source_id, r.payment_intent_id,
     r.description, r.checkout_id, r.payment_order_id";

fn stored_row(r: &Row) -> anyhow::Result<StoredRow> {
    let currency = Currency::parse(&r.get::<String>(6)?).context("column 6")?;
    Ok(StoredRow {
        id: r.get(0)?,
        file_id: r.get(1)?,
        row: SettlementRow {
            line: r.get(2)?,
            balance_transaction_id: r.get(3)?,
            created_utc: r.get(4)?,
            available_on_utc: r.get(5)?,
            currency,
            gross_minor: r.get(7)?,
            fee_minor: r.get(8)?,
            net_minor: r.get(9)?,
            reporting_category: r.get(10)?,
            source_id: r.get(11)?,
            payment_intent_id: r.get(12)?,
            description: r.get(13)?,
            checkout_id: r.get(14)?,
            payment_order_id: r.get(15)?,
        },
    })
}

/// The first earlier line with this balance transaction id that was classified.
pub struct FirstRow {
    pub item_id: i64,
    pub file_id: i64,
    pub row: SettlementRow,
}

pub fn first_classified_row(tx: &Tx, bt_id: &str, before_row: i64) -> anyhow::Result<Option<FirstRow>> {
    tx.query_opt(
        &format!(
            "SELECT {ROW_COLUMNS}, i.id FROM settlement_rows r JOIN reconciliation_items i ON i.row_id = r.id
             WHERE r.balance_transaction_id = $1 AND r.id < $2 ORDER BY r.id LIMIT 1"
        ),
        params![bt_id, before_row],
        |r| {
            let stored = stored_row(r)?;
            Ok(FirstRow { item_id: r.get(16)?, file_id: stored.file_id, row: stored.row })
        },
    )
}

/// The decision that holds this record, if one does.
pub fn claimed_by(tx: &Tx, kind: RecordKind, record_id: &str) -> anyhow::Result<Option<i64>> {
    tx.query_opt(
        "SELECT id FROM reconciliation_items WHERE record_type = $1 AND record_id = $2
           AND class IN ('matched', 'amount_mismatch', 'currency_mismatch', 'missing_in_till')",
        params![kind, record_id],
        |r| r.get(0),
    )
}

/// The days (`YYYY-MM-DD`) some file reported on, from `from_day` on.
pub fn reconciled_days_since(tx: &Tx, from_day: &str) -> anyhow::Result<HashSet<String>> {
    let days = tx.query_map("SELECT day FROM reconciled_days WHERE day >= $1", params![from_day], |r| r.get(0))?;
    Ok(days.into_iter().collect())
}

/// Record ids looked up per statement by [`decided_among`].
const IDS_PER_LOOKUP: usize = 64;

/// One statement whatever the number of ids (so it is prepared once): the
/// places past the last id are bound to NULL, which matches nothing.
static DECIDED_AMONG: LazyLock<String> = LazyLock::new(|| {
    let places: Vec<String> = (2..IDS_PER_LOOKUP + 2).map(|i| format!("${i}")).collect();
    format!(
        "SELECT record_id FROM reconciliation_items WHERE record_type = $1 AND record_id IN ({})
           AND class IN ('matched', 'amount_mismatch', 'currency_mismatch', 'missing_in_till', 'missing_in_psp')",
        places.join(", ")
    )
});

/// Which of `ids` (records of `kind`) a decision holds already: a line
/// matched them, or they were reported missing.
pub fn decided_among(tx: &Tx, kind: RecordKind, ids: &[&str]) -> anyhow::Result<HashSet<String>> {
    let mut decided = HashSet::new();
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let mut places: Vec<Option<&str>> = chunk.iter().copied().map(Some).collect();
        places.resize(IDS_PER_LOOKUP, None);
        let mut values: Vec<&dyn ToSql> = vec![&kind];
        values.extend(places.iter().map(|p| p as &dyn ToSql));
        decided.extend(tx.query_map(&DECIDED_AMONG, &values, |r| r.get::<String>(0))?);
    }
    Ok(decided)
}

pub fn record_day(tx: &Tx, day: &str, file_id: i64) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO reconciled_days (day, file_id) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
        params![day, file_id],
    )?;
    Ok(())
}

fn status_of(class: Class) -> &'static str {
    if class.needs_person() { "open" } else { "none" }
}

/// Stores a decision; returns its id.
pub fn insert_item(
    tx: &Tx,
    run_id: Option<i64>,
    row_id: Option<i64>,
    d: &Decision,
    fix: Option<&str>,
) -> anyhow::Result<i64> {
    let record = d.record.as_ref();
    tx.query_value(
        "INSERT INTO reconciliation_items (run_id, row_id, class, first_class, rule, first_rule, record_type,
             record_id, till_amount_minor, till_currency, till_status, duplicate_of, fix, status, created_at,
             updated_at)
         VALUES ($1, $2, $3, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
        params![
            run_id,
            row_id,
            d.class,
            d.rule,
            record.map(|r| r.kind),
            record.map(|r| r.id.as_str()),
            record.map(|r| r.amount_minor),
            record.map(|r| r.currency.as_str()),
            record.map(|r| r.status.as_str()),
            d.duplicate_of,
            fix,
            status_of(d.class),
            crate::db::now()
        ],
    )
    .context("storing a reconciliation decision")
}

/// Replaces an open decision after an automatic fix; `first_class` keeps what it was.
pub fn update_item(tx: &Tx, item_id: i64, d: &Decision, fix: &str) -> anyhow::Result<bool> {
    let record = d.record.as_ref();
    let changed = tx
        .execute(
            "UPDATE reconciliation_items SET class = $2, rule = $3, record_type = $4, record_id = $5,
                 till_amount_minor = $6, till_currency = $7, till_status = $8, fix = $9, status = $10,
                 updated_at = $11
             WHERE id = $1 AND status = 'open'",
            params![
                item_id,
                d.class,
                d.rule,
                record.map(|r| r.kind),
                record.map(|r| r.id.as_str()),
                record.map(|r| r.amount_minor),
                record.map(|r| r.currency.as_str()),
                record.map(|r| r.status.as_str()),
                fix,
                status_of(d.class),
                crate::db::now()
            ],
        )
        .context("updating a reconciliation decision")?;
    Ok(changed == 1)
}

/// A line now matches a record that an earlier run reported missing: that
/// exception resolves itself, saying where the record was found.
pub fn resolve_missing_in_psp(tx: &Tx, kind: RecordKind, record_id: &str, found: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE reconciliation_items SET status = 'resolved', note = $3, resolved_by = 'reconciliation',
             resolved_at = $4, updated_at = $4
         WHERE class = 'missing_in_psp' AND status = 'open' AND record_type = $1 AND record_id = $2",
        params![kind, record_id, found, crate::db::now()],
    )?;
    Ok(())
}

/// Open `missing_in_till` decisions with their line: what the automatic fix works on.
pub fn open_missing_in_till(tx: &Tx, limit: u32) -> anyhow::Result<Vec<(i64, StoredRow, Decision)>> {
    let sql = format!(
        "SELECT {ROW_COLUMNS}, i.id, i.rule, i.record_type, i.record_id, i.till_amount_minor, i.till_currency,
                i.till_status
         FROM reconciliation_items i JOIN settlement_rows r ON r.id = i.row_id
         WHERE i.class = 'missing_in_till' AND i.status = 'open' ORDER BY i.id LIMIT $1"
    );
    tx.query_map(&sql, params![limit], |r| {
        let stored = stored_row(r)?;
        let kind: Option<String> = r.get(18)?;
        let record = match (kind.as_deref().and_then(RecordKind::parse), r.get::<Option<String>>(19)?) {
            (Some(kind), Some(id)) => Some(super::model::TillRecord {
                kind,
                id,
                amount_minor: r.get::<Option<i64>>(20)?.unwrap_or(0),
                currency: r.get::<Option<String>>(21)?.unwrap_or_default(),
                status: r.get::<Option<String>>(22)?.unwrap_or_default(),
            }),
            _ => None,
        };
        let decision = Decision::new(Class::MissingInTill, r.get::<String>(17)?, record);
        Ok((r.get(16)?, stored, decision))
    })
}

pub fn add_to_run(tx: &Tx, run_id: i64, column: RunCounter, n: i64) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    // One of four fixed statements (the column is a constant of RunCounter).
    let sql = format!("UPDATE reconciliation_runs SET {0} = {0} + $2 WHERE id = $1", column.as_str());
    tx.execute(&sql, params![run_id, n])?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum RunCounter {
    Skipped,
    AutoFixed,
    FeesBooked,
    PayoutsBooked,
}

impl RunCounter {
    fn as_str(self) -> &'static str {
        match self {
            RunCounter::Skipped => "rows_skipped",
            RunCounter::AutoFixed => "auto_fixed",
            RunCounter::FeesBooked => "fees_booked",
            RunCounter::PayoutsBooked => "payouts_booked",
        }
    }
}

/// Every class with how many decisions of this run have it now.
pub fn class_counts(tx: &Tx, run_id: i64) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> = Class::ALL.iter().map(|c| (c.as_str().to_string(), 0)).collect();
    let found: Vec<(String, i64)> = tx.query_map(
        "SELECT class, COUNT(*) FROM reconciliation_items WHERE run_id = $1 GROUP BY class",
        params![run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    counts.extend(found);
    Ok(counts)
}

/// Ends a run, keeping its counts as they are now.
pub fn finish_run(tx: &Tx, run_id: i64) -> anyhow::Result<()> {
    let counts = serde_json::to_string(&class_counts(tx, run_id)?)?;
    tx.execute(
        "UPDATE reconciliation_runs SET status = 'done', counts = $2, finished_at = $3
         WHERE id = $1 AND status = 'running'",
        params![run_id, counts, crate::db::now()],
    )?;
    Ok(())
}

/// A run as the API and the CLI show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: i64,
    pub file_name: String,
    pub file_sha256: String,
    /// cli | upload | scheduled
    pub source: String,
    /// running | done
    pub status: String,
    pub rows_total: i64,
    /// Lines already imported, identical, from an earlier file.
    pub rows_skipped: i64,
    /// Decisions per class (every class listed).
    pub counts: BTreeMap<String, i64>,
    /// `missing_in_till` lines fixed by asking the PSP.
    pub auto_fixed: i64,
    pub fees_booked: i64,
    pub payouts_booked: i64,
    /// Decisions of this run still waiting for a person.
    pub open_exceptions: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
}

const RUN_COLUMNS: &str = "r.id, f.name, f.sha256, r.source, r.status, r.rows_total, r.rows_skipped, r.counts,
     r.auto_fixed, r.fees_booked, r.payouts_booked,
     (SELECT COUNT(*) FROM reconciliation_items i WHERE i.run_id = r.id AND i.status = 'open'),
     r.started_at, r.finished_at";

fn run_view(r: &Row) -> anyhow::Result<RunView> {
    let counts: String = r.get(7)?;
    Ok(RunView {
        id: r.get(0)?,
        file_name: r.get(1)?,
        file_sha256: r.get(2)?,
        source: r.get(3)?,
        status: r.get(4)?,
        rows_total: r.get(5)?,
        rows_skipped: r.get(6)?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        auto_fixed: r.get(8)?,
        fees_booked: r.get(9)?,
        payouts_booked: r.get(10)?,
        open_exceptions: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

pub fn load_run(tx: &Tx, run_id: i64) -> anyhow::Result<RunView> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs r JOIN settlement_files f ON f.id = r.file_id WHERE r.id = $1"
    );
    let mut view = tx.query_row(&sql, params![run_id], run_view).with_context(|| format!("run {run_id}"))?;
    if view.status == "running" {
        view.counts = class_counts(tx, run_id)?;
    }
    Ok(view)
}

/// Runs, newest first, Stripe-style: `starting_after` is the last id of the previous page.
pub fn list_runs(tx: &Tx, starting_after: Option<i64>, limit: u32) -> anyhow::Result<(Vec<RunView>, bool)> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs r JOIN settlement_files f ON f.id = r.file_id
         WHERE (CAST($1 AS BIGINT) IS NULL OR r.id < $1) ORDER BY r.id DESC LIMIT $2"
    );
    let mut runs = tx.query_map(&sql, params![starting_after, i64::from(limit) + 1], run_view)?;
    let has_more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    Ok((runs, has_more))
}

/// Both sides of a decision, as the exception queue shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExceptionView {
    pub id: i64,
    pub run_id: Option<i64>,
    /// The class now (after any automatic fix).
    pub class: String,
    /// The first decision on the line, before any automatic fix, and its rule.
    pub first_class: String,
    pub first_rule: String,
    /// The rule behind the decision standing now.
    pub rule: String,
    /// open | resolved (| none for a match, never listed here)
    pub status: String,
    pub psp: Option<PspSide>,
    pub till: Option<TillSide>,
    /// The decision this line repeats (duplicate_in_file).
    pub duplicate_of: Option<i64>,
    /// What the automatic fix did, or why it could not.
    pub fix: Option<String>,
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub created_at: String,
}

/// The settlement line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PspSide {
    pub file_name: String,
    pub line: i64,
    pub balance_transaction_id: String,
    pub reporting_category: String,
    pub created_utc: String,
    pub currency: String,
    pub gross: String,
    pub fee: String,
    pub net: String,
    pub source_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub checkout_id: Option<String>,
    pub payment_order_id: Option<String>,
}

/// Till's record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TillSide {
    /// checkout | payment_order | refund | payout | bank_payout | psp_fee
    pub record_type: String,
    pub record_id: String,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub status: Option<String>,
}

const EXCEPTION_COLUMNS: &str = "i.id, i.run_id, i.class, i.first_class, i.rule, i.status, i.duplicate_of, i.fix,
     i.note, i.resolved_by, i.resolved_at, i.created_at, i.first_rule,
     i.record_type, i.record_id, i.till_amount_minor, i.till_currency, i.till_status,
     f.name, r.line, r.balance_transaction_id, r.reporting_category, r.created_utc, r.currency,
     r.gross_minor, r.fee_minor, r.net_minor, r.source_id, r.payment_intent_id, r.checkout_id, r.payment_order_id";

fn exception_view(r: &Row) -> anyhow::Result<ExceptionView> {
    let major = |minor: Option<i64>, code: Option<&str>| -> Option<String> {
        let currency = Currency::parse(code?).ok()?;
        Some(format_minor(minor?, currency))
    };
    let till = match (r.get::<Option<String>>(13)?, r.get::<Option<String>>(14)?) {
        (Some(record_type), Some(record_id)) => {
            let currency: Option<String> = r.get(16)?;
            Some(TillSide {
                record_type,
                record_id,
                amount: major(r.get(15)?, currency.as_deref()),
                currency,
                status: r.get(17)?,
            })
        }
        _ => None,
    };
    let psp = match r.get::<Option<String>>(20)? {
        None => None,
        Some(balance_transaction_id) => {
            let currency: String = r.get(23)?;
            Some(PspSide {
                file_name: r.get(18)?,
                line: r.get(19)?,
                balance_transaction_id,
                reporting_category: r.get(21)?,
                created_utc: r.get(22)?,
                gross: major(r.get(24)?, Some(&currency)).unwrap_or_default(),
                fee: major(r.get(25)?, Some(&currency)).unwrap_or_default(),
                net: major(r.get(26)?, Some(&currency)).unwrap_or_default(),
                currency,
                source_id: r.get(27)?,
                payment_intent_id: r.get(28)?,
                checkout_id: r.get(29)?,
                payment_order_id: r.get(30)?,
            })
        }
    };
    Ok(ExceptionView {
        id: r.get(0)?,
        run_id: r.get(1)?,
        class: r.get(2)?,
        first_class: r.get(3)?,
        first_rule: r.get(12)?,
        rule: r.get(4)?,
        status: r.get(5)?,
        duplicate_of: r.get(6)?,
        fix: r.get(7)?,
        note: r.get(8)?,
        resolved_by: r.get(9)?,
        resolved_at: r.get(10)?,
        created_at: r.get(11)?,
        psp,
        till,
    })
}

/// Exceptions (decisions a person must see), newest first; `status` open or resolved, None for both.
pub fn list_exceptions(
    tx: &Tx,
    status: Option<&str>,
    starting_after: Option<i64>,
    limit: u32,
) -> anyhow::Result<(Vec<ExceptionView>, bool)> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM reconciliation_items i
         LEFT JOIN settlement_rows r ON r.id = i.row_id LEFT JOIN settlement_files f ON f.id = r.file_id
         WHERE i.status <> 'none' AND (CAST($1 AS TEXT) IS NULL OR i.status = $1) AND (CAST($2 AS BIGINT) IS NULL OR i.id < $2)
         ORDER BY i.id DESC LIMIT $3"
    );
    let mut items = tx.query_map(&sql, params![status, starting_after, i64::from(limit) + 1], exception_view)?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok((items, has_more))
}

pub fn load_exception(tx: &Tx, item_id: i64) -> anyhow::Result<Option<ExceptionView>> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM reconciliation_items i
         LEFT JOIN settlement_rows r ON r.id = i.row_id LEFT JOIN settlement_files f ON f.id = r.file_id
         WHERE i.id = $1 AND i.status <> 'none'"
    );
    tx.query_opt(&sql, params![item_id], exception_view)
}

/// open → resolved with a person's note. Returns false if it was not open.
pub fn resolve(tx: &Tx, item_id: i64, note: &str, by: &str) -> anyhow::Result<bool> {
    let changed = tx.execute(
        "UPDATE reconciliation_items SET status = 'resolved', note = $2, resolved_by = $3, resolved_at = $4,
             updated_at = $4
         WHERE id = $1 AND status = 'open'",
        params![item_id, note, by, crate::db::now()],
    )?;
    Ok(changed == 1)
}
