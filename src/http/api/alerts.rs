//! `GET /v1/alerts`: open alerts (dead letters, unfinished payments, audit failures).

use actix_web::{HttpResponse, get, web};

use crate::alerts::AlertView;
use crate::payments::store::Page;

use crate::context::Ctx;
use crate::http::auth::ApiKey;
use crate::http::errors::ApiError;

const MAX_LISTED: u32 = 500;

#[utoipa::path(
    responses((status = 200, body = Page<AlertView>)),
    security(("api_key" = []))
)]
#[get("/alerts")]
pub async fn list_alerts(ctx: web::Data<Ctx>, _key: ApiKey) -> Result<HttpResponse, ApiError> {
    let alerts = ctx.db.run(|tx| crate::alerts::list_open(tx, MAX_LISTED)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data: alerts, has_more: false }))
}
