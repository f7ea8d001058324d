//! The request log: one row per API request served with the right secret
//! key, with the `Stripe-Version` it carried (or that it carried none) and
//! the version it was served with, newest [`MAX_ROWS`] kept. Read through the
//! sandbox extension `GET /v1/sandbox/requests?limit=` (newest first), as
//! Stripe's Dashboard lists an account's requests. Requests to `/v1/sandbox/*`
//! are not logged: they are the test harness, not Stripe's API.
//!
//! Rows are written in batches by a background task, so that a request
//! costs no write of its own; a request hands its row over before its reply
//! goes out, and reading the log first waits for every row handed over
//! before ([`RequestLog::flushed`]), so a client that has its reply finds its
//! request there. The log is secondary: a full buffer drops rows (logged).

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::error::StripeError;
use super::params::Params;
use super::reply::Reply;
use crate::db::Db;

/// Rows kept; each insert deletes the ones that fall past it.
pub const MAX_ROWS: i64 = 10_000;
/// Rows waiting for the writer, at most; past it they are dropped.
const BUFFER: usize = 16_384;
/// Rows written in one transaction, at most.
const BATCH: usize = 1_024;
/// Stripe's bounds and default for a list's `limit`.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 10;

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// `req_…`, as the response's `Request-Id` header said.
    pub id: String,
    pub object: &'static str,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub method: String,
    pub path: String,
    /// The header as sent; `None`: the request had none.
    pub stripe_version: Option<String>,
    /// The version it was served with; `None`: refused for its version.
    pub served_version: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
}

impl Entry {
    pub const OBJECT: &'static str = "sandbox.request";

    fn is_logged(&self) -> bool {
        !self.path.starts_with("/v1/sandbox/")
    }
}

enum Message {
    Row(Entry),
    /// Answered once every row sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle requests log through.
pub struct RequestLog {
    messages: mpsc::Sender<Message>,
}

impl RequestLog {
    /// Starts the writer on `runtime`.
    pub fn spawn(db: Db, runtime: &tokio::runtime::Handle) -> RequestLog {
        let (messages, rx) = mpsc::channel(BUFFER);
        runtime.spawn(write_batches(db, rx));
        RequestLog { messages }
    }

    /// Hands `entry` to the writer, without waiting for it.
    pub fn record(&self, entry: Entry) {
        if entry.is_logged() && self.messages.try_send(Message::Row(entry)).is_err() {
            tracing::warn!("the sandbox's request log is full; a request was not logged");
        }
    }

    /// Returns once every entry recorded before this call is written.
    pub async fn flushed(&self) {
        let (done, written) = oneshot::channel();
        if self.messages.send(Message::Flush(done)).await.is_ok() {
            // An error: the writer stopped, and nothing more will be written.
            let _ = written.await;
        }
    }
}

/// A log with no writer, for unit tests of core functions (which log nothing).
#[cfg(test)]
impl Default for RequestLog {
    fn default() -> Self {
        RequestLog { messages: mpsc::channel(1).0 }
    }
}

async fn write_batches(db: Db, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut rows = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for message in batch.drain(..) {
            match message {
                Message::Row(entry) => rows.push(entry),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !rows.is_empty() {
            let written: anyhow::Result<()> =
                db.write_sqlite(move |tx| rows.iter().try_for_each(|row| insert(tx, row, MAX_ROWS))).await;
            if let Err(e) = written {
                tracing::warn!(error = format!("{e:#}"), "could not write the sandbox's request log");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Inserts `e` and deletes what falls past the newest `keep` rows.
fn insert(conn: &Connection, e: &Entry, keep: i64) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO request_log (request_id, created_ms, method, path, stripe_version, served_version,
                                  idempotency_key, http_status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.id,
        e.created_ms,
        e.method,
        e.path,
        e.stripe_version,
        e.served_version,
        e.idempotency_key,
        e.status
    ])?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM request_log WHERE seq <= ?1")?.execute([seq - keep])?;
    Ok(())
}

#[derive(Serialize)]
struct List {
    object: &'static str,
    url: &'static str,
    has_more: bool,
    data: Vec<Entry>,
}

/// `GET /v1/sandbox/requests?limit=`: the newest requests first, `limit`
/// 1 to 100 (default 10) as in Stripe's lists.
pub fn list(conn: &Connection, query: &Params) -> Result<Reply, StripeError> {
    let limit = query.opt_i64("limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(StripeError::invalid(
            "parameter_invalid_integer",
            "limit",
            format!("Invalid limit: must be between 1 and {MAX_LIMIT}."),
        ));
    }
    let mut st = conn
        .prepare_cached(
            "SELECT request_id, created_ms, method, path, stripe_version, served_version, idempotency_key,
                    http_status
             FROM request_log ORDER BY seq DESC LIMIT ?1",
        )
        .map_err(anyhow::Error::from)?;
    let mut data = st
        .query_map([limit + 1], |r| {
            Ok(Entry {
                id: r.get(0)?,
                object: Entry::OBJECT,
                created_ms: r.get(1)?,
                method: r.get(2)?,
                path: r.get(3)?,
                stripe_version: r.get(4)?,
                served_version: r.get(5)?,
                idempotency_key: r.get(6)?,
                status: r.get(7)?,
            })
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(anyhow::Error::from)?;
    let has_more = data.len() as i64 > limit;
    data.truncate(limit as usize);
    Reply::ok(&List { object: "list", url: "/v1/sandbox/requests", has_more, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, sandbox_migrations};

    fn entry(n: i64) -> Entry {
        Entry {
            id: format!("req_{n}"),
            object: Entry::OBJECT,
            created_ms: n,
            method: "GET".into(),
            path: "/v1/refunds/re_1".into(),
            stripe_version: None,
            served_version: Some("2026-03-25.dahlia".into()),
            idempotency_key: None,
            status: 200,
        }
    }

    #[test]
    fn keeps_the_newest_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db"), 1, 1000, &sandbox_migrations()).unwrap();
        let conn = db.conn().unwrap();
        for n in 0..8 {
            insert(&conn, &entry(n), 3).unwrap();
        }
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM request_log", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 3);
        let oldest: String =
            conn.query_row("SELECT request_id FROM request_log ORDER BY seq LIMIT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(oldest, "req_5", "the five oldest went");
    }

    #[test]
    fn the_sandbox_extensions_are_not_logged() {
        let mut e = entry(1);
        assert!(e.is_logged());
        e.path = "/v1/sandbox/requests".into();
        assert!(!e.is_logged());
    }
}
