//! The merchant REST API under `/v1`. Every route is registered through
//! utoipa's actix bindings, so `/v1/openapi.json` is generated from the
//! routes themselves and cannot drift from them.

pub mod alerts;
pub mod body;
pub mod disputes;
pub mod events;
pub mod openapi;
pub mod payments;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;
pub mod sellers;
pub mod wallets;
pub mod webhook_endpoints;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::db::Tx;
use crate::http::errors::ApiError;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(payments::create_payment)
        .service(payments::list_payment_orders)
        .service(payments::get_payment_order)
        .service(payments::get_checkout)
        .service(payments::sync_checkout)
        .service(payments::cancel_checkout)
        .service(payments::capture_checkout)
        .service(payments::void_checkout)
        .service(wallets::get_wallet)
        .service(webhook_endpoints::create_webhook_endpoint)
        .service(webhook_endpoints::list_webhook_endpoints)
        .service(webhook_endpoints::get_webhook_endpoint)
        .service(webhook_endpoints::update_webhook_endpoint)
        .service(webhook_endpoints::patch_webhook_endpoint)
        .service(webhook_endpoints::delete_webhook_endpoint)
        .service(webhook_endpoints::rotate_webhook_secret)
        .service(webhook_endpoints::list_webhook_deliveries)
        .service(events::list_events)
        .service(events::get_event)
        .service(events::resend_event)
        .service(refunds::create_refund)
        .service(refunds::list_refunds)
        .service(refunds::get_refund)
        .service(disputes::list_disputes)
        .service(disputes::get_dispute)
        .service(disputes::submit_evidence)
        .service(disputes::accept_dispute)
        .service(sellers::put_seller)
        .service(sellers::list_sellers)
        .service(sellers::get_seller)
        .service(payouts::create_payout)
        .service(payouts::list_payouts)
        .service(payouts::get_payout)
        .service(alerts::list_alerts)
        .service(reconciliation::upload_settlement_file)
        .service(reconciliation::list_runs)
        .service(reconciliation::list_exceptions)
        .service(reconciliation::resolve_exception);
}

/// Parses a query string in Stripe's bracket form (`metadata[k]=v`,
/// `created[gte]=…`, brackets written or percent-encoded) into `T`; a 400
/// naming what is wrong otherwise.
pub fn parse_query<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, ApiError> {
    serde_qs::Config::new()
        .max_depth(2)
        .use_form_encoding(true)
        .deserialize_str(req.query_string())
        .map_err(|e| crate::http::errors::query_problem(&e.to_string()))
}

/// A list's `limit`: 1 to 100, 10 when not given.
pub fn parse_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("parameter_invalid", "limit must be between 1 and 100", "limit"));
    }
    Ok(limit)
}

/// Reads one object by its id off the executor: 200 with it, or the API's
/// 404 naming `what`.
pub async fn read_one<T, F>(
    ctx: &crate::context::Ctx,
    what: &str,
    id: String,
    read: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(&Tx, &str) -> anyhow::Result<Option<T>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let lookup = id.clone();
    let found = ctx.db.run(move |tx| read(tx, &lookup)).await?;
    found.map(|v| HttpResponse::Ok().json(v)).ok_or_else(|| ApiError::not_found(what, &id))
}

/// The description around the generated paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "till merchant API",
        description = "Pay-in through a PSP's hosted page or a payment method token, sellers' wallets, \
                       and webhooks. Amounts are decimal strings in major units; errors have the shape \
                       {\"error\": {\"type\", \"code\", \"message\", \"param\"}}."
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("till_sk_…").build()),
        );
    }
}
