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
use crate::jobs::storage_watch::StorageWatch;
use crate::jobs::worker::Runner;
use crate::psp::PspClient;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

pub struct Application {
    address: SocketAddr,
    sandbox_address: Option<SocketAddr>,
    metrics_address: Option<SocketAddr>,
    ctx: Ctx,
    servers: Vec<Server>,
}

/// Every address till listens on, bound before anything else is done, so
/// that a port in use stops till before it creates or migrates a database.
struct Listeners {
    server: TcpListener,
    sandbox: Option<TcpListener>,
    metrics: Option<TcpListener>,
}

impl Listeners {
    fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let server = bind(&settings.server.bind, "server.bind")?;
        let sandbox = settings.sandbox.enabled.then(|| bind(&settings.sandbox.bind, "sandbox.bind")).transpose()?;
        let metrics_bind = &settings.metrics.bind;
        let metrics = (!metrics_bind.is_empty()).then(|| bind(metrics_bind, "metrics.bind")).transpose()?;
        Ok(Listeners { server, sandbox, metrics })
    }
}

impl Application {
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let listeners = Listeners::bind(&settings)?;
        let db = open_till_db(&settings)?;
        let address = listeners.server.local_addr()?;
        let sandbox_address = listeners.sandbox.as_ref().map(TcpListener::local_addr).transpose()?;
        let metrics_address = listeners.metrics.as_ref().map(TcpListener::local_addr).transpose()?;
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
        if let Some(sandbox_listener) = listeners.sandbox {
            let till_webhook_url = format!("{}/webhooks/psp", crate::config::public_base("", address));
            servers.push(crate::sandbox::build(sandbox_listener, &settings.sandbox, &settings.psp, till_webhook_url)?);
        }
        if let Some(metrics_listener) = listeners.metrics {
            servers.push(http::metrics::server(metrics_listener, ctx.clone())?);
        }
        servers.push(till_server(listeners.server, ctx.clone())?);
        let public = crate::config::public_base(&settings.server.public_url, address);
        let hosted_pages = sandbox_address.map(|a| crate::config::public_base(&settings.sandbox.public_url, a));
        let config = settings
            .config_file
            .as_ref()
            .map_or_else(|| "none: built-in defaults (no ./config.toml)".to_string(), |f| f.display().to_string());
        tracing::info!(
            config = %config,
            database = %settings.database.describe(),
            api = %format!("{public}/v1"),
            dashboard = %format!("{public}/admin"),
            hosted_pages = hosted_pages.as_deref().unwrap_or("at the PSP"),
            psp = %api_base,
            metrics = %metrics_url(metrics_address, &public, &settings.metrics.token),
            "till is listening"
        );
        Ok(Application { address, sandbox_address, metrics_address, ctx, servers })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn sandbox_address(&self) -> Option<SocketAddr> {
        self.sandbox_address
    }

    /// Where `/metrics` is served, unless `metrics.bind` is empty.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    pub fn context(&self) -> &Ctx {
        &self.ctx
    }

    /// Runs until a shutdown signal; each server then finishes its in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let runner = Runner::spawn(self.ctx.clone());
        let scheduler = Scheduler::start(self.ctx.clone()).await?;
        let storage_watch = StorageWatch::spawn(self.ctx.clone());
        let results = futures_util::future::join_all(self.servers).await;
        // The servers have drained their requests; now the scheduled and queued jobs.
        scheduler.stop().await;
        runner.stop().await;
        storage_watch.stop().await;
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
    let public = crate::config::public_base(&data.settings.server.public_url, listener.local_addr()?);
    let openapi = web::Data::new(http::api::openapi::complete(&generated_openapi(), Some(&public)));
    let mut server = HttpServer::new(move || till_app(data.clone(), openapi.clone(), admin.clone()))
        .listen(listener)?
        .shutdown_timeout(30);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// The merchant API's OpenAPI description, collected from the same route
/// table every worker mounts, with what every route shares (`http::api::openapi`).
pub fn openapi() -> serde_json::Value {
    http::api::openapi::complete(&generated_openapi(), None)
}

fn generated_openapi() -> utoipa::openapi::OpenApi {
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
    openapi: web::Data<serde_json::Value>,
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
    let doc = openapi.clone();
    let app = App::new().app_data(openapi).route(
        "/v1/openapi.json",
        web::get().to(move || {
            let openapi = doc.clone();
            async move { HttpResponse::Ok().json(openapi.get_ref()) }
        }),
    );
    let (app, _) =
        app.into_utoipa_app().service(utoipa_actix_web::scope("/v1").configure(http::api::configure)).split_for_parts();
    app.wrap(actix_web::middleware::from_fn(http::body_deadline::limit))
        .wrap(actix_web::middleware::from_fn(http::metrics::record))
        .wrap(
            actix_web::middleware::Logger::new("%r %s %Dms").exclude("/healthz").exclude("/readyz").exclude("/metrics"),
        )
        .app_data(data)
        .app_data(web::QueryConfig::default().error_handler(|e, _| http::errors::query_error(&e).into()))
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::bad_request("parameter_invalid", format!("path: {e}")).into()),
        )
        .configure(http::configure)
        .configure(|cfg| http::admin::configure(cfg, admin))
        .default_service(web::to(no_route))
}

/// Where `/metrics` is, as the start line says it.
fn metrics_url(own: Option<SocketAddr>, public: &str, token: &str) -> String {
    match (own, token.is_empty()) {
        (Some(a), true) => format!("http://{a}/metrics"),
        (Some(a), false) => format!("http://{a}/metrics, and {public}/metrics with metrics.token"),
        (None, false) => format!("{public}/metrics with metrics.token"),
        (None, true) => "off (metrics.bind is empty)".to_string(),
    }
}

/// No route answers this request: 405 with `Allow` if the path has routes
/// for other methods, 404 otherwise.
async fn no_route(req: actix_web::HttpRequest, openapi: web::Data<serde_json::Value>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let path = req.path();
    let (status, code, message) = if req.resource_map().has_resource(path) {
        let message = format!("{path} does not take {}", req.method());
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    } else {
        (StatusCode::NOT_FOUND, "route_missing", format!("no route {path}"))
    };
    let error = ApiError { status, ..ApiError::bad_request(code, message) };
    let mut response = actix_web::ResponseError::error_response(&error);
    let allowed = req.resource_map().match_pattern(path).map(|p| allowed_methods(&openapi, &p)).unwrap_or_default();
    if status == StatusCode::METHOD_NOT_ALLOWED
        && !allowed.is_empty()
        && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", "))
    {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// The methods the OpenAPI description lists for a route pattern.
fn allowed_methods(openapi: &serde_json::Value, pattern: &str) -> Vec<String> {
    let json = &openapi["paths"][pattern];
    let methods = ["get", "put", "post", "delete", "patch"];
    methods.iter().filter(|m| json.get(**m).is_some()).map(|m| m.to_uppercase()).collect()
}
