//! `/admin/reconciliation`: the runs (one per imported settlement file) and
//! the exception queue, read through `reconciliation::store`.

use crate::admin::format;
use crate::db::{Tx, params};
use crate::reconciliation::store::{self, ExceptionView, RunView};

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub file_name: String,
    pub source: String,
    pub status: String,
    pub rows_total: i64,
    pub rows_skipped: i64,
    /// The classes with a count, "matched 12 · amount_mismatch 1".
    pub classes: String,
    pub auto_fixed: i64,
    pub fees_booked: i64,
    pub payouts_booked: i64,
    pub open_exceptions: i64,
    pub started_at: String,
}

#[derive(Debug, Clone)]
pub struct ExceptionRow {
    pub id: i64,
    pub run_id: String,
    pub class: String,
    pub rule: String,
    pub first: String,
    pub psp: String,
    pub till: String,
    /// Where till's record can be seen, if anywhere.
    pub till_link: Option<String>,
    pub fix: String,
    pub resolution: String,
    pub created_at: String,
}

pub struct ReconciliationPage {
    pub runs: Vec<RunRow>,
    pub runs_more: bool,
    pub open: Vec<ExceptionRow>,
    pub open_more: bool,
    pub resolved: Vec<ExceptionRow>,
}

fn run_row(r: RunView) -> RunRow {
    let classes = r.counts.iter().filter(|(_, n)| **n > 0).map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>();
    RunRow {
        id: r.id,
        file_name: r.file_name,
        source: r.source,
        status: r.status,
        rows_total: r.rows_total,
        rows_skipped: r.rows_skipped,
        classes: if classes.is_empty() { "—".into() } else { classes.join(" · ") },
        auto_fixed: r.auto_fixed,
        fees_booked: r.fees_booked,
        payouts_booked: r.payouts_booked,
        open_exceptions: r.open_exceptions,
        started_at: format::time(&r.started_at),
    }
}

fn record_link(tx: &Tx, kind: &str, id: &str) -> anyhow::Result<Option<String>> {
    let checkout = match kind {
        "checkout" | "payment_order" => crate::admin::views::payments::checkout_of(tx, id)?,
        "refund" => tx.query_opt(
            "SELECT o.checkout_id FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id
             WHERE r.refund_id = $1",
            params![id],
            |r| r.get::<String>(0),
        )?,
        "payout" => return Ok(Some("/admin/payouts".to_string())),
        _ => return Ok(None),
    };
    Ok(checkout.map(|c| format!("/admin/payments/{c}")))
}

pub fn exception_row(tx: &Tx, e: ExceptionView) -> anyhow::Result<ExceptionRow> {
    let psp = e.psp.as_ref().map_or_else(
        || "not in any file".to_string(),
        |p| {
            format!(
                "{} line {}: {} {} {} (fee {}, net {})",
                p.file_name, p.line, p.reporting_category, p.gross, p.currency, p.fee, p.net
            )
        },
    );
    let till = e.till.as_ref().map_or_else(
        || "no record in till".to_string(),
        |t| {
            let amount = match (&t.amount, &t.currency) {
                (Some(a), Some(c)) => format!(" {a} {c}"),
                _ => String::new(),
            };
            let status = t.status.as_ref().map_or(String::new(), |s| format!(" ({s})"));
            format!("{} {}{amount}{status}", t.record_type, format::short_id(&t.record_id))
        },
    );
    let till_link = match &e.till {
        Some(t) => record_link(tx, &t.record_type, &t.record_id)?,
        None => None,
    };
    let resolution = match (&e.note, &e.resolved_by, &e.resolved_at) {
        (Some(note), Some(by), Some(at)) => format!("{note} — {by}, {}", format::time(at)),
        _ => String::new(),
    };
    Ok(ExceptionRow {
        id: e.id,
        run_id: e.run_id.map_or_else(|| "—".into(), |r| r.to_string()),
        first: if e.first_class == e.class {
            String::new()
        } else {
            format!("first {} ({})", e.first_class, e.first_rule)
        },
        class: e.class,
        rule: e.rule,
        psp,
        till,
        till_link,
        fix: e.fix.unwrap_or_default(),
        resolution,
        created_at: format::time(&e.created_at),
    })
}

fn exceptions(tx: &Tx, status: &str, limit: u32) -> anyhow::Result<(Vec<ExceptionRow>, bool)> {
    let (items, more) = store::list_exceptions(tx, Some(status), None, limit)?;
    let rows = items.into_iter().map(|e| exception_row(tx, e)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok((rows, more))
}

pub fn page(tx: &Tx) -> anyhow::Result<ReconciliationPage> {
    let (runs, runs_more) = store::list_runs(tx, None, 20)?;
    let (open, open_more) = exceptions(tx, "open", 100)?;
    let (resolved, _) = exceptions(tx, "resolved", 20)?;
    Ok(ReconciliationPage { runs: runs.into_iter().map(run_row).collect(), runs_more, open, open_more, resolved })
}

/// For the overview: how many exceptions are open, and the newest few.
pub fn open_exceptions(tx: &Tx, limit: u32) -> anyhow::Result<(i64, Vec<ExceptionRow>)> {
    let count = tx.query_value("SELECT COUNT(*) FROM reconciliation_items WHERE status = 'open'", params![])?;
    Ok((count, exceptions(tx, "open", limit)?.0))
}
