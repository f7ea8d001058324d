//! The `Idempotency-Key` header on every POST of the merchant API (SPEC
//! §3.4): scoped to the API key and kept 24 h. Same key and same request →
//! the stored answer again with `Idempotent-Replayed: true`; same key and
//! another request → 422; same key while the first is still running → 409.
//! Validation failures (400) and server-side failures (5xx, so a retry can
//! succeed) are not stored.

use std::future::Future;

use actix_web::body::to_bytes;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::db::now_ms;
use crate::http::errors::ApiError;

pub const MAX_KEY_LEN: usize = 255;
pub const KEEP_MS: i64 = 24 * 3600 * 1000;
/// A request still "running" after this is taken to have died with its process.
const LOCK_MS: i64 = 5 * 60 * 1000;

enum Begin {
    Run,
    Replay(u16, Vec<u8>),
}

/// Runs `handler` under the request's `Idempotency-Key`, if it has one.
pub async fn run<F, Fut>(
    ctx: &Ctx,
    api_key_id: &str,
    req: &HttpRequest,
    body: &[u8],
    handler: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(header) = req.headers().get("Idempotency-Key") else {
        return handler().await;
    };
    let key = header
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.chars().all(|c| !c.is_control()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_invalid",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable characters"),
            )
        })?
        .to_string();
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str());
    hasher.update(b" ");
    hasher.update(req.path());
    hasher.update(b"\n");
    // The same JSON sent again, re-serialized (key order, spacing), is the same request.
    match canonical_json(body) {
        Some(canonical) => hasher.update(canonical),
        None => hasher.update(body),
    }
    let hash = hex::encode(hasher.finalize());
    let scope = (api_key_id.to_string(), key);

    let (api_key_id, key) = scope.clone();
    let begin = ctx.db.write_raw(move |tx| begin(tx, &api_key_id, &key, &hash)).await?;
    if let Begin::Replay(status, body) = begin {
        return Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(body));
    }
    let response = match handler().await {
        Ok(r) => r,
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    finish(ctx, scope, response).await
}

fn begin(tx: &rusqlite::Transaction, api_key_id: &str, key: &str, hash: &str) -> Result<Begin, ApiError> {
    let now = now_ms();
    type Row = (String, String, Option<u16>, Option<Vec<u8>>, i64, i64);
    let existing: Option<Row> = tx
        .prepare_cached(
            "SELECT request_hash, status, response_status, response_body, locked_until_ms, created_at_ms
             FROM idempotency_keys WHERE api_key_id = ?1 AND idempotency_key = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![api_key_id, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .optional()
        })
        .map_err(anyhow::Error::from)?;
    match existing {
        Some((stored_hash, status, code, body, locked_until, created)) if created > now - KEEP_MS => {
            if stored_hash != hash {
                return Err(ApiError::idempotency(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                ));
            }
            if status == "done" {
                return Ok(Begin::Replay(code.unwrap_or(200), body.unwrap_or_default()));
            }
            if locked_until > now {
                return Err(ApiError::idempotency(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still running; retry shortly",
                ));
            }
            // The first request died mid-way: this one takes over.
            tx.execute(
                "UPDATE idempotency_keys SET locked_until_ms = ?3 WHERE api_key_id = ?1 AND idempotency_key = ?2",
                params![api_key_id, key, now + LOCK_MS],
            )
            .map_err(anyhow::Error::from)?;
            Ok(Begin::Run)
        }
        _ => {
            tx.execute(
                "INSERT OR REPLACE INTO idempotency_keys
                    (api_key_id, idempotency_key, request_hash, status, locked_until_ms, created_at_ms)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![api_key_id, key, hash, now + LOCK_MS, now],
            )
            .map_err(anyhow::Error::from)?;
            Ok(Begin::Run)
        }
    }
}

async fn finish(ctx: &Ctx, scope: (String, String), response: HttpResponse) -> Result<HttpResponse, ApiError> {
    let status = response.status();
    let (head, body) = response.into_parts();
    let bytes = to_bytes(body).await.map_err(|e| anyhow::anyhow!("reading a response body: {e}"))?;
    let store = !(status == StatusCode::BAD_REQUEST || status.is_server_error());
    let stored = bytes.to_vec();
    ctx.db
        .write_raw(move |tx| -> anyhow::Result<()> {
            let (api_key_id, key) = scope;
            if store {
                tx.execute(
                    "UPDATE idempotency_keys SET status = 'done', response_status = ?3, response_body = ?4
                     WHERE api_key_id = ?1 AND idempotency_key = ?2",
                    params![api_key_id, key, status.as_u16(), stored],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM idempotency_keys WHERE api_key_id = ?1 AND idempotency_key = ?2",
                    params![api_key_id, key],
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(head.set_body(bytes).map_into_boxed_body())
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

/// Deletes keys older than 24 h; returns how many. Run by the cleanup job.
pub fn cleanup(conn: &rusqlite::Connection) -> anyhow::Result<usize> {
    Ok(conn.execute("DELETE FROM idempotency_keys WHERE created_at_ms < ?1", [now_ms() - KEEP_MS])?)
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
