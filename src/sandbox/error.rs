//! Stripe's error shape and status codes: `{"error": {"type", "code",
//! "decline_code", "message", "param"}}`, absent fields left out as Stripe
//! does. Every failure of the sandbox's API goes through [`StripeError`];
//! card declines are not errors here but stored replies (see `payment_intents`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// 400 `invalid_request_error`: a bad or missing parameter, a wrong state.
    #[error("{message}")]
    InvalidRequest { code: Option<&'static str>, param: Option<String>, message: String },
    /// 404 `resource_missing`.
    #[error("{message}")]
    NotFound { param: Option<String>, message: String },
    /// 401: a missing or wrong secret key.
    #[error("{0}")]
    Unauthorized(String),
    /// 400 `idempotency_error`: the key was used with other parameters.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// 409 `idempotency_error`: the key's first request is still running.
    #[error("{0}")]
    IdempotencyInUse(String),
    /// 500 `api_error` injected by the faults (`error_rate`).
    #[error("fault injected")]
    FaultInjected,
    /// 500 `api_error`: our own failure, logged, never shown in detail.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The body inside `{"error": …}`, as Stripe writes it.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<&'a str>,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<&'a str>,
    /// A declined PaymentIntent, as Stripe returns it inside card errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<&'a serde_json::Value>,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
}

/// `{"error": body}` as a JSON string.
pub fn envelope_json(body: ErrorBody<'_>) -> String {
    serde_json::to_string(&Envelope { error: body })
        .unwrap_or_else(|_| r#"{"error":{"message":"serialization failed","type":"api_error"}}"#.into())
}

impl StripeError {
    pub fn invalid(code: &'static str, param: impl Into<String>, message: impl Into<String>) -> Self {
        StripeError::InvalidRequest { code: Some(code), param: Some(param.into()), message: message.into() }
    }

    /// A request that is well-formed but not allowed in the object's state.
    pub fn unexpected_state(code: &'static str, message: impl Into<String>) -> Self {
        StripeError::InvalidRequest { code: Some(code), param: None, message: message.into() }
    }

    pub fn no_such(kind: &str, id: &str, param: Option<&str>) -> Self {
        StripeError::NotFound {
            param: param.map(str::to_string),
            message: format!("No such {kind}: '{}'", truncate(id, 80)),
        }
    }

    pub fn missing(param: &str) -> Self {
        Self::invalid("parameter_missing", param, format!("Missing required param: {param}."))
    }

    fn body(&self) -> ErrorBody<'_> {
        match self {
            StripeError::InvalidRequest { code, param, message } => {
                plain("invalid_request_error", *code, param.as_deref(), message)
            }
            StripeError::NotFound { param, message } => {
                plain("invalid_request_error", Some("resource_missing"), param.as_deref(), message)
            }
            StripeError::Unauthorized(message) => plain("invalid_request_error", None, None, message),
            StripeError::IdempotencyMismatch(message) => plain("idempotency_error", None, None, message),
            StripeError::IdempotencyInUse(message) => {
                plain("idempotency_error", Some("idempotency_key_in_use"), None, message)
            }
            StripeError::FaultInjected => {
                plain("api_error", None, None, "An unknown error occurred (sandbox fault injection: error_rate).")
            }
            StripeError::Internal(_) => plain("api_error", None, None, "An unknown error occurred in the sandbox."),
        }
    }
}

fn plain<'a>(kind: &'a str, code: Option<&'a str>, param: Option<&'a str>, message: &'a str) -> ErrorBody<'a> {
    ErrorBody { code, decline_code: None, message, param, payment_intent: None, kind }
}

impl ResponseError for StripeError {
    fn status_code(&self) -> StatusCode {
        match self {
            StripeError::InvalidRequest { .. } | StripeError::IdempotencyMismatch(_) => StatusCode::BAD_REQUEST,
            StripeError::NotFound { .. } => StatusCode::NOT_FOUND,
            StripeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            StripeError::IdempotencyInUse(_) => StatusCode::CONFLICT,
            StripeError::FaultInjected | StripeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let StripeError::Internal(e) = self {
            tracing::error!(error = format!("{e:#}"), "sandbox API request failed");
        }
        HttpResponse::build(self.status_code()).content_type("application/json").body(envelope_json(self.body()))
    }
}

/// At most `max` characters of `s`, for echoing client input in messages.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_absent_fields_out() {
        let json = envelope_json(StripeError::missing("amount").body());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "parameter_missing");
        assert_eq!(v["error"]["param"], "amount");
        assert!(v["error"].get("decline_code").is_none());
    }
}
