//! HTTP: the merchant API (`api/`), the PSP webhook endpoint, health.
//! Routes stay thin: parse, call one core function, map the result.

pub mod api;
pub mod auth;
pub mod errors;
pub mod idempotency;
pub mod psp_webhook;

use actix_web::{HttpResponse, web};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/webhooks/psp", web::post().to(psp_webhook::receive))
        .service(web::scope("/v1").configure(api::configure));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
