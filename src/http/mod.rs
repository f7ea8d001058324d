//! HTTP: the merchant API (`api/`), the staff dashboard (`admin/`), the PSP
//! webhook endpoint, health.
//! Routes stay thin: parse, call one core function, map the result.

pub mod admin;
pub mod api;
pub mod auth;
pub mod body_deadline;
pub mod client_ip;
pub mod errors;
pub mod idempotency;
pub mod metrics;
pub mod psp_webhook;

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::context::Ctx;

/// Routes outside the merchant API (which `startup` mounts with its OpenAPI).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::scrape_with_token))
        .route("/webhooks/psp", web::post().to(psp_webhook::receive));
}

/// Liveness: the process answers. A restart would not help with anything `/readyz` reports.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// How long readiness waits for the database to answer a read.
const READY_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: 200 while till can take payments; 503 while the storage
/// refuses writes (until one succeeds again) or the database does not
/// answer, so that a load balancer sends traffic elsewhere meanwhile.
async fn readyz(ctx: web::Data<Ctx>) -> HttpResponse {
    let unready = |why: serde_json::Value| {
        let retry = (actix_web::http::header::RETRY_AFTER, errors::RETRY_AFTER_S.to_string());
        HttpResponse::ServiceUnavailable().insert_header(retry).json(json!({"status": "unavailable", "reason": why}))
    };
    if let Some(trouble) = ctx.db.storage_trouble() {
        return unready(json!({"storage": "writes fail", "since": trouble.since, "error": trouble.error}));
    }
    let read = ctx.db.run(|tx| tx.query_value::<i64>("SELECT 1", crate::db::params![]));
    match tokio::time::timeout(READY_READ_TIMEOUT, read).await {
        Ok(Ok(_)) => HttpResponse::Ok().json(json!({"status": "ok"})),
        Ok(Err(e)) => unready(json!({"database": format!("{e:#}")})),
        Err(_) => unready(json!({"database": "no answer within 2 s"})),
    }
}
