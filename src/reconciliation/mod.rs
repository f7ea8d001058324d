//! Reconciliation (SPEC §7): till's books against the PSP's settlement files.
//!
//! A run imports one file (`till reconcile FILE`, an upload, or the nightly
//! [`reconcile_day`], which first fetches the day's report from the PSP
//! through Stripe's Reporting API, see [`fetch`]) in steps, each in its own
//! short transactions, with the PSP calls between them:
//! 1. parse the whole file: a line that does not parse refuses it, naming
//!    its line and column, before anything is stored;
//! 2. store it verbatim, identified by its SHA-256 (importing it twice
//!    changes nothing), then its lines;
//! 3. classify each line ([`matching`]) and book what the file alone decides
//!    ([`booking`]: the PSP's fees, its payouts to the bank), in batches;
//! 4. fix `missing_in_till` lines by asking the PSP ([`fix`]) and re-match;
//! 5. report till records no file mentions ([`missing`]), close the run.
//!
//! A run a crash stopped half-way is finished by importing the same file
//! again. Decisions needing a person stay open in the exception queue until
//! resolved with a note.

pub mod booking;
pub mod fetch;
pub mod fix;
pub mod matching;
pub mod missing;
pub mod model;
pub mod parse;
pub mod store;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::db::Tx;
use crate::psp::PspError;
use model::Decision;
pub use model::{Class, Source};
pub use parse::ParseError;
use store::{NewFile, RunCounter, RunView, StoredRow};

/// The outcome of an import, as the CLI prints it and the upload returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// True when this exact file was imported before: nothing changed.
    pub already_imported: bool,
    pub run: RunView,
}

impl RunSummary {
    /// One line per class, for people.
    pub fn to_text(&self) -> String {
        let r = &self.run;
        let mut out = if self.already_imported {
            format!("{} was imported before (run {}); nothing changed\n", r.file_name, r.id)
        } else {
            format!("run {}: {} ({} rows, {} already imported)\n", r.id, r.file_name, r.rows_total, r.rows_skipped)
        };
        for class in Class::ALL {
            let n = r.counts.get(class.as_str()).copied().unwrap_or(0);
            out.push_str(&format!("  {:<18} {n}\n", class.as_str()));
        }
        out.push_str(&format!(
            "  fixed automatically {}, fees booked {}, payouts booked {}, open exceptions {}",
            r.auto_fixed, r.fees_booked, r.payouts_booked, r.open_exceptions
        ));
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file does not parse: nothing was stored or booked.
    #[error("the settlement file was refused: {0}")]
    Invalid(#[from] ParseError),
    /// The PSP did not hand over its report.
    #[error("fetching the settlement report: {0}")]
    Psp(#[from] PspError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Lines stored or classified per transaction: a large file never holds
/// SQLite's write lock for long, so payments keep flowing during an import.
const BATCH_ROWS: usize = 1_000;
/// The pause between batches: long enough for a writer waiting on the lock
/// (SQLite's busy handler polls every 100 ms at most) to get its turn.
const BATCH_PAUSE_MS: u64 = 25;

/// Imports one settlement file and reconciles it. `day` is the UTC day the
/// file reports on when it is known (a fetched daily report), so that an
/// empty day still counts as reported.
pub async fn import_file(
    ctx: &Ctx,
    bytes: Vec<u8>,
    name: String,
    source: Source,
    day: Option<NaiveDate>,
) -> Result<RunSummary, ImportError> {
    let limits = parse::Limits {
        max_bytes: ctx.settings.reconciliation.max_file_bytes,
        max_rows: ctx.settings.reconciliation.max_rows,
    };
    let (bytes, rows) = tokio::task::spawn_blocking(move || parse::parse(&bytes, limits).map(|rows| (bytes, rows)))
        .await
        .context("the parsing task failed")??;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let day = day.map(|d| d.format("%Y-%m-%d").to_string());
    let fetched_day = day.clone();
    let days: BTreeSet<String> = rows.iter().map(|r| r.day().to_string()).chain(day.clone()).collect();
    // One run at a time in this process: two uploads of one file must not race.
    let _running = ctx.checkout_locks.lock("reconciliation:run").await;

    let row_count = rows.len();
    let begun = ctx.db.write(move |tx| begin(tx, &sha256, &name, source, &bytes, row_count, day.as_deref())).await?;
    let (run_id, file_id) = match begun {
        Begun::Finished(run_id) => {
            // A fetched day whose report equals one seen before (an empty day)
            // now counts as reported: look for what it does not mention.
            if fetched_day.is_some() {
                sweep_missing(ctx, None, fetched_day).await?;
            }
            let run = ctx.db.run(move |tx| store::load_run(tx, run_id)).await?;
            return Ok(RunSummary { already_imported: true, run });
        }
        Begun::Run { run_id, file_id } => (run_id, file_id),
    };
    store_rows(ctx, file_id, rows).await?;
    classify_rows(ctx, run_id, file_id).await?;
    let earliest_day = days.first().cloned();
    ctx.db
        .write(move |tx| -> anyhow::Result<()> { days.iter().try_for_each(|day| store::record_day(tx, day, file_id)) })
        .await?;
    let fixed = fix::fix_open(ctx, run_id).await?;
    tracing::info!(run_id, fixed, "reconciliation: automatic fixes done");
    sweep_missing(ctx, Some(run_id), earliest_day).await?;
    let run = ctx
        .db
        .write(move |tx| -> anyhow::Result<RunView> {
            store::finish_run(tx, run_id)?;
            store::load_run(tx, run_id)
        })
        .await?;
    tracing::info!(run_id, counts = ?run.counts, open = run.open_exceptions, "reconciliation run done");
    Ok(RunSummary { already_imported: false, run })
}

/// Stores the lines in batches (all of them unless a crashed run stored them already).
async fn store_rows(ctx: &Ctx, file_id: i64, rows: Vec<parse::SettlementRow>) -> anyhow::Result<()> {
    let expected = rows.len();
    if ctx.db.run(move |tx| store::count_rows(tx, file_id)).await? == expected {
        return Ok(());
    }
    let rows = Arc::new(rows);
    for start in (0..expected).step_by(BATCH_ROWS) {
        let rows = rows.clone();
        let end = (start + BATCH_ROWS).min(expected);
        ctx.db.write_alone(move |tx| store::insert_rows(tx, file_id, &rows[start..end])).await?;
        tokio::time::sleep(Duration::from_millis(BATCH_PAUSE_MS)).await;
    }
    Ok(())
}

/// Classifies the lines in batches, each batch with its decisions and postings
/// in one transaction; the run's cursor moves with them, so a crash resumes here.
async fn classify_rows(ctx: &Ctx, run_id: i64, file_id: i64) -> anyhow::Result<()> {
    loop {
        let classified = ctx.db.write_alone(move |tx| classify_batch(tx, run_id, file_id)).await?;
        if classified == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(BATCH_PAUSE_MS)).await;
    }
}

fn classify_batch(tx: &Tx, run_id: i64, file_id: i64) -> anyhow::Result<usize> {
    let rows = store::next_rows_to_classify(tx, run_id, file_id, BATCH_ROWS)?;
    let mut skipped = 0;
    let mut decided = Vec::with_capacity(rows.len());
    for stored in &rows {
        if matching::already_imported(tx, stored)? {
            skipped += 1;
            continue;
        }
        decided.push((stored, decide(tx, run_id, stored)?));
    }
    // The batch's postings go to the ledger together.
    let postings: Vec<_> =
        decided.iter().filter_map(|(stored, decision)| booking::line_posting(&stored.row, decision)).collect();
    let booked = booking::book(tx, &postings)?;
    store::add_to_run(tx, run_id, RunCounter::Skipped, skipped)?;
    store::add_to_run(tx, run_id, RunCounter::FeesBooked, booked.fees)?;
    store::add_to_run(tx, run_id, RunCounter::PayoutsBooked, booked.payouts)?;
    Ok(rows.len())
}

/// Fetches the PSP's settlement report of one UTC day (a report run, see
/// [`fetch`]) and imports it. The nightly job calls it for yesterday (see
/// [`reconcile_yesterday`]); a run that fails or is not done in time fails
/// the job.
pub async fn reconcile_day(ctx: &Ctx, date: NaiveDate) -> anyhow::Result<RunSummary> {
    let bytes = fetch::fetch_day(&ctx.psp, date, ctx.settings.reconciliation.max_file_bytes)
        .await
        .with_context(|| format!("fetching the PSP's report of {date}"))?;
    let name = format!("settlement report {date}");
    Ok(import_file(ctx, bytes, name, Source::Scheduled, Some(date)).await?)
}

/// What the `reconciliation.schedule` cron job runs: yesterday's report (UTC).
pub async fn reconcile_yesterday(ctx: &Ctx) -> anyhow::Result<RunSummary> {
    let yesterday = chrono::Utc::now().date_naive().pred_opt().context("the calendar ran out")?;
    reconcile_day(ctx, yesterday).await
}

enum Begun {
    /// This file was imported and its run finished before.
    Finished(i64),
    /// A new run, or one a crash left unfinished: store, classify, fix, sweep.
    Run { run_id: i64, file_id: i64 },
}

/// Stores the file and opens its run, unless the same content was imported before.
fn begin(
    tx: &Tx,
    sha256: &str,
    name: &str,
    source: Source,
    raw: &[u8],
    row_count: usize,
    day: Option<&str>,
) -> anyhow::Result<Begun> {
    if let Some((file_id, run_id, finished)) = store::find_file(tx, sha256)? {
        if !finished {
            return Ok(Begun::Run { run_id, file_id });
        }
        if let Some(day) = day {
            store::record_day(tx, day, file_id)?;
        }
        return Ok(Begun::Finished(run_id));
    }
    let file = NewFile { sha256, name, source, raw, row_count };
    let (file_id, run_id) = store::insert_file_and_run(tx, &file)?;
    Ok(Begun::Run { run_id, file_id })
}

/// Classifies one new line and stores the decision; the caller books what it calls for.
fn decide(tx: &Tx, run_id: i64, stored: &StoredRow) -> anyhow::Result<Decision> {
    let decision = matching::classify(tx, stored, None)?;
    store::insert_item(tx, Some(run_id), Some(stored.id), &decision, None)?;
    if let Some(record) = decision.record.as_ref().filter(|_| decision.class.claims_record()) {
        let found = format!("found at line {} ({})", stored.row.line, stored.row.balance_transaction_id);
        store::resolve_missing_in_psp(tx, record.kind, &record.id, &found)?;
    }
    Ok(decision)
}

async fn sweep_missing(ctx: &Ctx, run_id: Option<i64>, earliest_day: Option<String>) -> anyhow::Result<usize> {
    let grace_days = ctx.settings.reconciliation.grace_days;
    ctx.db.write(move |tx| missing::sweep(tx, run_id, chrono::Utc::now(), grace_days, earliest_day.as_deref())).await
}

/// Step 4 of the exception queue: a person closes an exception with a note.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no reconciliation exception {0}")]
    NotFound(i64),
    #[error("exception {0} is not open")]
    NotOpen(i64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Resolves an open exception with a person's note.
pub async fn resolve_exception(
    ctx: &Ctx,
    item_id: i64,
    note: String,
    by: String,
) -> Result<store::ExceptionView, ResolveError> {
    ctx.db
        .write(move |tx| -> Result<store::ExceptionView, ResolveError> {
            if !store::resolve(tx, item_id, &note, &by)? {
                return Err(match store::load_exception(tx, item_id)? {
                    Some(_) => ResolveError::NotOpen(item_id),
                    None => ResolveError::NotFound(item_id),
                });
            }
            store::load_exception(tx, item_id)?.ok_or(ResolveError::NotFound(item_id))
        })
        .await
}
