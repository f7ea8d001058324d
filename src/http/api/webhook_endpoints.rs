//! `/v1/webhook_endpoints`: where till sends the shop its events, managed
//! like Stripe's: create (the secret is shown then), list, read, change
//! (`POST` as Stripe, or `PATCH`), disable, delete, rotate the secret, and
//! each endpoint's deliveries with their attempts. A URL must lead to a
//! public address (400 `url_invalid`), unless `webhooks.allow_private_urls`.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::events::{self, DeliveryView, EndpointChange, EndpointError, EndpointView, endpoints};
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
    /// Event types, or `["*"]` (the default): every type.
    enabled_events: Option<Vec<String>>,
    /// At most 500 characters.
    description: Option<String>,
}

/// A present JSON value, `null` included: `Some(None)` for null, None when absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateWebhookEndpointRequest)]
pub struct UpdateBody {
    url: Option<String>,
    enabled_events: Option<Vec<String>>,
    /// null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// true: nothing more is sent to it (its pending deliveries are canceled);
    /// false: enabled again.
    disabled: Option<bool>,
}

fn endpoint_error(e: EndpointError) -> ApiError {
    match e {
        EndpointError::TooMany => ApiError::bad_request("too_many_endpoints", e.to_string()),
        EndpointError::NotPublic(e) => ApiError::invalid("url_invalid", e.to_string(), "url"),
        EndpointError::NotFound(id) => ApiError::not_found("webhook endpoint", &id),
        EndpointError::Internal(e) => ApiError::internal(&e),
    }
}

fn parse_events(events: Vec<String>) -> Result<Vec<String>, ApiError> {
    endpoints::parse_enabled_events(events)
        .map_err(|(message, param)| ApiError::invalid("parameter_invalid", message, param))
}

fn parse_description(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(d) => {
            endpoints::parse_description(d).map_err(|m| ApiError::invalid("parameter_invalid", m, "description"))
        }
    }
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
        let events = parse_events(b.enabled_events.unwrap_or_else(|| vec!["*".into()]))?;
        let description = parse_description(b.description.as_deref())?;
        let endpoint = events::register_endpoint(ctx, url, events, description).await.map_err(endpoint_error)?;
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

#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, description = "With its health (last success, failures in a row)", body = EndpointView),
              (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/webhook_endpoints/{id}")]
pub async fn get_webhook_endpoint(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "webhook endpoint", path.into_inner(), endpoints::endpoint).await
}

async fn update(ctx: &Ctx, id: String, req: &HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_json(req, payload, body::Limits::api(ctx)).await?;
    let b: UpdateBody = body::parse_json(&bytes)?;
    let change = EndpointChange {
        url: b.url.map(|u| parse_url(Some(u), "url")).transpose()?,
        enabled_events: b.enabled_events.map(parse_events).transpose()?,
        description: b.description.map(|d| parse_description(Some(d.as_deref().unwrap_or("")))).transpose()?,
        disabled: b.disabled,
    };
    let endpoint = events::change_endpoint(ctx, id, change).await.map_err(endpoint_error)?;
    Ok(HttpResponse::Ok().json(endpoint))
}

#[utoipa::path(
    request_body = UpdateBody,
    params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/webhook_endpoints/{id}")]
pub async fn update_webhook_endpoint(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    update(&ctx, path.into_inner(), &req, payload).await
}

/// The same as `POST /v1/webhook_endpoints/{id}`.
#[utoipa::path(
    request_body = UpdateBody,
    params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[patch("/webhook_endpoints/{id}")]
pub async fn patch_webhook_endpoint(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    update(&ctx, path.into_inner(), &req, payload).await
}

#[derive(serde::Serialize, ToSchema)]
pub struct Deleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, description = "Nothing more is sent to it; its pending deliveries are canceled",
               body = Deleted), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/webhook_endpoints/{id}")]
pub async fn delete_webhook_endpoint(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let gone = id.clone();
    ctx.db.write(move |tx| endpoints::delete_endpoint(tx, &gone)).await.map_err(endpoint_error)?;
    Ok(HttpResponse::Ok().json(Deleted { id, object: "webhook_endpoint", deleted: true }))
}

#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, description = "The new secret, shown only here; the old one signs beside it for 24 h",
               body = EndpointView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/webhook_endpoints/{id}/rotate_secret")]
pub async fn rotate_webhook_secret(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let endpoint = ctx.db.write(move |tx| endpoints::rotate_secret(tx, &id)).await.map_err(endpoint_error)?;
    Ok(HttpResponse::Ok().json(endpoint))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// 1 to 100 (default 10).
    limit: Option<u32>,
    /// A delivery id: the page starts with the next older delivery.
    starting_after: Option<i64>,
}

#[utoipa::path(
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, description = "Newest first, each with its attempts", body = Page<DeliveryView>),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/webhook_endpoints/{id}/deliveries")]
pub async fn list_webhook_deliveries(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: DeliveriesQuery = crate::http::api::parse_query(&req)?;
    let limit = crate::http::api::parse_limit(q.limit)?;
    let id = path.into_inner();
    let lookup = id.clone();
    let found = ctx
        .db
        .run(move |tx| -> anyhow::Result<Option<(Vec<DeliveryView>, bool)>> {
            if endpoints::is_enabled(tx, &lookup)?.is_none() {
                return Ok(None);
            }
            Ok(Some(events::deliveries::list_deliveries(tx, &lookup, q.starting_after, limit)?))
        })
        .await?;
    let (data, has_more) = found.ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}
