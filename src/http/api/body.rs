//! Reading request bodies: size-limited (a declared length over the limit is
//! refused before a byte is read), time-limited (a body that trickles in is
//! cut off), JSON only as `application/json`, unknown fields and trailing
//! bytes refused, and every error a 4xx of the API's shape naming the field
//! (`param`).

use std::future::Future;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::context::Ctx;
use crate::http::body_deadline;
use crate::http::errors::ApiError;
use crate::http::idempotency;

/// What a body may be: at most `limit_bytes` (and, for every request, whole
/// within `server.body_timeout_ms`: see `http::body_deadline`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub limit_bytes: usize,
}

impl Limits {
    /// The merchant API's limit for a JSON body.
    pub fn api(ctx: &Ctx) -> Limits {
        Limits { limit_bytes: ctx.settings.server.max_body_bytes }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..ApiError::bad_request("body_too_large", format!("the request body is larger than {limit} bytes"))
    }
}

/// Reads the whole body within the limits.
pub async fn read(req: &HttpRequest, mut payload: web::Payload, limits: Limits) -> Result<web::Bytes, ApiError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.limit_bytes as u64) {
        return Err(too_large(limits.limit_bytes));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match body_deadline::is_deadline(&e) {
            true => ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                ..ApiError::bad_request("body_timeout", "the request body did not arrive in time")
            },
            false => ApiError::bad_request("body_unreadable", format!("request body: {e}")),
        })?;
        if body.len() + chunk.len() > limits.limit_bytes {
            return Err(too_large(limits.limit_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a JSON body: any body that is not empty must say it is
/// `application/json` (a form or text a browser could send cross-site is not).
pub async fn read_json(req: &HttpRequest, payload: web::Payload, limits: Limits) -> Result<web::Bytes, ApiError> {
    let bytes = read(req, payload, limits).await?;
    if !bytes.is_empty() && !is_json(req) {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ..ApiError::bad_request("content_type_invalid", "send the body as JSON with Content-Type: application/json")
        });
    }
    Ok(bytes)
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The route shape of every idempotent JSON POST: the body is read within
/// its limits, the `Idempotency-Key` replays or guards the call, the body
/// is parsed into `T` (an empty body reads as `{}`), and `handler` does
/// the work.
pub async fn idempotent_json<T, F, Fut>(
    ctx: &Ctx,
    api_key_id: &str,
    req: &HttpRequest,
    payload: web::Payload,
    handler: F,
) -> Result<HttpResponse, ApiError>
where
    T: DeserializeOwned,
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let bytes = read_json(req, payload, Limits::api(ctx)).await?;
    idempotency::run(ctx, api_key_id, req, &bytes, || async { handler(parse_json(&bytes)?).await }).await
}

/// Parses JSON into `T`, naming the path of the first bad field. An empty
/// body is `{}`; anything after the value is refused.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.is_empty() { b"{}".as_slice() } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("body_invalid", format!("the body is not valid JSON: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let param = if path == "." { field.to_string() } else { format!("{path}.{field}") };
            return ApiError::invalid("parameter_missing", format!("{param} is required"), param);
        }
        if path == "." {
            return ApiError::bad_request("body_invalid", format!("the body is not valid for this call: {message}"));
        }
        let code = if path.ends_with("amount") { "amount_invalid" } else { "parameter_invalid" };
        ApiError::invalid(code, format!("{path}: {message}"), path)
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(
            "body_invalid",
            format!("the body holds more than one JSON value: {}", strip_position(&e.to_string())),
        )
    })?;
    Ok(value)
}

/// A free-text field: at most `max_chars` characters and no control
/// characters (no NUL, no line breaks in what ends up in logs and headers).
pub fn text(value: &str, max_chars: usize, param: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid("parameter_invalid", format!("{param} must not hold control characters"), param));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(
            "parameter_invalid",
            format!("{param} is longer than {max_chars} characters"),
            param,
        ));
    }
    Ok(())
}

/// serde_json appends " at line 1 column 42"; the param already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Body {
        a: Option<String>,
    }

    #[test]
    fn one_json_value_and_nothing_after_it() {
        assert!(parse_json::<Body>(br#"{"a": "x"}"#).is_ok());
        assert!(parse_json::<Body>(b"  {\"a\": \"x\"}\n ").is_ok(), "whitespace around it is fine");
        assert!(parse_json::<Body>(b"").unwrap().a.is_none(), "empty is {{}}");
        for bad in [&br#"{"a": "x"}{"a": "y"}"#[..], br#"{"a": "x"} trailing"#, br#"{"a": "x"}]"#] {
            let err = parse_json::<Body>(bad).unwrap_err();
            assert_eq!(err.code, "body_invalid", "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn text_refuses_control_characters_and_length() {
        assert!(text("Kim Lee, order #12 — ok", 40, "x").is_ok());
        for bad in ["a\u{0}b", "a\r\nX-Injected: 1", "tab\there", "\u{7f}", "\u{85}"] {
            assert_eq!(text(bad, 40, "x").unwrap_err().param.as_deref(), Some("x"), "{bad:?}");
        }
        assert!(text(&"é".repeat(41), 40, "x").is_err());
        assert!(text(&"é".repeat(40), 40, "x").is_ok());
    }
}
