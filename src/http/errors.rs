//! The one place where errors become HTTP responses of the API's shape:
//! `{"error": {"type", "code", "message", "param"}}` with a stable `code`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    IdempotencyError,
    PspError,
    ApiError,
}

/// An error as the merchant API returns it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Stable, for programs: `amount_invalid`, `idempotency_key_in_use`, …
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault, e.g. `orders[0].amount`; null when the
    /// error is not about one field.
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>, param: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: ErrorType::InvalidRequestError,
            code,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: ErrorType::InvalidRequestError,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: ErrorType::InvalidRequestError,
            code: "resource_missing",
            message: format!("no {what} with id '{id}'"),
            param: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: ErrorType::AuthenticationError,
            code: "api_key_invalid",
            message: message.into(),
            param: None,
        }
    }

    pub fn idempotency(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind: ErrorType::IdempotencyError, code, message: message.into(), param: None }
    }

    pub fn psp(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind: ErrorType::PspError, code, message: message.into(), param: None }
    }

    /// An unexpected failure: logged in full here, shown to the client only
    /// as a 500. A write that failed for want of storage (disk full,
    /// read-only, I/O error: `db::is_storage_trouble`) is a 503 the client
    /// sends again after `Retry-After`; the storage's state is logged and
    /// alerted once by `db` and the storage watch, not per request.
    pub fn internal(error: &anyhow::Error) -> Self {
        if crate::db::is_storage_trouble(error) {
            tracing::debug!(error = format!("{error:#}"), "storage unavailable");
            return ApiError::storage_unavailable();
        }
        tracing::error!(error = format!("{error:#}"), "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: ErrorType::ApiError,
            code: "internal_error",
            message: "an internal error occurred; it has been logged".into(),
            param: None,
        }
    }

    /// The database cannot take writes now (`/readyz` says so too).
    pub fn storage_unavailable() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: ErrorType::ApiError,
            code: "storage_unavailable",
            message: "till cannot store this request now (its storage is full or failing); nothing was done: \
                      send the same request again later"
                .into(),
            param: None,
        }
    }
}

/// Seconds a client waits before sending a request again after a 503.
pub const RETRY_AFTER_S: u32 = 5;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((actix_web::http::header::RETRY_AFTER, RETRY_AFTER_S.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                code: self.code.to_string(),
                message: self.message.clone(),
                param: self.param.clone(),
            },
        })
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(&e)
    }
}

impl From<crate::payments::sync::SyncError> for ApiError {
    fn from(e: crate::payments::sync::SyncError) -> ApiError {
        use crate::payments::sync::SyncError;
        let message = e.to_string();
        match e {
            SyncError::NotFound(id) => ApiError::not_found("checkout", &id),
            SyncError::NotCancelable(_) => {
                ApiError { status: StatusCode::CONFLICT, ..ApiError::bad_request("checkout_not_cancelable", message) }
            }
            SyncError::PspUnavailable(_) => ApiError::psp(
                StatusCode::SERVICE_UNAVAILABLE,
                "psp_unavailable",
                format!("{message}; send the same request again"),
            ),
            SyncError::Psp(_) => ApiError::psp(StatusCode::BAD_GATEWAY, "psp_error", message),
            SyncError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<crate::payments::capture::CaptureError> for ApiError {
    fn from(e: crate::payments::capture::CaptureError) -> ApiError {
        use crate::payments::capture::CaptureError;
        let message = e.to_string();
        match e {
            CaptureError::NotFound(id) => ApiError::not_found("checkout", &id),
            CaptureError::Refused(_) => {
                ApiError { status: StatusCode::CONFLICT, ..ApiError::bad_request("checkout_not_capturable", message) }
            }
            CaptureError::NotVoidable(_) => {
                ApiError { status: StatusCode::CONFLICT, ..ApiError::bad_request("checkout_not_voidable", message) }
            }
            CaptureError::BadOrder { index, field, .. } => {
                let code = if field == "amount" { "amount_invalid" } else { "parameter_invalid" };
                ApiError::invalid(code, message, format!("orders[{index}].{field}"))
            }
            CaptureError::PspUnavailable(_) => ApiError::psp(
                StatusCode::SERVICE_UNAVAILABLE,
                "psp_unavailable",
                format!("{message}; the decision is recorded and is carried out: send the same request again"),
            ),
            CaptureError::Psp(_) => ApiError::psp(StatusCode::BAD_GATEWAY, "psp_error", message),
            CaptureError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<crate::disputes::DisputeError> for ApiError {
    fn from(e: crate::disputes::DisputeError) -> ApiError {
        use crate::disputes::DisputeError;
        let message = e.to_string();
        match e {
            DisputeError::NotFound(id) => ApiError::not_found("dispute", &id),
            DisputeError::Refused(_) | DisputeError::NotOurs(_) => {
                ApiError { status: StatusCode::CONFLICT, ..ApiError::bad_request("dispute_not_open", message) }
            }
            DisputeError::BadEvidence(_) => ApiError::invalid("parameter_invalid", message, "text"),
            DisputeError::PspUnavailable(_) => ApiError::psp(
                StatusCode::SERVICE_UNAVAILABLE,
                "psp_unavailable",
                format!("{message}; the answer is recorded and is sent: send the same request again to see it"),
            ),
            DisputeError::Psp(_) => ApiError::psp(StatusCode::BAD_GATEWAY, "psp_error", message),
            DisputeError::Internal(e) => ApiError::internal(&e),
        }
    }
}

// The core's errors, as the API shows them.

impl From<crate::payments::create::CreateError> for ApiError {
    fn from(e: crate::payments::create::CreateError) -> ApiError {
        match e {
            crate::payments::create::CreateError::DifferentRequest(id) => ApiError::idempotency(
                StatusCode::UNPROCESSABLE_ENTITY,
                "checkout_id_reused",
                format!("checkout_id {id} was already used with a different request body"),
            ),
            crate::payments::create::CreateError::OrderIdTaken(i) => ApiError::invalid(
                "payment_order_id_taken",
                format!("orders[{i}].payment_order_id is already used by another checkout"),
                format!("orders[{i}].payment_order_id"),
            ),
            crate::payments::create::CreateError::PspRefused(msg) => ApiError::psp(
                StatusCode::BAD_GATEWAY,
                "psp_refused",
                format!(
                    "{msg}; nothing was charged and the checkout stays open: send the same request again once the cause is fixed, or cancel it"
                ),
            ),
            crate::payments::create::CreateError::PspUnavailable(msg) => ApiError::psp(
                StatusCode::SERVICE_UNAVAILABLE,
                "psp_unavailable",
                format!("the PSP could not be reached ({msg}); send the same request again to resume"),
            ),
            crate::payments::create::CreateError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<crate::refunds::RefundError> for ApiError {
    fn from(e: crate::refunds::RefundError) -> ApiError {
        let message = e.to_string();
        match e {
            crate::refunds::RefundError::OrderMissing(id) => ApiError::not_found("payment order", &id),
            crate::refunds::RefundError::NotRefundable(..) => {
                ApiError::invalid("order_not_refundable", message, "payment_order_id")
            }
            crate::refunds::RefundError::Disputed { .. } => {
                ApiError::invalid("charge_disputed", message, "payment_order_id")
            }
            crate::refunds::RefundError::BadAmount(_) => ApiError::invalid("amount_invalid", message, "amount"),
            crate::refunds::RefundError::TooMuch { .. } => ApiError::invalid("refund_exceeds_order", message, "amount"),
            crate::refunds::RefundError::SellerBalance { .. } => {
                ApiError::invalid("insufficient_seller_balance", message, "amount")
            }
            crate::refunds::RefundError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<crate::payouts::PayoutError> for ApiError {
    fn from(e: crate::payouts::PayoutError) -> ApiError {
        let message = e.to_string();
        match e {
            crate::payouts::PayoutError::SellerMissing(_) => ApiError::invalid("seller_missing", message, "seller_id"),
            crate::payouts::PayoutError::NoDestination(_) => {
                ApiError::invalid("payout_destination_missing", message, "seller_id")
            }
            crate::payouts::PayoutError::CurrencyNeeded(_) => {
                ApiError::invalid("parameter_missing", message, "currency")
            }
            crate::payouts::PayoutError::BadAmount(_) => ApiError::invalid("amount_invalid", message, "amount"),
            crate::payouts::PayoutError::TooMuch { .. } => {
                ApiError::invalid("amount_exceeds_available", message, "amount")
            }
            crate::payouts::PayoutError::BelowMinimum { .. } => {
                ApiError::invalid("amount_below_minimum", message, "amount")
            }
            crate::payouts::PayoutError::InDebt { .. } => ApiError::invalid("seller_in_debt", message, "seller_id"),
            crate::payouts::PayoutError::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// A query string that does not parse, said without the parser's own
/// words: an unknown parameter is named with those the route takes.
pub fn query_error(e: &actix_web::error::QueryPayloadError) -> ApiError {
    query_problem(&e.to_string())
}

/// [`query_error`] from the parser's message (actix's or serde_qs's).
pub fn query_problem(text: &str) -> ApiError {
    let text = text.strip_prefix("Query deserialize error: ").unwrap_or(text);
    // serde: "unknown field `x`, expected one of `a`, `b`" / "expected `a`"
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some((name, expected)) = rest.split_once('`')
    {
        let expected = expected.trim_start_matches(", ").replace("expected one of ", "").replace("expected ", "");
        let message = format!("unknown query parameter '{name}': this route takes {}", expected.replace('`', "'"));
        let name: String = name.chars().take(64).collect();
        return ApiError::invalid("parameter_invalid", message, &name);
    }
    ApiError::bad_request("parameter_invalid", format!("a query parameter is not of its kind: {text}"))
}
