//! Retried PSP requests are the same request. Each request that may be
//! retried is built once and stored (`psp_requests`) in a transaction
//! before it is first sent; every later attempt sends the stored parameters
//! under the same idempotency key. Stripe answers a key reused with other
//! parameters with `idempotency_error`, so a parameter computed afresh on a
//! retry (a session's `expires_at`, a setting changed meanwhile, a newer
//! till) would turn till's own retry into a failure.

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params}; // seam: transitional (was also Transaction)

/// How long a stored request is kept: a PSP forgets an idempotency key
/// after 24 h (Stripe), so a retry after that starts over anyway.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// A POST to the PSP with its idempotency key, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspRequest {
    pub path: String,
    pub idempotency_key: String,
    /// What till's call log files the call under (an order, a refund, …).
    pub subject_id: String,
    pub form: Vec<(String, String)>,
}

impl PspRequest {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The request stored under `req`'s idempotency key; `req` itself if none
/// was stored yet (it is stored now, and commits with the caller's
/// transaction, before the request is sent).
// seam: transitional: the engine's handle, so that converted callers can pass `tx.raw()`.
pub fn fix(tx: &Connection, req: PspRequest) -> anyhow::Result<PspRequest> {
    if let Some(stored) = load(tx, &req.idempotency_key)? {
        return Ok(stored);
    }
    tx.prepare_cached(
        "INSERT INTO psp_requests (idempotency_key, path, subject_id, form, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        req.idempotency_key,
        req.path,
        req.subject_id,
        serde_json::to_string(&req.form)?,
        crate::db::now_ms()
    ])
    .context("storing a PSP request")?;
    Ok(req)
}

pub fn load(conn: &Connection, idempotency_key: &str) -> anyhow::Result<Option<PspRequest>> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached("SELECT path, subject_id, form FROM psp_requests WHERE idempotency_key = ?1")?
        .query_row([idempotency_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(path, subject_id, form)| {
        let form = serde_json::from_str(&form).with_context(|| format!("stored PSP request {idempotency_key}"))?;
        Ok(PspRequest { path, idempotency_key: idempotency_key.to_string(), subject_id, form })
    })
    .transpose()
}

/// Deletes requests older than [`KEEP_MS`]; returns how many. Run by the cleanup job.
pub fn cleanup(conn: &Connection) -> anyhow::Result<usize> {
    Ok(conn.execute("DELETE FROM psp_requests WHERE created_at_ms < ?1", [crate::db::now_ms() - KEEP_MS])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_stored_is_the_one_every_attempt_sends() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("r.db"), 1, 1000, &crate::db::till_migrations()).unwrap();
        let req = |expires: &str| PspRequest {
            path: "/v1/checkout/sessions".into(),
            idempotency_key: "checkout-1".into(),
            subject_id: "1".into(),
            form: vec![("mode".into(), "payment".into()), ("expires_at".into(), expires.into())],
        };
        let mut conn = db.conn().unwrap();
        let first = crate::db::write_tx(&mut conn, |tx| fix(tx, req("100"))).unwrap();
        let retry = crate::db::write_tx(&mut conn, |tx| fix(tx, req("160"))).unwrap();
        assert_eq!(retry, first, "the retry sends what the first attempt sent");
        assert_eq!(retry.param("expires_at"), Some("100"));
        assert_eq!(load(&conn, "checkout-1").unwrap(), Some(first));
        assert_eq!(load(&conn, "other").unwrap(), None);
    }
}
