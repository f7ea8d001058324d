//! The `Idempotency-Key` header on every POST of the merchant API (SPEC
//! §3.4), around a route: same key and same request → the stored answer
//! again with `Idempotent-Replayed: true`; same key and another request →
//! 422; same key while the first is still running → 409. Validation
//! failures (400) and server-side failures (5xx, so a retry can succeed)
//! are not stored. The keys themselves are `crate::idempotency`'s.

use std::future::Future;

use actix_web::body::to_bytes;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::context::Ctx;
use crate::http::errors::ApiError;
use crate::idempotency::{self, Begin, KeyError, MAX_KEY_LEN};

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
    let hash = idempotency::request_hash(req.method().as_str(), req.path(), body);
    let (owner, taken) = (api_key_id.to_string(), key.clone());
    let begin = ctx.db.write(move |tx| idempotency::begin(tx, &owner, &taken, &hash)).await?;
    match begin.map_err(key_error)? {
        Begin::Replay(status, body) => Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(body)),
        Begin::Run => {
            let response = handler().await.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
            finish(ctx, api_key_id.to_string(), key, response).await
        }
    }
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Reused => {
            ApiError::idempotency(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", e.to_string())
        }
        KeyError::InUse => ApiError::idempotency(StatusCode::CONFLICT, "idempotency_key_in_use", e.to_string()),
    }
}

async fn finish(ctx: &Ctx, api_key_id: String, key: String, response: HttpResponse) -> Result<HttpResponse, ApiError> {
    let status = response.status();
    let (head, body) = response.into_parts();
    let bytes = to_bytes(body).await.map_err(|e| anyhow::anyhow!("reading a response body: {e}"))?;
    let store = !(status == StatusCode::BAD_REQUEST || status.is_server_error());
    let stored = bytes.clone();
    ctx.db
        .write(move |tx| {
            let answer = store.then_some((status.as_u16(), stored.as_ref()));
            idempotency::finish(tx, &api_key_id, &key, answer)
        })
        .await?;
    Ok(head.set_body(bytes).map_into_boxed_body())
}
