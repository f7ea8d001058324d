//! `Idempotency-Key` as Stripe honours it, kept 24 h: the key's row is
//! inserted first as a lock ('running'); the work and the stored reply are
//! committed together in one transaction ('done'), so a reply is stored if
//! and only if the work was. Same key + same request → the stored reply
//! again; other parameters → 400 `idempotency_error`; while the first is
//! still running → 409. Failures that did no work (validation, 404, injected
//! 500s) release the key, as Stripe does not store them.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::api::Reply;
use super::error::{StripeError, truncate};

/// How long a key and its reply are kept.
pub const KEY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// A 'running' lock older than this belongs to a request that died; its work
/// was never committed (work and reply commit together), so it may be retaken.
const STALE_LOCK_MS: i64 = 5 * 60 * 1000;
pub const MAX_KEY_CHARS: usize = 255;
/// Expired keys deleted per housekeeping pass.
const PURGE_BATCH: i64 = 1_000;

/// A validated idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, StripeError> {
        if raw.is_empty() || raw.chars().count() > MAX_KEY_CHARS {
            return Err(StripeError::InvalidRequest {
                code: None,
                param: None,
                message: format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters."),
            });
        }
        Ok(IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies "the same request": method, path and the exact body.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

pub enum Begin {
    Proceed,
    Replay(Reply),
}

struct KeyRow {
    request_hash: String,
    state: String,
    response_status: Option<u16>,
    response_body: Option<String>,
    created_ms: i64,
    locked_ms: i64,
}

/// Takes the key's lock, or answers from what is stored.
pub fn begin(conn: &Connection, key: &IdempotencyKey, hash: &str, now_ms: i64) -> Result<Begin, StripeError> {
    let row = conn
        .query_row(
            "SELECT request_hash, state, response_status, response_body, created_ms, locked_ms
             FROM idempotency_keys WHERE key = ?1",
            [key.as_str()],
            |r| {
                Ok(KeyRow {
                    request_hash: r.get(0)?,
                    state: r.get(1)?,
                    response_status: r.get(2)?,
                    response_body: r.get(3)?,
                    created_ms: r.get(4)?,
                    locked_ms: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(anyhow::Error::from)?;
    let Some(row) = row.filter(|r| r.created_ms + KEY_TTL_MS > now_ms) else {
        conn.execute(
            "INSERT INTO idempotency_keys (key, request_hash, state, created_ms, locked_ms)
             VALUES (?1, ?2, 'running', ?3, ?3)
             ON CONFLICT (key) DO UPDATE SET request_hash = ?2, state = 'running',
                 response_status = NULL, response_body = NULL, created_ms = ?3, locked_ms = ?3",
            params![key.as_str(), hash, now_ms],
        )
        .map_err(anyhow::Error::from)?;
        return Ok(Begin::Proceed);
    };
    if row.request_hash != hash {
        return Err(StripeError::IdempotencyMismatch(format!(
            "Keys for idempotent requests can only be used with the same parameters they were first used \
             with. Try using a key other than '{}' if you meant to execute a different request.",
            truncate(key.as_str(), 80)
        )));
    }
    if let (Some(status), Some(body)) = (row.response_status, row.response_body) {
        return Ok(Begin::Replay(Reply::raw_json(status, body)));
    }
    if row.state == "running" && row.locked_ms + STALE_LOCK_MS > now_ms {
        return Err(StripeError::IdempotencyInUse(format!(
            "There is currently another in-progress request using this idempotency key ('{}'). \
             Please try again later.",
            truncate(key.as_str(), 80)
        )));
    }
    conn.execute(
        "UPDATE idempotency_keys SET locked_ms = ?2 WHERE key = ?1 AND state = 'running'",
        params![key.as_str(), now_ms],
    )
    .map_err(anyhow::Error::from)?;
    Ok(Begin::Proceed)
}

/// Stores the reply, in the transaction that did the work.
pub fn finish(conn: &Connection, key: &IdempotencyKey, reply: &Reply) -> anyhow::Result<()> {
    let changed = conn.execute(
        "UPDATE idempotency_keys SET state = 'done', response_status = ?2, response_body = ?3
         WHERE key = ?1 AND state = 'running'",
        params![key.as_str(), reply.status, reply.body],
    )?;
    anyhow::ensure!(changed == 1, "idempotency key lock lost before the reply was stored");
    Ok(())
}

/// Lets the key be used again after a failure that did no work.
pub fn release(conn: &Connection, key: &IdempotencyKey) -> anyhow::Result<()> {
    conn.execute("DELETE FROM idempotency_keys WHERE key = ?1 AND state = 'running'", [key.as_str()])?;
    Ok(())
}

/// Deletes keys older than 24 h, a batch at a time.
pub fn purge_expired(conn: &Connection, now_ms: i64) -> anyhow::Result<usize> {
    Ok(conn.execute(
        "DELETE FROM idempotency_keys WHERE key IN
           (SELECT key FROM idempotency_keys WHERE created_ms <= ?1 LIMIT ?2)",
        params![now_ms - KEY_TTL_MS, PURGE_BATCH],
    )?)
}
