//! Fetching the PSP's report of one UTC day the way Stripe serves it: a
//! report run of `balance_change_from_activity.itemized.3` over the day
//! (`POST /v1/reporting/report_runs`), read again until it has succeeded
//! (`GET /v1/reporting/report_runs/{id}`), then its file downloaded
//! (`GET /v1/files/{id}/contents` at `psp.files_base`). Nothing here touches
//! the database: the caller imports the bytes afterwards, so no transaction
//! is ever held across these calls.

use std::future::Future;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};

use super::parse::REPORT_COLUMNS;
use crate::psp::types::{ReportRun, ReportRunOutcome};
use crate::psp::{PspClient, PspError, ReportRunRequest};

/// Stripe's itemized report of the balance's changes, one line per balance
/// transaction: the settlement file till reconciles.
pub const REPORT_TYPE: &str = "balance_change_from_activity.itemized.3";
const SECONDS_PER_DAY: i64 = 86_400;

/// How a pending run is read again: the first time after `first_ms`, the
/// pause doubling up to `max_ms`, `reads` times at most.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub first_ms: u64,
    pub max_ms: u64,
    pub reads: u32,
}

/// Stripe runs a day's itemized report in seconds to minutes. These reads
/// (0.2 s, 0.4 s, … doubling to 30 s between them) give it about 17
/// minutes; past that the job fails, as a failed job is reported today, and
/// the next run of the schedule starts over. The sandbox is done in under a
/// second.
pub const POLLING: Polling = Polling { first_ms: 200, max_ms: 30_000, reads: 40 };

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the PSP's report run {run_id} failed: {reason}")]
    RunFailed { run_id: String, reason: String },
    #[error("the PSP's report run {run_id} was still pending after {reads} reads")]
    StillPending { run_id: String, reads: u32 },
    /// The download ended early or carried something else.
    #[error("the PSP's file {file_id} has {got} bytes where its report run said {expected}")]
    SizeMismatch { file_id: String, expected: i64, got: usize },
    #[error(transparent)]
    Psp(#[from] PspError),
}

/// The report run asked for a UTC day: [00:00, next 00:00) in unix seconds,
/// with every column till reads.
pub fn day_request(date: NaiveDate) -> ReportRunRequest {
    let interval_start = date.and_time(NaiveTime::MIN).and_utc().timestamp();
    ReportRunRequest {
        report_type: REPORT_TYPE.into(),
        interval_start,
        // Unix time has no leap seconds: every UTC day is 86,400 of them.
        interval_end: interval_start + SECONDS_PER_DAY,
        columns: REPORT_COLUMNS.iter().map(|c| c.to_string()).collect(),
    }
}

/// The PSP's report of `date` as bytes, refused past `max_bytes`.
pub async fn fetch_day(psp: &PspClient, date: NaiveDate, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let subject = format!("settlement_report:{date}");
    let run = psp.create_report_run(&day_request(date), &subject).await?;
    tracing::info!(run_id = %run.id, %date, status = %run.status, "reconciliation: report run created");
    let (file_id, size) = wait_for_file(&run, POLLING, || psp.retrieve_report_run(&run.id, &subject)).await?;
    let bytes = psp.download_file(&file_id, max_bytes, &subject).await?;
    match size {
        Some(expected) if usize::try_from(expected).ok() != Some(bytes.len()) => {
            Err(FetchError::SizeMismatch { file_id, expected, got: bytes.len() })
        }
        _ => Ok(bytes),
    }
}

/// Reads the run again until it is final, as `polling` allows: its file's id
/// and size, or why there is none. A read without an answer (timeout, 5xx)
/// changes nothing at the PSP, so it is simply made again after the next
/// pause; the last one's error is the job's.
async fn wait_for_file<F, Fut>(
    created: &ReportRun,
    polling: Polling,
    mut retrieve: F,
) -> Result<(String, Option<i64>), FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ReportRun, PspError>>,
{
    let mut answer = Ok(created.outcome());
    let mut pause_ms = polling.first_ms;
    for _ in 0..polling.reads {
        match answer {
            Ok(ReportRunOutcome::Succeeded { file_id, size }) => return Ok((file_id, size)),
            Ok(ReportRunOutcome::Failed(reason)) => {
                return Err(FetchError::RunFailed { run_id: created.id.clone(), reason });
            }
            Ok(ReportRunOutcome::Pending) => {}
            Err(PspError::Unknown(why)) => {
                tracing::warn!(run_id = %created.id, error = %why, "reconciliation: no answer about the report run");
            }
            Err(refused @ (PspError::Refused { .. } | PspError::Rejected { .. })) => return Err(refused.into()),
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        pause_ms = pause_ms.saturating_mul(2).min(polling.max_ms);
        answer = retrieve().await.map(|run| run.outcome());
    }
    match answer? {
        ReportRunOutcome::Succeeded { file_id, size } => Ok((file_id, size)),
        ReportRunOutcome::Failed(reason) => Err(FetchError::RunFailed { run_id: created.id.clone(), reason }),
        ReportRunOutcome::Pending => Err(FetchError::StillPending { run_id: created.id.clone(), reads: polling.reads }),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const FAST: Polling = Polling { first_ms: 1, max_ms: 2, reads: 3 };

    fn run(status: &str, file: Option<&str>, error: Option<&str>) -> ReportRun {
        serde_json::from_value(serde_json::json!({
            "id": "frr_1", "object": "reporting.report_run", "status": status, "error": error,
            "result": file.map(|id| serde_json::json!({"id": id, "object": "file", "size": 42})),
        }))
        .unwrap()
    }

    /// Waits on a run created pending whose reads answer `answers` in turn;
    /// returns the outcome and how many reads were made.
    async fn wait(answers: Vec<Result<ReportRun, PspError>>) -> (Result<(String, Option<i64>), FetchError>, usize) {
        let reads = Cell::new(0);
        let outcome = wait_for_file(&run("pending", None, None), FAST, || {
            let n = reads.get();
            reads.set(n + 1);
            let answer = answers.get(n).cloned().unwrap_or_else(|| Ok(run("pending", None, None)));
            async move { answer }
        })
        .await;
        (outcome, reads.get())
    }

    fn unknown() -> Result<ReportRun, PspError> {
        Err(PspError::Unknown("timed out waiting for the PSP".into()))
    }

    #[tokio::test]
    async fn reads_a_pending_run_until_it_has_its_file() {
        let answers = vec![Ok(run("pending", None, None)), unknown(), Ok(run("succeeded", Some("file_1"), None))];
        let (outcome, reads) = wait(answers).await;
        assert_eq!(outcome.unwrap(), ("file_1".to_string(), Some(42)));
        assert_eq!(reads, 3);
    }

    #[tokio::test]
    async fn a_run_still_pending_after_the_last_read_is_an_error() {
        let (outcome, reads) = wait(vec![]).await;
        assert!(matches!(outcome, Err(FetchError::StillPending { reads: 3, .. })), "{outcome:?}");
        assert_eq!(reads, 3, "never more reads than allowed");
        let (outcome, _) = wait(vec![Ok(run("pending", None, None)), Ok(run("pending", None, None)), unknown()]).await;
        assert!(matches!(outcome, Err(FetchError::Psp(PspError::Unknown(_)))), "the last read's error: {outcome:?}");
    }

    #[tokio::test]
    async fn a_failed_or_refused_run_stops_the_reads() {
        let (outcome, reads) = wait(vec![Ok(run("failed", None, Some("too large")))]).await;
        assert!(matches!(outcome, Err(FetchError::RunFailed { ref reason, .. }) if reason == "too large"));
        assert_eq!(reads, 1);
        let refused = PspError::Refused {
            status: 404,
            code: "resource_missing".into(),
            decline_code: None,
            message: "No such reporting.report_run".into(),
        };
        let (outcome, reads) = wait(vec![Err(refused)]).await;
        assert!(matches!(outcome, Err(FetchError::Psp(PspError::Refused { status: 404, .. }))), "{outcome:?}");
        assert_eq!(reads, 1);
        let (outcome, _) = wait(vec![Ok(run("succeeded", None, None))]).await;
        assert!(matches!(outcome, Err(FetchError::RunFailed { .. })), "succeeded without a file: {outcome:?}");
    }

    #[tokio::test]
    async fn a_run_done_when_created_is_not_read_again() {
        let reads = Cell::new(0);
        let outcome = wait_for_file(&run("succeeded", Some("file_9"), None), FAST, || {
            reads.set(reads.get() + 1);
            async { unknown() }
        })
        .await;
        assert_eq!(outcome.unwrap().0, "file_9");
        assert_eq!(reads.get(), 0);
    }

    #[test]
    fn a_day_is_its_utc_interval_with_every_column() {
        let request = day_request(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap());
        assert_eq!((request.interval_start, request.interval_end), (1_738_281_600, 1_738_368_000));
        assert_eq!(request.report_type, "balance_change_from_activity.itemized.3");
        assert_eq!(request.columns, REPORT_COLUMNS);
    }
}
