//! `/admin/jobs` and `/admin/alerts`: the durable queue by status, its dead
//! letters, and the alerts that need a person.

use crate::admin::format;
use crate::db::{Tx, params};

#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub id: i64,
    pub kind: String,
    pub subject_id: String,
    /// Where the subject can be seen in the dashboard, if anywhere.
    pub subject_link: Option<String>,
    pub attempts: i64,
    pub last_error: String,
    pub updated_at: String,
    pub discarded: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub subject_id: String,
    pub attempts: String,
    pub run_at: String,
    pub last_error: String,
}

#[derive(Debug, Clone)]
pub struct JobsPage {
    pub counts: Vec<(String, i64)>,
    pub dead: Vec<DeadLetterRow>,
    pub discarded: Vec<DeadLetterRow>,
    pub running: Vec<JobRow>,
    pub queued: Vec<JobRow>,
}

const LISTED: u32 = 100;

pub fn dead_letter_count(tx: &Tx) -> anyhow::Result<i64> {
    tx.query_value("SELECT COUNT(*) FROM jobs WHERE status = 'dead' AND discarded_at IS NULL", params![])
}

fn subject_link(kind: &str, subject: &str) -> Option<String> {
    match kind {
        "charge_order" | "sync_checkout" => Some(format!("/admin/payments/{subject}")),
        _ => None,
    }
}

fn dead_rows(tx: &Tx, discarded: bool, limit: u32) -> anyhow::Result<Vec<DeadLetterRow>> {
    let sql = if discarded {
        "SELECT id, kind, subject_id, attempts, last_error, updated_at, discarded_at, discarded_by FROM jobs
         WHERE status = 'dead' AND discarded_at IS NOT NULL ORDER BY id DESC LIMIT $1"
    } else {
        "SELECT id, kind, subject_id, attempts, last_error, updated_at, discarded_at, discarded_by FROM jobs
         WHERE status = 'dead' AND discarded_at IS NULL ORDER BY id DESC LIMIT $1"
    };
    tx.query_map(sql, params![limit], |r| {
        let kind: String = r.get(1)?;
        let subject: String = r.get(2)?;
        let discarded_at: Option<String> = r.get(6)?;
        let discarded_by: Option<String> = r.get(7)?;
        Ok(DeadLetterRow {
            id: r.get(0)?,
            subject_link: subject_link(&kind, &subject),
            kind,
            subject_id: subject,
            attempts: r.get(3)?,
            last_error: r.get::<Option<String>>(4)?.unwrap_or_default(),
            updated_at: format::time(&r.get::<String>(5)?),
            discarded: discarded_at.map(|at| format!("{} by {}", format::time(&at), discarded_by.unwrap_or_default())),
        })
    })
}

/// Dead letters that need a person, newest first.
pub fn dead_letters(tx: &Tx, limit: u32) -> anyhow::Result<Vec<DeadLetterRow>> {
    dead_rows(tx, false, limit)
}

fn live_jobs(tx: &Tx, status: &str) -> anyhow::Result<Vec<JobRow>> {
    tx.query_map(
        "SELECT id, kind, subject_id, attempts, max_attempts, run_at_ms, last_error FROM jobs
         WHERE status = $1 ORDER BY run_at_ms LIMIT $2",
        params![status, LISTED],
        |r| {
            Ok(JobRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                subject_id: r.get(2)?,
                attempts: format!("{} of {}", r.get::<i64>(3)?, r.get::<i64>(4)?),
                run_at: format::time_ms(r.get(5)?),
                last_error: r.get::<Option<String>>(6)?.unwrap_or_default(),
            })
        },
    )
}

pub fn jobs_page(tx: &Tx) -> anyhow::Result<JobsPage> {
    let mut counts = Vec::new();
    for status in ["queued", "running", "dead", "done"] {
        let n: i64 = tx.query_value("SELECT COUNT(*) FROM jobs WHERE status = $1", params![status])?;
        counts.push((status.to_string(), n));
    }
    Ok(JobsPage {
        counts,
        dead: dead_rows(tx, false, LISTED)?,
        discarded: dead_rows(tx, true, 20)?,
        running: live_jobs(tx, "running")?,
        queued: live_jobs(tx, "queued")?,
    })
}

#[derive(Debug, Clone)]
pub struct AlertItem {
    pub id: i64,
    pub kind: String,
    pub subject_id: String,
    pub subject_link: Option<String>,
    pub message: String,
    pub created_at: String,
    pub resolved_at: String,
    pub resolution: String,
}

#[derive(Debug, Clone)]
pub struct AlertsPage {
    pub open: Vec<AlertItem>,
    pub resolved: Vec<AlertItem>,
}

fn alerts(tx: &Tx, status: &str, limit: u32) -> anyhow::Result<Vec<AlertItem>> {
    tx.query_map(
        "SELECT a.id, a.kind, a.subject_id, a.message, a.created_at, a.resolved_at, a.resolution,
                (SELECT o.checkout_id FROM payment_orders o WHERE o.payment_order_id = a.subject_id)
         FROM alerts a WHERE a.status = $1 ORDER BY a.id DESC LIMIT $2",
        params![status, limit],
        |r| {
            let kind: String = r.get(1)?;
            let subject: String = r.get(2)?;
            let checkout: Option<String> = r.get(7)?;
            let link = checkout
                .map(|c| format!("/admin/payments/{c}"))
                .or_else(|| subject.strip_prefix("job:").map(|_| "/admin/jobs".to_string()));
            Ok(AlertItem {
                id: r.get(0)?,
                kind,
                subject_id: subject,
                subject_link: link,
                message: r.get(3)?,
                created_at: format::time(&r.get::<String>(4)?),
                resolved_at: r.get::<Option<String>>(5)?.map(|t| format::time(&t)).unwrap_or_default(),
                resolution: r.get::<Option<String>>(6)?.unwrap_or_default(),
            })
        },
    )
}

pub fn alerts_page(tx: &Tx) -> anyhow::Result<AlertsPage> {
    Ok(AlertsPage { open: alerts(tx, "open", 200)?, resolved: alerts(tx, "resolved", 50)? })
}

/// (kind, subject, status) of an alert, for resolving it through `alerts::resolve`.
pub fn alert_key(tx: &Tx, id: i64) -> anyhow::Result<Option<(String, String, String)>> {
    tx.query_opt("SELECT kind, subject_id, status FROM alerts WHERE id = $1", params![id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}
