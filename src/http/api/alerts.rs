//! `GET /v1/alerts`: open alerts (dead letters, unfinished payments, audit failures).

use actix_web::{HttpResponse, web};

use crate::context::Ctx;
use crate::http::auth::ApiKey;
use crate::http::errors::ApiError;

const MAX_LISTED: u32 = 500;

pub async fn list(ctx: web::Data<Ctx>, _key: ApiKey) -> Result<HttpResponse, ApiError> {
    let alerts = ctx.db.run(|conn| crate::alerts::list_open(conn, MAX_LISTED)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": alerts, "has_more": false})))
}
