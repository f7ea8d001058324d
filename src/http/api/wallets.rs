//! `GET /v1/wallets/{seller_id}`.

use actix_web::{HttpResponse, get, web};

use crate::context::Ctx;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::wallet::WalletView;

#[utoipa::path(
    params(("seller_id" = String, Path)),
    responses((status = 200, body = WalletView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/wallets/{seller_id}")]
pub async fn get_wallet(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let seller_id = path.into_inner();
    let lookup = seller_id.clone();
    let hold_days = ctx.settings.payouts.hold_days;
    let wallet = ctx.db.run(move |conn| crate::wallet::read_wallet(conn, &lookup, hold_days)).await?;
    wallet.map(|w| HttpResponse::Ok().json(w)).ok_or_else(|| ApiError::not_found("wallet for seller", &seller_id))
}
