//! `GET /metrics` in Prometheus' text format, on a server of its own at
//! `[metrics] bind`, so that it is never reachable on the public port;
//! and the middleware that counts and times till's HTTP requests.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::context::Ctx;
use crate::metrics::METRICS;

/// Counts and times each request by its route's pattern (`/v1/payments/{payment_order_id}`,
/// never the id itself), method and status.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    METRICS.http_requests.with_label_values(&[route.as_str(), method.as_str(), status.as_str()]).inc();
    METRICS
        .http_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    Ok(res)
}

/// The metrics server: one worker, one route.
pub fn server(listener: TcpListener, ctx: Ctx) -> anyhow::Result<Server> {
    let data = web::Data::new(ctx);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/metrics", web::get().to(scrape)))
        .workers(1)
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
    Ok(server)
}

/// `/metrics` on the public port: only with `metrics.token` as the bearer
/// token (404 when no token is set, as if there were no such route).
pub async fn scrape_with_token(ctx: web::Data<Ctx>, req: actix_web::HttpRequest) -> HttpResponse {
    let token = ctx.settings.metrics.token.as_bytes();
    if token.is_empty() {
        return actix_web::ResponseError::error_response(&crate::http::errors::ApiError {
            status: actix_web::http::StatusCode::NOT_FOUND,
            ..crate::http::errors::ApiError::bad_request("route_missing", "no route /metrics")
        });
    }
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::http::auth::bearer_token)
        .unwrap_or("");
    if !same_bytes(given.as_bytes(), token) {
        let error = crate::http::errors::ApiError {
            code: "metrics_token_invalid",
            ..crate::http::errors::ApiError::unauthorized("send metrics.token as 'Authorization: Bearer <token>'")
        };
        return actix_web::ResponseError::error_response(&error);
    }
    scrape(ctx).await
}

/// Compares in a time that does not depend on where the two differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn scrape(ctx: web::Data<Ctx>) -> HttpResponse {
    METRICS.storage_available.set(i64::from(ctx.db.storage_trouble().is_none()));
    // Gauges of the database; if it does not answer, the rest is still served.
    if let Err(e) = ctx.db.run(read_gauges).await {
        tracing::debug!(error = format!("{e:#}"), "metrics: reading the database's gauges");
    }
    match METRICS.encode() {
        Ok(text) => HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(text),
        Err(e) => HttpResponse::InternalServerError().body(format!("encoding the metrics: {e}")),
    }
}

fn read_gauges(tx: &crate::db::Tx) -> anyhow::Result<()> {
    let orders = crate::payments::store::count_by_status(tx)?;
    METRICS.orders.reset();
    for (status, n) in orders {
        METRICS.orders.with_label_values(&[status.as_str()]).set(n);
    }
    let jobs = crate::queue::depth(tx)?;
    METRICS.jobs.reset();
    let (mut dead, mut backlog) = (0, 0);
    for (kind, status, n) in jobs {
        METRICS.jobs.with_label_values(&[kind.as_str(), status.as_str()]).set(n);
        match status.as_str() {
            "dead" => dead += n,
            _ if kind == crate::queue::JobKind::DeliverWebhook.as_str() => backlog += n,
            _ => {}
        }
    }
    METRICS.dead_letters.set(dead);
    METRICS.webhook_backlog.set(backlog);
    METRICS.alerts_open.set(crate::alerts::open_count(tx)?);
    Ok(())
}
