//! Reconciliation (SPEC §7): till's books against the PSP's settlement files.
//!
//! A run imports one file (`till reconcile FILE`, an upload, or the nightly
//! [`reconcile_day`]) in steps, each its own transaction, PSP calls between:
//! 1. parse the whole file (refused at its first bad line, nothing stored);
//!    store it verbatim, identified by its SHA-256, so importing it twice
//!    changes nothing; store each line, classify it ([`matching`]), book what
//!    the file alone decides ([`booking`]: fees, payouts to the bank);
//! 2. fix `missing_in_till` lines by asking the PSP ([`fix`]) and re-match;
//! 3. report till records no file mentions ([`missing`]) and close the run.
//!
//! A run that stopped half-way (a crash) is finished by importing the same
//! file again. Decisions needing a person stay open in the exception queue
//! until resolved with a note.

pub mod booking;
pub mod fix;
pub mod matching;
pub mod missing;
pub mod model;
pub mod parse;
pub mod store;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::psp::PspError;
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
    // One run at a time in this process: two uploads of one file must not race.
    let _running = ctx.checkout_locks.lock("reconciliation:run").await;

    let begun = {
        let sha256 = sha256.clone();
        let day = day.map(|d| d.format("%Y-%m-%d").to_string());
        ctx.db.write(move |tx| begin(tx, &sha256, &name, source, &bytes, &rows, day.as_deref())).await?
    };
    let (run_id, earliest_day) = match begun {
        Begun::Finished(run_id) => {
            if day.is_some() {
                // A fetched day whose report equals one seen before (an empty day):
                // the day now counts as reported.
                sweep_missing(ctx, None, None).await?;
            }
            let run = ctx.db.run(move |conn| store::load_run(conn, run_id)).await?;
            return Ok(RunSummary { already_imported: true, run });
        }
        Begun::Run { run_id, earliest_day } => (run_id, earliest_day),
    };
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

/// Fetches the PSP's settlement report of one UTC day and imports it. The
/// nightly job calls it for yesterday (see [`reconcile_yesterday`]).
pub async fn reconcile_day(ctx: &Ctx, date: NaiveDate) -> anyhow::Result<RunSummary> {
    let bytes = ctx
        .psp
        .fetch_settlement_report(date, ctx.settings.reconciliation.max_file_bytes)
        .await
        .map_err(ImportError::from)?;
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
    /// A new run, or one a crash left unfinished: continue with its fixes.
    Run { run_id: i64, earliest_day: Option<String> },
}

/// Step 1, one transaction: store the file and its lines, classify and book
/// each line. A file seen before is not stored again.
fn begin(
    tx: &rusqlite::Transaction,
    sha256: &str,
    name: &str,
    source: Source,
    raw: &[u8],
    rows: &[parse::SettlementRow],
    day: Option<&str>,
) -> anyhow::Result<Begun> {
    if let Some((file_id, run_id, finished)) = store::find_file(tx, sha256)? {
        if let Some(day) = day {
            store::record_day(tx, day, file_id)?;
        }
        return Ok(if finished { Begun::Finished(run_id) } else { Begun::Run { run_id, earliest_day: None } });
    }
    let file = NewFile { sha256, name, source, raw, row_count: rows.len() };
    let (file_id, run_id) = store::insert_file_and_run(tx, &file)?;
    let mut skipped = 0;
    let mut booked = booking::Booked::default();
    for row in rows {
        let stored = StoredRow { id: store::insert_row(tx, file_id, row)?, file_id, row: row.clone() };
        if matching::already_imported(tx, &stored)? {
            skipped += 1;
            continue;
        }
        let line_booked = decide(tx, run_id, &stored)?;
        booked.fees += line_booked.fees;
        booked.payouts += line_booked.payouts;
        store::record_day(tx, row.day(), file_id)?;
    }
    if let Some(day) = day {
        store::record_day(tx, day, file_id)?;
    }
    store::add_to_run(tx, run_id, RunCounter::Skipped, skipped)?;
    store::add_to_run(tx, run_id, RunCounter::FeesBooked, booked.fees)?;
    store::add_to_run(tx, run_id, RunCounter::PayoutsBooked, booked.payouts)?;
    let earliest_day = rows.iter().map(|r| r.day()).chain(day).min().map(str::to_string);
    Ok(Begun::Run { run_id, earliest_day })
}

/// Classifies one new line, stores the decision and books what it calls for.
fn decide(tx: &rusqlite::Transaction, run_id: i64, stored: &StoredRow) -> anyhow::Result<booking::Booked> {
    let decision = matching::classify(tx, stored, None)?;
    store::insert_item(tx, Some(run_id), Some(stored.id), &decision, None)?;
    if let Some(record) = decision.record.as_ref().filter(|_| decision.class.claims_record()) {
        let found = format!("found at line {} ({})", stored.row.line, stored.row.balance_transaction_id);
        store::resolve_missing_in_psp(tx, record.kind, &record.id, &found)?;
    }
    booking::book_line(tx, &stored.row, &decision)
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

/// Validates `reconciliation.schedule` (cron with seconds, as the scheduler reads it; empty disables).
pub fn check_schedule(cron: &str) -> Result<(), String> {
    if cron.is_empty() {
        return Ok(());
    }
    tokio_cron_scheduler::Job::new(cron, |_, _| {}).map(|_| ()).map_err(|e| e.to_string())
}
