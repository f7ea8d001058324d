//! Idempotency keys (SPEC §3.4), as brandur describes them for Stripe-like
//! APIs: the key's row, inserted first, is the lock; the response is stored
//! with it and replayed. Scoped to the API key, kept 24 h. This module owns
//! `idempotency_keys`; `http::idempotency` wraps a route in it.

use sha2::{Digest, Sha256};

use crate::db::{Tx, now_ms, params};

pub const MAX_KEY_LEN: usize = 255;
pub const KEEP_MS: i64 = 24 * 3600 * 1000;
/// A request still "running" after this is taken to have died with its process.
const LOCK_MS: i64 = 5 * 60 * 1000;

/// What a request under a key does.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Run it (the key is now held by this request).
    Run,
    /// Answer what the first request answered.
    Replay(u16, Vec<u8>),
}

/// Why a request may not use its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("this Idempotency-Key was used with a different request")]
    Reused,
    #[error("a request with this Idempotency-Key is still running; retry shortly")]
    InUse,
}

/// The request's identity under a key: method, path, and the body (JSON in
/// a canonical form, so the same JSON re-serialized is the same request).
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method);
    hasher.update(b" ");
    hasher.update(path);
    hasher.update(b"\n");
    match canonical_json(body) {
        Some(canonical) => hasher.update(canonical),
        None => hasher.update(body),
    }
    hex::encode(hasher.finalize())
}

/// Takes the key for this request, or says how the first one ended.
pub fn begin(tx: &Tx, api_key_id: &str, key: &str, hash: &str) -> anyhow::Result<Result<Begin, KeyError>> {
    let now = now_ms();
    type Row = (String, String, Option<u16>, Option<Vec<u8>>, i64, i64);
    let existing: Option<Row> = tx.query_opt(
        "SELECT request_hash, status, response_status, response_body, locked_until_ms, created_at_ms
         FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2",
        params![api_key_id, key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
    )?;
    match existing {
        Some((stored_hash, status, code, body, locked_until, created)) if created > now - KEEP_MS => {
            if stored_hash != hash {
                return Ok(Err(KeyError::Reused));
            }
            if status == "done" {
                return Ok(Ok(Begin::Replay(code.unwrap_or(200), body.unwrap_or_default())));
            }
            if locked_until > now {
                return Ok(Err(KeyError::InUse));
            }
            // The first request died mid-way: this one takes over.
            tx.execute(
                "UPDATE idempotency_keys SET locked_until_ms = $3 WHERE api_key_id = $1 AND idempotency_key = $2",
                params![api_key_id, key, now + LOCK_MS],
            )?;
            Ok(Ok(Begin::Run))
        }
        _ => {
            tx.execute(
                "INSERT INTO idempotency_keys
                    (api_key_id, idempotency_key, request_hash, status, locked_until_ms, created_at_ms)
                 VALUES ($1, $2, $3, 'running', $4, $5)
                 ON CONFLICT (api_key_id, idempotency_key) DO UPDATE SET
                    request_hash = excluded.request_hash, status = 'running', response_status = NULL,
                    response_body = NULL, locked_until_ms = excluded.locked_until_ms,
                    created_at_ms = excluded.created_at_ms",
                params![api_key_id, key, hash, now + LOCK_MS, now],
            )?;
            Ok(Ok(Begin::Run))
        }
    }
}

/// Stores the answer to replay, or (`None`: a validation failure or a
/// server error, which a retry may fix) frees the key.
pub fn finish(tx: &Tx, api_key_id: &str, key: &str, answer: Option<(u16, &[u8])>) -> anyhow::Result<()> {
    match answer {
        Some((status, body)) => tx.execute(
            "UPDATE idempotency_keys SET status = 'done', response_status = $3, response_body = $4
             WHERE api_key_id = $1 AND idempotency_key = $2",
            params![api_key_id, key, status, body],
        )?,
        None => tx.execute(
            "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2",
            params![api_key_id, key],
        )?,
    };
    Ok(())
}

/// Deletes keys older than 24 h; returns how many. Run by the cleanup job.
pub fn cleanup(tx: &Tx) -> anyhow::Result<usize> {
    tx.execute("DELETE FROM idempotency_keys WHERE created_at_ms < $1", params![now_ms() - KEEP_MS])
}

/// A JSON body in one canonical form (object keys sorted, no spacing), so
/// that what means the same hashes the same; None if it is not JSON.
fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_vec(&sorted(value)).ok()
}

#[cfg(test)]
mod tests {
    use super::canonical_json;

    #[test]
    fn the_same_json_reserialized_is_the_same_request() {
        let a = canonical_json(br#"{"b": [1, {"y": 2, "x": 1}], "a": "s"}"#).unwrap();
        let b = canonical_json(b"{\n  \"a\":\"s\",\"b\":[1,{\"x\":1,\"y\":2}]}").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(canonical_json(br#"{"a": "s"}"#), canonical_json(br#"{"a": "t"}"#));
        assert_ne!(canonical_json(br#"{"b": [1, 2]}"#), canonical_json(br#"{"b": [2, 1]}"#), "order in arrays counts");
        assert!(canonical_json(b"not json").is_none());
    }
}
