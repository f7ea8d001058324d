//! The sandbox's routes. Each handler only names the core function; the
//! pipeline in `api` does authentication, faults, parameters, idempotency
//! and the reply.

use actix_web::http::StatusCode;
use actix_web::http::header::{LOCATION, ORIGIN, REFERER};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, Resource, web};

use super::api::{self, Faulty};
use super::error::StripeError;
use super::faults::FaultPatch;
use super::hosted::{self, FormSender, PayForm, Shown};
use super::reply::Reply;
use super::{
    Sandbox, checkout, disputes, events, params, payment_intents, refunds, reporting, request_log, settlement,
    transfers,
};

type Data = web::Data<Sandbox>;
type Id = web::Path<String>;

const CSS: &str = include_str!("../../static/sandbox.css");

/// On every response, as the admin pages have them: the card form is never
/// framed (clickjacking), sniffed, cached, or named in a Referer to another
/// site, and loads nothing but the sandbox's stylesheet. No `form-action`:
/// browsers apply it to the redirect after a POST too, and a paid form
/// redirects to the shop's `success_url`. The JSON API gets them too, to no
/// harm (Stripe's answers say `no-store` as well).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Cache-Control", "no-store"))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(resource("/checkout/sessions").route(web::post().to(create_checkout_session)))
            .service(resource("/checkout/sessions/{id}").route(web::get().to(retrieve_checkout_session)))
            .service(resource("/checkout/sessions/{id}/expire").route(web::post().to(expire_checkout_session)))
            .service(resource("/payment_intents").route(web::post().to(create_payment_intent)))
            .service(resource("/payment_intents/{id}").route(web::get().to(retrieve_payment_intent)))
            .service(resource("/payment_intents/{id}/confirm").route(web::post().to(confirm_payment_intent)))
            .service(resource("/payment_intents/{id}/capture").route(web::post().to(capture_payment_intent)))
            .service(resource("/payment_intents/{id}/cancel").route(web::post().to(cancel_payment_intent)))
            .service(resource("/disputes").route(web::get().to(list_disputes)))
            .service(
                resource("/disputes/{id}").route(web::get().to(retrieve_dispute)).route(web::post().to(update_dispute)),
            )
            .service(resource("/disputes/{id}/close").route(web::post().to(close_dispute)))
            .service(resource("/refunds").route(web::post().to(create_refund)))
            .service(resource("/refunds/{id}").route(web::get().to(retrieve_refund)))
            .service(resource("/transfers").route(web::post().to(create_transfer)))
            .service(resource("/transfers/{id}").route(web::get().to(retrieve_transfer)))
            .service(resource("/webhook_endpoints").route(web::post().to(create_webhook_endpoint)))
            .service(resource("/webhook_endpoints/{id}").route(web::get().to(retrieve_webhook_endpoint)))
            .service(resource("/reporting/report_runs").route(web::post().to(create_report_run)))
            .service(resource("/reporting/report_runs/{id}").route(web::get().to(retrieve_report_run)))
            .service(resource("/files/{id}/contents").route(web::get().to(file_contents)))
            .service(resource("/sandbox/faults").route(web::get().to(get_faults)).route(web::post().to(set_faults)))
            .service(resource("/sandbox/settlement_reports/{day}").route(web::get().to(settlement_report)))
            .service(resource("/sandbox/requests").route(web::get().to(request_log)))
            .default_service(web::to(unknown_url)),
    )
    .service(
        web::resource("/pay/{id}")
            .app_data(web::FormConfig::default().limit(hosted::MAX_FORM_BYTES))
            .route(web::get().to(pay_page))
            .route(web::post().to(pay_submit)),
    )
    .service(web::resource("/static/sandbox.css").route(web::get().to(stylesheet)))
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .default_service(web::to(unknown_url));
}

/// A resource answering unknown methods as Stripe does (404, not 405).
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(unknown_url))
}

async fn create_checkout_session(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post(&sb, &req, body, Faulty::Yes, checkout::create).await
}

async fn retrieve_checkout_session(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, s| checkout::retrieve(c, s, &id)).await
}

async fn expire_checkout_session(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, _| checkout::expire(tx, s, &id)).await
}

async fn create_payment_intent(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post_versioned(&sb, &req, body, Faulty::Yes, payment_intents::create).await
}

async fn retrieve_payment_intent(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| payment_intents::retrieve(c, &id)).await
}

async fn confirm_payment_intent(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, p| payment_intents::confirm(tx, s, &id, p)).await
}

async fn capture_payment_intent(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, p| payment_intents::capture(tx, s, &id, p)).await
}

async fn cancel_payment_intent(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, p| payment_intents::cancel(tx, s, &id, p)).await
}

async fn list_disputes(sb: Data, req: HttpRequest) -> HttpResponse {
    let query = params::parse(req.query_string().as_bytes());
    api::get(&sb, &req, Faulty::Yes, move |c, _| disputes::list(c, &query?)).await
}

async fn retrieve_dispute(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| disputes::retrieve(c, &id)).await
}

async fn update_dispute(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, p| disputes::update(tx, s, &id, p)).await
}

async fn close_dispute(sb: Data, req: HttpRequest, id: Id, body: web::Payload) -> HttpResponse {
    let id = id.into_inner();
    api::post(&sb, &req, body, Faulty::Yes, move |tx, s, p| disputes::close(tx, s, &id, p)).await
}

async fn create_refund(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post(&sb, &req, body, Faulty::Yes, refunds::create).await
}

async fn retrieve_refund(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| refunds::retrieve(c, &id)).await
}

async fn create_transfer(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post(&sb, &req, body, Faulty::Yes, transfers::create).await
}

async fn retrieve_transfer(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| transfers::retrieve(c, &id)).await
}

async fn create_webhook_endpoint(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post(&sb, &req, body, Faulty::Yes, events::create_endpoint).await
}

async fn retrieve_webhook_endpoint(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| events::retrieve_endpoint(c, &id)).await
}

async fn create_report_run(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    api::post(&sb, &req, body, Faulty::Yes, reporting::create).await
}

async fn retrieve_report_run(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, s| reporting::retrieve(c, s, &id)).await
}

async fn file_contents(sb: Data, req: HttpRequest, id: Id) -> HttpResponse {
    let id = id.into_inner();
    api::get(&sb, &req, Faulty::Yes, move |c, _| reporting::file_contents(c, &id)).await
}

async fn settlement_report(sb: Data, req: HttpRequest, day: Id) -> HttpResponse {
    let day = day.into_inner();
    api::get(&sb, &req, Faulty::No, move |c, _| settlement::report(c, &day)).await
}

/// `GET /v1/sandbox/requests?limit=`: the request log, newest first, with
/// every request answered before this one in it.
async fn request_log(sb: Data, req: HttpRequest) -> HttpResponse {
    sb.shared.requests.flushed().await;
    let query = params::parse(req.query_string().as_bytes());
    api::get(&sb, &req, Faulty::No, move |c, _| request_log::list(c, &query?)).await
}

async fn get_faults(sb: Data, req: HttpRequest) -> HttpResponse {
    match api::authorize(&sb, &req).and_then(|()| Reply::ok(&sb.shared.faults.snapshot())) {
        Ok(reply) => api::respond_now(reply),
        Err(e) => api::error_reply(e),
    }
}

/// A JSON or form body with any of the `[sandbox.faults]` keys; the others stay.
async fn set_faults(sb: Data, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let outcome = async {
        api::authorize(&sb, &req)?;
        let body = api::read_body(body).await?;
        let is_json =
            req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
        let patch: FaultPatch = if is_json {
            serde_json::from_slice(&body).map_err(|e| bad_faults(e.to_string()))?
        } else {
            serde_urlencoded::from_bytes(&body).map_err(|e| bad_faults(e.to_string()))?
        };
        let now = sb.shared.faults.apply(patch)?;
        tracing::info!(faults = ?now, "sandbox faults changed");
        Reply::ok(&now)
    };
    match outcome.await {
        Ok(reply) => api::respond_now(reply),
        Err(e) => api::error_reply(e),
    }
}

fn bad_faults(why: String) -> StripeError {
    StripeError::InvalidRequest {
        code: Some("parameter_invalid"),
        param: None,
        message: format!("Invalid faults: {}", super::error::truncate(&why, 200)),
    }
}

async fn pay_page(sb: Data, id: Id) -> HttpResponse {
    page_response(hosted::view(&sb, id.into_inner()).await)
}

async fn pay_submit(sb: Data, req: HttpRequest, id: Id, form: web::Form<PayForm>) -> HttpResponse {
    // A header that is not text is kept as "": present, and from no site.
    let header = |name| req.headers().get(name).map(|v| v.to_str().unwrap_or(""));
    let host = req.connection_info().host().to_string();
    let sender = FormSender { origin: header(ORIGIN), referer: header(REFERER), host: &host };
    page_response(hosted::submit(&sb, id.into_inner(), form.into_inner(), &sender).await)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CSS)
}

fn page_response(shown: anyhow::Result<Shown>) -> HttpResponse {
    match shown {
        Ok(Shown::Html { status, html }) => HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
            .content_type("text/html; charset=utf-8")
            .body(html),
        Ok(Shown::Redirect(to)) => HttpResponse::SeeOther().insert_header((LOCATION, to)).finish(),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sandbox hosted page failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The sandbox could not show this page. Try again.")
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn unknown_url(req: HttpRequest) -> HttpResponse {
    api::error_reply(StripeError::NotFound {
        param: None,
        message: format!("Unrecognized request URL ({}: {}).", req.method(), super::error::truncate(req.path(), 200)),
    })
}
