//! Reading JSON request bodies: size-limited, unknown fields refused, and
//! every error a 400 of the API's shape naming the field (`param`).

use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::http::errors::ApiError;

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("body_unreadable", format!("request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError {
                status: actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::bad_request("body_too_large", format!("the request body is larger than {limit} bytes"))
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses JSON into `T`, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            return ApiError::bad_request("body_invalid", format!("the body is not valid JSON for this call: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        let code = if path.ends_with("amount") { "amount_invalid" } else { "parameter_invalid" };
        ApiError::invalid(code, format!("{path}: {message}"), path)
    })
}

/// serde_json appends " at line 1 column 42"; the param already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
