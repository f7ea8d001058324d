//! `POST /v1/payouts`, `GET /v1/payouts/{payout_id}`, `GET /v1/payouts`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::money::Currency;
use crate::payments::store::Page;
use crate::payouts::{self, NewPayout, PayoutStatus, PayoutView, store};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePayoutRequest)]
pub struct CreateBody {
    seller_id: String,
    /// Optional when the seller's wallet holds exactly one currency.
    currency: Option<String>,
    /// Decimal string; omitted: all that is available.
    amount: Option<String>,
}

#[utoipa::path(
    request_body = CreateBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 201, description = "PENDING; the transfer is sent next", body = PayoutView),
        (status = 400, description = "Unknown seller, no destination, more than available, below the minimum", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/payouts")]
pub async fn create_payout(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: CreateBody| async move {
        let currency = b
            .currency
            .map(|c| Currency::parse(&c).map_err(|e| ApiError::invalid(e.code(), format!("currency: {e}"), "currency")))
            .transpose()?;
        let new = NewPayout { seller_id: b.seller_id, currency, amount: b.amount, created_by: key.0.clone() };
        Ok(HttpResponse::Created().json(payouts::create(ctx, new).await?))
    })
    .await
}

#[utoipa::path(
    params(("payout_id" = String, Path)),
    responses((status = 200, body = PayoutView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/payouts/{payout_id}")]
pub async fn get_payout(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "payout", path.into_inner(), store::load).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    seller_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(params(ListQuery), responses((status = 200, body = Page<PayoutView>), (status = 400, body = ErrorBody)),
               security(("api_key" = [])))]
#[get("/payouts")]
pub async fn list_payouts(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let status = q
        .status
        .map(|s| {
            PayoutStatus::parse(&s).ok_or_else(|| {
                let valid: Vec<&str> = PayoutStatus::ALL.iter().map(|s| s.as_str()).collect();
                let message = format!("status '{s}' is not a payout status: one of {}", valid.join(", "));
                ApiError::invalid("parameter_invalid", message, "status")
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("parameter_invalid", "limit must be between 1 and 100", "limit"));
    }
    let filter = store::PayoutFilter { seller_id: q.seller_id, status, starting_after: q.starting_after, limit };
    let (data, has_more) = ctx.db.run(move |tx| store::list(tx, &filter)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}
