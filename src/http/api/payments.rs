//! `/v1/payments` and `/v1/checkouts`: create a checkout, read orders and
//! checkouts, list orders with cursor pagination.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::money::{Currency, Money, MoneyError};
use crate::payments::capture;
use crate::payments::create::{self, Created};
use crate::payments::model::{
    Buyer, CaptureMethod, CheckoutId, Description, Metadata, NewCheckout, NewOrder, OrderStatus, PaymentMethod,
    PaymentOrderId, SellerId,
};
use crate::payments::store::{self, CheckoutView, OrderView, Page};
use crate::payments::sync;

pub const MAX_ORDERS: usize = 50;
pub(crate) const MAX_TEXT: usize = 255;
pub(crate) const MAX_URL: usize = 2048;

/// `POST /v1/payments`: one checkout with one order per seller.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePaymentRequest)]
pub struct CreateBody {
    checkout_id: String,
    buyer: BuyerBody,
    orders: Vec<OrderBody>,
    payment_method: Option<PaymentMethodBody>,
    success_url: Option<String>,
    cancel_url: Option<String>,
    /// At most 500 characters; the hosted page's line of an order that has no description of its own.
    description: Option<String>,
    /// Up to 50 keys (1 to 40 characters, no `[` `]`) with string values of 1 to 500 characters,
    /// as Stripe takes them; sent to the PSP's session and PaymentIntent. `checkout_id`,
    /// `payment_order_id` and `seller_id` are till's own keys there.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `automatic` (default): the buyer's payment is captured at once. `manual`: it is only
    /// authorized; the orders stop at AUTHORIZED until `POST /v1/checkouts/{id}/capture`
    /// (all or part of each order) or `/void`, or until `payments.authorization_days` pass
    /// (then FAILED `authorization_expired`).
    #[schema(example = "manual")]
    capture_method: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Buyer)]
pub struct BuyerBody {
    id: String,
    email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrder)]
pub struct OrderBody {
    /// A client-generated UUID, unique across all checkouts.
    payment_order_id: String,
    seller_id: String,
    /// Decimal string in major units, e.g. "25.00"; never a JSON number.
    #[schema(example = "25.00")]
    amount: String,
    /// ISO 4217 code, upper case.
    #[schema(example = "USD")]
    currency: String,
    /// At most 500 characters: the order's line on the hosted page (and at the PSP).
    #[schema(example = "Blue mug, 350 ml")]
    description: Option<String>,
    /// As the checkout's; merged over the checkout's on the order's PaymentIntent (token payments)
    /// and when orders are searched by metadata.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PaymentMethod)]
pub struct PaymentMethodBody {
    /// `hosted_page` (default) or `token`.
    #[serde(rename = "type")]
    kind: String,
    /// A PSP payment method id (`pm_…`), for `token`.
    token: Option<String>,
}

#[utoipa::path(
    request_body = CreateBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 201, description = "Created", body = CheckoutView),
        (status = 200, description = "The same checkout_id and body again (Idempotent-Replayed: true)", body = CheckoutView),
        (status = 400, description = "Invalid request; `param` names the field", body = ErrorBody),
        (status = 422, description = "checkout_id or Idempotency-Key reused with another body", body = ErrorBody),
        (status = 503, description = "The PSP did not answer; send the same request again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/payments")]
pub async fn create_payment(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: CreateBody| async move {
        let new = parse_create(b)?;
        let (view, created) = create::create_checkout(ctx, &key.0, new).await?;
        Ok(match created {
            Created::New => HttpResponse::Created().json(view),
            Created::Replayed => HttpResponse::Ok().insert_header(("Idempotent-Replayed", "true")).json(view),
        })
    })
    .await
}

fn parse_create(b: CreateBody) -> Result<NewCheckout, ApiError> {
    let checkout_id = CheckoutId::parse(&b.checkout_id)
        .ok_or_else(|| ApiError::invalid("parameter_invalid", "checkout_id must be a UUID", "checkout_id"))?;
    let buyer = parse_buyer(b.buyer)?;
    if b.orders.is_empty() || b.orders.len() > MAX_ORDERS {
        return Err(ApiError::invalid(
            "orders_invalid",
            format!("orders must hold 1 to {MAX_ORDERS} orders, not {}", b.orders.len()),
            "orders",
        ));
    }
    let mut seen = HashSet::new();
    let mut orders = Vec::with_capacity(b.orders.len());
    for (i, o) in b.orders.into_iter().enumerate() {
        let order = parse_order(i, o)?;
        if !seen.insert(order.payment_order_id.clone()) {
            return Err(ApiError::invalid(
                "payment_order_id_duplicate",
                format!("orders[{i}].payment_order_id appears twice in this request"),
                format!("orders[{i}].payment_order_id"),
            ));
        }
        orders.push(order);
    }
    let payment_method = parse_payment_method(b.payment_method, b.success_url, b.cancel_url, &orders)?;
    let description = parse_description(b.description.as_deref(), "description")?;
    let metadata = parse_metadata(b.metadata.as_ref(), "metadata")?;
    check_metadata_at_psp(&metadata, &orders)?;
    let capture_method = match b.capture_method.as_deref() {
        None => CaptureMethod::Automatic,
        Some(raw) => CaptureMethod::parse(raw).ok_or_else(|| {
            let shown: String = raw.chars().take(40).collect();
            ApiError::invalid(
                "parameter_invalid",
                format!("capture_method '{shown}' is not one of automatic, manual"),
                "capture_method",
            )
        })?,
    };
    Ok(NewCheckout { checkout_id, buyer, orders, payment_method, description, metadata, capture_method })
}

fn parse_description(raw: Option<&str>, param: &str) -> Result<Option<Description>, ApiError> {
    raw.map(|d| {
        Description::parse(d).map_err(|why| ApiError::invalid("parameter_invalid", format!("{param} {why}"), param))
    })
    .transpose()
}

fn parse_metadata(raw: Option<&serde_json::Map<String, serde_json::Value>>, param: &str) -> Result<Metadata, ApiError> {
    let Some(map) = raw else { return Ok(Metadata::default()) };
    Metadata::parse(map).map_err(|e| {
        let at = e.key.map_or(param.to_string(), |k| format!("{param}.{k}"));
        ApiError::invalid("metadata_invalid", format!("{at}: {}", e.why), at)
    })
}

/// What reaches the PSP stays within Stripe's 50 keys: an order's
/// PaymentIntent carries its checkout's metadata merged with its own,
/// beside till's keys.
fn check_metadata_at_psp(checkout: &Metadata, orders: &[NewOrder]) -> Result<(), ApiError> {
    let max = Metadata::MAX_KEYS_AT_PSP;
    if checkout.len() > max {
        return Err(ApiError::invalid(
            "metadata_invalid",
            format!("metadata holds {} keys; with till's own the PSP takes at most {max}", checkout.len()),
            "metadata",
        ));
    }
    for (i, order) in orders.iter().enumerate() {
        let keys = checkout.merged(&order.metadata).len();
        if keys > max {
            return Err(ApiError::invalid(
                "metadata_invalid",
                format!(
                    "orders[{i}].metadata and the checkout's make {keys} keys; with till's own the PSP takes at most {max}"
                ),
                format!("orders[{i}].metadata"),
            ));
        }
    }
    Ok(())
}

fn parse_buyer(b: BuyerBody) -> Result<Buyer, ApiError> {
    let id = b.id.trim();
    if id.is_empty() || id.len() > MAX_TEXT {
        return Err(ApiError::invalid("parameter_invalid", "buyer.id must be 1 to 255 characters", "buyer.id"));
    }
    body::text(id, MAX_TEXT, "buyer.id")?;
    let email = match b.email {
        None => None,
        Some(e) => {
            let valid = e.len() <= 254
                && e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(ApiError::invalid(
                    "parameter_invalid",
                    "buyer.email is not an e-mail address",
                    "buyer.email",
                ));
            }
            Some(e)
        }
    };
    Ok(Buyer { id: id.to_string(), email })
}

fn parse_order(i: usize, o: OrderBody) -> Result<NewOrder, ApiError> {
    let param = |field: &str| format!("orders[{i}].{field}");
    let payment_order_id = PaymentOrderId::parse(&o.payment_order_id).ok_or_else(|| {
        ApiError::invalid(
            "parameter_invalid",
            format!("{} must be a UUID", param("payment_order_id")),
            param("payment_order_id"),
        )
    })?;
    let seller_id = SellerId::parse(&o.seller_id).ok_or_else(|| {
        ApiError::invalid(
            "parameter_invalid",
            format!("{} must be 1 to {} letters, digits, '_', '-' or '.'", param("seller_id"), SellerId::MAX_LEN),
            param("seller_id"),
        )
    })?;
    let currency = Currency::parse(&o.currency)
        .map_err(|e| ApiError::invalid(e.code(), format!("{}: {e}", param("currency")), param("currency")))?;
    let amount = Money::parse(&o.amount, currency)
        .and_then(Money::chargeable)
        .map_err(|e| ApiError::invalid(e.code(), format!("{} {e}", param("amount")), param("amount")))?;
    let description = parse_description(o.description.as_deref(), &param("description"))?;
    let metadata = parse_metadata(o.metadata.as_ref(), &param("metadata"))?;
    Ok(NewOrder { payment_order_id, seller_id, amount, description, metadata })
}

fn parse_payment_method(
    method: Option<PaymentMethodBody>,
    success_url: Option<String>,
    cancel_url: Option<String>,
    orders: &[NewOrder],
) -> Result<PaymentMethod, ApiError> {
    let kind = method.as_ref().map_or("hosted_page", |m| m.kind.as_str());
    match kind {
        "hosted_page" => {
            let success_url = parse_url(success_url, "success_url")?;
            let cancel_url = parse_url(cancel_url, "cancel_url")?;
            let first = orders[0].amount.currency();
            if let Some(i) = orders.iter().position(|o| o.amount.currency() != first) {
                return Err(ApiError::invalid(
                    "currency_mismatch",
                    format!("orders[{i}].currency differs from orders[0]; a hosted page takes one currency"),
                    format!("orders[{i}].currency"),
                ));
            }
            // The hosted page is one charge for all the orders.
            let total = orders.iter().map(|o| o.amount.amount_minor()).try_fold(0i64, i64::checked_add);
            let chargeable = total.ok_or(MoneyError::TooLarge).and_then(|t| Money::from_minor(t, first)?.chargeable());
            if let Err(e) = chargeable {
                return Err(ApiError::invalid(e.code(), format!("the orders' total {e}"), "orders"));
            }
            Ok(PaymentMethod::HostedPage { success_url, cancel_url })
        }
        // The payment executor that charges tokens is not built yet: refuse
        // clearly rather than accept orders nothing would ever execute.
        "token" => {
            let token = method.and_then(|m| m.token).ok_or_else(|| {
                ApiError::invalid(
                    "parameter_missing",
                    "payment_method.token is required for a token payment",
                    "payment_method.token",
                )
            })?;
            let valid = token.starts_with("pm_")
                && token.len() <= MAX_TEXT
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(ApiError::invalid(
                    "parameter_invalid",
                    "payment_method.token must be a PSP payment method id like pm_…",
                    "payment_method.token",
                ));
            }
            Ok(PaymentMethod::Token { token })
        }
        other => Err(ApiError::invalid(
            "parameter_invalid",
            format!("payment_method.type '{other}' is not one of hosted_page, token"),
            "payment_method.type",
        )),
    }
}

pub(crate) fn parse_url(url: Option<String>, param: &str) -> Result<String, ApiError> {
    let url = url.ok_or_else(|| ApiError::invalid("parameter_missing", format!("{param} is required"), param))?;
    let valid = url.len() <= MAX_URL
        && (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "http://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(ApiError::invalid(
            "url_invalid",
            format!("{param} must be an http(s) URL of at most {MAX_URL} characters"),
            param,
        ));
    }
    Ok(url)
}

#[utoipa::path(
    params(("payment_order_id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/payments/{payment_order_id}")]
pub async fn get_payment_order(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "payment order", path.into_inner(), store::order_view).await
}

#[utoipa::path(
    params(("checkout_id" = String, Path)),
    responses((status = 200, body = CheckoutView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/checkouts/{checkout_id}")]
pub async fn get_checkout(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::http::api::read_one(&ctx, "checkout", path.into_inner(), store::checkout_view).await
}

/// The body of a POST that takes no fields: empty, or `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[utoipa::path(
    params(("checkout_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "The checkout after the PSP's answer was applied", body = CheckoutView),
        (status = 404, body = ErrorBody),
        (status = 502, description = "The PSP's answer could not be applied", body = ErrorBody),
        (status = 503, description = "The PSP did not answer; send the same request again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Asks the PSP now about every order of the checkout that is not final
/// and applies its answer (call it from your success page: a lost webhook
/// then costs nothing). A no-op on a final checkout.
#[post("/checkouts/{checkout_id}/sync")]
pub async fn sync_checkout(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |_: NoFields| async move {
        Ok(HttpResponse::Ok().json(sync::sync_now(ctx, &id).await?))
    })
    .await
}

#[utoipa::path(
    params(("checkout_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Canceled: its orders are FAILED with failure_code canceled", body = CheckoutView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "An order succeeded, or a token charge is under way", body = ErrorBody),
        (status = 503, description = "The PSP did not answer; send the same request again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Cancels a checkout: its hosted session is expired at the PSP, and its
/// orders end FAILED with `canceled`. Refused once any order succeeded.
#[post("/checkouts/{checkout_id}/cancel")]
pub async fn cancel_checkout(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |_: NoFields| async move {
        Ok(HttpResponse::Ok().json(sync::cancel(ctx, &id).await?))
    })
    .await
}

/// `POST /v1/checkouts/{id}/capture`: what to take of each authorized order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaptureRequest)]
pub struct CaptureBody {
    /// Orders to capture for less than their amount (at most 50); an
    /// AUTHORIZED order not listed is captured in full. Left out: every
    /// AUTHORIZED order in full.
    orders: Option<Vec<CaptureOrderBody>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaptureOrder)]
pub struct CaptureOrderBody {
    payment_order_id: String,
    /// What to take, in major units, at most the order's amount; `"0"` releases the order
    /// (it ends FAILED `canceled`). The rest of the authorization is released.
    #[schema(example = "20.00")]
    amount: String,
}

#[utoipa::path(
    request_body = CaptureBody,
    params(("checkout_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Captured: each captured order is SUCCESS and booked for what was taken \
                                      (`amount_captured`); the rest of each authorization is released", body = CheckoutView),
        (status = 400, description = "An order or amount is wrong; `param` names it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not capturable: captured automatically, not authorized yet, voided, \
                                      expired, or captured already with other amounts", body = ErrorBody),
        (status = 502, description = "The PSP refused the capture", body = ErrorBody),
        (status = 503, description = "The PSP did not answer: the capture is recorded and goes on; \
                                      send the same request again to see it end", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Captures a manual checkout's authorization: each AUTHORIZED order in
/// full, or for the amount given (one capture per PaymentIntent, the rest
/// released). The same capture asked again answers the same; a capture
/// after a void (or the reverse) is refused.
#[post("/checkouts/{checkout_id}/capture")]
pub async fn capture_checkout(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: CaptureBody| async move {
        let orders = b.orders.unwrap_or_default();
        if orders.len() > capture::MAX_CAPTURE_ORDERS {
            let message = format!("orders lists at most {} orders", capture::MAX_CAPTURE_ORDERS);
            return Err(ApiError::invalid("orders_invalid", message, "orders"));
        }
        let ask = capture::CaptureAsk { orders: orders.into_iter().map(|o| (o.payment_order_id, o.amount)).collect() };
        Ok(HttpResponse::Ok().json(capture::capture(ctx, &id, ask).await?))
    })
    .await
}

#[utoipa::path(
    params(("checkout_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Voided: the authorization is released, its orders are FAILED `canceled`", body = CheckoutView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not voidable: captured automatically, not authorized yet, captured or expired", body = ErrorBody),
        (status = 502, description = "The PSP refused", body = ErrorBody),
        (status = 503, description = "The PSP did not answer: the void is recorded and goes on", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
/// Voids a manual checkout's authorization: nothing is captured, the
/// buyer's money is released, its AUTHORIZED orders end FAILED `canceled`.
#[post("/checkouts/{checkout_id}/void")]
pub async fn void_checkout(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |_: NoFields| async move {
        Ok(HttpResponse::Ok().json(capture::void(ctx, &id).await?))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    status: Option<String>,
    seller_id: Option<String>,
    /// Orders whose metadata (their checkout's merged with their own) holds each pair:
    /// `metadata[order_number]=1001`; at most 10 pairs.
    #[param(style = DeepObject, explode, value_type = Option<Object>)]
    metadata: Option<std::collections::BTreeMap<String, String>>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(
    params(ListQuery),
    responses((status = 200, body = Page<OrderView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/payments")]
pub async fn list_payment_orders(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // `metadata=x` or `metadata[]=x` would read as no filter at all.
    let pairs = req.query_string().split('&').map(|p| p.split('=').next().unwrap_or_default());
    if pairs.map(|k| k.replace("%5B", "[").replace("%5D", "]")).any(|k| k == "metadata" || k == "metadata[]") {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "metadata filters are written metadata[key]=value",
            "metadata",
        ));
    }
    let q: ListQuery = crate::http::api::parse_query(&req)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(OrderStatus::parse(s).ok_or_else(|| {
            let valid: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
            let message = format!("status '{s}' is not an order status: one of {}", valid.join(", "));
            ApiError::invalid("parameter_invalid", message, "status")
        })?),
    };
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("parameter_invalid", "limit must be between 1 and 100", "limit"));
    }
    let metadata: Vec<(String, String)> = q.metadata.unwrap_or_default().into_iter().collect();
    if metadata.len() > store::MAX_METADATA_FILTERS {
        return Err(ApiError::invalid(
            "parameter_invalid",
            format!("at most {} metadata filters", store::MAX_METADATA_FILTERS),
            "metadata",
        ));
    }
    let filter =
        store::OrderFilter { status, seller_id: q.seller_id, metadata, starting_after: q.starting_after, limit };
    let page = ctx.db.run(move |tx| store::list_orders(tx, &filter)).await?;
    Ok(HttpResponse::Ok().json(page))
}
