//! What the sandbox answers an API request with, as stored for idempotent replays.

use serde::Serialize;

use super::error::StripeError;

/// A reply as stored for idempotent replays: status and exact JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

pub const JSON: &str = "application/json";

impl Reply {
    /// A JSON body as it is (stored replies, error envelopes).
    pub fn raw_json(status: u16, body: String) -> Reply {
        Reply { status, body, content_type: JSON }
    }

    pub fn csv(body: String) -> Reply {
        Reply { status: 200, body, content_type: "text/csv; charset=utf-8" }
    }

    /// 200 with `object` as JSON.
    pub fn ok<T: Serialize>(object: &T) -> Result<Reply, StripeError> {
        Self::json(200, object)
    }

    pub fn json<T: Serialize>(status: u16, object: &T) -> Result<Reply, StripeError> {
        let body = serde_json::to_string(object).map_err(anyhow::Error::from)?;
        Ok(Reply::raw_json(status, body))
    }
}
