//! The `Authorization: Bearer <api key>` extractor of the merchant API.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::context::Ctx;
use crate::http::errors::ApiError;

/// The authenticated API key's id.
pub struct ApiKey(pub String);

impl FromRequest for ApiKey {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiKey, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req.app_data::<web::Data<Ctx>>().cloned();
        let header = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        Box::pin(async move {
            let ctx = ctx.ok_or_else(|| ApiError::internal(&anyhow::anyhow!("no app context")))?;
            let key = header
                .as_deref()
                .and_then(bearer_token)
                .ok_or_else(|| ApiError::unauthorized("send your API key as 'Authorization: Bearer <key>'"))?
                .to_string();
            if let Some(id) = ctx.api_keys.get(&key) {
                touch(&ctx, &id);
                return Ok(ApiKey(id));
            }
            let lookup = key.clone();
            let id = ctx
                .db
                .run(move |tx| crate::api_keys::authenticate(tx, &lookup))
                .await
                .map_err(|e| ApiError::internal(&e))?;
            let id = id.ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
            ctx.api_keys.put(&key, &id);
            touch(&ctx, &id);
            Ok(ApiKey(id))
        })
    }
}

/// Records the key's use, at most once a minute per key, after the
/// answer: the request never waits for it, and a failure costs nothing
/// but a stale "last used".
fn touch(ctx: &Ctx, id: &str) {
    if !ctx.api_keys.due_for_touch(id) {
        return;
    }
    let (db, id) = (ctx.db.clone(), id.to_string());
    tokio::spawn(async move {
        if let Err(e) = db.write(move |tx| crate::api_keys::touch(tx, &id)).await {
            tracing::debug!(error = format!("{e:#}"), "recording an API key's last use");
        }
    });
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 9110 §11.1).
pub(crate) fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for h in ["Bearer k", "bearer k", "BEARER k", "Bearer   k  "] {
            assert_eq!(bearer_token(h), Some("k"), "{h:?}");
        }
        for h in ["Basic k", "Bearer", "Bearer ", "Bearerk", "k"] {
            assert_eq!(bearer_token(h), None, "{h:?}");
        }
    }
}
