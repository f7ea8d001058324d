//! `POST /v1/payments/{payment_order_id}/refunds`, `GET /v1/payments/{id}/refunds`,
//! `GET /v1/refunds/{refund_id}`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::store::Page;
use crate::refunds::{self, NewRefund, RefundView};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateRefundRequest)]
pub struct CreateBody {
    /// Decimal string in the order's currency; omitted: the rest of the order.
    amount: Option<String>,
    reason: Option<String>,
}

#[utoipa::path(
    request_body = CreateBody,
    params(("payment_order_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 201, description = "PENDING; the PSP is asked next", body = RefundView),
        (status = 400, description = "Not refundable, too much, or the seller's balance is too low", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/payments/{payment_order_id}/refunds")]
pub async fn create_refund(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let order_id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: CreateBody| async move {
        if let Some(reason) = &b.reason {
            body::text(reason, refunds::MAX_REASON_LEN, "reason")?;
        }
        let amount = refunds::parse_amount(b.amount.as_deref())?;
        let new = NewRefund { payment_order_id: order_id, amount, reason: b.reason, created_by: key.0.clone() };
        let refund = refunds::create(ctx, new).await?;
        Ok(HttpResponse::Created().json(refund))
    })
    .await
}

#[utoipa::path(
    params(("refund_id" = String, Path)),
    responses((status = 200, body = RefundView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/refunds/{refund_id}")]
pub async fn get_refund(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let refund = refunds::get(&ctx, &id).await?.ok_or_else(|| ApiError::not_found("refund", &id))?;
    Ok(HttpResponse::Ok().json(refund))
}

#[utoipa::path(
    params(("payment_order_id" = String, Path)),
    responses((status = 200, body = Page<RefundView>)),
    security(("api_key" = []))
)]
#[get("/payments/{payment_order_id}/refunds")]
pub async fn list_refunds(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let data = refunds::list_for_order(&ctx, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more: false }))
}
