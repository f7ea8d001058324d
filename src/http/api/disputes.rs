//! `GET /v1/disputes`, `GET /v1/disputes/{id}`, `POST /v1/disputes/{id}/evidence`,
//! `POST /v1/disputes/{id}/accept`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::disputes::{self, Answer, DisputeStatus, DisputeView, store};
use crate::http::api::body;
use crate::http::api::payments::NoFields;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::store::Page;

#[utoipa::path(
    params(("dispute_id" = String, Path)),
    responses((status = 200, body = DisputeView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/disputes/{dispute_id}")]
pub async fn get_dispute(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "dispute", path.into_inner(), store::load).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `needs_response`, `under_review`, `won`, `lost` or `accepted`.
    status: Option<String>,
    payment_order_id: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(
    params(ListQuery),
    responses((status = 200, body = Page<DisputeView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
/// Disputes, newest first.
#[get("/disputes")]
pub async fn list_disputes(ctx: web::Data<Ctx>, _key: ApiKey, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = crate::http::api::parse_query(&req)?;
    let status = q
        .status
        .map(|s| {
            DisputeStatus::parse(&s).ok_or_else(|| {
                let valid: Vec<&str> = DisputeStatus::ALL.iter().map(|s| s.as_str()).collect();
                let message = format!("status '{s}' is not a dispute status: one of {}", valid.join(", "));
                ApiError::invalid("parameter_invalid", message, "status")
            })
        })
        .transpose()?;
    let limit = crate::http::api::parse_limit(q.limit)?;
    let filter =
        store::DisputeFilter { status, payment_order_id: q.payment_order_id, starting_after: q.starting_after, limit };
    let (data, has_more) = ctx.db.run(move |tx| store::list(tx, &filter)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}

/// `POST /v1/disputes/{id}/evidence`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DisputeEvidenceRequest)]
pub struct EvidenceBody {
    /// Why the charge stands: what was sold, shipped, delivered, agreed (1 to 20,000 characters;
    /// line breaks allowed). Sent to the PSP as `evidence[uncategorized_text]` and submitted.
    #[schema(example = "Order 1001 shipped 2026-12-01 by UPS, tracking 1Z999AA10123456784, signed for by K. Lee.")]
    text: String,
}

#[utoipa::path(
    request_body = EvidenceBody,
    params(("dispute_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Submitted: the dispute is `under_review` until the PSP decides", body = DisputeView),
        (status = 400, description = "The text is empty, too long or holds control characters", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The dispute no longer takes evidence (answered, under review or closed)", body = ErrorBody),
        (status = 502, description = "The PSP refused it", body = ErrorBody),
        (status = 503, description = "The PSP did not answer: the evidence is recorded and is sent", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Submits the shop's evidence on a dispute that needs a response (one
/// answer per dispute: evidence or acceptance).
#[post("/disputes/{dispute_id}/evidence")]
pub async fn submit_evidence(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: EvidenceBody| async move {
        let answer = disputes::parse_evidence(&b.text)?;
        Ok(HttpResponse::Ok().json(disputes::answer(ctx, &id, answer).await?))
    })
    .await
}

#[utoipa::path(
    params(("dispute_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Accepted: the dispute is `accepted`, its money stays with the cardholder", body = DisputeView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The dispute no longer takes an answer", body = ErrorBody),
        (status = 502, description = "The PSP refused it", body = ErrorBody),
        (status = 503, description = "The PSP did not answer: the acceptance is recorded and is sent", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Accepts a dispute that needs a response: no evidence, the cardholder keeps the money.
#[post("/disputes/{dispute_id}/accept")]
pub async fn accept_dispute(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |_: NoFields| async move {
        Ok(HttpResponse::Ok().json(disputes::answer(ctx, &id, Answer::Accept).await?))
    })
    .await
}
