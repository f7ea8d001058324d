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
pub mod psp_webhook;

use actix_web::{HttpResponse, web};

/// Routes outside the merchant API (which `startup` mounts with its OpenAPI).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/webhooks/psp", web::post().to(psp_webhook::receive));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
