//! Stripe's Reporting API for the settlement report, so that till fetches
//! its daily file from the sandbox exactly as from Stripe:
//! `POST /v1/reporting/report_runs` (`report_type` =
//! `balance_change_from_activity.itemized.3`, `parameters[interval_start]`
//! and `parameters[interval_end]` in unix seconds, end exclusive, optional
//! `parameters[columns][]`), `GET /v1/reporting/report_runs/{id}`, and the
//! result `GET /v1/files/{id}/contents`.
//!
//! A run is created `pending`; the ticker finishes it [`RUN_DELAY_MS`] later,
//! as Stripe runs reports in the background: it writes the file from the
//! balance transactions of the interval (the settlement report's columns and
//! lines, see `settlement`) and moves the run to `succeeded`, or to `failed`
//! with an `error` when the report would be longer than
//! [`settlement::MAX_REPORT_ROWS`]. A run never leaves a final state.
//!
//! Deliberate differences from Stripe: the data of every moment is available
//! at once (Stripe refuses an `interval_end` past the report type's
//! `data_available_end`, which lags real time); only this report type runs;
//! the filters (`currency`, `reporting_category`, `payout`,
//! `connected_account`) and time zones other than UTC are refused, not
//! ignored, so a caller never gets a file other than the one it asked for.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Shared;
use super::error::{StripeError, truncate};
use super::ids::{new_id, now_ms, now_s};
use super::params::Params;
use super::reply::Reply;
use super::settlement::{self, COLUMNS, MAX_REPORT_ROWS};

/// The one report type the sandbox runs: Stripe's itemized balance change
/// from activity, the settlement report's lines.
pub const REPORT_TYPE: &str = "balance_change_from_activity.itemized.3";
/// A run is finished this long after it is created.
pub const RUN_DELAY_MS: i64 = 300;
/// The latest time an interval may name: 9999-12-31 23:59:59 UTC.
const MAX_TIMESTAMP_S: i64 = 253_402_300_799;
const FILE_PURPOSE: &str = "finance_report_run";
/// Filters of Stripe's report runs that the sandbox does not apply.
const UNSUPPORTED_FILTERS: [&str; 4] = ["currency", "reporting_category", "payout", "connected_account"];
const UTC_NAMES: [&str; 2] = ["Etc/UTC", "UTC"];

#[derive(Debug, Clone, Serialize)]
pub struct ReportRun {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub error: Option<String>,
    pub livemode: bool,
    pub parameters: RunParameters,
    pub report_type: String,
    pub result: Option<File>,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub succeeded_at: Option<i64>,
}

/// The parameters as they were given (`columns` only when given).
#[derive(Debug, Clone, Serialize)]
pub struct RunParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    pub interval_end: i64,
    pub interval_start: i64,
}

/// Stripe's file object; `url` is where its contents are downloaded.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub expires_at: Option<i64>,
    pub filename: String,
    pub purpose: String,
    pub size: i64,
    pub title: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

/// What a create request asks for, checked.
struct RunRequest {
    interval_start: i64,
    interval_end: i64,
    columns: Option<Vec<String>>,
}

/// `POST /v1/reporting/report_runs`.
pub fn create(conn: &Connection, shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let request = RunRequest::parse(&params)?;
    let columns = request.columns.as_ref().map(serde_json::to_string).transpose().map_err(anyhow::Error::from)?;
    let id = new_id("frr_");
    conn.execute(
        "INSERT INTO report_runs (id, report_type, interval_start, interval_end, columns, status, run_at_ms, created)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
        params![
            id,
            REPORT_TYPE,
            request.interval_start,
            request.interval_end,
            columns,
            now_ms() + RUN_DELAY_MS,
            now_s()
        ],
    )
    .map_err(anyhow::Error::from)?;
    let run = load(conn, &shared.base_url, &id)?.ok_or_else(|| anyhow::anyhow!("report run {id} vanished"))?;
    Reply::ok(&run)
}

impl RunRequest {
    fn parse(params: &Params) -> Result<RunRequest, StripeError> {
        let report_type = params.req_str("report_type")?;
        if report_type != REPORT_TYPE {
            return Err(StripeError::invalid(
                "parameter_invalid",
                "report_type",
                format!("The sandbox runs only the report type {REPORT_TYPE}, not '{}'.", truncate(&report_type, 80)),
            ));
        }
        let Some(given) = params.child("parameters")? else {
            return Err(StripeError::missing("parameters[interval_start]"));
        };
        refuse_filters(&given)?;
        let interval_start = given.req_i64("interval_start")?;
        let interval_end = given.req_i64("interval_end")?;
        if !(0..MAX_TIMESTAMP_S).contains(&interval_start) {
            let message = format!("interval_start must be a unix time in seconds from 0 to {MAX_TIMESTAMP_S}.");
            return Err(StripeError::invalid("parameter_invalid", given.name("interval_start"), message));
        }
        if interval_end <= interval_start || interval_end > MAX_TIMESTAMP_S {
            let message =
                format!("interval_end must be after interval_start ({interval_start}) and at most {MAX_TIMESTAMP_S}.");
            return Err(StripeError::invalid("parameter_invalid", given.name("interval_end"), message));
        }
        let columns = parse_columns(&given)?;
        Ok(RunRequest { interval_start, interval_end, columns })
    }
}

fn refuse_filters(given: &Params) -> Result<(), StripeError> {
    for filter in UNSUPPORTED_FILTERS {
        if given.opt_str(filter)?.is_some() {
            let message = format!("The sandbox does not filter report runs by {filter}; leave it out.");
            return Err(StripeError::invalid("parameter_invalid", given.name(filter), message));
        }
    }
    match given.opt_str("timezone")? {
        Some(zone) if !UTC_NAMES.contains(&zone.as_str()) => Err(StripeError::invalid(
            "parameter_invalid",
            given.name("timezone"),
            format!("The sandbox writes its reports in Etc/UTC only, not '{}'.", truncate(&zone, 40)),
        )),
        _ => Ok(()),
    }
}

/// `parameters[columns][]`: each a column of the report, none twice; none given = all.
fn parse_columns(given: &Params) -> Result<Option<Vec<String>>, StripeError> {
    let columns = given.str_list("columns")?;
    for (i, column) in columns.iter().enumerate() {
        let why = if !COLUMNS.contains(&column.as_str()) {
            "is not a column of this report"
        } else if columns[..i].contains(column) {
            "is named twice"
        } else {
            continue;
        };
        let message = format!("The column '{}' {why} (report type {REPORT_TYPE}).", truncate(column, 80));
        return Err(StripeError::invalid("parameter_invalid", given.name("columns"), message));
    }
    Ok((!columns.is_empty()).then_some(columns))
}

/// `GET /v1/reporting/report_runs/{id}`.
pub fn retrieve(conn: &Connection, shared: &Shared, id: &str) -> Result<Reply, StripeError> {
    let run = load(conn, &shared.base_url, id)?
        .ok_or_else(|| StripeError::no_such("reporting.report_run", id, Some("report_run")))?;
    Reply::ok(&run)
}

/// `GET /v1/files/{id}/contents`: the file itself.
pub fn file_contents(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    let contents: Option<String> = conn
        .query_row("SELECT contents FROM files WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(anyhow::Error::from)?;
    let contents = contents.ok_or_else(|| StripeError::no_such("file", id, Some("file")))?;
    Ok(Reply::csv(contents))
}

/// Pending runs whose time has come, at most `limit`.
pub fn due(conn: &Connection, now_ms: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM report_runs WHERE status = 'pending' AND run_at_ms <= ?1 ORDER BY run_at_ms LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// `pending` → `succeeded` with its file, or `failed` with its error; a run
/// already final stays as it is.
pub fn finish(conn: &Connection, id: &str) -> anyhow::Result<()> {
    finish_within(conn, id, MAX_REPORT_ROWS)
}

/// [`finish`], failing a run whose report would have more than `max_lines` lines.
fn finish_within(conn: &Connection, id: &str, max_lines: i64) -> anyhow::Result<()> {
    let pending = conn
        .query_row(
            "SELECT interval_start, interval_end, columns FROM report_runs WHERE id = ?1 AND status = 'pending'",
            [id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?)),
        )
        .optional()?;
    let Some((start, end, columns)) = pending else {
        return Ok(());
    };
    let lines = settlement::count_between(conn, start, end)?;
    let changed = if lines > max_lines {
        let error = format!("The report has {lines} lines, over the {max_lines} allowed: ask for a shorter interval.");
        conn.execute(
            "UPDATE report_runs SET status = 'failed', error = ?2 WHERE id = ?1 AND status = 'pending'",
            params![id, error],
        )?
    } else {
        let file_id = write_file(conn, id, start, end, columns.as_deref())?;
        conn.execute(
            "UPDATE report_runs SET status = 'succeeded', result_file = ?2, succeeded_at = ?3
             WHERE id = ?1 AND status = 'pending'",
            params![id, file_id, now_s()],
        )?
    };
    anyhow::ensure!(changed == 1, "report run {id} left 'pending' while finishing");
    Ok(())
}

/// Writes the run's report as a file: `columns` is the JSON list asked for, or all.
fn write_file(conn: &Connection, run_id: &str, start: i64, end: i64, columns: Option<&str>) -> anyhow::Result<String> {
    let asked: Vec<String> = columns.map(serde_json::from_str).transpose()?.unwrap_or_default();
    let columns: Vec<&str> =
        if asked.is_empty() { COLUMNS.to_vec() } else { asked.iter().map(String::as_str).collect() };
    let csv = settlement::csv_between(conn, start, end, &columns)?;
    let id = new_id("file_");
    conn.execute(
        "INSERT INTO files (id, purpose, type, filename, title, size, contents, created)
         VALUES (?1, ?2, 'csv', ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            FILE_PURPOSE,
            format!("{run_id}.csv"),
            format!("FinanceReportRun {run_id}"),
            i64::try_from(csv.len())?,
            csv,
            now_s()
        ],
    )?;
    Ok(id)
}

/// A run as the API shows it; its file's `url` starts at `base_url`, the
/// sandbox's own address (it is its own files host).
fn load(conn: &Connection, base_url: &str, id: &str) -> anyhow::Result<Option<ReportRun>> {
    let row = conn
        .query_row(
            "SELECT r.id, r.report_type, r.interval_start, r.interval_end, r.columns, r.status, r.error,
                    r.created, r.succeeded_at, f.id, f.filename, f.title, f.size, f.created
             FROM report_runs r LEFT JOIN files f ON f.id = r.result_file WHERE r.id = ?1",
            [id],
            |r| {
                let file = match r.get::<_, Option<String>>(9)? {
                    Some(file_id) => Some(File {
                        url: format!("{base_url}/v1/files/{file_id}/contents"),
                        id: file_id,
                        object: "file",
                        created: r.get(13)?,
                        expires_at: None,
                        filename: r.get(10)?,
                        purpose: FILE_PURPOSE.into(),
                        size: r.get(12)?,
                        title: r.get(11)?,
                        kind: "csv".into(),
                    }),
                    None => None,
                };
                let run = ReportRun {
                    id: r.get(0)?,
                    object: "reporting.report_run",
                    created: r.get(7)?,
                    error: r.get(6)?,
                    livemode: false,
                    parameters: RunParameters { columns: None, interval_end: r.get(3)?, interval_start: r.get(2)? },
                    report_type: r.get(1)?,
                    result: file,
                    status: r.get(5)?,
                    succeeded_at: r.get(8)?,
                };
                Ok((run, r.get::<_, Option<String>>(4)?))
            },
        )
        .optional()?;
    let Some((mut run, columns)) = row else {
        return Ok(None);
    };
    run.parameters.columns = columns.map(|json| serde_json::from_str(&json)).transpose()?;
    Ok(Some(run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::params;

    fn request(body: &str) -> Result<RunRequest, StripeError> {
        RunRequest::parse(&params::parse(body.as_bytes()).unwrap())
    }

    fn refused(body: &str) -> (Option<&'static str>, String) {
        match request(body) {
            Err(StripeError::InvalidRequest { code, param, .. }) => (code, param.unwrap_or_default()),
            Err(e) => panic!("{body}: {e}"),
            Ok(_) => panic!("{body}: accepted"),
        }
    }

    const TYPE: &str = "report_type=balance_change_from_activity.itemized.3";

    #[test]
    fn reads_the_interval_and_the_columns() {
        let ok = request(&format!(
            "{TYPE}&parameters[interval_start]=100&parameters[interval_end]=200\
             &parameters[columns][]=net&parameters[columns][]=payment_metadata%5Bcheckout_id%5D"
        ))
        .unwrap();
        assert_eq!((ok.interval_start, ok.interval_end), (100, 200));
        assert_eq!(ok.columns.unwrap(), ["net", "payment_metadata[checkout_id]"]);
        let all = request(&format!("{TYPE}&parameters[interval_start]=0&parameters[interval_end]=1")).unwrap();
        assert!(all.columns.is_none());
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let interval = "parameters[interval_start]=100&parameters[interval_end]=200";
        let cases = [
            (format!("report_type=balance.summary.1&{interval}"), "parameter_invalid", "report_type"),
            (interval.to_string(), "parameter_missing", "report_type"),
            (TYPE.to_string(), "parameter_missing", "parameters[interval_start]"),
            (format!("{TYPE}&parameters[interval_start]=100"), "parameter_missing", "parameters[interval_end]"),
            (
                format!("{TYPE}&parameters[interval_start]=200&parameters[interval_end]=200"),
                "parameter_invalid",
                "parameters[interval_end]",
            ),
            (
                format!("{TYPE}&parameters[interval_start]=-1&parameters[interval_end]=200"),
                "parameter_invalid",
                "parameters[interval_start]",
            ),
            (
                format!("{TYPE}&parameters[interval_start]=1&parameters[interval_end]=1e3"),
                "parameter_invalid_integer",
                "parameters[interval_end]",
            ),
            (format!("{TYPE}&{interval}&parameters[columns][]=secret"), "parameter_invalid", "parameters[columns]"),
            (
                format!("{TYPE}&{interval}&parameters[columns][]=net&parameters[columns][]=net"),
                "parameter_invalid",
                "parameters[columns]",
            ),
            (format!("{TYPE}&{interval}&parameters[currency]=usd"), "parameter_invalid", "parameters[currency]"),
            (
                format!("{TYPE}&{interval}&parameters[timezone]=Europe/Paris"),
                "parameter_invalid",
                "parameters[timezone]",
            ),
        ];
        for (body, code, param) in cases {
            assert_eq!(refused(&body), (Some(code), param.to_string()), "{body}");
        }
        assert!(request(&format!("{TYPE}&{interval}&parameters[timezone]=Etc/UTC")).is_ok());
    }

    /// A sandbox database with two charges on 2025-01-30 and a run over that
    /// day asking for `columns`; returns the connection's owner and the run's id.
    fn day_with_a_run(columns: &str) -> (tempfile::TempDir, crate::db::Db, String) {
        use super::super::balance::{self, Category, Entry};
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("s.db"), 1, 1000, &crate::db::sandbox_migrations()).unwrap();
        let (_, day) = settlement::parse_day("2025-01-30").unwrap();
        let md = crate::sandbox::params::Metadata::new();
        for (source, amount, hour) in [("ch_1", 2500, 1), ("ch_2", 1000, 2)] {
            let entry = Entry {
                created: day + hour * 3600,
                currency: "usd",
                amount,
                fee: 30,
                category: Category::Charge,
                source_id: source,
                payment_intent: None,
                description: None,
                payment_metadata: &md,
            };
            balance::book(&db.conn().unwrap(), &entry).unwrap();
        }
        let shared = crate::sandbox::Shared {
            base_url: "http://sandbox.test".into(),
            secret_key: "sk_test_x".into(),
            settings: Default::default(),
            faults: crate::sandbox::Faults::new(&Default::default()),
            wake_delivery: Default::default(),
            in_flight: Default::default(),
            requests: Default::default(),
        };
        let body =
            format!("{TYPE}&parameters[interval_start]={day}&parameters[interval_end]={}{columns}", day + 86_400);
        let reply = create(&db.conn().unwrap(), &shared, params::parse(body.as_bytes()).unwrap()).unwrap();
        let run: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!((run["status"].as_str(), run["result"].is_null()), (Some("pending"), true));
        (dir, db, run["id"].as_str().unwrap().to_string())
    }

    #[test]
    fn a_finished_run_has_the_days_lines_in_the_columns_asked_for() {
        let (_dir, db, id) = day_with_a_run("&parameters[columns][0]=net&parameters[columns][1]=source_id");
        let conn = db.conn().unwrap();
        finish(&conn, &id).unwrap();
        let run = load(&conn, "http://sandbox.test", &id).unwrap().unwrap();
        assert_eq!(run.status, "succeeded");
        assert!(run.succeeded_at.is_some());
        let file = run.result.unwrap();
        assert_eq!(file.url, format!("http://sandbox.test/v1/files/{}/contents", file.id));
        let csv = file_contents(&conn, &file.id).unwrap().body;
        assert_eq!(csv, "net,source_id\r\n24.70,ch_1\r\n9.70,ch_2\r\n");
        assert_eq!(file.size, csv.len() as i64);
        finish(&conn, &id).unwrap();
        assert_eq!(load(&conn, "", &id).unwrap().unwrap().result.unwrap().id, file.id, "finished once");
    }

    #[test]
    fn a_run_over_the_line_limit_fails_with_its_reason() {
        let (_dir, db, id) = day_with_a_run("");
        let conn = db.conn().unwrap();
        finish_within(&conn, &id, 1).unwrap();
        let run = load(&conn, "", &id).unwrap().unwrap();
        assert_eq!(run.status, "failed");
        assert!(run.result.is_none());
        assert!(run.error.unwrap().contains("2 lines"));
        let files: i64 = conn.query_row("SELECT COUNT(*) FROM files", [], |r| r.get(0)).unwrap();
        assert_eq!(files, 0);
    }
}
