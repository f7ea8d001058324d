//! `GET /v1/wallets/{seller_id}`.

use actix_web::{HttpResponse, web};

use crate::context::Ctx;
use crate::http::auth::ApiKey;
use crate::http::errors::ApiError;

pub async fn get(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let seller_id = path.into_inner();
    let lookup = seller_id.clone();
    let wallet = ctx.db.run(move |conn| crate::wallet::read_wallet(conn, &lookup)).await?;
    wallet.map(|w| HttpResponse::Ok().json(w)).ok_or_else(|| ApiError::not_found("wallet for seller", &seller_id))
}
