//! Signing in and out, the `Staff` extractor every page takes (anonymous
//! visitors are sent to the login page), and `Posted<T>`, the extractor of
//! every form POST, which refuses a form without the session's CSRF token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::admin::sessions::{self, Session, SignIn, SignInError};
use crate::context::Ctx;
use crate::http::admin::AdminState;
use crate::http::admin::errors::AdminError;

pub const SESSION_COOKIE: &str = "till_session";
/// The login form's own CSRF token (double submit: cookie and field), as
/// there is no session yet.
const LOGIN_COOKIE: &str = "till_login";
/// The largest form the dashboard accepts (settlement files have their own
/// limit): room for a dispute's evidence at its longest, 20,000 characters
/// of up to 4 bytes each, every byte percent-encoded (3 characters).
pub const MAX_FORM_BYTES: usize = 256 * 1024;
const _: () = assert!(MAX_FORM_BYTES > crate::disputes::MAX_EVIDENCE_CHARS * 4 * 3 + 1024);

/// A signed-in staff member.
pub struct Staff {
    pub session: Session,
}

impl Staff {
    pub fn email(&self) -> &str {
        &self.session.email
    }
}

fn ctx_of(req: &HttpRequest) -> Result<web::Data<Ctx>, AdminError> {
    req.app_data::<web::Data<Ctx>>().cloned().ok_or_else(|| anyhow::anyhow!("no app context").into())
}

/// Where a visitor sent to sign in returns afterwards: this page, for a GET.
fn return_path(req: &HttpRequest) -> String {
    if req.method() == actix_web::http::Method::GET { req.uri().to_string() } else { "/admin".into() }
}

impl FromRequest for Staff {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Staff, AdminError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = ctx_of(req);
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
        let next = return_path(req);
        Box::pin(async move {
            let ctx = ctx?;
            let Some(token) = token else { return Err(AdminError::SignIn { next }) };
            let session = ctx.db.run(move |tx| sessions::load(tx, &token)).await?;
            session.map(|session| Staff { session }).ok_or(AdminError::SignIn { next })
        })
    }
}

/// A form POSTed by a signed-in staff member, with the session's CSRF token.
pub struct Posted<T> {
    pub staff: Staff,
    pub form: T,
}

impl<T: DeserializeOwned + 'static> FromRequest for Posted<T> {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Posted<T>, AdminError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let staff = Staff::from_request(req, payload);
        let body = read_body(req, payload);
        Box::pin(async move {
            let staff = staff.await?;
            let body = body.await?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                .map_err(|e| AdminError::BadRequest(format!("the form could not be read: {e}")))?;
            let csrf = pairs.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
            if !sessions::csrf_matches(&staff.session, csrf) {
                return Err(AdminError::Csrf);
            }
            let form = serde_urlencoded::from_bytes(&body)
                .map_err(|e| AdminError::BadRequest(format!("the form could not be read: {e}")))?;
            Ok(Posted { staff, form })
        })
    }
}

fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> Pin<Box<dyn Future<Output = Result<web::Bytes, AdminError>>>> {
    let mut payload = payload.take();
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    Box::pin(async move {
        use futures_util::StreamExt;
        let too_large = || AdminError::BadRequest(format!("the form is larger than {MAX_FORM_BYTES} bytes"));
        if declared.is_some_and(|n| n > MAX_FORM_BYTES) {
            return Err(too_large());
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| AdminError::BadRequest(format!("reading the form: {e}")))?;
            if body.len() + chunk.len() > MAX_FORM_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    })
}

/// Should the cookies of this request be `Secure`? (`admin.cookie_secure`)
fn secure(ctx: &Ctx, req: &HttpRequest) -> bool {
    match ctx.settings.admin.cookie_secure.as_str() {
        "always" => true,
        "never" => false,
        _ => req.connection_info().scheme() == "https",
    }
}

fn cookie(name: &str, value: String, path: &str, max_age: Duration, secure: bool) -> Cookie<'static> {
    Cookie::build(name.to_string(), value)
        .path(path.to_string())
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(time::Duration::seconds(max_age.as_secs() as i64))
        .finish()
}

/// Where to return after signing in: a dashboard path (no open redirect)
/// that can go into a Location header as it is. So no control characters,
/// raw or percent-encoded (a CR LF would start a header of its own), no
/// spaces, nothing outside visible ASCII; anything else returns to /admin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_dashboard_path(n) => n.to_string(),
        _ => "/admin".to_string(),
    }
}

fn is_dashboard_path(n: &str) -> bool {
    let Some(rest) = n.strip_prefix("/admin") else { return false };
    let ends_there = rest.is_empty() || rest.starts_with(['/', '?', '#']);
    ends_there
        && !n.starts_with("/admin/login")
        && !n.contains("//")
        && !n.contains('\\')
        && n.bytes().all(|b| b.is_ascii_graphic())
        && !encodes_a_control_character(n)
}

/// Whether a %XX in `s` stands for a control character.
fn encodes_a_control_character(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| {
        let hex = std::str::from_utf8(&w[1..]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        w[0] == b'%' && hex.is_some_and(|b| b.is_ascii_control())
    })
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(ctx: &Ctx, req: &HttpRequest, status: StatusCode, page: LoginPage) -> Result<HttpResponse, AdminError> {
    let html = page.render().map_err(anyhow::Error::from)?;
    let csrf_cookie = cookie(LOGIN_COOKIE, page.csrf, "/admin/login", Duration::from_secs(3600), secure(ctx, req));
    Ok(HttpResponse::build(status).cookie(csrf_cookie).content_type("text/html; charset=utf-8").body(html))
}

/// `GET /admin/login`.
pub async fn login_form(
    ctx: web::Data<Ctx>,
    req: HttpRequest,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AdminError> {
    let next = safe_next(query.next.as_deref());
    if Staff::from_request(&req, &mut Payload::None).await.is_ok() {
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, next)).finish());
    }
    let page = LoginPage { csrf: sessions::random_token(), next, email: String::new(), error: None };
    login_page(&ctx, &req, StatusCode::OK, page)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /admin/login`: rate limited per account and client address, and
/// per client address (see `admin::rate_limit`).
pub async fn login(
    ctx: web::Data<Ctx>,
    state: web::Data<AdminState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AdminError> {
    let form = form.into_inner();
    let expected = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    if expected.is_empty() || !sessions::constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()) {
        return Err(AdminError::Csrf);
    }
    let next = safe_next(form.next.as_deref());
    let address = state.proxies.client_ip(&req);
    let attempt = SignIn { email: form.email.clone(), password: form.password, address };
    let again = |error: &str, status, retry_after_s: Option<u64>| {
        let page = LoginPage {
            csrf: sessions::random_token(),
            next: next.clone(),
            email: form.email,
            error: Some(error.into()),
        };
        let mut resp = login_page(&ctx, &req, status, page)?;
        if let Some(seconds) = retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        Ok(resp)
    };
    let (token, session) = match sessions::sign_in(&ctx, &state.hashing, attempt).await {
        Ok(signed_in) => signed_in,
        Err(SignInError::Refused) => {
            tracing::warn!(address = %address.map_or_else(|| "unknown".into(), |a| a.to_string()), "admin sign-in refused");
            return again("The email or the password is wrong.", StatusCode::UNAUTHORIZED, None);
        }
        Err(SignInError::Limited { retry_after_ms }) => {
            let seconds = u64::try_from(retry_after_ms).unwrap_or(0).div_ceil(1000).max(1);
            let message = format!("Too many failed sign-ins. Try again in {} minute(s).", seconds.div_ceil(60));
            return again(&message, StatusCode::TOO_MANY_REQUESTS, Some(seconds));
        }
        Err(SignInError::Busy) => {
            let message = "Too many sign-ins are being checked right now. Try again in a moment.";
            return again(message, StatusCode::SERVICE_UNAVAILABLE, Some(1));
        }
        Err(SignInError::Internal(e)) => return Err(e.into()),
    };
    tracing::info!(staff = %session.email, "admin signed in");
    let lifetime = Duration::from_secs(u64::try_from(ctx.settings.admin.session_minutes).unwrap_or(0) * 60);
    let secure = secure(&ctx, &req);
    Ok(HttpResponse::SeeOther()
        .cookie(cookie(SESSION_COOKIE, token, "/admin", lifetime, secure))
        .cookie(cookie(LOGIN_COOKIE, String::new(), "/admin/login", Duration::ZERO, secure))
        .insert_header((header::LOCATION, next))
        .finish())
}

#[derive(Deserialize)]
pub struct NoFields {}

/// `POST /admin/logout`.
pub async fn logout(
    ctx: web::Data<Ctx>,
    req: HttpRequest,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, AdminError> {
    if let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) {
        ctx.db.write(move |tx| sessions::delete(tx, &token)).await?;
    }
    tracing::info!(staff = %posted.staff.email(), "admin signed out");
    Ok(HttpResponse::SeeOther()
        .cookie(cookie(SESSION_COOKIE, String::new(), "/admin", Duration::ZERO, secure(&ctx, &req)))
        .insert_header((header::LOCATION, "/admin/login"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_returned_to() {
        for good in ["/admin", "/admin/payments?q=x%20y&status=SUCCESS", "/admin?x=1", "/admin/payments/1#refund"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/admin//evil",
            "/admin\\evil",
            "/v1/payments",
            "/administrator",
            "/admin/login",
            "/admin/login?next=/admin",
            "/admin\r\nX-Injected: 1",
            "/admin%0d%0aX-Injected:%201",
            "/admin/%0A",
            "/admin/%7f",
            "/admin/\u{7f}",
            "/admin/ x",
            "/admin/é",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/admin");
    }

    proptest::proptest! {
        /// Whatever comes in, what goes out is a dashboard path that is a
        /// valid header value as it is.
        #[test]
        fn any_next_becomes_a_header_safe_dashboard_path(next in "\\PC*|/admin[\\x00-\\x7f%0-9a-fA-F]{0,12}") {
            let safe = safe_next(Some(&next));
            proptest::prop_assert!(header::HeaderValue::from_str(&safe).is_ok(), "{safe:?}");
            proptest::prop_assert!(safe.starts_with("/admin") && !safe.contains("//"), "{safe:?}");
            proptest::prop_assert!(!encodes_a_control_character(&safe), "{safe:?}");
        }
    }
}
