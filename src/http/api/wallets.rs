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
    let hold_days = ctx.settings.payouts.hold_days;
    crate::http::api::read_one(&ctx, "wallet for seller", path.into_inner(), move |tx, id| {
        crate::wallet::read_wallet(tx, id, hold_days)
    })
    .await
}
