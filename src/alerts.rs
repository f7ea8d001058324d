//! Alerts: what a person must look at (dead letters, unfinished payments,
//! failed audits). One open alert per kind and subject; raising it again
//! while open changes nothing. This module owns `alerts`.

use serde::Serialize;

use crate::db::{Tx, params};

/// Opens an alert unless one is open for the same kind and subject.
/// Returns whether it is new.
pub fn raise(tx: &Tx, kind: &str, subject_id: &str, message: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "INSERT INTO alerts (kind, subject_id, message, status, created_at)
         VALUES ($1, $2, $3, 'open', $4) ON CONFLICT DO NOTHING",
        params![kind, subject_id, message, crate::db::now()],
    )?;
    if n == 1 {
        tracing::warn!(kind, subject = subject_id, message, "alert raised");
    }
    Ok(n == 1)
}

/// Opens an alert, or rewrites the message of the open one of this kind
/// and subject: unlike [`raise`], it always changes a row, so it is also a
/// probe of whether the storage takes writes. Returns whether it is new.
pub fn raise_or_restate(tx: &Tx, kind: &str, subject_id: &str, message: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE alerts SET message = $3 WHERE kind = $1 AND subject_id = $2 AND status = 'open'",
        params![kind, subject_id, message],
    )?;
    if n == 1 {
        return Ok(false);
    }
    raise(tx, kind, subject_id, message)
}

/// Resolves the open alert of this kind and subject; false if none is open.
pub fn resolve(tx: &Tx, kind: &str, subject_id: &str, resolution: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = $3, resolution = $4
         WHERE kind = $1 AND subject_id = $2 AND status = 'open'",
        params![kind, subject_id, crate::db::now(), resolution],
    )?;
    Ok(n == 1)
}

/// The subjects of the open alerts of one kind.
pub fn open_subjects(tx: &Tx, kind: &str) -> anyhow::Result<Vec<String>> {
    tx.query_map("SELECT subject_id FROM alerts WHERE kind = $1 AND status = 'open'", params![kind], |r| r.get(0))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: i64,
    pub kind: String,
    pub subject_id: String,
    pub message: String,
    pub status: String,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

/// Open alerts, newest first.
pub fn list_open(tx: &Tx, limit: u32) -> anyhow::Result<Vec<AlertView>> {
    tx.query_map(
        "SELECT id, kind, subject_id, message, status, created_at, resolved_at
         FROM alerts WHERE status = 'open' ORDER BY id DESC LIMIT $1",
        params![limit],
        |r| {
            Ok(AlertView {
                id: r.get(0)?,
                kind: r.get(1)?,
                subject_id: r.get(2)?,
                message: r.get(3)?,
                status: r.get(4)?,
                created_at: r.get(5)?,
                resolved_at: r.get(6)?,
            })
        },
    )
}

pub fn open_count(tx: &Tx) -> anyhow::Result<i64> {
    tx.query_value("SELECT COUNT(*) FROM alerts WHERE status = 'open'", params![])
}
