//! The staff dashboard under `/admin` (server-rendered HTML, askama) and its
//! stylesheet under `/static`, compiled into the binary. Every page but the
//! login needs a signed-in staff member; every form POST needs the
//! session's CSRF token.

pub mod actions;
pub mod auth;
pub mod errors;
pub mod pages;

use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};

use crate::admin::users::PasswordHashing;
use crate::config::Settings;
use crate::http::client_ip::TrustedProxies;

/// State shared by every worker of the server: the bound on password
/// hashing (per process, like the memory it protects; the login rate
/// limits are in the database) and the proxies whose client address is
/// believed.
pub struct AdminState {
    pub hashing: PasswordHashing,
    pub proxies: TrustedProxies,
}

impl AdminState {
    /// `settings` must have passed `Settings::validate`, which checks
    /// `server.trusted_proxies`; this runs at start-up.
    pub fn new(settings: &Settings) -> AdminState {
        let proxies = TrustedProxies::from_settings(&settings.server).expect("validated settings");
        AdminState { hashing: PasswordHashing::sized_to_cores(), proxies }
    }
}

const CSS: &str = include_str!("../../../static/admin.css");

/// Pages are never cached (they show money and act on it), never framed,
/// and load nothing but this server's stylesheet.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Cache-Control", "no-store"))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AdminState>) {
    cfg.route("/static/admin.css", web::get().to(stylesheet)).service(
        web::scope("/admin")
            .app_data(state)
            .app_data(web::FormConfig::default().limit(auth::MAX_FORM_BYTES))
            .wrap(security_headers())
            .route("/login", web::get().to(auth::login_form))
            .route("/login", web::post().to(auth::login))
            .route("/logout", web::post().to(auth::logout))
            .route("", web::get().to(pages::overview))
            .route("/", web::get().to(pages::overview))
            .route("/payments", web::get().to(pages::payments))
            .route("/payments/{id}", web::get().to(pages::payment))
            .route("/sellers", web::get().to(pages::sellers))
            .route("/sellers/{id}", web::get().to(pages::seller))
            .route("/ledger", web::get().to(pages::ledger))
            .route("/ledger/accounts/{id}", web::get().to(pages::account))
            .route("/refunds", web::get().to(pages::refunds))
            .route("/refunds", web::post().to(actions::refund))
            .route("/disputes", web::get().to(pages::disputes))
            .route("/disputes/{id}/evidence", web::post().to(actions::disputes::evidence))
            .route("/disputes/{id}/accept", web::post().to(actions::disputes::accept))
            .route("/checkouts/{id}/capture", web::post().to(actions::capture::capture))
            .route("/checkouts/{id}/void", web::post().to(actions::capture::void))
            .route("/payouts", web::get().to(pages::payouts))
            .route("/payouts", web::post().to(actions::payout))
            .route("/reconciliation", web::get().to(pages::reconciliation))
            .route("/reconciliation/files", web::post().to(actions::upload_settlement_file))
            .route("/reconciliation/exceptions/{id}/resolve", web::post().to(actions::resolve_exception))
            .route("/webhooks", web::get().to(pages::webhooks))
            .route("/webhooks/{id}/{action}", web::post().to(actions::endpoint_action))
            .route("/events/{id}/resend", web::post().to(actions::resend_event))
            .route("/alerts", web::get().to(pages::alerts))
            .route("/alerts/{id}/resolve", web::post().to(actions::resolve_alert))
            .route("/jobs", web::get().to(pages::jobs))
            .route("/jobs/{id}/retry", web::post().to(actions::retry_job))
            .route("/jobs/{id}/discard", web::post().to(actions::discard_job))
            .default_service(web::to(pages::not_found)),
    );
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CSS)
}
