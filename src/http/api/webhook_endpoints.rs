//! `POST /v1/webhook_endpoints` and `GET /v1/webhook_endpoints`: where till
//! sends the shop its events, and the secret they are signed with. The URL
//! must lead to a public address (400 `url_invalid`), unless
//! `webhooks.allow_private_urls`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::context::Ctx;
use crate::events::{self, EVENT_TYPES, EndpointError, EndpointView};
use crate::http::api::body;
use crate::http::api::payments::parse_url;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::store::Page;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateWebhookEndpointRequest)]
pub struct CreateBody {
    url: Option<String>,
    enabled_events: Option<Vec<String>>,
}

#[utoipa::path(
    request_body = CreateBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses((status = 201, description = "The secret is shown only here", body = EndpointView), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/webhook_endpoints")]
pub async fn create_webhook_endpoint(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: CreateBody| async move {
        let url = parse_url(b.url, "url")?;
        let events = b.enabled_events.unwrap_or_else(|| vec!["*".into()]);
        if events.is_empty() || events.len() > EVENT_TYPES.len() {
            return Err(ApiError::invalid(
                "parameter_invalid",
                format!("enabled_events must list 1 to {} event types, or [\"*\"]", EVENT_TYPES.len()),
                "enabled_events",
            ));
        }
        if let Some(i) = events.iter().position(|e| e != "*" && !EVENT_TYPES.contains(&e.as_str())) {
            return Err(ApiError::invalid(
                "parameter_invalid",
                format!("enabled_events[{i}] is not one of {}", EVENT_TYPES.join(", ")),
                format!("enabled_events[{i}]"),
            ));
        }
        let endpoint = events::register_endpoint(ctx, url, events).await.map_err(|e| match e {
            EndpointError::TooMany => ApiError::bad_request("too_many_endpoints", e.to_string()),
            EndpointError::NotPublic(e) => ApiError::invalid("url_invalid", e.to_string(), "url"),
            EndpointError::Internal(e) => ApiError::internal(&e),
        })?;
        Ok(HttpResponse::Created().json(endpoint))
    })
    .await
}

#[utoipa::path(
    responses((status = 200, body = Page<EndpointView>)),
    security(("api_key" = []))
)]
#[get("/webhook_endpoints")]
pub async fn list_webhook_endpoints(ctx: web::Data<Ctx>, _key: ApiKey) -> Result<HttpResponse, ApiError> {
    let endpoints = ctx.db.run(events::list_endpoints).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data: endpoints, has_more: false }))
}
