//! `/v1/events`: every merchant event till stored (kept
//! `events.retention_days`), listed newest first, read one by one, and sent
//! again (same `webhook-id`) to one endpoint or to every endpoint that wants it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::events::{self, DeliveryView, EVENT_TYPES, EventFilter, EventView, ResendError};
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::payments::store::Page;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatedRange {
    gte: Option<String>,
    lt: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// One event type (`payment_order.succeeded`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// `created[gte]` and `created[lt]`: unix seconds (as Stripe) or RFC 3339 times.
    #[param(style = DeepObject, explode, value_type = Option<Object>)]
    created: Option<CreatedRange>,
    /// 1 to 100 (default 10).
    limit: Option<u32>,
    /// An event id: the page starts with the next older event.
    starting_after: Option<String>,
}

/// A `created[…]` bound in the stored form (RFC 3339, UTC, milliseconds).
fn parse_time(raw: &str, param: &str) -> Result<String, ApiError> {
    let at = match raw.parse::<i64>() {
        Ok(secs) => chrono::DateTime::from_timestamp(secs, 0),
        Err(_) => chrono::DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&chrono::Utc)),
    };
    let at = at.ok_or_else(|| {
        ApiError::invalid("parameter_invalid", format!("{param} must be unix seconds or an RFC 3339 time"), param)
    })?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[utoipa::path(
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = Page<EventView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/events")]
pub async fn list_events(ctx: web::Data<Ctx>, _key: ApiKey, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = crate::http::api::parse_query(&req)?;
    if let Some(t) = q.event_type.as_deref()
        && !EVENT_TYPES.contains(&t)
    {
        return Err(ApiError::invalid(
            "parameter_invalid",
            format!("type must be one of {}", EVENT_TYPES.join(", ")),
            "type",
        ));
    }
    let created = q.created.unwrap_or_default();
    let filter = EventFilter {
        event_type: q.event_type,
        created_gte: created.gte.as_deref().map(|t| parse_time(t, "created[gte]")).transpose()?,
        created_lt: created.lt.as_deref().map(|t| parse_time(t, "created[lt]")).transpose()?,
        starting_after: q.starting_after,
        limit: crate::http::api::parse_limit(q.limit)?,
    };
    let (data, has_more) = ctx.db.run(move |tx| events::list_events(tx, &filter)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}

#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, body = EventView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/events/{id}")]
pub async fn get_event(ctx: web::Data<Ctx>, _key: ApiKey, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "event", path.into_inner(), events::event).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResendEventRequest)]
pub struct ResendBody {
    /// One endpoint (`we_…`); omitted: every enabled endpoint that wants the event's type.
    endpoint_id: Option<String>,
}

#[utoipa::path(
    request_body(content = Option<ResendBody>),
    params(("id" = String, Path)),
    responses((status = 200, description = "The deliveries queued (same webhook-id as before)",
               body = Page<DeliveryView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The event is being sent to that endpoint right now (`delivery_in_flight`)",
               body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/events/{id}/resend")]
pub async fn resend_event(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_json(&req, payload, body::Limits::api(&ctx)).await?;
    let b: ResendBody = body::parse_json(&bytes)?;
    let id = path.into_inner();
    let attempts = ctx.settings.webhooks.max_attempts;
    let event_id = id.clone();
    let endpoint = b.endpoint_id.clone();
    let queued = ctx.db.write(move |tx| events::resend(tx, &event_id, endpoint.as_deref(), attempts)).await;
    let data = queued.map_err(|e| match e {
        ResendError::NoEvent(_) => ApiError::not_found("event", &id),
        ResendError::NoEndpoint(_) | ResendError::Disabled(_) => {
            ApiError::invalid("parameter_invalid", e.to_string(), "endpoint_id")
        }
        ResendError::InFlight(_) => {
            ApiError { status: StatusCode::CONFLICT, ..ApiError::bad_request("delivery_in_flight", e.to_string()) }
        }
        ResendError::Internal(e) => ApiError::internal(&e),
    })?;
    ctx.queue_wake.notify_one();
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more: false }))
}
