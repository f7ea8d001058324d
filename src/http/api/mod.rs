//! The merchant REST API under `/v1`.

pub mod alerts;
pub mod body;
pub mod payments;
pub mod wallets;
pub mod webhook_endpoints;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(payments::create))
        .route("/payments", web::get().to(payments::list))
        .route("/payments/{payment_order_id}", web::get().to(payments::get_order))
        .route("/checkouts/{checkout_id}", web::get().to(payments::get_checkout))
        .route("/wallets/{seller_id}", web::get().to(wallets::get))
        .route("/webhook_endpoints", web::post().to(webhook_endpoints::create))
        .route("/webhook_endpoints", web::get().to(webhook_endpoints::list))
        .route("/alerts", web::get().to(alerts::list));
}
