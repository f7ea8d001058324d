//! `PUT /v1/sellers/{seller_id}`, `GET /v1/sellers/{seller_id}`, `GET /v1/sellers`.
//! A seller's first payment creates its record (unnamed): every seller with a wallet has one.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::model::SellerId;
use crate::payments::store::Page;
use crate::payouts::{SellerView, store};

pub(crate) const MAX_NAME: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutSellerRequest)]
pub struct PutBody {
    /// 1 to 200 characters; omitted: the seller keeps the name it has (none for a new one).
    name: Option<String>,
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

fn parse_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::invalid("parameter_invalid", format!("name must be 1 to {MAX_NAME} characters"), "name"));
    }
    body::text(&name, MAX_NAME, "name")?;
    Ok(Some(name))
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
    let name = parse_name(b.name)?;
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
    let (created, seller) = ctx
        .db
        .write(move |tx| -> anyhow::Result<(bool, Option<SellerView>)> {
            let id = seller_id.as_str();
            let created = store::upsert_seller(tx, id, name.as_deref(), b.payout_destination.as_deref())?;
            Ok((created, store::seller(tx, id)?))
        })
        .await?;
    let seller = seller.ok_or_else(|| ApiError::internal(&anyhow::anyhow!("a seller just stored vanished")))?;
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 100 (default 10).
    limit: Option<u32>,
    /// A seller id: the page starts after it (sellers are listed by id).
    starting_after: Option<String>,
}

#[utoipa::path(
    params(ListQuery),
    responses((status = 200, body = Page<SellerView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/sellers")]
pub async fn list_sellers(ctx: web::Data<Ctx>, _key: ApiKey, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = crate::http::api::parse_query(&req)?;
    let limit = crate::http::api::parse_limit(q.limit)?;
    let (data, has_more) = ctx.db.run(move |tx| store::list_sellers(tx, q.starting_after.as_deref(), limit)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}
