//! Builds the running application: till's HTTP server and, unless disabled,
//! the embedded sandbox PSP on its own port, wired to each other with no
//! manual step. Binding to port 0 works, which is how the tests run it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;

use crate::config::Settings;
use crate::context::{Ctx, KeyedLocks};
use crate::db::{self, Db};
use crate::http::{self, api::ApiDoc, errors::ApiError};
use crate::jobs::Scheduler;
use crate::jobs::worker::Runner;
use crate::psp::PspClient;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

pub struct Application {
    address: SocketAddr,
    sandbox_address: Option<SocketAddr>,
    ctx: Ctx,
    servers: Vec<Server>,
}

impl Application {
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let db = open_till_db(&settings)?;
        let listener = bind(&settings.server.bind, "server.bind")?;
        let address = listener.local_addr()?;
        let sandbox_listener =
            if settings.sandbox.enabled { Some(bind(&settings.sandbox.bind, "sandbox.bind")?) } else { None };
        let sandbox_address = sandbox_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let api_base = match (settings.psp.api_base.as_str(), sandbox_address) {
            ("", Some(sandbox)) => format!("http://{sandbox}"),
            (base, _) => base.to_string(),
        };
        let psp = PspClient::new(&api_base, &settings.psp, db.clone())?;
        let ctx = Ctx {
            db,
            process_id: uuid::Uuid::new_v4().simple().to_string(),
            psp,
            settings: settings.clone(),
            checkout_locks: KeyedLocks::default(),
            queue_wake: Arc::new(tokio::sync::Notify::new()),
            api_keys: Arc::default(),
            webhook_http: crate::events::http_client(&settings.webhooks)?,
            // alerts.webhook_url is the operator's own: it may be private.
            alert_http: crate::events::client_builder(&settings.webhooks)
                .build()
                .context("building the alerts HTTP client")?,
        };
        let mut servers = Vec::new();
        if let Some(sandbox_listener) = sandbox_listener {
            let till_webhook_url = format!("{}/webhooks/psp", crate::config::public_base("", address));
            servers.push(crate::sandbox::build(sandbox_listener, &settings.sandbox, &settings.psp, till_webhook_url)?);
        }
        servers.push(till_server(listener, ctx.clone())?);
        let public = crate::config::public_base(&settings.server.public_url, address);
        let hosted_pages = sandbox_address.map(|a| crate::config::public_base(&settings.sandbox.public_url, a));
        tracing::info!(
            api = %format!("{public}/v1"),
            dashboard = %format!("{public}/admin"),
            hosted_pages = hosted_pages.as_deref().unwrap_or("at the PSP"),
            psp = %api_base,
            "till is listening"
        );
        Ok(Application { address, sandbox_address, ctx, servers })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn sandbox_address(&self) -> Option<SocketAddr> {
        self.sandbox_address
    }

    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// Runs until a shutdown signal; each server then finishes its in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let runner = Runner::spawn(self.ctx.clone());
        let scheduler = Scheduler::start(self.ctx.clone()).await?;
        let results = futures_util::future::join_all(self.servers).await;
        // The servers have drained their requests; now the scheduled and queued jobs.
        scheduler.stop().await;
        runner.stop().await;
        for r in results {
            r.context("server stopped with an error")?;
        }
        Ok(())
    }
}

/// till's own database: SQLite at `database.path`, or PostgreSQL at `database.url`.
pub fn open_till_db(settings: &Settings) -> anyhow::Result<Db> {
    let d = &settings.database;
    if !d.url.is_empty() {
        return Db::open_postgres(&d.url, d.pool_size, std::time::Duration::from_millis(d.busy_timeout_ms));
    }
    Db::open(&d.path, d.pool_size, d.busy_timeout_ms, &db::till_migrations())
}

fn bind(addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("{key}: cannot listen on {addr}"))
}

fn till_server(listener: TcpListener, ctx: Ctx) -> anyhow::Result<Server> {
    let workers = ctx.settings.server.workers;
    // Built once, outside the workers, so that every worker shares one bound on password hashing.
    let admin = web::Data::new(http::admin::AdminState::new(&ctx.settings));
    let data = web::Data::new(ctx);
    let openapi = web::Data::new(openapi());
    let mut server = HttpServer::new(move || till_app(data.clone(), openapi.clone(), admin.clone()))
        .listen(listener)?
        .shutdown_timeout(30);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// The merchant API's OpenAPI description, collected from the same route
/// table every worker mounts.
pub fn openapi() -> utoipa::openapi::OpenApi {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(utoipa_actix_web::scope("/v1").configure(http::api::configure))
        .split_for_parts()
        .1
}

/// One worker's application: the merchant API with its generated OpenAPI
/// description, the staff dashboard, the PSP webhook endpoint, health.
fn till_app(
    data: web::Data<Ctx>,
    openapi: web::Data<utoipa::openapi::OpenApi>,
    admin: web::Data<http::admin::AdminState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // Registered before the /v1 scope, which would otherwise answer 404 for it.
    let app = App::new().route(
        "/v1/openapi.json",
        web::get().to(move || {
            let openapi = openapi.clone();
            async move { HttpResponse::Ok().json(openapi.get_ref()) }
        }),
    );
    let (app, _) =
        app.into_utoipa_app().service(utoipa_actix_web::scope("/v1").configure(http::api::configure)).split_for_parts();
    app.wrap(actix_web::middleware::from_fn(http::body_deadline::limit))
        .wrap(actix_web::middleware::Logger::new("%r %s %Dms").exclude("/healthz"))
        .app_data(data)
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| ApiError::bad_request("parameter_invalid", format!("query string: {e}")).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::bad_request("parameter_invalid", format!("path: {e}")).into()),
        )
        .configure(http::configure)
        .configure(|cfg| http::admin::configure(cfg, admin))
        .default_service(web::to(|| async {
            let missing = ApiError::bad_request("route_missing", "no such route");
            actix_web::ResponseError::error_response(&ApiError {
                status: actix_web::http::StatusCode::NOT_FOUND,
                ..missing
            })
        }))
}
