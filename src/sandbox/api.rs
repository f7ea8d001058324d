//! The request pipeline every API route goes through, so routes stay thin:
//! the secret key, the `Stripe-Version`, the injected faults, the
//! size-limited body, its bracket parameters, the idempotency key, one write
//! transaction for the work and its stored reply, the request log, then the
//! reply (or Stripe's error).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine;
use rusqlite::Connection;

use super::error::{StripeError, truncate};
use super::faults::RequestFaults;
use super::idempotency::{self, Begin, IdempotencyKey};
use super::ids::{self, now_ms};
use super::params::{self, Params};
use super::reply::Reply;
use super::request_log;
use super::versions::{self, Version};
use super::{Sandbox, Shared};

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most characters of a logged path (ids come from clients).
const MAX_LOGGED_PATH_CHARS: usize = 200;
/// The "timeout" fault holds the reply this long: longer than any sane
/// client timeout, short enough that a test run never waits on it.
const TIMEOUT_FAULT_HANG_MS: u64 = 120_000;

/// Whether a route suffers the injected faults (never `/v1/sandbox/*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Faulty {
    Yes,
    No,
}

/// A POST: the work `op` runs in one write transaction with its reply stored
/// under the idempotency key, if one was sent.
pub async fn post<F>(sb: &Sandbox, req: &HttpRequest, payload: web::Payload, faulty: Faulty, op: F) -> HttpResponse
where
    F: FnOnce(&Connection, &Shared, Params) -> Result<Reply, StripeError> + Send + 'static,
{
    post_versioned(sb, req, payload, faulty, move |tx, shared, params, _| op(tx, shared, params)).await
}

/// A POST whose work depends on the API version it is served with.
pub async fn post_versioned<F>(
    sb: &Sandbox,
    req: &HttpRequest,
    payload: web::Payload,
    faulty: Faulty,
    op: F,
) -> HttpResponse
where
    F: FnOnce(&Connection, &Shared, Params, &Version) -> Result<Reply, StripeError> + Send + 'static,
{
    serve(sb, req, |version| run_post(sb, req, payload, faulty, version, op)).await
}

/// A GET: `op` reads through one pooled connection.
pub async fn get<F>(sb: &Sandbox, req: &HttpRequest, faulty: Faulty, op: F) -> HttpResponse
where
    F: FnOnce(&Connection, &Shared) -> Result<Reply, StripeError> + Send + 'static,
{
    let work = |_version| async move {
        let faults = before_work(sb, faulty).await?;
        let shared = sb.shared.clone();
        let reply = sb.db.run_sqlite(move |conn| op(conn, &shared)).await?;
        Ok::<_, StripeError>((reply, false, faults.timeout))
    };
    serve(sb, req, work).await
}

/// What every API request goes through: the secret key, then the
/// `Stripe-Version` (none: the account's default; an unknown one: 400), then
/// `work` with the version served; the request is logged (with the version
/// it carried) before the reply, which carries the logged `Request-Id`.
/// `work` answers the reply, whether it is a replay, and whether to hang it.
async fn serve<W, Fut>(sb: &Sandbox, req: &HttpRequest, work: W) -> HttpResponse
where
    W: FnOnce(Version) -> Fut,
    Fut: Future<Output = Result<(Reply, bool, bool), StripeError>>,
{
    let request_id = ids::new_id("req_");
    if let Err(e) = authorize(sb, req) {
        return error_reply_with_id(e, &request_id);
    }
    let sent = versions::sent(req.headers());
    let served = versions::serve(sent.as_deref());
    let served_version = served.as_ref().ok().map(|v| v.as_str().to_string());
    let outcome = match served {
        Ok(version) => work(version).await,
        Err(e) => Err(e),
    };
    let entry = request_log::Entry {
        id: request_id.clone(),
        object: request_log::Entry::OBJECT,
        created_ms: now_ms(),
        method: req.method().to_string(),
        path: truncate(req.path(), MAX_LOGGED_PATH_CHARS),
        stripe_version: sent,
        served_version,
        idempotency_key: req
            .headers()
            .get("Idempotency-Key")
            .map(|v| truncate(&String::from_utf8_lossy(v.as_bytes()), idempotency::MAX_KEY_CHARS)),
        status: match &outcome {
            Ok((reply, _, _)) => reply.status,
            Err(e) => e.status_code().as_u16(),
        },
    };
    sb.shared.requests.record(entry);
    match outcome {
        Ok((reply, replayed, hang)) => respond(reply, replayed, hang, &request_id).await,
        Err(e) => error_reply_with_id(e, &request_id),
    }
}

async fn run_post<F>(
    sb: &Sandbox,
    req: &HttpRequest,
    payload: web::Payload,
    faulty: Faulty,
    version: Version,
    op: F,
) -> Result<(Reply, bool, bool), StripeError>
where
    F: FnOnce(&Connection, &Shared, Params, &Version) -> Result<Reply, StripeError> + Send + 'static,
{
    let body = read_body(payload).await?;
    let params = params::parse(&body)?;
    let key = idempotency_key(req)?;
    let hash = key.as_ref().map(|_| idempotency::request_hash(req.method().as_str(), req.path(), &body));
    // The lock of a key is this process's in-flight set: a second request
    // with it while the first runs gets Stripe's 409.
    let _running = key.as_ref().map(|k| sb.shared.in_flight.take(k)).transpose()?;
    let faults = before_work(sb, faulty).await?;
    let shared = sb.shared.clone();
    // One transaction: the stored reply is replayed, or the work is done
    // and its reply stored with it.
    let (reply, replayed) = sb
        .db
        .write_sqlite(move |tx| {
            let now = now_ms();
            if let (Some(k), Some(h)) = (&key, &hash)
                && let Begin::Replay(reply) = idempotency::lookup(tx, k, h, now)?
            {
                return Ok::<_, StripeError>((reply, true));
            }
            let reply = op(tx, &shared, params, &version)?;
            if let (Some(k), Some(h)) = (&key, &hash) {
                idempotency::store(tx, k, h, &reply, now)?;
            }
            Ok((reply, false))
        })
        .await?;
    if !replayed {
        sb.shared.wake_delivery.notify_one();
    }
    Ok((reply, replayed, faults.timeout))
}

/// `Authorization: Bearer <secret key>`; anything else is Stripe's 401.
pub fn authorize(sb: &Sandbox, req: &HttpRequest) -> Result<(), StripeError> {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        return Err(StripeError::Unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .into(),
        ));
    };
    let given = given_key(header).unwrap_or_default();
    let given = given.as_str();
    if !constant_time_eq(given.as_bytes(), sb.shared.secret_key.as_bytes()) {
        return Err(StripeError::Unauthorized(format!("Invalid API Key provided: {}", redact_key(given))));
    }
    Ok(())
}

/// `Bearer <key>`, or `Basic base64(<key>:)` as `curl -u sk_test_…:` sends it (Stripe takes both).
fn given_key(header: &str) -> Option<String> {
    if let Some(key) = header.strip_prefix("Bearer ") {
        return Some(key.trim().to_string());
    }
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, _password) = text.split_once(':').unwrap_or((text.as_str(), ""));
    Some(user.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Stripe's way: `sk_test_****abcd`.
fn redact_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().take(200).collect();
    if chars.len() <= 12 {
        return "****".into();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

pub async fn read_body(payload: web::Payload) -> Result<web::Bytes, StripeError> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(StripeError::InvalidRequest {
            code: None,
            param: None,
            message: format!("Could not read the request body: {e}"),
        }),
        Err(_) => Err(StripeError::InvalidRequest {
            code: None,
            param: None,
            message: format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        }),
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, StripeError> {
    let Some(raw) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| StripeError::InvalidRequest {
        code: None,
        param: None,
        message: "Idempotency-Key must be printable ASCII.".into(),
    })?;
    IdempotencyKey::parse(raw).map(Some)
}

/// Latency and injected 500s, before any work.
async fn before_work(sb: &Sandbox, faulty: Faulty) -> Result<RequestFaults, StripeError> {
    let none = RequestFaults { latency_ms: 0, error: false, timeout: false };
    if faulty == Faulty::No {
        return Ok(none);
    }
    let faults = sb.shared.faults.draw_request();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.error {
        return Err(StripeError::FaultInjected);
    }
    Ok(faults)
}

async fn respond(reply: Reply, replayed: bool, hang: bool, request_id: &str) -> HttpResponse {
    if hang {
        // The work is committed; the client never hears about it.
        tracing::info!("sandbox fault: holding a reply (timeout_rate)");
        tokio::time::sleep(Duration::from_millis(TIMEOUT_FAULT_HANG_MS)).await;
    }
    build_response(reply, replayed, request_id)
}

/// The reply as it is, without faults.
pub fn respond_now(reply: Reply) -> HttpResponse {
    build_response(reply, false, &ids::new_id("req_"))
}

fn build_response(reply: Reply, replayed: bool, request_id: &str) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type(reply.content_type).insert_header(("Request-Id", request_id));
    if replayed {
        response.insert_header(("Idempotent-Replayed", HeaderValue::from_static("true")));
    }
    response.body(reply.body)
}

pub fn error_reply(e: StripeError) -> HttpResponse {
    error_reply_with_id(e, &ids::new_id("req_"))
}

fn error_reply_with_id(e: StripeError, request_id: &str) -> HttpResponse {
    let mut response = e.error_response();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(HeaderName::from_static("request-id"), id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        assert_eq!(redact_key("sk_test_abcdefghijklmnop"), "sk_test_****mnop");
        assert_eq!(redact_key("short"), "****");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(given_key("Bearer sk_test_1").as_deref(), Some("sk_test_1"));
        assert_eq!(given_key("Basic c2tfdGVzdF8xOg==").as_deref(), Some("sk_test_1")); // "sk_test_1:"
        assert_eq!(given_key("Basic !!!"), None);
        assert_eq!(given_key("Token x"), None);
    }
}
