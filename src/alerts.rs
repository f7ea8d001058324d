//! Alerts: what a person must look at (dead letters, unfinished payments,
//! failed audits). One open alert per kind and subject; raising it again
//! while open changes nothing.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

/// Opens an alert unless one is open for the same kind and subject.
/// Returns whether it is new.
// seam: transitional: the engine's handle, so that converted callers can pass `tx.raw()`.
pub fn raise(tx: &Connection, kind: &str, subject_id: &str, message: &str) -> anyhow::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO alerts (kind, subject_id, message, status, created_at)
             VALUES (?1, ?2, ?3, 'open', ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![kind, subject_id, message, crate::db::now()])?;
    if n == 1 {
        tracing::warn!(kind, subject = subject_id, message, "alert raised");
    }
    Ok(n == 1)
}

pub fn resolve(tx: &Transaction, kind: &str, subject_id: &str, resolution: &str) -> anyhow::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE alerts SET status = 'resolved', resolved_at = ?3, resolution = ?4
             WHERE kind = ?1 AND subject_id = ?2 AND status = 'open'",
        )?
        .execute(params![kind, subject_id, crate::db::now(), resolution])?;
    Ok(n == 1)
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
pub fn list_open(conn: &Connection, limit: u32) -> anyhow::Result<Vec<AlertView>> {
    let mut st = conn.prepare_cached(
        "SELECT id, kind, subject_id, message, status, created_at, resolved_at
         FROM alerts WHERE status = 'open' ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st
        .query_map([limit], |r| {
            Ok(AlertView {
                id: r.get(0)?,
                kind: r.get(1)?,
                subject_id: r.get(2)?,
                message: r.get(3)?,
                status: r.get(4)?,
                created_at: r.get(5)?,
                resolved_at: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn open_count(conn: &Connection) -> anyhow::Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM alerts WHERE status = 'open'", [], |r| r.get(0))?)
}
