//! `PUT /v1/sellers/{seller_id}`, `GET /v1/sellers/{seller_id}`.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::model::SellerId;
use crate::payouts::{SellerView, store};

pub(crate) const MAX_NAME: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutSellerRequest)]
pub struct PutBody {
    name: String,
    /// The seller's connected account at the PSP (`acct_…`); null: none yet.
    payout_destination: Option<String>,
}

fn parse_seller_id(raw: &str) -> Result<SellerId, ApiError> {
    SellerId::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            "parameter_invalid",
            "seller_id must be 1 to 64 letters, digits, '_', '-' or '.'",
            "seller_id",
        )
    })
}

#[utoipa::path(
    request_body = PutBody,
    params(("seller_id" = String, Path)),
    responses((status = 201, description = "Created", body = SellerView), (status = 200, description = "Updated", body = SellerView),
               (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[put("/sellers/{seller_id}")]
pub async fn put_seller(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let seller_id = parse_seller_id(&path.into_inner())?;
    let bytes = body::read_json(&req, payload, body::Limits::api(&ctx)).await?;
    let b: PutBody = body::parse_json(&bytes)?;
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::invalid("parameter_invalid", format!("name must be 1 to {MAX_NAME} characters"), "name"));
    }
    body::text(&name, MAX_NAME, "name")?;
    if let Some(d) = &b.payout_destination {
        let valid =
            d.starts_with("acct_") && d.len() <= 255 && d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            return Err(ApiError::invalid(
                "parameter_invalid",
                "payout_destination must be a PSP account id like acct_…",
                "payout_destination",
            ));
        }
    }
    let seller = SellerView { seller_id: seller_id.to_string(), name, payout_destination: b.payout_destination };
    let stored = seller.clone();
    let created = ctx.db.write(move |tx| store::upsert_seller(tx, &stored)).await?;
    Ok(if created { HttpResponse::Created().json(seller) } else { HttpResponse::Ok().json(seller) })
}

#[utoipa::path(
    params(("seller_id" = String, Path)),
    responses((status = 200, body = SellerView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/sellers/{seller_id}")]
pub async fn get_seller(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "seller", path.into_inner(), store::seller).await
}
