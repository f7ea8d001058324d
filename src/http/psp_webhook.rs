//! `POST /webhooks/psp`: the PSP's events. 2xx only once the event is
//! stored and applied (or knowingly ignored); anything else makes the PSP retry.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::context::Ctx;
use crate::http::api::body;
use crate::webhooks::{self as psp_in, IngestError, Ingested};

pub async fn receive(ctx: web::Data<Ctx>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let body = match body::read(&req, payload, body::Limits::api(&ctx)).await {
        Ok(body) => body,
        Err(e) => return actix_web::ResponseError::error_response(&e),
    };
    let signature = req.headers().get("Stripe-Signature").and_then(|v| v.to_str().ok());
    match psp_in::ingest(&ctx, signature, &body).await {
        Ok(Ingested::Applied | Ingested::AlreadyFinal) => {
            HttpResponse::Ok().json(serde_json::json!({"received": true}))
        }
        Ok(Ingested::Duplicate) => HttpResponse::Ok().json(serde_json::json!({"received": true, "duplicate": true})),
        Ok(Ingested::Ignored(reason)) => {
            HttpResponse::Ok().json(serde_json::json!({"received": true, "ignored": reason}))
        }
        Err(e @ (IngestError::Signature(_) | IngestError::Malformed(_))) => {
            tracing::warn!(error = %e, "refused a PSP webhook");
            HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()}))
        }
        Err(e @ IngestError::PspUnavailable(_)) => {
            tracing::warn!(error = %e, "PSP webhook deferred");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": e.to_string()}))
        }
        // The PSP sends it again later, as it does after any non-2xx.
        Err(IngestError::Internal(e)) if crate::db::is_storage_trouble(&e) => {
            actix_web::ResponseError::error_response(&crate::http::errors::ApiError::storage_unavailable())
        }
        Err(IngestError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "PSP webhook failed");
            HttpResponse::InternalServerError().json(serde_json::json!({"error": "internal error"}))
        }
    }
}
