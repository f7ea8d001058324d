//! `Idempotency-Key` as Stripe honours it, kept 24 h: while a request runs,
//! its key is held in this process's in-flight set (a second request with
//! it gets 409); the stored reply is looked up, or the work done and its
//! reply stored, in one transaction ('done'), so a reply is stored if and
//! only if the work was. Same key + same request → the stored reply again;
//! other parameters → 400 `idempotency_error`. Failures that did no work
//! (validation, 404, injected 500s) store nothing, as Stripe does not store
//! them. Rows 'running' come from versions that locked in the database.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::error::{StripeError, truncate};
use super::reply::Reply;

/// How long a key and its reply are kept.
pub const KEY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
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

/// The keys of requests still running, held by [`InFlight::take`]'s guard.
#[derive(Default)]
pub struct InFlight {
    keys: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Frees its key when the request ends, however it ends.
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    key: String,
}

impl InFlight {
    /// Marks `key` as running, or answers Stripe's 409 if it already is.
    pub fn take(&self, key: &IdempotencyKey) -> Result<InFlightGuard<'_>, StripeError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.insert(key.as_str().to_string()) {
            return Err(StripeError::IdempotencyInUse(format!(
                "There is currently another in-progress request using this idempotency key ('{}'). \
                 Please try again later.",
                truncate(key.as_str(), 80)
            )));
        }
        Ok(InFlightGuard { set: self, key: key.as_str().to_string() })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// Inside the transaction that would do the work: the stored reply of an
/// earlier request with this key (replayed), a refusal if it had other
/// parameters, or `Proceed`.
pub fn lookup(conn: &Connection, key: &IdempotencyKey, hash: &str, now_ms: i64) -> Result<Begin, StripeError> {
    let row: Option<(String, Option<u16>, Option<String>, i64)> = conn
        .prepare_cached(
            "SELECT request_hash, response_status, response_body, created_ms FROM idempotency_keys
             WHERE key = ?1 AND state = 'done'",
        )
        .and_then(|mut st| {
            st.query_row([key.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
        })
        .map_err(anyhow::Error::from)?;
    let Some((stored_hash, status, body, _)) = row.filter(|r| r.3 + KEY_TTL_MS > now_ms) else {
        return Ok(Begin::Proceed);
    };
    if stored_hash != hash {
        return Err(StripeError::IdempotencyMismatch(format!(
            "Keys for idempotent requests can only be used with the same parameters they were first used \
             with. Try using a key other than '{}' if you meant to execute a different request.",
            truncate(key.as_str(), 80)
        )));
    }
    match (status, body) {
        (Some(status), Some(body)) => Ok(Begin::Replay(Reply::raw_json(status, body))),
        _ => Ok(Begin::Proceed),
    }
}

/// Stores the reply under its key, in the transaction that did the work.
pub fn store(conn: &Connection, key: &IdempotencyKey, hash: &str, reply: &Reply, now_ms: i64) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (key, request_hash, state, response_status, response_body, created_ms, locked_ms)
         VALUES (?1, ?2, 'done', ?3, ?4, ?5, ?5)
         ON CONFLICT (key) DO UPDATE SET request_hash = ?2, state = 'done', response_status = ?3,
             response_body = ?4, created_ms = ?5, locked_ms = ?5",
    )?
    .execute(params![key.as_str(), hash, reply.status, reply.body, now_ms])?;
    Ok(())
}

/// Deletes keys older than 24 h, a batch at a time.
/// At start no request can be in flight: a key still 'running' belongs to a
/// process that died mid-request. Its work and reply commit together, so the
/// work never happened and the key is free again.
pub fn release_orphans(conn: &Connection) -> anyhow::Result<usize> {
    Ok(conn.execute("DELETE FROM idempotency_keys WHERE state = 'running'", [])?)
}

pub fn purge_expired(conn: &Connection, now_ms: i64) -> anyhow::Result<usize> {
    Ok(conn.execute(
        "DELETE FROM idempotency_keys WHERE key IN
           (SELECT key FROM idempotency_keys WHERE created_ms <= ?1 LIMIT ?2)",
        params![now_ms - KEY_TTL_MS, PURGE_BATCH],
    )?)
}
